//! kill -9 of an S3 publish at every request boundary: a proxy in front of moto holds the k-th
//! request of a publish of a second snapshot — before it reaches moto, or after moto answered
//! it but before the publisher has the answer — and the publisher is killed (SIGKILL) there.
//! After each kill the live index a client reads from the bucket points at a complete set
//! (every item every listed products document lists is present, sha256 ok); the re-run finishes
//! with the second snapshot live; and the prefix holds no object beyond what the two
//! publications list (nothing for gc to find but the first publication's leftovers).
//!
//! Every kill point is in a fresh prefix of one bucket (publication 1 first, cleanly), so the
//! k-th request is the same request each time; the points run on [`WORKERS`] threads, each
//! with a proxy of its own. (`crash.rs` has the local-DEST kills.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::faultproxy::{FaultProxy, Hold};
use crate::common::s3tree::{Items, list_keys, moto_with_snapshots, read_tree, s3_cmd, s3_run};
use crate::common::{Moto, Store, files_under};

/// The trees of the store's publications (name → files).
fn published_files(store: &Store) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for e in std::fs::read_dir(store.root().join("trees")).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            all.extend(files_under(&p));
        }
    }
    all
}

/// Kill points run on this many threads, each with a proxy of its own in front of the one moto
/// (each point has its own prefix; publishes of one store to different DESTs run at once).
const WORKERS: u64 = 2;

/// One kill point: request `k` of a publish of snapshot 2 in `mode`, held `when`.
#[derive(Debug, Clone, Copy)]
struct Point {
    mode: &'static str,
    n: usize,
    k: u64,
    total: u64,
    when: Hold,
}

fn publish_args(mode: &str, snapshot: &str, dest: &str) -> Vec<String> {
    ["publish", snapshot, dest, "--metadata", mode, "--json"]
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn kill_9_at_every_request_of_an_s3_publish_leaves_a_complete_live_index() {
    let Some((moto, _up, store)) = moto_with_snapshots("crash", 2) else {
        return;
    };
    let direct = moto.endpoint();
    let run = |ep: &str, args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s3_run(&store, ep, &args)
    };

    let mut points = Vec::new();
    for mode in ["verbatim", "filtered"] {
        // A clean run through a proxy: how many requests a publish of 2 over 1 makes.
        let proxy = FaultProxy::start(moto.port, 0, 1);
        let dest = format!("s3://crash/{mode}-0");
        run(&direct, &publish_args(mode, "1", &dest)).ok();
        let before = proxy.requests();
        run(&proxy.endpoint(), &publish_args(mode, "2", &dest)).ok();
        let total = proxy.requests() - before;
        assert!(total >= 5, "{total} requests");
        // Request k held before and after moto, k = 1..=total (filtered: one of the two,
        // alternately, to keep the test short; the requests are the same kinds).
        let both = mode == "verbatim";
        points.extend(
            (1..=total)
                .flat_map(|k| [(k, Hold::Before), (k, Hold::After)])
                .filter(|(k, when)| both || (*k % 2 == 0) == (*when == Hold::Before))
                .enumerate()
                .map(|(i, (k, when))| Point {
                    mode,
                    n: i + 1,
                    k,
                    total,
                    when,
                }),
        );
    }
    // Every file of every tree this store published (both modes' documents).
    let files = published_files(&store);

    let killed: usize = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (points, files, moto, direct, store, run) =
                    (&points, &files, &moto, &direct, &store, &run);
                sc.spawn(move || {
                    let proxy = FaultProxy::start(moto.port, 0, 1 + w);
                    let mine = points.iter().skip(w as usize).step_by(WORKERS as usize);
                    let mut killed = 0;
                    for p in mine {
                        kill_at(*p, &proxy, moto, direct, store, files, run);
                        killed += 1;
                    }
                    killed
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(
        killed >= 24,
        "only {killed} kills at {} points",
        points.len()
    );
}

/// Kill a publish at one point, then check what a client reads, the re-run and gc.
fn kill_at(
    p: Point,
    proxy: &FaultProxy,
    moto: &Moto,
    direct: &str,
    store: &Store,
    files: &BTreeSet<String>,
    run: &dyn Fn(&str, &[String]) -> crate::common::store::Run,
) {
    let Point {
        mode,
        n,
        k,
        total,
        when,
    } = p;
    let dest = format!("s3://crash/{mode}-{n}");
    let base = format!("/crash/{mode}-{n}");
    run(direct, &publish_args(mode, "1", &dest)).ok();

    proxy.hold(proxy.requests() + k, when);
    let args = publish_args(mode, "2", &dest);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = s3_cmd(store, &proxy.endpoint(), &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut exited = false;
    while !proxy.holding() && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let at = format!("{mode}, killed at request {k} of {total} ({when:?})");
    assert!(!exited && proxy.holding(), "{at}: never reached");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    proxy.release();

    // What a client reads now: the old or the new stream, complete either way.
    let t = read_tree(moto, &base, Items::All);
    assert!(t.ok(), "{at}: {:?}", t.problems);

    // The re-run finishes, with snapshot 2 live.
    let r = run(direct, &publish_args(mode, "2", &dest));
    assert_eq!(r.code, 0, "re-run, {at}: {}", r.stderr);
    assert_eq!(r.json()["snapshot"], 2);
    let st = s3_run(store, direct, &["status", &dest, "--json"]);
    assert_eq!(st.code, 0, "{at}: {}{}", st.stdout, st.stderr);
    assert_eq!(st.json()["live"]["snapshot_id"], 2, "{}", st.stdout);
    let after = read_tree(moto, &base, Items::All);
    assert!(after.ok(), "{at}: {:?}", after.problems);

    // No orphan beyond what gc collects: after `gc` keeping only the live publication, the
    // prefix holds nothing but tree files and what the live index reaches (filtered documents
    // have content-hash names, not tree paths), and the live stream is whole.
    let gc = s3_run(
        store,
        direct,
        &["gc", &dest, "--grace", "0s", "--keep-last", "1"],
    );
    assert_eq!(gc.code, 0, "gc, {at}: {}{}", gc.stdout, gc.stderr);
    let keys = list_keys(moto, &base);
    let stray: Vec<_> = keys
        .iter()
        .filter(|k| !files.contains(*k) && !after.keys.contains(*k))
        .collect();
    assert!(stray.is_empty(), "{at}: stray objects after gc {stray:?}");
    let collected = read_tree(moto, &base, Items::All);
    assert!(collected.ok(), "after gc, {at}: {:?}", collected.problems);
}

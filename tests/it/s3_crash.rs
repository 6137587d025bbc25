//! kill -9 of an S3 publish at every request boundary: a proxy in front of moto holds the k-th
//! request of a publish of a second snapshot — before it reaches moto, or after moto answered
//! it but before the publisher has the answer — and the publisher is killed (SIGKILL) there.
//! After each kill the live index a client reads from the bucket points at a complete set
//! (every item every listed products document lists is present, sha256 ok); the re-run finishes
//! with the second snapshot live; and the prefix holds no object beyond what the two
//! publications list (nothing for gc to find but the first publication's leftovers).
//!
//! Every kill point is in a fresh prefix of one bucket (publication 1 first, cleanly), so the
//! k-th request is the same request each time. Each request k is held once per metadata mode,
//! before moto in one mode and after it in the other (alternately), so both ways are covered
//! for every k at one kill per request and mode (≥ 24 kills in all). (`crash.rs` has the
//! local-DEST kills.)

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::faultproxy::{FaultProxy, Hold};
use crate::common::s3tree::{Items, list_keys, read_tree, s3_cmd, s3_run};
use crate::common::{Moto, Store, Upstream};

/// Relative paths of every file of a tree.
fn tree_files(root: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The trees of the store's publications (name → files).
fn published_files(store: &Store) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for e in std::fs::read_dir(store.root().join("trees")).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            all.extend(tree_files(&p));
        }
    }
    all
}

#[test]
fn kill_9_at_every_request_of_an_s3_publish_leaves_a_complete_live_index() {
    let Some(moto) = Moto::start() else { return };
    moto.public_bucket("crash");
    let up = Upstream::new();
    let store = Store::new();
    store.add("maas", &up, &[]);
    store.sync_json("maas");
    up.flip(2);
    store.sync_json("maas");
    let proxy = FaultProxy::start(moto.port, 0, 1);
    let direct = moto.endpoint();
    let run = |ep: &str, args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s3_run(&store, ep, &args)
    };

    let mut killed = 0;
    let mut points = 0;
    for mode in ["verbatim", "filtered"] {
        let publish = |snapshot: &str, dest: &str| -> Vec<String> {
            ["publish", snapshot, dest, "--metadata", mode, "--json"]
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        // A clean run through the proxy: how many requests a publish of 2 over 1 makes.
        let dest = format!("s3://crash/{mode}-0");
        run(&direct, &publish("1", &dest)).ok();
        let before = proxy.requests();
        run(&proxy.endpoint(), &publish("2", &dest)).ok();
        let total = proxy.requests() - before;
        assert!(total >= 5, "{total} requests");
        // Every file of every tree this store published (both modes' documents).
        let files = published_files(&store);

        // Request k held before or after moto, k = 1..=total, alternately, each mode the
        // other way round: over both modes every request of a publish is held both ways
        // (the requests are the same kinds) at half the cost of holding each one twice.
        let phase = u64::from(mode == "verbatim");
        assert!(total >= 12, "{mode}: {total} requests, fewer than 12 kill points");
        for (i, (k, when)) in (1..=total)
            .flat_map(|k| [(k, Hold::Before), (k, Hold::After)])
            .filter(|(k, when)| ((*k + phase) % 2 == 0) == (*when == Hold::Before))
            .enumerate()
        {
            points += 1;
            let dest = format!("s3://crash/{mode}-{}", i + 1);
            let base = format!("/crash/{mode}-{}", i + 1);
            run(&direct, &publish("1", &dest)).ok();

            proxy.hold(proxy.requests() + k, when);
            let args = publish("2", &dest);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut child = s3_cmd(&store, &proxy.endpoint(), &args)
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
            killed += 1;
            proxy.release();

            // What a client reads now: the old or the new stream, complete either way.
            let t = read_tree(&moto, &base, Items::All);
            assert!(t.ok(), "{at}: {:?}", t.problems);

            // The re-run finishes, with snapshot 2 live.
            let r = run(&direct, &publish("2", &dest));
            assert_eq!(r.code, 0, "re-run, {at}: {}", r.stderr);
            assert_eq!(r.json()["snapshot"], 2);
            let st = s3_run(&store, &direct, &["status", &dest, "--json"]);
            assert_eq!(st.code, 0, "{at}: {}{}", st.stdout, st.stderr);
            assert_eq!(st.json()["live"]["snapshot_id"], 2, "{}", st.stdout);
            let after = read_tree(&moto, &base, Items::All);
            assert!(after.ok(), "{at}: {:?}", after.problems);

            // No orphan beyond what gc collects: after `gc` keeping only the live publication,
            // the prefix holds nothing but tree files and what the live index reaches (filtered
            // documents have content-hash names, not tree paths), and the live stream is whole.
            let gc = s3_run(
                &store,
                &direct,
                &["gc", &dest, "--grace", "0s", "--keep-last", "1"],
            );
            assert_eq!(gc.code, 0, "gc, {at}: {}{}", gc.stdout, gc.stderr);
            let keys = list_keys(&moto, &base);
            let stray: Vec<_> = keys
                .iter()
                .filter(|k| !files.contains(*k) && !after.keys.contains(*k))
                .collect();
            assert!(stray.is_empty(), "{at}: stray objects after gc {stray:?}");
            let collected = read_tree(&moto, &base, Items::All);
            assert!(collected.ok(), "after gc, {at}: {:?}", collected.problems);
        }
    }
    assert!(killed >= 24, "only {killed} kills at {points} points");
}

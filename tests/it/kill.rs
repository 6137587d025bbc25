//! `kill -9` of a sync at random moments: after each kill the store holds no blob row without
//! its complete file and no partial snapshot; a normal sync afterwards completes the snapshot.

use std::time::Duration;

use crate::common::{Store, Upstream};
use streamvault::serve::Faults;
use streamvault::streamgen::{Bulk, StreamSpec};

#[test]
fn kill_dash_nine_at_random_points_never_corrupts() {
    let up = Upstream::with_spec(StreamSpec {
        bulk: Some(Bulk {
            products: 2,
            versions: 2,
            files_per_version: 10,
            file_size: 64 * 1024,
        }),
        ..StreamSpec::generation(1)
    });
    // Slow the upstream down so that kills land during downloads, commits and the snapshot.
    up.faults(Faults {
        seed: 3,
        stall: Some((0.2, Duration::from_millis(150))),
        ..Faults::default()
    });
    let store = Store::new();
    store.add("maas", &up, &[]);
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut completed_early = 0;
    for round in 0..24 {
        let mut child = store
            .cmd(&["sync", "maas", "--limit-rate", "2M", "--jobs", "4"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.u64(20..900);
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            completed_early += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        store.check_invariants();
        let snaps = store.snapshots("maas");
        assert!(snaps.len() <= 1, "round {round}: more than one snapshot");
        if snaps.len() == 1 {
            // Once a snapshot exists it is complete; later runs are "unchanged".
            assert_eq!(snaps[0]["items"], 76, "round {round}");
        }
    }
    up.faults(Faults::default());
    let r = store.sync_json("maas");
    let kind = r["outcome"]["kind"].as_str().unwrap().to_string();
    assert!(kind == "snapshot" || kind == "unchanged", "{r}");
    let snaps = store.snapshots("maas");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["items"], 76);
    store.check_invariants();
    assert!(completed_early < 24, "no kill landed during a sync");
}

/// A small bulk generation (its items change with every generation).
fn bulk(generation: u32) -> StreamSpec {
    StreamSpec {
        bulk: Some(Bulk {
            products: 2,
            versions: 2,
            files_per_version: 6,
            file_size: 16 * 1024,
        }),
        ..StreamSpec::generation(generation)
    }
}

fn blob_files(store: &Store) -> usize {
    walkdir::WalkDir::new(store.root().join("blobs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

fn blob_rows(store: &Store) -> usize {
    let db = rusqlite::Connection::open(store.root().join("catalog.db")).unwrap();
    db.query_row("SELECT count(*) FROM blobs", [], |r| r.get::<_, i64>(0))
        .unwrap() as usize
}

/// `status DEST` exits 0: the link points at a complete tree the catalogue agrees with.
fn dest_consistent(store: &Store, dest: &std::path::Path, round: usize) {
    if std::fs::symlink_metadata(dest).is_err() {
        return; // the first run was killed before its first publish
    }
    let r = store.run(&["status", dest.to_str().unwrap()]);
    // Exit 1 only for a publication row whose flip a kill prevented (the link is the truth).
    let problems: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("problem:"))
        .collect();
    assert!(
        r.code == 0
            || (r.code == 1
                && problems
                    .iter()
                    .all(|p| p.contains("interrupted before its flip"))),
        "round {round}: {}{}",
        r.stdout,
        r.stderr
    );
    // Every file the published index lists can be read.
    assert!(
        dest.join("streams/v1/index.sjson").is_file(),
        "round {round}"
    );
}

#[test]
fn kill_dash_nine_during_the_automatic_collection_of_a_mirror_run() {
    let up = Upstream::with_spec(bulk(1));
    let store = Store::new();
    let out = store.dir.path().join("www/out");
    let o = out.to_str().unwrap();
    let k = format!("--keyring={}", up.keyring_str());
    let url = up.url();
    // The store exists before the first kill (a kill before the first migration leaves no
    // catalogue to check).
    store.run(&["config", "set", "auto-gc", "on"]).ok();
    let mut rng = fastrand::Rng::with_seed(0x9c);
    let mut mid_collection = 0;
    let mut generation = 1;
    for round in 0..10 {
        if round % 2 == 0 {
            generation += 1;
            up.build(&bulk(generation));
            up.flip(generation);
        }
        let mut child = store
            .cmd(&["mirror", &k, &url, o, "--max=1"])
            .env("STREAMVAULT_GRACE", "0s")
            .env("STREAMVAULT_FAILPOINT", "gc-slow-unlink=40")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(100..2500)));
        let _ = child.kill();
        let _ = child.wait();
        store.check_invariants();
        dest_consistent(&store, &out, round);
        // Rows go first, files after: blob files without rows mean the kill landed inside the
        // removal phase of the automatic collection.
        if blob_files(&store) > blob_rows(&store) {
            mid_collection += 1;
        }
    }
    eprintln!("10 kills, {mid_collection} inside the automatic collection");
    assert!(mid_collection >= 1, "no kill landed inside the collection");
    // A normal run completes, collects what the kills left, and the store verifies.
    store
        .cmd(&["mirror", &k, &url, o, "--max=1"])
        .env("STREAMVAULT_GRACE", "0s")
        .status()
        .unwrap();
    store.check_invariants();
    dest_consistent(&store, &out, 99);
    let r = store.run(&["gc", "--grace", "0", "--json"]).ok();
    assert_eq!(r.json()["files_unlinked"], 0, "{}", r.stdout);
    store.run(&["verify"]).ok();
}

#[test]
fn kill_dash_nine_during_auto_publish_leaves_dest_on_the_old_or_the_new_tree() {
    let up = Upstream::with_spec(bulk(1));
    let store = Store::new();
    let www = store.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let dest = www.join("maas");
    store.add("maas", &up, &["--publish", dest.to_str().unwrap()]);
    store.run(&["sync", "maas"]).ok();
    let mut rng = fastrand::Rng::with_seed(0xa7);
    let mut generation = 1;
    for round in 0..8 {
        let before = std::fs::read(dest.join("streams/v1/index.sjson")).unwrap();
        generation += 1;
        up.build(&bulk(generation));
        up.flip(generation);
        let new = std::fs::read(up.current().join("streams/v1/index.sjson")).unwrap();
        let mut child = store
            .cmd(&["sync", "maas"])
            .env("STREAMVAULT_FAILPOINT", "publish-slow-file=20")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(50..1200)));
        let _ = child.kill();
        let _ = child.wait();
        store.check_invariants();
        let now = std::fs::read(dest.join("streams/v1/index.sjson")).unwrap();
        assert!(now == before || now == new, "round {round}: a third index");
        dest_consistent(&store, &dest, round);
        // The next sync publishes what the killed one did not.
        store.run(&["sync", "maas"]).ok();
        assert_eq!(
            std::fs::read(dest.join("streams/v1/index.sjson")).unwrap(),
            new,
            "round {round}"
        );
    }
    store.run(&["verify"]).ok();
}

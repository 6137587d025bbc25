//! `kill -9` at random moments, of every command that writes: sync (alone and inside a mirror
//! run's automatic collection and publish), publish, and gc. After each kill the store holds no
//! blob row without its complete file, no partial snapshot, no tree row without its directory,
//! DEST points at a complete tree, and `verify` finds no damage; the next normal run completes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rusqlite::params;

use crate::common::{
    Store, Upstream, assert_complete, blob_files, blob_path, blob_rows, check_trees, db, gc_json,
    listing, now, p, setup, synced, tree_path, verify_lines, www,
};
use streamvault::serve::Faults;
use streamvault::streamgen::{Bulk, StreamSpec};

// -------------------------------------------------------------------------------------- sync

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
        if blob_files(&store).len() > blob_rows(&store).len() {
            mid_collection += 1;
        }
    }
    eprintln!("10 kills, {mid_collection} inside the automatic collection");
    assert!(mid_collection >= 1, "no kill landed inside the collection");
    // A normal run completes; its automatic collection walks one sixteenth of blobs/ for the
    // files the kills left without rows, a `gc` walks all of it and removes the rest, after
    // which nothing is left to remove and the store verifies.
    store
        .cmd(&["mirror", &k, &url, o, "--max=1"])
        .env("STREAMVAULT_GRACE", "0s")
        .status()
        .unwrap();
    store.check_invariants();
    dest_consistent(&store, &out, 99);
    store.run(&["gc", "--grace", "0"]).ok();
    assert_eq!(blob_files(&store).len(), blob_rows(&store).len());
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

// ----------------------------------------------------------------------------------- publish

#[test]
fn kill_dash_nine_during_publish_never_leaves_an_incomplete_link() {
    use std::time::{Duration, Instant};
    use streamvault::streamgen::{Bulk, StreamSpec};

    let bulk = Some(Bulk {
        products: 6,
        versions: 4,
        files_per_version: 50,
        file_size: 64,
    });
    let up = Upstream::with_spec(StreamSpec {
        bulk,
        ..StreamSpec::generation(1)
    });
    let store = Store::new();
    store.add("maas", &up, &["--max", "4"]);
    let t = Instant::now();
    store.run(&["sync", "maas", "--jobs", "8"]).ok();
    up.build(&StreamSpec {
        bulk,
        ..StreamSpec::generation(2)
    });
    up.flip(2);
    store.run(&["sync", "maas", "--jobs", "8"]).ok();
    eprintln!("two syncs: {:?}", t.elapsed());
    let dest = www(&store);
    let t = Instant::now();
    store.run(&["publish", "1", p(&dest)]).ok();
    let full = t.elapsed();
    eprintln!("one publish of {} items: {full:?}", store.items("1").len());
    assert_complete(&dest);

    let mut rng = fastrand::Rng::with_seed(0x9e37);
    let (mut mid_build, mut completed) = (0, 0);
    let span = (full.as_millis() as u64 * 3 / 2).max(100);
    // At least 24 rounds, and more (up to 96) until 3 kills landed mid-build: on a loaded
    // machine the timing of the first 24 may all fall before or after the build.
    let mut rounds = 0;
    for round in 0..96 {
        if round >= 24 && mid_build >= 3 {
            break;
        }
        rounds += 1;
        let snap = if round % 2 == 0 { "2" } else { "1" };
        let mut child = store
            .cmd(&["publish", snap, p(&dest), "--rebuild"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(5..span)));
        if child.try_wait().unwrap().is_some() {
            completed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if std::fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("publish-")
            })
        {
            mid_build += 1;
        }
        // DEST always exists and always points at a complete tree.
        assert_complete(&dest);
        store.check_invariants();
        // Nothing but DEST beside it (the temporary link is renamed over DEST or never made).
        let beside: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(beside.len() <= 2, "round {round}: {beside:?}");
    }
    eprintln!("{rounds} kills: {mid_build} during the build, {completed} after the end");
    assert!(
        mid_build >= 3,
        "too few kills landed during materialisation"
    );
    // The next publish succeeds, removes the stale stage, and status is consistent.
    store.run(&["publish", "2", p(&dest)]).ok();
    assert_complete(&dest);
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    let st = store.run(&["status", p(&dest), "--json"]).ok().json();
    assert_eq!(st["live"]["snapshot_id"], 2);
}

/// A publish killed while staging leaves `tmp/publish-…`; the next publish to that DEST removes
/// it even when it reuses an existing tree and builds nothing (that path used to keep the stage,
/// which made the kill test above fail whenever a round for the reused snapshot had completed).
#[test]
fn a_publish_that_reuses_a_tree_removes_a_killed_publishs_stage() {
    use std::time::{Duration, Instant};
    use streamvault::streamgen::StreamSpec;
    let (up, store) = setup();
    up.build(&StreamSpec::generation(2));
    up.flip(2);
    store.sync_json("maas");
    let dest = www(&store);
    store.run(&["publish", "1", p(&dest)]).ok();
    let mut child = store
        .cmd(&["publish", "2", p(&dest)])
        .env("STREAMVAULT_FAILPOINT", "publish-slow-file=200")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp = store.root().join("tmp");
    let staged = |tmp: &Path| {
        std::fs::read_dir(tmp).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("publish-")
        })
    };
    let t = Instant::now();
    while !staged(&tmp) && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(staged(&tmp), "the killed publish left no stage to clean");
    assert_complete(&dest);
    // Snapshot 1's tree exists: this publish reuses it and builds nothing.
    store.run(&["publish", "1", p(&dest)]).ok();
    assert_complete(&dest);
    assert!(!staged(&tmp), "the stale stage was left in tmp/");
}

/// A real `kill -9` of publishes at random moments (while a tree is staged, while grace items
/// are added to the live tree and the new one): verify never reports damage, and the stray-file
/// check of every tree does not mistake half-added grace items for foreign files.
#[test]
fn verify_after_kill_dash_nine_of_publishes_finds_no_damage() {
    use std::time::Duration;
    let (up, store) = synced(&[1]);
    up.flip(4);
    store.sync_json("maas");
    let dest = store.dir.path().join("www");
    store.run(&["publish", "1", dest.to_str().unwrap()]).ok();
    let mut rng = fastrand::Rng::with_seed(0x9);
    let mut orphans = 0;
    for round in 0..10 {
        let snap = if round % 2 == 0 { "2" } else { "1" };
        let mut args = vec!["publish", snap, dest.to_str().unwrap()];
        if round % 4 < 2 {
            args.push("--rebuild");
        }
        let mut child = store
            .cmd(&args)
            .env("STREAMVAULT_FAILPOINT", "publish-slow-file=15")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(30..900)));
        let _ = child.kill();
        let _ = child.wait();
        let r = store.run(&["verify"]);
        assert_eq!(r.code, 0, "round {round}: {}\n{}", r.stdout, r.stderr);
        orphans += verify_lines(&r).len();
    }
    eprintln!("orphans reported over 10 kills: {orphans}");
}

// ---------------------------------------------------------------------------------------- gc

/// Garbage that takes gc a while to delete: a snapshot of an unconfigured source naming `n`
/// small blobs (written straight to disk), and a retired tree of hardlinks to half of them.
/// Returns the tree files and the blob files.
fn add_garbage(store: &Store, round: u32, n: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut tree_files, mut blob_files) = (Vec::new(), Vec::new());
    let mut db = db(store);
    let tx = db.transaction().unwrap();
    tx.execute(
        "INSERT INTO snapshots (source_id, source_name, created_at, url, start_path, filters,
            max_versions, keep, signed, verified, signer, products, versions, items, bytes,
            fetched_bytes, duration_ms, digest)
         VALUES (NULL, 'junk', ?1, 'http://127.0.0.1:9/', 'streams/v1/index.json', '[]', NULL, 0,
                 0, 0, NULL, 1, 1, ?2, 0, 0, 0, 'x')",
        params![now() - 1000, n as i64],
    )
    .unwrap();
    let snap = tx.last_insert_rowid();
    let tree = tree_path(store, &format!("junk-{round}"));
    for k in 0..n {
        let data = format!("junk {round} {k} {}", "z".repeat(150));
        let hex = blake3::hash(data.as_bytes()).to_hex().to_string();
        let p = blob_path(store, &hex);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        blob_files.push(p.clone());
        tx.execute(
            "INSERT OR IGNORE INTO blobs (blake3, size, created_at) VALUES (?1, ?2, ?3)",
            params![hex, data.len() as i64, now() - 1000],
        )
        .unwrap();
        let path = format!("junk/{round}/{k:05}");
        tx.execute(
            "INSERT INTO snapshot_items (snapshot_id, content_id, product, version, item, path,
                size, blob) VALUES (?1, 'junk', 'p', 'v', ?2, ?3, ?4, ?5)",
            params![snap, format!("i{k}"), path, data.len() as i64, hex],
        )
        .unwrap();
        if k % 2 == 0 {
            let t = tree.join(&path);
            std::fs::create_dir_all(t.parent().unwrap()).unwrap();
            std::fs::hard_link(&p, &t).unwrap();
            tree_files.push(t);
        }
    }
    tx.execute(
        "INSERT INTO trees (name, snapshot_id, mode, files, bytes, created_at)
         VALUES (?1, ?2, 'verbatim', 0, 0, ?3)",
        params![format!("junk-{round}"), snap, now() - 1000],
    )
    .unwrap();
    let tree_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO publications (dest, tree_id, snapshot_id, action, published_at, published_by,
                                   retired_at)
         VALUES ('/nonexistent/www', ?1, ?2, 'publish', ?3, 'test', ?3)",
        params![tree_id, snap, now() - 1000],
    )
    .unwrap();
    tx.commit().unwrap();
    (tree_files, blob_files)
}

#[test]
fn kill_dash_nine_at_random_points_of_gc_never_leaves_a_row_without_its_file() {
    let (_up, store) = synced(&[1]);
    const N: usize = 3000;
    // How long planning alone, and a whole uninterrupted gc, of this much garbage take.
    add_garbage(&store, 0, N);
    let t0 = Instant::now();
    store.run(&["gc", "--grace", "0", "--dry-run"]).ok();
    let plan = t0.elapsed();
    let t0 = Instant::now();
    let r = gc_json(&store, &["--grace", "0"]);
    let full = t0.elapsed();
    assert_eq!(r["blobs_dropped"], N, "{r}");
    eprintln!("gc of {N} blobs: planning {plan:?}, all {full:?}");
    let baseline = listing(&store.root().join("blobs")).len();

    let mut rng = fastrand::Rng::with_seed(0x9c);
    let (mut mid_delete, mut before_commit, mut finished) = (0, 0, 0);
    let full_ms = full.as_millis() as u64;
    let mut garbage = (Vec::new(), Vec::new());
    for round in 1..=24u32 {
        // Keep the amount of garbage the same from round to round.
        let junk: i64 = db(&store)
            .query_row(
                "SELECT count(*) FROM snapshots WHERE source_name = 'junk'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if junk == 0 {
            garbage = add_garbage(&store, round, N);
        }
        let mut child = store
            .cmd(&["gc", "--grace", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A third of the kills at a random time of the run; the others once a random tree file
        // or blob file is gone, i.e. somewhere inside the deleting.
        let watch = match round % 3 {
            0 => None,
            1 => garbage.0.get(rng.usize(..garbage.0.len())).cloned(),
            _ => garbage.1.get(rng.usize(..garbage.1.len())).cloned(),
        };
        match watch {
            None => std::thread::sleep(Duration::from_millis(rng.u64(0..full_ms * 12 / 10 + 5))),
            Some(p) => {
                let t0 = Instant::now();
                while p.symlink_metadata().is_ok()
                    && child.try_wait().unwrap().is_none()
                    && t0.elapsed() < Duration::from_secs(30)
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        let done = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // No row without its file, no tree row without its directory, no partial snapshot.
        store.check_invariants();
        check_trees(&store);
        let junk_rows: i64 = db(&store)
            .query_row(
                "SELECT count(*) FROM snapshots WHERE source_name = 'junk'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let leftovers = std::fs::read_dir(store.root().join("trees"))
            .unwrap()
            .count()
            + listing(&store.root().join("blobs")).len();
        if done {
            finished += 1;
        } else if junk_rows > 0 {
            before_commit += 1;
        } else if leftovers > baseline {
            // rows gone, files still there: the kill landed while deleting files
            mid_delete += 1;
        }
    }
    eprintln!(
        "kills: {before_commit} before the commit, {mid_delete} mid-delete, {finished} after the end"
    );
    assert!(
        mid_delete >= 2,
        "too few kills landed mid-delete: {mid_delete}"
    );
    // The next gc sweeps what the kills left; verify is then clean.
    gc_json(&store, &["--grace", "0"]);
    store.check_invariants();
    let v = store.run(&["verify"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(
        std::fs::read_dir(store.root().join("trees"))
            .unwrap()
            .count(),
        0
    );
}

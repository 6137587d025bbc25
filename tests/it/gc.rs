//! `gc`: retention (keep-last, grace, live trees by row and by readlink), dry run, freed-bytes
//! accounting with hardlinks and the store lock against syncs (kill -9 of gc: `crash.rs`).
//!
//! Trees and publications are made here by hand (hardlinks of a snapshot's item blobs under
//! `trees/<name>/<path>` plus their rows), as `publish` would make them.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{
    Store, blob_path, blob_rows, check_trees, gc_json, item_files, link_documents, listing,
    make_tree, now, point, publication, setup, snapshot_blobs, snapshot_ids, synced, tree_path,
};

#[test]
fn keep_last_drops_old_snapshots_and_keeps_shared_blobs() {
    let (_up, store) = synced(&[1, 2, 3, 4]);
    assert_eq!(snapshot_ids(&store), vec![1, 2, 3, 4]);
    let kept: BTreeSet<String> = [3, 4]
        .iter()
        .flat_map(|&s| snapshot_blobs(&store, s))
        .collect();
    let old: BTreeSet<String> = [1, 2]
        .iter()
        .flat_map(|&s| snapshot_blobs(&store, s))
        .collect();
    let shared: Vec<&String> = old.intersection(&kept).collect();
    let only_old: Vec<&String> = old.difference(&kept).collect();
    assert!(!shared.is_empty() && !only_old.is_empty());

    // Default grace: the dropped snapshots' blobs are younger than 24 h, so they stay.
    let r = gc_json(&store, &["--keep-last", "2"]);
    assert_eq!(r["snapshots_dropped"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["blobs_dropped"], 0, "{r}");
    assert_eq!(r["blobs_within_grace"], only_old.len(), "{r}");
    assert_eq!(snapshot_ids(&store), vec![3, 4]);
    store.check_invariants();

    // Without grace they go; blobs shared with a kept snapshot stay.
    let r = gc_json(&store, &["--keep-last", "2", "--grace", "0"]);
    assert_eq!(r["blobs_dropped"], only_old.len(), "{r}");
    let rows = blob_rows(&store);
    for b in &only_old {
        assert!(!rows.contains(*b) && !blob_path(&store, b).exists(), "{b}");
    }
    for b in &kept {
        assert!(rows.contains(b) && blob_path(&store, b).is_file(), "{b}");
    }
    assert_eq!(r["freed_bytes"], r["blob_bytes_dropped"], "{r}");
    store.check_invariants();
    // Nothing more to collect; the next sync is still "unchanged" (its base survived).
    let r = gc_json(&store, &["--keep-last", "2", "--grace", "0"]);
    assert_eq!(r["files_unlinked"], 0, "{r}");
    let s = store.sync_json("maas");
    assert_eq!(s["outcome"]["kind"], "unchanged", "{s}");
    store.run(&["verify"]).ok();
}

#[test]
fn removed_source_snapshots_go_and_keep_last_one_is_the_minimum() {
    let (_up, store) = synced(&[1, 2]);
    assert_eq!(store.run(&["gc", "--keep-last", "0"]).code, 2);
    let r = store.run(&["gc", "--grace", "soon"]).fails();
    assert!(r.stderr.contains("invalid duration `soon`"), "{}", r.stderr);
    let r = Store::new().run(&["gc"]).fails();
    assert!(r.stderr.contains("no store at"), "{}", r.stderr);
    store.run(&["source", "remove", "maas"]).ok();
    let r = gc_json(&store, &["--grace", "0"]);
    assert_eq!(r["snapshots_dropped"].as_array().unwrap().len(), 2, "{r}");
    assert!(snapshot_ids(&store).is_empty());
    assert_eq!(blob_rows(&store).len(), 0);
    store.check_invariants();
}

#[test]
fn a_just_retired_tree_survives_the_grace_period() {
    let (_up, store) = synced(&[1, 2]);
    let dest = store.dir.path().join("www");
    let t1 = make_tree(&store, "t1", 1, now() - 100);
    let t2 = make_tree(&store, "t2", 2, now());
    // t1 was live until a moment ago, t2 replaced it.
    publication(&store, t1, &dest, now() - 100, Some(now()));
    publication(&store, t2, &dest, now(), None);
    point(&dest, &tree_path(&store, "t2"));

    let r = gc_json(&store, &["--keep-last", "1"]);
    assert!(r["trees_dropped"].as_array().unwrap().is_empty(), "{r}");
    let reasons: Vec<(String, String)> = r["trees_kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        reasons.contains(&("t1".into(), "retired_within_grace".into())),
        "{r}"
    );
    assert!(reasons.contains(&("t2".into(), "published".into())), "{r}");
    assert_eq!(snapshot_ids(&store), vec![1, 2], "t1 keeps snapshot 1");
    assert!(tree_path(&store, "t1").is_dir());

    let r = gc_json(&store, &["--keep-last", "1", "--grace", "0"]);
    assert_eq!(r["trees_dropped"], serde_json::json!(["t1"]), "{r}");
    assert_eq!(r["publications_dropped"], 1, "{r}");
    assert!(!tree_path(&store, "t1").exists());
    assert!(tree_path(&store, "t2").is_dir());
    assert_eq!(snapshot_ids(&store), vec![2]);
    // The live tree still has every file, and serves it through the dest.
    for (p, _) in item_files(&store, 2) {
        assert!(dest.join(&p).is_file(), "{p}");
    }
    store.check_invariants();
    check_trees(&store);
}

#[test]
fn the_dest_symlink_protects_its_tree_whatever_the_rows_say() {
    let (_up, store) = synced(&[1, 2, 3]);
    let dest = store.dir.path().join("www");
    let long_ago = now() - 10 * 86_400;
    let t1 = make_tree(&store, "t1", 1, long_ago);
    let t3 = make_tree(&store, "t3", 3, long_ago);
    // The rows say t3 is live and t1 was retired long ago, but a rollback was killed after
    // its flip: the link points at t1.
    publication(&store, t1, &dest, long_ago, Some(long_ago));
    publication(&store, t3, &dest, long_ago, None);
    point(&dest, &tree_path(&store, "t1"));
    // A tree directory a second dest links to but that never got its row, and a stray one.
    let dest2 = store.dir.path().join("www2");
    std::fs::create_dir_all(tree_path(&store, "norow/sub")).unwrap();
    std::fs::write(tree_path(&store, "norow/sub/f"), b"x").unwrap();
    point(&dest2, &tree_path(&store, "norow"));
    publication(&store, t3, &dest2, long_ago, Some(long_ago));
    std::fs::create_dir_all(tree_path(&store, "stray/a")).unwrap();
    std::fs::write(tree_path(&store, "stray/a/f"), b"stray").unwrap();

    let r = gc_json(&store, &["--keep-last", "1", "--grace", "0"]);
    let kept: Vec<String> = r["trees_kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["name"].as_str().unwrap(),
                t["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert!(kept.contains(&"t1:linked".to_string()), "{r}");
    assert!(kept.contains(&"t3:published".to_string()), "{r}");
    assert!(kept.contains(&"norow:linked".to_string()), "{r}");
    assert_eq!(r["orphan_trees"], serde_json::json!(["stray"]), "{r}");
    assert_eq!(snapshot_ids(&store), vec![1, 3], "snapshot 2 only goes");
    assert!(tree_path(&store, "t1").is_dir());
    assert!(tree_path(&store, "norow/sub/f").is_file());
    assert!(!tree_path(&store, "stray").exists());
    for (p, _) in item_files(&store, 1) {
        assert!(dest.join(&p).is_file(), "{p}");
    }
    store.check_invariants();
    check_trees(&store);
}

#[test]
fn dry_run_deletes_nothing_and_reports_what_the_real_run_frees() {
    let (_up, store) = synced(&[1, 2]);
    let dest = store.dir.path().join("www");
    let long_ago = now() - 10 * 86_400;
    let t1 = make_tree(&store, "t1", 1, long_ago);
    let t2 = make_tree(&store, "t2", 2, long_ago);
    publication(&store, t1, &dest, long_ago, Some(long_ago));
    publication(&store, t2, &dest, long_ago, None);
    point(&dest, &tree_path(&store, "t2"));

    // What should come back: the blobs only snapshot 1 names (their tree links go too) ...
    let only1: Vec<String> = snapshot_blobs(&store, 1)
        .difference(&snapshot_blobs(&store, 2))
        .cloned()
        .collect();
    assert!(only1.len() >= 3, "{only1:?}");
    let size = |hex: &str| std::fs::metadata(blob_path(&store, hex)).unwrap().len();
    // ... except one still hardlinked from outside the store, which frees nothing.
    let outside = store.dir.path().join("admin-copy");
    std::fs::hard_link(blob_path(&store, &only1[0]), &outside).unwrap();
    let mut expected: u64 = only1.iter().skip(1).map(|h| size(h)).sum();
    // Orphans: a blob file without a row, a tmp entry, an old partial download.
    let orphan = "ab".to_string() + &"0".repeat(62);
    std::fs::create_dir_all(blob_path(&store, &orphan).parent().unwrap()).unwrap();
    std::fs::write(blob_path(&store, &orphan), vec![1u8; 1000]).unwrap();
    std::fs::create_dir_all(store.root().join("tmp/stage/x")).unwrap();
    std::fs::write(store.root().join("tmp/stage/x/f"), vec![2u8; 300]).unwrap();
    let old = store.root().join("partial/sha256-old");
    std::fs::write(&old, vec![3u8; 50]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let young = store.root().join("partial/sha256-young");
    std::fs::write(&young, vec![4u8; 70]).unwrap();
    let orphans = 1000 + 300 + 50;
    expected += orphans;

    let before = listing(&store.root());
    let rows_before = blob_rows(&store);
    let dry = store
        .run(&[
            "gc",
            "--dry-run",
            "--keep-last",
            "1",
            "--grace",
            "30m",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(listing(&store.root()), before, "dry run changed files");
    assert_eq!(blob_rows(&store), rows_before, "dry run changed rows");
    assert_eq!(snapshot_ids(&store), vec![1, 2]);
    assert_eq!(dry["dry_run"], true);
    // Within 30 minutes the dropped snapshot's blobs are protected, so dropping t1's links
    // frees nothing: only the orphans come back.
    assert_eq!(dry["freed_bytes"], orphans, "{dry}");
    assert_eq!(dry["blobs_dropped"], 0, "{dry}");
    assert_eq!(dry["blobs_within_grace"], only1.len(), "{dry}");
    assert_eq!(dry["trees_dropped"], serde_json::json!(["t1"]));
    assert_eq!(dry["orphan_blobs"], 1);
    assert_eq!(dry["tmp_entries"], 1);
    assert_eq!(dry["partial_files"], 1, "the young partial file stays");
    let human = store
        .run(&["gc", "--dry-run", "--keep-last", "1", "--grace", "30m"])
        .ok()
        .stdout;
    assert!(human.contains("would drop snapshot 1"), "{human}");
    assert!(human.contains("would drop tree t1"), "{human}");

    // With no grace the blobs go, and with them the last links of their content.
    let dry0 = store
        .run(&[
            "gc",
            "--dry-run",
            "--keep-last",
            "1",
            "--grace",
            "0",
            "--json",
        ])
        .ok()
        .json();
    let real = gc_json(&store, &["--keep-last", "1", "--grace", "0"]);
    let mut d = dry0.clone();
    d["dry_run"] = serde_json::json!(false);
    assert_eq!(d, real, "dry run and real run disagree");
    // With grace 0 the young partial file goes too.
    assert_eq!(real["freed_bytes"], expected + 70, "{real}");
    assert_eq!(real["blobs_dropped"], only1.len());
    assert!(
        outside.is_file(),
        "a link outside the store is never touched"
    );
    assert!(!tree_path(&store, "t1").exists());
    assert!(!young.exists() && !old.exists());
    assert!(!blob_path(&store, &orphan).exists());
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    store.check_invariants();
    check_trees(&store);
    // verify checks documents too: the hand-made tree gets its snapshot's.
    link_documents(&store, "t2", 2);
    store.run(&["verify"]).ok();
}

#[test]
fn gc_names_the_lock_and_waits_with_wait_and_a_sync_meets_it_cleanly() {
    let (up, store) = synced(&[1]);
    // A writer (as a sync would) holds the store lock shared.
    let shared = streamvault::lock::acquire(
        &store.root().join("lock"),
        streamvault::lock::Mode::Shared,
        false,
        "sync",
    )
    .unwrap();
    let r = store.run(&["gc"]).fails();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is locked by"), "{}", r.stderr);
    assert!(r.stderr.contains("--wait"), "{}", r.stderr);
    let mut waiting = store
        .cmd(&["gc", "--wait", "--grace", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "gc --wait did not wait"
    );
    drop(shared);
    assert!(waiting.wait().unwrap().success());

    // gc holds it exclusively: a sync fails at once naming it, or waits with --wait.
    let held = streamvault::lock::acquire(
        &store.root().join("lock"),
        streamvault::lock::Mode::Exclusive,
        false,
        "gc",
    )
    .unwrap();
    up.flip(2);
    let r = store.run(&["sync", "maas"]).fails();
    assert!(r.stderr.contains(": gc"), "{}", r.stderr);
    let mut waiting = store
        .cmd(&["sync", "maas", "--wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "sync --wait did not wait"
    );
    drop(held);
    assert!(waiting.wait().unwrap().success());
    assert_eq!(snapshot_ids(&store), vec![1, 2]);
    store.check_invariants();
}

#[test]
fn sync_and_gc_run_together_and_lose_nothing() {
    let (up, store) = setup();
    let mut rng = fastrand::Rng::with_seed(0x6c);
    let (mut sync_ok, mut gc_ok, mut refused) = (0, 0, 0);
    for round in 0..16u32 {
        up.flip(round % 5 + 1);
        let wait = round % 3 == 0;
        // generations cycle 1..5 and back to 1 on purpose: --allow-downgrade
        let sync_args: Vec<&str> = if wait {
            vec![
                "sync",
                "maas",
                "--wait",
                "--limit-rate",
                "4M",
                "--allow-downgrade",
            ]
        } else {
            vec!["sync", "maas", "--limit-rate", "4M", "--allow-downgrade"]
        };
        let gc_args: Vec<&str> = if round % 4 == 1 {
            vec!["gc", "--keep-last", "1", "--grace", "0", "--wait"]
        } else {
            vec!["gc", "--keep-last", "1", "--grace", "0"]
        };
        let (first, second) = if rng.bool() {
            (sync_args, gc_args)
        } else {
            (gc_args, sync_args)
        };
        let a = store
            .cmd(&first)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(0..60)));
        let b = store
            .cmd(&second)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        for (args, child) in [(&first, a), (&second, b)] {
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() {
                if args[0] == "sync" {
                    sync_ok += 1;
                } else {
                    gc_ok += 1;
                }
            } else {
                // The only acceptable failure: the other one held the lock.
                assert_eq!(
                    out.status.code(),
                    Some(2),
                    "round {round} {args:?}: {err} {:?}",
                    out.status
                );
                assert!(
                    err.contains("is locked by"),
                    "round {round} {args:?}: {err}"
                );
                assert_eq!(
                    err.lines()
                        .filter(|l| l.starts_with("streamvault: error:"))
                        .count(),
                    1,
                    "{err}"
                );
                refused += 1;
            }
        }
        // Every snapshot left has every blob it names, complete.
        store.check_invariants();
        check_trees(&store);
    }
    assert!(sync_ok > 0 && gc_ok > 0, "sync {sync_ok}, gc {gc_ok}");
    eprintln!("sync ok {sync_ok}, gc ok {gc_ok}, refused {refused}");
    store.run(&["sync", "maas", "--wait"]).ok();
    store.run(&["verify"]).ok();
}

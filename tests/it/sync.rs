//! Full sync, unchanged re-sync, a new generation, dedupe across sources, dry run, the lock.

use std::time::Duration;

use crate::common::{item_gets, metadata_gets, with_source};
use streamvault::serve::Faults;

#[test]
fn full_sync_unchanged_and_new_generation() {
    let (up, store) = with_source("maas", &[]);

    let r = store.sync_json("maas");
    assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    assert_eq!(r["items"], 36);
    assert_eq!(r["fetched_items"], 36);
    let reqs = up.requests();
    assert_eq!(metadata_gets(&reqs), 3, "index + 2 products, once each");
    assert_eq!(item_gets(&reqs), 36);
    assert!(
        r["signer"]
            .as_str()
            .unwrap()
            .contains(&up.key.fingerprint())
    );
    store.check_invariants();

    // Unchanged: one request per metadata document, none for items, no new snapshot.
    up.clear();
    let r = store.sync_json("maas");
    assert_eq!(r["outcome"]["kind"], "unchanged", "{r}");
    let reqs = up.requests();
    assert_eq!(metadata_gets(&reqs), 3);
    assert_eq!(item_gets(&reqs), 0);
    let mut paths: Vec<_> = reqs.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 3, "each document fetched once");
    assert_eq!(store.snapshots("maas").len(), 1);

    // Generation 2: +20240401, -20240101 for jammy/amd64; only the new files are fetched.
    up.flip(2);
    up.clear();
    let r = store.sync_json("maas");
    assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    let reqs = up.requests();
    let items: Vec<_> = reqs
        .iter()
        .filter(|r| !r.path.starts_with("/streams/"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(items.len(), 4, "{items:?}");
    assert!(items.iter().all(|p| p.contains("/20240401/")), "{items:?}");
    let new_bytes: u64 = reqs
        .iter()
        .filter(|r| !r.path.starts_with("/streams/"))
        .map(|r| r.bytes_sent)
        .sum();
    assert_eq!(r["fetched_bytes"].as_u64(), Some(new_bytes));
    assert_eq!(store.snapshots("maas").len(), 2);
    store.check_invariants();

    let d = store.run(&["diff", "1", "2", "--json"]).ok().json();
    let added: Vec<String> = serde_json::from_value(d["versions_added"].clone()).unwrap();
    let removed: Vec<String> = serde_json::from_value(d["versions_removed"].clone()).unwrap();
    assert_eq!(added.len(), 1);
    assert!(added[0].ends_with("ga-22.04/20240401"), "{added:?}");
    assert_eq!(removed.len(), 1);
    assert!(removed[0].ends_with("ga-22.04/20240101"), "{removed:?}");
    let human = store.run(&["diff", "1", "2"]).ok().stdout;
    assert!(human.contains("+ version"), "{human}");
}

#[test]
fn identical_content_is_downloaded_once_across_sources() {
    let (up, store) = with_source("a", &["release~jammy"]);
    store.add("b", &up, &[]);
    let r = store.sync_json("a");
    assert_eq!(r["fetched_items"], 20, "{r}");
    up.clear();
    let r = store.sync_json("b");
    assert_eq!(r["reused_items"], 20, "{r}");
    assert_eq!(r["fetched_items"], 16, "{r}");
    assert_eq!(item_gets(&up.requests()), 16);
    store.check_invariants();
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let (up, store) = with_source(
        "maas",
        &["arch=amd64", "release~(jammy|noble)", "--max", "1"],
    );
    let before = walk(&store.root());
    let r = store.run(&["sync", "maas", "--dry-run"]).ok();
    let plus = r.stdout.lines().filter(|l| l.starts_with("+ ")).count();
    assert_eq!(plus, 8, "{}", r.stdout);
    assert!(r.stdout.contains("would fetch 8 files"), "{}", r.stdout);
    assert_eq!(item_gets(&up.requests()), 0);
    assert_eq!(walk(&store.root()), before, "dry run wrote to the store");
    assert!(store.snapshots("maas").is_empty());
}

fn walk(p: &std::path::Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = walkdir::WalkDir::new(p)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        // A read-only WAL reader creates SQLite's empty shared-memory index files: no data.
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            !n.ends_with("-shm") && !n.ends_with("-wal")
        })
        .map(|e| {
            (
                e.path().display().to_string(),
                e.metadata().map(|m| m.len()).unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn second_sync_of_a_source_names_the_holder_and_reads_still_work() {
    let (up, store) = with_source("maas", &[]);
    // Slow every item down so the first sync holds the lock for a while.
    up.faults(Faults {
        stall: Some((1.0, Duration::from_millis(700))),
        ..Faults::default()
    });
    let mut first = store
        .cmd(&["sync", "maas", "--jobs", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = store.root().join("locks/source-maas");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "first sync never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = store.run(&["sync", "maas"]).fails();
    assert!(second.stderr.contains("locked by pid"), "{}", second.stderr);
    assert!(second.stderr.contains("sync maas"), "{}", second.stderr);
    // Read-only commands work while the sync runs.
    store.run(&["snapshots"]).ok();
    store.run(&["source", "list"]).ok();
    up.faults(Faults::default());
    assert!(first.wait().unwrap().success());
    assert_eq!(store.snapshots("maas").len(), 1);
    store.check_invariants();
}

/// With more downloads than `--jobs` (the download loop then collects finished ones on its
/// timer, not as each one ends), every download that failed is counted, every one that
/// finished is kept, and the next run fetches only the failed ones.
#[test]
fn with_more_downloads_than_jobs_failures_are_counted_and_the_finished_ones_kept() {
    let (up, store) = with_source("maas", &[]);
    let mut items: Vec<std::path::PathBuf> = walkdir::WalkDir::new(up.current())
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.is_file() && !p.to_string_lossy().contains("/streams/"))
        .collect();
    items.sort();
    assert_eq!(items.len(), 36);
    // three items served with other bytes of the same size: checksum mismatches
    let broken: Vec<(std::path::PathBuf, Vec<u8>)> = items
        .iter()
        .step_by(12)
        .map(|p| (p.clone(), std::fs::read(p).unwrap()))
        .collect();
    for (p, bytes) in &broken {
        let flipped: Vec<u8> = bytes.iter().map(|b| !b).collect();
        std::fs::write(p, flipped).unwrap();
    }
    let r = store.run(&["sync", "maas", "--jobs", "2"]).fails();
    assert!(
        r.stderr
            .contains("3 of 36 downloads failed; 33 finished downloads are kept"),
        "{}",
        r.stderr
    );
    for (p, bytes) in &broken {
        std::fs::write(p, bytes).unwrap();
    }
    up.clear();
    let r = store.sync_json("maas");
    assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    assert_eq!(item_gets(&up.requests()), 3);
    store.check_invariants();
}

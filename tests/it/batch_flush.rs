//! Batched durability (issue 13 item 1): a sync renames a batch of blobs into `blobs/` without
//! fsync, flushes them with one `syncfs(2)`, and only then inserts their rows. The debug-only
//! failpoint `store-abort-before-flush` aborts the process between the renames and the flush:
//! the renamed files then have no row, and the next sync and gc deal with them.

use crate::common::{Store, Upstream, blob_files, blob_rows};
use streamvault::streamgen::{Bulk, StreamSpec};

#[test]
fn abort_between_renames_and_flush_leaves_no_rows_and_next_sync_completes() {
    let up = Upstream::with_spec(StreamSpec {
        bulk: Some(Bulk {
            products: 1,
            versions: 2,
            files_per_version: 5,
            file_size: 16 * 1024,
        }),
        ..StreamSpec::generation(1)
    });
    let store = Store::new();
    store.add("maas", &up, &[]);
    store.run(&["config", "set", "auto-gc", "off"]).ok();

    let out = store
        .cmd(&["sync", "maas"])
        .env("STREAMVAULT_FAILPOINT", "store-abort-before-flush")
        .output()
        .unwrap();
    // Aborted by the failpoint (SIGABRT: no exit code), not finished.
    assert_eq!(out.status.code(), None, "sync was not aborted: {out:?}");

    let files = blob_files(&store);
    let rows = blob_rows(&store);
    let unflushed: Vec<&String> = files.difference(&rows).collect();
    assert!(
        !unflushed.is_empty(),
        "the aborted batch renamed no file into blobs/"
    );
    assert!(
        rows.is_empty(),
        "rows exist for blobs whose batch was never flushed: {rows:?}"
    );
    assert!(store.snapshots("maas").is_empty());
    store.check_invariants();

    // gc removes the renamed files no row claims (with no grace).
    store.run(&["gc", "--grace", "0"]).ok();
    let left = blob_files(&store);
    assert!(
        unflushed.iter().all(|f| !left.contains(*f)),
        "gc kept unclaimed blob files"
    );

    // The next sync places them again and completes the snapshot.
    let r = store.sync_json("maas");
    assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    store.check_invariants();
    let rows = blob_rows(&store);
    for f in &unflushed {
        assert!(rows.contains(*f), "blob {f} not recorded by the next sync");
    }
}

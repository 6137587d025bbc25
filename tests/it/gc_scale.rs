//! gc of a store where most rows go at once: the path on which gc rebuilds the indexes that
//! lose many rows (instead of deleting from them one entry at a time) and unlinks on several
//! threads. The catalogue must come out whole (same indexes, integrity and foreign keys intact,
//! exactly the unreferenced rows gone) and the report must count each freed inode once, also
//! for a blob hardlinked from a dropped tree (the links of one inode are unlinked by one thread,
//! the tree before the blob).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use streamvault::catalog::{self, Item, NewSnapshot, NewSource};
use streamvault::checksum::{Algo, Digests, MultiHasher};
use streamvault::gc::{GcOptions, gc, gc_plan};
use streamvault::store::BlobHash;
use streamvault::vault::Vault;

/// More than gc's rebuild threshold (10,000 rows and 1/8 of the table).
const BLOBS: usize = 12_000;

fn indexes(db: &rusqlite::Connection) -> Vec<(String, String)> {
    let mut st = db
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0).unwrap(), r.get(1).unwrap())))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn gc_dropping_most_rows_keeps_the_catalogue_whole_and_counts_freed_inodes_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut vault = Vault::open(&root).unwrap();
    let source = vault
        .catalog
        .add_source(&NewSource {
            name: "scale".into(),
            url: "http://127.0.0.1:9/".into(),
            ..NewSource::default()
        })
        .unwrap();
    let mut digests: Vec<Digests> = Vec::new();
    for i in 0..BLOBS {
        let data = format!("gc scale blob {i:06}\n{}", "y".repeat(i % 50));
        let mut h = MultiHasher::new(&[Algo::Sha256]);
        h.update(data.as_bytes());
        let d = h.finish();
        let path = vault.layout.blob(&d.blake3).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .unwrap();
        f.write_all(data.as_bytes()).unwrap();
        digests.push(d);
    }
    vault.catalog.insert_blobs(&digests).unwrap();
    // Snapshot k names blobs [k*B/4, (k+2)*B/4) for k = 0, 1, 2: keeping the last one drops the
    // first half of the blobs (and two thirds of the item rows).
    let quarter = BLOBS / 4;
    let mut ids = Vec::new();
    for k in 0..3 {
        let items: Vec<Item> = (k * quarter..(k + 2) * quarter)
            .map(|i| {
                let d = &digests[i];
                Item {
                    content_id: "com.example.scale".into(),
                    product: format!("p{:03}", i / 100),
                    version: "v1".into(),
                    item: format!("i{i:06}"),
                    path: Some(format!("scale/{:03}/{i:06}", i / 100)),
                    size: Some(d.size),
                    checksums: d.upstream.clone(),
                    blob: Some(BlobHash::parse(&d.blake3).unwrap()),
                }
            })
            .collect();
        ids.push(
            vault
                .catalog
                .insert_snapshot(&NewSnapshot {
                    source_id: Some(source),
                    source: "scale".into(),
                    url: "http://127.0.0.1:9/".into(),
                    start_path: "streams/v1/index.json".into(),
                    filters: Vec::new(),
                    max: None,
                    keep: false,
                    signed: false,
                    verified: false,
                    signer: None,
                    fetched_bytes: 0,
                    duration_ms: 0,
                    digest: format!("scale-{k}"),
                    documents: Vec::new(),
                    items,
                })
                .unwrap(),
        );
    }
    // An unpublished tree of the first snapshot, older than the grace period: dropped with it.
    // Its files are hardlinks of blobs that go too: each inode is freed once, by its last link.
    let tree = vault.layout.trees().join("old");
    let mut linked = 0u64;
    for (i, d) in digests.iter().enumerate().take(quarter) {
        let target = tree.join(format!("scale/{:03}/{i:06}", i / 100));
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::hard_link(vault.layout.blob(&d.blake3).unwrap(), &target).unwrap();
        linked += 1;
    }
    vault
        .catalog
        .insert_tree(
            "old",
            ids[0],
            catalog::MetadataMode::Verbatim,
            None,
            linked,
            0,
            &[],
        )
        .unwrap();
    let db_path = root.join("catalog.db");
    let before = indexes(&rusqlite::Connection::open(&db_path).unwrap());
    assert!(
        before.iter().any(|(n, _)| n == "snapshot_items_blob"),
        "{before:?}"
    );

    let opts = GcOptions {
        keep_last: 1,
        grace: std::time::Duration::ZERO,
        wait: false,
        orphan_slice: None,
    };
    let report = gc(gc_plan(&mut vault, &opts).unwrap()).unwrap();
    drop(vault);

    let dropped: u64 = (0..2 * quarter).map(|i| digests[i].size).sum();
    assert_eq!(report.blobs_dropped, (2 * quarter) as u64);
    assert_eq!(report.files_unlinked, (2 * quarter) as u64 + linked);
    assert_eq!(report.freed_bytes, dropped, "each freed inode counted once");
    assert_eq!(report.trees_dropped, vec!["old".to_string()]);
    for (i, d) in digests.iter().enumerate() {
        let path = root.join("blobs").join(&d.blake3[..2]).join(&d.blake3);
        assert_eq!(path.exists(), i >= 2 * quarter, "blob {i}");
    }
    assert!(!tree.exists());

    let db = rusqlite::Connection::open(&db_path).unwrap();
    assert_eq!(indexes(&db), before, "the same indexes, as defined");
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let fk: i64 = db
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk, 0);
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM blobs"), (2 * quarter) as i64);
    assert_eq!(
        count("SELECT count(*) FROM snapshot_items"),
        (2 * quarter) as i64
    );
    // The rebuilt index is used and complete: every kept item finds its blob through it.
    assert_eq!(
        count(
            "SELECT count(*) FROM blobs b WHERE EXISTS
             (SELECT 1 FROM snapshot_items i INDEXED BY snapshot_items_blob WHERE i.blob = b.blake3)"
        ),
        (2 * quarter) as i64
    );
    let sha: i64 = count(
        "SELECT count(*) FROM blobs INDEXED BY blobs_sha256 WHERE sha256 IS NOT NULL AND sha256 > ''",
    );
    assert_eq!(sha, (2 * quarter) as i64);
}

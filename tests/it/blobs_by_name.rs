//! Schema 0015: the blob table rebuilt as a `WITHOUT ROWID` table keyed by name, so that gc
//! deletes blob rows in the order of the table and of every index the deletion looks up (linear
//! at 10^6 blobs). The upgrade of an existing catalogue must keep every row, every index and
//! every reference, and the catalogue must enforce foreign keys again afterwards (the rebuild
//! itself runs with them off).

use rusqlite::Connection;
use streamvault::catalog::{Catalog, SCHEMA_VERSION};
use streamvault::store::BlobHash;

use crate::common::migrations;

fn hex(i: u8) -> String {
    blake3::hash(&[i]).to_hex().to_string()
}

type BlobRow = (
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

fn blob_rows(c: &Connection) -> Vec<BlobRow> {
    let mut st = c
        .prepare("SELECT blake3, size, md5, sha256, sha512, created_at FROM blobs ORDER BY blake3")
        .unwrap();
    st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn names(c: &Connection, sql: &str) -> Vec<String> {
    let mut st = c.prepare(sql).unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn upgrade_rebuilds_the_blob_table_by_name_keeping_rows_indexes_and_references() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("catalog.db");
    // A catalogue of the schema before 0015 (the rowid blob table), with blobs referenced by a
    // snapshot's items and documents and one referenced by nothing.
    let (before, index_names) = {
        let c = Connection::open(&db).unwrap();
        let all = migrations();
        let old = all
            .iter()
            .position(|m| m.contains("CREATE TABLE blobs_by_name"))
            .expect("the 0015 migration");
        for (i, sql) in all.iter().take(old).enumerate() {
            c.execute_batch(sql).unwrap();
            c.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .unwrap();
        }
        assert!(c.prepare("SELECT rowid FROM blobs").is_ok());
        let index_names = names(
            &c,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'blobs'
             AND sql IS NOT NULL ORDER BY name",
        );
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        for i in 0..40u8 {
            c.execute(
                "INSERT INTO blobs (blake3, size, md5, sha256, sha512, created_at)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
                rusqlite::params![
                    hex(i),
                    i64::from(i) * 10,
                    (i % 3 == 0).then(|| format!("{i:032x}")),
                    (i % 2 == 0).then(|| format!("{i:064x}")),
                    1_000 + i64::from(i)
                ],
            )
            .unwrap();
        }
        c.execute_batch(
            "INSERT INTO sources (id, name, url, created_at) VALUES (1, 'up', 'http://x/', 0);
             INSERT INTO snapshots (id, source_id, source_name, created_at, url, start_path,
                 filters, keep, signed, verified, products, versions, items, bytes,
                 fetched_bytes, duration_ms, digest)
             VALUES (1, 1, 'up', 0, 'http://x/', 'streams/v1/index.json', '[]', 0, 0, 0,
                 1, 1, 2, 0, 0, 0, 'd');",
        )
        .unwrap();
        for (n, i) in [(0, 3u8), (1, 17)] {
            c.execute(
                "INSERT INTO snapshot_items (snapshot_id, content_id, product, version, item,
                     path, blob)
                 VALUES (1, 'c', 'p', 'v', ?1, ?2, ?3)",
                rusqlite::params![format!("i{n}"), format!("f/{n}"), hex(i)],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO snapshot_documents (snapshot_id, ord, path, kind, blob)
             VALUES (1, 0, 'streams/v1/index.json', 'index', ?1)",
            [hex(29)],
        )
        .unwrap();
        (blob_rows(&c), index_names)
    };
    assert_eq!(before.len(), 40);

    let cat = Catalog::open(&db).unwrap();
    // Foreign keys are enforced again after the rebuild: a referenced blob's row stays.
    let referenced = BlobHash::parse(&hex(17)).unwrap();
    assert!(
        cat.delete_blob_row(&referenced).is_err(),
        "a blob row named by a snapshot item was deleted"
    );
    let unreferenced = BlobHash::parse(&hex(5)).unwrap();
    cat.delete_blob_row(&unreferenced).unwrap();
    drop(cat);

    let c = Connection::open(&db).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    // Keyed by name: no rowid any more.
    assert!(
        c.prepare("SELECT rowid FROM blobs").is_err(),
        "the blob table still has rowids"
    );
    let mut want = before;
    want.retain(|r| r.0 != hex(5));
    assert_eq!(blob_rows(&c), want);
    assert_eq!(
        names(
            &c,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'blobs'
             AND sql IS NOT NULL ORDER BY name",
        ),
        index_names
    );
    assert!(names(&c, "PRAGMA foreign_key_check").is_empty());
    assert_eq!(names(&c, "PRAGMA integrity_check"), ["ok"]);
    // The references still resolve through the foreign keys (the children's `REFERENCES blobs`
    // name the rebuilt table).
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM snapshot_items i JOIN blobs b ON b.blake3 = i.blob",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2);
}

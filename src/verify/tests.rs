//! verify's own unit tests (the command is tested end to end in tests/it/verify.rs).

use super::refetch::refetch_job;
use crate::catalog::Catalog;
use crate::error::Error;
use crate::store::BlobHash;

/// A catalogue with a source `s`, one blob and one snapshot whose item names it.
fn catalog_with_item(dir: &std::path::Path) -> (Catalog, BlobHash) {
    let cat = Catalog::open(&dir.join("catalog.db")).unwrap();
    let hash = BlobHash::parse(&"ab".repeat(32)).unwrap();
    cat.conn()
        .execute_batch(&format!(
            "INSERT INTO sources (id, name, url, mirrors, created_at)
                 VALUES (1, 's', 'http://127.0.0.1:1/', '[\"http://127.0.0.1:2/\"]', 0);
             INSERT INTO blobs (blake3, size, created_at) VALUES ('{hash}', 5, 0);
             INSERT INTO snapshots (id, source_id, source_name, created_at, url, start_path,
                 filters, keep, signed, verified, products, versions, items, bytes,
                 fetched_bytes, duration_ms, digest)
                 VALUES (1, 1, 's', 0, 'http://127.0.0.1:1/', 'streams/v1/index.json', '[]',
                         0, 0, 0, 1, 1, 1, 5, 5, 0, 'd');
             INSERT INTO snapshot_items (snapshot_id, content_id, product, version, item,
                 path, size, blob)
                 VALUES (1, 'c', 'p', 'v', 'i', 'pool/f', 5, '{hash}');"
        ))
        .unwrap();
    (cat, hash)
}

#[test]
fn refetch_places_carry_the_source_mirrors() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, hash) = catalog_with_item(dir.path());
    let job = refetch_job(&cat, &hash).unwrap();
    assert_eq!(job.places.len(), 1);
    assert_eq!(job.places[0].1, "pool/f");
    assert_eq!(job.expect.size, Some(5));
}

#[test]
fn refetch_of_a_removed_source_has_no_mirrors_but_still_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, hash) = catalog_with_item(dir.path());
    cat.conn()
        .execute("DELETE FROM sources WHERE name = 's'", [])
        .unwrap();
    let job = refetch_job(&cat, &hash).unwrap();
    assert_eq!(job.places.len(), 1);
}

/// The mirror lookup used to read any failure as "no mirrors" and go on with the snapshot URL
/// alone: a damaged `mirrors` column, or a catalogue that cannot be read, is an error.
#[test]
fn refetch_mirror_lookup_errors_are_not_no_mirrors() {
    let dir = tempfile::tempdir().unwrap();
    let (cat, hash) = catalog_with_item(dir.path());
    cat.conn()
        .execute(
            "UPDATE sources SET mirrors = 'not json' WHERE name = 's'",
            [],
        )
        .unwrap();
    assert!(matches!(refetch_job(&cat, &hash), Err(Error::Db { .. })));

    let dir = tempfile::tempdir().unwrap();
    let (cat, hash) = catalog_with_item(dir.path());
    cat.conn()
        .execute_batch("PRAGMA foreign_keys = OFF; DROP TABLE sources;")
        .unwrap();
    assert!(matches!(refetch_job(&cat, &hash), Err(Error::Db { .. })));
}

//! Unit tests of the catalogue: migrations, foreign keys, and damaged stored values read as
//! errors (never as a default).

use super::*;
use crate::checksum::{Digests, MultiHasher};

fn digests(data: &[u8]) -> Digests {
    let mut h = MultiHasher::all();
    h.update(data);
    h.finish()
}

#[test]
fn migrate_is_idempotent_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    drop(Catalog::open(&p).unwrap());
    let c = Catalog::open(&p).unwrap();
    assert_eq!(c.user_version().unwrap(), SCHEMA_VERSION);
    let mode: String = c
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn refuses_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    let c = Catalog::open(&p).unwrap();
    c.conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(c);
    assert!(matches!(
        Catalog::open(&p),
        Err(Error::SchemaTooNew { found: 99, .. })
    ));
}

#[test]
fn snapshot_rows_need_blob_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
    let d = digests(b"x");
    let item = Item {
        content_id: "c".into(),
        product: "p".into(),
        version: "1".into(),
        item: "i".into(),
        path: Some("a/b".into()),
        size: Some(1),
        checksums: d.upstream.clone(),
        blob: Some(crate::store::BlobHash::parse(&d.blake3).unwrap()),
    };
    let snap = NewSnapshot {
        source_id: None,
        source: "s".into(),
        url: "u".into(),
        start_path: "p".into(),
        filters: vec![],
        max: None,
        keep: false,
        signed: false,
        verified: false,
        signer: None,
        fetched_bytes: 0,
        duration_ms: 0,
        digest: "d".into(),
        documents: vec![],
        items: vec![item],
    };
    // Without the blob row the foreign key refuses the whole snapshot.
    assert!(c.insert_snapshot(&snap).is_err());
    assert!(c.snapshots(None).unwrap().is_empty());
    c.insert_blob(&d).unwrap();
    let id = c.insert_snapshot(&snap).unwrap();
    assert_eq!(c.items(id).unwrap().len(), 1);
    assert_eq!(
        c.find_blob(&d.upstream, 1)
            .unwrap()
            .as_ref()
            .map(|b| b.as_str()),
        Some(d.blake3.as_str())
    );
    assert_eq!(c.find_blob(&d.upstream, 2).unwrap(), None);
}

fn open(dir: &tempfile::TempDir) -> Catalog {
    Catalog::open(&dir.path().join("c.db")).unwrap()
}

fn add(c: &Catalog, name: &str) {
    c.add_source(&NewSource {
        name: name.into(),
        url: "http://h/".into(),
        ..NewSource::default()
    })
    .unwrap();
}

fn is_db_error<T>(r: Result<T>) -> bool {
    matches!(r, Err(Error::Db { .. }))
}

#[test]
fn damaged_filters_are_an_error_not_no_filters() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    add(&c, "s");
    c.conn
        .execute(
            "UPDATE sources SET filters = '[\"arch=amd64\"' WHERE name = 's'",
            [],
        )
        .unwrap();
    // An empty filter list would make the next sync mirror everything upstream.
    assert!(is_db_error(c.source("s")));
    assert!(is_db_error(c.sources()));
}

#[test]
fn damaged_mirrors_are_not_rewritten_as_none() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    let c = Catalog::open(&p).unwrap();
    add(&c, "s");
    // An old catalogue with user info in the URL (moved out on open) and a damaged mirror list.
    c.conn
        .execute(
            "UPDATE sources SET url = 'http://u:pw@h/', mirrors = 'http://u:pw@m/' WHERE name = 's'",
            [],
        )
        .unwrap();
    drop(c);
    assert!(is_db_error(Catalog::open(&p)));
    let raw = Connection::open(&p).unwrap();
    let mirrors: String = raw
        .query_row("SELECT mirrors FROM sources", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        mirrors, "http://u:pw@m/",
        "the damaged value is left for a human"
    );
}

#[test]
fn a_damaged_credentials_file_is_an_error_not_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    add(&c, "s");
    let creds = c.credentials_path();
    std::fs::write(&creds, b"{\"s\": {\"http://h/\": \"u:p").unwrap();
    assert!(matches!(c.source("s"), Err(Error::Io { .. })));
    // Recording another source's credentials must not replace the damaged file with its own.
    let r = c.add_source(&NewSource {
        name: "t".into(),
        url: "http://u2:p2@h2/".into(),
        ..NewSource::default()
    });
    assert!(r.is_err());
    assert_eq!(
        std::fs::read(&creds).unwrap(),
        b"{\"s\": {\"http://h/\": \"u:p".to_vec()
    );
}

/// A tree and a publication of it, written with raw SQL so the values can be anything.
fn raw_publication(c: &Catalog, mode: &str, action: &str) {
    add(c, "s");
    c.conn
        .execute_batch(&format!(
            "INSERT INTO snapshots (source_name, created_at, url, start_path, filters, keep, signed,
                 verified, products, versions, items, bytes, fetched_bytes, duration_ms, digest)
             VALUES ('s', 0, 'u', 'p', '[]', 0, 0, 0, 0, 0, 0, 0, 0, 0, 'd');
             INSERT INTO trees (name, snapshot_id, mode, files, bytes, created_at)
             VALUES ('t', 1, '{mode}', 0, 0, 0);
             INSERT INTO publications (dest, tree_id, snapshot_id, action, published_at,
                                       published_by)
             VALUES ('/d', 1, 1, '{action}', 0, 'me');"
        ))
        .unwrap();
}

#[test]
fn stored_modes_and_actions_read_back_as_enums() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    raw_publication(&c, "filtered", "rollback");
    let t = c.tree_by_name("t").unwrap().unwrap();
    assert_eq!(t.mode, MetadataMode::Filtered);
    let p = c.publications(None).unwrap();
    assert_eq!(p[0].action, PublicationAction::Rollback);
    assert_eq!(serde_json::to_value(&p[0]).unwrap()["action"], "rollback");
    assert_eq!(serde_json::to_value(&p[0]).unwrap()["mode"], "filtered");
    assert_eq!(
        c.trees_for(SnapshotId(1), MetadataMode::Filtered, None)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_damaged_publication_action_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    raw_publication(&c, "verbatim", "flip");
    assert!(is_db_error(c.publications(None)));
    assert!(is_db_error(c.latest_publication("/d")));
    assert!(is_db_error(c.status_publications(0)));
}

#[test]
fn a_damaged_tree_mode_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    raw_publication(&c, "Verbatim", "publish");
    assert!(is_db_error(c.tree_by_name("t")));
    assert!(is_db_error(c.publications(None)));
}

#[test]
fn a_damaged_auto_publish_mode_is_an_error_not_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    add(&c, "s");
    c.conn
        .execute(
            "UPDATE sources SET publish_dest = '/d', publish_metadata = 'filterd' WHERE name = 's'",
            [],
        )
        .unwrap();
    assert!(is_db_error(c.source("s")));
    c.conn
        .execute("UPDATE sources SET publish_metadata = 'filtered'", [])
        .unwrap();
    let s = c.source("s").unwrap();
    assert_eq!(s.publish.unwrap().metadata, MetadataMode::Filtered);
}

#[test]
fn a_damaged_s3_action_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    let row = NewS3Publication {
        dest: "s3://b/p",
        tree_id: None,
        tree: "t",
        snapshot_id: SnapshotId(1),
        mode: MetadataMode::Verbatim,
        signer: None,
        action: PublicationAction::Publish,
        files: 0,
        bytes: 0,
        by: "me",
    };
    let id = c.insert_s3_publication_listing(&row, &[], &[]).unwrap();
    assert_eq!(
        c.live_s3_publication("s3://b/p").unwrap().unwrap().action,
        PublicationAction::Publish
    );
    c.conn
        .execute(
            "UPDATE s3_publications SET action = 'put' WHERE id = ?1",
            [id],
        )
        .unwrap();
    assert!(is_db_error(c.s3_publications(None)));
}

#[test]
fn run_results_are_an_enum_and_a_damaged_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    let a = c.start_run("s").unwrap();
    assert_eq!(c.last_runs().unwrap()[0].result, RunResult::Running);
    c.finish_run(a, RunResult::Unchanged, None, 0, 0, None)
        .unwrap();
    let runs = c.last_runs().unwrap();
    assert_eq!(runs[0].result, RunResult::Unchanged);
    assert_eq!(
        serde_json::to_value(&runs[0]).unwrap()["result"],
        "unchanged"
    );
    assert!(c.last_success("s").unwrap().is_some());
    c.conn
        .execute("UPDATE runs SET result = 'ok' WHERE id = ?1", [a])
        .unwrap();
    assert!(is_db_error(c.last_runs()));
}

#[test]
fn tree_documents_read_back_as_blob_hashes_and_a_damaged_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    raw_publication(&c, "verbatim", "publish");
    let good = crate::store::BlobHash::parse(&"ab".repeat(32)).unwrap();
    c.conn
        .execute(
            "INSERT INTO tree_documents (tree_id, path, blake3, size) VALUES (1, 'i.json', ?1, 1)",
            [&good],
        )
        .unwrap();
    assert_eq!(
        c.tree_documents(TreeId(1)).unwrap(),
        vec![("i.json".to_string(), good)]
    );
    c.conn
        .execute_batch("UPDATE tree_documents SET blake3 = '../../etc/passwd'")
        .unwrap();
    assert!(is_db_error(c.tree_documents(TreeId(1))));
}

#[test]
fn a_damaged_validator_blob_is_an_error_not_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(&dir);
    let blob = crate::store::BlobHash::parse(&"cd".repeat(32)).unwrap();
    let row = StoredValidators {
        etag: Some("\"e\"".into()),
        last_modified: None,
        blob: blob.clone(),
    };
    c.save_document_validators(&[("http://h/i.json".into(), row.clone())])
        .unwrap();
    assert_eq!(c.document_validators().unwrap()["http://h/i.json"], row);
    c.conn
        .execute_batch("UPDATE document_validators SET blob = 'CD'")
        .unwrap();
    assert!(is_db_error(c.document_validators()));
}

/// A sync's download batches are committed without the WAL fsync; the connection goes back to
/// full sync after each one, committed or failed, so the snapshot's commit (and every other
/// commit) syncs the WAL that holds them.
#[test]
fn unsynced_blob_rows_are_visible_at_once_and_leave_full_sync_behind() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.db");
    let c = Catalog::open(&p).unwrap();
    let sync_level = |c: &Catalog| -> i64 {
        c.conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(sync_level(&c), 2, "FULL");
    let (a, b) = (digests(b"a"), digests(b"b"));
    c.insert_blobs_unsynced(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(sync_level(&c), 2, "FULL again after a commit");
    // another connection (a concurrent reader) sees the rows
    let other = Catalog::open(&p).unwrap();
    let n: i64 = other
        .conn
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
    // a failed batch (a row the table refuses) rolls back and also leaves FULL behind
    let mut bad = digests(b"c");
    bad.blake3 = String::new();
    c.conn
        .execute_batch("CREATE TRIGGER no_empty BEFORE INSERT ON blobs WHEN NEW.blake3 = '' BEGIN SELECT RAISE(ABORT, 'empty'); END")
        .unwrap();
    assert!(c.insert_blobs_unsynced(&[digests(b"d"), bad]).is_err());
    assert_eq!(sync_level(&c), 2, "FULL again after a failure");
    let n: i64 = other
        .conn
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2, "the failed batch left no row");
}

/// The automatic gc's cursor: advanced in turn and wrapped; a missing row starts at 0 and is
/// written again; a value out of range (the CHECK dropped by a damaged schema) is an error.
#[test]
fn the_gc_cursor_advances_wraps_and_refuses_a_damaged_value() {
    let dir = tempfile::tempdir().unwrap();
    let c = Catalog::open(&dir.path().join("c.db")).unwrap();
    assert_eq!(c.gc_orphan_slice().unwrap(), 0);
    c.advance_gc_orphan_slice(15).unwrap();
    assert_eq!(c.gc_orphan_slice().unwrap(), 0);
    c.advance_gc_orphan_slice(6).unwrap();
    assert_eq!(c.gc_orphan_slice().unwrap(), 7);
    c.conn.execute_batch("DELETE FROM gc_state").unwrap();
    assert_eq!(c.gc_orphan_slice().unwrap(), 0);
    c.advance_gc_orphan_slice(0).unwrap();
    assert_eq!(c.gc_orphan_slice().unwrap(), 1);
    c.conn
        .execute_batch(
            "DROP TABLE gc_state;
             CREATE TABLE gc_state (id INTEGER PRIMARY KEY, orphan_slice INTEGER NOT NULL);
             INSERT INTO gc_state VALUES (1, 16);",
        )
        .unwrap();
    assert!(c.gc_orphan_slice().is_err());
}

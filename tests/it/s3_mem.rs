//! Issue 11, memory of an S3 publish: documents above 256 KiB are recorded in chunks and read
//! back whole (a rollback re-puts them byte for byte; `verify --deep` compares the bucket with
//! them), and a rollback does not rewrite products documents already in the bucket with the
//! same bytes (filtered metadata: content-hashed names). The peak RSS itself is a benchmark
//! (`scripts/bench-s3.sh`, the `many` row), not a test.

use crate::common::s3tree::{Items, moto_with_snapshots, read_tree, s3_run};
use crate::common::{Moto, Store, Upstream};
use streamvault::catalog::DOCUMENT_CHUNK;
use streamvault::streamgen::{Bulk, StreamSpec};

/// The biggest products document of the store's trees (the one listing the bulk items).
fn biggest_document(store: &Store) -> (String, Vec<u8>) {
    let mut best: Option<(String, Vec<u8>)> = None;
    for e in walkdir::WalkDir::new(store.root().join("trees")) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let doc =
            e.path().to_string_lossy().contains("/streams/v1/") && !name.starts_with("index.");
        if e.file_type().is_file() && doc {
            let b = std::fs::read(e.path()).unwrap();
            if best.as_ref().is_none_or(|(_, x)| b.len() > x.len()) {
                best = Some((name, b));
            }
        }
    }
    best.expect("a products document")
}

#[test]
fn a_products_document_above_one_chunk_round_trips_through_rollback_and_deep_verify() {
    let Some(moto) = Moto::start() else { return };
    moto.public_bucket("memb");
    let spec = |generation| StreamSpec {
        bulk: Some(Bulk {
            products: 1,
            versions: 1,
            files_per_version: 3000,
            file_size: 8,
        }),
        ..StreamSpec::generation(generation)
    };
    let up = Upstream::with_spec(spec(1));
    let store = Store::new();
    store.add("maas", &up, &[]);
    store.sync_json("maas");
    let ep = moto.endpoint();
    let dest = "s3://memb/v";
    let r = s3_run(&store, &ep, &["publish", "1", dest, "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let (name, first) = biggest_document(&store);
    assert!(
        first.len() > 2 * DOCUMENT_CHUNK,
        "{name}: {} bytes",
        first.len()
    );
    let key = format!("/memb/v/streams/v1/{name}");
    assert_eq!(moto.http("GET", &key).1, first);

    up.build(&spec(2));
    up.flip(2);
    store.sync_json("maas");
    let r = s3_run(&store, &ep, &["publish", "2", dest, "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_ne!(moto.http("GET", &key).1, first);

    // The rollback re-puts the first document from its chunks, byte for byte.
    let r = s3_run(&store, &ep, &["rollback", dest, "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["snapshot"], 1);
    assert_eq!(moto.http("GET", &key).1, first);
    let t = read_tree(&moto, "/memb/v", Items::Sample(20));
    assert!(t.ok() && t.items > 0, "{:?}", t.problems);

    // Deep verify compares every object with the recorded bytes (the chunks, reassembled).
    let v = s3_run(&store, &ep, &["verify", dest, "--deep", "--json"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
}

#[test]
fn a_filtered_rollback_writes_only_the_index() {
    let Some((moto, _up, store)) = moto_with_snapshots("memf", 2) else {
        return;
    };
    let ep = moto.endpoint();
    let dest = "s3://memf/f";
    for snap in ["1", "2"] {
        let r = s3_run(
            &store,
            &ep,
            &["publish", snap, dest, "--metadata", "filtered", "--json"],
        );
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    }
    let mark = moto.log_text().len();
    let r = s3_run(&store, &ep, &["rollback", dest, "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.json()["snapshot"], 1);
    // index.json and index.sjson; the products documents of publication 1 (content-hashed
    // names) are all still there with the same bytes.
    assert_eq!(r.json()["documents_written"], 2, "{}", r.stdout);
    assert_eq!(moto.count(mark, "PUT"), 2, "{}", moto.log_text());
    let t = read_tree(&moto, "/memf/f", Items::All);
    assert!(t.ok() && t.hashed_names, "{:?}", t.problems);
}

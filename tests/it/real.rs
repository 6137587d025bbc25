//! The real upstream metadata in ../shared/fixtures/real: signatures, parsing, counts.

use crate::common::{Store, fixture};
use streamvault::openpgp::{self, Keyring};
use streamvault::serve::{self, ServeOptions};
use streamvault::streams::{self, Document};

const CLOUD: &str = "real/cloud-images-released-2016";
const PRODUCTS: &str = "streams/v1/com.ubuntu.cloud:released:download.sjson";
const KEY_GPG: &str = "real/keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg";
const KEY_ASC: &str = "real/keys/ubuntu-cloud-image-builder-7FF3F408476CF100.asc";

#[test]
fn real_signed_products_file_verifies_and_parses_with_the_upstream_counts() {
    let doc = std::fs::read(fixture(CLOUD).join(PRODUCTS)).unwrap();
    for key in [KEY_GPG, KEY_ASC] {
        let kr = Keyring::open(&fixture(key)).unwrap();
        let v = openpgp::verify_cleartext(&kr, &doc).unwrap();
        assert_eq!(v.signer, "4A3CE3CD565D7EB5C810E2B97FF3F408476CF100");
        let Document::Products(p) = streams::parse("products", &v.payload).unwrap() else {
            panic!("not a products document")
        };
        assert_eq!(p.product_count(), 51);
        assert_eq!(p.version_count(), 1319);
        assert_eq!(p.item_count(), 7008);
    }
}

#[test]
fn real_stream_dry_run_over_http_with_filters() {
    let server = serve::spawn(ServeOptions::new(fixture(CLOUD))).unwrap();
    let store = Store::new();
    let url = server.url();
    let key = fixture(KEY_ASC);
    store
        .run(&[
            "source",
            "add",
            "cloud",
            &url,
            "--path",
            PRODUCTS,
            "--keyring",
            key.to_str().unwrap(),
            "release=xenial",
            "arch=amd64",
            "ftype=disk1.img",
            "--max",
            "1",
        ])
        .ok();
    let r = store.run(&["sync", "cloud", "--dry-run"]).ok();
    let plus: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("+ ")).collect();
    assert_eq!(plus.len(), 1, "{}", r.stdout);
    assert!(plus[0].contains("xenial"), "{}", r.stdout);
    // One request: the products document; no item was fetched (they are not on disk anyway).
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn negative_fixture_is_rejected_naming_the_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("streams/v1");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::copy(
        fixture("real/negative/index-2016-minus-joyent-signed-by-juju-test-key.sjson"),
        v1.join("index.sjson"),
    )
    .unwrap();
    let server = serve::spawn(ServeOptions::new(dir.path())).unwrap();
    let store = Store::new();
    let url = server.url();
    let key = fixture(KEY_GPG);
    store
        .run(&[
            "source",
            "add",
            "neg",
            &url,
            "--keyring",
            key.to_str().unwrap(),
        ])
        .ok();
    let r = store.run(&["sync", "neg"]).fails();
    assert!(r.stderr.contains("signature check failed"), "{}", r.stderr);
    assert!(
        r.stderr.contains("607AEAF0") || r.stderr.to_lowercase().contains("607aeaf0"),
        "{}",
        r.stderr
    );
}

#[test]
fn maas_trimmed_unsigned_tree_plans_every_item() {
    let server = serve::spawn(ServeOptions::new(fixture("real/maas-stable-2025-trimmed"))).unwrap();
    let store = Store::new();
    let url = format!("{}streams/v1/index.json", server.url());
    store.run(&["source", "add", "maas", &url]).ok();
    let r = store.run(&["sync", "maas", "--dry-run", "--json"]).ok();
    let rep = &r.json()[0];
    assert_eq!(rep["documents"], 4, "{rep}");
    assert!(rep["items"].as_u64().unwrap() > 20, "{rep}");
    assert!(rep["signer"].is_null());
}

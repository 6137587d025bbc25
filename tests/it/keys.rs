//! `key generate/list/export`: signing keys of the store, names refused when they are not plain
//! names, and an exported public key that `gpgv` accepts for the store's signatures.

use std::os::unix::fs::MetadataExt;

use crate::common::{Store, gpgv, p};

#[test]
fn keys_generate_list_export_and_bad_names() {
    let store = Store::new();
    assert_eq!(
        store.run(&["key", "list", "--json"]).ok().json(),
        serde_json::json!([])
    );
    store.run(&["key", "generate", "--name", "prod"]).ok();
    let r = store.run(&["key", "generate", "--name", "prod"]).fails();
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    let r = store.run(&["key", "generate", "--name", "../x"]).fails();
    assert!(r.stderr.contains("invalid key name"), "{}", r.stderr);
    let list = store.run(&["key", "list", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "prod");
    assert_eq!(list[0]["fingerprint"].as_str().unwrap().len(), 40);
    let key = store.root().join("keys/prod.key");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
    let human = store.run(&["key", "list"]).ok().stdout;
    assert!(human.contains("prod"), "{human}");
    let r = store.run(&["key", "export", "nope", "--binary"]).fails();
    assert!(
        r.stderr.contains("no signing key named `nope`"),
        "{}",
        r.stderr
    );
    // The binary export is a keyring gpgv loads (it verifies our own signature).
    let ring = store.dir.path().join("prod.gpg");
    store
        .run(&["key", "export", "prod", "--binary", "--output", p(&ring)])
        .ok();
    let k =
        streamvault::keys::load(&streamvault::store::Layout::new(store.root()), "prod").unwrap();
    let doc = store.dir.path().join("doc.sjson");
    std::fs::write(&doc, k.clearsign(b"{\"a\": 1}\n").unwrap()).unwrap();
    assert!(gpgv(&ring, &doc).status.success());
}

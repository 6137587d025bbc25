//! Bad input, each refused with one clear line, a non-zero exit and no snapshot.

use crate::common::{Store, Upstream, with_source};
use streamvault::openpgp::SigningKey;
use streamvault::streamgen::{BOOTLOADER_CONTENT_ID, V3_CONTENT_ID};

fn sjson(up: &Upstream, cid: &str) -> std::path::PathBuf {
    up.current().join(format!("streams/v1/{cid}.sjson"))
}

/// Rewrite a products document with `f`, re-sign it with the upstream key.
fn rewrite(up: &Upstream, cid: &str, f: impl FnOnce(&mut serde_json::Value)) {
    let p = up.current().join(format!("streams/v1/{cid}.json"));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    let text = serde_json::to_vec_pretty(&v).unwrap();
    std::fs::write(sjson(up, cid), up.key.clearsign(&text).unwrap()).unwrap();
}

fn expect_failure(up: &Upstream, store: &Store, needle: &str) {
    let r = store.run(&["sync", "maas"]).fails();
    assert!(
        r.stderr.to_lowercase().contains(&needle.to_lowercase()),
        "want `{needle}` in:\n{}",
        r.stderr
    );
    assert!(store.snapshots("maas").is_empty());
    let _ = up;
}

#[test]
fn tampered_signature() {
    let (up, store) = with_source("maas", &[]);
    let p = sjson(&up, V3_CONTENT_ID);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text.replacen("20240301", "20240302", 1)).unwrap();
    expect_failure(&up, &store, "signature check failed");
}

#[test]
fn wrong_keyring() {
    let up = Upstream::new();
    let store = Store::new();
    let other = SigningKey::generate("other <other@example.invalid>").unwrap();
    let k = store.dir.path().join("other.gpg");
    std::fs::write(&k, other.public_keyring_binary().unwrap()).unwrap();
    let url = up.url();
    store
        .run(&[
            "source",
            "add",
            "maas",
            &url,
            "--keyring",
            k.to_str().unwrap(),
        ])
        .ok();
    expect_failure(&up, &store, "signature check failed");
}

#[test]
fn unsigned_document_under_a_signed_start() {
    let (up, store) = with_source("maas", &[]);
    let json = up
        .current()
        .join(format!("streams/v1/{BOOTLOADER_CONTENT_ID}.json"));
    std::fs::copy(json, sjson(&up, BOOTLOADER_CONTENT_ID)).unwrap();
    expect_failure(&up, &store, "is not clearsigned");
}

#[test]
fn checksum_mismatch() {
    let (up, store) = with_source("maas", &[]);
    let p = up.current().join("noble/amd64/20240601/squashfs.manifest");
    let mut data = std::fs::read(&p).unwrap();
    data[0] ^= 1;
    std::fs::write(&p, data).unwrap();
    expect_failure(&up, &store, "sha256");
}

#[test]
fn size_mismatch() {
    let (up, store) = with_source("maas", &[]);
    let p = up.current().join("noble/amd64/20240601/squashfs.manifest");
    let mut data = std::fs::read(&p).unwrap();
    data.push(b'x');
    std::fs::write(&p, data).unwrap();
    expect_failure(&up, &store, "longer than the expected");
}

fn bad_path(path: &str) {
    let (up, store) = with_source("maas", &[]);
    rewrite(&up, BOOTLOADER_CONTENT_ID, |v| {
        let prods = v["products"].as_object_mut().unwrap();
        let (_, prod) = prods.iter_mut().next().unwrap();
        let vers = prod["versions"].as_object_mut().unwrap();
        let (_, ver) = vers.iter_mut().next().unwrap();
        let items = ver["items"].as_object_mut().unwrap();
        let (_, item) = items.iter_mut().next().unwrap();
        item["path"] = serde_json::Value::String(path.to_string());
    });
    expect_failure(&up, &store, "path");
}

#[test]
fn dotdot_path() {
    bad_path("bootloaders/../../../etc/passwd");
}

#[test]
fn absolute_path() {
    bad_path("/etc/passwd");
}

#[test]
fn nul_in_path() {
    bad_path("bootloaders/a\0b");
}

#[test]
fn missing_content_id() {
    let (up, store) = with_source("maas", &[]);
    rewrite(&up, V3_CONTENT_ID, |v| {
        v.as_object_mut().unwrap().remove("content_id");
    });
    expect_failure(&up, &store, "content_id");
}

#[test]
fn unknown_format() {
    let (up, store) = with_source("maas", &[]);
    rewrite(&up, V3_CONTENT_ID, |v| {
        v["format"] = "products:9.9".into();
    });
    expect_failure(&up, &store, "unknown format");
}

#[test]
fn non_json_body() {
    let (up, store) = with_source("maas", &[]);
    std::fs::write(
        sjson(&up, V3_CONTENT_ID),
        up.key.clearsign(b"<html>not json</html>").unwrap(),
    )
    .unwrap();
    expect_failure(&up, &store, "json");
}

#[test]
fn http_404_without_mirrors() {
    let up = Upstream::new();
    let store = Store::new();
    let url = format!("{}nothing-here/", up.url());
    store
        .run(&["source", "add", "maas", &url, "--keyring", up.keyring_str()])
        .ok();
    expect_failure(&up, &store, "404");
}

#[test]
fn usage_errors_before_any_network_access() {
    let up = Upstream::new();
    let store = Store::new();
    let url = up.url();
    let k = up.keyring_str();
    for args in [
        vec!["source", "add", "x", url.as_str(), "--keyring", k, "arch"],
        vec!["source", "add", "x", url.as_str(), "--keyring", k, "--keep"],
        vec![
            "source",
            "add",
            "x",
            url.as_str(),
            "--keyring",
            k,
            "release~(jammy",
        ],
        vec!["source", "add", "../x", url.as_str()],
        vec![
            "source",
            "add",
            "x",
            url.as_str(),
            "--keyring",
            "/nonexistent/keyring.gpg",
        ],
    ] {
        store.run(&args).fails();
    }
    assert!(up.requests().is_empty());
    // clap usage errors: exit 2, no panic
    let r = store.run(&["sync", "--jobs", "0", "x"]);
    assert_eq!(r.code, 2);
    store.run(&["sync"]).fails();
    store.run(&["sync", "nosuch"]).fails();
    store.run(&["snapshot", "show", "42"]).fails();
}

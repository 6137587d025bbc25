//! Issue 13 item 5: a signed document is verified and parsed at the same time
//! (`openpgp::verify_cleartext_with`); the parse is used only when the signature verifies, and
//! what a sync reports does not change: a bad signature wins over whatever the parse found.

use crate::common::{Store, Upstream, fixture, with_source};
use streamvault::openpgp::{self, Keyring};
use streamvault::streamgen::V3_CONTENT_ID;
use streamvault::streams::{self, Document};

fn sjson(up: &Upstream) -> std::path::PathBuf {
    up.current()
        .join(format!("streams/v1/{V3_CONTENT_ID}.sjson"))
}

/// Changes the signed text without re-signing it, runs a sync: the signature error, never the
/// parse error, and no snapshot.
fn refused_for_the_signature(change: impl FnOnce(&str) -> String, parse_error: &str) {
    let (up, store): (Upstream, Store) = with_source("maas", &[]);
    let p = sjson(&up);
    let text = std::fs::read_to_string(&p).unwrap();
    let changed = change(&text);
    assert_ne!(changed, text, "the change did not apply");
    std::fs::write(&p, changed).unwrap();
    for args in [&["sync", "maas"][..], &["sync", "maas", "--dry-run"]] {
        let r = store.run(args).fails();
        assert!(
            r.stderr.contains("signature check failed"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains(parse_error), "{args:?}: {}", r.stderr);
    }
    assert!(store.snapshots("maas").is_empty());
}

#[test]
fn a_bad_signature_wins_over_an_unsafe_path_in_the_same_text() {
    refused_for_the_signature(
        |t| t.replacen("\"path\": \"", "\"path\": \"../../", 1),
        "bad path",
    );
}

#[test]
fn a_bad_signature_wins_over_text_that_is_not_json() {
    refused_for_the_signature(
        |t| t.replacen("\"products\"", "products", 1),
        "not valid JSON",
    );
}

#[test]
fn the_real_products_document_read_while_verified_has_the_upstream_counts() {
    let dir = fixture("real/cloud-images-released-2016");
    let doc =
        std::fs::read(dir.join("streams/v1/com.ubuntu.cloud:released:download.sjson")).unwrap();
    let kr = Keyring::open(&fixture(
        "real/keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg",
    ))
    .unwrap();
    let v = openpgp::verify_cleartext_with(&kr, &doc, |p| streams::parse("products", p)).unwrap();
    assert_eq!(v.signer, "4A3CE3CD565D7EB5C810E2B97FF3F408476CF100");
    let Ok(Document::Products(p)) = v.value else {
        panic!("not a products document")
    };
    assert_eq!(
        (p.product_count(), p.version_count(), p.item_count()),
        (51, 1319, 7008)
    );
    // One byte of the text changed: the parse result is dropped, the error is the signature's.
    let tampered = String::from_utf8(doc)
        .unwrap()
        .replacen("amd64", "amd65", 1);
    let err =
        openpgp::verify_cleartext_with(&kr, tampered.as_bytes(), |p| streams::parse("products", p))
            .unwrap_err();
    assert!(
        matches!(err, openpgp::Error::BadSignature { .. }),
        "{err:?}"
    );
}

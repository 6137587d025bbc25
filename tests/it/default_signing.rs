//! Filtered publishes are signed by default (issue 12 item 4): without `--sign-key` the store's
//! key `default` is generated on first use and signs every document, `gpgv` verifies them with
//! the binary keyring printed for MAAS's `keyring_filename`, the `.json` twins stay;
//! `--unsigned` opts out; `key export --armor` warns that MAAS needs the binary form.

use std::path::{Path, PathBuf};

use crate::common::{Store, gpgv, p, synced_source};

fn www(store: &Store, name: &str) -> PathBuf {
    let d = store.dir.path().join("www");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn filtered_without_a_key_is_signed_with_the_default_key_and_gpgv_verifies_it() {
    // Both content ids survive (images and a bootloader), so several products documents.
    let (_up, store) = synced_source("maas", &["arch=amd64", "release~jammy", "--or", "os~grub"]);
    assert!(store.run(&["key", "list", "--json"]).ok().json()[0].is_null());

    let dest = www(&store, "stable");
    let r = store
        .run(&["publish", "maas", p(&dest), "--metadata", "filtered"])
        .ok();
    let ring = store.root().join("keyrings/default.gpg");
    assert!(
        r.stdout.contains(&format!(
            "keyring for MAAS (keyring_filename): {}\n",
            ring.display()
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("generated the store's signing key `default`"),
        "{}",
        r.stdout
    );
    let keys = store.run(&["key", "list", "--json"]).ok().json();
    assert_eq!(keys[0]["name"], "default");
    // The printed keyring is the binary export.
    let bin = store.run(&["key", "export", "default", "--binary"]).ok();
    assert!(bin.stderr.is_empty(), "{}", bin.stderr);
    let exported = store.dir.path().join("exported.gpg");
    store
        .run(&["key", "export", "default", "--binary", "-o", p(&exported)])
        .ok();
    assert_eq!(
        std::fs::read(&ring).unwrap(),
        std::fs::read(&exported).unwrap()
    );

    // Every document is there signed and as its `.json` twin; every `.sjson` verifies.
    let v1 = dest.join("streams/v1");
    let files = names(&v1);
    let sjson: Vec<&String> = files.iter().filter(|n| n.ends_with(".sjson")).collect();
    assert!(sjson.len() >= 3, "index + 2 products documents: {files:?}");
    for s in &sjson {
        let twin = s.replace(".sjson", ".json");
        assert!(files.contains(&twin), "{twin} missing: {files:?}");
        let out = gpgv(&ring, &v1.join(s));
        assert!(
            out.status.success(),
            "gpgv refused {s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A tampered copy does not verify (gpgv really checks).
    let bad = store.dir.path().join("bad.sjson");
    let text = std::fs::read_to_string(v1.join("index.sjson")).unwrap();
    std::fs::write(&bad, text.replacen("products:1.0", "products:1.1", 1)).unwrap();
    assert!(!gpgv(&ring, &bad).status.success());

    // The next filtered publish reuses the key.
    let dest2 = www(&store, "two");
    let r2 = store
        .run(&[
            "publish",
            "maas",
            p(&dest2),
            "--metadata",
            "filtered",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r2["key_created"], false);
    assert_eq!(r2["signer"], keys[0]["fingerprint"]);
    assert_eq!(r2["keyring"], p(&ring));
    assert_eq!(
        store
            .run(&["key", "list", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn unsigned_opts_out_and_verbatim_is_never_resigned() {
    let (_up, store) = synced_source("jammy", &["release~jammy", "arch=amd64"]);
    let dest = www(&store, "unsigned");
    let r = store
        .run(&[
            "publish",
            "jammy",
            p(&dest),
            "--metadata",
            "filtered",
            "--unsigned",
            "--json",
        ])
        .ok()
        .json();
    assert!(r["signer"].is_null());
    assert!(r["keyring"].is_null());
    let files = names(&dest.join("streams/v1"));
    assert!(files.iter().all(|n| n.ends_with(".json")), "{files:?}");
    assert!(files.contains(&"index.json".to_string()));
    assert!(!store.root().join("keys/default.key").exists());

    // Contradictions are refused before anything happens.
    let bad = store.run(&[
        "publish",
        "jammy",
        p(&www(&store, "x")),
        "--metadata",
        "filtered",
        "--unsigned",
        "--sign-key",
        "default",
    ]);
    // A usage error (clap), exit 2.
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("--unsigned"), "{}", bad.stderr);

    // Verbatim keeps upstream's signatures: no key is generated.
    let r = store
        .run(&[
            "publish",
            "jammy",
            p(&www(&store, "v")),
            "--force",
            "--json",
        ])
        .ok()
        .json();
    assert!(r["keyring"].is_null());
    assert!(!store.root().join("keys/default.key").exists());
}

#[test]
fn armoured_export_warns_that_maas_needs_the_binary_form() {
    let store = Store::new();
    store.run(&["key", "generate"]).ok();
    let r = store.run(&["key", "export", "default", "--armor"]).ok();
    assert!(r.stdout.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    assert!(
        lines[0].starts_with("streamvault: warning: "),
        "{}",
        r.stderr
    );
    assert!(lines[0].contains("binary"), "{}", r.stderr);
}

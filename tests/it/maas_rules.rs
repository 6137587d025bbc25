//! MAAS client rules before the flip (issue 12 item 3): filtered metadata that drops what MAAS
//! 3.8 requires (here every `manifest` item) is refused, naming product, version and rule,
//! unless `--force` (then warnings); a rule the upstream itself breaks (the generated test
//! stream breaks a few) is only a warning.

use std::path::PathBuf;

use crate::common::{Store, p, synced_source};

fn www(store: &Store, name: &str) -> PathBuf {
    let d = store.dir.path().join("www");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn filters_that_drop_manifests_are_refused_before_the_flip_unless_forced() {
    let (up, store) = synced_source("nomani", &["arch=amd64", "ftype!=manifest"]);
    let dest = www(&store, "stable");
    let r = store
        .run(&[
            "publish",
            "nomani",
            p(&dest),
            "--metadata",
            "filtered",
            "--unsigned",
        ])
        .fails();
    assert!(r.stderr.contains("MAAS client rule"), "{}", r.stderr);
    assert!(r.stderr.contains("version-item:manifest"), "{}", r.stderr);
    assert!(r.stderr.contains(" version "), "{}", r.stderr);
    assert!(
        r.stderr.lines().nth(1).unwrap().starts_with("hint: "),
        "{}",
        r.stderr
    );
    // Nothing flipped.
    assert!(std::fs::symlink_metadata(&dest).is_err());

    let r = store
        .run(&[
            "publish",
            "nomani",
            p(&dest),
            "--metadata",
            "filtered",
            "--unsigned",
            "--force",
        ])
        .ok();
    assert!(
        r.stderr.lines().any(|l| l
            .starts_with("streamvault: warning: MAAS rule broken by the filters")
            && l.contains("version-item:manifest")),
        "{}",
        r.stderr
    );
    assert!(
        std::fs::symlink_metadata(&dest)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // Filters that keep whole image versions publish; what the test stream itself breaks
    // (a product without `release_title`, bootloaders without `src_version`) is only a warning.
    let ok = Store::new();
    ok.add("amd64", &up, &["arch=amd64"]);
    ok.sync_json("amd64");
    let r = ok
        .run(&[
            "publish",
            "amd64",
            p(&www(&ok, "a")),
            "--metadata",
            "filtered",
            "--unsigned",
        ])
        .ok();
    assert!(!r.stderr.contains("broken by the filters"), "{}", r.stderr);
    assert!(
        r.stderr.lines().any(|l| l
            .starts_with("streamvault: warning: MAAS rule already broken upstream")
            && l.contains("product-field:release_title")),
        "{}",
        r.stderr
    );
}

//! A composed publication to an S3 DEST (moto on 127.0.0.1, as in `s3.rs`): the composed tree
//! reaches the bucket through the same path as any tree, the python `sstream-mirror` mirrors it
//! over HTTP with the store key's keyring and nothing missing, and `publications --json` lists
//! the composed tree's inputs locally. Skipped (with a printed reason) without moto.

use crate::common::compose::python_mirror;
use crate::common::{Moto, Store, Upstream, files_under, reference_sstream_mirror};

fn sv(store: &Store, moto: &Moto, args: &[&str]) -> String {
    let o = store
        .cmd(args)
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    text
}

#[test]
fn a_composition_reaches_an_s3_dest_and_the_python_client_mirrors_it() {
    let Some(moto) = Moto::start() else { return };
    moto.public_bucket("compose");
    let up = Upstream::new();
    let s = Store::new();
    s.add("bootloaders", &up, &["--max", "1", "os~(grub*|pxelinux)"]);
    s.add("jammy", &up, &["--max", "1", "arch=amd64", "release~jammy"]);
    s.sync_json("bootloaders");
    s.sync_json("jammy");
    s.run(&["key", "generate", "--name", "k"]).ok();
    let ring = s.dir.path().join("k.gpg");
    s.run(&[
        "key",
        "export",
        "k",
        "--binary",
        "-o",
        ring.to_str().unwrap(),
    ])
    .ok();
    let dest = "s3://compose/maas/stable";
    sv(
        &s,
        &moto,
        &[
            "publish",
            "bootloaders",
            "jammy",
            dest,
            "--metadata",
            "filtered",
            "--sign-key",
            "k",
        ],
    );
    let (st, index) = moto.http("GET", "/compose/maas/stable/streams/v1/index.json");
    assert_eq!(st, 200);
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(index["index"].as_object().unwrap().len(), 2, "{index}");

    // The one tree built is the composition: both inputs recorded.
    let trees: Vec<_> = std::fs::read_dir(s.root().join("trees"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(trees.len(), 1, "{trees:?}");
    assert!(
        trees[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains('+'),
        "{trees:?}"
    );

    if let Some(py) = reference_sstream_mirror() {
        let w = tempfile::tempdir().unwrap();
        let url = format!("{}/compose/maas/stable/", moto.endpoint());
        let out = python_mirror(&py, &url, &ring, w.path(), "out", &[]);
        let want: Vec<String> = files_under(&trees[0])
            .into_iter()
            .filter(|f| !f.starts_with("streams/"))
            .collect();
        let got = files_under(&out);
        let missing: Vec<_> = want.iter().filter(|f| !got.contains(f)).collect();
        assert!(missing.is_empty(), "missing: {missing:?}");
        assert!(want.iter().any(|f| f.contains("bootloaders/")), "{want:?}");
        assert!(want.iter().any(|f| f.contains("/amd64/")), "{want:?}");
    }
}

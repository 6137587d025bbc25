//! Composed publications (issue 12 items 2 and 5): `publish A B … DEST` puts several snapshots
//! in one tree with one index. The MAAS docs' union (images + bootloaders) plus a local source of
//! custom images through `source add` + one publish holds what the drop-in's two invocations
//! into one directory hold plus the custom image; every re-signed document passes `gpgv`; the
//! python `sstream-mirror` mirrors the composition over HTTP with nothing missing; conflicts and
//! verbatim over a shared content id are refused; rollback, status, publications, gc and verify
//! treat the composition like any other publication; auto-publish rebuilds the whole
//! composition and never replaces it with one source's snapshot.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use streamvault::serve::{self, ServeOptions};

use crate::common::compose::{
    BOOTLOADERS, CustomStream, add_custom_source, bootloaders_and_jammy,
    bootloaders_jammy_and_noble, compose_filtered, dest, item_files, python_mirror,
};
use crate::common::{
    Store, Upstream, assert_complete, gpgv, linked_tree, p, reference_sstream_mirror,
    sstream_mirror_link, tree_of,
};

const IMAGES: [&str; 4] = ["--max", "1", "arch=amd64", "release~(jammy|noble)"];

/// A MAAS-shaped custom image as a local stream: `streams/v1/index.json` and one unsigned
/// products document (content id `com.example.maas:custom`) listing four files.
fn custom_stream(dir: &Path) -> BTreeSet<String> {
    CustomStream {
        cid: "com.example.maas:custom",
        doc: "com.example.maas:custom.json",
        pid: "com.example.maas:custom:mycloud:amd64",
        fields: json!({
            "arch": "amd64", "os": "custom", "release": "mycloud",
            "release_title": "My cloud", "release_codename": "mycloud",
            "subarch": "ga-24.04", "subarches": "generic,ga-24.04", "kflavor": "generic",
            "krel": "noble", "label": "stable", "version": "24.04"
        }),
        prefix: "custom/amd64/ga-24.04/mycloud",
        items: &[
            ("boot-kernel", "boot-kernel"),
            ("boot-initrd", "boot-initrd"),
            ("squashfs", "squashfs"),
            ("manifest", "manifest"),
        ],
    }
    .write(dir)
}

/// `images` and `bootloaders` of one upstream, and `custom` from a local directory, synced.
fn three_sources(up: &Upstream, store: &Store) -> BTreeSet<String> {
    let custom_dir = store.dir.path().join("custom-src");
    let custom = custom_stream(&custom_dir);
    store.add("images", up, &IMAGES);
    store.add("bootloaders", up, &BOOTLOADERS);
    add_custom_source(store, &custom_dir, &[]);
    for s in ["images", "bootloaders", "custom"] {
        store.sync_json(s);
    }
    custom
}

#[test]
fn the_docs_union_plus_a_custom_image_in_one_signed_stream() {
    let up = Upstream::new();

    // The drop-in, the docs' two invocations into one directory.
    let a = Store::new();
    let out_a = a.dir.path().join("www/stable");
    let k = format!("--keyring={}", up.keyring_str());
    let url = up.url();
    let o = p(&out_a).to_string();
    for args in [
        vec![
            k.as_str(),
            url.as_str(),
            o.as_str(),
            "arch=amd64",
            "release~(jammy|noble)",
            "--max=1",
        ],
        vec![
            k.as_str(),
            url.as_str(),
            o.as_str(),
            "os~(grub*|pxelinux)",
            "--max=1",
        ],
    ] {
        let r = Command::new(sstream_mirror_link(&a))
            .args(&args)
            .env("STREAMVAULT_ROOT", a.root())
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }

    // Three sources, one publish.
    let b = Store::new();
    let custom = three_sources(&up, &b);
    let d = dest(&b, "stable");
    let r = b
        .run(&[
            "publish",
            "images",
            "bootloaders",
            "custom",
            p(&d),
            "--metadata",
            "filtered",
            "--json",
        ])
        .ok()
        .json();
    let inputs: Vec<&str> = r["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["source"].as_str().unwrap())
        .collect();
    assert_eq!(inputs, ["images", "bootloaders", "custom"]);

    // Same item set as the drop-in, plus the custom image.
    let mut want = item_files(&out_a);
    assert!(want.iter().any(|f| f.contains("bootloaders/")), "{want:?}");
    want.extend(custom.iter().cloned());
    assert_eq!(item_files(&d), want);
    assert_complete(&d);

    // One index listing every content id, signed; gpgv accepts every re-signed document.
    let v1 = d.join("streams/v1");
    let index: Value =
        serde_json::from_slice(&std::fs::read(v1.join("index.json")).unwrap()).unwrap();
    let cids: BTreeSet<&str> = index["index"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(cids.len(), 3, "{cids:?}");
    assert!(cids.contains("com.example.maas:custom"), "{cids:?}");
    let ring = PathBuf::from(r["keyring"].as_str().unwrap());
    let mut signed = 0;
    for e in std::fs::read_dir(&v1).unwrap() {
        let f = e.unwrap().path();
        if f.extension().is_some_and(|x| x == "sjson") {
            let out = gpgv(&ring, &f);
            assert!(
                out.status.success(),
                "gpgv refused {f:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            signed += 1;
        }
    }
    assert_eq!(signed, 4, "the index and three products documents");

    // status, publications --json and verify see the composition.
    let st = b.run(&["status", p(&d)]).ok();
    assert!(
        st.stdout.contains("composed:    snapshot "),
        "{}",
        st.stdout
    );
    let pubs = b.run(&["publications", "--json"]).ok().json();
    assert_eq!(pubs[0]["inputs"].as_array().unwrap().len(), 3, "{pubs}");
    assert!(
        pubs[0]["snapshot_id"].is_i64(),
        "existing fields stay: {pubs}"
    );
    b.run(&["verify"]).ok();

    // The python client mirrors the composition over HTTP with the printed keyring.
    if let Some(py) = reference_sstream_mirror() {
        let server = serve::spawn(ServeOptions::new(d.clone())).unwrap();
        let url = format!("{}/", server.url());
        let out_p = python_mirror(&py, &url, &ring, b.dir.path(), "py/stable", &[]);
        assert_eq!(item_files(&out_p), want, "python client: nothing missing");
    }
}

#[test]
fn a_product_in_two_inputs_with_different_contents_is_refused_naming_both() {
    let up = Upstream::new();
    let s = Store::new();
    s.add("one", &up, &["--max", "1", "arch=amd64", "release~jammy"]);
    s.add("two", &up, &["--max", "2", "arch=amd64", "release~jammy"]);
    s.sync_json("one");
    s.sync_json("two");
    let d = dest(&s, "x");
    let r = s
        .run(&["publish", "one", "two", p(&d), "--metadata", "filtered"])
        .fails();
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("streamvault: error: product `"),
        "{}",
        r.stderr
    );
    assert!(
        first.contains("(one)") && first.contains("(two)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.lines().count() <= 2, "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&d).is_err(), "DEST untouched");
}

#[test]
fn verbatim_is_refused_for_a_shared_content_id_and_allowed_otherwise() {
    let up = Upstream::new();
    let s = Store::new();
    s.add("jammy", &up, &["--max", "1", "arch=amd64", "release~jammy"]);
    s.add("noble", &up, &["--max", "1", "arch=amd64", "release~noble"]);
    s.add("bootloaders", &up, &BOOTLOADERS);
    for n in ["jammy", "noble", "bootloaders"] {
        s.sync_json(n);
    }
    let d = dest(&s, "v");
    let r = s
        .run(&["publish", "jammy", "noble", p(&d), "--force"])
        .fails();
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(lines[0].contains("content id `"), "{}", r.stderr);
    assert!(lines[0].contains("verbatim"), "{}", r.stderr);
    assert!(
        lines
            .get(1)
            .is_some_and(|h| h.contains("--metadata filtered")),
        "{}",
        r.stderr
    );
    assert!(std::fs::symlink_metadata(&d).is_err(), "DEST untouched");
    // Filtered merges the two documents of one content id.
    s.run(&["publish", "jammy", "noble", p(&d), "--metadata", "filtered"])
        .ok();
    assert_complete(&d);
    // Verbatim with distinct content ids: the upstream products documents byte for byte.
    let dv = dest(&s, "verbatim");
    s.run(&["publish", "jammy", "bootloaders", p(&dv), "--force"])
        .ok();
    let upstream_docs: BTreeSet<(String, String)> = tree_of(&up.current())
        .into_iter()
        .filter(|(p, _)| p.starts_with("streams/v1/com.") && p.ends_with(".sjson"))
        .collect();
    let ours: BTreeSet<(String, String)> = tree_of(&dv)
        .into_iter()
        .filter(|(p, _)| p.starts_with("streams/v1/com.") && p.ends_with(".sjson"))
        .collect();
    assert!(!ours.is_empty());
    assert!(ours.is_subset(&upstream_docs), "{ours:?}");
}

#[test]
fn rollback_returns_to_the_previous_composition_and_a_single_publish_never_reuses_it() {
    let (up, s) = bootloaders_and_jammy();
    let d = dest(&s, "c");
    compose_filtered(&s, &d, &[]).ok();
    let first = linked_tree(&d);
    let first_files = item_files(&d);
    up.flip(2);
    let r = s.sync_json("jammy");
    assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    compose_filtered(&s, &d, &[]).ok();
    let second = linked_tree(&d);
    assert_ne!(first, second);
    assert_complete(&d);
    let r = s.run(&["rollback", p(&d), "--json"]).ok().json();
    assert_eq!(linked_tree(&d), first);
    assert_eq!(r["inputs"].as_array().unwrap().len(), 2, "{r}");
    assert_complete(&d);
    // Every item of the first composition is there (plus grace items of the second).
    assert!(first_files.is_subset(&item_files(&d)));
    let st = s.run(&["status", p(&d), "--json"]).ok().json();
    assert_eq!(st["inputs"].as_array().unwrap().len(), 2, "{st}");

    // Publishing the first input alone builds its own tree, holding only its items.
    let single = dest(&s, "single");
    s.run(&[
        "publish",
        "bootloaders",
        p(&single),
        "--metadata",
        "filtered",
    ])
    .ok();
    assert_ne!(linked_tree(&single), first);
    assert!(
        item_files(&single)
            .iter()
            .all(|f| f.contains("bootloaders/")),
        "{:?}",
        item_files(&single)
    );
    s.run(&["verify"]).ok();
}

#[test]
fn gc_keeps_every_input_of_a_live_composition() {
    let up = Upstream::new();
    let s = Store::new();
    s.run(&["config", "set", "auto-gc", "off"]).ok();
    s.add("bootloaders", &up, &BOOTLOADERS);
    s.add("jammy", &up, &["--max", "1", "arch=amd64", "release~jammy"]);
    s.sync_json("bootloaders");
    s.sync_json("jammy");
    let jammy1 = s.snapshots("jammy")[0]["id"].as_i64().unwrap();
    let d = dest(&s, "c");
    // The jammy snapshot is the second input: not the tree's own `snapshot_id`.
    compose_filtered(&s, &d, &[]).ok();
    let before = tree_of(&d);
    for g in [2, 3] {
        up.flip(g);
        let r = s.sync_json("jammy");
        assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    }
    s.run(&["gc", "--keep-last", "1", "--grace", "0"]).ok();
    let ids: Vec<i64> = s
        .snapshots("jammy")
        .iter()
        .map(|x| x["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&jammy1), "input snapshot kept: {ids:?}");
    assert_eq!(ids.len(), 2, "the older unpublished one goes: {ids:?}");
    assert_eq!(tree_of(&d), before, "the composed tree is untouched");
    assert_complete(&d);
    s.check_invariants();
    s.run(&["verify"]).ok();
}

#[test]
fn auto_publish_rebuilds_the_whole_composition() {
    let (up, s) = bootloaders_jammy_and_noble();
    s.sync_json("noble");
    let d = dest(&s, "c");
    compose_filtered(&s, &d, &[]).ok();
    let boot1 = s.snapshots("bootloaders")[0]["id"].as_i64().unwrap();
    for n in ["bootloaders", "jammy", "noble"] {
        s.run(&[
            "source",
            "edit",
            n,
            "--publish",
            p(&d),
            "--metadata",
            "filtered",
        ])
        .ok();
    }
    up.flip(2);
    let r = s.sync_json("jammy");
    assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    let jammy2 = s.snapshots("jammy").last().unwrap()["id"].as_i64().unwrap();
    let st = s.run(&["status", p(&d), "--json"]).ok().json();
    let inputs: Vec<(i64, String)> = st["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["snapshot"].as_i64().unwrap(),
                i["source"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        inputs,
        [
            (boot1, "bootloaders".to_string()),
            (jammy2, "jammy".to_string())
        ],
        "{st}"
    );
    assert!(item_files(&d).iter().any(|f| f.contains("bootloaders/")));
    assert_complete(&d);

    // A source that is not an input never replaces the composition.
    let live = linked_tree(&d);
    let r = s.run(&["sync", "noble"]);
    assert!(
        r.stderr.contains("not one of its inputs"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(linked_tree(&d), live);
}

/// Verbatim composition: the upstream products documents as they are, a new index signed by the
/// store's key; the python client verifies both with the two keyrings concatenated.
#[test]
fn verbatim_composition_is_mirrored_with_both_keys_in_one_keyring() {
    let Some(py) = reference_sstream_mirror() else {
        return;
    };
    let up = Upstream::new();
    let s = Store::new();
    s.add("jammy", &up, &["--max", "1", "arch=amd64", "release~jammy"]);
    s.add("bootloaders", &up, &BOOTLOADERS);
    s.sync_json("jammy");
    s.sync_json("bootloaders");
    let d = dest(&s, "v");
    let r = s
        .run(&[
            "publish",
            "jammy",
            "bootloaders",
            p(&d),
            "--force",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["mode"], "verbatim", "{r}");
    let mut both = std::fs::read(up.keyring_str()).unwrap();
    both.extend(std::fs::read(r["keyring"].as_str().unwrap()).unwrap());
    let ring = s.dir.path().join("both.gpg");
    std::fs::write(&ring, both).unwrap();
    let server = serve::spawn(ServeOptions::new(d.clone())).unwrap();
    let url = format!("{}/", server.url());
    let args = ["--max=1", "arch=amd64", "release=jammy"];
    let out_p = python_mirror(&py, &url, &ring, s.dir.path(), "py/v", &args);
    let got = item_files(&out_p);
    assert!(!got.is_empty());
    assert!(got.is_subset(&item_files(&d)), "{got:?}");
}

/// After a composition replaced another and gc dropped the old one (grace 0), the live
/// composition still holds every item of its inputs: gc never unlinks an input's files as if
/// they were grace links (the inputs after the first are recorded as grace rows).
#[test]
fn gc_after_a_new_composition_leaves_the_live_one_complete() {
    let up = Upstream::new();
    let s = Store::new();
    s.run(&["config", "set", "auto-gc", "off"]).ok();
    s.add("bootloaders", &up, &BOOTLOADERS);
    s.add("jammy", &up, &["--max", "1", "arch=amd64", "release~jammy"]);
    s.sync_json("bootloaders");
    s.sync_json("jammy");
    let d = dest(&s, "c");
    compose_filtered(&s, &d, &[]).ok();
    up.flip(2);
    s.sync_json("jammy");
    compose_filtered(&s, &d, &[]).ok();
    let live = tree_of(&d);
    s.run(&["gc", "--grace", "0"]).ok();
    assert_complete(&d);
    let after = tree_of(&d);
    assert!(
        after.len() <= live.len() && after.iter().all(|f| live.contains(f)),
        "only grace links may go"
    );
    s.run(&["verify"]).ok();
    s.check_invariants();
}

//! Import: `publish --adopt` takes over an existing mirror directory (one a python
//! `sstream-mirror` made) as a snapshot, without downloading what it already holds.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{assert_complete, item_gets, p, synced_source, www};

fn walk_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count()
}

#[test]
fn adopt_imports_an_existing_mirror_without_downloading_it_again() {
    let (up, store) = synced_source("noble", &["release~noble"]);
    // A previous sstream-mirror mirror: a real directory with the whole upstream tree.
    let dest = www(&store);
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", up.current().display()))
        .arg(&dest)
        .status()
        .unwrap();
    assert!(st.success());
    let files = walk_files(&dest);
    let r = store.run(&["publish", "noble", p(&dest)]).fails();
    assert!(r.stderr.contains("real directory"), "{}", r.stderr);

    let r = store
        .run(&[
            "publish",
            "noble",
            p(&dest),
            "--adopt",
            "--metadata",
            "filtered",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(r["action"], "adopt");
    assert_eq!(r["adopted"]["files"].as_u64().unwrap() as usize, files);
    let aside = PathBuf::from(r["adopted"]["moved_to"].as_str().unwrap());
    assert!(aside.is_dir());
    assert_eq!(
        walk_files(&aside),
        files,
        "the old directory is kept as it was"
    );
    assert!(
        std::fs::symlink_metadata(&dest)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_complete(&dest);
    // The adopted files are recorded as a snapshot of a pseudo-source named after DEST.
    let snaps = store.run(&["snapshots", "--json"]).ok().json();
    let adopted: Vec<_> = snaps
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"].as_str().unwrap().starts_with("adopted:"))
        .collect();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0]["items"], 36, "metadata keys matched by checksum");
    store.check_invariants();

    // A later sync of the same content downloads no item: everything came from the adoption.
    store.add("maas", &up, &[]);
    up.clear();
    let s = store.sync_json("maas");
    assert_eq!(s["outcome"]["kind"], "snapshot", "{s}");
    assert_eq!(item_gets(&up.requests()), 0);
    assert_eq!(s["fetched_items"], 0);
}

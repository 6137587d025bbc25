//! A foreign writer in a published tree (issue 8, item 16): python `sstream-mirror` run on the
//! OUTPUT_DIR our `sstream-mirror` published follows the symlink and writes into the store's
//! tree. `verify` checks every file of every tree (documents too) and reports what does not
//! belong; `verify --repair` restores the tree; `detach` turns OUTPUT_DIR into a plain directory
//! so the python tool can take over without touching the store.
//!
//! The python tool is `target/compat-venv/bin/sstream-mirror` (installed by scripts/test.sh) or
//! `$SSTREAM_MIRROR`; without it the python half is skipped (a failure under CI), and the same
//! damage is made by hand so the verify/repair/detach half always runs.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::common::{Store, Upstream, reference_sstream_mirror};

/// `relative path -> (inode, blake3)` of every file under `dir` (not following symlinks).
fn contents(dir: &Path) -> BTreeMap<String, (u64, String)> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let data = std::fs::read(e.path()).unwrap();
            (
                rel,
                (
                    e.metadata().unwrap().ino(),
                    blake3::hash(&data).to_hex().to_string(),
                ),
            )
        })
        .collect()
}

fn run_python(
    py: &Path,
    keyring: &str,
    url: &str,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let o = Command::new(py)
        .arg(format!("--keyring={keyring}"))
        .arg(url)
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python sstream-mirror failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn a_foreign_writer_is_reported_repaired_and_detach_hands_over() {
    let up = Upstream::new();
    let store = Store::new();
    let url = up.url();
    let out = store.dir.path().join("out");
    let k = format!("--keyring={}", up.keyring_str());
    store.run(&["mirror", &k, &url, out.to_str().unwrap()]).ok();
    assert!(out.symlink_metadata().unwrap().file_type().is_symlink());
    let tree = std::fs::canonicalize(&out).unwrap();
    let before = contents(&tree);
    let v = store.run(&["verify"]).ok();
    assert!(v.stdout.contains("clean"), "{}", v.stdout);
    // verify looks at the documents too: every file of the tree is counted.
    assert!(
        v.stdout.contains(&format!("({} files)", before.len())),
        "{}\n{before:?}",
        v.stdout
    );

    let py = reference_sstream_mirror();
    match &py {
        Some(py) => {
            // Another upstream generation and a filter: python re-downloads, rewrites products
            // documents and removes what its filter drops.
            up.flip(4);
            run_python(
                py,
                up.keyring_str(),
                &url,
                &out,
                &["release=jammy", "--max=1"],
            );
        }
        None => {
            // What the python tool does, by hand: new files, a `.data/`, a replaced document.
            std::fs::create_dir_all(tree.join(".data")).unwrap();
            std::fs::write(tree.join(".data/state.json"), b"{}").unwrap();
            std::fs::write(tree.join("streams/v1/extra.json"), b"{}").unwrap();
            let idx = tree.join("streams/v1/index.sjson");
            let mut data = std::fs::read(&idx).unwrap();
            data.extend_from_slice(b"\n");
            std::fs::remove_file(&idx).unwrap();
            std::fs::write(&idx, data).unwrap();
        }
    }
    let after = contents(&tree);
    assert_ne!(
        after, before,
        "the foreign writer changed nothing in the tree"
    );

    // verify reports it (exit 1: damage), naming what is not ours.
    let r = store.run(&["verify"]);
    eprintln!("verify after the foreign writer:\n{}", r.stdout);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let j = store.run(&["verify", "--json"]).json();
    let kinds: Vec<String> = j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["problem"]["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.iter().any(|k| k == "tree_file_unexpected"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("is not part of the tree"), "{}", r.stdout);

    // --repair restores the tree exactly: same paths, same content.
    let r = store.run(&["verify", "--repair"]);
    eprintln!("verify --repair:\n{}", r.stdout);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v = store.run(&["verify"]).ok();
    assert!(v.stdout.contains("clean"), "{}", v.stdout);
    let repaired: BTreeMap<String, String> = contents(&tree)
        .into_iter()
        .map(|(p, (_, h))| (p, h))
        .collect();
    let want: BTreeMap<String, String> = before
        .iter()
        .map(|(p, (_, h))| (p.clone(), h.clone()))
        .collect();
    assert_eq!(repaired, want);
    store.check_invariants();

    // detach: a plan first (changes nothing), then OUTPUT_DIR becomes a plain directory.
    let plan = store
        .run(&["detach", out.to_str().unwrap(), "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["files"], before.len());
    assert!(out.symlink_metadata().unwrap().file_type().is_symlink());
    let r = store.run(&["detach", out.to_str().unwrap()]).ok();
    assert!(r.stdout.starts_with("detached "), "{}", r.stdout);
    let m = out.symlink_metadata().unwrap();
    assert!(m.is_dir(), "not a plain directory");
    let copy = contents(&out);
    assert_eq!(
        copy.iter()
            .map(|(p, (_, h))| (p.clone(), h.clone()))
            .collect::<BTreeMap<_, _>>(),
        want
    );
    // Nothing in it is a link into the store: no symlink, no shared inode.
    let store_inodes: std::collections::HashSet<u64> = walkdir::WalkDir::new(store.root())
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().ino())
        .collect();
    for e in walkdir::WalkDir::new(&out).into_iter().map(Result::unwrap) {
        assert!(!e.path_is_symlink(), "{:?}", e.path());
        if e.file_type().is_file() {
            assert!(
                !store_inodes.contains(&e.metadata().unwrap().ino()),
                "{:?}",
                e.path()
            );
        }
    }
    // Nothing was left beside OUTPUT_DIR.
    let beside: Vec<_> = std::fs::read_dir(store.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("out."))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    // The publication is retired (status: not published); a second detach is refused.
    let r = store.run(&["status", out.to_str().unwrap()]).fails();
    assert!(r.stderr.contains("not published"), "{}", r.stderr);
    let r = store.run(&["detach", out.to_str().unwrap()]).fails();
    assert!(r.stderr.contains("not published"), "{}", r.stderr);

    // The python tool now works on its own directory and the store stays as it was.
    if let Some(py) = &py {
        run_python(
            py,
            up.keyring_str(),
            &url,
            &out,
            &["release=jammy", "--max=1"],
        );
        assert!(out.join(".data").is_dir() || out.join("streams/v1/index.sjson").is_file());
    } else {
        std::fs::write(out.join("streams/v1/index.sjson"), b"rewritten").unwrap();
    }
    let tree_now: BTreeMap<String, String> = contents(&tree)
        .into_iter()
        .map(|(p, (_, h))| (p, h))
        .collect();
    assert_eq!(tree_now, want, "the store's tree changed");
    let v = store.run(&["verify"]).ok();
    assert!(v.stdout.contains("clean"), "{}", v.stdout);
    store.check_invariants();
}

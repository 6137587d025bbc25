//! `publish`: a complete tree of hardlinks (reused when it exists), verbatim and filtered
//! metadata (signed, and checked with `gpgv`), bad input refused with one line, injected failures
//! and a really full filesystem leaving the old link untouched: the real binary (and the library
//! where speed matters) against real temp dirs, a real SQLite catalogue and the loopback
//! upstream. Rollback: `rollback.rs`; keys: `keys.rs`; `--adopt`: `import.rs`; kills: `crash.rs`.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::{
    Store, Upstream, assert_complete, blob_path, gpgv, linked_tree, p, run_at, setup,
    synced_source, tmpfs, tree_dirs, www,
};
use streamvault::publish::check_published;
use streamvault::streamgen::{BOOTLOADER_CONTENT_ID, V3_CONTENT_ID};

/// `(content_id, product, version, item)` of every item of a snapshot.
fn snapshot_keys(store: &Store, id: &str) -> BTreeSet<(String, String, String, String)> {
    store
        .items(id)
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap().to_string();
            (s("content_id"), s("product"), s("version"), s("item"))
        })
        .collect()
}

/// The same keys as listed by a products document.
fn listed_keys(doc: &serde_json::Value) -> BTreeSet<(String, String, String, String)> {
    let cid = doc["content_id"].as_str().unwrap().to_string();
    let mut out = BTreeSet::new();
    for (p, pv) in doc["products"].as_object().unwrap() {
        for (v, vv) in pv["versions"].as_object().unwrap() {
            for i in vv["items"].as_object().unwrap().keys() {
                out.insert((cid.clone(), p.clone(), v.clone(), i.clone()));
            }
        }
    }
    out
}

fn json_payload(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let payload = if streamvault::openpgp::is_clearsigned(&bytes) {
        streamvault::openpgp::unwrap_cleartext(&bytes).unwrap()
    } else {
        bytes
    };
    serde_json::from_slice(&payload).unwrap()
}

#[test]
fn publish_builds_a_complete_tree_of_hardlinks_and_reuses_it() {
    let (up, store) = setup();
    let dest = www(&store);
    let r = store
        .run(&["publish", "maas", p(&dest), "--json"])
        .ok()
        .json();
    assert_eq!(r["action"], "publish");
    assert_eq!(r["tree_reused"], false);
    assert!(
        std::fs::symlink_metadata(&dest)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let c = assert_complete(&dest);
    assert_eq!(c.listed, 36);

    // Every item at its path, the same inode as its blob.
    for it in store.items("1") {
        let path = dest.join(it["path"].as_str().unwrap());
        let blob = blob_path(&store, it["blob"].as_str().unwrap());
        let (a, b) = (
            std::fs::metadata(&path).unwrap(),
            std::fs::metadata(&blob).unwrap(),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "{path:?}");
        assert_eq!(a.len(), it["size"].as_u64().unwrap());
    }
    // Verbatim metadata: byte for byte what upstream serves.
    for doc in [
        "streams/v1/index.sjson".to_string(),
        format!("streams/v1/{V3_CONTENT_ID}.sjson"),
        format!("streams/v1/{BOOTLOADER_CONTENT_ID}.sjson"),
    ] {
        assert_eq!(
            std::fs::read(dest.join(&doc)).unwrap(),
            std::fs::read(up.current().join(&doc)).unwrap(),
            "{doc}"
        );
    }
    assert!(!dest.join("streams/v1/index.json").exists());

    // Same snapshot again: the tree is reused, nothing is built.
    let trees = tree_dirs(&store);
    let tree = linked_tree(&dest);
    let r2 = store.run(&["publish", "1", p(&dest), "--json"]).ok().json();
    assert_eq!(r2["tree_reused"], true);
    assert_eq!(r2["tree"], tree.as_str());
    assert_eq!(r2["previous"], r["publication"]);
    assert_eq!(tree_dirs(&store), trees);
    assert_eq!(linked_tree(&dest), tree);
    // Nothing left in tmp/ nor beside DEST.
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
        1
    );

    let st = store.run(&["status", p(&dest), "--json"]).ok().json();
    assert_eq!(st["live"]["id"], r2["publication"]);
    assert_eq!(st["problems"].as_array().unwrap().len(), 0);
    let human = store.run(&["status", p(&dest)]).ok().stdout;
    assert!(human.contains("snapshot:    1 (maas)"), "{human}");
    store.check_invariants();
}

#[test]
fn verbatim_of_a_filtered_snapshot_is_refused_with_a_count_unless_forced() {
    let (_up, store) = synced_source("jammy", &["release~jammy"]);
    let dest = www(&store);
    let r = store.run(&["publish", "jammy", p(&dest)]).fails();
    // 36 listed, 20 held (jammy amd64 + arm64, 5 versions of 4 items).
    assert!(
        r.stderr.contains("lacks 16 of the 36 items"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    assert!(std::fs::symlink_metadata(&dest).is_err(), "no link made");

    let f = store
        .run(&["publish", "jammy", p(&dest), "--force", "--json"])
        .ok()
        .json();
    assert_eq!(f["missing"], 16);
    assert_eq!(check_published(&dest).unwrap().missing, 16);

    // Filtered and `--unsigned`: `.json` only, listing exactly what the snapshot holds.
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
    assert_eq!(r["mode"], "filtered");
    let c = assert_complete(&dest);
    assert_eq!(c.listed, 20);
    let names: Vec<String> = std::fs::read_dir(dest.join("streams/v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.ends_with(".json")), "{names:?}");
    // The bootloaders file would be empty: not written, and its index entry dropped.
    assert_eq!(names.len(), 2, "{names:?}");
    let index = json_payload(&dest.join("streams/v1/index.json"));
    let entries = index["index"].as_object().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[V3_CONTENT_ID];
    assert_eq!(e["path"], format!("streams/v1/{V3_CONTENT_ID}.json"));
    assert_eq!(e["products"].as_array().unwrap().len(), 2);
    assert!(e["updated"].is_string());
    let doc = json_payload(&dest.join(format!("streams/v1/{V3_CONTENT_ID}.json")));
    assert_eq!(listed_keys(&doc), snapshot_keys(&store, "jammy"));
    // Upstream fields survive: updated, top-level and product fields.
    assert_eq!(doc["updated"], index["updated"]);
    assert_eq!(doc["label"], "stable");
    let prod = &doc["products"]["com.example.maas.stable:v3:boot:22.04:amd64:ga-22.04"];
    assert_eq!(prod["release_title"], "22.04");
    assert_eq!(
        prod["versions"]["20240101"]["items"]["boot-kernel"]["kpackage"],
        "linux-generic"
    );
}

#[test]
fn filtered_signed_metadata_verifies_with_gpgv_and_lists_the_snapshot() {
    let (_up, store) = synced_source("jammy", &["release~jammy", "arch=amd64"]);
    let g = store.run(&["key", "generate"]).ok();
    assert!(g.stdout.contains("generated key default"), "{}", g.stdout);
    let ring = store.dir.path().join("ring.gpg");
    store
        .run(&["key", "export", "default", "--binary", "-o", p(&ring)])
        .ok();
    let dest = www(&store);
    let r = store
        .run(&[
            "publish",
            "jammy",
            p(&dest),
            "--metadata",
            "filtered",
            "--sign-key",
            "default",
            "--json",
        ])
        .ok()
        .json();
    let keys = store.run(&["key", "list", "--json"]).ok().json();
    assert_eq!(r["signer"], keys[0]["fingerprint"]);
    assert_complete(&dest);

    let v1 = dest.join("streams/v1");
    let mut signed = 0;
    for e in std::fs::read_dir(&v1).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "sjson") {
            let out = gpgv(&ring, &path);
            assert!(
                out.status.success(),
                "gpgv refused {path:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            signed += 1;
        }
    }
    assert_eq!(signed, 2, "index.sjson and one products .sjson");
    // A tampered copy does not verify.
    let bad = store.dir.path().join("bad.sjson");
    let text = std::fs::read_to_string(v1.join("index.sjson")).unwrap();
    std::fs::write(&bad, text.replacen("products:1.0", "products:1.1", 1)).unwrap();
    assert!(!gpgv(&ring, &bad).status.success());

    let index = json_payload(&v1.join("index.sjson"));
    let entry = &index["index"][V3_CONTENT_ID];
    assert_eq!(entry["path"], format!("streams/v1/{V3_CONTENT_ID}.sjson"));
    let doc = json_payload(&v1.join(format!("{V3_CONTENT_ID}.sjson")));
    assert_eq!(listed_keys(&doc), snapshot_keys(&store, "jammy"));
    // The `.json` twins say the same, unsigned.
    assert_eq!(json_payload(&v1.join(format!("{V3_CONTENT_ID}.json"))), doc);
    assert_eq!(
        json_payload(&v1.join("index.json"))["index"][V3_CONTENT_ID]["path"],
        format!("streams/v1/{V3_CONTENT_ID}.json")
    );
    // The armoured export is the same key.
    let arm = store.run(&["key", "export", "default", "--armor"]).ok();
    assert!(
        arm.stdout
            .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    );
}

#[test]
fn bad_input_is_refused_with_one_line() {
    let (_up, store) = setup();
    let dest = www(&store);
    let www_dir = dest.parent().unwrap().to_path_buf();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["publish".into(), "99".into(), p(&dest).into()],
            "no snapshot `99`",
        ),
        (
            vec!["publish".into(), "nosuch".into(), p(&dest).into()],
            "no snapshot `nosuch`",
        ),
        (
            vec![
                "publish".into(),
                "1".into(),
                p(&www_dir.join("missing/maas")).into(),
            ],
            "does not exist",
        ),
        (
            vec![
                "publish".into(),
                "1".into(),
                p(&dest).into(),
                "--metadata".into(),
                "filtered".into(),
                "--sign-key".into(),
                "nokey".into(),
            ],
            "no signing key named `nokey`",
        ),
        (
            vec![
                "publish".into(),
                "1".into(),
                p(&dest).into(),
                "--sign-key".into(),
                "default".into(),
            ],
            "needs `--metadata filtered`",
        ),
        (
            vec!["rollback".into(), p(&dest).into()],
            "is not published by this store",
        ),
        (
            vec!["status".into(), p(&dest).into()],
            "is not published by this store",
        ),
        (
            vec!["status".into(), p(&www_dir.join("no/such")).into()],
            "is not published by this store",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = store.run(&args).fails();
        assert!(
            r.stderr.contains(needle),
            "{args:?}: want `{needle}` in {}",
            r.stderr
        );
    }
    // DEST a regular file: never replaced.
    std::fs::write(&dest, b"precious").unwrap();
    let r = store.run(&["publish", "1", p(&dest)]).fails();
    assert!(r.stderr.contains("is a file"), "{}", r.stderr);
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    std::fs::remove_file(&dest).unwrap();
    // DEST a symlink elsewhere: not ours.
    std::os::unix::fs::symlink(&www_dir, &dest).unwrap();
    let r = store.run(&["publish", "1", p(&dest)]).fails();
    assert!(
        r.stderr.contains("not a tree of this store"),
        "{}",
        r.stderr
    );
    std::fs::remove_file(&dest).unwrap();
    // DEST a real directory: refused without --adopt, left alone.
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("f"), b"x").unwrap();
    let r = store.run(&["publish", "1", p(&dest)]).fails();
    assert!(r.stderr.contains("real directory"), "{}", r.stderr);
    assert!(r.stderr.contains("--adopt"), "{}", r.stderr);
    assert!(dest.join("f").is_file());
    // After a publish, a rollback with no earlier publication and an unknown --to.
    std::fs::remove_dir_all(&dest).unwrap();
    store.run(&["publish", "1", p(&dest)]).ok();
    let r = store.run(&["rollback", p(&dest)]).fails();
    assert!(r.stderr.contains("no earlier publication"), "{}", r.stderr);
    let r = store.run(&["rollback", p(&dest), "--to", "77"]).fails();
    assert!(
        r.stderr.contains("no publication or snapshot `77`"),
        "{}",
        r.stderr
    );
    let r = store.run(&["rollback", p(&dest), "--to", "x:y"]).fails();
    assert!(r.stderr.contains("`x:y`"), "{}", r.stderr);
}

#[test]
fn injected_failures_leave_the_old_link_untouched_and_no_stage() {
    let (up, store) = setup();
    up.flip(2);
    store.sync_json("maas");
    let dest = www(&store);
    store.run(&["publish", "1", p(&dest)]).ok();
    let live = linked_tree(&dest);
    let pubs = |s: &Store| {
        s.run(&["publications", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len()
    };
    let n = pubs(&store);
    let trees = tree_dirs(&store);
    for (fp, needle) in [
        ("publish-after-5-files", "No space left on device"),
        ("publish-after-30-files", "No space left on device"),
        ("publish-fail-flip", "cannot replace link"),
    ] {
        let out = store
            .cmd(&["publish", "2", p(&dest), "--rebuild"])
            .env("STREAMVAULT_FAILPOINT", fp)
            .output()
            .unwrap();
        let r = crate::common::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
        .fails();
        assert!(r.stderr.contains(needle), "{fp}: {}", r.stderr);
        assert_eq!(linked_tree(&dest), live, "{fp}: the old link is untouched");
        assert_complete(&dest);
        assert_eq!(
            std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
            0,
            "{fp}: staging removed"
        );
        assert_eq!(pubs(&store), n, "{fp}: no publication recorded");
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            1,
            "{fp}: nothing left beside DEST"
        );
    }
    // The failed builds left no tree; only the failed flip's complete tree is new.
    assert_eq!(tree_dirs(&store), trees + 1);
    store.run(&["publish", "2", p(&dest)]).ok();
    assert_ne!(linked_tree(&dest), live);
    assert_complete(&dest);
}

#[test]
fn a_real_full_filesystem_fails_cleanly() {
    let up = Upstream::new();
    let outer = tempfile::tempdir().unwrap();
    let Some(fs) = tmpfs(&outer.path().join("mnt"), "size=16m,nr_inodes=4096") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let root = fs.0.join("store");
    let run = |args: &[&str]| run_at(&root, args);
    let url = up.url();
    run(&["source", "add", "maas", &url, "--keyring", up.keyring_str()]).ok();
    run(&["sync", "maas"]).ok();
    up.flip(2);
    run(&["sync", "maas"]).ok();
    let dest = fs.0.join("maas");
    run(&["publish", "1", p(&dest)]).ok();
    let live = linked_tree(&dest);
    // Leave room for the lock file, the stage and one directory: the tree cannot be built.
    fs.remount(&format!("nr_inodes={}", fs.inodes_used() + 3));
    let r = run(&["publish", "2", p(&dest)]).fails();
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert_eq!(linked_tree(&dest), live);
    assert_complete(&dest);
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    fs.remount("nr_inodes=4096");
    run(&["publish", "2", p(&dest)]).ok();
    assert_ne!(linked_tree(&dest), live);
    assert_complete(&dest);
}

/// Not a test: the stream generator of `scripts/bench-publish.sh`. Writes a signed stream with
/// about `BENCH_ITEMS` items (generations 1 and 2, `current` → gen1) and its keyring to
/// `BENCH_OUT`.
#[test]
#[ignore = "run by scripts/bench-publish.sh"]
fn bench_generate_stream() {
    use streamvault::streamgen::{self, Bulk, StreamSpec};
    let (Ok(out), Ok(items)) = (std::env::var("BENCH_OUT"), std::env::var("BENCH_ITEMS")) else {
        eprintln!("set BENCH_OUT and BENCH_ITEMS");
        return;
    };
    let out = PathBuf::from(out);
    let items: usize = items.parse().expect("BENCH_ITEMS is a number");
    std::fs::create_dir_all(&out).unwrap();
    let key = streamvault::openpgp::SigningKey::generate("bench <bench@example.invalid>").unwrap();
    std::fs::write(
        out.join("keyring.gpg"),
        key.public_keyring_binary().unwrap(),
    )
    .unwrap();
    let sign = |b: &[u8]| key.clearsign(b).map_err(|e| e.to_string());
    for generation in [1, 2] {
        let spec = StreamSpec {
            bulk: Some(Bulk {
                products: (items / 100).max(1),
                versions: 4,
                files_per_version: 25,
                file_size: 16,
            }),
            ..StreamSpec::generation(generation)
        };
        let s =
            streamgen::generate(&out.join(format!("gen{generation}")), &spec, Some(&sign)).unwrap();
        eprintln!("gen{generation}: {} files", s.files);
    }
    let _ = std::fs::remove_file(out.join("current"));
    std::os::unix::fs::symlink("gen1", out.join("current")).unwrap();
}

#[test]
fn filtered_metadata_lists_kept_versions_and_indexes_a_products_start() {
    let (up, store) = synced_source("keep", &["--max", "4", "--keep"]);
    up.flip(2);
    store.sync_json("keep"); // snapshot 2 keeps 20240101, which gen 2 no longer lists
    let jammy = "com.example.maas.stable:v3:boot:22.04:amd64:ga-22.04";
    assert!(store.versions("2", jammy).contains(&"20240101".to_string()));
    let dest = www(&store);
    store
        .run(&["publish", "2", p(&dest), "--metadata", "filtered"])
        .ok();
    assert_complete(&dest);
    let doc = json_payload(&dest.join(format!("streams/v1/{V3_CONTENT_ID}.json")));
    assert_eq!(listed_keys(&doc), {
        let mut k = snapshot_keys(&store, "2");
        k.retain(|x| x.0 == V3_CONTENT_ID);
        k
    });
    // The kept version comes back whole from the older document (fields and all).
    let kept = &doc["products"][jammy]["versions"]["20240101"]["items"]["boot-kernel"];
    assert_eq!(kept["kpackage"], "linux-generic", "{kept}");

    // A source whose start document is a products document: an index is made for it.
    let url = up.url();
    store
        .run(&[
            "source",
            "add",
            "boot",
            &url,
            "--keyring",
            up.keyring_str(),
            "--path",
            &format!("streams/v1/{BOOTLOADER_CONTENT_ID}.sjson"),
        ])
        .ok();
    store.sync_json("boot");
    let dest2 = dest.with_file_name("boot");
    store
        .run(&["publish", "boot", p(&dest2), "--metadata", "filtered"])
        .ok();
    let c = assert_complete(&dest2);
    assert_eq!(c.listed, 6);
    let index = json_payload(&dest2.join("streams/v1/index.json"));
    assert_eq!(
        index["index"][BOOTLOADER_CONTENT_ID]["path"],
        format!("streams/v1/{BOOTLOADER_CONTENT_ID}.json")
    );
}

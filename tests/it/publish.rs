//! Publish, filtered and signed metadata, keys, rollback, status and publications, adopt, bad
//! input and injected failures: the real binary (and the library where speed matters) against
//! real temp dirs, a real SQLite catalogue and the loopback upstream.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Store, Upstream, item_gets};
use streamvault::publish::{self, check_published};
use streamvault::streamgen::{BOOTLOADER_CONTENT_ID, V3_CONTENT_ID};

/// An upstream at generation 1 and a store with source `maas` synced (snapshot 1).
pub fn setup() -> (Upstream, Store) {
    let up = Upstream::new();
    let store = Store::new();
    store.add("maas", &up, &[]);
    store.sync_json("maas");
    (up, store)
}

/// `www/` beside the store (the web server's directory) and the DEST inside it.
pub fn www(store: &Store) -> PathBuf {
    let www = store.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    www.join("maas")
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The tree DEST points at, by name.
pub fn linked_tree(dest: &Path) -> String {
    std::fs::read_link(dest)
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

pub fn tree_dirs(store: &Store) -> usize {
    std::fs::read_dir(store.root().join("trees"))
        .unwrap()
        .count()
}

/// DEST is a link to a complete tree of this store.
pub fn assert_complete(dest: &Path) -> publish::TreeCheck {
    let c = check_published(dest).unwrap();
    assert!(c.is_complete(), "incomplete tree behind {dest:?}: {c:?}");
    assert!(c.listed > 0, "{c:?}");
    c
}

fn blob_path(store: &Store, hex: &str) -> PathBuf {
    store.root().join("blobs").join(&hex[..2]).join(hex)
}

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
    let up = Upstream::new();
    let store = Store::new();
    store.add("jammy", &up, &["release~jammy"]);
    store.sync_json("jammy");
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

    // Filtered without a key: `.json` only, listing exactly what the snapshot holds.
    let r = store
        .run(&[
            "publish",
            "jammy",
            p(&dest),
            "--metadata",
            "filtered",
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

/// `gpgv --keyring=<keyring> <file>` in a throwaway GNUPGHOME.
fn gpgv(keyring: &Path, file: &Path) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new("gpgv")
        .env("GNUPGHOME", home.path())
        .arg(format!("--keyring={}", keyring.display()))
        .arg(file)
        .output()
        .expect("gpgv is installed")
}

#[test]
fn filtered_signed_metadata_verifies_with_gpgv_and_lists_the_snapshot() {
    let up = Upstream::new();
    let store = Store::new();
    store.add("jammy", &up, &["release~jammy", "arch=amd64"]);
    store.sync_json("jammy");
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
fn rollback_status_and_publications() {
    let (up, store) = setup();
    up.flip(2);
    store.sync_json("maas"); // snapshot 2
    let dest = www(&store);
    let p1 = store.run(&["publish", "1", p(&dest), "--json"]).ok().json();
    let t1 = linked_tree(&dest);
    let p2 = store.run(&["publish", "2", p(&dest), "--json"]).ok().json();
    let t2 = linked_tree(&dest);
    assert_ne!(t1, t2);
    // Grace items both ways: each tree holds the other snapshot's items too.
    let trees = store.root().join("trees");
    assert!(
        trees
            .join(&t2)
            .join("jammy/amd64/20240101/squashfs")
            .is_file()
    );
    assert!(
        trees
            .join(&t1)
            .join("jammy/amd64/20240401/squashfs")
            .is_file()
    );
    assert!(p2["grace_files"].as_u64().unwrap() >= 8, "{p2}");

    // Rollback: back to tree 1, no tree built, recorded as `rollback`.
    let trees_before = tree_dirs(&store);
    let rb = store.run(&["rollback", p(&dest), "--json"]).ok().json();
    assert_eq!(rb["action"], "rollback");
    assert_eq!(rb["snapshot"], 1);
    assert_eq!(rb["grace_files"], 0, "rollback does no work but the rename");
    assert_eq!(linked_tree(&dest), t1);
    assert_eq!(tree_dirs(&store), trees_before);
    assert_complete(&dest);
    // Again: toggles to the publication before the live one (tree 2).
    store.run(&["rollback", p(&dest)]).ok();
    assert_eq!(linked_tree(&dest), t2);
    // --to a publication id, and --to snapshot:N.
    let to = p1["publication"].to_string();
    store.run(&["rollback", p(&dest), "--to", &to]).ok();
    assert_eq!(linked_tree(&dest), t1);
    store
        .run(&["rollback", p(&dest), "--to", "snapshot:2"])
        .ok();
    assert_eq!(linked_tree(&dest), t2);
    let same = store
        .run(&["rollback", p(&dest), "--to", "snapshot:2"])
        .ok();
    assert!(same.stdout.contains("nothing to do"), "{}", same.stdout);

    // Publications: 6 rows, exactly one live (the newest), the others retired.
    let list = store.run(&["publications", p(&dest), "--json"]).ok().json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 6);
    let live: Vec<_> = list.iter().filter(|x| x["live"] == true).collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["id"], list[5]["id"]);
    assert!(list[..5].iter().all(|x| x["retired_at"].is_i64()));
    let actions: Vec<&str> = list.iter().map(|x| x["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "publish", "publish", "rollback", "rollback", "rollback", "rollback"
        ]
    );
    assert!(list[0]["published_by"].as_str().unwrap().contains('@'));
    let human = store.run(&["publications"]).ok().stdout;
    assert!(human.contains("live"), "{human}");

    // A publication row whose flip never happened (a kill): status says so, exit 1.
    let db = rusqlite::Connection::open(store.root().join("catalog.db")).unwrap();
    db.execute(
        "INSERT INTO publications (dest, tree_id, snapshot_id, action, published_at, published_by)
         SELECT dest, tree_id, snapshot_id, 'publish', published_at, 'killed@host pid 1'
         FROM publications WHERE id = ?1",
        [p1["publication"].as_i64().unwrap()],
    )
    .unwrap();
    let st = store.run(&["status", p(&dest)]);
    assert_eq!(st.code, 1, "{}", st.stdout);
    assert!(st.stdout.contains("is not live"), "{}", st.stdout);
    assert!(st.stdout.contains("snapshot:    2"), "{}", st.stdout);

    // A rollback target whose tree is gone is refused; the link stays.
    std::fs::remove_dir_all(trees.join(&t1)).unwrap();
    let r = store.run(&["rollback", p(&dest)]).fails();
    assert!(r.stderr.contains("no longer exists"), "{}", r.stderr);
    assert_eq!(linked_tree(&dest), t2);
    store.check_invariants();
}

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
fn adopt_imports_an_existing_mirror_without_downloading_it_again() {
    let up = Upstream::new();
    let store = Store::new();
    store.add("noble", &up, &["release~noble"]);
    store.sync_json("noble");
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

fn walk_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count()
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

/// A tmpfs mounted for one test (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, opts: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Inodes in use.
    fn inodes_used(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%c %d"])
            .arg(&self.0)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        let v: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
        v[0] - v[1]
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_real_full_filesystem_fails_cleanly() {
    let up = Upstream::new();
    let outer = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&outer.path().join("mnt"), "size=16m,nr_inodes=4096") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let root = fs.0.join("store");
    let run = |args: &[&str]| {
        let out = Command::new(crate::common::bin())
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        crate::common::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
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

/// One `GET` over a fresh connection: `(status, body)`.
fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    Ok((status, buf[split + 4..].to_vec()))
}

/// Reads like a client: the index, each products document, every item they list. Returns the
/// problems of one round (an empty list: the round was consistent and error-free).
fn read_round(get: &dyn Fn(&str) -> Result<Vec<u8>, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let unwrap = |b: Vec<u8>| -> Result<serde_json::Value, String> {
        let payload = streamvault::openpgp::unwrap_cleartext(&b).map_err(|e| e.to_string())?;
        serde_json::from_slice(&payload).map_err(|e| e.to_string())
    };
    let index = match get("streams/v1/index.sjson").and_then(unwrap) {
        Ok(v) => v,
        Err(e) => return vec![format!("index: {e}")],
    };
    for (cid, entry) in index["index"].as_object().unwrap() {
        let path = entry["path"].as_str().unwrap();
        let doc = match get(path).and_then(unwrap) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{path}: {e}"));
                continue;
            }
        };
        // Index and products may come from different trees: every product the index lists
        // must still be in the products document.
        let listed: BTreeSet<&str> = entry["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let have: BTreeSet<&str> = doc["products"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        if !listed.is_subset(&have) {
            problems.push(format!("{cid}: index lists products the document lacks"));
        }
        for pv in doc["products"].as_object().unwrap().values() {
            for vv in pv["versions"].as_object().unwrap().values() {
                for item in vv["items"].as_object().unwrap().values() {
                    let ipath = item["path"].as_str().unwrap();
                    match get(ipath) {
                        Ok(b) if b.len() as u64 == item["size"].as_u64().unwrap() => {}
                        Ok(b) => problems.push(format!("{ipath}: {} bytes", b.len())),
                        Err(e) => problems.push(format!("{ipath}: {e}")),
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn readers_see_no_error_and_no_mix_during_1000_flips() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (up, store) = setup();
    up.flip(2);
    store.sync_json("maas");
    let dest = www(&store);
    store.run(&["publish", "1", p(&dest)]).ok();
    store.run(&["publish", "2", p(&dest)]).ok();
    let server = streamvault::serve::spawn(streamvault::serve::ServeOptions::new(&dest)).unwrap();
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = |http: bool| {
        let stop = stop.clone();
        let dest = dest.clone();
        std::thread::spawn(move || {
            let (mut rounds, mut problems) = (0u64, Vec::new());
            let get = |rel: &str| -> Result<Vec<u8>, String> {
                if http {
                    match http_get(addr, &format!("/{rel}"))? {
                        (200, body) => Ok(body),
                        (code, _) => Err(format!("HTTP {code}")),
                    }
                } else {
                    std::fs::read(dest.join(rel)).map_err(|e| e.to_string())
                }
            };
            while !stop.load(Ordering::SeqCst) {
                problems.extend(read_round(&get));
                rounds += 1;
            }
            (rounds, problems)
        })
    };
    let readers = [reader(true), reader(false)];

    let mut vault = streamvault::vault::Vault::open(&store.root()).unwrap();
    let rollback = publish::RollbackOptions {
        dest: dest.clone(),
        to: None,
    };
    for flip in 0..1000 {
        if flip % 100 == 50 {
            // Some through the real binary.
            store.run(&["rollback", p(&dest)]).ok();
        } else if flip % 10 == 5 {
            // A re-publish of the snapshot that is not live (reuses its tree).
            let live = std::fs::read_link(&dest).unwrap();
            let other = if live.to_string_lossy().contains("/1-") {
                "2"
            } else {
                "1"
            };
            let r = publish::publish(
                &mut vault,
                &publish::PublishOptions {
                    snapshot: other.into(),
                    dest: dest.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
            assert!(r.tree_reused);
        } else {
            let r = publish::rollback(&mut vault, &rollback).unwrap();
            assert!(r.changed);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for (i, h) in readers.into_iter().enumerate() {
        let (rounds, problems) = h.join().unwrap();
        assert!(rounds >= 10, "reader {i} made only {rounds} rounds");
        assert!(
            problems.is_empty(),
            "reader {i}: {} problems in {rounds} rounds, e.g. {:?}",
            problems.len(),
            &problems[..problems.len().min(5)]
        );
        eprintln!("reader {i}: {rounds} rounds, no problem");
    }
    let list = store.run(&["publications", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1002);
    assert_complete(&dest);
    assert_eq!(tree_dirs(&store), 2, "no tree was built by the flips");
}

#[test]
fn kill_dash_nine_during_publish_never_leaves_an_incomplete_link() {
    use std::time::{Duration, Instant};
    use streamvault::streamgen::{Bulk, StreamSpec};

    let bulk = Some(Bulk {
        products: 6,
        versions: 4,
        files_per_version: 50,
        file_size: 64,
    });
    let up = Upstream::with_spec(StreamSpec {
        bulk,
        ..StreamSpec::generation(1)
    });
    let store = Store::new();
    store.add("maas", &up, &["--max", "4"]);
    let t = Instant::now();
    store.run(&["sync", "maas", "--jobs", "8"]).ok();
    up.build(&StreamSpec {
        bulk,
        ..StreamSpec::generation(2)
    });
    up.flip(2);
    store.run(&["sync", "maas", "--jobs", "8"]).ok();
    eprintln!("two syncs: {:?}", t.elapsed());
    let dest = www(&store);
    let t = Instant::now();
    store.run(&["publish", "1", p(&dest)]).ok();
    let full = t.elapsed();
    eprintln!("one publish of {} items: {full:?}", store.items("1").len());
    assert_complete(&dest);

    let mut rng = fastrand::Rng::with_seed(0x9e37);
    let (mut mid_build, mut completed) = (0, 0);
    let span = (full.as_millis() as u64 * 3 / 2).max(100);
    for round in 0..24 {
        let snap = if round % 2 == 0 { "2" } else { "1" };
        let mut child = store
            .cmd(&["publish", snap, p(&dest), "--rebuild"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(5..span)));
        if child.try_wait().unwrap().is_some() {
            completed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if std::fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("publish-")
            })
        {
            mid_build += 1;
        }
        // DEST always exists and always points at a complete tree.
        assert_complete(&dest);
        store.check_invariants();
        // Nothing but DEST beside it (the temporary link is renamed over DEST or never made).
        let beside: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(beside.len() <= 2, "round {round}: {beside:?}");
    }
    eprintln!("24 kills: {mid_build} during the build, {completed} after the end");
    assert!(
        mid_build >= 3,
        "too few kills landed during materialisation"
    );
    // The next publish succeeds, removes the stale stage, and status is consistent.
    store.run(&["publish", "2", p(&dest)]).ok();
    assert_complete(&dest);
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    let st = store.run(&["status", p(&dest), "--json"]).ok().json();
    assert_eq!(st["live"]["snapshot_id"], 2);
}

/// A publish killed while staging leaves `tmp/publish-…`; the next publish to that DEST removes
/// it even when it reuses an existing tree and builds nothing (that path used to keep the stage,
/// which made the kill test above fail whenever a round for the reused snapshot had completed).
#[test]
fn a_publish_that_reuses_a_tree_removes_a_killed_publishs_stage() {
    use std::time::{Duration, Instant};
    use streamvault::streamgen::StreamSpec;
    let (up, store) = setup();
    up.build(&StreamSpec::generation(2));
    up.flip(2);
    store.sync_json("maas");
    let dest = www(&store);
    store.run(&["publish", "1", p(&dest)]).ok();
    let mut child = store
        .cmd(&["publish", "2", p(&dest)])
        .env("STREAMVAULT_FAILPOINT", "publish-slow-file=200")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp = store.root().join("tmp");
    let staged = |tmp: &Path| {
        std::fs::read_dir(tmp).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("publish-")
        })
    };
    let t = Instant::now();
    while !staged(&tmp) && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(staged(&tmp), "the killed publish left no stage to clean");
    assert_complete(&dest);
    // Snapshot 1's tree exists: this publish reuses it and builds nothing.
    store.run(&["publish", "1", p(&dest)]).ok();
    assert_complete(&dest);
    assert!(!staged(&tmp), "the stale stage was left in tmp/");
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
    let up = Upstream::new();
    let store = Store::new();
    store.add("keep", &up, &["--max", "4", "--keep"]);
    store.sync_json("keep");
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

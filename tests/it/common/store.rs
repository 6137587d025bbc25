//! The store side of the harness: a store root in a temp dir, a runner for the real binary, the
//! usual setups (one synced source, several generations), and direct reads of the catalogue and
//! the store layout that the tests check against (`catalog.db`, `blobs/`, `trees/`).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rusqlite::{Connection, params};
use streamvault::publish::{self, check_published};
use tempfile::TempDir;

use super::http::Upstream;

/// A store root in a temp dir and a runner for the real binary against it.
pub struct Store {
    pub dir: TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Failed with exit 2 and exactly one `streamvault: error:` line (plus an optional hint),
    /// and no panic or backtrace.
    pub fn fails(self) -> Run {
        assert_ne!(self.code, 0, "expected failure\nstdout:\n{}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("stack backtrace"),
            "panic: {}",
            self.stderr
        );
        let errors = lines
            .iter()
            .filter(|l| l.starts_with("streamvault: error:"))
            .count();
        assert_eq!(errors, 1, "want one error line, got:\n{}", self.stderr);
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("streamvault: error:") || l.starts_with("hint:")),
            "unexpected stderr lines:\n{}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).expect("json stdout")
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_streamvault")
}

/// The binary with `--root ROOT ARGS…` (no backtraces, no colour).
pub fn cmd_at(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("--root").arg(root).args(args);
    c.env_remove("RUST_BACKTRACE");
    c.env("NO_COLOR", "1");
    c
}

/// Run the binary against a store root that is not a [`Store`]'s (e.g. on a tmpfs).
pub fn run_at(root: &Path, args: &[&str]) -> Run {
    Run::from(cmd_at(root, args).output().expect("run streamvault"))
}

impl Store {
    pub fn new() -> Store {
        Store {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        cmd_at(&self.root(), args)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run streamvault"))
    }

    /// `source add NAME URL --keyring K [extra…]` against an upstream.
    pub fn add(&self, name: &str, up: &Upstream, extra: &[&str]) {
        let url = up.url();
        let mut args = vec![
            "source",
            "add",
            name,
            url.as_str(),
            "--keyring",
            up.keyring_str(),
        ];
        args.extend_from_slice(extra);
        self.run(&args).ok();
    }

    pub fn sync_json(&self, name: &str) -> serde_json::Value {
        let r = self.run(&["sync", name, "--json"]).ok();
        let v = r.json();
        v.get(0).cloned().expect("one report")
    }

    pub fn snapshots(&self, name: &str) -> Vec<serde_json::Value> {
        let r = self.run(&["snapshots", name, "--json"]).ok();
        r.json().as_array().cloned().unwrap_or_default()
    }

    /// `(product, version, item) -> blob` of a snapshot.
    pub fn items(&self, id: &str) -> Vec<serde_json::Value> {
        let r = self
            .run(&["snapshot", "show", id, "--items", "--json"])
            .ok();
        r.json()
            .get("items")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Sorted distinct versions of one product in a snapshot.
    pub fn versions(&self, id: &str, product: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .items(id)
            .iter()
            .filter(|i| i["product"] == product)
            .filter_map(|i| i["version"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Invariant checks on the store: every blob row has a complete file whose BLAKE3 is its
    /// name and whose size is its recorded size; no snapshot refers to a missing blob row.
    pub fn check_invariants(&self) {
        let db = rusqlite::Connection::open(self.root().join("catalog.db")).expect("open db");
        let mut st = db
            .prepare("SELECT blake3, size FROM blobs")
            .expect("prepare");
        let rows: Vec<(String, i64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        for (hex, size) in rows {
            let p = self.root().join("blobs").join(&hex[..2]).join(&hex);
            let data =
                std::fs::read(&p).unwrap_or_else(|e| panic!("blob row without file {hex}: {e}"));
            assert_eq!(data.len() as i64, size, "size of {hex}");
            assert_eq!(
                blake3::hash(&data).to_hex().as_str(),
                hex,
                "content of {hex}"
            );
        }
        let dangling: i64 = db
            .query_row(
                "SELECT count(*) FROM snapshot_items i WHERE i.blob IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.blake3 = i.blob)",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(dangling, 0, "snapshot items pointing at missing blobs");
        // Every snapshot is complete: its item count matches its rows.
        let bad: i64 = db
            .query_row(
                "SELECT count(*) FROM snapshots s WHERE s.items !=
                 (SELECT count(*) FROM snapshot_items i WHERE i.snapshot_id = s.id)",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(bad, 0, "partial snapshot");
    }
}

/// Run the binary against the store with umask 000 (the worst case for file modes).
pub fn run_umask0(store: &Store, args: &[&str]) -> Run {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(bin())
        .arg("--root")
        .arg(store.root())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Run::from(out)
}

/// The binary under the name `sstream-mirror` (as the MAAS docs call it), beside the store.
pub fn sstream_mirror_link(store: &Store) -> PathBuf {
    let link = store.dir.path().join("bin/sstream-mirror");
    if !link.exists() {
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(bin(), &link).unwrap();
    }
    link
}

/// Run the binary as `sstream-mirror ARGS…` (the store root from the environment).
pub fn sstream_mirror(store: &Store, args: &[&str]) -> Run {
    let out = Command::new(sstream_mirror_link(store))
        .args(args)
        .env("STREAMVAULT_ROOT", store.root())
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    Run::from(out)
}

/// The reference python `sstream-mirror`, if installed (`scripts/test.sh` installs it into
/// `target/compat-venv`; `SSTREAM_MIRROR` overrides). Missing under CI is a failure.
pub fn reference_sstream_mirror() -> Option<PathBuf> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = std::env::var_os("SSTREAM_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| top.join("target/compat-venv/bin/sstream-mirror"));
    if r.exists() {
        return Some(r);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "reference sstream-mirror missing at `{}` under CI",
        r.display()
    );
    eprintln!("skipped: reference sstream-mirror not installed (run scripts/test.sh)");
    None
}

// ------------------------------------------------------------------------- setups and publish

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

/// An upstream at generation 1 and a store with one source `name` added (`extra`: the filters,
/// `--max`… of `source add`), not synced yet.
pub fn with_source(name: &str, extra: &[&str]) -> (Upstream, Store) {
    let up = Upstream::new();
    let store = Store::new();
    store.add(name, &up, extra);
    (up, store)
}

/// An upstream at generation 1 and a store with one source `name` (with `extra` arguments of
/// `source add`: filters, `--max`…) synced once.
pub fn synced_source(name: &str, extra: &[&str]) -> (Upstream, Store) {
    let up = Upstream::new();
    let store = Store::new();
    store.add(name, &up, extra);
    store.sync_json(name);
    (up, store)
}

/// An upstream and a store with source `maas` synced once per generation given.
pub fn synced(generations: &[u32]) -> (Upstream, Store) {
    let up = Upstream::new();
    let store = Store::new();
    store.add("maas", &up, &[]);
    // These tests drive gc by hand: no retention after each sync.
    store.run(&["config", "set", "auto-gc", "off"]).ok();
    for &g in generations {
        up.flip(g);
        let r = store.sync_json("maas");
        assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    }
    (up, store)
}

// ------------------------------------------------------------------ the catalogue and layout

pub fn db(store: &Store) -> Connection {
    let c = Connection::open(store.root().join("catalog.db")).unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn blob_path(store: &Store, hex: &str) -> PathBuf {
    store.root().join("blobs").join(&hex[..2]).join(hex)
}

pub fn tree_path(store: &Store, name: &str) -> PathBuf {
    store.root().join("trees").join(name)
}

/// `(path, blob)` of a snapshot's items that have a file.
pub fn item_files(store: &Store, snapshot: i64) -> Vec<(String, String)> {
    let db = db(store);
    let mut st = db
        .prepare(
            "SELECT path, blob FROM snapshot_items WHERE snapshot_id = ?1
             AND path IS NOT NULL AND blob IS NOT NULL ORDER BY path",
        )
        .unwrap();
    st.query_map([snapshot], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every blob a snapshot names (items and documents).
pub fn snapshot_blobs(store: &Store, snapshot: i64) -> BTreeSet<String> {
    let db = db(store);
    let mut st = db
        .prepare(
            "SELECT blob FROM snapshot_items WHERE snapshot_id = ?1 AND blob IS NOT NULL
             UNION SELECT blob FROM snapshot_documents WHERE snapshot_id = ?1",
        )
        .unwrap();
    st.query_map([snapshot], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `trees/<name>`: a hardlink of each item's blob at its path, and the tree row. Returns its id.
pub fn make_tree(store: &Store, name: &str, snapshot: i64, created_at: i64) -> i64 {
    let dir = tree_path(store, name);
    let mut bytes = 0;
    let files = item_files(store, snapshot);
    for (p, b) in &files {
        let target = dir.join(p);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::hard_link(blob_path(store, b), &target).unwrap();
        bytes += std::fs::metadata(&target).unwrap().len() as i64;
    }
    let db = db(store);
    db.execute(
        "INSERT INTO trees (name, snapshot_id, mode, files, bytes, created_at)
         VALUES (?1, ?2, 'verbatim', ?3, ?4, ?5)",
        params![name, snapshot, files.len() as i64, bytes, created_at],
    )
    .unwrap();
    db.last_insert_rowid()
}

/// A publication row of a tree on `dest`.
pub fn publication(
    store: &Store,
    tree: i64,
    dest: &Path,
    published_at: i64,
    retired_at: Option<i64>,
) {
    let db = db(store);
    let snapshot: i64 = db
        .query_row("SELECT snapshot_id FROM trees WHERE id = ?1", [tree], |r| {
            r.get(0)
        })
        .unwrap();
    db.execute(
        "INSERT INTO publications (dest, tree_id, snapshot_id, action, published_at,
                                   published_by, retired_at)
         VALUES (?1, ?2, ?3, 'publish', ?4, 'test', ?5)",
        params![
            dest.to_str().unwrap(),
            tree,
            snapshot,
            published_at,
            retired_at
        ],
    )
    .unwrap();
}

pub fn snapshot_ids(store: &Store) -> Vec<i64> {
    store
        .run(&["snapshots", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect()
}

pub fn blob_rows(store: &Store) -> BTreeSet<String> {
    let db = db(store);
    let mut st = db.prepare("SELECT blake3 FROM blobs").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The names of the files under `blobs/`.
pub fn blob_files(store: &Store) -> BTreeSet<String> {
    walkdir::WalkDir::new(store.root().join("blobs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Link a snapshot's metadata documents into a hand-made tree (verify checks them too).
pub fn link_documents(store: &Store, tree: &str, snapshot: i64) {
    let db = db(store);
    let mut st = db
        .prepare("SELECT path, blob FROM snapshot_documents WHERE snapshot_id = ?1")
        .unwrap();
    let docs: Vec<(String, String)> = st
        .query_map([snapshot], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (p, b) in docs {
        let target = tree_path(store, tree).join(p);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::hard_link(blob_path(store, &b), &target).unwrap();
    }
}

pub fn gc_json(store: &Store, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["gc", "--json"];
    a.extend_from_slice(args);
    store.run(&a).ok().json()
}

/// Every file under the store with its size and inode (SQLite's -shm/-wal excluded).
pub fn listing(root: &Path) -> Vec<(String, u64, u64)> {
    let mut v: Vec<_> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.file_type().is_dir())
        .filter(|e| {
            let n = e.file_name().to_string_lossy();
            !n.ends_with("-shm") && !n.ends_with("-wal") && n != "lock"
        })
        .map(|e| {
            let m = e.path().symlink_metadata().unwrap();
            (e.path().display().to_string(), m.len(), m.ino())
        })
        .collect();
    v.sort();
    v
}

/// Also no tree row without its directory.
pub fn check_trees(store: &Store) {
    let db = db(store);
    let mut st = db.prepare("SELECT name FROM trees").unwrap();
    let names: Vec<String> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for n in names {
        assert!(
            tree_path(store, &n).is_dir(),
            "tree row {n} without its directory"
        );
    }
}

/// The report lines of a `verify` run (its `verify:` progress lines left out).
pub fn verify_lines(r: &Run) -> Vec<&str> {
    r.stdout
        .lines()
        .filter(|l| !l.starts_with("verify:"))
        .collect()
}

/// `gpgv --keyring=<keyring> <file>` in a throwaway GNUPGHOME.
pub fn gpgv(keyring: &Path, file: &Path) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    Command::new("gpgv")
        .env("GNUPGHOME", home.path())
        .arg(format!("--keyring={}", keyring.display()))
        .arg(file)
        .output()
        .expect("gpgv is installed (scripts/test.sh)")
}

/// The migration files (`schema/*.sql`) in name order, which is the order the catalogue applies
/// them in (one file per schema version).
pub fn migrations() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert_eq!(
        files.len() as i64,
        streamvault::catalog::SCHEMA_VERSION,
        "one file per migration"
    );
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

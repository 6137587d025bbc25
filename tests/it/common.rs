//! Shared test harness: a signed generated upstream served on 127.0.0.1 (random port) by the
//! crate's own server, a store root in a temp dir, and a runner for the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use streamvault::openpgp::SigningKey;
use streamvault::serve::{self, Faults, RequestRecord, ServeOptions, ServerHandle};
use streamvault::streamgen::{self, StreamSpec};
use tempfile::TempDir;

/// A generated MAAS-shaped upstream: `gen<N>/` trees, `current` → one of them, served.
pub struct Upstream {
    pub dir: TempDir,
    pub key: SigningKey,
    pub keyring: PathBuf,
    pub server: ServerHandle,
}

impl Upstream {
    /// Generation 1, signed, served.
    pub fn new() -> Upstream {
        Self::with_spec(StreamSpec::generation(1))
    }

    pub fn with_spec(spec: StreamSpec) -> Upstream {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SigningKey::generate("streamvault test <test@example.invalid>").expect("key");
        let keyring = dir.path().join("keyring.gpg");
        std::fs::write(&keyring, key.public_keyring_binary().expect("export")).expect("write");
        let up = Upstream {
            server: serve::spawn(ServeOptions::new(dir.path().join("current"))).expect("serve"),
            dir,
            key,
            keyring,
        };
        up.build(&spec);
        up.flip(spec.generation);
        up
    }

    pub fn gen_dir(&self, generation: u32) -> PathBuf {
        self.dir.path().join(format!("gen{generation}"))
    }

    /// Generate a tree (signed) for a spec into `gen<N>/`.
    pub fn build(&self, spec: &StreamSpec) -> streamgen::Summary {
        let sign = |b: &[u8]| self.key.clearsign(b).map_err(|e| e.to_string());
        streamgen::generate(&self.gen_dir(spec.generation), spec, Some(&sign)).expect("generate")
    }

    /// Point `current` at generation N (built first if missing), atomically.
    pub fn flip(&self, generation: u32) {
        let target = self.gen_dir(generation);
        if !target.exists() {
            self.build(&StreamSpec::generation(generation));
        }
        let tmp = self.dir.path().join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.dir.path().join("current")).expect("rename");
    }

    /// The tree `current` points at.
    pub fn current(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("current")).expect("current")
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn keyring_str(&self) -> &str {
        self.keyring.to_str().expect("utf-8 path")
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.server.requests()
    }

    pub fn clear(&self) {
        self.server.clear_requests();
    }

    pub fn faults(&self, f: Faults) {
        self.server.set_faults(f);
    }
}

/// GET requests of a log whose path does (or does not) lie under `streams/`.
pub fn metadata_gets(reqs: &[RequestRecord]) -> usize {
    reqs.iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/streams/"))
        .count()
}

pub fn item_gets(reqs: &[RequestRecord]) -> usize {
    reqs.iter()
        .filter(|r| r.method == "GET" && !r.path.starts_with("/streams/"))
        .count()
}

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

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_streamvault")
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
        let mut c = Command::new(bin());
        c.arg("--root").arg(self.root()).args(args);
        c.env_remove("RUST_BACKTRACE");
        c.env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.cmd(args).output().expect("run streamvault");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
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

/// Path of a shared fixture (`../shared/fixtures/...` beside the project root).
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(rel)
}

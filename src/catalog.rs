//! The SQLite catalogue (`catalog.db`, WAL): sources, blobs, snapshots and their rows.
//!
//! Migrations live in `schema/NNNN_name.sql` and are applied in order by `PRAGMA user_version`.
//! URL credentials are never stored here: [`Catalog::upsert_source`] moves the user info of a
//! source's URLs to the `credentials` file beside the catalogue (mode 0600, see `catalog::ops`),
//! and an older catalogue that still holds some is cleaned when it is opened for writing.
//! `catalog.db` and its `-wal`/`-shm` are mode 0600 whatever the umask.
//! Protects invariant 2: [`Catalog::insert_snapshot`] writes a snapshot, its documents and items
//! in one transaction; nothing here ever updates a snapshot row afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub mod status;

use crate::checksum::{Checksums, Digests};
use crate::error::{Error, Result};

mod ops;
pub use ops::{AutoPublish, Run, join_credentials, split_credentials, strip_credentials};
mod filter_groups;
mod validators;
pub use validators::StoredValidators;

/// Migrations, in order; the position + 1 is the schema version they bring the catalogue to.
const MIGRATIONS: &[&str] = &[
    include_str!("../schema/0001_init.sql"),
    include_str!("../schema/0002_publish.sql"),
    include_str!("../schema/0003_grace.sql"),
    include_str!("../schema/0004_ops.sql"),
    include_str!("../schema/0005_tree_documents.sql"),
    include_str!("../schema/0006_validators.sql"),
    // 0007: publications to S3 (src/publish/s3/record.rs)
    include_str!("../schema/0007_s3.sql"),
    // 0008/0009 were reserved and are unused
    include_str!("../schema/0010_gc_pending.sql"),
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A configured upstream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub path: Option<String>,
    pub keyring: Option<PathBuf>,
    pub max: Option<i64>,
    pub keep: bool,
    pub no_verify: bool,
    pub mirrors: Vec<String>,
    pub filters: Vec<String>,
    pub created_at: i64,
    /// The implicit source of a `mirror` OUTPUT_DIR: retention keeps only what it serves.
    pub implicit: bool,
    /// Publish each new snapshot here after a sync (`source add … --publish DEST`).
    pub publish: Option<AutoPublish>,
    /// User info per URL (`url`, a mirror), from the credentials file; never printed.
    #[serde(skip)]
    pub credentials: BTreeMap<String, String>,
}

/// What `source add` records.
#[derive(Debug, Clone, Default)]
pub struct NewSource {
    pub name: String,
    pub url: String,
    pub path: Option<String>,
    pub keyring: Option<PathBuf>,
    pub max: Option<i64>,
    pub keep: bool,
    pub no_verify: bool,
    pub mirrors: Vec<String>,
    pub filters: Vec<String>,
}

/// One snapshot's summary row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub id: i64,
    pub source: String,
    pub created_at: i64,
    pub url: String,
    pub start_path: String,
    pub filters: Vec<String>,
    pub max: Option<i64>,
    pub keep: bool,
    pub signed: bool,
    pub verified: bool,
    pub signer: Option<String>,
    pub products: i64,
    pub versions: i64,
    pub items: i64,
    pub bytes: i64,
    pub fetched_bytes: i64,
    pub duration_ms: i64,
    pub digest: String,
}

/// A metadata document kept verbatim in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Document {
    pub ord: i64,
    pub path: String,
    pub kind: String,
    pub content_id: Option<String>,
    pub blob: String,
}

/// One item of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    pub content_id: String,
    pub product: String,
    pub version: String,
    pub item: String,
    pub path: Option<String>,
    pub size: Option<u64>,
    #[serde(skip)]
    pub checksums: Checksums,
    pub blob: Option<String>,
}

impl Item {
    /// The identity of an item: `(content_id, product, version, item)`.
    pub fn key(&self) -> (&str, &str, &str, &str) {
        (&self.content_id, &self.product, &self.version, &self.item)
    }
}

/// A snapshot about to be written.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    pub source_id: Option<i64>,
    pub source: String,
    pub url: String,
    pub start_path: String,
    pub filters: Vec<String>,
    pub max: Option<i64>,
    pub keep: bool,
    pub signed: bool,
    pub verified: bool,
    pub signer: Option<String>,
    pub fetched_bytes: u64,
    pub duration_ms: u64,
    pub digest: String,
    pub documents: Vec<Document>,
    pub items: Vec<Item>,
}

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

/// Source names become lock-file names and appear in commands: keep them plain.
pub fn check_source_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadSourceName(name.to_string()))
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Catalog {
    /// Open (creating if needed) and migrate the catalogue.
    pub fn open(path: &Path) -> Result<Catalog> {
        private_file(path)?;
        let conn = Connection::open(path).map_err(|e| db(path, e))?;
        let mut cat = Catalog {
            conn,
            path: path.to_path_buf(),
        };
        cat.configure()?;
        // SQLite gives -wal and -shm the database file's mode; older stores may have 0644 ones.
        for ext in ["db-wal", "db-shm"] {
            let p = path.with_extension(ext);
            if p.exists() {
                private_file(&p)?;
            }
        }
        cat.migrate()?;
        cat.move_credentials_out()?;
        Ok(cat)
    }

    /// An empty, migrated catalogue in memory: no file, no fsync (a `mirror --dry-run` on a
    /// root without a store plans against it).
    pub fn open_in_memory() -> Result<Catalog> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| db(&path, e))?;
        let mut cat = Catalog { conn, path };
        cat.migrate()?;
        Ok(cat)
    }

    /// Open an existing catalogue read-only; `None` if there is none yet.
    pub fn open_read_only(path: &Path) -> Result<Option<Catalog>> {
        if !path.exists() {
            return Ok(None);
        }
        let cat = match Self::open_ro(path, false).and_then(|c| c.user_version().map(|_| c)) {
            Ok(c) => c,
            // A read-only root (read-only mount, or a user who may read but not write it): the
            // WAL's `-shm` cannot be created. Nobody can write such a catalogue, so it is read
            // as immutable (SQLite then needs no `-shm`, and takes no locks).
            Err(first) => match Self::open_ro(path, true) {
                Ok(c) if c.user_version().is_ok() => c,
                _ => return Err(first),
            },
        };
        let v = cat.user_version()?;
        if v > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                path: path.to_path_buf(),
                found: v,
                known: SCHEMA_VERSION,
            });
        }
        Ok(Some(cat))
    }

    fn open_ro(path: &Path, immutable: bool) -> Result<Catalog> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if immutable {
            // `file:` URI: `%`, `?` and `#` of the path percent-encoded.
            let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            let mut uri = String::from("file:");
            for b in abs.as_os_str().as_encoded_bytes() {
                match b {
                    b'%' | b'?' | b'#' => uri.push_str(&format!("%{b:02X}")),
                    b if b.is_ascii() => uri.push(char::from(*b)),
                    b => uri.push_str(&format!("%{b:02X}")),
                }
            }
            uri.push_str("?immutable=1");
            Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
        } else {
            Connection::open_with_flags(path, flags)
        }
        .map_err(|e| db(path, e))?;
        conn.busy_timeout(Duration::from_secs(30))
            .map_err(|e| db(path, e))?;
        Ok(Catalog {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn err(&self, e: rusqlite::Error) -> Error {
        db(&self.path, e)
    }

    /// The connection, for modules that own the SQL of their own tables (publish, gc, verify).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&self) -> Result<()> {
        self.conn
            .busy_timeout(Duration::from_secs(60))
            .map_err(|e| self.err(e))?;
        self.conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(|e| self.err(e))
    }

    fn user_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<()> {
        let v = self.user_version()?;
        if v > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                path: self.path.clone(),
                found: v,
                known: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let target = i as i64 + 1;
            if target <= v {
                continue;
            }
            let path = self.path.clone();
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
                .map_err(|e| db(&path, e))?;
            // Another process may have migrated while we waited for the write lock.
            let now_v: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| db(&path, e))?;
            if now_v >= target {
                continue;
            }
            tx.execute_batch(sql).map_err(|e| db(&path, e))?;
            tx.execute_batch(&format!("PRAGMA user_version = {target}"))
                .map_err(|e| db(&path, e))?;
            tx.commit().map_err(|e| db(&path, e))?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- sources

    pub fn add_source(&self, s: &NewSource) -> Result<i64> {
        check_source_name(&s.name)?;
        let exists: Option<i64> = self
            .conn
            .query_row("SELECT id FROM sources WHERE name = ?1", [&s.name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        if exists.is_some() {
            return Err(Error::SourceExists(s.name.clone()));
        }
        Ok(self.upsert_source(s)?.id)
    }

    /// Create a source or update its settings in place (the implicit sources of `mirror`, whose
    /// command line may change between runs); snapshots keep what each run used.
    pub fn upsert_source(&self, s: &NewSource) -> Result<Source> {
        check_source_name(&s.name)?;
        // Credentials go to the credentials file, never into the catalogue.
        let mut creds = BTreeMap::new();
        let mut clean = |u: &str| {
            let (c, info) = split_credentials(u);
            if let Some(i) = info {
                creds.insert(c.clone(), i);
            }
            c
        };
        let url = clean(&s.url);
        let mirrors: Vec<String> = s.mirrors.iter().map(|m| clean(m)).collect();
        self.store_credentials(&s.name, creds)?;
        self.conn
            .execute(
                "INSERT INTO sources (name, url, path, keyring, max_versions, keep, no_verify,
                                      mirrors, filters, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(name) DO UPDATE SET url = excluded.url, path = excluded.path,
                   keyring = excluded.keyring, max_versions = excluded.max_versions,
                   keep = excluded.keep, no_verify = excluded.no_verify,
                   mirrors = excluded.mirrors, filters = excluded.filters",
                params![
                    s.name,
                    url,
                    s.path,
                    s.keyring.as_ref().map(|p| p.to_string_lossy().into_owned()),
                    s.max,
                    s.keep,
                    s.no_verify,
                    json_list(&mirrors),
                    json_list(&s.filters),
                    now(),
                ],
            )
            .map_err(|e| self.err(e))?;
        self.source(&s.name)
    }

    pub fn sources(&self) -> Result<Vec<Source>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, name, url, path, keyring, max_versions, keep, no_verify, mirrors,
                        filters, created_at FROM sources ORDER BY name",
            )
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], source_from_row).map_err(|e| self.err(e))?;
        let mut list = rows
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        for s in &mut list {
            self.source_extras(s)?;
        }
        Ok(list)
    }

    pub fn source(&self, name: &str) -> Result<Source> {
        let mut s = self
            .conn
            .query_row(
                "SELECT id, name, url, path, keyring, max_versions, keep, no_verify, mirrors,
                        filters, created_at FROM sources WHERE name = ?1",
                [name],
                source_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::UnknownSource(name.to_string()))?;
        self.source_extras(&mut s)?;
        Ok(s)
    }

    /// Remove a source; its snapshots stay (with the name recorded) until `gc` drops them.
    pub fn remove_source(&self, name: &str) -> Result<()> {
        let n = self
            .conn
            .execute("DELETE FROM sources WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(Error::UnknownSource(name.to_string()));
        }
        self.forget_credentials(name)
    }

    // ---------------------------------------------------------------- blobs

    /// A stored blob whose upstream checksum (strongest given) and size match, if any.
    pub fn find_blob(&self, sums: &Checksums, size: u64) -> Result<Option<String>> {
        let (sql, val) = if let Some(v) = &sums.sha512 {
            (
                "SELECT blake3 FROM blobs WHERE sha512 = ?1 AND size = ?2",
                v,
            )
        } else if let Some(v) = &sums.sha256 {
            (
                "SELECT blake3 FROM blobs WHERE sha256 = ?1 AND size = ?2",
                v,
            )
        } else if let Some(v) = &sums.md5 {
            ("SELECT blake3 FROM blobs WHERE md5 = ?1 AND size = ?2", v)
        } else {
            return Ok(None);
        };
        self.conn
            .query_row(sql, params![val.to_ascii_lowercase(), size as i64], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Record a blob whose file is already durable (invariant 1); fills in checksums that an
    /// earlier row lacked.
    pub fn insert_blob(&self, d: &Digests) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO blobs (blake3, size, md5, sha256, sha512, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(blake3) DO UPDATE SET
                   md5 = coalesce(blobs.md5, excluded.md5),
                   sha256 = coalesce(blobs.sha256, excluded.sha256),
                   sha512 = coalesce(blobs.sha512, excluded.sha512)",
                params![
                    d.blake3,
                    d.size as i64,
                    d.upstream.md5,
                    d.upstream.sha256,
                    d.upstream.sha512,
                    now()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// [`Self::insert_blob`] for a batch, in one transaction (one WAL fsync).
    pub fn insert_blobs(&mut self, batch: &[Digests]) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| db(&path, e))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO blobs (blake3, size, md5, sha256, sha512, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(blake3) DO UPDATE SET
                       md5 = coalesce(blobs.md5, excluded.md5),
                       sha256 = coalesce(blobs.sha256, excluded.sha256),
                       sha512 = coalesce(blobs.sha512, excluded.sha512)",
                )
                .map_err(|e| db(&path, e))?;
            let t = now();
            for d in batch {
                st.execute(params![
                    d.blake3,
                    d.size as i64,
                    d.upstream.md5,
                    d.upstream.sha256,
                    d.upstream.sha512,
                    t
                ])
                .map_err(|e| db(&path, e))?;
            }
        }
        tx.commit().map_err(|e| db(&path, e))
    }

    pub fn has_blob(&self, blake3: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM blobs WHERE blake3 = ?1",
                [blake3],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }

    // ---------------------------------------------------------------- snapshots

    /// Write a snapshot and all its rows in one transaction (invariant 2). Every blob it names
    /// must already have its row (foreign keys are on).
    pub fn insert_snapshot(&mut self, s: &NewSnapshot) -> Result<i64> {
        let path = self.path.clone();
        let e = |err| db(&path, err);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let mut products = std::collections::HashSet::new();
        let mut versions = std::collections::HashSet::new();
        let mut bytes: u64 = 0;
        for it in &s.items {
            products.insert((&it.content_id, &it.product));
            versions.insert((&it.content_id, &it.product, &it.version));
            bytes += it.size.unwrap_or(0);
        }
        tx.execute(
            "INSERT INTO snapshots (source_id, source_name, created_at, url, start_path, filters,
                max_versions, keep, signed, verified, signer, products, versions, items, bytes,
                fetched_bytes, duration_ms, digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            params![
                s.source_id,
                s.source,
                now(),
                s.url,
                s.start_path,
                json_list(&s.filters),
                s.max,
                s.keep,
                s.signed,
                s.verified,
                s.signer,
                products.len() as i64,
                versions.len() as i64,
                s.items.len() as i64,
                bytes as i64,
                s.fetched_bytes as i64,
                s.duration_ms as i64,
                s.digest,
            ],
        )
        .map_err(e)?;
        let id = tx.last_insert_rowid();
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO snapshot_documents (snapshot_id, ord, path, kind, content_id, blob)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(e)?;
            for d in &s.documents {
                st.execute(params![id, d.ord, d.path, d.kind, d.content_id, d.blob])
                    .map_err(e)?;
            }
            let mut st = tx
                .prepare(
                    "INSERT INTO snapshot_items (snapshot_id, content_id, product, version, item,
                        path, size, md5, sha256, sha512, blob)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(e)?;
            for it in &s.items {
                st.execute(params![
                    id,
                    it.content_id,
                    it.product,
                    it.version,
                    it.item,
                    it.path,
                    it.size.map(|v| v as i64),
                    it.checksums.md5,
                    it.checksums.sha256,
                    it.checksums.sha512,
                    it.blob,
                ])
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(id)
    }

    pub fn snapshots(&self, source: Option<&str>) -> Result<Vec<Snapshot>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "{SNAPSHOT_COLUMNS} WHERE (?1 IS NULL OR source_name = ?1) ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([source], snapshot_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    pub fn snapshot(&self, id: i64) -> Result<Snapshot> {
        self.conn
            .query_row(
                &format!("{SNAPSHOT_COLUMNS} WHERE id = ?1"),
                [id],
                snapshot_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| Error::UnknownSnapshot(id.to_string()))
    }

    /// The newest snapshot of a source.
    pub fn latest_snapshot(&self, source: &str) -> Result<Option<Snapshot>> {
        self.conn
            .query_row(
                &format!("{SNAPSHOT_COLUMNS} WHERE source_name = ?1 ORDER BY id DESC LIMIT 1"),
                [source],
                snapshot_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Resolve an id or a source name (= its latest snapshot).
    pub fn resolve_snapshot(&self, spec: &str) -> Result<Snapshot> {
        if let Ok(id) = spec.parse::<i64>() {
            return self.snapshot(id);
        }
        self.latest_snapshot(spec)?
            .ok_or_else(|| Error::UnknownSnapshot(spec.to_string()))
    }

    pub fn documents(&self, snapshot: i64) -> Result<Vec<Document>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT ord, path, kind, content_id, blob FROM snapshot_documents
                 WHERE snapshot_id = ?1 ORDER BY ord",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([snapshot], |r| {
                Ok(Document {
                    ord: r.get(0)?,
                    path: r.get(1)?,
                    kind: r.get(2)?,
                    content_id: r.get(3)?,
                    blob: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Stream the items of a snapshot in key order without collecting them.
    pub fn for_each_item(
        &self,
        snapshot: i64,
        mut f: impl FnMut(Item) -> Result<()>,
    ) -> Result<()> {
        let mut st = self
            .conn
            .prepare(&format!(
                "{ITEM_COLUMNS} WHERE snapshot_id = ?1 ORDER BY content_id, product, version, item"
            ))
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([snapshot]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            f(item_from_row(r).map_err(|e| self.err(e))?)?;
        }
        Ok(())
    }

    pub fn items(&self, snapshot: i64) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        self.for_each_item(snapshot, |it| {
            out.push(it);
            Ok(())
        })?;
        Ok(out)
    }

    /// The versions of each `(content_id, product)` in a snapshot.
    pub fn snapshot_versions(
        &self,
        snapshot: i64,
    ) -> Result<BTreeMap<(String, String), Vec<String>>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT DISTINCT content_id, product, version FROM snapshot_items
                 WHERE snapshot_id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([snapshot]).map_err(|e| self.err(e))?;
        let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let cid: String = r.get(0).map_err(|e| self.err(e))?;
            let prod: String = r.get(1).map_err(|e| self.err(e))?;
            let ver: String = r.get(2).map_err(|e| self.err(e))?;
            out.entry((cid, prod)).or_default().push(ver);
        }
        Ok(out)
    }

    /// The items of one version of a snapshot.
    pub fn version_items(
        &self,
        snapshot: i64,
        content_id: &str,
        product: &str,
        version: &str,
    ) -> Result<Vec<Item>> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "{ITEM_COLUMNS} WHERE snapshot_id = ?1 AND content_id = ?2 AND product = ?3
                 AND version = ?4 ORDER BY item"
            ))
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(
                params![snapshot, content_id, product, version],
                item_from_row,
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }
}

const SNAPSHOT_COLUMNS: &str = "SELECT id, source_name, created_at, url, start_path, filters,
    max_versions, keep, signed, verified, signer, products, versions, items, bytes,
    fetched_bytes, duration_ms, digest FROM snapshots";

const ITEM_COLUMNS: &str = "SELECT content_id, product, version, item, path, size, md5, sha256,
    sha512, blob FROM snapshot_items";

/// Create `path` with mode 0600 if missing, or set an existing file's mode to 0600 (whatever
/// the umask): the catalogue and its WAL hold the store's records and must not be world-readable.
///
/// An existing file is only ever changed by path (`chmod`), never opened: closing any
/// descriptor of a SQLite file drops this process's POSIX locks on it, after which another
/// process may truncate the `-shm` file under our mapping (SIGBUS).
fn private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |op: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o777 != 0o600 {
                match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                    // Another owner's file: its owner decides (we may still have write access).
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                    r => r.map_err(io("chmod"))?,
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(io("create")(e)),
            }
        }
        Err(e) => Err(io("stat")(e)),
    }
}

fn db(path: &Path, e: rusqlite::Error) -> Error {
    Error::Db {
        path: path.to_path_buf(),
        source: e,
    }
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())
}

/// A list column that must read back exactly (filters): a damaged value is an error, never
/// "no filters" (which would mirror everything).
fn parse_list_strict(s: &str, col: usize) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn source_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Source> {
    let keyring: Option<String> = r.get(4)?;
    let mirrors: String = r.get(8)?;
    let mirrors = parse_list_strict(&mirrors, 8)?;
    let filters: String = r.get(9)?;
    let filters = parse_list_strict(&filters, 9)?;
    Ok(Source {
        id: r.get(0)?,
        name: r.get(1)?,
        url: r.get(2)?,
        path: r.get(3)?,
        keyring: keyring.map(PathBuf::from),
        max: r.get(5)?,
        keep: r.get(6)?,
        no_verify: r.get(7)?,
        mirrors,
        filters,
        created_at: r.get(10)?,
        implicit: false,
        publish: None,
        credentials: BTreeMap::new(),
    })
}

fn snapshot_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Snapshot> {
    let filters: String = r.get(5)?;
    let filters = parse_list_strict(&filters, 5)?;
    Ok(Snapshot {
        id: r.get(0)?,
        source: r.get(1)?,
        created_at: r.get(2)?,
        // Catalogues written before credentials moved out may hold user info here.
        url: strip_credentials(&r.get::<_, String>(3)?),
        start_path: r.get(4)?,
        filters,
        max: r.get(6)?,
        keep: r.get(7)?,
        signed: r.get(8)?,
        verified: r.get(9)?,
        signer: r.get(10)?,
        products: r.get(11)?,
        versions: r.get(12)?,
        items: r.get(13)?,
        bytes: r.get(14)?,
        fetched_bytes: r.get(15)?,
        duration_ms: r.get(16)?,
        digest: r.get(17)?,
    })
}

fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let size: Option<i64> = r.get(5)?;
    Ok(Item {
        content_id: r.get(0)?,
        product: r.get(1)?,
        version: r.get(2)?,
        item: r.get(3)?,
        path: r.get(4)?,
        size: size.and_then(|s| u64::try_from(s).ok()),
        checksums: Checksums {
            md5: r.get(6)?,
            sha256: r.get(7)?,
            sha512: r.get(8)?,
        },
        blob: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::MultiHasher;

    fn digests(data: &[u8]) -> Digests {
        let mut h = MultiHasher::all();
        h.update(data);
        h.finish()
    }

    #[test]
    fn migrate_is_idempotent_and_versioned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.db");
        drop(Catalog::open(&p).unwrap());
        let c = Catalog::open(&p).unwrap();
        assert_eq!(c.user_version().unwrap(), SCHEMA_VERSION);
        let mode: String = c
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.db");
        let c = Catalog::open(&p).unwrap();
        c.conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(c);
        assert!(matches!(
            Catalog::open(&p),
            Err(Error::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn snapshot_rows_need_blob_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let d = digests(b"x");
        let item = Item {
            content_id: "c".into(),
            product: "p".into(),
            version: "1".into(),
            item: "i".into(),
            path: Some("a/b".into()),
            size: Some(1),
            checksums: d.upstream.clone(),
            blob: Some(d.blake3.clone()),
        };
        let snap = NewSnapshot {
            source_id: None,
            source: "s".into(),
            url: "u".into(),
            start_path: "p".into(),
            filters: vec![],
            max: None,
            keep: false,
            signed: false,
            verified: false,
            signer: None,
            fetched_bytes: 0,
            duration_ms: 0,
            digest: "d".into(),
            documents: vec![],
            items: vec![item],
        };
        // Without the blob row the foreign key refuses the whole snapshot.
        assert!(c.insert_snapshot(&snap).is_err());
        assert!(c.snapshots(None).unwrap().is_empty());
        c.insert_blob(&d).unwrap();
        let id = c.insert_snapshot(&snap).unwrap();
        assert_eq!(c.items(id).unwrap().len(), 1);
        assert_eq!(
            c.find_blob(&d.upstream, 1).unwrap().as_deref(),
            Some(d.blake3.as_str())
        );
        assert_eq!(c.find_blob(&d.upstream, 2).unwrap(), None);
    }
}

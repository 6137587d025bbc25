//! The SQLite catalogue (`catalog.db`, WAL): the one owner of the store's SQL.
//!
//! This file holds [`Catalog`] itself: opening (read-write or read-only), the migrations (in
//! `schema/NNNN_name.sql`, applied in order by `PRAGMA user_version`; one that rebuilds a table
//! others refer to carries a marker line and runs with foreign keys off) and the small crate-private
//! helpers every query uses (`Catalog::sql`, `rows`, `row`, `exec`, `each`, `write`), which turn a
//! SQLite error into one [`Error::Db`] naming the catalogue: no `.map_err(|e| cat.err(e))` after
//! every call.
//! The queries live beside it, one file per group of tables:
//!
//! - `sources`: the configured upstreams and their filter groups;
//! - `blobs`: one row per stored file (a `WITHOUT ROWID` table in name order, schema 0015);
//! - `snapshots`: snapshots, their documents and items (written once, never updated);
//! - `trees`: materialised trees, their documents and grace items;
//! - `publications`: flips of a local DEST link, and publications to S3;
//! - `ops`: settings, run history, implicit/auto-publish marks, the credentials file;
//! - `validators`: HTTP validators of metadata documents; `status`: `serve`'s status page;
//! - `ids`: the typed row ids ([`SnapshotId`], [`SourceId`], [`TreeId`], [`PublicationId`],
//!   [`S3PublicationId`], [`RunId`]), stored and printed as the bare integer.
//!
//! Values the catalogue stores from a closed set (publication actions, metadata modes) are enums
//! with SQL conversions; a damaged stored value is an error, never a default.
//! URL credentials are never stored here: [`Catalog::upsert_source`] moves the user info of a
//! source's URLs to the `credentials` file beside the catalogue (mode 0600, see `catalog::ops`),
//! and an older catalogue that still holds some is cleaned when it is opened for writing.
//! `catalog.db` and its `-wal`/`-shm` are mode 0600 whatever the umask.
//! Protects invariant 2 (in `snapshots`): a snapshot, its documents and items are written in one
//! transaction; nothing here ever updates a snapshot row afterwards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Params, Row, Transaction};

pub mod status;

use crate::error::{Error, Result};

/// The text conversions of an enum the catalogue stores as text from a closed set:
/// `as_str`, `parse` (`None` for any other string), `Display`, `ToSql`, and `FromSql`, which
/// makes a stored value outside the set an error naming `$what`, never a default.
macro_rules! stored_enum {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value a stored string names; `None` for anything else (a damaged value).
            pub(crate) fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                v: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                $name::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} `{s}` in the catalogue", $what).into(),
                    )
                })
            }
        }
    };
}

mod blobs;
mod compose;
mod ids;
mod kept;
pub use ids::{PublicationId, RunId, S3PublicationId, SnapshotId, SourceId, TreeId};
pub(crate) mod maintenance;
mod ops;
mod publications;
mod reading;
mod s3;
mod snapshot_rows;
mod snapshots;
mod sources;
mod trees;
pub(crate) use snapshot_rows::SnapshotTotals;
mod validators;
pub(crate) use compose::TreeInput;
pub use kept::KeptVersion;
pub use ops::{
    AutoPublish, Run, RunResult, join_credentials, split_credentials, strip_credentials,
};
pub use publications::{
    NewS3Publication, Publication, PublicationAction, S3Document, S3Publication,
};
pub use s3::{DOCUMENT_CHUNK, DocBody, ListedItem, NewS3Doc, S3Object};
pub(crate) use snapshots::digest_sorted;
pub use snapshots::{
    DocumentKind, Item, ItemFile, NewSnapshot, Snapshot, StoredDocument, snapshot_digest,
};
pub use sources::{NewSource, Source, check_source_name};
pub use trees::{MetadataMode, TreeDocument, TreeRow};
pub(crate) use validators::StoredValidators;

/// Migrations, in order; the position + 1 is the schema version they bring the catalogue to.
const MIGRATIONS: &[&str] = &[
    include_str!("../schema/0001_init.sql"),
    include_str!("../schema/0002_publish.sql"),
    include_str!("../schema/0003_grace.sql"),
    include_str!("../schema/0004_ops.sql"),
    include_str!("../schema/0005_tree_documents.sql"),
    include_str!("../schema/0006_validators.sql"),
    // 0007: publications to S3 (src/catalog/publications.rs)
    include_str!("../schema/0007_s3.sql"),
    // 0008/0009 were reserved and are unused
    include_str!("../schema/0010_gc_pending.sql"),
    // 0011: inputs of composed trees (src/catalog/compose.rs)
    include_str!("../schema/0011_compose.sql"),
    // 0012: what each S3 publication lists (src/catalog/s3.rs)
    include_str!("../schema/0012_s3_objects.sql"),
    // 0014: the covering index gc's plan walks (src/gc/plan.rs)
    include_str!("../schema/0014_gc_scan.sql"),
    // 0015: the blob table in name order, WITHOUT ROWID (src/gc/plan.rs deletes in that order)
    include_str!("../schema/0015_blobs_by_name.sql"),
    // 0017: big S3 documents kept in chunks (src/catalog/s3.rs)
    include_str!("../schema/0017_s3_document_chunks.sql"),
    // 0018: versions carried by `--keep`, described as synced (src/catalog/kept.rs)
    include_str!("../schema/0018_kept_versions.sql"),
    // 0019: the automatic gc's orphan walk cursor (src/catalog/ops.rs, src/gc.rs)
    include_str!("../schema/0019_gc_state.sql"),
];

/// A line marking a migration that rebuilds a table others refer to (SQLite's 12-step
/// procedure): it is applied with foreign keys off, which cannot change inside a transaction.
const FOREIGN_KEYS_OFF: &str = "-- streamvault: foreign keys off";

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

use crate::host::now;

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
    pub(crate) fn open_in_memory() -> Result<Catalog> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| db(&path, e))?;
        let mut cat = Catalog { conn, path };
        cat.migrate()?;
        Ok(cat)
    }

    /// Open an existing catalogue read-only; `None` if there is none yet. A catalogue of
    /// another schema version is an error: a newer one ([`Error::SchemaTooNew`]) and an older
    /// one ([`Error::SchemaTooOld`]; it cannot be migrated read-only, and every query expects
    /// the current schema, so it is refused once here rather than failing on a missing column).
    pub(crate) fn open_read_only(path: &Path) -> Result<Option<Catalog>> {
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
        if v < SCHEMA_VERSION {
            return Err(Error::SchemaTooOld {
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

    pub(crate) fn err(&self, e: rusqlite::Error) -> Error {
        db(&self.path, e)
    }

    /// The raw connection, inside the crate only (gc's temporary-table plan, and code not yet
    /// moved into the catalogue). New SQL belongs in a file under `src/catalog/`.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    // ------------------------------------------------ the helpers every query uses
    //
    // Each runs rusqlite code and maps its error once, to an `Error::Db` naming this catalogue:
    // use them instead of writing `.map_err(|e| cat.err(e))` after every call.

    /// Run `f` on the connection; its SQLite error becomes [`Error::Db`].
    pub(crate) fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        f(&self.conn).map_err(|e| self.err(e))
    }

    /// Execute one statement (cached); the number of rows changed.
    pub(crate) fn exec(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.sql(|c| c.prepare_cached(sql)?.execute(params))
    }

    /// Every row of `sql`, each turned into a `T` by `map`.
    pub(crate) fn rows<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        self.sql(|c| {
            let mut st = c.prepare_cached(sql)?;
            let rows = st.query_map(params, map)?;
            rows.collect()
        })
    }

    /// The first row of `sql`, if there is one.
    pub(crate) fn row<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        self.sql(|c| c.prepare_cached(sql)?.query_row(params, map).optional())
    }

    /// Stream the rows of `sql` to `f` (which may fail with any error) without collecting them.
    pub(crate) fn each<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
        mut f: impl FnMut(T) -> Result<()>,
    ) -> Result<()> {
        let mut st = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let mut rows = st.query(params).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            f(map(r).map_err(|e| self.err(e))?)?;
        }
        Ok(())
    }

    /// Run `f` in one transaction, committed if it succeeds (rolled back if it fails).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.sql(|c| {
            let tx = c.unchecked_transaction()?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })
    }

    /// Run `f` with its commits not waiting for the WAL's fsync (`synchronous = NORMAL`), then
    /// back to full sync whatever `f` returned. What `f` commits is visible to every reader at
    /// once and survives a kill of the process (it is in the WAL, in the page cache); it reaches
    /// the disk with the next commit that syncs (every later commit of this catalogue fsyncs
    /// the whole WAL, which holds it), the checkpoint when the catalogue closes, or the next
    /// flush of its filesystem. For rows a power cut may lose at the cost of work only, followed
    /// by a commit of the same run that syncs (a sync's snapshot, its run's record).
    pub(crate) fn unsynced<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.sql(|c| c.execute_batch("PRAGMA synchronous = NORMAL"))?;
        let r = f(self);
        let back = self.sql(|c| c.execute_batch("PRAGMA synchronous = FULL"));
        r.and_then(|v| back.map(|()| v))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// WAL with full sync and foreign keys. A closing connection checkpoints and removes the WAL
    /// (SQLite's default, kept on purpose): skipping that saved ~6–9 ms of a sync's tail, but a
    /// read-only root reads the catalogue as immutable, which ignores a WAL, and would then miss
    /// the last runs.
    fn configure(&self) -> Result<()> {
        self.sql(|c| {
            c.busy_timeout(Duration::from_secs(60))?;
            c.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
        })
    }

    fn user_version(&self) -> Result<i64> {
        self.sql(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
    }

    fn apply_migrations(&mut self) -> Result<()> {
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

    fn migrate(&mut self) -> Result<()> {
        let fk_off = MIGRATIONS
            .iter()
            .skip(usize::try_from(self.user_version()?).unwrap_or(0))
            .any(|sql| sql.lines().any(|l| l.trim() == FOREIGN_KEYS_OFF));
        if !fk_off {
            return self.apply_migrations();
        }
        let was: i64 = self.sql(|c| c.query_row("PRAGMA foreign_keys", [], |r| r.get(0)))?;
        self.sql(|c| c.execute_batch("PRAGMA foreign_keys = OFF"))?;
        let res = self.apply_migrations();
        self.sql(|c| c.execute_batch(&format!("PRAGMA foreign_keys = {}", was != 0)))?;
        res
    }
}

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

#[cfg(test)]
mod tests;

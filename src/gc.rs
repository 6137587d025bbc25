//! `gc`: retention of snapshots and trees, then removal of what nothing refers to any more:
//! catalogue rows, tree directories, blob files, and what killed runs left behind (blob files
//! without a row, tree directories without a row, `tmp/` entries, old `partial/` files).
//!
//! Protects invariant 4 (nothing is deleted while anything still refers to it), in restic's
//! removal order:
//! 1. [`gc_plan`] takes the store lock exclusively. Syncs and publishes hold it shared for their
//!    whole run, so while gc decides and deletes no writer sits between writing a blob and
//!    referencing it; a sync that starts meanwhile fails at once naming the lock (or waits, with
//!    `--wait`).
//! 2. Under that same lock the plan decides what stays (reachability is never computed before
//!    the lock is held: OSTree #2337).
//! 3. [`gc`] deletes the rows in one committed transaction: publications of dropped trees, the
//!    trees, the snapshots (their items and documents cascade), then the blob rows no kept
//!    snapshot names. Foreign keys refuse the transaction should a dropped blob still be named.
//! 4. Only then files: tree directories, then blob files, then orphans.
//!
//! A kill at any point leaves files without rows (which the next gc sweeps), never a row without
//! its file (invariant 1). Grace links inside kept trees are the one kind of file no sweep finds:
//! the transaction that deletes their `tree_grace` rows also writes them to `gc_pending_unlink`,
//! which is cleared after the unlinks; the next gc unlinks what a killed one left there first
//! (unless a tree lists the path again), and `verify` does not count those files as strays.
//!
//! It runs as `gc` and by itself after every successful `sync` and `mirror` run
//! ([`auto_collect`]: the same plan and removal, the store's settings — `keep-last`, `grace`,
//! `STREAMVAULT_GRACE`, `auto-gc` — and the store lock taken without waiting: when it is held the
//! collection is skipped and says why, and the run still succeeds).
//!
//! What stays (the roots):
//! - the last `keep_last` snapshots ([`DEFAULT_KEEP_LAST`]) of each configured source; snapshots
//!   of a removed source have no such protection; the implicit source of a `mirror` OUTPUT_DIR
//!   keeps only what the trees below keep (what OUTPUT_DIR serves, what it served less than
//!   `grace` ago) and its snapshots younger than `grace`;
//! - every tree live on a dest: its publication is not retired, or the dest's symlink actually
//!   points at it (read from the filesystem: after a kill mid-publish the link, not the row, is
//!   the truth);
//! - trees retired less than `grace` ago ([`DEFAULT_GRACE`]: a client that read the old metadata
//!   just before a flip can still fetch what it lists), and trees created less than `grace` ago
//!   that were never published;
//! - the snapshot of every kept tree and publication, every blob a kept snapshot names, blobs
//!   created less than `grace` ago (a failed sync's finished downloads, which its next run
//!   reuses) and `partial/` files younger than `grace` (resumable downloads).
//!
//! Memory stays flat as the store grows: the plan lives in SQLite temporary tables (on disk,
//! `temp_store = FILE`) and every list is streamed from a query; only the dropped and kept
//! snapshots' and trees' names are collected, for the report.
//!
//! Freed bytes count only inodes whose last link gc removes: a blob still hardlinked from a kept
//! tree, or from anywhere else, frees nothing. The plan computes the figure from link counts
//! before anything is deleted, so a dry run reports the numbers the real run then measures.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::catalog::{self, Catalog};
use crate::error::{Error, IoResultExt, Result};
use crate::lock::LockGuard;
use crate::settings::StoreSettings;
use crate::store::Layout;
use crate::vault::Vault;

/// Snapshots kept per source when not told otherwise: the newest (the base of the next sync)
/// plus two to roll back to.
pub const DEFAULT_KEEP_LAST: u32 = 3;

/// How long a retired tree, an unpublished new tree, an unreferenced new blob and a partial
/// download are kept when not told otherwise (Pulp's orphan protection time).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What `gc` keeps and how it takes the lock.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Snapshots kept per configured source, newest first (at least 1; 0 is taken as 1).
    pub keep_last: u32,
    /// See [`DEFAULT_GRACE`].
    pub grace: Duration,
    /// Wait for running syncs and publishes instead of failing with [`Error::Locked`].
    pub wait: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            keep_last: DEFAULT_KEEP_LAST,
            grace: DEFAULT_GRACE,
            wait: false,
        }
    }
}

impl GcOptions {
    /// The store's settings (`keep-last`, `grace`, `STREAMVAULT_GRACE`), without waiting.
    pub fn from_settings(s: &StoreSettings) -> GcOptions {
        GcOptions {
            keep_last: s.keep_last,
            grace: s.grace,
            wait: false,
        }
    }
}

/// What the automatic collection after a `sync` or `mirror` run did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AutoGc {
    /// The store setting `auto-gc` is off.
    Disabled,
    /// It ran.
    Collected(GcReport),
    /// It could not run (a `gc` or another writer holds the store lock, or an error): one line.
    Skipped { reason: String },
}

/// Retention that runs by itself: the same plan and removal as `gc` with the store's
/// settings, taking the store lock without waiting. Never fails: when the lock is held (a `gc`,
/// a sync or a publish is running) or anything goes wrong it says so in
/// [`AutoGc::Skipped`], and the run that called it still succeeds.
pub fn auto_collect(vault: &mut Vault, settings: &StoreSettings) -> AutoGc {
    if !settings.auto_gc {
        return AutoGc::Disabled;
    }
    let opts = GcOptions::from_settings(settings);
    let res = gc_plan(vault, &opts).and_then(gc);
    match res {
        Ok(r) => AutoGc::Collected(r),
        Err(Error::Locked { holder, .. }) => AutoGc::Skipped {
            reason: format!("the store is locked by {holder}"),
        },
        Err(e) => AutoGc::Skipped {
            reason: crate::sync::error_line(&e),
        },
    }
}

/// What gc did (or, from [`GcPlan::report`], would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub keep_last: u32,
    pub grace_secs: u64,
    pub snapshots_kept: u64,
    pub snapshots_dropped: Vec<DroppedSnapshot>,
    pub trees_kept: Vec<KeptTree>,
    pub trees_dropped: Vec<String>,
    pub publications_dropped: u64,
    /// Grace items removed from kept trees: links to items of a snapshot that no kept tree
    /// serves any more, so no reader can still be working from its metadata.
    pub grace_files_dropped: u64,
    pub blobs_kept: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_within_grace: u64,
    pub blobs_dropped: u64,
    /// Sum of the recorded sizes of the dropped blob rows.
    pub blob_bytes_dropped: u64,
    /// Files in `blobs/` without a row.
    pub orphan_blobs: u64,
    /// Directories in `trees/` without a row (and not published).
    pub orphan_trees: Vec<String>,
    pub tmp_entries: u64,
    pub partial_files: u64,
    pub files_unlinked: u64,
    /// Apparent size of the files whose last link was removed.
    pub freed_bytes: u64,
    /// Disk blocks of those files (bytes).
    pub freed_disk_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DroppedSnapshot {
    pub id: i64,
    pub source: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeptTree {
    pub name: String,
    /// `None` for a directory that a dest links to but that has no row.
    pub snapshot: Option<i64>,
    pub reason: KeepReason,
    /// The dest it is (or was) published on.
    pub dest: Option<String>,
    /// When it was published, retired or created (unix seconds), as the reason says.
    pub at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// A publication row that is not retired.
    Published,
    /// The dest's symlink points at it (whatever the rows say).
    Linked,
    RetiredWithinGrace,
    NewWithinGrace,
}

impl KeepReason {
    /// The reason a stored string names; `None` for anything else (never a default).
    pub fn parse(s: &str) -> Option<KeepReason> {
        match s {
            "published" => Some(KeepReason::Published),
            "linked" => Some(KeepReason::Linked),
            "retired_within_grace" => Some(KeepReason::RetiredWithinGrace),
            "new_within_grace" => Some(KeepReason::NewWithinGrace),
            _ => None,
        }
    }
}

impl rusqlite::types::FromSql for KeepReason {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        KeepReason::parse(s).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown keep reason `{s}`").into())
        })
    }
}

/// A decided collection: the store lock is held until it is executed with [`gc`] or dropped.
/// The lists live in temporary tables of `vault`'s catalogue connection.
pub struct GcPlan<'a> {
    vault: &'a mut Vault,
    lock: LockGuard,
    report: GcReport,
}

impl GcPlan<'_> {
    /// What [`gc`] would do, with `dry_run` set.
    pub fn report(&self) -> &GcReport {
        &self.report
    }
}

/// The temporary tables of a plan (one connection's `temp` schema; dropped after [`gc`]).
const SCRATCH: &str = "
    PRAGMA temp_store = FILE;
    DROP TABLE IF EXISTS temp.gc_live;
    DROP TABLE IF EXISTS temp.gc_keep_trees;
    DROP TABLE IF EXISTS temp.gc_drop_trees;
    DROP TABLE IF EXISTS temp.gc_keep_snapshots;
    DROP TABLE IF EXISTS temp.gc_drop_snapshots;
    DROP TABLE IF EXISTS temp.gc_drop_blobs;
    DROP TABLE IF EXISTS temp.gc_unlink;
    DROP TABLE IF EXISTS temp.gc_dirs;
    DROP TABLE IF EXISTS temp.gc_drop_grace;
    DROP TABLE IF EXISTS temp.gc_grace_dirs;
    DROP TABLE IF EXISTS temp.gc_grace_files;
    -- grace links to unlink (tree name, path): journalled in gc_pending_unlink with the rows
    CREATE TEMP TABLE gc_grace_files (tree TEXT NOT NULL, path TEXT NOT NULL,
                                      PRIMARY KEY (tree, path));
    -- directories of removed grace links, removed once empty (up to, not including, the tree)
    CREATE TEMP TABLE gc_grace_dirs (path BLOB PRIMARY KEY, tree BLOB NOT NULL);
    CREATE TEMP TABLE gc_drop_grace (tree_id INTEGER NOT NULL, snapshot_id INTEGER NOT NULL,
                                     PRIMARY KEY (tree_id, snapshot_id));
    CREATE TEMP TABLE gc_live (name TEXT PRIMARY KEY, dest TEXT NOT NULL);
    CREATE TEMP TABLE gc_keep_trees (id INTEGER PRIMARY KEY, reason TEXT NOT NULL, dest TEXT,
                                     at INTEGER);
    CREATE TEMP TABLE gc_drop_trees (id INTEGER PRIMARY KEY);
    CREATE TEMP TABLE gc_keep_snapshots (id INTEGER PRIMARY KEY);
    CREATE TEMP TABLE gc_drop_snapshots (id INTEGER PRIMARY KEY);
    CREATE TEMP TABLE gc_drop_blobs (blake3 TEXT PRIMARY KEY);
    -- every file to unlink, in phase order, with what its inode looked like when planned
    CREATE TEMP TABLE gc_unlink (path BLOB PRIMARY KEY, phase INTEGER NOT NULL,
                                 dev INTEGER NOT NULL, ino INTEGER NOT NULL,
                                 nlink INTEGER NOT NULL, size INTEGER NOT NULL,
                                 disk INTEGER NOT NULL);
    -- directories removed after their files
    CREATE TEMP TABLE gc_dirs (path BLOB PRIMARY KEY);
";

const DROP_SCRATCH: &str = "
    DROP TABLE IF EXISTS temp.gc_live;
    DROP TABLE IF EXISTS temp.gc_keep_trees;
    DROP TABLE IF EXISTS temp.gc_drop_trees;
    DROP TABLE IF EXISTS temp.gc_keep_snapshots;
    DROP TABLE IF EXISTS temp.gc_drop_snapshots;
    DROP TABLE IF EXISTS temp.gc_drop_blobs;
    DROP TABLE IF EXISTS temp.gc_unlink;
    DROP TABLE IF EXISTS temp.gc_dirs;
    DROP TABLE IF EXISTS temp.gc_drop_grace;
    DROP TABLE IF EXISTS temp.gc_grace_dirs;
    DROP TABLE IF EXISTS temp.gc_grace_files;
";

/// Unlink phases, in execution order.
const PHASE_TREE: i64 = 1;
const PHASE_BLOB: i64 = 2;
const PHASE_ORPHAN_BLOB: i64 = 3;
const PHASE_TMP: i64 = 4;
const PHASE_PARTIAL: i64 = 5;

/// Take the store lock exclusively and decide what to delete. Nothing is deleted; the returned
/// plan holds the lock until [`gc`] runs it or it is dropped (a dry run).
pub fn gc_plan<'a>(vault: &'a mut Vault, opts: &GcOptions) -> Result<GcPlan<'a>> {
    let lock = vault.lock_store_exclusive(opts.wait, "gc")?;
    let keep_last = opts.keep_last.max(1);
    let grace = i64::try_from(opts.grace.as_secs()).unwrap_or(i64::MAX);
    let cutoff = catalog::now().saturating_sub(grace);
    let mut report = GcReport {
        dry_run: true,
        keep_last,
        grace_secs: opts.grace.as_secs(),
        ..GcReport::default()
    };
    let cat = &vault.catalog;
    let e = |err| cat.err(err);
    cat.conn().execute_batch(SCRATCH).map_err(e)?;
    // One read transaction for the whole plan: one consistent view, and no lock taken and
    // released around each of the many small statements.
    cat.conn().execute_batch("BEGIN").map_err(e)?;
    match plan_into(&vault.layout, cat, cutoff, keep_last, &mut report) {
        Ok(()) => cat.conn().execute_batch("COMMIT").map_err(e)?,
        Err(err) => {
            let _ = cat.conn().execute_batch("ROLLBACK");
            return Err(err);
        }
    }
    Ok(GcPlan {
        vault,
        lock,
        report,
    })
}

/// Fill the plan's temporary tables and the report.
fn plan_into(
    layout: &Layout,
    cat: &Catalog,
    cutoff: i64,
    keep_last: u32,
    report: &mut GcReport,
) -> Result<()> {
    let conn = cat.conn();
    let e = |err| cat.err(err);

    // Roots from the filesystem: the trees the dests' symlinks point at.
    {
        let mut ins = conn
            .prepare("INSERT OR IGNORE INTO gc_live (name, dest) VALUES (?1, ?2)")
            .map_err(e)?;
        for (name, dest) in live_links(layout, cat)? {
            ins.execute(params![name, dest]).map_err(e)?;
        }
    }

    // Trees, then snapshots, then blobs.
    for sql in [
        "INSERT OR IGNORE INTO gc_keep_trees (id, reason, dest, at)
         SELECT p.tree_id, 'published', p.dest, p.published_at FROM publications p
         WHERE p.retired_at IS NULL",
        "INSERT OR IGNORE INTO gc_keep_trees (id, reason, dest, at)
         SELECT t.id, 'linked', l.dest, NULL FROM trees t JOIN gc_live l ON l.name = t.name",
        "INSERT OR IGNORE INTO gc_keep_trees (id, reason, dest, at)
         SELECT p.tree_id, 'retired_within_grace', p.dest, max(p.retired_at) FROM publications p
         WHERE p.retired_at > ?1 GROUP BY p.tree_id",
        "INSERT OR IGNORE INTO gc_keep_trees (id, reason, dest, at)
         SELECT t.id, 'new_within_grace', NULL, t.created_at FROM trees t
         WHERE t.created_at > ?1 AND NOT EXISTS (SELECT 1 FROM publications p WHERE p.tree_id = t.id)",
        "INSERT INTO gc_drop_trees (id)
         SELECT id FROM trees WHERE id NOT IN (SELECT id FROM gc_keep_trees)",
    ] {
        exec(conn, sql, cutoff).map_err(e)?;
    }
    // An implicit `mirror` source keeps only what its OUTPUT_DIR serves (the trees kept above)
    // and its snapshots younger than the grace period; `keep_last` is for configured sources.
    exec(
        conn,
        "INSERT OR IGNORE INTO gc_keep_snapshots (id)
         SELECT s.id FROM snapshots s WHERE s.created_at > ?1
           AND s.source_name IN (SELECT name FROM sources WHERE implicit = 1)",
        cutoff,
    )
    .map_err(e)?;
    for sql in [
        "INSERT OR IGNORE INTO gc_keep_snapshots (id)
         SELECT id FROM (
             SELECT s.id, row_number() OVER (PARTITION BY s.source_name ORDER BY s.id DESC) AS n
             FROM snapshots s WHERE s.source_name IN (SELECT name FROM sources WHERE implicit = 0))
         WHERE n <= ?1",
        "INSERT OR IGNORE INTO gc_keep_snapshots (id)
         SELECT t.snapshot_id FROM trees t WHERE t.id IN (SELECT id FROM gc_keep_trees)",
        "INSERT OR IGNORE INTO gc_keep_snapshots (id)
         SELECT p.snapshot_id FROM publications p WHERE p.tree_id IN (SELECT id FROM gc_keep_trees)",
        "INSERT INTO gc_drop_snapshots (id)
         SELECT id FROM snapshots WHERE id NOT IN (SELECT id FROM gc_keep_snapshots)",
    ] {
        exec(conn, sql, i64::from(keep_last)).map_err(e)?;
    }
    // Grace items (publish::grace) of kept trees whose snapshot no kept tree serves any more:
    // the readers they were for are gone (that tree was retired longer than the grace ago).
    conn.execute(
        "INSERT INTO gc_drop_grace (tree_id, snapshot_id)
         SELECT g.tree_id, g.snapshot_id FROM tree_grace g
         WHERE g.tree_id IN (SELECT id FROM gc_keep_trees)
           AND NOT EXISTS (SELECT 1 FROM trees t JOIN gc_keep_trees k ON k.id = t.id
                           WHERE t.snapshot_id = g.snapshot_id AND t.id != g.tree_id)",
        [],
    )
    .map_err(e)?;
    const UNREFERENCED: &str = "
        NOT EXISTS (SELECT 1 FROM snapshot_items i JOIN gc_keep_snapshots k ON k.id = i.snapshot_id
                    WHERE i.blob = b.blake3)
        AND NOT EXISTS (SELECT 1 FROM snapshot_documents d
                        JOIN gc_keep_snapshots k ON k.id = d.snapshot_id WHERE d.blob = b.blake3)";
    exec(
        conn,
        &format!(
            "INSERT INTO gc_drop_blobs (blake3)
             SELECT b.blake3 FROM blobs b WHERE b.created_at <= ?1 AND {UNREFERENCED}"
        ),
        cutoff,
    )
    .map_err(e)?;
    report.blobs_within_grace = count(
        conn,
        &format!("SELECT count(*) FROM blobs b WHERE b.created_at > ?1 AND {UNREFERENCED}"),
        cutoff,
    )
    .map_err(e)?;

    fill_report_rows(conn, report).map_err(e)?;

    // Files: dropped trees, dropped blobs, then the orphans.
    let mut files = Files::new(conn, cat);
    {
        let mut st = conn
            .prepare("SELECT t.name FROM trees t JOIN gc_drop_trees d ON d.id = t.id")
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let name: String = r.get(0).map_err(e)?;
            if let Some(dir) = tree_dir(layout, &name) {
                files.add_tree(&dir, PHASE_TREE)?;
            }
        }
    }
    {
        let mut st = conn
            .prepare("SELECT blake3 FROM gc_drop_blobs")
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let hex: String = r.get(0).map_err(e)?;
            if let Some(p) = layout.blob(&hex) {
                files.add_file(&p, PHASE_BLOB)?;
            }
        }
    }
    // The grace links to remove: paths of the dropped grace snapshot that the tree's own
    // snapshot and its remaining grace snapshots do not list.
    {
        let mut st = conn
            .prepare(
                "SELECT DISTINCT t.name, i.path FROM gc_drop_grace g
                 JOIN trees t ON t.id = g.tree_id
                 JOIN snapshot_items i ON i.snapshot_id = g.snapshot_id AND i.path IS NOT NULL
                 WHERE i.path NOT IN (SELECT o.path FROM snapshot_items o
                                      WHERE o.snapshot_id = t.snapshot_id AND o.path IS NOT NULL)
                   AND NOT EXISTS (
                     SELECT 1 FROM tree_grace r JOIN snapshot_items o ON o.snapshot_id = r.snapshot_id
                     WHERE r.tree_id = g.tree_id AND o.path = i.path
                       AND NOT EXISTS (SELECT 1 FROM gc_drop_grace x
                                       WHERE x.tree_id = r.tree_id AND x.snapshot_id = r.snapshot_id))",
            )
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            add_grace_file(
                layout,
                conn,
                &mut files,
                report,
                r.get(0).map_err(e)?,
                r.get(1).map_err(e)?,
            )?;
        }
    }
    // Grace links an earlier, killed gc deleted the rows of but may not have unlinked (its
    // journal), unless the tree's own snapshot or a grace snapshot it keeps lists the path again.
    {
        let mut st = conn
            .prepare(
                "SELECT p.tree, p.path FROM gc_pending_unlink p JOIN trees t ON t.name = p.tree
                 WHERE NOT EXISTS (SELECT 1 FROM snapshot_items o
                                   WHERE o.snapshot_id = t.snapshot_id AND o.path = p.path)
                   AND NOT EXISTS (
                     SELECT 1 FROM tree_grace r JOIN snapshot_items o ON o.snapshot_id = r.snapshot_id
                     WHERE r.tree_id = t.id AND o.path = p.path
                       AND NOT EXISTS (SELECT 1 FROM gc_drop_grace x
                                       WHERE x.tree_id = r.tree_id AND x.snapshot_id = r.snapshot_id))",
            )
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            add_grace_file(
                layout,
                conn,
                &mut files,
                report,
                r.get(0).map_err(e)?,
                r.get(1).map_err(e)?,
            )?;
        }
    }
    sweep_trees(layout, &mut files, report)?;
    report.orphan_blobs = sweep_blobs(layout, &mut files)?;
    report.tmp_entries = sweep_tmp(layout, &mut files)?;
    report.partial_files = sweep_partial(layout, &mut files, cutoff)?;

    let (unlinked, bytes, disk) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM gc_unlink), coalesce(sum(size), 0), coalesce(sum(disk), 0)
             FROM (SELECT max(nlink) AS nlink, count(*) AS links, max(size) AS size,
                          max(disk) AS disk
                   FROM gc_unlink GROUP BY dev, ino)
             WHERE links >= nlink",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
        )
        .map_err(e)?;
    report.files_unlinked = to_u64(unlinked);
    report.freed_bytes = to_u64(bytes);
    report.freed_disk_bytes = to_u64(disk);
    Ok(())
}

/// Plan the removal of one grace link `path` of tree `name`: its file, its journal entry, and its
/// directories (pruned once empty).
fn add_grace_file(
    layout: &Layout,
    conn: &rusqlite::Connection,
    files: &mut Files<'_>,
    report: &mut GcReport,
    name: String,
    path: String,
) -> Result<()> {
    let e = |err| Error::Db {
        path: layout.catalog(),
        source: err,
    };
    if crate::streams::check_path(&path).is_err() {
        return Ok(());
    }
    let Some(dir) = tree_dir(layout, &name) else {
        return Ok(());
    };
    let inserted = conn
        .execute(
            "INSERT OR IGNORE INTO gc_grace_files (tree, path) VALUES (?1, ?2)",
            params![name, path],
        )
        .map_err(e)?;
    if inserted == 0 {
        return Ok(());
    }
    let file = dir.join(&path);
    files.add_file(&file, PHASE_TREE)?;
    report.grace_files_dropped += 1;
    if let Some(parent) = file.parent().filter(|p| *p != dir) {
        conn.execute(
            "INSERT OR IGNORE INTO gc_grace_dirs (path, tree) VALUES (?1, ?2)",
            params![parent.as_os_str().as_bytes(), dir.as_os_str().as_bytes()],
        )
        .map_err(e)?;
    }
    Ok(())
}

/// Carry out a plan: rows in one committed transaction, then tree directories, blob files and
/// orphans. Returns what was actually freed (measured from link counts at unlink time).
pub fn gc(plan: GcPlan<'_>) -> Result<GcReport> {
    let GcPlan {
        vault,
        lock,
        mut report,
    } = plan;
    report.dry_run = false;
    let path = vault.catalog.path().to_path_buf();
    let e = |err| Error::Db {
        path: path.clone(),
        source: err,
    };

    // 1. Rows, in one transaction (restic: the index entry goes before the pack).
    {
        let tx = vault
            .catalog
            .conn_mut()
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        tx.execute_batch(
            "DELETE FROM tree_grace WHERE EXISTS (SELECT 1 FROM gc_drop_grace x
                WHERE x.tree_id = tree_grace.tree_id AND x.snapshot_id = tree_grace.snapshot_id);
             DELETE FROM publications WHERE tree_id IN (SELECT id FROM gc_drop_trees);
             DELETE FROM trees WHERE id IN (SELECT id FROM gc_drop_trees);
             DELETE FROM snapshots WHERE id IN (SELECT id FROM gc_drop_snapshots);
             DELETE FROM blobs WHERE blake3 IN (SELECT blake3 FROM gc_drop_blobs);
             INSERT OR IGNORE INTO gc_pending_unlink (tree, path)
                 SELECT tree, path FROM temp.gc_grace_files;",
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
    }

    // 2. Files. Directories of dropped trees may be read-only (immutable trees): open them up.
    let cat = &vault.catalog;
    let conn = cat.conn();
    {
        let mut st = conn.prepare("SELECT path FROM gc_dirs").map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            make_dirs_writable(&blob_path(r.get(0).map_err(e)?));
        }
    }
    let (mut unlinked, mut freed, mut disk) = (0u64, 0u64, 0u64);
    let slow = slow_unlink();
    {
        let mut st = conn
            .prepare("SELECT path, phase FROM gc_unlink ORDER BY phase, path")
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let p = blob_path(r.get(0).map_err(e)?);
            let phase: i64 = r.get(1).map_err(e)?;
            if phase == PHASE_ORPHAN_BLOB && has_row(cat, &p)? {
                continue; // never a row without its file
            }
            let meta = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(io_err("stat", &p, err)),
            };
            if let Some(d) = slow {
                std::thread::sleep(d);
            }
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(io_err("remove", &p, err)),
            }
            unlinked += 1;
            if meta.nlink() <= 1 {
                freed += meta.len();
                disk += meta.blocks() * 512;
            }
        }
    }
    {
        let mut st = conn.prepare("SELECT path FROM gc_dirs").map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let p = blob_path(r.get(0).map_err(e)?);
            match fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_err("remove directory", &p, err)),
            }
        }
    }
    // Directories the removed grace links leave empty (a version directory of a snapshot no
    // kept tree serves any more), deepest first; a directory still holding anything stays.
    {
        let mut st = conn
            .prepare("SELECT path, tree FROM gc_grace_dirs ORDER BY length(path) DESC")
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let tree = blob_path(r.get(1).map_err(e)?);
            let mut dir = blob_path(r.get(0).map_err(e)?);
            while dir.starts_with(&tree) && dir != tree && fs::remove_dir(&dir).is_ok() {
                match dir.parent() {
                    Some(p) => dir = p.to_path_buf(),
                    None => break,
                }
            }
        }
    }
    // Every journalled grace link was unlinked above, or is expected again, or its tree is gone.
    conn.execute_batch("DELETE FROM gc_pending_unlink")
        .map_err(e)?;
    conn.execute_batch(DROP_SCRATCH).map_err(e)?;
    drop(lock);
    // For the metrics file; a failure here changes nothing that was collected.
    let _ = crate::metrics::record_gc(&vault.catalog, freed);
    report.files_unlinked = unlinked;
    report.freed_bytes = freed;
    report.freed_disk_bytes = disk;
    Ok(report)
}

/// Test-only (debug builds): `STREAMVAULT_FAILPOINT=gc-slow-unlink=MS` sleeps before each
/// unlink, so that kill tests land inside the removal phase.
fn slow_unlink() -> Option<Duration> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let v = std::env::var("STREAMVAULT_FAILPOINT").ok()?;
    v.split(',').find_map(|e| {
        e.trim()
            .strip_prefix("gc-slow-unlink=")
            .and_then(|n| n.parse().ok())
            .map(Duration::from_millis)
    })
}

/// `trees/<name>` when `name` is one plain path component (invariant 5: a name from the
/// catalogue never leads outside `trees/`).
pub fn tree_dir(layout: &Layout, name: &str) -> Option<PathBuf> {
    let mut comps = Path::new(name).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(c)), None) if c == name => Some(layout.trees().join(c)),
        _ => None,
    }
}

/// `(tree name, dest)` for every recorded dest whose symlink resolves into `trees/`, whatever
/// the publication rows say.
pub fn live_links(layout: &Layout, cat: &Catalog) -> Result<Vec<(String, String)>> {
    let Ok(trees) = fs::canonicalize(layout.trees()) else {
        return Ok(Vec::new());
    };
    let dests: Vec<String> = {
        let mut st = cat
            .conn()
            .prepare("SELECT DISTINCT dest FROM publications ORDER BY dest")
            .map_err(|e| cat.err(e))?;
        st.query_map([], |r| r.get(0))
            .map_err(|e| cat.err(e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| cat.err(e))?
    };
    let mut out = Vec::new();
    for dest in dests {
        let Ok(target) = fs::canonicalize(&dest) else {
            continue;
        };
        let Ok(rest) = target.strip_prefix(&trees) else {
            continue;
        };
        if let Some(Component::Normal(first)) = rest.components().next()
            && let Some(name) = first.to_str()
        {
            out.push((name.to_string(), dest));
        }
    }
    Ok(out)
}

/// Parse `24h`, `30m`, `7d`, `1w`, `90s`, `1h30m` or `0`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::BadDuration(s.to_string());
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut secs: u64 = 0;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (num, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(|b| !b.is_ascii_digit()).count();
        let (unit, tail) = tail.split_at(unit_len);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        secs = n
            .checked_mul(mult)
            .and_then(|v| secs.checked_add(v))
            .ok_or_else(bad)?;
        rest = tail;
    }
    Ok(Duration::from_secs(secs))
}

// ------------------------------------------------------------------------------------ plan

fn exec(conn: &Connection, sql: &str, param: i64) -> rusqlite::Result<usize> {
    // Statements without the parameter get none (rusqlite checks the count).
    if sql.contains("?1") {
        conn.execute(sql, [param])
    } else {
        conn.execute(sql, [])
    }
}

fn count(conn: &Connection, sql: &str, param: i64) -> rusqlite::Result<u64> {
    conn.query_row(sql, [param], |r| r.get::<_, i64>(0))
        .map(to_u64)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The report's rows: dropped snapshots and trees, kept trees, counts.
fn fill_report_rows(conn: &Connection, report: &mut GcReport) -> rusqlite::Result<()> {
    let mut st = conn.prepare(
        "SELECT s.id, s.source_name, s.created_at FROM snapshots s
         JOIN gc_drop_snapshots d ON d.id = s.id ORDER BY s.id",
    )?;
    report.snapshots_dropped = st
        .query_map([], |r| {
            Ok(DroppedSnapshot {
                id: r.get(0)?,
                source: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare(
        "SELECT t.name FROM trees t JOIN gc_drop_trees d ON d.id = t.id ORDER BY t.name",
    )?;
    report.trees_dropped = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = conn.prepare(
        "SELECT t.name, t.snapshot_id, k.reason, k.dest, k.at FROM gc_keep_trees k
         JOIN trees t ON t.id = k.id ORDER BY t.name",
    )?;
    report.trees_kept = st
        .query_map([], |r| {
            Ok(KeptTree {
                name: r.get(0)?,
                snapshot: r.get(1)?,
                reason: r.get(2)?,
                dest: r.get(3)?,
                at: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    // Linked directories without a row.
    let mut st = conn.prepare(
        "SELECT l.name, l.dest FROM gc_live l
         WHERE NOT EXISTS (SELECT 1 FROM trees t WHERE t.name = l.name) ORDER BY l.name",
    )?;
    let linked: Vec<KeptTree> = st
        .query_map([], |r| {
            Ok(KeptTree {
                name: r.get(0)?,
                snapshot: None,
                reason: KeepReason::Linked,
                dest: r.get(1)?,
                at: None,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    report.trees_kept.extend(linked);
    let one = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map(to_u64);
    report.snapshots_kept = one("SELECT count(*) FROM gc_keep_snapshots")?;
    report.publications_dropped =
        one("SELECT count(*) FROM publications WHERE tree_id IN (SELECT id FROM gc_drop_trees)")?;
    report.blobs_dropped = one("SELECT count(*) FROM gc_drop_blobs")?;
    report.blob_bytes_dropped = one(
        "SELECT coalesce(sum(b.size), 0) FROM blobs b JOIN gc_drop_blobs d ON d.blake3 = b.blake3",
    )?;
    report.blobs_kept = one("SELECT count(*) FROM blobs")?.saturating_sub(report.blobs_dropped);
    Ok(())
}

/// Records files to unlink into `gc_unlink` (with their inode's state) and directories into
/// `gc_dirs`.
struct Files<'c> {
    conn: &'c Connection,
    cat: &'c Catalog,
}

impl<'c> Files<'c> {
    fn new(conn: &'c Connection, cat: &'c Catalog) -> Self {
        Files { conn, cat }
    }

    fn add_file(&mut self, p: &Path, phase: i64) -> Result<()> {
        let meta = match fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_err("stat", p, err)),
        };
        self.insert(p, phase, &meta)
    }

    fn insert(&mut self, p: &Path, phase: i64, meta: &fs::Metadata) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO gc_unlink (path, phase, dev, ino, nlink, size, disk)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    p.as_os_str().as_bytes(),
                    phase,
                    meta.dev() as i64,
                    meta.ino() as i64,
                    meta.nlink() as i64,
                    meta.len() as i64,
                    (meta.blocks() * 512) as i64,
                ])
            })
            .map_err(|e| self.cat.err(e))?;
        Ok(())
    }

    /// A directory and everything under it (symlinks are removed, never followed); a
    /// non-directory is one file.
    fn add_tree(&mut self, dir: &Path, phase: i64) -> Result<()> {
        let meta = match fs::symlink_metadata(dir) {
            Ok(m) => m,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_err("stat", dir, err)),
        };
        if !meta.is_dir() {
            return self.insert(dir, phase, &meta);
        }
        for entry in walkdir::WalkDir::new(dir).follow_links(false) {
            let entry = entry.map_err(|err| walk_err(dir, err))?;
            if entry.file_type().is_dir() {
                continue;
            }
            let meta = entry.metadata().map_err(|err| walk_err(dir, err))?;
            self.insert(entry.path(), phase, &meta)?;
        }
        self.conn
            .execute(
                "INSERT OR IGNORE INTO gc_dirs (path) VALUES (?1)",
                [dir.as_os_str().as_bytes()],
            )
            .map_err(|e| self.cat.err(e))?;
        Ok(())
    }
}

/// Directories in `trees/` without a row that no dest links to.
fn sweep_trees(layout: &Layout, files: &mut Files<'_>, report: &mut GcReport) -> Result<()> {
    let trees = layout.trees();
    let Some(entries) = read_dir(&trees)? else {
        return Ok(());
    };
    let mut orphans = Vec::new();
    for entry in entries {
        let entry = entry.with_path("read directory", &trees)?;
        let name = entry.file_name();
        let known = match name.to_str() {
            Some(n) => files
                .conn
                .query_row(
                    "SELECT 1 FROM trees WHERE name = ?1 UNION ALL SELECT 1 FROM gc_live WHERE name = ?1",
                    [n],
                    |_| Ok(()),
                )
                .optional()
                .map_err(|e| files.cat.err(e))?
                .is_some(),
            None => false,
        };
        if !known {
            files.add_tree(&entry.path(), PHASE_TREE)?;
            orphans.push(name.to_string_lossy().into_owned());
        }
    }
    orphans.sort();
    report.orphan_trees = orphans;
    Ok(())
}

/// Files in `blobs/` that have no row (killed syncs) or are not blobs at all.
fn sweep_blobs(layout: &Layout, files: &mut Files<'_>) -> Result<u64> {
    let blobs = layout.blobs();
    let Some(prefixes) = read_dir(&blobs)? else {
        return Ok(0);
    };
    let mut n = 0;
    for prefix in prefixes {
        let prefix = prefix.with_path("read directory", &blobs)?;
        let dir = prefix.path();
        let ft = prefix.file_type().with_path("stat", &dir)?;
        if !ft.is_dir() {
            files.add_file(&dir, PHASE_ORPHAN_BLOB)?;
            n += 1;
            continue;
        }
        let Some(entries) = read_dir(&dir)? else {
            continue;
        };
        // Sorted, so that the row lookups walk the blob index in order (one prefix directory
        // holds 1/256 of the store: bounded memory).
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_path("read directory", &dir)?;
            let p = entry.path();
            if entry.file_type().with_path("stat", &p)?.is_dir() {
                continue;
            }
            names.push(p);
        }
        names.sort_unstable();
        for p in names {
            if !has_row(files.cat, &p)? {
                files.add_file(&p, PHASE_ORPHAN_BLOB)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Everything in `tmp/`: nobody stages anything while gc holds the store lock.
fn sweep_tmp(layout: &Layout, files: &mut Files<'_>) -> Result<u64> {
    let tmp = layout.tmp();
    let Some(entries) = read_dir(&tmp)? else {
        return Ok(0);
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.with_path("read directory", &tmp)?;
        files.add_tree(&entry.path(), PHASE_TMP)?;
        n += 1;
    }
    Ok(n)
}

/// `partial/` files not touched since the cutoff (younger ones may still be resumed).
fn sweep_partial(layout: &Layout, files: &mut Files<'_>, cutoff: i64) -> Result<u64> {
    let partial = layout.partial();
    let Some(entries) = read_dir(&partial)? else {
        return Ok(0);
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.with_path("read directory", &partial)?;
        let p = entry.path();
        let meta = entry.metadata().with_path("stat", &p)?;
        if meta.mtime() <= cutoff {
            files.add_tree(&p, PHASE_PARTIAL)?;
            n += 1;
        }
    }
    Ok(n)
}

// ----------------------------------------------------------------------------------- files

/// Is `p` (a file in `blobs/ab/`) a blob with a catalogue row? A name that is not a canonical
/// blob address is never one.
fn has_row(cat: &Catalog, p: &Path) -> Result<bool> {
    match Layout::blob_name(p) {
        Some(name) => cat.has_blob(name),
        None => Ok(false),
    }
}

fn read_dir(dir: &Path) -> Result<Option<fs::ReadDir>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(Some(rd)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_err("read directory", dir, err)),
    }
}

/// Give the owner write permission on every directory under `dir` so its entries can be
/// unlinked (symlinks are not followed).
fn make_dirs_writable(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if !entry.file_type().is_dir() {
            continue;
        }
        if let Ok(meta) = entry.metadata() {
            let mut perm = meta.permissions();
            if perm.mode() & 0o700 != 0o700 {
                perm.set_mode(perm.mode() | 0o700);
                let _ = fs::set_permissions(entry.path(), perm);
            }
        }
    }
}

fn blob_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn walk_err(dir: &Path, err: walkdir::Error) -> Error {
    let path = err.path().unwrap_or(dir).to_path_buf();
    Error::Io {
        op: "walk",
        path,
        source: err
            .into_io_error()
            .unwrap_or_else(|| io::Error::other("filesystem loop")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).map(|d| d.as_secs()).ok();
        assert_eq!(d("0"), Some(0));
        assert_eq!(d("24h"), Some(86_400));
        assert_eq!(d("30m"), Some(1800));
        assert_eq!(d("7d"), Some(7 * 86_400));
        assert_eq!(d("1w"), Some(7 * 86_400));
        assert_eq!(d("90s"), Some(90));
        assert_eq!(d("1h30m"), Some(5400));
        for bad in ["", "h", "10", "5x", "-1h", "1.5h", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tree_names_stay_inside_trees() {
        let l = Layout::new("/s");
        assert_eq!(tree_dir(&l, "t-1"), Some(PathBuf::from("/s/trees/t-1")));
        for bad in ["", ".", "..", "a/b", "/etc", "a/", "./a"] {
            assert_eq!(tree_dir(&l, bad), None, "{bad}");
        }
    }
}

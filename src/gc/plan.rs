//! gc's plan: what stays and what goes, decided under the exclusive store lock into temporary
//! tables of the catalogue's connection (on disk, `temp_store = FILE`: memory stays flat as
//! the store grows). The SQL over those tables lives here, beside them, for the plan and for
//! [`super::remove`], which carries the plan out; every other statement is the catalogue's.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::sweep::{self, io_err, walk_err};
use super::{DroppedSnapshot, GcOptions, GcPlan, GcReport, KeepReason, KeptTree};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::store::{BlobHash, Layout};
use crate::vault::Vault;

/// Drops every table of [`SCRATCH`] (one list for the plan's start and its end).
macro_rules! drop_scratch_tables {
    () => {
        "
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
    "
    };
}

/// The temporary tables of a plan (one connection's `temp` schema; dropped after [`gc`](super::gc())).
const SCRATCH: &str = concat!(
    "
    PRAGMA temp_store = FILE;
    -- a page cache of bounded size for the plan and its row deletions (12 + 8 MiB)
    PRAGMA main.cache_size = -12288;
    PRAGMA temp.cache_size = -8192;
    ",
    drop_scratch_tables!(),
    "
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
    CREATE TEMP TABLE gc_drop_blobs (blake3 TEXT PRIMARY KEY, size INTEGER NOT NULL);
    -- every file to unlink, in phase order, with what its inode looked like when planned
    CREATE TEMP TABLE gc_unlink (path BLOB PRIMARY KEY, phase INTEGER NOT NULL,
                                 dev INTEGER NOT NULL, ino INTEGER NOT NULL,
                                 nlink INTEGER NOT NULL, size INTEGER NOT NULL,
                                 disk INTEGER NOT NULL);
    -- directories removed after their files
    CREATE TEMP TABLE gc_dirs (path BLOB PRIMARY KEY);
"
);

const DROP_SCRATCH: &str = concat!(
    "
    PRAGMA main.cache_size = -2000; -- SQLite's default
",
    drop_scratch_tables!()
);

/// Unlink phases, in execution order.
pub(super) const PHASE_TREE: i64 = 1;
pub(super) const PHASE_BLOB: i64 = 2;
pub(super) const PHASE_ORPHAN_BLOB: i64 = 3;
pub(super) const PHASE_TMP: i64 = 4;
pub(super) const PHASE_PARTIAL: i64 = 5;

/// Take the store lock exclusively and decide what to delete. Nothing is deleted; the returned
/// plan holds the lock until [`gc`](super::gc()) runs it or it is dropped (a dry run).
pub fn gc_plan<'a>(vault: &'a mut Vault, opts: &GcOptions) -> Result<GcPlan<'a>> {
    let lock = vault.lock_store_exclusive(opts.wait, "gc")?;
    let keep_last = opts.keep_last.max(1);
    let grace = i64::try_from(opts.grace.as_secs()).unwrap_or(i64::MAX);
    let cutoff = crate::host::now().saturating_sub(grace);
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
    match plan_into(
        &vault.layout,
        cat,
        cutoff,
        keep_last,
        opts.orphan_slice,
        &mut report,
    ) {
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
    orphan_slice: Option<u8>,
    report: &mut GcReport,
) -> Result<()> {
    let conn = cat.conn();
    let e = |err| cat.err(err);

    // Roots from the filesystem: the trees the dests' symlinks point at.
    {
        let mut ins = conn
            .prepare("INSERT OR IGNORE INTO gc_live (name, dest) VALUES (?1, ?2)")
            .map_err(e)?;
        for (name, dest) in layout.linked_trees(cat.publication_dests()?) {
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
    // Composed trees (publish::compose, schema 0011): every input snapshot of a kept tree is
    // kept, and grace rows of such a snapshot (a composed tree's own inputs after the first are
    // grace rows) are not dropped while a kept tree has it as an input.
    for sql in [
        "INSERT OR IGNORE INTO gc_keep_snapshots (id) SELECT i.snapshot_id FROM tree_inputs i
         WHERE i.tree_id IN (SELECT id FROM gc_keep_trees)",
        "DELETE FROM gc_drop_snapshots WHERE id IN (SELECT id FROM gc_keep_snapshots)",
        "DELETE FROM gc_drop_grace WHERE snapshot_id IN (SELECT i.snapshot_id FROM tree_inputs i
         WHERE i.tree_id IN (SELECT id FROM gc_keep_trees))",
    ] {
        conn.execute(sql, []).map_err(e)?;
    }
    const UNREFERENCED: &str = "
        NOT EXISTS (SELECT 1 FROM snapshot_items i JOIN gc_keep_snapshots k ON k.id = i.snapshot_id
                    WHERE i.blob = b.blake3)
        AND NOT EXISTS (SELECT 1 FROM snapshot_documents d
                        JOIN gc_keep_snapshots k ON k.id = d.snapshot_id WHERE d.blob = b.blake3)";
    // In name order through the covering index `blobs_gc` (schema 0014): the lookups above walk
    // `snapshot_items_blob` in order, no blob row is read, and `gc_drop_blobs` fills in order.
    exec(
        conn,
        &format!(
            "INSERT INTO gc_drop_blobs (blake3, size)
             SELECT b.blake3, b.size FROM blobs b INDEXED BY blobs_gc
             WHERE b.created_at <= ?1 AND {UNREFERENCED} ORDER BY b.blake3"
        ),
        cutoff,
    )
    .map_err(e)?;
    report.blobs_within_grace = count(
        conn,
        &format!(
            "SELECT count(*) FROM blobs b INDEXED BY blobs_gc
             WHERE b.created_at > ?1 AND {UNREFERENCED}"
        ),
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
            if let Some(dir) = layout.tree(&name) {
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
            // A row whose name is not a digest has no file to remove (`verify` reports it).
            if let Ok(hash) = BlobHash::parse(&hex) {
                files.add_file(&layout.blob_path(&hash), PHASE_BLOB)?;
            }
        }
    }
    // The grace links to remove, as `(tree, path)`: first the paths of a dropped grace snapshot
    // that the tree's own snapshot and its remaining grace snapshots do not list; then the grace
    // links an earlier, killed gc deleted the rows of but may not have unlinked (its journal),
    // unless the tree's own snapshot or a grace snapshot it keeps lists the path again.
    const GRACE_LINKS: [&str; 2] = [
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
        "SELECT p.tree, p.path FROM gc_pending_unlink p JOIN trees t ON t.name = p.tree
         WHERE NOT EXISTS (SELECT 1 FROM snapshot_items o
                           WHERE o.snapshot_id = t.snapshot_id AND o.path = p.path)
           AND NOT EXISTS (
             SELECT 1 FROM tree_grace r JOIN snapshot_items o ON o.snapshot_id = r.snapshot_id
             WHERE r.tree_id = t.id AND o.path = p.path
               AND NOT EXISTS (SELECT 1 FROM gc_drop_grace x
                               WHERE x.tree_id = r.tree_id AND x.snapshot_id = r.snapshot_id))",
    ];
    for sql in GRACE_LINKS {
        let mut st = conn.prepare(sql).map_err(e)?;
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
    sweep::trees(layout, &mut files, report)?;
    report.orphan_slice = orphan_slice;
    report.orphan_blobs = sweep::blobs(layout, &mut files, orphan_slice)?;
    report.tmp_entries = sweep::tmp(layout, &mut files)?;
    report.partial_files = sweep::partial(layout, &mut files, cutoff)?;

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
    let Some(dir) = layout.tree(&name) else {
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
            let reason: String = r.get(2)?;
            let reason = KeepReason::parse(&reason).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    format!("unknown keep reason `{reason}`").into(),
                )
            })?;
            Ok(KeptTree {
                name: r.get(0)?,
                snapshot: r.get(1)?,
                reason,
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
    report.blob_bytes_dropped = one("SELECT coalesce(sum(size), 0) FROM gc_drop_blobs")?;
    report.blobs_kept = one("SELECT count(*) FROM blobs")?.saturating_sub(report.blobs_dropped);
    Ok(())
}

/// Records files to unlink into `gc_unlink` (with their inode's state) and directories into
/// `gc_dirs`.
pub(super) struct Files<'c> {
    conn: &'c Connection,
    pub(super) cat: &'c Catalog,
}

impl<'c> Files<'c> {
    fn new(conn: &'c Connection, cat: &'c Catalog) -> Self {
        Files { conn, cat }
    }

    /// Does `trees/<name>` have a row, or does a dest link to it?
    pub(super) fn is_known_tree(&self, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM trees WHERE name = ?1 UNION ALL SELECT 1 FROM gc_live WHERE name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.cat.err(e))
    }

    pub(super) fn add_file(&mut self, p: &Path, phase: i64) -> Result<()> {
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
    pub(super) fn add_tree(&mut self, dir: &Path, phase: i64) -> Result<()> {
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

// ------------------------------------------------------------------ carrying the plan out

/// Delete the plan's rows in one committed transaction: grace rows, publications of dropped
/// trees, the trees, the snapshots (items and documents cascade), the blobs; the grace links to
/// unlink go to the `gc_pending_unlink` journal in the same transaction.
///
/// Linear in the store, whatever share of it goes: a secondary index that would take many
/// deletions in random order (`snapshot_items_blob` for the cascaded items, the blob checksum
/// indexes) is dropped and built again from its own `sqlite_master` definition, inside the same
/// transaction, when at least [`REBUILD_SHARE`] of its rows go; the blob rows go in name order,
/// the order of the blob table itself (a `WITHOUT ROWID` table keyed by name, schema 0015) and
/// of every index their deletion looks up, so each page of each is visited once.
/// Random-order deletions through a page cache smaller than the index write most pages to the
/// WAL many times over (measured: 1.3 GB of WAL writes for an 87 MB catalogue at 10^5 blobs).
/// `snapshot_items_blob` is built again before the blob rows go: the foreign-key checks of
/// those deletions look children up through it.
pub(super) fn delete_rows(cat: &mut Catalog) -> Result<()> {
    let path = cat.path().to_path_buf();
    let e = |err| Error::Db {
        path: path.clone(),
        source: err,
    };
    let tx = cat
        .conn_mut()
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(e)?;
    tx.execute_batch(
        "DELETE FROM tree_grace WHERE EXISTS (SELECT 1 FROM gc_drop_grace x
            WHERE x.tree_id = tree_grace.tree_id AND x.snapshot_id = tree_grace.snapshot_id);
         DELETE FROM publications WHERE tree_id IN (SELECT id FROM gc_drop_trees);
         DELETE FROM trees WHERE id IN (SELECT id FROM gc_drop_trees);",
    )
    .map_err(e)?;
    let one = |sql: &str| tx.query_row(sql, [], |r| r.get::<_, i64>(0));
    let items_gone = one("SELECT coalesce(sum(items), 0) FROM snapshots
         WHERE id IN (SELECT id FROM gc_drop_snapshots)")
    .map_err(e)?;
    let items_all = one("SELECT coalesce(sum(items), 0) FROM snapshots").map_err(e)?;
    with_indexes_rebuilt(
        &tx,
        "snapshot_items",
        many(items_gone, items_all),
        "DELETE FROM snapshots WHERE id IN (SELECT id FROM gc_drop_snapshots)",
    )
    .map_err(e)?;
    let blobs_gone = one("SELECT count(*) FROM gc_drop_blobs").map_err(e)?;
    let blobs_all = one("SELECT count(*) FROM blobs").map_err(e)?;
    // In name order, the order of the table (schema 0015), of `gc_drop_blobs` and of the
    // foreign-key lookups into `snapshot_items_blob` and `snapshot_documents_blob`.
    with_indexes_rebuilt(
        &tx,
        "blobs",
        many(blobs_gone, blobs_all),
        "DELETE FROM blobs WHERE blake3 IN (SELECT blake3 FROM gc_drop_blobs ORDER BY blake3)",
    )
    .map_err(e)?;
    tx.execute_batch(
        "INSERT OR IGNORE INTO gc_pending_unlink (tree, path)
             SELECT tree, path FROM temp.gc_grace_files;",
    )
    .map_err(e)?;
    tx.commit().map_err(e)
}

/// The share of an index's rows whose deletion makes building it again cheaper than deleting
/// from it (a build is one sorted pass; deletions in random order touch a page each).
pub(super) const REBUILD_SHARE: (i64, i64) = (1, 8);

/// Do `gone` deletions out of about `all` rows call for rebuilding the indexes?
fn many(gone: i64, all: i64) -> bool {
    gone >= 10_000 && gone.saturating_mul(REBUILD_SHARE.1) >= all.saturating_mul(REBUILD_SHARE.0)
}

/// Run `delete`; when `rebuild`, with the secondary (non-automatic) indexes of `table` dropped
/// before and created again after, from their own `sqlite_master` definitions.
fn with_indexes_rebuilt(
    conn: &Connection,
    table: &str,
    rebuild: bool,
    delete: &str,
) -> rusqlite::Result<()> {
    let indexes: Vec<(String, String)> = if rebuild {
        let mut st = conn.prepare(
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name",
        )?;
        st.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    } else {
        Vec::new()
    };
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    conn.execute(delete, [])?;
    for (_, sql) in &indexes {
        conn.execute_batch(sql)?;
    }
    Ok(())
}

/// Each directory the plan removes whole (dropped trees, `tmp/` and `partial/` entries).
pub(super) fn each_dir(cat: &Catalog, mut f: impl FnMut(PathBuf) -> Result<()>) -> Result<()> {
    let e = |err| cat.err(err);
    let mut st = cat.conn().prepare("SELECT path FROM gc_dirs").map_err(e)?;
    let mut rows = st.query([]).map_err(e)?;
    while let Some(r) = rows.next().map_err(e)? {
        f(os_path(r.get(0).map_err(e)?))?;
    }
    Ok(())
}

/// Each file to unlink with its phase and its inode as planned `(dev, ino)`, in phase order;
/// inside a phase by inode number (the links of one inode one after another, and the inode
/// table walked in order, as `rm -r` does for large directories).
pub(super) fn each_unlink(
    cat: &Catalog,
    mut f: impl FnMut(PathBuf, i64, (i64, i64)) -> Result<()>,
) -> Result<()> {
    let e = |err| cat.err(err);
    let mut st = cat
        .conn()
        .prepare("SELECT path, phase, dev, ino FROM gc_unlink ORDER BY phase, dev, ino")
        .map_err(e)?;
    let mut rows = st.query([]).map_err(e)?;
    while let Some(r) = rows.next().map_err(e)? {
        f(
            os_path(r.get(0).map_err(e)?),
            r.get(1).map_err(e)?,
            (r.get(2).map_err(e)?, r.get(3).map_err(e)?),
        )?;
    }
    Ok(())
}

/// Each directory of a removed grace link with its tree's directory, deepest first.
pub(super) fn each_grace_dir(cat: &Catalog, mut f: impl FnMut(PathBuf, PathBuf)) -> Result<()> {
    let e = |err| cat.err(err);
    let mut st = cat
        .conn()
        .prepare("SELECT path, tree FROM gc_grace_dirs ORDER BY length(path) DESC")
        .map_err(e)?;
    let mut rows = st.query([]).map_err(e)?;
    while let Some(r) = rows.next().map_err(e)? {
        f(os_path(r.get(0).map_err(e)?), os_path(r.get(1).map_err(e)?));
    }
    Ok(())
}

/// After the unlinks: empty the journal and drop the plan's tables.
pub(super) fn finish(cat: &Catalog) -> Result<()> {
    // Every journalled grace link was unlinked, or is expected again, or its tree is gone.
    cat.sql(|c| {
        c.execute_batch("DELETE FROM gc_pending_unlink")?;
        c.execute_batch(DROP_SCRATCH)
    })
}

/// A path stored as bytes in the plan's tables.
fn os_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

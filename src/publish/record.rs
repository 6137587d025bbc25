//! The SQL of the `trees`, `publications`, `tree_grace` and `tree_documents` tables (schema 0002,
//! 0003, 0005).
//!
//! Protects invariants 3 and 4 through the order its callers use: a `trees` row is inserted only
//! after its directory is complete and durable; a `publications` row is inserted before the link
//! flips (so gc always sees the tree as referenced) and deleted again only if the flip failed; a
//! `tree_grace` row is marked complete only after its links are durable.

use rusqlite::{OptionalExtension, params};

use crate::catalog::{Catalog, now};
use crate::error::Result;

/// A materialised tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TreeRow {
    pub id: i64,
    pub name: String,
    pub snapshot_id: i64,
    pub mode: String,
    pub signer: Option<String>,
    pub files: i64,
    pub bytes: i64,
    pub created_at: i64,
}

/// One flip of a published link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Publication {
    pub id: i64,
    pub dest: String,
    pub tree_id: i64,
    pub tree: String,
    pub snapshot_id: i64,
    pub source: String,
    pub mode: String,
    pub signer: Option<String>,
    pub action: String,
    pub published_at: i64,
    pub published_by: String,
    pub retired_at: Option<i64>,
    /// Filled from `readlink(dest)` by the caller, never stored.
    pub live: bool,
}

const TREE_COLUMNS: &str =
    "SELECT id, name, snapshot_id, mode, signer, files, bytes, created_at FROM trees";

const PUB_COLUMNS: &str = "SELECT p.id, p.dest, p.tree_id, t.name, p.snapshot_id,
    coalesce(s.source_name, ''), t.mode, t.signer, p.action, p.published_at, p.published_by,
    p.retired_at
    FROM publications p JOIN trees t ON t.id = p.tree_id
    LEFT JOIN snapshots s ON s.id = p.snapshot_id";

fn tree_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TreeRow> {
    Ok(TreeRow {
        id: r.get(0)?,
        name: r.get(1)?,
        snapshot_id: r.get(2)?,
        mode: r.get(3)?,
        signer: r.get(4)?,
        files: r.get(5)?,
        bytes: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn pub_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Publication> {
    Ok(Publication {
        id: r.get(0)?,
        dest: r.get(1)?,
        tree_id: r.get(2)?,
        tree: r.get(3)?,
        snapshot_id: r.get(4)?,
        source: r.get(5)?,
        mode: r.get(6)?,
        signer: r.get(7)?,
        action: r.get(8)?,
        published_at: r.get(9)?,
        published_by: r.get(10)?,
        retired_at: r.get(11)?,
        live: false,
    })
}

/// Trees of `(snapshot, mode, signer)`, newest first.
pub fn trees_for(
    cat: &Catalog,
    snapshot: i64,
    mode: &str,
    signer: Option<&str>,
) -> Result<Vec<TreeRow>> {
    let mut st = cat
        .conn()
        .prepare(&format!(
            "{TREE_COLUMNS} WHERE snapshot_id = ?1 AND mode = ?2 AND signer IS ?3 ORDER BY id DESC"
        ))
        .map_err(|e| cat.err(e))?;
    let rows = st
        .query_map(params![snapshot, mode, signer], tree_from_row)
        .map_err(|e| cat.err(e))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| cat.err(e))
}

pub fn tree_by_name(cat: &Catalog, name: &str) -> Result<Option<TreeRow>> {
    cat.conn()
        .query_row(
            &format!("{TREE_COLUMNS} WHERE name = ?1"),
            [name],
            tree_from_row,
        )
        .optional()
        .map_err(|e| cat.err(e))
}

pub fn tree_by_id(cat: &Catalog, id: i64) -> Result<Option<TreeRow>> {
    cat.conn()
        .query_row(
            &format!("{TREE_COLUMNS} WHERE id = ?1"),
            [id],
            tree_from_row,
        )
        .optional()
        .map_err(|e| cat.err(e))
}

/// A metadata document as written into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDocument {
    pub path: String,
    pub blake3: String,
    pub size: u64,
}

/// Record a tree whose directory is complete and durable (invariant 3), with its documents, in
/// one transaction.
#[allow(clippy::too_many_arguments)]
pub fn insert_tree(
    cat: &Catalog,
    name: &str,
    snapshot: i64,
    mode: &str,
    signer: Option<&str>,
    files: u64,
    bytes: u64,
    docs: &[TreeDocument],
) -> Result<TreeRow> {
    let created_at = now();
    let tx = cat.conn().unchecked_transaction().map_err(|e| cat.err(e))?;
    tx.execute(
        "INSERT INTO trees (name, snapshot_id, mode, signer, files, bytes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            name,
            snapshot,
            mode,
            signer,
            files as i64,
            bytes as i64,
            created_at
        ],
    )
    .map_err(|e| cat.err(e))?;
    let id = tx.last_insert_rowid();
    {
        let mut st = tx
            .prepare(
                "INSERT OR REPLACE INTO tree_documents (tree_id, path, blake3, size)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(|e| cat.err(e))?;
        for d in docs {
            st.execute(params![id, d.path, d.blake3, d.size as i64])
                .map_err(|e| cat.err(e))?;
        }
    }
    tx.commit().map_err(|e| cat.err(e))?;
    Ok(TreeRow {
        id,
        name: name.to_string(),
        snapshot_id: snapshot,
        mode: mode.to_string(),
        signer: signer.map(str::to_string),
        files: files as i64,
        bytes: bytes as i64,
        created_at,
    })
}

/// Insert a publication row (before the flip).
pub fn insert_publication(
    cat: &Catalog,
    dest: &str,
    tree: &TreeRow,
    action: &str,
    by: &str,
) -> Result<i64> {
    cat.conn()
        .execute(
            "INSERT INTO publications (dest, tree_id, snapshot_id, action, published_at,
                                       published_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![dest, tree.id, tree.snapshot_id, action, now(), by],
        )
        .map_err(|e| cat.err(e))?;
    Ok(cat.conn().last_insert_rowid())
}

/// Remove the row of a flip that did not happen.
pub fn delete_publication(cat: &Catalog, id: i64) -> Result<()> {
    cat.conn()
        .execute("DELETE FROM publications WHERE id = ?1", [id])
        .map_err(|e| cat.err(e))?;
    Ok(())
}

/// After the flip: every other publication of `dest` still open is retired now.
pub fn retire_others(cat: &Catalog, dest: &str, live: i64) -> Result<()> {
    cat.conn()
        .execute(
            "UPDATE publications SET retired_at = ?1
             WHERE dest = ?2 AND id != ?3 AND retired_at IS NULL",
            params![now(), dest, live],
        )
        .map_err(|e| cat.err(e))?;
    Ok(())
}

/// Publications, of one dest or all, oldest first.
pub fn publications(cat: &Catalog, dest: Option<&str>) -> Result<Vec<Publication>> {
    let mut st = cat
        .conn()
        .prepare(&format!(
            "{PUB_COLUMNS} WHERE (?1 IS NULL OR p.dest = ?1) ORDER BY p.id"
        ))
        .map_err(|e| cat.err(e))?;
    let rows = st.query_map([dest], pub_from_row).map_err(|e| cat.err(e))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| cat.err(e))
}

pub fn publication(cat: &Catalog, id: i64) -> Result<Option<Publication>> {
    cat.conn()
        .query_row(
            &format!("{PUB_COLUMNS} WHERE p.id = ?1"),
            [id],
            pub_from_row,
        )
        .optional()
        .map_err(|e| cat.err(e))
}

/// The newest publication of `dest`, whatever its tree.
pub fn latest_publication(cat: &Catalog, dest: &str) -> Result<Option<Publication>> {
    cat.conn()
        .query_row(
            &format!("{PUB_COLUMNS} WHERE p.dest = ?1 ORDER BY p.id DESC LIMIT 1"),
            [dest],
            pub_from_row,
        )
        .optional()
        .map_err(|e| cat.err(e))
}

/// The newest publication of `dest` with tree `tree` (the live one when `tree` is the link's).
pub fn latest_with_tree(cat: &Catalog, dest: &str, tree: i64) -> Result<Option<Publication>> {
    cat.conn()
        .query_row(
            &format!(
                "{PUB_COLUMNS} WHERE p.dest = ?1 AND p.tree_id = ?2 ORDER BY p.id DESC LIMIT 1"
            ),
            params![dest, tree],
            pub_from_row,
        )
        .optional()
        .map_err(|e| cat.err(e))
}

/// The newest publication of `dest` before `before` whose tree is not `not_tree`.
pub fn previous(
    cat: &Catalog,
    dest: &str,
    before: i64,
    not_tree: i64,
) -> Result<Option<Publication>> {
    cat.conn()
        .query_row(
            &format!(
                "{PUB_COLUMNS} WHERE p.dest = ?1 AND p.id < ?2 AND p.tree_id != ?3
                 ORDER BY p.id DESC LIMIT 1"
            ),
            params![dest, before, not_tree],
            pub_from_row,
        )
        .optional()
        .map_err(|e| cat.err(e))
}

/// The newest publication of `dest` of snapshot `snapshot`.
pub fn latest_of_snapshot(cat: &Catalog, dest: &str, snapshot: i64) -> Result<Option<Publication>> {
    cat.conn()
        .query_row(
            &format!(
                "{PUB_COLUMNS} WHERE p.dest = ?1 AND p.snapshot_id = ?2 ORDER BY p.id DESC LIMIT 1"
            ),
            params![dest, snapshot],
            pub_from_row,
        )
        .optional()
        .map_err(|e| cat.err(e))
}

/// Does `tree` hold every item path of `snapshot` (its own, or complete grace)?
pub fn covers(cat: &Catalog, tree: &TreeRow, snapshot: i64) -> Result<bool> {
    if tree.snapshot_id == snapshot {
        return Ok(true);
    }
    cat.conn()
        .query_row(
            "SELECT 1 FROM tree_grace WHERE tree_id = ?1 AND snapshot_id = ?2 AND complete = 1",
            params![tree.id, snapshot],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(|e| cat.err(e))
}

/// The snapshots `tree` carries grace items for (complete or being added), oldest first.
pub fn grace_snapshots(cat: &Catalog, tree: i64) -> Result<Vec<i64>> {
    let mut st = cat
        .conn()
        .prepare("SELECT snapshot_id FROM tree_grace WHERE tree_id = ?1 ORDER BY snapshot_id")
        .map_err(|e| cat.err(e))?;
    let rows = st.query_map([tree], |r| r.get(0)).map_err(|e| cat.err(e))?;
    rows.collect::<rusqlite::Result<Vec<i64>>>()
        .map_err(|e| cat.err(e))
}

/// Announce grace links of `snapshot` in `tree` (before adding them).
pub fn begin_grace(cat: &Catalog, tree: i64, snapshot: i64) -> Result<()> {
    cat.conn()
        .execute(
            "INSERT OR IGNORE INTO tree_grace (tree_id, snapshot_id, complete, files)
             VALUES (?1, ?2, 0, 0)",
            params![tree, snapshot],
        )
        .map_err(|e| cat.err(e))?;
    Ok(())
}

/// The grace links are durable.
pub fn complete_grace(cat: &Catalog, tree: i64, snapshot: i64, files: u64) -> Result<()> {
    cat.conn()
        .execute(
            "UPDATE tree_grace SET complete = 1, files = files + ?3
             WHERE tree_id = ?1 AND snapshot_id = ?2",
            params![tree, snapshot, files as i64],
        )
        .map_err(|e| cat.err(e))?;
    Ok(())
}

/// The recorded documents of a tree, `(path, blake3)`; empty for a tree built before schema
/// 0005.
pub fn tree_documents(cat: &Catalog, tree: i64) -> Result<Vec<(String, String)>> {
    let mut st = cat
        .conn()
        .prepare("SELECT path, blake3 FROM tree_documents WHERE tree_id = ?1 ORDER BY path")
        .map_err(|e| cat.err(e))?;
    let rows = st
        .query_map([tree], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(|e| cat.err(e))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| cat.err(e))
}

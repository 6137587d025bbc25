//! Trees (the `trees`, `tree_documents` and `tree_grace` tables, schema 0002, 0003, 0005): the
//! directories publish materialises for a snapshot, the metadata documents written into each,
//! and the grace items (another snapshot's item paths) a tree carries.
//!
//! Protects invariant 3 through the order its callers use: a `trees` row is inserted only after
//! its directory is complete and durable; a `tree_grace` row is announced before its links are
//! added and marked complete only after they are durable.

use rusqlite::{Row, params};

use super::ids::{SnapshotId, TreeId};
use super::{Catalog, now};
use crate::error::Result;
use crate::store::BlobHash;

/// How a tree's metadata was written (`trees.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataMode {
    /// The upstream documents byte for byte (what `sstream-mirror` publishes).
    #[default]
    Verbatim,
    /// Rewritten to list exactly what the snapshot holds; re-signed with `sign_key`.
    Filtered,
}

stored_enum!(MetadataMode, "metadata mode", {
    Verbatim => "verbatim",
    Filtered => "filtered",
});

/// A materialised tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TreeRow {
    pub(crate) id: TreeId,
    pub name: String,
    pub(crate) snapshot_id: SnapshotId,
    pub mode: MetadataMode,
    pub signer: Option<String>,
    pub files: i64,
    pub bytes: i64,
    pub(crate) created_at: i64,
}

/// A metadata document as written into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeDocument {
    pub(crate) path: String,
    pub(crate) blake3: BlobHash,
    pub(crate) size: u64,
}

const TREE_COLUMNS: &str =
    "SELECT id, name, snapshot_id, mode, signer, files, bytes, created_at FROM trees";

fn tree_from_row(r: &Row<'_>) -> rusqlite::Result<TreeRow> {
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

impl Catalog {
    /// Trees of `(snapshot, mode, signer)`, newest first.
    pub(crate) fn trees_for(
        &self,
        snapshot: SnapshotId,
        mode: MetadataMode,
        signer: Option<&str>,
    ) -> Result<Vec<TreeRow>> {
        self.rows(
            &format!(
                "{TREE_COLUMNS} WHERE snapshot_id = ?1 AND mode = ?2 AND signer IS ?3
                 ORDER BY id DESC"
            ),
            params![snapshot, mode, signer],
            tree_from_row,
        )
    }

    pub(crate) fn tree_by_name(&self, name: &str) -> Result<Option<TreeRow>> {
        self.row(
            &format!("{TREE_COLUMNS} WHERE name = ?1"),
            [name],
            tree_from_row,
        )
    }

    pub(crate) fn tree_by_id(&self, id: TreeId) -> Result<Option<TreeRow>> {
        self.row(
            &format!("{TREE_COLUMNS} WHERE id = ?1"),
            [id],
            tree_from_row,
        )
    }

    /// Record a tree whose directory is complete and durable (invariant 3), with its documents,
    /// in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_tree(
        &self,
        name: &str,
        snapshot: SnapshotId,
        mode: MetadataMode,
        signer: Option<&str>,
        files: u64,
        bytes: u64,
        docs: &[TreeDocument],
    ) -> Result<TreeRow> {
        let created_at = now();
        let id = self.write(|tx| {
            insert_tree_rows(
                tx,
                name,
                snapshot,
                mode,
                signer,
                (files, bytes),
                created_at,
                docs,
            )
        })?;
        Ok(TreeRow {
            id,
            name: name.to_string(),
            snapshot_id: snapshot,
            mode,
            signer: signer.map(str::to_string),
            files: files as i64,
            bytes: bytes as i64,
            created_at,
        })
    }

    /// The recorded documents of a tree, `(path, blake3)`; empty for a tree built before schema
    /// 0005. A stored `blake3` that is not a blob address is an error.
    pub(crate) fn tree_documents(&self, tree: TreeId) -> Result<Vec<(String, BlobHash)>> {
        self.rows(
            "SELECT path, blake3 FROM tree_documents WHERE tree_id = ?1 ORDER BY path",
            [tree],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    // ------------------------------------------------------------ grace items

    /// Does `tree` hold every item path of `snapshot` (its own, or complete grace)?
    pub(crate) fn tree_covers(&self, tree: &TreeRow, snapshot: SnapshotId) -> Result<bool> {
        if tree.snapshot_id == snapshot {
            return Ok(true);
        }
        Ok(self
            .row(
                "SELECT 1 FROM tree_grace
                 WHERE tree_id = ?1 AND snapshot_id = ?2 AND complete = 1",
                params![tree.id, snapshot],
                |_| Ok(()),
            )?
            .is_some())
    }

    /// The snapshots `tree` carries grace items for (complete or being added), oldest first.
    pub(crate) fn grace_snapshots(&self, tree: TreeId) -> Result<Vec<SnapshotId>> {
        self.rows(
            "SELECT snapshot_id FROM tree_grace WHERE tree_id = ?1 ORDER BY snapshot_id",
            [tree],
            |r| r.get(0),
        )
    }

    /// Announce grace links of `snapshot` in `tree` (before adding them).
    pub(crate) fn begin_grace(&self, tree: TreeId, snapshot: SnapshotId) -> Result<()> {
        self.exec(
            "INSERT OR IGNORE INTO tree_grace (tree_id, snapshot_id, complete, files)
             VALUES (?1, ?2, 0, 0)",
            params![tree, snapshot],
        )?;
        Ok(())
    }

    /// The grace links are durable.
    pub(crate) fn complete_grace(
        &self,
        tree: TreeId,
        snapshot: SnapshotId,
        files: u64,
    ) -> Result<()> {
        self.exec(
            "UPDATE tree_grace SET complete = 1, files = files + ?3
             WHERE tree_id = ?1 AND snapshot_id = ?2",
            params![tree, snapshot, files as i64],
        )?;
        Ok(())
    }
}

/// The `trees` row and its `tree_documents` inside the caller's transaction (a tree of one
/// snapshot, or a composed tree whose caller adds its inputs): its id.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_tree_rows(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    snapshot: SnapshotId,
    mode: MetadataMode,
    signer: Option<&str>,
    (files, bytes): (u64, u64),
    created_at: i64,
    docs: &[TreeDocument],
) -> rusqlite::Result<TreeId> {
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
    )?;
    let id = TreeId(tx.last_insert_rowid());
    let mut st = tx.prepare(
        "INSERT OR REPLACE INTO tree_documents (tree_id, path, blake3, size)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for d in docs {
        st.execute(params![id, d.path, d.blake3, d.size as i64])?;
    }
    Ok(id)
}

//! Composed trees (the `tree_inputs` table, schema 0011): a tree built from several snapshots
//! (`publish A B … DEST`, [`crate::publish`]) and the snapshots it was built from, in order.
//!
//! The first input is the tree's `trees.snapshot_id` (what every single-snapshot query sees);
//! the others are recorded twice in the tree's one insert transaction: here, and as complete
//! `tree_grace` rows (the tree holds every item path of those snapshots), so grace bridging and
//! verify need no special case. gc keeps every input of a kept tree and those rows with it.

use rusqlite::params;

use super::trees::{MetadataMode, TreeDocument, TreeRow};
use super::{Catalog, SnapshotId, TreeId, now};
use crate::error::Result;

/// One input of a publication's tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TreeInput {
    pub snapshot: SnapshotId,
    pub source: String,
}

impl Catalog {
    /// Record a composed tree whose directory is complete and durable (invariant 3): the
    /// `trees` row (snapshot = the first input), its documents, its inputs and the inputs after
    /// the first as complete grace rows, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_composed_tree(
        &self,
        name: &str,
        inputs: &[SnapshotId],
        mode: MetadataMode,
        signer: Option<&str>,
        files: u64,
        bytes: u64,
        docs: &[TreeDocument],
    ) -> Result<TreeRow> {
        let first = inputs.first().copied().unwrap_or_default();
        let created_at = now();
        let id = self.write(|tx| {
            let id = super::trees::insert_tree_rows(
                tx,
                name,
                first,
                mode,
                signer,
                (files, bytes),
                created_at,
                docs,
            )?;
            let mut ins = tx.prepare(
                "INSERT INTO tree_inputs (tree_id, position, snapshot_id) VALUES (?1, ?2, ?3)",
            )?;
            let mut grace = tx.prepare(
                "INSERT OR IGNORE INTO tree_grace (tree_id, snapshot_id, complete, files)
                 VALUES (?1, ?2, 1, 0)",
            )?;
            for (pos, s) in inputs.iter().enumerate() {
                ins.execute(params![id, pos as i64, s])?;
                if pos > 0 && *s != first {
                    grace.execute(params![id, s])?;
                }
            }
            Ok(id)
        })?;
        Ok(TreeRow {
            id,
            name: name.to_string(),
            snapshot_id: first,
            mode,
            signer: signer.map(str::to_string),
            files: files as i64,
            bytes: bytes as i64,
            created_at,
        })
    }

    /// The input snapshots of tree `tree`, in order; empty for a tree of one snapshot.
    pub(crate) fn tree_inputs(&self, tree: TreeId) -> Result<Vec<SnapshotId>> {
        self.rows(
            "SELECT snapshot_id FROM tree_inputs WHERE tree_id = ?1 ORDER BY position",
            [tree],
            |r| r.get(0),
        )
    }

    /// The inputs of tree `tree` with their sources; for a tree of one snapshot, that snapshot.
    pub(crate) fn tree_input_sources(&self, tree: &TreeRow) -> Result<Vec<TreeInput>> {
        let rows: Vec<TreeInput> = self.rows(
            "SELECT i.snapshot_id, coalesce(s.source_name, '') FROM tree_inputs i
             LEFT JOIN snapshots s ON s.id = i.snapshot_id
             WHERE i.tree_id = ?1 ORDER BY i.position",
            [tree.id],
            |r| {
                Ok(TreeInput {
                    snapshot: r.get(0)?,
                    source: r.get(1)?,
                })
            },
        )?;
        if !rows.is_empty() {
            return Ok(rows);
        }
        let source = self
            .row(
                "SELECT source_name FROM snapshots WHERE id = ?1",
                [tree.snapshot_id],
                |r| r.get::<_, String>(0),
            )?
            .unwrap_or_default();
        Ok(vec![TreeInput {
            snapshot: tree.snapshot_id,
            source,
        }])
    }

    /// Trees built from exactly `inputs` (in this order) with `mode` and `signer`, newest first.
    pub(crate) fn composed_trees_for(
        &self,
        inputs: &[SnapshotId],
        mode: MetadataMode,
        signer: Option<&str>,
    ) -> Result<Vec<TreeRow>> {
        let Some(&first) = inputs.first() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for t in self.trees_for(first, mode, signer)? {
            if self.tree_inputs(t.id)? == inputs {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Was a composed tree holding `snapshot` published to `dest` and retired since (an admin
    /// rolled back from it)?
    pub(crate) fn composition_retired_from(
        &self,
        dest: &str,
        snapshot: SnapshotId,
    ) -> Result<bool> {
        Ok(self
            .row(
                "SELECT 1 FROM publications p JOIN tree_inputs i ON i.tree_id = p.tree_id
                 WHERE p.dest = ?1 AND i.snapshot_id = ?2 AND p.retired_at IS NOT NULL LIMIT 1",
                params![dest, snapshot],
                |_| Ok(()),
            )?
            .is_some())
    }
}

//! Grace items: before a link flips from tree A to tree B, B gets hardlinks of the item paths of
//! A's snapshot that it lacks — and of every snapshot A itself carries grace items for, so that
//! after A → B → C (or A → B, rollback, C) a reader of A's metadata still finds A's items through
//! the link: every tree retired within the grace period stays fully downloadable ([`bridge`]).
//! A gets B's items too. A client that read A's metadata just before
//! the flip (MAAS reads the products, then downloads for up to hours) still finds every item it
//! was told about after the flip, and rolling back from B to A needs no work but the rename.
//!
//! Protects the reader's side of invariant 3 (spec/anchors.md §0.4 and §4.6): links are only
//! added, never replacing a file, and only paths a tree's own metadata does not list are added,
//! so what a tree's metadata lists never changes. A `tree_grace` row is announced before the
//! links and marked complete only once they are durable.

use std::path::Path;

use crate::catalog::TreeRow;
use crate::error::{Error, Result};
use crate::vault::Vault;

use super::tree::{Builder, OnExisting};

/// Before DEST flips from `live` to `next`: `next` covers `live`'s snapshot and every snapshot
/// `live` carries grace items for (the trees retired before it, still within the grace period
/// unless gc has dropped their rows, and the inputs of a composed `live`, recorded as grace
/// rows), and `live` covers every input snapshot of `next` (a rollback is one rename). Returns the number of links added.
pub(super) fn bridge(vault: &Vault, trees: &Path, next: &TreeRow, live: &TreeRow) -> Result<u64> {
    let mut added = 0;
    let mut snapshots = vec![live.snapshot_id];
    for s in vault.catalog.grace_snapshots(live.id)? {
        if !snapshots.contains(&s) {
            snapshots.push(s);
        }
    }
    for s in snapshots {
        added += cover(vault, trees, next, s)?;
    }
    // Every input of `next` (a composed tree has several; `tree_covers` is already true for
    // those `live` itself holds).
    let mut inputs = vault.catalog.tree_inputs(next.id)?;
    if inputs.is_empty() {
        inputs.push(next.snapshot_id);
    }
    for s in inputs {
        added += cover(vault, trees, live, s)?;
    }
    Ok(added)
}

/// Make `tree` hold every item path of `snapshot`; returns the number of links added.
pub(super) fn cover(
    vault: &Vault,
    trees: &Path,
    tree: &TreeRow,
    snapshot: crate::catalog::SnapshotId,
) -> Result<u64> {
    let cat = &vault.catalog;
    if cat.tree_covers(tree, snapshot)? {
        return Ok(0);
    }
    let dir = trees.join(&tree.name);
    if !dir.is_dir() {
        return Err(Error::Io {
            op: "add grace items to tree",
            path: dir,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    cat.begin_grace(tree.id, snapshot)?;
    let mut builder = Builder::new(&dir, snapshot, OnExisting::Keep);
    // The item paths of `snapshot` that the tree's own snapshot does not list (those of its own
    // metadata are never replaced); the first of duplicate paths wins.
    let mut last: Option<String> = None;
    cat.for_each_item_file(snapshot, Some(tree.snapshot_id), |f| {
        let Some(blob) = f.blob else {
            return Ok(());
        };
        if last.as_deref() == Some(f.path.as_str()) {
            return Ok(());
        }
        let blob_path = vault.layout.blob_path(&blob);
        builder.link_blob(&f.path, &blob_path, f.size)?;
        last = Some(f.path);
        Ok(())
    })?;
    builder.sync()?;
    cat.complete_grace(tree.id, snapshot, builder.files)?;
    Ok(builder.files)
}

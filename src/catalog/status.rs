//! Read-only queries for `serve`'s `/-/status` page: sources with their last snapshot, the
//! snapshot history, live and retired publications, and the blob total.
//!
//! Protects: these only read (the page opens the catalogue read-only), and never return a
//! source's credentials unredacted — callers get URLs exactly as stored and must redact them
//! (the page does, through `serve::status`).

use rusqlite::params;

use super::{Catalog, PublicationAction, SnapshotId};
use crate::error::Result;

/// One source and its newest snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceStatus {
    pub(crate) name: String,
    /// As stored: may carry credentials; redact before showing.
    pub(crate) url: String,
    pub(crate) snapshots: i64,
    /// `(id, created_at, items, bytes, duration_ms)` of the newest snapshot.
    pub(crate) last: Option<(SnapshotId, i64, i64, i64, i64)>,
}

/// One snapshot row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotStatus {
    pub(crate) id: SnapshotId,
    pub(crate) source: String,
    pub(crate) created_at: i64,
    pub(crate) products: i64,
    pub(crate) versions: i64,
    pub(crate) items: i64,
    pub(crate) bytes: i64,
    pub(crate) fetched_bytes: i64,
    /// The same source's previous snapshot still in the catalogue, if any.
    pub(crate) previous: Option<SnapshotId>,
}

/// A publication (a tree published on a DEST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicationStatus {
    pub(crate) dest: String,
    pub(crate) tree: String,
    pub(crate) snapshot_id: SnapshotId,
    pub(crate) action: PublicationAction,
    pub(crate) published_at: i64,
    pub(crate) retired_at: Option<i64>,
}

impl Catalog {
    pub(crate) fn status_sources(&self) -> Result<Vec<SourceStatus>> {
        self.rows(
            "SELECT s.name, s.url,
                        (SELECT COUNT(*) FROM snapshots n WHERE n.source_name = s.name),
                        l.id, l.created_at, l.items, l.bytes, l.duration_ms
                 FROM sources s
                 LEFT JOIN snapshots l ON l.id =
                     (SELECT MAX(id) FROM snapshots m WHERE m.source_name = s.name)
                 ORDER BY s.name",
            [],
            |r| {
                let id: Option<SnapshotId> = r.get(3)?;
                Ok(SourceStatus {
                    name: r.get(0)?,
                    url: r.get(1)?,
                    snapshots: r.get(2)?,
                    last: match id {
                        Some(id) => Some((id, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
                        None => None,
                    },
                })
            },
        )
    }

    /// The newest `limit` snapshots, newest first.
    pub(crate) fn status_snapshots(&self, limit: i64) -> Result<Vec<SnapshotStatus>> {
        self.rows(
            "SELECT id, source_name, created_at, products, versions, items, bytes,
                        fetched_bytes,
                        (SELECT MAX(p.id) FROM snapshots p
                          WHERE p.source_name = s.source_name AND p.id < s.id)
                 FROM snapshots s ORDER BY id DESC LIMIT ?1",
            params![limit],
            |r| {
                Ok(SnapshotStatus {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    created_at: r.get(2)?,
                    products: r.get(3)?,
                    versions: r.get(4)?,
                    items: r.get(5)?,
                    bytes: r.get(6)?,
                    fetched_bytes: r.get(7)?,
                    previous: r.get(8)?,
                })
            },
        )
    }

    /// Publications still live (not retired), and those retired at or after `since`
    /// (unix seconds), newest first.
    pub(crate) fn status_publications(&self, since: i64) -> Result<Vec<PublicationStatus>> {
        self.rows(
            "SELECT p.dest, t.name, p.snapshot_id, p.action, p.published_at, p.retired_at
                 FROM publications p JOIN trees t ON t.id = p.tree_id
                 WHERE p.retired_at IS NULL OR p.retired_at >= ?1
                 ORDER BY p.id DESC",
            params![since],
            |r| {
                Ok(PublicationStatus {
                    dest: r.get(0)?,
                    tree: r.get(1)?,
                    snapshot_id: r.get(2)?,
                    action: r.get(3)?,
                    published_at: r.get(4)?,
                    retired_at: r.get(5)?,
                })
            },
        )
    }

    /// `(blob count, their total size)` ([`Catalog::blob_totals`] as the page prints it).
    pub(crate) fn status_blob_total(&self) -> Result<(i64, i64)> {
        let (n, bytes) = self.blob_totals()?;
        Ok((
            i64::try_from(n).unwrap_or(i64::MAX),
            i64::try_from(bytes).unwrap_or(i64::MAX),
        ))
    }
}

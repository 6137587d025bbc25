//! Writing a snapshot whose items are produced one at a time ([`Catalog::insert_snapshot_rows`]):
//! a sync of a million-item document never holds a row per item (issue 8 item 4). Same tables,
//! same single transaction (invariant 2) as [`Catalog::insert_snapshot`].

use rusqlite::params;

use super::{Catalog, Item, NewSnapshot, SnapshotId, db, json_list, now};
use crate::error::Result;

/// What the `snapshots` row counts, computed by the caller who streams the items.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SnapshotTotals {
    /// Distinct `(content_id, product)`.
    pub(crate) products: u64,
    /// Distinct `(content_id, product, version)`.
    pub(crate) versions: u64,
    pub(crate) items: u64,
    /// Sum of the item sizes.
    pub(crate) bytes: u64,
}

impl Catalog {
    /// [`Catalog::insert_snapshot`] with the items (`s.items` is ignored) handed over one at a
    /// time by `next_item` until it returns `Ok(None)`; `totals` fills the snapshot's counts.
    /// An error from `next_item` rolls everything back.
    pub(crate) fn insert_snapshot_rows(
        &mut self,
        s: &NewSnapshot,
        totals: SnapshotTotals,
        next_item: &mut dyn FnMut() -> Result<Option<Item>>,
        kept: &[super::KeptVersion],
    ) -> Result<SnapshotId> {
        let path = self.path.clone();
        let e = |err| db(&path, err);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
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
                totals.products as i64,
                totals.versions as i64,
                totals.items as i64,
                totals.bytes as i64,
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
            while let Some(it) = next_item()? {
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
        super::kept::insert_kept(&tx, id, kept).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(SnapshotId(id))
    }
}

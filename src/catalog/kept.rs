//! Versions carried by `--keep` (the `snapshot_kept_versions` table, schema 0018): for each
//! version a snapshot holds that no document of it lists any more, the product and version
//! objects of the upstream document that last described it, recorded by the sync that carried
//! it ([`crate::sync`]) and read by filtered metadata ([`crate::publish`]). Rows go with their
//! snapshot (ON DELETE CASCADE).

use rusqlite::params;

use super::{Catalog, SnapshotId};
use crate::error::Result;

/// One carried version, as its upstream document described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptVersion {
    pub content_id: String,
    pub product: String,
    pub version: String,
    /// The product object without `versions`, JSON.
    pub product_json: String,
    /// The version object, JSON.
    pub version_json: String,
}

impl Catalog {
    /// The recorded description of a carried version of `snapshot`, if any.
    pub fn kept_version(
        &self,
        snapshot: SnapshotId,
        content_id: &str,
        product: &str,
        version: &str,
    ) -> Result<Option<KeptVersion>> {
        self.row(
            "SELECT product_json, version_json FROM snapshot_kept_versions
             WHERE snapshot_id = ?1 AND content_id = ?2 AND product = ?3 AND version = ?4",
            params![snapshot, content_id, product, version],
            |r| {
                Ok(KeptVersion {
                    content_id: content_id.to_string(),
                    product: product.to_string(),
                    version: version.to_string(),
                    product_json: r.get(0)?,
                    version_json: r.get(1)?,
                })
            },
        )
    }
}

/// Record the carried versions of `snapshot` inside the caller's transaction, the snapshot's own
/// (`insert_snapshot_rows`): a snapshot and its kept rows commit together. A row already there
/// stays.
pub(super) fn insert_kept(
    tx: &rusqlite::Transaction<'_>,
    snapshot: i64,
    rows: &[KeptVersion],
) -> rusqlite::Result<()> {
    let mut st = tx.prepare(
        "INSERT OR IGNORE INTO snapshot_kept_versions (snapshot_id, content_id, product,
            version, product_json, version_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in rows {
        st.execute(params![
            snapshot,
            r.content_id,
            r.product,
            r.version,
            r.product_json,
            r.version_json
        ])?;
    }
    Ok(())
}

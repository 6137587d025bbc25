//! Snapshots (the `snapshots`, `snapshot_documents` and `snapshot_items` tables): written once
//! in one transaction, then only read.
//!
//! Protects invariant 2: [`Catalog::insert_snapshot`] writes a snapshot, its documents and
//! items in one transaction; nothing here ever updates a snapshot row afterwards.

use std::collections::BTreeMap;

use rusqlite::params;

use super::ids::{SnapshotId, SourceId};
use super::ops::strip_credentials;
use super::{Catalog, parse_list_strict};
use crate::checksum::Checksums;
use crate::error::{Error, Result};
use crate::store::BlobHash;

/// One snapshot's summary row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub source: String,
    pub created_at: i64,
    pub url: String,
    pub start_path: String,
    pub filters: Vec<String>,
    pub max: Option<i64>,
    pub keep: bool,
    pub signed: bool,
    pub(crate) verified: bool,
    pub signer: Option<String>,
    pub products: i64,
    pub versions: i64,
    pub items: i64,
    pub bytes: i64,
    pub fetched_bytes: i64,
    pub duration_ms: i64,
    pub(crate) digest: String,
}

/// A metadata document kept verbatim in a snapshot (a row of `snapshot_documents`; the parsed
/// document is [`crate::streams::Document`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredDocument {
    pub(crate) ord: i64,
    pub path: String,
    pub kind: DocumentKind,
    pub(crate) content_id: Option<String>,
    pub(crate) blob: BlobHash,
}

/// What a stored document is (`snapshot_documents.kind`); printed and serialized as the stored
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    /// A SimpleStreams index (`index:1.0`).
    Index,
    /// A products document (`products:1.0`).
    Products,
    /// Anything else under `streams/` (kept byte for byte, never parsed again).
    Other,
}

stored_enum!(DocumentKind, "document kind", {
    Index => "index",
    Products => "products",
    Other => "other",
});

/// One item of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    pub content_id: String,
    pub product: String,
    pub version: String,
    pub item: String,
    pub path: Option<String>,
    pub size: Option<u64>,
    #[serde(skip)]
    pub checksums: Checksums,
    pub blob: Option<BlobHash>,
}

impl Item {
    /// The identity of an item: `(content_id, product, version, item)`.
    pub(crate) fn key(&self) -> (&str, &str, &str, &str) {
        (&self.content_id, &self.product, &self.version, &self.item)
    }
}

/// A snapshot about to be written.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    pub source_id: Option<SourceId>,
    pub source: String,
    pub url: String,
    pub start_path: String,
    pub filters: Vec<String>,
    pub max: Option<i64>,
    pub keep: bool,
    pub signed: bool,
    pub verified: bool,
    pub signer: Option<String>,
    pub fetched_bytes: u64,
    pub duration_ms: u64,
    pub digest: String,
    pub documents: Vec<StoredDocument>,
    pub items: Vec<Item>,
}

impl Catalog {
    /// Write a snapshot and all its rows in one transaction (invariant 2). Every blob it names
    /// must already have its row (foreign keys are on). The rows are written by
    /// [`Catalog::insert_snapshot_rows`], the streaming form a sync uses.
    pub fn insert_snapshot(&mut self, s: &NewSnapshot) -> Result<SnapshotId> {
        let mut products = std::collections::HashSet::new();
        let mut versions = std::collections::HashSet::new();
        let mut bytes: u64 = 0;
        for it in &s.items {
            products.insert((&it.content_id, &it.product));
            versions.insert((&it.content_id, &it.product, &it.version));
            bytes += it.size.unwrap_or(0);
        }
        let totals = super::SnapshotTotals {
            products: products.len() as u64,
            versions: versions.len() as u64,
            items: s.items.len() as u64,
            bytes,
        };
        let mut items = s.items.iter();
        self.insert_snapshot_rows(s, totals, &mut || Ok(items.next().cloned()), &[])
    }

    pub fn snapshots(&self, source: Option<&str>) -> Result<Vec<Snapshot>> {
        self.rows(
            &format!("{SNAPSHOT_COLUMNS} WHERE (?1 IS NULL OR source_name = ?1) ORDER BY id"),
            [source],
            snapshot_from_row,
        )
    }

    pub(crate) fn snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        self.row(
            &format!("{SNAPSHOT_COLUMNS} WHERE id = ?1"),
            [id],
            snapshot_from_row,
        )?
        .ok_or_else(|| Error::UnknownSnapshot(id.to_string()))
    }

    /// The newest snapshot of a source.
    pub fn latest_snapshot(&self, source: &str) -> Result<Option<Snapshot>> {
        self.row(
            &format!("{SNAPSHOT_COLUMNS} WHERE source_name = ?1 ORDER BY id DESC LIMIT 1"),
            [source],
            snapshot_from_row,
        )
    }

    /// Resolve an id or a source name (= its latest snapshot).
    pub fn resolve_snapshot(&self, spec: &str) -> Result<Snapshot> {
        if let Ok(id) = spec.parse::<SnapshotId>() {
            return self.snapshot(id);
        }
        self.latest_snapshot(spec)?
            .ok_or_else(|| Error::UnknownSnapshot(spec.to_string()))
    }

    pub fn documents(&self, snapshot: SnapshotId) -> Result<Vec<StoredDocument>> {
        self.rows(
            "SELECT ord, path, kind, content_id, blob FROM snapshot_documents
             WHERE snapshot_id = ?1 ORDER BY ord",
            [snapshot],
            |r| {
                Ok(StoredDocument {
                    ord: r.get(0)?,
                    path: r.get(1)?,
                    kind: r.get(2)?,
                    content_id: r.get(3)?,
                    blob: r.get(4)?,
                })
            },
        )
    }

    /// Stream the items of a snapshot in key order without collecting them.
    pub fn for_each_item(
        &self,
        snapshot: SnapshotId,
        f: impl FnMut(Item) -> Result<()>,
    ) -> Result<()> {
        self.each(
            &format!(
                "{ITEM_COLUMNS} WHERE snapshot_id = ?1 ORDER BY content_id, product, version, item"
            ),
            [snapshot],
            item_from_row,
            f,
        )
    }

    pub fn items(&self, snapshot: SnapshotId) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        self.for_each_item(snapshot, |it| {
            out.push(it);
            Ok(())
        })?;
        Ok(out)
    }

    /// The versions of each `(content_id, product)` in a snapshot.
    pub(crate) fn snapshot_versions(
        &self,
        snapshot: SnapshotId,
    ) -> Result<BTreeMap<(String, String), Vec<String>>> {
        let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        self.each(
            "SELECT DISTINCT content_id, product, version FROM snapshot_items
             WHERE snapshot_id = ?1",
            [snapshot],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            |(cid, prod, ver)| {
                out.entry((cid, prod)).or_default().push(ver);
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// The items of one version of a snapshot.
    pub(crate) fn version_items(
        &self,
        snapshot: SnapshotId,
        content_id: &str,
        product: &str,
        version: &str,
    ) -> Result<Vec<Item>> {
        self.rows(
            &format!(
                "{ITEM_COLUMNS} WHERE snapshot_id = ?1 AND content_id = ?2 AND product = ?3
                 AND version = ?4 ORDER BY item"
            ),
            params![snapshot, content_id, product, version],
            item_from_row,
        )
    }

    /// The items of `snapshot` that have a path, in path order, streamed to `f`; with `except`,
    /// only the paths snapshot `except` does not list. What a publish links into a tree, and
    /// what grace adds to another snapshot's tree.
    pub(crate) fn for_each_item_file(
        &self,
        snapshot: SnapshotId,
        except: Option<SnapshotId>,
        f: impl FnMut(ItemFile) -> Result<()>,
    ) -> Result<()> {
        self.each(
            "SELECT path, blob, size, content_id, product, version, item FROM snapshot_items
             WHERE snapshot_id = ?1 AND path IS NOT NULL
               AND (?2 IS NULL OR path NOT IN (SELECT path FROM snapshot_items
                                               WHERE snapshot_id = ?2 AND path IS NOT NULL))
             ORDER BY path",
            params![snapshot, except],
            |r| {
                let size: Option<i64> = r.get(2)?;
                Ok(ItemFile {
                    path: r.get(0)?,
                    blob: r.get(1)?,
                    size: size.unwrap_or(0).max(0) as u64,
                    key: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                })
            },
            f,
        )
    }

    /// The key `(content_id, product, version, item)` of every item of `snapshot`.
    pub(crate) fn item_keys(&self, snapshot: SnapshotId) -> Result<Vec<[String; 4]>> {
        self.rows(
            "SELECT content_id, product, version, item FROM snapshot_items WHERE snapshot_id = ?1",
            [snapshot],
            |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
        )
    }
}

/// An item with a path, as a tree holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFile {
    pub(crate) path: String,
    /// `None`: the item was never downloaded (a damaged snapshot). A column that is not a
    /// blob address is an error when the row is read.
    pub(crate) blob: Option<crate::store::BlobHash>,
    pub(crate) size: u64,
    /// `(content_id, product, version, item)`.
    pub(crate) key: [String; 4],
}

/// BLAKE3 over what a snapshot holds: documents (path → blob) and items (key → path, blob).
/// Equal digests mean "unchanged".
pub fn snapshot_digest(documents: &[StoredDocument], items: &[Item]) -> String {
    let mut keys: Vec<&Item> = items.iter().collect();
    keys.sort_by(|a, b| a.key().cmp(&b.key()));
    digest_sorted(
        documents,
        keys.into_iter().map(|it| {
            [
                it.content_id.as_str(),
                it.product.as_str(),
                it.version.as_str(),
                it.item.as_str(),
                it.path.as_deref().unwrap_or(""),
                it.blob.as_ref().map_or("", BlobHash::as_str),
            ]
        }),
    )
}

/// [`snapshot_digest`] of items already sorted by key, each given as `[content_id, product,
/// version, item, path, blob]`.
pub(crate) fn digest_sorted<'a>(
    documents: &[StoredDocument],
    items: impl Iterator<Item = [&'a str; 6]>,
) -> String {
    let mut h = blake3::Hasher::new();
    for d in documents {
        for part in [d.path.as_str(), d.blob.as_str()] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        h.update(b"\n");
    }
    for parts in items {
        for part in parts {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

const SNAPSHOT_COLUMNS: &str = "SELECT id, source_name, created_at, url, start_path, filters,
    max_versions, keep, signed, verified, signer, products, versions, items, bytes,
    fetched_bytes, duration_ms, digest FROM snapshots";

const ITEM_COLUMNS: &str = "SELECT content_id, product, version, item, path, size, md5, sha256,
    sha512, blob FROM snapshot_items";

fn snapshot_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Snapshot> {
    let filters: String = r.get(5)?;
    let filters = parse_list_strict(&filters, 5)?;
    Ok(Snapshot {
        id: r.get(0)?,
        source: r.get(1)?,
        created_at: r.get(2)?,
        // Catalogues written before credentials moved out may hold user info here.
        url: strip_credentials(&r.get::<_, String>(3)?),
        start_path: r.get(4)?,
        filters,
        max: r.get(6)?,
        keep: r.get(7)?,
        signed: r.get(8)?,
        verified: r.get(9)?,
        signer: r.get(10)?,
        products: r.get(11)?,
        versions: r.get(12)?,
        items: r.get(13)?,
        bytes: r.get(14)?,
        fetched_bytes: r.get(15)?,
        duration_ms: r.get(16)?,
        digest: r.get(17)?,
    })
}

fn item_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let size: Option<i64> = r.get(5)?;
    Ok(Item {
        content_id: r.get(0)?,
        product: r.get(1)?,
        version: r.get(2)?,
        item: r.get(3)?,
        path: r.get(4)?,
        size: size.and_then(|s| u64::try_from(s).ok()),
        checksums: Checksums {
            md5: r.get(6)?,
            sha256: r.get(7)?,
            sha512: r.get(8)?,
        },
        blob: r.get(9)?,
    })
}

//! Catalogue queries of the maintenance commands, `verify` and `gc` (gc's plan, which lives in
//! temporary tables of one connection, keeps its SQL beside it in `gc/plan.rs`): the blob rows
//! to re-hash, the files each tree must hold, where a blob came from (for a re-fetch), the
//! dests publications name, and the few row changes a repair makes.
//!
//! Blob columns of items and documents are returned as text, not [`BlobHash`]: `verify` exists
//! to report a damaged catalogue, so it must read one; the blob rows it re-hashes are checked
//! against their name there.

use rusqlite::params;

use super::Catalog;
use super::ids::{SnapshotId, TreeId};
use crate::checksum::Checksums;
use crate::error::Result;
use crate::store::BlobHash;

/// One row of `blobs`, as `verify` re-checks it (`blake3` unchecked: a damaged one is a finding).
#[derive(Debug, Clone)]
pub struct BlobRecord {
    pub blake3: String,
    pub size: i64,
    pub sums: Checksums,
}

/// One row of `trees`.
#[derive(Debug, Clone)]
pub struct TreeRecord {
    pub id: TreeId,
    pub name: String,
    pub snapshot: SnapshotId,
    pub mode: String,
}

/// A place a blob was fetched from: the snapshot's base URL and the item's or document's path,
/// and the source whose mirrors may also serve it.
#[derive(Debug, Clone)]
pub struct BlobPlace {
    pub url: String,
    pub path: String,
    pub source: String,
}

/// `(path, blob)` of a file a tree holds.
pub type TreeFile = (String, String);

impl Catalog {
    /// Every blob row, streamed to `f` until it returns `false`.
    pub fn each_blob_record(&self, mut f: impl FnMut(BlobRecord) -> bool) -> Result<()> {
        let e = |err| self.err(err);
        let mut st = self
            .conn
            .prepare("SELECT blake3, size, md5, sha256, sha512 FROM blobs")
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let rec = BlobRecord {
                blake3: r.get(0).map_err(e)?,
                size: r.get(1).map_err(e)?,
                sums: Checksums {
                    md5: r.get(2).map_err(e)?,
                    sha256: r.get(3).map_err(e)?,
                    sha512: r.get(4).map_err(e)?,
                },
            };
            if !f(rec) {
                break;
            }
        }
        Ok(())
    }

    /// The size and upstream checksums recorded for a blob.
    pub fn blob_record(&self, hash: &BlobHash) -> Result<BlobRecord> {
        self.sql(|c| {
            c.query_row(
                "SELECT blake3, size, md5, sha256, sha512 FROM blobs WHERE blake3 = ?1",
                [hash],
                |r| {
                    Ok(BlobRecord {
                        blake3: r.get(0)?,
                        size: r.get(1)?,
                        sums: Checksums {
                            md5: r.get(2)?,
                            sha256: r.get(3)?,
                            sha512: r.get(4)?,
                        },
                    })
                },
            )
        })
    }

    /// Every tree row, by name.
    pub fn tree_records(&self) -> Result<Vec<TreeRecord>> {
        let e = |err| self.err(err);
        let mut st = self
            .conn
            .prepare("SELECT id, name, snapshot_id, mode FROM trees ORDER BY name")
            .map_err(e)?;
        st.query_map([], |r| {
            Ok(TreeRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                snapshot: r.get(2)?,
                mode: r.get(3)?,
            })
        })
        .map_err(e)?
        .collect::<rusqlite::Result<_>>()
        .map_err(e)
    }

    fn tree_files(&self, sql: &str, param: impl rusqlite::ToSql) -> Result<Vec<TreeFile>> {
        let e = |err| self.err(err);
        let mut st = self.conn.prepare(sql).map_err(e)?;
        st.query_map([param], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(e)?
            .collect::<rusqlite::Result<_>>()
            .map_err(e)
    }

    /// The item files of a snapshot: `(path, blob)` of each item that has both.
    pub fn snapshot_item_files(&self, snapshot: SnapshotId) -> Result<Vec<TreeFile>> {
        self.tree_files(
            "SELECT DISTINCT path, blob FROM snapshot_items
             WHERE snapshot_id = ?1 AND path IS NOT NULL AND blob IS NOT NULL",
            snapshot,
        )
    }

    /// The metadata documents recorded for a tree when it was built (`tree_documents`).
    pub fn tree_document_files(&self, tree_id: TreeId) -> Result<Vec<TreeFile>> {
        self.tree_files(
            "SELECT path, blake3 FROM tree_documents WHERE tree_id = ?1",
            tree_id,
        )
    }

    /// The metadata documents of a snapshot as fetched (`snapshot_documents`).
    pub fn snapshot_document_files(&self, snapshot: SnapshotId) -> Result<Vec<TreeFile>> {
        self.tree_files(
            "SELECT path, blob FROM snapshot_documents WHERE snapshot_id = ?1",
            snapshot,
        )
    }

    /// The grace items of a tree (`tree_grace`): `(path, blob, complete)`.
    pub fn tree_grace_files(&self, tree_id: TreeId) -> Result<Vec<(String, String, bool)>> {
        let e = |err| self.err(err);
        let mut st = self
            .conn
            .prepare(
                "SELECT i.path, i.blob, g.complete FROM tree_grace g
                 JOIN snapshot_items i ON i.snapshot_id = g.snapshot_id
                 WHERE g.tree_id = ?1 AND i.path IS NOT NULL AND i.blob IS NOT NULL",
            )
            .map_err(e)?;
        st.query_map([tree_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0))
        })
        .map_err(e)?
        .collect::<rusqlite::Result<_>>()
        .map_err(e)
    }

    /// Grace links of tree `tree` that a gc journalled for removal (`gc_pending_unlink`).
    pub fn pending_unlinks(&self, tree: &str) -> Result<Vec<String>> {
        let e = |err| self.err(err);
        let mut st = self
            .conn
            .prepare("SELECT path FROM gc_pending_unlink WHERE tree = ?1")
            .map_err(e)?;
        st.query_map([tree], |r| r.get(0))
            .map_err(e)?
            .collect::<rusqlite::Result<_>>()
            .map_err(e)
    }

    /// Is `path` a recorded metadata document of tree `tree`?
    pub fn is_tree_document(&self, tree: &str, path: &str) -> Result<bool> {
        self.sql(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM tree_documents d JOIN trees t ON t.id = d.tree_id
                                WHERE t.name = ?1 AND d.path = ?2)",
                params![tree, path],
                |r| r.get(0),
            )
        })
    }

    /// Delete the row of a blob nothing refers to (its file is already gone).
    pub fn delete_blob_row(&self, hash: &BlobHash) -> Result<()> {
        self.exec("DELETE FROM blobs WHERE blake3 = ?1", [hash])
            .map(|_| ())
    }

    /// Does any snapshot item or document name this blob?
    pub fn blob_referenced(&self, hash: &BlobHash) -> Result<bool> {
        self.sql(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM snapshot_items WHERE blob = ?1)
                     OR EXISTS (SELECT 1 FROM snapshot_documents WHERE blob = ?1)",
                [hash],
                |r| r.get(0),
            )
        })
    }

    /// Where a blob was fetched from: each snapshot's URL with the path of an item or document
    /// that names it, newest snapshot first, at most `limit`.
    pub fn blob_places(&self, hash: &BlobHash, limit: u32) -> Result<Vec<BlobPlace>> {
        let e = |err| self.err(err);
        let mut st = self
            .conn
            .prepare(
                "SELECT url, path, source_name FROM (
                     SELECT s.id, s.url, i.path, s.source_name FROM snapshot_items i
                     JOIN snapshots s ON s.id = i.snapshot_id WHERE i.blob = ?1 AND i.path IS NOT NULL
                     UNION
                     SELECT s.id, s.url, d.path, s.source_name FROM snapshot_documents d
                     JOIN snapshots s ON s.id = d.snapshot_id WHERE d.blob = ?1)
                 GROUP BY url, path ORDER BY max(id) DESC LIMIT ?2",
            )
            .map_err(e)?;
        st.query_map(params![hash, limit], |r| {
            Ok(BlobPlace {
                url: r.get(0)?,
                path: r.get(1)?,
                source: r.get(2)?,
            })
        })
        .map_err(e)?
        .collect::<rusqlite::Result<_>>()
        .map_err(e)
    }

    /// The fallback mirrors of source `name` as recorded (without credentials); none when the
    /// source has been removed. A read error or a damaged `mirrors` column is an error, never
    /// "no mirrors".
    pub fn source_mirrors(&self, name: &str) -> Result<Vec<String>> {
        let raw: Option<String> =
            self.row("SELECT mirrors FROM sources WHERE name = ?1", [name], |r| {
                r.get(0)
            })?;
        match raw {
            None => Ok(Vec::new()),
            Some(m) => serde_json::from_str(&m).map_err(|e| {
                self.err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                ))
            }),
        }
    }

    /// Every dest a publication row names.
    pub fn publication_dests(&self) -> Result<Vec<String>> {
        let e = |err| self.err(err);
        let mut st = self
            .conn
            .prepare("SELECT DISTINCT dest FROM publications ORDER BY dest")
            .map_err(e)?;
        st.query_map([], |r| r.get(0))
            .map_err(e)?
            .collect::<rusqlite::Result<_>>()
            .map_err(e)
    }
}

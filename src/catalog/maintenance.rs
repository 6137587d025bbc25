//! Catalogue queries of the maintenance commands, `verify` and `gc` (gc's plan, which lives in
//! temporary tables of one connection, keeps its SQL beside it in `gc/plan.rs`): the blob rows
//! to re-hash, the files each tree must hold, where a blob came from (for a re-fetch), the
//! dests publications name, and the few row changes a repair makes.
//!
//! The files a tree must hold go into temporary tables on disk ([`Catalog::expect_tree_files`])
//! that verify's walk of the tree looks each entry up in: memory stays flat whatever the tree's
//! size (a set in memory took ~360 bytes a file, 132.7 MiB for a tree of 333k files).
//!
//! Blob columns of items and documents are returned as text, not [`BlobHash`]: `verify` exists
//! to report a damaged catalogue, so it must read one; the blob rows it re-hashes are checked
//! against their name there.

use rusqlite::params;

use super::ids::{SnapshotId, TreeId};
use super::{Catalog, MetadataMode};
use crate::checksum::Checksums;
use crate::error::Result;
use crate::store::BlobHash;

/// One row of `blobs`, as `verify` re-checks it (`blake3` unchecked: a damaged one is a finding).
#[derive(Debug, Clone)]
pub(crate) struct BlobRecord {
    pub(crate) blake3: String,
    pub(crate) size: i64,
    pub(crate) sums: Checksums,
}

/// One row of `trees`.
#[derive(Debug, Clone)]
pub(crate) struct TreeRecord {
    pub(crate) id: TreeId,
    pub(crate) name: String,
    pub(crate) snapshot: SnapshotId,
    pub(crate) mode: MetadataMode,
}

/// A place a blob was fetched from: the snapshot's base URL and the item's or document's path,
/// and the source whose mirrors may also serve it.
#[derive(Debug, Clone)]
pub(crate) struct BlobPlace {
    pub(crate) url: String,
    pub(crate) path: String,
    pub(crate) source: String,
}

/// One path a tree may hold ([`Catalog::each_expected_file`]).
#[derive(Debug, Clone)]
pub(crate) struct ExpectedFile {
    pub(crate) path: String,
    /// The blobs whose content is right at this path, in the order they were added (several
    /// only for grace items listed differently by two snapshots).
    pub(crate) blobs: Vec<String>,
    /// Missing is a problem (not for grace items whose adding never completed).
    pub(crate) required: bool,
}

/// verify's scratch tables for the tree being checked: every path it may hold with the blobs
/// whose content is right there, and the grace links gc journalled for removal. On disk
/// (`temp_store = FILE`, a 4 MiB cache), so memory stays flat whatever the tree's size.
const EXPECTED_SCRATCH: &str = "
    PRAGMA temp_store = FILE;
    PRAGMA temp.cache_size = -4096;
    DROP TABLE IF EXISTS temp.verify_expected;
    DROP TABLE IF EXISTS temp.verify_pending;
    CREATE TEMP TABLE verify_expected (path TEXT NOT NULL, blob TEXT NOT NULL,
                                       seq INTEGER NOT NULL, required INTEGER NOT NULL,
                                       own INTEGER NOT NULL, PRIMARY KEY (path, blob))
                                       WITHOUT ROWID;
    CREATE TEMP TABLE verify_pending (path TEXT PRIMARY KEY) WITHOUT ROWID;
";

/// An item or document of the tree's own (its snapshot's, or its recorded documents).
const EXPECT_OWN: &str = "
    INSERT INTO temp.verify_expected (path, blob, seq, required, own) VALUES (?1, ?2, ?3, 1, 1)
    ON CONFLICT (path, blob) DO UPDATE SET required = 1, own = 1";

/// A grace item: never in place of a file of the tree's own.
const EXPECT_GRACE: &str = "
    INSERT INTO temp.verify_expected (path, blob, seq, required, own)
    SELECT ?1, ?2, ?3, ?4, 0
    WHERE NOT EXISTS (SELECT 1 FROM temp.verify_expected WHERE path = ?1 AND own = 1)
    ON CONFLICT (path, blob) DO UPDATE SET required = max(required, excluded.required)";

impl Catalog {
    /// Every blob row, streamed to `f` until it returns `false`.
    pub(crate) fn each_blob_record(&self, mut f: impl FnMut(BlobRecord) -> bool) -> Result<()> {
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
    pub(crate) fn blob_record(&self, hash: &BlobHash) -> Result<BlobRecord> {
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
    pub(crate) fn tree_records(&self) -> Result<Vec<TreeRecord>> {
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

    /// Fill verify's scratch tables with the files of tree `id` (named `name`, of `snapshot`,
    /// built in `mode`): its snapshot's items, its documents (recorded at build; for older
    /// verbatim trees the snapshot's), its grace items (what `tree_grace` says it bridges; a
    /// path its own items or documents take is never a grace item), and the grace links gc
    /// journalled for removal (`gc_pending_unlink`). Paths `valid` refuses are left out.
    /// Returns whether the tree's documents are unknown (a filtered tree built before they
    /// were recorded). Each query is streamed in path order into an on-disk table.
    pub(crate) fn expect_tree_files(
        &self,
        id: TreeId,
        name: &str,
        snapshot: SnapshotId,
        mode: MetadataMode,
        valid: impl Fn(&str) -> bool,
    ) -> Result<bool> {
        let e = |err| self.err(err);
        self.conn.execute_batch(EXPECTED_SCRATCH).map_err(e)?;
        let mut seq = 0i64;
        let mut own = self.conn.prepare(EXPECT_OWN).map_err(e)?;
        let mut add_own = |sql: &str, param: i64| -> Result<u64> {
            let mut st = self.conn.prepare(sql).map_err(e)?;
            let mut rows = st.query([param]).map_err(e)?;
            let mut n = 0;
            while let Some(r) = rows.next().map_err(e)? {
                n += 1;
                let path: String = r.get(0).map_err(e)?;
                if !valid(&path) {
                    continue; // never stored by sync; nothing to look at safely
                }
                let blob: String = r.get(1).map_err(e)?;
                seq += 1;
                own.execute(params![path, blob, seq]).map_err(e)?;
            }
            Ok(n)
        };
        add_own(
            "SELECT DISTINCT path, blob FROM snapshot_items
             WHERE snapshot_id = ?1 AND path IS NOT NULL AND blob IS NOT NULL
             ORDER BY path, blob",
            snapshot.0,
        )?;
        let mut documents_unknown = false;
        let recorded = add_own(
            "SELECT path, blake3 FROM tree_documents WHERE tree_id = ?1 ORDER BY path",
            id.0,
        )?;
        if recorded == 0 {
            if mode == MetadataMode::Verbatim {
                add_own(
                    "SELECT path, blob FROM snapshot_documents WHERE snapshot_id = ?1
                     ORDER BY path",
                    snapshot.0,
                )?;
            } else {
                documents_unknown = true;
            }
        }
        let mut grace = self.conn.prepare(EXPECT_GRACE).map_err(e)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT i.path, i.blob, g.complete FROM tree_grace g
                 JOIN snapshot_items i ON i.snapshot_id = g.snapshot_id
                 WHERE g.tree_id = ?1 AND i.path IS NOT NULL AND i.blob IS NOT NULL
                 ORDER BY i.path, g.snapshot_id",
            )
            .map_err(e)?;
        let mut rows = st.query([id]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let path: String = r.get(0).map_err(e)?;
            if !valid(&path) {
                continue;
            }
            let blob: String = r.get(1).map_err(e)?;
            let complete = r.get::<_, i64>(2).map_err(e)? != 0;
            seq += 1;
            grace
                .execute(params![path, blob, seq, complete])
                .map_err(e)?;
        }
        let mut pending = self
            .conn
            .prepare("INSERT OR IGNORE INTO temp.verify_pending (path) VALUES (?1)")
            .map_err(e)?;
        let mut st = self
            .conn
            .prepare("SELECT path FROM gc_pending_unlink WHERE tree = ?1 ORDER BY path")
            .map_err(e)?;
        let mut rows = st.query([name]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let path: String = r.get(0).map_err(e)?;
            if valid(&path) {
                pending.execute([path]).map_err(e)?;
            }
        }
        Ok(documents_unknown)
    }

    /// Does the tree being checked list `path` as a file ([`Self::expect_tree_files`])?
    pub(crate) fn expects_file(&self, path: &str) -> Result<bool> {
        self.expects(
            "SELECT EXISTS (SELECT 1 FROM temp.verify_expected WHERE path = ?1)",
            path,
        )
    }

    /// Is `path` a grace link gc journalled for removal from the tree being checked?
    pub(crate) fn expects_pending(&self, path: &str) -> Result<bool> {
        self.expects(
            "SELECT EXISTS (SELECT 1 FROM temp.verify_pending WHERE path = ?1)",
            path,
        )
    }

    /// Does anything the tree being checked lists (or gc journalled) lie under directory
    /// `dir`? A range of the path index: `dir/` up to `dir0` (`'0'` follows `'/'`).
    pub(crate) fn expects_dir(&self, dir: &str) -> Result<bool> {
        self.expects(
            "SELECT EXISTS (SELECT 1 FROM temp.verify_expected
                            WHERE path >= ?1 || '/' AND path < ?1 || '0')
                 OR EXISTS (SELECT 1 FROM temp.verify_pending
                            WHERE path >= ?1 || '/' AND path < ?1 || '0')",
            dir,
        )
    }

    fn expects(&self, sql: &str, path: &str) -> Result<bool> {
        self.sql(|c| c.prepare_cached(sql)?.query_row([path], |r| r.get(0)))
    }

    /// Every file the tree being checked lists, in path order, streamed to `f` until it
    /// returns `false`.
    pub(crate) fn each_expected_file(&self, mut f: impl FnMut(ExpectedFile) -> bool) -> Result<()> {
        let e = |err| self.err(err);
        let mut st = self
            .conn
            .prepare("SELECT path, blob, required FROM temp.verify_expected ORDER BY path, seq")
            .map_err(e)?;
        let mut rows = st.query([]).map_err(e)?;
        let mut cur: Option<ExpectedFile> = None;
        while let Some(r) = rows.next().map_err(e)? {
            let path: String = r.get(0).map_err(e)?;
            let blob: String = r.get(1).map_err(e)?;
            let required = r.get::<_, i64>(2).map_err(e)? != 0;
            match &mut cur {
                Some(x) if x.path == path => {
                    x.blobs.push(blob);
                    x.required |= required;
                }
                _ => {
                    if let Some(done) = cur.take()
                        && !f(done)
                    {
                        return Ok(());
                    }
                    cur = Some(ExpectedFile {
                        path,
                        blobs: vec![blob],
                        required,
                    });
                }
            }
        }
        if let Some(done) = cur {
            f(done);
        }
        Ok(())
    }

    /// Drop verify's scratch tables.
    pub(crate) fn expect_done(&self) -> Result<()> {
        self.sql(|c| {
            c.execute_batch(
                "DROP TABLE IF EXISTS temp.verify_expected;
                 DROP TABLE IF EXISTS temp.verify_pending;",
            )
        })
    }

    /// Is `path` a recorded metadata document of tree `tree`?
    pub(crate) fn is_tree_document(&self, tree: &str, path: &str) -> Result<bool> {
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
    pub(crate) fn blob_referenced(&self, hash: &BlobHash) -> Result<bool> {
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
    pub(crate) fn blob_places(&self, hash: &BlobHash, limit: u32) -> Result<Vec<BlobPlace>> {
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
    pub(crate) fn source_mirrors(&self, name: &str) -> Result<Vec<String>> {
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
    pub(crate) fn publication_dests(&self) -> Result<Vec<String>> {
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

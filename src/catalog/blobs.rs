//! Blobs (the `blobs` table): one row per stored file, by BLAKE3, with the upstream checksums
//! it was matched by.
//!
//! Protects invariant 1 through its callers: a row is inserted only after its file is durable.

use rusqlite::{OptionalExtension, params};

use super::{Catalog, db, now};
use crate::checksum::{Checksums, Digests};
use crate::error::Result;

impl Catalog {
    /// A stored blob whose upstream checksum (strongest given) and size match, if any.
    pub fn find_blob(&self, sums: &Checksums, size: u64) -> Result<Option<String>> {
        let (sql, val) = if let Some(v) = &sums.sha512 {
            (
                "SELECT blake3 FROM blobs WHERE sha512 = ?1 AND size = ?2",
                v,
            )
        } else if let Some(v) = &sums.sha256 {
            (
                "SELECT blake3 FROM blobs WHERE sha256 = ?1 AND size = ?2",
                v,
            )
        } else if let Some(v) = &sums.md5 {
            ("SELECT blake3 FROM blobs WHERE md5 = ?1 AND size = ?2", v)
        } else {
            return Ok(None);
        };
        self.conn
            .query_row(sql, params![val.to_ascii_lowercase(), size as i64], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Record a blob whose file is already durable (invariant 1); fills in checksums that an
    /// earlier row lacked.
    pub fn insert_blob(&self, d: &Digests) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO blobs (blake3, size, md5, sha256, sha512, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(blake3) DO UPDATE SET
                   md5 = coalesce(blobs.md5, excluded.md5),
                   sha256 = coalesce(blobs.sha256, excluded.sha256),
                   sha512 = coalesce(blobs.sha512, excluded.sha512)",
                params![
                    d.blake3,
                    d.size as i64,
                    d.upstream.md5,
                    d.upstream.sha256,
                    d.upstream.sha512,
                    now()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// [`Self::insert_blob`] for a batch, in one transaction (one WAL fsync).
    pub fn insert_blobs(&mut self, batch: &[Digests]) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| db(&path, e))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO blobs (blake3, size, md5, sha256, sha512, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(blake3) DO UPDATE SET
                       md5 = coalesce(blobs.md5, excluded.md5),
                       sha256 = coalesce(blobs.sha256, excluded.sha256),
                       sha512 = coalesce(blobs.sha512, excluded.sha512)",
                )
                .map_err(|e| db(&path, e))?;
            let t = now();
            for d in batch {
                st.execute(params![
                    d.blake3,
                    d.size as i64,
                    d.upstream.md5,
                    d.upstream.sha256,
                    d.upstream.sha512,
                    t
                ])
                .map_err(|e| db(&path, e))?;
            }
        }
        tx.commit().map_err(|e| db(&path, e))
    }

    pub fn has_blob(&self, blake3: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM blobs WHERE blake3 = ?1",
                [blake3],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| self.err(e))
    }

    /// Store totals: (blob count, sum of blob sizes).
    pub fn blob_totals(&self) -> Result<(u64, u64)> {
        let (n, b) = self.sql(|c| {
            c.query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM blobs",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
        })?;
        Ok((n.max(0) as u64, b.max(0) as u64))
    }
}

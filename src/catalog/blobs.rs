//! Blobs (the `blobs` table): one row per stored file, by BLAKE3, with the upstream checksums
//! it was matched by.
//!
//! Protects invariant 1 through its callers: a row is inserted only after its file is durable.

use rusqlite::params;

use super::{Catalog, now};
use crate::checksum::{Checksums, Digests};
use crate::error::Result;

impl Catalog {
    /// A stored blob whose upstream checksum (strongest given) and size match, if any.
    pub(crate) fn find_blob(
        &self,
        sums: &Checksums,
        size: u64,
    ) -> Result<Option<crate::store::BlobHash>> {
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
        self.row(sql, params![val.to_ascii_lowercase(), size as i64], |r| {
            r.get(0)
        })
    }

    /// Record a blob whose file is already durable (invariant 1); fills in checksums that an
    /// earlier row lacked.
    pub(crate) fn insert_blob(&self, d: &Digests) -> Result<()> {
        self.exec(INSERT_BLOB, blob_params(d, now()))?;
        Ok(())
    }

    /// [`Self::insert_blob`] for a batch, in one transaction (one WAL fsync).
    pub fn insert_blobs(&self, batch: &[Digests]) -> Result<()> {
        let t = now();
        self.write(|tx| {
            let mut st = tx.prepare_cached(INSERT_BLOB)?;
            for d in batch {
                st.execute(blob_params(d, t))?;
            }
            Ok(())
        })
    }

    /// [`Self::insert_blobs`] committed without the WAL's fsync ([`Catalog::unsynced`]): for a
    /// sync's download batches, written after their syncfs (invariant 1 holds as with
    /// [`Self::insert_blobs`]), whose snapshot commit syncs them; a power cut before it can only
    /// lose rows, leaving files that gc removes or a later run records again. On a small sync,
    /// one fsync of the loop's thread saved per batch (~17 of them for 2,000 files).
    pub(crate) fn insert_blobs_unsynced(&self, batch: &[Digests]) -> Result<()> {
        self.unsynced(|c| c.insert_blobs(batch))
    }

    /// The names of the blob rows under one `blobs/` prefix directory (`ab` for `blobs/ab/`, two
    /// lowercase hex digits), in name order: one range read of the table's key, so that gc's
    /// orphan walk checks a directory against it instead of looking each file up.
    pub(crate) fn blob_names_under(&self, prefix: &str) -> Result<Vec<String>> {
        // every lowercase hex name that starts with `prefix` sorts below `prefix` + "g"
        let end = format!("{prefix}g");
        let mut names = Vec::new();
        self.each(
            "SELECT blake3 FROM blobs WHERE blake3 >= ?1 AND blake3 < ?2 ORDER BY blake3",
            [prefix, end.as_str()],
            |r| r.get::<_, String>(0),
            |name| {
                names.push(name);
                Ok(())
            },
        )?;
        Ok(names)
    }

    pub(crate) fn has_blob(&self, blake3: &str) -> Result<bool> {
        Ok(self
            .row(
                "SELECT 1 FROM blobs WHERE blake3 = ?1",
                [blake3],
                |_| Ok(()),
            )?
            .is_some())
    }

    /// Store totals: (blob count, sum of blob sizes).
    pub(crate) fn blob_totals(&self) -> Result<(u64, u64)> {
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

/// A blob row; an existing one keeps its checksums and gains those it lacked.
const INSERT_BLOB: &str = "INSERT INTO blobs (blake3, size, md5, sha256, sha512, created_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT(blake3) DO UPDATE SET
      md5 = coalesce(blobs.md5, excluded.md5),
      sha256 = coalesce(blobs.sha256, excluded.sha256),
      sha512 = coalesce(blobs.sha512, excluded.sha512)";

fn blob_params(d: &Digests, created_at: i64) -> impl rusqlite::Params + '_ {
    (
        d.blake3.as_str(),
        d.size as i64,
        d.upstream.md5.as_deref(),
        d.upstream.sha256.as_deref(),
        d.upstream.sha512.as_deref(),
        created_at,
    )
}

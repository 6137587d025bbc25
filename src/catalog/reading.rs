//! One read transaction around many small queries (issue 13 item 5).
//!
//! Outside a transaction SQLite takes and releases its file lock (two `fcntl` calls and a
//! `stat`) around every statement: the plan of a million-item dry run made two million
//! `fcntl` calls, most of its time. [`Catalog::reading`] runs a batch of queries in one
//! deferred transaction: one lock, one consistent view, nothing written.

use super::Catalog;
use crate::error::Result;

impl Catalog {
    /// Run `f` inside one read transaction (or inside the transaction already open); the
    /// transaction ends when `f` returns, committed or rolled back (it writes nothing).
    pub(crate) fn reading<T>(&self, f: impl FnOnce(&Catalog) -> Result<T>) -> Result<T> {
        if !self.conn().is_autocommit() {
            return f(self);
        }
        self.sql(|c| c.execute_batch("BEGIN DEFERRED"))?;
        let result = f(self);
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = self.sql(|c| c.execute_batch(end));
        let value = result?;
        ended?;
        Ok(value)
    }

    /// Whether the catalogue records any blob (a plan against an empty store needs no lookup).
    pub(crate) fn has_blobs(&self) -> Result<bool> {
        Ok(self
            .row("SELECT 1 FROM blobs LIMIT 1", [], |r| r.get::<_, i64>(0))?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::MultiHasher;

    #[test]
    fn reading_holds_one_transaction_and_has_blobs_sees_rows() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        assert!(!c.has_blobs().unwrap());
        // Inside `reading` the queries share one transaction (no lock per statement).
        let inside = c.reading(|c| Ok(c.conn().is_autocommit())).unwrap();
        assert!(!inside);
        assert!(c.conn().is_autocommit());
        // A failing closure ends the transaction too.
        let err = c.reading(|c| -> Result<()> {
            c.has_blobs()?;
            Err(crate::error::Error::KeepWithoutMax)
        });
        assert!(err.is_err());
        assert!(c.conn().is_autocommit());
        let mut h = MultiHasher::all();
        h.update(b"blob");
        c.insert_blob(&h.finish()).unwrap();
        assert!(c.reading(|c| c.has_blobs()).unwrap());
    }
}

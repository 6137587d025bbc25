//! SQL of the `document_validators` table (schema 0006): the HTTP validators and the blob of
//! each metadata document URL, for conditional requests (see [`crate::fetch::DocumentCache`]).
//! The `blob` column is read as a [`BlobHash`]: a damaged value is an error, never a path.

use std::collections::HashMap;

use rusqlite::params;

use super::Catalog;
use crate::error::Result;
use crate::store::BlobHash;

/// One stored row: the validators of a document URL (as `fetch::Validators` holds them; the
/// catalogue keeps its own copy of the two fields so it does not depend on the fetcher) and the
/// blob holding its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredValidators {
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    pub(crate) blob: BlobHash,
}

impl Catalog {
    /// Every stored row, by URL (a few per source).
    pub(crate) fn document_validators(&self) -> Result<HashMap<String, StoredValidators>> {
        let rows = self.rows(
            "SELECT url, etag, last_modified, blob FROM document_validators",
            [],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    StoredValidators {
                        etag: r.get(1)?,
                        last_modified: r.get(2)?,
                        blob: r.get(3)?,
                    },
                ))
            },
        )?;
        Ok(rows.into_iter().collect())
    }

    /// Record (or replace) the validators of document URLs, in one transaction.
    pub(crate) fn save_document_validators(
        &self,
        rows: &[(String, StoredValidators)],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = super::now();
        self.write(|tx| {
            let mut st = tx.prepare(
                "INSERT OR REPLACE INTO document_validators
                 (url, etag, last_modified, blob, saved_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (url, row) in rows {
                st.execute(params![url, row.etag, row.last_modified, row.blob, now])?;
            }
            Ok(())
        })
    }
}

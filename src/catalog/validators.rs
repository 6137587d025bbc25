//! SQL of the `document_validators` table (schema 0006): the HTTP validators and the blob of
//! each metadata document URL, for conditional requests (see [`crate::fetch::DocumentCache`]).

use std::collections::HashMap;

use rusqlite::params;

use super::Catalog;
use crate::error::Result;
use crate::fetch::Validators;

/// One stored row: the validators of a document URL and the blob holding its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValidators {
    pub validators: Validators,
    pub blob: String,
}

impl Catalog {
    /// Every stored row, by URL (a few per source).
    pub fn document_validators(&self) -> Result<HashMap<String, StoredValidators>> {
        let mut st = self
            .conn()
            .prepare("SELECT url, etag, last_modified, blob FROM document_validators")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    StoredValidators {
                        validators: Validators {
                            etag: r.get(1)?,
                            last_modified: r.get(2)?,
                        },
                        blob: r.get(3)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<HashMap<_, _>>>()
            .map_err(|e| self.err(e))
    }

    /// Record (or replace) the validators of document URLs, in one transaction.
    pub fn save_document_validators(&mut self, rows: &[(String, StoredValidators)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let path = self.path().to_path_buf();
        let err = |e| super::db(&path, e);
        let tx = self.conn_mut().transaction().map_err(err)?;
        {
            let mut st = tx
                .prepare(
                    "INSERT OR REPLACE INTO document_validators
                     (url, etag, last_modified, blob, saved_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            for (url, row) in rows {
                st.execute(params![
                    url,
                    row.validators.etag,
                    row.validators.last_modified,
                    row.blob,
                    now
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

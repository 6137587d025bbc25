//! Catalogue query for a source's filter groups (`source edit NAME --set-filters …`).
//!
//! The groups live in the `filters` column of `sources` as they always did: a JSON list of
//! strings in which the token `--or` separates groups ([`crate::streams::FilterGroups`]), so a
//! row written before groups existed reads as one group and no migration is needed. Reading a
//! damaged value is an error ([`Catalog::source`]), never "no filters".

use rusqlite::params;

use super::Catalog;
use crate::error::{Error, Result};

impl Catalog {
    /// Replace the filter list of source `name` (already checked by the caller).
    pub fn set_source_filters(&self, name: &str, filters: &[String]) -> Result<()> {
        let json = serde_json::to_string(filters).unwrap_or_else(|_| "[]".to_string());
        let n = self
            .conn
            .execute(
                "UPDATE sources SET filters = ?2 WHERE name = ?1",
                params![name, json],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(Error::UnknownSource(name.to_string()));
        }
        Ok(())
    }
}

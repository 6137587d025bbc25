//! Conditional metadata requests: the documents of earlier runs, by URL, as a
//! [`DocumentCache`] for the [`Fetcher`](crate::fetch::Fetcher).
//!
//! A `304` answer reuses the stored blob, which then goes through the same signature check,
//! index-entry check and parser as a fresh body; its BLAKE3 is checked on read, so a damaged
//! blob makes the request unconditional instead of feeding wrong bytes on.

use std::collections::HashMap;

use crate::catalog::StoredValidators;
use crate::fetch::{DocumentCache, Validators};
use crate::store::BlobStore;
use crate::vault::Vault;

#[derive(Debug)]
pub(super) struct StoredDocs {
    rows: HashMap<String, StoredValidators>,
    blobs: BlobStore,
}

impl StoredDocs {
    /// The stored rows (none if the catalogue cannot say, e.g. a damaged row: the requests are
    /// then unconditional).
    pub(super) fn load(vault: &Vault) -> StoredDocs {
        StoredDocs {
            rows: vault.catalog.document_validators().unwrap_or_default(),
            blobs: vault.blobs.clone(),
        }
    }
}

impl DocumentCache for StoredDocs {
    fn validators(&self, url: &str) -> Option<Validators> {
        let row = self.rows.get(url)?;
        self.blobs.contains(row.blob.as_str()).then(|| Validators {
            etag: row.etag.clone(),
            last_modified: row.last_modified.clone(),
        })
    }

    fn body(&self, url: &str) -> Option<Vec<u8>> {
        let row = self.rows.get(url)?;
        let bytes = self.blobs.read(row.blob.as_str()).ok()?;
        (blake3::hash(&bytes).to_hex().as_str() == row.blob.as_str()).then_some(bytes)
    }
}

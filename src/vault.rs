//! `Vault`: one store root opened for work: its layout, catalogue and blob store.
//!
//! Opening for writing creates the directories and migrates the catalogue; opening for reading
//! never writes (listing commands work on a fresh root and while a sync runs: SQLite WAL).

use std::path::Path;

use crate::catalog::{Catalog, SnapshotId, StoredDocument};
use crate::error::{Error, Result};
use crate::lock::{self, LockGuard, Mode};
use crate::store::{BlobStore, Layout};

pub struct Vault {
    pub layout: Layout,
    pub catalog: Catalog,
    pub(crate) blobs: BlobStore,
}

impl Vault {
    /// A stored document of `snapshot` as JSON (unwrapped when clearsigned).
    pub(crate) fn document_json(
        &self,
        snapshot: SnapshotId,
        d: &StoredDocument,
    ) -> Result<serde_json::Value> {
        let raw = self.blobs.read(d.blob.as_str())?;
        let payload = if crate::openpgp::is_clearsigned(&raw) {
            crate::openpgp::unwrap_cleartext(&raw).map_err(|source| Error::StoredDocument {
                snapshot,
                path: d.path.clone(),
                source,
            })?
        } else {
            raw
        };
        serde_json::from_slice(&payload).map_err(|source| {
            Error::Parse(crate::streams::ParseError::NotJson {
                doc: d.path.clone(),
                source,
            })
        })
    }

    /// Open a store root for writing, creating it if needed.
    pub fn open(root: &Path) -> Result<Vault> {
        let layout = Layout::new(root);
        layout.create_dirs()?;
        crate::perms::secure_dirs(&layout)?;
        let catalog = Catalog::open(&layout.catalog())?;
        Ok(Vault {
            blobs: BlobStore::new(layout.clone()),
            catalog,
            layout,
        })
    }

    /// Open a store root for reading; `None` if there is no catalogue yet.
    pub fn open_read_only(root: &Path) -> Result<Option<Vault>> {
        let layout = Layout::new(root);
        Ok(
            Catalog::open_read_only(&layout.catalog())?.map(|catalog| Vault {
                blobs: BlobStore::new(layout.clone()),
                catalog,
                layout,
            }),
        )
    }

    pub(crate) fn root(&self) -> &Path {
        self.layout.root()
    }

    /// The store-wide lock, shared: every writer holds it; `gc` takes it exclusively.
    pub(crate) fn lock_store_shared(&self, wait: bool, what: &str) -> Result<LockGuard> {
        lock::acquire(&self.layout.store_lock(), Mode::Shared, wait, what)
    }

    /// The store-wide lock, shared, for a command that only reads: works on a read-only root
    /// (see [`lock::acquire_for_reading`]).
    pub(crate) fn lock_store_for_reading(
        &self,
        wait: bool,
        what: &str,
    ) -> Result<Option<LockGuard>> {
        lock::acquire_for_reading(&self.layout.store_lock(), wait, what)
    }

    /// The store-wide lock, exclusive (`gc`).
    pub(crate) fn lock_store_exclusive(&self, wait: bool, what: &str) -> Result<LockGuard> {
        lock::acquire(&self.layout.store_lock(), Mode::Exclusive, wait, what)
    }

    /// The lock of one source: two syncs of a source never overlap.
    pub fn lock_source(&self, name: &str, wait: bool, what: &str) -> Result<LockGuard> {
        lock::acquire(&self.layout.source_lock(name), Mode::Exclusive, wait, what)
    }
}

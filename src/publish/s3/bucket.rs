//! An S3 DEST's bucket for `gc s3://…` and `verify s3://…`: a blocking handle over the same
//! client and uploads as publish (configuration, checksums, multipart), with the few requests
//! they need (list with modification times, streamed hashing, delete, re-upload), and the
//! DEST lock publish takes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{S3Dest, connect, doc_cache, put_doc, read, req, runtime, upload};
use crate::catalog::MetadataMode;
use crate::error::Result;
use crate::lock::LockGuard;
use crate::vault::Vault;

/// One object under the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Relative to the prefix.
    pub(crate) key: String,
    pub(crate) size: u64,
    /// Unix seconds.
    pub(crate) modified: i64,
}

/// A connected bucket (blocking calls).
pub(crate) struct Bucket {
    rt: tokio::runtime::Runtime,
    s: Arc<AmazonS3>,
    dest: S3Dest,
}

/// Take the store lock shared and DEST's lock exclusively, as publish and rollback do, so no
/// publish of this store runs on DEST meanwhile.
pub(crate) fn lock(vault: &Vault, d: &S3Dest, verb: &str) -> Result<(LockGuard, LockGuard)> {
    super::super::lock_dest(vault, &PathBuf::from(d.url()), verb)
}

impl Bucket {
    pub(crate) fn open(d: &S3Dest) -> Result<Bucket> {
        Ok(Bucket {
            rt: runtime()?,
            s: connect(d)?,
            dest: d.clone(),
        })
    }

    /// Every object under the prefix, in key order.
    pub(crate) fn list(&self) -> Result<Vec<Listed>> {
        let d = &self.dest;
        let prefix = (!d.prefix.is_empty()).then(|| ObjPath::from(d.prefix.as_str()));
        let strip = if d.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", d.prefix)
        };
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut st = self.s.list(prefix.as_ref());
            while let Some(m) = st.next().await {
                let m = m.map_err(req("LIST", prefix.as_ref().unwrap_or(&ObjPath::from(""))))?;
                let full = m.location.to_string();
                if let Some(rel) = full.strip_prefix(&strip) {
                    out.push(Listed {
                        key: rel.to_string(),
                        size: m.size,
                        modified: m.last_modified.timestamp(),
                    });
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    /// An object's bytes, if it exists.
    pub(crate) fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .rt
            .block_on(read(&self.s, &self.dest.key(rel)))?
            .map(|(b, _)| b))
    }

    /// An object's size and BLAKE3 (hex), read as a stream; `None` if it does not exist.
    pub(crate) fn hash(&self, rel: &str) -> Result<Option<(u64, String)>> {
        let key = self.dest.key(rel);
        self.rt.block_on(async {
            let r = match self.s.get(&key).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(req("GET", &key)(e)),
            };
            let mut h = blake3::Hasher::new();
            let mut n = 0u64;
            let mut st = r.into_stream();
            while let Some(chunk) = st.next().await {
                let chunk = chunk.map_err(req("GET", &key))?;
                n += chunk.len() as u64;
                h.update(&chunk);
            }
            Ok(Some((n, h.finalize().to_hex().to_string())))
        })
    }

    /// Delete objects, [`super::UPLOADS`] at a time; how many were deleted.
    pub(crate) fn delete(&self, rels: &[String]) -> Result<u64> {
        self.rt.block_on(async {
            let mut st = futures_util::stream::iter(rels.iter().map(|rel| {
                let s = Arc::clone(&self.s);
                let key = self.dest.key(rel);
                async move {
                    match s.delete(&key).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(req("DELETE", &key)(e)),
                    }
                }
            }))
            .buffer_unordered(super::UPLOADS);
            let mut n = 0;
            while let Some(r) = st.next().await {
                r?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// Upload a file as an item (immutable; multipart above [`super::PART_SIZE`]).
    pub(crate) fn upload_item(&self, rel: &str, file: &Path, size: u64) -> Result<u64> {
        self.rt.block_on(upload(
            Arc::clone(&self.s),
            self.dest.key(rel),
            file.to_path_buf(),
            size,
        ))
    }

    /// Put a metadata document of a publication of `mode` (unconditional).
    pub(crate) fn put_document(&self, rel: &str, body: &[u8], mode: MetadataMode) -> Result<()> {
        let key = self.dest.key(rel);
        let cache = if crate::publish::INDEX_NAMES.contains(&rel) {
            super::NO_CACHE
        } else {
            doc_cache(mode)
        };
        self.rt.block_on(put_doc(
            &self.s,
            &self.dest,
            &key,
            bytes::Bytes::copy_from_slice(body),
            None,
            cache,
        ))
    }
}

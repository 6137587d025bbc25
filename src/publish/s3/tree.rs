//! What a tree uploads to an S3 DEST: its documents ([`Doc`]: index documents in memory,
//! products documents left in the tree) and its items (key and size, sorted by key), walked once
//! ([`tree_entries`]), and the one LIST that marks which items the bucket already has ([`scan`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjPath;

use super::{INDEX_NAMES, S3Dest, S3Document, req};
use crate::catalog::{DocBody, ListedItem, NewS3Doc};
use crate::error::{Error, IoResultExt, Result};

/// A document to upload: an index document in memory (small; filtered mode rewrites it), a
/// products document as a file of the tree, read only to hash it and while it is put.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    pub(crate) key: String,
    pub(crate) is_index: bool,
    pub(crate) body: Body,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    Mem(bytes::Bytes),
    File { path: PathBuf, size: u64 },
}

impl Doc {
    pub(super) fn len(&self) -> u64 {
        match &self.body {
            Body::Mem(b) => b.len() as u64,
            Body::File { size, .. } => *size,
        }
    }

    /// The bytes, when in memory.
    pub(crate) fn mem(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Mem(b) => Some(b),
            Body::File { .. } => None,
        }
    }

    /// The bytes (a file is read now).
    pub(super) fn bytes(&self) -> Result<bytes::Bytes> {
        match &self.body {
            Body::Mem(b) => Ok(b.clone()),
            Body::File { path, .. } => Ok(std::fs::read(path).with_path("read", path)?.into()),
        }
    }

    /// A digest of the bytes (a file is read as it streams).
    pub(crate) fn digest<D: sha2::Digest>(&self) -> Result<Vec<u8>> {
        let mut h = D::new();
        match &self.body {
            Body::Mem(b) => h.update(b),
            Body::File { path, .. } => {
                use std::io::Read;
                let mut f = std::fs::File::open(path).with_path("read", path)?;
                let mut buf = vec![0u8; 256 << 10];
                loop {
                    let n = f.read(&mut buf).with_path("read", path)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
        }
        Ok(h.finalize().to_vec())
    }

    pub(super) fn record(&self) -> NewS3Doc<'_> {
        NewS3Doc {
            key: &self.key,
            is_index: self.is_index,
            body: match &self.body {
                Body::Mem(b) => DocBody::Bytes(b),
                Body::File { path, .. } => DocBody::File(path),
            },
        }
    }
}

impl From<S3Document> for Doc {
    fn from(d: S3Document) -> Doc {
        Doc {
            key: d.key,
            is_index: d.is_index,
            body: Body::Mem(d.body.into()),
        }
    }
}

/// An item of the tree: its key (relative path), size, and the size of the object under that
/// key in the bucket, if any.
#[derive(Debug)]
pub(super) struct Item {
    pub(super) key: String,
    pub(super) size: u64,
    pub(super) remote: Option<u64>,
}

impl ListedItem for Item {
    fn key(&self) -> &str {
        &self.key
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// Walk a tree (path order): its documents (`is_doc`; index documents read, products documents
/// left in the tree) and its items, sorted by key (byte order, as S3 lists).
pub(super) fn tree_entries(
    root: &Path,
    is_doc: impl Fn(&str) -> bool,
) -> Result<(Vec<Doc>, Vec<Item>)> {
    let (mut docs, mut items) = (Vec::new(), Vec::new());
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.map_err(|e| {
            let p = e.path().unwrap_or(root).to_path_buf();
            Error::Io {
                op: "read",
                path: p,
                source: e.into(),
            }
        })?;
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap_or(e.path())
            .to_string_lossy()
            .replace('\\', "/");
        let size = e
            .metadata()
            .map_err(|err| Error::Io {
                op: "read",
                path: e.path().to_path_buf(),
                source: err.into(),
            })?
            .len();
        if !is_doc(&rel) {
            items.push(Item {
                key: rel,
                size,
                remote: None,
            });
            continue;
        }
        let is_index = INDEX_NAMES.contains(&rel.as_str());
        let path = e.path().to_path_buf();
        let body = if is_index {
            Body::Mem(std::fs::read(&path).with_path("read", &path)?.into())
        } else {
            Body::File { path, size }
        };
        docs.push(Doc {
            key: rel,
            is_index,
            body,
        });
    }
    items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok((docs, items))
}

/// List the prefix once: each item's `remote` size is set (items sorted by key), and the
/// documents' keys present are returned with (size, ETag). Nothing else of the listing is kept.
pub(super) async fn scan(
    s: &AmazonS3,
    d: &S3Dest,
    items: &mut [Item],
    docs: &[Doc],
) -> Result<HashMap<String, (u64, Option<String>)>> {
    let doc_keys: HashSet<&str> = docs.iter().map(|doc| doc.key.as_str()).collect();
    let prefix = (!d.prefix.is_empty()).then(|| ObjPath::from(d.prefix.as_str()));
    let strip = if d.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", d.prefix)
    };
    let mut found = HashMap::new();
    let mut st = s.list(prefix.as_ref());
    while let Some(m) = st.next().await {
        let m = m.map_err(req("LIST", prefix.as_ref().unwrap_or(&ObjPath::from(""))))?;
        let full = m.location.as_ref();
        let Some(rel) = full.strip_prefix(&strip) else {
            continue;
        };
        if let Ok(i) = items.binary_search_by(|it| it.key.as_str().cmp(rel)) {
            if let Some(it) = items.get_mut(i) {
                it.remote = Some(m.size);
            }
        } else if doc_keys.contains(rel) {
            found.insert(rel.to_string(), (m.size, m.e_tag));
        }
    }
    Ok(found)
}

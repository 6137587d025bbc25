//! Importing an existing mirror directory as a snapshot (`publish --adopt`, and `mirror` before
//! its sync): not a publish, a source of blobs beside [`crate::sync`]. Every regular file
//! under it is imported into the blob store by content (no download), and recorded as a snapshot
//! of the pseudo-source `adopted:<dest>`: files under `streams/` as documents, the others as items
//! (under the product/version/item keys its metadata gives them when their checksum matches, else
//! under content id `adopted`), so that `verify` can check them and a later sync of the same
//! content downloads nothing.
//!
//! Protects invariant 1 (each file goes through [`BlobStore::commit`] before its blob row) and
//! invariant 2 (the snapshot is inserted in one transaction after every blob row). Symlinks under
//! the directory are never followed; files whose names are not safe relative paths are skipped.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Instant;

use crate::catalog::{DocumentKind, Item, NewSnapshot, StoredDocument};
use crate::checksum::{Checksums, Digests, MultiHasher};
use crate::error::{Error, IoResultExt, Result};
use crate::openpgp;
use crate::store::BlobHash;
use crate::store::BlobStore;
use crate::streams::{self, check_path};
use crate::vault::Vault;

/// What an adoption imported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Adopted {
    /// The snapshot recording the imported files.
    pub snapshot: crate::catalog::SnapshotId,
    pub files: usize,
    pub bytes: u64,
    /// Files left out: symlinks, special files, names that are not safe paths.
    pub skipped: usize,
    /// Where the directory was moved (set once it is).
    pub moved_to: Option<std::path::PathBuf>,
}

/// The pseudo-source name of an adopted directory.
pub(crate) fn source_name(dest: &Path) -> String {
    format!("adopted:{}", dest.display())
}

/// Import every regular file under `dir` and record the snapshot.
pub(crate) fn import(vault: &mut Vault, dir: &Path) -> Result<Adopted> {
    let started = Instant::now();
    crate::store::refuse_in_store(&vault.layout, &crate::store::resolve_outside(dir)?)?;
    let mut files: Vec<(String, Digests)> = Vec::new();
    let mut skipped = 0;
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            Error::Io {
                op: "walk",
                path,
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("loop")),
            }
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .ok()
            .and_then(Path::to_str)
            .map(str::to_string);
        let Some(rel) = rel.filter(|r| check_path(r).is_ok()) else {
            skipped += 1;
            continue;
        };
        if !entry.file_type().is_file() {
            skipped += 1;
            continue;
        }
        let digests = import_file(vault, entry.path())?;
        files.push((rel, digests));
    }

    // Metadata first: which files its products documents list, under which keys.
    let mut documents = Vec::new();
    let mut listed: HashMap<String, Vec<(String, Listed)>> = HashMap::new();
    let mut signed = false;
    for (rel, d) in files.iter().filter(|(r, _)| r.starts_with("streams/")) {
        let raw = vault.blobs.read(&d.blake3)?;
        let (kind, content_id) = classify(rel, &raw, &mut signed, &mut listed);
        documents.push(StoredDocument {
            ord: documents.len() as i64,
            path: rel.clone(),
            kind,
            content_id,
            blob: BlobHash::parse(&d.blake3)?,
        });
    }
    let mut items = Vec::new();
    for (rel, d) in files.iter().filter(|(r, _)| !r.starts_with("streams/")) {
        let mut matched = false;
        for (cid, key) in listed.get(rel).into_iter().flatten() {
            if key.size == Some(d.size) && key.matches(&d.upstream) {
                matched = true;
                items.push(Item {
                    content_id: cid.clone(),
                    product: key.product.clone(),
                    version: key.version.clone(),
                    item: key.item.clone(),
                    path: Some(rel.clone()),
                    size: Some(d.size),
                    checksums: d.upstream.clone(),
                    blob: Some(BlobHash::parse(&d.blake3)?),
                });
            }
        }
        if !matched {
            items.push(Item {
                content_id: "adopted".into(),
                product: "files".into(),
                version: "-".into(),
                item: rel.clone(),
                path: Some(rel.clone()),
                size: Some(d.size),
                checksums: d.upstream.clone(),
                blob: Some(BlobHash::parse(&d.blake3)?),
            });
        }
    }
    items.sort_by(|a, b| a.key().cmp(&b.key()));
    items.dedup_by(|a, b| a.key() == b.key());

    let source = source_name(dir);
    let digest = crate::catalog::snapshot_digest(&documents, &items);
    let bytes = files.iter().map(|(_, d)| d.size).sum();
    if let Some(prev) = vault.catalog.latest_snapshot(&source)?
        && prev.digest == digest
    {
        return Ok(Adopted {
            snapshot: prev.id,
            files: files.len(),
            bytes,
            skipped,
            moved_to: None,
        });
    }
    let start_path = ["streams/v1/index.sjson", "streams/v1/index.json"]
        .into_iter()
        .find(|p| documents.iter().any(|d| d.path == *p))
        .unwrap_or("streams/v1/index.json")
        .to_string();
    let id = vault.catalog.insert_snapshot(&NewSnapshot {
        source_id: None,
        source,
        url: format!("file://{}/", dir.display()),
        start_path,
        filters: Vec::new(),
        max: None,
        keep: false,
        signed,
        verified: false,
        signer: None,
        fetched_bytes: 0,
        duration_ms: started.elapsed().as_millis() as u64,
        digest,
        documents,
        items,
    })?;
    Ok(Adopted {
        snapshot: id,
        files: files.len(),
        bytes,
        skipped,
        moved_to: None,
    })
}

/// Hash one file and make it a blob: hardlinked into `tmp/` when on the store's filesystem (no
/// copy), else copied while hashing; then committed and recorded (invariant 1).
fn import_file(vault: &Vault, src: &Path) -> Result<Digests> {
    let tmp_dir = vault.layout.tmp();
    let tmp = tmp_dir.join(format!(
        "adopt-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let digests = match fs::hard_link(src, &tmp) {
        Ok(()) => hash(&tmp),
        Err(_) => copy_hashing(src, &tmp),
    };
    let digests = match digests {
        Ok(d) => d,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let blobs: &BlobStore = &vault.blobs;
    if blobs.contains(&digests.blake3) {
        let _ = fs::remove_file(&tmp);
    } else {
        blobs.commit(&tmp, &digests)?;
    }
    vault.catalog.insert_blob(&digests)?;
    Ok(digests)
}

fn hash(path: &Path) -> Result<Digests> {
    crate::checksum::hash_file(path).with_path("read", path)
}

fn copy_hashing(src: &Path, tmp: &Path) -> Result<Digests> {
    let mut from = File::open(src).with_path("open", src)?;
    let mut to = File::create_new(tmp).with_path("create", tmp)?;
    let mut h = MultiHasher::all();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = from.read(&mut buf).with_path("read", src)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        h.update(chunk);
        to.write_all(chunk).with_path("write", tmp)?;
    }
    Ok(h.finish())
}

/// The kind and content id of a file under `streams/`; records the items a products document
/// lists by path.
fn classify(
    rel: &str,
    raw: &[u8],
    signed: &mut bool,
    listed: &mut HashMap<String, Vec<(String, Listed)>>,
) -> (DocumentKind, Option<String>) {
    let payload = if openpgp::is_clearsigned(raw) {
        match openpgp::unwrap_cleartext(raw) {
            Ok(p) => {
                *signed = true;
                p
            }
            Err(_) => return (DocumentKind::Other, None),
        }
    } else {
        raw.to_vec()
    };
    match streams::parse(rel, &payload) {
        Ok(streams::Document::Index(_)) => (DocumentKind::Index, None),
        Ok(streams::Document::Products(p)) => {
            let cid = p.content_id().to_string();
            for it in p.items() {
                if let Some(path) = it.path {
                    listed
                        .entry(path.to_string())
                        .or_default()
                        .push((cid.clone(), Listed::of(&it)));
                }
            }
            (DocumentKind::Products, Some(cid))
        }
        Err(_) => (DocumentKind::Other, None),
    }
}

/// An item as a products document lists it.
struct Listed {
    product: String,
    version: String,
    item: String,
    size: Option<u64>,
    checksums: Checksums,
}

impl Listed {
    fn of(it: &streams::FlatItem<'_>) -> Listed {
        Listed {
            product: it.product.to_string(),
            version: it.version.to_string(),
            item: it.item.to_string(),
            size: it.size,
            checksums: it.checksums.clone(),
        }
    }

    /// Does the file's content match the strongest checksum listed?
    fn matches(&self, have: &Checksums) -> bool {
        match self.checksums.strongest() {
            Some((algo, want)) => have.get(algo) == Some(want.to_ascii_lowercase().as_str()),
            None => false,
        }
    }
}

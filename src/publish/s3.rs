//! Publishing to S3-compatible object storage: `publish SNAPSHOT s3://BUCKET/PREFIX`, and
//! `rollback`, `status`, `publications` of such a DEST, auto-publish after a sync
//! ([`auto_publish`]), and the bucket handle `gc s3://…` (`crate::gc::s3`) and `verify s3://…`
//! (`crate::verify::s3`) use ([`Bucket`]).
//!
//! This file is the publish itself and the index switch publish and rollback share; beside it:
//! `s3/location.rs` (the DEST URL), `s3/config.rs` (the `~/.aws` profile), `s3/objects.rs` (the
//! object-store calls: client, GET, LIST, uploads, the conditional PUT), `s3/tree.rs` (a tree's
//! documents and items, and the LIST that marks what the bucket has), `s3/hashed.rs`
//! (content-hashed products names), `s3/rollback.rs`, `s3/status.rs`, `s3/bucket.rs` (the
//! handle of `gc` and `verify`), `s3/error.rs`.
//!
//! # Configuration
//! The standard AWS environment: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`),
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (default
//! `us-east-1`); path-style requests unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`. Plain http
//! only when the endpoint URL says `http://`. What the environment does not set comes from the
//! `~/.aws` profile `AWS_PROFILE` (else `default`; `config`: `region`, `endpoint_url`;
//! `credentials`: the keys), see `s3/config.rs`. Credentials are never printed. Any other
//! URL-shaped DEST (`http://…`, `ftp://…`) is refused.
//!
//! # How a publish runs
//! The tree is built (or reused) exactly as for a local DEST (`trees/<name>/`, checked
//! complete; filtered metadata signed by `--sign-key`, else the store's default key, unless
//! `--unsigned`), then uploaded in an order that keeps every reader on an old or a new stream:
//! 1. the index documents are read (their ETags are the condition of step 4) and the prefix is
//!    listed once;
//! 2. items: every object already present with the right size is skipped; the others are
//!    uploaded, [`UPLOADS`] at a time, files above [`PART_SIZE`] as multipart uploads of
//!    [`PART_SIZE`] parts; `Cache-Control: public, max-age=31536000, immutable`. Every PUT and
//!    every part carries `x-amz-checksum-sha256` computed from our bytes (the server checks
//!    it); a multipart ETag is never trusted: the completed object's size is checked with a
//!    HEAD. An item a retained publication of this DEST lists with another size is never
//!    overwritten: the publish is refused, naming it;
//! 3. the products documents (skipped when present with the same MD5 ETag). Filtered: named by
//!    content hash (`streams/v1/<stem>.<hash>.json`/`.sjson`, `s3/hashed.rs`), immutable like
//!    items, the index rewritten (and signed again) to point at them; verbatim: upstream paths,
//!    `no-cache`;
//! 4. the publication row is recorded with every document's bytes (what rollback re-puts) and
//!    every object it lists (`s3_objects`: what gc keeps and verify checks), then the index
//!    documents are written LAST (`index.json`, then `index.sjson`), each with a conditional
//!    write: `If-Match` on the ETag read in step 1, `If-None-Match: *` when there was none. A
//!    412 means another publisher won: the row is removed and the publish fails with one line.
//!    An unchanged republish (the bucket's index documents are this tree's, and the catalogue's
//!    live publication is this tree) stops after the 2 GETs of step 1: no LIST, no PUT.
//!
//! Filtered metadata: the index write is the only switch (products documents are immutable).
//! Verbatim metadata keeps upstream paths, so products documents are overwritten in place before
//! the index: a reader may briefly see an old index with new products (every item either lists
//! is present).
//!
//! Each conditional write carries a token of its own (user metadata): one that fails (412 on a
//! retry, or a dropped connection) while the index carries its token was applied, its answer
//! lost: that is success, not a lost race.
//!
//! Rollback checks (one LIST) that every item the older publication lists is still in the
//! bucket (`gc s3://…` may have collected it after the grace period: then it refuses), then
//! re-puts the documents it recorded (products, then the index, conditionally); a products
//! document already there with the same bytes (MD5 ETag and size: a content-hashed name) is not
//! written again.
//!
//! # Memory
//! Flat in the number of objects (issue 11: ≤ 64 MiB for 100k small objects). The tree is
//! walked once into one list of items (key and size, sorted by key); the LIST marks each item
//! present by binary search and keeps nothing else but the documents' entries; uploads are
//! streamed from that list, [`UPLOADS`] in flight. Products documents stay in the tree: hashed
//! (content name, MD5 ETag) as they stream, read into one `Bytes` only while put (handed to
//! object_store as is, never copied), and recorded in the catalogue 256 KiB at a time
//! (`s3_document_chunks`). The publication's listing is written to SQLite as it is read, each
//! item's blob found in SQL (no in-memory map of the snapshot's items). Index documents are
//! small and held whole.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use object_store::aws::AmazonS3;

pub(crate) use crate::catalog::{S3Document, S3Publication};

use super::{INDEX_NAMES, MetadataMode, PublishOptions, dest, failpoint, metadata};
mod bucket;
mod config;
mod error;
mod hashed;
mod location;
mod objects;
mod rollback;
mod status;
mod tree;

pub use error::S3Error;
pub use rollback::rollback;
pub use status::{publications, status};

pub(crate) use bucket::{Bucket, lock};
pub use location::{S3Dest, is_url};
use objects::{
    Current, NO_CACHE, connect, doc_cache, etag_of, list, md5_of, put_doc, read, req, runtime,
    upload,
};
use tree::{Body, Doc, Item, scan, tree_entries};

pub(crate) use crate::catalog::S3Object;
use crate::catalog::{
    Catalog, NewS3Doc, NewS3Publication, PublicationAction, S3PublicationId, SnapshotId,
};
use crate::error::{Error, Result};
use crate::openpgp::SigningKey;
use crate::vault::Vault;

/// Files above this size are uploaded in parts of this size.
pub(crate) const PART_SIZE: usize = 64 << 20;
/// Uploads in flight at once.
pub(crate) const UPLOADS: usize = 8;

/// What an S3 publish or rollback did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct S3Report {
    pub publication: S3PublicationId,
    pub action: PublicationAction,
    pub dest: String,
    pub snapshot: SnapshotId,
    pub(crate) tree: String,
    pub mode: MetadataMode,
    pub signer: Option<String>,
    pub(crate) files: i64,
    pub(crate) bytes: i64,
    /// Items uploaded / already present.
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    pub skipped: u64,
    /// Documents (products and index) written.
    pub documents_written: u64,
    /// Whether the index changed (false: it already was this publication's).
    pub changed: bool,
    pub(crate) previous: Option<S3PublicationId>,
    pub(crate) duration_ms: u64,
    /// The signing key's binary public keyring (for MAAS `keyring_filename`), when signed.
    pub keyring: Option<PathBuf>,
    /// Whether this publish generated the store's default key.
    pub key_created: bool,
    /// MAAS client rules already broken upstream, or broken by the filters with `--force`
    /// (`super::maas_rules`), as for a local DEST.
    pub warnings: Vec<String>,
}

/// The live publication of an S3 DEST and whether the bucket agrees.
#[derive(Debug, Clone, serde::Serialize)]
pub struct S3Status {
    pub dest: String,
    pub live: Option<S3Publication>,
    pub problems: Vec<String>,
}

impl S3Status {
    pub fn consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Pause before the index write (test-only, see [`failpoint`]).
fn pause_before_index() {
    let Some(p) = failpoint::value("s3-pause-before-index=") else {
        return;
    };
    let p = PathBuf::from(p);
    let _ = std::fs::write(p.with_extension("reached"), b"");
    for _ in 0..1200 {
        if p.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Publish a snapshot to an S3 DEST (see the module documentation).
pub fn publish(vault: &mut Vault, d: &S3Dest, opts: &PublishOptions) -> Result<S3Report> {
    let started = Instant::now();
    // As for a local DEST: filtered metadata is signed by `--sign-key`, else by the store's
    // default key, unless `--unsigned`.
    let signing = metadata::signing(
        vault,
        // A composition's index is always new: signed (by default) in verbatim mode too.
        opts.mode == MetadataMode::Filtered || !opts.compose.is_empty(),
        opts.sign_key.as_deref(),
        opts.unsigned,
    )?;
    let (key, keyring, key_created): (Option<SigningKey>, _, _) = match signing {
        Some(s) => (Some(s.key), Some(s.keyring), s.created),
        None => (None, None, false),
    };
    let signer = key.as_ref().map(SigningKey::fingerprint);
    let url = d.url();
    let pseudo = PathBuf::from(&url);
    let _locks = super::lock_dest(vault, &pseudo, "publish")?;
    let trees = dest::trees_dir(&vault.layout)?;
    let snap = vault.catalog.resolve_snapshot(&opts.snapshot)?;
    let staging = dest::staging_path(&vault.layout, &trees, &pseudo);
    let super::CheckedTree {
        tree,
        path: tree_path,
        warnings,
        ..
    } = super::checked_tree(
        vault,
        &trees,
        &staging,
        &snap,
        opts,
        key.as_ref(),
        signer.as_deref(),
    )?;

    // Which files are documents: the tree's recorded documents, else everything under streams/.
    // Products documents stay in the tree (read when hashed and put), items are one list of
    // (key, size): nothing else of the tree is held.
    let recorded: HashSet<String> = vault
        .catalog
        .tree_documents(tree.id)?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let is_doc = |rel: &str| {
        if recorded.is_empty() {
            rel.starts_with("streams/")
        } else {
            recorded.contains(rel)
        }
    };
    let (mut docs, mut items) = tree_entries(&tree_path, is_doc)?;
    drop(recorded);
    // index.json before index.sjson: the signed one is the last switch.
    docs.sort_by_key(|doc| (doc.is_index, doc.key.ends_with(".sjson"), doc.key.clone()));

    // Publications of this DEST whose trees still exist: what must not be overwritten.
    let retained: Vec<S3Publication> = vault
        .catalog
        .s3_publications(Some(&url))?
        .into_iter()
        .filter(|p| trees.join(&p.tree).is_dir())
        .collect();
    let previous = vault.catalog.live_s3_publication(&url)?.map(|p| p.id);

    let rt = runtime()?;
    let s = connect(d)?;
    let mut report = S3Report {
        publication: S3PublicationId(0),
        action: PublicationAction::Publish,
        dest: url.clone(),
        snapshot: snap.id,
        tree: tree.name.clone(),
        mode: tree.mode,
        signer: tree.signer.clone(),
        files: tree.files,
        bytes: tree.bytes,
        uploaded: 0,
        uploaded_bytes: 0,
        skipped: 0,
        documents_written: 0,
        changed: false,
        previous,
        duration_ms: 0,
        keyring,
        key_created,
        warnings,
    };

    // 1. The index as it is now (the condition of the last write), then one listing.
    let mut current = HashMap::new();
    for doc in docs.iter().filter(|doc| doc.is_index) {
        let v = rt.block_on(read(&s, &d.key(&doc.key)))?;
        current.insert(doc.key.clone(), v);
    }
    // Filtered: products documents named by content hash, the index pointing at them.
    if tree.mode == MetadataMode::Filtered {
        let bodies = current
            .iter()
            .map(|(k, v)| (k.clone(), v.as_ref().map(|(b, _)| b.clone())))
            .collect();
        docs = hashed::rename(docs, key.as_ref(), &bodies)?;
    }
    // Unchanged: the bucket's index documents are this tree's, byte for byte, and the catalogue's
    // live publication of DEST is this tree. Nothing to list or write (2 GETs in all); an object
    // deleted behind our back is `verify s3://… --repair`'s to restore.
    let live_unchanged = docs.iter().filter(|doc| doc.is_index).all(|doc| {
        matches!(current.get(&doc.key), Some(Some((b, _))) if Some(b.as_slice()) == doc.mem())
    });
    if live_unchanged
        && let Some(p) = previous
        && vault
            .catalog
            .s3_publication(p)?
            .is_some_and(|l| l.tree == tree.name)
    {
        // A publish killed between its index write and retiring the others left them live in
        // the catalogue: finish that here (nothing else of it is left to do).
        vault.catalog.retire_other_s3_publications(&url, p)?;
        report.publication = p;
        report.skipped = items.len() as u64;
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let remote_docs = rt.block_on(scan(&s, d, &mut items, &docs))?;

    // 2. Items.
    for it in &items {
        match it.remote {
            Some(rsize) if rsize == it.size => report.skipped += 1,
            Some(_) => {
                let other = retained.iter().find(|p| {
                    std::fs::metadata(trees.join(&p.tree).join(&it.key))
                        .is_ok_and(|m| m.is_file() && m.len() != it.size)
                });
                if let Some(p) = other {
                    return Err(S3Error::Overwrite {
                        dest: url,
                        key: it.key.clone(),
                        publication: p.id,
                    }
                    .into());
                }
            }
            None => {}
        }
    }
    let todo = items.iter().filter(|it| it.remote != Some(it.size));
    let (n, bytes) = rt.block_on(upload_all(&s, d, &tree_path, todo))?;
    report.uploaded = n;
    report.uploaded_bytes = bytes;

    // 3. Products documents, one at a time.
    for doc in docs.iter().filter(|doc| !doc.is_index) {
        let same = match remote_docs.get(&doc.key) {
            Some((size, Some(etag))) if *size == doc.len() => {
                *etag == etag_of(&doc.digest::<md5::Md5>()?)
            }
            _ => false,
        };
        if !same {
            let cache = doc_cache(tree.mode);
            rt.block_on(put_doc(&s, d, &d.key(&doc.key), doc.bytes()?, None, cache))?;
            report.documents_written += 1;
        }
    }

    // 4. The row, then the index last, conditionally.
    let row = NewS3Publication {
        dest: &url,
        tree_id: Some(tree.id),
        tree: &tree.name,
        snapshot_id: snap.id,
        mode: tree.mode,
        signer: tree.signer.as_deref(),
        action: PublicationAction::Publish,
        files: tree.files,
        bytes: tree.bytes,
        by: &crate::host::who(),
    };
    let record: Vec<NewS3Doc<'_>> = docs.iter().map(Doc::record).collect();
    let insert = |c: &Catalog| {
        c.insert_s3_publication_streamed(&row, &record, &items, snap.id, Some(tree.id))
    };
    let (id, n) = switch(vault, &url, insert, || {
        pause_before_index();
        rt.block_on(write_index(&s, d, &docs, &current))
    })?;
    report.documents_written += n;
    report.publication = id;
    report.changed = true;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Record the publication (`insert`: the row, its documents and what it lists), then `write`
/// the index (invariant 4's order for S3): a failed write removes the row again, a successful
/// one retires the other publications of the DEST. Returns the row's id and what `write`
/// returned. Shared by publish and rollback.
fn switch(
    vault: &Vault,
    dest: &str,
    insert: impl FnOnce(&Catalog) -> Result<S3PublicationId>,
    write: impl FnOnce() -> Result<u64>,
) -> Result<(S3PublicationId, u64)> {
    let cat = &vault.catalog;
    let id = insert(cat)?;
    match write() {
        Ok(n) => {
            cat.retire_other_s3_publications(dest, id)?;
            Ok((id, n))
        }
        Err(e) => {
            let _ = cat.delete_s3_publication(id);
            Err(e)
        }
    }
}

/// Write the index documents that differ, each conditional on what was read at the start.
async fn write_index(
    s: &AmazonS3,
    d: &S3Dest,
    docs: &[Doc],
    current: &HashMap<String, Current>,
) -> Result<u64> {
    let mut n = 0;
    for doc in docs.iter().filter(|doc| doc.is_index) {
        let now = current.get(&doc.key).cloned().flatten();
        let body = doc.bytes()?;
        if now.as_ref().is_some_and(|(b, _)| *b == body) {
            continue;
        }
        let cond = now.map(|(_, etag)| etag);
        let cond = match cond {
            // An object without an ETag cannot be matched: fail closed.
            Some(None) => return Err(S3Error::Lost { dest: d.url() }.into()),
            Some(Some(e)) => Some(Some(e)),
            None => Some(None),
        };
        put_doc(s, d, &d.key(&doc.key), body, cond, NO_CACHE).await?;
        n += 1;
    }
    Ok(n)
}

/// Upload items, [`UPLOADS`] at a time; (files, bytes).
async fn upload_all<'a>(
    s: &Arc<AmazonS3>,
    d: &S3Dest,
    root: &Path,
    todo: impl Iterator<Item = &'a Item>,
) -> Result<(u64, u64)> {
    let mut st = futures_util::stream::iter(todo.map(|it| {
        let s = Arc::clone(s);
        let key = d.key(&it.key);
        let file = root.join(&it.key);
        upload(s, key, file, it.size)
    }))
    .buffer_unordered(UPLOADS);
    let (mut n, mut bytes) = (0, 0);
    while let Some(r) = st.next().await {
        bytes += r?;
        n += 1;
    }
    Ok((n, bytes))
}

/// Auto-publish (`source add|edit NAME --publish s3://…`) after a sync that ended with
/// `snapshot` (`new`: the sync made it). An unchanged sync publishes only what DEST lacks: not
/// when DEST's live publication already serves the snapshot, nor when DEST served it and was
/// moved away from it (a rollback stays rolled back). `None`: nothing to do.
pub(crate) fn auto_publish(
    vault: &mut Vault,
    d: &S3Dest,
    target: &crate::catalog::AutoPublish,
    snapshot: SnapshotId,
    new: bool,
) -> Result<Option<S3Report>> {
    if !new {
        let pubs = vault.catalog.s3_publications(Some(&d.url()))?;
        let live = vault.catalog.live_s3_publication(&d.url())?;
        let served = live.is_some_and(|p| p.snapshot_id == snapshot);
        let retired = pubs
            .iter()
            .any(|p| p.snapshot_id == snapshot && p.retired_at.is_some());
        if served || retired {
            return Ok(None);
        }
    }
    let opts = PublishOptions {
        snapshot: snapshot.to_string(),
        dest: PathBuf::from(d.url()),
        mode: target.metadata,
        sign_key: target.sign_key.clone(),
        ..PublishOptions::default()
    };
    publish(vault, d, &opts).map(Some)
}

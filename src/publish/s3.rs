//! Publishing to S3-compatible object storage: `publish SNAPSHOT s3://BUCKET/PREFIX`, and
//! `rollback`, `status`, `publications` of such a DEST, auto-publish after a sync
//! ([`auto_publish`]), and the bucket handle `gc s3://…` (`crate::gc::s3`) and `verify s3://…`
//! (`crate::verify::s3`) use ([`Bucket`]).
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
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions,
    PutPayload, UpdateVersion, WriteMultipart,
};
use tokio::io::AsyncReadExt;

pub(crate) use crate::catalog::{S3Document, S3Publication};

use super::{INDEX_NAMES, MetadataMode, PublishOptions, dest, failpoint, metadata};
mod bucket;
mod config;
mod error;
mod hashed;
mod location;
mod rollback;
mod status;

pub use error::S3Error;
pub use rollback::rollback;
pub use status::{publications, status};

pub(crate) use bucket::{Bucket, lock};
pub use location::{S3Dest, is_url};

pub(crate) use crate::catalog::S3Object;
use crate::catalog::{
    Catalog, DocBody, ListedItem, NewS3Doc, NewS3Publication, PublicationAction, S3PublicationId,
    SnapshotId,
};
use crate::error::{Error, IoResultExt, Result};
use crate::openpgp::SigningKey;
use crate::vault::Vault;

/// Files above this size are uploaded in parts of this size.
pub(crate) const PART_SIZE: usize = 64 << 20;
/// Uploads in flight at once.
pub(crate) const UPLOADS: usize = 8;
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";
/// User metadata naming one conditional write (see `put_doc`).
const WRITE_TOKEN: &str = "streamvault-write";

/// What an S3 publish or rollback did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct S3Report {
    pub publication: S3PublicationId,
    pub action: String,
    pub dest: String,
    pub snapshot: SnapshotId,
    pub(crate) tree: String,
    pub mode: String,
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

fn connect(d: &S3Dest) -> Result<Arc<AmazonS3>> {
    // reqwest is built with `rustls-no-provider`: the ring provider must be installed first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let env_endpoint = var("AWS_ENDPOINT_URL_S3")
        .or_else(|| var("AWS_ENDPOINT_URL"))
        .or_else(|| var("AWS_ENDPOINT"));
    // `~/.aws` profiles fill in what the environment does not set.
    let profile = config::load(&var);
    let endpoint = env_endpoint.clone().or(profile.endpoint_url.clone());
    let http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&d.bucket)
        .with_allow_http(http)
        // Every PUT and part carries `x-amz-checksum-sha256` of our bytes; the server checks it.
        .with_checksum_algorithm(object_store::aws::Checksum::SHA256);
    if env_endpoint.is_none()
        && let Some(e) = &profile.endpoint_url
    {
        b = b.with_endpoint(e);
    }
    if var("AWS_ACCESS_KEY_ID").is_none()
        && var("AWS_SECRET_ACCESS_KEY").is_none()
        && let (Some(k), Some(sk)) = (&profile.access_key_id, &profile.secret_access_key)
    {
        b = b.with_access_key_id(k).with_secret_access_key(sk);
        if let Some(t) = &profile.session_token {
            b = b.with_token(t);
        }
    }
    if var("AWS_REGION").is_none() && var("AWS_DEFAULT_REGION").is_none() {
        b = b.with_region(profile.region.as_deref().unwrap_or("us-east-1"));
    }
    // Retries and timeouts. object_store's 30 s limit on a whole request fails every 64 MiB part
    // of a big file when an upload gets less than ~2.2 MB/s (8 in flight on a link below
    // ~150 Mbit/s), and each retry fails the same way: a request may take 10 minutes (a part at
    // 110 kB/s). Transient 500s/503 SlowDown/resets are retried 10 times with backoff from
    // 100 ms to 15 s (tests/it/s3_faults.rs), within 15 minutes of the first attempt.
    use object_store::ClientConfigKey::{ConnectTimeout, Timeout};
    use object_store::aws::AmazonS3ConfigKey::Client;
    let retry = object_store::RetryConfig {
        max_retries: 10,
        retry_timeout: std::time::Duration::from_secs(15 * 60),
        ..Default::default()
    };
    let b = b
        .with_config(Client(Timeout), "10m")
        .with_config(Client(ConnectTimeout), "10s")
        .with_retry(retry);
    let s = b.build().map_err(|source| S3Error::Config {
        dest: d.url(),
        source,
    })?;
    Ok(Arc::new(s))
}

fn req(op: &'static str, key: &ObjPath) -> impl FnOnce(object_store::Error) -> Error {
    let key = key.to_string();
    move |source| S3Error::Request { op, key, source }.into()
}

/// An object's current bytes and ETag, if it exists.
/// An object's bytes and ETag.
type Current = Option<(Vec<u8>, Option<String>)>;

async fn read(s: &AmazonS3, key: &ObjPath) -> Result<Current> {
    match s.get(key).await {
        Ok(r) => {
            let etag = r.meta.e_tag.clone();
            let b = r.bytes().await.map_err(req("GET", key))?;
            Ok(Some((b.to_vec(), etag)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(req("GET", key)(e)),
    }
}

/// Every object under the prefix: relative key → (size, ETag).
async fn list(s: &AmazonS3, d: &S3Dest) -> Result<HashMap<String, (u64, Option<String>)>> {
    let prefix = (!d.prefix.is_empty()).then(|| ObjPath::from(d.prefix.as_str()));
    let mut out = HashMap::new();
    let mut st = s.list(prefix.as_ref());
    let strip = if d.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", d.prefix)
    };
    while let Some(m) = st.next().await {
        let m = m.map_err(req("LIST", prefix.as_ref().unwrap_or(&ObjPath::from(""))))?;
        let full = m.location.to_string();
        if let Some(rel) = full.strip_prefix(&strip) {
            out.insert(rel.to_string(), (m.size, m.e_tag));
        }
    }
    Ok(out)
}

fn attrs(cache: &'static str) -> Attributes {
    let mut a = Attributes::new();
    a.insert(Attribute::CacheControl, cache.into());
    a
}

/// Upload one file (multipart above [`PART_SIZE`]).
async fn upload(s: Arc<AmazonS3>, key: ObjPath, file: PathBuf, size: u64) -> Result<u64> {
    let part_size = failpoint::number("s3-part-size=", "").map_or(PART_SIZE, |n| n as usize);
    if size <= part_size as u64 {
        let body = tokio::fs::read(&file).await.with_path("read", &file)?;
        let n = body.len() as u64;
        let opts = PutOptions {
            attributes: attrs(IMMUTABLE),
            ..Default::default()
        };
        s.put_opts(&key, PutPayload::from(body), opts)
            .await
            .map_err(req("PUT", &key))?;
        return Ok(n);
    }
    let opts = PutMultipartOptions {
        attributes: attrs(IMMUTABLE),
        ..Default::default()
    };
    let up = s
        .put_multipart_opts(&key, opts)
        .await
        .map_err(req("multipart PUT", &key))?;
    let mut w = WriteMultipart::new_with_chunk_size(up, part_size);
    let mut f = tokio::fs::File::open(&file)
        .await
        .with_path("open", &file)?;
    let mut buf = vec![0u8; 8 << 20];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).await.with_path("read", &file)?;
        if r == 0 {
            break;
        }
        n += r as u64;
        // At most two parts buffered or in flight per big file.
        w.wait_for_capacity(2)
            .await
            .map_err(req("multipart PUT", &key))?;
        w.write(&buf[..r]);
    }
    w.finish().await.map_err(req("multipart PUT", &key))?;
    // A multipart ETag is not a digest of the object: check the completed object's size
    // (each part carried its SHA-256, which the server checked).
    let meta = s.head(&key).await.map_err(req("HEAD", &key))?;
    if meta.size != n || n != size {
        return Err(S3Error::SizeMismatch {
            key: key.to_string(),
            expected: size,
            got: meta.size,
        }
        .into());
    }
    Ok(n)
}

/// Put a document; the index conditionally (`If-Match` / `If-None-Match: *`).
async fn put_doc(
    s: &AmazonS3,
    d: &S3Dest,
    key: &ObjPath,
    body: bytes::Bytes,
    condition: Option<Option<String>>,
    cache: &'static str,
) -> Result<()> {
    let mode = match condition {
        None => PutMode::Overwrite,
        Some(Some(etag)) => PutMode::Update(UpdateVersion {
            e_tag: Some(etag),
            version: None,
        }),
        Some(None) => PutMode::Create,
    };
    let opts = PutOptions {
        mode,
        attributes: attrs(cache),
        ..Default::default()
    };
    // A conditional write carries a token of its own (`x-amz-meta-streamvault-write`): when it
    // fails (412 on a retry, or a dropped connection) yet the index carries our token, the
    // server applied it and only the answer was lost. Another publisher's write, even of the
    // same bytes, has another token: that one is a lost race.
    let conditional = !matches!(opts.mode, PutMode::Overwrite);
    let token = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
    let mut opts = opts;
    if conditional {
        opts.attributes.insert(
            Attribute::Metadata(WRITE_TOKEN.into()),
            token.clone().into(),
        );
    }
    // `Bytes` all the way: the document is not copied into the request.
    let r = s.put_opts(key, PutPayload::from(body), opts).await;
    if r.is_err() && conditional {
        let ours = match s.get(key).await {
            Ok(g) => g
                .attributes
                .get(&Attribute::Metadata(WRITE_TOKEN.into()))
                .is_some_and(|v| v.as_ref() == token.as_str()),
            Err(_) => false,
        };
        if ours {
            return Ok(());
        }
    }
    match r {
        Ok(_) => Ok(()),
        Err(
            object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. },
        ) => Err(S3Error::Lost { dest: d.url() }.into()),
        Err(e) => Err(req("PUT", key)(e)),
    }
}

/// Products documents: named by content hash (immutable) in filtered mode, fixed upstream
/// paths (`no-cache`) in verbatim mode.
fn doc_cache(mode: MetadataMode) -> &'static str {
    match mode {
        MetadataMode::Filtered => IMMUTABLE,
        _ => NO_CACHE,
    }
}

fn md5_of(body: &[u8]) -> Vec<u8> {
    use md5::Digest;
    md5::Md5::digest(body).to_vec()
}

fn etag_of(h: &[u8]) -> String {
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

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
    fn len(&self) -> u64 {
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
    fn bytes(&self) -> Result<bytes::Bytes> {
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

    fn record(&self) -> NewS3Doc<'_> {
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
struct Item {
    key: String,
    size: u64,
    remote: Option<u64>,
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
fn tree_entries(root: &Path, is_doc: impl Fn(&str) -> bool) -> Result<(Vec<Doc>, Vec<Item>)> {
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
        let size = e.metadata().map(|m| m.len()).unwrap_or(0);
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
async fn scan(
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
        opts.mode == MetadataMode::Filtered,
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
    let (tree, _reused, tree_path, _starts, _check) = super::checked_tree(
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
        action: "publish".into(),
        dest: url.clone(),
        snapshot: snap.id,
        tree: tree.name.clone(),
        mode: tree.mode.to_string(),
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

//! The object-store calls of an S3 DEST, shared by publish, rollback and [`super::Bucket`]:
//! the client ([`connect`]: environment, `~/.aws` profile, retries and timeouts), GET, LIST,
//! uploads (multipart above [`super::PART_SIZE`], the size of the completed object checked) and
//! the document PUT that is conditional for the index (with its write token).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions,
    PutPayload, UpdateVersion, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::{MetadataMode, PART_SIZE, S3Dest, S3Error, config, failpoint};
use crate::error::{Error, IoResultExt, Result};

pub(super) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub(super) const NO_CACHE: &str = "no-cache";
/// User metadata naming one conditional write (see `put_doc`).
pub(super) const WRITE_TOKEN: &str = "streamvault-write";

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

pub(super) fn connect(d: &S3Dest) -> Result<Arc<AmazonS3>> {
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

pub(super) fn req(op: &'static str, key: &ObjPath) -> impl FnOnce(object_store::Error) -> Error {
    let key = key.to_string();
    move |source| S3Error::Request { op, key, source }.into()
}

/// An object's current bytes and ETag, if it exists.
pub(super) type Current = Option<(Vec<u8>, Option<String>)>;

pub(super) async fn read(s: &AmazonS3, key: &ObjPath) -> Result<Current> {
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
pub(super) async fn list(
    s: &AmazonS3,
    d: &S3Dest,
) -> Result<HashMap<String, (u64, Option<String>)>> {
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

pub(super) fn attrs(cache: &'static str) -> Attributes {
    let mut a = Attributes::new();
    a.insert(Attribute::CacheControl, cache.into());
    a
}

/// Upload one file (multipart above [`PART_SIZE`]).
pub(super) async fn upload(
    s: Arc<AmazonS3>,
    key: ObjPath,
    file: PathBuf,
    size: u64,
) -> Result<u64> {
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
pub(super) async fn put_doc(
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
pub(super) fn doc_cache(mode: MetadataMode) -> &'static str {
    match mode {
        MetadataMode::Filtered => IMMUTABLE,
        _ => NO_CACHE,
    }
}

pub(super) fn md5_of(body: &[u8]) -> Vec<u8> {
    use md5::Digest;
    md5::Md5::digest(body).to_vec()
}

pub(super) fn etag_of(h: &[u8]) -> String {
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

//! [`Fetcher`], the fetch API the rest of the crate uses: metadata documents (conditional
//! requests, the §2.1 base rule, `--mirror` fallbacks on 404) and item downloads, each sent to
//! `download` (http), `local` (`file://` and paths) or, through `download`, `segmented`. It sits
//! on top of the fetch layers and nothing below calls back into it.
//!
//! Protects invariant 6 for documents: only a 2xx other than 206 is content, a body shorter than
//! its `Content-Length` is retried rather than returned, and a document larger than
//! `max_document_size` is refused.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::error::{Error, Result};
use super::location::{Scheme, redact};
use super::options::FetchOptions;
use super::transport::{Stats, Transport, status_error};
use super::{
    DocumentCache, Downloaded, Expect, Fetched, Held, Location, Progress, Validators, download,
    local,
};

/// Fetches documents and items; cheap to clone (shares client, rate limit and counters).
#[derive(Debug, Clone)]
pub struct Fetcher {
    inner: Arc<Transport>,
    cache: Option<Arc<dyn DocumentCache>>,
}

/// A document body and how it came.
struct Body {
    bytes: Vec<u8>,
    validators: Option<Validators>,
    not_modified: bool,
}

impl Fetcher {
    /// A fetcher with these options. The HTTP client (rustls with ring, installed as the process
    /// default if none is) is built by the first HTTP request, so a local-only run never loads
    /// the system's CA certificates.
    pub fn new(options: FetchOptions) -> Result<Self> {
        Ok(Fetcher {
            inner: Arc::new(Transport::new(options)?),
            cache: None,
        })
    }

    /// Make document requests conditional on what `cache` holds.
    pub fn with_document_cache(mut self, cache: Arc<dyn DocumentCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn options(&self) -> &FetchOptions {
        self.inner.options()
    }

    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Read the metadata document `rel` whole: `base + rel`, then each mirror on 404.
    ///
    /// If `loc.base` does not end with `/` and `base + rel` answers 404 (or another 4xx), the
    /// base gets a `/` appended for the rest of the run and is tried again (spec §2.1).
    pub async fn get_document(
        &self,
        loc: &mut Location,
        rel: &str,
        progress: &dyn Progress,
    ) -> Result<Fetched> {
        let _permit = self.inner.permit().await;
        let mut tried = Vec::new();
        if !loc.base.is_empty() && !loc.base.ends_with('/') {
            let url = super::location::join(&loc.base, rel)?;
            match self.document_at(&url, progress).await {
                Ok(body) => return Ok(fetched(body, &url)),
                Err(e) if e.is_not_found() || matches!(e, Error::Status { .. }) => {
                    tried.push(redact(&url));
                    loc.base.push('/');
                }
                Err(e) => return Err(e),
            }
        }
        for url in loc.urls(rel)? {
            match self.document_at(&url, progress).await {
                Ok(body) => return Ok(fetched(body, &url)),
                Err(e) if e.is_not_found() => tried.push(redact(&url)),
                Err(e) => return Err(e),
            }
        }
        Err(Error::NotFound { urls: tried })
    }

    /// Download item `rel` into `partial` (created, or resumed if it holds a prefix) and check
    /// it against `expect`: `base + rel`, then each mirror on 404. At most `jobs` talk to servers
    /// at once, and at most `jobs` more finish (their last batch hashed and written, the file
    /// checked) after their body is in, their connection already serving the next download.
    ///
    /// On success the file is complete and flushed (not fsynced). On a size or checksum
    /// mismatch `partial` is deleted; on other errors it is kept for a later resume.
    pub async fn download(
        &self,
        loc: &Location,
        rel: &str,
        partial: &Path,
        expect: &Expect,
        progress: &dyn Progress,
    ) -> Result<Downloaded> {
        self.download_in(loc, rel, partial, None, expect, progress)
            .await
    }

    /// [`Self::download`] through the caller's open handle of `partial` ([`Held`]): the file is
    /// not opened again, and a failure truncates it instead of removing the name (the caller
    /// removes what it does not keep, while it still holds the file).
    pub async fn download_held(
        &self,
        loc: &Location,
        rel: &str,
        partial: &Path,
        held: &Held,
        expect: &Expect,
        progress: &dyn Progress,
    ) -> Result<Downloaded> {
        self.download_in(loc, rel, partial, Some(held), expect, progress)
            .await
    }

    async fn download_in(
        &self,
        loc: &Location,
        rel: &str,
        partial: &Path,
        held: Option<&Held>,
        expect: &Expect,
        progress: &dyn Progress,
    ) -> Result<Downloaded> {
        let mut slot = self.inner.slot().await;
        let mut tried = Vec::new();
        for url in loc.urls(rel)? {
            slot.again().await;
            let result = match Scheme::of(&url)? {
                Scheme::Http => {
                    download::http(
                        &self.inner,
                        &url,
                        partial,
                        held,
                        expect,
                        progress,
                        &mut slot,
                    )
                    .await
                }
                Scheme::Local(path) => {
                    local::download(&self.inner, &path, &url, partial, held, expect, progress).await
                }
            };
            match result {
                Err(e) if e.is_not_found() => tried.push(redact(&url)),
                other => return other,
            }
        }
        // leave no empty file behind when nothing was found (a held one is the caller's)
        if held.is_none()
            && tokio::fs::metadata(partial)
                .await
                .is_ok_and(|m| m.len() == 0)
        {
            tokio::fs::remove_file(partial)
                .await
                .map_err(Error::io("remove", partial))?;
        }
        Err(Error::NotFound { urls: tried })
    }

    async fn document_at(&self, url: &str, progress: &dyn Progress) -> Result<Body> {
        let limit = self.inner.options().max_document_size;
        match Scheme::of(url)? {
            Scheme::Local(path) => {
                let bytes = local::read_document(&path, url, limit).await?;
                self.inner.count_bytes(bytes.len() as u64);
                Ok(Body {
                    bytes,
                    validators: None,
                    not_modified: false,
                })
            }
            Scheme::Http => {
                let mut failures = 0;
                let mut conditional = self.cache.as_ref().and_then(|c| c.validators(&redact(url)));
                loop {
                    match self.document_http(url, limit, conditional.as_ref()).await {
                        Ok(Some(body)) => return Ok(body),
                        // a 304 whose stored bytes are gone: ask again without validators
                        Ok(None) => conditional = None,
                        Err(e) => {
                            let delay =
                                self.inner.retry_or_fail(url, &mut failures, e, progress)?;
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }
        }
    }

    /// One request for a document; `Ok(None)` is a `304` whose stored bytes are unavailable.
    async fn document_http(
        &self,
        url: &str,
        limit: u64,
        conditional: Option<&Validators>,
    ) -> Result<Option<Body>> {
        let (mut resp, mut pace) = self.inner.send(url, 0, conditional).await?;
        let status = resp.status().as_u16();
        if status == 304
            && let Some(sent) = conditional
        {
            let stored = self.cache.as_ref().and_then(|c| c.body(&redact(url)));
            return Ok(stored.map(|bytes| Body {
                bytes,
                validators: Some(sent.clone()),
                not_modified: true,
            }));
        }
        if !(200..300).contains(&status) || status == 206 {
            return Err(status_error(url, status));
        }
        let validators = validators_of(resp.headers());
        let length = resp.content_length();
        if length.is_some_and(|n| n > limit) {
            return Err(Error::TooLarge {
                url: redact(url),
                limit,
            });
        }
        let cap = length.unwrap_or(0).min(1 << 20);
        let mut bytes = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
        while let Some(chunk) = self.inner.next_chunk(&mut resp, url, &mut pace).await? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(Error::TooLarge {
                    url: redact(url),
                    limit,
                });
            }
            self.inner
                .throttle_paced(chunk.len() as u64, &mut pace)
                .await;
            bytes.extend_from_slice(&chunk);
        }
        if let Some(expected) = length
            && bytes.len() as u64 != expected
        {
            return Err(Error::ShortBody {
                url: redact(url),
                received: bytes.len() as u64,
                expected,
            });
        }
        Ok(Some(Body {
            bytes,
            validators,
            not_modified: false,
        }))
    }
}

fn fetched(body: Body, url: &str) -> Fetched {
    Fetched {
        bytes: body.bytes,
        url: redact(url),
        validators: body.validators,
        not_modified: body.not_modified,
    }
}

/// How much older than the response's `Date` a `Last-Modified` must be to serve as a validator.
const LAST_MODIFIED_MIN_AGE: Duration = Duration::from_secs(60);

/// The usable validators of a `200` (see [`Validators`]): the `ETag`, and `Last-Modified` only
/// when the response has a `Date` at least 60 s later.
fn validators_of(h: &reqwest::header::HeaderMap) -> Option<Validators> {
    let text = |name| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let etag = text(reqwest::header::ETAG);
    let last_modified = text(reqwest::header::LAST_MODIFIED).filter(|lm| {
        let date = text(reqwest::header::DATE).and_then(|d| httpdate::parse_http_date(&d).ok());
        let modified = httpdate::parse_http_date(lm).ok();
        match (date, modified) {
            (Some(d), Some(m)) => d
                .duration_since(m)
                .is_ok_and(|age| age >= LAST_MODIFIED_MIN_AGE),
            _ => false,
        }
    });
    (etag.is_some() || last_modified.is_some()).then_some(Validators {
        etag,
        last_modified,
    })
}

//! [`Fetcher`]: the reqwest client (rustls with ring, timeouts, proxies from the environment,
//! basic auth from `user:pass@` URLs), retries with exponential back-off and jitter, the run's
//! counters, `--mirror` fallbacks and the metadata documents.
//!
//! Protects invariant 6 for documents: only a 2xx other than 206 is content, a body shorter than
//! its `Content-Length` is retried rather than returned, and a document larger than
//! `max_document_size` is refused. Timeouts and retries live only here.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::error::{Error, Result};
use super::location::{Source, redact};
use super::options::FetchOptions;
use super::rate::RateLimiter;
use super::{
    DocumentCache, Downloaded, Expect, Fetched, Location, Progress, Validators, download, local,
};

/// Fetches documents and items; cheap to clone (shares client, rate limit and counters).
#[derive(Debug, Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
    cache: Option<Arc<dyn DocumentCache>>,
}

/// A document body and how it came.
struct Body {
    bytes: Vec<u8>,
    validators: Option<Validators>,
    not_modified: bool,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    options: FetchOptions,
    limiter: Option<RateLimiter>,
    jobs: Semaphore,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
    restarts: AtomicU64,
}

/// What a [`Fetcher`] did so far (all clones together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests sent (local reads are not requests).
    pub requests: u64,
    /// Body bytes received, documents and items, http and local.
    pub bytes: u64,
    /// Retries after a retryable error.
    pub retries: u64,
    /// Partial files discarded to start again from byte 0.
    pub restarts: u64,
}

impl Fetcher {
    /// Build the client. Installs rustls' ring provider as the process default if none is.
    pub fn new(options: FetchOptions) -> Result<Self> {
        // Err only means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .user_agent(options.user_agent.as_str())
            .pool_max_idle_per_host(options.jobs.max(1));
        if !options.env_proxy {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|source| Error::Client { source })?;
        Ok(Fetcher {
            inner: Arc::new(Inner {
                client,
                limiter: options.limit_rate.map(RateLimiter::new),
                jobs: Semaphore::new(options.jobs.max(1)),
                counters: Counters::default(),
                options,
            }),
            cache: None,
        })
    }

    /// Make document requests conditional on what `cache` holds.
    pub fn with_document_cache(mut self, cache: Arc<dyn DocumentCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn options(&self) -> &FetchOptions {
        &self.inner.options
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            restarts: c.restarts.load(Ordering::Relaxed),
        }
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
        let _permit = self.inner.jobs.acquire().await.ok();
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
    /// it against `expect`: `base + rel`, then each mirror on 404. At most `jobs` run at once.
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
        let _permit = self.inner.jobs.acquire().await.ok();
        let mut tried = Vec::new();
        for url in loc.urls(rel)? {
            let result = match Source::of(&url)? {
                Source::Http => download::http(self, &url, partial, expect, progress).await,
                Source::Local(path) => {
                    local::download(self, &path, &url, partial, expect, progress).await
                }
            };
            match result {
                Err(e) if e.is_not_found() => tried.push(redact(&url)),
                other => return other,
            }
        }
        // leave no empty file behind when nothing was found
        if tokio::fs::metadata(partial)
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
        let limit = self.inner.options.max_document_size;
        match Source::of(url)? {
            Source::Local(path) => {
                let bytes = local::read_document(&path, url, limit).await?;
                self.count_bytes(bytes.len() as u64);
                Ok(Body {
                    bytes,
                    validators: None,
                    not_modified: false,
                })
            }
            Source::Http => {
                let mut failures = 0;
                let mut conditional = self.cache.as_ref().and_then(|c| c.validators(&redact(url)));
                loop {
                    match self.document_http(url, limit, conditional.as_ref()).await {
                        Ok(Some(body)) => return Ok(body),
                        // a 304 whose stored bytes are gone: ask again without validators
                        Ok(None) => conditional = None,
                        Err(e) => {
                            let delay = self.retry_or_fail(url, &mut failures, e, progress)?;
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
        let (mut resp, mut pace) = self.send(url, 0, conditional).await?;
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
        while let Some(chunk) = self.next_chunk(&mut resp, url, &mut pace).await? {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(Error::TooLarge {
                    url: redact(url),
                    limit,
                });
            }
            self.throttle_paced(chunk.len() as u64, &mut pace).await;
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

    /// Send a GET, with `Range: bytes=<from>-` when `from > 0`. Waiting for the response head
    /// is bounded by connect plus stall timeout, and by the request deadline. The [`Pace`] that
    /// comes with the response watches the rest of the request.
    pub(super) async fn send(
        &self,
        url: &str,
        from: u64,
        conditional: Option<&Validators>,
    ) -> Result<(reqwest::Response, Pace)> {
        let range = (from > 0).then(|| format!("bytes={from}-"));
        self.send_with(url, range, conditional).await
    }

    /// Send a GET for the bytes `from..=to` (`to` `None`: to the end).
    pub(super) async fn send_range(
        &self,
        url: &str,
        from: u64,
        to: Option<u64>,
    ) -> Result<(reqwest::Response, Pace)> {
        let range = match to {
            Some(to) => format!("bytes={from}-{to}"),
            None => format!("bytes={from}-"),
        };
        self.send_with(url, Some(range), None).await
    }

    /// Up to `n` more download permits, only those free right now (segments of one download).
    pub(super) fn extra_permits(&self, n: usize) -> Vec<tokio::sync::SemaphorePermit<'_>> {
        (0..n)
            .map_while(|_| self.inner.jobs.try_acquire().ok())
            .collect()
    }

    async fn send_with(
        &self,
        url: &str,
        range: Option<String>,
        conditional: Option<&Validators>,
    ) -> Result<(reqwest::Response, Pace)> {
        self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        let pace = Pace::new(&self.inner.options);
        let mut request = self.inner.client.get(url);
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        if let Some(v) = conditional {
            if let Some(etag) = &v.etag {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag.as_str());
            } else if let Some(lm) = &v.last_modified {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, lm.as_str());
            }
        }
        let o = &self.inner.options;
        let head = o.connect_timeout.saturating_add(o.stall_timeout);
        let (wait, late) = match pace.until_deadline() {
            Some(left) if left < head => (left, true),
            _ => (head, false),
        };
        match tokio::time::timeout(wait, request.send()).await {
            Err(_) if late => Err(Error::Deadline {
                url: redact(url),
                timeout: o.request_timeout.unwrap_or_default(),
            }),
            Err(_) => Err(Error::Stall {
                url: redact(url),
                timeout: head,
            }),
            Ok(Err(source)) => Err(Error::Http {
                url: redact(url),
                source,
            }),
            Ok(Ok(resp)) => Ok((resp, pace)),
        }
    }

    /// The next chunk of a body. Counts the bytes. Errors: `stall_timeout` without a byte, a
    /// speed below `speed_limit` over `speed_time` ([`Error::TooSlow`]), or the request
    /// deadline ([`Error::Deadline`]), whichever comes first.
    pub(super) async fn next_chunk(
        &self,
        resp: &mut reqwest::Response,
        url: &str,
        pace: &mut Pace,
    ) -> Result<Option<Bytes>> {
        let o = &self.inner.options;
        let stall = o.stall_timeout;
        let wait = [Some(stall), pace.until_check(), pace.until_deadline()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(stall);
        let got = tokio::time::timeout(wait, resp.chunk()).await;
        // the speed and the deadline are judged first: a trickle is not a stall
        pace.check(
            url,
            got.as_ref()
                .ok()
                .and_then(|r| r.as_ref().ok())
                .and_then(|c| c.as_ref())
                .map_or(0, |c| c.len() as u64),
        )?;
        match got {
            Err(_) if wait >= stall => Err(Error::Stall {
                url: redact(url),
                timeout: stall,
            }),
            // a check point of the speed window passed (and the speed was fine): wait on
            Err(_) => Box::pin(self.next_chunk(resp, url, pace)).await,
            Ok(Err(source)) => Err(Error::Http {
                url: redact(url),
                source,
            }),
            Ok(Ok(chunk)) => {
                if let Some(c) = &chunk {
                    self.count_bytes(c.len() as u64);
                }
                Ok(chunk)
            }
        }
    }

    /// Wait until `n` bytes fit the shared rate limit.
    pub(super) async fn throttle(&self, n: u64) {
        if let Some(limiter) = &self.inner.limiter {
            limiter.acquire(n).await;
        }
    }

    /// [`Self::throttle`] for a request under a [`Pace`]: time spent waiting for our own rate
    /// limit does not count against the server's speed.
    pub(super) async fn throttle_paced(&self, n: u64, pace: &mut Pace) {
        if self.inner.limiter.is_some() {
            let start = Instant::now();
            self.throttle(n).await;
            pace.exclude(start.elapsed());
        }
    }

    pub(super) fn count_bytes(&self, n: u64) {
        self.inner.counters.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// After a failure of `url`: the delay before the next attempt (reported to `progress`), or
    /// the error itself when it is fatal or the retries are used up.
    pub(super) fn retry_or_fail(
        &self,
        url: &str,
        failures: &mut u32,
        error: Error,
        progress: &dyn Progress,
    ) -> Result<Duration> {
        if !error.is_retryable() || *failures >= self.inner.options.retries {
            return Err(error);
        }
        *failures += 1;
        self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
        progress.retry(&redact(url), *failures, &DisplayChain(&error));
        Ok(self.backoff(*failures))
    }

    /// The partial file of `url` is dropped and the download starts over.
    pub(super) fn note_restart(&self, url: &str, progress: &dyn Progress) {
        self.inner.counters.restarts.fetch_add(1, Ordering::Relaxed);
        progress.restart(&redact(url));
    }

    /// `backoff_base * 2^(attempt-1)`, capped at `backoff_max`, then scaled into [50%, 100%].
    fn backoff(&self, attempt: u32) -> Duration {
        let o = &self.inner.options;
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let delay = o.backoff_base.saturating_mul(factor).min(o.backoff_max);
        delay.mul_f64(0.5 + fastrand::f64() * 0.5)
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

/// 404 is "not found" (next mirror), anything else a status error.
pub(super) fn status_error(url: &str, status: u16) -> Error {
    if status == 404 {
        Error::NotFound {
            urls: vec![redact(url)],
        }
    } else {
        Error::Status {
            url: redact(url),
            status,
        }
    }
}

/// An error with its causes, `msg: cause: cause`, for [`Progress::retry`].
struct DisplayChain<'a>(&'a Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = std::error::Error::source(self.0);
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

/// The speed and the deadline of one request (curl's `--speed-limit`/`--speed-time` and
/// `--max-time`): fewer than `speed_limit` bytes in a window of `speed_time` (time spent in our
/// own `--limit-rate` not counted) ends the request, and so does the request deadline.
#[derive(Debug)]
pub(super) struct Pace {
    started: Instant,
    deadline: Option<Instant>,
    /// `None`: no speed limit.
    window: Option<(u64, Duration)>,
    window_start: Instant,
    window_bytes: u64,
}

impl Pace {
    fn new(o: &FetchOptions) -> Pace {
        let now = Instant::now();
        Pace {
            started: now,
            deadline: o.request_timeout.and_then(|t| now.checked_add(t)),
            window: (o.speed_limit > 0 && !o.speed_time.is_zero())
                .then_some((o.speed_limit, o.speed_time)),
            window_start: now,
            window_bytes: 0,
        }
    }

    fn until_deadline(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Time until the current speed window is judged.
    fn until_check(&self) -> Option<Duration> {
        let (_, time) = self.window?;
        let end = self.window_start.checked_add(time)?;
        Some(end.saturating_duration_since(Instant::now()))
    }

    fn exclude(&mut self, d: Duration) {
        self.window_start = self
            .window_start
            .checked_add(d)
            .unwrap_or(self.window_start);
        self.deadline = self.deadline.and_then(|x| x.checked_add(d));
    }

    /// Account `n` new bytes; judge the window when it is over and the deadline.
    fn check(&mut self, url: &str, n: u64) -> Result<()> {
        let now = Instant::now();
        if self.deadline.is_some_and(|d| now >= d) {
            return Err(Error::Deadline {
                url: redact(url),
                timeout: self.deadline.map(|d| d - self.started).unwrap_or_default(),
            });
        }
        self.window_bytes = self.window_bytes.saturating_add(n);
        if let Some((limit, time)) = self.window {
            let elapsed = now.saturating_duration_since(self.window_start);
            if elapsed >= time {
                let need = (limit as f64 * elapsed.as_secs_f64()) as u64;
                if self.window_bytes < need {
                    return Err(Error::TooSlow {
                        url: redact(url),
                        limit,
                        time,
                    });
                }
                self.window_start = now;
                self.window_bytes = 0;
            }
        }
        Ok(())
    }
}

//! The HTTP transport under every request of a [`Fetcher`](super::Fetcher): the reqwest client
//! (rustls with ring, timeouts, proxies from the environment, basic auth from `user:pass@` URLs),
//! the `--jobs` permits (an item download holds one while it talks to the server and hands it on
//! once its body is in, [`Slot`]), the shared `--limit-rate` bucket, the run's counters, retries with
//! exponential back-off and jitter, and the [`Pace`] (stall, speed limit, deadline) of each
//! request. It knows nothing of documents, items or partial files. The reqwest client is built
//! on the first request, with the rustls configuration of `tls`, which loads the system's CA
//! certificates only when a first certificate must be verified: a run that only reads `file://`
//! documents or talks plain `http://` never loads them.
//!
//! Protects invariant 6 only by what it refuses to call success: a status other than the one
//! asked for is an error ([`status_error`]), a `Content-Range` is parsed strictly
//! ([`parse_content_range`]). Timeouts and retries live only here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::error::{Error, Result};
use super::location::redact;
use super::options::FetchOptions;
use super::rate::RateLimiter;
use super::{Progress, Validators};

#[derive(Debug)]
pub(super) struct Transport {
    client: std::sync::OnceLock<reqwest::Client>,
    options: FetchOptions,
    limiter: Option<RateLimiter>,
    jobs: Semaphore,
    /// Downloads past their body (the last batch still being hashed and written): as many as
    /// `jobs`, see [`Slot`].
    finishing: Semaphore,
    counters: Counters,
}

/// An item download's hold on the `--jobs` connections: one of the `jobs` permits while it
/// talks to the server; once its whole body is in ([`Self::body_done`]), one of as many
/// finishing permits instead, while its last batch is hashed and written and the file checked.
/// The connection then serves the next download meanwhile (a 256 KiB body's hash and write are
/// not between two requests of a connection any more), and the bytes waiting to be hashed stay
/// bounded (at most `jobs` finishing downloads, each with at most two batches).
pub(super) struct Slot<'a> {
    t: &'a Transport,
    job: Option<tokio::sync::SemaphorePermit<'a>>,
    finishing: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl Slot<'_> {
    /// The body is in: take a finishing permit, then give the connection permit back.
    pub(super) async fn body_done(&mut self) {
        if self.job.is_some() {
            self.finishing = self.t.finishing.acquire().await.ok();
            self.job = None;
        }
    }

    /// Talk to the server again (a retry, a restart): give the finishing permit back and wait
    /// for a connection permit (no-op while holding one).
    pub(super) async fn again(&mut self) {
        if self.job.is_none() {
            self.finishing = None;
            self.job = self.t.jobs.acquire().await.ok();
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
    retries: AtomicU64,
    restarts: AtomicU64,
}

/// What a [`Fetcher`](super::Fetcher) did so far (all clones together).
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

impl Transport {
    /// The transport; its client is built by the first request ([`Transport::client`]).
    pub(super) fn new(options: FetchOptions) -> Result<Self> {
        Ok(Transport {
            client: std::sync::OnceLock::new(),
            limiter: options.limit_rate.map(RateLimiter::new),
            jobs: Semaphore::new(options.jobs.max(1)),
            finishing: Semaphore::new(options.jobs.max(1)),
            counters: Counters::default(),
            options,
        })
    }

    /// The client, built on first use. Installs rustls' ring provider as the process default if
    /// none is. Two first requests at once may both build one; the first stored is used.
    fn client(&self) -> Result<&reqwest::Client> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        // Err only means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let o = &self.options;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(o.connect_timeout)
            .user_agent(o.user_agent.as_str())
            .pool_max_idle_per_host(o.jobs.max(1))
            .tls_backend_preconfigured(
                super::tls::client_config().map_err(|source| Error::Tls { source })?,
            );
        if !o.env_proxy {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|source| Error::Client { source })?;
        Ok(self.client.get_or_init(|| client))
    }

    pub(super) fn options(&self) -> &FetchOptions {
        &self.options
    }

    pub(super) fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            restarts: c.restarts.load(Ordering::Relaxed),
        }
    }

    /// `--limit-rate` in bytes per second, if any.
    pub(super) fn limit_rate(&self) -> Option<u64> {
        self.options.limit_rate
    }

    /// Wait for one of the `--jobs` permits (`None` only if the semaphore was closed).
    pub(super) async fn permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.jobs.acquire().await.ok()
    }

    /// An item download's place among the `--jobs` ([`Slot`]), waiting for a permit.
    pub(super) async fn slot(&self) -> Slot<'_> {
        Slot {
            t: self,
            job: self.jobs.acquire().await.ok(),
            finishing: None,
        }
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
        (0..n).map_while(|_| self.jobs.try_acquire().ok()).collect()
    }

    async fn send_with(
        &self,
        url: &str,
        range: Option<String>,
        conditional: Option<&Validators>,
    ) -> Result<(reqwest::Response, Pace)> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let pace = Pace::new(&self.options);
        let mut request = self.client()?.get(url);
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
        let o = &self.options;
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
        let o = &self.options;
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
        if let Some(limiter) = &self.limiter {
            limiter.acquire(n).await;
        }
    }

    /// [`Self::throttle`] for a request under a [`Pace`]: time spent waiting for our own rate
    /// limit does not count against the server's speed.
    pub(super) async fn throttle_paced(&self, n: u64, pace: &mut Pace) {
        if self.limiter.is_some() {
            let start = Instant::now();
            self.throttle(n).await;
            pace.exclude(start.elapsed());
        }
    }

    pub(super) fn count_bytes(&self, n: u64) {
        self.counters.bytes.fetch_add(n, Ordering::Relaxed);
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
        if !error.is_retryable() || *failures >= self.options.retries {
            return Err(error);
        }
        *failures += 1;
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        progress.retry(&redact(url), *failures, &DisplayChain(&error));
        Ok(self.backoff(*failures))
    }

    /// The partial file of `url` is dropped and the download starts over.
    pub(super) fn note_restart(&self, url: &str, progress: &dyn Progress) {
        self.counters.restarts.fetch_add(1, Ordering::Relaxed);
        progress.restart(&redact(url));
    }

    /// `backoff_base * 2^(attempt-1)`, capped at `backoff_max`, then scaled into [50%, 100%].
    fn backoff(&self, attempt: u32) -> Duration {
        let o = &self.options;
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let delay = o.backoff_base.saturating_mul(factor).min(o.backoff_max);
        delay.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
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

/// `bytes <start>-<end>/<total|*>`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ContentRange {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) total: Option<u64>,
}

pub(super) fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (start <= end).then_some(ContentRange { start, end, total })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        let r = |start, end, total| Some(ContentRange { start, end, total });
        assert_eq!(
            parse_content_range("bytes 100-4095/4096"),
            r(100, 4095, Some(4096))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), r(0, 9, None));
        assert_eq!(parse_content_range("bytes */4096"), None);
        assert_eq!(parse_content_range("bytes 9-0/10"), None);
        assert_eq!(parse_content_range("items 0-9/10"), None);
    }

    /// A download whose body is in gives its connection permit to the next download while it
    /// finishes (hash and write of the last batch); finishing ones are bounded by `jobs` too,
    /// and a retry takes a connection permit again. Polled once each: no timing involved.
    #[test]
    fn a_download_past_its_body_hands_its_connection_on() {
        use futures_util::FutureExt;
        let t = Transport::new(FetchOptions {
            jobs: 1,
            ..FetchOptions::default()
        })
        .unwrap();
        let mut a = t.slot().now_or_never().expect("a free permit");
        assert!(
            t.slot().now_or_never().is_none(),
            "the only connection is a's"
        );
        a.body_done()
            .now_or_never()
            .expect("a free finishing permit");
        let mut b = t
            .slot()
            .now_or_never()
            .expect("b talks to the server while a finishes");
        assert!(
            b.body_done().now_or_never().is_none(),
            "one finishing download at a time (jobs 1)"
        );
        assert!(
            t.slot().now_or_never().is_none(),
            "b still holds its connection while it waits to finish"
        );
        drop(a);
        b.body_done().now_or_never().expect("a's finishing permit");
        let mut c = t.slot().now_or_never().expect("b's connection");
        assert!(
            b.again().now_or_never().is_none(),
            "a retry waits for a connection"
        );
        c.body_done()
            .now_or_never()
            .expect("b gave its finishing permit back");
        b.again().now_or_never().expect("c's connection");
    }
}

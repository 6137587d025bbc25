//! Segmented downloads: an item of at least `segment_min` bytes is fetched as several `Range`
//! segments in parallel (one connection each, only from `--jobs` permits that are free), written
//! in place into its partial file, then hashed in one read-back pass and checked against size and
//! strongest checksum before it is returned, like any download. Not under `--limit-rate` (the
//! rate is shared anyway; `download` paces pieces instead).
//!
//! Protects invariant 6: a segment is accepted only as a `206` whose `Content-Range` is exactly
//! the range asked for, out of the expected total; a server that ignores `Range` (a `200` to the
//! probe) gets the single-stream download instead. A failed segment is retried from where it got
//! to; when the download fails, the partial file is cut to the contiguous prefix that arrived, so
//! the next run resumes it as a single stream. (A kill -9 leaves a file of full length with
//! holes: the next run hashes it, sees the mismatch and starts again from zero.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::error::{Error, Result};
use super::location::redact;
use super::partial::{Pipe, algos, downloaded, hash_file, verify};
use super::transport::{Transport, parse_content_range, status_error};
use super::{Downloaded, Expect, Progress};

/// Try a segmented download of `url` (size `size`) into the empty `partial`. `Ok(None)`: not
/// segmented (no free connection, or the server does not do ranges) — use one stream.
pub(super) async fn download(
    f: &Arc<Transport>,
    url: &str,
    partial: &Path,
    expect: &Expect,
    size: u64,
    progress: &dyn Progress,
) -> Result<Option<Downloaded>> {
    let o = f.options();
    let wanted = o.segments.max(1);
    // each segment at least segment_min / segments long, so small files stay whole
    let by_size = usize::try_from(size / (o.segment_min / wanted as u64).max(1))
        .unwrap_or(usize::MAX)
        .clamp(1, wanted);
    let permits = f.extra_permits(by_size.saturating_sub(1));
    let n = permits.len() + 1;
    if n < 2 || !probe(f, url, size).await? {
        return Ok(None);
    }
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(partial)
        .await
        .map_err(Error::io("create", partial))?;
    file.set_len(size)
        .await
        .map_err(Error::io("truncate", partial))?;
    drop(file);

    let step = size.div_ceil(n as u64);
    let ranges: Vec<(u64, u64)> = (0..n as u64)
        .map(|i| (i * step, ((i + 1) * step).min(size)))
        .filter(|(a, b)| a < b)
        .collect();
    let done: Arc<Vec<AtomicU64>> =
        Arc::new(ranges.iter().map(|(a, _)| AtomicU64::new(*a)).collect());
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let mut set = tokio::task::JoinSet::new();
    for (i, &(start, end)) in ranges.iter().enumerate() {
        let task = Segment {
            f: f.clone(),
            url: url.to_owned(),
            path: partial.to_path_buf(),
            start,
            end,
            size,
            done: done.clone(),
            index: i,
            events: tx.clone(),
        };
        set.spawn(task.run());
    }
    drop(tx);
    let mut failure: Option<Error> = None;
    let mut open = true;
    while !set.is_empty() || open {
        tokio::select! {
            ev = rx.recv(), if open => match ev {
                Some(Event::Bytes(n)) => progress.bytes(n),
                Some(Event::Retry(attempt, msg)) => progress.retry(&redact(url), attempt, &msg),
                None => open = false,
            },
            joined = set.join_next(), if !set.is_empty() => {
                let res = match joined {
                    Some(Ok(r)) => r,
                    Some(Err(_)) => Err(Error::io("write", partial)(std::io::Error::other(
                        "a segment task stopped",
                    ))),
                    None => Ok(()),
                };
                if let Err(e) = res {
                    failure.get_or_insert(e);
                    set.abort_all();
                }
            }
        }
    }
    drop(permits);
    if let Some(e) = failure {
        keep_prefix(partial, &ranges, &done).await;
        return Err(e);
    }
    // One read-back pass: BLAKE3 and the upstream algorithm over exactly the bytes on disk.
    let digests = hash_file(partial, &algos(expect)).await?;
    match verify(url, expect, &digests) {
        Ok(()) => Ok(Some(downloaded(digests, url, 0))),
        Err(e) => {
            let _ = tokio::fs::remove_file(partial).await;
            Err(e)
        }
    }
}

/// Does the server answer `Range: bytes=0-0` with a `206` for exactly that byte of `size`?
async fn probe(f: &Transport, url: &str, size: u64) -> Result<bool> {
    let (resp, _) = match f.send_range(url, 0, Some(0)).await {
        Ok(r) => r,
        // let the single stream meet (and report) the trouble
        Err(_) => return Ok(false),
    };
    Ok(resp.status().as_u16() == 206 && range_is(&resp, 0, 0, size))
}

fn range_is(resp: &reqwest::Response, start: u64, end: u64, size: u64) -> bool {
    resp.headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_content_range)
        .is_some_and(|r| r.start == start && r.end == end && r.total == Some(size))
}

enum Event {
    Bytes(u64),
    Retry(u32, String),
}

struct Segment {
    f: Arc<Transport>,
    url: String,
    path: PathBuf,
    /// `[start, end)`
    start: u64,
    end: u64,
    size: u64,
    done: Arc<Vec<AtomicU64>>,
    index: usize,
    events: mpsc::UnboundedSender<Event>,
}

impl Segment {
    fn pos(&self) -> u64 {
        self.done
            .get(self.index)
            .map_or(self.start, |d| d.load(Ordering::Relaxed))
    }

    async fn run(self) -> Result<()> {
        let mut failures = 0;
        loop {
            match self.attempt().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let progress = Relay(&self.events);
                    let delay = self
                        .f
                        .retry_or_fail(&self.url, &mut failures, e, &progress)?;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One request for the rest of the segment, its bytes written in place through a [`Pipe`]
    /// (batched `writev`s on a blocking thread). Everything taken is written before this returns,
    /// so the position it leaves is what the file holds; when that cannot be made sure, the
    /// segment starts again from where this request started.
    async fn attempt(&self) -> Result<()> {
        let from = self.pos();
        if from >= self.end {
            return Ok(());
        }
        let mut pipe = Pipe::at(&self.path, from).await?;
        let r = self.transfer(&mut pipe, from).await;
        if let Err(e) = pipe.flush().await {
            if let Some(d) = self.done.get(self.index) {
                d.store(from, Ordering::Relaxed);
            }
            return Err(r.err().unwrap_or(e));
        }
        r
    }

    async fn transfer(&self, pipe: &mut Pipe, from: u64) -> Result<()> {
        let last = self.end - 1;
        let (mut resp, mut pace) = self.f.send_range(&self.url, from, Some(last)).await?;
        let status = resp.status().as_u16();
        if status != 206 {
            return Err(match status {
                200..=299 => Error::UnexpectedPartial {
                    url: redact(&self.url),
                },
                _ => status_error(&self.url, status),
            });
        }
        if !range_is(&resp, from, last, self.size) {
            return Err(Error::TooLong {
                url: redact(&self.url),
                expected: self.size,
            });
        }
        let mut pos = from;
        while let Some(chunk) = self.f.next_chunk(&mut resp, &self.url, &mut pace).await? {
            let n = chunk.len() as u64;
            if pos + n > self.end {
                return Err(Error::TooLong {
                    url: redact(&self.url),
                    expected: self.size,
                });
            }
            self.f.throttle_paced(n, &mut pace).await;
            pipe.write(chunk).await?;
            pos += n;
            if let Some(d) = self.done.get(self.index) {
                d.store(pos, Ordering::Relaxed);
            }
            let _ = self.events.send(Event::Bytes(n));
        }
        if pos < self.end {
            return Err(Error::ShortBody {
                url: redact(&self.url),
                received: pos - from,
                expected: self.end - from,
            });
        }
        Ok(())
    }
}

/// Retry notes of a segment task, relayed to the caller's [`Progress`].
struct Relay<'a>(&'a mpsc::UnboundedSender<Event>);

impl Progress for Relay<'_> {
    fn retry(&self, _url: &str, attempt: u32, error: &dyn std::fmt::Display) {
        let _ = self.0.send(Event::Retry(attempt, error.to_string()));
    }
}

/// After a failure: keep only the contiguous prefix that arrived (best effort).
async fn keep_prefix(path: &Path, ranges: &[(u64, u64)], done: &[AtomicU64]) {
    let mut prefix = 0;
    for (&(start, end), d) in ranges.iter().zip(done) {
        if start != prefix {
            break;
        }
        prefix = d.load(Ordering::Relaxed);
        if prefix < end {
            break;
        }
    }
    let cut = async {
        let file = tokio::fs::OpenOptions::new().write(true).open(path).await?;
        file.set_len(prefix).await?;
        file.sync_all().await
    };
    if prefix == 0 || cut.await.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
}

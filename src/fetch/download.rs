//! Item downloads over http(s): the body streams into a partial file through one
//! [`MultiHasher`], resumes with `Range` after a failure or from a previous run, and is checked
//! against size and strongest upstream checksum before it is returned.
//!
//! Protects invariant 6: a resume is accepted only as a 206 whose `Content-Range` starts at the
//! bytes on disk and ends at the expected size; a 200, a 416 or a foreign range discard the
//! partial file and start from 0; reading stops at the expected size; a short body is retried;
//! a mismatching file is deleted and never returned.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use super::client::{Fetcher, status_error};
use super::error::{Error, Result};
use super::location::redact;
use super::{Downloaded, Expect, Progress};
use crate::checksum::{Algo, Digests, MultiHasher};

const BUF: usize = 256 * 1024;

/// Download `url` into `partial` (see [`Fetcher::download`]).
pub(super) async fn http(
    f: &Fetcher,
    url: &str,
    partial: &Path,
    expect: &Expect,
    progress: &dyn Progress,
) -> Result<Downloaded> {
    let mut part = Partial::open(partial, &algos(expect), expect.size).await?;

    // A large item starting from nothing: in parallel segments, if connections are free and the
    // server does ranges (nothing is written before it said so).
    let o = f.options();
    if part.len == 0
        && o.segment_min > 0
        && let Some(size) = expect.size
        && size >= o.segment_min
        && let Some(done) =
            super::segmented::download(f, url, partial, expect, size, progress).await?
    {
        return Ok(done);
    }

    // A previous run may have left the whole file: verify it instead of fetching it again.
    if let Some(size) = expect.size
        && size > 0
        && part.len == size
        && !expect.checksums.is_empty()
    {
        let digests = part.digests();
        if verify(url, expect, &digests).is_ok() {
            return Ok(downloaded(digests, url, size));
        }
        f.note_restart(url, progress);
        part.reset().await?;
    }

    let mut failures = 0;
    let mut fresh_retry_used = false;
    loop {
        let result = match transfer(f, url, &mut part, expect, progress).await {
            Ok(Step::Restart) => {
                f.note_restart(url, progress);
                part.reset().await?;
                continue;
            }
            Ok(Step::Complete) => match part.flush().await {
                Ok(()) => {
                    let digests = part.digests();
                    verify(url, expect, &digests).map(|()| digests)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(digests) => return Ok(downloaded(digests, url, part.body_start)),
            Err(e) if e.is_integrity() => {
                let resumed = part.body_start > 0;
                part.remove().await?;
                if !resumed || fresh_retry_used {
                    return Err(e);
                }
                // The bytes kept from before may be what is wrong: once more from zero.
                fresh_retry_used = true;
                f.note_restart(url, progress);
                part = Partial::create(partial, &algos(expect)).await?;
            }
            Err(e) => match f.retry_or_fail(url, &mut failures, e, progress) {
                Ok(delay) => tokio::time::sleep(delay).await,
                Err(e) => {
                    part.keep_or_remove().await;
                    return Err(e);
                }
            },
        }
    }
}

/// What one request achieved.
enum Step {
    /// The body ended where it should; size and checksum are still to be checked.
    Complete,
    /// The server cannot resume from what is on disk: start again from 0.
    Restart,
}

/// One request: from `part.len` (with `Range` when > 0) to the end of the body.
async fn transfer(
    f: &Fetcher,
    url: &str,
    part: &mut Partial,
    expect: &Expect,
    progress: &dyn Progress,
) -> Result<Step> {
    let from = part.len;
    let (mut resp, mut pace) = f.send(url, from, None).await?;
    let status = resp.status().as_u16();
    match status {
        206 if from == 0 => {
            return Err(Error::UnexpectedPartial { url: redact(url) });
        }
        206 => {
            let range = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            let fits = range.is_some_and(|r| {
                r.start == from
                    && match (r.total, expect.size) {
                        (Some(total), Some(size)) => {
                            total == size && r.end.checked_add(1) == Some(total)
                        }
                        (Some(total), None) => r.end.checked_add(1) == Some(total),
                        (None, _) => true,
                    }
            });
            if !fits {
                return Ok(Step::Restart);
            }
        }
        416 if from > 0 => return Ok(Step::Restart),
        200..=299 => {
            if from > 0 {
                // The server ignored Range and sends everything: take it from byte 0.
                f.note_restart(url, progress);
                part.reset().await?;
            }
        }
        _ => return Err(status_error(url, status)),
    }
    part.body_start = part.len;

    let length = resp.content_length();
    if let (Some(size), Some(n)) = (expect.size, length)
        && part.len.saturating_add(n) > size
    {
        return Err(Error::TooLong {
            url: redact(url),
            expected: size,
        });
    }
    while let Some(chunk) = f.next_chunk(&mut resp, url, &mut pace).await? {
        let n = chunk.len() as u64;
        if let Some(size) = expect.size
            && part.len.saturating_add(n) > size
        {
            return Err(Error::TooLong {
                url: redact(url),
                expected: size,
            });
        }
        f.throttle_paced(n, &mut pace).await;
        part.write(&chunk).await?;
        progress.bytes(n);
    }

    let received = part.len - part.body_start;
    match (length, expect.size) {
        (Some(expected), _) if received != expected => Err(Error::ShortBody {
            url: redact(url),
            received,
            expected,
        }),
        // no length announced: a body that ends early looks like a clean end
        (None, Some(size)) if part.len < size => Err(Error::ShortBody {
            url: redact(url),
            received,
            expected: size - part.body_start,
        }),
        _ => Ok(Step::Complete),
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

/// BLAKE3 plus the strongest expected algorithm, or every algorithm when none is expected.
pub(super) fn algos(expect: &Expect) -> Vec<Algo> {
    match expect.checksums.strongest() {
        Some((algo, _)) => vec![algo],
        None => vec![Algo::Md5, Algo::Sha256, Algo::Sha512],
    }
}

/// Size, then strongest checksum (hex, case-insensitive).
pub(super) fn verify(url: &str, expect: &Expect, digests: &Digests) -> Result<()> {
    if let Some(size) = expect.size
        && digests.size != size
    {
        return Err(Error::SizeMismatch {
            url: redact(url),
            expected: size,
            found: digests.size,
        });
    }
    if let Some((algo, want)) = expect.checksums.strongest() {
        let found = digests.upstream.get(algo).unwrap_or_default();
        if !found.eq_ignore_ascii_case(want.trim()) {
            return Err(Error::ChecksumMismatch {
                url: redact(url),
                algo,
                expected: want.to_owned(),
                found: found.to_owned(),
            });
        }
    }
    Ok(())
}

pub(super) fn downloaded(digests: Digests, url: &str, resumed_from: u64) -> Downloaded {
    Downloaded {
        digests,
        url: redact(url),
        resumed_from,
    }
}

/// The partial file and the hash state of exactly the bytes in it.
pub(super) struct Partial {
    path: PathBuf,
    out: BufWriter<File>,
    algos: Vec<Algo>,
    hasher: MultiHasher,
    /// Bytes written (all of them hashed).
    pub(super) len: u64,
    /// Offset at which the current response body started.
    pub(super) body_start: u64,
}

impl Partial {
    /// Open or create `path`, re-hashing what it holds; more than `limit` bytes are discarded.
    pub(super) async fn open(path: &Path, algos: &[Algo], limit: Option<u64>) -> Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .await
            .map_err(Error::io("open", path))?;
        let mut hasher = MultiHasher::new(algos);
        let mut buf = vec![0u8; BUF];
        loop {
            let n = file.read(&mut buf).await.map_err(Error::io("read", path))?;
            if n == 0 {
                break;
            }
            hasher.update(buf.get(..n).unwrap_or_default());
        }
        let len = hasher.size();
        let mut part = Partial {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(BUF, file),
            algos: algos.to_vec(),
            hasher,
            len,
            body_start: 0,
        };
        if limit.is_some_and(|l| len > l) {
            part.reset().await?;
        }
        Ok(part)
    }

    /// Create `path` empty (truncating it).
    pub(super) async fn create(path: &Path, algos: &[Algo]) -> Result<Self> {
        let file = File::create(path)
            .await
            .map_err(Error::io("create", path))?;
        Ok(Partial {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(BUF, file),
            algos: algos.to_vec(),
            hasher: MultiHasher::new(algos),
            len: 0,
            body_start: 0,
        })
    }

    pub(super) async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .write_all(data)
            .await
            .map_err(Error::io("write", &self.path))?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }

    pub(super) async fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .await
            .map_err(Error::io("write", &self.path))
    }

    /// Empty the file and the hash state.
    pub(super) async fn reset(&mut self) -> Result<()> {
        self.flush().await?;
        let file = self.out.get_mut();
        file.set_len(0)
            .await
            .map_err(Error::io("truncate", &self.path))?;
        file.seek(SeekFrom::Start(0))
            .await
            .map_err(Error::io("seek", &self.path))?;
        self.hasher = MultiHasher::new(&self.algos);
        self.len = 0;
        self.body_start = 0;
        Ok(())
    }

    pub(super) fn digests(&self) -> Digests {
        self.hasher.clone().finish()
    }

    pub(super) async fn remove(self) -> Result<()> {
        drop(self.out);
        match tokio::fs::remove_file(&self.path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &self.path)(e)),
        }
    }

    /// After a failure that ends the download: keep the bytes for a later resume, or remove
    /// the file when it holds none. Best effort: the failure is what gets reported.
    pub(super) async fn keep_or_remove(mut self) {
        if self.flush().await.is_err() || self.len == 0 {
            let _ = self.remove().await;
        }
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
}

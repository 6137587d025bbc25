//! Item downloads over http(s): the body streams into a partial file through one
//! [`MultiHasher`], resumes with `Range` after a failure or from a previous run, and is checked
//! against size and strongest upstream checksum before it is returned. Under `--limit-rate`, an
//! item of known size is asked for in pieces of 1/8 s of the rate (at least 16 KiB), each paid to
//! the rate limit before its request is sent, so what the server sends follows the rate whatever
//! the socket buffers in between would absorb; a server that answers the first piece with a `200`
//! has that whole body read as a plain (read-throttled) answer, other answers that are not
//! exactly the range get one plain request.
//!
//! Protects invariant 6: a resume is accepted only as a 206 whose `Content-Range` starts at the
//! bytes on disk and ends at the expected size, a piece only as a 206 of exactly the range asked
//! for; a 200, a 416 or a foreign range discard the partial file and start from 0 (a first piece
//! answered so writes nothing before the plain path takes over); reading stops at the
//! expected size; a short body is retried; a mismatching file is deleted and never returned.
//!
//! [`MultiHasher`]: crate::checksum::MultiHasher

use std::path::Path;
use std::sync::Arc;

use super::error::{Error, Result};
use super::location::redact;
use super::partial::{Partial, algos, downloaded, verify};
use super::transport::{Pace, Slot, Transport, parse_content_range, status_error};
use super::{Downloaded, Expect, Held, Progress};

/// Download `url` into `partial` (see [`Fetcher::download`](super::Fetcher::download)).
pub(super) async fn http(
    f: &Arc<Transport>,
    url: &str,
    partial: &Path,
    held: Option<&Held>,
    expect: &Expect,
    progress: &dyn Progress,
    slot: &mut Slot<'_>,
) -> Result<Downloaded> {
    let mut part = Partial::open(partial, &algos(expect), expect.size, held).await?;

    // A large item starting from nothing: in parallel segments, if connections are free and the
    // server does ranges (nothing is written before it said so). Not under `--limit-rate`: the
    // rate is shared anyway, and paced pieces keep what the server sends at the rate.
    let o = f.options();
    if part.len == 0
        && f.limit_rate().is_none()
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
        let digests = part.digests().await?;
        if verify(url, expect, &digests).is_ok() {
            return Ok(downloaded(digests, url, size));
        }
        f.note_restart(url, progress);
        part.reset().await?;
    }

    let mut failures = 0;
    let mut fresh_retry_used = false;
    loop {
        slot.again().await;
        let result = match transfer(f, url, &mut part, expect, progress).await {
            Ok(Step::Restart) => {
                f.note_restart(url, progress);
                part.reset().await?;
                continue;
            }
            Ok(Step::Complete) => {
                // the connection may serve the next download while the last batch is hashed
                slot.body_done().await;
                part.digests()
                    .await
                    .and_then(|digests| verify(url, expect, &digests).map(|()| digests))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(digests) => return Ok(downloaded(digests, url, part.body_start)),
            Err(e) if e.is_integrity() => {
                let resumed = part.body_start > 0;
                if !resumed || fresh_retry_used {
                    part.remove().await?;
                    return Err(e);
                }
                // The bytes kept from before may be what is wrong: once more from zero, in the
                // same file (a held file keeps its name and its lock).
                fresh_retry_used = true;
                f.note_restart(url, progress);
                part.reset().await?;
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

/// How the paced pieces ended.
enum Paced {
    /// Every piece arrived (or a restart is due).
    Done(Step),
    /// The first piece was answered with the whole body (a `2xx` other than `206`).
    Whole(Box<(reqwest::Response, Pace)>),
    /// The first piece was answered otherwise: send one plain request.
    Unpaced,
}

/// The length of one paced piece under `--limit-rate`: this share of a second of the rate…
const PIECE_SECONDS: f64 = 0.125;
/// …but at least this many bytes.
const PIECE_MIN: u64 = 16 * 1024;

/// From `part.len` to the end of the body: paced pieces under `--limit-rate` when the size is
/// known and the server answers them exactly, else one request (with `Range` when > 0).
async fn transfer(
    f: &Transport,
    url: &str,
    part: &mut Partial,
    expect: &Expect,
    progress: &dyn Progress,
) -> Result<Step> {
    let from = part.len;
    let paced = match (f.limit_rate(), expect.size) {
        (Some(rate), Some(size)) if from < size => {
            let piece = ((rate as f64 * PIECE_SECONDS) as u64).max(PIECE_MIN);
            match pieces(f, url, part, size, piece, progress).await? {
                Paced::Done(step) => return Ok(step),
                Paced::Whole(answer) => Some(*answer),
                Paced::Unpaced => None,
            }
        }
        _ => None,
    };
    let (mut resp, mut pace) = match paced {
        Some(answer) => answer,
        None => f.send(url, from, None).await?,
    };
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
        part.write(chunk).await?;
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

/// Under `--limit-rate`: the rest of the item as `Range` requests of `piece` bytes, each paid to
/// the rate limit before it is sent. The server then never sends more than was paid plus one
/// piece, whatever the socket buffers between it and us hold (a plain stream lets them absorb
/// hundreds of KiB ahead of our reads, which the server sees as bursts).
///
/// The first piece not answered by a `206` of exactly that range out of `size` (a server without
/// ranges, a changed file) writes nothing: a `200`'s whole body is then read like a plain answer
/// ([`Paced::Whole`]; dropping it would waste what the buffers already took), anything else makes
/// one plain request.
async fn pieces(
    f: &Transport,
    url: &str,
    part: &mut Partial,
    size: u64,
    piece: u64,
    progress: &dyn Progress,
) -> Result<Paced> {
    let start = part.len;
    while part.len < size {
        let from = part.len;
        let to = from.saturating_add(piece).min(size) - 1;
        f.throttle(to - from + 1).await;
        let (mut resp, mut pace) = f.send_range(url, from, Some(to)).await?;
        let status = resp.status().as_u16();
        let exact = status == 206
            && resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range)
                .is_some_and(|r| r.start == from && r.end == to && r.total == Some(size));
        if !exact {
            if (200..300).contains(&status) || status == 416 {
                if from != start {
                    // the answers changed in the middle: start again, as a plain resume would
                    return Ok(Paced::Done(Step::Restart));
                }
                if status != 206 && (200..300).contains(&status) {
                    return Ok(Paced::Whole(Box::new((resp, pace))));
                }
                return Ok(Paced::Unpaced);
            }
            return Err(status_error(url, status));
        }
        if from == start {
            part.body_start = from;
        }
        while let Some(chunk) = f.next_chunk(&mut resp, url, &mut pace).await? {
            let n = chunk.len() as u64;
            if part.len.saturating_add(n) > to + 1 {
                return Err(Error::TooLong {
                    url: redact(url),
                    expected: size,
                });
            }
            part.write(chunk).await?;
            progress.bytes(n);
        }
        if part.len <= to {
            return Err(Error::ShortBody {
                url: redact(url),
                received: part.len - from,
                expected: to + 1 - from,
            });
        }
    }
    Ok(Paced::Done(Step::Complete))
}

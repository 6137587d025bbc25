//! Sources on the local file system (`file://…` or a plain directory): the same API as http,
//! read through the same hasher, a missing file is the same "not found" as a 404.
//!
//! Protects invariant 6: a local item is copied into the partial file through [`MultiHasher`]
//! and checked against size and strongest checksum like a downloaded one; reading stops at the
//! expected size; a local document is bounded by `max_document_size`.
//!
//! [`MultiHasher`]: crate::checksum::MultiHasher

use std::path::Path;

use tokio::fs::File;
use tokio::io::AsyncReadExt;

use super::error::{Error, Result};
use super::partial::{Partial, algos, downloaded, verify};
use super::transport::Transport;
use super::{Downloaded, Expect, Held, Progress};

const BUF: usize = 256 * 1024;

/// Read a local metadata document whole, refusing more than `limit` bytes.
pub(super) async fn read_document(path: &Path, url: &str, limit: u64) -> Result<Vec<u8>> {
    // One trip through the blocking pool, into a buffer of the file's size: tokio's File reads
    // at most 2 MiB per trip into a buffer grown from nothing (a 2.5 MB document took ~100
    // context switches, issue 13 item 5).
    let file = open(path, url).await?.into_std().await;
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let len = file.metadata().map_or(0, |m| m.len()).min(limit);
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map(|_| bytes)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let bytes = read.map_err(Error::io("read", path))?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge {
            url: url.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// Copy the local file `path` into `partial` (from scratch) and check it against `expect`.
pub(super) async fn download(
    f: &Transport,
    path: &Path,
    url: &str,
    partial: &Path,
    held: Option<&Held>,
    expect: &Expect,
    progress: &dyn Progress,
) -> Result<Downloaded> {
    let mut src = open(path, url).await?;
    let mut part = Partial::create(partial, &algos(expect), held).await?;
    let result = async {
        loop {
            // a fresh buffer per read: the bytes go to the writer as they are, not copied
            let mut buf = bytes::BytesMut::zeroed(BUF);
            let n = src.read(&mut buf).await.map_err(Error::io("read", path))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            let chunk = buf.freeze();
            if let Some(size) = expect.size
                && part.len.saturating_add(n as u64) > size
            {
                return Err(Error::TooLong {
                    url: url.to_owned(),
                    expected: size,
                });
            }
            f.count_bytes(n as u64);
            f.throttle(n as u64).await;
            part.write(chunk).await?;
            progress.bytes(n as u64);
        }
        let digests = part.digests().await?;
        verify(url, expect, &digests).map(|()| digests)
    }
    .await;
    match result {
        Ok(digests) => Ok(downloaded(digests, url, 0)),
        Err(e) => {
            part.remove().await?;
            Err(e)
        }
    }
}

async fn open(path: &Path, url: &str) -> Result<File> {
    File::open(path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                urls: vec![url.to_owned()],
            }
        } else {
            Error::io("open", path)(e)
        }
    })
}

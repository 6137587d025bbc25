//! The partial file of an item and what every way of filling it shares: [`Partial`] (the file
//! and the hash state of exactly its bytes), which algorithms to compute ([`algos`]), the final
//! size and checksum comparison ([`verify`]) and the read-back hash of a file written out of
//! order ([`hash_file`]). Used by `download`, `segmented` and `local`; uses nothing of the
//! transport.
//!
//! Protects invariant 6: every byte written goes once through [`MultiHasher`], and [`verify`]
//! compares size and the strongest upstream checksum before anything is returned.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};

use super::error::{Error, Result};
use super::location::redact;
use super::{Downloaded, Expect};
use crate::checksum::{Algo, Digests, MultiHasher};

const BUF: usize = 256 * 1024;
/// Read buffer of the read-back pass (large items only).
const READ_BACK_BUF: usize = 1024 * 1024;

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

/// BLAKE3 and `algos` over the whole file at `path` (a read-back pass).
pub(super) async fn hash_file(path: &Path, algos: &[Algo]) -> Result<Digests> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(Error::io("open", path))?;
    let mut hasher = MultiHasher::new(algos);
    let mut buf = vec![0u8; READ_BACK_BUF];
    loop {
        let n = file.read(&mut buf).await.map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hasher.finish())
}

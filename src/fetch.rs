//! Fetching: metadata documents and item files from an upstream SimpleStreams mirror over
//! http(s), `file://` or a plain local directory, with `--mirror` fallbacks on 404, retries with
//! back-off, resumable downloads, a shared rate limit, a low-speed limit and request deadline, and
//! conditional requests for metadata documents ([`DocumentCache`]).
//!
//! Protects invariant 6: a checksum or size that does not match, a 200 or a foreign range to a
//! `Range` request, a short body and a body longer than announced are errors or restarts, never
//! accepted content. Every byte of an item goes once through [`MultiHasher`] on its way to disk,
//! and a download is returned only after its size and strongest upstream checksum were compared.
//!
//! The byte path (issue 13 item 4): the `Bytes` hyper hands over are neither copied nor hashed on
//! the runtime's threads; they collect into batches of at least 256 KiB that a blocking thread
//! hashes (BLAKE3 and the upstream algorithm, one pass) and writes with one `writev`, while the
//! next batch arrives (`partial::Pipe`; segments use the same pipe without the hash).
//!
//! Layout, lowest first; each module uses only modules listed before it (no circle):
//! `error`, `options` (knobs, `--limit-rate` parsing), `location` (source, mirrors, start
//! document rules of spec §2.1), `rate` (token bucket), `tls` (rustls configuration, roots loaded
//! by the first certificate to verify) → `transport` (the reqwest client,
//! requests, permits, retries, counters, the pace of a request) → `partial` (the partial file,
//! its hash state, the batched write pipe, the final check) → `local` (`file://` and paths), `segmented` (large items as
//! parallel `Range` segments, one read-back hash pass), `download` (items streamed into a
//! partial file, resume; hands large items to `segmented`) → `client` ([`Fetcher`]: documents,
//! mirrors, which of the three fetches an item).
//!
//! The library never prints: everything a user may want to see goes through [`Progress`].
//!
//! [`MultiHasher`]: crate::checksum::MultiHasher

mod client;
mod download;
mod error;
mod local;
mod location;
mod options;
mod partial;
mod rate;
mod segmented;
#[cfg(test)]
mod tests;
mod tls;
mod transport;

use crate::checksum::{Checksums, Digests};

pub use client::Fetcher;
pub use error::{Error, Result};
pub use location::{Location, redact, split_start};
pub use options::{FetchOptions, parse_rate, parse_speed_limit};
pub use transport::Stats;

/// What the metadata says about an item: checked after the body, before [`Fetcher::download`]
/// returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// Exact size in bytes; also bounds how much is read.
    pub size: Option<u64>,
    /// Upstream checksums; the strongest present is compared.
    pub checksums: Checksums,
}

/// A metadata document, read whole (bounded by [`FetchOptions::max_document_size`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The URL that answered (a password in it is replaced by `***`).
    pub url: String,
    /// Validators to send next time (see [`DocumentCache`]), if the server gave usable ones.
    pub validators: Option<Validators>,
    /// The server answered `304 Not Modified`: `bytes` are the stored document.
    pub not_modified: bool,
}

/// HTTP validators of a document: an `ETag`, and a `Last-Modified` only when it was at least
/// 60 s older than the response's `Date` (a date within the same second as a rewrite is a weak
/// validator, RFC 9110 §8.8.2.2: two generations written in one second would look the same).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Documents kept from earlier runs, for conditional requests: [`Fetcher::get_document`] sends
/// `If-None-Match`/`If-Modified-Since` for a URL that has validators here, and on `304` takes the
/// stored bytes instead (they go through the same signature check and parser as fresh ones).
pub trait DocumentCache: Send + Sync + std::fmt::Debug {
    /// Validators for `url` (password redacted), only if [`Self::body`] can produce its bytes.
    fn validators(&self, url: &str) -> Option<Validators>;
    /// The stored bytes of `url` (password redacted); `None` makes the request unconditional.
    fn body(&self, url: &str) -> Option<Vec<u8>>;
}

/// An item that is complete in its partial file and matches its [`Expect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Size, BLAKE3 and the upstream algorithm(s) that were computed.
    pub digests: Digests,
    /// The URL that answered (a password in it is replaced by `***`).
    pub url: String,
    /// Offset at which the body that completed the file started (0: fetched from the start).
    pub resumed_from: u64,
}

/// A partial file the caller already opened (read + write) and holds, e.g. under an `flock`:
/// [`Fetcher::download_held`] writes through this handle instead of opening the path again (one
/// `open`, `fstat` and `close` less per item) and never unlinks the name (a failure truncates
/// it), so the caller's lock stays on the file at the name until the caller lets go.
#[derive(Debug, Clone)]
pub struct Held {
    pub file: std::sync::Arc<std::fs::File>,
    /// Its length when opened (its position is 0): 0 skips the re-hash of earlier bytes.
    pub len: u64,
}

/// Receives what happens during fetching; every method defaults to doing nothing.
pub trait Progress: Send + Sync {
    /// `n` more bytes of an item body were written.
    fn bytes(&self, n: u64) {
        let _ = n;
    }
    /// A request to `url` failed with `error` and will be tried again (`attempt` counts from 1).
    fn retry(&self, url: &str, attempt: u32, error: &dyn std::fmt::Display) {
        let _ = (url, attempt, error);
    }
    /// The partial file of `url` was discarded and the download starts again from byte 0.
    fn restart(&self, url: &str) {
        let _ = url;
    }
}

/// A [`Progress`] that ignores everything (tests, quiet runs).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

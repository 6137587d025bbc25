//! Errors of the fetch layer and their classification (retryable or fatal).
//!
//! Protects invariant 6: size and checksum mismatches, short and overlong bodies are distinct
//! errors naming the URL, so content that is not what was asked for can never pass as a success.
//! URLs in messages have their password replaced by `***`.

use std::path::PathBuf;
use std::time::Duration;

use crate::checksum::Algo;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while fetching; see [`Error::is_retryable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Every URL answered 404 (or the local file does not exist).
    #[error("not found (HTTP 404 or no such file) at {}", quoted(urls))]
    NotFound { urls: Vec<String> },
    /// Connecting, sending or receiving failed below HTTP.
    #[error("cannot fetch `{url}`")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP status that is neither content nor 404.
    #[error("`{url}` answered http {status}")]
    Status { url: String, status: u16 },
    /// No byte arrived for `timeout`.
    #[error("`{url}` sent nothing for {} ms", timeout.as_millis())]
    Stall { url: String, timeout: Duration },
    /// Fewer than `limit` bytes per second for `time` (`--speed-limit`, `--speed-time`).
    #[error("`{url}` was slower than {limit} bytes/s for {} s", time.as_secs())]
    TooSlow {
        url: String,
        limit: u64,
        time: Duration,
    },
    /// The request did not finish within `--request-timeout`.
    #[error("`{url}` did not finish within {} s", timeout.as_secs())]
    Deadline { url: String, timeout: Duration },
    /// The body ended before the announced length.
    #[error("`{url}` ended after {received} of {expected} bytes")]
    ShortBody {
        url: String,
        received: u64,
        expected: u64,
    },
    /// The body is longer than the size from the metadata; reading stopped.
    #[error("`{url}` is longer than the expected {expected} bytes")]
    TooLong { url: String, expected: u64 },
    /// A metadata document is larger than `max_document_size`.
    #[error("`{url}` is larger than the {limit}-byte limit for metadata documents")]
    TooLarge { url: String, limit: u64 },
    /// A 206 came back to a request that had no `Range`.
    #[error("`{url}` answered 206 to a request without range")]
    UnexpectedPartial { url: String },
    /// The complete body does not have the size from the metadata.
    #[error("size mismatch for `{url}`: expected {expected} bytes, found {found}")]
    SizeMismatch {
        url: String,
        expected: u64,
        found: u64,
    },
    /// The complete body does not have the strongest checksum from the metadata.
    #[error("{} mismatch for `{url}`: expected {expected}, found {found}", algo.name())]
    ChecksumMismatch {
        url: String,
        algo: Algo,
        expected: String,
        found: String,
    },
    /// Reading or writing a local file failed.
    #[error("cannot {op} `{}`", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `base + path` resolves outside the base (`..` or `%2e%2e` in a path from metadata).
    #[error("`{url}` resolves outside the mirror base `{base}`; refusing to request it")]
    OutsideBase { url: String, base: String },
    /// The source is neither http(s), `file://` nor a local path.
    #[error("unsupported scheme in `{url}`: use http://, https://, file:// or a local directory")]
    UnsupportedScheme { url: String },
    /// A `--limit-rate` value that cannot be parsed.
    #[error("invalid rate `{value}`: {reason}")]
    InvalidRate { value: String, reason: &'static str },
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the http client")]
    Client {
        #[source]
        source: reqwest::Error,
    },
    /// The TLS configuration could not be built (no protocol version the provider supports).
    #[error("cannot set up TLS for the http client")]
    Tls {
        #[source]
        source: rustls::Error,
    },
}

impl Error {
    /// Whether trying the same URL again may succeed (network trouble, stalls, slow or late
    /// requests, short bodies,
    /// 408, 429 and 5xx other than 501 and 505). Everything else is fatal for that URL.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Http { source, .. } => {
                !(source.is_builder()
                    || source.is_redirect()
                    || chain_has_certificate_error(source))
            }
            Error::Status { status, .. } => is_retryable_status(*status),
            Error::Stall { .. }
            | Error::ShortBody { .. }
            | Error::TooSlow { .. }
            | Error::Deadline { .. } => true,
            _ => false,
        }
    }

    /// 404 (or a missing local file): the next `--mirror` is tried.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The content is not what the metadata describes (size, checksum, overlong body).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Error::SizeMismatch { .. } | Error::ChecksumMismatch { .. } | Error::TooLong { .. }
        )
    }

    pub(super) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    }
}

pub(super) fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (status >= 500 && status != 501 && status != 505)
}

/// Whether a rustls certificate error is anywhere in `err`'s chain (a certificate that does not
/// verify will not verify on the next attempt either). hyper-util hands the
/// connector's failure over as an `io::Error` wrapping tokio-rustls' `io::Error` wrapping the
/// `rustls::Error`; `io::Error::source` skips the error it wraps, so nested `io::Error`s are
/// unwrapped by hand (missing that, an unknown issuer was retried like a network error, five
/// times with back-off).
fn chain_has_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if matches!(rustls_in(e), Some(rustls::Error::InvalidCertificate(_))) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The `rustls::Error` that `e` is, or that the `io::Error`s it is wrap.
fn rustls_in<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    let mut io = e.downcast_ref::<std::io::Error>()?;
    loop {
        let inner = io.get_ref()?;
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        io = inner.downcast_ref::<std::io::Error>()?;
    }
}

fn quoted(urls: &[String]) -> String {
    if urls.is_empty() {
        return "no url".to_owned();
    }
    urls.iter()
        .map(|u| format!("`{u}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain hyper-util builds for a refused certificate: io::Error(Other) around
    /// io::Error(InvalidData) around the rustls error, under an outer error whose `source` is the
    /// outer io::Error. Found, and not retried; any other rustls error is not a certificate error.
    #[test]
    fn a_certificate_error_wrapped_in_two_io_errors_is_found() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connect")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrap = |r: rustls::Error| {
            Outer(std::io::Error::other(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                r,
            )))
        };
        let cert = wrap(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert!(chain_has_certificate_error(&cert));
        let other = wrap(rustls::Error::General("handshake".into()));
        assert!(!chain_has_certificate_error(&other));
        assert!(!chain_has_certificate_error(&Outer(std::io::Error::other(
            "reset"
        ))));
    }

    #[test]
    fn messages() {
        let e = Error::NotFound {
            urls: vec!["http://a/x".into(), "http://b/x".into()],
        };
        assert_eq!(
            e.to_string(),
            "not found (HTTP 404 or no such file) at `http://a/x`, `http://b/x`"
        );
        let e = Error::ChecksumMismatch {
            url: "http://a/x".into(),
            algo: Algo::Sha256,
            expected: "aa".into(),
            found: "bb".into(),
        };
        assert_eq!(
            e.to_string(),
            "sha256 mismatch for `http://a/x`: expected aa, found bb"
        );
        assert!(e.is_integrity() && !e.is_retryable());
    }

    #[test]
    fn statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 410, 416, 501, 505] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }
}

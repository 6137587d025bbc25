//! The knobs of a [`Fetcher`](super::Fetcher) and the parser of `--limit-rate` values.
//!
//! Protects invariant 6 indirectly: `max_document_size` bounds what is read into memory before a
//! signature check, and `stall_timeout` turns a silent connection into a retryable error instead
//! of a hang (sstream-mirror's known bug, spec §3.8); `speed_limit`/`speed_time` do the same for
//! a trickle (1 byte every 2 s never trips a stall timeout) and `request_timeout` bounds any
//! request.

use std::time::Duration;

use super::error::{Error, Result};

/// How fetching behaves; [`Default`] gives the documented values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Downloads running at once (at least 1).
    pub jobs: usize,
    /// Retries of one URL after the first failure (connect, timeout, stall, short body, 5xx).
    pub retries: u32,
    /// First back-off delay; doubles with every retry, with jitter, up to `backoff_max`.
    pub backoff_base: Duration,
    /// Upper bound of one back-off delay.
    pub backoff_max: Duration,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// No byte for that long (headers or body) is a retryable error.
    pub stall_timeout: Duration,
    /// A request slower than `speed_limit` bytes per second over `speed_time` is a retryable
    /// error (curl's `--speed-limit`/`--speed-time`); 0 turns the check off.
    pub speed_limit: u64,
    pub speed_time: Duration,
    /// Longest time one request may take, head to last byte; `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Items of at least this many bytes are fetched as parallel `Range` segments (0: never).
    pub segment_min: u64,
    /// Most segments (connections, taken from the free `jobs` permits) for one item.
    pub segments: usize,
    /// Bytes per second over all concurrent transfers of the [`Fetcher`](super::Fetcher).
    pub limit_rate: Option<u64>,
    pub user_agent: String,
    /// Largest metadata document read into memory.
    pub max_document_size: u64,
    /// Use `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` from the environment.
    pub env_proxy: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            jobs: 4,
            retries: 5,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            speed_limit: 1024,
            speed_time: Duration::from_secs(20),
            request_timeout: None,
            segment_min: 32 * 1024 * 1024,
            segments: 4,
            limit_rate: None,
            user_agent: concat!("streamvault/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_document_size: 256 * 1024 * 1024,
            env_proxy: true,
        }
    }
}

/// Parse a rate in bytes per second: `1048576`, `500k`, `10M`, `1.5m`, `1G` (binary multiples,
/// as curl's `--limit-rate`; an optional trailing `B` or `/s` is accepted).
pub fn parse_rate(value: &str) -> Result<u64> {
    let invalid = |reason| Error::InvalidRate {
        value: value.to_owned(),
        reason,
    };
    let s = value.trim();
    let s = s.strip_suffix("/s").unwrap_or(s);
    let s = s.strip_suffix(['B', 'b']).unwrap_or(s);
    let (number, multiplier) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (s.get(..i), 1024.0),
        Some((i, 'm' | 'M')) => (s.get(..i), 1024.0 * 1024.0),
        Some((i, 'g' | 'G')) => (s.get(..i), 1024.0 * 1024.0 * 1024.0),
        Some(_) => (Some(s), 1.0),
        None => return Err(invalid("empty")),
    };
    let number = number.unwrap_or_default().trim();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(invalid(
            "expected a number with an optional k, M or G suffix",
        ));
    }
    let n: f64 = number
        .parse()
        .map_err(|_| invalid("expected a number with an optional k, M or G suffix"))?;
    let bytes = (n * multiplier).round();
    if bytes < 1.0 {
        return Err(invalid("must be at least 1 byte per second"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(invalid("too large"));
    }
    Ok(bytes as u64)
}

/// A `--speed-limit` value: `0` (no check) or a rate as [`parse_rate`].
pub fn parse_speed_limit(value: &str) -> Result<u64> {
    if value.trim() == "0" {
        return Ok(0);
    }
    parse_rate(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("1048576").unwrap(), 1_048_576);
        assert_eq!(parse_rate("500k").unwrap(), 500 * 1024);
        assert_eq!(parse_rate("500K").unwrap(), 500 * 1024);
        assert_eq!(parse_rate("10M").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_rate("1.5m").unwrap(), 1536 * 1024);
        assert_eq!(parse_rate("2G").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_rate(" 10MB/s ").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_speed_limit("0").unwrap(), 0);
        assert_eq!(parse_speed_limit("1k").unwrap(), 1024);
        for bad in ["", "k", "0", "-5", "ten", "10X", "1e3", "0.0001"] {
            let e = parse_rate(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidRate { .. }), "{bad}");
            assert!(e.to_string().starts_with("invalid rate `"), "{e}");
        }
    }
}

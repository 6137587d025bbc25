//! `Range` and `If-Range` request headers: which bytes of the file a response carries.
//!
//! Protects resumed downloads: a single satisfiable range is answered exactly (206), an
//! unsatisfiable one with 416 and `bytes */len`, and anything this server does not support
//! (several ranges, bad syntax, an `If-Range` validator that no longer matches) with the whole file,
//! never with bytes the client did not ask for under a 206.

/// What a request's `Range` header asks of a file of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RangeRequest {
    /// No usable range: send the whole file with 200.
    Full,
    /// Bytes `start..=end` (both inside the file): 206.
    Part { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Interpret a `Range` header value for a file of `len` bytes.
pub(super) fn parse(header: &str, len: u64) -> RangeRequest {
    let header = header.trim();
    let Some((unit, spec)) = header.split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // suffix: the last n bytes
        let Some(n) = number(last) else {
            return RangeRequest::Full;
        };
        if n == 0 || len == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Part {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    let Some(start) = number(first) else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(end) if end >= start => end,
            _ => return RangeRequest::Full,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Part {
        start,
        end: end.min(len - 1),
    }
}

/// Does an `If-Range` value still match this representation? (Strong ETag comparison, or the
/// exact `Last-Modified` date.)
pub(super) fn if_range_matches(value: &str, etag: &str, last_modified: &str) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        value == etag
    } else {
        value == last_modified
    }
}

/// Does an `If-None-Match` value list this ETag (weak comparison, `*` matches anything)?
pub(super) fn none_match_hits(value: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = strip(etag);
    value
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == ours)
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::RangeRequest::{Full, Part, Unsatisfiable};
    use super::*;

    #[test]
    fn range_forms() {
        assert_eq!(parse("bytes=0-9", 100), Part { start: 0, end: 9 });
        assert_eq!(parse("bytes=10-", 100), Part { start: 10, end: 99 });
        assert_eq!(parse("bytes=-10", 100), Part { start: 90, end: 99 });
        assert_eq!(parse("bytes=-1000", 100), Part { start: 0, end: 99 });
        assert_eq!(parse("bytes=50-1000", 100), Part { start: 50, end: 99 });
        assert_eq!(parse("BYTES = 1-2", 100), Part { start: 1, end: 2 });
        assert_eq!(parse("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse("bytes=5-1", 100), Full);
        assert_eq!(parse("bytes=+5-", 100), Full);
        assert_eq!(parse("bytes=a-b", 100), Full);
        assert_eq!(parse("items=0-1", 100), Full);
        assert_eq!(
            parse("bytes=0-18446744073709551615", 10),
            Part { start: 0, end: 9 }
        );
        assert_eq!(parse("bytes=99999999999999999999-", 10), Full);
    }

    #[test]
    fn validators() {
        assert!(none_match_hits("\"a\"", "\"a\""));
        assert!(none_match_hits("\"x\", W/\"a\"", "\"a\""));
        assert!(none_match_hits("*", "\"a\""));
        assert!(!none_match_hits("\"b\"", "\"a\""));
        assert!(if_range_matches("\"a\"", "\"a\"", "d"));
        assert!(!if_range_matches("W/\"a\"", "\"a\"", "d"));
        assert!(if_range_matches("d", "\"a\"", "d"));
        assert!(!if_range_matches("e", "\"a\"", "d"));
    }
}

//! Test-only fault injection for publish, read from `STREAMVAULT_FAILPOINT` (a comma-separated
//! list) and honoured only in debug builds: a release binary ignores the variable entirely.
//!
//! - `publish-after-N-files`: placing the file after the N-th fails with ENOSPC (a full disk);
//! - `publish-slow-file=MS`: sleep MS milliseconds before placing each file (kill tests);
//! - `publish-fail-flip`: the flip fails after the publication row is written;
//! - `s3-pause-before-index=PATH`: an S3 publish creates `PATH.reached`, then waits (up to 60 s)
//!   until `PATH` exists before writing the index (the racing-publishers test);
//! - `s3-part-size=N`: S3 multipart uploads above N bytes, in parts of N (instead of 64 MiB).
//!
//! Protects invariant 3 by letting tests prove that a failure at any of these points leaves the
//! old link untouched and no staging directory behind.

const VAR: &str = "STREAMVAULT_FAILPOINT";

fn entries() -> Vec<String> {
    if !cfg!(debug_assertions) {
        return Vec::new();
    }
    std::env::var(VAR)
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

/// `N` of an entry `<prefix>N<suffix>`.
pub(super) fn number(prefix: &str, suffix: &str) -> Option<u64> {
    entries().iter().find_map(|e| {
        e.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
            .and_then(|n| n.parse().ok())
    })
}

/// Is the flag `name` set?
pub(super) fn flag(name: &str) -> bool {
    entries().iter().any(|e| e == name)
}

/// The text after `<prefix>` of an entry.
pub(super) fn value(prefix: &str) -> Option<String> {
    entries()
        .iter()
        .find_map(|e| e.strip_prefix(prefix).map(str::to_string))
}

//! Safety of the relative paths that upstream metadata names (index entry `path`, item `path`).
//!
//! Protects invariant 5: no path taken from upstream metadata may leave the tree it is written
//! into. [`check_path`] is stricter than upstream's `assert_safe_path` (spec §1.8), which lets
//! `a/..`, `./x`, empty components and backslashes through: here a path must be a non-empty,
//! relative, `/`-separated list of non-empty components, none of them `.` or `..`, with no NUL
//! and no backslash anywhere.
//!
//! The same rules hold for the percent-decoded form (`%2e%2e` is `..`, `%2f` is `/`): the path
//! becomes part of a URL, and a URL library normalises `prod/%2e%2e/%2e%2e/secret` to `/secret`.
//! A path whose decoded form breaks a rule is refused with [`PathReason::Encoded`].

use std::fmt;

/// Why a path was refused (each rule of [`check_path`] has its own reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathReason {
    /// The path is the empty string.
    Empty,
    /// The path starts with `/`.
    Absolute,
    /// A component is `..`.
    DotDot,
    /// A component is `.`.
    Dot,
    /// Two `/` in a row, or a trailing `/`.
    EmptyComponent,
    /// The path contains a NUL character.
    Nul,
    /// The path contains a backslash (a separator on Windows, an escape to many tools).
    Backslash,
    /// The percent-decoded path breaks one of the rules above (`%2e%2e`, `%2f`, `%5c`, `%00`).
    Encoded,
}

impl fmt::Display for PathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathReason::Empty => "it is empty",
            PathReason::Absolute => "it is absolute",
            PathReason::DotDot => "it has a `..` component",
            PathReason::Dot => "it has a `.` component",
            PathReason::EmptyComponent => "it has an empty component (`//` or a trailing `/`)",
            PathReason::Nul => "it contains a NUL character",
            PathReason::Backslash => "it contains a backslash",
            PathReason::Encoded => {
                "its percent-decoded form is unsafe (`%2e%2e`, `%2f`, `%5c` or `%00` in a URL)"
            }
        })
    }
}

/// A path from upstream metadata that could escape its tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsafe path `{}`: {reason}", .path.escape_debug())]
pub struct UnsafePath {
    /// The path as found in the metadata.
    pub path: String,
    /// The rule it breaks.
    pub reason: PathReason,
}

/// Accept `p` only if it is a safe relative path (see the module documentation).
///
/// The first rule broken, in this order, is the reason reported: NUL, backslash, empty, absolute,
/// then the components from left to right (`..`, `.`, empty); then the same rules on the
/// percent-decoded form ([`PathReason::Encoded`]).
pub fn check_path(p: &str) -> Result<(), UnsafePath> {
    let refuse = |reason| {
        Err(UnsafePath {
            path: p.to_owned(),
            reason,
        })
    };
    if let Some(reason) = raw_reason(p) {
        return refuse(reason);
    }
    if memchr::memchr(b'%', p.as_bytes()).is_some() && raw_reason(&percent_decode(p)).is_some() {
        return refuse(PathReason::Encoded);
    }
    Ok(())
}

/// `%XX` escapes decoded (bytes, lossily as UTF-8); anything else, bad escapes too, as is.
fn percent_decode(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn raw_reason(p: &str) -> Option<PathReason> {
    // Every item of a document has a path: SIMD searches (the `memchr` crate), the reasons in
    // their order: NUL, backslash, empty, absolute, then the first bad component.
    let bytes = p.as_bytes();
    if memchr::memchr2(0, b'\\', bytes).is_some() {
        return Some(match memchr::memchr(0, bytes) {
            Some(_) => PathReason::Nul,
            None => PathReason::Backslash,
        });
    }
    match bytes.first() {
        None => return Some(PathReason::Empty),
        Some(b'/') => return Some(PathReason::Absolute),
        Some(_) => {}
    }
    let mut start = 0;
    let ends = memchr::memchr_iter(b'/', bytes).chain(std::iter::once(bytes.len()));
    for end in ends {
        match bytes.get(start..end).unwrap_or_default() {
            b".." => return Some(PathReason::DotDot),
            b"." => return Some(PathReason::Dot),
            b"" => return Some(PathReason::EmptyComponent),
            _ => {}
        }
        start = end + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(p: &str) -> Option<PathReason> {
        check_path(p).err().map(|e| e.reason)
    }

    #[test]
    fn accepts_real_paths() {
        for p in [
            "noble/amd64/20250805/ga-24.04/generic/boot-kernel",
            "bootloaders/uefi/amd64/20210819.0/grub2-signed.tar.xz",
            "streams/v1/com.ubuntu.maas:stable:v3:download.sjson",
            "server/releases/xenial/release-20161020/ubuntu-16.04-server-cloudimg-amd64.tar.gz",
            "images/0123abcd.incus.tar.xz",
            "a",
            "...",
            "a/.../b",
            "..a/b..",
            ".hidden/x",
            "x/y.",
            "ünïcode/файл",
        ] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn refuses_each_rule_with_its_reason() {
        let cases = [
            ("", PathReason::Empty),
            ("/etc/passwd", PathReason::Absolute),
            ("/", PathReason::Absolute),
            ("//x", PathReason::Absolute),
            ("..", PathReason::DotDot),
            ("../x", PathReason::DotDot),
            ("a/../b", PathReason::DotDot),
            ("a/..", PathReason::DotDot),
            (".", PathReason::Dot),
            ("./x", PathReason::Dot),
            ("a/./b", PathReason::Dot),
            ("a/.", PathReason::Dot),
            ("a//b", PathReason::EmptyComponent),
            ("a/", PathReason::EmptyComponent),
            ("a/b/", PathReason::EmptyComponent),
            ("a\0b", PathReason::Nul),
            ("\0", PathReason::Nul),
            ("a\\b", PathReason::Backslash),
            ("..\\x", PathReason::Backslash),
            ("\\", PathReason::Backslash),
        ];
        for (p, want) in cases {
            assert_eq!(reason(p), Some(want), "{p:?}");
        }
    }

    #[test]
    fn refuses_percent_encoded_escapes() {
        for p in [
            "prod/%2e%2e/%2e%2e/secret",
            "prod/%2E%2E/x",
            "%2e%2e",
            "a/.%2e/b",
            "a/%2e/b",
            "%2fetc/passwd",
            "a%2f..%2fb",
            "a%5c..",
            "a%00b",
            "a/%2F%2Fb",
        ] {
            assert_eq!(reason(p), Some(PathReason::Encoded), "{p}");
        }
        // escapes that decode to something harmless, and stray `%`, are fine
        for p in ["a%20b/c", "100%", "a/%zz/b", "%2e%2e%2e/x", "v1.0%2b1/file"] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
        // a raw rule is reported before the decoded one
        assert_eq!(reason("../%2e%2e"), Some(PathReason::DotDot));
    }

    /// The rules as written before the SIMD scan (issue 13): three searches and a split.
    fn reference(p: &str) -> Option<PathReason> {
        if p.contains('\0') {
            return Some(PathReason::Nul);
        }
        if p.contains('\\') {
            return Some(PathReason::Backslash);
        }
        if p.is_empty() {
            return Some(PathReason::Empty);
        }
        if p.starts_with('/') {
            return Some(PathReason::Absolute);
        }
        p.split('/').find_map(|c| match c {
            ".." => Some(PathReason::DotDot),
            "." => Some(PathReason::Dot),
            "" => Some(PathReason::EmptyComponent),
            _ => None,
        })
    }

    #[test]
    fn simd_scan_gives_the_reference_reason() {
        let mut rng = fastrand::Rng::with_seed(13);
        let alphabet = ['a', '.', '/', '\\', '\0', 'é'];
        for _ in 0..200_000 {
            let p: String = (0..rng.usize(0..9))
                .map(|_| *rng.choice(&alphabet).unwrap())
                .collect();
            assert_eq!(raw_reason(&p), reference(&p), "{p:?}");
        }
    }

    #[test]
    fn first_broken_rule_wins() {
        assert_eq!(reason("/a\0"), Some(PathReason::Nul));
        assert_eq!(reason("/a\\b"), Some(PathReason::Backslash));
        assert_eq!(reason("/../a"), Some(PathReason::Absolute));
        assert_eq!(reason("a//../b"), Some(PathReason::EmptyComponent));
        assert_eq!(reason("./../b"), Some(PathReason::Dot));
    }

    #[test]
    fn message_names_path_and_reason_and_escapes_controls() {
        let e = check_path("a/../b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsafe path `a/../b`: it has a `..` component"
        );
        let e = check_path("a\0b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsafe path `a\\0b`: it contains a NUL character"
        );
        assert_eq!(e.path, "a\0b");
    }
}

//! From a request path to an open file inside the served tree.
//!
//! Protects invariant 5 for the server: the path is percent-decoded once, then NUL, backslash and
//! `..` components are refused; the root is canonicalised per request (it may be a symlink that a
//! publish replaces), the target is canonicalised and must lie under that canonical root (a
//! symlink pointing out of the tree is refused), and the file is opened once, so the whole
//! response comes from one tree.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

/// Why a request path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Not valid percent-encoding or not UTF-8: 400.
    BadRequest,
    /// Tries to leave the tree: 403.
    Forbidden,
    /// Missing, a directory, or not a regular file: 404.
    NotFound,
}

/// Percent-decode a request path (`+` stays `+`); the result must be UTF-8.
pub(super) fn decode(raw: &str) -> Result<String, Refusal> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(Refusal::BadRequest);
            };
            // hi, lo < 16, so this fits a byte
            out.push(u8::try_from(hi * 16 + lo).map_err(|_| Refusal::BadRequest)?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Refusal::BadRequest)
}

/// The components of a decoded path; empty and `.` components are dropped.
pub(super) fn components(decoded: &str) -> Result<Vec<String>, Refusal> {
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err(Refusal::Forbidden);
    }
    let mut out = Vec::new();
    for c in decoded.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(Refusal::Forbidden),
            c => out.push(c.to_owned()),
        }
    }
    Ok(out)
}

/// An open regular file of the tree, with the metadata of that open descriptor.
#[derive(Debug)]
pub(super) struct Opened {
    pub file: File,
    pub meta: Metadata,
    /// Canonical path (for error messages).
    pub path: PathBuf,
}

/// Open `components` under `root` (blocking: call it off the async threads).
pub(super) fn open(root: &Path, components: &[String]) -> Result<Opened, Refusal> {
    let root = root.canonicalize().map_err(|_| Refusal::NotFound)?;
    let mut target = root.clone();
    target.extend(components);
    let path = target.canonicalize().map_err(|_| Refusal::NotFound)?;
    if !path.starts_with(&root) {
        return Err(Refusal::Forbidden);
    }
    // Refuse FIFOs and devices before opening: opening a FIFO would block.
    let before = std::fs::metadata(&path).map_err(|_| Refusal::NotFound)?;
    if !before.is_file() {
        return Err(Refusal::NotFound);
    }
    let file = File::open(&path).map_err(|_| Refusal::NotFound)?;
    let meta = file.metadata().map_err(|_| Refusal::NotFound)?;
    if !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok(Opened { file, meta, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(decode("/a%3Ab%3ac").unwrap(), "/a:b:c");
        assert_eq!(decode("/a:b+c").unwrap(), "/a:b+c");
        assert_eq!(decode("/%2e%2e/x").unwrap(), "/../x");
        assert_eq!(decode("/%zz"), Err(Refusal::BadRequest));
        assert_eq!(decode("/%4"), Err(Refusal::BadRequest));
        assert_eq!(decode("/%ff"), Err(Refusal::BadRequest));
    }

    #[test]
    fn component_rules() {
        assert_eq!(components("/a//./b/").unwrap(), ["a", "b"]);
        assert_eq!(components("/a/../b"), Err(Refusal::Forbidden));
        assert_eq!(components("/a\\b"), Err(Refusal::Forbidden));
        assert_eq!(components("/a\0b"), Err(Refusal::Forbidden));
        assert_eq!(components("/a..b/..c").unwrap(), ["a..b", "..c"]);
    }
}

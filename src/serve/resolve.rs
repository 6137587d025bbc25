//! From a request path to an open file (or a directory to list) inside one served tree.
//!
//! Protects invariant 5 for the server: the path is percent-decoded once, then NUL, backslash and
//! `..` components are refused. The tree's root (DEST, usually a symlink that publish and
//! rollback replace) is resolved exactly once per request ([`resolve_root`]: one `readlink` of
//! DEST, then the tree it names), and everything else is looked up under that resolved tree, so a
//! flip between two steps can neither mix two trees nor make a file that exists in both look
//! missing. The target is canonicalised and must lie under the resolved root (a symlink inside
//! the tree that leaves it is refused), and a file is opened once, so the whole response comes
//! from one descriptor.
//!
//! A failure of the server itself (out of file descriptors, out of memory, an I/O error) is
//! [`Refusal::Unavailable`] (503), never "not found": only `ENOENT`/`ENOTDIR`-like errors mean
//! the file is missing.

use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

/// Why a request path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Not valid percent-encoding or not UTF-8: 400.
    BadRequest,
    /// Tries to leave the tree, or not readable: 403.
    Forbidden,
    /// Missing, or not a regular file or directory: 404.
    NotFound,
    /// The server cannot answer now (out of descriptors, I/O error): 503 with `Retry-After`.
    Unavailable,
}

/// What an I/O error says about the requested path.
pub(super) fn classify(e: &io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Refusal::NotFound,
        io::ErrorKind::PermissionDenied => Refusal::Forbidden,
        io::ErrorKind::InvalidFilename => Refusal::NotFound,
        _ => match e.raw_os_error() {
            // ELOOP, ENAMETOOLONG
            Some(40 | 36) => Refusal::NotFound,
            _ => Refusal::Unavailable,
        },
    }
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
    pub(crate) file: File,
    pub(crate) meta: Metadata,
    /// Canonical path (for error messages).
    pub(crate) path: PathBuf,
}

/// What a request path names.
#[derive(Debug)]
pub(super) enum Found {
    File(Opened),
    /// A directory: its canonical path and the resolved root it lies under (for listings).
    Dir {
        path: PathBuf,
        root: PathBuf,
    },
}

/// Resolve DEST once: if it is a symlink, read it once and resolve the tree it names (relative
/// targets are taken from DEST's directory); otherwise canonicalise it. The result names a tree
/// that later flips of DEST do not change.
pub(super) fn resolve_root(dest: &Path) -> Result<PathBuf, Refusal> {
    match std::fs::read_link(dest) {
        Ok(target) => {
            let target = if target.is_absolute() {
                target
            } else {
                dest.parent().unwrap_or(Path::new(".")).join(target)
            };
            target.canonicalize().map_err(|e| classify(&e))
        }
        // EINVAL: DEST is not a symlink.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            dest.canonicalize().map_err(|e| classify(&e))
        }
        Err(e) => Err(classify(&e)),
    }
}

/// Look `components` up under `dest` (resolved once; blocking: call it off the async threads).
pub(super) fn open(dest: &Path, components: &[String]) -> Result<Found, Refusal> {
    let root = resolve_root(dest)?;
    open_under(root, components)
}

/// Look `components` up under an already resolved, canonical `root`.
pub(super) fn open_under(root: PathBuf, components: &[String]) -> Result<Found, Refusal> {
    let mut target = root.clone();
    target.extend(components);
    let path = target.canonicalize().map_err(|e| classify(&e))?;
    if !path.starts_with(&root) {
        return Err(Refusal::Forbidden);
    }
    // Refuse FIFOs and devices before opening: opening a FIFO would block.
    let before = std::fs::metadata(&path).map_err(|e| classify(&e))?;
    if before.is_dir() {
        return Ok(Found::Dir { path, root });
    }
    if !before.is_file() {
        return Err(Refusal::NotFound);
    }
    let file = File::open(&path).map_err(|e| classify(&e))?;
    let meta = file.metadata().map_err(|e| classify(&e))?;
    if !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok(Found::File(Opened { file, meta, path }))
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

    #[test]
    fn server_failures_are_not_missing_files() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(classify(&os(2)), Refusal::NotFound); // ENOENT
        assert_eq!(classify(&os(20)), Refusal::NotFound); // ENOTDIR
        assert_eq!(classify(&os(13)), Refusal::Forbidden); // EACCES
        assert_eq!(classify(&os(24)), Refusal::Unavailable); // EMFILE
        assert_eq!(classify(&os(23)), Refusal::Unavailable); // ENFILE
        assert_eq!(classify(&os(12)), Refusal::Unavailable); // ENOMEM
        assert_eq!(classify(&os(5)), Refusal::Unavailable); // EIO
    }

    #[test]
    fn the_root_is_resolved_through_one_readlink() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("trees/a");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("trees/a", dir.path().join("dest")).unwrap();
        let root = resolve_root(&dir.path().join("dest")).unwrap();
        assert_eq!(root, tree.canonicalize().unwrap());
        // Flip DEST away: the resolved root still serves its tree.
        std::fs::remove_file(dir.path().join("dest")).unwrap();
        let Found::File(f) = open_under(root.clone(), &["sub".into(), "f".into()]).unwrap() else {
            panic!("not a file")
        };
        assert_eq!(f.meta.len(), 1);
        assert!(matches!(
            open_under(root, &["sub".into()]).unwrap(),
            Found::Dir { .. }
        ));
    }
}

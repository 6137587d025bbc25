//! verify's filesystem helpers: hashing a file (streamed, every algorithm at once), reading a
//! directory that may be absent, opening up read-only directories before a removal.

use std::fs;
use std::io;
use std::path::Path;

use crate::checksum::{Algo, Digests, MultiHasher};
use crate::error::{Error, Result};

/// Hash a file through BLAKE3 and `algos`.
pub(super) fn hash_file(path: &Path, algos: &[Algo]) -> io::Result<Digests> {
    crate::checksum::hash_file_with(path, MultiHasher::new(algos))
}

pub(super) fn read_dir(dir: &Path) -> Result<Option<fs::ReadDir>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(Some(rd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            op: "read directory",
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

/// Directories of a stray tree may be read-only: open them up before removing them.
pub(super) fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o755));
        }
    }
}

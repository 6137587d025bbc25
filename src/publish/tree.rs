//! Materialising a tree: files placed at paths under a root, as hardlinks to blobs (reflink, then
//! plain copy, when a hardlink is impossible), generated documents written, all without a
//! per-file fsync; then one `syncfs(2)` of the store's filesystem makes the whole tree durable
//! (files, links, directory entries: [`Builder::sync`], as OSTree does before its flip); and the
//! staging → `trees/<name>` rename. A large tree's item links are placed on a few threads
//! ([`link_all`]); nothing is durable or live before the one `syncfs` and the flip that follow.
//!
//! Protects invariant 3 (a tree is only renamed into `trees/` once every file is in place and
//! durable) and invariant 5 (every path is checked with [`check_path`] again right before it is
//! used; directories are created one component at a time and an existing component must be a
//! real directory, never a symlink; files are created with `O_EXCL`/`link(2)`, which never follow
//! a symlink at the last component).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoResultExt, Result};
use crate::store::{TREE_DIR_MODE, create_dir_mode, sync_dir, syncfs};
use crate::streams::{ParseError, check_path};

use super::failpoint;

/// What to do when a path is already taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnExisting {
    /// Building a tree: a second file at one path is a conflict.
    Conflict,
    /// Adding grace items to a tree: what is there stays.
    Keep,
}

/// How a file got into the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placed {
    Linked,
    Copied,
    Written,
    /// [`OnExisting::Keep`] and the path was taken (or its directory was a file).
    Skipped,
}

/// Places files under one root directory.
pub(super) struct Builder {
    root: PathBuf,
    snapshot: crate::catalog::SnapshotId,
    on_existing: OnExisting,
    /// Directories (relative) known to exist as real directories.
    dirs: HashSet<String>,
    /// Directories whose entries changed (made durable by [`Builder::sync`]).
    touched: Vec<PathBuf>,
    touched_set: HashSet<PathBuf>,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    pub(crate) copied: u64,
    /// Files placed by this builder and every [`Builder::fork`] of it (the failpoint's count).
    placed: Arc<AtomicU64>,
    fail_after: Option<u64>,
    slow_ms: Option<u64>,
}

impl Builder {
    pub(super) fn new(
        root: &Path,
        snapshot: crate::catalog::SnapshotId,
        on_existing: OnExisting,
    ) -> Builder {
        Builder {
            root: root.to_path_buf(),
            snapshot,
            on_existing,
            dirs: HashSet::new(),
            touched: Vec::new(),
            touched_set: HashSet::new(),
            files: 0,
            bytes: 0,
            copied: 0,
            placed: Arc::new(AtomicU64::new(0)),
            fail_after: failpoint::number("publish-after-", "-files"),
            slow_ms: failpoint::number("publish-slow-file=", ""),
        }
    }

    /// A builder for another thread placing files under the same root (its own directory
    /// cache; the failpoint counts the files of all of them). Its work is added back with
    /// [`Builder::absorb`] before [`Builder::sync`].
    pub(super) fn fork(&self) -> Builder {
        Builder {
            placed: Arc::clone(&self.placed),
            fail_after: self.fail_after,
            slow_ms: self.slow_ms,
            ..Builder::new(&self.root, self.snapshot, self.on_existing)
        }
    }

    /// Add a [`Builder::fork`]'s counts and touched directories to this builder.
    pub(super) fn absorb(&mut self, other: Builder) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.copied += other.copied;
        for dir in other.touched {
            self.touch(dir);
        }
    }

    fn touch(&mut self, dir: PathBuf) {
        if self.touched_set.insert(dir.clone()) {
            self.touched.push(dir);
        }
    }

    fn conflict(&self, rel: &str) -> Error {
        Error::PathConflict {
            snapshot: self.snapshot,
            path: rel.to_string(),
        }
    }

    /// Make the parent directories of `rel` (checked safe); `None` when a component is taken
    /// by a non-directory under [`OnExisting::Keep`].
    fn parent_of(&mut self, rel: &str) -> Result<Option<PathBuf>> {
        check_path(rel).map_err(|source| {
            Error::Parse(ParseError::UnsafePath {
                doc: format!("snapshot {}", self.snapshot),
                at: rel.to_string(),
                source,
            })
        })?;
        let mut dir = self.root.clone();
        let mut rel_dir = String::new();
        let mut parts: Vec<&str> = rel.split('/').collect();
        parts.pop();
        for part in parts {
            if !rel_dir.is_empty() {
                rel_dir.push('/');
            }
            rel_dir.push_str(part);
            let parent = dir.clone();
            dir.push(part);
            if self.dirs.contains(&rel_dir) {
                continue;
            }
            match create_dir_mode(&dir, TREE_DIR_MODE) {
                Ok(true) => self.touch(parent),
                Ok(false) => {
                    // Existed: a real directory, never a symlink to one.
                    let meta = fs::symlink_metadata(&dir).with_path("stat", &dir)?;
                    if !meta.is_dir() {
                        return match self.on_existing {
                            OnExisting::Keep => Ok(None),
                            OnExisting::Conflict => Err(self.conflict(rel)),
                        };
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let meta = fs::symlink_metadata(&dir).with_path("stat", &dir)?;
                    if !meta.is_dir() {
                        return match self.on_existing {
                            OnExisting::Keep => Ok(None),
                            OnExisting::Conflict => Err(self.conflict(rel)),
                        };
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                    return match self.on_existing {
                        OnExisting::Keep => Ok(None),
                        OnExisting::Conflict => Err(self.conflict(rel)),
                    };
                }
                Err(e) => {
                    return Err(Error::Io {
                        op: "create directory",
                        path: dir,
                        source: e,
                    });
                }
            }
            self.dirs.insert(rel_dir.clone());
        }
        Ok(Some(dir))
    }

    fn failpoint(&self, path: &Path) -> Result<()> {
        if self
            .fail_after
            .is_some_and(|n| self.placed.load(Ordering::Relaxed) >= n)
        {
            return Err(Error::Io {
                op: "write",
                path: path.to_path_buf(),
                source: io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        if let Some(ms) = self.slow_ms {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        Ok(())
    }

    fn existing(&self, rel: &str, e: io::Error, path: &Path) -> Result<Placed> {
        match (e.kind(), self.on_existing) {
            (io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory, OnExisting::Keep) => {
                Ok(Placed::Skipped)
            }
            (io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory, _) => {
                Err(self.conflict(rel))
            }
            _ => Err(Error::Io {
                op: "create",
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    /// Place the blob file `blob` (of `size` bytes) at `rel`.
    pub(super) fn link_blob(&mut self, rel: &str, blob: &Path, size: u64) -> Result<Placed> {
        let Some(dir) = self.parent_of(rel)? else {
            return Ok(Placed::Skipped);
        };
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let path = dir.join(name);
        self.failpoint(&path)?;
        let placed = match fs::hard_link(blob, &path) {
            Ok(()) => Placed::Linked,
            Err(e) if link_impossible(&e) => match copy_blob(blob, &path) {
                Ok(()) => Placed::Copied,
                Err(e) => return self.existing(rel, e, &path),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound && !blob.exists() => {
                return Err(Error::Io {
                    op: "link blob",
                    path: blob.to_path_buf(),
                    source: e,
                });
            }
            Err(e) => return self.existing(rel, e, &path),
        };
        if placed == Placed::Copied {
            self.copied += 1;
        }
        self.files += 1;
        self.placed.fetch_add(1, Ordering::Relaxed);
        self.bytes += size;
        self.touch(dir);
        Ok(placed)
    }

    /// Write a generated document at `rel` (read-only; durable after [`Builder::sync`]).
    pub(super) fn write_bytes(&mut self, rel: &str, bytes: &[u8]) -> Result<Placed> {
        let Some(dir) = self.parent_of(rel)? else {
            return Ok(Placed::Skipped);
        };
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let path = dir.join(name);
        self.failpoint(&path)?;
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        readonly_mode(&mut opts);
        let mut f = match opts.open(&path) {
            Ok(f) => f,
            Err(e) => return self.existing(rel, e, &path),
        };
        f.write_all(bytes)
            .and_then(|()| set_readonly(&f))
            .with_path("write", &path)?;
        self.files += 1;
        self.placed.fetch_add(1, Ordering::Relaxed);
        self.bytes += bytes.len() as u64;
        self.touch(dir);
        Ok(Placed::Written)
    }

    /// Make everything placed so far durable (files written or copied, new links, every touched
    /// directory) with one `syncfs(2)` of the filesystem holding the root: a tree of 100k links
    /// costs one flush instead of one fsync per directory and file.
    pub(super) fn sync(&self) -> Result<()> {
        if self.touched.is_empty() {
            return Ok(());
        }
        syncfs(&self.root)
    }
}

/// Below this many files a tree is placed on the calling thread (threads would cost more than
/// they save).
const PARALLEL_MIN_FILES: usize = 4096;

/// At most this many threads place one tree's files.
const MAX_LINK_THREADS: usize = 4;

/// A blob file to place: (relative path, blob path, size).
pub(super) type BlobFile = (String, PathBuf, u64);

/// Place `files` (in path order) with [`Builder::link_blob`]: on up to [`MAX_LINK_THREADS`]
/// threads (one per core) for a large tree, each placing a contiguous run of the list (so mostly
/// its own directories) with a [`Builder::fork`]. Every thread stops at the first error of any;
/// the error reported is the one of the earliest run, and the stage is left for the caller to
/// discard as after any failed build. Nothing is durable until [`Builder::sync`].
pub(super) fn link_all(b: &mut Builder, files: &[BlobFile]) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores.min(MAX_LINK_THREADS);
    if threads < 2 || files.len() < PARALLEL_MIN_FILES {
        for (rel, blob, size) in files {
            b.link_blob(rel, blob, *size)?;
        }
        return Ok(());
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<Builder>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(files.len().div_ceil(threads))
            .map(|run| {
                let mut w = b.fork();
                let stop = &stop;
                s.spawn(move || {
                    for (rel, blob, size) in run {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Err(e) = w.link_blob(rel, blob, *size) {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(w)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut first_err = None;
    for r in results {
        match r {
            Ok(w) => b.absorb(w),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The errors after which a hardlink cannot work but a copy can.
fn link_impossible(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::CrossesDevices
            | io::ErrorKind::TooManyLinks
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(95) // EOPNOTSUPP
}

/// Reflink (copy-on-write clone), else a plain copy, into a new file, read-only (durable after
/// [`Builder::sync`]).
fn copy_blob(blob: &Path, path: &Path) -> io::Result<()> {
    let mut from = File::open(blob)?;
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    readonly_mode(&mut opts);
    let mut to = opts.open(path)?;
    let result = (|| {
        set_readonly(&to)?;
        if reflink_copy::reflink_file(&from, &to).is_err() {
            to.set_len(0)?;
            io::copy(&mut from, &mut to)?;
        }
        Ok(())
    })();
    if result.is_err() {
        drop(to);
        let _ = fs::remove_file(path);
    }
    result
}

#[cfg(unix)]
fn readonly_mode(opts: &mut OpenOptions) {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(0o444);
}

/// After creating a file with [`readonly_mode`]: exactly 0444 whatever the umask (a umask of
/// 077 would leave it unreadable by the web server).
fn set_readonly(f: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(fs::Permissions::from_mode(0o444))
}

#[cfg(not(unix))]
fn readonly_mode(_opts: &mut OpenOptions) {}

/// Move a complete staging directory to `trees/<name>` and make the rename durable.
pub(super) fn commit(staging: &Path, trees: &Path, name: &str) -> Result<PathBuf> {
    sync_dir(staging)?;
    let dest = trees.join(name);
    fs::rename(staging, &dest).with_path("rename tree into", &dest)?;
    sync_dir(trees)?;
    Ok(dest)
}

/// Remove a staging directory (best effort: a leftover is removed by the next publish to the
/// same destination, or by gc).
pub(super) fn discard(staging: &Path) {
    let _ = fs::remove_dir_all(staging);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_and_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir(&root).unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, b"abc").unwrap();
        let mut b = Builder::new(&root, crate::catalog::SnapshotId(1), OnExisting::Conflict);
        assert_eq!(b.link_blob("a/b/c", &blob, 3).unwrap(), Placed::Linked);
        assert!(matches!(
            b.link_blob("a/b/c", &blob, 3),
            Err(Error::PathConflict { .. })
        ));
        assert!(matches!(
            b.link_blob("a/b/c/d", &blob, 3),
            Err(Error::PathConflict { .. })
        ));
        assert!(matches!(
            b.link_blob("../x", &blob, 3),
            Err(Error::Parse(_))
        ));
        // A symlinked directory is never followed.
        std::os::unix::fs::symlink(dir.path(), root.join("evil")).unwrap();
        assert!(matches!(
            b.link_blob("evil/x", &blob, 3),
            Err(Error::PathConflict { .. })
        ));
        assert!(!dir.path().join("x").exists());
        let mut k = Builder::new(&root, crate::catalog::SnapshotId(1), OnExisting::Keep);
        assert_eq!(k.link_blob("a/b/c", &blob, 3).unwrap(), Placed::Skipped);
        assert_eq!(k.link_blob("evil/x", &blob, 3).unwrap(), Placed::Skipped);
        assert_eq!(k.write_bytes("a/n", b"x").unwrap(), Placed::Written);
        b.sync().unwrap();
        k.sync().unwrap();
    }

    #[test]
    fn a_large_tree_is_placed_on_threads_whole_and_conflicts_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, b"abc").unwrap();
        let n = PARALLEL_MIN_FILES * 2;
        let files: Vec<BlobFile> = (0..n)
            .map(|i| (format!("d{:03}/e/f{i:05}", i / 50), blob.clone(), 3))
            .collect();
        let root = dir.path().join("t");
        fs::create_dir(&root).unwrap();
        let mut b = Builder::new(&root, crate::catalog::SnapshotId(1), OnExisting::Conflict);
        link_all(&mut b, &files).unwrap();
        assert_eq!((b.files, b.bytes), (n as u64, 3 * n as u64));
        for (rel, _, _) in &files {
            assert!(root.join(rel).is_file(), "{rel} placed");
        }
        b.sync().unwrap();

        // A path that is a file early in the list and a directory near its end (another
        // thread's run): refused as a conflict, whichever thread meets it.
        let mut bad = files.clone();
        bad.push((format!("{}/under", files[10].0), blob.clone(), 3));
        let root2 = dir.path().join("t2");
        fs::create_dir(&root2).unwrap();
        let mut b2 = Builder::new(&root2, crate::catalog::SnapshotId(1), OnExisting::Conflict);
        assert!(matches!(
            link_all(&mut b2, &bad),
            Err(Error::PathConflict { .. })
        ));
    }

    #[test]
    fn copy_fallback_makes_an_independent_readonly_file() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, b"hello").unwrap();
        let dst = dir.path().join("copy");
        copy_blob(&blob, &dst).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"hello");
        assert!(copy_blob(&blob, &dst).is_err(), "never overwrites");
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = fs::metadata(&dst).unwrap();
        assert_ne!(m.ino(), fs::metadata(&blob).unwrap().ino());
        assert_eq!(m.permissions().mode() & 0o777, 0o444);
    }
}

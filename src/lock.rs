//! Advisory locks (flock through `std::fs::File::lock`): released by the kernel when the process
//! dies, so a `kill -9` never leaves a stale lock.
//!
//! `locks/source-<name>` is held exclusively by the sync of that source (two syncs of one source
//! never overlap); the store-wide `lock` is held shared by every writer and exclusively by `gc`
//! (invariant 4: nothing is collected while a writer may be about to reference it).
//! The holder of an exclusive lock writes `pid …, since …: what` into the file so that a second
//! process can say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// A held lock; dropping it releases the lock (and clears the holder line of an exclusive one).
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
    mode: Mode,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // The holder line is only true while the lock is held: a later waiter must not read it.
        if self.mode == Mode::Exclusive {
            let _ = self.file.set_len(0);
        }
    }
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Take the lock at `path` (created if missing). With `wait` false, a held lock is an
/// [`Error::Locked`] naming the holder; with `wait` true this blocks until the lock is free.
pub fn acquire(path: &Path, mode: Mode, wait: bool, what: &str) -> Result<LockGuard> {
    use std::os::unix::fs::OpenOptionsExt;
    // 0644 whatever the umask (never world-writable); the umask can only take bits away.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .with_path("open lock file", path)?;
    lock_file(file, path, mode, wait, what)
}

/// A shared lock for a command that only reads (`verify` without `--repair`) and so must work
/// on a read-only store root: the lock file is opened for writing when possible, else for
/// reading (`flock` needs no write access); when it does not exist and cannot be created (a
/// read-only root no writer can use either) there is nothing to exclude: `None`.
pub fn acquire_for_reading(path: &Path, wait: bool, what: &str) -> Result<Option<LockGuard>> {
    match acquire(path, Mode::Shared, wait, what) {
        Err(Error::Io { source, .. }) if read_only(&source) => {}
        other => return other.map(Some),
    }
    match File::open(path) {
        Ok(file) => lock_file(file, path, Mode::Shared, wait, what).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io {
            op: "open lock file",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// The errors of opening for writing on a read-only filesystem or without write permission.
fn read_only(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
    )
}

fn lock_file(mut file: File, path: &Path, mode: Mode, wait: bool, what: &str) -> Result<LockGuard> {
    let res = match (mode, wait) {
        (Mode::Exclusive, true) => file.lock().map_err(TryLockError::Error),
        (Mode::Shared, true) => file.lock_shared().map_err(TryLockError::Error),
        (Mode::Exclusive, false) => file.try_lock(),
        (Mode::Shared, false) => file.try_lock_shared(),
    };
    match res {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::Locked {
                path: path.to_path_buf(),
                holder: if holder.is_empty() {
                    "another streamvault process".to_string()
                } else {
                    holder.to_string()
                },
            });
        }
        Err(TryLockError::Error(e)) => {
            return Err(Error::Io {
                op: "lock",
                path: path.to_path_buf(),
                source: e,
            });
        }
    }
    match mode {
        Mode::Exclusive => {
            let since = httpdate::fmt_http_date(std::time::SystemTime::now());
            let line = format!("pid {}, since {}: {}\n", std::process::id(), since, what);
            let _ = file.set_len(0);
            let _ = file.seek(SeekFrom::Start(0));
            let _ = file.write_all(line.as_bytes());
        }
        // No exclusive holder exists while a shared lock is held: a line left by a killed one
        // is stale.
        Mode::Shared => {
            let _ = file.set_len(0);
        }
    }
    Ok(LockGuard {
        file,
        path: path.to_path_buf(),
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_exclusive_names_holder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let g = acquire(&p, Mode::Exclusive, false, "sync demo").unwrap();
        let err = acquire(&p, Mode::Exclusive, false, "sync demo").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("sync demo"), "{msg}");
        drop(g);
        acquire(&p, Mode::Exclusive, false, "x").unwrap();
    }

    #[test]
    fn shared_locks_coexist_and_block_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        let a = acquire(&p, Mode::Shared, false, "a").unwrap();
        let _b = acquire(&p, Mode::Shared, false, "b").unwrap();
        assert!(acquire(&p, Mode::Exclusive, false, "gc").is_err());
        drop(a);
    }

    #[test]
    fn released_or_killed_holder_line_is_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l");
        drop(acquire(&p, Mode::Exclusive, false, "gc").unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
        // A line left by a killed exclusive holder is cleared by the next shared holder.
        std::fs::write(&p, "pid 1, since then: gc\n").unwrap();
        let _s = acquire(&p, Mode::Shared, false, "sync").unwrap();
        let msg = acquire(&p, Mode::Exclusive, false, "gc")
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("pid 1"), "{msg}");
    }
}

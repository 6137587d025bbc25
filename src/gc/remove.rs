//! Carrying out a gc plan, in restic's order: the rows in one committed transaction, then the
//! files (tree directories, blob files, orphans), then the directories the removed grace links
//! leave empty. A kill at any point leaves files without rows, never a row without its file.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use super::plan::{self, PHASE_ORPHAN_BLOB};
use super::sweep::{has_row, io_err, make_dirs_writable};
use super::{GcPlan, GcReport};
use crate::error::{Error, Result};

/// Carry out a plan: rows in one committed transaction, then tree directories, blob files and
/// orphans. Returns what was actually freed (measured from link counts at unlink time).
pub fn gc(plan: GcPlan<'_>) -> Result<GcReport> {
    let GcPlan {
        vault,
        lock,
        mut report,
    } = plan;
    report.dry_run = false;

    // 1. Rows, in one transaction (restic: the index entry goes before the pack).
    plan::delete_rows(&mut vault.catalog)?;

    // 2. Files. Directories of dropped trees may be read-only (immutable trees): open them up.
    let cat = &vault.catalog;
    plan::each_dir(cat, |dir| {
        make_dirs_writable(&dir);
        Ok(())
    })?;
    let slow = slow_unlink();
    // The failpoint keeps one worker, so that a kill lands inside a long removal.
    let workers = if slow.is_some() { 1 } else { UNLINK_WORKERS };
    // Nothing planned for unlinking (most automatic collections): no threads to start.
    let planned = report.files_unlinked;
    let done = if planned == 0 {
        Unlinked::default()
    } else {
        unlink_all(workers, slow, |send| {
            // The links of one inode go to one worker, one after another, so that the one that
            // removes the last link knows it (freed bytes).
            let mut key = (0i64, (0i64, 0i64));
            let mut links: Vec<PathBuf> = Vec::new();
            plan::each_unlink(cat, |p, phase, inode| {
                if (phase, inode) != key && !links.is_empty() {
                    send(Job::Unlink(std::mem::take(&mut links)))?;
                }
                if phase != key.0 {
                    // Phases stay in order: every unlink of one ends before the next starts.
                    send(Job::Barrier)?;
                }
                key = (phase, inode);
                if phase == PHASE_ORPHAN_BLOB && has_row(cat, &p)? {
                    return Ok(()); // never a row without its file
                }
                links.push(p);
                Ok(())
            })?;
            if !links.is_empty() {
                send(Job::Unlink(links))?;
            }
            Ok(())
        })?
    };
    let Unlinked {
        files: unlinked,
        bytes: freed,
        disk,
    } = done;
    plan::each_dir(cat, |p| match fs::remove_dir_all(&p) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_err("remove directory", &p, err)),
    })?;
    // Directories the removed grace links leave empty (a version directory of a snapshot no
    // kept tree serves any more), deepest first; a directory still holding anything stays.
    plan::each_grace_dir(cat, |mut dir, tree| {
        while dir.starts_with(&tree) && dir != tree && fs::remove_dir(&dir).is_ok() {
            match dir.parent() {
                Some(p) => dir = p.to_path_buf(),
                None => break,
            }
        }
    })?;
    plan::finish(cat)?;
    drop(lock);
    // For the metrics file; a failure here changes nothing that was collected.
    let _ = crate::metrics::record_gc(&vault.catalog, freed);
    report.files_unlinked = unlinked;
    report.freed_bytes = freed;
    report.freed_disk_bytes = disk;
    Ok(report)
}

/// Unlinking threads. Unlinks of separate files overlap in the kernel (the directory's lock is
/// released before the inode is freed; with the `discard` mount option freeing a file's blocks
/// waits for the device), so a few threads hide most of that wait; more buy nothing on 2 cores.
const UNLINK_WORKERS: usize = 8;

enum Job {
    /// The links of one inode, unlinked one after another.
    Unlink(Vec<PathBuf>),
    /// Wait until every unlink sent before has been done.
    Barrier,
}

#[derive(Default)]
struct Unlinked {
    files: u64,
    /// Apparent size and disk blocks of the files whose last link went.
    bytes: u64,
    disk: u64,
}

/// Unlink what `feed` sends on `workers` threads (bounded queue: memory stays flat). The first
/// error stops the feed and is returned; files already removed stay removed (their rows are
/// gone: a later gc finds nothing to do for them).
fn unlink_all(
    workers: usize,
    slow: Option<Duration>,
    feed: impl FnOnce(&mut dyn FnMut(Job) -> Result<()>) -> Result<()>,
) -> Result<Unlinked> {
    let threads = |source| Error::Threads { what: "gc", source };
    let total = Mutex::new(Unlinked::default());
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let (job_tx, job_rx) = mpsc::sync_channel::<Vec<PathBuf>>(workers * 64);
    let job_rx = Mutex::new(job_rx);
    // Barriers: each worker reports on `idle` once the queue is empty after a barrier.
    let pending = std::sync::atomic::AtomicU64::new(0);
    let fed = std::thread::scope(|s| -> Result<()> {
        let (total, failed, job_rx, pending) = (&total, &failed, &job_rx, &pending);
        for _ in 0..workers {
            std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    let mut mine = Unlinked::default();
                    loop {
                        let next = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => break,
                        };
                        let Ok(links) = next else { break };
                        for p in links {
                            match unlink_one(&p, slow) {
                                Ok(Some((len, blocks))) => {
                                    mine.files += 1;
                                    mine.bytes += len;
                                    mine.disk += blocks;
                                }
                                Ok(None) => {}
                                Err(err) => {
                                    if let Ok(mut f) = failed.lock() {
                                        f.get_or_insert(err);
                                    }
                                    break;
                                }
                            }
                        }
                        pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                    }
                    if let Ok(mut t) = total.lock() {
                        t.files += mine.files;
                        t.bytes += mine.bytes;
                        t.disk += mine.disk;
                    }
                })
                .map_err(threads)?;
        }
        let stopped = || failed.lock().map_or(true, |f| f.is_some());
        let res = feed(&mut |job| {
            match job {
                Job::Unlink(p) => {
                    if stopped() {
                        return Err(Error::Threads {
                            what: "gc",
                            source: std::io::Error::other("an unlink failed"),
                        });
                    }
                    pending.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    if job_tx.send(p).is_err() {
                        return Err(threads(std::io::Error::other("the workers stopped")));
                    }
                }
                Job::Barrier => {
                    while pending.load(std::sync::atomic::Ordering::Acquire) > 0 && !stopped() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            Ok(())
        });
        drop(job_tx);
        res
    });
    // An unlink's own error comes first (the feed then only says that it stopped).
    if let Some(err) = failed.into_inner().ok().flatten() {
        return Err(err);
    }
    fed?;
    Ok(total.into_inner().unwrap_or_default())
}

/// Unlink one file: `Some((size, disk bytes))` freed when this was its last link (zeros when
/// not), `None` when it was already gone.
fn unlink_one(p: &Path, slow: Option<Duration>) -> Result<Option<(u64, u64)>> {
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_err("stat", p, err)),
    };
    if let Some(d) = slow {
        std::thread::sleep(d);
    }
    match fs::remove_file(p) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_err("remove", p, err)),
    }
    Ok(Some(if meta.nlink() <= 1 {
        (meta.len(), meta.blocks() * 512)
    } else {
        (0, 0)
    }))
}

/// Test-only (debug builds): `STREAMVAULT_FAILPOINT=gc-slow-unlink=MS` sleeps before each
/// unlink, so that kill tests land inside the removal phase.
fn slow_unlink() -> Option<Duration> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let v = std::env::var("STREAMVAULT_FAILPOINT").ok()?;
    v.split(',').find_map(|e| {
        e.trim()
            .strip_prefix("gc-slow-unlink=")
            .and_then(|n| n.parse().ok())
            .map(Duration::from_millis)
    })
}

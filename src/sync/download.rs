//! Downloads: one task per planned content, each writing its own `partial/` file under a
//! [`PartialLock`]; finished downloads are placed into `blobs/` and made durable in batches (one
//! `syncfs`) and only then recorded, in one transaction per batch (invariant 1) whose commit
//! skips the WAL's fsync (the snapshot's commit syncs it).
//!
//! The place (`fchmod`, rename) and the flush of a batch run together on one blocking thread
//! while the downloads go on: the renames out of `partial/` and the `syncfs` that writes
//! `partial/`'s directory block never overlap (a lookup in a directory whose block is being
//! written waits for that write: with the renames on the runtime's threads, a rename stuck behind
//! a flush's I/O stalled every connection of that thread, 12–20 ms each time, and the creates in
//! `partial/` queued behind it). Downloads that finish while one flush runs form the next batch,
//! so the batches grow with the flush's cost instead of one `syncfs` per handful of files. A
//! batch's rows are inserted only after a `syncfs` that started after every one of its renames
//! (same thread, after them). A finished download keeps its partial file locked until its place.
//! While more downloads are spawned than `--jobs` can run, the loop collects finished ones on a
//! short timer rather than waking for each (see [`COLLECT_MIN`]).
//!
//! Per download, the lock (open, `flock` without waiting, two stats) runs on the runtime thread
//! (a few metadata system calls, cheaper than a hand-off). The fetcher writes through the lock's
//! own open file (no second open). What goes to blocking threads: the body's hashed writes (one
//! hand-off per 256 KiB batch), each batch's places and flush (one hand-off per batch), and a
//! lock that must wait for another process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::SyncEvents;
use super::metadata::Metadata;
use super::plan::{Job, Plan};
use super::select::Selection;
use crate::checksum;
use crate::error::{Error, IoResultExt, Result};
use crate::fetch::{Expect, Fetcher, Held, Location, Progress};
use crate::store::BlobHash;
use crate::vault::Vault;

/// The name of a resumable download in `partial/`: from the expected checksum, which is
/// validated hex, so upstream text never becomes a path of its own.
fn partial_name(job: &Job) -> String {
    match job.checksums.strongest() {
        Some((algo, hex)) if checksum::is_hex(hex, algo.hex_len()) => {
            format!(
                "{}-{}-{}",
                algo.name(),
                hex.to_ascii_lowercase(),
                job.size.unwrap_or(0)
            )
        }
        _ => blake3::hash(job.path.as_bytes()).to_hex().to_string(),
    }
}

/// How many names (`NAME`, `NAME.1`, …) a partial file may take while other processes hold
/// the first ones; after that a writer waits for `NAME`.
const PARTIAL_NAMES: usize = 16;

/// The exclusive right to write one partial file: an `flock` on the partial file itself, held
/// from before the first byte is written until the file is renamed into `blobs/` or given up.
///
/// No separate lock file: creating and unlinking one per download cost two inode allocations
/// per blob, and on ext4 without a journal (common on VMs and for `/var/lib` on small disks)
/// every inode freed in the last minute makes each later allocation in its block group scan past
/// it (`recently_deleted()` in `fs/ext4/ialloc.c`): thousands of small downloads turned that into
/// a quadratic cost that dominated a sync's CPU time. A download now allocates one inode (its
/// partial file, renamed into `blobs/`) and frees none.
///
/// The partial is truncated, removed or renamed while it is locked; a waiter that then gets the
/// lock sees that the name now points elsewhere (or nowhere) and tries again, so two writers can
/// never both believe they own a name. The lock goes with the inode when it is renamed into
/// `blobs/` and ends when this is dropped (nothing else locks blobs).
///
/// The fetcher writes through this lock's own open file ([`Held`]: no second `open`, `fstat`
/// and `close` per download) and never unlinks the name; the lock ends when the last handle
/// goes, which is [`Self::release`] after the rename (or after removing what is not kept).
struct PartialLock {
    partial: PathBuf,
    held: Held,
}

impl PartialLock {
    /// Lock `dir/name`, or the first of `dir/name.1`, `dir/name.2`, … that no other process
    /// holds; when all are held, wait for `dir/name`. Never fails because of another writer.
    fn acquire(dir: &Path, name: &str) -> Result<PartialLock> {
        if let Some(lock) = Self::try_acquire(dir, name)? {
            return Ok(lock);
        }
        loop {
            if let Some(lock) = Self::lock(dir.join(name), true)? {
                return Ok(lock);
            }
        }
    }

    /// Lock the first of `dir/name`, `dir/name.1`, … that no other process holds, without
    /// waiting (a few metadata system calls: fine on a runtime thread); `None` when all are held.
    fn try_acquire(dir: &Path, name: &str) -> Result<Option<PartialLock>> {
        for n in 0..PARTIAL_NAMES {
            let partial = match n {
                0 => dir.join(name),
                n => dir.join(format!("{name}.{n}")),
            };
            if let Some(lock) = Self::lock(partial, false)? {
                return Ok(Some(lock));
            }
        }
        Ok(None)
    }

    /// Lock the partial file `partial`, creating it empty when missing (waiting for the lock
    /// when `wait`); `None` when another process holds it (without `wait`) or it was removed or
    /// renamed while this one waited.
    fn lock(partial: PathBuf, wait: bool) -> Result<Option<PartialLock>> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&partial)
                .with_path("open", &partial)?;
            let locked = if wait {
                file.lock().map(|()| true)
            } else {
                match file.try_lock() {
                    Ok(()) => Ok(true),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(false),
                    Err(std::fs::TryLockError::Error(e)) => Err(e),
                }
            };
            if !locked.with_path("lock", &partial)? {
                return Ok(None);
            }
            let held = file.metadata().with_path("stat", &partial)?;
            match std::fs::metadata(&partial) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    let held = Held {
                        file: Arc::new(file),
                        len: held.len(),
                    };
                    return Ok(Some(PartialLock { partial, held }));
                }
                // placed or removed by its previous holder after this open: open it again
                _ => continue,
            }
        }
    }

    /// Give the name up (after the partial was placed, kept or removed): unlock (the fetcher
    /// has dropped its handle by now, so this closes the file).
    fn release(self) {
        drop(self.held);
    }

    /// After a failed download: remove the partial file when it holds nothing to resume from
    /// (the fetcher only empties a held file), then unlock.
    fn release_failed(self) {
        if self.held.file.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&self.partial);
        }
        self.release();
    }
}

/// How many downloads are spawned ahead of those running (the fetcher itself bounds the
/// concurrent requests to `--jobs`): a plan of a million downloads holds a window of tasks,
/// not a task per download.
const WINDOW: usize = 256;

/// A batch is flushed once it holds this many blobs…
const FLUSH_BLOBS: usize = 128;
/// …or this many bytes…
const FLUSH_BYTES: u64 = 128 << 20;
/// …or its oldest blob waited this long (or no download is left running).
const FLUSH_AGE: std::time::Duration = std::time::Duration::from_millis(500);

/// Downloads (with their locked partial files) held for a place and flush, at most: each holds
/// an open file, like each running download.
const HELD_MAX: usize = 2 * WINDOW;

/// While more downloads are spawned than `--jobs` can run, finished ones are collected on a
/// timer instead of each waking the loop: every wake-up of the loop's thread is a futex call and
/// two thread switches, 2,000 of them for 2,000 small files (~2,500 of a small sync's ~5,500
/// context switches). Nothing waits for the collection meanwhile: the next spawned download takes
/// a finished one's connection by itself, and a finished one only waits for its batch. The timer
/// starts at [`COLLECT_MIN`] and doubles, up to [`COLLECT_MAX`], while it finds nothing (large
/// files finish seldom); once no more than `--jobs` downloads are left, each one is collected the
/// moment it finishes, so the end of a sync is not delayed.
const COLLECT_MIN: std::time::Duration = std::time::Duration::from_millis(2);
const COLLECT_MAX: std::time::Duration = std::time::Duration::from_millis(64);

/// What the loop knows of the downloads that finished: the next batch, the failures, and when the
/// batch's oldest download finished.
struct Collected {
    batch: Vec<Finished>,
    oldest: Option<std::time::Instant>,
    failed: usize,
    first: Option<String>,
}

impl Collected {
    /// Take one finished download task's result.
    fn take(
        &mut self,
        joined: std::result::Result<(usize, Result<Finished>), tokio::task::JoinError>,
    ) {
        match joined {
            Ok((_, Ok(done))) => {
                self.oldest.get_or_insert_with(std::time::Instant::now);
                self.batch.push(done);
            }
            Ok((_, Err(e))) => self.fail(crate::error::chain_line(&e)),
            Err(e) => self.fail(
                if e.is_panic() {
                    "a download task panicked (a bug in streamvault: please report it)"
                } else {
                    "a download task was cancelled"
                }
                .to_string(),
            ),
        }
    }

    fn fail(&mut self, line: String) {
        self.failed += 1;
        self.first.get_or_insert(line);
    }
}

/// A finished and verified download, waiting for the next place and flush.
struct Done {
    /// Its plan index.
    j: usize,
    digests: checksum::Digests,
    path: String,
    size: u64,
}

/// A finished download and its partial file, still locked: placed into `blobs/` by the flush.
type Finished = (Done, PartialLock);

/// What a batch's place-and-flush returns: the downloads placed and made durable (their locks
/// released), and those whose place failed (partial files kept, unlocked).
type Flushed = (Vec<Done>, Vec<Error>);

/// Place every download of `batch` into `blobs/` (fchmod and rename through its held file,
/// then unlock), then make the placed ones durable with one `syncfs` (none when nothing was
/// placed). On a blocking thread.
fn place_and_flush(blobs: &crate::store::BlobStore, batch: Vec<Finished>) -> Result<Flushed> {
    let mut placed = Vec::with_capacity(batch.len());
    let mut failed = Vec::new();
    for (d, lock) in batch {
        match blobs.place_open(&lock.held.file, &lock.partial, &d.digests) {
            Ok(_) => placed.push(d),
            Err(e) => failed.push(e),
        }
        // a partial that could not be placed stays whole for the next run (verified, not fetched)
        lock.release();
    }
    if !placed.is_empty() {
        blobs.make_durable()?;
    }
    Ok((placed, failed))
}

pub(super) async fn download_all(
    vault: &mut Vault,
    fetcher: &Fetcher,
    loc: &Location,
    plan: &Plan,
    meta: &Metadata,
    sel: &mut Selection,
    events: Arc<dyn SyncEvents>,
) -> Result<()> {
    let total = plan.len();
    if total == 0 {
        return Ok(());
    }
    let mut set = tokio::task::JoinSet::new();
    let partial_dir = vault.layout.partial();
    let mut spawned = 0usize;
    let mut done = 0usize;
    // Finished since the running flush started (the next batch), and how many the running flush
    // holds (it gives them back placed, or the errors of those it could not place).
    let mut got = Collected {
        batch: Vec::new(),
        oldest: None,
        failed: 0,
        first: None,
    };
    let mut flushing: Option<(usize, tokio::task::JoinHandle<Result<Flushed>>)> = None;
    let jobs = fetcher.options().jobs.max(1);
    let mut collect_every = COLLECT_MIN;
    loop {
        let held = got.batch.len() + flushing.as_ref().map_or(0, |f| f.0);
        while spawned < total && set.len() < WINDOW && set.len() + held < HELD_MAX {
            let j = spawned;
            spawned += 1;
            let Some(job) = plan.job(sel, meta, j) else {
                got.fail("a planned download has no path".to_string());
                continue;
            };
            set.spawn(download_one(
                j,
                job,
                partial_dir.clone(),
                fetcher.clone(),
                loc.clone(),
                events.clone(),
            ));
        }
        // A place-and-flush runs on a blocking thread while downloads go on; whatever finishes
        // meanwhile waits for the next one (a syncfs only covers what was renamed before it
        // started). A batch waits until it is worth a syncfs and a commit: enough blobs or
        // bytes, its oldest download waited long enough, or nothing else is coming.
        let ripe = !got.batch.is_empty()
            && (set.is_empty()
                || got.batch.len() >= FLUSH_BLOBS
                || got.batch.iter().map(|b| b.0.size).sum::<u64>() >= FLUSH_BYTES
                || got.oldest.is_some_and(|t| t.elapsed() >= FLUSH_AGE));
        if flushing.is_none() && ripe {
            let blobs = vault.blobs.clone();
            let b = std::mem::take(&mut got.batch);
            let n = b.len();
            let h = tokio::task::spawn_blocking(move || place_and_flush(&blobs, b));
            flushing = Some((n, h));
            got.oldest = None;
        }
        if set.is_empty() && flushing.is_none() {
            break;
        }
        let due = got
            .oldest
            .filter(|_| flushing.is_none())
            .map(|t| t + FLUSH_AGE);
        let flushed = async {
            match flushing.as_mut() {
                Some((_, h)) => h.await,
                None => std::future::pending().await,
            }
        };
        let age = async {
            match due {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        // more downloads than connections: collect on the timer; else each one as it finishes
        let on_timer = set.len() > jobs;
        tokio::select! {
            () = age => {}
            () = tokio::time::sleep(collect_every), if on_timer => {
                let before = got.batch.len() + got.failed;
                while let Some(joined) = set.try_join_next() {
                    got.take(joined);
                }
                collect_every = if got.batch.len() + got.failed > before {
                    COLLECT_MIN
                } else {
                    (collect_every * 2).min(COLLECT_MAX)
                };
            }
            Some(joined) = set.join_next(), if !on_timer && !set.is_empty() => got.take(joined),
            flushed = flushed => {
                flushing = None;
                let (durable, unplaced) = flushed.unwrap_or_else(|e| Err(Error::from_join(e, "flush")))?;
                for e in unplaced {
                    got.fail(crate::error::chain_line(&e));
                }
                done += record(vault, plan, sel, durable, &*events)?;
            }
        }
    }
    if got.failed > 0 {
        return Err(Error::Downloads {
            failed: got.failed,
            total,
            done,
            first: got.first.unwrap_or_default(),
        });
    }
    Ok(())
}

/// One download: lock its partial file, fetch and verify it; the partial stays locked for the
/// batch's place and flush.
async fn download_one(
    j: usize,
    job: Job,
    partial_dir: PathBuf,
    fetcher: Fetcher,
    loc: Location,
    events: Arc<dyn SyncEvents>,
) -> (usize, Result<Finished>) {
    let progress: &dyn Progress = &*events;
    let name = partial_name(&job);
    // One writer per partial file, from its first byte until it is placed (or dropped):
    // another sync sharing this content writes under another name. Taken here, on the runtime
    // thread (open, flock without waiting, two stats: microseconds, less than a hand-off to a
    // blocking thread costs); only when all names are held is the wait a blocking task.
    let lock = match PartialLock::try_acquire(&partial_dir, &name) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            match tokio::task::spawn_blocking(move || PartialLock::acquire(&partial_dir, &name))
                .await
            {
                Ok(Ok(lock)) => lock,
                Ok(Err(e)) => return (j, Err(e)),
                Err(e) => return (j, Err(Error::from_join(e, "download lock"))),
            }
        }
        Err(e) => return (j, Err(e)),
    };
    let partial = lock.partial.clone();
    let expect = Expect {
        size: job.size,
        checksums: job.checksums,
    };
    let res = fetcher
        .download_held(&loc, &job.path, &partial, &lock.held, &expect, progress)
        .await;
    match res {
        Ok(d) => (
            j,
            Ok((
                Done {
                    j,
                    digests: d.digests,
                    path: job.path,
                    size: job.size.unwrap_or(0),
                },
                lock,
            )),
        ),
        Err(e) => {
            lock.release_failed();
            (j, Err(Error::from(e)))
        }
    }
}

/// Record a batch of blobs made durable (by a syncfs that started after their renames) in one
/// transaction; then point the batch's items at them.
fn record(
    vault: &mut Vault,
    plan: &Plan,
    sel: &mut Selection,
    batch: Vec<Done>,
    events: &dyn SyncEvents,
) -> Result<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let digests: Vec<checksum::Digests> = batch.iter().map(|d| d.digests.clone()).collect();
    vault.catalog.insert_blobs_unsynced(&digests)?;
    let n = batch.len();
    for d in batch {
        let b = sel.add_blob(BlobHash::parse(&d.digests.blake3)?);
        for &i in plan.items(d.j) {
            sel.point(i as usize, b);
        }
        events.downloaded(&d.path, d.size);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_partial_name_goes_to_the_next_writer_under_another_name() {
        let dir = tempfile::tempdir().unwrap();
        let first = PartialLock::acquire(dir.path(), "sha256-ab-1").unwrap();
        assert_eq!(first.partial, dir.path().join("sha256-ab-1"));
        // the lock is on the partial file itself: no lock file (created and unlinked per
        // download, each one an inode that ext4 without a journal scans past for a minute)
        assert_eq!(names(dir.path()), ["sha256-ab-1"]);
        // flock conflicts between two opens even within one process
        let second = PartialLock::acquire(dir.path(), "sha256-ab-1").unwrap();
        assert_eq!(second.partial, dir.path().join("sha256-ab-1.1"));
        first.release();
        let third = PartialLock::acquire(dir.path(), "sha256-ab-1").unwrap();
        assert_eq!(third.partial, dir.path().join("sha256-ab-1"));
        third.release();
        second.release();
        assert_eq!(names(dir.path()), ["sha256-ab-1", "sha256-ab-1.1"]);
    }

    /// The place and flush of a batch, on its blocking thread: every download it can place is
    /// renamed into `blobs/`, unlocked and returned for its row; one it cannot place is an error
    /// of its own, and its whole partial file stays (unlocked) for the next run.
    #[test]
    fn a_batch_is_placed_and_flushed_together_and_a_failed_place_keeps_its_partial() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let layout = crate::store::Layout::new(dir.path());
        layout.create_dirs().unwrap();
        let blobs = crate::store::BlobStore::new(layout.clone());
        let finished = |name: &str, body: &[u8]| -> Finished {
            let lock = PartialLock::acquire(&layout.partial(), name).unwrap();
            (&*lock.held.file).write_all(body).unwrap();
            let mut h = checksum::MultiHasher::all();
            h.update(body);
            let digests = h.finish();
            let done = Done {
                j: 0,
                digests,
                path: name.to_string(),
                size: body.len() as u64,
            };
            (done, lock)
        };
        let good = finished("good", b"placed");
        let bad = finished("bad", b"not placed");
        // the bad one's prefix directory is a file: its rename cannot succeed
        let prefix = layout.blobs().join(&bad.0.digests.blake3[..2]);
        assert_ne!(prefix, layout.blobs().join(&good.0.digests.blake3[..2]));
        std::fs::remove_dir(&prefix).unwrap();
        std::fs::write(&prefix, b"").unwrap();
        let (placed, failed) = place_and_flush(&blobs, vec![good, bad]).unwrap();
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[0].path, "good");
        assert_eq!(failed.len(), 1);
        let at = layout.blob(&placed[0].digests.blake3).unwrap();
        assert_eq!(std::fs::read(&at).unwrap(), b"placed");
        assert_eq!(names(&layout.partial()), ["bad"]);
        assert_eq!(
            std::fs::read(layout.partial().join("bad")).unwrap(),
            b"not placed"
        );
        // both unlocked: the names are free for the next writer
        for name in ["good", "bad"] {
            let again = PartialLock::try_acquire(&layout.partial(), name)
                .unwrap()
                .unwrap();
            assert_eq!(again.partial, layout.partial().join(name));
            again.release();
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_waiter_for_a_partial_that_was_placed_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = PartialLock::acquire(dir.path(), "n").unwrap();
        std::fs::write(&first.partial, b"done").unwrap();
        let waiter = std::thread::spawn({
            let d = dir.path().to_path_buf();
            move || PartialLock::lock(d.join("n"), true).unwrap().unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        // placed: renamed away while locked, then released
        std::fs::rename(&first.partial, dir.path().join("blob")).unwrap();
        first.release();
        let second = waiter.join().unwrap();
        assert_eq!(second.partial, dir.path().join("n"));
        assert_eq!(std::fs::metadata(&second.partial).unwrap().len(), 0);
        second.release();
    }
}

//! `gc`: retention of snapshots and trees, then removal of what nothing refers to any more:
//! catalogue rows, tree directories, blob files, and what killed runs left behind (blob files
//! without a row, tree directories without a row, `tmp/` entries, old `partial/` files).
//!
//! Protects invariant 4 (nothing is deleted while anything still refers to it), in restic's
//! removal order:
//! 1. [`gc_plan`] takes the store lock exclusively. Syncs and publishes hold it shared for their
//!    whole run, so while gc decides and deletes no writer sits between writing a blob and
//!    referencing it; a sync that starts meanwhile fails at once naming the lock (or waits, with
//!    `--wait`).
//! 2. Under that same lock the plan decides what stays (reachability is never computed before
//!    the lock is held: OSTree #2337).
//! 3. [`gc`] deletes the rows in one committed transaction: publications of dropped trees, the
//!    trees, the snapshots (their items and documents cascade), then the blob rows no kept
//!    snapshot names. Foreign keys refuse the transaction should a dropped blob still be named.
//! 4. Only then files: tree directories, then blob files, then orphans (each kind finished
//!    before the next starts; inside one, a few threads unlink in inode order, the links of one
//!    inode by one thread).
//!
//! A kill at any point leaves files without rows (which the next gc sweeps), never a row without
//! its file (invariant 1). Grace links inside kept trees are the one kind of file no sweep finds:
//! the transaction that deletes their `tree_grace` rows also writes them to `gc_pending_unlink`,
//! which is cleared after the unlinks; the next gc unlinks what a killed one left there first
//! (unless a tree lists the path again), and `verify` does not count those files as strays.
//!
//! It runs as `gc` and by itself after every successful `sync` and `mirror` run
//! ([`auto_collect`]: the same plan and removal, the store's settings — `keep-last`, `grace`,
//! `STREAMVAULT_GRACE`, `auto-gc` — and the store lock taken without waiting: when it is held the
//! collection is skipped and says why, and the run still succeeds). Orphan blob files come only
//! from killed runs, so the automatic one walks a sixteenth of `blobs/` for them (the prefix
//! directories starting with one hex digit, the next digit on its next run: schema 0019): its
//! cost after every run stays a sixteenth of the store's (2,000 blobs: ~6 of its ~13 ms were the
//! walk), and an orphan goes within 16 runs; `gc` walks all of it.
//!
//! What stays (the roots):
//! - the last `keep_last` snapshots ([`DEFAULT_KEEP_LAST`]) of each configured source; snapshots
//!   of a removed source have no such protection; the implicit source of a `mirror` OUTPUT_DIR
//!   keeps only what the trees below keep (what OUTPUT_DIR serves, what it served less than
//!   `grace` ago) and its snapshots younger than `grace`;
//! - every tree live on a dest: its publication is not retired, or the dest's symlink actually
//!   points at it (read from the filesystem: after a kill mid-publish the link, not the row, is
//!   the truth);
//! - trees retired less than `grace` ago ([`DEFAULT_GRACE`]: a client that read the old metadata
//!   just before a flip can still fetch what it lists), and trees created less than `grace` ago
//!   that were never published;
//! - the snapshot of every kept tree and publication, every blob a kept snapshot names, blobs
//!   created less than `grace` ago (a failed sync's finished downloads, which its next run
//!   reuses) and `partial/` files younger than `grace` (resumable downloads).
//!
//! Memory stays flat as the store grows: the plan lives in SQLite temporary tables (on disk,
//! `temp_store = FILE`, with a page cache of 12 + 8 MiB) and every list is streamed from a
//! query; only the dropped and kept snapshots' and trees' names are collected, for the report.
//! Time grows linearly: no step deletes in random order through an index much larger than the
//! cache (an index that would lose many rows is built again instead, see `plan::delete_rows`),
//! and the unlinks overlap (with the `discard` mount option each one waits for the device).
//!
//! Where it lives: `plan` ([`gc_plan`]) fills the plan's temporary tables (their SQL stays beside
//! them, in `gc/plan.rs`; every other statement is the catalogue's), `sweep` walks `trees/`,
//! `blobs/`, `tmp/` and `partial/` for what no row claims, and `remove` ([`gc()`]) carries a plan
//! out. The trees the dests link to come from `store::Layout::linked_trees` (the filesystem's
//! side) and `Catalog::publication_dests`, which `verify` uses too.
//!
//! Freed bytes count only inodes whose last link gc removes: a blob still hardlinked from a kept
//! tree, or from anywhere else, frees nothing. The plan computes the figure from link counts
//! before anything is deleted, so a dry run reports the numbers the real run then measures.

use std::time::Duration;

use crate::catalog::SnapshotId;
use crate::error::Error;
use crate::lock::LockGuard;
use crate::settings::{DEFAULT_GRACE, DEFAULT_KEEP_LAST, StoreSettings};
use crate::vault::Vault;

mod plan;
mod remove;
pub mod s3;
mod sweep;
#[cfg(test)]
mod tests;

pub use plan::gc_plan;
pub use remove::gc;

/// What `gc` keeps and how it takes the lock.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Snapshots kept per configured source, newest first (at least 1; 0 is taken as 1).
    pub keep_last: u32,
    /// See [`DEFAULT_GRACE`].
    pub grace: Duration,
    /// Wait for running syncs and publishes instead of failing with [`Error::Locked`].
    pub wait: bool,
    /// Walk only the `blobs/` prefix directories starting with this hex digit (0–15) for
    /// orphans ([`auto_collect`]'s slice); `None`: all of them (`gc`).
    pub orphan_slice: Option<u8>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            keep_last: DEFAULT_KEEP_LAST,
            grace: DEFAULT_GRACE,
            wait: false,
            orphan_slice: None,
        }
    }
}

impl GcOptions {
    /// The store's settings (`keep-last`, `grace`, `STREAMVAULT_GRACE`), without waiting.
    pub fn from_settings(s: &StoreSettings) -> GcOptions {
        GcOptions {
            keep_last: s.keep_last,
            grace: s.grace,
            wait: false,
            orphan_slice: None,
        }
    }
}

/// What the automatic collection after a `sync` or `mirror` run did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AutoGc {
    /// The store setting `auto-gc` is off.
    Disabled,
    /// It ran.
    Collected(GcReport),
    /// It could not run (a `gc` or another writer holds the store lock, or an error): one line.
    Skipped { reason: String },
}

/// Retention that runs by itself: the same plan and removal as `gc` with the store's
/// settings, taking the store lock without waiting, except that it walks one sixteenth of
/// `blobs/` for orphans (the slice after the one the previous automatic gc walked, kept in the
/// catalogue: every prefix directory once in 16 runs). Never fails: when the lock is held (a `gc`,
/// a sync or a publish is running) or anything goes wrong it says so in
/// [`AutoGc::Skipped`], and the run that called it still succeeds.
pub fn auto_collect(vault: &mut Vault, settings: &StoreSettings) -> AutoGc {
    if !settings.auto_gc {
        return AutoGc::Disabled;
    }
    let slice = match vault.catalog.gc_orphan_slice() {
        Ok(s) => s,
        Err(e) => {
            return AutoGc::Skipped {
                reason: crate::error::chain_line(&e),
            };
        }
    };
    let opts = GcOptions {
        orphan_slice: Some(slice),
        ..GcOptions::from_settings(settings)
    };
    let res = gc_plan(vault, &opts)
        .and_then(gc)
        .and_then(|r| vault.catalog.advance_gc_orphan_slice(slice).map(|()| r));
    match res {
        Ok(r) => AutoGc::Collected(r),
        Err(Error::Locked { holder, .. }) => AutoGc::Skipped {
            reason: format!("the store is locked by {holder}"),
        },
        Err(e) => AutoGc::Skipped {
            reason: crate::error::chain_line(&e),
        },
    }
}

/// What gc did (or, from [`GcPlan::report`], would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub(crate) keep_last: u32,
    pub grace_secs: u64,
    pub snapshots_kept: u64,
    pub snapshots_dropped: Vec<DroppedSnapshot>,
    pub trees_kept: Vec<KeptTree>,
    pub trees_dropped: Vec<String>,
    pub publications_dropped: u64,
    /// Grace items removed from kept trees: links to items of a snapshot that no kept tree
    /// serves any more, so no reader can still be working from its metadata.
    pub(crate) grace_files_dropped: u64,
    pub blobs_kept: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_within_grace: u64,
    pub blobs_dropped: u64,
    /// Sum of the recorded sizes of the dropped blob rows.
    pub blob_bytes_dropped: u64,
    /// Files in `blobs/` without a row (in the slice walked, see [`Self::orphan_slice`]).
    pub orphan_blobs: u64,
    /// The automatic gc's slice of `blobs/` walked for orphans: the prefix directories starting
    /// with this hex digit; absent when every directory was walked (`gc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orphan_slice: Option<u8>,
    /// Directories in `trees/` without a row (and not published).
    pub orphan_trees: Vec<String>,
    pub tmp_entries: u64,
    pub partial_files: u64,
    pub files_unlinked: u64,
    /// Apparent size of the files whose last link was removed.
    pub freed_bytes: u64,
    /// Disk blocks of those files (bytes).
    pub freed_disk_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DroppedSnapshot {
    pub id: SnapshotId,
    pub source: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeptTree {
    pub name: String,
    /// `None` for a directory that a dest links to but that has no row.
    pub snapshot: Option<SnapshotId>,
    pub reason: KeepReason,
    /// The dest it is (or was) published on.
    pub dest: Option<String>,
    /// When it was published, retired or created (unix seconds), as the reason says.
    pub at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    /// A publication row that is not retired.
    Published,
    /// The dest's symlink points at it (whatever the rows say).
    Linked,
    RetiredWithinGrace,
    NewWithinGrace,
}

impl KeepReason {
    /// The reason a plan's temporary table records (written by the plan itself: any other
    /// value is a bug, reported as a conversion error rather than guessed).
    fn parse(s: &str) -> Option<KeepReason> {
        match s {
            "published" => Some(KeepReason::Published),
            "linked" => Some(KeepReason::Linked),
            "retired_within_grace" => Some(KeepReason::RetiredWithinGrace),
            "new_within_grace" => Some(KeepReason::NewWithinGrace),
            _ => None,
        }
    }
}

/// A decided collection: the store lock is held until it is executed with [`gc`] or dropped.
/// The lists live in temporary tables of `vault`'s catalogue connection.
pub struct GcPlan<'a> {
    vault: &'a mut Vault,
    lock: LockGuard,
    report: GcReport,
}

impl GcPlan<'_> {
    /// What [`gc`] would do, with `dry_run` set.
    pub fn report(&self) -> &GcReport {
        &self.report
    }
}

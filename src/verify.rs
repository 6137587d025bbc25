//! `verify` and `verify --repair`: re-hash every blob against its name (BLAKE3), its recorded
//! size and its recorded upstream checksums; check every file of every tree — its snapshot's
//! items, its grace items (`tree_grace`), its metadata documents (`tree_documents`, or the
//! snapshot's for trees built before that table) — and report every other entry of the tree
//! ([`Problem::TreeFileUnexpected`]: another tool writing through a published link); check the
//! catalogue against `blobs/` and `trees/` both ways. Then, with `--repair`, fix what can be
//! fixed safely (strays go to `quarantine/`) and say what could not be.
//!
//! Orphans ([`Problem::is_orphan`]: a blob file or tree directory without a row, what a killed
//! run leaves and the next gc removes) are reported but are not damage: the command exits 0 when
//! they are all it finds ([`VerifyReport::damage`]). JSON finding kinds are stable: new kinds are
//! added, none renamed.
//!
//! Protects invariant 1 (a blob row means a complete, verified file: corrupt or missing files are
//! found, quarantined and re-fetched exactly like a sync commits them: partial → fsync → rename →
//! fsync dir → row) and invariant 3 from the disk's side (a tree file that differs from its blob
//! is replaced by one rename, never edited in place; a corrupt file is never left being served).
//!
//! Locking: [`verify`] holds the store lock shared (opened read-only on a read-only root, where
//! no writer can run either), so gc cannot delete under it while syncs go on;
//! a blob file without a row is reported only if its row is still missing at the end (a sync
//! running alongside inserts its rows right after committing the files). [`repair_plan`] holds the
//! lock exclusively from the check to the end of [`repair`]: no writer can be between committing a
//! file and inserting its row while orphans are removed.
//!
//! Memory stays flat in the number of blobs and in the size of trees: rows are streamed from
//! SQLite into a bounded channel of `jobs` hashing threads; only the problems found are
//! collected. The files a tree must hold go into a temporary table on disk
//! (`Catalog::expect_tree_files`), which the walk of the tree looks each entry up in (the stray
//! check) and which feeds the file checks in path order.
//!
//! Where it lives: `check` (the checks; `pool`, a bounded thread pool, and `files`, hashing and
//! directory helpers, under it), `repair` (the fixes) and `refetch` (downloading a blob again
//! from where it was fetched). Every statement they run is the catalogue's
//! (`catalog::maintenance`); tree paths and the quarantine come from `store::Layout`, the trees
//! the dests link to from `Layout::linked_trees`, as for `gc`.
//!
//! A read-only root works: the lock is taken through a read-only descriptor (or not at all when
//! the lock file cannot be created: then no writer can run either).

use std::path::PathBuf;

use crate::error::Result;
use crate::fetch::FetchOptions;
use crate::lock::LockGuard;
use crate::vault::Vault;

mod check;
mod files;
mod pool;
mod refetch;
mod repair;
pub mod s3;

use check::check;
pub use repair::repair;

/// How verify runs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Hashing threads (at least 1).
    pub jobs: usize,
    /// Wait for the store lock instead of failing with [`Error::Locked`](crate::error::Error::Locked).
    pub wait: bool,
    /// How re-fetches go (repair only).
    pub fetch: FetchOptions,
}

/// Retries per request when `verify --repair` re-fetches (the CLI's default).
pub const DEFAULT_REFETCH_RETRIES: u32 = 2;

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            wait: false,
            fetch: FetchOptions::default(),
        }
    }
}

/// One inconsistency between the catalogue, `blobs/` and `trees/`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Problem {
    /// A blob row whose file is gone.
    BlobMissing { blob: String },
    /// A blob file whose size, content or upstream checksum does not match its row.
    BlobCorrupt { blob: String, detail: String },
    /// A blob file that cannot be read.
    BlobUnreadable { blob: String, error: String },
    /// A file in `blobs/` with no row (or that is not a blob at all).
    OrphanFile { path: PathBuf },
    /// A tree row whose directory is gone.
    TreeMissing { tree: String },
    /// An item file missing from a tree.
    TreeFileMissing {
        tree: String,
        path: String,
        blob: String,
    },
    /// An item file of a tree whose content is not its blob's.
    TreeFileDiffers {
        tree: String,
        path: String,
        blob: String,
    },
    /// An item file of a tree that is the (corrupt) blob file itself, hardlinked.
    TreeFileCorrupt {
        tree: String,
        path: String,
        blob: String,
    },
    /// A file or directory in a tree that nothing put there: not an item of its snapshot, not a
    /// grace item, not one of its metadata documents (e.g. another tool writing through DEST:
    /// python `sstream-mirror`'s new files and `.data/`). A directory is reported once, with a
    /// trailing `/`.
    TreeFileUnexpected { tree: String, path: String },
    /// An empty directory in a tree that lists nothing under it (gc removed the grace items it
    /// held and was killed before removing it): an orphan.
    TreeEmptyDirectory { tree: String, path: String },
    /// A directory in `trees/` with no row.
    OrphanTree {
        name: String,
        /// The dest whose symlink points at it, if any.
        linked_from: Option<String>,
    },
}

impl Problem {
    /// Left behind by a killed run and removed by the next `gc` (a file in `blobs/` without a
    /// row, a tree directory without a row that no DEST links to): reported, but not damage —
    /// `verify` exits 0 when these are all it finds.
    pub(crate) fn is_orphan(&self) -> bool {
        match self {
            Problem::OrphanFile { .. }
            | Problem::TreeEmptyDirectory { .. }
            | Problem::OrphanTree {
                linked_from: None, ..
            } => true,
            // The temporary name of a killed `verify --repair`.
            Problem::TreeFileUnexpected { path, .. } => path
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(".streamvault-repair-")),
            _ => false,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::BlobMissing { blob } => write!(f, "blob `{blob}` is missing"),
            Problem::BlobCorrupt { blob, detail } => {
                write!(f, "blob `{blob}` is corrupt: {detail}")
            }
            Problem::BlobUnreadable { blob, error } => {
                write!(f, "blob `{blob}` cannot be read: {error}")
            }
            Problem::OrphanFile { path } => {
                write!(f, "file `{}` has no catalogue row", path.display())
            }
            Problem::TreeMissing { tree } => write!(f, "tree `{tree}` has no directory"),
            Problem::TreeFileMissing { tree, path, blob } => {
                write!(f, "tree `{tree}`: `{path}` is missing (blob `{blob}`)")
            }
            Problem::TreeFileDiffers { tree, path, blob } => {
                write!(f, "tree `{tree}`: `{path}` differs from blob `{blob}`")
            }
            Problem::TreeFileCorrupt { tree, path, blob } => {
                write!(f, "tree `{tree}`: `{path}` is the corrupt blob `{blob}`")
            }
            Problem::TreeFileUnexpected { tree, path } => write!(
                f,
                "tree `{tree}`: `{path}` is not part of the tree (written by another tool?)"
            ),
            Problem::TreeEmptyDirectory { tree, path } => {
                write!(
                    f,
                    "tree `{tree}`: `{path}` is an empty directory nothing lists"
                )
            }
            Problem::OrphanTree { name, linked_from } => match linked_from {
                Some(dest) => write!(
                    f,
                    "tree directory `{name}` has no catalogue row but `{dest}` links to it"
                ),
                None => write!(f, "tree directory `{name}` has no catalogue row"),
            },
        }
    }
}

/// What a repair did about one problem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Repair {
    Repaired { how: String },
    NotRepaired { why: String },
}

/// A problem and, after a repair, what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub(crate) problem: Problem,
    pub(crate) repair: Option<Repair>,
    /// [`Problem::is_orphan`]: harmless, the next gc removes it.
    pub(crate) orphan: bool,
}

impl Finding {
    pub(crate) fn is_fixed(&self) -> bool {
        matches!(self.repair, Some(Repair::Repaired { .. }))
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.problem)?;
        match &self.repair {
            None if matches!(self.problem, Problem::TreeEmptyDirectory { .. }) => {
                write!(f, " (orphan: `verify --repair` removes it)")
            }
            None if self.orphan => write!(f, " (orphan: the next gc removes it)"),
            None => Ok(()),
            Some(Repair::Repaired { how }) => write!(f, ": repaired: {how}"),
            Some(Repair::NotRepaired { why }) => write!(f, ": not repaired: {why}"),
        }
    }
}

/// What verify found (and repair did).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub repair: bool,
    pub blobs_checked: u64,
    pub bytes_hashed: u64,
    pub blob_files_seen: u64,
    pub trees_checked: u64,
    pub tree_files_checked: u64,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// Problems not repaired.
    pub fn remaining(&self) -> usize {
        self.findings.iter().filter(|f| !f.is_fixed()).count()
    }

    pub fn repaired(&self) -> usize {
        self.findings.iter().filter(|f| f.is_fixed()).count()
    }

    /// Problems not repaired that are real damage (not orphans): `verify` exits 1 for these only.
    pub fn damage(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| !f.is_fixed() && !f.orphan)
            .count()
    }

    /// Orphans not repaired (left by killed runs; the next gc removes them).
    pub fn orphans(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| !f.is_fixed() && f.orphan)
            .count()
    }
}

/// Check the store, holding the store lock shared. Changes nothing.
pub fn verify(vault: &Vault, opts: &VerifyOptions) -> Result<VerifyReport> {
    let _lock = vault.lock_store_for_reading(opts.wait, "verify")?;
    check(vault, opts.jobs)
}

/// Checked, with the store lock held exclusively until [`repair`] runs or this is dropped.
pub struct RepairPlan<'a> {
    vault: &'a mut Vault,
    lock: LockGuard,
    report: VerifyReport,
    fetch: FetchOptions,
}

/// Take the store lock exclusively and check the store.
pub fn repair_plan<'a>(vault: &'a mut Vault, opts: &VerifyOptions) -> Result<RepairPlan<'a>> {
    let lock = vault.lock_store_exclusive(opts.wait, "verify --repair")?;
    let mut report = check(vault, opts.jobs)?;
    report.repair = true;
    Ok(RepairPlan {
        vault,
        lock,
        report,
        fetch: opts.fetch.clone(),
    })
}

#[cfg(test)]
mod tests;

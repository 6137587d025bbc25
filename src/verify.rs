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
//! Memory stays flat in the number of blobs: rows are streamed from SQLite into a bounded
//! channel of `jobs` hashing threads; only the problems found are collected. The one exception
//! is the path set of the tree being checked (its expected files, for the stray check), held
//! while that tree is checked.
//!
//! A read-only root works: the lock is taken through a read-only descriptor (or not at all when
//! the lock file cannot be created: then no writer can run either).

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::params;

use crate::catalog::{self, Catalog};
use crate::checksum::{Algo, Checksums, Digests, MultiHasher};
use crate::error::{Error, IoResultExt, Result};
use crate::fetch::{Expect, FetchOptions, Fetcher, Location, NoProgress};
use crate::gc;
use crate::lock::LockGuard;
use crate::store::{self, Layout};
use crate::vault::Vault;

/// How verify runs.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Hashing threads (at least 1).
    pub jobs: usize,
    /// Wait for the store lock instead of failing with [`Error::Locked`].
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
pub enum Problem {
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
    pub fn is_orphan(&self) -> bool {
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
pub enum Repair {
    Repaired { how: String },
    NotRepaired { why: String },
}

/// A problem and, after a repair, what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub problem: Problem,
    pub repair: Option<Repair>,
    /// [`Problem::is_orphan`]: harmless, the next gc removes it.
    pub orphan: bool,
}

impl Finding {
    pub fn is_fixed(&self) -> bool {
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

impl RepairPlan<'_> {
    /// The problems found (none has a repair outcome yet).
    pub fn report(&self) -> &VerifyReport {
        &self.report
    }
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

/// Fix what can be fixed, in this order: remove blob files without rows; quarantine corrupt
/// blobs; re-fetch corrupt and missing blobs from their sources (or drop the row of a missing
/// blob nothing refers to); re-link tree files; remove tree directories without rows. Every
/// finding gets its outcome.
pub fn repair(plan: RepairPlan<'_>) -> Result<VerifyReport> {
    let RepairPlan {
        vault,
        lock,
        mut report,
        fetch,
    } = plan;
    let layout = vault.layout.clone();
    let now = catalog::now();

    // 1. Orphan files, 2. quarantine, collecting what to re-fetch.
    let mut refetch: Vec<usize> = Vec::new();
    // Blobs that stay bad or absent: trees must not be re-linked to them.
    let mut unavailable: HashSet<String> = HashSet::new();
    for (i, f) in report.findings.iter_mut().enumerate() {
        match &f.problem {
            Problem::OrphanFile { path } => {
                f.repair = Some(remove_orphan_file(&vault.catalog, path));
            }
            Problem::BlobCorrupt { blob, .. } | Problem::BlobUnreadable { blob, .. } => {
                match quarantine(&layout, blob, now) {
                    Ok(()) if !referenced(&vault.catalog, blob)? => {
                        drop_row(&vault.catalog, blob)?;
                        f.repair = Some(Repair::Repaired {
                            how: "moved to quarantine; row removed (no snapshot refers to it)"
                                .into(),
                        });
                    }
                    Ok(()) => refetch.push(i),
                    Err(e) => {
                        unavailable.insert(blob.clone());
                        f.repair = Some(not_repaired(format!(
                            "cannot move it to quarantine: {}",
                            crate::sync::error_line(&e)
                        )))
                    }
                }
            }
            Problem::BlobMissing { blob } => {
                if referenced(&vault.catalog, blob)? {
                    refetch.push(i);
                } else {
                    drop_row(&vault.catalog, blob)?;
                    f.repair = Some(Repair::Repaired {
                        how: "row removed (no snapshot refers to it)".into(),
                    });
                }
            }
            _ => {}
        }
    }

    // 3. Re-fetch.
    let mut jobs = Vec::new();
    for &i in &refetch {
        if let Some(Finding {
            problem:
                Problem::BlobCorrupt { blob, .. }
                | Problem::BlobUnreadable { blob, .. }
                | Problem::BlobMissing { blob },
            ..
        }) = report.findings.get(i)
        {
            jobs.push((i, refetch_job(&vault.catalog, blob)?));
        }
    }
    let outcomes = run_refetches(&layout, &fetch, jobs)?;
    for (i, hex, result) in outcomes {
        let outcome = match result {
            Ok((partial, digests, url)) => {
                vault.blobs.commit(&partial, &digests)?;
                vault.catalog.insert_blob(&digests)?;
                Repair::Repaired {
                    how: format!("re-fetched from `{url}`"),
                }
            }
            Err(why) => {
                unavailable.insert(hex);
                not_repaired(why)
            }
        };
        if let Some(f) = report.findings.get_mut(i) {
            f.repair = Some(outcome);
        }
    }

    // 4. Trees, now that blobs are back; 5. orphan tree directories.
    for f in report.findings.iter_mut() {
        let outcome = match &f.problem {
            Problem::TreeFileMissing { tree, path, blob }
            | Problem::TreeFileDiffers { tree, path, blob }
            | Problem::TreeFileCorrupt { tree, path, blob } => {
                let bad_present = !matches!(f.problem, Problem::TreeFileMissing { .. });
                if !layout.blob(blob).is_some_and(|p| p.is_file())
                    && is_document(&vault.catalog, tree, path)?
                {
                    // A filtered tree's generated document: no copy of it is stored anywhere.
                    f.repair = Some(not_repaired(
                        "a generated metadata document, stored nowhere else: publish the snapshot again with `--rebuild`".into(),
                    ));
                    continue;
                }
                repair_tree_file(
                    &layout,
                    tree,
                    path,
                    blob,
                    unavailable.contains(blob),
                    bad_present,
                    now,
                )
            }
            Problem::TreeMissing { .. } => {
                not_repaired("its files cannot be rebuilt here: publish the snapshot again".into())
            }
            Problem::TreeFileUnexpected { tree, path }
            | Problem::TreeEmptyDirectory { tree, path } => remove_stray(&layout, tree, path, now),
            Problem::OrphanTree { name, linked_from } => match linked_from {
                Some(dest) => not_repaired(format!(
                    "`{dest}` is published from it: publish again or remove the link first"
                )),
                None => remove_orphan_tree(&layout, name),
            },
            _ => continue,
        };
        f.repair = Some(outcome);
    }
    drop(lock);
    Ok(report)
}

// ----------------------------------------------------------------------------------- check

/// The checks themselves (the caller holds the store lock).
fn check(vault: &Vault, jobs: usize) -> Result<VerifyReport> {
    let jobs = jobs.max(1);
    let layout = &vault.layout;
    let cat = &vault.catalog;
    let mut report = VerifyReport::default();

    // 1. Every blob row: its file, re-hashed.
    let (blob_findings, corrupt, checked, hashed) = {
        let layout = layout.clone();
        let work = move |job: BlobJob| check_blob(&layout, job);
        pool(
            jobs,
            work,
            |send| {
                let mut st = cat
                    .conn()
                    .prepare("SELECT blake3, size, md5, sha256, sha512 FROM blobs")
                    .map_err(|e| cat.err(e))?;
                let mut rows = st.query([]).map_err(|e| cat.err(e))?;
                while let Some(r) = rows.next().map_err(|e| cat.err(e))? {
                    let job = BlobJob {
                        hex: r.get(0).map_err(|e| cat.err(e))?,
                        size: r.get(1).map_err(|e| cat.err(e))?,
                        sums: Checksums {
                            md5: r.get(2).map_err(|e| cat.err(e))?,
                            sha256: r.get(3).map_err(|e| cat.err(e))?,
                            sha512: r.get(4).map_err(|e| cat.err(e))?,
                        },
                    };
                    if !send(job) {
                        break;
                    }
                }
                Ok(())
            },
            (Vec::new(), HashSet::new(), 0u64, 0u64),
            |(findings, corrupt, checked, hashed): &mut (
                Vec<Finding>,
                HashSet<String>,
                u64,
                u64,
            ),
             (problem, bytes): (Option<Problem>, u64)| {
                *checked += 1;
                *hashed += bytes;
                if let Some(p) = problem {
                    if let Problem::BlobCorrupt { blob, .. }
                    | Problem::BlobUnreadable { blob, .. } = &p
                    {
                        corrupt.insert(blob.clone());
                    }
                    findings.push(found(p));
                }
            },
        )?
    };
    report.blobs_checked = checked;
    report.bytes_hashed = hashed;
    report.findings = blob_findings;
    report.findings.sort_by_key(|f| f.problem.to_string());

    // 2. Files in blobs/ without a row (re-checked at the end).
    let mut candidates = Vec::new();
    report.blob_files_seen = scan_blob_files(layout, cat, &mut candidates)?;

    // 3. Every file of every tree: its snapshot's items, its grace items, its documents; then
    //    whatever else is there.
    let trees: Vec<(i64, String, i64, String)> = {
        let mut st = cat
            .conn()
            .prepare("SELECT id, name, snapshot_id, mode FROM trees ORDER BY name")
            .map_err(|e| cat.err(e))?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(|e| cat.err(e))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| cat.err(e))?
    };
    let corrupt = Arc::new(corrupt);
    let mut tree_findings = Vec::new();
    for (id, name, snapshot, mode) in &trees {
        report.trees_checked += 1;
        let dir = gc::tree_dir(layout, name)
            .filter(|d| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()));
        let Some(dir) = dir else {
            tree_findings.push(found(Problem::TreeMissing { tree: name.clone() }));
            continue;
        };
        let expected = expected_files(cat, *id, name, *snapshot, mode)?;
        let mut f = unexpected_files(&dir, name, &expected)?;
        let ctx = TreeCtx {
            layout: layout.clone(),
            tree: name.clone(),
            dir,
            corrupt: corrupt.clone(),
        };
        let paths = expected.paths;
        let (mut checked, n) = pool(
            jobs,
            move |job: TreeJob| check_tree_file(&ctx, job),
            |send| {
                for (path, e) in paths {
                    let job = TreeJob {
                        path,
                        blobs: e.blobs,
                        required: e.required,
                    };
                    if !send(job) {
                        break;
                    }
                }
                Ok(())
            },
            (Vec::new(), 0u64),
            |(findings, n): &mut (Vec<Finding>, u64), problem: Option<Problem>| {
                *n += 1;
                if let Some(p) = problem {
                    findings.push(found(p));
                }
            },
        )?;
        report.tree_files_checked += n;
        f.append(&mut checked);
        f.sort_by_key(|f| f.problem.to_string());
        tree_findings.append(&mut f);
    }
    report.findings.extend(tree_findings);

    // 4. Directories in trees/ without a row.
    let links = gc::live_links(layout, cat)?;
    if let Some(entries) = read_dir(&layout.trees())? {
        let mut orphans = Vec::new();
        for entry in entries {
            let entry = entry.with_path("read directory", &layout.trees())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !trees.iter().any(|(_, t, _, _)| *t == name) {
                let linked_from = links
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, d)| d.clone());
                orphans.push(found(Problem::OrphanTree { name, linked_from }));
            }
        }
        orphans.sort_by_key(|f| f.problem.to_string());
        report.findings.extend(orphans);
    }

    // 5. The orphan files whose row is still missing now.
    for path in candidates {
        if !blob_row_for(cat, &path)? && fs::symlink_metadata(&path).is_ok() {
            report.findings.push(found(Problem::OrphanFile { path }));
        }
    }
    Ok(report)
}

fn found(problem: Problem) -> Finding {
    Finding {
        orphan: problem.is_orphan(),
        problem,
        repair: None,
    }
}

struct BlobJob {
    hex: String,
    size: i64,
    sums: Checksums,
}

/// Check one blob row's file: `(problem, bytes hashed)`.
fn check_blob(layout: &Layout, job: BlobJob) -> (Option<Problem>, u64) {
    let blob = job.hex.clone();
    let corrupt = |detail: String| {
        (
            Some(Problem::BlobCorrupt {
                blob: blob.clone(),
                detail,
            }),
            0,
        )
    };
    let Some(path) = layout.blob(&job.hex) else {
        return corrupt("its row is not a BLAKE3 digest".into());
    };
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return (Some(Problem::BlobMissing { blob }), 0);
        }
        Err(e) => {
            return (
                Some(Problem::BlobUnreadable {
                    blob,
                    error: e.to_string(),
                }),
                0,
            );
        }
    };
    if !meta.is_file() {
        return corrupt("not a regular file".into());
    }
    if i64::try_from(meta.len()).ok() != Some(job.size) {
        return corrupt(format!("size {}, expected {}", meta.len(), job.size));
    }
    let algos: Vec<Algo> = [Algo::Md5, Algo::Sha256, Algo::Sha512]
        .into_iter()
        .filter(|a| job.sums.get(*a).is_some())
        .collect();
    let digests = match hash_file(&path, &algos) {
        Ok(d) => d,
        Err(e) => {
            return (
                Some(Problem::BlobUnreadable {
                    blob,
                    error: e.to_string(),
                }),
                0,
            );
        }
    };
    let bytes = digests.size;
    if digests.blake3 != job.hex.to_ascii_lowercase() {
        let (p, _) = corrupt("its content does not match its BLAKE3 name".into());
        return (p, bytes);
    }
    for algo in algos {
        let want = job.sums.get(algo).map(str::to_ascii_lowercase);
        if digests.upstream.get(algo).map(str::to_string) != want {
            let (p, _) = corrupt(format!("{} differs from the recorded one", algo.name()));
            return (p, bytes);
        }
    }
    (None, bytes)
}

struct TreeCtx {
    layout: Layout,
    tree: String,
    dir: PathBuf,
    corrupt: Arc<HashSet<String>>,
}

struct TreeJob {
    path: String,
    /// The blobs whose content is right at this path (several only for grace items listed
    /// differently by two snapshots).
    blobs: Vec<String>,
    /// Missing is a problem (not for grace items whose adding never completed).
    required: bool,
}

/// What one path of a tree must hold.
#[derive(Default)]
struct Expected {
    blobs: Vec<String>,
    required: bool,
    /// An item of the tree's own snapshot or one of its documents (not a grace item).
    own: bool,
}

fn add_expected(
    paths: &mut std::collections::BTreeMap<String, Expected>,
    path: String,
    blob: String,
    required: bool,
    own: bool,
) {
    if crate::streams::check_path(&path).is_err() {
        return; // never stored by sync; nothing to look at safely
    }
    let x = paths.entry(path).or_default();
    if !x.blobs.contains(&blob) {
        x.blobs.push(blob);
    }
    x.required |= required;
    x.own |= own;
}

/// Every path a tree may hold, and the directories leading to them.
struct ExpectedFiles {
    paths: std::collections::BTreeMap<String, Expected>,
    dirs: HashSet<String>,
    /// A filtered tree built before its documents were recorded: its documents are not known,
    /// so nothing under `streams/` is reported as unexpected.
    documents_unknown: bool,
    /// Grace links gc has journalled for removal (`gc_pending_unlink`: a gc killed between its
    /// row transaction and its unlinks): the next gc removes them; they are not strays.
    pending: HashSet<String>,
}

/// The files of tree `id`: its snapshot's items, its documents (recorded at build; for older
/// trees the snapshot's documents when verbatim), and its grace items (what `tree_grace` says it
/// bridges; a path its own items or documents take is never a grace item).
fn expected_files(
    cat: &Catalog,
    id: i64,
    name: &str,
    snapshot: i64,
    mode: &str,
) -> Result<ExpectedFiles> {
    let e = |err| cat.err(err);
    let mut paths: std::collections::BTreeMap<String, Expected> = Default::default();
    let own = |sql: &str,
               param: i64,
               paths: &mut std::collections::BTreeMap<String, Expected>|
     -> Result<usize> {
        let mut st = cat.conn().prepare(sql).map_err(e)?;
        let mut rows = st.query([param]).map_err(e)?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(e)? {
            add_expected(
                paths,
                r.get(0).map_err(e)?,
                r.get(1).map_err(e)?,
                true,
                true,
            );
            n += 1;
        }
        Ok(n)
    };
    own(
        "SELECT DISTINCT path, blob FROM snapshot_items
         WHERE snapshot_id = ?1 AND path IS NOT NULL AND blob IS NOT NULL",
        snapshot,
        &mut paths,
    )?;
    let mut documents_unknown = false;
    let recorded = own(
        "SELECT path, blake3 FROM tree_documents WHERE tree_id = ?1",
        id,
        &mut paths,
    )?;
    if recorded == 0 {
        if mode == "verbatim" {
            own(
                "SELECT path, blob FROM snapshot_documents WHERE snapshot_id = ?1",
                snapshot,
                &mut paths,
            )?;
        } else {
            documents_unknown = true;
        }
    }
    {
        let mut st = cat
            .conn()
            .prepare(
                "SELECT i.path, i.blob, g.complete FROM tree_grace g
                 JOIN snapshot_items i ON i.snapshot_id = g.snapshot_id
                 WHERE g.tree_id = ?1 AND i.path IS NOT NULL AND i.blob IS NOT NULL",
            )
            .map_err(e)?;
        let mut rows = st.query([id]).map_err(e)?;
        let mut grace: Vec<(String, String, bool)> = Vec::new();
        while let Some(r) = rows.next().map_err(e)? {
            let complete: i64 = r.get(2).map_err(e)?;
            grace.push((r.get(0).map_err(e)?, r.get(1).map_err(e)?, complete != 0));
        }
        for (path, blob, complete) in grace {
            // Grace links never replace a file of the tree's own.
            if paths.get(&path).is_some_and(|x| x.own) {
                continue;
            }
            add_expected(&mut paths, path, blob, complete, false);
        }
    }
    let mut pending = HashSet::new();
    {
        let mut st = cat
            .conn()
            .prepare("SELECT path FROM gc_pending_unlink WHERE tree = ?1")
            .map_err(e)?;
        let mut rows = st.query([name]).map_err(e)?;
        while let Some(r) = rows.next().map_err(e)? {
            let path: String = r.get(0).map_err(e)?;
            if crate::streams::check_path(&path).is_ok() {
                pending.insert(path);
            }
        }
    }
    let mut dirs = HashSet::new();
    for p in paths.keys().chain(pending.iter()) {
        let mut d = p.as_str();
        while let Some((parent, _)) = d.rsplit_once('/') {
            if !dirs.insert(parent.to_string()) {
                break;
            }
            d = parent;
        }
    }
    Ok(ExpectedFiles {
        paths,
        dirs,
        documents_unknown,
        pending,
    })
}

/// Entries of a tree directory that [`expected_files`] does not list (symlinks are never
/// followed; an unexpected directory is reported once, not its contents).
fn unexpected_files(dir: &Path, tree: &str, expected: &ExpectedFiles) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let mut walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|e| Error::Io {
            op: "walk",
            path: e.path().unwrap_or(dir).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("filesystem loop")),
        })?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .into_owned();
        let is_dir = entry.file_type().is_dir();
        if expected.documents_unknown && (rel == "streams" || rel.starts_with("streams/")) {
            if is_dir {
                walk.skip_current_dir();
            }
            continue;
        }
        if is_dir {
            if expected.dirs.contains(&rel) {
                continue;
            }
            walk.skip_current_dir();
            if expected.paths.contains_key(&rel) {
                continue; // reported by the file check (not a regular file)
            }
            let empty = walkdir::WalkDir::new(entry.path())
                .follow_links(false)
                .into_iter()
                .all(|e| e.is_ok_and(|e| e.file_type().is_dir()));
            let (tree, path) = (tree.to_string(), format!("{rel}/"));
            out.push(found(if empty {
                Problem::TreeEmptyDirectory { tree, path }
            } else {
                Problem::TreeFileUnexpected { tree, path }
            }));
        } else if !expected.paths.contains_key(&rel) && !expected.pending.contains(&rel) {
            out.push(found(Problem::TreeFileUnexpected {
                tree: tree.to_string(),
                path: rel,
            }));
        }
    }
    Ok(out)
}

/// Check one file of a tree: the own inode of one of its blobs (hardlink) or the same content
/// (copy).
fn check_tree_file(ctx: &TreeCtx, job: TreeJob) -> Option<Problem> {
    let target = ctx.dir.join(&job.path);
    let first = job.blobs.first().cloned().unwrap_or_default();
    let problem = |kind: fn(String, String, String) -> Problem, blob: String| {
        Some(kind(ctx.tree.clone(), job.path.clone(), blob))
    };
    let differs = |t, p, b| Problem::TreeFileDiffers {
        tree: t,
        path: p,
        blob: b,
    };
    let meta = match fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(_) if !job.required => return None,
        Err(_) => {
            return problem(
                |t, p, b| Problem::TreeFileMissing {
                    tree: t,
                    path: p,
                    blob: b,
                },
                first,
            );
        }
    };
    if !meta.is_file() {
        return problem(differs, first);
    }
    for blob in &job.blobs {
        let blob_meta = ctx
            .layout
            .blob(blob)
            .and_then(|p| fs::symlink_metadata(p).ok());
        if let Some(bm) = blob_meta
            && bm.dev() == meta.dev()
            && bm.ino() == meta.ino()
        {
            if ctx.corrupt.contains(blob) {
                return problem(
                    |t, p, b| Problem::TreeFileCorrupt {
                        tree: t,
                        path: p,
                        blob: b,
                    },
                    blob.clone(),
                );
            }
            return None;
        }
    }
    match hash_file(&target, &[]) {
        Ok(d) if job.blobs.contains(&d.blake3) => None,
        _ => problem(differs, first),
    }
}

/// Files in `blobs/` whose row is missing (or that are not blobs): candidates for
/// [`Problem::OrphanFile`]. Returns how many files were seen.
fn scan_blob_files(layout: &Layout, cat: &Catalog, out: &mut Vec<PathBuf>) -> Result<u64> {
    let blobs = layout.blobs();
    let Some(prefixes) = read_dir(&blobs)? else {
        return Ok(0);
    };
    let mut seen = 0;
    for prefix in prefixes {
        let prefix = prefix.with_path("read directory", &blobs)?;
        let dir = prefix.path();
        if !prefix.file_type().with_path("stat", &dir)?.is_dir() {
            seen += 1;
            out.push(dir);
            continue;
        }
        let Some(entries) = read_dir(&dir)? else {
            continue;
        };
        for entry in entries {
            let entry = entry.with_path("read directory", &dir)?;
            seen += 1;
            let p = entry.path();
            if !blob_row_for(cat, &p)? {
                out.push(p);
            }
        }
    }
    Ok(seen)
}

/// Does `p` name a blob (a canonical blob address) that has a row?
fn blob_row_for(cat: &Catalog, p: &Path) -> Result<bool> {
    match Layout::blob_name(p) {
        Some(name) => cat.has_blob(name),
        None => Ok(false),
    }
}

/// Run `work` over what `feed` sends on `jobs` threads through bounded channels; `fold` gathers
/// the results into `init` on a thread of its own. `feed` runs on the caller's thread (it may
/// hold a SQLite statement) and gets `false` back once the workers are gone.
fn pool<J, R, S, W, F, G>(jobs: usize, work: W, feed: F, init: S, mut fold: G) -> Result<S>
where
    J: Send,
    R: Send,
    S: Send,
    W: Fn(J) -> R + Sync,
    F: FnOnce(&dyn Fn(J) -> bool) -> Result<()>,
    G: FnMut(&mut S, R) + Send,
{
    let threads = |source| Error::Threads {
        what: "verify",
        source,
    };
    let (job_tx, job_rx) = mpsc::sync_channel::<J>(jobs * 4);
    let (res_tx, res_rx) = mpsc::sync_channel::<R>(jobs * 4);
    let job_rx = Mutex::new(job_rx);
    let job_rx = &job_rx;
    let work = &work;
    // Everything that keeps a worker waiting (the job sender) is moved into the scope, so an
    // early return drops it and the workers end.
    std::thread::scope(move |s| {
        let collector = std::thread::Builder::new()
            .spawn_scoped(s, move || {
                let mut state = init;
                for r in res_rx {
                    fold(&mut state, r);
                }
                state
            })
            .map_err(threads)?;
        for _ in 0..jobs {
            let res_tx = res_tx.clone();
            std::thread::Builder::new()
                .spawn_scoped(s, move || {
                    loop {
                        let next = match job_rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = next else { return };
                        if res_tx.send(work(job)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(threads)?;
        }
        drop(res_tx);
        let fed = feed(&|job| job_tx.send(job).is_ok());
        drop(job_tx);
        let state = collector.join().map_err(|_| {
            threads(io::Error::other(
                "the result collector stopped unexpectedly",
            ))
        })?;
        fed.map(|()| state)
    })
}

/// Hash a file through BLAKE3 and `algos`.
fn hash_file(path: &Path, algos: &[Algo]) -> io::Result<Digests> {
    let mut f = fs::File::open(path)?;
    let mut h = MultiHasher::new(algos);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(h.finish())
}

fn read_dir(dir: &Path) -> Result<Option<fs::ReadDir>> {
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

// ---------------------------------------------------------------------------------- repair

fn not_repaired(why: String) -> Repair {
    Repair::NotRepaired { why }
}

/// Where corrupt and displaced files go: out of `blobs/` and `trees/`, kept for inspection.
pub fn quarantine_dir(layout: &Layout) -> PathBuf {
    layout.root().join("quarantine")
}

fn quarantine(layout: &Layout, hex: &str, now: i64) -> Result<()> {
    let Some(src) = layout.blob(hex) else {
        return Err(Error::BadDigest(hex.to_string()));
    };
    let dir = quarantine_dir(layout);
    store::create_dir_mode(&dir, 0o700).with_path("create directory", &dir)?;
    let dest = dir.join(format!("{hex}.{now}"));
    match fs::rename(&src, &dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            op: "move to quarantine",
            path: src,
            source: e,
        }),
    }
}

fn remove_orphan_file(cat: &Catalog, path: &Path) -> Repair {
    match blob_row_for(cat, path) {
        Ok(false) => {}
        Ok(true) => return not_repaired("its row appeared meanwhile".into()),
        Err(e) => return not_repaired(crate::sync::error_line(&e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Repair::Repaired {
            how: "removed".into(),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Repair::Repaired {
            how: "already gone".into(),
        },
        Err(e) => not_repaired(format!("cannot remove it: {e}")),
    }
}

/// Is `path` a recorded metadata document of tree `tree`?
fn is_document(cat: &Catalog, tree: &str, path: &str) -> Result<bool> {
    cat.conn()
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM tree_documents d JOIN trees t ON t.id = d.tree_id
                            WHERE t.name = ?1 AND d.path = ?2)",
            params![tree, path],
            |r| r.get(0),
        )
        .map_err(|e| cat.err(e))
}

/// Move a file or directory nothing put into a tree to quarantine (removed when the tree is on
/// another filesystem than the quarantine), then make the removal durable.
fn remove_stray(layout: &Layout, tree: &str, rel: &str, now: i64) -> Repair {
    let Some(dir) = gc::tree_dir(layout, tree) else {
        return not_repaired("its tree name is not a plain directory name".into());
    };
    let rel = rel.trim_end_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return not_repaired("its path is not safe".into());
    }
    let target = dir.join(rel);
    // Every parent must be a real directory of the tree: a symlink is never followed.
    let mut parent = dir.clone();
    let comps: Vec<&str> = rel.split('/').collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        parent.push(c);
        if !fs::symlink_metadata(&parent).is_ok_and(|m| m.is_dir()) {
            return not_repaired(format!("`{}` is not a directory", parent.display()));
        }
    }
    let meta = match fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Repair::Repaired {
                how: "already gone".into(),
            };
        }
        Err(e) => return not_repaired(format!("cannot stat it: {e}")),
    };
    let qdir = quarantine_dir(layout);
    let dest = qdir.join(format!("tree-{tree}-{}.{now}", rel.replace('/', "_")));
    let moved = store::create_dir_mode(&qdir, 0o700).and_then(|_| fs::rename(&target, &dest));
    let how = match moved {
        Ok(()) => format!("moved to `{}`", dest.display()),
        Err(_) => {
            let removed = if meta.is_dir() {
                gc_make_writable(&target);
                fs::remove_dir_all(&target)
            } else {
                fs::remove_file(&target)
            };
            match removed {
                Ok(()) => "removed".into(),
                Err(e) => return not_repaired(format!("cannot remove it: {e}")),
            }
        }
    };
    match store::sync_dir(&parent) {
        Ok(()) => Repair::Repaired { how },
        Err(e) => not_repaired(crate::sync::error_line(&e)),
    }
}

/// Directories of a stray tree may be read-only: open them up before removing them.
fn gc_make_writable(dir: &Path) {
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

fn remove_orphan_tree(layout: &Layout, name: &str) -> Repair {
    let Some(dir) = gc::tree_dir(layout, name) else {
        return not_repaired("its name is not a plain directory name".into());
    };
    let res = match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&dir),
        Ok(_) => fs::remove_file(&dir),
        Err(e) => Err(e),
    };
    match res {
        Ok(()) => Repair::Repaired {
            how: "removed".into(),
        },
        Err(e) => not_repaired(format!("cannot remove it: {e}")),
    }
}

/// Delete the row of a blob nothing refers to (its file is already gone).
fn drop_row(cat: &Catalog, hex: &str) -> Result<()> {
    cat.conn()
        .execute("DELETE FROM blobs WHERE blake3 = ?1", [hex])
        .map_err(|e| cat.err(e))?;
    Ok(())
}

/// Does any snapshot item or document name this blob?
fn referenced(cat: &Catalog, hex: &str) -> Result<bool> {
    cat.conn()
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM snapshot_items WHERE blob = ?1)
                 OR EXISTS (SELECT 1 FROM snapshot_documents WHERE blob = ?1)",
            [hex],
            |r| r.get(0),
        )
        .map_err(|e| cat.err(e))
}

/// Where one blob can be fetched from and what it must match.
struct RefetchJob {
    hex: String,
    expect: Expect,
    /// `(base + mirrors, path)`, newest snapshot first.
    places: Vec<(Location, String)>,
}

/// The recorded places of a blob: each snapshot's URL + the item's (or document's) path, with
/// the source's mirrors.
fn refetch_job(cat: &Catalog, hex: &str) -> Result<RefetchJob> {
    let e = |err| cat.err(err);
    let (size, md5, sha256, sha512): (i64, Option<String>, Option<String>, Option<String>) = cat
        .conn()
        .query_row(
            "SELECT size, md5, sha256, sha512 FROM blobs WHERE blake3 = ?1",
            [hex],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map_err(e)?;
    let mut st = cat
        .conn()
        .prepare(
            "SELECT url, path, source_name FROM (
                 SELECT s.id, s.url, i.path, s.source_name FROM snapshot_items i
                 JOIN snapshots s ON s.id = i.snapshot_id WHERE i.blob = ?1 AND i.path IS NOT NULL
                 UNION
                 SELECT s.id, s.url, d.path, s.source_name FROM snapshot_documents d
                 JOIN snapshots s ON s.id = d.snapshot_id WHERE d.blob = ?1)
             GROUP BY url, path ORDER BY max(id) DESC LIMIT 8",
        )
        .map_err(e)?;
    let rows: Vec<(String, String, String)> = st
        .query_map([hex], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(e)?
        .collect::<rusqlite::Result<_>>()
        .map_err(e)?;
    let mut places = Vec::new();
    for (url, path, source) in rows {
        if crate::streams::check_path(&path).is_err() {
            continue;
        }
        let mirrors: Vec<String> = cat
            .conn()
            .query_row(
                "SELECT mirrors FROM sources WHERE name = ?1",
                params![source],
                |r| r.get::<_, String>(0),
            )
            .ok()
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default();
        places.push((Location::new(url).with_mirrors(mirrors), path));
    }
    Ok(RefetchJob {
        hex: hex.to_string(),
        expect: Expect {
            size: u64::try_from(size).ok(),
            checksums: Checksums {
                md5,
                sha256,
                sha512,
            },
        },
        places,
    })
}

type Refetched = std::result::Result<(PathBuf, Digests, String), String>;

/// Download every job (the fetcher bounds concurrency); each result is a verified file in
/// `partial/` whose BLAKE3 is the blob's name, or why there is none.
fn run_refetches(
    layout: &Layout,
    fetch: &FetchOptions,
    jobs: Vec<(usize, RefetchJob)>,
) -> Result<Vec<(usize, String, Refetched)>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let fetcher = Fetcher::new(fetch.clone())?;
    let partial_dir = layout.partial();
    fs::create_dir_all(&partial_dir).with_path("create directory", &partial_dir)?;
    Ok(rt.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        for (i, job) in jobs {
            let fetcher = fetcher.clone();
            let partial = partial_dir.join(format!("repair-{}", job.hex));
            set.spawn(async move {
                let res = refetch(&fetcher, &job, &partial).await;
                (i, job.hex, res)
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(r) = joined {
                out.push(r);
            }
        }
        out
    }))
}

async fn refetch(fetcher: &Fetcher, job: &RefetchJob, partial: &Path) -> Refetched {
    if job.places.is_empty() {
        return Err("no snapshot records where it came from".into());
    }
    let mut last = String::new();
    for (loc, rel) in &job.places {
        match fetcher
            .download(loc, rel, partial, &job.expect, &NoProgress)
            .await
        {
            Ok(d) if d.digests.blake3 == job.hex => {
                return Ok((partial.to_path_buf(), d.digests, d.url));
            }
            Ok(d) => {
                let _ = tokio::fs::remove_file(partial).await;
                last = format!("`{}` now serves different content", d.url);
            }
            Err(e) => last = format!("cannot fetch it: {}", crate::sync::error_line(&e)),
        }
    }
    Err(last)
}

/// Put the blob back at `path` in tree `tree`: hardlink (copy when linking is refused) to a
/// temporary name in the same directory, then one rename over the path, then fsync the
/// directory. When the blob is not available a wrong file is moved to quarantine rather than
/// left being served.
fn repair_tree_file(
    layout: &Layout,
    tree: &str,
    rel: &str,
    hex: &str,
    blob_unavailable: bool,
    bad_present: bool,
    now: i64,
) -> Repair {
    let Some(dir) = gc::tree_dir(layout, tree) else {
        return not_repaired("its tree name is not a plain directory name".into());
    };
    if crate::streams::check_path(rel).is_err() {
        return not_repaired("its path is not safe".into());
    }
    let target = dir.join(rel);
    let blob = layout.blob(hex).filter(|p| p.is_file());
    let (Some(blob), false) = (blob, blob_unavailable) else {
        if !bad_present {
            return not_repaired(format!("blob `{hex}` is not available"));
        }
        let qdir = quarantine_dir(layout);
        let dest = qdir.join(format!("tree-{tree}-{}.{now}", rel.replace('/', "_")));
        let moved = store::create_dir_mode(&qdir, 0o700).and_then(|_| fs::rename(&target, &dest));
        return match moved {
            Ok(()) => not_repaired(format!(
                "blob `{hex}` is not available; the wrong file was moved to `{}`",
                dest.display()
            )),
            Err(e) => not_repaired(format!(
                "blob `{hex}` is not available, and the wrong file cannot be moved away: {e}"
            )),
        };
    };
    match relink(&dir, rel, &blob, &target) {
        Ok(()) => Repair::Repaired {
            how: format!("re-linked to blob `{hex}`"),
        },
        Err(e) => not_repaired(crate::sync::error_line(&e)),
    }
}

/// Create the parents of `rel` inside `dir` without following symlinks (invariant 5), link
/// the blob to a temporary name beside the target and rename it over the target.
fn relink(dir: &Path, rel: &str, blob: &Path, target: &Path) -> Result<()> {
    let mut parent = dir.to_path_buf();
    let comps: Vec<&str> = rel.split('/').collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        parent.push(c);
        match fs::symlink_metadata(&parent) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::Io {
                    op: "use as a directory",
                    path: parent,
                    source: io::Error::other("not a directory (a symlink is never followed)"),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                store::create_dir_mode(&parent, store::TREE_DIR_MODE)
                    .with_path("create directory", &parent)?;
            }
            Err(e) => {
                return Err(Error::Io {
                    op: "stat",
                    path: parent,
                    source: e,
                });
            }
        }
    }
    let tmp = parent.join(format!(
        ".streamvault-repair-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    if let Err(e) = fs::hard_link(blob, &tmp) {
        // Another filesystem or too many links: a verified copy is as good.
        let copied = fs::copy(blob, &tmp)
            .and_then(|_| fs::File::open(&tmp))
            .and_then(|f| f.sync_all());
        if let Err(copy_err) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(Error::Io {
                op: "link or copy into",
                path: tmp,
                source: io::Error::other(format!("{e}; {copy_err}")),
            });
        }
    }
    if let Err(e) = fs::rename(&tmp, target) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io {
            op: "rename into",
            path: target.to_path_buf(),
            source: e,
        });
    }
    store::sync_dir(&parent)
}

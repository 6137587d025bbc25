//! verify's checks: every blob row re-hashed against its name, size and upstream checksums;
//! every file of every tree against its blob; what no row claims in `blobs/` and `trees/`. The
//! caller holds the store lock; nothing is changed here.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{hash_file, read_dir};
use super::pool::pool;
use super::{Finding, Problem, VerifyReport};
use crate::catalog::Catalog;
use crate::catalog::maintenance::{BlobRecord, ExpectedFile, TreeRecord};
use crate::checksum::Algo;
use crate::error::{Error, IoResultExt, Result};
use crate::store::{BlobHash, Layout};
use crate::vault::Vault;

/// The checks themselves (the caller holds the store lock).
pub(super) fn check(vault: &Vault, jobs: usize) -> Result<VerifyReport> {
    let jobs = jobs.max(1);
    let layout = &vault.layout;
    let cat = &vault.catalog;
    let mut report = VerifyReport::default();

    // 1. Every blob row: its file, re-hashed.
    let (blob_findings, corrupt, checked, hashed) = {
        let layout = layout.clone();
        let work = move |job: BlobRecord| check_blob(&layout, job);
        pool(
            jobs,
            work,
            |send| cat.each_blob_record(send),
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
    let trees = cat.tree_records()?;
    let corrupt = Arc::new(corrupt);
    let mut tree_findings = Vec::new();
    for TreeRecord {
        id,
        name,
        snapshot,
        mode,
    } in &trees
    {
        report.trees_checked += 1;
        let dir = layout
            .tree(name)
            .filter(|d| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()));
        let Some(dir) = dir else {
            tree_findings.push(found(Problem::TreeMissing { tree: name.clone() }));
            continue;
        };
        // The tree's files go into an on-disk table; the walk looks each entry up there.
        let documents_unknown = cat.expect_tree_files(*id, name, *snapshot, *mode, |p| {
            crate::streams::check_path(p).is_ok()
        })?;
        let mut f = unexpected_files(cat, &dir, name, documents_unknown)?;
        let ctx = TreeCtx {
            layout: layout.clone(),
            tree: name.clone(),
            dir,
            corrupt: corrupt.clone(),
        };
        let (mut checked, n) = pool(
            jobs,
            move |job: ExpectedFile| check_tree_file(&ctx, job),
            |send| cat.each_expected_file(send),
            (Vec::new(), 0u64),
            |(findings, n): &mut (Vec<Finding>, u64), problem: Option<Problem>| {
                *n += 1;
                if let Some(p) = problem {
                    findings.push(found(p));
                }
            },
        )?;
        cat.expect_done()?;
        report.tree_files_checked += n;
        f.append(&mut checked);
        f.sort_by_key(|f| f.problem.to_string());
        tree_findings.append(&mut f);
    }
    report.findings.extend(tree_findings);

    // 4. Directories in trees/ without a row.
    let links = layout.linked_trees(cat.publication_dests()?);
    if let Some(entries) = read_dir(&layout.trees())? {
        let mut orphans = Vec::new();
        for entry in entries {
            let entry = entry.with_path("read directory", &layout.trees())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !trees.iter().any(|t| t.name == name) {
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

pub(super) fn found(problem: Problem) -> Finding {
    Finding {
        orphan: problem.is_orphan(),
        problem,
        repair: None,
    }
}

/// Check one blob row's file: `(problem, bytes hashed)`.
fn check_blob(layout: &Layout, job: BlobRecord) -> (Option<Problem>, u64) {
    let blob = job.blake3.clone();
    let corrupt = |detail: String| {
        (
            Some(Problem::BlobCorrupt {
                blob: blob.clone(),
                detail,
            }),
            0,
        )
    };
    // Checked once: a row whose name is not a digest names no file.
    let Ok(hash) = BlobHash::parse(&job.blake3) else {
        return corrupt("its row is not a BLAKE3 digest".into());
    };
    let path = layout.blob_path(&hash);
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
    if digests.blake3 != hash.as_str() {
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

/// Entries of a tree directory that the tree's expected files
/// ([`Catalog::expect_tree_files`]) do not list (symlinks are never followed; an unexpected
/// directory is reported once, not its contents). Nothing under `streams/` is reported when
/// the tree's documents are unknown.
fn unexpected_files(
    cat: &Catalog,
    dir: &Path,
    tree: &str,
    documents_unknown: bool,
) -> Result<Vec<Finding>> {
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
        if documents_unknown && (rel == "streams" || rel.starts_with("streams/")) {
            if is_dir {
                walk.skip_current_dir();
            }
            continue;
        }
        if is_dir {
            if cat.expects_dir(&rel)? {
                continue;
            }
            walk.skip_current_dir();
            if cat.expects_file(&rel)? {
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
        } else if !cat.expects_file(&rel)? && !cat.expects_pending(&rel)? {
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
fn check_tree_file(ctx: &TreeCtx, job: ExpectedFile) -> Option<Problem> {
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
        let blob_meta = BlobHash::parse(blob)
            .ok()
            .and_then(|h| fs::symlink_metadata(ctx.layout.blob_path(&h)).ok());
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
pub(super) fn blob_row_for(cat: &Catalog, p: &Path) -> Result<bool> {
    match Layout::blob_hash(p) {
        Some(hash) => cat.has_blob(hash.as_str()),
        None => Ok(false),
    }
}

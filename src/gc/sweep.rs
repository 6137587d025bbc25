//! gc's sweeps: what killed runs left on disk that no row claims — directories in `trees/`
//! without a row that no dest links to, files in `blobs/` without a row (or that are not blobs
//! at all), everything in `tmp/`, old `partial/` files — recorded into the plan; and the small
//! filesystem helpers of gc.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::GcReport;
use super::plan::{Files, PHASE_ORPHAN_BLOB, PHASE_PARTIAL, PHASE_TMP, PHASE_TREE};
use crate::catalog::Catalog;
use crate::error::{Error, IoResultExt, Result};
use crate::store::Layout;

/// Directories in `trees/` without a row that no dest links to.
pub(super) fn trees(layout: &Layout, files: &mut Files<'_>, report: &mut GcReport) -> Result<()> {
    let trees = layout.trees();
    let Some(entries) = read_dir(&trees)? else {
        return Ok(());
    };
    let mut orphans = Vec::new();
    for entry in entries {
        let entry = entry.with_path("read directory", &trees)?;
        let name = entry.file_name();
        let known = match name.to_str() {
            Some(n) => files.is_known_tree(n)?,
            None => false,
        };
        if !known {
            files.add_tree(&entry.path(), PHASE_TREE)?;
            orphans.push(name.to_string_lossy().into_owned());
        }
    }
    orphans.sort();
    report.orphan_trees = orphans;
    Ok(())
}

/// Files in `blobs/` that have no row (killed syncs) or are not blobs at all. With a `slice`
/// (0–15), only the prefix directories starting with that hex digit are walked; an entry of
/// `blobs/` that is not a prefix directory is checked whatever the slice.
pub(super) fn blobs(layout: &Layout, files: &mut Files<'_>, slice: Option<u8>) -> Result<u64> {
    let blobs = layout.blobs();
    let Some(prefixes) = read_dir(&blobs)? else {
        return Ok(0);
    };
    let mut n = 0;
    for prefix in prefixes {
        let prefix = prefix.with_path("read directory", &blobs)?;
        let dir = prefix.path();
        let ft = prefix.file_type().with_path("stat", &dir)?;
        if !ft.is_dir() {
            files.add_file(&dir, PHASE_ORPHAN_BLOB)?;
            n += 1;
            continue;
        }
        let name = prefix.file_name();
        let is_prefix = name
            .to_str()
            .filter(|p| p.len() == 2 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if let (Some(p), Some(k)) = (is_prefix, slice)
            && !p.starts_with(char::from_digit(u32::from(k), 16).unwrap_or('0'))
        {
            continue;
        }
        let Some(entries) = read_dir(&dir)? else {
            continue;
        };
        // The directory's files against its rows, read in one range (a prefix directory holds
        // 1/256 of the store: bounded memory); a lookup per file cost a query each. A directory
        // that is not a prefix has no rows: every file in it is an orphan.
        let rows = match is_prefix {
            Some(p) => files.cat.blob_names_under(p)?,
            None => Vec::new(),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_path("read directory", &dir)?;
            let p = entry.path();
            if entry.file_type().with_path("stat", &p)?.is_dir() {
                continue;
            }
            names.push(p);
        }
        names.sort_unstable();
        for p in names {
            let claimed = Layout::blob_name(&p)
                .is_some_and(|name| rows.binary_search_by(|r| r.as_str().cmp(name)).is_ok());
            if !claimed {
                files.add_file(&p, PHASE_ORPHAN_BLOB)?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Everything in `tmp/`: nobody stages anything while gc holds the store lock.
pub(super) fn tmp(layout: &Layout, files: &mut Files<'_>) -> Result<u64> {
    let tmp = layout.tmp();
    let Some(entries) = read_dir(&tmp)? else {
        return Ok(0);
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.with_path("read directory", &tmp)?;
        files.add_tree(&entry.path(), PHASE_TMP)?;
        n += 1;
    }
    Ok(n)
}

/// `partial/` files not touched since the cutoff (younger ones may still be resumed).
pub(super) fn partial(layout: &Layout, files: &mut Files<'_>, cutoff: i64) -> Result<u64> {
    let partial = layout.partial();
    let Some(entries) = read_dir(&partial)? else {
        return Ok(0);
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry.with_path("read directory", &partial)?;
        let p = entry.path();
        let meta = entry.metadata().with_path("stat", &p)?;
        if meta.mtime() <= cutoff {
            files.add_tree(&p, PHASE_PARTIAL)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Is `p` (a file in `blobs/ab/`) a blob with a catalogue row? A name that is not a canonical
/// blob address is never one.
pub(super) fn has_row(cat: &Catalog, p: &Path) -> Result<bool> {
    match Layout::blob_name(p) {
        Some(name) => cat.has_blob(name),
        None => Ok(false),
    }
}

fn read_dir(dir: &Path) -> Result<Option<fs::ReadDir>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(Some(rd)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_err("read directory", dir, err)),
    }
}

/// Give the owner write permission on every directory under `dir` so its entries can be
/// unlinked (symlinks are not followed).
pub(super) fn make_dirs_writable(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if !entry.file_type().is_dir() {
            continue;
        }
        if let Ok(meta) = entry.metadata() {
            let mut perm = meta.permissions();
            if perm.mode() & 0o700 != 0o700 {
                perm.set_mode(perm.mode() | 0o700);
                let _ = fs::set_permissions(entry.path(), perm);
            }
        }
    }
}

pub(super) fn io_err(op: &'static str, path: &Path, source: io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn walk_err(dir: &Path, err: walkdir::Error) -> Error {
    let path = err.path().unwrap_or(dir).to_path_buf();
    Error::Io {
        op: "walk",
        path,
        source: err
            .into_io_error()
            .unwrap_or_else(|| io::Error::other("filesystem loop")),
    }
}

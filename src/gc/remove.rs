//! Carrying out a gc plan, in restic's order: the rows in one committed transaction, then the
//! files (tree directories, blob files, orphans), then the directories the removed grace links
//! leave empty. A kill at any point leaves files without rows, never a row without its file.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use super::plan::{self, PHASE_ORPHAN_BLOB};
use super::sweep::{has_row, io_err, make_dirs_writable};
use super::{GcPlan, GcReport};
use crate::error::Result;

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
    let (mut unlinked, mut freed, mut disk) = (0u64, 0u64, 0u64);
    let slow = slow_unlink();
    plan::each_unlink(cat, |p, phase| {
        if phase == PHASE_ORPHAN_BLOB && has_row(cat, &p)? {
            return Ok(()); // never a row without its file
        }
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_err("stat", &p, err)),
        };
        if let Some(d) = slow {
            std::thread::sleep(d);
        }
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(io_err("remove", &p, err)),
        }
        unlinked += 1;
        if meta.nlink() <= 1 {
            freed += meta.len();
            disk += meta.blocks() * 512;
        }
        Ok(())
    })?;
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

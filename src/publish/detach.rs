//! `detach DEST`: hand DEST over to another tool. The published symlink becomes a plain
//! directory holding a copy of the live tree (reflinks where the filesystem can, else copies;
//! never hardlinks: a tool that rewrites a file in place would otherwise change the store's
//! blobs), so that e.g. python `sstream-mirror` can take over OUTPUT_DIR without writing into the
//! store.
//!
//! Plan, then do: [`detach_plan`] checks DEST (a link to a tree of this store) and counts what
//! will be copied, changing nothing; [`detach`] carries it out:
//! 1. the copy is built beside DEST (`DEST.streamvault-detach-<pid>`, same filesystem as DEST),
//!    every file and directory fsynced, files 0644 and directories 0755 (writable by the next
//!    tool; the store's are read-only);
//! 2. the copy and the link are swapped in one `renameat2(RENAME_EXCHANGE)`: a reader sees the
//!    old tree or the copy, never nothing (where the filesystem cannot exchange, the link is
//!    renamed aside and the copy renamed in: two renames, a moment without DEST);
//! 3. the old link (now at the temporary name) is removed, and DEST's publications are retired:
//!    the tree stays for gc's grace period (for readers of its metadata, and a rollback of the
//!    decision: `publish --adopt`), then gc removes it.
//!
//! A failure before the swap removes the copy and leaves DEST untouched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, IoResultExt, Result};
use crate::store::{TREE_DIR_MODE, create_dir_mode, sync_dir};
use crate::vault::Vault;

use super::dest::{self, State};
use super::{dest_key, lock_dest};

/// What `detach` does (or, planned, would do).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DetachReport {
    pub dest: PathBuf,
    /// The tree DEST linked to.
    pub tree: String,
    pub snapshot: crate::catalog::SnapshotId,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub dry_run: bool,
    /// The swap was atomic (`RENAME_EXCHANGE`); false: two renames.
    pub atomic: bool,
    pub(crate) duration_ms: u64,
}

/// Check DEST and count the tree it links to; changes nothing.
pub fn detach_plan(vault: &Vault, dest: &Path) -> Result<DetachReport> {
    let dest = dest::resolve(dest).map_err(|e| super::not_published(e, dest))?;
    dest::refuse_in_store(&vault.layout, &dest)?;
    plan(vault, &dest)
}

fn plan(vault: &Vault, dest: &Path) -> Result<DetachReport> {
    let not_pub = || Error::NotPublished {
        dest: dest.to_path_buf(),
    };
    let trees = dest::trees_dir(&vault.layout)?;
    let State::Link(target) = dest::inspect(dest)? else {
        return Err(not_pub());
    };
    let name = dest::tree_name(dest, &target, &trees).ok_or_else(not_pub)?;
    let tree = vault.catalog.tree_by_name(&name)?.ok_or_else(not_pub)?;
    let dir = trees.join(&name);
    let mut report = DetachReport {
        dest: dest.to_path_buf(),
        tree: name,
        snapshot: tree.snapshot_id,
        files: 0,
        dirs: 0,
        bytes: 0,
        dry_run: true,
        atomic: false,
        duration_ms: 0,
    };
    for entry in walkdir::WalkDir::new(&dir).min_depth(1).follow_links(false) {
        let entry = entry.map_err(|e| walk_err(&dir, e))?;
        let ft = entry.file_type();
        if ft.is_dir() {
            report.dirs += 1;
        } else if ft.is_file() {
            report.files += 1;
            report.bytes += entry.metadata().map_err(|e| walk_err(&dir, e))?.len();
        }
    }
    Ok(report)
}

/// Turn DEST into a plain directory holding a copy of its tree (see the module docs).
pub fn detach(vault: &mut Vault, dest: &Path) -> Result<DetachReport> {
    let started = Instant::now();
    let dest = dest::resolve(dest).map_err(|e| super::not_published(e, dest))?;
    dest::refuse_in_store(&vault.layout, &dest)?;
    let _locks = lock_dest(vault, &dest, "detach")?;
    let mut report = plan(vault, &dest)?;
    let tree_dir = dest::trees_dir(&vault.layout)?.join(&report.tree);
    let copy = PathBuf::from(format!(
        "{}.streamvault-detach-{}",
        dest.display(),
        std::process::id()
    ));
    if fs::symlink_metadata(&copy).is_ok() {
        fs::remove_dir_all(&copy).with_path("remove stale copy", &copy)?;
    }
    if let Err(e) = copy_tree(&tree_dir, &copy) {
        let _ = fs::remove_dir_all(&copy);
        return Err(e);
    }
    report.atomic = match exchange(&copy, &dest) {
        Ok(()) => true,
        Err(e) if exchange_unsupported(&e) => {
            // Two renames: the link aside, the copy in.
            let aside = PathBuf::from(format!("{}.old", copy.display()));
            fs::rename(&dest, &aside).with_path("move link aside", &dest)?;
            if let Err(e) = fs::rename(&copy, &dest) {
                let _ = fs::rename(&aside, &dest);
                let _ = fs::remove_dir_all(&copy);
                return Err(Error::Io {
                    op: "rename into",
                    path: dest.clone(),
                    source: e,
                });
            }
            fs::rename(&aside, &copy).with_path("rename", &aside)?;
            false
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&copy);
            return Err(Error::Io {
                op: "swap with",
                path: dest.clone(),
                source: e,
            });
        }
    };
    // `copy` is now the old link.
    fs::remove_file(&copy).with_path("remove old link", &copy)?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    vault
        .catalog
        .retire_other_publications(&dest_key(&dest), crate::catalog::PublicationId(0))?;
    report.dry_run = false;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Copy a tree (regular files and directories; nothing else is in a tree) to `to`, which must
/// not exist: reflink or plain copy, files 0644, directories 0755, all fsynced.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    create_dir_mode(to, TREE_DIR_MODE).with_path("create directory", to)?;
    let mut dirs = vec![to.to_path_buf()];
    for entry in walkdir::WalkDir::new(from)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| walk_err(from, e))?;
        let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
        let target = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            create_dir_mode(&target, TREE_DIR_MODE).with_path("create directory", &target)?;
            dirs.push(target);
        } else if ft.is_file() {
            let src = fs::File::open(entry.path()).with_path("open", entry.path())?;
            let dst = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .with_path("create", &target)?;
            let copied = reflink_copy::reflink_file(&src, &dst).or_else(|_| {
                dst.set_len(0)?;
                io::copy(&mut &src, &mut &dst).map(|_| ())
            });
            copied
                .and_then(|()| dst.set_permissions(fs::Permissions::from_mode(0o644)))
                .and_then(|()| dst.sync_all())
                .with_path("copy into", &target)?;
        }
    }
    for d in dirs.iter().rev() {
        sync_dir(d)?;
    }
    Ok(())
}

fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(io::Error::from)
}

/// `EINVAL`/`ENOSYS`/`EOPNOTSUPP`: the filesystem (or kernel) cannot exchange.
fn exchange_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(22) | Some(38) | Some(95))
}

fn walk_err(dir: &Path, e: impl Into<WalkOrIo>) -> Error {
    match e.into() {
        WalkOrIo::Walk(e) => Error::Io {
            op: "walk",
            path: e.path().unwrap_or(dir).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("filesystem loop")),
        },
        WalkOrIo::Io(e) => Error::Io {
            op: "walk",
            path: dir.to_path_buf(),
            source: e,
        },
    }
}

enum WalkOrIo {
    Walk(walkdir::Error),
    Io(io::Error),
}

impl From<walkdir::Error> for WalkOrIo {
    fn from(e: walkdir::Error) -> Self {
        WalkOrIo::Walk(e)
    }
}

impl From<io::Error> for WalkOrIo {
    fn from(e: io::Error) -> Self {
        WalkOrIo::Io(e)
    }
}

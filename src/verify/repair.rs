//! `verify --repair`: what can be fixed safely, in order — blob files without rows removed,
//! corrupt blobs moved to `quarantine/`, corrupt and missing blobs re-fetched (or the row of a
//! missing blob nothing refers to dropped), tree files re-linked by one rename each, strays and
//! tree directories without rows moved out — and for every finding what was done or why not.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

use super::check::blob_row_for;
use super::files::make_writable;
use super::refetch::{refetch_job, run_refetches};
use super::{Problem, Repair, RepairPlan, VerifyReport};
use crate::catalog::Catalog;
use crate::error::{Error, IoResultExt, Result};
use crate::store::{self, BlobHash, Layout};

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
    let now = crate::host::now();

    // 1. Orphan files, 2. quarantine, collecting what to re-fetch.
    let mut refetch: Vec<(usize, BlobHash)> = Vec::new();
    // Blobs that stay bad or absent: trees must not be re-linked to them.
    let mut unavailable: HashSet<String> = HashSet::new();
    let cat = &vault.catalog;
    for (i, f) in report.findings.iter_mut().enumerate() {
        match &f.problem {
            Problem::OrphanFile { path } => {
                f.repair = Some(remove_orphan_file(cat, path));
            }
            Problem::BlobCorrupt { blob, .. } | Problem::BlobUnreadable { blob, .. } => {
                let moved =
                    BlobHash::parse(blob).and_then(|h| quarantine(&layout, &h, now).map(|()| h));
                match moved {
                    Ok(hash) if !cat.blob_referenced(&hash)? => {
                        cat.delete_blob_row(&hash)?;
                        f.repair = Some(Repair::Repaired {
                            how: "moved to quarantine; row removed (no snapshot refers to it)"
                                .into(),
                        });
                    }
                    Ok(hash) => refetch.push((i, hash)),
                    Err(e) => {
                        unavailable.insert(blob.clone());
                        f.repair = Some(not_repaired(format!(
                            "cannot move it to quarantine: {}",
                            crate::error::chain_line(&e)
                        )))
                    }
                }
            }
            Problem::BlobMissing { blob } => match BlobHash::parse(blob) {
                Ok(hash) if cat.blob_referenced(&hash)? => refetch.push((i, hash)),
                Ok(hash) => {
                    cat.delete_blob_row(&hash)?;
                    f.repair = Some(Repair::Repaired {
                        how: "row removed (no snapshot refers to it)".into(),
                    });
                }
                Err(e) => f.repair = Some(not_repaired(crate::error::chain_line(&e))),
            },
            _ => {}
        }
    }

    // 3. Re-fetch.
    let mut jobs = Vec::new();
    for (i, hash) in &refetch {
        jobs.push((*i, refetch_job(cat, hash)?));
    }
    let outcomes = run_refetches(&layout, &fetch, jobs)?;
    for (i, hash, result) in outcomes {
        let outcome = match result {
            Ok((partial, digests, url)) => {
                vault.blobs.commit(&partial, &digests)?;
                vault.catalog.insert_blob(&digests)?;
                Repair::Repaired {
                    how: format!("re-fetched from `{url}`"),
                }
            }
            Err(why) => {
                unavailable.insert(hash.into_string());
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
                let stored = BlobHash::parse(blob).is_ok_and(|h| layout.blob_path(&h).is_file());
                if !stored && vault.catalog.is_tree_document(tree, path)? {
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

fn not_repaired(why: String) -> Repair {
    Repair::NotRepaired { why }
}

/// Move a blob file out of `blobs/` into `quarantine/<hex>.<now>` (gone already: fine).
fn quarantine(layout: &Layout, hash: &BlobHash, now: i64) -> Result<()> {
    let src = layout.blob_path(hash);
    let dir = layout.quarantine();
    store::create_dir_mode(&dir, 0o700).with_path("create directory", &dir)?;
    let dest = dir.join(format!("{hash}.{now}"));
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
        Err(e) => return not_repaired(crate::error::chain_line(&e)),
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

/// Move a file or directory nothing put into a tree to quarantine (removed when the tree is on
/// another filesystem than the quarantine), then make the removal durable.
fn remove_stray(layout: &Layout, tree: &str, rel: &str, now: i64) -> Repair {
    let Some(dir) = layout.tree(tree) else {
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
    let qdir = layout.quarantine();
    let dest = qdir.join(format!("tree-{tree}-{}.{now}", rel.replace('/', "_")));
    let moved = store::create_dir_mode(&qdir, 0o700).and_then(|_| fs::rename(&target, &dest));
    let how = match moved {
        Ok(()) => format!("moved to `{}`", dest.display()),
        Err(_) => {
            let removed = if meta.is_dir() {
                make_writable(&target);
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
        Err(e) => not_repaired(crate::error::chain_line(&e)),
    }
}

fn remove_orphan_tree(layout: &Layout, name: &str) -> Repair {
    let Some(dir) = layout.tree(name) else {
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
    let Some(dir) = layout.tree(tree) else {
        return not_repaired("its tree name is not a plain directory name".into());
    };
    if crate::streams::check_path(rel).is_err() {
        return not_repaired("its path is not safe".into());
    }
    let target = dir.join(rel);
    let blob = BlobHash::parse(hex)
        .ok()
        .map(|h| layout.blob_path(&h))
        .filter(|p| p.is_file());
    let (Some(blob), false) = (blob, blob_unavailable) else {
        if !bad_present {
            return not_repaired(format!("blob `{hex}` is not available"));
        }
        let qdir = layout.quarantine();
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
        Err(e) => not_repaired(crate::error::chain_line(&e)),
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

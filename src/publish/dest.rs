//! The published link DEST: resolving it to one absolute name, finding what it is now, the flip
//! (a fresh symlink created beside DEST, then one `rename(2)` over it), moving an adopted
//! directory aside, and the per-destination lock.
//!
//! Protects invariant 3: DEST is only ever replaced by a rename of a complete symlink, so a reader
//! opening DEST sees the old tree or the new one, never a mix within one open and never nothing;
//! if anything fails before the rename, DEST is untouched. (The one exception, adopting a real
//! directory, needs two renames and is documented in [`crate::publish`].)

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoResultExt, Result};
use crate::store::{Layout, sync_dir};
pub(crate) use crate::store::{refuse_in_store, resolve_outside as resolve};

/// What DEST is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    Absent,
    /// A symlink, with its target as written.
    Link(PathBuf),
    Directory,
    /// A regular file, device, socket…: never replaced.
    Other,
}

pub(super) fn inspect(dest: &Path) -> Result<State> {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_symlink() => Ok(State::Link(
            fs::read_link(dest).with_path("read link", dest)?,
        )),
        Ok(m) if m.is_dir() => Ok(State::Directory),
        Ok(_) => Ok(State::Other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::Absent),
        Err(e) => Err(Error::Io {
            op: "stat",
            path: dest.to_path_buf(),
            source: e,
        }),
    }
}

/// The canonical `trees/` directory of a store (link targets are written under it).
pub(super) fn trees_dir(layout: &Layout) -> Result<PathBuf> {
    let t = layout.trees();
    fs::canonicalize(&t).with_path("resolve", &t)
}

/// The tree name a link target designates, when it is `<trees>/<name>` of this store.
pub(super) fn tree_name(dest: &Path, target: &Path, trees: &Path) -> Option<String> {
    let target = if target.is_absolute() {
        target.to_path_buf()
    } else {
        dest.parent()?.join(target)
    };
    let name = target.file_name()?.to_str()?.to_string();
    let parent = target.parent()?;
    let same = parent == trees || fs::canonicalize(parent).is_ok_and(|p| p == trees);
    same.then_some(name)
}

/// Point DEST at `target` with one rename of a fresh symlink created beside it.
pub(super) fn flip(dest: &Path, target: &Path) -> Result<()> {
    let parent = dest.parent().ok_or_else(|| Error::DestParentMissing {
        dest: dest.to_path_buf(),
    })?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(
        ".{name}.streamvault-link-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    symlink(target, &tmp).with_path("create link", &tmp)?;
    if let Err(e) = fs::rename(&tmp, dest) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io {
            op: "replace link",
            path: dest.to_path_buf(),
            source: e,
        });
    }
    sync_dir(parent)
}

/// Rename the directory DEST to `DEST.streamvault-adopted-<unix time>[-n]`.
pub(super) fn move_aside(dest: &Path) -> Result<PathBuf> {
    let base = format!(
        "{}.streamvault-adopted-{}",
        dest.display(),
        crate::host::now()
    );
    let mut aside = PathBuf::from(&base);
    let mut n = 1;
    while fs::symlink_metadata(&aside).is_ok() {
        aside = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    fs::rename(dest, &aside).with_path("move aside", dest)?;
    Ok(aside)
}

/// Undo [`move_aside`] after a failed flip.
pub(super) fn move_back(aside: &Path, dest: &Path) {
    let _ = fs::rename(aside, dest);
}

/// `locks/dest-<hash>`: two publishes to one DEST serialise on it.
pub(super) fn lock_path(layout: &Layout, dest: &Path) -> PathBuf {
    layout.dest_lock(dest)
}

/// The staging directory of a publish to DEST (a leftover from a killed publish is removed by
/// the next publish to the same DEST, which holds the DEST lock): `tmp/publish-<hash>`, or
/// `trees/.publish-<hash>` when `trees/` (canonical: `trees`) is on another filesystem than
/// `tmp/` (a bind mount): the stage must be renamed into `trees/` in one `rename(2)`, which
/// cannot cross filesystems (its files are then copies of the blobs, not hardlinks).
pub(super) fn staging_path(layout: &Layout, trees: &Path, dest: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
    let tmp = layout.tmp();
    if dev(&tmp).is_some() && dev(&tmp) != dev(trees) {
        return layout.publish_stage_in(trees, dest);
    }
    layout.publish_stage(dest)
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_replaces_the_link_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        let dest = resolve(&dir.path().join("dest")).unwrap();
        assert_eq!(inspect(&dest).unwrap(), State::Absent);
        flip(&dest, &a).unwrap();
        assert_eq!(inspect(&dest).unwrap(), State::Link(a.clone()));
        flip(&dest, &b).unwrap();
        assert_eq!(fs::read_link(&dest).unwrap(), b);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
        assert!(matches!(
            resolve(&dir.path().join("missing/dest")),
            Err(Error::DestParentMissing { .. })
        ));
        fs::write(dir.path().join("f"), b"x").unwrap();
        assert_eq!(inspect(&dir.path().join("f")).unwrap(), State::Other);
        assert_eq!(inspect(&a).unwrap(), State::Directory);
        let trees = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(tree_name(&dest, &b, &trees).as_deref(), Some("b"));
        assert_eq!(tree_name(&dest, Path::new("/elsewhere/b"), &trees), None);
    }
}

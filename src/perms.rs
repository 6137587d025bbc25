//! File modes of a store root, whatever the umask: secrets private, published trees readable.
//!
//! - `catalog.db` (+ `-wal`, `-shm`) and `credentials`: 0600 (set by the catalogue);
//!   `keys/` 0700 and `keys/*.key` 0600 (set by `keys`).
//! - The root: traversable by everyone (at least 0711) so that a web server running as another
//!   user (`www-data`) reaches `trees/` through a published DEST symlink; `trees/`: 0755.
//! - No directory of the store is group- or world-writable.
//!
//! [`secure_dirs`] runs on every open for writing; it only ever removes write bits for others
//! and adds the traverse/read bits above, so an admin's stricter choice elsewhere stays. A
//! directory this user may not chmod (another owner) is left as its owner set it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{IoResultExt, Result};
use crate::store::Layout;

/// Apply the modes above to the directories of `layout` (those that exist).
pub(crate) fn secure_dirs(layout: &Layout) -> Result<()> {
    set(layout.root(), 0o711)?;
    set(&layout.trees(), 0o755)?;
    for d in [
        layout.blobs(),
        layout.partial(),
        layout.tmp(),
        layout.locks(),
    ] {
        set(&d, 0)?;
    }
    // keys/: owner only, whatever an older version or an admin left.
    let keys = layout.keys();
    if let Ok(m) = std::fs::symlink_metadata(&keys)
        && m.is_dir()
        && m.permissions().mode() & 0o077 != 0
    {
        match std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            r => r.with_path("chmod", &keys)?,
        }
    }
    Ok(())
}

/// `mode & !0o022 | add`, when that differs from the current mode.
fn set(p: &Path, add: u32) -> Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => m,
        _ => return Ok(()),
    };
    let cur = meta.permissions().mode() & 0o7777;
    let want = (cur & !0o022) | add;
    if want != cur {
        match std::fs::set_permissions(p, std::fs::Permissions::from_mode(want)) {
            // Not ours to change (another owner, a filesystem without modes): its owner decides.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            r => r.with_path("chmod", p)?,
        }
    }
    Ok(())
}

//! Free space, checked before the first byte is written: a sync compares the bytes its plan
//! will download with what the store's filesystem has free (statvfs `f_bavail`) less a reserve
//! (setting `reserve`; default the smaller of 1 GiB and 2 % of the filesystem), and refuses with
//! [`Error::NotEnoughSpace`] before any item request. A publish whose tree must be copied (its
//! stage on another filesystem than `blobs/`, e.g. `trees/` on a bind mount) makes the same check
//! for the snapshot's bytes on that filesystem before it copies anything.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The default reserve: min(1 GiB, 2 % of the filesystem's size).
pub(crate) fn default_reserve(total: u64) -> u64 {
    (total / 50).min(1 << 30)
}

/// Free space on the filesystem of `path`: (bytes available to us, filesystem size).
pub(crate) fn free_space(path: &Path) -> Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path).map_err(|e| Error::Io {
        op: "statvfs",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let frsize = st.f_frsize.max(1);
    Ok((
        st.f_bavail.saturating_mul(frsize),
        st.f_blocks.saturating_mul(frsize),
    ))
}

/// The check a sync makes after planning: `need` bytes into the store, with the store's
/// `reserve` setting.
pub(crate) fn check_store(vault: &crate::vault::Vault, need: u64) -> Result<()> {
    let settings = crate::settings::StoreSettings::load(Some(&vault.catalog))?;
    ensure(vault.root(), need, settings.reserve)
}

/// The check a publish makes before it copies a tree (its stage on another filesystem than
/// `blobs/`, so no hardlinks): `need` bytes on the filesystem of `path`, with the store's
/// `reserve` setting.
pub(crate) fn check_copy(vault: &crate::vault::Vault, path: &Path, need: u64) -> Result<()> {
    let settings = crate::settings::StoreSettings::load(Some(&vault.catalog))?;
    ensure(path, need, settings.reserve)
}

/// Fail unless `need` bytes fit on the filesystem of `path`, leaving `reserve` (or the default
/// reserve) free.
pub(crate) fn ensure(path: &Path, need: u64, reserve: Option<u64>) -> Result<()> {
    if need == 0 {
        return Ok(());
    }
    let (avail, total) = free_space(path)?;
    let reserve = reserve.unwrap_or_else(|| default_reserve(total));
    let have = avail.saturating_sub(reserve);
    if need <= have {
        return Ok(());
    }
    Err(Error::NotEnoughSpace {
        fs: mount_point(path).display().to_string(),
        need: size(need),
        have: size(have),
    })
}

/// The top directory of the filesystem that holds `path` (where the device number changes).
pub(crate) fn mount_point(path: &Path) -> PathBuf {
    let Ok(abs) = std::fs::canonicalize(path) else {
        return path.to_path_buf();
    };
    let Ok(dev) = std::fs::metadata(&abs).map(|m| m.dev()) else {
        return abs;
    };
    let mut cur = abs.as_path();
    while let Some(parent) = cur.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => cur = parent,
            _ => break,
        }
    }
    cur.to_path_buf()
}

/// `1.5 MiB` (the CLI's size format).
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS.get(u).copied().unwrap_or("B"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_refusal() {
        assert_eq!(default_reserve(10 << 30), 10 * (1 << 30) / 50);
        assert_eq!(default_reserve(1 << 40), 1 << 30);
        let d = tempfile::tempdir().unwrap();
        ensure(d.path(), 0, None).unwrap();
        ensure(d.path(), 1, Some(0)).unwrap();
        let e = ensure(d.path(), u64::MAX / 2, None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("not enough space on /"), "{e}");
        assert!(e.contains("need 8388608.0 TiB"), "{e}");
    }
}

//! The store root on disk: the only module that knows the layout, and the blob store.
//!
//! ```text
//! catalog.db                SQLite, WAL
//! blobs/ab/<blake3 hex>     one file per distinct content, mode 0444
//! partial/                  resumable downloads in progress
//! tmp/                      staging for new blobs and trees (same filesystem as blobs/)
//! trees/<name>/             materialised snapshots (see `publish`)
//! locks/                    advisory lock files
//! keys/<name>.key           signing keys (secret, mode 0600)
//! keyrings/<name>.gpg       their binary public keyrings (mode 0644, for MAAS's keyring_filename)
//! credentials               URL user info of the sources (JSON, mode 0600)
//! ```
//!
//! Modes do not depend on the umask: every directory of the store is created with an explicit
//! mode ([`create_dir_mode`]: the root 0711 so that a web server can traverse it to a published
//! tree, `trees/` and tree directories 0755, the others 0700, `keys/` 0700), lock files 0644
//! (see `lock`), blobs and tree files 0444.
//!
//! Protects invariant 1: [`BlobStore::commit`] makes a file visible at its address only after
//! fsync(file), rename, fsync(dir); the caller inserts the catalogue row after it returns.
//! Batches (the downloads of a sync) are cheaper: each file is [`BlobStore::place`]d (chmod,
//! rename, no fsync), then [`BlobStore::make_durable`] makes the whole batch durable with one
//! `syncfs(2)` of the store's filesystem, and only then are the batch's rows inserted. A crash
//! between the renames and the flush leaves blob files without rows: the next sync places them
//! again (same content, same address) and gc removes those no row claims.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::checksum::{self, Digests};
use crate::error::{Error, IoResultExt, Result};

/// The store root when neither `--root` nor `STREAMVAULT_ROOT` names one.
pub const DEFAULT_ROOT: &str = "/var/lib/streamvault";

/// Paths inside a store root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn catalog(&self) -> PathBuf {
        self.root.join("catalog.db")
    }
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }
    pub fn partial(&self) -> PathBuf {
        self.root.join("partial")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub fn trees(&self) -> PathBuf {
        self.root.join("trees")
    }
    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }
    /// Signing keys (`keys/<name>.key`), created on first use with mode 0700.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// Binary public keyrings of the signing keys (`keyrings/<name>.gpg`, directory 0755, files
    /// 0644): what MAAS's `keyring_filename` points at.
    pub fn keyrings(&self) -> PathBuf {
        self.root.join("keyrings")
    }
    /// URL credentials of the sources (`credentials`, JSON, mode 0600; never in the catalogue).
    pub fn credentials(&self) -> PathBuf {
        self.root.join("credentials")
    }
    /// The store-wide lock (`gc` takes it exclusively, everything that writes takes it shared).
    pub fn store_lock(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// `blobs/ab/<hex>` for a BLAKE3 hex digest; `None` when `hex` is not a digest.
    pub fn blob(&self, hex: &str) -> Option<PathBuf> {
        if !checksum::is_hex(hex, 64) {
            return None;
        }
        let prefix = hex.get(..2)?;
        Some(self.blobs().join(prefix).join(hex))
    }

    /// The digest a path in `blobs/` stands for, when it is a canonical blob address: a
    /// lowercase BLAKE3 hex name under the directory of its first two characters.
    pub fn blob_name(path: &Path) -> Option<&str> {
        let name = path.file_name()?.to_str()?;
        let prefix = path.parent()?.file_name()?.to_str()?;
        let lower = name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (checksum::is_hex(name, 64) && lower && name.get(..2) == Some(prefix)).then_some(name)
    }

    /// Create the directories of a store root (idempotent), with explicit modes whatever the
    /// umask: the root 0711 (traversable: a web server reaches published trees through it),
    /// `trees/` 0755, `blobs/`, `partial/`, `tmp/` and `locks/` 0700 (nothing outside reads
    /// them: tree files are hardlinks, readable through `trees/`). Existing directories keep
    /// their modes.
    pub fn create_dirs(&self) -> Result<()> {
        if let Some(parent) = self.root.parent()
            && !parent.as_os_str().is_empty()
        {
            fs::create_dir_all(parent).with_path("create directory", parent)?;
        }
        for (dir, mode) in [
            (self.root.clone(), 0o711),
            (self.blobs(), 0o700),
            (self.partial(), 0o700),
            (self.tmp(), 0o700),
            (self.trees(), TREE_DIR_MODE),
            (self.locks(), 0o700),
        ] {
            create_dir_mode(&dir, mode).with_path("create directory", &dir)?;
        }
        Ok(())
    }
}

/// The content-addressed blob store under `blobs/`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    layout: Layout,
}

impl BlobStore {
    pub fn new(layout: Layout) -> Self {
        BlobStore { layout }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Does the blob file exist (not checked: its content)?
    pub fn contains(&self, hex: &str) -> bool {
        self.layout.blob(hex).is_some_and(|p| p.is_file())
    }

    /// Make a fully written and verified file durable at its address.
    ///
    /// `file` must be on the store's filesystem (in `tmp/` or `partial/`). Steps: fsync the file,
    /// make it read-only, rename it to `blobs/ab/<hex>`, fsync `blobs/ab`. If the address is
    /// already taken the rename replaces it with identical content. After this returns, and only
    /// then, the caller may insert the catalogue row (invariant 1).
    pub fn commit(&self, file: &Path, digests: &Digests) -> Result<PathBuf> {
        File::open(file)
            .and_then(|f| f.sync_all())
            .with_path("fsync", file)?;
        let dest = self.place(file, digests)?;
        if let Some(dir) = dest.parent() {
            sync_dir(dir)?;
        }
        Ok(dest)
    }

    /// A blob of a batch: chmod 0444 and rename into `blobs/ab/`, without any fsync. Neither the
    /// content nor the rename is durable until [`Self::make_durable`] returns: no row for the
    /// blob may be inserted before that.
    pub fn place(&self, file: &Path, digests: &Digests) -> Result<PathBuf> {
        let dest = self
            .layout
            .blob(&digests.blake3)
            .ok_or_else(|| Error::BadDigest(digests.blake3.clone()))?;
        let mut perm = fs::metadata(file).with_path("stat", file)?.permissions();
        set_readonly(&mut perm);
        fs::set_permissions(file, perm).with_path("chmod", file)?;
        let dir = dest
            .parent()
            .unwrap_or(self.layout.blobs().as_path())
            .to_path_buf();
        create_dir_mode(&dir, 0o700).with_path("create directory", &dir)?;
        fs::rename(file, &dest).with_path("rename into", &dest)?;
        Ok(dest)
    }

    /// Make every blob [`Self::place`]d so far durable, contents and directory entries, with
    /// one `syncfs(2)` of the store's filesystem; the batch's rows may be inserted after this.
    ///
    /// Debug builds honour `STREAMVAULT_FAILPOINT=store-abort-before-flush`: the process aborts
    /// here, after the renames and before the flush (tests prove no row exists then).
    pub fn make_durable(&self) -> Result<()> {
        if cfg!(debug_assertions)
            && std::env::var("STREAMVAULT_FAILPOINT")
                .is_ok_and(|v| v.split(',').any(|e| e.trim() == "store-abort-before-flush"))
        {
            std::process::abort();
        }
        syncfs(&self.layout.blobs())
    }

    /// Write `bytes` as a blob (used for metadata documents): tmp file, then [`Self::commit`].
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digests> {
        let mut h = checksum::MultiHasher::all();
        h.update(bytes);
        let digests = h.finish();
        if self.contains(&digests.blake3) {
            return Ok(digests);
        }
        let tmp_dir = self.layout.tmp();
        let mut tmp =
            tempfile::NamedTempFile::new_in(&tmp_dir).with_path("create temp file in", &tmp_dir)?;
        tmp.write_all(bytes).with_path("write", tmp.path())?;
        let (_, path) = tmp.keep().map_err(|e| Error::Io {
            op: "keep temp file",
            path: e.file.path().to_path_buf(),
            source: e.error,
        })?;
        self.commit(&path, &digests)?;
        Ok(digests)
    }

    /// Read a (small) blob whole: metadata documents only.
    pub fn read(&self, hex: &str) -> Result<Vec<u8>> {
        let path = self
            .layout
            .blob(hex)
            .ok_or_else(|| Error::BadDigest(hex.to_string()))?;
        fs::read(&path).with_path("read", &path)
    }
}

#[cfg(unix)]
fn set_readonly(perm: &mut fs::Permissions) {
    use std::os::unix::fs::PermissionsExt;
    perm.set_mode(0o444);
}

#[cfg(not(unix))]
fn set_readonly(perm: &mut fs::Permissions) {
    perm.set_readonly(true);
}

/// The mode of `trees/` and of every directory inside a tree (a web server reads them).
pub const TREE_DIR_MODE: u32 = 0o755;

/// Create one directory with exactly `mode`, whatever the umask (the mode is set again after
/// creation). `Ok(false)`: it existed already (as a directory, or a symlink to one), and keeps
/// its mode.
pub fn create_dir_mode(dir: &Path, mode: u32) -> io::Result<bool> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::DirBuilder::new().mode(mode & 0o777).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}

/// `syncfs(2)` the filesystem holding `dir`: every file and directory entry written on it so
/// far is durable after this (one flush for a whole batch instead of one fsync per file).
pub fn syncfs(dir: &Path) -> Result<()> {
    let d = File::open(dir).with_path("open directory", dir)?;
    rustix::fs::syncfs(&d).map_err(|e| Error::Io {
        op: "syncfs",
        path: dir.to_path_buf(),
        source: e.into(),
    })
}

/// fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).with_path("open directory", dir)?;
    match d.sync_all() {
        Ok(()) => Ok(()),
        // Some filesystems refuse fsync on a directory; the rename is then as durable as it gets.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        Err(e) => Err(Error::Io {
            op: "fsync directory",
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_read_blob_is_readonly_and_addressed() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create_dirs().unwrap();
        let store = BlobStore::new(layout.clone());
        let d = store.put_bytes(b"hello").unwrap();
        let p = layout.blob(&d.blake3).unwrap();
        assert!(p.starts_with(layout.blobs().join(&d.blake3[..2])));
        assert_eq!(store.read(&d.blake3).unwrap(), b"hello");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o444
            );
        }
        // idempotent
        assert_eq!(store.put_bytes(b"hello").unwrap(), d);
        assert_eq!(fs::read_dir(layout.tmp()).unwrap().count(), 0);
    }

    #[test]
    fn blob_path_rejects_non_digests() {
        let layout = Layout::new("/x");
        assert!(layout.blob("../../etc/passwd").is_none());
        assert!(layout.blob("ab").is_none());
        assert!(layout.blob(&"g".repeat(64)).is_none());
    }
}

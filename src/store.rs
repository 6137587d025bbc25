//! The store root on disk: [`Layout`] names every path under it (other modules ask it instead
//! of joining names onto the root), and [`BlobStore`] is the blob store.
//!
//! ```text
//! catalog.db                SQLite, WAL                         Layout::catalog
//! lock                      the store-wide lock                 Layout::store_lock
//! blobs/ab/<blake3 hex>     one file per distinct content, 0444 Layout::blob / blob_path
//! partial/                  resumable downloads in progress     Layout::partial
//!   repair-<blake3 hex>     a re-fetch of `verify --repair`     Layout::repair_download
//! tmp/                      staging for new blobs and trees     Layout::tmp
//!   publish-<hash>          the stage of a publish to one DEST  Layout::publish_stage
//! trees/<name>/             materialised snapshots (`publish`)  Layout::tree
//!   .publish-<hash>         the stage when trees/ is elsewhere  Layout::publish_stage_in
//! locks/source-<name>       one sync of a source at a time      Layout::source_lock
//! locks/dest-<hash>         one publish to a DEST at a time     Layout::dest_lock
//! quarantine/               corrupt and stray files (`verify`)  Layout::quarantine
//! keys/<name>.key           signing keys (secret, mode 0600)    Layout::key
//! keyrings/<name>.gpg       their binary public keyrings (0644) Layout::keyring
//! credentials               URL user info of the sources (0600) Layout::credentials
//! ```
//!
//! `tmp/` is on the same filesystem as `blobs/` (a rename commits a blob). `<hash>` is the first
//! 16 hex digits of the BLAKE3 of the DEST path as given. Keyrings are what MAAS's
//! `keyring_filename` points at.
//!
//! Blob addresses are [`BlobHash`]es: 64 lowercase hex digits, checked once where a string
//! becomes one (parsing, [`std::str::FromStr`], reading a catalogue column), so that a path
//! built from one ([`Layout::blob_path`]) never needs checking again.
//!
//! Paths *outside* the store that must never overlap it (a publish DEST, a directory to
//! import) go through [`resolve_outside`] and [`refuse_in_store`] here, the one place that
//! knows where the store's root is.
//!
//! Modes do not depend on the umask: every directory of the store is created with an explicit
//! mode ([`create_dir_mode`]: the root 0711 so that a web server can traverse it to a published
//! tree, `trees/` and tree directories 0755, the others 0700, `keys/` 0700), lock files 0644
//! (see `lock`), blobs and tree files 0444. The 256 fan-out directories `blobs/00` … `blobs/ff`
//! are created with the store (0700), not on a blob's first rename.
//!
//! Protects invariant 1: [`BlobStore::commit`] makes a file visible at its address only after
//! fsync(file), rename, fsync(dir); the caller inserts the catalogue row after it returns.
//! Batches (the downloads of a sync) are cheaper: each file is [`BlobStore::place`]d (chmod,
//! rename, no fsync; [`BlobStore::place_open`]: `fchmod` on the caller's open handle), then
//! [`BlobStore::make_durable`] makes the whole batch durable with one `syncfs(2)` of the store's
//! filesystem, and only then are the batch's rows inserted. A crash
//! between the renames and the flush leaves blob files without rows: the next sync places them
//! again (same content, same address) and gc removes those no row claims.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use crate::checksum::{self, Digests};
use crate::error::{Error, IoResultExt, Result};

/// A blob's address: the BLAKE3 digest of its content as 64 lowercase hex digits, checked
/// once when it is made (so a path built from it is always inside `blobs/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash(String);

impl BlobHash {
    /// `s` when it is 64 lowercase hex digits, else [`Error::BadDigest`].
    pub fn parse(s: &str) -> Result<BlobHash> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(BlobHash(s.to_string()))
        } else {
            Err(Error::BadDigest(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The directory of its first two digits (`blobs/<prefix>/`).
    fn prefix(&self) -> &str {
        self.0.get(..2).unwrap_or_default()
    }
}

impl std::fmt::Display for BlobHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for BlobHash {
    type Err = Error;
    fn from_str(s: &str) -> Result<BlobHash> {
        BlobHash::parse(s)
    }
}

impl AsRef<str> for BlobHash {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for BlobHash {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for BlobHash {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl serde::Serialize for BlobHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl rusqlite::types::ToSql for BlobHash {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.0.as_str()))
    }
}

/// A damaged address in the catalogue is an error when read, never a path.
impl rusqlite::types::FromSql for BlobHash {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let s = v.as_str()?;
        BlobHash::parse(s).map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
    }
}

/// `name` when it is one plain path component (not empty, `.`, `..`, nor containing `/`).
fn plain_component(name: &str) -> Option<&std::ffi::OsStr> {
    let mut comps = Path::new(name).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(c)), None) if c == name => Some(c),
        _ => None,
    }
}

/// The first 16 hex digits of the BLAKE3 of a DEST path: its lock and stage names.
fn dest_hash(dest: &Path) -> String {
    let h = blake3::hash(dest.as_os_str().as_encoded_bytes()).to_hex();
    h.as_str().get(..16).unwrap_or("dest").to_string()
}

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

    /// `blobs/ab/<hex>` for a BLAKE3 hex digest; `None` when `hex` is not one ([`BlobHash`]).
    pub fn blob(&self, hex: &str) -> Option<PathBuf> {
        BlobHash::parse(hex).ok().map(|h| self.blob_path(&h))
    }

    /// `blobs/ab/<hex>`: where the blob `hash` lives.
    pub fn blob_path(&self, hash: &BlobHash) -> PathBuf {
        self.blobs().join(hash.prefix()).join(hash.as_str())
    }

    /// `trees/<name>` when `name` is one plain path component (invariant 5: a name from the
    /// catalogue never leads outside `trees/`).
    pub fn tree(&self, name: &str) -> Option<PathBuf> {
        plain_component(name).map(|c| self.trees().join(c))
    }

    /// `locks/source-<name>`: two syncs of one source never overlap.
    pub fn source_lock(&self, name: &str) -> PathBuf {
        self.locks().join(format!("source-{name}"))
    }

    /// `locks/dest-<hash>`: two publishes to one DEST serialise on it.
    pub fn dest_lock(&self, dest: &Path) -> PathBuf {
        self.locks().join(format!("dest-{}", dest_hash(dest)))
    }

    /// `tmp/publish-<hash>`: the staging directory of a publish to DEST.
    pub fn publish_stage(&self, dest: &Path) -> PathBuf {
        self.tmp().join(format!("publish-{}", dest_hash(dest)))
    }

    /// `<trees>/.publish-<hash>`: the staging directory of a publish to DEST when `trees` (the
    /// canonical `trees/`) is on another filesystem than `tmp/`.
    pub fn publish_stage_in(&self, trees: &Path, dest: &Path) -> PathBuf {
        trees.join(format!(".publish-{}", dest_hash(dest)))
    }

    /// `partial/repair-<hex>`: where `verify --repair` downloads blob `hash` again.
    pub fn repair_download(&self, hash: &BlobHash) -> PathBuf {
        self.partial().join(format!("repair-{hash}"))
    }

    /// `quarantine/`: corrupt blobs and files displaced from trees, kept for inspection (out of
    /// `blobs/` and `trees/`), created by `verify --repair` on first use with mode 0700.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }

    /// `keys/<name>.key`; the caller checks `name` (`keys::check_key_name`).
    pub fn key(&self, name: &str) -> PathBuf {
        self.keys().join(format!("{name}.key"))
    }

    /// `keyrings/<name>.gpg`; the caller checks `name` (`keys::check_key_name`).
    pub fn keyring(&self, name: &str) -> PathBuf {
        self.keyrings().join(format!("{name}.gpg"))
    }

    /// The digest a path in `blobs/` stands for, when it is a canonical blob address: a
    /// lowercase BLAKE3 hex name under the directory of its first two characters.
    pub fn blob_name(path: &Path) -> Option<&str> {
        let name = path.file_name()?.to_str()?;
        let prefix = path.parent()?.file_name()?.to_str()?;
        let hash = BlobHash::parse(name).ok()?;
        (hash.prefix() == prefix).then_some(name)
    }

    /// `(tree name, dest)` for each of `dests` whose symlink resolves into `trees/`, whatever
    /// the catalogue says (after a kill mid-publish the link, not the row, is the truth). `gc`
    /// keeps these trees and `verify` does not call them orphans; the dests come from
    /// `Catalog::publication_dests`, so that neither of the two reaches into the other.
    pub fn linked_trees(&self, dests: Vec<String>) -> Vec<(String, String)> {
        let Ok(trees) = fs::canonicalize(self.trees()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for dest in dests {
            let Ok(target) = fs::canonicalize(&dest) else {
                continue;
            };
            let Ok(rest) = target.strip_prefix(&trees) else {
                continue;
            };
            if let Some(Component::Normal(first)) = rest.components().next()
                && let Some(name) = first.to_str()
            {
                out.push((name.to_string(), dest));
            }
        }
        out
    }

    /// [`Self::blob_name`] as a [`BlobHash`].
    pub fn blob_hash(path: &Path) -> Option<BlobHash> {
        Self::blob_name(path).map(|n| BlobHash(n.to_string()))
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
        self.create_blob_prefixes()
    }

    /// The 256 fan-out directories `blobs/00` … `blobs/ff` (0700), so that placing a blob is
    /// one rename, never a failed rename, a `mkdir` and a second rename. Created in order, so an
    /// existing `blobs/ff` means all exist: one `stat` when the store is opened again. (A prefix
    /// directory removed by hand is still created by [`BlobStore::place`] when it misses it.)
    fn create_blob_prefixes(&self) -> Result<()> {
        let blobs = self.blobs();
        if blobs.join("ff").is_dir() {
            return Ok(());
        }
        for i in 0..=255u8 {
            let dir = blobs.join(format!("{i:02x}"));
            create_dir_mode(&dir, 0o700).with_path("create directory", &dir)?;
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
    ///
    /// Two system calls in the common case (chmod, rename: the prefix directories exist from
    /// [`Layout::create_dirs`]; one is created here only when the rename finds it missing),
    /// which matters at thousands of small blobs.
    pub fn place(&self, file: &Path, digests: &Digests) -> Result<PathBuf> {
        fs::set_permissions(file, readonly()).with_path("chmod", file)?;
        self.rename_in(file, digests)
    }

    /// [`Self::place`] of a file the caller holds open (`open` is `file`, e.g. a download's
    /// locked partial file): the mode is set on the open file (`fchmod`, no path lookup), then
    /// the rename.
    pub fn place_open(&self, open: &File, file: &Path, digests: &Digests) -> Result<PathBuf> {
        open.set_permissions(readonly()).with_path("chmod", file)?;
        self.rename_in(file, digests)
    }

    /// Rename `file` to its address (see [`Self::place`]).
    fn rename_in(&self, file: &Path, digests: &Digests) -> Result<PathBuf> {
        let dest = self.layout.blob_path(&BlobHash::parse(&digests.blake3)?);
        match fs::rename(file, &dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && file.exists() => {
                let dir = dest
                    .parent()
                    .unwrap_or(self.layout.blobs().as_path())
                    .to_path_buf();
                create_dir_mode(&dir, 0o700).with_path("create directory", &dir)?;
                fs::rename(file, &dest).with_path("rename into", &dest)?;
            }
            r => r.with_path("rename into", &dest)?,
        }
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
        let path = self.layout.blob_path(&BlobHash::parse(hex)?);
        fs::read(&path).with_path("read", &path)
    }
}

/// The mode of a blob file: 0444.
fn readonly() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(0o444)
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

/// A path outside the store (a publish DEST, a directory to import) as an absolute path whose
/// parent is canonical (the key of its publications).
pub fn resolve_outside(dest: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(dest).with_path("resolve", dest)?;
    let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
        return Err(Error::DestIsDirectory { dest: abs });
    };
    if name == ".." || name == "." {
        return Err(Error::DestIsDirectory { dest: abs });
    }
    match fs::canonicalize(parent) {
        Ok(p) if p.is_dir() => Ok(p.join(name)),
        Ok(_) => Err(Error::DestParentMissing { dest: abs }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(Error::DestParentMissing { dest: abs })
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err(Error::DestParentMissing { dest: abs })
        }
        Err(e) => Err(Error::Io {
            op: "resolve",
            path: parent.to_path_buf(),
            source: e,
        }),
    }
}

/// Refuse a DEST that is the store root, lies inside it (`ROOT/trees`, `ROOT/blobs`…) or contains
/// it (a parent of ROOT): replacing it with a link, or adopting it, would destroy the store.
/// `dest` comes from [`resolve_outside`] (canonical parent); the root is canonicalised here.
pub fn refuse_in_store(layout: &Layout, dest: &Path) -> Result<()> {
    let root = fs::canonicalize(layout.root()).with_path("resolve", layout.root())?;
    let relation = if dest == root {
        "is"
    } else if dest.starts_with(&root) {
        "is inside"
    } else if root.starts_with(dest) {
        "contains"
    } else {
        return Ok(());
    };
    Err(Error::DestInStore {
        dest: dest.to_path_buf(),
        root,
        relation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_256_blob_prefix_directories_come_with_the_store_and_placing_needs_none() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("store"));
        layout.create_dirs().unwrap();
        let prefixes: Vec<_> = fs::read_dir(layout.blobs())
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(prefixes.len(), 256);
        for e in &prefixes {
            assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert!(layout.blobs().join("00").is_dir() && layout.blobs().join("ff").is_dir());
        // idempotent; a prefix removed by hand is created again by place
        layout.create_dirs().unwrap();
        let store = BlobStore::new(layout.clone());
        let mut h = checksum::MultiHasher::all();
        h.update(b"x");
        let d = h.finish();
        fs::remove_dir(layout.blobs().join(&d.blake3[..2])).unwrap();
        let f = layout.tmp().join("f");
        fs::write(&f, b"x").unwrap();
        assert_eq!(
            store.place(&f, &d).unwrap(),
            layout.blob(&d.blake3).unwrap()
        );
    }

    #[test]
    fn an_open_file_is_placed_read_only_through_its_handle() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create_dirs().unwrap();
        let store = BlobStore::new(layout.clone());
        let f = layout.partial().join("p");
        fs::write(&f, b"held").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let open = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&f)
            .unwrap();
        let mut h = checksum::MultiHasher::all();
        h.update(b"held");
        let d = h.finish();
        let placed = store.place_open(&open, &f, &d).unwrap();
        assert_eq!(placed, layout.blob(&d.blake3).unwrap());
        assert!(!f.exists());
        let m = fs::metadata(&placed).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o444);
        // the handle is the blob's inode (the caller's lock goes with it)
        assert_eq!(open.metadata().unwrap().ino(), m.ino());
        assert_eq!(fs::read(&placed).unwrap(), b"held");
    }

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
    fn blob_hash_is_64_lowercase_hex() {
        let good = "ab".repeat(32);
        let h: BlobHash = good.parse().unwrap();
        assert_eq!(h.as_str(), good);
        assert_eq!(h.to_string(), good);
        assert_eq!(
            Layout::new("/s").blob_path(&h),
            PathBuf::from(format!("/s/blobs/ab/{good}"))
        );
        for bad in [
            String::new(),
            "ab".into(),
            "AB".repeat(32),
            "g".repeat(64),
            "../".repeat(21) + "a",
            "a".repeat(65),
        ] {
            assert!(
                matches!(BlobHash::parse(&bad), Err(Error::BadDigest(b)) if b == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn blob_hash_from_sql_refuses_damage() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let good = "cd".repeat(32);
        let h = BlobHash::parse(&good).unwrap();
        let back: BlobHash = conn.query_row("SELECT ?1", [&h], |r| r.get(0)).unwrap();
        assert_eq!(back, h);
        let bad = conn.query_row("SELECT 'nothex'", [], |r| r.get::<_, BlobHash>(0));
        assert!(bad.is_err());
    }

    #[test]
    fn every_store_path_comes_from_the_layout() {
        let l = Layout::new("/s");
        assert_eq!(l.source_lock("a"), PathBuf::from("/s/locks/source-a"));
        assert_eq!(l.quarantine(), PathBuf::from("/s/quarantine"));
        let h = BlobHash::parse(&"0f".repeat(32)).unwrap();
        assert_eq!(
            l.repair_download(&h),
            PathBuf::from(format!("/s/partial/repair-{h}"))
        );
        assert_eq!(l.key("k"), PathBuf::from("/s/keys/k.key"));
        assert_eq!(l.keyring("k"), PathBuf::from("/s/keyrings/k.gpg"));
        let d = Path::new("/www/dest");
        let h = blake3::hash(b"/www/dest").to_hex();
        let short = &h.as_str()[..16];
        assert_eq!(
            l.dest_lock(d),
            PathBuf::from(format!("/s/locks/dest-{short}"))
        );
        assert_eq!(
            l.publish_stage(d),
            PathBuf::from(format!("/s/tmp/publish-{short}"))
        );
        assert_eq!(
            l.publish_stage_in(Path::new("/t"), d),
            PathBuf::from(format!("/t/.publish-{short}"))
        );
    }

    #[test]
    fn tree_names_stay_inside_trees() {
        let l = Layout::new("/s");
        assert_eq!(l.tree("t-1"), Some(PathBuf::from("/s/trees/t-1")));
        for bad in ["", ".", "..", "a/b", "/etc", "a/", "./a"] {
            assert_eq!(l.tree(bad), None, "{bad}");
        }
    }

    #[test]
    fn blob_path_rejects_non_digests() {
        let layout = Layout::new("/x");
        assert!(layout.blob("../../etc/passwd").is_none());
        assert!(layout.blob("ab").is_none());
        assert!(layout.blob(&"g".repeat(64)).is_none());
        assert!(layout.blob(&"AB".repeat(32)).is_none());
        let h = "ab".repeat(32);
        assert_eq!(
            Layout::blob_name(&layout.blob(&h).unwrap()),
            Some(h.as_str())
        );
        assert_eq!(
            Layout::blob_name(Path::new(&format!("/x/blobs/cd/{h}"))),
            None
        );
    }
}

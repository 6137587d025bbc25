//! Publishing: a snapshot materialised as a tree under `trees/<name>/`, and the directory a web
//! server serves (DEST) turned into a symbolic link to it, replaced atomically on every publish
//! and rollback.
//!
//! # How a publish runs
//! 1. Locks: the store lock shared (gc takes it exclusively) and `locks/dest-<hash>` exclusively
//!    (two publishes to one DEST serialise).
//! 2. DEST is checked before anything is built: its directory must exist; a regular file is
//!    never replaced; a real directory only with `--adopt`; a symlink only if it points into this
//!    store's `trees/`.
//! 3. The tree: an existing one of the same (snapshot, metadata mode, signer) is reused (cheap);
//!    otherwise it is staged under `tmp/publish-<hash>/` (or `trees/.publish-<hash>/` when
//!    `trees/` is another filesystem, e.g. a bind mount: the final rename cannot cross
//!    filesystems) (items hardlinked to their blobs, reflink or copy when a hardlink is
//!    impossible; metadata documents written), every directory is
//!    fsynced, the stage is renamed to `trees/<name>/` in one rename, and only then the `trees` row
//!    is inserted.
//! 4. The check: the tree is read as a client reads it (index → products → items) and every listed
//!    item must be there with its size. Verbatim metadata of a filtered snapshot lists items the
//!    snapshot does not hold: refused (with a count and examples) unless `--force`.
//! 5. Grace items (`publish/grace.rs`): the new tree gets links of the items of the tree DEST
//!    points at now and of every tree that one still bridges (so every tree retired within the
//!    grace period stays downloadable, however many flips later), and the live tree those of the
//!    new one, so a client that read older metadata still finds its items, and a rollback is a
//!    pure rename.
//! 6. The switch (one function, shared with rollback): the publication row is inserted (gc sees
//!    the tree as referenced from now on), DEST is flipped (a fresh symlink created beside DEST,
//!    then one `rename(2)` over DEST), and the previous publications of DEST are marked retired.
//!    If the flip fails the row is removed.
//!
//! Every row read or written here goes through the catalogue ([`crate::catalog`]: trees,
//! publications, item files); this module holds no SQL.
//!
//! A failure at any step leaves DEST untouched and removes the stage; a `kill -9` can leave a
//! stage (removed by the next publish to that DEST, or by gc), a tree without a row, or a
//! publication row whose flip never happened: `readlink(DEST)` is the truth, and `status` says
//! when the link and the catalogue disagree.
//!
//! **Adopting** (`--adopt`) a real directory at DEST (e.g. an `sstream-mirror` mirror) imports its
//! files as a snapshot ([`crate::import`]), then needs two renames: DEST → `DEST.streamvault-adopted-<time>`, then the
//! new link → DEST. Between the two, DEST does not exist: that one moment is **not atomic**, and a
//! client reading then gets a 404. Every later publish and rollback is atomic.
//!
//! **Composing** ([`compose`]): `publish A B … DEST` builds one tree of several snapshots with one
//! index over every input's products (filtered: merged per content id and re-signed; verbatim:
//! the upstream products documents, only when no content id is in two inputs); the tree records
//! its inputs, and everything here (reuse, grace, rollback, status, publications) and in gc and
//! verify treats it like a tree of one snapshot. The S3 target gets it through [`checked_tree`].
//!
//! Rollback flips DEST back to a retained tree (the previous publication's, or one chosen with
//! `--to`) without rebuilding anything: one rename, recorded as a publication with action
//! `rollback`.
//!
//! **Detaching** ([`detach`]) hands DEST over to another tool: a plain directory holding a copy
//! of the live tree replaces the link (one `RENAME_EXCHANGE`).
//!
//! Protects invariant 3 (a published link points only at a complete tree; a failed publish
//! leaves the old link untouched) and, for gc, invariant 4 (the publication row exists before
//! the link points at its tree).

mod check;
pub(crate) mod compose;
mod dest;
mod detach;
mod failpoint;
mod grace;
pub(crate) mod maas_rules;
mod metadata;
mod rollback;
pub mod s3;
mod status;
mod tree;

pub use rollback::rollback;
pub use status::{PublicationInputs, publications, publications_with_inputs, status};

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::catalog::MetadataMode;
pub(crate) use crate::catalog::{Publication, TreeDocument, TreeInput, TreeRow};
use crate::import::Adopted;
pub use check::{INDEX_NAMES, TreeCheck, check_published, check_tree};
pub use detach::{DetachReport, detach, detach_plan};

use crate::catalog::{PublicationAction, PublicationId, Snapshot, SnapshotId};
use crate::error::{Error, Result};
use crate::lock::{self, LockGuard, Mode};
use crate::openpgp::SigningKey;
use crate::vault::Vault;

use dest::State;
use metadata::OutDoc;
use tree::{Builder, OnExisting};

/// What to publish where.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// A snapshot id, or a source name for its latest snapshot.
    pub snapshot: String,
    /// More snapshots (ids or source names) composed with `snapshot` into one tree
    /// ([`compose`]); empty: a publication of `snapshot` alone.
    pub compose: Vec<String>,
    /// The path the web server serves (becomes a symlink).
    pub dest: PathBuf,
    pub mode: MetadataMode,
    /// Name of a store key (`keys/<name>.key`) to clearsign filtered metadata with; `None`:
    /// the default key (`keys::DEFAULT_KEY`, created on first use) unless `unsigned`.
    pub sign_key: Option<String>,
    /// Filtered metadata without a signature (`.json` only).
    pub unsigned: bool,
    /// Publish even if the metadata lists items the tree lacks.
    pub force: bool,
    /// DEST may be a real directory: import its files, move it aside, link.
    pub adopt: bool,
    /// Build a new tree even if one exists for the same snapshot, mode and signer.
    pub rebuild: bool,
    /// With `adopt`: the directory was already imported by [`crate::import::import`] (the `mirror`
    /// command imports before its sync so that nothing is downloaded again).
    pub pre_adopted: Option<Adopted>,
}

/// Where a rollback goes.
#[derive(Debug, Clone, Default)]
pub struct RollbackOptions {
    pub dest: PathBuf,
    /// `N` or `publication:N` (a publication of DEST), `snapshot:N` (the newest publication of
    /// snapshot N on DEST); `None`: the publication before the live one.
    pub to: Option<String>,
}

/// What a publish or rollback did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishReport {
    /// The publication row (the live one if nothing changed).
    pub publication: PublicationId,
    /// `publish`, `adopt` or `rollback`.
    pub action: PublicationAction,
    pub dest: PathBuf,
    pub snapshot: SnapshotId,
    pub source: String,
    /// Every snapshot the tree was built from (one, or the inputs of a composition in order).
    pub inputs: Vec<TreeInput>,
    pub tree: String,
    pub(crate) tree_path: PathBuf,
    /// An existing tree was used (nothing was built).
    pub tree_reused: bool,
    pub mode: MetadataMode,
    pub signer: Option<String>,
    /// The binary public keyring of the signing key (`keyrings/<name>.gpg`): MAAS's
    /// `keyring_filename`.
    pub keyring: Option<PathBuf>,
    /// The default signing key was generated by this publish.
    pub key_created: bool,
    /// MAAS client rules already broken upstream, or broken by the filters with `--force`
    /// ([`maas_rules`]).
    pub warnings: Vec<String>,
    pub files: i64,
    pub bytes: i64,
    /// Links added so that readers of the previous tree keep finding their items.
    pub grace_files: u64,
    /// Items listed but absent, accepted with `--force`.
    pub missing: usize,
    /// The publication that was live before.
    pub previous: Option<PublicationId>,
    /// Whether DEST changed (a rollback to the live tree changes nothing).
    pub changed: bool,
    pub adopted: Option<Adopted>,
    pub(crate) duration_ms: u64,
}

/// What DEST points at, and whether the catalogue agrees.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub dest: PathBuf,
    /// The link target, if DEST is a symlink.
    pub link: Option<PathBuf>,
    pub tree: Option<TreeRow>,
    /// The snapshots the linked tree was built from (several for a composition).
    pub inputs: Vec<TreeInput>,
    /// The publication that made the link what it is.
    pub live: Option<Publication>,
    /// The newest publication of DEST in the catalogue.
    pub(crate) latest: Option<Publication>,
    /// Disagreements between the link and the catalogue.
    pub problems: Vec<String>,
}

impl Status {
    pub fn consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

fn dest_key(dest: &Path) -> String {
    dest.to_string_lossy().into_owned()
}

/// Publish a snapshot to DEST (see the module documentation for the steps).
pub fn publish(vault: &mut Vault, opts: &PublishOptions) -> Result<PublishReport> {
    let started = Instant::now();
    // A composition's index is always new: signed (by default) in verbatim mode too.
    let signing = metadata::signing(
        vault,
        opts.mode == MetadataMode::Filtered || !opts.compose.is_empty(),
        opts.sign_key.as_deref(),
        opts.unsigned,
    )?;
    let (key, keyring, key_created) = match signing {
        Some(s) => (Some(s.key), Some(s.keyring), s.created),
        None => (None, None, false),
    };
    let signer = key.as_ref().map(SigningKey::fingerprint);
    if let Some(d) = s3::S3Dest::parse(&opts.dest)? {
        return Err(s3::S3Error::UnsupportedDest { dest: d.url() }.into());
    }
    let dest = dest::resolve(&opts.dest)?;
    dest::refuse_in_store(&vault.layout, &dest)?;
    let _locks = lock_dest(vault, &dest, "publish")?;
    let trees = dest::trees_dir(&vault.layout)?;
    let state = dest::inspect(&dest)?;
    let live = live_tree(vault, &dest, &state, &trees, opts.adopt)?;
    let snap = vault.catalog.resolve_snapshot(&opts.snapshot)?;

    let mut adopted = match (&state, &opts.pre_adopted) {
        (State::Directory, Some(a)) => Some(a.clone()),
        (State::Directory, None) => Some(crate::import::import(vault, &dest)?),
        _ => None,
    };

    let staging = dest::staging_path(&vault.layout, &trees, &dest);
    let CheckedTree {
        tree,
        reused,
        path: tree_path,
        check,
        warnings,
    } = checked_tree(
        vault,
        &trees,
        &staging,
        &snap,
        opts,
        key.as_ref(),
        signer.as_deref(),
    )?;
    let mut grace_files = 0;
    if let Some(live) = &live
        && live.id != tree.id
    {
        grace_files += grace::bridge(vault, &trees, &tree, live)?;
    }

    let dkey = dest_key(&dest);
    let previous = match &live {
        Some(t) => vault
            .catalog
            .latest_publication_with_tree(&dkey, t.id)?
            .map(|p| p.id),
        None => None,
    };
    let action = if adopted.is_some() {
        PublicationAction::Adopt
    } else {
        PublicationAction::Publish
    };
    let id = switch(vault, &dkey, &tree, action, || match adopted.as_mut() {
        Some(a) => flip_adopting(&dest, &tree_path).map(|aside| a.moved_to = Some(aside)),
        None => flip(&dest, &tree_path),
    })?;
    Ok(PublishReport {
        publication: id,
        action,
        dest,
        snapshot: snap.id,
        source: snap.source.clone(),
        inputs: vault.catalog.tree_input_sources(&tree)?,
        tree: tree.name.clone(),
        tree_path,
        tree_reused: reused,
        mode: tree.mode,
        signer: tree.signer.clone(),
        keyring,
        key_created,
        warnings,
        files: tree.files,
        bytes: tree.bytes,
        grace_files,
        missing: check.missing,
        previous,
        changed: true,
        adopted,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Switch DEST's link to `tree`, in invariant 4's order: the publication row first (gc sees the
/// tree as referenced), then `flip`; a failed flip deletes the row again (DEST untouched), a
/// successful one retires every other publication of DEST. Returns the row's id. The one
/// sequence publish (and adopt) and rollback share.
fn switch(
    vault: &Vault,
    dkey: &str,
    tree: &TreeRow,
    action: PublicationAction,
    flip: impl FnOnce() -> Result<()>,
) -> Result<PublicationId> {
    let cat = &vault.catalog;
    let id = cat.insert_publication(dkey, tree, action, &crate::host::who())?;
    if let Err(e) = flip() {
        let _ = cat.delete_publication(id);
        return Err(e);
    }
    cat.retire_other_publications(dkey, id)?;
    Ok(id)
}

/// The flip, with the test-only failure point before it.
fn flip(dest: &Path, tree: &Path) -> Result<()> {
    if failpoint::flag("publish-fail-flip") {
        return Err(Error::Io {
            op: "replace link",
            path: dest.to_path_buf(),
            source: std::io::Error::from_raw_os_error(28),
        });
    }
    dest::flip(dest, tree)
}

/// Move the adopted directory aside, then link (two renames: not atomic, see module docs).
fn flip_adopting(dest: &Path, tree: &Path) -> Result<PathBuf> {
    let aside = dest::move_aside(dest)?;
    if let Err(e) = flip(dest, tree) {
        dest::move_back(&aside, dest);
        return Err(e);
    }
    Ok(aside)
}

/// The tree DEST points at now (refusing what must not be replaced).
fn live_tree(
    vault: &Vault,
    dest: &Path,
    state: &State,
    trees: &Path,
    adopt: bool,
) -> Result<Option<TreeRow>> {
    match state {
        State::Absent => Ok(None),
        State::Other => Err(Error::DestIsFile {
            dest: dest.to_path_buf(),
        }),
        State::Directory if adopt => Ok(None),
        State::Directory => Err(Error::DestIsDirectory {
            dest: dest.to_path_buf(),
        }),
        State::Link(target) => {
            let Some(name) = dest::tree_name(dest, target, trees) else {
                return Err(Error::DestForeignLink {
                    dest: dest.to_path_buf(),
                    target: target.clone(),
                });
            };
            Ok(vault
                .catalog
                .tree_by_name(&name)?
                .filter(|t| trees.join(&t.name).is_dir()))
        }
    }
}

/// The tree for `snap` (reused, or built in `staging`) and its check against the metadata it
/// serves; an incomplete tree is refused unless `--force`, so is filtered metadata breaking a
/// MAAS client rule ([`maas_rules::enforce`]). Shared by the local and S3 publishes. With
/// `opts.compose`, the tree of the composition of `snap` and those ([`compose`]): the S3 target
/// publishes a composed tree through this same function.
pub(super) fn checked_tree(
    vault: &Vault,
    trees: &Path,
    staging: &Path,
    snap: &Snapshot,
    opts: &PublishOptions,
    key: Option<&SigningKey>,
    signer: Option<&str>,
) -> Result<CheckedTree> {
    let inputs = compose::inputs(vault, snap, opts)?;
    let (tree, reused, starts) = if inputs.len() > 1 {
        let (t, r) = compose::tree_for(vault, trees, staging, &inputs, opts, key, signer)?;
        (t, r, compose::starts(key.is_some()))
    } else {
        let (t, r) = tree_for(vault, trees, staging, snap, opts, key, signer)?;
        let starts = metadata::starts(
            vault,
            snap,
            opts.mode == MetadataMode::Filtered,
            key.is_some(),
        )?;
        (t, r, starts)
    };
    let tree_path = trees.join(&tree.name);
    let check = check::check_tree(&tree_path, &starts)?;
    if !check.is_complete() && !opts.force {
        return Err(Error::TreeIncomplete {
            snapshot: snap.id,
            mode: opts.mode.as_str(),
            listed: check.listed,
            missing: check.missing,
            examples: check.examples.join(", "),
        });
    }
    // The MAAS client rules, before any flip (local or S3); the warnings go in the report.
    let warnings = maas_rules::enforce(vault, &inputs, &tree_path, &starts, opts.mode, opts.force)?;
    Ok(CheckedTree {
        tree,
        reused,
        path: tree_path,
        check,
        warnings,
    })
}

/// What [`checked_tree`] gives a publish.
pub(super) struct CheckedTree {
    pub(super) tree: TreeRow,
    /// An existing tree, not built by this publish.
    pub(super) reused: bool,
    pub(super) path: PathBuf,
    pub(super) check: check::TreeCheck,
    /// The MAAS rule warnings (rules broken upstream, or by the filters with `--force`).
    pub(super) warnings: Vec<String>,
}

fn tree_for(
    vault: &Vault,
    trees: &Path,
    staging: &Path,
    snap: &Snapshot,
    opts: &PublishOptions,
    key: Option<&SigningKey>,
    signer: Option<&str>,
) -> Result<(TreeRow, bool)> {
    let mode = opts.mode;
    if !opts.rebuild {
        for t in vault.catalog.trees_for(snap.id, mode, signer)? {
            // A composed tree of this snapshot serves more than it: never reused for it alone.
            if trees.join(&t.name).is_dir() && vault.catalog.tree_inputs(t.id)?.is_empty() {
                // Nothing is built: remove what a killed publish to this DEST left staged (we
                // hold the DEST lock, so no other publish is using this stage).
                tree::discard(staging);
                return Ok((t, true));
            }
        }
    }
    let docs = match opts.mode {
        MetadataMode::Verbatim => metadata::verbatim(vault, snap)?,
        MetadataMode::Filtered => metadata::filtered(vault, snap, key)?,
    };
    let name = new_tree_name(&snap.id.to_string(), mode, signer);
    check_copy_space(vault, trees, staging, snap.bytes)?;
    let built = build(vault, snap, &docs, staging);
    let (files, bytes, written) = match built {
        Ok(v) => v,
        Err(e) => {
            tree::discard(staging);
            return Err(e);
        }
    };
    if let Err(e) = tree::commit(staging, trees, &name) {
        tree::discard(staging);
        return Err(e);
    }
    let row = vault
        .catalog
        .insert_tree(&name, snap.id, mode, signer, files, bytes, &written)?;
    Ok((row, false))
}

/// A new tree's name: `<prefix>-<mode>[-<signer>]-<time>-<random>`.
fn new_tree_name(prefix: &str, mode: MetadataMode, signer: Option<&str>) -> String {
    let signer_part = signer
        .and_then(|s| s.get(..8))
        .map(|s| format!("-{}", s.to_ascii_lowercase()))
        .unwrap_or_default();
    format!(
        "{prefix}-{mode}{signer_part}-{}-{:06x}",
        crate::host::now(),
        fastrand::u32(..0x100_0000)
    )
}

/// Items are copies, not hardlinks, when the stage is on another filesystem than blobs/
/// (trees/ on a bind mount): check that `bytes` fit before copying anything, as a sync does.
fn check_copy_space(vault: &Vault, trees: &Path, staging: &Path, bytes: i64) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let parent = staging.parent().unwrap_or(trees);
    let dev = |p: &Path| fs::metadata(p).map(|m| m.dev()).ok();
    if dev(parent).is_some() && dev(parent) != dev(&vault.layout.blobs()) {
        crate::space::check_copy(vault, parent, u64::try_from(bytes).unwrap_or(0))?;
    }
    Ok(())
}

/// An empty stage directory (a stale one removed first).
fn fresh_stage(staging: &Path) -> Result<()> {
    if fs::symlink_metadata(staging).is_ok() {
        fs::remove_dir_all(staging).map_err(|e| Error::Io {
            op: "remove stale stage",
            path: staging.to_path_buf(),
            source: e,
        })?;
    }
    crate::store::create_dir_mode(staging, crate::store::TREE_DIR_MODE).map_err(|e| Error::Io {
        op: "create directory",
        path: staging.to_path_buf(),
        source: e,
    })?;
    Ok(())
}

/// Stage a tree: metadata documents, then every item with a path (in path order). Returns the
/// files, the bytes and the documents as written (recorded for `verify`).
fn build(
    vault: &Vault,
    snap: &Snapshot,
    docs: &[OutDoc],
    staging: &Path,
) -> Result<(u64, u64, Vec<TreeDocument>)> {
    fresh_stage(staging)?;
    let mut b = Builder::new(staging, snap.id, OnExisting::Conflict);
    let mut written = Vec::new();
    for doc in docs {
        match doc {
            OutDoc::Blob { path, blob } => {
                let bp = vault.layout.blob_path(blob);
                let size = fs::metadata(&bp).map(|m| m.len()).unwrap_or(0);
                b.link_blob(path, &bp, size)?;
                written.push(TreeDocument {
                    path: path.clone(),
                    blake3: blob.clone(),
                    size,
                });
            }
            OutDoc::Bytes { path, bytes } => {
                b.write_bytes(path, bytes)?;
                written.push(TreeDocument {
                    path: path.clone(),
                    blake3: crate::store::BlobHash::parse(&blake3::hash(bytes).to_hex())?,
                    size: bytes.len() as u64,
                });
            }
        }
    }
    // Every item file first (the catalogue read stays on this thread), then placed by
    // tree::link_all, on several threads for a large tree.
    let mut files: Vec<tree::BlobFile> = Vec::new();
    let mut last: Option<(String, crate::store::BlobHash)> = None;
    vault.catalog.for_each_item_file(snap.id, None, |f| {
        let Some(blob) = f.blob else {
            return Err(Error::ItemWithoutBlob {
                snapshot: snap.id,
                item: f.key.join("/"),
            });
        };
        if let Some((lp, lb)) = &last
            && *lp == f.path
        {
            if *lb == blob {
                return Ok(());
            }
            return Err(Error::PathConflict {
                snapshot: snap.id,
                path: f.path,
            });
        }
        files.push((f.path.clone(), vault.layout.blob_path(&blob), f.size));
        last = Some((f.path, blob));
        Ok(())
    })?;
    tree::link_all(&mut b, &files)?;
    b.sync()?;
    Ok((b.files, b.bytes, written))
}

/// The store lock (shared; waits for a running gc, the only exclusive holder, rather than
/// failing) and DEST's own lock (two flips of one DEST never overlap).
fn lock_dest(vault: &Vault, dest: &Path, verb: &str) -> Result<(LockGuard, LockGuard)> {
    let what = format!("{verb} {}", dest.display());
    let store = vault.lock_store_shared(true, &what)?;
    let dest_lock = lock::acquire(
        &dest::lock_path(&vault.layout, dest),
        Mode::Exclusive,
        true,
        &what,
    )?;
    Ok((store, dest_lock))
}

fn not_published(e: Error, dest: &Path) -> Error {
    match e {
        Error::DestParentMissing { .. } => Error::NotPublished {
            dest: dest.to_path_buf(),
        },
        e => e,
    }
}

//! One whole `mirror` run, every decision of it: a dry run opens no store; a first run over a
//! directory an earlier sstream-mirror filled imports it (and its `.data/` state) before the
//! sync; the snapshot is published verbatim with `force`; retention runs by itself after it.
//! The caller parses the command line and prints (the library never prints).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::{Catalog, Source, split_credentials};
use crate::error::{IoResultExt, Result};
use crate::gc::AutoGc;
use crate::publish::{self, MetadataMode, PublishOptions};
use crate::settings::StoreSettings;
use crate::store::{BlobStore, Layout};
use crate::sync::{self, Outcome, SyncEvents, SyncReport};
use crate::vault::Vault;

use super::{MirrorArgs, check, new_source, seed_from_data, sync_options};

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// Whether OUTPUT_DIR was published (never for a dry run).
    pub published: bool,
    /// Retention after the publish (`None` for a dry run).
    pub gc: Option<AutoGc>,
}

/// The absolute OUTPUT_DIR of a run (the implicit source's name derives from it).
pub fn output_dir(a: &MirrorArgs) -> Result<PathBuf> {
    std::path::absolute(&a.output_d).with_path("resolve", &a.output_d)
}

/// Run `a` against the store at `root`. `synced` sees the sync's report before the publish
/// (sstream-mirror prints its plan lines there, so they precede a publish error).
pub async fn run(
    a: &MirrorArgs,
    root: &Path,
    events: Arc<dyn SyncEvents>,
    synced: &mut dyn FnMut(&SyncReport),
) -> Result<Report> {
    check(a)?;
    let output_d = output_dir(a)?;
    if a.dry_run {
        let report = dry_run(a, root, &output_d, events).await?;
        synced(&report);
        return Ok(Report {
            published: false,
            gc: None,
        });
    }
    let mut vault = Vault::open(root)?;
    // First run over a directory an earlier sstream-mirror filled: import its files by content
    // before the sync, so that nothing that verifies is downloaded again ...
    let pre_adopted = if is_real_dir(&output_d) {
        let adopted = crate::import::import(&mut vault, &output_d)?;
        // ... and its `.data/` state: what python recorded as mirrored is our "previous".
        seed_from_data(&mut vault, a, &output_d)?;
        Some(adopted)
    } else {
        None
    };
    let report = super::sync(&mut vault, a, &output_d, events).await?;
    synced(&report);
    let snapshot = match report.outcome {
        Outcome::Snapshot(id) | Outcome::Unchanged(id) => id,
        Outcome::DryRun => {
            return Ok(Report {
                published: false,
                gc: None,
            });
        }
    };
    if let Some(parent) = output_d.parent() {
        // sstream-mirror creates OUTPUT_DIR and its parents.
        std::fs::create_dir_all(parent).with_path("create directory", parent)?;
    }
    // Verbatim upstream metadata, as sstream-mirror writes it: it lists what the filters left
    // out, which is what the python tool's mirrors do too (hence `force`).
    publish::publish(
        &mut vault,
        &PublishOptions {
            snapshot: snapshot.to_string(),
            dest: output_d.clone(),
            mode: MetadataMode::Verbatim,
            force: true,
            adopt: pre_adopted.is_some(),
            pre_adopted,
            ..PublishOptions::default()
        },
    )?;
    // Retention by itself (never fails the run).
    let gc = match StoreSettings::load(Some(&vault.catalog)) {
        Ok(settings) => crate::gc::auto_collect(&mut vault, &settings),
        Err(e) => AutoGc::Skipped {
            reason: crate::error::chain_line(&e),
        },
    };
    Ok(Report {
        published: true,
        gc: Some(gc),
    })
}

/// A dry run writes nothing: no store is created or migrated, no source row is added, no lock
/// is taken. It plans against the existing catalogue opened read-only, or against an empty one
/// in memory when there is no store yet.
async fn dry_run(
    a: &MirrorArgs,
    root: &Path,
    output_d: &Path,
    events: Arc<dyn SyncEvents>,
) -> Result<SyncReport> {
    let mut vault = match Vault::open_read_only(root)? {
        Some(v) => v,
        None => {
            let layout = Layout::new(root);
            Vault {
                blobs: BlobStore::new(layout.clone()),
                catalog: Catalog::open_in_memory()?,
                layout,
            }
        }
    };
    let source = unrecorded_source(a, output_d)?;
    sync::sync(&mut vault, &source, &sync_options(a), events).await
}

/// The implicit source as this run's command line describes it, without a catalogue row; its
/// URLs' credentials kept aside as [`Catalog::source`] does.
fn unrecorded_source(a: &MirrorArgs, output_d: &Path) -> Result<Source> {
    let ns = new_source(a, output_d)?;
    crate::catalog::check_source_name(&ns.name)?;
    let mut credentials = std::collections::BTreeMap::new();
    let mut clean = |u: &str| {
        let (c, info) = split_credentials(u);
        if let Some(i) = info {
            credentials.insert(c.clone(), i);
        }
        c
    };
    let url = clean(&ns.url);
    let mirrors = ns.mirrors.iter().map(|m| clean(m)).collect();
    Ok(Source {
        id: crate::catalog::SourceId(0),
        name: ns.name,
        url,
        path: ns.path,
        keyring: ns.keyring,
        max: ns.max,
        keep: ns.keep,
        no_verify: ns.no_verify,
        mirrors,
        filters: ns.filters,
        created_at: crate::host::now(),
        implicit: true,
        publish: None,
        credentials,
    })
}

/// A directory that is not a symlink (a published OUTPUT_DIR is a symlink to a tree).
fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

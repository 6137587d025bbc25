//! Unattended operation around a sync: the run history, auto-publish of new snapshots, and
//! the one-screen overview of `streamvault status` without a DEST.
//!
//! A cron line runs `sync --all`: each source's run is recorded ([`sync_recorded`]: `runs`
//! table, credentials never recorded), a source with an auto-publish target gets its new
//! snapshot published ([`auto_publish`]: one flip, grace items as for `publish`; when the target
//! — a directory or an `s3://` DEST — serves a composition of several sources, the whole
//! composition is rebuilt with each input source's newest snapshot, never replaced by this
//! source's alone), and then
//! retention runs by itself ([`crate::gc::auto_collect`]), and the metrics file is rewritten
//! ([`crate::metrics`]).

use std::sync::Arc;

use crate::catalog::{Run, RunResult, SnapshotId, Source, TreeInput};
use crate::error::Result;
use crate::gc::{self, GcOptions};
use crate::publish::{self, PublishOptions, PublishReport};
use crate::settings::StoreSettings;
use crate::sync::{self, Outcome, SyncEvents, SyncOptions, SyncReport};
use crate::vault::Vault;

/// [`sync::sync`], with its start and its end recorded in the run history (not for dry runs).
pub async fn sync_recorded(
    vault: &mut Vault,
    source: &Source,
    opts: &SyncOptions,
    events: Arc<dyn SyncEvents>,
) -> Result<SyncReport> {
    if opts.dry_run {
        return sync::sync(vault, source, opts, events).await;
    }
    let run = vault.catalog.start_run(&source.name)?;
    let res = sync::sync(vault, source, opts, events).await;
    record(vault, run, &res);
    res
}

/// Record how a run ended (best effort: the history never fails a run).
pub fn record(vault: &Vault, run: crate::catalog::RunId, res: &Result<SyncReport>) {
    let _ = match res {
        Ok(r) => {
            let (result, snap) = match r.outcome {
                Outcome::Snapshot(id) => (RunResult::Snapshot, Some(id)),
                Outcome::Unchanged(id) => (RunResult::Unchanged, Some(id)),
                Outcome::DryRun => (RunResult::Unchanged, None),
            };
            vault
                .catalog
                .finish_run(run, result, None, r.fetched_bytes, r.items as u64, snap)
        }
        Err(e) => {
            let line = strip_urls(&crate::error::chain_line(e));
            vault
                .catalog
                .finish_run(run, RunResult::Failed, Some(&line), 0, 0, None)
        }
    };
}

/// Every `scheme://user:pw@host` in a line with its user info removed.
pub fn strip_urls(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '`' | '\'' | '"') || c.is_whitespace())
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        out.push_str(authority.rsplit_once('@').map_or(authority, |(_, h)| h));
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_info_is_stripped_from_lines() {
        assert_eq!(
            super::strip_urls("cannot fetch `http://u:pw@h:80/a` (x); https://u:***@h/b ok"),
            "cannot fetch `http://h:80/a` (x); https://h/b ok"
        );
    }
}

/// After a successful sync: publish the source's snapshot to its auto-publish target when the
/// target does not serve it yet. `None` when the source has no target or nothing was to do.
pub fn auto_publish(
    vault: &mut Vault,
    source: &Source,
    report: &SyncReport,
) -> Result<Option<PublishReport>> {
    let Some(target) = &source.publish else {
        return Ok(None);
    };
    if publish::s3::is_url(&target.dest) {
        return Ok(None); // auto_publish_s3
    }
    if let Ok(st) = publish::status(Some(&*vault), &target.dest)
        && st.inputs.len() > 1
    {
        return recompose(vault, source, report, &st);
    }
    let id = match report.outcome {
        Outcome::Snapshot(id) => id,
        Outcome::Unchanged(id) => {
            // A run after a killed or failed auto-publish publishes what DEST lacks; but a
            // snapshot DEST already served and an admin rolled back from stays rolled back.
            let st = publish::status(Some(&*vault), &target.dest)?;
            if st.tree.as_ref().is_some_and(|t| t.snapshot_id == id)
                || vault
                    .catalog
                    .was_retired_from(&target.dest.to_string_lossy(), id)?
            {
                return Ok(None);
            }
            id
        }
        Outcome::DryRun => return Ok(None),
    };
    let mode = target.metadata;
    publish::publish(
        vault,
        &PublishOptions {
            snapshot: id.to_string(),
            dest: target.dest.clone(),
            mode,
            sign_key: target.sign_key.clone(),
            ..PublishOptions::default()
        },
    )
    .map(Some)
}

/// Auto-publish to a DEST serving a composition (issue 12 item 5): the whole composition is
/// rebuilt with the newest snapshot of each of its input sources (same order, the source's
/// metadata mode and key); a composed DEST is never replaced by one source's snapshot, and a
/// source that is not one of its inputs is an error. Nothing is done when every input is already
/// the newest, or (after an unchanged sync) when a composition holding this source's snapshot
/// was rolled back from.
fn recompose(
    vault: &mut Vault,
    source: &Source,
    report: &SyncReport,
    st: &publish::Status,
) -> Result<Option<PublishReport>> {
    let dest = st.dest.to_string_lossy().into_owned();
    let retired = |v: &Vault, id| v.catalog.composition_retired_from(&dest, id);
    match recomposed(vault, source, report, &dest, &st.inputs, retired)? {
        Some(opts) => publish::publish(vault, &opts).map(Some),
        None => Ok(None),
    }
}

/// The publish that rebuilds the composition of `inputs` serving `dest` after `source`'s run
/// ([`recompose`]; the same rules for a local and an S3 DEST); `None`: nothing to do.
/// `retired_from(vault, snapshot)`: a composition of DEST holding `snapshot` was rolled back from.
fn recomposed(
    vault: &Vault,
    source: &Source,
    report: &SyncReport,
    dest: &str,
    inputs: &[TreeInput],
    retired_from: impl Fn(&Vault, SnapshotId) -> Result<bool>,
) -> Result<Option<PublishOptions>> {
    let Some(target) = &source.publish else {
        return Ok(None);
    };
    if !inputs.iter().any(|i| i.source == source.name) {
        return Err(publish::compose::ComposeError::NotAnInput {
            dest: dest.to_string(),
            name: source.name.clone(),
            inputs: inputs
                .iter()
                .map(|i| format!("`{}`", i.source))
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    }
    let (id, unchanged) = match report.outcome {
        Outcome::Snapshot(id) => (id, false),
        Outcome::Unchanged(id) => (id, true),
        Outcome::DryRun => return Ok(None),
    };
    let mut next = Vec::with_capacity(inputs.len());
    for i in inputs {
        let newest = if i.source == source.name {
            Some(id)
        } else {
            vault.catalog.latest_snapshot(&i.source)?.map(|s| s.id)
        };
        next.push(newest.unwrap_or(i.snapshot));
    }
    let current: Vec<SnapshotId> = inputs.iter().map(|i| i.snapshot).collect();
    if next == current || (unchanged && retired_from(vault, id)?) {
        return Ok(None);
    }
    let mut ids = next.iter().map(ToString::to_string);
    Ok(Some(PublishOptions {
        snapshot: ids.next().unwrap_or_default(),
        compose: ids.collect(),
        dest: target.dest.clone(),
        mode: target.metadata,
        sign_key: target.sign_key.clone(),
        ..PublishOptions::default()
    }))
}

/// The inputs of the composition an S3 DEST's live publication serves (`None`: one snapshot,
/// or nothing live).
fn s3_composition(vault: &Vault, url: &str) -> Result<Option<Vec<TreeInput>>> {
    let Some(live) = vault.catalog.live_s3_publication(url)? else {
        return Ok(None);
    };
    let Some(tree) = vault.catalog.tree_by_name(&live.tree)? else {
        return Ok(None);
    };
    let inputs = vault.catalog.tree_input_sources(&tree)?;
    Ok((inputs.len() > 1).then_some(inputs))
}

/// A composition of S3 DEST `url` holding `snapshot` was rolled back from.
fn s3_composition_retired_from(vault: &Vault, url: &str, snapshot: SnapshotId) -> Result<bool> {
    for p in vault.catalog.s3_publications(Some(url))? {
        if p.retired_at.is_none() {
            continue;
        }
        if let Some(tree) = vault.catalog.tree_by_name(&p.tree)?
            && vault
                .catalog
                .tree_input_sources(&tree)?
                .iter()
                .any(|i| i.snapshot == snapshot)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// [`auto_publish`] for an `s3://` target ([`publish::s3::auto_publish`]).
pub fn auto_publish_s3(
    vault: &mut Vault,
    source: &Source,
    report: &SyncReport,
) -> Result<Option<publish::s3::S3Report>> {
    let Some(target) = &source.publish else {
        return Ok(None);
    };
    let Some(d) = publish::s3::S3Dest::parse(&target.dest)? else {
        return Ok(None);
    };
    // A composition is rebuilt whole, as for a local DEST; never replaced by this snapshot.
    let url = d.url();
    if let Some(inputs) = s3_composition(vault, &url)? {
        let retired = |v: &Vault, id| s3_composition_retired_from(v, &url, id);
        return match recomposed(vault, source, report, &url, &inputs, retired)? {
            Some(opts) => publish::s3::publish(vault, &d, &opts).map(Some),
            None => Ok(None),
        };
    }
    match report.outcome {
        Outcome::Snapshot(id) => publish::s3::auto_publish(vault, &d, target, id, true),
        Outcome::Unchanged(id) => publish::s3::auto_publish(vault, &d, target, id, false),
        Outcome::DryRun => Ok(None),
    }
}

/// `streamvault status` without a DEST.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Overview {
    pub sources: Vec<SourceStatus>,
    pub dests: Vec<DestStatus>,
    pub store_blobs: u64,
    pub store_bytes: u64,
    /// What `gc` would free now (`None` when the store is busy: `gc_note` says why).
    pub gc_would_free: Option<u64>,
    pub gc_note: Option<String>,
    pub settings: StoreSettings,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub url: String,
    pub implicit: bool,
    pub last_run: Option<Run>,
    pub last_success: Option<i64>,
    pub latest_snapshot: Option<crate::catalog::SnapshotId>,
    pub auto_publish: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DestStatus {
    pub dest: String,
    pub snapshot: crate::catalog::SnapshotId,
    pub published_at: i64,
    /// The snapshots the live tree was built from, in order (several for a composition; empty
    /// when DEST cannot be read).
    pub inputs: Vec<TreeInput>,
}

/// Gather the overview. `vault` is opened for writing only to let the gc dry run take the
/// store lock; nothing is changed.
pub fn overview(vault: &mut Vault) -> Result<Overview> {
    let settings = StoreSettings::load(Some(&vault.catalog))?;
    let runs = vault.catalog.last_runs()?;
    let mut sources = Vec::new();
    for s in vault.catalog.sources()? {
        sources.push(SourceStatus {
            last_run: runs.iter().find(|r| r.source == s.name).cloned(),
            last_success: vault.catalog.last_success(&s.name)?,
            latest_snapshot: vault.catalog.latest_snapshot(&s.name)?.map(|x| x.id),
            auto_publish: s.publish.as_ref().map(|p| p.dest.display().to_string()),
            url: s.url,
            implicit: s.implicit,
            name: s.name,
        });
    }
    let dests = vault
        .catalog
        .live_publications()?
        .into_iter()
        .map(|(dest, snapshot, published_at)| {
            let inputs = publish::status(Some(&*vault), std::path::Path::new(&dest))
                .map(|st| st.inputs)
                .unwrap_or_default();
            DestStatus {
                dest,
                snapshot,
                published_at,
                inputs,
            }
        })
        .collect();
    let (store_blobs, store_bytes) = vault.catalog.blob_totals()?;
    let (gc_would_free, gc_note) = match gc::gc_plan(vault, &GcOptions::from_settings(&settings)) {
        Ok(plan) => (Some(plan.report().freed_bytes), None),
        Err(e) => (None, Some(crate::error::chain_line(&e))),
    };
    Ok(Overview {
        sources,
        dests,
        store_blobs,
        store_bytes,
        gc_would_free,
        gc_note,
        settings,
    })
}

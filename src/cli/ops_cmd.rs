//! CLI handlers for unattended operation: `config`, `source edit`, `status` without DEST, and
//! the steps every writing command ends with (automatic collection, the metrics file).

use super::status::ExitStatus;
use std::path::{Path, PathBuf};

use streamvault::catalog::AutoPublish;
use streamvault::error::{Error, Result};
use streamvault::gc::{self, AutoGc};
use streamvault::settings::{self, StoreSettings};
use streamvault::unattended;
use streamvault::vault::Vault;

use super::args::{AutoPublishArgs, ConfigCommand, MetadataArg, SourceEditArgs};
use super::output::{size, time};
use super::{json_out, out};

/// One problem line on stderr (also under `--quiet`).
pub fn problem(line: &str) {
    eprintln!("streamvault: {line}");
}

/// The auto-publish target given on `source add`/`source edit`, checked: DEST absolute (cron
/// runs elsewhere), the key exists when given.
pub fn auto_publish(root: &Path, a: &AutoPublishArgs) -> Result<Option<AutoPublish>> {
    let Some(dest) = &a.publish else {
        return Ok(None);
    };
    let dest = match streamvault::publish::s3::S3Dest::parse(dest)? {
        Some(d) => std::path::PathBuf::from(d.url()),
        None => std::path::absolute(dest).map_err(|source| Error::Io {
            op: "resolve",
            path: dest.clone(),
            source,
        })?,
    };
    if let Some(k) = &a.sign_key {
        streamvault::keys::load(&streamvault::store::Layout::new(root), k)?;
    }
    let metadata = match a.metadata {
        Some(MetadataArg::Filtered) => streamvault::catalog::MetadataMode::Filtered,
        _ => streamvault::catalog::MetadataMode::Verbatim,
    };
    Ok(Some(AutoPublish {
        dest,
        metadata,
        sign_key: a.sign_key.clone(),
    }))
}

pub fn source_edit(root: &Path, a: SourceEditArgs) -> Result<ExitStatus> {
    let v = Vault::open(root)?;
    let s = v.catalog.source(&a.name)?;
    if s.implicit && a.auto.publish.is_some() {
        return Err(Error::ImplicitSource(a.name));
    }
    let filters = super::args::filter_list(a.filters, a.or_groups);
    if a.set_filters {
        streamvault::streams::FilterGroups::parse(&filters)?;
    }
    let _lock = v.lock_source(&a.name, false, &format!("source edit {}", a.name))?;
    let mut changed = false;
    if a.set_filters {
        v.catalog.set_source_filters(&a.name, &filters)?;
        changed = true;
        if filters.is_empty() {
            out!(
                "source {}: filters removed (takes effect at the next sync)",
                a.name
            );
        } else {
            out!(
                "source {}: filters now {} (takes effect at the next sync)",
                a.name,
                filters.join(" ")
            );
        }
    }
    if a.no_publish {
        v.catalog.set_auto_publish(&a.name, None)?;
        out!("source {}: auto-publish off", a.name);
    } else if let Some(p) = auto_publish(root, &a.auto)? {
        v.catalog.set_auto_publish(&a.name, Some(&p))?;
        out!(
            "source {}: new snapshots are published to {} ({} metadata)",
            a.name,
            p.dest.display(),
            p.metadata
        );
    } else if !changed {
        out!("source {}: nothing to change", a.name);
    }
    Ok(ExitStatus::Success)
}

pub fn config(root: &Path, cmd: ConfigCommand) -> Result<ExitStatus> {
    match cmd {
        ConfigCommand::Get { key } => {
            let v = Vault::open_read_only(root)?;
            let cat = v.as_ref().map(|v| &v.catalog);
            let keys: Vec<&str> = match &key {
                Some(k) => {
                    settings::check(k, "x").or_else(|e| match e {
                        Error::UnknownSetting(_) => Err(e),
                        _ => Ok(String::new()),
                    })?;
                    vec![k.as_str()]
                }
                None => settings::KEYS.to_vec(),
            };
            let eff = StoreSettings::load(cat)?;
            for k in keys {
                let stored = match cat {
                    Some(c) => c.setting(k)?,
                    None => None,
                };
                let env = (k == "grace")
                    .then(|| std::env::var(settings::GRACE_ENV).ok())
                    .flatten();
                let (value, origin) = match (env, stored) {
                    (Some(e), _) => (e, format!("from {}", settings::GRACE_ENV)),
                    (None, Some(s)) => (s, "set".to_string()),
                    (None, None) => (default_of(k, &eff), "default".to_string()),
                };
                if key.is_some() {
                    out!("{value}");
                } else {
                    out!("{k:<13} {value:<24} ({origin})");
                }
            }
            Ok(ExitStatus::Success)
        }
        ConfigCommand::Set { key, value } => {
            let canon = settings::check(&key, &value)?;
            let v = Vault::open(root)?;
            v.catalog.set_setting(&key, &canon)?;
            out!("{key} = {canon}");
            Ok(ExitStatus::Success)
        }
        ConfigCommand::Unset { key } => {
            if !settings::KEYS.contains(&key.as_str()) {
                return Err(Error::UnknownSetting(key));
            }
            let v = Vault::open(root)?;
            v.catalog.unset_setting(&key)?;
            out!("{key}: back to the default");
            Ok(ExitStatus::Success)
        }
    }
}

fn default_of(k: &str, s: &StoreSettings) -> String {
    match k {
        "grace" => format!("{}s", s.grace.as_secs()),
        "keep-last" => s.keep_last.to_string(),
        "auto-gc" => if s.auto_gc { "on" } else { "off" }.into(),
        "reserve" => "min(1 GiB, 2% of the filesystem)".into(),
        _ => "(none)".into(),
    }
}

/// After a successful `sync`/`mirror`: the automatic collection, reported in one line (on
/// stdout unless `quiet`; a skip is a problem line on stderr, never a failure).
pub fn auto_collect(vault: &mut Vault, quiet: bool) {
    let settings = match StoreSettings::load(Some(&vault.catalog)) {
        Ok(s) => s,
        Err(e) => {
            problem(&format!(
                "gc skipped: {}",
                streamvault::error::chain_line(&e)
            ));
            return;
        }
    };
    print_auto_gc(&gc::auto_collect(vault, &settings), quiet);
}

/// What retention after a run did: a line when it freed something (unless `quiet`), a problem
/// line when it could not run.
pub fn print_auto_gc(gc: &AutoGc, quiet: bool) {
    match gc {
        AutoGc::Disabled => {}
        AutoGc::Collected(r) => {
            if !quiet && (r.files_unlinked > 0 || !r.snapshots_dropped.is_empty()) {
                eprintln!(
                    "gc: dropped {} snapshots, {} trees, {} blobs; freed {} (grace {}s)",
                    r.snapshots_dropped.len(),
                    r.trees_dropped.len(),
                    r.blobs_dropped,
                    size(r.freed_bytes),
                    r.grace_secs
                );
            }
        }
        AutoGc::Skipped { reason } => problem(&format!("gc skipped: {reason}")),
    }
}

/// Write the metrics file if one is configured (the flag, else the store setting), from a
/// store the caller already has open: its own connection sees every row it wrote.
pub fn write_metrics_from(vault: &Vault, flag: Option<PathBuf>) -> Result<()> {
    let Some(path) = flag.or_else(|| StoreSettings::load(Some(&vault.catalog)).ok()?.metrics_file)
    else {
        return Ok(());
    };
    streamvault::metrics::write(&vault.catalog, &path)
}

/// [`write_metrics_from`] for a store the caller does not hold open (opened read-only here; a
/// writer must have closed its connection first, so that its last rows are checkpointed).
pub fn write_metrics(root: &Path, flag: Option<PathBuf>) -> Result<()> {
    let Some(v) = Vault::open_read_only(root)? else {
        return Ok(());
    };
    write_metrics_from(&v, flag)
}

pub fn status_overview(root: &Path, json: bool) -> Result<ExitStatus> {
    if Vault::open_read_only(root)?.is_none() {
        return Err(Error::NoStore(root.to_path_buf()));
    }
    let mut v = Vault::open(root)?;
    let o = unattended::overview(&mut v)?;
    if json {
        return json_out(&o);
    }
    out!("store:   {} ({} blobs)", root.display(), o.store_blobs);
    out!(
        "size:    {}; gc would free {}",
        size(o.store_bytes),
        match (o.gc_would_free, &o.gc_note) {
            (Some(b), _) => size(b),
            (None, Some(n)) => format!("? ({n})"),
            (None, None) => "?".into(),
        }
    );
    out!(
        "policy:  keep last {} per source, grace {}s, auto-gc {}",
        o.settings.keep_last,
        o.settings.grace.as_secs(),
        if o.settings.auto_gc { "on" } else { "off" }
    );
    for s in &o.sources {
        let run = match &s.last_run {
            Some(r) => format!(
                "last run {} {}{}",
                time(r.started_at),
                r.result,
                r.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            None => "never run".into(),
        };
        out!(
            "source:  {}{} {}; latest snapshot {}{}",
            s.name,
            if s.implicit { " (mirror)" } else { "" },
            run,
            s.latest_snapshot
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            s.auto_publish
                .as_deref()
                .map(|d| format!("; auto-publish to {d}"))
                .unwrap_or_default()
        );
    }
    for d in &o.dests {
        let what = if d.inputs.len() > 1 {
            let each: Vec<String> = d
                .inputs
                .iter()
                .map(|i| format!("snapshot {} ({})", i.snapshot, i.source))
                .collect();
            format!("the composition of {}", each.join(", "))
        } else {
            format!("snapshot {}", d.snapshot)
        };
        out!(
            "dest:    {} serves {what} (published {})",
            d.dest,
            time(d.published_at)
        );
    }
    let failed = o.sources.iter().any(|s| {
        s.last_run
            .as_ref()
            .is_some_and(|r| r.result == streamvault::catalog::RunResult::Failed)
    });
    Ok(if failed {
        ExitStatus::Problems
    } else {
        ExitStatus::Success
    })
}

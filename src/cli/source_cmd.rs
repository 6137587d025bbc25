//! `source add|list|show|remove` (`source edit` is in [`super::ops_cmd`]).

use std::path::{Path, PathBuf};

use streamvault::error::{Error, IoResultExt, Result};
use streamvault::vault::Vault;

use super::args::{self, SourceAddArgs, SourceCommand};
use super::ops_cmd;
use super::output::{table, time};
use super::status::ExitStatus;
use super::{json_out, out};
use streamvault::catalog::{NewSource, check_source_name};
use streamvault::streams::FilterGroups;

pub(super) fn source(root: &Path, cmd: SourceCommand) -> Result<ExitStatus> {
    match cmd {
        SourceCommand::Add(a) => source_add(root, a),
        SourceCommand::Edit(a) => ops_cmd::source_edit(root, a),
        SourceCommand::List { json } => {
            let sources = match Vault::open_read_only(root)? {
                Some(v) => v.catalog.sources()?,
                None => Vec::new(),
            };
            if json {
                return json_out(&sources);
            }
            let rows: Vec<Vec<String>> = sources
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.url.clone(),
                        s.max.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                        s.filters.join(" "),
                        s.publish
                            .as_ref()
                            .map(|p| p.dest.display().to_string())
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            table(&["NAME", "URL", "MAX", "FILTERS", "PUBLISH"], &rows);
            Ok(ExitStatus::Success)
        }
        SourceCommand::Show { name, json } => {
            let v =
                Vault::open_read_only(root)?.ok_or_else(|| Error::UnknownSource(name.clone()))?;
            let s = v.catalog.source(&name)?;
            if json {
                #[derive(serde::Serialize)]
                struct ShowSource<'a> {
                    #[serde(flatten)]
                    source: &'a streamvault::catalog::Source,
                    filter_groups: Vec<Vec<String>>,
                }
                return json_out(&ShowSource {
                    filter_groups: FilterGroups::split(&s.filters),
                    source: &s,
                });
            }
            out!("name:      {}", s.name);
            out!("url:       {}", s.url);
            if s.has_credentials() {
                out!(
                    "login:     (stored in {}, mode 0600)",
                    v.catalog.credentials_path().display()
                );
            }
            if let Some(p) = &s.path {
                out!("path:      {p}");
            }
            match &s.keyring {
                Some(k) => out!("keyring:   {}", k.display()),
                None => out!("keyring:   (none)"),
            }
            out!("verify:    {}", if s.no_verify { "no" } else { "yes" });
            out!(
                "max:       {}{}",
                s.max.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                if s.keep { " (keep)" } else { "" }
            );
            for m in &s.mirrors {
                out!("mirror:    {m}");
            }
            for (i, g) in FilterGroups::split(&s.filters).iter().enumerate() {
                for (j, f) in g.iter().enumerate() {
                    // `--or` opens each group after the first, as on the command line.
                    let head = if i > 0 && j == 0 {
                        "or filter:"
                    } else {
                        "filter:   "
                    };
                    out!("{head} {f}");
                }
            }
            if let Some(p) = &s.publish {
                out!(
                    "publish:   {} ({} metadata{})",
                    p.dest.display(),
                    p.metadata,
                    p.sign_key
                        .as_deref()
                        .map(|k| format!(", signed with {k}"))
                        .unwrap_or_default()
                );
            }
            out!("added:     {}", time(s.created_at));
            if let Some(snap) = v.catalog.latest_snapshot(&s.name)? {
                out!(
                    "latest:    snapshot {} ({})",
                    snap.id,
                    time(snap.created_at)
                );
            }
            Ok(ExitStatus::Success)
        }
        SourceCommand::Remove { name } => {
            let v = Vault::open(root)?;
            let _lock = v.lock_source(&name, false, &format!("source remove {name}"))?;
            v.catalog.remove_source(&name)?;
            out!("removed source {name} (its snapshots stay until gc)");
            Ok(ExitStatus::Success)
        }
    }
}

/// Validate everything before touching the store: name, filters, `--keep`/`--max`, keyring.
pub(super) fn source_add(root: &Path, a: SourceAddArgs) -> Result<ExitStatus> {
    check_source_name(&a.name)?;
    let filters = args::filter_list(a.filters, a.or_groups);
    FilterGroups::parse(&filters)?;
    if a.keep && a.max.is_none() {
        return Err(Error::KeepWithoutMax);
    }
    let keyring = match &a.keyring {
        Some(k) => {
            let abs = std::fs::canonicalize(k).with_path("find keyring", k)?;
            streamvault::openpgp::Keyring::open(&abs).map_err(|e| Error::Keyring {
                path: abs.clone(),
                source: e,
            })?;
            Some(abs)
        }
        None => None,
    };
    let url = absolute_source(&a.url)?;
    let publish = ops_cmd::auto_publish(root, &a.auto)?;
    let v = Vault::open(root)?;
    v.catalog.add_source(&NewSource {
        name: a.name.clone(),
        url,
        path: a.path,
        keyring,
        max: a.max,
        keep: a.keep,
        no_verify: a.no_verify,
        mirrors: a.mirrors,
        filters,
    })?;
    if let Some(p) = &publish {
        v.catalog.set_auto_publish(&a.name, Some(p))?;
    }
    out!("added source {}", a.name);
    Ok(ExitStatus::Success)
}

/// A URL stays as typed; a local directory becomes absolute (cron runs elsewhere).
pub(super) fn absolute_source(url: &str) -> Result<String> {
    if url.contains("://") {
        return Ok(url.to_string());
    }
    let p = PathBuf::from(url);
    let abs = std::path::absolute(&p).with_path("resolve", &p)?;
    let mut s = abs.to_string_lossy().into_owned();
    if url.ends_with('/') && !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}

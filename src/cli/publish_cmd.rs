//! `publish`, `rollback`, `detach`, `status DEST` and `publications`, local (S3 forms in
//! [`super::s3_cmd`]), with their report lines.

use std::path::{Path, PathBuf};

use streamvault::catalog::PublicationAction;
use streamvault::error::Result;
use streamvault::vault::Vault;

use super::args::{MetadataArg, PublishArgs};
use super::maint_cmd::open_existing;
use super::output::{size, table, time};
use super::status::ExitStatus;
use super::{json_out, out};
use super::{ops_cmd, output, s3_cmd};
use streamvault::keys;
use streamvault::publish;

pub(super) fn publish(root: &Path, a: PublishArgs) -> Result<ExitStatus> {
    let s3 = publish::s3::S3Dest::parse(&a.dest)?;
    let mut vault = Vault::open(root)?;
    let mut inputs = a.snapshots.into_iter();
    let opts = publish::PublishOptions {
        snapshot: inputs.next().unwrap_or_default(),
        compose: inputs.collect(),
        dest: a.dest,
        mode: match a.metadata {
            MetadataArg::Verbatim => publish::MetadataMode::Verbatim,
            MetadataArg::Filtered => publish::MetadataMode::Filtered,
        },
        sign_key: a.sign_key,
        unsigned: a.unsigned,
        force: a.force,
        adopt: a.adopt,
        rebuild: a.rebuild,
        pre_adopted: None,
    };
    if let Some(d) = s3 {
        return s3_cmd::publish(&mut vault, &d, &opts, a.json);
    }
    let r = publish::publish(&mut vault, &opts)?;
    ops_cmd::write_metrics_from(&vault, a.metrics_file.clone())?;
    if a.json {
        return json_out(&r);
    }
    print_publish_report(&r);
    Ok(ExitStatus::Success)
}

/// The summary, then the signing key generated (first filtered publish) and the keyring MAAS
/// needs.
pub(super) fn print_publish_report(r: &publish::PublishReport) {
    print_publish_summary(r);
    for w in &r.warnings {
        eprintln!("streamvault: warning: {w}");
    }
    if r.key_created {
        out!(
            "generated the store's signing key `{}` for filtered metadata ({})",
            keys::DEFAULT_KEY,
            r.signer.as_deref().unwrap_or("-")
        );
    }
    if let Some(k) = &r.keyring {
        out!("keyring for MAAS (keyring_filename): {}", k.display());
    }
}

pub(super) fn print_publish_summary(r: &publish::PublishReport) {
    if !r.changed {
        out!(
            "{} already points at tree {} (snapshot {}); nothing to do",
            r.dest.display(),
            r.tree,
            r.snapshot
        );
        return;
    }
    let verb = verb(r.action);
    let what = if r.inputs.len() > 1 {
        format!(
            "the composition of {}",
            r.inputs
                .iter()
                .map(|i| format!("snapshot {} ({})", i.snapshot, i.source))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!("snapshot {} ({})", r.snapshot, r.source)
    };
    let mut line = format!(
        "{verb} {what} to {}: publication {}, tree {} ({}, {} files, {}, {} metadata{})",
        r.dest.display(),
        r.publication,
        r.tree,
        if r.tree_reused { "reused" } else { "built" },
        r.files,
        size(r.bytes.max(0) as u64),
        r.mode,
        r.signer
            .as_deref()
            .map(|s| format!(", signed by {s}"))
            .unwrap_or_default()
    );
    if let Some(p) = r.previous {
        line.push_str(&format!("; replaced publication {p}"));
    }
    if r.grace_files > 0 {
        line.push_str(&format!(
            "; {} grace links keep the previous tree's items reachable",
            r.grace_files
        ));
    }
    if r.missing > 0 {
        line.push_str(&format!(
            "; warning: {} listed items are missing (--force)",
            r.missing
        ));
    }
    out!("{line}");
    if let Some(a) = &r.adopted {
        out!(
            "adopted {} files ({}) as snapshot {}{}{}",
            a.files,
            size(a.bytes),
            a.snapshot,
            a.moved_to
                .as_ref()
                .map(|p| format!("; the old directory is now {}", p.display()))
                .unwrap_or_default(),
            if a.skipped > 0 {
                format!("; {} symlinks or special files skipped", a.skipped)
            } else {
                String::new()
            }
        );
    }
}

pub(super) fn rollback(
    root: &Path,
    dest: PathBuf,
    to: Option<String>,
    json: bool,
) -> Result<ExitStatus> {
    let s3 = publish::s3::S3Dest::parse(&dest)?;
    let mut vault = Vault::open(root)?;
    if let Some(d) = s3 {
        return s3_cmd::rollback(&mut vault, &d, to.as_deref(), json);
    }
    let r = publish::rollback(&mut vault, &publish::RollbackOptions { dest, to })?;
    if json {
        return json_out(&r);
    }
    print_publish_report(&r);
    Ok(ExitStatus::Success)
}

pub(super) fn detach(root: &Path, dest: &Path, dry_run: bool, json: bool) -> Result<ExitStatus> {
    if let Some(d) = publish::s3::S3Dest::parse(dest)? {
        return Err(publish::s3::S3Error::UnsupportedDest { dest: d.url() }.into());
    }
    let mut vault = open_existing(root)?;
    let r = if dry_run {
        publish::detach_plan(&vault, dest)?
    } else {
        publish::detach(&mut vault, dest)?
    };
    if json {
        return json_out(&r);
    }
    out!(
        "{} {} into a plain directory: {} files, {} directories, {} (tree {}, snapshot {}){}",
        if r.dry_run {
            "would detach"
        } else {
            "detached"
        },
        r.dest.display(),
        r.files,
        r.dirs,
        output::size(r.bytes),
        r.tree,
        r.snapshot,
        if r.dry_run || r.atomic {
            ""
        } else {
            "; not atomic: this filesystem cannot exchange two names"
        }
    );
    Ok(ExitStatus::Success)
}

pub(super) fn status(root: &Path, dest: &Path, json: bool) -> Result<ExitStatus> {
    let s3 = publish::s3::S3Dest::parse(dest)?;
    let vault = Vault::open_read_only(root)?;
    if let Some(d) = s3 {
        return s3_cmd::status(vault.as_ref(), &d, json);
    }
    let st = publish::status(vault.as_ref(), dest)?;
    if json {
        return status_json(&st, st.consistent());
    }
    out!("dest:        {}", st.dest.display());
    match &st.link {
        Some(l) => out!("link:        {}", l.display()),
        None => out!("link:        (none)"),
    }
    if let Some(t) = &st.tree {
        out!(
            "tree:        {} ({} metadata{}, {} files, {})",
            t.name,
            t.mode,
            t.signer
                .as_deref()
                .map(|s| format!(", signed by {s}"))
                .unwrap_or_default(),
            t.files,
            size(t.bytes.max(0) as u64)
        );
    }
    if st.inputs.len() > 1 {
        for (n, i) in st.inputs.iter().enumerate() {
            out!(
                "{}{} ({})",
                if n == 0 {
                    "composed:    snapshot "
                } else {
                    "             snapshot "
                },
                i.snapshot,
                i.source
            );
        }
    }
    if let Some(p) = &st.live {
        out!("snapshot:    {} ({})", p.snapshot_id, p.source);
        out!(
            "publication: {} ({} at {} by {})",
            p.id,
            p.action,
            time(p.published_at),
            p.published_by
        );
    }
    Ok(problems(&st.problems))
}

/// `status --json`: the status, exit 1 when DEST does not serve what it should.
pub(super) fn status_json<T: serde::Serialize>(st: &T, consistent: bool) -> Result<ExitStatus> {
    json_out(st)?;
    Ok(problems_status(consistent))
}

fn problems_status(consistent: bool) -> ExitStatus {
    if consistent {
        ExitStatus::Success
    } else {
        ExitStatus::Problems
    }
}

/// The `problem:` lines of a status; exit 1 when there is any.
pub(super) fn problems(list: &[String]) -> ExitStatus {
    for p in list {
        out!("problem:     {p}");
    }
    problems_status(list.is_empty())
}

pub(super) fn publications(root: &Path, dest: Option<&Path>, json: bool) -> Result<ExitStatus> {
    let s3 = dest.map(publish::s3::S3Dest::parse).transpose()?.flatten();
    let vault = Vault::open_read_only(root)?;
    if let Some(d) = s3 {
        return s3_cmd::publications(vault.as_ref(), &d, json);
    }
    if json {
        return json_out(&publish::publications_with_inputs(vault.as_ref(), dest)?);
    }
    let list = publish::publications(vault.as_ref(), dest)?;
    let rows = list.iter().map(|p| PublicationRow {
        id: p.id.get(),
        dest: &p.dest,
        snapshot: p.snapshot_id.get(),
        source: Some(&p.source),
        mode: p.mode.as_str(),
        action: p.action.as_str(),
        at: p.published_at,
        by: &p.published_by,
        state: if p.live {
            "live".to_string()
        } else {
            p.retired_at
                .map(|t| format!("retired {}", time(t)))
                .unwrap_or_else(|| "not live".to_string())
        },
    });
    print_publications(rows, true);
    Ok(ExitStatus::Success)
}

/// One row of the `publications` table (local or S3; S3 ones have no source column).
pub(super) struct PublicationRow<'a> {
    pub id: i64,
    pub dest: &'a str,
    pub snapshot: i64,
    pub source: Option<&'a str>,
    pub mode: &'a str,
    pub action: &'a str,
    pub at: i64,
    pub by: &'a str,
    pub state: String,
}

/// The table; `with_source`: local publications have a SOURCE column.
pub(super) fn print_publications<'a>(
    rows: impl Iterator<Item = PublicationRow<'a>>,
    with_source: bool,
) {
    let rows: Vec<Vec<String>> = rows
        .map(|r| {
            let mut row = vec![r.id.to_string(), r.dest.to_string(), r.snapshot.to_string()];
            row.extend(r.source.map(str::to_string));
            row.extend([
                r.mode.to_string(),
                r.action.to_string(),
                time(r.at),
                r.by.to_string(),
                r.state,
            ]);
            row
        })
        .collect();
    let mut header = vec!["ID", "DEST", "SNAPSHOT"];
    if with_source {
        header.push("SOURCE");
    }
    header.extend(["MODE", "ACTION", "WHEN", "BY", "STATE"]);
    table(&header, &rows);
}

/// `published` or `rolled back`.
pub(super) fn verb(action: PublicationAction) -> &'static str {
    if action == PublicationAction::Rollback {
        "rolled back"
    } else {
        "published"
    }
}

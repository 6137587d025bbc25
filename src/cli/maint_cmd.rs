//! `gc` and `verify`: maintenance of an existing store (never creates one).

use std::path::Path;

use streamvault::error::{Error, Result};
use streamvault::vault::Vault;

use super::args::{GcArgs, VerifyArgs};
use super::json_out;
use super::ops_cmd;
use super::output::{size, time};
use super::status::ExitStatus;
use streamvault::fetch::FetchOptions;
use streamvault::gc::{GcReport, KeepReason};
use streamvault::verify::VerifyReport;

/// A store that must exist already (maintenance never creates one).
pub(super) fn open_existing(root: &Path) -> Result<Vault> {
    if Vault::open_read_only(root)?.is_none() {
        return Err(Error::NoStore(root.to_path_buf()));
    }
    Vault::open(root)
}

pub(super) fn gc(root: &Path, a: GcArgs) -> Result<ExitStatus> {
    let mut vault = open_existing(root)?;
    let settings = streamvault::settings::StoreSettings::load(Some(&vault.catalog))?;
    let s3 = a.dest.as_deref().map(super::s3_cmd::s3_dest).transpose()?;
    let opts = streamvault::gc::GcOptions {
        keep_last: a.keep_last.unwrap_or(settings.keep_last),
        grace: match &a.grace {
            Some(g) => streamvault::settings::parse_duration(g)?,
            None => settings.grace,
        },
        wait: a.wait,
        orphan_slice: None,
    };
    if let Some(d) = s3 {
        return super::s3_cmd::gc(&vault, &d, &opts, a.dry_run, a.json);
    }
    let plan = streamvault::gc::gc_plan(&mut vault, &opts)?;
    let report = if a.dry_run {
        plan.report().clone()
    } else {
        streamvault::gc::gc(plan)?
    };
    ops_cmd::write_metrics_from(&vault, a.metrics_file.clone())?;
    if a.json {
        return json_out(&report);
    }
    print_gc_report(&report);
    Ok(ExitStatus::Success)
}

pub(super) fn verify(root: &Path, a: VerifyArgs) -> Result<ExitStatus> {
    if let Some(dest) = &a.dest {
        let d = super::s3_cmd::s3_dest(dest)?;
        let vault = open_existing(root)?;
        return super::s3_cmd::verify(&vault, &d, a.deep, a.repair, a.json);
    }
    let mut opts = streamvault::verify::VerifyOptions {
        wait: a.wait,
        fetch: FetchOptions {
            retries: a.retries,
            ..FetchOptions::default()
        },
        ..Default::default()
    };
    if let Some(j) = a.jobs {
        opts.jobs = usize::from(j);
    }
    let report = if a.repair {
        let mut vault = open_existing(root)?;
        let plan = streamvault::verify::repair_plan(&mut vault, &opts)?;
        streamvault::verify::repair(plan)?
    } else {
        let vault =
            Vault::open_read_only(root)?.ok_or_else(|| Error::NoStore(root.to_path_buf()))?;
        streamvault::verify::verify(&vault, &opts)?
    };
    if a.json {
        json_out(&report)?;
    } else {
        print_verify_report(&report);
    }
    // Orphans alone (what a killed run leaves and the next gc removes) are no damage: exit 0.
    Ok(if report.damage() > 0 {
        ExitStatus::Problems
    } else {
        ExitStatus::Success
    })
}

/// One line per kept tree, dropped snapshot and dropped tree, then the totals.
pub fn print_gc_report(r: &GcReport) {
    let (verb, sweep, would) = if r.dry_run {
        ("would drop", "would sweep", "would free")
    } else {
        ("dropped", "swept", "freed")
    };
    for t in &r.trees_kept {
        let snap = t
            .snapshot
            .map(|s| format!("snapshot {s}"))
            .unwrap_or_else(|| "no catalogue row".into());
        let dest = t.dest.as_deref().unwrap_or("-");
        let why = match t.reason {
            KeepReason::Published => format!("published on `{dest}`"),
            KeepReason::Linked => format!("`{dest}` links to it"),
            KeepReason::RetiredWithinGrace => format!(
                "retired from `{dest}` at {}, within the grace period",
                t.at.map(time).unwrap_or_default()
            ),
            KeepReason::NewWithinGrace => "created within the grace period".into(),
        };
        crate::cli::out!("keep tree {} ({snap}): {why}", t.name);
    }
    for s in &r.snapshots_dropped {
        crate::cli::out!(
            "{verb} snapshot {} ({}, {})",
            s.id,
            s.source,
            time(s.created_at)
        );
    }
    for t in &r.trees_dropped {
        crate::cli::out!("{verb} tree {t}");
    }
    for t in &r.orphan_trees {
        crate::cli::out!("{verb} tree directory {t} (no catalogue row)");
    }
    let tag = if r.dry_run { "gc --dry-run" } else { "gc" };
    crate::cli::out!(
        "{tag}: {verb} {} ({} kept), {}, {}, {} ({}); {} kept ({} within the grace period)",
        n(r.snapshots_dropped.len() as u64, "snapshot"),
        r.snapshots_kept,
        n(r.trees_dropped.len() as u64, "tree"),
        n(r.publications_dropped, "publication"),
        n(r.blobs_dropped, "blob"),
        size(r.blob_bytes_dropped),
        n(r.blobs_kept, "blob"),
        r.blobs_within_grace,
    );
    crate::cli::out!(
        "{tag}: {sweep} {}, {}, {}, {}; {would} {} ({} on disk) by unlinking {}",
        n(r.orphan_blobs, "orphan blob"),
        n(r.orphan_trees.len() as u64, "orphan tree"),
        n(r.tmp_entries, "tmp entry"),
        n(r.partial_files, "partial file"),
        size(r.freed_bytes),
        size(r.freed_disk_bytes),
        n(r.files_unlinked, "file"),
    );
}

/// `1 blob`, `2 blobs`, `3 tmp entries`.
fn n(count: u64, what: &str) -> String {
    if count == 1 {
        format!("1 {what}")
    } else if let Some(stem) = what.strip_suffix('y') {
        format!("{count} {stem}ies")
    } else {
        format!("{count} {what}s")
    }
}

/// One line per problem (with its repair outcome), then the totals.
pub fn print_verify_report(r: &VerifyReport) {
    for f in &r.findings {
        crate::cli::out!("{f}");
    }
    let checked = format!(
        "{} ({} hashed), {} in blobs/, {} ({})",
        n(r.blobs_checked, "blob"),
        size(r.bytes_hashed),
        n(r.blob_files_seen, "file"),
        n(r.trees_checked, "tree"),
        n(r.tree_files_checked, "file"),
    );
    let remaining = r.remaining();
    if r.findings.is_empty() {
        crate::cli::out!("verify: {checked}: clean");
    } else if r.repair {
        crate::cli::out!(
            "verify: {checked}: {}, {} repaired, {remaining} remain",
            n(r.findings.len() as u64, "problem"),
            r.repaired()
        );
    } else if r.damage() == 0 {
        crate::cli::out!(
            "verify: {checked}: no damage; {} (left by killed runs, harmless)",
            n(r.orphans() as u64, "orphan")
        );
    } else {
        crate::cli::out!("verify: {checked}: {}", n(remaining as u64, "problem"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plurals() {
        assert_eq!(super::n(1, "blob"), "1 blob");
        assert_eq!(super::n(0, "blob"), "0 blobs");
        assert_eq!(super::n(2, "tmp entry"), "2 tmp entries");
    }
}

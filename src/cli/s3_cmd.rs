//! The `s3://BUCKET/PREFIX` forms of `publish`, `rollback`, `status` and `publications` (the
//! library's `publish::s3`); the CLI calls these when DEST is an S3 URL.

use super::status::ExitStatus;

use streamvault::error::Result;
use streamvault::publish::{self, s3::S3Dest};
use streamvault::vault::Vault;

use super::json_out;
use super::output::{size, time};
use super::publish_cmd::{PublicationRow, print_publications, problems, status_json, verb};

pub(super) fn publish(
    vault: &mut Vault,
    d: &S3Dest,
    opts: &publish::PublishOptions,
    json: bool,
) -> Result<ExitStatus> {
    let r = publish::s3::publish(vault, d, opts)?;
    report(&r, json)
}

pub(super) fn rollback(
    vault: &mut Vault,
    d: &S3Dest,
    to: Option<&str>,
    json: bool,
) -> Result<ExitStatus> {
    let r = publish::s3::rollback(vault, d, to)?;
    report(&r, json)
}

pub(super) fn report(r: &publish::s3::S3Report, json: bool) -> Result<ExitStatus> {
    if json {
        return json_out(r);
    }
    // The MAAS rule warnings of the tree DEST serves, changed or not (as a local republish).
    for w in &r.warnings {
        eprintln!("streamvault: warning: {w}");
    }
    if !r.changed {
        out!(
            "{} already serves snapshot {} (publication {}); uploaded {} items, {} documents",
            r.dest,
            r.snapshot,
            r.publication,
            r.uploaded,
            r.documents_written
        );
        return Ok(ExitStatus::Success);
    }
    if r.key_created
        && let Some(s) = &r.signer
    {
        out!("generated the store's signing key `default` for filtered metadata ({s})");
    }
    let verb = verb(r.action);
    out!(
        "{verb} snapshot {} to {} (publication {}, {} metadata): {} items uploaded ({}), {} already present, {} documents written",
        r.snapshot,
        r.dest,
        r.publication,
        r.mode,
        r.uploaded,
        size(r.uploaded_bytes),
        r.skipped,
        r.documents_written
    );
    if let Some(k) = &r.keyring {
        out!("keyring for MAAS (keyring_filename): {}", k.display());
    }
    Ok(ExitStatus::Success)
}

pub(super) fn status(vault: Option<&Vault>, d: &S3Dest, json: bool) -> Result<ExitStatus> {
    let st = publish::s3::status(vault, d)?;
    if json {
        return status_json(&st, st.consistent());
    }
    out!("dest:        {}", st.dest);
    if let Some(p) = &st.live {
        out!("snapshot:    {}", p.snapshot_id);
        out!(
            "publication: {} ({} at {} by {}; {} metadata, {} files, {})",
            p.id,
            p.action,
            time(p.published_at),
            p.published_by,
            p.mode,
            p.files,
            size(p.bytes.max(0) as u64)
        );
    }
    Ok(problems(&st.problems))
}

pub(super) fn publications(vault: Option<&Vault>, d: &S3Dest, json: bool) -> Result<ExitStatus> {
    let list = publish::s3::publications(vault, d)?;
    if json {
        return json_out(&list);
    }
    print_publications(
        list.iter().map(|p| PublicationRow {
            id: p.id.get(),
            dest: &p.dest,
            snapshot: p.snapshot_id.get(),
            source: None,
            mode: p.mode.as_str(),
            action: p.action.as_str(),
            at: p.published_at,
            by: &p.published_by,
            state: p
                .retired_at
                .map(|t| format!("retired {}", time(t)))
                .unwrap_or_else(|| "live".to_string()),
        }),
        false,
    );
    Ok(ExitStatus::Success)
}

/// DEST of `gc`/`verify`: an `s3://` URL (a local DEST is collected and checked as part of the
/// store, without naming it).
pub(super) fn s3_dest(dest: &std::path::Path) -> Result<S3Dest> {
    match S3Dest::parse(dest)? {
        Some(d) => Ok(d),
        None => Err(publish::s3::S3Error::UnsupportedDest {
            dest: dest.display().to_string(),
        }
        .into()),
    }
}

pub(super) fn gc(
    vault: &Vault,
    d: &S3Dest,
    opts: &streamvault::gc::GcOptions,
    dry_run: bool,
    json: bool,
) -> Result<ExitStatus> {
    let r = if dry_run {
        streamvault::gc::s3::s3_plan(vault, d, opts)?
    } else {
        streamvault::gc::s3::s3_gc(vault, d, opts)?
    };
    if json {
        return json_out(&r);
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    for o in &r.deleted {
        out!("{verb} {} ({})", o.key, size(o.size));
    }
    out!(
        "gc {}: {} objects listed, {} kept by publications {:?} and the live index, {} within the grace period; {verb} {} objects ({})",
        r.dest,
        r.objects_listed,
        r.objects_kept,
        r.publications_kept,
        r.objects_within_grace,
        r.objects_deleted,
        size(r.bytes_deleted)
    );
    Ok(ExitStatus::Success)
}

pub(super) fn verify(
    vault: &Vault,
    d: &S3Dest,
    deep: bool,
    repair: bool,
    json: bool,
) -> Result<ExitStatus> {
    let settings = streamvault::settings::StoreSettings::load(Some(&vault.catalog))?;
    let opts = streamvault::verify::s3::S3VerifyOptions {
        deep,
        repair,
        keep: streamvault::gc::GcOptions::from_settings(&settings),
    };
    let r = streamvault::verify::s3::verify_s3(vault, d, &opts)?;
    if json {
        json_out(&r)?;
    } else {
        for f in &r.findings {
            out!("{f}");
        }
        let checked = format!(
            "{} objects of publications {:?}{}",
            r.objects_checked,
            r.publications,
            if r.deep {
                format!(" ({} hashed)", size(r.bytes_hashed))
            } else {
                String::new()
            }
        );
        if r.findings.is_empty() {
            out!("verify {}: {checked}: clean", r.dest);
        } else {
            out!(
                "verify {}: {checked}: {} problems, {} repaired, {} remain",
                r.dest,
                r.findings.len(),
                r.repaired(),
                r.remaining()
            );
        }
    }
    Ok(if r.remaining() > 0 {
        ExitStatus::Problems
    } else {
        ExitStatus::Success
    })
}

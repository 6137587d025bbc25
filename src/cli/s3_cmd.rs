//! The `s3://BUCKET/PREFIX` forms of `publish`, `rollback`, `status` and `publications` (the
//! library's `publish::s3`); the CLI calls these when DEST is an S3 URL.

use super::status::ExitStatus;

use streamvault::error::Result;
use streamvault::publish::{self, s3::S3Dest};
use streamvault::vault::Vault;

use super::json_out;
use super::output::{size, table, time};

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

fn report(r: &publish::s3::S3Report, json: bool) -> Result<ExitStatus> {
    if json {
        return json_out(r);
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
    let verb = if r.action == "rollback" {
        "rolled back"
    } else {
        "published"
    };
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
    Ok(ExitStatus::Success)
}

pub(super) fn status(vault: Option<&Vault>, d: &S3Dest, json: bool) -> Result<ExitStatus> {
    let st = publish::s3::status(vault, d)?;
    let code = if st.consistent() {
        ExitStatus::Success
    } else {
        ExitStatus::Problems
    };
    if json {
        json_out(&st)?;
        return Ok(code);
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
    for p in &st.problems {
        out!("problem:     {p}");
    }
    Ok(code)
}

pub(super) fn publications(vault: Option<&Vault>, d: &S3Dest, json: bool) -> Result<ExitStatus> {
    let list = publish::s3::publications(vault, d)?;
    if json {
        return json_out(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.dest.clone(),
                p.snapshot_id.to_string(),
                p.mode.clone(),
                p.action.clone(),
                time(p.published_at),
                p.published_by.clone(),
                p.retired_at
                    .map(|t| format!("retired {}", time(t)))
                    .unwrap_or_else(|| "live".to_string()),
            ]
        })
        .collect();
    table(
        &[
            "ID", "DEST", "SNAPSHOT", "MODE", "ACTION", "WHEN", "BY", "STATE",
        ],
        &rows,
    );
    Ok(ExitStatus::Success)
}

//! The metrics file: Prometheus text format for node_exporter's textfile collector, written
//! after `sync`, `mirror`, `publish` and `gc` when `--metrics-file PATH` (or the store setting
//! `metrics-file`) names one. Written whole to a temp file beside it and renamed over it, so
//! the collector never reads half a file.
//!
//! Families (all gauges): per source `streamvault_source_last_attempt_timestamp_seconds`,
//! `…_last_success_timestamp_seconds`, `…_last_result{result=…}` (1 for the last result),
//! `…_fetched_bytes`, `…_items`, `…_snapshot_id` (of the last run); per dest
//! `streamvault_dest_snapshot_id`, `streamvault_dest_published_timestamp_seconds`; store
//! `streamvault_store_bytes`, `streamvault_store_blobs`; `streamvault_gc_freed_bytes` and
//! `streamvault_gc_last_run_timestamp_seconds` of the last collection.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::catalog::Catalog;
use crate::error::{IoResultExt, Result};

/// Where the last collection's figures are kept between runs (the `settings` table, under
/// keys `config` does not accept).
const GC_FREED: &str = "state.gc-freed-bytes";
const GC_AT: &str = "state.gc-at";

/// Remember what a collection freed, for the next metrics file.
pub(crate) fn record_gc(cat: &Catalog, freed_bytes: u64) -> Result<()> {
    // Figures for the metrics file only: a power cut that loses them loses one gc's figures,
    // so their commits do not wait for the WAL's fsync (two of them after every automatic gc).
    cat.unsynced(|c| {
        c.set_setting(GC_FREED, &freed_bytes.to_string())?;
        c.set_setting(GC_AT, &crate::host::now().to_string())
    })
}

/// Prometheus label value escaping: backslash, double quote, newline.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The text of the metrics file.
pub(crate) fn render(cat: &Catalog) -> Result<String> {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
    };
    let runs = cat.last_runs()?;
    family(
        &mut o,
        "streamvault_source_last_attempt_timestamp_seconds",
        "Start of the last sync or mirror run of the source.",
    );
    for r in &runs {
        let _ = writeln!(
            o,
            "streamvault_source_last_attempt_timestamp_seconds{{source=\"{}\"}} {}",
            label(&r.source),
            r.started_at
        );
    }
    family(
        &mut o,
        "streamvault_source_last_success_timestamp_seconds",
        "End of the last successful run of the source.",
    );
    for r in &runs {
        if let Some(t) = cat.last_success(&r.source)? {
            let _ = writeln!(
                o,
                "streamvault_source_last_success_timestamp_seconds{{source=\"{}\"}} {t}",
                label(&r.source)
            );
        }
    }
    family(
        &mut o,
        "streamvault_source_last_result",
        "1 for the result of the last run (snapshot, unchanged, failed, running).",
    );
    for r in &runs {
        for res in crate::catalog::RunResult::ALL {
            let _ = writeln!(
                o,
                "streamvault_source_last_result{{source=\"{}\",result=\"{res}\"}} {}",
                label(&r.source),
                u8::from(r.result == res)
            );
        }
    }
    for (name, help, f) in [
        (
            "streamvault_source_fetched_bytes",
            "Bytes downloaded by the last run.",
            (|r: &crate::catalog::Run| Some(r.fetched_bytes))
                as fn(&crate::catalog::Run) -> Option<i64>,
        ),
        (
            "streamvault_source_items",
            "Items in the snapshot of the last run.",
            |r| Some(r.items),
        ),
        (
            "streamvault_source_snapshot_id",
            "Snapshot made or confirmed by the last run.",
            |r| r.snapshot.map(|s| s.get()),
        ),
    ] {
        family(&mut o, name, help);
        for r in &runs {
            if let Some(v) = f(r) {
                let _ = writeln!(o, "{name}{{source=\"{}\"}} {v}", label(&r.source));
            }
        }
    }
    let live = cat.live_publications()?;
    family(
        &mut o,
        "streamvault_dest_snapshot_id",
        "Snapshot live on the published dest.",
    );
    for (dest, snap, _) in &live {
        let _ = writeln!(
            o,
            "streamvault_dest_snapshot_id{{dest=\"{}\"}} {snap}",
            label(dest)
        );
    }
    family(
        &mut o,
        "streamvault_dest_published_timestamp_seconds",
        "When the live publication of the dest was made.",
    );
    for (dest, _, at) in &live {
        let _ = writeln!(
            o,
            "streamvault_dest_published_timestamp_seconds{{dest=\"{}\"}} {at}",
            label(dest)
        );
    }
    let (blobs, bytes) = cat.blob_totals()?;
    family(
        &mut o,
        "streamvault_store_bytes",
        "Sum of the sizes of the stored blobs.",
    );
    let _ = writeln!(o, "streamvault_store_bytes {bytes}");
    family(&mut o, "streamvault_store_blobs", "Number of stored blobs.");
    let _ = writeln!(o, "streamvault_store_blobs {blobs}");
    family(
        &mut o,
        "streamvault_gc_freed_bytes",
        "Bytes freed by the last collection (gc or automatic).",
    );
    let freed = cat.setting(GC_FREED)?.unwrap_or_else(|| "0".into());
    let _ = writeln!(o, "streamvault_gc_freed_bytes {freed}");
    if let Some(at) = cat.setting(GC_AT)? {
        family(
            &mut o,
            "streamvault_gc_last_run_timestamp_seconds",
            "When the last collection ran.",
        );
        let _ = writeln!(o, "streamvault_gc_last_run_timestamp_seconds {at}");
    }
    Ok(o)
}

/// Write the metrics file atomically (temp file in the same directory, fsync, rename).
pub fn write(cat: &Catalog, path: &Path) -> Result<()> {
    let text = render(cat)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".streamvault-metrics.")
        .tempfile_in(dir)
        .with_path("create a temp file in", dir)?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_path("write", tmp.path())?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_path("rename into place", path)?;
    Ok(())
}

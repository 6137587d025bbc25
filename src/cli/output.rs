//! Everything the CLI prints: the one-line error, tables, sizes and dates, the progress bar.
//! Data goes to stdout, progress and errors to stderr.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use streamvault::error::Error;
use streamvault::escape;
use streamvault::fetch::Progress;
use streamvault::gc::{GcReport, KeepReason};
use streamvault::sync::SyncEvents;
use streamvault::verify::VerifyReport;

/// `streamvault: error: <msg>: <cause>: …` and an optional `hint:` line (invariant 7): exactly
/// these lines, control characters from metadata escaped so that no line can be forged.
pub fn print_error(err: &Error) {
    error_lines(&streamvault::sync::error_line(err), err.hint().as_deref());
}

/// [`print_error`] for one source of several (`sync --all`): `streamvault: error: NAME: …`.
pub fn print_error_in(name: &str, err: &Error) {
    error_lines(
        &format!("{name}: {}", streamvault::sync::error_line(err)),
        err.hint().as_deref(),
    );
}

/// The one place that writes `streamvault: error:` (and its `hint:`) to stderr.
pub fn error_lines(msg: &str, hint: Option<&str>) {
    use std::io::Write as _;
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "streamvault: error: {}", escape::line(msg));
    if let Some(h) = hint {
        let _ = writeln!(e, "hint: {}", escape::line(h));
    }
}

/// `1.5 MiB` (the library's one size format, [`streamvault::space::size`]).
pub fn size(n: u64) -> String {
    streamvault::space::size(n)
}

/// `2026-11-25 04:07:08Z` from unix seconds (UTC, proleptic Gregorian).
pub fn time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Print rows as aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape::line(c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        crate::cli::out!("{}", s.trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// A byte progress bar on a terminal; silent otherwise (cron gets the summary line only).
pub struct SyncBar {
    bar: Option<ProgressBar>,
    verbose: u8,
    retries: Mutex<u64>,
}

impl SyncBar {
    pub fn new(label: &str, verbose: u8) -> SyncBar {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            b
        });
        SyncBar {
            bar,
            verbose,
            retries: Mutex::new(0),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn note(&self, msg: String) {
        let msg = escape::line(&msg).into_owned();
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }
}

impl Progress for SyncBar {
    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn retry(&self, url: &str, attempt: u32, error: &dyn std::fmt::Display) {
        if let Ok(mut r) = self.retries.lock() {
            *r += 1;
        }
        if self.verbose > 0 {
            self.note(format!("retry {attempt} of `{url}`: {error}"));
        }
    }
    fn restart(&self, url: &str) {
        if self.verbose > 0 {
            self.note(format!(
                "restarting `{url}` from zero (server ignored Range)"
            ));
        }
    }
}

impl SyncEvents for SyncBar {
    fn planned(&self, fetch_items: usize, fetch_bytes: u64, _reused: usize) {
        if let Some(b) = &self.bar {
            b.set_length(fetch_bytes);
            if fetch_items == 0 {
                b.finish_and_clear();
            }
        }
    }
    fn downloaded(&self, path: &str, size_: u64) {
        if self.verbose > 1 {
            self.note(format!("fetched {path} ({})", size(size_)));
        }
    }
}

/// `sstream-mirror --progress`: a byte bar on a terminal; otherwise one line per finished file,
/// `=> <path> [<size>] <pct>%` (pct of the planned bytes done before it), as the python tool.
/// Without `--progress`: silent.
pub struct MirrorProgress {
    bar: Option<SyncBar>,
    lines: bool,
    total: Mutex<(u64, u64)>,
}

impl MirrorProgress {
    pub fn new(progress: bool) -> MirrorProgress {
        let terminal = std::io::stderr().is_terminal();
        MirrorProgress {
            bar: (progress && terminal).then(|| SyncBar::new("mirror", 0)),
            lines: progress && !terminal,
            total: Mutex::new((0, 0)),
        }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

impl Progress for MirrorProgress {
    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.bytes(n);
        }
    }
}

impl SyncEvents for MirrorProgress {
    fn planned(&self, fetch_items: usize, fetch_bytes: u64, reused: usize) {
        if let Some(b) = &self.bar {
            b.planned(fetch_items, fetch_bytes, reused);
        }
        if let Ok(mut t) = self.total.lock() {
            t.1 = fetch_bytes;
        }
    }
    fn downloaded(&self, path: &str, size_: u64) {
        if !self.lines {
            return;
        }
        let pct = match self.total.lock() {
            Ok(mut t) => {
                let pct = (t.0 * 100).checked_div(t.1).unwrap_or(0);
                t.0 += size_;
                pct
            }
            Err(_) => 0,
        };
        eprintln!("=> {} [{size_}] {pct:2}%", escape::Escaped(path));
    }
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
    fn time_format() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::time(1_764_043_628), "2025-11-25 04:07:08Z");
    }
    #[test]
    fn plurals() {
        assert_eq!(super::n(1, "blob"), "1 blob");
        assert_eq!(super::n(0, "blob"), "0 blobs");
        assert_eq!(super::n(2, "tmp entry"), "2 tmp entries");
    }
    #[test]
    fn size_format() {
        assert_eq!(super::size(10), "10 B");
        assert_eq!(super::size(1536), "1.5 KiB");
    }
}

//! `sync`: one or all sources, the auto-publish after each, retention and the metrics file
//! after all; its summary lines.

use std::path::Path;

use streamvault::error::{Error, Result};
use streamvault::vault::Vault;

use super::output::size;
use super::status::{self, ExitStatus};
use super::{json_out, out};
use std::sync::Arc;

use super::args::SyncArgs;
use super::publish_cmd::print_publish_report;
use super::{ops_cmd, quiet, runtime, runtime_single};
use std::io::IsTerminal;
use std::sync::Mutex;
use streamvault::fetch::{self, FetchOptions};
use streamvault::sync::{self, Outcome, SyncOptions};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use streamvault::escape;
use streamvault::fetch::Progress;
use streamvault::sync::SyncEvents;

pub(super) fn sync(root: &Path, a: SyncArgs, verbose: u8) -> Result<ExitStatus> {
    let limit_rate = a.limit_rate.as_deref().map(fetch::parse_rate).transpose()?;
    if !a.all && a.names.is_empty() {
        return Err(Error::NoSourceGiven);
    }
    let mut vault = if a.dry_run {
        Vault::open_read_only(root)?
            .ok_or_else(|| Error::UnknownSource(a.names.first().cloned().unwrap_or_default()))?
    } else {
        Vault::open(root)?
    };
    let sources = if a.all {
        vault.catalog.sources()?
    } else {
        a.names
            .iter()
            .map(|n| vault.catalog.source(n))
            .collect::<Result<Vec<_>>>()?
    };
    let opts = SyncOptions {
        fetch: FetchOptions {
            jobs: usize::from(a.jobs),
            retries: a.retries,
            stall_timeout: std::time::Duration::from_secs(a.stall_timeout.max(1)),
            limit_rate,
            speed_limit: fetch::parse_speed_limit(&a.speed_limit)?,
            segment_min: fetch::parse_speed_limit(&a.segment_min)?,
            speed_time: std::time::Duration::from_secs(a.speed_time),
            request_timeout: (a.request_timeout > 0)
                .then(|| std::time::Duration::from_secs(a.request_timeout)),
            ..FetchOptions::default()
        },
        dry_run: a.dry_run,
        wait: a.wait,
        allow_downgrade: a.allow_downgrade,
        ..SyncOptions::default()
    };
    let rt = if a.dry_run {
        runtime_single()?
    } else {
        runtime()?
    };
    let mut failed = 0;
    let mut first_error = None;
    let mut reports = Vec::new();
    for src in &sources {
        let bar = Arc::new(SyncBar::new(&src.name, verbose));
        // `--quiet`: no progress display either.
        let events: Arc<dyn streamvault::sync::SyncEvents> = if quiet() {
            Arc::new(streamvault::sync::Quiet)
        } else {
            bar.clone()
        };
        let res = rt.block_on(streamvault::unattended::sync_recorded(
            &mut vault, src, &opts, events,
        ));
        bar.finish();
        // Auto-publish (`source add … --publish DEST`) of a new snapshot: one flip.
        let res = res.and_then(|r| {
            if !a.dry_run
                && let Some(p) = streamvault::unattended::auto_publish(&mut vault, src, &r)?
                && !a.json
                && p.changed
            {
                print_publish_report(&p);
            }
            if !a.dry_run
                && let Some(p) = streamvault::unattended::auto_publish_s3(&mut vault, src, &r)?
                && !a.json
                && p.changed
            {
                super::s3_cmd::report(&p, false)?;
            }
            Ok(r)
        });
        match res {
            Ok(r) => {
                if !a.json {
                    print_sync_report(&r);
                }
                reports.push(r);
            }
            Err(e) => {
                failed += 1;
                if sources.len() == 1 {
                    first_error = Some(e);
                } else {
                    status::print_error_in(&src.name, &e);
                }
            }
        }
    }
    if !a.dry_run {
        if !reports.is_empty() {
            ops_cmd::auto_collect(&mut vault, quiet() || a.json);
        }
        if let Err(e) = ops_cmd::write_metrics_from(&vault, a.metrics_file.clone()) {
            status::print_error(&e);
            failed += 1;
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if a.json {
        json_out(&reports)?;
    }
    // The process ends next: a dry run's report (a line per download, a million for a
    // million-item stream) is left to the exit instead of being freed one string at a time.
    if a.dry_run {
        std::mem::forget(reports);
    }
    Ok(if failed > 0 {
        ExitStatus::Error
    } else {
        ExitStatus::Success
    })
}

/// The `+ PATH SIZE` lines of a dry run, as `out!` writes them but through one buffer: a
/// million-download plan was a million `write(2)` calls (issue 13 item 5). Only the path can
/// need escaping (the rest is ASCII), so each part is written as it is, no line built first.
fn print_plan_lines(r: &sync::SyncReport) {
    use std::io::Write as _;
    if quiet() {
        return;
    }
    let mut o = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = r.plan.iter().try_for_each(|p| {
        o.write_all(b"+ ")?;
        o.write_all(streamvault::escape::line(&p.path).as_bytes())?;
        o.write_all(b" ")?;
        o.write_all(size(p.size).as_bytes())?;
        o.write_all(b"\n")
    });
    if let Err(e) = written.and_then(|()| o.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

pub(super) fn print_sync_report(r: &sync::SyncReport) {
    let secs = r.duration_ms as f64 / 1000.0;
    match r.outcome {
        Outcome::DryRun => {
            print_plan_lines(r);
            out!(
                "{}: would fetch {} files ({}); {} items ({}) already in the store; {} items in the selection",
                r.source,
                r.fetched_items,
                size(r.fetched_bytes),
                r.reused_items,
                size(r.reused_bytes),
                r.items
            );
        }
        Outcome::Unchanged(id) => out!(
            "{}: unchanged (latest snapshot {id}); {} documents, {} requests in {secs:.1} s",
            r.source,
            r.documents,
            r.requests
        ),
        Outcome::Snapshot(id) => out!(
            "{}: snapshot {id}: {} items ({}), fetched {} files ({}), reused {} ({}); {} requests, {} retries in {secs:.1} s{}",
            r.source,
            r.items,
            size(r.bytes),
            r.fetched_items,
            size(r.fetched_bytes),
            r.reused_items,
            size(r.reused_bytes),
            r.requests,
            r.retries,
            r.signer
                .as_deref()
                .map(|s| format!("; signed by {s}"))
                .unwrap_or_default()
        ),
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

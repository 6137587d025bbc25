//! The `sstream-mirror` edge: its own argument parser (argparse-compatible), its exit codes
//! (2 usage, 1 any other error) and its stderr output; the work, with every decision of the
//! run, is [`streamvault::mirror::run`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use streamvault::error::{Error, Result};
use streamvault::mirror::{self, MirrorArgs, Parsed, args::HELP, args::USAGE};
use streamvault::sync::SyncEvents;

use super::status::{self, ExitStatus};
use std::io::IsTerminal;
use std::sync::Mutex;

use streamvault::escape;
use streamvault::fetch::Progress;

use super::sync_cmd::SyncBar;

/// `streamvault [--root DIR] [-v] mirror ARGS…` → `(root, ARGS)`.
pub fn split_subcommand(argv: &[String]) -> Option<(Option<PathBuf>, &[String])> {
    let mut root = None;
    let mut i = 1;
    while let Some(a) = argv.get(i) {
        if a == "mirror" {
            return Some((root, argv.get(i + 1..).unwrap_or_default()));
        }
        if a == "--root" {
            root = argv.get(i + 1).map(PathBuf::from);
            i += 2;
        } else if let Some(r) = a.strip_prefix("--root=") {
            root = Some(PathBuf::from(r));
            i += 1;
        } else if a.starts_with("-v") || a == "--verbose" {
            i += 1;
        } else {
            return None;
        }
    }
    None
}

fn default_root() -> PathBuf {
    std::env::var_os("STREAMVAULT_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(streamvault::store::DEFAULT_ROOT))
}

pub fn main(argv: &[String], root: Option<PathBuf>) -> ExitStatus {
    let a = match mirror::args::parse(argv) {
        Ok(Parsed::Run(a)) => *a,
        Ok(Parsed::Help) => {
            println!("{USAGE}\n{HELP}");
            return ExitStatus::Success;
        }
        Err(e) => {
            status::error_lines(&e.to_string(), Some(USAGE));
            return ExitStatus::Usage;
        }
    };
    let root = a.root.clone().or(root).unwrap_or_else(default_root);
    match run(&a, &root) {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            status::print_error(&e);
            ExitStatus::MirrorFailed
        }
    }
}

/// Where log records go: `--log-file` (truncated, as Python's `FileType('w')`) or stderr.
fn log_sink(a: &MirrorArgs) -> Result<Box<dyn Write>> {
    Ok(match &a.log_file {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|source| Error::Io {
            op: "create log file",
            path: p.clone(),
            source,
        })?),
        None => Box::new(std::io::stderr()),
    })
}

fn run(a: &MirrorArgs, root: &Path) -> Result<()> {
    mirror::check(a)?;
    let mut log = log_sink(a)?;
    let progress = Arc::new(MirrorProgress::new(a.progress));
    let events: Arc<dyn SyncEvents> = progress.clone();
    // A dry run downloads nothing: one thread is all it needs.
    let rt = if a.dry_run {
        super::runtime_single()?
    } else {
        super::runtime()?
    };
    let mut print_plan = |r: &streamvault::sync::SyncReport| {
        progress.finish();
        if a.verbose > 0 {
            mirror::write_lines(&mut log, &mirror::verbose_lines(&r.changes));
        }
        mirror::write_lines(&mut std::io::stderr(), &mirror::plan_lines(&r.changes));
    };
    let report = rt.block_on(mirror::run(a, root, events, &mut print_plan));
    progress.finish();
    let report = report?;
    if let Some(gc) = &report.gc {
        super::ops_cmd::print_auto_gc(gc, true);
    }
    if report.published {
        // The metrics file (store setting).
        super::ops_cmd::write_metrics(root, None)?;
    }
    Ok(())
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

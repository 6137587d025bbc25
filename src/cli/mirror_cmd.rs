//! The `sstream-mirror` edge: its own argument parser (argparse-compatible), its exit codes
//! (2 usage, 1 any other error) and its stderr output; the work is `streamvault::mirror`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use streamvault::error::{Error, Result};
use streamvault::mirror::{self, MirrorArgs, Parsed, args::HELP, args::USAGE};
use streamvault::publish::{self, MetadataMode, PublishOptions};
use streamvault::sync::{Outcome, SyncEvents};
use streamvault::vault::Vault;

use super::output;

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
        .unwrap_or_else(|| PathBuf::from("/var/lib/streamvault"))
}

pub fn main(argv: &[String], root: Option<PathBuf>) -> ExitCode {
    let a = match mirror::args::parse(argv) {
        Ok(Parsed::Run(a)) => *a,
        Ok(Parsed::Help) => {
            println!("{USAGE}\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            output::error_lines(&e.to_string(), Some(USAGE));
            return ExitCode::from(2);
        }
    };
    let root = a.root.clone().or(root).unwrap_or_else(default_root);
    match run(&a, &root) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(1)
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
    let output_d = std::path::absolute(&a.output_d).map_err(|source| Error::Io {
        op: "resolve",
        path: a.output_d.clone(),
        source,
    })?;
    // A dry run never creates the store: on a fresh root it plans against an empty scratch store.
    let scratch;
    let store_root = if a.dry_run && !root.join("catalog.db").exists() {
        scratch = tempfile::tempdir().map_err(|source| Error::Io {
            op: "create temp dir",
            path: std::env::temp_dir(),
            source,
        })?;
        scratch.path().to_path_buf()
    } else {
        root.to_path_buf()
    };
    let mut vault = Vault::open(&store_root)?;
    // First run over a directory an earlier sstream-mirror filled: import its files by content
    // before the sync, so that nothing that verifies is downloaded again.
    let pre_adopted = if !a.dry_run && is_real_dir(&output_d) {
        let adopted = publish::adopt_import(&mut vault, &output_d)?;
        // ... and its `.data/` state: what python recorded as mirrored is our "previous".
        mirror::seed_from_data(&mut vault, a, &output_d)?;
        Some(adopted)
    } else {
        None
    };
    let progress = Arc::new(output::MirrorProgress::new(a.progress));
    let events: Arc<dyn SyncEvents> = progress.clone();
    let rt = if a.dry_run {
        super::runtime_single()?
    } else {
        super::runtime()?
    };
    let report = rt.block_on(mirror::sync(&mut vault, a, &output_d, events));
    progress.finish();
    let report = report?;
    if a.verbose > 0 {
        mirror::write_lines(&mut log, &mirror::verbose_lines(&report.changes));
    }
    mirror::write_lines(&mut std::io::stderr(), &mirror::plan_lines(&report.changes));
    if a.dry_run {
        return Ok(());
    }
    let snapshot = match report.outcome {
        Outcome::Snapshot(id) | Outcome::Unchanged(id) => id,
        Outcome::DryRun => return Ok(()),
    };
    if let Some(parent) = output_d.parent() {
        // sstream-mirror creates OUTPUT_DIR and its parents.
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            op: "create directory",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    // Verbatim upstream metadata, as sstream-mirror writes it: it lists what the filters left
    // out, which is what the python tool's mirrors do too (hence `force`).
    publish::publish(
        &mut vault,
        &PublishOptions {
            snapshot: snapshot.to_string(),
            dest: output_d.clone(),
            mode: MetadataMode::Verbatim,
            force: true,
            adopt: pre_adopted.is_some(),
            pre_adopted,
            ..PublishOptions::default()
        },
    )?;
    // Retention by itself (never fails the run), then the metrics file (store setting).
    super::ops_cmd::auto_collect(&mut vault, true);
    drop(vault);
    super::ops_cmd::write_metrics(&store_root, None)?;
    Ok(())
}

/// A directory that is not a symlink (a published OUTPUT_DIR is a symlink to a tree).
fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

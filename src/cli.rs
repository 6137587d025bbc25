//! The CLI edge: parse arguments (clap), call the library, print results, map errors to one
//! line and an exit status ([`status::ExitStatus`]: 0 ok, 1 problems found, 2 error). This file
//! is dispatch only: each command (or group) is `cli/<command>.rs` with its printing beside it;
//! nothing here decides behaviour.

mod args;
mod help_cmd;
mod key_cmd;
mod maint_cmd;
mod mirror_cmd;
mod ops_cmd;
mod output;
mod publish_cmd;
mod serve_cmd;
mod snapshot_cmd;
mod source_cmd;
mod status;
mod sync_cmd;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use args::{Cli, Command, SnapshotCommand};
use status::ExitStatus;
use streamvault::error::{Error, Result};

/// `-q/--quiet`: nothing on stdout on success (problems still go to stderr).
pub(crate) static QUIET: AtomicBool = AtomicBool::new(false);

pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Write a line of human output to stdout (nothing under `--quiet`), control characters from
/// metadata escaped ([`streamvault::escape`]); a closed pipe (`| head`) ends the program quietly
/// with status 0.
macro_rules! out {
    ($($arg:tt)*) => {{
        if !crate::cli::quiet() {
            let line = format!($($arg)*);
            crate::cli::out_exact(&streamvault::escape::line(&line));
        }
    }};
}
pub(crate) use out;

/// Write `text` and a newline to stdout exactly as given (JSON output); see [`out!`].
pub(crate) fn out_exact(text: &str) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    if let Err(e) = writeln!(o, "{text}")
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

mod s3_cmd;

pub fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // The binary answers to `sstream-mirror` (a symlink) and to `streamvault [--root DIR] mirror`.
    let invoked_as = argv
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    if invoked_as == "sstream-mirror" {
        return mirror_cmd::main(argv.get(1..).unwrap_or_default(), None).into();
    }
    if let Some((root, rest)) = mirror_cmd::split_subcommand(&argv) {
        return mirror_cmd::main(rest, root).into();
    }
    let matches = match <Cli as clap::CommandFactory>::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => return status::usage_error(&e).into(),
    };
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return status::usage_error(&e).into(),
    };
    args::regroup_or(&mut cli, &matches);
    QUIET.store(cli.quiet, Ordering::Relaxed);
    match run(cli) {
        Ok(code) => code.into(),
        Err(e) => status::fail(&e).into(),
    }
}

fn run(cli: Cli) -> Result<ExitStatus> {
    let root = cli.root.clone();
    match cli.command {
        Command::Source(cmd) => source_cmd::source(&root, cmd),
        Command::Sync(a) => sync_cmd::sync(&root, a, cli.verbose),
        Command::Snapshots { source, json } => {
            snapshot_cmd::snapshots(&root, source.as_deref(), json)
        }
        Command::Snapshot(SnapshotCommand::Show { id, items, json }) => {
            snapshot_cmd::snapshot_show(&root, &id, items, json)
        }
        Command::Diff { from, to, json } => snapshot_cmd::diff(&root, &from, &to, json),
        Command::Serve(a) => serve_cmd::serve(&root, a),
        // Handled before clap (see `main`); listed for `--help`.
        Command::Mirror { args } => Ok(mirror_cmd::main(&args, Some(root))),
        Command::Gc(a) => maint_cmd::gc(&root, a),
        Command::Verify(a) => maint_cmd::verify(&root, a),
        Command::Demo(a) => {
            let rt = runtime()?;
            streamvault::demo::run(&rt, a.dir.as_deref(), a.serve)?;
            Ok(ExitStatus::Success)
        }
        Command::Publish(a) => publish_cmd::publish(&root, a),
        Command::Rollback { dest, to, json } => publish_cmd::rollback(&root, dest, to, json),
        Command::Detach {
            dest,
            dry_run,
            json,
        } => publish_cmd::detach(&root, &dest, dry_run, json),
        Command::Status {
            dest: Some(dest),
            json,
        } => publish_cmd::status(&root, &dest, json),
        Command::Status { dest: None, json } => ops_cmd::status_overview(&root, json),
        Command::Config(cmd) => ops_cmd::config(&root, cmd),
        Command::Publications { dest, json } => {
            publish_cmd::publications(&root, dest.as_deref(), json)
        }
        Command::Key(cmd) => key_cmd::key(&root, cmd),
        Command::Completions { shell } => help_cmd::completions(shell),
        Command::Man { out_dir } => help_cmd::man(out_dir.as_deref()),
    }
}

/// A runtime without a thread pool, for work that downloads nothing (`--dry-run`).
pub(crate) fn runtime_single() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

fn json_out<T: serde::Serialize>(v: &T) -> Result<ExitStatus> {
    out_exact(&serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(ExitStatus::Success)
}

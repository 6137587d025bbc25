//! The command line, as clap derive types only: what was typed, validated for shape, no I/O.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// streamvault: a SimpleStreams mirror with a content-addressed store, immutable snapshots
/// and atomic publishing.
///
/// Exit status: 0 success; 1 the command ran but found problems; 2 error (usage, network,
/// signature, checksum, I/O, lock, database).
#[derive(Debug, Parser)]
#[command(name = "streamvault", version, about, long_about = None)]
pub struct Cli {
    /// Store root (catalogue, blobs, trees).
    #[arg(
        long,
        global = true,
        env = "STREAMVAULT_ROOT",
        default_value = "/var/lib/streamvault"
    )]
    pub root: PathBuf,

    /// More detail on errors and progress.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add, list, show or remove upstream sources.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Fetch sources and record a snapshot of each one that changed.
    Sync(SyncArgs),
    /// List snapshots (of one source, or all).
    Snapshots {
        /// Only this source's snapshots.
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one snapshot.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// What changed between two snapshots: products, versions and items added and removed.
    Diff {
        from: String,
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Build a demo stream, serve it on 127.0.0.1 and run the main job against it.
    Demo(DemoArgs),
    /// Drop old snapshots and trees, then delete the blobs nothing refers to any more.
    ///
    /// Keeps, per source, the last `--keep-last` snapshots; every tree live on a dest (by its
    /// publication row, or because the dest's symlink points at it); trees retired or created
    /// less than `--grace` ago; and blobs and partial downloads younger than `--grace`.
    /// Snapshots of removed sources are dropped unless a kept tree needs them.
    Gc(GcArgs),
    /// Re-hash every blob and check trees and the catalogue against each other.
    ///
    /// Prints one line per problem. Exit status 1 when problems remain, 0 when clean.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print what would be deleted and freed; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Snapshots kept per source, newest first.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: u32,
    /// Keep retired trees, new blobs and partial downloads this long: `24h`, `30m`, `7d`, `0`.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub grace: String,
    /// Wait for running syncs and publishes instead of exiting.
    #[arg(long)]
    pub wait: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Fix what can be fixed: re-fetch missing or corrupt blobs (corrupt ones are moved to
    /// `quarantine/` first), re-link tree files, remove files and directories without rows.
    #[arg(long)]
    pub repair: bool,
    /// Hashing threads (default: the number of CPUs).
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// Retries per request when re-fetching.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Wait for the store lock instead of exiting.
    #[arg(long)]
    pub wait: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Add a source: an upstream mirror URL plus what to take from it.
    Add(SourceAddArgs),
    /// List sources.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one source.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a source (its snapshots stay until gc).
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct SourceAddArgs {
    /// Name of the source (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Mirror URL (http(s)://, file:// or a local directory), or the URL of the start document.
    pub url: String,
    /// Keyring (binary or ASCII-armoured) to verify signed documents with.
    #[arg(long)]
    pub keyring: Option<PathBuf>,
    /// Start document relative to URL (default `streams/v1/index.sjson`).
    #[arg(long)]
    pub path: Option<String>,
    /// Keep at most N versions per product.
    #[arg(long = "max", value_name = "N")]
    pub max: Option<i64>,
    /// Keep versions that vanished upstream while within `--max`.
    #[arg(long)]
    pub keep: bool,
    /// Fallback mirror tried after a 404 (repeatable, tried in order).
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Do not check signatures (signed documents are still unwrapped).
    #[arg(long, short = 'U')]
    pub no_verify: bool,
    /// Item filters: KEY=VALUE, KEY!=VALUE, KEY~REGEX, KEY!~REGEX (all must match).
    pub filters: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Sources to sync.
    pub names: Vec<String>,
    /// Sync every source.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Parallel downloads.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Print what would be fetched; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Bandwidth limit for all downloads together, e.g. `500k`, `10M` (bytes per second).
    #[arg(long, value_name = "RATE")]
    pub limit_rate: Option<String>,
    /// Wait for a running sync of the same source instead of exiting.
    #[arg(long)]
    pub wait: bool,
    /// Seconds without a byte before a download is retried.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub stall_timeout: u64,
    /// Retries per request (connect errors, timeouts, 5xx, short bodies).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Show a snapshot (an id, or a source name for its latest).
    Show {
        id: String,
        /// List its items.
        #[arg(long)]
        items: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Working directory for the demo (default: a new temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep serving after the demo until interrupted.
    #[arg(long)]
    pub serve: bool,
}

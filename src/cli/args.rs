//! The command line, as clap derive types only: what was typed, validated for shape, no I/O.
//! Defaults come from the library ([`FetchOptions::default`], [`Limits::default`], its
//! `DEFAULT_*` constants), never repeated here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use streamvault::fetch::FetchOptions;
use streamvault::serve::Limits;

/// The library's fetch defaults (what `sync` flags default to).
fn fetch_defaults() -> FetchOptions {
    FetchOptions::default()
}

/// The library's server limits (what `serve` flags default to).
fn serve_limits() -> Limits {
    Limits::default()
}

/// `1024` → `1k`, `33554432` → `32M`: a byte count as the size flags are typed.
fn short_size(n: u64) -> String {
    for (unit, m) in [("G", 1u64 << 30), ("M", 1 << 20), ("k", 1 << 10)] {
        if n >= m && n.is_multiple_of(m) {
            return format!("{}{unit}", n / m);
        }
    }
    n.to_string()
}

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
        default_value = streamvault::store::DEFAULT_ROOT
    )]
    pub root: PathBuf,

    /// More detail on errors and progress.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// For cron: print nothing on success, one line per problem (on standard error).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

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
    /// Serve published directories (or any trees) over HTTP or HTTPS: GET, HEAD, Range, ETag,
    /// directory listings, `/-/status` and `/-/metrics`. SIGHUP reloads the TLS files and
    /// reopens the access log; SIGTERM stops after the requests in flight.
    Serve(ServeArgs),
    /// The `sstream-mirror` command line, unchanged: SOURCE OUTPUT_DIR [FILTER]… [--max N]
    /// [--keep] [--keyring K] [--path P] [--mirror URL]… [--dry-run] [--progress] [-U] [-v]…
    /// (also what the binary does when invoked as `sstream-mirror`).
    #[command(disable_help_flag = true)]
    Mirror {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build a demo stream, serve it on 127.0.0.1 and run the main job against it.
    Demo(DemoArgs),
    /// Publish a snapshot (or several, composed into one stream) to DEST, the directory a web
    /// server serves: DEST becomes a symbolic link to a tree of the store, replaced atomically.
    Publish(PublishArgs),
    /// Point DEST back at a retained tree (the previous publication, or `--to`), without
    /// rebuilding anything.
    Rollback {
        /// The published link.
        dest: PathBuf,
        /// `N` or `publication:N` (a publication of DEST), or `snapshot:N` (its newest
        /// publication of snapshot N); default: the publication before the live one.
        #[arg(long, value_name = "PUBLICATION|snapshot:N")]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Hand DEST over to another tool: replace the published link by a plain directory holding
    /// a copy of its tree (nothing in it links into the store).
    Detach {
        /// The published link.
        dest: PathBuf,
        /// Say what would be copied; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Without DEST: one screen for an admin (per source the last run and its result, per
    /// dest what is live, store size, what gc would free). With DEST: what DEST points at, and
    /// whether the catalogue agrees (exit 1 if not).
    Status {
        dest: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List publications (of DEST, or all).
    Publications {
        dest: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Signing keys for filtered metadata.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Drop old snapshots and trees, then delete the blobs nothing refers to any more.
    ///
    /// Keeps, per source, the last `--keep-last` snapshots; every tree live on a dest (by its
    /// publication row, or because the dest's symlink points at it); trees retired or created
    /// less than `--grace` ago; and blobs and partial downloads younger than `--grace`.
    /// Snapshots of removed sources are dropped unless a kept tree needs them.
    Gc(GcArgs),
    /// Store settings: `grace` (24h), `keep-last` (3), `auto-gc` (on), `reserve`
    /// (min(1 GiB, 2 % of the filesystem)), `metrics-file` (none).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Re-hash every blob and check trees and the catalogue against each other.
    ///
    /// Prints one line per problem. Exit status 1 when problems remain, 0 when clean.
    Verify(VerifyArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    ///
    /// bash: `streamvault completions bash > /etc/bash_completion.d/streamvault`;
    /// zsh: into a directory of `$fpath` as `_streamvault`;
    /// fish: `~/.config/fish/completions/streamvault.fish`.
    Completions {
        #[arg(value_enum)]
        shell: ShellArg,
    },
    /// Print the manual page (roff) to stdout, or write `streamvault.1` and one page per
    /// subcommand (`streamvault-sync.1`, …) into a directory.
    Man {
        /// Write the pages into this directory (created if missing) instead of stdout.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// Shells `streamvault completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

/// `streamvault serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The directory served at `/`; a symlink (a published DEST) is resolved on every request.
    pub dest: Option<PathBuf>,
    /// Serve another tree under a URL prefix: `--mount /maas/stable=DEST` (repeatable).
    #[arg(long = "mount", value_name = "PREFIX=DEST")]
    pub mounts: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// TLS certificate chain (PEM); serve HTTPS. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM). Needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Over TLS, offer HTTP/2 (ALPN `h2`, then `http/1.1`).
    #[arg(long, requires = "tls_cert")]
    pub http2: bool,
    /// Open connections at most [default: below the open-file limit, which serve raises to
    /// its hard limit]; when full, idle connections are closed first, then new ones get 503.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Request line plus headers, in bytes (at least 8192); larger gets 431.
    #[arg(long, value_name = "BYTES", default_value_t = serve_limits().max_header_bytes)]
    pub max_header_bytes: usize,
    /// Seconds a client has to send its request headers.
    #[arg(long, value_name = "SECS", default_value_t = serve_limits().header_timeout.as_secs())]
    pub header_timeout: u64,
    /// Seconds a connection may stay open with no request in flight.
    #[arg(long, value_name = "SECS", default_value_t = serve_limits().idle_timeout.as_secs())]
    pub idle_timeout: u64,
    /// Write an access log in the combined format to FILE (reopened on SIGHUP), or `-` for
    /// stdout. Off by default.
    #[arg(long, value_name = "FILE|-")]
    pub access_log: Option<String>,
}

/// Which metadata a published tree serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetadataArg {
    /// The upstream documents byte for byte (as `sstream-mirror` publishes them).
    Verbatim,
    /// Rewritten to list exactly what the snapshot holds (`.json`; also `.sjson` with `--sign-key`).
    Filtered,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// A snapshot id, or a source name for its latest snapshot; several compose one stream
    /// (one index over every input's products, e.g. MAAS images + bootloaders + custom images).
    #[arg(required = true, num_args = 1.., value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// The path the web server serves (its directory must exist).
    #[arg(required = true)]
    pub dest: PathBuf,
    /// Metadata to serve.
    #[arg(long, value_enum, default_value = "verbatim")]
    pub metadata: MetadataArg,
    /// Clearsign filtered metadata with this store key (`streamvault key generate`); default:
    /// the store's key `default`, generated on first use.
    #[arg(long, value_name = "NAME")]
    pub sign_key: Option<String>,
    /// Filtered metadata without signatures (`.json` only; MAAS then needs the URL
    /// `…/streams/v1/index.json`, see the README).
    #[arg(long, conflicts_with = "sign_key")]
    pub unsigned: bool,
    /// Publish even if the metadata lists items the snapshot does not hold.
    #[arg(long)]
    pub force: bool,
    /// DEST may be a real directory (e.g. an sstream-mirror mirror): import its files into the
    /// store, move it to `DEST.streamvault-adopted-<time>` and put the link in its place (this
    /// one replacement is two renames, not atomic).
    #[arg(long)]
    pub adopt: bool,
    /// Build a new tree even if one exists for this snapshot, metadata and key.
    #[arg(long)]
    pub rebuild: bool,
    #[arg(long)]
    pub json: bool,
    /// Write Prometheus metrics to this file afterwards (default: the `metrics-file` setting).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Collect an S3 DEST (`s3://BUCKET/PREFIX`) instead of the store: delete the objects no
    /// kept publication lists.
    #[arg(value_name = "S3_DEST")]
    pub dest: Option<PathBuf>,
    /// Print what would be deleted and freed; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Snapshots kept per source, newest first (default: the `keep-last` setting, 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,
    /// Keep retired trees, new blobs and partial downloads this long: `24h`, `30m`, `7d`, `0`
    /// (default: `STREAMVAULT_GRACE`, else the `grace` setting, else 24h).
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<String>,
    /// Write Prometheus metrics to this file afterwards (default: the `metrics-file` setting).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Wait for running syncs and publishes instead of exiting.
    #[arg(long)]
    pub wait: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate an Ed25519 signing key (OpenPGP v4) stored as `keys/NAME.key` (mode 0600).
    Generate {
        #[arg(long, default_value = streamvault::keys::DEFAULT_KEY)]
        name: String,
        /// User ID of the key (default `streamvault NAME <streamvault@HOST>`).
        #[arg(long)]
        user_id: Option<String>,
    },
    /// List the signing keys.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Export a key's public keyring (binary: MAAS `keyring_filename`/`keyring_data`, `gpgv`).
    Export {
        name: String,
        #[arg(long, conflicts_with = "armor", required_unless_present = "armor")]
        binary: bool,
        #[arg(long)]
        armor: bool,
        /// Write to FILE instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check an S3 DEST (`s3://BUCKET/PREFIX`) instead of the store: every object its live and
    /// retained publications list.
    #[arg(value_name = "S3_DEST")]
    pub dest: Option<PathBuf>,
    /// With an S3 DEST: download every object and check its content, not only its size.
    #[arg(long, requires = "dest")]
    pub deep: bool,
    /// Fix what can be fixed: re-fetch missing or corrupt blobs (corrupt ones are moved to
    /// `quarantine/` first), re-link tree files, remove files and directories without rows.
    #[arg(long)]
    pub repair: bool,
    /// Hashing threads (default: the number of CPUs).
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// Retries per request when re-fetching.
    #[arg(long, default_value_t = streamvault::verify::DEFAULT_REFETCH_RETRIES)]
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
    /// Change a source's auto-publish target.
    Edit(SourceEditArgs),
    /// Remove a source (its snapshots stay until gc).
    Remove { name: String },
}

/// Auto-publish: a sync that makes a new snapshot publishes it to DEST.
#[derive(Debug, Args)]
pub struct AutoPublishArgs {
    /// Publish every new snapshot of this source to DEST, a directory or `s3://BUCKET/PREFIX`
    /// (one atomic flip per sync).
    #[arg(long, value_name = "DEST")]
    pub publish: Option<PathBuf>,
    /// Metadata the auto-publication serves.
    #[arg(long, value_enum, requires = "publish")]
    pub metadata: Option<MetadataArg>,
    /// Clearsign filtered metadata with this store key.
    #[arg(long, value_name = "NAME", requires = "publish")]
    pub sign_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct SourceEditArgs {
    pub name: String,
    #[command(flatten)]
    pub auto: AutoPublishArgs,
    /// Stop auto-publishing this source.
    #[arg(long, conflicts_with = "publish")]
    pub no_publish: bool,
    /// Replace the source's filters with the FILTERs given after the name and `--or` groups
    /// (none at all removes every filter). Takes effect at the next sync.
    #[arg(long)]
    pub set_filters: bool,
    /// The new first filter group, with `--set-filters`.
    #[arg(requires = "set_filters")]
    pub filters: Vec<String>,
    /// Another new filter group, with `--set-filters`. Repeatable.
    #[arg(long = "or", num_args = 1.., value_name = "FILTER", action = clap::ArgAction::Append,
          requires = "set_filters")]
    pub or: Vec<String>,
    /// `--or` per occurrence ([`regroup_or`]).
    #[arg(skip)]
    pub or_groups: Vec<Vec<String>>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print one setting, or every setting with its value and origin.
    Get { key: Option<String> },
    /// Store a setting (checked first).
    Set { key: String, value: String },
    /// Return a setting to its default.
    Unset { key: String },
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
    /// Item filters: KEY=VALUE, KEY!=VALUE, KEY~REGEX, KEY!~REGEX (all of a group must match).
    pub filters: Vec<String>,
    /// Another filter group: the FILTERs up to the next option (an item is taken when any
    /// group matches it). Repeatable.
    #[arg(long = "or", num_args = 1.., value_name = "FILTER", action = clap::ArgAction::Append)]
    pub or: Vec<String>,
    /// `--or` per occurrence ([`regroup_or`]).
    #[arg(skip)]
    pub or_groups: Vec<Vec<String>>,
    #[command(flatten)]
    pub auto: AutoPublishArgs,
}

/// One list with `--or` between the groups, as the catalogue keeps it
/// ([`streamvault::streams::FilterGroups`]).
/// The derive API flattens the values of a repeated option; the groups of `--or` come from
/// the occurrences in `matches` (`source add`, `source edit`).
pub fn regroup_or(cli: &mut Cli, matches: &clap::ArgMatches) {
    let Command::Source(sc) = &mut cli.command else {
        return;
    };
    let Some(("source", m)) = matches.subcommand() else {
        return;
    };
    let groups = |m: &clap::ArgMatches| -> Vec<Vec<String>> {
        m.get_occurrences::<String>("or")
            .map(|o| o.map(|g| g.cloned().collect()).collect())
            .unwrap_or_default()
    };
    match (sc, m.subcommand()) {
        (SourceCommand::Add(a), Some(("add", m))) => a.or_groups = groups(m),
        (SourceCommand::Edit(a), Some(("edit", m))) => a.or_groups = groups(m),
        _ => {}
    }
}

pub fn filter_list(first: Vec<String>, or: Vec<Vec<String>>) -> Vec<String> {
    let mut out = first;
    for g in or {
        out.push(streamvault::streams::filter::OR.to_string());
        out.extend(g);
    }
    out
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Sources to sync.
    pub names: Vec<String>,
    /// Sync every source.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    /// Parallel downloads.
    #[arg(long, short = 'j', default_value_t = fetch_defaults().jobs as u16, value_parser = clap::value_parser!(u16).range(1..=256))]
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
    #[arg(long, default_value_t = fetch_defaults().stall_timeout.as_secs(), value_name = "SECONDS")]
    pub stall_timeout: u64,
    /// Retries per request (connect errors, timeouts, 5xx, short bodies).
    #[arg(long, default_value_t = fetch_defaults().retries)]
    pub retries: u32,
    /// A request slower than RATE (bytes per second, e.g. `1k`) for `--speed-time` is retried;
    /// `0` turns the check off.
    #[arg(long, default_value_t = short_size(fetch_defaults().speed_limit), value_name = "RATE")]
    pub speed_limit: String,
    /// Seconds over which `--speed-limit` is measured.
    #[arg(long, default_value_t = fetch_defaults().speed_time.as_secs(), value_name = "SECONDS")]
    pub speed_time: u64,
    /// Longest time one request may take, in seconds (a slower one is retried); 0: no limit.
    #[arg(long, default_value_t = fetch_defaults().request_timeout.map_or(0, |d| d.as_secs()), value_name = "SECONDS")]
    pub request_timeout: u64,
    /// Items of at least SIZE (e.g. `32M`) are fetched as parallel Range segments; `0`: never.
    #[arg(long, default_value_t = short_size(fetch_defaults().segment_min), value_name = "SIZE")]
    pub segment_min: String,
    /// Accept metadata whose `updated` date is older than the source's last snapshot (a
    /// replay of an older generation is refused otherwise).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write Prometheus metrics to this file afterwards (default: the `metrics-file` setting).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_defaults_read_as_typed() {
        assert_eq!(short_size(1024), "1k");
        assert_eq!(short_size(32 * 1024 * 1024), "32M");
        assert_eq!(short_size(1000), "1000");
        assert_eq!(short_size(0), "0");
        // What the flags parse back to is the library's value.
        let d = fetch_defaults();
        let typed = short_size(d.speed_limit);
        assert_eq!(
            streamvault::fetch::parse_speed_limit(&typed).ok(),
            Some(d.speed_limit)
        );
    }
}

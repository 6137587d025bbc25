//! The CLI edge: parse arguments (clap), call the library, print results, map errors to one
//! line and an exit status (0 ok, 1 problems found, 2 error). Nothing here decides behaviour.

mod args;
mod mirror_cmd;
mod ops_cmd;
mod output;
mod status;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use args::{
    Cli, Command, GcArgs, KeyCommand, MetadataArg, PublishArgs, ServeArgs, ShellArg,
    SnapshotCommand, SourceAddArgs, SourceCommand, SyncArgs, VerifyArgs,
};
use output::{size, table, time};
use streamvault::catalog::NewSource;
use streamvault::catalog::check_source_name;
use streamvault::error::{Error, IoResultExt, Result};
use streamvault::fetch::{self, FetchOptions};
use streamvault::keys;
use streamvault::publish;
use streamvault::streams::FilterGroups;
use streamvault::sync::{self, Outcome, SyncOptions};
use streamvault::vault::Vault;

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
        Err(e) => return usage_error(&e),
    };
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    args::regroup_or(&mut cli, &matches);
    QUIET.store(cli.quiet, Ordering::Relaxed);
    match run(cli) {
        Ok(code) => code,
        Err(e) => status::fail(&e).into(),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let root = cli.root.clone();
    match cli.command {
        Command::Source(cmd) => source(&root, cmd),
        Command::Sync(a) => sync_cmd(&root, a, cli.verbose),
        Command::Snapshots { source, json } => snapshots(&root, source.as_deref(), json),
        Command::Snapshot(SnapshotCommand::Show { id, items, json }) => {
            snapshot_show(&root, &id, items, json)
        }
        Command::Diff { from, to, json } => diff(&root, &from, &to, json),
        Command::Serve(a) => serve(&root, a),
        // Handled before clap (see `main`); listed for `--help`.
        Command::Mirror { args } => Ok(mirror_cmd::main(&args, Some(root)).into()),
        Command::Gc(a) => gc_cmd(&root, a),
        Command::Verify(a) => verify_cmd(&root, a),
        Command::Demo(a) => {
            let rt = runtime()?;
            streamvault::demo::run(&rt, a.dir.as_deref(), a.serve)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish(a) => publish_cmd(&root, a),
        Command::Rollback { dest, to, json } => rollback_cmd(&root, dest, to, json),
        Command::Detach {
            dest,
            dry_run,
            json,
        } => detach_cmd(&root, &dest, dry_run, json),
        Command::Status {
            dest: Some(dest),
            json,
        } => status_cmd(&root, &dest, json),
        Command::Status { dest: None, json } => ops_cmd::status_overview(&root, json),
        Command::Config(cmd) => ops_cmd::config(&root, cmd),
        Command::Publications { dest, json } => publications_cmd(&root, dest.as_deref(), json),
        Command::Key(cmd) => key_cmd(&root, cmd),
        Command::Completions { shell } => completions_cmd(shell),
        Command::Man { out_dir } => man_cmd(out_dir.as_deref()),
    }
}

// ------------------------------------------------------------------- completions, man page

/// The completion script for `shell`, generated from the clap definitions.
fn completions_cmd(shell: ShellArg) -> Result<ExitCode> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let shell = match shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "streamvault", &mut buf);
    write_stdout(&buf)
}

/// The man page on stdout, or every page (`streamvault.1`, `streamvault-SUB.1`) into `dir`.
fn man_cmd(dir: Option<&Path>) -> Result<ExitCode> {
    use clap::CommandFactory as _;
    let cmd = Cli::command();
    match dir {
        None => {
            let mut buf = Vec::new();
            // Rendering into memory cannot fail.
            let _ = clap_mangen::Man::new(cmd).render(&mut buf);
            write_stdout(&buf)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_path("create directory", dir)?;
            clap_mangen::generate_to(cmd, dir).with_path("write man pages into", dir)?;
            out!("wrote man pages into {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Raw bytes to stdout; a closed pipe ends quietly like `out!`.
fn write_stdout(buf: &[u8]) -> Result<ExitCode> {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    match o.write_all(buf).and_then(|()| o.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).with_path("write to", Path::new("stdout"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// A clap outcome that is not a command line to run: `--help` and `--version` print as clap
/// prints them (stdout, exit 0); every usage error becomes one `streamvault: error:` line and
/// at most one `hint:` line (clap's tip, else the usage), exit 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let usage = lines
        .iter()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map(|u| format!("usage: {u} (`--help` for more)"));
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        output::error_lines("no command given", usage.as_deref());
        return ExitCode::from(2);
    }
    // `error: …` and its continuation lines (e.g. the missing arguments), up to the tip/usage.
    let mut msg = String::new();
    let mut tip = None;
    for l in &lines {
        if let Some(t) = l.strip_prefix("tip: ") {
            tip.get_or_insert(t);
        } else if l.starts_with("Usage: ") || l.starts_with("For more information") {
            break;
        } else if msg.is_empty() {
            msg.push_str(l.strip_prefix("error: ").unwrap_or(l));
        } else {
            msg.push_str(if msg.ends_with(':') { " " } else { ", " });
            msg.push_str(l);
        }
    }
    if msg.is_empty() {
        msg.push_str("invalid command line");
    }
    let hint = tip.map(str::to_owned).or(usage);
    output::error_lines(&msg, hint.as_deref());
    ExitCode::from(2)
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

fn json_out<T: serde::Serialize>(v: &T) -> Result<ExitCode> {
    out_exact(&serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------- sources

fn source(root: &Path, cmd: SourceCommand) -> Result<ExitCode> {
    match cmd {
        SourceCommand::Add(a) => source_add(root, a),
        SourceCommand::Edit(a) => ops_cmd::source_edit(root, a),
        SourceCommand::List { json } => {
            let sources = match Vault::open_read_only(root)? {
                Some(v) => v.catalog.sources()?,
                None => Vec::new(),
            };
            if json {
                return json_out(&sources);
            }
            let rows: Vec<Vec<String>> = sources
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.url.clone(),
                        s.max.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                        s.filters.join(" "),
                        s.publish
                            .as_ref()
                            .map(|p| p.dest.display().to_string())
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            table(&["NAME", "URL", "MAX", "FILTERS", "PUBLISH"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        SourceCommand::Show { name, json } => {
            let v =
                Vault::open_read_only(root)?.ok_or_else(|| Error::UnknownSource(name.clone()))?;
            let s = v.catalog.source(&name)?;
            if json {
                #[derive(serde::Serialize)]
                struct ShowSource<'a> {
                    #[serde(flatten)]
                    source: &'a streamvault::catalog::Source,
                    filter_groups: Vec<Vec<String>>,
                }
                return json_out(&ShowSource {
                    filter_groups: FilterGroups::split(&s.filters),
                    source: &s,
                });
            }
            out!("name:      {}", s.name);
            out!("url:       {}", s.url);
            if s.has_credentials() {
                out!(
                    "login:     (stored in {}, mode 0600)",
                    v.catalog.credentials_path().display()
                );
            }
            if let Some(p) = &s.path {
                out!("path:      {p}");
            }
            match &s.keyring {
                Some(k) => out!("keyring:   {}", k.display()),
                None => out!("keyring:   (none)"),
            }
            out!("verify:    {}", if s.no_verify { "no" } else { "yes" });
            out!(
                "max:       {}{}",
                s.max.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                if s.keep { " (keep)" } else { "" }
            );
            for m in &s.mirrors {
                out!("mirror:    {m}");
            }
            for (i, g) in FilterGroups::split(&s.filters).iter().enumerate() {
                for (j, f) in g.iter().enumerate() {
                    // `--or` opens each group after the first, as on the command line.
                    let head = if i > 0 && j == 0 {
                        "or filter:"
                    } else {
                        "filter:   "
                    };
                    out!("{head} {f}");
                }
            }
            if let Some(p) = &s.publish {
                out!(
                    "publish:   {} ({} metadata{})",
                    p.dest.display(),
                    p.metadata,
                    p.sign_key
                        .as_deref()
                        .map(|k| format!(", signed with {k}"))
                        .unwrap_or_default()
                );
            }
            out!("added:     {}", time(s.created_at));
            if let Some(snap) = v.catalog.latest_snapshot(&s.name)? {
                out!(
                    "latest:    snapshot {} ({})",
                    snap.id,
                    time(snap.created_at)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SourceCommand::Remove { name } => {
            let v = Vault::open(root)?;
            let _lock = v.lock_source(&name, false, &format!("source remove {name}"))?;
            v.catalog.remove_source(&name)?;
            out!("removed source {name} (its snapshots stay until gc)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Validate everything before touching the store: name, filters, `--keep`/`--max`, keyring.
fn source_add(root: &Path, a: SourceAddArgs) -> Result<ExitCode> {
    check_source_name(&a.name)?;
    let filters = args::filter_list(a.filters, a.or_groups);
    FilterGroups::parse(&filters)?;
    if a.keep && a.max.is_none() {
        return Err(Error::KeepWithoutMax);
    }
    let keyring = match &a.keyring {
        Some(k) => {
            let abs = std::fs::canonicalize(k).with_path("find keyring", k)?;
            streamvault::openpgp::Keyring::open(&abs).map_err(|e| Error::Keyring {
                path: abs.clone(),
                source: e,
            })?;
            Some(abs)
        }
        None => None,
    };
    let url = absolute_source(&a.url)?;
    let publish = ops_cmd::auto_publish(root, &a.auto)?;
    let v = Vault::open(root)?;
    v.catalog.add_source(&NewSource {
        name: a.name.clone(),
        url,
        path: a.path,
        keyring,
        max: a.max,
        keep: a.keep,
        no_verify: a.no_verify,
        mirrors: a.mirrors,
        filters,
    })?;
    if let Some(p) = &publish {
        v.catalog.set_auto_publish(&a.name, Some(p))?;
    }
    out!("added source {}", a.name);
    Ok(ExitCode::SUCCESS)
}

/// A URL stays as typed; a local directory becomes absolute (cron runs elsewhere).
fn absolute_source(url: &str) -> Result<String> {
    if url.contains("://") {
        return Ok(url.to_string());
    }
    let p = PathBuf::from(url);
    let abs = std::path::absolute(&p).with_path("resolve", &p)?;
    let mut s = abs.to_string_lossy().into_owned();
    if url.ends_with('/') && !s.ends_with('/') {
        s.push('/');
    }
    Ok(s)
}

// ----------------------------------------------------------------------------------- sync

fn sync_cmd(root: &Path, a: SyncArgs, verbose: u8) -> Result<ExitCode> {
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
        let bar = Arc::new(output::SyncBar::new(&src.name, verbose));
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
                    output::print_error_in(&src.name, &e);
                }
            }
        }
    }
    if !a.dry_run {
        if !reports.is_empty() {
            ops_cmd::auto_collect(&mut vault, quiet() || a.json);
        }
        drop(vault);
        if let Err(e) = ops_cmd::write_metrics(root, a.metrics_file.clone()) {
            output::print_error(&e);
            failed += 1;
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if a.json {
        json_out(&reports)?;
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_sync_report(r: &sync::SyncReport) {
    let secs = r.duration_ms as f64 / 1000.0;
    match r.outcome {
        Outcome::DryRun => {
            for p in &r.plan {
                out!("+ {} {}", p.path, size(p.size));
            }
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

// ------------------------------------------------------------------------------ snapshots

fn read_vault(root: &Path) -> Result<Vault> {
    Vault::open_read_only(root)?.ok_or_else(|| Error::UnknownSnapshot(root.display().to_string()))
}

fn snapshots(root: &Path, source: Option<&str>, json: bool) -> Result<ExitCode> {
    let list = match Vault::open_read_only(root)? {
        Some(v) => v.catalog.snapshots(source)?,
        None => Vec::new(),
    };
    if json {
        return json_out(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.source.clone(),
                time(s.created_at),
                s.products.to_string(),
                s.versions.to_string(),
                s.items.to_string(),
                size(s.bytes as u64),
                size(s.fetched_bytes as u64),
                s.signer
                    .as_deref()
                    .map(|f| f.get(f.len().saturating_sub(16)..).unwrap_or(f).to_string())
                    .unwrap_or_else(|| {
                        if s.signed {
                            "unverified".into()
                        } else {
                            "-".into()
                        }
                    }),
            ]
        })
        .collect();
    table(
        &[
            "ID", "SOURCE", "CREATED", "PRODUCTS", "VERSIONS", "ITEMS", "SIZE", "FETCHED", "SIGNER",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

fn snapshot_show(root: &Path, id: &str, items: bool, json: bool) -> Result<ExitCode> {
    let v = read_vault(root)?;
    let s = v.catalog.resolve_snapshot(id)?;
    let docs = v.catalog.documents(s.id)?;
    if json {
        #[derive(serde::Serialize)]
        struct Show<'a> {
            snapshot: &'a streamvault::catalog::Snapshot,
            documents: &'a [streamvault::catalog::Document],
            #[serde(skip_serializing_if = "Option::is_none")]
            items: Option<Vec<streamvault::catalog::Item>>,
        }
        let list = if items {
            Some(v.catalog.items(s.id)?)
        } else {
            None
        };
        return json_out(&Show {
            snapshot: &s,
            documents: &docs,
            items: list,
        });
    }
    out!("snapshot:  {}", s.id);
    out!("source:    {}", s.source);
    out!("created:   {}", time(s.created_at));
    out!("url:       {}{}", s.url, s.start_path);
    out!(
        "signed:    {}",
        match (&s.signer, s.signed) {
            (Some(f), _) => format!("yes, verified, by {f}"),
            (None, true) => "yes, not verified (--no-verify)".into(),
            (None, false) => "no".into(),
        }
    );
    if !s.filters.is_empty() {
        out!("filters:   {}", s.filters.join(" "));
    }
    if let Some(m) = s.max {
        out!("max:       {m}{}", if s.keep { " (keep)" } else { "" });
    }
    out!(
        "contents:  {} products, {} versions, {} items, {}",
        s.products,
        s.versions,
        s.items,
        size(s.bytes as u64)
    );
    out!(
        "run:       fetched {} in {:.1} s",
        size(s.fetched_bytes as u64),
        s.duration_ms as f64 / 1000.0
    );
    for d in &docs {
        out!("document:  {} ({})", d.path, d.kind);
    }
    if items {
        v.catalog.for_each_item(s.id, |it| {
            out!(
                "{} {} {} {} {}",
                it.product,
                it.version,
                it.item,
                it.path.as_deref().unwrap_or("-"),
                it.size.map(size).unwrap_or_else(|| "-".into())
            );
            Ok(())
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

fn diff(root: &Path, from: &str, to: &str, json: bool) -> Result<ExitCode> {
    let v = read_vault(root)?;
    let a = v.catalog.resolve_snapshot(from)?;
    let b = v.catalog.resolve_snapshot(to)?;
    let d = streamvault::diff::diff(&v.catalog, a.id, b.id)?;
    if json {
        return json_out(&d);
    }
    for (sign, what, list) in [
        ("+", "product", &d.products_added),
        ("-", "product", &d.products_removed),
        ("+", "version", &d.versions_added),
        ("-", "version", &d.versions_removed),
        ("+", "item", &d.items_added),
        ("-", "item", &d.items_removed),
        ("~", "item", &d.items_changed),
    ] {
        for x in list {
            out!("{sign} {what} {x}");
        }
    }
    out!(
        "snapshot {} -> {}: products +{} -{}, versions +{} -{}, items +{} -{} ~{}",
        d.from,
        d.to,
        d.products_added.len(),
        d.products_removed.len(),
        d.versions_added.len(),
        d.versions_removed.len(),
        d.items_added.len(),
        d.items_removed.len(),
        d.items_changed.len()
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------- serve

fn serve(root: &Path, a: ServeArgs) -> Result<ExitCode> {
    use streamvault::serve::{AccessLogTarget, Limits, ServeError, ServeOptions};
    let not_dir = |path: &Path| Error::Io {
        op: "serve",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
    };
    let mut mounts = Vec::new();
    for m in &a.mounts {
        let Some((prefix, dest)) = m.split_once('=') else {
            return Err(ServeError::Mount {
                mount: m.clone(),
                reason: "expected PREFIX=DEST, e.g. /maas/stable=/srv/maas".into(),
            }
            .into());
        };
        if !prefix.starts_with('/') {
            return Err(ServeError::Mount {
                mount: m.clone(),
                reason: "the prefix must start with `/`".into(),
            }
            .into());
        }
        mounts.push((prefix.to_owned(), PathBuf::from(dest)));
    }
    if a.dest.is_none() && mounts.is_empty() {
        return Err(ServeError::Mount {
            mount: String::new(),
            reason: "nothing to serve: give a DIR or at least one --mount PREFIX=DEST".into(),
        }
        .into());
    }
    for dest in a.dest.iter().chain(mounts.iter().map(|(_, d)| d)) {
        if !dest.is_dir() {
            return Err(not_dir(dest));
        }
    }
    let nofile = streamvault::serve::raise_nofile_limit();
    let opts = ServeOptions {
        mounts,
        listen: a.listen,
        tls: a.tls_cert.zip(a.tls_key),
        limits: Limits {
            max_connections: Some(
                a.max_connections
                    .unwrap_or_else(|| streamvault::serve::default_max_connections(nofile)),
            ),
            max_header_bytes: a.max_header_bytes.max(8192),
            header_timeout: std::time::Duration::from_secs(a.header_timeout.max(1)),
            idle_timeout: std::time::Duration::from_secs(a.idle_timeout.max(1)),
        },
        access_log: a.access_log.map(|l| {
            if l == "-" {
                AccessLogTarget::Stdout
            } else {
                AccessLogTarget::File(PathBuf::from(l))
            }
        }),
        store_root: Some(root.to_path_buf()),
        reload_on_sighup: true,
        grace: std::time::Duration::from_secs(10),
        ..ServeOptions::new(a.dest.clone().unwrap_or_default())
    };
    let rt = runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: opts.listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(opts.listen);
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let what = match &a.dest {
            Some(d) => format!(
                "`{}`",
                streamvault::escape::Escaped(&d.display().to_string())
            ),
            None => format!("{} mount(s)", opts.mounts.len()),
        };
        let max = opts.limits.max_connections.unwrap_or(0);
        let serving = streamvault::serve::run_announced(
            listener,
            opts,
            async {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    match signal(SignalKind::terminate()) {
                        Ok(mut term) => {
                            tokio::select! {
                                _ = tokio::signal::ctrl_c() => {}
                                _ = term.recv() => {}
                            }
                        }
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                        }
                    }
                }
                #[cfg(not(unix))]
                let _ = tokio::signal::ctrl_c().await;
            },
            || {
                eprintln!(
                    "serving {what} at {scheme}://{addr}/ (max {max} connections, open-file limit \
             {nofile}; Ctrl-C or SIGTERM to stop)"
                );
            },
        );
        serving.await?;
        Ok::<_, Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

// -------------------------------------------------------------------------------- publish

fn publish_cmd(root: &Path, a: PublishArgs) -> Result<ExitCode> {
    let s3 = publish::s3::S3Dest::parse(&a.dest)?;
    let mut vault = Vault::open(root)?;
    let opts = publish::PublishOptions {
        snapshot: a.snapshot,
        dest: a.dest,
        mode: match a.metadata {
            MetadataArg::Verbatim => publish::MetadataMode::Verbatim,
            MetadataArg::Filtered => publish::MetadataMode::Filtered,
        },
        sign_key: a.sign_key,
        unsigned: a.unsigned,
        force: a.force,
        adopt: a.adopt,
        rebuild: a.rebuild,
        pre_adopted: None,
    };
    if let Some(d) = s3 {
        return s3_cmd::publish(&mut vault, &d, &opts, a.json);
    }
    let r = publish::publish(&mut vault, &opts)?;
    drop(vault);
    ops_cmd::write_metrics(root, a.metrics_file.clone())?;
    if a.json {
        return json_out(&r);
    }
    print_publish_report(&r);
    Ok(ExitCode::SUCCESS)
}

/// The summary, then the signing key generated (first filtered publish) and the keyring MAAS
/// needs.
fn print_publish_report(r: &publish::PublishReport) {
    print_publish_summary(r);
    for w in &r.warnings {
        eprintln!("streamvault: warning: {w}");
    }
    if r.key_created {
        out!(
            "generated the store's signing key `{}` for filtered metadata ({})",
            keys::DEFAULT_KEY,
            r.signer.as_deref().unwrap_or("-")
        );
    }
    if let Some(k) = &r.keyring {
        out!("keyring for MAAS (keyring_filename): {}", k.display());
    }
}

fn print_publish_summary(r: &publish::PublishReport) {
    if !r.changed {
        out!(
            "{} already points at tree {} (snapshot {}); nothing to do",
            r.dest.display(),
            r.tree,
            r.snapshot
        );
        return;
    }
    let verb = if r.action == "rollback" {
        "rolled back"
    } else {
        "published"
    };
    let mut line = format!(
        "{verb} snapshot {} ({}) to {}: publication {}, tree {} ({}, {} files, {}, {} metadata{})",
        r.snapshot,
        r.source,
        r.dest.display(),
        r.publication,
        r.tree,
        if r.tree_reused { "reused" } else { "built" },
        r.files,
        size(r.bytes.max(0) as u64),
        r.mode,
        r.signer
            .as_deref()
            .map(|s| format!(", signed by {s}"))
            .unwrap_or_default()
    );
    if let Some(p) = r.previous {
        line.push_str(&format!("; replaced publication {p}"));
    }
    if r.grace_files > 0 {
        line.push_str(&format!(
            "; {} grace links keep the previous tree's items reachable",
            r.grace_files
        ));
    }
    if r.missing > 0 {
        line.push_str(&format!(
            "; warning: {} listed items are missing (--force)",
            r.missing
        ));
    }
    out!("{line}");
    if let Some(a) = &r.adopted {
        out!(
            "adopted {} files ({}) as snapshot {}{}{}",
            a.files,
            size(a.bytes),
            a.snapshot,
            a.moved_to
                .as_ref()
                .map(|p| format!("; the old directory is now {}", p.display()))
                .unwrap_or_default(),
            if a.skipped > 0 {
                format!("; {} symlinks or special files skipped", a.skipped)
            } else {
                String::new()
            }
        );
    }
}

fn rollback_cmd(root: &Path, dest: PathBuf, to: Option<String>, json: bool) -> Result<ExitCode> {
    let s3 = publish::s3::S3Dest::parse(&dest)?;
    let mut vault = Vault::open(root)?;
    if let Some(d) = s3 {
        return s3_cmd::rollback(&mut vault, &d, to.as_deref(), json);
    }
    let r = publish::rollback(&mut vault, &publish::RollbackOptions { dest, to })?;
    if json {
        return json_out(&r);
    }
    print_publish_report(&r);
    Ok(ExitCode::SUCCESS)
}

fn detach_cmd(root: &Path, dest: &Path, dry_run: bool, json: bool) -> Result<ExitCode> {
    if let Some(d) = publish::s3::S3Dest::parse(dest)? {
        return Err(publish::s3::S3Error::UnsupportedDest { dest: d.url() }.into());
    }
    let mut vault = open_existing(root)?;
    let r = if dry_run {
        publish::detach_plan(&vault, dest)?
    } else {
        publish::detach(&mut vault, dest)?
    };
    if json {
        return json_out(&r);
    }
    out!(
        "{} {} into a plain directory: {} files, {} directories, {} (tree {}, snapshot {}){}",
        if r.dry_run {
            "would detach"
        } else {
            "detached"
        },
        r.dest.display(),
        r.files,
        r.dirs,
        output::size(r.bytes),
        r.tree,
        r.snapshot,
        if r.dry_run || r.atomic {
            ""
        } else {
            "; not atomic: this filesystem cannot exchange two names"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn status_cmd(root: &Path, dest: &Path, json: bool) -> Result<ExitCode> {
    let s3 = publish::s3::S3Dest::parse(dest)?;
    let vault = Vault::open_read_only(root)?;
    if let Some(d) = s3 {
        return s3_cmd::status(vault.as_ref(), &d, json);
    }
    let st = publish::status(vault.as_ref(), dest)?;
    let code = if st.consistent() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if json {
        json_out(&st)?;
        return Ok(code);
    }
    out!("dest:        {}", st.dest.display());
    match &st.link {
        Some(l) => out!("link:        {}", l.display()),
        None => out!("link:        (none)"),
    }
    if let Some(t) = &st.tree {
        out!(
            "tree:        {} ({} metadata{}, {} files, {})",
            t.name,
            t.mode,
            t.signer
                .as_deref()
                .map(|s| format!(", signed by {s}"))
                .unwrap_or_default(),
            t.files,
            size(t.bytes.max(0) as u64)
        );
    }
    if let Some(p) = &st.live {
        out!("snapshot:    {} ({})", p.snapshot_id, p.source);
        out!(
            "publication: {} ({} at {} by {})",
            p.id,
            p.action,
            time(p.published_at),
            p.published_by
        );
    }
    for p in &st.problems {
        out!("problem:     {p}");
    }
    Ok(code)
}

fn publications_cmd(root: &Path, dest: Option<&Path>, json: bool) -> Result<ExitCode> {
    let s3 = dest.map(publish::s3::S3Dest::parse).transpose()?.flatten();
    let vault = Vault::open_read_only(root)?;
    if let Some(d) = s3 {
        return s3_cmd::publications(vault.as_ref(), &d, json);
    }
    let list = publish::publications(vault.as_ref(), dest)?;
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
                p.source.clone(),
                p.mode.clone(),
                p.action.clone(),
                time(p.published_at),
                p.published_by.clone(),
                if p.live {
                    "live".to_string()
                } else {
                    p.retired_at
                        .map(|t| format!("retired {}", time(t)))
                        .unwrap_or_else(|| "not live".to_string())
                },
            ]
        })
        .collect();
    table(
        &[
            "ID", "DEST", "SNAPSHOT", "SOURCE", "MODE", "ACTION", "WHEN", "BY", "STATE",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------------ keys

fn key_cmd(root: &Path, cmd: KeyCommand) -> Result<ExitCode> {
    let layout = streamvault::store::Layout::new(root);
    match cmd {
        KeyCommand::Generate { name, user_id } => {
            keys::check_key_name(&name)?;
            // Creates the store root if needed (keys live in it).
            let vault = Vault::open(root)?;
            let k = keys::generate(&vault.layout, &name, user_id.as_deref())?;
            out!(
                "generated key {} {} ({}) in {}",
                k.name,
                k.fingerprint,
                k.user_id.as_deref().unwrap_or("-"),
                k.path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::List { json } => {
            let list = keys::list(&layout)?;
            if json {
                return json_out(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|k| {
                    vec![
                        k.name.clone(),
                        k.fingerprint.clone(),
                        k.user_id.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            table(&["NAME", "FINGERPRINT", "USER ID"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Export {
            name,
            binary,
            armor: _,
            output,
        } => {
            let format = if binary {
                keys::KeyFormat::Binary
            } else {
                keys::KeyFormat::Armor
            };
            let bytes = keys::export(&layout, &name, format)?;
            if format == keys::KeyFormat::Armor {
                eprintln!(
                    "streamvault: warning: an ASCII-armoured keyring does not work for MAAS (its gpgv needs the binary form: `--binary`)"
                );
            }
            match output {
                Some(path) => std::fs::write(&path, &bytes).with_path("write", &path)?,
                None => {
                    use std::io::Write as _;
                    let mut o = std::io::stdout().lock();
                    if let Err(e) = o.write_all(&bytes).and_then(|()| o.flush())
                        && e.kind() != std::io::ErrorKind::BrokenPipe
                    {
                        return Err(Error::Io {
                            op: "write",
                            path: PathBuf::from("<stdout>"),
                            source: e,
                        });
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

// ---------------------------------------------------------------------------- gc, verify

/// A store that must exist already (maintenance never creates one).
fn open_existing(root: &Path) -> Result<Vault> {
    if Vault::open_read_only(root)?.is_none() {
        return Err(Error::NoStore(root.to_path_buf()));
    }
    Vault::open(root)
}

fn gc_cmd(root: &Path, a: GcArgs) -> Result<ExitCode> {
    let mut vault = open_existing(root)?;
    let settings = streamvault::settings::StoreSettings::load(Some(&vault.catalog))?;
    let opts = streamvault::gc::GcOptions {
        keep_last: a.keep_last.unwrap_or(settings.keep_last),
        grace: match &a.grace {
            Some(g) => streamvault::gc::parse_duration(g)?,
            None => settings.grace,
        },
        wait: a.wait,
    };
    let plan = streamvault::gc::gc_plan(&mut vault, &opts)?;
    let report = if a.dry_run {
        plan.report().clone()
    } else {
        streamvault::gc::gc(plan)?
    };
    drop(vault);
    ops_cmd::write_metrics(root, a.metrics_file.clone())?;
    if a.json {
        return json_out(&report);
    }
    output::print_gc_report(&report);
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(root: &Path, a: VerifyArgs) -> Result<ExitCode> {
    let mut opts = streamvault::verify::VerifyOptions {
        wait: a.wait,
        fetch: FetchOptions {
            retries: a.retries,
            ..FetchOptions::default()
        },
        ..Default::default()
    };
    if let Some(j) = a.jobs {
        opts.jobs = usize::from(j);
    }
    let report = if a.repair {
        let mut vault = open_existing(root)?;
        let plan = streamvault::verify::repair_plan(&mut vault, &opts)?;
        streamvault::verify::repair(plan)?
    } else {
        let vault =
            Vault::open_read_only(root)?.ok_or_else(|| Error::NoStore(root.to_path_buf()))?;
        streamvault::verify::verify(&vault, &opts)?
    };
    if a.json {
        json_out(&report)?;
    } else {
        output::print_verify_report(&report);
    }
    // Orphans alone (what a killed run leaves and the next gc removes) are no damage: exit 0.
    Ok(if report.damage() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

//! The CLI edge: parse arguments (clap), call the library, print results, map errors to one
//! line and an exit status (0 ok, 1 problems found, 2 error). Nothing here decides behaviour.

mod args;
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use args::{
    Cli, Command, GcArgs, SnapshotCommand, SourceAddArgs, SourceCommand, SyncArgs, VerifyArgs,
};
use output::{print_error, size, table, time};
use streamvault::catalog::NewSource;
use streamvault::catalog::check_source_name;
use streamvault::error::{Error, IoResultExt, Result};
use streamvault::fetch::{self, FetchOptions};
use streamvault::streams::Filter;
use streamvault::sync::{self, Outcome, SyncOptions};
use streamvault::vault::Vault;

/// Write a line to stdout; a closed pipe (`| head`) ends the program quietly with status 0.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        if let Err(e) = writeln!(o, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}
pub(crate) use out;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            print_error(&e, verbose);
            ExitCode::from(2)
        }
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
        Command::Gc(a) => gc_cmd(&root, a),
        Command::Verify(a) => verify_cmd(&root, a),
        Command::Demo(a) => {
            let rt = runtime()?;
            streamvault::demo::run(&rt, a.dir.as_deref(), a.serve)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

fn json_out<T: serde::Serialize>(v: &T) -> Result<ExitCode> {
    out!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

// ------------------------------------------------------------------------------- sources

fn source(root: &Path, cmd: SourceCommand) -> Result<ExitCode> {
    match cmd {
        SourceCommand::Add(a) => source_add(root, a),
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
                    ]
                })
                .collect();
            table(&["NAME", "URL", "MAX", "FILTERS"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        SourceCommand::Show { name, json } => {
            let v =
                Vault::open_read_only(root)?.ok_or_else(|| Error::UnknownSource(name.clone()))?;
            let s = v.catalog.source(&name)?;
            if json {
                return json_out(&s);
            }
            out!("name:      {}", s.name);
            out!("url:       {}", s.url);
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
            for f in &s.filters {
                out!("filter:    {f}");
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
    for f in &a.filters {
        Filter::parse(f)?;
    }
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
        filters: a.filters,
    })?;
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
            ..FetchOptions::default()
        },
        dry_run: a.dry_run,
        wait: a.wait,
    };
    let rt = runtime()?;
    let mut failed = 0;
    let mut reports = Vec::new();
    for src in &sources {
        let bar = Arc::new(output::SyncBar::new(&src.name, verbose));
        let res = rt.block_on(sync::sync(&mut vault, src, &opts, bar.clone()));
        bar.finish();
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
                    return Err(e);
                }
                eprintln!("streamvault: error: {}: {}", src.name, sync::error_line(&e));
            }
        }
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

// ---------------------------------------------------------------------------- gc, verify

/// A store that must exist already (maintenance never creates one).
fn open_existing(root: &Path) -> Result<Vault> {
    if Vault::open_read_only(root)?.is_none() {
        return Err(Error::NoStore(root.to_path_buf()));
    }
    Vault::open(root)
}

fn gc_cmd(root: &Path, a: GcArgs) -> Result<ExitCode> {
    let opts = streamvault::gc::GcOptions {
        keep_last: a.keep_last,
        grace: streamvault::gc::parse_duration(&a.grace)?,
        wait: a.wait,
    };
    let mut vault = open_existing(root)?;
    let plan = streamvault::gc::gc_plan(&mut vault, &opts)?;
    let report = if a.dry_run {
        plan.report().clone()
    } else {
        streamvault::gc::gc(plan)?
    };
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
    Ok(if report.remaining() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

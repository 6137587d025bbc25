//! Sync benchmark (run through `scripts/bench-sync.sh`): full-sync wall time and throughput for
//! a stream of many small files and one of a few large files, against the raw limit of the same
//! loopback server (a parallel `curl` of the same URLs, and a plain parallel GET loop that
//! discards the bodies); the request count of an unchanged re-sync; and the time to verify and
//! parse the real 2.5 MB signed products file against `gpgv` + `python3 -c 'import json…'`.
//!
//! Usage: bench_sync [--small N SIZE] [--large N SIZE] [--jobs J] [--dir DIR]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamvault::catalog::NewSource;
use streamvault::openpgp::{self, Keyring, SigningKey};
use streamvault::serve::{self, ServeOptions};
use streamvault::streamgen::{self, Bulk, StreamSpec};
use streamvault::streams;
use streamvault::sync::{self, Outcome, Quiet, SyncOptions};
use streamvault::vault::Vault;

type R<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    small: (usize, u64),
    large: (usize, u64),
    jobs: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> R<Args> {
    let mut a = Args {
        small: (2000, 256 * 1024),
        large: (4, 256 * 1024 * 1024),
        jobs: 4,
        dir: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let num = |s: Option<&String>| -> R<u64> { Ok(s.ok_or("missing value")?.parse()?) };
    while i < argv.len() {
        match argv[i].as_str() {
            "--small" => {
                a.small = (num(argv.get(i + 1))? as usize, num(argv.get(i + 2))?);
                i += 3;
            }
            "--large" => {
                a.large = (num(argv.get(i + 1))? as usize, num(argv.get(i + 2))?);
                i += 3;
            }
            "--jobs" => {
                a.jobs = num(argv.get(i + 1))? as usize;
                i += 2;
            }
            "--dir" => {
                a.dir = Some(PathBuf::from(argv.get(i + 1).ok_or("missing --dir value")?));
                i += 2;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

fn mib(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1048576.0 / d.as_secs_f64().max(1e-9)
}

/// One scenario: generate, serve, raw limit, full sync, re-sync.
fn scenario(
    name: &str,
    base: &Path,
    files: usize,
    size: u64,
    jobs: usize,
    key: &SigningKey,
) -> R<()> {
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let keyring = dir.join("keyring.gpg");
    std::fs::write(&keyring, key.public_keyring_binary()?)?;
    let sign = |b: &[u8]| key.clearsign(b).map_err(|e| e.to_string());
    let t = Instant::now();
    let spec = StreamSpec {
        bulk: Some(Bulk {
            products: 1,
            versions: 1,
            files_per_version: files,
            file_size: size,
        }),
        ..StreamSpec::generation(1)
    };
    let summary = streamgen::generate(&dir.join("upstream"), &spec, Some(&sign))?;
    eprintln!(
        "[{name}] generated {} files, {:.1} MiB in {:.1} s",
        summary.files,
        summary.bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let server = serve::spawn(ServeOptions::new(dir.join("upstream")))?;
    let url = server.url();
    let urls: Vec<String> = summary
        .items
        .iter()
        .map(|i| format!("{url}{}", i.path))
        .collect();

    // Raw limit 1: one curl process fetching the same URLs in parallel (-Z), bodies discarded.
    let config = dir.join("curl.cfg");
    let cfg: String = urls
        .iter()
        .map(|u| format!("url = \"{u}\"\noutput = \"/dev/null\"\n"))
        .collect();
    std::fs::write(&config, cfg)?;
    let curl = if Command::new("curl").arg("--version").output().is_ok() {
        let t = Instant::now();
        let st = Command::new("curl")
            .args(["-s", "-f", "-Z", "--parallel-max"])
            .arg(jobs.to_string())
            .arg("-K")
            .arg(&config)
            .stderr(std::process::Stdio::null())
            .status()?;
        st.success().then(|| t.elapsed())
    } else {
        None
    };
    // Raw limit 2: the same loop in-process with reqwest, bodies discarded.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let raw = rt.block_on(raw_get_all(urls.clone(), jobs))?;

    // Full sync into a fresh store.
    let root = dir.join("store");
    let mut vault = Vault::open(&root)?;
    vault.catalog.add_source(&NewSource {
        name: "bench".into(),
        url: url.clone(),
        keyring: Some(keyring.clone()),
        ..NewSource::default()
    })?;
    let source = vault.catalog.source("bench")?;
    let mut opts = SyncOptions::default();
    opts.fetch.jobs = jobs;
    server.clear_requests();
    let t = Instant::now();
    let rep = rt.block_on(sync::sync(&mut vault, &source, &opts, Arc::new(Quiet)))?;
    let full = t.elapsed();
    assert!(matches!(rep.outcome, Outcome::Snapshot(_)));
    let total = rep.fetched_bytes;

    server.clear_requests();
    let t = Instant::now();
    let rep2 = rt.block_on(sync::sync(&mut vault, &source, &opts, Arc::new(Quiet)))?;
    let again = t.elapsed();
    let resync_requests = server.requests().len();
    assert!(matches!(rep2.outcome, Outcome::Unchanged(_)));

    println!(
        "\n## {name}: {} files of {} bytes ({:.1} MiB), --jobs {jobs}",
        summary.files,
        size,
        summary.bytes as f64 / 1048576.0
    );
    println!("| what | wall | MiB/s | streamvault's share of this limit |");
    println!("|---|---|---|---|");
    println!(
        "| streamvault sync (verify sig, download, sha256+BLAKE3, fsync, SQLite) | {:.2} s | {:.0} | |",
        full.as_secs_f64(),
        mib(total, full)
    );
    if let Some(c) = curl {
        println!(
            "| raw limit: curl -Z (parallel) -o /dev/null | {:.2} s | {:.0} | {:.0}% |",
            c.as_secs_f64(),
            mib(summary.bytes, c),
            100.0 * c.as_secs_f64() / full.as_secs_f64()
        );
    }
    println!(
        "| raw limit: parallel GET in-process, bodies discarded | {:.2} s | {:.0} | {:.0}% |",
        raw.as_secs_f64(),
        mib(summary.bytes, raw),
        100.0 * raw.as_secs_f64() / full.as_secs_f64()
    );
    println!(
        "| unchanged re-sync | {:.3} s | {} requests ({} documents) | |",
        again.as_secs_f64(),
        resync_requests,
        rep2.documents
    );
    let _ = std::fs::remove_dir_all(dir.join("upstream"));
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

async fn raw_get_all(urls: Vec<String>, jobs: usize) -> R<Duration> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs));
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for u in urls {
        let client = client.clone();
        let sem = sem.clone();
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            let mut resp = client.get(&u).send().await?;
            while let Some(_chunk) = resp.chunk().await? {}
            Ok::<_, reqwest::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(t.elapsed())
}

/// Real 2.5 MB signed products file: in-process verify + parse vs gpgv + python json.
fn real_file() -> R<()> {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real");
    let file =
        fx.join("cloud-images-released-2016/streams/v1/com.ubuntu.cloud:released:download.sjson");
    let key = fx.join("keys/ubuntu-cloud-image-builder-7FF3F408476CF100.gpg");
    if !file.is_file() {
        println!("\n(real fixtures not found: skipping the verify+parse comparison)");
        return Ok(());
    }
    let doc = std::fs::read(&file)?;
    let runs = 10;
    let t = Instant::now();
    for _ in 0..runs {
        let kr = Keyring::open(&key)?;
        let v = openpgp::verify_cleartext(&kr, &doc)?;
        let streams::Document::Products(p) = streams::parse("bench", &v.payload)? else {
            return Err("not products".into());
        };
        assert_eq!(p.item_count(), 7008);
    }
    let ours = t.elapsed() / runs;
    let gnupg = tempfile::tempdir()?;
    let script = format!(
        "gpgv --keyring='{}' '{}' 2>/dev/null && python3 -c \"import json,sys; t=open(sys.argv[1]).read(); b=t.split('\\n\\n',1)[1].split('-----BEGIN PGP SIGNATURE-----')[0]; d=json.loads(b); print(len(d['products']))\" '{}' >/dev/null",
        key.display(),
        file.display(),
        file.display()
    );
    let t = Instant::now();
    let mut ok = true;
    for _ in 0..runs {
        ok &= Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("GNUPGHOME", gnupg.path())
            .status()?
            .success();
    }
    let theirs = t.elapsed() / runs;
    println!("\n## real signed products file (2.5 MB, 7,008 items), mean of {runs} runs");
    println!("| what | wall |");
    println!("|---|---|");
    println!(
        "| streamvault: load keyring + verify (sequoia) + parse + flatten | {:.1} ms |",
        ours.as_secs_f64() * 1000.0
    );
    if ok {
        println!(
            "| gpgv + python3 json.loads | {:.1} ms ({:.1}x ours) |",
            theirs.as_secs_f64() * 1000.0,
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    } else {
        println!("| gpgv + python3 | failed (is gpgv installed?) |");
    }
    Ok(())
}

fn main() -> R<()> {
    let a = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let base = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let key = SigningKey::generate("bench <bench@example.invalid>")?;
    println!(
        "# streamvault sync benchmark ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    scenario("small", &base, a.small.0, a.small.1, a.jobs, &key)?;
    scenario("large", &base, a.large.0, a.large.1, a.jobs, &key)?;
    real_file()?;
    Ok(())
}

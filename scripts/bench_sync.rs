//! Sync benchmark (run through `scripts/bench-sync.sh`): issue 13's table, in one run, on one
//! nginx serving one generated signed stream over loopback, medians of `--runs` (default 3):
//!
//! | work | raw curl -Z ×J (files to disk) | python sstream-mirror | streamvault sync | mirror |
//!
//! with every column's ratio against raw curl, plus the floors a reader needs to judge them: curl
//! with the bodies to `/dev/null`, and curl to disk followed by `sha256sum` of every file (the
//! hash a mirror must compute, on as many processes as there are cores). Each cell is a fresh
//! run of a subprocess under `/usr/bin/time`, so the CPU time (user + sys) is reported too, per
//! GiB moved. Then the bytes and requests of an unchanged re-sync (from nginx's access log), and
//! verify + parse of the real 2.5 MB signed products file against `gpgv` + `python3`.
//!
//! Usage: bench_sync [--small N SIZE] [--large N SIZE] [--jobs J] [--runs R] [--dir DIR]
//! Environment: SSTREAM_MIRROR (reference tool; default target/compat-venv/bin/sstream-mirror),
//! STREAMVAULT (our binary; default target/release/streamvault), NGINX (default `nginx`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use streamvault::openpgp::{self, Keyring, SigningKey};
use streamvault::streamgen::{self, Bulk, StreamSpec};
use streamvault::streams;

type R<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    small: (usize, u64),
    large: (usize, u64),
    jobs: usize,
    runs: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> R<Args> {
    let mut a = Args {
        small: (2000, 256 * 1024),
        large: (4, 256 * 1024 * 1024),
        jobs: 4,
        runs: 3,
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
            "--runs" => {
                a.runs = (num(argv.get(i + 1))? as usize).max(1);
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

/// Wall and CPU (user + sys, from `/usr/bin/time`) of one subprocess run.
#[derive(Debug, Clone, Copy)]
struct Cost {
    wall: Duration,
    cpu: Duration,
}

/// Run `cmd` under `/usr/bin/time`; an error when it fails.
fn timed(cmd: &mut Command, scratch: &Path) -> R<Cost> {
    let out = scratch.join("time.out");
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%U %S")
        .arg("-o")
        .arg(&out)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    let t = Instant::now();
    let o = wrapped.stdout(Stdio::null()).output()?;
    let wall = t.elapsed();
    if !o.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
                .join(" / ")
        )
        .into());
    }
    let text = std::fs::read_to_string(&out)?;
    let cpu: f64 = text
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|s| s.parse::<f64>().ok())
        .sum();
    Ok(Cost {
        wall,
        cpu: Duration::from_secs_f64(cpu),
    })
}

/// Median by wall of `runs` runs of `f` (each gets a fresh scratch directory, removed after).
fn median(runs: usize, dir: &Path, mut f: impl FnMut(&Path) -> R<Cost>) -> R<Cost> {
    let mut v = Vec::new();
    for i in 0..runs {
        let scratch = dir.join(format!("run-{i}"));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let r = f(&scratch);
        let _ = std::fs::remove_dir_all(&scratch);
        v.push(r?);
    }
    v.sort_by_key(|c| c.wall);
    Ok(v[v.len() / 2])
}

/// nginx on a free loopback port serving `tree`, logging `$body_bytes_sent` per request.
struct Nginx {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Nginx {
    fn start(tree: &Path, dir: &Path) -> R<Nginx> {
        let bin = std::env::var("NGINX").unwrap_or_else(|_| "nginx".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let d = dir.display();
        std::fs::create_dir_all(dir.join("logs"))?;
        let log = dir.join("logs/access.log");
        let conf = format!(
            "worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
             daemon off;\nevents {{ worker_connections 1024; }}\nhttp {{\n\
             log_format bytes '$status $body_bytes_sent';\naccess_log {log} bytes;\n\
             sendfile on;\ntcp_nopush on;\nclient_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {tree}; }}\n}}\n",
            log = log.display(),
            tree = tree.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let child = Command::new(&bin)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {bin} ({e}): apt-get install -y nginx-light"))?;
        let n = Nginx { child, port, log };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err("nginx did not start".into())
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn clear_log(&self) -> R<()> {
        std::fs::write(&self.log, b"")?;
        Ok(())
    }

    /// (requests, body bytes) logged since the last clear.
    fn logged(&self) -> R<(usize, u64)> {
        let text = std::fs::read_to_string(&self.log)?;
        let mut n = 0;
        let mut bytes = 0;
        for l in text.lines() {
            n += 1;
            bytes += l
                .split_whitespace()
                .nth(1)
                .and_then(|b| b.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok((n, bytes))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Tools {
    streamvault: PathBuf,
    python: Option<PathBuf>,
    cores: usize,
}

struct Row {
    label: String,
    bytes: u64,
    curl_disk: Cost,
    curl_null: Cost,
    curl_sha: Cost,
    python: Option<Cost>,
    sync: Cost,
    mirror: Cost,
    resync: (usize, u64),
}

/// Curl config fetching every URL to `out` (or `/dev/null`).
fn curl_config(path: &Path, url: &str, items: &[String], out: Option<&Path>) -> R<()> {
    let cfg: String = items
        .iter()
        .map(|p| {
            let o = out.map_or_else(
                || "/dev/null".to_string(),
                |o| o.join(p).display().to_string(),
            );
            format!("url = \"{url}{p}\"\noutput = \"{o}\"\n")
        })
        .collect();
    std::fs::write(path, cfg)?;
    Ok(())
}

fn curl(jobs: usize, config: &Path) -> Command {
    let mut c = Command::new("curl");
    c.args(["-s", "-f", "--create-dirs", "-Z", "--parallel-max"])
        .arg(jobs.to_string())
        .arg("-K")
        .arg(config);
    c
}

fn scenario(
    name: &str,
    base: &Path,
    files: usize,
    size: u64,
    a: &Args,
    key: &SigningKey,
    tools: &Tools,
) -> R<Row> {
    let jobs = a.jobs;
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
    let upstream = dir.join("upstream");
    let summary = streamgen::generate(&upstream, &spec, Some(&sign))?;
    eprintln!(
        "[{name}] generated {} files, {:.1} MiB in {:.1} s",
        summary.files,
        summary.bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    // nginx workers may run as another user
    Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(&dir)
        .status()?;
    let nginx = Nginx::start(&upstream, &dir.join("nginx"))?;
    let url = nginx.url();
    let items: Vec<String> = summary.items.iter().map(|i| i.path.clone()).collect();
    // warm the page cache for every tool alike
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat $(find '{}' -type f) > /dev/null",
            upstream.display()
        ))
        .status()?;

    let runs = a.runs;
    let cfg = dir.join("curl.cfg");
    curl_config(&cfg, &url, &items, None)?;
    eprintln!("[{name}] curl -Z to /dev/null");
    let curl_null = median(runs, &dir, |s| timed(&mut curl(jobs, &cfg), s))?;
    eprintln!("[{name}] curl -Z to disk");
    let curl_disk = median(runs, &dir, |s| {
        let cfg = s.join("curl.cfg");
        curl_config(&cfg, &url, &items, Some(&s.join("out")))?;
        timed(&mut curl(jobs, &cfg), s)
    })?;
    eprintln!("[{name}] curl -Z to disk + sha256sum");
    let curl_sha = median(runs, &dir, |s| {
        let cfg = s.join("curl.cfg");
        let out = s.join("out");
        curl_config(&cfg, &url, &items, Some(&out))?;
        let script = format!(
            "curl -s -f --create-dirs -Z --parallel-max {jobs} -K '{}' && \
             find '{}' -type f -print0 | xargs -0 -P {} -n {} sha256sum > /dev/null",
            cfg.display(),
            out.display(),
            tools.cores,
            items.len().div_ceil(tools.cores).max(1),
        );
        timed(Command::new("sh").arg("-c").arg(script), s)
    })?;
    let python = match &tools.python {
        Some(py) => {
            eprintln!("[{name}] python sstream-mirror");
            Some(median(runs, &dir, |s| {
                std::fs::create_dir_all(s.join("gnupg"))?;
                timed(
                    Command::new(py)
                        .arg(format!("--keyring={}", keyring.display()))
                        .arg(&url)
                        .arg(s.join("out"))
                        .env("GNUPGHOME", s.join("gnupg"))
                        .env("HOME", s),
                    s,
                )
            })?)
        }
        None => None,
    };
    let sv = |root: &Path| {
        let mut c = Command::new(&tools.streamvault);
        c.arg("--root").arg(root);
        c
    };
    eprintln!("[{name}] streamvault sync");
    let mut resync = (0, 0);
    let sync = median(runs, &dir, |s| {
        let root = s.join("store");
        let st = sv(&root)
            .args(["source", "add", "bench"])
            .arg(&url)
            .arg("--keyring")
            .arg(&keyring)
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            return Err("streamvault source add failed".into());
        }
        let sync = || {
            let mut c = sv(&root);
            c.args(["sync", "bench", "-q", "--jobs"])
                .arg(jobs.to_string());
            c
        };
        let cost = timed(&mut sync(), s)?;
        nginx.clear_log()?;
        timed(&mut sync(), s)?;
        resync = nginx.logged()?;
        Ok(cost)
    })?;
    eprintln!("[{name}] streamvault mirror");
    let mirror = median(runs, &dir, |s| {
        timed(
            sv(&s.join("store"))
                .args(["mirror", "--jobs"])
                .arg(jobs.to_string())
                .arg(format!("--keyring={}", keyring.display()))
                .arg(&url)
                .arg(s.join("out")),
            s,
        )
    })?;
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Row {
        label: format!(
            "{} × {} ({} files, {:.0} MiB)",
            files,
            human(size),
            summary.files,
            summary.bytes as f64 / 1048576.0
        ),
        bytes: summary.bytes,
        curl_disk,
        curl_null,
        curl_sha,
        python,
        sync,
        mirror,
        resync,
    })
}

fn human(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

fn print_tables(rows: &[Row], jobs: usize, runs: usize) {
    let s = |c: &Cost| c.wall.as_secs_f64();
    let cell = |c: &Cost, base: &Cost| format!("{:.2} s ({:.2}×)", s(c), s(c) / s(base).max(1e-9));
    println!("\n## full sync, wall time, median of {runs} (ratio against raw curl to disk)\n");
    println!(
        "| work | raw curl -Z ×{jobs} | python sstream-mirror | streamvault sync | mirror | curl → /dev/null | curl + sha256sum |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} s | {} | {} | {} | {} | {} |",
            r.label,
            s(&r.curl_disk),
            r.python
                .as_ref()
                .map_or("(not installed)".into(), |p| cell(p, &r.curl_disk)),
            cell(&r.sync, &r.curl_disk),
            cell(&r.mirror, &r.curl_disk),
            cell(&r.curl_null, &r.curl_disk),
            cell(&r.curl_sha, &r.curl_disk),
        );
    }
    println!("\n## CPU time (user + sys of the client process tree) per GiB, same runs\n");
    println!(
        "| work | raw curl -Z ×{jobs} | python sstream-mirror | streamvault sync | mirror | curl → /dev/null | curl + sha256sum |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let gib = r.bytes as f64 / (1u64 << 30) as f64;
        let c = |c: &Cost| format!("{:.2} s", c.cpu.as_secs_f64() / gib.max(1e-9));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            c(&r.curl_disk),
            r.python.as_ref().map_or("".into(), c),
            c(&r.sync),
            c(&r.mirror),
            c(&r.curl_null),
            c(&r.curl_sha),
        );
    }
    println!();
    for r in rows {
        println!(
            "unchanged re-sync, {}: {} requests, {} bytes of bodies",
            r.label, r.resync.0, r.resync.1
        );
    }
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
    println!("\n## real signed products file (2.5 MB, 7,008 items), mean of {runs} runs\n");
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
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir_in(top.join("target"))?;
    let base = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let python = std::env::var_os("SSTREAM_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| top.join("target/compat-venv/bin/sstream-mirror"));
    let tools = Tools {
        streamvault: std::env::var_os("STREAMVAULT")
            .map(PathBuf::from)
            .unwrap_or_else(|| top.join("target/release/streamvault")),
        python: python.is_file().then_some(python),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let key = SigningKey::generate("bench <bench@example.invalid>")?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "# streamvault sync benchmark: nginx on loopback, {} cores, --jobs {}, load average at start {}",
        tools.cores,
        a.jobs,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let rows = vec![
        scenario("small", &base, a.small.0, a.small.1, &a, &key, &tools)?,
        scenario("large", &base, a.large.0, a.large.1, &a, &key, &tools)?,
    ];
    print_tables(&rows, a.jobs, a.runs);
    real_file()?;
    Ok(())
}

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
//! The runs go in rounds (every tool once per round), and every timed run starts alike: after the
//! same deletions, `sync`ed before the timer starts (see [`rounds`] and [`Settle`]: on ext4
//! without a journal, files deleted less than 1–6 minutes ago slow every file creation down).
//!
//! Usage: bench_sync [--small N SIZE] [--large N SIZE] [--only small|large] [--jobs J] [--runs R]
//! [--dir DIR]
//! Environment: SSTREAM_MIRROR (reference tool; default target/compat-venv/bin/sstream-mirror),
//! STREAMVAULT (our binary; default target/release/streamvault), SV_BEFORE (another build, e.g.
//! a copy of the binary before a change: its sync and mirror run in the same rounds and a
//! before/after table is printed), SV_SETTLE=SECONDS (pause after each cleanup; 61 lets freed
//! inodes age out of ext4's recently-deleted window), SV_FSTRIM=1 (fstrim after each cleanup),
//! NGINX (default `nginx`). `bench-sync.sh` with SV_LOOPFS=SIZE runs all of it on a fresh
//! loop-mounted ext4 with a journal (`--dir` on it).

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
    settle: Settle,
    /// `--only small|large`: one of the two streams
    only: Option<String>,
}

fn parse_args() -> R<Args> {
    let mut a = Args {
        small: (2000, 256 * 1024),
        large: (4, 256 * 1024 * 1024),
        jobs: 4,
        runs: 3,
        dir: None,
        settle: Settle::from_env(),
        only: None,
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
            "--only" => {
                let o = argv.get(i + 1).ok_or("missing --only value")?;
                if o != "small" && o != "large" {
                    return Err("--only takes small or large".into());
                }
                a.only = Some(o.clone());
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
    /// the kernel's share of `cpu`
    sys: Duration,
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
    let times: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|s| s.parse::<f64>().ok())
        .collect();
    Ok(Cost {
        wall,
        cpu: Duration::from_secs_f64(times.iter().sum()),
        sys: Duration::from_secs_f64(times.get(1).copied().unwrap_or(0.0)),
    })
}

/// How the files of earlier runs are deleted before a timed run, the same for every tool: then
/// `sync` (the deletion's writeback and discards are not charged to the next run), then
/// optionally `fstrim` (`SV_FSTRIM=1`) and a pause (`SV_SETTLE=SECONDS`).
///
/// Why the pause matters: on ext4 without a journal (this machine's root), every inode freed in
/// the last 60 s (360 s while its inode table block is dirty) is skipped by each new inode
/// allocation in its block group (`recently_deleted()` in fs/ext4/ialloc.c), one buffer lookup
/// per skipped inode per created file, so a run right after the deletion of 2,000 files pays
/// seconds of kernel CPU that a run a minute later does not; curl pays it as much as we do.
#[derive(Clone, Copy)]
struct Settle {
    fstrim: bool,
    pause: Duration,
}

impl Settle {
    fn from_env() -> Settle {
        Settle {
            fstrim: std::env::var("SV_FSTRIM").is_ok_and(|v| v == "1"),
            pause: Duration::from_secs(
                std::env::var("SV_SETTLE")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
        }
    }

    fn describe(&self) -> String {
        format!(
            "deletions followed by sync{}{}",
            if self.fstrim { ", fstrim" } else { "" },
            if self.pause.is_zero() {
                String::new()
            } else {
                format!(", {} s pause", self.pause.as_secs())
            }
        )
    }

    /// Delete `dir`, make the deletion durable, and settle as configured.
    fn clean(&self, dir: &Path) -> R<()> {
        let _ = std::fs::remove_dir_all(dir);
        self.quiesce(dir)
    }

    /// Write back everything dirty (`sync`), then trim and pause as configured.
    fn quiesce(&self, dir: &Path) -> R<()> {
        Command::new("sync").status()?;
        if self.fstrim {
            let _ = Command::new("fstrim")
                .arg(mount_point(dir))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(self.pause);
        Ok(())
    }
}

/// The mount point holding `dir` (for fstrim).
fn mount_point(dir: &Path) -> String {
    Command::new("findmnt")
        .args(["-n", "-o", "TARGET", "-T"])
        .arg(dir.parent().unwrap_or(dir))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// One timed tool of a scenario: each run gets a fresh scratch directory.
type Tool<'a> = (&'static str, Box<dyn FnMut(&Path) -> R<Cost> + 'a>);

/// `runs` rounds; each round runs every tool once, in order, odd rounds in reverse order (so
/// that a drift of the machine's state during the benchmark reaches every tool alike, instead of
/// all runs of one tool, and no tool always runs right after the same one). The median by wall
/// of each tool's runs, in the tools' order.
///
/// With `keep_round` every tool of a round writes its own directory and the round's files are
/// deleted together when it ends ([`Settle::clean`]), so that every run of a round starts after
/// the same deletions (the previous round's); otherwise (files too large to keep a round of them)
/// each run starts after the previous run's deletion. On ext4 without a journal the difference
/// matters: a run after the deletion of 2,000 files pays seconds more than one after `/dev/null`.
/// Either way every run starts after a `sync`: nothing another run wrote is still dirty, so a
/// run that makes its own files durable (`syncfs` writes back the whole filesystem) never pays
/// for the writeback of another tool's files.
///
/// Every tool's runs, in round order (so that ratios can be taken within each round).
fn rounds(
    runs: usize,
    dir: &Path,
    settle: Settle,
    keep_round: bool,
    tools: &mut [Tool<'_>],
) -> R<Vec<Vec<Cost>>> {
    let mut all: Vec<Vec<Cost>> = vec![Vec::new(); tools.len()];
    let round_dir = dir.join("round");
    for round in 0..runs {
        settle.clean(&round_dir)?;
        // odd rounds run the tools in reverse: no tool always follows the same one
        let mut order: Vec<usize> = (0..tools.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (name, f) = &mut tools[i];
            let scratch = round_dir.join(format!("run-{i}"));
            if !keep_round {
                settle.clean(&round_dir)?;
            } else {
                // the earlier runs' files stay, but not their dirty pages: a tool that makes its
                // files durable (syncfs) would otherwise write back what curl left in the page
                // cache, up to 1 GiB of another tool's output, on its own clock
                settle.quiesce(&round_dir)?;
            }
            std::fs::create_dir_all(&scratch)?;
            let c = f(&scratch)?;
            eprintln!(
                "[round {}] {name}: wall {:.2} s, cpu {:.2} s (sys {:.2} s)",
                round + 1,
                c.wall.as_secs_f64(),
                c.cpu.as_secs_f64(),
                c.sys.as_secs_f64()
            );
            all[i].push(c);
        }
    }
    settle.clean(&round_dir)?;
    Ok(all)
}

/// The median by wall of some runs.
fn median(runs: &[Cost]) -> Cost {
    let mut v = runs.to_vec();
    v.sort_by_key(|c| c.wall);
    v[v.len() / 2]
}

/// The median of some numbers (0 when there are none).
fn median_f(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
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
    /// SIGTERM to the master, which stops its workers (a SIGKILL would leave them running,
    /// orphaned, still holding the port); SIGKILL only if that cannot be sent.
    fn drop(&mut self) {
        let termed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !termed {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

struct Tools {
    streamvault: PathBuf,
    /// SV_BEFORE: another build (e.g. before a change), timed in the same rounds
    before: Option<PathBuf>,
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
    /// sync and mirror of SV_BEFORE's binary, same rounds
    before: Option<(Cost, Cost)>,
    resync: (usize, u64),
    /// Per round: wall of sync, mirror (and SV_BEFORE's sync, mirror) over raw curl to disk's
    /// wall in that round.
    per_round: Vec<Vec<f64>>,
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
    let sv = |bin: &Path, root: &Path| {
        let mut c = Command::new(bin);
        c.arg("--root").arg(root);
        c
    };
    let resync = std::cell::Cell::new((0, 0));
    let mut list: Vec<Tool<'_>> = vec![
        (
            "curl -Z to /dev/null",
            Box::new(|s: &Path| timed(&mut curl(jobs, &cfg), s)),
        ),
        (
            "curl -Z to disk",
            Box::new(|s: &Path| {
                let cfg = s.join("curl.cfg");
                curl_config(&cfg, &url, &items, Some(&s.join("out")))?;
                timed(&mut curl(jobs, &cfg), s)
            }),
        ),
        (
            "curl -Z to disk + sha256sum",
            Box::new(|s: &Path| {
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
            }),
        ),
    ];
    if let Some(py) = &tools.python {
        let (url, keyring) = (&url, &keyring);
        list.push((
            "python sstream-mirror",
            Box::new(move |s: &Path| {
                std::fs::create_dir_all(s.join("gnupg"))?;
                timed(
                    Command::new(py)
                        .arg(format!("--keyring={}", keyring.display()))
                        .arg(url)
                        .arg(s.join("out"))
                        .env("GNUPGHOME", s.join("gnupg"))
                        .env("HOME", s),
                    s,
                )
            }),
        ));
    }
    // streamvault sync (then an unchanged re-sync, untimed, for its bytes) and mirror; of the
    // binary under test, then of SV_BEFORE's binary when given.
    let mut bins = vec![("", tools.streamvault.as_path())];
    if let Some(b) = &tools.before {
        bins.push((" (before)", b.as_path()));
    }
    for (i, (tag, bin)) in bins.iter().copied().enumerate() {
        let (url, keyring, nginx, resync) = (&url, &keyring, &nginx, &resync);
        list.push((
            if i == 0 {
                "streamvault sync"
            } else {
                "streamvault sync (before)"
            },
            Box::new(move |s: &Path| {
                let root = s.join("store");
                let st = sv(bin, &root)
                    .args(["source", "add", "bench"])
                    .arg(url)
                    .arg("--keyring")
                    .arg(keyring)
                    .stdout(Stdio::null())
                    .status()?;
                if !st.success() {
                    return Err(format!("streamvault{tag} source add failed").into());
                }
                let sync = || {
                    let mut c = sv(bin, &root);
                    c.args(["sync", "bench", "-q", "--jobs"])
                        .arg(jobs.to_string());
                    c
                };
                let cost = timed(&mut sync(), s)?;
                if i == 0 {
                    nginx.clear_log()?;
                    timed(&mut sync(), s)?;
                    resync.set(nginx.logged()?);
                }
                Ok(cost)
            }),
        ));
        list.push((
            if i == 0 {
                "streamvault mirror"
            } else {
                "streamvault mirror (before)"
            },
            Box::new(move |s: &Path| {
                timed(
                    sv(bin, &s.join("store"))
                        .args(["mirror", "--jobs"])
                        .arg(jobs.to_string())
                        .arg(format!("--keyring={}", keyring.display()))
                        .arg(url)
                        .arg(s.join("out")),
                    s,
                )
            }),
        ));
    }
    // A round's outputs kept until it ends when they fit in 3 GiB (each tool but curl to
    // /dev/null writes the stream once; the stores' metadata is small).
    let keep_round = summary.bytes.saturating_mul(list.len() as u64 - 1) <= 3 << 30;
    eprintln!(
        "[{name}] {runs} rounds; {}; {}",
        a.settle.describe(),
        if keep_round {
            "a round's files are deleted when it ends"
        } else {
            "each run's files are deleted before the next run"
        }
    );
    let all = rounds(runs, &dir, a.settle, keep_round, &mut list)?;
    drop(list);
    // the ratios within each round: curl to disk is the second tool, ours come after python
    let ours = 3 + usize::from(tools.python.is_some());
    let per_round: Vec<Vec<f64>> = (0..runs)
        .map(|r| {
            let curl = all[1][r].wall.as_secs_f64().max(1e-9);
            all[ours..]
                .iter()
                .map(|t| t[r].wall.as_secs_f64() / curl)
                .collect()
        })
        .collect();
    let mut costs = all.iter().map(|v| median(v));
    let mut next = || costs.next().ok_or("a tool has no cost");
    let curl_null = next()?;
    let curl_disk = next()?;
    let curl_sha = next()?;
    let python = match tools.python {
        Some(_) => Some(next()?),
        None => None,
    };
    let sync = next()?;
    let mirror = next()?;
    let before = match tools.before {
        Some(_) => Some((next()?, next()?)),
        None => None,
    };
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
        before,
        resync: resync.get(),
        per_round,
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
    if rows.iter().any(|r| r.before.is_some()) {
        println!("\n## this build against SV_BEFORE's, same rounds: wall, CPU (user + sys), sys\n");
        println!("| work | sync before | sync now | mirror before | mirror now |");
        println!("|---|---|---|---|---|");
        let c = |c: &Cost| {
            format!(
                "{:.2} s, CPU {:.2} s, sys {:.2} s",
                s(c),
                c.cpu.as_secs_f64(),
                c.sys.as_secs_f64()
            )
        };
        for r in rows {
            if let Some((sb, mb)) = &r.before {
                println!(
                    "| {} | {} | {} | {} | {} |",
                    r.label,
                    c(sb),
                    c(&r.sync),
                    c(mb),
                    c(&r.mirror)
                );
            }
        }
    }
    println!(
        "\n## wall over raw curl to disk's wall within each round (same filesystem state), and the \
         median of those per-round ratios beside the ratio of the medians\n"
    );
    for r in rows {
        let names: &[&str] = if r.before.is_some() {
            &["sync", "mirror", "sync (before)", "mirror (before)"]
        } else {
            &["sync", "mirror"]
        };
        let medians: Vec<f64> = [Some(&r.sync), Some(&r.mirror)]
            .into_iter()
            .chain(
                r.before
                    .as_ref()
                    .map_or([None, None], |(sb, mb)| [Some(sb), Some(mb)]),
            )
            .flatten()
            .map(|c| s(c) / s(&r.curl_disk).max(1e-9))
            .collect();
        for (k, name) in names.iter().enumerate() {
            let each: Vec<f64> = r
                .per_round
                .iter()
                .filter_map(|v| v.get(k).copied())
                .collect();
            println!(
                "- {}, {name}: rounds {}; median of per-round ratios **{:.2}×**, ratio of medians {:.2}×",
                r.label,
                each.iter()
                    .map(|x| format!("{x:.2}×"))
                    .collect::<Vec<_>>()
                    .join(" "),
                median_f(&each),
                medians.get(k).copied().unwrap_or(0.0),
            );
        }
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
        before: std::env::var_os("SV_BEFORE").map(PathBuf::from),
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
    // where the files go: the filesystem state matters (see `Settle`), so name it
    std::fs::create_dir_all(&base)?;
    if let Ok(o) = Command::new("findmnt")
        .args(["-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T"])
        .arg(&base)
        .output()
    {
        println!(
            "# work directory on {}",
            String::from_utf8_lossy(&o.stdout).trim()
        );
    }
    let mut rows = Vec::new();
    for (name, (n, size)) in [("small", a.small), ("large", a.large)] {
        if a.only.as_deref().is_none_or(|o| o == name) {
            rows.push(scenario(name, &base, n, size, &a, &key, &tools)?);
        }
    }
    print_tables(&rows, a.jobs, a.runs);
    real_file()?;
    Ok(())
}

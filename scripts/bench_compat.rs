//! sstream-mirror vs `streamvault mirror` on the same loopback tree (run through
//! `scripts/bench-compat.sh`): wall time, requests made and bytes read for a full mirror and an
//! unchanged re-run, for a stream of many small files and one of a few large files, and our
//! speed-up as a ratio. Both tools run as subprocesses with the same command line; the server is
//! the crate's own (its request log counts requests and body bytes).
//!
//! Usage: bench_compat [--small N SIZE] [--large N SIZE] [--jobs J]
//! Environment: SSTREAM_MIRROR (reference tool), STREAMVAULT (our binary).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use streamvault::openpgp::SigningKey;
use streamvault::serve::{self, ServeOptions, ServerHandle};
use streamvault::streamgen::{self, Bulk, StreamSpec};

type R<T> = Result<T, Box<dyn std::error::Error>>;

struct Run {
    wall: Duration,
    requests: usize,
    bytes: u64,
}

fn run(server: &ServerHandle, cmd: &mut Command) -> R<Run> {
    server.clear_requests();
    let t = Instant::now();
    let out = cmd.output()?;
    let wall = t.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let reqs = server.requests();
    Ok(Run {
        wall,
        requests: reqs.len(),
        bytes: reqs.iter().map(|r| r.bytes_sent).sum(),
    })
}

fn scenario(
    name: &str,
    base: &Path,
    files: usize,
    size: u64,
    tools: &(PathBuf, PathBuf),
    jobs: usize,
) -> R<()> {
    let (reference, ours) = tools;
    let dir = base.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let key = SigningKey::generate("bench <bench@example.invalid>")?;
    let keyring = dir.join("keyring.gpg");
    std::fs::write(&keyring, key.public_keyring_binary()?)?;
    let sign = |b: &[u8]| key.clearsign(b).map_err(|e| e.to_string());
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
    let server = serve::spawn(ServeOptions::new(dir.join("upstream")))?;
    let url = server.url();
    let gnupg = dir.join("gnupg");
    std::fs::create_dir_all(&gnupg)?;
    let k = format!("--keyring={}", keyring.display());

    let py_out = dir.join("py-out");
    let py = |out: &Path| {
        let mut c = Command::new(reference);
        c.arg(&k)
            .arg(&url)
            .arg(out)
            .env("GNUPGHOME", &gnupg)
            .env("HOME", &dir);
        c
    };
    let py_full = run(&server, &mut py(&py_out))?;
    let py_again = run(&server, &mut py(&py_out))?;
    let _ = std::fs::remove_dir_all(&py_out);

    let sv_out = dir.join("sv-out");
    let root = dir.join("store");
    let sv = |out: &Path| {
        let mut c = Command::new(ours);
        c.arg("--root")
            .arg(&root)
            .arg("mirror")
            .arg("--jobs")
            .arg(jobs.to_string())
            .arg(&k)
            .arg(&url)
            .arg(out);
        c
    };
    let sv_full = run(&server, &mut sv(&sv_out))?;
    let sv_again = run(&server, &mut sv(&sv_out))?;

    println!(
        "\n## {name}: {} files, {:.1} MiB (one signed index, 2 signed products files)",
        summary.files,
        summary.bytes as f64 / 1048576.0
    );
    println!("| run | tool | wall | requests | MiB read | speed-up |");
    println!("|---|---|---|---|---|---|");
    for (label, p, s) in [
        ("full mirror", &py_full, &sv_full),
        ("unchanged re-run", &py_again, &sv_again),
    ] {
        println!(
            "| {label} | sstream-mirror | {:.2} s | {} | {:.1} | |",
            p.wall.as_secs_f64(),
            p.requests,
            p.bytes as f64 / 1048576.0
        );
        println!(
            "| {label} | streamvault mirror --jobs {jobs} | {:.2} s | {} | {:.1} | {:.1}x |",
            s.wall.as_secs_f64(),
            s.requests,
            s.bytes as f64 / 1048576.0,
            p.wall.as_secs_f64() / s.wall.as_secs_f64().max(1e-9)
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> R<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut small = (2000usize, 256 * 1024u64);
    let mut large = (4usize, 256 * 1024 * 1024u64);
    let mut jobs = 4usize;
    let mut i = 0;
    while let Some(a) = argv.get(i) {
        let n = |k: usize| -> R<u64> { Ok(argv.get(i + k).ok_or("missing value")?.parse()?) };
        match a.as_str() {
            "--small" => {
                small = (n(1)? as usize, n(2)?);
                i += 3;
            }
            "--large" => {
                large = (n(1)? as usize, n(2)?);
                i += 3;
            }
            "--jobs" => {
                jobs = n(1)? as usize;
                i += 2;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::env::var_os("SSTREAM_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| top.join("target/compat-venv/bin/sstream-mirror"));
    let ours = std::env::var_os("STREAMVAULT")
        .map(PathBuf::from)
        .unwrap_or_else(|| top.join("target/release/streamvault"));
    let tmp = tempfile::tempdir()?;
    println!(
        "# sstream-mirror (python-simplestreams 0.1.0.post59) vs streamvault mirror, loopback"
    );
    let tools = (reference, ours);
    scenario("small", tmp.path(), small.0, small.1, &tools, jobs)?;
    scenario("large", tmp.path(), large.0, large.1, &tools, jobs)?;
    Ok(())
}

//! `streamvault serve` as a production server: flips under concurrent readers, file-descriptor
//! exhaustion, connection limits and idle clients (issue 8 items 8 and 11), and the features of
//! issue 14 (mounts, listings, TLS, logs, metrics, status). The real binary runs as a child
//! process on 127.0.0.1:0 and is stopped by its pid.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::common::bin;

/// A `streamvault serve` child process; killed (by pid) when dropped.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    /// The first stderr line ("serving … at http(s)://ADDR/ …").
    pub banner: String,
}

impl Served {
    /// Start `[prefix…] streamvault --root ROOT serve ARGS… --listen 127.0.0.1:0`.
    pub fn start(prefix: &[&str], root: &Path, args: &[&str]) -> Served {
        let mut cmd = if let Some((first, rest)) = prefix.split_first() {
            let mut c = Command::new(first);
            c.args(rest).arg(bin());
            c
        } else {
            Command::new(bin())
        };
        cmd.arg("--root")
            .arg(root)
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let banner = lines.next().expect("banner").expect("banner");
        // keep draining stderr so the child never blocks on it
        std::thread::spawn(move || for _ in lines {});
        let addr = banner
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {banner:?}"));
        Served {
            child,
            addr,
            banner,
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One response over a fresh connection: status, headers (lower-case names), body.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub fn parse_response(buf: &[u8]) -> Result<Resp, String> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    })
}

/// `GET path` with `Connection: close` and a read timeout.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Resp, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    parse_response(&buf)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `base/gen1` and `base/gen2` with the same names and different bytes, `base/current` → gen1.
fn two_generations(base: &Path, files: usize) -> PathBuf {
    for g in 1..=2u8 {
        for i in 0..files {
            let body = vec![b'0' + g; 1000 + i];
            write(&base.join(format!("gen{g}/streams/v1/f{i}.json")), &body);
            write(&base.join(format!("gen{g}/items/i{i}.img")), &body);
        }
    }
    let link = base.join("current");
    std::os::unix::fs::symlink("gen1", &link).unwrap();
    link
}

/// Flip `link` between gen1 and gen2 `n` times with one rename each (as publish does).
fn flip(link: &Path, n: usize) {
    let tmp = link.with_extension("new");
    for i in 0..n {
        let target = if i % 2 == 0 { "gen2" } else { "gen1" };
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        std::fs::rename(&tmp, link).unwrap();
    }
}

/// Issue 8 item 8: 1000 flips of the served link (at `/` and under a mount) while eight HTTP
/// readers fetch files that exist in both trees: no error, no 404, never a mixed body.
#[test]
fn flips_under_concurrent_http_readers_give_no_404() {
    let base = tempfile::tempdir().unwrap();
    let link = two_generations(base.path(), 8);
    let mount = format!("/maas/stable={}", link.display());
    let server = Served::start(
        &[],
        &base.path().join("no-store"),
        &[link.to_str().unwrap(), "--mount", &mount],
    );
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..8)
        .map(|r| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let (mut ok, mut problems) = (0u64, Vec::new());
                let mut i = r;
                while !stop.load(Ordering::SeqCst) {
                    let prefix = if i % 2 == 0 { "" } else { "/maas/stable" };
                    let file = if i % 3 == 0 {
                        format!("{prefix}/streams/v1/f{}.json", i % 8)
                    } else {
                        format!("{prefix}/items/i{}.img", i % 8)
                    };
                    match get(addr, &file, Duration::from_secs(10)) {
                        Ok(resp)
                            if resp.status == 200
                                && resp.body.len() == 1000 + i % 8
                                && (resp.body.iter().all(|b| *b == b'1')
                                    || resp.body.iter().all(|b| *b == b'2')) =>
                        {
                            ok += 1;
                        }
                        Ok(resp) => problems.push(format!("{file}: HTTP {}", resp.status)),
                        Err(e) => problems.push(format!("{file}: {e}")),
                    }
                    i += 1;
                }
                (ok, problems)
            })
        })
        .collect();
    for _ in 0..10 {
        flip(&link, 100);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for h in readers {
        let (ok, problems) = h.join().unwrap();
        assert!(
            problems.is_empty(),
            "{} problems, e.g. {:?}",
            problems.len(),
            &problems[..problems.len().min(5)]
        );
        total += ok;
    }
    assert!(total >= 100, "only {total} reads");
    eprintln!("{total} reads during 1000 flips: 0 errors, 0 404s");
}

/// Issue 8 item 11: when the server runs out of file descriptors, a file that exists is
/// answered `503` with `Retry-After`, never `404`. (`--max-connections` is set far above the
/// limit on purpose, to reach descriptor exhaustion.)
#[test]
fn out_of_file_descriptors_is_503_never_404() {
    let base = tempfile::tempdir().unwrap();
    write(&base.path().join("tree/item.img"), b"data");
    let tree = base.path().join("tree");
    let server = Served::start(
        &["prlimit", "--nofile=64:64", "--"],
        &base.path().join("no-store"),
        &[tree.to_str().unwrap(), "--max-connections", "100000"],
    );
    let mut idle = Vec::new();
    let mut seen = Vec::new();
    let mut answered_busy = None;
    for k in 0..80 {
        match get(server.addr, "/item.img", Duration::from_secs(2)) {
            Ok(r) if r.status == 200 => {}
            Ok(r) => {
                seen.push((k, r.status, r.header("retry-after").map(str::to_owned)));
                answered_busy = Some(r);
                break;
            }
            // accept(2) itself failed: the probe waits in the backlog; not an answer
            Err(_) => break,
        }
        idle.push(TcpStream::connect(server.addr).unwrap());
        // let the server accept it before the next probe
        std::thread::sleep(Duration::from_millis(30));
    }
    let resp = answered_busy.unwrap_or_else(|| panic!("never reached the fd limit: {seen:?}"));
    assert_eq!(resp.status, 503, "{seen:?}");
    assert_eq!(resp.header("retry-after"), Some("1"));
    // With the idle clients gone, the same file is served again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(server.addr, "/item.img", Duration::from_secs(5)).unwrap();
        if r.status == 200 {
            assert_eq!(r.body, b"data");
            break;
        }
        assert_eq!(r.status, 503);
        assert!(Instant::now() < deadline, "still busy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The soft open-file limit is raised to the hard one at start.
#[test]
fn the_soft_nofile_limit_is_raised_to_the_hard_one() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("tree")).unwrap();
    let server = Served::start(
        &["prlimit", "--nofile=100:2000", "--"],
        &base.path().join("no-store"),
        &[base.path().join("tree").to_str().unwrap()],
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums, ["2000", "2000"], "{line}");
    // and the default bound follows it: (2000 - 64) / 2
    assert!(
        server.banner.contains("max 968 connections"),
        "{}",
        server.banner
    );
}

/// Open `n` connections that never send a byte.
fn idle_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok())
        .collect()
}

/// Issue 8 item 11 / issue 14: 300 idle connections, then 1,100 under `nofile` 1024 (more than
/// the server may hold: the idle ones are dropped to make room) do not keep a real request
/// waiting. The bound is 5 s to stay clear of machine load; before the fix such a request waited
/// for the 30 s header timeout. The measured delay is printed.
#[test]
fn idle_connections_do_not_block_a_real_request() {
    let base = tempfile::tempdir().unwrap();
    write(&base.path().join("tree/item.img"), b"data");
    let tree = base.path().join("tree");
    for (prefix, n) in [
        (&[][..], 300),
        (&["prlimit", "--nofile=1024:1024", "--"][..], 1100),
    ] {
        let server = Served::start(
            prefix,
            &base.path().join("no-store"),
            &[tree.to_str().unwrap()],
        );
        let idle = idle_clients(server.addr, n);
        assert!(idle.len() >= n - 10, "only {} idle clients", idle.len());
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        let r = get(server.addr, "/item.img", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{n} idle clients: the request failed: {e}"));
        let took = t.elapsed();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"data"[..]),
            "{n} idle"
        );
        eprintln!("{n} idle connections: a real request took {took:?}");
        drop(idle);
    }
}

/// When every slot is busy (no idle connection to drop), a new client gets 503 + Retry-After.
#[test]
fn full_of_busy_connections_answers_503() {
    let base = tempfile::tempdir().unwrap();
    write(&base.path().join("tree/big.img"), &vec![7u8; 8 << 20]);
    write(&base.path().join("tree/small"), b"s");
    let tree = base.path().join("tree");
    let server = Served::start(
        &[],
        &base.path().join("no-store"),
        &[tree.to_str().unwrap(), "--max-connections", "2"],
    );
    // two clients that ask for a big file and do not read it: busy, not idle
    let busy: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            write!(s, "GET /big.img HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = get(server.addr, "/small", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(busy);
}

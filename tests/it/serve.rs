//! `streamvault serve` as a production server: flips under concurrent readers, file-descriptor
//! exhaustion, connection limits and idle clients (issue 8 items 8 and 11), and the features of
//! issue 14 (mounts, listings, TLS, logs, metrics, status). The real binary runs as a child
//! process on 127.0.0.1:0 and is stopped by its pid.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Served, get, write};

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
/// readers fetch files that exist in both trees: no error, no 404, never a mixed body. (This
/// passes before the fix too; `flips_at_the_descriptor_limit_never_answer_404` is the one that
/// fails there.)
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

/// Issue 8 item 8, made able to fail: readers through `serve` hammer the very files whose link
/// flips, while idle clients are added one by one to well past the server's descriptor limit
/// (`nofile` 160). A file that exists in both trees must never be answered 404: each read is 200
/// with one tree's bytes, or 503 (busy). Before the fix (18fcdda, run with
/// `STREAMVAULT_SERVE_BIN=<that build>`) this fails with 20–45 × 404: every open error, EMFILE
/// included, was "not found", and connections were unbounded. Flips alone do not fail it there
/// (~47,000 flips, ~33,000 reads, 0 × 404): the old code already resolved the link once per
/// request, so the descriptor shortage is the part of the report a test can reproduce.
#[test]
fn flips_at_the_descriptor_limit_never_answer_404() {
    let base = tempfile::tempdir().unwrap();
    let link = two_generations(base.path(), 4);
    let server = Served::start(
        &["prlimit", "--nofile=160:160", "--"],
        &base.path().join("no-store"),
        &[link.to_str().unwrap()],
    );
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..6)
        .map(|r| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let (mut ok, mut busy, mut silent, mut problems) = (0u64, 0u64, 0u64, Vec::new());
                let mut i = r;
                while !stop.load(Ordering::SeqCst) {
                    let n = i % 4;
                    let file = if i % 2 == 0 {
                        format!("/items/i{n}.img")
                    } else {
                        format!("/streams/v1/f{n}.json")
                    };
                    match get(addr, &file, Duration::from_secs(2)) {
                        Ok(resp)
                            if resp.status == 200
                                && resp.body.len() == 1000 + n
                                && (resp.body.iter().all(|b| *b == b'1')
                                    || resp.body.iter().all(|b| *b == b'2')) =>
                        {
                            ok += 1;
                        }
                        Ok(resp) if resp.status == 503 => busy += 1,
                        Ok(resp) => problems.push(format!("{file}: HTTP {}", resp.status)),
                        // no answer (accept(2) failed, the probe waited in the backlog)
                        Err(_) => silent += 1,
                    }
                    i += 1;
                }
                (ok, busy, silent, problems)
            })
        })
        .collect();
    let flipper = {
        let stop = Arc::clone(&stop);
        let link = link.clone();
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::SeqCst) {
                flip(&link, 2);
                flips += 2;
            }
            flips
        })
    };
    // Idle clients, one at a time, to well past the limit (the server drops idle ones once it
    // is full; before the fix they used up its descriptors).
    let mut idle = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            idle.push(s);
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let flips = flipper.join().unwrap();
    let (mut ok, mut busy, mut silent, mut problems) = (0, 0, 0, Vec::new());
    for h in readers {
        let (o, b, s, p) = h.join().unwrap();
        (ok, busy, silent) = (ok + o, busy + b, silent + s);
        problems.extend(p);
    }
    drop(idle);
    eprintln!(
        "{flips} flips, {} idle clients: {ok} reads 200, {busy} 503, {silent} unanswered, {} other",
        200,
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} reads answered neither 200 nor 503, e.g. {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    assert!(ok >= 100, "only {ok} reads succeeded");
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

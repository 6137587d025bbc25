//! `serve` features over plain HTTP with the real binary: directory listings (HTML and JSON, for
//! real directories and the published symlink), several trees with `--mount` (flipping under a
//! reader, symlink escapes refused), header limits and timeouts, `/-/metrics`, content types and
//! `Cache-Control`, graceful SIGTERM.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Resp, Served, get, p, parse_response, write};

const T: Duration = Duration::from_secs(10);

/// `GET` with extra header lines.
fn get_with(addr: std::net::SocketAddr, path: &str, extra: &str) -> Resp {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    parse_response(&buf).unwrap()
}

#[test]
fn listings_of_the_published_symlink_are_sorted_relative_and_stay_inside() {
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("trees/t1");
    write(&tree.join("streams/v1/index.sjson"), b"0123456789");
    write(&tree.join("b.img"), b"bb");
    write(&tree.join("a <&> b.txt"), b"a");
    write(&base.path().join("secret/passwd"), b"x");
    std::os::unix::fs::symlink("b.img", tree.join("c-link")).unwrap();
    std::os::unix::fs::symlink("../../secret", tree.join("escape")).unwrap();
    std::os::unix::fs::symlink("missing", tree.join("broken")).unwrap();
    let dest = base.path().join("dest");
    std::os::unix::fs::symlink("trees/t1", &dest).unwrap();
    let server = Served::start(&[], &base.path().join("no-store"), &[p(&dest)]);

    let r = get(server.addr, "/", T).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = String::from_utf8(r.body).unwrap();
    let pos = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {html}"))
    };
    // sorted, relative, escaped; directories end with `/`
    assert!(pos("href=\"a%20%3C%26%3E%20b.txt\"") < pos("href=\"b.img\""));
    assert!(
        pos("href=\"b.img\"") < pos("href=\"c-link\"")
            && pos("href=\"c-link\"") < pos("href=\"streams/\"")
    );
    assert!(html.contains("a &lt;&amp;&gt; b.txt"));
    assert!(
        !html.contains("escape") && !html.contains("broken") && !html.contains("../"),
        "{html}"
    );
    assert!(!html.contains("href=\"/"), "absolute link in {html}");

    // JSON by query or Accept
    let j = get(server.addr, "/streams/v1/?json", T).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
    assert_eq!(v["path"], "/streams/v1/");
    assert_eq!(v["entries"][0]["name"], "index.sjson");
    assert_eq!(v["entries"][0]["size"], 10);
    assert_eq!(v["entries"][0]["type"], "file");
    assert!(
        v["entries"][0]["modified"]
            .as_str()
            .unwrap()
            .ends_with("GMT")
    );
    let j = get_with(server.addr, "/", "Accept: application/json\r\n");
    let v: serde_json::Value = serde_json::from_slice(&j.body).unwrap();
    let names: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a <&> b.txt", "b.img", "c-link", "streams"]);
    assert_eq!(v["entries"][3]["type"], "directory");

    // a directory without its slash redirects to it, so relative links resolve
    let r = get(server.addr, "/streams?json", T).unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("/streams/?json"))
    );
    // escapes are still refused when asked for directly
    assert_eq!(get(server.addr, "/escape/passwd", T).unwrap().status, 403);
    assert_eq!(get(server.addr, "/escape/", T).unwrap().status, 403);
}

#[test]
fn mounts_serve_several_trees_and_see_flips_at_once() {
    let base = tempfile::tempdir().unwrap();
    for g in ["g1", "g2"] {
        write(
            &base.path().join(format!("maas/{g}/streams/v1/index.json")),
            g.as_bytes(),
        );
        write(&base.path().join(format!("maas/{g}/x.img")), g.as_bytes());
    }
    write(&base.path().join("lxd/t/streams/v1/index.json"), b"lxd");
    write(&base.path().join("outside"), b"secret");
    std::os::unix::fs::symlink("../../outside", base.path().join("lxd/t/leak")).unwrap();
    let stable = base.path().join("maas/current");
    std::os::unix::fs::symlink("g1", &stable).unwrap();
    let lxd = base.path().join("lxd/t");
    let server = Served::start(
        &[],
        &base.path().join("no-store"),
        &[
            "--mount",
            &format!("/maas/stable={}", p(&stable)),
            "--mount",
            &format!("/lxd={}", p(&lxd)),
        ],
    );
    let body = |p: &str| {
        let r = get(server.addr, p, T).unwrap();
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };
    assert_eq!(body("/maas/stable/x.img"), (200, "g1".into()));
    assert_eq!(body("/lxd/streams/v1/index.json"), (200, "lxd".into()));
    assert_eq!(body("/lxd/leak").0, 403);
    assert_eq!(body("/x.img").0, 404);
    assert_eq!(body("/maas/other/x.img").0, 404);
    // above the mounts: their names, listed
    let (code, root) = body("/?json");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&root).unwrap();
    assert_eq!(v["entries"][0]["name"], "lxd");
    assert_eq!(v["entries"][1]["name"], "maas");
    assert!(body("/maas/").1.contains("href=\"stable/\""));
    // a flip of the mounted DEST is seen by the very next request
    for (i, g) in ["g2", "g1", "g2"].iter().enumerate() {
        let tmp = base.path().join(format!("maas/tmp{i}"));
        std::os::unix::fs::symlink(g, &tmp).unwrap();
        std::fs::rename(&tmp, &stable).unwrap();
        assert_eq!(body("/maas/stable/x.img"), (200, (*g).into()));
        assert_eq!(
            body("/maas/stable/streams/v1/index.json"),
            (200, (*g).into())
        );
    }
    // metrics per mount
    let (code, metrics) = body("/-/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains("streamvault_serve_requests_total{mount=\"/maas/stable\",status=\"200\"} 7"),
        "{metrics}"
    );
    assert!(metrics.contains("streamvault_serve_requests_total{mount=\"/lxd\",status=\"403\"} 1"));
    assert!(metrics.contains("streamvault_serve_response_bytes_total{mount=\"/maas/stable\"} 14"));
    assert!(
        metrics.contains("streamvault_serve_requests_in_flight 1"),
        "{metrics}"
    );
    // a bad mount is one line at start
    let out = Command::new(crate::common::bin())
        .args(["serve", "--mount", "maas=/tmp", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.starts_with("streamvault: error: bad mount `maas=/tmp`"),
        "{err}"
    );
}

#[test]
fn content_types_and_cache_control() {
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("t");
    write(&tree.join("streams/v1/index.json"), b"{}");
    write(
        &tree.join("streams/v1/com.ubuntu.maas:stable:v3:download.sjson"),
        b"s",
    );
    write(&tree.join("bootloaders/x/root.tgz"), b"i");
    let server = Served::start(&[], &base.path().join("no-store"), &[p(&tree)]);
    let h = |p: &str| {
        let r = get(server.addr, p, T).unwrap();
        assert_eq!(r.status, 200, "{p}");
        (
            r.header("content-type").unwrap().to_owned(),
            r.header("cache-control").unwrap().to_owned(),
        )
    };
    assert_eq!(
        h("/streams/v1/index.json"),
        ("application/json".into(), "no-cache".into())
    );
    assert_eq!(
        h("/streams/v1/com.ubuntu.maas:stable:v3:download.sjson"),
        ("text/plain; charset=utf-8".into(), "no-cache".into())
    );
    assert_eq!(
        h("/bootloaders/x/root.tgz"),
        (
            "application/octet-stream".into(),
            "public, max-age=604800".into()
        )
    );
}

/// A request head far over the limit is answered `431`, and the client sees that answer: the
/// server reads and drops the rest of the head instead of closing on unread bytes (which makes
/// the kernel reset the connection: the client's write fails with `Broken pipe` and its read
/// with `Connection reset` before the answer).
#[test]
fn a_huge_request_head_gets_its_431_not_a_reset() {
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("t");
    write(&tree.join("f"), b"f");
    let server = Served::start(&[], &base.path().join("no-store"), &[p(&tree)]);
    for _ in 0..3 {
        let mut c = TcpStream::connect(server.addr).unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        // the first 20 KiB cross the 16 KiB limit: the server answers while the client is still
        // sending, as a slow client's does
        c.write_all(
            format!(
                "GET /f HTTP/1.1\r\nHost: x\r\nX-Big: {}",
                "a".repeat(20 << 10)
            )
            .as_bytes(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..10 {
            c.write_all(&[b'a'; 10 << 10])
                .expect("the rest of the head is read and dropped, not reset");
        }
        c.write_all(b"\r\nConnection: close\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        c.read_to_end(&mut buf)
            .expect("the answer arrives, not a reset");
        let r = parse_response(&buf).unwrap();
        assert_eq!(r.status, 431);
    }
}

#[test]
fn header_limits_and_timeouts() {
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("t");
    write(&tree.join("f"), b"f");
    let server = Served::start(
        &[],
        &base.path().join("no-store"),
        &[p(&tree), "--header-timeout", "1", "--idle-timeout", "2"],
    );
    // huge headers: 431
    let r = get_with(
        server.addr,
        "/f",
        &format!("X-Big: {}\r\n", "a".repeat(40_000)),
    );
    assert_eq!(r.status, 431);
    // a client that never finishes its headers is dropped after the header timeout
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(T)).unwrap();
    slow.write_all(b"GET /f HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "slow client kept for {:?}",
        t.elapsed()
    );
    // a keep-alive connection with nothing in flight is closed after the idle timeout
    let mut ka = TcpStream::connect(server.addr).unwrap();
    ka.set_read_timeout(Some(T)).unwrap();
    ka.write_all(b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = ka.read_to_end(&mut buf);
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(9),
        "{took:?}"
    );
}

#[test]
fn sigterm_lets_a_download_finish_then_exits_zero() {
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("t");
    let big = vec![5u8; 3 << 20];
    write(&tree.join("big"), &big);
    let mut server = Served::start(&[], &base.path().join("no-store"), &[p(&tree)]);
    let slow = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--limit-rate", "1M"])
        .arg(format!("http://{}/big", server.addr))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "still accepting after SIGTERM"
    );
    let done = slow.wait_with_output().unwrap();
    assert!(
        done.status.success() && done.stdout == big,
        "{} bytes",
        done.stdout.len()
    );
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// An access log whose reader never reads (a FIFO held open): serving goes on, lines are
/// dropped and counted instead.
#[test]
fn a_blocked_access_log_never_stalls_serving() {
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("t");
    write(&tree.join("f"), b"f");
    let fifo = base.path().join("log.fifo");
    let ok = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo");
    // holds the FIFO open for reading and never reads
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3<'{}'; sleep 120", p(&fifo)))
        .spawn()
        .unwrap();
    let server = Served::start(
        &[],
        &base.path().join("no-store"),
        &[p(&tree), "--access-log", p(&fifo)],
    );
    // 20,000 pipelined requests with a 2 KiB User-Agent: 40 MB of log lines
    let n = 20_000;
    let mut conn = TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(T)).unwrap();
    let mut reader = conn.try_clone().unwrap();
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut all = Vec::new();
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => all.extend_from_slice(&buf[..k]),
            }
        }
        String::from_utf8_lossy(&all)
            .matches("HTTP/1.1 200 OK")
            .count()
    });
    let agent = "a".repeat(2048);
    for i in 0..n {
        let close = if i == n - 1 {
            "Connection: close\r\n"
        } else {
            ""
        };
        write!(
            conn,
            "GET /f HTTP/1.1\r\nHost: x\r\nUser-Agent: {agent}\r\n{close}\r\n"
        )
        .unwrap();
    }
    let answered = counter.join().unwrap();
    assert_eq!(answered, n);
    let m = get(server.addr, "/-/metrics", T).unwrap();
    let text = String::from_utf8_lossy(&m.body);
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("streamvault_serve_access_log_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped > 0, "{text}");
    eprintln!("{n} requests answered with the log blocked; {dropped} log lines dropped");
    let _ = holder.kill();
    let _ = holder.wait();
}

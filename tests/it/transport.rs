//! Transport and URL safety against small hand-made servers (issue 8 items 2, 5, 6): a server
//! that records every request line, and one that trickles its body.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{Store, Upstream};
use streamvault::streamgen::V3_CONTENT_ID;

type Handler = dyn Fn(&str, &mut TcpStream) + Send + Sync;

/// A plain HTTP/1.1 server on 127.0.0.1 (one thread per connection, `Connection: close`) that
/// records the raw target of every request.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(handler: Arc<Handler>) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let handler = handler.clone();
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        match reader.read_line(&mut h) {
                            Ok(0) | Err(_) => break,
                            Ok(_) if h == "\r\n" || h == "\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    log.lock().unwrap().push(target.clone());
                    handler(&target, &mut conn);
                });
            }
        });
        Recorder { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn respond(conn: &mut TcpStream, status: &str, body: &[u8]) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(body);
}

/// Serve the files under `root` by their literal request path (no decoding, no `..`).
fn files(root: PathBuf) -> Arc<Handler> {
    Arc::new(move |target: &str, conn: &mut TcpStream| {
        let rel = target.trim_start_matches('/');
        let path = root.join(rel);
        match std::fs::read(&path) {
            Ok(body) if !rel.split('/').any(|c| c == "..") => respond(conn, "200 OK", &body),
            _ => respond(conn, "404 Not Found", b"not found"),
        }
    })
}

/// Announce 4096 bytes, then send one byte every 2 s.
fn trickle() -> Arc<Handler> {
    Arc::new(|_: &str, conn: &mut TcpStream| {
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n"
        );
        for _ in 0..4096 {
            if conn.write_all(b"x").and_then(|()| conn.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    })
}

/// Rewrite the v3 products document of `up` with `f` and sign it again.
fn rewrite_v3(up: &Upstream, f: impl FnOnce(&mut serde_json::Value)) {
    let dir = up.current().join("streams/v1");
    let json = dir.join(format!("{V3_CONTENT_ID}.json"));
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    f(&mut v);
    let text = serde_json::to_vec_pretty(&v).unwrap();
    std::fs::write(
        dir.join(format!("{V3_CONTENT_ID}.sjson")),
        up.key.clearsign(&text).unwrap(),
    )
    .unwrap();
}

/// The first item of the first version of the first product that has a path.
fn first_item(v: &mut serde_json::Value) -> &mut serde_json::Value {
    let products = v["products"].as_object_mut().unwrap();
    let (_, product) = products.iter_mut().next().unwrap();
    let versions = product["versions"].as_object_mut().unwrap();
    let (_, version) = versions.iter_mut().next().unwrap();
    let items = version["items"].as_object_mut().unwrap();
    items
        .values_mut()
        .find(|i| i.get("path").is_some())
        .unwrap()
}

fn add_source(store: &Store, name: &str, url: &str, up: &Upstream, extra: &[&str]) {
    let mut args = vec!["source", "add", name, url, "--keyring", up.keyring_str()];
    args.extend_from_slice(extra);
    store.run(&args).ok();
}

#[test]
fn percent_encoded_traversal_requests_nothing_outside_the_base() {
    let up = Upstream::new();
    // The secret beside the mirror, with the size and checksum the item will announce.
    let secret = b"top secret\n";
    std::fs::write(up.dir.path().join("secret"), secret).unwrap();
    let sha = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(secret))
    };
    rewrite_v3(&up, |v| {
        let it = first_item(v);
        it["path"] = "prod/%2e%2e/%2e%2e/secret".into();
        it["size"] = secret.len().into();
        it["sha256"] = sha.clone().into();
    });
    // Served from the parent of `current/`: the mirror base is `/current/`.
    let srv = Recorder::start(files(up.dir.path().to_path_buf()));
    let fallback = Recorder::start(files(up.dir.path().to_path_buf()));
    let base = format!("http://127.0.0.1:{}/current/", srv.port);
    let mirror = format!("http://127.0.0.1:{}/current/", fallback.port);
    let store = Store::new();
    add_source(&store, "m", &base, &up, &["--mirror", &mirror]);
    let r = store.run(&["sync", "m"]).fails();
    assert!(r.stderr.contains("percent-decoded"), "{}", r.stderr);
    for (name, s) in [("source", &srv), ("mirror", &fallback)] {
        let seen = s.seen();
        assert!(
            seen.iter()
                .all(|t| t.starts_with("/current/") && !t.to_lowercase().contains("%2e")),
            "{name} got requests outside the base: {seen:?}"
        );
    }
    assert!(store.snapshots("m").is_empty());
}

#[test]
fn a_base_without_path_or_slash_means_the_root() {
    let up = Upstream::new();
    let bare = up.url().trim_end_matches('/').to_string();
    assert!(bare.matches('/').count() == 2, "{bare}");
    let store = Store::new();
    add_source(&store, "m", &bare, &up, &[]);
    let r = store.run(&["sync", "m", "--json"]).ok();
    assert_eq!(r.json()[0]["outcome"]["kind"], "snapshot", "{}", r.stdout);
    // and as a --mirror fallback after a 404 on the source
    let empty = tempfile::tempdir().unwrap();
    let store = Store::new();
    let src = format!("file://{}/", empty.path().display());
    add_source(&store, "m", &src, &up, &["--mirror", &bare]);
    let r = store.run(&["sync", "m", "--json"]).ok();
    assert_eq!(r.json()[0]["outcome"]["kind"], "snapshot", "{}", r.stdout);
}

#[test]
fn passwords_with_query_and_fragment_characters_are_redacted() {
    // Nothing listens on the port: every sync fails with one line naming the URL.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = Store::new();
    for (i, pw) in [
        "s3cr%3Ft",
        "s3cr%23t",
        "s3cr%3F%23t%40x",
        "s3cr?t",
        "s3cr#t",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("s{i}");
        let url = format!("http://user:{pw}@127.0.0.1:{port}/m/");
        store
            .run(&["source", "add", &name, &url, "--no-verify"])
            .ok();
        let r = store.run(&["sync", &name, "--retries", "0"]).fails();
        assert!(!r.stderr.contains("s3cr"), "password in: {}", r.stderr);
        assert!(r.stderr.contains("user:***@"), "{}", r.stderr);
    }
}

fn run_with_watchdog(store: &Store, args: &[&str]) -> (crate::common::Run, Duration) {
    let start = Instant::now();
    let mut child = store
        .cmd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Not a timing assertion: before the speed limit existed this sync never ended.
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("a trickling server kept the sync busy for 3 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let run = crate::common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, start.elapsed())
}

#[test]
fn a_trickling_server_fails_the_sync_by_the_default_speed_limit() {
    let srv = Recorder::start(trickle());
    let store = Store::new();
    let url = format!("http://127.0.0.1:{}/m/", srv.port);
    store.run(&["source", "add", "t", &url, "--no-verify"]).ok();
    let (r, took) = run_with_watchdog(&store, &["sync", "t", "--retries", "0"]);
    let r = r.fails();
    assert!(
        r.stderr.contains("slower than 1024 bytes/s for 20 s"),
        "{}",
        r.stderr
    );
    eprintln!("trickle, defaults, --retries 0: failed after {took:?}");
}

#[test]
fn the_request_deadline_and_the_speed_options_are_settable() {
    let srv = Recorder::start(trickle());
    let store = Store::new();
    let url = format!("http://127.0.0.1:{}/m/", srv.port);
    store.run(&["source", "add", "t", &url, "--no-verify"]).ok();
    let (r, _) = run_with_watchdog(
        &store,
        &[
            "sync",
            "t",
            "--retries",
            "0",
            "--speed-limit",
            "0",
            "--request-timeout",
            "3",
        ],
    );
    let r = r.fails();
    assert!(
        r.stderr.contains("did not finish within 3 s"),
        "{}",
        r.stderr
    );
    let (r, _) = run_with_watchdog(
        &store,
        &[
            "sync",
            "t",
            "--retries",
            "1",
            "--speed-limit",
            "2k",
            "--speed-time",
            "2",
        ],
    );
    let r = r.fails();
    assert!(
        r.stderr.contains("slower than 2048 bytes/s for 2 s"),
        "{}",
        r.stderr
    );
    // retried like any failure: one request, then one more
    let seen = srv.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
}

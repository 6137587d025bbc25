//! End-to-end tests of the server: a real reqwest client (or a raw TCP socket, for paths a URL
//! library would normalise) against a server spawned on 127.0.0.1:0.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

const COLON_PATH: &str = "streams/v1/com.ubuntu.maas:stable:v3:download.sjson";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

fn big_content() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut v = vec![0u8; 1024 * 1024 + 123];
    rng.fill(&mut v);
    v
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `base/tree` with some files and symlinks, and `base/outside/secret.txt` next to it.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("tree");
    write(&tree.join(COLON_PATH), b"signed doc\n");
    write(&tree.join("streams/v1/index.json"), b"{}\n");
    write(&tree.join("small.txt"), b"0123456789");
    write(&tree.join("empty"), b"");
    write(&tree.join("big.bin"), &big_content());
    write(&tree.join("dir/inner.txt"), b"inner");
    write(&base.path().join("outside/secret.txt"), b"secret");
    std::os::unix::fs::symlink("small.txt", tree.join("link-inside")).unwrap();
    std::os::unix::fs::symlink(base.path().join("outside"), tree.join("escape")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", tree.join("escape-file")).unwrap();
    (base, tree)
}

fn start(root: &Path) -> ServerHandle {
    spawn(ServeOptions::new(root)).unwrap()
}

async fn get(url: String, headers: &[(&'static str, &str)]) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let h = resp.headers().clone();
    (status, h, resp.bytes().await.unwrap().to_vec())
}

/// Send a request line as-is and return the status code.
async fn raw_status(addr: SocketAddr, target: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

fn hdr(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(name).unwrap().to_str().unwrap()
}

#[tokio::test]
async fn full_get_headers_and_body() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert!(server.url().ends_with('/'));

    let (status, h, body) = get(format!("{}big.bin", server.url()), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, big_content());
    assert_eq!(
        hdr(&h, header::CONTENT_LENGTH),
        (1024 * 1024 + 123).to_string()
    );
    assert_eq!(hdr(&h, header::CONTENT_TYPE), "application/octet-stream");
    assert_eq!(hdr(&h, header::ACCEPT_RANGES), "bytes");
    let etag = hdr(&h, header::ETAG);
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.matches('-').count() == 2);
    let lm = httpdate::parse_http_date(hdr(&h, header::LAST_MODIFIED)).unwrap();
    let mtime = std::fs::metadata(tree.join("big.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(mtime.duration_since(lm).unwrap() < Duration::from_secs(1));

    let (status, h, body) = get(format!("{}streams/v1/index.json", server.url()), &[]).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, &b"{}\n"[..]));
    assert_eq!(hdr(&h, header::CONTENT_TYPE), "application/json");

    // names with colons, raw and percent-encoded
    for path in [COLON_PATH.to_owned(), COLON_PATH.replace(':', "%3A")] {
        let (status, _, body) = get(format!("{}{path}", server.url()), &[]).await;
        assert_eq!(
            (status, body.as_slice()),
            (StatusCode::OK, &b"signed doc\n"[..])
        );
    }
    let (status, h, body) = get(format!("{}empty", server.url()), &[]).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    assert_eq!(hdr(&h, header::CONTENT_LENGTH), "0");

    let log = server.requests();
    assert_eq!(log.len(), 5);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "/big.bin");
    assert_eq!(log[0].bytes_sent, 1024 * 1024 + 123);
    assert_eq!(log[3].path, format!("/{COLON_PATH}"));
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn head_and_method_not_allowed() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    let resp = client()
        .head(format!("{}small.txt", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hdr(resp.headers(), header::CONTENT_LENGTH), "10");
    assert!(resp.headers().contains_key(header::ETAG));
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = client()
        .post(format!("{}small.txt", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(hdr(resp.headers(), header::ALLOW), "GET, HEAD");
    let log = server.requests();
    assert_eq!(
        (log[0].method.as_str(), log[0].status, log[0].bytes_sent),
        ("HEAD", 200, 0)
    );
    assert_eq!((log[1].method.as_str(), log[1].status), ("POST", 405));
}

#[tokio::test]
async fn ranges() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    let url = format!("{}small.txt", server.url());
    let cases: [(&str, StatusCode, &[u8], Option<&str>); 7] = [
        (
            "bytes=2-5",
            StatusCode::PARTIAL_CONTENT,
            b"2345",
            Some("bytes 2-5/10"),
        ),
        (
            "bytes=7-",
            StatusCode::PARTIAL_CONTENT,
            b"789",
            Some("bytes 7-9/10"),
        ),
        (
            "bytes=-3",
            StatusCode::PARTIAL_CONTENT,
            b"789",
            Some("bytes 7-9/10"),
        ),
        (
            "bytes=8-100",
            StatusCode::PARTIAL_CONTENT,
            b"89",
            Some("bytes 8-9/10"),
        ),
        (
            "bytes=10-",
            StatusCode::RANGE_NOT_SATISFIABLE,
            b"",
            Some("bytes */10"),
        ),
        ("bytes=0-1,4-5", StatusCode::OK, b"0123456789", None),
        ("bytes=x-y", StatusCode::OK, b"0123456789", None),
    ];
    for (range, want_status, want_body, want_cr) in cases {
        let (status, h, body) = get(url.clone(), &[("range", range)]).await;
        assert_eq!(status, want_status, "{range}");
        assert_eq!(body, want_body, "{range}");
        assert_eq!(
            h.get(header::CONTENT_RANGE).map(|v| v.to_str().unwrap()),
            want_cr,
            "{range}"
        );
        assert_eq!(
            hdr(&h, header::CONTENT_LENGTH),
            want_body.len().to_string(),
            "{range}"
        );
    }
    // a range of a big file is streamed from the right offset
    let (status, _, body) = get(
        format!("{}big.bin", server.url()),
        &[("range", "bytes=1000000-")],
    )
    .await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, big_content()[1_000_000..]);
    let log = server.requests();
    assert_eq!(log[0].range.as_deref(), Some("bytes=2-5"));
    assert_eq!((log[0].status, log[0].bytes_sent), (206, 4));
    assert_eq!(log[4].status, 416);
}

#[tokio::test]
async fn conditional_requests() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    let url = format!("{}small.txt", server.url());
    let (_, h, _) = get(url.clone(), &[]).await;
    let etag = hdr(&h, header::ETAG).to_owned();
    let lm = hdr(&h, header::LAST_MODIFIED).to_owned();

    let (status, h2, body) = get(url.clone(), &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(hdr(&h2, header::ETAG), etag);
    let (status, _, _) = get(url.clone(), &[("if-none-match", "\"other\"")]).await;
    assert_eq!(status, StatusCode::OK);

    // If-Range: still the same file → 206; changed → 200 full
    let (status, _, body) = get(url.clone(), &[("range", "bytes=5-"), ("if-range", &etag)]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"56789"[..])
    );
    let (status, _, body) = get(url.clone(), &[("range", "bytes=5-"), ("if-range", &lm)]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::PARTIAL_CONTENT, &b"56789"[..])
    );
    let (status, _, body) = get(url, &[("range", "bytes=5-"), ("if-range", "\"old\"")]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"0123456789"[..])
    );
}

#[tokio::test]
async fn traversal_and_escapes_are_refused() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    let addr = server.addr();
    for target in [
        "/../outside/secret.txt",
        "/dir/../../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/dir/%2E%2E/%2e%2e/outside/secret.txt",
        "/dir%2f..%2f..%2foutside/secret.txt",
        "/small.txt%00",
        "/dir%5c..%5csmall.txt",
        "/escape/secret.txt",
        "/escape-file",
    ] {
        assert_eq!(raw_status(addr, target).await, 403, "{target}");
    }
    assert_eq!(raw_status(addr, "/%zz").await, 400);
    for target in ["/missing", "/dir/missing/x", "/-/nothing"] {
        assert_eq!(raw_status(addr, target).await, 404, "{target}");
    }
    // directories are listed; without the slash they redirect to it (relative links work)
    assert_eq!(raw_status(addr, "/").await, 200);
    assert_eq!(raw_status(addr, "/dir/").await, 200);
    assert_eq!(raw_status(addr, "/dir").await, 301);
    // symlinks that stay inside the tree are fine; so are `.` and empty components
    assert_eq!(raw_status(addr, "/link-inside").await, 200);
    assert_eq!(raw_status(addr, "/./dir//inner.txt").await, 200);
    assert_eq!(raw_status(addr, "/small.txt?x=1").await, 200);
    let log = server.requests();
    assert_eq!(log[0].path, "/../outside/secret.txt");
    assert_eq!(log[0].status, 403);
}

#[tokio::test]
async fn root_symlink_flip_is_seen_by_the_next_request() {
    let base = tempfile::tempdir().unwrap();
    write(&base.path().join("gen1/f"), b"one");
    write(&base.path().join("gen2/f"), b"two!");
    let link = base.path().join("current");
    std::os::unix::fs::symlink("gen1", &link).unwrap();
    let server = start(&link);
    let url = format!("{}f", server.url());
    let (_, h1, body) = get(url.clone(), &[]).await;
    assert_eq!(body, b"one");
    let tmp = base.path().join("current.new");
    std::os::unix::fs::symlink("gen2", &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    let (_, h2, body) = get(url.clone(), &[]).await;
    assert_eq!(body, b"two!");
    assert_ne!(hdr(&h1, header::ETAG), hdr(&h2, header::ETAG));
    // root gone → 404, not an error of the server
    std::fs::remove_file(&link).unwrap();
    let (status, _, _) = get(url, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn basic_auth() {
    let (_base, tree) = fixture();
    let server = spawn(ServeOptions {
        basic_auth: Some(("maas".into(), "s3cret".into())),
        ..ServeOptions::new(&tree)
    })
    .unwrap();
    let url = format!("{}small.txt", server.url());
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
    let resp = client()
        .get(&url)
        .basic_auth("maas", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = client()
        .get(&url)
        .basic_auth("maas", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"0123456789");
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 200]);
}

#[test]
fn base64_matches_rfc_4648() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}

#[tokio::test]
async fn fault_error_rate_and_not_found_prefixes() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    server.set_faults(Faults {
        error_rate: 1.0,
        not_found_prefixes: vec!["streams/".into()],
        ..Faults::default()
    });
    let (status, _, _) = get(format!("{}small.txt", server.url()), &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _, _) = get(format!("{}streams/v1/index.json", server.url()), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.set_faults(Faults::default());
    let (status, _, _) = get(format!("{}small.txt", server.url()), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let log = server.requests();
    assert_eq!((log[0].status, log[0].fault), (500, Some(FaultKind::Error)));
    assert_eq!(
        (log[1].status, log[1].fault),
        (404, Some(FaultKind::NotFound))
    );
    assert_eq!((log[2].status, log[2].fault), (200, None));
}

#[tokio::test]
async fn fault_fail_first_n_per_path() {
    let (_base, tree) = fixture();
    let server = spawn(ServeOptions {
        faults: Faults {
            fail_first_n: 2,
            ..Faults::default()
        },
        ..ServeOptions::new(&tree)
    })
    .unwrap();
    let mut statuses = Vec::new();
    for path in [
        "small.txt",
        "small.txt",
        "big.bin",
        "small.txt",
        "big.bin",
        "big.bin",
    ] {
        statuses.push(get(format!("{}{path}", server.url()), &[]).await.0.as_u16());
    }
    assert_eq!(statuses, [500, 500, 500, 200, 500, 200]);
    let faults: Vec<_> = server.requests().iter().map(|r| r.fault).collect();
    assert_eq!(faults[0], Some(FaultKind::FailFirst));
    assert_eq!(faults[3], None);
}

#[tokio::test]
async fn fault_ignore_range() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    server.set_faults(Faults {
        ignore_range: true,
        ..Faults::default()
    });
    let (status, h, body) = get(
        format!("{}small.txt", server.url()),
        &[("range", "bytes=5-")],
    )
    .await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"0123456789"[..])
    );
    assert!(!h.contains_key(header::CONTENT_RANGE));
    let log = server.requests();
    assert_eq!(
        (log[0].status, log[0].fault, log[0].bytes_sent),
        (200, Some(FaultKind::IgnoreRange), 10)
    );
}

#[tokio::test]
async fn fault_truncate_closes_after_half_the_body() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    server.set_faults(Faults {
        truncate_rate: 1.0,
        ..Faults::default()
    });
    let len = big_content().len() as u64;
    let resp = client()
        .get(format!("{}big.bin", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.content_length(), Some(len));
    assert!(resp.bytes().await.is_err());
    let log = server.requests();
    assert_eq!(
        (log[0].status, log[0].fault),
        (200, Some(FaultKind::Truncate))
    );
    assert_eq!(log[0].bytes_sent, len / 2);
    // the server is still fine afterwards
    server.set_faults(Faults::default());
    let (status, _, body) = get(format!("{}big.bin", server.url()), &[]).await;
    assert_eq!((status, body.len() as u64), (StatusCode::OK, len));
}

#[tokio::test]
async fn fault_stall_pauses_mid_body() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    server.set_faults(Faults {
        stall: Some((1.0, Duration::from_millis(300))),
        ..Faults::default()
    });
    let t = Instant::now();
    let (status, _, body) = get(format!("{}big.bin", server.url()), &[]).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!((status, body), (StatusCode::OK, big_content()));
    assert_eq!(server.requests()[0].fault, Some(FaultKind::Stall));
}

#[tokio::test]
async fn fault_rates_are_deterministic_with_a_seed() {
    let (_base, tree) = fixture();
    let faults = Faults {
        seed: 1234,
        error_rate: 0.5,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let server = spawn(ServeOptions {
            faults: faults.clone(),
            ..ServeOptions::new(&tree)
        })
        .unwrap();
        let mut statuses = Vec::new();
        for i in 0..40 {
            let path = if i % 2 == 0 { "small.txt" } else { "empty" };
            statuses.push(get(format!("{}{path}", server.url()), &[]).await.0.as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    let errors = runs[0].iter().filter(|s| **s == 500).count();
    assert!((8..=32).contains(&errors), "{errors}");
}

#[tokio::test]
async fn run_on_serves_until_shutdown() {
    let (_base, tree) = fixture();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_on(listener, ServeOptions::new(&tree), async {
        let _ = stopped.await;
    }));
    let (status, _, body) = get(format!("http://{addr}/small.txt"), &[]).await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"0123456789"[..])
    );
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn shutdown_is_idempotent_and_frees_the_port() {
    let (_base, tree) = fixture();
    let mut server = start(&tree);
    let addr = server.addr();
    server.shutdown();
    server.shutdown();
    assert!(std::net::TcpStream::connect(addr).is_err());
    // a port that is taken
    let other = start(&tree);
    assert!(matches!(
        spawn(ServeOptions {
            listen: other.addr(),
            ..ServeOptions::new(&tree)
        }),
        Err(ServeError::Bind { .. })
    ));
}

#[tokio::test]
async fn a_flip_during_a_response_does_not_mix_trees() {
    let base = tempfile::tempdir().unwrap();
    let old = big_content();
    let new: Vec<u8> = old.iter().map(|b| b ^ 0xff).collect();
    write(&base.path().join("gen1/big.bin"), &old);
    write(&base.path().join("gen2/big.bin"), &new);
    let link = base.path().join("current");
    std::os::unix::fs::symlink("gen1", &link).unwrap();
    let server = spawn(ServeOptions {
        faults: Faults {
            stall: Some((1.0, Duration::from_millis(400))),
            ..Faults::default()
        },
        ..ServeOptions::new(&link)
    })
    .unwrap();
    let url = format!("{}big.bin", server.url());
    let pending = tokio::spawn(get(url.clone(), &[]));
    // flip while the first response is paused half-way
    tokio::time::sleep(Duration::from_millis(150)).await;
    let tmp = base.path().join("current.new");
    std::os::unix::fs::symlink("gen2", &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    let (status, _, body) = pending.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body == old, "the response mixed two trees");
    server.set_faults(Faults::default());
    assert!(get(url, &[]).await.2 == new);
    assert_eq!(server.requests()[0].fault, Some(FaultKind::Stall));
}

#[tokio::test]
async fn many_parallel_requests() {
    let (_base, tree) = fixture();
    let server = start(&tree);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..64 {
        let url = format!(
            "{}{}",
            server.url(),
            if i % 2 == 0 { "big.bin" } else { "small.txt" }
        );
        set.spawn(async move { get(url, &[]).await });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        let (status, _, body) = r.unwrap();
        assert_eq!(status, StatusCode::OK);
        total += body.len();
    }
    assert_eq!(total, 32 * big_content().len() + 32 * 10);
    assert_eq!(server.requests().len(), 64);
}

#[test]
fn debug_output_hides_the_password() {
    let opts = ServeOptions {
        basic_auth: Some(("maas".into(), "s3cret".into())),
        ..ServeOptions::new("/srv")
    };
    let text = format!("{opts:?}");
    assert!(text.contains("maas") && !text.contains("s3cret"), "{text}");
}

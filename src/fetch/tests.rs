//! Loopback tests of the fetch layer against tiny hand-written HTTP/1.1 servers
//! ([`server`]), so every misbehaviour (short bodies, stalls, 200 to Range, foreign ranges, 5xx,
//! 404) is exact. Most download tests are one [`download_case`]: a server, what is on disk
//! before, what is expected — and then only the assertions that matter.
//!
//! Checks invariant 6: mismatches, overlong bodies and answers that are not what was asked
//! never come back as a success.

mod server;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use self::server::{Reply, Req, Server};
use super::*;
use crate::checksum::{Algo, Checksums, MultiHasher};

// ---------------------------------------------------------------------------------------------
// helpers

fn options() -> FetchOptions {
    FetchOptions {
        retries: 3,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_millis(300),
        env_proxy: false,
        ..FetchOptions::default()
    }
}

fn fetcher() -> Fetcher {
    Fetcher::new(options()).unwrap()
}

/// Deterministic, non-repeating-looking content.
fn content(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn digests_of(data: &[u8], algos: &[Algo]) -> Digests {
    let mut h = MultiHasher::new(algos);
    h.update(data);
    h.finish()
}

/// Expect with the size and the given algorithm's checksum of `data`.
fn expect(data: &[u8], algo: Algo) -> Expect {
    let d = digests_of(data, &[algo]);
    let mut checksums = Checksums::default();
    checksums.set(algo, d.upstream.get(algo).unwrap().to_owned());
    Expect {
        size: Some(data.len() as u64),
        checksums,
    }
}

#[derive(Default)]
struct Rec {
    retries: Mutex<Vec<String>>,
    restarts: Mutex<Vec<String>>,
    bytes: AtomicU64,
}

impl Progress for Rec {
    fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    fn retry(&self, url: &str, attempt: u32, error: &dyn std::fmt::Display) {
        self.retries
            .lock()
            .unwrap()
            .push(format!("{attempt} {url}: {error}"));
    }
    fn restart(&self, url: &str) {
        self.restarts.lock().unwrap().push(url.to_owned());
    }
}

impl Rec {
    fn retries(&self) -> Vec<String> {
        self.retries.lock().unwrap().clone()
    }
    fn restarts(&self) -> usize {
        self.restarts.lock().unwrap().len()
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// One download test after it ran: the server (its request log), the partial file, the
/// fetcher (its counters), what the [`Progress`] saw, and the result.
struct Case {
    srv: Server,
    part: PathBuf,
    f: Fetcher,
    rec: Rec,
    got: Result<Downloaded>,
    _dir: tempfile::TempDir,
}

impl Case {
    /// The request log's paths.
    fn paths(&self) -> Vec<String> {
        self.srv.paths()
    }
    /// The request log.
    fn requests(&self) -> Vec<Req> {
        self.srv.requests()
    }
    /// The download, which must have succeeded.
    fn ok(&self) -> &Downloaded {
        match &self.got {
            Ok(d) => d,
            Err(e) => panic!("download failed: {e}"),
        }
    }
    /// The download's error, which must be one.
    fn err(&self) -> &Error {
        match &self.got {
            Ok(d) => panic!("download succeeded: {d:?}"),
            Err(e) => e,
        }
    }
    /// The bytes in the partial file.
    fn on_disk(&self) -> Vec<u8> {
        read(&self.part)
    }
}

/// Start a server answering with `handler`, put `before` into the partial file (`None`: no
/// file), and download `rel` against `want` with a fresh [`fetcher`] of `options`.
async fn download_case_with(
    o: FetchOptions,
    handler: impl Fn(usize, &Req) -> Reply + Send + Sync + 'static,
    before: Option<&[u8]>,
    rel: &str,
    want: &Expect,
) -> Case {
    let srv = Server::start(handler).await;
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("x.part");
    if let Some(bytes) = before {
        std::fs::write(&part, bytes).unwrap();
    }
    let f = Fetcher::new(o).unwrap();
    let rec = Rec::default();
    let got = f
        .download(&Location::new(srv.base()), rel, &part, want, &rec)
        .await;
    Case {
        srv,
        part,
        f,
        rec,
        got,
        _dir: dir,
    }
}

/// [`download_case_with`] the test [`options`], item `x`.
async fn download_case(
    handler: impl Fn(usize, &Req) -> Reply + Send + Sync + 'static,
    before: Option<&[u8]>,
    want: &Expect,
) -> Case {
    download_case_with(options(), handler, before, "x", want).await
}

// ---------------------------------------------------------------------------------------------
// downloads

#[tokio::test]
async fn plain_download_checksum_ok() {
    let data = content(100_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let c = download_case_with(options(), move |_, _| Reply::ok(&d), None, "a/x.img", &want).await;
    let got = c.ok();
    assert_eq!(got.digests, digests_of(&data, &[Algo::Sha256]));
    assert_eq!(got.url, format!("{}a/x.img", c.srv.base()));
    assert_eq!(got.resumed_from, 0);
    assert_eq!(c.on_disk(), data);
    assert_eq!(c.rec.bytes.load(Ordering::Relaxed), 100_000);
    assert_eq!(c.paths(), ["/a/x.img"]);
    assert!(c.requests()[0].header("range").is_none());
    assert!(
        c.requests()[0]
            .header("user-agent")
            .unwrap()
            .starts_with("streamvault/")
    );
    let s = c.f.stats();
    assert_eq!(
        (s.requests, s.bytes, s.retries, s.restarts),
        (1, 100_000, 0, 0)
    );
}

#[tokio::test]
async fn each_upstream_algorithm_alone() {
    let data = content(5000);
    let d = data.clone();
    let srv = Server::start(move |_, _| Reply::ok(&d)).await;
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher();
    for algo in [Algo::Sha512, Algo::Sha256, Algo::Md5] {
        let part = dir.path().join(algo.name());
        let got = f
            .download(
                &Location::new(srv.base()),
                "x",
                &part,
                &expect(&data, algo),
                &NoProgress,
            )
            .await
            .unwrap();
        // only the expected algorithm is computed, next to BLAKE3
        assert_eq!(got.digests, digests_of(&data, &[algo]), "{algo:?}");
        assert!(got.digests.upstream.get(algo).is_some());
        // a wrong value of that algorithm is caught
        let mut bad = expect(&data, algo);
        bad.checksums.set(algo, "0".repeat(algo.hex_len()));
        let e = f
            .download(&Location::new(srv.base()), "x", &part, &bad, &NoProgress)
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::ChecksumMismatch { algo: a, .. } if a == algo),
            "{e}"
        );
    }
    // nothing expected: every algorithm is computed
    let got = f
        .download(
            &Location::new(srv.base()),
            "x",
            &dir.path().join("all"),
            &Expect::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(
        got.digests,
        digests_of(&data, &[Algo::Md5, Algo::Sha256, Algo::Sha512])
    );
}

#[tokio::test]
async fn size_mismatch_is_an_error() {
    let data = content(1000);
    let d = data.clone();
    let mut want = expect(&data, Algo::Sha256);
    want.size = Some(1001);
    let c = download_case(move |_, _| Reply::ok(&d), None, &want).await;
    let e = c.err();
    assert!(
        matches!(
            e,
            Error::SizeMismatch {
                expected: 1001,
                found: 1000,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains(&format!("`{}x`", c.srv.base())),
        "{e}"
    );
    assert!(!c.part.exists());
    assert_eq!(c.paths().len(), 1, "a fresh mismatch is not retried");
}

#[tokio::test]
async fn checksum_mismatch_deletes_partial() {
    let data = content(1000);
    let mut evil = data.clone();
    evil[500] ^= 1;
    let want = expect(&data, Algo::Sha512);
    let c = download_case(move |_, _| Reply::ok(&evil), None, &want).await;
    let e = c.err();
    let Error::ChecksumMismatch {
        url,
        algo,
        expected,
        found,
    } = e
    else {
        panic!("{e}")
    };
    assert_eq!(url, &format!("{}x", c.srv.base()));
    assert_eq!(*algo, Algo::Sha512);
    assert_eq!(Some(expected.as_str()), want.checksums.sha512.as_deref());
    assert_ne!(expected, found);
    assert!(
        e.to_string().starts_with("sha512 mismatch for `http://"),
        "{e}"
    );
    assert!(!c.part.exists());
    assert_eq!(c.paths().len(), 1);
}

#[tokio::test]
async fn resume_with_correct_206() {
    let data = content(50_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let c = download_case(
        move |_, req| Reply::serve(req, &d),
        Some(&data[..12_345]),
        &want,
    )
    .await;
    let got = c.ok();
    assert_eq!(c.requests()[0].header("range"), Some("bytes=12345-"));
    assert_eq!(c.paths().len(), 1);
    assert_eq!(got.resumed_from, 12_345);
    assert_eq!(got.digests, digests_of(&data, &[Algo::Sha256]));
    assert_eq!(c.on_disk(), data);
    assert_eq!(c.rec.bytes.load(Ordering::Relaxed), 50_000 - 12_345);
    assert_eq!(c.rec.restarts(), 0);
}

#[tokio::test]
async fn complete_partial_is_verified_without_a_request() {
    let data = content(3000);
    let want = expect(&data, Algo::Sha256);
    let c = download_case(|_, _| Reply::status(500), Some(&data), &want).await;
    assert_eq!(c.ok().digests, digests_of(&data, &[Algo::Sha256]));
    assert!(c.paths().is_empty());
}

#[tokio::test]
async fn ok_200_to_range_restarts_from_zero() {
    let data = content(20_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    // what is on disk is even wrong: it must not survive
    let c = download_case(move |_, _| Reply::ok(&d), Some(&[0u8; 7000]), &want).await;
    let got = c.ok();
    assert_eq!(c.requests()[0].header("range"), Some("bytes=7000-"));
    assert_eq!(c.paths().len(), 1, "the 200 body itself is used");
    assert_eq!(got.resumed_from, 0);
    assert_eq!(c.on_disk(), data);
    assert_eq!(c.rec.restarts(), 1);
    assert!(c.rec.retries().is_empty());
    assert_eq!(c.f.stats().restarts, 1);
}

#[tokio::test]
async fn foreign_content_range_restarts() {
    let data = content(20_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    // answers every Range with bytes from 0 but claims the asked start; the full file otherwise
    let handler = move |_, req: &Req| match req.range_from() {
        Some(n) => Reply::partial_claiming(&d, n, n - 1),
        None => Reply::ok(&d),
    };
    let c = download_case(handler, Some(&data[..5000]), &want).await;
    let got = c.ok();
    let reqs = c.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), Some("bytes=5000-"));
    assert_eq!(reqs[1].header("range"), None);
    assert_eq!(got.resumed_from, 0);
    assert_eq!(c.on_disk(), data);
    assert_eq!(c.rec.restarts(), 1);
}

#[tokio::test]
async fn range_not_satisfiable_restarts() {
    let data = content(4000);
    let d = data.clone();
    let want = expect(&data, Algo::Md5);
    let handler = move |_, req: &Req| match req.range_from() {
        Some(_) => Reply::status(416),
        None => Reply::ok(&d),
    };
    let c = download_case(handler, Some(&data[..100]), &want).await;
    let got = c.ok();
    assert_eq!(c.paths().len(), 2);
    assert_eq!(got.digests, digests_of(&data, &[Algo::Md5]));
}

#[tokio::test]
async fn resumed_bytes_that_are_wrong_are_fetched_again_once() {
    let data = content(10_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let c = download_case(
        move |_, req| Reply::serve(req, &d),
        Some(&[0xffu8; 4000]),
        &want,
    )
    .await;
    let got = c.ok();
    let reqs = c.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), Some("bytes=4000-"));
    assert_eq!(reqs[1].header("range"), None);
    assert_eq!(got.resumed_from, 0);
    assert_eq!(c.on_disk(), data);
    assert_eq!(c.rec.restarts(), 1);
}

#[tokio::test]
async fn truncated_body_is_resumed_on_retry() {
    let data = content(60_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let handler = move |i, req: &Req| match i {
        0 => Reply::ok(&d).cut(25_000),
        _ => Reply::serve(req, &d),
    };
    let c = download_case(handler, None, &want).await;
    let got = c.ok();
    let reqs = c.requests();
    assert_eq!(reqs.len(), 2);
    let from: usize = reqs[1].range_from().expect("second request resumes");
    assert!(from > 0 && from <= 25_000, "{from}");
    assert_eq!(got.resumed_from, from as u64);
    assert_eq!(got.digests, digests_of(&data, &[Algo::Sha256]));
    assert_eq!(c.on_disk(), data);
    assert_eq!(c.rec.retries().len(), 1);
    assert_eq!(c.f.stats().retries, 1);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let data = content(3000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let handler = move |i, _: &Req| match i {
        0 | 1 => Reply::status(500),
        _ => Reply::ok(&d),
    };
    let c = download_case(handler, None, &want).await;
    assert_eq!(c.ok().digests.size, 3000);
    assert_eq!(c.paths().len(), 3);
    let retries = c.rec.retries();
    assert_eq!(retries.len(), 2);
    assert!(retries[0].starts_with("1 http://127.0.0.1:"), "{retries:?}");
    assert!(retries[1].contains("answered http 500"), "{retries:?}");
}

#[tokio::test]
async fn retries_are_bounded() {
    let c = download_case(|_, _| Reply::status(503), None, &Expect::default()).await;
    let e = c.err();
    assert!(matches!(e, Error::Status { status: 503, .. }), "{e}");
    assert_eq!(c.paths().len(), 4, "1 + 3 retries");
    assert!(!c.part.exists(), "no empty partial left");
}

#[tokio::test]
async fn stall_is_retried() {
    let data = content(40_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let handler = move |i, req: &Req| match i {
        0 => Reply::ok(&d).stall(10_000, Duration::from_secs(3)),
        _ => Reply::serve(req, &d),
    };
    let t = Instant::now();
    let c = download_case(handler, None, &want).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(c.ok().digests, digests_of(&data, &[Algo::Sha256]));
    assert_eq!(c.on_disk(), data);
    let retries = c.rec.retries();
    assert_eq!(retries.len(), 1);
    assert!(
        retries[0].contains("sent nothing for 300 ms"),
        "{retries:?}"
    );
}

#[tokio::test]
async fn stalled_headers_are_retried() {
    let data = content(1000);
    let d = data.clone();
    let srv = Server::start(move |_, _| Reply::ok(&d)).await;
    // a second server that accepts and never answers
    let mute = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mute_base = format!("http://{}/", mute.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            held.push(s);
        }
    });
    let mut o = options();
    o.retries = 1;
    o.connect_timeout = Duration::from_millis(100);
    o.stall_timeout = Duration::from_millis(100);
    let f = Fetcher::new(o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = f
        .download(
            &Location::new(mute_base),
            "x",
            &dir.path().join("p"),
            &Expect::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Stall { .. }), "{e}");
    assert_eq!(f.stats().retries, 1);
    drop(srv);
}

#[tokio::test]
async fn body_longer_than_expected_is_an_error() {
    let data = content(2000);
    let mut long = data.clone();
    long.extend_from_slice(b"trailing garbage");
    let want = expect(&data, Algo::Sha256);
    let c = download_case(move |_, _| Reply::ok(&long), None, &want).await;
    let e = c.err();
    assert!(matches!(e, Error::TooLong { expected: 2000, .. }), "{e}");
    assert!(!c.part.exists());
    assert_eq!(c.paths().len(), 1);
}

#[tokio::test]
async fn overlong_resume_is_fetched_again_then_refused() {
    // a 206 whose range is right but whose body goes on
    let data = content(2000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let handler = move |_, req: &Req| {
        let mut r = Reply::serve(req, &d);
        r.body.extend_from_slice(&[7u8; 500]);
        r
    };
    let c = download_case(handler, Some(&data[..1000]), &want).await;
    let e = c.err();
    // resumed first, so one more try from zero, which is also too long
    assert!(matches!(e, Error::TooLong { .. }), "{e}");
    assert_eq!(c.paths().len(), 2);
    assert!(!c.part.exists());
}

#[tokio::test]
async fn body_without_length_is_bounded_and_completed() {
    let data = content(300_000);
    let mut long = data.clone();
    long.extend_from_slice(&content(300_000));
    let d = data.clone();
    let srv = Server::start(move |i, req| match (req.path.as_str(), i) {
        // streaming past the expected size stops reading
        ("/long", _) => Reply::ok(&long).no_length(),
        // a close-delimited body that ends early is a short body: resumed
        ("/short", 1) => Reply::ok(&d).no_length().cut(100_000),
        _ => Reply::serve(req, &d),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("p");
    let want = expect(&data, Algo::Sha256);
    let loc = Location::new(srv.base());
    let rec = Rec::default();
    let e = fetcher()
        .download(&loc, "long", &part, &want, &rec)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooLong {
                expected: 300_000,
                ..
            }
        ),
        "{e}"
    );
    assert!(rec.bytes.load(Ordering::Relaxed) <= 300_000);
    assert!(!part.exists());
    let got = fetcher()
        .download(&loc, "short", &part, &want, &rec)
        .await
        .unwrap();
    assert_eq!(got.resumed_from, 100_000);
    assert_eq!(read(&part), data);
    assert_eq!(rec.retries().len(), 1);
    assert!(
        rec.retries()[0].contains("ended after 100000 of 300000 bytes"),
        "{:?}",
        rec.retries()
    );
}

#[tokio::test]
async fn not_found_walks_the_mirrors() {
    let data = content(1500);
    let primary = Server::start(|_, _| Reply::status(404)).await;
    let d = data.clone();
    let mirror = Server::start(move |_, _| Reply::ok(&d)).await;
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::new(primary.base()).with_mirrors(vec![mirror.base()]);
    let rec = Rec::default();
    let got = fetcher()
        .download(
            &loc,
            "a/x",
            &dir.path().join("p"),
            &expect(&data, Algo::Sha256),
            &rec,
        )
        .await
        .unwrap();
    assert_eq!(got.url, format!("{}a/x", mirror.base()));
    assert_eq!(primary.paths(), ["/a/x"], "404 is not retried");
    assert_eq!(mirror.paths(), ["/a/x"]);
    assert!(rec.retries().is_empty());
}

#[tokio::test]
async fn all_not_found_names_every_url() {
    let a = Server::start(|_, _| Reply::status(404)).await;
    let b = Server::start(|_, _| Reply::status(404)).await;
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::new(a.base()).with_mirrors(vec![b.base()]);
    let f = fetcher();
    let e = f
        .download(
            &loc,
            "x",
            &dir.path().join("p"),
            &Expect::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let Error::NotFound { urls } = &e else {
        panic!("{e}")
    };
    assert_eq!(urls, &[format!("{}x", a.base()), format!("{}x", b.base())]);
    assert!(e.to_string().contains(&format!("`{}x`", b.base())), "{e}");
    // documents too
    let mut loc = loc;
    let e = f
        .get_document(&mut loc, "d.json", &NoProgress)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::NotFound { urls } if urls.len() == 2),
        "{e}"
    );
}

#[tokio::test]
async fn forbidden_is_fatal_without_retry() {
    let other = Server::start(|_, _| Reply::ok(b"never")).await;
    let srv = Server::start(|_, _| Reply::status(403)).await;
    let dir = tempfile::tempdir().unwrap();
    let rec = Rec::default();
    let loc = Location::new(srv.base()).with_mirrors(vec![other.base()]);
    let f = fetcher();
    let e = f
        .download(&loc, "x", &dir.path().join("p"), &Expect::default(), &rec)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Status { status: 403, .. }), "{e}");
    assert!(!e.is_retryable());
    assert_eq!(
        e.to_string(),
        format!("`{}x` answered http 403", srv.base())
    );
    assert_eq!(srv.paths().len(), 1);
    assert!(
        other.paths().is_empty(),
        "only 404 falls through to a mirror"
    );
    assert!(rec.retries().is_empty());
    assert_eq!(f.stats().retries, 0);
}

#[tokio::test]
async fn basic_auth_from_url() {
    let srv = Server::start(|_, req| match req.header("authorization") {
        Some("Basic dXNlcjpzM2NyZXQ=") => Reply::ok(b"{}"),
        _ => Reply::status(401),
    })
    .await;
    let mut loc = Location::new(format!("http://user:s3cret@127.0.0.1:{}/", srv.port));
    let got = fetcher()
        .get_document(&mut loc, "streams/v1/index.json", &NoProgress)
        .await
        .unwrap();
    assert_eq!(got.bytes, b"{}");
    assert_eq!(
        got.url,
        format!(
            "http://user:***@127.0.0.1:{}/streams/v1/index.json",
            srv.port
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let d = fetcher()
        .download(
            &loc,
            "x",
            &dir.path().join("p"),
            &Expect::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(d.digests.size, 2);
    assert!(!d.url.contains("s3cret"));
    // without credentials: 401, fatal, and the message does not leak anything
    let e = fetcher()
        .get_document(&mut Location::new(srv.base()), "x", &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Status { status: 401, .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// documents

#[tokio::test]
async fn trailing_slash_probe() {
    let srv = Server::start(|_, req| match req.path.as_str() {
        "/stable/streams/v1/index.sjson" | "/stable/streams/v1/p.json" => Reply::ok(b"doc"),
        _ => Reply::status(404),
    })
    .await;
    let f = fetcher();
    let (base, start) = split_start(&format!("{}stable", srv.base()), None);
    let mut loc = Location::new(base);
    let got = f.get_document(&mut loc, &start, &NoProgress).await.unwrap();
    assert_eq!(got.bytes, b"doc");
    assert_eq!(loc.base, format!("{}stable/", srv.base()));
    assert_eq!(
        srv.paths(),
        [
            "/stablestreams/v1/index.sjson",
            "/stable/streams/v1/index.sjson"
        ]
    );
    // fixed for the rest of the run
    f.get_document(&mut loc, "streams/v1/p.json", &NoProgress)
        .await
        .unwrap();
    assert_eq!(srv.paths().len(), 3);
}

#[tokio::test]
async fn document_retries_short_body_and_bounds_size() {
    let srv = Server::start(|i, req| match (i, req.path.as_str()) {
        (0, _) => Reply::ok(b"0123456789").cut(4),
        (_, "/big") => Reply::ok(&[b'x'; 2048]),
        _ => Reply::ok(b"0123456789"),
    })
    .await;
    let mut o = options();
    o.max_document_size = 1024;
    let f = Fetcher::new(o).unwrap();
    let rec = Rec::default();
    let mut loc = Location::new(srv.base());
    let got = f.get_document(&mut loc, "small", &rec).await.unwrap();
    assert_eq!(got.bytes, b"0123456789");
    assert_eq!(rec.retries().len(), 1);
    let e = f.get_document(&mut loc, "big", &rec).await.unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 1024, .. }), "{e}");
    assert_eq!(rec.retries().len(), 1, "too large is not retried");
}

#[tokio::test]
async fn a_206_to_a_plain_request_is_refused() {
    let srv = Server::start(|_, _| Reply::partial(b"0123456789", 0)).await;
    let dir = tempfile::tempdir().unwrap();
    let f = fetcher();
    let e = f
        .download(
            &Location::new(srv.base()),
            "x",
            &dir.path().join("p"),
            &Expect::default(),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnexpectedPartial { .. }), "{e}");
    let e = f
        .get_document(&mut Location::new(srv.base()), "x", &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Status { status: 206, .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// local sources

#[tokio::test]
async fn local_sources() {
    let src = tempfile::tempdir().unwrap();
    let data = content(70_000);
    std::fs::create_dir_all(src.path().join("streams/v1")).unwrap();
    std::fs::write(src.path().join("streams/v1/index.sjson"), b"signed").unwrap();
    std::fs::write(src.path().join("item"), &data).unwrap();
    let out = tempfile::tempdir().unwrap();
    let f = fetcher();
    let dir = src.path().to_str().unwrap().to_owned();
    for base in [format!("file://{dir}/"), format!("{dir}/"), dir.clone()] {
        let mut loc = Location::new(base.clone());
        let got = f
            .get_document(&mut loc, "streams/v1/index.sjson", &NoProgress)
            .await
            .unwrap();
        assert_eq!(got.bytes, b"signed", "{base}");
        assert!(loc.base.ends_with('/'), "probe fixed {base}");
        let part = out.path().join("p");
        std::fs::write(&part, b"stale bytes").unwrap();
        let rec = Rec::default();
        let d = f
            .download(&loc, "item", &part, &expect(&data, Algo::Sha512), &rec)
            .await
            .unwrap();
        assert_eq!(d.digests, digests_of(&data, &[Algo::Sha512]));
        assert_eq!(read(&part), data);
        assert_eq!(rec.bytes.load(Ordering::Relaxed), 70_000);
        // missing: NotFound, naming the URL
        let e = f
            .download(&loc, "nope", &part, &Expect::default(), &NoProgress)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::NotFound { urls } if urls == &[format!("{}nope", loc.base)]),
            "{e}"
        );
        // mismatch: error, partial removed
        let mut bad = expect(&data, Algo::Sha512);
        bad.size = Some(69_999);
        let e = f
            .download(&loc, "item", &part, &bad, &NoProgress)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::TooLong { .. }), "{e}");
        assert!(!part.exists());
    }
    assert_eq!(f.stats().requests, 0);
}

#[tokio::test]
async fn local_not_found_falls_through_to_http_mirror() {
    let data = content(100);
    let d = data.clone();
    let srv = Server::start(move |_, _| Reply::ok(&d)).await;
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let loc =
        Location::new(format!("file://{}/", src.path().display())).with_mirrors(vec![srv.base()]);
    let got = fetcher()
        .download(
            &loc,
            "x",
            &out.path().join("p"),
            &expect(&data, Algo::Sha256),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(got.url, format!("{}x", srv.base()));
}

// ---------------------------------------------------------------------------------------------
// rate limit, concurrency

#[tokio::test]
async fn limit_rate_is_roughly_honoured() {
    let data = content(100 * 1024);
    let d = data.clone();
    let srv = Server::start(move |_, _| Reply::ok(&d)).await;
    let mut o = options();
    o.limit_rate = Some(100 * 1024);
    let f = Fetcher::new(o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    // two concurrent downloads share the bucket: 200 KiB at 100 KiB/s, 100 KiB burst
    let loc = Location::new(srv.base());
    let want = expect(&data, Algo::Sha256);
    let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
    let (a, b) = tokio::join!(
        f.download(&loc, "a", &pa, &want, &NoProgress),
        f.download(&loc, "b", &pb, &want, &NoProgress),
    );
    a.unwrap();
    b.unwrap();
    let elapsed = t.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// `--limit-rate` at 200 KiB/s: pieces of 1/8 s of the rate.
fn paced_options() -> FetchOptions {
    let mut o = options();
    o.limit_rate = Some(200 * 1024);
    o
}

#[tokio::test]
async fn limit_rate_asks_for_paid_pieces() {
    // each piece is paid to the rate limit before it is asked for, so the server never sends
    // more than was paid plus one piece, whatever the socket buffers would take in
    let data = content(100_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let c = download_case_with(
        paced_options(),
        move |_, req| Reply::serve_ranges(req, &d),
        None,
        "x",
        &want,
    )
    .await;
    let got = c.ok();
    let ranges: Vec<_> = c
        .requests()
        .iter()
        .map(|r| r.header("range").unwrap_or("-").to_owned())
        .collect();
    assert_eq!(
        ranges,
        [
            "bytes=0-25599",
            "bytes=25600-51199",
            "bytes=51200-76799",
            "bytes=76800-99999"
        ]
    );
    assert_eq!(got.resumed_from, 0);
    assert_eq!(got.digests, digests_of(&data, &[Algo::Sha256]));
    assert_eq!(c.on_disk(), data);
    assert_eq!(c.rec.bytes.load(Ordering::Relaxed), 100_000);
    assert_eq!(c.rec.restarts(), 0);
}

#[tokio::test]
async fn limit_rate_pieces_resume_where_the_file_ends() {
    let data = content(60_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let c = download_case_with(
        paced_options(),
        move |_, req| Reply::serve_ranges(req, &d),
        Some(&data[..30_000]),
        "x",
        &want,
    )
    .await;
    let got = c.ok();
    let reqs = c.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), Some("bytes=30000-55599"));
    assert_eq!(reqs[1].header("range"), Some("bytes=55600-59999"));
    assert_eq!(got.resumed_from, 30_000);
    assert_eq!(c.on_disk(), data);
}

#[tokio::test]
async fn limit_rate_without_ranges_takes_the_plain_stream() {
    // a server that ignores Range: the 200 to the first piece is the whole body, read as a plain
    // answer (throttled while read), not dropped and asked for again
    let data = content(40_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let c = download_case_with(paced_options(), move |_, _| Reply::ok(&d), None, "x", &want).await;
    let got = c.ok();
    let reqs = c.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].header("range"), Some("bytes=0-25599"));
    assert_eq!(got.digests, digests_of(&data, &[Algo::Sha256]));
    assert_eq!(c.on_disk(), data);
    assert_eq!(c.rec.restarts(), 0);
}

#[tokio::test]
async fn limit_rate_pieces_that_change_midway_start_again() {
    // the first piece is right, then the server stops doing ranges: nothing it sent before is
    // trusted with the new answers, the file starts again from zero
    let data = content(40_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let handler = move |i, req: &Req| match i {
        0 => Reply::serve_ranges(req, &d),
        _ => Reply::ok(&d),
    };
    let c = download_case_with(paced_options(), handler, None, "x", &want).await;
    let got = c.ok();
    let ranges: Vec<_> = c
        .requests()
        .iter()
        .map(|r| r.header("range").unwrap_or("-").to_owned())
        .collect();
    assert_eq!(
        ranges,
        ["bytes=0-25599", "bytes=25600-39999", "bytes=0-25599"]
    );
    assert_eq!(got.resumed_from, 0);
    assert_eq!(c.on_disk(), data);
    assert_eq!(c.rec.restarts(), 1);
}

#[tokio::test]
async fn limit_rate_paces_large_items_instead_of_segmenting_them() {
    // an item above `segment_min` with connections free would be probed (`bytes=0-0`) and
    // fetched as parallel segments; under a rate limit it is paced pieces, one after the other
    let data = content(100_000);
    let d = data.clone();
    let want = expect(&data, Algo::Sha256);
    let mut o = paced_options();
    o.segment_min = 50_000;
    o.segments = 4;
    o.jobs = 4;
    let c = download_case_with(
        o,
        move |_, req| Reply::serve_ranges(req, &d),
        None,
        "x",
        &want,
    )
    .await;
    let got = c.ok();
    let ranges: Vec<_> = c
        .requests()
        .iter()
        .map(|r| r.header("range").unwrap_or("-").to_owned())
        .collect();
    assert_eq!(
        ranges,
        [
            "bytes=0-25599",
            "bytes=25600-51199",
            "bytes=51200-76799",
            "bytes=76800-99999"
        ]
    );
    assert_eq!(c.on_disk(), data);
    assert_eq!(got.digests, digests_of(&data, &[Algo::Sha256]));
}

#[tokio::test]
async fn a_held_partial_is_written_through_its_handle_and_never_unlinked() {
    let data = content(300_000);
    let d = data.clone();
    let srv = Server::start(move |_, _| Reply::ok(&d)).await;
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("p");
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p)
            .unwrap()
    };
    let held = Held {
        file: std::sync::Arc::new(open(&part)),
        len: 0,
    };
    // the name is gone: a fetcher that opened the path again would create a new file there
    std::fs::remove_file(&part).unwrap();
    let f = fetcher();
    let loc = Location::new(srv.base());
    let got = f
        .download_held(
            &loc,
            "x",
            &part,
            &held,
            &expect(&data, Algo::Sha256),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(got.digests, digests_of(&data, &[Algo::Sha256]));
    assert!(!part.exists());
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut &*held.file, &mut Vec::new()).unwrap();
    std::io::Seek::rewind(&mut &*held.file).unwrap();
    std::io::Read::read_to_end(&mut &*held.file, &mut back).unwrap();
    assert_eq!(back, data);

    // a mismatch empties a held file instead of removing its name (the holder's lock stays on it)
    let held = Held {
        file: std::sync::Arc::new(open(&part)),
        len: 0,
    };
    let mut bad = expect(&data, Algo::Sha256);
    bad.checksums.set(Algo::Sha256, "0".repeat(64));
    let e = f
        .download_held(&loc, "x", &part, &held, &bad, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 0);
    assert_eq!(held.file.metadata().unwrap().len(), 0);
}

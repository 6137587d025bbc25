//! The LXD client (`lxc`, Debian `lxd-client`) against a stream streamvault synced and published:
//! an LXD-shaped upstream ([`streamvault::streamgen::generate_lxd`], signed) served on 127.0.0.1,
//! `source add` + `sync` + `publish` to a DEST (verbatim, and filtered to `arch=amd64`), then
//! `streamvault serve DEST` over TLS with a self-signed CA that `lxc` trusts through
//! `SSL_CERT_FILE`. `lxc image list` must list exactly the published images (fingerprints and
//! aliases), `lxc image info` must work, and a publish of the next generation and a rollback must
//! show at once in what `lxc` lists.
//!
//! Needs `lxc` and `openssl`: under `CI=true` a missing tool fails the test (scripts/test.sh
//! installs `lxd-client`); locally the test prints why it skips and returns.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use streamvault::streamgen;

use super::common::{Store, Upstream, bin, certs, p as s};

/// Whether `tool` is on PATH; under CI its absence is a failure, locally a printed skip.
fn need(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`{tool}` is not installed but CI=true: scripts/test.sh installs it (lxd-client, openssl)"
        );
        eprintln!("skipped: `{tool}` is not installed (scripts/test.sh installs it)");
    }
    found
}

/// `streamvault --root ROOT serve DEST --tls-cert … --tls-key … --listen 127.0.0.1:0`, killed
/// (by pid) when dropped.
struct TlsServe {
    child: Child,
    addr: SocketAddr,
}

impl TlsServe {
    fn start(root: &Path, dest: &Path, cert: &Path, key: &Path, extra: &[&str]) -> TlsServe {
        let mut child = Command::new(bin())
            .arg("--root")
            .arg(root)
            .arg("serve")
            .arg(dest)
            .args(["--tls-cert", s(cert), "--tls-key", s(key)])
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let banner = lines.next().expect("banner").expect("banner");
        std::thread::spawn(move || for _ in lines {});
        let addr = banner
            .split("https://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no https address in {banner:?}"));
        TlsServe { child, addr }
    }
}

impl Drop for TlsServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A signed LXD-shaped upstream: the harness's served upstream with `current` pointed at
/// `lxd<N>/` trees built by [`streamgen::generate_lxd`].
struct LxdUpstream {
    up: Upstream,
}

impl LxdUpstream {
    fn new() -> LxdUpstream {
        let me = LxdUpstream {
            up: Upstream::new(),
        };
        me.flip(1);
        me
    }

    fn dir(&self, generation: u32) -> PathBuf {
        self.up.dir.path().join(format!("lxd{generation}"))
    }

    /// Build generation N (if missing) and point `current` at it atomically.
    fn flip(&self, generation: u32) {
        let target = self.dir(generation);
        if !target.exists() {
            let sign = |b: &[u8]| self.up.key.clearsign(b).map_err(|e| e.to_string());
            streamgen::generate_lxd(&target, generation, Some(&sign)).unwrap();
        }
        let tmp = self.up.dir.path().join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        std::fs::rename(&tmp, self.up.dir.path().join("current")).unwrap();
    }

    /// What LXD should list for generation N: every version of every product whose arch
    /// `keep`s, as (fingerprint, arch, serial), with the `ALIAS/ARCH` aliases on each product's
    /// newest version (LXD also adds the bare aliases on images of the host's architecture).
    fn expected(&self, generation: u32, keep: &dyn Fn(&str) -> bool) -> Vec<Image> {
        let doc: Value = serde_json::from_slice(
            &std::fs::read(self.dir(generation).join("streams/v1/images.json")).unwrap(),
        )
        .unwrap();
        let mut out = Vec::new();
        for product in doc["products"].as_object().unwrap().values() {
            let arch = product["arch"].as_str().unwrap();
            if !keep(arch) {
                continue;
            }
            let versions = product["versions"].as_object().unwrap();
            let newest = versions.keys().max().unwrap();
            for (serial, version) in versions {
                let items = &version["items"];
                let fingerprint = items["lxd.tar.xz"]["combined_squashfs_sha256"]
                    .as_str()
                    .or_else(|| items["lxd_combined.tar.gz"]["sha256"].as_str())
                    .unwrap();
                let aliases = if serial == newest {
                    product["aliases"]
                        .as_str()
                        .unwrap()
                        .split(',')
                        .map(|a| format!("{a}/{arch}"))
                        .collect()
                } else {
                    BTreeSet::new()
                };
                out.push(Image {
                    fingerprint: fingerprint.to_owned(),
                    arch: arch.to_owned(),
                    serial: serial.clone(),
                    aliases,
                });
            }
        }
        out.sort();
        out
    }
}

/// One image as `lxc image list --format json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Image {
    fingerprint: String,
    /// The product's `arch` (LXD's `properties.architecture`).
    arch: String,
    /// The version name (`properties.serial`).
    serial: String,
    /// The `ALIAS/ARCH` aliases only (the bare ones depend on the host's architecture).
    aliases: BTreeSet<String>,
}

/// The `lxc` client with its own config dir, trusting our CA only.
struct Lxc {
    conf: PathBuf,
    home: PathBuf,
    ca: PathBuf,
}

impl Lxc {
    fn new(base: &Path, ca: &Path) -> Lxc {
        let conf = base.join("lxdconf");
        std::fs::create_dir_all(&conf).unwrap();
        Lxc {
            conf,
            home: base.to_owned(),
            ca: ca.to_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("lxc")
            .args(args)
            .env("LXD_CONF", &self.conf)
            .env("SSL_CERT_FILE", &self.ca)
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lxc {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `lxc image list REMOTE: --format json`, sorted like [`LxdUpstream::expected`].
    fn images(&self, remote: &str) -> Vec<Image> {
        let text = self.ok(&["image", "list", &format!("{remote}:"), "--format", "json"]);
        let list: Value = serde_json::from_str(&text).unwrap();
        let mut out: Vec<Image> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let arch = i["properties"]["architecture"].as_str().unwrap();
                let suffix = format!("/{arch}");
                Image {
                    fingerprint: i["fingerprint"].as_str().unwrap().to_owned(),
                    arch: arch.to_owned(),
                    serial: i["properties"]["serial"].as_str().unwrap().to_owned(),
                    aliases: i["aliases"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a["name"].as_str())
                        .filter(|a| a.ends_with(&suffix))
                        .map(str::to_owned)
                        .collect(),
                }
            })
            .collect();
        out.sort();
        out
    }

    /// The fingerprint `lxc image info REMOTE:ALIAS` reports.
    fn info_fingerprint(&self, remote: &str, alias: &str) -> String {
        let text = self.ok(&["image", "info", &format!("{remote}:{alias}")]);
        text.lines()
            .find_map(|l| l.strip_prefix("Fingerprint: "))
            .unwrap_or_else(|| panic!("no fingerprint in {text}"))
            .trim()
            .to_owned()
    }

    fn remote_add(&self, name: &str, server: &TlsServe) {
        self.ok(&[
            "remote",
            "add",
            name,
            &format!("https://{}", server.addr),
            "--protocol",
            "simplestreams",
            "--public",
        ]);
    }
}

fn fingerprint_of(images: &[Image], arch: &str, alias: &str) -> String {
    images
        .iter()
        .find(|i| i.arch == arch && i.aliases.contains(alias))
        .unwrap_or_else(|| panic!("no {alias} in {images:#?}"))
        .fingerprint
        .clone()
}

/// Verbatim: LXD reads only `streams/v1/index.json` (images.linuxcontainers.org publishes no
/// `.sjson`), and a verbatim tree holds the documents the sync read, so this source starts at
/// `index.json`. Then the next generation, published, shows its new image at once; a rollback
/// shows the old one again.
#[test]
fn lxc_lists_a_verbatim_publish_and_follows_publish_and_rollback() {
    if !need("lxc") || !need("openssl") {
        return;
    }
    let up = LxdUpstream::new();
    let store = Store::new();
    store.add("lxd", &up.up, &["--path", "streams/v1/index.json"]);
    store.run(&["sync", "lxd"]).ok();
    let dest = store.dir.path().join("dest");
    store.run(&["publish", "lxd", s(&dest)]).ok();

    let (ca, cert, key) = certs(store.dir.path(), "lxd");
    let server = TlsServe::start(&store.root(), &dest, &cert, &key, &[]);
    let lxc = Lxc::new(store.dir.path(), &ca);
    lxc.remote_add("sv", &server);
    let gen1 = up.expected(1, &|_| true);
    assert_eq!(gen1.len(), 4, "{gen1:#?}");
    assert_eq!(lxc.images("sv"), gen1);
    let alias = "ubuntu/jammy/amd64";
    let old = fingerprint_of(&gen1, "amd64", alias);
    assert_eq!(lxc.info_fingerprint("sv", alias), old);
    assert_eq!(
        lxc.info_fingerprint("sv", "alpine/3.20/amd64"),
        fingerprint_of(&gen1, "amd64", "alpine/3.20/amd64")
    );

    up.flip(2);
    store.run(&["sync", "lxd"]).ok();
    store.run(&["publish", "lxd", s(&dest)]).ok();
    let gen2 = up.expected(2, &|_| true);
    assert_eq!(lxc.images("sv"), gen2);
    let new = fingerprint_of(&gen2, "amd64", alias);
    assert_ne!(new, old);
    assert_eq!(lxc.info_fingerprint("sv", alias), new);

    store.run(&["rollback", s(&dest)]).ok();
    assert_eq!(lxc.images("sv"), gen1);
    assert_eq!(lxc.info_fingerprint("sv", alias), old);
}

/// Filtered to `arch=amd64` (signed source, default start `index.sjson`): the filtered publish
/// writes `.json` twins LXD reads, and LXD lists the amd64 images only. Served with `--http2`,
/// which must not lock out a client that offers only HTTP/1.1 by ALPN (LXD 5.0.2's does).
#[test]
fn lxc_lists_only_the_filtered_arch_of_a_filtered_publish() {
    if !need("lxc") || !need("openssl") {
        return;
    }
    let up = LxdUpstream::new();
    let store = Store::new();
    store.add("lxd64", &up.up, &["arch=amd64"]);
    store.run(&["sync", "lxd64"]).ok();
    let dest = store.dir.path().join("dest");
    store
        .run(&["publish", "lxd64", s(&dest), "--metadata", "filtered"])
        .ok();

    let (ca, cert, key) = certs(store.dir.path(), "lxd");
    let log = store.dir.path().join("access.log");
    let server = TlsServe::start(
        &store.root(),
        &dest,
        &cert,
        &key,
        &["--http2", "--access-log", s(&log)],
    );
    let lxc = Lxc::new(store.dir.path(), &ca);
    lxc.remote_add("f", &server);
    let amd64 = up.expected(1, &|arch| arch == "amd64");
    assert_eq!(amd64.len(), 3, "{amd64:#?}");
    assert_eq!(lxc.images("f"), amd64);
    assert_eq!(
        lxc.info_fingerprint("f", "ubuntu/jammy/amd64"),
        fingerprint_of(&amd64, "amd64", "ubuntu/jammy/amd64")
    );
    // the arm64 image upstream has is not offered
    let all = up.expected(1, &|_| true);
    assert_eq!(all.len(), amd64.len() + 1);
    let out = lxc.run(&["image", "info", "f:ubuntu/jammy/arm64"]);
    assert!(!out.status.success(), "arm64 is still listed");
    // the access log is written off the request path: wait for lxc's lines
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("GET /streams/v1/images.json HTTP/") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        text.lines()
            .any(|l| l.contains("\"GET /streams/v1/images.json HTTP/")
                && l.contains("\" 200 ")
                && l.contains("\"LXD ")),
        "{text}"
    );
}

/// `serve --http2` over TLS: curl negotiates HTTP/2 by ALPN, gets a correct `206` for a Range,
/// two requests share one connection, and the access log records `HTTP/2.0`; without `--http2`
/// the same curl gets HTTP/1.1.
#[test]
fn http2_over_tls_answers_ranges() {
    if !need("curl") || !need("openssl") {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(tree.join("root.squashfs"), &body).unwrap();
    std::fs::write(tree.join("small"), b"small").unwrap();
    let (ca, cert, key) = certs(base.path(), "lxd");
    let log = base.path().join("access.log");
    let root = base.path().join("no-store");
    let curl = |server: &TlsServe, args: &[&str]| {
        let url = format!("https://{}/", server.addr);
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--http2", "--cacert", s(&ca)])
            .args(args)
            .arg(format!("{url}root.squashfs"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    let h2 = TlsServe::start(
        &root,
        &tree,
        &cert,
        &key,
        &["--http2", "--access-log", s(&log)],
    );
    let out = curl(
        &h2,
        &[
            "-r",
            "100000-100099",
            "-w",
            "\n%{http_version} %{http_code}",
        ],
    );
    let (got, tail) = out.stdout.split_at(out.stdout.len() - "\n2 206".len());
    assert_eq!(String::from_utf8_lossy(tail), "\n2 206");
    assert_eq!(got, &body[100_000..100_100]);
    // headers as HTTP/2 carries them, and a second request on the same connection
    let out = curl(
        &h2,
        &[
            "-v",
            "-o",
            "/dev/null",
            "-r",
            "-10",
            &format!("https://{}/small", h2.addr),
            "-o",
            "/dev/null",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ALPN: server accepted h2"), "{err}");
    assert!(err.contains("< HTTP/2 206"), "{err}");
    assert!(
        err.contains("< content-range: bytes 299990-299999/300000"),
        "{err}"
    );
    assert!(err.contains("< content-range: bytes 0-4/5"), "{err}");
    assert!(err.contains("Re-using existing connection"), "{err}");
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"GET /small HTTP/2.0\" 206 5") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        text.contains("\"GET /root.squashfs HTTP/2.0\" 206 100"),
        "{text}"
    );
    assert!(text.contains("\"GET /small HTTP/2.0\" 206 5"), "{text}");
    drop(h2);

    // off by default: the same client gets HTTP/1.1
    let h1 = TlsServe::start(&root, &tree, &cert, &key, &[]);
    let out = curl(&h1, &["-r", "0-9", "-w", "\n%{http_version} %{http_code}"]);
    assert!(
        out.stdout.ends_with(b"\n1.1 206"),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(&out.stdout[..10], &body[..10]);
}

/// `--http2` with every connection busy: a newcomer that chose h2 by ALPN gets the `503` with
/// `Retry-After` as an HTTP/2 response (not HTTP/1.1 bytes inside an HTTP/2 session).
#[test]
fn http2_client_gets_503_when_every_connection_is_busy() {
    if !need("curl") || !need("openssl") {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    // sparse, larger than curl's 32 MiB HTTP/2 window plus the socket buffers: the server
    // cannot hand it all over, so the download stays in flight
    std::fs::File::create(tree.join("big.img"))
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    std::fs::write(tree.join("small"), b"small").unwrap();
    let (ca, cert, key) = certs(base.path(), "lxd");
    let server = TlsServe::start(
        &base.path().join("no-store"),
        &tree,
        &cert,
        &key,
        &["--http2", "--max-connections", "1"],
    );
    let url = format!("https://{}/", server.addr);
    // the one slot, busy with a slow download (in flight once its first bytes arrived)
    let part = base.path().join("big.part");
    let mut slow = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "60", "--limit-rate", "100K"])
        .args(["--cacert", s(&ca), "-o", s(&part)])
        .arg(format!("{url}big.img"))
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::fs::metadata(&part).is_ok_and(|m| m.len() > 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "10", "--cacert", s(&ca)])
        .args(["-D", "-", "-o", "/dev/null"])
        .arg(format!("{url}small"))
        .output()
        .unwrap();
    let answer = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = slow.kill();
    let _ = slow.wait();
    assert!(answer.starts_with("HTTP/2 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
}

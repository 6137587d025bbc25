//! HTTP side of the harness: the generated upstream served by the crate's own server, a
//! `streamvault serve` child, a minimal HTTP/1.1 client, and the third-party servers some tests
//! run against (python's http.server, moto, apache2, nginx). Every server listens on a random
//! 127.0.0.1 port and is stopped by its pid when dropped.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use streamvault::openpgp::SigningKey;
use streamvault::serve::{self, Faults, RequestRecord, ServeOptions, ServerHandle};
use streamvault::streamgen::{self, StreamSpec};
use tempfile::TempDir;

use super::store::bin;

/// A generated MAAS-shaped upstream: `gen<N>/` trees, `current` → one of them, served.
pub struct Upstream {
    pub dir: TempDir,
    pub key: SigningKey,
    pub keyring: PathBuf,
    pub server: ServerHandle,
}

impl Upstream {
    /// Generation 1, signed, served.
    pub fn new() -> Upstream {
        Self::with_spec(StreamSpec::generation(1))
    }

    pub fn with_spec(spec: StreamSpec) -> Upstream {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = SigningKey::generate("streamvault test <test@example.invalid>").expect("key");
        let keyring = dir.path().join("keyring.gpg");
        std::fs::write(&keyring, key.public_keyring_binary().expect("export")).expect("write");
        let up = Upstream {
            server: serve::spawn(ServeOptions::new(dir.path().join("current"))).expect("serve"),
            dir,
            key,
            keyring,
        };
        up.build(&spec);
        up.flip(spec.generation);
        up
    }

    pub fn gen_dir(&self, generation: u32) -> PathBuf {
        self.dir.path().join(format!("gen{generation}"))
    }

    /// Generate a tree (signed) for a spec into `gen<N>/`.
    pub fn build(&self, spec: &StreamSpec) -> streamgen::Summary {
        let sign = |b: &[u8]| self.key.clearsign(b).map_err(|e| e.to_string());
        streamgen::generate(&self.gen_dir(spec.generation), spec, Some(&sign)).expect("generate")
    }

    /// Point `current` at generation N (built first if missing), atomically.
    pub fn flip(&self, generation: u32) {
        let target = self.gen_dir(generation);
        if !target.exists() {
            self.build(&StreamSpec::generation(generation));
        }
        let tmp = self.dir.path().join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.dir.path().join("current")).expect("rename");
    }

    /// The tree `current` points at.
    pub fn current(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("current")).expect("current")
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn keyring_str(&self) -> &str {
        self.keyring.to_str().expect("utf-8 path")
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.server.requests()
    }

    pub fn clear(&self) {
        self.server.clear_requests();
    }

    pub fn faults(&self, f: Faults) {
        self.server.set_faults(f);
    }
}

/// GET requests of a log whose path does (or does not) lie under `streams/`.
pub fn metadata_gets(reqs: &[RequestRecord]) -> usize {
    reqs.iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/streams/"))
        .count()
}

pub fn item_gets(reqs: &[RequestRecord]) -> usize {
    reqs.iter()
        .filter(|r| r.method == "GET" && !r.path.starts_with("/streams/"))
        .count()
}

// ------------------------------------------------------------------------------ the client

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

/// One `GET` over a fresh connection without a timeout: `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let r = parse_response(&buf)?;
    Ok((r.status, r.body))
}

// ----------------------------------------------------------------------------- the servers

/// A free port of 127.0.0.1 (for servers that cannot be told to pick one).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts connections on `port` (true) or `limit` passes (false).
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A `streamvault serve` child process; killed (by pid) when dropped.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    /// The first stderr line ("serving … at http(s)://ADDR/ …").
    pub banner: String,
}

impl Served {
    /// Start `[prefix…] streamvault --root ROOT serve ARGS… --listen 127.0.0.1:0`.
    /// `STREAMVAULT_SERVE_BIN=PATH` starts that binary instead (an older build, to check that
    /// a serve test fails before its fix).
    pub fn start(prefix: &[&str], root: &Path, args: &[&str]) -> Served {
        // `STREAMVAULT_SERVE_BIN` runs another build's server (to show a test fails before a fix).
        let exe = std::env::var_os("STREAMVAULT_SERVE_BIN").unwrap_or_else(|| bin().into());
        let mut cmd = if let Some((first, rest)) = prefix.split_first() {
            let mut c = Command::new(first);
            c.args(rest).arg(&exe);
            c
        } else {
            Command::new(&exe)
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

/// python3 -m http.server on 127.0.0.1 serving `dir`; its log (one line per request, with the
/// status) goes to `log`.
pub struct PyServer {
    child: Child,
    pub port: u16,
}

impl PyServer {
    pub fn start(dir: &Path, log: &Path) -> PyServer {
        let port = free_port();
        let mut child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("python3 -m http.server");
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return PyServer { child, port };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("python http.server did not start");
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running moto_server; killed (by pid) on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// `None` (with the reason printed) when moto is not installed and this is not CI.
    pub fn start() -> Option<Moto> {
        let exe = std::env::var_os("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/s3-venv/bin/moto_server")
            });
        if !exe.exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "moto_server missing at `{}` under CI",
                exe.display()
            );
            eprintln!("skipped: moto_server not installed (run scripts/test.sh)");
            return None;
        }
        // Port 0: moto binds a free port itself and prints it ("Running on http://…:PORT"). A
        // port picked here and released before a slow python start could be taken meanwhile,
        // and a test would then talk to another test's moto.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Moto {
            child,
            port: 0,
            log,
            _dir: dir,
        };
        for _ in 0..400 {
            if m.port == 0 {
                m.port = m
                    .log_text()
                    .split("Running on http://127.0.0.1:")
                    .nth(1)
                    .and_then(|rest| {
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        digits.parse().ok()
                    })
                    .unwrap_or(0);
            }
            if m.port != 0 && TcpStream::connect(("127.0.0.1", m.port)).is_ok() {
                return Some(m);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not start: {}", m.log_text());
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain HTTP request (moto does not check signatures); (status, body).
    pub fn http(&self, method: &str, path: &str) -> (u16, Vec<u8>) {
        self.http_body(method, path, b"")
    }

    pub fn http_body(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP response");
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap();
        let mut body = buf[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, body)
    }

    /// A bucket anyone may read (as a mirror's bucket behind MAAS is).
    pub fn public_bucket(&self, name: &str) {
        assert_eq!(self.http("PUT", &format!("/{name}")).0, 200);
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{name}/*"}}]}}"#
        );
        let (st, body) = self.http_body("PUT", &format!("/{name}?policy"), policy.as_bytes());
        assert!(st < 300, "{st} {}", String::from_utf8_lossy(&body));
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Request lines of the log with this method, from byte `from` of the log.
    pub fn count(&self, from: usize, method: &str) -> usize {
        let t = self.log_text();
        t.get(from..)
            .unwrap_or("")
            .lines()
            // werkzeug colours the request line: match `PUT /`, not `"PUT`.
            .filter(|l| l.contains(&format!("{method} /")))
            .count()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

/// A server process (apache2, nginx) stopped by its pid (TERM, then KILL) on drop.
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_ready(port: u16, what: &str, log: &Path) {
    if !wait_for_port(port, Duration::from_secs(20)) {
        panic!(
            "{what} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

pub fn start_apache(work: &Path, port: u16) -> Server {
    let conf = work.join("apache2");
    let st = Command::new("cp")
        .args(["-a", "/etc/apache2"])
        .arg(&conf)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        conf.join("ports.conf"),
        format!("Listen 127.0.0.1:{port}\n"),
    )
    .unwrap();
    let site = conf.join("sites-enabled/000-default.conf");
    let text = std::fs::read_to_string(&site).unwrap();
    std::fs::remove_file(&site).unwrap(); // a symlink into sites-available
    std::fs::write(
        &site,
        text.replace("<VirtualHost *:80>", &format!("<VirtualHost *:{port}>")),
    )
    .unwrap();
    for d in ["run", "lock", "log"] {
        std::fs::create_dir_all(work.join(d)).unwrap();
    }
    let log = work.join("log/error.log");
    let child = Command::new("/usr/sbin/apache2")
        .arg("-d")
        .arg(&conf)
        .arg("-f")
        .arg(conf.join("apache2.conf"))
        .arg("-DFOREGROUND")
        .env("APACHE_RUN_USER", "www-data")
        .env("APACHE_RUN_GROUP", "www-data")
        .env("APACHE_PID_FILE", work.join("run/apache2.pid"))
        .env("APACHE_RUN_DIR", work.join("run"))
        .env("APACHE_LOCK_DIR", work.join("lock"))
        .env("APACHE_LOG_DIR", work.join("log"))
        .env("LANG", "C")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    wait_ready(port, "apache2", &log);
    server
}

pub fn start_nginx(work: &Path, port: u16) -> Server {
    let dir = work.join("nginx");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "user www-data;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log;\n\
             daemon off;\nevents {{ worker_connections 64; }}\n\
             http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n\
               client_body_temp_path {d}/body;\n\
               server {{ listen 127.0.0.1:{port}; root /var/www/html; }}\n}}\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    wait_ready(port, "nginx", &dir.join("logs/error.log"));
    server
}

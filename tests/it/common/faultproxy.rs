//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of an S3 server (moto): each request
//! is, with a seeded probability, answered by the proxy itself with `500 InternalError` or
//! `503 SlowDown`, or its connection is reset (closed with its body unread: a RST) after its head was read; every other
//! request is forwarded to the server on a fresh connection and its response relayed. A faulted
//! request never reaches the server, so a client that retries sees exactly what S3 does under
//! load. Stopped (its listener thread exits) on drop; counts of what it did are kept for the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the proxy did so far.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub forwarded: AtomicU64,
    pub err500: AtomicU64,
    pub err503: AtomicU64,
    pub resets: AtomicU64,
}

impl FaultCounts {
    pub fn faults(&self) -> u64 {
        self.err500.load(Ordering::SeqCst)
            + self.err503.load(Ordering::SeqCst)
            + self.resets.load(Ordering::SeqCst)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} forwarded, {} × 500, {} × 503 SlowDown, {} resets",
            self.forwarded.load(Ordering::SeqCst),
            self.err500.load(Ordering::SeqCst),
            self.err503.load(Ordering::SeqCst),
            self.resets.load(Ordering::SeqCst)
        )
    }
}

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 InternalError`.
    E500,
    /// `503 SlowDown`.
    E503,
    /// The connection closed with the request body unread (a RST).
    Reset,
    /// Forwarded (the server applies it), then the connection closed without the answer.
    Lost,
}

/// Where [`FaultProxy::hold`] stops the request it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Before it reaches the server.
    Before,
    /// After the server answered it, before the client has the answer.
    After,
}

/// A request the proxy is to hold (by its number, from 1, counting every request) until
/// [`FaultProxy::release`]; its connection is then dropped without a response.
#[derive(Default)]
struct Gate {
    at: Mutex<Option<(u64, Hold)>>,
    seq: AtomicU64,
    held: AtomicBool,
    release: AtomicBool,
}

impl Gate {
    fn check(&self, n: u64, when: Hold) -> bool {
        if *self.at.lock().unwrap() != Some((n, when)) {
            return false;
        }
        self.held.store(true, Ordering::SeqCst);
        while !self.release.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

/// The next `n` requests whose head contains `what` (lower case) get `fault`.
type Target = Mutex<Option<(String, Fault, u64)>>;

pub struct FaultProxy {
    pub port: u16,
    pub counts: Arc<FaultCounts>,
    gate: Arc<Gate>,
    target: Arc<Target>,
    /// Fault probability in per mille (0 = a plain proxy).
    per_mille: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A tiny deterministic generator (xorshift64*), shared by the connection threads.
struct Rng(Mutex<u64>);

impl Rng {
    fn next(&self) -> u64 {
        let mut s = self.0.lock().unwrap();
        let mut x = *s;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl FaultProxy {
    /// A proxy to `upstream` faulting `per_mille`/1000 of the requests (seeded: the same
    /// sequence of decisions every run, whatever the interleaving of connections).
    pub fn start(upstream: u16, per_mille: u64, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(FaultCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let pm = Arc::new(AtomicU64::new(per_mille));
        let rng = Arc::new(Rng(Mutex::new(seed | 1)));
        let gate = Arc::new(Gate::default());
        let target: Arc<Target> = Arc::new(Mutex::new(None));
        let (c, s, p, g, t) = (
            Arc::clone(&counts),
            Arc::clone(&stop),
            Arc::clone(&pm),
            Arc::clone(&gate),
            Arc::clone(&target),
        );
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (c, p, rng, g, t) = (
                    Arc::clone(&c),
                    Arc::clone(&p),
                    Arc::clone(&rng),
                    Arc::clone(&g),
                    Arc::clone(&t),
                );
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &c, &p, &rng, &g, &t);
                });
            }
        });
        FaultProxy {
            port,
            counts,
            gate,
            target,
            per_mille: pm,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Give the next `n` requests whose head contains `what` (any case) the fault `fault`.
    pub fn target(&self, what: &str, fault: Fault, n: u64) {
        *self.target.lock().unwrap() = Some((what.to_ascii_lowercase(), fault, n));
    }

    /// How many targeted faults are still to come.
    pub fn targeted_left(&self) -> u64 {
        self.target.lock().unwrap().as_ref().map_or(0, |t| t.2)
    }

    /// Requests seen so far (faulted or not).
    pub fn requests(&self) -> u64 {
        self.gate.seq.load(Ordering::SeqCst)
    }

    /// Hold request number `n` (counted from 1 over the proxy's life) at `when`.
    pub fn hold(&self, n: u64, when: Hold) {
        self.gate.held.store(false, Ordering::SeqCst);
        self.gate.release.store(false, Ordering::SeqCst);
        *self.gate.at.lock().unwrap() = Some((n, when));
    }

    /// Whether the request to hold is being held now.
    pub fn holding(&self) -> bool {
        self.gate.held.load(Ordering::SeqCst)
    }

    /// Let the held request go (its connection is dropped unanswered) and hold no more.
    pub fn release(&self) {
        *self.gate.at.lock().unwrap() = None;
        self.gate.release.store(true, Ordering::SeqCst);
    }

    /// Change the fault rate (0: every request is forwarded).
    pub fn set_per_mille(&self, per_mille: u64) {
        self.per_mille.store(per_mille, Ordering::SeqCst);
    }
}

/// One request read off a client connection.
struct Request {
    method: String,
    /// The head with `Connection` headers removed, ending in `\r\n` (not the blank line).
    head: String,
    body: Vec<u8>,
}

/// A request head read off a client connection; its body is still unread.
struct Head {
    method: String,
    head: String,
    len: usize,
    chunked: bool,
}

fn read_head(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Head>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let method = line.split_whitespace().next().unwrap_or("").to_string();
    let mut head = line.clone();
    let mut len = 0usize;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        if h == "\r\n" || h == "\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
            continue;
        }
        if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
            continue;
        }
        head.push_str(&h);
    }
    Ok(Some(Head {
        method,
        head,
        len,
        chunked,
    }))
}

fn read_body(r: &mut BufReader<TcpStream>, h: Head) -> std::io::Result<Request> {
    let mut head = h.head;
    let body = if h.chunked {
        let b = read_chunked(r)?;
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
        b
    } else {
        let mut b = vec![0u8; h.len];
        r.read_exact(&mut b)?;
        b
    };
    Ok(Request {
        method: h.method,
        head,
        body,
    })
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if n == 0 {
            // Trailers, then the blank line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t == "\r\n" || t == "\n" {
                    return Ok(out);
                }
            }
        }
        let start = out.len();
        out.resize(start + n, 0);
        r.read_exact(&mut out[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

fn error_response(status: u16, reason: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Forward one request to the server on a fresh connection; the whole response, re-framed for a
/// kept-alive client connection.
fn forward(upstream: u16, req: &Request) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut out = req.head.clone().into_bytes();
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&req.body);
    up.write_all(&out)?;
    let mut buf = Vec::new();
    up.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut body = buf[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let mut resp = format!("{}\r\n", lines.next().unwrap_or("HTTP/1.1 502 Bad Gateway"));
    let mut chunked = false;
    let mut length = None;
    for h in lines {
        let lower = h.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") {
            chunked = lower.contains("chunked");
            continue;
        }
        if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
            continue;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
            continue;
        }
        resp.push_str(h);
        resp.push_str("\r\n");
    }
    if chunked {
        body = dechunk(&body);
    }
    if req.method == "HEAD" {
        // No body; the length is the object's.
        if let Some(n) = length {
            resp.push_str(&format!("Content-Length: {n}\r\n"));
        }
        body.clear();
    } else {
        resp.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    resp.push_str("\r\n");
    let mut out = resp.into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < nl + 2 + n {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = b.get(nl + 2 + n + 2..).unwrap_or(&[]);
    }
}

fn serve(
    conn: TcpStream,
    upstream: u16,
    counts: &FaultCounts,
    per_mille: &AtomicU64,
    rng: &Rng,
    gate: &Gate,
    target: &Target,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while let Some(head) = read_head(&mut r)? {
        let n = gate.seq.fetch_add(1, Ordering::SeqCst) + 1;
        if gate.check(n, Hold::Before) {
            return Ok(());
        }
        let targeted = {
            let mut t = target.lock().unwrap();
            match t.as_mut() {
                Some((what, fault, left))
                    if *left > 0 && head.head.to_ascii_lowercase().contains(what.as_str()) =>
                {
                    *left -= 1;
                    Some(*fault)
                }
                _ => None,
            }
        };
        let fault = targeted.or_else(|| {
            let roll = rng.next() % 1000;
            (roll < per_mille.load(Ordering::SeqCst)).then_some(match roll % 3 {
                0 => Fault::E500,
                1 => Fault::E503,
                _ => Fault::Reset,
            })
        });
        match fault {
            Some(Fault::E500) => {
                counts.err500.fetch_add(1, Ordering::SeqCst);
                read_body(&mut r, head)?;
                w.write_all(&error_response(
                    500,
                    "Internal Server Error",
                    "InternalError",
                ))?;
                continue;
            }
            Some(Fault::E503) => {
                counts.err503.fetch_add(1, Ordering::SeqCst);
                read_body(&mut r, head)?;
                w.write_all(&error_response(503, "Slow Down", "SlowDown"))?;
                continue;
            }
            Some(Fault::Reset) => {
                // Closed with the body unread: the kernel answers with a RST (a request
                // without a body sees the connection closed before any response).
                counts.resets.fetch_add(1, Ordering::SeqCst);
                drop(w);
                drop(r);
                return Ok(());
            }
            Some(Fault::Lost) => {
                counts.resets.fetch_add(1, Ordering::SeqCst);
                let req = read_body(&mut r, head)?;
                let _ = forward(upstream, &req);
                return Ok(());
            }
            None => {}
        }
        let req = read_body(&mut r, head)?;
        counts.forwarded.fetch_add(1, Ordering::SeqCst);
        match forward(upstream, &req) {
            Ok(_) if gate.check(n, Hold::After) => return Ok(()),
            Ok(resp) => w.write_all(&resp)?,
            Err(_) => {
                let _ = w.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
    Ok(())
}

//! A static, read-only HTTP(S) server over one or several directory trees: `streamvault serve`,
//! the demo, and the fault-injecting upstream of every integration test.
//!
//! Protects invariant 3 from the reader's side and invariant 5 for the server: each mount's DEST
//! is resolved once per request (one `readlink`, see `resolve`) and the response is served from
//! one open descriptor under that resolution, so a publish or rollback (an atomic flip of the
//! symlink) can never mix two trees within one response nor make an existing file look missing;
//! and no request, however encoded, reads anything outside the resolved tree.
//!
//! Also protects the server from its clients: connections are bounded below the open-file limit
//! (raised to the hard limit by the CLI), idle ones are dropped first when full and after the idle
//! timeout, headers are bounded in size and time, and a server-side failure is a `503` with
//! `Retry-After`, never a `404`. TLS (rustls, HTTP/1.1, and HTTP/2 by ALPN with `http2`), directory listings, an access log, `/-/metrics` and
//! `/-/status` are optional layers around the same file path.
//!
//! [`spawn`] runs the server on its own thread with its own tokio runtime (synchronous tests get a
//! plain URL); [`run`] is the same accept loop for a caller that already has a runtime.

mod accesslog;
mod body;
mod conns;
mod faults;
mod listing;
mod metrics;
mod range;
mod resolve;
mod respond;
mod status;
#[cfg(test)]
mod tests;
mod tls;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use accesslog::AccessLogTarget;
pub use conns::{default_max_connections, raise_nofile_limit};
pub use faults::{FaultKind, Faults};

/// Bounds on what one client may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most (`None`: [`default_max_connections`] of the open-file limit).
    pub max_connections: Option<usize>,
    /// Request line and headers, bytes (at least 8 KiB); larger gets `431`.
    pub max_header_bytes: usize,
    /// A client must send its request headers within this time (slow-loris guard).
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What to serve, where, and how badly.
#[derive(Clone)]
pub struct ServeOptions {
    /// The tree served at `/`; may be a symlink that is replaced while serving. Empty: only
    /// [`mounts`](Self::mounts).
    pub root: PathBuf,
    /// More trees: `(URL prefix, DEST)`, e.g. `("/maas/stable", …)`; the longest prefix wins.
    pub mounts: Vec<(String, PathBuf)>,
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Injected failures (all off by default).
    pub faults: Faults,
    /// `(user, password)`: when set, every request needs this `Authorization: Basic`.
    pub basic_auth: Option<(String, String)>,
    /// `(certificate chain PEM, private key PEM)`: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// With `tls`: offer HTTP/2 by ALPN (`h2`, then `http/1.1`); off, TLS is HTTP/1.1 only.
    pub http2: bool,
    pub limits: Limits,
    pub access_log: Option<AccessLogTarget>,
    /// The store whose catalogue `/-/status` reads (read-only; never created).
    pub store_root: Option<PathBuf>,
    /// Reload TLS files and reopen the access log on SIGHUP (the CLI).
    pub reload_on_sighup: bool,
    /// On shutdown, let requests in flight finish for up to this long (0: drop them).
    pub grace: Duration,
}

impl ServeOptions {
    /// Serve `root` on a random port of 127.0.0.1, without faults or auth.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ServeOptions {
            root: root.into(),
            mounts: Vec::new(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            faults: Faults::default(),
            basic_auth: None,
            tls: None,
            http2: false,
            limits: Limits::default(),
            access_log: None,
            store_root: None,
            reload_on_sighup: false,
            grace: Duration::ZERO,
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("root", &self.root)
            .field("mounts", &self.mounts)
            .field("listen", &self.listen)
            .field("faults", &self.faults)
            .field(
                "basic_auth",
                &self
                    .basic_auth
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("tls", &self.tls)
            .field("http2", &self.http2)
            .field("limits", &self.limits)
            .field("access_log", &self.access_log)
            .field("store_root", &self.store_root)
            .finish()
    }
}

/// One request as the server answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The percent-decoded path (the raw one when it does not decode), starting with `/`.
    pub path: String,
    /// The `Range` header as received.
    pub range: Option<String>,
    /// The status actually sent.
    pub status: u16,
    /// Body bytes handed to the connection (less than `Content-Length` for a truncated response).
    pub bytes_sent: u64,
    /// The injected fault that shaped this response, if any.
    pub fault: Option<FaultKind>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on `{addr}`")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the server runtime")]
    Runtime {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the server thread")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load TLS file `{}`: {reason}", path.display())]
    Tls { path: PathBuf, reason: String },
    #[error("cannot open the access log `{}`", path.display())]
    AccessLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad mount `{mount}`: {reason}")]
    Mount { mount: String, reason: String },
}

/// A server running on its own thread. Dropping it shuts the server down and joins the thread.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/` (loopback when bound to an unspecified address).
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/", SocketAddr::new(ip, self.addr.port()))
    }

    /// Every request answered since start (or the last [`clear_requests`](Self::clear_requests)).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.requests()
    }

    pub fn clear_requests(&self) {
        lock(&self.state.log).clear();
    }

    /// Switch the injected faults; per-path request counts (`fail_first_n`, rolls) restart at zero.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.state.faults).set(faults);
    }

    /// Stop accepting, drop open connections and join the server thread. Idempotent.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Start a server on its own thread and runtime; returns once the port is bound.
pub fn spawn(opts: ServeOptions) -> Result<ServerHandle, ServeError> {
    let bind_err = |source| ServeError::Bind {
        addr: opts.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(opts.listen).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ServeError::Runtime { source })?;
    let state = Arc::new(State::new(&opts, true)?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread_state = Arc::clone(&state);
    let thread = std::thread::Builder::new()
        .name(format!("streamvault-serve-{}", addr.port()))
        .spawn(move || {
            runtime.block_on(async move {
                // Only fails outside a runtime; the listener is already bound and non-blocking.
                if let Ok(listener) = TcpListener::from_std(listener) {
                    accept_loop(
                        listener,
                        thread_state,
                        async {
                            let _ = stopped.await;
                        },
                        Duration::ZERO,
                    )
                    .await;
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|source| ServeError::Thread { source })?;
    Ok(ServerHandle {
        addr,
        state,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Serve until `shutdown` completes (the CLI passes ctrl-c); open connections are then dropped.
pub async fn run(opts: ServeOptions, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.listen,
            source,
        })?;
    run_on(listener, opts, shutdown).await
}

/// [`run`] on a listener the caller bound (e.g. to print the port it got); `opts.listen` is unused.
///
/// Keeps no request log (nothing could read it, and a long-running server must not grow).
pub(crate) async fn run_on(
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run_announced(listener, opts, shutdown, || {}).await
}

/// [`run_on`], calling `ready` once the options are checked (TLS files loaded, access log open)
/// and just before the first accept: the CLI prints its "serving …" line there.
pub async fn run_announced(
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(),
) -> Result<(), ServeError> {
    let state = Arc::new(State::new(&opts, false)?);
    ready();
    if opts.reload_on_sighup {
        #[cfg(unix)]
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    state.reload();
                }
            });
        }
    }
    accept_loop(listener, state, shutdown, opts.grace).await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let Some(conn) = state.conns.admit() else {
                        connections.spawn(refuse(stream, state));
                        continue;
                    };
                    let stop = stop_rx.clone();
                    connections.spawn(async move {
                        match state.tls.as_ref().map(|t| t.acceptor()) {
                            None => {
                                serve_conn(stream, Protocol::Http1, Arc::clone(&state), Arc::clone(&conn), remote, stop).await;
                            }
                            Some(acceptor) => {
                                let handshake = tokio::time::timeout(
                                    state.limits.header_timeout,
                                    acceptor.accept(stream),
                                );
                                tokio::select! {
                                    done = handshake => if let Ok(Ok(tls)) = done {
                                        let protocol = if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                                            Protocol::H2
                                        } else {
                                            Protocol::Http1
                                        };
                                        serve_conn(tls, protocol, Arc::clone(&state), Arc::clone(&conn), remote, stop).await;
                                    },
                                    () = conn.evicted.notified() => {}
                                }
                            }
                        }
                        state.conns.release(&conn);
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    if !grace.is_zero() {
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// The protocol of one connection: HTTP/1.1, or HTTP/2 when a TLS client chose `h2` by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    H2,
}

/// One connection, through the one request handler: HTTP/1.1 with keep-alive until the client
/// closes, or HTTP/2; either ends at the idle timeout, an eviction (dropped to make room) or a
/// graceful shutdown. HTTP/1.1 bounds the request head by the header timeout and size; HTTP/2
/// has no request line to time out (the TLS handshake is bounded by the header timeout and a
/// connection without a stream in flight by the idle timeout) and takes the size as hyper's
/// `max_header_list_size`.
async fn serve_conn<I>(
    io: I,
    protocol: Protocol,
    state: Arc<State>,
    conn: Arc<conns::Conn>,
    remote: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc_state = Arc::clone(&state);
    let svc_conn = Arc::clone(&conn);
    let service = service_fn(move |req| {
        respond::handle(Arc::clone(&svc_state), Arc::clone(&svc_conn), remote, req)
    });
    let max_header = state.limits.max_header_bytes.max(8192);
    match protocol {
        Protocol::Http1 => {
            let mut io = io;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(state.limits.header_timeout)
                .max_buf_size(max_header);
            // hyper borrows the stream, so that after an error answer (`431`, `400`, a header
            // timeout) the rest of the client's request can still be read and dropped.
            let failed = {
                let served =
                    std::pin::pin!(builder.serve_connection(TokioIo::new(&mut io), service));
                drive(served, |c| c.graceful_shutdown(), &state, &conn, &mut stop).await
            };
            if failed {
                linger(&mut io, ERROR_LINGER_BYTES).await;
            }
        }
        Protocol::H2 => {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(max_header).unwrap_or(u32::MAX));
            let served = std::pin::pin!(builder.serve_connection(TokioIo::new(io), service));
            drive(served, |c| c.graceful_shutdown(), &state, &conn, &mut stop).await;
        }
    }
}

/// What a lingering close after an HTTP/1.1 error answer reads and drops at most: a request
/// head cut at the header limit may still have this much in flight.
const ERROR_LINGER_BYTES: usize = 1 << 20;

/// A lingering close: shut the write side (the answer is out), then read and drop what the client
/// still sends, up to `budget` bytes and 2 s, or until it closes. Closing a socket with unread
/// bytes makes the kernel send a reset, and a client whose request crossed the answer would then
/// see `Connection reset`/`Broken pipe` instead of it (nginx's `lingering_close`).
async fn linger<S>(s: &mut S, budget: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = s.shutdown().await;
        let mut buf = [0u8; 8192];
        let mut left = budget;
        while left > 0 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Run one connection until it ends, the idle timeout passes with no request in flight, it is
/// evicted, or (on shutdown) it has finished its requests after `graceful`. True when the
/// connection itself ended in an error (a request head refused, a client gone).
async fn drive<F, E>(
    mut served: std::pin::Pin<&mut F>,
    graceful: impl Fn(std::pin::Pin<&mut F>),
    state: &State,
    conn: &conns::Conn,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool
where
    F: Future<Output = Result<(), E>>,
{
    let idle_timeout = state.limits.idle_timeout;
    let mut stopping = false;
    loop {
        let deadline = conn
            .idle_deadline(idle_timeout)
            .unwrap_or_else(|| std::time::Instant::now() + idle_timeout);
        tokio::select! {
            // A client that goes away mid-response is its own business.
            r = served.as_mut() => return r.is_err(),
            () = conn.evicted.notified() => break,
            () = tokio::time::sleep_until(deadline.into()) => {
                if conn
                    .idle_deadline(idle_timeout)
                    .is_some_and(|d| d <= std::time::Instant::now())
                {
                    break;
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                graceful(served.as_mut());
            }
        }
    }
    false
}

/// Every slot is busy: `503` with `Retry-After`, without parsing the request, then a lingering
/// close of at most 64 KiB (the whole refusal is bounded by 2 s).
async fn refuse(stream: tokio::net::TcpStream, state: Arc<State>) {
    use tokio::io::AsyncWriteExt as _;
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\
        Connection: close\r\n\r\nserver busy\n";
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        match state.tls.as_ref().map(|t| t.acceptor()) {
            None => {
                let mut s = stream;
                let _ = s.write_all(BUSY).await;
                linger(&mut s, 64 << 10).await;
            }
            Some(acceptor) => {
                let Ok(mut s) = acceptor.accept(stream).await else {
                    return;
                };
                if s.get_ref().1.alpn_protocol() == Some(b"h2") {
                    // An HTTP/2 client gets the same answer as an HTTP/2 response.
                    let busy = service_fn(|_req| async {
                        let mut resp = hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"server busy\n"),
                        ));
                        *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                        let h = resp.headers_mut();
                        h.insert(
                            hyper::header::RETRY_AFTER,
                            hyper::header::HeaderValue::from_static("1"),
                        );
                        h.insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
                        );
                        Ok::<_, std::convert::Infallible>(resp)
                    });
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), busy)
                        .await;
                } else {
                    let _ = s.write_all(BUSY).await;
                    linger(&mut s, 64 << 10).await;
                }
            }
        }
    })
    .await;
}

/// One served tree.
#[derive(Debug)]
struct Mount {
    /// `/maas/stable` (`/` for the root).
    label: String,
    prefix: Vec<String>,
    dest: PathBuf,
}

/// What every request handler shares.
#[derive(Debug)]
struct State {
    /// Longest prefix first.
    mounts: Vec<Mount>,
    /// The expected `Basic` credentials, base64-encoded.
    auth: Option<String>,
    faults: Mutex<faults::FaultState>,
    /// Only [`spawn`]ed servers keep a log (their handle reads it).
    keep_log: bool,
    log: Mutex<Vec<LogEntry>>,
    limits: Limits,
    conns: conns::Conns,
    tls: Option<tls::Tls>,
    access: Option<accesslog::AccessLog>,
    metrics: metrics::Metrics,
    store_root: Option<PathBuf>,
    started: std::time::SystemTime,
}

#[derive(Debug)]
struct LogEntry {
    record: RequestRecord,
    /// Counted by the response body as it hands bytes to the connection.
    sent: Arc<AtomicU64>,
}

impl State {
    fn new(opts: &ServeOptions, keep_log: bool) -> Result<Self, ServeError> {
        let mut mounts = Vec::new();
        if !opts.root.as_os_str().is_empty() {
            mounts.push(Mount {
                label: "/".into(),
                prefix: Vec::new(),
                dest: opts.root.clone(),
            });
        }
        for (prefix, dest) in &opts.mounts {
            let bad = |reason: &str| ServeError::Mount {
                mount: format!("{prefix}={}", dest.display()),
                reason: reason.into(),
            };
            let parts = resolve::components(prefix)
                .map_err(|_| bad("the prefix must be a plain URL path"))?;
            if parts.first().is_some_and(|p| p == "-") {
                return Err(bad("`/-/` is the server's own (status, metrics)"));
            }
            if mounts.iter().any(|m: &Mount| m.prefix == parts) {
                return Err(bad("the prefix is mounted twice"));
            }
            mounts.push(Mount {
                label: format!("/{}", parts.join("/")),
                prefix: parts,
                dest: dest.clone(),
            });
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        let tls = match &opts.tls {
            Some((cert, key)) => Some(tls::Tls::load(cert, key, opts.http2)?),
            None => None,
        };
        let access = match &opts.access_log {
            Some(target) => Some(accesslog::AccessLog::start(target).map_err(|source| {
                ServeError::AccessLog {
                    path: match target {
                        AccessLogTarget::File(p) => p.clone(),
                        AccessLogTarget::Stdout => PathBuf::from("-"),
                    },
                    source,
                }
            })?),
            None => None,
        };
        let max = opts.limits.max_connections.unwrap_or_else(|| {
            let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
            default_max_connections(soft.unwrap_or(1 << 20))
        });
        Ok(State {
            keep_log,
            mounts,
            auth: opts
                .basic_auth
                .as_ref()
                .map(|(user, password)| base64(format!("{user}:{password}").as_bytes())),
            faults: Mutex::new(faults::FaultState::new(opts.faults.clone())),
            log: Mutex::new(Vec::new()),
            limits: opts.limits.clone(),
            conns: conns::Conns::new(max),
            tls,
            access,
            metrics: metrics::Metrics::default(),
            store_root: opts.store_root.clone(),
            started: std::time::SystemTime::now(),
        })
    }

    /// SIGHUP: read the TLS files again, reopen the access log.
    fn reload(&self) {
        if let Some(tls) = &self.tls
            && let Err(e) = tls.reload()
        {
            eprintln!("streamvault: warning: TLS reload failed, keeping the old certificate: {e}");
        }
        if let Some(access) = &self.access {
            access.reopen();
        }
    }

    fn record(&self, record: RequestRecord, sent: Arc<AtomicU64>) {
        if self.keep_log {
            lock(&self.log).push(LogEntry { record, sent });
        }
    }

    fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log)
            .iter()
            .map(|e| RequestRecord {
                bytes_sent: e.sent.load(Ordering::SeqCst),
                ..e.record.clone()
            })
            .collect()
    }
}

/// A poisoned lock only means another request panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Standard base64 with padding (for the expected `Authorization: Basic` token).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| char::from(ALPHABET.get((v & 63) as usize).copied().unwrap_or(b'A'));
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

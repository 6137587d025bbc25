//! A static, read-only HTTP server over one directory tree: `streamvault serve DEST`, the demo, and
//! the fault-injecting upstream of every integration test.
//!
//! Protects invariant 3 from the reader's side and invariant 5 for the server: the root is
//! canonicalised on every request and each response is served from one open file descriptor, so a
//! publish or rollback (an atomic flip of the root symlink) can never mix two trees within one
//! response; and no request, however encoded, reads anything outside the canonical root.
//!
//! [`spawn`] runs the server on its own thread with its own tokio runtime (synchronous tests get a
//! plain URL); [`run`] is the same accept loop for a caller that already has a runtime.

mod body;
mod faults;
mod range;
mod resolve;
mod respond;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use faults::{FaultKind, Faults};

/// A client must send its request headers within this time (slow-loris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What to serve, where, and how badly.
#[derive(Clone)]
pub struct ServeOptions {
    /// The tree to serve; may be a symlink that is replaced while serving.
    pub root: PathBuf,
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Injected failures (all off by default).
    pub faults: Faults,
    /// `(user, password)`: when set, every request needs this `Authorization: Basic`.
    pub basic_auth: Option<(String, String)>,
}

impl ServeOptions {
    /// Serve `root` on a random port of 127.0.0.1, without faults or auth.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ServeOptions {
            root: root.into(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            faults: Faults::default(),
            basic_auth: None,
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("root", &self.root)
            .field("listen", &self.listen)
            .field("faults", &self.faults)
            .field(
                "basic_auth",
                &self
                    .basic_auth
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
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
    let state = Arc::new(State::new(&opts, true));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread_state = Arc::clone(&state);
    let thread = std::thread::Builder::new()
        .name(format!("streamvault-serve-{}", addr.port()))
        .spawn(move || {
            runtime.block_on(async move {
                // Only fails outside a runtime; the listener is already bound and non-blocking.
                if let Ok(listener) = TcpListener::from_std(listener) {
                    accept_loop(listener, thread_state, async {
                        let _ = stopped.await;
                    })
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
pub async fn run_on(
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    accept_loop(listener, Arc::new(State::new(&opts, false)), shutdown).await;
    Ok(())
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        let service = service_fn(move |req| respond::handle(Arc::clone(&state), req));
                        // A client that goes away mid-response is its own business.
                        let _ = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// What every request handler shares.
#[derive(Debug)]
struct State {
    root: PathBuf,
    /// The expected `Basic` credentials, base64-encoded.
    auth: Option<String>,
    faults: Mutex<faults::FaultState>,
    /// Only [`spawn`]ed servers keep a log (their handle reads it).
    keep_log: bool,
    log: Mutex<Vec<LogEntry>>,
}

#[derive(Debug)]
struct LogEntry {
    record: RequestRecord,
    /// Counted by the response body as it hands bytes to the connection.
    sent: Arc<AtomicU64>,
}

impl State {
    fn new(opts: &ServeOptions, keep_log: bool) -> Self {
        State {
            keep_log,
            root: opts.root.clone(),
            auth: opts
                .basic_auth
                .as_ref()
                .map(|(user, password)| base64(format!("{user}:{password}").as_bytes())),
            faults: Mutex::new(faults::FaultState::new(opts.faults.clone())),
            log: Mutex::new(Vec::new()),
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

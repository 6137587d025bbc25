//! The open connections: a bound on how many, and which one to drop when full.
//!
//! Protects the server from idle clients (issue 8 item 11): at most `max` connections are open,
//! a bound kept below the open-file limit so a request never fails for want of a descriptor.
//! When a new client arrives and all slots are taken, the connection that has been idle the
//! longest (no request in flight) is closed to make room; only when every connection is busy is
//! the newcomer answered `503` with `Retry-After`. A connection with no request in flight for
//! the idle timeout is closed too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::lock;

/// One open connection.
#[derive(Debug)]
pub(super) struct Conn {
    id: u64,
    /// Requests whose response is not finished yet.
    active: AtomicUsize,
    /// When the last request finished (or the connection opened).
    idle_since: Mutex<Instant>,
    /// Notified when the connection is dropped to make room.
    pub(super) evicted: Notify,
}

impl Conn {
    pub(super) fn begin(&self) {
        self.active.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn end(&self) {
        *lock(&self.idle_since) = Instant::now();
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    fn idle(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0
    }

    /// When this connection times out if nothing happens (`None`: busy).
    pub(super) fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.idle().then(|| *lock(&self.idle_since) + timeout)
    }
}

/// Every open connection, by id.
#[derive(Debug)]
pub(super) struct Conns {
    max: usize,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    pub(super) rejected: AtomicU64,
    pub(super) evicted: AtomicU64,
}

impl Conns {
    pub(super) fn new(max: usize) -> Self {
        Conns {
            max: max.max(1),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            rejected: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// A slot for a new connection: free, or taken from the longest-idle one; `None` when every
    /// connection is busy (answer 503).
    pub(super) fn admit(&self) -> Option<Arc<Conn>> {
        let mut open = lock(&self.open);
        if open.len() >= self.max {
            let victim = open
                .values()
                .filter(|c| c.idle())
                .min_by_key(|c| *lock(&c.idle_since))
                .map(|c| c.id);
            match victim.and_then(|id| open.remove(&id)) {
                Some(c) => {
                    c.evicted.notify_one();
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            evicted: Notify::new(),
        });
        open.insert(id, Arc::clone(&conn));
        Some(conn)
    }

    pub(super) fn release(&self, conn: &Conn) {
        lock(&self.open).remove(&conn.id);
    }
}

/// The default `--max-connections` for an open-file limit: each busy connection holds its socket
/// and one open file, and the server keeps a few dozen descriptors for itself.
pub fn default_max_connections(nofile: u64) -> usize {
    let usable = nofile.saturating_sub(64) / 2;
    usize::try_from(usable.clamp(16, 16_384)).unwrap_or(16_384)
}

/// Raise the soft open-file limit to the hard one; returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        // No hard limit: take a generous fixed value (the kernel caps it at nr_open).
        let target = limit.maximum.unwrap_or(1 << 20);
        let raised = rustix::process::Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    limit.current.unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_drops_the_longest_idle_then_refuses() {
        let conns = Conns::new(2);
        let a = conns.admit().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let b = conns.admit().unwrap();
        b.begin();
        // full: a is idle, so it goes
        let c = conns.admit().unwrap();
        assert_eq!(conns.evicted.load(Ordering::SeqCst), 1);
        assert_eq!(conns.len(), 2);
        c.begin();
        // b and c busy: refused
        assert!(conns.admit().is_none());
        assert_eq!(conns.rejected.load(Ordering::SeqCst), 1);
        b.end();
        assert!(conns.admit().is_some());
        drop(a);
    }

    #[test]
    fn default_bound_stays_below_the_fd_limit() {
        assert_eq!(default_max_connections(1024), 480);
        assert!(default_max_connections(1024) * 2 + 64 <= 1024);
        assert_eq!(default_max_connections(10), 16);
    }
}

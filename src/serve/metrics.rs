//! Prometheus text exposition at `/-/metrics`: requests by mount and status, body bytes by mount,
//! requests in flight, open/evicted/refused connections, dropped access-log lines.
//!
//! Protects the numbers' meaning: a request is counted once, when its response body is dropped,
//! with the bytes actually handed to the connection.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use super::lock;

#[derive(Debug, Default)]
pub(super) struct Metrics {
    /// `(mount, status)` → responses.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// mount → body bytes sent.
    bytes: Mutex<BTreeMap<String, u64>>,
    pub(super) in_flight: AtomicI64,
}

/// Gauges kept elsewhere, read when the page is rendered.
pub(super) struct Gauges {
    pub(crate) connections: usize,
    pub(crate) max_connections: usize,
    pub(crate) evicted: u64,
    pub(crate) rejected: u64,
    pub(crate) log_dropped: u64,
}

impl Metrics {
    pub(super) fn count(&self, mount: &str, status: u16, bytes: u64) {
        *lock(&self.requests)
            .entry((mount.to_owned(), status))
            .or_default() += 1;
        *lock(&self.bytes).entry(mount.to_owned()).or_default() += bytes;
    }

    pub(super) fn render(&self, g: &Gauges) -> String {
        let mut s = String::new();
        let label = |m: &str| m.replace('\\', "\\\\").replace('"', "\\\"");
        s.push_str("# HELP streamvault_serve_requests_total Responses by mount and status.\n");
        s.push_str("# TYPE streamvault_serve_requests_total counter\n");
        for ((mount, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                s,
                "streamvault_serve_requests_total{{mount=\"{}\",status=\"{status}\"}} {n}",
                label(mount)
            );
        }
        s.push_str("# HELP streamvault_serve_response_bytes_total Body bytes sent by mount.\n");
        s.push_str("# TYPE streamvault_serve_response_bytes_total counter\n");
        for (mount, n) in lock(&self.bytes).iter() {
            let _ = writeln!(
                s,
                "streamvault_serve_response_bytes_total{{mount=\"{}\"}} {n}",
                label(mount)
            );
        }
        let gauge = |s: &mut String, name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(
            &mut s,
            "streamvault_serve_requests_in_flight",
            "gauge",
            "Requests whose response is not finished.",
            self.in_flight.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut s,
            "streamvault_serve_connections_open",
            "gauge",
            "Open client connections.",
            g.connections.to_string(),
        );
        gauge(
            &mut s,
            "streamvault_serve_connections_max",
            "gauge",
            "The --max-connections bound.",
            g.max_connections.to_string(),
        );
        gauge(
            &mut s,
            "streamvault_serve_connections_evicted_total",
            "counter",
            "Idle connections closed to make room.",
            g.evicted.to_string(),
        );
        gauge(
            &mut s,
            "streamvault_serve_connections_rejected_total",
            "counter",
            "Connections answered 503 because every slot was busy.",
            g.rejected.to_string(),
        );
        gauge(
            &mut s,
            "streamvault_serve_access_log_dropped_total",
            "counter",
            "Access log lines dropped because the sink was slow.",
            g.log_dropped.to_string(),
        );
        s
    }
}

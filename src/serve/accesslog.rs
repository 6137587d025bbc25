//! The access log: one line per response in the combined format, written by its own thread.
//!
//! Protects serving from the log sink: a request only offers its line to a bounded queue
//! (`try_send`); when the writer is slow or blocked (a full disk, a stopped pipe) lines are
//! dropped and counted (`streamvault_serve_access_log_dropped_total`), never waited for. The file
//! is opened in append mode and reopened on SIGHUP (log rotation).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::SystemTime;

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

enum Msg {
    Line(String),
    Reopen,
}

/// The sending side, shared by every request.
#[derive(Debug)]
pub(super) struct AccessLog {
    tx: SyncSender<Msg>,
    pub(super) dropped: AtomicU64,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl AccessLog {
    /// Open the sink (so a bad path fails at start) and start the writer thread.
    pub(super) fn start(target: &AccessLogTarget) -> std::io::Result<Self> {
        let sink = open(target)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(16_384);
        let target = target.clone();
        std::thread::Builder::new()
            .name("streamvault-access-log".into())
            .spawn(move || write_loop(&target, sink, &rx))?;
        Ok(AccessLog {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    pub(super) fn line(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }
}

fn open(target: &AccessLogTarget) -> std::io::Result<Box<dyn std::io::Write + Send>> {
    Ok(match target {
        AccessLogTarget::Stdout => Box::new(std::io::stdout()),
        AccessLogTarget::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    })
}

fn write_loop(target: &AccessLogTarget, sink: Box<dyn std::io::Write + Send>, rx: &Receiver<Msg>) {
    let mut out = std::io::BufWriter::new(sink);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => {
                    let _ = out.write_all(line.as_bytes());
                }
                Msg::Reopen => {
                    let _ = out.flush();
                    if let Ok(fresh) = open(target) {
                        out = std::io::BufWriter::new(fresh);
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// What one combined-format line says.
pub(super) struct Fields<'a> {
    pub(crate) remote: std::net::IpAddr,
    pub(crate) user: Option<&'a str>,
    pub(crate) when: SystemTime,
    pub(crate) method: &'a str,
    pub(crate) target: &'a str,
    pub(crate) version: &'a str,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) referer: Option<&'a str>,
    pub(crate) agent: Option<&'a str>,
}

/// `host - user [10/Oct/2000:13:55:36 +0000] "GET /x HTTP/1.1" 200 2326 "referer" "agent"\n`
pub(super) fn combined(f: &Fields<'_>) -> String {
    let dash = |v: Option<&str>| v.map_or_else(|| "-".to_owned(), clean);
    let bytes = if f.bytes == 0 {
        "-".to_owned()
    } else {
        f.bytes.to_string()
    };
    format!(
        "{} - {} [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
        f.remote,
        dash(f.user),
        clf_date(f.when),
        clean(f.method),
        clean(f.target),
        f.version,
        f.status,
        bytes,
        dash(f.referer),
        dash(f.agent),
    )
}

/// Escape `"`, `\` and control characters (nothing from a client reaches the log raw).
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// `10/Oct/2000:13:55:36 +0000` (UTC).
fn clf_date(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = crate::host::civil_from_days(days);
    let name = MONTHS
        .get(usize::try_from(month - 1).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{day:02}/{name}/{year}:{:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn combined_line() {
        let line = combined(&Fields {
            remote: "127.0.0.1".parse().unwrap(),
            user: None,
            when: SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136),
            method: "GET",
            target: "/a\"b\n",
            version: "HTTP/1.1",
            status: 200,
            bytes: 2326,
            referer: None,
            agent: Some("curl/8"),
        });
        assert_eq!(
            line,
            "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a\\\"b\\x0a HTTP/1.1\" 200 2326 \"-\" \"curl/8\"\n"
        );
        assert_eq!(
            clf_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800)),
            "29/Feb/2024:00:00:00 +0000"
        );
    }
}

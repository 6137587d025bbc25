//! The machine the process runs on: its host name, who runs it, and the clock.
//!
//! These are leaves every stage may ask (keys name their user id after the host, publications
//! record who made them, every row carries a time), so they live here, below all of them, and
//! no module has to reach into another stage (`keys` into `publish`, `gc` into `catalog`) for
//! them.

use std::fs;

/// Now, in unix seconds (0 when the clock is before 1970).
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The UTC date `(year, month 1-12, day 1-31)` of a day count since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`). The one calendar the crate prints with.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `user@host pid N`, recorded with each publication.
pub(crate) fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_string());
    format!("{user}@{} pid {}", hostname(), std::process::id())
}

/// The host name (from the kernel, else `/etc/hostname`, else `localhost`).
pub(crate) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn who_names_the_host_and_pid() {
        let w = super::who();
        assert!(w.contains(&format!("@{} pid ", super::hostname())), "{w}");
        assert!(w.ends_with(&std::process::id().to_string()), "{w}");
        assert!(super::now() > 1_600_000_000);
    }
}

//! Store-wide settings for unattended operation (`streamvault config get|set|unset KEY`):
//! stored in the catalogue's `settings` table, read once per command.
//!
//! | key            | default                          | what |
//! |----------------|----------------------------------|------|
//! | `grace`        | `24h` (env `STREAMVAULT_GRACE` wins) | how long retired trees, new blobs and partial downloads stay |
//! | `keep-last`    | `3`                              | snapshots kept per configured source |
//! | `auto-gc`      | `on`                             | collect after every successful `sync`/`mirror` |
//! | `reserve`      | min(1 GiB, 2 % of the filesystem)| free space a sync or publish leaves untouched |
//! | `metrics-file` | (none)                           | Prometheus text file written after sync/mirror/publish/gc |
//!
//! Precedence for the grace period: `gc --grace` on the command line, then `STREAMVAULT_GRACE`,
//! then the stored setting, then the default.

use std::path::PathBuf;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// Snapshots kept per source when not told otherwise: the newest (the base of the next sync)
/// plus two to roll back to.
pub const DEFAULT_KEEP_LAST: u32 = 3;

/// How long a retired tree, an unpublished new tree, an unreferenced new blob and a partial
/// download are kept when not told otherwise (Pulp's orphan protection time).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The keys `config` accepts.
pub const KEYS: &[&str] = &["grace", "keep-last", "auto-gc", "reserve", "metrics-file"];

/// The environment variable that overrides the stored grace period.
pub const GRACE_ENV: &str = "STREAMVAULT_GRACE";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoreSettings {
    pub grace: Duration,
    pub keep_last: u32,
    pub auto_gc: bool,
    /// `None`: the default, min(1 GiB, 2 % of the filesystem).
    pub(crate) reserve: Option<u64>,
    pub metrics_file: Option<PathBuf>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            grace: DEFAULT_GRACE,
            keep_last: DEFAULT_KEEP_LAST,
            auto_gc: true,
            reserve: None,
            metrics_file: None,
        }
    }
}

impl StoreSettings {
    /// The stored settings, with `STREAMVAULT_GRACE` applied.
    pub fn load(cat: Option<&Catalog>) -> Result<StoreSettings> {
        let mut s = StoreSettings::default();
        if let Some(cat) = cat {
            if let Some(v) = cat.setting("grace")? {
                s.grace = parse_value("grace", &v, parse_duration)?;
            }
            if let Some(v) = cat.setting("keep-last")? {
                s.keep_last = parse_value("keep-last", &v, parse_keep_last)?;
            }
            if let Some(v) = cat.setting("auto-gc")? {
                s.auto_gc = parse_value("auto-gc", &v, parse_bool)?;
            }
            if let Some(v) = cat.setting("reserve")? {
                s.reserve = Some(parse_value("reserve", &v, parse_size)?);
            }
            if let Some(v) = cat.setting("metrics-file")? {
                s.metrics_file = Some(PathBuf::from(v));
            }
        }
        if let Some(v) = std::env::var_os(GRACE_ENV) {
            let v = v.to_string_lossy();
            s.grace = parse_duration(&v).map_err(|_| Error::BadSetting {
                key: GRACE_ENV.into(),
                value: v.into_owned(),
            })?;
        }
        Ok(s)
    }
}

/// Check `value` for `key` and return its canonical form (what `config set` stores).
pub fn check(key: &str, value: &str) -> Result<String> {
    match key {
        "grace" => parse_value(key, value, parse_duration).map(|_| value.trim().to_string()),
        "keep-last" => parse_value(key, value, parse_keep_last).map(|n| n.to_string()),
        "auto-gc" => {
            parse_value(key, value, parse_bool).map(|b| if b { "on" } else { "off" }.into())
        }
        "reserve" => parse_value(key, value, parse_size).map(|_| value.trim().to_string()),
        "metrics-file" => {
            let p = PathBuf::from(value);
            if value.is_empty() || !p.is_absolute() {
                return Err(Error::BadSetting {
                    key: key.into(),
                    value: value.into(),
                });
            }
            Ok(value.to_string())
        }
        _ => Err(Error::UnknownSetting(key.to_string())),
    }
}

fn parse_value<T>(key: &str, value: &str, f: impl Fn(&str) -> Result<T>) -> Result<T> {
    f(value).map_err(|_| Error::BadSetting {
        key: key.into(),
        value: value.into(),
    })
}

fn parse_keep_last(v: &str) -> Result<u32> {
    match v.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(Error::BadDuration(v.into())),
    }
}

fn parse_bool(v: &str) -> Result<bool> {
    match v.trim() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(Error::BadDuration(v.into())),
    }
}

/// `512M`, `1G`, `100k`, `1048576` (bytes; binary multiples).
pub(crate) fn parse_size(v: &str) -> Result<u64> {
    let t = v.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| Error::BadDuration(v.into()))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return Err(Error::BadDuration(v.into())),
    };
    n.checked_mul(mult)
        .ok_or_else(|| Error::BadDuration(v.into()))
}

/// Parse `24h`, `30m`, `7d`, `1w`, `90s`, `1h30m` or `0`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || Error::BadDuration(s.to_string());
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut secs: u64 = 0;
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (num, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(|b| !b.is_ascii_digit()).count();
        let (unit, tail) = tail.split_at(unit_len);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        secs = n
            .checked_mul(mult)
            .and_then(|v| secs.checked_add(v))
            .ok_or_else(bad)?;
        rest = tail;
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = |s| parse_duration(s).map(|d| d.as_secs()).ok();
        assert_eq!(d("0"), Some(0));
        assert_eq!(d("24h"), Some(86_400));
        assert_eq!(d("30m"), Some(1800));
        assert_eq!(d("7d"), Some(7 * 86_400));
        assert_eq!(d("1w"), Some(7 * 86_400));
        assert_eq!(d("90s"), Some(90));
        assert_eq!(d("1h30m"), Some(5400));
        for bad in ["", "h", "10", "5x", "-1h", "1.5h", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(check("grace", "6h").unwrap(), "6h");
        assert_eq!(check("auto-gc", "false").unwrap(), "off");
        assert_eq!(check("keep-last", "2").unwrap(), "2");
        assert!(check("keep-last", "0").is_err());
        assert!(check("grace", "6 hours").is_err());
        assert!(check("reserve", "1X").is_err());
        assert!(check("metrics-file", "rel/path").is_err());
        assert!(matches!(check("bogus", "1"), Err(Error::UnknownSetting(_))));
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("24M").unwrap(), 24 << 20);
    }
}

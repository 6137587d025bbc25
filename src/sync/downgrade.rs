//! Downgrade protection: a document whose `updated` instant is older than the one the source's
//! last snapshot recorded for the same path is a replay of an older (validly signed) generation
//! and is refused unless `--allow-downgrade`.
//!
//! Dates are compared as instants: RFC 2822-ish `Mon, 07 Nov 2016 10:20:30 +0000` (the weekday
//! name, right or wrong, is ignored; `GMT`/`UTC`/`Z` or no zone mean UTC) and ISO 8601
//! `2016-11-07T10:20:30Z` / `2016-11-07 10:20:30+01:00` / `2016-11-07`. Equal is fine; a missing
//! or unparseable date on either side means no check for that document. The python
//! sstream-mirror has no such check (an intended difference, see the README).

use crate::catalog::Snapshot;
use crate::error::{Error, Result};
use crate::vault::Vault;

/// What this run fetched of one document.
pub(super) struct NewDoc<'a> {
    pub(crate) path: &'a str,
    pub(crate) url: &'a str,
    pub(crate) updated: Option<&'a str>,
}

/// Refuse the first document whose `updated` went backwards against `prev`.
pub(super) fn check(vault: &Vault, prev: &Snapshot, docs: &[NewDoc<'_>]) -> Result<()> {
    let wanted: Vec<(&NewDoc<'_>, i64)> = docs
        .iter()
        .filter_map(|d| Some((d, d.updated.and_then(instant)?)))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    for old in vault.catalog.documents(prev.id)? {
        let Some((new, new_at)) = wanted.iter().find(|(d, _)| d.path == old.path) else {
            continue;
        };
        // A stored document that cannot be read or parsed only means no check.
        let Ok(bytes) = vault.blobs.read(old.blob.as_str()) else {
            continue;
        };
        let Some(old_updated) = updated_of(&bytes) else {
            continue;
        };
        if instant(&old_updated).is_some_and(|old_at| *new_at < old_at) {
            return Err(Error::Downgrade {
                url: new.url.to_string(),
                new: new.updated.unwrap_or_default().to_string(),
                old: old_updated,
            });
        }
    }
    Ok(())
}

/// The top-level `updated` string of a stored document (clearsigned or not), read without
/// building the document's tree.
fn updated_of(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Top {
        updated: Option<serde_json::Value>,
    }
    let payload = if crate::openpgp::is_clearsigned(bytes) {
        crate::openpgp::unwrap_cleartext(bytes).ok()?
    } else {
        bytes.to_vec()
    };
    let top: Top = serde_json::from_slice(&payload).ok()?;
    top.updated?.as_str().map(str::to_string)
}

/// Seconds since the Unix epoch of an RFC 2822-ish or ISO 8601 date; `None` if neither.
pub(super) fn instant(s: &str) -> Option<i64> {
    let s = s.trim();
    rfc2822(s).or_else(|| iso8601(s))
}

/// `[Wkd,] DD Mon YYYY HH:MM[:SS] [zone]`
fn rfc2822(s: &str) -> Option<i64> {
    let s = match s.split_once(',') {
        Some((_, rest)) => rest,
        None => s,
    };
    let mut parts = s.split_whitespace();
    let day: i64 = parts.next()?.parse().ok()?;
    let month = month(parts.next()?)?;
    let year: i64 = parts.next()?.parse().ok()?;
    let (h, m, sec) = clock(parts.next()?)?;
    let offset = match parts.next() {
        None => 0,
        Some(z) => zone(z)?,
    };
    if parts.next().is_some() {
        return None;
    }
    epoch(year, month, day, h, m, sec, offset)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS[.frac]][Z|±HH[:]MM]]`
fn iso8601(s: &str) -> Option<i64> {
    let date = s.get(..10)?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let rest = s.get(10..)?;
    if rest.is_empty() {
        return epoch(year, month, day, 0, 0, 0, 0);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let split = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone_part) = rest.split_at(split);
    let time = time.split('.').next()?;
    let (h, m, sec) = clock(time)?;
    let offset = if zone_part.is_empty() {
        0
    } else {
        zone(zone_part)?
    };
    epoch(year, month, day, h, m, sec, offset)
}

fn clock(t: &str) -> Option<(i64, i64, i64)> {
    let mut p = t.split(':');
    let h = p.next()?.parse().ok()?;
    let m = p.next()?.parse().ok()?;
    let s = match p.next() {
        Some(x) => x.parse().ok()?,
        None => 0,
    };
    if p.next().is_some() {
        return None;
    }
    Some((h, m, s))
}

/// Offset east of UTC in seconds.
fn zone(z: &str) -> Option<i64> {
    match z.to_ascii_uppercase().as_str() {
        "Z" | "UT" | "UTC" | "GMT" => return Some(0),
        _ => {}
    }
    let (sign, digits) = match z.as_bytes().first()? {
        b'+' => (1, z.get(1..)?),
        b'-' => (-1, z.get(1..)?),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = digits.get(..2)?.parse().ok()?;
    let m: i64 = digits.get(2..)?.parse().ok()?;
    Some(sign * (h * 3600 + m * 60))
}

fn month(m: &str) -> Option<i64> {
    const NAMES: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m = m.get(..3)?.to_ascii_lowercase();
    NAMES.iter().position(|n| *n == m).map(|i| i as i64 + 1)
}

fn epoch(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, offset: i64) -> Option<i64> {
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0..=60).contains(&s)
        || !(0..=9999).contains(&y)
    {
        return None;
    }
    // days from civil (Howard Hinnant)
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_as_instants() {
        let t = instant("Mon, 07 Nov 2016 10:20:30 +0000").unwrap();
        assert_eq!(t, 1_478_514_030);
        // the weekday name is ignored, even a wrong one, or none
        assert_eq!(instant("Fri, 07 Nov 2016 10:20:30 +0000"), Some(t));
        assert_eq!(instant("07 Nov 2016 10:20:30 GMT"), Some(t));
        assert_eq!(instant("Mon, 7 Nov 2016 11:20:30 +0100"), Some(t));
        assert_eq!(instant("Mon, 07 Nov 2016 05:20:30 -0500"), Some(t));
        assert_eq!(instant("2016-11-07T10:20:30Z"), Some(t));
        assert_eq!(instant("2016-11-07T10:20:30.123456Z"), Some(t));
        assert_eq!(instant("2016-11-07 12:20:30+02:00"), Some(t));
        assert_eq!(instant("2016-11-07T10:20:30"), Some(t));
        assert_eq!(instant("2016-11-07"), Some(t - (10 * 3600 + 20 * 60 + 30)));
        assert_eq!(
            instant("Fri, 01 Mar 2024 00:00:00 +0000"),
            Some(1_709_251_200)
        );
        for bad in [
            "",
            "yesterday",
            "Mon, 32 Nov 2016 10:20:30 +0000",
            "2016-13-01",
            "20161107",
        ] {
            assert_eq!(instant(bad), None, "{bad}");
        }
    }
}

//! Calendar arithmetic for generated version names and `updated` strings (proleptic Gregorian,
//! UTC). Protects determinism: every date the generator prints is computed, never read from a clock.

/// Year and month (1-12) of the month `months` after January 2024.
pub(super) fn month_from_2024(months: u64) -> (u64, u64) {
    (2024 + months / 12, months % 12 + 1)
}

/// `YYYYMMDD` of the day `days` after 2024-01-01.
pub(super) fn day_from_2024(days: u64) -> String {
    let (y, m, d) = civil_from_days(days_from_civil(2024, 1, 1) + days);
    format!("{y:04}{m:02}{d:02}")
}

/// RFC 2822 midnight UTC in the form SimpleStreams uses: `Fri, 01 Mar 2024 00:00:00 +0000`.
pub(super) fn rfc2822_midnight(year: u64, month: u64, day: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = days_from_civil(year, month, day);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let month_name = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!("{weekday}, {day:02} {month_name} {year:04} 00:00:00 +0000")
}

/// Days since 1970-01-01 of a date on or after it (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (dates here are never before it).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let (y, m, d) = crate::host::civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    (u(y), u(m), u(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(
            rfc2822_midnight(2024, 3, 1),
            "Fri, 01 Mar 2024 00:00:00 +0000"
        );
        assert_eq!(
            rfc2822_midnight(2024, 4, 1),
            "Mon, 01 Apr 2024 00:00:00 +0000"
        );
        assert_eq!(
            rfc2822_midnight(2025, 2, 1),
            "Sat, 01 Feb 2025 00:00:00 +0000"
        );
        assert_eq!(
            rfc2822_midnight(1970, 1, 1),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
        assert_eq!(day_from_2024(0), "20240101");
        assert_eq!(day_from_2024(59), "20240229");
        assert_eq!(day_from_2024(366), "20250101");
        assert_eq!(month_from_2024(13), (2025, 2));
    }
}

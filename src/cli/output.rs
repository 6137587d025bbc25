//! What several commands print: tables, sizes and dates (each command's own lines are in its
//! `cli/<command>.rs`; error lines in [`super::status`]). Data goes to stdout, progress and
//! errors to stderr.

use streamvault::escape;

/// `1.5 MiB` (the library's one size format, [`streamvault::space::size`]).
pub fn size(n: u64) -> String {
    streamvault::space::size(n)
}

/// `2026-11-25 04:07:08Z` from unix seconds (UTC, proleptic Gregorian).
pub fn time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = streamvault::host::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Print rows as aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape::line(c).into_owned()).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        crate::cli::out!("{}", s.trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_format() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00Z");
        assert_eq!(super::time(1_764_043_628), "2025-11-25 04:07:08Z");
    }
    #[test]
    fn size_format() {
        assert_eq!(super::size(10), "10 B");
        assert_eq!(super::size(1536), "1.5 KiB");
    }
}

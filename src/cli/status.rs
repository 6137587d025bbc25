//! How the program ends: [`ExitStatus`], and the one place an error (or a usage error) becomes its
//! `streamvault: error: …` line (plus at most one `hint:` line) and a status.

use std::process::ExitCode;

use streamvault::error::Error;
use streamvault::escape;

/// The exit statuses of both command lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done.
    Success,
    /// 1: the command ran but found problems (damage, a dest not serving what it should).
    Problems,
    /// 2: an error (network, signature, checksum, I/O, lock, database).
    Error,
    /// 2: the command line is wrong (both command lines; argparse uses 2 as well).
    Usage,
    /// 1: `sstream-mirror`'s status for any error other than usage (python's uncaught
    /// exception).
    MirrorFailed,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Problems | ExitStatus::MirrorFailed => 1,
            ExitStatus::Error | ExitStatus::Usage => 2,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> ExitCode {
        ExitCode::from(s.code())
    }
}

/// `streamvault: error: <msg>: <cause>: …` and an optional `hint:` line (invariant 7): exactly
/// these lines, control characters from metadata escaped so that no line can be forged.
pub fn print_error(err: &Error) {
    error_lines(&streamvault::error::chain_line(err), err.hint().as_deref());
}

/// [`print_error`] for one source of several (`sync --all`): `streamvault: error: NAME: …`.
pub fn print_error_in(name: &str, err: &Error) {
    error_lines(
        &format!("{name}: {}", streamvault::error::chain_line(err)),
        err.hint().as_deref(),
    );
}

/// The one place that writes `streamvault: error:` (and its `hint:`) to stderr.
pub fn error_lines(msg: &str, hint: Option<&str>) {
    use std::io::Write as _;
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "streamvault: error: {}", escape::line(msg));
    if let Some(h) = hint {
        let _ = writeln!(e, "hint: {}", escape::line(h));
    }
}

/// Print `e` as the one error line (and its hint), and give the status of a failed command.
pub fn fail(e: &Error) -> ExitStatus {
    print_error(e);
    ExitStatus::Error
}

/// A clap outcome that is not a command line to run: `--help` and `--version` print as clap
/// prints them (stdout, exit 0); every usage error becomes one `streamvault: error:` line and
/// at most one `hint:` line (clap's tip, else the usage), exit 2.
pub fn usage_error(e: &clap::Error) -> ExitStatus {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitStatus::Success;
        }
        _ => {}
    }
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let usage = lines
        .iter()
        .find_map(|l| l.strip_prefix("Usage: "))
        .map(|u| format!("usage: {u} (`--help` for more)"));
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        error_lines("no command given", usage.as_deref());
        return ExitStatus::Usage;
    }
    // `error: …` and its continuation lines (e.g. the missing arguments), up to the tip/usage.
    let mut msg = String::new();
    let mut tip = None;
    for l in &lines {
        if let Some(t) = l.strip_prefix("tip: ") {
            tip.get_or_insert(t);
        } else if l.starts_with("Usage: ") || l.starts_with("For more information") {
            break;
        } else if msg.is_empty() {
            msg.push_str(l.strip_prefix("error: ").unwrap_or(l));
        } else {
            msg.push_str(if msg.ends_with(':') { " " } else { ", " });
            msg.push_str(l);
        }
    }
    if msg.is_empty() {
        msg.push_str("invalid command line");
    }
    let hint = tip.map(str::to_owned).or(usage);
    error_lines(&msg, hint.as_deref());
    ExitStatus::Usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        assert_eq!(ExitStatus::Success.code(), 0);
        assert_eq!(ExitStatus::Problems.code(), 1);
        assert_eq!(ExitStatus::Error.code(), 2);
        assert_eq!(ExitStatus::Usage.code(), 2);
        assert_eq!(ExitStatus::MirrorFailed.code(), 1);
    }
}

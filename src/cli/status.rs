//! How the program ends: [`ExitStatus`], and the one place an error becomes its
//! `streamvault: error: …` line (plus at most one `hint:` line) and a status.

use std::process::ExitCode;

use streamvault::error::Error;

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

/// Print `e` as the one error line (and its hint), and give the status of a failed command.
pub fn fail(e: &Error) -> ExitStatus {
    super::output::print_error(e);
    ExitStatus::Error
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

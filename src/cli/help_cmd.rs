//! `completions` and `man`: generated from the clap definitions, written to stdout or a directory.

use std::path::Path;

use streamvault::error::{IoResultExt, Result};

use super::args::{Cli, ShellArg};
use super::out;
use super::status::ExitStatus;

/// The completion script for `shell`, generated from the clap definitions.
pub(super) fn completions(shell: ShellArg) -> Result<ExitStatus> {
    use clap::CommandFactory as _;
    use clap_complete::Shell;
    let shell = match shell {
        ShellArg::Bash => Shell::Bash,
        ShellArg::Zsh => Shell::Zsh,
        ShellArg::Fish => Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "streamvault", &mut buf);
    write_stdout(&buf)
}

/// The man page on stdout, or every page (`streamvault.1`, `streamvault-SUB.1`) into `dir`.
pub(super) fn man(dir: Option<&Path>) -> Result<ExitStatus> {
    use clap::CommandFactory as _;
    let cmd = Cli::command();
    match dir {
        None => {
            let mut buf = Vec::new();
            // Rendering into memory cannot fail.
            let _ = clap_mangen::Man::new(cmd).render(&mut buf);
            write_stdout(&buf)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_path("create directory", dir)?;
            clap_mangen::generate_to(cmd, dir).with_path("write man pages into", dir)?;
            out!("wrote man pages into {}", dir.display());
            Ok(ExitStatus::Success)
        }
    }
}

/// Raw bytes to stdout; a closed pipe ends quietly like `out!`.
pub(super) fn write_stdout(buf: &[u8]) -> Result<ExitStatus> {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    match o.write_all(buf).and_then(|()| o.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).with_path("write to", Path::new("stdout"))
        }
        _ => Ok(ExitStatus::Success),
    }
}

//! The `streamvault` binary: everything happens in the library; `cli` is the thin edge.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

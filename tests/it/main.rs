//! Integration tests: the real binary and library against real HTTP servers on 127.0.0.1
//! (random ports), real temp dirs and real SQLite.

mod bad_input;
mod common;
mod faults;
mod gc;
mod kill;
mod mirror;
mod publish;
mod real;
mod select;
mod serve;
mod serve_http;
mod serve_status;
mod serve_tls;
mod sync;
mod verify;

//! Integration tests: the real binary and library against real HTTP servers on 127.0.0.1
//! (random ports), real temp dirs and real SQLite.

mod bad_input;
mod common;
mod faults;
mod foreign;
mod gc;
mod grace;
mod kill;
mod mirror;
mod publish;
mod real;
mod s3;
mod select;
mod store_safety;
mod sync;
mod verify;

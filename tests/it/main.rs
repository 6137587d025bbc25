//! Integration tests: the real binary and library against real HTTP servers on 127.0.0.1
//! (random ports), real temp dirs and real SQLite.

mod bad_input;
mod batch_flush;
mod common;
mod conditional;
mod downgrade;
mod faults;
mod foreign;
mod gc;
mod grace;
mod kill;
mod mirror;
mod publish;
mod real;
mod retention;
mod secrets;
mod segmented;
mod select;
mod shared_partial;
mod space;
mod store_safety;
mod sync;
mod transport;
mod unattended;
mod verify;
mod webserver;

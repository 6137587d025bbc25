//! Integration tests: the real binary and library against real HTTP servers on 127.0.0.1
//! (random ports), real temp dirs and real SQLite.

mod amplification;
mod bad_input;
mod common;
mod faults;
mod gc;
mod hostile_output;
mod kill;
mod mirror;
mod publish;
mod real;
mod select;
mod sync;
mod verify;

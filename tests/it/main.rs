//! Integration tests: the real binary and library against real HTTP servers on 127.0.0.1
//! (random ports), real temp dirs and real SQLite.

mod amplification;
mod bad_input;
mod common;
mod conditional;
mod default_signing;
mod downgrade;
mod faults;
mod filter_groups;
mod foreign;
mod gc;
mod grace;
mod hostile_output;
mod kill;
mod kit;
mod maas_rules;
mod mirror;
mod publish;
mod real;
mod retention;
mod s3;
mod secrets;
mod segmented;
mod select;
mod serve;
mod serve_http;
mod serve_status;
mod serve_tls;
mod shared_partial;
mod space;
mod store_safety;
mod sync;
mod transport;
mod unattended;
mod verify;
mod webserver;

//! Integration tests: the real binary and library against real HTTP servers on 127.0.0.1
//! (random ports), real temp dirs and real SQLite.
//!
//! One file per topic; the shared harness (store setups, catalogue readers, filesystem helpers,
//! HTTP servers) is in `common/`, and no test file imports from another. Every `kill -9` test
//! is in `crash.rs`.

mod amplification;
mod bad_input;
mod batch_flush;
mod blobs_by_name;
mod common;
mod compose;
mod compose_s3;
mod conditional;
mod crash;
mod damaged_values;
mod default_signing;
mod downgrade;
mod faults;
mod filter_groups;
mod foreign;
mod gc;
mod gc_scale;
mod grace;
mod hostile_output;
mod import;
mod keys;
mod kit;
mod lxd;
mod maas_acceptance;
mod maas_rules;
mod mirror;
mod old_schema;
mod publish;
mod real;
mod retention;
mod rollback;
mod s3;
mod s3_auto;
mod s3_crash;
mod s3_faults;
mod s3_flips;
mod s3_gc;
mod s3_mem;
mod s3_profile;
mod s3_verify;
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
mod verify_parse;
mod webserver;

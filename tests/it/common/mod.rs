//! Shared test harness, re-exported flat so a test file says `use crate::common::{…}`:
//! - [`store`]: a store root in a temp dir, a runner for the real binary, the usual setups and
//!   direct reads of the catalogue and the store layout;
//! - [`fs`]: fixtures, path and tree helpers, mounts undone on drop;
//! - [`http`]: the generated upstream served on 127.0.0.1, a `streamvault serve` child, a small
//!   HTTP client, and the third-party servers (python, moto, apache2, nginx), each stopped by pid;
//! - [`faultproxy`]: an HTTP proxy in front of moto that injects 500s, 503 SlowDowns and resets;
//! - [`s3tree`]: a client's read of a published S3 tree (index → products → items, sha256);
//! - [`tls`]: a throw-away CA and a leaf certificate for 127.0.0.1 (openssl).

#![allow(dead_code)]

pub mod compose;
pub mod faultproxy;
pub mod fs;
pub mod http;
pub mod s3tree;
pub mod store;
pub mod tls;

pub use fs::*;
pub use http::*;
pub use store::*;
pub use tls::certs;

//! streamvault library
pub mod catalog;
pub mod checksum;
pub mod error;
pub mod lock;
pub mod store;

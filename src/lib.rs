//! streamvault: a SimpleStreams mirror with a content-addressed blob store (BLAKE3), an SQLite
//! catalogue, immutable snapshots and atomic publishing with rollback.
//!
//! Data flows one way: [`fetch`] → [`openpgp`] / [`streams`] (verify, parse, select) →
//! [`sync`] (plan against the [`catalog`], download into the [`store`], commit a snapshot) →
//! [`publish`] (materialise a tree, flip the published link; signing [`keys`]).
//! Maintenance: [`gc`] (retention, then rows before files) and [`verify`] (re-hash, check trees,
//! repair).
//!
//! # Invariants (restic's must/should form)
//! Must (breaking one loses data or lies to clients):
//! 1. A blob row exists only if its file is complete, verified and durable: temp file, fsync,
//!    rename into `blobs/ab/<blake3>`, fsync the directory, then `INSERT` ([`store::BlobStore::commit`]).
//! 2. Nothing parsed from remote data is trusted before its signature check; the JSON parser
//!    gets exactly the verified text ([`sync`] → [`openpgp::verify_cleartext`]).
//! 3. A snapshot is written in one transaction after every blob it names has its row, and is
//!    never changed afterwards ([`catalog::Catalog::insert_snapshot`]; foreign keys enforce it).
//! 4. No path from upstream metadata is used before [`streams::check_path`] accepted it.
//! 5. A checksum or size mismatch, a 200 to a Range request and a short body are never
//!    accepted content ([`fetch`]).
//! 6. A published link points only at a complete tree: a tree is staged, fsynced and renamed
//!    into `trees/` before its row; it is checked against the metadata it serves before the
//!    link moves; the link is replaced by one `rename(2)`; a failed publish leaves the old link
//!    untouched ([`publish`]). The publication row exists before the link points at its tree.
//!
//! 6. Removal ([`gc`]): take the store lock exclusively (every writer holds it shared, so no
//!    writer is between writing a blob and referencing it), decide what stays under that lock,
//!    delete the rows in one committed transaction, and only then unlink files: tree
//!    directories, then blobs. A kill leaves files without rows, never a row without its file.
//! 7. A tree, a snapshot or a blob that a published dest still serves, or served less than the
//!    grace period ago, is never collected; the dest's symlink (readlink) counts as much as the
//!    publication rows ([`gc`]).
//! 8. A file in a live tree is only ever replaced whole, by a rename over it; a corrupt blob is
//!    moved out of `blobs/` (quarantine) before its replacement is committed ([`verify`]).
//!
//! Should (breaking one needs a repair, never loses data): a killed run leaves only files in
//! `partial/` and `tmp/`, blobs without rows and tree directories without rows, which the next
//! run reuses or `gc` removes; `verify` finds every mismatch between the catalogue, `blobs/` and
//! `trees/`, and `verify --repair` fixes what it can from the sources.

pub mod catalog;
pub mod checksum;
pub mod demo;
pub mod diff;
pub mod error;
pub mod escape;
pub mod fetch;
pub mod gc;
pub mod import;
pub mod keys;
pub mod lock;
pub mod metrics;
pub mod mirror;
pub mod openpgp;
pub mod perms;
pub mod publish;
pub mod serve;
pub mod settings;
pub mod space;
pub mod store;
pub mod streamgen;
pub mod streams;
pub mod sync;
pub mod unattended;
pub mod vault;
pub mod verify;

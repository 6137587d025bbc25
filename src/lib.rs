//! streamvault: a SimpleStreams mirror with a content-addressed blob store (BLAKE3), an SQLite
//! catalogue, immutable snapshots and atomic publishing with rollback.
//!
//! Data flows one way: [`fetch`] → [`openpgp`] / [`streams`] (verify, parse, select) →
//! [`sync`] (plan against the [`catalog`], download into the [`store`], commit a snapshot) →
//! [`publish`] (materialise a tree, flip the published link; signing [`keys`]).
//! [`import`] is the other way into the store: an existing mirror directory taken in as a
//! snapshot (`publish --adopt`, and [`mirror`] before its first sync).
//! Maintenance: [`gc`] (retention, then rows before files) and [`verify`] (re-hash, check trees,
//! repair). Around them: [`mirror`] (the `sstream-mirror` command line), [`unattended`] (run
//! history, auto-publish, `status`), [`serve`] (the HTTP(S) server for published trees),
//! [`diff`], [`metrics`], [`settings`], [`space`]; the leaves every stage may use: [`vault`]
//! (an open store: [`store::Layout`], catalogue, blobs, [`lock`]s), [`host`], [`checksum`],
//! [`error`], [`escape`]; [`streamgen`] and [`demo`] make test streams.
//!
//! The catalogue owns the SQL and its types: row ids are newtypes ([`catalog::SnapshotId`],
//! [`catalog::SourceId`], [`catalog::TreeId`], [`catalog::PublicationId`],
//! [`catalog::S3PublicationId`], [`catalog::RunId`]) printed as the bare integer, blob addresses
//! are [`store::BlobHash`], closed sets are enums; a damaged stored value is an error when the
//! row is read.
//!
//! Every module but `import` and `perms` is `pub` because something outside the crate names it:
//! the binary (`src/cli`), `tests/it`, `fuzz/` or `scripts/*.rs`. A module, or an item of a `pub`
//! module, that nothing outside uses is `pub(crate)`, so that the compiler reports its dead code.
//!
//! # Invariants (DESIGN.md's list and numbers; every `//! Protects invariant N` cites these)
//! Must (breaking one loses data or lies to clients):
//! 1. A blob row exists only if its file is complete, verified and durable: written, renamed
//!    into `blobs/ab/<blake3>` and flushed (per file, or per batch with one `syncfs`) before the
//!    `INSERT` ([`store::BlobStore::commit`], [`sync`]'s batch collector).
//! 2. A snapshot is written in one transaction after every blob it names has its row, and is
//!    never changed afterwards ([`catalog::Catalog::insert_snapshot`]; foreign keys enforce it).
//! 3. A published link (or a published object-store index) points only at a complete set: a
//!    tree is staged, made durable and renamed into `trees/` before its row; it is checked
//!    against the metadata it serves before the link moves; the link is replaced by one
//!    `rename(2)` (the S3 index by one conditional PUT, last); a failed publish leaves the old
//!    one untouched; a file in a live tree is only ever replaced whole ([`publish`], [`verify`]).
//! 4. Nothing is deleted while anything still refers to it, or referred to it less than the grace
//!    period ago: [`gc`] takes the store lock exclusively (every writer holds it shared), decides
//!    under it, deletes rows in one committed transaction and only then unlinks files (trees,
//!    then blobs); a published DEST's symlink counts as much as its publication rows; a corrupt
//!    blob is moved to quarantine before its replacement is committed.
//! 5. No path from upstream metadata escapes its tree ([`streams::check_path`] before any
//!    filesystem call or URL) and no symlink inside the store is followed when writing.
//! 6. A signature that does not verify, a checksum or size that does not match and a response
//!    that is not what was asked (a 200 to a Range request, a short body) are errors, never
//!    content; the JSON parser gets exactly the verified text ([`openpgp::verify_cleartext`],
//!    [`fetch`]).
//! 7. Every error a user can cause or meet prints one line (what, where, what to do) and a
//!    non-zero exit; no panic; no secret in any output ([`error`], [`escape`]).
//!
//! Should (breaking one needs a repair, never loses data): a killed run leaves only files in
//! `partial/` and `tmp/`, blobs without rows and tree directories without rows, which the next
//! run reuses or `gc` removes; `verify` finds every mismatch between the catalogue, `blobs/` and
//! `trees/`, and `verify --repair` fixes what it can from the sources.

// The docs are written for the maintainers (`cargo doc --document-private-items`): a module's
// doc names the crate-private items that do its work.
#![allow(rustdoc::private_intra_doc_links)]

pub mod catalog;
pub mod checksum;
pub mod demo;
pub mod diff;
pub mod error;
pub mod escape;
pub mod fetch;
pub mod gc;
pub mod host;
pub(crate) mod import;
pub mod keys;
pub mod lock;
pub mod metrics;
pub mod mirror;
pub mod openpgp;
pub(crate) mod perms;
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

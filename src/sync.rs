//! `sync`: fetch → verify/parse → select → plan against the catalogue → download into the store
//! → commit one snapshot (or none when nothing changed).
//!
//! The steps live in `sync/`: `metadata` (fetch, verify, parse), `select` (filters,
//! `--max`/`--keep`), `plan` (against the store), `download` (into the store); this file runs
//! them in that order and commits the snapshot. Beside them: `conditional` (earlier runs'
//! documents for conditional requests), `downgrade` (an older `updated` is refused) and `report`
//! (a dry run's plan).
//!
//! Order of writes (restic's "packs, then index, then snapshot"):
//! 1. each blob: downloaded into `partial/` and verified (size + strongest upstream checksum); a
//!    batch of them (128 blobs, 128 MiB, or whatever finished in 0.5 s) is renamed into `blobs/`
//!    without fsync and then made durable by one `syncfs(2)`
//!    ([`crate::store::BlobStore::make_durable`]), both on one blocking thread while the
//!    downloads go on, and only then are its rows inserted, in one transaction (invariant 1)
//!    committed without the WAL's fsync (`Catalog::insert_blobs_unsynced`: the snapshot's commit
//!    syncs the WAL that holds them; a power cut before it can only lose rows, never files). A
//!    partial file has one writer (its lock held) from its first byte to its rename (`download::PartialLock`): a concurrent sync of another
//!    source sharing the content writes `NAME.1`, `NAME.2`, … instead, so the bytes renamed are
//!    exactly the bytes hashed;
//! 2. the metadata documents as blobs, the same way: all placed, one `syncfs`, their rows in one
//!    transaction, then the documents' validators, both committed like the batches without the
//!    WAL's fsync (their bytes wait in `tmp/` from the moment they are parsed, not in memory);
//! 3. the snapshot, its documents and items, and, when `--keep` carried versions upstream no
//!    longer lists, how the previous snapshot described them (`kept`, schema 0018: what
//!    filtered metadata serves for them), all in one transaction (invariant 2), whose commit
//!    fsyncs the WAL and with it every row above (an unchanged run's record does the same).
//!
//! Metadata requests are conditional (`If-None-Match`, or `If-Modified-Since` for a
//! `Last-Modified` at least 60 s older than its response's `Date`) on the validators stored with
//! each document URL (`conditional`); a `304` reuses the stored document, verified again.
//!
//! A failed or killed run leaves finished blobs (reused next time) and resumable files in
//! `partial/`, never a snapshot.
//!
//! Memory (issue 8 item 4): proportional to the documents, not to what they select. A document's
//! bytes are dropped once parsed; the selection is a handle per item into the parsed model
//! (`select::Selection`), the plan a few integers per item, and the snapshot's rows are built
//! one at a time as they are inserted. Only a dry run's report (a line per download) and the
//! per-product changes hold text per selected item.

mod conditional;
mod downgrade;
mod download;
mod kept;
mod metadata;
mod plan;
mod report;
mod select;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use crate::catalog::{NewSnapshot, SnapshotId, SnapshotTotals, Source, StoredDocument};
use crate::error::{Error, Result};
use crate::fetch::{self, FetchOptions, Fetcher, Location, Progress};
use crate::openpgp::Keyring;
use crate::store::BlobHash;
use crate::streams::FilterGroups;
use crate::vault::Vault;

/// How a sync runs (what to fetch comes from the [`Source`]).
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub fetch: FetchOptions,
    pub dry_run: bool,
    /// Wait for a running sync of the same source instead of failing.
    pub wait: bool,
    /// sstream-mirror semantics: products that the filters no longer match (or that vanished
    /// upstream) stay as they were in the previous snapshot instead of being dropped.
    pub keep_unmatched_products: bool,
    /// Record the selection but download no item (`--no-item-download`); a later normal run
    /// fetches what is missing (unlike sstream-mirror, which never does).
    pub no_item_download: bool,
    /// Accept items without a size or checksum (`--no-checksumming-reader`): the strongest
    /// checksum present is still checked.
    pub allow_unchecked_items: bool,
    /// Accept metadata whose `updated` instant is older than the previous snapshot's.
    pub allow_downgrade: bool,
}

/// What a sync did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    pub source: String,
    pub outcome: Outcome,
    pub documents: usize,
    pub items: usize,
    pub bytes: u64,
    /// Items (distinct contents) that had to be downloaded.
    pub fetched_items: usize,
    pub fetched_bytes: u64,
    /// Items whose content was already in the store.
    pub reused_items: usize,
    pub reused_bytes: u64,
    pub requests: u64,
    pub retries: u64,
    pub duration_ms: u64,
    pub signer: Option<String>,
    /// `--dry-run`: what would be downloaded.
    pub plan: Vec<PlannedFetch>,
    /// Per product: versions added and removed against the previous snapshot.
    pub changes: Vec<ProductChange>,
}

/// What the selection did to one product (sstream-mirror's `to_add` / `to_remove`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProductChange {
    pub(crate) content_id: String,
    pub(crate) product: String,
    /// Newest first.
    pub(crate) add: Vec<String>,
    /// Oldest first.
    pub(crate) remove: Vec<String>,
    /// Items of the added versions that have a path and a size, in document order.
    pub(crate) added_items: Vec<ItemLine>,
    /// Items of removed versions still present in the source.
    pub(crate) removed_items: Vec<ItemLine>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ItemLine {
    pub(crate) version: String,
    pub(crate) item: String,
    pub(crate) path: String,
    pub(crate) size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "snapshot")]
pub enum Outcome {
    Snapshot(SnapshotId),
    Unchanged(SnapshotId),
    DryRun,
}

/// One download of the plan (one distinct content, maybe several items).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedFetch {
    pub path: String,
    pub size: u64,
    pub(crate) items: Vec<String>,
}

/// Events for a progress display; the library never prints.
pub trait SyncEvents: Progress {
    /// The plan is known: `fetch_bytes` to download in `fetch_items` downloads.
    fn planned(&self, _fetch_items: usize, _fetch_bytes: u64, _reused_items: usize) {}
    /// One download finished and was committed to the store.
    fn downloaded(&self, _path: &str, _size: u64) {}
}

/// A silent [`SyncEvents`].
pub struct Quiet;
impl Progress for Quiet {}
impl SyncEvents for Quiet {}

/// Sync one source. Takes the source's lock (and the store lock, shared) unless `dry_run`.
pub(crate) async fn sync(
    vault: &mut Vault,
    source: &Source,
    opts: &SyncOptions,
    events: Arc<dyn SyncEvents>,
) -> Result<SyncReport> {
    let started = Instant::now();
    let _locks = if opts.dry_run {
        None
    } else {
        let what = format!("sync {}", source.name);
        let store = vault.lock_store_shared(opts.wait, &what)?;
        let src = vault.lock_source(&source.name, opts.wait, &what)?;
        Some((store, src))
    };

    let filters = FilterGroups::parse(&source.filters)?;
    if source.keep && source.max.is_none() {
        return Err(Error::KeepWithoutMax);
    }
    let keyring = match &source.keyring {
        Some(p) if !source.no_verify => Some(Keyring::open(p).map_err(|e| Error::Keyring {
            path: p.clone(),
            source: e,
        })?),
        _ => None,
    };

    let fetcher = Fetcher::new(opts.fetch.clone())?
        .with_document_cache(Arc::new(conditional::StoredDocs::load(vault)));
    let (base, start_path) = fetch::split_start(&source.fetch_url(), source.path.as_deref());
    let mut loc = Location::new(base).with_mirrors(source.fetch_mirrors());

    let mut meta = metadata::fetch_metadata(
        &fetcher,
        &mut loc,
        &start_path,
        keyring.as_ref(),
        source.no_verify,
        (!opts.dry_run).then_some(vault.layout.tmp().as_path()),
        &*events,
    )
    .await?;

    let prev = vault.catalog.latest_snapshot(&source.name)?;
    if let Some(p) = &prev
        && !opts.allow_downgrade
    {
        let docs: Vec<downgrade::NewDoc<'_>> = meta
            .docs
            .iter()
            .map(|d| downgrade::NewDoc {
                path: &d.path,
                url: &d.url,
                updated: d.updated.as_deref(),
            })
            .collect();
        downgrade::check(vault, p, &docs)?;
    }
    let (mut items, changes) =
        select::select_items(vault, source, opts, &filters, &meta, prev.as_ref())?;
    let plan = if opts.no_item_download {
        plan::Plan::default()
    } else {
        plan::plan(vault, &meta, &mut items)?
    };
    // Free space before the first byte (no item request when it does not fit).
    if !opts.dry_run {
        crate::space::check_store(vault, plan.fetch_bytes)?;
    }
    events.planned(plan.len(), plan.fetch_bytes, plan.reused_items);

    let mut report = SyncReport {
        source: source.name.clone(),
        outcome: Outcome::DryRun,
        documents: meta.docs.len(),
        items: items.len(),
        bytes: items.bytes,
        fetched_items: plan.len(),
        fetched_bytes: plan.fetch_bytes,
        reused_items: plan.reused_items,
        reused_bytes: plan.reused_bytes,
        requests: 0,
        retries: 0,
        duration_ms: 0,
        signer: join_signers(&meta.signers),
        plan: Vec::new(),
        changes,
    };

    if opts.dry_run {
        report.plan = report::planned(&plan, &items, &meta);
        report.requests = fetcher.stats().requests;
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    download::download_all(
        vault,
        &fetcher,
        &loc,
        &plan,
        &meta,
        &mut items,
        events.clone(),
    )
    .await?;

    // Metadata documents become blobs (their bytes waited in tmp/ since they were parsed): all
    // placed, made durable by one syncfs (also covering a blob another process placed and has
    // not flushed yet), then their rows in one transaction (invariant 1).
    let mut placed = Vec::with_capacity(meta.docs.len());
    for d in meta.docs.iter_mut() {
        let Some(digests) = d.blob.take().map(|s| s.place(&vault.blobs)).transpose()? else {
            return Err(Error::Io {
                op: "store document",
                path: d.path.clone().into(),
                source: std::io::Error::other("not stored"),
            });
        };
        placed.push(digests);
    }
    vault.blobs.make_durable()?;
    // Their rows and validators wait for the snapshot's commit (or the run's record) to sync.
    vault.catalog.insert_blobs_unsynced(&placed)?;
    let mut documents = Vec::with_capacity(meta.docs.len());
    let mut validators = Vec::new();
    for (ord, (d, digests)) in meta.docs.iter().zip(placed).enumerate() {
        let blob = BlobHash::parse(&digests.blake3)?;
        if let Some(v) = &d.validators {
            validators.push((
                d.url.clone(),
                crate::catalog::StoredValidators {
                    etag: v.etag.clone(),
                    last_modified: v.last_modified.clone(),
                    blob: blob.clone(),
                },
            ));
        }
        documents.push(StoredDocument {
            ord: ord as i64,
            path: d.path.clone(),
            kind: d.kind,
            content_id: d.content_id.clone(),
            blob,
        });
    }

    // The documents are verified, parsed and durable blobs: the next run may ask conditionally.
    vault
        .catalog
        .unsynced(|c| c.save_document_validators(&validators))?;

    // Sorted by key once: the digest and the snapshot's counts come from the same pass.
    let mut order: Vec<u32> = (0..select::idx(items.len())).collect();
    order.sort_by(|&a, &b| {
        items
            .key(&meta, a as usize)
            .cmp(&items.key(&meta, b as usize))
    });
    let mut totals = SnapshotTotals {
        items: items.len() as u64,
        bytes: items.bytes,
        ..SnapshotTotals::default()
    };
    let mut last: Option<(&str, &str, &str, &str)> = None;
    let views = order.iter().filter_map(|&i| {
        let v = items.view(&meta, i as usize)?;
        let key = (v.content_id, v.product, v.version, v.item);
        if last.is_none_or(|l| (l.0, l.1) != (key.0, key.1)) {
            totals.products += 1;
        }
        if last.is_none_or(|l| (l.0, l.1, l.2) != (key.0, key.1, key.2)) {
            totals.versions += 1;
        }
        last = Some(key);
        Some([
            v.content_id,
            v.product,
            v.version,
            v.item,
            v.path.unwrap_or(""),
            items.blob(i as usize).map_or("", BlobHash::as_str),
        ])
    });
    let digest = crate::catalog::digest_sorted(&documents, views);
    drop(order);
    let stats = fetcher.stats();
    report.requests = stats.requests;
    report.retries = stats.retries;
    report.duration_ms = started.elapsed().as_millis() as u64;
    if let Some(p) = &prev
        && p.digest == digest
    {
        report.outcome = Outcome::Unchanged(p.id);
        return Ok(report);
    }
    let carried = items.carried_versions();
    let kept = match &prev {
        Some(p) => kept::describe(vault, p, &carried)?,
        None => Vec::new(),
    };
    let mut next = 0usize;
    let mut next_row = || {
        let row = items.row(&meta, next);
        next += 1;
        Ok(row)
    };
    let id = vault.catalog.insert_snapshot_rows(
        &NewSnapshot {
            source_id: Some(source.id),
            source: source.name.clone(),
            url: crate::catalog::strip_credentials(&loc.base),
            start_path,
            filters: source.filters.clone(),
            max: source.max,
            keep: source.keep,
            signed: meta.signed,
            verified: meta.verified,
            signer: join_signers(&meta.signers),
            fetched_bytes: plan.fetch_bytes,
            duration_ms: report.duration_ms,
            digest,
            documents,
            items: Vec::new(),
        },
        totals,
        &mut next_row,
        &kept,
    )?;
    report.outcome = Outcome::Snapshot(id);
    Ok(report)
}

fn join_signers(s: &BTreeSet<String>) -> Option<String> {
    (!s.is_empty()).then(|| s.iter().cloned().collect::<Vec<_>>().join(","))
}

//! `sync`: fetch → verify/parse → select → plan against the catalogue → download into the store
//! → commit one snapshot (or none when nothing changed).
//!
//! Order of writes (restic's "packs, then index, then snapshot"):
//! 1. each blob: downloaded into `partial/`, verified (size + strongest upstream checksum),
//!    renamed into `blobs/` without fsync; a batch of them (whatever finished meanwhile, at most
//!    256) is then made durable by one `syncfs(2)` ([`crate::store::BlobStore::make_durable`]),
//!    and only then are its rows inserted, in one transaction (invariant 1). A partial file has one
//!    writer from its first byte to its rename ([`PartialLock`]): a concurrent sync of another
//!    source sharing the content writes `NAME.1`, `NAME.2`, … instead, so the bytes renamed are
//!    exactly the bytes hashed;
//! 2. the metadata documents as blobs, the same way;
//! 3. the snapshot, its documents and items in one transaction (invariant 2).
//!
//! Metadata requests are conditional (`If-None-Match`, or `If-Modified-Since` for a
//! `Last-Modified` at least 60 s older than its response's `Date`) on the validators stored with
//! each document URL ([`conditional`]); a `304` reuses the stored document, verified again.
//!
//! A failed or killed run leaves finished blobs (reused next time) and resumable files in
//! `partial/`, never a snapshot.

mod conditional;
mod downgrade;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::catalog::{Document, Item, NewSnapshot, Snapshot, Source};
use crate::checksum::{self, Algo, Checksums};
use crate::error::{Error, IoResultExt, Result};
use crate::fetch::{self, Expect, FetchOptions, Fetcher, Location, Progress};
use crate::openpgp::{self, Keyring};
use crate::streams::{self, FilterGroups};
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
    pub content_id: String,
    pub product: String,
    /// Newest first.
    pub add: Vec<String>,
    /// Oldest first.
    pub remove: Vec<String>,
    /// Items of the added versions that have a path and a size, in document order.
    pub added_items: Vec<ItemLine>,
    /// Items of removed versions still present in the source.
    pub removed_items: Vec<ItemLine>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemLine {
    pub version: String,
    pub item: String,
    pub path: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "snapshot")]
pub enum Outcome {
    Snapshot(i64),
    Unchanged(i64),
    DryRun,
}

/// One download of the plan (one distinct content, maybe several items).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedFetch {
    pub path: String,
    pub size: u64,
    pub items: Vec<String>,
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

/// A metadata document as fetched in this run.
struct FetchedDoc {
    path: String,
    /// The URL that answered (redacted) and the document's top-level `updated`.
    url: String,
    updated: Option<String>,
    /// For the next run's conditional request of this URL.
    validators: Option<fetch::Validators>,
    kind: &'static str,
    content_id: Option<String>,
    raw: Vec<u8>,
    products: Option<streams::Products>,
}

struct Metadata {
    docs: Vec<FetchedDoc>,
    signed: bool,
    verified: bool,
    signers: BTreeSet<String>,
}

/// How deep nested `index:1.0` documents may go.
const MAX_INDEX_DEPTH: usize = 4;

/// Sync one source. Takes the source's lock (and the store lock, shared) unless `dry_run`.
pub async fn sync(
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

    let meta = fetch_metadata(
        &fetcher,
        &mut loc,
        &start_path,
        keyring.as_ref(),
        source.no_verify,
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
    let (mut items, changes) = select_items(vault, source, opts, &filters, &meta, prev.as_ref())?;
    let plan = if opts.no_item_download {
        Plan::default()
    } else {
        plan(vault, &mut items)?
    };
    // Free space before the first byte (no item request when it does not fit).
    if !opts.dry_run {
        crate::space::check_store(vault, plan.fetch_bytes)?;
    }
    events.planned(plan.fetch.len(), plan.fetch_bytes, plan.reused_items);

    let mut report = SyncReport {
        source: source.name.clone(),
        outcome: Outcome::DryRun,
        documents: meta.docs.len(),
        items: items.len(),
        bytes: items.iter().filter_map(|i| i.size).sum(),
        fetched_items: plan.fetch.len(),
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
        report.plan = plan
            .fetch
            .iter()
            .map(|j| PlannedFetch {
                path: j.path.clone(),
                size: j.size.unwrap_or(0),
                items: j
                    .items
                    .iter()
                    .filter_map(|&i| items.get(i))
                    .map(|it| format!("{} {} {}", it.product, it.version, it.item))
                    .collect(),
            })
            .collect();
        report.requests = fetcher.stats().requests;
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }

    download_all(vault, &fetcher, &loc, &plan, &mut items, events.clone()).await?;

    // Metadata documents become blobs (small; whole in memory is fine).
    let mut documents = Vec::with_capacity(meta.docs.len());
    let mut validators = Vec::new();
    for (ord, d) in meta.docs.iter().enumerate() {
        let digests = vault.blobs.put_bytes(&d.raw)?;
        vault.catalog.insert_blob(&digests)?;
        if let Some(v) = &d.validators {
            validators.push((
                d.url.clone(),
                crate::catalog::StoredValidators {
                    validators: v.clone(),
                    blob: digests.blake3.clone(),
                },
            ));
        }
        documents.push(Document {
            ord: ord as i64,
            path: d.path.clone(),
            kind: d.kind.to_string(),
            content_id: d.content_id.clone(),
            blob: digests.blake3,
        });
    }

    // The documents are verified, parsed and durable blobs: the next run may ask conditionally.
    vault.catalog.save_document_validators(&validators)?;

    let digest = snapshot_digest(&documents, &items);
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
    let id = vault.catalog.insert_snapshot(&NewSnapshot {
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
        items,
    })?;
    report.outcome = Outcome::Snapshot(id);
    Ok(report)
}

fn join_signers(s: &BTreeSet<String>) -> Option<String> {
    (!s.is_empty()).then(|| s.iter().cloned().collect::<Vec<_>>().join(","))
}

// ------------------------------------------------------------------------------- metadata

async fn fetch_metadata(
    fetcher: &Fetcher,
    loc: &mut Location,
    start_path: &str,
    keyring: Option<&Keyring>,
    no_verify: bool,
    progress: &dyn Progress,
) -> Result<Metadata> {
    let start = fetcher.get_document(loc, start_path, progress).await?;
    let signed = start_path.ends_with("sjson") || openpgp::is_clearsigned(&start.bytes);
    let mut meta = Metadata {
        docs: Vec::new(),
        signed,
        verified: signed && !no_verify,
        signers: BTreeSet::new(),
    };
    let mut seen = HashSet::new();
    seen.insert(start_path.to_string());
    // Work list of (path, bytes already fetched, depth); documents keep their discovery order.
    let mut queue: Vec<(String, fetch::Fetched, usize)> = vec![(start_path.to_string(), start, 0)];
    while let Some((path, fetched, depth)) = queue.pop() {
        let payload = unwrap_payload(&fetched, signed, keyring, no_verify, &mut meta.signers)?;
        let doc = streams::parse(&fetched.url, &payload)?;
        match doc {
            streams::Document::Products(p) => {
                meta.docs.push(FetchedDoc {
                    path,
                    url: fetched.url.clone(),
                    validators: fetched.validators.clone(),
                    updated: p.top_field("updated").map(str::to_string),
                    kind: "products",
                    content_id: Some(p.content_id().to_string()),
                    raw: fetched.bytes,
                    products: Some(p),
                });
            }
            streams::Document::Index(index) => {
                meta.docs.push(FetchedDoc {
                    path,
                    url: fetched.url.clone(),
                    validators: fetched.validators.clone(),
                    updated: index.updated.clone(),
                    kind: "index",
                    content_id: None,
                    raw: fetched.bytes,
                    products: None,
                });
                let mut children = Vec::new();
                for entry in &index.entries {
                    let Some(p) = &entry.path else { continue };
                    if !seen.insert(p.clone()) {
                        continue;
                    }
                    let child = fetcher.get_document(loc, p, progress).await?;
                    check_entry(entry, &child)?;
                    if entry.is_followed() {
                        if depth + 1 > MAX_INDEX_DEPTH {
                            return Err(Error::IndexLoop { url: child.url });
                        }
                        children.push((p.clone(), child, depth + 1));
                    } else {
                        // Listed but not a format we follow: copied verbatim (spec §1.2).
                        meta.docs.push(FetchedDoc {
                            path: p.clone(),
                            url: child.url.clone(),
                            validators: child.validators.clone(),
                            updated: None,
                            kind: "other",
                            content_id: Some(entry.content_id.clone()),
                            raw: child.bytes,
                            products: None,
                        });
                    }
                }
                // Depth-first in document order: push reversed onto the stack.
                queue.extend(children.into_iter().rev());
            }
        }
    }
    Ok(meta)
}

/// The bytes handed to the JSON parser: exactly the verified text under a signed start.
fn unwrap_payload(
    fetched: &fetch::Fetched,
    signed: bool,
    keyring: Option<&Keyring>,
    no_verify: bool,
    signers: &mut BTreeSet<String>,
) -> Result<Vec<u8>> {
    if !signed {
        return Ok(fetched.bytes.clone());
    }
    if !openpgp::is_clearsigned(&fetched.bytes) {
        return Err(Error::Unsigned {
            url: fetched.url.clone(),
        });
    }
    if no_verify {
        return openpgp::unwrap_cleartext(&fetched.bytes).map_err(|e| Error::Signature {
            url: fetched.url.clone(),
            source: e,
        });
    }
    let Some(keyring) = keyring else {
        return Err(Error::NoKeyring {
            url: fetched.url.clone(),
        });
    };
    let v = openpgp::verify_cleartext(keyring, &fetched.bytes).map_err(|e| Error::Signature {
        url: fetched.url.clone(),
        source: e,
    })?;
    signers.insert(v.signer);
    Ok(v.payload)
}

/// An index entry's own size/checksum, when it carries one, must match the document.
fn check_entry(entry: &streams::IndexEntry, doc: &fetch::Fetched) -> Result<()> {
    if let Some(size) = entry.size
        && size != doc.bytes.len() as u64
    {
        return Err(Error::DocumentMismatch {
            url: doc.url.clone(),
            what: format!("size {} expected {size}", doc.bytes.len()),
        });
    }
    if let Some((algo, want)) = entry.checksums.strongest() {
        let mut h = checksum::MultiHasher::new(&[algo]);
        h.update(&doc.bytes);
        let got = h.finish().upstream;
        if got.get(algo).map(str::to_ascii_lowercase) != Some(want.to_ascii_lowercase()) {
            return Err(Error::DocumentMismatch {
                url: doc.url.clone(),
                what: format!("{} differs", algo.name()),
            });
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------ selection

/// The items of the new snapshot: filters, then `--max`/`--keep` per product against the
/// previous snapshot (spec §2.3–§2.4). Versions kept only by `--keep` carry their items over
/// from the previous snapshot.
fn select_items(
    vault: &Vault,
    source: &Source,
    opts: &SyncOptions,
    filters: &FilterGroups,
    meta: &Metadata,
    prev: Option<&Snapshot>,
) -> Result<(Vec<Item>, Vec<ProductChange>)> {
    let prev_versions = match prev {
        Some(p) => vault.catalog.snapshot_versions(p.id)?,
        None => BTreeMap::new(),
    };
    let mut visited: HashSet<(String, String)> = HashSet::new();
    let mut out = Vec::new();
    let mut changes = Vec::new();
    for doc in &meta.docs {
        let Some(products) = &doc.products else {
            continue;
        };
        let cid = products.content_id();
        for sp in streams::select(products, filters) {
            let key = (cid.to_string(), sp.name.to_string());
            let src = sp.version_names_desc();
            let target = prev_versions.get(&key).cloned().unwrap_or_default();
            visited.insert(key);
            let work = streams::resolve_work(&src, &target, source.max, source.keep)?;
            let keep_set = final_versions(&target, &work);
            for sv in &sp.versions {
                if !keep_set.contains(sv.name) {
                    continue;
                }
                for fi in &sv.items {
                    out.push(item_from_flat(cid, fi, opts.allow_unchecked_items)?);
                }
            }
            // Versions that left the source but are kept (--keep): carried over.
            if let Some(p) = prev {
                for v in &keep_set {
                    if !src.iter().any(|s| s == v) {
                        out.extend(vault.catalog.version_items(p.id, cid, sp.name, v)?);
                    }
                }
            }
            changes.push(product_change(cid, &sp, work));
        }
    }
    // Products of the previous snapshot that no longer appear (or no longer match): dropped,
    // unless --keep keeps them within --max; kept as they were under mirror semantics.
    if let Some(p) = prev {
        for ((cid, prod), target) in &prev_versions {
            if visited.contains(&(cid.clone(), prod.clone())) {
                continue;
            }
            let keep: Vec<String> = if opts.keep_unmatched_products {
                target.clone()
            } else {
                let work = streams::resolve_work(&[], target, source.max, source.keep)?;
                final_versions(target, &work).into_iter().collect()
            };
            for v in keep {
                out.extend(vault.catalog.version_items(p.id, cid, prod, &v)?);
            }
        }
    }
    Ok((out, changes))
}

fn item_line(fi: &streams::FlatItem<'_>) -> Option<ItemLine> {
    Some(ItemLine {
        version: fi.version.to_string(),
        item: fi.item.to_string(),
        path: fi.get("path")?.to_string(),
        size: fi.size?,
    })
}

fn product_change(
    cid: &str,
    sp: &streams::SelectedProduct<'_>,
    work: streams::Work,
) -> ProductChange {
    let lines = |names: &[String]| -> Vec<ItemLine> {
        names
            .iter()
            .filter_map(|n| sp.versions.iter().find(|v| v.name == n.as_str()))
            .flat_map(|v| v.items.iter().filter_map(item_line))
            .collect()
    };
    ProductChange {
        content_id: cid.to_string(),
        product: sp.name.to_string(),
        added_items: lines(&work.add),
        removed_items: lines(&work.remove),
        add: work.add,
        remove: work.remove,
    }
}

/// `(target ∪ add) − remove`.
fn final_versions(target: &[String], work: &streams::Work) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = target.iter().cloned().collect();
    set.extend(work.add.iter().cloned());
    for r in &work.remove {
        set.remove(r);
    }
    set
}

fn item_from_flat(content_id: &str, fi: &streams::FlatItem<'_>, unchecked: bool) -> Result<Item> {
    let name = || format!("{}/{}/{}/{}", content_id, fi.product, fi.version, fi.item);
    if fi.path.is_some() && !unchecked {
        if fi.size.is_none() {
            return Err(Error::ItemIncomplete {
                item: name(),
                what: "size",
            });
        }
        if fi.checksums.is_empty() {
            return Err(Error::ItemIncomplete {
                item: name(),
                what: "checksum",
            });
        }
        if let Some((algo, hex)) = fi.checksums.strongest()
            && !checksum::is_hex(hex, algo.hex_len())
        {
            return Err(Error::ItemIncomplete {
                item: name(),
                what: algo.name(),
            });
        }
    }
    Ok(Item {
        content_id: content_id.to_string(),
        product: fi.product.to_string(),
        version: fi.version.to_string(),
        item: fi.item.to_string(),
        path: fi.path.map(str::to_string),
        size: fi.size,
        checksums: fi.checksums.clone(),
        blob: None,
    })
}

// ----------------------------------------------------------------------------------- plan

/// One distinct content to download, for one or more items.
struct FetchJob {
    path: String,
    size: Option<u64>,
    checksums: Checksums,
    items: Vec<usize>,
}

#[derive(Default)]
struct Plan {
    fetch: Vec<FetchJob>,
    fetch_bytes: u64,
    reused_items: usize,
    reused_bytes: u64,
}

/// Match every wanted item against the store by its strongest upstream checksum and size; what
/// is missing becomes one download per distinct content.
fn plan(vault: &Vault, items: &mut [Item]) -> Result<Plan> {
    let mut plan = Plan {
        fetch: Vec::new(),
        fetch_bytes: 0,
        reused_items: 0,
        reused_bytes: 0,
    };
    // Distinct contents by (strongest checksum, size); items without either
    // (`--no-checksumming-reader`) are their own content, keyed by path.
    let mut by_content: HashMap<(Algo, String, u64), usize> = HashMap::new();
    let mut found: HashMap<(Algo, String, u64), Option<String>> = HashMap::new();
    let mut assigned: Vec<(usize, String)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let Some(path) = &it.path else {
            continue;
        };
        let (Some(size), Some((algo, hex))) = (it.size, it.checksums.strongest()) else {
            // Unchecked item: always fetched; a resumable name from its path.
            plan.fetch_bytes += it.size.unwrap_or(0);
            plan.fetch.push(FetchJob {
                path: path.clone(),
                size: it.size,
                checksums: it.checksums.clone(),
                items: vec![i],
            });
            continue;
        };
        let key = (algo, hex.to_ascii_lowercase(), size);
        let blob = match found.get(&key) {
            Some(b) => b.clone(),
            None => {
                let b = vault
                    .catalog
                    .find_blob(&it.checksums, size)?
                    .filter(|b| vault.blobs.contains(b));
                found.insert(key.clone(), b.clone());
                b
            }
        };
        if let Some(b) = blob {
            assigned.push((i, b));
            plan.reused_items += 1;
            plan.reused_bytes += size;
            continue;
        }
        match by_content.get(&key) {
            Some(&j) => {
                if let Some(job) = plan.fetch.get_mut(j) {
                    job.items.push(i);
                }
            }
            None => {
                by_content.insert(key, plan.fetch.len());
                plan.fetch_bytes += size;
                plan.fetch.push(FetchJob {
                    path: path.clone(),
                    size: Some(size),
                    checksums: it.checksums.clone(),
                    items: vec![i],
                });
            }
        }
    }
    for (i, blob) in assigned {
        if let Some(it) = items.get_mut(i) {
            it.blob = Some(blob);
        }
    }
    Ok(plan)
}

/// The name of a resumable download in `partial/`: from the expected checksum, which is
/// validated hex, so upstream text never becomes a path of its own.
fn partial_name(job: &FetchJob) -> String {
    match job.checksums.strongest() {
        Some((algo, hex)) if checksum::is_hex(hex, algo.hex_len()) => {
            format!(
                "{}-{}-{}",
                algo.name(),
                hex.to_ascii_lowercase(),
                job.size.unwrap_or(0)
            )
        }
        _ => blake3::hash(job.path.as_bytes()).to_hex().to_string(),
    }
}

/// How many names (`NAME`, `NAME.1`, …) a partial file may take while other processes hold
/// the first ones; after that a writer waits for `NAME`.
const PARTIAL_NAMES: usize = 16;

/// The exclusive right to write one partial file: an `flock` on `<partial>.lock`, held from
/// before the first byte is written until the file is renamed into `blobs/` or given up.
///
/// The lock file, not the partial itself, is locked, because the partial is removed, recreated
/// and renamed while it is written. Releasing unlinks the lock file while still holding it; a
/// waiter that then gets the lock on the unlinked file sees that the name now points elsewhere
/// (or nowhere) and tries again, so two writers can never both believe they own a name.
struct PartialLock {
    partial: PathBuf,
    lock_path: PathBuf,
    file: std::fs::File,
}

impl PartialLock {
    /// Lock `dir/name`, or the first of `dir/name.1`, `dir/name.2`, … that no other process
    /// holds; when all are held, wait for `dir/name`. Never fails because of another writer.
    fn acquire(dir: &Path, name: &str) -> Result<PartialLock> {
        for n in 0..PARTIAL_NAMES {
            let partial = match n {
                0 => dir.join(name),
                n => dir.join(format!("{name}.{n}")),
            };
            if let Some(lock) = Self::lock(partial, false)? {
                return Ok(lock);
            }
        }
        loop {
            if let Some(lock) = Self::lock(dir.join(name), true)? {
                return Ok(lock);
            }
        }
    }

    /// Lock `<partial>.lock` (waiting for it when `wait`); `None` when another process holds
    /// it (without `wait`) or it was released and unlinked while this one waited.
    fn lock(partial: PathBuf, wait: bool) -> Result<Option<PartialLock>> {
        use std::os::unix::fs::MetadataExt;
        let mut lock_path = partial.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path)
                .with_path("open", &lock_path)?;
            let locked = if wait {
                file.lock().map(|()| true)
            } else {
                match file.try_lock() {
                    Ok(()) => Ok(true),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(false),
                    Err(std::fs::TryLockError::Error(e)) => Err(e),
                }
            };
            if !locked.with_path("lock", &lock_path)? {
                return Ok(None);
            }
            let held = file.metadata().with_path("stat", &lock_path)?;
            match std::fs::metadata(&lock_path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(Some(PartialLock {
                        partial,
                        lock_path,
                        file,
                    }));
                }
                // released (unlinked) by its previous holder after this open: open it again
                _ => continue,
            }
        }
    }

    /// Give the name up: unlink the lock file while still holding it, then unlock.
    fn release(self) {
        let _ = std::fs::remove_file(&self.lock_path);
        drop(self.file);
    }
}

async fn download_all(
    vault: &mut Vault,
    fetcher: &Fetcher,
    loc: &Location,
    plan: &Plan,
    items: &mut [Item],
    events: Arc<dyn SyncEvents>,
) -> Result<()> {
    let total = plan.fetch.len();
    if total == 0 {
        return Ok(());
    }
    // The fetcher bounds concurrency to `--jobs` itself.
    let mut set = tokio::task::JoinSet::new();
    let partial_dir = vault.layout.partial();
    for (j, job) in plan.fetch.iter().enumerate() {
        let name = partial_name(job);
        let partial_dir = partial_dir.clone();
        let fetcher = fetcher.clone();
        let loc = loc.clone();
        let rel = job.path.clone();
        let expect = Expect {
            size: job.size,
            checksums: job.checksums.clone(),
        };
        let events = events.clone();
        let blobs = vault.blobs.clone();
        set.spawn(async move {
            let progress: &dyn Progress = &*events;
            // One writer per partial file, from its first byte until it is placed (or dropped):
            // another sync sharing this content writes under another name.
            let lock = match tokio::task::spawn_blocking(move || {
                PartialLock::acquire(&partial_dir, &name)
            })
            .await
            {
                Ok(Ok(lock)) => lock,
                Ok(Err(e)) => return (j, Err(e)),
                Err(_) => return (j, Err(Error::Interrupted)),
            };
            let partial = lock.partial.clone();
            let res = fetcher
                .download(&loc, &rel, &partial, &expect, progress)
                .await;
            // chmod + rename happen here, in parallel; the flush (one syncfs) and the rows are
            // batched by the collector below (invariant 1 still holds: row after durable file).
            let placed = match res {
                Ok(d) => {
                    let digests = d.digests.clone();
                    tokio::task::spawn_blocking(move || {
                        let placed = blobs.place(&partial, &digests).map(|dest| (d, dest));
                        lock.release();
                        placed
                    })
                    .await
                    .unwrap_or_else(|_| Err(Error::Interrupted))
                }
                Err(e) => {
                    lock.release();
                    Err(Error::from(e))
                }
            };
            (j, placed)
        });
    }
    let mut failed = 0usize;
    let mut done = 0usize;
    let mut first: Option<String> = None;
    let mut batch: Vec<(usize, checksum::Digests, PathBuf)> = Vec::new();
    let mut next = set.join_next().await;
    while let Some(joined) = next {
        match joined {
            Ok((j, Ok((d, dest)))) => batch.push((j, d.digests, dest)),
            Ok((_, Err(e))) => {
                failed += 1;
                first.get_or_insert_with(|| error_line(&e));
            }
            Err(_) => {
                failed += 1;
                first.get_or_insert_with(|| "a download task stopped unexpectedly".to_string());
            }
        }
        // Flush when nothing else is ready right now, or the batch is large.
        next = match set.try_join_next() {
            Some(r) if batch.len() < 256 => Some(r),
            other => {
                done += flush(vault, plan, items, &mut batch, &*events)?;
                match other {
                    Some(r) => Some(r),
                    None => set.join_next().await,
                }
            }
        };
    }
    done += flush(vault, plan, items, &mut batch, &*events)?;
    if failed > 0 {
        return Err(Error::Downloads {
            failed,
            total,
            done,
            first: first.unwrap_or_default(),
        });
    }
    Ok(())
}

/// Make a batch of placed blobs durable (one syncfs) and record their rows in one transaction;
/// then point the batch's items at them.
fn flush(
    vault: &mut Vault,
    plan: &Plan,
    items: &mut [Item],
    batch: &mut Vec<(usize, checksum::Digests, PathBuf)>,
    events: &dyn SyncEvents,
) -> Result<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    vault.blobs.make_durable()?;
    let digests: Vec<checksum::Digests> = batch.iter().map(|(_, d, _)| d.clone()).collect();
    vault.catalog.insert_blobs(&digests)?;
    let n = batch.len();
    for (j, d, _) in batch.drain(..) {
        let Some(job) = plan.fetch.get(j) else {
            continue;
        };
        for &i in &job.items {
            if let Some(it) = items.get_mut(i) {
                it.blob = Some(d.blake3.clone());
            }
        }
        events.downloaded(&job.path, job.size.unwrap_or(0));
    }
    Ok(n)
}

/// An error and its causes on one line.
pub fn error_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// BLAKE3 over what a snapshot holds: documents (path → blob) and items (key → path, blob).
/// Equal digests mean "unchanged".
pub fn snapshot_digest(documents: &[Document], items: &[Item]) -> String {
    let mut h = blake3::Hasher::new();
    for d in documents {
        for part in [d.path.as_str(), d.blob.as_str()] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        h.update(b"\n");
    }
    let mut keys: Vec<&Item> = items.iter().collect();
    keys.sort_by(|a, b| a.key().cmp(&b.key()));
    for it in keys {
        for part in [
            it.content_id.as_str(),
            it.product.as_str(),
            it.version.as_str(),
            it.item.as_str(),
            it.path.as_deref().unwrap_or(""),
            it.blob.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_partial_name_goes_to_the_next_writer_under_another_name() {
        let dir = tempfile::tempdir().unwrap();
        let first = PartialLock::acquire(dir.path(), "sha256-ab-1").unwrap();
        assert_eq!(first.partial, dir.path().join("sha256-ab-1"));
        // flock conflicts between two opens even within one process
        let second = PartialLock::acquire(dir.path(), "sha256-ab-1").unwrap();
        assert_eq!(second.partial, dir.path().join("sha256-ab-1.1"));
        first.release();
        assert!(!dir.path().join("sha256-ab-1.lock").exists());
        let third = PartialLock::acquire(dir.path(), "sha256-ab-1").unwrap();
        assert_eq!(third.partial, dir.path().join("sha256-ab-1"));
        third.release();
        second.release();
    }
}

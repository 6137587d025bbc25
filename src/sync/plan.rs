//! The plan: every wanted item matched against the store by its strongest upstream checksum
//! and size; what is missing becomes one download per distinct content.
//!
//! Memory (issue 8 item 4): a few integers per item (which download it joins) and 32 bytes per
//! distinct content; a download's path and checksums are read from the documents when it starts.

use std::collections::HashMap;

use super::metadata::Metadata;
use super::select::{Selection, idx};
use crate::checksum::{Algo, Checksums};
use crate::error::Result;
use crate::vault::Vault;

/// The downloads: one per distinct content missing from the store, each for one or more items
/// (their indices in the [`Selection`], in selection order; the first one names the path).
#[derive(Default)]
pub(super) struct Plan {
    /// Per download: its range in `items`.
    starts: Vec<u32>,
    items: Vec<u32>,
    pub(super) fetch_bytes: u64,
    pub(super) reused_items: usize,
    pub(super) reused_bytes: u64,
}

impl Plan {
    /// Number of downloads.
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }

    /// The items of download `j`.
    pub(super) fn items(&self, j: usize) -> &[u32] {
        let start = self.starts.get(j).map_or(0, |&s| s as usize);
        let end = self
            .starts
            .get(j + 1)
            .map_or(self.items.len(), |&s| s as usize);
        self.items.get(start..end).unwrap_or_default()
    }

    /// What download `j` fetches: the first item's path, size and checksums.
    pub(super) fn job<'a>(&self, sel: &'a Selection, meta: &'a Metadata, j: usize) -> Option<Job> {
        let first = *self.items(j).first()?;
        let v = sel.view(meta, first as usize)?;
        Some(Job {
            path: v.path?.to_string(),
            size: v.size,
            checksums: v.checksums(),
        })
    }
}

/// One download, spelled out when it starts.
pub(super) struct Job {
    pub(super) path: String,
    pub(super) size: Option<u64>,
    pub(super) checksums: Checksums,
}

/// A content's identity in the plan: BLAKE3 of (strongest algorithm, lowercase hex, size), so
/// the maps hold 32 bytes per distinct content instead of its text. The hex is lowercased
/// through a stack buffer, not a new string per item.
fn content_key(algo: Algo, hex: &str, size: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(algo.name().as_bytes());
    h.update(b"\0");
    let mut buf = [0u8; 64];
    for chunk in hex.as_bytes().chunks(buf.len()) {
        let lower = buf.get_mut(..chunk.len()).unwrap_or_default();
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        h.update(lower);
    }
    h.update(b"\0");
    h.update(&size.to_le_bytes());
    *h.finalize().as_bytes()
}

/// Hashes a [`content_key`] by its first eight bytes: they are already BLAKE3 output, so
/// SipHash over all 32 would only cost time (a million-item plan hashes a million keys).
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
}

type Contents = HashMap<[u8; 32], Content, std::hash::BuildHasherDefault<KeyHasher>>;

/// A distinct content: already a blob of the store, or download `j`.
#[derive(Clone, Copy)]
enum Content {
    Blob(u32),
    Job(u32),
}

const NO_JOB: u32 = u32::MAX;

/// Match every wanted item against the store by its strongest upstream checksum and size; what
/// is missing becomes one download per distinct content. Items found in the store are pointed
/// at their blob.
pub(super) fn plan(vault: &Vault, meta: &Metadata, sel: &mut Selection) -> Result<Plan> {
    // One read transaction for the lookups: not a file lock per item (issue 13 item 5).
    vault.catalog.reading(|_| plan_in(vault, meta, sel))
}

fn plan_in(vault: &Vault, meta: &Metadata, sel: &mut Selection) -> Result<Plan> {
    let mut plan = Plan::default();
    // Distinct contents by (strongest checksum, size); items without either
    // (`--no-checksumming-reader`) are their own content.
    let mut contents = Contents::with_capacity_and_hasher(sel.len(), Default::default());
    let mut item_job: Vec<u32> = vec![NO_JOB; sel.len()];
    let mut jobs = 0u32;
    let mut found: Vec<(usize, u32)> = Vec::new();
    // An empty store (a first sync, a dry run's scratch catalogue) has nothing to look up.
    let has_blobs = vault.catalog.has_blobs()?;
    for (i, slot) in item_job.iter_mut().enumerate() {
        let Some(it) = sel.view(meta, i) else {
            continue;
        };
        if it.path.is_none() {
            continue;
        }
        let (Some(size), Some((algo, hex))) = (it.size, it.strongest) else {
            // Unchecked item: always fetched; a resumable name from its path.
            plan.fetch_bytes += it.size.unwrap_or(0);
            *slot = jobs;
            jobs += 1;
            continue;
        };
        let key = content_key(algo, hex, size);
        let content = match contents.get(&key) {
            Some(&c) => c,
            None => {
                let found = match has_blobs {
                    true => vault.catalog.find_blob(&it.checksums(), size)?,
                    false => None,
                };
                let c = match found.filter(|b| vault.blobs.contains(b.as_str())) {
                    Some(b) => Content::Blob(sel.add_blob(b)),
                    None => {
                        plan.fetch_bytes += size;
                        jobs += 1;
                        Content::Job(jobs - 1)
                    }
                };
                contents.insert(key, c);
                c
            }
        };
        match content {
            Content::Blob(b) => {
                found.push((i, b));
                plan.reused_items += 1;
                plan.reused_bytes += size;
            }
            Content::Job(j) => *slot = j,
        }
    }
    drop(contents);
    for (i, b) in found {
        sel.point(i, b);
    }
    // Group the items by download (counting sort; each group keeps selection order).
    let mut counts = vec![0u32; jobs as usize];
    for &j in &item_job {
        if let Some(c) = counts.get_mut(j as usize) {
            *c += 1;
        }
    }
    let mut total = 0u32;
    plan.starts = counts
        .iter()
        .map(|&c| {
            total += c;
            total - c
        })
        .collect();
    plan.items = vec![0; total as usize];
    let mut next = plan.starts.clone();
    for (i, &j) in item_job.iter().enumerate() {
        if let Some(n) = next.get_mut(j as usize) {
            if let Some(slot) = plan.items.get_mut(*n as usize) {
                *slot = idx(i);
            }
            *n += 1;
        }
    }
    Ok(plan)
}

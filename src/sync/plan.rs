//! The plan: every wanted item matched against the store by its strongest upstream checksum
//! and size; what is missing becomes one download per distinct content.

use std::collections::HashMap;

use crate::catalog::Item;
use crate::checksum::{Algo, Checksums};
use crate::error::Result;
use crate::vault::Vault;

/// One distinct content to download, for one or more items.
pub(super) struct FetchJob {
    pub(super) path: String,
    pub(super) size: Option<u64>,
    pub(super) checksums: Checksums,
    pub(super) items: Vec<usize>,
}

#[derive(Default)]
pub(super) struct Plan {
    pub(super) fetch: Vec<FetchJob>,
    pub(super) fetch_bytes: u64,
    pub(super) reused_items: usize,
    pub(super) reused_bytes: u64,
}

/// Match every wanted item against the store by its strongest upstream checksum and size; what
/// is missing becomes one download per distinct content.
pub(super) fn plan(vault: &Vault, items: &mut [Item]) -> Result<Plan> {
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

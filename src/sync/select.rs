//! Selection: which items the new snapshot holds — the filters, then `--max`/`--keep` per
//! product against the previous snapshot (spec §2.3–§2.4) — and what changed per product.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::metadata::Metadata;
use super::{ItemLine, ProductChange, SyncOptions};
use crate::catalog::{Item, Snapshot, Source};
use crate::checksum;
use crate::error::{Error, Result};
use crate::streams::{self, FilterGroups};
use crate::vault::Vault;

/// The items of the new snapshot: filters, then `--max`/`--keep` per product against the
/// previous snapshot (spec §2.3–§2.4). Versions kept only by `--keep` carry their items over
/// from the previous snapshot.
pub(super) fn select_items(
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

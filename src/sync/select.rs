//! Selection: which items the new snapshot holds — the filters, then `--max`/`--keep` per
//! product against the previous snapshot (spec §2.3–§2.4) — and what changed per product.
//!
//! Memory (issue 8 item 4): the selection is a [`Selection`], one small handle per item into the
//! parsed documents (or into the few rows carried over from the previous snapshot), never a row
//! per item; rows are built one at a time when the snapshot is written.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::metadata::Metadata;
use super::{ItemLine, ProductChange, SyncOptions};
use crate::catalog::{Item, Snapshot, Source};
use crate::checksum::{self, Checksums};
use crate::error::{Error, Result};
use crate::store::BlobHash;
use crate::streams::{self, FilterGroups};
use crate::vault::Vault;

/// One selected item: where it is in the fetched documents, or a row carried over.
#[derive(Debug, Clone, Copy)]
enum Sel {
    /// `meta.docs[doc]`'s item at `at`.
    Doc { doc: u32, at: streams::ItemAt },
    /// `carried[i]`.
    Carried(u32),
}

/// The items of the new snapshot, in selection order, and the blob each one points at.
#[derive(Default)]
pub(super) struct Selection {
    sel: Vec<Sel>,
    carried: Vec<Item>,
    /// Per item: an index into `blob_names`, or [`NO_BLOB`].
    blob: Vec<u32>,
    blob_names: Vec<BlobHash>,
    /// Sum of the item sizes.
    pub(super) bytes: u64,
}

const NO_BLOB: u32 = u32::MAX;

/// An index as u32 (a selection is bounded by its documents' u32 model long before).
pub(super) fn idx(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One item as the plan, the report and the catalogue see it, borrowed from the documents
/// without an allocation (issue 13 item 5: the plan and a dry run's report read every item).
pub(super) struct ItemView<'a> {
    pub(super) content_id: &'a str,
    pub(super) product: &'a str,
    pub(super) version: &'a str,
    pub(super) item: &'a str,
    pub(super) path: Option<&'a str>,
    pub(super) size: Option<u64>,
    /// The strongest checksum, its hex as written (compare it case-insensitively).
    pub(super) strongest: Option<(checksum::Algo, &'a str)>,
    from: From<'a>,
}

/// Where an [`ItemView`]'s checksums are, spelled out only when needed ([`ItemView::checksums`]).
enum From<'a> {
    Doc(&'a streams::Products, streams::ItemAt),
    Carried(&'a Checksums),
}

impl ItemView<'_> {
    /// Every checksum of the item, lowercased.
    pub(super) fn checksums(&self) -> Checksums {
        match self.from {
            From::Doc(p, at) => p.checksums(at),
            From::Carried(c) => c.clone(),
        }
    }
}

impl Selection {
    pub(super) fn len(&self) -> usize {
        self.sel.len()
    }

    fn push(&mut self, s: Sel, size: Option<u64>) {
        self.sel.push(s);
        self.blob.push(NO_BLOB);
        self.bytes += size.unwrap_or(0);
    }

    /// `(content id, product, version)` of every version carried over (src/sync/kept.rs).
    pub(super) fn carried_versions(&self) -> super::kept::Carried {
        self.carried
            .iter()
            .map(|it| {
                (
                    it.content_id.clone(),
                    it.product.clone(),
                    it.version.clone(),
                )
            })
            .collect()
    }

    fn carry(&mut self, items: Vec<Item>) {
        for it in items {
            let i = idx(self.carried.len());
            let size = it.size;
            // a carried row keeps its blob
            let blob = it.blob.clone();
            self.carried.push(it);
            self.push(Sel::Carried(i), size);
            if let Some(b) = blob {
                let b = self.add_blob(b);
                self.point(self.sel.len() - 1, b);
            }
        }
    }

    /// Item `i`, looked up again in its document.
    pub(super) fn view<'a>(&'a self, meta: &'a Metadata, i: usize) -> Option<ItemView<'a>> {
        match *self.sel.get(i)? {
            Sel::Doc { doc, at } => {
                let products = meta.docs.get(doc as usize)?.products.as_ref()?;
                let (product, version, item) = products.item_names(at);
                let f = products.facts(at);
                Some(ItemView {
                    content_id: products.content_id(),
                    product,
                    version,
                    item,
                    path: f.path,
                    size: f.size,
                    strongest: f.strongest,
                    from: From::Doc(products, at),
                })
            }
            Sel::Carried(c) => {
                let it = self.carried.get(c as usize)?;
                Some(ItemView {
                    content_id: &it.content_id,
                    product: &it.product,
                    version: &it.version,
                    item: &it.item,
                    path: it.path.as_deref(),
                    size: it.size,
                    strongest: it.checksums.strongest(),
                    from: From::Carried(&it.checksums),
                })
            }
        }
    }

    /// `(content_id, product, version, item)` of item `i`, without the rest of its view.
    pub(super) fn key<'a>(
        &'a self,
        meta: &'a Metadata,
        i: usize,
    ) -> (&'a str, &'a str, &'a str, &'a str) {
        match self.sel.get(i).copied() {
            Some(Sel::Doc { doc, at }) => match meta
                .docs
                .get(doc as usize)
                .and_then(|d| d.products.as_ref())
            {
                Some(p) => {
                    let (prod, v, it) = p.item_names(at);
                    (p.content_id(), prod, v, it)
                }
                None => ("", "", "", ""),
            },
            Some(Sel::Carried(c)) => self
                .carried
                .get(c as usize)
                .map_or(("", "", "", ""), |it| it.key()),
            None => ("", "", "", ""),
        }
    }

    pub(super) fn blob(&self, i: usize) -> Option<&BlobHash> {
        let b = *self.blob.get(i)?;
        self.blob_names.get(b as usize)
    }

    /// Remember a blob name once; [`Selection::point`] items at it.
    pub(super) fn add_blob(&mut self, blob: BlobHash) -> u32 {
        let b = idx(self.blob_names.len());
        self.blob_names.push(blob);
        b
    }

    /// Point item `i` at blob `b` (from [`Selection::add_blob`]).
    pub(super) fn point(&mut self, i: usize, b: u32) {
        if let Some(slot) = self.blob.get_mut(i) {
            *slot = b;
        }
    }

    /// Item `i` as a catalogue row.
    pub(super) fn row(&self, meta: &Metadata, i: usize) -> Option<Item> {
        let v = self.view(meta, i)?;
        Some(Item {
            content_id: v.content_id.to_string(),
            product: v.product.to_string(),
            version: v.version.to_string(),
            item: v.item.to_string(),
            path: v.path.map(str::to_string),
            size: v.size,
            checksums: v.checksums(),
            blob: self.blob(i).cloned(),
        })
    }
}

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
) -> Result<(Selection, Vec<ProductChange>)> {
    let prev_versions = match prev {
        Some(p) => vault.catalog.snapshot_versions(p.id)?,
        None => BTreeMap::new(),
    };
    let mut visited: HashSet<(String, String)> = HashSet::new();
    let mut out = Selection::default();
    let mut changes = Vec::new();
    for (d, doc) in meta.docs.iter().enumerate() {
        let Some(products) = &doc.products else {
            continue;
        };
        let d = idx(d);
        let cid = products.content_id();
        // Upper bound of what this document adds: reserved, not touched (no resident pages
        // for what the filters drop), so a million-item selection never regrows.
        out.sel.reserve(products.item_count());
        out.blob.reserve(products.item_count());
        for sp in streams::select_at(products, filters) {
            let key = (cid.to_string(), sp.name.to_string());
            let src = sp.version_names_desc();
            let target = prev_versions.get(&key).cloned().unwrap_or_default();
            visited.insert(key);
            let work = streams::resolve_work(&src, &target, source.max, source.keep)?;
            let keep_set = final_versions(&target, &work);
            for (version, ats) in &sp.versions {
                if !keep_set.contains(*version) {
                    continue;
                }
                for &at in ats {
                    let facts = products.facts(at);
                    check_item(products, at, &facts, opts.allow_unchecked_items)?;
                    out.push(Sel::Doc { doc: d, at }, facts.size);
                }
            }
            // Versions that left the source but are kept (--keep): carried over.
            if let Some(p) = prev {
                for v in &keep_set {
                    if !src.iter().any(|s| s == v) {
                        out.carry(vault.catalog.version_items(p.id, cid, sp.name, v)?);
                    }
                }
            }
            changes.push(product_change(products, &sp, work));
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
                out.carry(vault.catalog.version_items(p.id, cid, prod, &v)?);
            }
        }
    }
    Ok((out, changes))
}

fn item_line(products: &streams::Products, version: &str, at: streams::ItemAt) -> Option<ItemLine> {
    Some(ItemLine {
        version: version.to_string(),
        item: products.item_names(at).2.to_string(),
        path: products.flat_path(at)?.to_string(),
        size: products.facts(at).size?,
    })
}

fn product_change(
    products: &streams::Products,
    sp: &streams::SelectedAt<'_>,
    work: streams::Work,
) -> ProductChange {
    // Version name -> its place in `sp.versions` (a product may list thousands).
    let by_name: HashMap<&str, usize> = sp
        .versions
        .iter()
        .enumerate()
        .rev()
        .map(|(i, v)| (v.0, i))
        .collect();
    let lines = |names: &[String]| -> Vec<ItemLine> {
        names
            .iter()
            .filter_map(|n| sp.versions.get(*by_name.get(n.as_str())?))
            .flat_map(|(v, ats)| ats.iter().filter_map(|&at| item_line(products, v, at)))
            .collect()
    };
    ProductChange {
        content_id: products.content_id().to_string(),
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

/// An item with a path must say what to expect (size, a well-formed checksum), unless
/// `--no-checksumming-reader`.
fn check_item(
    products: &streams::Products,
    at: streams::ItemAt,
    facts: &streams::ItemFacts<'_>,
    unchecked: bool,
) -> Result<()> {
    let name = || {
        let (p, v, i) = products.item_names(at);
        format!("{}/{p}/{v}/{i}", products.content_id())
    };
    if facts.path.is_some() && !unchecked {
        if facts.size.is_none() {
            return Err(Error::ItemIncomplete {
                item: name(),
                what: "size",
            });
        }
        let Some((algo, hex)) = facts.strongest else {
            return Err(Error::ItemIncomplete {
                item: name(),
                what: "checksum",
            });
        };
        if !checksum::is_hex(hex, algo.hex_len()) {
            return Err(Error::ItemIncomplete {
                item: name(),
                what: algo.name(),
            });
        }
    }
    Ok(())
}

//! `diff`: what changed between two snapshots, at product, version and item level.

use std::collections::{BTreeMap, BTreeSet};

use crate::catalog::{Catalog, Item, SnapshotId};
use crate::error::Result;

type ItemKey = (String, String, String, String);

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diff {
    pub from: SnapshotId,
    pub to: SnapshotId,
    /// `content_id/product`
    pub products_added: Vec<String>,
    pub products_removed: Vec<String>,
    /// `content_id/product/version`
    pub versions_added: Vec<String>,
    pub versions_removed: Vec<String>,
    /// `content_id/product/version/item`
    pub items_added: Vec<String>,
    pub items_removed: Vec<String>,
    /// Same item, different content.
    pub items_changed: Vec<String>,
}

fn load(cat: &Catalog, id: SnapshotId) -> Result<BTreeMap<ItemKey, Option<String>>> {
    let mut m = BTreeMap::new();
    cat.for_each_item(id, |it: Item| {
        m.insert(
            (it.content_id, it.product, it.version, it.item),
            it.blob.map(crate::store::BlobHash::into_string).or(it.path),
        );
        Ok(())
    })?;
    Ok(m)
}

pub fn diff(cat: &Catalog, from: SnapshotId, to: SnapshotId) -> Result<Diff> {
    // Both must exist: a clear error rather than an empty diff.
    cat.snapshot(from)?;
    cat.snapshot(to)?;
    let a = load(cat, from)?;
    let b = load(cat, to)?;
    let prods = |m: &BTreeMap<ItemKey, Option<String>>| -> BTreeSet<String> {
        m.keys().map(|k| format!("{}/{}", k.0, k.1)).collect()
    };
    let vers = |m: &BTreeMap<ItemKey, Option<String>>| -> BTreeSet<String> {
        m.keys()
            .map(|k| format!("{}/{}/{}", k.0, k.1, k.2))
            .collect()
    };
    let name = |k: &ItemKey| format!("{}/{}/{}/{}", k.0, k.1, k.2, k.3);
    let (pa, pb) = (prods(&a), prods(&b));
    let (va, vb) = (vers(&a), vers(&b));
    let mut d = Diff {
        from,
        to,
        products_added: pb.difference(&pa).cloned().collect(),
        products_removed: pa.difference(&pb).cloned().collect(),
        versions_added: vb.difference(&va).cloned().collect(),
        versions_removed: va.difference(&vb).cloned().collect(),
        ..Diff::default()
    };
    for (k, v) in &b {
        match a.get(k) {
            None => d.items_added.push(name(k)),
            Some(old) if old != v => d.items_changed.push(name(k)),
            Some(_) => {}
        }
    }
    for k in a.keys() {
        if !b.contains_key(k) {
            d.items_removed.push(name(k));
        }
    }
    Ok(d)
}

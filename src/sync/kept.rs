//! What `--keep` carried, described as synced: for each version the new snapshot holds only
//! because `--keep` kept it (upstream no longer lists it), the product and version objects of
//! the upstream document that last described it — the previous snapshot's record of it, else
//! the previous snapshot's products document — are recorded with the new snapshot, in the
//! snapshot's own transaction (`snapshot_kept_versions`, schema 0018: a snapshot never exists
//! without them). Filtered metadata then serves the version with its `ftype`, `src_*` and
//! product fields (what MAAS requires) even after retention dropped the snapshot whose document
//! had it. Stores synced before schema 0018 have no such rows: filtered metadata falls back to
//! older snapshots' documents, then the item rows.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::catalog::{KeptVersion, Snapshot};
use crate::error::Result;
use crate::vault::Vault;

/// `(content id, product, version)` of a carried version.
pub(super) type Carried = BTreeSet<(String, String, String)>;

/// How `prev` described each carried version, for the new snapshot's rows; a version nothing
/// describes (an old store, a document that no longer parses) is left out.
pub(super) fn describe(
    vault: &Vault,
    prev: &Snapshot,
    carried: &Carried,
) -> Result<Vec<KeptVersion>> {
    if carried.is_empty() {
        return Ok(Vec::new());
    }
    // The previous snapshot's products documents, by content id, parsed on first use.
    let mut docs: Option<HashMap<String, Vec<Value>>> = None;
    let mut rows = Vec::new();
    for (cid, product, version) in carried {
        if let Some(k) = vault.catalog.kept_version(prev.id, cid, product, version)? {
            rows.push(k);
            continue;
        }
        if docs.is_none() {
            docs = Some(products_docs(vault, prev)?);
        }
        let found = docs
            .as_ref()
            .and_then(|d| d.get(cid))
            .into_iter()
            .flatten()
            .find_map(|doc| {
                let p = doc.get("products")?.get(product)?.as_object()?;
                let v = p.get("versions")?.get(version)?;
                let mut p = p.clone();
                p.remove("versions");
                Some((Value::Object(p).to_string(), v.to_string()))
            });
        if let Some((product_json, version_json)) = found {
            rows.push(KeptVersion {
                content_id: cid.clone(),
                product: product.clone(),
                version: version.clone(),
                product_json,
                version_json,
            });
        }
    }
    Ok(rows)
}

/// The products documents of `snap` as JSON, by content id (unreadable ones skipped).
fn products_docs(vault: &Vault, snap: &Snapshot) -> Result<HashMap<String, Vec<Value>>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for d in vault.catalog.documents(snap.id)? {
        if d.kind != crate::catalog::DocumentKind::Products {
            continue;
        }
        let value = match vault.document_json(snap.id, &d) {
            Ok(v) => v,
            // a document that no longer unwraps or parses describes nothing
            Err(crate::error::Error::StoredDocument { .. } | crate::error::Error::Parse(_)) => {
                continue;
            }
            Err(e) => return Err(e),
        };
        let cid = d
            .content_id
            .clone()
            .or_else(|| value.get("content_id")?.as_str().map(str::to_string))
            .unwrap_or_default();
        out.entry(cid).or_default().push(value);
    }
    Ok(out)
}

//! Composed publications (issue 12): several snapshots in one tree, `publish A B … DEST` — e.g.
//! MAAS images, bootloaders and a local source of custom images behind one boot source URL.
//!
//! The tree holds every input's items and one index, `streams/v1/index.json` (and `.sjson` when
//! signed), listing every content id of every input:
//! - `filtered`: each input's products documents pruned to what its snapshot holds (as for one
//!   snapshot, [`super::metadata`]); documents of one content id from several inputs are merged
//!   into one (the first input's path and top-level fields); everything is re-signed.
//! - `verbatim`: each input's products documents byte for byte (their upstream signatures
//!   intact; a document the input holds no item of is left out); allowed only when no content
//!   id is in two inputs (two upstream documents of one id cannot both be served unchanged). The index is new, so it is written by this store (signed
//!   with the store's key unless `--unsigned`; clients then need both keys, see the README).
//!
//! Refused, naming both inputs: a product id present in two inputs with different contents, and
//! a path that is a different file in two inputs (the same file at the same path is fine).
//!
//! The tree is recorded with its inputs in order ([`crate::catalog::Catalog::insert_composed_tree`]):
//! the first is its `snapshot_id`, the rest are also complete grace rows, so grace bridging,
//! rollback, verify, status and gc treat it like any other tree. A tree is reused only for the
//! same inputs in the same order (and mode and signer).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use serde_json::{Map, Value};

use crate::catalog::{DocumentKind, MetadataMode, Snapshot, SnapshotId, TreeDocument, TreeRow};
use crate::error::{Error, Result};
use crate::openpgp::SigningKey;
use crate::store::BlobHash;
use crate::vault::Vault;

use super::PublishOptions;
use super::metadata::{self, OutDoc};
use super::tree::{self, Builder, OnExisting};

/// Where a composed tree's index is.
const INDEX_STEM: &str = "streams/v1/index";

/// Why a composition cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("product `{product}` is in {a} and in {b} with different contents")]
    ProductConflict {
        product: String,
        a: String,
        b: String,
    },
    #[error(
        "content id `{cid}` is in {a} and in {b}: verbatim metadata cannot serve both upstream documents unchanged"
    )]
    SharedContentId { cid: String, a: String, b: String },
    #[error("`{path}` is a different file in {a} and in {b}")]
    PathConflict { path: String, a: String, b: String },
    #[error("snapshot {0} is given twice")]
    DuplicateInput(SnapshotId),
    #[error(
        "`{dest}` serves a composition of {inputs}, and source `{name}` is not one of its inputs: not replaced by one source's snapshot"
    )]
    NotAnInput {
        dest: String,
        name: String,
        inputs: String,
    },
}

impl ComposeError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ComposeError::SharedContentId { .. } => Some(
                "publish with `--metadata filtered` (one products document per content id, re-signed)"
                    .into(),
            ),
            ComposeError::ProductConflict { .. } | ComposeError::PathConflict { .. } => Some(
                "change one source's filters so that the inputs do not overlap, or publish them to two DESTs"
                    .into(),
            ),
            ComposeError::DuplicateInput(_) => Some("name each snapshot or source once".into()),
            ComposeError::NotAnInput { .. } => Some(
                "publish the composition again with this source among its inputs, or stop its auto-publish (`source edit NAME --no-publish`)"
                    .into(),
            ),
        }
    }
}

/// `snapshot 3 (images)`.
fn label(s: &Snapshot) -> String {
    format!("snapshot {} ({})", s.id, s.source)
}

/// The inputs of a publish: `opts.snapshot` (already resolved as `first`) then `opts.compose`.
pub(super) fn inputs(
    vault: &Vault,
    first: &Snapshot,
    opts: &PublishOptions,
) -> Result<Vec<Snapshot>> {
    let mut out = vec![first.clone()];
    for spec in &opts.compose {
        let s = vault.catalog.resolve_snapshot(spec)?;
        if out.iter().any(|o| o.id == s.id) {
            return Err(ComposeError::DuplicateInput(s.id).into());
        }
        out.push(s);
    }
    Ok(out)
}

/// The index documents clients start from in a composed tree.
pub(super) fn starts(signed: bool) -> Vec<String> {
    let mut out = vec![format!("{INDEX_STEM}.json")];
    if signed {
        out.push(format!("{INDEX_STEM}.sjson"));
    }
    out
}

/// Products of every input, checked: a product id with different contents in two inputs is an
/// error.
#[derive(Default)]
struct Owners(HashMap<String, (usize, Value)>);

impl Owners {
    fn add(&mut self, inputs: &[Snapshot], i: usize, products: &Map<String, Value>) -> Result<()> {
        for (pid, pval) in products {
            match self.0.get(pid) {
                Some((j, v)) if v != pval => {
                    return Err(ComposeError::ProductConflict {
                        product: pid.clone(),
                        a: label(&inputs[*j]),
                        b: label(&inputs[i]),
                    }
                    .into());
                }
                Some(_) => {}
                None => {
                    self.0.insert(pid.clone(), (i, pval.clone()));
                }
            }
        }
        Ok(())
    }
}

fn products_of(v: &Value) -> Map<String, Value> {
    v.get("products")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// A new index entry for a products document no input index lists.
fn new_entry(doc: &Value) -> Map<String, Value> {
    let mut e = Map::new();
    for k in ["datatype", "updated"] {
        if let Some(v) = doc.get(k) {
            e.insert(k.into(), v.clone());
        }
    }
    e.insert("format".into(), "products:1.0".into());
    e
}

/// MAAS 3.8 requires `updated` on every index entry (`IndexContent`): an entry without one gets
/// its products document's, else now.
fn entry_updated(e: &mut Map<String, Value>, doc: &Value) {
    if e.get("updated")
        .is_none_or(|u| u.as_str().is_none_or(str::is_empty))
    {
        let u = doc
            .get("updated")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map_or_else(metadata::now_updated, str::to_string);
        e.insert("updated".into(), u.into());
    }
}

fn index_doc(entries: Map<String, Value>) -> Value {
    let mut top = Map::new();
    top.insert("format".into(), "index:1.0".into());
    top.insert("updated".into(), metadata::now_updated().into());
    top.insert("index".into(), Value::Object(entries));
    Value::Object(top)
}

/// The metadata documents of a composition of `inputs`.
pub(super) fn documents(
    vault: &Vault,
    inputs: &[Snapshot],
    mode: MetadataMode,
    key: Option<&SigningKey>,
) -> Result<Vec<OutDoc>> {
    match mode {
        MetadataMode::Filtered => filtered(vault, inputs, key),
        MetadataMode::Verbatim => verbatim(vault, inputs, key),
    }
}

/// One merged products document.
struct Merged {
    cid: String,
    path: String,
    value: Value,
}

fn filtered(vault: &Vault, inputs: &[Snapshot], key: Option<&SigningKey>) -> Result<Vec<OutDoc>> {
    let mut owners = Owners::default();
    let mut merged: Vec<Merged> = Vec::new();
    let mut by_cid: HashMap<String, usize> = HashMap::new();
    let mut entries: HashMap<String, Map<String, Value>> = HashMap::new();
    let mut out = Vec::new();
    for (i, snap) in inputs.iter().enumerate() {
        let docs = vault.catalog.documents(snap.id)?;
        let index = metadata::index_entries(vault, snap, &docs)?;
        for p in metadata::pruned_products(vault, snap, &docs)? {
            let products = products_of(&p.value);
            if products.is_empty() {
                continue;
            }
            owners.add(inputs, i, &products)?;
            if let Some(e) = index.get(&p.cid) {
                entries.entry(p.cid.clone()).or_insert_with(|| e.clone());
            }
            match by_cid.get(&p.cid) {
                Some(&k) => {
                    if let Some(Value::Object(into)) = merged[k].value.get_mut("products") {
                        for (pid, pval) in products {
                            into.entry(pid).or_insert(pval);
                        }
                    }
                }
                None => {
                    by_cid.insert(p.cid.clone(), merged.len());
                    merged.push(Merged {
                        cid: p.cid,
                        path: p.path,
                        value: p.value,
                    });
                }
            }
        }
        others(&docs, &mut out);
    }
    if merged.is_empty() {
        return Err(Error::EmptySnapshot {
            snapshot: inputs.first().map_or(SnapshotId(0), |s| s.id),
        });
    }
    // Products documents, then the index over them.
    let mut rendered = Vec::new();
    for m in &merged {
        let stem = metadata::stem(&m.path);
        let json = metadata::to_text(&m.value, &m.path)?;
        let sjson = key.map(|k| metadata::sign(k, &json)).transpose()?;
        out.push(OutDoc::Bytes {
            path: format!("{stem}.json"),
            bytes: json.clone(),
        });
        if let Some(s) = &sjson {
            out.push(OutDoc::Bytes {
                path: format!("{stem}.sjson"),
                bytes: s.clone(),
            });
        }
        rendered.push((stem, json, sjson));
    }
    for signed in [false, true] {
        if signed && key.is_none() {
            continue;
        }
        let ext = if signed { "sjson" } else { "json" };
        let mut index = Map::new();
        for (m, (stem, json, sjson)) in merged.iter().zip(&rendered) {
            let mut e = entries
                .get(&m.cid)
                .cloned()
                .unwrap_or_else(|| new_entry(&m.value));
            e.insert("path".into(), format!("{stem}.{ext}").into());
            entry_updated(&mut e, &m.value);
            let names: BTreeSet<&String> = m
                .value
                .get("products")
                .and_then(Value::as_object)
                .map(|o| o.keys().collect())
                .unwrap_or_default();
            e.insert(
                "products".into(),
                Value::Array(names.into_iter().cloned().map(Value::from).collect()),
            );
            let bytes = match (sjson, signed) {
                (Some(s), true) => s,
                _ => json,
            };
            metadata::refresh_sums(&mut e, bytes);
            index.insert(m.cid.clone(), Value::Object(e));
        }
        out.push(index_variant(index, key, signed)?);
    }
    Ok(out)
}

fn index_variant(
    entries: Map<String, Value>,
    key: Option<&SigningKey>,
    signed: bool,
) -> Result<OutDoc> {
    let text = metadata::to_text(&index_doc(entries), &format!("{INDEX_STEM}.json"))?;
    Ok(match (signed, key) {
        (true, Some(k)) => OutDoc::Bytes {
            path: format!("{INDEX_STEM}.sjson"),
            bytes: metadata::sign(k, &text)?,
        },
        _ => OutDoc::Bytes {
            path: format!("{INDEX_STEM}.json"),
            bytes: text,
        },
    })
}

/// Documents that are neither index nor products (served as they are).
fn others(docs: &[crate::catalog::StoredDocument], out: &mut Vec<OutDoc>) {
    for d in docs
        .iter()
        .filter(|d| d.kind != DocumentKind::Index && d.kind != DocumentKind::Products)
    {
        out.push(OutDoc::Blob {
            path: d.path.clone(),
            blob: d.blob.clone(),
        });
    }
}

fn verbatim(vault: &Vault, inputs: &[Snapshot], key: Option<&SigningKey>) -> Result<Vec<OutDoc>> {
    let mut owners = Owners::default();
    let mut cids: HashMap<String, usize> = HashMap::new();
    let mut index = Map::new();
    let mut out = Vec::new();
    for (i, snap) in inputs.iter().enumerate() {
        let docs = vault.catalog.documents(snap.id)?;
        let entries = metadata::index_entries(vault, snap, &docs)?;
        // A products document the input holds no item of is not part of it (an index lists
        // documents the source's filters take nothing from).
        let held: BTreeSet<String> = vault
            .catalog
            .item_keys(snap.id)?
            .into_iter()
            .map(|[cid, ..]| cid)
            .collect();
        for d in docs.iter().filter(|d| d.kind == DocumentKind::Products) {
            let value = vault.document_json(snap.id, d)?;
            let cid = metadata::content_id(d, &value);
            if !held.contains(&cid) {
                continue;
            }
            if let Some(&j) = cids.get(&cid)
                && j != i
            {
                return Err(ComposeError::SharedContentId {
                    cid,
                    a: label(&inputs[j]),
                    b: label(snap),
                }
                .into());
            }
            cids.insert(cid.clone(), i);
            let products = products_of(&value);
            owners.add(inputs, i, &products)?;
            let entry = entries.get(&cid).cloned().unwrap_or_else(|| {
                let mut e = new_entry(&value);
                e.insert("path".into(), d.path.clone().into());
                e.insert(
                    "products".into(),
                    Value::Array(
                        products
                            .keys()
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .cloned()
                            .map(Value::from)
                            .collect(),
                    ),
                );
                e
            });
            let mut entry = entry;
            entry_updated(&mut entry, &value);
            index.insert(cid, Value::Object(entry));
            out.push(OutDoc::Blob {
                path: d.path.clone(),
                blob: d.blob.clone(),
            });
        }
        others(&docs, &mut out);
    }
    if index.is_empty() {
        return Err(Error::EmptySnapshot {
            snapshot: inputs.first().map_or(SnapshotId(0), |s| s.id),
        });
    }
    out.push(index_variant(index.clone(), None, false)?);
    if key.is_some() {
        out.push(index_variant(index, key, true)?);
    }
    Ok(out)
}

/// An existing tree of exactly these inputs (and mode and signer), or a new one built and
/// recorded.
pub(super) fn tree_for(
    vault: &Vault,
    trees: &Path,
    staging: &Path,
    inputs: &[Snapshot],
    opts: &PublishOptions,
    key: Option<&SigningKey>,
    signer: Option<&str>,
) -> Result<(TreeRow, bool)> {
    let ids: Vec<SnapshotId> = inputs.iter().map(|s| s.id).collect();
    let mode = opts.mode;
    if !opts.rebuild {
        for t in vault.catalog.composed_trees_for(&ids, mode, signer)? {
            if trees.join(&t.name).is_dir() {
                tree::discard(staging);
                return Ok((t, true));
            }
        }
    }
    let docs = documents(vault, inputs, mode, key)?;
    let prefix = ids
        .iter()
        .take(8)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("+");
    let name = super::new_tree_name(&prefix, mode, signer);
    let bytes: i64 = inputs.iter().map(|s| s.bytes).sum();
    super::check_copy_space(vault, trees, staging, bytes)?;
    let (files, bytes, written) = match build(vault, inputs, &docs, staging) {
        Ok(v) => v,
        Err(e) => {
            tree::discard(staging);
            return Err(e);
        }
    };
    if let Err(e) = tree::commit(staging, trees, &name) {
        tree::discard(staging);
        return Err(e);
    }
    let row = vault
        .catalog
        .insert_composed_tree(&name, &ids, mode, signer, files, bytes, &written)?;
    Ok((row, false))
}

/// Stage a composed tree: the documents, then every input's items; a path placed twice must be
/// the same file.
fn build(
    vault: &Vault,
    inputs: &[Snapshot],
    docs: &[OutDoc],
    staging: &Path,
) -> Result<(u64, u64, Vec<TreeDocument>)> {
    super::fresh_stage(staging)?;
    let first = inputs.first().map_or(SnapshotId(0), |s| s.id);
    let mut b = Builder::new(staging, first, OnExisting::Conflict);
    let mut written = Vec::new();
    // path → (blob, input index; usize::MAX for a generated document)
    let mut placed: HashMap<String, (String, usize)> = HashMap::new();
    let who = |i: usize| {
        inputs
            .get(i)
            .map(label)
            .unwrap_or_else(|| "the composed index".to_string())
    };
    for doc in docs {
        match doc {
            OutDoc::Blob { path, blob } => {
                if let Some((prev, _)) = placed.get(path) {
                    if *prev == blob.to_string() {
                        continue;
                    }
                    return Err(Error::PathConflict {
                        snapshot: first,
                        path: path.clone(),
                    });
                }
                let bp = vault.layout.blob_path(blob);
                let size = fs::metadata(&bp).map(|m| m.len()).unwrap_or(0);
                b.link_blob(path, &bp, size)?;
                placed.insert(path.clone(), (blob.to_string(), usize::MAX));
                written.push(TreeDocument {
                    path: path.clone(),
                    blake3: blob.clone(),
                    size,
                });
            }
            OutDoc::Bytes { path, bytes } => {
                b.write_bytes(path, bytes)?;
                let hash = BlobHash::parse(&blake3::hash(bytes).to_hex())?;
                placed.insert(path.clone(), (hash.to_string(), usize::MAX));
                written.push(TreeDocument {
                    path: path.clone(),
                    blake3: hash,
                    size: bytes.len() as u64,
                });
            }
        }
    }
    for (i, snap) in inputs.iter().enumerate() {
        vault.catalog.for_each_item_file(snap.id, None, |f| {
            let Some(blob) = f.blob else {
                return Err(Error::ItemWithoutBlob {
                    snapshot: snap.id,
                    item: f.key.join("/"),
                });
            };
            let hex = blob.to_string();
            if let Some((prev, j)) = placed.get(&f.path) {
                if *prev == hex {
                    return Ok(());
                }
                return Err(ComposeError::PathConflict {
                    path: f.path,
                    a: who(*j),
                    b: label(snap),
                }
                .into());
            }
            let bp = vault.layout.blob_path(&blob);
            b.link_blob(&f.path, &bp, f.size)?;
            placed.insert(f.path, (hex, i));
            Ok(())
        })?;
    }
    b.sync()?;
    Ok((b.files, b.bytes, written))
}

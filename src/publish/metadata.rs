//! The metadata documents a tree serves: `verbatim` (the snapshot's documents byte for byte, as
//! `sstream-mirror` publishes them) or `filtered` (index and products rewritten to list exactly
//! what the snapshot holds, written as `.json`, and as clearsigned `.sjson` with a signing key).
//!
//! Filtered rewriting keeps every upstream field (`updated`, `_aliases`, product and version
//! fields) and only removes products, versions and items the snapshot does not hold; a version
//! the snapshot holds but the document no longer lists (kept by `--keep`) is taken from an older
//! snapshot's document of the same source, or rebuilt from the item rows. A products document
//! left without products is not written and its index entry is dropped (MAAS 3.8 rejects an
//! empty `products`, spec/maas-client.md §3.5). Index entries get the new `path`, the remaining
//! `products`, and new `size`/checksums where upstream had them.
//!
//! Protects invariant 2 on the way out: the stored documents were verified at sync, and what is
//! re-signed here is exactly what is written as `.json`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize as _;
use serde_json::{Map, Value};

use crate::catalog::{Document, Snapshot};
use crate::checksum::MultiHasher;
use crate::error::{Error, Result};
use crate::openpgp::{self, SigningKey};
use crate::streams::ParseError;
use crate::vault::Vault;

/// One file of a tree's metadata.
#[derive(Debug, Clone)]
pub(super) enum OutDoc {
    /// A stored document, linked from its blob.
    Blob { path: String, blob: String },
    /// A generated document.
    Bytes { path: String, bytes: Vec<u8> },
}

/// The snapshot's documents as fetched.
pub(super) fn verbatim(vault: &Vault, snap: &Snapshot) -> Result<Vec<OutDoc>> {
    Ok(vault
        .catalog
        .documents(snap.id)?
        .into_iter()
        .map(|d| OutDoc::Blob {
            path: d.path,
            blob: d.blob,
        })
        .collect())
}

/// The index documents clients start from in a tree of `snap` built in `mode` (`signed`: with a
/// signing key).
pub(super) fn starts(
    vault: &Vault,
    snap: &Snapshot,
    filtered: bool,
    signed: bool,
) -> Result<Vec<String>> {
    if !filtered {
        return Ok(vec![snap.start_path.clone()]);
    }
    let docs = vault.catalog.documents(snap.id)?;
    let stem = docs
        .iter()
        .find(|d| d.kind == "index" && d.path == snap.start_path)
        .or_else(|| docs.iter().find(|d| d.kind == "index"))
        .map(|d| stem(&d.path))
        .unwrap_or_else(|| "streams/v1/index".to_string());
    let mut out = vec![format!("{stem}.json")];
    if signed {
        out.push(format!("{stem}.sjson"));
    }
    Ok(out)
}

/// `(product → version → items)` of one content id.
type Held = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// A rewritten products document: its variants' paths and bytes, and its remaining products.
struct Rewritten {
    stem: String,
    names: Vec<String>,
    json: Vec<u8>,
    sjson: Option<Vec<u8>>,
}

/// Index and products rewritten to what the snapshot holds.
pub(super) fn filtered(
    vault: &Vault,
    snap: &Snapshot,
    key: Option<&SigningKey>,
) -> Result<Vec<OutDoc>> {
    let docs = vault.catalog.documents(snap.id)?;
    let mut held = held_items(vault, snap.id)?;
    let mut history = History::new(snap);
    let mut out = Vec::new();
    // Products documents: original path → rewritten (None: dropped, no products left).
    let mut products: HashMap<String, Option<Rewritten>> = HashMap::new();
    let mut synth: Vec<Synth> = Vec::new();
    for d in docs.iter().filter(|d| d.kind == "products") {
        let mut value = load_json(vault, snap, d)?;
        let cid = d
            .content_id
            .clone()
            .or_else(|| {
                value
                    .get("content_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let doc_held = held.remove(&cid).unwrap_or_default();
        prune(vault, snap, &cid, &mut value, &doc_held, &mut history)?;
        let names: Vec<String> = value
            .get("products")
            .and_then(Value::as_object)
            .map(|m| {
                m.keys()
                    .cloned()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            products.insert(d.path.clone(), None);
            continue;
        }
        let stem = stem(&d.path);
        let json = to_text(&value, &d.path)?;
        let sjson = key.map(|k| sign(k, &json)).transpose()?;
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
        synth.push(Synth {
            cid,
            doc: value,
            stem: stem.clone(),
            names: names.clone(),
        });
        products.insert(
            d.path.clone(),
            Some(Rewritten {
                stem,
                names,
                json,
                sjson,
            }),
        );
    }
    let index_stems: HashMap<String, String> = docs
        .iter()
        .filter(|d| d.kind == "index")
        .map(|d| (d.path.clone(), stem(&d.path)))
        .collect();
    for d in docs.iter().filter(|d| d.kind == "index") {
        let value = load_json(vault, snap, d)?;
        let stem = stem(&d.path);
        for signed in [false, true] {
            if signed && key.is_none() {
                continue;
            }
            let rewritten = rewrite_index(&value, &products, &index_stems, signed);
            let (path, bytes) = variant(&stem, &rewritten, key, signed, &d.path)?;
            out.push(OutDoc::Bytes { path, bytes });
        }
    }
    if index_stems.is_empty() {
        // The start document was a products document: give clients an index.
        let stem = "streams/v1/index".to_string();
        for signed in [false, true] {
            if signed && key.is_none() {
                continue;
            }
            let index = synthesize_index(&synth, signed);
            let (path, bytes) = variant(&stem, &index, key, signed, "streams/v1/index.json")?;
            out.push(OutDoc::Bytes { path, bytes });
        }
    }
    for d in docs
        .iter()
        .filter(|d| d.kind != "index" && d.kind != "products")
    {
        out.push(OutDoc::Blob {
            path: d.path.clone(),
            blob: d.blob.clone(),
        });
    }
    if products.values().all(Option::is_none) {
        return Err(Error::EmptySnapshot { snapshot: snap.id });
    }
    Ok(out)
}

/// `a/b.sjson` and `a/b.json` → `a/b`.
fn stem(path: &str) -> String {
    path.strip_suffix(".sjson")
        .or_else(|| path.strip_suffix(".json"))
        .unwrap_or(path)
        .to_string()
}

fn variant(
    stem: &str,
    value: &Value,
    key: Option<&SigningKey>,
    signed: bool,
    doc: &str,
) -> Result<(String, Vec<u8>)> {
    let text = to_text(value, doc)?;
    match (signed, key) {
        (true, Some(k)) => Ok((format!("{stem}.sjson"), sign(k, &text)?)),
        _ => Ok((format!("{stem}.json"), text)),
    }
}

fn sign(key: &SigningKey, text: &[u8]) -> Result<Vec<u8>> {
    key.clearsign(text)
        .map_err(|e| Error::Signing { source: e })
}

/// JSON with one-space indentation (as `sstream-mirror` writes it) and a final newline.
fn to_text(value: &Value, doc: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b" "),
    );
    value.serialize(&mut ser).map_err(|source| Error::Json {
        path: doc.to_string(),
        source,
    })?;
    buf.push(b'\n');
    Ok(buf)
}

/// A stored document's JSON (unwrapped when clearsigned).
fn load_json(vault: &Vault, snap: &Snapshot, d: &Document) -> Result<Value> {
    let raw = vault.blobs.read(&d.blob)?;
    let payload = if openpgp::is_clearsigned(&raw) {
        openpgp::unwrap_cleartext(&raw).map_err(|source| Error::StoredDocument {
            snapshot: snap.id,
            path: d.path.clone(),
            source,
        })?
    } else {
        raw
    };
    serde_json::from_slice(&payload).map_err(|source| {
        Error::Parse(ParseError::NotJson {
            doc: d.path.clone(),
            source,
        })
    })
}

/// Every item key the snapshot holds, by content id.
fn held_items(vault: &Vault, snapshot: i64) -> Result<HashMap<String, Held>> {
    let cat = &vault.catalog;
    let mut st = cat
        .conn()
        .prepare(
            "SELECT content_id, product, version, item FROM snapshot_items WHERE snapshot_id = ?1",
        )
        .map_err(|e| cat.err(e))?;
    let mut rows = st.query([snapshot]).map_err(|e| cat.err(e))?;
    let mut out: HashMap<String, Held> = HashMap::new();
    while let Some(r) = rows.next().map_err(|e| cat.err(e))? {
        let get = |i| r.get::<_, String>(i).map_err(|e| cat.err(e));
        out.entry(get(0)?)
            .or_default()
            .entry(get(1)?)
            .or_default()
            .entry(get(2)?)
            .or_default()
            .insert(get(3)?);
    }
    Ok(out)
}

fn object_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

/// Remove from a products document what the snapshot does not hold; add held versions it lacks.
fn prune(
    vault: &Vault,
    snap: &Snapshot,
    cid: &str,
    value: &mut Value,
    held: &Held,
    history: &mut History,
) -> Result<()> {
    if value.get("products").is_none_or(|p| !p.is_object())
        && let Some(top) = value.as_object_mut()
    {
        top.insert("products".into(), Value::Object(Map::new()));
    }
    let Some(products) = object_mut(value, "products") else {
        return Ok(());
    };
    products.retain(|pname, pobj| {
        let Some(hv) = held.get(pname) else {
            return false;
        };
        let Some(versions) = object_mut(pobj, "versions") else {
            return false;
        };
        versions.retain(|vname, vobj| {
            let Some(hi) = hv.get(vname) else {
                return false;
            };
            let Some(items) = object_mut(vobj, "items") else {
                return false;
            };
            items.retain(|iname, _| hi.contains(iname));
            !items.is_empty()
        });
        !versions.is_empty()
    });
    for (pname, hv) in held {
        for vname in hv.keys() {
            let present = products
                .get(pname)
                .and_then(|p| p.get("versions"))
                .and_then(|v| v.get(vname))
                .is_some();
            if present {
                continue;
            }
            let found = history.find(vault, cid, pname, vname)?;
            let (pobj, mut vobj) = match found {
                Some(f) => f,
                None => (None, rebuild_version(vault, snap.id, cid, pname, vname)?),
            };
            if let Some(items) = object_mut(&mut vobj, "items")
                && let Some(hi) = hv.get(vname)
            {
                items.retain(|iname, _| hi.contains(iname));
            }
            let entry = products.entry(pname.clone()).or_insert_with(|| {
                let mut p = pobj.unwrap_or_else(|| Value::Object(Map::new()));
                if let Some(o) = p.as_object_mut() {
                    o.insert("versions".into(), Value::Object(Map::new()));
                }
                p
            });
            if let Some(o) = entry.as_object_mut() {
                let versions = o
                    .entry("versions")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(vs) = versions.as_object_mut() {
                    vs.insert(vname.clone(), vobj);
                }
            }
        }
    }
    Ok(())
}

/// A version object from the item rows alone (no upstream document has it any more).
fn rebuild_version(
    vault: &Vault,
    snapshot: i64,
    cid: &str,
    product: &str,
    version: &str,
) -> Result<Value> {
    let mut items = Map::new();
    for it in vault
        .catalog
        .version_items(snapshot, cid, product, version)?
    {
        let mut o = Map::new();
        if let Some(p) = &it.path {
            o.insert("path".into(), p.clone().into());
        }
        if let Some(s) = it.size {
            o.insert("size".into(), s.into());
        }
        for (k, v) in [
            ("md5", &it.checksums.md5),
            ("sha256", &it.checksums.sha256),
            ("sha512", &it.checksums.sha512),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), v.clone().into());
            }
        }
        items.insert(it.item.clone(), Value::Object(o));
    }
    let mut v = Map::new();
    v.insert("items".into(), Value::Object(items));
    Ok(Value::Object(v))
}

/// Older snapshots of the same source, for versions kept by `--keep`.
struct History {
    source: String,
    before: i64,
    /// `(content id, document)` of older snapshots, newest first; loaded on first use.
    docs: Option<Vec<(String, Value)>>,
}

impl History {
    fn new(snap: &Snapshot) -> History {
        History {
            source: snap.source.clone(),
            before: snap.id,
            docs: None,
        }
    }

    /// `(product object, version object)` of the newest older document that has the version.
    fn find(
        &mut self,
        vault: &Vault,
        cid: &str,
        product: &str,
        version: &str,
    ) -> Result<Option<(Option<Value>, Value)>> {
        if self.docs.is_none() {
            let mut docs = Vec::new();
            let mut snaps = vault.catalog.snapshots(Some(&self.source))?;
            snaps.retain(|s| s.id < self.before);
            snaps.reverse();
            for s in snaps.iter().take(64) {
                for d in vault.catalog.documents(s.id)? {
                    if d.kind != "products" {
                        continue;
                    }
                    if let Ok(v) = load_json(vault, s, &d) {
                        docs.push((d.content_id.clone().unwrap_or_default(), v));
                    }
                }
            }
            self.docs = Some(docs);
        }
        let Some(docs) = &self.docs else {
            return Ok(None);
        };
        for (c, doc) in docs {
            if c != cid {
                continue;
            }
            let Some(p) = doc.get("products").and_then(|p| p.get(product)) else {
                continue;
            };
            if let Some(v) = p.get("versions").and_then(|v| v.get(version)) {
                return Ok(Some((Some(p.clone()), v.clone())));
            }
        }
        Ok(None)
    }
}

/// An index rewritten for the `.json` (or, `signed`, the `.sjson`) variants.
fn rewrite_index(
    index: &Value,
    products: &HashMap<String, Option<Rewritten>>,
    index_stems: &HashMap<String, String>,
    signed: bool,
) -> Value {
    let mut value = index.clone();
    let ext = if signed { "sjson" } else { "json" };
    if let Some(entries) = object_mut(&mut value, "index") {
        entries.retain(|_, entry| {
            let Some(path) = entry
                .get("path")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return true;
            };
            let Some(e) = entry.as_object_mut() else {
                return true;
            };
            match products.get(&path) {
                Some(None) => false,
                Some(Some(rw)) => {
                    e.insert("path".into(), format!("{}.{ext}", rw.stem).into());
                    e.insert(
                        "products".into(),
                        Value::Array(rw.names.iter().cloned().map(Value::from).collect()),
                    );
                    let bytes = match (&rw.sjson, signed) {
                        (Some(s), true) => s,
                        _ => &rw.json,
                    };
                    refresh_sums(e, bytes);
                    true
                }
                None => {
                    if let Some(stem) = index_stems.get(&path) {
                        e.insert("path".into(), format!("{stem}.{ext}").into());
                        for k in ["size", "md5", "sha256", "sha512"] {
                            e.remove(k);
                        }
                    }
                    true
                }
            }
        });
    }
    value
}

/// Recompute `size`/`md5`/`sha256`/`sha512` of an index entry that had them.
fn refresh_sums(entry: &mut Map<String, Value>, bytes: &[u8]) {
    if !["size", "md5", "sha256", "sha512"]
        .iter()
        .any(|k| entry.contains_key(*k))
    {
        return;
    }
    let mut h = MultiHasher::all();
    h.update(bytes);
    let d = h.finish();
    if entry.contains_key("size") {
        entry.insert("size".into(), d.size.into());
    }
    for (k, v) in [
        ("md5", d.upstream.md5),
        ("sha256", d.upstream.sha256),
        ("sha512", d.upstream.sha512),
    ] {
        if entry.contains_key(k)
            && let Some(v) = v
        {
            entry.insert(k.into(), v.into());
        }
    }
}

/// A rewritten products document, for a synthesized index.
struct Synth {
    cid: String,
    doc: Value,
    stem: String,
    names: Vec<String>,
}

/// An index for a snapshot whose start document was a products document.
fn synthesize_index(docs: &[Synth], signed: bool) -> Value {
    let ext = if signed { "sjson" } else { "json" };
    let mut entries = Map::new();
    let mut updated = None;
    for s in docs {
        let mut e = Map::new();
        for k in ["datatype", "updated"] {
            if let Some(v) = s.doc.get(k) {
                e.insert(k.into(), v.clone());
            }
        }
        e.insert("format".into(), "products:1.0".into());
        e.insert("path".into(), format!("{}.{ext}", s.stem).into());
        e.insert(
            "products".into(),
            Value::Array(s.names.iter().cloned().map(Value::from).collect()),
        );
        if updated.is_none() {
            updated = s.doc.get("updated").cloned();
        }
        entries.insert(s.cid.clone(), Value::Object(e));
    }
    let mut top = Map::new();
    top.insert("format".into(), "index:1.0".into());
    top.insert(
        "updated".into(),
        updated.unwrap_or_else(|| httpdate::fmt_http_date(std::time::SystemTime::now()).into()),
    );
    top.insert("index".into(), Value::Object(entries));
    Value::Object(top)
}

//! Filtered metadata on S3 with content-hashed products documents: `streams/v1/<stem>.json`
//! becomes `streams/v1/<stem>.<hash>.json` (and its `.sjson` twin `<stem>.<hash>.sjson`), where
//! `<hash>` is the first 16 hex digits of the SHA-256 of the unsigned `.json` twin. A products
//! document is then never overwritten: its key changes whenever its content does, so the index
//! write is the only switch. The index documents are rewritten to point at the new names
//! (`index.json` as JSON; `index.sjson` unwrapped, rewritten and clearsigned again with the
//! publication's key). Verbatim metadata is never renamed (upstream paths are fixed).

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::{Body, Doc};
use crate::error::{Error, Result};
use crate::openpgp::{self, SigningKey};

/// `a/b.sjson` / `a/b.json` → (`a/b`, `sjson` / `json`).
fn split(key: &str) -> Option<(&str, &str)> {
    key.strip_suffix(".sjson")
        .map(|s| (s, "sjson"))
        .or_else(|| key.strip_suffix(".json").map(|s| (s, "json")))
}

fn hex16(doc: &Doc) -> Result<String> {
    Ok(doc
        .digest::<sha2::Sha256>()?
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// JSON as the tree's documents are written: one-space indentation and a final newline.
fn to_text(value: &Value, key: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b" "),
    );
    value.serialize(&mut ser).map_err(|source| Error::Json {
        path: key.to_string(),
        source,
    })?;
    buf.push(b'\n');
    Ok(buf)
}

/// Rename the products documents and rewrite the index documents (see the module
/// documentation). `current` gives the bucket's index documents as they are: an `index.sjson`
/// whose signed text is the one this would sign is kept byte for byte, so an unchanged
/// republish writes nothing.
pub(super) fn rename(
    docs: Vec<Doc>,
    key: Option<&SigningKey>,
    current: &HashMap<String, Option<Vec<u8>>>,
) -> Result<Vec<Doc>> {
    // A signed index with no key to sign it again: leave every name as the tree has it.
    if key.is_none()
        && docs
            .iter()
            .any(|d| d.is_index && d.mem().is_some_and(openpgp::is_clearsigned))
    {
        return Ok(docs);
    }
    // Each products stem's hash: of its `.json` twin, else of the document itself.
    let mut hashes: HashMap<String, String> = HashMap::new();
    for d in docs.iter().filter(|d| !d.is_index) {
        if let Some((stem, ext)) = split(&d.key)
            && (ext == "json" || !hashes.contains_key(stem))
        {
            hashes.insert(stem.to_string(), hex16(d)?);
        }
    }
    let renamed = |path: &str| -> Option<String> {
        let (stem, ext) = split(path)?;
        hashes.get(stem).map(|h| format!("{stem}.{h}.{ext}"))
    };
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        if !d.is_index {
            let key = renamed(&d.key).unwrap_or_else(|| d.key.clone());
            out.push(Doc { key, ..d });
            continue;
        }
        // Index documents are in memory (read whole; they are small).
        let old = d.mem().unwrap_or_default().to_vec();
        let signed = openpgp::is_clearsigned(&old);
        let text = if signed {
            openpgp::unwrap_cleartext(&old).map_err(|source| Error::Signing { source })?
        } else {
            old.clone()
        };
        let mut value: Value = serde_json::from_slice(&text).map_err(|source| Error::Json {
            path: d.key.clone(),
            source,
        })?;
        if let Some(entries) = value.get_mut("index").and_then(Value::as_object_mut) {
            for entry in entries.values_mut() {
                let Some(e) = entry.as_object_mut() else {
                    continue;
                };
                if let Some(new) = e.get("path").and_then(Value::as_str).and_then(renamed) {
                    e.insert("path".into(), new.into());
                }
            }
        }
        let new_text = to_text(&value, &d.key)?;
        let body = match (signed, key) {
            (false, _) => new_text,
            (true, Some(k)) => {
                let same = current
                    .get(&d.key)
                    .and_then(Option::as_ref)
                    .filter(|b| openpgp::is_clearsigned(b))
                    .and_then(|b| openpgp::unwrap_cleartext(b).ok())
                    .is_some_and(|t| t == new_text);
                match current.get(&d.key).and_then(Option::as_ref) {
                    Some(b) if same => b.clone(),
                    _ => k
                        .clearsign(&new_text)
                        .map_err(|source| Error::Signing { source })?,
                }
            }
            // Not reached: a signed index without a key returned early.
            (true, None) => old,
        };
        out.push(Doc {
            body: Body::Mem(body.into()),
            ..d
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_get_hashed_names_and_the_index_points_at_them() {
        let products = b"{\"content_id\": \"c\"}\n".to_vec();
        let index = br#"{"index": {"c": {"path": "streams/v1/c.json", "products": []}}}"#;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.json");
        std::fs::write(&file, &products).unwrap();
        let docs = vec![
            Doc {
                key: "streams/v1/c.json".into(),
                is_index: false,
                body: Body::File {
                    path: file,
                    size: products.len() as u64,
                },
            },
            Doc {
                key: "streams/v1/index.json".into(),
                is_index: true,
                body: Body::Mem(index.to_vec().into()),
            },
        ];
        let out = rename(docs, None, &HashMap::new()).unwrap();
        let h = hex16(&Doc {
            key: String::new(),
            is_index: false,
            body: Body::Mem(products.clone().into()),
        })
        .unwrap();
        assert_eq!(h.len(), 16);
        assert_eq!(out[0].key, format!("streams/v1/c.{h}.json"));
        let v: Value = serde_json::from_slice(out[1].mem().unwrap()).unwrap();
        assert_eq!(v["index"]["c"]["path"], format!("streams/v1/c.{h}.json"));
    }
}

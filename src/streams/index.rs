//! The `index:1.0` document (spec §1.2): the list of products (or nested index) documents of a
//! stream, in document key order.
//!
//! Protects invariant 5: every entry `path` has passed [`check_path`] when an [`Index`] comes out
//! of [`crate::streams::parse`].

use serde_json::{Map, Value};

use super::{FORMAT_INDEX, FORMAT_PRODUCTS, ParseError, str_field, wrong_type};
use crate::checksum::Checksums;
use crate::streams::path::check_path;

/// A parsed index document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// Top-level `updated` (informational only).
    pub updated: Option<String>,
    /// The entries of `index`, in document key order (the order of the real pass, spec §3.2).
    pub entries: Vec<IndexEntry>,
}

/// One entry of `index`: a document of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The key of the entry. The referenced products file's own `content_id` is the one that
    /// counts; the two are not cross-checked (spec §1.2).
    pub content_id: String,
    /// Relative path of the document, checked by [`check_path`].
    pub path: Option<String>,
    /// `format` of the referenced document, if it is a string.
    pub format: Option<String>,
    /// `datatype`, if it is a string (not used by the mirror).
    pub datatype: Option<String>,
    /// `md5`/`sha256`/`sha512` of the referenced document (lowercased) when the entry has them.
    pub checksums: Checksums,
    /// `size` of the referenced document, when it is a non-negative JSON integer.
    pub size: Option<u64>,
}

impl IndexEntry {
    /// Does the mirror parse and follow this entry? Only `products:1.0` and `index:1.0` entries
    /// are; others with a `path` are only copied byte for byte (spec §1.2).
    pub fn is_followed(&self) -> bool {
        matches!(self.format.as_deref(), Some(FORMAT_PRODUCTS | FORMAT_INDEX))
    }
}

/// Build an [`Index`] from the top-level object of a document whose `format` is `index:1.0`.
pub(super) fn from_object(doc: &str, top: &Map<String, Value>) -> Result<Index, ParseError> {
    let entries = match top.get("index") {
        None => {
            return Err(ParseError::MissingField {
                doc: doc.to_owned(),
                field: "index",
            });
        }
        Some(Value::Object(entries)) => entries,
        Some(_) => return Err(wrong_type(doc, "index", "a JSON object")),
    };
    let entries = entries
        .iter()
        .map(|(content_id, entry)| entry_from(doc, content_id, entry))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Index {
        updated: str_field(top, "updated").map(str::to_owned),
        entries,
    })
}

fn entry_from(doc: &str, content_id: &str, entry: &Value) -> Result<IndexEntry, ParseError> {
    let at = || format!("index/{content_id}");
    let Value::Object(entry) = entry else {
        return Err(wrong_type(doc, at(), "a JSON object"));
    };
    let path = match entry.get("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => {
            check_path(p).map_err(|source| ParseError::UnsafePath {
                doc: doc.to_owned(),
                at: format!("{}/path", at()),
                source,
            })?;
            Some(p.clone())
        }
        Some(_) => return Err(wrong_type(doc, format!("{}/path", at()), "a string")),
    };
    let mut checksums = Checksums::default();
    for algo in [
        crate::checksum::Algo::Md5,
        crate::checksum::Algo::Sha256,
        crate::checksum::Algo::Sha512,
    ] {
        if let Some(v) = str_field(entry, algo.name()) {
            checksums.set(algo, v.to_ascii_lowercase());
        }
    }
    Ok(IndexEntry {
        content_id: content_id.to_owned(),
        path,
        format: str_field(entry, "format").map(str::to_owned),
        datatype: str_field(entry, "datatype").map(str::to_owned),
        checksums,
        size: entry.get("size").and_then(Value::as_u64),
    })
}

#[cfg(test)]
mod tests {
    use crate::streams::{Document, ParseError, PathReason, parse};

    fn index(payload: &str) -> super::Index {
        match parse("index.json", payload.as_bytes()).unwrap() {
            Document::Index(i) => i,
            Document::Products(_) => panic!("not an index"),
        }
    }

    #[test]
    fn entries_in_document_order_with_fields() {
        let i = index(
            r#"{"format":"index:1.0","updated":"Wed, 25 Jun 2025 11:01:49 +0000","index":{
              "z:last":{"path":"streams/v1/z.json","format":"products:1.0","datatype":"image-ids",
                        "sha256":"ABCD","size":12},
              "a:first":{"path":"streams/v1/a.json","format":"other:1.0","size":-1},
              "m:nested":{"path":"streams/v1/sub.json","format":"index:1.0"},
              "n:none":{"products":["x"]}}}"#,
        );
        assert_eq!(
            i.updated.as_deref(),
            Some("Wed, 25 Jun 2025 11:01:49 +0000")
        );
        let ids: Vec<_> = i.entries.iter().map(|e| e.content_id.as_str()).collect();
        assert_eq!(ids, ["z:last", "a:first", "m:nested", "n:none"]);
        let z = &i.entries[0];
        assert_eq!(z.path.as_deref(), Some("streams/v1/z.json"));
        assert_eq!(z.datatype.as_deref(), Some("image-ids"));
        assert_eq!(z.checksums.sha256.as_deref(), Some("abcd"));
        assert_eq!(z.size, Some(12));
        assert!(z.is_followed());
        assert!(!i.entries[1].is_followed());
        assert_eq!(i.entries[1].size, None);
        assert!(i.entries[2].is_followed());
        assert!(!i.entries[3].is_followed());
        assert_eq!(i.entries[3].path, None);
    }

    #[test]
    fn bad_entries() {
        let e = parse(
            "index.json",
            br#"{"format":"index:1.0","index":{"c":{"path":"../../etc/passwd"}}}"#,
        )
        .unwrap_err();
        match &e {
            ParseError::UnsafePath { at, source, .. } => {
                assert_eq!(at, "index/c/path");
                assert_eq!(source.reason, PathReason::DotDot);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.to_string(), "bad path in `index.json` at `index/c/path`");

        let e = parse(
            "i",
            br#"{"format":"index:1.0","index":{"c":{"path":"/abs"}}}"#,
        );
        assert!(matches!(e, Err(ParseError::UnsafePath { .. })));
        let e = parse("i", br#"{"format":"index:1.0","index":{"c":{"path":7}}}"#);
        assert!(matches!(e, Err(ParseError::WrongType { .. })));
        let e = parse("i", br#"{"format":"index:1.0","index":{"c":[]}}"#);
        assert!(matches!(e, Err(ParseError::WrongType { .. })));
        let e = parse("i", br#"{"format":"index:1.0","index":[]}"#);
        assert!(matches!(e, Err(ParseError::WrongType { .. })));
        let e = parse("i", br#"{"format":"index:1.0"}"#);
        assert!(matches!(
            e,
            Err(ParseError::MissingField { field: "index", .. })
        ));
    }
}

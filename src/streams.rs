//! The SimpleStreams model: parsing of `index:1.0` and `products:1.0` documents, expansion of
//! `_aliases` and of inherited ("condensed") fields, item filters and version selection.
//!
//! Pure code: no I/O, no clock, no network. Everything here reads outside data (documents,
//! filter strings, paths) and must never panic on it: errors name the document and the place.
//! Protects invariant 5 (every `path` is checked by [`path::check_path`] when a document is
//! parsed, so a parsed [`Index`] or [`Products`] never hands out an unsafe path) and invariant 7
//! (one clear error per bad input), and keeps memory proportional to a document: products are
//! streamed into a compact model whose items share what they inherit (`products`), and `_aliases`
//! expansion is bounded at 64 times the document's size ([`ParseError::ExpansionTooLarge`]).
//!
//! Behaviour follows `spec/simplestreams.md`: formats §1, filters §2.2–§2.3, `--max`/`--keep`
//! §2.4. Entry points for fuzzing: [`parse`], [`Filter::parse`], [`check_path`].

pub mod filter;
pub mod path;
pub mod select;

mod aliases;
mod index;
mod products;

pub use filter::{Filter, FilterError, FilterGroups, Filters, GroupError, ItemFilter, Op};
pub use index::{Index, IndexEntry};
pub use path::{PathReason, UnsafePath, check_path};
pub(crate) use products::JsonKey;
pub use products::{FlatItem, ItemAt, ItemFacts, Products};
pub use select::{
    SelectError, SelectedAt, SelectedProduct, SelectedVersion, Work, resolve_work, select,
    select_at, select_each,
};

use serde_json::{Map, Value};

/// The `format` of an index document.
pub const FORMAT_INDEX: &str = "index:1.0";
/// The `format` of a products document.
pub const FORMAT_PRODUCTS: &str = "products:1.0";

/// A parsed SimpleStreams document.
#[derive(Debug, Clone)]
pub enum Document {
    Index(Index),
    Products(Products),
}

/// Why a document could not be parsed. Every variant names the document (`doc`, as given to
/// [`parse`]); places inside it are written `products/<name>/versions/<name>/…`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("`{doc}` is not UTF-8")]
    NotUtf8 {
        doc: String,
        #[source]
        source: std::str::Utf8Error,
    },

    #[error("`{doc}` is not valid JSON")]
    NotJson {
        doc: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("`{doc}` is not a JSON object at the top level")]
    NotAnObject { doc: String },

    #[error("`{doc}` has no `format` (expected `index:1.0` or `products:1.0`)")]
    MissingFormat { doc: String },

    #[error("unknown format `{}` in `{doc}` (expected `index:1.0` or `products:1.0`)", .format.escape_debug())]
    UnknownFormat { doc: String, format: String },

    #[error("`{doc}` has no `{field}`")]
    MissingField { doc: String, field: &'static str },

    #[error("`{}` in `{doc}` is not {expected}", .at.escape_debug())]
    WrongType {
        doc: String,
        at: String,
        expected: &'static str,
    },

    #[error("bad path in `{doc}` at `{}`", .at.escape_debug())]
    UnsafePath {
        doc: String,
        at: String,
        #[source]
        source: UnsafePath,
    },

    #[error(
        "`{}` = `{}` in `{doc}` names no entry of `_aliases`",
        .name.escape_debug(),
        .value.escape_debug()
    )]
    UnknownAlias {
        doc: String,
        name: String,
        value: String,
    },

    #[error(
        "`_aliases` entry `{}` = `{}` in `{doc}` is not a JSON object",
        .name.escape_debug(),
        .value.escape_debug()
    )]
    BadAlias {
        doc: String,
        name: String,
        value: String,
    },

    #[error("expanding `_aliases` in `{doc}` nests too deeply or grows too large (a cycle?)")]
    AliasesTooLarge { doc: String },

    #[error(
        "`{doc}` ({size} bytes) would expand to more than {limit} bytes (64 times its size, at most 8 GiB); refusing it"
    )]
    ExpansionTooLarge {
        doc: String,
        size: usize,
        limit: u64,
    },
}

/// Parse one SimpleStreams document (the JSON payload, already taken out of any clearsign
/// wrapper). `doc_name` is only used in error messages (a URL or a relative path).
///
/// Products documents get `_aliases` expanded (spec §1.5) and every item `path` checked; index
/// documents get every entry `path` checked. Never panics, whatever the bytes.
pub fn parse(doc_name: &str, payload: &[u8]) -> Result<Document, ParseError> {
    let doc = || doc_name.to_owned();
    let text = std::str::from_utf8(payload)
        .map_err(|source| ParseError::NotUtf8 { doc: doc(), source })?;
    let top = match products::read(doc_name, text) {
        Ok(products::Read::Products(p)) => return Ok(Document::Products(p)),
        Ok(products::Read::Other(top)) => top,
        Err(Ok(e)) => return Err(e),
        Err(Err(source)) if source.classify() == serde_json::error::Category::Data => {
            return Err(ParseError::NotAnObject { doc: doc() });
        }
        Err(Err(source)) => return Err(ParseError::NotJson { doc: doc(), source }),
    };
    match top.get("format") {
        None => Err(ParseError::MissingFormat { doc: doc() }),
        Some(Value::String(f)) if f == FORMAT_INDEX => {
            index::from_object(doc_name, &top).map(Document::Index)
        }
        Some(other) => Err(ParseError::UnknownFormat {
            doc: doc(),
            format: match other {
                Value::String(s) => shorten(s),
                v => shorten(&v.to_string()),
            },
        }),
    }
}

/// Helpers shared by the index and products parsers.
fn wrong_type(doc: &str, at: impl Into<String>, expected: &'static str) -> ParseError {
    ParseError::WrongType {
        doc: doc.to_owned(),
        at: at.into(),
        expected,
    }
}

/// At most 80 characters of an outside value, for an error message.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", s.get(..at).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// `map[key]` as a string, if it is one.
fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(payload: &str) -> ParseError {
        parse("doc.json", payload.as_bytes()).unwrap_err()
    }

    #[test]
    fn bad_inputs_give_the_right_error() {
        let e = parse("x.json", b"\xff\xfe{}").unwrap_err();
        assert!(matches!(e, ParseError::NotUtf8 { .. }), "{e:?}");
        assert_eq!(e.to_string(), "`x.json` is not UTF-8");

        let e = err("{\n  \"format\": ");
        assert!(matches!(e, ParseError::NotJson { .. }), "{e:?}");
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("line 2 column"), "{cause}");

        for p in ["", "not json", "{\"a\":1}x", "\u{feff}{}"] {
            assert!(matches!(err(p), ParseError::NotJson { .. }), "{p:?}");
        }
        for p in ["[]", "1", "\"s\"", "null"] {
            assert!(matches!(err(p), ParseError::NotAnObject { .. }), "{p:?}");
        }
        assert!(matches!(err("{}"), ParseError::MissingFormat { .. }));

        let e = err(r#"{"format": "products:2.0"}"#);
        assert_eq!(
            e.to_string(),
            "unknown format `products:2.0` in `doc.json` (expected `index:1.0` or `products:1.0`)"
        );
        let e = err(&format!(r#"{{"format": "{}"}}"#, "é".repeat(100)));
        assert!(
            matches!(e, ParseError::UnknownFormat { ref format, .. } if format.chars().count() == 81)
        );
        let e = err(r#"{"format": 1}"#);
        assert!(matches!(e, ParseError::UnknownFormat { ref format, .. } if format == "1"));

        let e = err(r#"{"format": "products:1.0", "products": {}}"#);
        assert!(
            matches!(
                e,
                ParseError::MissingField {
                    field: "content_id",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "`doc.json` has no `content_id`");
    }

    /// The real documents of `../shared/fixtures/real` beside the project (see its README).
    /// Missing fixtures fail the test: CI always has `shared/` beside the clone.
    fn real(rel: &str) -> Option<Vec<u8>> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/real");
        match std::fs::read(std::path::Path::new(root).join(rel)) {
            Ok(bytes) => Some(bytes),
            Err(e) => panic!("real fixture `{rel}` not found under `{root}`: {e}"),
        }
    }

    /// Naive clearsign unwrapping, for tests only: the body between the first empty line after
    /// the BEGIN line and the signature (no dash-unescaping; the real files have none).
    fn unclearsign(bytes: &[u8]) -> &[u8] {
        let text = std::str::from_utf8(bytes).unwrap();
        let begin = text.find("-----BEGIN PGP SIGNED MESSAGE-----\n").unwrap();
        let body = begin + text[begin..].find("\n\n").unwrap() + 2;
        let end = text.find("-----BEGIN PGP SIGNATURE-----").unwrap();
        &bytes[body..end]
    }

    fn real_products(rel: &str) -> Option<Products> {
        let bytes = real(rel)?;
        let payload = if rel.ends_with(".sjson") {
            unclearsign(&bytes)
        } else {
            &bytes
        };
        match parse(rel, payload).unwrap() {
            Document::Products(p) => Some(p),
            Document::Index(_) => panic!("{rel} is an index"),
        }
    }

    fn real_index(rel: &str) -> Option<Index> {
        let bytes = real(rel)?;
        let payload = if rel.ends_with(".sjson") {
            unclearsign(&bytes)
        } else {
            &bytes
        };
        match parse(rel, payload).unwrap() {
            Document::Index(i) => Some(i),
            Document::Products(_) => panic!("{rel} is products"),
        }
    }

    fn count(p: &Products, filters: &[&str]) -> (usize, usize, usize) {
        let sel = select(p, &Filters::parse_all(filters).unwrap());
        let versions = sel.iter().map(|p| p.versions.len()).sum();
        let items = sel
            .iter()
            .flat_map(|p| &p.versions)
            .map(|v| v.items.len())
            .sum();
        (sel.len(), versions, items)
    }

    const DL2016: &str =
        "cloud-images-released-2016/streams/v1/com.ubuntu.cloud:released:download.sjson";
    const MAAS: &str = "maas-stable-2025-trimmed/streams/v1/";

    #[test]
    fn real_cloud_images_2016_products() {
        let Some(p) = real_products(DL2016) else {
            return;
        };
        assert_eq!(p.content_id(), "com.ubuntu.cloud:released:download");
        assert_eq!(
            (p.product_count(), p.version_count(), p.item_count()),
            (51, 1319, 7008)
        );
        assert_eq!(p.items().count(), 7008);
        let paths: std::collections::HashSet<_> = p.items().filter_map(|i| i.path).collect();
        assert_eq!(paths.len(), 6996);
        let total: u64 = p.items().filter_map(|i| i.size).sum();
        assert!(total > 1_200_000_000_000, "{total}");
        assert!(
            p.items()
                .all(|i| i.size.is_some() && i.checksums.strongest().is_some())
        );
        let first = p.items().next().unwrap();
        assert_eq!(first.product, "com.ubuntu.cloud:server:10.04:amd64");
        assert_eq!(first.get("supported"), Some("False"));
        assert_eq!(
            first.get("license"),
            Some("http://www.canonical.com/intellectual-property-policy")
        );
        // counts computed with upstream's flattening and filter code (python 3.11)
        assert_eq!(count(&p, &["release~(trusty|xenial)"]), (12, 446, 2866));
        assert_eq!(
            count(
                &p,
                &[
                    "release~(trusty|xenial)",
                    "arch=amd64",
                    "ftype~(disk1.img|tar.gz)"
                ]
            ),
            (2, 85, 255)
        );
        assert_eq!(count(&p, &["supported=False"]), (29, 636, 3022));
        assert_eq!(count(&p, &["release!~."]), (0, 0, 0));
        assert_eq!(
            count(
                &p,
                &[r"item_name~^root\.tar\.(gz|xz)$", "version_name~^2016"]
            ),
            (25, 339, 678)
        );
    }

    #[test]
    fn real_cloud_images_2016_index() {
        let Some(i) = real_index("cloud-images-released-2016/streams/v1/index.sjson") else {
            return;
        };
        assert_eq!(i.entries.len(), 11);
        assert_eq!(i.entries[0].content_id, "com.ubuntu.cloud:released:joyent");
        assert_eq!(
            i.entries[1].content_id,
            "com.ubuntu.cloud:released:download"
        );
        assert_eq!(
            i.entries[1].path.as_deref(),
            Some("streams/v1/com.ubuntu.cloud:released:download.sjson")
        );
        assert!(i.entries.iter().all(IndexEntry::is_followed));
        assert!(i.updated.is_some());
    }

    #[test]
    fn real_maas_trimmed() {
        let Some(i) = real_index(&format!("{MAAS}index.json")) else {
            return;
        };
        let ids: Vec<_> = i.entries.iter().map(|e| e.content_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "com.ubuntu.maas:stable:1:bootloader-download",
                "com.ubuntu.maas:stable:centos-bases-download",
                "com.ubuntu.maas:stable:v3:download"
            ]
        );
        assert!(
            i.entries
                .iter()
                .all(|e| e.datatype.as_deref() == Some("image-ids"))
        );
        let boot = real_products(&format!(
            "{MAAS}com.ubuntu.maas:stable:1:bootloader-download.json"
        ))
        .unwrap();
        assert_eq!(
            (
                boot.product_count(),
                boot.version_count(),
                boot.item_count()
            ),
            (5, 9, 13)
        );
        assert_eq!(count(&boot, &["os~(grub*|pxelinux)"]), (5, 9, 13));
        assert_eq!(count(&boot, &["os~^grub"]), (3, 6, 10));
        let centos = real_products(&format!(
            "{MAAS}com.ubuntu.maas:stable:centos-bases-download.json"
        ))
        .unwrap();
        assert_eq!(
            (
                centos.product_count(),
                centos.version_count(),
                centos.item_count()
            ),
            (2, 4, 8)
        );
        assert_eq!(count(&centos, &["subarch~(generic|hwe-t)"]), (2, 4, 8));
        let v3 = real_products(&format!("{MAAS}com.ubuntu.maas:stable:v3:download.json")).unwrap();
        assert_eq!(
            (v3.product_count(), v3.version_count(), v3.item_count()),
            (4, 8, 32)
        );
        assert_eq!(count(&v3, &["release~(trusty|xenial)"]), (0, 0, 0));
        assert_eq!(count(&v3, &["subarch~(generic|hwe-t)"]), (0, 0, 0));
        assert_eq!(count(&v3, &["subarches~(generic|hwe-t)"]), (4, 8, 32));
        assert_eq!(
            count(&v3, &["release~(jammy|noble)", "arch=amd64"]),
            (2, 4, 16)
        );
        for p in [&boot, &centos, &v3] {
            assert!(p.items().all(|i| i.path.is_some() && i.size.is_some()));
        }
    }

    #[test]
    fn real_incus_and_2024_subset() {
        let Some(i) = real_index("incus-chr-2025/streams/v1/index.json") else {
            return;
        };
        assert_eq!(i.entries.len(), 1);
        assert_eq!(i.updated, None);
        assert!(i.entries[0].is_followed());
        let incus = real_products("incus-chr-2025/streams/v1/images.json").unwrap();
        assert_eq!(incus.content_id(), "images");
        assert_eq!(
            (
                incus.product_count(),
                incus.version_count(),
                incus.item_count()
            ),
            (20, 20, 40)
        );
        assert_eq!(count(&incus, &["arch=arm64"]), (10, 10, 20));
        assert!(
            incus
                .items()
                .all(|i| i.path.is_some_and(|p| p.starts_with("images/")))
        );

        let p = real_products(
            "cloud-images-released-2024-subset/streams/v1/com.ubuntu.cloud:released:download.json",
        )
        .unwrap();
        assert_eq!(
            (p.product_count(), p.version_count(), p.item_count()),
            (16, 174, 1405)
        );
        assert_eq!(count(&p, &["ftype=squashfs"]), (4, 162, 162));
        assert_eq!(count(&p, &["release~(?P<c>[a-z])(?P=c)"]), (2, 2, 19));
        assert_eq!(count(&p, &["release~(?<=o)c(?!x)"]), (1, 147, 1176));
        assert_eq!(count(&p, &["release~^(?!focal)"]), (15, 27, 229));
        assert_eq!(
            count(&p, &["version_name~^2024", "release=noble"]),
            (1, 13, 156)
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "{{\"format\":\"products:1.0\",\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // Skipped without recursion (a list is no scalar), so only the missing field remains.
        let e = err(&deep);
        assert!(
            matches!(
                e,
                ParseError::NotJson { .. } | ParseError::MissingField { .. }
            ),
            "{e:?}"
        );
        let deep_item = format!(
            "{{\"format\":\"products:1.0\",\"content_id\":\"c\",\"products\":{{\"p\":{{\"versions\":{{\"v\":{{\"items\":{{\"i\":{{\"x\":{}{}}}}}}}}}}}}}}}",
            "{\"a\":".repeat(100_000),
            "}".repeat(100_000)
        );
        let _ = parse("doc.json", deep_item.as_bytes());
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic stand-in for the fuzz target: mutate real documents byte by byte.
        let seed = br#"{"format":"products:1.0","content_id":"c","_aliases":{"r":{"a":{"k":"v"}}},
            "products":{"p":{"r":"a","versions":{"1":{"items":{"i":{"path":"a/b","size":3,
            "sha256":"AB"}}}}}}}"#;
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let mut bytes = seed.to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % bytes.len() as u64) as usize;
                bytes[at] = (state >> 32) as u8;
            }
            if let Ok(Document::Products(p)) = parse("fuzz", &bytes) {
                for item in p.items() {
                    if let Some(path) = item.path {
                        assert_eq!(check_path(path), Ok(()));
                    }
                }
            }
        }
    }
}

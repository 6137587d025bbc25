//! The `products:1.0` document (spec §1.3) and the flattened view of its items (spec §1.5).
//!
//! Protects invariant 5: a [`Products`] only exists after `_aliases` were expanded and every
//! item `path` passed [`check_path`], and its tree is never handed out mutably; so every
//! [`FlatItem::path`] is safe. The tree shape (objects for `products`, `versions`, `items` and
//! their entries) is checked at parse time too, so walking it never meets a surprise.
//!
//! The flattened view of an item is `top ∪ product ∪ {product_name} ∪ version ∪ {version_name}
//! ∪ item ∪ {item_name}`, inner levels overriding outer ones; only scalars take part, converted
//! as Python's `str()` does (`True`, `1.5e-07`, …); lists, objects and `null` are left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::aliases;
use super::{ParseError, wrong_type};
use crate::checksum::{Algo, Checksums};
use crate::streams::path::check_path;

/// A parsed products document, `_aliases` expanded.
#[derive(Debug, Clone)]
pub struct Products {
    content_id: String,
    tree: Value,
    products: usize,
    versions: usize,
    items: usize,
}

impl Products {
    /// The document's own `content_id` (the one that counts, spec §1.2).
    pub fn content_id(&self) -> &str {
        &self.content_id
    }

    /// The whole document after `_aliases` expansion (inherited fields are not expanded in it).
    pub fn tree(&self) -> &Value {
        &self.tree
    }

    /// Take the tree out.
    pub fn into_tree(self) -> Value {
        self.tree
    }

    /// The top-level object.
    pub fn top(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        self.tree.as_object().unwrap_or(&EMPTY)
    }

    /// Number of products.
    pub fn product_count(&self) -> usize {
        self.products
    }

    /// Number of versions, over all products.
    pub fn version_count(&self) -> usize {
        self.versions
    }

    /// Number of items, over all versions.
    pub fn item_count(&self) -> usize {
        self.items
    }

    /// Every item, flattened, in document order (product, then version, then item).
    pub fn items(&self) -> impl Iterator<Item = FlatItem<'_>> + '_ {
        let mut top = Flat::default();
        top.layer(self.top());
        children(self.top(), "products").flat_map(move |(product, p)| {
            let mut pf = top.clone();
            pf.layer(p);
            pf.name("product_name", product);
            children(p, "versions").flat_map(move |(version, v)| {
                let mut vf = pf.clone();
                vf.layer(v);
                vf.name("version_name", version);
                children(v, "items").map(move |(item, raw)| {
                    let mut f = vf.clone();
                    f.layer(raw);
                    f.name("item_name", item);
                    FlatItem::new(product, version, item, raw, f)
                })
            })
        })
    }
}

/// One item with its inherited fields (spec §1.5): what filters see.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatItem<'a> {
    pub product: &'a str,
    pub version: &'a str,
    pub item: &'a str,
    /// The flattened scalars, as strings.
    pub fields: BTreeMap<String, String>,
    /// The item's own object, as in the document.
    pub raw: &'a Map<String, Value>,
    /// The item's own `path` (only the item level counts, as upstream), checked safe.
    pub path: Option<&'a str>,
    /// `size` of the flattened view, when the value that won is a non-negative JSON integer.
    pub size: Option<u64>,
    /// `md5`/`sha256`/`sha512` of the flattened view, lowercased.
    pub checksums: Checksums,
}

impl<'a> FlatItem<'a> {
    fn new(
        product: &'a str,
        version: &'a str,
        item: &'a str,
        raw: &'a Map<String, Value>,
        flat: Flat,
    ) -> Self {
        let mut checksums = Checksums::default();
        for algo in [Algo::Md5, Algo::Sha256, Algo::Sha512] {
            if let Some(v) = flat.fields.get(algo.name()) {
                checksums.set(algo, v.to_ascii_lowercase());
            }
        }
        FlatItem {
            product,
            version,
            item,
            path: raw.get("path").and_then(Value::as_str),
            size: flat.size,
            checksums,
            fields: flat.fields,
            raw,
        }
    }

    /// A field of the flattened view (what a filter compares).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

/// A flattened view under construction.
#[derive(Debug, Clone, Default)]
struct Flat {
    fields: BTreeMap<String, String>,
    size: Option<u64>,
}

impl Flat {
    /// Lay the scalars of one level over what is there.
    fn layer(&mut self, level: &Map<String, Value>) {
        for (k, v) in level {
            if let Some(s) = py_str(v) {
                if k == "size" {
                    self.size = v.as_u64();
                }
                self.fields.insert(k.clone(), s);
            }
        }
    }

    /// Set one of the synthetic `*_name` keys.
    fn name(&mut self, key: &str, name: &str) {
        self.fields.insert(key.to_owned(), name.to_owned());
    }
}

/// Python's `str()` of a JSON scalar; `None` for what upstream leaves out of the flattened view
/// (lists, objects, `null`). Deviations, both from serde_json reading them as floats: integers
/// beyond 64 bits (`1e+20` where Python prints every digit) and the integer `-0` (`-0.0`).
pub(super) fn py_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("True".to_owned()),
        Value::Bool(false) => Some("False".to_owned()),
        Value::Number(n) => Some(if let Some(u) = n.as_u64() {
            u.to_string()
        } else if let Some(i) = n.as_i64() {
            i.to_string()
        } else {
            py_float(n.as_f64().unwrap_or(f64::NAN))
        }),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Python's `repr()`/`str()` of a float: the shortest round-trip digits, positional notation
/// when the decimal exponent is in `-4 ..= 15`, else `d.ddde±XX`; `.0` added to integral values.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // `{:e}` prints the shortest round-trip digits: `-1.5e-7`, `1e16`, `0e0`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let point = exp + 1; // digits before the decimal point
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if !(-3..=16).contains(&point) {
        let mut chars = digits.chars();
        out.extend(chars.next());
        let rest = chars.as_str();
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
    } else if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else {
        let point = point.unsigned_abs() as usize;
        match digits.split_at_checked(point) {
            Some((int, frac)) if !frac.is_empty() => {
                out.push_str(int);
                out.push('.');
                out.push_str(frac);
            }
            _ => {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point.saturating_sub(digits.len())));
                out.push_str(".0");
            }
        }
    }
    out
}

/// The entries of `obj[key]` that are objects (the shape is checked at parse time).
fn children<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = (&'a str, &'a Map<String, Value>)> + use<'a> {
    obj.get(key)
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.iter())
        .filter_map(|(k, v)| v.as_object().map(|o| (k.as_str(), o)))
}

/// Build [`Products`] from the top-level object of a document whose `format` is `products:1.0`.
pub(super) fn from_object(doc: &str, mut top: Map<String, Value>) -> Result<Products, ParseError> {
    let content_id = match top.get("content_id") {
        None => {
            return Err(ParseError::MissingField {
                doc: doc.to_owned(),
                field: "content_id",
            });
        }
        Some(Value::String(c)) => c.clone(),
        Some(_) => return Err(wrong_type(doc, "content_id", "a string")),
    };
    aliases::expand(doc, &mut top)?;
    let (products, versions, items) = check_tree(doc, &top)?;
    Ok(Products {
        content_id,
        tree: Value::Object(top),
        products,
        versions,
        items,
    })
}

/// Check the shape of `products` and every item `path`; count products, versions and items.
fn check_tree(doc: &str, top: &Map<String, Value>) -> Result<(usize, usize, usize), ParseError> {
    let products = match top.get("products") {
        None => {
            return Err(ParseError::MissingField {
                doc: doc.to_owned(),
                field: "products",
            });
        }
        Some(p) => object(doc, p, || "products".to_owned())?,
    };
    let (mut versions, mut items) = (0, 0);
    for (pname, product) in products {
        let at_p = || format!("products/{pname}");
        let product = object(doc, product, at_p)?;
        let Some(vs) = product.get("versions") else {
            continue;
        };
        for (vname, version) in object(doc, vs, || format!("{}/versions", at_p()))? {
            versions += 1;
            let at_v = || format!("{}/versions/{vname}", at_p());
            let version = object(doc, version, at_v)?;
            let Some(is) = version.get("items") else {
                continue;
            };
            for (iname, item) in object(doc, is, || format!("{}/items", at_v()))? {
                items += 1;
                let at_i = || format!("{}/items/{iname}", at_v());
                let item = object(doc, item, at_i)?;
                match item.get("path") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(p)) => {
                        check_path(p).map_err(|source| ParseError::UnsafePath {
                            doc: doc.to_owned(),
                            at: format!("{}/path", at_i()),
                            source,
                        })?;
                    }
                    Some(_) => return Err(wrong_type(doc, format!("{}/path", at_i()), "a string")),
                }
            }
        }
    }
    Ok((products.len(), versions, items))
}

fn object<'a>(
    doc: &str,
    v: &'a Value,
    at: impl FnOnce() -> String,
) -> Result<&'a Map<String, Value>, ParseError> {
    v.as_object()
        .ok_or_else(|| wrong_type(doc, at(), "a JSON object"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::{Document, PathReason, parse};

    pub(crate) fn products(payload: &str) -> Products {
        match parse("products.json", payload.as_bytes()).unwrap() {
            Document::Products(p) => p,
            Document::Index(_) => panic!("not products"),
        }
    }

    #[test]
    fn python_str_of_scalars() {
        let cases = [
            ("\"s\"", Some("s")),
            ("true", Some("True")),
            ("false", Some("False")),
            ("2500", Some("2500")),
            ("-7", Some("-7")),
            // known deviation: serde_json reads the integer `-0` as a float (Python: "0")
            ("-0", Some("-0.0")),
            ("18446744073709551615", Some("18446744073709551615")),
            ("-9223372036854775808", Some("-9223372036854775808")),
            ("1.0", Some("1.0")),
            ("1.5", Some("1.5")),
            ("0.1", Some("0.1")),
            ("1e2", Some("100.0")),
            ("123.456", Some("123.456")),
            ("0.0001", Some("0.0001")),
            ("0.00001", Some("1e-05")),
            ("1.5e-7", Some("1.5e-07")),
            ("1e15", Some("1000000000000000.0")),
            ("1e16", Some("1e+16")),
            ("1.2345e100", Some("1.2345e+100")),
            ("0.0", Some("0.0")),
            ("-0.0", Some("-0.0")),
            ("-2.5", Some("-2.5")),
            ("1.7976931348623157e308", Some("1.7976931348623157e+308")),
            ("5e-324", Some("5e-324")),
            ("null", None),
            ("[1]", None),
            ("{}", None),
        ];
        for (json, want) in cases {
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(py_str(&v).as_deref(), want, "{json}");
        }
    }

    const TREE: &str = r#"{
        "format": "products:1.0", "content_id": "com.example:download",
        "datatype": "image-downloads", "os": "ubuntu", "label": "top", "count": 3,
        "list": ["dropped"],
        "products": {
          "p1": {"arch": "amd64", "label": "product", "supported": false, "versions": {
            "20240101": {"label": "version", "pubname": "v1", "items": {
              "disk": {"ftype": "disk1.img", "path": "p1/20240101/disk.img", "size": 2500,
                       "sha256": "ABCDEF", "label": "item"},
              "meta": {"ftype": "manifest", "id": "ami-1"}
            }},
            "20240201": {"size": 9, "md5": "FF", "items": {
              "disk": {"path": "p1/20240201/disk.img", "size": "10", "version_name": "own"}
            }}
          }},
          "p2": {"os": "centos", "size": 7, "versions": {
            "1": {"items": {"x": {"path": "p2/x", "size": 1.0}}},
            "2": {"items": {}}
          }},
          "p3": {}
        }}"#;

    #[test]
    fn flattening_inner_overrides_outer() {
        let p = products(TREE);
        assert_eq!(p.content_id(), "com.example:download");
        assert_eq!(
            (p.product_count(), p.version_count(), p.item_count()),
            (3, 4, 4)
        );
        let items: Vec<_> = p.items().collect();
        let names: Vec<_> = items
            .iter()
            .map(|i| format!("{}/{}/{}", i.product, i.version, i.item))
            .collect();
        assert_eq!(
            names,
            [
                "p1/20240101/disk",
                "p1/20240101/meta",
                "p1/20240201/disk",
                "p2/1/x"
            ]
        );
        let disk = &items[0];
        assert_eq!(disk.get("label"), Some("item"));
        assert_eq!(disk.get("os"), Some("ubuntu"));
        assert_eq!(disk.get("count"), Some("3"));
        assert_eq!(disk.get("list"), None);
        assert_eq!(disk.get("supported"), Some("False"));
        assert_eq!(disk.get("pubname"), Some("v1"));
        assert_eq!(disk.get("size"), Some("2500"));
        assert_eq!(disk.get("content_id"), Some("com.example:download"));
        assert_eq!(disk.get("format"), Some("products:1.0"));
        assert_eq!(disk.get("product_name"), Some("p1"));
        assert_eq!(disk.get("version_name"), Some("20240101"));
        assert_eq!(disk.get("item_name"), Some("disk"));
        assert_eq!(disk.get("products"), None);
        assert_eq!(disk.size, Some(2500));
        assert_eq!(disk.path, Some("p1/20240101/disk.img"));
        assert_eq!(disk.checksums.sha256.as_deref(), Some("abcdef"));
        assert_eq!(disk.raw.get("label"), Some(&Value::from("item")));

        let meta = &items[1];
        assert_eq!(meta.get("label"), Some("version"));
        assert_eq!(meta.path, None);
        assert_eq!(meta.size, None);

        // version-level size/md5 inherited as strings; the item's string size wins and is no
        // integer, so `size` is unknown; an item key `version_name` loses to nothing above it.
        let d2 = &items[2];
        assert_eq!(d2.get("size"), Some("10"));
        assert_eq!(d2.size, None);
        assert_eq!(d2.checksums.md5.as_deref(), Some("ff"));
        assert_eq!(d2.get("version_name"), Some("own"));
        assert_eq!(d2.get("label"), Some("product"));

        let x = &items[3];
        assert_eq!(x.get("os"), Some("centos"));
        assert_eq!(x.get("size"), Some("1.0"));
        assert_eq!(x.size, None);
    }

    #[test]
    fn inherited_integer_size_counts() {
        let p = products(
            r#"{"format":"products:1.0","content_id":"c","products":{"p":{"size":5,
                "versions":{"v":{"items":{"i":{"path":"a"}}}}}}}"#,
        );
        let i = p.items().next().unwrap();
        assert_eq!((i.size, i.get("size")), (Some(5), Some("5")));
    }

    #[test]
    fn aliases_are_expanded_before_flattening_and_path_checks() {
        let p = products(
            r#"{"format":"products:1.0","content_id":"c",
                "_aliases":{"crsn":{"east":{"region":"us-east-1","label":"aliased"}}},
                "products":{"p":{"label":"p","versions":{"v":{"items":{
                  "i":{"crsn":"east","id":"ami-1","label":"own"}}}}}}}"#,
        );
        let i = p.items().next().unwrap();
        assert_eq!(i.get("region"), Some("us-east-1"));
        assert_eq!(i.get("label"), Some("aliased"));
        assert_eq!(i.get("_aliases"), None);

        let e = parse(
            "d",
            br#"{"format":"products:1.0","content_id":"c",
                "_aliases":{"k":{"v":{"path":"../escape"}}},
                "products":{"p":{"versions":{"v":{"items":{"i":{"k":"v"}}}}}}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ParseError::UnsafePath { .. }), "{e:?}");

        let e = parse(
            "d",
            br#"{"format":"products:1.0","content_id":"c","_aliases":{"k":{"v":{}}},
                "products":{"p":{"k":"nope","versions":{}}}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ParseError::UnknownAlias { .. }), "{e:?}");
    }

    #[test]
    fn bad_trees() {
        let cases: [(&str, &str); 10] = [
            (r#""products":[]"#, "products"),
            (r#""products":{"p":1}"#, "products/p"),
            (
                r#""products":{"p":{"versions":null}}"#,
                "products/p/versions",
            ),
            (
                r#""products":{"p":{"versions":{"v":[]}}}"#,
                "products/p/versions/v",
            ),
            (
                r#""products":{"p":{"versions":{"v":{"items":"x"}}}}"#,
                "products/p/versions/v/items",
            ),
            (
                r#""products":{"p":{"versions":{"v":{"items":{"i":true}}}}}"#,
                "products/p/versions/v/items/i",
            ),
            (
                r#""products":{"p":{"versions":{"v":{"items":{"i":{"path":1}}}}}}"#,
                "products/p/versions/v/items/i/path",
            ),
            (r#""products":{}, "content_id": 5"#, "content_id"),
            (
                r#""products":{"p":{"versions":{"v":{"items":[]}}}}"#,
                "products/p/versions/v/items",
            ),
            (r#""products":{"p":[]}"#, "products/p"),
        ];
        for (body, want_at) in cases {
            let doc = format!(r#"{{"format":"products:1.0","content_id":"c",{body}}}"#);
            // (the `content_id` case relies on a duplicate key keeping the last value, as in Python)
            match parse("d", doc.as_bytes()) {
                Err(ParseError::WrongType { at, .. }) => assert_eq!(at, want_at, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let e = parse("d", br#"{"format":"products:1.0","content_id":"c"}"#).unwrap_err();
        assert!(matches!(
            e,
            ParseError::MissingField {
                field: "products",
                ..
            }
        ));
    }

    #[test]
    fn unsafe_item_paths() {
        for (path, reason) in [
            ("../x", PathReason::DotDot),
            ("/etc/passwd", PathReason::Absolute),
            ("a\u{0}b", PathReason::Nul),
            ("a\\b", PathReason::Backslash),
            ("", PathReason::Empty),
            ("a//b", PathReason::EmptyComponent),
            ("./a", PathReason::Dot),
        ] {
            let doc = serde_json::json!({"format": "products:1.0", "content_id": "c",
                "products": {"p": {"versions": {"v": {"items": {"i": {"path": path}}}}}}});
            let e = parse("prod.json", doc.to_string().as_bytes()).unwrap_err();
            match &e {
                ParseError::UnsafePath { at, source, .. } => {
                    assert_eq!(at, "products/p/versions/v/items/i/path");
                    assert_eq!(source.reason, reason, "{path:?}");
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                e.to_string(),
                "bad path in `prod.json` at `products/p/versions/v/items/i/path`"
            );
        }
    }

    #[test]
    fn empty_products_and_missing_levels() {
        let p = products(
            r#"{"format":"products:1.0","content_id":"c","products":{"a":{},"b":{"versions":{"v":{}}}}}"#,
        );
        assert_eq!(
            (p.product_count(), p.version_count(), p.item_count()),
            (2, 1, 0)
        );
        assert_eq!(p.items().count(), 0);
    }
}

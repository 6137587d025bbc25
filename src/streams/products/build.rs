//! Building a [`Products`] in one streaming pass (see the parent module's doc): the serde
//! visitors, the arena builder and Python's `str()` of scalars.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{ALGOS, Field, Kind, Known, Node, Products, Range, Span, n32};
use crate::streams::aliases;
use crate::streams::path::check_path;
use crate::streams::{ParseError, wrong_type};

/// A scalar as Python's `str()` shows it, or why it is none.
enum Scalar<'de> {
    Text(Kind, Cow<'de, str>),
    /// A non-negative integer (a `size`), spelled out without an allocation.
    UInt(u64),
    Null,
    Compound,
}

/// Up to this many distinct keys, [`Builder::key`] finds a key by scanning them.
const SCAN_KEYS: usize = 32;

/// Builds a [`Products`] while serde walks the document (or an expanded `Value`).
struct Builder<'d> {
    doc: &'d str,
    /// The document's size in bytes.
    size: usize,
    p: Products,
    key_ids: HashMap<Box<str>, u32>,
    err: Option<ParseError>,
    /// Fields of the objects being read, innermost last (moved to `p.fields` when an object
    /// ends): one vector for all levels, so reading an object allocates nothing.
    stack: Vec<Field>,
    /// Where each open object's fields start in `stack`, innermost last.
    open: Vec<usize>,
    /// The id [`Builder::key`] tries first: the one after the last key found.
    next_key: usize,
}

impl Builder<'_> {
    fn fail(&mut self, e: ParseError) {
        self.err.get_or_insert(e);
    }

    /// Append `s` to the arena. Past 4 GiB of text (only an expanded `_aliases` document can
    /// get there) the document is refused as too large.
    fn span(&mut self, s: &str) -> Span {
        let start = self.p.text.len();
        match (u32::try_from(start), u32::try_from(start + s.len())) {
            (Ok(start), Ok(_)) => {
                self.p.text.push_str(s);
                Span {
                    start,
                    len: n32(s.len()),
                }
            }
            _ => {
                let e = ParseError::ExpansionTooLarge {
                    doc: self.doc.to_owned(),
                    size: self.size,
                    limit: u64::from(u32::MAX),
                };
                self.fail(e);
                Span { start: 0, len: 0 }
            }
        }
    }

    fn key(&mut self, k: &str) -> u32 {
        // Sibling objects list their keys in the same order: the key after the last one found
        // is tried first (one comparison for most keys of a document).
        if let Some(guess) = self.p.keys.get(self.next_key)
            && **guess == *k
        {
            self.next_key += 1;
            return n32(self.next_key - 1);
        }
        let id = self.find_key(k);
        self.next_key = id as usize + 1;
        id
    }

    fn find_key(&mut self, k: &str) -> u32 {
        // A document has a few dozen distinct keys: a scan of them beats hashing every key read
        // (millions in a large document).
        if self.p.keys.len() <= SCAN_KEYS {
            if let Some(id) = self.p.keys.iter().position(|x| **x == *k) {
                return n32(id);
            }
        } else if let Some(&id) = self.key_ids.get(k) {
            return id;
        }
        let id = u32::try_from(self.p.keys.len()).unwrap_or(u32::MAX);
        self.p.keys.push(k.into());
        self.key_ids.insert(k.into(), id);
        id
    }

    fn field(&mut self, key: &str, kind: Kind, text: &str) {
        let f = Field {
            key: self.key(key),
            kind,
            value: self.span(text),
        };
        if !self.open.is_empty() {
            self.stack.push(f);
        }
    }

    /// Close the innermost object: its fields become one contiguous range.
    fn close(&mut self) -> Range {
        let level = self.open.pop().unwrap_or(self.stack.len());
        let start = n32(self.p.fields.len());
        self.p
            .fields
            .extend(self.stack.drain(level.min(self.stack.len())..));
        (start, n32(self.p.fields.len()))
    }
}

/// Which object a seed reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Products,
    Product,
    Versions,
    Version,
    Items,
    Item,
}

struct Seed<'b, 'd, 'a> {
    b: &'b mut Builder<'d>,
    level: Level,
    /// Place in the document, for errors (`products/p/versions`).
    at: At<'a>,
    name: Option<Span>,
}

/// A place in the document as a chain of borrowed names, spelled out (`products/p/versions`)
/// only when an error names it: no string is built per object read.
#[derive(Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    name: &'a str,
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            write!(f, "{parent}/")?;
        }
        f.write_str(self.name)
    }
}

/// What a seed produced: for a map of named objects, the range of its nodes.
type Children = Range;

impl<'de> DeserializeSeed<'de> for Seed<'_, '_, '_> {
    type Value = Children;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Children, D::Error> {
        d.deserialize_any(self)
    }
}

impl Seed<'_, '_, '_> {
    fn wrong(self) -> Children {
        let e = wrong_type(self.b.doc, self.at.to_string(), "a JSON object");
        self.b.fail(e);
        (0, 0)
    }
}

macro_rules! not_an_object {
    ($($f:ident: $t:ty),*) => {$(
        fn $f<E: de::Error>(self, _: $t) -> Result<Children, E> {
            Ok(self.wrong())
        }
    )*};
}

impl<'de> Visitor<'de> for Seed<'_, '_, '_> {
    type Value = Children;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    not_an_object!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);

    fn visit_unit<E: de::Error>(self) -> Result<Children, E> {
        Ok(self.wrong())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Children, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.wrong())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Children, A::Error> {
        let Seed { b, level, at, name } = self;
        let child = match level {
            Level::Products => Some(Level::Product),
            Level::Versions => Some(Level::Version),
            Level::Items => Some(Level::Item),
            _ => None,
        };
        if let Some(child) = child {
            // A map of named objects: each entry is one node of the next level.
            let list = |b: &Builder| {
                n32(match child {
                    Level::Product => b.p.products.len(),
                    Level::Version => b.p.versions.len(),
                    _ => b.p.items.len(),
                })
            };
            let start = list(b);
            while let Some(Key(k)) = map.next_key::<Key>()? {
                let name = b.span(&k);
                map.next_value_seed(Seed {
                    at: At {
                        parent: Some(&at),
                        name: &k,
                    },
                    b: &mut *b,
                    level: child,
                    name: Some(name),
                })?;
            }
            return Ok((start, list(b)));
        }
        b.open.push(b.stack.len());
        let mut children = (0, 0);
        let inner = match level {
            Level::Product => Some(("versions", Level::Versions)),
            Level::Version => Some(("items", Level::Items)),
            _ => None,
        };
        while let Some(Key(k)) = map.next_key::<Key>()? {
            if let Some((ck, cl)) = inner
                && k == ck
            {
                children = map.next_value_seed(Seed {
                    at: At {
                        parent: Some(&at),
                        name: &k,
                    },
                    b: &mut *b,
                    level: cl,
                    name: None,
                })?;
                continue;
            }
            let mut digits = [0u8; 20];
            let scalar = match map.next_value_seed(ScalarSeed)? {
                Scalar::UInt(v) => {
                    Scalar::Text(Kind::UInt, Cow::Borrowed(u64_text(v, &mut digits)))
                }
                other => other,
            };
            match scalar {
                Scalar::Text(kind, text) => {
                    if level == Level::Item && k == "path" {
                        if kind != Kind::Str {
                            b.fail(wrong_type(b.doc, format!("{at}/path"), "a string"));
                        } else if let Err(source) = check_path(&text) {
                            let e = ParseError::UnsafePath {
                                doc: b.doc.to_owned(),
                                at: format!("{at}/path"),
                                source,
                            };
                            b.fail(e);
                        }
                    }
                    b.field(&k, kind, &text);
                }
                Scalar::Compound if level == Level::Item && k == "path" => {
                    b.fail(wrong_type(b.doc, format!("{at}/path"), "a string"));
                }
                Scalar::Null | Scalar::Compound | Scalar::UInt(_) => {}
            }
        }
        let fields = b.close();
        let node = Node {
            name: name.unwrap_or(Span { start: 0, len: 0 }),
            fields,
            children,
        };
        match level {
            Level::Product => b.p.products.push(node),
            Level::Version => b.p.versions.push(node),
            _ => b.p.items.push(node),
        }
        Ok((0, 0))
    }
}

/// `v` in decimal, written into `buf`.
fn u64_text(mut v: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    while let Some(digit) = at.checked_sub(1).and_then(|i| buf.get_mut(i)) {
        *digit = b'0' + (v % 10) as u8;
        at -= 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.get(at..)
        .and_then(|d| std::str::from_utf8(d).ok())
        .unwrap_or_default()
}

/// A map key, borrowed from the input when it has no escapes (also the key of
/// `publish::check`'s compact pass).
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads one value as a [`Scalar`], skipping lists and objects.
struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
        let t = if v { "True" } else { "False" };
        Ok(Scalar::Text(Kind::Other, Cow::Borrowed(t)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::UInt(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Kind::Other, Cow::Owned(v.to_string())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Kind::Other, Cow::Owned(py_float(v))))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Kind::Str, Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Kind::Str, Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Text(Kind::Str, Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Compound)
    }
}

/// A top-level value as a `Value` if it is a scalar; a list or an object is skipped (`null`).
struct TopScalar;

impl<'de> DeserializeSeed<'de> for TopScalar {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopScalar {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        ScalarSeed.visit_seq(seq).map(|_| Value::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        ScalarSeed.visit_map(map).map(|_| Value::Null)
    }
}

/// The top level: `products` is built as it streams by; every other key is kept as a `Value`
/// (the small rest of the document: `format`, `content_id`, `_aliases`, …).
struct TopSeed<'b, 'd> {
    b: &'b mut Builder<'d>,
    rest: Map<String, Value>,
    /// `products` was present (whatever its type).
    has_products: bool,
}

impl<'de> Visitor<'de> for &mut TopSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(k)) = map.next_key::<Key>()? {
            if k == "products" {
                self.has_products = true;
                self.b.p.roots = map.next_value_seed(Seed {
                    b: &mut *self.b,
                    level: Level::Products,
                    at: At {
                        parent: None,
                        name: "products",
                    },
                    name: None,
                })?;
            } else if k == aliases::ALIASES || k == "index" {
                let v: Value = map.next_value()?;
                self.rest.insert(k.into_owned(), v);
            } else {
                // Only scalars matter here (flattening, `format`, `content_id`): a list or an
                // object is skipped, not built, so no part of a document costs a `Value` tree.
                let v = map.next_value_seed(TopScalar)?;
                self.rest.insert(k.into_owned(), v);
            }
        }
        Ok(())
    }
}

/// What [`read`] found: a products document, or the top level of something else.
pub(in crate::streams) enum Read {
    Products(Products),
    /// Not products (an index, or no/unknown `format`): the top-level object.
    Other(Map<String, Value>),
}

/// Parse a document whose top level is an object, in one streaming pass. `Err(None)` when the
/// text is not JSON or not an object (the caller reports it).
pub(in crate::streams) fn read(
    doc: &str,
    text: &str,
) -> Result<Read, Result<ParseError, serde_json::Error>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut b = builder(doc, text.len());
    let mut top = TopSeed {
        b: &mut b,
        rest: Map::new(),
        has_products: false,
    };
    use serde::Deserializer as _;
    (&mut de).deserialize_map(&mut top).map_err(Err)?;
    de.end().map_err(Err)?;
    let (rest, has_products) = (top.rest, top.has_products);
    if rest.get("format").and_then(Value::as_str) != Some(crate::streams::FORMAT_PRODUCTS) {
        return Ok(Read::Other(rest));
    }
    let content_id = content_id(doc, &rest).map_err(Ok)?;
    if rest.contains_key(aliases::ALIASES) {
        // Rare (EC2 streams): expand on a `Value` tree, bounded, then build from it.
        let Ok(Value::Object(mut whole)) = serde_json::from_str::<Value>(text) else {
            return Ok(Read::Other(rest));
        };
        aliases::expand(doc, text.len(), &mut whole).map_err(Ok)?;
        let mut b = builder(doc, text.len());
        let mut top = TopSeed {
            b: &mut b,
            rest: Map::new(),
            has_products: false,
        };
        use serde::de::Deserializer as _;
        Value::Object(whole)
            .deserialize_map(&mut top)
            .map_err(|e| {
                Ok(ParseError::NotJson {
                    doc: doc.to_owned(),
                    source: de::Error::custom(e),
                })
            })?;
        let (rest, has_products) = (top.rest, top.has_products);
        return finish(b, content_id, &rest, has_products)
            .map(Read::Products)
            .map_err(Ok);
    }
    finish(b, content_id, &rest, has_products)
        .map(Read::Products)
        .map_err(Ok)
}

fn builder(doc: &str, len: usize) -> Builder<'_> {
    let mut p = Products {
        content_id: String::new(),
        // Reserved, not touched: pages the document does not need are never resident.
        text: String::with_capacity(len),
        keys: Vec::new(),
        fields: Vec::with_capacity(len / 24),
        top: (0, 0),
        products: Vec::new(),
        versions: Vec::new(),
        items: Vec::with_capacity(len / 96),
        roots: (0, 0),
        counts: (0, 0, 0),
        known: Known::default(),
    };
    p.keys.reserve(64);
    Builder {
        doc,
        size: len,
        p,
        key_ids: HashMap::new(),
        err: None,
        stack: Vec::with_capacity(256),
        open: Vec::with_capacity(8),
        next_key: 0,
    }
}

fn content_id(doc: &str, top: &Map<String, Value>) -> Result<String, ParseError> {
    match top.get("content_id") {
        None => Err(ParseError::MissingField {
            doc: doc.to_owned(),
            field: "content_id",
        }),
        Some(Value::String(c)) => Ok(c.clone()),
        Some(_) => Err(wrong_type(doc, "content_id", "a string")),
    }
}

fn finish(
    mut b: Builder<'_>,
    content_id: String,
    rest: &Map<String, Value>,
    has_products: bool,
) -> Result<Products, ParseError> {
    if let Some(e) = b.err.take() {
        return Err(e);
    }
    if !has_products {
        return Err(ParseError::MissingField {
            doc: b.doc.to_owned(),
            field: "products",
        });
    }
    b.open.push(b.stack.len());
    for (k, v) in rest {
        if let Some(s) = py_str(v) {
            let kind = if v.is_u64() {
                Kind::UInt
            } else if v.is_string() {
                Kind::Str
            } else {
                Kind::Other
            };
            b.field(k, kind, &s);
        }
    }
    b.p.top = b.close();
    let mut p = b.p;
    p.content_id = content_id;
    let roots = Products::nodes(&p.products, p.roots);
    let versions: usize = roots
        .iter()
        .map(|n| n.children.1.saturating_sub(n.children.0) as usize)
        .sum();
    let items: usize = roots
        .iter()
        .flat_map(|n| Products::nodes(&p.versions, n.children))
        .map(|v| v.children.1.saturating_sub(v.children.0) as usize)
        .sum();
    p.counts = (roots.len(), versions, items);
    let id = |k: &str| b.key_ids.get(k).copied();
    p.known = Known {
        path: id("path"),
        size: id("size"),
        sums: ALGOS.map(|a| id(a.name())),
    };
    Ok(p)
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

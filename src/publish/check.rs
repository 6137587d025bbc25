//! The tree checker: reads a tree the way a client does (index → products documents → items),
//! from the files in the tree itself, and reports every listed item that is absent, not a
//! regular file, or of the wrong size, and every listed document that is absent.
//!
//! Protects invariant 3: publish runs it on the tree it is about to flip to and refuses an
//! incomplete one (unless told otherwise); tests run it on the published link after every kill.
//! Signatures are not checked here (the documents are the store's own or were verified at sync).
//!
//! Memory (issue 11): a products document of the usual shape (no `_aliases`, every item with its
//! own `path` and `size`) is read in one streaming pass that keeps only each item's path and
//! size ([`compact`]), not the parsed model of the whole document; an unsigned document is read
//! from the file as it streams. Anything else (an index, `_aliases`, an item inheriting its
//! `size`, a document the full parser would refuse) goes through [`streams::parse`], so the
//! rules and the errors are the same either way. A 20.6 MB products document of 100,000 items
//! peaked at ~67 MB of heap in the check (payload + model + seen paths); now its payload and
//! the item paths.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use crate::error::{Error, IoResultExt, Result};
use crate::openpgp;
use crate::streams::{self, Document};

/// How many examples of problems a check keeps.
const EXAMPLES: usize = 5;

/// What a tree's metadata lists and what is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TreeCheck {
    /// Metadata documents read.
    pub(crate) documents: usize,
    /// Distinct item paths listed.
    pub listed: usize,
    /// Listed items or documents that are absent or of the wrong size.
    pub missing: usize,
    /// The first few problems, e.g. `` `a/b` (absent) ``.
    pub(crate) examples: Vec<String>,
}

impl TreeCheck {
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    fn problem(&mut self, what: String) {
        self.missing += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what);
        }
    }
}

/// The index documents a client may start from.
pub const INDEX_NAMES: [&str; 2] = ["streams/v1/index.sjson", "streams/v1/index.json"];

/// Check the tree at (or behind the link) `root`, starting from every standard index document
/// it has (`streams/v1/index.sjson`, `streams/v1/index.json`).
pub fn check_published(root: &Path) -> Result<TreeCheck> {
    let root = fs::canonicalize(root).with_path("resolve", root)?;
    let starts: Vec<String> = INDEX_NAMES
        .iter()
        .filter(|p| root.join(p).is_file())
        .map(|p| p.to_string())
        .collect();
    if starts.is_empty() {
        return Err(Error::NoIndex {
            root,
            looked: INDEX_NAMES.map(|p| format!("`{p}`")).join(", "),
        });
    }
    check_tree(&root, &starts)
}

/// Check the tree at `root` from the documents `starts` (relative paths).
pub fn check_tree(root: &Path, starts: &[String]) -> Result<TreeCheck> {
    check_tree_with(root, starts, true)
}

/// [`check_tree`], with or without the compact pass (tests compare both).
fn check_tree_with(root: &Path, starts: &[String], compact: bool) -> Result<TreeCheck> {
    let mut check = TreeCheck::default();
    let mut seen_docs: HashSet<String> = HashSet::new();
    let mut seen_items: HashSet<String> = HashSet::new();
    let mut queue: Vec<String> = starts.iter().rev().cloned().collect();
    while let Some(rel) = queue.pop() {
        if !seen_docs.insert(rel.clone()) {
            continue;
        }
        let Some(payload) = read_document(root, &rel, &mut check)? else {
            continue;
        };
        check.documents += 1;
        if compact && products_compact(root, &payload, &mut check, &mut seen_items) {
            continue;
        }
        let payload = payload.into_bytes()?;
        match streams::parse(&rel, &payload)? {
            Document::Index(index) => {
                for entry in index.entries.iter().rev() {
                    let Some(p) = &entry.path else { continue };
                    if entry.is_followed() {
                        queue.push(p.clone());
                    } else if seen_docs.insert(p.clone()) && !is_file(root, p) {
                        check.problem(format!("`{p}` (document absent)"));
                    }
                }
            }
            Document::Products(products) => {
                for item in products.items() {
                    let Some(p) = item.path else { continue };
                    if !seen_items.insert(p.to_string()) {
                        continue;
                    }
                    check.listed += 1;
                    match fs::symlink_metadata(root.join(p)) {
                        Ok(m) if m.is_file() => {
                            if let Some(size) = item.size
                                && m.len() != size
                            {
                                check.problem(format!("`{p}` (size {}, listed {size})", m.len()));
                            }
                        }
                        Ok(_) => check.problem(format!("`{p}` (not a regular file)")),
                        Err(_) => check.problem(format!("`{p}` (absent)")),
                    }
                }
            }
        }
    }
    Ok(check)
}

fn is_file(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok_and(|m| m.is_file())
}

/// A document's JSON text: in memory (unwrapped from a clearsigned document), or the unsigned
/// file itself, read as it streams.
enum Payload {
    Text(Vec<u8>),
    File(std::path::PathBuf),
}

impl Payload {
    fn into_bytes(self) -> Result<Vec<u8>> {
        match self {
            Payload::Text(t) => Ok(t),
            Payload::File(p) => fs::read(&p).with_path("read", &p),
        }
    }
}

/// Check the items of a products document of the usual shape in one compact streaming pass
/// (see the module doc); false (nothing recorded) when the full parser must decide.
fn products_compact(
    root: &Path,
    payload: &Payload,
    check: &mut TreeCheck,
    seen_items: &mut HashSet<String>,
) -> bool {
    // What this document adds, applied only when the pass succeeds.
    let mut mine = TreeCheck::default();
    let mut new_items: HashSet<String> = HashSet::new();
    let mut on_item = |p: &str, size: Option<u64>| {
        if seen_items.contains(p) || !new_items.insert(p.to_string()) {
            return;
        }
        mine.listed += 1;
        match fs::symlink_metadata(root.join(p)) {
            Ok(m) if m.is_file() => {
                if let Some(size) = size
                    && m.len() != size
                {
                    mine.problem(format!("`{p}` (size {}, listed {size})", m.len()));
                }
            }
            Ok(_) => mine.problem(format!("`{p}` (not a regular file)")),
            Err(_) => mine.problem(format!("`{p}` (absent)")),
        }
    };
    let done = match payload {
        Payload::Text(t) => std::str::from_utf8(t).ok().is_some_and(|t| {
            compact::items(&mut serde_json::Deserializer::from_str(t), &mut on_item)
        }),
        Payload::File(p) => match fs::File::open(p) {
            Ok(f) => {
                let r = std::io::BufReader::with_capacity(256 << 10, f);
                compact::items(&mut serde_json::Deserializer::from_reader(r), &mut on_item)
            }
            Err(_) => false,
        },
    };
    if !done {
        return false;
    }
    check.listed += mine.listed;
    let beyond = mine.missing - mine.examples.len();
    for e in mine.examples {
        check.problem(e);
    }
    check.missing += beyond;
    seen_items.extend(new_items);
    true
}

/// The JSON text of a document of the tree (unwrapped when clearsigned); `None` when absent.
fn read_document(root: &Path, rel: &str, check: &mut TreeCheck) -> Result<Option<Payload>> {
    streams::check_path(rel).map_err(|source| {
        Error::Parse(streams::ParseError::UnsafePath {
            doc: root.display().to_string(),
            at: rel.to_string(),
            source,
        })
    })?;
    let path = root.join(rel);
    if !is_file(root, rel) {
        check.problem(format!("`{rel}` (document absent)"));
        return Ok(None);
    }
    if !starts_clearsigned(&path)? {
        return Ok(Some(Payload::File(path)));
    }
    let bytes = fs::read(&path).with_path("read", &path)?;
    if openpgp::is_clearsigned(&bytes) {
        let payload = openpgp::unwrap_cleartext(&bytes).map_err(|e| Error::Signature {
            url: path.display().to_string(),
            source: e,
        })?;
        return Ok(Some(Payload::Text(payload)));
    }
    Ok(Some(Payload::Text(bytes)))
}

/// Whether the file may be clearsigned (its first bytes say so, as [`openpgp::is_clearsigned`]
/// reads them); an unsigned one is then read as it streams.
fn starts_clearsigned(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(256);
    fs::File::open(path)
        .and_then(|f| f.take(256).read_to_end(&mut head))
        .with_path("read", path)?;
    Ok(openpgp::is_clearsigned(&head))
}

#[cfg(test)]
mod tests;

/// The compact pass over a products document (see the module doc): calls `f(path, size)` for
/// each item with a `path`, `size` being the item's own `size` when it is a non-negative
/// integer. False as soon as the document is not of the usual shape: not `products:1.0`, no
/// `content_id` or `products`, `_aliases` or `index`, a level that is not an object, a
/// repeated `products`/`versions`/`items`/`path`/`size`, a `path` that is not a safe string,
/// an item with a `path` but no `size` of its own (it would inherit one). The caller then lets
/// the full parser decide, so nothing `f` saw may have been kept.
mod compact {
    use std::borrow::Cow;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};

    use crate::streams::{FORMAT_PRODUCTS, JsonKey as Key, check_path};

    /// Not the usual shape: stop here, the full parser decides.
    const BAIL: &str = "not the compact shape";

    pub(super) fn items<'de, R: serde_json::de::Read<'de>>(
        de: &mut serde_json::Deserializer<R>,
        f: &mut dyn FnMut(&str, Option<u64>),
    ) -> bool {
        let top = (&mut *de).deserialize_map(Top { f });
        matches!(top, Ok(true)) && de.end().is_ok()
    }

    fn bail<E: de::Error>() -> E {
        E::custom(BAIL)
    }

    /// A scalar the pass looks at: a string, a non-negative integer, `null`, or anything else.
    enum Scalar<'de> {
        Str(Cow<'de, str>),
        UInt(u64),
        Null,
        /// Another scalar (a boolean, a negative or fractional number).
        Other,
        /// A list or an object.
        Compound,
    }

    impl<'de> de::Deserialize<'de> for Scalar<'de> {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Scalar<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a value")
                }
                fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Str(Cow::Borrowed(s)))
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Str(Cow::Owned(s.to_owned())))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::UInt(v))
                }
                fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Other)
                }
                fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Other)
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Other)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
                    Ok(Scalar::Null)
                }
                fn visit_seq<A: de::SeqAccess<'de>>(
                    self,
                    mut s: A,
                ) -> Result<Scalar<'de>, A::Error> {
                    while s.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Scalar::Compound)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Scalar<'de>, A::Error> {
                    while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Scalar::Compound)
                }
            }
            d.deserialize_any(V)
        }
    }

    /// The top level: true when it is a products document of the usual shape.
    struct Top<'f> {
        f: &'f mut dyn FnMut(&str, Option<u64>),
    }

    impl<'de> Visitor<'de> for Top<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let (mut products, mut format, mut content_id) = (false, false, false);
            while let Some(Key(k)) = map.next_key::<Key>()? {
                match &*k {
                    "products" if !products => {
                        products = true;
                        map.next_value_seed(Level {
                            depth: 0,
                            f: &mut *self.f,
                        })?;
                    }
                    "products" | "_aliases" | "index" => return Err(bail()),
                    "format" => {
                        format = matches!(map.next_value::<Scalar>()?,
                            Scalar::Str(s) if s == FORMAT_PRODUCTS);
                    }
                    "content_id" => {
                        content_id = matches!(map.next_value::<Scalar>()?, Scalar::Str(_));
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(products && format && content_id)
        }
    }

    /// A level of the tree: 0 `products`, 1 a product, 2 `versions`, 3 a version, 4 `items`,
    /// 5 an item.
    struct Level<'f> {
        depth: u8,
        f: &'f mut dyn FnMut(&str, Option<u64>),
    }

    impl<'de> DeserializeSeed<'de> for Level<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Level<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let Level { depth, f } = self;
            match depth {
                // A map of named objects: each entry is one node of the next level.
                0 | 2 | 4 => {
                    while map.next_key::<IgnoredAny>()?.is_some() {
                        map.next_value_seed(Level {
                            depth: depth + 1,
                            f: &mut *f,
                        })?;
                    }
                }
                // A product or a version: its children under `versions` / `items`.
                1 | 3 => {
                    let inner = if depth == 1 { "versions" } else { "items" };
                    let mut seen = false;
                    while let Some(Key(k)) = map.next_key::<Key>()? {
                        if k == inner {
                            if seen {
                                return Err(bail());
                            }
                            seen = true;
                            map.next_value_seed(Level {
                                depth: depth + 1,
                                f: &mut *f,
                            })?;
                        } else {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                // An item: its own `path` and `size`.
                _ => {
                    let (mut path, mut size): (Option<Cow<str>>, Option<Option<u64>>) =
                        (None, None);
                    let mut path_seen = false;
                    while let Some(Key(k)) = map.next_key::<Key>()? {
                        match &*k {
                            "path" if !path_seen => {
                                path_seen = true;
                                match map.next_value::<Scalar>()? {
                                    Scalar::Str(p) if check_path(&p).is_ok() => path = Some(p),
                                    Scalar::Null => {}
                                    _ => return Err(bail()),
                                }
                            }
                            "size" if size.is_none() => {
                                size = match map.next_value::<Scalar>()? {
                                    Scalar::UInt(n) => Some(Some(n)),
                                    Scalar::Str(_) | Scalar::Other => Some(None),
                                    // Not a field: the item would inherit a `size`.
                                    Scalar::Null | Scalar::Compound => return Err(bail()),
                                };
                            }
                            "path" | "size" => return Err(bail()),
                            _ => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    if let Some(p) = path {
                        let Some(size) = size else {
                            return Err(bail());
                        };
                        f(&p, size);
                    }
                }
            }
            Ok(())
        }
    }
}

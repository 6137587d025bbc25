//! The `products:1.0` document (spec §1.3) and the flattened view of its items (spec §1.5).
//!
//! Protects invariant 5: a [`Products`] only exists after `_aliases` were expanded and every
//! item `path` passed [`check_path`]; so every [`FlatItem::path`] is safe. The tree shape
//! (objects for `products`, `versions`, `items` and their entries) is checked at parse time too.
//!
//! The flattened view of an item is `top ∪ product ∪ {product_name} ∪ version ∪ {version_name}
//! ∪ item ∪ {item_name}`, inner levels overriding outer ones; only scalars take part, converted
//! as Python's `str()` does (`True`, `1.5e-07`, …); lists, objects and `null` are left out.
//!
//! Memory (issue 8 item 4): a document is read in one streaming pass (no `serde_json::Value`
//! tree) into a compact model: every scalar of the four levels is one text span in one arena,
//! keys are interned, and the levels are flat vectors. The flattened view is never copied: a
//! [`FlatItem`] looks each key up through the levels of its item, so an inherited field is
//! stored once however many items inherit it. A sync reads what it needs of every item (path,
//! size, strongest checksum: [`Products::facts`]) by the document's interned key ids, without
//! a [`FlatItem`] or a string (issue 13 item 5). Only `_aliases` copy values into objects (as
//! upstream does); that copy is bounded by [`aliases`]: a document that would expand beyond 64
//! times its size (or 8 GiB) is refused with [`ParseError::ExpansionTooLarge`].
//! The streaming builder (serde visitors, the arena, Python's `str()` of scalars) is `build`;
//! this file holds the model and the flattened view.
//! Deviation on broken input only: a name repeated among its siblings (`{"p":…,"p":…}`) keeps
//! both entries (Python's `json` keeps the last).

use crate::checksum::{Algo, Checksums};

/// Where a scalar's text lives in [`Products::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// What a scalar was in JSON (only a non-negative integer is a `size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    UInt,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    key: u32,
    kind: Kind,
    value: Span,
}

/// A range of indices into one of the vectors of [`Products`] (u32 keeps the model compact; a
/// document too large for it is refused, see [`Builder::span`]).
type Range = (u32, u32);

/// `n` as a u32 index, saturating (only a document refused for its size gets there).
fn n32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A product, version or item: its name, its scalars, its children (ranges into the vectors).
#[derive(Debug, Clone, Copy)]
struct Node {
    name: Span,
    fields: Range,
    children: Range,
}

/// A parsed products document, `_aliases` expanded, in a compact form (see the module doc).
#[derive(Debug, Clone)]
pub struct Products {
    content_id: String,
    text: String,
    keys: Vec<Box<str>>,
    fields: Vec<Field>,
    top: Range,
    products: Vec<Node>,
    versions: Vec<Node>,
    items: Vec<Node>,
    /// The top-level `products` range of `products` (the last `products` key wins).
    roots: Range,
    counts: (usize, usize, usize),
    /// Interned ids of the keys read for every item (see [`Known`]).
    known: Known,
}

/// The interned ids of the keys a sync reads for every item (`path`, `size`, the checksums),
/// resolved once per document: an item's lookup then compares integers, not key text (issue 13
/// item 5). `None` when no field of the document has that key.
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    path: Option<u32>,
    size: Option<u32>,
    /// `md5`, `sha256`, `sha512`, in [`ALGOS`] order.
    sums: [Option<u32>; 3],
}

/// The checksum algorithms of the flattened view, weakest first.
const ALGOS: [Algo; 3] = [Algo::Md5, Algo::Sha256, Algo::Sha512];

impl Products {
    /// The document's own `content_id` (the one that counts, spec §1.2).
    pub fn content_id(&self) -> &str {
        &self.content_id
    }

    /// Number of products.
    pub fn product_count(&self) -> usize {
        self.counts.0
    }

    /// Number of versions, over all products.
    pub fn version_count(&self) -> usize {
        self.counts.1
    }

    /// Number of items, over all versions.
    pub fn item_count(&self) -> usize {
        self.counts.2
    }

    /// A top-level field as text (e.g. `updated`), the last one if the key repeats; `None`
    /// when absent.
    pub fn top_field(&self, key: &str) -> Option<&str> {
        self.level(self.top)
            .iter()
            .rev()
            .find(|x| self.keys.get(x.key as usize).is_some_and(|k| &**k == key))
            .map(|x| self.str(x.value))
    }

    fn str(&self, s: Span) -> &str {
        let start = s.start as usize;
        self.text
            .get(start..start + s.len as usize)
            .unwrap_or_default()
    }

    fn level(&self, range: Range) -> &[Field] {
        self.fields
            .get(range.0 as usize..range.1 as usize)
            .unwrap_or_default()
    }

    fn nodes(list: &[Node], range: Range) -> &[Node] {
        list.get(range.0 as usize..range.1 as usize)
            .unwrap_or_default()
    }

    /// Every item, flattened, in document order (product, then version, then item).
    pub fn items(&self) -> impl Iterator<Item = FlatItem<'_>> + '_ {
        (self.roots.0..self.roots.1).flat_map(move |p| {
            let pn = self.products.get(p as usize).map_or((0, 0), |n| n.children);
            (pn.0..pn.1).flat_map(move |v| {
                let vn = self.versions.get(v as usize).map_or((0, 0), |n| n.children);
                (vn.0..vn.1).map(move |i| FlatItem::new(self, [p, v, i]))
            })
        })
    }

    /// Every item's handle, in the order of [`Products::items`], without flattening any.
    pub fn item_ats(&self) -> impl Iterator<Item = ItemAt> + '_ {
        (self.roots.0..self.roots.1).flat_map(move |p| {
            let pn = self.products.get(p as usize).map_or((0, 0), |n| n.children);
            (pn.0..pn.1).flat_map(move |v| {
                let vn = self.versions.get(v as usize).map_or((0, 0), |n| n.children);
                (vn.0..vn.1).map(move |i| ItemAt([p, v, i]))
            })
        })
    }

    /// The fields of one level of an item: 0 top, 1 product, 2 version, 3 item.
    fn level_of(&self, nodes: [u32; 3], level: usize) -> &[Field] {
        let node = |list: &[Node], i: u32| list.get(i as usize).map_or((0, 0), |n| n.fields);
        let range = match level {
            0 => self.top,
            1 => node(&self.products, nodes[0]),
            2 => node(&self.versions, nodes[1]),
            _ => node(&self.items, nodes[2]),
        };
        self.level(range)
    }

    fn name_of(&self, list: &[Node], i: u32) -> &str {
        list.get(i as usize).map_or("", |n| self.str(n.name))
    }

    /// The last field with key id `key` at one level of an item.
    fn find_id(&self, nodes: [u32; 3], level: usize, key: u32) -> Option<&Field> {
        self.level_of(nodes, level)
            .iter()
            .rev()
            .find(|x| x.key == key)
    }

    /// The field that wins for key id `key` in the flattened view (item, version, product, top;
    /// never one of the synthetic `*_name` keys).
    fn winner_id(&self, nodes: [u32; 3], key: Option<u32>) -> Option<&Field> {
        let key = key?;
        (0..4)
            .rev()
            .find_map(|level| self.find_id(nodes, level, key))
    }

    /// The item's own `path` (item level only), if a string.
    fn path_of(&self, nodes: [u32; 3]) -> Option<&str> {
        let key = self.known.path?;
        self.level_of(nodes, 3)
            .iter()
            .rev()
            .find(|x| x.kind == Kind::Str && x.key == key)
            .map(|x| self.str(x.value))
    }

    /// The flattened `size`, when the value that won is a non-negative JSON integer.
    fn size_of(&self, nodes: [u32; 3]) -> Option<u64> {
        match self.winner_id(nodes, self.known.size) {
            Some(x) if x.kind == Kind::UInt => self.str(x.value).parse().ok(),
            _ => None,
        }
    }

    /// The flattened checksum of `algo`, as written (not lowercased).
    fn sum_of(&self, nodes: [u32; 3], algo: Algo) -> Option<&str> {
        let i = ALGOS.iter().position(|&a| a == algo)?;
        let key = self.known.sums.get(i).copied().flatten();
        self.winner_id(nodes, key).map(|x| self.str(x.value))
    }
}

/// What a sync reads of an item for its plan and report, borrowed from the document without
/// building its [`FlatItem`] (no allocation): [`Products::facts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemFacts<'a> {
    /// As [`FlatItem::path`].
    pub path: Option<&'a str>,
    /// As [`FlatItem::size`].
    pub size: Option<u64>,
    /// The strongest checksum of the flattened view ([`Checksums::strongest`] of
    /// [`FlatItem::checksums`]), its hex as written in the document (maybe uppercase).
    pub strongest: Option<(Algo, &'a str)>,
}

/// Where one item sits in its [`Products`] (product, version and item node): a 12-byte handle
/// a caller may keep instead of the item's text, and turn back into the item with
/// [`Products::item`] or [`Products::item_names`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemAt([u32; 3]);

impl Products {
    /// The item at `at` (from [`FlatItem::at`] on this document), flattened again.
    pub fn item(&self, at: ItemAt) -> FlatItem<'_> {
        FlatItem::new(self, at.0)
    }

    /// The path, size and strongest checksum of the item at `at`, without its [`FlatItem`].
    pub fn facts(&self, at: ItemAt) -> ItemFacts<'_> {
        let n = at.0;
        ItemFacts {
            path: self.path_of(n),
            size: self.size_of(n),
            strongest: ALGOS
                .iter()
                .rev()
                .find_map(|&a| self.sum_of(n, a).map(|v| (a, v))),
        }
    }

    /// The flattened view's `path` of the item at `at` (`get("path")`: inherited too, any
    /// scalar; [`ItemFacts::path`] is the item's own), found by its interned key.
    pub fn flat_path(&self, at: ItemAt) -> Option<&str> {
        self.winner_id(at.0, self.known.path)
            .map(|x| self.str(x.value))
    }

    /// The item at `at` as far as a filter reads it ([`FlatItem::get`]): its `path`, `size`
    /// and `checksums` are left unset, so no checksum string is made for an item a filter
    /// drops.
    pub(super) fn item_for_filter(&self, at: ItemAt) -> FlatItem<'_> {
        FlatItem::named(self, at.0)
    }

    /// The checksums of the item at `at`, lowercased (as [`FlatItem::checksums`]).
    pub fn checksums(&self, at: ItemAt) -> Checksums {
        let mut c = Checksums::default();
        for algo in ALGOS {
            if let Some(v) = self.sum_of(at.0, algo) {
                c.set(algo, v.to_ascii_lowercase());
            }
        }
        c
    }

    /// The product, version and item names of the item at `at`, without the rest of its view.
    pub fn item_names(&self, at: ItemAt) -> (&str, &str, &str) {
        let [p, v, i] = at.0;
        (
            self.name_of(&self.products, p),
            self.name_of(&self.versions, v),
            self.name_of(&self.items, i),
        )
    }
}

/// One item with its inherited fields (spec §1.5): what filters see. Borrowed from its
/// [`Products`]: looking a key up walks the levels, nothing is copied.
#[derive(Debug, Clone)]
pub struct FlatItem<'a> {
    pub product: &'a str,
    pub version: &'a str,
    pub item: &'a str,
    /// The item's own `path` (only the item level counts, as upstream), checked safe.
    pub path: Option<&'a str>,
    /// `size` of the flattened view, when the value that won is a non-negative JSON integer.
    pub size: Option<u64>,
    /// `md5`/`sha256`/`sha512` of the flattened view, lowercased.
    pub checksums: Checksums,
    doc: &'a Products,
    /// Indices of the product, version and item nodes (the levels are looked up through them).
    nodes: [u32; 3],
}

impl PartialEq for FlatItem<'_> {
    fn eq(&self, o: &Self) -> bool {
        std::ptr::eq(self.doc, o.doc)
            && (self.product, self.version, self.item, self.path, self.size)
                == (o.product, o.version, o.item, o.path, o.size)
            && self.checksums == o.checksums
    }
}

/// The value that wins for a key: a synthetic `*_name` or a field.
enum Winner<'a> {
    Name(&'a str),
    Field(&'a Field),
}

impl<'a> FlatItem<'a> {
    fn new(doc: &'a Products, nodes: [u32; 3]) -> Self {
        let mut f = FlatItem::named(doc, nodes);
        f.path = doc.path_of(nodes);
        f.size = doc.size_of(nodes);
        f.checksums = doc.checksums(ItemAt(nodes));
        f
    }

    /// The names only (what [`FlatItem::get`] needs).
    fn named(doc: &'a Products, nodes: [u32; 3]) -> Self {
        FlatItem {
            product: doc.name_of(&doc.products, nodes[0]),
            version: doc.name_of(&doc.versions, nodes[1]),
            item: doc.name_of(&doc.items, nodes[2]),
            path: None,
            size: None,
            checksums: Checksums::default(),
            doc,
            nodes,
        }
    }

    /// Where this item sits in its document (see [`ItemAt`]).
    pub fn at(&self) -> ItemAt {
        ItemAt(self.nodes)
    }

    fn find(&self, level: usize, key: &str) -> Option<&'a Field> {
        let doc = self.doc;
        doc.level_of(self.nodes, level)
            .iter()
            .rev()
            .find(|x| doc.keys.get(x.key as usize).is_some_and(|k| &**k == key))
    }

    fn winner(&self, key: &str) -> Option<Winner<'a>> {
        let named = [
            ("item_name", self.item),
            ("version_name", self.version),
            ("product_name", self.product),
        ];
        for (n, (synthetic, name)) in named.into_iter().enumerate() {
            if key == synthetic {
                return Some(Winner::Name(name));
            }
            if let Some(x) = self.find(3 - n, key) {
                return Some(Winner::Field(x));
            }
        }
        self.find(0, key).map(Winner::Field)
    }

    /// `get("path")`: the flattened view's `path` (inherited too, any scalar), found by its
    /// interned key.
    pub fn flat_path(&self) -> Option<&'a str> {
        self.doc.flat_path(ItemAt(self.nodes))
    }

    /// A field of the flattened view (what a filter compares).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        match self.winner(key)? {
            Winner::Name(n) => Some(n),
            Winner::Field(x) => Some(self.doc.str(x.value)),
        }
    }

    /// Every field of the flattened view, sorted by key.
    pub fn fields(&self) -> std::collections::BTreeMap<&'a str, &'a str> {
        let mut out = std::collections::BTreeMap::new();
        for level in 0..4 {
            for x in self.doc.level_of(self.nodes, level) {
                if let Some(k) = self.doc.keys.get(x.key as usize) {
                    out.insert(&**k, self.doc.str(x.value));
                }
            }
        }
        for k in ["product_name", "version_name", "item_name"] {
            if let Some(v) = self.get(k) {
                out.insert(k, v);
            }
        }
        out
    }
}

mod build;
pub(crate) use build::Key as JsonKey;
#[cfg(test)]
use build::py_str;
pub(super) use build::{Read, read};

#[cfg(test)]
mod tests;

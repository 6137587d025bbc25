//! Expansion of `_aliases` in a products document (upstream `util.expand_tree`, spec §1.5).
//!
//! The top-level `"_aliases": {name: {value: {k: v, …}}}` is a table of shorthands: any object
//! anywhere in the tree that has a key `name` with a non-empty string `value` gets the entries
//! of `_aliases[name][value]` merged into it, overriding its own. An unknown value is an error
//! (upstream crashes with `KeyError`). Protects invariant 7: self-referencing or exponentially
//! growing alias tables, which make upstream recurse forever, end in
//! [`ParseError::AliasesTooLarge`] here, thanks to a depth limit and a budget of copied nodes;
//! and what the merges copy in (the JSON size of every merged entry, counted at each merge) may
//! not pass 64 times the document's size, at most 8 GiB: [`ParseError::ExpansionTooLarge`]
//! (issue 8 item 4: a 1 MiB entry merged into 1,500 items is 1.5 GiB for a 1.2 MB document).
//!
//! Differences from upstream, all on pathological input only: the table is read once before
//! expansion (upstream also expands inside `_aliases` itself and so may change the table while it
//! uses it), and a non-object table entry is an error (upstream accepts some of them, e.g. `""`).

use serde_json::{Map, Value};

use super::ParseError;

/// The key of the alias table.
pub(super) const ALIASES: &str = "_aliases";

/// Deepest nesting the expansion will walk (the input itself is at most 128 deep, serde's limit).
const MAX_DEPTH: usize = 256;

/// Work allowed (nodes visited plus nodes copied from the alias table): this many per node of
/// the input, plus a base. Real alias tables add a couple of keys per item (under 2x).
const WORK_PER_INPUT_NODE: usize = 4;
const WORK_BASE: usize = 250_000;

/// What one document may expand to: this many times its own size, and never more than
/// [`MAX_EXPANDED`] (issue 8 item 4).
pub(super) const EXPANSION_FACTOR: u64 = 64;
pub(super) const MAX_EXPANDED: u64 = 8 << 30;

/// The expansion budget, in bytes, of a document of `size` bytes.
pub(super) fn expansion_limit(size: usize) -> u64 {
    (size as u64)
        .saturating_mul(EXPANSION_FACTOR)
        .min(MAX_EXPANDED)
}

/// Expand `_aliases` in place in the top-level object of a products document of `size` bytes.
/// Besides the work budget, the bytes copied in (JSON size of every merged entry, counted at
/// each merge) may not pass [`expansion_limit`]: [`ParseError::ExpansionTooLarge`].
pub(super) fn expand(
    doc: &str,
    size: usize,
    top: &mut Map<String, Value>,
) -> Result<(), ParseError> {
    let Some(Value::Object(table)) = top.get(ALIASES) else {
        return Ok(());
    };
    let table = table.clone();
    let input_nodes = top
        .values()
        .map(|v| count_nodes(v, usize::MAX))
        .fold(1usize, usize::saturating_add);
    let mut x = Expander {
        doc,
        size,
        bytes: size as u64,
        max_bytes: expansion_limit(size),
        table: &table,
        work: 0,
        max_work: input_nodes
            .saturating_mul(WORK_PER_INPUT_NODE)
            .saturating_add(WORK_BASE),
    };
    x.object(top, 0, true)
}

struct Expander<'a> {
    doc: &'a str,
    size: usize,
    bytes: u64,
    max_bytes: u64,
    table: &'a Map<String, Value>,
    work: usize,
    max_work: usize,
}

impl Expander<'_> {
    fn charge(&mut self, n: usize) -> Result<(), ParseError> {
        self.work = self.work.saturating_add(n);
        if self.work > self.max_work {
            return Err(self.too_large());
        }
        Ok(())
    }

    fn too_large(&self) -> ParseError {
        ParseError::AliasesTooLarge {
            doc: self.doc.to_owned(),
        }
    }

    fn value(&mut self, v: &mut Value, depth: usize) -> Result<(), ParseError> {
        match v {
            Value::Object(m) => self.object(m, depth, false),
            Value::Array(a) => {
                self.charge(1)?;
                if depth > MAX_DEPTH {
                    return Err(self.too_large());
                }
                a.iter_mut().try_for_each(|e| self.value(e, depth + 1))
            }
            _ => Ok(()),
        }
    }

    fn object(
        &mut self,
        map: &mut Map<String, Value>,
        depth: usize,
        top: bool,
    ) -> Result<(), ParseError> {
        self.charge(1)?;
        if depth > MAX_DEPTH {
            return Err(self.too_large());
        }
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if key == ALIASES {
                continue;
            }
            let Some(aliases) = self.table.get(&key).filter(|r| truthy(r)) else {
                continue;
            };
            // Read the value now: an earlier merge of this same object may have changed it.
            let value = match map.get(&key) {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => continue,
            };
            let bad = || ParseError::BadAlias {
                doc: self.doc.to_owned(),
                name: key.clone(),
                value: value.clone(),
            };
            let Value::Object(aliases) = aliases else {
                return Err(bad());
            };
            let Some(target) = aliases.get(&value) else {
                return Err(ParseError::UnknownAlias {
                    doc: self.doc.to_owned(),
                    name: key.clone(),
                    value,
                });
            };
            let Value::Object(target) = target else {
                return Err(bad());
            };
            let remaining = self.max_work.saturating_sub(self.work);
            self.charge(count_nodes_map(target, remaining))?;
            self.bytes = self.bytes.saturating_add(json_size_map(target));
            if self.bytes > self.max_bytes {
                return Err(ParseError::ExpansionTooLarge {
                    doc: self.doc.to_owned(),
                    size: self.size,
                    limit: self.max_bytes,
                });
            }
            for (k, v) in target {
                map.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in map.iter_mut() {
            if top && k == ALIASES {
                continue;
            }
            self.value(v, depth + 1)?;
        }
        Ok(())
    }
}

/// Python truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// Number of JSON nodes in `v` (itself included); counting stops past `limit`.
fn count_nodes(v: &Value, limit: usize) -> usize {
    let mut n = 0usize;
    let mut stack: Vec<&Value> = vec![v];
    while let Some(v) = stack.pop() {
        n += 1;
        if n > limit {
            return n;
        }
        match v {
            Value::Object(o) => stack.extend(o.values()),
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    n
}

/// About the JSON size of an object's entries (strings and keys by length, 8 bytes a scalar
/// or a bracket); walks nodes, never the bytes of a string.
fn json_size_map(m: &Map<String, Value>) -> u64 {
    let mut n = 2u64;
    let mut stack: Vec<&Value> = Vec::new();
    for (k, v) in m {
        n = n.saturating_add(k.len() as u64 + 4);
        stack.push(v);
    }
    while let Some(v) = stack.pop() {
        n = n.saturating_add(match v {
            Value::String(s) => s.len() as u64 + 2,
            Value::Object(o) => {
                for (k, v) in o {
                    n = n.saturating_add(k.len() as u64 + 4);
                    stack.push(v);
                }
                2
            }
            Value::Array(a) => {
                stack.extend(a.iter());
                2
            }
            _ => 8,
        });
    }
    n
}

/// [`count_nodes`] of an object given as its map.
fn count_nodes_map(m: &Map<String, Value>, limit: usize) -> usize {
    m.values()
        .map(|v| count_nodes(v, limit))
        .fold(1usize, usize::saturating_add)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::expand;
    use crate::streams::ParseError;

    fn expanded(v: Value) -> Result<Value, ParseError> {
        let Value::Object(mut m) = v else { panic!() };
        let size = serde_json::to_string(&m).map(|s| s.len()).unwrap_or(0);
        expand("doc", size, &mut m)?;
        Ok(Value::Object(m))
    }

    #[test]
    fn merges_everywhere_and_overrides() {
        let out = expanded(json!({
            "_aliases": {"crsn": {"us-east-1": {"region": "us-east-1", "endpoint": "https://e1",
                                                "id": "from-alias"}}},
            "products": {"p": {"versions": {"v": {"items": {
                "i": {"crsn": "us-east-1", "id": "ami-1", "path": "x"},
                "j": {"crsn": ""},
                "k": {"other": [{"crsn": "us-east-1"}]}
            }}}}}
        }))
        .unwrap();
        let items = &out["products"]["p"]["versions"]["v"]["items"];
        assert_eq!(items["i"]["region"], "us-east-1");
        assert_eq!(items["i"]["endpoint"], "https://e1");
        // the alias overrides the object's own value (upstream `dict.update`)
        assert_eq!(items["i"]["id"], "from-alias");
        assert_eq!(items["j"], json!({"crsn": ""}));
        assert_eq!(items["k"]["other"][0]["region"], "us-east-1");
        // key order: own keys first, merged new keys appended
        let keys: Vec<_> = items["i"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["crsn", "id", "path", "region", "endpoint"]);
    }

    #[test]
    fn applies_at_top_level_and_ignores_non_table() {
        let out = expanded(json!({"_aliases": {"a": {"x": {"k": "v"}}}, "a": "x"})).unwrap();
        assert_eq!(out["k"], "v");
        let v = json!({"_aliases": "nope", "a": "x"});
        assert_eq!(expanded(v.clone()).unwrap(), v);
        let v = json!({"_aliases": {"a": {}}, "a": "x"});
        assert_eq!(expanded(v.clone()).unwrap(), v);
    }

    #[test]
    fn unknown_and_bad_values_are_errors() {
        let e = expanded(json!({"_aliases": {"a": {"x": {}}}, "p": {"a": "y"}})).unwrap_err();
        assert!(
            matches!(&e, ParseError::UnknownAlias { name, value, .. } if name == "a" && value == "y")
        );
        assert_eq!(
            e.to_string(),
            "`a` = `y` in `doc` names no entry of `_aliases`"
        );
        let e = expanded(json!({"_aliases": {"a": {"x": 3}}, "p": {"a": "x"}})).unwrap_err();
        assert!(matches!(e, ParseError::BadAlias { .. }));
        let e = expanded(json!({"_aliases": {"a": ["x"]}, "p": {"a": "x"}})).unwrap_err();
        assert!(matches!(e, ParseError::BadAlias { .. }));
    }

    #[test]
    fn cycles_and_bombs_stop() {
        // `a: x` brings a child that again says `a: x`: upstream recurses forever.
        let e = expanded(json!({"_aliases": {"a": {"x": {"c": {"a": "x"}}}}, "a": "x"}));
        assert!(matches!(
            e,
            Err(ParseError::AliasesTooLarge { .. } | ParseError::ExpansionTooLarge { .. })
        ));
        // Each level doubles: 2^40 nodes if nothing stopped it.
        let mut table = serde_json::Map::new();
        for i in 0..40 {
            let next = format!("l{}", i + 1);
            table.insert(
                format!("l{i}"),
                json!({"x": {"l": [{&next: "x"}, {&next: "x"}]}}),
            );
        }
        let e = expanded(json!({"_aliases": table, "l0": "x"}));
        assert!(matches!(
            e,
            Err(ParseError::AliasesTooLarge { .. } | ParseError::ExpansionTooLarge { .. })
        ));
    }

    /// A 1 MiB alias entry merged into 100 items would copy 100 MiB out of a ~1 MiB document:
    /// refused (64x), with one line naming the document.
    #[test]
    fn amplification_is_refused() {
        let big = "x".repeat(1 << 20);
        let items: serde_json::Map<String, Value> = (0..100)
            .map(|i| {
                (
                    format!("i{i}"),
                    json!({"a": "big", "path": format!("f{i}")}),
                )
            })
            .collect();
        let e = expanded(json!({"_aliases": {"a": {"big": {"blob": big}}},
            "products": {"p": {"versions": {"v": {"items": items}}}}}))
        .unwrap_err();
        assert!(matches!(e, ParseError::ExpansionTooLarge { .. }), "{e:?}");
        let line = e.to_string();
        assert!(line.starts_with("`doc` ("), "{line}");
        assert!(line.contains("64 times its size"), "{line}");
        // A few merges of the same entry stay well within the budget.
        let ok = expanded(
            json!({"_aliases": {"a": {"big": {"blob": "x".repeat(1 << 20)}}},
            "products": {"p": {"a": "big"}, "q": {"a": "big"}}}),
        );
        assert!(ok.is_ok());
    }
}

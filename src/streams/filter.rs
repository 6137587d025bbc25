//! Item filters, as `sstream-mirror` takes them on its command line (spec §2.2).
//!
//! Grammar, anchored at the start as Python's `re.match(r"([\w|-]+)[ ]*([!]{0,1}[=~])[ ]*(.*)[ ]*$")`:
//! a KEY of Unicode word characters, `|` and `-`; spaces; an operator `=`, `!=`, `~` or `!~`;
//! spaces; the VALUE is the rest, leading spaces dropped and **trailing spaces kept**
//! (`arch=amd64 ` matches nothing). As in Python, the value cannot hold a newline except one
//! at the very end, which is dropped. `=`/`!=` compare strings exactly (`size=2500` works on the
//! flattened view); `~`/`!~` are an **unanchored** regular-expression search (`release~jam`
//! matches `jammy`). A key the item lacks reads as `""`, so `release!~.` keeps items without a
//! `release`. Several filters are ANDed ([`Filters`]).
//!
//! A source holds **filter groups** ([`FilterGroups`]): an item is taken when it passes every
//! filter of at least one group (an OR of ANDs). They are written as one list in which the token
//! `--or` ([`OR`]) separates groups: `arch=amd64 release~(jammy|noble) --or os~(grub*|pxelinux)`
//! takes amd64 jammy/noble images and every grub/pxelinux bootloader. `--or` can never be a
//! filter (it has no operator), so the list reads back unambiguously; a list without it is one
//! group, as in the catalogue rows written before groups existed. An empty group is an error.
//!
//! Protects invariant 7: a bad expression or regex is a [`FilterError`], found when the filter is
//! parsed (before any network access), never a panic; huge patterns are refused by a length
//! limit and by fancy-regex's nesting, program-size and automaton-size limits, and a runaway
//! backtracking search stops at fancy-regex's backtrack limit.
//!
//! ## Regular expressions: fancy-regex against Python `re`
//! Patterns go to fancy-regex, which adds look-around and back-references to the `regex` crate,
//! so nearly every Python pattern works unchanged: `(?P<name>…)`, `(?P=name)`, `\1`,
//! `(?=…)`, `(?!…)`, `(?<=…)`, `(?<!…)`, `(?>…)`, possessive `*+`, `(?(1)…|…)`, `(?#…)`,
//! `(?i)`, `(?s)`, `(?m)`, `(?x)`, `a{,3}`, a literal `a{`, `\N{…}`. Unicode `\w`, `\d`, `\s`
//! and `\b` as in Python 3. Known differences:
//! - `$` (without `(?m)`) matches only at the very end; Python also matches before a final `\n`.
//!   `\Z` is the other way round: Python's is the very end, fancy-regex's also allows trailing
//!   newlines. Both only matter for values ending in a newline, which metadata never has.
//! - Octal escapes `\0`, `\101` are back-references (so an error) here.
//! - Character classes: `[[]` is an error here (nested classes), `[a&&b]` and `[a--b]` are set
//!   intersection/difference here, literal characters (or an error) in Python.
//! - Inline flags may appear anywhere and apply from there on (Python wants them at the start);
//!   `(?a)` (ASCII) and `(?L)` are refused.
//! - `a{2}{3}` is accepted (Python: "multiple repeat").
//! - Accepted here but an error in Python: `\z`, `\p{L}`, `\e`, `\G`, `\K`, `(?<name>…)`,
//!   `\k<name>`, variable-length look-behind.
//!
//! KEY characters: Python's `\w` is a letter (`L*`), a number, or `_`; here
//! [`char::is_alphanumeric`] or `_`, which also admits a few combining marks
//! (`Other_Alphabetic`). Nothing real uses such keys.

use std::fmt;

use super::products::FlatItem;

/// Longest filter expression accepted, in bytes.
pub const MAX_EXPR_LEN: usize = 16 * 1024;

/// Backtracking steps a single search may take before it gives up.
const BACKTRACK_LIMIT: usize = 1_000_000;
/// Size limits handed to the automata fancy-regex delegates to.
const DELEGATE_SIZE_LIMIT: usize = 4 << 20;
const DELEGATE_DFA_SIZE_LIMIT: usize = 4 << 20;
/// Most VM instructions of the backtracking part of a pattern.
const MAX_PROG_SIZE: usize = 100_000;

/// The comparison of a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`: the value equals.
    Eq,
    /// `!=`: the value differs.
    Ne,
    /// `~`: the regex is found in the value.
    Search,
    /// `!~`: the regex is not found in the value.
    NotSearch,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Search => "~",
            Op::NotSearch => "!~",
        }
    }
}

/// Why a filter expression was refused, or a search gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    #[error(
        "cannot parse filter `{}` (expected KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX)",
        .expr.escape_debug()
    )]
    Unparseable { expr: String },

    #[error("bad regular expression in filter `{}`", .expr.escape_debug())]
    Regex {
        expr: String,
        #[source]
        source: Box<fancy_regex::Error>,
    },

    #[error("filter of {len} bytes is longer than the limit of {MAX_EXPR_LEN} bytes")]
    TooLong { len: usize },

    #[error("filter `{}` gave up searching `{}`", .expr.escape_debug(), .value.escape_debug())]
    Search {
        expr: String,
        value: String,
        #[source]
        source: Box<fancy_regex::Error>,
    },
}

/// One parsed filter expression.
#[derive(Debug, Clone)]
pub struct Filter {
    expr: String,
    key: String,
    op: Op,
    value: String,
    regex: Option<fancy_regex::Regex>,
}

impl Filter {
    /// Parse `expr` (see the module documentation); a regex is compiled now. Never panics.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        if expr.len() > MAX_EXPR_LEN {
            return Err(FilterError::TooLong { len: expr.len() });
        }
        let unparseable = || FilterError::Unparseable {
            expr: expr.to_owned(),
        };
        let rest = expr.trim_start_matches(is_key_char);
        let key = expr.strip_suffix(rest).unwrap_or_default();
        if key.is_empty() {
            return Err(unparseable());
        }
        let rest = rest.trim_start_matches(' ');
        let (op, rest) = [
            ("!=", Op::Ne),
            ("!~", Op::NotSearch),
            ("=", Op::Eq),
            ("~", Op::Search),
        ]
        .into_iter()
        .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (op, r)))
        .ok_or_else(unparseable)?;
        let rest = rest.trim_start_matches(' ');
        // Python's `(.*)` stops at a newline and `$` may match just before a final one.
        let value = match rest.split_once('\n') {
            None => rest,
            Some((value, "")) => value,
            Some(_) => return Err(unparseable()),
        };
        let regex = match op {
            Op::Eq | Op::Ne => None,
            Op::Search | Op::NotSearch => Some(
                fancy_regex::RegexBuilder::new(value)
                    .backtrack_limit(BACKTRACK_LIMIT)
                    .delegate_size_limit(DELEGATE_SIZE_LIMIT)
                    .delegate_dfa_size_limit(DELEGATE_DFA_SIZE_LIMIT)
                    .max_prog_size(MAX_PROG_SIZE)
                    .build()
                    .map_err(|e| FilterError::Regex {
                        expr: expr.to_owned(),
                        source: Box::new(e),
                    })?,
            ),
        };
        Ok(Filter {
            expr: expr.to_owned(),
            key: key.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// The key compared (a field of the flattened item, spec §1.5).
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn op(&self) -> Op {
        self.op
    }

    /// The value or pattern, as parsed (leading spaces dropped, trailing ones kept).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Does `item` pass? A search that gives up (backtrack limit) counts as "does not pass",
    /// whatever the operator: a runaway pattern never selects more. [`Filter::try_matches`]
    /// reports it instead.
    pub fn matches(&self, item: &FlatItem<'_>) -> bool {
        self.try_matches(item).unwrap_or(false)
    }

    /// Like [`Filter::matches`], but a search that gives up is an error.
    pub fn try_matches(&self, item: &FlatItem<'_>) -> Result<bool, FilterError> {
        self.try_matches_value(item.get(&self.key).unwrap_or(""))
    }

    /// Test one value (the key's value, `""` when missing).
    pub fn try_matches_value(&self, value: &str) -> Result<bool, FilterError> {
        Ok(match (&self.op, &self.regex) {
            (Op::Eq, _) => value == self.value,
            (Op::Ne, _) => value != self.value,
            (Op::Search | Op::NotSearch, Some(re)) => {
                let found = re.is_match(value).map_err(|e| FilterError::Search {
                    expr: self.expr.clone(),
                    value: value.to_owned(),
                    source: Box::new(e),
                })?;
                found == (self.op == Op::Search)
            }
            // Not built by `parse`; keep it total anyway.
            (Op::Search | Op::NotSearch, None) => false,
        })
    }
}

/// The expression as it was given.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

/// Python `\w` (approximately, see the module documentation), `|` and `-`.
fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '|' || c == '-'
}

/// Filters ANDed together; no filter passes everything.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Filter>);

impl Filters {
    /// Parse every expression; the first bad one is the error.
    pub fn parse_all<I, S>(exprs: I) -> Result<Filters, FilterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        exprs
            .into_iter()
            .map(|e| Filter::parse(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Filters)
    }

    /// Does `item` pass every filter?
    pub fn matches(&self, item: &FlatItem<'_>) -> bool {
        self.0.iter().all(|f| f.matches(item))
    }

    /// Like [`Filters::matches`], but a search that gives up is an error.
    pub fn try_matches(&self, item: &FlatItem<'_>) -> Result<bool, FilterError> {
        for f in &self.0 {
            if !f.try_matches(item)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Filter> {
        self.0.iter()
    }
}

impl From<Vec<Filter>> for Filters {
    fn from(v: Vec<Filter>) -> Self {
        Filters(v)
    }
}

impl<'a> IntoIterator for &'a Filters {
    type Item = &'a Filter;
    type IntoIter = std::slice::Iter<'a, Filter>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The token that separates filter groups in a source's filter list (`source add`, `source
/// edit`, the catalogue). It can never be a filter itself: it has no operator.
pub const OR: &str = "--or";

/// Why a list of filter groups was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("filter group {group}: {source}")]
    Filter {
        group: usize,
        #[source]
        source: FilterError,
    },
    #[error("empty filter group {group} (`{OR}` must stand between two groups of filters)")]
    Empty { group: usize },
}

/// Filter groups ORed together, each an AND of filters ([`Filters`]): an item is taken when it
/// passes every filter of at least one group. No group passes everything.
///
/// Written as one list in which [`OR`] separates the groups (`a=1 b~x --or c=2`); a list
/// without [`OR`] is one group, as every source before groups existed.
#[derive(Debug, Clone, Default)]
pub struct FilterGroups(Vec<Filters>);

impl FilterGroups {
    /// Parse a list in which [`OR`] separates groups. An empty list is "no filters"; an empty
    /// group (a leading, trailing or doubled [`OR`]) is an error, never "everything".
    pub fn parse<S: AsRef<str>>(exprs: &[S]) -> Result<FilterGroups, GroupError> {
        if exprs.is_empty() {
            return Ok(FilterGroups::default());
        }
        let mut groups = Vec::new();
        for (i, chunk) in exprs.split(|e| e.as_ref() == OR).enumerate() {
            if chunk.is_empty() {
                return Err(GroupError::Empty { group: i + 1 });
            }
            let f = Filters::parse_all(chunk.iter().map(|e| e.as_ref())).map_err(|source| {
                GroupError::Filter {
                    group: i + 1,
                    source,
                }
            })?;
            groups.push(f);
        }
        Ok(FilterGroups(groups))
    }

    /// The expressions of each group, as typed.
    pub fn split<S: AsRef<str>>(exprs: &[S]) -> Vec<Vec<String>> {
        if exprs.is_empty() {
            return Vec::new();
        }
        exprs
            .split(|e| e.as_ref() == OR)
            .map(|g| g.iter().map(|e| e.as_ref().to_owned()).collect())
            .collect()
    }

    /// Does `item` pass every filter of some group (or are there no groups)?
    pub fn matches(&self, item: &FlatItem<'_>) -> bool {
        self.0.is_empty() || self.0.iter().any(|g| g.matches(item))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Filters> {
        self.0.iter()
    }
}

impl From<Filters> for FilterGroups {
    fn from(f: Filters) -> Self {
        if f.is_empty() {
            FilterGroups::default()
        } else {
            FilterGroups(vec![f])
        }
    }
}

/// What [`select`](super::select()) filters items with: [`Filters`] or [`FilterGroups`].
pub trait ItemFilter {
    fn matches_item(&self, item: &FlatItem<'_>) -> bool;
    /// True when every item matches (no filter at all): the item need not be looked at.
    fn takes_everything(&self) -> bool {
        false
    }
}

impl ItemFilter for Filters {
    fn matches_item(&self, item: &FlatItem<'_>) -> bool {
        self.matches(item)
    }
    fn takes_everything(&self) -> bool {
        self.is_empty()
    }
}

impl ItemFilter for FilterGroups {
    fn matches_item(&self, item: &FlatItem<'_>) -> bool {
        self.matches(item)
    }
    fn takes_everything(&self) -> bool {
        self.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::{Document, Products, parse};

    fn products(json: &str) -> Products {
        match parse("t", json.as_bytes()).unwrap() {
            Document::Products(p) => p,
            Document::Index(_) => panic!(),
        }
    }

    /// Shaped like the loopback stream of spec §6 (`make_stream.py`): `os`/`label` condensed to
    /// the top level, one product without `release`, a bootloader product.
    const STREAM: &str = r#"{"format":"products:1.0","content_id":"com.example.maas:stable:v3:download",
      "os":"ubuntu","label":"stable","products":{
      "com.example.maas.stable:v3:boot:22.04:amd64:ga-22.04":{"arch":"amd64","release":"jammy",
        "subarch":"ga-22.04","versions":{"20240301":{"items":{
          "boot-kernel":{"ftype":"boot-kernel","path":"jammy/amd64/20240301/boot-kernel","size":2500},
          "squashfs":{"ftype":"squashfs","path":"jammy/amd64/20240301/squashfs","size":9000}}}}},
      "com.example.maas.stable:v3:boot:24.04:arm64:ga-24.04":{"arch":"arm64","release":"noble",
        "versions":{"20240601":{"items":{
          "boot-kernel":{"ftype":"boot-kernel","path":"noble/arm64/20240601/boot-kernel","size":1200}}}}},
      "com.example.maas.stable:1:grub-efi-signed:uefi:amd64":{"arch":"amd64","os":"grub-efi-signed",
        "bootloader-type":"uefi","versions":{"20210819.0":{"items":{
          "grub2-signed":{"ftype":"archive.tar.xz","path":"bootloaders/uefi/amd64/20210819.0/grub2-signed.tar.xz","size":77}}}}}
      }}"#;

    fn selected(filter: &str) -> Vec<String> {
        let p = products(STREAM);
        let f = Filter::parse(filter).unwrap();
        p.items()
            .filter(|i| f.matches(i))
            .map(|i| format!("{}/{}", i.version, i.item))
            .collect()
    }

    #[test]
    fn sstream_query_table_of_spec_6() {
        assert_eq!(
            selected("release~jam"),
            ["20240301/boot-kernel", "20240301/squashfs"]
        );
        assert!(selected("release=jam").is_empty());
        assert_eq!(
            selected("bootloader-type=uefi"),
            ["20210819.0/grub2-signed"]
        );
        assert_eq!(selected("arch = amd64").len(), 3);
        assert_eq!(selected("arch  =   amd64").len(), 3);
        assert!(selected("arch=amd64 ").is_empty());
        assert_eq!(selected("size=2500"), ["20240301/boot-kernel"]);
        assert_eq!(selected("release!~."), ["20210819.0/grub2-signed"]);
        // `os` is only at the top level for the Ubuntu products: inherited values count
        assert_eq!(selected("os=ubuntu").len(), 3);
        assert_eq!(selected("os!=ubuntu"), ["20210819.0/grub2-signed"]);
        assert_eq!(selected("label=stable").len(), 4);
        assert_eq!(selected("missing="), selected("label~."));
        assert_eq!(selected("product_name~:24.04:"), ["20240601/boot-kernel"]);
        assert_eq!(selected("version_name=20240301").len(), 2);
        assert_eq!(selected("item_name=squashfs"), ["20240301/squashfs"]);
        assert_eq!(selected("content_id~^com\\.example").len(), 4);
    }

    #[test]
    fn maas_docs_filters() {
        assert_eq!(selected("os~(grub*|pxelinux)"), ["20210819.0/grub2-signed"]);
        assert!(selected("release~(trusty|xenial)").is_empty());
        assert_eq!(
            selected("release~(jammy|noble)").len(),
            3,
            "the loopback selection of spec §6"
        );
        assert_eq!(selected("subarch~(generic|hwe-t)").len(), 0);
        assert_eq!(selected("subarch~(generic|ga-22)").len(), 2);
    }

    #[test]
    fn grammar() {
        let f = Filter::parse("arch = amd64 ").unwrap();
        assert_eq!((f.key(), f.op(), f.value()), ("arch", Op::Eq, "amd64 "));
        assert_eq!(f.to_string(), "arch = amd64 ");
        let f = Filter::parse("bootloader-type!=uefi").unwrap();
        assert_eq!(
            (f.key(), f.op(), f.value()),
            ("bootloader-type", Op::Ne, "uefi")
        );
        let f = Filter::parse("a|b!~x").unwrap();
        assert_eq!((f.key(), f.op(), f.value()), ("a|b", Op::NotSearch, "x"));
        let f = Filter::parse("k~=x").unwrap();
        assert_eq!((f.op(), f.value()), (Op::Search, "=x"));
        let f = Filter::parse("k==x").unwrap();
        assert_eq!((f.op(), f.value()), (Op::Eq, "=x"));
        let f = Filter::parse("arch =! x").unwrap();
        assert_eq!((f.op(), f.value()), (Op::Eq, "! x"));
        let f = Filter::parse("k=").unwrap();
        assert_eq!(f.value(), "");
        let f = Filter::parse("k=a\n").unwrap();
        assert_eq!(f.value(), "a");
        let f = Filter::parse("rélease_ñ=ü").unwrap();
        assert_eq!(f.key(), "rélease_ñ");
        let f: Filter = "x~y".parse().unwrap();
        assert_eq!(f.op(), Op::Search);

        for bad in [
            "arch",
            "",
            "=amd64",
            " arch=amd64",
            "arch\t=x",
            "arch!x",
            "a.b=c",
            "k=a\nb",
            "k=a\n\n",
            "ключ",
        ] {
            let e = Filter::parse(bad).unwrap_err();
            assert!(
                matches!(e, FilterError::Unparseable { .. }),
                "{bad:?}: {e:?}"
            );
        }
        assert_eq!(
            Filter::parse("arch").unwrap_err().to_string(),
            "cannot parse filter `arch` (expected KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX)"
        );
    }

    #[test]
    fn python_regex_features() {
        let t = |pat: &str, value: &str| {
            Filter::parse(&format!("k~{pat}"))
                .unwrap()
                .try_matches_value(value)
                .unwrap()
        };
        assert!(t("(?P<c>[a-z])(?P=c)", "groovy"));
        assert!(!t("(?P<c>[a-z])(?P=c)", "noble"));
        assert!(t(r"(.)\1", "jammy"));
        assert!(t("(?<=o)c(?!x)", "focal"));
        assert!(!t("(?<!o)c", "focal"));
        assert!(t("^(?!focal)", "noble"));
        assert!(!t("^(?!focal)", "focal"));
        assert!(t("(?i)JAMMY", "jammy"));
        assert!(t("^jammy$", "jammy"));
        assert!(!t("^jam$", "jammy"));
        assert!(t(r"\d{8}", "20240301"));
        assert!(t("a{,3}b", "b"));
        assert!(t("(?x) j a m", "jammy"));
        assert!(t("(?#comment)jam", "jammy"));
        assert!(t(r"\w+", "ñ"));
    }

    #[test]
    fn regex_errors_are_errors() {
        for bad in [
            "(",
            "a**",
            "[",
            r"\",
            "(?P<x",
            "(?P=nope)",
            r"\1",
            "x{99999999999}",
        ] {
            let e = Filter::parse(&format!("k~{bad}")).unwrap_err();
            assert!(matches!(e, FilterError::Regex { .. }), "{bad}: {e:?}");
            assert!(std::error::Error::source(&e).is_some());
        }
        // `=` never compiles its value
        assert!(Filter::parse("k=(").is_ok());
    }

    #[test]
    fn huge_patterns_are_refused() {
        let deep = format!("k~{}a{}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(
            Filter::parse(&deep),
            Err(FilterError::Regex { .. })
        ));
        let long = format!("k~{}", "a".repeat(MAX_EXPR_LEN));
        assert!(matches!(
            Filter::parse(&long),
            Err(FilterError::TooLong { .. })
        ));
        for big in [
            "(a{1000}){1000}",
            r"\w{1000}{1000}",
            r"(\w{500}){500}",
            "(?=a){1000}",
        ] {
            assert!(
                matches!(
                    Filter::parse(&format!("k~{big}")),
                    Err(FilterError::Regex { .. })
                ),
                "{big}"
            );
        }
    }

    #[test]
    fn catastrophic_backtracking_gives_up() {
        let f = Filter::parse(r"k~^(a|aa)+\1$").unwrap();
        let value = format!("{}b", "a".repeat(64));
        assert!(matches!(
            f.try_matches_value(&value),
            Err(FilterError::Search { .. })
        ));
        let p = products(&format!(
            r#"{{"format":"products:1.0","content_id":"c","products":{{"p":{{"k":"{value}",
               "versions":{{"v":{{"items":{{"i":{{}}}}}}}}}}}}}}"#
        ));
        let item = p.items().next().unwrap();
        assert!(!f.matches(&item));
        let neg = Filter::parse(r"k!~^(a|aa)+\1$").unwrap();
        assert!(!neg.matches(&item));
    }

    #[test]
    fn filters_are_anded() {
        let p = products(STREAM);
        let fs = Filters::parse_all(["arch=amd64", "release~(jammy|noble)"]).unwrap();
        assert_eq!(fs.len(), 2);
        assert_eq!(p.items().filter(|i| fs.matches(i)).count(), 2);
        let none = Filters::default();
        assert!(none.is_empty());
        assert_eq!(p.items().filter(|i| none.matches(i)).count(), 4);
        assert!(matches!(
            Filters::parse_all(["arch=amd64", "oops"]),
            Err(FilterError::Unparseable { expr }) if expr == "oops"
        ));
        let shown: Vec<String> = fs.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["arch=amd64", "release~(jammy|noble)"]);
    }

    fn group_selected(exprs: &[&str]) -> Vec<String> {
        let p = products(STREAM);
        let g = FilterGroups::parse(exprs).unwrap();
        p.items()
            .filter(|i| g.matches(i))
            .map(|i| format!("{}/{}", i.version, i.item))
            .collect()
    }

    #[test]
    fn groups_are_an_or_of_ands() {
        // The MAAS docs' two sets: amd64 jammy/noble images, or any grub/pxelinux bootloader.
        assert_eq!(
            group_selected(&[
                "arch=amd64",
                "release~(jammy|noble)",
                OR,
                "os~(grub*|pxelinux)"
            ]),
            [
                "20240301/boot-kernel",
                "20240301/squashfs",
                "20210819.0/grub2-signed"
            ]
        );
        // Either group alone selects a subset; a list without `--or` is one group.
        assert_eq!(
            group_selected(&["arch=amd64", "release~(jammy|noble)"]),
            ["20240301/boot-kernel", "20240301/squashfs"]
        );
        assert_eq!(group_selected(&["os~grub"]), ["20210819.0/grub2-signed"]);
        // Overlapping groups take an item once.
        assert_eq!(
            group_selected(&["arch=arm64", OR, "release=noble"]),
            ["20240601/boot-kernel"]
        );
        // No filters: everything.
        assert_eq!(group_selected(&[]).len(), 4);
        let none: [&str; 0] = [];
        assert!(FilterGroups::parse(&none).unwrap().is_empty());
        assert_eq!(
            FilterGroups::parse(&["a=1", OR, "b=2", "c~x"])
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn bad_groups_are_errors_naming_the_group() {
        for (exprs, want) in [
            (vec![OR, "a=1"], "empty filter group 1"),
            (vec!["a=1", OR], "empty filter group 2"),
            (vec!["a=1", OR, OR, "b=2"], "empty filter group 2"),
            (vec![OR], "empty filter group 1"),
            (
                vec!["a=1", OR, "b~("],
                "filter group 2: bad regular expression",
            ),
            (
                vec!["nonsense", OR, "b=1"],
                "filter group 1: cannot parse filter `nonsense`",
            ),
        ] {
            let e = FilterGroups::parse(&exprs).unwrap_err().to_string();
            assert!(e.starts_with(want), "{exprs:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        // `--or` itself can never be a filter, so the stored list reads back unambiguously.
        assert!(Filter::parse(OR).is_err());
    }

    #[test]
    fn split_gives_the_groups_as_typed() {
        assert_eq!(
            FilterGroups::split(&["a=1", "b~x", OR, "c=2"]),
            vec![vec!["a=1", "b~x"], vec!["c=2"]]
        );
        let none: [&str; 0] = [];
        assert!(FilterGroups::split(&none).is_empty());
        assert_eq!(FilterGroups::split(&["a=1"]), vec![vec!["a=1"]]);
    }
}

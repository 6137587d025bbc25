//! What to mirror: items filtered first, then empty versions and products dropped (spec §2.3),
//! then per product the versions to add and to remove under `--max`/`--keep` (spec §2.4).
//!
//! Protects the compatibility promise of spec §7: [`resolve_work`] reproduces upstream
//! `util.resolve_work` exactly, including plain string order (`9` is newer than `10`), the
//! Python slice arithmetic behind a zero or negative `--max`, and the refusal of `--keep`
//! without `--max` ([`SelectError::KeepWithoutMax`], upstream's `TypeError`).
//!
//! [`select_at`] is [`select_each`] as item handles, for a sync: it flattens no item when there
//! is no filter, and a filtered one only as far as the filters read it.

use std::collections::HashSet;

use super::filter::ItemFilter;
use super::products::{FlatItem, ItemAt, Products};

/// Why a selection cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    #[error("`--keep` needs `--max`")]
    KeepWithoutMax,
}

/// The versions of one product to fetch and to drop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Work {
    /// Versions to add, newest first (the download order).
    pub add: Vec<String>,
    /// Versions to remove, oldest first.
    pub remove: Vec<String>,
}

/// Upstream `resolve_work` for one product: `src` = the version names of the (filtered) source
/// product, `target` = the version names already mirrored, `max` = `--max`, `keep` = `--keep`.
/// Order of the inputs does not matter. See spec §2.4 for the steps.
pub fn resolve_work(
    src: &[String],
    target: &[String],
    max: Option<i64>,
    keep: bool,
) -> Result<Work, SelectError> {
    resolve_work_filtered(src, target, max, keep, |_| true)
}

/// [`resolve_work`] with upstream's `itemfilter`: source versions for which `wanted` is false
/// are never added, yet still count as present in the source (so they are not removed).
pub fn resolve_work_filtered(
    src: &[String],
    target: &[String],
    max: Option<i64>,
    keep: bool,
    wanted: impl Fn(&str) -> bool,
) -> Result<Work, SelectError> {
    if keep && max.is_none() {
        return Err(SelectError::KeepWithoutMax);
    }
    let in_src: HashSet<&str> = src.iter().map(String::as_str).collect();
    let in_target: HashSet<&str> = target.iter().map(String::as_str).collect();

    let mut add: Vec<String> = sorted_desc(src)
        .into_iter()
        .filter(|v| wanted(v) && !in_target.contains(v.as_str()))
        .collect();
    let mut remove: Vec<String> = sorted_desc(target)
        .into_iter()
        .filter(|v| !in_src.contains(v.as_str()))
        .collect();

    if let (true, Some(max)) = (keep, max) {
        // Keep the newest of the vanished versions while the product stays within `max`.
        let after_add = count(target.len()).saturating_add(count(add.len()));
        let mut dropped = 0;
        while dropped < remove.len()
            && max > after_add.saturating_sub(count(remove.len() - dropped))
        {
            dropped += 1;
        }
        remove.drain(..dropped);
    }

    if let Some(max) = max {
        let removed: HashSet<&str> = remove.iter().map(String::as_str).collect();
        let kept: Vec<String> = sorted_desc(
            &target
                .iter()
                .chain(&add)
                .filter(|v| !removed.contains(v.as_str()))
                .cloned()
                .collect::<Vec<_>>(),
        );
        if count(kept.len()) > max {
            // Python's `kept[max:]`: a negative `max` counts from the end.
            let start = if max >= 0 {
                usize::try_from(max).unwrap_or(usize::MAX)
            } else {
                usize::try_from(count(kept.len()).saturating_add(max)).unwrap_or(0)
            };
            for v in kept.into_iter().skip(start) {
                if in_target.contains(v.as_str()) {
                    remove.push(v);
                } else if let Some(at) = add.iter().position(|a| *a == v) {
                    add.remove(at);
                }
            }
        }
    }
    remove.sort();
    Ok(Work { add, remove })
}

fn sorted_desc(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| b.cmp(a));
    v
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A version with at least one item that passed the filters.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedVersion<'a> {
    pub name: &'a str,
    /// The matching items, in document order.
    pub items: Vec<FlatItem<'a>>,
}

/// A product with at least one selected version.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectedProduct<'a> {
    pub name: &'a str,
    /// The selected versions, in document order.
    pub versions: Vec<SelectedVersion<'a>>,
}

impl SelectedProduct<'_> {
    /// The version names, newest first as upstream sorts them (plain string order, descending).
    pub fn version_names_desc(&self) -> Vec<String> {
        let names: Vec<String> = self.versions.iter().map(|v| v.name.to_owned()).collect();
        sorted_desc(&names)
    }

    /// [`resolve_work`] with this product's versions as the source.
    pub fn resolve(
        &self,
        target: &[String],
        max: Option<i64>,
        keep: bool,
    ) -> Result<Work, SelectError> {
        let src: Vec<String> = self.versions.iter().map(|v| v.name.to_owned()).collect();
        resolve_work(&src, target, max, keep)
    }
}

/// Apply `filters` to every item of `products` (an empty [`Filters`](super::Filters) or
/// [`FilterGroups`](super::FilterGroups) keeps everything) and drop the versions and products
/// left empty (spec §2.3). Document order throughout. With filter groups an item is taken when
/// any group passes it; `--max`/`--keep` then apply per product to the versions left, exactly as
/// with one group.
pub fn select<'a, F: ItemFilter + ?Sized>(
    products: &'a Products,
    filters: &F,
) -> Vec<SelectedProduct<'a>> {
    select_each(products, filters).collect()
}

/// [`select`] one product at a time: only the product being yielded holds its selected items,
/// so memory stays that of the document however many items are selected (issue 8 item 4).
pub fn select_each<'a: 'f, 'f, F: ItemFilter + ?Sized>(
    products: &'a Products,
    filters: &'f F,
) -> impl Iterator<Item = SelectedProduct<'a>> + use<'a, 'f, F> {
    let mut items = products
        .items()
        .filter(move |i| filters.matches_item(i))
        .peekable();
    std::iter::from_fn(move || {
        let first = items.next()?;
        let mut product = SelectedProduct {
            name: first.product,
            versions: vec![SelectedVersion {
                name: first.version,
                items: vec![first],
            }],
        };
        // items() yields products and versions contiguously, so comparing with the last is enough
        while let Some(item) = items.next_if(|i| i.product == product.name) {
            match product.versions.last_mut() {
                Some(v) if v.name == item.version => v.items.push(item),
                _ => product.versions.push(SelectedVersion {
                    name: item.version,
                    items: vec![item],
                }),
            }
        }
        Some(product)
    })
}

/// One product of [`select_at`]: its selected versions, each with the handles of its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedAt<'a> {
    pub name: &'a str,
    /// The selected versions and their matching items, in document order.
    pub versions: Vec<(&'a str, Vec<ItemAt>)>,
}

impl SelectedAt<'_> {
    /// The version names, newest first (as [`SelectedProduct::version_names_desc`]).
    pub fn version_names_desc(&self) -> Vec<String> {
        let names: Vec<String> = self.versions.iter().map(|v| v.0.to_owned()).collect();
        sorted_desc(&names)
    }
}

/// [`select_each`] as item handles ([`ItemAt`]) instead of flattened items: what a sync keeps.
/// No item is flattened when the filters take everything, and a filtered item only as far as
/// its filters read it (issue 13 item 5: a million-item document).
pub fn select_at<'a: 'f, 'f, F: ItemFilter + ?Sized>(
    products: &'a Products,
    filters: &'f F,
) -> impl Iterator<Item = SelectedAt<'a>> + use<'a, 'f, F> {
    let all = filters.takes_everything();
    let mut items = products
        .item_ats()
        .filter(move |&at| all || filters.matches_item(&products.item_for_filter(at)))
        .map(|at| (products.item_names(at), at))
        .peekable();
    std::iter::from_fn(move || {
        let ((product, version, _), at) = items.next()?;
        let mut sp = SelectedAt {
            name: product,
            versions: vec![(version, vec![at])],
        };
        // Products and versions come contiguously, as in select_each.
        while let Some(((_, version, _), at)) = items.next_if(|((p, _, _), _)| *p == sp.name) {
            match sp.versions.last_mut() {
                Some(v) if v.0 == version => v.1.push(at),
                _ => sp.versions.push((version, vec![at])),
            }
        }
        Some(sp)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::{Document, FilterGroups, Filters, parse};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    /// Upstream `tests/unittests/test_resolvework.py` uses integers; two-digit strings keep
    /// their order under string comparison.
    fn tryit(
        src: &[&str],
        target: &[&str],
        max: Option<i64>,
        keep: bool,
        add: &[&str],
        remove: &[&str],
    ) {
        let w = resolve_work(&s(src), &s(target), max, keep).unwrap();
        assert_eq!(
            w.add,
            s(add),
            "add for src={src:?} target={target:?} max={max:?} keep={keep}"
        );
        assert_eq!(
            w.remove,
            s(remove),
            "remove for src={src:?} target={target:?} max={max:?} keep={keep}"
        );
    }

    #[test]
    fn upstream_keep_with_max_none_is_error() {
        assert_eq!(
            resolve_work(&s(&["01"]), &s(&["02"]), None, true),
            Err(SelectError::KeepWithoutMax)
        );
        assert_eq!(
            SelectError::KeepWithoutMax.to_string(),
            "`--keep` needs `--max`"
        );
    }

    #[test]
    fn upstream_full_replace() {
        tryit(
            &["10", "09", "08"],
            &["07", "06", "05"],
            None,
            false,
            &["10", "09", "08"],
            &["05", "06", "07"],
        );
    }

    #[test]
    fn upstream_only_new_with_max() {
        tryit(
            &["10", "09", "08"],
            &["07", "06", "05"],
            Some(2),
            false,
            &["10", "09"],
            &["05", "06", "07"],
        );
    }

    #[test]
    fn upstream_only_new_with_keep() {
        tryit(
            &["10", "09", "08"],
            &["07", "06", "05"],
            Some(4),
            true,
            &["10", "09", "08"],
            &["05", "06"],
        );
    }

    #[test]
    fn upstream_only_remove() {
        tryit(&["3"], &["3", "2", "1"], None, false, &[], &["1", "2"]);
    }

    #[test]
    fn upstream_only_remove_with_keep() {
        tryit(&["3"], &["3", "2", "1"], Some(3), true, &[], &[]);
    }

    #[test]
    fn upstream_only_remove_with_max() {
        tryit(&["3"], &["3", "2", "1"], Some(2), false, &[], &["1", "2"]);
    }

    #[test]
    fn upstream_only_remove_with_no_max() {
        tryit(&["3"], &["3", "2", "1"], None, false, &[], &["1", "2"]);
    }

    #[test]
    fn upstream_null_remote_without_keep() {
        // upstream defines this test twice; the first (no max) is shadowed in Python, run both
        tryit(&[], &["3", "2", "1"], None, false, &[], &["1", "2", "3"]);
        tryit(&[], &["3", "2", "1"], Some(3), false, &[], &["1", "2", "3"]);
    }

    #[test]
    fn upstream_null_remote_with_keep() {
        tryit(&[], &["3", "2", "1"], Some(3), true, &[], &[]);
    }

    #[test]
    fn upstream_max_forces_remove() {
        tryit(&["2", "1"], &["2", "1"], Some(1), false, &[], &["1"]);
    }

    #[test]
    fn upstream_nothing_needed_with_max() {
        tryit(&["1"], &["1"], Some(1), false, &[], &[]);
    }

    #[test]
    fn upstream_filtered_items_not_present() {
        let w = resolve_work_filtered(
            &s(&["1", "2", "3", "4", "5"]),
            &s(&["1"]),
            None,
            false,
            |v| v < "3",
        )
        .unwrap();
        assert_eq!((w.add, w.remove), (s(&["2"]), s(&[])));
    }

    #[test]
    fn upstream_max_and_target_has_newest() {
        tryit(&["1", "2", "3", "4"], &["4"], Some(1), false, &[], &[]);
    }

    #[test]
    fn upstream_unordered_input() {
        tryit(
            &["20121026.1", "20120328", "20121001"],
            &["20121001", "20120328", "20121026.1"],
            Some(2),
            false,
            &[],
            &["20120328"],
        );
    }

    #[test]
    fn spec_examples() {
        // §2.4: src [3], target [3,2,1]: max 3 + keep removes nothing, max 2 removes [1,2];
        // max 2 + keep keeps the newest vanished one (checked against upstream's function)
        tryit(&["3"], &["3", "2", "1"], Some(3), true, &[], &[]);
        tryit(&["3"], &["3", "2", "1"], Some(2), false, &[], &["1", "2"]);
        tryit(&["3"], &["3", "2", "1"], Some(2), true, &[], &["1"]);
        // string order: `9` is newer than `10`; `samepaths` beats dates
        tryit(&["10", "9"], &[], None, false, &["9", "10"], &[]);
        tryit(&["10", "9"], &[], Some(1), false, &["9"], &[]);
        tryit(
            &["20121026.1", "samepaths"],
            &[],
            Some(1),
            false,
            &["samepaths"],
            &[],
        );
    }

    #[test]
    fn spec_loopback_table() {
        let target = ["20240301", "20240201", "20240101"];
        let src = ["20240401", "20240301", "20240201"];
        tryit(&src, &target, Some(4), true, &["20240401"], &[]);
        tryit(&src, &target, Some(3), true, &["20240401"], &["20240101"]);
        tryit(&src, &target, Some(4), false, &["20240401"], &["20240101"]);
        tryit(
            &src,
            &target,
            Some(2),
            true,
            &["20240401"],
            &["20240101", "20240201"],
        );
        // gen2 runs of §6: no max; `--max=1` over a target holding only 20240301
        tryit(&src, &target, None, false, &["20240401"], &["20240101"]);
        tryit(
            &src,
            &["20240301"],
            Some(1),
            false,
            &["20240401"],
            &["20240301"],
        );
        // first `--max=1` run of §6
        tryit(
            &["20240301", "20240201", "20240101"],
            &[],
            Some(1),
            false,
            &["20240301"],
            &[],
        );
    }

    #[test]
    fn zero_and_negative_max_as_upstream() {
        // expectations computed with upstream's function under python 3.11
        let (src, tgt) = (["3", "2", "1"], ["2", "1", "0"]);
        for keep in [false, true] {
            tryit(&src, &tgt, Some(0), keep, &[], &["0", "1", "2"]);
            tryit(&src, &[], Some(0), keep, &[], &[]);
            tryit(&[], &tgt, Some(0), keep, &[], &["0", "1", "2"]);
            tryit(&src, &tgt, Some(-1), keep, &["3"], &["0", "1"]);
            tryit(&src, &[], Some(-1), keep, &["3", "2"], &[]);
            tryit(&[], &tgt, Some(-1), keep, &[], &["0", "1", "2"]);
            tryit(&src, &tgt, Some(-2), keep, &["3"], &["0", "1", "2"]);
            tryit(&src, &[], Some(-2), keep, &["3"], &[]);
            tryit(&src, &tgt, Some(-5), keep, &[], &["0", "1", "2"]);
            tryit(&src, &[], Some(-5), keep, &[], &[]);
            tryit(&src, &tgt, Some(i64::MIN), keep, &[], &["0", "1", "2"]);
        }
        tryit(&src, &tgt, Some(1), false, &["3"], &["0", "1", "2"]);
        tryit(&src, &tgt, Some(1), true, &["3"], &["0", "1", "2"]);
        tryit(&[], &tgt, Some(1), true, &[], &["0", "1"]);
        tryit(&src, &tgt, Some(i64::MAX), true, &["3"], &[]);
    }

    const STREAM: &str = r#"{"format":"products:1.0","content_id":"c","products":{
      "p1":{"arch":"amd64","versions":{
        "20240101":{"items":{"a":{"ftype":"squashfs"},"b":{"ftype":"kernel"}}},
        "20240301":{"items":{"a":{"ftype":"kernel"}}},
        "20240201":{"items":{"a":{"ftype":"squashfs"}}}}},
      "p2":{"arch":"arm64","versions":{"1":{"items":{"a":{"ftype":"squashfs"}}}}},
      "p3":{"arch":"amd64","versions":{"9":{"items":{"a":{"ftype":"squashfs"}}},
                                       "10":{"items":{"a":{"ftype":"squashfs"}}}}}}}"#;

    fn stream() -> crate::streams::Products {
        match parse("t", STREAM.as_bytes()).unwrap() {
            Document::Products(p) => p,
            Document::Index(_) => panic!(),
        }
    }

    fn shape(sel: &[SelectedProduct<'_>]) -> Vec<String> {
        sel.iter()
            .flat_map(|p| {
                p.versions.iter().map(move |v| {
                    let items: Vec<&str> = v.items.iter().map(|i| i.item).collect();
                    format!("{}/{}:{}", p.name, v.name, items.join(","))
                })
            })
            .collect()
    }

    #[test]
    fn select_filters_items_then_drops_empty_versions_and_products() {
        let p = stream();
        let all = select(&p, &Filters::default());
        assert_eq!(
            shape(&all),
            [
                "p1/20240101:a,b",
                "p1/20240301:a",
                "p1/20240201:a",
                "p2/1:a",
                "p3/9:a",
                "p3/10:a"
            ]
        );
        let sel = select(
            &p,
            &Filters::parse_all(["ftype=squashfs", "arch=amd64"]).unwrap(),
        );
        assert_eq!(
            shape(&sel),
            ["p1/20240101:a", "p1/20240201:a", "p3/9:a", "p3/10:a"]
        );
        assert_eq!(sel[0].version_names_desc(), ["20240201", "20240101"]);
        assert_eq!(sel[1].version_names_desc(), ["9", "10"]);
        // `--max=1` picks the newest version with a matching item (upstream fix 21782a0)
        let w = sel[0].resolve(&[], Some(1), false).unwrap();
        assert_eq!(w.add, ["20240201"]);
        assert!(select(&p, &Filters::parse_all(["arch=s390x"]).unwrap()).is_empty());
    }

    #[test]
    fn select_with_groups_is_the_union_in_document_order_then_max_per_product() {
        let p = stream();
        let one = select(
            &p,
            &Filters::parse_all(["ftype=squashfs", "arch=amd64"]).unwrap(),
        );
        let g = FilterGroups::parse(&[
            "ftype=squashfs",
            "arch=amd64",
            "--or",
            "ftype=kernel",
            "arch=amd64",
        ])
        .unwrap();
        let both = select(&p, &g);
        // The amd64 kernels join, in document order, each item once; arm64 stays out.
        assert_eq!(
            shape(&both),
            [
                "p1/20240101:a,b",
                "p1/20240301:a",
                "p1/20240201:a",
                "p3/9:a",
                "p3/10:a"
            ]
        );
        assert_eq!(shape(&one).len(), 4);
        // An empty FilterGroups keeps everything, as an empty Filters does.
        assert_eq!(
            shape(&select(&p, &FilterGroups::default())),
            shape(&select(&p, &Filters::default()))
        );
        // `--max` per product over what any group left: p1's newest is now the kernel-only one.
        assert_eq!(
            both[0].resolve(&[], Some(1), false).unwrap().add,
            ["20240301"]
        );
    }

    /// `select_at` selects exactly what `select_each` does, as handles, with and without
    /// filters (groups, regex, a missing key), on the real 2016 cloud-images document.
    #[test]
    fn select_at_is_select_each_as_handles() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/real");
        let bytes = std::fs::read(format!(
            "{root}/cloud-images-released-2016/streams/v1/com.ubuntu.cloud:released:download.sjson"
        ))
        .unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let body =
            &text[text.find("\n\n").unwrap() + 2..text.find("-----BEGIN PGP SIGNATURE").unwrap()];
        let Ok(Document::Products(p)) = parse("dl", body.as_bytes()) else {
            panic!("products expected")
        };
        let groups = [
            FilterGroups::default(),
            FilterGroups::parse(&["arch=amd64", "release~(trusty|xenial)"]).unwrap(),
            FilterGroups::parse(&["ftype=root.tar.xz", "--or", "release=precise"]).unwrap(),
            FilterGroups::parse(&["nokey!=x", "version_name~^2016"]).unwrap(),
            FilterGroups::parse(&["release!~."]).unwrap(),
        ];
        /// A product's name and its versions' names and item handles.
        type Shape = (String, Vec<(String, Vec<ItemAt>)>);
        for g in &groups {
            let each: Vec<Shape> = select_each(&p, g)
                .map(|sp| {
                    let versions = sp
                        .versions
                        .iter()
                        .map(|v| (v.name.to_owned(), v.items.iter().map(|i| i.at()).collect()))
                        .collect();
                    (sp.name.to_owned(), versions)
                })
                .collect();
            let at: Vec<Shape> = select_at(&p, g)
                .map(|sp| {
                    let names = sp.version_names_desc();
                    let versions: Vec<_> = sp
                        .versions
                        .into_iter()
                        .map(|(v, ats)| (v.to_owned(), ats))
                        .collect();
                    let mut sorted: Vec<String> = versions.iter().map(|v| v.0.clone()).collect();
                    sorted.sort_by(|a, b| b.cmp(a));
                    assert_eq!(names, sorted);
                    (sp.name.to_owned(), versions)
                })
                .collect();
            assert_eq!(at, each);
        }
        assert_eq!(select_at(&p, &groups[0]).count(), 51);
    }
}

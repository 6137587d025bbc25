//! MAAS client rules, checked on filtered metadata before the flip (issue 12 item 3).
//!
//! MAAS 3.8 reads a boot source through strict pydantic models (`src/maasservicelayer/simplestreams/`
//! in canonical/maas, `models.py` and `client.py`, read 2026-11): the index as
//! `SimpleStreamsIndexList`, then every products document it lists as a whole as one of
//! `SimpleStreamsBootloaderProductList`, `SimpleStreamsMultiFileProductList` or
//! `SimpleStreamsSingleFileProductList`; a document that fits none is refused whole ("Got
//! invalid data for the products file"), an index that does not fit stops the import. MAAS 3.8
//! reads the JSON **as it is**: it does not expand condensed fields (a `label` or `os` given once
//! at the top of a document is not seen by its products; MAAS ≤ 3.7, through python-simplestreams,
//! does expand). So the rules are checked on the documents as written. For MAAS content (a
//! `com.ubuntu.maas*` content id, or a document with MAAS fields: a `boot-kernel` item or a
//! `bootloader-type`) the rules, named after those models, are:
//! - `document-field:<f>` (`SimpleStreamsProductList`): `content_id`; `datatype` (`image-ids` or
//!   `image-downloads`); `updated` (`%a, %d %b %Y %H:%M:%S %z`, e.g. `… +0000` but not `GMT`,
//!   or ISO 8601); `products` (not empty).
//! - `document-model:<A>+<B>`: every product of one document fits the same model
//!   (`BootloaderProduct`, `MultiFileProduct`, `SingleFileProduct`): a document mixing them
//!   fits none of the three lists.
//! - `product-field:<f>` (`Product`): every product has `arch`, `label`, `os` and `versions`;
//!   image products (`ImageProduct`) also `release`, `release_title`, `subarch`, `subarches`,
//!   `version`; bootloader products (`BootloaderProduct`, the ones with a `bootloader-type`)
//!   `arches`, `bootloader-type`. Strings, on the product itself.
//! - `version-item:<name>`: items are looked up by their *name* (the key under `items`, which
//!   MAAS unpacks into the version). A multi-file image version (`MultiFileImageVersion`) keeps
//!   `boot-kernel`, `boot-initrd`, `manifest`, and `squashfs` or `root-image.gz`
//!   (`version-item:squashfs|root-image.gz`); a single-file one (`SingleFileImageVersion`, an
//!   image product with a `root-tgz` item, e.g. CentOS) keeps `manifest` and `root-tgz`; a
//!   bootloader version (`BootloaderVersion`) keeps at least one of `grub2-signed`,
//!   `shim-signed`, `grub2`, `syslinux` (`version-item:grub2-signed|shim-signed|grub2|syslinux`).
//! - `item-field:<f>` (`DownloadableFile`): each of those named items has `ftype`, `path`,
//!   `sha256` (strings) and `size` (an integer); `bootloader-item-field:<f>` (`BootloaderFile`):
//!   each named bootloader item also has `src_package`, `src_release`, `src_version`. Items with
//!   other names are not read by MAAS and not checked.
//! - `index-field:updated` and `index-entry-field:<f>` (`SimpleStreamsIndexList`,
//!   `IndexContent`): the index's `updated`, and on every entry `path`, `updated` and
//!   `products` (a list), and a `datatype`, if any, `image-ids` or `image-downloads`.
//!
//! Only what the filters broke counts: a violation the upstream document of the same content id
//! (or the upstream index) already has — in any input of a composition — is a warning, never a
//! refusal. The rest makes `publish` refuse (naming content id, product, version and rule)
//! unless `--force` ([`enforce`], for a local and an S3 DEST alike). Verbatim metadata is
//! upstream's and is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Map, Value};

use crate::catalog::{MetadataMode, Snapshot};
use crate::error::{Error, Result};
use crate::vault::Vault;

use super::metadata;

/// `(product, version, rule)`; `version` is empty for product rules, both are empty for
/// document rules. For index rules `product` is the entry's content id.
pub type Violation = (String, String, String);

/// The outcome of the check.
#[derive(Debug, Default)]
pub struct Findings {
    /// Broken by the filters: `content_id: product version: rule`.
    pub broken: Vec<String>,
    /// Already broken upstream.
    pub upstream: Vec<String>,
}

const MULTI_FILE: [&str; 5] = [
    "boot-kernel",
    "boot-initrd",
    "manifest",
    "squashfs",
    "root-image.gz",
];
const SINGLE_FILE: [&str; 2] = ["manifest", "root-tgz"];
const BOOTLOADER: [&str; 4] = ["grub2-signed", "shim-signed", "grub2", "syslinux"];

/// Which MAAS model a product is read with.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Bootloader,
    MultiFile,
    SingleFile,
}

impl Kind {
    fn model(self) -> &'static str {
        match self {
            Kind::Bootloader => "BootloaderProduct",
            Kind::MultiFile => "MultiFileProduct",
            Kind::SingleFile => "SingleFileProduct",
        }
    }
}

fn object(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

/// Every `items` object of a product.
fn all_items(p: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    object(p.get("versions"))
        .into_iter()
        .flat_map(|vs| vs.values())
        .filter_map(|v| object(v.get("items")))
}

fn is_str(o: &Map<String, Value>, k: &str) -> bool {
    o.get(k).is_some_and(Value::is_string)
}

/// An integer as pydantic's lax mode takes it (a JSON integer, an integral float, a string of
/// digits).
fn is_int(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        Some(Value::String(s)) => s.trim().parse::<i64>().is_ok(),
        _ => false,
    }
}

/// An `updated` value MAAS 3.8 parses: `%a, %d %b %Y %H:%M:%S %z` (a numeric zone or `Z`; an
/// HTTP date's `GMT` is refused), else ISO 8601 (`datetime.fromisoformat`).
pub fn maas_date(s: &str) -> bool {
    rfc2822_numeric(s) || iso8601(s)
}

fn rfc2822_numeric(s: &str) -> bool {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let f: Vec<&str> = s.split_whitespace().collect();
    let [wd, d, mon, y, hms, zone] = f.as_slice() else {
        return false;
    };
    let digits = |t: &str, min: usize, max: usize| {
        (min..=max).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())
    };
    let time = hms.split(':').collect::<Vec<_>>();
    let zone_ok = *zone == "Z"
        || zone
            .strip_prefix(['+', '-'])
            .is_some_and(|z| digits(&z.replace(':', ""), 4, 4));
    wd.strip_suffix(',')
        .is_some_and(|w| DAYS.contains(&w.to_ascii_lowercase().as_str()))
        && digits(d, 1, 2)
        && MONTHS.contains(&mon.to_ascii_lowercase().as_str())
        && digits(y, 4, 4)
        && time.len() == 3
        && time.iter().all(|t| digits(t, 1, 2))
        && zone_ok
}

fn iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    let date = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    date && (b.len() == 10
        || ((b[10] == b'T' || b[10] == b' ') && b.len() > 11 && b[11].is_ascii_digit()))
}

/// The model a product is read with: a `bootloader-type` (or only bootloader items) makes a
/// bootloader, a `root-tgz` item a single-file image, anything else a multi-file image.
fn kind(p: &Map<String, Value>) -> Kind {
    if p.contains_key("bootloader-type") {
        return Kind::Bootloader;
    }
    let mut names = all_items(p).flat_map(|i| i.keys());
    let names: BTreeSet<&str> = names.by_ref().map(String::as_str).collect();
    if names.contains("root-tgz") {
        Kind::SingleFile
    } else if !names.is_empty() && names.iter().all(|n| BOOTLOADER.contains(n)) {
        Kind::Bootloader
    } else {
        Kind::MultiFile
    }
}

/// MAAS content: a `com.ubuntu.maas*` content id, a `boot-kernel` item or a `bootloader-type`.
pub fn is_maas(doc: &Value) -> bool {
    let cid = doc.get("content_id").and_then(Value::as_str).unwrap_or("");
    if cid.starts_with("com.ubuntu.maas") || doc.get("bootloader-type").is_some() {
        return true;
    }
    object(doc.get("products")).is_some_and(|ps| {
        ps.values().filter_map(Value::as_object).any(|p| {
            p.contains_key("bootloader-type")
                || all_items(p).any(|items| {
                    items.iter().any(|(n, i)| {
                        n == "boot-kernel"
                            || i.get("ftype").and_then(Value::as_str) == Some("boot-kernel")
                    })
                })
        })
    })
}

/// Every rule products document `doc` breaks, read as MAAS 3.8 reads it (no expansion).
pub fn violations(doc: &Value) -> BTreeSet<Violation> {
    let mut out = BTreeSet::new();
    let mut push = |product: &str, version: &str, rule: String| {
        out.insert((product.to_string(), version.to_string(), rule));
    };
    let empty = Map::new();
    let top = doc.as_object().unwrap_or(&empty);
    if !is_str(top, "content_id") {
        push("", "", "document-field:content_id".into());
    }
    match top.get("datatype").and_then(Value::as_str) {
        Some("image-ids" | "image-downloads") => {}
        _ => push("", "", "document-field:datatype".into()),
    }
    if !top
        .get("updated")
        .and_then(Value::as_str)
        .is_some_and(maas_date)
    {
        push("", "", "document-field:updated".into());
    }
    let products = object(top.get("products")).unwrap_or(&empty);
    if products.is_empty() {
        push("", "", "document-field:products".into());
    }
    let mut kinds = BTreeSet::new();
    for (pid, pv) in products {
        let p = pv.as_object().unwrap_or(&empty);
        let k = kind(p);
        kinds.insert(k);
        let mut need = vec!["arch", "label", "os"];
        match k {
            Kind::Bootloader => need.extend(["arches", "bootloader-type"]),
            Kind::MultiFile | Kind::SingleFile => need.extend([
                "release",
                "release_title",
                "subarch",
                "subarches",
                "version",
            ]),
        }
        for f in need {
            if !is_str(p, f) {
                push(pid, "", format!("product-field:{f}"));
            }
        }
        let versions = object(p.get("versions")).unwrap_or(&empty);
        if versions.is_empty() {
            push(pid, "", "product-field:versions".into());
        }
        let (read, all, any): (&[&str], &[&str], &[&str]) = match k {
            Kind::MultiFile => (
                &MULTI_FILE,
                &["boot-kernel", "boot-initrd", "manifest"],
                &["squashfs", "root-image.gz"],
            ),
            Kind::SingleFile => (&SINGLE_FILE, &SINGLE_FILE, &[]),
            Kind::Bootloader => (&BOOTLOADER, &[], &BOOTLOADER),
        };
        for (vn, vv) in versions {
            let items = object(vv.get("items")).unwrap_or(&empty);
            for need in all {
                if !items.contains_key(*need) {
                    push(pid, vn, format!("version-item:{need}"));
                }
            }
            if !any.is_empty() && !any.iter().any(|a| items.contains_key(*a)) {
                push(pid, vn, format!("version-item:{}", any.join("|")));
            }
            for name in read {
                let Some(it) = items.get(*name) else {
                    continue;
                };
                let it = it.as_object().unwrap_or(&empty);
                for f in ["ftype", "path", "sha256"] {
                    if !is_str(it, f) {
                        push(pid, vn, format!("item-field:{f}"));
                    }
                }
                if !is_int(it.get("size")) {
                    push(pid, vn, "item-field:size".into());
                }
                if k == Kind::Bootloader {
                    for f in ["src_package", "src_release", "src_version"] {
                        if !is_str(it, f) {
                            push(pid, vn, format!("bootloader-item-field:{f}"));
                        }
                    }
                }
            }
        }
    }
    if kinds.len() > 1 {
        let models: Vec<&str> = kinds.iter().map(|k| k.model()).collect();
        push("", "", format!("document-model:{}", models.join("+")));
    }
    out
}

/// Every rule index document `index` breaks (`product`: the entry's content id).
pub fn index_violations(index: &Value) -> BTreeSet<Violation> {
    let mut out = BTreeSet::new();
    if !index
        .get("updated")
        .and_then(Value::as_str)
        .is_some_and(maas_date)
    {
        out.insert((String::new(), String::new(), "index-field:updated".into()));
    }
    for (cid, e) in object(index.get("index")).into_iter().flatten() {
        let e = e.as_object();
        let mut bad = |f: &str| {
            out.insert((cid.clone(), String::new(), format!("index-entry-field:{f}")));
        };
        if !e.is_some_and(|e| is_str(e, "path")) {
            bad("path");
        }
        if !e
            .and_then(|e| e.get("updated"))
            .and_then(Value::as_str)
            .is_some_and(maas_date)
        {
            bad("updated");
        }
        if e.and_then(|e| e.get("datatype"))
            .is_some_and(|d| !matches!(d.as_str(), Some("image-ids" | "image-downloads")))
        {
            bad("datatype");
        }
        if !e
            .and_then(|e| e.get("products"))
            .is_some_and(|p| p.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
        {
            bad("products");
        }
    }
    out
}

/// A tree's document as JSON (unwrapped when clearsigned); `None` when absent or not JSON.
fn read_doc(path: &Path) -> Option<Value> {
    let bytes = std::fs::read(path).ok()?;
    let payload = if crate::openpgp::is_clearsigned(&bytes) {
        crate::openpgp::unwrap_cleartext(&bytes).ok()?
    } else {
        bytes
    };
    serde_json::from_slice(&payload).ok()
}

/// Check the filtered documents of `tree` — its index `index_json` and every products document
/// that index lists, as MAAS follows them — against the rules, and against the upstream
/// documents of `inputs` (one snapshot, or every input of a composition).
pub fn check(
    vault: &Vault,
    inputs: &[Snapshot],
    tree: &Path,
    index_json: &str,
) -> Result<Findings> {
    let mut upstream: BTreeMap<String, BTreeSet<Violation>> = BTreeMap::new();
    let mut upstream_index: BTreeSet<Violation> = BTreeSet::new();
    for snap in inputs {
        for d in vault.catalog.documents(snap.id)? {
            let Ok(value) = vault.document_json(snap.id, &d) else {
                continue;
            };
            match d.kind.as_str() {
                "products" => upstream
                    .entry(metadata::content_id(&d, &value))
                    .or_default()
                    .extend(violations(&value)),
                "index" => upstream_index.extend(index_violations(&value)),
                _ => {}
            }
        }
    }
    let mut out = Findings::default();
    let Some(index) = read_doc(&tree.join(index_json)) else {
        return Ok(out);
    };
    let mut file = |line: String, upstream_has: bool| {
        if upstream_has {
            out.upstream.push(line);
        } else {
            out.broken.push(line);
        }
    };
    let mut any_maas = false;
    for (cid, e) in object(index.get("index")).into_iter().flatten() {
        let Some(path) = e.get("path").and_then(Value::as_str) else {
            continue;
        };
        let Some(doc) = crate::streams::check_path(path)
            .ok()
            .and_then(|_| read_doc(&tree.join(path)))
        else {
            continue;
        };
        if !is_maas(&doc) {
            continue;
        }
        any_maas = true;
        let up = upstream.get(cid);
        for v in violations(&doc) {
            let (product, version, rule) = &v;
            let line = if product.is_empty() {
                format!("{cid}: {rule}")
            } else if version.is_empty() {
                format!("{cid}: product {product}: {rule}")
            } else {
                format!("{cid}: product {product} version {version}: {rule}")
            };
            file(line, up.is_some_and(|u| u.contains(&v)));
        }
    }
    if any_maas {
        for v in index_violations(&index) {
            let line = if v.0.is_empty() {
                format!("{index_json}: {}", v.2)
            } else {
                format!("{index_json}: entry {}: {}", v.0, v.2)
            };
            file(line, upstream_index.contains(&v));
        }
    }
    Ok(out)
}

/// The MAAS rules of a filtered tree about to be published (to a local or an S3 DEST): the
/// warnings to print (rules already broken upstream; with `force`, those the filters broke),
/// or [`Error::MaasRules`] when the filters broke one and `force` is not given.
pub fn enforce(
    vault: &Vault,
    inputs: &[Snapshot],
    tree: &Path,
    starts: &[String],
    mode: MetadataMode,
    force: bool,
) -> Result<Vec<String>> {
    let Some(index) = starts.first().filter(|_| mode == MetadataMode::Filtered) else {
        return Ok(Vec::new());
    };
    let f = check(vault, inputs, tree, index)?;
    if !f.broken.is_empty() && !force {
        return Err(Error::MaasRules {
            count: f.broken.len(),
            examples: f
                .broken
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let mut warnings: Vec<String> = f
        .broken
        .iter()
        .map(|b| format!("MAAS rule broken by the filters (--force): {b}"))
        .collect();
    warnings.extend(
        f.upstream
            .iter()
            .map(|u| format!("MAAS rule already broken upstream: {u}")),
    );
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One document of each model: `p` multi-file (Ubuntu), `c` single-file (CentOS), `b` a
    /// bootloader; every field on the product itself, as images.maas.io writes them.
    const FULL: &str = r#"{"format":"products:1.0","content_id":"com.ubuntu.maas:stable:v3:download",
      "datatype":"image-ids","updated":"Thu, 24 Jul 2025 09:01:43 +0000","products":{
      "p":{"arch":"amd64","release":"jammy","release_title":"22.04 LTS","subarch":"ga-22.04",
        "subarches":"generic","version":"22.04","os":"ubuntu","label":"stable","versions":{"1":{"items":{
          "boot-kernel":{"ftype":"boot-kernel","path":"a/k","sha256":"aa","size":1},
          "boot-initrd":{"ftype":"boot-initrd","path":"a/i","sha256":"aa","size":1},
          "manifest":{"ftype":"manifest","path":"a/m","sha256":"aa","size":1},
          "squashfs":{"ftype":"squashfs","path":"a/s","sha256":"aa","size":1}}}}},
      "c":{"arch":"amd64","release":"centos70","release_title":"CentOS 7","subarch":"generic",
        "subarches":"generic","version":"7.0","os":"centos","label":"stable","versions":{"1":{"items":{
          "manifest":{"ftype":"manifest","path":"c/m","sha256":"aa","size":1},
          "root-tgz":{"ftype":"root-tgz","path":"c/r","sha256":"aa","size":1}}}}},
      "b":{"arch":"amd64","arches":"amd64","bootloader-type":"uefi","os":"grub-efi-signed",
        "label":"stable","versions":{"1":{"items":{"grub2-signed":{"ftype":"archive.tar.xz",
          "path":"b/g","sha256":"aa","size":1,
          "src_package":"grub2","src_release":"jammy","src_version":"2.06"}}}}}}}"#;

    /// `json` with only the products `keep`.
    fn only(json: &str, keep: &[&str]) -> Value {
        let mut v: Value = serde_json::from_str(json).unwrap();
        v["products"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| keep.contains(&k.as_str()));
        v
    }

    fn want(v: &[(&str, &str, &str)]) -> BTreeSet<Violation> {
        v.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    }

    #[test]
    fn a_complete_maas_document_of_each_model_keeps_every_rule() {
        for p in ["p", "c", "b"] {
            let doc = only(FULL, &[p]);
            assert!(is_maas(&doc), "{p}");
            assert!(violations(&doc).is_empty(), "{p}: {:?}", violations(&doc));
        }
    }

    #[test]
    fn a_document_mixing_models_fits_none_of_maas_product_lists() {
        assert_eq!(
            violations(&only(FULL, &["p", "c", "b"])),
            want(&[(
                "",
                "",
                "document-model:BootloaderProduct+MultiFileProduct+SingleFileProduct"
            )])
        );
    }

    #[test]
    fn condensed_fields_are_not_expanded_as_maas_3_8_reads_the_json_as_it_is() {
        let doc = FULL
            .replace(r#""os":"ubuntu","label":"stable","#, "")
            .replace(
                r#""datatype":"image-ids","#,
                r#""datatype":"image-ids","os":"ubuntu","label":"stable","#,
            );
        assert_eq!(
            violations(&only(&doc, &["p"])),
            want(&[
                ("p", "", "product-field:label"),
                ("p", "", "product-field:os")
            ])
        );
    }

    #[test]
    fn dropped_items_and_fields_are_named_by_product_version_and_rule() {
        let broken = FULL
            .replace(
                r#""manifest":{"ftype":"manifest","path":"a/m","sha256":"aa","size":1},"#,
                "",
            )
            .replace(
                r#""squashfs":{"ftype":"squashfs","path":"a/s","sha256":"aa","size":1}"#,
                r#""x":{"ftype":"x","path":"a/x"}"#,
            )
            .replace(r#""src_version":"2.06""#, r#""other":"1""#)
            .replace(r#""release_title":"22.04 LTS","#, "");
        assert_eq!(
            violations(&only(&broken, &["p"])),
            want(&[
                ("p", "", "product-field:release_title"),
                ("p", "1", "version-item:manifest"),
                ("p", "1", "version-item:squashfs|root-image.gz"),
            ])
        );
        assert_eq!(
            violations(&only(&broken, &["b"])),
            want(&[("b", "1", "bootloader-item-field:src_version")])
        );
    }

    #[test]
    fn items_are_read_by_name_as_maas_unpacks_them() {
        // MAAS unpacks `items` by key: a squashfs under another name does not count, a named
        // item without its sha256 fails `DownloadableFile`, and so does a size that is no
        // integer.
        let renamed = FULL
            .replace(r#""squashfs":{"ftype""#, r#""disk":{"ftype""#)
            .replace(
                r#""path":"a/k","sha256":"aa","size":1"#,
                r#""path":"a/k","size":1"#,
            )
            .replace(
                r#""path":"a/i","sha256":"aa","size":1"#,
                r#""path":"a/i","sha256":"aa","size":"big""#,
            );
        assert_eq!(
            violations(&only(&renamed, &["p"])),
            want(&[
                ("p", "1", "item-field:sha256"),
                ("p", "1", "item-field:size"),
                ("p", "1", "version-item:squashfs|root-image.gz"),
            ])
        );
    }

    #[test]
    fn single_file_bootloader_and_document_rules() {
        let broken = FULL
            .replace(
                r#""root-tgz":{"ftype":"root-tgz","path":"c/r","sha256":"aa","size":1}"#,
                r#""other":{"ftype":"root-tgz","path":"c/r","sha256":"aa","size":1}"#,
            )
            .replace(r#""grub2-signed":{"ftype""#, r#""grub-x":{"ftype""#)
            .replace(r#""datatype":"image-ids","#, "")
            .replace(
                "Thu, 24 Jul 2025 09:01:43 +0000",
                "Thu, 24 Jul 2025 09:01:43 GMT",
            );
        assert_eq!(
            violations(&only(&broken, &["b"])),
            want(&[
                ("", "", "document-field:datatype"),
                ("", "", "document-field:updated"),
                (
                    "b",
                    "1",
                    "version-item:grub2-signed|shim-signed|grub2|syslinux"
                ),
            ])
        );
        // without a root-tgz the CentOS product is read as a multi-file image
        assert_eq!(
            violations(&only(&broken, &["c"])),
            want(&[
                ("", "", "document-field:datatype"),
                ("", "", "document-field:updated"),
                ("c", "1", "version-item:boot-initrd"),
                ("c", "1", "version-item:boot-kernel"),
                ("c", "1", "version-item:squashfs|root-image.gz"),
            ])
        );
        assert!(violations(&only(FULL, &[])).contains(&(
            String::new(),
            String::new(),
            "document-field:products".to_string()
        )));
    }

    #[test]
    fn updated_dates_as_maas_parses_them() {
        for ok in [
            "Thu, 24 Jul 2025 09:01:43 +0000",
            "Sun, 29 Nov 2026 12:54:28 -05:00",
            "Mon, 1 Apr 2024 00:00:00 Z",
            "2026-11-29T12:54:28+00:00",
            "2026-11-29",
        ] {
            assert!(maas_date(ok), "{ok}");
        }
        for bad in [
            "Sun, 29 Nov 2026 12:54:28 GMT",
            "29 Nov 2026 12:54:28 +0000",
            "yesterday",
            "",
        ] {
            assert!(!maas_date(bad), "{bad}");
        }
        assert!(maas_date(&metadata::now_updated()));
    }

    /// Every rule each generated document (and the index) breaks.
    fn generated_violations(
        generate: fn(
            &Path,
            &crate::streamgen::StreamSpec,
            Option<crate::streamgen::SignFn<'_>>,
        )
            -> std::result::Result<crate::streamgen::Summary, crate::streamgen::GenError>,
    ) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::streamgen::StreamSpec::generation(2);
        let summary = generate(dir.path(), &spec, None).unwrap();
        let mut out = Vec::new();
        for m in &summary.metadata {
            let doc: Value =
                serde_json::from_slice(&std::fs::read(dir.path().join(m)).unwrap()).unwrap();
            let found = if m.ends_with("index.json") {
                index_violations(&doc)
            } else {
                assert!(is_maas(&doc), "{m}");
                violations(&doc)
            };
            out.extend(found.into_iter().map(|v| format!("{m}: {v:?}")));
        }
        out
    }

    #[test]
    fn the_demo_stream_keeps_every_maas_rule_and_the_test_stream_does_not() {
        assert_eq!(
            generated_violations(crate::streamgen::generate_for_maas),
            Vec::<String>::new()
        );
        // The make_stream.py shape the tests use: label/os condensed, a sorttest product,
        // bootloaders without src_version.
        let test_stream = generated_violations(crate::streamgen::generate);
        for rule in [
            "product-field:label",
            "version-item:boot-kernel",
            "bootloader-item-field:src_version",
        ] {
            assert!(
                test_stream.iter().any(|v| v.contains(rule)),
                "{rule}: {test_stream:?}"
            );
        }
    }

    #[test]
    fn index_rules_per_entry() {
        let index: Value = serde_json::from_str(
            r#"{"format":"index:1.0","updated":"Sun, 29 Nov 2026 12:54:28 GMT","index":{
              "a":{"path":"streams/v1/a.json","updated":"Sun, 29 Nov 2026 12:54:28 +0000","products":["x"]},
              "b":{"path":"streams/v1/b.json","products":"x","datatype":"images"}}}"#,
        )
        .unwrap();
        assert_eq!(
            index_violations(&index),
            want(&[
                ("", "", "index-field:updated"),
                ("b", "", "index-entry-field:datatype"),
                ("b", "", "index-entry-field:products"),
                ("b", "", "index-entry-field:updated"),
            ])
        );
    }
}

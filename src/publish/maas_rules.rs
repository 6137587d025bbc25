//! MAAS client rules, checked on filtered metadata before the flip (issue 12 item 3).
//!
//! MAAS 3.8 reads every products document through strict pydantic models
//! (`src/maasservicelayer/simplestreams/models.py` in canonical/maas, read 2026-11: a document
//! must validate as a whole as one of `SimpleStreamsBootloaderProductList`,
//! `SimpleStreamsMultiFileProductList` or `SimpleStreamsSingleFileProductList`, else the whole
//! document is refused). For MAAS content (a `com.ubuntu.maas*` content id, or products with MAAS
//! fields: a `boot-kernel` item or a `bootloader-type`), on the flattened view (condensed fields
//! expanded), the rules, named after those models, are:
//! - `document-field:datatype` (`image-ids` or `image-downloads`) and `document-field:updated`.
//! - `product-field:<f>` (`Product`): every product has `arch`, `label`, `os`; image products
//!   (`ImageProduct`) also `release`, `release_title`, `subarch`, `subarches`, `version`;
//!   bootloader products (`BootloaderProduct`, the ones with a `bootloader-type`) `arches`,
//!   `bootloader-type`.
//! - `version-item:<name>`: items are looked up by their *name* (the key under `items`, which
//!   MAAS unpacks into the version). A multi-file image version (`MultiFileImageVersion`) keeps
//!   `boot-kernel`, `boot-initrd`, `manifest`, and `squashfs` or `root-image.gz`
//!   (`version-item:squashfs|root-image.gz`); a single-file one (`SingleFileImageVersion`, an
//!   image product with a `root-tgz` item, e.g. CentOS) keeps `manifest` and `root-tgz`; a
//!   bootloader version (`BootloaderVersion`) keeps at least one of `grub2-signed`,
//!   `shim-signed`, `grub2`, `syslinux` (`version-item:grub2-signed|shim-signed|grub2|syslinux`).
//! - `item-field:<f>` (`DownloadableFile`): each of those named items has `ftype`, `path`,
//!   `sha256` and `size`; `bootloader-item-field:<f>` (`BootloaderFile`): each named bootloader
//!   item also has `src_package`, `src_release`, `src_version`. Items with other names are not
//!   read by MAAS and not checked.
//!
//! Only what the filters broke counts: a violation the upstream document of the same content id
//! already has is a warning, never a refusal. The rest makes `publish` refuse (naming product,
//! version and rule) unless `--force`. Verbatim metadata is upstream's and is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::catalog::Snapshot;
use crate::error::Result;
use crate::streams::{self, Document, FlatItem, Products};
use crate::vault::Vault;

/// `(product, version, rule)`; `version` is empty for product rules, both are empty for
/// document rules.
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

fn is_maas(p: &Products) -> bool {
    p.content_id().starts_with("com.ubuntu.maas")
        || p.items()
            .any(|i| i.get("ftype") == Some("boot-kernel") || i.get("bootloader-type").is_some())
}

/// Which MAAS model a product is read with.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bootloader,
    MultiFile,
    SingleFile,
}

fn has(i: &FlatItem<'_>, k: &str) -> bool {
    i.get(k).is_some_and(|v| !v.is_empty())
}

/// Every rule `p` breaks.
pub fn violations(p: &Products) -> BTreeSet<Violation> {
    let mut out = BTreeSet::new();
    let mut push = |product: &str, version: &str, rule: String| {
        out.insert((product.to_string(), version.to_string(), rule));
    };
    match p.top_field("datatype") {
        Some("image-ids" | "image-downloads") => {}
        _ => push("", "", "document-field:datatype".into()),
    }
    if p.top_field("updated").is_none_or(str::is_empty) {
        push("", "", "document-field:updated".into());
    }
    // The kind of each product (decided over all its items), then the item names per version.
    let mut kinds: BTreeMap<&str, Kind> = BTreeMap::new();
    for i in p.items() {
        let k = if has(&i, "bootloader-type") {
            Kind::Bootloader
        } else if i.item == "root-tgz" {
            Kind::SingleFile
        } else {
            Kind::MultiFile
        };
        let e = kinds.entry(i.product).or_insert(k);
        if *e == Kind::MultiFile && k != Kind::MultiFile {
            *e = k;
        }
    }
    let mut names: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    let mut seen_product: BTreeSet<&str> = BTreeSet::new();
    for i in p.items() {
        let kind = kinds.get(i.product).copied().unwrap_or(Kind::MultiFile);
        if seen_product.insert(i.product) {
            let mut need = vec!["arch", "label", "os"];
            match kind {
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
                if !has(&i, f) {
                    push(i.product, "", format!("product-field:{f}"));
                }
            }
        }
        names
            .entry((i.product, i.version))
            .or_default()
            .insert(i.item);
        let read: &[&str] = match kind {
            Kind::Bootloader => &BOOTLOADER,
            Kind::MultiFile => &MULTI_FILE,
            Kind::SingleFile => &SINGLE_FILE,
        };
        if !read.contains(&i.item) {
            continue;
        }
        for f in ["ftype", "path", "sha256", "size"] {
            if !has(&i, f) {
                push(i.product, i.version, format!("item-field:{f}"));
            }
        }
        if kind == Kind::Bootloader {
            for f in ["src_package", "src_release", "src_version"] {
                if !has(&i, f) {
                    push(i.product, i.version, format!("bootloader-item-field:{f}"));
                }
            }
        }
    }
    for ((product, version), n) in names {
        let kind = kinds.get(product).copied().unwrap_or(Kind::MultiFile);
        let (all, any): (&[&str], &[&str]) = match kind {
            Kind::MultiFile => (
                &["boot-kernel", "boot-initrd", "manifest"],
                &["squashfs", "root-image.gz"],
            ),
            Kind::SingleFile => (&SINGLE_FILE, &[]),
            Kind::Bootloader => (&[], &BOOTLOADER),
        };
        for need in all {
            if !n.contains(need) {
                push(product, version, format!("version-item:{need}"));
            }
        }
        if !any.is_empty() && !any.iter().any(|a| n.contains(a)) {
            push(product, version, format!("version-item:{}", any.join("|")));
        }
    }
    out
}

fn products_of(name: &str, bytes: &[u8]) -> Option<Products> {
    let payload = if bytes.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") {
        crate::openpgp::unwrap_cleartext(bytes).ok()?
    } else {
        bytes.to_vec()
    };
    match streams::parse(name, &payload) {
        Ok(Document::Products(p)) => Some(p),
        _ => None,
    }
}

/// Check the filtered products documents (`.json`) in the directory of the tree's index
/// `index_json` against the rules, and against the snapshot's upstream documents.
pub fn check(vault: &Vault, snap: &Snapshot, tree: &Path, index_json: &str) -> Result<Findings> {
    let mut upstream: BTreeMap<String, BTreeSet<Violation>> = BTreeMap::new();
    for d in vault.catalog.documents(snap.id)? {
        if d.kind != "products" {
            continue;
        }
        let path = vault.layout.blob_path(&d.blob);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Some(p) = products_of(&d.path, &bytes) {
            upstream.insert(p.content_id().to_string(), violations(&p));
        }
    }
    let mut out = Findings::default();
    let dir = tree.join(index_json);
    let Some(dir) = dir.parent() else {
        return Ok(out);
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let Some(p) = products_of(&f.display().to_string(), &bytes) else {
            continue;
        };
        if !is_maas(&p) {
            continue;
        }
        let cid = p.content_id().to_string();
        let up = upstream.get(&cid);
        for (product, version, rule) in violations(&p) {
            let line = if product.is_empty() {
                format!("{cid}: {rule}")
            } else if version.is_empty() {
                format!("{cid}: product {product}: {rule}")
            } else {
                format!("{cid}: product {product} version {version}: {rule}")
            };
            if up.is_some_and(|u| u.contains(&(product.clone(), version.clone(), rule.clone()))) {
                out.upstream.push(line);
            } else {
                out.broken.push(line);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products(json: &str) -> Products {
        match streams::parse("t", json.as_bytes()).unwrap() {
            Document::Products(p) => p,
            Document::Index(_) => panic!(),
        }
    }

    const FULL: &str = r#"{"format":"products:1.0","content_id":"com.ubuntu.maas:stable:v3:download",
      "datatype":"image-ids","updated":"Thu, 24 Jul 2025 09:01:43 +0000",
      "os":"ubuntu","label":"stable","products":{
      "p":{"arch":"amd64","release":"jammy","release_title":"22.04 LTS","subarch":"ga-22.04",
        "subarches":"generic","version":"22.04","versions":{"1":{"items":{
          "boot-kernel":{"ftype":"boot-kernel","path":"a/k","sha256":"aa","size":1},
          "boot-initrd":{"ftype":"boot-initrd","path":"a/i","sha256":"aa","size":1},
          "manifest":{"ftype":"manifest","path":"a/m","sha256":"aa","size":1},
          "squashfs":{"ftype":"squashfs","path":"a/s","sha256":"aa","size":1}}}}},
      "c":{"arch":"amd64","release":"centos70","release_title":"CentOS 7","subarch":"generic",
        "subarches":"generic","version":"7.0","os":"centos","versions":{"1":{"items":{
          "manifest":{"ftype":"manifest","path":"c/m","sha256":"aa","size":1},
          "root-tgz":{"ftype":"root-tgz","path":"c/r","sha256":"aa","size":1}}}}},
      "b":{"arch":"amd64","arches":"amd64","bootloader-type":"uefi","os":"grub-efi-signed",
        "versions":{"1":{"items":{"grub2-signed":{"ftype":"archive.tar.xz","path":"b/g",
          "sha256":"aa","size":1,
          "src_package":"grub2","src_release":"jammy","src_version":"2.06"}}}}}}}"#;

    #[test]
    fn a_complete_maas_document_keeps_every_rule() {
        let p = products(FULL);
        assert!(is_maas(&p));
        assert!(violations(&p).is_empty(), "{:?}", violations(&p));
    }

    fn want(v: &[(&str, &str, &str)]) -> BTreeSet<Violation> {
        v.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
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
            violations(&products(&broken)),
            want(&[
                ("p", "", "product-field:release_title"),
                ("p", "1", "version-item:manifest"),
                ("p", "1", "version-item:squashfs|root-image.gz"),
                ("b", "1", "bootloader-item-field:src_version"),
            ])
        );
    }

    #[test]
    fn items_are_read_by_name_as_maas_unpacks_them() {
        // MAAS unpacks `items` by key: a squashfs under another name does not count, and a
        // named item without its sha256 fails `DownloadableFile`.
        let renamed = FULL
            .replace(r#""squashfs":{"ftype""#, r#""disk":{"ftype""#)
            .replace(
                r#""path":"a/k","sha256":"aa","size":1"#,
                r#""path":"a/k","size":1"#,
            );
        assert_eq!(
            violations(&products(&renamed)),
            want(&[
                ("p", "1", "item-field:sha256"),
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
            .replace(r#""datatype":"image-ids","#, "");
        assert_eq!(
            violations(&products(&broken)),
            want(&[
                ("", "", "document-field:datatype"),
                (
                    "b",
                    "1",
                    "version-item:grub2-signed|shim-signed|grub2|syslinux"
                ),
                // without a root-tgz the CentOS product is read as a multi-file image
                ("c", "1", "version-item:boot-initrd"),
                ("c", "1", "version-item:boot-kernel"),
                ("c", "1", "version-item:squashfs|root-image.gz"),
            ])
        );
    }
}

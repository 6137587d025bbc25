//! MAAS client rules, checked on filtered metadata before the flip (issue 12 item 3).
//!
//! MAAS 3.8 validates every products document with strict models and rejects a whole document
//! for one bad product (spec/maas-client.md §3.4). For MAAS content (a `com.ubuntu.maas*`
//! content id, or products with MAAS fields: a `boot-kernel` item or a `bootloader-type`), on the
//! flattened view (condensed fields expanded), the rules are:
//! - `product-field:<f>`: every product has `arch`, `label`, `os`; Ubuntu image products also
//!   `release`, `release_title`, `subarch`, `subarches`, `version`; bootloader products
//!   `arches`, `bootloader-type`.
//! - `version-item:<ftype>`: every version of an Ubuntu image product keeps a `boot-kernel`, a
//!   `boot-initrd` and a `manifest` item, and `squashfs` or `root-image.gz`
//!   (`version-item:squashfs|root-image.gz`).
//! - `bootloader-item-field:<f>`: every bootloader item has `src_package`, `src_release`,
//!   `src_version`.
//!
//! Only what the filters broke counts: a violation the upstream document of the same content id
//! already has is a warning, never a refusal. The rest makes `publish` refuse (naming product,
//! version and rule) unless `--force`. Verbatim metadata is upstream's and is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::catalog::Snapshot;
use crate::error::Result;
use crate::streams::{self, Document, Products};
use crate::vault::Vault;

/// `(product, version, rule)`; `version` is empty for product rules.
pub type Violation = (String, String, String);

/// The outcome of the check.
#[derive(Debug, Default)]
pub struct Findings {
    /// Broken by the filters: `content_id: product version: rule`.
    pub broken: Vec<String>,
    /// Already broken upstream.
    pub upstream: Vec<String>,
}

fn is_maas(p: &Products) -> bool {
    p.content_id().starts_with("com.ubuntu.maas")
        || p.items()
            .any(|i| i.get("ftype") == Some("boot-kernel") || i.get("bootloader-type").is_some())
}

/// Every rule `p` breaks.
pub fn violations(p: &Products) -> BTreeSet<Violation> {
    let mut out = BTreeSet::new();
    // product → version → ftypes, and the flattened fields of the first item of each product
    let mut ftypes: BTreeMap<(&str, &str), BTreeSet<String>> = BTreeMap::new();
    let mut seen_product: BTreeSet<&str> = BTreeSet::new();
    let mut image_products: BTreeSet<&str> = BTreeSet::new();
    for i in p.items() {
        let bootloader = i.get("bootloader-type").is_some_and(|v| !v.is_empty());
        let image = !bootloader && i.get("os") == Some("ubuntu");
        let has = |k: &str| i.get(k).is_some_and(|v| !v.is_empty());
        if seen_product.insert(i.product) {
            let mut need = vec!["arch", "label", "os"];
            if image {
                need.extend([
                    "release",
                    "release_title",
                    "subarch",
                    "subarches",
                    "version",
                ]);
            }
            if bootloader {
                need.extend(["arches", "bootloader-type"]);
            }
            for f in need {
                if !has(f) {
                    out.insert((
                        i.product.into(),
                        String::new(),
                        format!("product-field:{f}"),
                    ));
                }
            }
        }
        if bootloader {
            for f in ["src_package", "src_release", "src_version"] {
                if !has(f) {
                    out.insert((
                        i.product.into(),
                        i.version.into(),
                        format!("bootloader-item-field:{f}"),
                    ));
                }
            }
        }
        if image {
            image_products.insert(i.product);
            ftypes
                .entry((i.product, i.version))
                .or_default()
                .insert(i.get("ftype").unwrap_or_default().to_string());
        }
    }
    for ((product, version), f) in ftypes {
        for need in ["boot-kernel", "boot-initrd", "manifest"] {
            if !f.contains(need) {
                out.insert((
                    product.into(),
                    version.into(),
                    format!("version-item:{need}"),
                ));
            }
        }
        if !f.contains("squashfs") && !f.contains("root-image.gz") {
            out.insert((
                product.into(),
                version.into(),
                "version-item:squashfs|root-image.gz".into(),
            ));
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
        let Some(path) = vault.layout.blob(&d.blob) else {
            continue;
        };
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
            let line = if version.is_empty() {
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
      "os":"ubuntu","label":"stable","products":{
      "p":{"arch":"amd64","release":"jammy","release_title":"22.04 LTS","subarch":"ga-22.04",
        "subarches":"generic","version":"22.04","versions":{"1":{"items":{
          "k":{"ftype":"boot-kernel","path":"a/k"},"i":{"ftype":"boot-initrd","path":"a/i"},
          "m":{"ftype":"manifest","path":"a/m"},"s":{"ftype":"squashfs","path":"a/s"}}}}},
      "b":{"arch":"amd64","arches":"amd64","bootloader-type":"uefi","os":"grub-efi-signed",
        "versions":{"1":{"items":{"g":{"ftype":"archive.tar.xz","path":"b/g",
          "src_package":"grub2","src_release":"jammy","src_version":"2.06"}}}}}}}"#;

    #[test]
    fn a_complete_maas_document_keeps_every_rule() {
        let p = products(FULL);
        assert!(is_maas(&p));
        assert!(violations(&p).is_empty(), "{:?}", violations(&p));
    }

    #[test]
    fn dropped_items_and_fields_are_named_by_product_version_and_rule() {
        let broken = FULL
            .replace(r#""m":{"ftype":"manifest","path":"a/m"},"#, "")
            .replace(
                r#""s":{"ftype":"squashfs","path":"a/s"}"#,
                r#""x":{"ftype":"x","path":"a/x"}"#,
            )
            .replace(r#""src_version":"2.06""#, r#""other":"1""#)
            .replace(r#""release_title":"22.04 LTS","#, "");
        let v = violations(&products(&broken));
        let want: BTreeSet<Violation> = [
            ("p", "", "product-field:release_title"),
            ("p", "1", "version-item:manifest"),
            ("p", "1", "version-item:squashfs|root-image.gz"),
            ("b", "1", "bootloader-item-field:src_version"),
        ]
        .into_iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
        assert_eq!(v, want);
    }
}

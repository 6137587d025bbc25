//! The one test-stream generator: builds MAAS-shaped SimpleStreams trees ([`generate`]) and an
//! LXD-shaped one ([`generate_lxd`]: `images`, `image-downloads`, split and unified images with
//! their `combined_*_sha256` fingerprints), and for the demo the MAAS one shaped as MAAS 3.8
//! reads it ([`generate_for_maas`]) — index, products files, optional clearsigned `.sjson`
//! copies, and real item files — for tests, the demo and benchmarks.
//!
//! Protects the fixture invariant every other test relies on: each item's `size` and `sha256` in the
//! generated metadata are those of the bytes on disk (hashed while they are written), the same
//! generation always produces the same bytes, and metadata files appear only complete (temp file +
//! rename), so a server never hands out half a document. Generations 1 and 2 are byte-for-byte the
//! `.json` documents of `spec/loopback/make_stream.py`.

mod dates;
mod files;
mod lxd;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use lxd::{LXD_CONTENT_ID, LXD_ROLLING_PRODUCT, generate_lxd, lxd_rolling_versions};

/// Content id of the MAAS v3 images products file.
pub const V3_CONTENT_ID: &str = "com.example.maas:stable:v3:download";
/// Content id of the bootloaders products file.
pub const BOOTLOADER_CONTENT_ID: &str = "com.example.maas:stable:1:bootloader-download";
/// Product name of the jammy/amd64 boot images, the product whose versions move with the generation.
#[cfg(test)]
pub(crate) const JAMMY_AMD64_PRODUCT: &str = "com.example.maas.stable:v3:boot:22.04:amd64:ga-22.04";
/// Prefix of the bulk product names (`<prefix>NNNN`), all listed in the v3 products file.
pub(crate) const BULK_PRODUCT_PREFIX: &str = "com.example.maas.stable:v3:bulk:";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// 1 or more. Generation g lists jammy/amd64 versions for the months g, g+1, g+2 of 2024
    /// (rolling into later years); everything else is the same in every generation.
    pub generation: u32,
    /// Extra products for benchmarks.
    pub bulk: Option<Bulk>,
    /// The `updated` string of every document; default: the first day of the month after the newest
    /// jammy/amd64 version, e.g. `Fri, 01 Mar 2024 00:00:00 +0000` for generation 1.
    pub updated: Option<String>,
}

impl StreamSpec {
    /// The plain stream of generation `generation`, without bulk products.
    pub fn generation(generation: u32) -> Self {
        StreamSpec {
            generation,
            bulk: None,
            updated: None,
        }
    }
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self::generation(1)
    }
}

/// Bulk products `com.example.maas.stable:v3:bulk:NNNN`, each with `versions` versions of
/// `files_per_version` items of `file_size` pseudo-random bytes, at `bulk/NNNN/<version>/file-MMMM`.
///
/// Version names are days `YYYYMMDD` starting at 2024-01-01 plus `generation - 1` days, so the next
/// generation adds one version and drops the oldest, like jammy/amd64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bulk {
    pub products: usize,
    pub versions: usize,
    pub files_per_version: usize,
    pub file_size: u64,
}

/// Signs a document: gets the exact payload, returns the clearsigned text.
pub(crate) type SignFn<'a> = &'a dyn Fn(&[u8]) -> Result<Vec<u8>, String>;

/// One generated item file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenItem {
    pub(crate) content_id: String,
    pub(crate) product: String,
    pub(crate) version: String,
    pub(crate) item: String,
    /// Relative to the tree root, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Number of item files (metadata not counted).
    pub files: usize,
    /// Total size of the item files.
    pub bytes: u64,
    /// Every item, in document order.
    pub items: Vec<GenItem>,
    /// The metadata files written, relative to the tree root (`streams/v1/...`).
    pub(crate) metadata: Vec<String>,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("stream generation must be at least 1, got {generation}")]
    Generation { generation: u32 },
    #[error("cannot create directory `{}`", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise `{}`", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("signing `{}` failed: {message}", path.display())]
    Sign { path: PathBuf, message: String },
}

/// How an item's bytes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// The item's path and a newline, repeated (exactly what make_stream.py writes).
    Pattern,
    /// Pseudo-random bytes seeded from the path (bulk files: nothing compresses or repeats).
    Random,
}

struct ItemSpec {
    name: String,
    path: String,
    size: u64,
    fill: Fill,
    /// Extra string fields besides path/size/sha256.
    fields: Vec<(&'static str, String)>,
}

struct ProductSpec {
    name: String,
    fields: Vec<(&'static str, String)>,
    versions: Vec<(String, Vec<ItemSpec>)>,
}

struct TreeSpec {
    content_id: &'static str,
    /// `image-ids` (MAAS) or `image-downloads` (LXD), in the products file and its index entry.
    datatype: &'static str,
    top: Vec<(&'static str, String)>,
    products: Vec<ProductSpec>,
}

/// The jammy/amd64 version names of generation `generation` (three months, oldest first).
pub(crate) fn jammy_amd64_versions(generation: u32) -> Vec<String> {
    (0..3u64)
        .map(|k| {
            let (y, m) = dates::month_from_2024(u64::from(generation.saturating_sub(1)) + k);
            format!("{y:04}{m:02}01")
        })
        .collect()
}

/// The default `updated` string of generation `generation`.
pub fn default_updated(generation: u32) -> String {
    let (y, m) = dates::month_from_2024(u64::from(generation) + 1);
    dates::rfc2822_midnight(y, m, 1)
}

/// The `updated` date of `spec` (its own, else its generation's); generation 0 is refused.
fn updated_of(spec: &StreamSpec) -> Result<String, GenError> {
    if spec.generation == 0 {
        return Err(GenError::Generation {
            generation: spec.generation,
        });
    }
    Ok(spec
        .updated
        .clone()
        .unwrap_or_else(|| default_updated(spec.generation)))
}

/// Build the tree of `spec` under `out` (created if missing; existing files are replaced, other
/// files are left alone). With `sign`, also writes `index.sjson` (entry paths rewritten to `.sjson`)
/// and a `.sjson` for each products file.
pub fn generate(
    out: &Path,
    spec: &StreamSpec,
    sign: Option<SignFn<'_>>,
) -> Result<Summary, GenError> {
    let updated = updated_of(spec)?;
    write_stream(out, &[v3_tree(spec), bootloader_tree()], &updated, sign)
}

/// The stream of [`generate`] shaped as MAAS 3.8 reads it (every MAAS client rule of
/// `publish::maas_rules` kept): `label`/`os` on each image product instead of once at the top
/// (MAAS 3.8 does not expand condensed fields), `src_version` on every bootloader item, and no
/// `sorttest` product (not MAAS content). The same item files otherwise. What the demo serves,
/// so the boot source it shows an admin is one MAAS 3.8 accepts; [`generate`] keeps the shape of
/// `make_stream.py` that the tests rely on.
pub fn generate_for_maas(
    out: &Path,
    spec: &StreamSpec,
    sign: Option<SignFn<'_>>,
) -> Result<Summary, GenError> {
    let updated = updated_of(spec)?;
    let mut v3 = v3_tree(spec);
    let top = std::mem::take(&mut v3.top);
    v3.products
        .retain(|p| p.name != "com.example.maas.stable:v3:sorttest");
    for p in &mut v3.products {
        p.fields.extend(top.iter().cloned());
        p.fields.sort_by_key(|(k, _)| *k);
    }
    let mut boot = bootloader_tree();
    for it in boot
        .products
        .iter_mut()
        .flat_map(|p| p.versions.iter_mut())
        .flat_map(|(_, items)| items.iter_mut())
    {
        it.fields.push(("src_version", "1.0".to_owned()));
    }
    write_stream(out, &[v3, boot], &updated, sign)
}

/// Write the items and products files of `trees`, then the index (and the signed copies).
fn write_stream(
    out: &Path,
    trees: &[TreeSpec],
    updated: &str,
    sign: Option<SignFn<'_>>,
) -> Result<Summary, GenError> {
    let mut summary = Summary {
        files: 0,
        bytes: 0,
        items: Vec::new(),
        metadata: Vec::new(),
    };
    let mut docs = Vec::new();
    for tree in trees {
        docs.push(write_tree(out, tree, updated, &mut summary)?);
    }

    let mut index = Map::new();
    let mut entries = Map::new();
    for tree in trees {
        let mut names: Vec<&str> = tree.products.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        let mut entry = Map::new();
        entry.insert("datatype".into(), tree.datatype.into());
        entry.insert("format".into(), "products:1.0".into());
        entry.insert(
            "path".into(),
            format!("streams/v1/{}.json", tree.content_id).into(),
        );
        entry.insert("updated".into(), updated.into());
        entry.insert(
            "products".into(),
            Value::Array(names.into_iter().map(Value::from).collect()),
        );
        entries.insert(tree.content_id.into(), Value::Object(entry));
    }
    index.insert("format".into(), "index:1.0".into());
    index.insert("updated".into(), updated.into());
    index.insert("index".into(), Value::Object(entries));
    let mut index = Value::Object(index);

    let streams = out.join("streams").join("v1");
    for (tree, text) in trees.iter().zip(&docs) {
        let name = format!("{}.json", tree.content_id);
        files::write_atomic(&streams.join(&name), text)?;
        summary.metadata.push(format!("streams/v1/{name}"));
        if let Some(sign) = sign {
            let name = format!("{}.sjson", tree.content_id);
            let path = streams.join(&name);
            let signed = sign(text).map_err(|message| GenError::Sign {
                path: path.clone(),
                message,
            })?;
            files::write_atomic(&path, &signed)?;
            summary.metadata.push(format!("streams/v1/{name}"));
        }
    }
    let index_path = streams.join("index.json");
    let text = files::to_json(&index, &index_path)?;
    files::write_atomic(&index_path, &text)?;
    summary.metadata.push("streams/v1/index.json".into());
    if let Some(sign) = sign {
        rewrite_paths_to_sjson(&mut index);
        let path = streams.join("index.sjson");
        let text = files::to_json(&index, &path)?;
        let signed = sign(&text).map_err(|message| GenError::Sign {
            path: path.clone(),
            message,
        })?;
        files::write_atomic(&path, &signed)?;
        summary.metadata.push("streams/v1/index.sjson".into());
    }
    Ok(summary)
}

/// Write the items of `tree`, then return the text of its products document.
fn write_tree(
    out: &Path,
    tree: &TreeSpec,
    updated: &str,
    summary: &mut Summary,
) -> Result<Vec<u8>, GenError> {
    let mut products = Map::new();
    for product in &tree.products {
        let mut versions = Map::new();
        for (version, items) in &product.versions {
            let mut item_map = Map::new();
            for item in items {
                let sha256 = files::write_item(out, &item.path, item.size, item.fill)?;
                let mut obj = Map::new();
                for (k, v) in &item.fields {
                    obj.insert((*k).into(), v.clone().into());
                }
                obj.insert("path".into(), item.path.clone().into());
                obj.insert("size".into(), item.size.into());
                obj.insert("sha256".into(), sha256.clone().into());
                item_map.insert(item.name.clone(), Value::Object(obj));
                summary.files += 1;
                summary.bytes += item.size;
                summary.items.push(GenItem {
                    content_id: tree.content_id.into(),
                    product: product.name.clone(),
                    version: version.clone(),
                    item: item.name.clone(),
                    path: item.path.clone(),
                    size: item.size,
                    sha256,
                });
            }
            let mut v = Map::new();
            v.insert("items".into(), Value::Object(item_map));
            versions.insert(version.clone(), Value::Object(v));
        }
        let mut p = Map::new();
        for (k, v) in &product.fields {
            p.insert((*k).into(), v.clone().into());
        }
        p.insert("versions".into(), Value::Object(versions));
        products.insert(product.name.clone(), Value::Object(p));
    }
    let mut doc = Map::new();
    doc.insert("content_id".into(), tree.content_id.into());
    doc.insert("datatype".into(), tree.datatype.into());
    doc.insert("format".into(), "products:1.0".into());
    doc.insert("updated".into(), updated.into());
    for (k, v) in &tree.top {
        doc.insert((*k).into(), v.clone().into());
    }
    doc.insert("products".into(), Value::Object(products));
    let path = out
        .join("streams")
        .join("v1")
        .join(format!("{}.json", tree.content_id));
    files::to_json(&Value::Object(doc), &path)
}

/// In the signed index every entry path ending `.json` points at the `.sjson` instead.
fn rewrite_paths_to_sjson(index: &mut Value) {
    let Some(entries) = index.get_mut("index").and_then(Value::as_object_mut) else {
        return;
    };
    for entry in entries.values_mut() {
        if let Some(Value::String(path)) = entry.get_mut("path")
            && let Some(stem) = path.strip_suffix(".json")
        {
            *path = format!("{stem}.sjson");
        }
    }
}

fn fields(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn boot_version(rel: &str, arch: &str, ver: &str, sub: &str) -> Vec<ItemSpec> {
    let base = format!("{rel}/{arch}/{ver}");
    let big = ver == "20240601";
    [
        (
            "boot-kernel",
            format!("{base}/{sub}/generic/boot-kernel"),
            1500,
        ),
        (
            "boot-initrd",
            format!("{base}/{sub}/generic/boot-initrd"),
            2500,
        ),
        (
            "squashfs",
            format!("{base}/squashfs"),
            if big { 300_000 } else { 4000 },
        ),
        ("manifest", format!("{base}/squashfs.manifest"), 300),
    ]
    .into_iter()
    .map(|(name, path, size)| {
        let mut f = vec![("ftype", name.to_owned())];
        if name.starts_with("boot-") {
            f.push(("kpackage", "linux-generic".to_owned()));
        }
        ItemSpec {
            name: name.into(),
            path,
            size,
            fill: Fill::Pattern,
            fields: f,
        }
    })
    .collect()
}

fn boot_product(
    suffix: &str,
    rel: &str,
    version: &str,
    arch: &str,
    sub: &str,
    versions: &[String],
) -> ProductSpec {
    let subarches = format!("generic,{sub}");
    ProductSpec {
        name: format!("com.example.maas.stable:v3:boot:{suffix}"),
        fields: fields(&[
            ("arch", arch),
            ("kflavor", "generic"),
            ("krel", rel),
            ("release", rel),
            ("release_title", version),
            ("subarch", sub),
            ("subarches", &subarches),
            ("version", version),
        ]),
        versions: versions
            .iter()
            .map(|v| (v.clone(), boot_version(rel, arch, v, sub)))
            .collect(),
    }
}

fn v3_tree(spec: &StreamSpec) -> TreeSpec {
    let fixed = |vs: &[&str]| vs.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>();
    let mut products = vec![
        boot_product(
            "22.04:amd64:ga-22.04",
            "jammy",
            "22.04",
            "amd64",
            "ga-22.04",
            &jammy_amd64_versions(spec.generation),
        ),
        boot_product(
            "22.04:arm64:ga-22.04",
            "jammy",
            "22.04",
            "arm64",
            "ga-22.04",
            &fixed(&["20240101", "20240201"]),
        ),
        boot_product(
            "24.04:amd64:ga-24.04",
            "noble",
            "24.04",
            "amd64",
            "ga-24.04",
            &fixed(&["20240501", "20240601"]),
        ),
    ];
    products.push(ProductSpec {
        name: "com.example.maas.stable:v3:sorttest".into(),
        fields: fields(&[("arch", "amd64"), ("release", "sorttest")]),
        versions: ["9", "10"]
            .into_iter()
            .map(|v| {
                let item = ItemSpec {
                    name: "blob".into(),
                    path: format!("sorttest/{v}/blob"),
                    size: 100,
                    fill: Fill::Pattern,
                    fields: fields(&[("ftype", "blob")]),
                };
                (v.to_owned(), vec![item])
            })
            .collect(),
    });
    if let Some(bulk) = &spec.bulk {
        products.extend(bulk_products(bulk, spec.generation));
    }
    TreeSpec {
        content_id: V3_CONTENT_ID,
        datatype: "image-ids",
        top: fields(&[("label", "stable"), ("os", "ubuntu")]),
        products,
    }
}

fn bulk_products(bulk: &Bulk, generation: u32) -> Vec<ProductSpec> {
    let first_day = u64::from(generation.saturating_sub(1));
    (0..bulk.products)
        .map(|p| {
            let versions = (0..bulk.versions)
                .map(|v| {
                    let version = dates::day_from_2024(first_day + v as u64);
                    let items = (0..bulk.files_per_version)
                        .map(|m| ItemSpec {
                            name: format!("file-{m:04}"),
                            path: format!("bulk/{p:04}/{version}/file-{m:04}"),
                            size: bulk.file_size,
                            fill: Fill::Random,
                            fields: fields(&[("ftype", "blob")]),
                        })
                        .collect();
                    (version, items)
                })
                .collect();
            ProductSpec {
                name: format!("{BULK_PRODUCT_PREFIX}{p:04}"),
                fields: fields(&[("arch", "amd64"), ("release", "bulk")]),
                versions,
            }
        })
        .collect()
}

fn bootloader_tree() -> TreeSpec {
    let mut products = Vec::new();
    let loaders: [(&str, &str, &str, &[&str]); 2] = [
        (
            "grub-efi-signed",
            "uefi",
            "amd64",
            &["grub2-signed", "shim-signed"],
        ),
        ("pxelinux", "pxe", "i386", &["syslinux"]),
    ];
    for (os, btype, arch, pkgs) in loaders {
        let versions = ["20210819.0", "20221029.0"]
            .into_iter()
            .map(|v| {
                let items = pkgs
                    .iter()
                    .map(|p| ItemSpec {
                        name: (*p).into(),
                        path: format!("bootloaders/{btype}/{arch}/{v}/{p}.tar.xz"),
                        size: 700,
                        fill: Fill::Pattern,
                        fields: fields(&[
                            ("ftype", "archive.tar.xz"),
                            ("src_package", p),
                            ("src_release", "focal"),
                        ]),
                    })
                    .collect();
                (v.to_owned(), items)
            })
            .collect();
        products.push(ProductSpec {
            name: format!("com.example.maas.stable:1:{os}:{btype}:{arch}"),
            fields: fields(&[
                ("arch", arch),
                ("arches", arch),
                ("bootloader-type", btype),
                ("label", "stable"),
                ("os", os),
            ]),
            versions,
        });
    }
    TreeSpec {
        content_id: BOOTLOADER_CONTENT_ID,
        datatype: "image-ids",
        top: Vec::new(),
        products,
    }
}

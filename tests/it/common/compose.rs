//! Helpers of the composition tests (compose.rs, compose_s3.rs, maas_acceptance.rs): a DEST
//! under the store's `www/`, a local stream of custom images, a published tree's item files, and
//! the python `sstream-mirror` run against a URL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sha2::Digest as _;

use super::{Store, tree_of};

/// Source `custom`: the unsigned local stream in `dir` (`file://`, its index.json), with `extra`
/// options.
pub fn add_custom_source(store: &Store, dir: &Path, extra: &[&str]) {
    let url = format!("file://{}", dir.display());
    let mut args = vec![
        "source",
        "add",
        "custom",
        &url,
        "--path",
        "streams/v1/index.json",
    ];
    args.extend_from_slice(extra);
    store.run(&args).ok();
}

/// `www/NAME` under the store's directory (`www/` created).
pub fn dest(store: &Store, name: &str) -> PathBuf {
    let d = store.dir.path().join("www");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Item files of a published directory (everything outside `streams/`).
pub fn item_files(dir: &Path) -> BTreeSet<String> {
    tree_of(dir)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !p.starts_with("streams/"))
        .collect()
}

/// A local stream of custom images in `dir`: `streams/v1/index.json` and one unsigned products
/// document `doc` (under `streams/v1/`) of content id `cid`, with one product `pid` whose fields
/// are `fields` and whose one version `20261128` holds `items` (name, ftype), each a small file
/// under `prefix/`. Returns the item paths.
pub struct CustomStream<'a> {
    pub cid: &'a str,
    pub doc: &'a str,
    pub pid: &'a str,
    pub fields: Value,
    pub prefix: &'a str,
    pub items: &'a [(&'a str, &'a str)],
}

impl CustomStream<'_> {
    pub fn write(&self, dir: &Path) -> BTreeSet<String> {
        let mut items = serde_json::Map::new();
        let mut paths = BTreeSet::new();
        for (name, ftype) in self.items {
            let rel = format!("{}/20261128/{name}", self.prefix);
            let body = format!("custom image file {name}\n").into_bytes();
            let f = dir.join(&rel);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(&f, &body).unwrap();
            items.insert(
                name.to_string(),
                json!({"ftype": ftype, "path": rel, "size": body.len(),
                       "sha256": hex(&sha2::Sha256::digest(&body))}),
            );
            paths.insert(rel);
        }
        let updated = "Sat, 28 Nov 2026 00:00:00 +0000";
        let mut product = self.fields.clone();
        product["versions"] = json!({"20261128": {"items": items}});
        let products = json!({
            "content_id": self.cid, "datatype": "image-ids", "format": "products:1.0",
            "updated": updated, "products": {self.pid: product}
        });
        let v1 = dir.join("streams/v1");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(
            v1.join(self.doc),
            serde_json::to_vec_pretty(&products).unwrap(),
        )
        .unwrap();
        let index = json!({"format": "index:1.0", "updated": updated, "index": {self.cid: {
            "datatype": "image-ids", "format": "products:1.0",
            "path": format!("streams/v1/{}", self.doc),
            "products": [self.pid], "updated": updated}}});
        std::fs::write(
            v1.join("index.json"),
            serde_json::to_vec_pretty(&index).unwrap(),
        )
        .unwrap();
        paths
    }
}

/// Runs the python `sstream-mirror` at `py` on `url` into `work/OUT_NAME` with `ring` as its
/// keyring (its own GNUPGHOME and HOME under `work`), plus `args` (filters, `--max`), and
/// asserts that it succeeded; returns the output directory.
pub fn python_mirror(
    py: &Path,
    url: &str,
    ring: &Path,
    work: &Path,
    out_name: &str,
    args: &[&str],
) -> PathBuf {
    let gnupg = work.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    let out = work.join(out_name);
    let mut cmd = Command::new(py);
    cmd.arg(format!("--keyring={}", ring.display()));
    cmd.args(args.iter().filter(|a| a.starts_with("--")));
    cmd.arg(url).arg(&out);
    cmd.args(args.iter().filter(|a| !a.starts_with("--")));
    let o = cmd
        .env("GNUPGHOME", &gnupg)
        .env("HOME", work)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// The MAAS docs' bootloader filter set.
pub const BOOTLOADERS: [&str; 3] = ["--max", "1", "os~(grub*|pxelinux)"];
/// One release of amd64 images.
pub const JAMMY: [&str; 4] = ["--max", "1", "arch=amd64", "release~jammy"];

/// A store with two synced sources of one upstream, `bootloaders` ([`BOOTLOADERS`]) and `jammy`
/// ([`JAMMY`]): the inputs of most composition tests. The upstream must outlive the store's use.
pub fn bootloaders_and_jammy() -> (super::Upstream, Store) {
    let up = super::Upstream::new();
    let s = Store::new();
    s.add("bootloaders", &up, &BOOTLOADERS);
    s.add("jammy", &up, &JAMMY);
    s.sync_json("bootloaders");
    s.sync_json("jammy");
    (up, s)
}

/// One release of amd64 images, the third input of some compositions.
pub const NOBLE: [&str; 4] = ["--max", "1", "arch=amd64", "release~noble"];

/// [`bootloaders_and_jammy`] and a third source, `noble` ([`NOBLE`]), added but not synced.
pub fn bootloaders_jammy_and_noble() -> (super::Upstream, Store) {
    let (up, s) = bootloaders_and_jammy();
    s.add("noble", &up, &NOBLE);
    (up, s)
}

/// `publish bootloaders jammy DEST --metadata filtered EXTRA…`: the filtered composition of
/// [`bootloaders_and_jammy`]'s two sources.
pub fn compose_filtered(s: &Store, dest: &Path, extra: &[&str]) -> super::Run {
    let mut args = vec![
        "publish",
        "bootloaders",
        "jammy",
        dest.to_str().unwrap(),
        "--metadata",
        "filtered",
    ];
    args.extend_from_slice(extra);
    s.run(&args)
}

//! Tests of the generator: byte-for-byte agreement with make_stream.py, checksums that match the
//! files on disk, the generation step, determinism, bulk products and the signing callback.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use super::*;
use crate::checksum::hash_file;

fn fake_sign(payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = b"SIGNED\n".to_vec();
    out.extend_from_slice(payload);
    Ok(out)
}

fn sha256_of(path: &Path) -> String {
    hash_file(path).unwrap().upstream.sha256.unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every item in a products document: path → (size, sha256), plus the (product, version) pairs.
fn doc_items(doc: &Value) -> BTreeMap<String, (u64, String, String, String)> {
    let mut out = BTreeMap::new();
    for (pname, product) in doc["products"].as_object().unwrap() {
        for (vname, version) in product["versions"].as_object().unwrap() {
            for item in version["items"].as_object().unwrap().values() {
                out.insert(
                    item["path"].as_str().unwrap().to_owned(),
                    (
                        item["size"].as_u64().unwrap(),
                        item["sha256"].as_str().unwrap().to_owned(),
                        pname.clone(),
                        vname.clone(),
                    ),
                );
            }
        }
    }
    out
}

fn all_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// sha256 of the documents make_stream.py writes (clearsign replaced by `SIGNED\n` + payload).
const GOLDEN: [(u32, &str, &str); 12] = [
    (
        1,
        "com.example.maas:stable:1:bootloader-download.json",
        "9fb3146f3c7b3333892c72ca8728bc86391ea551715e40e51801b79f55aab0b2",
    ),
    (
        1,
        "com.example.maas:stable:1:bootloader-download.sjson",
        "1fa8210dbf9b66ff69a5bde96430e0230833f8931beb791b56379fd6f8da2bdb",
    ),
    (
        1,
        "com.example.maas:stable:v3:download.json",
        "9fec696ad7e875c5ec6886426907684ec944729645d200d98cc8c7e5c121cb87",
    ),
    (
        1,
        "com.example.maas:stable:v3:download.sjson",
        "520c8a50cb9eafdbc47b5f903ca62150cdb4bfabdd3eb97d0ad48945bbb3705d",
    ),
    (
        1,
        "index.json",
        "bfc60e0d964a22000858dcab3c2b7bafd831e5ba6871a466a951e57c9ab7a24c",
    ),
    (
        1,
        "index.sjson",
        "e2794c3a8f192b7ba2d9594bef98cfaa3be5873129eec06cae486e0dfadf52e9",
    ),
    (
        2,
        "com.example.maas:stable:1:bootloader-download.json",
        "6a7cac79f447e37b649e6f0d26763fbf351ace5fa60282648e7319f9e2956d9c",
    ),
    (
        2,
        "com.example.maas:stable:1:bootloader-download.sjson",
        "07163377ad9a400ebaab4ee6d3d1f0b9f33d3c658c33e0a70a9098d624cb5649",
    ),
    (
        2,
        "com.example.maas:stable:v3:download.json",
        "cc49296df663343f719d947c39bf9b1c191a6cf70b097f8ab21e173f90792a9c",
    ),
    (
        2,
        "com.example.maas:stable:v3:download.sjson",
        "03026a96d15e4d291b5d586d7714aee1bc5a13e8605720794911e739ca7539a1",
    ),
    (
        2,
        "index.json",
        "e5d391dd8a1b9a2748f9e9031c343ce3e8decc5a3cd5b755877c4ee79cfe4ed6",
    ),
    (
        2,
        "index.sjson",
        "b17e04f29cc118ce3a515f2f49d3143ff4956e12c9723a687e4d45c9488de123",
    ),
];

#[test]
fn generations_1_and_2_are_byte_identical_to_make_stream_py() {
    for generation in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let summary = generate(
            dir.path(),
            &StreamSpec::generation(generation),
            Some(&fake_sign),
        )
        .unwrap();
        assert_eq!(summary.files, 36);
        assert_eq!(summary.items.len(), 36);
        assert_eq!(summary.metadata.len(), 6);
        // 36 items + 6 metadata files, nothing else (no temp files left behind)
        assert_eq!(all_files(dir.path()).len(), 42);
        for (g, name, want) in GOLDEN.iter().filter(|(g, _, _)| *g == generation) {
            let got = sha256_of(&dir.path().join("streams/v1").join(name));
            assert_eq!(&got, want, "generation {g}: {name}");
        }
    }
}

#[test]
fn every_listed_checksum_matches_the_file_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(dir.path(), &StreamSpec::default(), None).unwrap();
    let index = read_json(&dir.path().join("streams/v1/index.json"));
    let mut listed = BTreeMap::new();
    for (cid, entry) in index["index"].as_object().unwrap() {
        let doc = read_json(&dir.path().join(entry["path"].as_str().unwrap()));
        assert_eq!(doc["content_id"], *cid);
        let mut names: Vec<&String> = doc["products"].as_object().unwrap().keys().collect();
        names.sort();
        let in_index: Vec<&str> = entry["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(names, in_index);
        listed.extend(doc_items(&doc));
    }
    assert_eq!(listed.len(), 36);
    for (path, (size, sha, _, _)) in &listed {
        let d = hash_file(&dir.path().join(path)).unwrap();
        assert_eq!(d.size, *size, "{path}");
        assert_eq!(d.upstream.sha256.as_deref(), Some(sha.as_str()), "{path}");
    }
    let from_summary: BTreeMap<_, _> = summary
        .items
        .iter()
        .map(|i| (i.path.clone(), (i.size, i.sha256.clone())))
        .collect();
    let from_docs: BTreeMap<_, _> = listed
        .iter()
        .map(|(p, (s, h, _, _))| (p.clone(), (*s, h.clone())))
        .collect();
    assert_eq!(from_summary, from_docs);
    assert_eq!(summary.bytes, listed.values().map(|v| v.0).sum::<u64>());
    // no .sjson without a signer
    assert!(!dir.path().join("streams/v1/index.sjson").exists());
}

#[test]
fn generation_2_moves_jammy_amd64_by_one_month() {
    let versions = |g| {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), &StreamSpec::generation(g), None).unwrap();
        let doc = read_json(&dir.path().join(format!("streams/v1/{V3_CONTENT_ID}.json")));
        doc_items(&doc)
            .into_iter()
            .map(|(path, (size, sha, p, v))| (p, v, path, size, sha))
            .collect::<BTreeSet<_>>()
    };
    let (g1, g2) = (versions(1), versions(2));
    let added: Vec<_> = g2.difference(&g1).collect();
    let removed: Vec<_> = g1.difference(&g2).collect();
    assert_eq!(added.len(), 4);
    assert_eq!(removed.len(), 4);
    assert!(
        added
            .iter()
            .all(|i| i.0 == JAMMY_AMD64_PRODUCT && i.1 == "20240401")
    );
    assert!(
        removed
            .iter()
            .all(|i| i.0 == JAMMY_AMD64_PRODUCT && i.1 == "20240101")
    );
    assert_eq!(
        jammy_amd64_versions(12),
        ["20241201", "20250101", "20250201"]
    );
    assert_eq!(default_updated(12), "Sat, 01 Feb 2025 00:00:00 +0000");
    assert!(matches!(
        generate(Path::new("/nonexistent"), &StreamSpec::generation(0), None),
        Err(GenError::Generation { generation: 0 })
    ));
}

#[test]
fn regenerating_gives_identical_bytes() {
    let spec = StreamSpec {
        generation: 3,
        bulk: Some(Bulk {
            products: 1,
            versions: 2,
            files_per_version: 2,
            file_size: 100_000,
        }),
        updated: Some("Tue, 02 Jan 2024 03:04:05 +0000".into()),
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sa = generate(a.path(), &spec, Some(&fake_sign)).unwrap();
    let sb = generate(b.path(), &spec, Some(&fake_sign)).unwrap();
    assert_eq!(sa, sb);
    let first = all_files(a.path());
    assert_eq!(first, all_files(b.path()));
    // again into the same directory: the same bytes, no leftovers
    generate(a.path(), &spec, Some(&fake_sign)).unwrap();
    assert_eq!(first, all_files(a.path()));
    let index = String::from_utf8(first["streams/v1/index.json"].clone()).unwrap();
    assert!(index.contains("Tue, 02 Jan 2024 03:04:05 +0000"));
    // contents differ across paths
    let shas: BTreeSet<_> = sa.items.iter().map(|i| i.sha256.clone()).collect();
    assert_eq!(shas.len(), sa.items.len());
}

#[test]
fn bulk_products_are_listed_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let bulk = Bulk {
        products: 3,
        versions: 2,
        files_per_version: 4,
        file_size: 70_000,
    };
    let spec = StreamSpec {
        generation: 2,
        bulk: Some(bulk),
        updated: None,
    };
    let summary = generate(dir.path(), &spec, None).unwrap();
    assert_eq!(summary.files, 36 + 24);
    let bulk_items: Vec<_> = summary
        .items
        .iter()
        .filter(|i| i.product.starts_with(BULK_PRODUCT_PREFIX))
        .collect();
    assert_eq!(bulk_items.len(), 24);
    assert_eq!(
        bulk_items[0].product,
        "com.example.maas.stable:v3:bulk:0000"
    );
    // generation 2 starts one day later
    assert_eq!(bulk_items[0].version, "20240102");
    assert_eq!(bulk_items[0].path, "bulk/0000/20240102/file-0000");
    assert_eq!(bulk_items[23].path, "bulk/0002/20240103/file-0003");
    for item in &bulk_items {
        assert_eq!(item.size, 70_000);
        let d = hash_file(&dir.path().join(&item.path)).unwrap();
        assert_eq!(d.size, 70_000);
        assert_eq!(d.upstream.sha256.unwrap(), item.sha256);
    }
    let index = read_json(&dir.path().join("streams/v1/index.json"));
    let listed = index["index"][V3_CONTENT_ID]["products"]
        .as_array()
        .unwrap();
    assert_eq!(listed.len(), 4 + 3);
    let doc = read_json(&dir.path().join(format!("streams/v1/{V3_CONTENT_ID}.json")));
    assert_eq!(doc_items(&doc).len(), 30 + 24);
}

#[test]
fn sign_is_called_for_index_and_each_products_file() {
    let dir = tempfile::tempdir().unwrap();
    let calls = RefCell::new(Vec::new());
    let sign = |payload: &[u8]| -> Result<Vec<u8>, String> {
        calls.borrow_mut().push(payload.to_vec());
        Ok(format!("SIGNED {}\n", calls.borrow().len()).into_bytes())
    };
    generate(dir.path(), &StreamSpec::default(), Some(&sign)).unwrap();
    let calls = calls.into_inner();
    assert_eq!(calls.len(), 3);
    let v1 = dir.path().join("streams/v1");
    // products files are signed as-is
    for cid in [V3_CONTENT_ID, BOOTLOADER_CONTENT_ID] {
        let json = std::fs::read(v1.join(format!("{cid}.json"))).unwrap();
        assert!(calls.contains(&json), "{cid}");
        assert!(v1.join(format!("{cid}.sjson")).exists());
    }
    // the index payload points at the .sjson files
    let index_payload: Value = serde_json::from_slice(&calls[2]).unwrap();
    for entry in index_payload["index"].as_object().unwrap().values() {
        assert!(entry["path"].as_str().unwrap().ends_with(".sjson"));
    }
    let plain = read_json(&v1.join("index.json"));
    for entry in plain["index"].as_object().unwrap().values() {
        assert!(entry["path"].as_str().unwrap().ends_with(".json"));
    }
    assert_eq!(
        std::fs::read(v1.join("index.sjson")).unwrap(),
        b"SIGNED 3\n"
    );

    let failing = |_: &[u8]| -> Result<Vec<u8>, String> { Err("no key".into()) };
    let err = generate(dir.path(), &StreamSpec::default(), Some(&failing)).unwrap_err();
    assert!(matches!(err, GenError::Sign { .. }));
    assert!(err.to_string().contains("no key"), "{err}");
}

#[test]
fn lxd_stream_is_lxd_shaped_and_its_checksums_and_fingerprints_match_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_lxd(dir.path(), 1, Some(&fake_sign)).unwrap();
    let index = read_json(&dir.path().join("streams/v1/index.json"));
    let entry = &index["index"][LXD_CONTENT_ID];
    assert_eq!(entry["datatype"], "image-downloads");
    assert_eq!(entry["path"], "streams/v1/images.json");
    assert_eq!(index["index"].as_object().unwrap().len(), 1);
    let signed = std::fs::read_to_string(dir.path().join("streams/v1/index.sjson")).unwrap();
    assert!(signed.contains("streams/v1/images.sjson"), "{signed}");
    let doc = read_json(&dir.path().join("streams/v1/images.json"));
    assert_eq!(doc["content_id"], "images");
    assert_eq!(doc["datatype"], "image-downloads");
    let products = doc["products"].as_object().unwrap();
    assert_eq!(products.len(), 3);
    let mut fingerprints = BTreeSet::new();
    for (name, p) in products {
        for key in [
            "aliases",
            "arch",
            "os",
            "release",
            "release_title",
            "variant",
        ] {
            assert!(p[key].is_string(), "{name} lacks {key}");
        }
        for (vname, v) in p["versions"].as_object().unwrap() {
            assert!(vname[..8].bytes().all(|b| b.is_ascii_digit()), "{vname}");
            let items = v["items"].as_object().unwrap();
            let file = |item: &str| {
                std::fs::read(dir.path().join(items[item]["path"].as_str().unwrap())).unwrap()
            };
            if let Some(meta) = items.get("lxd.tar.xz") {
                assert_eq!(meta["ftype"], "lxd.tar.xz");
                assert_eq!(items["root.squashfs"]["ftype"], "squashfs");
                let mut both = file("lxd.tar.xz");
                both.extend(file("root.squashfs"));
                let mut h = crate::checksum::MultiHasher::new(&[crate::checksum::Algo::Sha256]);
                h.update(&both);
                let combined = h.finish().upstream.sha256.unwrap();
                assert_eq!(
                    meta["combined_squashfs_sha256"],
                    combined.as_str(),
                    "{name} {vname}"
                );
                fingerprints.insert(combined);
            } else {
                let unified = &items["lxd_combined.tar.gz"];
                assert_eq!(unified["ftype"], "lxd_combined.tar.gz");
                fingerprints.insert(unified["sha256"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(fingerprints.len(), 4, "{fingerprints:?}");
    let listed = doc_items(&doc);
    assert_eq!(listed.len(), summary.files);
    for (path, (size, sha, _, _)) in &listed {
        let d = hash_file(&dir.path().join(path)).unwrap();
        assert_eq!(d.size, *size, "{path}");
        assert_eq!(d.upstream.sha256.as_deref(), Some(sha.as_str()), "{path}");
    }
}

#[test]
fn lxd_generation_2_adds_a_day_to_the_rolling_product_and_drops_the_oldest() {
    assert_eq!(
        lxd_rolling_versions(1),
        ["20240101_07:42", "20240102_07:42"]
    );
    assert_eq!(
        lxd_rolling_versions(2),
        ["20240102_07:42", "20240103_07:42"]
    );
    let dir = tempfile::tempdir().unwrap();
    let one = generate_lxd(&dir.path().join("1"), 1, None).unwrap();
    let two = generate_lxd(&dir.path().join("2"), 2, None).unwrap();
    let versions = |s: &Summary| {
        s.items
            .iter()
            .filter(|i| i.product == LXD_ROLLING_PRODUCT)
            .map(|i| i.version.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        versions(&one),
        lxd_rolling_versions(1).into_iter().collect()
    );
    assert_eq!(
        versions(&two),
        lxd_rolling_versions(2).into_iter().collect()
    );
    let others = |s: &Summary| {
        s.items
            .iter()
            .filter(|i| i.product != LXD_ROLLING_PRODUCT)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&one), others(&two));
    assert!(matches!(
        generate_lxd(dir.path(), 0, None),
        Err(GenError::Generation { generation: 0 })
    ));
}

//! A client's view of a published S3 tree, read over plain HTTP from moto (the bucket is public):
//! index → products documents → items, each item's size and sha256 checked against what the
//! document that lists it says. The robustness tests (s3_faults, s3_crash, s3_flips) call this
//! after (or while) the publisher does its worst.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::http::Moto;

/// The payload of a clearsigned document (dash-escaping undone), or the bytes as they are.
pub fn clear_text(b: &[u8]) -> Vec<u8> {
    let t = String::from_utf8_lossy(b);
    if !t.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
        return b.to_vec();
    }
    let Some(start) = t.find("\n\n").map(|i| i + 2) else {
        return Vec::new();
    };
    let end = t[start..]
        .find("\n-----BEGIN PGP SIGNATURE-----")
        .map_or(t.len(), |i| start + i);
    t[start..end]
        .split('\n')
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// One item a products document lists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// What one read of the tree saw.
#[derive(Debug, Default)]
pub struct TreeRead {
    /// Index documents found, products documents read, items fetched and checked.
    pub indexes: usize,
    pub documents: usize,
    pub items: usize,
    /// Every problem, one line each: a 404, a bad status, a size or sha256 mismatch, bad JSON.
    pub problems: Vec<String>,
    /// Of `problems`, how many were 404s.
    pub not_found: usize,
    /// Index entries whose `updated` differs from the products document's (a reader saw an old
    /// index with new products, or the reverse).
    pub unpaired: usize,
    /// Whether some index names a products document otherwise than `streams/v1/<content id>.json`
    /// (or `.sjson`): content-hash names.
    pub hashed_names: bool,
    /// Every item path any document listed.
    pub listed: BTreeSet<String>,
    /// Every object key (relative) this read fetched: index, documents, items.
    pub keys: BTreeSet<String>,
}

impl TreeRead {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How many items of each products document to fetch.
#[derive(Debug, Clone, Copy)]
pub enum Items {
    All,
    /// This many, chosen at random, per document.
    Sample(usize),
}

fn get(moto: &Moto, base: &str, rel: &str, r: &mut TreeRead) -> Option<Vec<u8>> {
    let (st, body) = moto.http("GET", &format!("{base}/{rel}"));
    match st {
        200 => {
            r.keys.insert(rel.to_string());
            Some(body)
        }
        404 => {
            // Say whether the object is there a moment later, and what moto logged for it,
            // so that a 404 under load can be told apart: a key absent for a while (a write
            // order or gc bug) or moto's own answer (a server that was not ours, a race in it).
            let again = moto.http("GET", &format!("{base}/{rel}")).0;
            let logged: Vec<String> = moto
                .log_text()
                .lines()
                .filter(|l| l.contains(rel))
                .rev()
                .take(4)
                .map(str::to_string)
                .collect();
            r.not_found += 1;
            r.problems.push(format!(
                "{rel}: 404 (read again: {again}; moto's log: {logged:?})"
            ));
            None
        }
        _ => {
            r.problems.push(format!("{rel}: HTTP {st}"));
            None
        }
    }
}

/// Every item a products document lists.
pub fn listed_items(doc: &serde_json::Value) -> Vec<Listed> {
    let mut out = Vec::new();
    let Some(products) = doc["products"].as_object() else {
        return out;
    };
    for p in products.values() {
        let Some(versions) = p["versions"].as_object() else {
            continue;
        };
        for v in versions.values() {
            let Some(items) = v["items"].as_object() else {
                continue;
            };
            for i in items.values() {
                if let (Some(path), Some(sha)) = (i["path"].as_str(), i["sha256"].as_str()) {
                    out.push(Listed {
                        path: path.to_string(),
                        size: i["size"].as_u64().unwrap_or(0),
                        sha256: sha.to_string(),
                    });
                }
            }
        }
    }
    out
}

/// Read the tree at `base` (`/BUCKET/PREFIX`) as a client does, from `streams/v1/index.json` and
/// `streams/v1/index.sjson` (whichever exist; at least one must), checking every listed item
/// (or a random sample).
pub fn read_tree(moto: &Moto, base: &str, items: Items) -> TreeRead {
    let mut r = TreeRead::default();
    let mut checked = BTreeSet::new();
    for index in ["streams/v1/index.json", "streams/v1/index.sjson"] {
        let (st, body) = moto.http("GET", &format!("{base}/{index}"));
        if st == 404 {
            continue;
        }
        if st != 200 {
            r.problems.push(format!("{index}: HTTP {st}"));
            continue;
        }
        r.indexes += 1;
        r.keys.insert(index.to_string());
        let idx: serde_json::Value = match serde_json::from_slice(&clear_text(&body)) {
            Ok(v) => v,
            Err(e) => {
                r.problems.push(format!("{index}: {e}"));
                continue;
            }
        };
        let Some(entries) = idx["index"].as_object() else {
            r.problems.push(format!("{index}: no `index`"));
            continue;
        };
        for (cid, entry) in entries {
            let Some(path) = entry["path"].as_str() else {
                r.problems.push(format!("{index}: {cid} has no path"));
                continue;
            };
            if path != format!("streams/v1/{cid}.json") && path != format!("streams/v1/{cid}.sjson")
            {
                r.hashed_names = true;
            }
            let Some(body) = get(moto, base, path, &mut r) else {
                continue;
            };
            let doc: serde_json::Value = match serde_json::from_slice(&clear_text(&body)) {
                Ok(v) => v,
                Err(e) => {
                    r.problems.push(format!("{path}: {e}"));
                    continue;
                }
            };
            r.documents += 1;
            if entry["updated"] != doc["updated"] {
                r.unpaired += 1;
            }
            let mut list = listed_items(&doc);
            if list.is_empty() {
                r.problems.push(format!("{path}: lists no item"));
            }
            for l in &list {
                r.listed.insert(l.path.clone());
            }
            if let Items::Sample(n) = items {
                fastrand::shuffle(&mut list);
                list.truncate(n);
            }
            for l in list {
                if !checked.insert(l.clone()) {
                    continue;
                }
                let Some(b) = get(moto, base, &l.path, &mut r) else {
                    continue;
                };
                r.items += 1;
                if b.len() as u64 != l.size {
                    r.problems.push(format!(
                        "{}: {} bytes, {path} says {}",
                        l.path,
                        b.len(),
                        l.size
                    ));
                } else if sha256_hex(&b) != l.sha256 {
                    r.problems
                        .push(format!("{}: sha256 differs from {path}'s", l.path));
                }
            }
        }
    }
    if r.indexes == 0 {
        r.not_found += 1;
        r.problems.push("no index (404)".into());
    }
    r
}

/// Every object key under `base` (`/BUCKET/PREFIX`), relative to it (moto's ListObjectsV2,
/// over plain HTTP; every page).
pub fn list_keys(moto: &Moto, base: &str) -> BTreeSet<String> {
    let base = base.trim_start_matches('/');
    let (bucket, prefix) = base.split_once('/').unwrap_or((base, ""));
    let strip = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut out = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = format!("/{bucket}?list-type=2&prefix={}", enc(&strip));
        if let Some(t) = &token {
            q.push_str(&format!("&continuation-token={}", enc(t)));
        }
        let (st, body) = moto.http("GET", &q);
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
        let t = String::from_utf8_lossy(&body).into_owned();
        for part in t.split("<Key>").skip(1) {
            let key = part.split("</Key>").next().unwrap_or("");
            let key = key
                .replace("&amp;", "&")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'");
            if let Some(rel) = key.strip_prefix(&strip) {
                out.insert(rel.to_string());
            }
        }
        token = t
            .split("<NextContinuationToken>")
            .nth(1)
            .and_then(|s| s.split("</NextContinuationToken>").next())
            .map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The streamvault command for a store, configured for an S3 endpoint (moto, or a proxy).
pub fn s3_cmd(store: &super::store::Store, endpoint: &str, args: &[&str]) -> std::process::Command {
    let mut c = store.cmd(args);
    c.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "very-secret-key-9f2c")
        .env("AWS_REGION", "us-east-1");
    c
}

/// Run it; the output as a [`super::store::Run`].
pub fn s3_run(store: &super::store::Store, endpoint: &str, args: &[&str]) -> super::store::Run {
    let r = super::store::Run::from(
        s3_cmd(store, endpoint, args)
            .output()
            .expect("run streamvault"),
    );
    assert!(
        !r.stdout.contains("very-secret-key") && !r.stderr.contains("very-secret-key"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    r
}

/// A moto with the public bucket `bucket`, and a store whose source `maas` holds `generations`
/// snapshots (1 or 2) of one upstream, synced in order. `None` when moto is not installed and
/// this is not CI (the test then skips).
pub fn moto_with_snapshots(
    bucket: &str,
    generations: u32,
) -> Option<(Moto, super::Upstream, super::store::Store)> {
    let moto = Moto::start()?;
    moto.public_bucket(bucket);
    let up = super::Upstream::new();
    let store = super::store::Store::new();
    store.add("maas", &up, &[]);
    store.sync_json("maas");
    for generation in 2..=generations {
        up.flip(generation);
        store.sync_json("maas");
    }
    Some((moto, up, store))
}

//! `verify s3://BUCKET/PREFIX`: check every object the kept publications of an S3 DEST list
//! (the live one, those retired less than the grace period ago, the newest `keep-last`: the
//! same set `gc s3://…` keeps), from the listing each publication recorded (`s3_objects`):
//! - the prefix is listed once; an object missing or of another size is a finding;
//! - `--deep` downloads every object (streamed) and checks its content: an item against its
//!   blob's BLAKE3, a document against the bytes the publication wrote;
//! - `--repair` re-uploads what is missing or wrong: an item from its blob (else from the tree
//!   it was uploaded from), a document from the catalogue, under the DEST's lock (as publish).
//!
//! Where publications share a key (the index documents; verbatim products documents) the newest
//! publication's version is the one expected; the index documents only the live publication's.
//! Findings have the local verify's shape (`problem` with a stable `kind`, `repair`, `orphan`).

use std::collections::HashMap;

use crate::error::Result;
use crate::gc::GcOptions;
use crate::publish::INDEX_NAMES;
use crate::publish::s3::{self, Bucket, S3Dest};
use crate::vault::Vault;

use super::Repair;

/// One thing wrong with an object of an S3 DEST.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// The variant names are `verify --json`'s finding kinds (`s3_object_missing`, …): keep them.
#[allow(clippy::enum_variant_names)]
pub(crate) enum S3Problem {
    /// An object a kept publication lists is not in the bucket.
    S3ObjectMissing {
        key: String,
        publication: crate::catalog::S3PublicationId,
    },
    /// An object whose size is not the one the publication recorded.
    S3ObjectSize {
        key: String,
        publication: crate::catalog::S3PublicationId,
        expected: u64,
        found: u64,
    },
    /// (`--deep`) an object whose content is not what the publication uploaded.
    S3ObjectCorrupt {
        key: String,
        publication: crate::catalog::S3PublicationId,
        detail: String,
    },
}

impl std::fmt::Display for S3Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            S3Problem::S3ObjectMissing { key, publication } => {
                write!(
                    f,
                    "object `{key}` (publication {publication}) is missing from the bucket"
                )
            }
            S3Problem::S3ObjectSize {
                key,
                publication,
                expected,
                found,
            } => write!(
                f,
                "object `{key}` (publication {publication}) has {found} bytes, not {expected}"
            ),
            S3Problem::S3ObjectCorrupt {
                key,
                publication,
                detail,
            } => write!(
                f,
                "object `{key}` (publication {publication}) is corrupt: {detail}"
            ),
        }
    }
}

/// A problem and, after a repair, what was done about it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3Finding {
    pub(crate) problem: S3Problem,
    pub(crate) repair: Option<Repair>,
    /// Always false (kept for the local verify's shape).
    pub(crate) orphan: bool,
}

impl std::fmt::Display for S3Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.problem)?;
        match &self.repair {
            None => Ok(()),
            Some(Repair::Repaired { how }) => write!(f, ": repaired: {how}"),
            Some(Repair::NotRepaired { why }) => write!(f, ": not repaired: {why}"),
        }
    }
}

/// What `verify s3://…` found (and repaired).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3VerifyReport {
    pub dest: String,
    pub(crate) repair: bool,
    pub deep: bool,
    /// The publications checked, newest first.
    pub publications: Vec<crate::catalog::S3PublicationId>,
    pub objects_checked: u64,
    pub bytes_hashed: u64,
    pub findings: Vec<S3Finding>,
}

impl S3VerifyReport {
    /// Problems not repaired.
    pub fn remaining(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| !matches!(f.repair, Some(Repair::Repaired { .. })))
            .count()
    }

    pub fn repaired(&self) -> usize {
        self.findings.len() - self.remaining()
    }
}

/// How `verify s3://…` runs.
#[derive(Debug, Clone, Default)]
pub struct S3VerifyOptions {
    /// Download and hash every object.
    pub deep: bool,
    pub repair: bool,
    /// Which publications are kept (`keep_last`, `grace`), as for `gc s3://…`.
    pub keep: GcOptions,
}

/// What one object should be.
struct Expect {
    publication: crate::catalog::S3PublicationId,
    size: u64,
    /// An item's blob; `None` for a document.
    blob: Option<String>,
    tree: String,
    mode: crate::catalog::MetadataMode,
}

/// Check (and with `repair`, fix) the objects of an S3 DEST (see the module documentation).
pub fn verify_s3(vault: &Vault, d: &S3Dest, opts: &S3VerifyOptions) -> Result<S3VerifyReport> {
    let _locks = if opts.repair {
        Some(s3::lock(vault, d, "verify --repair")?)
    } else {
        None
    };
    let url = d.url();
    let kept = crate::gc::s3::kept_publications(vault, &url, &opts.keep)?;
    let live = vault.catalog.live_s3_publication(&url)?.map(|p| p.id);
    let mut expect: HashMap<String, Expect> = HashMap::new();
    let mut bodies: HashMap<(crate::catalog::S3PublicationId, String), Vec<u8>> = HashMap::new();
    for p in &kept {
        for doc in vault.catalog.s3_documents(p.id)? {
            bodies.insert((p.id, doc.key), doc.body);
        }
        for o in vault.catalog.s3_objects(p.id)? {
            // The index is the live publication's alone.
            if INDEX_NAMES.contains(&o.key.as_str()) && Some(p.id) != live {
                continue;
            }
            expect.entry(o.key).or_insert(Expect {
                publication: p.id,
                size: o.size,
                blob: o.blob,
                tree: p.tree.clone(),
                mode: p.mode,
            });
        }
    }
    let b = Bucket::open(d)?;
    let listed: HashMap<String, u64> = b.list()?.into_iter().map(|o| (o.key, o.size)).collect();
    let mut report = S3VerifyReport {
        dest: url,
        repair: opts.repair,
        deep: opts.deep,
        publications: kept.iter().map(|p| p.id).collect(),
        objects_checked: 0,
        bytes_hashed: 0,
        findings: Vec::new(),
    };
    let mut keys: Vec<&String> = expect.keys().collect();
    keys.sort();
    for key in keys {
        let e = &expect[key];
        report.objects_checked += 1;
        let problem = match listed.get(key) {
            None => Some(S3Problem::S3ObjectMissing {
                key: key.clone(),
                publication: e.publication,
            }),
            Some(&found) if found != e.size => Some(S3Problem::S3ObjectSize {
                key: key.clone(),
                publication: e.publication,
                expected: e.size,
                found,
            }),
            Some(_) if opts.deep => {
                let want = match &e.blob {
                    Some(h) => Some(h.clone()),
                    None => bodies
                        .get(&(e.publication, key.clone()))
                        .map(|body| blake3::hash(body).to_hex().to_string()),
                };
                match b.hash(key)? {
                    None => Some(S3Problem::S3ObjectMissing {
                        key: key.clone(),
                        publication: e.publication,
                    }),
                    Some((n, got)) => {
                        report.bytes_hashed += n;
                        match want {
                            Some(w) if w != got => Some(S3Problem::S3ObjectCorrupt {
                                key: key.clone(),
                                publication: e.publication,
                                detail: format!("BLAKE3 {got}, expected {w}"),
                            }),
                            _ => None,
                        }
                    }
                }
            }
            Some(_) => None,
        };
        let Some(problem) = problem else { continue };
        let repair = opts.repair.then(|| repair_one(vault, &b, key, e, &bodies));
        report.findings.push(S3Finding {
            problem,
            repair,
            orphan: false,
        });
    }
    Ok(report)
}

/// Upload one object again: an item from its blob (else its tree), a document from the
/// catalogue.
fn repair_one(
    vault: &Vault,
    b: &Bucket,
    key: &str,
    e: &Expect,
    bodies: &HashMap<(crate::catalog::S3PublicationId, String), Vec<u8>>,
) -> Repair {
    let done = |how: &str| Repair::Repaired { how: how.into() };
    let failed = |e: crate::error::Error| Repair::NotRepaired {
        why: crate::error::chain_line(&e),
    };
    if let Some(body) = bodies.get(&(e.publication, key.to_string())) {
        return match b.put_document(key, body, e.mode) {
            Ok(()) => done("document uploaded again from the catalogue"),
            Err(err) => failed(err),
        };
    }
    let candidates = [
        e.blob.as_deref().and_then(|h| vault.layout.blob(h)),
        vault.layout.tree(&e.tree).map(|t| t.join(key)),
    ];
    for file in candidates.into_iter().flatten() {
        let ok = std::fs::metadata(&file).is_ok_and(|m| m.is_file() && m.len() == e.size);
        if !ok {
            continue;
        }
        return match b.upload_item(key, &file, e.size) {
            Ok(_) => done("uploaded again from the store"),
            Err(err) => failed(err),
        };
    }
    Repair::NotRepaired {
        why: "the store no longer holds its content (gc removed the blob and the tree)".into(),
    }
}

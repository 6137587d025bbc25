//! `gc s3://BUCKET/PREFIX`: delete the objects of an S3 DEST that nothing keeps. Plan, then
//! do: [`s3_plan`] decides (a dry run prints it), [`s3_gc`] deletes exactly what the plan lists.
//!
//! What stays:
//! - every object a kept publication of this DEST lists (`s3_objects`, schema 0012): the live
//!   one, every one retired less than the grace period ago (a client that read the older index
//!   just before a flip can still fetch what it lists; MAAS downloads for hours), and the newest
//!   `keep-last` ones (what `rollback` goes back to);
//! - the closure of the index the bucket serves now, read from the bucket (index → products
//!   documents → items), whoever wrote it;
//! - every object modified less than the grace period ago (what a running or killed publish
//!   uploaded, also one from another store).
//!
//! Everything else under the prefix goes: objects of publications retired beyond the grace
//! period, products documents no kept publication names, and what a killed publish uploaded
//! and nothing recorded. The prefix therefore belongs to streamvault, and to one store: do not
//! keep other files under it (another DEST of this store nested under it is left alone). A kept
//! publication recorded before schema 0012 (no listing) makes gc refuse.
//!
//! Locks: the store lock shared and the DEST's lock exclusively (as publish), so no publish of
//! this store runs on DEST between the plan and the deletes.

use std::collections::HashSet;

use serde_json::Value;

use crate::catalog::S3Publication;
use crate::error::{Error, Result};
use crate::openpgp;
use crate::publish::INDEX_NAMES;
use crate::publish::s3::{self, Bucket, S3Dest, S3Error};
use crate::vault::Vault;

use super::GcOptions;

/// One object the plan deletes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3Doomed {
    pub key: String,
    pub size: u64,
}

/// What `gc s3://…` deletes (or, with `dry_run`, would delete).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3GcReport {
    pub dry_run: bool,
    pub dest: String,
    pub(crate) keep_last: u32,
    pub(crate) grace_secs: u64,
    /// The kept publications' ids, newest first.
    pub publications_kept: Vec<crate::catalog::S3PublicationId>,
    /// Objects under the prefix.
    pub objects_listed: u64,
    /// Objects a kept publication or the live index lists.
    pub objects_kept: u64,
    /// Objects nothing lists, kept because they are younger than the grace period.
    pub objects_within_grace: u64,
    pub objects_deleted: u64,
    pub bytes_deleted: u64,
    pub deleted: Vec<S3Doomed>,
}

/// The publications of `url` that `opts` keeps (see [`crate::catalog::Catalog::s3_kept_publications`]),
/// each with its recorded listing: one without (written before listings were recorded) is an
/// error, for gc and verify alike, since what it lists is unknown.
pub(crate) fn kept_publications(
    vault: &Vault,
    url: &str,
    opts: &GcOptions,
) -> Result<Vec<S3Publication>> {
    let kept = vault
        .catalog
        .s3_kept_publications(url, opts.keep_last, opts.grace.as_secs())?;
    for p in &kept {
        if !vault.catalog.s3_listing_recorded(p.id)? {
            return Err(S3Error::NoListing {
                dest: url.to_string(),
                publication: p.id,
            }
            .into());
        }
    }
    Ok(kept)
}

/// Decide what to delete (nothing is deleted). The locks are held by the caller.
fn plan(vault: &Vault, b: &Bucket, d: &S3Dest, opts: &GcOptions, dry: bool) -> Result<S3GcReport> {
    let url = d.url();
    let grace = opts.grace.as_secs();
    let kept = kept_publications(vault, &url, opts)?;
    let mut keep: HashSet<String> = HashSet::new();
    for p in &kept {
        keep.extend(vault.catalog.s3_objects(p.id)?.into_iter().map(|o| o.key));
    }
    keep.extend(live_closure(b)?);
    // Another DEST of this store nested under this prefix is its own gc's business.
    let nested: Vec<String> = vault
        .catalog
        .s3_publications(None)?
        .into_iter()
        .filter_map(|p| {
            p.dest
                .strip_prefix(&format!("{url}/"))
                .map(|rest| format!("{rest}/"))
        })
        .collect();
    let cutoff = crate::host::now().saturating_sub(grace.min(i64::MAX as u64) as i64);
    let mut r = S3GcReport {
        dry_run: dry,
        dest: url,
        keep_last: opts.keep_last,
        grace_secs: grace,
        publications_kept: kept.iter().map(|p| p.id).collect(),
        objects_listed: 0,
        objects_kept: 0,
        objects_within_grace: 0,
        objects_deleted: 0,
        bytes_deleted: 0,
        deleted: Vec::new(),
    };
    for o in b.list()? {
        if nested.iter().any(|n| o.key.starts_with(n.as_str())) {
            continue;
        }
        r.objects_listed += 1;
        if keep.contains(&o.key) {
            r.objects_kept += 1;
        } else if o.modified > cutoff {
            r.objects_within_grace += 1;
        } else {
            r.objects_deleted += 1;
            r.bytes_deleted += o.size;
            r.deleted.push(S3Doomed {
                key: o.key,
                size: o.size,
            });
        }
    }
    Ok(r)
}

/// What `gc s3://…` would delete (a dry run).
pub fn s3_plan(vault: &Vault, d: &S3Dest, opts: &GcOptions) -> Result<S3GcReport> {
    let _locks = s3::lock(vault, d, "gc")?;
    let b = Bucket::open(d)?;
    plan(vault, &b, d, opts, true)
}

/// Plan, then delete exactly what the plan lists (under the same locks).
pub fn s3_gc(vault: &Vault, d: &S3Dest, opts: &GcOptions) -> Result<S3GcReport> {
    let _locks = s3::lock(vault, d, "gc")?;
    let b = Bucket::open(d)?;
    let r = plan(vault, &b, d, opts, false)?;
    // Rows first (invariant 4): the publications not kept are collected, then their objects go.
    vault
        .catalog
        .mark_s3_collected(&r.dest, &r.publications_kept)?;
    let keys: Vec<String> = r.deleted.iter().map(|o| o.key.clone()).collect();
    b.delete(&keys)?;
    Ok(r)
}

/// The keys the bucket's index documents reach: themselves, the products documents they
/// name, and every item path those list.
fn live_closure(b: &Bucket) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    let mut products = Vec::new();
    for name in INDEX_NAMES {
        let Some(body) = b.get(name)? else { continue };
        out.insert(name.to_string());
        let v = json(name, &body)?;
        if let Some(entries) = v.get("index").and_then(Value::as_object) {
            for e in entries.values() {
                if let Some(p) = e.get("path").and_then(Value::as_str) {
                    products.push(p.to_string());
                }
            }
        }
    }
    products.sort();
    products.dedup();
    for p in products {
        out.insert(p.clone());
        let Some(body) = b.get(&p)? else { continue };
        let v = json(&p, &body)?;
        item_paths(&v, &mut out);
    }
    Ok(out)
}

/// A document's JSON (unwrapped when clearsigned).
fn json(name: &str, body: &[u8]) -> Result<Value> {
    let text = if openpgp::is_clearsigned(body) {
        openpgp::unwrap_cleartext(body).map_err(|source| Error::Signing { source })?
    } else {
        body.to_vec()
    };
    serde_json::from_slice(&text).map_err(|source| Error::Json {
        path: name.to_string(),
        source,
    })
}

/// Every `products.*.versions.*.items.*.path` of a products document.
fn item_paths(v: &Value, out: &mut HashSet<String>) {
    fn objects(v: Option<&Value>) -> impl Iterator<Item = &Value> {
        v.and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.values())
    }
    for p in objects(v.get("products")) {
        for ver in objects(p.get("versions")) {
            for it in objects(ver.get("items")) {
                if let Some(path) = it.get("path").and_then(Value::as_str) {
                    out.insert(path.to_string());
                }
            }
        }
    }
}

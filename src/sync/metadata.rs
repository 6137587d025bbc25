//! The metadata half of a sync: fetch the start document, verify its signature (or refuse an
//! unsigned document under a signed start), parse it and follow `index:1.0` entries depth-first
//! in document order, checking each entry's own size/checksum against the document it names.

use std::collections::{BTreeSet, HashSet};

use crate::checksum;
use crate::error::{Error, Result};
use crate::fetch::{self, Fetcher, Location, Progress};
use crate::openpgp::{self, Keyring};
use crate::streams;

/// A metadata document as fetched in this run.
pub(super) struct FetchedDoc {
    pub(super) path: String,
    /// The URL that answered (redacted) and the document's top-level `updated`.
    pub(super) url: String,
    pub(super) updated: Option<String>,
    /// For the next run's conditional request of this URL.
    pub(super) validators: Option<fetch::Validators>,
    pub(super) kind: &'static str,
    pub(super) content_id: Option<String>,
    pub(super) raw: Vec<u8>,
    pub(super) products: Option<streams::Products>,
}

pub(super) struct Metadata {
    pub(super) docs: Vec<FetchedDoc>,
    pub(super) signed: bool,
    pub(super) verified: bool,
    pub(super) signers: BTreeSet<String>,
}

/// How deep nested `index:1.0` documents may go.
const MAX_INDEX_DEPTH: usize = 4;

pub(super) async fn fetch_metadata(
    fetcher: &Fetcher,
    loc: &mut Location,
    start_path: &str,
    keyring: Option<&Keyring>,
    no_verify: bool,
    progress: &dyn Progress,
) -> Result<Metadata> {
    let start = fetcher.get_document(loc, start_path, progress).await?;
    let signed = start_path.ends_with("sjson") || openpgp::is_clearsigned(&start.bytes);
    let mut meta = Metadata {
        docs: Vec::new(),
        signed,
        verified: signed && !no_verify,
        signers: BTreeSet::new(),
    };
    let mut seen = HashSet::new();
    seen.insert(start_path.to_string());
    // Work list of (path, bytes already fetched, depth); documents keep their discovery order.
    let mut queue: Vec<(String, fetch::Fetched, usize)> = vec![(start_path.to_string(), start, 0)];
    while let Some((path, fetched, depth)) = queue.pop() {
        let payload = unwrap_payload(&fetched, signed, keyring, no_verify, &mut meta.signers)?;
        let doc = streams::parse(&fetched.url, &payload)?;
        match doc {
            streams::Document::Products(p) => {
                meta.docs.push(FetchedDoc {
                    path,
                    url: fetched.url.clone(),
                    validators: fetched.validators.clone(),
                    updated: p.top_field("updated").map(str::to_string),
                    kind: "products",
                    content_id: Some(p.content_id().to_string()),
                    raw: fetched.bytes,
                    products: Some(p),
                });
            }
            streams::Document::Index(index) => {
                meta.docs.push(FetchedDoc {
                    path,
                    url: fetched.url.clone(),
                    validators: fetched.validators.clone(),
                    updated: index.updated.clone(),
                    kind: "index",
                    content_id: None,
                    raw: fetched.bytes,
                    products: None,
                });
                let mut children = Vec::new();
                for entry in &index.entries {
                    let Some(p) = &entry.path else { continue };
                    if !seen.insert(p.clone()) {
                        continue;
                    }
                    let child = fetcher.get_document(loc, p, progress).await?;
                    check_entry(entry, &child)?;
                    if entry.is_followed() {
                        if depth + 1 > MAX_INDEX_DEPTH {
                            return Err(Error::IndexLoop { url: child.url });
                        }
                        children.push((p.clone(), child, depth + 1));
                    } else {
                        // Listed but not a format we follow: copied verbatim (spec §1.2).
                        meta.docs.push(FetchedDoc {
                            path: p.clone(),
                            url: child.url.clone(),
                            validators: child.validators.clone(),
                            updated: None,
                            kind: "other",
                            content_id: Some(entry.content_id.clone()),
                            raw: child.bytes,
                            products: None,
                        });
                    }
                }
                // Depth-first in document order: push reversed onto the stack.
                queue.extend(children.into_iter().rev());
            }
        }
    }
    Ok(meta)
}

/// The bytes handed to the JSON parser: exactly the verified text under a signed start.
fn unwrap_payload(
    fetched: &fetch::Fetched,
    signed: bool,
    keyring: Option<&Keyring>,
    no_verify: bool,
    signers: &mut BTreeSet<String>,
) -> Result<Vec<u8>> {
    if !signed {
        return Ok(fetched.bytes.clone());
    }
    if !openpgp::is_clearsigned(&fetched.bytes) {
        return Err(Error::Unsigned {
            url: fetched.url.clone(),
        });
    }
    if no_verify {
        return openpgp::unwrap_cleartext(&fetched.bytes).map_err(|e| Error::Signature {
            url: fetched.url.clone(),
            source: e,
        });
    }
    let Some(keyring) = keyring else {
        return Err(Error::NoKeyring {
            url: fetched.url.clone(),
        });
    };
    let v = openpgp::verify_cleartext(keyring, &fetched.bytes).map_err(|e| Error::Signature {
        url: fetched.url.clone(),
        source: e,
    })?;
    signers.insert(v.signer);
    Ok(v.payload)
}

/// An index entry's own size/checksum, when it carries one, must match the document.
fn check_entry(entry: &streams::IndexEntry, doc: &fetch::Fetched) -> Result<()> {
    if let Some(size) = entry.size
        && size != doc.bytes.len() as u64
    {
        return Err(Error::DocumentMismatch {
            url: doc.url.clone(),
            what: format!("size {} expected {size}", doc.bytes.len()),
        });
    }
    if let Some((algo, want)) = entry.checksums.strongest() {
        let mut h = checksum::MultiHasher::new(&[algo]);
        h.update(&doc.bytes);
        let got = h.finish().upstream;
        if got.get(algo).map(str::to_ascii_lowercase) != Some(want.to_ascii_lowercase()) {
            return Err(Error::DocumentMismatch {
                url: doc.url.clone(),
                what: format!("{} differs", algo.name()),
            });
        }
    }
    Ok(())
}

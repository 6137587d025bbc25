//! The metadata half of a sync: fetch the start document, verify its signature (or refuse an
//! unsigned document under a signed start), parse it and follow `index:1.0` entries depth-first
//! in document order, checking each entry's own size/checksum against the document it names.
//!
//! Memory (issue 8 item 4): a document's bytes live only until it is verified and parsed; a
//! real run writes them to a file in the store's `tmp/` right then ([`Staged`]), committed as a
//! blob only after the items (as before: a sync refused for space writes nothing into
//! `blobs/`); a dry run just drops them. An unsigned
//! document is parsed from the fetched bytes themselves, never from a copy.

use std::collections::{BTreeSet, HashSet};

use crate::catalog::DocumentKind;
use crate::checksum;
use crate::error::{Error, Result};
use crate::fetch::{self, Fetcher, Location, Progress};
use crate::openpgp::{self, Keyring};
use std::path::{Path, PathBuf};

use crate::error::IoResultExt;
use crate::store::BlobStore;
use crate::streams;

/// A metadata document as fetched in this run.
pub(super) struct FetchedDoc {
    pub(super) path: String,
    /// The URL that answered (redacted) and the document's top-level `updated`.
    pub(super) url: String,
    pub(super) updated: Option<String>,
    /// For the next run's conditional request of this URL.
    pub(super) validators: Option<fetch::Validators>,
    pub(super) kind: DocumentKind,
    pub(super) content_id: Option<String>,
    /// The document's bytes waiting in `tmp/` (a real run; `None` in a dry run).
    pub(super) blob: Option<Staged>,
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
    store: Option<&Path>,
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
    while let Some((path, mut fetched, depth)) = queue.pop() {
        let doc = read_document(&fetched, signed, keyring, no_verify, &mut meta.signers)?;
        let blob = keep(store, std::mem::take(&mut fetched.bytes))?;
        match doc {
            streams::Document::Products(p) => {
                meta.docs.push(FetchedDoc {
                    path,
                    url: fetched.url.clone(),
                    validators: fetched.validators.clone(),
                    updated: p.top_field("updated").map(str::to_string),
                    kind: DocumentKind::Products,
                    content_id: Some(p.content_id().to_string()),
                    blob,
                    products: Some(p),
                });
            }
            streams::Document::Index(index) => {
                meta.docs.push(FetchedDoc {
                    path,
                    url: fetched.url.clone(),
                    validators: fetched.validators.clone(),
                    updated: index.updated.clone(),
                    kind: DocumentKind::Index,
                    content_id: None,
                    blob,
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
                            kind: DocumentKind::Other,
                            content_id: Some(entry.content_id.clone()),
                            blob: keep(store, child.bytes)?,
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

/// A verified document's bytes: written to the store's `tmp/` directory `tmp` in a real run,
/// dropped in a dry run.
fn keep(tmp: Option<&Path>, bytes: Vec<u8>) -> Result<Option<Staged>> {
    let Some(tmp) = tmp else {
        return Ok(None);
    };
    let mut h = checksum::MultiHasher::all();
    h.update(&bytes);
    let digests = h.finish();
    let mut file = tempfile::NamedTempFile::new_in(tmp).with_path("create temp file in", tmp)?;
    std::io::Write::write_all(&mut file, &bytes).with_path("write", file.path())?;
    Ok(Some(Staged {
        digests,
        file: file.into_temp_path(),
    }))
}

/// A document's bytes in a temporary file of the store (removed if never committed).
pub(super) struct Staged {
    digests: checksum::Digests,
    file: tempfile::TempPath,
}

impl Staged {
    /// Move the document to its blob address without any fsync ([`BlobStore::place`]): it is
    /// not durable, and gets no row, until the caller's [`BlobStore::make_durable`] returns.
    pub(super) fn place(self, store: &BlobStore) -> Result<checksum::Digests> {
        if !store.contains(&self.digests.blake3) {
            let path: PathBuf = self.file.to_path_buf();
            store.place(&path, &self.digests)?;
        }
        Ok(self.digests)
    }
}

/// The document parsed from exactly the verified text under a signed start (the signature is
/// checked on a second thread while the text is parsed, `openpgp::verify_cleartext_with`: the
/// parse is dropped unless the signature verifies, and a bad signature is reported before any
/// parse error), from the fetched bytes themselves under an unsigned one.
fn read_document(
    fetched: &fetch::Fetched,
    signed: bool,
    keyring: Option<&Keyring>,
    no_verify: bool,
    signers: &mut BTreeSet<String>,
) -> Result<streams::Document> {
    if !signed {
        return Ok(streams::parse(&fetched.url, &fetched.bytes)?);
    }
    if !openpgp::is_clearsigned(&fetched.bytes) {
        return Err(Error::Unsigned {
            url: fetched.url.clone(),
        });
    }
    if no_verify {
        let payload = openpgp::unwrap_cleartext(&fetched.bytes).map_err(|e| Error::Signature {
            url: fetched.url.clone(),
            source: e,
        })?;
        return Ok(streams::parse(&fetched.url, &payload)?);
    }
    let Some(keyring) = keyring else {
        return Err(Error::NoKeyring {
            url: fetched.url.clone(),
        });
    };
    let v = openpgp::verify_cleartext_with(keyring, &fetched.bytes, |payload| {
        streams::parse(&fetched.url, payload)
    })
    .map_err(|e| Error::Signature {
        url: fetched.url.clone(),
        source: e,
    })?;
    signers.insert(v.signer);
    Ok(v.value?)
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

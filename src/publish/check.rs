//! The tree checker: reads a tree the way a client does (index → products documents → items),
//! from the files in the tree itself, and reports every listed item that is absent, not a
//! regular file, or of the wrong size, and every listed document that is absent.
//!
//! Protects invariant 3: publish runs it on the tree it is about to flip to and refuses an
//! incomplete one (unless told otherwise); tests run it on the published link after every kill.
//! Signatures are not checked here (the documents are the store's own or were verified at sync).

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use crate::error::{Error, IoResultExt, Result};
use crate::openpgp;
use crate::streams::{self, Document};

/// How many examples of problems a check keeps.
const EXAMPLES: usize = 5;

/// What a tree's metadata lists and what is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TreeCheck {
    /// Metadata documents read.
    pub documents: usize,
    /// Distinct item paths listed.
    pub listed: usize,
    /// Listed items or documents that are absent or of the wrong size.
    pub missing: usize,
    /// The first few problems, e.g. `` `a/b` (absent) ``.
    pub examples: Vec<String>,
}

impl TreeCheck {
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    fn problem(&mut self, what: String) {
        self.missing += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what);
        }
    }
}

/// The index documents a client may start from.
pub const INDEX_NAMES: [&str; 2] = ["streams/v1/index.sjson", "streams/v1/index.json"];

/// Check the tree at (or behind the link) `root`, starting from every standard index document
/// it has (`streams/v1/index.sjson`, `streams/v1/index.json`).
pub fn check_published(root: &Path) -> Result<TreeCheck> {
    let root = fs::canonicalize(root).with_path("resolve", root)?;
    let starts: Vec<String> = INDEX_NAMES
        .iter()
        .filter(|p| root.join(p).is_file())
        .map(|p| p.to_string())
        .collect();
    if starts.is_empty() {
        return Err(Error::NoIndex {
            root,
            looked: INDEX_NAMES.map(|p| format!("`{p}`")).join(", "),
        });
    }
    check_tree(&root, &starts)
}

/// Check the tree at `root` from the documents `starts` (relative paths).
pub fn check_tree(root: &Path, starts: &[String]) -> Result<TreeCheck> {
    let mut check = TreeCheck::default();
    let mut seen_docs: HashSet<String> = HashSet::new();
    let mut seen_items: HashSet<String> = HashSet::new();
    let mut queue: Vec<String> = starts.iter().rev().cloned().collect();
    while let Some(rel) = queue.pop() {
        if !seen_docs.insert(rel.clone()) {
            continue;
        }
        let Some(payload) = read_document(root, &rel, &mut check)? else {
            continue;
        };
        check.documents += 1;
        match streams::parse(&rel, &payload)? {
            Document::Index(index) => {
                for entry in index.entries.iter().rev() {
                    let Some(p) = &entry.path else { continue };
                    if entry.is_followed() {
                        queue.push(p.clone());
                    } else if seen_docs.insert(p.clone()) && !is_file(root, p) {
                        check.problem(format!("`{p}` (document absent)"));
                    }
                }
            }
            Document::Products(products) => {
                for item in products.items() {
                    let Some(p) = item.path else { continue };
                    if !seen_items.insert(p.to_string()) {
                        continue;
                    }
                    check.listed += 1;
                    match fs::symlink_metadata(root.join(p)) {
                        Ok(m) if m.is_file() => {
                            if let Some(size) = item.size
                                && m.len() != size
                            {
                                check.problem(format!("`{p}` (size {}, listed {size})", m.len()));
                            }
                        }
                        Ok(_) => check.problem(format!("`{p}` (not a regular file)")),
                        Err(_) => check.problem(format!("`{p}` (absent)")),
                    }
                }
            }
        }
    }
    Ok(check)
}

fn is_file(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok_and(|m| m.is_file())
}

/// The JSON text of a document of the tree (unwrapped when clearsigned); `None` when absent.
fn read_document(root: &Path, rel: &str, check: &mut TreeCheck) -> Result<Option<Vec<u8>>> {
    streams::check_path(rel).map_err(|source| {
        Error::Parse(streams::ParseError::UnsafePath {
            doc: root.display().to_string(),
            at: rel.to_string(),
            source,
        })
    })?;
    let path = root.join(rel);
    if !is_file(root, rel) {
        check.problem(format!("`{rel}` (document absent)"));
        return Ok(None);
    }
    let bytes = fs::read(&path).with_path("read", &path)?;
    if openpgp::is_clearsigned(&bytes) {
        let payload = openpgp::unwrap_cleartext(&bytes).map_err(|e| Error::Signature {
            url: path.display().to_string(),
            source: e,
        })?;
        return Ok(Some(payload));
    }
    Ok(Some(bytes))
}

//! Writing generated files: item contents (deterministic per path, streamed in 64 KiB chunks and
//! hashed while written) and metadata documents in `json.dumps(indent=1, sort_keys=True)` form.
//!
//! Protects: every file appears under its name only complete (temp file in the same directory,
//! then rename), and the sha256 returned is that of exactly the bytes written.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use super::{Fill, GenError};
use crate::checksum::{Algo, MultiHasher};

const CHUNK: usize = 64 * 1024;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write the item at `rel` (a `/`-separated path under `root`) and return its sha256.
pub(super) fn write_item(
    root: &Path,
    rel: &str,
    size: u64,
    fill: Fill,
) -> Result<String, GenError> {
    let path = root.join(rel);
    let mut hasher = MultiHasher::new(&[Algo::Sha256]);
    let mut pattern = Pattern::new(rel);
    let mut rng = fastrand::Rng::with_seed(fnv1a(rel.as_bytes()));
    let mut buf = Vec::with_capacity(CHUNK);
    write_atomic_with(&path, |file| {
        let mut remaining = size;
        while remaining > 0 {
            let n = usize::try_from(remaining).unwrap_or(CHUNK).min(CHUNK);
            buf.clear();
            match fill {
                Fill::Pattern => pattern.fill(&mut buf, n),
                Fill::Random => {
                    buf.resize(n, 0);
                    rng.fill(&mut buf);
                }
            }
            hasher.update(&buf);
            file.write_all(&buf)?;
            remaining -= n as u64;
        }
        Ok(())
    })?;
    Ok(hasher.finish().upstream.sha256.unwrap_or_default())
}

/// The sha256 of the [`Fill::Pattern`] contents of several items one after the other (`(rel,
/// size)` each), without writing anything: LXD's `combined_*_sha256` fields, the fingerprint of an
/// image split into a metadata tarball and a root file system.
pub(super) fn pattern_sha256(parts: &[(&str, u64)]) -> String {
    let mut hasher = MultiHasher::new(&[Algo::Sha256]);
    let mut buf = Vec::with_capacity(CHUNK);
    for (rel, size) in parts {
        let mut pattern = Pattern::new(rel);
        let mut remaining = *size;
        while remaining > 0 {
            let n = usize::try_from(remaining).unwrap_or(CHUNK).min(CHUNK);
            buf.clear();
            pattern.fill(&mut buf, n);
            hasher.update(&buf);
            remaining -= n as u64;
        }
    }
    hasher.finish().upstream.sha256.unwrap_or_default()
}

/// The bytes of a [`Fill::Pattern`] item: its path and a newline, repeated.
struct Pattern {
    line: Vec<u8>,
    phase: usize,
}

impl Pattern {
    fn new(rel: &str) -> Pattern {
        Pattern {
            line: format!("{rel}\n").into_bytes(),
            phase: 0,
        }
    }

    /// Append the next `n` bytes to `buf`.
    fn fill(&mut self, buf: &mut Vec<u8>, n: usize) {
        let want = buf.len() + n;
        while buf.len() < want {
            let rest = self.line.get(self.phase..).unwrap_or_default();
            let take = rest.len().min(want - buf.len());
            buf.extend_from_slice(rest.get(..take).unwrap_or_default());
            self.phase = (self.phase + take) % self.line.len().max(1);
        }
    }
}

/// Replace `path` with `bytes` (temp file + rename).
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GenError> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<(), GenError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|source| GenError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(
        ".{name}.streamgen-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = fs::File::create(&tmp).and_then(|mut file| {
        fill(&mut file)?;
        file.flush()
    });
    let result = result.and_then(|()| fs::rename(&tmp, path));
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(GenError::Write {
            path: path.to_owned(),
            source,
        });
    }
    Ok(())
}

/// The document as Python's `json.dumps(doc, indent=1, sort_keys=True) + "\n"` prints it.
pub(super) fn to_json(doc: &Value, path: &Path) -> Result<Vec<u8>, GenError> {
    use serde::Serialize as _;
    let sorted = sort_keys(doc);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b" "),
    );
    sorted
        .serialize(&mut ser)
        .map_err(|source| GenError::Json {
            path: path.to_owned(),
            source,
        })?;
    out.push(b'\n');
    Ok(out)
}

fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            let mut sorted = Map::new();
            for k in keys {
                if let Some(inner) = map.get(k) {
                    sorted.insert(k.clone(), sort_keys(inner));
                }
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// FNV-1a 64: a hash that never changes between Rust versions (the seed of a file's bytes).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

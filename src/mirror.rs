//! `streamvault mirror` / the binary invoked as `sstream-mirror`: the MAAS docs' command line,
//! unchanged, mapped onto the store.
//!
//! Each OUTPUT_DIR is one implicit source (`mirror-<hash of its absolute path>`). A run syncs a
//! snapshot with sstream-mirror's semantics (products the filters do not match are kept from
//! the previous snapshot; `--max`/`--keep` against what OUTPUT_DIR holds) and publishes it to
//! OUTPUT_DIR with the upstream metadata verbatim. Output on stderr follows sstream-mirror:
//! `-v` gives `to_add=[…] to_remove=[…]` per product, then always the `+ …`/`- …` lines and
//! `N Mb change` of its dry-run pass (spec §2.5).
//!
//! The whole run is [`run`] (`flow`): a dry run touches no store (no catalogue file, no
//! source row, no lock; it plans against the existing catalogue read-only, or an empty one in
//! memory); a first run over a directory an earlier sstream-mirror filled imports its files and
//! its `.data/` state before the sync; the publish is verbatim.
//!
//! After a successful run, retention runs by itself (`gc::auto_collect`, store setting
//! `auto-gc`): the implicit source keeps only the snapshot OUTPUT_DIR serves plus what was
//! retired less than the grace period ago (`STREAMVAULT_GRACE`, setting `grace`), so with
//! `STREAMVAULT_GRACE=0s` the store holds what the python tool's tree holds.

pub mod args;
mod flow;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::NewSource;
use crate::error::{Error, IoResultExt, Result};
use crate::streams::Filters;
use crate::sync::{ItemLine, ProductChange, SyncEvents, SyncOptions, SyncReport};
use crate::vault::Vault;

pub use args::{MirrorArgs, Parsed, UsageError};
pub use flow::{Report, output_dir, run};

/// The implicit source of an output directory.
pub(crate) fn source_name(output_d: &Path) -> String {
    let h = blake3::hash(output_d.as_os_str().as_encoded_bytes());
    let hex = h.to_hex();
    format!("mirror-{}", hex.get(..16).unwrap_or("0"))
}

/// The source row a mirror run uses: the command line of this run.
pub(crate) fn new_source(a: &MirrorArgs, output_d: &Path) -> Result<NewSource> {
    let keyring = match &a.keyring {
        Some(k) => Some(std::path::absolute(k).with_path("resolve", k)?),
        None => None,
    };
    let url = if a.source_mirror.contains("://") {
        a.source_mirror.clone()
    } else {
        let p = PathBuf::from(&a.source_mirror);
        let mut s = std::path::absolute(&p)
            .with_path("resolve", &p)?
            .to_string_lossy()
            .into_owned();
        if a.source_mirror.ends_with('/') && !s.ends_with('/') {
            s.push('/');
        }
        s
    };
    Ok(NewSource {
        name: source_name(output_d),
        url,
        path: a.path.clone(),
        keyring,
        max: a.max,
        keep: a.keep,
        // sstream-mirror ignores --keyring for unsigned start documents and checks signed ones
        // only with a keyring or gpg's default keyring; we need a keyring to check.
        no_verify: a.no_verify,
        mirrors: a.mirrors.clone(),
        filters: a.filters.clone(),
    })
}

/// Validate what sstream-mirror validates before touching the network (it fails later for
/// `--keep` without `--max`; failing first is an intended difference).
pub fn check(a: &MirrorArgs) -> Result<()> {
    Filters::parse_all(&a.filters)?;
    if a.keep && a.max.is_none() {
        return Err(Error::KeepWithoutMax);
    }
    Ok(())
}

/// Python's `repr()` of a list of strings: `['a', 'b']`.
pub(crate) fn py_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// The `-v` lines: `<content_id>/<product>: to_add=[…] to_remove=[…]`.
pub fn verbose_lines(changes: &[ProductChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            format!(
                "{}/{}: to_add={} to_remove={}",
                c.content_id,
                c.product,
                py_list(&c.add),
                py_list(&c.remove)
            )
        })
        .collect()
}

/// The dry-run pass lines: every `+` line, then every `-` line, then `N Mb change`.
pub fn plan_lines(changes: &[ProductChange]) -> Vec<String> {
    const MB: u64 = 1024 * 1024;
    let mut out = Vec::new();
    let mut total = |sign: char, items: fn(&ProductChange) -> &[ItemLine]| {
        let mut sum: i128 = 0;
        for c in changes {
            for it in items(c) {
                out.push(format!(
                    "{sign} {} {} {} {} {} Mb",
                    c.product,
                    it.version,
                    it.item,
                    it.path,
                    it.size / MB
                ));
                sum += i128::from(it.size);
            }
        }
        sum
    };
    let add = total('+', |c| &c.added_items);
    let remove = total('-', |c| &c.removed_items);
    // Python's "%d" of a float: truncation toward zero.
    out.push(format!("{} Mb change", (add - remove) / i128::from(MB)));
    out
}

/// Options for the sync half of a mirror run.
pub(crate) fn sync_options(a: &MirrorArgs) -> SyncOptions {
    let mut o = SyncOptions {
        dry_run: a.dry_run,
        keep_unmatched_products: true,
        no_item_download: a.no_item_download,
        allow_unchecked_items: a.no_checksumming_reader,
        ..SyncOptions::default()
    };
    if let Some(j) = a.jobs {
        o.fetch.jobs = j;
    }
    if let Some(n) = a.speed_limit {
        o.fetch.speed_limit = n;
    }
    if let Some(t) = a.speed_time {
        o.fetch.speed_time = std::time::Duration::from_secs(t);
    }
    if let Some(t) = a.request_timeout {
        o.fetch.request_timeout = (t > 0).then(|| std::time::Duration::from_secs(t));
    }
    o.allow_downgrade = a.allow_downgrade;
    o
}

/// Sync the implicit source of `a.output_d` in `vault` (creating or updating its row).
pub(crate) async fn sync(
    vault: &mut Vault,
    a: &MirrorArgs,
    output_d: &Path,
    events: Arc<dyn SyncEvents>,
) -> Result<SyncReport> {
    let ns = new_source(a, output_d)?;
    vault.catalog.upsert_source(&ns)?;
    // Retention keeps only what OUTPUT_DIR serves (plus the grace period) for this source.
    vault.catalog.mark_implicit(&ns.name)?;
    let source = vault.catalog.source(&ns.name)?;
    crate::unattended::sync_recorded(vault, &source, &sync_options(a), events).await
}

/// Seed the implicit source of an OUTPUT_DIR that an earlier python sstream-mirror filled with
/// its `.data/<content_id>` state (what it recorded as mirrored), so that the first run
/// computes the same `to_add`/`to_remove` as the python tool would. Only items whose content
/// is in the store (imported from the directory by content) are recorded; an unreadable state
/// file is skipped (it only ever refines the selection). Returns the seeded snapshot, if any.
pub(crate) fn seed_from_data(
    vault: &mut Vault,
    a: &MirrorArgs,
    output_d: &Path,
) -> Result<Option<crate::catalog::SnapshotId>> {
    use crate::catalog::{Item, NewSnapshot};
    use crate::checksum::Checksums;
    let data = output_d.join(".data");
    let ns = new_source(a, output_d)?;
    if !data.is_dir() || vault.catalog.latest_snapshot(&ns.name)?.is_some() {
        return Ok(None);
    }
    let source = vault.catalog.upsert_source(&ns)?;
    let mut items = Vec::new();
    let entries = std::fs::read_dir(&data).with_path("read directory", &data)?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "references.json" || !entry.path().is_file() {
            continue;
        }
        let Ok(text) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(tree) = serde_json::from_slice::<serde_json::Value>(&text) else {
            continue;
        };
        let cid = tree
            .get("content_id")
            .and_then(|v| v.as_str())
            .unwrap_or(&name)
            .to_string();
        let Some(products) = tree.get("products").and_then(|v| v.as_object()) else {
            continue;
        };
        for (pname, prod) in products {
            let Some(versions) = prod.get("versions").and_then(|v| v.as_object()) else {
                continue;
            };
            for (vname, ver) in versions {
                let Some(its) = ver.get("items").and_then(|v| v.as_object()) else {
                    continue;
                };
                for (iname, it) in its {
                    let text = |k: &str| {
                        it.get(k)
                            .and_then(|v| v.as_str())
                            .map(str::to_ascii_lowercase)
                    };
                    let path = it.get("path").and_then(|v| v.as_str()).map(str::to_string);
                    let size = it.get("size").and_then(|v| v.as_u64());
                    let checksums = Checksums {
                        md5: text("md5"),
                        sha256: text("sha256"),
                        sha512: text("sha512"),
                    };
                    let blob = match (&path, size) {
                        (Some(p), Some(sz)) if crate::streams::check_path(p).is_ok() => {
                            match vault.catalog.find_blob(&checksums, sz)? {
                                Some(b) => Some(b),
                                None => continue, // not on disk (or not verifying): not mirrored
                            }
                        }
                        (None, _) => None,
                        _ => continue,
                    };
                    items.push(Item {
                        content_id: cid.clone(),
                        product: pname.clone(),
                        version: vname.clone(),
                        item: iname.clone(),
                        path,
                        size,
                        checksums,
                        blob,
                    });
                }
            }
        }
    }
    if items.is_empty() {
        return Ok(None);
    }
    let digest = crate::catalog::snapshot_digest(&[], &items);
    let id = vault.catalog.insert_snapshot(&NewSnapshot {
        source_id: Some(source.id),
        source: source.name.clone(),
        url: source.url.clone(),
        start_path: ".data".into(),
        filters: source.filters.clone(),
        max: source.max,
        keep: source.keep,
        signed: false,
        verified: false,
        signer: None,
        fetched_bytes: 0,
        duration_ms: 0,
        digest,
        documents: Vec::new(),
        items,
    })?;
    Ok(Some(id))
}

/// Write lines to a log sink, control characters escaped ([`crate::escape`]), ignoring a closed
/// sink (a log must never fail the run).
pub fn write_lines(out: &mut dyn Write, lines: &[String]) {
    for l in lines {
        let _ = writeln!(out, "{}", crate::escape::line(l));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_repr_of_lists() {
        assert_eq!(py_list(&[]), "[]");
        assert_eq!(
            py_list(&["20240301".into(), "x'y".into()]),
            "['20240301', \"x'y\"]"
        );
    }

    #[test]
    fn plan_lines_floor_sizes_and_truncate_the_change() {
        let line = |v: &str, size| ItemLine {
            version: v.into(),
            item: "i".into(),
            path: format!("p/{v}"),
            size,
        };
        let c = ProductChange {
            content_id: "c".into(),
            product: "p".into(),
            add: vec!["2".into()],
            remove: vec!["1".into()],
            added_items: vec![line("2", 3 * 1024 * 1024 - 1)],
            removed_items: vec![line("1", 5 * 1024 * 1024)],
        };
        assert_eq!(
            plan_lines(&[c]),
            ["+ p 2 i p/2 2 Mb", "- p 1 i p/1 5 Mb", "-2 Mb change"]
        );
    }

    #[test]
    fn implicit_source_names_are_stable_and_valid() {
        let n = source_name(Path::new("/var/www/html/maas/images/ephemeral-v3/stable"));
        assert_eq!(
            n,
            source_name(Path::new("/var/www/html/maas/images/ephemeral-v3/stable"))
        );
        assert!(crate::catalog::check_source_name(&n).is_ok());
        assert_ne!(n, source_name(Path::new("/srv/other")));
    }
}

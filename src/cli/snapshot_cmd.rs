//! `snapshots`, `snapshot show` and `diff`: read-only listings of the catalogue.

use std::path::Path;

use streamvault::error::{Error, Result};
use streamvault::vault::Vault;

use super::output::{size, table, time};
use super::status::ExitStatus;
use super::{json_out, out};

pub(super) fn read_vault(root: &Path) -> Result<Vault> {
    Vault::open_read_only(root)?.ok_or_else(|| Error::UnknownSnapshot(root.display().to_string()))
}

pub(super) fn snapshots(root: &Path, source: Option<&str>, json: bool) -> Result<ExitStatus> {
    let list = match Vault::open_read_only(root)? {
        Some(v) => v.catalog.snapshots(source)?,
        None => Vec::new(),
    };
    if json {
        return json_out(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.source.clone(),
                time(s.created_at),
                s.products.to_string(),
                s.versions.to_string(),
                s.items.to_string(),
                size(s.bytes as u64),
                size(s.fetched_bytes as u64),
                s.signer
                    .as_deref()
                    .map(|f| f.get(f.len().saturating_sub(16)..).unwrap_or(f).to_string())
                    .unwrap_or_else(|| {
                        if s.signed {
                            "unverified".into()
                        } else {
                            "-".into()
                        }
                    }),
            ]
        })
        .collect();
    table(
        &[
            "ID", "SOURCE", "CREATED", "PRODUCTS", "VERSIONS", "ITEMS", "SIZE", "FETCHED", "SIGNER",
        ],
        &rows,
    );
    Ok(ExitStatus::Success)
}

pub(super) fn snapshot_show(root: &Path, id: &str, items: bool, json: bool) -> Result<ExitStatus> {
    let v = read_vault(root)?;
    let s = v.catalog.resolve_snapshot(id)?;
    let docs = v.catalog.documents(s.id)?;
    if json {
        #[derive(serde::Serialize)]
        struct Show<'a> {
            snapshot: &'a streamvault::catalog::Snapshot,
            documents: &'a [streamvault::catalog::StoredDocument],
            #[serde(skip_serializing_if = "Option::is_none")]
            items: Option<Vec<streamvault::catalog::Item>>,
        }
        let list = if items {
            Some(v.catalog.items(s.id)?)
        } else {
            None
        };
        return json_out(&Show {
            snapshot: &s,
            documents: &docs,
            items: list,
        });
    }
    out!("snapshot:  {}", s.id);
    out!("source:    {}", s.source);
    out!("created:   {}", time(s.created_at));
    out!("url:       {}{}", s.url, s.start_path);
    out!(
        "signed:    {}",
        match (&s.signer, s.signed) {
            (Some(f), _) => format!("yes, verified, by {f}"),
            (None, true) => "yes, not verified (--no-verify)".into(),
            (None, false) => "no".into(),
        }
    );
    if !s.filters.is_empty() {
        out!("filters:   {}", s.filters.join(" "));
    }
    if let Some(m) = s.max {
        out!("max:       {m}{}", if s.keep { " (keep)" } else { "" });
    }
    out!(
        "contents:  {} products, {} versions, {} items, {}",
        s.products,
        s.versions,
        s.items,
        size(s.bytes as u64)
    );
    out!(
        "run:       fetched {} in {:.1} s",
        size(s.fetched_bytes as u64),
        s.duration_ms as f64 / 1000.0
    );
    for d in &docs {
        out!("document:  {} ({})", d.path, d.kind);
    }
    if items {
        v.catalog.for_each_item(s.id, |it| {
            out!(
                "{} {} {} {} {}",
                it.product,
                it.version,
                it.item,
                it.path.as_deref().unwrap_or("-"),
                it.size.map(size).unwrap_or_else(|| "-".into())
            );
            Ok(())
        })?;
    }
    Ok(ExitStatus::Success)
}

pub(super) fn diff(root: &Path, from: &str, to: &str, json: bool) -> Result<ExitStatus> {
    let v = read_vault(root)?;
    let a = v.catalog.resolve_snapshot(from)?;
    let b = v.catalog.resolve_snapshot(to)?;
    let d = streamvault::diff::diff(&v.catalog, a.id, b.id)?;
    if json {
        return json_out(&d);
    }
    for (sign, what, list) in [
        ("+", "product", &d.products_added),
        ("-", "product", &d.products_removed),
        ("+", "version", &d.versions_added),
        ("-", "version", &d.versions_removed),
        ("+", "item", &d.items_added),
        ("-", "item", &d.items_removed),
        ("~", "item", &d.items_changed),
    ] {
        for x in list {
            out!("{sign} {what} {x}");
        }
    }
    out!(
        "snapshot {} -> {}: products +{} -{}, versions +{} -{}, items +{} -{} ~{}",
        d.from,
        d.to,
        d.products_added.len(),
        d.products_removed.len(),
        d.versions_added.len(),
        d.versions_removed.len(),
        d.items_added.len(),
        d.items_removed.len(),
        d.items_changed.len()
    );
    Ok(ExitStatus::Success)
}

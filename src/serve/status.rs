//! `/-/status`: a read-only page (HTML, or JSON with `?json` / `Accept: application/json`) about
//! the store behind the served trees: per source its last run (snapshot, unchanged or failed, from the run history) and last snapshot, the snapshot history with what
//! changed, what is live on each mount and since when, the retired trees kept for their grace
//! period with its deadline, and the store's disk use.
//!
//! Protects the store and its secrets: the catalogue is opened read-only, only when it exists
//! (serve never creates a store; without one the page says so), nothing here writes, and URLs are
//! shown with their credentials removed. The catalogue is 0600: serve must run as the store's
//! owner (the systemd unit's `streamvault` user) to read it; otherwise the page says exactly that.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::store::Layout;

/// How many snapshots the history shows (each with its diff against the one before).
const HISTORY: i64 = 20;

/// Collect the page's data (blocking). `live`: `(mount label, DEST)`.
pub(super) fn gather(
    store: Option<&Path>,
    live: &[(String, PathBuf)],
    started: SystemTime,
) -> Value {
    let now = unix(SystemTime::now());
    let mounts: Vec<Value> = live
        .iter()
        .map(|(label, dest)| {
            let target = std::fs::read_link(dest).ok();
            json!({
                "mount": label,
                "dest": dest.display().to_string(),
                "link": target.as_ref().map(|t| t.display().to_string()),
                "tree": target.as_ref().and_then(|t| t.file_name()).map(|n| n.to_string_lossy().into_owned()),
            })
        })
        .collect();
    let mut report = json!({
        "generated_at": now,
        "server_started_at": unix(started),
        "mounts": mounts,
        "store": Value::Null,
    });
    let Some(root) = store else {
        report["store"] = json!({"state": "none", "message": "no store configured (--root)"});
        return report;
    };
    let layout = Layout::new(root);
    let db = layout.catalog();
    if !db.exists() {
        report["store"] = json!({
            "state": "none",
            "root": root.display().to_string(),
            "message": format!("no store at `{}` (serve never creates one; run `streamvault source add` and `sync` first)", root.display()),
        });
        return report;
    }
    let cat = match Catalog::open_read_only(&db) {
        Ok(Some(cat)) => cat,
        Ok(None) => {
            report["store"] = json!({"state": "none", "root": root.display().to_string(), "message": "no catalogue"});
            return report;
        }
        Err(e) => {
            report["store"] = json!({
                "state": "unreadable",
                "root": root.display().to_string(),
                "message": format!("cannot read the catalogue: {e}"),
                // An older schema names its own remedy; otherwise it is the file's owner.
                "hint": e.hint().unwrap_or_else(|| format!("catalog.db is mode 0600 and owned by {}: run serve as that user (the systemd unit runs as `streamvault`)", owner(&db))),
            });
            return report;
        }
    };
    match store_report(&cat, root, &mut report, now) {
        Ok(()) => {}
        Err(e) => {
            report["store"] = json!({
                "state": "unreadable",
                "root": root.display().to_string(),
                "message": format!("cannot read the catalogue: {e}"),
                "hint": format!("catalog.db is owned by {}", owner(&db)),
            });
        }
    }
    report
}

fn store_report(
    cat: &Catalog,
    root: &Path,
    report: &mut Value,
    now: i64,
) -> crate::error::Result<()> {
    // The last attempt of each source (sync or mirror: snapshot, unchanged, failed, or still
    // running / killed), from the run history; its error text is stored without credentials.
    let runs: std::collections::HashMap<String, crate::catalog::Run> = cat
        .last_runs()?
        .into_iter()
        .map(|r| (r.source.clone(), r))
        .collect();
    let sources: Vec<Value> = cat
        .status_sources()?
        .into_iter()
        .map(|s| {
            let run = runs.get(&s.name).map(|r| {
                json!({
                    "started_at": r.started_at, "finished_at": r.finished_at,
                    "result": r.result, "error": r.error,
                    "fetched_bytes": r.fetched_bytes, "items": r.items, "snapshot": r.snapshot,
                })
            });
            json!({
                "name": s.name,
                "url": redact(&s.url),
                "snapshots": s.snapshots,
                "last_run": run,
                "last_snapshot": s.last.map(|(id, at, items, bytes, ms)| json!({
                    "id": id, "created_at": at, "items": items, "bytes": bytes, "duration_ms": ms,
                    "result": "snapshot committed",
                })),
            })
        })
        .collect();
    let history: Vec<Value> = cat
        .status_snapshots(HISTORY)?
        .into_iter()
        .map(|s| {
            // A diff that fails is a catalogue error, reported as such (never "no changes").
            let changes = s
                .previous
                .map(|p| crate::diff::diff(cat, p, s.id))
                .transpose()?
                .map(|d| {
                    json!({
                        "from": d.from,
                        "products_added": d.products_added,
                        "products_removed": d.products_removed,
                        "versions_added": d.versions_added,
                        "versions_removed": d.versions_removed,
                        "items_changed": d.items_changed.len(),
                    })
                });
            Ok(json!({
                "id": s.id, "source": s.source, "created_at": s.created_at,
                "products": s.products, "versions": s.versions, "items": s.items,
                "bytes": s.bytes, "fetched_bytes": s.fetched_bytes,
                "changes": changes,
            }))
        })
        .collect::<crate::error::Result<_>>()?;
    let grace = i64::try_from(crate::settings::DEFAULT_GRACE.as_secs()).unwrap_or(86_400);
    let pubs = cat.status_publications(now - grace)?;
    // what each mount serves, and since when (the catalogue's live publication of that tree)
    if let Some(mounts) = report["mounts"].as_array_mut() {
        for m in mounts {
            let tree = m["tree"].as_str().map(str::to_owned);
            let dest = m["dest"].as_str().map(|d| absolute(Path::new(d)));
            let live = pubs.iter().find(|p| {
                p.retired_at.is_none()
                    && (Some(&p.tree) == tree.as_ref()
                        && dest.as_deref().is_none_or(|d| Path::new(&p.dest) == d))
            });
            let live = live.or_else(|| {
                pubs.iter()
                    .find(|p| p.retired_at.is_none() && Some(&p.tree) == tree.as_ref())
            });
            if let Some(p) = live {
                m["snapshot"] = json!(p.snapshot_id);
                m["since"] = json!(p.published_at);
                m["action"] = json!(p.action);
            }
        }
    }
    // trees retired within the grace period and not live again: one row per (DEST, tree), the
    // latest retirement (pubs are newest first)
    let live_trees: Vec<&str> = pubs
        .iter()
        .filter(|p| p.retired_at.is_none())
        .map(|p| p.tree.as_str())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let retained: Vec<Value> = pubs
        .iter()
        .filter(|p| !live_trees.contains(&p.tree.as_str()))
        .filter_map(|p| {
            let r = p.retired_at?;
            seen.insert((p.dest.as_str(), p.tree.as_str())).then(|| {
                json!({
                    "dest": p.dest, "tree": p.tree, "snapshot": p.snapshot_id,
                    "retired_at": r, "grace_deadline": r + grace,
                })
            })
        })
        .collect();
    let live_pubs: Vec<Value> = pubs
        .iter()
        .filter(|p| p.retired_at.is_none())
        .map(|p| json!({"dest": p.dest, "tree": p.tree, "snapshot": p.snapshot_id, "since": p.published_at, "action": p.action}))
        .collect();
    let (blobs, blob_bytes) = cat.status_blob_total()?;
    let layout = Layout::new(root);
    let trees = std::fs::read_dir(layout.root().join("trees")).map_or(0, |d| d.count());
    report["store"] = json!({
        "state": "ok",
        "root": root.display().to_string(),
        "sources": sources,
        "snapshots": history,
        "live": live_pubs,
        "retained": retained,
        "grace_seconds": grace,
        "disk": {"blobs": blobs, "blob_bytes": blob_bytes, "trees": trees},
    });
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// `scheme://host/…` without any user info (everything up to the last `@` before the path goes,
/// so a password holding `?`, `#` or `@` is removed too).
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}{tail}", &authority[at + 1..]),
        None => url.to_owned(),
    }
}

/// `uid N (name)` of a file's owner.
fn owner(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(path) else {
        return "its owner".into();
    };
    let uid = meta.uid();
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        p.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _ = f.next();
            (f.next()? == uid.to_string()).then(|| name.to_owned())
        })
    });
    match name {
        Some(n) => format!("`{n}` (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

pub(super) fn json(report: &Value) -> String {
    let mut s = serde_json::to_string_pretty(report).unwrap_or_default();
    s.push('\n');
    s
}

fn when(v: &Value) -> String {
    v.as_i64()
        .and_then(|t| u64::try_from(t).ok())
        .map(|t| {
            httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t))
        })
        .unwrap_or_else(|| "-".into())
}

/// A byte count of the report in the CLI's size format.
fn size(v: &Value) -> String {
    crate::space::size(v.as_u64().unwrap_or(0))
}

fn esc(v: &Value) -> String {
    match v {
        Value::String(s) => super::listing::escape(s),
        Value::Null => "-".into(),
        v => super::listing::escape(&v.to_string()),
    }
}

fn list(v: &Value) -> String {
    let items: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(esc).collect())
        .unwrap_or_default();
    if items.is_empty() {
        String::new()
    } else if items.len() > 6 {
        format!("{} … (+{})", items[..6].join(", "), items.len() - 6)
    } else {
        items.join(", ")
    }
}

pub(super) fn html(r: &Value) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>streamvault status</title>\n\
         <style>body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;\
         margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;\
         vertical-align:top}th{background:#eee}td.n{text-align:right}.ok{color:#060}.bad{color:#a00}\
         small{color:#666}</style>\n</head><body>\n<h1>streamvault status</h1>\n",
    );
    s.push_str(&format!(
        "<p><small>generated {} · server up since {} · read-only page (<a href=\"?json\">JSON</a>)</small></p>\n",
        when(&r["generated_at"]),
        when(&r["server_started_at"])
    ));
    s.push_str("<h2>Mounts</h2>\n<table id=\"mounts\"><tr><th>Mount</th><th>DEST</th><th>Live tree</th><th>Snapshot</th><th>Since</th></tr>\n");
    for m in r["mounts"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&m["mount"]),
            esc(&m["dest"]),
            esc(&m["tree"]),
            esc(&m["snapshot"]),
            when(&m["since"])
        ));
    }
    s.push_str("</table>\n");
    let store = &r["store"];
    if store["state"] != "ok" {
        s.push_str(&format!(
            "<h2>Store</h2>\n<p id=\"store\" class=\"bad\">{}</p>\n",
            esc(&store["message"])
        ));
        if !store["hint"].is_null() {
            s.push_str(&format!("<p>hint: {}</p>\n", esc(&store["hint"])));
        }
        s.push_str("</body></html>\n");
        return s;
    }
    s.push_str(&format!(
        "<h2>Store</h2>\n<p id=\"store\" class=\"ok\">{} · {} blobs, {} · {} trees</p>\n",
        esc(&store["root"]),
        store["disk"]["blobs"],
        size(&store["disk"]["blob_bytes"]),
        store["disk"]["trees"]
    ));
    s.push_str("<h2>Sources</h2>\n<table id=\"sources\"><tr><th>Source</th><th>URL</th><th>Snapshots</th><th>Last sync</th><th>Result</th><th>Items</th><th>Size</th></tr>\n");
    for src in store["sources"].as_array().into_iter().flatten() {
        let last = &src["last_snapshot"];
        let run = &src["last_run"];
        let (ran, result) = if run.is_null() {
            (
                when(&last["created_at"]),
                if last.is_null() {
                    "no snapshot yet".to_owned()
                } else {
                    format!("snapshot {} committed", last["id"])
                },
            )
        } else {
            let result = match run["result"].as_str().unwrap_or("") {
                "snapshot" => format!("snapshot {} committed", run["snapshot"]),
                "unchanged" => "unchanged".to_owned(),
                "failed" => format!("failed: {}", esc(&run["error"])),
                other => format!(
                    "{} (no end recorded: running, or killed)",
                    esc(&Value::from(other))
                ),
            };
            (when(&run["started_at"]), result)
        };
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            esc(&src["name"]),
            esc(&src["url"]),
            src["snapshots"],
            ran,
            result,
            esc(&last["items"]),
            if last.is_null() { "-".into() } else { size(&last["bytes"]) },
        ));
    }
    s.push_str("</table>\n<h2>Snapshot history</h2>\n<table id=\"snapshots\"><tr><th>#</th><th>Source</th><th>Created</th><th>Products</th><th>Versions</th><th>Items</th><th>Size</th><th>Changes</th></tr>\n");
    for snap in store["snapshots"].as_array().into_iter().flatten() {
        let c = &snap["changes"];
        let changes = if c.is_null() {
            "first snapshot of the source".to_owned()
        } else {
            let mut parts = Vec::new();
            for (key, label) in [
                ("products_added", "+ products"),
                ("products_removed", "− products"),
                ("versions_added", "+ versions"),
                ("versions_removed", "− versions"),
            ] {
                let l = list(&c[key]);
                if !l.is_empty() {
                    parts.push(format!("{label}: {l}"));
                }
            }
            if parts.is_empty() {
                "no product or version change".into()
            } else {
                parts.join("<br>")
            }
        };
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>\n",
            snap["id"], esc(&snap["source"]), when(&snap["created_at"]), snap["products"],
            snap["versions"], snap["items"], size(&snap["bytes"]), changes
        ));
    }
    s.push_str("</table>\n<h2>Live publications</h2>\n<table id=\"live\"><tr><th>DEST</th><th>Tree</th><th>Snapshot</th><th>Since</th><th>How</th></tr>\n");
    for p in store["live"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&p["dest"]),
            esc(&p["tree"]),
            p["snapshot"],
            when(&p["since"]),
            esc(&p["action"])
        ));
    }
    s.push_str("</table>\n<h2>Retained trees (grace period)</h2>\n<table id=\"retained\"><tr><th>DEST</th><th>Tree</th><th>Snapshot</th><th>Retired</th><th>Kept until</th></tr>\n");
    for p in store["retained"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&p["dest"]),
            esc(&p["tree"]),
            p["snapshot"],
            when(&p["retired_at"]),
            when(&p["grace_deadline"])
        ));
    }
    s.push_str("</table>\n</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact("https://u:p@h/x"), "https://***@h/x");
        assert_eq!(redact("https://u:p?#@h:1/x"), "https://***@h:1/x");
        assert_eq!(redact("https://h/a@b"), "https://h/a@b");
        assert_eq!(redact("/local/dir"), "/local/dir");
    }

    #[test]
    fn without_a_store_the_page_says_so_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let r = gather(Some(&root), &[], SystemTime::now());
        assert_eq!(r["store"]["state"], "none");
        assert!(!root.exists());
        assert!(html(&r).contains("no store at"));
    }
}

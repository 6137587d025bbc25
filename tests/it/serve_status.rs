//! `/-/status`: read-only over a real store (two snapshots of a source, two publications, one of
//! them retired and kept for the grace period), parsed as JSON and as HTML; no secret; without a
//! store it says so and creates none.

use std::time::Duration;

use crate::common::{Served, get, p, setup};

const T: Duration = Duration::from_secs(20);

/// The text of every `<td>` of the table with this id, row by row.
fn table(html: &str, id: &str) -> Vec<Vec<String>> {
    let start = html
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id} in {html}"));
    let end = start + html[start..].find("</table>").unwrap();
    html[start..end]
        .split("<tr>")
        .skip(2) // before the first row, the header row
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..];
                    text[..text.find("</td>").unwrap()].to_owned()
                })
                .collect()
        })
        .collect()
}

#[test]
fn status_page_reports_sources_history_live_and_retained_trees() {
    let (up, store) = setup();
    up.flip(2);
    store.sync_json("maas");
    // a second source whose URL carries credentials (never synced)
    store
        .run(&[
            "source",
            "add",
            "private",
            "https://mirror-user:s3cr%3Fet@mirror.example.invalid/maas/",
            "-U",
        ])
        .ok();
    // the page shows each source's last attempt: an unchanged run, a failed one
    store.sync_json("maas");
    let failed = store.run(&["sync", "private", "--retries", "0"]);
    assert_ne!(failed.code, 0, "{}", failed.stdout);
    let dest = store.dir.path().join("www/maas");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    store.run(&["publish", "1", p(&dest)]).ok();
    store.run(&["publish", "2", p(&dest)]).ok();
    let db = store.root().join("catalog.db");
    let before = std::fs::metadata(&db).unwrap();

    let mount = format!("/maas/stable={}", p(&dest));
    let server = Served::start(&[], &store.root(), &[p(&dest), "--mount", &mount]);

    let r = get(server.addr, "/-/status?json", T).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let text = String::from_utf8(r.body).unwrap();
    assert!(!text.contains("s3cr"), "secret in {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let st = &v["store"];
    assert_eq!(st["state"], "ok", "{text}");
    let maas = &st["sources"][0];
    assert_eq!(maas["name"], "maas");
    assert_eq!(maas["snapshots"], 2);
    assert_eq!(maas["last_snapshot"]["id"], 2);
    assert_eq!(maas["last_run"]["result"], "unchanged", "{text}");
    assert_eq!(st["sources"][1]["last_run"]["result"], "failed", "{text}");
    assert_eq!(st["sources"][1]["name"], "private");
    // the credentials live in the store's 0600 credentials file, never in the catalogue
    assert_eq!(
        st["sources"][1]["url"],
        "https://mirror.example.invalid/maas/"
    );
    assert!(st["sources"][1]["last_snapshot"].is_null());
    // history, newest first, with what changed
    assert_eq!(st["snapshots"][0]["id"], 2);
    let changes = &st["snapshots"][0]["changes"];
    assert_eq!(changes["from"], 1);
    let changed = [
        "products_added",
        "products_removed",
        "versions_added",
        "versions_removed",
    ]
    .iter()
    .map(|k| changes[*k].as_array().unwrap().len())
    .sum::<usize>();
    assert!(changed > 0, "{changes}");
    assert!(st["snapshots"][1]["changes"].is_null());
    // live on both mounts: snapshot 2, since its publication
    for m in v["mounts"].as_array().unwrap() {
        assert_eq!(m["snapshot"], 2, "{m}");
        assert!(m["since"].as_i64().unwrap() > 0);
    }
    // the retired tree of snapshot 1, kept for the grace period
    let kept = &st["retained"][0];
    assert_eq!(kept["snapshot"], 1);
    assert_eq!(
        kept["grace_deadline"].as_i64().unwrap() - kept["retired_at"].as_i64().unwrap(),
        86_400
    );
    assert!(st["disk"]["blobs"].as_i64().unwrap() > 0);

    // the same as HTML
    let r = get(server.addr, "/-/status", T).unwrap();
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = String::from_utf8(r.body).unwrap();
    assert!(!html.contains("s3cr"));
    let sources = table(&html, "sources");
    assert_eq!(sources[0][0], "maas");
    assert_eq!(sources[0][4], "unchanged");
    assert!(sources[1][4].starts_with("failed: "), "{:?}", sources[1]);
    let mounts = table(&html, "mounts");
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0][0], "/maas/stable");
    assert_eq!(mounts[0][3], "2");
    let snaps = table(&html, "snapshots");
    assert_eq!(snaps[0][0], "2");
    assert!(snaps[0][7].contains("versions"), "{:?}", snaps[0]);
    assert_eq!(table(&html, "retained")[0][2], "1");

    // read-only: the catalogue is untouched
    let after = std::fs::metadata(&db).unwrap();
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    assert_eq!(after.len(), before.len());
}

#[test]
fn without_a_store_the_status_page_says_so_and_none_is_created() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("tree")).unwrap();
    let root = base.path().join("no-store");
    let server = Served::start(&[], &root, &[p(&base.path().join("tree"))]);
    let r = get(server.addr, "/-/status", T).unwrap();
    assert_eq!(r.status, 200);
    let html = String::from_utf8(r.body).unwrap();
    assert!(html.contains("no store at"), "{html}");
    let r = get(server.addr, "/-/status?json", T).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["store"]["state"], "none");
    assert!(!root.exists(), "serve created a store");
}

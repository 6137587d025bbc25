//! Unattended operation (issue 9 item 4, part): auto-publish of new snapshots, the metrics
//! file, `status` without DEST, `-q`, `config`, and retention after `sync`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{Store, Upstream, with_source};

/// Parse Prometheus text format: `name{labels}` → value (comments skipped, every line checked).
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            assert!(
                line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("name value");
        let name_end = key.find('{').unwrap_or(key.len());
        let name = &key[..name_end];
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        if name_end < key.len() {
            assert!(key.ends_with('}'), "{line}");
        }
        m.insert(key.to_string(), value.parse::<f64>().expect(line));
    }
    m
}

fn latest(store: &Store) -> i64 {
    store
        .snapshots("maas")
        .iter()
        .filter_map(|s| s["id"].as_i64())
        .max()
        .unwrap()
}

fn index(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("streams/v1/index.sjson")).unwrap()
}

#[test]
fn auto_publish_metrics_status_and_quiet() {
    let up = Upstream::new();
    let store = Store::new();
    let www = store.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let dest = www.join("maas");
    let d = dest.to_str().unwrap();
    let metrics = store.dir.path().join("metrics/streamvault.prom");
    std::fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let m = metrics.to_str().unwrap();
    store.add("maas", &up, &["--publish", d]);
    let show = store.run(&["source", "show", "maas"]).ok();
    assert!(
        show.stdout.contains(&format!("publish:   {d}")),
        "{}",
        show.stdout
    );

    // A sync that makes a snapshot publishes it; the metrics file says so.
    let r = store.run(&["sync", "maas", "--metrics-file", m]).ok();
    assert!(r.stdout.contains("published snapshot"), "{}", r.stdout);
    assert_eq!(index(&dest), index(&up.current()));
    let first: i64 = latest(&store);
    let text = std::fs::read_to_string(&metrics).unwrap();
    let mm = parse_metrics(&text);
    assert_eq!(
        mm[r#"streamvault_source_last_result{source="maas",result="snapshot"}"#], 1.0,
        "{text}"
    );
    assert_eq!(
        mm[r#"streamvault_source_last_result{source="maas",result="failed"}"#],
        0.0
    );
    assert_eq!(
        mm[r#"streamvault_source_snapshot_id{source="maas"}"#],
        first as f64
    );
    assert!(mm[r#"streamvault_source_fetched_bytes{source="maas"}"#] > 0.0);
    assert!(mm[r#"streamvault_source_items{source="maas"}"#] > 0.0);
    assert!(mm[r#"streamvault_source_last_success_timestamp_seconds{source="maas"}"#] > 1e9);
    assert!(mm[r#"streamvault_source_last_attempt_timestamp_seconds{source="maas"}"#] > 1e9);
    assert_eq!(
        mm[&format!("streamvault_dest_snapshot_id{{dest=\"{d}\"}}")],
        first as f64
    );
    assert!(mm[&format!("streamvault_dest_published_timestamp_seconds{{dest=\"{d}\"}}")] > 1e9);
    assert!(mm["streamvault_store_blobs"] > 0.0);
    assert!(mm["streamvault_store_bytes"] > 0.0);
    assert!(mm.contains_key("streamvault_gc_freed_bytes"));
    // No temp file left beside it.
    assert_eq!(
        std::fs::read_dir(metrics.parent().unwrap())
            .unwrap()
            .count(),
        1
    );

    // A new generation: published by the next sync (one flip); the metrics setting is used.
    store.run(&["config", "set", "metrics-file", m]).ok();
    up.flip(2);
    store.run(&["sync", "maas"]).ok();
    assert_eq!(index(&dest), index(&up.current()));
    let second: i64 = latest(&store);
    assert!(second > first);
    let mm = parse_metrics(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(
        mm[&format!("streamvault_dest_snapshot_id{{dest=\"{d}\"}}")],
        second as f64
    );

    // -q: nothing on success.
    let r = store.run(&["-q", "sync", "maas"]).ok();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    let r = store.run(&["--quiet", "gc", "--dry-run"]).ok();
    assert_eq!(r.stdout, "");
    // ... one line per problem (and its hint).
    store
        .run(&[
            "source",
            "add",
            "broken",
            "http://127.0.0.1:9/",
            "--no-verify",
        ])
        .ok();
    let r = store.run(&["-q", "sync", "broken", "--retries", "0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(!lines.is_empty() && lines.len() <= 2, "{}", r.stderr);
    assert!(lines[0].starts_with("streamvault: error:"), "{}", r.stderr);

    // status without DEST: one screen, and --json.
    let r = store.run(&["status"]);
    assert_eq!(r.code, 1, "a failed last run is a problem: {}", r.stdout);
    assert!(r.stdout.contains("source:  maas"), "{}", r.stdout);
    assert!(r.stdout.contains("unchanged"), "{}", r.stdout);
    assert!(r.stdout.contains("source:  broken"), "{}", r.stdout);
    assert!(r.stdout.contains("failed"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("dest:    {d} serves snapshot {second}")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("gc would free"), "{}", r.stdout);
    let j: serde_json::Value =
        serde_json::from_str(&store.run(&["status", "--json"]).stdout).unwrap();
    let maas = j["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "maas")
        .unwrap();
    assert_eq!(maas["last_run"]["result"], "unchanged");
    assert_eq!(maas["auto_publish"], d);
    assert_eq!(j["dests"][0]["snapshot"], second);
    assert!(j["gc_would_free"].is_u64(), "{j}");
    assert!(j["store_blobs"].as_u64().unwrap() > 0);
    let mm = parse_metrics(&std::fs::read_to_string(&metrics).unwrap());
    assert_eq!(
        mm[r#"streamvault_source_last_result{source="broken",result="failed"}"#],
        1.0
    );

    // source edit: auto-publish off.
    store.run(&["source", "edit", "maas", "--no-publish"]).ok();
    let j = store.run(&["source", "show", "maas", "--json"]).ok().json();
    assert!(j["publish"].is_null(), "{j}");
}

#[test]
fn config_settings_are_checked_and_sync_keeps_the_last_n() {
    let (up, store) = with_source("maas", &[]);
    store.run(&["config", "set", "grace", "0s"]).ok();
    store.run(&["config", "set", "keep-last", "2"]).ok();
    assert_eq!(store.run(&["config", "get", "grace"]).ok().stdout, "0s\n");
    let all = store.run(&["config", "get"]).ok().stdout;
    for k in ["grace", "keep-last", "auto-gc", "reserve", "metrics-file"] {
        assert!(all.contains(k), "{all}");
    }
    for (k, v) in [
        ("grace", "soon"),
        ("keep-last", "0"),
        ("bogus", "1"),
        ("auto-gc", "maybe"),
    ] {
        let r = store.run(&["config", "set", k, v]);
        assert_eq!(r.code, 2, "{k}");
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{}", r.stderr);
        assert!(lines[0].starts_with("streamvault: error:") && lines[1].starts_with("hint:"));
    }
    // Four generations; after each sync retention keeps the last 2 snapshots.
    for g in 1..=4 {
        up.flip(g);
        store.run(&["sync", "maas"]).ok();
        assert!(store.snapshots("maas").len() <= 2, "generation {g}");
    }
    assert_eq!(store.snapshots("maas").len(), 2);
    // The environment wins over the setting; auto-gc off keeps everything.
    store.run(&["config", "set", "auto-gc", "off"]).ok();
    up.flip(5);
    store.run(&["sync", "maas"]).ok();
    assert_eq!(store.snapshots("maas").len(), 3);
    store.check_invariants();
    store.run(&["verify"]).ok();
}

/// When the store lock cannot be taken exclusively (another writer, or a gc), the automatic
/// collection is skipped with one line and the sync still succeeds.
#[test]
fn a_busy_store_skips_the_collection_in_one_line_and_the_run_succeeds() {
    let (up, store) = with_source("maas", &[]);
    store.run(&["sync", "maas"]).ok();
    // Another writer holds the store lock shared (as a running sync or publish does).
    let lock = std::fs::File::options()
        .read(true)
        .write(true)
        .open(store.root().join("lock"))
        .unwrap();
    lock.lock_shared().unwrap();
    up.flip(2);
    let r = store.run(&["sync", "maas"]).ok();
    let skipped: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("gc skipped"))
        .collect();
    assert_eq!(skipped.len(), 1, "{}", r.stderr);
    assert!(
        skipped[0].starts_with("streamvault: gc skipped: "),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("snapshot"), "{}", r.stdout);
    lock.unlock().unwrap();
}

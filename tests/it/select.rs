//! Filters and `--max/--keep` against the previous snapshot, end to end (spec §2.3–§2.4 and the
//! loopback table of §6).

use crate::common::{Store, Upstream, synced_source, with_source};

const JAMMY: &str = "com.example.maas.stable:v3:boot:22.04:amd64:ga-22.04";
const NOBLE: &str = "com.example.maas.stable:v3:boot:24.04:amd64:ga-24.04";

#[test]
fn maas_docs_command_lines_select_what_the_docs_promise() {
    let (up, store) = with_source(
        "images",
        &["arch=amd64", "release~(jammy|noble)", "--max", "1"],
    );
    store.add("bootloaders", &up, &["os~(grub*|pxelinux)", "--max", "1"]);
    let r = store.sync_json("images");
    assert_eq!(r["items"], 8, "{r}");
    assert_eq!(store.versions("images", JAMMY), ["20240301"]);
    assert_eq!(store.versions("images", NOBLE), ["20240601"]);
    let r = store.sync_json("bootloaders");
    assert_eq!(r["items"], 3, "{r}");
    let items = store.items("bootloaders");
    assert!(
        items.iter().all(|i| i["version"] == "20221029.0"),
        "{items:?}"
    );
}

#[test]
fn string_sort_picks_9_over_10() {
    let (_up, store) = synced_source("s", &["release=sorttest", "--max", "1"]);
    assert_eq!(
        store.versions("s", "com.example.maas.stable:v3:sorttest"),
        ["9"]
    );
}

/// Target = generation 1 (20240101/0201/0301), source = generation 2 (0201/0301/0401).
fn max_keep_case(extra: &[&str], want: &[&str]) {
    let up = Upstream::new();
    let store = Store::new();
    let mut args = vec!["arch=amd64", "release=jammy"];
    args.extend_from_slice(extra);
    store.add("s", &up, &args);
    store.sync_json("s");
    assert_eq!(
        store.versions("s", JAMMY),
        ["20240101", "20240201", "20240301"]
    );
    up.flip(2);
    store.sync_json("s");
    assert_eq!(store.versions("s", JAMMY), want, "case {extra:?}");
    store.check_invariants();
}

#[test]
fn max4_keep_keeps_the_vanished_version() {
    max_keep_case(
        &["--max", "4", "--keep"],
        &["20240101", "20240201", "20240301", "20240401"],
    );
}

#[test]
fn max3_keep_drops_the_oldest() {
    max_keep_case(
        &["--max", "3", "--keep"],
        &["20240201", "20240301", "20240401"],
    );
}

#[test]
fn max4_without_keep_follows_the_source() {
    max_keep_case(&["--max", "4"], &["20240201", "20240301", "20240401"]);
}

#[test]
fn max2_keep_keeps_the_two_newest() {
    // With --max 2 the first snapshot already holds only the two newest.
    let (up, store) = synced_source(
        "s",
        &["arch=amd64", "release=jammy", "--max", "2", "--keep"],
    );
    assert_eq!(store.versions("s", JAMMY), ["20240201", "20240301"]);
    up.flip(2);
    store.sync_json("s");
    assert_eq!(store.versions("s", JAMMY), ["20240301", "20240401"]);
}

#[test]
fn kept_version_carries_its_items_without_a_download() {
    let (up, store) = synced_source(
        "s",
        &["arch=amd64", "release=jammy", "--max", "4", "--keep"],
    );
    up.flip(2);
    up.clear();
    let r = store.sync_json("s");
    assert_eq!(r["fetched_items"], 4, "{r}");
    let kept: Vec<_> = store
        .items("s")
        .into_iter()
        .filter(|i| i["version"] == "20240101")
        .collect();
    assert_eq!(kept.len(), 4);
    assert!(kept.iter().all(|i| i["blob"].is_string()));
}

#[test]
fn filter_operators_end_to_end() {
    // != and !~ : everything but arm64 and but the bootloaders
    let (up, store) = with_source("neg", &["arch!=arm64", "os!~^(grub|pxe)"]);
    let r = store.sync_json("neg");
    // 36 - 8 arm64 - 6 bootloader items
    assert_eq!(r["items"], 22, "{r}");
    // synthetic names and inherited top-level keys
    store.add(
        "syn",
        &up,
        &["item_name=squashfs", "os=ubuntu", "version_name~^2024030"],
    );
    let r = store.sync_json("syn");
    assert_eq!(r["items"], 1, "{r}");
}

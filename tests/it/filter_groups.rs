//! Filter groups (issue 12 item 1): one source holding the MAAS docs' two filter sets
//! (`'arch=amd64' 'release~(jammy|noble)' --or 'os~(grub*|pxelinux)'`) plans, snapshots and
//! publishes what the `sstream-mirror` drop-in's two invocations into one directory do (and the
//! python tool's, when installed); `source show`/`--json`/`source edit --set-filters`; bad
//! groups and a damaged catalogue value are one-line errors.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::{Store, Upstream, reference_sstream_mirror, sstream_mirror_link, tree_of};

/// `program args…` with the store root in the environment; must succeed.
fn run_ok(program: &Path, store: &Store, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .env("STREAMVAULT_ROOT", store.root())
        .env_remove("STREAMVAULT_GRACE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The docs' two lines into one directory.
fn docs_two_lines(program: &Path, store: &Store, up: &Upstream, out: &Path) {
    let k = format!("--keyring={}", up.keyring_str());
    let url = up.url();
    let o = out.to_str().unwrap();
    run_ok(
        program,
        store,
        &[
            &k,
            &url,
            o,
            "arch=amd64",
            "release~(jammy|noble)",
            "--max=1",
        ],
    );
    run_ok(
        program,
        store,
        &[&k, &url, o, "os~(grub*|pxelinux)", "--max=1"],
    );
}

const GROUPS: [&str; 4] = [
    "arch=amd64",
    "release~(jammy|noble)",
    "--or",
    "os~(grub*|pxelinux)",
];

fn item_keys(items: &[serde_json::Value]) -> BTreeSet<(String, String, String, String)> {
    items
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
            (s("content_id"), s("product"), s("version"), s("item"))
        })
        .collect()
}

#[test]
fn one_source_with_the_docs_two_sets_equals_the_drop_ins_two_lines() {
    let up = Upstream::new();

    // The drop-in, two invocations into one directory.
    let a = Store::new();
    let out_a = a.dir.path().join("www/stable");
    docs_two_lines(&sstream_mirror_link(&a), &a, &up, &out_a);
    let all = a.run(&["snapshots", "--json"]).ok().json();
    let last = all
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|s| s["id"].as_i64())
        .cloned();
    let a_items = a.items(&last.unwrap()["id"].to_string());

    // One source with two groups, one sync, one publish.
    let b = Store::new();
    let mut extra = vec!["--max", "1"];
    extra.extend_from_slice(&GROUPS);
    b.add("maas", &up, &extra);
    let plan = b.run(&["sync", "maas", "--dry-run", "--json"]).ok().json();
    let planned: BTreeSet<String> = plan[0]["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap().to_string())
        .collect();
    b.sync_json("maas");
    let snaps = b.snapshots("maas");
    let b_items = b.items(&snaps.last().unwrap()["id"].to_string());
    let out_b = b.dir.path().join("www/stable");
    std::fs::create_dir_all(out_b.parent().unwrap()).unwrap();
    // Verbatim metadata that lists more than the snapshot holds, as sstream-mirror publishes it.
    b.run(&["publish", "maas", out_b.to_str().unwrap(), "--force"])
        .ok();

    // Same items, same files byte for byte, and the plan is exactly the item files.
    assert!(!b_items.is_empty());
    assert_eq!(item_keys(&a_items), item_keys(&b_items));
    let ta = tree_of(&out_a);
    assert_eq!(ta, tree_of(&out_b));
    let files: BTreeSet<String> = ta
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| !p.starts_with("streams/"))
        .collect();
    assert_eq!(planned, files);
    // Both groups contributed: amd64 images and non-amd64 bootloaders.
    assert!(
        files.iter().any(|f| f.contains("bootloaders/")),
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.contains("/amd64/")), "{files:?}");
    // One group alone takes less.
    let c = Store::new();
    c.add(
        "maas",
        &up,
        &["--max", "1", "arch=amd64", "release~(jammy|noble)"],
    );
    c.sync_json("maas");
    let c_items = c.items(&c.snapshots("maas").last().unwrap()["id"].to_string());
    assert!(c_items.len() < b_items.len());

    // The python tool's two lines, when installed, give the same tree.
    if let Some(py) = reference_sstream_mirror() {
        let p = Store::new();
        let out_p = p.dir.path().join("www/stable");
        std::fs::create_dir_all(&out_p).unwrap();
        docs_two_lines(&py, &p, &up, &out_p);
        assert_eq!(tree_of(&out_p), ta);
    }
}

#[test]
fn groups_are_shown_and_replaced_with_source_edit() {
    let up = Upstream::new();
    let s = Store::new();
    let mut extra = vec!["--max", "1"];
    extra.extend_from_slice(&GROUPS);
    s.add("maas", &up, &extra);
    let show = s.run(&["source", "show", "maas"]).ok();
    assert!(
        show.stdout.contains("filter:    arch=amd64\n"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("or filter: os~(grub*|pxelinux)\n"),
        "{}",
        show.stdout
    );
    let j = s.run(&["source", "show", "maas", "--json"]).ok().json();
    assert_eq!(
        j["filter_groups"],
        serde_json::json!([
            ["arch=amd64", "release~(jammy|noble)"],
            ["os~(grub*|pxelinux)"]
        ])
    );

    // Replace: bootloaders only; the next sync takes just those.
    s.run(&[
        "source",
        "edit",
        "maas",
        "--set-filters",
        "os~grub",
        "--or",
        "os=pxelinux",
    ])
    .ok();
    let j = s.run(&["source", "show", "maas", "--json"]).ok().json();
    assert_eq!(
        j["filter_groups"],
        serde_json::json!([["os~grub"], ["os=pxelinux"]])
    );
    s.sync_json("maas");
    let items = s.items(&s.snapshots("maas").last().unwrap()["id"].to_string());
    assert!(!items.is_empty());
    assert!(
        items
            .iter()
            .all(|i| i["product"].as_str().unwrap().contains("grub")
                || i["product"].as_str().unwrap().contains("pxelinux")),
        "{items:?}"
    );
    // No filters at all.
    s.run(&["source", "edit", "maas", "--set-filters"]).ok();
    let j = s.run(&["source", "show", "maas", "--json"]).ok().json();
    assert_eq!(j["filters"], serde_json::json!([]));
}

#[test]
fn bad_groups_and_a_damaged_catalogue_value_are_one_line_errors() {
    let up = Upstream::new();
    let s = Store::new();
    let url = up.url();
    for (args, want) in [
        (vec!["--or", "os~grub"], "empty filter group 1"),
        (
            vec!["arch=amd64", "--or", "release~("],
            "filter group 2: bad regular expression",
        ),
        (
            vec!["arch=amd64", "--or", "nonsense"],
            "filter group 2: cannot parse filter",
        ),
    ] {
        let mut a = vec!["source", "add", "x", url.as_str()];
        a.extend(args);
        let r = s.run(&a).fails();
        let first = r.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("streamvault: error: "), "{}", r.stderr);
        assert!(first.contains(want), "{}", r.stderr);
        assert!(r.stderr.lines().count() <= 2, "{}", r.stderr);
    }
    assert!(!s.run(&["source", "list"]).ok().stdout.contains("x "));

    // A damaged filters value is an error, never "no filters" (which would take everything).
    s.add("maas", &up, &["arch=amd64"]);
    let db = s.root().join("catalog.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute(
        "UPDATE sources SET filters = '[\"arch=amd64\"' WHERE name = 'maas'",
        [],
    )
    .unwrap();
    drop(c);
    let r = s.run(&["sync", "maas"]).fails();
    assert!(r.stderr.starts_with("streamvault: error: "), "{}", r.stderr);
    assert!(r.stderr.lines().count() <= 2, "{}", r.stderr);
    let r = s.run(&["source", "show", "maas"]).fails();
    assert!(r.stderr.starts_with("streamvault: error: "), "{}", r.stderr);
}

//! Grace items across several flips (issue 8, item 7): every tree retired within the grace
//! period stays fully downloadable through DEST, not only the one retired last — after two
//! publishes in a row, after publish + rollback + publish, after a rollback `--to` an old tree —
//! and gc removes those links once their tree is gone.

use std::path::Path;

use crate::common::{Store, Upstream, assert_complete, p, setup, www};

/// `(path, blob)` of every item with a path of snapshot `id`.
fn item_paths(store: &Store, id: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = store
        .items(id)
        .iter()
        .filter_map(|i| {
            Some((
                i["path"].as_str()?.to_string(),
                i["blob"].as_str()?.to_string(),
            ))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Every item snapshot `id` lists, read through DEST, has its blob's content; returns how many
/// were checked.
fn assert_readable(store: &Store, dest: &Path, id: &str) -> usize {
    let items = item_paths(store, id);
    assert!(!items.is_empty());
    let mut missing = Vec::new();
    for (path, blob) in &items {
        match std::fs::read(dest.join(path)) {
            Ok(data) => assert_eq!(blake3::hash(&data).to_hex().as_str(), blob, "{path}"),
            Err(_) => missing.push(path.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} items of snapshot {id} are not readable through DEST: {missing:?}",
        missing.len(),
        items.len()
    );
    items.len()
}

/// Snapshots 1, 2, 3 of upstream generations 1, 4, 7: jammy/amd64 has three monthly versions
/// per generation, so no two snapshots share a version of it and no tree holds another's items.
fn three_snapshots() -> (Upstream, Store) {
    let (up, store) = setup();
    for g in [4, 7] {
        up.flip(g);
        store.sync_json("maas");
    }
    // The test means something only if snapshot 3 lacks some of snapshot 1's paths.
    let three: std::collections::HashSet<String> = item_paths(&store, "3")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let gone = item_paths(&store, "1")
        .into_iter()
        .filter(|(p, _)| !three.contains(p))
        .count();
    assert!(gone > 0, "snapshot 3 holds every path of snapshot 1");
    (up, store)
}

#[test]
fn two_publishes_in_a_row_keep_the_first_tree_downloadable() {
    let (_up, store) = three_snapshots();
    let dest = www(&store);
    for s in ["1", "2", "3"] {
        store.run(&["publish", s, p(&dest)]).ok();
    }
    assert_complete(&dest);
    assert_readable(&store, &dest, "1");
    assert_readable(&store, &dest, "2");
    assert_readable(&store, &dest, "3");
    store.run(&["verify"]).ok();

    // Once the trees of snapshots 1 and 2 are gone (no grace), their links go too.
    let r = store
        .run(&["gc", "--keep-last", "1", "--grace", "0", "--json"])
        .ok()
        .json();
    assert!(r["grace_files_dropped"].as_u64().unwrap() > 0, "{r}");
    assert_readable(&store, &dest, "3");
    let three = item_paths(&store, "3");
    let files = walk(&std::fs::canonicalize(&dest).unwrap());
    let docs = files.iter().filter(|f| f.starts_with("streams/")).count();
    assert_eq!(files.len() - docs, three.len(), "{files:?}");
    // ... and the directories they leave empty: verify finds nothing at all.
    let v = store.run(&["verify"]).ok();
    assert!(v.stdout.contains("clean"), "{}", v.stdout);
}

#[test]
fn publish_rollback_publish_and_rollback_to_an_old_tree_keep_every_retired_tree() {
    let (_up, store) = three_snapshots();
    let dest = www(&store);
    store.run(&["publish", "1", p(&dest)]).ok();
    store.run(&["publish", "2", p(&dest)]).ok();
    store.run(&["rollback", p(&dest)]).ok(); // back to 1; 2 retired
    store.run(&["publish", "3", p(&dest)]).ok(); // 1 and 2 retired
    assert_readable(&store, &dest, "1");
    assert_readable(&store, &dest, "2");
    // Back to the first tree: the readers of 2 and 3 keep their items.
    store
        .run(&["rollback", p(&dest), "--to", "snapshot:1"])
        .ok();
    assert_complete(&dest);
    for s in ["1", "2", "3"] {
        assert_readable(&store, &dest, s);
    }
    store.run(&["verify"]).ok();
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push(rel);
            }
        }
    }
    out
}

//! `rollback`, `status` and `publications` with the real binary, and readers during 1,000
//! publish/rollback flips: one reading DEST through `serve` (the library server), one through the
//! filesystem; neither sees an error or a mix of two trees.

use std::collections::BTreeSet;

use crate::common::{assert_complete, http_get, linked_tree, p, setup, tree_dirs, www};
use streamvault::publish;

#[test]
fn rollback_status_and_publications() {
    let (up, store) = setup();
    up.flip(2);
    store.sync_json("maas"); // snapshot 2
    let dest = www(&store);
    let p1 = store.run(&["publish", "1", p(&dest), "--json"]).ok().json();
    let t1 = linked_tree(&dest);
    let p2 = store.run(&["publish", "2", p(&dest), "--json"]).ok().json();
    let t2 = linked_tree(&dest);
    assert_ne!(t1, t2);
    // Grace items both ways: each tree holds the other snapshot's items too.
    let trees = store.root().join("trees");
    assert!(
        trees
            .join(&t2)
            .join("jammy/amd64/20240101/squashfs")
            .is_file()
    );
    assert!(
        trees
            .join(&t1)
            .join("jammy/amd64/20240401/squashfs")
            .is_file()
    );
    assert!(p2["grace_files"].as_u64().unwrap() >= 8, "{p2}");

    // Rollback: back to tree 1, no tree built, recorded as `rollback`.
    let trees_before = tree_dirs(&store);
    let rb = store.run(&["rollback", p(&dest), "--json"]).ok().json();
    assert_eq!(rb["action"], "rollback");
    assert_eq!(rb["snapshot"], 1);
    assert_eq!(rb["grace_files"], 0, "rollback does no work but the rename");
    assert_eq!(linked_tree(&dest), t1);
    assert_eq!(tree_dirs(&store), trees_before);
    assert_complete(&dest);
    // Again: toggles to the publication before the live one (tree 2).
    store.run(&["rollback", p(&dest)]).ok();
    assert_eq!(linked_tree(&dest), t2);
    // --to a publication id, and --to snapshot:N.
    let to = p1["publication"].to_string();
    store.run(&["rollback", p(&dest), "--to", &to]).ok();
    assert_eq!(linked_tree(&dest), t1);
    store
        .run(&["rollback", p(&dest), "--to", "snapshot:2"])
        .ok();
    assert_eq!(linked_tree(&dest), t2);
    let same = store
        .run(&["rollback", p(&dest), "--to", "snapshot:2"])
        .ok();
    assert!(same.stdout.contains("nothing to do"), "{}", same.stdout);

    // Publications: 6 rows, exactly one live (the newest), the others retired.
    let list = store.run(&["publications", p(&dest), "--json"]).ok().json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 6);
    let live: Vec<_> = list.iter().filter(|x| x["live"] == true).collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["id"], list[5]["id"]);
    assert!(list[..5].iter().all(|x| x["retired_at"].is_i64()));
    let actions: Vec<&str> = list.iter().map(|x| x["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "publish", "publish", "rollback", "rollback", "rollback", "rollback"
        ]
    );
    assert!(list[0]["published_by"].as_str().unwrap().contains('@'));
    let human = store.run(&["publications"]).ok().stdout;
    assert!(human.contains("live"), "{human}");

    // A publication row whose flip never happened (a kill): status says so, exit 1.
    let db = rusqlite::Connection::open(store.root().join("catalog.db")).unwrap();
    db.execute(
        "INSERT INTO publications (dest, tree_id, snapshot_id, action, published_at, published_by)
         SELECT dest, tree_id, snapshot_id, 'publish', published_at, 'killed@host pid 1'
         FROM publications WHERE id = ?1",
        [p1["publication"].as_i64().unwrap()],
    )
    .unwrap();
    let st = store.run(&["status", p(&dest)]);
    assert_eq!(st.code, 1, "{}", st.stdout);
    assert!(st.stdout.contains("is not live"), "{}", st.stdout);
    assert!(st.stdout.contains("snapshot:    2"), "{}", st.stdout);

    // A rollback target whose tree is gone is refused; the link stays.
    std::fs::remove_dir_all(trees.join(&t1)).unwrap();
    let r = store.run(&["rollback", p(&dest)]).fails();
    assert!(r.stderr.contains("no longer exists"), "{}", r.stderr);
    assert_eq!(linked_tree(&dest), t2);
    store.check_invariants();
}

/// Reads like a client: the index, each products document, every item they list. Returns the
/// problems of one round (an empty list: the round was consistent and error-free).
fn read_round(get: &dyn Fn(&str) -> Result<Vec<u8>, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let unwrap = |b: Vec<u8>| -> Result<serde_json::Value, String> {
        let payload = streamvault::openpgp::unwrap_cleartext(&b).map_err(|e| e.to_string())?;
        serde_json::from_slice(&payload).map_err(|e| e.to_string())
    };
    let index = match get("streams/v1/index.sjson").and_then(unwrap) {
        Ok(v) => v,
        Err(e) => return vec![format!("index: {e}")],
    };
    for (cid, entry) in index["index"].as_object().unwrap() {
        let path = entry["path"].as_str().unwrap();
        let doc = match get(path).and_then(unwrap) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{path}: {e}"));
                continue;
            }
        };
        // Index and products may come from different trees: every product the index lists
        // must still be in the products document.
        let listed: BTreeSet<&str> = entry["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let have: BTreeSet<&str> = doc["products"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        if !listed.is_subset(&have) {
            problems.push(format!("{cid}: index lists products the document lacks"));
        }
        for pv in doc["products"].as_object().unwrap().values() {
            for vv in pv["versions"].as_object().unwrap().values() {
                for item in vv["items"].as_object().unwrap().values() {
                    let ipath = item["path"].as_str().unwrap();
                    match get(ipath) {
                        Ok(b) if b.len() as u64 == item["size"].as_u64().unwrap() => {}
                        Ok(b) => problems.push(format!("{ipath}: {} bytes", b.len())),
                        Err(e) => problems.push(format!("{ipath}: {e}")),
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn readers_see_no_error_and_no_mix_during_1000_flips() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let (up, store) = setup();
    up.flip(2);
    store.sync_json("maas");
    let dest = www(&store);
    store.run(&["publish", "1", p(&dest)]).ok();
    store.run(&["publish", "2", p(&dest)]).ok();
    let server = streamvault::serve::spawn(streamvault::serve::ServeOptions::new(&dest)).unwrap();
    let addr = server.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = |http: bool| {
        let stop = stop.clone();
        let dest = dest.clone();
        std::thread::spawn(move || {
            let (mut rounds, mut problems) = (0u64, Vec::new());
            let get = |rel: &str| -> Result<Vec<u8>, String> {
                if http {
                    match http_get(addr, &format!("/{rel}"))? {
                        (200, body) => Ok(body),
                        (code, _) => Err(format!("HTTP {code}")),
                    }
                } else {
                    std::fs::read(dest.join(rel)).map_err(|e| e.to_string())
                }
            };
            while !stop.load(Ordering::SeqCst) {
                problems.extend(read_round(&get));
                rounds += 1;
            }
            (rounds, problems)
        })
    };
    let readers = [reader(true), reader(false)];

    let mut vault = streamvault::vault::Vault::open(&store.root()).unwrap();
    let rollback = publish::RollbackOptions {
        dest: dest.clone(),
        to: None,
    };
    for flip in 0..1000 {
        if flip % 100 == 50 {
            // Some through the real binary.
            store.run(&["rollback", p(&dest)]).ok();
        } else if flip % 10 == 5 {
            // A re-publish of the snapshot that is not live (reuses its tree).
            let live = std::fs::read_link(&dest).unwrap();
            let other = if live.to_string_lossy().contains("/1-") {
                "2"
            } else {
                "1"
            };
            let r = publish::publish(
                &mut vault,
                &publish::PublishOptions {
                    snapshot: other.into(),
                    dest: dest.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
            assert!(r.tree_reused);
        } else {
            let r = publish::rollback(&mut vault, &rollback).unwrap();
            assert!(r.changed);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for (i, h) in readers.into_iter().enumerate() {
        let (rounds, problems) = h.join().unwrap();
        assert!(rounds >= 10, "reader {i} made only {rounds} rounds");
        assert!(
            problems.is_empty(),
            "reader {i}: {} problems in {rounds} rounds, e.g. {:?}",
            problems.len(),
            &problems[..problems.len().min(5)]
        );
        eprintln!("reader {i}: {rounds} rounds, no problem");
    }
    let list = store.run(&["publications", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1002);
    assert_complete(&dest);
    assert_eq!(tree_dirs(&store), 2, "no tree was built by the flips");
}

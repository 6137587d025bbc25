//! A damaged catalogue value is an error where it is read, never a default (issue 10): raw SQL
//! writes a value outside its closed set, and the command that reads it fails in one line
//! naming it, instead of carrying on with a guess.

use std::time::Duration;

use crate::common::{Served, db, get, p, synced_source, www};

const T: Duration = Duration::from_secs(20);

/// `snapshot_documents.kind` is `index | products | other`: anything else used to be read as a
/// string that matched none of them (a damaged index silently became an "other" document).
#[test]
fn a_damaged_document_kind_is_a_one_line_error() {
    let (_up, store) = synced_source("maas", &[]);
    let show = store.run(&["snapshot", "show", "1", "--json"]).ok().json();
    let kinds: Vec<&str> = show["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"index"), "{show}");
    assert!(kinds.contains(&"products"), "{show}");

    let n = db(&store)
        .execute(
            "UPDATE snapshot_documents SET kind = 'indx' WHERE kind = 'index'",
            [],
        )
        .unwrap();
    assert!(n >= 1);
    for args in [
        &["snapshot", "show", "1"][..],
        &["snapshot", "show", "1", "--json"],
        &["publish", "1", www(&store).to_str().unwrap()],
    ] {
        let r = store.run(args).fails();
        assert!(
            r.stderr.contains("unknown document kind `indx`"),
            "{args:?}: {}",
            r.stderr
        );
    }
}

/// `trees.mode` is `verbatim | filtered`: verify used to read it as a string and take anything
/// but `verbatim` for `filtered` (which decides which documents a tree may hold).
#[test]
fn a_damaged_tree_mode_is_a_one_line_error_in_verify() {
    let (_up, store) = synced_source("maas", &[]);
    let www = www(&store);
    store.run(&["publish", "1", www.to_str().unwrap()]).ok();
    store.run(&["verify"]).ok();

    let n = db(&store)
        .execute("UPDATE trees SET mode = 'verbatimm'", [])
        .unwrap();
    assert_eq!(n, 1);
    let r = store.run(&["verify"]).fails();
    assert!(
        r.stderr.contains("unknown metadata mode `verbatimm`"),
        "{}",
        r.stderr
    );
}

/// The status page's history diffs each snapshot against the previous one: a catalogue error
/// there used to become "no changes" (`.ok()`); now the page says the catalogue is unreadable.
#[test]
fn a_damaged_item_row_makes_the_status_page_say_unreadable() {
    let (up, store) = synced_source("maas", &[]);
    up.flip(2);
    store.sync_json("maas");
    let json = |server: &Served| -> serde_json::Value {
        let r = get(server.addr, "/-/status?json", T).unwrap();
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    };
    let dest = store.dir.path().join("www/maas");
    std::fs::create_dir_all(&dest).unwrap();
    {
        let server = Served::start(&[], &store.root(), &[p(&dest)]);
        let v = json(&server);
        assert_eq!(v["store"]["state"], "ok", "{v}");
        let history = v["store"]["snapshots"].as_array().expect("snapshots");
        assert!(history.iter().any(|s| s["changes"].is_object()), "{v}");
    }

    let c = db(&store);
    c.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    let n = c
        .execute(
            "UPDATE snapshot_items SET blob = 'not-a-blake3' WHERE snapshot_id = 2 AND blob IS NOT NULL",
            [],
        )
        .unwrap();
    drop(c);
    assert!(n >= 1);
    let server = Served::start(&[], &store.root(), &[p(&dest)]);
    let v = json(&server);
    assert_eq!(v["store"]["state"], "unreadable", "{v}");
}

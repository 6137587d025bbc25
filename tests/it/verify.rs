//! `verify` and `verify --repair` against real damage: a flipped byte, a deleted blob, a file
//! missing from a tree, a tree file replaced by another; repair from the upstream test server,
//! and what happens when that server is gone.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::{
    Store, Upstream, blob_path, db, item_files, link_documents, make_tree, now, point, publication,
    synced, tree_path, verify_lines,
};

/// A live tree `t` of snapshot 1 on `www`, and four distinct items of it to damage.
fn published(store: &Store) -> Vec<(String, String)> {
    let dest = store.dir.path().join("www");
    let t = make_tree(store, "t", 1, now());
    link_documents(store, "t", 1);
    publication(store, t, &dest, now(), None);
    point(&dest, &tree_path(store, "t"));
    let mut seen = std::collections::HashSet::new();
    item_files(store, 1)
        .into_iter()
        .filter(|(_, b)| seen.insert(b.clone()))
        .take(4)
        .collect()
}

/// Flip one byte of a file in place (same inode: a hardlinked tree file changes too).
fn flip_byte(p: &Path) {
    let mut perm = std::fs::metadata(p).unwrap().permissions();
    perm.set_mode(0o644);
    std::fs::set_permissions(p, perm).unwrap();
    let mut data = std::fs::read(p).unwrap();
    data[0] ^= 0xff;
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &data[..1], 0).unwrap();
}

fn item_gets_of(up: &Upstream, path: &str) -> usize {
    up.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.trim_start_matches('/') == path)
        .count()
}

#[test]
fn verify_reports_each_kind_of_damage_and_repair_fixes_it_from_upstream() {
    let (up, store) = synced(&[1]);
    let items = published(&store);
    let [(pa, a), (pb, b), (pc, c), (pd, d)] = <[(String, String); 4]>::try_from(items).unwrap();
    let tree = tree_path(&store, "t");
    store.run(&["verify"]).ok();

    // A: one byte flipped in the blob (and so in its hardlink in the tree).
    flip_byte(&blob_path(&store, &a));
    // B: the blob file deleted (the tree keeps its own link).
    std::fs::remove_file(blob_path(&store, &b)).unwrap();
    // C: a file deleted from the tree.
    std::fs::remove_file(tree.join(&pc)).unwrap();
    // D: a tree file replaced by a different file.
    std::fs::remove_file(tree.join(&pd)).unwrap();
    std::fs::write(tree.join(&pd), b"not the image you are looking for").unwrap();

    let r = store.run(&["verify"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let l = verify_lines(&r);
    let want = [
        format!("blob `{a}` is corrupt: its content does not match its BLAKE3 name"),
        format!("tree `t`: `{pa}` is the corrupt blob `{a}`"),
        format!("blob `{b}` is missing"),
        format!("tree `t`: `{pc}` is missing (blob `{c}`)"),
        format!("tree `t`: `{pd}` differs from blob `{d}`"),
    ];
    for w in &want {
        assert_eq!(l.iter().filter(|x| *x == w).count(), 1, "{w}\n{}", r.stdout);
    }
    assert_eq!(l.len(), want.len(), "{}", r.stdout);
    assert!(r.stdout.contains(": 5 problems"), "{}", r.stdout);
    let j = store.run(&["verify", "--json"]);
    assert_eq!(j.code, 1);
    assert_eq!(j.json()["findings"].as_array().unwrap().len(), 5);

    up.clear();
    let r = store.run(&["verify", "--repair"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("5 problems, 5 repaired, 0 remain"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("blob `{a}` is corrupt"))
            && r.stdout.contains(": repaired: re-fetched from `"),
        "{}",
        r.stdout
    );
    // The request log shows the two blobs fetched again, and nothing else.
    assert_eq!(item_gets_of(&up, &pa), 1, "{:?}", up.requests());
    assert_eq!(item_gets_of(&up, &pb), 1, "{:?}", up.requests());
    assert_eq!(up.requests().len(), 2, "{:?}", up.requests());
    // The corrupt bytes are kept aside, never served.
    let q: Vec<_> = std::fs::read_dir(store.root().join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(q.iter().any(|n| n.starts_with(&a)), "{q:?}");

    let r = store.run(&["verify"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("clean"), "{}", r.stdout);
    // The re-linked tree files are their blobs again (B's tree file kept its own good link),
    // and what the dest serves is upstream's bytes.
    for (p, hex) in [(&pa, &a), (&pb, &b), (&pc, &c), (&pd, &d)] {
        let t = std::fs::metadata(tree.join(p)).unwrap();
        let bl = std::fs::metadata(blob_path(&store, hex)).unwrap();
        assert_eq!(t.ino() == bl.ino(), p != &pb, "{p}");
        let served = std::fs::read(store.dir.path().join("www").join(p)).unwrap();
        assert_eq!(served, std::fs::read(up.current().join(p)).unwrap(), "{p}");
    }
    store.check_invariants();
}

#[test]
fn orphans_are_reported_and_repair_removes_them_when_safe() {
    let (_up, store) = synced(&[1]);
    published(&store);
    let orphan = blob_path(&store, &("cd".to_string() + &"1".repeat(62)));
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"left by a killed sync").unwrap();
    std::fs::create_dir_all(tree_path(&store, "half-built/x")).unwrap();
    std::fs::write(tree_path(&store, "half-built/x/f"), b"x").unwrap();
    // A tree directory without a row that a dest serves is reported but never removed.
    std::fs::create_dir_all(tree_path(&store, "served")).unwrap();
    let dest2 = store.dir.path().join("www2");
    point(&dest2, &tree_path(&store, "served"));
    let t: i64 = db(&store)
        .query_row("SELECT id FROM trees WHERE name = 't'", [], |r| r.get(0))
        .unwrap();
    publication(&store, t, &dest2, now(), Some(now()));
    // A blob row nothing refers to whose file is gone.
    let lonely = "ef".to_string() + &"2".repeat(62);
    db(&store)
        .execute(
            "INSERT INTO blobs (blake3, size, created_at) VALUES (?1, 3, 0)",
            [&lonely],
        )
        .unwrap();

    let r = store.run(&["verify"]);
    assert_eq!(r.code, 1);
    let l = verify_lines(&r);
    assert_eq!(l.len(), 4, "{}", r.stdout);
    assert!(r.stdout.contains("has no catalogue row"), "{}", r.stdout);
    assert!(r.stdout.contains(
        "tree directory `half-built` has no catalogue row (orphan: the next gc removes it)\n"
    ));
    assert!(r.stdout.contains(&format!("blob `{lonely}` is missing")));

    let r = store.run(&["verify", "--repair"]);
    assert_eq!(r.code, 1, "the served directory stays: {}", r.stdout);
    assert!(r.stdout.contains("3 repaired, 1 remain"), "{}", r.stdout);
    assert!(!orphan.exists());
    assert!(!tree_path(&store, "half-built").exists());
    assert!(tree_path(&store, "served").is_dir());
    let r = store.run(&["verify"]);
    assert_eq!(verify_lines(&r).len(), 1, "{}", r.stdout);
    assert!(r.stdout.contains("`www2` links to it") || r.stdout.contains("links to it"));
    store.check_invariants();
}

#[test]
fn a_repair_that_cannot_fetch_says_so_and_serves_no_corrupt_file() {
    let (mut up, store) = synced(&[1]);
    let items = published(&store);
    let [(pa, a), (_pb, b), ..] = <[(String, String); 4]>::try_from(items).unwrap();
    flip_byte(&blob_path(&store, &a));
    std::fs::remove_file(blob_path(&store, &b)).unwrap();
    up.server.shutdown();

    let r = store.run(&["verify", "--repair", "--retries", "0"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let l = verify_lines(&r);
    assert_eq!(l.len(), 3, "{}", r.stdout);
    for x in &l {
        assert!(x.contains(": not repaired: "), "{x}");
    }
    assert!(
        l.iter().any(|x| x.starts_with(&format!(
            "blob `{b}` is missing: not repaired: cannot fetch it"
        ))),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("3 problems, 0 repaired, 3 remain"),
        "{}",
        r.stdout
    );
    // The corrupt file is out of blobs/ and out of the tree.
    assert!(!blob_path(&store, &a).exists());
    assert!(!tree_path(&store, "t").join(&pa).exists());

    // Still broken (honestly): the missing blobs and the removed tree file are reported.
    let r = store.run(&["verify"]);
    assert_eq!(r.code, 1);
    assert_eq!(verify_lines(&r).len(), 3, "{}", r.stdout);
}

/// What a `kill -9` leaves (a blob file committed before its row, a tree renamed into `trees/`
/// before its row) is reported as orphans and exits 0; real damage still exits 1 (issue 8 #14).
#[test]
fn orphans_alone_exit_zero_and_damage_still_exits_one() {
    let (_up, store) = synced(&[1]);
    let items = published(&store);
    let orphan = blob_path(&store, &("cd".to_string() + &"1".repeat(62)));
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"left by a killed sync").unwrap();
    std::fs::create_dir_all(tree_path(&store, "1-verbatim-killed/x")).unwrap();
    std::fs::write(tree_path(&store, "1-verbatim-killed/x/f"), b"x").unwrap();
    // A directory whose grace links gc removed before it was killed.
    std::fs::create_dir_all(tree_path(&store, "t/jammy/amd64/20200101/ga")).unwrap();

    let r = store.run(&["verify"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let l = verify_lines(&r);
    assert_eq!(l.len(), 3, "{}", r.stdout);
    assert!(
        l.iter()
            .all(|x| x.ends_with("(orphan: the next gc removes it)")
                || x.ends_with("(orphan: `verify --repair` removes it)")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("no damage; 3 orphans"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("`jammy/amd64/20200101/` is an empty directory"),
        "{}",
        r.stdout
    );
    // JSON: the kinds are unchanged, each finding says it is an orphan.
    let j = store.run(&["verify", "--json"]);
    assert_eq!(j.code, 0);
    let kinds: Vec<(String, bool)> = j.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["problem"]["kind"].as_str().unwrap().to_string(),
                f["orphan"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("tree_empty_directory".to_string(), true),
            ("orphan_tree".to_string(), true),
            ("orphan_file".to_string(), true)
        ]
    );

    // Real damage beside them: exit 1.
    flip_byte(&blob_path(&store, &items[0].1));
    let r = store.run(&["verify"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    // gc removes the orphan file and tree; the empty directory stays for repair.
    store.run(&["gc"]).ok();
    let r = store.run(&["verify"]);
    assert_eq!(r.code, 1);
    let l = verify_lines(&r);
    assert_eq!(
        l.iter().filter(|x| x.contains("orphan")).count(),
        1,
        "{}",
        r.stdout
    );
    assert!(
        l.iter().any(|x| x.contains("empty directory")),
        "{}",
        r.stdout
    );
}

//! The store root protecting itself (issue 8, items 9, 10, 12, 13): a DEST inside, equal to or
//! containing the store root is refused; `trees/` on another filesystem (a tmpfs mounted there)
//! publishes by staging on that filesystem; a read-only root (a read-only bind mount) still
//! answers every read-only command; under umask 000 nothing in the store is world-writable.
//!
//! The mount cases need root and permission to mount; without them they print why and pass.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{Store, assert_complete, mount, p, run_umask0, setup, tree_dirs, www};

#[test]
fn a_dest_inside_equal_to_or_containing_the_store_is_refused() {
    let (_up, store) = setup();
    let root = store.root();
    let dest = www(&store);
    store.run(&["publish", "1", p(&dest)]).ok();
    let trees_before = tree_dirs(&store);
    let cases = [
        root.clone(),
        root.join("blobs"),
        root.join("trees"),
        root.join("partial"),
        root.join("tmp"),
        root.join("locks"),
        root.join("trees/new"),
        store.dir.path().to_path_buf(), // a parent of ROOT
        root.join("blobs/../trees"),    // the same, spelled otherwise
    ];
    for d in &cases {
        for extra in [&["--adopt"][..], &[][..]] {
            let mut args = vec!["publish", "1", p(d)];
            args.extend_from_slice(extra);
            let r = store.run(&args).fails();
            assert!(r.stderr.contains("the store root"), "{d:?}: {}", r.stderr);
        }
    }
    // Through a symlinked parent: compared as canonical paths.
    let alias = store.dir.path().join("alias");
    std::os::unix::fs::symlink(&root, &alias).unwrap();
    let r = store
        .run(&["publish", "1", p(&alias.join("trees")), "--adopt"])
        .fails();
    assert!(r.stderr.contains("the store root"), "{}", r.stderr);
    // The sstream-mirror drop-in adopting OUTPUT_DIR = ROOT/blobs.
    let r = store.run(&[
        "mirror",
        "--no-verify",
        "http://127.0.0.1:9/",
        p(&root.join("blobs")),
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("the store root"), "{}", r.stderr);

    // The store is intact: nothing moved aside, nothing replaced by a link, verify clean.
    for d in ["blobs", "trees", "partial", "tmp", "locks"] {
        let m = std::fs::symlink_metadata(root.join(d)).unwrap();
        assert!(m.is_dir(), "{d}");
    }
    let aside = std::fs::read_dir(store.dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("adopted")
        })
        .count();
    assert_eq!(aside, 0);
    assert_eq!(tree_dirs(&store), trees_before);
    assert_complete(&dest);
    let v = store.run(&["verify"]).ok();
    assert!(v.stdout.contains("clean"), "{}", v.stdout);
    store.check_invariants();
}

fn world_writable(dir: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        if m.file_type().is_symlink() {
            continue;
        }
        if m.permissions().mode() & 0o002 != 0 {
            bad.push(format!(
                "{:o} {}",
                m.permissions().mode() & 0o7777,
                e.path().display()
            ));
        }
    }
    bad
}

#[test]
fn under_umask_000_nothing_in_the_store_is_world_writable() {
    let up = crate::common::Upstream::new();
    let store = Store::new();
    let url = up.url();
    run_umask0(
        &store,
        &["source", "add", "maas", &url, "--keyring", up.keyring_str()],
    )
    .ok();
    run_umask0(&store, &["sync", "maas"]).ok();
    let dest = www(&store);
    run_umask0(&store, &["key", "generate", "--name", "k"]).ok();
    run_umask0(&store, &["publish", "1", p(&dest)]).ok();
    run_umask0(
        &store,
        &[
            "publish",
            "1",
            p(&dest),
            "--metadata",
            "filtered",
            "--sign-key",
            "k",
        ],
    )
    .ok();
    run_umask0(&store, &["verify"]).ok();
    run_umask0(&store, &["gc", "--dry-run"]).ok();
    let bad = world_writable(&store.root());
    assert!(
        bad.is_empty(),
        "world-writable under umask 000:\n{}",
        bad.join("\n")
    );
    let mode = |rel: &str| {
        std::fs::symlink_metadata(store.root().join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(""), 0o711);
    assert_eq!(mode("trees"), 0o755);
    assert_eq!(mode("lock"), 0o644);
    for d in ["blobs", "partial", "tmp", "locks", "keys"] {
        assert_eq!(mode(d), 0o700, "{d}");
    }
    // Tree directories are readable by a web server; tree files read-only.
    let tree = std::fs::canonicalize(&dest).unwrap();
    for e in walkdir::WalkDir::new(&tree) {
        let e = e.unwrap();
        let m = e.metadata().unwrap().permissions().mode() & 0o7777;
        if e.file_type().is_dir() {
            assert_eq!(m, 0o755, "{:?}", e.path());
        } else {
            assert_eq!(m, 0o444, "{:?}", e.path());
        }
    }
}

#[test]
fn trees_on_another_filesystem_publish_by_staging_there() {
    let (_up, store) = setup();
    let trees = store.root().join("trees");
    let Some(_m) = mount(&["-t", "tmpfs", "tmpfs"], &trees) else {
        return;
    };
    let dest = www(&store);
    let r = store.run(&["publish", "1", p(&dest), "--json"]).ok().json();
    assert_eq!(r["tree_reused"], false);
    assert_complete(&dest);
    // Copies, not hardlinks (another filesystem), with the blobs' content: verify is clean.
    let v = store.run(&["verify"]).ok();
    assert!(v.stdout.contains("clean"), "{}", v.stdout);
    // Grace items across filesystems too, and a rollback.
    store
        .run(&["publish", "1", p(&dest), "--metadata", "filtered"])
        .ok();
    assert_complete(&dest);
    store.run(&["rollback", p(&dest)]).ok();
    assert_complete(&dest);
    // No stage left behind, on either filesystem.
    let left: Vec<_> = std::fs::read_dir(&trees)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0
    );
    store.run(&["verify"]).ok();
}

/// A tree that must be copied (trees/ on another filesystem) is checked against that
/// filesystem's free space before anything is copied: one line naming the filesystem, a hint,
/// DEST untouched, no stage left (issue 9, free space in publish). Without the check the copy
/// started and died with ENOSPC halfway.
#[test]
fn a_copy_that_cannot_fit_on_trees_filesystem_is_refused_before_copying() {
    use crate::common::Upstream;
    use streamvault::streamgen::{Bulk, StreamSpec};
    let up = Upstream::with_spec(StreamSpec {
        bulk: Some(Bulk {
            products: 2,
            versions: 1,
            files_per_version: 8,
            file_size: 64 * 1024,
        }),
        ..StreamSpec::generation(1)
    });
    let store = Store::new();
    store.add("maas", &up, &[]);
    store.sync_json("maas");
    store.run(&["config", "set", "reserve", "0"]).ok();
    let dest = www(&store);
    // 1 MiB of items, 256 KiB of room on the tmpfs mounted over trees/
    let trees = store.root().join("trees");
    let Some(_m) = mount(&["-t", "tmpfs", "-o", "size=256k", "tmpfs"], &trees) else {
        return;
    };
    let r = store.run(&["publish", "1", p(&dest)]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines[0].starts_with("streamvault: error: not enough space on ")
            && lines[0].contains("need "),
        "{}",
        r.stderr
    );
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("hint: ")),
        "{}",
        r.stderr
    );
    assert!(
        std::fs::symlink_metadata(&dest).is_err(),
        "DEST was created"
    );
    // nothing was copied: no stage, no tree on the small filesystem
    assert_eq!(std::fs::read_dir(&trees).unwrap().count(), 0);
}

#[test]
fn read_only_commands_work_on_a_read_only_root() {
    let (up, store) = setup();
    up.flip(2);
    store.sync_json("maas");
    let dest = www(&store);
    store.run(&["publish", "2", p(&dest)]).ok();
    let root = store.root();
    // No process has the catalogue open: its -wal/-shm may be gone, which is the hard case
    // (SQLite cannot create the -shm on a read-only root). Remove them to be sure.
    for f in ["catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(root.join(f));
    }
    // The root bind-mounted read-only onto itself: same paths, nothing writable.
    let Some(_bind) = mount(&["--bind", p(&root)], &root) else {
        return;
    };
    // The same mount made read-only (undone by `_bind`'s umount).
    let Some(()) = mount(&["-o", "remount,bind,ro", p(&root)], &root).map(std::mem::forget) else {
        return;
    };
    assert!(
        std::fs::write(root.join("probe"), b"x").is_err(),
        "not read-only"
    );
    let d = p(&dest);
    for args in [
        &["verify"][..],
        &["verify", "--json"],
        &["status", d],
        &["publications"],
        &["publications", d, "--json"],
        &["snapshots"],
        &["snapshots", "maas", "--json"],
        &["snapshot", "show", "1", "--items"],
        &["snapshot", "show", "maas", "--json"],
        &["diff", "1", "2"],
        &["source", "list"],
        &["source", "show", "maas"],
    ] {
        let r = store.run(args);
        assert_eq!(r.code, 0, "{args:?}:\n{}\n{}", r.stdout, r.stderr);
        assert!(r.stderr.is_empty(), "{args:?}: {}", r.stderr);
    }
    let v = store.run(&["verify"]).ok();
    assert!(v.stdout.contains("clean"), "{}", v.stdout);
    // A writer fails with one line, and the store is untouched.
    store.run(&["sync", "maas"]).fails();
}

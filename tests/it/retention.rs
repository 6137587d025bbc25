//! Retention that runs by itself (issue 9 item 1): after every successful `mirror` run and
//! after `sync`, with the store's grace period (`STREAMVAULT_GRACE`, `config set grace`).

use std::path::Path;
use std::process::Command;

use crate::common::{Store, Upstream, reference_sstream_mirror, sstream_mirror_link, tree_of};

fn count_files(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The binary under the name `sstream-mirror`, as the MAAS docs call it.
fn sstream_mirror(store: &Store, grace: Option<&str>, args: &[&str]) {
    let mut c = Command::new(sstream_mirror_link(store));
    c.args(args).env("STREAMVAULT_ROOT", store.root());
    match grace {
        Some(g) => c.env("STREAMVAULT_GRACE", g),
        None => c.env_remove("STREAMVAULT_GRACE"),
    };
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn docs_line_with_grace_0_keeps_what_the_python_tool_keeps() {
    let Some(py) = reference_sstream_mirror() else {
        return;
    };
    let up = Upstream::new();
    let store = Store::new();
    let work = store.dir.path();
    let gnupg = work.join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    let sv_out = work.join("sv/images");
    let py_out = work.join("py/images");
    let k = format!("--keyring={}", up.keyring_str());
    let url = up.url();
    for generation in 1..=5 {
        up.flip(generation);
        let line = [k.as_str(), url.as_str(), "OUT", "arch=amd64", "--max=1"];
        let with = |out: &Path| -> Vec<String> {
            line.iter()
                .map(|a| {
                    if *a == "OUT" {
                        out.display().to_string()
                    } else {
                        a.to_string()
                    }
                })
                .collect()
        };
        let py_args = with(&py_out);
        let r = Command::new(&py)
            .args(&py_args)
            .env("GNUPGHOME", &gnupg)
            .env("HOME", work)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let sv_args = with(&sv_out);
        let sv_args: Vec<&str> = sv_args.iter().map(String::as_str).collect();
        sstream_mirror(&store, Some("0s"), &sv_args);

        let ours = tree_of(&sv_out);
        assert_eq!(ours, tree_of(&py_out), "generation {generation}");
        let blobs = count_files(&store.root().join("blobs"));
        assert!(
            blobs <= ours.len() + 2,
            "generation {generation}: {blobs} blobs for {} files",
            ours.len()
        );
        let trees = count_entries(&store.root().join("trees"));
        eprintln!(
            "generation {generation}: {} files, {blobs} blobs, {trees} trees",
            ours.len()
        );
        assert!(trees <= 2, "generation {generation}: {trees} trees");
    }
    store.check_invariants();
    store.run(&["verify"]).ok();
}

/// With a grace period the store keeps exactly the trees retired within it: all of them while
/// they are young, only the live one and the one just retired once the others have aged.
#[test]
fn with_a_grace_period_only_what_was_retired_within_it_stays() {
    let up = Upstream::new();
    let store = Store::new();
    let out = store.dir.path().join("www/images");
    let o = out.to_str().unwrap();
    let k = format!("--keyring={}", up.keyring_str());
    let url = up.url();
    store.run(&["config", "set", "grace", "1h"]).ok();
    for generation in 1..=4 {
        up.flip(generation);
        sstream_mirror(&store, None, &[&k, &url, o, "arch=amd64", "--max=1"]);
        // Nothing retired is older than the grace period: every generation's tree stays.
        assert_eq!(
            count_entries(&store.root().join("trees")),
            generation as usize,
            "generation {generation}"
        );
    }
    // The retired publications age past the grace period...
    let db = rusqlite::Connection::open(store.root().join("catalog.db")).unwrap();
    db.execute(
        "UPDATE publications SET retired_at = retired_at - 7200 WHERE retired_at IS NOT NULL",
        [],
    )
    .unwrap();
    db.execute("UPDATE snapshots SET created_at = created_at - 7200", [])
        .unwrap();
    db.execute("UPDATE blobs SET created_at = created_at - 7200", [])
        .unwrap();
    db.execute("UPDATE trees SET created_at = created_at - 7200", [])
        .unwrap();
    drop(db);
    // ... and the next run keeps the live tree and the one it just retired, nothing else.
    up.flip(5);
    sstream_mirror(&store, None, &[&k, &url, o, "arch=amd64", "--max=1"]);
    assert_eq!(count_entries(&store.root().join("trees")), 2);
    let snaps = store.run(&["snapshots", "--json"]).ok().json();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    store.check_invariants();
    store.run(&["verify"]).ok();
    // STREAMVAULT_GRACE wins over the setting: with 0s only the live tree stays.
    sstream_mirror(&store, Some("0s"), &[&k, &url, o, "arch=amd64", "--max=1"]);
    assert_eq!(count_entries(&store.root().join("trees")), 1);
    assert!(count_files(&store.root().join("blobs")) <= tree_of(&out).len() + 2);
}

//! Conditional metadata requests (issue 13 item 2): validators are remembered per document URL,
//! a `304` reuses the stored document, and a `Last-Modified` within 60 s of the response's
//! `Date` is never trusted (two generations written in the same second behind python's
//! http.server must both be seen).

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::common::{PyServer, Store, Upstream, metadata_gets, with_source};

fn kind(store: &Store, name: &str) -> String {
    let r = store.run(&["sync", name, "--json"]).ok();
    r.json()[0]["outcome"]["kind"].as_str().unwrap().to_string()
}

#[test]
fn an_unchanged_resync_gets_304_for_every_document_and_reuses_them() {
    let (up, store) = with_source("maas", &[]);
    assert_eq!(kind(&store, "maas"), "snapshot");
    up.clear();
    assert_eq!(kind(&store, "maas"), "unchanged");
    let reqs = up.requests();
    let docs: Vec<_> = reqs
        .iter()
        .filter(|r| r.path.starts_with("/streams/"))
        .collect();
    assert_eq!(docs.len(), metadata_gets(&reqs));
    assert!(!docs.is_empty());
    assert!(docs.iter().all(|r| r.status == 304), "{docs:?}");
    let body: u64 = reqs.iter().map(|r| r.bytes_sent).sum();
    eprintln!(
        "unchanged re-sync: {} requests, {body} body bytes",
        reqs.len()
    );
    assert_eq!(body, 0);
    // a new generation is fetched in full and makes a snapshot
    up.flip(2);
    assert_eq!(kind(&store, "maas"), "snapshot");
    store.check_invariants();
}

/// Set the mtime of every file of the tree `dir` to `t` (what http.server sends as
/// `Last-Modified`).
fn set_mtimes(dir: &Path, t: SystemTime) {
    for e in walkdir::WalkDir::new(dir).follow_links(true) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let f = std::fs::File::options().write(true).open(e.path()).unwrap();
            f.set_modified(t).unwrap();
        }
    }
}

fn statuses_304(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\" 304 "))
        .count()
}

#[test]
fn two_generations_in_the_same_second_behind_python_http_server() {
    let up = Upstream::new();
    up.build(&streamvault::streamgen::StreamSpec::generation(2));
    // Both generations carry the same mtime, 10 s ago: a Last-Modified that young is no proof.
    let t = SystemTime::now() - Duration::from_secs(10);
    set_mtimes(&up.gen_dir(1), t);
    set_mtimes(&up.gen_dir(2), t);
    let log = up.dir.path().join("http.log");
    let srv = PyServer::start(up.dir.path(), &log);
    let url = format!("http://127.0.0.1:{}/current/", srv.port);
    let store = Store::new();
    store
        .run(&["source", "add", "m", &url, "--keyring", up.keyring_str()])
        .ok();
    assert_eq!(kind(&store, "m"), "snapshot");
    up.flip(2);
    assert_eq!(
        kind(&store, "m"),
        "snapshot",
        "the second generation was missed"
    );
    assert_eq!(statuses_304(&log), 0, "a young Last-Modified was used");
    store.check_invariants();
}

#[test]
fn an_old_last_modified_is_used_behind_python_http_server() {
    let up = Upstream::new();
    set_mtimes(
        &up.gen_dir(1),
        SystemTime::now() - Duration::from_secs(3600),
    );
    let log = up.dir.path().join("http.log");
    let srv = PyServer::start(up.dir.path(), &log);
    let url = format!("http://127.0.0.1:{}/current/", srv.port);
    let store = Store::new();
    store
        .run(&["source", "add", "m", &url, "--keyring", up.keyring_str()])
        .ok();
    assert_eq!(kind(&store, "m"), "snapshot");
    assert_eq!(statuses_304(&log), 0);
    assert_eq!(kind(&store, "m"), "unchanged");
    // index + 2 products documents: each answered 304 (python has no ETag)
    assert_eq!(
        statuses_304(&log),
        3,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

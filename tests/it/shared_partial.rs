//! Two sources whose items share content, synced by two processes at once (issue 8 item 1): a
//! partial file has one writer at a time, so both syncs succeed and every blob's bytes match
//! its BLAKE3 name, also when one of them is killed in the middle of its downloads.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Store, Upstream};
use streamvault::streamgen::{Bulk, StreamSpec};

fn shared_upstream() -> Upstream {
    Upstream::with_spec(StreamSpec {
        bulk: Some(Bulk {
            products: 1,
            versions: 1,
            files_per_version: 4,
            // not a multiple of the download buffer (256 KiB): the buffer's first flush puts
            // bytes into partial/ while the file is still downloading, which the tests wait for
            file_size: 300 * 1024,
        }),
        ..StreamSpec::generation(1)
    })
}

fn spawn_sync(store: &Store, name: &str, rate: &str) -> Child {
    store
        .cmd(&["sync", name, "--limit-rate", rate, "--jobs", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sync")
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bytes written so far into `partial/` (item files, not lock files).
fn partial_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root.join("partial"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn wait_for_partial_bytes(store: &Store, min: u64, child: &mut Child) {
    let start = Instant::now();
    while partial_bytes(&store.root()) < min {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("the sync ended ({status}) before writing {min} bytes into partial/: {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no download started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn verify_clean(store: &Store) {
    store.check_invariants();
    let r = store.run(&["verify"]);
    assert_eq!(r.code, 0, "verify:\n{}\n{}", r.stdout, r.stderr);
}

#[test]
fn two_syncs_sharing_content_both_succeed() {
    let up = shared_upstream();
    let store = Store::new();
    store.add("a", &up, &[]);
    store.add("b", &up, &[]);
    let mut b = spawn_sync(&store, "b", "256k");
    wait_for_partial_bytes(&store, 1, &mut b);
    let a = spawn_sync(&store, "a", "256k");
    let (ca, ea) = finish(a);
    let (cb, eb) = finish(b);
    assert_eq!(ca, 0, "sync a: {ea}");
    assert_eq!(cb, 0, "sync b: {eb}");
    assert_eq!(store.snapshots("a").len(), 1);
    assert_eq!(store.snapshots("b").len(), 1);
    verify_clean(&store);
}

#[test]
fn one_sync_killed_while_the_other_completes() {
    let up = shared_upstream();
    let store = Store::new();
    store.add("a", &up, &[]);
    store.add("b", &up, &[]);
    let mut b = spawn_sync(&store, "b", "128k");
    wait_for_partial_bytes(&store, 1, &mut b);
    let a = spawn_sync(&store, "a", "512k");
    std::thread::sleep(Duration::from_millis(700));
    let _ = b.kill(); // SIGKILL, mid-download
    let _ = b.wait();
    let (ca, ea) = finish(a);
    assert_eq!(ca, 0, "sync a: {ea}");
    verify_clean(&store);
    // The killed source completes on its next run, from what is in the store.
    store.run(&["sync", "b"]).ok();
    verify_clean(&store);
}

//! A misbehaving upstream: random 500s, bodies cut short, Range ignored, stalls, 404s with a
//! `--mirror`. The sync converges and every blob is exactly what the metadata promised.

use std::time::Duration;

use crate::common::{Store, Upstream, with_source};
use streamvault::serve::{self, Faults, ServeOptions};
use streamvault::streamgen::StreamSpec;

#[test]
fn sync_converges_through_injected_faults() {
    let (up, store) = with_source("maas", &[]);
    up.faults(Faults {
        seed: 7,
        error_rate: 0.25,
        truncate_rate: 0.25,
        ignore_range: true,
        stall: Some((0.1, Duration::from_secs(3))),
        fail_first_n: 1,
        ..Faults::default()
    });
    let r = store
        .run(&[
            "sync",
            "maas",
            "--json",
            "--retries",
            "12",
            "--stall-timeout",
            "1",
            "--jobs",
            "4",
        ])
        .ok();
    let report = r.json()[0].clone();
    assert_eq!(report["outcome"]["kind"], "snapshot", "{report}");
    assert!(report["retries"].as_u64().unwrap() > 0, "{report}");
    let reqs = up.requests();
    assert!(reqs.iter().any(|r| r.status == 500));
    assert!(reqs.iter().any(|r| r.fault.is_some()));
    store.check_invariants();
    check_against_generator(&store, &up);
}

/// Every item's blob has the generator's sha256 and size.
fn check_against_generator(store: &Store, up: &Upstream) {
    let summary = up.build(&StreamSpec::generation(1));
    let db = rusqlite::Connection::open(store.root().join("catalog.db")).unwrap();
    for it in &summary.items {
        let (blob, size): (String, i64) = db
            .query_row(
                "SELECT blob, size FROM snapshot_items WHERE path = ?1",
                [&it.path],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(size as u64, it.size);
        let data = std::fs::read(store.root().join("blobs").join(&blob[..2]).join(&blob)).unwrap();
        let mut h = streamvault::checksum::MultiHasher::all();
        h.update(&data);
        let d = h.finish();
        assert_eq!(
            d.upstream.sha256.as_deref(),
            Some(it.sha256.as_str()),
            "{}",
            it.path
        );
    }
}

#[test]
fn resume_uses_range_and_accepts_only_206() {
    let (up, store) = with_source(
        "maas",
        &[
            "item_name=squashfs",
            "release=noble",
            "version_name=20240601",
        ],
    );
    // A half-finished download of the 300 kB squashfs, as a killed run leaves it.
    let summary = up.build(&StreamSpec::generation(1));
    let it = summary
        .items
        .iter()
        .find(|i| i.path == "noble/amd64/20240601/squashfs")
        .unwrap();
    let data = std::fs::read(up.current().join(&it.path)).unwrap();
    std::fs::create_dir_all(store.root().join("partial")).unwrap();
    let partial = store
        .root()
        .join("partial")
        .join(format!("sha256-{}-{}", it.sha256, it.size));
    std::fs::write(&partial, &data[..100_000]).unwrap();
    let r = store.sync_json("maas");
    assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    let get = up
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("20240601/squashfs"))
        .unwrap();
    assert_eq!(get.range.as_deref(), Some("bytes=100000-"));
    assert_eq!(get.status, 206);
    assert_eq!(get.bytes_sent, it.size - 100_000);
    assert!(!partial.exists());
    store.check_invariants();

    // A server that ignores Range: the 200 restarts from zero, the result is still right.
    let store2 = Store::new();
    store2.add(
        "maas",
        &up,
        &[
            "item_name=squashfs",
            "release=noble",
            "version_name=20240601",
        ],
    );
    std::fs::create_dir_all(store2.root().join("partial")).unwrap();
    let mut corrupt = data[..100_000].to_vec();
    corrupt[10] ^= 0xff;
    std::fs::write(
        store2
            .root()
            .join("partial")
            .join(format!("sha256-{}-{}", it.sha256, it.size)),
        &corrupt,
    )
    .unwrap();
    up.faults(Faults {
        ignore_range: true,
        ..Faults::default()
    });
    up.clear();
    let r = store2.sync_json("maas");
    assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    store2.check_invariants();
}

#[test]
fn not_found_falls_back_to_mirrors_in_order() {
    let up = Upstream::new();
    // The primary lacks every jammy file; the second mirror has everything.
    up.faults(Faults {
        not_found_prefixes: vec!["/jammy/".into()],
        ..Faults::default()
    });
    let empty = tempfile::tempdir().unwrap();
    let m1 = serve::spawn(ServeOptions::new(empty.path())).unwrap();
    let m2 = serve::spawn(ServeOptions::new(up.current())).unwrap();
    let store = Store::new();
    let (u1, u2) = (m1.url(), m2.url());
    store.add("maas", &up, &["--mirror", &u1, "--mirror", &u2]);
    let r = store.sync_json("maas");
    assert_eq!(r["outcome"]["kind"], "snapshot", "{r}");
    let jammy_on_m1 = m1
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/jammy/"))
        .count();
    let jammy_on_m2 = m2
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/jammy/"))
        .count();
    assert_eq!(jammy_on_m1, 20);
    assert_eq!(jammy_on_m2, 20);
    assert!(m2.requests().iter().all(|r| r.path.starts_with("/jammy/")));
    store.check_invariants();
}

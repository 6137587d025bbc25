//! Segmented downloads (issue 13 item 3): a large item is fetched as parallel `Range` segments,
//! verified whole before it becomes a blob; a server that ignores `Range` gets one stream; a
//! segment that fails is retried from where it got to.

use crate::common::{Store, Upstream};
use streamvault::serve::Faults;
use streamvault::streamgen::{Bulk, StreamSpec};

const SIZE: u64 = 3 * 1024 * 1024 + 12345;

/// Only the bulk item is selected, so the other --jobs permits are free for its segments.
fn upstream() -> Upstream {
    Upstream::with_spec(StreamSpec {
        bulk: Some(Bulk {
            products: 1,
            versions: 1,
            files_per_version: 1,
            file_size: SIZE,
        }),
        ..StreamSpec::generation(1)
    })
}

/// `(range header, status)` of the GETs of the bulk item.
fn bulk_gets(up: &Upstream) -> Vec<(Option<String>, u16)> {
    up.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/bulk/"))
        .map(|r| (r.range, r.status))
        .collect()
}

fn sync(store: &Store, extra: &[&str]) {
    let mut args = vec![
        "sync",
        "maas",
        "--json",
        "--segment-min",
        "1M",
        "--jobs",
        "4",
    ];
    args.extend_from_slice(extra);
    let r = store.run(&args).ok();
    assert_eq!(r.json()[0]["outcome"]["kind"], "snapshot", "{}", r.stdout);
    store.check_invariants();
    let v = store.run(&["verify"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
}

#[test]
fn a_large_item_comes_in_parallel_segments() {
    let up = upstream();
    let store = Store::new();
    store.add("maas", &up, &["product_name~bulk"]);
    sync(&store, &[]);
    let gets = bulk_gets(&up);
    let segments: Vec<_> = gets
        .iter()
        .filter(|(r, s)| *s == 206 && r.as_deref().is_some_and(|r| r != "bytes=0-0"))
        .collect();
    assert!(segments.len() >= 2, "{gets:?}");
    // the segments cover the file exactly once
    let mut covered: Vec<(u64, u64)> = segments
        .iter()
        .filter_map(|(r, _)| {
            let (a, b) = r.as_deref()?.strip_prefix("bytes=")?.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    covered.sort();
    let mut next = 0;
    for (a, b) in covered {
        assert_eq!(a, next, "{gets:?}");
        next = b + 1;
    }
    assert_eq!(next, SIZE, "{gets:?}");
}

#[test]
fn a_server_that_ignores_range_gets_one_stream() {
    let up = upstream();
    up.faults(Faults {
        ignore_range: true,
        ..Faults::default()
    });
    let store = Store::new();
    store.add("maas", &up, &["product_name~bulk"]);
    sync(&store, &[]);
    let gets = bulk_gets(&up);
    // the probe (answered 200), then one whole stream
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets.iter().all(|(_, s)| *s == 200), "{gets:?}");
}

#[test]
fn failing_segments_are_retried_and_the_blob_is_exact() {
    let up = upstream();
    up.faults(Faults {
        seed: 11,
        error_rate: 0.2,
        truncate_rate: 0.3,
        ..Faults::default()
    });
    let store = Store::new();
    store.add("maas", &up, &["product_name~bulk"]);
    sync(&store, &["--retries", "20"]);
    let gets = bulk_gets(&up);
    let ranged = gets
        .iter()
        .filter(|(r, _)| r.as_deref().is_some_and(|r| r != "bytes=0-0"))
        .count();
    let failed = gets.iter().filter(|(_, s)| *s >= 500).count();
    eprintln!("{gets:?}");
    assert!(ranged >= 3 && failed >= 1, "{gets:?}");
}

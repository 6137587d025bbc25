//! A reader during publish/rollback flips of an S3 DEST: while the publisher flips the live
//! index between two snapshots (publish, rollback, publish, …; 50 flips in each metadata mode,
//! 100 in all), a reader thread loops as a client does — index → products → random items,
//! checking size and sha256 — and sees 0 errors and 0 404s.
//!
//! Verbatim metadata keeps upstream paths, so a reader may briefly get an old index with new
//! products (documented): its check is "every item any document lists is present". Filtered
//! documents named by content hash pair exactly; while they are written in place the pairing is
//! only reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::s3tree::{Items, moto_with_snapshots, read_tree, s3_run};

/// Flips per mode.
const FLIPS: usize = 50;

#[derive(Debug, Default)]
struct Seen {
    reads: usize,
    items: usize,
    unpaired: usize,
    not_found: usize,
    problems: Vec<String>,
    /// Whether the index names its products documents by content hash.
    hashed: bool,
}

#[test]
fn a_reader_sees_no_error_and_no_404_during_100_flips() {
    let Some((moto, _up, store)) = moto_with_snapshots("flips", 2) else {
        return;
    };
    let moto = Arc::new(moto);
    let ep = moto.endpoint();

    let mut flips = 0;
    for mode in ["verbatim", "filtered"] {
        let dest = format!("s3://flips/{mode}");
        let base = format!("/flips/{mode}");
        for snap in ["1", "2"] {
            s3_run(&store, &ep, &["publish", snap, &dest, "--metadata", mode]).ok();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (moto, stop, base) = (Arc::clone(&moto), Arc::clone(&stop), base.clone());
            std::thread::spawn(move || {
                let mut seen = Seen::default();
                while !stop.load(Ordering::SeqCst) || seen.reads == 0 {
                    let t = read_tree(&moto, &base, Items::Sample(3));
                    seen.reads += 1;
                    seen.items += t.items;
                    seen.unpaired += t.unpaired;
                    seen.not_found += t.not_found;
                    seen.problems.extend(t.problems);
                    seen.hashed |= t.hashed_names;
                }
                seen
            })
        };
        for i in 0..FLIPS {
            let r = if i % 2 == 0 {
                s3_run(&store, &ep, &["rollback", &dest, "--json"])
            } else {
                s3_run(
                    &store,
                    &ep,
                    &["publish", "2", &dest, "--metadata", mode, "--json"],
                )
            };
            assert_eq!(r.code, 0, "{mode} flip {i}: {}{}", r.stdout, r.stderr);
            let want = if i % 2 == 0 { 1 } else { 2 };
            assert_eq!(r.json()["snapshot"], want, "{mode} flip {i}: {}", r.stdout);
            assert_eq!(r.json()["changed"], true, "{mode} flip {i}: {}", r.stdout);
            flips += 1;
        }
        stop.store(true, Ordering::SeqCst);
        let seen = reader.join().unwrap();
        eprintln!("{mode}: {FLIPS} flips, {seen:?}");
        assert!(seen.reads >= 2 && seen.items > 0, "{mode}: {seen:?}");
        assert_eq!(seen.not_found, 0, "{mode}: 404s: {:?}", seen.problems);
        assert!(seen.problems.is_empty(), "{mode}: {:?}", seen.problems);
        if mode == "filtered" && seen.hashed {
            assert_eq!(
                seen.unpaired, 0,
                "filtered: an index with another publish's products"
            );
        }
        let st = s3_run(&store, &ep, &["status", &dest, "--json"]);
        assert_eq!(st.code, 0, "{}{}", st.stdout, st.stderr);
    }
    assert!(flips >= 100);
}

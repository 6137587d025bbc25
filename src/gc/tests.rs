use super::*;

#[test]
fn keep_reasons_round_trip_and_refuse_unknown() {
    for r in [
        KeepReason::Published,
        KeepReason::Linked,
        KeepReason::RetiredWithinGrace,
        KeepReason::NewWithinGrace,
    ] {
        let s = serde_json::to_value(r).unwrap();
        assert_eq!(KeepReason::parse(s.as_str().unwrap()), Some(r));
    }
    assert_eq!(KeepReason::parse("bogus"), None);
}

#[test]
fn the_orphan_walk_keeps_every_blob_with_a_row_and_takes_every_other_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut vault = Vault::open(dir.path()).unwrap();
    // 300 blobs with rows: several per prefix directory, so each directory is checked against
    // a range of rows, not one
    let mut kept = Vec::new();
    for i in 0..300u32 {
        let d = vault
            .blobs
            .put_bytes(format!("blob {i}").as_bytes())
            .unwrap();
        vault.catalog.insert_blob(&d).unwrap();
        kept.push(d.blake3);
    }
    let blobs = vault.layout.blobs();
    let (a, b) = (&kept[0], &kept[1]);
    let other = if a.starts_with("00") { "01" } else { "00" };
    let orphans = [
        // a canonical name without a row, beside rows
        blobs
            .join(&a[..2])
            .join(format!("{}{}", &a[..2], "0".repeat(62))),
        // a row's name in another prefix directory
        blobs.join(other).join(a),
        // not canonical: uppercase, not hex
        blobs.join(&a[..2]).join(a.to_ascii_uppercase()),
        blobs.join(&a[..2]).join("junk"),
        // a directory that is not a prefix, holding a row's name
        blobs.join("zz").join(b),
    ];
    for o in &orphans {
        std::fs::create_dir_all(o.parent().unwrap()).unwrap();
        std::fs::write(o, b"stray").unwrap();
    }
    // the rows are new (within the default grace), so only the files without one go
    let plan = gc_plan(&mut vault, &GcOptions::default()).unwrap();
    assert_eq!(plan.report.orphan_blobs, orphans.len() as u64);
    assert_eq!(plan.report.blobs_within_grace, kept.len() as u64);
    gc(plan).unwrap();
    for o in &orphans {
        assert!(!o.exists(), "{} stayed", o.display());
    }
    for k in &kept {
        assert!(blobs.join(&k[..2]).join(k).is_file(), "{k} went");
    }
}

/// The automatic gc walks one sixteenth of `blobs/` per run, in turn: an orphan in a prefix
/// directory starting with digit `k` goes at the run whose slice is `k` (so within 16 runs);
/// what is not a prefix directory goes at the first run; `gc` itself walks everything.
#[test]
fn the_automatic_gc_walks_one_slice_of_blobs_per_run_and_all_in_sixteen() {
    let dir = tempfile::tempdir().unwrap();
    let mut vault = Vault::open(dir.path()).unwrap();
    let d = vault.blobs.put_bytes(b"kept").unwrap();
    vault.catalog.insert_blob(&d).unwrap();
    let blobs = vault.layout.blobs();
    // an orphan (a canonical name without a row) in prefix `k0` for every first digit k
    let orphans: Vec<_> = (0..16u32)
        .map(|k| {
            let prefix = format!("{}0", char::from_digit(k, 16).unwrap());
            let p = blobs
                .join(&prefix)
                .join(format!("{prefix}{}", "1".repeat(62)));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"stray").unwrap();
            p
        })
        .collect();
    let junk = blobs.join("not-a-prefix");
    std::fs::write(&junk, b"stray").unwrap();
    let all = gc_plan(&mut vault, &GcOptions::default()).unwrap();
    assert_eq!(all.report.orphan_blobs, 17, "gc walks every directory");
    assert_eq!(all.report.orphan_slice, None);
    drop(all);

    let settings = StoreSettings::default();
    for k in 0..16usize {
        assert_eq!(vault.catalog.gc_orphan_slice().unwrap(), k as u8);
        let AutoGc::Collected(r) = auto_collect(&mut vault, &settings) else {
            panic!("auto gc did not run");
        };
        assert_eq!(r.orphan_slice, Some(k as u8));
        assert_eq!(r.orphan_blobs, if k == 0 { 2 } else { 1 }, "run {k}");
        assert!(!junk.exists());
        for (j, o) in orphans.iter().enumerate() {
            assert_eq!(o.exists(), j > k, "run {k}: orphan {j}");
        }
    }
    assert_eq!(
        vault.catalog.gc_orphan_slice().unwrap(),
        0,
        "wrapped around"
    );
    let key = &d.blake3;
    assert!(
        blobs.join(&key[..2]).join(key).is_file(),
        "the blob with a row stayed"
    );
}

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

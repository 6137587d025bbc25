//! Benchmark fixture for `scripts/bench-gc.sh`: fills a store root with many small blobs
//! quickly, through the library's catalogue and layout, so that `gc` and `verify` can be timed
//! and their peak memory measured at several store sizes.
//!
//! It owns nothing the product relies on. It keeps invariant 1 (each blob's file is written,
//! at its BLAKE3 address, before its row) but skips the fsyncs: a benchmark store is throwaway.
//! Fast enough for 10^6 blobs: the 256 fan-out directories are made once, each file is created
//! with its final mode in one `open` (no `chmod`), and the rows go in one transaction. Blobs are
//! 33 to 96 bytes, small enough for ext4's `inline_data` (the file lives in its inode: what
//! `BENCH_LOOPFS` in `scripts/bench-gc.sh` uses to keep a 10^6-blob store near 1 GB).
//!
//! Shape: source `bench` with `SNAPSHOTS` snapshots, each naming a window of 2·N/(S+1) blobs
//! that overlaps the next one by half; the newest snapshot is materialised as tree `live`
//! (hardlinks) and published on `<root>/../www`. With `gc --keep-last 2 --grace 0` about half the
//! blobs are dropped.
//!
//! Usage: `bench_store ROOT BLOBS [SNAPSHOTS]`

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use streamvault::catalog::{self, Item, NewSnapshot, NewSource};
use streamvault::checksum::{Algo, Digests, MultiHasher};
use streamvault::vault::Vault;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bench_store ROOT BLOBS [SNAPSHOTS]";
    let root = PathBuf::from(args.next().ok_or(usage)?);
    let blobs: usize = args.next().ok_or(usage)?.parse()?;
    let snapshots: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let mut vault = Vault::open(&root)?;
    let source = vault.catalog.add_source(&NewSource {
        name: "bench".into(),
        url: "http://127.0.0.1:9/".into(),
        ..NewSource::default()
    })?;

    // Blobs: files first, then their rows, in one transaction.
    let blob_dir = vault.layout.blobs();
    for p in 0..256 {
        fs::create_dir_all(blob_dir.join(format!("{p:02x}")))?;
    }
    let mut digests: Vec<Digests> = Vec::with_capacity(blobs);
    for i in 0..blobs {
        let data = format!("streamvault bench blob {i:09}\n{}", "x".repeat(i % 64));
        let mut h = MultiHasher::new(&[Algo::Sha256]);
        h.update(data.as_bytes());
        let d = h.finish();
        let path = vault.layout.blob(&d.blake3).ok_or("bad digest")?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)?;
        f.write_all(data.as_bytes())?;
        digests.push(d);
    }
    vault.catalog.insert_blobs(&digests)?;

    // Snapshots: overlapping windows.
    let step = blobs / (snapshots + 1);
    let mut last = catalog::SnapshotId(0);
    for k in 0..snapshots {
        let items: Vec<Item> = digests
            .iter()
            .enumerate()
            .skip(k * step)
            .take(2 * step)
            .map(|(i, d)| Item {
                content_id: "com.example.bench".into(),
                product: format!("p{:04}", i / 1000),
                version: "v1".into(),
                item: format!("i{i:09}"),
                path: Some(format!("bench/{:04}/{i:09}", i / 1000)),
                size: Some(d.size),
                checksums: d.upstream.clone(),
                blob: Some(
                    streamvault::store::BlobHash::parse(&d.blake3).expect("a computed hash"),
                ),
            })
            .collect();
        last = vault.catalog.insert_snapshot(&NewSnapshot {
            source_id: Some(source),
            source: "bench".into(),
            url: "http://127.0.0.1:9/".into(),
            start_path: "streams/v1/index.json".into(),
            filters: Vec::new(),
            max: None,
            keep: false,
            signed: false,
            verified: false,
            signer: None,
            fetched_bytes: 0,
            duration_ms: 0,
            digest: format!("bench-{k}"),
            documents: Vec::new(),
            items,
        })?;
    }

    // The newest snapshot as a published tree of hardlinks.
    let tree = vault.layout.trees().join("live");
    let mut files = 0i64;
    let mut bytes = 0i64;
    vault.catalog.for_each_item(last, |it| {
        if let (Some(p), Some(b)) = (&it.path, &it.blob)
            && let blob = vault.layout.blob_path(b)
        {
            let target = tree.join(p);
            if let Some(dir) = target.parent() {
                fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
            }
            fs::hard_link(&blob, &target).map_err(|e| io(e, &target))?;
            files += 1;
            bytes += it.size.unwrap_or(0) as i64;
        }
        Ok(())
    })?;
    let row = vault.catalog.insert_tree(
        "live",
        last,
        catalog::MetadataMode::Verbatim,
        None,
        files as u64,
        bytes as u64,
        &[],
    )?;
    let www = root
        .parent()
        .map(|p| p.join("www"))
        .ok_or("root has no parent")?;
    let _ = fs::remove_file(&www);
    std::os::unix::fs::symlink(&tree, &www)?;
    vault.catalog.insert_publication(
        &www.to_string_lossy(),
        &row,
        catalog::PublicationAction::Publish,
        "bench",
    )?;
    println!(
        "{}: {blobs} blobs, {snapshots} snapshots, tree `live` of {files} files",
        root.display()
    );
    Ok(())
}

fn io(e: std::io::Error, p: &std::path::Path) -> streamvault::error::Error {
    streamvault::error::Error::Io {
        op: "write",
        path: p.to_path_buf(),
        source: e,
    }
}

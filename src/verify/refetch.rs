//! verify's re-fetch of corrupt and missing blobs: where each was fetched from (every snapshot
//! that names it, newest first, with its source's mirrors), downloaded again into `partial/`
//! and accepted only if its BLAKE3 is the blob's name.

use std::fs;
use std::path::{Path, PathBuf};

use crate::catalog::Catalog;
use crate::checksum::Digests;
use crate::error::{Error, IoResultExt, Result};
use crate::fetch::{Expect, FetchOptions, Fetcher, Location, NoProgress};
use crate::store::{BlobHash, Layout};

/// At most this many recorded places are tried for one blob.
const MAX_PLACES: u32 = 8;

/// Where one blob can be fetched from and what it must match.
pub(super) struct RefetchJob {
    pub(super) hash: BlobHash,
    pub(super) expect: Expect,
    /// `(base + mirrors, path)`, newest snapshot first.
    pub(super) places: Vec<(Location, String)>,
}

/// The recorded places of a blob: each snapshot's URL + the item's (or document's) path, with
/// the source's mirrors. A catalogue that cannot be read (or a damaged `mirrors` column) is an
/// error here, never "no mirrors".
pub(super) fn refetch_job(cat: &Catalog, hash: &BlobHash) -> Result<RefetchJob> {
    let rec = cat.blob_record(hash)?;
    let mut places = Vec::new();
    for place in cat.blob_places(hash, MAX_PLACES)? {
        if crate::streams::check_path(&place.path).is_err() {
            continue;
        }
        let mirrors = cat.source_mirrors(&place.source)?;
        places.push((Location::new(place.url).with_mirrors(mirrors), place.path));
    }
    Ok(RefetchJob {
        hash: hash.clone(),
        expect: Expect {
            size: u64::try_from(rec.size).ok(),
            checksums: rec.sums,
        },
        places,
    })
}

pub(super) type Refetched = std::result::Result<(PathBuf, Digests, String), String>;

/// Download every job (the fetcher bounds concurrency); each result is a verified file in
/// `partial/` whose BLAKE3 is the blob's name, or why there is none.
pub(super) fn run_refetches(
    layout: &Layout,
    fetch: &FetchOptions,
    jobs: Vec<(usize, RefetchJob)>,
) -> Result<Vec<(usize, BlobHash, Refetched)>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let fetcher = Fetcher::new(fetch.clone())?;
    let partial_dir = layout.partial();
    fs::create_dir_all(&partial_dir).with_path("create directory", &partial_dir)?;
    Ok(rt.block_on(async move {
        let mut set = tokio::task::JoinSet::new();
        for (i, job) in jobs {
            let fetcher = fetcher.clone();
            let partial = layout.repair_download(&job.hash);
            set.spawn(async move {
                let res = refetch(&fetcher, &job, &partial).await;
                (i, job.hash, res)
            });
        }
        let mut out = Vec::new();
        while let Some(joined) = set.join_next().await {
            if let Ok(r) = joined {
                out.push(r);
            }
        }
        out
    }))
}

async fn refetch(fetcher: &Fetcher, job: &RefetchJob, partial: &Path) -> Refetched {
    if job.places.is_empty() {
        return Err("no snapshot records where it came from".into());
    }
    let mut last = String::new();
    for (loc, rel) in &job.places {
        match fetcher
            .download(loc, rel, partial, &job.expect, &NoProgress)
            .await
        {
            Ok(d) if d.digests.blake3 == job.hash.as_str() => {
                return Ok((partial.to_path_buf(), d.digests, d.url));
            }
            Ok(d) => {
                let _ = tokio::fs::remove_file(partial).await;
                last = format!("`{}` now serves different content", d.url);
            }
            Err(e) => last = format!("cannot fetch it: {}", crate::error::chain_line(&e)),
        }
    }
    Err(last)
}

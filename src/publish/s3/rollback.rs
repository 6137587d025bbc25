//! `rollback s3://…`: re-put the documents an older publication recorded (products, then the
//! index, conditionally), after checking that every item it lists is still in the bucket.

use super::*;

/// Re-put the documents of an older publication (the previous one, or `to`: `N` or
/// `publication:N`).
pub fn rollback(vault: &mut Vault, d: &S3Dest, to: Option<&str>) -> Result<S3Report> {
    let started = Instant::now();
    let url = d.url();
    let pseudo = PathBuf::from(&url);
    let _locks = crate::publish::lock_dest(vault, &pseudo, "rollback")?;
    let live = vault
        .catalog
        .live_s3_publication(&url)?
        .ok_or_else(|| Error::NotPublished {
            dest: pseudo.clone(),
        })?;
    let target = match to {
        Some(spec) => {
            let n = spec.strip_prefix("publication:").unwrap_or(spec);
            let found = match n.parse::<S3PublicationId>() {
                Ok(id) => vault.catalog.s3_publication(id)?,
                Err(_) => None,
            };
            found
                .filter(|p| p.dest == url)
                .ok_or_else(|| Error::UnknownPublication {
                    dest: pseudo.clone(),
                    spec: spec.to_string(),
                })?
        }
        None => vault
            .catalog
            .s3_publications(Some(&url))?
            .into_iter()
            .find(|p| p.id < live.id && p.tree != live.tree)
            .ok_or_else(|| Error::NothingToRollBack {
                dest: pseudo.clone(),
            })?,
    };
    let docs = vault.catalog.s3_documents(target.id)?;
    let objects = vault.catalog.s3_objects(target.id)?;
    let rt = runtime()?;
    let s = connect(d)?;
    // Every item the older index lists must still be there (`gc s3://…` may have collected
    // it): the documents are re-put, nothing else is.
    let mut remote = HashMap::new();
    if !objects.is_empty() {
        remote = rt.block_on(list(&s, d))?;
        let missing: Vec<&S3Object> = objects
            .iter()
            .filter(|o| o.blob.is_some())
            .filter(|o| remote.get(&o.key).is_none_or(|(size, _)| *size != o.size))
            .collect();
        if let Some(first) = missing.first() {
            return Err(S3Error::RollbackIncomplete {
                dest: url,
                publication: target.id,
                missing: missing.len(),
                example: first.key.clone(),
            }
            .into());
        }
    }
    let mut docs_sorted = docs.clone();
    docs_sorted.sort_by_key(|doc| (doc.is_index, doc.key.ends_with(".sjson"), doc.key.clone()));
    let mut current = HashMap::new();
    for doc in docs_sorted.iter().filter(|doc| doc.is_index) {
        current.insert(doc.key.clone(), rt.block_on(read(&s, &d.key(&doc.key)))?);
    }
    let mut written = 0;
    for doc in docs_sorted.iter().filter(|doc| !doc.is_index) {
        // A products document already there with these bytes (a content-hashed name in
        // filtered mode) is not written again: rewriting an object a reader may be fetching
        // gains nothing.
        let same = remote.get(&doc.key).is_some_and(|(size, etag)| {
            *size == doc.body.len() as u64
                && etag.as_deref() == Some(etag_of(&md5_of(&doc.body)).as_str())
        });
        if same {
            continue;
        }
        let cache = doc_cache(target.mode);
        let body = bytes::Bytes::from(doc.body.clone());
        rt.block_on(put_doc(&s, d, &d.key(&doc.key), body, None, cache))?;
        written += 1;
    }
    let row = NewS3Publication {
        dest: &url,
        tree_id: target.tree_id,
        tree: &target.tree,
        snapshot_id: target.snapshot_id,
        mode: target.mode,
        signer: target.signer.as_deref(),
        action: PublicationAction::Rollback,
        files: target.files,
        bytes: target.bytes,
        by: &crate::host::who(),
    };
    let index: Vec<Doc> = docs_sorted
        .iter()
        .filter(|doc| doc.is_index)
        .cloned()
        .map(Doc::from)
        .collect();
    let insert = |c: &Catalog| c.insert_s3_publication_listing(&row, &docs_sorted, &objects);
    let (id, n) = switch(vault, &url, insert, || {
        rt.block_on(write_index(&s, d, &index, &current))
    })?;
    written += n;
    Ok(S3Report {
        publication: id,
        action: PublicationAction::Rollback,
        dest: url,
        snapshot: target.snapshot_id,
        tree: target.tree,
        mode: target.mode,
        signer: target.signer,
        files: target.files,
        bytes: target.bytes,
        uploaded: 0,
        uploaded_bytes: 0,
        skipped: 0,
        documents_written: written,
        changed: true,
        previous: Some(live.id),
        duration_ms: started.elapsed().as_millis() as u64,
        keyring: None,
        key_created: false,
        warnings: Vec::new(),
    })
}

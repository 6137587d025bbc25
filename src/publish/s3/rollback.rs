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
    if !objects.is_empty() {
        let remote = rt.block_on(list(&s, d))?;
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
        let cache = doc_cache(target.mode);
        rt.block_on(put_doc(&s, d, &d.key(&doc.key), &doc.body, None, cache))?;
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
    let (id, n) = switch(vault, &row, &docs_sorted, &objects, || {
        rt.block_on(write_index(&s, d, &docs_sorted, &current))
    })?;
    written += n;
    Ok(S3Report {
        publication: id,
        action: "rollback".into(),
        dest: url,
        snapshot: target.snapshot_id,
        tree: target.tree,
        mode: target.mode.to_string(),
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
    })
}

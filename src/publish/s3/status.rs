//! `status s3://…` and `publications s3://…`: the bucket's live index against the catalogue, and
//! the history of the DEST's publications (read-only).

use super::*;

/// The live publication of an S3 DEST, and whether the bucket's index is the one it wrote.
pub fn status(vault: Option<&Vault>, d: &S3Dest) -> Result<S3Status> {
    let url = d.url();
    let live = match vault {
        Some(v) => v.catalog.live_s3_publication(&url)?,
        None => None,
    };
    let mut problems = Vec::new();
    match (&live, vault) {
        (Some(p), Some(v)) => {
            let docs = v.catalog.s3_documents(p.id)?;
            let rt = runtime()?;
            let s = connect(d)?;
            for doc in docs.iter().filter(|doc| doc.is_index) {
                match rt.block_on(read(&s, &d.key(&doc.key)))? {
                    None => problems.push(format!("{} is missing from the bucket", doc.key)),
                    Some((b, _)) if b != doc.body => problems.push(format!(
                        "{} in the bucket is not the one publication {} wrote (another publisher?)",
                        doc.key, p.id
                    )),
                    Some(_) => {}
                }
            }
        }
        _ => problems.push("not published by this store".into()),
    }
    Ok(S3Status {
        dest: url,
        live,
        problems,
    })
}

/// Every publication of an S3 DEST, newest first.
pub fn publications(vault: Option<&Vault>, d: &S3Dest) -> Result<Vec<S3Publication>> {
    match vault {
        Some(v) => v.catalog.s3_publications(Some(&d.url())),
        None => Ok(Vec::new()),
    }
}

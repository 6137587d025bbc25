//! What each S3 publication lists (`s3_objects`, schema 0012) and which ones gc collected
//! (`s3_collected`): one row per object (item or
//! metadata document) relative to the DEST's prefix, written in the same transaction as the
//! publication row and its documents, so no publication exists without its listing. `gc
//! s3://…` keeps what the kept publications list ([`Catalog::s3_kept_publications`]); `verify
//! s3://…` checks it.

use rusqlite::params;

use super::{Catalog, NewS3Publication, S3Document, S3Publication, S3PublicationId, now};
use crate::error::Result;

/// One object an S3 publication lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3Object {
    /// Relative to the DEST's prefix.
    pub key: String,
    pub size: u64,
    /// The BLAKE3 of an item's blob; `None` for a metadata document (its bytes are in
    /// `s3_documents`).
    pub blob: Option<String>,
}

impl Catalog {
    /// Insert an S3 publication with its documents and every object it lists (one
    /// transaction).
    pub fn insert_s3_publication_listing(
        &self,
        p: &NewS3Publication<'_>,
        docs: &[S3Document],
        objects: &[S3Object],
    ) -> Result<S3PublicationId> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO s3_publications (dest, tree_id, tree_name, snapshot_id, mode, signer,
                    action, files, bytes, published_at, published_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    p.dest,
                    p.tree_id,
                    p.tree,
                    p.snapshot_id,
                    p.mode,
                    p.signer,
                    p.action,
                    p.files,
                    p.bytes,
                    now(),
                    p.by
                ],
            )?;
            let id = S3PublicationId(tx.last_insert_rowid());
            let mut st = tx.prepare_cached(
                "INSERT INTO s3_documents (publication_id, key, is_index, body)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for d in docs {
                st.execute(params![id, d.key, d.is_index, d.body])?;
            }
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO s3_objects (publication_id, key, size, blob)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for o in objects {
                st.execute(params![id, o.key, o.size as i64, o.blob])?;
            }
            Ok(id)
        })
    }

    /// Every object publication `id` lists, by key.
    pub fn s3_objects(&self, id: S3PublicationId) -> Result<Vec<S3Object>> {
        self.rows(
            "SELECT key, size, blob FROM s3_objects WHERE publication_id = ?1 ORDER BY key",
            [id],
            |r| {
                Ok(S3Object {
                    key: r.get(0)?,
                    size: r.get::<_, i64>(1)?.max(0) as u64,
                    blob: r.get(2)?,
                })
            },
        )
    }

    /// The publications of `dest` whose objects gc collected.
    pub fn s3_collected(&self, dest: &str) -> Result<Vec<S3PublicationId>> {
        self.rows(
            "SELECT c.publication_id FROM s3_collected c
             JOIN s3_publications p ON p.id = c.publication_id WHERE p.dest = ?1",
            [dest],
            |r| r.get(0),
        )
    }

    /// Record, before `gc s3://…` deletes objects, that every publication of `dest` but `kept`
    /// is collected (one transaction).
    pub fn mark_s3_collected(&self, dest: &str, kept: &[S3PublicationId]) -> Result<()> {
        let all = self.s3_publications(Some(dest))?;
        let at = now();
        self.write(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO s3_collected (publication_id, collected_at) VALUES (?1, ?2)",
            )?;
            for p in all.iter().filter(|p| !kept.contains(&p.id)) {
                st.execute(params![p.id, at])?;
            }
            Ok(())
        })
    }

    /// Whether publication `id` has its listing recorded (publications written before schema
    /// 0012 have none).
    pub fn s3_listing_recorded(&self, id: S3PublicationId) -> Result<bool> {
        Ok(self
            .row(
                "SELECT 1 FROM s3_objects WHERE publication_id = ?1 LIMIT 1",
                [id],
                |_| Ok(()),
            )?
            .is_some())
    }

    /// The publications of `dest` whose objects stay, newest first: every one not retired, every
    /// one retired less than `grace_secs` ago, and the newest `keep_last` (what a rollback goes
    /// back to); never one whose objects gc collected ([`Catalog::mark_s3_collected`]).
    pub fn s3_kept_publications(
        &self,
        dest: &str,
        keep_last: u32,
        grace_secs: u64,
    ) -> Result<Vec<S3Publication>> {
        let cutoff = now().saturating_sub(grace_secs.min(i64::MAX as u64) as i64);
        let collected = self.s3_collected(dest)?;
        let all = self.s3_publications(Some(dest))?;
        Ok(all
            .into_iter()
            .filter(|p| !collected.contains(&p.id))
            .enumerate()
            .filter(|(i, p)| {
                (*i as u64) < u64::from(keep_last.max(1)) || p.retired_at.is_none_or(|t| t > cutoff)
            })
            .map(|(_, p)| p)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{MetadataMode, PublicationAction};

    fn publish(c: &Catalog, objects: &[&str]) -> S3PublicationId {
        let row = NewS3Publication {
            dest: "s3://b/p",
            tree_id: None,
            tree: "t",
            snapshot_id: crate::catalog::SnapshotId(1),
            mode: MetadataMode::Verbatim,
            signer: None,
            action: PublicationAction::Publish,
            files: 0,
            bytes: 0,
            by: "me",
        };
        let objects: Vec<S3Object> = objects
            .iter()
            .map(|k| S3Object {
                key: k.to_string(),
                size: 1,
                blob: None,
            })
            .collect();
        let id = c
            .insert_s3_publication_listing(&row, &[], &objects)
            .unwrap();
        c.retire_other_s3_publications("s3://b/p", id).unwrap();
        id
    }

    #[test]
    fn kept_publications_live_keep_last_grace_and_never_collected_ones() {
        let c = Catalog::open_in_memory().unwrap();
        let a = publish(&c, &["x", "y"]);
        let b = publish(&c, &["y"]);
        let d = publish(&c, &["z"]);
        assert!(c.s3_listing_recorded(a).unwrap());
        assert_eq!(c.s3_objects(a).unwrap().len(), 2);
        // Within a day's grace everything stays; without grace the newest `keep_last`.
        let ids = |v: Vec<S3Publication>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(
            ids(c.s3_kept_publications("s3://b/p", 1, 86_400).unwrap()),
            [d, b, a]
        );
        assert_eq!(
            ids(c.s3_kept_publications("s3://b/p", 2, 0).unwrap()),
            [d, b]
        );
        // Collected ones are never kept again, whatever the settings.
        c.mark_s3_collected("s3://b/p", &[d]).unwrap();
        assert_eq!(
            ids(c.s3_kept_publications("s3://b/p", 3, 86_400).unwrap()),
            [d]
        );
        assert_eq!(c.s3_collected("s3://b/p").unwrap().len(), 2);
    }
}

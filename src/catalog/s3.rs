//! What each S3 publication lists (`s3_objects`, schema 0012) and which ones gc collected
//! (`s3_collected`): one row per object (item or
//! metadata document) relative to the DEST's prefix, written in the same transaction as the
//! publication row and its documents, so no publication exists without its listing. `gc
//! s3://…` keeps what the kept publications list ([`Catalog::s3_kept_publications`]); `verify
//! s3://…` checks it.

use std::io::Read;
use std::path::Path;

use rusqlite::{Transaction, params};

use super::{
    Catalog, NewS3Publication, S3Document, S3Publication, S3PublicationId, SnapshotId, TreeId, now,
};
use crate::error::{Error, Result};

/// Documents larger than this keep their bytes in `s3_document_chunks` (schema 0017), this
/// much per row.
pub const DOCUMENT_CHUNK: usize = 256 << 10;

/// Where the bytes of a document to record are.
#[derive(Debug, Clone, Copy)]
pub enum DocBody<'a> {
    Bytes(&'a [u8]),
    /// A file of the tree (a products document), read a chunk at a time.
    File(&'a Path),
}

/// A document an S3 publication writes, to record (see [`Catalog::insert_s3_publication_streamed`]).
#[derive(Debug, Clone, Copy)]
pub struct NewS3Doc<'a> {
    pub(crate) key: &'a str,
    pub(crate) is_index: bool,
    pub(crate) body: DocBody<'a>,
}

/// An item an S3 publication lists: its key and size (its blob is looked up in SQL).
pub trait ListedItem {
    fn key(&self) -> &str;
    fn size(&self) -> u64;
}

/// Insert one document: small ones in `s3_documents`, big ones in chunks.
fn insert_doc(
    tx: &Transaction<'_>,
    id: S3PublicationId,
    d: NewS3Doc<'_>,
    io: &mut Option<Error>,
) -> rusqlite::Result<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO s3_documents (publication_id, key, is_index, body) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut chunk = tx.prepare_cached(
        "INSERT INTO s3_document_chunks (publication_id, key, seq, bytes) VALUES (?1, ?2, ?3, ?4)",
    )?;
    match d.body {
        DocBody::Bytes(b) if b.len() <= DOCUMENT_CHUNK => {
            st.execute(params![id, d.key, d.is_index, b])?;
        }
        DocBody::Bytes(b) => {
            st.execute(params![id, d.key, d.is_index, &[] as &[u8]])?;
            for (seq, c) in b.chunks(DOCUMENT_CHUNK).enumerate() {
                chunk.execute(params![id, d.key, seq as i64, c])?;
            }
        }
        DocBody::File(p) => {
            let fail = |io: &mut Option<Error>, source: std::io::Error| {
                *io = Some(Error::Io {
                    op: "read",
                    path: p.to_path_buf(),
                    source,
                });
                rusqlite::Error::InvalidQuery
            };
            let mut f = std::fs::File::open(p).map_err(|e| fail(io, e))?;
            let mut buf = Vec::with_capacity(DOCUMENT_CHUNK);
            let mut seq = 0i64;
            loop {
                buf.clear();
                (&mut f)
                    .take(DOCUMENT_CHUNK as u64)
                    .read_to_end(&mut buf)
                    .map_err(|e| fail(io, e))?;
                if seq == 0 && buf.len() < DOCUMENT_CHUNK {
                    // Small: whole in s3_documents.
                    st.execute(params![id, d.key, d.is_index, buf])?;
                    break;
                }
                if seq == 0 {
                    st.execute(params![id, d.key, d.is_index, &[] as &[u8]])?;
                }
                if buf.is_empty() {
                    break;
                }
                chunk.execute(params![id, d.key, seq, buf])?;
                seq += 1;
            }
        }
    }
    Ok(())
}

/// One object an S3 publication lists.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3Object {
    /// Relative to the DEST's prefix.
    pub(crate) key: String,
    pub(crate) size: u64,
    /// The BLAKE3 of an item's blob; `None` for a metadata document (its bytes are in
    /// `s3_documents`).
    pub(crate) blob: Option<String>,
}

fn doc_len(d: &NewS3Doc<'_>) -> u64 {
    match d.body {
        DocBody::Bytes(b) => b.len() as u64,
        DocBody::File(p) => std::fs::metadata(p).map_or(0, |m| m.len()),
    }
}

/// The `s3_publications` row.
fn insert_row(tx: &Transaction<'_>, p: &NewS3Publication<'_>) -> rusqlite::Result<S3PublicationId> {
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
    Ok(S3PublicationId(tx.last_insert_rowid()))
}

impl Catalog {
    /// Insert an S3 publication with its documents and every object it lists (one
    /// transaction).
    pub(crate) fn insert_s3_publication_listing(
        &self,
        p: &NewS3Publication<'_>,
        docs: &[S3Document],
        objects: &[S3Object],
    ) -> Result<S3PublicationId> {
        let mut io = None;
        let r = self.write(|tx| {
            let id = insert_row(tx, p)?;
            for d in docs {
                let d = NewS3Doc {
                    key: &d.key,
                    is_index: d.is_index,
                    body: DocBody::Bytes(&d.body),
                };
                insert_doc(tx, id, d, &mut io)?;
            }
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO s3_objects (publication_id, key, size, blob)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for o in objects {
                st.execute(params![id, o.key, o.size as i64, o.blob])?;
            }
            Ok(id)
        });
        match (r, io) {
            (_, Some(e)) => Err(e),
            (r, None) => r,
        }
    }

    /// Insert an S3 publication with its documents (big ones a chunk at a time, read from
    /// their files) and every object it lists (one transaction): `items`, each with the BLAKE3
    /// of its blob looked up in SQL (the snapshot's items, then the tree's grace items, then
    /// its recorded documents), and the documents. Nothing is collected in memory.
    pub(crate) fn insert_s3_publication_streamed<I: ListedItem>(
        &self,
        p: &NewS3Publication<'_>,
        docs: &[NewS3Doc<'_>],
        items: &[I],
        snapshot: SnapshotId,
        tree: Option<TreeId>,
    ) -> Result<S3PublicationId> {
        let mut io = None;
        let r = self.write(|tx| {
            let id = insert_row(tx, p)?;
            for d in docs {
                insert_doc(tx, id, *d, &mut io)?;
            }
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO s3_objects (publication_id, key, size, blob)
                 VALUES (?1, ?2, ?3, NULL)",
            )?;
            for it in items {
                st.execute(params![id, it.key(), it.size() as i64])?;
            }
            // Blobs, first match wins: the snapshot's items, the tree's grace items, the
            // tree's recorded documents (an item the tree holds under a document's path).
            let mut set = tx.prepare_cached(
                "UPDATE s3_objects SET blob = ?3
                 WHERE publication_id = ?1 AND key = ?2 AND blob IS NULL",
            )?;
            let mut each = |sql: &str, a: i64| -> rusqlite::Result<()> {
                let mut q = tx.prepare_cached(sql)?;
                let mut rows = q.query([a])?;
                while let Some(r) = rows.next()? {
                    let (path, blob): (String, String) = (r.get(0)?, r.get(1)?);
                    set.execute(params![id, path, blob])?;
                }
                Ok(())
            };
            each(
                "SELECT path, blob FROM snapshot_items
                 WHERE snapshot_id = ?1 AND path IS NOT NULL AND blob IS NOT NULL",
                snapshot.0,
            )?;
            if let Some(t) = tree {
                each(
                    "SELECT i.path, i.blob FROM tree_grace g
                     JOIN snapshot_items i ON i.snapshot_id = g.snapshot_id
                     WHERE g.tree_id = ?1 AND i.path IS NOT NULL AND i.blob IS NOT NULL",
                    t.0,
                )?;
                each(
                    "SELECT path, blake3 FROM tree_documents WHERE tree_id = ?1",
                    t.0,
                )?;
            }
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO s3_objects (publication_id, key, size, blob)
                 VALUES (?1, ?2, ?3, NULL)",
            )?;
            for d in docs {
                st.execute(params![id, d.key, doc_len(d) as i64])?;
            }
            Ok(id)
        });
        match (r, io) {
            (_, Some(e)) => Err(e),
            (r, None) => r,
        }
    }

    /// The documents publication `id` wrote: (key, is_index, size), index documents last.
    #[cfg(test)]
    pub(crate) fn s3_document_keys(&self, id: S3PublicationId) -> Result<Vec<(String, bool, u64)>> {
        self.rows(
            "SELECT d.key, d.is_index, CASE WHEN length(d.body) > 0 THEN length(d.body)
                ELSE (SELECT coalesce(sum(length(c.bytes)), 0) FROM s3_document_chunks c
                      WHERE c.publication_id = d.publication_id AND c.key = d.key) END
             FROM s3_documents d WHERE d.publication_id = ?1 ORDER BY d.is_index, d.key",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)),
        )
    }

    /// The bytes of one document publication `id` wrote (reassembled from its chunks).
    pub(crate) fn s3_document_body(
        &self,
        id: S3PublicationId,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        let Some(body) = self.row(
            "SELECT body FROM s3_documents WHERE publication_id = ?1 AND key = ?2",
            params![id, key],
            |r| r.get::<_, Vec<u8>>(0),
        )?
        else {
            return Ok(None);
        };
        if !body.is_empty() {
            return Ok(Some(body));
        }
        let mut out = Vec::new();
        self.each(
            "SELECT bytes FROM s3_document_chunks WHERE publication_id = ?1 AND key = ?2
             ORDER BY seq",
            params![id, key],
            |r| r.get::<_, Vec<u8>>(0),
            |c| {
                out.extend_from_slice(&c);
                Ok(())
            },
        )?;
        Ok(Some(out))
    }

    /// Every object publication `id` lists, by key.
    pub(crate) fn s3_objects(&self, id: S3PublicationId) -> Result<Vec<S3Object>> {
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
    pub(crate) fn s3_collected(&self, dest: &str) -> Result<Vec<S3PublicationId>> {
        self.rows(
            "SELECT c.publication_id FROM s3_collected c
             JOIN s3_publications p ON p.id = c.publication_id WHERE p.dest = ?1",
            [dest],
            |r| r.get(0),
        )
    }

    /// Record, before `gc s3://…` deletes objects, that every publication of `dest` but `kept`
    /// is collected (one transaction).
    pub(crate) fn mark_s3_collected(&self, dest: &str, kept: &[S3PublicationId]) -> Result<()> {
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
    pub(crate) fn s3_listing_recorded(&self, id: S3PublicationId) -> Result<bool> {
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
    pub(crate) fn s3_kept_publications(
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

    /// A verbatim publication of tree `t` to `s3://b/p`.
    fn row() -> NewS3Publication<'static> {
        NewS3Publication {
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
        }
    }

    fn publish(c: &Catalog, objects: &[&str]) -> S3PublicationId {
        let row = row();
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

    struct It(&'static str, u64);
    impl ListedItem for It {
        fn key(&self) -> &str {
            self.0
        }
        fn size(&self) -> u64 {
            self.1
        }
    }

    #[test]
    fn big_documents_are_recorded_in_chunks_and_read_back_whole() {
        let c = Catalog::open_in_memory().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..DOCUMENT_CHUNK * 2 + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let exact = vec![b'e'; DOCUMENT_CHUNK];
        let file = dir.path().join("big.json");
        std::fs::write(&file, &big).unwrap();
        let exact_file = dir.path().join("exact.json");
        std::fs::write(&exact_file, &exact).unwrap();
        let row = row();
        let docs = [
            NewS3Doc {
                key: "streams/v1/big.json",
                is_index: false,
                body: DocBody::File(&file),
            },
            NewS3Doc {
                key: "streams/v1/exact.json",
                is_index: false,
                body: DocBody::File(&exact_file),
            },
            NewS3Doc {
                key: "streams/v1/mem.json",
                is_index: false,
                body: DocBody::Bytes(&big),
            },
            NewS3Doc {
                key: "streams/v1/index.json",
                is_index: true,
                body: DocBody::Bytes(b"{}"),
            },
        ];
        let items = [It("a/b", 3), It("a/c", 4)];
        let id = c
            .insert_s3_publication_streamed(&row, &docs, &items, row.snapshot_id, None)
            .unwrap();
        let n = |sql: &str| -> i64 { c.row(sql, [], |r| r.get(0)).unwrap().unwrap() };
        assert_eq!(n("SELECT count(*) FROM s3_document_chunks"), 3 + 1 + 3);
        assert_eq!(
            n("SELECT max(length(bytes)) FROM s3_document_chunks"),
            DOCUMENT_CHUNK as i64
        );
        let back = c.s3_documents(id).unwrap();
        let body = |k: &str| back.iter().find(|d| d.key == k).unwrap().body.clone();
        assert_eq!(body("streams/v1/big.json"), big);
        assert_eq!(body("streams/v1/exact.json"), exact);
        assert_eq!(body("streams/v1/mem.json"), big);
        assert_eq!(body("streams/v1/index.json"), b"{}");
        let keys = c.s3_document_keys(id).unwrap();
        assert_eq!(
            keys.last().unwrap(),
            &("streams/v1/index.json".to_string(), true, 2)
        );
        assert!(keys.contains(&("streams/v1/big.json".to_string(), false, big.len() as u64)));
        // Items and documents are listed; a document's size is its length.
        let objects = c.s3_objects(id).unwrap();
        assert_eq!(objects.len(), 6);
        let o = objects
            .iter()
            .find(|o| o.key == "streams/v1/big.json")
            .unwrap();
        assert_eq!((o.size, o.blob.as_deref()), (big.len() as u64, None));
        // A missing file is an error naming it, and nothing is recorded.
        let gone = dir.path().join("gone.json");
        let docs = [NewS3Doc {
            key: "streams/v1/gone.json",
            is_index: false,
            body: DocBody::File(&gone),
        }];
        let e = c
            .insert_s3_publication_streamed(&row, &docs, &items, row.snapshot_id, None)
            .unwrap_err();
        assert!(e.to_string().contains("gone.json"), "{e}");
        assert_eq!(c.s3_publications(Some("s3://b/p")).unwrap().len(), 1);
        // Deleting the publication deletes its chunks.
        c.delete_s3_publication(id).unwrap();
        assert_eq!(n("SELECT count(*) FROM s3_document_chunks"), 0);
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

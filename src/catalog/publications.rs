//! Publications: the flips of a local DEST link (the `publications` table, schema 0002) and the
//! publications to an `s3://` DEST (`s3_publications` and `s3_documents`, schema 0007).
//!
//! Protects invariant 4 through the order its callers use (see `publish::switch`): a
//! `publications` row is inserted before the link flips (so gc always sees the tree as
//! referenced) and deleted again only if the flip failed. An S3 publication row and its
//! documents are inserted in one transaction before the index is written (a crash between the
//! two leaves a row that `status` reports as not live, never a live index the catalogue does not
//! know); a failed index write deletes the row again.

use rusqlite::{Row, params};

use super::ids::{PublicationId, S3PublicationId, SnapshotId, TreeId};
use super::trees::{MetadataMode, TreeRow};
use super::{Catalog, now};
use crate::error::Result;

/// Why a publication row was written (`publications.action`, `s3_publications.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublicationAction {
    Publish,
    /// A publish that first imported the real directory at DEST (`--adopt`).
    Adopt,
    Rollback,
}

stored_enum!(PublicationAction, "publication action", {
    Publish => "publish",
    Adopt => "adopt",
    Rollback => "rollback",
});

/// One flip of a published link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Publication {
    pub id: PublicationId,
    pub dest: String,
    pub(crate) tree_id: TreeId,
    pub(crate) tree: String,
    pub snapshot_id: SnapshotId,
    pub source: String,
    pub mode: MetadataMode,
    pub(crate) signer: Option<String>,
    pub action: PublicationAction,
    pub published_at: i64,
    pub published_by: String,
    pub retired_at: Option<i64>,
    /// Filled from `readlink(dest)` by the caller, never stored.
    pub live: bool,
}

const PUB_COLUMNS: &str = "SELECT p.id, p.dest, p.tree_id, t.name, p.snapshot_id,
    coalesce(s.source_name, ''), t.mode, t.signer, p.action, p.published_at, p.published_by,
    p.retired_at
    FROM publications p JOIN trees t ON t.id = p.tree_id
    LEFT JOIN snapshots s ON s.id = p.snapshot_id";

fn pub_from_row(r: &Row<'_>) -> rusqlite::Result<Publication> {
    Ok(Publication {
        id: r.get(0)?,
        dest: r.get(1)?,
        tree_id: r.get(2)?,
        tree: r.get(3)?,
        snapshot_id: r.get(4)?,
        source: r.get(5)?,
        mode: r.get(6)?,
        signer: r.get(7)?,
        action: r.get(8)?,
        published_at: r.get(9)?,
        published_by: r.get(10)?,
        retired_at: r.get(11)?,
        live: false,
    })
}

impl Catalog {
    /// Insert a publication row (before the flip).
    pub fn insert_publication(
        &self,
        dest: &str,
        tree: &TreeRow,
        action: PublicationAction,
        by: &str,
    ) -> Result<PublicationId> {
        self.sql(|c| {
            c.execute(
                "INSERT INTO publications (dest, tree_id, snapshot_id, action, published_at,
                                           published_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![dest, tree.id, tree.snapshot_id, action, now(), by],
            )?;
            Ok(PublicationId(c.last_insert_rowid()))
        })
    }

    /// Remove the row of a flip that did not happen.
    pub(crate) fn delete_publication(&self, id: PublicationId) -> Result<()> {
        self.exec("DELETE FROM publications WHERE id = ?1", [id])?;
        Ok(())
    }

    /// After the flip: every other publication of `dest` still open is retired now (all of them
    /// when `live` is 0).
    pub(crate) fn retire_other_publications(&self, dest: &str, live: PublicationId) -> Result<()> {
        self.exec(
            "UPDATE publications SET retired_at = ?1
             WHERE dest = ?2 AND id != ?3 AND retired_at IS NULL",
            params![now(), dest, live],
        )?;
        Ok(())
    }

    /// Publications, of one dest or all, oldest first.
    pub fn publications(&self, dest: Option<&str>) -> Result<Vec<Publication>> {
        self.rows(
            &format!("{PUB_COLUMNS} WHERE (?1 IS NULL OR p.dest = ?1) ORDER BY p.id"),
            [dest],
            pub_from_row,
        )
    }

    pub(crate) fn publication(&self, id: PublicationId) -> Result<Option<Publication>> {
        self.row(
            &format!("{PUB_COLUMNS} WHERE p.id = ?1"),
            [id],
            pub_from_row,
        )
    }

    /// The newest publication of `dest`, whatever its tree.
    pub(crate) fn latest_publication(&self, dest: &str) -> Result<Option<Publication>> {
        self.row(
            &format!("{PUB_COLUMNS} WHERE p.dest = ?1 ORDER BY p.id DESC LIMIT 1"),
            [dest],
            pub_from_row,
        )
    }

    /// The newest publication of `dest` with tree `tree` (the live one when `tree` is the
    /// link's).
    pub(crate) fn latest_publication_with_tree(
        &self,
        dest: &str,
        tree: TreeId,
    ) -> Result<Option<Publication>> {
        self.row(
            &format!(
                "{PUB_COLUMNS} WHERE p.dest = ?1 AND p.tree_id = ?2 ORDER BY p.id DESC LIMIT 1"
            ),
            params![dest, tree],
            pub_from_row,
        )
    }

    /// The newest publication of `dest` before `before` whose tree is not `not_tree`.
    pub(crate) fn previous_publication(
        &self,
        dest: &str,
        before: PublicationId,
        not_tree: TreeId,
    ) -> Result<Option<Publication>> {
        self.row(
            &format!(
                "{PUB_COLUMNS} WHERE p.dest = ?1 AND p.id < ?2 AND p.tree_id != ?3
                 ORDER BY p.id DESC LIMIT 1"
            ),
            params![dest, before, not_tree],
            pub_from_row,
        )
    }

    /// The newest publication of `dest` of snapshot `snapshot`.
    pub(crate) fn latest_publication_of_snapshot(
        &self,
        dest: &str,
        snapshot: SnapshotId,
    ) -> Result<Option<Publication>> {
        self.row(
            &format!(
                "{PUB_COLUMNS} WHERE p.dest = ?1 AND p.snapshot_id = ?2 ORDER BY p.id DESC LIMIT 1"
            ),
            params![dest, snapshot],
            pub_from_row,
        )
    }

    /// Whether `snapshot` was published on `dest` and later replaced there (a rollback or a
    /// newer publish), as opposed to never having been flipped to.
    pub(crate) fn was_retired_from(&self, dest: &str, snapshot: SnapshotId) -> Result<bool> {
        self.sql(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM publications WHERE dest = ?1 AND snapshot_id = ?2
                                AND retired_at IS NOT NULL)",
                params![dest, snapshot],
                |r| r.get(0),
            )
        })
    }

    /// The live (not retired) publication of every dest: (dest, snapshot, published_at).
    pub(crate) fn live_publications(&self) -> Result<Vec<(String, SnapshotId, i64)>> {
        self.rows(
            "SELECT dest, snapshot_id, published_at FROM publications p
             WHERE retired_at IS NULL
               AND id = (SELECT max(id) FROM publications x WHERE x.dest = p.dest)
             ORDER BY dest",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }
}

// ------------------------------------------------------------------ S3

/// One publish or rollback to an `s3://` DEST.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3Publication {
    pub id: S3PublicationId,
    pub dest: String,
    pub(crate) tree_id: Option<TreeId>,
    pub(crate) tree: String,
    pub snapshot_id: SnapshotId,
    pub mode: MetadataMode,
    pub(crate) signer: Option<String>,
    pub action: PublicationAction,
    pub files: i64,
    pub bytes: i64,
    pub published_at: i64,
    pub published_by: String,
    pub retired_at: Option<i64>,
}

/// A metadata document as an S3 publication wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Document {
    /// Relative to the DEST prefix.
    pub(crate) key: String,
    pub(crate) is_index: bool,
    pub(crate) body: Vec<u8>,
}

/// What a new `s3_publications` row records.
pub struct NewS3Publication<'a> {
    pub(crate) dest: &'a str,
    pub(crate) tree_id: Option<TreeId>,
    pub(crate) tree: &'a str,
    pub(crate) snapshot_id: SnapshotId,
    pub(crate) mode: MetadataMode,
    pub(crate) signer: Option<&'a str>,
    pub(crate) action: PublicationAction,
    pub(crate) files: i64,
    pub(crate) bytes: i64,
    pub(crate) by: &'a str,
}

const S3_COLUMNS: &str = "SELECT id, dest, tree_id, tree_name, snapshot_id, mode, signer, action,
    files, bytes, published_at, published_by, retired_at FROM s3_publications";

fn s3_from_row(r: &Row<'_>) -> rusqlite::Result<S3Publication> {
    Ok(S3Publication {
        id: r.get(0)?,
        dest: r.get(1)?,
        tree_id: r.get(2)?,
        tree: r.get(3)?,
        snapshot_id: r.get(4)?,
        mode: r.get(5)?,
        signer: r.get(6)?,
        action: r.get(7)?,
        files: r.get(8)?,
        bytes: r.get(9)?,
        published_at: r.get(10)?,
        published_by: r.get(11)?,
        retired_at: r.get(12)?,
    })
}

impl Catalog {
    /// Remove an S3 publication whose index write failed.
    pub(crate) fn delete_s3_publication(&self, id: S3PublicationId) -> Result<()> {
        self.exec("DELETE FROM s3_documents WHERE publication_id = ?1", [id])?;
        self.exec("DELETE FROM s3_publications WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Mark every other S3 publication of `dest` retired.
    pub(crate) fn retire_other_s3_publications(
        &self,
        dest: &str,
        id: S3PublicationId,
    ) -> Result<()> {
        self.exec(
            "UPDATE s3_publications SET retired_at = ?3
             WHERE dest = ?1 AND id != ?2 AND retired_at IS NULL",
            params![dest, id, now()],
        )?;
        Ok(())
    }

    /// Every S3 publication of `dest` (every DEST when `None`), newest first.
    pub(crate) fn s3_publications(&self, dest: Option<&str>) -> Result<Vec<S3Publication>> {
        self.rows(
            &format!("{S3_COLUMNS} WHERE (?1 IS NULL OR dest = ?1) ORDER BY id DESC"),
            [dest],
            s3_from_row,
        )
    }

    /// The live S3 publication of `dest`: the newest one not retired.
    pub(crate) fn live_s3_publication(&self, dest: &str) -> Result<Option<S3Publication>> {
        self.row(
            &format!(
                "{S3_COLUMNS} WHERE dest = ?1 AND retired_at IS NULL ORDER BY id DESC LIMIT 1"
            ),
            [dest],
            s3_from_row,
        )
    }

    /// One S3 publication by id.
    pub(crate) fn s3_publication(&self, id: S3PublicationId) -> Result<Option<S3Publication>> {
        self.row(&format!("{S3_COLUMNS} WHERE id = ?1"), [id], s3_from_row)
    }

    /// The documents an S3 publication wrote (products first, the index documents last).
    pub(crate) fn s3_documents(&self, id: S3PublicationId) -> Result<Vec<S3Document>> {
        // Big documents keep their bytes in chunks (schema 0017, catalog/s3.rs).
        let mut docs = self.s3_documents_rows(id)?;
        for d in docs.iter_mut().filter(|d| d.body.is_empty()) {
            d.body = self.s3_document_body(id, &d.key)?.unwrap_or_default();
        }
        Ok(docs)
    }

    fn s3_documents_rows(&self, id: S3PublicationId) -> Result<Vec<S3Document>> {
        self.rows(
            "SELECT key, is_index, body FROM s3_documents WHERE publication_id = ?1
             ORDER BY is_index, key",
            [id],
            |r| {
                Ok(S3Document {
                    key: r.get(0)?,
                    is_index: r.get(1)?,
                    body: r.get(2)?,
                })
            },
        )
    }
}

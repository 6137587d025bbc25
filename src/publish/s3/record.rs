//! The SQL of the `s3_publications` and `s3_documents` tables (schema 0007).
//!
//! A publication row and its documents are inserted in one transaction before the index is
//! written (so a crash between the two leaves a row that `status` reports as not live, never a
//! live index the catalogue does not know); a failed index write deletes the row again.

use rusqlite::{OptionalExtension, params};

use crate::catalog::{Catalog, now};
use crate::error::Result;

/// One publish or rollback to an `s3://` DEST.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct S3Publication {
    pub id: i64,
    pub dest: String,
    pub tree_id: Option<i64>,
    pub tree: String,
    pub snapshot_id: i64,
    pub mode: String,
    pub signer: Option<String>,
    pub action: String,
    pub files: i64,
    pub bytes: i64,
    pub published_at: i64,
    pub published_by: String,
    pub retired_at: Option<i64>,
}

/// A metadata document as a publication wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Document {
    /// Relative to the DEST prefix.
    pub key: String,
    pub is_index: bool,
    pub body: Vec<u8>,
}

const COLUMNS: &str = "SELECT id, dest, tree_id, tree_name, snapshot_id, mode, signer, action,
    files, bytes, published_at, published_by, retired_at FROM s3_publications";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<S3Publication> {
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

/// What a new row records.
pub struct NewPublication<'a> {
    pub dest: &'a str,
    pub tree_id: Option<i64>,
    pub tree: &'a str,
    pub snapshot_id: i64,
    pub mode: &'a str,
    pub signer: Option<&'a str>,
    pub action: &'a str,
    pub files: i64,
    pub bytes: i64,
    pub by: &'a str,
}

/// Insert a publication with its documents (one transaction).
pub fn insert(cat: &mut Catalog, p: &NewPublication<'_>, docs: &[S3Document]) -> Result<i64> {
    let r = insert_tx(cat.conn_mut(), p, docs);
    r.map_err(|e| cat.err(e))
}

fn insert_tx(
    conn: &mut rusqlite::Connection,
    p: &NewPublication<'_>,
    docs: &[S3Document],
) -> rusqlite::Result<i64> {
    let tx = conn.transaction()?;
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
    let id = tx.last_insert_rowid();
    for d in docs {
        tx.execute(
            "INSERT INTO s3_documents (publication_id, key, is_index, body)
             VALUES (?1, ?2, ?3, ?4)",
            params![id, d.key, d.is_index, d.body],
        )?;
    }
    tx.commit()?;
    Ok(id)
}

/// Remove a publication whose index write failed.
pub fn delete(cat: &Catalog, id: i64) -> Result<()> {
    cat.conn()
        .execute("DELETE FROM s3_documents WHERE publication_id = ?1", [id])
        .map_err(|e| cat.err(e))?;
    cat.conn()
        .execute("DELETE FROM s3_publications WHERE id = ?1", [id])
        .map_err(|e| cat.err(e))?;
    Ok(())
}

/// Mark every other publication of `dest` retired.
pub fn retire_others(cat: &Catalog, dest: &str, id: i64) -> Result<()> {
    cat.conn()
        .execute(
            "UPDATE s3_publications SET retired_at = ?3
             WHERE dest = ?1 AND id != ?2 AND retired_at IS NULL",
            params![dest, id, now()],
        )
        .map_err(|e| cat.err(e))?;
    Ok(())
}

/// Every publication of `dest` (every DEST when `None`), newest first.
pub fn list(cat: &Catalog, dest: Option<&str>) -> Result<Vec<S3Publication>> {
    let sql = match dest {
        Some(_) => format!("{COLUMNS} WHERE dest = ?1 ORDER BY id DESC"),
        None => format!("{COLUMNS} WHERE ?1 IS NULL ORDER BY id DESC"),
    };
    let mut st = cat.conn().prepare(&sql).map_err(|e| cat.err(e))?;
    let rows = st.query_map([dest], from_row).map_err(|e| cat.err(e))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| cat.err(e))
}

/// The live publication of `dest`: the newest one not retired.
pub fn live(cat: &Catalog, dest: &str) -> Result<Option<S3Publication>> {
    cat.conn()
        .query_row(
            &format!("{COLUMNS} WHERE dest = ?1 AND retired_at IS NULL ORDER BY id DESC LIMIT 1"),
            [dest],
            from_row,
        )
        .optional()
        .map_err(|e| cat.err(e))
}

/// One publication by id.
pub fn get(cat: &Catalog, id: i64) -> Result<Option<S3Publication>> {
    cat.conn()
        .query_row(&format!("{COLUMNS} WHERE id = ?1"), [id], from_row)
        .optional()
        .map_err(|e| cat.err(e))
}

/// The documents a publication wrote (products first, the index documents last).
pub fn documents(cat: &Catalog, id: i64) -> Result<Vec<S3Document>> {
    let mut st = cat
        .conn()
        .prepare(
            "SELECT key, is_index, body FROM s3_documents WHERE publication_id = ?1
             ORDER BY is_index, key",
        )
        .map_err(|e| cat.err(e))?;
    let rows = st
        .query_map([id], |r| {
            Ok(S3Document {
                key: r.get(0)?,
                is_index: r.get(1)?,
                body: r.get(2)?,
            })
        })
        .map_err(|e| cat.err(e))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| cat.err(e))
}

-- streamvault catalogue: the blob table kept in name order (WITHOUT ROWID, keyed by blake3).
-- A rowid table keeps its rows in insertion order and its names in a separate index, so any
-- bulk deletion walks one of the two in random order: gc deleting 500k of 10^6 blob rows spent
-- most of its CPU time there (every deleted row touching a random page of a 75-150 MB b-tree
-- through a 16 MiB page cache). Keyed by name, gc deletes in name order: the table, the
-- foreign-key lookups into `snapshot_items_blob`/`snapshot_documents_blob` and the plan's
-- `gc_drop_blobs` are all walked front to back once (src/gc/plan.rs, `delete_rows`).
--
-- The table is rebuilt (SQLite's 12-step procedure): the marker line below makes the catalogue
-- apply this migration with foreign keys off (src/catalog.rs, `FOREIGN_KEYS_OFF`: a DROP TABLE
-- with them on would check and refuse every referenced row); every row is copied with its key
-- unchanged, so
-- every reference that held before holds after. A row without a name (possible only in a
-- damaged rowid table) names no file and is left out.
-- streamvault: foreign keys off
CREATE TABLE blobs_by_name (
    blake3      TEXT PRIMARY KEY,           -- lowercase hex, the file name under blobs/
    size        INTEGER NOT NULL,
    md5         TEXT,                       -- upstream checksums known for this content
    sha256      TEXT,
    sha512      TEXT,
    created_at  INTEGER NOT NULL            -- unix seconds
) WITHOUT ROWID;
INSERT INTO blobs_by_name (blake3, size, md5, sha256, sha512, created_at)
    SELECT blake3, size, md5, sha256, sha512, created_at FROM blobs
    WHERE blake3 IS NOT NULL ORDER BY blake3;
DROP TABLE blobs;
ALTER TABLE blobs_by_name RENAME TO blobs;
CREATE INDEX blobs_sha256 ON blobs(sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX blobs_sha512 ON blobs(sha512) WHERE sha512 IS NOT NULL;
CREATE INDEX blobs_md5 ON blobs(md5, size) WHERE md5 IS NOT NULL;
CREATE INDEX blobs_gc ON blobs(blake3, created_at, size);

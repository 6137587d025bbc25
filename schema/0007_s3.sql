-- streamvault catalogue: publications to S3-compatible object storage (helper-reserved 0007).
-- One row per publish or rollback to an `s3://BUCKET/PREFIX` DEST; the live one is the newest
-- row of its DEST that is not retired. Every metadata document a publication wrote is kept here
-- byte for byte (s3_documents), so a rollback re-puts the older documents without the tree.

CREATE TABLE s3_publications (
    id           INTEGER PRIMARY KEY,
    dest         TEXT NOT NULL,              -- s3://BUCKET/PREFIX (never credentials)
    tree_id      INTEGER,                    -- the local tree it was uploaded from
    tree_name    TEXT NOT NULL,
    snapshot_id  INTEGER NOT NULL,
    mode         TEXT NOT NULL,
    signer       TEXT,
    action       TEXT NOT NULL,              -- publish | rollback
    files        INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    published_at INTEGER NOT NULL,
    published_by TEXT NOT NULL,
    retired_at   INTEGER
);
CREATE INDEX s3_publications_dest ON s3_publications(dest, id);

CREATE TABLE s3_documents (
    publication_id INTEGER NOT NULL REFERENCES s3_publications(id) ON DELETE CASCADE,
    key            TEXT NOT NULL,            -- relative to PREFIX, e.g. streams/v1/index.json
    is_index       INTEGER NOT NULL,
    body           BLOB NOT NULL,
    PRIMARY KEY (publication_id, key)
) WITHOUT ROWID;

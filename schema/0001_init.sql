-- streamvault catalogue, version 1.
-- Invariant 1: a row in `blobs` exists only once its file is durable at blobs/ab/<blake3>.
-- Invariant 2: a snapshot and all its rows are inserted in one transaction and never updated.

CREATE TABLE blobs (
    blake3      TEXT PRIMARY KEY,           -- lowercase hex, the file name under blobs/
    size        INTEGER NOT NULL,
    md5         TEXT,                       -- upstream checksums known for this content
    sha256      TEXT,
    sha512      TEXT,
    created_at  INTEGER NOT NULL            -- unix seconds
);
CREATE INDEX blobs_sha256 ON blobs(sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX blobs_sha512 ON blobs(sha512) WHERE sha512 IS NOT NULL;
CREATE INDEX blobs_md5 ON blobs(md5, size) WHERE md5 IS NOT NULL;

CREATE TABLE sources (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    url          TEXT NOT NULL,
    path         TEXT,                      -- --path: start document relative to url
    keyring      TEXT,                      -- absolute path of the keyring file
    max_versions INTEGER,
    keep         INTEGER NOT NULL DEFAULT 0,
    no_verify    INTEGER NOT NULL DEFAULT 0,
    mirrors      TEXT NOT NULL DEFAULT '[]', -- JSON array of URLs
    filters      TEXT NOT NULL DEFAULT '[]', -- JSON array of filter expressions
    created_at   INTEGER NOT NULL
);

CREATE TABLE snapshots (
    id            INTEGER PRIMARY KEY,
    source_id     INTEGER REFERENCES sources(id) ON DELETE SET NULL,
    source_name   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    url           TEXT NOT NULL,            -- base URL the run used
    start_path    TEXT NOT NULL,
    filters       TEXT NOT NULL,            -- JSON array
    max_versions  INTEGER,
    keep          INTEGER NOT NULL,
    signed        INTEGER NOT NULL,         -- the documents were clearsigned
    verified      INTEGER NOT NULL,         -- and their signatures were checked
    signer        TEXT,                     -- fingerprint(s) of the signing key(s)
    products      INTEGER NOT NULL,
    versions      INTEGER NOT NULL,
    items         INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,         -- total size of the items
    fetched_bytes INTEGER NOT NULL,         -- bytes downloaded by the run
    duration_ms   INTEGER NOT NULL,
    digest        TEXT NOT NULL             -- BLAKE3 over documents + items: "unchanged" test
);
CREATE INDEX snapshots_source ON snapshots(source_name, id);

CREATE TABLE snapshot_documents (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    ord         INTEGER NOT NULL,           -- order fetched (start document first)
    path        TEXT NOT NULL,              -- relative to the mirror root
    kind        TEXT NOT NULL,              -- index | products | other
    content_id  TEXT,
    blob        TEXT NOT NULL REFERENCES blobs(blake3),
    PRIMARY KEY (snapshot_id, path)
) WITHOUT ROWID;
CREATE INDEX snapshot_documents_blob ON snapshot_documents(blob);

CREATE TABLE snapshot_items (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    content_id  TEXT NOT NULL,
    product     TEXT NOT NULL,
    version     TEXT NOT NULL,
    item        TEXT NOT NULL,
    path        TEXT,                       -- NULL for metadata-only items
    size        INTEGER,
    md5         TEXT,
    sha256      TEXT,
    sha512      TEXT,
    blob        TEXT REFERENCES blobs(blake3),
    PRIMARY KEY (snapshot_id, content_id, product, version, item)
) WITHOUT ROWID;
CREATE INDEX snapshot_items_blob ON snapshot_items(blob);

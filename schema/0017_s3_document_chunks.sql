-- streamvault catalogue: big S3 documents kept in chunks (helper-reserved 0017).
-- A document an S3 publication wrote that is larger than one chunk (256 KiB) keeps its bytes here,
-- in order (seq 0, 1, …), and an empty body in s3_documents: a publish records (and a rollback
-- reads back) a 20 MB products document a chunk at a time, never whole and copied again by
-- SQLite (src/catalog/s3.rs).

CREATE TABLE s3_document_chunks (
    publication_id INTEGER NOT NULL REFERENCES s3_publications(id) ON DELETE CASCADE,
    key            TEXT NOT NULL,            -- as in s3_documents
    seq            INTEGER NOT NULL,
    bytes          BLOB NOT NULL,
    PRIMARY KEY (publication_id, key, seq)
) WITHOUT ROWID;

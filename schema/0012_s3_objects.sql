-- streamvault catalogue: what each S3 publication lists (helper-reserved 0012).
-- One row per object (item or metadata document) an `s3_publications` row serves, relative to
-- its DEST's prefix: `gc s3://…` keeps every object a kept publication lists and deletes the
-- rest; `verify s3://…` checks each one (size; with --deep the content: an item against its
-- blob's BLAKE3, a document against its bytes in s3_documents) and `--repair` re-uploads it
-- from the store. A rollback row lists what its target listed.

CREATE TABLE s3_objects (
    publication_id INTEGER NOT NULL REFERENCES s3_publications(id) ON DELETE CASCADE,
    key            TEXT NOT NULL,            -- relative to PREFIX
    size           INTEGER NOT NULL,
    blob           TEXT,                     -- BLAKE3 of an item's blob; NULL for a document
    PRIMARY KEY (publication_id, key)
) WITHOUT ROWID;

-- Publications whose objects `gc s3://…` collected (recorded before it deletes them): never
-- kept, checked or rolled back to again.
CREATE TABLE s3_collected (
    publication_id INTEGER PRIMARY KEY REFERENCES s3_publications(id) ON DELETE CASCADE,
    collected_at   INTEGER NOT NULL
);

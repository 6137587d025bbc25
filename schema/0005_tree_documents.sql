-- streamvault catalogue: the metadata documents of each tree (helper-reserved number 0005).
-- `verify` checks every file of every tree: items against their blobs (snapshot_items), grace
-- items against the snapshots of tree_grace, and documents against this table: a filtered tree's
-- documents are generated at publish time and stored nowhere else. A verbatim tree's rows repeat
-- its snapshot's documents (snapshot_documents); trees built before this table existed have no
-- rows (verify then uses the snapshot's documents, or, for a filtered tree, skips `streams/`).

CREATE TABLE tree_documents (
    tree_id INTEGER NOT NULL REFERENCES trees(id) ON DELETE CASCADE,
    path    TEXT NOT NULL,
    blake3  TEXT NOT NULL,               -- of the file as written (a blob's name for verbatim)
    size    INTEGER NOT NULL,
    PRIMARY KEY (tree_id, path)
) WITHOUT ROWID;

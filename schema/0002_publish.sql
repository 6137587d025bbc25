-- streamvault catalogue, version 2: materialised trees and publications.
-- Invariant 3: a publication row names a tree that is complete under trees/<name> before the
-- published link is flipped to it. Invariant 4: gc deletes rows first (committed), then files.

CREATE TABLE trees (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,        -- directory name under trees/
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id),
    mode        TEXT NOT NULL,               -- verbatim | filtered
    signer      TEXT,                        -- fingerprint of the key that re-signed (filtered)
    files       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX trees_snapshot ON trees(snapshot_id);

-- One row per flip of a published link (publish, rollback, adopt).
CREATE TABLE publications (
    id           INTEGER PRIMARY KEY,
    dest         TEXT NOT NULL,              -- absolute path of the published symlink
    tree_id      INTEGER NOT NULL REFERENCES trees(id),
    snapshot_id  INTEGER NOT NULL REFERENCES snapshots(id),
    action       TEXT NOT NULL,              -- publish | rollback | adopt
    published_at INTEGER NOT NULL,
    published_by TEXT NOT NULL,              -- user@host, pid
    retired_at   INTEGER                     -- set when a later flip replaced it on dest
);
CREATE INDEX publications_dest ON publications(dest, id);
CREATE INDEX publications_tree ON publications(tree_id);

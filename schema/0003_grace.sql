-- streamvault catalogue, version 3: grace items of published trees.
-- A reader that fetched the metadata of the tree a link pointed at just before a flip must still
-- find every item that metadata lists after the flip (spec/anchors.md §4.6). So before a link flips
-- from tree A to tree B, B receives hardlinks of A's items that B lacks ("grace items", additive,
-- never replacing a file), and A those of B (so that a rollback is one rename). A row here says
-- that tree `tree_id` holds, besides its own snapshot's items, every item path of `snapshot_id`;
-- `complete` = 0 while the links are being added (files may exist without complete = 1; verify
-- counts them as grace files of that snapshot, gc removes them with the tree).

CREATE TABLE tree_grace (
    tree_id     INTEGER NOT NULL REFERENCES trees(id) ON DELETE CASCADE,
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id),
    complete    INTEGER NOT NULL DEFAULT 0,
    files       INTEGER NOT NULL DEFAULT 0,  -- links added
    PRIMARY KEY (tree_id, snapshot_id)
) WITHOUT ROWID;
CREATE INDEX tree_grace_snapshot ON tree_grace(snapshot_id);

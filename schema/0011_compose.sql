-- streamvault catalogue: composed publications (issue 12). A tree built from several snapshots
-- (`publish A B … DEST`) records every input here, in the order given; position 0 is also
-- `trees.snapshot_id`. A tree with no rows here is built from its one snapshot. The inputs after
-- the first are also recorded as complete `tree_grace` rows of the tree, so that everything that
-- asks "which snapshots' items does this tree hold" (grace bridging, verify) sees them; gc keeps
-- every input of a kept tree and never drops those rows while the tree is kept (src/gc/plan.rs).
CREATE TABLE tree_inputs (
    tree_id     INTEGER NOT NULL REFERENCES trees(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id),
    PRIMARY KEY (tree_id, position)
) WITHOUT ROWID;
CREATE INDEX tree_inputs_snapshot ON tree_inputs(snapshot_id);

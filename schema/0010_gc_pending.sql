-- streamvault catalogue: grace links whose rows gc has deleted but which it may not have unlinked
-- yet. gc writes them here in the transaction that deletes their `tree_grace` rows and clears
-- them after the unlinks, so a kill -9 between the two leaves a record, not a stray file nobody
-- knows about: the next gc unlinks them first (unless a tree expects the path again), and
-- verify counts them as gc's leftovers, not as files written by another tool.
-- (Numbered 0010 because 0007-0009 were reserved for work in progress; the list order in
-- src/catalog.rs is what counts.)
CREATE TABLE gc_pending_unlink (
    tree TEXT NOT NULL,   -- trees/<name>
    path TEXT NOT NULL,   -- relative path inside the tree (checked with streams::check_path)
    PRIMARY KEY (tree, path)
) WITHOUT ROWID;

-- streamvault catalogue: where the automatic gc's orphan walk goes next.
-- The gc that runs by itself after every sync and mirror run (src/gc.rs, `auto_collect`) walks
-- one sixteenth of `blobs/` for files without a row: the prefix directories whose name starts
-- with the hex digit `orphan_slice`, then the next digit on its next run (src/catalog/ops.rs).
-- `gc` walks them all. Orphans come only from killed runs; the cost of the walk after every run
-- is bounded by 1/16 of the store instead of all of it.

CREATE TABLE gc_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    orphan_slice INTEGER NOT NULL CHECK (orphan_slice BETWEEN 0 AND 15)
);
INSERT INTO gc_state (id, orphan_slice) VALUES (1, 0);

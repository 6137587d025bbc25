-- streamvault catalogue: an index that covers gc's scan of the blobs. gc's plan reads every
-- blob's name, age and size in name order (the order of the `snapshot_items_blob` lookups it
-- makes for each one); with this index it reads no blob row in random order, which at 10^6
-- blobs was most of the plan's time (2.5M random page reads through a 16 MiB page cache).
CREATE INDEX blobs_gc ON blobs(blake3, created_at, size);

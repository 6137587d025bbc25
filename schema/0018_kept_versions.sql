-- streamvault catalogue: what `--keep` carried (helper-reserved 0018).
-- A version a snapshot holds only because `--keep` kept it after upstream stopped listing it has
-- item rows but no document of the snapshot describes it. The sync that carries it records here
-- the product object (without `versions`) and the version object of the upstream document that
-- last described it (taken from the previous snapshot: its row here, else its document), so
-- filtered metadata serves the version as it was synced — `ftype`, `src_*`, the product's
-- `label`/`os`/… that MAAS requires — even after retention dropped that document's snapshot
-- (src/catalog/kept.rs, src/sync/kept.rs, src/publish/metadata.rs).

CREATE TABLE snapshot_kept_versions (
    snapshot_id  INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    content_id   TEXT NOT NULL,
    product      TEXT NOT NULL,
    version      TEXT NOT NULL,
    product_json TEXT NOT NULL,              -- the product object, `versions` removed
    version_json TEXT NOT NULL,              -- the version object
    PRIMARY KEY (snapshot_id, content_id, product, version)
) WITHOUT ROWID;

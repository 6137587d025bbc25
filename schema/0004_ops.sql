-- streamvault catalogue, version 4: unattended operation.
-- `settings`: store-wide settings (`streamvault config set KEY VALUE`): grace, keep-last, auto-gc,
-- reserve, metrics-file. A missing key means the built-in default.
-- `sources.implicit`: the source of a `mirror` OUTPUT_DIR (retention keeps only what that
-- directory serves, plus the grace period). `sources.publish_*`: auto-publish after a sync that
-- made a new snapshot. Credentials never live here (see `credentials` beside catalog.db).
-- `runs`: one row per sync/mirror attempt, for `status` and the metrics file.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

ALTER TABLE sources ADD COLUMN implicit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN publish_dest TEXT;
ALTER TABLE sources ADD COLUMN publish_metadata TEXT;
ALTER TABLE sources ADD COLUMN publish_sign_key TEXT;
UPDATE sources SET implicit = 1 WHERE name GLOB 'mirror-[0-9a-f]*' AND length(name) = 23;

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    source_name   TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    result        TEXT NOT NULL,            -- running | snapshot | unchanged | failed
    error         TEXT,                     -- one line, credentials removed
    fetched_bytes INTEGER NOT NULL DEFAULT 0,
    items         INTEGER NOT NULL DEFAULT 0,
    snapshot_id   INTEGER
);
CREATE INDEX runs_source ON runs(source_name, id);

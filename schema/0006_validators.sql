-- streamvault catalogue: HTTP validators of metadata documents (conditional requests).
-- A row says: the document at `url` (password redacted) last came with these validators and its
-- bytes are blob `blob` (verified, parsed and committed by a sync). A later sync sends them
-- (If-None-Match, else If-Modified-Since) and on 304 reuses the blob; a row whose blob is gone
-- is ignored. No foreign key: gc may remove the blob, which only makes the next request
-- unconditional.
CREATE TABLE document_validators (
    url           TEXT PRIMARY KEY,
    etag          TEXT,
    last_modified TEXT,
    blob          TEXT NOT NULL,
    saved_at      INTEGER NOT NULL
) WITHOUT ROWID;

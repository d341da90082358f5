-- Artifacts are immutable: writing a name again adds a version beside the earlier
-- ones (a new row and a new file) instead of replacing it. SQLite cannot drop the
-- UNIQUE (request_id, name) of V1, so the table is rebuilt; existing rows are version 1.
CREATE TABLE artifacts_v4 (
    id         TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (request_id, name, version)
);
INSERT INTO artifacts_v4 (id, request_id, session_id, name, version, media_type, size, sha256, created_at)
    SELECT id, request_id, session_id, name, 1, media_type, size, sha256, created_at FROM artifacts;
DROP TABLE artifacts;
ALTER TABLE artifacts_v4 RENAME TO artifacts;

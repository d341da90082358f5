-- The last full integrity check (`PRAGMA quick_check` reads the whole file, so
-- the worker runs it periodically and views read the result).
CREATE TABLE integrity_checks (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    ok         INTEGER NOT NULL,
    detail     TEXT NOT NULL,
    checked_at INTEGER NOT NULL,
    took_ms    INTEGER NOT NULL
);

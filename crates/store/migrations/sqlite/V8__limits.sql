-- Concurrency limits (issue 12): a tool call holds a unit of each key it needs
-- (`resource:NAME`, `tool:NAME`) while it runs. A hold counts only while its tree's
-- root is running: a tree that stops running holds nothing, whatever rows remain;
-- a claim clears its root's old rows.
CREATE TABLE holds (
    key TEXT NOT NULL,
    call_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    request_id TEXT NOT NULL,
    root_id TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    held_until INTEGER NOT NULL,
    PRIMARY KEY (key, call_id)
);
CREATE INDEX holds_root ON holds (root_id);
CREATE INDEX holds_call ON holds (call_id);
CREATE INDEX holds_request ON holds (request_id);

-- A tree parked on the queue until each key has room (one row per key). The claim
-- skips a queued root while one of its keys is full.
CREATE TABLE waits (
    root_id TEXT NOT NULL,
    key TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    call_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (root_id, key)
);

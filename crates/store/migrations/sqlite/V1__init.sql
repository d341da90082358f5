-- The durable records. Times are UTC milliseconds since the Unix epoch.
-- The requests table is the queue: runnable = status 'queued'.

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    created_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL
);

CREATE TABLE requests (
    id               TEXT PRIMARY KEY,
    session_id       TEXT NOT NULL,
    agent            TEXT NOT NULL,
    parent_id        TEXT,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    current_agent    TEXT,
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    trace_id         TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    last_activity_at INTEGER NOT NULL,
    finished_at      INTEGER,
    steps            INTEGER NOT NULL DEFAULT 0,
    worker_id        TEXT,
    -- Admission order: FIFO within a session and across sessions.
    queue_seq        INTEGER NOT NULL
);
CREATE INDEX requests_status ON requests (status, queue_seq);
CREATE INDEX requests_session ON requests (session_id, queue_seq);
CREATE INDEX requests_parent ON requests (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX requests_created ON requests (created_at);
CREATE INDEX requests_finished ON requests (finished_at) WHERE finished_at IS NOT NULL;

-- A request's journal: one row per model turn or tool call.
CREATE TABLE steps (
    request_id  TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    agent       TEXT NOT NULL,
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (request_id, idx)
) WITHOUT ROWID;

CREATE TABLE approvals (
    id               TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    agent            TEXT NOT NULL,
    step_idx         INTEGER NOT NULL,
    call_id          TEXT NOT NULL,
    tool             TEXT NOT NULL,
    arguments        TEXT NOT NULL,
    status           TEXT NOT NULL,
    decided_by       TEXT,
    message          TEXT,
    edited_arguments TEXT,
    created_at       INTEGER NOT NULL,
    decided_at       INTEGER,
    expires_at       INTEGER NOT NULL,
    reason           TEXT
);
CREATE INDEX approvals_status ON approvals (status, expires_at);
CREATE INDEX approvals_request ON approvals (request_id);

-- One global, gap-free, commit-ordered sequence: the subscription cursor.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    request_id TEXT,
    session_id TEXT,
    payload    TEXT NOT NULL
);
CREATE INDEX events_request ON events (request_id, seq) WHERE request_id IS NOT NULL;

CREATE TABLE artifacts (
    id         TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (request_id, name)
);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stopped_at   INTEGER
);

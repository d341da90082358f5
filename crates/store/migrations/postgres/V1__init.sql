-- The durable records on PostgreSQL: the same records as SQLite's V1–V4
-- (migrations/sqlite), in one file since this backend starts with all of them.
-- Times are UTC milliseconds since the Unix epoch; integers are BIGINT throughout.
-- Applied by refinery at open, under an advisory lock (see src/pg/migrate.rs).

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    created_at       BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL
);
CREATE INDEX sessions_activity ON sessions (last_activity_at);

-- Admission order. A value taken by a transaction that commits later can become
-- visible after a higher one: the order is FIFO among committed admissions, which
-- is all the claim needs (it only ever looks at committed rows).
CREATE SEQUENCE queue_seq;

CREATE TABLE requests (
    id               TEXT PRIMARY KEY,
    session_id       TEXT NOT NULL,
    agent            TEXT NOT NULL,
    parent_id        TEXT,
    status           TEXT NOT NULL,
    attempt          BIGINT NOT NULL DEFAULT 0,
    current_agent    TEXT,
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    trace_id         TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    last_activity_at BIGINT NOT NULL,
    finished_at      BIGINT,
    steps            BIGINT NOT NULL DEFAULT 0,
    worker_id        TEXT,
    queue_seq        BIGINT NOT NULL DEFAULT nextval('queue_seq'),
    -- The lease of a running root: the token its claim issued, and until when the
    -- claim holds without renewal. Every step commit of the tree is conditional on
    -- the token, so a worker that lost the lease commits nothing.
    lease_token      TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX requests_status ON requests (status, queue_seq);
CREATE INDEX requests_session ON requests (session_id, queue_seq);
CREATE INDEX requests_parent ON requests (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX requests_created ON requests (created_at);
CREATE INDEX requests_finished ON requests (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX requests_queue_seq ON requests (queue_seq);
-- One active request per session, whatever the number of workers.
CREATE UNIQUE INDEX requests_one_active_per_session ON requests (session_id)
    WHERE parent_id IS NULL AND status IN ('running', 'waiting_approval');

-- A request's journal: one row per model turn or tool call.
CREATE TABLE steps (
    request_id  TEXT NOT NULL,
    idx         BIGINT NOT NULL,
    agent       TEXT NOT NULL,
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (request_id, idx)
);

CREATE TABLE approvals (
    id               TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    agent            TEXT NOT NULL,
    step_idx         BIGINT NOT NULL,
    call_id          TEXT NOT NULL,
    tool             TEXT NOT NULL,
    arguments        TEXT NOT NULL,
    status           TEXT NOT NULL,
    decided_by       TEXT,
    message          TEXT,
    edited_arguments TEXT,
    created_at       BIGINT NOT NULL,
    decided_at       BIGINT,
    expires_at       BIGINT NOT NULL,
    reason           TEXT
);
CREATE INDEX approvals_status ON approvals (status, expires_at);
CREATE INDEX approvals_request ON approvals (request_id);
CREATE INDEX approvals_created ON approvals (created_at, id);

-- The event log. `seq` is (top-level transaction id << 16) + the event's index in
-- its transaction, so seq order is transaction-id order, and a reader returns only
-- events of transactions older than its snapshot's xmin (all finished): an event
-- that commits later always has a higher seq than every event already returned.
CREATE TABLE events (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    request_id TEXT,
    session_id TEXT,
    payload    TEXT NOT NULL
);
CREATE INDEX events_request ON events (request_id, seq) WHERE request_id IS NOT NULL;
CREATE INDEX events_session ON events (session_id, seq) WHERE session_id IS NOT NULL;

-- Artifact rows, committed with the step that produced them; immutable versions.
CREATE TABLE artifacts (
    id         TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    media_type TEXT NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (request_id, name, version)
);
CREATE INDEX artifacts_sha256 ON artifacts (sha256);
-- Version numbers taken when the contents were stored (before the step commits):
-- a version whose step never committed leaves its number unused, as on SQLite. The
-- contents it names stay referenced (and kept) until its request is pruned.
CREATE TABLE artifact_versions (
    request_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    PRIMARY KEY (request_id, name, version)
);
CREATE INDEX artifact_versions_sha256 ON artifact_versions (sha256);
-- Contents, addressed by their SHA-256: every worker and view reads them from the
-- database, and one backup holds everything.
CREATE TABLE artifact_blobs (
    sha256 TEXT PRIMARY KEY,
    bytes  BYTEA NOT NULL
);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    pid          BIGINT NOT NULL,
    host         TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    stopped_at   BIGINT
);

-- Who holds the worker lock (a session advisory lock), for messages.
CREATE TABLE worker_lock (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    worker_id TEXT NOT NULL,
    pid       BIGINT NOT NULL,
    host      TEXT NOT NULL,
    since     TEXT NOT NULL
);

-- The last full integrity check (every table read through).
CREATE TABLE integrity_checks (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    ok         BOOLEAN NOT NULL,
    detail     TEXT NOT NULL,
    checked_at BIGINT NOT NULL,
    took_ms    BIGINT NOT NULL
);

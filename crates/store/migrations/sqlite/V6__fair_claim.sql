-- Fair claiming across sessions, and request priority (see `requests::claim`).

-- Higher is claimed first; aging raises a waiting request one level per
-- `PRIORITY_AGING_MS`. Bounded by admission (-100..=100).
ALTER TABLE requests ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;

-- When the session's last request was claimed, and a global claim counter: a
-- session served less recently goes first (round robin across sessions).
ALTER TABLE sessions ADD COLUMN last_claimed_at INTEGER;
ALTER TABLE sessions ADD COLUMN claim_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sessions_claim_seq ON sessions (claim_seq);

-- The claim walks the sessions with queued root requests (one seek each) and
-- takes each one's oldest; a session with an active root is skipped.
CREATE INDEX requests_queued_roots ON requests (session_id, queue_seq)
    WHERE status = 'queued' AND parent_id IS NULL;
CREATE INDEX requests_active_roots ON requests (session_id)
    WHERE parent_id IS NULL AND status IN ('running', 'waiting_approval');

-- Indexes behind the operator views (`agent-harness runtime …`), which must answer
-- in well under 100 ms on 100,000 requests and 1,000,000 events.

-- Newest requests first (overview, `requests list|tail`), and the next admission
-- order (`MAX(queue_seq)` at admission) without a scan.
CREATE INDEX requests_queue_seq ON requests (queue_seq);

-- Sessions by recent activity (`sessions list`).
CREATE INDEX sessions_activity ON sessions (last_activity_at);

-- Newest approvals first when no status narrows the list (`approvals list`).
CREATE INDEX approvals_created ON approvals (created_at, id);

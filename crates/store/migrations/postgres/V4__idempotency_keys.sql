-- A client's Idempotency-Key on an admission (HTTP header, library `Admit`): one key
-- admits at most one request per session. Unique, so the store itself refuses a
-- second row even if two admissions raced past the lookup.
ALTER TABLE requests ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX requests_idempotency_key ON requests (session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

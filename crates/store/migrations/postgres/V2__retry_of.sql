-- A retried request names the request it retries; the original finds its retries
-- through the index.
ALTER TABLE requests ADD COLUMN retry_of TEXT;
CREATE INDEX requests_retry_of ON requests (retry_of) WHERE retry_of IS NOT NULL;

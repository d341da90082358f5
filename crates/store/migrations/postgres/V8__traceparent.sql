-- The W3C `traceparent` a request was admitted with (version 00 form), so its runs'
-- spans can name the caller's span as their parent. NULL for requests admitted
-- without one, retries, delegated children and every request admitted before.
ALTER TABLE requests ADD COLUMN traceparent TEXT;

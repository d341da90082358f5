-- The queue's depth (admitted root requests not started yet: what
-- `queue_capacity` bounds), kept by triggers so that admission reads one row
-- instead of counting the queue. The count read every queued row (~1 ms per
-- 5,000 queued, inside the writer) for every admission and every refusal.
-- The triggers keep it exact for every insert, status move and delete of a
-- request, from whichever process writes.
CREATE TABLE queue_depth (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    waiting INTEGER NOT NULL
);
INSERT INTO queue_depth (id, waiting)
    SELECT 1, COUNT(*) FROM requests
    WHERE status = 'queued' AND parent_id IS NULL AND started_at IS NULL;

CREATE TRIGGER queue_depth_insert AFTER INSERT ON requests
    WHEN NEW.status = 'queued' AND NEW.parent_id IS NULL AND NEW.started_at IS NULL
BEGIN
    UPDATE queue_depth SET waiting = waiting + 1 WHERE id = 1;
END;

CREATE TRIGGER queue_depth_delete AFTER DELETE ON requests
    WHEN OLD.status = 'queued' AND OLD.parent_id IS NULL AND OLD.started_at IS NULL
BEGIN
    UPDATE queue_depth SET waiting = waiting - 1 WHERE id = 1;
END;

CREATE TRIGGER queue_depth_update AFTER UPDATE OF status, parent_id, started_at ON requests
    WHEN (OLD.status = 'queued' AND OLD.parent_id IS NULL AND OLD.started_at IS NULL)
      <> (NEW.status = 'queued' AND NEW.parent_id IS NULL AND NEW.started_at IS NULL)
BEGIN
    UPDATE queue_depth SET waiting = waiting
        + (NEW.status = 'queued' AND NEW.parent_id IS NULL AND NEW.started_at IS NULL)
        - (OLD.status = 'queued' AND OLD.parent_id IS NULL AND OLD.started_at IS NULL)
    WHERE id = 1;
END;

-- Raised inside a step's transaction when the step may not commit (the request is no
-- longer running, its root's lease changed hands, a step row to update is missing).
-- The refusal then aborts the transaction on the server, so a step's COMMIT can ride
-- in the same pipeline as its statements: one round trip per step. The store asks
-- again, the slow way, to say why (see `pg/steps.rs`).
CREATE FUNCTION step_fence(ok boolean, what text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  IF ok IS NOT TRUE THEN
    RAISE EXCEPTION 'step refused: %', what USING ERRCODE = 'AH001';
  END IF;
  RETURN true;
END
$$;

-- 012_correlate_wait.sql — correlation waits at most 200 ms for its lock.
--
-- _correlate (003, 010) takes a transaction advisory lock so that one batch
-- at a time correlates. A batch holding it may then wait, in _merge, for an
-- incident row that another lane's batch locked earlier in its own
-- transaction (attaching alerts to it); if that batch then asks for the
-- advisory lock, the two wait for each other. PostgreSQL breaks such a cycle
-- only after deadlock_timeout (1 s by default, settable by superusers only),
-- and test_cmdb_storm's logs showed one or two of those a run: a CMDB storm
-- stalled a second each time. Here the wait for the advisory lock is bounded
-- instead: past 200 ms the batch fails with lock_not_available (55P03), rolls
-- back (freeing its rows for the holder) and the daemon retries it, as after
-- any error. A holder that needs none of the waiter's rows commits well
-- within 200 ms, so an ordinary wait still succeeds.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

ALTER FUNCTION triaged._correlate(bigint[], timestamptz, text, interval, integer)
  RENAME TO _correlate_locked;

CREATE FUNCTION triaged._correlate(p_ids bigint[], p_now timestamptz, p_actor text,
                                   p_window interval, p_many integer)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_timeout text := current_setting('lock_timeout');
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  PERFORM set_config('lock_timeout', '200ms', true);
  PERFORM pg_advisory_xact_lock(1953655137);  -- (_correlate_locked's key: taken again at once)
  PERFORM set_config('lock_timeout', v_timeout, true);
  RETURN QUERY SELECT * FROM triaged._correlate_locked(p_ids, p_now, p_actor, p_window, p_many);
END $$;

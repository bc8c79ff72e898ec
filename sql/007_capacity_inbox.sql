-- 007_capacity_inbox.sql — the fast capacity ingest path (issue 8's 200,000
-- samples/s target).
--
-- Measured on the 2-core test machine (README, "Capacity" benchmarks): a row
-- into a table with a btree key costs about three times a row into a table
-- without one, and the old path also parsed jsonb and bound every sample with
-- an index probe. So the batch statement now only appends typed arrays
-- (binary parameters: no text or JSON to parse; CI ids bound by the daemon
-- from its in-memory CMDB graph) to capacity_inbox, a logged table with
-- no index, in the batch's transaction (the Kafka offsets commit with it,
-- exactly as before). triaged.capacity_fold(), run by the daemon on its
-- capacity connection after every batch that carried samples, moves the
-- inbox into capacity_sample set-based: one INSERT ... ON CONFLICT DO
-- NOTHING (the primary key still makes a sample sent twice a no-op),
-- marking the hours it filled for the rollup. A sample is in
-- capacity_sample, and counted as stored or duplicate, one fold after its
-- batch committed (milliseconds while the daemon runs; at the latest when
-- it runs again after a stop).
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

CREATE TABLE triaged.capacity_inbox (
  ci_id          bigint NOT NULL,
  metric         text NOT NULL,
  ts             timestamptz NOT NULL,
  value          double precision NOT NULL,
  capacity_limit double precision,
  -- the checks of capacity_sample: a row the fold could not store must fail
  -- its batch, not every fold after it
  CONSTRAINT capacity_inbox_metric_check CHECK (metric <> ''),
  CONSTRAINT capacity_inbox_value_check
    CHECK (value NOT IN ('NaN', 'Infinity', '-Infinity')),
  CONSTRAINT capacity_inbox_limit_check CHECK (capacity_limit IS NULL
    OR (capacity_limit > 0 AND capacity_limit NOT IN ('NaN', 'Infinity')))
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 100000);
COMMENT ON TABLE triaged.capacity_inbox IS
  'Capacity samples committed by their batch and not yet moved into '
  'capacity_sample by triaged.capacity_fold() (no index: appends only).';

-- A deleted CI's samples go from the inbox too (005's trigger does the rest).
CREATE FUNCTION triaged.capacity_inbox_delete_ci() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM triaged.capacity_inbox WHERE ci_id IN (SELECT g.id FROM gone g);
  RETURN NULL;
END $$;
CREATE TRIGGER ci_capacity_inbox_delete AFTER DELETE ON triaged.ci
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.capacity_inbox_delete_ci();

-- The firing capacity_limit alerts, found without a scan of all alerts.
CREATE INDEX alert_capacity_firing_idx ON triaged.alert (resource)
  WHERE source = 'capacity' AND check_name = 'capacity_limit' AND status = 'firing';

-- One batch's samples as parallel arrays (one element per sample, the same
-- length each): p_ci_id the CI the daemon bound (NULL: not found in its
-- graph; then p_ci, the sample's ci, is bound here like an alert's resource
-- by name, alias or address, and p_ci may be NULL where p_ci_id is set),
-- p_metric, p_ts, p_value, p_limit (NULL: none). Appends the bound samples
-- to capacity_inbox. Returns one 'capacity.stats' row {"queued",
-- "unknown_ci", "unknown_names"} and the 'capacity.limit' rows of
-- ingest_capacity() (newest sample per series at or over its limit, or back
-- under it while its capacity_limit alert fires).
CREATE FUNCTION triaged.ingest_capacity_arrays(p_ci_id bigint[], p_ci text[], p_metric text[],
                                               p_ts timestamptz[], p_value double precision[],
                                               p_limit double precision[], p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
AS $$
DECLARE
  v_n      integer := coalesce(cardinality(p_metric), 0);
  v_ids    bigint[] := p_ci_id;
  v_queued integer;
  v_unknown integer := 0;
BEGIN
  IF v_n = 0 THEN
    RETURN;
  END IF;
  IF coalesce(cardinality(p_ci_id), 0) <> v_n OR coalesce(cardinality(p_ci), 0) <> v_n
     OR coalesce(cardinality(p_ts), 0) <> v_n OR coalesce(cardinality(p_value), 0) <> v_n
     OR coalesce(cardinality(p_limit), 0) <> v_n THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'triaged.ingest_capacity_arrays: the arrays differ in length';
  END IF;

  -- the samples the daemon could not bind: the same probes as
  -- ingest_capacity() (its graph may lag a CMDB change by a moment)
  IF array_position(v_ids, NULL) IS NOT NULL THEN
    SELECT array_agg(coalesce(u.id,
                       (SELECT c.id FROM triaged.ci c WHERE c.name = p_ci[u.i]),
                       (SELECT c.id FROM triaged.ci c WHERE c.aliases @> ARRAY[p_ci[u.i]]
                         ORDER BY c.id LIMIT 1),
                       (SELECT c.id FROM triaged.ci c
                         WHERE c.addresses @> ARRAY[triaged._as_inet(p_ci[u.i])]
                         ORDER BY c.id LIMIT 1)) ORDER BY u.i)
      INTO v_ids
      FROM unnest(p_ci_id) WITH ORDINALITY AS u(id, i);
    SELECT count(*) INTO v_unknown FROM unnest(v_ids) AS u(id) WHERE u.id IS NULL;
  END IF;

  INSERT INTO triaged.capacity_inbox (ci_id, metric, ts, value, capacity_limit)
  SELECT u.ci_id, u.metric, u.ts, u.value, u.lim
    FROM unnest(v_ids, p_metric, p_ts, p_value, p_limit) AS u(ci_id, metric, ts, value, lim)
   WHERE u.ci_id IS NOT NULL;
  GET DIAGNOSTICS v_queued = ROW_COUNT;

  RETURN QUERY
  SELECT 'capacity.stats', NULL::text,
         json_build_object('queued', v_queued, 'unknown_ci', v_unknown,
                           'unknown_names',
                           CASE WHEN v_unknown = 0 THEN '[]'::json
                                ELSE (SELECT coalesce(json_agg(DISTINCT x.ci), '[]')
                                        FROM (SELECT u.ci FROM unnest(v_ids, p_ci) AS u(id, ci)
                                               WHERE u.id IS NULL LIMIT 5) x) END);

  -- limits: only when a sample of the batch is at or over its limit, or a
  -- capacity_limit alert fires (the common case costs one pass over the
  -- values and a look at a partial index)
  IF NOT EXISTS (SELECT 1 FROM unnest(p_value, p_limit) AS u(v, l) WHERE u.v >= u.l)
     AND NOT EXISTS (SELECT 1 FROM triaged.alert a
                      WHERE a.source = 'capacity' AND a.check_name = 'capacity_limit'
                        AND a.status = 'firing') THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH x AS (
    SELECT u.ci_id, u.metric, u.ts, u.value, u.lim
      FROM unnest(v_ids, p_metric, p_ts, p_value, p_limit) AS u(ci_id, metric, ts, value, lim)
     WHERE u.ci_id IS NOT NULL AND u.lim IS NOT NULL),
  firing AS (
    SELECT DISTINCT c.id AS ci_id, a.labels->>'metric' AS metric
      FROM triaged.alert a JOIN triaged.ci c ON c.name = a.resource
     WHERE a.source = 'capacity' AND a.check_name = 'capacity_limit' AND a.status = 'firing'),
  cand AS (
    SELECT x.ci_id, x.metric FROM x WHERE x.value >= x.lim
    UNION
    SELECT f.ci_id, f.metric FROM firing f),
  newest AS (
    SELECT DISTINCT ON (x.ci_id, x.metric) x.ci_id, x.metric, x.value, x.lim, x.ts
      FROM x JOIN cand ON cand.ci_id = x.ci_id AND cand.metric = x.metric
     ORDER BY x.ci_id, x.metric, x.ts DESC),
  named AS (
    SELECT n.*, (SELECT c.name FROM triaged.ci c WHERE c.id = n.ci_id) AS ci_name
      FROM newest n)
  SELECT 'capacity.limit', n.ci_name,
         json_build_object('ci', n.ci_name, 'ci_id', n.ci_id, 'metric', n.metric,
                           'value', n.value, 'limit', n.lim, 'ts', n.ts,
                           'status', CASE WHEN n.value >= n.lim THEN 'firing' ELSE 'resolved' END)
    FROM named n
   WHERE n.value >= n.lim
      OR EXISTS (SELECT 1 FROM triaged.alert a
                  WHERE a.resource = n.ci_name AND a.source = 'capacity'
                    AND a.check_name = 'capacity_limit' AND a.status = 'firing'
                    AND a.labels->>'metric' = n.metric);
END $$;

-- The batch statement with samples as arrays: triaged.ingest() (alerts and
-- the offsets compare-and-set), then, unless a partition was fenced,
-- ingest_capacity_arrays(); one statement, one transaction.
CREATE FUNCTION triaged.ingest_all_arrays(p_batch jsonb, p_ci_id bigint[], p_ci text[],
                                          p_metric text[], p_ts timestamptz[],
                                          p_value double precision[],
                                          p_limit double precision[], p_offsets jsonb,
                                          p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_rows triaged.ingest_row[];
BEGIN
  SELECT coalesce(array_agg(r), '{}') INTO v_rows
    FROM triaged.ingest(p_batch, p_offsets, p_opts) r;
  RETURN QUERY SELECT * FROM unnest(v_rows);
  IF p_metric IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM unnest(v_rows) r WHERE r.kind = 'fenced') THEN
    RETURN QUERY SELECT * FROM triaged.ingest_capacity_arrays(p_ci_id, p_ci, p_metric, p_ts,
                                                              p_value, p_limit, p_opts);
  END IF;
END $$;

-- Move up to p_max inbox rows into capacity_sample (partitions made as
-- needed; a sample already stored is a duplicate and dropped) and mark their
-- hours dirty for capacity_tick(). One fold at a time across instances (a
-- busy fold lock returns "busy"). Returns one 'capacity.fold' row
-- {"moved","inserted","duplicates","more"}: more is true when the inbox
-- held more than p_max rows.
CREATE FUNCTION triaged.capacity_fold(p_max integer)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
SET work_mem = '64MB'
SET enable_hashjoin = off -- the anti-join probes the key, never hashes
SET enable_mergejoin = off -- the whole table
AS $$
DECLARE
  v_tids   tid[];
  v_months timestamptz[];
  v_hours  timestamptz[];
  v_month  timestamptz;
  v_moved  integer;
  v_ins    integer;
BEGIN
  -- 'triaged.capacity_fold' as a lock key (hashtext is stable per major version)
  IF NOT pg_try_advisory_xact_lock(hashtext('triaged.capacity_fold')) THEN
    RETURN QUERY SELECT 'capacity.fold', NULL::text, json_build_object('busy', true);
    RETURN;
  END IF;
  -- the rows to move, by their tuple ids: inbox rows are never updated and
  -- only a fold deletes them, so the ids stay theirs until the DELETE below
  -- (one scan; the hours hashed, with date_bin: date_trunc and DISTINCT
  -- aggregates cost twice as much, measured)
  WITH i AS MATERIALIZED (
    SELECT ctid, ts FROM triaged.capacity_inbox LIMIT greatest(p_max, 1))
  SELECT (SELECT array_agg(i.ctid) FROM i),
         (SELECT array_agg(x.h) FROM (SELECT date_bin('1 hour', i.ts, timestamptz '2000-01-01') AS h
                                        FROM i GROUP BY 1) x)
    INTO v_tids, v_hours;
  SELECT array_agg(DISTINCT date_trunc('month', h)) INTO v_months FROM unnest(v_hours) AS u(h);
  v_moved := coalesce(cardinality(v_tids), 0);
  IF v_moved = 0 THEN
    RETURN QUERY SELECT 'capacity.fold', NULL::text,
      json_build_object('moved', 0, 'inserted', 0, 'duplicates', 0, 'more', false);
    RETURN;
  END IF;
  FOREACH v_month IN ARRAY v_months LOOP
    IF to_regclass('triaged.capacity_sample_p' || to_char(v_month, 'YYYYMM')) IS NULL THEN
      PERFORM triaged.capacity_ensure_partitions(v_month, v_month);
    END IF;
  END LOOP;

  -- the hours the rows fall in, for the rollup (an hour whose rows all
  -- turn out duplicates is rebuilt once more: harmless)
  INSERT INTO triaged.capacity_dirty (hour)
  SELECT DISTINCT h FROM unnest(v_hours) AS u(h)
  ON CONFLICT (hour) DO NOTHING;

  -- Each row once. First as if there were no duplicate: a plain INSERT in
  -- the inbox's order, the cheapest (measured: INSERT ... ON CONFLICT DO
  -- NOTHING, a speculative insertion, costs twice as much, and sorting for
  -- DISTINCT a fifth more); when there was one (a client's retry, a
  -- producer's duplicate), the key says so, and the fold runs again keeping
  -- the first queued copy of each new row (an anti-join probing the key,
  -- in key order). Folds are serialised by the lock above.
  BEGIN
    WITH moved AS (
      DELETE FROM triaged.capacity_inbox WHERE ctid = ANY (v_tids)
      RETURNING ci_id, metric, ts, value, capacity_limit)
    INSERT INTO triaged.capacity_sample (ci_id, metric, ts, value, capacity_limit)
    SELECT m.ci_id, m.metric, m.ts, m.value, m.capacity_limit FROM moved m;
    GET DIAGNOSTICS v_ins = ROW_COUNT;
  EXCEPTION WHEN unique_violation THEN
    WITH moved AS (
      DELETE FROM triaged.capacity_inbox WHERE ctid = ANY (v_tids)
      RETURNING ctid AS tid, ci_id, metric, ts, value, capacity_limit)
    INSERT INTO triaged.capacity_sample (ci_id, metric, ts, value, capacity_limit)
    SELECT DISTINCT ON (m.ci_id, m.metric, m.ts) m.ci_id, m.metric, m.ts, m.value,
           m.capacity_limit
      FROM moved m
     WHERE NOT EXISTS (SELECT 1 FROM triaged.capacity_sample x
                        WHERE x.ci_id = m.ci_id AND x.metric = m.metric AND x.ts = m.ts)
     ORDER BY m.ci_id, m.metric, m.ts, m.tid;
    GET DIAGNOSTICS v_ins = ROW_COUNT;
  END;

  RETURN QUERY SELECT 'capacity.fold', NULL::text,
    json_build_object('moved', v_moved, 'inserted', v_ins, 'duplicates', v_moved - v_ins,
                      'more', v_moved >= p_max);
END $$;

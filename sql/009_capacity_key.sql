-- 009_capacity_key.sql — a cheaper key for capacity_sample (issue 8's
-- 200,000 samples/s target, continued).
--
-- The primary key that makes a sample sent twice a no-op was (ci_id,
-- metric, ts): samples arrive in time order, but in that key's order each
-- lands on a different leaf page of the whole index (one series after the
-- other), so every insert walked to a cold page, and most of a sample's
-- PostgreSQL time was that key (README, "Capacity" benchmarks: the same
-- 500,000 samples in a consumer's order into tables that differ in their
-- key only, backend CPU a sample: no index 2.2-2.5 us; (ci_id, metric, ts)
-- 4.6 us; a series id from a dictionary, (series_id, ts), 5.1-7.1 us plus
-- 1.8 us for the dictionary look-up; (ts, ci_id, metric) 3.1-3.7 us). The
-- same columns with ts first: a batch's samples land on the few newest leaf
-- pages, which stay in cache; the key is the same set of columns, so it
-- forbids the same duplicates, and ON CONFLICT (ci_id, metric, ts) still
-- finds it.
-- capacity_sample's columns (DESIGN §6) are unchanged.
--
-- It also serves the hourly rollup's range read (ts >= hour AND ts < hour +
-- 1 h), so the BRIN index on ts, an insert cost of its own, goes.
--
-- The price: a CI's deletion (the ci_capacity_delete trigger of 005) finds
-- its samples by a scan of the retained partitions instead of the key.
-- CIs are deleted rarely (a CMDB import), samples arrive all the time.
--
-- Concurrent batches (the daemon's lanes: batches in flight on several
-- connections, into the same partition): ingest_capacity_arrays (007) is
-- replaced with one that inserts in key order, so that batches sharing
-- samples wait for each other in one order and never deadlock, and whose
-- anti-join goes again when a concurrent batch commits a sample it could
-- not see yet; and it marks its hours in capacity_dirty_mark, not in
-- capacity_dirty (below). A missing month's partition is made by one
-- transaction at a time (capacity_ensure_partitions, at the end).
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

ALTER TABLE triaged.capacity_sample DROP CONSTRAINT capacity_sample_pkey;
ALTER TABLE triaged.capacity_sample
  ADD CONSTRAINT capacity_sample_pkey PRIMARY KEY (ts, ci_id, metric);
DROP INDEX triaged.capacity_sample_ts_brin;

-- The hours that got samples, as batches mark them: rows appended, no key.
-- A batch that marked an hour in capacity_dirty (hour PRIMARY KEY) with
-- INSERT ... ON CONFLICT DO NOTHING waited for any other transaction that
-- had inserted or deleted that hour's row and not committed yet: for
-- another batch of the same hour (lanes would run one after the other), and for
-- capacity_tick, which deletes the hour's row when it rebuilds it and
-- commits at its end (every batch of the open hour stalled for the whole
-- rollup: seconds). An append waits for nothing. capacity_tick folds the
-- marks into capacity_dirty first (one row an hour, the earliest since), in
-- its own transaction; marks of batches not committed yet stay for the next
-- tick, so an hour is never forgotten.
CREATE TABLE triaged.capacity_dirty_mark (
  hour  timestamptz NOT NULL,
  since timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE triaged.capacity_dirty_mark IS
  'Hours marked by capacity batches since the last capacity_tick, which '
  'folds them into capacity_dirty (appended, so concurrent batches never wait on each other).';

ALTER FUNCTION triaged.capacity_tick(jsonb) RENAME TO _capacity_tick_dirty;
COMMENT ON FUNCTION triaged._capacity_tick_dirty(jsonb) IS
  'capacity_tick of 005, on capacity_dirty; capacity_tick (009) folds the marks in first.';

CREATE FUNCTION triaged.capacity_tick(p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
AS $$
BEGIN
  -- (the marks another instance's tick is folding are skipped, not waited for)
  WITH m AS (
    DELETE FROM triaged.capacity_dirty_mark x
     WHERE x.ctid = ANY (ARRAY(SELECT y.ctid FROM triaged.capacity_dirty_mark y
                                  FOR UPDATE SKIP LOCKED))
    RETURNING x.hour, x.since)
  INSERT INTO triaged.capacity_dirty AS d (hour, since)
  SELECT m.hour, min(m.since) FROM m GROUP BY m.hour
  ON CONFLICT (hour) DO UPDATE SET since = least(d.since, EXCLUDED.since);
  RETURN QUERY SELECT * FROM triaged._capacity_tick_dirty(p_opts);
END $$;

CREATE OR REPLACE FUNCTION triaged.ingest_capacity_arrays(p_ci_id bigint[], p_ci text[], p_metric text[],
                                               p_ts timestamptz[], p_value double precision[],
                                               p_limit double precision[], p_opts jsonb,
                                               p_hours timestamptz[] DEFAULT NULL,
                                               p_over_limit boolean DEFAULT NULL)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
AS $$
DECLARE
  v_n      integer := coalesce(cardinality(p_metric), 0);
  v_ids    bigint[] := p_ci_id;
  v_ins    integer;
  v_unknown integer := 0;
  v_hours  timestamptz[];
  v_month  timestamptz; -- the batch's (last) month
  v_part   text;        -- its partition's name
  v_months integer := 0;
  v_hash   text;
  v_merge  text;
  v_tries  integer := 0;
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

  -- the months' partitions and the hours for the rollup (date_bin and a
  -- hash: date_trunc per sample costs twice as much, measured); an hour
  -- whose samples all turn out duplicates is rolled up once more: harmless
  v_hours := p_hours;
  IF v_hours IS NULL THEN
    SELECT array_agg(x.h) INTO v_hours
      FROM (SELECT date_bin('1 hour', u.ts, timestamptz '2000-01-01') AS h
              FROM unnest(v_ids, p_ts) AS u(id, ts) WHERE u.id IS NOT NULL GROUP BY 1) x;
  END IF;
  FOR v_month IN SELECT DISTINCT date_trunc('month', u.h) FROM unnest(v_hours) AS u(h) LOOP
    IF to_regclass('triaged.capacity_sample_p' || to_char(v_month, 'YYYYMM')) IS NULL THEN
      PERFORM triaged.capacity_ensure_partitions(v_month, v_month);
    END IF;
    v_months := v_months + 1;
  END LOOP;
  -- (marks, not capacity_dirty: see capacity_dirty_mark above)
  INSERT INTO triaged.capacity_dirty_mark (hour)
  SELECT u.h FROM unnest(v_hours) AS u(h);

  -- Each sample once. First as if none were stored yet: a plain INSERT,
  -- the cheapest (INSERT ... ON CONFLICT DO NOTHING, a speculative
  -- insertion, costs twice as much, measured). When one was (a client's
  -- retry, a producer's duplicate, the same sample twice in the batch), the
  -- key says so, the attempt is undone, and the samples go again through an
  -- anti-join probing the key, the first of each in the batch kept.
  -- (a batch within one month, the usual case, goes straight into its
  -- partition: routing each row costs 5-10 % more, measured)
  -- Both inserts go in key order (ts, ci_id, metric): concurrent batches
  -- (the daemon's lanes) that share a sample wait for each other in one
  -- order, so they never deadlock, and the key's btree takes its entries
  -- in order.
  BEGIN
    IF v_months = 1 THEN
      v_part := 'capacity_sample_p' || to_char(v_month, 'YYYYMM');
      EXECUTE format('INSERT INTO triaged.%I (ci_id, metric, ts, value, capacity_limit)'
                     ' SELECT u.ci_id, u.metric, u.ts, u.value, u.lim'
                     ' FROM unnest($1, $2, $3, $4, $5) AS u(ci_id, metric, ts, value, lim)'
                     ' WHERE u.ci_id IS NOT NULL ORDER BY u.ts, u.ci_id, u.metric', v_part)
        USING v_ids, p_metric, p_ts, p_value, p_limit;
    ELSE
      INSERT INTO triaged.capacity_sample (ci_id, metric, ts, value, capacity_limit)
      SELECT u.ci_id, u.metric, u.ts, u.value, u.lim
        FROM unnest(v_ids, p_metric, p_ts, p_value, p_limit) AS u(ci_id, metric, ts, value, lim)
       WHERE u.ci_id IS NOT NULL
       ORDER BY u.ts, u.ci_id, u.metric;
    END IF;
    GET DIAGNOSTICS v_ins = ROW_COUNT;
  EXCEPTION WHEN unique_violation THEN
    -- the anti-join probes the key: it never reads the table whole. A
    -- sample that a concurrent batch inserts but has not committed yet is
    -- invisible to it: its insert waits for that batch, and fails when it
    -- commits; then the anti-join goes again (it sees that sample now).
    v_hash := current_setting('enable_hashjoin');
    v_merge := current_setting('enable_mergejoin');
    PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
    LOOP
      BEGIN
        INSERT INTO triaged.capacity_sample (ci_id, metric, ts, value, capacity_limit)
        SELECT DISTINCT ON (u.ts, u.ci_id, u.metric) u.ci_id, u.metric, u.ts, u.value, u.lim
          FROM unnest(v_ids, p_metric, p_ts, p_value, p_limit)
                 WITH ORDINALITY AS u(ci_id, metric, ts, value, lim, i)
         WHERE u.ci_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM triaged.capacity_sample x
                            WHERE x.ts = u.ts AND x.ci_id = u.ci_id AND x.metric = u.metric)
         ORDER BY u.ts, u.ci_id, u.metric, u.i;
        GET DIAGNOSTICS v_ins = ROW_COUNT;
        EXIT;
      EXCEPTION WHEN unique_violation THEN
        v_tries := v_tries + 1;
        IF v_tries >= 10 THEN
          RAISE;
        END IF;
      END;
    END LOOP;
    PERFORM set_config('enable_hashjoin', v_hash, true), set_config('enable_mergejoin', v_merge, true);
  END;

  RETURN QUERY
  SELECT 'capacity.stats', NULL::text,
         json_build_object('inserted', v_ins, 'duplicates', v_n - v_unknown - v_ins,
                           'unknown_ci', v_unknown,
                           'unknown_names',
                           CASE WHEN v_unknown = 0 THEN '[]'::json
                                ELSE (SELECT coalesce(json_agg(DISTINCT x.ci), '[]')
                                        FROM (SELECT u.ci FROM unnest(v_ids, p_ci) AS u(id, ci)
                                               WHERE u.id IS NULL LIMIT 5) x) END);

  -- limits: only when a sample of the batch is at or over its limit, or a
  -- capacity_limit alert fires (the common case costs one pass over the
  -- values and a look at a partial index)
  IF NOT coalesce(p_over_limit,
                  EXISTS (SELECT 1 FROM unnest(p_value, p_limit) AS u(v, l) WHERE u.v >= u.l))
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

-- Monthly partitions covering [p_from, p_to] (005), made by one transaction
-- at a time: two batches of a month with no partition yet (lanes, or two
-- instances) both saw it missing and both created it, and the second failed
-- with "relation already exists" once the first committed. Now the second
-- waits for the first (a transaction-scoped advisory lock, taken only when
-- a partition is missing) and then finds it made.
CREATE OR REPLACE FUNCTION triaged.capacity_ensure_partitions(p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET TimeZone = 'UTC'
AS $$
DECLARE
  v_m      timestamptz;
  v_name   text;
  v_n      integer := 0;
  v_locked boolean := false;
BEGIN
  v_m := date_trunc('month', p_from);
  WHILE v_m <= p_to LOOP
    v_name := 'capacity_sample_p' || to_char(v_m, 'YYYYMM');
    IF to_regclass('triaged.' || v_name) IS NULL AND NOT v_locked THEN
      PERFORM pg_advisory_xact_lock(hashtext('triaged.capacity_ensure_partitions'));
      v_locked := true;
    END IF;
    IF to_regclass('triaged.' || v_name) IS NULL THEN
      EXECUTE format('CREATE TABLE triaged.%I PARTITION OF triaged.capacity_sample'
                     ' FOR VALUES FROM (%L) TO (%L)', v_name, v_m, v_m + interval '1 month');
      v_n := v_n + 1;
    END IF;
    v_m := v_m + interval '1 month';
  END LOOP;
  RETURN v_n;
END $$;

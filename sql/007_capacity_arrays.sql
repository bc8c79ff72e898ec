-- 007_capacity_arrays.sql — the fast capacity ingest path (issue 8's
-- 200,000 samples/s target).
--
-- The batch statement takes the samples as typed arrays (binary parameters:
-- no JSON or text to parse), their CIs bound by the daemon from its
-- in-memory CMDB graph, and stores them with one plain INSERT ... SELECT
-- FROM unnest(...) into capacity_sample, in the batch's transaction (the
-- Kafka offsets commit with them, as before). Measured on the test machine
-- (README, "Capacity" benchmarks; ratios against a COPY of the same rows
-- into an unindexed table in the same run): the old path (jsonb parsed
-- into a temporary table, a probe per sample to bind it, INSERT ... ON
-- CONFLICT DO NOTHING, a probe of the alerts per series for limits) ran at
-- 0.07-0.09x COPY; this one at 0.16-0.32x. Most of the rest is the primary
-- key (the key that makes a sample sent twice a no-op): a COPY into a table
-- with just that key ran at 0.20-0.46x. An index-free inbox folded into
-- capacity_sample later was tried and dropped: its batches ran at 0.5x
-- COPY, but the fold (DELETE ... RETURNING, INSERT) cost twice the direct
-- INSERT, so it sustained only 0.13x.
--
-- Also here: the hourly rollup of 005 with the series update written out
-- (a third of the time).
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- The firing capacity_limit alerts, found without a scan of all alerts.
CREATE INDEX alert_capacity_firing_idx ON triaged.alert (resource)
  WHERE source = 'capacity' AND check_name = 'capacity_limit' AND status = 'firing';

-- One batch's samples as parallel arrays (one element per sample, the same
-- length each): p_ci_id the CI the daemon bound (NULL: not found in its
-- graph; then p_ci, the sample's ci, is bound here like an alert's resource
-- by name, alias or address, and p_ci may be NULL where p_ci_id is set),
-- p_metric, p_ts, p_value, p_limit (NULL: none). Stores the bound samples
-- (a sample already stored for the same ci, metric and ts is a duplicate
-- and ignored; partitions made as needed) and marks their hours for the
-- rollup, like ingest_capacity(), which it replaces in the daemon. Returns
-- the same rows: one 'capacity.stats' {"inserted", "duplicates",
-- "unknown_ci", "unknown_names"}, and a 'capacity.limit' per series whose
-- newest sample of the batch is at or over its limit, or back under it
-- while its capacity_limit alert fires. p_hours (the distinct hours of
-- p_ts, or more) and p_over_limit (whether a sample is at or over its
-- limit), when the caller knows them, spare a pass over the arrays each
-- (the daemon does: 1.3 us a sample, measured); NULL: worked out here.
CREATE FUNCTION triaged.ingest_capacity_arrays(p_ci_id bigint[], p_ci text[], p_metric text[],
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
  INSERT INTO triaged.capacity_dirty (hour)
  SELECT u.h FROM unnest(v_hours) AS u(h)
  ON CONFLICT (hour) DO NOTHING;

  -- Each sample once. First as if none were stored yet: a plain INSERT,
  -- the cheapest (INSERT ... ON CONFLICT DO NOTHING, a speculative
  -- insertion, costs twice as much, measured). When one was (a client's
  -- retry, a producer's duplicate, the same sample twice in the batch), the
  -- key says so, the attempt is undone, and the samples go again through an
  -- anti-join probing the key, the first of each in the batch kept.
  -- (a batch within one month, the usual case, goes straight into its
  -- partition: routing each row costs 5-10 % more, measured)
  BEGIN
    IF v_months = 1 THEN
      v_part := 'capacity_sample_p' || to_char(v_month, 'YYYYMM');
      EXECUTE format('INSERT INTO triaged.%I (ci_id, metric, ts, value, capacity_limit)'
                     ' SELECT u.ci_id, u.metric, u.ts, u.value, u.lim'
                     ' FROM unnest($1, $2, $3, $4, $5) AS u(ci_id, metric, ts, value, lim)'
                     ' WHERE u.ci_id IS NOT NULL', v_part)
        USING v_ids, p_metric, p_ts, p_value, p_limit;
    ELSE
      INSERT INTO triaged.capacity_sample (ci_id, metric, ts, value, capacity_limit)
      SELECT u.ci_id, u.metric, u.ts, u.value, u.lim
        FROM unnest(v_ids, p_metric, p_ts, p_value, p_limit) AS u(ci_id, metric, ts, value, lim)
       WHERE u.ci_id IS NOT NULL;
    END IF;
    GET DIAGNOSTICS v_ins = ROW_COUNT;
  EXCEPTION WHEN unique_violation THEN
    -- the anti-join probes the key: it never reads the table whole
    v_hash := current_setting('enable_hashjoin');
    v_merge := current_setting('enable_mergejoin');
    PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
    INSERT INTO triaged.capacity_sample (ci_id, metric, ts, value, capacity_limit)
    SELECT DISTINCT ON (u.ci_id, u.metric, u.ts) u.ci_id, u.metric, u.ts, u.value, u.lim
      FROM unnest(v_ids, p_metric, p_ts, p_value, p_limit)
             WITH ORDINALITY AS u(ci_id, metric, ts, value, lim, i)
     WHERE u.ci_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM triaged.capacity_sample x
                        WHERE x.ci_id = u.ci_id AND x.metric = u.metric AND x.ts = u.ts)
     ORDER BY u.ci_id, u.metric, u.ts, u.i;
    GET DIAGNOSTICS v_ins = ROW_COUNT;
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

-- The batch statement with samples as arrays: triaged.ingest() (alerts and
-- the offsets compare-and-set), then, unless a partition was fenced,
-- ingest_capacity_arrays(); one statement, one transaction.
CREATE FUNCTION triaged.ingest_all_arrays(p_batch jsonb, p_ci_id bigint[], p_ci text[],
                                          p_metric text[], p_ts timestamptz[],
                                          p_value double precision[],
                                          p_limit double precision[], p_offsets jsonb,
                                          p_opts jsonb, p_hours timestamptz[] DEFAULT NULL,
                                          p_over_limit boolean DEFAULT NULL)
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
                                                              p_value, p_limit, p_opts,
                                                              p_hours, p_over_limit);
  END IF;
END $$;

-- ---------------------------------------------------------------------------
-- The hour's rollup (005), with the series update written out: the same
-- result, a fraction of the time.
CREATE OR REPLACE FUNCTION triaged._capacity_rollup_hour(p_hour timestamptz, p_window_start timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET work_mem = '64MB'
AS $$
DECLARE
  v_n integer;
BEGIN
  IF to_regclass('pg_temp._cap_new') IS NULL THEN
    CREATE TEMP TABLE _cap_new (LIKE triaged.capacity_hourly)
    ON COMMIT DELETE ROWS;
  END IF;
  DELETE FROM _cap_new;
  -- (one sort of the hour, newest first per series, gives the last value
  -- and limit as the first of each group: 005's array_agg(... ORDER BY ts)
  -- sorted every group twice more; t computed once a sample)
  INSERT INTO _cap_new
  SELECT s.ci_id, s.metric, p_hour, count(*), min(s.value), max(s.value), avg(s.value),
         percentile_cont(0.95) WITHIN GROUP (ORDER BY s.value),
         max(s.ts),
         (array_agg(s.value))[1],
         (array_agg(s.capacity_limit))[1],
         avg(s.t),
         coalesce(regr_sxx(s.value, s.t), 0),
         coalesce(regr_syy(s.value, s.t), 0),
         coalesce(regr_sxy(s.value, s.t), 0),
         p_hour >= p_window_start
    FROM (SELECT x.ci_id, x.metric, x.ts, x.value, x.capacity_limit,
                 triaged.capacity_t(x.ts) AS t
            FROM triaged.capacity_sample x
           WHERE x.ts >= p_hour AND x.ts < p_hour + interval '1 hour'
           ORDER BY x.ci_id, x.metric, x.ts DESC) s
   GROUP BY s.ci_id, s.metric;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  -- a temporary table has no statistics: without them the joins below are
  -- planned for a few rows and loop over capacity_series once per bucket
  ANALYZE _cap_new;

  -- the series: minus the hour's old sums (when they were in), plus the
  -- new: capacity_unmerge() then capacity_merge(), written out as
  -- arithmetic (the same formulas in the same order) so that no function
  -- is called per row: 005's calls cost 150 us a series (measured), most
  -- of a rollup's time
  INSERT INTO triaged.capacity_series AS cs (ci_id, metric, n, mean_t, mean_v, stt, svv, stv,
                                             last_ts, last_value, capacity_limit, updated_at)
  SELECT nw.ci_id, nw.metric, m.n, m.mt, m.mv, m.stt, m.svv, m.stv,
         nw.last_ts, nw.last_value, nw.capacity_limit, now()
    FROM _cap_new nw
    LEFT JOIN triaged.capacity_hourly old
      ON old.ci_id = nw.ci_id AND old.metric = nw.metric AND old.hour = nw.hour
    LEFT JOIN triaged.capacity_series cs0
      ON cs0.ci_id = nw.ci_id AND cs0.metric = nw.metric
    -- s: the series now; o: the hour's old part; b: its new part
    CROSS JOIN LATERAL (
      SELECT coalesce(cs0.n, 0) AS n, coalesce(cs0.mean_t, 0) AS mt,
             coalesce(cs0.mean_v, 0) AS mv, coalesce(cs0.stt, 0) AS stt,
             coalesce(cs0.svv, 0) AS svv, coalesce(cs0.stv, 0) AS stv) s
    CROSS JOIN LATERAL (
      SELECT CASE WHEN old.in_series THEN old.samples ELSE 0 END AS n,
             CASE WHEN old.in_series THEN old.mean_t ELSE 0 END AS mt,
             CASE WHEN old.in_series THEN old.avg_value ELSE 0 END AS mv,
             CASE WHEN old.in_series THEN old.stt ELSE 0 END AS stt,
             CASE WHEN old.in_series THEN old.svv ELSE 0 END AS svv,
             CASE WHEN old.in_series THEN old.stv ELSE 0 END AS stv) o
    CROSS JOIN LATERAL (
      SELECT CASE WHEN nw.in_series THEN nw.samples ELSE 0 END AS n,
             CASE WHEN nw.in_series THEN nw.mean_t ELSE 0 END AS mt,
             CASE WHEN nw.in_series THEN nw.avg_value ELSE 0 END AS mv,
             CASE WHEN nw.in_series THEN nw.stt ELSE 0 END AS stt,
             CASE WHEN nw.in_series THEN nw.svv ELSE 0 END AS svv,
             CASE WHEN nw.in_series THEN nw.stv ELSE 0 END AS stv) b
    -- u = unmerge(s, o), with a the series without the hour
    CROSS JOIN LATERAL (
      SELECT s.n - o.n AS n,
             (s.mt * s.n - o.mt * o.n) / nullif(s.n - o.n, 0) AS mt,
             (s.mv * s.n - o.mv * o.n) / nullif(s.n - o.n, 0) AS mv) a
    CROSS JOIN LATERAL (
      SELECT CASE WHEN o.n = 0 THEN s.n WHEN s.n <= o.n THEN 0 ELSE a.n END AS n,
             CASE WHEN o.n = 0 THEN s.mt WHEN s.n <= o.n THEN 0 ELSE a.mt END AS mt,
             CASE WHEN o.n = 0 THEN s.mv WHEN s.n <= o.n THEN 0 ELSE a.mv END AS mv,
             CASE WHEN o.n = 0 THEN s.stt WHEN s.n <= o.n THEN 0
                  ELSE greatest(s.stt - o.stt - (o.mt - a.mt) ^ 2 * a.n * o.n / s.n, 0) END AS stt,
             CASE WHEN o.n = 0 THEN s.svv WHEN s.n <= o.n THEN 0
                  ELSE greatest(s.svv - o.svv - (o.mv - a.mv) ^ 2 * a.n * o.n / s.n, 0) END AS svv,
             CASE WHEN o.n = 0 THEN s.stv WHEN s.n <= o.n THEN 0
                  ELSE s.stv - o.stv - (o.mt - a.mt) * (o.mv - a.mv) * a.n * o.n / s.n END AS stv) u
    -- m = merge(u, b)
    CROSS JOIN LATERAL (
      SELECT CASE WHEN u.n = 0 THEN b.n WHEN b.n = 0 THEN u.n ELSE u.n + b.n END AS n,
             CASE WHEN u.n = 0 THEN b.mt WHEN b.n = 0 THEN u.mt
                  ELSE u.mt + (b.mt - u.mt) * b.n / (u.n + b.n) END AS mt,
             CASE WHEN u.n = 0 THEN b.mv WHEN b.n = 0 THEN u.mv
                  ELSE u.mv + (b.mv - u.mv) * b.n / (u.n + b.n) END AS mv,
             CASE WHEN u.n = 0 THEN b.stt WHEN b.n = 0 THEN u.stt
                  ELSE u.stt + b.stt + (b.mt - u.mt) ^ 2 * u.n * b.n / (u.n + b.n) END AS stt,
             CASE WHEN u.n = 0 THEN b.svv WHEN b.n = 0 THEN u.svv
                  ELSE u.svv + b.svv + (b.mv - u.mv) ^ 2 * u.n * b.n / (u.n + b.n) END AS svv,
             CASE WHEN u.n = 0 THEN b.stv WHEN b.n = 0 THEN u.stv
                  ELSE u.stv + b.stv + (b.mt - u.mt) * (b.mv - u.mv) * u.n * b.n
                       / (u.n + b.n) END AS stv) m
  ON CONFLICT (ci_id, metric) DO UPDATE
     SET n = EXCLUDED.n, mean_t = EXCLUDED.mean_t, mean_v = EXCLUDED.mean_v,
         stt = EXCLUDED.stt, svv = EXCLUDED.svv, stv = EXCLUDED.stv,
         last_ts = CASE WHEN cs.last_ts IS NULL OR EXCLUDED.last_ts >= cs.last_ts
                        THEN EXCLUDED.last_ts ELSE cs.last_ts END,
         last_value = CASE WHEN cs.last_ts IS NULL OR EXCLUDED.last_ts >= cs.last_ts
                           THEN EXCLUDED.last_value ELSE cs.last_value END,
         capacity_limit = CASE WHEN cs.last_ts IS NULL OR EXCLUDED.last_ts >= cs.last_ts
                               THEN coalesce(EXCLUDED.capacity_limit, cs.capacity_limit)
                               ELSE coalesce(cs.capacity_limit, EXCLUDED.capacity_limit) END,
         updated_at = now();

  INSERT INTO triaged.capacity_hourly AS h
  SELECT * FROM _cap_new
  ON CONFLICT (ci_id, metric, hour) DO UPDATE
     SET samples = EXCLUDED.samples, min_value = EXCLUDED.min_value,
         max_value = EXCLUDED.max_value, avg_value = EXCLUDED.avg_value,
         p95_value = EXCLUDED.p95_value, last_ts = EXCLUDED.last_ts,
         last_value = EXCLUDED.last_value, capacity_limit = EXCLUDED.capacity_limit,
         mean_t = EXCLUDED.mean_t, stt = EXCLUDED.stt, svv = EXCLUDED.svv,
         stv = EXCLUDED.stv, in_series = EXCLUDED.in_series;
  RETURN v_n;
END $$;

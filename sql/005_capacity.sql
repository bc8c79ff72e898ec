-- 005_capacity.sql — capacity management (DESIGN §3 capacity sample, §4 Capacity).
--
-- Samples arrive in the same batches as alerts (Kafka capacity_topic, HTTP) and
-- are written by triaged.ingest_capacity in the batch's transaction, so the
-- Kafka offsets and the samples commit together; the primary key
-- (ci_id, metric, ts) makes a sample sent twice (an HTTP retry) a no-op.
--
-- Three levels, each made from the one below:
--   capacity_sample   raw samples, partitioned by month (partitions made ahead
--                     and on demand; dropped after [capacity] retention)
--   capacity_hourly   one row per (ci, metric, hour): count, min, max, avg,
--                     p95, last value and limit, and the centred least-squares
--                     sums of the hour's samples (mean_t, mean_v, stt, svv, stv
--                     with t in days since 2020-01-01 UTC). Rebuilt from the raw
--                     samples of every hour that received samples (the "dirty"
--                     hours), by triaged.capacity_tick: exact, p95 included.
--   capacity_series   one row per (ci, metric): the same sums over the hours of
--                     the configured window (merged and unmerged hour by hour
--                     with Chan's pairwise formulas, numerically stable), the
--                     last value and limit, the fit and the warning state. The
--                     risk ranking reads only this table: one row per series,
--                     whatever the sample rate.
--
-- The fit (triaged.capacity_fit): least squares of value over time; slope per
-- day, r2, the fitted value now, growth per 30 days in percent of the fitted
-- value now, the time the fit crosses the limit, and a band from the residuals
-- (fit ± 2 sigma: earliest and latest plausible crossing). No forecast when the
-- series has too few points, is not growing, fits poorly or has no limit.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- raw samples: partitioned by month

DROP VIEW triaged.capacity_trend;
DROP TABLE triaged.capacity_sample;

CREATE TABLE triaged.capacity_sample (
  ci_id          bigint NOT NULL,
  metric         text NOT NULL,
  ts             timestamptz NOT NULL,
  value          double precision NOT NULL,
  capacity_limit double precision,
  CONSTRAINT capacity_sample_pkey PRIMARY KEY (ci_id, metric, ts),
  CONSTRAINT capacity_sample_metric_check CHECK (metric <> ''),
  CONSTRAINT capacity_sample_value_check
    CHECK (value NOT IN ('NaN', 'Infinity', '-Infinity')),
  CONSTRAINT capacity_sample_limit_check CHECK (capacity_limit IS NULL
    OR (capacity_limit > 0 AND capacity_limit NOT IN ('NaN', 'Infinity')))
) PARTITION BY RANGE (ts);
COMMENT ON TABLE triaged.capacity_sample IS
  'Raw capacity samples, partitioned by month (capacity_sample_pYYYYMM); '
  'kept for [capacity] retention. ci_id references ci (no per-row foreign key '
  'for ingest speed: deleting a CI deletes its samples by trigger).';

-- The rollup reads one hour at a time; samples arrive roughly in time order,
-- so a BRIN index finds an hour for almost nothing at insert time.
CREATE INDEX capacity_sample_ts_brin ON triaged.capacity_sample USING brin (ts);

-- Hours that received samples and whose rollup is not rebuilt yet.
-- An hour still open is rebuilt at most every open_hour_ms (its samples keep
-- coming; rebuilding it on every tick would cost a scan of the hour each
-- time; 0: at every tick); a closed hour at the next tick.
CREATE TABLE triaged.capacity_dirty (
  hour  timestamptz PRIMARY KEY,
  since timestamptz NOT NULL DEFAULT now() -- the first sample not rolled up yet
);

CREATE TABLE triaged.capacity_hourly (
  ci_id          bigint NOT NULL,
  metric         text NOT NULL,
  hour           timestamptz NOT NULL,
  samples        bigint NOT NULL,
  min_value      double precision NOT NULL,
  max_value      double precision NOT NULL,
  avg_value      double precision NOT NULL,
  p95_value      double precision NOT NULL,
  last_ts        timestamptz NOT NULL,
  last_value     double precision NOT NULL,
  capacity_limit double precision,
  mean_t         double precision NOT NULL,
  stt            double precision NOT NULL,
  svv            double precision NOT NULL,
  stv            double precision NOT NULL,
  in_series      boolean NOT NULL DEFAULT false, -- merged into capacity_series
  CONSTRAINT capacity_hourly_pkey PRIMARY KEY (ci_id, metric, hour)
);
CREATE INDEX capacity_hourly_in_series_idx ON triaged.capacity_hourly (hour)
  WHERE in_series;
COMMENT ON TABLE triaged.capacity_hourly IS
  'Hourly rollup per (ci_id, metric): samples, min/max/avg/p95, last value and '
  'limit, and centred least-squares sums (t in days since 2020-01-01 UTC). Kept '
  'after the raw samples are dropped.';

CREATE TABLE triaged.capacity_series (
  ci_id          bigint NOT NULL,
  metric         text NOT NULL,
  n              bigint NOT NULL DEFAULT 0,
  mean_t         double precision NOT NULL DEFAULT 0,
  mean_v         double precision NOT NULL DEFAULT 0,
  stt            double precision NOT NULL DEFAULT 0,
  svv            double precision NOT NULL DEFAULT 0,
  stv            double precision NOT NULL DEFAULT 0,
  last_ts        timestamptz,
  last_value     double precision,
  capacity_limit double precision,
  warned_exhaustion_at timestamptz, -- the forecast a capacity_warning was sent for
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT capacity_series_pkey PRIMARY KEY (ci_id, metric)
);
COMMENT ON TABLE triaged.capacity_series IS
  'Per (ci_id, metric): least-squares sums over the hours of the [capacity] '
  'window, last value and limit, and the capacity_warning state.';

CREATE FUNCTION triaged.capacity_delete_ci() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM triaged.capacity_sample WHERE ci_id IN (SELECT g.id FROM gone g);
  DELETE FROM triaged.capacity_hourly WHERE ci_id IN (SELECT g.id FROM gone g);
  DELETE FROM triaged.capacity_series WHERE ci_id IN (SELECT g.id FROM gone g);
  RETURN NULL;
END $$;
CREATE TRIGGER ci_capacity_delete AFTER DELETE ON triaged.ci
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.capacity_delete_ci();

-- Monthly partitions covering [p_from, p_to]; returns how many it created.
CREATE FUNCTION triaged.capacity_ensure_partitions(p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE plpgsql
SET TimeZone = 'UTC'
AS $$
DECLARE
  v_m    timestamptz;
  v_name text;
  v_n    integer := 0;
BEGIN
  v_m := date_trunc('month', p_from);
  WHILE v_m <= p_to LOOP
    v_name := 'capacity_sample_p' || to_char(v_m, 'YYYYMM');
    IF to_regclass('triaged.' || v_name) IS NULL THEN
      EXECUTE format('CREATE TABLE triaged.%I PARTITION OF triaged.capacity_sample'
                     ' FOR VALUES FROM (%L) TO (%L)', v_name, v_m, v_m + interval '1 month');
      v_n := v_n + 1;
    END IF;
    v_m := v_m + interval '1 month';
  END LOOP;
  RETURN v_n;
END $$;

SELECT triaged.capacity_ensure_partitions(now() - interval '1 month', now() + interval '2 months');

-- t for the fits: days since 2020-01-01 UTC (small numbers keep the sums exact)
-- (date_part on an interval, not extract on a timestamptz: that one is only
-- STABLE, which keeps this function from being inlined: 4x slower rollups)
CREATE FUNCTION triaged.capacity_t(p_ts timestamptz) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT date_part('epoch', p_ts - timestamptz '2020-01-01 00:00:00+00') / 86400
$$;
CREATE FUNCTION triaged.capacity_ts(p_t double precision) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT to_timestamp(p_t * 86400 + 1577836800)
$$;

-- ---------------------------------------------------------------------------
-- the fit

CREATE TYPE triaged.capacity_fit_result AS (
  status         text,   -- ok | exhausted | insufficient_data | not_growing | poor_fit | no_limit
  samples        bigint,
  slope_per_day  double precision,
  r2             double precision,
  fitted_now     double precision,
  growth_30d_pct double precision,
  exhaustion_at  timestamptz,
  earliest_at    timestamptz,
  latest_at      timestamptz
);

-- From centred sums (n, mean_t, mean_v, stt, svv, stv): see the file header.
CREATE FUNCTION triaged.capacity_fit(p_n bigint, p_mt double precision, p_mv double precision,
                                     p_stt double precision, p_svv double precision,
                                     p_stv double precision, p_limit double precision,
                                     p_last_value double precision, p_now timestamptz,
                                     p_min_points integer, p_min_r2 double precision)
RETURNS triaged.capacity_fit_result
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  r       triaged.capacity_fit_result;
  v_now   double precision := triaged.capacity_t(p_now);
  v_sigma double precision;
  v_t     double precision;
BEGIN
  r.samples := coalesce(p_n, 0);
  IF coalesce(p_n, 0) < greatest(p_min_points, 3) OR p_stt IS NULL OR p_stt <= 0 THEN
    r.status := 'insufficient_data';
    RETURN r;
  END IF;
  r.slope_per_day := p_stv / p_stt;
  r.r2 := CASE WHEN p_svv > 0 THEN least(1, (p_stv * p_stv) / (p_stt * p_svv)) ELSE 1 END;
  r.fitted_now := p_mv + r.slope_per_day * (v_now - p_mt);
  r.growth_30d_pct := CASE WHEN r.fitted_now <> 0
                           THEN 100 * r.slope_per_day * 30 / abs(r.fitted_now) END;
  IF p_limit IS NOT NULL AND (p_last_value >= p_limit OR r.fitted_now >= p_limit) THEN
    r.status := 'exhausted';
    IF r.slope_per_day > 0 THEN
      r.exhaustion_at := triaged.capacity_ts(p_mt + (p_limit - p_mv) / r.slope_per_day);
    END IF;
    RETURN r;
  END IF;
  IF p_limit IS NULL THEN
    r.status := 'no_limit';
    RETURN r;
  END IF;
  IF r.slope_per_day <= 0 THEN
    r.status := 'not_growing';
    RETURN r;
  END IF;
  IF r.r2 < p_min_r2 THEN
    r.status := 'poor_fit';
    RETURN r;
  END IF;
  r.status := 'ok';
  v_sigma := sqrt(greatest(p_svv - r.slope_per_day * p_stv, 0) / greatest(p_n - 2, 1));
  r.exhaustion_at := triaged.capacity_ts(p_mt + (p_limit - p_mv) / r.slope_per_day);
  v_t := p_mt + (p_limit - 2 * v_sigma - p_mv) / r.slope_per_day;
  r.earliest_at := triaged.capacity_ts(greatest(v_t, v_now));
  r.latest_at := triaged.capacity_ts(p_mt + (p_limit + 2 * v_sigma - p_mv) / r.slope_per_day);
  RETURN r;
END $$;

-- Chan's pairwise update: the sums of A and B together, or of AB without B.
CREATE TYPE triaged.capacity_sums AS (
  n bigint, mean_t double precision, mean_v double precision,
  stt double precision, svv double precision, stv double precision);

-- (LANGUAGE sql: a quarter of plpgsql's cost per call, measured)
CREATE FUNCTION triaged.capacity_merge(a triaged.capacity_sums, b triaged.capacity_sums)
RETURNS triaged.capacity_sums
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN coalesce(a.n, 0) = 0 THEN b
    WHEN coalesce(b.n, 0) = 0 THEN a
    ELSE ROW(a.n + b.n,
             a.mean_t + (b.mean_t - a.mean_t) * b.n / (a.n + b.n),
             a.mean_v + (b.mean_v - a.mean_v) * b.n / (a.n + b.n),
             a.stt + b.stt + (b.mean_t - a.mean_t) ^ 2 * a.n * b.n / (a.n + b.n),
             a.svv + b.svv + (b.mean_v - a.mean_v) ^ 2 * a.n * b.n / (a.n + b.n),
             a.stv + b.stv + (b.mean_t - a.mean_t) * (b.mean_v - a.mean_v) * a.n * b.n
                             / (a.n + b.n))::triaged.capacity_sums
  END
$$;

-- AB without B: with A = (n_a, mt_a, mv_a) recovered from the means, the
-- cross terms of the merge are taken back out.
CREATE FUNCTION triaged.capacity_unmerge(ab triaged.capacity_sums, b triaged.capacity_sums)
RETURNS triaged.capacity_sums
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN coalesce(b.n, 0) = 0 THEN ab
    WHEN ab.n <= b.n THEN ROW(0, 0, 0, 0, 0, 0)::triaged.capacity_sums
    ELSE ROW(a.n, a.mt, a.mv,
             greatest(ab.stt - b.stt - (b.mean_t - a.mt) ^ 2 * a.n * b.n / ab.n, 0),
             greatest(ab.svv - b.svv - (b.mean_v - a.mv) ^ 2 * a.n * b.n / ab.n, 0),
             ab.stv - b.stv - (b.mean_t - a.mt) * (b.mean_v - a.mv) * a.n * b.n / ab.n
            )::triaged.capacity_sums
  END
  FROM (SELECT ab.n - b.n AS n,
               (ab.mean_t * ab.n - b.mean_t * b.n) / nullif(ab.n - b.n, 0) AS mt,
               (ab.mean_v * ab.n - b.mean_v * b.n) / nullif(ab.n - b.n, 0) AS mv) a
$$;

-- ---------------------------------------------------------------------------
-- ingest: one batch of samples, in the batch's transaction

-- A text that is an IP address, as inet; NULL otherwise (never an error).
CREATE FUNCTION triaged._as_inet(p text) RETURNS inet
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p !~ '^[0-9A-Fa-f:.]+(/[0-9]+)?$' THEN
    RETURN NULL;
  END IF;
  RETURN p::inet;
EXCEPTION WHEN others THEN
  RETURN NULL;
END $$;

-- p_samples: JSON array of {"ci","ci_id"?,"metric","value","limit"?,"ts"}.
-- Binds ci like an alert's resource (name, alias, address; ci_id when the
-- caller bound it), inserts the new samples (a sample already stored for the
-- same ci, metric and ts is a duplicate and ignored), and marks their hours for
-- the rollup. Returns one 'capacity.stats' row
-- {"inserted","duplicates","unknown_ci"} plus, per series of the batch whose
-- newest sample has a limit, a 'capacity.limit' row when it is at or over the
-- limit, or back under it while a capacity_limit alert for it fires: the
-- daemon turns these into alerts (source "capacity", check "capacity_limit").
CREATE FUNCTION triaged.ingest_capacity(p_samples jsonb, p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
SET enable_seqscan = off
AS $$
DECLARE
  v_total   integer;
  v_bound   integer;
  v_ins     integer;
  v_month   timestamptz;
BEGIN
  IF p_samples IS NULL OR jsonb_typeof(p_samples) <> 'array'
     OR jsonb_array_length(p_samples) = 0 THEN
    RETURN;
  END IF;
  IF to_regclass('pg_temp._cap_in') IS NULL THEN
    CREATE TEMP TABLE _cap_in (
    ci text, ci_id bigint, metric text, value double precision,
    lim double precision, ts timestamptz) ON COMMIT DELETE ROWS;
  END IF;
  DELETE FROM _cap_in;

  -- bind: name, then alias, then address (an index probe each, the later
  -- ones only when the earlier found nothing)
  INSERT INTO _cap_in
  SELECT x.ci,
         coalesce(x.ci_id,
                  (SELECT c.id FROM triaged.ci c WHERE c.name = x.ci),
                  (SELECT c.id FROM triaged.ci c WHERE c.aliases @> ARRAY[x.ci]
                    ORDER BY c.id LIMIT 1),
                  (SELECT c.id FROM triaged.ci c
                    WHERE c.addresses @> ARRAY[triaged._as_inet(x.ci)]
                    ORDER BY c.id LIMIT 1)),
         x.metric, x.value, x."limit", x.ts
    FROM jsonb_to_recordset(p_samples)
           AS x(ci text, ci_id bigint, metric text, value double precision,
                "limit" double precision, ts timestamptz)
   WHERE x.metric IS NOT NULL AND x.metric <> '' AND x.ts IS NOT NULL
     AND x.value IS NOT NULL AND x.value NOT IN ('NaN', 'Infinity', '-Infinity')
     AND (x."limit" IS NULL OR (x."limit" > 0 AND x."limit" <> 'Infinity'));
  GET DIAGNOSTICS v_bound = ROW_COUNT;
  v_total := jsonb_array_length(p_samples);
  IF v_bound <> v_total THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = format('triaged.ingest_capacity: %s of %s samples lack metric, ts or a finite value',
                       v_total - v_bound, v_total);
  END IF;

  FOR v_month IN SELECT DISTINCT date_trunc('month', i.ts) FROM _cap_in i
                  WHERE i.ci_id IS NOT NULL LOOP
    IF to_regclass('triaged.capacity_sample_p' || to_char(v_month, 'YYYYMM')) IS NULL THEN
      PERFORM triaged.capacity_ensure_partitions(v_month, v_month);
    END IF;
  END LOOP;

  WITH ins AS (
    INSERT INTO triaged.capacity_sample AS c (ci_id, metric, ts, value, capacity_limit)
    SELECT DISTINCT ON (i.ci_id, i.metric, i.ts) i.ci_id, i.metric, i.ts, i.value, i.lim
      FROM _cap_in i WHERE i.ci_id IS NOT NULL
     ORDER BY i.ci_id, i.metric, i.ts
    ON CONFLICT (ci_id, metric, ts) DO NOTHING
    RETURNING c.ts),
  hours AS (
    INSERT INTO triaged.capacity_dirty (hour)
    SELECT DISTINCT date_trunc('hour', ins.ts) FROM ins
    ON CONFLICT (hour) DO NOTHING)
  SELECT count(*) INTO v_ins FROM ins;

  RETURN QUERY
  SELECT 'capacity.stats', NULL::text,
         json_build_object('inserted', v_ins,
                           'duplicates', (SELECT count(*) FROM _cap_in WHERE ci_id IS NOT NULL) - v_ins,
                           'unknown_ci', (SELECT count(*) FROM _cap_in WHERE ci_id IS NULL),
                           'unknown_names', (SELECT coalesce(json_agg(DISTINCT u.ci), '[]')
                                               FROM (SELECT i.ci FROM _cap_in i
                                                      WHERE i.ci_id IS NULL LIMIT 5) u));

  -- limits: the newest sample of each series in the batch
  RETURN QUERY
  WITH newest AS (
    SELECT DISTINCT ON (i.ci_id, i.metric) i.ci_id, i.metric, i.value, i.lim, i.ts
      FROM _cap_in i WHERE i.ci_id IS NOT NULL AND i.lim IS NOT NULL
     ORDER BY i.ci_id, i.metric, i.ts DESC),
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

-- ---------------------------------------------------------------------------
-- rollup, series, retention and warnings: called by the daemon every
-- [capacity] rollup_interval with
--   {"now", "window_ms", "horizon_ms", "retention_ms", "min_points", "min_r2",
--    "max_hours", "open_hour_ms"}
-- Rebuilds up to max_hours dirty hours (oldest first; rows another instance
-- works on are skipped), moves the series windows, makes partitions ahead,
-- drops partitions past the retention, and returns a 'capacity.warning' row
-- per series whose forecast newly falls within the horizon, and one
-- 'capacity.tick' stats row.

-- Rebuild one hour's rollup from the raw samples and fold the change into the
-- series whose window holds that hour.
CREATE FUNCTION triaged._capacity_rollup_hour(p_hour timestamptz, p_window_start timestamptz)
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
  INSERT INTO _cap_new
  SELECT s.ci_id, s.metric, p_hour, count(*), min(s.value), max(s.value), avg(s.value),
         percentile_cont(0.95) WITHIN GROUP (ORDER BY s.value),
         max(s.ts),
         (array_agg(s.value ORDER BY s.ts DESC))[1],
         (array_agg(s.capacity_limit ORDER BY s.ts DESC))[1],
         avg(triaged.capacity_t(s.ts)),
         coalesce(regr_sxx(s.value, triaged.capacity_t(s.ts)), 0),
         coalesce(regr_syy(s.value, triaged.capacity_t(s.ts)), 0),
         coalesce(regr_sxy(s.value, triaged.capacity_t(s.ts)), 0),
         p_hour >= p_window_start
    FROM triaged.capacity_sample s
   WHERE s.ts >= p_hour AND s.ts < p_hour + interval '1 hour'
   GROUP BY s.ci_id, s.metric;
  GET DIAGNOSTICS v_n = ROW_COUNT;
  -- a temporary table has no statistics: without them the joins below are
  -- planned for a few rows and loop over capacity_series once per bucket
  ANALYZE _cap_new;

  -- the series: minus the hour's old sums (when they were in), plus the new
  INSERT INTO triaged.capacity_series AS cs (ci_id, metric, n, mean_t, mean_v, stt, svv, stv,
                                             last_ts, last_value, capacity_limit, updated_at)
  SELECT nw.ci_id, nw.metric, (m).n, (m).mean_t, (m).mean_v, (m).stt, (m).svv, (m).stv,
         nw.last_ts, nw.last_value, nw.capacity_limit, now()
    FROM (SELECT nw.*,
                 triaged.capacity_merge(
                   triaged.capacity_unmerge(
                     coalesce(ROW(cs.n, cs.mean_t, cs.mean_v, cs.stt, cs.svv, cs.stv)::triaged.capacity_sums,
                              ROW(0, 0, 0, 0, 0, 0)::triaged.capacity_sums),
                     CASE WHEN old.in_series
                          THEN ROW(old.samples, old.mean_t, old.avg_value, old.stt, old.svv, old.stv)::triaged.capacity_sums
                          ELSE ROW(0, 0, 0, 0, 0, 0)::triaged.capacity_sums END),
                   CASE WHEN nw.in_series
                        THEN ROW(nw.samples, nw.mean_t, nw.avg_value, nw.stt, nw.svv, nw.stv)::triaged.capacity_sums
                        ELSE ROW(0, 0, 0, 0, 0, 0)::triaged.capacity_sums END) AS m
            FROM _cap_new nw
            LEFT JOIN triaged.capacity_hourly old
              ON old.ci_id = nw.ci_id AND old.metric = nw.metric AND old.hour = nw.hour
            LEFT JOIN triaged.capacity_series cs
              ON cs.ci_id = nw.ci_id AND cs.metric = nw.metric
          OFFSET 0) nw -- (m).x must not compute m once per field
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

CREATE FUNCTION triaged.capacity_tick(p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
AS $$
DECLARE
  v_now        timestamptz := coalesce((p_opts->>'now')::timestamptz, now());
  v_window     interval := coalesce((p_opts->>'window_ms')::float8, 2592000000) * interval '1 millisecond';
  v_horizon    interval := coalesce((p_opts->>'horizon_ms')::float8, 7776000000) * interval '1 millisecond';
  v_retention  interval := coalesce((p_opts->>'retention_ms')::float8, 7776000000) * interval '1 millisecond';
  v_min_points integer := coalesce((p_opts->>'min_points')::integer, 12);
  v_min_r2     double precision := coalesce((p_opts->>'min_r2')::float8, 0.5);
  v_max_hours  integer := coalesce((p_opts->>'max_hours')::integer, 24);
  v_open_delay interval := coalesce((p_opts->>'open_hour_ms')::float8, 300000) * interval '1 millisecond';
  v_wstart     timestamptz;
  v_hour       timestamptz;
  v_hours      integer := 0;
  v_buckets    integer := 0;
  v_expired    integer := 0;
  v_dropped    integer := 0;
  v_part       record;
BEGIN
  v_wstart := date_trunc('hour', v_now - v_window);

  -- 1. dirty hours, oldest first
  FOR v_hour IN SELECT d.hour FROM triaged.capacity_dirty d
                  WHERE v_open_delay <= interval '0' OR d.hour + interval '1 hour' <= v_now
                     OR d.since <= v_now - v_open_delay
                  ORDER BY d.hour LIMIT v_max_hours FOR UPDATE SKIP LOCKED LOOP
    DELETE FROM triaged.capacity_dirty WHERE hour = v_hour;
    v_buckets := v_buckets + triaged._capacity_rollup_hour(v_hour, v_wstart);
    v_hours := v_hours + 1;
  END LOOP;

  -- 2. hours that left the window leave their series
  WITH gone AS (
    UPDATE triaged.capacity_hourly h SET in_series = false
     WHERE h.in_series AND h.hour < v_wstart
    RETURNING h.*),
  per AS (
    SELECT g.ci_id, g.metric, array_agg(ROW(g.samples, g.mean_t, g.avg_value, g.stt, g.svv,
                                            g.stv)::triaged.capacity_sums) AS parts
      FROM gone g GROUP BY g.ci_id, g.metric),
  upd AS (
    UPDATE triaged.capacity_series cs
       SET n = (m).n, mean_t = (m).mean_t, mean_v = (m).mean_v, stt = (m).stt,
           svv = (m).svv, stv = (m).stv, updated_at = now()
      FROM (SELECT per.ci_id, per.metric,
                   (SELECT triaged._capacity_unmerge_all(
                             ROW(cs2.n, cs2.mean_t, cs2.mean_v, cs2.stt, cs2.svv, cs2.stv)::triaged.capacity_sums,
                             per.parts)
                      FROM triaged.capacity_series cs2
                     WHERE cs2.ci_id = per.ci_id AND cs2.metric = per.metric) AS m
              FROM per) x
     WHERE cs.ci_id = x.ci_id AND cs.metric = x.metric
    RETURNING 1)
  SELECT count(*) INTO v_expired FROM upd;

  -- 3. partitions: ahead, and past the retention
  PERFORM triaged.capacity_ensure_partitions(v_now, v_now + interval '2 months');
  FOR v_part IN
    SELECT c.relname
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
      JOIN pg_class p ON p.oid = i.inhparent
      JOIN pg_namespace n ON n.oid = p.relnamespace
     WHERE n.nspname = 'triaged' AND p.relname = 'capacity_sample'
       AND c.relname ~ '^capacity_sample_p[0-9]{6}$'
       AND to_timestamp(substr(c.relname, 18), 'YYYYMM') + interval '1 month' < v_now - v_retention
  LOOP
    EXECUTE format('DROP TABLE triaged.%I', v_part.relname);
    v_dropped := v_dropped + 1;
  END LOOP;

  -- 4. warnings: forecasts newly within the horizon (and the state cleared
  --    for those that left it, so a later return warns again)
  RETURN QUERY
  WITH f AS (
    SELECT cs.ci_id, cs.metric, cs.last_value, cs.capacity_limit, cs.warned_exhaustion_at,
           triaged.capacity_fit(cs.n, cs.mean_t, cs.mean_v, cs.stt, cs.svv, cs.stv,
                                cs.capacity_limit, cs.last_value, v_now,
                                v_min_points, v_min_r2) AS fit
      FROM triaged.capacity_series cs
     WHERE cs.updated_at > v_now - interval '1 day' OR cs.warned_exhaustion_at IS NOT NULL),
  w AS (
    UPDATE triaged.capacity_series cs
       SET warned_exhaustion_at = CASE WHEN (f.fit).status = 'ok'
                                            AND (f.fit).exhaustion_at <= v_now + v_horizon
                                       THEN (f.fit).exhaustion_at END
      FROM f
     WHERE cs.ci_id = f.ci_id AND cs.metric = f.metric
       AND (((f.fit).status = 'ok' AND (f.fit).exhaustion_at <= v_now + v_horizon)
            <> (f.warned_exhaustion_at IS NOT NULL))
    RETURNING cs.ci_id, cs.metric, cs.warned_exhaustion_at, f.fit, f.last_value, f.capacity_limit)
  SELECT 'capacity.warning', c.name,
         json_build_object('ci', c.name, 'ci_id', w.ci_id, 'metric', w.metric,
                           'exhaustion_at', (w.fit).exhaustion_at,
                           'earliest_at', (w.fit).earliest_at, 'latest_at', (w.fit).latest_at,
                           'slope_per_day', (w.fit).slope_per_day, 'r2', (w.fit).r2,
                           'growth_30d_pct', (w.fit).growth_30d_pct,
                           'last_value', w.last_value, 'limit', w.capacity_limit,
                           'horizon_days', extract(epoch FROM v_horizon) / 86400)
    FROM w JOIN triaged.ci c ON c.id = w.ci_id
   WHERE w.warned_exhaustion_at IS NOT NULL;

  RETURN QUERY SELECT 'capacity.tick', NULL::text,
    json_build_object('hours', v_hours, 'buckets', v_buckets, 'expired', v_expired,
                      'partitions_dropped', v_dropped,
                      'dirty_left', (SELECT count(*) FROM triaged.capacity_dirty));
END $$;

CREATE FUNCTION triaged._capacity_unmerge_all(p_s triaged.capacity_sums,
                                              p_parts triaged.capacity_sums[])
RETURNS triaged.capacity_sums
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v triaged.capacity_sums := p_s;
  x triaged.capacity_sums;
BEGIN
  FOREACH x IN ARRAY p_parts LOOP
    v := triaged.capacity_unmerge(v, x);
  END LOOP;
  RETURN v;
END $$;

-- ---------------------------------------------------------------------------
-- queries

-- The fit of one series over [p_now - p_window, p_now] from the hourly rollups
-- (whole hours; the hours not rolled up yet are not in it).
CREATE FUNCTION triaged.capacity_trend_of(p_ci_id bigint, p_metric text, p_window interval,
                                          p_now timestamptz DEFAULT now(),
                                          p_min_points integer DEFAULT 12,
                                          p_min_r2 double precision DEFAULT 0.5)
RETURNS TABLE (ci_id bigint, metric text, status text, samples bigint,
               slope_per_day double precision, r2 double precision,
               fitted_now double precision, growth_30d_pct double precision,
               last_value double precision, last_ts timestamptz,
               capacity_limit double precision, exhaustion_at timestamptz,
               earliest_at timestamptz, latest_at timestamptz)
LANGUAGE sql STABLE AS $$
  WITH h AS (
    SELECT * FROM triaged.capacity_hourly h
     WHERE h.ci_id = p_ci_id AND h.metric = p_metric
       AND h.hour >= date_trunc('hour', p_now - p_window) AND h.hour <= p_now),
  tot AS (
    SELECT sum(h.samples) AS n,
           sum(h.samples * h.mean_t) / sum(h.samples) AS mt,
           sum(h.samples * h.avg_value) / sum(h.samples) AS mv
      FROM h),
  s AS (
    SELECT tot.n, tot.mt, tot.mv,
           sum(h.stt + h.samples * (h.mean_t - tot.mt) ^ 2) AS stt,
           sum(h.svv + h.samples * (h.avg_value - tot.mv) ^ 2) AS svv,
           sum(h.stv + h.samples * (h.mean_t - tot.mt) * (h.avg_value - tot.mv)) AS stv
      FROM h, tot GROUP BY tot.n, tot.mt, tot.mv),
  last AS (
    SELECT h.last_value, h.last_ts, h.capacity_limit FROM h ORDER BY h.hour DESC LIMIT 1)
  SELECT p_ci_id, p_metric, (f).status, coalesce((f).samples, 0), (f).slope_per_day, (f).r2,
         (f).fitted_now, (f).growth_30d_pct, last.last_value, last.last_ts,
         last.capacity_limit, (f).exhaustion_at, (f).earliest_at, (f).latest_at
    FROM (SELECT triaged.capacity_fit(s.n::bigint, s.mt, s.mv, s.stt, s.svv, s.stv,
                                      (SELECT l.capacity_limit FROM last l),
                                      (SELECT l.last_value FROM last l), p_now,
                                      p_min_points, p_min_r2) AS f
            FROM (SELECT 1) one LEFT JOIN s ON true OFFSET 0) x
    LEFT JOIN last ON true
$$;

-- Everything that runs out within p_horizon, soonest first, with the services
-- the CI belongs to (directly).
CREATE FUNCTION triaged.capacity_risks(p_horizon interval, p_now timestamptz DEFAULT now(),
                                       p_min_points integer DEFAULT 12,
                                       p_min_r2 double precision DEFAULT 0.5)
RETURNS TABLE (ci_id bigint, ci text, metric text, status text,
               exhaustion_at timestamptz, earliest_at timestamptz, latest_at timestamptz,
               slope_per_day double precision, r2 double precision,
               growth_30d_pct double precision, last_value double precision,
               capacity_limit double precision, services text[])
LANGUAGE sql STABLE AS $$
  SELECT f.ci_id, c.name, f.metric, (f.fit).status, (f.fit).exhaustion_at,
         (f.fit).earliest_at, (f.fit).latest_at, (f.fit).slope_per_day, (f.fit).r2,
         (f.fit).growth_30d_pct, f.last_value, f.capacity_limit,
         coalesce((SELECT array_agg(sv.name ORDER BY sv.name)
                     FROM triaged.service_ci sc JOIN triaged.service sv ON sv.id = sc.service_id
                    WHERE sc.ci_id = f.ci_id), '{}')
    FROM (SELECT cs.ci_id, cs.metric, cs.last_value, cs.capacity_limit,
                 triaged.capacity_fit(cs.n, cs.mean_t, cs.mean_v, cs.stt, cs.svv, cs.stv,
                                      cs.capacity_limit, cs.last_value, p_now,
                                      p_min_points, p_min_r2) AS fit
            FROM triaged.capacity_series cs
           WHERE cs.capacity_limit IS NOT NULL AND cs.n >= p_min_points
             -- cheap necessary conditions first: the fit's line crosses the
             -- limit within the horizon, or the series is at or over it
             -- (with a slope <= 0 the fit now is at most mean_v)
             AND ((cs.stv > 0
                   AND cs.mean_t + (cs.capacity_limit - cs.mean_v) * cs.stt / cs.stv
                       <= triaged.capacity_t(p_now + p_horizon))
                  OR cs.last_value >= cs.capacity_limit
                  OR cs.mean_v >= cs.capacity_limit)
          OFFSET 0) f -- (f.fit).x must not call capacity_fit once per field
    JOIN triaged.ci c ON c.id = f.ci_id
   WHERE ((f.fit).status = 'ok' AND (f.fit).exhaustion_at <= p_now + p_horizon)
      OR (f.fit).status = 'exhausted'
   ORDER BY (f.fit).status = 'exhausted' DESC, (f.fit).exhaustion_at, c.name, f.metric
$$;

-- The view (contract name): every series' fit over the [capacity] window as
-- kept in capacity_series (default thresholds: 12 points, r2 0.5).
CREATE VIEW triaged.capacity_trend AS
SELECT cs.ci_id, c.name AS ci, cs.metric, (f).samples, (f).status, (f).slope_per_day,
       (f).r2, (f).fitted_now, (f).growth_30d_pct, cs.last_value, cs.last_ts,
       cs.capacity_limit, (f).exhaustion_at, (f).earliest_at, (f).latest_at
  FROM triaged.capacity_series cs
  JOIN triaged.ci c ON c.id = cs.ci_id
  CROSS JOIN LATERAL (SELECT triaged.capacity_fit(cs.n, cs.mean_t, cs.mean_v, cs.stt, cs.svv,
                                                  cs.stv, cs.capacity_limit, cs.last_value,
                                                  now(), 12, 0.5) AS f OFFSET 0) x;
COMMENT ON VIEW triaged.capacity_trend IS
  'Least-squares fit per (ci_id, metric) over the [capacity] window (hourly '
  'rollups): status, slope_per_day, r2, fitted_now, growth_30d_pct, last_value, '
  'capacity_limit, exhaustion_at with the earliest/latest plausible crossing.';

-- ---------------------------------------------------------------------------
-- One batch: alerts (triaged.ingest, with the offsets compare-and-set) and
-- samples, in one statement and so one transaction. When ingest reports a
-- fenced partition nothing is applied, samples included.
CREATE FUNCTION triaged.ingest_all(p_batch jsonb, p_samples jsonb, p_offsets jsonb,
                                   p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_rows triaged.ingest_row[];
BEGIN
  SELECT coalesce(array_agg(r), '{}') INTO v_rows
    FROM triaged.ingest(p_batch, p_offsets, p_opts) r;
  RETURN QUERY SELECT * FROM unnest(v_rows);
  IF p_samples IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM unnest(v_rows) r WHERE r.kind = 'fenced') THEN
    RETURN QUERY SELECT * FROM triaged.ingest_capacity(p_samples, p_opts);
  END IF;
END $$;

-- ---------------------------------------------------------------------------
-- HTTP API (daemon/api_capacity.c)

-- GET /api/v1/capacity/trend: the fit of one series (ci by name or alias);
-- NULL when there is no such CI.
CREATE FUNCTION triaged.api_capacity_trend(p_ci text, p_metric text, p_window interval,
                                           p_horizon interval, p_min_points integer,
                                           p_min_r2 double precision)
RETURNS json
LANGUAGE sql STABLE AS $$
  SELECT json_build_object(
           'ci', c.name, 'metric', t.metric, 'status', t.status, 'samples', t.samples,
           'window_days', extract(epoch FROM p_window) / 86400,
           'slope_per_day', t.slope_per_day, 'r2', t.r2, 'fitted_now', t.fitted_now,
           'growth_30d_pct', t.growth_30d_pct, 'last_value', t.last_value,
           'last_ts', t.last_ts, 'limit', t.capacity_limit,
           'exhaustion_at', t.exhaustion_at, 'earliest_at', t.earliest_at,
           'latest_at', t.latest_at,
           'horizon_days', extract(epoch FROM p_horizon) / 86400,
           'within_horizon', coalesce(t.status = 'exhausted'
                                      OR t.exhaustion_at <= now() + p_horizon, false))
    FROM triaged.ci c
    CROSS JOIN LATERAL triaged.capacity_trend_of(c.id, p_metric, p_window, now(),
                                                 p_min_points, p_min_r2) t
   WHERE c.id = coalesce((SELECT x.id FROM triaged.ci x WHERE x.name = p_ci),
                         (SELECT min(y.id) FROM triaged.ci y WHERE y.aliases @> ARRAY[p_ci]))
$$;

-- GET /api/v1/capacity/risks: what runs out within the horizon, soonest
-- first, and per service the first thing that runs out.
CREATE FUNCTION triaged.api_capacity_risks(p_horizon interval, p_limit integer,
                                           p_min_points integer,
                                           p_min_r2 double precision)
RETURNS json
LANGUAGE sql STABLE AS $$
  WITH r AS (
    SELECT * FROM triaged.capacity_risks(p_horizon, now(), p_min_points, p_min_r2))
  SELECT json_build_object(
    'horizon_days', extract(epoch FROM p_horizon) / 86400,
    'count', (SELECT count(*) FROM r),
    'risks', coalesce((SELECT json_agg(json_build_object(
                         'ci', l.ci, 'metric', l.metric, 'status', l.status,
                         'exhaustion_at', l.exhaustion_at, 'earliest_at', l.earliest_at,
                         'latest_at', l.latest_at, 'slope_per_day', l.slope_per_day,
                         'r2', l.r2, 'growth_30d_pct', l.growth_30d_pct,
                         'last_value', l.last_value, 'limit', l.capacity_limit,
                         'services', l.services))
                         FROM (SELECT * FROM r LIMIT p_limit) l), '[]'),
    'services', coalesce((SELECT json_agg(json_build_object(
                            'service', s.service, 'first_exhaustion_at', s.first_at,
                            'ci', s.ci, 'metric', s.metric, 'at_risk', s.n)
                            ORDER BY s.first_at NULLS FIRST, s.service)
                            FROM (SELECT DISTINCT ON (u.service) u.service, r.ci, r.metric,
                                         r.exhaustion_at AS first_at,
                                         count(*) OVER (PARTITION BY u.service) AS n
                                    FROM r CROSS JOIN LATERAL unnest(r.services) AS u(service)
                                   ORDER BY u.service, r.exhaustion_at NULLS FIRST) s), '[]'))
$$;

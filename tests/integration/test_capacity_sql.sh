#!/usr/bin/env bash
# Capacity trends in SQL (sql/005_capacity.sql), exact cases on synthetic
# series of 5-minute samples over 30 days, ingested the way the daemon does
# (triaged.ingest_capacity) and rolled up by triaged.capacity_tick:
#   - a straight line: slope and crossing time exact (within 1 %)
#   - the same line with noise: within 1 % of the true values
#   - flat and shrinking series: no forecast; too few points: insufficient
#   - a series across a month (partition) boundary is fitted whole
#   - hourly rollups equal what the raw samples say (count, min, max, p95)
#   - a sample sent twice is stored once; samples for unknown CIs are not
#   - the risk ranking, the capacity_trend view, the warnings (once), and
#     retention dropping old partitions while the rollups stay
source "$(dirname "$0")/lib.sh"

t_db
t_ctl
"${T_CTL[@]}" migrate >/dev/null || t_fail "migrate"

t_sql "INSERT INTO triaged.ci (name, aliases) VALUES
  ('line', '{}'), ('noisy', '{}'), ('flat', '{}'), ('shrink', '{}'), ('few', '{}'),
  ('cross', '{}'), ('aliased', '{al-1}')" >/dev/null

# series NAME START DAYS VALUE-EXPR (of d = days since START, i = sample index)
series() {
    t_sql "SELECT sum((SELECT (r.payload->>'inserted')::int FROM triaged.ingest_capacity(
        (SELECT jsonb_agg(jsonb_build_object('ci', '$1', 'metric', 'disk', 'limit', 1000,
                 'value', $4, 'ts', timestamptz '$2' + i * interval '5 min'))
           FROM (SELECT i, i / 288.0 AS d FROM generate_series(k * 288, least(k * 288 + 287, ($3 * 288)::int - 1)) i) x),
        '{}') r WHERE r.kind = 'capacity.stats'))
      FROM generate_series(0, ceil($3)::int - 1) k"
}
# deterministic noise in [-10, 10)
NOISE="20 * ((i * 0.6180339887) - floor(i * 0.6180339887) - 0.5)"
[ "$(series line '2026-10-01 00:00Z' 30 '500 + 10 * d')" = 8640 ] || t_fail "line not stored"
series noisy '2026-10-01 00:00Z' 30 "500 + 10 * d + $NOISE" >/dev/null
series flat '2026-10-01 00:00Z' 30 "700 + $NOISE" >/dev/null
series shrink '2026-10-01 00:00Z' 30 '900 - 5 * d' >/dev/null
t_sql "SELECT triaged.ingest_capacity((SELECT jsonb_agg(jsonb_build_object('ci','few','metric','disk',
         'limit', 1000, 'value', 100 + i, 'ts', timestamptz '2026-10-30 12:00Z' + i * interval '5 min'))
         FROM generate_series(0, 4) i), '{}')" >/dev/null
# 30 days across the October/November boundary
series cross '2026-10-16 00:00Z' 30 '200 + 20 * d' >/dev/null
# by alias; a duplicate; an unknown CI
t_expect_sql "SELECT payload->>'inserted' || ' ' || (payload->>'duplicates') || ' ' || (payload->>'unknown_ci')
  FROM triaged.ingest_capacity('[{\"ci\":\"al-1\",\"metric\":\"m\",\"value\":1,\"ts\":\"2026-10-30T00:00:00Z\"},
     {\"ci\":\"aliased\",\"metric\":\"m\",\"value\":1,\"ts\":\"2026-10-30T00:00:00Z\"},
     {\"ci\":\"aliased\",\"metric\":\"m\",\"value\":2,\"ts\":\"2026-10-30T00:00:00Z\"},
     {\"ci\":\"nobody\",\"metric\":\"m\",\"value\":1,\"ts\":\"2026-10-30T00:00:00Z\"}]', '{}')
  WHERE kind = 'capacity.stats'" "1 2 1"
t_expect_sql "SELECT payload->>'inserted' || ' ' || (payload->>'duplicates')
  FROM triaged.ingest_capacity('[{\"ci\":\"aliased\",\"metric\":\"m\",\"value\":5,\"ts\":\"2026-10-30T00:00:00Z\"}]', '{}')
  WHERE kind = 'capacity.stats'" "0 1"
t_expect_sql "SELECT count(*) || ' ' || min(value) FROM triaged.capacity_sample WHERE metric = 'm'" "1 1"
t_expect_sql "SELECT count(*) FROM pg_inherits WHERE inhparent = 'triaged.capacity_sample'::regclass
  AND inhrelid::regclass::text IN ('triaged.capacity_sample_p202610', 'triaged.capacity_sample_p202611')" 2

NOW='2026-10-31T00:00:00Z'
# the rollup: every dirty hour at once (open_hour_ms 0: those after this now too)
t_sql "SELECT kind, payload FROM triaged.capacity_tick('{\"now\":\"2026-10-31T00:00:00Z\",\"max_hours\":5000,\"open_hour_ms\":0}')" > "$T_DIR/tick1"
t_expect_sql "SELECT count(*) FROM triaged.capacity_dirty" 0
t_expect_sql "SELECT count(*) FROM triaged.capacity_hourly h JOIN triaged.ci c ON c.id = h.ci_id WHERE c.name = 'line'" 720
# an hour's rollup equals the raw samples of the hour
t_expect_sql "SELECT bool_and(h.samples = r.n AND h.min_value = r.mn AND h.max_value = r.mx
                 AND abs(h.p95_value - r.p95) < 1e-9 AND abs(h.avg_value - r.av) < 1e-9)
  FROM triaged.capacity_hourly h
  JOIN (SELECT ci_id, metric, date_trunc('hour', ts) AS hour, count(*) n, min(value) mn, max(value) mx,
               avg(value) av, percentile_cont(0.95) WITHIN GROUP (ORDER BY value) p95
          FROM triaged.capacity_sample GROUP BY 1, 2, 3) r
    ON r.ci_id = h.ci_id AND r.metric = h.metric AND r.hour = h.hour" t

trend() { # CI FIELD...: the trend of CI at NOW over 30 days
    local ci=$1; shift
    t_sql "SELECT $* FROM triaged.capacity_trend_of((SELECT id FROM triaged.ci WHERE name = '$ci'),
             'disk', '30 days', '$NOW')"
}
# exact line: 500 + 10/day reaches 1000 on day 50 = 2026-11-20 00:00
t_expect_sql "SELECT status || ' ' || samples || ' ' || round(slope_per_day::numeric, 6) || ' ' ||
  (abs(extract(epoch FROM exhaustion_at - timestamptz '2026-11-20 00:00Z')) < 1)
  FROM triaged.capacity_trend_of((SELECT id FROM triaged.ci WHERE name = 'line'), 'disk', '30 days', '$NOW')" \
  "ok 8640 10.000000 true"
# noisy: within 1 % (slope; crossing time measured from now: 20 days)
t_expect_sql "SELECT status || ' ' || (abs(slope_per_day - 10) / 10 < 0.01) || ' ' ||
  (abs(extract(epoch FROM exhaustion_at - timestamptz '2026-11-20 00:00Z')) / (20 * 86400) < 0.01) || ' ' ||
  (earliest_at < exhaustion_at AND exhaustion_at < latest_at)
  FROM triaged.capacity_trend_of((SELECT id FROM triaged.ci WHERE name = 'noisy'), 'disk', '30 days', '$NOW')" \
  "ok true true true"
t_expect_sql "SELECT status IN ('not_growing', 'poor_fit') AND exhaustion_at IS NULL
  FROM triaged.capacity_trend_of((SELECT id FROM triaged.ci WHERE name = 'flat'), 'disk', '30 days', '$NOW')" t
t_expect_sql "SELECT status || ' ' || (exhaustion_at IS NULL) || ' ' || round(slope_per_day::numeric, 6)
  FROM triaged.capacity_trend_of((SELECT id FROM triaged.ci WHERE name = 'shrink'), 'disk', '30 days', '$NOW')" \
  "not_growing true -5.000000"
t_expect_sql "SELECT status || ' ' || samples || ' ' || (exhaustion_at IS NULL)
  FROM triaged.capacity_trend_of((SELECT id FROM triaged.ci WHERE name = 'few'), 'disk', '30 days', '$NOW')" \
  "insufficient_data 5 true"
# across the partition boundary, at its own now: 200 + 20/day reaches 1000 on day 40 = 2026-11-25
t_expect_sql "SELECT status || ' ' || samples || ' ' || round(slope_per_day::numeric, 6) || ' ' ||
  (abs(extract(epoch FROM exhaustion_at - timestamptz '2026-11-25 00:00Z')) < 1)
  FROM triaged.capacity_trend_of((SELECT id FROM triaged.ci WHERE name = 'cross'), 'disk', '30 days',
                                 '2026-11-15T00:00:00Z')" "ok 8640 20.000000 true"

# the series table agrees with the on-demand fit (same window, merged hour by hour)
t_expect_sql "SELECT bool_and(abs((f).slope_per_day - t.slope_per_day) < 1e-6)
  FROM (SELECT cs.ci_id, triaged.capacity_fit(cs.n, cs.mean_t, cs.mean_v, cs.stt, cs.svv, cs.stv,
                 cs.capacity_limit, cs.last_value, '$NOW', 12, 0.5) f
          FROM triaged.capacity_series cs JOIN triaged.ci c ON c.id = cs.ci_id
         WHERE c.name IN ('line', 'noisy', 'shrink')) s
  CROSS JOIN LATERAL triaged.capacity_trend_of(s.ci_id, 'disk', '30 days', '$NOW') t" t
# risks within 90 days, soonest first (the cross series is only half in the window at this now)
t_expect_sql "SELECT string_agg(ci, ',' ORDER BY ci) FROM triaged.capacity_risks('90 days', '$NOW')
  WHERE ci IN ('line', 'noisy', 'flat', 'shrink', 'few')" "line,noisy"
t_expect_sql "SELECT bool_and(r.exhaustion_at >= coalesce(r.prev, r.exhaustion_at)) FROM (
  SELECT exhaustion_at, lag(exhaustion_at) OVER (ORDER BY o) prev
    FROM triaged.capacity_risks('90 days', '$NOW') WITH ORDINALITY AS x(ci_id, ci, metric, status,
         exhaustion_at, earliest_at, latest_at, slope_per_day, r2, growth_30d_pct, last_value,
         capacity_limit, services, o)) r" t
warned=$(grep '^capacity.warning' "$T_DIR/tick1" | sed 's/.*"ci" : "\([a-z]*\)".*/\1/' | sort | paste -sd,)
[ "$warned" = "cross,line,noisy" ] || t_fail "first tick warned for [$warned], not cross,line,noisy"
t_expect_sql "SELECT count(*) FROM triaged.capacity_tick('{\"now\":\"$NOW\"}') WHERE kind = 'capacity.warning'" 0
t_log "ok: warnings for cross, line, noisy on the first tick, none repeated"
# the view fits at now(), after 2026-11-20, when the line reached its limit
t_expect_sql "SELECT status || ' ' || round(slope_per_day::numeric, 6) FROM triaged.capacity_trend
  WHERE ci = 'line'" "exhausted 10.000000"

# retention: at 2027-06-01 the partitions older than 90 days go (October and
# November 2026 among them), rollups stay
t_sql "SELECT 1 FROM triaged.capacity_tick('{\"now\":\"2027-06-01T00:00:00Z\",\"retention_ms\":7776000000}')" >/dev/null
t_expect_sql "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = 'triaged.capacity_sample'::regclass
    AND to_timestamp(substr(c.relname, 18), 'YYYYMM') + interval '1 month' < timestamptz '2027-03-03'" 0
t_expect_sql "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = 'triaged.capacity_sample'::regclass AND c.relname = 'capacity_sample_p202706'" 1
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample" 0
t_expect_sql "SELECT count(*) FROM triaged.capacity_hourly h JOIN triaged.ci c ON c.id = h.ci_id WHERE c.name = 'line'" 720
t_expect_sql "SELECT n FROM triaged.capacity_series cs JOIN triaged.ci c ON c.id = cs.ci_id WHERE c.name = 'line'" 0
t_log "PASS"

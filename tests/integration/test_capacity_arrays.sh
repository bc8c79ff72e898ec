#!/usr/bin/env bash
# The batch statement's capacity ingest (sql/007_capacity_arrays.sql), called
# the way the daemon calls it (typed arrays; CI ids bound or NULL):
#   - bound samples are stored; unbound ones are bound by name, alias or
#     address; unknown CIs counted and named; arrays of different lengths
#     rejected
#   - a sample sent twice is stored once: twice in one batch (the first
#     kept), across batches, and against stored ones (the duplicate path);
#     a missing month partition is made; the hours are marked for the rollup
#   - after capacity_tick, every hourly rollup (count, min, max, avg, p95,
#     last value) equals a from-scratch computation over capacity_sample, and
#     the series sums equal the samples
#   - limit rows: a batch over its limit reports it, a batch back under it
#     reports "resolved" only while its capacity_limit alert fires
#   - a batch across a month boundary lands in both months' partitions
source "$(dirname "$0")/lib.sh"

t_db
t_ctl
"${T_CTL[@]}" migrate >/dev/null || t_fail "migrate"
t_sql "INSERT INTO triaged.ci (name, aliases, addresses) VALUES
  ('a', '{}', '{}'), ('b', '{b-alias}', '{}'), ('c', '{}', '{10.0.0.7}')" >/dev/null
id() { t_sql "SELECT id FROM triaged.ci WHERE name = '$1'"; }
A=$(id a); B=$(id b); C=$(id c)

# ingest BATCH-SQL: a VALUES list (ci_id, ci, metric, ts, value, limit) sent as arrays;
# prints the capacity.stats payload's inserted, duplicates and unknown_ci
ingest() {
    t_sql "WITH v(ci_id, ci, metric, ts, value, lim) AS (VALUES $1)
      SELECT (payload->>'inserted') || ' ' || (payload->>'duplicates') || ' ' || (payload->>'unknown_ci')
        FROM triaged.ingest_capacity_arrays(
          (SELECT array_agg(ci_id::bigint) FROM v), (SELECT array_agg(ci::text) FROM v),
          (SELECT array_agg(metric::text) FROM v), (SELECT array_agg(ts::timestamptz) FROM v),
          (SELECT array_agg(value::float8) FROM v), (SELECT array_agg(lim::float8) FROM v), '{}')
       WHERE kind = 'capacity.stats'"
}

# 1. binding: by id, by name, alias and address when unbound; one unknown;
#    the same sample twice in the batch (the first kept); the May partition
#    made on demand
t_expect_sql "SELECT count(*) FROM pg_class WHERE relname = 'capacity_sample_p202605'" 0
[ "$(ingest "($A, NULL, 'disk', '2026-05-05 10:01Z', 10, 100),
             (NULL, 'a', 'disk', '2026-05-05 10:02Z', 20, 100),
             (NULL, 'b-alias', 'disk', '2026-05-05 10:03Z', 30, 100),
             (NULL, '10.0.0.7', 'disk', '2026-05-05 10:04Z', 40, NULL),
             (NULL, 'nobody', 'disk', '2026-05-05 10:05Z', 50, 100),
             ($A, NULL, 'disk', '2026-05-05 10:01Z', 11, 100)")" = "4 1 1" ] || t_fail "batch 1"
t_expect_sql "SELECT string_agg(c.name || '=' || s.value, ',' ORDER BY s.ts) FROM triaged.capacity_sample s JOIN triaged.ci c ON c.id = s.ci_id" "a=10,a=20,b=30,c=40"
t_expect_sql "SELECT count(*) FROM pg_class WHERE relname = 'capacity_sample_p202605'" 1
t_expect_sql "SELECT string_agg(DISTINCT hour::text, ',') FROM (SELECT hour FROM triaged.capacity_dirty UNION ALL SELECT hour FROM triaged.capacity_dirty_mark) d" "2026-05-05 10:00:00+00"
t_expect_sql "SELECT payload->'unknown_names' FROM triaged.ingest_capacity_arrays('{NULL}', '{ghost}', '{m}',
  '{2026-05-05 10:00Z}', '{1}', '{NULL}', '{}') WHERE kind = 'capacity.stats'" '["ghost"]'
# arrays of different lengths: an error, nothing stored
if t_sql "SELECT triaged.ingest_capacity_arrays('{1,2}', '{NULL,NULL}', '{m,m}', '{2026-05-05 10:00Z}', '{1,1}', '{NULL,NULL}', '{}')" 2>/dev/null; then
    t_fail "arrays of different lengths accepted"
fi
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample" 4

# 2. one batch of 3,000 samples over 3 series and 5 hours, 1,000 of them in
#    the batch twice: 2,000 new, 1,000 duplicates
ingest3() {
    t_sql "SELECT (r.payload->>'inserted') || ' ' || (r.payload->>'duplicates')
      FROM (SELECT array_agg(x.ci_id ORDER BY k) i, array_fill(NULL::text, ARRAY[count(*)::int]) c,
                   array_agg('disk'::text) m, array_agg(x.ts ORDER BY k) t, array_agg(x.v ORDER BY k) v,
                   array_agg(x.l ORDER BY k) l
              FROM (SELECT k, (ARRAY[$A, $B, $C])[1 + (k % 2000) % 3]::bigint AS ci_id,
                           timestamptz '2026-05-05 08:00:01Z' + (k % 2000) * interval '9 s' AS ts,
                           ((k % 2000) * 7919 % 1000)::float8 AS v,
                           CASE WHEN k % 2 = 0 THEN 1000::float8 END AS l
                      FROM generate_series(0, 2999) k) x) a,
           triaged.ingest_capacity_arrays(a.i, a.c, a.m, a.t, a.v, a.l, '{}') r
     WHERE r.kind = 'capacity.stats'"
}
[ "$(ingest3)" = "2000 1000" ] || t_fail "batch 2"
# 3. the 4 stored in 1., sent again with a new one: 1 new, 4 duplicates
[ "$(ingest "($A, NULL, 'disk', '2026-05-05 10:01Z', -5, 100), ($A, NULL, 'disk', '2026-05-05 10:02Z', -5, 100),
             ($B, NULL, 'disk', '2026-05-05 10:03Z', -5, 100), ($C, NULL, 'disk', '2026-05-05 10:04Z', -5, NULL),
             ($C, NULL, 'disk', '2026-05-05 12:59:59Z', 7, NULL)")" = "1 4 0" ] || t_fail "batch 3"
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample" 2005
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample WHERE value = -5" 0
# all of it again: nothing new
[ "$(ingest3)" = "0 3000" ] || t_fail "batch 2 again"

# 4. rollups after the tick equal a from-scratch computation
t_sql "SELECT kind FROM triaged.capacity_tick('{\"now\":\"2026-05-06T00:00:00Z\",\"max_hours\":100,\"open_hour_ms\":0}')" >/dev/null
t_expect_sql "SELECT count(*) FROM triaged.capacity_dirty" 0
t_expect_sql "SELECT count(*) FROM triaged.capacity_hourly" \
    "$(t_sql "SELECT count(DISTINCT (ci_id, metric, date_trunc('hour', ts))) FROM triaged.capacity_sample")"
t_expect_sql "SELECT count(*) FILTER (WHERE h.samples = r.n AND h.min_value = r.mn AND h.max_value = r.mx
                 AND abs(h.p95_value - r.p95) < 1e-9 AND abs(h.avg_value - r.av) < 1e-9
                 AND h.last_value = r.lv AND h.last_ts = r.lt) || '/' || count(*)
  FROM triaged.capacity_hourly h
  JOIN (SELECT ci_id, metric, date_trunc('hour', ts) AS hour, count(*) n, min(value) mn, max(value) mx,
               avg(value) av, percentile_cont(0.95) WITHIN GROUP (ORDER BY value) p95,
               (array_agg(value ORDER BY ts DESC))[1] lv, max(ts) lt
          FROM triaged.capacity_sample GROUP BY 1, 2, 3) r
    ON r.ci_id = h.ci_id AND r.metric = h.metric AND r.hour = h.hour" \
    "$(t_sql "SELECT count(*) FROM triaged.capacity_hourly")/$(t_sql "SELECT count(*) FROM triaged.capacity_hourly")"
t_expect_sql "SELECT string_agg(cs.n::text, ',' ORDER BY cs.ci_id) FROM triaged.capacity_series cs" \
    "$(t_sql "SELECT string_agg(n::text, ',' ORDER BY ci_id) FROM (SELECT ci_id, count(*) n FROM triaged.capacity_sample GROUP BY 1) x")"

# 5. limits: over the limit -> 'firing'; back under without a firing alert ->
#    nothing; with one -> 'resolved'
lim() {
    t_sql "SELECT coalesce(string_agg(payload->>'status', ','), '-') FROM triaged.ingest_capacity_arrays(
      '{$B}', '{NULL}', '{conns}', '{$1}', '{$2}', '{100}', '{}') WHERE kind = 'capacity.limit'"
}
[ "$(lim '2026-05-06 00:00Z' 100)" = firing ] || t_fail "over the limit not reported"
[ "$(lim '2026-05-06 00:05Z' 50)" = - ] || t_fail "under the limit reported without an alert"
t_sql "INSERT INTO triaged.alert (fingerprint, source, resource, check_name, severity, status, labels, first_seen, last_seen, fired_at, state_changed_at)
       VALUES ('cap-b', 'capacity', 'b', 'capacity_limit', 'major', 'firing', '{\"metric\":\"conns\"}', now(), now(), now(), now())" >/dev/null
[ "$(lim '2026-05-06 00:10Z' 40)" = resolved ] || t_fail "back under the limit not reported"

# 6. a batch across a month boundary (through capacity_sample's routing, not
#    straight into one partition): each sample in its month's partition,
#    April's made on demand
[ "$(ingest "($A, NULL, 'x', '2026-04-30 23:59:59Z', 1, NULL), ($A, NULL, 'x', '2026-05-01 00:00Z', 2, NULL)")" = "2 0 0" ] \
    || t_fail "batch across months"
t_expect_sql "SELECT string_agg(tableoid::regclass::text || '=' || value, ',' ORDER BY ts)
  FROM triaged.capacity_sample WHERE metric = 'x'" \
    "triaged.capacity_sample_p202604=1,triaged.capacity_sample_p202605=2"
t_log "PASS"

#!/usr/bin/env bash
# Availability against SLA targets in SQL (sql/006_sla.sql), hand-computed
# cases exact to the second, in October 2026 (31 days = 2,678,400 s):
#   overlap   24x7, outages 10:00-11:00 and 10:30-12:00 (union 2 h) + 30 s
#   cross     an outage across the period's start, one across its end
#   maint     maintenance on the service overlapping an outage, and on a CI
#   dst       Mon-Fri 08:00-18:00 Europe/Berlin, an outage Friday 17:00 CEST
#             to Monday 09:00 CET across the end of DST (25 Oct)
#   open      an incident still open (to now), also in the running month
#   merged    two incidents merged by the engine's _merge: counted once
#   none      no incidents: 100 %
#   degraded  degraded_counts_as_down = false: only urgency 1 counts
# then the events of sla_tick (breach and burn once, burn resolved), the
# SLA in the CMDB document and triagectl sla set, and the view.
source "$(dirname "$0")/lib.sh"

t_db
t_ctl
"${T_CTL[@]}" migrate >/dev/null || t_fail "migrate"

t_sql "INSERT INTO triaged.ci (name) VALUES ('maint-ci'), ('other-ci');
INSERT INTO triaged.service (name) VALUES ('overlap'), ('cross'), ('maint'), ('dst'), ('open'),
  ('merged'), ('none'), ('degraded');
INSERT INTO triaged.service_ci SELECT s.id, c.id FROM triaged.service s, triaged.ci c
 WHERE s.name = 'maint' AND c.name = 'maint-ci';
INSERT INTO triaged.sla (service_id, target, service_hours, degraded_counts_as_down)
SELECT id, 99.9, CASE name WHEN 'dst' THEN 'Mon-Fri 08:00-18:00 Europe/Berlin' ELSE '24x7' END,
       name <> 'degraded' FROM triaged.service;
-- inc(service, opened, resolved or NULL, urgency, priority): a root incident impacting it
CREATE FUNCTION public.inc(p_s text, p_o timestamptz, p_r timestamptz, p_u int DEFAULT 1,
                           p_p int DEFAULT 2) RETURNS bigint LANGUAGE sql AS \$\$
  WITH i AS (INSERT INTO triaged.incident (title, resource, status, opened_at, resolved_at, urgency, priority)
             VALUES ('t', 'r-' || p_s || '-' || extract(epoch FROM p_o), CASE WHEN p_r IS NULL THEN 'new' ELSE 'resolved' END,
                     p_o, p_r, p_u, p_p) RETURNING id),
  s AS (INSERT INTO triaged.incident_service SELECT i.id, s.id FROM i, triaged.service s WHERE s.name = p_s)
  SELECT id FROM i
\$\$;
SELECT inc('overlap', '2026-10-05 10:00Z', '2026-10-05 11:00Z');
SELECT inc('overlap', '2026-10-05 10:30Z', '2026-10-05 12:00Z');
SELECT inc('overlap', '2026-10-20 00:00:00Z', '2026-10-20 00:00:30Z');
SELECT inc('cross', '2026-09-30 23:00Z', '2026-10-01 01:00Z');
SELECT inc('cross', '2026-10-31 23:30Z', '2026-11-01 00:30Z');
SELECT inc('maint', '2026-10-10 10:00Z', '2026-10-10 12:00Z');
SELECT inc('dst', '2026-10-23 15:00Z', '2026-10-26 08:00Z');
SELECT inc('dst', '2026-10-24 10:00Z', '2026-10-24 12:00Z');
SELECT inc('open', '2026-10-31 20:00Z', NULL);
SELECT inc('degraded', '2026-10-03 00:00Z', '2026-10-03 01:00Z', 2, 3);
SELECT inc('degraded', '2026-10-04 00:00Z', '2026-10-04 00:10Z', 1, 2);
UPDATE triaged.incident SET acknowledged_at = opened_at + interval '5 min'
 WHERE opened_at IN ('2026-10-05 10:00Z', '2026-10-05 10:30Z');
INSERT INTO triaged.maintenance (service_id, during, reason)
SELECT id, '[2026-10-10 11:00Z, 2026-10-10 13:00Z)', 'patching' FROM triaged.service WHERE name = 'maint';
INSERT INTO triaged.maintenance (ci_id, during, change_ref)
SELECT id, '[2026-10-12 00:00Z, 2026-10-12 01:00Z)', 'CHG-1' FROM triaged.ci WHERE name = 'maint-ci';
INSERT INTO triaged.maintenance (ci_id, during)
SELECT id, '[2026-10-13 00:00Z, 2026-10-13 01:00Z)' FROM triaged.ci WHERE name = 'other-ci'" >/dev/null

# merged: the engine's own merge (root opened later; the merge moves its
# opened_at back and its services over)
t_sql "SELECT inc('merged', '2026-10-07 10:05Z', NULL);
UPDATE triaged.incident SET ci_id = (SELECT id FROM triaged.ci WHERE name = 'other-ci'), resource = NULL
 WHERE opened_at = '2026-10-07 10:05Z';
INSERT INTO triaged.incident (title, resource, status, opened_at, urgency, priority)
VALUES ('m', 'merged-symptom', 'new', '2026-10-07 10:00Z', 1, 2);
INSERT INTO triaged.incident_service SELECT i.id, s.id FROM triaged.incident i, triaged.service s
 WHERE i.resource = 'merged-symptom' AND s.name = 'merged';
SELECT triaged._merge((SELECT id FROM triaged.incident WHERE resource = 'merged-symptom'),
                      (SELECT id FROM triaged.incident WHERE title = 't' AND ci_id IS NOT NULL),
                      '2026-10-07 10:06Z', 'test');
UPDATE triaged.incident SET status = 'resolved', resolved_at = '2026-10-07 11:00Z'
 WHERE title = 't' AND ci_id IS NOT NULL" >/dev/null
t_expect_sql "SELECT count(*) || ' ' || count(merged_into) FROM triaged.incident i
  JOIN triaged.incident_service s ON s.incident_id = i.id
  WHERE s.service_id = (SELECT id FROM triaged.service WHERE name = 'merged')" "2 1"

OCT="'2026-10-01 00:00Z', '2026-11-01 00:00Z', NULL, '2026-11-15 00:00Z'"
rep() { # SERVICE COLUMNS
    t_sql "SELECT $2 FROM triaged.sla_report($OCT) WHERE service = '$1'"
}
expect() { # SERVICE COLUMNS EXPECTED
    local got
    got=$(rep "$1" "$2")
    [ "$got" = "$3" ] || t_fail "$1: expected [$2] = [$3], got [$got]"
    t_log "ok: $1: $2 = $3"
}
S="service_seconds || ' ' || downtime_seconds || ' ' || maintenance_seconds"

# overlap: union 10:00-12:00 = 7,200 s, + 30 s; budget 2,678.4 s
expect overlap "$S" "2678400.000000 7230.000000 0.000000"
expect overlap "availability = round(1 - 7230 / 2678400.0, 12)" t
expect overlap "met || ' ' || error_budget_seconds || ' ' || budget_remaining_seconds" \
    "false 2678.400000 -4551.600000"
expect overlap "incidents || ' ' || mtta_seconds || ' ' || mttr_seconds || ' ' || mtbf_seconds" \
    "3 300.000000 3010.000000 890390.000000"
expect overlap "incidents_by_priority::text" "{0,3,0,0,0}"
# cross: 23:00-01:00 gives its last hour, 23:30-00:30 its first half hour
expect cross "$S || ' ' || incidents" "2678400.000000 5400.000000 0.000000 1"
expect cross "mttr_seconds" "3600.000000"
# maint: outage 10:00-12:00, service maintenance 11:00-13:00 (1 h of it
# excluded), member CI maintenance 1 h; the other CI's is not this service's
expect maint "$S" "2667600.000000 3600.000000 10800.000000"
expect maint "availability = round(1 - 3600 / 2667600.0, 12) AND met = false" t
expect maint "planned_service_seconds || ' ' || error_budget_seconds" "2667600.000000 2667.600000"
# dst: 22 weekdays x 10 h; Fri 17:00-18:00 CEST and Mon 08:00-09:00 CET
expect dst "$S" "792000.000000 7200.000000 0.000000"
expect dst "incidents || ' ' || error_budget_seconds" "2 792.000000"
t_expect_sql "SELECT triaged.sla_service_time('Mon-Fri 08:00-18:00 Europe/Berlin',
  '2026-10-23 00:00Z', '2026-10-27 00:00Z')::text" \
  '{["2026-10-23 06:00:00+00","2026-10-23 16:00:00+00"),["2026-10-26 07:00:00+00","2026-10-26 17:00:00+00")}'
# a spring-forward week too (29 March 2026): Monday 08:00 CEST = 06:00Z
t_expect_sql "SELECT triaged.sla_seconds(triaged.sla_service_time('Mon-Fri 08:00-18:00 Europe/Berlin',
  '2026-03-23 00:00Z', '2026-04-04 00:00Z')) || ' ' || lower(triaged.sla_service_time(
  'Mon-Fri 08:00-18:00 Europe/Berlin', '2026-03-30 00:00Z', '2026-03-31 00:00Z'))::text" \
  "360000.000000 2026-03-30 06:00:00+00"
# open: from 20:00 to the end of October = 4 h
expect open "$S || ' ' || incidents || ' ' || coalesce(mttr_seconds::text, 'null')" \
    "2678400.000000 14400.000000 0.000000 1 null"
# ... and in the running month, to now (14 days): everything down so far
t_expect_sql "SELECT service_seconds || ' ' || downtime_seconds || ' ' || planned_service_seconds
  || ' ' || availability || ' ' || burn_rate_1h || ' ' || burn_rate_period || ' ' || incidents
  FROM triaged.sla_report('2026-11-01Z', '2026-12-01Z', NULL, '2026-11-15Z') WHERE service = 'open'" \
  "1209600.000000 1209600.000000 2592000.000000 0.000000000000 1000.000000 1000.000000 0"
# merged: counted once, from the earlier open (10:00) to 11:00
expect merged "$S || ' ' || incidents || ' ' || mttr_seconds" \
    "2678400.000000 3600.000000 0.000000 1 3600.000000"
# none: 100 %
expect none "$S || ' ' || availability || ' ' || met || ' ' || incidents || ' ' || budget_remaining_pct" \
    "2678400.000000 0.000000 0.000000 1.000000000000 true 0 100.000000"
# degraded: the urgency-2 hour does not count, the urgency-1 10 minutes do
expect degraded "$S || ' ' || incidents || ' ' || incidents_by_priority::text" \
    "2678400.000000 600.000000 0.000000 1 {0,1,1,0,0}"
t_sql "UPDATE triaged.sla SET degraded_counts_as_down = true
  WHERE service_id = (SELECT id FROM triaged.service WHERE name = 'degraded')" >/dev/null
expect degraded "downtime_seconds || ' ' || incidents" "4200.000000 2"

# the daily burn-down of overlap: 5 Oct takes 7,200 s, 20 Oct 30 s
t_expect_sql "SELECT count(*) || ' ' || sum(downtime_seconds) || ' ' || min(budget_remaining_seconds)
  || ' ' || (SELECT budget_remaining_seconds FROM triaged.sla_daily(s.id, '2026-10-01Z', '2026-11-01Z',
             '2026-11-15Z') WHERE day = '2026-10-05')
  FROM triaged.service s, triaged.sla_daily(s.id, '2026-10-01Z', '2026-11-01Z', '2026-11-15Z')
  WHERE s.name = 'overlap' GROUP BY s.id" "31 7230.000000 -4551.600000 -4521.600000"
t_expect_sql "SELECT string_agg(target || ' ' || seconds, ', ' ORDER BY lower(during))
  FROM triaged.service s, triaged.sla_maintenance_taken(s.id, '2026-10-01Z', '2026-11-01Z')
  WHERE s.name = 'maint'" "service maint 7200.000000, ci maint-ci 3600.000000"

# maintenance_expand (per object, used here) = 003's maintenance_windows:
# 3 one-off windows + a weekly Mon, Wed, Sun 23:30-02:30 New York one from
# 9 October (9 nights in October)
t_sql "INSERT INTO triaged.maintenance (ci_id, weekly_days, weekly_start, weekly_duration, time_zone, active_from)
SELECT id, '{1,3,7}', '23:30', '3 hours', 'America/New_York', '2026-10-09Z' FROM triaged.ci WHERE name = 'other-ci'" >/dev/null
t_expect_sql "SELECT count(*) || ' ' || bool_and(a.during IS NOT DISTINCT FROM b.during)
  FROM (SELECT maintenance_id, during, row_number() OVER (PARTITION BY maintenance_id ORDER BY lower(during)) n
          FROM triaged.maintenance_windows('2026-10-01Z', '2026-11-01Z')) a
  FULL JOIN (SELECT m.id, w.during, row_number() OVER (PARTITION BY m.id ORDER BY lower(w.during)) n
               FROM triaged.maintenance m, triaged.maintenance_expand(m, '2026-10-01Z', '2026-11-01Z') w(during)) b
    ON a.maintenance_id = b.id AND a.n = b.n" "12 true"

# the API function: same numbers; unknown service NULL; bad range 22023
t_expect_sql "SELECT (j->>'downtime_seconds') || ' ' || (j->>'maintenance_excluded_seconds') || ' '
  || (j->>'error_budget_remaining_seconds') || ' ' || (j->'burn_rate'->>'period') || ' ' || (j->>'met')
  FROM (SELECT triaged.api_service_availability('maint', '2026-10-01Z', '2026-11-01Z', '2026-11-15Z')::jsonb j) x" \
  "3600.000000 10800.000000 -932.400000 1.349528 false"
t_expect_sql "SELECT triaged.api_service_availability('nobody', NULL, NULL) IS NULL" t
if t_sql "SELECT triaged.api_service_availability('maint', '2026-11-01Z', '2026-10-01Z')" 2>"$T_DIR/err"; then
    t_fail "a reversed range was accepted"
fi
grep -q 'from must be before to' "$T_DIR/err" || t_fail "reversed range: $(cat "$T_DIR/err")"

# the view: October's row equals the function's
t_expect_sql "SELECT count(*) FROM triaged.service_availability_monthly v
  JOIN triaged.sla_report('2026-10-01Z', '2026-11-01Z') r USING (service_id)
  WHERE v.month = '2026-10-01' AND (v.downtime_seconds, v.service_seconds, v.availability, v.met)
        IS NOT DISTINCT FROM (r.downtime_seconds, r.service_seconds, r.availability, r.met)" 8

# events: in November the open incident spends the budget and burns fast
TICK="SELECT kind || ' ' || key || coalesce(' ' || (payload->>'rule'), '') FROM triaged.sla_tick"
t_expect_sql "$TICK('{\"now\":\"2026-11-15T00:00:00Z\"}') WHERE kind <> 'sla.tick' ORDER BY 1" \
    "sla.breached open
sla.burn_rate open fast"
t_expect_sql "$TICK('{\"now\":\"2026-11-15T00:01:00Z\"}') WHERE kind <> 'sla.tick'" ""
t_sql "UPDATE triaged.incident SET status = 'resolved', resolved_at = '2026-11-15 00:00Z'
  WHERE opened_at = '2026-10-31 20:00Z'" >/dev/null
t_expect_sql "$TICK('{\"now\":\"2026-11-15T02:00:00Z\"}') WHERE kind <> 'sla.tick'" \
    "sla.burn_rate_resolved open fast"
# a slow burn: 40 minutes of a 6-hour window (rate 111 >= 6, short window 1000);
# fast needs 100 % of the budget in 1 h here (720), 666 is not enough
t_sql "SELECT inc('none', '2026-11-20 11:30Z', NULL)" >/dev/null
t_expect_sql "$TICK('{\"now\":\"2026-11-20T12:10:00Z\",\"fast_budget_pct\":100}') WHERE kind <> 'sla.tick'" \
    "sla.burn_rate none slow"
# the next period starts clean: the breach of November is not repeated in December
t_expect_sql "SELECT count(*) FROM triaged.sla_tick('{\"now\":\"2026-12-01T00:30:00Z\"}') WHERE kind = 'sla.breached' AND key = 'open'" 0
t_expect_sql "SELECT count(*) FROM triaged.sla_state WHERE period_from = '2026-12-01Z'" 8

# SLA definitions: triagectl sla set, bad input, the CMDB document
"${T_CTL[@]}" sla set none --target 99.5 --hours 'Mon-Fri 09:00-17:00 America/New_York' --period quarter \
    > "$T_DIR/out" || t_fail "sla set"
grep -qx 'changed: none' "$T_DIR/out" || t_fail "sla set said $(cat "$T_DIR/out")"
t_expect_sql "SELECT target || ' ' || period || ' ' || service_hours FROM triaged.sla
  WHERE service_id = (SELECT id FROM triaged.service WHERE name = 'none')" \
  "99.5000 quarter Mon-Fri 09:00-17:00 America/New_York"
set +e
"${T_CTL[@]}" sla set none --hours 'Mon-Fry 9:00-17:00' 2>"$T_DIR/err"; rc=$?
set -e
[ $rc = 1 ] && grep -q "bad days 'Mon-Fry'" "$T_DIR/err" || t_fail "bad hours: rc $rc $(cat "$T_DIR/err")"
set +e
"${T_CTL[@]}" sla set nobody --target 99 2>"$T_DIR/err"; rc=$?
set -e
[ $rc = 1 ] && grep -q "no service named 'nobody'" "$T_DIR/err" || t_fail "unknown service: rc $rc"
cat > "$T_DIR/doc.json" <<'JSON'
{"services": [{"name": "Shop", "tier": 1, "sla": {"target": 99.95, "service_hours": "Mon-Sat 07:00-22:00 Europe/Berlin", "degraded_counts_as_down": false}},
              {"name": "dst", "sla": null}]}
JSON
"${T_CTL[@]}" cmdb import "$T_DIR/doc.json" > "$T_DIR/out" || t_fail "import with sla: $(cat "$T_DIR/out")"
grep -q 'created *sla *Shop' "$T_DIR/out" && grep -q 'changed sla dst: removed' "$T_DIR/out" \
    || t_fail "import said $(cat "$T_DIR/out")"
"${T_CTL[@]}" cmdb import "$T_DIR/doc.json" > "$T_DIR/out" || t_fail "re-import"
grep -q 'imported: 0 created, 0 changed' "$T_DIR/out" || t_fail "re-import changed: $(cat "$T_DIR/out")"
"${T_CTL[@]}" cmdb export -o "$T_DIR/export.json" || t_fail "export"
python3 - "$T_DIR/export.json" <<'PY' || t_fail "export lacks the SLA"
import json, sys
d = {s["name"]: s for s in json.load(open(sys.argv[1]))["services"]}
assert d["Shop"]["sla"] == {"target": 99.95, "period": "month", "service_hours": "Mon-Sat 07:00-22:00 Europe/Berlin",
                            "degraded_counts_as_down": False, "down_max_urgency": 1}, d["Shop"]
assert "sla" not in d["dst"]
PY
"${T_CTL[@]}" cmdb import "$T_DIR/export.json" > "$T_DIR/out" || t_fail "import of the export"
grep -q 'imported: 0 created, 0 changed' "$T_DIR/out" || t_fail "export round trip: $(cat "$T_DIR/out")"
echo '{"services": [{"name": "Shop", "sla": {"target": 101}}, {"name": "X", "sla": {"period": "week", "target": 99}}]}' > "$T_DIR/bad.json"
set +e
"${T_CTL[@]}" cmdb import "$T_DIR/bad.json" > "$T_DIR/out" 2>&1; rc=$?
set -e
[ $rc = 1 ] || t_fail "bad sla import exit $rc"
grep -q 'service #1: sla: target must be' "$T_DIR/out" && grep -q 'service #2: sla: period must be' "$T_DIR/out" \
    || t_fail "bad sla import said $(cat "$T_DIR/out")"
t_expect_sql "SELECT count(*) FROM triaged.service WHERE name = 'X'" 0
t_log "PASS"

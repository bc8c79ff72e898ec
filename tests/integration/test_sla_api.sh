#!/usr/bin/env bash
# Availability over HTTP, in the view and in the report agree (DESIGN §4-§6):
# a generated October 2026 for 50 services (24x7 and business hours in two
# zones, degraded counting or not, overlapping, boundary-crossing, merged and
# acknowledged incidents, maintenance on services and on CIs, alerts from
# several sources). For every service, every number of
# GET /api/v1/services/{name}/availability equals the report's JSON, its CSV
# line and the service_availability_monthly row, exactly. Then the errors of
# the endpoint, and the events: an outage now spends a budget, and
# sla.breached and sla.burn_rate reach the live feed once each.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/http_lib.sh"

h_setup <<'CONF'
[sla]
tick_interval = 1s
CONF

t_sql "SELECT setseed(0.42);
INSERT INTO triaged.ci (name) SELECT 'host-' || lpad(g::text, 2, '0') FROM generate_series(1, 50) g;
INSERT INTO triaged.service (name, tier)
SELECT CASE WHEN g = 7 THEN 'Web shop' ELSE 'svc-' || lpad(g::text, 2, '0') END, 1 + g % 3
  FROM generate_series(1, 50) g;
INSERT INTO triaged.service_ci SELECT s.id, c.id FROM triaged.service s JOIN triaged.ci c ON c.id = s.id;
INSERT INTO triaged.sla (service_id, target, service_hours, degraded_counts_as_down)
SELECT s.id, (ARRAY[99.9, 99.5, 99.95, 99])[1 + s.id % 4],
       CASE s.id % 3 WHEN 0 THEN 'Mon-Fri 08:00-18:00 Europe/Berlin'
                     WHEN 1 THEN '24x7' ELSE 'Mon-Sat 07:00-19:00; Sun 10:00-14:00 America/New_York' END,
       s.id % 4 <> 0
  FROM triaged.service s WHERE s.id <= 45;   -- 5 services without an SLA
-- 20 incidents per service from 2026-09-29 to 2026-11-02, 10 s .. 30 min (mostly short)
INSERT INTO triaged.incident (title, resource, status, opened_at, resolved_at, acknowledged_at, urgency, priority)
SELECT 'gen', 'gen-' || s || '-' || k, 'resolved', o, o + (10 + random() ^ 4 * 1790) * interval '1 second',
       CASE WHEN random() < 0.6 THEN o + random() * interval '20 min' END,
       1 + (random() * 2)::int, 1 + (random() * 4)::int
  FROM generate_series(1, 50) s, generate_series(1, 20) k,
       LATERAL (SELECT timestamptz '2026-09-29 00:00Z' + random() * interval '34 days' + s * interval '0 s' + k * interval '0 s' AS o) x;
INSERT INTO triaged.incident_service
SELECT i.id, split_part(i.resource, '-', 2)::bigint FROM triaged.incident i WHERE i.title = 'gen';
-- every 9th incident is merged into the one before it (its root carries the services)
UPDATE triaged.incident i SET merged_into = i.id - 1, status = 'closed', closed_at = i.resolved_at
  WHERE i.title = 'gen' AND i.id % 9 = 0;
-- some impact a second service too
INSERT INTO triaged.incident_service SELECT i.id, 1 + (i.id * 7) % 50 FROM triaged.incident i
  WHERE i.title = 'gen' AND i.id % 5 = 0 ON CONFLICT DO NOTHING;
INSERT INTO triaged.maintenance (service_id, during, change_ref)
SELECT s.id, tstzrange(t, t + interval '3 hours'), 'CHG-' || s.id
  FROM triaged.service s, LATERAL (SELECT timestamptz '2026-10-03 10:00Z' + (s.id % 25) * interval '1 day' AS t) x
 WHERE s.id % 4 = 1;
INSERT INTO triaged.maintenance (ci_id, weekly_days, weekly_start, weekly_duration, time_zone)
SELECT c.id, '{6}', '02:00', '2 hours', 'Europe/Berlin' FROM triaged.ci c WHERE c.id % 10 = 3;
INSERT INTO triaged.alert (fingerprint, source, resource, check_name, severity, status, occurrences,
                           first_seen, last_seen, state_changed_at, resolved_at)
SELECT 'fp' || i.id || '-' || k, (ARRAY['prometheus', 'zabbix', 'syslog'])[1 + (i.id + k) % 3], 'r', 'c',
       'major', 'resolved', 1 + (i.id * k) % 40, i.opened_at, i.opened_at, i.opened_at, i.resolved_at
  FROM triaged.incident i, generate_series(1, 2) k WHERE i.title = 'gen';
INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
SELECT i.id, a.id, 'cause' FROM triaged.incident i JOIN triaged.alert a ON a.fingerprint LIKE 'fp' || i.id || '-%'
 WHERE i.merged_into IS NULL" >/dev/null
t_expect_sql "SELECT count(*) || ' ' || count(merged_into) FROM triaged.incident WHERE title = 'gen'" "1000 111"

FROM=2026-10-01T00:00:00Z
TO=2026-11-01T00:00:00Z
mkdir -p "$T_DIR/api"
for name in $(t_sql "SELECT name FROM triaged.service ORDER BY name" | sed 's/ /%20/g'); do
    h_req GET "/api/v1/services/$name/availability?from=$FROM&to=$TO" "$H_READ"
    [ "$H_CODE" = 200 ] || t_fail "GET $name: $H_CODE $H_BODY"
    printf '%s\n' "$H_BODY" > "$T_DIR/api/$name.json"
done
CTL=("$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf")
"${CTL[@]}" report --period 2026-10 --format json -o "$T_DIR/report.json" || t_fail "report json"
"${CTL[@]}" report --period 2026-10 --format csv -o "$T_DIR/report.csv" || t_fail "report csv"
"${CTL[@]}" report --period 2026-10 --format html -o "$T_DIR/report.html" || t_fail "report html"
"${CTL[@]}" report --period 2026-10 --service 'Web shop' --format json -o "$T_DIR/one.json" || t_fail "report one"
t_sql "SELECT json_agg(v) FROM triaged.service_availability_monthly v WHERE month = '2026-10-01'" > "$T_DIR/view.json"

python3 - "$T_DIR" <<'PY' || t_fail "API, view and report disagree"
import csv, json, os, sys
from decimal import Decimal
d = sys.argv[1]
load = lambda p: json.load(open(os.path.join(d, p)), parse_float=Decimal)
report = load("report.json")
rep = {s["service"]: s for s in report["services"]}
api = {}
for f in os.listdir(os.path.join(d, "api")):
    j = load(os.path.join("api", f))
    api[j["service"]] = j
assert len(api) == 50 and len(rep) == 50, (len(api), len(rep))
checked = 0
for name, a in api.items():
    r = rep[name]
    extra = set(r) - set(a)
    assert extra == {"daily", "alert_sources", "maintenance", "capacity"}, extra
    for k in a:
        assert a[k] == r[k], (name, k, a[k], r[k])
        checked += 1
    # the burn-down adds up to the downtime
    assert sum(Decimal(str(x["downtime_seconds"])) for x in r["daily"]) == a["downtime_seconds"], name
one = load("one.json")["services"]
assert len(one) == 1 and one[0] == rep["Web shop"]
view = {v["service"]: v for v in json.load(open(os.path.join(d, "view.json")), parse_float=Decimal)}
assert len(view) == 50
pairs = {"service_seconds": "service_seconds", "downtime_seconds": "downtime_seconds",
         "availability": "availability", "met": "met", "planned_service_seconds": "planned_service_seconds",
         "maintenance_seconds": "maintenance_excluded_seconds", "error_budget_seconds": "error_budget_seconds",
         "budget_remaining_seconds": "error_budget_remaining_seconds",
         "budget_remaining_pct": "error_budget_remaining_pct", "burn_rate_period": None,
         "incidents": "incidents", "mtta_seconds": "mtta_seconds", "mttr_seconds": "mttr_seconds",
         "mtbf_seconds": "mtbf_seconds"}
for name, v in view.items():
    a = api[name]
    for vk, ak in pairs.items():
        want = a["burn_rate"]["period"] if ak is None else a[ak]
        assert v[vk] == want, (name, vk, v[vk], want)
        checked += 1
    t = v["target"]
    assert (t is None and a["target"] is None) or Decimal(str(t)) == Decimal(str(a["target"])), name
    assert v["incidents_by_priority"] == [a["incidents_by_priority"]["P%d" % i] for i in range(1, 6)]
rows = list(csv.DictReader(open(os.path.join(d, "report.csv"))))
assert len(rows) == 50
for row in rows:
    a = api[row["service"]]
    for k, val in row.items():
        if k.startswith("burn_rate_"):
            want = a["burn_rate"][k[len("burn_rate_"):]]
        elif k.startswith("incidents_by_priority_"):
            want = a["incidents_by_priority"][k[len("incidents_by_priority_"):]]
        else:
            want = a[k]
        if want is None:
            assert val == "", (row["service"], k, val)
        elif isinstance(want, bool):
            assert val == ("true" if want else "false"), (row["service"], k, val)
        elif isinstance(want, str):
            assert val == want, (row["service"], k, val, want)
        else:
            assert Decimal(val) == Decimal(str(want)), (row["service"], k, val, want)
        checked += 1
# the data is not trivial: breaches, met, business hours, maintenance, merges
print("met %d, breached %d, no SLA %d, with maintenance %d, business hours %d" % (
    sum(1 for a in api.values() if a["met"] is True), sum(1 for a in api.values() if a["met"] is False),
    sum(1 for a in api.values() if a["met"] is None),
    sum(1 for a in api.values() if a["maintenance_excluded_seconds"] > 0),
    sum(1 for a in api.values() if a["service_seconds"] < 2678400)))
assert sum(1 for a in api.values() if a["met"] is False) >= 5
assert sum(1 for a in api.values() if a["met"] is True) >= 5
assert sum(1 for a in api.values() if a["met"] is None) == 5
assert sum(1 for a in api.values() if a["maintenance_excluded_seconds"] > 0) >= 8
assert sum(1 for a in api.values() if a["service_seconds"] < 2678400) >= 20
print("checked %d values" % checked)
PY
grep -q '<svg' "$T_DIR/report.html" && ! grep -qi '<script\|src="http\|href="http' "$T_DIR/report.html" \
    || t_fail "the HTML is not self-contained"
[ "$(grep -c 'class="svc"' "$T_DIR/report.html")" = 50 ] || t_fail "the HTML lacks services"

# errors
h_req GET "/api/v1/services/nobody/availability" "$H_READ"
h_expect 404 "j['error']=not_found"
h_req GET "/api/v1/services/svc-01/uptime" "$H_READ"
h_expect 404
h_req GET "/api/v1/services/svc-01/availability?from=$FROM" "$H_READ"
h_expect 400 "j['error']=bad_request"
h_req GET "/api/v1/services/svc-01/availability?from=yesterday&to=$TO" "$H_READ"
h_expect 400 "j['error']=bad_request"
h_req GET "/api/v1/services/svc-01/availability?from=$TO&to=$FROM" "$H_READ"
h_expect 400 "j['error']=bad_request" "j['message']=from must be before to"
h_req GET "/api/v1/services/svc-01/availability"
h_expect 401
# no range: the SLA's current period
h_req GET "/api/v1/services/Web%20shop/availability" "$H_READ"
h_expect 200 "j['service']=Web shop" "j['period']=month"
set +e
"${CTL[@]}" report --period 2026-13 --format json -o "$T_DIR/x.json" 2>"$T_DIR/err"; rc=$?
set -e
[ $rc = 1 ] && grep -q "expected YYYY-MM" "$T_DIR/err" || t_fail "bad period: rc $rc"

# events: svc-01 (24x7, target raised to 99.99 %: a budget of ~4.3 min a
# month) down since 4 hours ago, still open
"${CTL[@]}" sla set svc-01 --target 99.99 >/dev/null || t_fail "sla set"
# (last_event_id=0: the feed's history too, so no race with the connect)
curl -sN -H "Authorization: Bearer $H_READ" "$H_URL/api/v1/feed?last_event_id=0" > "$T_DIR/feed" &
T_PIDS+=($!)
t_sql "INSERT INTO triaged.incident (title, resource, status, opened_at, urgency, priority)
       VALUES ('now', 'now-1', 'new', now() - interval '4 hours', 1, 1);
       INSERT INTO triaged.incident_service SELECT id, 1 FROM triaged.incident WHERE title = 'now'" >/dev/null
has_events() {
    grep -A1 '^event: sla.breached' "$T_DIR/feed" | grep -q '"service": *"svc-01"' &&
        grep -A1 '^event: sla.burn_rate$' "$T_DIR/feed" | grep -q '"service": *"svc-01"'
}
t_wait_until 30 "sla.breached and sla.burn_rate on the feed" has_events
t_wait_sql "SELECT burning || ' ' || (breached_at IS NOT NULL) FROM triaged.sla_state WHERE service_id = 1" "fast true" 10
h_req GET /metrics "$H_READ"
grep -q '^triaged_sla_events_total{kind="sla.breached"} [1-9]' <<<"$H_BODY" \
    || t_fail "sla_events metric: $(grep sla_ <<<"$H_BODY")"
[ "$(grep -A1 '^event: sla.breached' "$T_DIR/feed" | grep -c '"service": *"svc-01"')" = 1 ] \
    || t_fail "sla.breached of svc-01 not exactly once: $(grep -A1 '^event: sla' "$T_DIR/feed")"
grep -A2 '^event: sla.burn_rate' "$T_DIR/feed" | grep -q '"rule": *"fast"' || t_fail "burn_rate payload: $(cat "$T_DIR/feed")"
t_log "PASS"

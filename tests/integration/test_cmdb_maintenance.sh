#!/usr/bin/env bash
# Maintenance (DESIGN §4): alerts on a CI, or on a service's CIs, inside a
# maintenance window are recorded (suppressed) and open no incident; a
# resolve always resolves (also an alert that fired before the window and
# resolves inside it: its incident resolves); when the window ends, an
# alert still firing gets its incident, and a new alert opens one. Windows
# one-off and weekly (with a time zone), added, listed and removed with
# triagectl maintenance.
source "$(dirname "$0")/lib.sh"
t_db
t_topic 4
t_conf <<'CONF'
[incident]
resolve_grace = 1s
CONF
CTL=("$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf")
"${CTL[@]}" migrate >/dev/null || t_fail "migrate"
cat > "$T_DIR/cmdb.json" <<'JSON'
{"cis": [{"name": "web-01"}, {"name": "web-02"}, {"name": "db-01"}],
 "services": [{"name": "Shop", "tier": 1, "cis": ["web-02"]}]}
JSON
"${CTL[@]}" cmdb import "$T_DIR/cmdb.json" >/dev/null || t_fail "import"
t_start

send() { printf '%s\t%s\n' "$1" "$2" > "$T_DIR/msg"; t_produce "$T_DIR/msg"; }
# db-01 fires before any maintenance: an incident
send db '{"source":"t","resource":"db-01","check":"replication_lag","severity":"major"}'
t_wait_sql "SELECT count(*) FROM triaged.incident WHERE status = 'new'" "1"

# windows: web-01 for the next 8 s (one-off), the Shop service weekly
# around now (in a zone that is not UTC), db-01 for an hour
end=$(date -u -d '+8 seconds' +%Y-%m-%dT%H:%M:%SZ)
"${CTL[@]}" maintenance add --ci web-01 --from "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)" --to "$end" \
    --change CHG-1001 --reason "kernel update" >/dev/null || t_fail "maintenance add web-01"
read -r wday wstart < <(TZ=America/New_York date -d '-1 hour' '+%u %H:%M')
"${CTL[@]}" maintenance add --service Shop --weekly "$wday" --at "$wstart" --duration 3h \
    --tz America/New_York --change CHG-1002 >/dev/null || t_fail "maintenance add Shop"
"${CTL[@]}" maintenance add --ci db-01 --from "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --to "$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)" >/dev/null ||
    t_fail "maintenance add db-01"
list=$("${CTL[@]}" maintenance list) || t_fail "maintenance list"
[ "$(grep -c ' yes ' <<<"$list")" = 3 ] || t_fail "maintenance list does not show 3 active windows: $list"
grep -q "weekly .* for 03:00:00 America/New_York" <<<"$list" || t_fail "weekly window not listed: $list"
t_log "maintenance list:"$'\n'"$list"
rc=0; "${CTL[@]}" maintenance add --ci no-such-ci --from 2026-01-01T00:00:00Z --to 2026-01-02T00:00:00Z 2>/dev/null || rc=$?
[ "$rc" = 1 ] || t_fail "maintenance add on an unknown CI exited $rc"

# inside: recorded, suppressed, no incident
send web '{"source":"t","resource":"web-01","check":"disk_full","severity":"critical"}'
send web '{"source":"t","resource":"web-01","check":"cpu_high","severity":"critical"}'
send web2 '{"source":"t","resource":"web-02","check":"http_5xx","severity":"critical"}'
t_wait_sql "SELECT count(*) FROM triaged.alert WHERE suppressed AND status = 'firing'" "3"
t_expect_sql "SELECT count(*) FROM triaged.incident" "1"
t_expect_sql "SELECT count(*) FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id
    WHERE h.detail->>'suppressed' = 'true' AND h.detail ? 'maintenance_id'" "3"
# a resolve always resolves: the suppressed one, and db-01's (its incident too)
send web '{"source":"t","resource":"web-01","check":"disk_full","status":"resolved"}'
send db '{"source":"t","resource":"db-01","check":"replication_lag","status":"resolved"}'
t_wait_sql "SELECT check_name, status FROM triaged.alert WHERE check_name IN ('disk_full', 'replication_lag') ORDER BY 1" \
    $'disk_full|resolved\nreplication_lag|resolved'
t_wait_sql "SELECT status FROM triaged.incident" "resolved" 20

# after web-01's window: cpu_high (still firing) gets its incident, and a
# new alert joins it; web-02 stays suppressed (its window runs on)
t_wait_until 30 "the end of web-01's window" eval "[ \$(date -u +%s) -gt \$(date -u -d '$end' +%s) ]"
t_wait_sql "SELECT count(*) FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE c.name = 'web-01' AND i.status = 'new'" "1" 20
send web '{"source":"t","resource":"web-01","check":"swap_full","severity":"major"}'
t_wait_sql "SELECT a.check_name FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
    JOIN triaged.incident i ON i.id = ia.incident_id JOIN triaged.ci c ON c.id = i.ci_id
    WHERE c.name = 'web-01' ORDER BY 1" $'cpu_high\nswap_full'
t_expect_sql "SELECT check_name, suppressed FROM triaged.alert WHERE resource LIKE 'web-%' AND status = 'firing' ORDER BY 1" \
    $'cpu_high|f\nhttp_5xx|t\nswap_full|f'
t_expect_sql "SELECT count(*) FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE c.name = 'web-02'" "0"
# the windows are queryable for SLA exclusion
t_expect_sql "SELECT count(*) FROM triaged.maintenance_windows(now() - interval '1 day', now() + interval '1 day')" "3"

# remove
id=$(t_sql "SELECT id FROM triaged.maintenance WHERE change_ref = 'CHG-1002'")
"${CTL[@]}" maintenance remove "$id" >/dev/null || t_fail "maintenance remove"
rc=0; "${CTL[@]}" maintenance remove "$id" 2>/dev/null || rc=$?
[ "$rc" = 1 ] || t_fail "removing it twice exited $rc"
t_expect_sql "SELECT count(*) FROM triaged.maintenance" "2"
out=$("${CTL[@]}" audit verify 2>&1) || t_fail "audit verify: $out"
t_log "passed"

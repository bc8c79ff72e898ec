#!/usr/bin/env bash
# A real Alertmanager (Debian's prometheus-alertmanager) whose webhook
# receiver points at triaged's POST /api/v1/alertmanager (DESIGN §3):
#   - alerts posted to Alertmanager's /api/v2/alerts arrive in triaged as
#     firing alerts whose fingerprint is Alertmanager's own (as its API shows
#     it), with check = alertname, resource = instance, severity mapped;
#   - each instance gets its incident;
#   - posting them again with endsAt in the past resolves them in
#     Alertmanager, whose resolved notification resolves them in triaged.
# Alertmanager authenticates with a bearer token (http_config.authorization).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/http_lib.sh"

command -v prometheus-alertmanager >/dev/null || t_fail "prometheus-alertmanager is not installed (scripts/setup.sh installs it)"
h_setup <<'CONF'
[incident]
resolve_grace = 0s
CONF

AM_PORT=$(h_free_port)
AM=http://127.0.0.1:$AM_PORT
mkdir -p "$T_DIR/am"
cat > "$T_DIR/am.yml" <<YML
route:
  receiver: triaged
  group_by: ['alertname', 'instance']
  group_wait: 100ms
  group_interval: 300ms
  repeat_interval: 1h
receivers:
  - name: triaged
    webhook_configs:
      - url: $H_URL/api/v1/alertmanager
        send_resolved: true
        http_config:
          authorization:
            credentials: $H_WRITE
YML
prometheus-alertmanager --config.file="$T_DIR/am.yml" --storage.path="$T_DIR/am" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= \
    --log.level=warn > "$T_DIR/alertmanager.log" 2>&1 &
AM_PID=$!
T_PIDS+=("$AM_PID")
t_wait_until 30 "Alertmanager ready" curl -sf "$AM/-/ready"
t_log "alertmanager $(prometheus-alertmanager --version 2>&1 | head -1 | awk '{print $3}') on $AM"

# 3 alerts on 2 instances; one without annotations, one with extra labels
now=$(date -u -d "-60 seconds" +%Y-%m-%dT%H:%M:%SZ)
alerts() { # alerts ENDS_AT_OR_EMPTY
    local ends=""
    [ -n "$1" ] && ends=",\"endsAt\":\"$1\""
    cat <<JSON
[{"labels":{"alertname":"HighCPU","instance":"web-01","severity":"critical","job":"node"},
  "annotations":{"summary":"CPU over 95%"},"startsAt":"$now"$ends},
 {"labels":{"alertname":"DiskFull","instance":"web-01","severity":"warning","job":"node","mount":"/var"},
  "annotations":{"description":"/var is 97% full"},"startsAt":"$now"$ends},
 {"labels":{"alertname":"HighCPU","instance":"web-02","severity":"error","job":"node"},
  "startsAt":"$now"$ends}]
JSON
}
alerts "" | curl -sf -H 'Content-Type: application/json' --data-binary @- "$AM/api/v2/alerts" >/dev/null \
    || t_fail "posting to Alertmanager failed"

t_wait_sql "SELECT count(*) FROM triaged.alert WHERE status = 'firing'" "3" 30
# Alertmanager's own fingerprints, as its API shows them
curl -sf "$AM/api/v2/alerts" | python3 -c '
import json, sys
for a in json.load(sys.stdin):
    print(a["fingerprint"], a["labels"]["alertname"], a["labels"]["instance"])' | sort > "$T_DIR/am_fps"
[ "$(wc -l < "$T_DIR/am_fps")" = 3 ] || t_fail "Alertmanager shows $(wc -l < "$T_DIR/am_fps") alerts"
t_sql "SELECT fingerprint, check_name, resource FROM triaged.alert ORDER BY 1" | tr '|' ' ' | sort > "$T_DIR/td_fps"
diff "$T_DIR/am_fps" "$T_DIR/td_fps" || t_fail "triaged's fingerprints differ from Alertmanager's"
t_log "ok: fingerprints are Alertmanager's: $(tr '\n' ' ' < "$T_DIR/am_fps")"
t_expect_sql "SELECT string_agg(check_name || '/' || resource || '/' || severity || '/' || coalesce(summary, '-'), ' ' ORDER BY check_name, resource) FROM triaged.alert" \
    "DiskFull/web-01/warning//var is 97% full HighCPU/web-01/critical/CPU over 95% HighCPU/web-02/major/-"
t_expect_sql "SELECT count(*) FROM triaged.alert WHERE source = 'alertmanager' AND dedup_key = fingerprint AND labels->>'job' = 'node'" "3"
t_expect_sql "SELECT labels->>'mount' FROM triaged.alert WHERE check_name = 'DiskFull'" "/var"
t_expect_sql "SELECT count(*), string_agg(resource, ',' ORDER BY resource) FROM triaged.incident WHERE status = 'new'" "2|web-01,web-02"

# resolve: the same alerts with endsAt in the past
past=$(date -u -d '-1 second' +%Y-%m-%dT%H:%M:%SZ)
alerts "$past" | curl -sf -H 'Content-Type: application/json' --data-binary @- "$AM/api/v2/alerts" >/dev/null \
    || t_fail "posting resolves to Alertmanager failed"
t_wait_sql "SELECT count(*) FROM triaged.alert WHERE status = 'resolved'" "3" 30
t_wait_sql "SELECT count(*) FROM triaged.incident WHERE status = 'resolved'" "2" 15
t_expect_sql "SELECT count(*) FROM triaged.alert" "3"
t_expect_sql "SELECT sum(occurrences) >= 3 FROM triaged.alert" "t"
grep -q 'code="202"' <(curl -sf -H "Authorization: Bearer $H_READ" "$H_URL/metrics" | grep 'route="alertmanager"') \
    || t_fail "no 202 counted for the alertmanager route"
grep -qi 'error\|level=warn' "$T_DIR/alertmanager.log" && { cat "$T_DIR/alertmanager.log" >&2; t_fail "Alertmanager logged errors (notify failed?)"; }
t_alive "$T_PID" || t_fail "triaged died"
t_log "PASS"

#!/usr/bin/env bash
# Maintenance windows over HTTP (issue 6: "triagectl maintenance ... and the
# API"): POST /api/v1/maintenance (one-off on a CI, weekly on a service),
# GET lists them with active_now, an alert on the CI inside the window opens
# no incident, DELETE removes (then 404); bad bodies are 400 with the reason,
# a read token 403.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/http_lib.sh"

h_setup <<'CONF'
[incident]
resolve_grace = 0s
CONF
cat > "$T_DIR/cmdb.json" <<'JSON'
{"cis": [{"name": "db-01"}, {"name": "web-01"}],
 "services": [{"name": "Shop", "tier": 1, "cis": ["web-01"]}]}
JSON
printf '[postgres]\nconninfo = %s\n[redis]\nurl = %s\n' "$T_PG" "$TD_TEST_REDIS_URL" > "$T_DIR/c.conf"
"$TD_BUILD_DIR/triagectl" -c "$T_DIR/c.conf" cmdb import "$T_DIR/cmdb.json" >/dev/null || t_fail "import"

from=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
h_req POST /api/v1/maintenance "$H_WRITE" "{\"ci\":\"db-01\",\"from\":\"$from\",\"to\":\"$to\",\"change_ref\":\"CHG-7\",\"reason\":\"patching\"}"
h_expect 200 "j['ci']=db-01" "j['change_ref']=CHG-7" "j['created_by']=writer" "j['active_now']=true"
id=$(h_json "j['id']")
h_req POST /api/v1/maintenance "$H_WRITE" '{"service":"Shop","weekly":{"days":["Sat","Sun"],"at":"02:00","duration":"3h","time_zone":"Europe/Berlin"}}'
h_expect 200 "j['service']=Shop" "j['weekly']['days']=[6, 7]" "j['weekly']['duration_seconds']=10800.0"
h_req GET /api/v1/maintenance "$H_READ"
h_expect 200 "len(j['items'])=2" "j['items'][0]['id']=$id"

# an alert on db-01 inside the window: recorded, suppressed, no incident
h_req POST /api/v1/alerts "$H_WRITE" '{"source":"mon","resource":"db-01","check":"disk","severity":"critical"}'
h_expect 202 "j['accepted']=1"
t_expect_sql "SELECT status || ' ' || suppressed FROM triaged.alert WHERE resource = 'db-01'" "firing true"
t_expect_sql "SELECT count(*) FROM triaged.incident" 0

h_req DELETE "/api/v1/maintenance/$id" "$H_WRITE"
h_expect 200 "j['removed']=$id"
h_req DELETE "/api/v1/maintenance/$id" "$H_WRITE"
h_expect 404 "j['error']=not_found"
h_req DELETE /api/v1/maintenance/x "$H_WRITE"
h_expect 404
h_req DELETE /api/v1/maintenance/1 "$H_READ"
h_expect 403

for body in '{"ci":"db-01","service":"Shop","from":"2026-01-01T00:00:00Z","to":"2026-01-02T00:00:00Z"}' \
            '{"ci":"nope","from":"2026-01-01T00:00:00Z","to":"2026-01-02T00:00:00Z"}' \
            '{"ci":"db-01","from":"2026-01-01T00:00:00Z"}' \
            '{"ci":"db-01","from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}' \
            '{"ci":"db-01","weekly":{"days":["Funday"],"at":"02:00","duration":"1h"}}' \
            '{"ci":"db-01","weekly":{"days":[1],"at":"25:00","duration":"1h"}}' \
            '[1,2]' 'not json'; do
    h_req POST /api/v1/maintenance "$H_WRITE" "$body"
    h_expect 400 "j['error']=bad_request"
done
h_req GET /api/v1/maintenance "$H_READ"
h_expect 200 "len(j['items'])=1"
t_log "PASS"

#!/usr/bin/env bash
# PagerDuty Events API v2 at POST /v2/enqueue (DESIGN §3), with curl, the
# way a PagerDuty integration sends it (no Authorization header: the
# routing_key is the token). PagerDuty's documented results:
#   trigger x3 on one dedup_key -> 202 each, one alert (3 occurrences), one
#                                  incident
#   acknowledge                 -> 202, the incident acknowledged by the token
#   resolve                     -> 202, alert resolved, incident resolved
#   trigger after resolve       -> 202, a new incident (reopen_window = 0s:
#                                  PagerDuty opens a new one; triaged's default
#                                  30m window would reopen the old one)
#   resolve / acknowledge of an unknown key -> 202, no incident changes
#   trigger without dedup_key   -> 202 with a fresh dedup_key, which names it
#   invalid events              -> 400 {"status":"invalid event",
#                                  "message":"Event object is invalid","errors":[...]}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/http_lib.sh"

h_setup <<'CONF'
[incident]
resolve_grace = 0s
reopen_window = 0s
CONF

pd() { # pd ACTION DEDUP_KEY [SUMMARY] [SEVERITY]
    local dk=""
    [ -n "$2" ] && dk=",\"dedup_key\":\"$2\""
    h_req POST /v2/enqueue "" "{\"routing_key\":\"$H_WRITE\",\"event_action\":\"$1\"$dk,\"payload\":{\"summary\":\"${3:-disk full}\",\"source\":\"db-01\",\"severity\":\"${4:-error}\",\"component\":\"postgres\",\"group\":\"prod\",\"class\":\"disk\"}}"
}
ok202() { h_expect 202 "j['status']=success" "j['message']=Event processed" "j['dedup_key']=$1"; }

for i in 1 2 3; do pd trigger disk-db01; ok202 disk-db01; done
t_expect_sql "SELECT count(*), sum(occurrences), min(source), min(resource), min(check_name), min(severity), min(status) FROM triaged.alert" \
    "1|3|pagerduty|db-01|disk|major|firing"
t_expect_sql "SELECT labels->>'component', labels->>'group', dedup_key, summary FROM triaged.alert" "postgres|prod|disk-db01|disk full"
t_expect_sql "SELECT count(*), min(status) FROM triaged.incident" "1|new"

pd acknowledge disk-db01; ok202 disk-db01
t_expect_sql "SELECT status, acknowledged_by FROM triaged.incident" "acknowledged|writer"
t_expect_sql "SELECT kind, actor FROM triaged.incident_event ORDER BY id DESC LIMIT 1" "acknowledged|writer"

pd resolve disk-db01; ok202 disk-db01
t_expect_sql "SELECT status FROM triaged.alert" "resolved"
t_wait_sql "SELECT status FROM triaged.incident" "resolved" 15

pd trigger disk-db01 "disk full again"; ok202 disk-db01
t_expect_sql "SELECT count(*), sum(occurrences), min(status) FROM triaged.alert" "1|4|firing"
t_expect_sql "SELECT string_agg(status, ',' ORDER BY id) FROM triaged.incident" "resolved,new"

pd resolve never-seen; ok202 never-seen
pd acknowledge never-seen-either; ok202 never-seen-either
# the engine keeps a resolve it has never seen fire as a resolved alert with
# no occurrences and no incident (so an older firing arriving later does not
# fire it); nothing else changes
t_expect_sql "SELECT count(*) FROM triaged.alert WHERE occurrences > 0" "1"
t_expect_sql "SELECT status, occurrences FROM triaged.alert WHERE dedup_key = 'never-seen'" "resolved|0"
t_expect_sql "SELECT count(*) FROM triaged.alert WHERE dedup_key = 'never-seen-either'" "0"
t_expect_sql "SELECT count(*) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id WHERE a.dedup_key = 'never-seen'" "0"
t_expect_sql "SELECT string_agg(status, ',' ORDER BY id) FROM triaged.incident" "resolved,new"

pd trigger "" "no key given" critical
h_expect 202 "j['status']=success" "len(j['dedup_key'])=32"
key=$(h_json "j['dedup_key']")
t_expect_sql "SELECT severity, summary FROM triaged.alert WHERE source = 'pagerduty' AND dedup_key = '$key'" "critical|no key given"

# invalid events: PagerDuty's 400 body, one error per problem
h_req POST /v2/enqueue "" "{\"routing_key\":\"$H_WRITE\",\"event_action\":\"trigger\",\"payload\":{\"source\":\"db-01\",\"severity\":\"fatal\"}}"
h_expect 400 "j['status']=invalid event" "j['message']=Event object is invalid" \
    "sorted(j['errors'])=[\"'payload.severity' must be one of critical, error, warning, info\", \"'payload.summary' is missing or blank\"]"
h_req POST /v2/enqueue "" "{\"routing_key\":\"$H_WRITE\",\"event_action\":\"explode\"}"
h_expect 400 "j['status']=invalid event" "j['errors']=[\"'event_action' must be one of trigger, acknowledge, resolve\"]"
h_req POST /v2/enqueue "" "{\"routing_key\":\"$H_WRITE\",\"event_action\":\"resolve\"}"
h_expect 400 "j['errors']=[\"'dedup_key' is missing or blank\"]"
h_req POST /v2/enqueue "$H_WRITE" "this is not json"
h_expect 400 "j['status']=invalid event"
t_expect_sql "SELECT count(*) FROM triaged.alert WHERE occurrences > 0" "2"

# with a bearer token instead of a routing_key that is a token
h_req POST /v2/enqueue "$H_ADMIN" '{"routing_key":"R0UTINGKEY0000000000000000000000","event_action":"resolve","dedup_key":"disk-db01"}'
ok202 disk-db01
t_expect_sql "SELECT status FROM triaged.alert WHERE dedup_key = 'disk-db01'" "resolved"
out=$("$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf" audit verify 2>&1) || t_fail "audit verify: $out"
t_alive "$T_PID" || t_fail "triaged died"
t_log "PASS"

#!/usr/bin/env bash
# The HTTP API's contract (DESIGN §5) against the real stack, with curl:
#   - auth matrix: no token 401, unknown token 401, read token on a write 403,
#     write and admin tokens pass, /healthz open; every error is
#     {"error","message"};
#   - a body of 40 alerts over 20 resources (both lanes): answered once, after
#     all 40 are committed;
#   - body limit (413), bad JSON (400 not_json), missing field (400), wrong
#     content type (415), unknown path (404), wrong method (405): each with
#     its JSON body, and the daemon keeps serving;
#   - incidents: list with filters, cursor pagination stable while incidents
#     arrive, one incident with alerts, impacted services and timeline;
#   - actions acknowledge / comments / resolve / close recorded in the
#     timeline with the token's name as actor, 409 on a wrong status, the
#     audit chain intact;
#   - /metrics passes `promtool check metrics`; /readyz;
#   - SIGHUP reloads the tokens file and the rate limit (429 + Retry-After).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/http_lib.sh"

h_setup <<'CONF'
max_body = 4KiB
[incident]
resolve_grace = 0s
CONF

A='{"source":"api","resource":"web-01","check":"cpu","severity":"critical"}'

# ---- auth matrix ---------------------------------------------------------
h_req POST /api/v1/alerts "" "$A";                 h_expect 401 "j['error']=unauthorized"
h_req POST /api/v1/alerts not-a-token "$A";        h_expect 401 "j['error']=unauthorized"
h_req POST /api/v1/alerts "$H_READ" "$A";          h_expect 403 "j['error']=forbidden"
h_req POST /api/v1/alerts "$H_WRITE" "$A";         h_expect 202 "j['accepted']=1"
h_req POST /api/v1/alerts "$H_ADMIN" "$A";         h_expect 202 "j['accepted']=1"
# one body whose alerts belong to both lanes (by resource): one answer, after
# every part committed
B=$(python3 -c 'import json; print(json.dumps([{"source":"lanes","resource":"r%02d" % (i % 20),"check":"c%d" % i} for i in range(40)]))')
h_req POST /api/v1/alerts "$H_WRITE" "$B";         h_expect 202 "j['accepted']=40"
t_expect_sql "SELECT count(*), count(DISTINCT resource) FROM triaged.alert WHERE source = 'lanes'" "40|20"
t_sql "DELETE FROM triaged.incident_alert WHERE alert_id IN (SELECT id FROM triaged.alert WHERE source = 'lanes')" >/dev/null
t_sql "DELETE FROM triaged.incident WHERE resource LIKE 'r__' AND resource NOT LIKE 'web%'" >/dev/null
t_sql "DELETE FROM triaged.alert WHERE source = 'lanes'" >/dev/null
h_req GET /api/v1/incidents "";                    h_expect 401 "j['error']=unauthorized"
h_req GET /api/v1/incidents "$H_READ";             h_expect 200 "len(j['items'])=1"
h_req GET /api/v1/incidents "$H_WRITE";            h_expect 200 "len(j['items'])=1"
h_req GET /api/v1/alerts "";                       h_expect 401
h_req GET /api/v1/alerts "$H_READ";                h_expect 200 "j['items'][0]['occurrences']=2"
h_req GET /metrics "";                             h_expect 401
h_req GET /api/v1/feed "";                         h_expect 401
h_req POST /api/v1/incidents/1/acknowledge "$H_READ"; h_expect 403 "j['error']=forbidden"
h_req POST /v2/enqueue "" '{"routing_key":"wrong","event_action":"resolve","dedup_key":"x"}'
h_expect 401 "j['error']=unauthorized"
h_req GET /healthz "";                             h_expect 200 "j['status']=ok"
h_req GET /readyz "";                              h_expect 200 "j['status']=ready" "j['checks']['postgres']=true"

# ---- bad requests: status and JSON body, and the daemon keeps serving -----
big=$(python3 -c 'import json; print(json.dumps({"source":"api","resource":"r","check":"c","summary":"x"*5000}))')
h_req POST /api/v1/alerts "$H_WRITE" "$big";       h_expect 413 "j['error']=too_large"
h_req POST /api/v1/alerts "$H_WRITE" '{"source": "api", "resource":';  h_expect 400 "j['error']=not_json"
h_req POST /api/v1/alerts "$H_WRITE" '{"source":"api","check":"c"}';   h_expect 400 "j['error']=missing_field"
h_req POST /api/v1/alerts "$H_WRITE" '[]';         h_expect 400 "j['error']=empty"
h_req POST /api/v1/alerts "$H_WRITE" "$A" text/plain; h_expect 415 "j['error']=unsupported_media_type"
h_req POST /api/v1/alerts "$H_WRITE" "$A" application/x-www-form-urlencoded; h_expect 415
h_req GET /api/v1/nothing "$H_WRITE";              h_expect 404 "j['error']=not_found"
h_req GET /favicon.ico "";                         h_expect 404 "j['error']=not_found"
h_req DELETE /api/v1/alerts "$H_WRITE";            h_expect 405 "j['error']=method_not_allowed"
h_req POST /api/v1/incidents/1/explode "$H_WRITE"; h_expect 404 "j['error']=not_found"
h_req GET "/api/v1/incidents?status=bogus" "$H_READ"; h_expect 400 "j['error']=bad_request"
h_req GET "/api/v1/incidents?cursor=garbage!" "$H_READ"; h_expect 400 "j['error']=bad_request"
h_req GET "/api/v1/incidents?limit=0" "$H_READ";   h_expect 400
h_req GET /api/v1/incidents/INC9999999 "$H_READ";  h_expect 404 "j['error']=not_found"
# a body beyond libevent's own hard limit: still a 413 (libevent's page)
python3 -c 'print("x"*200000)' > "$T_DIR/huge"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $H_WRITE" \
    -H 'Content-Type: application/json' --data-binary "@$T_DIR/huge" "$H_URL/api/v1/alerts")
[ "$code" = 413 ] || t_fail "200 kB body: expected 413, got $code"
t_log "ok: 200 kB body 413"
t_alive "$T_PID" || t_fail "triaged died"
h_req GET /healthz "";                             h_expect 200
h_req POST /api/v1/alerts "$H_WRITE" "$A";         h_expect 202 "j['accepted']=1"

# ---- incidents: list, filters, cursor pagination -------------------------
for i in 2 3 4 5 6; do
    h_req POST /api/v1/alerts "$H_WRITE" "{\"source\":\"api\",\"resource\":\"web-0$i\",\"check\":\"disk\",\"severity\":\"warning\"}"
    h_expect 202
done
t_expect_sql "SELECT count(*) FROM triaged.incident" "6"
h_req GET "/api/v1/incidents?limit=2" "$H_READ";   h_expect 200 "len(j['items'])=2" "j['items'][0]['resource']=web-06"
seen=$(h_json "','.join(i['resource'] for i in j['items'])")
cursor=$(h_json "j['next_cursor']")
# a new incident between pages must not shift the pages
h_req POST /api/v1/alerts "$H_WRITE" '{"source":"api","resource":"web-07","check":"disk"}'; h_expect 202
while [ "$cursor" != null ]; do
    h_req GET "/api/v1/incidents?limit=2&cursor=$cursor" "$H_READ"; h_expect 200
    seen="$seen,$(h_json "','.join(i['resource'] for i in j['items'])")"
    cursor=$(h_json "j['next_cursor']")
done
[ "$seen" = "web-06,web-05,web-04,web-03,web-02,web-01" ] || t_fail "pages gave [$seen]"
t_log "ok: pages in order, stable under inserts: $seen"
prio=$(t_sql "SELECT priority FROM triaged.incident WHERE resource = 'web-01'")
t_expect_sql "SELECT count(*) FROM triaged.incident WHERE priority = $prio" "1"
h_req GET "/api/v1/incidents?status=open&priority=P$prio" "$H_READ"
h_expect 200 "[i['resource'] for i in j['items']]=[\"web-01\"]"
h_req GET "/api/v1/incidents?since=2000-01-01T00:00:00Z&status=new&limit=500" "$H_READ"; h_expect 200 "len(j['items'])=7"
h_req GET "/api/v1/incidents?since=2999-01-01T00:00:00Z" "$H_READ"; h_expect 200 "len(j['items'])=0" "j['next_cursor']=null"
h_req GET "/api/v1/alerts?status=firing&source=api&limit=3" "$H_READ"; h_expect 200 "len(j['items'])=3"
h_req GET "/api/v1/alerts?source=nobody" "$H_READ"; h_expect 200 "len(j['items'])=0"

# impacted services: bind INC of web-01 to a CI that a service depends on
t_sql "INSERT INTO triaged.ci (name, kind) VALUES ('db-01', 'host'), ('app-01', 'host');
       INSERT INTO triaged.ci_relation (child_id, parent_id) SELECT a.id, d.id FROM triaged.ci a, triaged.ci d WHERE a.name = 'app-01' AND d.name = 'db-01';
       INSERT INTO triaged.service (name, tier, owner_team) VALUES ('shop', 1, 'web-team');
       INSERT INTO triaged.service_ci SELECT s.id, c.id FROM triaged.service s, triaged.ci c WHERE s.name = 'shop' AND c.name = 'app-01';
       UPDATE triaged.incident SET ci_id = (SELECT id FROM triaged.ci WHERE name = 'db-01') WHERE resource = 'web-01'" >/dev/null
num=$(t_sql "SELECT number FROM triaged.incident WHERE resource = 'web-01'")
h_req GET "/api/v1/incidents/$num" "$H_READ"
h_expect 200 "j['number']=$num" "len(j['alerts'])=1" "j['alerts'][0]['occurrences']=3" \
    "j['services'][0]['name']=shop" "j['timeline'][0]['kind']=opened"
h_req GET "/api/v1/incidents?service=shop" "$H_READ"; h_expect 200 "[i['number'] for i in j['items']]=[\"$num\"]"

# ---- actions ---------------------------------------------------------------
h_req POST "/api/v1/incidents/$num/acknowledge" "$H_WRITE"
h_expect 200 "j['status']=acknowledged" "j['acknowledged_by']=writer"
h_req POST "/api/v1/incidents/$num/acknowledge" "$H_WRITE"; h_expect 409 "j['error']=conflict"
h_req POST "/api/v1/incidents/$num/close" "$H_WRITE";       h_expect 409 "j['error']=conflict"
h_req POST "/api/v1/incidents/$num/comments" "$H_ADMIN" '{"text":"db-01 disk replaced"}'; h_expect 200
h_req POST "/api/v1/incidents/$num/comments" "$H_ADMIN" '{}'; h_expect 400 "j['error']=missing_field"
h_req POST "/api/v1/incidents/$num/resolve" "$H_WRITE" '{"comment":"fixed"}'; h_expect 200 "j['status']=resolved"
h_req POST "/api/v1/incidents/$num/close" "$H_WRITE";       h_expect 200 "j['status']=closed"
h_req POST "/api/v1/incidents/999999/resolve" "$H_WRITE";   h_expect 404 "j['error']=not_found"
t_expect_sql "SELECT string_agg(e.kind || ':' || e.actor, ' ' ORDER BY e.id) FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id WHERE i.number = '$num'" \
    "opened:triaged@$T_NAME acknowledged:writer comment:boss resolved:writer closed:writer"
t_expect_sql "SELECT detail->>'text' FROM triaged.incident_event WHERE kind = 'comment'" "db-01 disk replaced"
t_expect_sql "SELECT detail->>'comment' FROM triaged.incident_event WHERE kind = 'resolved' AND actor = 'writer'" "fixed"
out=$("$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf" audit verify 2>&1) || t_fail "audit verify: $out"
t_log "ok: $out"

# ---- metrics ------------------------------------------------------------------
curl -sf -H "Authorization: Bearer $H_READ" "$H_URL/metrics" > "$T_DIR/metrics" || t_fail "GET /metrics"
promtool check metrics < "$T_DIR/metrics" || t_fail "promtool check metrics failed"
t_log "ok: promtool check metrics"
grep -q '^triaged_http_requests_total{route="alerts_post",code="413"} 1$' "$T_DIR/metrics" || t_fail "no 413 count"
grep -q '^triaged_http_unauthorized_total 7$' "$T_DIR/metrics" || t_fail "unauthorized count: $(grep unauthorized "$T_DIR/metrics")"
grep -q '^triaged_alerts_received_total' "$T_DIR/metrics" || t_fail "pipeline metrics missing"
# every alert decoded was committed (each answer came after its commit), and
# each one's delay was observed once
recv=$(awk '/^triaged_alerts_received_total /{print $2}' "$T_DIR/metrics")
delays=$(awk '/^triaged_alert_delay_seconds_count /{print $2}' "$T_DIR/metrics")
[ -n "$recv" ] && [ "$recv" -gt 0 ] && [ "$delays" = "$recv" ] ||
    t_fail "alert_delay_seconds observed ${delays:-none} times for $recv alerts"
t_log "ok: alert_delay_seconds observed for each of the $recv alerts"
# the requests came one at a time, each to idle lanes: with batch_time 0 (the
# default) every batch was sealed because its lane was idle, none waited for
# another batch's commit or a timer
batches=$(awk '/^triaged_batches_total /{print $2}' "$T_DIR/metrics")
idle=$(awk '/^triaged_batches_sealed_total\{reason="idle"\} /{print $2}' "$T_DIR/metrics")
[ -n "$batches" ] && [ "$batches" -gt 0 ] && [ "${idle:-0}" = "$batches" ] ||
    t_fail "batches ${batches:-none}, sealed by an idle lane ${idle:-none}"
t_log "ok: each of the $batches batches sealed by its idle lane"
grep -q '^triaged_postgres_latency_seconds_bucket\|^triaged_http_request_seconds_bucket' "$T_DIR/metrics" || t_fail "no latency histograms"

# ---- SIGHUP: tokens and rate limit ---------------------------------------------
NEW=tok-new-$$
echo "newbie write $(printf %s "$NEW" | sha256sum | cut -d' ' -f1)" > "$T_DIR/tokens"
sed -i 's/^max_body = 4KiB$/max_body = 4KiB\nrate_limit = 1\nrate_burst = 2/' "$T_DIR/triaged.conf"
kill -HUP "$T_PID"
t_wait_log "$T_DIR/triaged.log" 'http: tokens loaded.*tokens=1' 10
h_req GET /api/v1/incidents "$H_WRITE";            h_expect 401 "j['error']=unauthorized"
h_req GET /api/v1/incidents "$NEW";                h_expect 200
h_req GET /api/v1/incidents "$NEW";                h_expect 200
h_req GET /api/v1/incidents "$NEW";                h_expect 429 "j['error']=rate_limited"
curl -s -D - -o /dev/null -H "Authorization: Bearer $NEW" "$H_URL/api/v1/incidents" | grep -qi '^Retry-After: [0-9]' \
    || t_fail "429 without Retry-After"
t_log "ok: Retry-After"
# a broken tokens file keeps the old tokens
echo "garbage line" > "$T_DIR/tokens"
kill -HUP "$T_PID"
t_wait_log "$T_DIR/triaged.log" 'tokens file not valid; keeping the old tokens' 10
sleep 1.1 # one token refills at rate_limit = 1/s
h_req GET /healthz "";                             h_expect 200
h_req GET /api/v1/incidents "$NEW";                h_expect 200
t_alive "$T_PID" || t_fail "triaged died"
t_log "PASS"

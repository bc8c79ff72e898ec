#!/usr/bin/env bash
# Heartbeats (DESIGN §4, a dead man's switch): a heartbeat (check
# 'heartbeat', label timeout) is stored, opens nothing and is no alert; when
# none arrives within the timeout, tick raises heartbeat_missing on the
# source's CI (bound like any alert) with an incident; a new heartbeat
# resolves the alert and, after the grace, the incident. A second source
# that keeps beating stays quiet throughout.
source "$(dirname "$0")/lib.sh"
t_db
t_topic 4
t_conf <<'CONF'
[incident]
resolve_grace = 1s
CONF
CTL=("$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf")
"${CTL[@]}" migrate >/dev/null || t_fail "migrate"
printf '{"cis": [{"name": "prom-01", "kind": "monitoring", "aliases": ["prometheus-a"]}, {"name": "prom-02"}]}' > "$T_DIR/cmdb.json"
"${CTL[@]}" cmdb import "$T_DIR/cmdb.json" >/dev/null || t_fail "import"
t_start

beat() {
    printf '%s\t{"source":"%s","resource":"%s","check":"heartbeat","labels":{"timeout":"%s"}}\n' \
        "$2" "$1" "$2" "$3" > "$T_DIR/beat"
    t_produce "$T_DIR/beat"
}
beat prometheus prometheus-a 3s
beat prometheus-b prom-02 1h
t_wait_sql "SELECT count(*) FROM triaged.heartbeat" "2"
t_expect_sql "SELECT h.source, c.name, h.timeout, h.missing_since IS NULL FROM triaged.heartbeat h JOIN triaged.ci c ON c.id = h.ci_id ORDER BY 1" \
    $'prometheus|prom-01|00:00:03|t\nprometheus-b|prom-02|01:00:00|t'
t_expect_sql "SELECT count(*) FROM triaged.alert" "0"
t_expect_sql "SELECT count(*) FROM triaged.incident" "0"

# no heartbeat for 3 s: heartbeat_missing on prom-01, with an incident
t_wait_sql "SELECT a.check_name, a.status, c.name, a.resource FROM triaged.alert a JOIN triaged.ci c ON c.id = a.ci_id" \
    "heartbeat_missing|firing|prom-01|prometheus-a" 20
t_expect_sql "SELECT a.first_seen = h.last_at + h.timeout FROM triaged.alert a, triaged.heartbeat h WHERE h.source = 'prometheus'" "t"
t_wait_sql "SELECT i.status, c.name, i.title FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id" \
    "new|prom-01|prom-01: heartbeat_missing on prometheus-a" 10
t_expect_sql "SELECT count(*) FROM triaged.heartbeat WHERE missing_since IS NOT NULL" "1"

# it beats again: resolved, and the incident after the grace
beat prometheus prometheus-a 3s
t_wait_sql "SELECT status FROM triaged.alert WHERE check_name = 'heartbeat_missing'" "resolved" 20
t_wait_sql "SELECT status FROM triaged.incident" "resolved" 20
t_expect_sql "SELECT missing_since IS NULL FROM triaged.heartbeat WHERE source = 'prometheus'" "t"
t_expect_sql "SELECT count(*) FROM triaged.alert" "1"
t_expect_sql "SELECT count(*) FROM triaged.incident" "1"
out=$("${CTL[@]}" audit verify 2>&1) || t_fail "audit verify: $out"
t_log "passed"

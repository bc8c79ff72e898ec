#!/usr/bin/env bash
# An alert storm through Kafka: 20,000 firing messages for 2,000 fingerprints
# over 200 resources, shuffled, plus resolves for the 300 fingerprints of 30
# resources. Exactly 2,000 alerts, occurrences summing to the firing
# messages, 300 resolved, 200 incidents, and after the grace exactly the 30
# incidents whose alerts all cleared are resolved, at their last resolve's time.
source "$(dirname "$0")/lib.sh"
t_db
t_topic 8
t_conf <<'CONF'
[incident]
resolve_grace = 1s
CONF
t_start

python3 - "$T_DIR/msgs" <<'PY'
import json, random, sys
random.seed(42)
t0 = 1767225600  # 2026-01-01T00:00:00Z
lines = []
for i in range(20000):
    fp = i % 2000
    res, chk = fp // 10, fp % 10
    ts = t0 + i // 10
    m = {"source": "storm", "resource": f"host-{res:03d}", "check": f"check-{chk}",
         "severity": "major", "occurred_at": f"{ts}"}
    lines.append((f"host-{res:03d}", m))
for fp in range(300):            # resources 0..29, all 10 checks each
    res, chk = fp // 10, fp % 10
    m = {"source": "storm", "resource": f"host-{res:03d}", "check": f"check-{chk}",
         "status": "resolved", "occurred_at": f"{t0 + 7200 + fp}"}
    lines.append((f"host-{res:03d}", m))
random.shuffle(lines)
import datetime
with open(sys.argv[1], "w") as f:
    for key, m in lines:
        ts = int(m["occurred_at"])
        m["occurred_at"] = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        f.write(key + "\t" + json.dumps(m) + "\n")
PY
t_produce "$T_DIR/msgs"
t_log "produced $(wc -l < "$T_DIR/msgs") messages"

t_wait_sql "SELECT count(*), sum(occurrences) FROM triaged.alert" "2000|20000" 120
t_expect_sql "SELECT status, count(*) FROM triaged.alert GROUP BY 1 ORDER BY 1" $'firing|1700\nresolved|300'
t_expect_sql "SELECT count(*) FROM triaged.incident" "200"
t_expect_sql "SELECT count(DISTINCT incident_id), count(*) FROM triaged.incident_alert" "200|2000"
t_wait_sql "SELECT count(*) FROM triaged.incident WHERE status = 'resolved'" "30" 30
t_expect_sql "SELECT count(*) FROM triaged.incident WHERE status = 'resolved' AND resource > 'host-029'" "0"
# Each resolved incident resolved at its last alert's resolve time (t0+7200+fp).
t_expect_sql "SELECT count(*) FROM triaged.incident i WHERE status = 'resolved'
    AND resolved_at = (SELECT max(a.resolved_at) FROM triaged.alert a JOIN triaged.incident_alert ia
                       ON ia.alert_id = a.id WHERE ia.incident_id = i.id)" "30"
t_expect_sql "SELECT min(resolved_at) AT TIME ZONE 'UTC', max(resolved_at) AT TIME ZONE 'UTC' FROM triaged.incident" \
    "2026-01-01 02:00:09|2026-01-01 02:04:59"
"$TD_BUILD_DIR/triagectl" -c "$T_DIR/triaged.conf" audit verify || t_fail "audit verify"
# the counts kept on the incidents (sql/013) are those of a recount
t_expect_sql "SELECT sum(alert_count), sum(firing_count) FROM triaged.incident" "2000|1700"
t_expect_sql "SELECT count(*) FROM triaged.incident_counts_verify()" "0"
t_log "passed"

#!/usr/bin/env bash
# [pipeline] batch_max_bytes seals a batch by the memory its decoded alerts
# hold, whatever batch_size and batch_time allow: four HTTP bodies of 1,000
# alerts with 1,200-byte summaries (~1.3 MB decoded each) against
# batch_max_bytes = 1MiB, batch_size 10,000 and a 10 s batch_time, one lane.
# Each body seals its own batch at once ("full"): four batches, none sealed
# by the timer, every alert committed and each request answered well before
# the timer would have fired.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/http_lib.sh"

h_setup <<'CONF'
max_body = 4MiB
[pipeline]
lanes = 1
batch_time = 10s
batch_max_bytes = 1MiB
max_message_size = 4MiB
CONF

for k in 0 1 2 3; do
    python3 - "$k" > "$T_DIR/body$k" <<'PY'
import json, sys
k = int(sys.argv[1])
print(json.dumps([{"source": "bytes", "resource": f"r{k}-{i % 10}", "check": f"c{i}",
                   "summary": "x" * 1200} for i in range(1000)]))
PY
done
t0=$SECONDS
for k in 0 1 2 3; do
    h_req POST /api/v1/alerts "$H_WRITE" "$(cat "$T_DIR/body$k")"; h_expect 202 "j['accepted']=1000"
done
[ $((SECONDS - t0)) -lt 10 ] || t_fail "four requests took $((SECONDS - t0)) s: a batch waited for its timer"
t_expect_sql "SELECT count(*), count(DISTINCT resource) FROM triaged.alert WHERE source = 'bytes'" "4000|40"
curl -sf -H "Authorization: Bearer $H_READ" "$H_URL/metrics" > "$T_DIR/metrics" || t_fail "GET /metrics"
batches=$(awk '/^triaged_batches_total /{print $2}' "$T_DIR/metrics")
full=$(awk '/^triaged_batches_sealed_total\{reason="full"\} /{print $2}' "$T_DIR/metrics")
timer=$(awk '/^triaged_batches_sealed_total\{reason="timer"\} /{print $2}' "$T_DIR/metrics")
[ "$batches" = 4 ] && [ "$full" = 4 ] && [ "${timer:-0}" = 0 ] ||
    t_fail "batches ${batches:-none}, sealed full ${full:-none}, by the timer ${timer:-none} (want 4, 4, 0)"
t_log "ok: 4 batches, each sealed at batch_max_bytes"
t_alive "$T_PID" || t_fail "triaged died"
t_log "PASS"

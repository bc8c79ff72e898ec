#!/usr/bin/env bash
# [pipeline] batch_max_bytes seals a batch by the memory its decoded alerts
# hold, whatever batch_size and batch_time allow: six HTTP bodies of 1,000
# alerts with 300-byte summaries (~0.42 MiB decoded each), sent at once,
# against batch_max_bytes = 1MiB, batch_size 10,000 and a 10 s batch_time,
# one lane. Two bodies stay under the bound, the third reaches it: two
# batches of three bodies, both sealed "full", none by the timer, every
# alert committed, every request answered well before the timer would fire.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/http_lib.sh"

h_setup <<'CONF'
max_body = 4MiB
[pipeline]
lanes = 1
batch_time = 10s
batch_max_bytes = 1MiB
CONF

for k in 0 1 2 3 4 5; do
    python3 - "$k" > "$T_DIR/body$k" <<'PY'
import json, sys
k = int(sys.argv[1])
print(json.dumps([{"source": "bytes", "resource": f"r{k}-{i % 10}", "check": f"c{i}",
                   "summary": "x" * 300} for i in range(1000)]))
PY
done
t0=$SECONDS
pids=()
for k in 0 1 2 3 4 5; do
    curl -s -o "$T_DIR/answer$k" -w '%{http_code}' -H "Authorization: Bearer $H_WRITE" \
        -H "Content-Type: application/json" --data-binary "@$T_DIR/body$k" \
        "$H_URL/api/v1/alerts" > "$T_DIR/code$k" &
    pids+=($!)
done
wait "${pids[@]}"
[ $((SECONDS - t0)) -lt 10 ] || t_fail "six requests took $((SECONDS - t0)) s: a batch waited for its timer"
for k in 0 1 2 3 4 5; do
    [ "$(cat "$T_DIR/code$k")" = 202 ] && grep -q '"accepted": *1000' "$T_DIR/answer$k" ||
        t_fail "body $k: $(cat "$T_DIR/code$k") $(cat "$T_DIR/answer$k")"
done
t_expect_sql "SELECT count(*), count(DISTINCT resource) FROM triaged.alert WHERE source = 'bytes'" "6000|60"
curl -sf -H "Authorization: Bearer $H_READ" "$H_URL/metrics" > "$T_DIR/metrics" || t_fail "GET /metrics"
batches=$(awk '/^triaged_batches_total /{print $2}' "$T_DIR/metrics")
full=$(awk '/^triaged_batches_sealed_total\{reason="full"\} /{print $2}' "$T_DIR/metrics")
timer=$(awk '/^triaged_batches_sealed_total\{reason="timer"\} /{print $2}' "$T_DIR/metrics")
[ "$batches" = 2 ] && [ "$full" = 2 ] && [ "${timer:-0}" = 0 ] ||
    t_fail "batches ${batches:-none}, sealed full ${full:-none}, by the timer ${timer:-none} (want 2, 2, 0)"
t_log "ok: 2 batches of three bodies, each sealed at batch_max_bytes"
t_alive "$T_PID" || t_fail "triaged died"
t_log "PASS"

#!/usr/bin/env bash
# tests/bench/bench_http.sh — HTTP intake throughput against Debian's
# Alertmanager, same batches, same client, same run. Prints figures; asserts
# nothing.
#
#   bash tests/bench/bench_http.sh [ALERTS (100000)] [CONNECTIONS (8)]
#
# ROUNDS=N (default 3): triaged then Alertmanager, N times, each round with
# alerts of its own (a round label), so every round has the same shape; a
# ratio per round (the two measured back to back) and their median. The
# machine's other load moves both sides of a round alike.
# SAME=1: every round sends the same alerts (after the first round, all are
# duplicates of firing alerts: the steady state of a storm).
# Each round also prints triaged's batches (from /metrics): how many, their
# segments, their time in PostgreSQL, and PostgreSQL's CPU a segment.
# BATCH_TIME sets triaged's [pipeline] batch_time, LANES its lanes; METRICS_OUT=FILE keeps
# triaged's /metrics. TD_STACK_PG_DURABLE=1 on the stack makes PostgreSQL
# flush every commit to disk (fsync, synchronous_commit on) as in production.
#
# Batches of 100 alerts, 90 % duplicates (ALERTS/10 distinct alerts, each
# batch drawn at random from them), sent over CONNECTIONS keep-alive
# connections by tests/bench/http_load.py, each waiting for its answer:
#   triaged   POST /api/v1/alerts, answered 202 only after the batch is
#             committed in PostgreSQL (durable);
#   reference prometheus-alertmanager POST /api/v2/alerts (in memory; its
#             route has no receiver that sends anything), the same alerts in
#             its format.
# Uses a running stack when TD_TEST_* is set, else starts one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
N=${1:-100000}
C=${2:-8}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
source "$root/tests/bench/bench_lib.sh"
[ -n "${TD_TEST_REDIS_URL:-}" ] || stack_up
work=$(mktemp -d "$TD_TEST_DIR/bench_http.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -z "${db:-}" ] || psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ROUNDS=${ROUNDS:-3}
python3 - "$N" "$work" "$ROUNDS" "${SAME:-0}" <<'PY'
import json, random, sys
n, work, rounds, same = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
distinct = n // 10
ts = "2026-11-25T21:40:00Z"
for r in range(1, rounds + 1):
    rnd = random.Random(42)  # the same draw each round, new identities
    with open(work + "/td.%d" % r, "w") as td, open(work + "/am.%d" % r, "w") as am:
        for b in range(n // 100):
            ids = [rnd.randrange(distinct) for _ in range(100)]
            td.write(json.dumps([{"source": "bench-r%d" % (1 if same else r), "resource": "host-%d" % (i // 10),
                                  "check": "check-%d" % (i % 10), "severity": "major",
                                  "occurred_at": ts} for i in ids]) + "\n")
            am.write(json.dumps([{"labels": {"alertname": "check-%d" % (i % 10),
                                             "instance": "host-%d" % (i // 10),
                                             "severity": "major", "round": str(1 if same else r)},
                                  "startsAt": ts} for i in ids]) + "\n")
PY

db="bench_http_$$"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
tok=bench-$$
echo "bench write $(printf %s "$tok" | sha256sum | cut -d' ' -f1)" > "$work/tokens"
tp=$(port)
cat > "$work/triaged.conf" <<CONF
[triaged]
instance = bench
[postgres]
conninfo = $pg
migrate = yes
[redis]
url = $TD_TEST_REDIS_URL
[plugins]
dir = $build/plugins
[pipeline]
${BATCH_TIME:+batch_time = $BATCH_TIME}
${LANES:+lanes = $LANES}
[http]
listen = 127.0.0.1:$tp
tokens = $work/tokens
rate_limit = 0
CONF
"$build/triaged" -c "$work/triaged.conf" > "$work/triaged.log" 2>&1 &
tpid=$!
pids+=("$tpid")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$tp/readyz" >/dev/null && break; sleep 0.1; done

ap=$(port)
cat > "$work/am.yml" <<YML
route:
  receiver: none
receivers:
  - name: none
YML
prometheus-alertmanager --config.file="$work/am.yml" --storage.path="$work/am" \
    --web.listen-address="127.0.0.1:$ap" --cluster.listen-address= --log.level=error \
    > "$work/am.log" 2>&1 &
apid=$!
pids+=("$apid")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ap/-/ready" >/dev/null && break; sleep 0.1; done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# batches, segments and the lanes' PostgreSQL seconds so far, from /metrics
batch_stats() {
    curl -s -H "Authorization: Bearer $tok" "http://127.0.0.1:$tp/metrics" | awk '
        /^triaged_batches_total / {b = $2}
        /^triaged_segments_total / {s = $2}
        /^triaged_postgres_latency_seconds_sum\{conn="pipeline-/ {t += $2}
        END {print b + 0, s + 0, t + 0}'
}
redis_pid=$(head -1 "$TD_TEST_DIR/redis.pid" 2>/dev/null) || redis_pid=""
hz=$(getconf CLK_TCK)
secs() { python3 -c "print(f'{$1:.2f}')"; }
rate() { echo "$1" | awk '{print $8}'; }
durable=$(psql "$pg" -qAtc "SHOW synchronous_commit")/$(psql "$pg" -qAtc "SHOW fsync")
echo "bench_http: $N alerts in batches of 100, $((N / 10)) distinct (90 % duplicates), $C connections, $ROUNDS rounds; PostgreSQL synchronous_commit/fsync $durable"
ratios=()
for r in $(seq "$ROUNDS"); do
    read -r b0 s0 t0 < <(batch_stats)
    c0=$(cpu "$tpid"); p0=$(pg_cpu "$db" 2); r0=$(cpu "$redis_pid")
    td=$(python3 "$root/tests/bench/http_load.py" "http://127.0.0.1:$tp/api/v1/alerts" "$work/td.$r" "$C" "Authorization: Bearer $tok")
    c1=$(cpu "$tpid"); p1=$(pg_cpu "$db" 2); r1=$(cpu "$redis_pid")
    read -r b1 s1 t1 < <(batch_stats)
    a0=$(cpu "$apid")
    am=$(python3 "$root/tests/bench/http_load.py" "http://127.0.0.1:$ap/api/v2/alerts" "$work/am.$r" "$C")
    a1=$(cpu "$apid")
    ratio=$(python3 -c "a = $(rate "$am"); print(f'{$(rate "$td") / a:.2f}' if a else 'n/a')")
    ratios+=("$ratio")
    echo "round $r: triaged $(rate "$td") alerts/s (errors $(echo "$td" | awk '{print $10}')), CPU-s triaged $(secs "($c1 - $c0) / $hz") PostgreSQL $(secs "$p1 - $p0") redis $(secs "($r1 - $r0) / $hz");" \
         "alertmanager $(rate "$am") alerts/s (errors $(echo "$am" | awk '{print $10}')), CPU-s $(secs "($a1 - $a0) / $hz"); ratio ${ratio}x"
    python3 -c "b = $b1 - $b0; s = $s1 - $s0; t = $t1 - $t0; print(f'  triaged batches: {b:.0f}, {s / b:.0f} segments and {1000 * t / b:.1f} ms in PostgreSQL a batch, PostgreSQL CPU {1e6 * ($p1 - $p0) / s:.0f} us a segment' if b and s else '  triaged batches: none')"
done
occ=$(psql "$pg" -qAtc "SELECT count(*), sum(occurrences) FROM triaged.alert")
distinct=$((N / 10)); [ "${SAME:-0}" = 1 ] || distinct=$((ROUNDS * N / 10))
echo "triaged stored: alerts|occurrences = $occ (expected $distinct distinct at most, $((ROUNDS * N)) occurrences)"
echo "ratio triaged / alertmanager: median $(printf '%s\n' "${ratios[@]}" | grep -v n/a | sort -n |
    awk '{a[NR]=$1} END {if (NR) printf "%.2f", NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')x of ${ratios[*]}"
curl -s -H "Authorization: Bearer $tok" "http://127.0.0.1:$tp/metrics" > "$work/metrics" || true
[ -z "${METRICS_OUT:-}" ] || cp "$work/metrics" "$METRICS_OUT"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"

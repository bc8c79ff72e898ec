#!/usr/bin/env bash
# tests/bench/soak.sh — the soak: a steady alert storm through Kafka for a
# long time, watching what must stay flat. Prints a table per minute and a
# verdict; asserts nothing (not in CI: it runs 10 minutes by default).
#
#   bash tests/bench/soak.sh [RATE] [SECONDS]      (default 20000 600)
#
# A paced producer (python -> kcat -P, 32 partitions) sends RATE messages a
# second: 99 % duplicates of FINGERPRINTS (default 2,000) alerts on 2,000
# resources, picked at random (a storm: the same alerts again and again,
# each ~10 times a second at 20,000/s), 1 % new alerts
# (NEW_EVERY=100), every message stamped occurred_at = the moment it is
# written. Every 5 s it samples triaged's RSS (/proc/PID/status VmRSS),
# open file descriptors (/proc/PID/fd), the consumer lag (messages
# written minus PostgreSQL's committed positions) and the committed rate;
# the end-to-end latency is commit time minus occurred_at of the new
# alerts (alert.created_at - first_seen: the batch's transaction start),
# p50/p99 per minute. Verdict: RSS flat when the last third's peak is
# within 10 % of the peak from minute 2 up to it (RSS moves with the queue
# and the batch sizes; a leak makes new highs at the end), fds when the
# last third's peak is within 2 of the middle third's; p99 steady when
# the last third's median p99 is under twice the middle third's; keeping up
# when the final lag is under 5 s of input.
# The producer lingers 50 ms (batches of ~30 messages a partition at
# 20,000/s): the mock broker answers a Fetch with about one produced batch
# a partition, so with 5 ms batches at 5,000/s (~1 message a partition)
# triaged was held to ~2,700 messages/s with its queue empty and the lag
# growing; the linger is part of the measured end-to-end latency.
# Uses a running stack when TD_TEST_* is set, else starts one (32
# partitions). The mock broker keeps only the newest ~5 MB a partition: a
# lag beyond that loses messages at the broker (reported at the end as
# "dropped by the broker's retention").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
RATE=${1:-20000}
DURATION=${2:-600}
FINGERPRINTS=${FINGERPRINTS:-2000}
NEW_EVERY=${NEW_EVERY:-100}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_KAFKA_BROKERS:-}" ]; then
    TD_STACK_KAFKA_PARTITIONS=32 stack_up
fi
work=$(mktemp -d "$TD_TEST_DIR/soak.XXXXXX")
B=$TD_TEST_KAFKA_BROKERS
db=soak_$$
topic=soak_$$
pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
pid="" prod=""
cleanup() {
    [ -n "$prod" ] && kill -TERM "$prod" 2>/dev/null
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    wait 2>/dev/null || true
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
stack_kafka_control "topic $topic 32" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/triaged.conf" <<CONF
[triaged]
instance = soak
[postgres]
conninfo = $pg
migrate = yes
[redis]
url = $TD_TEST_REDIS_URL
[kafka]
brokers = $B
group = g_$db
alerts_topic = $topic
rdkafka.fetch.wait.max.ms = 10
[http]
listen = 127.0.0.1:$port
open_reads = yes
[plugins]
dir = $build/plugins
load = in_kafka in_http
CONF
"$build/triaged" -c "$work/triaged.conf" >"$work/triaged.log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q 'consuming from the stored positions' "$work/triaged.log" && break; sleep 0.1; done
grep -q 'consuming from the stored positions' "$work/triaged.log" || { tail "$work/triaged.log" >&2; exit 1; }

# The paced producer; writes its message count to $work/written every 0.5 s.
python3 - "$RATE" "$DURATION" "$FINGERPRINTS" "$NEW_EVERY" "$work/written" <<'PY' |
import datetime, os, random, sys, time
rate, secs, F, new_every, progress = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
R = 2000
rnd = random.Random(1)
out = sys.stdout
t0 = time.monotonic(); i = 0; n = rate * secs; last = 0.0
while i < n:
    now = time.monotonic()
    due = min(n, int((now - t0 + 0.01) * rate))
    if due > i:
        ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lines = []
        for j in range(i, due):
            if j % new_every == 0:
                res = "host-%04d" % ((j // new_every) % R)
                check = "n%d" % j
            else:
                k = rnd.randrange(F)
                res = "host-%04d" % (k % R)
                check = "d%d" % k
            lines.append('%s\t{"source":"soak","resource":"%s","check":"%s","severity":"major","occurred_at":"%s"}\n'
                         % (res, res, check, ts))
        out.write("".join(lines))
        out.flush()
        i = due
    if now - last >= 0.5:
        with open(progress + ".tmp", "w") as f:
            f.write("%d\n" % i)
        os.replace(progress + ".tmp", progress)
        last = now
    time.sleep(0.005)
with open(progress, "w") as f:
    f.write("%d\n" % i)
PY
    kcat -P -b "$B" -t "$topic" -K $'\t' -z none -E -X linger.ms=50 -X batch.num.messages=10000 \
        -X queue.buffering.max.messages=1000000 \
        2>"$work/kcat.log" &
prod=$!
t_start=$(date +%s.%N)
echo "soak: $RATE msg/s for $DURATION s (1 in $NEW_EVERY a new alert, the rest duplicates of $FINGERPRINTS alerts), triaged pid $pid"

# Samples every 5 s: elapsed written committed rss_kb fds
: >"$work/samples"
sample() {
    local el written committed rss fds
    el=$(python3 -c "import time; print(int(time.time() - $t_start))")
    written=$(cat "$work/written" 2>/dev/null || echo 0)
    committed=$(psql "$pg" -qAtc "SELECT coalesce(sum(next_offset), 0) FROM triaged.kafka_offset WHERE topic = '$topic'" 2>/dev/null || echo 0)
    rss=$(awk '/^VmRSS/ { print $2 }' /proc/$pid/status)
    fds=$(ls /proc/$pid/fd | wc -l)
    echo "$el $written $committed $rss $fds" >>"$work/samples"
}
end=$(( $(date +%s) + DURATION ))
while [ "$(date +%s)" -lt "$end" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "triaged died" >&2; tail "$work/triaged.log" >&2; exit 1; }
    sample
    sleep 5
done
sample
wait "$prod" || true
prod=""
# Drain: up to 120 s more for the backlog (reported, not part of the table).
drain_t0=$(date +%s)
written=$(cat "$work/written")
while [ $(( $(date +%s) - drain_t0 )) -lt 120 ]; do
    committed=$(psql "$pg" -qAtc "SELECT coalesce(sum(next_offset), 0) FROM triaged.kafka_offset WHERE topic = '$topic'")
    [ "$committed" -ge "$written" ] && break
    sleep 1
done
drain_s=$(( $(date +%s) - drain_t0 ))
cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.0f", ($14 + $15) / hz}' /proc/$pid/stat)

# Latency per minute of the run, from the new alerts.
psql "$pg" -qAtF ' ' -c "SELECT floor(extract(epoch FROM first_seen - to_timestamp($t_start)) / 60)::int AS m,
        count(*), round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - first_seen))::numeric),
        round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - first_seen))::numeric)
    FROM triaged.alert WHERE check_name LIKE 'n%' GROUP BY 1 ORDER BY 1" >"$work/latency"
occ=$(psql "$pg" -qAtc "SELECT coalesce(sum(occurrences), 0) FROM triaged.alert")

python3 - "$work/samples" "$work/latency" "$RATE" "$DURATION" "$written" "$committed" "$occ" "$drain_s" "$cpu" <<'PY'
import statistics as st, sys
samples = [list(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
lat = {}
for l in open(sys.argv[2]):
    m, n, p50, p99 = l.split()
    lat[int(m)] = (int(n), int(p50), int(p99))
rate, dur, written, committed, occ, drain_s, cpu = map(int, sys.argv[3:10])
mins = max(1, dur // 60)
print("%-6s %10s %10s %10s %8s %5s %8s %8s" % ("minute", "written/s", "commit/s", "lag", "RSS MB", "fds", "p50 ms", "p99 ms"))
rows = []
prev = samples[0]
for m in range(mins):
    inm = [s for s in samples if m * 60 < s[0] <= (m + 1) * 60]
    if not inm:
        continue
    last = inm[-1]
    dt = max(1, last[0] - prev[0])
    w = (last[1] - prev[1]) / dt
    c = (last[2] - prev[2]) / dt
    lag = max(0, last[1] - last[2])   # "written" is read every 0.5 s: it trails a little
    rss = max(s[3] for s in inm) / 1024
    fds = max(s[4] for s in inm)
    n, p50, p99 = lat.get(m, (0, -1, -1))
    rows.append((m + 1, w, c, lag, rss, fds, p50, p99))
    print("%-6d %10.0f %10.0f %10d %8.1f %5d %8d %8d" % rows[-1])
    prev = last
third = max(1, len(rows) // 3)
mid, end = rows[third:2 * third] or rows, rows[-third:]
def med(rs, i): return st.median(r[i] for r in rs)
before = rows[1:-third] or rows   # after minute 1's warm-up, before the last third
rss_mid, rss_end = max(r[4] for r in before), max(r[4] for r in end)
fd_mid, fd_end = max(r[5] for r in mid), max(r[5] for r in end)
p99_mid, p99_end = med(mid, 7), med(end, 7)
final_lag = rows[-1][3]
print()
print("RSS: peak %.1f MB (minute 2 to the last third) -> %.1f MB (last third): %s" % (rss_mid, rss_end,
      "flat" if rss_end <= rss_mid * 1.10 else "GROWING"))
print("fds: %d -> %d: %s" % (fd_mid, fd_end, "flat" if fd_end <= fd_mid + 2 else "GROWING"))
print("latency p99: %d ms -> %d ms: %s" % (p99_mid, p99_end,
      "steady" if p99_end <= max(2 * p99_mid, p99_mid + 50) else "GROWING"))
held = sum(r[2] for r in rows) / len(rows)
print("throughput: %d msg/s asked, %.0f msg/s committed on average; final lag %d messages (%.1f s of input): %s"
      % (rate, held, final_lag, final_lag / rate, "keeping up" if final_lag < 5 * rate else "FALLING BEHIND"))
print("after the run: backlog drained in %d s; %d written, positions %d, occurrences %d%s; triaged CPU %d s"
      % (drain_s, written, committed, occ,
         "" if occ == written else " (%d dropped by the broker's retention or not drained)" % (written - occ), cpu))
PY

#!/usr/bin/env bash
# tests/bench/bench_kafka.sh — Kafka -> triaged -> PostgreSQL throughput and
# latency, with kcat's own consume rate from the same broker in the same run
# as the reference. Prints its figures; asserts nothing.
#
#   bash tests/bench/bench_kafka.sh [storm|new|latency|all]
#
# storm:   N=1,000,000 messages for 100,000 alerts (90 % duplicates), bursts
# new:     N=200,000 messages, every one a new alert, 1 in 10 a new incident;
#          a resource's ten alerts next to each other in the stream (--grouped)
# new-interleaved: the same alerts, but a resource's ten alerts 20,000
#          messages apart, so nearly every alert attaches to an incident an
#          earlier batch opened (the hardest case)
# latency: 5,000 new alerts/s for 3 + 20 s (1 in 10 opens an incident):
#          p50/p99 of produce -> incident committed (the Kafka timestamp of its
#          incident.opened event minus its opened_at), and of produce -> the
#          alert's transaction start (created_at - first_seen); over the 20 s
#          after the first 3 (the steady state: TD_BENCH_LAT_WARMUP=SECS) and
#          over the whole run (the first batches of a new connection plan
#          their statements: ~0.3 s of 60-120 ms batches, ~1.5 % of a 20-s
#          run's incidents);
#          TD_BENCH_LAT_SECONDS=1 adds the latter second by second, and
#          the autovacuum/autoanalyze runs of triaged's tables during the run
#          (a stall shows as one bad second: a vacuum or analyze competes for
#          the CPU with a busy lane's backend, and invalidates its plans);
#          TD_BENCH_LAT_LINGER=MS: the paced producer's linger.ms (default 1;
#          librdkafka's default is 5: fewer produce requests for the mock
#          broker to serve, each message up to MS later, counted in the
#          latency as in kcat's reference);
#          it prints the mock broker's CPU in the first and the last 5 s: the
#          mock (librdkafka 2.0.2's rdkafka_mock.c) finds a fetch's offset by
#          walking the partition's message sets from the first ("FIXME:
#          Maintain an index"), so its cost grows with the log over a run,
#          which Kafka's offset index does not; kcat's reference runs as long
#          as triaged's run, on the same kind of topic, to share that
# Uses a running stack when TD_TEST_* is set, else starts one.
# TD_BENCH_KAFKA_EXTRA: more lines for triaged's [kafka] section.
# TD_BENCH_LANES: triaged's [pipeline] lanes (default: its own default).
# TD_BENCH_PIPELINE_EXTRA: more lines for triaged's [pipeline] section.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
what=${1:-all}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
source "$root/tests/bench/bench_lib.sh"
if [ -z "${TD_TEST_KAFKA_BROKERS:-}" ]; then
    TD_STACK_KAFKA_PARTITIONS=16 stack_up
fi
work=$(mktemp -d "$TD_TEST_DIR/bench.XXXXXX")
B=$TD_TEST_KAFKA_BROKERS
pid=""
dbs=()
# (KEEP=1 keeps the databases: bench_<name>_<pid>)
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] && return
    for d in "${dbs[@]}"; do
        psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

now() { date +%s.%N; }

fresh_db() {
    db="bench_$1_$$"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
    dbs+=("$db")
    pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
}

start_triaged() { # topic
    cat > "$work/triaged.conf" <<CONF
[triaged]
instance = bench
[postgres]
conninfo = $pg
migrate = yes
[redis]
url = $TD_TEST_REDIS_URL
[kafka]
brokers = $B
group = g_$db
alerts_topic = $1
${TD_BENCH_KAFKA_EXTRA:-}
${TD_BENCH_INCIDENTS_TOPIC:+incidents_topic = $TD_BENCH_INCIDENTS_TOPIC}
[plugins]
dir = $build/plugins
load = in_kafka${TD_BENCH_INCIDENTS_TOPIC:+, out_kafka}${TD_BENCH_METRICS:+, in_http}
CONF
    if [ -n "${TD_BENCH_METRICS:-}" ]; then
        mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        echo "bench read $(printf bench-metrics | sha256sum | cut -d' ' -f1)" > "$work/tokens"
        printf '[http]\nlisten = 127.0.0.1:%s\ntokens = %s\n' "$mport" "$work/tokens" >> "$work/triaged.conf"
    fi
    printf '[pipeline]\n%s\n%s\n' "${TD_BENCH_LANES:+lanes = $TD_BENCH_LANES}" \
        "${TD_BENCH_PIPELINE_EXTRA:-}" >> "$work/triaged.conf"
    redis-cli -u "$TD_TEST_REDIS_URL" flushdb >/dev/null
    "$build/triaged" -c "$work/triaged.conf" > "$work/triaged-$db.log" 2>&1 &
    pid=$!
}

# TD_BENCH_METRICS=FILE: triaged also serves /metrics (in_http), saved to
# FILE.<run> right before it stops
stop_triaged() {
    [ -z "${TD_BENCH_METRICS:-}" ] ||
        curl -s -H "Authorization: Bearer bench-metrics" "http://127.0.0.1:$mport/metrics" \
            > "$TD_BENCH_METRICS.$db" || true
    kill -TERM "$pid"; wait "$pid" || true; pid=""
}

# Wait until the positions triaged committed with its batches cover $1
# messages (the topic starts at offset 0; summing the alerts' occurrences
# instead costs PostgreSQL ~35 ms a poll at 200,000 alerts, CPU the
# benchmark would take from the run it measures); then check that the
# occurrences sum to exactly $1. Prints messages/s from the first committed
# batch to the last.
wait_done() {
    local want=$1 got=0 t_first="" deadline=$((SECONDS + 600))
    while [ "$got" -lt "$want" ] && [ $SECONDS -lt $deadline ]; do
        got=$(psql "$pg" -qAtc "SELECT coalesce(sum(next_offset),0) FROM triaged.kafka_offset" 2>/dev/null || echo 0)
        [ -z "$t_first" ] && [ "$got" -gt 0 ] && t_first=$(now) && first_got=$got
        sleep 0.1
    done
    [ "$got" -ge "$want" ] || { echo "only $got of $want arrived" >&2; tail "$work"/triaged-*.log >&2; exit 1; }
    local t_end; t_end=$(now)
    local occ; occ=$(psql "$pg" -qAtc "SELECT sum(occurrences) FROM triaged.alert")
    [ "$occ" -eq "$want" ] || { echo "occurrences $occ for $want messages" >&2; exit 1; }
    python3 -c "print(f'{($want - $first_got) / ($t_end - $t_first):.0f}')"
}

kcat_rate() { # topic n
    local t0 t1 n
    t0=$(now)
    n=$(kcat -C -b "$B" -t "$1" -e -q -o beginning -f '%s\n' | wc -l)
    t1=$(now)
    [ "$n" -eq "$2" ] || { echo "kcat read $n of $2" >&2; exit 1; }
    python3 -c "print(f'{$2 / ($t1 - $t0):.0f}')"
}

run_throughput() { # name n fingerprints order [gen_alerts options]
    local name=$1 n=$2 f=$3 order=$4 topic="bench_${1//-/_}_$$"
    shift 4
    stack_kafka_control "topic $topic 32" >/dev/null
    python3 "$root/tests/bench/gen_alerts.py" "$n" --fingerprints "$f" --order "$order" "$@" > "$work/msgs"
    local t0 t1; t0=$(now)
    kcat -P -b "$B" -t "$topic" -K $'\t' -z none < "$work/msgs"
    t1=$(now)
    echo "$name: produced $n messages ($f alerts) in $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
    local kr; kr=$(kcat_rate "$topic" "$n")
    fresh_db "${name//-/_}"
    # Redis's CPU over the run (clock ticks; the stack's redis-server)
    local rpid r0; rpid=$(head -1 "$TD_TEST_DIR/redis.pid" 2>/dev/null) || rpid=""
    r0=$(proc_ticks "$rpid") || r0=0
    start_triaged "$topic"
    local tr; tr=$(wait_done "$n")
    local r1 rcpu="?"
    r1=$(proc_ticks "$rpid") && rcpu=$(awk -v t="$((r1 - r0))" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {printf "%.1f", t / hz}')
    local rss; rss=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
    # CPU seconds triaged itself used (utime + stime), to tell its share
    local cpu; cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' /proc/$pid/stat)
    local pgc; pgc=$(pg_cpu "$db")
    stop_triaged
    echo "$name (lanes ${TD_BENCH_LANES:-default}): kcat consumes $kr msg/s; triaged commits $tr msg/s end to end = $(python3 -c "print(f'{$tr/$kr:.2f}')")x kcat; peak RSS ${rss} kB; triaged CPU ${cpu} s; PostgreSQL CPU ${pgc} s; Redis CPU ${rcpu} s"
    psql "$pg" -qAtc "SELECT 'alerts ' || count(*) || ', occurrences ' || sum(occurrences) || ', incidents ' || (SELECT count(*) FROM triaged.incident) FROM triaged.alert"
}

# produce_paced TOPIC RATE SECS: new alerts at RATE a second (a resource's
# ten checks in a row), each stamped with its occurred_at when produced
# (tests/bench/paced_produce.c: a few % of a core, where a python loop piped
# into kcat -P took ~35 %; TD_BENCH_LAT_LINGER: its linger.ms, default 1)
produce_paced() {
    "$build/tests/paced_produce" "$B" "$1" "$2" "$3" "${TD_BENCH_LAT_LINGER:-1}"
}

# The reference: kcat alone consuming the same paced stream from the same
# broker with the same fetch wait, each message's arrival (stamped by a
# reader on kcat's unbuffered output) minus its occurred_at.
kcat_latency() { # rate secs
    local topic="bench_lat_ref_$$"
    stack_kafka_control "topic $topic 16" >/dev/null
    timeout $(( $2 + 15 )) kcat -C -b "$B" -t "$topic" -o beginning -u -q -c $(( $1 * $2 )) \
        -f '%s\n' -X fetch.wait.max.ms="$fetch_wait" |
        python3 -c '
import sys, json, datetime, time
lat = []
for line in sys.stdin:
    o = json.loads(line)
    t = datetime.datetime.fromisoformat(o["occurred_at"].replace("Z", "+00:00")).timestamp()
    lat.append((time.time() - t) * 1000)
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"kcat alone, produce -> consumed, over {len(lat)} messages: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1]:.1f} ms") if lat else print("kcat alone: nothing consumed")' &
    local reader=$!
    sleep 2 # kcat's assignment
    produce_paced "$topic" "$1" "$2"
    wait "$reader" || true # kcat stops after the messages produced (-c), or its timeout
}

run_latency() {
    local topic="bench_lat_$$" rate=5000 secs=20 warm=${TD_BENCH_LAT_WARMUP:-3}
    # The mock broker holds every fetch for the full fetch.wait.max.ms
    # (librdkafka's default 500 ms) where Kafka answers as soon as data is
    # there; kcat alone sees ~250 ms p50 against it. 10 ms is what Kafka's
    # early answer gives for this rate; kcat and triaged both use it.
    fetch_wait=10
    kcat_latency "$rate" $((warm + secs))
    stack_kafka_control "topic $topic 16" >/dev/null
    stack_kafka_control "topic bench_lat_inc_$$ 32" >/dev/null
    fresh_db latency
    # incident events go out on a topic: their Kafka timestamp (taken when
    # out_kafka produces them, right after the commit) minus the incident's
    # opened_at (its first alert's occurred_at, set when it was produced) is
    # produce -> incident committed
    export TD_BENCH_INCIDENTS_TOPIC=bench_lat_inc_$$
    TD_BENCH_KAFKA_EXTRA="rdkafka.fetch.wait.max.ms = $fetch_wait
${TD_BENCH_KAFKA_EXTRA:-}" start_triaged "$topic"
    # the group joined and its partitions assigned
    local deadline=$((SECONDS + 30))
    until grep -q "partitions assigned" "$work/triaged-$db.log" || [ $SECONDS -ge $deadline ]; do
        sleep 0.2
    done
    sleep 1 # their stored positions read
    # the mock broker's CPU, second by second (clock ticks), while producing
    local bpid; bpid=$(cat "$TD_TEST_DIR/kafka.pid" 2>/dev/null || echo)
    ( [ -n "$bpid" ] || exit 0
      prev=$(proc_ticks "$bpid") || exit 0
      while sleep 1; do
          cur=$(proc_ticks "$bpid") || exit 0
          echo $((cur - prev)); prev=$cur
      done ) > "$work/broker_cpu" &
    local sampler=$!
    produce_paced "$topic" "$rate" $((warm + secs))
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    awk -v hz="$(getconf CLK_TCK)" '{ v[NR] = $1 } END { if (NR < 10) exit
        f = 0; l = 0; for (i = 1; i <= 5; i++) { f += v[i]; l += v[NR - 5 + i] }
        printf "mock broker CPU while producing: first 5 s %.0f %%, last 5 s %.0f %% of a core\n",
               100 * f / 5 / hz, 100 * l / 5 / hz }' "$work/broker_cpu"
    local n=$((rate * (warm + secs))) got=0
    deadline=$((SECONDS + 60))
    until [ "$got" -ge "$n" ] || [ $SECONDS -ge $deadline ]; do
        got=$(psql "$pg" -qAtc "SELECT count(*) FROM triaged.alert"); sleep 0.2
    done
    sleep 1 # the last incident events on their way out
    kcat -C -b "$B" -t "bench_lat_inc_$$" -e -q -o beginning -f '%T\t%h\t%s\n' |
        python3 -c '
import sys, json, datetime
warm = float(sys.argv[1])
ev = []
for line in sys.stdin:
    ts, hdr, payload = line.rstrip("\n").split("\t", 2)
    if "triaged-kind=incident.opened" not in hdr:
        continue
    o = json.loads(payload)
    opened = datetime.datetime.fromisoformat(o["opened_at"].replace("Z", "+00:00")).timestamp()
    ev.append((opened, int(ts) - opened * 1000))
if not ev:
    sys.exit("no incident.opened events")
t0 = min(e[0] for e in ev)
def show(what, lat):
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    # (the mock broker keeps a few MB a partition: the count shows none was lost)
    print(f"produce -> incident committed and published, {what}, over {len(lat)} incidents: "
          f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1]:.1f} ms")
show(f"after the first {warm:g} s", [l for o, l in ev if o >= t0 + warm])
show("whole run", [l for o, l in ev])' "$warm"
    local q="round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - first_seen))::numeric, 1) || ' ms, p99 ' ||
        round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - first_seen))::numeric, 1) || ' ms, max ' ||
        round(1000 * max(extract(epoch FROM created_at - first_seen))::numeric, 1) || ' ms' FROM triaged.alert"
    psql "$pg" -qAtc "SELECT 'produce -> alert transaction start (created_at), after the first $warm s, over ' || count(*) || ' alerts: p50 ' || $q
        WHERE first_seen >= (SELECT min(first_seen) FROM triaged.alert) + $warm * interval '1 second'"
    psql "$pg" -qAtc "SELECT 'produce -> alert transaction start (created_at), whole run, over ' || count(*) || ' alerts: p50 ' || $q"
    # an autovacuum or autoanalyze of the engine's tables during the measured
    # window takes a core for ~0.3-1 s next to the lane (and invalidates its
    # plans): say so, so that a run's tail can be told from another's
    psql "$pg" -qAtc "WITH w AS (SELECT min(first_seen) + $warm * interval '1 second' AS t0,
                                        max(created_at) + interval '1 second' AS t1 FROM triaged.alert)
        SELECT 'autovacuum (v) / autoanalyze (a) of the engine tables in the measured window: ' ||
               coalesce(string_agg(relname || ' ' ||
                   CASE WHEN last_autovacuum BETWEEN w.t0 AND w.t1 THEN 'v' ELSE '' END ||
                   CASE WHEN last_autoanalyze BETWEEN w.t0 AND w.t1 THEN 'a' ELSE '' END, ', '
                   ORDER BY relname), 'none')
          FROM pg_stat_user_tables, w
         WHERE schemaname = 'triaged'
           AND (last_autovacuum BETWEEN w.t0 AND w.t1 OR last_autoanalyze BETWEEN w.t0 AND w.t1)"
    if [ "${TD_BENCH_LAT_SECONDS:-0}" = 1 ]; then
        echo "second by second (first_seen's minute:second, alerts, produce -> transaction start p50 / p99 / max ms):"
        psql "$pg" -qAtF ' ' -c "SELECT to_char(s, 'MI:SS'), count(*),
              round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY d)::numeric),
              round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY d)::numeric),
              round(1000 * max(d)::numeric)
              FROM (SELECT date_trunc('second', first_seen) AS s,
                           extract(epoch FROM created_at - first_seen) AS d FROM triaged.alert) x
              GROUP BY s ORDER BY s" | sed 's/^/  /'
        psql "$pg" -qAtF ' ' -c "SELECT '  ' || relname, 'autovacuum ' || coalesce(to_char(last_autovacuum, 'MI:SS.MS'), '-'),
              'autoanalyze ' || coalesce(to_char(last_autoanalyze, 'MI:SS.MS'), '-')
              FROM pg_stat_user_tables WHERE schemaname = 'triaged'
               AND (last_autovacuum IS NOT NULL OR last_autoanalyze IS NOT NULL) ORDER BY relname"
    fi
    stop_triaged
    unset TD_BENCH_INCIDENTS_TOPIC
}

case $what in
storm) run_throughput storm 1000000 100000 burst ;;
spread) run_throughput spread 1000000 100000 spread ;;
new) run_throughput new 200000 200000 burst --grouped ;;
new-interleaved) run_throughput new-interleaved 200000 200000 burst ;;
latency) run_latency ;;
all) run_throughput storm 1000000 100000 burst; run_throughput new 200000 200000 burst --grouped
     run_throughput new-interleaved 200000 200000 burst; run_latency ;;
*) echo "usage: $0 [storm|spread|new|new-interleaved|latency|all]" >&2; exit 1 ;;
esac

# tests/fault/fault_lib.sh — helpers for the sequence-checked fault suite.
# Source after tests/integration/lib.sh. A scenario:
#
#     f_setup [EXTRA CONFIG LINES on stdin]  # fresh DB, topic, triaged (+ HTTP)
#     f_stream NAME N RATE                   # sequenced stream in the background
#     ... inject a fault while it flows ...
#     f_stream_wait                          # the producer finished
#     f_caught_up 120                        # committed positions = the topic
#     f_check NAME                           # every seq exactly once (seq.py)
#     f_integrity                            # no alert/incident doubled
#
# Every wait polls with a deadline. The stream's messages are described in
# tests/fault/seq.py (a unique alert per tenth seq, duplicates otherwise);
# the check compares PostgreSQL with the topic read back, so a producer or
# broker failure is told apart from a triaged one.

F_SEQ="python3 $TD_SOURCE_DIR/tests/fault/seq.py"
F_FILES=()       # message files of every stream
F_SENT=0         # messages produced to the topic so far (all streams)
F_STREAMS=()     # names of the streams (their sources)
F_PROD=""        # pid of the running producer
F_SEED=${FAULT_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$F_SEED

# f_setup: fresh database, a 16-partition topic, triaged with in_kafka,
# out_kafka (incidents topic) and the HTTP API (open reads) on a free port.
# Extra config lines from stdin (appended: new sections only); F_HTTP_EXTRA:
# more [http] lines; F_SESSION_MS / F_HEARTBEAT_MS: the consumer's session
# timeout and heartbeat (6000 / 3000 ms).
f_setup() {
    t_db
    t_topic 16
    F_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    F_URL=http://127.0.0.1:$F_PORT
    F_INCIDENTS=$(t_topic_extra incidents 4)
    local extra=""
    [ -t 0 ] || extra=$(cat)
    cat >"$T_DIR/triaged.conf" <<CONF
[triaged]
instance = $T_NAME
log_level = info
[postgres]
conninfo = $T_PG
migrate = yes
[redis]
url = $TD_TEST_REDIS_URL
[kafka]
brokers = $TD_TEST_KAFKA_BROKERS
group = g_$T_DB
alerts_topic = $T_TOPIC
incidents_topic = $F_INCIDENTS
# the mock broker holds a rebalance for session.timeout.ms - 1 s
rdkafka.session.timeout.ms = ${F_SESSION_MS:-6000}
rdkafka.heartbeat.interval.ms = ${F_HEARTBEAT_MS:-3000}
[http]
listen = 127.0.0.1:$F_PORT
open_reads = yes
${F_HTTP_EXTRA:-}
[plugins]
dir = $TD_BUILD_DIR/plugins
$extra
CONF
    t_log "seed $F_SEED (FAULT_SEED=$F_SEED reproduces the random moments)"
    f_start
}

# f_start [LOG]: start triaged (again) and wait until it consumes.
F_STARTS=0
f_start() {
    F_STARTS=$((F_STARTS + 1))
    F_LOG=$T_DIR/triaged-$F_STARTS.log
    t_start "$T_DIR/triaged.conf" "$F_LOG"
    t_wait_log "$F_LOG" 'consuming from the stored positions' 30
}

# f_stream NAME N RATE [seq.py gen options]: generate the stream NAME
# (its source) of N messages, seqs following the previous streams', and
# produce it in the background at RATE messages/s with kcat (idempotent
# producer: its retries never double a message; -E: it rides out a broker
# outage instead of exiting on "all brokers down").
f_stream() {
    local name=$1 n=$2 rate=$3
    shift 3
    $F_SEQ gen "$name" "$n" --first "$F_SENT" "$@" >"$T_DIR/$name.msgs" || t_fail "seq.py gen $name"
    F_FILES+=("$T_DIR/$name.msgs")
    F_STREAMS+=("$name")
    F_SENT=$((F_SENT + n))
    ( $F_SEQ pace "$T_DIR/$name.msgs" "$rate" |
        kcat -P -b "$TD_TEST_KAFKA_BROKERS" -t "$T_TOPIC" -K $'\t' -z none \
            -E -X enable.idempotence=true -X linger.ms=5 ) >"$T_DIR/$name.kcat" 2>&1 &
    F_PROD=$!
    t_log "stream $name: $n messages at ${rate}/s (seqs $((F_SENT - n))..$((F_SENT - 1)))"
}

# f_stream_wait [TIMEOUT]: wait for the background producer.
f_stream_wait() {
    local deadline=$((SECONDS + ${1:-120}))
    while _stack_alive "$F_PROD"; do
        [ $SECONDS -lt $deadline ] || t_fail "producer still running after ${1:-120}s"
        sleep 0.2
    done
    wait "$F_PROD" || t_fail "kcat producer failed: $(tail -n 5 "$T_DIR"/*.kcat)"
    F_PROD=""
}

# Occurrences committed for source NAME (or all); committed positions.
f_occ() {
    if [ -n "${1:-}" ]; then
        t_sql "SELECT coalesce(sum(occurrences), 0) FROM triaged.alert WHERE source = '$1'" 2>/dev/null || echo -1
    else
        t_sql "SELECT coalesce(sum(occurrences), 0) FROM triaged.alert" 2>/dev/null || echo -1
    fi
}
f_positions() {
    t_sql "SELECT coalesce(sum(next_offset), 0) FROM triaged.kafka_offset WHERE topic = '$T_TOPIC'" 2>/dev/null || echo -1
}
f_occ_at_least() { [ "$(f_occ "${2:-}")" -ge "$1" ]; }

# f_caught_up TIMEOUT: the committed positions cover every message the topic
# holds: the F_SENT produced, or a few more when a Produce retried after an
# injected error had been appended twice (f_check then checks against the
# topic's content).
f_caught_up() {
    local deadline=$((SECONDS + ${1:-120})) got held
    kcat -C -b "$TD_TEST_KAFKA_BROKERS" -t "$T_TOPIC" -o beginning -e -q -f '%s\n' \
        >"$T_DIR/topic.dump" 2>/dev/null || t_fail "cannot read the topic back"
    held=$(wc -l <"$T_DIR/topic.dump")
    [ "$held" -ge "$F_SENT" ] || { t_topic_report >&2; t_fail "the topic holds $held messages of the $F_SENT produced"; }
    [ "$held" = "$F_SENT" ] || t_log "note: the topic holds $held messages for $F_SENT produced (a Produce retried)"
    while :; do
        got=$(f_positions)
        [ "$got" = "$held" ] && break
        if [ $SECONDS -ge "$deadline" ]; then
            t_topic_report >&2
            t_fail "committed positions $got, not the $held messages the topic holds, after ${1:-120}s"
        fi
        sleep 0.2
    done
    t_alive "$T_PID" || t_fail "triaged died"
    t_log "ok: committed positions cover all $held messages"
}

# f_check NAME: the alerts of stream NAME against what the topic holds.
f_check() {
    local name=$1 out rc=0
    [ -s "$T_DIR/topic.dump" ] && [ "$(wc -l <"$T_DIR/topic.dump")" -ge "$F_SENT" ] ||
        kcat -C -b "$TD_TEST_KAFKA_BROKERS" -t "$T_TOPIC" -o beginning -e -q -f '%s\n' \
            >"$T_DIR/topic.dump" 2>/dev/null || t_fail "cannot read the topic back"
    out=$(psql "$T_PG" -qAtX -F $'\t' -c "SELECT check_name, occurrences, coalesce(labels->>'seq', '')
            FROM triaged.alert WHERE source = '$name'" |
        $F_SEQ check "$name" "$T_DIR/$name.msgs" --topic "$T_DIR/topic.dump") || rc=$?
    if [ $rc -ne 0 ]; then
        printf '%s\n' "$out" >&2
        t_topic_report >&2
        t_fail "stream $name is not exact (seq.py check exited $rc)"
    fi
    t_log "ok: $(printf '%s\n' "$out" | tail -n 1)"
}

# f_integrity [INCIDENTS]: over every stream so far: one alert per
# fingerprint, exactly the expected alerts and incidents (default 50, one
# per resource), none doubled, every alert in one incident, audit intact.
f_integrity() {
    local alerts
    alerts=$(cat "${F_FILES[@]}" | cut -f2 | python3 -c '
import json, sys
print(len({(m["source"], m["check"]) for m in map(json.loads, sys.stdin)}))')
    t_check_integrity "$alerts" "${1:-50}"
}

# f_metric NAME: the value of a metric line (exact name with labels), or 0.
f_metric() {
    curl -s --max-time 5 "$F_URL/metrics" | awk -v m="$1" '$1 == m { print $2; f = 1 } END { if (!f) print 0 }'
}

# f_sleep_random MIN_MS MAX_MS: a random pause (seeded by FAULT_SEED).
f_sleep_random() {
    local ms=$(( $1 + RANDOM % ($2 - $1 + 1) ))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    echo "$ms"
}

# f_finish: stop triaged gracefully (SIGTERM) after the faults, require a
# clean exit, and fail on any sanitizer report in its logs (an ASan/UBSan
# build, -DTRIAGED_SANITIZE=ON, prints them to stderr: LeakSanitizer at exit).
f_finish() {
    t_stop "$T_PID"
    grep -q 'msg="triaged stopped" exit=0' "$F_LOG" ||
        t_fail "triaged did not stop cleanly: $(tail -n 3 "$F_LOG")"
    if grep -l -E 'ERROR: (Address|Leak)Sanitizer|runtime error:|UndefinedBehaviorSanitizer' \
            "$T_DIR"/triaged-*.log >/dev/null 2>&1; then
        grep -h -A 12 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T_DIR"/triaged-*.log | head -n 40 >&2
        t_fail "sanitizer report in triaged's log"
    fi
    t_log "ok: triaged stopped cleanly (exit 0), no sanitizer report in its $F_STARTS log(s)"
}

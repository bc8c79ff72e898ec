#!/usr/bin/env bash
# Exactly once in effect through crashes (DESIGN §4 Delivery): a 50,000-message
# stream (5,000 fingerprints over 500 resources, with a seq label) is produced
# in 50 chunks while triaged runs; triaged is killed with SIGKILL twice in the
# middle of it (once some but not all occurrences are committed) and
# restarted with the same config each time. Afterwards: occurrences sum to
# exactly the firing messages sent, one alert per fingerprint, one incident
# per resource, no resource with two open incidents, an intact audit chain.
source "$(dirname "$0")/lib.sh"
N=50000 F=5000 R=500 CHUNK=1000

t_db
t_topic 16
t_conf
t_start
t_gen "$T_DIR/msgs" $N --fingerprints $F --seq
total=$(t_count_firing "$T_DIR/msgs")
[ "$total" = $N ] || t_fail "generator wrote $total firing messages, not $N"

# Produce in chunks in the background, so the stream flows while triaged dies.
(
    for ((i = 1; i <= N; i += CHUNK)); do
        t_split "$T_DIR/msgs" $i $((i + CHUNK - 1)) "$T_DIR/chunk"
        t_produce "$T_DIR/chunk"
    done
) &
producer=$!

occ() { t_sql "SELECT coalesce(sum(occurrences), 0) FROM triaged.alert"; }
produced() { t_topic_report | awk '{ n += $6 } END { print n + 0 }'; }
occ_at_least() { [ "$(occ)" -ge "$1" ]; }

crash_at() {
    local at=$1 got
    t_wait_until 60 "sum(occurrences) >= $at" occ_at_least "$at"
    kill -KILL "$T_PID"
    t_kill9 "$T_PID"
    got=$(occ)
    t_log "killed triaged (SIGKILL) with $got occurrences committed, $(produced) messages produced so far"
    [ "$got" -gt 0 ] && [ "$got" -lt $N ] ||
        t_fail "the crash did not land mid-stream ($got of $N committed)"
    t_log "ok: crash landed mid-stream ($got of $N committed)"
    t_start "$T_DIR/triaged.conf" "$T_DIR/triaged.log"
    t_log "restarted triaged (pid $T_PID)"
}
crash_at 12000
crash_at 32000

wait "$producer" || t_fail "producing the stream failed"
t_log "produced $N messages in $(( (N + CHUNK - 1) / CHUNK )) chunks"
sent=$(produced)
[ "$sent" = $N ] || { t_topic_report >&2; t_fail "the topic holds $sent messages, not $N"; }

# Caught up: the committed positions cover every message of the topic.
caught_up() {
    [ "$(t_sql "SELECT coalesce(sum(next_offset), 0) FROM triaged.kafka_offset WHERE topic = '$T_TOPIC'")" = $N ]
}
deadline=$((SECONDS + 90))
until caught_up; do
    if [ $SECONDS -ge $deadline ]; then
        t_diag_alerts "$T_DIR/msgs"
        t_topic_report >&2
        t_fail "committed positions did not reach $N within 90 s (occurrences $(occ))"
    fi
    sleep 0.2
done
t_log "ok: committed positions cover all $N messages"
got=$(occ)
if [ "$got" != "$total" ]; then
    t_diag_alerts "$T_DIR/msgs"
    t_topic_report >&2
    t_fail "sum(occurrences) = $got, expected exactly $total firing messages"
fi
t_log "ok: sum(occurrences) = $total (exact)"
t_alive "$T_PID" || t_fail "triaged died"
t_check_integrity $F $R
t_log "passed"

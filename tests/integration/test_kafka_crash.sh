#!/usr/bin/env bash
# Exactly once in effect through crashes (DESIGN §4 Delivery): a 50,000-message
# stream (5,000 fingerprints over 500 resources, with a seq label) is produced
# in chunks of 1,000, each part while triaged is not running (so that it
# meets a backlog of several batches); triaged is killed with SIGKILL twice
# in the middle of a backlog (as soon as it has committed something, but
# not all), and it is restarted with the same config each time. Afterwards:
# occurrences sum to exactly the firing messages sent, one alert per
# fingerprint, one incident per resource, no resource with two open
# incidents, an intact audit chain.
source "$(dirname "$0")/lib.sh"
N=50000 F=5000 R=500 CHUNK=1000

t_db
t_topic 16
# (t_conf sets a 6 s session timeout: a SIGKILLed consumer keeps its
# partitions in the group until then, and the restarted one waits that long.)
t_conf
# Batches of 1,000 messages: a backlog of 20,000 takes twenty batches (two
# lanes at once), so a SIGKILL as soon as anything commits lands in the
# middle of it. (Produced while triaged runs, the stream was committed as
# fast as it came, and a crash "at 5,000" could find all of it committed.)
export TRIAGED_PIPELINE_BATCH_SIZE=1000
t_gen "$T_DIR/msgs" $N --fingerprints $F --seq --source crash
total=$(t_count_firing "$T_DIR/msgs")
[ "$total" = $N ] || t_fail "generator wrote $total firing messages, not $N"

occ() { t_sql "SELECT coalesce(sum(occurrences), 0) FROM triaged.alert"; }
occ_at_least() { [ "$(occ)" -ge "$1" ]; }
sent=0
produce_upto() { # produce the stream up to message $1, in chunks
    local i
    for ((i = sent + 1; i <= $1; i += CHUNK)); do
        t_split "$T_DIR/msgs" $i $((i + CHUNK - 1)) "$T_DIR/chunk"
        t_produce "$T_DIR/chunk"
    done
    sent=$1
}

# crash_at AT: wait until AT occurrences are committed, SIGKILL triaged; the
# crash must land mid-stream: some, not all, of what was produced committed.
crash_at() {
    local at=$1 got deadline=$((SECONDS + 60))
    # (polled every 20 ms, not t_wait_until's 200: an idle machine commits a
    # backlog fast)
    until occ_at_least "$at"; do
        [ $SECONDS -lt $deadline ] || t_fail "waited 60s for sum(occurrences) >= $at"
        sleep 0.02
    done
    t_kill9 "$T_PID"
    got=$(occ)
    if [ "$got" -le 0 ] || [ "$got" -ge "$sent" ]; then
        t_fail "the crash did not land mid-stream ($got of $sent produced messages committed)"
    fi
    t_log "ok: SIGKILL landed mid-stream: $got of $sent produced messages committed"
}
starts=1
restart() { # same config; a log of its own, so t_start sees this start
    starts=$((starts + 1))
    t_start "$T_DIR/triaged.conf" "$T_DIR/triaged-$starts.log"
    t_log "restarted triaged (pid $T_PID, log triaged-$starts.log)"
}

produce_upto 20000          # before triaged starts: a backlog of ten batches
t_start
t_wait_log "$T_DIR/triaged.log" 'consuming from the stored positions' 30
crash_at 1                  # as soon as it commits anything
produce_upto 45000          # while triaged is dead: a backlog of several batches
restart
crash_at $(( $(occ) + 1 ))  # as soon as the restarted one commits anything
produce_upto $N             # the rest, while triaged is dead
restart

sent_topic=$(t_topic_report | awk '{ n += $6 } END { print n + 0 }')
[ "$sent_topic" = $N ] || { t_topic_report >&2; t_fail "the topic holds $sent_topic messages, not $N"; }
t_log "produced $N messages"

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

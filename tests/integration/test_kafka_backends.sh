#!/usr/bin/env bash
# The backends fail under a running stream (DESIGN §4: "a restart of Redis,
# PostgreSQL ... loses no alert and opens no duplicate incident; PostgreSQL
# is the system of record"). One triaged, one topic, three phases, each a
# stream of its own source (20,000 messages, 2,000 fingerprints over the same
# 200 resources, in "spread" order so that every fingerprint fires again
# after the fault):
#   (a) Redis FLUSHALL mid-stream,
#   (b) Redis stopped mid-stream, messages produced while it is down, started
#       again empty (a restart),
#   (c) PostgreSQL stopped for 10 s mid-stream, messages produced meanwhile:
#       triaged stays up, pauses, and resumes by itself when it is back.
# After each: occurrences exact, one alert per fingerprint, one open incident
# per resource; at the end the audit chain is intact. The services are
# restored at exit, even on failure.
source "$(dirname "$0")/lib.sh"
N=20000 F=2000 R=200 P1=15000 P2=17000 # parts: 1..P1, P1+1..P2 (during the fault), P2+1..N

pg_up() { pg_isready -q -h 127.0.0.1 -p "$TD_TEST_PG_PORT"; }
redis_up() { [ "$(redis-cli -p "$TD_TEST_REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
# (stack_pg_start on a running server would stop it: check first)
t_on_exit 'pg_up || stack_pg_start >/dev/null 2>&1; redis_up || stack_redis_start >/dev/null 2>&1'

t_db
t_topic 16
t_conf
t_start
t_wait_log "$T_DIR/triaged.log" 'consuming from the stored positions' 30

produced=0
produce() { t_produce "$1"; produced=$((produced + $(wc -l <"$1"))); }
occ() { t_sql "SELECT coalesce(sum(occurrences), 0) FROM triaged.alert WHERE source = '$1'"; }
occ_positive() { [ "$(occ "$1")" -gt 0 ]; }
caught_up() {
    [ "$(t_sql "SELECT coalesce(sum(next_offset), 0) FROM triaged.kafka_offset
                WHERE topic = '$T_TOPIC'" 2>/dev/null)" = "$produced" ]
}
no_dup_alerts="SELECT count(*) FROM (SELECT fingerprint FROM triaged.alert GROUP BY 1 HAVING count(*) > 1) d"
no_dup_open="SELECT count(*) FROM (SELECT resource FROM triaged.incident
              WHERE status IN ('new', 'acknowledged') GROUP BY 1 HAVING count(*) > 1) d"

# phase SOURCE FAULT_START FAULT_END: produce part 1 of the source's stream
# (in chunks); as soon as some of it is committed, FAULT_START; produce part
# 2; FAULT_END;
# produce part 3; wait until all is consumed, then check.
phase() {
    local src=$1 start=$2 end=$3 at got deadline
    t_gen "$T_DIR/$src" $N --fingerprints $F --resources $R --order spread --seq --source "$src"
    t_split "$T_DIR/$src" 1 $P1 "$T_DIR/$src.1"
    t_split "$T_DIR/$src" $((P1 + 1)) $P2 "$T_DIR/$src.2"
    t_split "$T_DIR/$src" $((P2 + 1)) $N "$T_DIR/$src.3"
    # part 1 in chunks, in the background: the fault lands while it flows
    (
        for ((i = 1; i <= P1; i += 1000)); do
            t_split "$T_DIR/$src.1" $i $((i + 999)) "$T_DIR/$src.1.chunk"
            t_produce "$T_DIR/$src.1.chunk"
        done
    ) &
    local producer=$!
    produced=$((produced + P1))
    t_wait_until 60 "some of $src committed" occ_positive "$src"
    at=$(occ "$src")
    $start
    t_log "$src: $start with $at of the $P1 messages of part 1 committed"
    wait $producer || t_fail "$src: producing part 1 failed"
    produce "$T_DIR/$src.2"
    $end
    produce "$T_DIR/$src.3"
    deadline=$((SECONDS + 90))
    until caught_up; do
        if [ $SECONDS -ge $deadline ]; then
            t_diag_alerts "$T_DIR/$src"
            t_topic_report >&2
            t_fail "$src: committed positions did not reach the $produced messages produced within 90 s"
        fi
        sleep 0.2
    done
    t_alive "$T_PID" || t_fail "$src: triaged died"
    got=$(occ "$src")
    if [ "$got" != $N ]; then
        t_diag_alerts "$T_DIR/$src"
        t_fail "$src: sum(occurrences) = $got, expected exactly $N"
    fi
    t_log "ok: $src: sum(occurrences) = $N (exact)"
    t_expect_sql "SELECT count(*), count(DISTINCT fingerprint) FROM triaged.alert
                  WHERE source = '$src' AND status = 'firing'" "$F|$F"
    t_expect_sql "$no_dup_alerts" "0"
    t_expect_sql "$no_dup_open" "0"
    t_expect_sql "SELECT count(*), count(DISTINCT resource) FROM triaged.incident" "$R|$R"
}

# (a) Redis loses every key at once.
flushall() { [ "$(redis-cli -p "$TD_TEST_REDIS_PORT" flushall)" = OK ] || t_fail "FLUSHALL failed"; }
phase flush flushall :

# (b) Redis goes away, part 2 arrives meanwhile, and it comes back empty.
redis_stop() { stack_redis_stop || t_fail "cannot stop redis"; }
redis_start() { stack_redis_start >/dev/null || t_fail "cannot start redis"; }
phase rrestart redis_stop redis_start

# (c) PostgreSQL goes away for 10 s, part 2 arrives meanwhile. triaged must
# stay up (it pauses) and resume by itself.
pg_stop() {
    stack_pg_stop || t_fail "cannot stop postgresql"
    pg_stopped_at=$SECONDS
    pg_log_from=$(($(wc -l <"$T_DIR/triaged.log") + 1))
}
pg_start() {
    local left=$((pg_stopped_at + 10 - SECONDS))
    [ $left -le 0 ] || sleep $left     # the outage itself: 10 s
    t_alive "$T_PID" || t_fail "triaged died while postgresql was down"
    t_log "ok: triaged still running after 10 s without postgresql; it logged:"
    # (sed reads to the end: head would close the pipe early, and with
    # pipefail the writer's SIGPIPE ended the test once the log held more
    # than five warnings, as it does with one connection a lane)
    tail -n +"$pg_log_from" "$T_DIR/triaged.log" | grep -E 'level=(warn|error)' | cut -c1-220 |
        sed -n 's/^/    /; 1,5p' || true
    stack_pg_start || t_fail "cannot start postgresql"
}
phase pgstop pg_stop pg_start

t_check_integrity $((3 * F)) $R
t_log "passed"

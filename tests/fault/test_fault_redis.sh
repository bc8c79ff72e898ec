#!/usr/bin/env bash
# Fault: Redis loses its state under a sequenced stream (DESIGN §4:
# PostgreSQL is the system of record; Redis only hints). 40,000 messages at
# 2,500/s (tests/fault/seq.py); while they flow, at random moments
# (FAULT_SEED): FLUSHALL, then Redis killed with SIGKILL and kept down for
# 3 s while messages keep coming, then started again empty, then FLUSHALL
# once more. triaged must stay up, count the lost connection
# (redis_disconnects), and end exact: every seq once, nothing doubled.
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/fault_lib.sh"

redis_up() { [ "$(redis-cli -p "$TD_TEST_REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
t_on_exit 'redis_up || stack_redis_start >/dev/null 2>&1'
flushall() {
    [ "$(redis-cli -p "$TD_TEST_REDIS_PORT" flushall)" = OK ] || t_fail "FLUSHALL failed"
    t_log "FLUSHALL with $(f_occ) occurrences committed"
}

f_setup
f_stream redis 40000 2500
t_wait_until 60 "some committed" f_occ_at_least 1000
f_sleep_random 0 2000 >/dev/null
flushall
f_sleep_random 500 2500 >/dev/null
t_log "kill -9 redis-server with $(f_occ) occurrences committed"
kill -KILL "$(cat "$TD_TEST_DIR/redis.pid")"
t_wait_until 10 "redis gone" eval '! redis_up'
sleep 3   # the outage itself
t_alive "$T_PID" || t_fail "triaged died without Redis"
stack_redis_start >/dev/null || t_fail "cannot start redis"
t_log "redis started again (empty) with $(f_occ) occurrences committed"
f_sleep_random 500 2500 >/dev/null
flushall
f_stream_wait
f_caught_up 120
f_check redis
f_integrity
d=$(f_metric triaged_redis_disconnects_total)
[ "$d" -ge 1 ] || t_fail "redis_disconnects_total = $d after Redis was killed"
t_log "ok: redis_disconnects_total = $d, redis_errors_total = $(f_metric triaged_redis_errors_total)"
f_finish
t_log "passed"

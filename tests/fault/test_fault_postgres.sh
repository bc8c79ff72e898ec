#!/usr/bin/env bash
# Fault: PostgreSQL stopped and started under a sequenced stream. 40,000
# messages at 2,500/s (tests/fault/seq.py); while they flow: a fast
# shutdown (pg_ctl stop -m fast: sessions terminated, clean checkpoint) for
# 4 s, then, at a random moment (FAULT_SEED), an immediate one (-m
# immediate: a crash, every backend killed, WAL replayed at start) for 3 s;
# messages keep arriving meanwhile. triaged must stay up (batches retried
# with backoff, inputs paused at the queue limit), count the lost
# connections (postgres_disconnects), reconnect by itself, and end exact:
# every seq once, nothing doubled.
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/fault_lib.sh"

pg_up() { pg_isready -q -h 127.0.0.1 -p "$TD_TEST_PG_PORT"; }
t_on_exit 'pg_up || stack_pg_start >/dev/null 2>&1'
pg_immediate() {
    (cd "$TD_TEST_DIR/pg" && runuser -u postgres -- "$(_stack_pg_bindir)/pg_ctl" stop \
        -D "$TD_TEST_DIR/pg/data" -m immediate -w -t 30 -s) || t_fail "pg_ctl stop -m immediate failed"
}
outage() { # MODE SECONDS
    local before
    before=$(f_occ)
    if [ "$1" = fast ]; then stack_pg_stop || t_fail "cannot stop postgresql"; else pg_immediate; fi
    t_log "PostgreSQL stopped (-m $1) with $before occurrences committed"
    sleep "$2"    # the outage itself
    t_alive "$T_PID" || t_fail "triaged died while PostgreSQL was down"
    stack_pg_start || t_fail "cannot start postgresql"
    t_log "PostgreSQL started again after $2 s"
}

f_setup
f_stream postgres 40000 2500
t_wait_until 60 "some committed" f_occ_at_least 1000
outage fast 4
t_wait_until 60 "commits again" f_occ_at_least $(( $(f_occ) + 1 ))
f_sleep_random 0 2000 >/dev/null
outage immediate 3
f_stream_wait
f_caught_up 120
f_check postgres
f_integrity
# every lane's connection (conn="pipeline-0", "pipeline-1", ...) saw both
d=$(curl -s "$F_URL/metrics" | awk '/^triaged_postgres_disconnects_total\{conn="pipeline-[0-9]+"\}/ { n++; if (min == "" || $2 < min) min = $2 } END { print n + 0, min + 0 }')
[ "${d%% *}" -ge 1 ] && [ "${d##* }" -ge 2 ] || t_fail "postgres_disconnects_total{conn=pipeline-N}: lanes, fewest = $d after two outages"
t_log "ok: postgres_disconnects_total{conn=pipeline-N}: lanes, fewest = $d; batch_retries_total = $(f_metric triaged_batch_retries_total)"
f_finish
t_log "passed"

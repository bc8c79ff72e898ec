#!/usr/bin/env bash
# Fault: the disk of PostgreSQL's data folder fills up under a sequenced
# stream. This test runs a PostgreSQL 15 cluster of its own (the stack's
# one is shared) whose data folder is a small tmpfs mounted here (root can
# mount one; where it cannot, the test says so and exits 77, which CTest
# reports as skipped). With the stream flowing, a filler file takes every
# free byte; triaged's batches fail (could not extend a table file, or
# write WAL: No space left on device). triaged must stay up, stop
# consuming (the pipeline retries the same batch with backoff; the queue
# fills to queue_limit, exactly, and the Kafka input pauses there), log the
# error and count it (postgres_errors, batch_retries); meanwhile more of
# the stream arrives. Then the filler is removed and triaged must recover
# by itself and end exact: every seq once, nothing doubled. If PostgreSQL
# itself stopped (a WAL write failing is a PANIC), it is started again as
# a supervisor would (the log says so); either way triaged reconnects.
source "$(dirname "$0")/../integration/lib.sh"
source "$(dirname "$0")/fault_lib.sh"

DISK=$T_DIR/pgdisk
PGBIN=$(_stack_pg_bindir)
chmod 711 "$T_DIR"
mkdir -p "$DISK"
if ! mount -t tmpfs -o size=160m,mode=0755 tmpfs "$DISK" 2>"$T_DIR/mount.err"; then
    t_log "SKIP: cannot mount a tmpfs here ($(cat "$T_DIR/mount.err")); the disk-full scenario needs root"
    exit 77   # CTest: skipped (SKIP_RETURN_CODE)
fi
mine_pg() { [ -f "$DISK/data/postmaster.pid" ] && _stack_alive "$(head -n 1 "$DISK/data/postmaster.pid")"; }
pg_halt() {
    mine_pg || return 0
    runuser -u postgres -- "$PGBIN/pg_ctl" stop -D "$DISK/data" -m immediate -w -t 20 -s >/dev/null 2>&1 || true
}
t_on_exit 'pg_halt; rm -f "$DISK/filler"; umount "$DISK" 2>/dev/null || umount -l "$DISK"'
chown postgres:postgres "$DISK"
PORT=$(_stack_free_port "$TD_TEST_PG_PORT" "$TD_TEST_REDIS_PORT")
(cd "$DISK" && runuser -u postgres -- "$PGBIN/initdb" -D "$DISK/data" -U postgres \
    --auth=trust --encoding=UTF8 --locale=C --no-sync >"$T_DIR/initdb.log" 2>&1) ||
    t_fail "initdb: $(tail -n 5 "$T_DIR/initdb.log")"
mkdir -p "$DISK/run" && chown postgres "$DISK/run"
: >"$T_DIR/postgres.log" && chown postgres "$T_DIR/postgres.log"
cat >>"$DISK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DISK/run'
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
pg_go() {
    (cd "$DISK" && runuser -u postgres -- "$PGBIN/pg_ctl" start -D "$DISK/data" \
        -l "$T_DIR/postgres.log" -w -t 30 -s) || t_fail "pg_ctl start: $(tail -n 5 "$T_DIR/postgres.log")"
}
pg_go
FDB=td_fault_diskfull_$$
psql "host=127.0.0.1 port=$PORT dbname=postgres user=postgres" -qAtc "CREATE DATABASE $FDB" >/dev/null
T_PG="host=127.0.0.1 port=$PORT dbname=$FDB user=postgres"
t_log "private PostgreSQL on port $PORT, data on a 160 MiB tmpfs: $(df -h --output=used "$DISK" | tail -n 1 | tr -d ' ') used"

# f_setup without its own database: point it at ours.
t_db() { T_DB=$FDB; }
f_setup <<'CONF'
[pipeline]
queue_limit = 5000
CONF

f_stream diskfull 40000 2500
t_wait_until 60 "some committed" f_occ_at_least 1000
retries0=$(f_metric triaged_batch_retries_total)
# Fill the disk: every free byte.
dd if=/dev/zero of="$DISK/filler" bs=1M status=none 2>/dev/null || true
full_at=$(f_occ)
t_log "disk full ($(df -h --output=avail "$DISK" | tail -n 1 | tr -d ' ') free) with $full_at occurrences committed"
# Batches now fail: wait until triaged has retried a few and has not moved.
t_wait_until 60 "batch retries while the disk is full" eval \
    "[ \$(f_metric triaged_batch_retries_total) -ge \$((retries0 + 3)) ]"
# The queue fills to queue_limit and the input pauses there.
t_wait_until 30 "the queue full (5000) and the input paused" eval '[ "$(f_metric triaged_queue_messages)" = 5000 ]'
stalled=$(f_positions)
sleep 3   # the outage itself: nothing may move while the disk is full
[ "$(f_positions)" = "$stalled" ] || t_fail "positions moved while the disk was full ($stalled -> $(f_positions))"
[ "$(f_metric triaged_queue_messages)" = 5000 ] || t_fail "queue_messages left 5000 while paused: $(f_metric triaged_queue_messages)"
t_alive "$T_PID" || t_fail "triaged died with the disk full"
t_log "ok: triaged up, positions stalled at $stalled, batch_retries $(f_metric triaged_batch_retries_total), postgres_errors $(curl -s "$F_URL/metrics" | awk '/^triaged_postgres_errors_total/ { s += $2 } END { print s + 0 }')"
t_log "ok: input paused: queue_messages stayed at queue_limit (5000) for 3 s"
grep -q 'No space left on device' "$F_LOG" || t_fail "triaged did not log the disk-full error"
grep -E 'level=(warn|error)' "$F_LOG" | grep -m 2 'No space' | cut -c1-200 | sed 's/^/    /' || true
rm -f "$DISK/filler"
if ! mine_pg; then
    t_log "PostgreSQL stopped (PANIC on a WAL write): starting it again, as a supervisor would"
    grep -m 2 PANIC "$T_DIR/postgres.log" | cut -c1-200 | sed 's/^/    /' || true
    pg_go
fi
f_stream_wait
f_caught_up 120
f_check diskfull
f_integrity
f_finish
t_log "passed"

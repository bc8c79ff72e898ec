#!/usr/bin/env bash
# Capacity batches from several PostgreSQL sessions at once (the daemon's
# lanes: batches in flight on several connections, into the same month's
# partition), sql/009_capacity_key.sql's ingest_capacity_arrays:
#   - two batches of a month without a partition: the second waits for the
#     first to make it (no "relation already exists")
#   - a batch that shares samples with a batch not committed yet waits for
#     it, then stores only its own new samples (the duplicate path sees the
#     other's); with a third batch still open on other shared samples, its
#     anti-join waits for that one too and goes again: exact counts each
#   - two sessions ingesting the same 6,000 samples at once, each in its own
#     order (6 batches of 1,000, one transaction each, shuffled differently):
#     no deadlock, no error, every sample stored once with its value, the
#     sessions' "inserted" add up to 6,000 and their "duplicates" to 6,000,
#     and the rollups after the tick equal a from-scratch computation
#   - a tick rebuilding an hour, still open, holds up no batch of that hour,
#     and the next tick rolls that batch up
#   - deleting a CI still deletes its samples, hourly rows and series
source "$(dirname "$0")/lib.sh"

t_db
t_ctl
"${T_CTL[@]}" migrate >/dev/null || t_fail "migrate"
t_sql "INSERT INTO triaged.ci (name) SELECT 'ci-' || i FROM generate_series(1, 3) i" >/dev/null

# Sample k (0..5999): CI 1 + k % 3, metric disk, ts 2026-05-05 08:00Z + k s,
# value k % 997. cap_ingest(KEYS) ingests the samples KEYS, in that order, as
# one batch, and returns its "inserted duplicates".
t_sql "CREATE FUNCTION public.cap_ingest(p_keys integer[]) RETURNS text LANGUAGE sql AS \$\$
  SELECT (r.payload->>'inserted') || ' ' || (r.payload->>'duplicates')
    FROM (SELECT array_agg((1 + u.k % 3)::bigint ORDER BY u.o) AS i,
                 array_agg(NULL::text) AS c, array_agg('disk'::text) AS m,
                 array_agg(timestamptz '2026-05-05 08:00Z' + u.k * interval '1 s' ORDER BY u.o) AS t,
                 array_agg((u.k % 997)::float8 ORDER BY u.o) AS v,
                 array_agg(1000::float8) AS l
            FROM unnest(p_keys) WITH ORDINALITY AS u(k, o)) a,
         triaged.ingest_capacity_arrays(a.i, a.c, a.m, a.t, a.v, a.l, '{}') r
   WHERE r.kind = 'capacity.stats' \$\$" >/dev/null

# A session kept open: statements go in through a fifo, output to a file.
# open_session NAME; send NAME SQL; close_session NAME
declare -A S_FD S_PID
open_session() {
    mkfifo "$T_DIR/$1.in"
    # (without the other sessions' fifo ends: a session ends at its EOF)
    (for f in "${S_FD[@]}"; do exec {f}>&-; done
     PGAPPNAME="cap_$1" exec psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 < "$T_DIR/$1.in" > "$T_DIR/$1.out" 2>&1) &
    S_PID[$1]=$!
    T_PIDS+=("$!")
    exec {fd}> "$T_DIR/$1.in"
    S_FD[$1]=$fd
}
send() { printf '%s\n' "$2" >&"${S_FD[$1]}"; }
close_session() {
    local fd=${S_FD[$1]}
    exec {fd}>&-
    wait "${S_PID[$1]}" || t_fail "session $1 failed: $(cat "$T_DIR/$1.out")"
}
# Is session $1 waiting for a lock that session $2 holds?
waiting_for() {
    [ "$(t_sql "SELECT count(*) FROM pg_stat_activity w, pg_stat_activity h
                 WHERE w.application_name = 'cap_$1' AND h.application_name = 'cap_$2'
                   AND h.pid = ANY (pg_blocking_pids(w.pid))")" = 1 ]
}

# 0. two batches of a month with no partition yet (May 2026), at once: the
#    second waits for the first's partition instead of failing to make it
open_session p
send p "BEGIN; SELECT cap_ingest('{0}'); SELECT 'p-in';"
t_wait_until 30 "session p's batch" grep -qx 'p-in' "$T_DIR/p.out"
open_session q
send q "SELECT 'q:' || cap_ingest('{1}');"
t_wait_until 30 "session q waiting for p" waiting_for q p
send p "ROLLBACK;"
close_session p
close_session q
[ "$(grep '^q:' "$T_DIR/q.out")" = "q:1 0" ] || t_fail "q's batch: $(cat "$T_DIR/q.out")"
t_expect_sql "SELECT count(*) || ' ' || min(tableoid::regclass::text) FROM triaged.capacity_sample" \
    "1 triaged.capacity_sample_p202605"
t_sql "TRUNCATE triaged.capacity_sample, triaged.capacity_dirty_mark" >/dev/null

# 1. A holds keys 0..99 and 200..249 in an open transaction; C holds
#    300..349; B sends 0..399 in reverse order: it waits for A; A commits;
#    B's duplicate path then waits for C; C commits; B goes again and stores
#    the 200 that neither had.
open_session a
send a "BEGIN; SELECT cap_ingest(array(SELECT k FROM generate_series(0, 99) k UNION ALL SELECT k FROM generate_series(200, 249) k)); SELECT 'a-in';"
t_wait_until 30 "session a's batch" grep -qx 'a-in' "$T_DIR/a.out"
open_session c
send c "BEGIN; SELECT cap_ingest(array(SELECT k FROM generate_series(300, 349) k)); SELECT 'c-in';"
t_wait_until 30 "session c's batch" grep -qx 'c-in' "$T_DIR/c.out"
open_session b
send b "SELECT 'b:' || cap_ingest(array(SELECT k FROM generate_series(399, 0, -1) k));"
t_wait_until 30 "session b waiting for a" waiting_for b a
send a "COMMIT;"
close_session a
t_wait_until 30 "session b waiting for c" waiting_for b c
grep -q '^b:' "$T_DIR/b.out" && t_fail "b finished while c held its samples"
send c "COMMIT;"
close_session c
close_session b
[ "$(grep '^b:' "$T_DIR/b.out")" = "b:200 200" ] || t_fail "b's batch: $(cat "$T_DIR/b.out")"
t_log "ok: b waited for a, then for c, and stored 200 new, 200 duplicates"
t_expect_sql "SELECT count(*) || ' ' || count(DISTINCT ts) FROM triaged.capacity_sample" "400 400"
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample s
  WHERE s.ci_id <> 1 + (extract(epoch FROM s.ts - timestamptz '2026-05-05 08:00Z')::int % 3)
     OR s.value <> extract(epoch FROM s.ts - timestamptz '2026-05-05 08:00Z')::int % 997" 0

# 2. two sessions, the same 6,000 samples (400 of them already stored),
#    each in 6 batches of 1,000 in its own shuffled order, at once
t_sql "CREATE TABLE public.cap_stats (session text, inserted int, duplicates int)" >/dev/null
t_sql "CREATE PROCEDURE public.cap_run(p_name text, p_prime integer) LANGUAGE plpgsql AS \$\$
DECLARE r text;
BEGIN
  FOR b IN 0..5 LOOP
    r := cap_ingest(array(SELECT (j * p_prime) % 6000 FROM generate_series(b * 1000, b * 1000 + 999) j));
    INSERT INTO cap_stats VALUES (p_name, split_part(r, ' ', 1)::int, split_part(r, ' ', 2)::int);
    COMMIT; -- one transaction a batch, as in the daemon
  END LOOP;
END \$\$" >/dev/null
PGAPPNAME=cap_x psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 -c "CALL cap_run('x', 7919)" > "$T_DIR/x.out" 2>&1 &
px=$!
PGAPPNAME=cap_y psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 -c "CALL cap_run('y', 5843)" > "$T_DIR/y.out" 2>&1 &
py=$!
T_PIDS+=("$px" "$py")
wait "$px" || t_fail "session x: $(cat "$T_DIR/x.out")"
wait "$py" || t_fail "session y: $(cat "$T_DIR/y.out")"
t_expect_sql "SELECT count(*) || ' ' || count(DISTINCT (ci_id, metric, ts)) FROM triaged.capacity_sample" "6000 6000"
t_expect_sql "SELECT count(*) FROM triaged.capacity_sample s
  WHERE s.ci_id <> 1 + (extract(epoch FROM s.ts - timestamptz '2026-05-05 08:00Z')::int % 3)
     OR s.value <> extract(epoch FROM s.ts - timestamptz '2026-05-05 08:00Z')::int % 997" 0
t_expect_sql "SELECT count(*) || ' ' || sum(inserted) || ' ' || sum(duplicates) FROM cap_stats" "12 5600 6400"

# 3. the rollups of the hours both marked equal a from-scratch computation
tick() { t_sql "SELECT kind FROM triaged.capacity_tick('{\"now\":\"2026-05-06T00:00:00Z\",\"max_hours\":100,\"open_hour_ms\":0}')" >/dev/null; }
rollups_equal() {
t_expect_sql "SELECT string_agg(h.ci_id || ':' || h.hour || ':' || h.samples || ':' || h.min_value || ':'
                                || h.max_value || ':' || h.last_value, ',' ORDER BY h.ci_id, h.hour)
  FROM triaged.capacity_hourly h" \
    "$(t_sql "SELECT string_agg(x, ',' ORDER BY ci_id, hour) FROM (
        SELECT ci_id, hour, ci_id || ':' || hour || ':' || count(*) || ':' || min(value) || ':'
               || max(value) || ':' || (array_agg(value ORDER BY ts DESC))[1] AS x
          FROM (SELECT ci_id, date_trunc('hour', ts) AS hour, ts, value FROM triaged.capacity_sample) s
         GROUP BY 1, 2) y")"
}
tick
rollups_equal
t_expect_sql "SELECT count(*) FROM triaged.capacity_dirty_mark" 0
t_expect_sql "SELECT string_agg(ci_id || '=' || n, ',' ORDER BY ci_id) FROM triaged.capacity_series" "1=2000,2=2000,3=2000"

# 3b. a tick rebuilding an hour, not committed yet, holds up no batch of
#     that hour: the batch's mark waits for the next tick, which rolls the
#     batch's sample up
[ "$(t_sql "SELECT cap_ingest('{6000}')")" = "1 0" ] || t_fail "sample 6000"
open_session t
send t "BEGIN; SELECT count(*) FROM triaged.capacity_tick('{\"now\":\"2026-05-06T00:00:00Z\",\"max_hours\":100,\"open_hour_ms\":0}'); SELECT 't-in';"
t_wait_until 30 "session t's tick" grep -qx 't-in' "$T_DIR/t.out"
got=$(timeout 30 psql "$T_PG" -qAtX -c "SELECT cap_ingest('{6001}')") \
    || t_fail "a batch waited for the open tick (30 s)"
[ "$got" = "1 0" ] || t_fail "sample 6001: $got"
t_log "ok: a batch of the hour the open tick rebuilds went through"
send t "COMMIT;"
close_session t
t_expect_sql "SELECT count(*) FROM triaged.capacity_dirty_mark" 1
tick
t_expect_sql "SELECT count(*) FROM triaged.capacity_dirty_mark" 0
rollups_equal
t_expect_sql "SELECT string_agg(ci_id || '=' || n, ',' ORDER BY ci_id) FROM triaged.capacity_series" "1=2001,2=2001,3=2000"

# 4. a CI deleted takes its samples along (the ci_capacity_delete trigger,
#    which no longer has the key's leading column to find them by)
t_sql "DELETE FROM triaged.ci WHERE id = 3" >/dev/null
t_expect_sql "SELECT string_agg(ci_id || '=' || n, ',' ORDER BY ci_id)
  FROM (SELECT ci_id, count(*) n FROM triaged.capacity_sample GROUP BY 1) x" "1=2001,2=2001"
t_expect_sql "SELECT (SELECT count(*) FROM triaged.capacity_hourly WHERE ci_id = 3)
               + (SELECT count(*) FROM triaged.capacity_series WHERE ci_id = 3)" 0
t_log "PASS"

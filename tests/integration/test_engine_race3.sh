#!/usr/bin/env bash
# test_engine_race3.sh — a batch that loses a new group's incident to
# another transaction locks that incident at once, in resource order, so a
# third batch cannot deadlock with it (sql/025, found by review).
#
# rz has an open incident (zz1). Then:
#   session A: opens an incident on rk by hand and holds its transaction
#              (and an advisory lock) until B and C both wait;
#   session B: one batch: bz1 on rz (found: locked by the look-up), bk1 on
#              rk (new: its INSERT waits for A's row) and 4,000 new
#              resources after it, so that B is still busy once A commits;
#   session C: waits for A's advisory lock, then a batch with ck1 on rk and
#              cz1 on rz (it locks rk, then rz, in resource order).
# When A commits, B's INSERT meets A's incident: with ON CONFLICT DO NOTHING
# it took no lock on it and locked it only later, in find-or-open, after C
# had taken rk and waited for rz: a deadlock, 3 runs of 3. With DO UPDATE
# ... WHERE false B locks rk at once and C waits behind B. Both batches
# must commit, rk's incident (A's) count bk1 and ck1, rz's zz1, bz1 and cz1.
source "$(dirname "$0")/lib.sh"

t_db
t_ctl
"${T_CTL[@]}" migrate > "$T_DIR/migrate.log" 2>&1 || t_fail "migrate: $(cat "$T_DIR/migrate.log")"

# batch_sql NOW: the daemon's statement with this test's options, on the
# segments in psql's variable b (t_arrays_batch)
batch_sql() {
    t_arrays_batch '{"now":"2024-03-01T'"$1"'Z","actor":"t","reopen_window_ms":1800000,"flap_threshold":3,"flap_window_ms":1800000}'
}
# seg FP RESOURCE TIME: a new firing alert
seg() {
    printf '{"fp":"%s","source":"t","resource":"%s","check":"c-%s","dedup_key":null,"ci_id":null,"summary":null,"labels":{},"severity":"minor","status":"firing","n":1,"first":"2024-03-01T%sZ","last":"2024-03-01T%sZ"}' \
        "$1" "$2" "$1" "$3" "$3"
}

batch_sql 15:00:00 | psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 -v b="[$(seg zz1 rz 14:59:55)]" \
    > /dev/null 2> "$T_DIR/err" || t_fail "zz1: $(cat "$T_DIR/err")"
t_expect_sql "SELECT count(*) FROM triaged.incident WHERE resource = 'rz' AND status = 'new'" 1

{ printf '[%s,%s' "$(seg bz1 rz 15:00:01)" "$(seg bk1 rk 15:00:01)"
  for ((i = 0; i < 4000; i++)); do printf ',%s' "$(seg "bt$i" "$(printf 'rk_%05d' "$i")" 15:00:01)"; done
  printf ']'; } > "$T_DIR/b.json"

# A: rk's incident, uncommitted until B and C both wait for a lock
PGAPPNAME=race3-a psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 > "$T_DIR/a.out" 2> "$T_DIR/a.err" <<'SQL' &
BEGIN;
SELECT pg_advisory_xact_lock(42);
INSERT INTO triaged.incident (title, severity, resource, opened_at)
VALUES ('raced', 'info', 'rk', '2024-03-01T15:00:00Z');
DO $$
BEGIN
  FOR i IN 1..3000 LOOP
    PERFORM pg_stat_clear_snapshot();
    IF (SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name IN ('race3-b', 'race3-c')
           AND wait_event_type = 'Lock') = 2 THEN
      RETURN;
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RAISE EXCEPTION 'B and C did not both wait';
END $$;
COMMIT;
SQL
a=$!
a_holds() {
    [ "$(t_sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'race3-a'
                  AND query LIKE 'DO %'")" = 1 ]
}
t_wait_until 30 "session A holding rk's incident" a_holds
# (the batch, ~1 MB, is read by psql itself: an argument holds 128 kB at most)
{ echo "\\set b \`cat $T_DIR/b.json\`"; batch_sql 15:00:05; } \
    | PGAPPNAME=race3-b psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 > "$T_DIR/b.out" 2> "$T_DIR/b.err" &
b=$!
b_waits() {
    [ "$(t_sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'race3-b'
                  AND wait_event_type = 'Lock'")" = 1 ]
}
t_wait_until 30 "session B waiting for A's incident" b_waits
{ echo "BEGIN;"; echo "SELECT pg_advisory_xact_lock(42);"
  batch_sql 15:00:06; echo "COMMIT;"; } \
    | PGAPPNAME=race3-c psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 \
        -v b="[$(seg ck1 rk 15:00:02),$(seg cz1 rz 15:00:02)]" > "$T_DIR/c.out" 2> "$T_DIR/c.err" &
c=$!
a_rc=0 b_rc=0 c_rc=0
wait $a || a_rc=$?
wait $b || b_rc=$?
wait $c || c_rc=$?
[ $a_rc -eq 0 ] || t_fail "session A: $(cat "$T_DIR/a.err")"
[ $b_rc -eq 0 ] || t_fail "session B: $(cat "$T_DIR/b.err")"
[ $c_rc -eq 0 ] || t_fail "session C: $(cat "$T_DIR/c.err")"

t_expect_sql "SELECT title || ' ' || alert_count || '/' || firing_count FROM triaged.incident
               WHERE resource = 'rk'" "raced 2/2"
t_expect_sql "SELECT alert_count || '/' || firing_count FROM triaged.incident
               WHERE resource = 'rz'" "3/3"
t_expect_sql "SELECT count(*) FROM triaged.incident WHERE resource LIKE 'rk\_%'" 4000
t_expect_sql "SELECT count(*) FROM triaged.alert" 4005
t_expect_sql "SELECT count(*) FROM triaged.incident_alert" 4005
t_expect_sql "SELECT count(*) FROM triaged.audit_verify()" 0
t_expect_sql "SELECT count(*) FROM triaged.incident_counts_verify()" 0
t_log "ok: the lost incident locked at once; no deadlock, rk 2/2, rz 3/3"
echo "test_engine_race3: passed"

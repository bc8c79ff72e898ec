#!/usr/bin/env bash
# test_counts_race.sh — an incident's kept counts (sql/013: alert_count,
# firing_count) stay right when a merge moves an alert's link while another
# batch changes that alert's status.
#
# web-01 depends on db-01. An alert on web-01 (x1) opens its incident. Then,
# at once:
#   session A: the batch with db-01's alert, whose correlation merges web-01's
#              incident into db-01's (x1's link moves); its transaction stays
#              open for 3 s;
#   session B: once A sleeps, the batch that resolves x1.
# B must not count x1's resolve against the incident x1 left, nor A count
# x1 as firing in the incident it joined after B resolved it: afterwards
# every incident's counts equal a recount, and db-01's open incident counts
# 2 alerts, 1 firing (d1). Without a lock on the moved alerts, A counted x1
# as firing (B's resolve not committed yet) and B's delta went to the merged
# incident: db-01's incident stayed at 1 firing too many and never became
# pending resolve.
source "$(dirname "$0")/lib.sh"

t_db
t_ctl
"${T_CTL[@]}" migrate > "$T_DIR/migrate.log" 2>&1 || t_fail "migrate: $(cat "$T_DIR/migrate.log")"
cat > "$T_DIR/cmdb.json" <<'JSON'
{"cis": [{"name": "db-01"}, {"name": "web-01"}],
 "relations": [{"child": "web-01", "parent": "db-01"}],
 "services": [{"name": "Shop", "tier": 1, "cis": ["web-01"]}]}
JSON
"${T_CTL[@]}" cmdb import "$T_DIR/cmdb.json" > "$T_DIR/imp.log" 2>&1 \
    || t_fail "cmdb import: $(cat "$T_DIR/imp.log")"
ci() { t_sql "SELECT id FROM triaged.ci WHERE name = '$1'"; }
db=$(ci db-01) web=$(ci web-01)

# batch_sql NOW: the daemon's statement with this test's options, on the
# segments in psql's variable b (t_arrays_batch)
batch_sql() {
    t_arrays_batch '{"now":"2024-03-01T'"$1"'Z","actor":"t","reopen_window_ms":1800000,"flap_threshold":3,"flap_window_ms":1800000}'
}
# seg FP CI RESOURCE STATUS TIME [EXTRA]
seg() {
    local n=1
    [ "$4" = resolved ] && n=0
    printf '{"fp":"%s","source":"t","resource":"%s","check":"c-%s","dedup_key":null,"ci_id":%s,"summary":null,"labels":{},"severity":"major","status":"%s","n":%s,"first":"2024-03-01T%sZ","last":"2024-03-01T%sZ"%s}' \
        "$1" "$3" "$1" "$2" "$4" "$n" "$5" "$5" "${6:-}"
}

batch_sql 11:00:05 \
    | psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 \
            -v b="[$(seg x1 "$web" web-01 firing 11:00:00 ",\"up\":\"{$db}\",\"svc\":\"{1}\"")]" \
            > /dev/null 2> "$T_DIR/err" || t_fail "x1: $(cat "$T_DIR/err")"
[ "$(t_sql "SELECT count(*) FROM triaged.incident WHERE status = 'new'")" = 1 ] || t_fail "x1 opened no incident"

# A: db-01's alert, the merge, and 3 s before the commit
{ batch_sql 11:00:35
  echo "SELECT pg_sleep(3);"; } | { echo "BEGIN;"; cat; echo "COMMIT;"; } \
    | psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 \
        -v b="[$(seg d1 "$db" db-01 firing 11:00:30 ",\"up\":\"{}\",\"svc\":\"{}\"")]" \
        > "$T_DIR/a.out" 2> "$T_DIR/a.err" &
a=$!
# A has merged and holds its transaction open: it sleeps
a_sleeps() {
    [ "$(t_sql "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                  AND pid <> pg_backend_pid() AND query LIKE 'SELECT pg_sleep(3)%'")" = 1 ]
}
t_wait_until 30 "session A in its pg_sleep" a_sleeps
# B: x1 resolves while A's transaction is open
batch_sql 11:00:45 \
    | psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 \
            -v b="[$(seg x1 "$web" web-01 resolved 11:00:40)]" \
            > "$T_DIR/b.out" 2> "$T_DIR/b.err"
b_rc=$?
a_rc=0
wait $a || a_rc=$?
# (a deadlock between the two is allowed: PostgreSQL aborts one and the
# daemon retries its batch; so does the test, once)
if [ $a_rc -ne 0 ]; then
    grep -q 'deadlock detected' "$T_DIR/a.err" || t_fail "session A: $(cat "$T_DIR/a.err")"
    t_log "A deadlocked with B and is retried, as the daemon would"
    batch_sql 11:00:35 \
        | psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 \
                -v b="[$(seg d1 "$db" db-01 firing 11:00:30 ",\"up\":\"{}\",\"svc\":\"{}\"")]" \
                > /dev/null 2> "$T_DIR/a.err" \
        || t_fail "session A again: $(cat "$T_DIR/a.err")"
fi
if [ $b_rc -ne 0 ]; then
    grep -q 'deadlock detected' "$T_DIR/b.err" || t_fail "session B: $(cat "$T_DIR/b.err")"
    t_log "B deadlocked with A and is retried, as the daemon would"
    batch_sql 11:00:45 \
        | psql "$T_PG" -qAtX -v ON_ERROR_STOP=1 \
                -v b="[$(seg x1 "$web" web-01 resolved 11:00:40)]" \
                > /dev/null 2> "$T_DIR/b.err" \
        || t_fail "session B again: $(cat "$T_DIR/b.err")"
fi

t_expect_sql "SELECT count(*) FROM triaged.incident WHERE merged_into IS NOT NULL" 1
t_expect_sql "SELECT status FROM triaged.alert WHERE fingerprint = 'x1'" resolved
off=$(t_sql "SELECT string_agg(row_to_json(v)::text, ' ') FROM triaged.incident_counts_verify() v")
[ -z "$off" ] || t_fail "kept counts differ from a recount: $off"
t_expect_sql "SELECT alert_count || '/' || firing_count FROM triaged.incident
               WHERE ci_id = $db AND merged_into IS NULL" "2/1"
t_log "ok: merge and resolve at once; counts equal a recount, db-01's incident 2/1"
echo "test_counts_race: passed"

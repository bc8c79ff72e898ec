#!/usr/bin/env bash
# bench_count_triggers.sh — what the count triggers (013/015, sql/028) cost
# per change made outside the engine's batch, with the plans their session
# made on a TINY database (a fresh install, every benchmark), at 100,000
# alerts in 10,000 incidents, then after ANALYZE.
#
# One psql session (one plan cache, as a daemon connection) on a fresh
# database, autovacuum off on the engine tables (no autoanalyze may replace
# the plans mid-run): 400 alerts in 40 incidents and 8 rounds of each
# operation there (the plans are made then, generic after 5 calls), NB-1
# (99) batches of 1,000 new alerts through ingest_arrays (10 a resource: an
# incident each), then ROUNDS (20) rounds of each operation, ANALYZE, and
# ROUNDS again. The operations, each one statement:
#   status   an alert's status changed by an UPDATE (resolved, then firing
#            again: two statements a round) -> alert_status_counts
#   link     10 links inserted (incident k's alerts also linked to k+1, as
#            a merge or alerts leaving maintenance do) -> counts_insert
#   unlink   the same 10 links deleted -> counts_delete -> _recount
#   merge    triaged._merge of two incidents of 10 alerts each (links
#            moved: both triggers, and _merge's own statements)
# Prints per phase and operation the backend's CPU per statement
# (/proc/<pid>/schedstat around each statement: robust on a shared
# machine, where wall time is not): mean, median, min, max. Against the
# stack of tests/stack/stack.sh (TD_TEST_PG_ADMIN_CONNINFO), with
# $BUILD_DIR's triagectl (default build/: its embedded migrations).
# Nothing is asserted: figures only.
#
#     bash tests/stack/stack.sh up /tmp/st && source /tmp/st/env.sh
#     bash tests/bench/bench_count_triggers.sh
#     BUILD_DIR=/work/main/build bash tests/bench/bench_count_triggers.sh   # before
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
: "${TD_TEST_PG_ADMIN_CONNINFO:?source the stack env.sh first}"
db=td_bench_ctrig_$$
nb=${NB:-100}
rounds=${ROUNDS:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -qAtX "$TD_TEST_PG_ADMIN_CONNINFO" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

psql -qAtX "$TD_TEST_PG_ADMIN_CONNINFO" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
printf '[postgres]\nconninfo = %s dbname=%s\n[redis]\nurl = redis://127.0.0.1:1/0\n' \
    "$TD_TEST_PG_ADMIN_CONNINFO" "$db" > "$work/conf"
"$build/triagectl" -c "$work/conf" migrate > /dev/null
conn="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
psql -qAtX "$conn" -c "DO \$\$ DECLARE t text; BEGIN
  FOREACH t IN ARRAY ARRAY['alert','alert_history','incident','incident_alert','incident_event',
                           'heartbeat','maintenance'] LOOP
    EXECUTE format('ALTER TABLE triaged.%I SET (autovacuum_enabled = off)', t);
  END LOOP; END \$\$"

if [ -r /proc/self/schedstat ]; then
    cpu_now="awk '{print \$1}' /proc/\$BPID/schedstat"
    cpu_ms=0.000001
else
    cpu_now="awk '{print \$14+\$15}' /proc/\$BPID/stat"
    cpu_ms=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN {print 1000 / hz}')
fi
# one timed statement: phase, operation, SQL
timed() {
    echo "\\! $cpu_now > $work/c0"
    echo "$3"
    echo "\\! $cpu_now | awk -v t0=\$(cat $work/c0) '{print \$1 == t0 ? 0 : (\$1 - t0) * $cpu_ms}' >> $work/$1.$2"
}
# batch B of N new alerts (fingerprints from 1000*B, 10 a resource)
batch() { cat <<SQL
SELECT count(*) FROM (SELECT array_agg('a' || lpad(to_hex(k), 15, '0') ORDER BY k) AS fp, array_agg('bench'::text) AS src, array_agg('bench-' || (k / 10) ORDER BY k) AS res, array_agg('check' || (k % 10) ORDER BY k) AS chk, array_agg(NULL::text) AS dk, array_agg(NULL::bigint) AS ci, array_agg('bench'::text) AS sum, array_agg('{}'::jsonb) AS lab, array_agg('major'::text) AS sev, array_agg('firing'::text) AS st, array_agg(1::bigint) AS n, array_agg(now()) AS t0, array_agg(now()) AS t1 FROM generate_series($(($1*1000)), $(($1*1000+$2-1))) k) x, LATERAL triaged.ingest_arrays(fp, src, res, chk, dk, ci, sum, lab, sev, st, n, t0, t1, NULL, NULL, '{"actor":"bench"}') r;
SQL
}
# ROUNDS rounds of each operation in phase $1, on incidents from $2 (the
# incidents' ids are given in order by the batches: incident k has the
# alerts 10k-9 .. 10k)
ops() {
    local p=$1 base=$2 r i a
    for ((r = 0; r < $3; r++)); do
        i=$((base + 4 * r)); a=$((10 * i - 9 + r % 10))
        timed "$p" status "UPDATE triaged.alert SET status = 'resolved', resolved_at = now() WHERE id = $a;"
        timed "$p" status "UPDATE triaged.alert SET status = 'firing', resolved_at = NULL WHERE id = $a;"
        timed "$p" link "INSERT INTO triaged.incident_alert (incident_id, alert_id, role) SELECT $((i + 1)), ia.alert_id, 'symptom' FROM triaged.incident_alert ia WHERE ia.incident_id = $i;"
        timed "$p" unlink "DELETE FROM triaged.incident_alert WHERE incident_id = $((i + 1)) AND role = 'symptom';"
        timed "$p" merge "SELECT triaged._merge($((i + 2)), $((i + 3)), now(), 'bench');"
    done
}
{
    echo "SELECT pg_backend_pid() AS pid \\gset"
    echo "\\setenv BPID :pid"
    batch 0 400                        # 40 incidents
    ops tiny 1 8
    for b in $(seq 1 $((nb - 1))); do batch "$b" 1000; done
    if [ "${EXPLAIN:-0}" = 1 ]; then   # the plans of one untimed round, to stderr
        echo "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
        echo "SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;"
        echo "SET client_min_messages = log;"
        ops explained 2000 1 2>&1
        echo "SET client_min_messages = notice; SET auto_explain.log_min_duration = -1;"
    fi
    ops big 100 "$rounds"
    echo "ANALYZE;"
    ops analyzed $((100 + 4 * rounds + 4)) "$rounds"
    echo "SELECT count(*) AS verify_rows FROM triaged.incident_counts_verify();"
} | psql -qAtX -v ON_ERROR_STOP=1 "$conn" > "$work/out" 2> "$work/err" || { cat "$work/out" "$work/err" >&2; exit 1; }
[ "${EXPLAIN:-0}" = 1 ] && cp "$work/err" "${EXPLAIN_OUT:-/dev/stderr}"
grep -q '^0$' <(tail -1 "$work/out") || echo "WARNING: incident_counts_verify: $(tail -1 "$work/out") incidents off"
for p in tiny big analyzed; do
    for o in status link unlink merge; do
        sort -n "$work/$p.$o" | awk -v p="$p" -v o="$o" '{s += $1; a[NR] = $1}
            END {printf "%-9s %-7s %3d statements: backend CPU %8.3f ms (median %.3f, min %.3f, max %.3f)\n",
                 p, o, NR, s / NR, (a[int((NR + 1) / 2)] + a[int(NR / 2) + 1]) / 2, a[1], a[NR]}'
    done
done

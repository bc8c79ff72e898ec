#!/usr/bin/env bash
# tests/bench/bench_engine.sh — PostgreSQL's cost per alert in the incident
# engine, as backend CPU time (the backend's time on a CPU in ns, read from
# /proc/<pid>/schedstat before and after each batch statement; utime + stime
# from /proc/<pid>/stat, in clock ticks, where there is no schedstat): robust on a
# shared machine, where wall time is not. Prints figures; asserts nothing.
#
#   bash tests/bench/bench_engine.sh [N [BATCH]]     (default 100000 10000)
#
# The statement is the daemon's, triaged.ingest_arrays() with the segments
# as arrays (no samples; as text here, where the daemon sends them in binary
# format), each batch in its own transaction. Phases, on
# unbound alerts (ci_id null: bench_cmdb.sh measures bound ones):
#   grouped      N new alerts, a resource's ten alerts in the same batch
#                (1 in 10 opens an incident)
#   dups         the same N alerts again, firing, same severity (counting path)
#   mixed        N segments as bench_http's batches: in each batch 9 in 10
#                are duplicates of distinct alerts of the first N, 1 in 10 a
#                new alert, the batch's new alerts one new incident
#   resolves     all N resolve (state changes)
#   refires      all N fire again (reopen / refire)
#   interleaved  N new alerts in a fresh database, a resource's ten alerts
#                in ten different batches: after the first batch every
#                alert attaches to an incident an earlier batch opened
#   split        N new alerts in a fresh database, a resource's ten alerts
#                consecutive but the batches shifted by five (key k is alert
#                k + 5): each batch begins with the last five alerts of the
#                resource whose incident the previous batch opened, then new
#                resources (the latency run's batches; sql/025). Only when
#                named in PHASES.
# PHASES="grouped resolves ...": only those (grouped always runs: the others
# need its alerts). KEEP=1: keep the databases (bench_engine_*).
# PROFILE=1: also the top statements of each phase from pg_stat_statements
# (the server needs shared_preload_libraries = 'pg_stat_statements' and
# pg_stat_statements.track = all; planning time is 0 unless
# pg_stat_statements.track_planning = on: a stack started with
# TD_STACK_PG_STATEMENTS=1 has all three).
# Uses a running stack when TD_TEST_* is set, else starts one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
N=${1:-100000}
B=${2:-10000}
NB=$((N / B))
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    stack_up
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/bench_engine.XXXXXX")
dbs=()
cleanup() {
    for d in "${dbs[@]}"; do
        psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $d WITH (FORCE)" \
            >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
[ "${KEEP:-0}" = 1 ] || trap cleanup EXIT

fresh_db() { # name
    db="bench_engine_$1_$$"
    dbs+=("$db")
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
    pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
    printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" \
        > "$work/conf"
    "$build/triagectl" -c "$work/conf" migrate >/dev/null
}

# the backend's CPU time so far (run by psql's \!, where $BPID is set), and
# the milliseconds of one unit of it
if [ -r /proc/self/schedstat ]; then
    cpu_now="awk '{print \$1}' /proc/\$BPID/schedstat"
    cpu_ms=0.000001
else
    cpu_now="awk '{print \$14+\$15}' /proc/\$BPID/stat"
    cpu_ms=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN {print 1000 / hz}')
fi

# run PHASE KEYEXPR STATUS N_PER_MSG FIRST: NB batches of B segments; alert
# number kk of segment k (0 <= k < N) is KEYEXPR; prints the backend CPU.
run() {
    local phase=$1 kexpr=$2 status=$3 n=$4 first=$5
    if [ "${PROFILE:-0}" = 1 ]; then
        psql "$pg" -qAtXc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
            -c "SELECT pg_stat_statements_reset()" >/dev/null
    fi
    {
        echo "SELECT pg_backend_pid() AS pid \\gset"
        echo "\\setenv BPID :pid"
        echo "\\set QUIET on"
        for ((b = 0; b < NB; b++)); do
            cat <<SQL
SELECT array_agg('a' || lpad(to_hex(kk), 15, '0') ORDER BY kk) AS fp,
       array_agg('bench'::text ORDER BY kk) AS src, array_agg('bench-' || (kk / 10) ORDER BY kk) AS res,
       array_agg('check' || (kk % 10) ORDER BY kk) AS chk,
       array_agg(NULL::text ORDER BY kk) AS dk, array_agg(NULL::bigint ORDER BY kk) AS ci,
       array_agg('bench'::text ORDER BY kk) AS sum,
       array_agg(jsonb_build_object('env', 'bench') ORDER BY kk) AS lab,
       array_agg('major'::text ORDER BY kk) AS sev, array_agg('$status'::text ORDER BY kk) AS st,
       array_agg($n::bigint ORDER BY kk) AS n,
       array_agg('$first'::timestamptz ORDER BY kk) AS t0, array_agg('$first'::timestamptz ORDER BY kk) AS t1
FROM generate_series($((b * B)), $((b * B + B - 1))) k, LATERAL (SELECT $kexpr AS kk) x \\gset
SQL
            echo "\\! $cpu_now > $work/c0"
            echo "SELECT count(*) AS rows FROM triaged.ingest_arrays(:'fp'::text[], :'src'::text[], :'res'::text[], :'chk'::text[], :'dk'::text[], :'ci'::int8[], :'sum'::text[], :'lab'::jsonb[], :'sev'::text[], :'st'::text[], :'n'::int8[], :'t0'::timestamptz[], :'t1'::timestamptz[], NULL, NULL, '{\"actor\":\"bench\"}') \\gset"
            echo "\\! $cpu_now | awk -v t0=\$(cat $work/c0) '{print (\$1 - t0) * $cpu_ms}' >> $work/$phase"
        done
    } | psql "$pg" -X -q -v ON_ERROR_STOP=1 >/dev/null
    sort -n "$work/$phase" | awk -v phase="$phase" -v b="$B" '{s += $1; a[NR] = $1}
        END {printf "%-12s %3d batches of %d: backend CPU %6.2f ms a batch (median %.2f, min %.2f, max %.2f), %6.1f us an alert\n",
             phase, NR, b, s / NR, (a[int((NR + 1) / 2)] + a[int(NR / 2) + 1]) / 2, a[1], a[NR],
             s * 1000 / (NR * b)}'
    if [ "${PROFILE:-0}" = 1 ]; then
        psql "$pg" -qAtXF ' | ' -c "SELECT round(total_exec_time)::text || ' ms',
              round(total_plan_time)::text || ' ms planning', calls,
              regexp_replace(left(query, 110), '\s+', ' ', 'g')
              FROM pg_stat_statements WHERE query !~* 'generate_series|ingest_arrays|_ingest_batch\(p_fp|pg_stat'
              ORDER BY total_exec_time + total_plan_time DESC LIMIT ${PROFILE_TOP:-10}" | sed 's/^/    /'
    fi
}

want() { [[ " ${PHASES:-grouped dups resolves refires interleaved} " == *" $1 "* ]]; }
fresh_db seq
run grouped "k" firing 1 "2026-11-26T01:00:00Z"
want dups && run dups "k" firing 3 "2026-11-26T01:00:01Z"
want mixed && run mixed "CASE WHEN k % 10 = 9 THEN $N + k / 10 ELSE (k * 7) % $N END" firing 1 \
    "2026-11-26T01:00:01.5Z"
want resolves && run resolves "k" resolved 0 "2026-11-26T01:00:02Z"
want refires && run refires "k" firing 1 "2026-11-26T01:00:03Z"
if [[ " ${PHASES:-} " == *" split "* ]]; then
    fresh_db sp
    run split "k + 5" firing 1 "2026-11-26T01:00:00Z"
fi
want interleaved || exit 0
fresh_db il
run interleaved "(k % $B) * $NB + (k / $B)" firing 1 "2026-11-26T01:00:00Z"

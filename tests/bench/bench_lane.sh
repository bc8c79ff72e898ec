#!/usr/bin/env bash
# tests/bench/bench_lane.sh — sql/027's _ingest_batch against the previous
# one (025's, with 022's _count_lean and 020's _finish_counted), batch by
# batch in one session: the
# backend CPU of each batch (/proc/<pid>/schedstat before and after the
# statement), the batches alternating between the two functions (batch b:
# 027's when b % 4 is 0 or 3, 025's otherwise), so that both see the same
# machine, the same tables and the same caches. On a machine shared with
# other work, separate before/after runs of bench_engine.sh differ by more
# than a change of ~10 %; alternated batches do not. Prints figures;
# asserts nothing.
#
#   bash tests/bench/bench_lane.sh PHASE [N [BATCH]]    (default 20000 50)
#
# PHASE (bench_engine.sh's shapes, new alerts on unbound resources, a
# resource's ten alerts; the previous function installed as
# triaged._ingest_batch_old and called directly, as ingest_arrays calls
# _ingest_batch):
#   split        key k + 5: each batch begins with the last five alerts of
#                the resource whose incident the previous batch opened
#   interleaved  a resource's ten alerts in ten batches: every group found
#   grouped      a resource's ten alerts in the same batch: none found
#   mixed        N alerts grouped first (not measured), then bench_http's
#                batches: 9 in 10 duplicates, 1 in 10 a new alert
#   resolving    (029) half of each batch new alerts as split's (half as
#                many a batch), the other half resolves of the new alerts
#                of the batch before the previous one (the steps path:
#                find-or-open, the loop's resolves, the end of batch)
# OLD=FILE: the previous _ingest_batch from FILE (default sql/025_split.sql);
# OLD_LEAN=FILE: the previous _count_lean (default sql/022_dups.sql);
# OLD_FINISH=FILE: the previous _finish_counted (default sql/020_finish.sql),
# the one the previous _ingest_batch calls (027's: OLD_FINISH=sql/027_lane.sql);
# OLD_FIND=FILE: (029) the previous _find_or_open, the one the previous
# _ingest_batch calls (default: the current one for both);
# OLD_LABEL, NEW_LABEL: the two functions' names in the figures (025, 027).
# Uses a running stack when TD_TEST_* is set, else starts one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
phase=${1:?PHASE: split, interleaved, grouped, mixed or resolving}
N=${2:-20000}
B=${3:-50}
NB=$((N / B))
H=$((B / 2))
stexpr="'firing'"
case $phase in
    split) kexpr="k + 5" ;;
    interleaved) kexpr="(k % $B) * $NB + (k / $B)" ;;
    grouped) kexpr="k" ;;
    mixed) kexpr="CASE WHEN k % 10 = 9 THEN $N + k / 10 ELSE (k * 7) % $N END" ;;
    resolving)
        kexpr="CASE WHEN k % $B < $H THEN (k / $B) * $H + k % $B + 5
                    WHEN k / $B >= 2 THEN (k / $B - 2) * $H + k % $B - $H + 5
                    ELSE 10 * $N + k END"
        stexpr="CASE WHEN k % $B >= $H AND k / $B >= 2 THEN 'resolved' ELSE 'firing' END" ;;
    *) echo "bench_lane: unknown phase $phase" >&2; exit 2 ;;
esac
old_batch=${OLD:-$root/sql/025_split.sql}
old_lean=${OLD_LEAN:-$root/sql/022_dups.sql}
old_finish=${OLD_FINISH:-$root/sql/020_finish.sql}
old_find=${OLD_FIND:-}
old_label=${OLD_LABEL:-025}
new_label=${NEW_LABEL:-027}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    stack_up
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/bench_lane.XXXXXX")
db="bench_lane_$$"
cleanup() {
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
        >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "$work/conf"
"$build/triagectl" -c "$work/conf" migrate >/dev/null
sed -n '/^CREATE OR REPLACE FUNCTION triaged._count_lean(/,/^END \$\$;/p' "$old_lean" \
    | sed '1s/_count_lean(/_count_lean_old(/' | psql "$pg" -qX -v ON_ERROR_STOP=1 >/dev/null
sed -n '/^CREATE OR REPLACE FUNCTION triaged._finish_counted(/,/^END \$\$;/p' "$old_finish" \
    | sed '1s/_finish_counted(/_finish_counted_old(/' | psql "$pg" -qX -v ON_ERROR_STOP=1 >/dev/null
find_fn=_find_or_open
if [ -n "$old_find" ]; then
    sed -n '/^CREATE OR REPLACE FUNCTION triaged._find_or_open(/,/^END \$\$;/p' "$old_find" \
        | sed '1s/_find_or_open(/_find_or_open_old(/' | psql "$pg" -qX -v ON_ERROR_STOP=1 >/dev/null
    find_fn=_find_or_open_old
fi
sed -n '/^CREATE OR REPLACE FUNCTION triaged._ingest_batch(/,/^END \$\$;/p' "$old_batch" \
    | sed '1s/_ingest_batch(/_ingest_batch_old(/; s/FROM triaged._count_lean(p_fp/FROM triaged._count_lean_old(p_fp/; s/triaged\._finish_counted(/triaged._finish_counted_old(/g' \
    | sed "s/triaged\._find_or_open(/triaged.$find_fn(/g" \
    | psql "$pg" -qX -v ON_ERROR_STOP=1 >/dev/null
[ "$(psql "$pg" -qAtXc "SELECT count(*) FROM pg_proc WHERE proname IN ('_ingest_batch_old', '_count_lean_old', '_finish_counted_old')")" = 3 ] \
    || { echo "bench_lane: the previous functions were not installed" >&2; exit 1; }

cpu_now="awk '{print \$1}' /proc/\$BPID/schedstat"
# segs KEYEXPR FROM TO: psql's variables of one batch (alert number kk of
# segment k, its first and last time 1 ms apart from the next key's)
segs() {
    cat <<SQL
SELECT array_agg('a' || lpad(to_hex(kk), 15, '0') ORDER BY kk) AS fp,
       array_agg('bench'::text ORDER BY kk) AS src, array_agg('bench-' || (kk / 10) ORDER BY kk) AS res,
       array_agg('check' || (kk % 10) ORDER BY kk) AS chk,
       array_agg(NULL::text ORDER BY kk) AS dk, array_agg(NULL::bigint ORDER BY kk) AS ci,
       array_agg('bench'::text ORDER BY kk) AS sum,
       array_agg(jsonb_build_object('env', 'bench') ORDER BY kk) AS lab,
       array_agg('major'::text ORDER BY kk) AS sev, array_agg(st ORDER BY kk) AS st,
       array_agg(CASE WHEN st = 'firing' THEN 1 ELSE 0 END::bigint ORDER BY kk) AS n,
       array_agg('2026-11-26T01:00:00Z'::timestamptz + kk * interval '1 ms' ORDER BY kk) AS t0,
       array_agg('2026-11-26T01:00:00Z'::timestamptz + kk * interval '1 ms' ORDER BY kk) AS t1
FROM generate_series($2, $3) k, LATERAL (SELECT $1 AS kk, $stexpr::text AS st) x \\gset
SQL
}
call() { # FUNCTION
    echo "SELECT count(*) AS rows FROM triaged.$1(:'fp'::text[], :'src'::text[], :'res'::text[], :'chk'::text[], :'dk'::text[], :'ci'::int8[], :'sum'::text[], :'lab'::jsonb[], :'sev'::text[], :'st'::text[], :'n'::int8[], :'t0'::timestamptz[], :'t1'::timestamptz[], NULL, NULL, '{\"actor\":\"bench\"}') \\gset"
}
{
    echo "SELECT pg_backend_pid() AS pid \\gset"
    echo "\\setenv BPID :pid"
    echo "\\set QUIET on"
    if [ "$phase" = mixed ]; then
        for ((b = 0; b < NB; b++)); do
            segs k $((b * B)) $((b * B + B - 1))
            call _ingest_batch
        done
    fi
    for ((b = 0; b < NB; b++)); do
        if ((b % 4 == 0 || b % 4 == 3)); then fn=_ingest_batch v=new; else fn=_ingest_batch_old v=old; fi
        segs "$kexpr" $((b * B)) $((b * B + B - 1))
        echo "\\! $cpu_now > $work/c0"
        call $fn
        echo "\\! $cpu_now | awk -v t0=\$(cat $work/c0) '{print (\$1 - t0) * 0.000001}' >> $work/$v"
    done
} | psql "$pg" -X -q -v ON_ERROR_STOP=1 >/dev/null
for v in old new; do
    sort -n "$work/$v" | awk -v v="$v" -v p="$phase" -v b="$B" -v ol="$old_label" -v nl="$new_label" '{s += $1; a[NR] = $1}
        END {printf "%-11s %s %3d batches of %d: backend CPU %6.3f ms a batch (median %6.3f, p10 %6.3f, p90 %6.3f)\n",
             p, (v == "old" ? ol : nl), NR, b, s / NR, (a[int((NR + 1) / 2)] + a[int(NR / 2) + 1]) / 2,
             a[int(NR * 0.1) + 1], a[int(NR * 0.9)]}'
done
psql "$pg" -qAtXc "SELECT 'audit chains broken: ' || (SELECT count(*) FROM triaged.audit_verify())
                   || ', counts wrong: ' || (SELECT count(*) FROM triaged.incident_counts_verify())"

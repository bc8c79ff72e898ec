#!/usr/bin/env bash
# tests/bench/bench_dups.sh — what the lean path (_count_lean: a batch's
# duplicates) costs PostgreSQL, as shipped against sql/019's, measured in
# pairs. Prints figures; asserts nothing.
#
#   bash tests/bench/bench_dups.sh [BATCH [ROUNDS]]     (default 100 150)
#
# One database with 20,000 alerts (as bench_engine's grouped phase makes
# them) gets 019's _count_lean again, from its migration file, beside the
# shipped one (as triaged._count_lean_019). Each round calls both, one after
# the other in one session, each on its own batch of BATCH segments, and
# reads the backend's CPU time (/proc/<pid>/schedstat) around each call:
# the machine's load then weighs on both alike, and the paired differences
# are far steadier than two runs' figures (on 2 shared cores one run's
# medians drift by 30 %). Shapes:
#   dups   every segment a duplicate of a firing alert (same severity, the
#          rows rotate: each alert is counted again every 20,000 segments)
#   mixed  bench_http's: 9 in 10 duplicates, 1 in 10 a fingerprint never
#          seen (it stays unseen: only _count_lean runs)
#   new    fingerprints never seen only (a storm's first sight)
# The segments are sent as text, as bench_engine does: parsing them is in
# both figures (~6-8 µs a segment at 100), not in their difference.
# FULL=1: the whole batch instead, _ingest_batch as shipped against a copy
# of 019's _ingest_batch calling 019's _count_lean (the new alerts of mixed
# and new batches are then created: every batch's new fingerprints are
# fresh ones).
# DUPLOG=1: the shipped _count_lean against tests/bench/duplog_probe.sql's
# _dup_log_probe (a design not built: a batch's duplicates as one log row,
# their alerts locked FOR SHARE, no UPDATE of each alert) instead of 019's.
# Uses a running stack when TD_TEST_* is set, else starts one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
B=${1:-100}
R=${2:-150}
NROWS=20000
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    stack_up
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/bench_dups.XXXXXX")
db="bench_dups_$$"
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
# 019's _count_lean, renamed
sed -n '/^CREATE OR REPLACE FUNCTION triaged._count_lean(/,/^END \$\$;/p' \
    "$root/sql/019_front.sql" | sed '1s/_count_lean(/_count_lean_019(/' > "$work/lean019.sql"
grep -q 'v_ktid' "$work/lean019.sql" || { echo "bench_dups: 019's _count_lean not found" >&2; exit 1; }
# 019's _ingest_batch, renamed, calling 019's _count_lean
sed -n '/^CREATE OR REPLACE FUNCTION triaged._ingest_batch(/,/^END \$\$;/p' \
    "$root/sql/019_front.sql" \
    | sed '1s/_ingest_batch(/_ingest_batch_019(/; s/FROM triaged._count_lean(p_fp/FROM triaged._count_lean_019(p_fp/' \
    >> "$work/lean019.sql"
grep -q '_count_lean_019(p_fp' "$work/lean019.sql" || { echo "bench_dups: 019's _ingest_batch not found" >&2; exit 1; }
psql "$pg" -qAtX -v ON_ERROR_STOP=1 -f "$work/lean019.sql" >/dev/null
[ "${DUPLOG:-0}" = 1 ] && psql "$pg" -qAtX -v ON_ERROR_STOP=1 -f "$root/tests/bench/duplog_probe.sql" >/dev/null
if [ "${FULL:-0}" = 1 ]; then
    fns="_ingest_batch _ingest_batch_019"
    call() { echo "SELECT count(*) FROM triaged.$1($args13, NULL, NULL, '{\"actor\":\"bench\"}') \\gset"; }
else
    fns="_count_lean _count_lean_019"
    [ "${DUPLOG:-0}" = 1 ] && fns="_count_lean _dup_log_probe"
    call() { echo "SELECT l.nlean FROM triaged.$1($args) l \\gset"; }
fi

# batch KEYEXPR (of k, 0 <= k < B): the psql lines that set the
# arrays of a batch of firing major segments
batch() {
    cat <<SQL
SELECT array_agg('a' || lpad(to_hex(kk), 15, '0') ORDER BY kk) AS fp,
       array_agg('bench'::text ORDER BY kk) AS src, array_agg('bench-' || (kk / 10) ORDER BY kk) AS res,
       array_agg('check' || (kk % 10) ORDER BY kk) AS chk, array_agg(NULL::text ORDER BY kk) AS dk,
       array_agg(NULL::bigint ORDER BY kk) AS ci, array_agg('bench'::text ORDER BY kk) AS sm,
       array_agg(jsonb_build_object('env', 'bench') ORDER BY kk) AS lab,
       array_agg('major'::text ORDER BY kk) AS sev, array_agg('firing'::text ORDER BY kk) AS st,
       array_agg(3::bigint ORDER BY kk) AS n,
       array_agg('2026-11-26T01:00:01Z'::timestamptz ORDER BY kk) AS t0,
       array_agg('2026-11-26T01:00:01Z'::timestamptz ORDER BY kk) AS t1
  FROM generate_series(0, $B - 1) k, LATERAL (SELECT $1 AS kk) x \\gset
SQL
}
cpu_now="awk '{print \$1}' /proc/\$BPID/schedstat"
args13=":'fp'::text[], :'src'::text[], :'res'::text[], :'chk'::text[], :'dk'::text[], :'ci'::int8[], :'sm'::text[], :'lab'::jsonb[], :'sev'::text[], :'st'::text[], :'n'::int8[], :'t0'::timestamptz[], :'t1'::timestamptz[]"
args=":'fp'::text[], :'ci'::int8[], :'sm'::text[], :'lab'::jsonb[], :'sev'::text[], :'st'::text[], :'n'::int8[], :'t0'::timestamptz[], :'t1'::timestamptz[]"
{
    echo "SELECT pg_backend_pid() AS pid \\gset"
    echo "\\setenv BPID :pid"
    echo "\\set QUIET on"
    echo "SET enable_seqscan = off;"   # (as _ingest_batch, _count_lean's caller)
    # the alerts: as bench_engine's grouped phase
    for ((s = 0; s < NROWS; s += 1000)); do
        cat <<SQL
SELECT count(*) FROM triaged.ingest_arrays(
  (SELECT array_agg('a' || lpad(to_hex(k), 15, '0') ORDER BY k) FROM generate_series($s, $s + 999) k),
  (SELECT array_agg('bench'::text) FROM generate_series(1, 1000)),
  (SELECT array_agg('bench-' || (k / 10) ORDER BY k) FROM generate_series($s, $s + 999) k),
  (SELECT array_agg('check' || (k % 10) ORDER BY k) FROM generate_series($s, $s + 999) k),
  (SELECT array_agg(NULL::text) FROM generate_series(1, 1000)),
  (SELECT array_agg(NULL::bigint) FROM generate_series(1, 1000)),
  (SELECT array_agg('bench'::text) FROM generate_series(1, 1000)),
  (SELECT array_agg(jsonb_build_object('env', 'bench')) FROM generate_series(1, 1000)),
  (SELECT array_agg('major'::text) FROM generate_series(1, 1000)),
  (SELECT array_agg('firing'::text) FROM generate_series(1, 1000)),
  (SELECT array_agg(1::bigint) FROM generate_series(1, 1000)),
  (SELECT array_agg('2026-11-26T01:00:00Z'::timestamptz) FROM generate_series(1, 1000)),
  (SELECT array_agg('2026-11-26T01:00:00Z'::timestamptz) FROM generate_series(1, 1000)),
  NULL, NULL, '{"actor":"bench"}') \\gset
SQL
    done
    echo "VACUUM ANALYZE triaged.alert;"
    k=0
    for ((r = 0; r < R; r++)); do
        for shape in dups mixed new; do
            for fn in $fns; do
                s=$(( (k * B) % NROWS )) u=$((1000000 + k * B)); k=$((k + 1))
                case $shape in
                dups) batch "$s + k" ;;
                mixed) batch "CASE WHEN k % 10 = 9 THEN $u + k ELSE $s + k END" ;;
                new) batch "$u + k" ;;
                esac
                echo "\\! $cpu_now > $work/c0"
                call $fn
                echo "\\! $cpu_now | awk -v t0=\$(cat $work/c0) '{print \"$r $shape $fn\", (\$1 - t0) / 1000}' >> $work/cpu"
            done
        done
    done
} | psql "$pg" -X -q -v ON_ERROR_STOP=1 >/dev/null

set -- $fns
echo "$1, $B segments a call, $R rounds (the first 5 left out): backend CPU µs a segment"
python3 - "$work/cpu" "$B" "$2" <<'PY'
import sys, statistics as st
B = int(sys.argv[2])
other = "duplog" if sys.argv[3] == "_dup_log_probe" else "019"
t = {}
for line in open(sys.argv[1]):
    r, shape, fn, us = line.split()
    if int(r) >= 5:
        t.setdefault(shape, {}).setdefault(fn, {})[int(r)] = float(us) / B
for shape in ("dups", "mixed", "new"):
    fns = sorted(t[shape])  # (shipped, 019's)
    cur, old = t[shape][fns[0]], t[shape][fns[1]]
    d = [cur[r] - old[r] for r in cur if r in old]
    print(f"  {shape:<6} shipped {st.median(cur.values()):6.1f} (p25 {st.quantiles(cur.values(), n=4)[0]:5.1f})"
          f"   {other} {st.median(old.values()):6.1f} (p25 {st.quantiles(old.values(), n=4)[0]:5.1f})"
          f"   paired difference: median {st.median(d):+5.1f} µs a segment,"
          f" {st.median(d) * B / 1000:+.2f} ms a call")
PY

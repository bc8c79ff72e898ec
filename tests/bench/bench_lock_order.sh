#!/usr/bin/env bash
# tests/bench/bench_lock_order.sh — deadlocks between lanes (sql/029): S
# sessions send M batches each at once through ingest_arrays (the daemon's
# statement), each batch a few new alerts on resources drawn from a small
# pool (shared by the sessions: their incidents are the same) and a few
# resolves of the session's own firing alerts (fingerprints never shared
# between sessions: the alerts' own lock order is not what this measures).
# Prints, per build, the batches that failed with deadlock_detected (40P01;
# the daemon retries those after deadlock_timeout), the others that failed,
# and the wall time; asserts nothing.
#
#   bash tests/bench/bench_lock_order.sh [S [M [POOL]]]     (default 4 300 12)
#
# BEFORE=BUILD_DIR: also a database migrated by that build's triagectl (the
# previous migrations), run the same way first. Uses a running stack when
# TD_TEST_* is set, else starts one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
S=${1:-4}
M=${2:-300}
POOL=${3:-12}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    stack_up
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/bench_lock_order.XXXXXX")
dbs=()
cleanup() {
    local d
    for d in "${dbs[@]}"; do
        psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $d WITH (FORCE)" \
            >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

run() { # LABEL BUILD
    local label=$1 b=$2 db="bench_lock_order_$$_$1" pg s t0 t1 dl other
    dbs+=("$db")
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
    pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
    printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "$work/conf"
    "$b/triagectl" -c "$work/conf" migrate >/dev/null
    psql "$pg" -qX -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE FUNCTION public.b(p_segs jsonb) RETURNS bigint LANGUAGE sql AS $$
SELECT count(*) FROM (
  SELECT array_agg(e->>'fp' ORDER BY o) fp, array_agg('bench'::text ORDER BY o) src,
         array_agg(e->>'res' ORDER BY o) res, array_agg('c-' || (e->>'fp') ORDER BY o) chk,
         array_agg(NULL::text ORDER BY o) dk, array_agg(NULL::bigint ORDER BY o) ci,
         array_agg('s'::text ORDER BY o) sm, array_agg('{}'::jsonb ORDER BY o) lab,
         array_agg('minor'::text ORDER BY o) sev, array_agg(e->>'st' ORDER BY o) st,
         array_agg(CASE WHEN e->>'st' = 'resolved' THEN 0 ELSE 1 END::bigint ORDER BY o) n,
         array_agg(clock_timestamp() ORDER BY o) t0, array_agg(clock_timestamp() ORDER BY o) t1
    FROM jsonb_array_elements(p_segs) WITH ORDINALITY t(e, o)) x,
  triaged.ingest_arrays(x.fp, x.src, x.res, x.chk, x.dk, x.ci, x.sm, x.lab, x.sev, x.st, x.n,
                        x.t0, x.t1, NULL, NULL, '{"actor": "bench"}'::jsonb) r
$$;
SQL
    for ((s = 0; s < S; s++)); do
        psql "$pg" -qAtX -c "CREATE SEQUENCE public.s$s" >/dev/null
        # a batch: 0-4 new alerts on the pool's resources, 0-2 resolves of
        # the session's firing alerts (in fingerprint order, as the daemon
        # folds them)
        for ((m = 0; m < M; m++)); do
            echo "SELECT public.b((SELECT coalesce(jsonb_agg(e ORDER BY e->>'fp'), '[]') FROM (
  SELECT jsonb_build_object('fp', 's$s-' || lpad(nextval('public.s$s')::text, 6, '0'),
                            'res', 'r' || floor(random() * $POOL)::int, 'st', 'firing') e
    FROM generate_series(1, floor(random() * 5)::int)
  UNION ALL
  SELECT e FROM (SELECT jsonb_build_object('fp', a.fingerprint, 'res', a.resource,
                                           'st', 'resolved') e
                   FROM triaged.alert a
                  WHERE a.fingerprint LIKE 's$s-%' AND a.status = 'firing'
                  ORDER BY random() LIMIT floor(random() * 3)::int) r) x));"
        done > "$work/s$s.sql"
    done
    t0=$(date +%s.%N)
    for ((s = 0; s < S; s++)); do
        psql "$pg" -qAtX -f "$work/s$s.sql" > /dev/null 2> "$work/$label.s$s.err" &
    done
    wait
    t1=$(date +%s.%N)
    dl=$(cat "$work/$label".s*.err | grep -c 'deadlock detected' || true)
    other=$(cat "$work/$label".s*.err | grep '^psql:.*ERROR' | grep -vc 'deadlock detected' || true)
    printf '%-8s %d sessions x %d batches, pool %d: %3d deadlocks (40P01), %d other errors, %.1f s; %s\n' \
        "$label" "$S" "$M" "$POOL" "$dl" "$other" "$(echo "$t1 - $t0" | bc)" \
        "$(psql "$pg" -qAtXc "SELECT 'audit chains broken: ' || (SELECT count(*) FROM triaged.audit_verify())
                               || ', counts wrong: ' || (SELECT count(*) FROM triaged.incident_counts_verify())")"
}
if [ -n "${BEFORE:-}" ]; then
    run before "$BEFORE"
fi
run this "$build"

#!/usr/bin/env bash
# bench_tick_plans.sh — what one triaged.tick() costs with the plans its
# session made on an EMPTY database (a fresh install, every benchmark), at
# 100,000 alerts in 10,000 incidents, before and after ANALYZE (sql/024).
#
# One psql session (one plan cache, as the daemon's tick connection) on a
# fresh database, autovacuum off on the engine tables (no autoanalyze may
# replace the plans mid-run): 8 ticks on the empty database (empty), 400
# alerts in 40 incidents and 8 ticks that each find a little work (tiny:
# one incident to resolve, one to close, ...: the statements skipped while
# there is nothing to do make their plans here), NB-1 (99) batches of
# 1,000 new alerts through ingest_arrays, then ticks with nothing to do
# (idle), ticks that each find work (busy: 20 incidents pending resolve,
# 20 resolved long ago to close, 2 of them with their 20 firing alerts
# suppressed (maintenance over: new incidents), 20 flapping alerts to
# calm; the set-up before each is not timed), ANALYZE, and the same again
# (NBUSY-6 busy rounds, default 6). Prints each phase's tick times (ms,
# psql's \timing; with CPU=1 the backend's CPU per tick instead, from
# /proc/<pid>/schedstat: robust on a shared machine). Against the stack of
# tests/stack/stack.sh (TD_TEST_PG_ADMIN_CONNINFO), with $BUILD_DIR's
# triagectl (default build/). Nothing is asserted: figures only.
#
#     bash tests/stack/stack.sh up /tmp/st && source /tmp/st/env.sh
#     bash tests/bench/bench_tick_plans.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
: "${TD_TEST_PG_ADMIN_CONNINFO:?source the stack env.sh first}"
db=td_bench_tick
nb=${NB:-100}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

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

T="SELECT count(*) FROM triaged.tick('{\"now\":\"2026-11-26T22:10:00Z\",\"actor\":\"triaged\",\"reopen_window_ms\":3600000,\"flap_threshold\":5,\"flap_window_ms\":600000,\"correlation_window_ms\":600000,\"priority_matrix\":\"\",\"impact_many_services\":3,\"resolve_grace_ms\":300000,\"close_after_ms\":86400000}');"
timing_on='\timing on'; timing_off='\timing off'
if [ "${CPU:-0}" = 1 ]; then   # the backend's CPU around each tick, printed as psql's \timing
    timing_on=''; timing_off=''
    if [ -r /proc/self/schedstat ]; then
        cpu_now="awk '{print \$1}' /proc/\$BPID/schedstat"; cpu_ms=0.000001
    else
        cpu_now="awk '{print \$14+\$15}' /proc/\$BPID/stat"
        cpu_ms=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN {print 1000 / hz}')
    fi
    T="\\! $cpu_now > $work/c0
$T
\\! $cpu_now | awk -v t0=\$(cat $work/c0) '{printf \"Time: %.3f ms\\n\", (\$1 - t0) * $cpu_ms}'"
fi
phase() { echo "\\echo phase $1"; }
idle() { echo "$timing_on"; for _ in $(seq "$1"); do echo "$T"; done; echo "$timing_off"; }
# round r of busy R0 R1 STEP W: work for the tick in incidents from
# STEP*r+1 (ids are given in order by the batches): W pending resolve
# (their alerts resolved), W resolved long ago (to close; the firing
# alerts of F = max(1, W/10) of them suppressed: they open new incidents),
# F with flapping alerts
busy() {
    local r b w=$4 f=$(( $4 >= 10 ? $4 / 10 : 1 ))
    for r in $(seq "$1" "$2"); do
        b=$(( r * $3 ))
        cat <<SQL
UPDATE triaged.alert a SET status = 'resolved', resolved_at = '2026-11-26T21:00:00Z'
  FROM triaged.incident_alert ia WHERE ia.alert_id = a.id AND ia.incident_id BETWEEN $((b+1)) AND $((b+w));
UPDATE triaged.incident SET resolve_pending_since = '2026-11-26T21:00:00Z', resolve_at = '2026-11-26T21:00:00Z'
 WHERE id BETWEEN $((b+1)) AND $((b+w));
UPDATE triaged.incident SET status = 'resolved', resolved_at = '2026-11-20T00:00:00Z', resolved_decided_at = '2026-11-20T00:00:00Z'
 WHERE id BETWEEN $((b+w+1)) AND $((b+2*w));
UPDATE triaged.alert SET flapping = true WHERE id IN (SELECT ia.alert_id FROM triaged.incident_alert ia WHERE ia.incident_id BETWEEN $((b+2*w+1)) AND $((b+2*w+f)));
UPDATE triaged.alert SET suppressed = true WHERE id IN (SELECT ia.alert_id FROM triaged.incident_alert ia WHERE ia.incident_id BETWEEN $((b+w+1)) AND $((b+w+f)));
$timing_on
$T
$timing_off
SQL
    done
}
# batch B of N new alerts (fingerprints from 1000*B, 10 a resource)
batch() { cat <<SQL
SELECT count(*) FROM (SELECT array_agg('a' || lpad(to_hex(k), 15, '0') ORDER BY k) AS fp, array_agg('bench'::text) AS src, array_agg('bench-' || (k / 10) ORDER BY k) AS res, array_agg('check' || (k % 10) ORDER BY k) AS chk, array_agg(NULL::text) AS dk, array_agg(NULL::bigint) AS ci, array_agg('bench'::text) AS sum, array_agg('{}'::jsonb) AS lab, array_agg('major'::text) AS sev, array_agg('firing'::text) AS st, array_agg(1::bigint) AS n, array_agg(now()) AS t0, array_agg(now()) AS t1 FROM generate_series($(($1*1000)), $(($1*1000+$2-1))) k) x, LATERAL triaged.ingest_arrays(fp, src, res, chk, dk, ci, sum, lab, sev, st, n, t0, t1, NULL, NULL, '{"actor":"bench"}') r;
SQL
}
{
    echo "SELECT pg_backend_pid() AS pid \\gset"
    echo "\\setenv BPID :pid"
    phase empty; idle 8
    batch 0 400                        # 40 incidents
    phase tiny; busy 0 7 5 1
    for b in $(seq 1 $((nb - 1))); do batch "$b" 1000; done
    phase idle; idle 6
    phase busy; busy 1 6 100 20
    echo "ANALYZE;"
    phase idle_analyzed; idle 6
    phase busy_analyzed; busy 7 ${NBUSY:-12} 100 20
} | psql -qAtX "$conn" 2>&1 | awk '
    /^phase / { if (p != "") print p ": " t; p = $2; t = ""; next }
    /^Time:/ { t = t sprintf("%.1f ", $2) }
    /^(ERROR|FATAL)/ { print > "/dev/stderr" }
    END { print p ": " t }'
psql -qAtX "$TD_TEST_PG_ADMIN_CONNINFO" -c "DROP DATABASE $db"

#!/usr/bin/env bash
# bench_tick_waiting.sh — what one triaged.tick() costs with nothing to do
# but many things waiting (sql/028): HB (20,000) heartbeats not yet due,
# SUP (5,000) firing alerts suppressed by the maintenance of their CI (50
# CIs, each in a one-off window that is still on), SUPR (5,000) resolved
# alerts still marked suppressed (an alert keeps the mark until it fires
# again outside maintenance), with the plans the tick's session made on an
# EMPTY database, then after ANALYZE.
#
# One psql session (one plan cache, as the daemon's tick connection) on a
# fresh database, autovacuum off: 8 ticks on the empty database (empty),
# the rows above written by plain INSERTs (the engine has no part in what
# is measured), ROUNDS (20) ticks (idle), ANALYZE, ROUNDS ticks
# (idle_analyzed). Prints the backend's CPU per tick (/proc/<pid>/schedstat
# around each: robust on a shared machine, where wall time is not): mean,
# median, min, max. Against the stack of tests/stack/stack.sh, with
# $BUILD_DIR's triagectl (default build/). Nothing is asserted.
#
#     bash tests/stack/stack.sh up /tmp/st && source /tmp/st/env.sh
#     bash tests/bench/bench_tick_waiting.sh
#     BUILD_DIR=/work/main/build bash tests/bench/bench_tick_waiting.sh   # before
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
: "${TD_TEST_PG_ADMIN_CONNINFO:?source the stack env.sh first}"
db=td_bench_tickw_$$
hb=${HB:-20000}
sup=${SUP:-5000}
supr=${SUPR:-5000}
rounds=${ROUNDS:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -qAtX "$TD_TEST_PG_ADMIN_CONNINFO" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

psql -qAtX "$TD_TEST_PG_ADMIN_CONNINFO" -c "SET client_min_messages = warning" -c "CREATE DATABASE $db"
printf '[postgres]\nconninfo = %s dbname=%s\n[redis]\nurl = redis://127.0.0.1:1/0\n' \
    "$TD_TEST_PG_ADMIN_CONNINFO" "$db" > "$work/conf"
"$build/triagectl" -c "$work/conf" migrate > /dev/null
conn="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
psql -qAtX "$conn" -c "DO \$\$ DECLARE t text; BEGIN
  FOREACH t IN ARRAY ARRAY['alert','alert_history','incident','incident_alert','incident_event',
                           'heartbeat','maintenance','ci'] LOOP
    EXECUTE format('ALTER TABLE triaged.%I SET (autovacuum_enabled = off)', t);
  END LOOP; END \$\$"

if [ -r /proc/self/schedstat ]; then
    cpu_now="awk '{print \$1}' /proc/\$BPID/schedstat"
    cpu_ms=0.000001
else
    cpu_now="awk '{print \$14+\$15}' /proc/\$BPID/stat"
    cpu_ms=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN {print 1000 / hz}')
fi
NOW='2026-11-26T22:10:00Z'
T="SELECT count(*) FROM triaged.tick('{\"now\":\"$NOW\",\"actor\":\"triaged\",\"flap_threshold\":5,\"flap_window_ms\":600000,\"correlation_window_ms\":600000,\"priority_matrix\":\"\",\"impact_many_services\":3,\"resolve_grace_ms\":300000,\"close_after_ms\":86400000}');"
ticks() {
    local i
    for ((i = 0; i < $2; i++)); do
        echo "\\! $cpu_now > $work/c0"
        echo "$T"
        echo "\\! $cpu_now | awk -v t0=\$(cat $work/c0) '{print (\$1 - t0) * $cpu_ms}' >> $work/$1"
    done
}
{
    echo "SELECT pg_backend_pid() AS pid \\gset"
    echo "\\setenv BPID :pid"
    ticks empty 8
    cat <<SQL
INSERT INTO triaged.ci (name) SELECT 'ci-' || g FROM generate_series(1, 50) g;
INSERT INTO triaged.maintenance (ci_id, during, reason)
SELECT c.id, tstzrange('2026-11-26T20:00:00Z', '2026-11-27T20:00:00Z'), 'bench' FROM triaged.ci c;
INSERT INTO triaged.heartbeat (source, resource, timeout, last_at)
SELECT 'hb', 'host-' || g, interval '5 min', timestamptz '$NOW' - (g % 200) * interval '1 second'
  FROM generate_series(1, $hb) g;
INSERT INTO triaged.alert (fingerprint, source, resource, check_name, severity, status, summary,
                           ci_id, occurrences, first_seen, last_seen, fired_at, resolved_at,
                           state_changed_at, suppressed)
SELECT 's' || lpad(g::text, 15, '0'), 'bench', 'ci-' || (g % 50 + 1), 'check' || g, 'major',
       CASE WHEN g <= $sup THEN 'firing' ELSE 'resolved' END, 'bench',
       (SELECT c.id FROM triaged.ci c WHERE c.name = 'ci-' || (g % 50 + 1)), 1,
       '2026-11-26T21:00:00Z', '2026-11-26T21:00:00Z', '2026-11-26T21:00:00Z',
       CASE WHEN g <= $sup THEN NULL ELSE timestamptz '2026-11-26T21:30:00Z' END,
       '2026-11-26T21:00:00Z', true
  FROM generate_series(1, $sup + $supr) g;
SQL
    ticks idle "$rounds"
    echo "ANALYZE;"
    ticks idle_analyzed "$rounds"
} | psql -qAtX -v ON_ERROR_STOP=1 "$conn" > "$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
for p in empty idle idle_analyzed; do
    sort -n "$work/$p" | awk -v p="$p" '{s += $1; a[NR] = $1}
        END {printf "%-14s %3d ticks: backend CPU %8.3f ms (median %.3f, min %.3f, max %.3f)\n",
             p, NR, s / NR, (a[int((NR + 1) / 2)] + a[int(NR / 2) + 1]) / 2, a[1], a[NR]}'
done

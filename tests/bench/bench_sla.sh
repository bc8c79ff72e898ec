#!/usr/bin/env bash
# tests/bench/bench_sla.sh — availability against SLA targets at scale.
# Prints its figures; asserts nothing.
#
#   bash tests/bench/bench_sla.sh [SERVICES] [INCIDENTS]   (default 1000 1000000)
#
# Generates in SQL (generate_series) SERVICES services with SLAs (a third on
# business hours in Europe/Berlin, a quarter not counting degraded service),
# INCIDENTS root incidents over the 12 months of 2025 (10 % impacting a
# second service, 1 % merged), a maintenance window on every tenth service,
# then times, each a few times (best and median):
#   month/all   triaged.sla_report for October 2025, every service
#   view/all    service_availability_monthly WHERE month = '2025-10-01'
#   year/one    triaged.sla_report for 2025 of one service (the API's query)
#   months/one  the 12 monthly rows of one service (one sla_report each)
#   api/one     triaged.api_service_availability for 2025 of one service
# and as the reference in the same run, a sequential scan summing the
# durations of all incidents (SELECT sum(resolved_at - opened_at)).
# Uses a running stack when TD_TEST_* is set, else starts one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
NS=${1:-1000}
NI=${2:-1000000}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    stack_up
fi
work=$(mktemp -d "$TD_TEST_DIR/bench.XXXXXX")
db="bench_sla_$$"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
trap 'psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
printf '[postgres]\nconninfo = %s\n[redis]\nurl = %s\n' "$pg" "$TD_TEST_REDIS_URL" > "$work/ctl.conf"
"$build/triagectl" -c "$work/ctl.conf" migrate >/dev/null

t0=$(date +%s.%N)
psql "$pg" -qAtX -v ON_ERROR_STOP=1 <<SQL
SELECT setseed(0.7);
INSERT INTO triaged.ci (name) SELECT 'host-' || g FROM generate_series(1, $NS) g;
INSERT INTO triaged.service (name, tier) SELECT 'svc-' || g, 1 + g % 3 FROM generate_series(1, $NS) g;
INSERT INTO triaged.service_ci SELECT g, g FROM generate_series(1, $NS) g;
INSERT INTO triaged.sla (service_id, target, service_hours, degraded_counts_as_down)
SELECT g, 99.9, CASE WHEN g % 3 = 0 THEN 'Mon-Fri 08:00-18:00 Europe/Berlin' ELSE '24x7' END, g % 4 <> 0
  FROM generate_series(1, $NS) g;
INSERT INTO triaged.incident (title, resource, status, opened_at, resolved_at, acknowledged_at, urgency, priority)
SELECT 'b', 'b' || g, 'resolved', o, o + (10 + random() ^ 4 * 7200) * interval '1 second',
       o + random() * interval '10 min', 1 + (random() * 2)::int, 1 + (random() * 4)::int
  FROM generate_series(1, $NI) g,
       LATERAL (SELECT timestamptz '2025-01-01 00:00Z' + random() * interval '365 days' + g * interval '0 s' AS o) x;
INSERT INTO triaged.incident_service SELECT i.id, 1 + i.id % $NS FROM triaged.incident i;
INSERT INTO triaged.incident_service SELECT i.id, 1 + (i.id * 7 + 3) % $NS FROM triaged.incident i
 WHERE i.id % 10 = 0 ON CONFLICT DO NOTHING;
UPDATE triaged.incident SET merged_into = id - 1, status = 'closed', closed_at = resolved_at
 WHERE id % 100 = 50;
INSERT INTO triaged.maintenance (service_id, weekly_days, weekly_start, weekly_duration, time_zone)
SELECT g, '{7}', '03:00', '2 hours', 'Europe/Berlin' FROM generate_series(1, $NS, 10) g;
VACUUM ANALYZE triaged.incident;
VACUUM ANALYZE triaged.incident_service;
ANALYZE;
SQL
t1=$(date +%s.%N)
echo "generated $NS services, $NI incidents (+ $(psql "$pg" -qAtc "SELECT count(*) - $NI FROM triaged.incident_service") second impacts) in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"

# time LABEL RUNS SQL: best and median of RUNS runs, in ms (server side)
time_sql() {
    local label=$1 runs=$2 sql=$3
    {
        echo '\timing on'
        for _ in $(seq "$runs"); do echo "$sql;"; done
    } | psql "$pg" -qAtX 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' > "$work/t"
    python3 - "$label" "$work/t" <<'PY'
import statistics, sys
t = [float(x) for x in open(sys.argv[2])]
print(f"{sys.argv[1]:<11} best {min(t):9.1f} ms   median {statistics.median(t):9.1f} ms   ({len(t)} runs)")
PY
}
time_sql reference 3 "SELECT sum(resolved_at - opened_at) FROM triaged.incident"
time_sql month/all 3 "SELECT count(*), sum(downtime_seconds) FROM triaged.sla_report('2025-10-01Z', '2025-11-01Z')"
time_sql view/all 3 "SELECT count(*), sum(downtime_seconds) FROM triaged.service_availability_monthly WHERE month = '2025-10-01'"
time_sql year/one 10 "SELECT downtime_seconds FROM triaged.sla_report('2025-01-01Z', '2026-01-01Z', ARRAY[42::bigint])"
time_sql months/one 5 "SELECT sum(r.downtime_seconds) FROM generate_series(timestamptz '2025-01-01Z', '2025-12-01Z', '1 month') m, triaged.sla_report(m, m + interval '1 month', ARRAY[42::bigint]) r"
time_sql api/one 10 "SELECT triaged.api_service_availability('svc-42', '2025-01-01Z', '2026-01-01Z')"
time_sql month/bh 3 "SELECT count(*) FROM triaged.sla_report('2025-10-01Z', '2025-11-01Z', ARRAY(SELECT generate_series(3, $NS, 3)::bigint))"
echo "(machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"

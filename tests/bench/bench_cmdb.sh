#!/usr/bin/env bash
# tests/bench/bench_cmdb.sh — the CMDB at scale: 100,000 CIs, 300,000
# relations, 1,000 services. Prints figures; asserts nothing.
#
#   bash tests/bench/bench_cmdb.sh [REPS]
#
# 1. builds the CMDB in a fresh database (SQL, timed): 100 core switches,
#    10,000 hosts (two uplinks each), 89,900 application CIs (each runs on a
#    host, a third of them on two, and depends on up to two earlier CIs of
#    its block of ten), every CI with an alias and an IPv4 address; 1,000
#    services of 90 CIs;
# 2. tests/bench_cmdb (C): the daemon's load of that graph (non-blocking
#    COPY on an event loop), RSS growth, and binding cost per alert;
# 3. the SQL side of correlation: triaged.ingest() of the same 1,000 new
#    alerts bound to CIs (so grouped, correlated, impact computed) and
#    unbound (ci_id null: what 002 did), REPS times each (default 3), each
#    in a transaction rolled back; for 1,000 alerts on unrelated CIs and for
#    a storm of 1,000 alerts under one core switch. Bound segments carry
#    "up" and "svc" as the daemon sends them (computed beforehand, untimed).
#    Each batch's wall time and its backend's CPU time (/proc/self/schedstat
#    read by the backend: a local server and a superuser; else no CPU
#    figure), which varies less on a shared machine.
# Uses a running stack when TD_TEST_* is set, else starts one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
reps=${1:-3}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    stack_up
fi
db="bench_cmdb_$$"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
[ "${KEEP:-0}" = 1 ] || trap 'psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "/tmp/bench_cmdb_$$.conf"
"$build/triagectl" -c "/tmp/bench_cmdb_$$.conf" migrate >/dev/null
rm -f "/tmp/bench_cmdb_$$.conf"

echo "== building the CMDB"
t0=$(date +%s.%N)
psql "$pg" -qAtX <<'SQL'
INSERT INTO triaged.ci (id, name, kind, aliases, addresses)
SELECT g, format('ci-%s', lpad(g::text, 6, '0')),
       CASE WHEN g <= 100 THEN 'switch' WHEN g <= 10100 THEN 'host' ELSE 'application' END,
       ARRAY[format('ci-%s.example', lpad(g::text, 6, '0'))],
       ARRAY[format('10.%s.%s.%s', g >> 16, (g >> 8) & 255, g & 255)::inet]
  FROM generate_series(1, 100000) g;
SELECT setval(pg_get_serial_sequence('triaged.ci', 'id'), 100000);
-- hosts: two uplinks to switches
INSERT INTO triaged.ci_relation (child_id, parent_id, kind)
SELECT h, 1 + (h % 100), 'connected_to' FROM generate_series(101, 10100) h
UNION ALL
SELECT h, 1 + ((h + 37) % 100), 'connected_to' FROM generate_series(101, 10100) h;
-- applications: on a host, and within their block of ten on up to two earlier ones
INSERT INTO triaged.ci_relation (child_id, parent_id, kind)
SELECT a, 101 + ((a * 7) % 10000), 'runs_on' FROM generate_series(10101, 100000) a
UNION ALL
SELECT a, a - 1, 'depends_on' FROM generate_series(10101, 100000) a WHERE (a - 10101) % 10 >= 1
UNION ALL
SELECT a, a - 2, 'depends_on' FROM generate_series(10101, 100000) a WHERE (a - 10101) % 10 >= 2;
-- top up to 300,000 with a second host for some applications
INSERT INTO triaged.ci_relation (child_id, parent_id, kind)
SELECT a, 101 + ((a * 7 + 5000) % 10000), 'runs_on'
  FROM generate_series(10101, 100000) a
 LIMIT 300000 - (SELECT count(*) FROM triaged.ci_relation);
INSERT INTO triaged.service (id, name, tier, owner_team)
SELECT s, format('svc-%s', s), 1 + s % 3, format('team-%s', s % 50) FROM generate_series(1, 1000) s;
INSERT INTO triaged.service_ci (service_id, ci_id)
SELECT 1 + (a - 10101) / 90, a FROM generate_series(10101, 100000) a WHERE (a - 10101) / 90 < 1000;
ANALYZE;
SQL
echo "built in $(echo "$(date +%s.%N) - $t0" | bc) s: $(psql "$pg" -qAtX -c "SELECT (SELECT count(*) FROM triaged.ci) || ' CIs, ' || (SELECT count(*) FROM triaged.ci_relation) || ' relations, ' || (SELECT count(*) FROM triaged.service) || ' services, ' || (SELECT count(*) FROM triaged.service_ci) || ' memberships'")"

echo "== the daemon's graph (tests/bench_cmdb)"
"$build/tests/bench_cmdb" "$pg" 1000000

echo "== SQL: triaged.ingest() of 1,000 new alerts, bound vs unbound ($reps runs each, rolled back)"
psql "$pg" -qAtX <<SQL
CREATE TEMP TABLE runs (scenario text, bound boolean, rep int, ms float8, cpu float8);
DO \$\$
DECLARE
  v_t0 timestamptz;
  v_b  jsonb;
  v_n  bigint;
  v_ids bigint[];
  v_sc text;
  v_bound boolean;
  v_ms float8;
  v_c0 bigint;
  v_cpu float8;
BEGIN
  FOR v_rep IN 1..$reps LOOP
    FOREACH v_sc IN ARRAY ARRAY['unrelated', 'switch storm'] LOOP
      FOREACH v_bound IN ARRAY ARRAY[false, true] LOOP
        IF v_sc = 'unrelated' THEN
          -- 1,000 application CIs spread over the graph
          v_ids := ARRAY(SELECT 10101 + (g * 89) % 89900 FROM generate_series(0, 999) g);
        ELSE
          -- core switch 1, 100 of its hosts, 899 applications on those hosts
          v_ids := ARRAY[1::bigint]
                   || ARRAY(SELECT r.child_id FROM triaged.ci_relation r WHERE r.parent_id = 1
                             ORDER BY r.child_id LIMIT 100);
          v_ids := v_ids || ARRAY(SELECT r.child_id FROM triaged.ci_relation r
                                   WHERE r.parent_id = ANY (v_ids[2:]) ORDER BY r.child_id
                                   LIMIT 1000 - cardinality(v_ids));
        END IF;
        SELECT jsonb_agg(jsonb_build_object(
                 'fp', md5(v_sc || id || v_rep)::text, 'source', 'bench',
                 'resource', format('ci-%s', lpad(id::text, 6, '0')), 'check', 'down',
                 'dedup_key', NULL, 'ci_id', CASE WHEN v_bound THEN id END, 'summary', NULL,
                 'labels', '{}'::jsonb, 'severity', 'critical', 'status', 'firing', 'n', 1,
                 'first', now(), 'last', now(), 'hint', 'new')
               -- what the daemon's graph adds to a bound segment
               || CASE WHEN v_bound THEN jsonb_build_object(
                    'up', to_jsonb(triaged.ci_upstream(id)),
                    'svc', to_jsonb(triaged.ci_impacted_services(id))) ELSE '{}' END)
          INTO v_b FROM unnest(v_ids) id;
        BEGIN
          v_c0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
        EXCEPTION WHEN OTHERS THEN
          v_c0 := NULL;   -- (no CPU figure)
        END;
        BEGIN
          v_t0 := clock_timestamp();
          SELECT count(*) INTO v_n FROM triaged.ingest(v_b, '[]', '{}');
          v_ms := extract(epoch FROM clock_timestamp() - v_t0) * 1000;
          v_cpu := (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - v_c0) / 1e6;
          RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = 'roll back';
        EXCEPTION WHEN no_data_found THEN
          NULL;   -- (variables keep their values; the rows are gone)
        END;
        INSERT INTO runs VALUES (v_sc, v_bound, v_rep, v_ms, v_cpu);
      END LOOP;
    END LOOP;
  END LOOP;
END \$\$;
SELECT format('%s %s median %s ms per batch = %s us per alert (runs: %s ms); CPU median %s ms (runs: %s)',
              rpad(scenario, 12), rpad(CASE WHEN bound THEN 'bound' ELSE 'unbound' END, 7),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              string_agg(round(ms::numeric, 1)::text, ' ' ORDER BY rep),
              coalesce(round(percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu)::numeric, 1)::text, '-'),
              coalesce(string_agg(round(cpu::numeric, 1)::text, ' ' ORDER BY rep), '-'))
  FROM runs GROUP BY scenario, bound ORDER BY scenario DESC, bound;
SELECT format('%s the CMDB adds %s us per alert (bound median - unbound median), ratio %s; in CPU %s us, ratio %s',
              rpad(scenario, 12),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE bound)
                     - percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE NOT bound))::numeric, 1),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE bound)
                     / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE NOT bound))::numeric, 2),
              coalesce(round((percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) FILTER (WHERE bound)
                     - percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) FILTER (WHERE NOT bound))::numeric, 1)::text, '-'),
              coalesce(round((percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) FILTER (WHERE bound)
                     / percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) FILTER (WHERE NOT bound))::numeric, 2)::text, '-'))
  FROM runs GROUP BY scenario ORDER BY scenario DESC;
SQL

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
# SCENARIOS (default "unrelated,switch storm,mix") picks the scenarios of 3;
# BOUND (default "false,true") which sides; PGSS=1 resets
# pg_stat_statements before 3 and prints its top statements after (a stack
# with the extension preloaded; profile there, measure elsewhere). DB=NAME
# keeps the database NAME (built once, migrated each run) instead of a
# throwaway one; GRAPH=0 skips step 2; PGOPTIONS_EXTRA adds settings to the
# sessions (auto_explain, say); BATCHES=1 prints the mix batch by batch.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
reps=${1:-3}
scenarios=${SCENARIOS:-unrelated,switch storm,mix}
sides=${BOUND:-false,true}
export PGOPTIONS="-c client_min_messages=warning ${PGOPTIONS_EXTRA:-}"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    stack_up
fi
db=${DB:-bench_cmdb_$$}
built=0
if [ -n "${DB:-}" ] && [ "$(psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ]; then
    built=1
else
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
fi
pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
[ "${KEEP:-0}" = 1 ] || [ -n "${DB:-}" ] || trap 'psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "/tmp/bench_cmdb_$$.conf"
"$build/triagectl" -c "/tmp/bench_cmdb_$$.conf" migrate >/dev/null
rm -f "/tmp/bench_cmdb_$$.conf"

if [ "$built" = 0 ]; then
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

fi

if [ "${GRAPH:-1}" != 0 ]; then
echo "== the daemon's graph (tests/bench_cmdb)"
"$build/tests/bench_cmdb" "$pg" 1000000
fi

echo "== SQL: triaged.ingest_arrays() bound vs unbound ($reps runs each, rolled back)"
psql "$pg" -qAtX -v ON_ERROR_STOP=1 <<SQL
-- the CIs of each scenario, in order, with what the daemon would describe
CREATE TEMP TABLE sc (scenario text, pos int, ci_id bigint);
INSERT INTO sc   -- 1,000 application CIs spread over the graph
SELECT 'unrelated', g, 10101 + (g * 89) % 89900 FROM generate_series(0, 999) g;
INSERT INTO sc   -- core switch 1, 100 of its hosts, 899 applications on those hosts
SELECT 'switch storm', row_number() OVER () - 1, x.id FROM (
  SELECT 1::bigint AS id
  UNION ALL (SELECT r.child_id FROM triaged.ci_relation r WHERE r.parent_id = 1
              ORDER BY r.child_id LIMIT 100)
  UNION ALL (SELECT r.child_id FROM triaged.ci_relation r
              WHERE r.parent_id IN (SELECT r2.child_id FROM triaged.ci_relation r2
                                     WHERE r2.parent_id = 1 ORDER BY r2.child_id LIMIT 100)
              ORDER BY r.child_id LIMIT 899)) x;
INSERT INTO sc   -- the mix's 100 CIs: four hosts with nine applications each
                 -- on them (correlated groups), and 60 unrelated applications
SELECT 'mix', row_number() OVER () - 1, x.id FROM (
  SELECT h.id, 0 AS k FROM unnest('{1234,4321,6789,9876}'::bigint[]) h(id)
  UNION ALL
  SELECT a.child_id, 1 FROM unnest('{1234,4321,6789,9876}'::bigint[]) h(id)
   CROSS JOIN LATERAL (SELECT r.child_id FROM triaged.ci_relation r
                        WHERE r.parent_id = h.id AND r.kind = 'runs_on'
                        ORDER BY r.child_id LIMIT 9) a
  UNION ALL
  SELECT 10105 + g * 1499, 2 FROM generate_series(0, 59) g
  ORDER BY 2, 1) x;
-- the build's daemon writes the lists as array literals in JSON strings
-- when its SQL reads them (sql/014), else as JSON arrays
CREATE TEMP TABLE descr AS
SELECT DISTINCT ON (ci_id) ci_id, jsonb_build_object(
         'ci_id', ci_id,
         'up', CASE WHEN to_regprocedure('triaged._id_list(text)') IS NOT NULL
                    THEN to_jsonb(triaged.ci_upstream(ci_id)::text)
                    ELSE to_jsonb(triaged.ci_upstream(ci_id)) END,
         'svc', CASE WHEN to_regprocedure('triaged._id_list(text)') IS NOT NULL
                     THEN to_jsonb(triaged.ci_impacted_services(ci_id)::text)
                     ELSE to_jsonb(triaged.ci_impacted_services(ci_id)) END) AS d
  FROM sc ORDER BY ci_id;
SELECT 'descriptions as ' || CASE WHEN to_regprocedure('triaged._id_list(text)') IS NOT NULL
                                  THEN 'array literals in strings' ELSE 'JSON arrays' END;

-- One batch as the daemon sends it (ingest_arrays, the descriptions as JSON
-- text parsed in the call) with segments (fp, ci, check, n, first); its
-- wall and backend CPU time in ms.
CREATE FUNCTION pg_temp.batch(p_fp text[], p_ci bigint[], p_check text[], p_n bigint[],
                              p_first timestamptz[], p_bound boolean,
                              OUT ms float8, OUT cpu float8)
LANGUAGE plpgsql AS \$\$
DECLARE
  v_k   int := cardinality(p_fp);
  v_cis text;
  v_t0  timestamptz;
  v_c0  bigint;
  v_n   bigint;
BEGIN
  IF p_bound THEN
    SELECT jsonb_agg(d.d)::text INTO v_cis
      FROM descr d WHERE d.ci_id IN (SELECT unnest(p_ci));
  END IF;
  BEGIN
    v_c0 := split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint;
  EXCEPTION WHEN OTHERS THEN
    v_c0 := NULL;   -- (no CPU figure)
  END;
  v_t0 := clock_timestamp();
  SELECT count(*) INTO v_n FROM triaged.ingest_arrays(
    p_fp, array_fill('bench'::text, ARRAY[v_k]),
    ARRAY(SELECT format('ci-%s', lpad(c::text, 6, '0')) FROM unnest(p_ci) c), p_check,
    array_fill(NULL::text, ARRAY[v_k]),
    CASE WHEN p_bound THEN p_ci ELSE array_fill(NULL::bigint, ARRAY[v_k]) END,
    array_fill(NULL::text, ARRAY[v_k]), array_fill('{}'::jsonb, ARRAY[v_k]),
    array_fill('critical'::text, ARRAY[v_k]), array_fill('firing'::text, ARRAY[v_k]),
    p_n, p_first, p_first, v_cis::jsonb, NULL, '{}');
  ms := extract(epoch FROM clock_timestamp() - v_t0) * 1000;
  cpu := (split_part(pg_read_file('/proc/self/schedstat'), ' ', 1)::bigint - v_c0) / 1e6;
  -- (what a commit does: the transaction's descriptions are gone)
  PERFORM set_config('triaged.batch_ci', '', true);
  IF to_regclass('pg_temp.td_batch_ci') IS NOT NULL THEN
    DELETE FROM pg_temp.td_batch_ci;
  END IF;
END \$\$;

CREATE TEMP TABLE runs (scenario text, bound boolean, rep int, ms float8, cpu float8,
                        alerts int);
CREATE TEMP TABLE mix_batches (bound boolean, rep int, k int, cpu float8);
$( [ "${PGSS:-0}" = 1 ] && echo "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset() IS NULL;" )
DO \$\$
DECLARE
  v_ids bigint[];
  v_sc  text;
  v_bound boolean;
  v_ms  float8;
  v_cpu float8;
  v_b   record;
  v_t   timestamptz := date_trunc('second', now());
  v_kcpu float8[] := '{}';
BEGIN
  FOR v_rep IN 1..$reps LOOP
    FOREACH v_sc IN ARRAY string_to_array('$scenarios', ',') LOOP
      FOREACH v_bound IN ARRAY '{$sides}'::boolean[] LOOP
        v_ids := ARRAY(SELECT s.ci_id FROM sc s WHERE s.scenario = v_sc ORDER BY s.pos);
        BEGIN
          IF v_sc <> 'mix' THEN
            -- 1,000 new alerts in one batch, one per CI
            v_b := pg_temp.batch(ARRAY(SELECT md5(v_sc || c || v_rep) FROM unnest(v_ids) c),
                                 v_ids, array_fill('down'::text, ARRAY[1000]),
                                 array_fill(1::bigint, ARRAY[1000]),
                                 array_fill(v_t, ARRAY[1000]), v_bound);
            v_ms := v_b.ms;
            v_cpu := v_b.cpu;
          ELSE
            -- a storm like bench_kafka.sh's: 10,000 messages for 1,000
            -- alerts (90 % duplicates), ten a CI; message j is for alert
            -- j / 10 (its repeats together); batches of 1,000 messages
            -- folded by the daemon's batcher: 200 segments of 5 messages;
            -- batches 0-4 create the alerts (100 groups in batch 0), 5-9
            -- repeat them (counted)
            v_ms := 0;
            v_cpu := 0;
            FOR k IN 0..9 LOOP
              v_b := pg_temp.batch(
                ARRAY(SELECT md5('mix' || f || v_rep) FROM generate_series(200 * (k % 5), 200 * (k % 5) + 199) f),
                ARRAY(SELECT v_ids[1 + f % 100] FROM generate_series(200 * (k % 5), 200 * (k % 5) + 199) f),
                ARRAY(SELECT 'check-' || f / 100 FROM generate_series(200 * (k % 5), 200 * (k % 5) + 199) f),
                array_fill(5::bigint, ARRAY[200]),
                ARRAY(SELECT v_t + (f * 10 + 1000 * (k / 5)) * interval '1 ms'
                        FROM generate_series(200 * (k % 5), 200 * (k % 5) + 199) f), v_bound);
              v_ms := v_ms + v_b.ms;
              v_cpu := v_cpu + v_b.cpu;
              v_kcpu := v_kcpu || v_b.cpu;
            END LOOP;
          END IF;
          RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = 'roll back';
        EXCEPTION WHEN no_data_found THEN
          NULL;   -- (variables keep their values; the rows are gone)
        END;
        INSERT INTO mix_batches SELECT v_bound, v_rep, c.k - 1, c.cpu
          FROM unnest(v_kcpu) WITH ORDINALITY c(cpu, k);
        v_kcpu := '{}';
        INSERT INTO runs VALUES (v_sc, v_bound, v_rep, v_ms, v_cpu,
                                 CASE WHEN v_sc = 'mix' THEN 10000 ELSE 1000 END);
      END LOOP;
    END LOOP;
  END LOOP;
END \$\$;
SELECT format('%s %s median %s ms = %s us per alert (runs: %s ms); CPU median %s ms (runs: %s)',
              rpad(scenario, 12), rpad(CASE WHEN bound THEN 'bound' ELSE 'unbound' END, 7),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) * 1000 / max(alerts))::numeric, 1),
              string_agg(round(ms::numeric, 1)::text, ' ' ORDER BY rep),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu)::numeric, 1),
              string_agg(round(cpu::numeric, 1)::text, ' ' ORDER BY rep))
  FROM runs GROUP BY scenario, bound ORDER BY scenario DESC, bound;
SELECT format('%s the CMDB adds %s us per alert (bound median - unbound median), ratio %s; in CPU %s us, ratio %s',
              rpad(scenario, 12),
              round(((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE bound)
                     - percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE NOT bound))
                     * 1000 / max(alerts))::numeric, 1),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE bound)
                     / percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) FILTER (WHERE NOT bound))::numeric, 2),
              round(((percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) FILTER (WHERE bound)
                     - percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) FILTER (WHERE NOT bound))
                     * 1000 / max(alerts))::numeric, 1),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) FILTER (WHERE bound)
                     / nullif(percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) FILTER (WHERE NOT bound), 0))::numeric, 2))
  FROM runs GROUP BY scenario ORDER BY scenario DESC;
-- the fastest runs of each side: on a shared machine the others' load only
-- ever adds time, so the minimums drift least (with enough reps)
SELECT format('%s minimums: the CMDB adds %s us per alert (fastest bound - fastest unbound); in CPU %s us',
              rpad(scenario, 12),
              round(((min(ms) FILTER (WHERE bound) - min(ms) FILTER (WHERE NOT bound)) * 1000 / max(alerts))::numeric, 1),
              round(((min(cpu) FILTER (WHERE bound) - min(cpu) FILTER (WHERE NOT bound)) * 1000 / max(alerts))::numeric, 1))
  FROM runs GROUP BY scenario HAVING bool_or(bound) AND bool_or(NOT bound) ORDER BY scenario DESC;
-- the mix batch by batch (BATCHES=1): fastest bound - fastest unbound CPU
$( [ "${BATCHES:-0}" = 1 ] && echo "SELECT format('mix batch %s: bound - unbound, fastest of each: %s ms CPU', k, round((min(cpu) FILTER (WHERE bound) - min(cpu) FILTER (WHERE NOT bound))::numeric, 2)) FROM mix_batches GROUP BY k ORDER BY k;" )
-- each bound run against the unbound run just before it (same rep): less
-- drift when the load of a shared machine changes between reps
SELECT format('%s paired: the CMDB adds %s us per alert (median of %s pairs; each: %s); in CPU %s us (each: %s)',
              rpad(scenario, 12),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d_ms) * 1000 / max(alerts))::numeric, 1),
              count(*),
              string_agg(round((d_ms * 1000 / alerts)::numeric, 1)::text, ' ' ORDER BY rep),
              round((percentile_cont(0.5) WITHIN GROUP (ORDER BY d_cpu) * 1000 / max(alerts))::numeric, 1),
              string_agg(round((d_cpu * 1000 / alerts)::numeric, 1)::text, ' ' ORDER BY rep))
  FROM (SELECT b.scenario, b.rep, b.alerts, b.ms - u.ms AS d_ms, b.cpu - u.cpu AS d_cpu
          FROM runs b JOIN runs u ON u.scenario = b.scenario AND u.rep = b.rep AND NOT u.bound
         WHERE b.bound) p
 GROUP BY scenario ORDER BY scenario DESC;
SQL
if [ "${PGSS:-0}" = 1 ]; then
    echo "== pg_stat_statements: top statements by total time (ms; calls; ms a call)"
    psql "$pg" -qAtX -c "SELECT format('%s ms  %s calls  %s ms/call  %s', round(total_exec_time::numeric, 1), calls,
                                       round((total_exec_time / calls)::numeric, 3),
                                       left(regexp_replace(query, '\s+', ' ', 'g'), 160))
                           FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                          ORDER BY total_exec_time DESC LIMIT ${PGSS_TOP:-40}"
fi

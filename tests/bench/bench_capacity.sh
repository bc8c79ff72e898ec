#!/usr/bin/env bash
# tests/bench/bench_capacity.sh — capacity sample ingest and risk ranking.
# Prints its figures; asserts nothing.
#
#   bash tests/bench/bench_capacity.sh [sql|parts|kafka|risks|all]
#
# sql:    500,000 samples (50,000 series) as the daemon sends them (typed
#         arrays, CIs bound, hours given) into triaged.ingest_capacity_arrays in batches
#         of 10,000, one transaction each: PostgreSQL's side alone, by one
#         session and by two at once (each half of the batches, as the
#         daemon's lanes would); then the same again (all duplicates), the
#         same with capacity_sample's key before 009, and 100,000 through the
#         old jsonb ingest_capacity. References measured in the same run, by
#         as many sessions at once: a COPY of the same rows into an unindexed
#         table, into one with capacity_sample's key, and with the old key
# parts:  where a sample's PostgreSQL time goes: the same batches into tables
#         that add one cost at a time (index-free, the old primary key and
#         BRIN, or the key of 009, the partition, the routing, the whole
#         function), microseconds a sample (wall and the backend's CPU), twice each
# kafka:  500,000 samples through Kafka and triaged (stored: counted in
#         capacity_sample), with kcat's consume rate of the same topic in the
#         same run as the reference
# risks:  100,000 series with 30 days of 5-minute samples each (their
#         least-squares sums, as 8,640 samples give them), then the ranked
#         risks within 90 days; and the hourly rollup of one hour of 100,000
#         series (1.2 M samples)
# Uses a running stack when TD_TEST_* is set, else starts one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
what=${1:-all}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_KAFKA_BROKERS:-}" ]; then
    TD_STACK_KAFKA_PARTITIONS=16 stack_up
fi
work=$(mktemp -d "$TD_TEST_DIR/bench.XXXXXX")
B=$TD_TEST_KAFKA_BROKERS
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1 / ($3 - $2):,.0f}')"; }

fresh_db() {
    db="bench_cap_$1_$$"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db"
    pg="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
    printf '[postgres]\nconninfo = %s\n[redis]\nurl = %s\n' "$pg" "$TD_TEST_REDIS_URL" > "$work/ctl.conf"
    "$build/triagectl" -c "$work/ctl.conf" migrate >/dev/null
}
cis() { psql "$pg" -qAtc "INSERT INTO triaged.ci (name) SELECT 'ci-' || i FROM generate_series(1, $1) i"; }

# N concurrent psql sessions: "par N CMD..." runs CMD with %K% replaced by
# 0..N-1 (the session's share), waits for all; prints each one's output
par() {
    local n=$1; shift
    local k pids=() out=()
    for ((k = 0; k < n; k++)); do
        out+=("$work/par.$k")
        # shellcheck disable=SC2294
        eval "${*//%K%/$k}" > "$work/par.$k" &
        pids+=($!)
    done
    for k in "${pids[@]}"; do wait "$k"; done
    cat "${out[@]}"
}

run_sql() {
    fresh_db sql
    cis 50000
    # the batches as the daemon sends them: parallel typed arrays, CI ids bound
    psql "$pg" -qAt <<'SQL'
SET TimeZone = 'UTC';
CREATE TABLE batches AS
-- (each batch in the order a consumer of many partitions sees: its CIs
-- shuffled, times 0-59 s after the 5-minute mark)
SELECT b, array_agg(i % 50000 + 1 ORDER BY o)::bigint[] AS ci_id,
       array_agg(NULL::text) AS ci, array_agg('disk'::text) AS metric,
       array_agg(timestamptz '2026-11-01' + (i / 50000) * interval '5 min'
                 + (i * 37 % 60) * interval '1 s' ORDER BY o) AS ts,
       array_agg((100 + i % 797)::float8 ORDER BY o) AS value,
       array_agg(1000::float8) AS lim
  FROM generate_series(0, 499999) i, LATERAL (SELECT i / 10000 AS b, i % 10000 * 7919 % 10000 AS o) x
 GROUP BY b;
-- what the daemon passes along: each batch's hours, and no sample over its limit
ALTER TABLE batches ADD hours timestamptz[];
UPDATE batches SET hours = (SELECT array_agg(DISTINCT date_trunc('hour', t)) FROM unnest(ts) t);
-- the same as the JSON the old path took
CREATE TABLE batches_json AS
SELECT b, (SELECT jsonb_agg(jsonb_build_object('ci', 'ci-' || u.id, 'metric', u.m, 'value', u.v,
                                               'limit', u.l, 'ts', u.t))
             FROM unnest(ci_id, metric, value, lim, ts) AS u(id, m, v, l, t)) AS j
  FROM batches;
CREATE TABLE rows AS
SELECT b, u.* FROM batches, unnest(ci_id, metric, ts, value, lim) AS u(ci_id, metric, ts, value, lim);
CREATE TABLE ref (LIKE triaged.capacity_sample);
CREATE TABLE ref_key (LIKE triaged.capacity_sample, PRIMARY KEY (ts, ci_id, metric));
CREATE TABLE ref_oldkey (LIKE triaged.capacity_sample, PRIMARY KEY (ci_id, metric, ts));
-- session p_k of p_n ingests the batches b % p_n = p_k, in order; returns
-- the CPU seconds its backend used (utime + stime of /proc/PID/stat)
CREATE FUNCTION bench_cpu() RETURNS double precision LANGUAGE sql AS $$
  SELECT (f[12]::float8 + f[13]::float8) / 100 -- fields 14, 15 (after "pid (comm) ")
    FROM (SELECT string_to_array(split_part(pg_read_file('/proc/' || pg_backend_pid() || '/stat'),
                                            ') ', 2), ' ') AS f) x $$;
CREATE PROCEDURE bench_ingest(p_n integer, p_k integer, INOUT cpu double precision DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE r record; c0 double precision := bench_cpu();
BEGIN
  FOR r IN SELECT * FROM batches WHERE b % p_n = p_k ORDER BY b LOOP
    PERFORM triaged.ingest_capacity_arrays(r.ci_id, r.ci, r.metric, r.ts, r.value, r.lim, '{}',
                                           r.hours, false);
    COMMIT; -- one transaction a batch, as in the daemon
  END LOOP;
  cpu := bench_cpu() - c0;
END $$;
SQL
    local n k
    for n in 1 2; do
        for ((k = 0; k < n; k++)); do
            psql "$pg" -qAt -c "\\copy (SELECT ci_id, metric, ts, value, lim FROM rows WHERE b % $n = $k) TO '$work/rows.$k.of.$n'"
        done
    done
    # each measure appends "name sessions rows/s cpu-seconds" to $res
    local res="$work/sql.res"; : > "$res"
    copy_ref() { # table sessions
        psql "$pg" -qAtc "TRUNCATE $1"
        local t0 t1; t0=$(now)
        par "$2" "psql '$pg' -qAt -c \"\\\\copy $1 FROM '$work/rows.%K%.of.$2'\"" >/dev/null
        t1=$(now)
        echo "$1 $2 $(python3 -c "print(500000 / ($t1 - $t0))") 0 0" >> "$res"
    }
    wal() { psql "$pg" -qAtc "SELECT pg_current_wal_insert_lsn() - '0/0'"; }
    ingest() { # name sessions
        local t0 t1 cpu w0 w1; w0=$(wal); t0=$(now)
        cpu=$(par "$2" "psql '$pg' -qAtc 'CALL bench_ingest($2, %K%)'" | python3 -c 'import sys; print(sum(map(float, sys.stdin.read().split())))')
        t1=$(now); w1=$(wal)
        echo "$1 $2 $(python3 -c "print(500000 / ($t1 - $t0))") $cpu $((w1 - w0))" >> "$res"
    }
    local stored=()
    for n in 1 2; do
        copy_ref ref "$n"
        copy_ref ref_key "$n"
        copy_ref ref_oldkey "$n"
        psql "$pg" -qAtc "TRUNCATE triaged.capacity_sample, triaged.capacity_dirty, triaged.capacity_dirty_mark"
        ingest new "$n"
        stored+=("$(psql "$pg" -qAtc "SELECT count(*) FROM triaged.capacity_sample")")
        ingest dup "$n"     # the same again: all duplicates
    done
    # the old path (jsonb, bound in SQL, ON CONFLICT), on the first 100,000 in a
    # fresh month so that they are new
    psql "$pg" -qAt -c "UPDATE batches_json SET j = (SELECT jsonb_agg(jsonb_set(e, '{ts}',
        to_jsonb((e->>'ts')::timestamptz - interval '1 year'))) FROM jsonb_array_elements(j) e) WHERE b < 10" >/dev/null
    local t0 t1; t0=$(now)
    psql "$pg" -qAt -c "DO \$\$ DECLARE r record; BEGIN
        FOR r IN SELECT j FROM batches_json WHERE b < 10 ORDER BY b LOOP
          PERFORM triaged.ingest_capacity(r.j, '{}');
        END LOOP; END \$\$" >/dev/null
    t1=$(now)
    echo "jsonb 1 $(python3 -c "print(100000 / ($t1 - $t0))") 0 0" >> "$res"
    # the key before (005-007: (ci_id, metric, ts) and a BRIN index on ts),
    # the same function: what the key alone changes
    psql "$pg" -qAt -c "ALTER TABLE triaged.capacity_sample DROP CONSTRAINT capacity_sample_pkey,
        ADD CONSTRAINT capacity_sample_pkey PRIMARY KEY (ci_id, metric, ts);
        CREATE INDEX capacity_sample_ts_brin ON triaged.capacity_sample USING brin (ts)"
    for n in 1 2; do
        psql "$pg" -qAtc "TRUNCATE triaged.capacity_sample, triaged.capacity_dirty, triaged.capacity_dirty_mark"
        ingest oldkey "$n"
    done
    python3 - "$res" "${stored[@]}" <<'PY'
import sys
r = {}
for line in open(sys.argv[1]):
    name, n, rate, cpu, wal = line.split()
    r[name, int(n)] = (float(rate), float(cpu), int(wal))
stored = sys.argv[2:]
print("sql: 500,000 samples (50,000 series) in batches of 10,000, one transaction a batch,")
print("     by N sessions at once (each its share of the batches); references: a COPY")
print("     of the same rows by N sessions at once, in the same run")
print(f"  {'':55} {'N=1':>32} {'N=2':>32}")
def row(label, name, cpu=True):
    cells = []
    for n in (1, 2):
        if (name, n) not in r:
            cells.append(f"{'':>32}")
            continue
        rate, c, w = r[name, n]
        cell = f"{rate:>9,.0f}/s {rate / r['ref', n][0]:.2f}x"
        if cpu and c > 0:
            cell += f" {c / 500000 * 1e6:.1f}us {w / 500000:.0f}B"
        cells.append(f"{cell:>32}")
    print(f"  {label:<55} {cells[0]} {cells[1]}")
row("COPY into an unindexed table (the reference)", 'ref')
row("COPY into a table with the key (ts, ci_id, metric)", 'ref_key')
row("COPY into a table with the old key (ci_id, metric, ts)", 'ref_oldkey')
row(f"ingest_capacity_arrays ({'/'.join(stored)} stored)", 'new')
row("the same again, all duplicates", 'dup')
row("ingest_capacity_arrays, the old key and BRIN", 'oldkey')
row("ingest_capacity (the old jsonb path), 100,000", 'jsonb', cpu=False)
print("  (x: against the unindexed COPY by as many sessions; us: the backends' CPU a sample;")
print("   B: WAL bytes a sample)")
PY
}

run_parts() {
    # where a sample's time goes: the same 500,000 samples (arrays of 10,000)
    # into tables that add one cost at a time, twice each, in one session
    fresh_db parts
    cis 50000
    psql "$pg" -qAt <<'SQL'
SET TimeZone = 'UTC';
CREATE TABLE batches AS
-- (as in run_sql: a consumer's order)
SELECT b, array_agg(i % 50000 + 1 ORDER BY o)::bigint[] AS ci_id,
       array_agg(NULL::text) AS ci, array_agg('disk'::text) AS metric,
       array_agg(timestamptz '2026-11-01' + (i / 50000) * interval '5 min'
                 + (i * 37 % 60) * interval '1 s' ORDER BY o) AS ts,
       array_agg((100 + i % 797)::float8 ORDER BY o) AS value,
       array_agg(1000::float8) AS lim
  FROM generate_series(0, 499999) i, LATERAL (SELECT i / 10000 AS b, i % 10000 * 7919 % 10000 AS o) x
 GROUP BY b;
ALTER TABLE batches ADD hours timestamptz[];
UPDATE batches SET hours = (SELECT array_agg(DISTINCT date_trunc('hour', t)) FROM unnest(ts) t);
CREATE TABLE t_heap (LIKE triaged.capacity_sample);
CREATE TABLE t_pk (LIKE triaged.capacity_sample, PRIMARY KEY (ci_id, metric, ts));
CREATE TABLE t_pk_brin (LIKE triaged.capacity_sample, PRIMARY KEY (ci_id, metric, ts));
CREATE INDEX ON t_pk_brin USING brin (ts);
CREATE TABLE t_key (LIKE triaged.capacity_sample, PRIMARY KEY (ts, ci_id, metric));
-- the backend's CPU seconds (utime + stime of /proc/PID/stat): the machine
-- is shared, so its CPU varies less than its wall time
CREATE FUNCTION pg_temp.cpu() RETURNS double precision LANGUAGE sql AS $$
  SELECT (f[12]::float8 + f[13]::float8) / 100
    FROM (SELECT string_to_array(split_part(pg_read_file('/proc/' || pg_backend_pid() || '/stat'),
                                            ') ', 2), ' ') AS f) x $$;
-- "wall/CPU" microseconds a sample
CREATE FUNCTION pg_temp.run(p_what text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r record; t0 timestamptz; c0 double precision;
BEGIN
  EXECUTE CASE WHEN p_what LIKE 't\_%' THEN 'TRUNCATE ' || p_what ELSE 'TRUNCATE triaged.capacity_sample, triaged.capacity_dirty_mark' END;
  t0 := clock_timestamp(); c0 := pg_temp.cpu();
  FOR r IN SELECT * FROM batches ORDER BY b LOOP
    IF p_what = 'function' THEN
      PERFORM triaged.ingest_capacity_arrays(r.ci_id, r.ci, r.metric, r.ts, r.value, r.lim, '{}',
                                                 r.hours, false);
    ELSIF p_what = 'partitioned' THEN
      INSERT INTO triaged.capacity_sample SELECT * FROM unnest(r.ci_id, r.metric, r.ts, r.value, r.lim);
    ELSE
      EXECUTE format('INSERT INTO %s SELECT * FROM unnest($1, $2, $3, $4, $5)',
                     CASE WHEN p_what LIKE 't\_%' THEN p_what ELSE 'triaged.' || p_what END)
        USING r.ci_id, r.metric, r.ts, r.value, r.lim;
    END IF;
  END LOOP;
  RETURN to_char(extract(epoch FROM clock_timestamp() - t0) / 500000 * 1e6, 'FM990.00') || '/'
      || to_char((pg_temp.cpu() - c0) / 500000 * 1e6, 'FM990.00');
END $$;
SELECT format('  %-55s %11s %11s us a sample (wall/CPU)', d, pg_temp.run(w), pg_temp.run(w))
  FROM (VALUES (1, 't_heap', 'INSERT from the arrays, a table without index'),
               (2, 't_pk', '+ the old primary key (ci_id, metric, ts)'),
               (3, 't_pk_brin', '+ the BRIN index on ts (the old indexes)'),
               (4, 't_key', 'instead, the key (ts, ci_id, metric) alone (009)'),
               (5, 'capacity_sample_p202611', '+ the CHECKs (capacity_sample''s month partition)'),
               (6, 'partitioned', '+ routed by month (into capacity_sample)'),
               (7, 'function', 'ingest_capacity_arrays (hours, limits, stats)')) v(k, w, d)
 ORDER BY k;
SQL
}

run_kafka() {
    fresh_db kafka
    cis 50000
    local topic="bench_cap_$$" n=500000
    stack_kafka_control "topic $topic 16" >/dev/null
    python3 - "$n" > "$work/samples" <<'PY'
import sys, datetime
n = int(sys.argv[1]); t0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
out = sys.stdout
for i in range(n):
    ci = f"ci-{1 + i % 50000}"
    ts = (t0 + datetime.timedelta(minutes=5 * (i // 50000))).strftime("%Y-%m-%dT%H:%M:%SZ")
    out.write(f'{ci}\t{{"ci":"{ci}","metric":"disk","value":{100 + i % 797},"limit":1000,"ts":"{ts}"}}\n')
PY
    kcat -P -b "$B" -t "$topic" -K $'\t' -z none < "$work/samples"
    local t0 t1 kn
    t0=$(now)
    kn=$(kcat -C -b "$B" -t "$topic" -e -q -o beginning -f '%s\n' | wc -l)
    t1=$(now)
    local kr; kr=$(python3 -c "print(round($kn / ($t1 - $t0)))")
    cat > "$work/triaged.conf" <<CONF
[triaged]
instance = bench
[postgres]
conninfo = $pg
[redis]
url = $TD_TEST_REDIS_URL
[kafka]
brokers = $B
group = g_$db
alerts_topic = bench_cap_alerts_$$
capacity_topic = $topic
[plugins]
dir = $build/plugins
load = in_kafka
CONF
    "$build/triaged" -c "$work/triaged.conf" > "$work/triaged.log" 2>&1 &
    pid=$!
    # progress from the committed offsets (one sample a message; they commit
    # with the samples): a count(*) of the table every poll would load the
    # machine it measures
    local got=0 first="" g0=0 deadline=$((SECONDS + 600))
    while [ "$got" -lt "$n" ] && [ $SECONDS -lt $deadline ]; do
        got=$(psql "$pg" -qAtc "SELECT coalesce(sum(next_offset), 0) FROM triaged.kafka_offset
                                 WHERE topic = '$topic'")
        [ -z "$first" ] && [ "$got" -gt 0 ] && first=$(now) && g0=$got
        sleep 0.1
    done
    local end; end=$(now)
    got=$(psql "$pg" -qAtc "SELECT count(*) FROM triaged.capacity_sample")
    local cpu; cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' /proc/$pid/stat)
    kill -TERM "$pid"; wait "$pid" || true; pid=""
    python3 - "$n" "$g0" "$first" "$end" "$kr" "$kn" "$got" "$cpu" <<'PY'
import sys
n, g0 = int(sys.argv[1]), int(sys.argv[2])
first, end, kr = map(float, sys.argv[3:6])
kn, got, cpu = sys.argv[6], sys.argv[7], float(sys.argv[8])
stored = (n - g0) / (end - first)
print(f"kafka: kcat consumes {kn} samples at {kr:,.0f}/s (the reference)")
print(f"  triaged stores {got} at {stored:,.0f} samples/s end to end = {stored / kr:.2f}x kcat")
print(f"  triaged CPU {cpu:.1f} s ({cpu / n * 1e6:.1f} us a sample)")
PY
}

run_risks() {
    fresh_db risks
    cis 100000
    # 30 days of 5-minute samples per series: value = a + b * day + noise;
    # their centred sums, as the rollup would have merged them
    psql "$pg" -qAt <<'SQL'
INSERT INTO triaged.capacity_series (ci_id, metric, n, mean_t, mean_v, stt, svv, stv,
                                     last_ts, last_value, capacity_limit)
SELECT c.id, 'disk', 8640,
       triaged.capacity_t(now()) - 15,
       g.a + g.b * 15,
       8640 * 75.0,                        -- n * 30^2 / 12 for t uniform over 30 days
       g.b * g.b * 8640 * 75.0 + 8640 * 25,  -- slope part + noise variance 25
       g.b * 8640 * 75.0,
       now(), g.a + g.b * 30, 1000
  FROM triaged.ci c,
       LATERAL (SELECT 300 + (c.id % 500) AS a, ((c.id % 41) - 10) / 4.0 AS b) g;
ANALYZE triaged.capacity_series;
SQL
    local t0 t1 n
    t0=$(now)
    n=$(psql "$pg" -qAtc "SELECT count(*) FROM triaged.capacity_risks('90 days')")
    t1=$(now)
    echo "risks: 100,000 series ranked, $n run out within 90 days, in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
    # one hour of 100,000 series at 5 minutes: 1.2 M raw samples, then its rollup
    psql "$pg" -qAt -c "SELECT triaged.capacity_ensure_partitions(timestamptz '2026-11-01', timestamptz '2026-11-01')" >/dev/null
    psql "$pg" -qAt -c "INSERT INTO triaged.capacity_sample (ci_id, metric, ts, value, capacity_limit)
        SELECT c.id, 'disk', timestamptz '2026-11-01 10:00Z' + k * interval '5 min', 300 + k, 1000
          FROM triaged.ci c, generate_series(0, 11) k;
        INSERT INTO triaged.capacity_dirty VALUES ('2026-11-01 10:00Z')" >/dev/null
    t0=$(now)
    psql "$pg" -qAt -c "SELECT 1 FROM triaged.capacity_tick('{\"now\":\"2026-11-01T12:00:00Z\",\"max_hours\":1}')" >/dev/null
    t1=$(now)
    echo "rollup: one hour of 100,000 series (1,200,000 samples) in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"
}

case $what in
sql) run_sql ;;
parts) run_parts ;;
kafka) run_kafka ;;
risks) run_risks ;;
all) run_sql; run_parts; run_kafka; run_risks ;;
*) echo "usage: $0 [sql|parts|kafka|risks|all]" >&2; exit 1 ;;
esac

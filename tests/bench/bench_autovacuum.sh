#!/usr/bin/env bash
# tests/bench/bench_autovacuum.sh — what an autovacuum pass over the engine
# tables costs the backend that runs it, before and after sql/026 (per-column
# statistics targets). Prints figures; asserts nothing.
#
#   bash tests/bench/bench_autovacuum.sh [N [BATCH]]   (default 115000 50)
#
# 1. Builds one database with N new alerts in batches of BATCH, the latency
#    run's shape (bench_kafka.sh latency: unbound, a resource's ten checks in
#    a row, batches shifted by five as in bench_engine.sh's split phase; 1 in
#    10 opens an incident; 115,000 alerts and 11,500 incidents is the state
#    at the end of a latency run), each batch in its own transaction through
#    triaged.ingest_arrays, with autovacuum off on the engine tables (as the
#    first autovacuum of a fresh database finds them: never vacuumed nor
#    analysed).
# 2. REPS times (default 3), alternated: a copy of it "before" (every column's
#    statistics target and the tables' autovacuum settings back to the
#    defaults, i.e. what 001-025 leave) and a copy "after" (sql/026 as
#    migrated), its tables and indexes read into shared buffers (pg_prewarm:
#    the running system has them there, though clean: a VACUUM's first
#    write of a page costs it 20 of its 200 and spreads it, where in a
#    running system the young pages are often still dirty and VACUUM runs
#    unthrottled), then one session does what one
#    autovacuum worker does on a fresh database: for each engine table, in
#    pg_class order, VACUUM then ANALYZE, with the cost-based delay autovacuum
#    would use for that table (the server's autovacuum_vacuum_cost_delay and
#    _limit, or the table's own autovacuum_vacuum_cost_delay / _limit storage
#    parameters; VACUUM with PARALLEL 0: autovacuum has no parallel workers).
#    The backend's CPU time (/proc/<pid>/schedstat) and the wall time of each
#    phase, and the peak share of a core over any 100 ms and over any 1 s of
#    the whole pass (schedstat sampled every 10 ms).
# Prints the medians over REPS (min-max) per table and phase, and of the
# whole pass. VARIANT=FILE: the "after" copy gets the defaults back and then
# the SQL in FILE instead of sql/026's settings (to try other settings, or
# 026's file itself on a database migrated before it). KEEP=1 keeps the
# built database (bench_av_<pid>); DB=NAME uses that one (built by an
# earlier KEEP=1 run, or any database with the engine's data: its tables'
# autovacuum_enabled off) instead of building. Uses a running stack
# when TD_TEST_* is set, else starts one (local server: schedstat is read
# from /proc).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${TD_BUILD_DIR:-$root/build}
N=${1:-115000}
B=${2:-50}
R=${REPS:-3}
export PGOPTIONS="-c client_min_messages=warning"
source "$root/tests/stack/stack.sh"
if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    stack_up
fi
admin=$TD_TEST_PG_ADMIN_CONNINFO
work=$(mktemp -d "${TMPDIR:-/tmp}/bench_autovacuum.XXXXXX")
tpl=${DB:-bench_av_$$}
copy="bench_av_copy_$$"
tables="alert alert_history incident incident_alert incident_event"
cleanup() {
    psql "$admin" -qAtc "DROP DATABASE IF EXISTS $copy WITH (FORCE)" >/dev/null 2>&1 || true
    [ "${KEEP:-0}" = 1 ] || [ -n "${DB:-}" ] || psql "$admin" -qAtc "DROP DATABASE IF EXISTS $tpl WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# 1. the database
pg="$admin dbname=$tpl"
if [ -z "${DB:-}" ]; then
psql "$admin" -qAtc "CREATE DATABASE $tpl"
printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "$work/conf"
"$build/triagectl" -c "$work/conf" migrate >/dev/null
for t in $tables; do
    psql "$pg" -qAtc "ALTER TABLE triaged.$t SET (autovacuum_enabled = false)"
done
t0=$(date +%s.%N)
psql "$pg" -qAtX -v ON_ERROR_STOP=1 <<SQL
DO \$\$
DECLARE i int := 0;
BEGIN
  WHILE i < $N LOOP
    PERFORM count(*) FROM (
      SELECT a.* FROM (
        SELECT array_agg('lat' || lpad(to_hex(kk), 13, '0') ORDER BY kk) fp,
               array_agg('lat'::text ORDER BY kk) src,
               array_agg('host-' || lpad((kk / 10)::text, 6, '0') ORDER BY kk) res,
               array_agg('c' || (kk % 10) ORDER BY kk) chk,
               array_agg(NULL::text ORDER BY kk) dk, array_agg(NULL::bigint ORDER BY kk) ci,
               array_agg(NULL::text ORDER BY kk) sm, array_agg('{}'::jsonb ORDER BY kk) lab,
               array_agg('warning'::text ORDER BY kk) sev, array_agg('firing'::text ORDER BY kk) st,
               array_agg(1::bigint ORDER BY kk) n,
               array_agg('2026-11-26T01:00:00Z'::timestamptz + kk * interval '200 us' ORDER BY kk) t0,
               array_agg('2026-11-26T01:00:00Z'::timestamptz + kk * interval '200 us' ORDER BY kk) t1
          FROM generate_series(i, least(i + $B, $N) - 1) k, LATERAL (SELECT k + 5 AS kk) x) y,
        triaged.ingest_arrays(y.fp, y.src, y.res, y.chk, y.dk, y.ci, y.sm, y.lab, y.sev, y.st,
                              y.n, y.t0, y.t1, NULL, NULL, '{"actor":"bench"}') a) z;
    COMMIT;
    i := i + $B;
  END LOOP;
END \$\$;
SQL
t1=$(date +%s.%N)
echo "built in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", b - a}') s"
fi
echo "database: $(psql "$pg" -qAtc "SELECT (SELECT count(*) FROM triaged.alert) || ' alerts, ' ||
    (SELECT count(*) FROM triaged.incident) || ' incidents, ' ||
    (SELECT count(*) FROM triaged.incident_event) || ' events; engine tables ' ||
    pg_size_pretty(sum(pg_table_size(c.oid))) || ' + indexes ' || pg_size_pretty(sum(pg_indexes_size(c.oid)))
    FROM pg_class c WHERE c.oid IN ('triaged.alert'::regclass, 'triaged.alert_history'::regclass,
        'triaged.incident'::regclass, 'triaged.incident_alert'::regclass, 'triaged.incident_event'::regclass)")"
echo "server: autovacuum_vacuum_cost_delay $(psql "$pg" -qAtc "SHOW autovacuum_vacuum_cost_delay"), autovacuum_vacuum_cost_limit $(psql "$pg" -qAtc "SHOW autovacuum_vacuum_cost_limit") (vacuum_cost_limit $(psql "$pg" -qAtc "SHOW vacuum_cost_limit")), default_statistics_target $(psql "$pg" -qAtc "SHOW default_statistics_target"), shared_buffers $(psql "$pg" -qAtc "SHOW shared_buffers")"

# the engine tables' settings back to the defaults (before 026): every
# column's and index column's statistics target, every autovacuum_* storage
# parameter but autovacuum_enabled (kept off: no autovacuum on the copy)
defaults_sql() {
    cat <<'SQL'
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT a.attrelid::regclass AS rel, a.attname, c.relkind
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             LEFT JOIN pg_index i ON i.indexrelid = c.oid
            WHERE coalesce(i.indrelid, c.oid) IN ('triaged.alert'::regclass, 'triaged.alert_history'::regclass,
                    'triaged.incident'::regclass, 'triaged.incident_alert'::regclass, 'triaged.incident_event'::regclass)
              AND a.attnum > 0 AND NOT a.attisdropped AND a.attstattarget <> -1 LOOP
    IF r.relkind = 'i' THEN
      EXECUTE format('ALTER INDEX %s ALTER COLUMN %s SET STATISTICS -1', r.rel,
                     (SELECT attnum FROM pg_attribute WHERE attrelid = r.rel AND attname = r.attname));
    ELSE
      EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS -1', r.rel, r.attname);
    END IF;
  END LOOP;
  FOR r IN SELECT c.oid::regclass AS rel, split_part(o, '=', 1) AS opt
             FROM pg_class c, unnest(c.reloptions) o
            WHERE c.oid IN ('triaged.alert'::regclass, 'triaged.alert_history'::regclass,
                    'triaged.incident'::regclass, 'triaged.incident_alert'::regclass, 'triaged.incident_event'::regclass)
              AND o LIKE 'autovacuum%' AND o NOT LIKE 'autovacuum_enabled=%' LOOP
    EXECUTE format('ALTER TABLE %s RESET (%s)', r.rel, r.opt);
  END LOOP;
END $$;
SQL
}

# the sampler: the backend's CPU time (ns) every 10 ms, "time cpu" lines to
# $2 until $2.stop exists
cat > "$work/sampler.py" <<'PY'
import os, sys, time
pid, out = sys.argv[1], sys.argv[2]
def cpu():
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])
s = [(time.time(), cpu())]
open(out + ".ready", "w").close()
while not os.path.exists(out + ".stop"):
    time.sleep(0.01)
    s.append((time.time(), cpu()))
s.append((time.time(), cpu()))
with open(out + ".tmp", "w") as f:
    f.writelines(f"{t:.6f} {c}\n" for t, c in s)
os.rename(out + ".tmp", out)
PY

# pass SIDE REP: one autovacuum-like pass over a fresh copy; its phases'
# ends (name, time, backend CPU) in $m.marks, the samples in $m; "SIDE $m"
# appended to $work/runs
pass() {
    local side=$1 rep=$2 m="$work/m.$1.$2"
    psql "$admin" -qAtc "DROP DATABASE IF EXISTS $copy WITH (FORCE)"
    psql "$admin" -qAtc "CREATE DATABASE $copy TEMPLATE $tpl"
    local cp="$admin dbname=$copy"
    {
        defaults_sql
        if [ "$side" = after ] && [ -n "${VARIANT:-}" ]; then cat "$VARIANT"; fi
    } > "$work/settings.sql"
    if [ "$side" = after ] && [ -z "${VARIANT:-}" ]; then
        : > "$work/settings.sql" # sql/026 as migrated
    fi
    psql "$cp" -qAtX -v ON_ERROR_STOP=1 -f "$work/settings.sql" >/dev/null
    psql "$cp" -qAtX -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" \
        -c "SELECT sum(pg_prewarm(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'triaged' AND c.relkind IN ('r', 'i', 't')" >/dev/null
    # autovacuum's cost settings for each table: its storage parameters, else the server's
    local order
    order=$(psql "$cp" -qAtX -F ' ' -c "SELECT c.relname,
              coalesce((SELECT split_part(o, '=', 2) || 'ms' FROM unnest(c.reloptions) o
                         WHERE o LIKE 'autovacuum_vacuum_cost_delay=%'),
                       CASE WHEN current_setting('autovacuum_vacuum_cost_delay') = '-1'
                            THEN current_setting('vacuum_cost_delay')
                            ELSE current_setting('autovacuum_vacuum_cost_delay') END),
              coalesce((SELECT split_part(o, '=', 2) FROM unnest(c.reloptions) o
                         WHERE o LIKE 'autovacuum_vacuum_cost_limit=%'),
                       CASE WHEN current_setting('autovacuum_vacuum_cost_limit') = '-1'
                            THEN current_setting('vacuum_cost_limit')
                            ELSE current_setting('autovacuum_vacuum_cost_limit') END)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'triaged' AND c.relname IN ('${tables// /\',\'}')
           ORDER BY c.oid")
    rm -f "$m" "$m".ready "$m".stop "$m.marks"
    {
        echo "SELECT pg_backend_pid() AS pid \\gset"
        echo "\\setenv BPID :pid"
        echo "\\! python3 $work/sampler.py \$BPID $m & while [ ! -e $m.ready ]; do sleep 0.005; done"
        echo "\\! echo start \$(date +%s.%N) \$(cut -d' ' -f1 /proc/\$BPID/schedstat) >> $m.marks"
        while read -r t delay limit; do
            echo "SET vacuum_cost_delay = '$delay'; SET vacuum_cost_limit = $limit;"
            echo "VACUUM (PARALLEL 0) triaged.$t;"
            echo "\\! echo $t:vacuum \$(date +%s.%N) \$(cut -d' ' -f1 /proc/\$BPID/schedstat) >> $m.marks"
            echo "ANALYZE triaged.$t;"
            echo "\\! echo $t:analyze \$(date +%s.%N) \$(cut -d' ' -f1 /proc/\$BPID/schedstat) >> $m.marks"
        done <<< "$order"
        echo "\\! touch $m.stop; while [ ! -e $m ]; do sleep 0.005; done"
    } | psql "$cp" -qX -v ON_ERROR_STOP=1 >/dev/null
    echo "$side $m" >> "$work/runs"
}

for ((r = 1; r <= R; r++)); do
    pass before "$r"
    pass after "$r"
done

# per phase: CPU, wall, peak share of a core over any 100 ms (and over any
# 1 s for the whole pass); medians (min-max) over the repetitions
echo "autovacuum-like pass (VACUUM then ANALYZE of each table, autovacuum's cost delay); backend CPU ms, wall ms, peak share of a core over any 100 ms; median (min-max) of $R:"
python3 - "$work/runs" <<'PY'
import sys, collections
def peak(s, w):
    best, j = 0.0, 0
    for i in range(len(s)):
        while j < len(s) - 1 and s[j][0] - s[i][0] < w:
            j += 1
        best = max(best, (s[j][1] - s[i][1]) / 1e9 / max(w, s[j][0] - s[i][0]))
    return best
res = collections.defaultdict(list)
keys = []
for line in open(sys.argv[1]):
    side, m = line.split()
    samples = [(float(t), int(c)) for t, c in (l.split() for l in open(m))]
    marks = [l.split() for l in open(m + ".marks")]
    prev = marks[0]
    for name, t, c in marks[1:]:
        t0, t1 = float(prev[1]), float(t)
        sub = [x for x in samples if t0 - 0.005 <= x[0] <= t1 + 0.005]
        k = tuple(name.split(":"))
        if k not in keys: keys.append(k)
        res[(k, side)].append(((int(c) - int(prev[2])) / 1e6, (t1 - t0) * 1000, peak(sub, 0.1), None))
        prev = (name, t, c)
    k = ("pass", "all")
    if k not in keys: keys.append(k)
    res[(k, side)].append(((int(marks[-1][2]) - int(marks[0][2])) / 1e6,
                           (float(marks[-1][1]) - float(marks[0][1])) * 1000,
                           peak(samples, 0.1), peak(samples, 1.0)))
def med(v):
    v = sorted(v); n = len(v)
    return (v[(n - 1) // 2] + v[n // 2]) / 2
def fmt(v, d=0):
    return f"{med(v):.{d}f} ({min(v):.{d}f}-{max(v):.{d}f})"
print(f"{'':24s} {'before: CPU':>16s} {'wall':>18s} {'peak':>16s}   {'after: CPU':>16s} {'wall':>18s} {'peak':>16s}")
for k in keys:
    row = f"{' '.join(k):24s}"
    for side in ("before", "after"):
        v = res.get((k, side), [])
        if v:
            row += f" {fmt([x[0] for x in v]):>16s} {fmt([x[1] for x in v]):>18s} {fmt([x[2] for x in v], 2):>16s}  "
    print(row)
for side in ("before", "after"):
    v = res.get((("pass", "all"), side), [])
    if v:
        print(f"{side}: whole pass, peak share of a core over any 1 s {fmt([x[3] for x in v], 2)}")
PY

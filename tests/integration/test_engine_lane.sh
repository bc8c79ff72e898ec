#!/usr/bin/env bash
# test_engine_lane.sh — sql/027's batch of new alerts whose groups have open
# incidents (the latency run's split batch; the interleaved batches) does
# exactly what 025's did, now that the found incidents' end of batch is part
# of 025's statement instead of a call of _finish_counted.
#
# The same batches go, through ingest_arrays (the daemon's statement), into
# two databases with every migration: one as shipped, one whose
# _ingest_batch is 025's again (its text from its migration file). Every
# published row (in order, per batch) and every stored row with its ids
# (alerts, history, incidents, links, events with their ids, hashes and
# prev_hash chains; the sequences' last values), but the times PostgreSQL's
# now() writes, must be identical. The batches:
#   A  40 split batches of 20 new alerts (a resource's ten alerts
#      consecutive, the batches shifted by five): each batch attaches five
#      alerts to the incident the previous one opened (minor at most), 2 in
#      5 of them more severe (priority_changed), and opens two
#   B  every alert of one resource in four resolves (its incident pending
#      resolve); one incident acknowledged (the same UPDATE in both)
#   C  10 batches of new alerts on 6 old resources (pending, acknowledged or
#      plain open incidents: resolve_cancelled, priority_changed, neither)
#      next to 3 new ones
#   D  10 interleaved batches: 20 old resources each, one new alert each,
#      every group found (no incident opened)
#   E  one batch whose groups are all new (025's statement alone)
# and checks that 027's path was taken: no call of _finish_counted but for
# the resolves (B), where 025 called it once a batch of A, C and D; then
# (F) the plans of 027's statement and of _finish_counted's (both probe
# their incidents by key) in a third database. (Both databases run 027's
# _finish_counted, whose change is its plan only: test_engine_finish
# compares it with 018's.)
source "$(dirname "$0")/lib.sh"

new=$(t_db_migrated new) || exit 1
old=$(t_db_migrated old) || exit 1
sed -n '/^CREATE OR REPLACE FUNCTION triaged._ingest_batch(/,/^END \$\$;/p' \
    "$TD_SOURCE_DIR/sql/025_split.sql" > "$T_DIR/batch025.sql"
grep -q '_finish_counted(v_changes, v_now, v_actor,' "$T_DIR/batch025.sql" \
    || t_fail "025's _ingest_batch not found"
psql "$old" -qAtX -v ON_ERROR_STOP=1 -f "$T_DIR/batch025.sql" >/dev/null \
    || t_fail "cannot install 025's _ingest_batch"
export PGOPTIONS="$PGOPTIONS -c track_functions=pl"

# batch NOW STATUS ROWS: the statement of one batch, its segments the rows
# (fp, res, sev) of the query ROWS in fingerprint order, first = last =
# NOW - 0.5 s; prints its published rows
batch() {
    cat <<SQL
SELECT r.kind, r.key, r.payload FROM (
  SELECT array_agg(q.fp ORDER BY q.fp) fp, array_agg('t'::text ORDER BY q.fp) src,
         array_agg(q.res ORDER BY q.fp) res, array_agg('c-' || q.fp ORDER BY q.fp) chk,
         array_agg(NULL::text ORDER BY q.fp) dk, array_agg(NULL::bigint ORDER BY q.fp) ci,
         array_agg('s ' || q.fp ORDER BY q.fp) sm, array_agg('{"env": "t"}'::jsonb ORDER BY q.fp) lab,
         array_agg(q.sev ORDER BY q.fp) sev, array_agg('$2'::text ORDER BY q.fp) st,
         array_agg(CASE WHEN '$2' = 'resolved' THEN 0 ELSE 1 END::bigint ORDER BY q.fp) n,
         array_agg(timestamptz '$1' - interval '0.5 s' ORDER BY q.fp) t0,
         array_agg(timestamptz '$1' - interval '0.5 s' ORDER BY q.fp) t1
    FROM ($3) q) y,
  triaged.ingest_arrays(y.fp, y.src, y.res, y.chk, y.dk, y.ci, y.sm, y.lab, y.sev, y.st, y.n,
                        y.t0, y.t1, NULL, NULL,
                        '{"now": "$1", "actor": "t", "reopen_window_ms": 1800000}'::jsonb) r;
SQL
}
sev="(ARRAY['critical', 'major', 'minor', 'warning', 'info'])"
t0=$(date -u -d '2024-03-01T10:00:00Z' +%s)
at() { date -u -d "@$((t0 + $1))" +%Y-%m-%dT%H:%M:%SZ; }
{
    echo "\\pset format unaligned"
    echo "\\pset tuples_only on"
    # A: split batches (key k + 5: a batch begins with the last five alerts
    # of the resource the previous batch opened)
    for ((b = 0; b < 40; b++)); do
        batch "$(at $b)" firing "SELECT 'f' || lpad(k::text, 5, '0') AS fp,
            'r' || lpad((k / 10)::text, 3, '0') AS res,
            $sev[CASE WHEN k % 10 < 5 THEN 3 + k % 3 ELSE 1 + (k / 10) % 5 END] AS sev
            FROM generate_series($((b * 20 + 5)), $((b * 20 + 24))) k"
    done
    # B: resource r005's ten alerts resolve, in four batches; r009's incident
    # acknowledged
    for ((b = 0; b < 4; b++)); do
        batch "$(at $((100 + b)))" resolved "SELECT 'f' || lpad(k::text, 5, '0') AS fp,
            'r005' AS res, $sev[1 + (k * 7 + k / 10) % 5] AS sev
            FROM generate_series($((50 + b * 3)), least($((52 + b * 3)), 59)) k"
    done
    echo "UPDATE triaged.incident SET status = 'acknowledged', acknowledged_at = '$(at 104)'
           WHERE resource = 'r009' AND status = 'new' RETURNING 'ack', number;"
    # C: new alerts on two old resources (r005 pending, r009 acknowledged,
    # the others open) and three new resources
    for ((b = 0; b < 10; b++)); do
        batch "$(at $((200 + b)))" firing "SELECT 'g' || lpad(k::text, 5, '0') AS fp,
            'r' || lpad(((k / 3) % 10 + 2 * (k % 3) + 1)::text, 3, '0') AS res,
            $sev[1 + (k * 3) % 5] AS sev
            FROM generate_series($((b * 6)), $((b * 6 + 5))) k
          UNION ALL
          SELECT 'h' || lpad(k::text, 5, '0'), 'n' || lpad((k / 4)::text, 3, '0'),
            $sev[1 + (k * 11) % 5]
            FROM generate_series($((b * 12)), $((b * 12 + 11))) k"
    done
    # D: interleaved: one new alert on each of 20 old resources a batch
    for ((b = 0; b < 10; b++)); do
        batch "$(at $((300 + b)))" firing "SELECT 'i' || lpad(r::text, 3, '0') || '-' || $b AS fp,
            'r' || lpad(r::text, 3, '0') AS res, $sev[1 + (r + $b) % 5] AS sev
            FROM generate_series($((b % 2)), 79, 4) r"
    done
    # E: new groups only
    batch "$(at 400)" firing "SELECT 'j' || lpad(k::text, 5, '0') AS fp,
        'm' || lpad((k / 5)::text, 3, '0') AS res, $sev[1 + k % 5] AS sev
        FROM generate_series(0, 19) k"
} > "$T_DIR/batches.sql"

for db in new old; do
    pg=$new
    [ $db = old ] && pg=$old
    psql "$pg" -qX -v ON_ERROR_STOP=1 -f "$T_DIR/batches.sql" > "$T_DIR/out.$db" 2> "$T_DIR/err" \
        || t_fail "the batches ($db): $(cat "$T_DIR/err")"
done
diff "$T_DIR/out.old" "$T_DIR/out.new" > "$T_DIR/diff" \
    || t_fail "published rows differ (< 025's _ingest_batch, > 027's):
$(head -40 "$T_DIR/diff")"

sdump() { # DB: every stored row, ids included, in id order (now()'s times left out)
    psql "$1" -qAtX -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'alert', to_jsonb(a) - 'created_at' - 'updated_at' FROM triaged.alert a ORDER BY a.id;
SELECT 'history', to_jsonb(h) - 'recorded_at' FROM triaged.alert_history h ORDER BY h.id;
SELECT 'incident', to_jsonb(i) - 'created_at' - 'updated_at' FROM triaged.incident i ORDER BY i.id;
SELECT 'link', to_jsonb(l) - 'attached_at' FROM triaged.incident_alert l ORDER BY l.incident_id, l.alert_id;
SELECT 'event', e.id, e.incident_id, e.at, e.actor, e.kind, e.detail, encode(e.prev_hash, 'hex'),
       encode(e.hash, 'hex') FROM triaged.incident_event e ORDER BY e.id;
SELECT 'seq', (SELECT last_value FROM triaged.incident_id_seq),
       (SELECT last_value FROM triaged.incident_number_seq),
       (SELECT last_value FROM triaged.incident_event_id_seq),
       (SELECT last_value FROM triaged.alert_id_seq);
SELECT 'audit', count(*) FROM triaged.audit_verify();
SELECT 'counts', count(*) FROM triaged.incident_counts_verify();
SQL
}
sdump "$old" > "$T_DIR/state.old"
sdump "$new" > "$T_DIR/state.new"
diff "$T_DIR/state.old" "$T_DIR/state.new" > "$T_DIR/diff" \
    || t_fail "stored state differs (< 025's _ingest_batch, > 027's):
$(head -40 "$T_DIR/diff")"

q() { psql "$1" -qAtX -c "$2"; }
fn() { q "$1" "SELECT coalesce((SELECT calls FROM pg_stat_user_functions WHERE funcname = '$2'), 0)"; }
want() { # WHAT GOT WANT
    [ "$2" = "$3" ] || t_fail "$1: got '$2', want '$3'"
    t_log "ok: $1 = $2"
}
want "published rows: alerts, incidents opened, updated (027)" \
    "$(grep -c '^alert.firing|' "$T_DIR/out.new") $(grep -c '^incident.opened|' "$T_DIR/out.new") $(grep -c '^incident.updated|' "$T_DIR/out.new")" \
    "1200 115 303"
want "events by kind (027)" \
    "$(q "$new" "SELECT string_agg(kind || ':' || n, ' ' ORDER BY kind) FROM (SELECT kind, count(*) n FROM triaged.incident_event GROUP BY kind) x")" \
    "alerts_attached:299 alerts_resolved:4 opened:115 priority_changed:61 resolve_cancelled:1 resolve_pending:1"
want "r005's incident: pending resolve cancelled; r009's acknowledged, attached to" \
    "$(q "$new" "SELECT string_agg(i.resource || ' ' || i.status || ' ' || coalesce(i.resolve_pending_since::text, '-') || ' ' || i.alert_count || '/' || i.firing_count, ', ' ORDER BY i.resource) FROM triaged.incident i WHERE i.resource IN ('r005', 'r009')")" \
    "r005 new - 21/11, r009 acknowledged - 21/21"
want "the end of batch called for the resolves only (027), once a batch with groups found (025)" \
    "$(fn "$new" _finish_counted) $(fn "$old" _finish_counted)" "4 63"
want "audit chains intact, counts right (027)" \
    "$(q "$new" "SELECT (SELECT count(*) FROM triaged.audit_verify()) || ' ' || (SELECT count(*) FROM triaged.incident_counts_verify())")" "0 0"
t_log "$(wc -l < "$T_DIR/out.new") published rows and $(wc -l < "$T_DIR/state.new") stored rows identical to 025's _ingest_batch"

# F: the plan of 027's statement (generic, made again after an ANALYZE of
# incident at ~200 incidents, in a fresh database), with auto_explain, on a
# split batch: the incident found
# is probed by its key (a probe of incident_pkey per incident, one row
# each), no merge join walking the index from its first entry, no Seq Scan;
# so is the incident of a resolve in _finish_counted's statement (the last
# incident: a walk from the first entry would read them all).
# (027's first text joined incident to the found groups with a merge join,
# its index scan read every incident up to the one found: 226 rows at 20,000
# alerts, growing with the table; found by its plan, not by the benchmark;
# 020's _finish_counted did the same: 242 rows.)
{
    echo "\\pset format unaligned"
    echo "\\pset tuples_only on"
    batch "$(at 500)" firing "SELECT 'q' || lpad(k::text, 5, '0') AS fp,
        'q' || lpad((k / 10)::text, 3, '0') AS res, 'major' AS sev FROM generate_series(0, 14) k"
    batch "$(at 501)" firing "SELECT 'q' || lpad(k::text, 5, '0') AS fp,
        'q' || lpad((k / 10)::text, 3, '0') AS res, 'major' AS sev FROM generate_series(15, 34) k"
    batch "$(at 502)" firing "SELECT 'p' || lpad(k::text, 5, '0') AS fp,
        'p' || lpad((k / 10)::text, 3, '0') AS res, 'major' AS sev FROM generate_series(0, 1999) k"
    echo "ANALYZE triaged.incident;"   # (as autovacuum would: the plans made again)
    echo "LOAD 'auto_explain';"
    echo "SET auto_explain.log_min_duration = 0;"
    echo "SET auto_explain.log_nested_statements = on;"
    echo "SET auto_explain.log_analyze = on;"
    echo "SET client_min_messages = log;"
    batch "$(at 503)" firing "SELECT 'q' || lpad(k::text, 5, '0') AS fp,
        'q' || lpad((k / 10)::text, 3, '0') AS res, 'critical' AS sev FROM generate_series(35, 54) k"
    batch "$(at 504)" resolved "SELECT 'p' || lpad(k::text, 5, '0') AS fp,
        'p' || lpad((k / 10)::text, 3, '0') AS res, 'major' AS sev FROM generate_series(1990, 1999) k"
} > "$T_DIR/plans.sql"
pl=$(t_db_migrated plan) || exit 1
PGOPTIONS= psql "$pl" -qX -v ON_ERROR_STOP=1 -f "$T_DIR/plans.sql" > "$T_DIR/plans.out" 2> "$T_DIR/plans.log" \
    || t_fail "the plan's batches: $(grep -m3 ERROR "$T_DIR/plans.log")"
python3 - "$T_DIR/plans.log" <<'PY' || t_fail "027's statement's plan: $(cat "$T_DIR/plans.bad")"
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r'^(?:psql:\S+ )?LOG:  duration: [0-9.]+ ms  plan:\n', text, flags=re.M)[1:]
mine = [b for b in blocks if 'fupd AS (' in b]
fin = [b for b in blocks if '-- the changes, and the count deltas and the last resolve times' in b]
bad = []
if len(mine) != 1:
    bad.append(f'027\'s statement seen {len(mine)} times, not once')
if len(fin) != 1:
    bad.append(f'_finish_counted\'s statement seen {len(fin)} times, not once')
for b in fin:
    root = re.search(r'^\S.*  \(cost=', b, re.M)
    plan = b[root.start():] if root else ''
    probes = re.findall(r'Index Scan using incident_pkey on incident \S+ .*rows=(\d+) loops=(\d+)', plan)
    if not probes:
        bad.append('_finish_counted: no probe of incident_pkey')
    wrong = [f'_finish_counted: incident_pkey: {r} rows a loop' for r, l in probes if int(r) > 1]
    wrong += ['_finish_counted: Seq Scan'] if 'Seq Scan' in plan else []
    if wrong:
        bad += wrong + [plan]
for b in mine:
    root = re.search(r'^\S.*  \(cost=', b, re.M)
    plan = b[root.start():] if root else ''
    bad += [w for w in ('Seq Scan', 'Merge Join') if w in plan]
    probes = re.findall(r'Index Scan using incident_pkey on incident \S+ .*rows=(\d+) loops=(\d+)', plan)
    if not probes:
        bad.append('no probe of incident_pkey')
    bad += [f'incident_pkey: {r} rows a loop' for r, l in probes if int(r) > 1]
    bad += [f'Rows Removed by Filter: {n}' for n in re.findall(r'Rows Removed by Filter: (\d+)', plan)
            if int(n) >= 50]
    if bad:
        bad.append(plan)
open(sys.argv[1].replace('plans.log', 'plans.bad'), 'w').write('\n'.join(bad))
sys.exit(1 if bad else 0)
PY
t_log "ok: 027's statement and _finish_counted probe their incidents by key (a split batch at $(q "$pl" "SELECT count(*) FROM triaged.incident") incidents)"
echo "test_engine_lane: passed"

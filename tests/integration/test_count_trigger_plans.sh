#!/usr/bin/env bash
# test_count_trigger_plans.sh — sql/028: the count triggers (013/015's
# alert_status_counts, incident_alert_counts_insert, _recount behind the
# delete and move triggers) probe their rows by key with plans made on a
# tiny database, and keep the exact counts of changes made outside the
# engine's batch.
#
# One psql session per database (one plan cache, as a daemon connection):
# 7 rounds of each change on a tiny database (30 alerts in 3 incidents: an
# alert resolved and fired again, 10 links inserted, one moved and moved
# back, the 10 deleted), then 3,000 alerts in 300 incidents, and the changes again
# with auto_explain (log_analyze, nested statements), whose plans come back
# to psql: 4 alerts resolved, 10 links inserted (4 of their alerts
# resolved), an alert of two incidents resolved, 5 links deleted, one moved,
# _recount of an incident whose counts were wrong and of one whose counts
# were right. Checked: in every plan of that part (the test's own
# statements and every statement the triggers run), no Seq Scan, no scan of
# alert_status_idx, every "Rows Removed by Filter" and every scan of
# incident, alert or incident_alert under 50 rows a loop (a whole read
# would be 300 or 3,000); the triggers' 7 statements each seen, each on the
# index or row versions it must use. Then the exact counts of the incidents
# touched (with those of a merge and of a resolve through the jsonb ingest
# path), an untouched incident's updated_at, incident_counts_verify() empty.
# Twice: with plpgsql's default plan cache mode and with
# force_generic_plan. (Without sql/028 the plan checks fail: 013's status
# trigger reads incident whole (Seq Scan), _recount hashes incident_pkey
# whole and reads every firing alert by alert_status_idx.)
source "$(dirname "$0")/lib.sh"

# new firing alerts k = $1 .. $2 (10 a resource: r-0000, r-0001, ...)
batch() { cat <<SQL
SELECT count(*) FROM (SELECT array_agg('f' || lpad(k::text, 15, '0') ORDER BY k) AS fp,
  array_agg('src'::text) AS src, array_agg('r-' || lpad((k / 10)::text, 4, '0') ORDER BY k) AS res,
  array_agg('check' || (k % 10) ORDER BY k) AS chk, array_agg(NULL::text) AS dk,
  array_agg(NULL::bigint) AS ci, array_agg('s'::text) AS sum, array_agg('{}'::jsonb) AS lab,
  array_agg('major'::text) AS sev, array_agg('firing'::text) AS st, array_agg(1::bigint) AS n,
  array_agg(timestamptz '2026-11-26T20:00:00Z') AS t0, array_agg(timestamptz '2026-11-26T20:00:00Z') AS t1
  FROM generate_series($1, $2) k) x,
 LATERAL triaged.ingest_arrays(fp, src, res, chk, dk, ci, sum, lab, sev, st, n, t0, t1, NULL, NULL,
                               '{"actor":"test","now":"2026-11-26T20:00:00Z"}') r;
SQL
}
# SQL of the resource's incident id, of the ids of its alerts $2 .. $3 (in
# id order, from 1) as an array literal (psql's \gset first)
inc() { echo "(SELECT i.id FROM triaged.incident i WHERE i.resource = '$1' ORDER BY i.id LIMIT 1)"; }
ids() { echo "SELECT '{' || string_agg(a.id::text, ',' ORDER BY a.id) || '}' AS $4 FROM (SELECT a.id FROM triaged.alert a WHERE a.resource = '$1' ORDER BY a.id OFFSET $(($2 - 1)) LIMIT $(($3 - $2 + 1))) a \\gset"; }
incid() { echo "SELECT $(inc "$1") AS $2 \\gset"; }

session() {
    echo "SET plan_cache_mode = $1;"
    batch 0 29
    incid r-0000 i0; incid r-0001 i1; incid r-0002 i2
    ids r-0000 1 1 a0
    local j
    for j in 1 2 3 4 5 6 7; do
        cat <<SQL
UPDATE triaged.alert SET status = 'resolved', resolved_at = '2026-11-26T21:00:00Z' WHERE id = ANY (:'a0');
UPDATE triaged.alert SET status = 'firing', resolved_at = NULL WHERE id = ANY (:'a0');
INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
SELECT :i1, ia.alert_id, 'symptom' FROM triaged.incident_alert ia WHERE ia.incident_id = :i0;
UPDATE triaged.incident_alert SET incident_id = :i2 WHERE incident_id = :i1 AND alert_id = ANY (:'a0');
UPDATE triaged.incident_alert SET incident_id = :i1 WHERE incident_id = :i2 AND alert_id = ANY (:'a0');
DELETE FROM triaged.incident_alert WHERE incident_id = :i1 AND role = 'symptom';
SQL
    done
    batch 1000 3999
    for r in 0100 0101 0102 0103 0104 0105; do incid "r-$r" "i$r"; done
    ids r-0100 1 4 a100
    ids r-0101 1 4 a101
    ids r-0101 5 5 b101
    ids r-0101 4 8 c101
    ids r-0101 9 9 d101
    cat <<SQL
UPDATE triaged.incident SET alert_count = 0, firing_count = 0 WHERE id = :i0104;
SELECT updated_at AS u0105 FROM triaged.incident WHERE id = :i0105 \\gset
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET client_min_messages = log;
\\warn ==explained
-- 4 alerts of r-0100 resolved (one statement, 4 trigger calls)
UPDATE triaged.alert SET status = 'resolved', resolved_at = '2026-11-26T21:00:00Z' WHERE id = ANY (:'a100');
-- r-0101's first 4 resolved, then its 10 links also to r-0102's incident
UPDATE triaged.alert SET status = 'resolved', resolved_at = '2026-11-26T21:00:00Z' WHERE id = ANY (:'a101');
INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
SELECT :i0102, ia.alert_id, 'symptom' FROM triaged.incident_alert ia WHERE ia.incident_id = :i0101;
-- r-0101's 5th, linked to two incidents, resolved
UPDATE triaged.alert SET status = 'resolved', resolved_at = '2026-11-26T21:00:00Z' WHERE id = ANY (:'b101');
-- r-0102's links to r-0101's 4th .. 8th deleted (2 resolved, 3 firing)
DELETE FROM triaged.incident_alert WHERE incident_id = :i0102 AND alert_id = ANY (:'c101');
-- r-0102's link to r-0101's 9th (firing) moved to r-0103's incident
UPDATE triaged.incident_alert SET incident_id = :i0103 WHERE incident_id = :i0102 AND alert_id = ANY (:'d101');
-- counted again: r-0104 (wrong counts), r-0105 (right ones: not updated)
SELECT triaged._recount(ARRAY[:i0104, :i0105]::bigint[]);
\\warn ==done
SET client_min_messages = notice;
SET auto_explain.log_min_duration = -1;
SELECT (updated_at = :'u0105') AS untouched FROM triaged.incident WHERE id = :i0105;
SQL
}

# every plan of the explained part of $1 (psql's stderr)
check_plans() {
    python3 - "$1" <<'PY' || return 1
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r'^LOG:  duration: [0-9.]+ ms  plan:\n', text, flags=re.M)[1:]
mine = {
    'status look-up': ('WHERE ia.alert_id = NEW.id', ['incident_alert_alert_idx', 'incident_pkey']),
    'status update': ('SET firing_count = i.firing_count + CASE WHEN NEW.status', ['Tid Scan on incident']),
    'insert: alerts locked': ('SELECT DISTINCT n.alert_id FROM added n', ['alert_pkey']),
    'insert: incidents locked': ('SELECT DISTINCT n.incident_id FROM added n', ['incident_pkey']),
    'insert: update': ('FROM unnest(v_tids, v_n, v_f) d(tid, n, f)', ['Tid Scan on incident']),
    'recount: incidents locked': ('WHERE i.id = ANY (p_ids)', ['incident_pkey']),
    'recount: update': ('SET alert_count = c.n, firing_count = c.f',
                        ['Tid Scan on incident', 'incident_alert_pkey', 'alert_pkey']),
}
seen, bad = {}, []
scan = re.compile(r'(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Tid Scan)(?: Backward)?'
                  r'(?: using \S+)? on (incident|alert|incident_alert)\b.*actual time=\S+ rows=(\d+) loops')
for b in blocks:
    root = re.search(r'^\S.*  \(cost=', b, re.M)   # the plan's first line
    qtext, plan = (b[:root.start()], b[root.start():]) if root else (b, '')
    wrong = [s for s in ('Seq Scan', 'alert_status_idx') if s in plan]
    wrong += [f'Rows Removed by Filter: {n}'
              for n in re.findall(r'Rows Removed by Filter: (\d+)', plan) if int(n) >= 50]
    wrong += [f'{m.group(1)} on {m.group(2)}: {m.group(3)} rows'
              for m in scan.finditer(plan) if int(m.group(3)) >= 50]
    for name, (needle, want) in mine.items():
        if needle in qtext:
            seen[name] = seen.get(name, 0) + 1
            wrong += [f'{name}: no {w}' for w in want if w not in plan]
    if wrong:
        bad.append(', '.join(wrong) + '\n' + qtext.strip()[:300] + '\n' + plan)
missing = [n for n in mine if not seen.get(n)]
if missing:
    bad.append('statements not seen: ' + ', '.join(missing))
print('\n'.join(bad))
sys.exit(1 if bad else 0)
PY
}

scenario() {
    local mode=$1 pg
    # no autoanalyze may replace the plans during the run
    pg=$(t_db_migrated "$mode" alert alert_history incident incident_alert incident_event) || exit 1
    session "$mode" | PGOPTIONS= psql "$pg" -qAtX -v ON_ERROR_STOP=1 \
        > "$T_DIR/$mode.out" 2> "$T_DIR/$mode.log" \
        || t_fail "$mode: session failed: $(grep -m3 ERROR "$T_DIR/$mode.log")"
    T_PG=$pg
    [ "$(tail -1 "$T_DIR/$mode.out")" = t ] || t_fail "$mode: _recount updated an incident whose counts were right"
    sed -n '/^==explained$/,/^==done$/p' "$T_DIR/$mode.log" > "$T_DIR/$mode.plans"
    local why
    why=$(check_plans "$T_DIR/$mode.plans") || t_fail "$mode: plans: $why"
    t_log "ok: $mode: every plan probes by key (the triggers' 7 statements seen)"

    # a merge (r-0106 into r-0107: both triggers) and a resolve through the
    # jsonb path (r-0108's first alert), outside the plans checked
    t_sql "SELECT triaged._merge($(inc r-0106), $(inc r-0107), '2026-11-26T21:30:00Z', 'test')" > /dev/null
    t_sql "SELECT count(*) FROM triaged.ingest(jsonb_build_array(jsonb_build_object(
             'fp', (SELECT a.fingerprint FROM triaged.alert a WHERE a.resource = 'r-0108' ORDER BY a.id LIMIT 1),
             'source', 'src', 'resource', 'r-0108', 'check', 'check0', 'dedup_key', NULL, 'ci_id', NULL,
             'summary', 's', 'labels', '{}'::jsonb, 'severity', 'major', 'status', 'resolved', 'n', 1,
             'first', '2026-11-26T21:40:00Z', 'last', '2026-11-26T21:40:00Z', 'hint', 'change')),
             '[]', '{\"actor\":\"test\",\"now\":\"2026-11-26T21:40:00Z\"}')" > /dev/null
    t_expect_sql "SELECT string_agg(i.resource || ' ' || i.alert_count || '/' || i.firing_count, ', ' ORDER BY i.resource, i.id)
                    FROM triaged.incident i
                   WHERE i.resource IN ('r-0000', 'r-0001', 'r-0002', 'r-0100', 'r-0101', 'r-0102', 'r-0103', 'r-0104',
                                        'r-0105', 'r-0106', 'r-0107', 'r-0108', 'r-0109')" \
        "r-0000 10/10, r-0001 10/10, r-0002 10/10, r-0100 10/6, r-0101 10/5, r-0102 14/11, r-0103 11/11, r-0104 10/10, r-0105 10/10, r-0106 0/0, r-0107 20/20, r-0108 10/9, r-0109 10/10"
    t_expect_sql "SELECT count(*) FROM triaged.incident_counts_verify()" "0"
    t_log "ok: $mode: exact counts"
}

scenario auto
scenario force_generic_plan
t_log "PASS"

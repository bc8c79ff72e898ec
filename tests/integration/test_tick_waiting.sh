#!/usr/bin/env bash
# test_tick_waiting.sh — sql/028: the tick's heartbeat and maintenance
# look-ups read what is due, not everything that waits, with plans made on
# an empty database, and find exactly what 024's look-ups found.
#
# One psql session (one plan cache, as the daemon's tick connection): 7
# ticks on the empty database, 7 that each find a little work on a tiny one
# (a heartbeat due, a suppressed firing alert of a CI without maintenance:
# the statements skipped while there is nothing to do make their plans
# there), then 2,000 heartbeats waiting and 3 due; 1,000 firing alerts
# suppressed by the maintenance of their 20 CIs (still on), 500 resolved
# ones still marked suppressed, 6 firing suppressed alerts of 2 CIs whose
# maintenance is over, 2 of no CI; and one tick with auto_explain
# (log_analyze, nested statements). Checked: the heartbeats and alerts the
# tick took are those 024's predicates select (evaluated just before it:
# missing_since IS NULL AND last_at + timeout <= now in UTC; suppressed,
# firing, no CI or maintenance_at NULL), each alert taken is linked to an
# open incident, the counts agree with a recount; in the plans of the
# look-ups: heartbeat_due_idx / alert_suppressed_ci_idx, no Seq Scan, no
# scan node or filter past 50 rows (a whole read would pass 1,000). Also:
# _heartbeat_due equals timestamptz + interval computed in UTC (month, day,
# time parts; leap days; any session time zone). Twice: plpgsql's default
# plan cache mode and force_generic_plan. (Without sql/028 the plan checks
# fail: the look-ups read 2,003 heartbeats and 1,508 suppressed alerts.)
source "$(dirname "$0")/lib.sh"

NOW='2026-11-26T22:10:00Z'
TICK="SELECT kind, key FROM triaged.tick('{\"now\":\"$NOW\",\"actor\":\"triaged\",\"flap_threshold\":5,\"flap_window_ms\":600000,\"resolve_grace_ms\":300000,\"close_after_ms\":86400000,\"correlation_window_ms\":600000,\"priority_matrix\":\"\",\"impact_many_services\":3}')"

# suppressed alerts by plain INSERT: $1 = first number, $2 = count, $3 =
# status, $4 = SQL of the CI's name (g is the row's number) or NULL, $5 =
# SQL of the resource
alerts() { cat <<SQL
INSERT INTO triaged.alert (fingerprint, source, resource, check_name, severity, status, summary,
                           ci_id, occurrences, first_seen, last_seen, fired_at, resolved_at,
                           state_changed_at, suppressed)
SELECT 's' || lpad(g::text, 15, '0'), 'test', $5, 'check' || g, 'major', '$3', 's',
       (SELECT c.id FROM triaged.ci c WHERE c.name = $4), 1,
       '2026-11-26T21:00:00Z', '2026-11-26T21:00:00Z', '2026-11-26T21:00:00Z',
       CASE WHEN '$3' = 'resolved' THEN timestamptz '2026-11-26T21:30:00Z' END,
       '2026-11-26T21:00:00Z', true
  FROM generate_series($1, $1 + $2 - 1) g;
SQL
}

session() {
    echo "SET plan_cache_mode = $1;"
    local j
    for j in 1 2 3 4 5 6 7; do echo "$TICK;"; done
    echo "INSERT INTO triaged.ci (name) VALUES ('ci-tiny');"
    for j in 1 2 3 4 5 6 7; do
        echo "INSERT INTO triaged.heartbeat (source, resource, timeout, last_at) VALUES ('hb', 'tiny-$j', '5 min', '2026-11-26T22:00:00Z');"
        alerts "$j" 1 firing "'ci-tiny'" "'tiny'"
        echo "$TICK;"
    done
    cat <<SQL
INSERT INTO triaged.ci (name) SELECT 'ci-' || g FROM generate_series(1, 22) g;
INSERT INTO triaged.maintenance (ci_id, during, reason)
SELECT c.id, CASE WHEN c.name IN ('ci-21', 'ci-22')
                  THEN tstzrange('2026-11-26T20:00:00Z', '2026-11-26T22:00:00Z')
                  ELSE tstzrange('2026-11-26T20:00:00Z', '2026-11-27T20:00:00Z') END, 'test'
  FROM triaged.ci c WHERE c.name <> 'ci-tiny';
INSERT INTO triaged.heartbeat (source, resource, timeout, last_at)
SELECT 'hb', 'host-' || g, interval '5 min', timestamptz '$NOW' - (g % 200) * interval '1 second'
  FROM generate_series(1, 2000) g;
INSERT INTO triaged.heartbeat (source, resource, timeout, last_at)
VALUES ('hb', 'due-1', '5 min', '2026-11-26T22:00:00Z'), ('hb', 'due-2', '1 day', '2026-11-25T22:00:00Z'),
       ('hb', 'due-3', '1 mon', '2026-10-26T22:10:00Z'), ('hb', 'ok-1', '1 mon', '2026-10-26T22:10:01Z');
$(alerts 100 1000 firing "'ci-' || (g % 20 + 1)" "'ci-' || (g % 20 + 1)")
$(alerts 2000 500 resolved "'ci-' || (g % 20 + 1)" "'ci-' || (g % 20 + 1)")
$(alerts 3000 6 firing "'ci-' || (21 + g % 2)" "'ci-' || (21 + g % 2)")
$(alerts 3100 1 resolved "'ci-21'" "'ci-21'")
$(alerts 3200 2 firing NULL "'nc-1'")
SET TimeZone = 'UTC';
SELECT string_agg(h.resource, ',' ORDER BY h.resource) AS want_hb FROM triaged.heartbeat h
 WHERE h.missing_since IS NULL AND h.last_at + h.timeout <= '$NOW' \\gset
RESET TimeZone;
SELECT string_agg(a.fingerprint, ',' ORDER BY a.id) AS want_alerts FROM triaged.alert a
 WHERE a.suppressed AND a.status = 'firing'
   AND (a.ci_id IS NULL OR triaged.maintenance_at(a.ci_id, '$NOW') IS NULL) \\gset
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET client_min_messages = log;
\\warn ==tick
$TICK;
\\warn ==done
SET client_min_messages = notice;
SET auto_explain.log_min_duration = -1;
SELECT 'hb|' || (:'want_hb' = (SELECT string_agg(h.resource, ',' ORDER BY h.resource) FROM triaged.heartbeat h
                                WHERE h.missing_since IS NOT NULL AND h.resource NOT LIKE 'tiny-%')) || '|' || :'want_hb';
SELECT 'alerts|' || (:'want_alerts' = (SELECT string_agg(a.fingerprint, ',' ORDER BY a.id) FROM triaged.alert a
                                        WHERE NOT a.suppressed AND a.fingerprint >= 's000000000000100')) || '|' || :'want_alerts';
SQL
}

check_plans() {
    python3 - "$1" <<'PY' || return 1
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r'^LOG:  duration: [0-9.]+ ms  plan:\n', text, flags=re.M)[1:]
mine = {
    'heartbeat look-up': ('FROM (SELECT h.ctid FROM triaged.heartbeat h', 'heartbeat_due_idx'),
    'heartbeat update': ('UPDATE triaged.heartbeat h SET missing_since', 'Tid Scan on heartbeat'),
    'suppressed look-up': ('WITH RECURSIVE c(ci)', 'alert_suppressed_ci_idx'),
    'suppressed look-up (no CI)': ('AND a.ci_id IS NULL', 'alert_suppressed_ci_idx'),
    'suppressed update': ('UPDATE triaged.alert SET suppressed = false, updated_at = now() WHERE ctid',
                          'Tid Scan on alert'),
}
scan = re.compile(r'(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan|Tid Scan)(?: Backward)?'
                  r'(?: using \S+)? on (heartbeat|alert)\b.*actual time=\S+ rows=(\d+) loops')
seen, bad = {}, []
for b in blocks:
    root = re.search(r'^\S.*  \(cost=', b, re.M)
    qtext, plan = (b[:root.start()], b[root.start():]) if root else (b, '')
    for name, (needle, want) in mine.items():
        if needle not in qtext:
            continue
        seen[name] = seen.get(name, 0) + 1
        wrong = [f'no {want}'] if want not in plan else []
        wrong += [s for s in ('Seq Scan', 'alert_status_idx', 'alert_suppressed_idx ') if s in plan]
        wrong += [f'Rows Removed by Filter: {n}'
                  for n in re.findall(r'Rows Removed by Filter: (\d+)', plan) if int(n) >= 50]
        wrong += [f'{m.group(1)} on {m.group(2)}: {m.group(3)} rows'
                  for m in scan.finditer(plan) if int(m.group(3)) >= 50]
        if wrong:
            bad.append(f'{name}: ' + ', '.join(wrong) + '\n' + plan)
missing = [n for n in mine if seen.get(n) != 1]
if missing:
    bad.append('statements not seen once: ' + ', '.join(f'{n} ({seen.get(n, 0)})' for n in missing))
print('\n'.join(bad))
sys.exit(1 if bad else 0)
PY
}

scenario() {
    local mode=$1 pg
    # no autoanalyze may replace the plans during the run
    pg=$(t_db_migrated "$mode" alert alert_history incident incident_alert incident_event \
         heartbeat maintenance ci) || exit 1
    session "$mode" | PGOPTIONS= psql "$pg" -qAtX -v ON_ERROR_STOP=1 \
        > "$T_DIR/$mode.out" 2> "$T_DIR/$mode.log" \
        || t_fail "$mode: session failed: $(grep -m3 ERROR "$T_DIR/$mode.log")"
    T_PG=$pg
    local got
    got=$(grep '^hb|' "$T_DIR/$mode.out")
    [ "$got" = "hb|true|due-1,due-2,due-3" ] || t_fail "$mode: heartbeats taken: [$got]"
    got=$(grep '^alerts|' "$T_DIR/$mode.out" | cut -d'|' -f1-2)
    [ "$got" = "alerts|true" ] || t_fail "$mode: alerts taken: $(grep '^alerts|' "$T_DIR/$mode.out")"
    t_expect_sql "SELECT count(*) FROM triaged.alert a WHERE NOT a.suppressed AND a.fingerprint >= 's000000000000100'" "8"
    t_expect_sql "SELECT count(*) FROM triaged.alert a WHERE a.fingerprint >= 's000000000000100' AND NOT a.suppressed
                     AND NOT EXISTS (SELECT 1 FROM triaged.incident_alert ia JOIN triaged.incident i ON i.id = ia.incident_id
                                      WHERE ia.alert_id = a.id AND i.status = 'new')" "0"
    t_expect_sql "SELECT count(*) FROM triaged.alert a WHERE a.suppressed" "1501"
    t_expect_sql "SELECT count(*) FROM triaged.incident_counts_verify()" "0"
    sed -n '/^==tick$/,/^==done$/p' "$T_DIR/$mode.log" > "$T_DIR/$mode.plans"
    local why
    why=$(check_plans "$T_DIR/$mode.plans") || t_fail "$mode: plans: $why"
    t_log "ok: $mode: the look-ups read what is due only, and took what 024's took"
}

scenario auto
scenario force_generic_plan

# _heartbeat_due is last_at + timeout as the tick (TimeZone UTC) adds them,
# in any session time zone
t_expect_sql "SET TimeZone = 'UTC';
  CREATE TEMP TABLE x AS
  SELECT t, i, t + i AS s
    FROM unnest(ARRAY['2024-01-31T10:00:00Z', '2024-02-28T23:30:00Z', '2026-03-29T00:59:59Z',
                      '2026-10-25T01:30:00+02', '2026-11-26T22:10:00Z']::timestamptz[]) t,
         unnest(ARRAY['500 ms', '5 min', '1 day', '36 hours', '1 mon', '1 mon 1 day 00:00:01',
                      '1 year 2 mons 3 days 04:05:06.789', '999 years']::interval[]) i;
  SET TimeZone = 'Europe/Paris';
  SELECT count(*) FILTER (WHERE triaged._heartbeat_due(t, i) IS DISTINCT FROM s), count(*),
         count(*) FILTER (WHERE t + i <> s) > 0 FROM x" "0|40|t"
t_expect_sql "SELECT triaged._heartbeat_due('2026-11-26T22:10:00Z', '2000000000 days')" "infinity"
t_log "PASS"

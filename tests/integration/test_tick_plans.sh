#!/usr/bin/env bash
# test_tick_plans.sh — sql/024: the tick's statements probe their indexes
# with plans made on an empty database, and do exactly their work.
#
# One psql session per database (one plan cache, as the daemon's tick
# connection): 7 ticks on the empty database, then 7 ticks that each find a
# little work on a tiny one (200 alerts in 20 incidents: one incident to
# resolve, one to close with a suppressed firing alert, a flapping alert, a
# missing heartbeat; the statements skipped while there is nothing to do
# make their plans there), then 3,000 alerts in 300 incidents, a few of
# each kind the tick acts on or must leave alone, and one tick with
# auto_explain (log_analyze, nested statements) whose plans come back to
# psql. Checked: the tick's exact results (rows, stats, stored state, the
# timeline's hash chain), and in the plans of tick's and _tick_core's own
# statements (the 14 of them, each found by its text): no Seq Scan, no
# scan of incident_outage_idx or alert_status_idx, every "Rows Removed by
# Filter" under 50 (a whole scan would remove hundreds or thousands), each
# look-up on its partial index and each UPDATE a TID scan. Twice: with
# plpgsql's default plan cache mode (the daemon's: generic plans after 5
# calls) and with force_generic_plan (every plan made at its first call).
# Last, SKIP LOCKED as before: rows another session holds are skipped
# without waiting, and done by the next tick once free.
source "$(dirname "$0")/lib.sh"

NOW='2026-11-26T22:10:00Z'
TICK="SELECT kind, key, payload FROM triaged.tick('{\"now\":\"$NOW\",\"actor\":\"triaged\",\"flap_threshold\":5,\"flap_window_ms\":600000,\"resolve_grace_ms\":300000,\"close_after_ms\":86400000,\"correlation_window_ms\":600000,\"priority_matrix\":\"\",\"impact_many_services\":3}')"

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
# SQL of the resource's incident id, and of its alerts' ids
inc() { echo "(SELECT i.id FROM triaged.incident i WHERE i.resource = '$1' ORDER BY i.id LIMIT 1)"; }
alerts() { echo "(SELECT a.id FROM triaged.alert a WHERE a.resource = '$1')"; }

# the session's input: $1 = plan_cache_mode
session() {
    echo "SET plan_cache_mode = $1;"
    for _ in 1 2 3 4 5 6 7; do echo "$TICK;"; done
    batch 0 199
    local j r c
    for j in 1 2 3 4 5 6 7; do
        r=$(printf 'r-%04d' $((2 * j - 2)))
        c=$(printf 'r-%04d' $((2 * j - 1)))
        cat <<SQL
UPDATE triaged.alert SET status = 'resolved', resolved_at = '2026-11-26T21:00:00Z' WHERE id IN $(alerts "$r");
UPDATE triaged.incident SET resolve_pending_since = '2026-11-26T21:00:00Z', resolve_at = '2026-11-26T21:00:00Z' WHERE id = $(inc "$r");
UPDATE triaged.incident SET status = 'resolved', resolved_at = '2026-11-20T00:00:00Z', resolved_decided_at = '2026-11-20T00:00:00Z' WHERE id = $(inc "$c");
UPDATE triaged.alert SET suppressed = true WHERE id = (SELECT min(a.id) FROM triaged.alert a WHERE a.resource = '$c');
UPDATE triaged.alert SET flapping = true WHERE id = (SELECT min(a.id) FROM triaged.alert a WHERE a.resource = 'r-0019');
INSERT INTO triaged.heartbeat (source, resource, timeout, last_at) VALUES ('hb', 'tiny-$j', '5 min', '2026-11-26T22:00:00Z');
$TICK;
SQL
    done
    batch 1000 3999
    cat <<SQL
-- resolved: r-0100..r-0102; pending but one alert firing: r-0103; pending
-- within the grace: r-0104
UPDATE triaged.alert SET status = 'resolved', resolved_at = '2026-11-26T21:00:00Z'
 WHERE resource IN ('r-0100', 'r-0101', 'r-0102', 'r-0104')
    OR id IN (SELECT a.id FROM triaged.alert a WHERE a.resource = 'r-0103' ORDER BY a.id OFFSET 1);
UPDATE triaged.incident SET resolve_pending_since = '2026-11-26T21:00:00Z', resolve_at = '2026-11-26T21:00:00Z'
 WHERE resource IN ('r-0100', 'r-0101', 'r-0102', 'r-0103');
UPDATE triaged.incident SET resolve_pending_since = '2026-11-26T22:08:00Z', resolve_at = '2026-11-26T22:08:00Z'
 WHERE resource = 'r-0104';
-- closed: r-0110, r-0111; decided too recently: r-0112
UPDATE triaged.incident SET status = 'resolved', resolved_at = '2026-11-20T00:00:00Z', resolved_decided_at = '2026-11-20T00:00:00Z'
 WHERE resource IN ('r-0110', 'r-0111');
UPDATE triaged.incident SET status = 'resolved', resolved_at = '2026-11-26T22:00:00Z', resolved_decided_at = '2026-11-26T22:00:00Z'
 WHERE resource = 'r-0112';
-- flapping: r-0120's 10 alerts calm; r-0121's first alert changed 6 times
-- within the window (> 5: stays)
UPDATE triaged.alert SET flapping = true
 WHERE resource = 'r-0120' OR id = (SELECT min(a.id) FROM triaged.alert a WHERE a.resource = 'r-0121');
INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity, occurrences)
SELECT (SELECT min(a.id) FROM triaged.alert a WHERE a.resource = 'r-0121'),
       timestamptz '2026-11-26T22:05:00Z' + g * interval '1 second',
       CASE WHEN g % 2 = 0 THEN 'firing' ELSE 'resolved' END,
       CASE WHEN g % 2 = 0 THEN 'resolved' ELSE 'firing' END, 'major', 1
  FROM generate_series(1, 6) g;
-- maintenance over: 2 firing alerts of r-0110 (closed by this tick: a new
-- incident), 1 of r-0130 (open incident: none); r-0131's resolved one stays
UPDATE triaged.alert SET suppressed = true
 WHERE id IN (SELECT a.id FROM triaged.alert a WHERE a.resource = 'r-0110' ORDER BY a.id LIMIT 2)
    OR id = (SELECT min(a.id) FROM triaged.alert a WHERE a.resource = 'r-0130');
UPDATE triaged.alert SET suppressed = true, status = 'resolved', resolved_at = '2026-11-26T21:00:00Z'
 WHERE id = (SELECT min(a.id) FROM triaged.alert a WHERE a.resource = 'r-0131');
-- heartbeats: 2 missing, 2 not yet
INSERT INTO triaged.heartbeat (source, resource, timeout, last_at)
VALUES ('hb', 'due-1', '5 min', '2026-11-26T22:00:00Z'), ('hb', 'due-2', '5 min', '2026-11-26T22:01:00Z'),
       ('hb', 'ok-1', '5 min', '2026-11-26T22:09:00Z'), ('hb', 'ok-2', '10 min', '2026-11-26T22:01:00Z');
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET client_min_messages = log;
\echo ==tick
$TICK;
SQL
}

# the plans of tick's and _tick_core's statements in $1 (psql's stderr)
check_plans() {
    python3 - "$1" <<'PY' || return 1
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r'^LOG:  duration: [0-9.]+ ms  plan:\n', text, flags=re.M)[1:]
mine = {
    'flapping look-up': ('FROM (SELECT a.ctid FROM triaged.alert a WHERE a.flapping', 'alert_flapping_idx'),
    'flapping update': ('UPDATE triaged.alert a SET flapping = false', 'Tid Scan on alert'),
    'resolve look-up': ('ORDER BY i.resolve_pending_since FOR UPDATE', 'incident_resolve_pending_idx'),
    'resolve update': ("SET status = 'resolved', resolved_at = coalesce(i.resolve_at, v_now)",
                       'Tid Scan on incident'),
    'close look-up': ('ORDER BY coalesce(i.resolved_decided_at, i.resolved_at)',
                      'incident_resolved_decided_idx'),
    'close update': ("SET status = 'closed', closed_at = v_now", 'Tid Scan on incident'),
    'resolved rows': ("_incident_rows('incident.resolved'", 'Index Scan using incident_pkey'),
    'closed rows': ("_incident_rows('incident.closed'", 'Index Scan using incident_pkey'),
    'heartbeat look-up': ('FROM (SELECT h.ctid FROM triaged.heartbeat h', 'heartbeat_due_idx'),
    'heartbeat update': ('UPDATE triaged.heartbeat h SET missing_since', 'Tid Scan on heartbeat'),
    'suppressed look-up': ('WITH RECURSIVE c(ci)', 'alert_suppressed_ci_idx'),
    'suppressed look-up (no CI)': ('AND a.ci_id IS NULL', 'alert_suppressed_ci_idx'),
    'suppressed update': ('UPDATE triaged.alert SET suppressed = false, updated_at = now() WHERE ctid',
                          'Tid Scan on alert'),
    'open incident test': ('FROM unnest(v_ids) u(id)', 'incident_alert_alert_idx'),
}
seen, bad = {}, []
for b in blocks:
    root = re.search(r'^\S.*  \(cost=', b, re.M)   # the plan's first line
    qtext, plan = (b[:root.start()], b[root.start():]) if root else (b, '')
    for name, (needle, want) in mine.items():
        if needle not in qtext:
            continue
        seen[name] = seen.get(name, 0) + 1
        wrong = [f'no {want}'] if want not in plan else []
        wrong += [scan for scan in ('Seq Scan', 'incident_outage_idx', 'alert_status_idx')
                  if scan in plan]
        wrong += [f'Rows Removed by Filter: {n}'
                  for n in re.findall(r'Rows Removed by Filter: (\d+)', plan) if int(n) >= 50]
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
    pg=$(t_db_migrated "$mode" alert alert_history incident incident_alert incident_event heartbeat) || exit 1
    session "$mode" | PGOPTIONS= psql "$pg" -qAtX -v ON_ERROR_STOP=1 \
        > "$T_DIR/$mode.out" 2> "$T_DIR/$mode.plans" \
        || t_fail "$mode: session failed: $(grep -m3 ERROR "$T_DIR/$mode.plans")"
    T_PG=$pg

    # the tick's rows: _tick_core's (resolved and closed in id order, its
    # stats), the heartbeats' (through ingest), maintenance over's
    sed -n '/^==tick$/,$p' "$T_DIR/$mode.out" | tail -n +2 > "$T_DIR/$mode.tick"
    local want got kind key payload
    want=$(t_sql "SELECT string_agg('incident.resolved|' || i.number, E'\n' ORDER BY i.id) FROM triaged.incident i
                   WHERE i.resource IN ('r-0100', 'r-0101', 'r-0102')")
    want+=$'\n'$(t_sql "SELECT string_agg('incident.closed|' || i.number, E'\n' ORDER BY i.id) FROM triaged.incident i
                   WHERE i.resource IN ('r-0110', 'r-0111') AND i.status = 'closed'")
    want+=$'\nstats|{"closed": 2, "resolved": 3, "flapping_cleared": 10}'
    got=$(head -n 5 "$T_DIR/$mode.tick" | cut -d'|' -f1-2)$'\n'"stats|$(sed -n 6p "$T_DIR/$mode.tick" | cut -d'|' -f3)"
    [ "$got" = "$want" ] || t_fail "$mode: _tick_core's rows: got [$got], want [$want]"
    got=$(tail -n +7 "$T_DIR/$mode.tick" | cut -d'|' -f1 | sort | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}')
    [ "$got" = "alert.firing 2, incident.opened 3" ] || t_fail "$mode: the other rows: [$got]"
    # the published incidents as their snapshot with a recount shows them now
    while IFS='|' read -r kind key payload; do
        got=$(t_sql "SELECT \$p\$$payload\$p\$::jsonb = triaged.incident_payload(i,
                       (SELECT count(*) FROM triaged.incident_alert ia WHERE ia.incident_id = i.id),
                       (SELECT count(*) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
                         WHERE ia.incident_id = i.id AND a.status = 'firing'))::jsonb
                       FROM triaged.incident i WHERE i.number = '$key'")
        [ "$got" = t ] || t_fail "$mode: $kind $key published $payload, not its snapshot"
    done < <(head -n 5 "$T_DIR/$mode.tick")
    t_log "ok: $mode: the tick's rows"

    # the stored state
    t_expect_sql "SELECT string_agg(i.resource || ' ' || i.status || ' ' || coalesce(to_char(i.resolved_at, 'HH24:MI'), '-')
                                    || ' ' || coalesce(to_char(i.closed_at, 'HH24:MI'), '-')
                                    || ' ' || (i.resolve_pending_since IS NOT NULL), ', ' ORDER BY i.resource, i.id)
                    FROM triaged.incident i
                   WHERE i.resource IN ('r-0100', 'r-0101', 'r-0102', 'r-0103', 'r-0104', 'r-0110', 'r-0111', 'r-0112')" \
        "r-0100 resolved 21:00 - false, r-0101 resolved 21:00 - false, r-0102 resolved 21:00 - false, r-0103 new - - true, r-0104 new - - true, r-0110 closed 00:00 22:10 false, r-0110 new - - false, r-0111 closed 00:00 22:10 false, r-0112 resolved 22:00 - false"
    t_expect_sql "SELECT count(*) FROM triaged.incident_alert ia JOIN triaged.incident i ON i.id = ia.incident_id
                   WHERE i.resource = 'r-0110' AND i.status = 'new'" "2"
    t_expect_sql "SELECT string_agg(e.kind || ' ' || (e.detail->>'grace_ms'), ',' ORDER BY e.id) FROM triaged.incident_event e
                    JOIN triaged.incident i ON i.id = e.incident_id
                   WHERE i.resource IN ('r-0100', 'r-0101', 'r-0102') AND e.kind = 'resolved'" \
        "resolved 300000,resolved 300000,resolved 300000"
    t_expect_sql "SELECT count(*) FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id
                   WHERE e.kind = 'closed' AND e.at = '$NOW' AND i.resource IN ('r-0110', 'r-0111')" "2"
    t_expect_sql "SELECT string_agg(a.resource || ' ' || a.flapping, ',' ORDER BY a.id) FROM triaged.alert a
                   WHERE a.flapping OR a.resource = 'r-0120' AND a.id = (SELECT min(id) FROM triaged.alert WHERE resource = 'r-0120')" \
        "r-0120 false,r-0121 true"
    t_expect_sql "SELECT count(*) FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id
                   WHERE h.detail = '{\"flapping\": false}' AND h.at = '$NOW' AND a.resource = 'r-0120'" "10"
    t_expect_sql "SELECT string_agg(a.resource || ' ' || a.status, ',' ORDER BY a.id) FROM triaged.alert a WHERE a.suppressed" \
        "r-0131 resolved"
    t_expect_sql "SELECT string_agg(h.resource || ' ' || coalesce(to_char(h.missing_since, 'HH24:MI'), '-'), ',' ORDER BY h.resource)
                    FROM triaged.heartbeat h WHERE h.resource NOT LIKE 'tiny-%'" \
        "due-1 22:05,due-2 22:06,ok-1 -,ok-2 -"
    t_expect_sql "SELECT count(*) FROM triaged.audit_verify()" "0"

    local why
    why=$(check_plans "$T_DIR/$mode.plans") || t_fail "$mode: plans: $why"
    t_log "ok: $mode: the tick's 14 statements probe their indexes"
}

# SKIP LOCKED as before: rows another transaction holds (an incident pending
# resolve, one to close, a flapping alert) are skipped without waiting (the
# tick runs with lock_timeout 1 s: a wait would fail it), the others done;
# the next tick, once they are free, does them. In the last scenario's
# database.
skip_locked() {
    t_sql "UPDATE triaged.alert SET status = 'resolved', resolved_at = '2026-11-26T21:00:00Z'
            WHERE resource IN ('r-0140', 'r-0141');
           UPDATE triaged.incident SET resolve_pending_since = '2026-11-26T21:00:00Z', resolve_at = '2026-11-26T21:00:00Z'
            WHERE resource IN ('r-0140', 'r-0141');
           UPDATE triaged.incident SET status = 'resolved', resolved_at = '2026-11-20T00:00:00Z',
                  resolved_decided_at = '2026-11-20T00:00:00Z' WHERE resource IN ('r-0150', 'r-0151');
           UPDATE triaged.alert SET flapping = true
            WHERE resource = 'r-0160' OR id = (SELECT min(id) FROM triaged.alert WHERE resource = 'r-0161')" \
        > /dev/null
    # the holder keeps its rows until the test releases it (a row in
    # t24_release; each statement of the loop sees the latest commits), 10 s
    # at the most
    t_sql "CREATE UNLOGGED TABLE public.t24_release (x int)" > /dev/null
    psql "$T_PG" -qAtX -c "BEGIN;
        SELECT id FROM triaged.incident WHERE resource IN ('r-0141', 'r-0151') FOR UPDATE;
        SELECT id FROM triaged.alert WHERE resource = 'r-0161' AND flapping FOR UPDATE;
        DO \$\$ BEGIN /* t24 holder */
          FOR i IN 1..1000 LOOP
            EXIT WHEN EXISTS (SELECT FROM public.t24_release);
            PERFORM pg_sleep(0.01);
          END LOOP; END \$\$; COMMIT" > "$T_DIR/holder.out" 2>&1 &
    local holder=$!
    t_wait_sql "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%t24 holder%' AND wait_event = 'PgSleep'" 1 10
    local got
    got=$(psql "$T_PG" -qAtX -c "SET lock_timeout = '1s'" \
              -c "SELECT payload FROM ($TICK) t WHERE kind = 'stats'" 2>&1 | tail -1)
    [ "$got" = '{"closed": 1, "resolved": 1, "flapping_cleared": 10}' ] \
        || t_fail "tick next to held rows: [$got]"
    t_expect_sql "SELECT string_agg(resource || ' ' || status, ',' ORDER BY resource) FROM triaged.incident
                   WHERE resource IN ('r-0140', 'r-0141', 'r-0150', 'r-0151') AND status <> 'new' OR resource = 'r-0141'" \
        "r-0140 resolved,r-0141 new,r-0150 closed,r-0151 resolved"
    t_sql "INSERT INTO public.t24_release VALUES (1)" > /dev/null
    wait "$holder" || t_fail "the holding session failed: $(cat "$T_DIR/holder.out")"
    got=$(t_sql "SELECT payload FROM ($TICK) t WHERE kind = 'stats'")
    [ "$got" = '{"closed": 1, "resolved": 1, "flapping_cleared": 1}' ] \
        || t_fail "tick once the rows are free: [$got]"
    t_log "ok: rows held by another transaction skipped, then done"
}

scenario auto
scenario force_generic_plan
skip_locked
t_log "PASS"

#!/usr/bin/env bash
# test_engine_fastpaths.sh — sql/008's set-based resolve and re-fire paths
# and its _finish_incidents do exactly what 002's row-by-row path and 002's
# _finish_incidents do. The same batches and ticks go into two databases
# with every migration: one as shipped, one whose _ingest_loop is 002's
# row-by-row loop alone (_ingest_loop_rows) and whose _finish_incidents is
# 002's text again (the reference). Every published row (in order) and the stored state (alerts,
# their history, incidents, links, timeline events with their hash chain)
# must be identical. The scenario covers each fast path (single resolves,
# re-fires into an open incident with and without a severity change,
# flapping marked by each) next to what stays row by row (several segments
# of one fingerprint, a re-fire that reopens a resolved incident, stale
# resolves), and checks that the fast paths were taken.
#
# sql/011's batch statement, ingest_arrays (the segments as typed arrays,
# one engine function), is compared the same way: a third database gets
# every batch through it, and its rows and state must be those of the
# jsonb statement (ingest_all_arrays, as shipped). A second scenario, on
# bound CIs, then covers what 011 does around the engine (correlation,
# roles, CI descriptions, alerts leaving maintenance) and the batches it
# hands to the jsonb statement (heartbeats, a CI in maintenance).
#
# sql/016's find-or-open (one lookup statement for both kinds of group, the
# bound groups' INSERT in _open_bound) is compared with 013's: the
# reference gets 013's _find_or_open text again. What 016 lets a small
# batch skip (the end of batch, correlation and roles for a batch of
# counted segments only; _open_incidents for unbound groups) is checked to
# be skipped, its rows and state compared all the same.
source "$(dirname "$0")/lib.sh"

fast=$(t_db_extra fast)
ref=$(t_db_extra ref)
arr=$(t_db_extra arr)
for pg in "$fast" "$ref" "$arr"; do
    printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "$T_DIR/conf"
    "$TD_BUILD_DIR/triagectl" -c "$T_DIR/conf" migrate > "$T_DIR/migrate.log" 2>&1 \
        || t_fail "migrate: $(cat "$T_DIR/migrate.log")"
done
# 002's _finish_incidents as it was, from its migration file
sed -n '/^CREATE FUNCTION triaged._finish_incidents(/,/^END \$\$;/p' "$TD_SOURCE_DIR/sql/002_ingest.sql" \
    | sed '1s/^CREATE FUNCTION/CREATE OR REPLACE FUNCTION/' > "$T_DIR/finish_ref.sql"
grep -q 'FOR UPDATE OF i' "$T_DIR/finish_ref.sql" || t_fail "002's _finish_incidents not found"
psql "$ref" -qAtX -v ON_ERROR_STOP=1 -f "$T_DIR/finish_ref.sql" >/dev/null \
    || t_fail "cannot install 002's _finish_incidents"
# 013's _find_or_open as it was, from its migration file
sed -n '/^CREATE OR REPLACE FUNCTION triaged._find_or_open(/,/^END \$\$;/p' \
    "$TD_SOURCE_DIR/sql/013_engine_counts.sql" > "$T_DIR/find_ref.sql"
grep -q 'ON CONFLICT (resource)' "$T_DIR/find_ref.sql" || t_fail "013's _find_or_open not found"
psql "$ref" -qAtX -v ON_ERROR_STOP=1 -f "$T_DIR/find_ref.sql" >/dev/null \
    || t_fail "cannot install 013's _find_or_open"
psql "$ref" -qAtX -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || t_fail "cannot install the reference loop"
CREATE OR REPLACE FUNCTION triaged._ingest_loop(p_segs triaged._segment[], p_reopen interval,
                                                p_flap_threshold integer, p_flap_window interval)
RETURNS triaged._loop_result LANGUAGE sql AS $$
  SELECT triaged._ingest_loop_rows(p_segs, p_reopen, p_flap_threshold, p_flap_window)
$$;
SQL

# count the engine's function calls (pg_stat_user_functions)
export PGOPTIONS="$PGOPTIONS -c track_functions=pl"

# seg FP RESOURCE SEVERITY STATUS FIRST: one segment (times are 2024-03-01)
seg() {
    local n=1
    [ "$4" = resolved ] && n=0
    printf '{"fp":"%s","source":"test","resource":"%s","check":"c-%s","dedup_key":null,"ci_id":null,"summary":"%s %s","labels":{"env":"t"},"severity":"%s","status":"%s","n":%s,"first":"2024-03-01T%sZ","last":"2024-03-01T%sZ"}' \
        "$1" "$2" "$1" "$1" "$4" "$3" "$4" "$n" "$5" "$5"
}
opts() { printf '{"now":"2024-03-01T%sZ","actor":"t","reopen_window_ms":1800000,"flap_threshold":3,"flap_window_ms":1800000,"resolve_grace_ms":120000,"close_after_ms":%s}' "$1" "${2:-86400000}"; }

# (a statement failed: the test fails, unless EXPECT_ERR is set)
failed() {
    [ -n "${EXPECT_ERR:-}" ] && return 1
    t_fail "step $step ($1): $(cat "$T_DIR/err")"
}
# ingest_into DB NOW BATCH: the jsonb statement (as the daemon sent it
# until 011) into fast and ref, the arrays statement into arr
ingest_into() {
    local which=$1 now=$2 b=$3 pg=$fast
    [ "$which" = ref ] && pg=$ref
    if [ "$which" = arr ]; then
        # (into=DB: the arrays statement into DB instead of arr)
        psql "${into:-$arr}" -qAtX -v ON_ERROR_STOP=1 -v b="$b" -v o="$(opts "$now")" \
            > "$T_DIR/out.$which" 2> "$T_DIR/err" <<'SQL' || failed "$which"
SELECT r.kind || '|' || coalesce(r.key, '') || '|' || r.payload
  FROM (SELECT array_agg(e->>'fp' ORDER BY o) fp, array_agg(e->>'source' ORDER BY o) src,
               array_agg(e->>'resource' ORDER BY o) res, array_agg(e->>'check' ORDER BY o) chk,
               array_agg(e->>'dedup_key' ORDER BY o) dk, array_agg((e->>'ci_id')::bigint ORDER BY o) ci,
               array_agg(e->>'summary' ORDER BY o) sm, array_agg(e->'labels' ORDER BY o) lab,
               array_agg(e->>'severity' ORDER BY o) sev, array_agg(e->>'status' ORDER BY o) st,
               array_agg((e->>'n')::bigint ORDER BY o) n,
               array_agg((e->>'first')::timestamptz ORDER BY o) t0,
               array_agg((e->>'last')::timestamptz ORDER BY o) t1,
               jsonb_agg(jsonb_build_object('ci_id', e->'ci_id', 'up', e->'up', 'svc', e->'svc')
                         ORDER BY o) FILTER (WHERE e ? 'up' OR e ? 'svc') cis
          FROM jsonb_array_elements(:'b'::jsonb) WITH ORDINALITY t(e, o)) x,
       triaged.ingest_arrays(x.fp, x.src, x.res, x.chk, x.dk, x.ci, x.sm, x.lab, x.sev, x.st,
                             x.n, x.t0, x.t1, x.cis, NULL, :'o'::jsonb) r;
SQL
    else
        psql "$pg" -qAtX -v ON_ERROR_STOP=1 -v b="$b" -v o="$(opts "$now")" \
            > "$T_DIR/out.$which" 2> "$T_DIR/err" <<'SQL' || failed "$which"
SELECT kind || '|' || coalesce(key, '') || '|' || payload FROM triaged.ingest_all_arrays(
  :'b'::jsonb, NULL, NULL, NULL, NULL, NULL, NULL, NULL, :'o'::jsonb);
SQL
    fi
}
step=0
# ingest NOW SEG...: the batch into the three databases, published rows compared
ingest() {
    local now=$1 b
    shift
    b="[$(IFS=,; echo "$*")]"
    step=$((step + 1))
    for which in fast ref arr; do
        ingest_into $which "$now" "$b"
    done
    diff "$T_DIR/out.ref" "$T_DIR/out.fast" > "$T_DIR/diff" \
        || t_fail "step $step: published rows differ (< reference, > fast):
$(cat "$T_DIR/diff")"
    diff "$T_DIR/out.fast" "$T_DIR/out.arr" > "$T_DIR/diff" \
        || t_fail "step $step: published rows differ (< jsonb statement, > arrays statement):
$(cat "$T_DIR/diff")"
    cat "$T_DIR/out.fast" >> "$T_DIR/all.out"
}
tick() {
    step=$((step + 1))
    for which in fast ref arr; do
        local pg=$fast
        [ $which = ref ] && pg=$ref
        [ $which = arr ] && pg=$arr
        echo "SELECT kind || '|' || coalesce(key, '') || '|' || payload FROM triaged.tick(:'o'::jsonb);" \
            | psql "$pg" -qAtX -v ON_ERROR_STOP=1 -v o="$(opts "$1" "${2:-}")" > "$T_DIR/out.$which" \
            || t_fail "tick at step $step ($which)"
    done
    diff "$T_DIR/out.ref" "$T_DIR/out.fast" > "$T_DIR/diff" \
        || t_fail "tick at step $step: rows differ: $(cat "$T_DIR/diff")"
    diff "$T_DIR/out.fast" "$T_DIR/out.arr" > "$T_DIR/diff" \
        || t_fail "tick at step $step: rows differ (< jsonb, > arrays): $(cat "$T_DIR/diff")"
}

ingest 10:00:05 "$(seg a1 r1 major firing 10:00:00)" "$(seg a2 r1 major firing 10:00:00)" \
    "$(seg a3 r1 minor firing 10:00:00)" "$(seg a4 r2 major firing 10:00:00)" \
    "$(seg a5 r2 major firing 10:00:00)" "$(seg a6 r3 warning firing 10:00:00)" \
    "$(seg a8 r4 major resolved 10:00:00)"
# fast resolves; a dup; a severity change (row by row)
ingest 10:01:05 "$(seg a1 r1 major resolved 10:01:00)" "$(seg a4 r2 major resolved 10:01:00)" \
    "$(seg a6 r3 warning resolved 10:01:00)" "$(seg a2 r1 major firing 10:01:00)" \
    "$(seg a5 r2 critical firing 10:01:00)" "$(seg a8 r4 major firing 10:00:30)"
# fast re-fires (a1 with a severity change); a stale resolve; a3 resolves and
# fires again in one batch (row by row)
ingest 10:02:05 "$(seg a1 r1 critical firing 10:02:00)" "$(seg a4 r2 major firing 10:02:00)" \
    "$(seg a6 r3 warning resolved 10:00:30)" "$(seg a3 r1 minor resolved 10:01:30)" \
    "$(seg a3 r1 minor firing 10:01:40)" "$(seg a8 r4 major resolved 10:01:00)"
ingest 10:03:05 "$(seg a1 r1 critical resolved 10:03:00)" "$(seg a1 r1 critical firing 10:03:30)" \
    "$(seg a2 r1 major resolved 10:03:00)" "$(seg a5 r2 critical resolved 10:03:00)" \
    "$(seg a4 r2 major resolved 10:03:00)" "$(seg a8 r4 major firing 10:02:00)"
# (a8's fast re-fire above marked it flapping: its 4th change; a4's fast
# resolve did at its 4th) a1's fast resolve marks it flapping: its 6th
ingest 10:04:05 "$(seg a1 r1 critical resolved 10:04:00)" "$(seg a4 r2 major firing 10:04:00)"
tick 10:10:00
# a6's incident resolved: its re-fire reopens it (row by row); a5 and a2
# re-fire into open incidents (fast); a2 fires again, a4 re-fires flapping
ingest 10:11:05 "$(seg a6 r3 warning firing 10:11:00)" "$(seg a5 r2 major firing 10:11:00)" \
    "$(seg a2 r1 minor firing 10:11:00)"
ingest 10:12:05 "$(seg a5 r2 major resolved 10:05:00)" "$(seg a7 r1 info firing 10:12:00)" \
    "$(seg a4 r2 major resolved 10:12:00)" "$(seg a3 r1 minor resolved 10:12:00)"
ingest 10:13:05 "$(seg a4 r2 major firing 10:13:00)" "$(seg a3 r1 minor firing 10:13:00)"
ingest 10:14:05 "$(seg a4 r2 major resolved 10:14:00)" "$(seg a5 r2 major resolved 10:14:00)"
tick 10:20:00
tick 23:50:00

# the stored state, ids replaced by fingerprints and incident numbers
dump() {
    psql "$1" -qAtX -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'alert', fingerprint, status, severity, occurrences, first_seen, last_seen, fired_at,
       resolved_at, state_changed_at, flapping, summary, labels
  FROM triaged.alert ORDER BY fingerprint;
SELECT 'history', a.fingerprint, row_number() OVER (PARTITION BY a.id ORDER BY h.id), h.at,
       h.from_status, h.to_status, h.severity, h.occurrences, h.detail
  FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id
 ORDER BY a.fingerprint, 3;
SELECT 'incident', id, number, title, status, priority, impact, urgency, severity, opened_at,
       resolved_at, closed_at, reopen_count, resolve_pending_since, resolve_at,
       resolved_decided_at, encode(last_event_hash, 'hex'), alert_count, firing_count
  FROM triaged.incident ORDER BY id;
SELECT 'link', i.number, a.fingerprint, ia.role
  FROM triaged.incident_alert ia JOIN triaged.incident i ON i.id = ia.incident_id
  JOIN triaged.alert a ON a.id = ia.alert_id ORDER BY 2, 3;
SELECT 'event', i.number, row_number() OVER (PARTITION BY e.incident_id ORDER BY e.id), e.at,
       e.actor, e.kind, e.detail, encode(e.hash, 'hex')
  FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id
 ORDER BY 2, 3;
SELECT 'audit', count(*) FROM triaged.audit_verify();
SELECT 'counts', count(*) FROM triaged.incident_counts_verify();
SQL
}
# sql/013's kept counts: no incident whose counts differ from a recount
counts_ok() { # DB WHAT
    local bad
    bad=$(psql "$1" -qAtX -c "SELECT string_agg(number || ' kept ' || alert_count || '/' || firing_count || ' counted ' || links || '/' || firing_links, '; ') FROM triaged.incident_counts_verify()")
    [ -z "$bad" ] || t_fail "$2: kept counts differ from a recount: $bad"
}

# same_state WHAT: the kept counts right in the three databases, and their
# stored state identical (reference = jsonb statement = arrays statement)
same_state() {
    local pg
    for pg in "$fast" "$ref" "$arr"; do counts_ok "$pg" "$1"; done
    dump "$fast" > "$T_DIR/state.fast"
    dump "$ref" > "$T_DIR/state.ref"
    dump "$arr" > "$T_DIR/state.arr"
    diff "$T_DIR/state.ref" "$T_DIR/state.fast" > "$T_DIR/diff" \
        || t_fail "$1: stored state differs (< reference, > fast):
$(cat "$T_DIR/diff")"
    diff "$T_DIR/state.fast" "$T_DIR/state.arr" > "$T_DIR/diff" \
        || t_fail "$1: stored state differs (< jsonb statement, > arrays statement):
$(cat "$T_DIR/diff")"
}

same_state "scenario 1"
t_log "$(wc -l < "$T_DIR/all.out") published rows and $(wc -l < "$T_DIR/state.fast") stored rows identical"

# the scenario did exercise what it is meant to
want() { # NAME GOT WANT
    [ "$2" = "$3" ] || t_fail "$1: got '$2', want '$3'"
    t_log "ok: $1 = $3"
}
q() { psql "$fast" -qAtX -c "$1"; }
want "flapping cleared by the last tick" "$(q "SELECT string_agg(a.fingerprint, ',' ORDER BY a.fingerprint) FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id WHERE h.detail->>'flapping' = 'false'")" "a1,a3,a4,a5,a8"
want "flapping marked (rows)" "$(q "SELECT string_agg(a.fingerprint || ':' || h.from_status || '>' || h.to_status, ',' ORDER BY a.fingerprint) FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id WHERE h.detail ? 'flapping' AND h.detail->>'flapping' = 'true'")" "a1:resolved>resolved,a3:resolved>resolved,a4:resolved>resolved,a5:resolved>resolved,a8:firing>firing"
want "a severity change on a fast re-fire" "$(q "SELECT count(*) FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id WHERE a.fingerprint = 'a1' AND h.from_status = 'resolved' AND h.detail->>'severity_from' = 'major'")" "1"
want "r3's incident reopened" "$(q "SELECT reopen_count FROM triaged.incident WHERE resource = 'r3'")" "1"
want "audit chain intact" "$(q "SELECT count(*) FROM triaged.audit_verify()")" "0"
# the fast paths ran: in the reference every batch with state changes went
# row by row; in the shipped one, the batches whose changes were all
# single resolves or re-fires into open incidents did not
calls() { psql "$1" -qAtX -c "SELECT coalesce(string_agg(funcname || '=' || calls, ' ' ORDER BY funcname), '') FROM pg_stat_user_functions WHERE funcname IN ('_ingest_loop', '_ingest_loop_rows')"; }
# (the reference's _ingest_loop is SQL, which track_functions = pl ignores)
want "batches with state changes, all row by row (reference)" "$(calls "$ref")" "_ingest_loop_rows=8"
want "batches with state changes, those with some row by row (shipped)" "$(calls "$fast")" "_ingest_loop=8 _ingest_loop_rows=4"

# ---- sql/013: kept counts of incidents that are no longer open, and
# firing segments older than their firing alert's start (set-based in the
# arrays statement, row by row in the others). The incidents resolved above
# are closed; a4 re-fires into a new incident (its closed one still counts
# it: firing, then resolved); a4's older firing moves its new incident's
# opened_at back (a severity that is stale too); a9's does not, as a9
# resolved in between.
tick 23:51:00 60000
ingest 23:55:05 "$(seg a4 r2 major firing 23:55:00)" "$(seg a9 r5 major firing 23:55:00)"
ingest 23:56:05 "$(seg a9 r5 major resolved 23:56:00)"
ingest 23:57:05 "$(seg a9 r5 major firing 23:57:00)"
ingest 23:58:05 "$(seg a4 r2 critical firing 23:54:00)" "$(seg a9 r5 major firing 23:55:30)"
for pg in "$fast" "$ref" "$arr"; do counts_ok "$pg" "closed incidents, older firings"; done
want "a4's closed incident counts it, firing" "$(psql "$arr" -qAtX -c "SELECT alert_count || '/' || firing_count FROM triaged.incident WHERE resource = 'r2' AND status = 'closed'")" "2/1"
ingest 23:59:05 "$(seg a4 r2 critical resolved 23:59:00)"
same_state "closed incidents, older firings"
want "a4's closed incident counts it, resolved" "$(psql "$arr" -qAtX -c "SELECT alert_count || '/' || firing_count FROM triaged.incident WHERE resource = 'r2' AND status = 'closed'")" "2/0"
want "a4 in two incidents" "$(q "SELECT count(*) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id WHERE a.fingerprint = 'a4'")" "2"
want "a4's new incident opened at its older firing" "$(psql "$arr" -qAtX -c "SELECT opened_at FROM triaged.incident WHERE resource = 'r2' AND status = 'new'")" "2024-03-01 23:54:00+00"
want "a9's incident not moved (a resolve in between)" "$(psql "$arr" -qAtX -c "SELECT opened_at FROM triaged.incident WHERE resource = 'r5'")" "2024-03-01 23:55:00+00"
want "older firings set-based (arrays statement)" "$(psql "$arr" -qAtX -c "SELECT calls FROM pg_stat_user_functions WHERE funcname = '_move_opened'")" "1"

# ---- sql/016: what a small batch skips. A batch of counted segments only
# (a9 fires again, a4 resolves again: no state change) runs no end of
# batch, correlation or roles in the arrays statement; a batch of new
# alerts on unbound resources (c1 joins r5's open incident, c2 and c3 open
# one on r6) calls neither _find_or_open ((025) r5's incident was found by
# the lookup, r6's is made whole) nor _open_incidents. Rows and state as
# the reference's and the jsonb statement's.
fcalls() { psql "$arr" -qAtX -c "SELECT coalesce(string_agg(funcname || '=' || calls, ' ' ORDER BY funcname), '') FROM pg_stat_user_functions WHERE funcname IN ('_finish_counted', '_find_or_open', '_fix_roles', '_open_incidents')"; }
fn() { # NAME: the calls of one function in arr (0: none)
    psql "$arr" -qAtX -c "SELECT coalesce((SELECT calls FROM pg_stat_user_functions WHERE funcname = '$1'), 0)"
}
f0=$(fn _finish_counted) r0=$(fn _fix_roles)
ingest 23:59:15 "$(seg a9 r5 major firing 23:59:10)" "$(seg a4 r2 critical resolved 23:59:10)"
want "counted segments only: no end of batch, no roles (arrays)" \
    "$(fn _finish_counted) $(fn _fix_roles)" "$f0 $r0"
want "counted segments only: stats" "$(grep '^stats|' "$T_DIR/out.arr" | sed 's/.*"segments": \([0-9]*\).*"new_alerts": \([0-9]*\).*"incidents_opened": \([0-9]*\).*/\1 \2 \3/')" "2 0 0"
o0=$(fn _open_incidents) g0=$(fn _find_or_open)
ingest 23:59:25 "$(seg c1 r5 minor firing 23:59:20)" "$(seg c2 r6 major firing 23:59:20)" \
    "$(seg c3 r6 critical firing 23:59:21)"
want "unbound groups: neither find-or-open nor _open_incidents (arrays)" \
    "$(fn _open_incidents) $(fn _find_or_open)" "$o0 $g0"
want "c1 joined r5's incident, c2 and c3 opened r6's" "$(psql "$arr" -qAtX -c "SELECT string_agg(a.fingerprint || ':' || i.resource || ':' || i.alert_count || '/' || i.firing_count, ',' ORDER BY a.fingerprint) FROM triaged.alert a JOIN triaged.incident_alert ia ON ia.alert_id = a.id JOIN triaged.incident i ON i.id = ia.incident_id WHERE a.fingerprint LIKE 'c%'")" "c1:r5:2/2,c2:r6:2/2,c3:r6:2/2"
same_state "small batches (016)"

# ---- sql/018: the lean path. Alerts d1-d6 fire on r7; then one batch mixes
# segments the lean UPDATE applies (duplicates of firing d1 and c1, of
# resolved a4) with segments of the same kind of alerts it must leave to
# the classification: an older duplicate (d2: before its firing start), a
# severity change (d3), a resolve (d4), a duplicate of an alert in
# maintenance (d5, suppressed by hand: leaves suppression), two segments of
# one fingerprint (d6), a stale resolve (c2) and a new alert (e1). Which
# segments it applies is asked of _count_lean itself (rolled back), then
# the batch goes in; rows, stats and state as the jsonb statement's and
# the reference's. A batch of duplicates only follows.
lean_ask() { # BATCH SELECT: _count_lean asked of BATCH in arr (rolled back);
    # SELECT reads a: the batch's fingerprints (fp) and the answer (lean,
    # rest, nlean, single)
    psql "$arr" -qAtX -v ON_ERROR_STOP=1 -v b="$1" -v sel="$2" 2> "$T_DIR/err" <<'SQL' || t_fail "_count_lean: $(cat "$T_DIR/err")"
BEGIN;
SET LOCAL enable_seqscan = off;
WITH a AS (
SELECT x.fp, l.lean, l.rest, l.nlean, l.single
  FROM (SELECT array_agg(e->>'fp' ORDER BY o) fp, array_agg((e->>'ci_id')::bigint ORDER BY o) ci,
               array_agg(e->>'summary' ORDER BY o) sm, array_agg(e->'labels' ORDER BY o) lab,
               array_agg(e->>'severity' ORDER BY o) sev, array_agg(e->>'status' ORDER BY o) st,
               array_agg((e->>'n')::bigint ORDER BY o) n,
               array_agg((e->>'first')::timestamptz ORDER BY o) t0,
               array_agg((e->>'last')::timestamptz ORDER BY o) t1
          FROM jsonb_array_elements(:'b'::jsonb) WITH ORDINALITY t(e, o)) x,
       triaged._count_lean(x.fp, x.ci, x.sm, x.lab, x.sev, x.st, x.n, x.t0, x.t1) l)
:sel;
ROLLBACK;
SQL
}
lean_of() { # BATCH: the fingerprints _count_lean applies in arr (rolled back)
    lean_ask "$1" "SELECT coalesce(string_agg(u.fp, ',' ORDER BY u.fp) FILTER (WHERE u.lean), '-') || ' ' || a.nlean || ' ' || a.single || ' ' || array_to_string(a.rest, ',') FROM a, unnest(a.fp, a.lean) u(fp, lean) GROUP BY a.nlean, a.single, a.rest"
}
ingest 23:59:35 "$(seg d1 r7 major firing 23:59:30)" "$(seg d2 r7 major firing 23:59:30)" \
    "$(seg d3 r7 major firing 23:59:30)" "$(seg d4 r7 major firing 23:59:30)" \
    "$(seg d5 r7 major firing 23:59:30)" "$(seg d6 r7 major firing 23:59:30)"
for pg in "$fast" "$ref" "$arr"; do
    psql "$pg" -qAtX -c "UPDATE triaged.alert SET suppressed = true WHERE fingerprint = 'd5'" >/dev/null
done
lb="[$(IFS=,; echo "$(seg d1 r7 major firing 23:59:40),$(seg d2 r7 major firing 23:59:20),$(seg d3 r7 critical firing 23:59:40),$(seg d4 r7 major resolved 23:59:40),$(seg d5 r7 major firing 23:59:40),$(seg d6 r7 major firing 23:59:40),$(seg d6 r7 major firing 23:59:42),$(seg a4 r2 critical resolved 23:59:40),$(seg c1 r5 minor firing 23:59:40),$(seg c2 r6 major resolved 23:59:00),$(seg e1 r7 minor firing 23:59:40)")]"
want "lean path: what it applies (fingerprints, count, one segment each, the other known alerts)" \
    "$(lean_of "$lb")" "a4,c1,d1 3 false d2,d3,d4,d5,d6,d6,c2"
l0=$(fn _count_lean)
ingest 23:59:45 "$(seg d1 r7 major firing 23:59:40)" "$(seg d2 r7 major firing 23:59:20)" \
    "$(seg d3 r7 critical firing 23:59:40)" "$(seg d4 r7 major resolved 23:59:40)" \
    "$(seg d5 r7 major firing 23:59:40)" "$(seg d6 r7 major firing 23:59:40)" \
    "$(seg d6 r7 major firing 23:59:42)" "$(seg a4 r2 critical resolved 23:59:40)" \
    "$(seg c1 r5 minor firing 23:59:40)" "$(seg c2 r6 major resolved 23:59:00)" \
    "$(seg e1 r7 minor firing 23:59:40)"
want "lean path: called once a batch (arrays)" "$(fn _count_lean)" "$((l0 + 1))"
stat() { grep '^stats|' "$T_DIR/out.arr" | sed "s/.*\"$1\": \([0-9]*\).*/\1/"; }
want "lean path: mixed batch's stats (segments dups stale new_alerts severity_changes resolved)" \
    "$(stat segments) $(stat dups) $(stat stale) $(stat new_alerts) $(stat severity_changes) $(stat resolved)" \
    "11 0 1 1 1 1"
want "lean path: d5 left maintenance" "$(psql "$arr" -qAtX -c "SELECT suppressed FROM triaged.alert WHERE fingerprint = 'd5'")" "f"
want "lean path: occurrences (d1 d2 d6 a4 c1)" "$(psql "$arr" -qAtX -c "SELECT string_agg(occurrences::text, ' ' ORDER BY array_position('{d1,d2,d6,a4,c1}'::text[], fingerprint)) FROM triaged.alert WHERE fingerprint IN ('d1', 'd2', 'd6', 'a4', 'c1')")" "2 2 3 6 2"
# duplicates only: no step 0, no classification; the newest summary wins
db2="[$(seg d1 r7 major firing 23:59:50 | sed 's/"summary":"[^"]*"/"summary":"newest"/'),$(seg c1 r5 minor firing 23:59:41),$(seg a4 r2 critical resolved 23:59:41)]"
want "lean path: a batch of duplicates only" "$(lean_of "$db2")" "a4,c1,d1 3 true "
ingest 23:59:55 "$(seg d1 r7 major firing 23:59:50 | sed 's/"summary":"[^"]*"/"summary":"newest"/')" \
    "$(seg c1 r5 minor firing 23:59:41)" "$(seg a4 r2 critical resolved 23:59:41)"
want "lean path: duplicates only, stats (segments dups stale new_alerts)" \
    "$(stat segments) $(stat dups) $(stat stale) $(stat new_alerts)" "3 0 0 0"
want "lean path: newest summary" "$(psql "$arr" -qAtX -c "SELECT summary || ' ' || occurrences FROM triaged.alert WHERE fingerprint = 'd1'")" "newest 3"
same_state "lean path (018)"

# ---- sql/019: a batch whose segments left after the lean path are new
# alerts only (unknown fingerprints, one firing segment each) takes the new
# alerts' path: no classification, no _create_alerts, one statement for
# alerts, history and links. f1-f3 open r8's incident, f4 joins r7's open
# one, next to two duplicates the lean path applies (d1, c1); then batches
# that must not take it: a resolve of a fingerprint never seen (g2), two
# segments of one new fingerprint (g3), a known alert's state change (d2
# resolves); then the race it leaves to 018's steps: a fingerprint another
# transaction creates after the lean path's lookup (a trigger in arr
# creates r1 inside the INSERT, once: the INSERT fails, the new alerts'
# path is rolled back, the batch goes through the classification).
# Rows, stats, state and counts as the jsonb statement's and the reference's.
c0=$(fn _create_alerts) l0=$(fn _count_lean) f0=$(fn _fix_roles)
ingest 23:59:57 "$(seg f1 r8 minor firing 23:59:56)" "$(seg d1 r7 major firing 23:59:56)" \
    "$(seg f2 r8 critical firing 23:59:55)" "$(seg f3 r8 major firing 23:59:56)" \
    "$(seg c1 r5 minor firing 23:59:56)" "$(seg f4 r7 warning firing 23:59:56)"
want "019: new alerts and duplicates: no _create_alerts, no roles, lean path once (arrays)" \
    "$(fn _create_alerts) $(fn _fix_roles) $(fn _count_lean)" "$c0 $f0 $((l0 + 1))"
want "019: new alerts' stats (segments new_alerts attached incidents_opened)" \
    "$(stat segments) $(stat new_alerts) $(stat attached) $(stat incidents_opened)" "6 4 4 1"
want "019: r8's incident (title, severity, opened_at, counts)" "$(psql "$arr" -qAtX -c "SELECT title || ' ' || severity || ' ' || opened_at || ' ' || alert_count || '/' || firing_count FROM triaged.incident WHERE resource = 'r8'")" "c-f2 on r8 critical 2024-03-01 23:59:55+00 3/3"
same_state "new alerts' path (019)"
c0=$(fn _create_alerts)
ingest 23:59:58 "$(seg g1 r8 major firing 23:59:57)" "$(seg g2 r8 major resolved 23:59:57)"
want "019: a resolve never seen: the classification's path" "$(fn _create_alerts)" "$((c0 + 1))"
ingest 23:59:59 "$(seg g3 r8 major firing 23:59:58)" "$(seg g3 r8 major resolved 23:59:58.5)" \
    "$(seg g4 r8 major firing 23:59:58)"
want "019: two segments of a new fingerprint: the classification's path" "$(fn _create_alerts)" "$((c0 + 2))"
ingest 23:59:59.5 "$(seg g5 r8 major firing 23:59:59)" "$(seg d2 r7 major resolved 23:59:59)"
want "019: a known alert's state change: the classification's path" "$(fn _create_alerts)" "$((c0 + 3))"
same_state "not the new alerts' path (019)"
psql "$arr" -qAtX -v ON_ERROR_STOP=1 >/dev/null 2>"$T_DIR/err" <<'SQL' || t_fail "race trigger: $(cat "$T_DIR/err")"
CREATE SEQUENCE public.race_once;
CREATE FUNCTION public.race_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.fingerprint = 'r1' AND nextval('public.race_once') = 1 THEN
    INSERT INTO triaged.alert (fingerprint, source, resource, check_name, severity, status,
                               occurrences, first_seen, last_seen, fired_at, state_changed_at)
    VALUES ('r1', 'race', 'r7', 'race', 'info', 'firing', 1, NEW.first_seen, NEW.last_seen,
            NEW.first_seen, NEW.first_seen);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER race_first BEFORE INSERT ON triaged.alert
  FOR EACH ROW EXECUTE FUNCTION public.race_first();
SQL
c0=$(fn _create_alerts)
ingest 23:59:59.7 "$(seg r1 r7 major firing 23:59:59.6)" "$(seg r2 r7 minor firing 23:59:59.6)"
want "019: a fingerprint created meanwhile: the trigger ran, then 018's steps" \
    "$(psql "$arr" -qAtX -c "SELECT last_value FROM public.race_once") $(fn _create_alerts) $(stat new_alerts)" \
    "3 $((c0 + 1)) 2"
psql "$arr" -qAtX -c "DROP TRIGGER race_first ON triaged.alert" >/dev/null
same_state "a fingerprint created meanwhile (019)"
# The race as it happens: another transaction holds a new fingerprint (q1,
# not yet committed) when a batch of new alerts (q1 and q2 on r9: a new
# incident) comes. The batch's INSERT waits for it and fails when it
# commits; the batch goes through 018's steps. 019 writes its alerts before
# any incident, as 018's steps do, so nothing was locked in the incident
# table meanwhile and no incident number was spent: ids, numbers and rows
# as in fast and ref, where q1 was committed before the batch.
race_row="INSERT INTO triaged.alert (fingerprint, source, resource, check_name, severity,
  status, occurrences, first_seen, last_seen, fired_at, state_changed_at)
  VALUES ('q1', 'race', 'r9', 'race', 'info', 'firing', 1, '2024-03-01T23:59:59.7Z',
          '2024-03-01T23:59:59.7Z', '2024-03-01T23:59:59.7Z', '2024-03-01T23:59:59.7Z')"
for pg in "$fast" "$ref"; do
    psql "$pg" -qAtX -v ON_ERROR_STOP=1 -c "$race_row" >/dev/null || t_fail "q1 in fast/ref"
done
racing() {
    [ "$(psql "$arr" -qAtX -c "SELECT count(*) FROM pg_stat_activity
                                 WHERE application_name = 'td_racer' AND query LIKE '%DO %'
                                   AND state = 'active'")" = 1 ]
}
# hold SQL WHAT: another session (td_racer) runs SQL in a transaction and
# commits once a batch waits for a lock it holds: never before, so the race
# does happen; it fails, and so does the test, if no wait comes in 20 s.
# $racer is its pid; wait for it after the batch.
hold() {
    PGAPPNAME=td_racer psql "$arr" -qAtX -v ON_ERROR_STOP=1 -c "BEGIN" -c "$1" -c "
DO \$\$
BEGIN
  FOR i IN 1..2000 LOOP
    PERFORM pg_stat_clear_snapshot();
    IF EXISTS (SELECT 1 FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND wait_event_type = 'Lock') THEN
      RETURN;
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RAISE EXCEPTION 'no batch waited for $2';
END \$\$" -c "COMMIT" > /dev/null 2> "$T_DIR/race.err" &
    racer=$!
    t_wait_until 10 "the other transaction to hold $2" racing
}
hold "$race_row" q1
c0=$(fn _create_alerts)
ingest 23:59:59.8 "$(seg q1 r9 major firing 23:59:59.75)" "$(seg q2 r9 minor firing 23:59:59.75)"
wait "$racer" || t_fail "the other transaction: $(cat "$T_DIR/race.err")"
want "019: a fingerprint another transaction held: the batch waited for it, then 018's steps (new_alerts, _create_alerts calls)" \
    "$(stat new_alerts) $(fn _create_alerts)" "1 $((c0 + 1))"
same_state "a fingerprint another transaction held (019)"

# ---- sql/021: new alerts of unbound groups none of which has an open
# incident: their incidents are inserted whole (opened event, hash, counts),
# no find-or-open and no end of batch; h1-h3 open r10's incident (the most
# severe first time, titles and the fingerprints of the event as 002's),
# h4 r11's, next to a duplicate the lean path applies (d1). Then a batch
# whose groups are both kinds (h5 joins r10's open incident, h6 opens
# r12's): (025) the end of batch for r10 only, r12's incident made whole,
# no find-or-open; (027) r10's end of batch in the same statement (no call
# of _finish_counted). Rows,
# stats, ids, numbers, events and hashes as the jsonb statement's and the
# reference's.
fo0=$(fn _find_or_open) fc0=$(fn _finish_counted)
ingest 23:59:59.85 "$(seg h1 r10 minor firing 23:59:59.81)" "$(seg d1 r7 major firing 23:59:59.8)" \
    "$(seg h3 r10 major firing 23:59:59.82)" "$(seg h2 r10 critical firing 23:59:59.83)" \
    "$(seg h4 r11 warning firing 23:59:59.8)"
want "021: unbound groups without an open incident: no find-or-open, no end of batch (arrays)" \
    "$(fn _find_or_open) $(fn _finish_counted)" "$fo0 $fc0"
want "021: their stats (segments new_alerts attached incidents_opened)" \
    "$(stat segments) $(stat new_alerts) $(stat attached) $(stat incidents_opened)" "5 4 4 2"
want "021: r10's incident (title, severity, priority, urgency, counts, event)" "$(psql "$arr" -qAtX -c "SELECT i.title || ' ' || i.severity || ' ' || i.priority || ' ' || i.urgency || ' ' || i.alert_count || '/' || i.firing_count || ' ' || e.kind || ' ' || (e.detail->'fingerprints')::text || ' ' || (e.hash = i.last_event_hash) FROM triaged.incident i JOIN triaged.incident_event e ON e.incident_id = i.id WHERE i.resource = 'r10'")" \
    'c-h1 on r10 critical 1 1 3/3 opened ["h1", "h2", "h3"] true'
want "021: the published incident rows (arrays)" \
    "$(grep -c '^incident.opened|' "$T_DIR/out.arr") $(grep -c '^incident\.' "$T_DIR/out.arr")" "2 2"
same_state "new incidents made whole (021)"
ingest 23:59:59.9 "$(seg h5 r10 major firing 23:59:59.88)" "$(seg h6 r12 minor firing 23:59:59.88)"
want "021: an open incident and a new one: no find-or-open, no call of the end of batch (027, arrays)" \
    "$(fn _find_or_open) $(fn _finish_counted)" "$fo0 $fc0"
same_state "an open incident and a new one (021)"

# ---- sql/022: the lean path's one UPDATE finds its alerts by fingerprint
# (no look-up first) and looks for single and rest only when a segment was
# not applied. Its answers (lean NULL when no fingerprint is known), the
# labels and summary it writes (the newest message's, else the stored
# ones, as 013's count), and the re-check of a row another transaction
# changed while the batch waited for it (READ COMMITTED: the newest version
# is no longer a duplicate, so the classification takes it).
lean_raw() { # BATCH: _count_lean's answers as they are (rolled back)
    lean_ask "$1" "SELECT coalesce(a.lean::text, 'null') || ' ' || a.rest::text || ' ' || a.nlean || ' ' || a.single FROM a"
}
want "022: no segment known: lean NULL" \
    "$(lean_raw "[$(seg n1 r9 major firing 23:59:59.81),$(seg n2 r9 major resolved 23:59:59.81)]")" \
    "null {} 0 true"
want "022: an empty batch" "$(lean_raw "[]")" "null {} 0 true"
want "022: two duplicates of one fingerprint are not lean, a third is" \
    "$(lean_raw "[$(seg d1 r7 major firing 23:59:59.81),$(seg d1 r7 major firing 23:59:59.82),$(seg c1 r5 minor firing 23:59:59.81)]")" \
    "{f,f,t} {d1,d1} 1 false"
want "022: a duplicate and a new alert" \
    "$(lean_raw "[$(seg n1 r9 major firing 23:59:59.81),$(seg c1 r5 minor firing 23:59:59.81)]")" \
    "{f,t} {} 1 true"
want "022: a known alert, not applied" "$(lean_raw "[$(seg d1 r7 major resolved 23:59:59.81)]")" \
    "{f} {d1} 0 true"
# duplicates only: d1's labels changed (stored: the newest message's), c1's
# equal, f1 newer; then f1 older than its last message but not than its
# firing start: counted, its labels and summary kept
newlab() { sed "s/\"labels\":{[^}]*}/\"labels\":{\"env\":\"$1\"}/; s/\"summary\":\"[^\"]*\"/\"summary\":\"$2\"/"; }
want "022: duplicates only" \
    "$(lean_raw "[$(seg d1 r7 major firing 23:59:59.82 | newlab new s-new),$(seg c1 r5 minor firing 23:59:59.82),$(seg f1 r8 minor firing 23:59:59.84 | newlab f1-new f1-new)]")" \
    "{t,t,t} {} 3 true"
ingest 23:59:59.85 "$(seg d1 r7 major firing 23:59:59.82 | newlab new s-new)" \
    "$(seg c1 r5 minor firing 23:59:59.82)" "$(seg f1 r8 minor firing 23:59:59.84 | newlab f1-new f1-new)"
ingest 23:59:59.86 "$(seg f1 r8 minor firing 23:59:59.83 | newlab f1-old f1-old)"
want "022: labels and summary (d1 c1 f1)" "$(psql "$arr" -qAtX -c "SELECT string_agg(fingerprint || ':' || (labels->>'env') || ':' || summary || ':' || occurrences || ':' || to_char(last_seen, 'SS.MS'), ' ' ORDER BY fingerprint) FROM triaged.alert WHERE fingerprint IN ('d1', 'c1', 'f1')")" \
    "c1:t:c1 firing:5:59.820 d1:new:s-new:6:59.820 f1:f1-new:f1-new:3:59.840"
same_state "duplicates' labels and summary (022)"
# d1's severity changes in another transaction that holds its row when a
# duplicate (major) comes; the batch waits, the change commits, the lean
# UPDATE re-checks d1's newest version (critical): not a duplicate, the
# classification counts a severity change. (fast and ref get the change
# before the batch.)
sev_row="UPDATE triaged.alert SET severity = 'critical' WHERE fingerprint = 'd1'"
for pg in "$fast" "$ref"; do
    psql "$pg" -qAtX -v ON_ERROR_STOP=1 -c "$sev_row" >/dev/null || t_fail "d1's severity in fast/ref"
done
hold "$sev_row" "d1"
ingest 23:59:59.9 "$(seg d1 r7 major firing 23:59:59.88)" "$(seg c1 r5 minor firing 23:59:59.88)"
wait "$racer" || t_fail "the other transaction: $(cat "$T_DIR/race.err")"
want "022: a row changed while the batch waited: re-checked (segments dups severity_changes)" \
    "$(stat segments) $(stat dups) $(stat severity_changes)" "2 0 1"
same_state "a row changed while the batch waited (022)"

# ---- 011 on bound CIs: the jsonb statement (fast) against the arrays one (arr)
cat > "$T_DIR/cmdb.json" <<'JSON'
{"cis": [{"name": "db-01"}, {"name": "web-01"}, {"name": "web-02"}, {"name": "app-01"}],
 "relations": [{"child": "web-01", "parent": "db-01"}, {"child": "web-02", "parent": "db-01"}],
 "services": [{"name": "Shop", "tier": 1, "cis": ["web-01", "web-02"]}]}
JSON
for pg in "$fast" "$arr"; do
    printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "$T_DIR/conf"
    "$TD_BUILD_DIR/triagectl" -c "$T_DIR/conf" cmdb import "$T_DIR/cmdb.json" > "$T_DIR/imp.log" 2>&1 \
        || t_fail "cmdb import: $(cat "$T_DIR/imp.log")"
    "$TD_BUILD_DIR/triagectl" -c "$T_DIR/conf" maintenance add --ci app-01 \
        --from 2024-03-01T12:00:00Z --to 2024-03-01T12:30:00Z > "$T_DIR/imp.log" 2>&1 \
        || t_fail "maintenance add: $(cat "$T_DIR/imp.log")"
done
ci() { psql "$fast" -qAtX -c "SELECT id FROM triaged.ci WHERE name = '$1'"; }
[ "$(ci db-01)" = "$(psql "$arr" -qAtX -c "SELECT id FROM triaged.ci WHERE name = 'db-01'")" ] \
    || t_fail "the two databases gave the CIs different ids"
db=$(ci db-01) web1=$(ci web-01) web2=$(ci web-02) app=$(ci app-01)
# bseg FP CI_ID RESOURCE SEVERITY STATUS FIRST [EXTRA]: a bound segment
bseg() {
    local n=1
    [ "$5" = resolved ] && n=0
    printf '{"fp":"%s","source":"test","resource":"%s","check":"%s","dedup_key":null,"ci_id":%s,"summary":null,"labels":{"env":"b"},"severity":"%s","status":"%s","n":%s,"first":"2024-03-01T%sZ","last":"2024-03-01T%sZ"%s}' \
        "$1" "$3" "${8:-c-$1}" "$2" "$4" "$5" "$n" "$6" "$6" "${7:-}"
}
ingest2() {
    local now=$1 b
    shift
    b="[$(IFS=,; echo "$*")]"
    step=$((step + 1))
    for which in fast arr; do
        ingest_into $which "$now" "$b"
    done
    diff "$T_DIR/out.fast" "$T_DIR/out.arr" > "$T_DIR/diff" \
        || t_fail "step $step: published rows differ (< jsonb statement, > arrays statement):
$(cat "$T_DIR/diff")"
    cat "$T_DIR/out.fast" >> "$T_DIR/all2.out"
}
# web-01 and web-02 first (their CI descriptions sent), then db-01: its
# incident absorbs theirs (correlation, merge, roles)
c0=$(fn _create_alerts) o0=$(fn _open_incidents)
ingest2 11:00:05 "$(bseg b1 "$web1" web-01 major firing 11:00:00 ",\"up\":[$db],\"svc\":[1]")" \
    "$(bseg b2 "$web2" web-02 minor firing 11:00:00)" "$(bseg b3 null host-9 warning firing 11:00:00)"
want "019: new bound alerts: the new alerts' path, through _open_incidents (arrays)" \
    "$(fn _create_alerts) $(fn _open_incidents)" "$c0 $((o0 + 1))"
ingest2 11:01:05 "$(bseg b4 "$db" db-01 critical firing 11:01:00)" "$(bseg b1 "$web1" web-01 major firing 11:01:00)"
# a heartbeat (the jsonb path), a resolve on the merged incident
ingest2 11:02:05 "$(bseg h1 "$app" app-01 info firing 11:02:00 '' heartbeat)" \
    "$(bseg b2 "$web2" web-02 minor resolved 11:02:00)"
# app-01 in maintenance: suppressed (the jsonb path); then out of it, its
# alert fires again: no longer suppressed, it gets its incident (arrays)
ingest2 12:05:05 "$(bseg m1 "$app" app-01 major firing 12:05:00)" "$(bseg b4 "$db" db-01 critical firing 12:05:00)"
ingest2 12:40:05 "$(bseg m1 "$app" app-01 major firing 12:40:00)" "$(bseg b1 "$web1" web-01 critical firing 12:40:00)"
# (018) a duplicate naming another CI than its alert's (b4 on web-01) is
# left to the classification; b1's, on its own CI, is applied lean
cb="[$(bseg b4 "$web1" db-01 critical firing 12:41:00),$(bseg b1 "$web1" web-01 critical firing 12:41:00)]"
want "lean path: a CI change is not lean" "$(lean_of "$cb")" "b1 1 true b4"
ingest2 12:41:05 "$(bseg b4 "$web1" db-01 critical firing 12:41:00)" \
    "$(bseg b1 "$web1" web-01 critical firing 12:41:00)"
for pg in "$fast" "$arr"; do counts_ok "$pg" "bound CIs (merges)"; done
dump "$fast" > "$T_DIR/state.fast"
dump "$arr" > "$T_DIR/state.arr"
diff "$T_DIR/state.fast" "$T_DIR/state.arr" > "$T_DIR/diff" \
    || t_fail "bound CIs: stored state differs (< jsonb statement, > arrays statement):
$(cat "$T_DIR/diff")"
q2() { psql "$arr" -qAtX -c "$1"; }
want "bound: an incident merged" "$(q2 "SELECT count(*) FROM triaged.incident WHERE merged_into IS NOT NULL")" "2"
want "bound: symptoms" "$(q2 "SELECT count(*) FROM triaged.incident_alert WHERE role = 'symptom'")" "2"
want "bound: the heartbeat stored" "$(q2 "SELECT count(*) FROM triaged.heartbeat")" "1"
want "bound: m1 suppressed, then not" "$(q2 "SELECT string_agg(coalesce(h.detail->>'suppressed', '-'), ',' ORDER BY h.id) || ' ' || a.suppressed FROM triaged.alert a JOIN triaged.alert_history h ON h.alert_id = a.id WHERE a.fingerprint = 'm1' GROUP BY a.suppressed")" "true false"
want "bound: m1 has its incident" "$(q2 "SELECT count(*) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id WHERE a.fingerprint = 'm1'")" "1"
# 011's paths: every batch through _ingest_batch but the two with a
# heartbeat or a CI in maintenance, handed to the jsonb statement
want "arrays statement: engine function / jsonb statement" "$(psql "$arr" -qAtX -c "SELECT coalesce(string_agg(funcname || '=' || calls, ' ' ORDER BY funcname), '') FROM pg_stat_user_functions WHERE funcname IN ('_ingest_batch', 'ingest_all_arrays')")" "_ingest_batch=34 ingest_all_arrays=2"
# malformed batches: the same error (22023, same message) from both
# statements, nothing applied
for bad in "$(bseg x1 null r major firing 12:50:00 ',"n":0')" \
    "$(bseg b1 null r major firing 12:50:00 ',"labels":[1]')" \
    "$(bseg x2 null r bad firing 12:50:00)" \
    "$(bseg x3 null r major firing 12:50:00 ',"last":"2024-03-01T12:00:00Z"')"; do
    step=$((step + 1))
    b="[$(bseg x0 null r major firing 12:50:00),$bad]"
    for which in fast arr; do
        EXPECT_ERR=1 ingest_into $which 12:50:00 "$b" && t_fail "step $step ($which): no error"
        sed -n 's/^ERROR: *//p' "$T_DIR/err" | head -1 > "$T_DIR/err.$which"
    done
    grep -q '^triaged.ingest: bad segment #2 ' "$T_DIR/err.arr" \
        || t_fail "step $step: arrays statement: $(cat "$T_DIR/err.arr")"
    diff "$T_DIR/err.fast" "$T_DIR/err.arr" > "$T_DIR/diff" \
        || t_fail "step $step: errors differ (< jsonb, > arrays): $(cat "$T_DIR/diff")"
done
want "malformed batches applied nothing" "$(q2 "SELECT count(*) FROM triaged.alert WHERE fingerprint LIKE 'x%'")" "0"
t_log "$(wc -l < "$T_DIR/all2.out") published rows and $(wc -l < "$T_DIR/state.arr") stored rows identical (bound CIs)"
# ---- sql/021: the race of its whole new incidents: another transaction
# holds r13's new incident (not yet committed: the batch's lookup does not
# see it) when a batch of new alerts on r13 comes; the batch's INSERT waits
# for it and, once it commits, (025) leaves r13 out (ON CONFLICT DO
# NOTHING): find-or-open finds the other one and the alerts attach to it
# (021 rolled the path back and went through 018's steps). Only the number
# drawn for r13 is spent (one, next to the other transaction's).
race_inc="INSERT INTO triaged.incident (title, severity, resource, opened_at)
  VALUES ('raced', 'info', 'r13', '2024-03-01T13:00:00Z')"
num0=$(q2 "SELECT last_value FROM triaged.incident_number_seq")
hold "$race_inc" "r13"
c0=$(fn _create_alerts) g0=$(fn _find_or_open)
ingest_into arr 13:00:05 "[$(seg k1 r13 major firing 13:00:00),$(seg k2 r13 minor firing 13:00:01)]" \
    || t_fail "021 race: $(cat "$T_DIR/err")"
wait "$racer" || t_fail "the other transaction (021): $(cat "$T_DIR/race.err")"
want "021: an incident opened meanwhile: find-or-open (no _create_alerts), stats (new_alerts incidents_opened), numbers drawn" \
    "$(fn _create_alerts) $(fn _find_or_open) $(stat new_alerts) $(stat incidents_opened) $(($(q2 "SELECT last_value FROM triaged.incident_number_seq") - num0))" \
    "$c0 $((g0 + 1)) 2 0 2"
want "021: k1 and k2 joined the incident opened meanwhile, counted" "$(q2 "SELECT string_agg(a.fingerprint || ':' || i.title || ':' || i.alert_count || '/' || i.firing_count, ',' ORDER BY a.fingerprint) FROM triaged.alert a JOIN triaged.incident_alert ia ON ia.alert_id = a.id JOIN triaged.incident i ON i.id = ia.incident_id WHERE a.fingerprint IN ('k1', 'k2')")" "k1:raced:2/2,k2:raced:2/2"
want "021: one incident on r13, the events' chains intact" "$(q2 "SELECT count(*) FROM triaged.incident WHERE resource = 'r13'") $(q2 "SELECT count(*) FROM triaged.audit_verify()")" "1 0"
counts_ok "$arr" "021 race"
# ---- sql/025: the split batch of new alerts (unbound groups, some with an
# open incident, some without): the groups found attach (the end of batch
# for them only), the others' incidents are made whole by 021's statement.
# Compared with 021's _ingest_batch itself (main's: its text from its
# migration file, installed in a fourth database): every published row in
# order, and every stored row with its ids (alerts, history, incidents,
# links, events with their ids, hashes and prev_hash chains; the sequences'
# last values), but the times PostgreSQL's now() writes.
sdb=$(t_db_extra split) mdb=$(t_db_extra split021)
for pg in "$sdb" "$mdb"; do
    printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "$T_DIR/conf"
    "$TD_BUILD_DIR/triagectl" -c "$T_DIR/conf" migrate > "$T_DIR/migrate.log" 2>&1 \
        || t_fail "migrate: $(cat "$T_DIR/migrate.log")"
done
sed -n '/^CREATE OR REPLACE FUNCTION triaged._ingest_batch(/,/^END \$\$;/p' \
    "$TD_SOURCE_DIR/sql/021_fixed.sql" > "$T_DIR/batch021.sql"
grep -q 'v_folded := true' "$T_DIR/batch021.sql" || t_fail "021's _ingest_batch not found"
psql "$mdb" -qAtX -v ON_ERROR_STOP=1 -f "$T_DIR/batch021.sql" >/dev/null \
    || t_fail "cannot install 021's _ingest_batch"
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
sfn() { # NAME: the calls of one function in sdb (0: none)
    psql "$sdb" -qAtX -c "SELECT coalesce((SELECT calls FROM pg_stat_user_functions WHERE funcname = '$1'), 0)"
}
sstat() { grep '^stats|' "$T_DIR/out.split" | sed "s/.*\"$1\": \([0-9]*\).*/\1/"; }
# split NOW SEG...: the batch into sdb (025) and mdb (021), rows compared
split() {
    local now=$1 b
    shift
    b="[$(IFS=,; echo "$*")]"
    step=$((step + 1))
    into=$mdb ingest_into arr "$now" "$b"
    mv "$T_DIR/out.arr" "$T_DIR/out.021"
    into=$sdb ingest_into arr "$now" "$b"
    mv "$T_DIR/out.arr" "$T_DIR/out.split"
    diff "$T_DIR/out.021" "$T_DIR/out.split" > "$T_DIR/diff" \
        || t_fail "step $step: published rows differ (< 021's _ingest_batch, > 025's):
$(cat "$T_DIR/diff")"
    cat "$T_DIR/out.split" >> "$T_DIR/all3.out"
}
split_same() { # WHAT
    counts_ok "$sdb" "$1"
    sdump "$mdb" > "$T_DIR/sstate.021"
    sdump "$sdb" > "$T_DIR/sstate.split"
    diff "$T_DIR/sstate.021" "$T_DIR/sstate.split" > "$T_DIR/diff" \
        || t_fail "$1: stored state differs (< 021's _ingest_batch, > 025's):
$(cat "$T_DIR/diff")"
}
# s1: every group new (021's whole incidents in both); s2: rs1's last two
# alerts attach to the incident s1 opened, rs3 and rs4 are new (the split:
# no find-or-open, the end of batch for rs1's incident only)
split 14:00:05 "$(seg x1 rs1 minor firing 14:00:00)" "$(seg x2 rs1 major firing 14:00:01)" \
    "$(seg x3 rs1 minor firing 14:00:01)" "$(seg y1 rs2 warning firing 14:00:00)" \
    "$(seg y2 rs2 warning firing 14:00:02)"
fo0=$(sfn _find_or_open) fc0=$(sfn _finish_counted)
split 14:01:05 "$(seg x5 rs1 minor firing 14:01:00)" "$(seg x4 rs1 info firing 14:01:01)" \
    "$(seg z2 rs3 minor firing 14:01:01)" "$(seg z1 rs3 major firing 14:01:00)" \
    "$(seg w1 rs4 info firing 14:01:02)"
want "025: split: no find-or-open, (027) no call of the end of batch (calls)" \
    "$(sfn _find_or_open) $(sfn _finish_counted)" "$fo0 $fc0"
want "025: split: stats (new_alerts attached incidents_opened)" \
    "$(sstat new_alerts) $(sstat attached) $(sstat incidents_opened)" "5 5 2"
want "025: split: published rows (kinds in order)" \
    "$(cut -d'|' -f1,2 "$T_DIR/out.split" | sed 's/^alert.firing|//; s/^incident\.\([a-z]*\)|.*/\1/; s/^stats|//' | tr '\n' ' ')" \
    "w1 x4 x5 z1 z2 updated opened opened  "
split_same "025: a split batch"
# s3: rs3's z3 (critical) attaches to its incident (major): the end of batch
# escalates it; rs5 and rs6 are new; x1's duplicate goes the lean path
split 14:02:05 "$(seg v1 rs5 minor firing 14:02:00)" "$(seg z3 rs3 critical firing 14:02:01)" \
    "$(seg x1 rs1 minor firing 14:02:00)" "$(seg u1 rs6 major firing 14:02:00)" \
    "$(seg u2 rs6 critical firing 14:02:03)"
want "025: escalated: rs3's incident (severity priority urgency counts) and its events" \
    "$(psql "$sdb" -qAtX -c "SELECT i.severity || ' ' || i.priority || ' ' || i.urgency || ' ' || i.alert_count || '/' || i.firing_count || ' ' || string_agg(e.kind, ',' ORDER BY e.id) FROM triaged.incident i JOIN triaged.incident_event e ON e.incident_id = i.id WHERE i.resource = 'rs3' GROUP BY i.id")" \
    "critical 1 1 3/3 opened,alerts_attached,priority_changed"
want "025: escalated: stats (segments dups new_alerts incidents_opened)" \
    "$(sstat segments) $(sstat dups) $(sstat new_alerts) $(sstat incidents_opened)" "5 0 4 2"
split_same "025: a split batch that escalates"
# s4: every group has its incident (the end of batch only)
split 14:03:05 "$(seg v2 rs5 major firing 14:03:00)" "$(seg u3 rs6 minor firing 14:03:00)"
split_same "025: groups found only"
# s5: rs2's alerts resolve (its incident's resolve pending); s6: a new
# alert on rs2 (more severe) attaches next to a new resource: the end of
# batch escalates rs2's incident and cancels the pending resolve
split 14:03:35 "$(seg y1 rs2 warning resolved 14:03:30)" "$(seg y2 rs2 warning resolved 14:03:30)"
split 14:03:55 "$(seg p1 rs9 major firing 14:03:50)" "$(seg y3 rs2 minor firing 14:03:50)"
want "025: a pending resolve cancelled: rs2's incident (pending, counts) and its events" \
    "$(psql "$sdb" -qAtX -c "SELECT coalesce(i.resolve_pending_since::text, '-') || ' ' || i.alert_count || '/' || i.firing_count || ' ' || string_agg(e.kind, ',' ORDER BY e.id) FROM triaged.incident i JOIN triaged.incident_event e ON e.incident_id = i.id WHERE i.resource = 'rs2' GROUP BY i.id")" \
    "- 3/1 opened,alerts_resolved,resolve_pending,alerts_attached,priority_changed,resolve_cancelled"
split_same "025: a split batch that cancels a pending resolve"
t_log "$(wc -l < "$T_DIR/all3.out") published rows and $(wc -l < "$T_DIR/sstate.split") stored rows identical to 021's _ingest_batch"
# the race: another transaction holds rs8's new incident when a split batch
# comes (w2 attaches to rs4's incident, rs7 and rs8 are new); the INSERT
# leaves rs8 out once that transaction commits, find-or-open finds its
# incident, q1 and q2 attach to it. One number spent (rs8's), none twice;
# the incidents' rows in id order (rs4's, the other transaction's, rs7's).
race_inc="INSERT INTO triaged.incident (title, severity, resource, opened_at)
  VALUES ('raced', 'info', 'rs8', '2024-03-01T14:04:00Z')"
num0=$(psql "$sdb" -qAtX -c "SELECT last_value FROM triaged.incident_number_seq")
arr0=$arr
arr=$sdb
hold "$race_inc" "rs8"
arr=$arr0
fo0=$(sfn _find_or_open) fc0=$(sfn _finish_counted) ca0=$(sfn _create_alerts)
into=$sdb ingest_into arr 14:04:05 "[$(seg q1 rs8 major firing 14:04:01),$(seg t1 rs7 minor firing 14:04:00),$(seg w2 rs4 critical firing 14:04:00),$(seg q2 rs8 minor firing 14:04:02)]" \
    || t_fail "025 race: $(cat "$T_DIR/err")"
mv "$T_DIR/out.arr" "$T_DIR/out.split"
wait "$racer" || t_fail "the other transaction (025): $(cat "$T_DIR/race.err")"
want "025: race: find-or-open once, end of batch once (027: for rs8's only), no _create_alerts (calls)" \
    "$(sfn _find_or_open) $(sfn _finish_counted) $(sfn _create_alerts)" \
    "$((fo0 + 1)) $((fc0 + 1)) $ca0"
want "025: race: stats (new_alerts attached incidents_opened), numbers drawn" \
    "$(sstat new_alerts) $(sstat attached) $(sstat incidents_opened) $(($(psql "$sdb" -qAtX -c "SELECT last_value FROM triaged.incident_number_seq") - num0))" \
    "4 4 1 3"
want "025: race: published rows (in order)" \
    "$(psql "$sdb" -qAtX -c "SELECT string_agg(x.k, ' ' ORDER BY x.o) FROM (SELECT o, CASE WHEN l LIKE 'incident.%' THEN split_part(l, '|', 1) || ':' || (SELECT i.resource FROM triaged.incident i WHERE i.number = split_part(l, '|', 2)) ELSE split_part(l, '|', 2) END AS k FROM unnest(string_to_array(\$q\$$(cat "$T_DIR/out.split")\$q\$, E'\n')) WITH ORDINALITY t(l, o)) x")" \
    "q1 q2 t1 w2 incident.updated:rs4 incident.updated:rs8 incident.opened:rs7 "
want "025: race: q1 and q2 joined the other transaction's incident, counted; t1 opened rs7's" \
    "$(psql "$sdb" -qAtX -c "SELECT string_agg(a.fingerprint || ':' || i.title || ':' || i.alert_count || '/' || i.firing_count, ',' ORDER BY a.fingerprint) FROM triaged.alert a JOIN triaged.incident_alert ia ON ia.alert_id = a.id JOIN triaged.incident i ON i.id = ia.incident_id WHERE a.fingerprint IN ('q1', 'q2', 't1')")" \
    "q1:raced:2/2,q2:raced:2/2,t1:c-t1 on rs7:1/1"
want "025: race: one incident on rs8, every alert linked once, the chains intact" \
    "$(psql "$sdb" -qAtX -c "SELECT (SELECT count(*) FROM triaged.incident WHERE resource = 'rs8') || ' ' || (SELECT count(*) FROM triaged.alert a WHERE (SELECT count(*) FROM triaged.incident_alert ia WHERE ia.alert_id = a.id) <> 1) || ' ' || (SELECT count(*) FROM triaged.audit_verify())")" \
    "1 0 0"
counts_ok "$sdb" "025 race"
echo "test_engine_fastpaths: passed"

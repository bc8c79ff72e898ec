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
source "$(dirname "$0")/lib.sh"

fast=$(t_db_extra fast)
ref=$(t_db_extra ref)
for pg in "$fast" "$ref"; do
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
opts() { printf '{"now":"2024-03-01T%sZ","actor":"t","reopen_window_ms":1800000,"flap_threshold":3,"flap_window_ms":1800000,"resolve_grace_ms":120000,"close_after_ms":86400000}' "$1"; }

step=0
# ingest NOW SEG...: the batch into both databases, published rows compared
ingest() {
    local now=$1 b
    shift
    b="[$(IFS=,; echo "$*")]"
    step=$((step + 1))
    for which in fast ref; do
        local pg=$fast
        [ $which = ref ] && pg=$ref
        psql "$pg" -qAtX -v ON_ERROR_STOP=1 -v b="$b" -v o="$(opts "$now")" \
            > "$T_DIR/out.$which" 2> "$T_DIR/err" <<'SQL' || t_fail "step $step ($which): $(cat "$T_DIR/err")"
SELECT kind || '|' || coalesce(key, '') || '|' || payload FROM triaged.ingest_all_arrays(
  :'b'::jsonb, NULL, NULL, NULL, NULL, NULL, NULL, NULL, :'o'::jsonb);
SQL
    done
    diff "$T_DIR/out.ref" "$T_DIR/out.fast" > "$T_DIR/diff" \
        || t_fail "step $step: published rows differ (< reference, > fast):
$(cat "$T_DIR/diff")"
    cat "$T_DIR/out.fast" >> "$T_DIR/all.out"
}
tick() {
    step=$((step + 1))
    for which in fast ref; do
        local pg=$fast
        [ $which = ref ] && pg=$ref
        echo "SELECT kind || '|' || coalesce(key, '') || '|' || payload FROM triaged.tick(:'o'::jsonb);" \
            | psql "$pg" -qAtX -v ON_ERROR_STOP=1 -v o="$(opts "$1")" > "$T_DIR/out.$which" \
            || t_fail "tick at step $step ($which)"
    done
    diff "$T_DIR/out.ref" "$T_DIR/out.fast" > "$T_DIR/diff" \
        || t_fail "tick at step $step: rows differ: $(cat "$T_DIR/diff")"
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
       resolved_decided_at, encode(last_event_hash, 'hex')
  FROM triaged.incident ORDER BY id;
SELECT 'link', i.number, a.fingerprint, ia.role
  FROM triaged.incident_alert ia JOIN triaged.incident i ON i.id = ia.incident_id
  JOIN triaged.alert a ON a.id = ia.alert_id ORDER BY 2, 3;
SELECT 'event', i.number, row_number() OVER (PARTITION BY e.incident_id ORDER BY e.id), e.at,
       e.actor, e.kind, e.detail, encode(e.hash, 'hex')
  FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id
 ORDER BY 2, 3;
SELECT 'audit', count(*) FROM triaged.audit_verify();
SQL
}
dump "$fast" > "$T_DIR/state.fast"
dump "$ref" > "$T_DIR/state.ref"
diff "$T_DIR/state.ref" "$T_DIR/state.fast" > "$T_DIR/diff" \
    || t_fail "stored state differs (< reference, > fast):
$(cat "$T_DIR/diff")"
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
echo "test_engine_fastpaths: passed"

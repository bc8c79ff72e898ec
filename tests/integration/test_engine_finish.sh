#!/usr/bin/env bash
# test_engine_finish.sh — sql/020's end of batch (_finish_counted and
# _count_deltas with generic plans made once per session) does exactly what
# 018's _finish_counted and 013's _count_deltas do. Two databases with every
# migration: one as shipped, one whose two functions are those texts again
# (the reference). The same batches and ticks go into both, each database in
# ONE session, so the shipped one reuses the plans it made on the first,
# small batch (tables nearly empty) for every later batch, small and large:
# 1 to 60 touched incidents; new alerts opening and joining incidents,
# severity raised (priority_changed), resolves (alerts_resolved,
# resolve_pending), new alerts and re-fires cancelling a pending resolve,
# an acknowledged incident, auto-resolve and close by tick, re-fires that
# reopen, an alert re-firing into a new incident while its closed one still
# counts it (a count delta of an incident without a change), several
# segments of one fingerprint. Every published row (in order), the stored
# state (alerts, history, incidents with their counts and last hash, links,
# events with their hashes) must be identical, the counts must equal a
# recount, and `triagectl audit verify` must find every hash chain intact.
source "$(dirname "$0")/lib.sh"

new=$(t_db_extra new)
ref=$(t_db_extra ref)
printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$new" > "$T_DIR/conf.new"
printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$ref" > "$T_DIR/conf.ref"
for w in new ref; do
    "$TD_BUILD_DIR/triagectl" -c "$T_DIR/conf.$w" migrate > "$T_DIR/migrate.log" 2>&1 \
        || t_fail "migrate ($w): $(cat "$T_DIR/migrate.log")"
done
# the reference: 018's _finish_counted and 013's _count_deltas, from their files
sed -n '/^CREATE OR REPLACE FUNCTION triaged._finish_counted(/,/^END \$\$;/p' \
    "$TD_SOURCE_DIR/sql/018_lean_dups.sql" > "$T_DIR/ref.sql"
sed -n '/^CREATE FUNCTION triaged._count_deltas(/,/^\$\$;/p' "$TD_SOURCE_DIR/sql/013_engine_counts.sql" \
    | sed '1s/^CREATE FUNCTION/CREATE OR REPLACE FUNCTION/' >> "$T_DIR/ref.sql"
grep -q 'plan_cache_mode = auto' "$T_DIR/ref.sql" || t_fail "018's _finish_counted not found"
grep -q 'LANGUAGE sql STABLE' "$T_DIR/ref.sql" || t_fail "013's _count_deltas not found"
psql "$ref" -qAtX -v ON_ERROR_STOP=1 -f "$T_DIR/ref.sql" > /dev/null 2> "$T_DIR/err" \
    || t_fail "cannot install the reference: $(cat "$T_DIR/err")"
# the shipped ones are 020's
want_cfg() { # FUNCTION: its settings in the shipped database
    psql "$new" -qAtX -c "SELECT array_to_string(proconfig, ' ') FROM pg_proc WHERE proname = '$1'"
}
for f in _finish_counted _count_deltas; do
    case "$(want_cfg $f)" in
        *plan_cache_mode=force_generic_plan*enable_seqscan=off*) ;;
        *) t_fail "$f: not 020's (settings: $(want_cfg $f))" ;;
    esac
done

# The script: a session helper b(now, segments) that sends a batch through
# ingest_arrays (the daemon's statement) and prints its rows, t(now,
# close_after_ms) for ticks. Segments are "fp resource severity status time".
cat > "$T_DIR/helper.sql" <<'SQL'
CREATE FUNCTION pg_temp.opts(p_now text, p_close bigint DEFAULT 86400000) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('now', '2024-03-01T' || p_now || 'Z', 'actor', 't',
                            'reopen_window_ms', 1800000, 'flap_threshold', 20,
                            'flap_window_ms', 1800000, 'resolve_grace_ms', 120000,
                            'close_after_ms', p_close)
$$;
CREATE FUNCTION pg_temp.b(p_now text, p_segs text[]) RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT r.kind || '|' || coalesce(r.key, '') || '|' || r.payload
    FROM (SELECT array_agg(f[1] ORDER BY o) fp, array_agg('test'::text ORDER BY o) src,
                 array_agg(f[2] ORDER BY o) res, array_agg('c-' || f[1] ORDER BY o) chk,
                 array_agg(NULL::text ORDER BY o) dk, array_agg(NULL::bigint ORDER BY o) ci,
                 array_agg(f[1] || ' ' || f[4] ORDER BY o) sm,
                 array_agg('{"env":"t"}'::jsonb ORDER BY o) lab,
                 array_agg(f[3] ORDER BY o) sev, array_agg(f[4] ORDER BY o) st,
                 array_agg(CASE WHEN f[4] = 'resolved' THEN 0 ELSE 1 END::bigint ORDER BY o) n,
                 array_agg(('2024-03-01T' || f[5] || 'Z')::timestamptz ORDER BY o) t0,
                 array_agg(('2024-03-01T' || f[5] || 'Z')::timestamptz ORDER BY o) t1
            FROM unnest(p_segs) WITH ORDINALITY s(seg, o),
                 LATERAL string_to_array(s.seg, ' ') f) x,
         triaged.ingest_arrays(x.fp, x.src, x.res, x.chk, x.dk, x.ci, x.sm, x.lab, x.sev, x.st,
                               x.n, x.t0, x.t1, NULL, NULL, pg_temp.opts(p_now)) r
$$;
CREATE FUNCTION pg_temp.t(p_now text, p_close bigint DEFAULT 86400000) RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT kind || '|' || coalesce(key, '') || '|' || payload
    FROM triaged.tick(pg_temp.opts(p_now, p_close))
$$;
SQL
# segs FMT FROM TO ...: one segment per i in FROM..TO, FMT with %d for i
segs() {
    local fmt=$1 from=$2 to=$3 i out=()
    for ((i = from; i <= to; i++)); do
        # shellcheck disable=SC2059
        out+=("$(printf "$fmt" "$i" "$i")")
    done
    (IFS=,; echo "${out[*]}")
}
# batch NOW SEGS...: one batch (SEGS: comma-separated "fp res sev status time")
step=0
batch() {
    local now=$1
    shift
    step=$((step + 1))
    printf '\\echo step %s\nSELECT * FROM pg_temp.b(%s, string_to_array(%s, %s));\n' \
        "$step" "'$now'" "'$(IFS=,; echo "$*")'" "','" >> "$T_DIR/script.sql"
}
tick() {
    step=$((step + 1))
    printf '\\echo step %s (tick)\nSELECT * FROM pg_temp.t(%s, %s);\n' "$step" "'$1'" "${2:-86400000}" \
        >> "$T_DIR/script.sql"
}
: > "$T_DIR/script.sql"
# 1. one small batch first (the shipped database makes its plans on it)
batch 09:59:05 "z1 rz major firing 09:59:00"
# 2. 40 incidents opened, three alerts each (120 new alerts)
batch 10:00:05 "$(segs 'p%d-a r%d major firing 10:00:00' 1 40)" \
    "$(segs 'p%d-b r%d minor firing 10:00:01' 1 40)" "$(segs 'p%d-c r%d warning firing 10:00:02' 1 40)"
# 3. one new alert joins each of them; critical on r1-r5 (priority_changed)
batch 10:01:05 "$(segs 'p%d-d r%d critical firing 10:01:00' 1 5)" \
    "$(segs 'p%d-d r%d major firing 10:01:00' 6 40)"
# 4. r1-r20: all four alerts resolve (resolve_pending); r21-r30: one does
batch 10:02:05 "$(segs 'p%d-a r%d major resolved 10:02:00' 1 30)" \
    "$(segs 'p%d-b r%d minor resolved 10:02:00' 1 20)" "$(segs 'p%d-c r%d warning resolved 10:02:00' 1 20)" \
    "$(segs 'p%d-d r%d critical resolved 10:02:00' 1 5)" "$(segs 'p%d-d r%d major resolved 10:02:00' 6 20)"
# 5. a single incident: a new alert cancels r1's pending resolve
batch 10:02:35 "p1-e r1 major firing 10:02:30"
# 6. re-fires cancel r2's and r3's (r3: a severity change too), one
#    fingerprint fires, resolves and fires again (r4), r31 acknowledged first
echo "UPDATE triaged.incident SET status = 'acknowledged', acknowledged_at = '2024-03-01T10:02:40Z' WHERE resource = 'r31';" >> "$T_DIR/script.sql"
batch 10:02:45 "p2-a r2 major firing 10:02:40" "p3-b r3 critical firing 10:02:40" \
    "p4-a r4 major firing 10:02:40" "p4-a r4 major resolved 10:02:41" "p4-a r4 major firing 10:02:42" \
    "p31-e r31 minor firing 10:02:40"
# 7. ticks: the pending incidents (r5-r20) resolve, then close
tick 10:10:00
# 8. r5's alert re-fires (reopens), r6 gets a new alert (a new incident),
#    r21 one resolve: three incidents, then one
batch 10:11:05 "p5-a r5 major firing 10:11:00" "p6-x r6 minor firing 10:11:00" \
    "p21-b r21 minor resolved 10:11:00"
batch 10:11:15 "p22-b r22 critical firing 10:11:10"
tick 23:50:00 60000
# 9. r7's alert re-fires into a new incident; its closed one still counts it
#    (a delta without a change), then it resolves there too
batch 23:55:05 "p7-a r7 major firing 23:55:00" "p8-a r8 major firing 23:55:00"
batch 23:56:05 "p7-a r7 major resolved 23:56:00"
# 10. a large batch last: a new alert on each of r21-r40 and 40 new resources
batch 23:57:05 "$(segs 'p%d-f r%d major firing 23:57:00' 21 40)" "$(segs 'q%d r-q%d info firing 23:57:00' 1 40)"
batch 23:58:05 "$(segs 'p%d-f r%d major resolved 23:58:00' 21 40)" "$(segs 'q%d r-q%d info resolved 23:58:00' 1 20)"

for w in new ref; do
    pg=$new
    [ $w = ref ] && pg=$ref
    cat "$T_DIR/helper.sql" "$T_DIR/script.sql" \
        | psql "$pg" -qAtX -v ON_ERROR_STOP=1 > "$T_DIR/out.$w" 2> "$T_DIR/err" \
        || t_fail "$w: $(cat "$T_DIR/err")"
done
diff "$T_DIR/out.ref" "$T_DIR/out.new" > "$T_DIR/diff" \
    || t_fail "published rows differ (< reference, > shipped):
$(head -40 "$T_DIR/diff")"

dump() {
    psql "$1" -qAtX -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'alert', fingerprint, status, severity, occurrences, first_seen, last_seen, fired_at,
       resolved_at, state_changed_at, flapping, summary
  FROM triaged.alert ORDER BY fingerprint;
SELECT 'history', a.fingerprint, row_number() OVER (PARTITION BY a.id ORDER BY h.id), h.at,
       h.from_status, h.to_status, h.severity, h.occurrences, h.detail
  FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id
 ORDER BY a.fingerprint, 3;
SELECT 'incident', id, number, title, status, priority, impact, urgency, severity, opened_at,
       acknowledged_at, resolved_at, closed_at, reopen_count, resolve_pending_since, resolve_at,
       resolved_decided_at, encode(last_event_hash, 'hex'), alert_count, firing_count
  FROM triaged.incident ORDER BY id;
SELECT 'link', i.number, a.fingerprint, ia.role
  FROM triaged.incident_alert ia JOIN triaged.incident i ON i.id = ia.incident_id
  JOIN triaged.alert a ON a.id = ia.alert_id ORDER BY 2, 3;
SELECT 'event', i.number, e.id, e.at, e.actor, e.kind, e.detail, encode(e.prev_hash, 'hex'),
       encode(e.hash, 'hex')
  FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id
 ORDER BY e.id;
SQL
}
dump "$new" > "$T_DIR/state.new"
dump "$ref" > "$T_DIR/state.ref"
diff "$T_DIR/state.ref" "$T_DIR/state.new" > "$T_DIR/diff" \
    || t_fail "stored state differs (< reference, > shipped):
$(head -40 "$T_DIR/diff")"
for w in new ref; do
    pg=$new
    [ $w = ref ] && pg=$ref
    bad=$(psql "$pg" -qAtX -c "SELECT string_agg(number || ' kept ' || alert_count || '/' || firing_count || ' counted ' || links || '/' || firing_links, '; ') FROM triaged.incident_counts_verify()")
    [ -z "$bad" ] || t_fail "$w: kept counts differ from a recount: $bad"
    "$TD_BUILD_DIR/triagectl" -c "$T_DIR/conf.$w" audit verify > "$T_DIR/audit" 2>&1 \
        || t_fail "$w: triagectl audit verify: $(cat "$T_DIR/audit")"
done

# the scenario did exercise what it is meant to (shipped database)
want() { # NAME GOT WANT
    [ "$2" = "$3" ] || t_fail "$1: got '$2', want '$3'"
    t_log "ok: $1 = $3"
}
q() { psql "$new" -qAtX -c "$1"; }
for k in opened alerts_attached priority_changed alerts_resolved resolve_pending \
    resolve_cancelled alerts_refired reopened resolved closed; do
    n=$(q "SELECT count(*) FROM triaged.incident_event WHERE kind = '$k'")
    [ "$n" -gt 0 ] || t_fail "no '$k' event: the scenario missed it"
done
want "r31 acknowledged, still open" "$(q "SELECT status FROM triaged.incident WHERE resource = 'r31'")" "acknowledged"
want "r7's closed incident counts its alert, resolved" \
    "$(q "SELECT alert_count || '/' || firing_count FROM triaged.incident WHERE resource = 'r7' AND status = 'closed'")" "4/0"
want "largest batch: incidents touched" "$(grep -c '^incident\.' <(sed -n '/^step 13$/,/^step 14$/p' "$T_DIR/out.new"))" "60"
t_log "$(wc -l < "$T_DIR/out.new") published rows and $(wc -l < "$T_DIR/state.new") stored rows identical"
echo "test_engine_finish: passed"

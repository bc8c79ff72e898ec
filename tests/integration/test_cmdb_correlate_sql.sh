#!/usr/bin/env bash
# test_cmdb_correlate_sql.sh — sql/010's set-based correlation does exactly
# what 003's did. The same CMDB, batches and ticks go into two databases with
# every migration: one as shipped, one whose group routing (find-or-open:
# the engine's, see below), correlation and batch descriptions are 003's
# text again, with 003's GIN
# index on incident.up_ci_ids (the reference). Every published row (in
# order) and the stored state (incidents with their CI, impact, priority,
# title and merge, impacted services, alert links and roles, timeline events
# with their hash chain) must be identical. The scenario: downstream
# incidents first, then their upstream CI's (merged into it), a storm in one
# batch (routed to the switch's incident), a CI on a dependency cycle, an
# alert past the correlation window (its own incident), segments with and
# without the daemon's descriptions ("up", "svc": JSON arrays, and array
# literals in strings as the daemon writes them), a resolve, a tick and a
# re-fire that reopens (correlated again), an alert that re-fires bound to
# another CI (its role fixed); then, with 1,100 other incidents
# open in the window, the same kinds of merge again (so 010 takes its other
# paths: a probe per upstream CI, and a walk down ci_relation instead of a
# pass over the open incidents), checked to have happened; last, an alert
# that leaves a maintenance window at a tick, routed by the tick to an
# upstream incident: a symptom at once, and incident_role_check left empty
# (sql/017).
source "$(dirname "$0")/lib.sh"

fast=$(t_db_extra fast)
ref=$(t_db_extra ref)
for pg in "$fast" "$ref"; do
    printf '[postgres]\nconninfo = %s\n[redis]\nurl = redis://127.0.0.1:1/0\n' "$pg" > "$T_DIR/conf"
    "$TD_BUILD_DIR/triagectl" -c "$T_DIR/conf" migrate > "$T_DIR/migrate.log" 2>&1 \
        || t_fail "migrate: $(cat "$T_DIR/migrate.log")"
done
# 003's functions as they were, from its migration file
# (find-or-open is the engine's, 003's signature kept by 010: since 013 it
# finds a group's open incident before it inserts, so a batch with such a
# group no longer spends an incident number on it as 003's INSERT ... ON
# CONFLICT did, and the numbers of the incidents it opens differ)
for f in _batch_ci_prepare _ci_up _ci_svc _route _open_incidents _fix_roles _correlate; do
    sed -n "/^CREATE \(OR REPLACE \)\?FUNCTION triaged\.$f(/,/^END \$\$;/p" "$TD_SOURCE_DIR/sql/003_cmdb.sql" \
        | sed '1s/^CREATE \(OR REPLACE \)\?FUNCTION/CREATE OR REPLACE FUNCTION/'
done > "$T_DIR/ref.sql"
[ "$(grep -c '^CREATE OR REPLACE FUNCTION' "$T_DIR/ref.sql")" = 7 ] || t_fail "003's functions not found"
echo "CREATE INDEX incident_up_idx ON triaged.incident USING gin (up_ci_ids) WITH (fastupdate = off);" \
    >> "$T_DIR/ref.sql"
psql "$ref" -qAtX -v ON_ERROR_STOP=1 -f "$T_DIR/ref.sql" > /dev/null 2> "$T_DIR/err" \
    || t_fail "cannot install 003's functions: $(cat "$T_DIR/err")"

# the CMDB (ids fixed): sw1 <- h1, h2 <- a1, a2 (a2 also on a1), a3, x1;
# x1 <-> x2 a cycle; sw2 <- h3 <- a4 <- a5; a chain d1 <- d2 <- ... <- d8;
# y1 alone;
# services S1 (tier 1: a1),
# S2 (tier 2: a2, a3), S3 (tier 3: x1, a5)
for pg in "$fast" "$ref"; do
    psql "$pg" -qAtX -v ON_ERROR_STOP=1 > /dev/null <<'SQL' || t_fail "CMDB"
INSERT INTO triaged.ci (id, name, kind) VALUES
  (1, 'sw1', 'switch'), (2, 'h1', 'host'), (3, 'h2', 'host'), (4, 'a1', 'application'),
  (5, 'a2', 'application'), (6, 'a3', 'application'), (7, 'x1', 'application'),
  (8, 'x2', 'application'), (9, 'sw2', 'switch'), (10, 'h3', 'host'),
  (11, 'a4', 'application'), (12, 'a5', 'application');
INSERT INTO triaged.ci (id, name, kind) SELECT 12 + k, 'd' || k, 'application' FROM generate_series(1, 8) k;
INSERT INTO triaged.ci (id, name, kind) VALUES (21, 'y1', 'application');
INSERT INTO triaged.ci_relation (child_id, parent_id) SELECT 13 + k, 12 + k FROM generate_series(1, 7) k;
INSERT INTO triaged.ci_relation (child_id, parent_id, kind) VALUES
  (2, 1, 'connected_to'), (3, 1, 'connected_to'), (4, 2, 'runs_on'), (5, 2, 'runs_on'),
  (5, 4, 'depends_on'), (6, 3, 'runs_on'), (7, 3, 'runs_on'), (7, 8, 'depends_on'),
  (8, 7, 'depends_on'), (10, 9, 'connected_to'), (11, 10, 'runs_on'), (12, 11, 'depends_on');
INSERT INTO triaged.service (id, name, tier) VALUES (1, 'S1', 1), (2, 'S2', 2), (3, 'S3', 3);
INSERT INTO triaged.service_ci (service_id, ci_id) VALUES (1, 4), (2, 5), (2, 6), (3, 7), (3, 12);
SQL
done

# seg FP CI SEVERITY STATUS FIRST [d|s]: a segment on CI id CI (resource its
# name; "-": unbound, resource FP); with d, a description too ("up", "svc"
# as JSON arrays), with s as the daemon writes it (array literals in
# strings, "{3,1}")
seg() {
    local n=1 ci=$2 res
    [ "$4" = resolved ] && n=0
    res=$(psql "$fast" -qAtX -c "SELECT coalesce((SELECT name FROM triaged.ci WHERE id = ${ci/-/0}), '$1')")
    [ "$ci" = - ] && ci=null
    local desc=""
    if [ "${6:-}" = d ]; then
        desc=$(psql "$fast" -qAtX -c "SELECT ',\"up\":' || to_jsonb(triaged.ci_upstream($ci))::text || ',\"svc\":' || to_jsonb(triaged.ci_impacted_services($ci))::text")
    elif [ "${6:-}" = s ]; then   # as the daemon writes them: array literals in strings
        desc=$(psql "$fast" -qAtX -c "SELECT ',\"up\":' || to_jsonb(triaged.ci_upstream($ci)::text)::text || ',\"svc\":' || to_jsonb(triaged.ci_impacted_services($ci)::text)::text")
    fi
    printf '{"fp":"%s","source":"test","resource":"%s","check":"down","dedup_key":null,"ci_id":%s,"summary":null,"labels":{},"severity":"%s","status":"%s","n":%s,"first":"2024-03-01T%sZ","last":"2024-03-01T%sZ"%s}' \
        "$1" "$res" "$ci" "$3" "$4" "$n" "$5" "$5" "$desc"
}
opts() { printf '{"now":"2024-03-01T%sZ","actor":"t","reopen_window_ms":1800000,"resolve_grace_ms":60000,"close_after_ms":86400000,"correlation_window_ms":600000}' "$1"; }

step=0
# run NOW BATCH_FILE: the batch into both databases, published rows compared
run() {
    step=$((step + 1))
    for which in fast ref; do
        local pg=$fast
        [ $which = ref ] && pg=$ref
        psql "$pg" -qAtX -v ON_ERROR_STOP=1 -v o="$(opts "$1")" \
            > "$T_DIR/out.$which" 2> "$T_DIR/err" <<SQL || t_fail "step $step ($which): $(cat "$T_DIR/err")"
\\set b \`cat $2\`
SELECT kind || '|' || coalesce(key, '') || '|' || payload
  FROM triaged.ingest(:'b'::jsonb, '[]', :'o'::jsonb) WHERE kind <> 'stats';
SQL
    done
    diff "$T_DIR/out.ref" "$T_DIR/out.fast" > "$T_DIR/diff" \
        || t_fail "step $step: published rows differ (< reference, > 010):
$(cat "$T_DIR/diff")"
    cat "$T_DIR/out.fast" >> "$T_DIR/all.out"
}
ingest() {
    local now=$1
    shift
    echo "[$(IFS=,; echo "$*")]" > "$T_DIR/batch.json"
    run "$now" "$T_DIR/batch.json"
}
tick() {
    step=$((step + 1))
    for which in fast ref; do
        local pg=$fast
        [ $which = ref ] && pg=$ref
        echo "SELECT kind || '|' || coalesce(key, '') || '|' || payload FROM triaged.tick(:'o'::jsonb) WHERE kind <> 'stats';" \
            | psql "$pg" -qAtX -v ON_ERROR_STOP=1 -v o="$(opts "$1")" > "$T_DIR/out.$which" \
            || t_fail "tick at step $step ($which)"
    done
    diff "$T_DIR/out.ref" "$T_DIR/out.fast" > "$T_DIR/diff" \
        || t_fail "tick at step $step: rows differ: $(cat "$T_DIR/diff")"
}
q() { psql "$fast" -qAtX -c "$1"; }
want() { # NAME GOT WANT
    [ "$2" = "$3" ] || t_fail "$1: got '$2', want '$3'"
    t_log "ok: $1 = $3"
}
inc_of() { q "SELECT coalesce(i.merged_into::text, 'open') FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE c.name = '$1' ORDER BY i.id DESC LIMIT 1"; }

# downstream first: a2 and a3 (described), then h1 (not: SQL walks)
ingest 10:00:05 "$(seg f-a2 5 major firing 10:00:00 d)" "$(seg f-a3 6 minor firing 10:00:01 d)"
ingest 10:01:05 "$(seg f-h1 2 critical firing 10:01:00)"
want "a2's incident merged into h1's" "$(q "SELECT m.ci_id FROM triaged.incident i JOIN triaged.incident m ON m.id = i.merged_into WHERE i.ci_id = 5")" "2"
# one batch: the switch, h2 and x1 (on a cycle): routed to sw1's, which
# absorbs h1's and a3's
ingest 10:02:05 "$(seg f-x1 7 major firing 10:02:00 s)" "$(seg f-h2 3 major firing 10:02:00)" \
    "$(seg f-sw1 1 critical firing 10:02:00 s)"
want "open incidents on sw1's side" "$(q "SELECT string_agg(c.name, ',' ORDER BY c.name) FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL")" "sw1"
want "alerts in sw1's incident (cause: sw1 only)" "$(q "SELECT string_agg(a.fingerprint || ':' || ia.role, ',' ORDER BY a.fingerprint) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id JOIN triaged.incident i ON i.id = ia.incident_id WHERE i.ci_id = 1")" "f-a2:symptom,f-a3:symptom,f-h1:symptom,f-h2:symptom,f-sw1:cause,f-x1:symptom"
# x2 (cycle with x1): joins too; its description malformed ("up" not a
# list: counts as not given, the graph is walked)
ingest 10:03:05 "$(seg f-x2 8 warning firing 10:03:00 | sed 's/}$/,"up":"junk","svc":[3]}/')"
# one batch of every kind of group (017 answers the first before the
# others): sw1 again (its incident open: found), a1 (no incident of its
# own: routed to sw1's, a symptom), y1 (unrelated: its own incident), and
# an unbound alert
ingest 10:03:35 "$(seg f-sw1b 1 major firing 10:03:30 s)" "$(seg f-a1r 4 minor firing 10:03:30 s)" \
    "$(seg f-y1 21 major firing 10:03:30 s)" "$(seg u-mix - minor firing 10:03:30)"
want "a mixed batch: where each alert went" "$(q "SELECT string_agg(a.fingerprint || '>' || coalesce(c.name, 'unbound') || ':' || ia.role, ',' ORDER BY a.fingerprint) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id JOIN triaged.incident i ON i.id = ia.incident_id LEFT JOIN triaged.ci c ON c.id = i.ci_id WHERE a.fingerprint IN ('f-sw1b', 'f-a1r', 'f-y1', 'u-mix')")" "f-a1r>sw1:symptom,f-sw1b>sw1:cause,f-y1>y1:cause,u-mix>unbound:cause"
# the chain, a few incidents open (010 decides from one pass over them): d8;
# then d4, which absorbs d8's; then d6, which joins d4's
ingest 10:05:05 "$(seg f-d8 20 minor firing 10:05:00 d)"
ingest 10:06:05 "$(seg f-d4 16 minor firing 10:06:00 s)"
want "d8's incident merged into d4's" "$(q "SELECT m.ci_id FROM triaged.incident i JOIN triaged.incident m ON m.id = i.merged_into WHERE i.ci_id = 20")" "16"
ingest 10:07:05 "$(seg f-d6 18 major firing 10:07:00 d)"
want "d6's alert routed to d4's incident" "$(q "SELECT i.ci_id || ':' || ia.role FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id JOIN triaged.incident i ON i.id = ia.incident_id WHERE a.fingerprint = 'f-d6'")" "16:symptom"
# a1, 30 minutes later: past the window of sw1's incident, its own
ingest 10:32:05 "$(seg f-a1 4 major firing 10:32:00 d)"
want "a1 past the window: its own incident" "$(inc_of a1)" "open"
# a resolve, a tick (resolved), and a re-fire that reopens a1's
ingest 10:33:05 "$(seg f-a1 4 major resolved 10:33:00)"
tick 10:35:00
ingest 10:36:05 "$(seg f-a1 4 major firing 10:36:00 d)"
want "a1's incident reopened" "$(q "SELECT reopen_count FROM triaged.incident WHERE ci_id = 4")" "1"

# 1,100 other incidents open in the window (unbound)
segs=()
for i in $(seq -w 1 1100); do segs+=("$(printf '{"fp":"u%s","source":"test","resource":"u%s","check":"down","dedup_key":null,"ci_id":null,"summary":null,"labels":{},"severity":"minor","status":"firing","n":1,"first":"2024-03-01T10:40:00Z","last":"2024-03-01T10:40:00Z"}' "$i" "$i")"); done
ingest 10:40:05 "${segs[@]}"
want "open incidents in the window" "$(q "SELECT count(*) FROM triaged.incident WHERE status IN ('new', 'acknowledged') AND opened_at >= '2024-03-01 10:30Z'")" "1101"
# a5, then a4 (absorbs a5's: found by a walk down ci_relation), then h3 and
# a batch of sw2 (absorbs h3's; a4's merged into h3's before)
ingest 10:41:05 "$(seg f-a5 12 minor firing 10:41:00 d)"
ingest 10:42:05 "$(seg f-a4 11 major firing 10:42:00)"
want "a5's incident merged into a4's" "$(q "SELECT m.ci_id FROM triaged.incident i JOIN triaged.incident m ON m.id = i.merged_into WHERE i.ci_id = 12")" "11"
ingest 10:43:05 "$(seg f-h3 10 major firing 10:43:00 s)"
ingest 10:44:05 "$(seg f-sw2 9 critical firing 10:44:00 d)" "$(seg u0001 - minor firing 10:44:00)"
want "open incident of sw2's side" "$(q "SELECT string_agg(c.name, ',') FROM triaged.incident i JOIN triaged.ci c ON c.id = i.ci_id WHERE i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL AND c.id IN (9, 10, 11, 12)")" "sw2"
want "sw2's incident: impact from S3 (tier 3), P3 with critical" "$(q "SELECT impact || '/' || priority FROM triaged.incident WHERE ci_id = 9 AND merged_into IS NULL")" "3/3"
# an alert that re-fires on another CI while its incident is open stays in
# it, now a symptom (bound to d2, in d1's incident)
ingest 10:45:05 "$(seg f-rb 13 major firing 10:45:00 s)"
ingest 10:45:35 "$(seg f-rb 13 major resolved 10:45:30)"
ingest 10:46:05 "$(seg f-rb 14 major firing 10:46:00 s)"
want "the rebound alert in d1's incident" "$(q "SELECT i.ci_id || ':' || a.ci_id || ':' || ia.role FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id JOIN triaged.incident i ON i.id = ia.incident_id WHERE a.fingerprint = 'f-rb'")" "13:14:symptom"
# an alert on a5 during a maintenance window of a5 (suppressed: no
# incident); the tick after the window gives it one: routed to sw2's
# incident (a5's own was merged), a symptom at once, and nothing left in
# incident_role_check (017: the tick's routing left its rows there)
for pg in "$fast" "$ref"; do
    psql "$pg" -qAtX -v ON_ERROR_STOP=1 -c "INSERT INTO triaged.maintenance (ci_id, during) VALUES (12, '[2024-03-01 10:46:30Z, 2024-03-01 10:48:00Z)')" > /dev/null \
        || t_fail "maintenance"
done
ingest 10:47:05 "$(seg f-mt 12 major firing 10:47:00 s)"
want "the alert in maintenance: suppressed, no incident" "$(q "SELECT a.suppressed || ':' || count(ia.*) FROM triaged.alert a LEFT JOIN triaged.incident_alert ia ON ia.alert_id = a.id WHERE a.fingerprint = 'f-mt' GROUP BY a.suppressed")" "true:0"
tick 10:48:30
want "the alert after maintenance: routed to sw2's incident by the tick, a symptom" "$(q "SELECT i.ci_id || ':' || ia.role FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id JOIN triaged.incident i ON i.id = ia.incident_id WHERE a.fingerprint = 'f-mt'")" "9:symptom"
want "incidents whose roles are still to check, after the tick's routing" "$(q "SELECT count(*) FROM triaged.incident_role_check")" "0"
tick 10:50:00
want "incidents whose roles are still to check" "$(q "SELECT count(*) FROM triaged.incident_role_check")" "0"

# the stored state, ids replaced by fingerprints and incident numbers
dump() {
    psql "$1" -qAtX -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'incident', i.number, i.ci_id, i.title, i.status, i.priority, i.impact, i.urgency,
       i.severity, i.opened_at, i.resolved_at, i.closed_at, i.reopen_count, m.number,
       i.up_ci_ids, encode(i.last_event_hash, 'hex')
  FROM triaged.incident i LEFT JOIN triaged.incident m ON m.id = i.merged_into
 WHERE i.ci_id IS NOT NULL ORDER BY i.id;
SELECT 'service', i.number, s.name
  FROM triaged.incident_service x JOIN triaged.incident i ON i.id = x.incident_id
  JOIN triaged.service s ON s.id = x.service_id ORDER BY 2, 3;
SELECT 'link', i.number, a.fingerprint, ia.role
  FROM triaged.incident_alert ia JOIN triaged.incident i ON i.id = ia.incident_id
  JOIN triaged.alert a ON a.id = ia.alert_id WHERE i.ci_id IS NOT NULL ORDER BY 2, 3;
SELECT 'event', i.number, row_number() OVER (PARTITION BY e.incident_id ORDER BY e.id), e.at,
       e.actor, e.kind, e.detail, encode(e.hash, 'hex')
  FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id
 WHERE i.ci_id IS NOT NULL ORDER BY 2, 3;
SELECT 'unbound', count(*), count(*) FILTER (WHERE status = 'new'), max(number)
  FROM triaged.incident WHERE ci_id IS NULL;
SELECT 'audit', count(*) FROM triaged.audit_verify();
SQL
}
dump "$fast" > "$T_DIR/state.fast"
dump "$ref" > "$T_DIR/state.ref"
diff "$T_DIR/state.ref" "$T_DIR/state.fast" > "$T_DIR/diff" \
    || t_fail "stored state differs (< reference, > 010):
$(cat "$T_DIR/diff")"
want "merges (merged_into events)" "$(q "SELECT count(*) FROM triaged.incident_event WHERE kind = 'merged_into'")" "$(q "SELECT count(*) FROM triaged.incident WHERE merged_into IS NOT NULL")"
want "audit chain intact" "$(q "SELECT count(*) FROM triaged.audit_verify()")" "0"
t_log "$(wc -l < "$T_DIR/all.out") published rows and $(wc -l < "$T_DIR/state.fast") stored rows identical"

# what the foreign keys to ci and service did, 010's statement triggers do
fails() { # NAME SQL: must fail with foreign_key_violation (23503)
    local out
    out=$(psql "$fast" -qAtX -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "$2" 2>&1) && t_fail "$1: accepted"
    grep -q 23503 <<<"$out" || t_fail "$1: $out"
    t_log "ok: $1 refused: $(grep -m1 ERROR <<<"$out")"
}
fails "a CI an incident refers to deleted" "DELETE FROM triaged.ci WHERE id = 9"
fails "an alert on a CI that does not exist" "INSERT INTO triaged.alert (fingerprint, source, resource, check_name, severity, status, ci_id, occurrences, first_seen, last_seen, state_changed_at) SELECT 'zz', source, resource, check_name, severity, status, 999, 1, first_seen, last_seen, state_changed_at FROM triaged.alert LIMIT 1"
fails "an incident rebound to a CI that does not exist" "UPDATE triaged.incident SET ci_id = 999 WHERE ci_id = 9"
fails "an impacted service that does not exist" "INSERT INTO triaged.incident_service (incident_id, service_id) SELECT id, 999 FROM triaged.incident WHERE ci_id = 9 AND merged_into IS NULL"
fails "a CI id changed" "UPDATE triaged.ci SET id = 99 WHERE id = 9"
fails "an alert id changed (sql/023's AFTER trigger)" "UPDATE triaged.alert SET id = id + 1000000 WHERE id = (SELECT min(id) FROM triaged.alert)"
fails "an incident id changed" "UPDATE triaged.incident SET id = id + 1000000 WHERE id = (SELECT min(id) FROM triaged.incident)"
want "a CI no alert or incident refers to deleted" "$(q "INSERT INTO triaged.ci (id, name) VALUES (99, 'spare'); DELETE FROM triaged.ci WHERE id = 99; SELECT count(*) FROM triaged.ci")" "21"
# a delete of a CI and a write referring to it, at once: whichever comes
# second waits for the first to end, then fails (as with the foreign keys)
declare -A S_FD S_PID
session() { # NAME: a psql session reading $T_DIR/NAME.in
    mkfifo "$T_DIR/$1.in"
    (for f in "${S_FD[@]}"; do exec {f}>&-; done
     PGAPPNAME="corr_$1" exec psql "$fast" -qAtX -v VERBOSITY=verbose < "$T_DIR/$1.in" > "$T_DIR/$1.out" 2>&1) &
    S_PID[$1]=$!
    T_PIDS+=("$!")
    exec {fd}> "$T_DIR/$1.in"
    S_FD[$1]=$fd
}
send() { printf '%s\n' "$2" >&"${S_FD[$1]}"; }
end_session() { local fd=${S_FD[$1]}; exec {fd}>&-; wait "${S_PID[$1]}"; }
waits() { [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'corr_$1' AND wait_event_type = 'Lock'")" = 1 ]; }
new_alert="INSERT INTO triaged.alert (fingerprint, source, resource, check_name, severity, status, ci_id, occurrences, first_seen, last_seen, state_changed_at) SELECT 'zz-' || txid_current(), source, resource, check_name, severity, status, 97, 1, first_seen, last_seen, state_changed_at FROM triaged.alert LIMIT 1;"
q "INSERT INTO triaged.ci (id, name) VALUES (97, 'spare97')" > /dev/null
session w
send w "BEGIN; $new_alert SELECT 'w-in';"
t_wait_until 30 "the writer's insert" grep -qx 'w-in' "$T_DIR/w.out"
session d
send d "DELETE FROM triaged.ci WHERE id = 97;"
t_wait_until 30 "the delete waiting for the writer" waits d
send w "COMMIT;"
end_session w
end_session d
grep -q 23503 "$T_DIR/d.out" || t_fail "delete after a concurrent writer: $(cat "$T_DIR/d.out")"
t_log "ok: a CI deleted while a batch wrote an alert on it: the delete waited, then failed"
q "DELETE FROM triaged.alert WHERE ci_id = 97" > /dev/null
session d2
send d2 "BEGIN; DELETE FROM triaged.ci WHERE id = 97; SELECT 'd-in';"
t_wait_until 30 "the delete" grep -qx 'd-in' "$T_DIR/d2.out"
session w2
send w2 "$new_alert"
t_wait_until 30 "the writer waiting for the delete" waits w2
send d2 "COMMIT;"
end_session d2
end_session w2
grep -q 23503 "$T_DIR/w2.out" || t_fail "write after a concurrent delete: $(cat "$T_DIR/w2.out")"
want "alerts on the deleted CI" "$(q "SELECT count(*) FROM triaged.alert WHERE ci_id = 97")" "0"
t_log "ok: an alert written while its CI was deleted: the write waited, then failed"
want "deleting a service deletes its impacted rows" "$(q "DELETE FROM triaged.service WHERE id = 3; SELECT count(*) FROM triaged.incident_service WHERE service_id = 3")" "0"
want "deleting incidents deletes their impacted rows" "$(q "DELETE FROM triaged.incident WHERE ci_id IS NOT NULL; SELECT count(*) FROM triaged.incident_service")" "0"
echo "test_cmdb_correlate_sql: passed"

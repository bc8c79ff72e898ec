#!/usr/bin/env bash
# test_ingest_sql.sh -- the incident engine in PostgreSQL (sql/002_ingest.sql):
# triaged.ingest / triaged.tick / triaged.audit_verify against DESIGN.md §4,
# with exact expected values, on a fresh database that is dropped at the end.
#
# Needs TD_TEST_PG_ADMIN_CONNINFO (tests/stack/stack.sh, stack_up); fails,
# never skips, when it is missing.
set -uo pipefail

failures=0
checks=0
pass() { checks=$((checks + 1)); printf 'ok   %s\n' "$*"; }
fail() { checks=$((checks + 1)); printf 'FAIL %s\n' "$*"; failures=$((failures + 1)); }

if [ -z "${TD_TEST_PG_ADMIN_CONNINFO:-}" ]; then
    echo "FAIL test stack environment missing: TD_TEST_PG_ADMIN_CONNINFO" >&2
    echo "     start it first: source tests/stack/stack.sh && stack_up" >&2
    exit 1
fi
root=${TD_SOURCE_DIR:-$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)}
for f in "$root/sql/001_core.sql" "$root/sql/002_ingest.sql"; do
    [ -r "$f" ] || { echo "FAIL missing $f" >&2; exit 1; }
done

db="td_ingest_test_$$_${RANDOM}"
conn="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
work=$(mktemp -d "${TMPDIR:-/tmp}/test_ingest_sql.XXXXXX") || exit 1
cleanup() {
    # background sessions of the concurrency test, if any are left
    local p
    for p in $(jobs -p); do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -X -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
        >/dev/null 2>&1 || echo "warning: could not drop database $db" >&2
    rm -rf "$work"
}
trap cleanup EXIT

# sql: run SQL from stdin in the test database, unaligned, tuples only.
sql() { psql "$conn" -X -A -t -q -v ON_ERROR_STOP=1 "$@"; }
# q "SQL": one query, its output.
q() { printf '%s\n' "$1" | sql; }

# check NAME GOT WANT
check() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: got '$2', want '$3'"; fi
}

# seg FP RESOURCE CHECK SEVERITY STATUS N FIRST LAST HINT [CI_ID]: one segment
seg() {
    local ci=${10:-null}
    printf '{"fp":"%s","source":"test","resource":"%s","check":"%s","dedup_key":null,"ci_id":%s,"summary":"%s on %s","labels":{"env":"test"},"severity":"%s","status":"%s","n":%s,"first":"%s","last":"%s","hint":"%s"}' \
        "$1" "$2" "$3" "$ci" "$3" "$2" "$4" "$5" "$6" "$7" "$8" "$9"
}
# join the arguments as a JSON array
arr() { local IFS=,; printf '[%s]' "$*"; }

OPTS='{"now":"2024-03-01T12:00:00Z","actor":"triaged@test","reopen_window_ms":1800000,"flap_threshold":6,"flap_window_ms":1800000}'
opts_now() { printf '{"now":"%s","actor":"triaged@test","reopen_window_ms":1800000,"flap_threshold":%s,"flap_window_ms":%s}' \
    "$1" "${2:-6}" "${3:-1800000}"; }

# ingest BATCH [OFFSETS] [OPTS]: the rows as kind|key|payload, into $out;
# $stats is the stats payload. Returns psql's status.
out=
stats=
ingest() {
    out=$(sql -v b="$1" -v o="${2:-[]}" -v p="${3:-$OPTS}" 2>"$work/err" <<'EOF'
SELECT kind || '|' || coalesce(key, '') || '|' || payload::text
FROM triaged.ingest(:'b'::jsonb, :'o'::jsonb, :'p'::jsonb);
EOF
    )
    local rc=$?
    stats=$(printf '%s\n' "$out" | sed -n 's/^stats||//p')
    if [ $rc -ne 0 ]; then echo "ingest failed:"; cat "$work/err"; fi
    return $rc
}
# tick OPTS: rows into $out, stats into $stats
tick() {
    out=$(sql -v p="$1" 2>"$work/err" <<'EOF'
SELECT kind || '|' || coalesce(key, '') || '|' || payload::text FROM triaged.tick(:'p'::jsonb);
EOF
    )
    local rc=$?
    stats=$(printf '%s\n' "$out" | sed -n 's/^stats||//p')
    if [ $rc -ne 0 ]; then echo "tick failed:"; cat "$work/err"; fi
    return $rc
}
# jget JSON KEY...: values of top-level keys, comma separated
jget() {
    local j=$1; shift
    local keys
    keys=$(printf "'%s'," "$@"); keys=${keys%,}
    sql -v j="$j" <<EOF
SELECT string_agg(coalesce((:'j'::jsonb)->>k, 'null'), ',' ORDER BY o)
FROM unnest(ARRAY[$keys]) WITH ORDINALITY AS t(k, o);
EOF
}
kinds() { printf '%s\n' "$out" | cut -d'|' -f1,2 | sort | tr '\n' ' ' | sed 's/ $//'; }

# ---------------------------------------------------------------------------
echo "setup: database $db, migrations 001 and 002 as the runner applies them"
if ! psql "$TD_TEST_PG_ADMIN_CONNINFO" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db"; then
    echo "FAIL cannot create database $db"; exit 1
fi
if sql >"$work/migrate.log" 2>&1 <<EOF
SET client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS triaged;
CREATE TABLE IF NOT EXISTS triaged.schema_migration (
  version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
BEGIN;
\i $root/sql/001_core.sql
INSERT INTO triaged.schema_migration (version, name) VALUES (1, 'core');
COMMIT;
BEGIN;
\i $root/sql/002_ingest.sql
INSERT INTO triaged.schema_migration (version, name) VALUES (2, 'ingest');
COMMIT;
EOF
then
    pass "001 and 002 apply in one transaction each"
else
    fail "migrations failed:"; cat "$work/migrate.log"; exit 1
fi

# ---------------------------------------------------------------------------
echo "check: a new alert opens an incident"
A1=a100000000000001
ingest "$(arr "$(seg $A1 web-1 cpu major firing 1 2024-03-01T10:00:00Z 2024-03-01T10:00:00Z new)")"
check "new alert: stats" "$(jget "$stats" segments new_alerts dups incidents_opened attached)" "1,1,0,1,1"
check "new alert: rows" "$(kinds)" "alert.firing|$A1 incident.opened|INC0000001 stats|"
check "new alert: alert row" \
    "$(q "SELECT status, severity, occurrences, first_seen, last_seen, fired_at, state_changed_at, resolved_at IS NULL FROM triaged.alert WHERE fingerprint = '$A1'")" \
    "firing|major|1|2024-03-01 10:00:00+00|2024-03-01 10:00:00+00|2024-03-01 10:00:00+00|2024-03-01 10:00:00+00|t"
check "new alert: incident" \
    "$(q "SELECT number, title, status, priority, urgency, impact, severity, resource, opened_at FROM triaged.incident")" \
    "INC0000001|cpu on web-1|new|2|1|3|major|web-1|2024-03-01 10:00:00+00"
check "new alert: linked as cause" \
    "$(q "SELECT i.number || ' ' || ia.role FROM triaged.incident_alert ia JOIN triaged.incident i ON i.id = ia.incident_id JOIN triaged.alert a ON a.id = ia.alert_id WHERE a.fingerprint = '$A1'")" \
    "INC0000001 cause"
check "new alert: history" \
    "$(q "SELECT coalesce(from_status, '-') || '>' || to_status || ' ' || at FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id WHERE a.fingerprint = '$A1'")" \
    "->firing 2024-03-01 10:00:00+00"
check "new alert: timeline" \
    "$(q "SELECT string_agg(kind || ' ' || at || ' ' || actor || ' ' || (detail->'fingerprints')::text, ';' ORDER BY id) FROM triaged.incident_event")" \
    "opened 2024-03-01 10:00:00+00 triaged@test [\"$A1\"]"
payload=$(printf '%s\n' "$out" | sed -n 's/^incident.opened|INC0000001|//p')
check "new alert: incident payload" "$(jget "$payload" number status priority alert_count firing_count opened_at)" \
    "INC0000001,new,2,1,1,2024-03-01T10:00:00+00:00"

# ---------------------------------------------------------------------------
echo "check: the same fingerprint again only counts (hint dup, then hint new)"
ingest "$(arr "$(seg $A1 web-1 cpu major firing 3 2024-03-01T10:01:00Z 2024-03-01T10:01:30Z dup)")"
check "dup hint: stats" "$(jget "$stats" dups dup_misses new_alerts refired incidents_opened attached)" "1,0,0,0,0,0"
check "dup hint: only the stats row" "$(kinds)" "stats|"
ingest "$(arr "$(seg $A1 web-1 cpu major firing 2 2024-03-01T10:02:00Z 2024-03-01T10:02:10Z new)")"
check "new hint on a firing alert: stats" "$(jget "$stats" dups dup_misses new_alerts incidents_opened attached stale)" "0,0,0,0,0,0"
check "new hint on a firing alert: only the stats row" "$(kinds)" "stats|"
check "counts: occurrences and times" \
    "$(q "SELECT occurrences, first_seen, last_seen FROM triaged.alert WHERE fingerprint = '$A1'")" \
    "6|2024-03-01 10:00:00+00|2024-03-01 10:02:10+00"
check "counts: still one alert, one incident, one event" \
    "$(q "SELECT (SELECT count(*) FROM triaged.alert) || ' ' || (SELECT count(*) FROM triaged.incident) || ' ' || (SELECT count(*) FROM triaged.incident_event)")" \
    "1 1 1"

# ---------------------------------------------------------------------------
echo "check: 10 alerts on one resource are one incident"
segs=()
for i in 1 2 3 4 5 6; do
    segs+=("$(seg b10000000000000$i db-1 check$i warning firing 1 2024-03-01T10:0$i:00Z 2024-03-01T10:0$i:00Z new)")
done
ingest "$(arr "${segs[@]}")"
check "6 alerts: stats" "$(jget "$stats" new_alerts incidents_opened attached)" "6,1,6"
INC_DB=$(q "SELECT number FROM triaged.incident WHERE resource = 'db-1'")
check "6 alerts: incident" "$(q "SELECT number, title, priority, opened_at FROM triaged.incident WHERE resource = 'db-1'")" \
    "INC0000002|check1 on db-1|4|2024-03-01 10:01:00+00"
segs=()
for i in 7 8 9; do
    segs+=("$(seg b10000000000000$i db-1 check$i minor firing 2 2024-03-01T10:0$i:00Z 2024-03-01T10:0$i:30Z new)")
done
segs+=("$(seg b100000000000010 db-1 check10 critical firing 1 2024-03-01T10:09:40Z 2024-03-01T10:09:40Z dup)")
ingest "$(arr "${segs[@]}")"
check "4 more: stats" "$(jget "$stats" new_alerts incidents_opened attached dup_misses)" "4,0,4,1"
check "4 more: rows" "$(printf '%s\n' "$out" | grep -c '^alert.firing|') $(printf '%s\n' "$out" | grep -c "^incident.updated|$INC_DB|")" "4 1"
check "10 alerts: one incident with 10 alerts" \
    "$(q "SELECT count(DISTINCT ia.incident_id) || ' ' || count(*) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id WHERE a.resource = 'db-1'")" \
    "1 10"
check "10 alerts: priority rose with the critical alert" \
    "$(q "SELECT priority, urgency, severity FROM triaged.incident WHERE resource = 'db-1'")" "1|1|critical"
check "10 alerts: timeline (one attach event for the batch)" \
    "$(q "SELECT string_agg(e.kind || ' ' || coalesce(jsonb_array_length(e.detail->'fingerprints'), -1) || ' ' || coalesce(e.detail->>'from', '-') || ' ' || coalesce(e.detail->>'to', '-'), ';' ORDER BY e.id) FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id WHERE i.resource = 'db-1'")" \
    "opened 6 - -;alerts_attached 4 - -;priority_changed -1 4 1"
payload=$(printf '%s\n' "$out" | sed -n "s/^incident.updated|$INC_DB|//p")
check "10 alerts: payload" "$(jget "$payload" priority alert_count firing_count)" "1,10,10"

# ---------------------------------------------------------------------------
echo "check: resolving all alerts, then tick with grace 0, resolves at the resolve time"
segs=()
for i in 1 2 3 4 5 6 7 8 9 10; do
    fp=b10000000000000$i; [ "$i" = 10 ] && fp=b100000000000010
    segs+=("$(seg $fp db-1 check$i warning resolved 0 2024-03-01T10:20:0$((i % 10))Z 2024-03-01T10:20:0$((i % 10))Z change)")
done
ingest "$(arr "${segs[@]}")" '[]' "$(opts_now 2024-03-01T10:25:00Z)"
check "resolve all: stats" "$(jget "$stats" resolved stale unknown_resolves)" "10,0,0"
check "resolve all: pending, at the latest resolve" \
    "$(q "SELECT status, resolve_pending_since, resolve_at FROM triaged.incident WHERE resource = 'db-1'")" \
    "new|2024-03-01 10:25:00+00|2024-03-01 10:20:09+00"
check "resolve all: one alerts_resolved event with 10 alerts" \
    "$(q "SELECT string_agg(e.kind || ' ' || coalesce(jsonb_array_length(e.detail->'fingerprints'), -1), ';' ORDER BY e.id) FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id WHERE i.resource = 'db-1' AND e.kind IN ('alerts_resolved', 'resolve_pending')")" \
    "alerts_resolved 10;resolve_pending -1"
tick '{"now":"2024-03-01T10:26:00Z","actor":"triaged@test","resolve_grace_ms":120000,"close_after_ms":86400000,"flap_threshold":6,"flap_window_ms":1800000}'
check "tick inside the grace: nothing resolved" "$(jget "$stats" resolved closed)" "0,0"
tick '{"now":"2024-03-01T10:26:00Z","actor":"triaged@test","resolve_grace_ms":0,"close_after_ms":86400000,"flap_threshold":6,"flap_window_ms":1800000}'
check "tick grace 0: stats" "$(jget "$stats" resolved closed)" "1,0"
check "tick grace 0: rows" "$(kinds)" "incident.resolved|$INC_DB stats|"
check "tick grace 0: resolved at the resolve's time" \
    "$(q "SELECT status, resolved_at, resolved_decided_at, resolve_pending_since IS NULL FROM triaged.incident WHERE resource = 'db-1'")" \
    "resolved|2024-03-01 10:20:09+00|2024-03-01 10:26:00+00|t"
payload=$(printf '%s\n' "$out" | sed -n "s/^incident.resolved|$INC_DB|//p")
check "tick grace 0: payload" "$(jget "$payload" status resolved_at firing_count)" "resolved,2024-03-01T10:20:09+00:00,0"

# ---------------------------------------------------------------------------
echo "check: a re-fire within the reopen window reopens the same incident"
ingest "$(arr "$(seg b100000000000003 db-1 check3 major firing 1 2024-03-01T10:40:00Z 2024-03-01T10:40:00Z change)")" '[]' \
    "$(opts_now 2024-03-01T10:40:05Z)"
check "re-fire: stats" "$(jget "$stats" refired incidents_reopened incidents_opened new_alerts)" "1,1,0,0"
check "re-fire: rows" "$(kinds)" "alert.firing|b100000000000003 incident.reopened|$INC_DB stats|"
check "re-fire: the same incident, reopened" \
    "$(q "SELECT count(*) || ' ' || string_agg(number || ' ' || status || ' ' || reopen_count || ' ' || (resolved_at IS NULL), ',') FROM triaged.incident WHERE resource = 'db-1'")" \
    "1 $INC_DB new 1 true"
check "re-fire: alert fired again" \
    "$(q "SELECT status, fired_at, resolved_at IS NULL, severity, occurrences FROM triaged.alert WHERE fingerprint = 'b100000000000003'")" \
    "firing|2024-03-01 10:40:00+00|t|major|2"
check "re-fire: timeline" \
    "$(q "SELECT string_agg(e.kind, ',' ORDER BY e.id) FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id WHERE i.resource = 'db-1' AND e.id > (SELECT max(id) FROM triaged.incident_event WHERE kind = 'resolved')")" \
    "reopened,alerts_refired"
check "re-fire: alert history" \
    "$(q "SELECT string_agg(coalesce(from_status, '-') || '>' || to_status || coalesce(' ' || (detail->>'severity_from'), ''), ',' ORDER BY h.id) FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id WHERE a.fingerprint = 'b100000000000003'")" \
    "->firing,firing>resolved,resolved>firing warning"

echo "check: a re-fire outside the reopen window opens a new incident"
ingest "$(arr "$(seg b100000000000003 db-1 check3 major resolved 0 2024-03-01T10:45:00Z 2024-03-01T10:45:00Z change)")" '[]' \
    "$(opts_now 2024-03-01T10:45:00Z)"
tick '{"now":"2024-03-01T10:46:00Z","actor":"triaged@test","resolve_grace_ms":0,"close_after_ms":86400000}'
check "second resolve: resolved at 10:45" "$(q "SELECT resolved_at FROM triaged.incident WHERE number = '$INC_DB'")" "2024-03-01 10:45:00+00"
ingest "$(arr "$(seg b100000000000003 db-1 check3 major firing 1 2024-03-01T12:00:00Z 2024-03-01T12:00:00Z change)")" '[]' \
    "$(opts_now 2024-03-01T12:00:01Z)"
check "late re-fire: stats" "$(jget "$stats" refired incidents_reopened incidents_opened attached)" "1,0,1,1"
check "late re-fire: two incidents for db-1, one open" \
    "$(q "SELECT string_agg(status || ' ' || opened_at, ',' ORDER BY id) FROM triaged.incident WHERE resource = 'db-1'")" \
    "resolved 2024-03-01 10:01:00+00,new 2024-03-01 12:00:00+00"

# ---------------------------------------------------------------------------
echo "check: out-of-order messages are counted but do not move state backwards"
# A1 has been firing since 10:00 (state_changed_at); a resolve from 09:59 is stale
ingest "$(arr "$(seg $A1 web-1 cpu major resolved 0 2024-03-01T09:59:00Z 2024-03-01T09:59:00Z change)")"
check "stale resolve: stats" "$(jget "$stats" stale resolved unknown_resolves)" "1,0,0"
check "stale resolve: only the stats row" "$(kinds)" "stats|"
check "stale resolve: alert unchanged" \
    "$(q "SELECT status, occurrences, first_seen, last_seen, state_changed_at, resolved_at IS NULL FROM triaged.alert WHERE fingerprint = '$A1'")" \
    "firing|6|2024-03-01 10:00:00+00|2024-03-01 10:02:10+00|2024-03-01 10:00:00+00|t"
# b..05 resolved at 10:20:05; firing messages from 10:15 are older: counted, no re-fire
ingest "$(arr "$(seg b100000000000005 db-1 check5 warning firing 4 2024-03-01T10:15:00Z 2024-03-01T10:15:30Z change)")"
check "stale firing: stats" "$(jget "$stats" stale refired)" "1,0"
check "stale firing: still resolved, occurrences counted" \
    "$(q "SELECT status, occurrences, resolved_at, last_seen FROM triaged.alert WHERE fingerprint = 'b100000000000005'")" \
    "resolved|5|2024-03-01 10:20:05+00|2024-03-01 10:20:05+00"
# a severity change older than the state is stale too
ingest "$(arr "$(seg $A1 web-1 cpu critical firing 1 2024-03-01T09:58:00Z 2024-03-01T09:58:00Z change)")"
check "stale severity: stats" "$(jget "$stats" stale severity_changes)" "1,0"
check "stale severity: counted, first_seen moved back, severity kept" \
    "$(q "SELECT severity, occurrences, first_seen FROM triaged.alert WHERE fingerprint = '$A1'")" \
    "major|7|2024-03-01 09:58:00+00"
echo "check: a newer severity change is recorded"
ingest "$(arr "$(seg $A1 web-1 cpu critical firing 1 2024-03-01T10:30:00Z 2024-03-01T10:30:00Z change)")"
check "severity change: stats" "$(jget "$stats" severity_changes stale)" "1,0"
check "severity change: history" \
    "$(q "SELECT h.from_status || '>' || h.to_status || ' ' || h.severity || ' ' || (h.detail->>'severity_from') || ' ' || h.at FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id WHERE a.fingerprint = '$A1' ORDER BY h.id DESC LIMIT 1")" \
    "firing>firing critical major 2024-03-01 10:30:00+00"
check "severity change: incident priority rose" \
    "$(q "SELECT priority, severity FROM triaged.incident WHERE number = 'INC0000001'")" "1|critical"

# ---------------------------------------------------------------------------
echo "check: a wrong hint (dup for an unknown fingerprint) still creates the alert"
ingest "$(arr "$(seg c100000000000001 app-1 http major firing 5 2024-03-01T11:00:00Z 2024-03-01T11:00:20Z dup)")"
check "wrong hint: stats" "$(jget "$stats" dups dup_misses new_alerts incidents_opened)" "0,1,1,1"
check "wrong hint: alert" "$(q "SELECT status, occurrences FROM triaged.alert WHERE fingerprint = 'c100000000000001'")" "firing|5"
echo "check: a resolve for an unknown fingerprint is kept as a resolved alert with no occurrences, opening nothing"
ingest "$(arr "$(seg c100000000000002 app-1 disk major resolved 0 2024-03-01T11:00:00Z 2024-03-01T11:00:00Z new)")"
check "unknown resolve: stats" "$(jget "$stats" unknown_resolves new_alerts resolved)" "1,0,0"
check "unknown resolve: resolved row" "$(q "SELECT status, occurrences, fired_at IS NULL, resolved_at FROM triaged.alert WHERE fingerprint = 'c100000000000002'")" "resolved|0|t|2024-03-01 11:00:00+00"
check "unknown resolve: no incident" "$(q "SELECT count(*) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id WHERE a.fingerprint = 'c100000000000002'")" "0"
echo "check: firing messages older than that resolve, in a later batch, fire and resolve it as one batch would"
ingest "$(arr "$(seg c100000000000002 app-1 disk major firing 3 2024-03-01T10:50:00Z 2024-03-01T10:55:00Z change)")"
check "late firing: alert" "$(q "SELECT status, occurrences, fired_at, resolved_at FROM triaged.alert WHERE fingerprint = 'c100000000000002'")" "resolved|3|2024-03-01 10:50:00+00|2024-03-01 11:00:00+00"
check "late firing: attached to an incident" "$(q "SELECT count(*) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id WHERE a.fingerprint = 'c100000000000002'")" "1"

echo "check: several segments of one fingerprint in one batch, in order"
ingest "$(arr \
    "$(seg c100000000000003 app-2 mem minor resolved 0 2024-03-01T11:00:00Z 2024-03-01T11:00:00Z new)" \
    "$(seg c100000000000003 app-2 mem minor firing 2 2024-03-01T11:01:00Z 2024-03-01T11:01:10Z new)" \
    "$(seg c100000000000003 app-2 mem major firing 1 2024-03-01T11:02:00Z 2024-03-01T11:02:00Z new)" \
    "$(seg c100000000000003 app-2 mem major resolved 0 2024-03-01T11:03:00Z 2024-03-01T11:03:00Z new)")" '[]' \
    "$(opts_now 2024-03-01T11:03:30Z)"
check "segments: stats" "$(jget "$stats" segments unknown_resolves new_alerts severity_changes resolved incidents_opened)" "4,1,1,1,1,1"
check "segments: alert" \
    "$(q "SELECT status, severity, occurrences, first_seen, last_seen, resolved_at FROM triaged.alert WHERE fingerprint = 'c100000000000003'")" \
    "resolved|major|3|2024-03-01 11:01:00+00|2024-03-01 11:03:00+00|2024-03-01 11:03:00+00"
check "segments: alert rows in order" \
    "$(printf '%s\n' "$out" | grep '^alert\.' | cut -d'|' -f1 | tr '\n' ' ')" "alert.firing alert.firing alert.resolved "
check "segments: incident opened and pending" \
    "$(q "SELECT priority, severity, resolve_at FROM triaged.incident WHERE resource = 'app-2'")" "2|major|2024-03-01 11:03:00+00"
check "segments: timeline" \
    "$(q "SELECT string_agg(e.kind, ',' ORDER BY e.id) FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id WHERE i.resource = 'app-2'")" \
    "opened,priority_changed,alerts_resolved,resolve_pending"

# ---------------------------------------------------------------------------
echo "check: offsets compare-and-set"
OFF_NEW='[{"group":"g1","topic":"alerts","partition":0,"expect":-1,"next":100},{"group":"g1","topic":"alerts","partition":1,"expect":-1,"next":200}]'
ingest '[]' "$OFF_NEW"
check "offsets: first store" "$(q "SELECT string_agg(partition || '=' || next_offset || ' ' || instance, ',' ORDER BY partition) FROM triaged.kafka_offset WHERE group_id = 'g1'")" \
    "0=100 triaged@test,1=200 triaged@test"
before=$(q "SELECT (SELECT count(*) FROM triaged.alert) || ' ' || (SELECT count(*) FROM triaged.incident) || ' ' || (SELECT count(*) FROM triaged.incident_event) || ' ' || (SELECT sum(occurrences) FROM triaged.alert)")
ingest "$(arr "$(seg d100000000000001 fenced-1 cpu major firing 1 2024-03-01T11:00:00Z 2024-03-01T11:00:00Z new)" \
               "$(seg $A1 web-1 cpu critical firing 9 2024-03-01T11:00:00Z 2024-03-01T11:00:00Z dup)")" \
    '[{"group":"g1","topic":"alerts","partition":1,"expect":150,"next":250},{"group":"g1","topic":"alerts","partition":0,"expect":100,"next":110}]'
check "offsets mismatch: only the fenced row" "$out" 'fenced|alerts/1|{"stored": 200}'
check "offsets mismatch: nothing changed" \
    "$(q "SELECT (SELECT count(*) FROM triaged.alert) || ' ' || (SELECT count(*) FROM triaged.incident) || ' ' || (SELECT count(*) FROM triaged.incident_event) || ' ' || (SELECT sum(occurrences) FROM triaged.alert)")" \
    "$before"
check "offsets mismatch: offsets unchanged" "$(q "SELECT string_agg(partition || '=' || next_offset, ',' ORDER BY partition) FROM triaged.kafka_offset WHERE group_id = 'g1'")" "0=100,1=200"
ingest "$(arr "$(seg d100000000000001 fenced-1 cpu major firing 1 2024-03-01T11:00:00Z 2024-03-01T11:00:00Z new)")" \
    '[{"group":"g1","topic":"alerts","partition":0,"expect":-1,"next":5},{"group":"g1","topic":"alerts","partition":2,"expect":7,"next":9}]'
check "offsets: expect -1 on a stored row, expect n on a missing row" "$(printf '%s\n' "$out" | sort | tr '\n' ' ')" \
    'fenced|alerts/0|{"stored": 100} fenced|alerts/2|{"stored": null} '
check "offsets: still nothing changed" \
    "$(q "SELECT count(*) FROM triaged.alert WHERE fingerprint = 'd100000000000001'") $(q "SELECT count(*) FROM triaged.kafka_offset WHERE group_id = 'g1'")" "0 2"
ingest "$(arr "$(seg d100000000000001 fenced-1 cpu major firing 1 2024-03-01T11:00:00Z 2024-03-01T11:00:00Z new)")" \
    '[{"group":"g1","topic":"alerts","partition":0,"expect":100,"next":110},{"group":"g1","topic":"alerts","partition":1,"expect":200,"next":210},{"group":"g1","topic":"alerts","partition":3,"expect":-1,"next":1}]'
check "offsets match: processed" "$(jget "$stats" new_alerts)" "1"
check "offsets match: stored" "$(q "SELECT string_agg(partition || '=' || next_offset, ',' ORDER BY partition) FROM triaged.kafka_offset WHERE group_id = 'g1'")" "0=110,1=210,3=1"

# ---------------------------------------------------------------------------
echo "check: flapping is marked and holds the incident open"
F=e100000000000001
FL='{"now":"2024-03-01T13:10:00Z","actor":"triaged@test","reopen_window_ms":1800000,"flap_threshold":3,"flap_window_ms":3600000}'
ingest "$(arr "$(seg $F flap-1 link major firing 1 2024-03-01T13:00:00Z 2024-03-01T13:00:00Z new)" \
               "$(seg $F flap-1 link major resolved 0 2024-03-01T13:01:00Z 2024-03-01T13:01:00Z new)" \
               "$(seg $F flap-1 link major firing 1 2024-03-01T13:02:00Z 2024-03-01T13:02:00Z new)")" '[]' "$FL"
check "flap: 3 changes, not flapping yet" "$(q "SELECT flapping, status FROM triaged.alert WHERE fingerprint = '$F'")" "f|firing"
ingest "$(arr "$(seg $F flap-1 link major resolved 0 2024-03-01T13:03:00Z 2024-03-01T13:03:00Z change)")" '[]' "$FL"
check "flap: the 4th change marks it flapping" "$(q "SELECT flapping, status FROM triaged.alert WHERE fingerprint = '$F'")" "t|resolved"
check "flap: history records it" \
    "$(q "SELECT h.detail->>'flapping' FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id WHERE a.fingerprint = '$F' AND h.detail ? 'flapping'")" "true"
check "flap: payload says flapping" "$(jget "$(printf '%s\n' "$out" | sed -n "s/^alert.resolved|$F|//p")" flapping status)" "true,resolved"
TICK_FL='{"now":"2024-03-01T13:20:00Z","actor":"triaged@test","resolve_grace_ms":0,"close_after_ms":86400000,"flap_threshold":3,"flap_window_ms":3600000}'
INC_FLAP=$(q "SELECT number FROM triaged.incident WHERE resource = 'flap-1'")
tick "$TICK_FL"
check "flap: tick does not resolve the incident" \
    "$(jget "$stats" flapping_cleared) $(printf '%s\n' "$out" | grep -c "|$INC_FLAP|")" "0 0"
check "flap: incident still open, pending" "$(q "SELECT status, resolve_at FROM triaged.incident WHERE resource = 'flap-1'")" "new|2024-03-01 13:03:00+00"
ingest "$(arr "$(seg $F flap-1 link major firing 1 2024-03-01T13:21:00Z 2024-03-01T13:21:00Z change)")" '[]' "$FL"
check "flap: re-fire stays in the open incident" "$(jget "$stats" refired incidents_reopened incidents_opened)" "1,0,0"
ingest "$(arr "$(seg $F flap-1 link major resolved 0 2024-03-01T13:22:00Z 2024-03-01T13:22:00Z change)")" '[]' "$FL"
check "flap: one incident, never resolved or reopened" \
    "$(q "SELECT count(*) || ' ' || max(status) || ' ' || max(reopen_count) FROM triaged.incident WHERE resource = 'flap-1'")" "1 new 0"
tick "${TICK_FL/13:20:00Z/15:00:00Z}"
check "flap: calm later: flapping cleared and resolved in the same tick" "$(jget "$stats" flapping_cleared resolved)" "1,1"
check "flap: resolved at the last resolve" \
    "$(q "SELECT i.status || ' ' || i.resolved_at || ' ' || a.flapping FROM triaged.incident i, triaged.alert a WHERE i.resource = 'flap-1' AND a.fingerprint = '$F'")" \
    "resolved 2024-03-01 13:22:00+00 false"

echo "check: tick closes resolved incidents after close_after"
INC_APP2=$(q "SELECT number FROM triaged.incident WHERE resource = 'app-2'")
check "close: decision times" \
    "$(q "SELECT string_agg(number || ' ' || resolved_decided_at, ',' ORDER BY id) FROM triaged.incident WHERE status = 'resolved'")" \
    "$INC_DB 2024-03-01 10:46:00+00,$INC_APP2 2024-03-01 13:20:00+00,$INC_FLAP 2024-03-01 15:00:00+00"
# 24 h after 14:30: the first two were decided more than 24 h ago, the flap one not
tick '{"now":"2024-03-02T14:30:00Z","actor":"triaged@test","resolve_grace_ms":0,"close_after_ms":86400000}'
check "close: stats" "$(jget "$stats" closed resolved)" "2,0"
check "close: rows" "$(kinds)" "incident.closed|$INC_DB incident.closed|$INC_APP2 stats|"
check "close: closed incidents" \
    "$(q "SELECT string_agg(number || ' ' || closed_at, ',' ORDER BY id) FROM triaged.incident WHERE status = 'closed'")" \
    "$INC_DB 2024-03-02 14:30:00+00,$INC_APP2 2024-03-02 14:30:00+00"
check "close: timeline events" "$(q "SELECT count(*) FROM triaged.incident_event WHERE kind = 'closed' AND at = '2024-03-02 14:30:00+00'")" "2"

# ---------------------------------------------------------------------------
echo "check: alerts bound to a CI group by CI, and a re-fire cancels a pending resolve"
CI=$(q "INSERT INTO triaged.ci (name) VALUES ('host-9') RETURNING id")
ingest "$(arr "$(seg g100000000000001 host-9 cpu minor firing 1 2024-03-01T14:00:00Z 2024-03-01T14:00:00Z new "$CI")" \
               "$(seg g100000000000002 10.0.0.9 ping major firing 1 2024-03-01T14:00:05Z 2024-03-01T14:00:05Z new "$CI")")" \
    '[]' "$(opts_now 2024-03-01T14:00:10Z)"
check "ci: one incident for the CI" \
    "$(q "SELECT count(*) || ' ' || min(title) || ' ' || min(priority) || ' ' || bool_and(NOT unbound) FROM triaged.incident WHERE ci_id = $CI")" \
    "1 cpu on host-9 2 true"
ingest "$(arr "$(seg g100000000000001 host-9 cpu minor resolved 0 2024-03-01T14:01:00Z 2024-03-01T14:01:00Z change "$CI")" \
               "$(seg g100000000000002 10.0.0.9 ping major resolved 0 2024-03-01T14:02:00Z 2024-03-01T14:02:00Z change "$CI")")" \
    '[]' "$(opts_now 2024-03-01T14:02:10Z)"
check "ci: pending" "$(q "SELECT resolve_pending_since || ' ' || resolve_at FROM triaged.incident WHERE ci_id = $CI")" \
    "2024-03-01 14:02:10+00 2024-03-01 14:02:00+00"
ingest "$(arr "$(seg g100000000000001 host-9 cpu minor firing 1 2024-03-01T14:03:00Z 2024-03-01T14:03:00Z change "$CI")")" \
    '[]' "$(opts_now 2024-03-01T14:03:10Z)"
check "ci: re-fire of a pending incident: same incident, not pending" \
    "$(q "SELECT count(*) || ' ' || min(status) || ' ' || min(reopen_count) || ' ' || bool_and(resolve_pending_since IS NULL AND resolve_at IS NULL) FROM triaged.incident WHERE ci_id = $CI")" \
    "1 new 0 true"
check "ci: timeline" \
    "$(q "SELECT string_agg(e.kind, ',' ORDER BY e.id) FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id WHERE i.ci_id = $CI")" \
    "opened,alerts_resolved,resolve_pending,alerts_refired,resolve_cancelled"
tick '{"now":"2024-03-01T15:00:00Z","actor":"triaged@test","resolve_grace_ms":0,"close_after_ms":86400000}'
check "ci: not resolved while an alert fires" "$(q "SELECT status FROM triaged.incident WHERE ci_id = $CI")" "new"

# ---------------------------------------------------------------------------
echo "check: audit_verify finds an edited and a deleted event"
check "audit: intact" "$(q "SELECT count(*) FROM triaged.audit_verify()")" "0"
check "audit: intact under other TimeZone and DateStyle" \
    "$(printf "SET TimeZone = 'Asia/Kolkata'; SET DateStyle = 'SQL, DMY'; SET extra_float_digits = 0;\nSELECT count(*) FROM triaged.audit_verify();\n" | sql)" "0"
INC_DB_ID=$(q "SELECT id FROM triaged.incident WHERE number = '$INC_DB'")
ev=$(q "SELECT triaged.add_event($INC_DB_ID, '2024-03-02 15:00:00+00', 'alice', 'comment', '{\"text\": \"root cause: disk\"}')")
check "audit: add_event chains onto the last event" \
    "$(q "SELECT e.prev_hash = (SELECT hash FROM triaged.incident_event WHERE incident_id = $INC_DB_ID AND id < $ev ORDER BY id DESC LIMIT 1) AND i.last_event_hash = e.hash FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id WHERE e.id = $ev")" "t"
check "audit: still intact" "$(q "SELECT count(*) FROM triaged.audit_verify()")" "0"
mid=$(q "SELECT id FROM triaged.incident_event WHERE incident_id = $INC_DB_ID ORDER BY id OFFSET 2 LIMIT 1")
next=$(q "SELECT min(id) FROM triaged.incident_event WHERE incident_id = $INC_DB_ID AND id > $mid")
q "CREATE TABLE public.saved_event AS SELECT * FROM triaged.incident_event WHERE id = $mid" >/dev/null
q "UPDATE triaged.incident_event SET detail = detail || '{\"forged\": true}' WHERE id = $mid" >/dev/null
got=$(q "SELECT incident_id || ' ' || event_id || ' ' || (problem LIKE '%edited%') FROM triaged.audit_verify()")
check "audit: edited detail found" "$got" "$INC_DB_ID $mid true"
q "UPDATE triaged.incident_event e SET detail = s.detail, at = s.at + interval '1 microsecond' FROM public.saved_event s WHERE e.id = s.id" >/dev/null
check "audit: edited time found" "$(q "SELECT incident_id || ' ' || event_id || ' ' || (problem LIKE '%edited%') FROM triaged.audit_verify()")" "$INC_DB_ID $mid true"
q "UPDATE triaged.incident_event e SET at = s.at FROM public.saved_event s WHERE e.id = s.id" >/dev/null
check "audit: restored edit is intact again" "$(q "SELECT count(*) FROM triaged.audit_verify()")" "0"
q "DELETE FROM triaged.incident_event WHERE id = $mid" >/dev/null
got=$(q "SELECT incident_id || ' ' || event_id || ' ' || (problem LIKE '%deleted%') FROM triaged.audit_verify()")
check "audit: deleted event found (at the event after it)" "$got" "$INC_DB_ID $next true"
q "INSERT INTO triaged.incident_event SELECT * FROM public.saved_event" >/dev/null
check "audit: restored row is intact again" "$(q "SELECT count(*) FROM triaged.audit_verify()")" "0"
q "DELETE FROM public.saved_event" >/dev/null
q "INSERT INTO public.saved_event SELECT * FROM triaged.incident_event WHERE id = $ev" >/dev/null
q "DELETE FROM triaged.incident_event WHERE id = $ev" >/dev/null
before_last=$(q "SELECT max(id) FROM triaged.incident_event WHERE incident_id = $INC_DB_ID")
got=$(q "SELECT incident_id || ' ' || event_id || ' ' || (problem LIKE '%last%deleted%') FROM triaged.audit_verify()")
check "audit: deleted last event found" "$got" "$INC_DB_ID $before_last true"
q "INSERT INTO triaged.incident_event SELECT * FROM public.saved_event" >/dev/null
first=$(q "SELECT min(id) FROM triaged.incident_event WHERE incident_id = $INC_DB_ID")
q "DELETE FROM public.saved_event" >/dev/null
q "INSERT INTO public.saved_event SELECT * FROM triaged.incident_event WHERE id = $first" >/dev/null
q "DELETE FROM triaged.incident_event WHERE id = $first" >/dev/null
got=$(q "SELECT incident_id || ' ' || (event_id > $first) || ' ' || (problem LIKE '%deleted%') FROM triaged.audit_verify()")
check "audit: deleted first event found" "$got" "$INC_DB_ID true true"
q "INSERT INTO triaged.incident_event SELECT * FROM public.saved_event" >/dev/null
q "DROP TABLE public.saved_event" >/dev/null
check "audit: intact at the end" "$(q "SELECT count(*) FROM triaged.audit_verify()")" "0"

# ---------------------------------------------------------------------------
echo "check: two concurrent sessions with overlapping batches"
# 50 fingerprints on 5 resources; session A sends fps 0..39, session B 10..49,
# ROUNDS times each, concurrently, with hints that are sometimes wrong (as
# after a Redis loss). A batch failing with a deadlock or serialization
# error is retried, as the daemon does.
ROUNDS=6
cfp() { printf 'f0c0%012x' "$1"; }
mkbatch() { # FROM TO TIME STATUS HINT N
    local i segs=()
    for ((i = $1; i <= $2; i++)); do
        segs+=("$(seg "$(cfp $i)" "conc-$((i % 5))" "chk$i" major "$4" "$6" "$3" "$3" "$5")")
    done
    arr "${segs[@]}"
}
for r in $(seq 1 $ROUNDS); do
    hint=new; [ $((r % 2)) = 0 ] && hint=dup
    mkbatch 0 39 "2024-03-05T10:0${r}:00Z" firing $hint 1 >"$work/A$r.json"
    mkbatch 10 49 "2024-03-05T10:0${r}:30Z" firing $hint 1 >"$work/B$r.json"
done
mkbatch 0 24 "2024-03-05T11:00:00Z" resolved change 0 >"$work/Ares.json"
mkbatch 25 49 "2024-03-05T11:00:10Z" resolved change 0 >"$work/Bres.json"
# run_batch FILE: ingest it, retrying on 40P01/40001; prints the retries
run_batch() {
    local try out_b
    for try in $(seq 0 30); do
        if out_b=$(sql -v b="$(cat "$1")" -v p="$(opts_now 2024-03-05T12:00:00Z)" 2>&1 <<'EOF'
SELECT count(*) FROM triaged.ingest(:'b'::jsonb, '[]'::jsonb, :'p'::jsonb);
EOF
        ); then
            echo "$try"; return 0
        fi
        case $out_b in
            *deadlock*|*serializ*|*40P01*|*40001*) sleep 0.0$((RANDOM % 10)) ;;
            *) echo "ERROR $out_b"; return 1 ;;
        esac
    done
    echo "ERROR too many retries"; return 1
}
session() { # NAME FILES...
    local name=$1 f; shift
    while [ ! -e "$work/go" ]; do sleep 0.01; done
    for f in "$@"; do run_batch "$f" >>"$work/$name.log" || return 1; done
}
afiles=(); bfiles=()
for r in $(seq 1 $ROUNDS); do afiles+=("$work/A$r.json"); bfiles+=("$work/B$r.json"); done
session A "${afiles[@]}" & pa=$!
session B "${bfiles[@]}" & pb=$!
touch "$work/go"
wait $pa; ra=$?; wait $pb; rb=$?
rm -f "$work/go"
if [ $ra = 0 ] && [ $rb = 0 ]; then
    pass "concurrent: both sessions finished ($(cat "$work/A.log" "$work/B.log" | awk '{s += $1} END {print s + 0}') retries)"
else
    fail "concurrent: a session failed: $(grep -h ERROR "$work/A.log" "$work/B.log" | head -3)"
fi
check "concurrent: one alert per fingerprint, exact occurrences" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT fingerprint) || ' ' || sum(occurrences) FROM triaged.alert WHERE fingerprint LIKE 'f0c0%'")" \
    "50 50 $((2 * 40 * ROUNDS))"
check "concurrent: one incident per resource" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT resource) || ' ' || count(*) FILTER (WHERE status = 'new') FROM triaged.incident WHERE resource LIKE 'conc-%'")" \
    "5 5 5"
check "concurrent: each alert in exactly one incident, of its resource" \
    "$(q "SELECT count(*) || ' ' || count(DISTINCT a.id) || ' ' || bool_and(i.resource = a.resource) FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id JOIN triaged.incident i ON i.id = ia.incident_id WHERE a.fingerprint LIKE 'f0c0%'")" \
    "50 50 true"
check "concurrent: one creation in each alert's history, one opened event per incident" \
    "$(q "SELECT (SELECT count(*) FROM triaged.alert_history h JOIN triaged.alert a ON a.id = h.alert_id WHERE a.fingerprint LIKE 'f0c0%') || ' ' || (SELECT count(*) FROM triaged.incident_event e JOIN triaged.incident i ON i.id = e.incident_id WHERE i.resource LIKE 'conc-%' AND e.kind = 'opened')")" \
    "50 5"
# the last two alerts of an incident resolved by two transactions at once:
# whichever commits second must see the first one's resolve
: >"$work/A.log"; : >"$work/B.log"
session A "$work/Ares.json" & pa=$!
session B "$work/Bres.json" & pb=$!
touch "$work/go"
wait $pa; ra=$?; wait $pb; rb=$?
rm -f "$work/go"
check "concurrent resolves: both sessions finished" "$ra $rb" "0 0"
check "concurrent resolves: every incident pending, at its latest resolve" \
    "$(q "SELECT count(*) FILTER (WHERE resolve_pending_since IS NOT NULL) || ' ' || min(resolve_at) FROM triaged.incident WHERE resource LIKE 'conc-%'")" \
    "5 2024-03-05 11:00:10+00"
check "concurrent: timelines intact" "$(q "SELECT count(*) FROM triaged.audit_verify()")" "0"

# ---------------------------------------------------------------------------
echo "check: malformed input is refused with 22023"
err=$(printf '%s\n' "SELECT count(*) FROM triaged.ingest('[{\"fp\":\"x\"}]', '[]', '{}');" | psql "$conn" -X -A -t -q -v VERBOSITY=verbose 2>&1 >/dev/null)
case $err in *22023*) pass "bad segment: 22023" ;; *) fail "bad segment: $err" ;; esac
err=$(printf '%s\n' "SELECT count(*) FROM triaged.ingest('[]', '[{\"group\":\"g9\",\"topic\":\"t\",\"partition\":0,\"expect\":-1,\"next\":1},{\"group\":\"g9\",\"topic\":\"t\",\"partition\":0,\"expect\":-1,\"next\":2}]', '{}');" | psql "$conn" -X -A -t -q -v VERBOSITY=verbose 2>&1 >/dev/null)
case $err in *22023*) pass "partition twice in the offsets: 22023" ;; *) fail "partition twice: $err" ;; esac

# ---------------------------------------------------------------------------
# Optional timing (TD_INGEST_BENCH=1): 10 batches of 2,000 new alerts (10 per
# resource, then one per resource), 10 batches of 5,000 dup segments (n=3),
# and 2 batches each of 2,000 resolves and re-fires; one transaction per batch,
# batches built server-side so only ingest and commit are timed.
if [ "${TD_INGEST_BENCH:-0}" = 1 ]; then
    echo "bench: ingest throughput (one transaction per batch)"
    sql <<'EOF' 2>&1 | sed -n 's/^.*NOTICE:  //p'
SET client_min_messages = notice;
DO $$
DECLARE
  v_opts  jsonb := '{"now":"2024-06-01T12:00:00Z","actor":"bench","reopen_window_ms":1800000}';
  v_batch jsonb;
  v_t0    timestamptz;
  v_ms    float8[];
  v_tot   float8;
  v_kind  text;
  v_per   int;
  v_n     int;
  v_sev   text[] := ARRAY['critical','major','minor','warning','info'];
BEGIN
  FOREACH v_kind IN ARRAY ARRAY['new10', 'new1', 'dup', 'resolve', 'refire'] LOOP
    v_ms := '{}';
    FOR b IN 0 .. CASE WHEN v_kind IN ('resolve', 'refire') THEN 1 ELSE 9 END LOOP
      v_n := CASE v_kind WHEN 'dup' THEN 5000 ELSE 2000 END;
      v_per := CASE v_kind WHEN 'new1' THEN 1 ELSE 10 END;
      SELECT jsonb_agg(jsonb_build_object(
               'fp', CASE WHEN v_kind = 'new1' THEN 'b' ELSE 'a' END || lpad(to_hex(k), 15, '0'),
               'source', 'bench',
               'resource', 'bench-' || CASE WHEN v_kind = 'new1' THEN 'b' ELSE 'a' END || (k / v_per),
               'check', 'check' || (k % v_per), 'dedup_key', NULL, 'ci_id', NULL,
               'summary', 'bench', 'labels', jsonb_build_object('env', 'bench'),
               'severity', v_sev[1 + k % 5],
               'status', CASE WHEN v_kind = 'resolve' THEN 'resolved' ELSE 'firing' END,
               'n', CASE v_kind WHEN 'dup' THEN 3 WHEN 'resolve' THEN 0 ELSE 1 END,
               'first', to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
               'last', to_char(t + interval '5 seconds', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
               'hint', CASE v_kind WHEN 'dup' THEN 'dup' WHEN 'new10' THEN 'new'
                                   WHEN 'new1' THEN 'new' ELSE 'change' END)
             ORDER BY k)
        INTO v_batch
        FROM generate_series(0, v_n - 1) i,
             LATERAL (SELECT CASE WHEN v_kind = 'dup' THEN (b * v_n + i) % 20000
                                  ELSE b * v_n + i END AS k) kk,
             LATERAL (SELECT timestamptz '2024-06-01 10:00:00+00' + b * interval '1 second'
                             + CASE v_kind WHEN 'resolve' THEN interval '20 minutes'
                                           WHEN 'refire' THEN interval '30 minutes'
                                           WHEN 'dup' THEN interval '10 minutes'
                                           ELSE interval '0' END AS t) tt;
      COMMIT;
      v_t0 := clock_timestamp();
      PERFORM count(*) FROM triaged.ingest(v_batch, '[]', v_opts);
      COMMIT;
      v_ms := v_ms || (extract(epoch FROM clock_timestamp() - v_t0) * 1000)::float8;
    END LOOP;
    SELECT sum(x) INTO v_tot FROM unnest(v_ms) x;
    RAISE NOTICE '% % x % segments: % ms (per batch: %), % segments/s',
      rpad(v_kind, 7), cardinality(v_ms), v_n, round(v_tot::numeric),
      (SELECT string_agg(round(x::numeric)::text, ' ') FROM unnest(v_ms) x),
      round((cardinality(v_ms) * v_n * 1000 / v_tot)::numeric);
  END LOOP;
END $$;
EOF
fi

if [ "$failures" -ne 0 ]; then
    echo "test_ingest_sql: $failures of $checks check(s) failed"
    exit 1
fi
echo "test_ingest_sql: all $checks checks passed"

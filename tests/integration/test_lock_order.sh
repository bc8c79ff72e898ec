#!/usr/bin/env bash
# test_lock_order.sh — two batches on different lanes that need the same
# incidents lock them in one order, ascending id (sql/029), so neither is
# chosen as a deadlock victim (40P01: the daemon retried it, after
# deadlock_timeout, 1 s of two lanes' latency).
#
# Each shape, in a database of its own (a copy of one migrated here):
#   setup  a few batches open incidents 1, 2 (and 3) on resources (or CIs)
#          whose key order is the reverse of their id order
#   C      holds incident HOLD (FOR UPDATE) until A and B both wait for a
#          lock, then commits
#   A      a batch that locks incidents 1 and 2 (started once C holds; it
#          waits for C first, so it is the first in line)
#   B      a batch that needs the same incidents (started once A waits)
# Before 029, B (or A) locked them in key order: it held one and waited for
# the other while A held that one and waited for it: deadlock_detected.
# Both batches must commit, and the state (alerts, their incidents, counts,
# events; incident_counts_verify, audit_verify) is exactly what A then B
# leave. The shapes (see 029's header, the audit):
#   new      A resolves the alerts of 1 and 2 (_finish_counted, id order);
#            B brings new alerts to both (the new alerts' path: its lookup
#            by resource)
#   split    B as new with a duplicate of a known alert first (the lean
#            path counts it: the split batch's path)
#   bound    as new, the groups bound to CIs (_open_found: by CI)
#   kinds    as new, B's groups one bound (incident 2), one unbound (1):
#            _open_incidents locked the bound group's incident (_open_found)
#            before the unbound one's (find-or-open): two runs before 029
#   steps    B's batch also resolves an alert of incident 3 (not the new
#            alerts' path: find-or-open, then _finish_counted)
#   mixed    A brings a new alert to 2 and resolves the alert of 1 in one
#            batch (find-or-open locks 2, _finish_counted then 1: two runs
#            before 029; its pre-lock takes both first); C holds 2
#   heartbeat  as mixed, A's batch with a heartbeat (the jsonb path: 003's
#            ingest, 002's engine, _ingest_core)
#   refire   A re-fires an alert of 2 (the loop's re-fire locks 2) and
#            resolves the alert of 1 (the end of batch locks 1 and 2); C
#            holds 2
# (TD_LOCK_ORDER_SHAPES="new bound ...": those shapes only)
source "$(dirname "$0")/lib.sh"

tmpl=$(t_db_migrated tmpl) || exit 1
psql "$tmpl" -qAtX -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || t_fail "helper"
-- b(NOW, SEGMENTS): one batch through ingest_arrays (the daemon's
-- statement); a segment: fp, res, ci, sev (minor), st (firing), check
-- (c-FP), first/last NOW - 0.5 s
CREATE FUNCTION public.b(p_now text, p_segs jsonb)
RETURNS TABLE (kind text, key text) LANGUAGE sql AS $$
SELECT r.kind, r.key FROM (
  SELECT array_agg(e->>'fp' ORDER BY o) fp, array_agg('t'::text ORDER BY o) src,
         array_agg(e->>'res' ORDER BY o) res, array_agg(coalesce(e->>'check', 'c-' || (e->>'fp')) ORDER BY o) chk,
         array_agg(NULL::text ORDER BY o) dk, array_agg((e->>'ci')::bigint ORDER BY o) ci,
         array_agg('s'::text ORDER BY o) sm, array_agg('{}'::jsonb ORDER BY o) lab,
         array_agg(coalesce(e->>'sev', 'minor') ORDER BY o) sev,
         array_agg(coalesce(e->>'st', 'firing') ORDER BY o) st,
         array_agg(CASE WHEN e->>'st' = 'resolved' THEN 0 ELSE 1 END::bigint ORDER BY o) n,
         array_agg(p_now::timestamptz - interval '0.5 s' ORDER BY o) t0,
         array_agg(p_now::timestamptz - interval '0.5 s' ORDER BY o) t1
    FROM jsonb_array_elements(p_segs) WITH ORDINALITY t(e, o)) x,
  triaged.ingest_arrays(x.fp, x.src, x.res, x.chk, x.dk, x.ci, x.sm, x.lab, x.sev, x.st, x.n,
                        x.t0, x.t1, NULL, NULL,
                        jsonb_build_object('now', p_now, 'actor', 't',
                                           'reopen_window_ms', 1800000)) r
$$;
-- (fix29) bx(NOW, SEGMENTS, REOPEN_MS): as b(), a segment's first and last
-- NOW + t0, t1 seconds, its labels lab, its count n
CREATE FUNCTION public.bx(p_now text, p_segs jsonb, p_reopen int DEFAULT 60000)
RETURNS TABLE (kind text, key text, payload text) LANGUAGE sql AS $$
SELECT r.kind, r.key, r.payload::text FROM (
  SELECT array_agg(e->>'fp' ORDER BY o) fp, array_agg(coalesce(e->>'src','t') ORDER BY o) src,
         array_agg(e->>'res' ORDER BY o) res, array_agg(coalesce(e->>'check', 'c-' || (e->>'fp')) ORDER BY o) chk,
         array_agg(NULL::text ORDER BY o) dk, array_agg((e->>'ci')::bigint ORDER BY o) ci,
         array_agg('s'::text ORDER BY o) sm, array_agg(coalesce(e->'lab','{}'::jsonb) ORDER BY o) lab,
         array_agg(coalesce(e->>'sev', 'minor') ORDER BY o) sev,
         array_agg(coalesce(e->>'st', 'firing') ORDER BY o) st,
         array_agg(CASE WHEN e->>'st' = 'resolved' THEN 0 ELSE coalesce((e->>'n')::bigint,1) END::bigint ORDER BY o) n,
         array_agg(p_now::timestamptz + ((e->>'t0')::int * interval '1 s') ORDER BY o) t0,
         array_agg(p_now::timestamptz + ((e->>'t1')::int * interval '1 s') ORDER BY o) t1
    FROM jsonb_array_elements(p_segs) WITH ORDINALITY t(e, o)) x,
  triaged.ingest_arrays(x.fp, x.src, x.res, x.chk, x.dk, x.ci, x.sm, x.lab, x.sev, x.st, x.n,
                        x.t0, x.t1, NULL, NULL,
                        jsonb_build_object('now', p_now, 'actor', 't',
                                           'reopen_window_ms', p_reopen, 'flap_threshold', 3,
                                           'flap_window_ms', 600000)) r
$$;
INSERT INTO triaged.ci (name) VALUES ('ci-1'), ('ci-2');
SQL
tdb=${tmpl##*dbname=}

# state: what the batches left, one line each
state_sql="
SELECT 'alert ' || a.fingerprint || ' ' || a.status || ' ' || a.severity || ' '
       || coalesce((SELECT string_agg(i.number, ',' ORDER BY i.id)
                      FROM triaged.incident_alert ia JOIN triaged.incident i ON i.id = ia.incident_id
                     WHERE ia.alert_id = a.id), '-')
  FROM triaged.alert a ORDER BY a.fingerprint;
SELECT 'incident ' || i.id || ' ' || i.number || ' ' || coalesce(i.resource, '-') || ' '
       || coalesce(i.ci_id::text, '-') || ' ' || i.status || ' ' || i.severity || ' p'
       || i.priority || ' ' || i.alert_count || '/' || i.firing_count || ' pending '
       || (i.resolve_pending_since IS NOT NULL)
  FROM triaged.incident i ORDER BY i.id;
SELECT 'events ' || e.incident_id || ' '
       || string_agg(e.kind || coalesce(' ' || (e.detail->'fingerprints')::text, ''), '; '
                     ORDER BY e.id)
  FROM triaged.incident_event e GROUP BY e.incident_id ORDER BY e.incident_id;
SELECT 'counts_verify ' || count(*) FROM triaged.incident_counts_verify();
SELECT 'audit_verify ' || count(*) FROM triaged.audit_verify();"

# waiting APP: prints 1 when session APP waits for a lock
waiting() {
    psql "$P" -qAtX -c "SELECT count(*) FROM pg_stat_activity
                         WHERE datname = current_database() AND application_name = '$1'
                           AND wait_event_type = 'Lock'"
}

# race_db NAME SETUP: a copy of the migrated database for the shape NAME
# (P), SETUP applied
race_db() {
    local db
    db="$(_t_extra_prefix)$1"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db TEMPLATE $tdb" >/dev/null \
        || t_fail "$1: cannot copy the database"
    P="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
    psql "$P" -qAtX -v ON_ERROR_STOP=1 -c "$2" > "$T_DIR/$1.setup" 2>&1 \
        || t_fail "$1: setup: $(cat "$T_DIR/$1.setup")"
}

# race_state NAME EXPECTED WHO: the state in P is EXPECTED (what WHO leave)
race_state() {
    psql "$P" -qAtX -v ON_ERROR_STOP=1 -c "$state_sql" > "$T_DIR/$1.state" 2>&1 \
        || t_fail "$1: state: $(cat "$T_DIR/$1.state")"
    if [ "$(cat "$T_DIR/$1.state")" != "$2" ]; then
        diff <(echo "$2") "$T_DIR/$1.state" >&2 || true
        t_fail "$1: not the state $3 leave"
    fi
}

# race NAME HOLD SETUP A B EXPECTED: SETUP, A, B: SQL (calls of b());
# HOLD: the incident C holds; EXPECTED: the state after both
race() {
    case " ${TD_LOCK_ORDER_SHAPES:-$1} " in *" $1 "*) ;; *) return 0 ;; esac
    local name=$1 hold=$2 setup=$3 sa=$4 sb=$5 want=$6 pa pb pc
    race_db "$name" "$setup"
    # C: holds HOLD until A and B both wait for a lock (30 s at most)
    PGAPPNAME=lo-c psql "$P" -qAtX -v ON_ERROR_STOP=1 > "$T_DIR/$name.c" 2>&1 <<SQL &
BEGIN;
SELECT 'C', id FROM triaged.incident WHERE id = $hold FOR UPDATE;
DO \$\$
BEGIN
  FOR i IN 1..3000 LOOP
    PERFORM pg_stat_clear_snapshot();
    IF (SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name IN ('lo-a', 'lo-b')
           AND wait_event_type = 'Lock') = 2 THEN
      RETURN;
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RAISE EXCEPTION 'A and B did not both wait';
END \$\$;
COMMIT;
SQL
    pc=$!
    c_holds() {
        [ "$(psql "$P" -qAtX -c "SELECT count(*) FROM pg_stat_activity
                                  WHERE datname = current_database()
                                    AND application_name = 'lo-c' AND query LIKE 'DO %'")" = 1 ]
    }
    t_wait_until 30 "$name: C holding incident $hold" c_holds
    PGAPPNAME=lo-a psql "$P" -qAtX -v ON_ERROR_STOP=1 -c "$sa" > "$T_DIR/$name.a" 2>&1 &
    pa=$!
    a_waits() { [ "$(waiting lo-a)" = 1 ]; }
    t_wait_until 30 "$name: A waiting for C" a_waits
    PGAPPNAME=lo-b psql "$P" -qAtX -v ON_ERROR_STOP=1 -c "$sb" > "$T_DIR/$name.b" 2>&1 &
    pb=$!
    wait $pc || t_fail "$name: C: $(cat "$T_DIR/$name.c")"
    wait $pa || t_fail "$name: batch A failed: $(grep -m1 ERROR "$T_DIR/$name.a")"
    wait $pb || t_fail "$name: batch B failed: $(grep -m1 ERROR "$T_DIR/$name.b")"
    race_state "$name" "$want" "A then B"
    t_log "ok: $name: both batches committed (no deadlock), the state as expected"
}
seg() { printf '{"fp":"%s","res":"%s"%s}' "$1" "$2" "${3:+,$3}"; }

# new: incident 1 on resource b, 2 on a; A resolves a1 (1) and a2 (2); B
# brings n1 (a) and n2 (b), major
race new 1 \
    "SELECT * FROM b('2024-03-01T10:00:00Z', '[$(seg a1 b)]');
     SELECT * FROM b('2024-03-01T10:00:01Z', '[$(seg a2 a)]');" \
    "SELECT * FROM b('2024-03-01T10:00:05Z', '[$(seg a1 b '"st":"resolved"'),$(seg a2 a '"st":"resolved"')]')" \
    "SELECT * FROM b('2024-03-01T10:00:06Z', '[$(seg n1 a '"sev":"major"'),$(seg n2 b '"sev":"major"')]')" \
"alert a1 resolved minor INC0000001
alert a2 resolved minor INC0000002
alert n1 firing major INC0000002
alert n2 firing major INC0000001
incident 1 INC0000001 b - new major p2 2/1 pending false
incident 2 INC0000002 a - new major p2 2/1 pending false
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n2\"]; priority_changed; resolve_cancelled
events 2 opened [\"a2\"]; alerts_resolved [\"a2\"]; resolve_pending; alerts_attached [\"n1\"]; priority_changed; resolve_cancelled
counts_verify 0
audit_verify 0"

# split: as new, B's batch begins with a duplicate of d1 (firing on a, in 2)
race split 1 \
    "SELECT * FROM b('2024-03-01T10:00:00Z', '[$(seg a1 b)]');
     SELECT * FROM b('2024-03-01T10:00:01Z', '[$(seg a2 a),$(seg d1 a)]');" \
    "SELECT * FROM b('2024-03-01T10:00:05Z', '[$(seg a1 b '"st":"resolved"'),$(seg a2 a '"st":"resolved"')]')" \
    "SELECT * FROM b('2024-03-01T10:00:06Z', '[$(seg d1 a),$(seg n1 a '"sev":"major"'),$(seg n2 b '"sev":"major"')]')" \
"alert a1 resolved minor INC0000001
alert a2 resolved minor INC0000002
alert d1 firing minor INC0000002
alert n1 firing major INC0000002
alert n2 firing major INC0000001
incident 1 INC0000001 b - new major p2 2/1 pending false
incident 2 INC0000002 a - new major p2 3/2 pending false
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n2\"]; priority_changed; resolve_cancelled
events 2 opened [\"a2\", \"d1\"]; alerts_resolved [\"a2\"]; alerts_attached [\"n1\"]; priority_changed
counts_verify 0
audit_verify 0"

# bound: incident 1 on CI 2, 2 on CI 1
race bound 1 \
    "SELECT * FROM b('2024-03-01T10:00:00Z', '[$(seg a1 h2 '"ci":2')]');
     SELECT * FROM b('2024-03-01T10:00:01Z', '[$(seg a2 h1 '"ci":1')]');" \
    "SELECT * FROM b('2024-03-01T10:00:05Z', '[$(seg a1 h2 '"ci":2,"st":"resolved"'),$(seg a2 h1 '"ci":1,"st":"resolved"')]')" \
    "SELECT * FROM b('2024-03-01T10:00:06Z', '[$(seg n1 h1 '"ci":1,"sev":"major"'),$(seg n2 h2 '"ci":2,"sev":"major"')]')" \
"alert a1 resolved minor INC0000001
alert a2 resolved minor INC0000002
alert n1 firing major INC0000002
alert n2 firing major INC0000001
incident 1 INC0000001 h2 2 new major p3 2/1 pending false
incident 2 INC0000002 h1 1 new major p3 2/1 pending false
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n2\"]; priority_changed; resolve_cancelled
events 2 opened [\"a2\"]; alerts_resolved [\"a2\"]; resolve_pending; alerts_attached [\"n1\"]; priority_changed; resolve_cancelled
counts_verify 0
audit_verify 0"

# kinds: incident 1 on resource a, 2 on CI 1; B brings n1 (CI 1) and n2 (a)
race kinds 1 \
    "SELECT * FROM b('2024-03-01T10:00:00Z', '[$(seg a1 a)]');
     SELECT * FROM b('2024-03-01T10:00:01Z', '[$(seg a2 h1 '"ci":1')]');" \
    "SELECT * FROM b('2024-03-01T10:00:05Z', '[$(seg a1 a '"st":"resolved"'),$(seg a2 h1 '"ci":1,"st":"resolved"')]')" \
    "SELECT * FROM b('2024-03-01T10:00:06Z', '[$(seg n1 h1 '"ci":1,"sev":"major"'),$(seg n2 a '"sev":"major"')]')" \
"alert a1 resolved minor INC0000001
alert a2 resolved minor INC0000002
alert n1 firing major INC0000002
alert n2 firing major INC0000001
incident 1 INC0000001 a - new major p2 2/1 pending false
incident 2 INC0000002 h1 1 new major p3 2/1 pending false
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n2\"]; priority_changed; resolve_cancelled
events 2 opened [\"a2\"]; alerts_resolved [\"a2\"]; resolve_pending; alerts_attached [\"n1\"]; priority_changed; resolve_cancelled
counts_verify 0
audit_verify 0"

# steps: as new, B also resolves z1 (incident 3)
race steps 1 \
    "SELECT * FROM b('2024-03-01T10:00:00Z', '[$(seg a1 b)]');
     SELECT * FROM b('2024-03-01T10:00:01Z', '[$(seg a2 a)]');
     SELECT * FROM b('2024-03-01T10:00:02Z', '[$(seg z1 z)]');" \
    "SELECT * FROM b('2024-03-01T10:00:05Z', '[$(seg a1 b '"st":"resolved"'),$(seg a2 a '"st":"resolved"')]')" \
    "SELECT * FROM b('2024-03-01T10:00:06Z', '[$(seg n1 a '"sev":"major"'),$(seg n2 b '"sev":"major"'),$(seg z1 z '"st":"resolved"')]')" \
"alert a1 resolved minor INC0000001
alert a2 resolved minor INC0000002
alert n1 firing major INC0000002
alert n2 firing major INC0000001
alert z1 resolved minor INC0000003
incident 1 INC0000001 b - new major p2 2/1 pending false
incident 2 INC0000002 a - new major p2 2/1 pending false
incident 3 INC0000003 z - new minor p3 1/0 pending true
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n2\"]; priority_changed; resolve_cancelled
events 2 opened [\"a2\"]; alerts_resolved [\"a2\"]; resolve_pending; alerts_attached [\"n1\"]; priority_changed; resolve_cancelled
events 3 opened [\"z1\"]; alerts_resolved [\"z1\"]; resolve_pending
counts_verify 0
audit_verify 0"

# mixed: incident 1 on a, 2 on b; C holds 2; A brings n1 to 2 (b) and
# resolves a1 (1); B brings n2 (a) and n3 (b)
race mixed 2 \
    "SELECT * FROM b('2024-03-01T10:00:00Z', '[$(seg a1 a)]');
     SELECT * FROM b('2024-03-01T10:00:01Z', '[$(seg a2 b)]');" \
    "SELECT * FROM b('2024-03-01T10:00:05Z', '[$(seg a1 a '"st":"resolved"'),$(seg n1 b '"sev":"major"')]')" \
    "SELECT * FROM b('2024-03-01T10:00:06Z', '[$(seg n2 a '"sev":"major"'),$(seg n3 b '"sev":"major"')]')" \
"alert a1 resolved minor INC0000001
alert a2 firing minor INC0000002
alert n1 firing major INC0000002
alert n2 firing major INC0000001
alert n3 firing major INC0000002
incident 1 INC0000001 a - new major p2 2/1 pending false
incident 2 INC0000002 b - new major p2 3/3 pending false
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n2\"]; priority_changed; resolve_cancelled
events 2 opened [\"a2\"]; alerts_attached [\"n1\"]; priority_changed; alerts_attached [\"n3\"]
counts_verify 0
audit_verify 0"

# heartbeat: as mixed, A's batch with a heartbeat (the jsonb path)
race heartbeat 2 \
    "SELECT * FROM b('2024-03-01T10:00:00Z', '[$(seg a1 a)]');
     SELECT * FROM b('2024-03-01T10:00:01Z', '[$(seg a2 b)]');" \
    "SELECT * FROM b('2024-03-01T10:00:05Z', '[$(seg a1 a '"st":"resolved"'),$(seg n1 b '"sev":"major"'),$(seg hb1 hbhost '"check":"heartbeat"')]')" \
    "SELECT * FROM b('2024-03-01T10:00:06Z', '[$(seg n2 a '"sev":"major"'),$(seg n3 b '"sev":"major"')]')" \
"alert a1 resolved minor INC0000001
alert a2 firing minor INC0000002
alert n1 firing major INC0000002
alert n2 firing major INC0000001
alert n3 firing major INC0000002
incident 1 INC0000001 a - new major p2 2/1 pending false
incident 2 INC0000002 b - new major p2 3/3 pending false
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n2\"]; priority_changed; resolve_cancelled
events 2 opened [\"a2\"]; alerts_attached [\"n1\"]; priority_changed; alerts_attached [\"n3\"]
counts_verify 0
audit_verify 0"

# refire: incident 1 on a (a1), 2 on b (a2, r1; r1 resolved); C holds 2;
# A re-fires r1 (the loop's re-fire locks 2) and resolves a1 (the end of
# batch locks 1 and 2); B as mixed
race refire 2 \
    "SELECT * FROM b('2024-03-01T10:00:00Z', '[$(seg a1 a)]');
     SELECT * FROM b('2024-03-01T10:00:01Z', '[$(seg a2 b),$(seg r1 b)]');
     SELECT * FROM b('2024-03-01T10:00:02Z', '[$(seg r1 b '"st":"resolved"')]');" \
    "SELECT * FROM b('2024-03-01T10:00:05Z', '[$(seg a1 a '"st":"resolved"'),$(seg r1 b)]')" \
    "SELECT * FROM b('2024-03-01T10:00:06Z', '[$(seg n2 a '"sev":"major"'),$(seg n3 b '"sev":"major"')]')" \
"alert a1 resolved minor INC0000001
alert a2 firing minor INC0000002
alert n2 firing major INC0000001
alert n3 firing major INC0000002
alert r1 firing minor INC0000002
incident 1 INC0000001 a - new major p2 2/1 pending false
incident 2 INC0000002 b - new major p2 3/3 pending false
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n2\"]; priority_changed; resolve_cancelled
events 2 opened [\"a2\", \"r1\"]; alerts_resolved [\"r1\"]; alerts_refired [\"r1\"]; alerts_attached [\"n3\"]; priority_changed
counts_verify 0
audit_verify 0"

# --- (fix29) the lock ahead's reach: what it must lock (route) and what it
# must not (ticky, hbdl). These shapes use bx() (segments with offsets t0,
# t1 in s, labels lab, n, and the reopen window) and CIs 3-7 with 3 -> 1,
# 4 -> 1, 5 -> 2, 6 -> 2, 7 -> 3 (child -> parent: 1 is 3's upstream CI).
cis="INSERT INTO triaged.ci (name) SELECT 'ci-' || g FROM generate_series(3, 7) g;
     INSERT INTO triaged.ci_relation (child_id, parent_id) VALUES (3,1),(4,1),(5,2),(6,2),(7,3);"

# route: incident 1 on CI 1 (a1), 2 on resource r (a2, b2); C holds 1; A
# resolves a1 (1) and b2 (2: the end of batch, id order); B resolves a2
# (2) and brings n3 on CI 3, which has no open incident: _route sends it
# to 1, its upstream CI's. Before this fix the lock ahead held 2 and the
# route locked 1 after it: deadlock (checked)
route_setup="$cis
    SELECT count(*) FROM bx('2024-03-01T10:00:00Z', '[{\"fp\":\"a1\",\"res\":\"h1\",\"t0\":-1,\"t1\":-1,\"ci\":1}]');
    SELECT count(*) FROM bx('2024-03-01T10:00:01Z', '[{\"fp\":\"a2\",\"res\":\"r\",\"t0\":-1,\"t1\":-1},{\"fp\":\"b2\",\"res\":\"r\",\"t0\":-1,\"t1\":-1}]');"
route_a="SELECT count(*) FROM bx('2024-03-01T10:00:06Z', '[{\"fp\":\"a1\",\"res\":\"h1\",\"t0\":-1,\"t1\":-1,\"ci\":1,\"st\":\"resolved\"},{\"fp\":\"b2\",\"res\":\"r\",\"t0\":-1,\"t1\":-1,\"st\":\"resolved\"}]')"
# (what A then B leave, with B's batch on the arrays or the jsonb path)
route_want="alert a1 resolved minor INC0000001
alert a2 resolved minor INC0000002
alert b2 resolved minor INC0000002
alert n3 firing minor INC0000001
incident 1 INC0000001 h1 1 new minor p4 2/1 pending false
incident 2 INC0000002 r - new minor p3 2/0 pending true
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n3\"]; resolve_cancelled
events 2 opened [\"a2\", \"b2\"]; alerts_resolved [\"b2\"]; alerts_resolved [\"a2\"]; resolve_pending
counts_verify 0
audit_verify 0"
race route 1 "$route_setup" "$route_a" \
    "SELECT count(*) FROM bx('2024-03-01T10:00:05Z', '[{\"fp\":\"a2\",\"res\":\"r\",\"t0\":-1,\"t1\":-1,\"st\":\"resolved\"},{\"fp\":\"n3\",\"res\":\"h3\",\"t0\":-1,\"t1\":-1,\"ci\":3}]')" \
"$route_want"

# routehb: as route, B's batch with a heartbeat (the jsonb path: _ingest_core)
race routehb 1 "$route_setup" "$route_a" \
    "SELECT count(*) FROM bx('2024-03-01T10:00:05Z', '[{\"fp\":\"a2\",\"res\":\"r\",\"t0\":-1,\"t1\":-1,\"st\":\"resolved\"},{\"fp\":\"n3\",\"res\":\"h3\",\"t0\":-1,\"t1\":-1,\"ci\":3},{\"fp\":\"hb\",\"res\":\"hbr\",\"t0\":-1,\"t1\":-1,\"check\":\"heartbeat\",\"lab\":{\"timeout\":\"60s\"}}]')" \
"$route_want"

# routenew: as route, B new alerts only (the new alerts' path): n3 on CI 3
# (routed to 1) and n4 on r (2): _open_found locked 2, _route 1 after it
race routenew 1 "$route_setup" "$route_a" \
    "SELECT count(*) FROM bx('2024-03-01T10:00:05Z', '[{\"fp\":\"n4\",\"res\":\"r\",\"t0\":-1,\"t1\":-1},{\"fp\":\"n3\",\"res\":\"h3\",\"t0\":-1,\"t1\":-1,\"ci\":3}]')" \
"alert a1 resolved minor INC0000001
alert a2 firing minor INC0000002
alert b2 resolved minor INC0000002
alert n3 firing minor INC0000001
alert n4 firing minor INC0000002
incident 1 INC0000001 h1 1 new minor p4 2/1 pending false
incident 2 INC0000002 r - new minor p3 3/2 pending false
events 1 opened [\"a1\"]; alerts_resolved [\"a1\"]; resolve_pending; alerts_attached [\"n3\"]; resolve_cancelled
events 2 opened [\"a2\", \"b2\"]; alerts_resolved [\"b2\"]; alerts_attached [\"n4\"]
counts_verify 0
audit_verify 0"

# race_tick NAME HOLD SETUP A T EXPECTED: C holds incident HOLD; A (a
# batch) starts, then T (a tick) once A waits for a lock or is done; C
# commits once T waits or is done. The tick holds rows it took with SKIP
# LOCKED and then waits for incidents (its heartbeat ingest): a batch must
# not lock an incident no step of it locks
race_tick() {
    case " ${TD_LOCK_ORDER_SHAPES:-$1} " in *" $1 "*) ;; *) return 0 ;; esac
    local name=$1 hold=$2 setup=$3 sa=$4 st=$5 want=$6 pa pt pc
    race_db "$name" "$setup"
    rm -f "$T_DIR/$name.fifo"; mkfifo "$T_DIR/$name.fifo"
    PGAPPNAME=lo-c psql "$P" -qAtX -v ON_ERROR_STOP=1 < "$T_DIR/$name.fifo" > "$T_DIR/$name.c" 2>&1 &
    pc=$!
    exec 7> "$T_DIR/$name.fifo"
    echo "BEGIN; SELECT 'C', id FROM triaged.incident WHERE id = $hold FOR UPDATE;" >&7
    t_wait_log "$T_DIR/$name.c" "^C\|$hold\$"
    PGAPPNAME=lo-a psql "$P" -qAtX -v ON_ERROR_STOP=1 -c "$sa" > "$T_DIR/$name.a" 2>&1 &
    pa=$!
    a_waits() { [ "$(waiting lo-a)" = 1 ] || ! kill -0 $pa 2>/dev/null; }
    t_wait_until 30 "$name: A waiting for C, or done" a_waits
    PGAPPNAME=lo-t psql "$P" -qAtX -v ON_ERROR_STOP=1 -c "$st" > "$T_DIR/$name.t" 2>&1 &
    pt=$!
    t_waits() { [ "$(waiting lo-t)" = 1 ] || ! kill -0 $pt 2>/dev/null; }
    t_wait_until 30 "$name: T waiting, or done" t_waits
    sleep 0.2
    echo "COMMIT;" >&7
    exec 7>&-
    wait $pc || t_fail "$name: C: $(cat "$T_DIR/$name.c")"
    wait $pa || t_fail "$name: batch A failed: $(grep -m1 ERROR "$T_DIR/$name.a")"
    wait $pt || t_fail "$name: tick T failed: $(grep -m1 ERROR "$T_DIR/$name.t")"
    race_state "$name" "$want" "A then T"
    t_log "ok: $name: the batch and the tick committed (no deadlock), the state as expected"
}

# ticky: incident 1 on hbr (x, the heartbeat hb), 2 on q (y) resolved by
# the API (y still firing); C holds 1; A changes the severity of x (1)
# and of y (2: resolved, no step locks it); T the tick (closes 2, skipped
# while held; its heartbeat check waits for 1). Before this fix the lock
# ahead locked 2 too: deadlock, A the victim (checked)
race_tick ticky 1 \
    "SELECT count(*) FROM bx('2024-03-01T10:00:00Z', '[{\"fp\":\"x\",\"res\":\"hbr\",\"t0\":-1,\"t1\":-1},{\"fp\":\"hb\",\"res\":\"hbr\",\"t0\":-1,\"t1\":-1,\"check\":\"heartbeat\",\"lab\":{\"timeout\":\"60s\"}}]', 1800000);
     SELECT count(*) FROM bx('2024-03-01T10:00:01Z', '[{\"fp\":\"y\",\"res\":\"q\",\"t0\":-1,\"t1\":-1}]', 1800000);
     SELECT count(*) FROM triaged.api_incident_action('INC0000002', 'resolve', 'u', NULL, '2024-03-01T10:00:03Z');" \
    "SELECT count(*) FROM bx('2024-03-01T10:05:00Z', '[{\"fp\":\"x\",\"res\":\"hbr\",\"t0\":-1,\"t1\":-1,\"sev\":\"major\"},{\"fp\":\"y\",\"res\":\"q\",\"t0\":-1,\"t1\":-1,\"sev\":\"major\"}]', 1800000)" \
    "SELECT count(*) FROM triaged.tick('{\"now\": \"2024-03-01T10:05:01Z\", \"actor\": \"tick\", \"close_after_ms\": 60000, \"resolve_grace_ms\": 30000}')" \
"alert hb10cc2cf55564a3 firing major INC0000001
alert x firing major INC0000001
alert y firing major INC0000002
incident 1 INC0000001 hbr - new major p2 2/2 pending false
incident 2 INC0000002 q - closed minor p3 1/1 pending false
events 1 opened [\"x\"]; priority_changed; alerts_attached [\"hb10cc2cf55564a3\"]
events 2 opened [\"y\"]; resolved; closed
counts_verify 0
audit_verify 0"

# hbdl: incident 1 on r0 (x, the heartbeat hb); C holds 1; A brings two
# segments of x, firing (the loop: duplicates, no incident touched) and
# the heartbeat; T the tick. Before this fix the lock ahead locked x's
# group's open incident (1): deadlock, T the victim (checked)
race_tick hbdl 1 \
    "SELECT count(*) FROM bx('2024-03-01T10:00:00Z', '[{\"fp\":\"x\",\"res\":\"r0\",\"t0\":-1,\"t1\":-1},{\"fp\":\"hb\",\"res\":\"r0\",\"t0\":-1,\"t1\":-1,\"check\":\"heartbeat\",\"lab\":{\"timeout\":\"60s\"}}]', 60000);" \
    "SELECT count(*) FROM bx('2024-03-01T10:05:00Z', '[{\"fp\":\"x\",\"res\":\"r0\",\"t0\":-1,\"t1\":-1},{\"fp\":\"x\",\"res\":\"r0\",\"t0\":0,\"t1\":0},{\"fp\":\"hb\",\"res\":\"r0\",\"t0\":0,\"t1\":0,\"check\":\"heartbeat\",\"lab\":{\"timeout\":\"60s\"}}]', 60000)" \
    "SELECT count(*) FROM triaged.tick('{\"now\": \"2024-03-01T10:05:01Z\", \"actor\": \"tick\"}')" \
"alert x firing minor INC0000001
incident 1 INC0000001 r0 - new minor p3 1/1 pending false
events 1 opened [\"x\"]
counts_verify 0
audit_verify 0"

# plans: 029's locks (the new alerts' lookup, find-or-open's, _open_found's,
# the steps path's and the jsonb path's locks ahead) are key probes then a
# probe of incident_pkey in id order, in a fresh database (plans made on
# empty tables) and after an ANALYZE at ~300 incidents (the plans made
# again), with auto_explain: no Seq Scan, no Sort, every index scan by an
# Index Cond, the incidents locked through incident_pkey by id
shape_on() { case " ${TD_LOCK_ORDER_SHAPES:-plans} " in *" plans "*) return 0 ;; esac; return 1; }
if shape_on; then
    db="$(_t_extra_prefix)plans"
    psql "$TD_TEST_PG_ADMIN_CONNINFO" -qAtc "CREATE DATABASE $db TEMPLATE $tdb" >/dev/null \
        || t_fail "plans: cannot copy the database"
    P="$TD_TEST_PG_ADMIN_CONNINFO dbname=$db"
    for t in incident incident_alert alert; do
        psql "$P" -qAtX -c "ALTER TABLE triaged.$t SET (autovacuum_enabled = off)" >/dev/null
    done
    q() { echo "SELECT count(*) FROM b('$1', '[$2]');"; }
    {
        echo "LOAD 'auto_explain';"
        echo "SET auto_explain.log_min_duration = 0;"
        echo "SET auto_explain.log_nested_statements = on;"
        echo "SET auto_explain.log_analyze = on;"
        for phase in 0 1; do
            if [ $phase = 1 ]; then
                echo "SET client_min_messages = warning;"
                for ((i = 0; i < 300; i++)); do
                    q 2024-03-01T10:01:00Z "$(seg "m$i" "mr$i")"
                done
                echo "ANALYZE triaged.incident; ANALYZE triaged.incident_alert; ANALYZE triaged.alert;"
            fi
            echo "SET client_min_messages = log;"
            q 2024-03-01T1$phase:00:00Z "$(seg "x$phase" "q$phase"),$(seg "c$phase" "h$phase" '"ci":1')"
            q 2024-03-01T1$phase:00:01Z "$(seg "y$phase" "q$phase"),$(seg "d$phase" "h$phase" '"ci":1')"
            q 2024-03-01T1$phase:00:01Z "$(seg "v$phase" "q$phase"),$(seg "u$phase" "p$phase")"
            q 2024-03-01T1$phase:00:02Z "$(seg "x$phase" "q$phase" '"st":"resolved"'),$(seg "z$phase" "q$phase"),$(seg "e$phase" "h$phase" '"ci":1'),$(seg "f$phase" "g$phase" '"ci":2')"
            q 2024-03-01T1$phase:00:03Z "$(seg "x$phase" "q$phase"),$(seg "w$phase" "q$phase"),$(seg "hb" "hbh" '"check":"heartbeat"')"
        done
    } > "$T_DIR/plans.sql"
    PGOPTIONS= psql "$P" -qX -v ON_ERROR_STOP=1 -f "$T_DIR/plans.sql" > "$T_DIR/plans.out" 2> "$T_DIR/plans.log" \
        || t_fail "plans: the batches: $(grep -m3 ERROR "$T_DIR/plans.log")"
    python3 - "$T_DIR/plans.log" <<'PY' || t_fail "plans: $(cat "$T_DIR/plans.bad")"
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r'^(?:psql:\S+ )?LOG:  duration: [0-9.]+ ms  plan:\n', text, flags=re.M)[1:]
bad, seen = [], {}
kinds = {'lookup': 'x.resource = ANY (v_nres)', 'find': 'FROM unnest(p_reqs) r',
         'ahead': "i.status <> 'closed'"}
for b in blocks:
    if 'FOR UPDATE OF i' not in b:
        continue
    kind = next((k for k, m in kinds.items() if m in b), None)
    if kind is None:
        continue
    root = re.search(r'^\S.*\(cost=', b, flags=re.M)
    plan = b[root.start():] if root else ''
    plan = plan.split('\npsql:')[0]
    seen[kind] = seen.get(kind, 0) + 1
    why = [w for w in ('Seq Scan', 'Sort', 'Merge Join') if w in plan]
    lines = plan.split('\n')
    for i, l in enumerate(lines):
        if re.search(r'Index Scan (using|on) ', l) and 'Index Cond' not in ' '.join(lines[i + 1:i + 3]):
            why.append('an index scan with no Index Cond: ' + l.strip())
    if not re.search(r'Index Scan using incident_pkey on incident i .*\n\s+Index Cond: \(id = ANY', plan):
        why.append('the incidents not locked through incident_pkey by id')
    if why:
        bad += [kind + ': ' + ', '.join(why), plan]
for k in kinds:
    if seen.get(k, 0) < 2:
        bad.append(f'{k}: {seen.get(k, 0)} plans seen, 2 at least expected')
open(sys.argv[1].replace('plans.log', 'plans.bad'), 'w').write('\n'.join(bad))
sys.exit(1 if bad else 0)
PY
    t_log "ok: plans: the locks are key probes, then incident_pkey by id ($(grep -c 'FOR UPDATE OF i' "$T_DIR/plans.log") plans)"
fi

t_log "PASS"

-- 029_lock_order.sql — a batch locks incidents in one order, ascending id,
-- on every path of the engine (DESIGN.md §3-§4: same rows, ids, numbers,
-- events, hashes and stored state as before; only the order in which a
-- batch waits for other transactions' locks changes).
--
-- The bug (found by a read-only review of 027): batches of two lanes (or
-- instances) locked incidents in different orders: the new alerts' path of
-- _ingest_batch locked its unbound groups' open incidents in resource order
-- (021's "key order", one statement ORDER BY resource FOR UPDATE),
-- find-or-open the bound groups' by CI then the unbound ones' by resource
-- (013/021), _open_found (017) by CI, while _finish_counted and the loop's
-- re-fires lock theirs in id order. Incident 1 on resource b, 2 on a; a
-- batch resolving an alert of each locks 1 then 2; one bringing new alerts
-- to both locked 2 then 1: deadlock_detected (40P01) after
-- deadlock_timeout (1 s), the daemon retrying the victim: results right,
-- a second of latency on two lanes. And within one batch, the steps path
-- (a batch with state changes: resolves, re-fires, severity changes, later
-- segments of an alert) locked in several runs, each in id order but one
-- after the other (find-or-open's, the loop's re-fires', the end of
-- batch's): two batches could each hold an incident of an early run and
-- wait for the other's in a later one (test_lock_order's mixed and refire
-- shapes: deadlocks with the lookup fixed alone).
--
-- Here:
-- 1. Every look-up that locks incidents by key looks them up by key (the
--    sub-select: the key's index probe, in key order with enable_sort off,
--    as 021 made sure whatever the statistics) and locks them through
--    incident_pkey in id order, in the same statement (the outer scan: id
--    = ANY (the sub-select's ids) ORDER BY id FOR UPDATE; with enable_sort
--    off incident_pkey is the only path in id order): the new alerts' path
--    of _ingest_batch (unbound groups), _find_or_open (bound and unbound
--    groups now in one statement, one run: 021 had one per kind),
--    _open_found (017's bound groups, and now the unbound ones too, so that
--    _open_incidents locks both kinds in one run: before, the bound groups'
--    by CI, then find-or-open the unbound ones'), and (fix29) the open
--    incidents _route will route its bound groups with no open incident
--    to (_route_ahead), in the same run (before, _route locked them after
--    it: the new alerts' path's route). A row a concurrent
--    change resolved, closed or merged while the lock waited fails the
--    re-check (the outer WHERE: open, not merged; READ COMMITTED re-reads
--    the row version the lock was granted on) and is not returned: its
--    group goes to the INSERT (ON CONFLICT as before) or find-or-open's
--    fall-back, as before.
-- 2. The steps path of _ingest_batch (and of _ingest_core, 002's engine
--    that 003's ingest calls for batches with heartbeats or alerts of CIs
--    in maintenance) locks, when the loop has segments (or 2a alerts), the
--    incidents its steps will lock, at once, in id order, after every
--    alert row of the batch is held or made (alerts before incidents, as
--    every path takes them: the fast path's comment says why) and before
--    find-or-open: exactly what the steps will lock, as far as the alerts
--    locked in step 0 tell (_ahead_sets): the open incidents linked to
--    the alerts a step touches (a status change, a severity change, an
--    older firing (2a or the row path): those are what resolves, severity
--    changes and opened_at moves reach; an alert whose segments only count
--    touches none), every incident but closed ones linked to an alert
--    that may re-fire (its latest incident is locked whatever its state;
--    a closed one it only reads, under a lock taken after), the open
--    incidents of the new alerts' groups and of the re-firing segments'
--    groups (find-or-open's look-ups, the row path's "join its group's
--    open incident"; not those of segments that do not re-fire), and the
--    open incident _route will send a new bound group, or a re-firing
--    bound segment, with no open incident of its CI to (_route_ahead: the
--    farthest upstream CI's open incident within the correlation window,
--    as _route picks it). The steps lock them again, held already; what
--    this cannot foresee (below) after them, as before. (fix29: the
--    first version locked every non-closed link of the loop's alerts and
--    every firing segment's group's open incident, and not the route's:
--    a route locked after the run, out of id order, and incidents no step
--    locks held against the tick, which waits for incidents while it
--    holds rows it took with SKIP LOCKED: deadlocks, test_lock_order's
--    route, routehb, routenew, ticky and hbdl.) 2a (older firings: their incidents' opened_at) moved after
--    2b and 3.'s alert INSERTs, behind this lock (it touches other rows
--    than theirs: same results). A batch of new alerts only (no loop
--    segment) has one run, find-or-open's: no extra statement.
-- 3. The plans: test_lock_order checks them (auto_explain, in a fresh
--    database and after an ANALYZE at ~300 incidents): key probes, then
--    incident_pkey by id; no Seq Scan, no Sort, no index read without an
--    Index Cond.
-- tests/integration/test_lock_order.sh races two batches for two incidents
-- (a third session holding one until both wait) in eleven shapes (and a
-- batch against the tick in two more: ticky, hbdl; see fix29 above): new
-- alerts against resolves (new), a split batch's (split), bound groups'
-- (bound), bound and unbound groups in one batch (kinds), the steps path's
-- find-or-open (steps), one batch bringing a new alert and a resolve
-- (mixed), the same through the jsonb path (heartbeat), a re-fire and a
-- resolve (refire), a new bound alert routed to an upstream CI's
-- incident in a steps-path batch (route), the same through the jsonb path
-- (routehb) and in a batch of new alerts only (routenew). The first eight
-- deadlocked on main before 029 (40P01, checked); route, routehb,
-- routenew, ticky and hbdl on 029's first version (a1e643b, checked), not
-- before 029 (0f5874c: both commit, the same state, checked); mixed and
-- refire still did with 1. alone, heartbeat with 2. in _ingest_batch only,
-- kinds with 017's _open_found (checked). Both batches must commit and
-- leave exactly the state A then B leave (alerts, links, incidents,
-- counts, events; incident_counts_verify, audit_verify).
--
-- The audit: what an engine batch locks or updates, in which order (after
-- 029; "run": one statement's locks, in its order)
--   ingest_arrays -> _ingest_batch (027/029):
--   - kafka_offset: FOR UPDATE in (group, topic, partition) order, first.
--   - alerts, new alerts' path: INSERT in fingerprint order (a fingerprint
--     another transaction is inserting waits for it: key order), history.
--   - alerts, lean path (_count_lean, 022/027): UPDATE of the
--     pure counts, probed in fingerprint order; then step 0: FOR NO KEY
--     UPDATE of the other known alerts, in fingerprint order; then 2b and
--     3.'s INSERTs (fingerprint order). "Two ascending runs": yes, a
--     deadlock risk between batches sharing fingerprints whose segments
--     the two classify differently: A with x a duplicate (lean) and w a
--     state change (step 0), B with w a duplicate and x a state change, w
--     < x: A holds x and waits for w, B holds w and waits for x. Reproduced
--     with three sessions (a third holding x until both wait): 40P01 on
--     main and with 029. Only when two batches carry the same
--     fingerprints at once: a Kafka partition is one instance's, one
--     lane's, and HTTP/syslog alerts go to a lane by resource, so only two
--     instances fed the same alerts (HTTP behind a balancer, Alertmanager
--     HA) meet it. Not changed here (_count_lean is not this file's):
--     ways out cost every batch with known alerts a statement or a
--     subtransaction.
--   - incidents, new alerts' path, unbound groups: (029) one run, id order
--     (1.); the found groups' UPDATE (027's statement) on those rows; the
--     new incidents' INSERT ... ON CONFLICT (resource) DO UPDATE WHERE
--     false in resource order: waits for a transaction inserting the same
--     resource's incident (a transaction, not a row: key order, the lost
--     race of 025), and locks an incident committed meanwhile (one this
--     batch could not have looked up); then find-or-open of the lost
--     groups (id order) and _finish_counted (id order; held rows and those
--     of the race). Links (incident_alert INSERT): FOR KEY SHARE of their
--     incidents (the foreign key), all held or new.
--   - incidents, new alerts' path, bound groups: _open_incidents (017):
--     _open_found (029: bound and unbound, one run, id order); for CIs with
--     no open incident, _route (014: upstream CIs' open incidents, FOR
--     UPDATE in id order: held, _open_found locked them (fix29)) and _find_or_open
--     (029: id order; finds only incidents opened meanwhile) and
--     _open_bound's INSERT ON CONFLICT (ci_id) (as above); _finish_counted
--     (held or new).
--   - incidents, steps path: (029) the lock ahead (2.), one run, id order;
--     2a _move_opened (013: id order, held); find-or-open as above (held,
--     but races); 4. the loop (008's _ingest_loop: resolves
--     set-based, no lock; re-fires: FOR UPDATE of the alerts' latest
--     incidents, id order, held; then 002's row path, row by row in
--     fingerprint order: a re-fire's latest incident FOR UPDATE, following
--     merged_into (the incident merged into: not foreseen), a reopen's
--     UPDATE, the group's open incident through _open_incidents (and its
--     route), an older firing's opened_at UPDATE: held, but for merges,
--     closed latest incidents and races);
--     5. _finish_counted (020/027: FOR UPDATE of all its incidents, id
--     order: held, or opened by this batch) and _recount (028: id order,
--     held).
--   - after the engine (the count triggers on again): alerts leaving
--     suppression (UPDATE of alerts; _open_for_alerts: _open_incidents as
--     above, links whose count trigger (028) locks their alerts FOR SHARE
--     in id order then their incidents FOR UPDATE in id order,
--     _finish_incidents); _correlate (003/012/014/017, bound incidents
--     opened or reopened): an advisory lock first (one correlating batch at
--     a time, its wait bounded to 200 ms by 012: lock_not_available, a
--     retry, instead of a deadlock), _merge's pairs FOR UPDATE in id order,
--     the surviving incidents in id order; _fix_roles (incident_alert's
--     roles, incident_role_check rows).
--   The jsonb path (ingest_arrays -> ingest_all_arrays -> 003's ingest ->
--   _ingest_core, batches with heartbeats or alerts of CIs in maintenance):
--   heartbeat rows and the resolves of their heartbeat_missing alerts
--   first (003), then 002's engine: step 0 over every known alert of the
--   batch (one run, fingerprint order: no lean path there), the counted
--   UPDATE, 2b, 3.'s INSERTs, (029) the lock ahead (2.), _open_incidents,
--   the loop, _finish_incidents (013: _finish_counted); 003's steps after
--   it as above.
--   The tick (not a batch) locks FOR UPDATE SKIP LOCKED: it never waits for
--   a batch's incidents.
-- So a batch's incident locks are one run in id order but for what it
-- cannot foresee before its steps: an incident another transaction opened,
-- merged into, or made a route target (opened within the window upstream)
-- meanwhile, a re-fire following a merge or reading its closed latest
-- incident, a re-fire's group found by a resource or CI the re-fire
-- changes (the segment's, not the alert's: as the row path), correlation's
-- merges (serialised by its advisory lock); each locked after the run, as
-- before. And it still locks a few no step locks (fix29 removed the
-- others), each a lock more in id order, not one out of it: the links of
-- a re-firing alert other than its latest (resolved ones: which one is
-- the latest would need a sort per alert in the lock's plan, which
-- test_lock_order's plan check forbids; _ahead_sets could return it), the
-- links of a stale change segment (older than its alert's state: not told
-- apart), the group of a firing segment of a fingerprint whose alert
-- another transaction created meanwhile (its state unknown at step 0).
-- Against the tick, which holds what it took with SKIP LOCKED and then
-- waits for incidents, any such lock can still deadlock (as ticky did):
-- rarer shapes (a re-fire with several links of which one is resolved
-- and not the latest), not reproduced.
--
-- Measured: backend CPU a batch (tests/bench/bench_lane.sh, 027's
-- _ingest_batch as the previous one (OLD=OLD_LEAN=OLD_FINISH=
-- sql/027_lane.sql; for resolving, 021's _find_or_open too: OLD_FIND), the
-- batches alternating between the two in one session, 20,000 alerts (4,000
-- for resolving (10)); each run's median batch, 5 runs, ms; the machine
-- shared with two other helpers):
--   shape (batch)    027 (5 runs)                   029 (5 runs)                   029-027
--   split (50)       7.51  7.85  7.32  8.32  8.28   7.51  7.90  7.13  8.17  8.15   -0.13 (-0.18..+0.05)
--   split (5)        3.34  3.64  3.66  3.85  3.92   3.34  3.75  3.77  3.94  3.89   +0.09 (-0.02..+0.12)
--     (3 runs more, 20,000 alerts: 3.74 3.79 4.09 against 3.78 3.81 4.18)
--   interleaved (50) 10.87 11.28 10.89 10.91 11.48  10.81 11.31 11.09 11.12 11.46  +0.03 (-0.06..+0.21)
--   grouped (50)     6.76  6.87  6.82  6.93  7.11   6.79  6.90  6.91  6.85  7.09   +0.03 (-0.08..+0.09)
--   mixed (50)       5.31  5.05  5.43  5.32  5.71   5.36  5.16  5.43  5.40  5.67   +0.05 (-0.03..+0.12)
--   resolving (50)   14.72 14.94 13.65 15.52 15.92  14.96 15.23 13.62 15.72 16.52  +0.23 (-0.03..+0.61)
--   resolving (10)   8.92  8.58  9.05  8.40  9.23   9.06  8.63  9.38  8.56  9.41   +0.17 (+0.05..+0.33)
--   (029-027: the median of the runs' differences, and their range)
--   fix29 (the lock ahead's sets, _route_ahead), against 029's first
--   version (a1e643b's _ingest_batch as OLD), resolving (10), 4,000
--   alerts, 4 runs, each run's median batch, ms: 10.34 9.22 8.86 9.74
--   against 10.79 9.51 9.20 10.25: +0.29..+0.51 (~3-5 %: two PL/pgSQL
--   calls and their statements, the links' status probes; not tuned,
--   for want of time). Not measured: bound batches of new alerts only
--   (_open_found's _route_ahead: a probe per CI of the batch).
--   Deadlocks (the review's conc.sh: 4 sessions, 100 batches each, of
--   bound and unbound alerts, resolves, re-fires, ticks, API actions; 8
--   seeds): 0f5874c 82, a1e643b 16, fix29 14; by the server log (8 more
--   seeds each): _route's (4 on a1e643b) gone; left: lock-ahead waits in
--   three-session cycles with bound groups (5-7), the step 0 / lean
--   path's fingerprint order (see above), merges, the tick's heartbeat
--   ingest: not analysed. Results: the review's run2.sh (gen.py, gen2.py:
--   batches, ticks, API actions in one session), 0f5874c against fix29,
--   33 seeds: published rows and every stored row identical.
--   The latency stream's shapes (split, interleaved, grouped: the new
--   alerts' path; mixed: the lean path, then it) are within the noise;
--   split (5), where each batch finds one incident, costs at most ~0.03-0.09
--   ms more (~1-2 %: the sub-select's scan and the incident_pkey probe,
--   not a statement). resolving (the steps path: half new alerts as
--   split's, half resolves of the alerts of two batches before) pays the
--   lock ahead, one statement: +0.17-0.23 ms a batch (median of the runs'
--   differences, ~1.5-2 %).
--
-- Deadlocks (tests/bench/bench_lock_order.sh: 4 sessions of 300 batches at
-- once, each 0-4 new alerts on a pool of 12 resources and 0-2 resolves of
-- the session's own firing alerts; no fingerprint shared): main 67 and 61
-- batches failed with 40P01 (67.1 and 60.5 s of wall time, mostly
-- deadlock_timeout), 029 none (5.2 and 7.7 s); audit chains and counts
-- right in all four.
--
-- Tried and not kept:
-- - One scan, sorted by id (WHERE resource = ANY ... ORDER BY id + 0 FOR
--   UPDATE: LockRows over a Sort, so the rows are locked in id order; the
--   key's probe not forced by an order any more): the generic plan made on
--   an empty table read 006's GiST index incident_outage_idx whole with
--   every condition a filter (auto_explain), every incident at every
--   batch for the session. The sub-select keeps the key's probe whatever
--   the statistics (021's reason for enable_sort off).
-- - (fix29) For the route: the open incidents of every upstream CI of the
--   new bound alerts and re-firing bound segments (the review's partial
--   fix): it removed route's deadlock, but locks incidents _route does not
--   (a CI with an open incident of its own is not routed; _route takes
--   only the farthest upstream CI's, within the window): _route_ahead
--   picks as _route does.
-- - A lock ahead in the new alerts' path and for a steps-path batch with
--   no loop segment: one run there already (find-or-open's), nothing to
--   gain for a statement.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- (029) what the steps path's lock ahead locks beyond the links it knows
-- (see _ingest_batch's lock ahead and the file's header), from the loop's
-- segments and their alerts as locked in step 0 (p_known):
--   p_touch   the alerts a step changes an open incident of: a status
--             change (resolve, re-fire), a severity change, an older
--             firing (its incidents' opened_at); not those whose segments
--             only count (duplicates: no incident is touched)
--   p_refire  the alerts that may re-fire (a firing segment of a resolved
--             alert, or a resolve then a firing of a firing one): their
--             latest incident is locked whatever its state (resolved:
--             reopened or not)
--   p_refsegs the firing segments of those (and of fingerprints with no
--             known alert: created meanwhile): the row path joins their
--             group's open incident, or routes them, or opens one
-- Stale segments (older than the alert's state) are not told apart: they
-- count as changes (a lock more, never one less).
CREATE OR REPLACE FUNCTION triaged._ahead_sets(p_segs triaged._segment[], p_known triaged._known[],
                                               OUT p_touch bigint[], OUT p_refire bigint[],
                                               OUT p_refsegs triaged._segment[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
  SELECT coalesce(array_agg(DISTINCT k.id)
                    FILTER (WHERE s.status <> k.status
                               OR (s.status = 'firing' AND s.severity <> k.severity)
                               OR (s.status = 'firing' AND k.status = 'firing'
                                   AND s."first" < k.fired_at)), '{}'),
         coalesce(array_agg(DISTINCT k.id)
                    FILTER (WHERE (s.status = 'firing' AND k.status = 'resolved')
                               OR (s.status = 'resolved' AND k.status = 'firing'
                                   AND s.fp IN (SELECT f.fp FROM unnest(p_segs) f
                                                 WHERE f.status = 'firing'))), '{}')
    INTO p_touch, p_refire
    FROM unnest(p_segs) s
    JOIN unnest(p_known) k ON k.fingerprint = s.fp;
  p_refsegs := ARRAY(SELECT s FROM unnest(p_segs) s
                      WHERE s.status = 'firing'
                        AND (coalesce((SELECT k.status FROM unnest(p_known) k
                                        WHERE k.fingerprint = s.fp LIMIT 1), '') <> 'firing'
                             OR EXISTS (SELECT 1 FROM unnest(p_segs) r
                                         WHERE r.fp = s.fp AND r.status = 'resolved')));
END $$;

-- (029) the open incidents _route (014) would route groups to: for each
-- (CI, opened at) whose CI has no open incident, the open incident of its
-- farthest upstream CI (triaged._ci_up's order) opened within the
-- correlation window of it, as _route picks it; not locked here (the
-- callers lock them with the rest of their run, in id order). Read
-- without a lock: what changes meanwhile is locked after the run, by
-- _route itself, as before 029.
CREATE OR REPLACE FUNCTION triaged._route_ahead(p_cis bigint[], p_ats timestamptz[])
RETURNS bigint[]
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
AS $$
DECLARE
  v_window interval;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM unnest(p_cis) c WHERE c IS NOT NULL) THEN
    RETURN '{}';
  END IF;
  v_window := coalesce(nullif(current_setting('triaged.correlation_window_ms', true), '')::float8,
                       600000) * interval '1 millisecond';
  RETURN ARRAY(
    SELECT o.id
      FROM (SELECT g.at, g.up,
                   (SELECT max(u.pos)
                      FROM unnest(g.up) WITH ORDINALITY u(ci, pos)
                     WHERE EXISTS (SELECT 1 FROM triaged.incident x
                                    WHERE x.ci_id = u.ci AND x.status IN ('new', 'acknowledged')
                                      AND x.merged_into IS NULL
                                      AND x.opened_at BETWEEN g.at - v_window
                                                          AND g.at + v_window)) AS pos
              FROM (SELECT p.at, triaged._ci_up(p.ci) AS up
                      FROM unnest(p_cis, p_ats) p(ci, at)
                     WHERE p.ci IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM triaged.incident y
                                        WHERE y.ci_id = p.ci
                                          AND y.status IN ('new', 'acknowledged')
                                          AND y.merged_into IS NULL)) g) t
     CROSS JOIN LATERAL (SELECT x.id FROM triaged.incident x
                          WHERE x.ci_id = t.up[t.pos] AND x.status IN ('new', 'acknowledged')
                            AND x.merged_into IS NULL
                            AND x.opened_at BETWEEN t.at - v_window AND t.at + v_window
                         OFFSET 0) o
     WHERE t.pos IS NOT NULL);
END $$;

-- (029) the steps path's lock ahead (_ingest_batch and _ingest_core, see
-- the file's header): the incidents the steps will lock, from the loop's
-- segments (p_segs) and their alerts as step 0 locked them (p_known), the
-- batch's new alerts (p_new) and the alerts of other steps that move their
-- open incidents (p_more: _ingest_batch's 2a), locked at once in id order.
-- Looked up by key (links by alert, incidents by CI or resource: the
-- sub-selects, in key order with enable_sort off, the keys' probes) and
-- locked through incident_pkey; generic plans, made once a session.
CREATE OR REPLACE FUNCTION triaged._lock_ahead(p_segs triaged._segment[], p_known triaged._known[],
                                               p_new triaged._new_alert[], p_more bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_touch   bigint[];
  v_refire  bigint[];
  v_refsegs triaged._segment[];
  v_route   bigint[];
  v_pcm     text := current_setting('plan_cache_mode');
  v_sort    text := current_setting('enable_sort');
  v_mode    text;
BEGIN
  SELECT * INTO v_touch, v_refire, v_refsegs FROM triaged._ahead_sets(p_segs, p_known);
  v_route := triaged._route_ahead(
               ARRAY(SELECT n.ci_id FROM unnest(p_new) n
                     UNION ALL SELECT s.ci_id FROM unnest(v_refsegs) s),
               ARRAY(SELECT n.first_seen FROM unnest(p_new) n
                     UNION ALL SELECT s."first" FROM unnest(v_refsegs) s));
  -- (the lock alone: _ahead_sets and _route_ahead keep the caller's modes)
  v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);
  v_mode := set_config('enable_sort', 'off', true);
  PERFORM 1
     FROM triaged.incident i
    WHERE i.id = ANY (ARRAY(SELECT l.incident_id
                              FROM unnest(v_refire) a(id)
                             CROSS JOIN LATERAL (SELECT ia.incident_id
                                                   FROM triaged.incident_alert ia
                                                  WHERE ia.alert_id = a.id OFFSET 0) l)
                      || ARRAY(SELECT l.incident_id
                                 FROM unnest(v_touch || p_more) a(id)
                                CROSS JOIN LATERAL (SELECT ia.incident_id
                                                      FROM triaged.incident_alert ia
                                                     WHERE ia.alert_id = a.id
                                                       -- (a probe by id: as a
                                                       -- semi-join, the generic
                                                       -- plan read another index)
                                                       AND (SELECT y.status IN ('new', 'acknowledged')
                                                                   AND y.merged_into IS NULL
                                                              FROM triaged.incident y
                                                             WHERE y.id = ia.incident_id)
                                                     OFFSET 0) l)
                      || ARRAY(SELECT x.id FROM triaged.incident x
                                WHERE x.ci_id = ANY (ARRAY(
                                        SELECT n.ci_id FROM unnest(p_new) n
                                         WHERE n.ci_id IS NOT NULL
                                        UNION ALL
                                        SELECT s.ci_id FROM unnest(v_refsegs) s
                                         WHERE s.ci_id IS NOT NULL))
                                  AND x.status IN ('new', 'acknowledged')
                                  AND x.merged_into IS NULL
                                ORDER BY x.ci_id)
                      || ARRAY(SELECT x.id FROM triaged.incident x
                                WHERE x.resource = ANY (ARRAY(
                                        SELECT n.resource FROM unnest(p_new) n
                                         WHERE n.ci_id IS NULL
                                        UNION ALL
                                        SELECT s.resource FROM unnest(v_refsegs) s
                                         WHERE s.ci_id IS NULL))
                                  AND x.ci_id IS NULL AND x.status IN ('new', 'acknowledged')
                                  AND x.merged_into IS NULL
                                ORDER BY x.resource)
                      || v_route)
      AND i.status <> 'closed'
    ORDER BY i.id
      FOR UPDATE OF i;
  v_mode := set_config('enable_sort', v_sort, true);
  v_mode := set_config('plan_cache_mode', v_pcm, true);
END $$;

-- (029) the batch: 027's, the changes marked "(029)": the open incidents
-- of the new alerts' unbound groups locked in id order; the steps path's
-- lock ahead, 2a after it (see the file's header)
CREATE OR REPLACE FUNCTION triaged._ingest_batch(
    p_fp text[], p_source text[], p_resource text[], p_check text[], p_dedup_key text[],
    p_ci_id bigint[], p_summary text[], p_labels jsonb[], p_severity text[], p_status text[],
    p_n bigint[], p_first timestamptz[], p_last timestamptz[], p_cis jsonb,
    p_offsets jsonb, p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
SET enable_seqscan = off -- as 002's: plans cached while the tables were small
AS $$
DECLARE
  v_now       timestamptz;
  v_actor     text;
  v_reopen    interval;
  v_flap_thr  integer;
  v_flap_win  interval;
  v_window    interval;
  v_many      integer;
  v_fenced    triaged.ingest_row[];
  v_nins      integer;
  v_nneg      integer;
  v_nsegs     integer := coalesce(cardinality(p_fp), 0);
  v_bad       triaged._segment;
  v_known     triaged._known[];
  v_counted   integer;
  v_ncount    integer;
  v_unksegs   triaged._segment[] := '{}';  -- (019) the classes: empty unless classified
  v_newsegs   triaged._segment[] := '{}';
  v_loopsegs  triaged._segment[] := '{}';
  v_unknown   integer := 0;
  v_stale     integer := 0;
  v_dups      integer;
  v_ndup_hint integer;
  v_new       triaged._new_alert[] := '{}';
  v_reqs      triaged._group_req[];
  v_grp       triaged._group_res[];
  v_nlinked   bigint;
  v_changes   triaged._change[] := '{}';
  v_loop      triaged._loop_result;
  v_opened    integer := 0;
  v_inc       triaged.ingest_row[];
  v_post      triaged.ingest_row[] := '{}';
  v_plain     text[];
  v_unsup     bigint[];
  v_corr      bigint[];
  v_older     triaged._older[] := '{}';
  v_delta     triaged._count_delta[] := '{}';
  v_recount   bigint[] := '{}';
  v_loopids   bigint[] := '{}';
  v_loops0    text[] := '{}';
  v_bound     boolean;
  v_single    boolean;
  v_lean      boolean[];   -- (018) segment i was applied by the lean path
  v_nlean     integer;
  v_rest      text[];      -- (018) the known alerts of the other segments
  v_fastnew   boolean := false;  -- (019) new alerts only: see the header
  v_nnew      integer := 0;      -- (019) alerts created (either path)
  v_nalert    bigint;
  v_nid       bigint[];         -- (019) the new alerts' path: its alerts
  v_nfp       text[];
  v_nres      text[];
  v_nchk      text[];
  v_nci       bigint[];
  v_nsev      text[];
  v_nocc      bigint[];
  v_nfirst    timestamptz[];
  v_nlast     timestamptz[];
  v_nflap     boolean[];
  v_alrows    triaged.ingest_row[] := '{}';
  v_folded    boolean := false;  -- (021) the new incidents made whole here
  v_att       triaged._group_res[];  -- (025) find-or-open's answer (a lost race)
  v_lost      triaged._group_req[];  -- (025) groups whose incident a race opened
  v_arows     triaged.ingest_row[];
  v_irows     triaged.ingest_row[];
  v_nlink     bigint;
  v_nbound    boolean;           -- (021) a new alert bound to a CI
  v_merged    bigint := 0;       -- (021) incidents merged (v_post's rows)
  v_oid       bigint[];          -- (021) their open incidents
  v_ores      text[];
  v_onum      text[];
  v_pcm       text;
  v_sort      text;
  v_mode      text;
  v_none      boolean;           -- (027) none of the batch's fingerprints known
BEGIN
  -- options (002's, then 003's)
  IF p_opts IS NULL OR jsonb_typeof(p_opts) <> 'object' THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'triaged.ingest: options ($3) must be a JSON object';
  END IF;
  v_now      := coalesce((p_opts->>'now')::timestamptz, now());
  v_actor    := coalesce(nullif(p_opts->>'actor', ''), 'triaged');
  v_reopen   := coalesce((p_opts->>'reopen_window_ms')::float8, 1800000) * interval '1 millisecond';
  v_flap_thr := coalesce((p_opts->>'flap_threshold')::integer, 6);
  v_flap_win := coalesce((p_opts->>'flap_window_ms')::float8, 1800000) * interval '1 millisecond';
  v_window   := coalesce((p_opts->>'correlation_window_ms')::float8, 600000)
                * interval '1 millisecond';
  v_many     := coalesce((p_opts->>'impact_many_services')::integer, 3);
  -- (019) one statement for the three settings
  PERFORM set_config('triaged.priority_matrix', coalesce(p_opts->>'priority_matrix', ''), true),
          set_config('triaged.correlation_window_ms',
                     coalesce(p_opts->>'correlation_window_ms', ''), true),
          set_config('triaged.impact_many_services',
                     coalesce(p_opts->>'impact_many_services', ''), true);
  IF p_cis IS NOT NULL THEN   -- (016: NULL, nothing to keep; the call costs)
    PERFORM triaged._batch_ci_prepare(p_cis);
  END IF;

  IF coalesce(cardinality(p_source), 0) <> v_nsegs OR coalesce(cardinality(p_resource), 0) <> v_nsegs
     OR coalesce(cardinality(p_check), 0) <> v_nsegs
     OR coalesce(cardinality(p_dedup_key), 0) <> v_nsegs
     OR coalesce(cardinality(p_ci_id), 0) <> v_nsegs
     OR coalesce(cardinality(p_summary), 0) <> v_nsegs
     OR coalesce(cardinality(p_labels), 0) <> v_nsegs
     OR coalesce(cardinality(p_severity), 0) <> v_nsegs
     OR coalesce(cardinality(p_status), 0) <> v_nsegs OR coalesce(cardinality(p_n), 0) <> v_nsegs
     OR coalesce(cardinality(p_first), 0) <> v_nsegs
     OR coalesce(cardinality(p_last), 0) <> v_nsegs THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'triaged.ingest_arrays: the segment arrays must all have the same length';
  END IF;

  -- offsets: compare-and-set, all or nothing
  IF p_offsets IS NOT NULL AND jsonb_typeof(p_offsets) <> 'null' THEN
    IF jsonb_typeof(p_offsets) <> 'array' THEN
      RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = 'triaged.ingest: offsets ($2) must be a JSON array';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_to_recordset(p_offsets)
                 AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
               WHERE o."group" IS NULL OR o.topic IS NULL OR o."partition" IS NULL
                  OR o.expect IS NULL OR o."next" IS NULL OR o.expect < -1 OR o."next" < 0) THEN
      RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = 'triaged.ingest: each offset needs group, topic, partition, expect >= -1, next >= 0';
    END IF;
    IF (SELECT count(*) <> count(DISTINCT (o."group", o.topic, o."partition"))
          FROM jsonb_to_recordset(p_offsets) AS o("group" text, topic text, "partition" integer)) THEN
      RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = 'triaged.ingest: a partition appears twice in the offsets';
    END IF;
    -- lock the stored rows in a fixed order
    PERFORM 1
       FROM triaged.kafka_offset k
       JOIN jsonb_to_recordset(p_offsets)
              AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
         ON k.group_id = o."group" AND k.topic = o.topic AND k.partition = o."partition"
      ORDER BY k.group_id, k.topic, k.partition
        FOR UPDATE OF k;
    -- then check them (a fresh snapshot: sees what the lock waited for)
    SELECT coalesce(array_agg(ROW('fenced', o.topic || '/' || o."partition",
                                  ('{"stored": ' || coalesce(k.next_offset::text, 'null') || '}')::json
                                 )::triaged.ingest_row
                              ORDER BY o."group", o.topic, o."partition"), '{}')
      INTO v_fenced
      FROM jsonb_to_recordset(p_offsets)
             AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
      LEFT JOIN triaged.kafka_offset k
        ON k.group_id = o."group" AND k.topic = o.topic AND k.partition = o."partition"
     WHERE (o.expect = -1 AND k.next_offset IS NOT NULL)
        OR (o.expect <> -1 AND k.next_offset IS DISTINCT FROM o.expect);
    IF cardinality(v_fenced) > 0 THEN
      RETURN QUERY SELECT * FROM unnest(v_fenced);
      RETURN;
    END IF;
    UPDATE triaged.kafka_offset k
       SET next_offset = o."next", instance = v_actor, updated_at = now()
      FROM jsonb_to_recordset(p_offsets)
             AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
     WHERE o.expect <> -1
       AND k.group_id = o."group" AND k.topic = o.topic AND k.partition = o."partition";
    SELECT count(*) INTO v_nneg
      FROM jsonb_to_recordset(p_offsets) AS o(expect bigint) WHERE o.expect = -1;
    IF v_nneg > 0 THEN
      WITH ins AS (
        INSERT INTO triaged.kafka_offset (group_id, topic, partition, next_offset, instance)
        SELECT o."group", o.topic, o."partition", o."next", v_actor
          FROM jsonb_to_recordset(p_offsets)
                 AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
         WHERE o.expect = -1
         ORDER BY o."group", o.topic, o."partition"
        ON CONFLICT (group_id, topic, partition) DO NOTHING
        RETURNING 1)
      SELECT count(*) INTO v_nins FROM ins;
      IF v_nins <> v_nneg THEN
        -- another instance stored this partition's first offset meanwhile;
        -- the retry will report it as fenced
        RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
          MESSAGE = 'triaged.ingest: a kafka_offset row was created concurrently (retry)';
      END IF;
    END IF;
  END IF;


  -- The segments are read from the arrays where they are used: they are
  -- never gathered into one array of composites (building it and reading
  -- it back at each step cost ~6 us a segment). Positions (ord) are the
  -- arrays' (1-based), as 002's are the JSON array's.

  -- a malformed segment: the first in (fingerprint, position) order, told
  -- as 002 tells it; looked for when a cheap test over whole arrays (C
  -- loops, no rows) and a pass over five of them find one
  IF array_position(p_fp, NULL) IS NOT NULL OR '' = ANY (p_fp)
     OR array_position(p_source, NULL) IS NOT NULL
     OR array_position(p_resource, NULL) IS NOT NULL
     OR array_position(p_check, NULL) IS NOT NULL
     OR NOT p_status <@ '{firing,resolved}'::text[]
     OR NOT p_severity <@ '{critical,major,minor,warning,info}'::text[]
     OR array_position(p_first, NULL) IS NOT NULL OR array_position(p_last, NULL) IS NOT NULL
     OR EXISTS (SELECT 1 FROM unnest(p_status, p_n, p_first, p_last, p_labels)
                                j(status, n, "first", "last", labels)
                 WHERE j."last" < j."first" OR (j.status = 'firing' AND (j.n IS NULL OR j.n < 1))
                    OR jsonb_typeof(coalesce(j.labels, '{}'::jsonb)) <> 'object') THEN
    SELECT (ROW(j.fp, j.source, j.resource, j."check", j.dedup_key, j.ci_id, j.summary,
                coalesce(j.labels, '{}'::jsonb), j.severity, j.status,
                CASE WHEN j.status = 'resolved' THEN 0 ELSE j.n END, j."first", j."last", NULL,
                j.o::integer, NULL, NULL, NULL, NULL)::triaged._segment).*
      INTO v_bad
      FROM unnest(p_fp, p_source, p_resource, p_check, p_dedup_key, p_ci_id, p_summary,
                  p_labels, p_severity, p_status, p_n, p_first, p_last)
             WITH ORDINALITY j(fp, source, resource, "check", dedup_key, ci_id, summary,
                               labels, severity, status, n, "first", "last", o)
     WHERE j.fp IS NULL OR j.fp = '' OR j.source IS NULL OR j.resource IS NULL
        OR j."check" IS NULL OR j.status IS NULL OR j.status NOT IN ('firing', 'resolved')
        OR j.severity IS NULL
        OR j.severity NOT IN ('critical', 'major', 'minor', 'warning', 'info')
        OR j."first" IS NULL OR j."last" IS NULL OR j."last" < j."first"
        OR (j.status = 'firing' AND (j.n IS NULL OR j.n < 1))
        OR jsonb_typeof(coalesce(j.labels, '{}'::jsonb)) <> 'object'
     ORDER BY j.fp, j.o
     LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = format('triaged.ingest: bad segment #%s (fp %s): %s', v_bad.ord, v_bad.fp,
                         to_jsonb(v_bad) - 'ord' - 'first_of_fp' - 'first_firing' - 'fp_fires'
                         - 'cls');
    END IF;
  END IF;

  -- From here to the end of the engine, the count triggers leave the
  -- incidents' alert_count and firing_count alone: the deltas are worked
  -- out below and applied by _finish_counted (see the file's header).
  -- ((021) an assignment: a simple expression, no statement)
  v_mode := set_config('triaged.counts_deferred', 'on', true);

  -- (018) the lean path: the segments that are certainly pure counts
  -- (duplicates) applied by one plain UPDATE (see _count_lean); the others
  -- go through steps 0-4 as before, step 0 locking only their alerts. It
  -- also says whether every fingerprint has one segment (016's v_single).
  -- (027) A batch none of whose fingerprints is known (new alerts only: a
  -- storm's first sight, the latency run's batches) is told so here, by
  -- _count_lean's first test (its first fingerprint looked up, then, when
  -- new, all of them), now one statement, and _count_lean is not called
  -- (its call: a statement, its SET clauses); otherwise _count_lean, whose
  -- test moved here, does the rest as before (the same answers)
  v_none := false;
  IF v_nsegs > 0 THEN
    SELECT x.none,
           CASE WHEN x.none THEN (SELECT count(DISTINCT f.fp) FROM unnest(p_fp) f(fp)) = v_nsegs
           END
      INTO v_none, v_single
      FROM (SELECT NOT EXISTS (SELECT 1 FROM triaged.alert a WHERE a.fingerprint = p_fp[1])
                   AND NOT EXISTS (SELECT 1 FROM triaged.alert a
                                    WHERE a.fingerprint = ANY (p_fp)) AS none
            OFFSET 0) x;
  END IF;
  IF v_none THEN
    v_lean := NULL;
    v_rest := '{}';
    v_nlean := 0;
  ELSE
  SELECT l.lean, l.rest, l.nlean, l.single INTO v_lean, v_rest, v_nlean, v_single
    FROM triaged._count_lean(p_fp, p_ci_id, p_summary, p_labels, p_severity, p_status, p_n,
                             p_first, p_last) l;
  END IF;

  -- (019) what is left after the lean path is new alerts only (none of
  -- its fingerprints known, one segment each, all firing): their path
  IF v_nlean < v_nsegs AND cardinality(v_rest) = 0 AND v_single THEN
    IF v_nlean = 0 THEN
      v_fastnew := NOT ('resolved' = ANY (p_status));
    ELSE
      v_fastnew := NOT EXISTS (SELECT 1 FROM unnest(p_status, v_lean) s(status, lean)
                                WHERE s.status = 'resolved' AND NOT s.lean);
    END IF;
  END IF;
  IF v_fastnew THEN
    BEGIN
      -- the alerts first (in fingerprint order, as _create_alerts) with
      -- their creation in the history, then the incidents: 018's order, so
      -- that a batch holds alert rows before incident rows as 018's steps
      -- do (the reverse could deadlock with a batch of 018's path holding
      -- one of these fingerprints, or with a CI delete's table locks), and a
      -- fingerprint created meanwhile fails here, before any incident
      -- number is spent
      WITH ins AS (
        INSERT INTO triaged.alert AS a (fingerprint, source, resource, check_name, dedup_key,
                                        severity, status, summary, labels, ci_id, occurrences,
                                        first_seen, last_seen, fired_at, resolved_at,
                                        state_changed_at, flapping)
        SELECT j.fp, j.source, j.resource, j."check", j.dedup_key, j.severity, 'firing',
               j.summary, coalesce(j.labels, '{}'::jsonb), j.ci_id, j.n, j."first",
               greatest(j."last", j."first"), j."first", NULL, j."first", 1 > v_flap_thr
          FROM unnest(p_fp, p_source, p_resource, p_check, p_dedup_key, p_ci_id, p_summary,
                      p_labels, p_severity, p_n, p_first, p_last)
                 WITH ORDINALITY j(fp, source, resource, "check", dedup_key, ci_id, summary,
                                   labels, severity, n, "first", "last", o)
         WHERE v_nlean = 0 OR NOT v_lean[j.o]
         ORDER BY j.fp
        RETURNING a.id, a.fingerprint, a.resource, a.check_name, a.ci_id, a.severity,
                  a.occurrences, a.first_seen, a.last_seen, a.flapping),
      hist AS (
        INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                           occurrences, detail)
        SELECT ins.id, ins.first_seen, NULL, 'firing', ins.severity, ins.occurrences,
               CASE WHEN ins.flapping THEN '{"flapping": true}'::jsonb ELSE '{}'::jsonb END
          FROM ins)
      SELECT coalesce(array_agg(ins.id), '{}'),
             coalesce(array_agg(ins.fingerprint), '{}'),
             coalesce(array_agg(ins.resource), '{}'),
             coalesce(array_agg(ins.check_name), '{}'),
             coalesce(array_agg(ins.ci_id), '{}'),
             coalesce(array_agg(ins.severity), '{}'),
             coalesce(array_agg(ins.occurrences), '{}'),
             coalesce(array_agg(ins.first_seen), '{}'),
             coalesce(array_agg(ins.last_seen), '{}'),
             coalesce(array_agg(ins.flapping), '{}'),
             coalesce(bool_or(ins.ci_id IS NOT NULL), false)   -- (021)
        INTO v_nid, v_nfp, v_nres, v_nchk, v_nci, v_nsev, v_nocc, v_nfirst, v_nlast, v_nflap,
             v_nbound
        FROM ins;
      v_nalert := cardinality(v_nid);
      -- (021) unbound groups only (no new alert bound to a CI): their open
      -- incidents by resource, locked in resource order (013's order for
      -- unbound groups), in one single-table statement with a generic plan,
      -- made once a session with enable_sort off: the partial unique key
      -- incident_open_resource_key is the only index that gives the rows in
      -- resource order, so its probe is the plan whatever the statistics
      -- (see the file's header)
      -- (the statements of this path read the batch's arrays, the lookup
      -- and the incidents' INSERT by key: generic plans, made once)
      v_pcm := current_setting('plan_cache_mode');
      v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);
      IF NOT v_nbound THEN
        v_sort := current_setting('enable_sort');
        v_mode := set_config('enable_sort', 'off', true);
        -- (029) looked up by resource (the sub-select: the key's probe, as
        -- before), locked in id order (the outer scan: incident_pkey's
        -- probe, the only path in id order with enable_sort off), the rule
        -- of every lock of incidents in a batch (see 029's header); a row
        -- that a concurrent change left resolved or merged when its lock is
        -- granted fails the re-check and is not returned (its group then
        -- goes to the INSERT below, as before)
        SELECT coalesce(array_agg(o.id), '{}'), coalesce(array_agg(o.resource), '{}'),
               coalesce(array_agg(o.number), '{}')
          INTO v_oid, v_ores, v_onum
          FROM (SELECT i.id, i.resource, i.number FROM triaged.incident i
                 WHERE i.id = ANY (ARRAY(SELECT x.id FROM triaged.incident x
                                          WHERE x.resource = ANY (v_nres)
                                            AND x.ci_id IS NULL
                                            AND x.status IN ('new', 'acknowledged')
                                            AND x.merged_into IS NULL
                                          ORDER BY x.resource))
                   AND i.ci_id IS NULL AND i.status IN ('new', 'acknowledged')
                   AND i.merged_into IS NULL
                 ORDER BY i.id
                   FOR UPDATE OF i) o;
        v_mode := set_config('enable_sort', v_sort, true);
      END IF;
      IF NOT v_nbound THEN
        -- (027) the groups found: their end of batch is part of the
        -- statement below (no call of _finish_counted; see the file's
        -- header), their events first (the lower ids, as before)
        IF cardinality(v_oid) = 0 THEN
          v_inc := '{}';
          -- (021) then, in one statement, the groups without an open
          -- incident (a storm's new resources; (025) not those found above):
          -- each group's request (title and resource of its earliest alert,
          -- opened at the earliest first time, the most severe severity, as
          -- find-or-open's requests), its new incident inserted whole, as the
          -- end of batch would leave it (one 'opened' event, its hash, the
          -- counts: its alerts, all firing; severity, priority and urgency
          -- the request's, which the end of batch keeps), its event; (025)
          -- the links and the alerts' published rows of every group, found
          -- or new (one INSERT, one list in fingerprint order, as before);
          -- the new incidents' rows: no find-or-open, no end of batch for
          -- them. Ids and numbers are the column defaults', drawn in the same
          -- order (resource order). (025) A group whose incident another
          -- transaction opened meanwhile is left out by ON CONFLICT DO
          -- UPDATE ... WHERE false (the partial unique key; once that
          -- transaction commits; the row locked, in resource order):
          -- its request comes back in v_lost, for find-or-open below; the id
          -- and number drawn for it are spent, as find-or-open's INSERT
          -- spends them (021 rolled the whole path back: its F1).
          WITH n AS (
            SELECT n.*, triaged._gkey(NULL, n.resource) AS gkey
              FROM unnest(v_nid, v_nfp, v_nres, v_nchk, v_nsev, v_nocc, v_nfirst, v_nlast, v_nflap)
                     n(id, fingerprint, resource, check_name, severity, occurrences, first_seen,
                       last_seen, flapping)),
          s AS (
            SELECT n.gkey, n.resource,
                   (array_agg(n.check_name || ' on ' || n.resource
                              ORDER BY n.first_seen, n.fingerprint))[1] AS title,
                   min(n.first_seen) AS opened_at,
                   triaged.severity_of_rank(min(triaged.severity_rank(n.severity))) AS severity,
                   count(*)::integer AS n, array_agg(DISTINCT n.fingerprint) AS fps
              FROM n
             WHERE n.resource <> ALL (v_ores)   -- (025) not those found above
             GROUP BY n.gkey, n.resource
             ORDER BY n.resource),
          k AS (   -- (the column defaults of id and number, in the INSERT's order)
            SELECT s.*, nextval('triaged.incident_id_seq') AS id,
                   'INC' || lpad(nextval('triaged.incident_number_seq')::text, 7, '0') AS number
              FROM s),
          e AS (
            SELECT k.*, triaged.severity_rank(k.severity)::smallint AS priority,
                   triaged.severity_urgency(k.severity)::smallint AS urgency,
                   jsonb_build_object('title', k.title,
                                      'priority', triaged.severity_rank(k.severity)::smallint,
                                      'severity', k.severity, 'ci_id', NULL::bigint,
                                      'resource', k.resource,
                                      'fingerprints', coalesce(to_jsonb(k.fps), '[]')) AS detail
              FROM k),
          h AS (
            SELECT e.*, sha256(triaged.event_content(e.id, e.opened_at, v_actor, 'opened',
                                                     e.detail)) AS hash
              FROM e),
          ins AS (
            INSERT INTO triaged.incident AS i (id, number, title, status, priority, impact,
                                               urgency, severity, ci_id, resource, opened_at,
                                               last_event_hash, alert_count, firing_count)
            SELECT h.id, h.number, h.title, 'new', h.priority, 3, h.urgency, h.severity, NULL,
                   h.resource, h.opened_at, h.hash, h.n, h.n
              FROM h ORDER BY h.resource
            ON CONFLICT (resource) WHERE ci_id IS NULL AND status IN ('new', 'acknowledged')
                                         AND merged_into IS NULL
            DO UPDATE SET updated_at = now() WHERE false   -- (025: see the header, 3.)
            RETURNING i.*),
          ev AS (
            INSERT INTO triaged.incident_event (incident_id, at, actor, kind, detail, prev_hash,
                                                hash)
            SELECT h.id, h.opened_at, v_actor, 'opened', h.detail, NULL, h.hash
              FROM ins JOIN h ON h.id = ins.id
             ORDER BY h.id),
          m AS (   -- ((025) the groups inserted, and those found above)
            SELECT n.*, i.id AS incident_id, i.number FROM n JOIN ins i ON i.resource = n.resource
            UNION ALL
            SELECT n.*, o.id, o.number
              FROM n JOIN unnest(v_oid, v_ores, v_onum) o(id, resource, number)
                     ON o.resource = n.resource),
          lnk AS (
            INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
            SELECT m.incident_id, m.id, 'cause' FROM m ORDER BY m.incident_id, m.id
            RETURNING 1)
          SELECT (SELECT coalesce(array_agg(ROW('incident.opened', i.number,
                                                triaged._incident_json(i.id, i.number, i.title,
                                                  i.status, i.priority, i.impact, i.urgency,
                                                  i.severity, i.resource, i.ci_id, i.opened_at,
                                                  i.acknowledged_at, i.resolved_at, i.closed_at,
                                                  i.reopen_count, i.resolve_pending_since,
                                                  i.alert_count, i.firing_count)
                                               )::triaged.ingest_row ORDER BY i.id), '{}')
                    FROM ins i),
                 (SELECT coalesce(array_agg(ROW('alert.firing', m.fingerprint,
                                                triaged.alert_payload(m.fingerprint, 'firing',
                                                  m.severity, m.resource, m.check_name,
                                                  m.occurrences, m.first_seen, m.last_seen,
                                                  m.flapping, m.number)
                                               )::triaged.ingest_row ORDER BY m.fingerprint), '{}')
                    FROM m),
                 (SELECT count(*) FROM lnk),
                 -- (025) the requests of the groups left out (none but in a race)
                 (SELECT coalesce(array_agg(ROW(k.gkey, NULL, k.resource, k.title, k.opened_at,
                                                k.severity)::triaged._group_req
                                            ORDER BY k.resource), '{}')
                    FROM k WHERE k.id NOT IN (SELECT i.id FROM ins i))
            INTO v_irows, v_alrows, v_nlinked, v_lost;
          v_inc := v_irows;
        ELSE
          -- (027) 025's statement (see below) and, first, the end of batch of
          -- the groups the lookup found: _finish_counted's for 'attached'
          -- changes of new firing alerts with their count deltas (+n, +n),
          -- on unbound open incidents this transaction locked (the lookup):
          -- the same aggregates, the same expressions of the new severity,
          -- priority, urgency and pending resolve (a CI's priority matrix,
          -- reopens, refires, resolves, the last resolve time and the
          -- incident opened by the batch left out: none can be), the same
          -- events in the same order (alerts_attached, priority_changed,
          -- resolve_cancelled, resolve_pending), hash chain, UPDATE and
          -- 'incident.updated' rows in id order. Their events and the new
          -- incidents' 'opened' events in one INSERT, theirs first.
          WITH RECURSIVE
          n AS (
            SELECT n.*, triaged._gkey(NULL, n.resource) AS gkey
              FROM unnest(v_nid, v_nfp, v_nres, v_nchk, v_nsev, v_nocc, v_nfirst, v_nlast, v_nflap)
                     n(id, fingerprint, resource, check_name, severity, occurrences, first_seen,
                       last_seen, flapping)),
          s AS (
            SELECT n.gkey, n.resource,
                   (array_agg(n.check_name || ' on ' || n.resource
                              ORDER BY n.first_seen, n.fingerprint))[1] AS title,
                   min(n.first_seen) AS opened_at,
                   triaged.severity_of_rank(min(triaged.severity_rank(n.severity))) AS severity,
                   count(*)::integer AS n, array_agg(DISTINCT n.fingerprint) AS fps
              FROM n
             WHERE n.resource <> ALL (v_ores)   -- (025) not those found above
             GROUP BY n.gkey, n.resource
             ORDER BY n.resource),
          k AS (   -- (the column defaults of id and number, in the INSERT's order)
            SELECT s.*, nextval('triaged.incident_id_seq') AS id,
                   'INC' || lpad(nextval('triaged.incident_number_seq')::text, 7, '0') AS number
              FROM s),
          e AS (
            SELECT k.*, triaged.severity_rank(k.severity)::smallint AS priority,
                   triaged.severity_urgency(k.severity)::smallint AS urgency,
                   jsonb_build_object('title', k.title,
                                      'priority', triaged.severity_rank(k.severity)::smallint,
                                      'severity', k.severity, 'ci_id', NULL::bigint,
                                      'resource', k.resource,
                                      'fingerprints', coalesce(to_jsonb(k.fps), '[]')) AS detail
              FROM k),
          h AS (
            SELECT e.*, sha256(triaged.event_content(e.id, e.opened_at, v_actor, 'opened',
                                                     e.detail)) AS hash
              FROM e),
          ins AS (
            INSERT INTO triaged.incident AS i (id, number, title, status, priority, impact,
                                               urgency, severity, ci_id, resource, opened_at,
                                               last_event_hash, alert_count, firing_count)
            SELECT h.id, h.number, h.title, 'new', h.priority, 3, h.urgency, h.severity, NULL,
                   h.resource, h.opened_at, h.hash, h.n, h.n
              FROM h ORDER BY h.resource
            ON CONFLICT (resource) WHERE ci_id IS NULL AND status IN ('new', 'acknowledged')
                                         AND merged_into IS NULL
            DO UPDATE SET updated_at = now() WHERE false   -- (025: see the header, 3.)
            RETURNING i.*),
          -- (027) the found groups' end of batch: 020's agg, st and calc
          -- (see _finish_counted) for their changes and deltas
          fa AS (
            SELECT o.id AS inc_id,
                   array_agg(DISTINCT n.fingerprint) AS attached,
                   min(n.first_seen) AS attached_at,
                   min(triaged.severity_rank(n.severity)) AS best_rank,
                   (array_agg(n.first_seen ORDER BY triaged.severity_rank(n.severity),
                                                    n.first_seen))[1] AS best_at,
                   max(n.first_seen) AS fire_at,
                   count(*) AS d
              FROM n JOIN unnest(v_oid, v_ores) o(id, resource) ON o.resource = n.resource
             GROUP BY o.id),
          -- (each incident probed by its key: joined, a plan made while
          -- incident had a few hundred rows walked incident_pkey from its
          -- first entry in a merge join, every incident up to the one found,
          -- whatever the table's size later; OFFSET 0 keeps the probe)
          fst AS (
            SELECT i.id, i.tid, i.status, i.priority, i.urgency, i.severity,
                   i.last_event_hash, i.resolve_pending_since AS old_pending,
                   i.resolve_at AS old_resolve_at, fa.*,
                   i.alert_count + fa.d AS alert_count,
                   i.firing_count + fa.d AS firing_count,
                   (i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL) AS is_open
              FROM fa
              CROSS JOIN LATERAL (SELECT x.id, x.ctid AS tid, x.status, x.priority, x.urgency,
                                         x.severity, x.last_event_hash, x.resolve_pending_since,
                                         x.resolve_at, x.alert_count, x.firing_count,
                                         x.merged_into
                                    FROM triaged.incident x WHERE x.id = fa.inc_id OFFSET 0) i),
          fc AS (
            SELECT fst.*,
                   CASE WHEN fst.best_rank IS NOT NULL
                             AND fst.best_rank < coalesce(triaged.severity_rank(fst.severity), 99)
                        THEN triaged.severity_of_rank(fst.best_rank) ELSE fst.severity
                   END AS new_severity,
                   -- (no CI: the lookup's incidents have none)
                   CASE WHEN fst.best_rank IS NOT NULL THEN least(fst.priority, fst.best_rank)
                        ELSE fst.priority END AS new_priority,
                   CASE WHEN fst.best_rank IS NOT NULL
                        THEN least(fst.urgency, triaged.severity_urgency(
                                                  triaged.severity_of_rank(fst.best_rank)))
                        ELSE fst.urgency END AS new_urgency,
                   -- (alerts attached: fire activity, nothing resolved)
                   CASE WHEN NOT fst.is_open THEN fst.old_pending
                        WHEN fst.firing_count > 0 THEN NULL
                        ELSE v_now END AS new_pending,
                   CASE WHEN NOT fst.is_open THEN fst.old_resolve_at
                        WHEN fst.firing_count > 0 THEN NULL
                        ELSE coalesce(fst.old_resolve_at, v_now) END AS new_resolve_at
              FROM fst),
          fev AS (
            SELECT fc.id AS incident_id, 3 AS seq, fc.attached_at AS at,
                   'alerts_attached' AS kind,
                   jsonb_build_object('fingerprints', to_jsonb(fc.attached)) AS detail
              FROM fc
            UNION ALL
            SELECT fc.id, 5, coalesce(fc.best_at, v_now), 'priority_changed',
                   jsonb_build_object('from', fc.priority, 'to', fc.new_priority,
                                      'severity_from', fc.severity, 'severity_to', fc.new_severity)
              FROM fc WHERE fc.new_priority <> fc.priority
                         OR fc.new_severity IS DISTINCT FROM fc.severity
                         OR fc.new_urgency <> fc.urgency
            UNION ALL
            SELECT fc.id, 7, coalesce(fc.fire_at, fc.best_at, v_now), 'resolve_cancelled',
                   jsonb_build_object('pending_since', fc.old_pending,
                                      'resolve_at', fc.old_resolve_at)
              FROM fc WHERE fc.old_pending IS NOT NULL AND fc.new_pending IS NULL
            UNION ALL
            SELECT fc.id, 8, fc.new_resolve_at, 'resolve_pending',
                   jsonb_build_object('resolve_at', fc.new_resolve_at,
                                      'pending_since', fc.new_pending)
              FROM fc WHERE fc.new_pending IS NOT NULL
                        AND fc.new_pending IS DISTINCT FROM fc.old_pending),
          fevn AS (
            SELECT fev.incident_id, fev.at, fev.kind, fev.detail, fc.last_event_hash AS init,
                   triaged.event_content(fev.incident_id, fev.at, v_actor, fev.kind, fev.detail)
                     AS content,
                   row_number() OVER (PARTITION BY fev.incident_id ORDER BY fev.seq) AS rn
              FROM fev JOIN fc ON fc.id = fev.incident_id),
          fch (incident_id, rn, prev, hash) AS (
            SELECT e.incident_id, e.rn, e.init, sha256(coalesce(e.init, ''::bytea) || e.content)
              FROM fevn e WHERE e.rn = 1
            UNION ALL
            SELECT e.incident_id, e.rn, fch.hash, sha256(fch.hash || e.content)
              FROM fch JOIN fevn e ON e.incident_id = fch.incident_id AND e.rn = fch.rn + 1),
          flast AS (
            SELECT DISTINCT ON (fch.incident_id) fch.incident_id, fch.hash
              FROM fch ORDER BY fch.incident_id, fch.rn DESC),
          fupd AS (
            UPDATE triaged.incident i
               SET severity = fc.new_severity, priority = fc.new_priority,
                   urgency = fc.new_urgency, resolve_pending_since = fc.new_pending,
                   resolve_at = fc.new_resolve_at, last_event_hash = flast.hash,
                   alert_count = fc.alert_count, firing_count = fc.firing_count,
                   updated_at = now()
              FROM fc JOIN flast ON flast.incident_id = fc.id
             WHERE i.ctid = fc.tid
            RETURNING i.id, i.number,
                      triaged._incident_json(i.id, i.number, i.title, i.status, i.priority,
                                             i.impact, i.urgency, i.severity, i.resource, i.ci_id,
                                             i.opened_at, i.acknowledged_at, i.resolved_at,
                                             i.closed_at, i.reopen_count, i.resolve_pending_since,
                                             fc.alert_count, fc.firing_count) AS payload),
          -- (027) the found incidents' events first (their lower ids), then
          -- the new incidents' 'opened' events in id order
          ev AS (
            INSERT INTO triaged.incident_event (incident_id, at, actor, kind, detail, prev_hash,
                                                hash)
            SELECT x.incident_id, x.at, v_actor, x.kind, x.detail, x.prev, x.hash
              FROM (SELECT 0 AS g, e.incident_id, e.rn, e.at, e.kind, e.detail, fch.prev, fch.hash
                      FROM fevn e JOIN fch ON fch.incident_id = e.incident_id AND fch.rn = e.rn
                    UNION ALL
                    SELECT 1, h.id, 1, h.opened_at, 'opened', h.detail, NULL, h.hash
                      FROM ins JOIN h ON h.id = ins.id) x
             ORDER BY x.g, x.incident_id, x.rn),
          m AS (   -- ((025) the groups inserted, and those found above)
            SELECT n.*, i.id AS incident_id, i.number FROM n JOIN ins i ON i.resource = n.resource
            UNION ALL
            SELECT n.*, o.id, o.number
              FROM n JOIN unnest(v_oid, v_ores, v_onum) o(id, resource, number)
                     ON o.resource = n.resource),
          lnk AS (
            INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
            SELECT m.incident_id, m.id, 'cause' FROM m ORDER BY m.incident_id, m.id
            RETURNING 1)
          SELECT (SELECT coalesce(array_agg(ROW('incident.updated', f.number, f.payload
                                               )::triaged.ingest_row ORDER BY f.id), '{}')
                    FROM fupd f),
                 (SELECT coalesce(array_agg(ROW('incident.opened', i.number,
                                                triaged._incident_json(i.id, i.number, i.title,
                                                  i.status, i.priority, i.impact, i.urgency,
                                                  i.severity, i.resource, i.ci_id, i.opened_at,
                                                  i.acknowledged_at, i.resolved_at, i.closed_at,
                                                  i.reopen_count, i.resolve_pending_since,
                                                  i.alert_count, i.firing_count)
                                               )::triaged.ingest_row ORDER BY i.id), '{}')
                    FROM ins i),
                 (SELECT coalesce(array_agg(ROW('alert.firing', m.fingerprint,
                                                triaged.alert_payload(m.fingerprint, 'firing',
                                                  m.severity, m.resource, m.check_name,
                                                  m.occurrences, m.first_seen, m.last_seen,
                                                  m.flapping, m.number)
                                               )::triaged.ingest_row ORDER BY m.fingerprint), '{}')
                    FROM m),
                 (SELECT count(*) FROM lnk),
                 -- (025) the requests of the groups left out (none but in a race)
                 (SELECT coalesce(array_agg(ROW(k.gkey, NULL, k.resource, k.title, k.opened_at,
                                                k.severity)::triaged._group_req
                                            ORDER BY k.resource), '{}')
                    FROM k WHERE k.id NOT IN (SELECT i.id FROM ins i))
            INTO v_inc, v_irows, v_alrows, v_nlinked, v_lost;
          v_inc := v_inc || v_irows;   -- (their ids above those found: id order)
        END IF;
        v_opened := cardinality(v_irows);
        IF cardinality(v_lost) > 0 THEN
          -- (025) the lost race: find-or-open finds the other transaction's
          -- incidents (or opens one, if it is no longer open); their alerts'
          -- links, rows, changes ('opened' too, for one it opened) and
          -- counts, their end of batch; the rows merged back into their
          -- orders (alerts by fingerprint, incidents by id)
          v_att := ARRAY(SELECT r FROM triaged._find_or_open(v_lost, '{}') r);
          WITH m AS (
            SELECT n.*, g.incident_id, g.number
              FROM unnest(v_nid, v_nfp, v_nres, v_nchk, v_nsev, v_nocc, v_nfirst, v_nlast,
                          v_nflap)
                     n(id, fingerprint, resource, check_name, severity, occurrences,
                       first_seen, last_seen, flapping)
              JOIN unnest(v_att) g ON g.resource = n.resource),
          lnk AS (
            INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
            SELECT m.incident_id, m.id, 'cause' FROM m ORDER BY m.incident_id, m.id
            RETURNING 1)
          SELECT coalesce(array_agg(ROW('alert.firing', m.fingerprint,
                                        triaged.alert_payload(m.fingerprint, 'firing',
                                                              m.severity, m.resource,
                                                              m.check_name, m.occurrences,
                                                              m.first_seen, m.last_seen,
                                                              m.flapping, m.number)
                                       )::triaged.ingest_row), '{}'),
                 coalesce(array_agg(ROW(m.incident_id, 'attached', m.fingerprint,
                                        m.first_seen, m.severity, NULL)::triaged._change
                                    ORDER BY m.fingerprint), '{}')
                   || (SELECT coalesce(array_agg(ROW(g.incident_id, 'opened', NULL, NULL, NULL,
                                                     NULL)::triaged._change), '{}')
                         FROM unnest(v_att) g WHERE g.opened),
                 (SELECT coalesce(array_agg(ROW(d.incident_id, d.n, d.n)::triaged._count_delta),
                                  '{}')
                    FROM (SELECT m.incident_id, count(*)::integer AS n FROM m
                           GROUP BY m.incident_id) d),
                 (SELECT count(*) FROM lnk)
            INTO v_arows, v_changes, v_delta, v_nlink
            FROM m;
          v_opened := v_opened + (SELECT count(*) FROM unnest(v_att) g WHERE g.opened);
          v_inc := ARRAY(SELECT r
                           FROM unnest(v_inc || ARRAY(SELECT r FROM triaged._finish_counted(
                                                          v_changes, v_now, v_actor, v_delta,
                                                          '{}') r)) r
                          ORDER BY (r.payload->>'id')::bigint);
          v_alrows := ARRAY(SELECT r FROM unnest(v_alrows || v_arows) r ORDER BY r.key);
          v_nlinked := v_nlinked + v_nlink;
        END IF;
        v_changes := '{}';
        v_delta := '{}';
        v_folded := true;
        v_bound := false;
      ELSE
      -- one request per group, from the arrays (as step 3 makes them from
      -- the new alerts: title and resource of its earliest alert, opened
      -- at the earliest first time, the most severe severity)
      SELECT coalesce(array_agg(ROW(x.gkey, x.ci_id, x.resource, x.title, x.opened_at,
                                    triaged.severity_of_rank(x.best))::triaged._group_req
                                ORDER BY x.gkey), '{}'),
             coalesce(bool_or(x.ci_id IS NOT NULL), false)
        INTO v_reqs, v_bound
        FROM (SELECT DISTINCT ON (a.gkey) a.gkey, a.ci_id, a.resource,
                     a."check" || ' on ' || a.resource AS title,
                     min(a."first") OVER w AS opened_at,
                     min(triaged.severity_rank(a.severity)) OVER w AS best
                FROM (SELECT triaged._gkey(j.ci_id, j.resource) AS gkey, j.ci_id, j.resource,
                             j."check", j.severity, j."first", j.fp
                        FROM unnest(p_fp, p_resource, p_check, p_ci_id, p_severity, p_first)
                               WITH ORDINALITY j(fp, resource, "check", ci_id, severity, "first", o)
                       WHERE v_nlean = 0 OR NOT v_lean[j.o]) a
              WINDOW w AS (PARTITION BY a.gkey)
               ORDER BY a.gkey, a."first", a.fp) x;
      -- (025) bound groups only here (a new alert bound to a CI): 019's
      -- path, the end of batch below
      SELECT coalesce(array_agg(r), '{}') INTO v_grp FROM triaged._open_incidents(v_reqs) r;
      -- their links; their published rows and changes kept for below
      WITH m AS (
        SELECT n.*, g.incident_id, g.number
          FROM unnest(v_nid, v_nfp, v_nres, v_nchk, v_nci, v_nsev, v_nocc, v_nfirst, v_nlast,
                      v_nflap)
                 n(id, fingerprint, resource, check_name, ci_id, severity, occurrences,
                   first_seen, last_seen, flapping)
          JOIN unnest(v_grp) g ON g.gkey = triaged._gkey(n.ci_id, n.resource)),
      lnk AS (
        INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
        SELECT m.incident_id, m.id, 'cause' FROM m ORDER BY m.incident_id, m.id
        RETURNING 1)
      SELECT coalesce(array_agg(ROW('alert.firing', m.fingerprint,
                                    triaged.alert_payload(m.fingerprint, 'firing', m.severity,
                                                          m.resource, m.check_name,
                                                          m.occurrences, m.first_seen,
                                                          m.last_seen, m.flapping, m.number)
                                   )::triaged.ingest_row ORDER BY m.fingerprint), '{}'),
             coalesce(array_agg(ROW(m.incident_id, 'attached', m.fingerprint, m.first_seen,
                                    m.severity, NULL)::triaged._change ORDER BY m.fingerprint),
                      '{}'),
             (SELECT count(*) FROM lnk)
        INTO v_alrows, v_changes, v_nlinked
        FROM m;
      END IF;
      v_mode := set_config('plan_cache_mode', v_pcm, true);
      IF v_nlinked <> v_nalert THEN
        RAISE EXCEPTION 'triaged.ingest: % new alerts without an incident', v_nalert - v_nlinked;
      END IF;
      v_nnew := v_nalert;
    EXCEPTION WHEN unique_violation THEN
      -- (a fingerprint created meanwhile: 018's steps below, as before)
      v_fastnew := false;
      v_changes := '{}';
      v_alrows := '{}';
      v_folded := false;   -- (025) (what the path counted is undone)
      v_opened := 0;
    END;
  END IF;
  IF v_folded THEN
    -- (021) the new alerts' rows, then their new incidents' rows (in one
    -- statement: nothing comes between them); no change left for the end
    -- of batch
    RETURN QUERY SELECT * FROM unnest(v_alrows || v_inc);
    v_inc := '{}';
  ELSIF v_fastnew THEN
    -- (019) no other class (their arrays stay empty): the new alerts'
    -- rows first, as step 3's
    RETURN QUERY SELECT * FROM unnest(v_alrows);
    SELECT v_changes || coalesce(array_agg(ROW(g.incident_id, 'opened', NULL, NULL, NULL, NULL)
                                           ::triaged._change), '{}'),
           count(*)
      INTO v_changes, v_opened
      FROM unnest(v_grp) g WHERE g.opened;
  ELSIF v_nlean < v_nsegs THEN
  -- 0. lock every existing alert of the batch, in fingerprint order, once
  --    (002's step 0; = ANY drops the repeated fingerprints)
  --    (018) but those the lean path counted: the others it found (none:
  --    a batch of new alerts has nothing to lock)
  v_known := '{}';
  IF cardinality(v_rest) > 0 THEN
  SELECT coalesce(array_agg(ROW(k.id, k.ctid, k.fingerprint, k.status, k.severity,
                                k.state_changed_at, k.fired_at)::triaged._known), '{}')
    INTO v_known
    FROM (SELECT a.id, a.ctid, a.fingerprint, a.status, a.severity, a.state_changed_at,
                 a.fired_at
            FROM triaged.alert a
           WHERE a.fingerprint = ANY (v_rest)
           ORDER BY a.fingerprint
             FOR NO KEY UPDATE OF a) k;
  END IF;

  -- 1. classify (002's step 1: see there) and 2. count, in one statement:
  --    the counting segments' UPDATE, by row version (locked in step 0; the
  --    newest message's labels and summary win), is a CTE of the
  --    classification, and the other classes come out as segment arrays.
  --    The arrays carry no Redis hints: dups and dup_misses are 0.
  --    (016) One segment per fingerprint (v_single: most batches), the
  --    window's values are the segment's own and the window is not run
  --    (its sort and two passes over the wide rows were ~20 % of the
  --    statement): the branch not taken stops at its one-time filter.
  WITH s AS (
    SELECT j.fp, j.source, j.resource, j."check", j.dedup_key, j.ci_id, j.summary,
           coalesce(j.labels, '{}'::jsonb) AS labels, j.severity, j.status,
           CASE WHEN j.status = 'resolved' THEN 0 ELSE j.n END AS n, j."first", j."last",
           j.o::integer AS ord,
           true AS first_of_fp,
           CASE WHEN j.status = 'firing' THEN j.o::integer END AS first_firing,
           j.status = 'firing' AS fp_fires,
           1::bigint AS nseg
      FROM unnest(p_fp, p_source, p_resource, p_check, p_dedup_key, p_ci_id, p_summary,
                  p_labels, p_severity, p_status, p_n, p_first, p_last)
             WITH ORDINALITY j(fp, source, resource, "check", dedup_key, ci_id, summary,
                               labels, severity, status, n, "first", "last", o)
     WHERE v_single AND (v_nlean = 0 OR NOT v_lean[j.o])
    UNION ALL
    SELECT j.fp, j.source, j.resource, j."check", j.dedup_key, j.ci_id, j.summary,
           coalesce(j.labels, '{}'::jsonb) AS labels, j.severity, j.status,
           CASE WHEN j.status = 'resolved' THEN 0 ELSE j.n END AS n, j."first", j."last",
           j.o::integer AS ord,
           row_number() OVER w = 1 AS first_of_fp,
           min(j.o::integer) FILTER (WHERE j.status = 'firing') OVER w AS first_firing,
           bool_or(j.status = 'firing') OVER (PARTITION BY j.fp) AS fp_fires,
           count(*) OVER (PARTITION BY j.fp) AS nseg
      FROM unnest(p_fp, p_source, p_resource, p_check, p_dedup_key, p_ci_id, p_summary,
                  p_labels, p_severity, p_status, p_n, p_first, p_last)
             WITH ORDINALITY j(fp, source, resource, "check", dedup_key, ci_id, summary,
                               labels, severity, status, n, "first", "last", o)
     WHERE NOT v_single AND (v_nlean = 0 OR NOT v_lean[j.o])
    WINDOW w AS (PARTITION BY j.fp ORDER BY j.o)),
  x AS (
    SELECT s.*, k.id AS kid, k.tid AS ktid, k.fired_at AS kfired, k.status AS kstatus,
           CASE WHEN k.id IS NULL THEN
                  CASE WHEN s.ord < coalesce(s.first_firing, 2147483647) THEN 'unknown'
                       WHEN s.ord = s.first_firing THEN 'new'
                       ELSE 'loop' END
                -- (013) the only segment of its fingerprint, firing, older
                -- than its firing alert's start: counted, and the start
                -- moved back below, as 002's loop does
                WHEN s.nseg = 1 AND s.status = 'firing' AND k.status = 'firing'
                     AND s."first" < k.fired_at THEN 'older'
                WHEN s.first_of_fp
                     AND ((s.status = k.status AND (s.status = 'resolved' OR s.severity = k.severity))
                          OR s."first" < k.state_changed_at)
                     AND NOT coalesce(s.status = 'firing' AND k.status = 'firing'
                                      AND s."first" < k.fired_at, true)
                     AND NOT (s.status = 'firing' AND k.status = 'resolved' AND k.fired_at IS NULL
                              AND s."first" < k.state_changed_at)
                THEN 'count'
                ELSE 'loop' END AS c,
           (s.status = k.status AND (s.status = 'resolved' OR s.severity = k.severity)) AS same,
           s.status = k.status AS same_status
      FROM s
      LEFT JOIN unnest(v_known) k ON k.fingerprint = s.fp),
  -- (an older firing moves the alert's start unless it resolved in between)
  xm AS (
    SELECT x.*,
           CASE WHEN x.c = 'older'
                THEN NOT EXISTS (SELECT 1 FROM triaged.alert_history h
                                  WHERE h.alert_id = x.kid AND h.to_status = 'resolved'
                                    AND h.at >= x."first" AND h.at <= x.kfired)
                ELSE false END AS moves
      FROM x),
  u AS (
    UPDATE triaged.alert a
       SET occurrences = a.occurrences + x.n,
           first_seen = CASE WHEN x.status = 'firing' THEN least(a.first_seen, x."first")
                             ELSE a.first_seen END,
           labels = CASE WHEN x.same_status AND x."last" >= a.last_seen THEN x.labels
                         ELSE a.labels END,
           summary = CASE WHEN x.same_status AND x."last" >= a.last_seen
                          THEN coalesce(x.summary, a.summary) ELSE a.summary END,
           last_seen = greatest(a.last_seen, x."last"),
           fired_at = CASE WHEN x.moves THEN x."first" ELSE a.fired_at END,
           state_changed_at = CASE WHEN x.moves THEN x."first" ELSE a.state_changed_at END,
           updated_at = now()
      FROM xm x
     WHERE x.c IN ('count', 'older') AND a.ctid = x.ktid AND a.id = x.kid
    RETURNING x.kid, x.moves, x."first", x.kfired)
  SELECT (SELECT count(*) FROM u),
         count(*) FILTER (WHERE x.c IN ('count', 'older')),
         coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", NULL, x.ord, x.first_of_fp, x.first_firing,
                                x.fp_fires, x.c)::triaged._segment ORDER BY x.fp)
                    FILTER (WHERE x.c = 'new'), '{}'),
         -- (the loop's segments carry their alert's status at the lock in
         -- hint, which nothing reads on this path: _count_deltas does)
         coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", x.kstatus, x.ord, x.first_of_fp, x.first_firing,
                                x.fp_fires, x.c)::triaged._segment ORDER BY x.fp, x.ord)
                    FILTER (WHERE x.c = 'loop'), '{}'),
         coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", NULL, x.ord, x.first_of_fp, x.first_firing,
                                x.fp_fires, x.c)::triaged._segment ORDER BY x.fp, x.ord)
                    FILTER (WHERE x.c = 'unknown' AND NOT x.fp_fires), '{}'),
         count(*) FILTER (WHERE x.c = 'unknown'),
         count(*) FILTER (WHERE x.c IN ('count', 'older') AND NOT x.same),
         (SELECT coalesce(array_agg(ROW(u.kid, u."first", u.kfired)::triaged._older
                                    ORDER BY u.kid), '{}')
            FROM u WHERE u.moves),
         coalesce(array_agg(x.kid) FILTER (WHERE x.c = 'loop' AND x.kid IS NOT NULL), '{}'),
         coalesce(array_agg(x.kstatus) FILTER (WHERE x.c = 'loop' AND x.kid IS NOT NULL), '{}')
    INTO v_counted, v_ncount, v_newsegs, v_loopsegs, v_unksegs, v_unknown, v_stale, v_older,
         v_loopids, v_loops0
    FROM x;
  IF v_counted <> v_ncount THEN
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
      MESSAGE = format('triaged.ingest: %s of %s locked alerts changed under the lock (retry)',
                       v_ncount - v_counted, v_ncount);
  END IF;
  -- (018) else every segment was counted by the lean path (or there
  -- were none): no class to apply
  END IF;
  v_dups := 0;
  v_ndup_hint := 0;

  -- 2b. a resolve of a fingerprint never seen, with no firing in this batch,
  --     is kept as a resolved alert with no occurrences and no incident, so
  --     that firing messages older than it, arriving in a later batch, do
  --     not leave the alert firing (out-of-order messages never move state
  --     backwards, wherever the batches split). A later, newer firing
  --     re-fires it as usual.
  IF cardinality(v_unksegs) > 0 THEN
    WITH t AS (
      INSERT INTO triaged.alert AS a (fingerprint, source, resource, check_name, dedup_key,
                                      severity, status, summary, labels, ci_id, occurrences,
                                      first_seen, last_seen, fired_at, resolved_at,
                                      state_changed_at, flapping)
      SELECT s.fp, s.source, s.resource, s."check", s.dedup_key, s.severity, 'resolved',
             s.summary, s.labels, s.ci_id, 0, s."first", greatest(s."last", s."first"), NULL,
             s."first", s."first", false
        FROM unnest(v_unksegs) s
       ORDER BY s.fp, s.ord
      ON CONFLICT (fingerprint) DO NOTHING
      RETURNING a.id, a.resolved_at, a.severity)
    INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                       occurrences, detail)
    SELECT t.id, t.resolved_at, NULL, 'resolved', t.severity, 0,
           '{"resolve_before_firing": true}'::jsonb
      FROM t ORDER BY t.id;
  END IF;

  -- 3. new alerts, in fingerprint order, with their creation in the history;
  --    a fingerprint another transaction created meanwhile (rare: the
  --    plain INSERT fails, and is redone skipping those) is left to the
  --    row-by-row path
  IF cardinality(v_newsegs) > 0 THEN
    BEGIN
      v_new := triaged._create_alerts(v_newsegs, v_flap_thr, false);
    EXCEPTION WHEN unique_violation THEN
      v_new := triaged._create_alerts(v_newsegs, v_flap_thr, true);
    END;
    v_nnew := cardinality(v_new);
    IF cardinality(v_new) < cardinality(v_newsegs) THEN
      SELECT coalesce(array_agg(s ORDER BY s.fp, s.ord), '{}')
        INTO v_loopsegs
        FROM (SELECT * FROM unnest(v_loopsegs)
              UNION ALL
              SELECT * FROM unnest(v_newsegs) n
               WHERE NOT EXISTS (SELECT 1 FROM unnest(v_new) a WHERE a.fingerprint = n.fp)) s;
    END IF;
  END IF;

  -- (029) the incidents this batch's steps will lock, locked first, at
  --     once, in id order (see the file's header): before, 3.'s
  --     find-or-open locked its groups' incidents, 4.'s re-fires theirs and
  --     the end of batch those of the loop's resolves, each a run in id
  --     order, so that two batches could each hold an incident of one run
  --     and wait for the other's in a later one. Here, when the loop or 2a
  --     has alerts (a batch of new alerts only has one run: find-or-open's),
  --     after every alert row of the batch is held or made (alerts before
  --     incidents, as every path of the engine takes them): what the steps
  --     will lock (fix29: no more, as far as step 0's alerts tell;
  --     _ahead_sets): the open links of the alerts a step touches (and of
  --     2a's), the links but closed ones of those that may re-fire, the
  --     open incidents of the new alerts' groups and of the re-firing
  --     segments' groups (find-or-open's and the row path's look-ups, by
  --     key), and the incidents _route will route the bound ones with no
  --     open incident to (_route_ahead). The steps below lock them again,
  --     held already, and the few this could not foresee (an incident
  --     opened or merged into meanwhile) after them, as before. Looked up by key
  --     (links by alert, incidents by CI or resource: the sub-selects, in
  --     key order with enable_sort off, the keys' probes) and locked
  --     through incident_pkey, as find-or-open's lock; plans made once.
  IF cardinality(v_loopsegs) > 0 OR cardinality(v_older) > 0 THEN
    PERFORM triaged._lock_ahead(v_loopsegs, v_known, v_new,
                                ARRAY(SELECT o.alert_id FROM unnest(v_older) o));
  END IF;

  -- 2a. (013) ((029) now after 2b, 3.'s alerts and the lock above: see
  --     there) older firings that moved their alert's firing start: its
  --     history row of that start moves with it, and so does the opened_at
  --     of each open incident it belongs to (to the earliest of the batch's),
  --     as 002's loop does one by one (there ~2 ms each: a plan over the
  --     open incidents); the incidents locked in id order first
  IF cardinality(v_older) > 0 THEN
    UPDATE triaged.alert_history h SET at = o.at
      FROM unnest(v_older) o
     WHERE h.alert_id = o.alert_id AND h.to_status = 'firing'
       AND h.from_status IS DISTINCT FROM 'firing' AND h.at = o.was;
    PERFORM triaged._move_opened(v_older);
  END IF;

  IF cardinality(v_new) > 0 THEN
    -- one request per group: title and resource of its earliest alert,
    -- opened at the earliest first time, the most severe severity
    SELECT coalesce(array_agg(ROW(x.gkey, x.ci_id, x.resource, x.title, x.opened_at,
                                  triaged.severity_of_rank(x.best))::triaged._group_req
                              ORDER BY x.gkey), '{}'),
           coalesce(bool_or(x.ci_id IS NOT NULL), false)
      INTO v_reqs, v_bound
      FROM (SELECT DISTINCT ON (a.gkey) a.gkey, a.ci_id, a.resource,
                   a.check_name || ' on ' || a.resource AS title,
                   min(a.first_seen) OVER w AS opened_at,
                   min(triaged.severity_rank(a.severity)) OVER w AS best
              FROM unnest(v_new) a
            WINDOW w AS (PARTITION BY a.gkey)
             ORDER BY a.gkey, a.first_seen, a.fingerprint) x;

    -- (016) no group bound to a CI: nothing of the CMDB's to do first
    -- (_open_incidents would call _find_or_open so itself)
    IF v_bound THEN
      SELECT coalesce(array_agg(r), '{}') INTO v_grp FROM triaged._open_incidents(v_reqs) r;
    ELSE
      SELECT coalesce(array_agg(r), '{}') INTO v_grp FROM triaged._find_or_open(v_reqs, '{}') r;
    END IF;

    -- links (new alerts have none yet) and their published rows, returned
    -- as they are made (not gathered into an array first: they come first
    -- anyway, their payloads made here as 002 makes them), then the changes
    RETURN QUERY
      WITH m AS (
        SELECT a.*, g.incident_id, g.number
          FROM unnest(v_new) a JOIN unnest(v_grp) g ON g.gkey = a.gkey),
      ins AS (
        INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
        SELECT m.incident_id, m.id, 'cause' FROM m ORDER BY m.incident_id, m.id)
      SELECT 'alert.firing'::text, m.fingerprint,
             triaged.alert_payload(m.fingerprint, 'firing', m.severity, m.resource,
                                   m.check_name, m.occurrences, m.first_seen, m.last_seen,
                                   m.flapping, m.number)
        FROM m
       ORDER BY m.fingerprint;
    GET DIAGNOSTICS v_nlinked = ROW_COUNT;
    IF v_nlinked <> cardinality(v_new) THEN
      RAISE EXCEPTION 'triaged.ingest: % new alerts without an incident',
        cardinality(v_new) - v_nlinked;
    END IF;
    SELECT coalesce(array_agg(ROW(g.incident_id, 'attached', a.fingerprint, a.first_seen,
                                  a.severity, NULL)::triaged._change), '{}')
      INTO v_changes
      FROM unnest(v_new) a JOIN unnest(v_grp) g ON g.gkey = a.gkey;

    SELECT v_changes || coalesce(array_agg(ROW(g.incident_id, 'opened', NULL, NULL, NULL, NULL)
                                           ::triaged._change), '{}'),
           count(*)
      INTO v_changes, v_opened
      FROM unnest(v_grp) g WHERE g.opened;
  END IF;

  -- 4. everything else, row by row in (fingerprint, ord) order
  IF cardinality(v_loopsegs) > 0 THEN
    v_loop := triaged._ingest_loop(v_loopsegs, v_reopen, v_flap_thr, v_flap_win);
  ELSE
    v_loop := ROW('{}', '{}', 0, 0, 0, 0, 0, 0, 0, 0)::triaged._loop_result;
  END IF;
  v_changes := v_changes || v_loop.changes;

  -- 5. alert rows (the new ones went first, above), then per incident:
  --    updates, events, one row each
  IF cardinality(v_loop.out_rows) > 0 THEN
    RETURN QUERY
      SELECT o.kind, o.fingerprint,
             triaged.alert_payload(o.fingerprint, o.status, o.severity, o.resource, o.check_name,
                                   o.occurrences, o.first_seen, o.last_seen, o.flapping,
                                   coalesce(o.incident,
                                     (SELECT i.number FROM triaged.incident i
                                       WHERE i.id = (SELECT ia.incident_id
                                                       FROM triaged.incident_alert ia
                                                      WHERE ia.alert_id = o.alert_id
                                                      ORDER BY ia.attached_at DESC,
                                                               ia.incident_id DESC
                                                      LIMIT 1))))
        FROM unnest(v_loop.out_rows) WITH ORDINALITY o
       ORDER BY o.ordinality;
  END IF;
  -- (013) the counts' deltas: a new alert with one segment adds one firing
  -- link to the incident it joined; the alerts of the loop are looked at
  -- link by link (see _count_deltas)
  -- ((019) none to work out without a change)
  IF cardinality(v_loopsegs) = 0 AND cardinality(v_changes) = 0 THEN
    v_delta := '{}';
  ELSIF cardinality(v_loopsegs) = 0 THEN
    SELECT coalesce(array_agg(ROW(x.incident_id, x.n, x.n)::triaged._count_delta), '{}')
      INTO v_delta
      FROM (SELECT c.incident_id, count(*)::integer AS n FROM unnest(v_changes) c
             WHERE c.what = 'attached' GROUP BY c.incident_id) x;
  ELSE
    SELECT d.deltas, d.recount INTO v_delta, v_recount
      FROM triaged._count_deltas(v_changes, v_loopsegs, v_loopids, v_loops0) d;
  END IF;
  -- (016) a batch of counted segments only (duplicates, stale messages)
  -- changed no incident: no end of batch to run (it would return at once)
  IF v_folded THEN
    NULL;   -- (021) v_inc: the new incidents' rows, made with them
  ELSIF cardinality(v_changes) > 0 OR cardinality(v_delta) > 0 OR cardinality(v_recount) > 0 THEN
    v_inc := ARRAY(SELECT r FROM triaged._finish_counted(v_changes, v_now, v_actor, v_delta,
                                                          v_recount) r);
  ELSE
    v_inc := '{}';
  END IF;
  -- the counts are kept by the triggers again (003's steps below: links
  -- made for alerts leaving suppression, merges)
  v_mode := set_config('triaged.counts_deferred', 'off', true);
  IF cardinality(v_inc) > 0 THEN   -- ((019) each statement costs, even on nothing)
    RETURN QUERY SELECT * FROM unnest(v_inc);
  END IF;

  -- 003's steps after the engine, for a batch with neither heartbeats nor
  -- suppressed segments: alerts that fire again outside maintenance are no
  -- longer suppressed (a firing one without an open incident gets one now)
  -- (019) not looked for when every segment was applied by the lean path
  -- (its UPDATE leaves suppressed alerts out, and holds the others' rows)
  -- or made a new alert (never suppressed)
  -- ((021) the flags first, alone: an expression with a sub-select is a
  -- statement, run even when the flags make it false)
  IF v_nlean < v_nsegs AND NOT v_fastnew THEN
  IF EXISTS (SELECT 1 FROM triaged.alert a WHERE a.suppressed) THEN
    SELECT coalesce(array_agg(DISTINCT s.fp), '{}') INTO v_plain
      FROM unnest(p_fp, p_status) s(fp, status) WHERE s.status = 'firing';
    WITH u AS (
      UPDATE triaged.alert a SET suppressed = false, updated_at = now()
       WHERE a.fingerprint = ANY (v_plain) AND a.suppressed
      RETURNING a.id, a.status)
    SELECT coalesce(array_agg(u.id ORDER BY u.id), '{}') INTO v_unsup
      FROM u
     WHERE u.status = 'firing'
       AND NOT EXISTS (SELECT 1 FROM triaged.incident_alert ia
                         JOIN triaged.incident i ON i.id = ia.incident_id
                        WHERE ia.alert_id = u.id AND i.status IN ('new', 'acknowledged')
                          AND i.merged_into IS NULL);
    v_post := v_post || ARRAY(SELECT r FROM triaged._open_for_alerts(v_unsup, NULL, v_now,
                                                                      v_actor) r);
  END IF;
  END IF;

  -- (016) both steps below are about the incidents of the rows so far:
  -- none (a batch of counted segments only), nothing to look up; (019)
  -- nor when they are all unbound (new alerts of unbound groups only: the
  -- incidents found or opened for them have no CI, and nothing else
  -- touched an incident), as both look at bound incidents only
  IF cardinality(v_inc) + cardinality(v_post) > 0
     AND NOT (v_fastnew AND NOT v_bound AND cardinality(v_post) = 0) THEN
  -- correlation of the incidents this batch opened or reopened
  -- (each incident probed by its number, the CI test after the probe: with
  -- the test inside the join, statistics taken while every incident was
  -- unbound made the plan scan incident_ci_opened_idx whole, 10-27 ms at
  -- 20,000 bound incidents, 190-390 ms a batch at 120,000: found by review;
  -- OFFSET 0 keeps the test out of the probe whatever the statistics)
  SELECT coalesce(array_agg(DISTINCT i.id), '{}') INTO v_corr
    FROM unnest(v_inc || v_post) r
    CROSS JOIN LATERAL (SELECT x.id, x.ci_id FROM triaged.incident x
                         WHERE x.number = r.key OFFSET 0) i
   WHERE r.kind IN ('incident.opened', 'incident.reopened') AND i.ci_id IS NOT NULL;
  IF cardinality(v_corr) > 0 THEN
    v_post := v_post || ARRAY(SELECT r FROM triaged._correlate(v_corr, v_now, v_actor, v_window,
                                                                v_many) r);
  END IF;

  -- alerts that joined an incident of another CI are its symptoms
  PERFORM triaged._fix_roles(ARRAY(
    SELECT DISTINCT i.id FROM unnest(v_inc || v_post) r
      CROSS JOIN LATERAL (SELECT x.id, x.ci_id FROM triaged.incident x
                           WHERE x.number = r.key OFFSET 0) i   -- (as above)
     WHERE r.kind IN ('incident.opened', 'incident.reopened', 'incident.updated')
       AND i.ci_id IS NOT NULL));
  END IF;

  IF cardinality(v_post) > 0 THEN
    RETURN QUERY SELECT * FROM unnest(v_post);
    v_merged := (SELECT count(*) FROM unnest(v_post) r WHERE r.kind = 'incident.merged');
  END IF;
  -- ((021) a simple expression: the merges counted above, when there are rows)
  RETURN NEXT ROW('stats', NULL, (jsonb_build_object(
    'segments', v_nsegs,
    'dups', v_dups,
    'dup_misses', v_ndup_hint - v_dups,
    'new_alerts', v_nnew,
    'refired', v_loop.refired,
    'resolved', v_loop.resolved,
    'stale', v_stale + v_loop.stale,
    'unknown_resolves', v_unknown + v_loop.unknown_resolves,
    'severity_changes', v_loop.severity_changes,
    'incidents_opened', v_opened + v_loop.incidents_opened,
    'incidents_reopened', v_loop.incidents_reopened,
    'attached', v_nnew + v_loop.attached)
    || jsonb_build_object(
    'suppressed', 0,
    'heartbeats', 0,
    'merged', v_merged))::json)
    ::triaged.ingest_row;
  RETURN;
END $$;



-- ---------------------------------------------------------------------------
-- (027) the lean path: 022's, without its first test (a batch of new alerts

-- ---------------------------------------------------------------------------
-- (029) find-or-open: 021's, the change marked "(029)": the open incidents
-- of both kinds of groups locked in one statement, in id order
CREATE OR REPLACE FUNCTION triaged._find_or_open(p_reqs triaged._group_req[], p_desc triaged._ci_desc[])
RETURNS SETOF triaged._group_res
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
  v_new    triaged._group_res[] := '{}';
  v_old    triaged._group_res[] := '{}';
  v_found  triaged._group_res[] := '{}';
  v_rest   triaged._group_req[] := '{}';
  v_nbound bigint;
  v_nfree  bigint;
  v_mode   text;
  v_sort0  text := current_setting('enable_sort');
  v_bid    bigint[] := '{}';   -- (021) the open incidents found: bound
  v_bci    bigint[] := '{}';
  v_bres   text[] := '{}';
  v_bnum   text[] := '{}';
  v_oid    bigint[] := '{}';   -- (021) unbound
  v_ores   text[] := '{}';
  v_onum   text[] := '{}';
BEGIN
  -- (021) the groups' open incidents in a single-table statement (= ANY
  -- ... FOR UPDATE) with a generic plan made with enable_sort off: the
  -- indexes that give the rows in key order are the keys'
  -- (incident_open_ci_key or incident_ci_opened_idx;
  -- incident_open_resource_key), so their probes are the plans whatever
  -- the statistics (see 021's header; 016-018 planned one statement of two
  -- LATERAL probes at each call while the table had none); then the
  -- requests are split by what they found
  v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);
  v_mode := set_config('enable_sort', 'off', true);
  -- (029) both kinds in one statement: looked up by key (the sub-selects,
  -- the keys' probes as before), locked in id order (incident_pkey's probe,
  -- the only path in id order with enable_sort off): the rule of every
  -- lock of incidents in a batch (see 029's header); one resolved or
  -- merged meanwhile fails the re-check when its lock is granted and is
  -- not returned (its group is opened below, or found by the fall-back)
  SELECT coalesce(array_agg(o.id) FILTER (WHERE o.ci_id IS NOT NULL), '{}'),
         coalesce(array_agg(o.ci_id) FILTER (WHERE o.ci_id IS NOT NULL), '{}'),
         coalesce(array_agg(o.resource) FILTER (WHERE o.ci_id IS NOT NULL), '{}'),
         coalesce(array_agg(o.number) FILTER (WHERE o.ci_id IS NOT NULL), '{}'),
         coalesce(array_agg(o.id) FILTER (WHERE o.ci_id IS NULL), '{}'),
         coalesce(array_agg(o.resource) FILTER (WHERE o.ci_id IS NULL), '{}'),
         coalesce(array_agg(o.number) FILTER (WHERE o.ci_id IS NULL), '{}')
    INTO v_bid, v_bci, v_bres, v_bnum, v_oid, v_ores, v_onum
    FROM (SELECT i.id, i.ci_id, i.resource, i.number FROM triaged.incident i
           WHERE i.id = ANY (ARRAY(SELECT x.id FROM triaged.incident x
                                    WHERE x.ci_id = ANY (ARRAY(SELECT r.ci_id
                                                                 FROM unnest(p_reqs) r
                                                                WHERE r.ci_id IS NOT NULL))
                                      AND x.status IN ('new', 'acknowledged')
                                      AND x.merged_into IS NULL
                                    ORDER BY x.ci_id)
                             || ARRAY(SELECT x.id FROM triaged.incident x
                                       WHERE x.resource = ANY (ARRAY(SELECT r.resource
                                                                       FROM unnest(p_reqs) r
                                                                      WHERE r.ci_id IS NULL))
                                         AND x.ci_id IS NULL
                                         AND x.status IN ('new', 'acknowledged')
                                         AND x.merged_into IS NULL
                                       ORDER BY x.resource))
             AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
           ORDER BY i.id
             FOR UPDATE OF i) o;
  v_mode := set_config('enable_sort', v_sort0, true);
  SELECT coalesce(array_agg(ROW(r.gkey, ob.ci_id, coalesce(ob.resource, ou.resource),
                                coalesce(ob.id, ou.id), false,
                                coalesce(ob.number, ou.number))::triaged._group_res
                            ORDER BY r.ci_id IS NULL, r.ci_id, r.resource)
                    FILTER (WHERE coalesce(ob.id, ou.id) IS NOT NULL), '{}'),
         coalesce(array_agg(r ORDER BY r.ci_id IS NULL, r.ci_id, r.resource)
                    FILTER (WHERE coalesce(ob.id, ou.id) IS NULL), '{}'),
         count(*) FILTER (WHERE ob.id IS NULL AND r.ci_id IS NOT NULL),
         count(*) FILTER (WHERE ou.id IS NULL AND r.ci_id IS NULL)
    INTO v_found, v_rest, v_nbound, v_nfree
    FROM unnest(p_reqs) r
    LEFT JOIN unnest(v_bid, v_bci, v_bres, v_bnum) ob(id, ci_id, resource, number)
           ON r.ci_id IS NOT NULL AND ob.ci_id = r.ci_id
    LEFT JOIN unnest(v_oid, v_ores, v_onum) ou(id, resource, number)
           ON r.ci_id IS NULL AND ou.resource = r.resource;
  -- (016) from here to the fallback below, statements over the arrays only
  v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);
  IF cardinality(v_rest) = 0 THEN
    RETURN QUERY SELECT * FROM unnest(v_found);
    RETURN;
  END IF;

  -- the others: opened (INSERTs skipped when no group of theirs needs one)
  IF v_nbound > 0 THEN
    v_new := triaged._open_bound(v_rest, p_desc);
  END IF;

  IF v_nfree > 0 THEN
  WITH ins AS (
    INSERT INTO triaged.incident AS i (title, status, priority, impact, urgency, severity,
                                       ci_id, resource, opened_at)
    SELECT r.title, 'new', triaged.severity_rank(r.severity), 3,
           triaged.severity_urgency(r.severity), r.severity, NULL, r.resource, r.opened_at
      FROM unnest(v_rest) r WHERE r.ci_id IS NULL
     ORDER BY r.resource
    ON CONFLICT (resource) WHERE ci_id IS NULL AND status IN ('new', 'acknowledged')
                                 AND merged_into IS NULL
    DO UPDATE SET updated_at = now() WHERE false
    RETURNING i.id, i.resource, i.number)
  SELECT v_new || coalesce(array_agg(ROW(triaged._gkey(NULL, ins.resource), NULL, ins.resource,
                                         ins.id, true, ins.number)::triaged._group_res), '{}')
    INTO v_new FROM ins;
  END IF;

  IF cardinality(v_new) < cardinality(v_rest) THEN
    v_mode := set_config('plan_cache_mode', 'force_custom_plan', true);
    SELECT coalesce(array_agg(ROW(m.gkey, o.ci_id, o.resource, o.id, false, o.number)
                              ::triaged._group_res), '{}')
      INTO v_old
      FROM (SELECT r.gkey FROM unnest(v_rest) r
            EXCEPT ALL
            SELECT n.gkey FROM unnest(v_new) n) m
      CROSS JOIN LATERAL (
        SELECT i.id, i.ci_id, i.resource, i.number FROM triaged.incident i
         WHERE i.ci_id = CASE WHEN left(m.gkey, 2) = 'c:' THEN substr(m.gkey, 3)::bigint END
           AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
        UNION ALL
        SELECT i.id, i.ci_id, i.resource, i.number FROM triaged.incident i
         WHERE i.resource = CASE WHEN left(m.gkey, 2) = 'r:' THEN substr(m.gkey, 3) END
           AND i.ci_id IS NULL
           AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL) o;
  END IF;

  IF cardinality(v_found) + cardinality(v_new) + cardinality(v_old) <> cardinality(p_reqs) THEN
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
      MESSAGE = format('triaged: find-or-open answered %s of %s groups (retry the batch)',
                       cardinality(v_found) + cardinality(v_new) + cardinality(v_old),
                       cardinality(p_reqs));
  END IF;
  RETURN QUERY SELECT * FROM unnest(v_found || v_new || v_old);
END $$;

-- ---------------------------------------------------------------------------
-- (029) the groups whose open incident exists, answered with it (opened
-- false): 017's for the bound groups (by CI), and (029) the unbound ones
-- too (by resource), so that _open_incidents locks both kinds in one run,
-- in id order (before, 017's locked the bound groups' incidents in CI
-- order, and find-or-open the unbound ones' after them: two runs). Looked
-- up by key as before (the sub-selects, in key order with enable_sort off:
-- incident_open_ci_key's or incident_ci_opened_idx's probe, and
-- incident_open_resource_key's, whatever the statistics; see 017), locked
-- through incident_pkey (the only path in id order with enable_sort off);
-- one that stops being open before its lock is granted is not returned.
-- _open_incidents only calls it with bound groups among p_reqs.
CREATE OR REPLACE FUNCTION triaged._open_found(p_reqs triaged._group_req[])
RETURNS triaged._group_res[]
LANGUAGE sql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_nestloop = off
AS $$
  SELECT coalesce(array_agg(ROW(r.gkey, o.ci_id, o.resource, o.id, false, o.number)
                            ::triaged._group_res ORDER BY o.ci_id, o.resource), '{}')
    FROM (SELECT i.id, i.ci_id, i.resource, i.number FROM triaged.incident i
           WHERE i.id = ANY (ARRAY(SELECT x.id FROM triaged.incident x
                                    WHERE x.ci_id = ANY (ARRAY(SELECT r.ci_id FROM unnest(p_reqs) r
                                                                WHERE r.ci_id IS NOT NULL))
                                      AND x.status IN ('new', 'acknowledged')
                                      AND x.merged_into IS NULL
                                    ORDER BY x.ci_id)
                             || ARRAY(SELECT x.id FROM triaged.incident x
                                       WHERE x.resource = ANY (ARRAY(SELECT r.resource
                                                                       FROM unnest(p_reqs) r
                                                                      WHERE r.ci_id IS NULL))
                                         AND x.ci_id IS NULL
                                         AND x.status IN ('new', 'acknowledged')
                                         AND x.merged_into IS NULL
                                       ORDER BY x.resource)
                             -- (029) and those _open_incidents' _route will
                             -- route the bound groups with no open incident
                             -- to (locked in this run; not returned: no
                             -- group's key)
                             || triaged._route_ahead(ARRAY(SELECT r.ci_id FROM unnest(p_reqs) r),
                                                     ARRAY(SELECT r.opened_at
                                                             FROM unnest(p_reqs) r)))
             AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
           ORDER BY i.id FOR UPDATE OF i) o
    JOIN unnest(p_reqs) r ON r.gkey = triaged._gkey(o.ci_id, o.resource)
$$;
-- ---------------------------------------------------------------------------
-- (029) the jsonb path's engine (002's ingest, renamed _ingest_core by 003:
-- batches with heartbeats, or with alerts of CIs in maintenance, through
-- 003's ingest), unchanged but for the part marked "(029)": the incidents
-- its steps will lock, locked first, in id order, as _ingest_batch's steps
-- path does (see there and the file's header)
CREATE OR REPLACE FUNCTION triaged._ingest_core(p_batch jsonb, p_offsets jsonb, p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
-- Every table access here is by key. plpgsql caches each statement's plan for
-- the session, and a plan made while the tables were small (a fresh database)
-- scans them whole forever after: forbid that, the indexes always exist.
SET enable_seqscan = off
AS $$
DECLARE
  v_now       timestamptz;
  v_actor     text;
  v_reopen    interval;
  v_flap_thr  integer;
  v_flap_win  interval;
  v_fenced    triaged.ingest_row[];
  v_nins      integer;
  v_nneg      integer;
  v_segs      triaged._segment[];
  v_bad       triaged._segment;
  v_fps       text[];
  v_known     triaged._known[];
  v_c_tid     tid[];
  v_c_id      bigint[];
  v_c_n       bigint[];
  v_c_firing  boolean[];
  v_c_first   timestamptz[];
  v_c_last    timestamptz[];
  v_c_same    boolean[];
  v_c_labels  jsonb[];
  v_c_summary text[];
  v_counted   integer;
  v_unksegs   triaged._segment[];
  v_newsegs   triaged._segment[];
  v_loopsegs  triaged._segment[];
  v_unknown   integer;
  v_stale     integer;
  v_dups      integer;
  v_ndup_hint integer;
  v_new       triaged._new_alert[] := '{}';
  v_reqs      triaged._group_req[];
  v_grp       triaged._group_res[];
  v_rows      triaged.ingest_row[] := '{}';
  v_changes   triaged._change[] := '{}';
  v_loop      triaged._loop_result;
  v_opened    integer := 0;
BEGIN
  -- options
  IF p_opts IS NULL OR jsonb_typeof(p_opts) <> 'object' THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'triaged.ingest: options ($3) must be a JSON object';
  END IF;
  v_now      := coalesce((p_opts->>'now')::timestamptz, now());
  v_actor    := coalesce(nullif(p_opts->>'actor', ''), 'triaged');
  v_reopen   := coalesce((p_opts->>'reopen_window_ms')::float8, 1800000) * interval '1 millisecond';
  v_flap_thr := coalesce((p_opts->>'flap_threshold')::integer, 6);
  v_flap_win := coalesce((p_opts->>'flap_window_ms')::float8, 1800000) * interval '1 millisecond';
  IF p_batch IS NULL THEN
    p_batch := '[]';
  END IF;
  IF jsonb_typeof(p_batch) <> 'array' THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'triaged.ingest: batch ($1) must be a JSON array';
  END IF;

  -- offsets: compare-and-set, all or nothing
  IF p_offsets IS NOT NULL AND jsonb_typeof(p_offsets) <> 'null' THEN
    IF jsonb_typeof(p_offsets) <> 'array' THEN
      RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = 'triaged.ingest: offsets ($2) must be a JSON array';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_to_recordset(p_offsets)
                 AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
               WHERE o."group" IS NULL OR o.topic IS NULL OR o."partition" IS NULL
                  OR o.expect IS NULL OR o."next" IS NULL OR o.expect < -1 OR o."next" < 0) THEN
      RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = 'triaged.ingest: each offset needs group, topic, partition, expect >= -1, next >= 0';
    END IF;
    IF (SELECT count(*) <> count(DISTINCT (o."group", o.topic, o."partition"))
          FROM jsonb_to_recordset(p_offsets) AS o("group" text, topic text, "partition" integer)) THEN
      RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
        MESSAGE = 'triaged.ingest: a partition appears twice in the offsets';
    END IF;
    -- lock the stored rows in a fixed order
    PERFORM 1
       FROM triaged.kafka_offset k
       JOIN jsonb_to_recordset(p_offsets)
              AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
         ON k.group_id = o."group" AND k.topic = o.topic AND k.partition = o."partition"
      ORDER BY k.group_id, k.topic, k.partition
        FOR UPDATE OF k;
    -- then check them (a fresh snapshot: sees what the lock waited for)
    SELECT coalesce(array_agg(ROW('fenced', o.topic || '/' || o."partition",
                                  ('{"stored": ' || coalesce(k.next_offset::text, 'null') || '}')::json
                                 )::triaged.ingest_row
                              ORDER BY o."group", o.topic, o."partition"), '{}')
      INTO v_fenced
      FROM jsonb_to_recordset(p_offsets)
             AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
      LEFT JOIN triaged.kafka_offset k
        ON k.group_id = o."group" AND k.topic = o.topic AND k.partition = o."partition"
     WHERE (o.expect = -1 AND k.next_offset IS NOT NULL)
        OR (o.expect <> -1 AND k.next_offset IS DISTINCT FROM o.expect);
    IF cardinality(v_fenced) > 0 THEN
      RETURN QUERY SELECT * FROM unnest(v_fenced);
      RETURN;
    END IF;
    UPDATE triaged.kafka_offset k
       SET next_offset = o."next", instance = v_actor, updated_at = now()
      FROM jsonb_to_recordset(p_offsets)
             AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
     WHERE o.expect <> -1
       AND k.group_id = o."group" AND k.topic = o.topic AND k.partition = o."partition";
    SELECT count(*) INTO v_nneg
      FROM jsonb_to_recordset(p_offsets) AS o(expect bigint) WHERE o.expect = -1;
    IF v_nneg > 0 THEN
      WITH ins AS (
        INSERT INTO triaged.kafka_offset (group_id, topic, partition, next_offset, instance)
        SELECT o."group", o.topic, o."partition", o."next", v_actor
          FROM jsonb_to_recordset(p_offsets)
                 AS o("group" text, topic text, "partition" integer, expect bigint, "next" bigint)
         WHERE o.expect = -1
         ORDER BY o."group", o.topic, o."partition"
        ON CONFLICT (group_id, topic, partition) DO NOTHING
        RETURNING 1)
      SELECT count(*) INTO v_nins FROM ins;
      IF v_nins <> v_nneg THEN
        -- another instance stored this partition's first offset meanwhile;
        -- the retry will report it as fenced
        RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
          MESSAGE = 'triaged.ingest: a kafka_offset row was created concurrently (retry)';
      END IF;
    END IF;
  END IF;


  -- the segments, sorted by (fingerprint, position in the batch)
  SELECT coalesce(array_agg(x), '{}')
    INTO v_segs
    FROM (SELECT ROW(j.fp, j.source, j.resource, j."check", j.dedup_key, j.ci_id,
                     j.summary, coalesce(j.labels, '{}'::jsonb), j.severity, j.status,
                     CASE WHEN j.status = 'resolved' THEN 0 ELSE j.n END,
                     j."first", j."last", j.hint, j.ordinality::integer,
                     row_number() OVER w = 1,
                     min(j.ordinality::integer) FILTER (WHERE j.status = 'firing') OVER w,
                     bool_or(j.status = 'firing') OVER (PARTITION BY j.fp),
                     NULL)::triaged._segment AS x
            FROM jsonb_populate_recordset(NULL::triaged._segment, p_batch) WITH ORDINALITY j
          WINDOW w AS (PARTITION BY j.fp ORDER BY j.ordinality)
           ORDER BY j.fp, j.ordinality) s;

  SELECT * INTO v_bad FROM unnest(v_segs) s
   WHERE s.fp IS NULL OR s.fp = '' OR s.source IS NULL OR s.resource IS NULL
      OR s."check" IS NULL OR s.status IS NULL OR s.status NOT IN ('firing', 'resolved')
      OR s.severity IS NULL
      OR s.severity NOT IN ('critical', 'major', 'minor', 'warning', 'info')
      OR s."first" IS NULL OR s."last" IS NULL OR s."last" < s."first"
      OR (s.status = 'firing' AND (s.n IS NULL OR s.n < 1))
      OR jsonb_typeof(s.labels) <> 'object'
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = format('triaged.ingest: bad segment #%s (fp %s): %s', v_bad.ord, v_bad.fp,
                       to_jsonb(v_bad) - 'ord' - 'first_of_fp' - 'first_firing' - 'fp_fires'
                       - 'cls');
  END IF;

  -- 0. lock every existing alert of the batch, in fingerprint order, once:
  --    two instances then never wait for each other's alerts in opposite
  --    orders, whatever path each segment takes below. What is read here
  --    stays true until step 2 changes it: only we can change these rows.
  SELECT coalesce(array_agg(s.fp), '{}') INTO v_fps FROM unnest(v_segs) s WHERE s.first_of_fp;
  SELECT coalesce(array_agg(ROW(k.id, k.ctid, k.fingerprint, k.status, k.severity,
                                k.state_changed_at, k.fired_at)::triaged._known), '{}')
    INTO v_known
    FROM (SELECT a.id, a.ctid, a.fingerprint, a.status, a.severity, a.state_changed_at,
                 a.fired_at
            FROM triaged.alert a
           WHERE a.fingerprint = ANY (v_fps)
           ORDER BY a.fingerprint
             FOR NO KEY UPDATE OF a) k;

  -- 1. classify:
  --    'count'   the first segment of an existing alert that changes no state:
  --              same status (and severity, when firing), or older than the
  --              alert's state (stale); it only counts (occurrences, times,
  --              the newest labels and summary) -- except a firing segment
  --              older than the firing period (its start may move back) or
  --              older than the resolve that created the alert (it fires and
  --              resolves it): those are 'loop'
  --    'new'     the first firing segment of an unknown fingerprint
  --    'unknown' a resolve before any firing of an unknown fingerprint
  --              (counted; kept as a resolved alert when the fingerprint does
  --              not fire in this batch, see 2b)
  --    'loop'    everything else (state changes, later segments of a fingerprint)
  --    A dup hint is a hit when its segment counts on a firing alert of the
  --    same severity.
  WITH x AS (
    SELECT s.*, k.id AS kid, k.tid AS ktid,
           CASE WHEN k.id IS NULL THEN
                  CASE WHEN s.ord < coalesce(s.first_firing, 2147483647) THEN 'unknown'
                       WHEN s.ord = s.first_firing THEN 'new'
                       ELSE 'loop' END
                WHEN s.first_of_fp
                     AND ((s.status = k.status AND (s.status = 'resolved' OR s.severity = k.severity))
                          OR s."first" < k.state_changed_at)
                     AND NOT coalesce(s.status = 'firing' AND k.status = 'firing'
                                      AND s."first" < k.fired_at, true)
                     AND NOT (s.status = 'firing' AND k.status = 'resolved' AND k.fired_at IS NULL
                              AND s."first" < k.state_changed_at)
                THEN 'count'
                ELSE 'loop' END AS c,
           (s.status = k.status AND (s.status = 'resolved' OR s.severity = k.severity)) AS same,
           s.status = k.status AS same_status
      FROM unnest(v_segs) s
      LEFT JOIN unnest(v_known) k ON k.fingerprint = s.fp)
  SELECT coalesce(array_agg(x.ktid) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.kid) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.n) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.status = 'firing') FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x."first") FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x."last") FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.same_status) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.labels) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.summary) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", x.hint, x.ord, x.first_of_fp, x.first_firing,
                                x.fp_fires, x.c)::triaged._segment ORDER BY x.fp)
                    FILTER (WHERE x.c = 'new'), '{}'),
         coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", x.hint, x.ord, x.first_of_fp, x.first_firing,
                                x.fp_fires, x.c)::triaged._segment ORDER BY x.fp, x.ord)
                    FILTER (WHERE x.c = 'loop'), '{}'),
         coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", x.hint, x.ord, x.first_of_fp, x.first_firing,
                                x.fp_fires, x.c)::triaged._segment ORDER BY x.fp, x.ord)
                    FILTER (WHERE x.c = 'unknown' AND NOT x.fp_fires), '{}'),
         count(*) FILTER (WHERE x.c = 'unknown'),
         count(*) FILTER (WHERE x.c = 'count' AND NOT x.same),
         count(*) FILTER (WHERE x.c = 'count' AND x.same AND x.status = 'firing'
                                AND x.hint = 'dup'),
         count(*) FILTER (WHERE x.hint = 'dup')
    INTO v_c_tid, v_c_id, v_c_n, v_c_firing, v_c_first, v_c_last, v_c_same, v_c_labels,
         v_c_summary, v_newsegs, v_loopsegs, v_unksegs, v_unknown, v_stale, v_dups, v_ndup_hint
    FROM x;

  -- 2. counting segments: one UPDATE, by row version (locked in step 0); the
  --    newest message's labels and summary win
  IF cardinality(v_c_tid) > 0 THEN
    UPDATE triaged.alert a
       SET occurrences = a.occurrences + c.n,
           first_seen = CASE WHEN c.firing THEN least(a.first_seen, c."first")
                             ELSE a.first_seen END,
           labels = CASE WHEN c.same_status AND c."last" >= a.last_seen THEN c.labels
                         ELSE a.labels END,
           summary = CASE WHEN c.same_status AND c."last" >= a.last_seen
                          THEN coalesce(c.summary, a.summary) ELSE a.summary END,
           last_seen = greatest(a.last_seen, c."last"),
           updated_at = now()
      FROM unnest(v_c_tid, v_c_id, v_c_n, v_c_firing, v_c_first, v_c_last, v_c_same,
                  v_c_labels, v_c_summary)
             AS c(tid, id, n, firing, "first", "last", same_status, labels, summary)
     WHERE a.ctid = c.tid AND a.id = c.id;
    GET DIAGNOSTICS v_counted = ROW_COUNT;
    IF v_counted <> cardinality(v_c_tid) THEN
      RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
        MESSAGE = format('triaged.ingest: %s of %s locked alerts changed under the lock (retry)',
                         cardinality(v_c_tid) - v_counted, cardinality(v_c_tid));
    END IF;
  END IF;

  -- 2b. a resolve of a fingerprint never seen, with no firing in this batch,
  --     is kept as a resolved alert with no occurrences and no incident, so
  --     that firing messages older than it, arriving in a later batch, do
  --     not leave the alert firing (out-of-order messages never move state
  --     backwards, wherever the batches split). A later, newer firing
  --     re-fires it as usual.
  IF cardinality(v_unksegs) > 0 THEN
    WITH t AS (
      INSERT INTO triaged.alert AS a (fingerprint, source, resource, check_name, dedup_key,
                                      severity, status, summary, labels, ci_id, occurrences,
                                      first_seen, last_seen, fired_at, resolved_at,
                                      state_changed_at, flapping)
      SELECT s.fp, s.source, s.resource, s."check", s.dedup_key, s.severity, 'resolved',
             s.summary, s.labels, s.ci_id, 0, s."first", greatest(s."last", s."first"), NULL,
             s."first", s."first", false
        FROM unnest(v_unksegs) s
       ORDER BY s.fp, s.ord
      ON CONFLICT (fingerprint) DO NOTHING
      RETURNING a.id, a.resolved_at, a.severity)
    INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                       occurrences, detail)
    SELECT t.id, t.resolved_at, NULL, 'resolved', t.severity, 0,
           '{"resolve_before_firing": true}'::jsonb
      FROM t ORDER BY t.id;
  END IF;

  -- 3. new alerts, in fingerprint order, with their creation in the history;
  --    a fingerprint another transaction created meanwhile (rare: the
  --    plain INSERT fails, and is redone skipping those) is left to the
  --    row-by-row path
  IF cardinality(v_newsegs) > 0 THEN
    BEGIN
      v_new := triaged._create_alerts(v_newsegs, v_flap_thr, false);
    EXCEPTION WHEN unique_violation THEN
      v_new := triaged._create_alerts(v_newsegs, v_flap_thr, true);
    END;
    IF cardinality(v_new) < cardinality(v_newsegs) THEN
      SELECT coalesce(array_agg(s ORDER BY s.fp, s.ord), '{}')
        INTO v_loopsegs
        FROM (SELECT * FROM unnest(v_loopsegs)
              UNION ALL
              SELECT * FROM unnest(v_newsegs) n
               WHERE NOT EXISTS (SELECT 1 FROM unnest(v_new) a WHERE a.fingerprint = n.fp)) s;
    END IF;
  END IF;

  -- (029) the incidents the steps below will lock, locked first, at once,
  --     in id order, when the loop has segments (else find-or-open's is the
  --     only lock): as _ingest_batch's (fix29: _ahead_sets, _route_ahead;
  --     older firings go through the loop here: "touched"); the steps lock them again,
  --     and what this could not foresee after them (see _ingest_batch)
  IF cardinality(v_loopsegs) > 0 THEN
    PERFORM triaged._lock_ahead(v_loopsegs, v_known, v_new, '{}');
  END IF;

  IF cardinality(v_new) > 0 THEN
    -- one request per group: title and resource of its earliest alert,
    -- opened at the earliest first time, the most severe severity
    SELECT coalesce(array_agg(ROW(x.gkey, x.ci_id, x.resource, x.title, x.opened_at,
                                  triaged.severity_of_rank(x.best))::triaged._group_req
                              ORDER BY x.gkey), '{}')
      INTO v_reqs
      FROM (SELECT DISTINCT ON (a.gkey) a.gkey, a.ci_id, a.resource,
                   a.check_name || ' on ' || a.resource AS title,
                   min(a.first_seen) OVER w AS opened_at,
                   min(triaged.severity_rank(a.severity)) OVER w AS best
              FROM unnest(v_new) a
            WINDOW w AS (PARTITION BY a.gkey)
             ORDER BY a.gkey, a.first_seen, a.fingerprint) x;

    SELECT coalesce(array_agg(r), '{}') INTO v_grp FROM triaged._open_incidents(v_reqs) r;

    -- links (new alerts have none yet), changes, published rows
    WITH m AS (
      SELECT a.*, g.incident_id, g.number
        FROM unnest(v_new) a JOIN unnest(v_grp) g ON g.gkey = a.gkey),
    ins AS (
      INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
      SELECT m.incident_id, m.id, 'cause' FROM m ORDER BY m.incident_id, m.id)
    SELECT coalesce(array_agg(ROW(m.incident_id, 'attached', m.fingerprint, m.first_seen,
                                  m.severity, NULL)::triaged._change), '{}'),
           coalesce(array_agg(ROW('alert.firing', m.fingerprint,
                                  triaged.alert_payload(m.fingerprint, 'firing', m.severity,
                                    m.resource, m.check_name, m.occurrences, m.first_seen,
                                    m.last_seen, m.flapping, m.number))::triaged.ingest_row
                              ORDER BY m.fingerprint), '{}')
      INTO v_changes, v_rows
      FROM m;
    IF cardinality(v_changes) <> cardinality(v_new) THEN
      RAISE EXCEPTION 'triaged.ingest: % new alerts without an incident',
        cardinality(v_new) - cardinality(v_changes);
    END IF;

    SELECT v_changes || coalesce(array_agg(ROW(g.incident_id, 'opened', NULL, NULL, NULL, NULL)
                                           ::triaged._change), '{}'),
           count(*)
      INTO v_changes, v_opened
      FROM unnest(v_grp) g WHERE g.opened;
  END IF;

  -- 4. everything else, row by row in (fingerprint, ord) order
  IF cardinality(v_loopsegs) > 0 THEN
    v_loop := triaged._ingest_loop(v_loopsegs, v_reopen, v_flap_thr, v_flap_win);
  ELSE
    v_loop := ROW('{}', '{}', 0, 0, 0, 0, 0, 0, 0, 0)::triaged._loop_result;
  END IF;
  v_changes := v_changes || v_loop.changes;

  -- 5. alert rows (new ones first), then per incident: updates, events, one
  --    row each
  RETURN QUERY SELECT * FROM unnest(v_rows);
  RETURN QUERY
    SELECT o.kind, o.fingerprint,
           triaged.alert_payload(o.fingerprint, o.status, o.severity, o.resource, o.check_name,
                                 o.occurrences, o.first_seen, o.last_seen, o.flapping,
                                 coalesce(o.incident,
                                   (SELECT i.number FROM triaged.incident i
                                     WHERE i.id = (SELECT ia.incident_id
                                                     FROM triaged.incident_alert ia
                                                    WHERE ia.alert_id = o.alert_id
                                                    ORDER BY ia.attached_at DESC,
                                                             ia.incident_id DESC
                                                    LIMIT 1))))
      FROM unnest(v_loop.out_rows) WITH ORDINALITY o
     ORDER BY o.ordinality;
  RETURN QUERY SELECT * FROM triaged._finish_incidents(v_changes, v_now, v_actor);

  RETURN NEXT ROW('stats', NULL, jsonb_build_object(
    'segments', cardinality(v_segs),
    'dups', v_dups,
    'dup_misses', v_ndup_hint - v_dups,
    'new_alerts', cardinality(v_new),
    'refired', v_loop.refired,
    'resolved', v_loop.resolved,
    'stale', v_stale + v_loop.stale,
    'unknown_resolves', v_unknown + v_loop.unknown_resolves,
    'severity_changes', v_loop.severity_changes,
    'incidents_opened', v_opened + v_loop.incidents_opened,
    'incidents_reopened', v_loop.incidents_reopened,
    'attached', cardinality(v_new) + v_loop.attached)::json)::triaged.ingest_row;
  RETURN;
END $$;

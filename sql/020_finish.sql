-- 020_finish.sql — the end of the batch keeps its plans (issue 3's latency
-- and small batches, resolves and re-fires; issue 5), same results
-- (DESIGN.md §4; every published row, event, hash, stored state and stats
-- key as before: tests/integration/test_engine_finish.sh compares them with
-- 018's _finish_counted and 013's _count_deltas, test_engine_fastpaths
-- with 002's reference path).
--
-- 1. _finish_counted's big statement (events, hash chain, the incidents'
--    UPDATE and published rows) could be planned again at every call when
--    it had few changes: PostgreSQL's default plan_cache_mode compares a
--    custom plan, costed with the arrays' real sizes, with the generic one
--    (costed at 10 rows an array), and keeps making custom ones (~3.5 ms
--    each) while they look cheaper. Called directly with one attached
--    alert it cost 3.6 ms of backend CPU, with ten incidents 2.2 ms; in
--    the engine, batches of 1-5 resolves paid it (batches of new alerts
--    and of 100 already ran the generic plan). Now every
--    statement of _finish_counted has a generic plan, made with
--    enable_seqscan off (index probes by key, as 018 did for its lock):
--    1 incident 1.2-1.8 ms. The plans read the batch's arrays and rows by
--    key only; a generic plan is what 018 ran for every batch large enough.
-- 2. _count_deltas (resolves, re-fires: the loop ran) was a SQL function
--    with SET clauses, so neither inlined nor cached: planned at every
--    call (~0.8 ms of its ~2.3 ms a batch of 100). Now a PL/pgSQL
--    function whose statement (013's, unchanged) keeps a generic plan made
--    with enable_seqscan off.
--
-- Measured and not kept: a lean statement for batches of new alerts only
-- (opened / alerts_attached, priority_changed, resolve_cancelled or
-- resolve_pending, each incident's one to three events and their hash
-- chain computed in its row, unrolled, instead of 018's eight event
-- branches, window, recursive CTE and joins back): no faster than 018's
-- statement once both keep a generic plan (100 incidents: 6.1 ms against
-- 6.2; 1: 1.0-1.6 ms both). What a touched incident costs (~55 us) is
-- mostly its rows: the incident's UPDATE with its published JSON (~20-25
-- us), the event's INSERT with its three indexes (~7-13 us), the event's
-- jsonb detail, text and SHA-256 (~8 us); the statement's structure
-- (recursion, sorts, CTE scans) is a few us of it.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- (020) end of a batch: 018's, every statement with a generic plan (see
-- the file's header); the changes marked "(020)"
CREATE OR REPLACE FUNCTION triaged._finish_counted(p_changes triaged._change[], p_now timestamptz,
                                        p_actor text, p_delta triaged._count_delta[],
                                        p_recount bigint[])
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
-- (ingest runs with jit off; so does this wherever it is called from: its
-- big statement's estimate passes jit_above_cost, and compiling it cost
-- ~0.3 s, more than running it)
SET jit = off
-- (020) every statement with a generic plan made with enable_seqscan off
-- (018 did so for the lock only): they read the batch's arrays and rows by
-- key, and a custom plan of the big statement below cost ~3.5 ms to make,
-- which a batch touching a few incidents paid at every call (PostgreSQL's
-- default mode kept custom plans while the arrays were small)
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
  v_ids    bigint[];
  v_rows   triaged.ingest_row[];
  v_need   bigint[];
  v_maxres triaged._change[] := '{}';
  v_matrix smallint[];
  v_alone  boolean;   -- (016) a delta of an incident without a change
  v_res    boolean;   -- (016) an alert resolved (a change, or a delta)
BEGIN
  IF cardinality(p_changes) = 0 AND cardinality(p_delta) = 0 AND cardinality(p_recount) = 0 THEN
    RETURN;
  END IF;
  v_matrix := triaged._matrix();
  -- (their ctid, read below, is then the locked row version, which only
  -- this transaction can change; 016: with what decides the next two
  -- steps, in the same statement)
  SELECT array_agg(DISTINCT x.id), coalesce(bool_or(x.res), false),
         coalesce(bool_or(x.alone), false)
    INTO v_ids, v_res, v_alone
    FROM (SELECT c.incident_id AS id, c.what = 'resolved' AS res, false AS alone
            FROM unnest(p_changes) c
          UNION ALL
          SELECT d.incident_id, d.firing < 0,
                 coalesce(d.incident_id NOT IN (SELECT c.incident_id FROM unnest(p_changes) c),
                          true)   -- (hashed; unknown: the UPDATE runs)
            FROM unnest(p_delta) d
          UNION ALL SELECT r.id, false, false FROM unnest(p_recount) r(id)) x;
  -- (018) with a generic plan made with enable_seqscan off (020: as every
  -- statement here): a probe of the primary key whatever the table's size
  PERFORM 1 FROM triaged.incident i WHERE i.id = ANY (v_ids) ORDER BY i.id FOR UPDATE OF i;
  -- counted again (rare: see _count_deltas), now that they are locked
  IF cardinality(p_recount) > 0 THEN
    PERFORM triaged._recount(p_recount);
  END IF;
  -- the deltas of incidents without a change (an alert of theirs changed
  -- status while they were not open, or while it was in another incident
  -- too): their counts only, no event and no row (as before 013, when
  -- such an incident was not touched at all)
  IF v_alone THEN
    UPDATE triaged.incident i
       SET alert_count = i.alert_count + x.da, firing_count = i.firing_count + x.df,
           updated_at = now()
      FROM (SELECT u.incident_id, sum(u.da)::integer AS da, sum(u.df)::integer AS df
              FROM (SELECT d.incident_id, d.alerts AS da, d.firing AS df, false AS touched
                      FROM unnest(p_delta) d
                    UNION ALL
                    SELECT c.incident_id, 0, 0, true FROM unnest(p_changes) c) u
             GROUP BY u.incident_id
            HAVING NOT bool_or(u.touched)) x
     WHERE i.id = x.incident_id AND (x.da <> 0 OR x.df <> 0);
  END IF;

  -- the time the last alert resolved, of the open incidents none of whose
  -- alerts fires now (one pass over their links; only when an alert of the
  -- batch resolved)
  IF v_res THEN
    v_need := ARRAY(
      SELECT x.id
        FROM (SELECT u.id, sum(u.df) AS df
                FROM (SELECT c.incident_id AS id, 0 AS df FROM unnest(p_changes) c
                      UNION ALL SELECT d.incident_id, d.firing FROM unnest(p_delta) d) u
               GROUP BY u.id) x
       CROSS JOIN LATERAL (SELECT i.firing_count, i.status, i.merged_into
                             FROM triaged.incident i WHERE i.id = x.id OFFSET 0) i
       WHERE i.firing_count + x.df = 0 AND i.status IN ('new', 'acknowledged')
         AND i.merged_into IS NULL);
    IF cardinality(v_need) > 0 THEN
      v_maxres := ARRAY(
        SELECT ROW(ia.incident_id, 'maxres', NULL, max(a.resolved_at), NULL, NULL)::triaged._change
          FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
         WHERE ia.incident_id = ANY (v_need)
         GROUP BY ia.incident_id);
    END IF;
  END IF;

  WITH RECURSIVE
  -- the changes, and the count deltas and the last resolve times as changes
  -- of their own ('count', 'maxres': joined so, no join of two arrays)
  c AS (SELECT ch.*, 0 AS da, 0 AS df FROM unnest(p_changes) ch
        UNION ALL
        SELECT d.incident_id, 'count', NULL, NULL, NULL, NULL, d.alerts, d.firing
          FROM unnest(p_delta) d
        UNION ALL
        SELECT m.*, 0, 0 FROM unnest(v_maxres) m),
  agg AS (
    SELECT c.incident_id AS inc_id,
           bool_or(c.what = 'opened') AS was_opened,
           min(c.at) FILTER (WHERE c.what = 'reopened') AS reopened_at,
           (array_agg(c.detail ORDER BY c.at) FILTER (WHERE c.what = 'reopened'))[1] AS reopen_detail,
           array_agg(DISTINCT c.fingerprint) FILTER (WHERE c.what = 'attached') AS attached,
           min(c.at) FILTER (WHERE c.what = 'attached') AS attached_at,
           array_agg(DISTINCT c.fingerprint) FILTER (WHERE c.what = 'refired') AS refired,
           min(c.at) FILTER (WHERE c.what = 'refired') AS refired_at,
           array_agg(DISTINCT c.fingerprint) FILTER (WHERE c.what = 'resolved') AS resolved,
           max(c.at) FILTER (WHERE c.what = 'resolved') AS resolved_at_max,
           min(triaged.severity_rank(c.severity))
             FILTER (WHERE c.what IN ('attached', 'refired', 'severity')) AS best_rank,
           (array_agg(c.at ORDER BY triaged.severity_rank(c.severity), c.at)
             FILTER (WHERE c.what IN ('attached', 'refired', 'severity')))[1] AS best_at,
           coalesce(bool_or(c.what IN ('attached', 'refired')), false) AS fire_activity,
           max(c.at) FILTER (WHERE c.what IN ('attached', 'refired')) AS fire_at,
           -- opened by this batch and nothing resolved: its alerts are the
           -- ones attached by this batch, all firing (no need to count them)
           bool_or(c.what = 'opened') AND NOT bool_or(c.what = 'resolved') AS fresh,
           sum(c.da) AS da, sum(c.df) AS df,
           max(c.at) FILTER (WHERE c.what = 'maxres') AS max_resolved_at
    FROM c GROUP BY c.incident_id
    HAVING bool_or(c.what NOT IN ('count', 'maxres'))),
  st AS (
    SELECT i.id, i.ctid AS tid, i.status, i.priority, i.impact, i.urgency, i.severity, i.title,
           i.ci_id,
           i.resource,
           i.opened_at, i.merged_into, i.last_event_hash, i.resolve_pending_since AS old_pending,
           i.resolve_at AS old_resolve_at,
           agg.*,
           -- (013) kept on the incident, plus this batch's deltas
           i.alert_count + agg.da AS alert_count,
           i.firing_count + agg.df AS firing_count,
           -- (agg.max_resolved_at: the time its last alert resolved)
           (i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL) AS is_open
    FROM agg
    JOIN triaged.incident i ON i.id = agg.inc_id),
  calc AS (
    SELECT st.*,
           CASE WHEN st.best_rank IS NOT NULL
                     AND st.best_rank < coalesce(triaged.severity_rank(st.severity), 99)
                THEN triaged.severity_of_rank(st.best_rank) ELSE st.severity END AS new_severity,
           -- (003's _new_priority, written out with the matrix read once:
           -- per row it parsed the matrix setting each time)
           CASE WHEN st.ci_id IS NOT NULL
                THEN v_matrix[(st.impact - 1) * 3
                              + CASE WHEN st.best_rank IS NOT NULL
                                     THEN least(st.urgency, triaged.severity_urgency(
                                            triaged.severity_of_rank(st.best_rank)))
                                     ELSE st.urgency END]
                WHEN st.best_rank IS NOT NULL THEN least(st.priority, st.best_rank)
                ELSE st.priority END AS new_priority,
           CASE WHEN st.best_rank IS NOT NULL
                THEN least(st.urgency, triaged.severity_urgency(triaged.severity_of_rank(st.best_rank)))
                ELSE st.urgency END AS new_urgency,
           CASE WHEN NOT st.is_open THEN st.old_pending
                WHEN st.firing_count > 0 THEN NULL
                WHEN st.old_pending IS NOT NULL AND NOT st.fire_activity THEN st.old_pending
                ELSE p_now END AS new_pending,
           CASE WHEN NOT st.is_open THEN st.old_resolve_at
                WHEN st.firing_count > 0 THEN NULL
                ELSE coalesce(st.max_resolved_at, st.resolved_at_max, st.old_resolve_at, p_now)
           END AS new_resolve_at
    FROM st),
  ev AS (
    SELECT calc.id AS incident_id, 1 AS seq, calc.opened_at AS at, 'opened' AS kind,
           jsonb_build_object('title', calc.title, 'priority', calc.priority,
                              'severity', calc.severity, 'ci_id', calc.ci_id,
                              'resource', calc.resource,
                              'fingerprints', coalesce(to_jsonb(calc.attached), '[]')) AS detail
      FROM calc WHERE calc.was_opened
    UNION ALL
    SELECT calc.id, 2, calc.reopened_at, 'reopened', coalesce(calc.reopen_detail, '{}')
      FROM calc WHERE calc.reopened_at IS NOT NULL
    UNION ALL
    SELECT calc.id, 3, calc.attached_at, 'alerts_attached',
           jsonb_build_object('fingerprints', to_jsonb(calc.attached))
      FROM calc WHERE calc.attached IS NOT NULL AND NOT calc.was_opened
    UNION ALL
    SELECT calc.id, 4, calc.refired_at, 'alerts_refired',
           jsonb_build_object('fingerprints', to_jsonb(calc.refired))
      FROM calc WHERE calc.refired IS NOT NULL
    UNION ALL
    SELECT calc.id, 5, coalesce(calc.best_at, p_now), 'priority_changed',
           jsonb_build_object('from', calc.priority, 'to', calc.new_priority,
                              'severity_from', calc.severity, 'severity_to', calc.new_severity)
      FROM calc WHERE calc.new_priority <> calc.priority
                   OR calc.new_severity IS DISTINCT FROM calc.severity
                   OR calc.new_urgency <> calc.urgency
    UNION ALL
    SELECT calc.id, 6, calc.resolved_at_max, 'alerts_resolved',
           jsonb_build_object('fingerprints', to_jsonb(calc.resolved))
      FROM calc WHERE calc.resolved IS NOT NULL
    UNION ALL
    SELECT calc.id, 7, coalesce(calc.fire_at, calc.best_at, p_now), 'resolve_cancelled',
           jsonb_build_object('pending_since', calc.old_pending, 'resolve_at', calc.old_resolve_at)
      FROM calc WHERE calc.old_pending IS NOT NULL AND calc.new_pending IS NULL
    UNION ALL
    SELECT calc.id, 8, calc.new_resolve_at, 'resolve_pending',
           jsonb_build_object('resolve_at', calc.new_resolve_at, 'pending_since', calc.new_pending)
      FROM calc WHERE calc.new_pending IS NOT NULL
                  AND calc.new_pending IS DISTINCT FROM calc.old_pending),
  -- the hash chain, continued from each incident's last_event_hash: event
  -- rn of an incident is hashed onto event rn - 1 (most incidents have one)
  evn AS (
    SELECT ev.incident_id, ev.at, ev.kind, ev.detail, calc.last_event_hash AS init,
           triaged.event_content(ev.incident_id, ev.at, p_actor, ev.kind, ev.detail) AS content,
           row_number() OVER (PARTITION BY ev.incident_id ORDER BY ev.seq) AS rn
      FROM ev JOIN calc ON calc.id = ev.incident_id),
  ch (incident_id, rn, prev, hash) AS (
    SELECT e.incident_id, e.rn, e.init, sha256(coalesce(e.init, ''::bytea) || e.content)
      FROM evn e WHERE e.rn = 1
    UNION ALL
    SELECT e.incident_id, e.rn, ch.hash, sha256(ch.hash || e.content)
      FROM ch JOIN evn e ON e.incident_id = ch.incident_id AND e.rn = ch.rn + 1),
  ins AS (
    INSERT INTO triaged.incident_event (incident_id, at, actor, kind, detail, prev_hash, hash)
    SELECT e.incident_id, e.at, p_actor, e.kind, e.detail, ch.prev, ch.hash
      FROM evn e JOIN ch ON ch.incident_id = e.incident_id AND ch.rn = e.rn
     ORDER BY e.incident_id, e.rn
    RETURNING 1),
  lasth AS (
    SELECT DISTINCT ON (ch.incident_id) ch.incident_id, ch.hash
      FROM ch ORDER BY ch.incident_id, ch.rn DESC),
  -- one update per incident that has news (every change is an event)
  upd AS (
    UPDATE triaged.incident i
       SET severity = calc.new_severity, priority = calc.new_priority,
           urgency = calc.new_urgency, resolve_pending_since = calc.new_pending,
           resolve_at = calc.new_resolve_at, last_event_hash = lasth.hash,
           alert_count = calc.alert_count, firing_count = calc.firing_count, updated_at = now()
      FROM calc JOIN lasth ON lasth.incident_id = calc.id
     WHERE i.ctid = calc.tid
    RETURNING i.id,
              CASE WHEN calc.was_opened THEN 'incident.opened'
                   WHEN calc.reopened_at IS NOT NULL THEN 'incident.reopened'
                   ELSE 'incident.updated' END AS kind,
              i.number,
              triaged._incident_json(i.id, i.number, i.title, i.status, i.priority, i.impact,
                                     i.urgency, i.severity, i.resource, i.ci_id, i.opened_at,
                                     i.acknowledged_at, i.resolved_at, i.closed_at,
                                     i.reopen_count, i.resolve_pending_since,
                                     calc.alert_count, calc.firing_count) AS payload),
  -- (013) an incident with changes but no event (a severity change that
  -- raised nothing) and a count delta all the same: its counts only
  cupd AS (
    UPDATE triaged.incident i
       SET alert_count = calc.alert_count, firing_count = calc.firing_count, updated_at = now()
      FROM calc
     WHERE i.ctid = calc.tid AND (calc.da <> 0 OR calc.df <> 0)
       AND NOT (calc.was_opened OR calc.reopened_at IS NOT NULL OR calc.attached IS NOT NULL
                OR calc.refired IS NOT NULL OR calc.resolved IS NOT NULL
                OR calc.new_priority <> calc.priority
                OR calc.new_severity IS DISTINCT FROM calc.severity
                OR calc.new_urgency <> calc.urgency
                OR (calc.old_pending IS NOT NULL AND calc.new_pending IS NULL)
                OR (calc.new_pending IS NOT NULL
                    AND calc.new_pending IS DISTINCT FROM calc.old_pending))
    RETURNING 1)
  SELECT coalesce(array_agg(ROW(upd.kind, upd.number, upd.payload)::triaged.ingest_row
                            ORDER BY upd.id), '{}')
    INTO v_rows
    FROM upd;
  RETURN QUERY SELECT * FROM unnest(v_rows);
END $$;



-- ---------------------------------------------------------------------------
-- (020) 013's _count_deltas (see there), its statement kept with a generic
-- plan: as a SQL function with SET clauses it was neither inlined nor
-- cached, and was planned again at every call (~0.8 ms a batch of
-- resolves or re-fires). The plan is made with enable_seqscan off: index
-- probes by key (alert by id and fingerprint, links by alert), whatever the
-- tables' size when it was made.
CREATE OR REPLACE FUNCTION triaged._count_deltas(p_changes triaged._change[],
                                                 p_loopsegs triaged._segment[],
                                                 p_ids bigint[], p_s0 text[])
RETURNS TABLE (deltas triaged._count_delta[], recount bigint[])
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
BEGIN
  RETURN QUERY
    WITH la AS (   -- the loop's alerts now: those step 0 locked (p_ids, with
                   -- their status then), by id; the others by fingerprint
      SELECT a.id, a.fingerprint, a.status AS s1, k.s0
        FROM (SELECT DISTINCT k.id, k.s0 FROM unnest(p_ids, p_s0) k(id, s0)) k
       CROSS JOIN LATERAL (SELECT a.id, a.fingerprint, a.status FROM triaged.alert a
                            WHERE a.id = k.id OFFSET 0) a
      UNION ALL
      SELECT a.id, a.fingerprint, a.status, NULL
        FROM (SELECT DISTINCT s.fp FROM unnest(p_loopsegs) s WHERE s.hint IS NULL) f
       CROSS JOIN LATERAL (SELECT a.id, a.fingerprint, a.status FROM triaged.alert a
                            WHERE a.fingerprint = f.fp OFFSET 0) a),
    l AS (         -- every link of theirs now
      SELECT ia.incident_id, la.fingerprint AS fp, la.s0, la.s1
        FROM la
       CROSS JOIN LATERAL (SELECT ia.incident_id FROM triaged.incident_alert ia
                            WHERE ia.alert_id = la.id OFFSET 0) ia),
    p AS (         -- per link: made by this batch? of an alert of the loop?
      SELECT u.incident_id, u.fp, bool_or(u.made) AS made, bool_or(NOT u.made) AS looped,
             min(u.s0) AS s0, min(u.s1) AS s1
        FROM (SELECT l.incident_id, l.fp, l.s0, l.s1, false AS made FROM l
              UNION ALL
              SELECT c.incident_id, c.fingerprint, NULL, NULL, true
                FROM unnest(p_changes) c WHERE c.what = 'attached') u
       GROUP BY u.incident_id, u.fp),
    q AS (
      SELECT p.incident_id,
             sum(CASE WHEN p.made THEN 1 ELSE 0 END)::integer AS da,
             sum(CASE WHEN NOT p.looped THEN 1
                      WHEN p.made THEN (p.s1 = 'firing')::integer
                      ELSE (p.s1 = 'firing')::integer - (p.s0 = 'firing')::integer END)::integer
               AS df,
             bool_or(p.looped AND NOT p.made AND p.s0 IS NULL) AS unknown
        FROM p GROUP BY p.incident_id)
    SELECT coalesce(array_agg(ROW(q.incident_id, q.da, q.df)::triaged._count_delta
                              ORDER BY q.incident_id)
                      FILTER (WHERE NOT q.unknown AND (q.da <> 0 OR q.df <> 0)), '{}'),
           coalesce(array_agg(q.incident_id ORDER BY q.incident_id) FILTER (WHERE q.unknown), '{}')
      FROM q;
END $$;

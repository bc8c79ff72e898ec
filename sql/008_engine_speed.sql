-- 008_engine_speed.sql — the incident engine's cost per alert, cut where it
-- was measured to go (tests/bench/bench_engine.sh: PostgreSQL backend CPU
-- per batch; README, "Engine" benchmarks). Same semantics as 002/003
-- (DESIGN.md §3-§4): the functions here replace or wrap theirs.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- Resolves, set-based. 002's row-by-row path (_ingest_loop) cost ~330 us per
-- resolve: a locked read, an UPDATE, a history count and an incident lookup
-- per segment, each a statement of its own, and arrays grown one element at
-- a time. The common case -- the only segment of its fingerprint in the
-- batch, a resolve of a firing alert, not older than the alert's state --
-- now goes through a few statements for the whole batch, doing exactly what
-- the loop does for it (alert update, history row, the flapping check over
-- the stored history, published row, a 'resolved' change for each open
-- incident the alert belongs to). Everything else still goes row by row.
-- (The alerts are locked already: ingest's step 0 locks every existing
-- alert of the batch.)

-- a resolve done set-based: the alert after it, and its flapping count
-- (NULL: the alert was flapping already)
CREATE TYPE triaged._resolve_out AS (
  id bigint, fingerprint text, at timestamptz, severity text, resource text,
  check_name text, occurrences bigint, first_seen timestamptz, last_seen timestamptz,
  flapping boolean, changes bigint);

-- a re-fire done set-based: the alert after it, its severity before, its
-- flapping count (as above) and the (open) incident it stays in
CREATE TYPE triaged._refire_out AS (
  id bigint, fingerprint text, at timestamptz, severity text, sev_from text, resource text,
  check_name text, occurrences bigint, first_seen timestamptz, last_seen timestamptz,
  flapping boolean, changes bigint, incident_id bigint);

ALTER FUNCTION triaged._ingest_loop(triaged._segment[], interval, integer, interval)
  RENAME TO _ingest_loop_rows;

CREATE FUNCTION triaged._ingest_loop(p_segs triaged._segment[], p_reopen interval,
                                     p_flap_threshold integer, p_flap_window interval)
RETURNS triaged._loop_result
LANGUAGE plpgsql AS $$
DECLARE
  v_cand     triaged._segment[];
  v_rest     triaged._segment[];
  v_done     text[];
  v_changes  triaged._change[] := '{}';
  v_rows     triaged._alert_out[] := '{}';
  v_resolved integer := 0;
  v_res      triaged._resolve_out[];
  v_fire     triaged._segment[];
  v_pfp      text[];
  v_pinc     bigint[];
  v_psev     text[];
  v_ok       boolean[];
  v_ref      triaged._refire_out[];
  v_refired  integer := 0;
  v_attached integer := 0;
  v_ch       triaged._change[];
  v_loop     triaged._loop_result;
BEGIN
  SELECT coalesce(array_agg(x.s) FILTER (WHERE x.single AND (x.s).status = 'resolved'), '{}'),
         coalesce(array_agg(x.s) FILTER (WHERE x.single AND (x.s).status = 'firing'), '{}'),
         coalesce(array_agg(x.s ORDER BY (x.s).fp, (x.s).ord) FILTER (WHERE NOT x.single), '{}')
    INTO v_cand, v_fire, v_rest
    FROM (SELECT s, count(*) OVER (PARTITION BY s.fp) = 1 AS single
            FROM unnest(p_segs) s) x;

  IF cardinality(v_cand) > 0 THEN
    -- the update, and the flapping count of each (the history stored before
    -- this batch, plus this change), in fingerprint order
    WITH u AS (
      UPDATE triaged.alert a
         SET status = 'resolved', resolved_at = s."first", state_changed_at = s."first",
             last_seen = greatest(a.last_seen, s."last"), updated_at = now()
        FROM unnest(v_cand) s
       WHERE a.fingerprint = s.fp AND a.status = 'firing' AND s."first" >= a.state_changed_at
      RETURNING a.id, a.fingerprint, s."first" AS at, a.severity, a.resource, a.check_name,
                a.occurrences, a.first_seen, a.last_seen, a.flapping)
    SELECT coalesce(array_agg(ROW(u.id, u.fingerprint, u.at, u.severity, u.resource,
                                  u.check_name, u.occurrences, u.first_seen, u.last_seen,
                                  u.flapping,
                                  CASE WHEN NOT u.flapping THEN
                                    (SELECT count(*) FROM triaged.alert_history h
                                      WHERE h.alert_id = u.id AND h.at > u.at - p_flap_window
                                        AND h.at <= u.at
                                        AND h.from_status IS DISTINCT FROM h.to_status)
                                    + (u.at > u.at - p_flap_window)::integer END
                                 )::triaged._resolve_out ORDER BY u.fingerprint), '{}')
      INTO v_res
      FROM u;
    v_resolved := cardinality(v_res);

    INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                       occurrences, detail)
    SELECT h.id, h.at, h.from_status, h.to_status, h.severity, h.occurrences, h.detail
      FROM (SELECT r.fingerprint, 1 AS o, r.id, r.at, 'firing' AS from_status,
                   'resolved' AS to_status, r.severity, r.occurrences, '{}'::jsonb AS detail
              FROM unnest(v_res) r
            UNION ALL
            SELECT r.fingerprint, 2, r.id, r.at, 'resolved', 'resolved', r.severity,
                   r.occurrences, jsonb_build_object('flapping', true, 'changes', r.changes)
              FROM unnest(v_res) r WHERE r.changes > p_flap_threshold) h
     ORDER BY h.fingerprint, h.o;
    IF EXISTS (SELECT 1 FROM unnest(v_res) r WHERE r.changes > p_flap_threshold) THEN
      UPDATE triaged.alert a SET flapping = true
        FROM unnest(v_res) r
       WHERE r.changes > p_flap_threshold AND a.id = r.id;
    END IF;

    SELECT coalesce(array_agg(r.fingerprint), '{}'),
           coalesce(array_agg(ROW('alert.resolved', r.id, r.fingerprint, 'resolved', r.severity,
                                  r.resource, r.check_name, r.occurrences, r.first_seen,
                                  r.last_seen, r.flapping OR coalesce(r.changes > p_flap_threshold,
                                                                      false),
                                  NULL)::triaged._alert_out ORDER BY r.fingerprint), '{}')
      INTO v_done, v_rows
      FROM unnest(v_res) r;
    -- every open incident each belongs to may now be clear (each read by
    -- primary key, as _open_incident_changes does: a subquery, which no
    -- plan flattens into a join that scans the open incidents; one did,
    -- 6 s for a batch)
    SELECT coalesce(array_agg(ROW(o.incident_id, 'resolved', r.fingerprint, r.at, r.severity,
                                  NULL)::triaged._change ORDER BY r.fingerprint, o.incident_id),
                    '{}')
      INTO v_changes
      FROM unnest(v_res) r
      CROSS JOIN LATERAL (SELECT ia.incident_id FROM triaged.incident_alert ia
                           WHERE ia.alert_id = r.id OFFSET 0) o
     WHERE (SELECT i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
              FROM triaged.incident i WHERE i.id = o.incident_id);

    -- the candidates the update did not take (stale, or not firing): row by row
    IF v_resolved < cardinality(v_cand) THEN
      SELECT coalesce(array_agg(x ORDER BY x.fp, x.ord), '{}') INTO v_rest
        FROM (SELECT * FROM unnest(v_rest)
              UNION ALL
              SELECT * FROM unnest(v_cand) c WHERE c.fp <> ALL (v_done)) x;
    END IF;
  END IF;

  -- Re-fires whose alert's latest incident is still open (it stays there:
  -- the link exists, so it is a 'refired' change; a pending resolve is
  -- cancelled at the end). The latest incident is locked first (id order),
  -- then checked; the others (merged, resolved: reopen or a new incident)
  -- go row by row.
  IF cardinality(v_fire) > 0 THEN
    SELECT coalesce(array_agg(s.fp), '{}'), coalesce(array_agg(l.incident_id), '{}'),
           coalesce(array_agg(a.severity), '{}')
      INTO v_pfp, v_pinc, v_psev
      FROM unnest(v_fire) s
      -- (OFFSET 0: each alert by its fingerprint; a plan that scanned the
      -- resolved alerts for them took seconds a batch)
      CROSS JOIN LATERAL (SELECT a.id, a.severity, a.status, a.state_changed_at
                            FROM triaged.alert a WHERE a.fingerprint = s.fp OFFSET 0) a
      CROSS JOIN LATERAL (SELECT ia.incident_id FROM triaged.incident_alert ia
                           WHERE ia.alert_id = a.id
                           ORDER BY ia.attached_at DESC, ia.incident_id DESC LIMIT 1) l
     WHERE a.status = 'resolved' AND s."first" >= a.state_changed_at;
    IF cardinality(v_pfp) > 0 THEN
      PERFORM 1 FROM triaged.incident i WHERE i.id = ANY (v_pinc) ORDER BY i.id FOR UPDATE;
      SELECT array_agg(coalesce((SELECT i.status IN ('new', 'acknowledged')
                                        AND i.merged_into IS NULL
                                   FROM triaged.incident i WHERE i.id = p.inc), false)
                       ORDER BY p.o)
        INTO v_ok
        FROM unnest(v_pinc) WITH ORDINALITY p(inc, o);
      WITH u AS (
        UPDATE triaged.alert a
           SET status = 'firing', fired_at = s."first", resolved_at = NULL,
               state_changed_at = s."first", severity = s.severity,
               source = s.source, resource = s.resource, check_name = s."check",
               dedup_key = s.dedup_key, labels = s.labels, ci_id = s.ci_id,
               summary = coalesce(s.summary, a.summary),
               occurrences = a.occurrences + s.n,
               first_seen = least(a.first_seen, s."first"),
               last_seen = greatest(a.last_seen, s."last"), updated_at = now()
          FROM (SELECT f.*, p.inc, p.sev_from
                  FROM unnest(v_pfp, v_pinc, v_psev, v_ok) p(fp, inc, sev_from, ok)
                  JOIN unnest(v_fire) f ON f.fp = p.fp
                 WHERE p.ok) s
         WHERE a.fingerprint = s.fp
        RETURNING a.id, a.fingerprint, s."first" AS at, a.severity, s.sev_from, a.resource,
                  a.check_name, a.occurrences, a.first_seen, a.last_seen, a.flapping,
                  s.inc)
      SELECT coalesce(array_agg(ROW(u.id, u.fingerprint, u.at, u.severity, u.sev_from,
                                    u.resource, u.check_name, u.occurrences, u.first_seen,
                                    u.last_seen, u.flapping,
                                    CASE WHEN NOT u.flapping THEN
                                      (SELECT count(*) FROM triaged.alert_history h
                                        WHERE h.alert_id = u.id AND h.at > u.at - p_flap_window
                                          AND h.at <= u.at
                                          AND h.from_status IS DISTINCT FROM h.to_status)
                                      + (u.at > u.at - p_flap_window)::integer END,
                                    u.inc)::triaged._refire_out ORDER BY u.fingerprint), '{}')
        INTO v_ref
        FROM u;
      v_refired := cardinality(v_ref);
    END IF;
  END IF;

  IF v_refired > 0 THEN
    INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                       occurrences, detail)
    SELECT h.id, h.at, h.from_status, h.to_status, h.severity, h.occurrences, h.detail
      FROM (SELECT r.fingerprint, 1 AS o, r.id, r.at, 'resolved' AS from_status,
                   'firing' AS to_status, r.severity, r.occurrences,
                   CASE WHEN r.sev_from <> r.severity
                        THEN jsonb_build_object('severity_from', r.sev_from)
                        ELSE '{}'::jsonb END AS detail
              FROM unnest(v_ref) r
            UNION ALL
            SELECT r.fingerprint, 2, r.id, r.at, 'firing', 'firing', r.severity,
                   r.occurrences, jsonb_build_object('flapping', true, 'changes', r.changes)
              FROM unnest(v_ref) r WHERE r.changes > p_flap_threshold) h
     ORDER BY h.fingerprint, h.o;
    IF EXISTS (SELECT 1 FROM unnest(v_ref) r WHERE r.changes > p_flap_threshold) THEN
      UPDATE triaged.alert a SET flapping = true
        FROM unnest(v_ref) r
       WHERE r.changes > p_flap_threshold AND a.id = r.id;
    END IF;
    -- the link is there (it made the incident the latest): 'refired'; were
    -- it gone meanwhile, it is made again and the alert 'attached'
    WITH ins AS (
      INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
      SELECT r.incident_id, r.id, 'cause' FROM unnest(v_ref) r ORDER BY 1, 2
      ON CONFLICT DO NOTHING
      RETURNING alert_id)
    SELECT coalesce(array_agg(ROW(r.incident_id,
                                  CASE WHEN ins.alert_id IS NULL THEN 'refired' ELSE 'attached' END,
                                  r.fingerprint, r.at, r.severity, NULL)::triaged._change
                              ORDER BY r.fingerprint), '{}'),
           count(ins.alert_id)
      INTO v_ch, v_attached
      FROM unnest(v_ref) r LEFT JOIN ins ON ins.alert_id = r.id;
    v_changes := v_changes || v_ch;
    SELECT v_rows || coalesce(array_agg(ROW('alert.firing', r.id, r.fingerprint, 'firing',
                                            r.severity, r.resource, r.check_name, r.occurrences,
                                            r.first_seen, r.last_seen,
                                            r.flapping OR coalesce(r.changes > p_flap_threshold,
                                                                   false),
                                            NULL)::triaged._alert_out ORDER BY r.fingerprint),
                              '{}')
      INTO v_rows
      FROM unnest(v_ref) r;
  END IF;
  IF cardinality(v_fire) > v_refired THEN
    SELECT coalesce(array_agg(x ORDER BY x.fp, x.ord), '{}') INTO v_rest
      FROM (SELECT * FROM unnest(v_rest)
            UNION ALL
            SELECT * FROM unnest(v_fire) c
             WHERE NOT EXISTS (SELECT 1 FROM unnest(v_ref) r WHERE r.fingerprint = c.fp)) x;
  END IF;

  IF cardinality(v_rest) = 0 THEN
    RETURN ROW(v_changes, v_rows, v_refired, v_resolved, 0, 0, 0, v_attached, 0, 0)
           ::triaged._loop_result;
  END IF;
  v_loop := triaged._ingest_loop_rows(v_rest, p_reopen, p_flap_threshold, p_flap_window);
  IF cardinality(v_rows) = 0 THEN
    RETURN v_loop;
  END IF;
  -- published rows in fingerprint order, as the loop alone would give them
  SELECT coalesce(array_agg(ROW(r.kind, r.alert_id, r.fingerprint, r.status, r.severity,
                                r.resource, r.check_name, r.occurrences, r.first_seen,
                                r.last_seen, r.flapping, r.incident)::triaged._alert_out
                            ORDER BY r.fingerprint, r.src, r.o), '{}')
    INTO v_rows
    FROM (SELECT f.*, 1 AS src FROM unnest(v_rows) WITH ORDINALITY
                 AS f(kind, alert_id, fingerprint, status, severity, resource, check_name,
                      occurrences, first_seen, last_seen, flapping, incident, o)
          UNION ALL
          SELECT l.*, 2 FROM unnest(v_loop.out_rows) WITH ORDINALITY
                 AS l(kind, alert_id, fingerprint, status, severity, resource, check_name,
                      occurrences, first_seen, last_seen, flapping, incident, o)) r;
  RETURN ROW(v_changes || v_loop.changes, v_rows, v_loop.refired + v_refired,
             v_loop.resolved + v_resolved, v_loop.stale, v_loop.unknown_resolves,
             v_loop.severity_changes, v_loop.attached + v_attached, v_loop.incidents_opened,
             v_loop.incidents_reopened)::triaged._loop_result;
END $$;

-- ---------------------------------------------------------------------------
-- End of a batch (002's _finish_incidents, same result), cheaper per touched
-- incident: the alerts of the incidents that are recounted are counted in
-- one pass over their links instead of a subquery per incident, and the
-- new priority is 003's _new_priority written out with the matrix read once
-- (per row it was a PL/pgSQL call that parsed the matrix setting).
CREATE OR REPLACE FUNCTION triaged._finish_incidents(p_changes triaged._change[], p_now timestamptz,
                                          p_actor text)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
-- (ingest runs with jit off; so does this wherever it is called from: its
-- big statement's estimate passes jit_above_cost, and compiling it cost
-- ~0.3 s, more than running it)
SET jit = off
AS $$
DECLARE
  v_ids    bigint[];
  v_recount bigint[];
  v_rows   triaged.ingest_row[];
  v_matrix smallint[] := triaged._matrix();
BEGIN
  IF cardinality(p_changes) = 0 THEN
    RETURN;
  END IF;
  -- (their ctid, read below, is then the locked row version, which only
  -- this transaction can change)
  SELECT array_agg(DISTINCT c.incident_id) INTO v_ids FROM unnest(p_changes) c;
  PERFORM 1 FROM triaged.incident i WHERE i.id = ANY (v_ids) ORDER BY i.id FOR UPDATE OF i;
  -- the incidents whose alerts are counted (the others were opened by this
  -- batch and nothing resolved: their alerts are the ones it attached)
  SELECT coalesce(array_agg(x.id), '{}') INTO v_recount
    FROM (SELECT c.incident_id AS id FROM unnest(p_changes) c GROUP BY c.incident_id
          HAVING NOT (bool_or(c.what = 'opened') AND NOT bool_or(c.what = 'resolved'))) x;

  WITH RECURSIVE
  c AS (SELECT * FROM unnest(p_changes)),
  -- every alert of the incidents counted, in one pass (a subquery per
  -- incident cost twice as much)
  cnt AS (
    SELECT ia.incident_id, count(*) AS alert_count,
           count(*) FILTER (WHERE a.status = 'firing') AS firing_count,
           max(a.resolved_at) AS max_resolved_at
      FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
     WHERE ia.incident_id = ANY (v_recount)
     GROUP BY ia.incident_id),
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
           bool_or(c.what = 'opened') AND NOT bool_or(c.what = 'resolved') AS fresh
    FROM c GROUP BY c.incident_id),
  st AS (
    SELECT i.id, i.ctid AS tid, i.status, i.priority, i.impact, i.urgency, i.severity, i.title,
           i.ci_id,
           i.resource,
           i.opened_at, i.merged_into, i.last_event_hash, i.resolve_pending_since AS old_pending,
           i.resolve_at AS old_resolve_at,
           agg.*,
           CASE WHEN agg.fresh THEN cardinality(agg.attached) ELSE cnt.alert_count END
             AS alert_count,
           CASE WHEN agg.fresh THEN cardinality(agg.attached) ELSE cnt.firing_count END
             AS firing_count,
           cnt.max_resolved_at,
           (i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL) AS is_open
    FROM agg
    JOIN triaged.incident i ON i.id = agg.inc_id
    LEFT JOIN cnt ON cnt.incident_id = agg.inc_id),
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
           resolve_at = calc.new_resolve_at, last_event_hash = lasth.hash, updated_at = now()
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
                                     calc.alert_count, calc.firing_count) AS payload)
  SELECT coalesce(array_agg(ROW(upd.kind, upd.number, upd.payload)::triaged.ingest_row
                            ORDER BY upd.id), '{}')
    INTO v_rows
    FROM upd;
  RETURN QUERY SELECT * FROM unnest(v_rows);
END $$;


-- ---------------------------------------------------------------------------
-- The batch statement (007's), its rows passed straight through when the
-- batch has no samples: collecting them into an array first (to look for a
-- fenced row before the samples go in) and unnesting it again cost ~4 us per
-- row, measured, for nothing when there are no samples.
CREATE OR REPLACE FUNCTION triaged.ingest_all_arrays(p_batch jsonb, p_ci_id bigint[], p_ci text[],
                                                     p_metric text[], p_ts timestamptz[],
                                                     p_value double precision[],
                                                     p_limit double precision[], p_offsets jsonb,
                                                     p_opts jsonb,
                                                     p_hours timestamptz[] DEFAULT NULL,
                                                     p_over_limit boolean DEFAULT NULL)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_rows triaged.ingest_row[];
BEGIN
  IF p_metric IS NULL THEN
    RETURN QUERY SELECT * FROM triaged.ingest(p_batch, p_offsets, p_opts);
    RETURN;
  END IF;
  SELECT coalesce(array_agg(r), '{}') INTO v_rows
    FROM triaged.ingest(p_batch, p_offsets, p_opts) r;
  RETURN QUERY SELECT * FROM unnest(v_rows);
  IF NOT EXISTS (SELECT 1 FROM unnest(v_rows) r WHERE r.kind = 'fenced') THEN
    RETURN QUERY SELECT * FROM triaged.ingest_capacity_arrays(p_ci_id, p_ci, p_metric, p_ts,
                                                              p_value, p_limit, p_opts,
                                                              p_hours, p_over_limit);
  END IF;
END $$;

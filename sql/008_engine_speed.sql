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

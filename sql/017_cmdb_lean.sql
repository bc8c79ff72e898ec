-- 017_cmdb_lean.sql — what binding and correlation add per alert, cut again
-- (issue 6's bar: under 5 us an alert on average; tests/bench/bench_cmdb.sh,
-- README "The CMDB at scale"), and incident_role_check no longer keeps rows
-- of incidents a tick routed alerts into. Same results as 003/010/014:
-- every published row and every stored state (test_cmdb_correlate_sql
-- compares them with 003's functions).
--
-- Measured before (pg_stat_statements with track = all; bench_cmdb.sh's mix:
-- 10,000 messages for 1,000 alerts on 100 CIs, ten batches, the first five
-- creating the alerts): ~45 of the ~67 ms the CMDB added were
-- _open_incidents, which described and routed every group of a batch --
-- also the groups whose CI already had its open incident, which routing
-- never answers (only a group whose CI is free is routed) and find-or-open
-- then found by key; ~8 ms _fix_roles, one index probe per cause link of the
-- incidents routed into, each time alerts were routed there.
--
-- What changes:
--   * _open_incidents first finds (and locks, in CI order, as 013's
--     _find_or_open does) the open incidents of the bound groups' CIs; those
--     groups are answered at once: no description, no routing. The others
--     go the way they went (descriptions, routing in two passes, find-or-
--     open, impacted services). A group is routed only when its CI has no
--     open incident, so the answers are the same; the groups found no
--     longer count as "upstream in the batch" for the second pass, which
--     changes nothing either (their incidents are open before the first).
--   * _fix_roles reads each incident's CI once, and probes only the cause
--     links (the others cannot change).
--   * _open_for_alerts (alerts leaving maintenance, from a tick or a batch)
--     checks the roles of the incidents it routed alerts into itself:
--     _route notes them in incident_role_check, and in a tick no later
--     _fix_roles ran in that transaction, so their rows stayed until a batch
--     touched the incident (or, for an incident closed meanwhile, until any
--     batch with bound incidents came): the leak. The alerts it routes
--     are symptoms at once now (as DESIGN.md says they are), not at the
--     next batch of their incident.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- find or open the groups' incidents (010's, the groups with an open
-- incident of their CI answered first)

CREATE OR REPLACE FUNCTION triaged._open_incidents(p_reqs triaged._group_req[])
RETURNS SETOF triaged._group_res
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan   -- arrays as constants (hashed, sized)
AS $$
DECLARE
  v_window interval;
  v_found  triaged._group_res[] := '{}';
  v_reqs   triaged._group_req[] := p_reqs;
  v_desc   triaged._ci_desc[];
  v_ups    triaged._req_up[];
  v_cis    bigint[];
  v_later  text[];
  v_now    triaged._group_req[];
  v_res    triaged._group_res[];
  v_r      triaged._group_res[];
BEGIN
  IF NOT EXISTS (SELECT 1 FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL) THEN
    RETURN QUERY SELECT * FROM triaged._find_or_open(p_reqs, '{}');
    RETURN;
  END IF;
  -- (017) the bound groups whose CI has an open incident: that incident,
  -- locked in CI order (as _find_or_open would); one that stops being open
  -- before the lock is granted is not returned, and its group goes on
  SELECT coalesce(array_agg(ROW(r.gkey, o.ci_id, o.resource, o.id, false, o.number)
                            ::triaged._group_res ORDER BY r.ci_id)
                    FILTER (WHERE o.id IS NOT NULL), '{}')
    INTO v_found
    FROM (SELECT * FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL ORDER BY r.ci_id) r
    LEFT JOIN LATERAL (
      SELECT i.id, i.ci_id, i.resource, i.number FROM triaged.incident i
       WHERE i.ci_id = r.ci_id AND i.status IN ('new', 'acknowledged')
         AND i.merged_into IS NULL
      OFFSET 0 FOR UPDATE OF i) o ON true;
  IF cardinality(v_found) = cardinality(p_reqs) THEN
    RETURN QUERY SELECT * FROM unnest(v_found);
    RETURN;
  END IF;
  v_res := v_found;
  IF cardinality(v_found) > 0 THEN
    v_reqs := ARRAY(SELECT r FROM unnest(p_reqs) r
                     WHERE r.gkey NOT IN (SELECT f.gkey FROM unnest(v_found) f));
    IF NOT EXISTS (SELECT 1 FROM unnest(v_reqs) r WHERE r.ci_id IS NOT NULL) THEN
      RETURN QUERY SELECT * FROM unnest(v_found)
                   UNION ALL SELECT * FROM triaged._find_or_open(v_reqs, '{}');
      RETURN;
    END IF;
  END IF;

  -- the others, as 010's: described, routed, found or opened
  v_window := coalesce(nullif(current_setting('triaged.correlation_window_ms', true), '')::float8,
                       600000) * interval '1 millisecond';
  v_desc := ARRAY(SELECT d FROM triaged._batch_desc(ARRAY(
                    SELECT r.ci_id FROM unnest(v_reqs) r WHERE r.ci_id IS NOT NULL)) d);
  SELECT coalesce(array_agg(ROW(r.gkey, r.ci_id, d.up)::triaged._req_up), '{}')
    INTO v_ups FROM unnest(v_reqs) r JOIN unnest(v_desc) d ON d.ci_id = r.ci_id;
  v_cis := ARRAY(SELECT u.ci_id FROM unnest(v_ups) u);
  SELECT coalesce(array_agg(DISTINCT u.gkey), '{}') INTO v_later
    FROM unnest(v_ups) u CROSS JOIN LATERAL unnest(u.up) x(ci)
   WHERE x.ci = ANY (v_cis);   -- (a constant: hashed)
  -- first the groups with no upstream CI among them, then the others
  FOR i IN 1..2 LOOP
    v_now := ARRAY(SELECT r FROM unnest(v_reqs) r
                    WHERE (r.gkey IN (SELECT l FROM unnest(v_later) l)) = (i = 2)
                    ORDER BY r.gkey);
    CONTINUE WHEN cardinality(v_now) = 0;
    v_r := triaged._route(v_now, v_ups, v_window);
    v_res := v_res || v_r;
    IF cardinality(v_r) > 0 THEN
      v_now := ARRAY(SELECT r FROM unnest(v_now) r
                      WHERE r.gkey NOT IN (SELECT x.gkey FROM unnest(v_r) x));
    END IF;
    IF cardinality(v_now) > 0 THEN
      v_r := ARRAY(SELECT x FROM triaged._find_or_open(v_now, v_desc) x);
      v_res := v_res || v_r;
      -- the services a new bound incident impacts (_find_or_open set its
      -- impact from them; it has no row yet: no ON CONFLICT)
      INSERT INTO triaged.incident_service (incident_id, service_id)
      SELECT DISTINCT x.incident_id, sv FROM unnest(v_r) x
        JOIN unnest(v_desc) d ON d.ci_id = x.ci_id
       CROSS JOIN LATERAL unnest(d.svc) sv
       WHERE x.opened AND sv IS NOT NULL ORDER BY 1, 2;
    END IF;
  END LOOP;
  RETURN QUERY SELECT * FROM unnest(v_res);
END $$;

-- ---------------------------------------------------------------------------
-- roles (014's, each incident's CI read once, the cause links only probed)

CREATE OR REPLACE FUNCTION triaged._fix_roles(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_ids bigint[] := p_ids;
  v_ci  bigint[];
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  IF coalesce(current_setting('triaged.rebound', true), '') = '' THEN
    IF NOT EXISTS (SELECT 1 FROM triaged.incident_role_check) THEN
      RETURN;
    END IF;
    -- (rows of closed incidents go too: those never reopen)
    WITH d AS (
      DELETE FROM triaged.incident_role_check c
       WHERE c.incident_id = ANY (p_ids)
          OR NOT EXISTS (SELECT 1 FROM triaged.incident i
                          WHERE i.id = c.incident_id AND i.status <> 'closed')
      RETURNING c.incident_id)
    SELECT array_agg(d.incident_id) FILTER (WHERE d.incident_id = ANY (p_ids)) INTO v_ids
      FROM d;
    IF v_ids IS NULL THEN
      RETURN;
    END IF;
  ELSE
    DELETE FROM triaged.incident_role_check c WHERE c.incident_id = ANY (p_ids);
  END IF;
  -- the bound ones with their CI (a probe each)
  SELECT coalesce(array_agg(i.id ORDER BY i.id), '{}'), coalesce(array_agg(i.ci_id ORDER BY i.id), '{}')
    INTO v_ids, v_ci
    FROM unnest(v_ids) x(id)
    CROSS JOIN LATERAL (SELECT i.id, i.ci_id FROM triaged.incident i
                         WHERE i.id = x.id AND i.ci_id IS NOT NULL) i;
  IF cardinality(v_ids) = 0 THEN
    RETURN;
  END IF;
  -- their cause links whose alert is on another CI: the links by key, the
  -- alert probed for the causes only (as joins, the plan may read every
  -- link or hash every alert when the statistics are those of a young
  -- database)
  UPDATE triaged.incident_alert ia SET role = 'symptom'
    FROM (SELECT l.incident_id, l.alert_id, x.ci_id
            FROM unnest(v_ids, v_ci) x(id, ci_id)
           CROSS JOIN LATERAL (SELECT c.incident_id, c.alert_id FROM triaged.incident_alert c
                                WHERE c.incident_id = x.id AND c.role = 'cause') l
           WHERE (SELECT a.ci_id FROM triaged.alert a WHERE a.id = l.alert_id)
                 IS DISTINCT FROM x.ci_id
          OFFSET 0) w
   WHERE ia.incident_id = w.incident_id AND ia.alert_id = w.alert_id;
END $$;

-- ---------------------------------------------------------------------------
-- alerts leaving maintenance (003's, their roles checked: see the header)

CREATE OR REPLACE FUNCTION triaged._open_for_alerts(p_ids bigint[], p_at timestamptz,
                                                    p_now timestamptz, p_actor text)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_reqs    triaged._group_req[];
  v_grp     triaged._group_res[];
  v_changes triaged._change[];
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  SELECT coalesce(array_agg(ROW(x.gkey, x.ci_id, x.resource, x.title, x.opened_at,
                                triaged.severity_of_rank(x.best))::triaged._group_req
                            ORDER BY x.gkey), '{}')
    INTO v_reqs
    FROM (SELECT DISTINCT ON (triaged._gkey(a.ci_id, a.resource))
                 triaged._gkey(a.ci_id, a.resource) AS gkey, a.ci_id, a.resource,
                 a.check_name || ' on ' || a.resource AS title,
                 min(coalesce(p_at, a.last_seen)) OVER w AS opened_at,
                 min(triaged.severity_rank(a.severity)) OVER w AS best
            FROM triaged.alert a WHERE a.id = ANY (p_ids)
          WINDOW w AS (PARTITION BY triaged._gkey(a.ci_id, a.resource))
           ORDER BY triaged._gkey(a.ci_id, a.resource), a.last_seen, a.fingerprint) x;
  SELECT coalesce(array_agg(r), '{}') INTO v_grp FROM triaged._open_incidents(v_reqs) r;
  WITH m AS (
    SELECT a.id, a.fingerprint, coalesce(p_at, a.last_seen) AS at, a.severity, g.incident_id
      FROM triaged.alert a JOIN unnest(v_grp) g ON g.gkey = triaged._gkey(a.ci_id, a.resource)
     WHERE a.id = ANY (p_ids)),
  ins AS (
    INSERT INTO triaged.incident_alert AS ia (incident_id, alert_id, role)
    SELECT m.incident_id, m.id, 'cause' FROM m ORDER BY m.incident_id, m.id
    ON CONFLICT (incident_id, alert_id) DO UPDATE SET attached_at = now())
  SELECT coalesce(array_agg(ROW(m.incident_id, 'attached', m.fingerprint, m.at, m.severity,
                                NULL)::triaged._change), '{}')
    INTO v_changes FROM m;
  -- (017) the incidents alerts were routed into (of another CI than their
  -- group's): their roles now, in this transaction (a tick has no later
  -- _fix_roles)
  PERFORM triaged._fix_roles(ARRAY(SELECT DISTINCT g.incident_id FROM unnest(v_grp) g
                                    WHERE NOT g.opened AND g.ci_id IS NOT NULL
                                      AND g.gkey <> triaged._gkey(g.ci_id, NULL)
                                    ORDER BY 1));
  SELECT v_changes || coalesce(array_agg(ROW(g.incident_id, 'opened', NULL, NULL, NULL, NULL)
                                         ::triaged._change), '{}')
    INTO v_changes FROM unnest(v_grp) g WHERE g.opened;
  RETURN QUERY SELECT * FROM triaged._finish_incidents(v_changes, p_now, p_actor);
END $$;

-- 017_cmdb_lean.sql — what binding and correlation add per alert, cut again
-- (issue 6's bar: under 5 us an alert on average; tests/bench/bench_cmdb.sh,
-- README "The CMDB at scale"), and incident_role_check no longer keeps rows
-- of incidents a tick routed alerts into. Same results as 003/010/014:
-- every published row and every stored state (test_cmdb_correlate_sql
-- compares them with 003's functions).
--
-- Measured before (pg_stat_statements with track = all and track_planning,
-- auto_explain for the plans; bench_cmdb.sh's mix: 10,000 messages for 1,000
-- alerts on 100 CIs, ten batches, the first five creating the alerts, 36 of
-- the 100 groups routed to an upstream incident): ~45 of the ~67 ms the CMDB
-- added were _open_incidents, which described and routed every group of a
-- batch -- also the groups whose CI already had its open incident, which
-- routing never answers (only a group whose CI is free is routed) and
-- find-or-open then found by key, by a probe per group that the statistics
-- of a young database (the benchmark's: incident analyzed empty) planned as
-- a scan of every open incident (006's GiST index read whole, ci_id a
-- filter); ~8 ms _fix_roles (three probes per cause link of the incidents
-- routed into). In the worst case (1,000 new alerts on unrelated CIs), the
-- correlation pass and the root-first order unnested ~23,000 upstream ids
-- each through LATERAL function scans (a tuplestore per list), and the
-- window's open incidents were read once to count them and again for
-- their CIs.
--
-- What changes:
--   * _open_incidents first finds (and locks, in CI order, as 013's
--     _find_or_open does) the open incidents of the bound groups' CIs, in
--     one statement over a constant array of CIs; those groups are answered
--     at once: no description, no routing. The others go the way they went
--     (descriptions, routing in two passes -- one when no group is upstream
--     of another --, find-or-open, impacted services). A group is routed
--     only when its CI has no open incident, so the answers are the same;
--     the groups found no longer count as "upstream in the batch" for the
--     second pass, which changes nothing either (their incidents are open
--     before the first).
--   * upstream lists are unnested in the select list (a ProjectSet, no
--     tuplestore: ~2x cheaper) for the root-first order, the impacted
--     services and correlation's pass; that pass counts the window's open
--     incidents and reads their CIs at once.
--   * _fix_roles reads each incident's CI once and the alerts of the cause
--     links only (the others cannot change), each table by its key whatever
--     the statistics, the wrong links found by hash joins of arrays and
--     changed row by row; _open_found looks the groups' open incidents up
--     by key the same way (with a young database's statistics both had
--     been planned as whole-index reads per group or per link).
--   * _open_for_alerts (alerts leaving maintenance, from a tick or a batch)
--     checks the roles of the incidents it routed alerts into itself:
--     _route notes them in incident_role_check, and in a tick no _fix_roles
--     ran after it, so their rows stayed until a batch touched the incident
--     (or, once it was closed, until a batch with bound incidents came): the
--     leak. The alerts it routes are symptoms at once now (as DESIGN.md
--     says), not from the next batch of their incident on.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- find or open the groups' incidents (010's, the groups with an open
-- incident of their CI answered first)

-- The bound groups of p_reqs whose CI has an open incident, answered with
-- it (opened false), locked in CI order (as 013's _find_or_open locks
-- them); one that stops being open before its lock is granted is not
-- returned. All the CIs in one statement, through the unique index of open
-- incidents by CI (incident_open_ci_key) whatever the statistics say: probed
-- group by group, or by a bitmap, a plan made with the statistics of a
-- young database read every open incident (006's GiST index read whole,
-- ci_id a filter: seen in bench_cmdb, ~30 us a group, and growing with the
-- dead rows a bitmap scan never marks); an index scan in CI order needs no
-- sort; the incidents found meet their groups in a hash join (a nested
-- loop, which the same statistics pick, compares every pair).
CREATE FUNCTION triaged._open_found(p_reqs triaged._group_req[])
RETURNS triaged._group_res[]
LANGUAGE sql
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_nestloop = off
AS $$
  SELECT coalesce(array_agg(ROW(r.gkey, o.ci_id, o.resource, o.id, false, o.number)
                            ::triaged._group_res ORDER BY o.ci_id), '{}')
    FROM (SELECT i.id, i.ci_id, i.resource, i.number FROM triaged.incident i
           WHERE i.ci_id = ANY (ARRAY(SELECT r.ci_id FROM unnest(p_reqs) r
                                       WHERE r.ci_id IS NOT NULL))
             AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
           ORDER BY i.ci_id FOR UPDATE OF i) o
    JOIN unnest(p_reqs) r ON r.ci_id = o.ci_id
$$;


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
  -- (017) the bound groups whose CI has an open incident: answered first
  v_found := triaged._open_found(p_reqs);
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
  -- (the lists unnested in the select list: see _correlate_locked)
  SELECT coalesce(array_agg(DISTINCT x.gkey), '{}') INTO v_later
    FROM (SELECT u.gkey, unnest(u.up) AS ci FROM unnest(v_ups) u) x
   WHERE x.ci = ANY (v_cis);   -- (a constant: hashed)
  -- first the groups with no upstream CI among them, then the others
  FOR i IN 1..2 LOOP
    IF cardinality(v_later) = 0 THEN
      EXIT WHEN i = 2;
      v_now := v_reqs;   -- (in key order already: the callers' order, kept above)
    ELSE
      v_now := ARRAY(SELECT r FROM unnest(v_reqs) r
                      WHERE (r.gkey IN (SELECT l FROM unnest(v_later) l)) = (i = 2)
                      ORDER BY r.gkey);
    END IF;
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
      SELECT DISTINCT y.incident_id, y.sv
        FROM (SELECT x.incident_id, unnest(d.svc) AS sv FROM unnest(v_r) x
                JOIN unnest(v_desc) d ON d.ci_id = x.ci_id
               WHERE x.opened) y   -- (the lists unnested in the select list)
       WHERE y.sv IS NOT NULL ORDER BY 1, 2;
    END IF;
  END LOOP;
  RETURN QUERY SELECT * FROM unnest(v_res);
END $$;

-- ---------------------------------------------------------------------------
-- roles (014's, each incident's CI read once, the alerts of the cause links
-- only, each table by its key)

CREATE OR REPLACE FUNCTION triaged._fix_roles(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off   -- (by key, whatever the statistics say: see below)
SET enable_sort = off
SET plan_cache_mode = force_custom_plan   -- (arrays as constants: hashed, sized)
AS $$
DECLARE
  v_ids  bigint[] := p_ids;
  v_ci   bigint[];
  v_tids tid[];
  v_li   bigint[];
  v_la   bigint[];
  v_aid  bigint[];
  v_aci  bigint[];
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
  -- the bound ones with their CI; their cause links whose alert is on
  -- another CI. Each table by its key whatever the statistics say (no
  -- sort: an index scan in key order is the only way to have the rows in
  -- that order), the rest by hash joins of arrays: with the statistics of
  -- a young database -- a table analyzed before its rows came, or with
  -- them rolled back -- a probe per link of alert.id went through
  -- alert_status_idx (status, id), read whole for each link, and a join
  -- read the alerts again for each link (bench_cmdb: 10-34 ms a batch
  -- instead of ~1)
  SELECT coalesce(array_agg(i.id), '{}'), coalesce(array_agg(i.ci_id), '{}')
    INTO v_ids, v_ci
    FROM (SELECT i.id, i.ci_id FROM triaged.incident i
           WHERE i.id = ANY (v_ids) AND i.ci_id IS NOT NULL ORDER BY i.id) i;
  IF cardinality(v_ids) = 0 THEN
    RETURN;
  END IF;
  -- their cause links (the row of each), and the CIs of those links' alerts
  SELECT array_agg(c.ctid), array_agg(c.incident_id), array_agg(c.alert_id)
    INTO v_tids, v_li, v_la
    FROM triaged.incident_alert c WHERE c.incident_id = ANY (v_ids) AND c.role = 'cause';
  IF v_la IS NULL THEN
    RETURN;
  END IF;
  SELECT array_agg(a.id), array_agg(a.ci_id) INTO v_aid, v_aci
    FROM (SELECT a.id, a.ci_id FROM triaged.alert a WHERE a.id = ANY (v_la) ORDER BY a.id) a;
  -- those on another CI than their incident, changed row by row (the
  -- arrays are constants here: hash joins, whatever their sizes)
  v_tids := ARRAY(
    SELECT l.tid
      FROM unnest(v_tids, v_li, v_la) l(tid, inc, alert)
      JOIN unnest(v_ids, v_ci) x(id, ci_id) ON x.id = l.inc
      JOIN unnest(v_aid, v_aci) a(id, ci_id) ON a.id = l.alert
     WHERE a.ci_id IS DISTINCT FROM x.ci_id);
  IF cardinality(v_tids) > 0 THEN
    UPDATE triaged.incident_alert ia SET role = 'symptom'
     WHERE ia.ctid = ANY (v_tids) AND ia.role = 'cause';
  END IF;
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

-- ---------------------------------------------------------------------------
-- correlation (014's; the pass over the window's open incidents unnests
-- their upstream lists in the select list)

CREATE OR REPLACE FUNCTION triaged._correlate_locked(p_ids bigint[], p_now timestamptz,
                                                     p_actor text, p_window interval,
                                                     p_many integer)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_custom_plan   -- arrays as constants (hashed, sized)
AS $$
DECLARE
  v_id     bigint;
  v_cur    record;
  v_up     bigint;
  v_d      bigint;
  v_cand   bigint[];
  v_merged bigint[] := '{}';
  v_targets bigint[] := '{}';
  v_surv   bigint[];
  v_events triaged._event_in[];
  v_lo     timestamptz;
  v_hi     timestamptz;
  v_o_id   bigint[];
  v_o_ci   bigint[];
  v_o_at   timestamptz[];
  v_nup    bigint;
  v_lack   boolean;
  v_limit  bigint;
  v_c      bigint;
  v_cset   triaged._open_up[];
  v_pairs  triaged._down_inc[];
  v_open   triaged._open_inc[];
  v_cis    bigint[];
  v_down   triaged._down_inc[];
  v_dn     bigint[];
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  -- one transaction at a time correlates (see 003)
  PERFORM pg_advisory_xact_lock(1953655137);
  SELECT coalesce(array_agg(i.id ORDER BY i.id), '{}'),
         coalesce(array_agg(i.ci_id ORDER BY i.id), '{}'),
         coalesce(array_agg(i.opened_at ORDER BY i.id), '{}'),
         min(i.opened_at) - p_window, max(i.opened_at) + p_window,
         coalesce(sum(cardinality(i.up_ci_ids)), 0), bool_or(i.up_ci_ids IS NULL)
    INTO v_o_id, v_o_ci, v_o_at, v_lo, v_hi, v_nup, v_lack
    FROM triaged.incident i
   WHERE i.id = ANY (p_ids) AND i.ci_id IS NOT NULL;
  IF cardinality(v_o_id) = 0 THEN
    RETURN;
  END IF;
  IF v_lack THEN   -- (an incident opened before 003)
    UPDATE triaged.incident i SET up_ci_ids = triaged._ci_up(i.ci_id)
     WHERE i.id = ANY (v_o_id) AND i.up_ci_ids IS NULL;
    SELECT coalesce(sum(cardinality(i.up_ci_ids)), 0) INTO v_nup
      FROM triaged.incident i WHERE i.id = ANY (v_o_id);
  END IF;

  -- The candidates: those with an open incident upstream (of a CI of their
  -- up_ci_ids) or downstream (whose up_ci_ids hold their CI) opened within
  -- their window. These incidents are open and opened within [v_lo, v_hi],
  -- so when the open incidents of that range are few (fewer than the
  -- upstream CIs to probe, and than _downstream's bound), one pass over
  -- their up_ci_ids answers both: the pairs (incident, upstream CI of it
  -- that has an open incident in the range).
  v_limit := least(v_nup, 1000 + 20 * cardinality(v_o_id));
  -- (017: their CIs read by the same pass that counts them)
  SELECT count(*), coalesce(array_agg(x.ci_id) FILTER (WHERE x.merged_into IS NULL
                                                        AND x.ci_id IS NOT NULL), '{}')
    INTO v_c, v_cis
    FROM (SELECT i.ci_id, i.merged_into FROM triaged.incident i
           WHERE i.status IN ('new', 'acknowledged') AND i.opened_at BETWEEN v_lo AND v_hi
           LIMIT v_limit + 1) x;
  IF v_c <= v_limit THEN
    -- (read from the table twice rather than gathered into an array of
    -- composites with their lists and unnested again: ~4x cheaper; v_cis,
    -- the CIs with an open incident in the range, is complete here)
    -- (017: the lists unnested in the select list, not by a LATERAL
    -- function scan, which copies each list into a tuplestore first: ~2x
    -- cheaper, ~23,000 ids for 1,000 new incidents)
    v_pairs := ARRAY(
      SELECT ROW(x.ci, x.id, x.opened_at)::triaged._down_inc
        FROM (SELECT d.id, d.opened_at, unnest(d.up_ci_ids) AS ci
                FROM triaged.incident d
               WHERE d.status IN ('new', 'acknowledged') AND d.opened_at BETWEEN v_lo AND v_hi
                 AND d.merged_into IS NULL AND d.ci_id IS NOT NULL) x
       WHERE x.ci = ANY (v_cis)   -- (constants: hashed)
         AND (x.id = ANY (v_o_id) OR x.ci = ANY (v_o_ci)));
    IF cardinality(v_pairs) = 0 THEN
      -- none of these incidents depends on an open incident of the range,
      -- and none of the range depends on them: no candidate, nothing to
      -- merge (the common case: alerts on unrelated CIs)
      RETURN;
    END IF;
    -- the open incidents of the upstream CIs of those pairs
    SELECT coalesce(array_agg(ROW(d.id, d.ci_id, d.opened_at, NULL)::triaged._open_up), '{}')
      INTO v_cset
      FROM triaged.incident d
     WHERE d.ci_id IN (SELECT DISTINCT p.up_ci FROM unnest(v_pairs) p)
       AND d.status IN ('new', 'acknowledged') AND d.opened_at BETWEEN v_lo AND v_hi
       AND d.merged_into IS NULL;
    v_down := ARRAY(SELECT p FROM unnest(v_pairs) p WHERE p.up_ci = ANY (v_o_ci));
    SELECT coalesce(array_agg(DISTINCT c.id ORDER BY c.id), '{}') INTO v_cand
      FROM (SELECT p.id
              FROM unnest(v_pairs) p JOIN unnest(v_cset) u ON u.ci_id = p.up_ci
             WHERE p.id = ANY (v_o_id) AND u.id <> p.id
               AND u.opened_at BETWEEN p.opened_at - p_window AND p.opened_at + p_window
            UNION ALL
            SELECT o.id
              FROM unnest(v_o_id, v_o_ci, v_o_at) o(id, ci_id, opened_at)
              JOIN unnest(v_down) d ON d.up_ci = o.ci_id
             WHERE d.id <> o.id
               AND d.opened_at BETWEEN o.opened_at - p_window AND o.opened_at + p_window) c;
  ELSE
    -- else: the open incidents of their upstream CIs (all those of the
    -- range, or a probe per upstream CI when that is fewer), and the open
    -- incidents downstream of their CIs (_downstream)
    v_open := triaged._open_window(v_lo, v_hi, v_nup);
    IF v_open IS NULL THEN
      v_open := ARRAY(
        SELECT ROW(u.id, u.ci_id, u.resource, u.number, u.opened_at)::triaged._open_inc
          FROM triaged.incident u
         WHERE u.ci_id = ANY (ARRAY(SELECT x.ci FROM triaged.incident i
                                     CROSS JOIN LATERAL unnest(i.up_ci_ids) x(ci)
                                     WHERE i.id = ANY (v_o_id)))
           AND u.status IN ('new', 'acknowledged') AND u.merged_into IS NULL
           AND u.opened_at BETWEEN v_lo AND v_hi);
    END IF;
    v_cis := ARRAY(SELECT u.ci_id FROM unnest(v_open) u);
    v_down := ARRAY(SELECT d FROM triaged._downstream(v_o_ci, v_lo, v_hi) d);
    SELECT coalesce(array_agg(DISTINCT c.id ORDER BY c.id), '{}') INTO v_cand
      FROM (SELECT o.id
              FROM triaged.incident o CROSS JOIN LATERAL unnest(o.up_ci_ids) x(ci)
              JOIN unnest(v_open) u ON u.ci_id = x.ci
             WHERE o.id = ANY (v_o_id) AND x.ci = ANY (v_cis)   -- (constants: hashed)
               AND u.id <> o.id
               AND u.opened_at BETWEEN o.opened_at - p_window AND o.opened_at + p_window
            UNION ALL
            SELECT o.id
              FROM unnest(v_o_id, v_o_ci, v_o_at) o(id, ci_id, opened_at)
              JOIN unnest(v_down) d ON d.up_ci = o.ci_id
             WHERE d.id <> o.id
               AND d.opened_at BETWEEN o.opened_at - p_window AND o.opened_at + p_window) c;
  END IF;

  FOREACH v_id IN ARRAY v_cand LOOP
    SELECT i.id, i.ci_id, i.up_ci_ids, i.opened_at INTO v_cur
      FROM triaged.incident i
     WHERE i.id = v_id AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL;
    CONTINUE WHEN NOT FOUND;
    v_up := NULL;
    IF cardinality(v_cur.up_ci_ids) > 0 THEN
      SELECT u.id INTO v_up
        FROM unnest(v_cur.up_ci_ids) WITH ORDINALITY x(ci, pos)
        CROSS JOIN LATERAL (
          SELECT u.id, u.opened_at FROM triaged.incident u
           WHERE u.ci_id = x.ci AND u.status IN ('new', 'acknowledged')
             AND u.merged_into IS NULL
           LIMIT 1) u
       WHERE u.id <> v_cur.id
         AND u.opened_at BETWEEN v_cur.opened_at - p_window AND v_cur.opened_at + p_window
       ORDER BY x.pos DESC LIMIT 1;
    END IF;
    IF v_up IS NOT NULL AND triaged._merge(v_cur.id, v_up, p_now, p_actor) THEN
      v_merged := v_merged || v_cur.id;
      v_targets := v_targets || v_up;
      CONTINUE;
    END IF;
    IF v_cur.opened_at - p_window >= v_lo AND v_cur.opened_at + p_window <= v_hi THEN
      v_dn := ARRAY(SELECT d.id FROM unnest(v_down) d WHERE d.up_ci = v_cur.ci_id);
    ELSE
      v_dn := ARRAY(SELECT d.id FROM triaged._downstream(ARRAY[v_cur.ci_id],
                                                         v_cur.opened_at - p_window,
                                                         v_cur.opened_at + p_window) d);
    END IF;
    FOR v_d IN SELECT d.id FROM triaged.incident d
                WHERE d.id IN (SELECT unnest(v_dn)) AND d.id <> v_cur.id
                  AND d.status IN ('new', 'acknowledged') AND d.merged_into IS NULL
                  AND d.opened_at BETWEEN v_cur.opened_at - p_window AND v_cur.opened_at + p_window
                ORDER BY d.id LOOP
      IF triaged._merge(v_d, v_cur.id, p_now, p_actor) THEN
        v_merged := v_merged || v_d;
        v_targets := v_targets || v_cur.id;
      END IF;
    END LOOP;
  END LOOP;

  -- the incidents that absorbed others, locked in id order (as 003)
  SELECT coalesce(array_agg(i.id ORDER BY i.id), '{}') INTO v_surv
    FROM (SELECT i.id FROM triaged.incident i
           WHERE i.id IN (SELECT DISTINCT unnest(v_targets))
             AND i.ci_id IS NOT NULL AND i.status IN ('new', 'acknowledged')
             AND i.merged_into IS NULL
           ORDER BY i.id FOR UPDATE) i;
  IF cardinality(v_surv) = 0 THEN
    RETURN QUERY SELECT * FROM triaged._incident_rows('incident.merged', v_merged);
    RETURN;
  END IF;
  INSERT INTO triaged.incident_service (incident_id, service_id)
  SELECT i.id, s FROM triaged.incident i CROSS JOIN LATERAL unnest(triaged._ci_svc(i.ci_id)) s
   WHERE i.id = ANY (v_surv) AND NOT EXISTS (SELECT 1 FROM triaged.incident_service x
                                              WHERE x.incident_id = i.id)
   ORDER BY 1, 2
  ON CONFLICT (incident_id, service_id) DO NOTHING;
  PERFORM triaged._fix_roles(v_surv);

  -- impact, priority and title, one UPDATE; then one event per change
  WITH calc AS MATERIALIZED (
    SELECT i.id, i.impact AS old_impact, i.priority AS old_priority, i.urgency,
           i.title AS old_title, x.svcs,
           least(i.impact, triaged._impact(x.svcs, p_many)) AS new_impact,
           coalesce((SELECT c.name || ': ' || a.check_name || ' on ' || a.resource
                       FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
                       JOIN triaged.ci c ON c.id = i.ci_id
                      WHERE ia.incident_id = i.id
                      ORDER BY a.fired_at NULLS LAST, a.first_seen, a.id LIMIT 1), i.title)
             AS new_title
      FROM triaged.incident i
     CROSS JOIN LATERAL (SELECT coalesce(array_agg(s.service_id), '{}') AS svcs
                           FROM triaged.incident_service s WHERE s.incident_id = i.id) x
     WHERE i.id = ANY (v_surv)),
  calc2 AS (
    SELECT calc.*, triaged._priority(calc.new_impact, calc.urgency) AS new_priority FROM calc),
  upd AS (
    UPDATE triaged.incident i
       SET impact = c.new_impact, priority = c.new_priority, title = c.new_title,
           updated_at = now()
      FROM calc2 c
     WHERE i.id = c.id
       AND (c.new_impact <> c.old_impact OR c.new_priority <> c.old_priority
            OR c.new_title <> c.old_title)
    RETURNING c.*)
  SELECT coalesce(array_agg(ev.e ORDER BY k.incident_id, k.seq), '{}')
    INTO v_events
    FROM (SELECT ROW(upd.id, 1, p_now, 'impact_changed',
                     jsonb_build_object('impact_from', upd.old_impact, 'impact_to', upd.new_impact,
                                        'urgency', upd.urgency,
                                        'priority_from', upd.old_priority,
                                        'priority_to', upd.new_priority,
                                        'services', (SELECT coalesce(jsonb_agg(sv.name ORDER BY sv.name), '[]')
                                                       FROM triaged.service sv
                                                      WHERE sv.id = ANY (upd.svcs))))::triaged._event_in AS e
            FROM upd WHERE upd.new_impact <> upd.old_impact OR upd.new_priority <> upd.old_priority
          UNION ALL
          SELECT ROW(upd.id, 2, p_now, 'title_changed',
                     jsonb_build_object('from', upd.old_title, 'to', upd.new_title))::triaged._event_in
            FROM upd WHERE upd.new_title <> upd.old_title) ev(e)
    CROSS JOIN LATERAL (SELECT (ev.e).incident_id, (ev.e).seq) k(incident_id, seq);
  PERFORM triaged._add_events(v_events, p_actor);

  RETURN QUERY SELECT * FROM triaged._incident_rows('incident.merged', v_merged);
  RETURN QUERY SELECT * FROM triaged._incident_rows('incident.updated', v_surv);
END $$;

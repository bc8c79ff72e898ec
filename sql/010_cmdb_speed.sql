-- 010_cmdb_speed.sql — the CMDB's SQL cost per new incident, cut where it was
-- measured to go (issue 6; tests/bench/bench_cmdb.sh, README "The CMDB at
-- scale"). Same semantics as 003 (DESIGN.md §4: correlation window, the
-- farthest upstream incident wins, merges with events on both sides,
-- impacted services transitive, priority from the matrix): the functions
-- here replace 003's.
--
-- Measured before (auto_explain, 1,000 new alerts on 1,000 unrelated CIs,
-- ~21 upstream CIs each): the GIN entries of incident.up_ci_ids (~21 a new
-- incident, ~7 us each: ~150 ms of the batch's ~250 ms of CMDB work), an
-- index probe per upstream CI per group, twice (_route before opening,
-- _correlate after its lock: ~40 ms each), plpgsql calls per row to read the
-- batch's CI descriptions (_ci_up, _ci_svc), and the descriptions' JSON
-- decoded element by element (_batch_ci_prepare: ~19 ms).
--
-- What changes:
--   * incident_up_idx (GIN on up_ci_ids) is dropped. up_ci_ids is still
--     stored (nearest first, as the daemon described the CI); the downstream
--     search ("which open incidents depend on X?") reads it from the open
--     incidents opened within the window, once a batch, or -- when those are
--     many for the batch -- walks ci_relation down from the batch's CIs and
--     probes the open incident of each CI reached (_downstream).
--   * the upstream searches ask for the open incidents of all the batch's
--     upstream CIs at once: one pass over the open incidents opened within
--     the window (_open_window) when they are fewer than the upstream CIs
--     to look up, else one probe per upstream CI through
--     incident_open_ci_key; then the upstream lists are filtered against
--     the CIs found (a hashed constant array).
--   * when the open incidents of the window are few, one pass over their
--     up_ci_ids answers both searches of _correlate at once.
--   * the batch's descriptions are read once a statement, set-based
--     (_batch_desc), not by a function call per row, and decoded by
--     jsonb_to_recordset.
--   * the foreign keys of alert.ci_id, incident.ci_id and incident_service
--     become statement triggers (see "references" below): a key check per
--     row cost ~13 us, and ~45 ms of such a batch.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

DROP INDEX triaged.incident_up_idx;
COMMENT ON COLUMN triaged.incident.up_ci_ids IS
  'upstream CIs of ci_id (transitively, nearest first) when it opened: an open '
  'incident whose up_ci_ids contain a CI is a candidate to merge into that CI''s '
  '(read from the open incidents of the window: not indexed)';

-- A CI as the batch described it (or as ci_relation says, when it did not).
CREATE TYPE triaged._ci_desc AS (ci_id bigint, up bigint[], svc bigint[]);
-- An open incident of a CI.
CREATE TYPE triaged._open_inc AS (
  id bigint, ci_id bigint, resource text, number text, opened_at timestamptz);
-- An open incident (id, opened_at) downstream of CI up_ci.
CREATE TYPE triaged._down_inc AS (up_ci bigint, id bigint, opened_at timestamptz);
-- An open incident with its upstream CIs.
CREATE TYPE triaged._open_up AS (id bigint, ci_id bigint, opened_at timestamptz, up bigint[]);

-- ---------------------------------------------------------------------------
-- the batch's CI descriptions

-- As 003's, with the lists decoded by jsonb_to_recordset (C, ~4 ms for
-- 1,000 segments of ~25 ids; a subquery over each list's elements took
-- ~23 ms), and without ON CONFLICT while the table is empty (the first
-- batch of a transaction). A batch with an element that is not an object,
-- or an "up" or "svc" that is not an array, takes 003's tolerant path (such
-- a list counts as not given).
CREATE OR REPLACE FUNCTION triaged._batch_ci_prepare(p_batch jsonb) RETURNS void
LANGUAGE plpgsql
SET client_min_messages = warning
AS $$
BEGIN
  IF p_batch IS NULL OR jsonb_typeof(p_batch) <> 'array'
     OR NOT jsonb_path_exists(p_batch, '$[*] ? (exists(@.up) || exists(@.svc))') THEN
    RETURN;
  END IF;
  CREATE TEMP TABLE IF NOT EXISTS td_batch_ci (
    ci_id bigint PRIMARY KEY, up bigint[], svc bigint[]) ON COMMIT DELETE ROWS;
  IF NOT jsonb_path_exists(p_batch, '$[*] ? (@.type() != "object"
         || (exists(@.up) && @.up.type() != "array" && @.up.type() != "null")
         || (exists(@.svc) && @.svc.type() != "array" && @.svc.type() != "null"))') THEN
    IF NOT EXISTS (SELECT 1 FROM pg_temp.td_batch_ci) THEN
      INSERT INTO pg_temp.td_batch_ci (ci_id, up, svc)
      SELECT DISTINCT ON (x.ci_id) x.ci_id, x.up, x.svc
        FROM jsonb_to_recordset(p_batch) AS x(ci_id bigint, up bigint[], svc bigint[])
       WHERE x.ci_id IS NOT NULL AND (x.up IS NOT NULL OR x.svc IS NOT NULL)
       ORDER BY x.ci_id;
    ELSE
      INSERT INTO pg_temp.td_batch_ci AS b (ci_id, up, svc)
      SELECT DISTINCT ON (x.ci_id) x.ci_id, x.up, x.svc
        FROM jsonb_to_recordset(p_batch) AS x(ci_id bigint, up bigint[], svc bigint[])
       WHERE x.ci_id IS NOT NULL AND (x.up IS NOT NULL OR x.svc IS NOT NULL)
       ORDER BY x.ci_id
      ON CONFLICT (ci_id) DO UPDATE SET up = excluded.up, svc = excluded.svc;
    END IF;
    RETURN;
  END IF;
  INSERT INTO pg_temp.td_batch_ci AS b (ci_id, up, svc)
  SELECT DISTINCT ON ((e->>'ci_id')::bigint) (e->>'ci_id')::bigint,
         CASE WHEN jsonb_typeof(e->'up') = 'array'
              THEN translate((e->'up')::text, '[]', '{}')::bigint[] END,
         CASE WHEN jsonb_typeof(e->'svc') = 'array'
              THEN translate((e->'svc')::text, '[]', '{}')::bigint[] END
    FROM jsonb_array_elements(p_batch) e
   WHERE jsonb_typeof(e) = 'object' AND e->>'ci_id' IS NOT NULL AND (e ? 'up' OR e ? 'svc')
   ORDER BY (e->>'ci_id')::bigint
  ON CONFLICT (ci_id) DO UPDATE SET up = excluded.up, svc = excluded.svc;
END $$;

-- The descriptions of the distinct CIs of p_cis: what the batch said
-- (pg_temp.td_batch_ci), else a walk of ci_relation (as _ci_up, _ci_svc).
CREATE FUNCTION triaged._batch_desc(p_cis bigint[]) RETURNS SETOF triaged._ci_desc
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF to_regclass('pg_temp.td_batch_ci') IS NOT NULL THEN
    RETURN QUERY
      SELECT c.ci, coalesce(b.up, triaged.ci_upstream(c.ci)),
             coalesce(b.svc, triaged.ci_impacted_services(c.ci))
        FROM (SELECT DISTINCT x.ci FROM unnest(p_cis) x(ci) WHERE x.ci IS NOT NULL) c
        LEFT JOIN pg_temp.td_batch_ci b ON b.ci_id = c.ci;
  ELSE
    RETURN QUERY
      SELECT c.ci, triaged.ci_upstream(c.ci), triaged.ci_impacted_services(c.ci)
        FROM (SELECT DISTINCT x.ci FROM unnest(p_cis) x(ci) WHERE x.ci IS NOT NULL) c;
  END IF;
END $$;

-- ---------------------------------------------------------------------------
-- open incidents near a set of CIs

-- The open bound incidents opened within [p_lo, p_hi], when the open
-- incidents of that range are at most p_limit (one pass over them, through
-- the index on status and opened_at); NULL when they are more (the caller
-- then probes its CIs one by one through the unique index of open
-- incidents on ci_id instead).
CREATE FUNCTION triaged._open_window(p_lo timestamptz, p_hi timestamptz, p_limit bigint)
RETURNS triaged._open_inc[]
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
  v_c bigint;
BEGIN
  SELECT count(*) INTO v_c
    FROM (SELECT 1 FROM triaged.incident i
           WHERE i.status IN ('new', 'acknowledged') AND i.opened_at BETWEEN p_lo AND p_hi
           LIMIT p_limit + 1) x;
  IF v_c > p_limit THEN
    RETURN NULL;
  END IF;
  RETURN ARRAY(
    SELECT ROW(i.id, i.ci_id, i.resource, i.number, i.opened_at)::triaged._open_inc
      FROM triaged.incident i
     WHERE i.status IN ('new', 'acknowledged') AND i.opened_at BETWEEN p_lo AND p_hi
       AND i.merged_into IS NULL AND i.ci_id IS NOT NULL);
END $$;

-- The open bound incidents opened within [p_lo, p_hi] that depend on one of
-- the CIs p_cis, one row per (CI, incident). When the open incidents of
-- that range are few for the batch (at most 1,000 + 20 per CI asked), from
-- their up_ci_ids, in one pass; else by walking ci_relation down from the
-- CIs (cycle-safe: a recursive UNION keeps each (CI, CI reached) once) and
-- probing the open incident of each CI reached -- unless the walk reaches
-- more CIs than there are open incidents in the range (a core switch with
-- thousands of dependents; several at once: a walk of a million), when the
-- pass over the open incidents is the cheaper again (a CI reached costs
-- ~10 us, an upstream CI of an open incident read ~0.3 us). (The walk reads the
-- graph as it is now, up_ci_ids as it was when each incident opened: they
-- differ only for a CMDB changed within the window.)
CREATE FUNCTION triaged._downstream(p_cis bigint[], p_lo timestamptz, p_hi timestamptz)
RETURNS SETOF triaged._down_inc
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_custom_plan   -- arrays as constants (hashed, sized)
AS $$
DECLARE
  v_limit integer := 1000 + 20 * coalesce(cardinality(p_cis), 0);
  v_c     bigint;
  v_up    bigint[];
  v_ci    bigint[];
BEGIN
  IF coalesce(cardinality(p_cis), 0) = 0 THEN
    RETURN;
  END IF;
  SELECT count(*) INTO v_c
    FROM (SELECT 1 FROM triaged.incident i
           WHERE i.status IN ('new', 'acknowledged') AND i.opened_at BETWEEN p_lo AND p_hi
           LIMIT 1000000) x;
  IF v_c = 0 THEN
    RETURN;
  END IF;
  IF v_c > v_limit THEN
    -- the walk, stopped when it passes its budget (a recursive query is
    -- evaluated only as far as it is read)
    WITH RECURSIVE w (up_ci, ci) AS (
      SELECT DISTINCT c.ci, c.ci FROM unnest(p_cis) c(ci) WHERE c.ci IS NOT NULL
      UNION
      SELECT w.up_ci, r.child_id FROM w JOIN triaged.ci_relation r ON r.parent_id = w.ci)
    SELECT array_agg(x.up_ci), array_agg(x.ci) INTO v_up, v_ci
      FROM (SELECT w.up_ci, w.ci FROM w LIMIT v_c + 1) x;
    IF cardinality(v_up) <= v_c THEN
      RETURN QUERY
        SELECT w.up_ci, d.id, d.opened_at
          FROM unnest(v_up, v_ci) w(up_ci, ci) CROSS JOIN LATERAL (
            SELECT d.id, d.opened_at FROM triaged.incident d
             WHERE d.ci_id = w.ci AND d.status IN ('new', 'acknowledged')
               AND d.merged_into IS NULL) d
         WHERE w.ci <> w.up_ci AND d.opened_at BETWEEN p_lo AND p_hi;
      RETURN;
    END IF;
  END IF;
  RETURN QUERY
    SELECT x.ci, d.id, d.opened_at
      FROM (SELECT d.id, d.opened_at, d.up_ci_ids FROM triaged.incident d
             WHERE d.status IN ('new', 'acknowledged') AND d.opened_at BETWEEN p_lo AND p_hi
               AND d.merged_into IS NULL AND d.ci_id IS NOT NULL
            OFFSET 0) d
     CROSS JOIN LATERAL unnest(d.up_ci_ids) x(ci)
     WHERE x.ci = ANY (p_cis);   -- (a constant: hashed)
END $$;

-- ---------------------------------------------------------------------------
-- find-or-open (003's, with the descriptions read once)

CREATE FUNCTION triaged._find_or_open(p_reqs triaged._group_req[], p_desc triaged._ci_desc[])
RETURNS SETOF triaged._group_res
LANGUAGE plpgsql AS $$
DECLARE
  v_new    triaged._group_res[];
  v_old    triaged._group_res[] := '{}';
  v_matrix smallint[] := triaged._matrix();
  v_many   integer := coalesce(nullif(current_setting('triaged.impact_many_services', true),
                                      '')::integer, 3);
BEGIN
  WITH ins AS (
    INSERT INTO triaged.incident AS i (title, status, priority, impact, urgency, severity,
                                       ci_id, resource, opened_at, up_ci_ids)
    SELECT coalesce(c.name || ': ', '') || r.title,
           'new', v_matrix[(k.impact - 1) * 3 + triaged.severity_urgency(r.severity)], k.impact,
           triaged.severity_urgency(r.severity), r.severity, r.ci_id, r.resource, r.opened_at,
           d.up
      FROM unnest(p_reqs) r
      JOIN unnest(p_desc) d ON d.ci_id = r.ci_id
      LEFT JOIN triaged.ci c ON c.id = r.ci_id
     CROSS JOIN LATERAL (
       SELECT (CASE WHEN count(*) = 0 THEN 3   -- as triaged._impact
                    ELSE greatest(1, min(sv.tier) - CASE WHEN count(*) >= v_many THEN 1 ELSE 0 END)
               END)::smallint AS impact
         FROM triaged.service sv WHERE sv.id = ANY (d.svc)) k
     WHERE r.ci_id IS NOT NULL
     ORDER BY r.ci_id
    ON CONFLICT (ci_id) WHERE ci_id IS NOT NULL AND status IN ('new', 'acknowledged')
                              AND merged_into IS NULL
    DO UPDATE SET updated_at = now() WHERE false
    RETURNING i.id, i.ci_id, i.resource, i.number)
  SELECT coalesce(array_agg(ROW(triaged._gkey(ins.ci_id, NULL), ins.ci_id, ins.resource,
                                ins.id, true, ins.number)::triaged._group_res), '{}')
    INTO v_new FROM ins;

  WITH ins AS (
    INSERT INTO triaged.incident AS i (title, status, priority, impact, urgency, severity,
                                       ci_id, resource, opened_at)
    SELECT r.title, 'new', triaged.severity_rank(r.severity), 3,
           triaged.severity_urgency(r.severity), r.severity, NULL, r.resource, r.opened_at
      FROM unnest(p_reqs) r WHERE r.ci_id IS NULL
     ORDER BY r.resource
    ON CONFLICT (resource) WHERE ci_id IS NULL AND status IN ('new', 'acknowledged')
                                 AND merged_into IS NULL
    DO UPDATE SET updated_at = now() WHERE false
    RETURNING i.id, i.resource, i.number)
  SELECT v_new || coalesce(array_agg(ROW(triaged._gkey(NULL, ins.resource), NULL, ins.resource,
                                         ins.id, true, ins.number)::triaged._group_res), '{}')
    INTO v_new FROM ins;

  IF cardinality(v_new) < cardinality(p_reqs) THEN
    SELECT coalesce(array_agg(ROW(m.gkey, o.ci_id, o.resource, o.id, false, o.number)
                              ::triaged._group_res), '{}')
      INTO v_old
      FROM (SELECT r.gkey FROM unnest(p_reqs) r
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

  IF cardinality(v_new) + cardinality(v_old) <> cardinality(p_reqs) THEN
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
      MESSAGE = format('triaged: find-or-open answered %s of %s groups (retry the batch)',
                       cardinality(v_new) + cardinality(v_old), cardinality(p_reqs));
  END IF;
  RETURN QUERY SELECT * FROM unnest(v_new || v_old);
END $$;

-- 003's signature, for any caller: the descriptions of its bound groups
CREATE OR REPLACE FUNCTION triaged._find_or_open(p_reqs triaged._group_req[])
RETURNS SETOF triaged._group_res
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY SELECT * FROM triaged._find_or_open(p_reqs, ARRAY(
    SELECT d FROM triaged._batch_desc(ARRAY(SELECT r.ci_id FROM unnest(p_reqs) r
                                             WHERE r.ci_id IS NOT NULL)) d));
END $$;

-- ---------------------------------------------------------------------------
-- routing to an upstream incident, set-based

-- As 003's: the groups of p_reqs whose CI has no open incident but an
-- upstream CI (p_ups) has one opened within p_window of the group: answered
-- with that incident (the farthest upstream one), locked and still open.
-- The open incidents of all the upstream CIs are asked for at once.
CREATE OR REPLACE FUNCTION triaged._route(p_reqs triaged._group_req[], p_ups triaged._req_up[],
                                          p_window interval)
RETURNS triaged._group_res[]
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_custom_plan   -- arrays as constants (hashed, sized)
AS $$
DECLARE
  v_res  triaged._group_res[];
  v_lo   timestamptz;
  v_hi   timestamptz;
  v_open triaged._open_inc[];
  v_cis  bigint[];
BEGIN
  SELECT min(r.opened_at) - p_window, max(r.opened_at) + p_window INTO v_lo, v_hi
    FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL;
  IF v_lo IS NULL THEN
    RETURN '{}';
  END IF;
  -- the open incidents of their upstream CIs within the window: all those
  -- of the window, or a probe per upstream CI when that is fewer
  v_open := triaged._open_window(v_lo, v_hi, coalesce(
                                 (SELECT sum(cardinality(a.up)) FROM unnest(p_ups) a), 0));
  IF v_open IS NULL THEN
    v_open := ARRAY(
      SELECT ROW(i.id, i.ci_id, i.resource, i.number, i.opened_at)::triaged._open_inc
        FROM triaged.incident i
       WHERE i.ci_id = ANY (ARRAY(SELECT x.ci FROM unnest(p_ups) a
                                   CROSS JOIN LATERAL unnest(a.up) x(ci)))
         AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
         AND i.opened_at BETWEEN v_lo AND v_hi);
  END IF;
  IF cardinality(v_open) = 0 THEN
    RETURN '{}';
  END IF;
  v_cis := ARRAY(SELECT u.ci_id FROM unnest(v_open) u);
  -- per group whose CI is free: the farthest upstream CI with an open
  -- incident within the window of the group
  SELECT coalesce(array_agg(ROW(z.gkey, z.ci_id, z.resource, z.id, false, z.number)
                            ::triaged._group_res ORDER BY z.id), '{}')
    INTO v_res
    FROM (SELECT DISTINCT ON (r.gkey) r.gkey, r.ci_id AS own_ci, u.ci_id, u.resource, u.id,
                 u.number
            FROM unnest(p_reqs) r
            JOIN unnest(p_ups) a ON a.gkey = r.gkey
           CROSS JOIN LATERAL unnest(a.up) WITH ORDINALITY x(ci, pos)
            JOIN unnest(v_open) u ON u.ci_id = x.ci
           WHERE x.ci = ANY (v_cis)   -- (first: a constant, hashed)
             AND u.opened_at BETWEEN r.opened_at - p_window AND r.opened_at + p_window
           ORDER BY r.gkey, x.pos DESC) z
   WHERE NOT EXISTS (SELECT 1 FROM triaged.incident o
                      WHERE o.ci_id = z.own_ci AND o.status IN ('new', 'acknowledged') AND o.merged_into IS NULL);
  IF cardinality(v_res) = 0 THEN
    RETURN v_res;
  END IF;
  -- lock them, then keep those still open (a tick may have resolved one)
  PERFORM 1 FROM triaged.incident i
    WHERE i.id IN (SELECT x.incident_id FROM unnest(v_res) x) ORDER BY i.id FOR UPDATE;
  SELECT coalesce(array_agg(x ORDER BY x.incident_id), '{}') INTO v_res
    FROM unnest(v_res) x JOIN triaged.incident i ON i.id = x.incident_id
   WHERE i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL;
  RETURN v_res;
END $$;

-- As 003's, with the batch's descriptions read once (upstream CIs for the
-- routing, services for incident_service and the new incidents' impact).
CREATE OR REPLACE FUNCTION triaged._open_incidents(p_reqs triaged._group_req[])
RETURNS SETOF triaged._group_res
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan   -- arrays as constants (hashed, sized)
AS $$
DECLARE
  v_window interval;
  v_cis    bigint[];
  v_desc   triaged._ci_desc[];
  v_ups    triaged._req_up[];
  v_later  text[];
  v_now    triaged._group_req[];
  v_res    triaged._group_res[] := '{}';
  v_r      triaged._group_res[];
BEGIN
  IF NOT EXISTS (SELECT 1 FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL) THEN
    RETURN QUERY SELECT * FROM triaged._find_or_open(p_reqs, '{}');
    RETURN;
  END IF;
  v_window := coalesce(nullif(current_setting('triaged.correlation_window_ms', true), '')::float8,
                       600000) * interval '1 millisecond';
  v_desc := ARRAY(SELECT d FROM triaged._batch_desc(ARRAY(
                    SELECT r.ci_id FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL)) d);
  SELECT coalesce(array_agg(ROW(r.gkey, r.ci_id, d.up)::triaged._req_up), '{}')
    INTO v_ups FROM unnest(p_reqs) r JOIN unnest(v_desc) d ON d.ci_id = r.ci_id;
  v_cis := ARRAY(SELECT u.ci_id FROM unnest(v_ups) u);
  SELECT coalesce(array_agg(DISTINCT u.gkey), '{}') INTO v_later
    FROM unnest(v_ups) u CROSS JOIN LATERAL unnest(u.up) x(ci)
   WHERE x.ci = ANY (v_cis);   -- (a constant: hashed)
  -- first the groups with no upstream CI among them, then the others
  FOR i IN 1..2 LOOP
    v_now := ARRAY(SELECT r FROM unnest(p_reqs) r
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
      -- impact from them; it has no row yet: no ON CONFLICT, whose
      -- speculative insertion costs more)
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
-- correlation

-- As 003's (see there), with the searches set-based: the candidates (an
-- open incident upstream or downstream within the window) from one
-- search over all upstream CIs and one _downstream over all the
-- incidents' CIs; the downstream incidents found are kept for the loop,
-- which asks again only for an incident whose window moved outside the
-- range searched (its opened_at moved earlier by a merge into it).
CREATE OR REPLACE FUNCTION triaged._correlate(p_ids bigint[], p_now timestamptz, p_actor text,
                                              p_window interval, p_many integer)
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
  SELECT count(*) INTO v_c
    FROM (SELECT 1 FROM triaged.incident i
           WHERE i.status IN ('new', 'acknowledged') AND i.opened_at BETWEEN v_lo AND v_hi
           LIMIT v_limit + 1) x;
  IF v_c <= v_limit THEN
    SELECT coalesce(array_agg(ROW(d.id, d.ci_id, d.opened_at, d.up_ci_ids)::triaged._open_up), '{}'),
           coalesce(array_agg(d.ci_id), '{}')
      INTO v_cset, v_cis
      FROM triaged.incident d
     WHERE d.status IN ('new', 'acknowledged') AND d.opened_at BETWEEN v_lo AND v_hi
       AND d.merged_into IS NULL AND d.ci_id IS NOT NULL;
    v_pairs := ARRAY(
      SELECT ROW(x.ci, d.id, d.opened_at)::triaged._down_inc
        FROM unnest(v_cset) d CROSS JOIN LATERAL unnest(d.up) x(ci)
       WHERE x.ci = ANY (v_cis));   -- (a constant: hashed)
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

-- ---------------------------------------------------------------------------
-- references to CIs and services, checked per statement
--
-- A bound alert or incident paid a foreign-key check on ci per row (a
-- trigger and a locking query each, ~13 us), and a new incident paid it
-- twice (the engine updates the rows it just inserted, and a key check on
-- UPDATE is repeated for rows of the same transaction); an impacted service
-- paid two more (incident, service). That was ~45 ms of a batch of 1,000
-- new incidents on unrelated CIs, and ~13 us an alert in a storm. As for
-- incident_alert and incident_event (001), the checks are now statement
-- triggers doing what the foreign keys did:
--   alert.ci_id, incident.ci_id -> ci (no action): the rows a statement
--     inserts have their distinct CIs looked up at once, without a row
--     lock (that lock, FOR KEY SHARE, was half the cost: a WAL record per
--     CI); a changed ci_id is checked per row (rare: a re-fire rebinding);
--     deleting a CI still referenced fails, after waiting for the writers
--     of alert and incident (SHARE lock: see ci_refs_delete); ids of CIs
--     never change;
--   incident_service.service_id -> service (cascade): the same check on
--     insert; deleting services deletes their rows (after the same wait);
--   incident_service.incident_id -> incident (cascade): its writers (the
--     engine) create or hold the incident locked, so, as for incident_alert
--     (001), no check; deleting or truncating incidents deletes the rows.

ALTER TABLE triaged.alert DROP CONSTRAINT alert_ci_id_fkey;
ALTER TABLE triaged.incident DROP CONSTRAINT incident_ci_id_fkey;
ALTER TABLE triaged.incident_service DROP CONSTRAINT incident_service_incident_id_fkey;
ALTER TABLE triaged.incident_service DROP CONSTRAINT incident_service_service_id_fkey;

-- An error naming p_table unless every id of p_ids (distinct) is in
-- triaged.ci (p_what = 'ci') or triaged.service. No row lock: a delete of
-- a CI or service first waits for the transactions writing the tables
-- that refer to it (SHARE lock, see ci_refs_delete), and a writer that
-- comes after it waits for its commit, then sees the row gone.
CREATE FUNCTION triaged._check_refs(p_what text, p_ids bigint[], p_table text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_n       bigint;
  v_missing bigint;
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  -- (a probe per id; the one missing is looked for only when one is)
  IF p_what = 'ci' THEN
    SELECT count(*) INTO v_n FROM triaged.ci c WHERE c.id = ANY (p_ids);
    IF v_n < cardinality(p_ids) THEN
      SELECT min(x.id) INTO v_missing FROM unnest(p_ids) x(id)
       WHERE NOT EXISTS (SELECT 1 FROM triaged.ci c WHERE c.id = x.id);
    END IF;
  ELSE
    SELECT count(*) INTO v_n FROM triaged.service s WHERE s.id = ANY (p_ids);
    IF v_n < cardinality(p_ids) THEN
      SELECT min(x.id) INTO v_missing FROM unnest(p_ids) x(id)
       WHERE NOT EXISTS (SELECT 1 FROM triaged.service s WHERE s.id = x.id);
    END IF;
  END IF;
  IF v_n < cardinality(p_ids) THEN
    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
      MESSAGE = format('insert or update on table "%s" violates its reference to %s: '
                       'no %s with id %s', p_table, p_what, p_what, v_missing);
  END IF;
END $$;

CREATE FUNCTION triaged.ci_refs_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM triaged._check_refs('ci', ARRAY(SELECT DISTINCT a.ci_id FROM added a
                                          WHERE a.ci_id IS NOT NULL ORDER BY 1), TG_TABLE_NAME);
  RETURN NULL;
END $$;
CREATE TRIGGER alert_ci_refs AFTER INSERT ON triaged.alert
  REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.ci_refs_insert();
CREATE TRIGGER incident_ci_refs AFTER INSERT ON triaged.incident
  REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.ci_refs_insert();

CREATE FUNCTION triaged.ci_refs_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM triaged._check_refs('ci', ARRAY[NEW.ci_id], TG_TABLE_NAME);
  RETURN NULL;
END $$;
CREATE TRIGGER alert_ci_refs_update AFTER UPDATE OF ci_id ON triaged.alert
  FOR EACH ROW WHEN (NEW.ci_id IS NOT NULL AND NEW.ci_id IS DISTINCT FROM OLD.ci_id)
  EXECUTE FUNCTION triaged.ci_refs_update();
CREATE TRIGGER incident_ci_refs_update AFTER UPDATE OF ci_id ON triaged.incident
  FOR EACH ROW WHEN (NEW.ci_id IS NOT NULL AND NEW.ci_id IS DISTINCT FROM OLD.ci_id)
  EXECUTE FUNCTION triaged.ci_refs_update();

-- deleting a CI that an alert or incident refers to fails (as the foreign
-- keys' NO ACTION did). The SHARE locks wait for every transaction writing
-- alerts or incidents (so the check sees what they wrote) and hold off new
-- writers until this one ends (they then see the CI gone): CIs are retired,
-- seldom deleted, so a delete may pause ingest for its transaction.
CREATE FUNCTION triaged.ci_refs_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint;
BEGIN
  LOCK TABLE triaged.alert, triaged.incident IN SHARE MODE;
  SELECT min(g.id) INTO v_id FROM gone g
   WHERE EXISTS (SELECT 1 FROM triaged.alert a WHERE a.ci_id = g.id)
      OR EXISTS (SELECT 1 FROM triaged.incident i WHERE i.ci_id = g.id);
  IF v_id IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
      MESSAGE = format('delete on table "ci" violates its references: CI %s is still '
                       'referenced from alert or incident', v_id);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER ci_refs_delete AFTER DELETE ON triaged.ci
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.ci_refs_delete();
CREATE FUNCTION triaged.ci_refs_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM triaged.alert a WHERE a.ci_id IS NOT NULL)
     OR EXISTS (SELECT 1 FROM triaged.incident i WHERE i.ci_id IS NOT NULL) THEN
    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
      MESSAGE = 'truncate of table "ci": alerts or incidents refer to CIs';
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER ci_refs_truncate AFTER TRUNCATE ON triaged.ci
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.ci_refs_truncate();
CREATE TRIGGER ci_keep_id BEFORE UPDATE OF id ON triaged.ci
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION triaged.keep_id();

CREATE FUNCTION triaged.incident_service_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM triaged._check_refs('service', ARRAY(SELECT DISTINCT a.service_id FROM added a
                                               ORDER BY 1), 'incident_service');
  RETURN NULL;
END $$;
CREATE TRIGGER incident_service_refs AFTER INSERT ON triaged.incident_service
  REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.incident_service_insert();
CREATE FUNCTION triaged.incident_service_keep() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
    MESSAGE = 'triaged.incident_service: rows are inserted or deleted, never re-pointed';
END $$;
CREATE TRIGGER incident_service_keep_ids BEFORE UPDATE OF incident_id, service_id
  ON triaged.incident_service
  FOR EACH ROW WHEN (OLD.incident_id IS DISTINCT FROM NEW.incident_id
                     OR OLD.service_id IS DISTINCT FROM NEW.service_id)
  EXECUTE FUNCTION triaged.incident_service_keep();

CREATE FUNCTION triaged.incident_service_cascade() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE triaged.incident_service;
  ELSIF TG_TABLE_NAME = 'incident' THEN
    DELETE FROM triaged.incident_service WHERE incident_id IN (SELECT g.id FROM gone g);
  ELSE
    LOCK TABLE triaged.incident_service IN SHARE MODE;   -- (as ci_refs_delete)
    DELETE FROM triaged.incident_service WHERE service_id IN (SELECT g.id FROM gone g);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER incident_service_delete AFTER DELETE ON triaged.incident
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.incident_service_cascade();
CREATE TRIGGER incident_service_truncate AFTER TRUNCATE ON triaged.incident
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.incident_service_cascade();
CREATE TRIGGER service_incident_service_delete AFTER DELETE ON triaged.service
  REFERENCING OLD TABLE AS gone
  FOR EACH STATEMENT EXECUTE FUNCTION triaged.incident_service_cascade();

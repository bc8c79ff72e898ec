-- 014_cmdb_post.sql — what binding and correlation add per alert, cut
-- where it was measured to go (issue 6's bar; tests/bench/bench_cmdb.sh,
-- README "The CMDB at scale"). Same results as 003/010: every published row
-- and every stored state (test_cmdb_correlate_sql compares them with 003's
-- functions).
--
-- Measured before (pg_stat_statements with track = all, 1,000 new alerts on
-- 1,000 unrelated CIs through ingest_arrays, the daemon's statement, ~64 ms
-- of CMDB work a batch): the descriptions (~28,000 numbers in JSON: read as
-- numeric by jsonb_in, ~10 ms, then each written out and read back as
-- bigint by _batch_ci_prepare, ~7 ms, into a temporary table whose commit
-- truncates it and rebuilds its index, ~1 ms), the correlation pass
-- (~17 ms, mostly an array of every open incident of the window with its
-- upstream list, built and unnested again), _fix_roles (~6 ms: three index
-- probes per incident, to find no alert to change), the rest as 010 left it
-- (impacted services ~11 ms, reference checks ~6 ms, the root-first order
-- in _open_incidents ~6 ms: see the README).
--
-- What changes:
--   * the daemon writes a CI's "up" and "svc" as PostgreSQL array literals
--     in JSON strings ("{3,1,7}"), which jsonb_in copies and array_in reads
--     as bigint directly; JSON arrays of numbers (SQL callers, an older
--     daemon) are still read. A list that is neither (a JSON object, a
--     number, a string starting with neither "{" nor "[") counts as not
--     given, as in 003; one that holds something else than integers is an
--     error, as a JSON array of such was.
--   * _batch_ci_prepare decodes nothing: it keeps the descriptions' text in
--     a transaction-local setting (triaged.batch_ci; no temporary table, so
--     no truncation at commit), and only the lists of the CIs asked for
--     (those of groups that may open an incident) are converted, when asked
--     (_batch_desc, _batch_known). A batch of duplicates converts nothing.
--   * _correlate_locked: the candidate search reads the window's open
--     incidents from the table (not through an array of composites), keeps
--     only the pairs that concern the batch's incidents, and returns at
--     once when there are none.
--   * _fix_roles only looks at incidents whose roles can be wrong: those an
--     alert was routed into (_route notes them in incident_role_check, so a
--     tick's routing is checked by the next batch that touches the incident,
--     as before), or all it is given when an alert changed CI in this
--     transaction (a trigger notes it).
--   * the reference checks look a CI up once a transaction (_check_refs):
--     a batch's new incidents are on the CIs of its new alerts.
--   * _route and _fix_roles probe by key where a join could hash a whole
--     table when its statistics are those of a young database.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- the batch's CI descriptions

-- A list of CI ids as jsonb_to_recordset gives a JSON value as text: an
-- array literal (the daemon's strings, "{3,1,7}", "{}"), or a JSON array
-- ("[3, 1, 7]"); NULL (not given) for anything else (a JSON object, a
-- number, a string that is not a list). Like a JSON array with an element
-- that is not an integer, a literal that is not a list of integers is an
-- error. (SQL and STABLE, as array_in is: inlined where it is used.)
CREATE FUNCTION triaged._id_list(p text) RETURNS bigint[]
LANGUAGE sql STABLE AS $$
  SELECT CASE left(p, 1)
           WHEN '{' THEN CASE WHEN left(p, 2) <> '{"' THEN p::bigint[] END
           WHEN '[' THEN translate(p, '[]', '{}')::bigint[]
         END
$$;

-- Keeps the batch's descriptions ({ci_id, up, svc} objects: the daemon's
-- $14 of ingest_arrays, or the segments of ingest()'s jsonb batch that carry
-- "up" or "svc") for the transaction, undecoded, in the setting
-- triaged.batch_ci. Within one transaction (a tick may call ingest twice) a
-- CI described again gets the newer description (the later one wins when
-- read).
CREATE OR REPLACE FUNCTION triaged._batch_ci_prepare(p_batch jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_new jsonb;
  v_old text;
BEGIN
  IF p_batch IS NULL OR jsonb_typeof(p_batch) <> 'array'
     OR NOT jsonb_path_exists(p_batch, '$[*] ? (exists(@.up) || exists(@.svc))') THEN
    RETURN;
  END IF;
  IF jsonb_typeof(p_batch->0) = 'object' AND p_batch->0 ? 'fp' THEN
    -- segments: only what describes a CI
    SELECT jsonb_agg(jsonb_build_object('ci_id', e->'ci_id', 'up', e->'up', 'svc', e->'svc'))
      INTO v_new
      FROM jsonb_array_elements(p_batch) e
     WHERE jsonb_typeof(e) = 'object' AND (e ? 'up' OR e ? 'svc');
  ELSE
    v_new := p_batch;
  END IF;
  v_old := current_setting('triaged.batch_ci', true);
  IF coalesce(v_old, '') <> '' THEN
    v_new := v_old::jsonb || v_new;
  END IF;
  PERFORM set_config('triaged.batch_ci', v_new::text, true);
END $$;

-- The descriptions the batch gave for the CIs of p_cis (those it described:
-- one row per CI, the latest description; a list not given is NULL). Only
-- these CIs' lists are converted (~1 us a list of 25; reading the text of
-- 1,000 descriptions ~4 us each).
CREATE FUNCTION triaged._batch_known(p_cis bigint[]) RETURNS SETOF triaged._ci_desc
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan   -- p_cis as a constant (hashed)
AS $$
DECLARE
  v text := current_setting('triaged.batch_ci', true);
BEGIN
  IF coalesce(v, '') = '' OR coalesce(cardinality(p_cis), 0) = 0 THEN
    RETURN;
  END IF;
  BEGIN
    RETURN QUERY
      SELECT DISTINCT ON (x.ci_id) x.ci_id, triaged._id_list(x.up), triaged._id_list(x.svc)
        FROM ROWS FROM (jsonb_to_recordset(v::jsonb) AS (ci_id bigint, up text, svc text))
               WITH ORDINALITY x(ci_id, up, svc, o)
       WHERE x.ci_id = ANY (p_cis) AND (x.up IS NOT NULL OR x.svc IS NOT NULL)
       ORDER BY x.ci_id, x.o DESC;
  EXCEPTION WHEN invalid_parameter_value THEN
    -- an element that is not an object: the others, one by one
    RETURN QUERY
      SELECT DISTINCT ON (e.ci) e.ci, triaged._id_list(e.up), triaged._id_list(e.svc)
        FROM (SELECT (t.j->>'ci_id')::bigint AS ci, t.j->>'up' AS up, t.j->>'svc' AS svc, t.o
                FROM jsonb_array_elements(v::jsonb) WITH ORDINALITY t(j, o)
               WHERE jsonb_typeof(t.j) = 'object' AND t.j->>'ci_id' IS NOT NULL
              OFFSET 0) e
       WHERE e.ci = ANY (p_cis) AND (e.up IS NOT NULL OR e.svc IS NOT NULL)
       ORDER BY e.ci, e.o DESC;
  END;
END $$;

-- The descriptions of the distinct CIs of p_cis: what the batch said, else
-- a walk of ci_relation (only for a list it did not give). (_batch_known's
-- query written in, not called: one set of rows less to copy.)
CREATE OR REPLACE FUNCTION triaged._batch_desc(p_cis bigint[]) RETURNS SETOF triaged._ci_desc
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan   -- p_cis as a constant (hashed)
AS $$
DECLARE
  v text := current_setting('triaged.batch_ci', true);
BEGIN
  IF coalesce(v, '') <> '' THEN
    BEGIN
      RETURN QUERY
        SELECT c.ci, coalesce(b.up, triaged.ci_upstream(c.ci)),
               coalesce(b.svc, triaged.ci_impacted_services(c.ci))
          FROM (SELECT DISTINCT x.ci FROM unnest(p_cis) x(ci) WHERE x.ci IS NOT NULL) c
          LEFT JOIN (
            SELECT DISTINCT ON (x.ci_id) x.ci_id, triaged._id_list(x.up) AS up,
                   triaged._id_list(x.svc) AS svc
              FROM ROWS FROM (jsonb_to_recordset(v::jsonb) AS (ci_id bigint, up text, svc text))
                     WITH ORDINALITY x(ci_id, up, svc, o)
             WHERE x.ci_id = ANY (p_cis) AND (x.up IS NOT NULL OR x.svc IS NOT NULL)
             ORDER BY x.ci_id, x.o DESC) b ON b.ci_id = c.ci;
      RETURN;
    EXCEPTION WHEN invalid_parameter_value THEN
      NULL;   -- (an element that is not an object: _batch_known's other way)
    END;
  END IF;
  RETURN QUERY
    SELECT c.ci, coalesce(b.up, triaged.ci_upstream(c.ci)),
           coalesce(b.svc, triaged.ci_impacted_services(c.ci))
      FROM (SELECT DISTINCT x.ci FROM unnest(p_cis) x(ci) WHERE x.ci IS NOT NULL) c
      LEFT JOIN triaged._batch_known(p_cis) b ON b.ci_id = c.ci;
END $$;

CREATE OR REPLACE FUNCTION triaged._ci_up(p_ci bigint) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN coalesce((SELECT b.up FROM triaged._batch_known(ARRAY[p_ci]) b),
                  triaged.ci_upstream(p_ci));
END $$;

CREATE OR REPLACE FUNCTION triaged._ci_svc(p_ci bigint) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN coalesce((SELECT b.svc FROM triaged._batch_known(ARRAY[p_ci]) b),
                  triaged.ci_impacted_services(p_ci));
END $$;

-- ---------------------------------------------------------------------------
-- roles

-- Incidents that alerts were routed into (by _route, in any transaction:
-- a tick's too) whose roles _fix_roles has not checked since. Rows live
-- from the routing to the next _fix_roles given the incident (in a batch:
-- the same transaction), or until a _fix_roles finds the incident closed.
CREATE TABLE triaged.incident_role_check (
  incident_id bigint PRIMARY KEY
);
COMMENT ON TABLE triaged.incident_role_check IS
  'incidents alerts of another CI were routed into, whose alert roles the engine has yet to check';

-- An alert that changes CI (a re-fire rebinds it) may be a cause in an
-- incident of its former CI: the transaction's _fix_roles then checks every
-- incident it is given, as 003's did.
CREATE FUNCTION triaged.alert_rebound() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('triaged.rebound', 'on', true);
  RETURN NULL;
END $$;
CREATE TRIGGER alert_rebound AFTER UPDATE OF ci_id ON triaged.alert
  FOR EACH ROW WHEN (OLD.ci_id IS DISTINCT FROM NEW.ci_id)
  EXECUTE FUNCTION triaged.alert_rebound();

-- As 003's (in a bound incident, an alert on another CI than the
-- incident's is a symptom), over the incidents of p_ids whose roles can be
-- wrong: an alert of another CI joins an incident as a cause only by
-- routing (_route), or by changing CI while in it; merges add symptoms.
-- Most batches route nothing and rebind nothing: one probe of an empty
-- table.
CREATE OR REPLACE FUNCTION triaged._fix_roles(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_ids bigint[] := p_ids;
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
  -- (the links by key, and probes for the causes only: as joins, the plan
  -- may read every link or hash every alert when the statistics are those
  -- of a young database)
  UPDATE triaged.incident_alert ia SET role = 'symptom'
   WHERE ia.incident_id = ANY (v_ids) AND ia.role = 'cause'
     AND (SELECT i.ci_id FROM triaged.incident i WHERE i.id = ia.incident_id) IS NOT NULL
     AND (SELECT a.ci_id FROM triaged.alert a WHERE a.id = ia.alert_id)
         IS DISTINCT FROM (SELECT i.ci_id FROM triaged.incident i WHERE i.id = ia.incident_id);
END $$;

-- ---------------------------------------------------------------------------
-- routing to an upstream incident (010's, noting the incidents it routes to)

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
   -- (a probe per group: as an anti-join, the plan may hash every open
   -- incident instead)
   WHERE (SELECT o.id FROM triaged.incident o
           WHERE o.ci_id = z.own_ci AND o.status IN ('new', 'acknowledged')
             AND o.merged_into IS NULL) IS NULL;
  IF cardinality(v_res) = 0 THEN
    RETURN v_res;
  END IF;
  -- lock them, then keep those still open (a tick may have resolved one)
  PERFORM 1 FROM triaged.incident i
    WHERE i.id IN (SELECT x.incident_id FROM unnest(v_res) x) ORDER BY i.id FOR UPDATE;
  SELECT coalesce(array_agg(x ORDER BY x.incident_id), '{}') INTO v_res
    FROM unnest(v_res) x
   WHERE (SELECT i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
            FROM triaged.incident i WHERE i.id = x.incident_id);   -- (a probe each: as a
                         -- join, the plan may hash the whole table when its statistics are
                         -- those of a young database)
  -- the caller links these groups' alerts to them as causes: _fix_roles
  -- has their roles to check
  INSERT INTO triaged.incident_role_check (incident_id)
  SELECT DISTINCT x.incident_id FROM unnest(v_res) x ORDER BY 1
  ON CONFLICT (incident_id) DO NOTHING;
  RETURN v_res;
END $$;


-- ---------------------------------------------------------------------------
-- correlation (010's, renamed by 012; see "What changes" above)

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
  SELECT count(*) INTO v_c
    FROM (SELECT 1 FROM triaged.incident i
           WHERE i.status IN ('new', 'acknowledged') AND i.opened_at BETWEEN v_lo AND v_hi
           LIMIT v_limit + 1) x;
  IF v_c <= v_limit THEN
    -- (read from the table twice rather than gathered into an array of
    -- composites with their lists and unnested again: ~4x cheaper)
    v_cis := ARRAY(SELECT d.ci_id FROM triaged.incident d
                    WHERE d.status IN ('new', 'acknowledged') AND d.opened_at BETWEEN v_lo AND v_hi
                      AND d.merged_into IS NULL AND d.ci_id IS NOT NULL);
    v_pairs := ARRAY(
      SELECT ROW(x.ci, d.id, d.opened_at)::triaged._down_inc
        FROM triaged.incident d CROSS JOIN LATERAL unnest(d.up_ci_ids) x(ci)
       WHERE d.status IN ('new', 'acknowledged') AND d.opened_at BETWEEN v_lo AND v_hi
         AND d.merged_into IS NULL AND d.ci_id IS NOT NULL
         AND x.ci = ANY (v_cis)   -- (constants: hashed)
         AND (d.id = ANY (v_o_id) OR x.ci = ANY (v_o_ci)));
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

-- ---------------------------------------------------------------------------
-- references to CIs, checked once a transaction

-- As 010's, but a CI found once in a transaction is not looked up again in
-- it (the setting triaged.ci_seen lists them): a batch's new incidents are
-- on CIs its new alerts were checked on moments before (~1,000 probes of
-- ~1.5 us for 1,000 new incidents on unrelated CIs). Sound because the
-- check runs after its table's insert, under that table's ROW EXCLUSIVE
-- lock, which a delete of a CI waits for (SHARE on alert and incident, see
-- ci_refs_delete) until this transaction ends; a rollback to a savepoint
-- takes the setting back with the rows.
CREATE OR REPLACE FUNCTION triaged._check_refs(p_what text, p_ids bigint[], p_table text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_n       bigint;
  v_missing bigint;
  v_seen    text;
  v_ids     bigint[] := p_ids;
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  -- (a probe per id; the one missing is looked for only when one is)
  IF p_what = 'ci' THEN
    v_seen := current_setting('triaged.ci_seen', true);
    IF coalesce(v_seen, '') <> '' THEN
      v_ids := ARRAY(SELECT unnest(p_ids) EXCEPT SELECT unnest(v_seen::bigint[]));
      IF cardinality(v_ids) = 0 THEN
        RETURN;
      END IF;
    END IF;
    SELECT count(*) INTO v_n FROM triaged.ci c WHERE c.id = ANY (v_ids);
    IF v_n < cardinality(v_ids) THEN
      SELECT min(x.id) INTO v_missing FROM unnest(v_ids) x(id)
       WHERE NOT EXISTS (SELECT 1 FROM triaged.ci c WHERE c.id = x.id);
    ELSE
      PERFORM set_config('triaged.ci_seen',
                         CASE WHEN coalesce(v_seen, '') = '' THEN v_ids::text
                              ELSE (v_seen::bigint[] || v_ids)::text END, true);
    END IF;
  ELSE
    SELECT count(*) INTO v_n FROM triaged.service s WHERE s.id = ANY (v_ids);
    IF v_n < cardinality(v_ids) THEN
      SELECT min(x.id) INTO v_missing FROM unnest(v_ids) x(id)
       WHERE NOT EXISTS (SELECT 1 FROM triaged.service s WHERE s.id = x.id);
    END IF;
  END IF;
  IF v_n < cardinality(v_ids) THEN
    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
      MESSAGE = format('insert or update on table "%s" violates its reference to %s: '
                       'no %s with id %s', p_table, p_what, p_what, v_missing);
  END IF;
END $$;

-- (010's, forgetting the CIs seen: see _check_refs)
CREATE OR REPLACE FUNCTION triaged.ci_refs_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  v_id bigint;
BEGIN
  LOCK TABLE triaged.alert, triaged.incident IN SHARE MODE;
  -- (a CI deleted here may be written again in this transaction: checked
  -- again from now on)
  PERFORM set_config('triaged.ci_seen', '', true);
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

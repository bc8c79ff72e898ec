-- 021_fixed.sql — the fixed cost of a batch (issues 3 and 5), same results
-- (DESIGN.md §3-§4; every published row, event, hash, stored state and
-- stats key as before: tests/integration/test_engine_fastpaths.sh and
-- test_engine_finish.sh compare them with the reference paths).
--
-- What a batch of ten new alerts paid before it did anything per alert
-- (~5 ms of backend CPU, bench_engine's grouped shape at 10, 50 and 200:
-- the intercept) was mostly statements: their executor start-up (plan
-- trees initialised, indexes opened, ordered aggregates' sorts set up),
-- plans made again at every call, CHECK constraints prepared per
-- modifying statement. Here:
--
-- 1. find-or-open (_find_or_open) of unbound groups only (no CI: the
--    common case) looks their open incidents up in one single-table
--    statement (resource = ANY, locked in resource order, 013's order for
--    unbound groups), not in 016's statement of two LATERAL probes, two
--    aggregates and FILTERs. While the incident table has no statistics
--    it is still planned at each call (018: no plan shape is right
--    without them -- see below), but planning it costs ~0.15 ms, not
--    ~0.45. Bound groups: 018's statement, unchanged.
--
-- Why the lookup cannot keep a plan made without statistics: on a table
-- never analysed, the probe of incident_open_resource_key (the partial
-- unique index of the open unbound incidents) and a whole scan of
-- incident_outage_idx (a GiST index whose predicate, merged_into IS NULL,
-- the lookup implies) cost the same (one page each), and PostgreSQL keeps
-- the GiST scan, custom plan or generic. A custom plan made at each call
-- is re-costed as the table grows; a generic one is kept: 016's 0.4 s a
-- batch. No rewording of the lookup separates the two (the index
-- predicates share merged_into IS NULL; an ORDER BY on the key is dropped
-- as redundant under the equality). Once the table has statistics
-- (autovacuum's first ANALYZE: 50 rows), 018's generic plan is kept.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- (021) find-or-open: 018's, with the lookup of unbound-only requests in
-- one single-table statement (see the header); the changes marked "(021)"
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
BEGIN
  -- (018) generic once the incident table has statistics, else custom
  IF (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'triaged.incident'::regclass) >= 10 THEN
    v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);
  END IF;
  IF NOT EXISTS (SELECT 1 FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL) THEN
    -- (021) unbound groups only: their open incidents by resource (the
    -- partial unique key), locked in resource order (013's), read once
    -- (MATERIALIZED: the lock runs once, in that order, whatever the join)
    WITH o AS MATERIALIZED (
      SELECT i.id, i.resource, i.number FROM triaged.incident i
       WHERE i.resource = ANY (ARRAY(SELECT r.resource FROM unnest(p_reqs) r))
         AND i.ci_id IS NULL AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
       ORDER BY i.resource
         FOR UPDATE OF i)
    SELECT coalesce(array_agg(ROW(r.gkey, NULL, r.resource, o.id, false, o.number)
                              ::triaged._group_res ORDER BY r.resource)
                      FILTER (WHERE o.id IS NOT NULL), '{}'),
           coalesce(array_agg(r ORDER BY r.resource) FILTER (WHERE o.id IS NULL), '{}'),
           0, count(*) FILTER (WHERE o.id IS NULL)
      INTO v_found, v_rest, v_nbound, v_nfree
      FROM unnest(p_reqs) r LEFT JOIN o ON o.resource = r.resource;
  ELSE
  -- (016, 018) both keys in one statement (bound groups first, by CI, then
  -- unbound ones, by resource: 013's lock order)
  SELECT coalesce(array_agg(ROW(r.gkey, coalesce(ob.ci_id, ou.ci_id),
                                coalesce(ob.resource, ou.resource), coalesce(ob.id, ou.id),
                                false, coalesce(ob.number, ou.number))::triaged._group_res
                            ORDER BY r.ci_id IS NULL, r.ci_id, r.resource)
                    FILTER (WHERE coalesce(ob.id, ou.id) IS NOT NULL), '{}'),
         coalesce(array_agg(r.req ORDER BY r.ci_id IS NULL, r.ci_id, r.resource)
                    FILTER (WHERE coalesce(ob.id, ou.id) IS NULL), '{}'),
         count(*) FILTER (WHERE ob.id IS NULL AND r.ci_id IS NOT NULL),
         count(*) FILTER (WHERE ou.id IS NULL AND r.ci_id IS NULL)
    INTO v_found, v_rest, v_nbound, v_nfree
    FROM (SELECT r AS req, r.gkey, r.ci_id, r.resource FROM unnest(p_reqs) r
           ORDER BY r.ci_id IS NULL, r.ci_id, r.resource) r
    LEFT JOIN LATERAL (
      SELECT i.id, i.ci_id, i.resource, i.number FROM triaged.incident i
       WHERE r.ci_id IS NOT NULL
         AND i.ci_id = r.ci_id AND i.status IN ('new', 'acknowledged')
         AND i.merged_into IS NULL
      OFFSET 0 FOR UPDATE OF i) ob ON true
    LEFT JOIN LATERAL (
      SELECT i.id, i.ci_id, i.resource, i.number FROM triaged.incident i
       WHERE r.ci_id IS NULL
         AND i.resource = r.resource AND i.ci_id IS NULL
         AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
      OFFSET 0 FOR UPDATE OF i) ou ON true;
  END IF;
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

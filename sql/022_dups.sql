-- 022_dups.sql — a duplicate for less in PostgreSQL (issue 5's HTTP
-- ratio, issue 3's storm), same results (DESIGN.md §3-§4; every published
-- row, stored state and stats key as before: tests/integration/
-- test_engine_fastpaths.sh compares them with the jsonb statement's).
--
-- 019's lean path looked the batch's known alerts up (one = ANY probe of
-- the fingerprint index, the fingerprints, row versions and ids gathered
-- into three arrays, and a count of the distinct fingerprints), then
-- updated them by row version (the three arrays unnested again and hash
-- joined with the segments). A batch of duplicates paid both passes (the
-- look-up ~0.2 ms of a batch of 100).
--
-- Now one UPDATE finds and updates them: the segments, unnested in its
-- target list and sorted by fingerprint, each fetch their alert by the
-- row version a subquery probes by fingerprint (a nested loop in
-- fingerprint order: the same rows locked in the same order as 019's),
-- and its WHERE is 019's (a fingerprint's only segment: a window's count
-- over the sort the UPDATE needs anyway, instead of 019's count(DISTINCT)
-- and hashed subplan). A row changed by another transaction is re-read
-- under its lock (READ COMMITTED) and the WHERE re-checked on its newest
-- version, as before; a fingerprint another transaction creates meanwhile
-- is not seen here (not yet committed), so it is new or, once committed,
-- known to the look-up below: 019's cases, handled as there. The plan has
-- no other way to the alerts (see the UPDATE), and is made once a session.
--
-- When every segment was applied (a batch of duplicates) that is all:
-- every fingerprint has one segment (single), lean is all true, rest
-- empty. Otherwise positions are marked from the UPDATE's answer (no join)
-- and one statement probes the segments not applied (their known alerts,
-- in position order, are rest: step 0 locks them) and counts the distinct
-- fingerprints (single).
--
-- A batch of new alerts only would pay the UPDATE's probes for nothing
-- and then probe again (+0.8 ms a batch of 100): when its first
-- fingerprint is new (a storm's first sight; bench_http's new alerts are
-- 1 in 10) the batch's known alerts are looked for first, as in 019, and
-- when there are none that is all; else the UPDATE runs as above. (Costs
-- and what was measured: the README's benchmark section, sql/022.)
--
-- The answers are 019's: lean NULL when no fingerprint of the batch is
-- known, else lean[i] = segment i applied; rest, nlean and single as
-- there.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

CREATE OR REPLACE FUNCTION triaged._count_lean(
    p_fp text[], p_ci_id bigint[], p_summary text[], p_labels jsonb[], p_severity text[],
    p_status text[], p_n bigint[], p_first timestamptz[], p_last timestamptz[],
    OUT lean boolean[], OUT rest text[], OUT nlean integer, OUT single boolean)
LANGUAGE plpgsql
-- the UPDATE probes the index segment by segment in fingerprint order
-- (the lock order), whatever the batch's size; the caller has
-- enable_seqscan off (_ingest_batch). Plans made once per session: a
-- custom plan, costed with the batch's size, looks cheaper than the
-- generic one (costed with 1,000 positions) and would be made again at
-- every call
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  v_done  integer[];
  v_lean  boolean[];
  v_o     integer;
  v_none  boolean;
  v_n     integer := coalesce(cardinality(p_fp), 0);
BEGIN
  IF v_n = 0 THEN
    rest := '{}';
    nlean := 0;
    single := true;
    RETURN;
  END IF;
  -- a batch whose first fingerprint is new is most likely new alerts only
  -- (a storm's first sight): its known alerts are looked for first, and
  -- when there are none, that is all (019's cost)
  IF NOT EXISTS (SELECT 1 FROM triaged.alert a WHERE a.fingerprint = p_fp[1]) THEN
    SELECT NOT EXISTS (SELECT 1 FROM triaged.alert a WHERE a.fingerprint = ANY (p_fp)),
           (SELECT count(DISTINCT f.fp) FROM unnest(p_fp) f(fp)) = v_n
      INTO v_none, single;
    IF v_none THEN
      rest := '{}';
      nlean := 0;
      RETURN;
    END IF;
  END IF;
  -- 019's UPDATE (013's 'count' of a segment of the alert's status), the
  -- alert's row version found in the statement (a probe of the fingerprint
  -- index for each segment, in fingerprint order: the TID scan's subquery)
  -- rather than by a look-up before; a fingerprint's only segment (c = 1:
  -- the others are left to the classification). The plan cannot reach the
  -- alerts another way: the row is fetched by its version only, and the
  -- status test is no index condition (IS TRUE). Joined by fingerprint
  -- instead (~1.5 µs a segment less), a plan made on a nearly empty table
  -- scanned the fingerprint index whole for the outer side, or probed
  -- alert_status_idx by status with the fingerprint as a filter: every
  -- segment then read every firing alert (bench_http: 442 µs a segment)
  WITH u AS (
    UPDATE triaged.alert a
       SET occurrences = a.occurrences + k.n,
           first_seen = CASE WHEN k.status = 'firing' THEN least(a.first_seen, k."first")
                             ELSE a.first_seen END,
           labels = CASE WHEN k."last" >= a.last_seen THEN k.labels ELSE a.labels END,
           summary = CASE WHEN k."last" >= a.last_seen THEN coalesce(k.summary, a.summary)
                          ELSE a.summary END,
           last_seen = greatest(a.last_seen, k."last"),
           updated_at = now()
      FROM (SELECT j.fp, j.ci_id, j.summary, coalesce(j.labels, '{}'::jsonb) AS labels,
                   j.severity, j.status, CASE WHEN j.status = 'resolved' THEN 0 ELSE j.n END AS n,
                   j."first", j."last", j.o::integer AS o,
                   count(*) OVER (PARTITION BY j.fp) AS c
              -- (the arrays unnested in the target list, in step: no
              -- tuplestore of their rows, as a FROM's unnest() writes and
              -- reads back; ~1 µs a segment. Same lengths: _ingest_batch
              -- checked them)
              FROM (SELECT unnest(p_fp) AS fp, unnest(p_ci_id) AS ci_id,
                           unnest(p_summary) AS summary, unnest(p_labels) AS labels,
                           unnest(p_severity) AS severity, unnest(p_status) AS status,
                           unnest(p_n) AS n, unnest(p_first) AS "first",
                           unnest(p_last) AS "last", generate_series(1, v_n) AS o) j
             ORDER BY j.fp) k
     WHERE k.c = 1
       AND a.ctid = (SELECT x.ctid FROM triaged.alert x WHERE x.fingerprint = k.fp)
       AND (a.status = k.status) IS TRUE
       AND (k.status = 'resolved' OR (a.severity = k.severity AND k."first" >= a.fired_at))
       AND NOT a.suppressed
       AND a.ci_id IS NOT DISTINCT FROM k.ci_id
    RETURNING k.o)
  SELECT coalesce(array_agg(u.o), '{}') INTO v_done FROM u;
  nlean := cardinality(v_done);
  IF nlean = v_n THEN   -- (all applied: a batch of duplicates, one segment each)
    lean := array_fill(true, ARRAY[v_n]);
    rest := '{}';
    single := true;
    RETURN;
  END IF;
  -- (some not applied: which, by position, and the known alerts of the
  -- others, in position order, each probed once; in one statement)
  v_lean := array_fill(false, ARRAY[v_n]);
  FOREACH v_o IN ARRAY v_done LOOP
    v_lean[v_o] := true;
  END LOOP;
  SELECT (SELECT count(DISTINCT f.fp) FROM unnest(p_fp) f(fp)) = v_n,
         coalesce(array_agg(j.fp ORDER BY j.o)
                    FILTER (WHERE EXISTS (SELECT 1 FROM triaged.alert a WHERE a.fingerprint = j.fp)),
                  '{}')
    INTO single, rest
    FROM unnest(p_fp) WITH ORDINALITY j(fp, o)
   WHERE NOT v_lean[j.o];
  IF nlean > 0 OR cardinality(rest) > 0 THEN
    lean := v_lean;   -- (019: NULL when none of the batch's alerts is known)
  END IF;
END $$;

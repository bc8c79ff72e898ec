-- 018_lean_dups.sql — duplicates by a lean path (issue 5's HTTP ratio,
-- issue 3's small batches), same results (DESIGN.md §3-§4; every published
-- row, event, hash and stats key as before: tests/integration/
-- test_engine_fastpaths.sh compares them with the jsonb statement's).
--
-- A duplicate (a message of an alert that fires, or stays resolved, as
-- stored) changes four columns of its alert row and nothing else: no
-- history, no incident, no published row. Before 018 each one paid its
-- share of step 0 (the lock of the batch's known alerts), of the
-- classification (one wide statement over every segment) and of the
-- counting UPDATE by row version.
--
-- 1. Now _count_lean, before step 0, looks the batch's known alerts up
--    (one = ANY probe, no lock: a batch of new alerts stops there, and
--    step 0 then has nothing to lock) and applies the segments that are
--    certainly pure counts by one UPDATE, by the row version looked up,
--    whose WHERE restates 013's 'count' conditions against the row (the
--    only segment of its fingerprint in the batch; the alert with the
--    segment's status and, firing, its severity and a firing start not
--    after the segment's first time) and leaves out what the
--    classification must see: alerts in maintenance (suppressed) and
--    segments naming another CI than their alert's. The SET is 013's for
--    a 'count' of the same status (occurrences added, the newest message's
--    labels and summary, first_seen and last_seen widened). What it did
--    not apply goes through steps 0-4 as before, step 0 locking only the
--    other known alerts; a batch of duplicates only runs no step 0 and no
--    classification at all.
-- 2. find-or-open's lookup keeps a generic plan once the incident table
--    has statistics (planned at each call before: ~0.3-0.6 ms a batch
--    that adds alerts), and the end of batch's lock of its incidents keeps
--    one always (a probe of the primary key; re-planned at each call
--    before, ~0.1 ms).
--
-- Locks: the UPDATE takes its rows in fingerprint order (its segments
-- sorted, each fetched by row version), step 0 then the other known
-- alerts in fingerprint order: two ascending runs instead of one. A row
-- another transaction holds is waited for; a row changed since the lookup
-- is re-read under its lock (READ COMMITTED) and the WHERE re-checked on
-- its newest version: applied if still a pure count, else left to step 0
-- and the classification (deleted: taken for new, as step 0 would). A
-- fingerprint another transaction creates after the lookup is taken for
-- new, its INSERT fails and the row-by-row path takes it (002's handling
-- of that race, which step 0 had too). Lanes of one instance never share
-- alerts (pipeline.c: by partition, else by resource), two instances'
-- batches of one partition are serialised by its kafka_offset row's lock
-- before any alert is touched, and a deadlock is retried by the daemon
-- like any error.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- (018) the lean path: the batch's pure counts applied by one UPDATE.
-- Returns which segments it applied (lean[i]: segment i, by position; NULL
-- when none), the fingerprints of the others whose alert it found (rest,
-- in position order: step 0 locks those), how many it applied (nlean), and
-- whether every fingerprint has one segment (single). Called by
-- _ingest_batch after the segments' checks (it relies on them), under its
-- settings (enable_seqscan off).
CREATE FUNCTION triaged._count_lean(
    p_fp text[], p_ci_id bigint[], p_summary text[], p_labels jsonb[], p_severity text[],
    p_status text[], p_n bigint[], p_first timestamptz[], p_last timestamptz[],
    OUT lean boolean[], OUT rest text[], OUT nlean integer, OUT single boolean)
LANGUAGE plpgsql
AS $$
DECLARE
  v_kfp  text[];
  v_ktid tid[];
  v_kid  bigint[];
BEGIN
  single := (SELECT count(DISTINCT f.fp) FROM unnest(p_fp) f(fp))
            = coalesce(cardinality(p_fp), 0);
  -- the batch's known alerts, looked up once, without a lock (a batch of
  -- new alerts stops here: nothing to apply, and step 0 nothing to lock)
  SELECT coalesce(array_agg(a.fingerprint), '{}'), coalesce(array_agg(a.ctid), '{}'),
         coalesce(array_agg(a.id), '{}')
    INTO v_kfp, v_ktid, v_kid
    FROM triaged.alert a
   WHERE a.fingerprint = ANY (p_fp);
  IF cardinality(v_kfp) = 0 THEN
    rest := '{}';
    nlean := 0;
    RETURN;
  END IF;
  WITH k AS (
    SELECT j.fp, j.ci_id, j.summary, coalesce(j.labels, '{}'::jsonb) AS labels, j.severity,
           j.status, CASE WHEN j.status = 'resolved' THEN 0 ELSE j.n END AS n, j."first",
           j."last", j.o::integer AS o, x.tid, x.kid,
           (single OR j.fp NOT IN (SELECT f.fp FROM unnest(p_fp) f(fp)
                                    GROUP BY f.fp HAVING count(*) > 1)) AS one
      FROM unnest(p_fp, p_ci_id, p_summary, p_labels, p_severity, p_status, p_n, p_first,
                  p_last)
             WITH ORDINALITY j(fp, ci_id, summary, labels, severity, status, n, "first",
                               "last", o)
      JOIN unnest(v_kfp, v_ktid, v_kid) x(fp, tid, kid) ON x.fp = j.fp
     ORDER BY j.fp),
  u AS (
    -- 013's 'count' of a segment of the alert's status (same = true): its
    -- UPDATE, by the row version looked up rather than locked first. A row
    -- changed since is re-read under its lock (READ COMMITTED) and this
    -- WHERE re-checked on its newest version: not applied here unless still
    -- a pure count (step 0 and the classification take it)
    UPDATE triaged.alert a
       SET occurrences = a.occurrences + k.n,
           first_seen = CASE WHEN k.status = 'firing' THEN least(a.first_seen, k."first")
                             ELSE a.first_seen END,
           labels = CASE WHEN k."last" >= a.last_seen THEN k.labels ELSE a.labels END,
           summary = CASE WHEN k."last" >= a.last_seen THEN coalesce(k.summary, a.summary)
                          ELSE a.summary END,
           last_seen = greatest(a.last_seen, k."last"),
           updated_at = now()
      FROM k
     WHERE k.one AND a.ctid = k.tid AND a.id = k.kid
       AND a.status = k.status
       -- firing: same severity, not older than the firing start (013's
       -- 'older' and its fired_at IS NULL case stay with the classification)
       AND (k.status = 'resolved' OR (a.severity = k.severity AND k."first" >= a.fired_at))
       AND NOT a.suppressed
       AND a.ci_id IS NOT DISTINCT FROM k.ci_id
    RETURNING k.o)
  -- (rest: the known alerts' segments not applied, in position order)
  SELECT array_agg(u.o IS NOT NULL ORDER BY g.o),
         coalesce(array_agg(k.fp ORDER BY g.o) FILTER (WHERE u.o IS NULL AND k.o IS NOT NULL),
                  '{}'),
         count(u.o)
    INTO lean, rest, nlean
    FROM generate_series(1, cardinality(p_fp)) g(o)
    LEFT JOIN k ON k.o = g.o
    LEFT JOIN u ON u.o = g.o;
END $$;


-- ---------------------------------------------------------------------------
-- _ingest_batch: 016's (see there and 013's), the lean path first: steps 0
-- and 1 see only the segments it did not apply, and are skipped when it
-- applied them all. Each change marked "(018)".
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
  v_nlinked   bigint;
  v_changes   triaged._change[] := '{}';
  v_loop      triaged._loop_result;
  v_opened    integer := 0;
  v_inc       triaged.ingest_row[];
  v_post      triaged.ingest_row[] := '{}';
  v_plain     text[];
  v_unsup     bigint[];
  v_corr      bigint[];
  v_older     triaged._older[];
  v_delta     triaged._count_delta[] := '{}';
  v_recount   bigint[] := '{}';
  v_loopids   bigint[];
  v_loops0    text[];
  v_bound     boolean;
  v_single    boolean;
  v_lean      boolean[];   -- (018) segment i was applied by the lean path
  v_nlean     integer;
  v_rest      text[];      -- (018) the known alerts of the other segments
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
  PERFORM set_config('triaged.priority_matrix', coalesce(p_opts->>'priority_matrix', ''), true);
  PERFORM set_config('triaged.correlation_window_ms',
                     coalesce(p_opts->>'correlation_window_ms', ''), true);
  PERFORM set_config('triaged.impact_many_services',
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
  PERFORM set_config('triaged.counts_deferred', 'on', true);

  -- (018) the lean path: the segments that are certainly pure counts
  -- (duplicates) applied by one plain UPDATE (see _count_lean); the others
  -- go through steps 0-4 as before, step 0 locking only their alerts. It
  -- also says whether every fingerprint has one segment (016's v_single).
  SELECT l.lean, l.rest, l.nlean, l.single INTO v_lean, v_rest, v_nlean, v_single
    FROM triaged._count_lean(p_fp, p_ci_id, p_summary, p_labels, p_severity, p_status, p_n,
                             p_first, p_last) l;

  IF v_nlean < v_nsegs THEN
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
  ELSE
    -- (018) every segment counted by the lean path (or none at all)
    v_newsegs := '{}';
    v_loopsegs := '{}';
    v_unksegs := '{}';
    v_unknown := 0;
    v_stale := 0;
    v_older := '{}';
    v_loopids := '{}';
    v_loops0 := '{}';
  END IF;
  v_dups := 0;
  v_ndup_hint := 0;

  -- 2a. (013) older firings that moved their alert's firing start: its
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
  IF cardinality(v_loopsegs) = 0 THEN
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
  IF cardinality(v_changes) > 0 OR cardinality(v_delta) > 0 OR cardinality(v_recount) > 0 THEN
    v_inc := ARRAY(SELECT r FROM triaged._finish_counted(v_changes, v_now, v_actor, v_delta,
                                                          v_recount) r);
  ELSE
    v_inc := '{}';
  END IF;
  -- the counts are kept by the triggers again (003's steps below: links
  -- made for alerts leaving suppression, merges)
  PERFORM set_config('triaged.counts_deferred', 'off', true);
  RETURN QUERY SELECT * FROM unnest(v_inc);

  -- 003's steps after the engine, for a batch with neither heartbeats nor
  -- suppressed segments: alerts that fire again outside maintenance are no
  -- longer suppressed (a firing one without an open incident gets one now)
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

  -- (016) both steps below are about the incidents of the rows so far:
  -- none (a batch of counted segments only), nothing to look up
  IF cardinality(v_inc) + cardinality(v_post) > 0 THEN
  -- correlation of the incidents this batch opened or reopened
  SELECT coalesce(array_agg(DISTINCT i.id), '{}') INTO v_corr
    FROM unnest(v_inc || v_post) r
    JOIN triaged.incident i ON i.number = r.key
   WHERE r.kind IN ('incident.opened', 'incident.reopened') AND i.ci_id IS NOT NULL;
  IF cardinality(v_corr) > 0 THEN
    v_post := v_post || ARRAY(SELECT r FROM triaged._correlate(v_corr, v_now, v_actor, v_window,
                                                                v_many) r);
  END IF;

  -- alerts that joined an incident of another CI are its symptoms
  PERFORM triaged._fix_roles(ARRAY(
    SELECT DISTINCT i.id FROM unnest(v_inc || v_post) r JOIN triaged.incident i ON i.number = r.key
     WHERE r.kind IN ('incident.opened', 'incident.reopened', 'incident.updated')
       AND i.ci_id IS NOT NULL));
  END IF;

  RETURN QUERY SELECT * FROM unnest(v_post);
  RETURN NEXT ROW('stats', NULL, (jsonb_build_object(
    'segments', v_nsegs,
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
    'attached', cardinality(v_new) + v_loop.attached)
    || jsonb_build_object(
    'suppressed', 0,
    'heartbeats', 0,
    'merged', (SELECT count(*) FROM unnest(v_post) r WHERE r.kind = 'incident.merged')))::json)
    ::triaged.ingest_row;
  RETURN;
END $$;


-- ---------------------------------------------------------------------------
-- (018) find-or-open: 016's, its lookup of the groups' open incidents
-- with a cached generic plan once the incident table has statistics (see
-- there)
CREATE OR REPLACE FUNCTION triaged._find_or_open(p_reqs triaged._group_req[], p_desc triaged._ci_desc[])
RETURNS SETOF triaged._group_res
LANGUAGE plpgsql
-- (planned at each call, as under 010's _open_incidents: a generic plan of
-- the lookups made while the incident table was empty probed the groups by
-- a full scan of another index, 0.4 s a batch once the table had grown --
-- seen in a latency run. 016: only the statements that read the incident
-- table are; the unbound groups' INSERT and the answers, which read only
-- the arrays, keep a generic plan: see v_mode. With the default mode the
-- arrays of a small batch made each custom plan look cheaper than the
-- generic one, so they were planned at every call anyway, ~0.3 ms a batch.)
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
  v_new    triaged._group_res[] := '{}';
  v_old    triaged._group_res[] := '{}';
  v_found  triaged._group_res[] := '{}';
  v_rest   triaged._group_req[] := '{}';
  v_nbound bigint;
  v_nfree  bigint;
  v_mode   text;   -- (016) the plan mode switched for the statements after
                   -- it (a SET LOCAL, undone when the function returns)
BEGIN
  -- (018) the lookup below keeps a generic plan once the incident table
  -- has statistics (ANALYZE or autovacuum: reltuples >= 10); each ANALYZE
  -- invalidates the cached plan, which is then remade on the new figures.
  -- Made so, at 10, 200 and 2,000 incidents, it probes the groups' keys
  -- (incident_open_resource_key, incident_ci_opened_idx); made on a table
  -- never analysed (reltuples -1), whatever its size, it scans
  -- incident_outage_idx whole for each group (016's 0.4 s a batch at
  -- scale), so there it is planned at each call, as under 016
  v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);
  IF (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'triaged.incident'::regclass) < 10 THEN
    v_mode := set_config('plan_cache_mode', 'force_custom_plan', true);
  END IF;
  -- (013) first the groups' open incidents, each by its key (the partial
  -- unique indexes), locked in key order: an INSERT ... ON CONFLICT that
  -- only finds the incident there cost ~3x more (its speculative insertion);
  -- an incident that stops being open before the lock is granted is not
  -- returned (the lock re-checks it), and its group goes on to the INSERTs
  -- (016) both keys in one statement (bound groups first, by CI, then
  -- unbound ones, by resource: 013's lock order), which also counts the
  -- groups left of each kind (no statement of its own to plan each call)
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
-- (018) end of a batch: 016's, the lock of its incidents no longer planned
-- at each call (see there)
CREATE OR REPLACE FUNCTION triaged._finish_counted(p_changes triaged._change[], p_now timestamptz,
                                        p_actor text, p_delta triaged._count_delta[],
                                        p_recount bigint[])
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
-- (ingest runs with jit off; so does this wherever it is called from: its
-- big statement's estimate passes jit_above_cost, and compiling it cost
-- ~0.3 s, more than running it)
SET jit = off
SET plan_cache_mode = auto   -- (018) switched around the lock, undone on return
AS $$
DECLARE
  v_ids    bigint[];
  v_rows   triaged.ingest_row[];
  v_need   bigint[];
  v_maxres triaged._change[] := '{}';
  v_matrix smallint[];
  v_alone  boolean;   -- (016) a delta of an incident without a change
  v_res    boolean;   -- (016) an alert resolved (a change, or a delta)
  v_mode   text;      -- (018) see the lock
  v_seq    text;
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
  -- (018) with a generic plan, not planned at each call as the default
  -- mode did (the custom plans of a few ids always looked cheaper), made
  -- with enable_seqscan off whoever calls (the engine, where it is off;
  -- tick): a probe of the primary key whatever the table's size, never a
  -- seq scan cached while the table was small
  v_seq := current_setting('enable_seqscan');
  v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);
  PERFORM set_config('enable_seqscan', 'off', true);
  PERFORM 1 FROM triaged.incident i WHERE i.id = ANY (v_ids) ORDER BY i.id FOR UPDATE OF i;
  PERFORM set_config('enable_seqscan', v_seq, true);
  v_mode := set_config('plan_cache_mode', 'auto', true);
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


-- 028_triggers.sql — the count triggers (013/015) and the tick's heartbeat
-- and maintenance look-ups (024) probe by key whatever the statistics, same
-- results (every count, stored row, published row and event as before:
-- tests/integration/test_count_trigger_plans.sh, test_tick_waiting.sh,
-- test_tick_plans.sh, test_counts_race.sh and the engine's equivalence
-- tests).
--
-- Who runs the count triggers: every change of links or alert statuses
-- outside the engine's batch (triaged.counts_deferred not on). That is the
-- jsonb path (triaged.ingest: 003's wrapper and 002's row-by-row loop),
-- which ingest_arrays takes for every batch with a heartbeat or a segment
-- inside maintenance, and the tick for missing heartbeats; 003's
-- _record_suppressed (alerts firing inside maintenance); _merge (links
-- moved: inserted, then deleted); _open_for_alerts (alerts leaving
-- maintenance, from the tick and from the engine's post-steps); deletes of
-- alerts or incidents; SQL callers. (The HTTP API changes neither links nor
-- alert statuses.) plpgsql keeps each statement's plan for the session, so
-- a plan made while the tables were small (a fresh install, a benchmark)
-- stayed until an autoanalyze:
--
-- 1. alert_status_counts (AFTER UPDATE OF status, per row) had no SET
--    enable_seqscan: its lock and its UPDATE joined incident_alert to a Seq
--    Scan of incident (8.9-11.8 ms a status change at 10,000 incidents,
--    medians of 8 runs).
--    Now the alert's links by incident_alert_alert_idx (an InitPlan's
--    array), the incidents by incident_pkey in id order FOR UPDATE, their
--    row versions kept, the UPDATE by them (a Tid Scan).
-- 2. incident_alert_counts_insert (per statement): its joins of the
--    transition table to alert and incident could hash every alert or
--    incident (planned on a small database: 40.9 ms of a 71 ms tick whose
--    _open_for_alerts linked alerts leaving maintenance). Now the links'
--    alerts are locked FOR SHARE in id order by alert_pkey (015's order:
--    alerts, then incidents) and their status is read from the rows
--    locked (the latest committed: no one changes it while we hold the
--    lock, which is what 015's UPDATE read); the incidents locked in id
--    order by incident_pkey in the statement that works out their deltas
--    from the transition table and those arrays; the UPDATE by row version.
--    An incident none of whose new links has an alert is locked and left
--    alone, as before.
-- 3. _recount (the delete and move triggers, merges, the engine's unknown
--    deltas): its UPDATE hashed incident_pkey whole and counted firing
--    links by a join that read every firing alert by alert_status_idx, even
--    with good statistics (22-25 ms a delete of 10 links; 2.0-2.7 ms after
--    ANALYZE). Now per incident locked (incident_pkey, id order) its links
--    by incident_alert_pkey and each link's alert by alert_pkey (LATERAL
--    ... OFFSET 0, as 024), the UPDATE by row version; a link whose alert
--    is gone counts as a link, not as firing, and an incident whose counts
--    are right is not updated (updated_at kept), as before.
--    The three functions SET plan_cache_mode = force_generic_plan too:
--    their plans are right whatever the statistics, and with the default
--    mode their = ANY (array) statements were planned again at each call
--    (custom plans look cheaper): +0.2-0.6 ms a statement.
-- 4. The tick (024's, replaced here; _tick_core unchanged). Its heartbeat
--    look-up read every waiting heartbeat (last_at + timeout is only
--    STABLE: not indexable), and its maintenance look-up every suppressed
--    alert, calling maintenance_at for each firing one (an alert keeps the
--    mark while resolved, until it fires outside maintenance). Now:
--    heartbeat_due_idx, on _heartbeat_due(last_at, timeout) (the same sum
--    in UTC, IMMUTABLE; 1,000 years or more: never due) where missing_since
--    IS NULL, replaces heartbeat_waiting_idx (nothing else read it): the
--    look-up reads those due, in due order. alert_suppressed_ci_idx on
--    (ci_id, id) where suppressed AND status <> 'resolved' (firing, written
--    so that it is no index condition of alert_status_idx; an order no
--    other index gives, so with enable_sort off it is the only plan without
--    a Sort): the CIs under suppression one probe each (a loose scan), and
--    maintenance_at once per CI, in the one statement that locks the
--    alerts of the CIs whose maintenance is over (one snapshot, as 024's
--    one look-up); then the alerts with no CI by the same index. Both look-
--    ups still lock with SKIP LOCKED (never wait), now in due and (ci_id,
--    id) order instead of last_at and id order: as 024's header explains,
--    the order of a look-up that never waits is in no wait cycle; the batch
--    and the alert ids handed on are sorted as before. The index costs
--    nothing on a HOT update: every UPDATE that changes suppressed, status
--    or ci_id already changes a column of another index.
--
-- Measured (backend CPU from /proc/<pid>/schedstat; 3 runs each, before
-- (main, 62bd39c) and after alternated; medians, their spread):
--   tests/bench/bench_count_triggers.sh, 100,000 alerts in 10,000
--   incidents, plans made at 400 alerts: an alert's status change 11.4-11.8
--   -> 1.4-1.6 ms (1.1-1.2 before with plans made after ANALYZE); 10 links
--   deleted 24.1-24.6 -> 1.4-1.5 ms (2.0-2.7 analyzed); 10 links inserted
--   1.5-1.6 -> 1.2-1.5 ms (the plans made at 400 alerts were good there);
--   _merge of two incidents 43-47 -> 31-35 ms (the rest is _merge's own
--   statements, 003's, planned without enable_seqscan off when called
--   outside the engine: not changed here).
--   tests/bench/bench_tick_waiting.sh, a tick with nothing to do beside
--   20,000 waiting heartbeats, 5,000 firing alerts suppressed on 50 CIs
--   in maintenance, 5,000 resolved ones still marked: 294-357 -> 5.3-8.0 ms
--   (one run each, alone: the heartbeats 16.0 -> 1.0 ms, the 5,000 firing
--   380 -> 7.1 ms, now 50 calls of maintenance_at; the 5,000 resolved 2.8
--   -> 1.0 ms; nothing at all: 1.0 and 1.2 ms).
--   tests/bench/bench_tick_plans.sh CPU=1, a busy tick at 100,000 alerts
--   (20 incidents resolved, 20 closed, 2 of them with 20 alerts leaving
--   maintenance: new incidents and links) with plans made at 400 alerts:
--   medians 52.4 and 52.0 -> 15.0 and 18.9 ms (2 runs each; after ANALYZE
--   23.8 and 19.2 -> 26.6 and 17.2: the same, noise).
-- Tried and not kept: the insert trigger's deltas in a statement of their
-- own (one statement more; 1.5-1.8 ms a 10-link INSERT against 1.2-1.5,
-- within the noise, 2 and 3 runs).
--
-- The migration builds two indexes (heartbeat, alert: one pass over each
-- table, writes to them wait meanwhile).
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- 1. an alert's status changed outside the engine's batch (013's row
--    trigger): its incidents locked in id order, then updated by the row
--    versions locked

CREATE OR REPLACE FUNCTION triaged.alert_status_counts() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan = off   -- (028) by key, whatever the statistics say
SET plan_cache_mode = force_generic_plan   -- (028) and each plan made once a session
AS $$
DECLARE
  v_tids tid[];
BEGIN
  -- (028) the alert's links by incident_alert_alert_idx (an InitPlan: a
  -- constant array), their incidents by incident_pkey, in id order
  SELECT coalesce(array_agg(x.ctid ORDER BY x.id), '{}') INTO v_tids
    FROM (SELECT i.id, i.ctid FROM triaged.incident i
           WHERE i.id = ANY (ARRAY(SELECT ia.incident_id FROM triaged.incident_alert ia
                                    WHERE ia.alert_id = NEW.id))
           ORDER BY i.id FOR UPDATE OF i) x;
  IF cardinality(v_tids) > 0 THEN
    UPDATE triaged.incident i
       SET firing_count = i.firing_count + CASE WHEN NEW.status = 'firing' THEN 1 ELSE -1 END,
           updated_at = now()
     WHERE i.ctid = ANY (v_tids);
  END IF;
  RETURN NULL;
END $$;

-- ---------------------------------------------------------------------------
-- 2. links inserted outside the engine's batch (013, 015): the alerts
--    locked FOR SHARE in id order and their status read under that lock,
--    then the incidents locked in id order and updated by row version

CREATE OR REPLACE FUNCTION triaged.incident_alert_counts_insert() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan = off   -- by key, whatever the statistics say (once a statement)
SET plan_cache_mode = force_generic_plan   -- (028) and each plan made once a session
AS $$
DECLARE
  v_aids   bigint[];
  v_firing boolean[];
  v_n      integer[];
  v_f      integer[];
  v_tids   tid[];
BEGIN
  IF current_setting('triaged.counts_deferred', true) = 'on' THEN
    RETURN NULL;   -- the engine's batch counts them itself
  END IF;
  -- (015) the links' alerts FOR SHARE, in id order, before the incidents;
  -- (028) probed by alert_pkey (the ids an InitPlan's array), their status
  -- taken from the rows locked (the latest committed: nobody changes it
  -- while we hold the lock, as 015's UPDATE read it)
  SELECT coalesce(array_agg(x.id ORDER BY x.id), '{}'),
         coalesce(array_agg(x.status = 'firing' ORDER BY x.id), '{}')
    INTO v_aids, v_firing
    FROM (SELECT a.id, a.status FROM triaged.alert a
           WHERE a.id = ANY (ARRAY(SELECT DISTINCT n.alert_id FROM added n))
           ORDER BY a.id FOR SHARE OF a) x;
  -- the incidents of the links, locked in id order (every one, as 015) by
  -- incident_pkey, their row versions next to their deltas: the links
  -- whose alert is there, and the firing ones among them (the transition
  -- table and the arrays only)
  SELECT coalesce(array_agg(l.ctid ORDER BY l.id), '{}'),
         coalesce(array_agg(d.n ORDER BY l.id), '{}'),
         coalesce(array_agg(d.f ORDER BY l.id), '{}')
    INTO v_tids, v_n, v_f
    FROM (SELECT i.id, i.ctid FROM triaged.incident i
           WHERE i.id = ANY (ARRAY(SELECT DISTINCT n.incident_id FROM added n))
           ORDER BY i.id FOR UPDATE OF i) l
    JOIN (SELECT n.incident_id, count(x.id)::integer AS n,
                 (count(*) FILTER (WHERE x.firing))::integer AS f
            FROM added n LEFT JOIN unnest(v_aids, v_firing) x(id, firing) ON x.id = n.alert_id
           GROUP BY n.incident_id) d ON d.incident_id = l.id;
  IF cardinality(v_tids) > 0 THEN
    -- (an incident none of whose new links has an alert is left alone, as
    -- by 015's join)
    UPDATE triaged.incident i
       SET alert_count = i.alert_count + d.n, firing_count = i.firing_count + d.f,
           updated_at = now()
      FROM unnest(v_tids, v_n, v_f) d(tid, n, f)
     WHERE i.ctid = ANY (v_tids) AND i.ctid = d.tid AND d.n > 0;
  END IF;
  RETURN NULL;
END $$;

-- ---------------------------------------------------------------------------
-- 3. links deleted or moved (013's triggers call it), and the engine's
--    incidents of unknown deltas: counted again from their links, each
--    link's alert probed by key; locked in id order first, updated by row
--    version

CREATE OR REPLACE FUNCTION triaged._recount(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET enable_seqscan = off   -- by key, whatever the statistics say
SET plan_cache_mode = force_generic_plan   -- (028) and each plan made once a session
AS $$
DECLARE
  v_ids  bigint[];
  v_tids tid[];
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  -- (028) by incident_pkey, in id order; the row versions kept
  SELECT coalesce(array_agg(x.id ORDER BY x.id), '{}'), coalesce(array_agg(x.ctid ORDER BY x.id), '{}')
    INTO v_ids, v_tids
    FROM (SELECT i.id, i.ctid FROM triaged.incident i WHERE i.id = ANY (p_ids)
           ORDER BY i.id FOR UPDATE OF i) x;
  IF cardinality(v_tids) = 0 THEN
    RETURN;
  END IF;
  -- (028) each incident's links by incident_alert_pkey, each link's alert
  -- by alert_pkey (a link whose alert is gone counts as a link, not as
  -- firing, as 013's counts did)
  UPDATE triaged.incident i
     SET alert_count = c.n, firing_count = c.f, updated_at = now()
    FROM (SELECT k.tid, c.n, c.f
            FROM unnest(v_ids, v_tids) k(id, tid)
           CROSS JOIN LATERAL (
             SELECT count(*)::integer AS n,
                    (count(*) FILTER (WHERE a.status = 'firing'))::integer AS f
               FROM triaged.incident_alert ia
               LEFT JOIN LATERAL (SELECT x.status FROM triaged.alert x WHERE x.id = ia.alert_id
                                  OFFSET 0) a ON true
              WHERE ia.incident_id = k.id) c) c
   WHERE i.ctid = ANY (v_tids) AND i.ctid = c.tid
     AND (i.alert_count <> c.n OR i.firing_count <> c.f);
END $$;

-- ---------------------------------------------------------------------------
-- 4. the tick's heartbeat and maintenance look-ups (024's tick, the changes
--    marked "(028)"): by key, proportional to what is due / to the CIs
--    under suppression, not to every waiting heartbeat / suppressed alert

-- When a heartbeat of p_timeout last seen at p_last is due: last_at +
-- timeout as the tick computes it (TimeZone UTC: the month and day parts of
-- an interval are added on UTC's calendar), IMMUTABLE so that it can be an
-- index's key (timestamptz + interval is only STABLE: it depends on the
-- session's TimeZone). A timeout of 1,000 years or more is due never
-- (infinity): the sum could leave timestamptz's range, and an error here
-- would refuse the heartbeat's row (before, it failed every tick).
CREATE FUNCTION triaged._heartbeat_due(p_last timestamptz, p_timeout interval)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_timeout < interval '1000 years'
              THEN ((p_last AT TIME ZONE 'UTC') + p_timeout) AT TIME ZONE 'UTC'
              ELSE timestamptz 'infinity' END
$$;
COMMENT ON FUNCTION triaged._heartbeat_due(timestamptz, interval) IS
  'last_at + timeout in UTC (the tick''s time zone): heartbeat_due_idx''s key (028).';

-- the heartbeats still waiting, by when they are due: the tick's look-up
-- reads those due only (024's heartbeat_waiting_idx, by last_at, read every
-- waiting one: nothing else used it)
CREATE INDEX heartbeat_due_idx ON triaged.heartbeat (triaged._heartbeat_due(last_at, timeout))
  WHERE missing_since IS NULL;
DROP INDEX triaged.heartbeat_waiting_idx;

-- the firing suppressed alerts by CI: the tick finds the CIs under
-- suppression one index probe each (a loose scan), asks maintenance_at once
-- per CI, and reads the alerts of the CIs whose maintenance is over only.
-- (status <> 'resolved' is status = 'firing' (alert_status_check), written
-- so that it is no index condition of alert_status_idx; the key (ci_id, id)
-- is in an order no other index gives, so with enable_sort off this index
-- is the only plan without a Sort. Only firing suppressed alerts have an
-- entry; every UPDATE that changes suppressed, status or ci_id is already
-- no HOT update: alert_suppressed_idx, alert_status_idx, alert_ci_idx.)
CREATE INDEX alert_suppressed_ci_idx ON triaged.alert (ci_id, id)
  WHERE suppressed AND status <> 'resolved';

CREATE OR REPLACE FUNCTION triaged.tick(p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
SET enable_seqscan = off -- as 002's: plans cached while the tables were small
AS $$
DECLARE
  v_now    timestamptz;
  v_actor  text;
  v_batch  jsonb;
  v_ids    bigint[];
  v_tids   tid[];        -- (024) the alerts the look-up locked, by version
  v_ids2   bigint[];
  v_tids2  tid[];
  v_rows   triaged.ingest_row[] := '{}';
  v_opened bigint[];
  v_sort0  text := current_setting('enable_sort');
  v_pcm0   text := current_setting('plan_cache_mode');
  v_mode   text;
BEGIN
  RETURN QUERY SELECT * FROM triaged._tick_core(p_opts);
  v_now   := coalesce((p_opts->>'now')::timestamptz, now());
  v_actor := coalesce(nullif(p_opts->>'actor', ''), 'triaged');
  PERFORM set_config('triaged.priority_matrix', coalesce(p_opts->>'priority_matrix', ''), true);
  PERFORM set_config('triaged.correlation_window_ms',
                     coalesce(p_opts->>'correlation_window_ms', ''), true);
  PERFORM set_config('triaged.impact_many_services',
                     coalesce(p_opts->>'impact_many_services', ''), true);
  PERFORM triaged._batch_ci_prepare(NULL);
  -- (024) this function's statements keep the plans they made first (see
  -- 024's header, 5); the functions it calls run with the session's mode
  v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);

  -- missing heartbeats raise heartbeat_missing, through ingest (so they
  -- bind, correlate and respect maintenance like any alert); (028) the
  -- look-up reads heartbeat_due_idx up to now, in due order (those due
  -- only), the UPDATE finds the rows by version (the batch is built in
  -- (source, resource) order, as before)
  v_mode := set_config('enable_sort', 'off', true);
  SELECT coalesce(array_agg(d.ctid), '{}') INTO v_tids
    FROM (SELECT h.ctid FROM triaged.heartbeat h
           WHERE h.missing_since IS NULL AND triaged._heartbeat_due(h.last_at, h.timeout) <= v_now
           ORDER BY triaged._heartbeat_due(h.last_at, h.timeout) FOR UPDATE SKIP LOCKED) d;
  v_mode := set_config('enable_sort', v_sort0, true);
  IF cardinality(v_tids) > 0 THEN
    WITH upd AS (
      UPDATE triaged.heartbeat h SET missing_since = h.last_at + h.timeout, updated_at = now()
       WHERE h.ctid = ANY (v_tids) AND (h.missing_since IS NULL AND h.last_at + h.timeout <= v_now) IS TRUE
      RETURNING h.source, h.resource, h.ci_id, h.last_at, h.timeout, h.missing_since)
    SELECT coalesce(jsonb_agg(jsonb_build_object(
             'fp', triaged.heartbeat_fingerprint(upd.source, upd.resource),
             'source', upd.source, 'resource', upd.resource, 'check', 'heartbeat_missing',
             'dedup_key', NULL, 'ci_id', upd.ci_id,
             'summary', format('no heartbeat from %s since %s (timeout %s)', upd.source,
                               to_char(upd.last_at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), upd.timeout),
             'labels', '{}'::jsonb, 'severity', 'major', 'status', 'firing', 'n', 1,
             'first', upd.missing_since, 'last', upd.missing_since, 'hint', 'change')
             ORDER BY upd.source, upd.resource), '[]')
      INTO v_batch FROM upd;
    IF jsonb_array_length(v_batch) > 0 THEN
      v_mode := set_config('plan_cache_mode', v_pcm0, true);
      RETURN QUERY SELECT * FROM triaged.ingest(v_batch, NULL, p_opts) r WHERE r.kind <> 'stats';
      v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);
    END IF;
  END IF;

  -- maintenance over: suppressed firing alerts get their incident now
  -- ((028) by alert_suppressed_ci_idx: the CIs under suppression one probe
  -- each, maintenance_at once per CI, then the alerts of the CIs whose
  -- maintenance is over in (ci_id, id) order, one statement (one snapshot,
  -- as 024's one look-up); then those without a CI. The UPDATE by row
  -- version; each alert's links and their incidents probed by key)
  v_mode := set_config('enable_sort', 'off', true);
  SELECT coalesce(array_agg(x.id), '{}'), coalesce(array_agg(x.ctid), '{}') INTO v_ids, v_tids
    FROM (SELECT a.id, a.ctid FROM triaged.alert a
           WHERE a.suppressed AND a.status <> 'resolved'
             AND a.ci_id = ANY (ARRAY(
               WITH RECURSIVE c(ci) AS (
                 (SELECT s.ci_id FROM triaged.alert s
                   WHERE s.suppressed AND s.status <> 'resolved' AND s.ci_id IS NOT NULL
                   ORDER BY s.ci_id, s.id LIMIT 1)
                 UNION ALL
                 SELECT (SELECT s.ci_id FROM triaged.alert s
                          WHERE s.suppressed AND s.status <> 'resolved' AND s.ci_id > c.ci
                          ORDER BY s.ci_id, s.id LIMIT 1)
                   FROM c WHERE c.ci IS NOT NULL)
               SELECT c.ci FROM c
                WHERE c.ci IS NOT NULL AND triaged.maintenance_at(c.ci, v_now) IS NULL))
           ORDER BY a.ci_id, a.id FOR NO KEY UPDATE SKIP LOCKED) x;
  SELECT coalesce(array_agg(x.id), '{}'), coalesce(array_agg(x.ctid), '{}') INTO v_ids2, v_tids2
    FROM (SELECT a.id, a.ctid FROM triaged.alert a
           WHERE a.suppressed AND a.status <> 'resolved' AND a.ci_id IS NULL
           ORDER BY a.ci_id, a.id FOR NO KEY UPDATE SKIP LOCKED) x;
  v_mode := set_config('enable_sort', v_sort0, true);
  v_ids := v_ids || v_ids2;
  v_tids := v_tids || v_tids2;
  IF cardinality(v_ids) > 0 THEN
    UPDATE triaged.alert SET suppressed = false, updated_at = now() WHERE ctid = ANY (v_tids);
    SELECT coalesce(array_agg(u.id ORDER BY u.id), '{}') INTO v_ids
      FROM unnest(v_ids) u(id)
     WHERE NOT EXISTS (SELECT 1 FROM triaged.incident_alert ia
                        CROSS JOIN LATERAL (SELECT x.status, x.merged_into FROM triaged.incident x
                                             WHERE x.id = ia.incident_id OFFSET 0) i
                        WHERE ia.alert_id = u.id AND i.status IN ('new', 'acknowledged')
                          AND i.merged_into IS NULL
                       OFFSET 0);
    v_mode := set_config('plan_cache_mode', v_pcm0, true);
    IF cardinality(v_ids) > 0 THEN
      v_rows := ARRAY(SELECT r FROM triaged._open_for_alerts(v_ids, v_now, v_now, v_actor) r);
      SELECT coalesce(array_agg(DISTINCT i.id), '{}') INTO v_opened
        FROM unnest(v_rows) r JOIN triaged.incident i ON i.number = r.key
       WHERE r.kind = 'incident.opened' AND i.ci_id IS NOT NULL;
      RETURN QUERY SELECT * FROM unnest(v_rows);
      IF cardinality(v_opened) > 0 THEN
        RETURN QUERY SELECT * FROM triaged._correlate(v_opened, v_now, v_actor,
          coalesce((p_opts->>'correlation_window_ms')::float8, 600000) * interval '1 millisecond',
          coalesce((p_opts->>'impact_many_services')::integer, 3));
      END IF;
    END IF;
  END IF;
  v_mode := set_config('plan_cache_mode', v_pcm0, true);
  RETURN;
END $$;

COMMENT ON FUNCTION triaged.tick(jsonb) IS
  'Time-driven decisions: 002''s _tick_core, then missing heartbeats and ended maintenance '
  '(plans: sql/024_tick.sql, sql/028_triggers.sql).';

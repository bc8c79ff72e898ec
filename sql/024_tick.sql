-- 024_tick.sql — the tick's plans probe their indexes whatever the
-- statistics (issue 3, latency), same results (DESIGN.md §4: what is
-- resolved, closed, cleared and opened, and when; the events and their
-- hashes; the published rows and their order; the stats row; SKIP LOCKED).
--
-- The daemon runs triaged.tick() every second on its own connection, and
-- plpgsql keeps each statement's plan for the session (generic after five
-- calls). Plans made while the tables were empty (every fresh install and
-- benchmark) stayed until an autoanalyze, and with them a tick at 100,000
-- alerts in 10,000 incidents cost 39-117 ms with nothing to do and 1.3-1.7 s
-- with 20 incidents to resolve and 20 to close (5.5-8 and 19-36 ms with
-- plans made after ANALYZE): the look-ups scanned incident_outage_idx (a
-- GiST index whose predicate, merged_into IS NULL, they imply) or
-- alert_status_idx whole, the UPDATEs by id = ANY did the same, and
-- _incident_rows' link counts hashed every alert once per incident.
--
-- Now every statement of the tick has one way to its rows:
--
-- 1. Each look-up (flapping, resolve, close, missing heartbeats, maintenance
--    over) is ordered by the key of its partial index, with enable_sort off
--    for that statement only: the partial index is then the only plan
--    without a Sort, empty table or not. The flapping and suppressed
--    indexes' key is id, as before; the resolve and close look-ups now lock
--    in resolve_pending_since and decided-at order, the heartbeat look-up
--    in last_at order, instead of id or (source, resource) order. SKIP
--    LOCKED never waits, and neither do the UPDATEs and _add_events after
--    it (they touch rows the look-up locked, and insert history and events
--    with no foreign key), so the order in which the look-ups take their
--    locks is in no wait cycle: batches, API actions and CI deletes may
--    wait for rows the tick holds, as before; a row one of them holds is
--    skipped, as before. Which rows the tick holds when it goes on to wait
--    (ingest for missing heartbeats, _open_for_alerts, _correlate) is what
--    it was.
--    Where the status test of the maintenance look-up could be an index
--    condition of alert_status_idx (which also gives the ids in order,
--    backward), it is written (a.status = 'firing') IS TRUE: no index
--    condition, so the partial index alert_suppressed_idx is the only
--    short way.
-- 2. The look-ups return the row versions (ctid) they locked, and the
--    UPDATEs find their rows by them (a TID scan): a row we hold FOR UPDATE
--    gets no new version from anyone else, and nothing in the tick changes
--    it between the look-up and its UPDATE. Each UPDATE still re-checks
--    its conditions, as 002's did.
-- 3. Probes of a link's alert or incident are LATERAL (... OFFSET 0)
--    subqueries, and the NOT EXISTS tests carry OFFSET 0 (kept a
--    correlated subplan, not turned into an anti join that may hash a
--    whole table): a probe of the primary key per link, whatever the
--    statistics. The published incident rows come from 002's
--    _incident_rows, replaced here with each incident and link so probed
--    (same rows; its other callers, the CMDB path's merges, get the same
--    plans).
-- 4. A statement whose input is empty is skipped: UPDATEs after a look-up
--    that found nothing, _add_events (a SQL function, planned at each call:
--    ~1 ms twice a tick) without events, the published rows without ids,
--    _open_for_alerts and _correlate without alerts (they return nothing
--    then).
-- 5. Since every plan is right whatever the statistics, each is made once
--    a session (force_generic_plan: _tick_core's SET, and set_config
--    around tick's own statements, the session's mode restored for the
--    functions tick calls). With the default mode PostgreSQL kept making
--    custom plans for some (a generic range like resolve_pending_since <=
--    $1 is costed at a third of the index): ~6 ms a tick that had work.
--
-- What stays proportional to something other than the tick's work: the
-- heartbeat look-up reads every heartbeat still waiting (last_at +
-- timeout is not indexable: timestamptz + interval is only stable), and
-- the maintenance look-up every suppressed alert (resolved ones and those
-- still in maintenance are filtered).
--
-- Measured: the README's benchmark section (sql/024;
-- tests/bench/bench_tick_plans.sh). Tested: tests/integration/
-- test_tick_plans.sh (plans made on an empty database, then a tick's
-- results and plans at 3,000 alerts), next to the existing tick tests.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- published incident rows (002's _incident_rows, each incident and link
-- probed by key)

-- Snapshot rows of several incidents (ids in any order), kind given, in id
-- order. An inlined SQL function: planned in the caller's statement.
CREATE OR REPLACE FUNCTION triaged._incident_rows(p_kind text, p_ids bigint[])
RETURNS SETOF triaged.ingest_row LANGUAGE sql STABLE AS $$
  SELECT p_kind, (s.i).number, triaged.incident_payload(s.i, c.alert_count, c.firing_count)
    FROM (SELECT DISTINCT u.id FROM unnest(p_ids) u(id)) u
   CROSS JOIN LATERAL (SELECT x FROM triaged.incident x WHERE x.id = u.id OFFSET 0) s(i)
   CROSS JOIN LATERAL (
     SELECT count(*) AS alert_count, count(*) FILTER (WHERE a.status = 'firing') AS firing_count
       FROM triaged.incident_alert ia
      CROSS JOIN LATERAL (SELECT x.status FROM triaged.alert x WHERE x.id = ia.alert_id
                          OFFSET 0) a
      WHERE ia.incident_id = u.id) c
   ORDER BY u.id
$$;
COMMENT ON FUNCTION triaged._incident_rows(text, bigint[]) IS
  'Published snapshot rows of incidents, in id order: each incident and link probed by key.';

-- ---------------------------------------------------------------------------
-- 002's tick (flapping, resolve, close); the changes marked "(024)"

CREATE OR REPLACE FUNCTION triaged._tick_core(p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
SET enable_seqscan = off
-- (024) every plan made once a session (see the header, 5); what runs
-- inside it is _add_events (a SQL function: planned at each call anyway)
-- and the incident's touch trigger (no statement)
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  v_now      timestamptz;
  v_actor    text;
  v_grace    interval;
  v_close    interval;
  v_flap_thr integer;
  v_flap_win interval;
  v_tids     tid[];      -- (024) the rows a look-up locked, by version
  v_events   triaged._event_in[];
  v_resolved bigint[] := '{}';
  v_closed   bigint[] := '{}';
  v_nflap    integer := 0;
  v_sort0    text := current_setting('enable_sort');
  v_mode     text;
BEGIN
  IF p_opts IS NULL OR jsonb_typeof(p_opts) <> 'object' THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'triaged.tick: options ($1) must be a JSON object';
  END IF;
  v_now      := coalesce((p_opts->>'now')::timestamptz, now());
  v_actor    := coalesce(nullif(p_opts->>'actor', ''), 'triaged');
  v_grace    := coalesce((p_opts->>'resolve_grace_ms')::float8, 120000) * interval '1 millisecond';
  v_close    := coalesce((p_opts->>'close_after_ms')::float8, 86400000) * interval '1 millisecond';
  v_flap_thr := coalesce((p_opts->>'flap_threshold')::integer, 6);
  v_flap_win := coalesce((p_opts->>'flap_window_ms')::float8, 1800000) * interval '1 millisecond';

  -- 1. flapping that calmed down: (024) alert_flapping_idx in id order,
  --    the calm ones updated by row version
  v_mode := set_config('enable_sort', 'off', true);
  SELECT coalesce(array_agg(c.ctid), '{}') INTO v_tids
    FROM (SELECT a.ctid FROM triaged.alert a WHERE a.flapping
           ORDER BY a.id FOR UPDATE SKIP LOCKED) c;
  v_mode := set_config('enable_sort', v_sort0, true);
  IF cardinality(v_tids) > 0 THEN
    WITH upd AS (
      UPDATE triaged.alert a SET flapping = false, updated_at = now()
       WHERE a.ctid = ANY (v_tids) AND a.flapping IS TRUE
         AND (SELECT count(*) FROM triaged.alert_history h
               WHERE h.alert_id = a.id AND h.at > v_now - v_flap_win
                 AND h.from_status IS DISTINCT FROM h.to_status) <= v_flap_thr
      RETURNING a.id, a.status, a.severity, a.occurrences),
    hist AS (
      INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                         occurrences, detail)
      SELECT upd.id, v_now, upd.status, upd.status, upd.severity, upd.occurrences,
             '{"flapping": false}'
        FROM upd ORDER BY upd.id)
    SELECT count(*) INTO v_nflap FROM upd;
  END IF;

  -- 2. resolve: lock the candidates, then check them with a fresh snapshot
  --    ((024) incident_resolve_pending_idx in its order; the UPDATE by row
  --    version, each link's alert probed by key)
  v_mode := set_config('enable_sort', 'off', true);
  SELECT coalesce(array_agg(c.ctid), '{}') INTO v_tids
    FROM (SELECT i.ctid FROM triaged.incident i
           WHERE i.resolve_pending_since <= v_now - v_grace
             AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
           ORDER BY i.resolve_pending_since FOR UPDATE SKIP LOCKED) c;
  v_mode := set_config('enable_sort', v_sort0, true);
  IF cardinality(v_tids) > 0 THEN
    WITH upd AS (
      UPDATE triaged.incident i
         SET status = 'resolved', resolved_at = coalesce(i.resolve_at, v_now),
             resolved_decided_at = v_now, resolve_pending_since = NULL, resolve_at = NULL
       WHERE i.ctid = ANY (v_tids)
         AND (i.resolve_pending_since <= v_now - v_grace
              AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL) IS TRUE
         AND NOT EXISTS (SELECT 1 FROM triaged.incident_alert ia
                          CROSS JOIN LATERAL (SELECT x.status, x.flapping FROM triaged.alert x
                                               WHERE x.id = ia.alert_id OFFSET 0) a
                          WHERE ia.incident_id = i.id AND (a.status = 'firing' OR a.flapping)
                         OFFSET 0)
      RETURNING i.id, i.resolved_at)
    SELECT coalesce(array_agg(upd.id ORDER BY upd.id), '{}'),
           coalesce(array_agg(ROW(upd.id, 1, upd.resolved_at, 'resolved',
                                  jsonb_build_object('decided_at', v_now, 'grace_ms',
                                    (extract(epoch FROM v_grace) * 1000)::bigint))::triaged._event_in
                              ORDER BY upd.id), '{}')
      INTO v_resolved, v_events FROM upd;
    IF cardinality(v_events) > 0 THEN
      PERFORM triaged._add_events(v_events, v_actor);
    END IF;
  END IF;

  -- 3. close ((024) incident_resolved_decided_idx in its order; the UPDATE
  --    by row version)
  v_mode := set_config('enable_sort', 'off', true);
  SELECT coalesce(array_agg(c.ctid), '{}') INTO v_tids
    FROM (SELECT i.ctid FROM triaged.incident i
           WHERE i.status = 'resolved'
             AND coalesce(i.resolved_decided_at, i.resolved_at) <= v_now - v_close
           ORDER BY coalesce(i.resolved_decided_at, i.resolved_at)
             FOR UPDATE SKIP LOCKED) c;
  v_mode := set_config('enable_sort', v_sort0, true);
  IF cardinality(v_tids) > 0 THEN
    WITH upd AS (
      UPDATE triaged.incident i
         SET status = 'closed', closed_at = v_now
       WHERE i.ctid = ANY (v_tids) AND (i.status = 'resolved') IS TRUE
      RETURNING i.id)
    SELECT coalesce(array_agg(upd.id ORDER BY upd.id), '{}'),
           coalesce(array_agg(ROW(upd.id, 1, v_now, 'closed', '{}'::jsonb)::triaged._event_in
                              ORDER BY upd.id), '{}')
      INTO v_closed, v_events FROM upd;
    IF cardinality(v_events) > 0 THEN
      PERFORM triaged._add_events(v_events, v_actor);
    END IF;
  END IF;

  IF cardinality(v_resolved) > 0 THEN
    RETURN QUERY SELECT * FROM triaged._incident_rows('incident.resolved', v_resolved);
  END IF;
  IF cardinality(v_closed) > 0 THEN
    RETURN QUERY SELECT * FROM triaged._incident_rows('incident.closed', v_closed);
  END IF;
  RETURN NEXT ROW('stats', NULL, jsonb_build_object(
    'flapping_cleared', v_nflap, 'resolved', cardinality(v_resolved),
    'closed', cardinality(v_closed))::json)::triaged.ingest_row;
  RETURN;
END $$;

-- ---------------------------------------------------------------------------
-- 003's tick (missing heartbeats, maintenance over); the changes marked
-- "(024)"

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
  -- the header, 5); the functions it calls run with the session's mode
  v_mode := set_config('plan_cache_mode', 'force_generic_plan', true);

  -- missing heartbeats raise heartbeat_missing, through ingest (so they
  -- bind, correlate and respect maintenance like any alert); (024) the
  -- look-up reads heartbeat_waiting_idx in its order, the UPDATE finds the
  -- rows by version (the batch is built in (source, resource) order, as
  -- before)
  v_mode := set_config('enable_sort', 'off', true);
  SELECT coalesce(array_agg(d.ctid), '{}') INTO v_tids
    FROM (SELECT h.ctid FROM triaged.heartbeat h
           WHERE h.missing_since IS NULL AND h.last_at + h.timeout <= v_now
           ORDER BY h.last_at FOR UPDATE SKIP LOCKED) d;
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
  -- ((024) alert_suppressed_idx in id order, the status no index
  -- condition; the UPDATE by row version; each alert's links and their
  -- incidents probed by key)
  v_mode := set_config('enable_sort', 'off', true);
  SELECT coalesce(array_agg(x.id), '{}'), coalesce(array_agg(x.ctid), '{}') INTO v_ids, v_tids
    FROM (SELECT a.id, a.ctid FROM triaged.alert a
           WHERE a.suppressed AND (a.status = 'firing') IS TRUE
             AND (a.ci_id IS NULL OR triaged.maintenance_at(a.ci_id, v_now) IS NULL)
           ORDER BY a.id FOR NO KEY UPDATE SKIP LOCKED) x;
  v_mode := set_config('enable_sort', v_sort0, true);
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
  '(plans: sql/024_tick.sql).';

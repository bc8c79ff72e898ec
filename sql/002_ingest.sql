-- 002_ingest.sql — the incident engine, inside PostgreSQL (DESIGN.md §4).
--
-- The daemon calls, once per batch, in one statement (its own transaction):
--     SELECT kind, key, payload FROM triaged.ingest($1::jsonb, $2::jsonb, $3::jsonb)
--     SELECT kind, key, payload FROM triaged.tick($1::jsonb)
-- and publishes the rows it gets back. PostgreSQL is the judge: the Redis hint
-- only picks a faster path, the constraints of 001 forbid duplicates, and rows
-- are locked in a fixed order (fingerprint, incident id, offset key), so
-- several instances can run side by side. Errors a caller must retry the whole
-- batch on: 40P01 (deadlock) and 40001 (serialization failure; also raised
-- here when a race could not be settled inside the statement). 22023 means a
-- malformed batch (retrying will not help).
--
-- Adds:
--   incident.resolve_pending_since  wall time ("now" of the batch) at which the
--                                   incident's last firing alert resolved;
--                                   tick resolves it after the grace
--   incident.resolve_at             occurred_at of the resolve that cleared it:
--                                   becomes resolved_at (§4: resolves at the
--                                   occurred_at of the resolve that cleared it)
--   incident.resolved_decided_at    wall time of the resolve decision; close_after
--                                   counts from here
--   incident.last_event_hash        hash of the incident's newest timeline event
--                                   (tail of the chain; detects a deleted last row)
--   functions ingest, tick, add_event, event_hash, audit_verify and helpers
--
-- The timeline hash (incident_event.hash):
--   sha256(coalesce(prev_hash, '') || convert_to(concat_ws('|', incident_id,
--          <at as epoch microseconds>, actor, kind, detail::text), 'UTF8'))
-- Epoch microseconds and jsonb's canonical text make it independent of the
-- session's TimeZone and DateStyle. Every writer of incident_event must go
-- through triaged.add_event (or lock the incident and chain the same way).
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- new columns and indexes

ALTER TABLE triaged.incident
  ADD COLUMN resolve_pending_since timestamptz,
  ADD COLUMN resolve_at            timestamptz,
  ADD COLUMN resolved_decided_at   timestamptz,
  ADD COLUMN last_event_hash       bytea,
  ADD CONSTRAINT incident_resolve_pending_check
    CHECK ((resolve_pending_since IS NULL) = (resolve_at IS NULL));

COMMENT ON COLUMN triaged.incident.resolve_pending_since IS
  'wall time at which its last firing alert resolved; triaged.tick resolves the '
  'incident once this is older than resolve_grace (NULL: not pending)';
COMMENT ON COLUMN triaged.incident.resolve_at IS
  'occurred_at of the resolve that cleared it; becomes resolved_at';
COMMENT ON COLUMN triaged.incident.resolved_decided_at IS
  'wall time at which the resolve was decided; close_after counts from here';
COMMENT ON COLUMN triaged.incident.last_event_hash IS
  'hash of the newest incident_event of this incident (the chain''s tail)';

-- incidents created before this migration: the tail is their newest event
UPDATE triaged.incident i
   SET last_event_hash = (SELECT e.hash FROM triaged.incident_event e
                          WHERE e.incident_id = i.id ORDER BY e.id DESC LIMIT 1)
 WHERE EXISTS (SELECT 1 FROM triaged.incident_event e WHERE e.incident_id = i.id);

-- tick: pending resolves, closable incidents, flapping alerts
CREATE INDEX incident_resolve_pending_idx ON triaged.incident (resolve_pending_since)
  WHERE resolve_pending_since IS NOT NULL;
CREATE INDEX incident_resolved_decided_idx
  ON triaged.incident ((coalesce(resolved_decided_at, resolved_at)))
  WHERE status = 'resolved';
CREATE INDEX alert_flapping_idx ON triaged.alert (id) WHERE flapping;

-- An incident row is updated a few times in its life (events, pending,
-- status): room on its page lets those updates be HOT.
ALTER TABLE triaged.incident SET (fillfactor = 50);

-- ---------------------------------------------------------------------------
-- types

-- What ingest and tick return: kind, key, payload. The payload is json, built
-- as text: a jsonb would be built, sorted and printed again for every row,
-- which costs more than the rest of a new alert's work.
CREATE TYPE triaged.ingest_row AS (kind text, key text, payload json);

-- One segment of the batch (the JSON keys of the daemon's segments; ord,
-- first_of_fp, first_firing, fp_fires and cls are filled in here:
-- first_firing is the ord of the fingerprint's first firing segment up to
-- this one (NULL before), fp_fires whether the fingerprint has a firing
-- segment in the batch).
CREATE TYPE triaged._segment AS (
  fp text, source text, resource text, "check" text, dedup_key text, ci_id bigint,
  summary text, labels jsonb, severity text, status text, n bigint,
  "first" timestamptz, "last" timestamptz, hint text,
  ord integer, first_of_fp boolean, first_firing integer, fp_fires boolean, cls text);

-- An existing alert of the batch, as locked at the start (tid: its row
-- version then, unchanged while we hold the lock).
CREATE TYPE triaged._known AS (
  id bigint, tid tid, fingerprint text, status text, severity text,
  state_changed_at timestamptz, fired_at timestamptz);

-- An alert created by the batch.
CREATE TYPE triaged._new_alert AS (
  id bigint, fingerprint text, resource text, check_name text, ci_id bigint,
  severity text, occurrences bigint, first_seen timestamptz, last_seen timestamptz,
  flapping boolean, gkey text);

-- A published alert row (alert.firing / alert.resolved), its payload built at
-- the end of the batch; incident NULL: the alert's latest incident then.
CREATE TYPE triaged._alert_out AS (
  kind text, alert_id bigint, fingerprint text, status text, severity text,
  resource text, check_name text, occurrences bigint, first_seen timestamptz,
  last_seen timestamptz, flapping boolean, incident text);

-- A change to an incident noted while processing a batch; turned into events,
-- updates and one published row per incident at the end of the batch.
--   what: opened, reopened, attached, refired, resolved, severity
CREATE TYPE triaged._change AS (
  incident_id bigint, what text, fingerprint text, at timestamptz,
  severity text, detail jsonb);

-- find-or-open requests and answers, per group (gkey: 'c:<ci_id>' or 'r:<resource>')
CREATE TYPE triaged._group_req AS (
  gkey text, ci_id bigint, resource text, title text, opened_at timestamptz, severity text);
CREATE TYPE triaged._group_res AS (
  gkey text, ci_id bigint, resource text, incident_id bigint, opened boolean, number text);

-- a timeline event to append (seq orders the events of one incident)
CREATE TYPE triaged._event_in AS (
  incident_id bigint, seq integer, at timestamptz, kind text, detail jsonb);

-- an alert_history row to insert
CREATE TYPE triaged._hist AS (
  alert_id bigint, at timestamptz, from_status text, to_status text, severity text,
  occurrences bigint, detail jsonb);

CREATE TYPE triaged._loop_result AS (
  changes triaged._change[], out_rows triaged._alert_out[],
  refired integer, resolved integer, stale integer, unknown_resolves integer,
  severity_changes integer, attached integer, incidents_opened integer,
  incidents_reopened integer);

-- ---------------------------------------------------------------------------
-- small helpers (SQL, inlinable)

-- priority from severity until a CMDB drives impact: critical 1 .. info 5
CREATE FUNCTION triaged.severity_rank(p_severity text) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (CASE p_severity WHEN 'critical' THEN 1 WHEN 'major' THEN 2 WHEN 'minor' THEN 3
                          WHEN 'warning' THEN 4 WHEN 'info' THEN 5 END)::smallint
$$;

CREATE FUNCTION triaged.severity_of_rank(p_rank integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (ARRAY['critical', 'major', 'minor', 'warning', 'info'])[p_rank]
$$;

-- urgency: critical/major 1, minor/warning 2, info 3
CREATE FUNCTION triaged.severity_urgency(p_severity text) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (CASE p_severity WHEN 'critical' THEN 1 WHEN 'major' THEN 1 WHEN 'minor' THEN 2
                          WHEN 'warning' THEN 2 WHEN 'info' THEN 3 END)::smallint
$$;

-- grouping key: the CI when bound, else the resource
CREATE FUNCTION triaged._gkey(p_ci_id bigint, p_resource text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_ci_id IS NOT NULL THEN 'c:' || p_ci_id::text ELSE 'r:' || p_resource END
$$;

-- The hashed content of a timeline event (see header).
CREATE FUNCTION triaged.event_content(p_incident_id bigint, p_at timestamptz,
                                      p_actor text, p_kind text, p_detail jsonb)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT convert_to(concat_ws('|', p_incident_id,
                              (extract(epoch FROM p_at) * 1000000)::bigint,
                              p_actor, p_kind, p_detail::text), 'UTF8')
$$;

CREATE FUNCTION triaged.event_hash(p_prev_hash bytea, p_incident_id bigint,
                                   p_at timestamptz, p_actor text, p_kind text,
                                   p_detail jsonb)
RETURNS bytea LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT sha256(coalesce(p_prev_hash, ''::bytea)
                || triaged.event_content(p_incident_id, p_at, p_actor, p_kind, p_detail))
$$;

-- Running hash chain as an aggregate: _chain(init, content) over the events of
-- one incident in order gives each event's hash; init is the incident's
-- last_event_hash before them (NULL for a new incident).
CREATE FUNCTION triaged._chain_step(p_state bytea, p_init bytea, p_content bytea)
RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT sha256(coalesce(p_state, p_init, ''::bytea) || p_content)
$$;
CREATE AGGREGATE triaged._chain(bytea, bytea) (
  SFUNC = triaged._chain_step, STYPE = bytea);

-- JSON text of a value, null for NULL (payloads are built as text).
CREATE FUNCTION triaged._j(p text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(to_json(p)::text, 'null')
$$;
CREATE FUNCTION triaged._j(p timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(to_json(p)::text, 'null')
$$;

-- The published snapshot of an alert (alert.firing / alert.resolved): the
-- fields a consumer needs, and the number of the incident it belongs to
-- (NULL: none). The other arguments are NOT NULL columns of the alert;
-- status and severity need no escaping (CHECK constraints of alert). One of
-- these per new alert: kept lean.
CREATE FUNCTION triaged.alert_payload(p_fingerprint text, p_status text, p_severity text,
                                      p_resource text, p_check text, p_occurrences bigint,
                                      p_first_seen timestamptz, p_last_seen timestamptz,
                                      p_flapping boolean, p_incident text)
RETURNS json LANGUAGE sql STABLE AS $$
  SELECT ('{"fingerprint": ' || to_json(p_fingerprint)
          || ', "status": "' || p_status
          || '", "severity": "' || p_severity
          || '", "resource": ' || to_json(p_resource)
          || ', "check": ' || to_json(p_check)
          || ', "occurrences": ' || p_occurrences
          || ', "first_seen": ' || to_json(p_first_seen)
          || ', "last_seen": ' || to_json(p_last_seen)
          || ', "flapping": ' || p_flapping
          || ', "incident": ' || triaged._j(p_incident) || '}')::json
$$;

-- The published snapshot of an incident, from its columns (a whole-row
-- argument in an UPDATE's RETURNING costs a composite per row, and a
-- deforming per field).
CREATE FUNCTION triaged._incident_json(
    p_id bigint, p_number text, p_title text, p_status text, p_priority smallint,
    p_impact smallint, p_urgency smallint, p_severity text, p_resource text, p_ci_id bigint,
    p_opened_at timestamptz, p_acknowledged_at timestamptz, p_resolved_at timestamptz,
    p_closed_at timestamptz, p_reopen_count integer, p_resolve_pending_since timestamptz,
    p_alert_count bigint, p_firing_count bigint)
RETURNS json LANGUAGE sql STABLE AS $$
  SELECT ('{"id": ' || p_id
          || ', "number": ' || triaged._j(p_number)
          || ', "title": ' || triaged._j(p_title)
          || ', "status": ' || triaged._j(p_status)
          || ', "priority": ' || p_priority
          || ', "impact": ' || p_impact
          || ', "urgency": ' || p_urgency
          || ', "severity": ' || triaged._j(p_severity)
          || ', "resource": ' || triaged._j(p_resource)
          || ', "ci_id": ' || coalesce(p_ci_id::text, 'null')
          || ', "opened_at": ' || triaged._j(p_opened_at)
          || ', "acknowledged_at": ' || triaged._j(p_acknowledged_at)
          || ', "resolved_at": ' || triaged._j(p_resolved_at)
          || ', "closed_at": ' || triaged._j(p_closed_at)
          || ', "reopen_count": ' || p_reopen_count
          || ', "resolve_pending_since": ' || triaged._j(p_resolve_pending_since)
          || ', "alert_count": ' || coalesce(p_alert_count::text, 'null')
          || ', "firing_count": ' || coalesce(p_firing_count::text, 'null') || '}')::json
$$;

CREATE FUNCTION triaged.incident_payload(i triaged.incident, p_alert_count bigint,
                                         p_firing_count bigint)
RETURNS json LANGUAGE sql STABLE AS $$
  SELECT triaged._incident_json(i.id, i.number, i.title, i.status, i.priority, i.impact,
                                i.urgency, i.severity, i.resource, i.ci_id, i.opened_at,
                                i.acknowledged_at, i.resolved_at, i.closed_at, i.reopen_count,
                                i.resolve_pending_since, p_alert_count, p_firing_count)
$$;

-- Snapshot rows of several incidents, kind given.
CREATE FUNCTION triaged._incident_rows(p_kind text, p_ids bigint[])
RETURNS SETOF triaged.ingest_row LANGUAGE sql STABLE AS $$
  SELECT p_kind, i.number, triaged.incident_payload(i, c.alert_count, c.firing_count)
  FROM triaged.incident i
  CROSS JOIN LATERAL (
    SELECT count(*) AS alert_count, count(*) FILTER (WHERE a.status = 'firing') AS firing_count
    FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
    WHERE ia.incident_id = i.id) c
  WHERE i.id = ANY (p_ids)
  ORDER BY i.id
$$;

-- ---------------------------------------------------------------------------
-- the timeline: hash-chained events

-- Appends one event to an incident's timeline; locks the incident row.
-- Returns the new event's id. Every writer of incident_event must use this
-- (or chain the same way under the incident's row lock).
CREATE FUNCTION triaged.add_event(p_incident_id bigint, p_at timestamptz, p_actor text,
                                  p_kind text, p_detail jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  v_prev bytea;
  v_hash bytea;
  v_id   bigint;
  v_detail jsonb := coalesce(p_detail, '{}'::jsonb);
BEGIN
  SELECT i.last_event_hash INTO v_prev
    FROM triaged.incident i WHERE i.id = p_incident_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
      MESSAGE = format('triaged.add_event: no incident %s', p_incident_id);
  END IF;
  v_hash := triaged.event_hash(v_prev, p_incident_id, p_at, p_actor, p_kind, v_detail);
  INSERT INTO triaged.incident_event (incident_id, at, actor, kind, detail, prev_hash, hash)
  VALUES (p_incident_id, p_at, p_actor, p_kind, v_detail, v_prev, v_hash)
  RETURNING id INTO v_id;
  UPDATE triaged.incident SET last_event_hash = v_hash WHERE id = p_incident_id;
  RETURN v_id;
END $$;

-- Appends many events at once (the incidents must already be locked by the
-- caller); events of one incident are chained in seq order. Returns how many.
CREATE FUNCTION triaged._add_events(p_events triaged._event_in[], p_actor text)
RETURNS bigint
LANGUAGE sql AS $$
  WITH e AS (
    SELECT ev.incident_id, ev.seq, ev.at, ev.kind, coalesce(ev.detail, '{}'::jsonb) AS detail,
           i.last_event_hash AS init
    FROM unnest(p_events) ev JOIN triaged.incident i ON i.id = ev.incident_id),
  h AS (
    SELECT e.*, triaged._chain(e.init, triaged.event_content(e.incident_id, e.at, p_actor,
                                                             e.kind, e.detail))
                  OVER (PARTITION BY e.incident_id ORDER BY e.seq ROWS UNBOUNDED PRECEDING) AS hash
    FROM e),
  p AS (
    SELECT h.*, coalesce(lag(h.hash) OVER (PARTITION BY h.incident_id ORDER BY h.seq), h.init) AS prev
    FROM h),
  ins AS (
    INSERT INTO triaged.incident_event (incident_id, at, actor, kind, detail, prev_hash, hash)
    SELECT p.incident_id, p.at, p_actor, p.kind, p.detail, p.prev, p.hash
    FROM p ORDER BY p.incident_id, p.seq
    RETURNING 1),
  upd AS (
    UPDATE triaged.incident i SET last_event_hash = l.hash
    FROM (SELECT DISTINCT ON (p.incident_id) p.incident_id, p.hash
          FROM p ORDER BY p.incident_id, p.seq DESC) l
    WHERE i.id = l.incident_id
    RETURNING 1)
  SELECT count(*) FROM ins
$$;

-- The first broken link of the timelines, or no row when every chain is
-- intact: an edited event (its hash does not match its content), a deleted
-- event (the next event's prev_hash is not the hash of the event before it),
-- a deleted last event (incident.last_event_hash is not the hash of the last
-- remaining event; event_id is then that event, or NULL if none is left).
-- Optionally for one incident only.
CREATE FUNCTION triaged.audit_verify(p_incident_id bigint DEFAULT NULL)
RETURNS TABLE (incident_id bigint, event_id bigint, problem text)
LANGUAGE sql STABLE AS $$
  WITH ev AS (
    SELECT e.incident_id, e.id, e.prev_hash, e.hash,
           lag(e.hash) OVER w AS expected_prev,
           lag(e.id) OVER w AS prev_id,
           triaged.event_hash(e.prev_hash, e.incident_id, e.at, e.actor, e.kind, e.detail) AS recomputed
    FROM triaged.incident_event e
    WHERE p_incident_id IS NULL OR e.incident_id = p_incident_id
    WINDOW w AS (PARTITION BY e.incident_id ORDER BY e.id)),
  last_ev AS (
    SELECT DISTINCT ON (ev.incident_id) ev.incident_id, ev.id, ev.hash
    FROM ev ORDER BY ev.incident_id, ev.id DESC),
  problems (incident_id, event_id, o, problem) AS (
    SELECT ev.incident_id, ev.id, 0,
           CASE WHEN ev.prev_id IS NULL
                THEN format('event %s: prev_hash is set but it is the first event left '
                            '(an earlier event was deleted)', ev.id)
                ELSE format('event %s: prev_hash does not match the hash of event %s '
                            '(an event between them was deleted, or the chain was rewritten)',
                            ev.id, ev.prev_id) END
    FROM ev WHERE ev.prev_hash IS DISTINCT FROM ev.expected_prev
    UNION ALL
    SELECT ev.incident_id, ev.id, 1,
           format('event %s: hash does not match its content (the event was edited)', ev.id)
    FROM ev WHERE ev.hash IS DISTINCT FROM ev.recomputed
    UNION ALL
    SELECT i.id, l.id, 2,
           CASE WHEN l.id IS NULL
                THEN 'incident has last_event_hash but no events (its events were deleted)'
                ELSE format('incident last_event_hash does not match its last event %s '
                            '(a later event was deleted)', l.id) END
    FROM triaged.incident i LEFT JOIN last_ev l ON l.incident_id = i.id
    WHERE (p_incident_id IS NULL OR i.id = p_incident_id)
      AND i.last_event_hash IS DISTINCT FROM l.hash)
  SELECT p.incident_id, p.event_id, p.problem
  FROM problems p
  ORDER BY p.incident_id, p.event_id NULLS LAST, p.o
  LIMIT 1
$$;

-- ---------------------------------------------------------------------------
-- find or open the open incident of each group (set-based, concurrency-safe)
--
-- One INSERT ... ON CONFLICT per kind of group on the partial unique indexes
-- of 001, rows in key order. DO UPDATE ... WHERE false locks the open
-- incident that was there, or that a concurrent transaction committed
-- meanwhile (PostgreSQL waits for it), without writing a version of it (the
-- end of the batch updates it once); if the winner stops being open before it
-- is locked (a tick resolved it), the insertion is retried internally and
-- opens a new one. The locked ones, not returned, are then read by key, one
-- index probe per group (LATERAL: the plan cannot start from the partial
-- index, whose statistics lag behind a fast-growing table); locked by us,
-- they are still open.
CREATE FUNCTION triaged._open_incidents(p_reqs triaged._group_req[])
RETURNS SETOF triaged._group_res
LANGUAGE plpgsql AS $$
DECLARE
  v_new  triaged._group_res[];
  v_old  triaged._group_res[] := '{}';
BEGIN
  WITH ins AS (
    INSERT INTO triaged.incident AS i (title, status, priority, impact, urgency, severity,
                                       ci_id, resource, opened_at)
    SELECT r.title, 'new', triaged.severity_rank(r.severity), 3,
           triaged.severity_urgency(r.severity), r.severity, r.ci_id, r.resource, r.opened_at
      FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL
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
    -- (the groups not inserted: EXCEPT, which has no quadratic plan; the
    -- group key says what to look up)
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

-- ---------------------------------------------------------------------------
-- the per-row part of ingest: existing alerts (status and severity changes,
-- stale segments), later segments of alerts created in this batch. Segments
-- come sorted by (fingerprint, ord); each alert row is locked (FOR NO KEY
-- UPDATE; ingest locked the existing ones already) before it is read. History
-- rows are collected and inserted at the end. Alert rows are returned as
-- _alert_out (payloads are built by ingest).
--
-- Flapping: after a status change at time t, more than p_flap_threshold
-- status changes (history rows whose status differs from the one before,
-- creation included) within p_flap_window before t mark the alert flapping
-- (with a history row of its own).
-- A change of kind p_what for every open (not merged) incident the alert
-- belongs to, in incident order. Each incident is read by primary key, so no
-- plan can prefer the open-incident indexes.
CREATE FUNCTION triaged._open_incident_changes(p_alert_id bigint, p_what text,
                                               p_fingerprint text, p_at timestamptz,
                                               p_severity text)
RETURNS triaged._change[]
LANGUAGE plpgsql AS $$
DECLARE
  v_rec     record;
  v_ist     text;
  v_imerged bigint;
  v_out     triaged._change[] := '{}';
BEGIN
  FOR v_rec IN
    SELECT ia.incident_id FROM triaged.incident_alert ia
     WHERE ia.alert_id = p_alert_id ORDER BY ia.incident_id
  LOOP
    SELECT i.status, i.merged_into INTO v_ist, v_imerged
      FROM triaged.incident i WHERE i.id = v_rec.incident_id;
    IF v_ist IN ('new', 'acknowledged') AND v_imerged IS NULL THEN
      v_out := array_append(v_out, ROW(v_rec.incident_id, p_what, p_fingerprint, p_at,
                                       p_severity, NULL)::triaged._change);
    END IF;
  END LOOP;
  RETURN v_out;
END $$;

CREATE FUNCTION triaged._ingest_loop(p_segs triaged._segment[], p_reopen interval,
                                     p_flap_threshold integer, p_flap_window interval)
RETURNS triaged._loop_result
LANGUAGE plpgsql AS $$
DECLARE
  v_seg      triaged._segment;
  v_alert    triaged.alert;
  v_inc      triaged.incident;
  v_inc_id   bigint;
  v_grp      triaged._group_res;
  v_sev_from text;
  v_placed   boolean;
  v_hops     integer;
  v_other    boolean;
  v_cnt      bigint;
  v_linked   boolean;
  v_cur_fp   text := NULL;
  v_cur_at   timestamptz[] := '{}';   -- this batch's status changes of the current alert
  v_hist     triaged._hist[] := '{}';
  v_changes  triaged._change[] := '{}';
  v_rows     triaged._alert_out[] := '{}';
  v_refired  integer := 0;
  v_resolved integer := 0;
  v_stale    integer := 0;
  v_unknown  integer := 0;
  v_sevch    integer := 0;
  v_attached integer := 0;
  v_opened   integer := 0;
  v_reopened integer := 0;
  v_segs     triaged._segment[] := p_segs;
  v_i        integer := 0;
  v_j        integer;
  v_force    boolean;
  v_res      triaged._segment;
BEGIN
  LOOP
    v_i := v_i + 1;
    EXIT WHEN v_i > coalesce(array_length(v_segs, 1), 0);
    v_seg := v_segs[v_i];
    v_force := false;
    SELECT * INTO v_alert FROM triaged.alert WHERE fingerprint = v_seg.fp FOR NO KEY UPDATE;
    IF NOT FOUND THEN
      IF v_seg.status = 'resolved' THEN
        v_unknown := v_unknown + 1;
        CONTINUE;
      END IF;
      RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
        MESSAGE = format('triaged.ingest: alert %s vanished during the batch (retry)', v_seg.fp);
    END IF;
    IF v_cur_fp IS DISTINCT FROM v_seg.fp THEN
      v_cur_fp := v_seg.fp;
      v_cur_at := '{}';
    END IF;

    -- A firing segment older than the resolve that created this alert (a
    -- resolve that arrived before any of its firing messages, in an earlier
    -- batch): the alert did fire then, and resolved at that resolve. Apply
    -- it as a fire now and the resolve again right after, as if the batches
    -- had been split elsewhere.
    IF v_seg.status = 'firing' AND v_alert.status = 'resolved' AND v_alert.fired_at IS NULL
       AND v_seg."first" < v_alert.state_changed_at THEN
      v_res := v_seg;
      v_res.status := 'resolved';
      v_res.n := 0;
      v_res."first" := v_alert.state_changed_at;
      v_res."last" := v_alert.state_changed_at;
      v_j := v_i;
      WHILE v_j < array_length(v_segs, 1) AND v_segs[v_j + 1].fp = v_seg.fp
            AND v_segs[v_j + 1]."first" < v_res."first" LOOP
        v_j := v_j + 1;
      END LOOP;
      v_segs := v_segs[1:v_j] || v_res || v_segs[v_j + 1:];
      v_force := true;
    END IF;

    -- no status change: same status, or a stale (older) segment
    IF NOT v_force
       AND (v_seg.status = v_alert.status OR v_seg."first" < v_alert.state_changed_at) THEN
      IF v_seg.status = v_alert.status AND v_seg.status = 'firing'
         AND v_seg.severity <> v_alert.severity AND v_seg."first" >= v_alert.state_changed_at THEN
        -- severity change of a firing alert
        v_sev_from := v_alert.severity;
        UPDATE triaged.alert
           SET severity = v_seg.severity, state_changed_at = v_seg."first",
               occurrences = occurrences + v_seg.n,
               first_seen = least(first_seen, v_seg."first"),
               last_seen = greatest(last_seen, v_seg."last"),
               summary = coalesce(v_seg.summary, summary), updated_at = now()
         WHERE id = v_alert.id RETURNING * INTO v_alert;
        v_hist := array_append(v_hist, ROW(v_alert.id, v_seg."first", 'firing', 'firing',
                    v_alert.severity, v_alert.occurrences,
                    jsonb_build_object('severity_from', v_sev_from))::triaged._hist);
        v_sevch := v_sevch + 1;
        v_rows := array_append(v_rows, ROW('alert.firing', v_alert.id, v_alert.fingerprint,
                    v_alert.status, v_alert.severity, v_alert.resource, v_alert.check_name,
                    v_alert.occurrences, v_alert.first_seen, v_alert.last_seen, v_alert.flapping,
                    NULL)::triaged._alert_out);
        v_changes := v_changes || triaged._open_incident_changes(v_alert.id, 'severity',
                       v_alert.fingerprint, v_seg."first", v_alert.severity);
        CONTINUE;
      END IF;
      IF v_seg.status <> v_alert.status
         OR (v_seg.status = 'firing' AND v_seg.severity <> v_alert.severity) THEN
        v_stale := v_stale + 1;   -- would change state, but is older than it
      END IF;
      -- A firing segment older than the alert's fired_at, with no resolve
      -- between them, means the alert has been firing since then: its
      -- firing period (and the incident it opened) starts earlier.
      IF v_seg.status = 'firing' AND v_alert.status = 'firing'
         AND v_seg."first" < v_alert.fired_at
         AND NOT EXISTS (SELECT 1 FROM triaged.alert_history h
                          WHERE h.alert_id = v_alert.id AND h.to_status = 'resolved'
                            AND h.at >= v_seg."first" AND h.at <= v_alert.fired_at) THEN
        UPDATE triaged.alert_history SET at = v_seg."first"
         WHERE alert_id = v_alert.id AND to_status = 'firing'
           AND from_status IS DISTINCT FROM 'firing' AND at = v_alert.fired_at;
        UPDATE triaged.incident i SET opened_at = v_seg."first"
          FROM triaged.incident_alert ia
         WHERE ia.alert_id = v_alert.id AND i.id = ia.incident_id
           AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
           AND i.opened_at > v_seg."first";
        UPDATE triaged.alert SET fired_at = v_seg."first", state_changed_at = v_seg."first"
         WHERE id = v_alert.id;
      END IF;
      -- the newest message's labels and summary win
      UPDATE triaged.alert
         SET occurrences = occurrences + v_seg.n,
             first_seen = CASE WHEN v_seg.status = 'firing'
                               THEN least(first_seen, v_seg."first") ELSE first_seen END,
             labels = CASE WHEN v_seg.status = status AND v_seg."last" >= last_seen
                           THEN v_seg.labels ELSE labels END,
             summary = CASE WHEN v_seg.status = status AND v_seg."last" >= last_seen
                            THEN coalesce(v_seg.summary, summary) ELSE summary END,
             last_seen = greatest(last_seen, v_seg."last"), updated_at = now()
       WHERE id = v_alert.id;
      CONTINUE;
    END IF;

    IF v_seg.status = 'resolved' THEN
      -- firing -> resolved
      UPDATE triaged.alert
         SET status = 'resolved', resolved_at = v_seg."first", state_changed_at = v_seg."first",
             last_seen = greatest(last_seen, v_seg."last"), updated_at = now()
       WHERE id = v_alert.id RETURNING * INTO v_alert;
      v_hist := array_append(v_hist, ROW(v_alert.id, v_seg."first", 'firing', 'resolved',
                  v_alert.severity, v_alert.occurrences, '{}'::jsonb)::triaged._hist);
      v_resolved := v_resolved + 1;
    ELSE
      -- resolved -> firing: re-fire
      v_sev_from := v_alert.severity;
      UPDATE triaged.alert
         SET status = 'firing', fired_at = v_seg."first", resolved_at = NULL,
             state_changed_at = v_seg."first", severity = v_seg.severity,
             source = v_seg.source, resource = v_seg.resource, check_name = v_seg."check",
             dedup_key = v_seg.dedup_key, labels = v_seg.labels, ci_id = v_seg.ci_id,
             summary = coalesce(v_seg.summary, summary),
             occurrences = occurrences + v_seg.n,
             first_seen = least(first_seen, v_seg."first"),
             last_seen = greatest(last_seen, v_seg."last"), updated_at = now()
       WHERE id = v_alert.id RETURNING * INTO v_alert;
      v_hist := array_append(v_hist, ROW(v_alert.id, v_seg."first", 'resolved', 'firing',
                  v_alert.severity, v_alert.occurrences,
                  CASE WHEN v_sev_from <> v_alert.severity
                       THEN jsonb_build_object('severity_from', v_sev_from)
                       ELSE '{}'::jsonb END)::triaged._hist);
      v_refired := v_refired + 1;
    END IF;

    -- flapping (the status changes stored so far, plus this batch's)
    v_cur_at := array_append(v_cur_at, v_seg."first");
    IF NOT v_alert.flapping THEN
      SELECT count(*) INTO v_cnt
        FROM triaged.alert_history h
       WHERE h.alert_id = v_alert.id AND h.at > v_seg."first" - p_flap_window
         AND h.at <= v_seg."first" AND h.from_status IS DISTINCT FROM h.to_status;
      v_cnt := v_cnt + (SELECT count(*) FROM unnest(v_cur_at) t(at)
                         WHERE t.at > v_seg."first" - p_flap_window AND t.at <= v_seg."first");
      IF v_cnt > p_flap_threshold THEN
        UPDATE triaged.alert SET flapping = true WHERE id = v_alert.id RETURNING * INTO v_alert;
        v_hist := array_append(v_hist, ROW(v_alert.id, v_seg."first", v_alert.status,
                    v_alert.status, v_alert.severity, v_alert.occurrences,
                    jsonb_build_object('flapping', true, 'changes', v_cnt))::triaged._hist);
      END IF;
    END IF;
    v_rows := array_append(v_rows, ROW('alert.' || v_alert.status, v_alert.id, v_alert.fingerprint,
                v_alert.status, v_alert.severity, v_alert.resource, v_alert.check_name,
                v_alert.occurrences, v_alert.first_seen, v_alert.last_seen, v_alert.flapping,
                NULL)::triaged._alert_out);

    IF v_alert.status = 'resolved' THEN
      -- every open incident it belongs to may now be clear
      v_changes := v_changes || triaged._open_incident_changes(v_alert.id, 'resolved',
                     v_alert.fingerprint, v_seg."first", v_alert.severity);
      CONTINUE;
    END IF;

    -- re-fire: its latest incident (following merges), locked before deciding
    v_placed := false;
    SELECT ia.incident_id INTO v_inc_id
      FROM triaged.incident_alert ia WHERE ia.alert_id = v_alert.id
     ORDER BY ia.attached_at DESC, ia.incident_id DESC LIMIT 1;
    IF FOUND THEN
      v_hops := 0;
      LOOP
        SELECT * INTO v_inc FROM triaged.incident WHERE id = v_inc_id FOR UPDATE;
        EXIT WHEN v_inc.merged_into IS NULL OR v_hops >= 20;
        v_inc_id := v_inc.merged_into;
        v_hops := v_hops + 1;
      END LOOP;
      IF v_inc.merged_into IS NULL AND v_inc.status IN ('new', 'acknowledged') THEN
        -- still open: it stays there (a pending resolve is cancelled at the end)
        INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
        VALUES (v_inc.id, v_alert.id, 'cause') ON CONFLICT DO NOTHING;
        IF FOUND THEN
          v_attached := v_attached + 1;
          v_changes := array_append(v_changes, ROW(v_inc.id, 'attached', v_alert.fingerprint,
                         v_seg."first", v_alert.severity, NULL)::triaged._change);
        ELSE
          v_changes := array_append(v_changes, ROW(v_inc.id, 'refired', v_alert.fingerprint,
                         v_seg."first", v_alert.severity, NULL)::triaged._change);
        END IF;
        v_placed := true;
      ELSIF v_inc.merged_into IS NULL AND v_inc.status = 'resolved'
            AND v_seg."first" <= v_inc.resolved_at + p_reopen THEN
        -- resolved recently: reopen it, unless its group has another open incident
        IF v_inc.ci_id IS NOT NULL THEN
          SELECT EXISTS (SELECT 1 FROM triaged.incident o
                          WHERE o.ci_id = v_inc.ci_id AND o.status IN ('new', 'acknowledged')
                            AND o.merged_into IS NULL AND o.id <> v_inc.id)
            INTO v_other;
        ELSE
          SELECT EXISTS (SELECT 1 FROM triaged.incident o
                          WHERE o.resource = v_inc.resource AND o.ci_id IS NULL
                            AND o.status IN ('new', 'acknowledged')
                            AND o.merged_into IS NULL AND o.id <> v_inc.id)
            INTO v_other;
        END IF;
        IF NOT v_other THEN
          BEGIN
            UPDATE triaged.incident
               SET status = 'new', resolved_at = NULL, resolved_decided_at = NULL,
                   resolve_pending_since = NULL, resolve_at = NULL,
                   reopen_count = reopen_count + 1
             WHERE id = v_inc.id;
            v_placed := true;
          EXCEPTION WHEN unique_violation THEN
            v_placed := false;   -- another transaction opened one for the group
          END;
          IF v_placed THEN
            v_reopened := v_reopened + 1;
            v_changes := array_append(v_changes, ROW(v_inc.id, 'reopened', v_alert.fingerprint,
                           v_seg."first", v_alert.severity,
                           jsonb_build_object('fingerprint', v_alert.fingerprint,
                                              'previous_resolved_at', v_inc.resolved_at))::triaged._change);
            v_changes := array_append(v_changes, ROW(v_inc.id, 'refired', v_alert.fingerprint,
                           v_seg."first", v_alert.severity, NULL)::triaged._change);
          END IF;
        END IF;
      END IF;
    END IF;
    IF NOT v_placed THEN
      -- like a new alert: join its group's open incident or open one
      SELECT * INTO v_grp FROM triaged._open_incidents(ARRAY[ROW(
          triaged._gkey(v_alert.ci_id, v_alert.resource), v_alert.ci_id, v_alert.resource,
          v_alert.check_name || ' on ' || v_alert.resource, v_seg."first", v_alert.severity
        )::triaged._group_req]);
      IF v_grp.opened THEN
        v_opened := v_opened + 1;
        v_changes := array_append(v_changes, ROW(v_grp.incident_id, 'opened', NULL, NULL, NULL,
                                                 NULL)::triaged._change);
      END IF;
      -- (an old link to that incident from an earlier episode is refreshed, so
      -- that attached_at keeps telling which incident is the alert's latest)
      INSERT INTO triaged.incident_alert AS ia (incident_id, alert_id, role)
      VALUES (v_grp.incident_id, v_alert.id, 'cause')
      ON CONFLICT (incident_id, alert_id) DO UPDATE SET attached_at = now()
      RETURNING ia.xmax::text = '0' INTO v_linked;
      IF v_linked THEN
        v_attached := v_attached + 1;
        v_changes := array_append(v_changes, ROW(v_grp.incident_id, 'attached', v_alert.fingerprint,
                       v_seg."first", v_alert.severity, NULL)::triaged._change);
      ELSE
        v_changes := array_append(v_changes, ROW(v_grp.incident_id, 'refired', v_alert.fingerprint,
                       v_seg."first", v_alert.severity, NULL)::triaged._change);
      END IF;
    END IF;
  END LOOP;

  INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                     occurrences, detail)
  SELECT h.alert_id, h.at, h.from_status, h.to_status, h.severity, h.occurrences, h.detail
    FROM unnest(v_hist) WITH ORDINALITY h
   ORDER BY h.ordinality;

  RETURN ROW(v_changes, v_rows, v_refired, v_resolved, v_stale, v_unknown, v_sevch,
             v_attached, v_opened, v_reopened)::triaged._loop_result;
END $$;

-- ---------------------------------------------------------------------------
-- end of a batch: per touched incident, one round of updates (priority rise,
-- resolve pending / cancelled), its timeline events (one per kind), and one
-- published row. Locks the incidents in id order first; the firing check
-- runs after the lock, so of two transactions resolving the last two alerts
-- of an incident the second one sees the first one's resolve.
-- An incident's priority after a batch whose alerts reached severity rank
-- p_best_rank (NULL: none did): the more urgent of its own and that rank.
-- 003_cmdb redefines it: a bound incident's priority comes from its impact
-- and urgency through the matrix.
CREATE FUNCTION triaged._new_priority(p_ci_id bigint, p_impact smallint, p_urgency smallint,
                                      p_priority smallint, p_best_rank smallint)
RETURNS smallint
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN p_best_rank IS NOT NULL THEN least(p_priority, p_best_rank)
              ELSE p_priority END
$$;

CREATE FUNCTION triaged._finish_incidents(p_changes triaged._change[], p_now timestamptz,
                                          p_actor text)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_ids    bigint[];
  v_rows   triaged.ingest_row[];
BEGIN
  IF cardinality(p_changes) = 0 THEN
    RETURN;
  END IF;
  -- (their ctid, read below, is then the locked row version, which only
  -- this transaction can change)
  SELECT array_agg(DISTINCT c.incident_id) INTO v_ids FROM unnest(p_changes) c;
  PERFORM 1 FROM triaged.incident i WHERE i.id = ANY (v_ids) ORDER BY i.id FOR UPDATE OF i;

  WITH RECURSIVE
  c AS (SELECT * FROM unnest(p_changes)),
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
           bool_or(c.what = 'opened') AND NOT bool_or(c.what = 'resolved') AS fresh
    FROM c GROUP BY c.incident_id),
  st AS (
    SELECT i.id, i.ctid AS tid, i.status, i.priority, i.impact, i.urgency, i.severity, i.title,
           i.ci_id,
           i.resource,
           i.opened_at, i.merged_into, i.last_event_hash, i.resolve_pending_since AS old_pending,
           i.resolve_at AS old_resolve_at,
           agg.*,
           CASE WHEN agg.fresh THEN cardinality(agg.attached) ELSE cnt.alert_count END
             AS alert_count,
           CASE WHEN agg.fresh THEN cardinality(agg.attached) ELSE cnt.firing_count END
             AS firing_count,
           cnt.max_resolved_at,
           (i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL) AS is_open
    FROM agg
    JOIN triaged.incident i ON i.id = agg.inc_id
    CROSS JOIN LATERAL (
      SELECT count(*) AS alert_count,
             count(*) FILTER (WHERE a.status = 'firing') AS firing_count,
             max(a.resolved_at) AS max_resolved_at
      FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
      WHERE NOT agg.fresh AND ia.incident_id = i.id) cnt),
  calc AS (
    SELECT st.*,
           CASE WHEN st.best_rank IS NOT NULL
                     AND st.best_rank < coalesce(triaged.severity_rank(st.severity), 99)
                THEN triaged.severity_of_rank(st.best_rank) ELSE st.severity END AS new_severity,
           triaged._new_priority(st.ci_id, st.impact, st.urgency, st.priority,
                                 st.best_rank) AS new_priority,
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
           resolve_at = calc.new_resolve_at, last_event_hash = lasth.hash, updated_at = now()
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
                                     calc.alert_count, calc.firing_count) AS payload)
  SELECT coalesce(array_agg(ROW(upd.kind, upd.number, upd.payload)::triaged.ingest_row
                            ORDER BY upd.id), '{}')
    INTO v_rows
    FROM upd;
  RETURN QUERY SELECT * FROM unnest(v_rows);
END $$;

-- ---------------------------------------------------------------------------
-- new alerts (the first firing segment of each unknown fingerprint), in
-- fingerprint order, each with its creation in the history. A plain INSERT
-- unless p_skip_existing: then ON CONFLICT DO NOTHING skips the fingerprints
-- that exist (the speculative insertion costs a quarter more per row).
CREATE FUNCTION triaged._create_alerts(p_segs triaged._segment[], p_flap_threshold integer,
                                       p_skip_existing boolean)
RETURNS triaged._new_alert[]
LANGUAGE plpgsql AS $$
DECLARE
  v_new triaged._new_alert[];
BEGIN
  IF NOT p_skip_existing THEN
    WITH ins AS (
      INSERT INTO triaged.alert AS a (fingerprint, source, resource, check_name, dedup_key,
                                      severity, status, summary, labels, ci_id, occurrences,
                                      first_seen, last_seen, fired_at, resolved_at,
                                      state_changed_at, flapping)
      SELECT s.fp, s.source, s.resource, s."check", s.dedup_key, s.severity, 'firing', s.summary,
             s.labels, s.ci_id, s.n, s."first", greatest(s."last", s."first"), s."first", NULL,
             s."first", 1 > p_flap_threshold
        FROM unnest(p_segs) s
       ORDER BY s.fp
      RETURNING a.id, a.fingerprint, a.resource, a.check_name, a.ci_id, a.severity,
                a.occurrences, a.first_seen, a.last_seen, a.flapping),
    hist AS (
      INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                         occurrences, detail)
      SELECT ins.id, ins.first_seen, NULL, 'firing', ins.severity, ins.occurrences,
             CASE WHEN ins.flapping THEN '{"flapping": true}'::jsonb ELSE '{}'::jsonb END
        FROM ins)
    SELECT coalesce(array_agg(ROW(ins.id, ins.fingerprint, ins.resource, ins.check_name,
                                  ins.ci_id, ins.severity, ins.occurrences, ins.first_seen,
                                  ins.last_seen, ins.flapping,
                                  triaged._gkey(ins.ci_id, ins.resource))::triaged._new_alert),
                    '{}')
      INTO v_new FROM ins;
  ELSE
    WITH ins AS (
      INSERT INTO triaged.alert AS a (fingerprint, source, resource, check_name, dedup_key,
                                      severity, status, summary, labels, ci_id, occurrences,
                                      first_seen, last_seen, fired_at, resolved_at,
                                      state_changed_at, flapping)
      SELECT s.fp, s.source, s.resource, s."check", s.dedup_key, s.severity, 'firing', s.summary,
             s.labels, s.ci_id, s.n, s."first", greatest(s."last", s."first"), s."first", NULL,
             s."first", 1 > p_flap_threshold
        FROM unnest(p_segs) s
       ORDER BY s.fp
      ON CONFLICT (fingerprint) DO NOTHING
      RETURNING a.id, a.fingerprint, a.resource, a.check_name, a.ci_id, a.severity,
                a.occurrences, a.first_seen, a.last_seen, a.flapping),
    hist AS (
      INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                         occurrences, detail)
      SELECT ins.id, ins.first_seen, NULL, 'firing', ins.severity, ins.occurrences,
             CASE WHEN ins.flapping THEN '{"flapping": true}'::jsonb ELSE '{}'::jsonb END
        FROM ins)
    SELECT coalesce(array_agg(ROW(ins.id, ins.fingerprint, ins.resource, ins.check_name,
                                  ins.ci_id, ins.severity, ins.occurrences, ins.first_seen,
                                  ins.last_seen, ins.flapping,
                                  triaged._gkey(ins.ci_id, ins.resource))::triaged._new_alert),
                    '{}')
      INTO v_new FROM ins;
  END IF;
  RETURN v_new;
END $$;

-- ---------------------------------------------------------------------------
-- ingest: one batch of segments (see the header and DESIGN.md §4)
--
-- $1 batch   JSON array of segments {fp, source, resource, check, dedup_key,
--            ci_id, summary, labels, severity, status, n, first, last, hint}
-- $2 offsets JSON array [{group, topic, partition, expect, next}] or [] / null:
--            compare-and-set of triaged.kafka_offset; when any entry does not
--            match, nothing at all is done and one row (fenced, 'topic/partition',
--            {"stored": n|null}) per failed entry is returned
-- $3 options {now, actor, reopen_window_ms, flap_threshold, flap_window_ms}
--
-- Returns (kind, key, payload) rows: alert.firing / alert.resolved (key =
-- fingerprint, payload = triaged.alert_payload: fingerprint, status,
-- severity, resource, check, occurrences, first_seen, last_seen, flapping,
-- incident number), incident.opened / incident.reopened / incident.updated
-- (key = incident number, payload = snapshot), and exactly one stats row
-- (key NULL).
--
-- Order of work, set-based except step 4:
--   0. offsets; lock every existing alert of the batch, in fingerprint order
--   1. classify the segments against the locked alerts
--   2. counting segments (no state change: dups, stale messages): one UPDATE
--   2b. resolves of unknown fingerprints that do not fire in the batch: kept
--      as resolved alerts (one INSERT)
--   3. new fingerprints: one INSERT (with their history rows), find-or-open
--      per group, one INSERT of links
--   4. the rest (state changes) row by row in fingerprint order
--   5. per incident: updates, events, published rows
CREATE FUNCTION triaged.ingest(p_batch jsonb, p_offsets jsonb, p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
-- Every table access here is by key. plpgsql caches each statement's plan for
-- the session, and a plan made while the tables were small (a fresh database)
-- scans them whole forever after: forbid that, the indexes always exist.
SET enable_seqscan = off
AS $$
DECLARE
  v_now       timestamptz;
  v_actor     text;
  v_reopen    interval;
  v_flap_thr  integer;
  v_flap_win  interval;
  v_fenced    triaged.ingest_row[];
  v_nins      integer;
  v_nneg      integer;
  v_segs      triaged._segment[];
  v_bad       triaged._segment;
  v_fps       text[];
  v_known     triaged._known[];
  v_c_tid     tid[];
  v_c_id      bigint[];
  v_c_n       bigint[];
  v_c_firing  boolean[];
  v_c_first   timestamptz[];
  v_c_last    timestamptz[];
  v_c_same    boolean[];
  v_c_labels  jsonb[];
  v_c_summary text[];
  v_counted   integer;
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
  v_rows      triaged.ingest_row[] := '{}';
  v_changes   triaged._change[] := '{}';
  v_loop      triaged._loop_result;
  v_opened    integer := 0;
BEGIN
  -- options
  IF p_opts IS NULL OR jsonb_typeof(p_opts) <> 'object' THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'triaged.ingest: options ($3) must be a JSON object';
  END IF;
  v_now      := coalesce((p_opts->>'now')::timestamptz, now());
  v_actor    := coalesce(nullif(p_opts->>'actor', ''), 'triaged');
  v_reopen   := coalesce((p_opts->>'reopen_window_ms')::float8, 1800000) * interval '1 millisecond';
  v_flap_thr := coalesce((p_opts->>'flap_threshold')::integer, 6);
  v_flap_win := coalesce((p_opts->>'flap_window_ms')::float8, 1800000) * interval '1 millisecond';
  IF p_batch IS NULL THEN
    p_batch := '[]';
  END IF;
  IF jsonb_typeof(p_batch) <> 'array' THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'triaged.ingest: batch ($1) must be a JSON array';
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


  -- the segments, sorted by (fingerprint, position in the batch)
  SELECT coalesce(array_agg(x), '{}')
    INTO v_segs
    FROM (SELECT ROW(j.fp, j.source, j.resource, j."check", j.dedup_key, j.ci_id,
                     j.summary, coalesce(j.labels, '{}'::jsonb), j.severity, j.status,
                     CASE WHEN j.status = 'resolved' THEN 0 ELSE j.n END,
                     j."first", j."last", j.hint, j.ordinality::integer,
                     row_number() OVER w = 1,
                     min(j.ordinality::integer) FILTER (WHERE j.status = 'firing') OVER w,
                     bool_or(j.status = 'firing') OVER (PARTITION BY j.fp),
                     NULL)::triaged._segment AS x
            FROM jsonb_populate_recordset(NULL::triaged._segment, p_batch) WITH ORDINALITY j
          WINDOW w AS (PARTITION BY j.fp ORDER BY j.ordinality)
           ORDER BY j.fp, j.ordinality) s;

  SELECT * INTO v_bad FROM unnest(v_segs) s
   WHERE s.fp IS NULL OR s.fp = '' OR s.source IS NULL OR s.resource IS NULL
      OR s."check" IS NULL OR s.status IS NULL OR s.status NOT IN ('firing', 'resolved')
      OR s.severity IS NULL
      OR s.severity NOT IN ('critical', 'major', 'minor', 'warning', 'info')
      OR s."first" IS NULL OR s."last" IS NULL OR s."last" < s."first"
      OR (s.status = 'firing' AND (s.n IS NULL OR s.n < 1))
      OR jsonb_typeof(s.labels) <> 'object'
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = format('triaged.ingest: bad segment #%s (fp %s): %s', v_bad.ord, v_bad.fp,
                       to_jsonb(v_bad) - 'ord' - 'first_of_fp' - 'first_firing' - 'fp_fires'
                       - 'cls');
  END IF;

  -- 0. lock every existing alert of the batch, in fingerprint order, once:
  --    two instances then never wait for each other's alerts in opposite
  --    orders, whatever path each segment takes below. What is read here
  --    stays true until step 2 changes it: only we can change these rows.
  SELECT coalesce(array_agg(s.fp), '{}') INTO v_fps FROM unnest(v_segs) s WHERE s.first_of_fp;
  SELECT coalesce(array_agg(ROW(k.id, k.ctid, k.fingerprint, k.status, k.severity,
                                k.state_changed_at, k.fired_at)::triaged._known), '{}')
    INTO v_known
    FROM (SELECT a.id, a.ctid, a.fingerprint, a.status, a.severity, a.state_changed_at,
                 a.fired_at
            FROM triaged.alert a
           WHERE a.fingerprint = ANY (v_fps)
           ORDER BY a.fingerprint
             FOR NO KEY UPDATE OF a) k;

  -- 1. classify:
  --    'count'   the first segment of an existing alert that changes no state:
  --              same status (and severity, when firing), or older than the
  --              alert's state (stale); it only counts (occurrences, times,
  --              the newest labels and summary) -- except a firing segment
  --              older than the firing period (its start may move back) or
  --              older than the resolve that created the alert (it fires and
  --              resolves it): those are 'loop'
  --    'new'     the first firing segment of an unknown fingerprint
  --    'unknown' a resolve before any firing of an unknown fingerprint
  --              (counted; kept as a resolved alert when the fingerprint does
  --              not fire in this batch, see 2b)
  --    'loop'    everything else (state changes, later segments of a fingerprint)
  --    A dup hint is a hit when its segment counts on a firing alert of the
  --    same severity.
  WITH x AS (
    SELECT s.*, k.id AS kid, k.tid AS ktid,
           CASE WHEN k.id IS NULL THEN
                  CASE WHEN s.ord < coalesce(s.first_firing, 2147483647) THEN 'unknown'
                       WHEN s.ord = s.first_firing THEN 'new'
                       ELSE 'loop' END
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
      FROM unnest(v_segs) s
      LEFT JOIN unnest(v_known) k ON k.fingerprint = s.fp)
  SELECT coalesce(array_agg(x.ktid) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.kid) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.n) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.status = 'firing') FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x."first") FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x."last") FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.same_status) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.labels) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(x.summary) FILTER (WHERE x.c = 'count'), '{}'),
         coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", x.hint, x.ord, x.first_of_fp, x.first_firing,
                                x.fp_fires, x.c)::triaged._segment ORDER BY x.fp)
                    FILTER (WHERE x.c = 'new'), '{}'),
         coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", x.hint, x.ord, x.first_of_fp, x.first_firing,
                                x.fp_fires, x.c)::triaged._segment ORDER BY x.fp, x.ord)
                    FILTER (WHERE x.c = 'loop'), '{}'),
         coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", x.hint, x.ord, x.first_of_fp, x.first_firing,
                                x.fp_fires, x.c)::triaged._segment ORDER BY x.fp, x.ord)
                    FILTER (WHERE x.c = 'unknown' AND NOT x.fp_fires), '{}'),
         count(*) FILTER (WHERE x.c = 'unknown'),
         count(*) FILTER (WHERE x.c = 'count' AND NOT x.same),
         count(*) FILTER (WHERE x.c = 'count' AND x.same AND x.status = 'firing'
                                AND x.hint = 'dup'),
         count(*) FILTER (WHERE x.hint = 'dup')
    INTO v_c_tid, v_c_id, v_c_n, v_c_firing, v_c_first, v_c_last, v_c_same, v_c_labels,
         v_c_summary, v_newsegs, v_loopsegs, v_unksegs, v_unknown, v_stale, v_dups, v_ndup_hint
    FROM x;

  -- 2. counting segments: one UPDATE, by row version (locked in step 0); the
  --    newest message's labels and summary win
  IF cardinality(v_c_tid) > 0 THEN
    UPDATE triaged.alert a
       SET occurrences = a.occurrences + c.n,
           first_seen = CASE WHEN c.firing THEN least(a.first_seen, c."first")
                             ELSE a.first_seen END,
           labels = CASE WHEN c.same_status AND c."last" >= a.last_seen THEN c.labels
                         ELSE a.labels END,
           summary = CASE WHEN c.same_status AND c."last" >= a.last_seen
                          THEN coalesce(c.summary, a.summary) ELSE a.summary END,
           last_seen = greatest(a.last_seen, c."last"),
           updated_at = now()
      FROM unnest(v_c_tid, v_c_id, v_c_n, v_c_firing, v_c_first, v_c_last, v_c_same,
                  v_c_labels, v_c_summary)
             AS c(tid, id, n, firing, "first", "last", same_status, labels, summary)
     WHERE a.ctid = c.tid AND a.id = c.id;
    GET DIAGNOSTICS v_counted = ROW_COUNT;
    IF v_counted <> cardinality(v_c_tid) THEN
      RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
        MESSAGE = format('triaged.ingest: %s of %s locked alerts changed under the lock (retry)',
                         cardinality(v_c_tid) - v_counted, cardinality(v_c_tid));
    END IF;
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
                              ORDER BY x.gkey), '{}')
      INTO v_reqs
      FROM (SELECT DISTINCT ON (a.gkey) a.gkey, a.ci_id, a.resource,
                   a.check_name || ' on ' || a.resource AS title,
                   min(a.first_seen) OVER w AS opened_at,
                   min(triaged.severity_rank(a.severity)) OVER w AS best
              FROM unnest(v_new) a
            WINDOW w AS (PARTITION BY a.gkey)
             ORDER BY a.gkey, a.first_seen, a.fingerprint) x;

    SELECT coalesce(array_agg(r), '{}') INTO v_grp FROM triaged._open_incidents(v_reqs) r;

    -- links (new alerts have none yet), changes, published rows
    WITH m AS (
      SELECT a.*, g.incident_id, g.number
        FROM unnest(v_new) a JOIN unnest(v_grp) g ON g.gkey = a.gkey),
    ins AS (
      INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
      SELECT m.incident_id, m.id, 'cause' FROM m ORDER BY m.incident_id, m.id)
    SELECT coalesce(array_agg(ROW(m.incident_id, 'attached', m.fingerprint, m.first_seen,
                                  m.severity, NULL)::triaged._change), '{}'),
           coalesce(array_agg(ROW('alert.firing', m.fingerprint,
                                  triaged.alert_payload(m.fingerprint, 'firing', m.severity,
                                    m.resource, m.check_name, m.occurrences, m.first_seen,
                                    m.last_seen, m.flapping, m.number))::triaged.ingest_row
                              ORDER BY m.fingerprint), '{}')
      INTO v_changes, v_rows
      FROM m;
    IF cardinality(v_changes) <> cardinality(v_new) THEN
      RAISE EXCEPTION 'triaged.ingest: % new alerts without an incident',
        cardinality(v_new) - cardinality(v_changes);
    END IF;

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

  -- 5. alert rows (new ones first), then per incident: updates, events, one
  --    row each
  RETURN QUERY SELECT * FROM unnest(v_rows);
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
  RETURN QUERY SELECT * FROM triaged._finish_incidents(v_changes, v_now, v_actor);

  RETURN NEXT ROW('stats', NULL, jsonb_build_object(
    'segments', cardinality(v_segs),
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
    'attached', cardinality(v_new) + v_loop.attached)::json)::triaged.ingest_row;
  RETURN;
END $$;

-- ---------------------------------------------------------------------------
-- tick: the time-driven decisions, run every few seconds by each instance
--
-- $1 {now, actor, resolve_grace_ms, close_after_ms, flap_threshold, flap_window_ms}
-- In this order: clears flapping on alerts with <= flap_threshold status
-- changes within flap_window before now; resolves incidents pending for at
-- least the grace that have no firing and no flapping alert (resolved_at =
-- resolve_at, the alerts' time); closes incidents resolved (decided) more than
-- close_after ago. Rows locked by another instance are skipped (SKIP LOCKED).
-- Returns incident.resolved / incident.closed rows and one stats row
-- {"flapping_cleared","resolved","closed"}.
CREATE FUNCTION triaged.tick(p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
-- Every table access here is by key. plpgsql caches each statement's plan for
-- the session, and a plan made while the tables were small (a fresh database)
-- scans them whole forever after: forbid that, the indexes always exist.
SET enable_seqscan = off
AS $$
DECLARE
  v_now      timestamptz;
  v_actor    text;
  v_grace    interval;
  v_close    interval;
  v_flap_thr integer;
  v_flap_win interval;
  v_ids      bigint[];
  v_events   triaged._event_in[];
  v_resolved bigint[];
  v_closed   bigint[];
  v_nflap    integer;
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

  -- 1. flapping that calmed down
  SELECT coalesce(array_agg(c.id), '{}') INTO v_ids
    FROM (SELECT a.id FROM triaged.alert a WHERE a.flapping
           ORDER BY a.id FOR UPDATE SKIP LOCKED) c;
  WITH calm AS (
    SELECT a.id FROM triaged.alert a
     WHERE a.id = ANY (v_ids) AND a.flapping
       AND (SELECT count(*) FROM triaged.alert_history h
             WHERE h.alert_id = a.id AND h.at > v_now - v_flap_win
               AND h.from_status IS DISTINCT FROM h.to_status) <= v_flap_thr),
  upd AS (
    UPDATE triaged.alert a SET flapping = false, updated_at = now()
      FROM calm WHERE a.id = calm.id
    RETURNING a.*),
  hist AS (
    INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                       occurrences, detail)
    SELECT upd.id, v_now, upd.status, upd.status, upd.severity, upd.occurrences,
           '{"flapping": false}'
      FROM upd ORDER BY upd.id)
  SELECT count(*) INTO v_nflap FROM upd;

  -- 2. resolve: lock the candidates, then check them with a fresh snapshot
  SELECT coalesce(array_agg(c.id), '{}') INTO v_ids
    FROM (SELECT i.id FROM triaged.incident i
           WHERE i.resolve_pending_since <= v_now - v_grace
             AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
           ORDER BY i.id FOR UPDATE SKIP LOCKED) c;
  WITH upd AS (
    UPDATE triaged.incident i
       SET status = 'resolved', resolved_at = coalesce(i.resolve_at, v_now),
           resolved_decided_at = v_now, resolve_pending_since = NULL, resolve_at = NULL
     WHERE i.id = ANY (v_ids)
       AND i.resolve_pending_since <= v_now - v_grace
       AND i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL
       AND NOT EXISTS (SELECT 1 FROM triaged.incident_alert ia
                         JOIN triaged.alert a ON a.id = ia.alert_id
                        WHERE ia.incident_id = i.id AND (a.status = 'firing' OR a.flapping))
    RETURNING i.id, i.resolved_at)
  SELECT coalesce(array_agg(upd.id ORDER BY upd.id), '{}'),
         coalesce(array_agg(ROW(upd.id, 1, upd.resolved_at, 'resolved',
                                jsonb_build_object('decided_at', v_now, 'grace_ms',
                                  (extract(epoch FROM v_grace) * 1000)::bigint))::triaged._event_in),
                  '{}')
    INTO v_resolved, v_events FROM upd;
  PERFORM triaged._add_events(v_events, v_actor);

  -- 3. close
  SELECT coalesce(array_agg(c.id), '{}') INTO v_ids
    FROM (SELECT i.id FROM triaged.incident i
           WHERE i.status = 'resolved'
             AND coalesce(i.resolved_decided_at, i.resolved_at) <= v_now - v_close
           ORDER BY i.id FOR UPDATE SKIP LOCKED) c;
  WITH upd AS (
    UPDATE triaged.incident i
       SET status = 'closed', closed_at = v_now
     WHERE i.id = ANY (v_ids) AND i.status = 'resolved'
    RETURNING i.id)
  SELECT coalesce(array_agg(upd.id ORDER BY upd.id), '{}'),
         coalesce(array_agg(ROW(upd.id, 1, v_now, 'closed', '{}'::jsonb)::triaged._event_in), '{}')
    INTO v_closed, v_events FROM upd;
  PERFORM triaged._add_events(v_events, v_actor);

  RETURN QUERY SELECT * FROM triaged._incident_rows('incident.resolved', v_resolved);
  RETURN QUERY SELECT * FROM triaged._incident_rows('incident.closed', v_closed);
  RETURN NEXT ROW('stats', NULL, jsonb_build_object(
    'flapping_cleared', v_nflap, 'resolved', cardinality(v_resolved),
    'closed', cardinality(v_closed))::json)::triaged.ingest_row;
  RETURN;
END $$;

COMMENT ON FUNCTION triaged.ingest(jsonb, jsonb, jsonb) IS
  'One batch of alert segments -> alerts, incidents, timeline; returns (kind, key, payload) '
  'rows to publish. See sql/002_ingest.sql.';
COMMENT ON FUNCTION triaged.tick(jsonb) IS
  'Time-driven incident decisions (resolve after grace, close, flapping end); '
  'returns (kind, key, payload) rows to publish.';
COMMENT ON FUNCTION triaged.add_event(bigint, timestamptz, text, text, jsonb) IS
  'Append one hash-chained event to an incident''s timeline (locks the incident).';
COMMENT ON FUNCTION triaged.audit_verify(bigint) IS
  'First broken link of the timelines (edited, deleted, or deleted last event), '
  'or no row when intact.';

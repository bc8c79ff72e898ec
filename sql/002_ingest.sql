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

-- What ingest and tick return: kind, key, payload.
CREATE TYPE triaged.ingest_row AS (kind text, key text, payload jsonb);

-- One segment of the batch (the JSON keys of the daemon's segments; ord,
-- first_of_fp and cls are filled in here).
CREATE TYPE triaged._segment AS (
  fp text, source text, resource text, "check" text, dedup_key text, ci_id bigint,
  summary text, labels jsonb, severity text, status text, n bigint,
  "first" timestamptz, "last" timestamptz, hint text,
  ord integer, first_of_fp boolean, cls text);

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
  gkey text, ci_id bigint, resource text, incident_id bigint, opened boolean);

-- a timeline event to append (seq orders the events of one incident)
CREATE TYPE triaged._event_in AS (
  incident_id bigint, seq integer, at timestamptz, kind text, detail jsonb);

-- an alert_history row to insert
CREATE TYPE triaged._hist AS (
  alert_id bigint, at timestamptz, from_status text, to_status text, severity text,
  occurrences bigint, detail jsonb);

CREATE TYPE triaged._loop_result AS (
  changes triaged._change[], out_rows triaged.ingest_row[],
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

-- The published snapshot of an incident.
CREATE FUNCTION triaged.incident_payload(i triaged.incident, p_alert_count bigint,
                                         p_firing_count bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', i.id, 'number', i.number, 'title', i.title, 'status', i.status,
    'priority', i.priority, 'impact', i.impact, 'urgency', i.urgency,
    'severity', i.severity, 'resource', i.resource, 'ci_id', i.ci_id,
    'opened_at', i.opened_at, 'acknowledged_at', i.acknowledged_at,
    'resolved_at', i.resolved_at, 'closed_at', i.closed_at,
    'reopen_count', i.reopen_count, 'resolve_pending_since', i.resolve_pending_since,
    'alert_count', p_alert_count, 'firing_count', p_firing_count)
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
-- of 001, rows in key order. DO UPDATE (a no-op assignment) instead of DO
-- NOTHING makes the statement return, and lock, the winner too: either the
-- row we inserted (xmax = 0) or the open incident that was there, or that a
-- concurrent transaction committed meanwhile (PostgreSQL waits for it). If
-- the winner stops being open before it is locked (a tick resolved it), the
-- insertion is retried internally and opens a new one. No planner guesses:
-- the arbiter index is used directly.
CREATE FUNCTION triaged._open_incidents(p_reqs triaged._group_req[])
RETURNS SETOF triaged._group_res
LANGUAGE plpgsql AS $$
DECLARE
  v_ci  triaged._group_res[];
  v_res triaged._group_res[];
BEGIN
  WITH ins AS (
    INSERT INTO triaged.incident AS i (title, status, priority, impact, urgency, severity,
                                       ci_id, resource, opened_at)
    SELECT r.title, 'new', triaged.severity_rank(r.severity), 3,
           triaged.severity_urgency(r.severity), r.severity, r.ci_id, r.resource, r.opened_at
      FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL
     ORDER BY r.ci_id
    ON CONFLICT (ci_id) WHERE status IN ('new', 'acknowledged') AND merged_into IS NULL
    DO UPDATE SET title = i.title
    RETURNING i.id, i.ci_id, i.resource, i.xmax::text = '0' AS opened)
  SELECT coalesce(array_agg(ROW(triaged._gkey(ins.ci_id, NULL), ins.ci_id, ins.resource,
                                ins.id, ins.opened)::triaged._group_res), '{}')
    INTO v_ci FROM ins;

  WITH ins AS (
    INSERT INTO triaged.incident AS i (title, status, priority, impact, urgency, severity,
                                       ci_id, resource, opened_at)
    SELECT r.title, 'new', triaged.severity_rank(r.severity), 3,
           triaged.severity_urgency(r.severity), r.severity, NULL, r.resource, r.opened_at
      FROM unnest(p_reqs) r WHERE r.ci_id IS NULL
     ORDER BY r.resource
    ON CONFLICT (resource) WHERE ci_id IS NULL AND status IN ('new', 'acknowledged')
                                 AND merged_into IS NULL
    DO UPDATE SET title = i.title
    RETURNING i.id, i.resource, i.xmax::text = '0' AS opened)
  SELECT coalesce(array_agg(ROW(triaged._gkey(NULL, ins.resource), NULL, ins.resource,
                                ins.id, ins.opened)::triaged._group_res), '{}')
    INTO v_res FROM ins;

  IF cardinality(v_ci) + cardinality(v_res) <> cardinality(p_reqs) THEN
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
      MESSAGE = format('triaged: find-or-open answered %s of %s groups (retry the batch)',
                       cardinality(v_ci) + cardinality(v_res), cardinality(p_reqs));
  END IF;
  RETURN QUERY SELECT * FROM unnest(v_ci || v_res);
END $$;

-- ---------------------------------------------------------------------------
-- the per-row part of ingest: existing alerts (status and severity changes,
-- stale segments), later segments of alerts created in this batch. Segments
-- come sorted by (fingerprint, ord); each alert row is locked (FOR UPDATE)
-- before it is read. History rows are collected and inserted at the end.
--
-- Flapping: after a status change at time t, more than p_flap_threshold
-- status changes (history rows whose status differs from the one before,
-- creation included) within p_flap_window before t mark the alert flapping
-- (with a history row of its own).
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
  v_rec      record;
  v_ist      text;
  v_linked   boolean;
  v_imerged  bigint;
  v_cur_fp   text := NULL;
  v_cur_at   timestamptz[] := '{}';   -- this batch's status changes of the current alert
  v_hist     triaged._hist[] := '{}';
  v_changes  triaged._change[] := '{}';
  v_rows     triaged.ingest_row[] := '{}';
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
    SELECT * INTO v_alert FROM triaged.alert WHERE fingerprint = v_seg.fp FOR UPDATE;
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
        v_rows := array_append(v_rows, ROW('alert.firing', v_alert.fingerprint,
                                           to_jsonb(v_alert))::triaged.ingest_row);
        FOR v_rec IN
          SELECT ia.incident_id FROM triaged.incident_alert ia
           WHERE ia.alert_id = v_alert.id ORDER BY ia.incident_id
        LOOP
          -- by primary key only: no plan can prefer the open-incident indexes
          SELECT i.status, i.merged_into INTO v_ist, v_imerged
            FROM triaged.incident i WHERE i.id = v_rec.incident_id;
          IF v_ist IN ('new', 'acknowledged') AND v_imerged IS NULL THEN
            v_changes := array_append(v_changes, ROW(v_rec.incident_id, 'severity',
                           v_alert.fingerprint, v_seg."first", v_alert.severity, NULL)::triaged._change);
          END IF;
        END LOOP;
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
    v_rows := array_append(v_rows, ROW('alert.' || v_alert.status, v_alert.fingerprint,
                                       to_jsonb(v_alert))::triaged.ingest_row);

    IF v_alert.status = 'resolved' THEN
      -- every open incident it belongs to may now be clear
      FOR v_rec IN
        SELECT ia.incident_id FROM triaged.incident_alert ia
         WHERE ia.alert_id = v_alert.id ORDER BY ia.incident_id
      LOOP
        SELECT i.status, i.merged_into INTO v_ist, v_imerged
          FROM triaged.incident i WHERE i.id = v_rec.incident_id;
        IF v_ist IN ('new', 'acknowledged') AND v_imerged IS NULL THEN
          v_changes := array_append(v_changes, ROW(v_rec.incident_id, 'resolved',
                         v_alert.fingerprint, v_seg."first", v_alert.severity, NULL)::triaged._change);
        END IF;
      END LOOP;
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
CREATE FUNCTION triaged._finish_incidents(p_changes triaged._change[], p_now timestamptz,
                                          p_actor text)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_rows   triaged.ingest_row[];
BEGIN
  IF cardinality(p_changes) = 0 THEN
    RETURN;
  END IF;
  PERFORM 1 FROM triaged.incident
   WHERE id IN (SELECT DISTINCT c.incident_id FROM unnest(p_changes) c)
   ORDER BY id FOR UPDATE;

  WITH c AS (SELECT * FROM unnest(p_changes)),
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
           max(c.at) FILTER (WHERE c.what IN ('attached', 'refired')) AS fire_at
    FROM c GROUP BY c.incident_id),
  st AS (
    SELECT i.id, i.status, i.priority, i.urgency, i.severity, i.title, i.ci_id, i.resource,
           i.opened_at, i.merged_into, i.last_event_hash, i.resolve_pending_since AS old_pending,
           i.resolve_at AS old_resolve_at,
           agg.*, cnt.alert_count, cnt.firing_count, cnt.max_resolved_at,
           (i.status IN ('new', 'acknowledged') AND i.merged_into IS NULL) AS is_open
    FROM agg
    JOIN triaged.incident i ON i.id = agg.inc_id
    CROSS JOIN LATERAL (
      SELECT count(*) AS alert_count,
             count(*) FILTER (WHERE a.status = 'firing') AS firing_count,
             max(a.resolved_at) AS max_resolved_at
      FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
      WHERE ia.incident_id = i.id) cnt),
  calc AS (
    SELECT st.*,
           CASE WHEN st.best_rank IS NOT NULL
                     AND st.best_rank < coalesce(triaged.severity_rank(st.severity), 99)
                THEN triaged.severity_of_rank(st.best_rank) ELSE st.severity END AS new_severity,
           CASE WHEN st.best_rank IS NOT NULL THEN least(st.priority, st.best_rank)
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
  -- the hash chain, continued from each incident's last_event_hash
  h AS (
    SELECT ev.*, calc.last_event_hash AS init,
           triaged._chain(calc.last_event_hash,
                          triaged.event_content(ev.incident_id, ev.at, p_actor, ev.kind, ev.detail))
             OVER (PARTITION BY ev.incident_id ORDER BY ev.seq ROWS UNBOUNDED PRECEDING) AS hash
      FROM ev JOIN calc ON calc.id = ev.incident_id),
  p AS (
    SELECT h.*, coalesce(lag(h.hash) OVER (PARTITION BY h.incident_id ORDER BY h.seq), h.init)
             AS prev
      FROM h),
  ins AS (
    INSERT INTO triaged.incident_event (incident_id, at, actor, kind, detail, prev_hash, hash)
    SELECT p.incident_id, p.at, p_actor, p.kind, p.detail, p.prev, p.hash
      FROM p ORDER BY p.incident_id, p.seq
    RETURNING 1),
  lasth AS (
    SELECT DISTINCT ON (p.incident_id) p.incident_id, p.hash
      FROM p ORDER BY p.incident_id, p.seq DESC),
  -- one update per incident that has news (every change is an event)
  upd AS (
    UPDATE triaged.incident i
       SET severity = calc.new_severity, priority = calc.new_priority,
           urgency = calc.new_urgency, resolve_pending_since = calc.new_pending,
           resolve_at = calc.new_resolve_at, last_event_hash = lasth.hash
      FROM calc JOIN lasth ON lasth.incident_id = calc.id
     WHERE i.id = calc.id
    RETURNING i.id,
              CASE WHEN calc.was_opened THEN 'incident.opened'
                   WHEN calc.reopened_at IS NOT NULL THEN 'incident.reopened'
                   ELSE 'incident.updated' END AS kind,
              i.number,
              triaged.incident_payload(i, calc.alert_count, calc.firing_count) AS payload)
  SELECT coalesce(array_agg(ROW(upd.kind, upd.number, upd.payload)::triaged.ingest_row
                            ORDER BY upd.id), '{}')
    INTO v_rows
    FROM upd;
  RETURN QUERY SELECT * FROM unnest(v_rows);
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
-- fingerprint, payload = the alert row), incident.opened / incident.reopened /
-- incident.updated (key = incident number, payload = snapshot), and exactly
-- one stats row (key NULL).
--
-- Order of work: offsets; dup fast path (one UPDATE); new fingerprints (bulk
-- INSERT, history, find-or-open per group, links); the rest row by row in
-- fingerprint order; per incident: updates, events, published rows.
CREATE FUNCTION triaged.ingest(p_batch jsonb, p_offsets jsonb, p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
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
  v_dup_ords  integer[];
  v_ndup_hint integer;
  v_cls       triaged._segment[];
  v_new       triaged.alert[];
  v_loopsegs  triaged._segment[];
  v_reqs      triaged._group_req[];
  v_grp       triaged._group_res[];
  v_changes   triaged._change[] := '{}';
  v_ch        triaged._change[];
  v_rows      triaged.ingest_row[] := '{}';
  v_loop      triaged._loop_result;
  v_unknown   integer;
  v_attached  integer;
  v_opened    integer;
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
                                  jsonb_build_object('stored', k.next_offset))::triaged.ingest_row
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
  SELECT coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, coalesce(x.labels, '{}'::jsonb), x.severity, x.status,
                                CASE WHEN x.status = 'resolved' THEN 0 ELSE x.n END,
                                x."first", x."last", x.hint,
                                x.o, x.o = x.min_o, NULL)::triaged._segment
                            ORDER BY x.fp, x.o), '{}')
    INTO v_segs
    FROM (SELECT j.*, j.ordinality::integer AS o,
                 min(j.ordinality::integer) OVER (PARTITION BY j.fp) AS min_o
            FROM jsonb_populate_recordset(NULL::triaged._segment, p_batch) WITH ORDINALITY j) x;

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
                       to_jsonb(v_bad) - 'ord' - 'first_of_fp' - 'cls');
  END IF;

  -- 0. lock every existing alert of the batch, in fingerprint order, once:
  --    two instances then never wait for each other's alerts in opposite
  --    orders, whatever path each segment takes below
  PERFORM 1
     FROM triaged.alert a
    WHERE a.fingerprint IN (SELECT DISTINCT s.fp FROM unnest(v_segs) s)
    ORDER BY a.fingerprint
      FOR UPDATE OF a;

  -- 1. dup fast path: the first segment of a fingerprint, hinted "dup", firing,
  --    on an alert that is firing with that severity: count it, nothing else.
  --    One UPDATE for all of them.
  --    (Not when the segment is older than the alert's firing period: the
  --    row-by-row path may have to move that period's start back.)
  WITH d AS (
    SELECT s.ord, s.fp, s.severity, s.n, s."first", s."last", s.labels, s.summary
      FROM unnest(v_segs) s
     WHERE s.hint = 'dup' AND s.status = 'firing' AND s.first_of_fp),
  u AS (
    UPDATE triaged.alert a
       SET occurrences = a.occurrences + d.n,
           first_seen = least(a.first_seen, d."first"),
           labels = CASE WHEN d."last" >= a.last_seen THEN d.labels ELSE a.labels END,
           summary = CASE WHEN d."last" >= a.last_seen THEN coalesce(d.summary, a.summary)
                          ELSE a.summary END,
           last_seen = greatest(a.last_seen, d."last"),
           updated_at = now()
      FROM d
     WHERE a.fingerprint = d.fp AND a.status = 'firing' AND a.severity = d.severity
       AND d."first" >= a.fired_at
    RETURNING d.ord)
  SELECT coalesce(array_agg(u.ord), '{}') INTO v_dup_ords FROM u;
  SELECT count(*) INTO v_ndup_hint FROM unnest(v_segs) s WHERE s.hint = 'dup';

  -- 2. classify the rest: 'loop' (alert exists, or a later segment of a new
  --    one), 'new' (first firing segment of an unknown fingerprint), 'unknown'
  --    (a resolve before any firing of an unknown fingerprint: dropped)
  SELECT coalesce(array_agg(ROW(x.fp, x.source, x.resource, x."check", x.dedup_key, x.ci_id,
                                x.summary, x.labels, x.severity, x.status, x.n, x."first",
                                x."last", x.hint, x.ord, x.first_of_fp,
                                CASE WHEN x.known THEN 'loop'
                                     WHEN x.ord < coalesce(x.first_firing, 2147483647) THEN 'unknown'
                                     WHEN x.ord = x.first_firing THEN 'new'
                                     ELSE 'loop' END)::triaged._segment
                            ORDER BY x.fp, x.ord), '{}')
    INTO v_cls
    FROM (SELECT s.*, e.fingerprint IS NOT NULL AS known,
                 min(s.ord) FILTER (WHERE s.status = 'firing') OVER (PARTITION BY s.fp) AS first_firing
            FROM unnest(v_segs) s
            LEFT JOIN unnest(v_dup_ords) h(ord) ON h.ord = s.ord
            LEFT JOIN triaged.alert e ON e.fingerprint = s.fp
           WHERE h.ord IS NULL) x;
  SELECT count(*) INTO v_unknown FROM unnest(v_cls) s WHERE s.cls = 'unknown';

  -- 2b. a resolve of a fingerprint never seen, with no firing in this batch,
  --     is kept as a resolved alert with no occurrences and no incident, so
  --     that firing messages older than it, arriving in a later batch, do
  --     not leave the alert firing (out-of-order messages never move state
  --     backwards, wherever the batches split). A later, newer firing
  --     re-fires it as usual.
  WITH t AS (
    INSERT INTO triaged.alert AS a (fingerprint, source, resource, check_name, dedup_key, severity,
                                    status, summary, labels, ci_id, occurrences, first_seen,
                                    last_seen, fired_at, resolved_at, state_changed_at, flapping)
    SELECT s.fp, s.source, s.resource, s."check", s.dedup_key, s.severity, 'resolved', s.summary,
           s.labels, s.ci_id, 0, s."first", greatest(s."last", s."first"), NULL, s."first",
           s."first", false
      FROM unnest(v_cls) s
     WHERE s.cls = 'unknown'
       AND NOT EXISTS (SELECT 1 FROM unnest(v_cls) f WHERE f.fp = s.fp AND f.status = 'firing')
     ORDER BY s.fp
    ON CONFLICT (fingerprint) DO NOTHING
    RETURNING a.*)
  INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                     occurrences, detail)
  SELECT t.id, t.resolved_at, NULL, 'resolved', t.severity, 0,
         '{"resolve_before_firing": true}'::jsonb
    FROM t ORDER BY t.id;

  -- 3. new alerts, in fingerprint order; a fingerprint another transaction
  --    created meanwhile is left to the row-by-row path
  WITH ins AS (
    INSERT INTO triaged.alert AS a (fingerprint, source, resource, check_name, dedup_key, severity,
                                    status, summary, labels, ci_id, occurrences, first_seen,
                                    last_seen, fired_at, resolved_at, state_changed_at, flapping)
    SELECT s.fp, s.source, s.resource, s."check", s.dedup_key, s.severity, 'firing', s.summary,
           s.labels, s.ci_id, s.n, s."first", greatest(s."last", s."first"), s."first", NULL,
           s."first", 1 > v_flap_thr
      FROM unnest(v_cls) s
     WHERE s.cls = 'new'
     ORDER BY s.fp
    ON CONFLICT (fingerprint) DO NOTHING
    RETURNING a.*)
  SELECT coalesce(array_agg(ins ORDER BY ins.fingerprint), '{}') INTO v_new FROM ins;

  IF cardinality(v_new) > 0 THEN
    INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                       occurrences, detail)
    SELECT a.id, a.first_seen, NULL, 'firing', a.severity, a.occurrences,
           CASE WHEN a.flapping THEN '{"flapping": true}'::jsonb ELSE '{}'::jsonb END
      FROM unnest(v_new) a ORDER BY a.id;

    -- one request per group: title and resource of its earliest alert,
    -- opened at the earliest first time, the most severe severity
    SELECT coalesce(array_agg(ROW(x.g, x.ci_id, x.resource, x.title, x.opened_at,
                                  triaged.severity_of_rank(x.best))::triaged._group_req
                              ORDER BY x.g), '{}')
      INTO v_reqs
      FROM (SELECT DISTINCT ON (g.g) g.g, a.ci_id, a.resource,
                   a.check_name || ' on ' || a.resource AS title,
                   min(a.first_seen) OVER (PARTITION BY g.g) AS opened_at,
                   min(triaged.severity_rank(a.severity)) OVER (PARTITION BY g.g) AS best
              FROM unnest(v_new) a
              CROSS JOIN LATERAL (SELECT triaged._gkey(a.ci_id, a.resource) AS g) g
             ORDER BY g.g, a.first_seen, a.fingerprint) x;

    SELECT coalesce(array_agg(r), '{}') INTO v_grp FROM triaged._open_incidents(v_reqs) r;

    WITH m AS (
      SELECT a.id AS alert_id, a.fingerprint, a.first_seen, a.severity, g.incident_id
        FROM unnest(v_new) a
        JOIN unnest(v_grp) g ON g.gkey = triaged._gkey(a.ci_id, a.resource)),
    ins AS (
      INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
      SELECT m.incident_id, m.alert_id, 'cause' FROM m ORDER BY m.incident_id, m.alert_id
      ON CONFLICT DO NOTHING
      RETURNING incident_id, alert_id)
    SELECT coalesce(array_agg(ROW(m.incident_id, 'attached', m.fingerprint, m.first_seen,
                                  m.severity, NULL)::triaged._change), '{}')
      INTO v_ch
      FROM m JOIN ins ON ins.incident_id = m.incident_id AND ins.alert_id = m.alert_id;
    v_attached := cardinality(v_ch);
    v_changes := v_changes || v_ch;

    SELECT coalesce(array_agg(ROW(g.incident_id, 'opened', NULL, NULL, NULL, NULL)
                              ::triaged._change), '{}')
      INTO v_ch FROM unnest(v_grp) g WHERE g.opened;
    v_opened := cardinality(v_ch);
    v_changes := v_changes || v_ch;

    SELECT v_rows || coalesce(array_agg(ROW('alert.firing', a.fingerprint, to_jsonb(a))
                                        ::triaged.ingest_row ORDER BY a.fingerprint), '{}')
      INTO v_rows FROM unnest(v_new) a;
  ELSE
    v_attached := 0;
    v_opened := 0;
  END IF;

  -- 4. everything else, row by row in (fingerprint, ord) order
  SELECT coalesce(array_agg(s ORDER BY s.fp, s.ord), '{}')
    INTO v_loopsegs
    FROM unnest(v_cls) s
    LEFT JOIN unnest(v_new) a ON a.fingerprint = s.fp AND s.cls = 'new'
   WHERE s.cls = 'loop' OR (s.cls = 'new' AND a.id IS NULL);
  IF cardinality(v_loopsegs) > 0 THEN
    v_loop := triaged._ingest_loop(v_loopsegs, v_reopen, v_flap_thr, v_flap_win);
  ELSE
    v_loop := ROW('{}', '{}', 0, 0, 0, 0, 0, 0, 0, 0)::triaged._loop_result;
  END IF;
  v_changes := v_changes || v_loop.changes;
  v_rows := v_rows || v_loop.out_rows;

  -- 5. alert rows, then per incident: updates, events, one row each
  RETURN QUERY SELECT * FROM unnest(v_rows);
  RETURN QUERY SELECT * FROM triaged._finish_incidents(v_changes, v_now, v_actor);

  RETURN NEXT ROW('stats', NULL, jsonb_build_object(
    'segments', cardinality(v_segs),
    'dups', cardinality(v_dup_ords),
    'dup_misses', v_ndup_hint - cardinality(v_dup_ords),
    'new_alerts', cardinality(v_new),
    'refired', v_loop.refired,
    'resolved', v_loop.resolved,
    'stale', v_loop.stale,
    'unknown_resolves', v_unknown + v_loop.unknown_resolves,
    'severity_changes', v_loop.severity_changes,
    'incidents_opened', v_opened + v_loop.incidents_opened,
    'incidents_reopened', v_loop.incidents_reopened,
    'attached', v_attached + v_loop.attached))::triaged.ingest_row;
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
    'closed', cardinality(v_closed)))::triaged.ingest_row;
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

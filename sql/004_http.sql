-- 004_http.sql — reads and actions of the HTTP API (daemon/api_incidents.c).
--
-- Each function returns one json value that the daemon sends (reads) or
-- acts on (actions), so a request is one statement on the API's own
-- connection. Actions lock the incident row, check its status, change it and
-- append the timeline event through triaged.add_event (hash chain), with the
-- API token's name as the actor; they return
--   {"code": "ok" | "not_found" | "conflict" | "noop", "message": ...,
--    "incident": {...}, "events": [{"kind", "key", "payload"}]}
-- and the daemon publishes the events (outputs, live feed).
--
-- Services impacted by an incident: the services one of whose CIs is the
-- incident's CI or depends on it, transitively through ci_relation (child
-- depends on parent), at most 32 levels deep (DESIGN §4). While the CMDB does
-- not bind an incident to a CI (ci_id NULL), it impacts no service.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- An incident's id from its number (INC0000042) or its id ("42").
CREATE FUNCTION triaged.api_incident_ref(p_ref text) RETURNS bigint
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN p_ref ~ '^INC[0-9]{7}$' THEN (SELECT i.id FROM triaged.incident i WHERE i.number = p_ref)
    WHEN p_ref ~ '^[0-9]{1,18}$' THEN (SELECT i.id FROM triaged.incident i WHERE i.id = p_ref::bigint)
  END
$$;

-- The CIs whose failure impacts a service: its own CIs and everything they
-- depend on, transitively.
CREATE FUNCTION triaged.api_service_cis(p_service text) RETURNS SETOF bigint
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE up(ci_id, depth) AS (
    SELECT sc.ci_id, 0 FROM triaged.service s JOIN triaged.service_ci sc ON sc.service_id = s.id
     WHERE s.name = p_service
    UNION
    SELECT r.parent_id, u.depth + 1 FROM triaged.ci_relation r JOIN up u ON r.child_id = u.ci_id
     WHERE u.depth < 32)
  SELECT DISTINCT ci_id FROM up
$$;

-- The services impacted by a failure of CI p_ci_id.
CREATE FUNCTION triaged.api_impacted_services(p_ci_id bigint) RETURNS json
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE down(ci_id, depth) AS (
    SELECT p_ci_id, 0 WHERE p_ci_id IS NOT NULL
    UNION
    SELECT r.child_id, d.depth + 1 FROM triaged.ci_relation r JOIN down d ON r.parent_id = d.ci_id
     WHERE d.depth < 32)
  SELECT coalesce(json_agg(json_build_object('name', s.name, 'tier', s.tier,
                                             'owner_team', s.owner_team)
                           ORDER BY s.tier, s.name), '[]'::json)
    FROM triaged.service s
   WHERE EXISTS (SELECT 1 FROM triaged.service_ci sc JOIN down d ON d.ci_id = sc.ci_id
                  WHERE sc.service_id = s.id)
$$;

-- An incident as the API shows it: the published snapshot plus a few columns.
CREATE FUNCTION triaged.api_incident_json(i triaged.incident) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT triaged.incident_payload(i, c.alert_count, c.firing_count)::jsonb
         || jsonb_build_object('acknowledged_by', i.acknowledged_by,
                               'merged_into', i.merged_into, 'unbound', i.unbound)
    FROM (SELECT count(*) AS alert_count,
                 count(*) FILTER (WHERE a.status = 'firing') AS firing_count
            FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
           WHERE ia.incident_id = i.id) c
$$;

CREATE FUNCTION triaged.api_alert_json(a triaged.alert) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', a.id, 'fingerprint', a.fingerprint, 'source', a.source, 'resource', a.resource,
    'check', a.check_name, 'dedup_key', a.dedup_key, 'severity', a.severity,
    'status', a.status, 'summary', a.summary, 'labels', a.labels, 'ci_id', a.ci_id,
    'occurrences', a.occurrences, 'first_seen', a.first_seen, 'last_seen', a.last_seen,
    'resolved_at', a.resolved_at, 'flapping', a.flapping)
$$;

-- One page of incidents, newest first. p_before: the cursor (ids below it).
-- Returns {"items": [...], "next": <id for the next page's p_before> | null}.
CREATE FUNCTION triaged.api_incidents(p_status text, p_service text, p_priority integer,
                                      p_since timestamptz, p_before bigint, p_limit integer)
RETURNS json LANGUAGE sql STABLE AS $$
  WITH page AS (
    SELECT i.* FROM triaged.incident i
     WHERE (p_status IS NULL
            OR (p_status = 'open' AND i.status IN ('new', 'acknowledged')
                AND i.merged_into IS NULL)
            OR i.status = p_status)
       AND (p_priority IS NULL OR i.priority = p_priority)
       AND (p_since IS NULL OR i.opened_at >= p_since)
       AND (p_before IS NULL OR i.id < p_before)
       AND (p_service IS NULL OR i.ci_id IN (SELECT triaged.api_service_cis(p_service)))
     ORDER BY i.id DESC
     LIMIT p_limit + 1),
  shown AS (SELECT * FROM page ORDER BY id DESC LIMIT p_limit)
  SELECT json_build_object(
    'items', coalesce((SELECT json_agg(triaged.api_incident_json(s::triaged.incident)
                                       ORDER BY s.id DESC) FROM shown s), '[]'::json),
    'next', CASE WHEN (SELECT count(*) FROM page) > p_limit
                 THEN (SELECT min(id) FROM shown) END)
$$;

-- One page of alerts, newest first; filters status, CI name, service, source.
CREATE FUNCTION triaged.api_alerts(p_status text, p_ci text, p_service text, p_source text,
                                   p_before bigint, p_limit integer)
RETURNS json LANGUAGE sql STABLE AS $$
  WITH page AS (
    SELECT a.* FROM triaged.alert a
     WHERE (p_status IS NULL OR a.status = p_status)
       AND (p_ci IS NULL OR a.ci_id = (SELECT c.id FROM triaged.ci c WHERE c.name = p_ci))
       AND (p_service IS NULL OR a.ci_id IN (SELECT triaged.api_service_cis(p_service)))
       AND (p_source IS NULL OR a.source = p_source)
       AND (p_before IS NULL OR a.id < p_before)
     ORDER BY a.id DESC
     LIMIT p_limit + 1),
  shown AS (SELECT * FROM page ORDER BY id DESC LIMIT p_limit)
  SELECT json_build_object(
    'items', coalesce((SELECT json_agg(triaged.api_alert_json(s::triaged.alert)
                                       ORDER BY s.id DESC) FROM shown s), '[]'::json),
    'next', CASE WHEN (SELECT count(*) FROM page) > p_limit
                 THEN (SELECT min(id) FROM shown) END)
$$;

-- One incident with its alerts, impacted services and timeline; NULL when
-- there is no such incident.
CREATE FUNCTION triaged.api_incident(p_ref text) RETURNS json
LANGUAGE sql STABLE AS $$
  SELECT (triaged.api_incident_json(i)
          || jsonb_build_object(
               'alerts', coalesce((SELECT jsonb_agg(triaged.api_alert_json(a)
                                                    || jsonb_build_object('role', ia.role)
                                                    ORDER BY a.id)
                                     FROM triaged.incident_alert ia
                                     JOIN triaged.alert a ON a.id = ia.alert_id
                                    WHERE ia.incident_id = i.id), '[]'::jsonb),
               'services', triaged.api_impacted_services(i.ci_id)::jsonb,
               'timeline', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                              'id', e.id, 'at', e.at, 'actor', e.actor,
                                              'kind', e.kind, 'detail', e.detail)
                                            ORDER BY e.id)
                                       FROM triaged.incident_event e
                                      WHERE e.incident_id = i.id), '[]'::jsonb)))::json
    FROM triaged.incident i
   WHERE i.id = triaged.api_incident_ref(p_ref)
$$;

-- acknowledge, resolve, close or comment, by a person (p_actor: token name).
CREATE FUNCTION triaged.api_incident_action(p_ref text, p_action text, p_actor text,
                                            p_text text, p_now timestamptz)
RETURNS json LANGUAGE plpgsql AS $$
DECLARE
  v_id     bigint;
  v_inc    triaged.incident;
  v_kind   text;
  v_detail jsonb;
  v_body   jsonb;
BEGIN
  v_id := triaged.api_incident_ref(p_ref);
  IF v_id IS NOT NULL THEN
    SELECT * INTO v_inc FROM triaged.incident WHERE id = v_id FOR UPDATE;
  END IF;
  IF v_id IS NULL OR NOT FOUND THEN
    RETURN json_build_object('code', 'not_found', 'message', format('no incident %s', p_ref));
  END IF;
  v_detail := jsonb_build_object('from', v_inc.status);
  IF p_text IS NOT NULL THEN
    v_detail := v_detail || jsonb_build_object('comment', p_text);
  END IF;
  IF v_inc.merged_into IS NOT NULL AND p_action <> 'comment' THEN
    RETURN json_build_object('code', 'conflict', 'message',
      format('incident %s was merged into incident %s', v_inc.number, v_inc.merged_into));
  END IF;
  CASE p_action
  WHEN 'acknowledge' THEN
    IF v_inc.status <> 'new' THEN
      RETURN json_build_object('code', 'conflict', 'message',
        format('incident %s is %s; only a new incident can be acknowledged',
               v_inc.number, v_inc.status));
    END IF;
    UPDATE triaged.incident SET status = 'acknowledged', acknowledged_at = p_now,
           acknowledged_by = p_actor, updated_at = now()
     WHERE id = v_id;
    v_kind := 'acknowledged';
  WHEN 'resolve' THEN
    IF v_inc.status NOT IN ('new', 'acknowledged') THEN
      RETURN json_build_object('code', 'conflict', 'message',
        format('incident %s is %s; only an open incident can be resolved',
               v_inc.number, v_inc.status));
    END IF;
    UPDATE triaged.incident SET status = 'resolved', resolved_at = p_now,
           resolved_decided_at = p_now, resolve_pending_since = NULL, resolve_at = NULL,
           updated_at = now()
     WHERE id = v_id;
    v_kind := 'resolved';
    v_detail := v_detail || '{"manual": true}';
  WHEN 'close' THEN
    IF v_inc.status <> 'resolved' THEN
      RETURN json_build_object('code', 'conflict', 'message',
        format('incident %s is %s; only a resolved incident can be closed',
               v_inc.number, v_inc.status));
    END IF;
    UPDATE triaged.incident SET status = 'closed', closed_at = p_now, updated_at = now()
     WHERE id = v_id;
    v_kind := 'closed';
    v_detail := v_detail || '{"manual": true}';
  WHEN 'comment' THEN
    v_kind := 'comment';
    v_detail := jsonb_build_object('text', p_text);
  ELSE
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = format('triaged.api_incident_action: unknown action %s', p_action);
  END CASE;
  IF v_kind <> 'comment' THEN
    v_detail := v_detail || jsonb_build_object('to', v_kind);
  END IF;
  PERFORM triaged.add_event(v_id, p_now, p_actor, v_kind, v_detail);
  SELECT triaged.api_incident_json(i) INTO v_body FROM triaged.incident i WHERE i.id = v_id;
  RETURN json_build_object(
    'code', 'ok', 'incident', v_body,
    'events', json_build_array(json_build_object(
      'kind', 'incident.' || CASE v_kind WHEN 'comment' THEN 'commented' ELSE v_kind END,
      'key', v_inc.number, 'payload', v_body)));
END $$;

-- PagerDuty's acknowledge: acknowledges the open (new) incident of the
-- firing alert with this fingerprint; "noop" when there is none (PagerDuty
-- accepts such an event and does nothing).
CREATE FUNCTION triaged.api_alert_acknowledge(p_fingerprint text, p_actor text,
                                              p_now timestamptz)
RETURNS json LANGUAGE plpgsql AS $$
DECLARE
  v_number text;
BEGIN
  SELECT i.number INTO v_number
    FROM triaged.alert a
    JOIN triaged.incident_alert ia ON ia.alert_id = a.id
    JOIN triaged.incident i ON i.id = ia.incident_id
   WHERE a.fingerprint = p_fingerprint AND a.status = 'firing'
     AND i.status = 'new' AND i.merged_into IS NULL
   ORDER BY i.id DESC LIMIT 1;
  IF NOT FOUND THEN
    RETURN json_build_object('code', 'noop', 'message', 'no new incident for this alert');
  END IF;
  RETURN triaged.api_incident_action(v_number, 'acknowledge', p_actor, NULL, p_now);
END $$;

-- ---------------------------------------------------------------------------
-- maintenance over HTTP (GET/POST /api/v1/maintenance, DELETE .../{id}); the
-- same rows as `triagectl maintenance`

CREATE FUNCTION triaged._api_maintenance_json(m triaged.maintenance) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'id', m.id,
    'ci', (SELECT c.name FROM triaged.ci c WHERE c.id = m.ci_id),
    'service', (SELECT s.name FROM triaged.service s WHERE s.id = m.service_id),
    'from', lower(m.during), 'to', upper(m.during),
    'weekly', CASE WHEN m.weekly_days IS NOT NULL THEN jsonb_build_object(
                'days', to_jsonb(m.weekly_days), 'at', to_char(m.weekly_start, 'HH24:MI'),
                'duration_seconds', extract(epoch FROM m.weekly_duration),
                'time_zone', m.time_zone) END,
    'active_from', m.active_from, 'active_until', m.active_until,
    'change_ref', m.change_ref, 'reason', m.reason, 'created_by', m.created_by,
    'created_at', m.created_at,
    'active_now', EXISTS (SELECT 1 FROM triaged.maintenance_windows(now(), now() + interval '1 microsecond') w
                           WHERE w.maintenance_id = m.id))
$$;

CREATE FUNCTION triaged.api_maintenance_list() RETURNS json
LANGUAGE sql STABLE AS $$
  SELECT json_build_object('items', coalesce(jsonb_agg(triaged._api_maintenance_json(m) ORDER BY m.id), '[]'))
    FROM triaged.maintenance m
$$;

-- p_doc: {"ci" | "service": NAME, and either "from", "to" (RFC 3339) or
-- "weekly": {"days": [1..7 or "Mon".."Sun"], "at": "HH:MM", "duration": "2h",
-- "time_zone": "Europe/Berlin"}, optional "active_from", "active_until",
-- "change_ref", "reason"}. Bad input raises 22023 (the API answers 400).
CREATE FUNCTION triaged.api_maintenance_add(p_doc jsonb, p_actor text) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
  v_ci   bigint;
  v_svc  bigint;
  v_days smallint[];
  v_m    triaged.maintenance;
  v_w    jsonb := p_doc->'weekly';
BEGIN
  IF jsonb_typeof(p_doc) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'the body must be a JSON object';
  END IF;
  IF (p_doc ? 'ci') = (p_doc ? 'service') THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'give exactly one of "ci" and "service"';
  END IF;
  IF p_doc ? 'ci' THEN
    SELECT id INTO v_ci FROM triaged.ci WHERE name = p_doc->>'ci';
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = format('no CI named %s', p_doc->>'ci');
    END IF;
  ELSE
    SELECT id INTO v_svc FROM triaged.service WHERE name = p_doc->>'service';
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = format('no service named %s', p_doc->>'service');
    END IF;
  END IF;
  IF (v_w IS NOT NULL) = (p_doc ? 'from' OR p_doc ? 'to') THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'give either "from" and "to", or "weekly"';
  END IF;
  IF v_w IS NOT NULL THEN
    IF jsonb_typeof(v_w->'days') IS DISTINCT FROM 'array' THEN
      RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = '"weekly": "days" must be an array';
    END IF;
    SELECT array_agg(CASE WHEN d ~ '^[1-7]$' THEN d::smallint
                          ELSE array_position(ARRAY['mon','tue','wed','thu','fri','sat','sun'],
                                              lower(left(d, 3)))::smallint END)
      INTO v_days FROM jsonb_array_elements_text(v_w->'days') d;
    IF v_days IS NULL OR array_position(v_days, NULL) IS NOT NULL THEN
      RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = '"weekly": "days" are 1 (Monday) .. 7 or Mon .. Sun';
    END IF;
  END IF;
  BEGIN
    INSERT INTO triaged.maintenance (ci_id, service_id, during, weekly_days, weekly_start,
                                     weekly_duration, time_zone, active_from, active_until,
                                     change_ref, reason, created_by)
    VALUES (v_ci, v_svc,
            CASE WHEN v_w IS NULL
                 THEN tstzrange((p_doc->>'from')::timestamptz, (p_doc->>'to')::timestamptz, '[)') END,
            v_days, (v_w->>'at')::time, (v_w->>'duration')::interval,
            coalesce(v_w->>'time_zone', 'UTC'),
            (p_doc->>'active_from')::timestamptz, (p_doc->>'active_until')::timestamptz,
            p_doc->>'change_ref', p_doc->>'reason', coalesce(p_actor, current_user))
    RETURNING * INTO v_m;
  EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_parameter_value
              OR check_violation OR data_exception THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'bad maintenance: ' || SQLERRM;
  END;
  RETURN triaged._api_maintenance_json(v_m)::json;
END $$;

-- NULL when there is no such maintenance.
CREATE FUNCTION triaged.api_maintenance_remove(p_id bigint) RETURNS json
LANGUAGE sql AS $$
  WITH d AS (DELETE FROM triaged.maintenance WHERE id = p_id RETURNING id)
  SELECT json_build_object('removed', d.id) FROM d
$$;

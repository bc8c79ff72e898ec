-- 003_cmdb.sql — the CMDB at work (DESIGN.md §4, §6): correlation along
-- dependencies, merge, impact and priority, maintenance, heartbeats, and the
-- import/export of the CMDB itself.
--
-- Binding happens in the daemon (daemon/cmdb.c: an in-memory graph gives each
-- segment its ci_id); everything that decides about incidents stays here,
-- next to the incident engine of 002, in the same transaction as the batch:
--
--   triaged.ingest  (redefined) = a wrapper around 002's engine, renamed
--                   triaged._ingest_core:
--       before  heartbeat messages (check 'heartbeat') are taken out of the
--               batch, and a resolve is added for each firing
--               heartbeat_missing they end; firing segments of CIs inside a
--               maintenance window are taken out too (suppressed);
--       core    the rest goes through _ingest_core unchanged (offsets
--               compare-and-set, alerts, grouping per CI, timeline);
--       after   (only when the offsets were accepted) suppressed alerts are
--               recorded without an incident, heartbeats are stored, alerts
--               no longer suppressed get their incident, and every incident
--               opened by the batch is correlated (_correlate): merged into
--               an open incident of an upstream CI opened within
--               correlation_window, or absorbing the open incidents of its
--               downstream CIs opened within it; impact, priority, roles
--               and titles follow.
--   triaged.tick    (redefined) = 002's tick (renamed _tick_core), then
--               missing heartbeats raise heartbeat_missing (through ingest),
--               and suppressed alerts whose window ended get their incident.
--
-- Options ($3 of ingest, $1 of tick) gain: correlation_window_ms,
-- priority_matrix (9 numbers: impact 1..3 x urgency 1..3, row by row),
-- impact_many_services.
--
-- A bound incident's priority is the matrix's (impact x urgency), kept by
-- 002's _finish_incidents through _new_priority (redefined here); an unbound
-- incident's priority still follows its severity.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- schema

ALTER TABLE triaged.incident
  ADD COLUMN up_ci_ids bigint[];   -- the CIs its CI depends on, transitively,
                                   -- nearest first (set when it opens)
COMMENT ON COLUMN triaged.incident.up_ci_ids IS
  'upstream CIs of ci_id (transitively, nearest first) when it opened: an open '
  'incident whose up_ci_ids contain a CI is a candidate to merge into that CI''s';
-- downstream incidents of a CI: up_ci_ids @> ARRAY[ci] (or && for several).
-- Not partial: a query that names the open statuses would rather scan
-- incident_status_opened_idx (all recent open incidents) than this.
-- fastupdate off: a batch that opens many incidents searches right after
-- inserting them, and a search scans the whole pending list once per key.
CREATE INDEX incident_up_idx ON triaged.incident USING gin (up_ci_ids)
  WITH (fastupdate = off);

-- The services an incident impacts (DESIGN §4: services whose CIs are, or
-- depend on, the failing CI). Grows on merges; never shrinks.
CREATE TABLE triaged.incident_service (
  incident_id bigint NOT NULL REFERENCES triaged.incident (id) ON DELETE CASCADE,
  service_id  bigint NOT NULL REFERENCES triaged.service (id) ON DELETE CASCADE,
  added_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT incident_service_pkey PRIMARY KEY (incident_id, service_id)
);
CREATE INDEX incident_service_service_idx ON triaged.incident_service (service_id);

-- Heartbeats (DESIGN §4, a dead man's switch): the latest heartbeat of each
-- (source, resource); missing_since is set when tick raised heartbeat_missing.
CREATE TABLE triaged.heartbeat (
  source        text NOT NULL,
  resource      text NOT NULL,
  ci_id         bigint REFERENCES triaged.ci (id) ON DELETE SET NULL,
  timeout       interval NOT NULL,
  last_at       timestamptz NOT NULL,
  missing_since timestamptz,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT heartbeat_pkey PRIMARY KEY (source, resource),
  CONSTRAINT heartbeat_timeout_check CHECK (timeout > interval '0')
);
CREATE INDEX heartbeat_waiting_idx ON triaged.heartbeat (last_at)
  WHERE missing_since IS NULL;

-- ---------------------------------------------------------------------------
-- graph helpers (cycle-safe: ci_relation may hold cycles)

-- The CIs p_ci depends on, transitively, nearest first (level by level,
-- ties by id), at most 32 levels up. Breadth first, one index probe per
-- level: a recursive CTE that tracks depth multiplies rows by the number of
-- paths, which diamonds make large.
CREATE FUNCTION triaged.ci_upstream(p_ci bigint) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_seen  bigint[] := ARRAY[p_ci];
  v_front bigint[] := ARRAY[p_ci];
  v_out   bigint[] := '{}';
  v_next  bigint[];
BEGIN
  FOR v_level IN 1..32 LOOP
    SELECT coalesce(array_agg(DISTINCT r.parent_id ORDER BY r.parent_id), '{}') INTO v_next
      FROM triaged.ci_relation r
     WHERE r.child_id = ANY (v_front) AND r.parent_id <> ALL (v_seen);
    EXIT WHEN cardinality(v_next) = 0;
    v_out := v_out || v_next;
    v_seen := v_seen || v_next;
    v_front := v_next;
  END LOOP;
  RETURN v_out;
END $$;

-- The services impacted when p_ci fails: those with a CI that is p_ci or
-- depends on it, transitively (breadth first, like ci_upstream).
CREATE FUNCTION triaged.ci_impacted_services(p_ci bigint) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_seen  bigint[] := ARRAY[p_ci];
  v_front bigint[] := ARRAY[p_ci];
  v_next  bigint[];
BEGIN
  LOOP
    SELECT coalesce(array_agg(DISTINCT r.child_id), '{}') INTO v_next
      FROM triaged.ci_relation r
     WHERE r.parent_id = ANY (v_front) AND r.child_id <> ALL (v_seen);
    EXIT WHEN cardinality(v_next) = 0;
    v_seen := v_seen || v_next;
    v_front := v_next;
  END LOOP;
  RETURN ARRAY(SELECT DISTINCT sc.service_id FROM triaged.service_ci sc
                WHERE sc.ci_id = ANY (v_seen) ORDER BY sc.service_id);
END $$;

-- The daemon sends, with each bound segment that may open or join an
-- incident, what its in-memory graph knows about the CI: "up" (the upstream
-- CIs, nearest first) and "svc" (the impacted services). ingest keeps them
-- for the transaction in pg_temp.td_batch_ci; _ci_up and _ci_svc read them
-- there and walk ci_relation only for CIs the batch did not describe (tick,
-- SQL callers, a graph not loaded yet).
CREATE FUNCTION triaged._batch_ci_prepare(p_batch jsonb) RETURNS void
LANGUAGE plpgsql
SET client_min_messages = warning
AS $$
BEGIN
  -- A batch that describes no CI touches no temporary table: the commit of a
  -- transaction that did truncates every ON COMMIT DELETE ROWS table and
  -- rebuilds its index (~1 ms, measured, on each batch). Within one
  -- transaction (a tick may call ingest twice) a CI described again gets the
  -- newer description.
  IF p_batch IS NULL OR jsonb_typeof(p_batch) <> 'array'
     OR NOT jsonb_path_exists(p_batch, '$[*] ? (exists(@.up) || exists(@.svc))') THEN
    RETURN;
  END IF;
  CREATE TEMP TABLE IF NOT EXISTS td_batch_ci (
    ci_id bigint PRIMARY KEY, up bigint[], svc bigint[]) ON COMMIT DELETE ROWS;
  INSERT INTO pg_temp.td_batch_ci AS b (ci_id, up, svc)
  SELECT DISTINCT ON ((e->>'ci_id')::bigint) (e->>'ci_id')::bigint,
         CASE WHEN jsonb_typeof(e->'up') = 'array'
              THEN ARRAY(SELECT jsonb_array_elements_text(e->'up')::bigint) END,
         CASE WHEN jsonb_typeof(e->'svc') = 'array'
              THEN ARRAY(SELECT jsonb_array_elements_text(e->'svc')::bigint) END
    FROM jsonb_array_elements(p_batch) e
   WHERE e->>'ci_id' IS NOT NULL AND (e ? 'up' OR e ? 'svc')
   ORDER BY (e->>'ci_id')::bigint
  ON CONFLICT (ci_id) DO UPDATE SET up = excluded.up, svc = excluded.svc;
END $$;

CREATE FUNCTION triaged._ci_up(p_ci bigint) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v bigint[];
BEGIN
  IF to_regclass('pg_temp.td_batch_ci') IS NOT NULL THEN
    SELECT b.up INTO v FROM pg_temp.td_batch_ci b WHERE b.ci_id = p_ci;
  END IF;
  RETURN coalesce(v, triaged.ci_upstream(p_ci));
END $$;

CREATE FUNCTION triaged._ci_svc(p_ci bigint) RETURNS bigint[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v bigint[];
BEGIN
  IF to_regclass('pg_temp.td_batch_ci') IS NOT NULL THEN
    SELECT b.svc INTO v FROM pg_temp.td_batch_ci b WHERE b.ci_id = p_ci;
  END IF;
  RETURN coalesce(v, triaged.ci_impacted_services(p_ci));
END $$;

-- Impact (1 = high) of a set of services: the best (lowest) tier among them,
-- one step higher when at least p_many are impacted; 3 when none.
CREATE FUNCTION triaged._impact(p_services bigint[], p_many integer) RETURNS smallint
LANGUAGE sql STABLE AS $$
  SELECT (CASE WHEN count(*) = 0 THEN 3
               ELSE greatest(1, min(s.tier) - CASE WHEN count(*) >= p_many THEN 1 ELSE 0 END)
          END)::smallint
    FROM triaged.service s WHERE s.id = ANY (p_services)
$$;

-- The impact x urgency matrix of this transaction's options (setting
-- triaged.priority_matrix: 9 numbers, row = impact 1..3, column = urgency
-- 1..3); by default the ITIL 3x3 matrix, impact + urgency - 1 (P1..P5).
CREATE FUNCTION triaged._matrix() RETURNS smallint[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_m text := current_setting('triaged.priority_matrix', true);
BEGIN
  IF v_m IS NOT NULL AND v_m ~ '^\s*[1-5]([\s,]+[1-5]){8}\s*$' THEN
    RETURN regexp_split_to_array(trim(v_m), '[\s,]+')::smallint[];
  END IF;
  RETURN '{1,2,3,2,3,4,3,4,5}'::smallint[];
END $$;

CREATE FUNCTION triaged._priority(p_impact smallint, p_urgency smallint) RETURNS smallint
LANGUAGE sql STABLE AS $$
  SELECT (triaged._matrix())[(p_impact - 1) * 3 + p_urgency]
$$;

-- ---------------------------------------------------------------------------
-- maintenance

-- Every maintenance window overlapping [p_from, p_to): one-off windows as
-- they are, weekly ones expanded day by day in their time zone and clipped
-- to active_from/active_until. Also what SLA downtime exclusion reads.
CREATE FUNCTION triaged.maintenance_windows(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (maintenance_id bigint, ci_id bigint, service_id bigint, during tstzrange,
               change_ref text, reason text)
LANGUAGE sql STABLE AS $$
  SELECT m.id, m.ci_id, m.service_id, m.during, m.change_ref, m.reason
    FROM triaged.maintenance m
   WHERE m.during && tstzrange(p_from, p_to, '[)')
  UNION ALL
  SELECT m.id, m.ci_id, m.service_id,
         w.r * tstzrange(m.active_from, m.active_until, '[)'), m.change_ref, m.reason
    FROM triaged.maintenance m
   CROSS JOIN LATERAL generate_series(((p_from AT TIME ZONE m.time_zone)::date - 7)::timestamp,
                                      ((p_to AT TIME ZONE m.time_zone)::date)::timestamp,
                                      interval '1 day') AS d(day)
   CROSS JOIN LATERAL (
     SELECT tstzrange((d.day + m.weekly_start) AT TIME ZONE m.time_zone,
                      ((d.day + m.weekly_start) AT TIME ZONE m.time_zone) + m.weekly_duration,
                      '[)') AS r) w
   WHERE m.weekly_days IS NOT NULL
     AND extract(isodow FROM d.day)::smallint = ANY (m.weekly_days)
     AND (w.r * tstzrange(m.active_from, m.active_until, '[)')) && tstzrange(p_from, p_to, '[)')
$$;

-- The maintenance (lowest id) covering CI p_ci at p_at, directly or through
-- a service the CI belongs to; NULL when none.
CREATE FUNCTION triaged.maintenance_at(p_ci bigint, p_at timestamptz) RETURNS bigint
LANGUAGE sql STABLE AS $$
  SELECT min(w.maintenance_id)
    FROM triaged.maintenance_windows(p_at, p_at + interval '1 microsecond') w
   WHERE w.ci_id = p_ci
      OR w.service_id IN (SELECT sc.service_id FROM triaged.service_ci sc WHERE sc.ci_id = p_ci)
$$;

-- ---------------------------------------------------------------------------
-- heartbeats

-- The fingerprint of the heartbeat_missing alert of (source, resource):
-- 'hb' + the first 14 hex digits of md5(source 0x1F resource), 16 characters
-- like every fingerprint, and never equal to an FNV one (those are hex only).
CREATE FUNCTION triaged.heartbeat_fingerprint(p_source text, p_resource text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT 'hb' || left(md5(p_source || chr(31) || p_resource), 14)
$$;

-- A heartbeat's timeout label (500ms 30s 5m 2h 7d, or plain seconds);
-- 5 minutes when absent or unreadable.
CREATE FUNCTION triaged.heartbeat_timeout(p text) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN p ~ '^\s*[0-9]+(\.[0-9]+)?\s*$' AND p::numeric > 0 THEN p::numeric * interval '1 second'
    WHEN p ~ '^\s*[0-9]+\s*(ms|s|m|h|d)\s*$' AND substring(p FROM '[0-9]+')::bigint > 0 THEN
      substring(p FROM '[0-9]+')::bigint *
      CASE substring(p FROM '(ms|s|m|h|d)\s*$')
        WHEN 'ms' THEN interval '1 millisecond' WHEN 's' THEN interval '1 second'
        WHEN 'm' THEN interval '1 minute' WHEN 'h' THEN interval '1 hour'
        ELSE interval '1 day' END
    ELSE interval '5 minutes' END
$$;

-- ---------------------------------------------------------------------------
-- 002's priority after a batch, redefined: a bound incident's priority is
-- the matrix's, from its impact and urgency; an unbound one keeps following
-- severity

CREATE OR REPLACE FUNCTION triaged._new_priority(p_ci_id bigint, p_impact smallint,
                                                 p_urgency smallint, p_priority smallint,
                                                 p_best_rank smallint)
RETURNS smallint
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN p_ci_id IS NOT NULL
              THEN triaged._priority(p_impact,
                     CASE WHEN p_best_rank IS NOT NULL
                          THEN least(p_urgency, triaged.severity_urgency(
                                 triaged.severity_of_rank(p_best_rank)))
                          ELSE p_urgency END)
              WHEN p_best_rank IS NOT NULL THEN least(p_priority, p_best_rank)
              ELSE p_priority END
$$;

-- ---------------------------------------------------------------------------
-- 002's find-or-open, redefined: a new alert on a CI downstream of an open
-- incident joins that incident (as a symptom: see _fix_roles) instead of
-- opening one of its own
-- 002's find-or-open under a new name, with one change: a new bound
-- incident is inserted knowing what the CMDB says (so its 'opened' event
-- says it too): a title naming its CI, its upstream CIs, the impact from the
-- services it impacts and the priority from the matrix. (_open_incidents
-- then records those services in incident_service.)
CREATE FUNCTION triaged._find_or_open(p_reqs triaged._group_req[])
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
    SELECT coalesce((SELECT c.name FROM triaged.ci c WHERE c.id = r.ci_id) || ': ', '') || r.title,
           'new', v_matrix[(k.impact - 1) * 3 + triaged.severity_urgency(r.severity)], k.impact,
           triaged.severity_urgency(r.severity), r.severity, r.ci_id, r.resource, r.opened_at,
           triaged._ci_up(r.ci_id)
      FROM unnest(p_reqs) r
     CROSS JOIN LATERAL (
       SELECT (CASE WHEN count(*) = 0 THEN 3   -- as triaged._impact
                    ELSE greatest(1, min(sv.tier) - CASE WHEN count(*) >= v_many THEN 1 ELSE 0 END)
               END)::smallint AS impact
         FROM triaged.service sv WHERE sv.id = ANY (triaged._ci_svc(r.ci_id))) k
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

CREATE TYPE triaged._req_up AS (gkey text, ci_id bigint, up bigint[]);

-- The groups of p_reqs (bound, with their upstream CIs in p_ups) whose CI
-- has no open incident but an upstream CI has one opened within p_window:
-- answered with that incident (the farthest upstream one), locked and still
-- open.
CREATE FUNCTION triaged._route(p_reqs triaged._group_req[], p_ups triaged._req_up[],
                               p_window interval)
RETURNS triaged._group_res[]
LANGUAGE plpgsql
SET enable_seqscan = off   -- lookups by key only (see _correlate)
SET jit = off
AS $$
DECLARE
  v_res triaged._group_res[];
BEGIN
  -- (per group: is its CI free, then the open incident of each upstream CI,
  -- farthest first, each an index probe by CI)
  SELECT coalesce(array_agg(ROW(r.gkey, u.ci_id, u.resource, u.id, false, u.number)
                            ::triaged._group_res ORDER BY u.id), '{}')
    INTO v_res
    FROM unnest(p_reqs) r
    JOIN unnest(p_ups) a ON a.gkey = r.gkey
    CROSS JOIN LATERAL (
      SELECT count(*) = 0 AS free FROM triaged.incident o
       WHERE o.ci_id = r.ci_id AND o.status IN ('new', 'acknowledged')
         AND o.merged_into IS NULL) f
    CROSS JOIN LATERAL (
      SELECT u.id, u.ci_id, u.resource, u.number
        FROM unnest(a.up) WITH ORDINALITY x(ci, pos)
        CROSS JOIN LATERAL (
          SELECT u.id, u.ci_id, u.resource, u.number, u.opened_at FROM triaged.incident u
           WHERE u.ci_id = x.ci AND u.status IN ('new', 'acknowledged')
             AND u.merged_into IS NULL
           LIMIT 1) u   -- (at most one: incident_open_ci_key; and a probe per CI)
       WHERE u.opened_at BETWEEN r.opened_at - p_window AND r.opened_at + p_window
       ORDER BY x.pos DESC LIMIT 1) u
   WHERE f.free AND cardinality(a.up) > 0;
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

-- Find or open, with correlation: a bound group whose CI has no open
-- incident joins the open incident of its farthest upstream CI opened within
-- the correlation window (this transaction's setting
-- triaged.correlation_window_ms). Groups with an upstream CI among the
-- groups of the same call wait until those are placed, so that a storm
-- arriving in one batch also gives one incident, not one per CI merged
-- afterwards.
CREATE OR REPLACE FUNCTION triaged._open_incidents(p_reqs triaged._group_req[])
RETURNS SETOF triaged._group_res
LANGUAGE plpgsql AS $$
DECLARE
  v_window interval;
  v_ups    triaged._req_up[];
  v_later  text[];
  v_now    triaged._group_req[];
  v_res    triaged._group_res[] := '{}';
  v_r      triaged._group_res[];
  v_opened bigint[];
BEGIN
  IF NOT EXISTS (SELECT 1 FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL) THEN
    RETURN QUERY SELECT * FROM triaged._find_or_open(p_reqs);
    RETURN;
  END IF;
  v_window := coalesce(nullif(current_setting('triaged.correlation_window_ms', true), '')::float8,
                       600000) * interval '1 millisecond';
  SELECT coalesce(array_agg(ROW(r.gkey, r.ci_id, triaged._ci_up(r.ci_id))::triaged._req_up),
                  '{}')
    INTO v_ups FROM unnest(p_reqs) r WHERE r.ci_id IS NOT NULL;
  SELECT coalesce(array_agg(DISTINCT u.gkey), '{}') INTO v_later
    FROM unnest(v_ups) u CROSS JOIN LATERAL unnest(u.up) x(ci)
   WHERE x.ci IN (SELECT o.ci_id FROM unnest(v_ups) o);
  -- first the groups with no upstream CI among them, then the others
  FOR i IN 1..2 LOOP
    v_now := ARRAY(SELECT r FROM unnest(p_reqs) r
                    WHERE (r.gkey IN (SELECT l FROM unnest(v_later) l)) = (i = 2)
                    ORDER BY r.gkey);
    CONTINUE WHEN cardinality(v_now) = 0;
    v_r := triaged._route(v_now, v_ups, v_window);
    v_res := v_res || v_r;
    v_now := ARRAY(SELECT r FROM unnest(v_now) r
                    WHERE r.gkey NOT IN (SELECT x.gkey FROM unnest(v_r) x));
    IF cardinality(v_now) > 0 THEN
      v_r := ARRAY(SELECT x FROM triaged._find_or_open(v_now) x);
      v_res := v_res || v_r;
      -- the services a new bound incident impacts (_find_or_open set its
      -- impact from them)
      v_opened := ARRAY(SELECT x.incident_id FROM unnest(v_r) x
                         WHERE x.opened AND x.ci_id IS NOT NULL);
      IF cardinality(v_opened) > 0 THEN
        INSERT INTO triaged.incident_service (incident_id, service_id)
        SELECT x.incident_id, sv FROM unnest(v_r) x
         CROSS JOIN LATERAL unnest(triaged._ci_svc(x.ci_id)) sv
         WHERE x.opened AND x.ci_id IS NOT NULL ORDER BY 1, 2
        ON CONFLICT (incident_id, service_id) DO NOTHING;
      END IF;
    END IF;
  END LOOP;
  RETURN QUERY SELECT * FROM unnest(v_res);
END $$;

-- ---------------------------------------------------------------------------
-- merge and correlation

-- Roles: in a bound incident, an alert on another CI than the incident's is
-- a symptom (it joined from downstream, directly or by a merge).
-- (PL/pgSQL, not SQL: it runs once a batch, and a SQL function's statement
-- is parsed and planned again at every call)
CREATE FUNCTION triaged._fix_roles(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  UPDATE triaged.incident_alert ia SET role = 'symptom'
    FROM triaged.incident i, triaged.alert a
   WHERE ia.incident_id = ANY (p_ids) AND i.id = ia.incident_id AND a.id = ia.alert_id
     AND ia.role = 'cause' AND i.ci_id IS NOT NULL AND a.ci_id IS DISTINCT FROM i.ci_id;
END $$;

-- Merge open incident p_from into open incident p_into: its alerts move to
-- p_into as symptoms, its impacted services too; p_from is closed with
-- merged_into set; p_into opens at the earlier of the two times and takes
-- the higher severity and urgency. A timeline event on both. Nothing happens
-- when either is no longer open.
CREATE FUNCTION triaged._merge(p_from bigint, p_into bigint, p_now timestamptz, p_actor text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_from   triaged.incident;
  v_into   triaged.incident;
  v_fps    jsonb;
  v_firing boolean;
BEGIN
  PERFORM 1 FROM triaged.incident i WHERE i.id IN (p_from, p_into) ORDER BY i.id FOR UPDATE;
  SELECT * INTO v_from FROM triaged.incident WHERE id = p_from;
  SELECT * INTO v_into FROM triaged.incident WHERE id = p_into;
  IF v_from.id IS NULL OR v_into.id IS NULL OR p_from = p_into
     OR v_from.merged_into IS NOT NULL OR v_into.merged_into IS NOT NULL
     OR v_from.status NOT IN ('new', 'acknowledged')
     OR v_into.status NOT IN ('new', 'acknowledged') THEN
    RETURN false;
  END IF;
  SELECT coalesce(jsonb_agg(a.fingerprint ORDER BY a.fingerprint), '[]') INTO v_fps
    FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
   WHERE ia.incident_id = p_from;
  INSERT INTO triaged.incident_alert (incident_id, alert_id, role)
  SELECT p_into, ia.alert_id, 'symptom' FROM triaged.incident_alert ia
   WHERE ia.incident_id = p_from ORDER BY ia.alert_id
  ON CONFLICT (incident_id, alert_id) DO NOTHING;
  DELETE FROM triaged.incident_alert WHERE incident_id = p_from;
  INSERT INTO triaged.incident_service (incident_id, service_id)
  SELECT p_into, s.service_id FROM triaged.incident_service s WHERE s.incident_id = p_from
   ORDER BY s.service_id
  ON CONFLICT (incident_id, service_id) DO NOTHING;
  UPDATE triaged.incident
     SET merged_into = p_into, status = 'closed', closed_at = p_now,
         resolve_pending_since = NULL, resolve_at = NULL, updated_at = now()
   WHERE id = p_from;
  SELECT EXISTS (SELECT 1 FROM triaged.incident_alert ia JOIN triaged.alert a ON a.id = ia.alert_id
                  WHERE ia.incident_id = p_into AND (a.status = 'firing' OR a.flapping))
    INTO v_firing;
  UPDATE triaged.incident
     SET opened_at = least(opened_at, v_from.opened_at),
         severity = CASE WHEN coalesce(triaged.severity_rank(v_from.severity), 99)
                              < coalesce(triaged.severity_rank(severity), 99)
                         THEN v_from.severity ELSE severity END,
         urgency = least(urgency, v_from.urgency),
         resolve_pending_since = CASE WHEN v_firing THEN NULL ELSE resolve_pending_since END,
         resolve_at = CASE WHEN v_firing THEN NULL ELSE resolve_at END,
         updated_at = now()
   WHERE id = p_into;
  PERFORM triaged.add_event(p_from, p_now, p_actor, 'merged_into',
    jsonb_build_object('into', v_into.number, 'into_id', p_into, 'ci_id', v_into.ci_id,
                       'fingerprints', v_fps));
  PERFORM triaged.add_event(p_into, p_now, p_actor, 'merged',
    jsonb_build_object('from', v_from.number, 'from_id', p_from, 'ci_id', v_from.ci_id,
                       'opened_at', v_from.opened_at, 'fingerprints', v_fps));
  RETURN true;
END $$;

-- Correlate incidents just opened (or reopened): each is merged into the open
-- incident of its farthest upstream CI opened within p_window of it, or else
-- absorbs the open incidents of its downstream CIs opened within p_window
-- (most incidents have neither: one query finds the few that do). Then, set
-- based, for every incident that absorbed others: impact (never lowered),
-- priority from the matrix, alert roles (an alert on another CI than the
-- incident's is a symptom), and the title (the root cause CI and the first
-- alert), each change with its timeline event. Returns incident.merged rows
-- for the merged ones and incident.updated rows for those that absorbed.
CREATE FUNCTION triaged._correlate(p_ids bigint[], p_now timestamptz, p_actor text,
                                   p_window interval, p_many integer)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
-- every lookup here is by key (incident by CI, by upstream CI through the
-- GIN index): a table whose statistics lag behind a storm (empty at the
-- last ANALYZE, thousands of open incidents now) must not be scanned once
-- per incident
SET enable_seqscan = off
SET jit = off
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
  v_changed bigint[];
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  -- Correlation decides from what other transactions committed: two batches
  -- in flight at once (the daemon's lanes, or several instances) opening
  -- incidents on an upstream and a downstream CI would each miss the other's
  -- and leave both open. So one transaction at a time correlates, until it
  -- commits; every search below starts after the lock (a statement's
  -- snapshot), so it sees the incidents of every batch correlated before.
  -- Batches that open no bound incident never take it. (Key: 'tria'.)
  PERFORM pg_advisory_xact_lock(1953655137);
  UPDATE triaged.incident i SET up_ci_ids = triaged._ci_up(i.ci_id)
   WHERE i.id = ANY (p_ids) AND i.ci_id IS NOT NULL AND i.up_ci_ids IS NULL;

  -- the ones with an open incident up- or downstream within the window:
  -- upstream by an index probe per upstream CI; downstream through the GIN
  -- index on up_ci_ids, once for all of them
  WITH o AS MATERIALIZED (
    SELECT i.id, i.ci_id, i.opened_at, i.up_ci_ids FROM triaged.incident i
     WHERE i.id = ANY (p_ids) AND i.ci_id IS NOT NULL),
  d AS MATERIALIZED (
    -- (the status test written so that only incident_up_idx can serve)
    SELECT d.id, d.opened_at, d.up_ci_ids FROM triaged.incident d
     WHERE d.up_ci_ids && ARRAY(SELECT o.ci_id FROM o)
       AND d.status || '' IN ('new', 'acknowledged') AND d.merged_into IS NULL)
  SELECT coalesce(array_agg(DISTINCT c.id ORDER BY c.id), '{}') INTO v_cand
    FROM (SELECT o.id
            FROM o CROSS JOIN LATERAL unnest(o.up_ci_ids) x(ci)
            CROSS JOIN LATERAL (
              SELECT u.id, u.opened_at FROM triaged.incident u
               WHERE u.ci_id = x.ci AND u.status IN ('new', 'acknowledged')
                 AND u.merged_into IS NULL
               LIMIT 1) u
           WHERE u.id <> o.id
             AND u.opened_at BETWEEN o.opened_at - p_window AND o.opened_at + p_window
          UNION ALL
          SELECT o.id
            FROM d CROSS JOIN LATERAL unnest(d.up_ci_ids) x(ci)
            JOIN o ON o.ci_id = x.ci
           WHERE o.id <> d.id
             AND d.opened_at BETWEEN o.opened_at - p_window AND o.opened_at + p_window) c;

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
    FOR v_d IN SELECT d.id
                 FROM (SELECT d.id, d.opened_at FROM triaged.incident d
                        WHERE d.up_ci_ids @> ARRAY[v_cur.ci_id]
                          AND d.status || '' IN ('new', 'acknowledged') AND d.merged_into IS NULL
                       OFFSET 0) d   -- (only incident_up_idx can serve: see above)
                WHERE d.id <> v_cur.id
                  AND d.opened_at BETWEEN v_cur.opened_at - p_window AND v_cur.opened_at + p_window
                ORDER BY d.id LOOP
      IF triaged._merge(v_d, v_cur.id, p_now, p_actor) THEN
        v_merged := v_merged || v_d;
        v_targets := v_targets || v_cur.id;
      END IF;
    END LOOP;
  END LOOP;

  -- the incidents that absorbed others (an incident opened alone got its
  -- services, impact and title when it opened: _open_incidents), locked in
  -- id order
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
  -- (a reopened incident of before 003 may lack its own CI's services)
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
  SELECT coalesce(array_agg(ev.e ORDER BY k.incident_id, k.seq), '{}'),
         coalesce(array_agg(DISTINCT k.incident_id), '{}')
    INTO v_events, v_changed
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
-- suppression (maintenance) and what ends it

CREATE INDEX alert_suppressed_idx ON triaged.alert (id) WHERE suppressed;

-- Record firing segments inside maintenance (JSON array of batch segments,
-- each with its maintenance_id): the alert is created, re-fired or counted as
-- usual but marked suppressed, and gets no incident. Out-of-order rules as
-- in ingest: a segment older than the alert's state only counts. Returns an
-- alert.suppressed row per segment.
CREATE FUNCTION triaged._record_suppressed(p_segs jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_s   record;
  v_a   triaged.alert;
  v_det jsonb;
BEGIN
  FOR v_s IN
    SELECT s.fp, s.source, s.resource, s."check", s.dedup_key, s.ci_id, s.summary,
           coalesce(s.labels, '{}'::jsonb) AS labels, s.severity,
           sum(s.n)::bigint AS n, min(s."first") AS "first", max(s."last") AS "last",
           min(s.maintenance_id) AS mid
      FROM jsonb_to_recordset(p_segs) AS s(fp text, source text, resource text, "check" text,
             dedup_key text, ci_id bigint, summary text, labels jsonb, severity text, n bigint,
             "first" timestamptz, "last" timestamptz, maintenance_id bigint)
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
     ORDER BY s.fp
  LOOP
    v_det := jsonb_build_object('suppressed', true, 'maintenance_id', v_s.mid);
    SELECT * INTO v_a FROM triaged.alert WHERE fingerprint = v_s.fp FOR NO KEY UPDATE;
    IF NOT FOUND THEN
      INSERT INTO triaged.alert (fingerprint, source, resource, check_name, dedup_key, severity,
                                 status, summary, labels, ci_id, occurrences, first_seen,
                                 last_seen, fired_at, resolved_at, state_changed_at, suppressed)
      VALUES (v_s.fp, v_s.source, v_s.resource, v_s."check", v_s.dedup_key, v_s.severity,
              'firing', v_s.summary, v_s.labels, v_s.ci_id, v_s.n, v_s."first",
              greatest(v_s."last", v_s."first"), v_s."first", NULL, v_s."first", true)
      RETURNING * INTO v_a;
      INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                         occurrences, detail)
      VALUES (v_a.id, v_s."first", NULL, 'firing', v_a.severity, v_a.occurrences, v_det);
    ELSIF v_a.status = 'resolved' AND v_s."first" >= v_a.state_changed_at THEN
      UPDATE triaged.alert
         SET status = 'firing', fired_at = v_s."first", resolved_at = NULL,
             state_changed_at = v_s."first", severity = v_s.severity,
             summary = coalesce(v_s.summary, summary), labels = v_s.labels, ci_id = v_s.ci_id,
             occurrences = occurrences + v_s.n, first_seen = least(first_seen, v_s."first"),
             last_seen = greatest(last_seen, v_s."last"), suppressed = true, updated_at = now()
       WHERE id = v_a.id RETURNING * INTO v_a;
      INSERT INTO triaged.alert_history (alert_id, at, from_status, to_status, severity,
                                         occurrences, detail)
      VALUES (v_a.id, v_s."first", 'resolved', 'firing', v_a.severity, v_a.occurrences, v_det);
    ELSE
      UPDATE triaged.alert
         SET occurrences = occurrences + v_s.n, first_seen = least(first_seen, v_s."first"),
             last_seen = greatest(last_seen, v_s."last"), updated_at = now()
       WHERE id = v_a.id RETURNING * INTO v_a;
    END IF;
    RETURN NEXT ROW('alert.suppressed', v_a.fingerprint,
                    triaged.alert_payload(v_a.fingerprint, v_a.status, v_a.severity, v_a.resource,
                                          v_a.check_name, v_a.occurrences, v_a.first_seen,
                                          v_a.last_seen, v_a.flapping, NULL))::triaged.ingest_row;
  END LOOP;
END $$;

-- Give firing alerts that were suppressed (and are no longer) their
-- incident, as a new alert would get it: join their group's open incident
-- or open one, at p_at (NULL: each alert's last_seen). Returns the rows of
-- the incidents touched.
CREATE FUNCTION triaged._open_for_alerts(p_ids bigint[], p_at timestamptz, p_now timestamptz,
                                         p_actor text)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_reqs    triaged._group_req[];
  v_grp     triaged._group_res[];
  v_changes triaged._change[];
BEGIN
  IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
    RETURN;
  END IF;
  SELECT coalesce(array_agg(ROW(x.gkey, x.ci_id, x.resource, x.title, x.opened_at,
                                triaged.severity_of_rank(x.best))::triaged._group_req
                            ORDER BY x.gkey), '{}')
    INTO v_reqs
    FROM (SELECT DISTINCT ON (triaged._gkey(a.ci_id, a.resource))
                 triaged._gkey(a.ci_id, a.resource) AS gkey, a.ci_id, a.resource,
                 a.check_name || ' on ' || a.resource AS title,
                 min(coalesce(p_at, a.last_seen)) OVER w AS opened_at,
                 min(triaged.severity_rank(a.severity)) OVER w AS best
            FROM triaged.alert a WHERE a.id = ANY (p_ids)
          WINDOW w AS (PARTITION BY triaged._gkey(a.ci_id, a.resource))
           ORDER BY triaged._gkey(a.ci_id, a.resource), a.last_seen, a.fingerprint) x;
  SELECT coalesce(array_agg(r), '{}') INTO v_grp FROM triaged._open_incidents(v_reqs) r;
  WITH m AS (
    SELECT a.id, a.fingerprint, coalesce(p_at, a.last_seen) AS at, a.severity, g.incident_id
      FROM triaged.alert a JOIN unnest(v_grp) g ON g.gkey = triaged._gkey(a.ci_id, a.resource)
     WHERE a.id = ANY (p_ids)),
  ins AS (
    INSERT INTO triaged.incident_alert AS ia (incident_id, alert_id, role)
    SELECT m.incident_id, m.id, 'cause' FROM m ORDER BY m.incident_id, m.id
    ON CONFLICT (incident_id, alert_id) DO UPDATE SET attached_at = now())
  SELECT coalesce(array_agg(ROW(m.incident_id, 'attached', m.fingerprint, m.at, m.severity,
                                NULL)::triaged._change), '{}')
    INTO v_changes FROM m;
  SELECT v_changes || coalesce(array_agg(ROW(g.incident_id, 'opened', NULL, NULL, NULL, NULL)
                                         ::triaged._change), '{}')
    INTO v_changes FROM unnest(v_grp) g WHERE g.opened;
  RETURN QUERY SELECT * FROM triaged._finish_incidents(v_changes, p_now, p_actor);
END $$;

-- ---------------------------------------------------------------------------
-- ingest and tick: 002's functions wrapped (see the header)

ALTER FUNCTION triaged.ingest(jsonb, jsonb, jsonb) RENAME TO _ingest_core;
ALTER FUNCTION triaged.tick(jsonb) RENAME TO _tick_core;

CREATE FUNCTION triaged.ingest(p_batch jsonb, p_offsets jsonb, p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql
SET TimeZone = 'UTC'
SET jit = off
SET enable_seqscan = off -- as 002's: plans cached while the tables were small
AS $$
DECLARE
  v_now    timestamptz;
  v_actor  text;
  v_window interval;
  v_many   integer;
  v_hb     jsonb := '[]';
  v_sup    jsonb := '[]';
  v_add    jsonb := '[]';
  v_drop   bigint[] := '{}';
  v_tmp    bigint[];
  v_core   jsonb := p_batch;
  v_rows   triaged.ingest_row[];
  v_post   triaged.ingest_row[] := '{}';
  v_stats  jsonb := '{}';
  v_plain  text[];
  v_unsup  bigint[];
  v_opened bigint[];
BEGIN
  IF p_opts IS NULL OR jsonb_typeof(p_opts) <> 'object' THEN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value',
      MESSAGE = 'triaged.ingest: options ($3) must be a JSON object';
  END IF;
  v_now    := coalesce((p_opts->>'now')::timestamptz, now());
  v_actor  := coalesce(nullif(p_opts->>'actor', ''), 'triaged');
  v_window := coalesce((p_opts->>'correlation_window_ms')::float8, 600000) * interval '1 millisecond';
  v_many   := coalesce((p_opts->>'impact_many_services')::integer, 3);
  PERFORM set_config('triaged.priority_matrix', coalesce(p_opts->>'priority_matrix', ''), true);
  PERFORM set_config('triaged.correlation_window_ms',
                     coalesce(p_opts->>'correlation_window_ms', ''), true);
  PERFORM set_config('triaged.impact_many_services',
                     coalesce(p_opts->>'impact_many_services', ''), true);
  PERFORM triaged._batch_ci_prepare(p_batch);

  IF jsonb_typeof(p_batch) = 'array' AND jsonb_array_length(p_batch) > 0 THEN
    -- heartbeats leave the batch; a heartbeat ends its firing heartbeat_missing
    IF p_batch @> '[{"check": "heartbeat"}]' THEN
      SELECT coalesce(jsonb_agg(t.e ORDER BY t.o), '[]'), coalesce(array_agg(t.o), '{}')
        INTO v_hb, v_drop
        FROM jsonb_array_elements(p_batch) WITH ORDINALITY t(e, o)
       WHERE t.e->>'check' = 'heartbeat';
      SELECT coalesce(jsonb_agg(jsonb_build_object(
               'fp', a.fingerprint, 'source', a.source, 'resource', a.resource,
               'check', a.check_name, 'dedup_key', NULL, 'ci_id', a.ci_id, 'summary', NULL,
               'labels', a.labels, 'severity', a.severity, 'status', 'resolved', 'n', 0,
               'first', h.at, 'last', h.at, 'hint', 'change') ORDER BY a.fingerprint), '[]')
        INTO v_add
        FROM (SELECT e->>'source' AS src, e->>'resource' AS res,
                     max((e->>'last')::timestamptz) AS at
                FROM jsonb_array_elements(v_hb) e GROUP BY 1, 2) h
        JOIN triaged.alert a ON a.fingerprint = triaged.heartbeat_fingerprint(h.src, h.res)
       WHERE a.status = 'firing';
    END IF;
    -- firing segments of CIs in maintenance leave the batch (unless their
    -- alert is already firing unsuppressed: then they only count, as usual)
    IF EXISTS (SELECT 1 FROM triaged.maintenance) THEN
      SELECT coalesce(jsonb_agg(t.e || jsonb_build_object('maintenance_id', t.mid) ORDER BY t.o),
                      '[]'),
             coalesce(array_agg(t.o), '{}')
        INTO v_sup, v_tmp
        FROM (SELECT x.e, x.o,
                     triaged.maintenance_at((x.e->>'ci_id')::bigint,
                                            (x.e->>'first')::timestamptz) AS mid
                FROM jsonb_array_elements(p_batch) WITH ORDINALITY x(e, o)
               WHERE x.e->>'status' = 'firing' AND x.e->>'ci_id' IS NOT NULL
                 AND x.e->>'check' <> 'heartbeat') t
       WHERE t.mid IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM triaged.alert a
                          WHERE a.fingerprint = t.e->>'fp' AND a.status = 'firing'
                            AND NOT a.suppressed);
      v_drop := v_drop || v_tmp;
    END IF;
    IF cardinality(v_drop) > 0 OR jsonb_array_length(v_add) > 0 THEN
      SELECT coalesce(jsonb_agg(t.e ORDER BY t.o), '[]') INTO v_core
        FROM jsonb_array_elements(p_batch) WITH ORDINALITY t(e, o)
       WHERE t.o <> ALL (v_drop);
      v_core := v_core || v_add;
    END IF;
  END IF;

  SELECT coalesce(array_agg(ROW(r.kind, r.key, r.payload)::triaged.ingest_row ORDER BY r.o), '{}')
    INTO v_rows
    FROM triaged._ingest_core(v_core, p_offsets, p_opts) WITH ORDINALITY r(kind, key, payload, o);
  IF EXISTS (SELECT 1 FROM unnest(v_rows) r WHERE r.kind = 'fenced') THEN
    RETURN QUERY SELECT * FROM unnest(v_rows);   -- nothing was applied
    RETURN;
  END IF;

  IF jsonb_array_length(v_sup) > 0 THEN
    v_post := v_post || ARRAY(SELECT r FROM triaged._record_suppressed(v_sup) r);
  END IF;

  IF jsonb_array_length(v_hb) > 0 THEN
    INSERT INTO triaged.heartbeat AS h (source, resource, ci_id, timeout, last_at)
    SELECT DISTINCT ON (e->>'source', e->>'resource')
           e->>'source', e->>'resource', (e->>'ci_id')::bigint,
           triaged.heartbeat_timeout(e->'labels'->>'timeout'), (e->>'last')::timestamptz
      FROM jsonb_array_elements(v_hb) e
     ORDER BY e->>'source', e->>'resource', (e->>'last')::timestamptz DESC
    ON CONFLICT (source, resource) DO UPDATE
       SET ci_id = coalesce(EXCLUDED.ci_id, h.ci_id), timeout = EXCLUDED.timeout,
           last_at = greatest(h.last_at, EXCLUDED.last_at),
           missing_since = CASE WHEN EXCLUDED.last_at > h.last_at THEN NULL
                                ELSE h.missing_since END,
           updated_at = now();
  END IF;

  -- alerts that fire again outside maintenance are no longer suppressed; a
  -- firing one without an open incident gets one now
  IF EXISTS (SELECT 1 FROM triaged.alert a WHERE a.suppressed) THEN
    SELECT coalesce(array_agg(DISTINCT e->>'fp'), '{}') INTO v_plain
      FROM jsonb_array_elements(v_core) e WHERE e->>'status' = 'firing';
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

  -- correlation of the incidents this batch opened or reopened
  SELECT coalesce(array_agg(DISTINCT i.id), '{}') INTO v_opened
    FROM unnest(v_rows || v_post) r
    JOIN triaged.incident i ON i.number = r.key
   WHERE r.kind IN ('incident.opened', 'incident.reopened') AND i.ci_id IS NOT NULL;
  IF cardinality(v_opened) > 0 THEN
    v_post := v_post || ARRAY(SELECT r FROM triaged._correlate(v_opened, v_now, v_actor, v_window,
                                                                v_many) r);
  END IF;

  -- alerts that joined an incident of another CI are its symptoms
  PERFORM triaged._fix_roles(ARRAY(
    SELECT DISTINCT i.id FROM unnest(v_rows || v_post) r JOIN triaged.incident i ON i.number = r.key
     WHERE r.kind IN ('incident.opened', 'incident.reopened', 'incident.updated')
       AND i.ci_id IS NOT NULL));

  RETURN QUERY SELECT * FROM unnest(v_rows) r WHERE r.kind <> 'stats';
  RETURN QUERY SELECT * FROM unnest(v_post);
  SELECT coalesce((SELECT r.payload::jsonb FROM unnest(v_rows) r WHERE r.kind = 'stats' LIMIT 1),
                  '{}') INTO v_stats;
  RETURN NEXT ROW('stats', NULL, (v_stats || jsonb_build_object(
    'suppressed', jsonb_array_length(v_sup),
    'heartbeats', jsonb_array_length(v_hb),
    'merged', (SELECT count(*) FROM unnest(v_post) r WHERE r.kind = 'incident.merged')))::json)
    ::triaged.ingest_row;
  RETURN;
END $$;

CREATE FUNCTION triaged.tick(p_opts jsonb)
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
  v_rows   triaged.ingest_row[] := '{}';
  v_opened bigint[];
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

  -- missing heartbeats raise heartbeat_missing, through ingest (so they
  -- bind, correlate and respect maintenance like any alert)
  WITH due AS (
    SELECT h.source, h.resource FROM triaged.heartbeat h
     WHERE h.missing_since IS NULL AND h.last_at + h.timeout <= v_now
     ORDER BY h.source, h.resource FOR UPDATE SKIP LOCKED),
  upd AS (
    UPDATE triaged.heartbeat h SET missing_since = h.last_at + h.timeout, updated_at = now()
      FROM due WHERE h.source = due.source AND h.resource = due.resource
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
    RETURN QUERY SELECT * FROM triaged.ingest(v_batch, NULL, p_opts) r WHERE r.kind <> 'stats';
  END IF;

  -- maintenance over: suppressed firing alerts get their incident now
  SELECT coalesce(array_agg(x.id), '{}') INTO v_ids
    FROM (SELECT a.id FROM triaged.alert a
           WHERE a.suppressed AND a.status = 'firing'
             AND (a.ci_id IS NULL OR triaged.maintenance_at(a.ci_id, v_now) IS NULL)
           ORDER BY a.id FOR NO KEY UPDATE SKIP LOCKED) x;
  IF cardinality(v_ids) > 0 THEN
    UPDATE triaged.alert SET suppressed = false, updated_at = now() WHERE id = ANY (v_ids);
    SELECT coalesce(array_agg(a.id ORDER BY a.id), '{}') INTO v_ids
      FROM triaged.alert a
     WHERE a.id = ANY (v_ids)
       AND NOT EXISTS (SELECT 1 FROM triaged.incident_alert ia
                         JOIN triaged.incident i ON i.id = ia.incident_id
                        WHERE ia.alert_id = a.id AND i.status IN ('new', 'acknowledged')
                          AND i.merged_into IS NULL);
    v_rows := ARRAY(SELECT r FROM triaged._open_for_alerts(v_ids, v_now, v_now, v_actor) r);
    SELECT coalesce(array_agg(DISTINCT i.id), '{}') INTO v_opened
      FROM unnest(v_rows) r JOIN triaged.incident i ON i.number = r.key
     WHERE r.kind = 'incident.opened' AND i.ci_id IS NOT NULL;
    RETURN QUERY SELECT * FROM unnest(v_rows);
    RETURN QUERY SELECT * FROM triaged._correlate(v_opened, v_now, v_actor,
      coalesce((p_opts->>'correlation_window_ms')::float8, 600000) * interval '1 millisecond',
      coalesce((p_opts->>'impact_many_services')::integer, 3));
  END IF;
  RETURN;
END $$;

COMMENT ON FUNCTION triaged.ingest(jsonb, jsonb, jsonb) IS
  'One batch of alert segments -> alerts, incidents, timeline, with the CMDB: heartbeats, '
  'maintenance, correlation (sql/003_cmdb.sql around 002''s _ingest_core).';
COMMENT ON FUNCTION triaged.tick(jsonb) IS
  'Time-driven decisions: 002''s _tick_core, then missing heartbeats and ended maintenance.';

-- ---------------------------------------------------------------------------
-- CMDB import and export (triagectl cmdb import / export; README documents
-- the format)
--
-- Document: {"cis": [{"name", "kind", "aliases": [], "addresses": [],
--                     "criticality", "attributes": {}}],
--            "relations": [{"child", "parent", "kind"}],
--            "services": [{"name", "tier", "owner_team", "description",
--                          "cis": [names]}]}
-- Upsert by name: a key absent from an entry keeps the stored value (or the
-- default for a new row); a service's "cis", when given, is its whole list.
-- Nothing is ever deleted but service memberships. Relations refer to CIs by
-- name, in the document or already stored.
--
-- cmdb_import validates everything first and writes only when nothing is
-- rejected: it returns either only 'rejected' rows (and changed nothing) or
-- 'created' / 'changed' rows (unchanged entries give no row). Rejections:
-- malformed entries, duplicate names in the document, unknown references,
-- self-dependencies, and cycles (with their path) through a new relation.

CREATE FUNCTION triaged.cmdb_import(p_doc jsonb)
RETURNS TABLE (status text, kind text, name text, detail text)
LANGUAGE plpgsql
SET client_min_messages = warning
AS $$
#variable_conflict use_column
DECLARE
  v_e     jsonb;
  v_o     bigint;
  v_bad   text;
  v_addrs inet[];
  v_k     text;
  v_path  text[];
  v_rel   record;
BEGIN
  DROP TABLE IF EXISTS pg_temp.td_imp_report, pg_temp.td_imp_ci, pg_temp.td_imp_rel,
                       pg_temp.td_imp_svc, pg_temp.td_imp_edge;
  CREATE TEMP TABLE td_imp_report (ord serial, status text, kind text, name text, detail text)
    ON COMMIT DROP;
  CREATE TEMP TABLE td_imp_ci (ord bigint, name text, kind text, aliases text[],
                               addresses inet[], criticality text, attributes jsonb)
    ON COMMIT DROP;
  CREATE TEMP TABLE td_imp_rel (ord bigint, child text, parent text, kind text) ON COMMIT DROP;
  CREATE TEMP TABLE td_imp_svc (ord bigint, name text, tier smallint, owner_team text,
                                has_owner boolean, description text, has_description boolean,
                                cis text[]) ON COMMIT DROP;

  IF p_doc IS NULL OR jsonb_typeof(p_doc) <> 'object' THEN
    RETURN QUERY SELECT 'rejected', 'document', '', 'the document must be a JSON object';
    RETURN;
  END IF;
  FOR v_k IN SELECT jsonb_object_keys(p_doc) LOOP
    IF v_k NOT IN ('cis', 'relations', 'services') THEN
      INSERT INTO td_imp_report (status, kind, name, detail)
      VALUES ('rejected', 'document', v_k, 'unknown key (expected cis, relations, services)');
    ELSIF jsonb_typeof(p_doc->v_k) <> 'array' THEN
      INSERT INTO td_imp_report (status, kind, name, detail)
      VALUES ('rejected', 'document', v_k, 'must be an array');
    END IF;
  END LOOP;
  IF EXISTS (SELECT 1 FROM td_imp_report) THEN
    RETURN QUERY SELECT r.status, r.kind, r.name, r.detail FROM td_imp_report r ORDER BY r.ord;
    RETURN;
  END IF;

  -- CIs
  FOR v_e, v_o IN SELECT t.e, t.o FROM jsonb_array_elements(coalesce(p_doc->'cis', '[]'))
                                       WITH ORDINALITY t(e, o) LOOP
    v_bad := NULL;
    v_addrs := NULL;
    IF jsonb_typeof(v_e) <> 'object' THEN
      v_bad := 'not an object';
    ELSIF jsonb_typeof(v_e->'name') IS DISTINCT FROM 'string' OR v_e->>'name' = '' THEN
      v_bad := 'name must be a non-empty string';
    ELSIF EXISTS (SELECT 1 FROM jsonb_object_keys(v_e) k
                   WHERE k NOT IN ('name', 'kind', 'aliases', 'addresses', 'criticality',
                                   'attributes')) THEN
      v_bad := 'unknown key ' || (SELECT string_agg(k, ', ') FROM jsonb_object_keys(v_e) k
                                   WHERE k NOT IN ('name', 'kind', 'aliases', 'addresses',
                                                   'criticality', 'attributes'));
    ELSIF v_e ? 'kind' AND (jsonb_typeof(v_e->'kind') <> 'string' OR v_e->>'kind' = '') THEN
      v_bad := 'kind must be a non-empty string';
    ELSIF v_e ? 'aliases' AND (jsonb_typeof(v_e->'aliases') <> 'array'
          OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_e->'aliases') a
                      WHERE jsonb_typeof(a) <> 'string' OR a #>> '{}' = '')) THEN
      v_bad := 'aliases must be an array of non-empty strings';
    ELSIF v_e ? 'criticality' AND (v_e->>'criticality') NOT IN ('low', 'medium', 'high', 'critical') THEN
      v_bad := 'criticality must be low, medium, high or critical';
    ELSIF v_e ? 'attributes' AND jsonb_typeof(v_e->'attributes') <> 'object' THEN
      v_bad := 'attributes must be an object';
    ELSIF v_e ? 'addresses' THEN
      IF jsonb_typeof(v_e->'addresses') <> 'array'
         OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_e->'addresses') a
                     WHERE jsonb_typeof(a) <> 'string') THEN
        v_bad := 'addresses must be an array of IP addresses';
      ELSE
        BEGIN
          SELECT coalesce(array_agg(a::inet ORDER BY o), '{}') INTO v_addrs
            FROM jsonb_array_elements_text(v_e->'addresses') WITH ORDINALITY t(a, o);
        EXCEPTION WHEN invalid_text_representation THEN
          v_bad := 'addresses must be an array of IP addresses: ' || SQLERRM;
        END;
      END IF;
    END IF;
    IF v_bad IS NOT NULL THEN
      INSERT INTO td_imp_report (status, kind, name, detail)
      VALUES ('rejected', 'ci', coalesce(v_e->>'name', '#' || v_o), 'ci #' || v_o || ': ' || v_bad);
      CONTINUE;
    END IF;
    INSERT INTO td_imp_ci VALUES (v_o, v_e->>'name', v_e->>'kind',
      CASE WHEN v_e ? 'aliases' THEN ARRAY(SELECT jsonb_array_elements_text(v_e->'aliases')) END,
      v_addrs, v_e->>'criticality', v_e->'attributes');
  END LOOP;
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'rejected', 'ci', c.name, format('duplicate name: entries #%s', string_agg(c.ord::text, ', #' ORDER BY c.ord))
    FROM td_imp_ci c GROUP BY c.name HAVING count(*) > 1 ORDER BY c.name;

  -- relations
  FOR v_e, v_o IN SELECT t.e, t.o FROM jsonb_array_elements(coalesce(p_doc->'relations', '[]'))
                                       WITH ORDINALITY t(e, o) LOOP
    v_bad := NULL;
    IF jsonb_typeof(v_e) <> 'object' THEN
      v_bad := 'not an object';
    ELSIF jsonb_typeof(v_e->'child') IS DISTINCT FROM 'string'
          OR jsonb_typeof(v_e->'parent') IS DISTINCT FROM 'string' THEN
      v_bad := 'child and parent must be CI names';
    ELSIF EXISTS (SELECT 1 FROM jsonb_object_keys(v_e) k WHERE k NOT IN ('child', 'parent', 'kind')) THEN
      v_bad := 'unknown key (expected child, parent, kind)';
    ELSIF v_e ? 'kind' AND (v_e->>'kind') NOT IN ('runs_on', 'hosted_on', 'connected_to', 'depends_on') THEN
      v_bad := 'kind must be runs_on, hosted_on, connected_to or depends_on';
    ELSIF v_e->>'child' = v_e->>'parent' THEN
      v_bad := 'a CI cannot depend on itself';
    END IF;
    IF v_bad IS NOT NULL THEN
      INSERT INTO td_imp_report (status, kind, name, detail)
      VALUES ('rejected', 'relation', coalesce(v_e->>'child', '?') || ' -> ' || coalesce(v_e->>'parent', '?'),
              'relation #' || v_o || ': ' || v_bad);
      CONTINUE;
    END IF;
    INSERT INTO td_imp_rel VALUES (v_o, v_e->>'child', v_e->>'parent', v_e->>'kind');
  END LOOP;
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'rejected', 'relation', r.child || ' -> ' || r.parent,
         format('duplicate relation: entries #%s', string_agg(r.ord::text, ', #' ORDER BY r.ord))
    FROM td_imp_rel r GROUP BY r.child, r.parent HAVING count(*) > 1 ORDER BY r.child, r.parent;
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'rejected', 'relation', r.child || ' -> ' || r.parent,
         format('relation #%s: unknown reference: no CI named %s', r.ord, quote_literal(n.name))
    FROM td_imp_rel r
   CROSS JOIN LATERAL (VALUES (r.child), (r.parent)) n(name)
   WHERE NOT EXISTS (SELECT 1 FROM td_imp_ci c WHERE c.name = n.name)
     AND NOT EXISTS (SELECT 1 FROM triaged.ci c WHERE c.name = n.name)
   ORDER BY r.ord;

  -- services
  FOR v_e, v_o IN SELECT t.e, t.o FROM jsonb_array_elements(coalesce(p_doc->'services', '[]'))
                                       WITH ORDINALITY t(e, o) LOOP
    v_bad := NULL;
    IF jsonb_typeof(v_e) <> 'object' THEN
      v_bad := 'not an object';
    ELSIF jsonb_typeof(v_e->'name') IS DISTINCT FROM 'string' OR v_e->>'name' = '' THEN
      v_bad := 'name must be a non-empty string';
    ELSIF EXISTS (SELECT 1 FROM jsonb_object_keys(v_e) k
                   WHERE k NOT IN ('name', 'tier', 'owner_team', 'description', 'cis')) THEN
      v_bad := 'unknown key (expected name, tier, owner_team, description, cis)';
    ELSIF v_e ? 'tier' AND (jsonb_typeof(v_e->'tier') <> 'number'
                            OR (v_e->>'tier') NOT IN ('1', '2', '3')) THEN
      v_bad := 'tier must be 1, 2 or 3';
    ELSIF v_e ? 'owner_team' AND jsonb_typeof(v_e->'owner_team') NOT IN ('string', 'null') THEN
      v_bad := 'owner_team must be a string';
    ELSIF v_e ? 'description' AND jsonb_typeof(v_e->'description') NOT IN ('string', 'null') THEN
      v_bad := 'description must be a string';
    ELSIF v_e ? 'cis' AND (jsonb_typeof(v_e->'cis') <> 'array'
          OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_e->'cis') a WHERE jsonb_typeof(a) <> 'string')) THEN
      v_bad := 'cis must be an array of CI names';
    END IF;
    IF v_bad IS NOT NULL THEN
      INSERT INTO td_imp_report (status, kind, name, detail)
      VALUES ('rejected', 'service', coalesce(v_e->>'name', '#' || v_o), 'service #' || v_o || ': ' || v_bad);
      CONTINUE;
    END IF;
    INSERT INTO td_imp_svc VALUES (v_o, v_e->>'name', (v_e->>'tier')::smallint, v_e->>'owner_team',
      v_e ? 'owner_team', v_e->>'description', v_e ? 'description',
      CASE WHEN v_e ? 'cis' THEN ARRAY(SELECT DISTINCT jsonb_array_elements_text(v_e->'cis')) END);
  END LOOP;
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'rejected', 'service', s.name, format('duplicate name: entries #%s', string_agg(s.ord::text, ', #' ORDER BY s.ord))
    FROM td_imp_svc s GROUP BY s.name HAVING count(*) > 1 ORDER BY s.name;
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'rejected', 'service', s.name,
         format('service #%s: unknown reference: no CI named %s', s.ord, quote_literal(n))
    FROM td_imp_svc s CROSS JOIN LATERAL unnest(s.cis) n
   WHERE NOT EXISTS (SELECT 1 FROM td_imp_ci c WHERE c.name = n)
     AND NOT EXISTS (SELECT 1 FROM triaged.ci c WHERE c.name = n)
   ORDER BY s.ord, n;

  -- cycles through a new relation: peel the dependency graph (stored plus
  -- new edges) from the bottom; what stays lies on or above a cycle; then
  -- look for a path back to each remaining new edge's child
  IF NOT EXISTS (SELECT 1 FROM td_imp_report) AND EXISTS (SELECT 1 FROM td_imp_rel) THEN
    CREATE TEMP TABLE td_imp_edge ON COMMIT DROP AS
      SELECT c.name AS child, p.name AS parent, false AS new
        FROM triaged.ci_relation r JOIN triaged.ci c ON c.id = r.child_id
        JOIN triaged.ci p ON p.id = r.parent_id
       WHERE NOT EXISTS (SELECT 1 FROM td_imp_rel n WHERE n.child = c.name AND n.parent = p.name)
      UNION ALL
      SELECT r.child, r.parent, true FROM td_imp_rel r;
    CREATE INDEX ON td_imp_edge (parent);
    CREATE INDEX ON td_imp_edge (child);
    ANALYZE td_imp_edge;
    LOOP
      DELETE FROM td_imp_edge e
       WHERE NOT EXISTS (SELECT 1 FROM td_imp_edge x WHERE x.parent = e.child);
      EXIT WHEN NOT FOUND;
    END LOOP;
    FOR v_rel IN SELECT e.child, e.parent FROM td_imp_edge e WHERE e.new
                  ORDER BY e.child, e.parent LOOP
      WITH RECURSIVE w (node, path) AS (
        SELECT v_rel.parent, ARRAY[v_rel.child, v_rel.parent]
        UNION ALL
        SELECT x.parent, w.path || x.parent
          FROM w JOIN td_imp_edge x ON x.child = w.node
         WHERE w.node <> v_rel.child AND cardinality(w.path) < 64
           AND (x.parent = v_rel.child OR x.parent <> ALL (w.path)))
      SELECT w.path INTO v_path FROM w WHERE w.node = v_rel.child LIMIT 1;
      IF v_path IS NOT NULL THEN
        INSERT INTO td_imp_report (status, kind, name, detail)
        VALUES ('rejected', 'relation', v_rel.child || ' -> ' || v_rel.parent,
                'cycle: ' || array_to_string(v_path, ' -> ') || ' (each depends on the next)');
        EXIT;   -- one cycle is enough to say why
      END IF;
    END LOOP;
  END IF;

  IF EXISTS (SELECT 1 FROM td_imp_report) THEN
    RETURN QUERY SELECT r.status, r.kind, r.name, r.detail FROM td_imp_report r ORDER BY r.ord;
    RETURN;
  END IF;

  -- all valid: write
  WITH u AS (
    UPDATE triaged.ci c
       SET kind = coalesce(n.kind, c.kind), aliases = coalesce(n.aliases, c.aliases),
           addresses = coalesce(n.addresses, c.addresses),
           criticality = coalesce(n.criticality, c.criticality),
           attributes = coalesce(n.attributes, c.attributes), retired_at = NULL
      FROM td_imp_ci n
     WHERE c.name = n.name
       AND (c.kind, c.aliases, c.addresses, c.criticality, c.attributes, c.retired_at IS NULL)
           IS DISTINCT FROM (coalesce(n.kind, c.kind), coalesce(n.aliases, c.aliases),
                             coalesce(n.addresses, c.addresses),
                             coalesce(n.criticality, c.criticality),
                             coalesce(n.attributes, c.attributes), true)
    RETURNING c.name)
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'changed', 'ci', u.name, '' FROM u ORDER BY u.name;
  WITH i AS (
    INSERT INTO triaged.ci (name, kind, aliases, addresses, criticality, attributes)
    SELECT n.name, coalesce(n.kind, 'host'), coalesce(n.aliases, '{}'),
           coalesce(n.addresses, '{}'), coalesce(n.criticality, 'medium'),
           coalesce(n.attributes, '{}')
      FROM td_imp_ci n
     WHERE NOT EXISTS (SELECT 1 FROM triaged.ci c WHERE c.name = n.name)
     ORDER BY n.ord
    RETURNING triaged.ci.name)
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'created', 'ci', i.name, '' FROM i;

  WITH r AS (
    SELECT n.ord, n.child, n.parent, coalesce(n.kind, 'depends_on') AS kind,
           c.id AS child_id, p.id AS parent_id
      FROM td_imp_rel n JOIN triaged.ci c ON c.name = n.child JOIN triaged.ci p ON p.name = n.parent),
  u AS (
    UPDATE triaged.ci_relation x SET kind = r.kind
      FROM r WHERE x.child_id = r.child_id AND x.parent_id = r.parent_id AND x.kind <> r.kind
    RETURNING r.child, r.parent, r.kind),
  i AS (
    INSERT INTO triaged.ci_relation (child_id, parent_id, kind)
    SELECT r.child_id, r.parent_id, r.kind FROM r
     WHERE NOT EXISTS (SELECT 1 FROM triaged.ci_relation x
                        WHERE x.child_id = r.child_id AND x.parent_id = r.parent_id)
     ORDER BY r.ord
    RETURNING child_id, parent_id, kind)
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'changed', 'relation', u.child || ' -> ' || u.parent, 'kind ' || u.kind FROM u
  UNION ALL
  SELECT 'created', 'relation', c.name || ' -> ' || p.name, i.kind
    FROM i JOIN triaged.ci c ON c.id = i.child_id JOIN triaged.ci p ON p.id = i.parent_id;

  WITH u AS (
    UPDATE triaged.service s
       SET tier = coalesce(n.tier, s.tier),
           owner_team = CASE WHEN n.has_owner THEN n.owner_team ELSE s.owner_team END,
           description = CASE WHEN n.has_description THEN n.description ELSE s.description END
      FROM td_imp_svc n
     WHERE s.name = n.name
       AND (s.tier, s.owner_team, s.description) IS DISTINCT FROM
           (coalesce(n.tier, s.tier), CASE WHEN n.has_owner THEN n.owner_team ELSE s.owner_team END,
            CASE WHEN n.has_description THEN n.description ELSE s.description END)
    RETURNING s.name)
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'changed', 'service', u.name, '' FROM u ORDER BY u.name;
  WITH i AS (
    INSERT INTO triaged.service (name, tier, owner_team, description)
    SELECT n.name, coalesce(n.tier, 3), n.owner_team, n.description
      FROM td_imp_svc n
     WHERE NOT EXISTS (SELECT 1 FROM triaged.service s WHERE s.name = n.name)
     ORDER BY n.ord
    RETURNING triaged.service.name)
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'created', 'service', i.name, '' FROM i;

  -- memberships: a listed service's "cis" is its whole list
  WITH want AS (
    SELECT s.id AS service_id, c.id AS ci_id, n.name
      FROM td_imp_svc n JOIN triaged.service s ON s.name = n.name
      CROSS JOIN LATERAL unnest(n.cis) cn JOIN triaged.ci c ON c.name = cn
     WHERE n.cis IS NOT NULL),
  del AS (
    DELETE FROM triaged.service_ci sc
     USING td_imp_svc n JOIN triaged.service s ON s.name = n.name
     WHERE n.cis IS NOT NULL AND sc.service_id = s.id
       AND NOT EXISTS (SELECT 1 FROM want w WHERE w.service_id = sc.service_id AND w.ci_id = sc.ci_id)
    RETURNING n.name),
  ins AS (
    INSERT INTO triaged.service_ci (service_id, ci_id)
    SELECT w.service_id, w.ci_id FROM want w
     WHERE NOT EXISTS (SELECT 1 FROM triaged.service_ci sc
                        WHERE sc.service_id = w.service_id AND sc.ci_id = w.ci_id)
     ORDER BY w.service_id, w.ci_id
    RETURNING service_id)
  INSERT INTO td_imp_report (status, kind, name, detail)
  SELECT 'changed', 'service', x.name, format('members: %s added, %s removed', x.added, x.removed)
    FROM (SELECT s.name,
                 (SELECT count(*) FROM ins WHERE ins.service_id = s.id) AS added,
                 (SELECT count(*) FROM del WHERE del.name = s.name) AS removed
            FROM td_imp_svc n JOIN triaged.service s ON s.name = n.name) x
   WHERE (x.added > 0 OR x.removed > 0)
     AND NOT EXISTS (SELECT 1 FROM td_imp_report r
                      WHERE r.kind = 'service' AND r.name = x.name AND r.status = 'created');

  RETURN QUERY SELECT r.status, r.kind, r.name, r.detail FROM td_imp_report r ORDER BY r.ord;
END $$;

-- The CMDB as an import document (same format; sorted, so exports diff well).
CREATE FUNCTION triaged.cmdb_export() RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'cis', coalesce((
      SELECT jsonb_agg(jsonb_build_object(
               'name', c.name, 'kind', c.kind, 'aliases', to_jsonb(c.aliases),
               'addresses', (SELECT coalesce(jsonb_agg(
                                CASE WHEN masklen(a) = CASE WHEN family(a) = 4 THEN 32 ELSE 128 END
                                     THEN host(a) ELSE text(a) END ORDER BY o), '[]')
                               FROM unnest(c.addresses) WITH ORDINALITY u(a, o)),
               'criticality', c.criticality, 'attributes', c.attributes) ORDER BY c.name)
        FROM triaged.ci c WHERE c.retired_at IS NULL), '[]'),
    'relations', coalesce((
      SELECT jsonb_agg(jsonb_build_object('child', c.name, 'parent', p.name, 'kind', r.kind)
                       ORDER BY c.name, p.name)
        FROM triaged.ci_relation r JOIN triaged.ci c ON c.id = r.child_id
        JOIN triaged.ci p ON p.id = r.parent_id), '[]'),
    'services', coalesce((
      SELECT jsonb_agg(jsonb_build_object(
               'name', s.name, 'tier', s.tier, 'owner_team', s.owner_team,
               'description', s.description,
               'cis', (SELECT coalesce(jsonb_agg(c.name ORDER BY c.name), '[]')
                         FROM triaged.service_ci sc JOIN triaged.ci c ON c.id = sc.ci_id
                        WHERE sc.service_id = s.id)) ORDER BY s.name)
        FROM triaged.service s), '[]'))
$$;

-- What the daemon's CMDB graph loads (daemon/cmdb.c, by COPY): one row per
-- live CI with its aliases and addresses as text lists (unit separator
-- 0x1F between items, never escaped by COPY's text format).
CREATE VIEW triaged.cmdb_graph_ci AS
  SELECT c.id, c.name,
         array_to_string(c.aliases, chr(31)) AS aliases,
         array_to_string(ARRAY(SELECT host(a) FROM unnest(c.addresses) a), chr(31)) AS addresses
    FROM triaged.ci c WHERE c.retired_at IS NULL;

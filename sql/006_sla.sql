-- 006_sla.sql — availability against SLA targets (DESIGN.md §4 Availability,
-- §5 GET /api/v1/services/{name}/availability, §6 service_availability_monthly).
--
-- Everything the API, the view, the events and `triagectl report` show is
-- computed here, by one function (triaged._sla_compute), so they agree on
-- every number. Definitions:
--
--   outage window  a root incident (merged_into IS NULL; a merge moves the
--                  merged incident's services onto its root and the root's
--                  opened_at back to the earliest, so a merged incident is
--                  counted once) impacting the service (incident_service),
--                  from its opened_at to its resolved_at (else closed_at, else
--                  now: an open incident counts to now). It counts when the
--                  SLA's degraded_counts_as_down is true (every impacting
--                  incident), or when its urgency <= down_max_urgency (default
--                  1: its worst alert is critical or major; minor, warning and
--                  info make it "degraded").
--   service time   the period [from, to) clipped to now and to the SLA's
--                  service hours ('24x7', or e.g. 'Mon-Fri 08:00-18:00
--                  Europe/Berlin', local wall-clock times in that zone, so
--                  DST is right), minus maintenance.
--   maintenance    the windows of triaged.maintenance_windows() on the
--                  service itself or on one of its member CIs (service_ci):
--                  planned work on a member is planned work on the service.
--   downtime       union of the outage windows (range_agg) * service time.
--   availability   1 - downtime / service time (NULL without service time).
--   error budget   (1 - target/100) * planned service time of the whole
--                  period [from, to) (future hours included), so a budget
--                  does not grow during the month; remaining = budget -
--                  downtime.
--   burn rate      over a window W ending at min(to, now): (downtime in W /
--                  service time in W) / (1 - target/100); 1 = spending the
--                  budget exactly at the rate that empties it at the period's
--                  end. NULL without service time in W or without a target.
--   MTTA, MTTR     mean acknowledged_at - opened_at, resolved - opened, of
--                  the counted incidents opened in the period.
--   MTBF           (service time - downtime) / counted incidents opened in it.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- schema

ALTER TABLE triaged.sla
  ADD COLUMN down_max_urgency smallint NOT NULL DEFAULT 1,
  ADD CONSTRAINT sla_down_max_urgency_check CHECK (down_max_urgency BETWEEN 1 AND 3);
COMMENT ON COLUMN triaged.sla.down_max_urgency IS
  'with degraded_counts_as_down = false, only incidents of this urgency or more '
  'urgent (1 = critical/major alerts) are outages';

-- Outage windows overlapping a period, whatever the service: the set-based
-- path (all services of a month). '[]' so that an incident resolved at the
-- instant it opened still overlaps.
CREATE INDEX incident_outage_idx ON triaged.incident USING gist (
  tstzrange(opened_at, greatest(opened_at, coalesce(resolved_at, closed_at, 'infinity'::timestamptz)), '[]'))
  WHERE merged_into IS NULL;

-- What sla_tick last reported per service and period (events fire once).
CREATE TABLE triaged.sla_state (
  service_id    bigint PRIMARY KEY REFERENCES triaged.service (id) ON DELETE CASCADE,
  period_from   timestamptz NOT NULL,
  breached_at   timestamptz,
  burning       text,
  burning_since timestamptz,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT sla_state_burning_check CHECK (burning IS NULL OR burning IN ('fast', 'slow'))
);

-- ---------------------------------------------------------------------------
-- service hours

-- 'Mon-Fri 08:00-18:00 Europe/Berlin' -> one row per day of the week and
-- interval. Grammar: GROUP [; GROUP]... [ZONE], GROUP = DAYS HH:MM-HH:MM,
-- DAYS = DAY or DAY-DAY (wrapping: Fri-Mon), comma separated; end up to
-- 24:00 and after the start (an overnight shift is two groups); ZONE an IANA
-- name, default UTC. '24x7' gives no rows (callers test for it first).
CREATE FUNCTION triaged.sla_hours_parse(p_spec text)
RETURNS TABLE (dow smallint, t_from interval, t_to interval, zone text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_s     text := btrim(regexp_replace(coalesce(p_spec, ''), '\s+', ' ', 'g'));
  v_zone  text := 'UTC';
  v_m     text[];
  v_g     text;
  v_d     text;
  v_a     integer;
  v_b     integer;
  v_f     interval;
  v_t     interval;
  v_days  smallint[];
  v_names text[] := ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
BEGIN
  IF lower(v_s) = '24x7' THEN
    RETURN;
  END IF;
  v_m := regexp_match(v_s, '^(.*[0-9])\s+([A-Za-z][A-Za-z0-9_+/-]*)$');
  IF v_m IS NOT NULL THEN
    v_s := v_m[1];
    v_zone := v_m[2];
  END IF;
  BEGIN
    PERFORM timezone(v_zone, timestamptz '2000-01-01 00:00:00+00');
  EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = format('service_hours %L: unknown time zone %L', p_spec, v_zone);
  END;
  IF v_s = '' THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = format('service_hours %L: expected 24x7 or DAYS HH:MM-HH:MM [ZONE], '
                       'e.g. Mon-Fri 08:00-18:00 Europe/Berlin', p_spec);
  END IF;
  FOREACH v_g IN ARRAY string_to_array(v_s, ';') LOOP
    v_m := regexp_match(btrim(v_g), '^([A-Za-z, -]+?) ?([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})$');
    IF v_m IS NULL THEN
      RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = format('service_hours %L: cannot read %L: expected DAYS HH:MM-HH:MM, '
                         'e.g. Mon-Fri 08:00-18:00', p_spec, btrim(v_g));
    END IF;
    IF v_m[3]::int > 59 OR v_m[5]::int > 59 OR v_m[2]::int > 23 OR v_m[4]::int > 24
       OR (v_m[4]::int = 24 AND v_m[5]::int <> 0) THEN
      RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = format('service_hours %L: bad time in %L', p_spec, btrim(v_g));
    END IF;
    v_f := make_interval(hours => v_m[2]::int, mins => v_m[3]::int);
    v_t := make_interval(hours => v_m[4]::int, mins => v_m[5]::int);
    IF v_t <= v_f THEN
      RAISE EXCEPTION USING ERRCODE = '22023',
        MESSAGE = format('service_hours %L: %L ends before it starts (write an overnight '
                         'shift as two groups: Mon 22:00-24:00; Tue 00:00-06:00)', p_spec, btrim(v_g));
    END IF;
    v_days := '{}';
    FOREACH v_d IN ARRAY string_to_array(replace(v_m[1], ' ', ''), ',') LOOP
      v_a := array_position(v_names, lower(split_part(v_d, '-', 1)));
      v_b := CASE WHEN v_d LIKE '%-%' THEN array_position(v_names, lower(split_part(v_d, '-', 2)))
                  ELSE v_a END;
      IF v_a IS NULL OR v_b IS NULL OR v_d ~ '-.*-' THEN
        RAISE EXCEPTION USING ERRCODE = '22023',
          MESSAGE = format('service_hours %L: bad days %L (Mon Tue Wed Thu Fri Sat Sun, '
                           'ranges like Mon-Fri, lists like Sat,Sun)', p_spec, v_d);
      END IF;
      LOOP
        v_days := v_days || v_a::smallint;
        EXIT WHEN v_a = v_b;
        v_a := v_a % 7 + 1;
      END LOOP;
    END LOOP;
    RETURN QUERY SELECT DISTINCT x, v_f, v_t, v_zone FROM unnest(v_days) x;
  END LOOP;
END $$;

CREATE FUNCTION triaged.sla_hours_valid(p_spec text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
  PERFORM count(*) FROM triaged.sla_hours_parse(p_spec);
  RETURN true;
END $$;

ALTER TABLE triaged.sla
  ADD CONSTRAINT sla_service_hours_valid CHECK (triaged.sla_hours_valid(service_hours));

-- The service hours of spec within [p_from, p_to), as a multirange; each
-- day's hours are local wall-clock times in the spec's zone.
CREATE FUNCTION triaged.sla_service_time(p_spec text, p_from timestamptz, p_to timestamptz)
RETURNS tstzmultirange
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_r tstzmultirange;
BEGIN
  IF p_to <= p_from THEN
    RETURN '{}';
  END IF;
  IF lower(btrim(coalesce(p_spec, '24x7'))) = '24x7' THEN
    RETURN tstzmultirange(tstzrange(p_from, p_to, '[)'));
  END IF;
  SELECT coalesce(range_agg(tstzrange((d.day + h.t_from) AT TIME ZONE h.zone,
                                      (d.day + h.t_to) AT TIME ZONE h.zone, '[)')
                            * tstzrange(p_from, p_to, '[)')), '{}')
    INTO v_r
    FROM triaged.sla_hours_parse(p_spec) h
   CROSS JOIN LATERAL generate_series(((p_from AT TIME ZONE h.zone)::date - 1)::timestamp,
                                      ((p_to AT TIME ZONE h.zone)::date)::timestamp,
                                      interval '1 day') d(day)
   WHERE extract(isodow FROM d.day) = h.dow;
  RETURN v_r;
END $$;

-- Length of a multirange in seconds (microsecond precision).
CREATE FUNCTION triaged.sla_seconds(p tstzmultirange) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(sum(extract(epoch FROM upper(r)) - extract(epoch FROM lower(r))), 0.000000)
    FROM unnest(p) r
$$;

-- ---------------------------------------------------------------------------
-- maintenance: one object's windows, the same rows as 003's
-- maintenance_windows() gives for it (test_sla_sql checks they agree), so
-- the SLA computation can expand the windows of a few services without
-- expanding everybody's. (003's function is left as it is: the ingest path
-- calls it, and its one-off windows are found through the GiST index.)

CREATE FUNCTION triaged.maintenance_expand(m triaged.maintenance, p_from timestamptz,
                                           p_to timestamptz)
RETURNS SETOF tstzrange
LANGUAGE sql STABLE AS $$
  SELECT m.during WHERE m.during && tstzrange(p_from, p_to, '[)')
  UNION ALL
  SELECT w.r * tstzrange(m.active_from, m.active_until, '[)')
    FROM generate_series(((p_from AT TIME ZONE m.time_zone)::date - 7)::timestamp,
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

-- ---------------------------------------------------------------------------
-- the computation

CREATE TYPE triaged.sla_result AS (
  service_id               bigint,
  service                  text,
  period_from              timestamptz,
  period_to                timestamptz,
  target                   numeric,
  sla_period               text,
  service_hours            text,
  degraded_counts_as_down  boolean,
  down_max_urgency         smallint,
  service_seconds          numeric,   -- elapsed service time, maintenance excluded
  planned_service_seconds  numeric,   -- the whole period's, maintenance excluded
  maintenance_seconds      numeric,   -- elapsed maintenance within service hours
  downtime_seconds         numeric,
  availability             numeric,   -- fraction
  met                      boolean,
  error_budget_seconds     numeric,
  budget_remaining_seconds numeric,
  budget_remaining_pct     numeric,
  burn_rates               numeric[], -- one per window asked for
  burn_rate_period         numeric,
  incidents                integer,   -- counted (outage) incidents opened in the period
  incidents_by_priority    integer[], -- every impacting incident opened in it, P1..P5
  mtta_seconds             numeric,
  mttr_seconds             numeric,
  mtbf_seconds             numeric,
  down                     tstzmultirange,  -- the downtime itself
  service_time             tstzmultirange   -- the planned service time (whole period)
);

-- Availability of the services p_ids (NULL: every service) over [p_from,
-- p_to) as of p_now, with burn rates over p_windows ending at min(p_to,
-- p_now). Custom plans: with p_ids NULL the incidents come from the range
-- index (all services of one period), with a few ids from incident_service.
CREATE FUNCTION triaged._sla_compute(p_from timestamptz, p_to timestamptz, p_ids bigint[],
                                     p_now timestamptz, p_windows interval[])
RETURNS SETOF triaged.sla_result
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
SET jit = off
AS $$
DECLARE
  v_end   timestamptz := greatest(p_from, least(p_to, p_now));
  v_qfrom timestamptz;
BEGIN
  IF p_from IS NULL OR p_to IS NULL OR p_to <= p_from THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'from must be before to';
  END IF;
  v_qfrom := least(p_from, v_end - coalesce((SELECT max(w) FROM unnest(p_windows) w), interval '0'));
  RETURN QUERY
  WITH s AS (
    SELECT sv.id, sv.name, sl.target, coalesce(sl.period, 'month') AS period,
           coalesce(sl.service_hours, '24x7') AS hours,
           coalesce(sl.degraded_counts_as_down, true) AS deg,
           coalesce(sl.down_max_urgency, 1::smallint) AS dmu
      FROM triaged.service sv LEFT JOIN triaged.sla sl ON sl.service_id = sv.id
     WHERE p_ids IS NULL OR sv.id = ANY (p_ids)),
  inc AS (
    SELECT isv.service_id, i.opened_at, i.acknowledged_at, i.priority,
           (s.deg OR i.urgency <= s.dmu) AS counted,
           least(greatest(i.opened_at, coalesce(i.resolved_at, i.closed_at, 'infinity'::timestamptz)),
                 v_end) AS ended_at,
           CASE WHEN coalesce(i.resolved_at, i.closed_at) <= p_now
                THEN greatest(i.opened_at, coalesce(i.resolved_at, i.closed_at)) END AS real_end
      FROM triaged.incident i
      JOIN triaged.incident_service isv ON isv.incident_id = i.id
      JOIN s ON s.id = isv.service_id
     WHERE i.merged_into IS NULL
       AND tstzrange(i.opened_at, greatest(i.opened_at, coalesce(i.resolved_at, i.closed_at,
                                                                'infinity'::timestamptz)), '[]')
           && tstzrange(v_qfrom, v_end, '[)')
       AND (p_ids IS NULL OR isv.service_id = ANY (p_ids))),
  agg AS (
    SELECT inc.service_id,
           range_agg(tstzrange(inc.opened_at, inc.ended_at, '[)')) FILTER (WHERE inc.counted) AS outage,
           count(*) FILTER (WHERE inc.counted AND inc.opened_at >= p_from) AS n,
           ARRAY[count(*) FILTER (WHERE inc.priority = 1 AND inc.opened_at >= p_from),
                 count(*) FILTER (WHERE inc.priority = 2 AND inc.opened_at >= p_from),
                 count(*) FILTER (WHERE inc.priority = 3 AND inc.opened_at >= p_from),
                 count(*) FILTER (WHERE inc.priority = 4 AND inc.opened_at >= p_from),
                 count(*) FILTER (WHERE inc.priority = 5 AND inc.opened_at >= p_from)]::integer[] AS byp,
           avg(extract(epoch FROM inc.acknowledged_at) - extract(epoch FROM inc.opened_at))
             FILTER (WHERE inc.counted AND inc.opened_at >= p_from AND inc.acknowledged_at IS NOT NULL) AS mtta,
           avg(extract(epoch FROM inc.real_end) - extract(epoch FROM inc.opened_at))
             FILTER (WHERE inc.counted AND inc.opened_at >= p_from) AS mttr
      FROM inc GROUP BY inc.service_id),
  -- the windows of the maintenance objects of these services only
  mw AS MATERIALIZED (
    SELECT m.service_id, m.ci_id, w.during
      FROM triaged.maintenance m
     CROSS JOIN LATERAL triaged.maintenance_expand(m, v_qfrom, p_to) w(during)
     WHERE p_ids IS NULL OR m.service_id = ANY (p_ids)
        OR m.ci_id IN (SELECT sc.ci_id FROM triaged.service_ci sc WHERE sc.service_id = ANY (p_ids))),
  maint AS (
    SELECT x.service_id, range_agg(x.during) AS mr
      FROM (SELECT mw.service_id, mw.during FROM mw WHERE mw.service_id IS NOT NULL
            UNION ALL
            SELECT sc.service_id, mw.during FROM mw JOIN triaged.service_ci sc ON sc.ci_id = mw.ci_id) x
     WHERE NOT isempty(x.during)
     GROUP BY x.service_id),
  base AS MATERIALIZED (
    SELECT s.*, coalesce(a.outage, '{}') AS outage, coalesce(m.mr, '{}') AS mr,
           a.n, a.byp, a.mtta, a.mttr,
           triaged.sla_service_time(s.hours, v_qfrom, p_to) AS hrs
      FROM s LEFT JOIN agg a ON a.service_id = s.id LEFT JOIN maint m ON m.service_id = s.id),
  mr AS MATERIALIZED (
    SELECT b.*,
           (b.hrs * tstzmultirange(tstzrange(p_from, v_end, '[)'))) - b.mr AS svc,
           (b.hrs * tstzmultirange(tstzrange(p_from, p_to, '[)'))) - b.mr AS planned,
           (b.hrs * tstzmultirange(tstzrange(p_from, v_end, '[)'))) * b.mr AS mt
      FROM base b),
  secs AS MATERIALIZED (
    SELECT x.*, triaged.sla_seconds(x.svc) AS svc_s, triaged.sla_seconds(x.planned) AS planned_s,
           triaged.sla_seconds(x.mt) AS mt_s, triaged.sla_seconds(x.outage * x.svc) AS down_s,
           x.outage * x.svc AS down,
           CASE WHEN x.target IS NOT NULL AND x.target < 100 THEN 1 - x.target / 100 END AS fr
      FROM mr x)
  SELECT x.id, x.name, p_from, p_to, x.target, x.period, x.hours, x.deg, x.dmu,
         x.svc_s, x.planned_s, x.mt_s, x.down_s,
         CASE WHEN x.svc_s > 0 THEN round(1 - x.down_s / x.svc_s, 12) END,
         CASE WHEN x.svc_s > 0 AND x.target IS NOT NULL
              THEN round(1 - x.down_s / x.svc_s, 12) * 100 >= x.target END,
         round(coalesce(x.fr, 0) * x.planned_s, 6) * CASE WHEN x.target IS NULL THEN NULL ELSE 1 END,
         CASE WHEN x.target IS NOT NULL THEN round(coalesce(x.fr, 0) * x.planned_s - x.down_s, 6) END,
         CASE WHEN x.fr IS NOT NULL AND x.planned_s > 0
              THEN round(100 * (x.fr * x.planned_s - x.down_s) / (x.fr * x.planned_s), 6) END,
         ARRAY(SELECT CASE WHEN x.fr IS NOT NULL AND triaged.sla_seconds(w.svc) > 0
                           THEN round(triaged.sla_seconds(x.outage * w.svc)
                                      / triaged.sla_seconds(w.svc) / x.fr, 6) END
                 FROM unnest(p_windows) WITH ORDINALITY u(win, o)
                 CROSS JOIN LATERAL (SELECT (x.hrs * tstzmultirange(tstzrange(v_end - u.win, v_end, '[)')))
                                            - x.mr AS svc) w
                ORDER BY u.o),
         CASE WHEN x.fr IS NOT NULL AND x.svc_s > 0 THEN round(x.down_s / x.svc_s / x.fr, 6) END,
         coalesce(x.n, 0)::integer,
         coalesce(x.byp, '{0,0,0,0,0}'),
         round(x.mtta, 6), round(x.mttr, 6),
         CASE WHEN coalesce(x.n, 0) > 0 THEN round((x.svc_s - x.down_s) / x.n, 6) END,
         x.down, x.planned
    FROM secs x
   ORDER BY x.name;
END $$;

-- The report's columns: burn rates over 1 h, 6 h and 24 h.
CREATE FUNCTION triaged.sla_report(p_from timestamptz, p_to timestamptz,
                                   p_ids bigint[] DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS TABLE (service_id bigint, service text, period_from timestamptz, period_to timestamptz,
               target numeric, sla_period text, service_hours text,
               degraded_counts_as_down boolean, down_max_urgency smallint,
               service_seconds numeric, planned_service_seconds numeric,
               maintenance_seconds numeric, downtime_seconds numeric, availability numeric,
               met boolean, error_budget_seconds numeric, budget_remaining_seconds numeric,
               budget_remaining_pct numeric, burn_rate_1h numeric, burn_rate_6h numeric,
               burn_rate_24h numeric, burn_rate_period numeric, incidents integer,
               incidents_by_priority integer[], mtta_seconds numeric, mttr_seconds numeric,
               mtbf_seconds numeric)
LANGUAGE sql STABLE AS $$
  SELECT r.service_id, r.service, r.period_from, r.period_to, r.target, r.sla_period,
         r.service_hours, r.degraded_counts_as_down, r.down_max_urgency, r.service_seconds,
         r.planned_service_seconds, r.maintenance_seconds, r.downtime_seconds, r.availability,
         r.met, r.error_budget_seconds, r.budget_remaining_seconds, r.budget_remaining_pct,
         r.burn_rates[1], r.burn_rates[2], r.burn_rates[3], r.burn_rate_period, r.incidents,
         r.incidents_by_priority, r.mtta_seconds, r.mttr_seconds, r.mtbf_seconds
    FROM triaged._sla_compute(p_from, p_to, p_ids, p_now,
                              ARRAY[interval '1 hour', interval '6 hours', interval '24 hours']) r
$$;

-- One row of sla_report as the API and the report's JSON show it.
CREATE FUNCTION triaged.sla_json(p_service text, p_from timestamptz, p_to timestamptz,
                                 p_target numeric, p_period text, p_hours text, p_deg boolean,
                                 p_dmu smallint, p_svc numeric, p_planned numeric, p_mt numeric,
                                 p_down numeric, p_avail numeric, p_met boolean, p_budget numeric,
                                 p_rem numeric, p_rem_pct numeric, p_b1 numeric, p_b6 numeric,
                                 p_b24 numeric, p_bp numeric, p_n integer, p_byp integer[],
                                 p_mtta numeric, p_mttr numeric, p_mtbf numeric)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'service', p_service, 'from', p_from, 'to', p_to,
    'target', trim_scale(p_target), 'period', p_period, 'service_hours', p_hours,
    'degraded_counts_as_down', p_deg, 'down_max_urgency', p_dmu,
    'availability', p_avail, 'availability_pct', round(p_avail * 100, 6), 'met', p_met,
    'service_seconds', p_svc, 'planned_service_seconds', p_planned,
    'downtime_seconds', p_down, 'maintenance_excluded_seconds', p_mt,
    'error_budget_seconds', p_budget, 'error_budget_remaining_seconds', p_rem,
    'error_budget_remaining_pct', p_rem_pct,
    'burn_rate', jsonb_build_object('1h', p_b1, '6h', p_b6, '24h', p_b24, 'period', p_bp),
    'incidents', p_n,
    'incidents_by_priority', jsonb_build_object('P1', p_byp[1], 'P2', p_byp[2], 'P3', p_byp[3],
                                                'P4', p_byp[4], 'P5', p_byp[5]),
    'mtta_seconds', p_mtta, 'mttr_seconds', p_mttr, 'mtbf_seconds', p_mtbf)
$$;

-- sla_report as JSON objects, one per service.
CREATE FUNCTION triaged.sla_report_json(p_from timestamptz, p_to timestamptz,
                                        p_ids bigint[] DEFAULT NULL, p_now timestamptz DEFAULT now())
RETURNS TABLE (service_id bigint, doc jsonb)
LANGUAGE sql STABLE AS $$
  SELECT r.service_id,
         triaged.sla_json(r.service, r.period_from, r.period_to, r.target, r.sla_period,
                          r.service_hours, r.degraded_counts_as_down, r.down_max_urgency,
                          r.service_seconds, r.planned_service_seconds, r.maintenance_seconds,
                          r.downtime_seconds, r.availability, r.met, r.error_budget_seconds,
                          r.budget_remaining_seconds, r.budget_remaining_pct, r.burn_rate_1h,
                          r.burn_rate_6h, r.burn_rate_24h, r.burn_rate_period, r.incidents,
                          r.incidents_by_priority, r.mtta_seconds, r.mttr_seconds, r.mtbf_seconds)
    FROM triaged.sla_report(p_from, p_to, p_ids, p_now) r
$$;

-- The SLA period containing p_at (UTC calendar month or quarter).
CREATE FUNCTION triaged.sla_period_of(p_period text, p_at timestamptz) RETURNS tstzrange
LANGUAGE sql IMMUTABLE AS $$
  SELECT tstzrange(date_trunc(CASE WHEN p_period = 'quarter' THEN 'quarter' ELSE 'month' END,
                              p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                   (date_trunc(CASE WHEN p_period = 'quarter' THEN 'quarter' ELSE 'month' END,
                               p_at AT TIME ZONE 'UTC')
                    + CASE WHEN p_period = 'quarter' THEN interval '3 months'
                           ELSE interval '1 month' END) AT TIME ZONE 'UTC', '[)')
$$;

-- Per UTC day of [p_from, p_to): service time and downtime, and the error
-- budget left at the day's end (the report's burn-down).
CREATE FUNCTION triaged.sla_daily(p_service_id bigint, p_from timestamptz, p_to timestamptz,
                                  p_now timestamptz DEFAULT now())
RETURNS TABLE (day date, service_seconds numeric, downtime_seconds numeric,
               budget_remaining_seconds numeric)
LANGUAGE sql STABLE AS $$
  WITH r AS (SELECT * FROM triaged._sla_compute(p_from, p_to, ARRAY[p_service_id], p_now, '{}')),
  d AS (
    SELECT g::date AS day,
           tstzmultirange(tstzrange(greatest(g AT TIME ZONE 'UTC', p_from),
                                    least((g + interval '1 day') AT TIME ZONE 'UTC', p_to), '[)')) AS dr
      FROM generate_series((p_from AT TIME ZONE 'UTC')::date::timestamp,
                           (p_to AT TIME ZONE 'UTC') - interval '1 microsecond',
                           interval '1 day') g)
  SELECT d.day, triaged.sla_seconds(r.service_time * d.dr), triaged.sla_seconds(r.down * d.dr),
         CASE WHEN r.error_budget_seconds IS NOT NULL
              THEN r.error_budget_seconds - sum(triaged.sla_seconds(r.down * d.dr))
                                              OVER (ORDER BY d.day) END
    FROM r CROSS JOIN d ORDER BY d.day
$$;

-- Alert sources of the incidents impacting a service opened in [p_from, p_to):
-- alerts, firing messages folded into them, dedup ratio (1 - alerts/messages).
CREATE FUNCTION triaged.sla_alert_sources(p_service_id bigint, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (source text, alerts bigint, messages bigint, dedup_ratio numeric)
LANGUAGE sql STABLE AS $$
  SELECT a.source, count(DISTINCT a.id), sum(a.occurrences)::bigint,
         CASE WHEN sum(a.occurrences) > 0
              THEN round(1 - count(DISTINCT a.id)::numeric / sum(a.occurrences), 6) END
    FROM (SELECT DISTINCT ia.alert_id
            FROM triaged.incident_service isv
            JOIN triaged.incident i ON i.id = isv.incident_id
            JOIN triaged.incident_alert ia ON ia.incident_id = i.id
           WHERE isv.service_id = p_service_id AND i.merged_into IS NULL
             AND i.opened_at >= p_from AND i.opened_at < p_to) x
    JOIN triaged.alert a ON a.id = x.alert_id
   GROUP BY a.source
   ORDER BY sum(a.occurrences) DESC, a.source
$$;

-- Maintenance windows that excluded time of a service in [p_from, p_to):
-- the window clipped to the period, and the seconds it took of service hours.
CREATE FUNCTION triaged.sla_maintenance_taken(p_service_id bigint, p_from timestamptz,
                                              p_to timestamptz)
RETURNS TABLE (maintenance_id bigint, target text, during tstzrange, change_ref text,
               reason text, seconds numeric)
LANGUAGE sql STABLE AS $$
  SELECT w.maintenance_id,
         coalesce('service ' || s.name, 'ci ' || c.name),
         w.during * tstzrange(p_from, p_to, '[)'), w.change_ref, w.reason,
         triaged.sla_seconds(tstzmultirange(w.during)
                             * triaged.sla_service_time(coalesce(sl.service_hours, '24x7'), p_from, p_to))
    FROM triaged.maintenance_windows(p_from, p_to) w
    LEFT JOIN triaged.service s ON s.id = w.service_id
    LEFT JOIN triaged.ci c ON c.id = w.ci_id
    LEFT JOIN triaged.sla sl ON sl.service_id = p_service_id
   WHERE w.service_id = p_service_id
      OR w.ci_id IN (SELECT sc.ci_id FROM triaged.service_ci sc WHERE sc.service_id = p_service_id)
   ORDER BY lower(w.during), w.maintenance_id
$$;

-- ---------------------------------------------------------------------------
-- the Grafana view (contract name; replaces 001's 24x7 v1, same first columns)

DROP VIEW triaged.service_availability_monthly;
CREATE VIEW triaged.service_availability_monthly AS
SELECT r.service_id, r.service, m.month::date AS month, r.service_seconds, r.downtime_seconds,
       r.availability, r.target, r.met,
       r.period_from, r.period_to, r.service_hours, r.planned_service_seconds,
       r.maintenance_seconds, r.error_budget_seconds, r.budget_remaining_seconds,
       r.budget_remaining_pct, r.burn_rate_period, r.incidents, r.incidents_by_priority,
       r.mtta_seconds, r.mttr_seconds, r.mtbf_seconds
  FROM (SELECT generate_series(
                 date_trunc('month', least((SELECT min(sv.created_at) FROM triaged.service sv),
                                           (SELECT min(i.opened_at) FROM triaged.incident i),
                                           now()) AT TIME ZONE 'UTC'),
                 date_trunc('month', now() AT TIME ZONE 'UTC'),
                 interval '1 month') AS month) m
 CROSS JOIN LATERAL triaged.sla_report(m.month AT TIME ZONE 'UTC',
                                       (m.month + interval '1 month') AT TIME ZONE 'UTC',
                                       NULL, now()) r;

COMMENT ON VIEW triaged.service_availability_monthly IS
  'Per service and UTC calendar month up to now: availability against the SLA '
  '(sql/006_sla.sql: outage windows clipped to the month, to now, to the service '
  'hours, minus maintenance). Filter on month to compute only those months.';

-- ---------------------------------------------------------------------------
-- the API (GET /api/v1/services/{name}/availability?from=&to=)

-- NULL for an unknown service (404). from/to default to the SLA's current
-- period (UTC month or quarter); bad ranges raise SQLSTATE 22023 (400).
CREATE FUNCTION triaged.api_service_availability(p_name text, p_from timestamptz,
                                                 p_to timestamptz, p_now timestamptz DEFAULT now())
RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_id  bigint;
  v_per tstzrange;
  v_doc jsonb;
BEGIN
  SELECT s.id, triaged.sla_period_of(coalesce(sl.period, 'month'), p_now)
    INTO v_id, v_per
    FROM triaged.service s LEFT JOIN triaged.sla sl ON sl.service_id = s.id
   WHERE s.name = p_name;
  IF v_id IS NULL THEN
    RETURN NULL;
  END IF;
  IF (p_from IS NULL) <> (p_to IS NULL) THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'give both from and to, or neither';
  END IF;
  IF p_from IS NOT NULL AND p_to <= p_from THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'from must be before to';
  END IF;
  IF p_from IS NOT NULL AND p_to - p_from > interval '3700 days' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'at most 10 years at once';
  END IF;
  SELECT r.doc INTO v_doc
    FROM triaged.sla_report_json(coalesce(p_from, lower(v_per)), coalesce(p_to, upper(v_per)),
                                 ARRAY[v_id], p_now) r;
  RETURN v_doc::json;
END $$;

-- ---------------------------------------------------------------------------
-- events (the daemon's [sla] timer): sla.breached once per service and
-- period when the error budget is spent; sla.burn_rate when a multi-window
-- rule starts to hold (long AND short window burning at least the rate that
-- spends budget_pct % of the period's budget within the long window), and
-- sla.burn_rate_resolved when neither holds any more.
--
-- Options: now, fast_budget_pct (2), fast_window_ms (1 h), fast_short_ms
-- (5 min), slow_budget_pct (5), slow_window_ms (6 h), slow_short_ms (30 min).
-- For a 30-day month the defaults are the usual burn rates 14.4 and 6.
CREATE FUNCTION triaged.sla_tick(p_opts jsonb)
RETURNS SETOF triaged.ingest_row
LANGUAGE plpgsql AS $$
DECLARE
  v_now  timestamptz := coalesce((p_opts->>'now')::timestamptz, now());
  v_fp   numeric := coalesce((p_opts->>'fast_budget_pct')::numeric, 2);
  v_fl   interval := coalesce((p_opts->>'fast_window_ms')::float8, 3600000) * interval '1 millisecond';
  v_fs   interval := coalesce((p_opts->>'fast_short_ms')::float8, 300000) * interval '1 millisecond';
  v_sp   numeric := coalesce((p_opts->>'slow_budget_pct')::numeric, 5);
  v_sl   interval := coalesce((p_opts->>'slow_window_ms')::float8, 21600000) * interval '1 millisecond';
  v_ss   interval := coalesce((p_opts->>'slow_short_ms')::float8, 1800000) * interval '1 millisecond';
  v_per  text;
  v_p    tstzrange;
  r      record;
  st     triaged.sla_state;
  v_len  numeric;
  v_fthr numeric;
  v_sthr numeric;
  v_rule text;
  v_base jsonb;
  v_n    integer := 0;
BEGIN
  -- one instance at a time; the others skip this round
  IF NOT pg_try_advisory_xact_lock(hashtext('triaged.sla_tick')) THEN
    RETURN;
  END IF;
  FOREACH v_per IN ARRAY ARRAY['month', 'quarter'] LOOP
    v_p := triaged.sla_period_of(v_per, v_now);
    v_len := extract(epoch FROM upper(v_p)) - extract(epoch FROM lower(v_p));
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM triaged.sla sl WHERE sl.period = v_per);
    FOR r IN
      SELECT c.*
        FROM triaged._sla_compute(lower(v_p), upper(v_p),
                                  ARRAY(SELECT sl.service_id FROM triaged.sla sl WHERE sl.period = v_per),
                                  v_now, ARRAY[v_fl, v_fs, v_sl, v_ss]) c
    LOOP
      v_n := v_n + 1;
      SELECT * INTO st FROM triaged.sla_state s WHERE s.service_id = r.service_id FOR UPDATE;
      IF st.service_id IS NULL THEN
        INSERT INTO triaged.sla_state (service_id, period_from) VALUES (r.service_id, lower(v_p))
        RETURNING * INTO st;
      ELSIF st.period_from <> lower(v_p) THEN
        UPDATE triaged.sla_state s SET period_from = lower(v_p), breached_at = NULL,
               burning = NULL, burning_since = NULL, updated_at = now()
         WHERE s.service_id = r.service_id RETURNING * INTO st;
      END IF;
      v_base := jsonb_build_object('service', r.service, 'period_from', r.period_from,
        'period_to', r.period_to, 'target', trim_scale(r.target), 'availability', r.availability,
        'downtime_seconds', r.downtime_seconds, 'error_budget_seconds', r.error_budget_seconds,
        'error_budget_remaining_seconds', r.budget_remaining_seconds, 'at', v_now);
      IF r.budget_remaining_seconds < 0 AND st.breached_at IS NULL THEN
        UPDATE triaged.sla_state s SET breached_at = v_now, updated_at = now()
         WHERE s.service_id = r.service_id;
        RETURN NEXT ROW('sla.breached', r.service, v_base::json)::triaged.ingest_row;
      END IF;
      -- rates that spend pct % of the period's (calendar) budget within the window
      v_fthr := v_fp / 100 * v_len / extract(epoch FROM v_fl);
      v_sthr := v_sp / 100 * v_len / extract(epoch FROM v_sl);
      v_rule := CASE WHEN r.burn_rates[1] >= v_fthr AND r.burn_rates[2] >= v_fthr THEN 'fast'
                     WHEN r.burn_rates[3] >= v_sthr AND r.burn_rates[4] >= v_sthr THEN 'slow' END;
      IF v_rule IS NOT NULL AND (st.burning IS NULL OR (st.burning = 'slow' AND v_rule = 'fast')) THEN
        UPDATE triaged.sla_state s SET burning = v_rule, burning_since = coalesce(s.burning_since, v_now),
               updated_at = now() WHERE s.service_id = r.service_id;
        RETURN NEXT ROW('sla.burn_rate', r.service, (v_base || jsonb_build_object(
          'rule', v_rule,
          'long_window_seconds', extract(epoch FROM CASE v_rule WHEN 'fast' THEN v_fl ELSE v_sl END),
          'short_window_seconds', extract(epoch FROM CASE v_rule WHEN 'fast' THEN v_fs ELSE v_ss END),
          'burn_rate_long', CASE v_rule WHEN 'fast' THEN r.burn_rates[1] ELSE r.burn_rates[3] END,
          'burn_rate_short', CASE v_rule WHEN 'fast' THEN r.burn_rates[2] ELSE r.burn_rates[4] END,
          'threshold', round(CASE v_rule WHEN 'fast' THEN v_fthr ELSE v_sthr END, 6)))::json)::triaged.ingest_row;
      ELSIF v_rule IS NULL AND st.burning IS NOT NULL THEN
        UPDATE triaged.sla_state s SET burning = NULL, burning_since = NULL, updated_at = now()
         WHERE s.service_id = r.service_id;
        RETURN NEXT ROW('sla.burn_rate_resolved', r.service,
                        (v_base || jsonb_build_object('rule', st.burning,
                                                      'since', st.burning_since))::json)::triaged.ingest_row;
      END IF;
    END LOOP;
  END LOOP;
  RETURN NEXT ROW('sla.tick', NULL, json_build_object('services', v_n))::triaged.ingest_row;
END $$;

-- ---------------------------------------------------------------------------
-- SLA definitions: triagectl sla set, and "sla" in the CMDB document

-- Why an SLA document ({"target", "period", "service_hours",
-- "degraded_counts_as_down", "down_max_urgency"}) is bad, or NULL.
CREATE FUNCTION triaged._sla_doc_error(p jsonb, p_new boolean) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF jsonb_typeof(p) <> 'object' THEN
    RETURN 'must be an object (or null to remove it)';
  ELSIF EXISTS (SELECT 1 FROM jsonb_object_keys(p) k
                 WHERE k NOT IN ('target', 'period', 'service_hours', 'degraded_counts_as_down',
                                 'down_max_urgency')) THEN
    RETURN 'unknown key (expected target, period, service_hours, degraded_counts_as_down, '
           'down_max_urgency)';
  ELSIF p_new AND NOT p ? 'target' THEN
    RETURN 'target is required';
  ELSIF p ? 'target' AND (jsonb_typeof(p->'target') <> 'number'
                          OR round((p->>'target')::numeric, 4) <= 0
                          OR round((p->>'target')::numeric, 4) > 100) THEN
    RETURN 'target must be a percentage above 0 and at most 100, e.g. 99.9';
  ELSIF p ? 'period' AND coalesce(p->>'period', '') NOT IN ('month', 'quarter') THEN
    RETURN 'period must be month or quarter';
  ELSIF p ? 'degraded_counts_as_down' AND jsonb_typeof(p->'degraded_counts_as_down') <> 'boolean' THEN
    RETURN 'degraded_counts_as_down must be true or false';
  ELSIF p ? 'down_max_urgency' AND coalesce(p->>'down_max_urgency', '') NOT IN ('1', '2', '3') THEN
    RETURN 'down_max_urgency must be 1, 2 or 3';
  ELSIF p ? 'service_hours' THEN
    IF jsonb_typeof(p->'service_hours') <> 'string' THEN
      RETURN 'service_hours must be a string';
    END IF;
    BEGIN
      PERFORM triaged.sla_hours_valid(p->>'service_hours');
    EXCEPTION WHEN invalid_parameter_value THEN
      RETURN SQLERRM;
    END;
  END IF;
  RETURN NULL;
END $$;

-- Upsert a service's SLA from a valid document (absent keys keep the stored
-- value, or the default); NULL document removes it. Returns created,
-- changed, removed or unchanged.
CREATE FUNCTION triaged._sla_apply(p_service_id bigint, p jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  v_old triaged.sla;
  v_new triaged.sla;
BEGIN
  SELECT * INTO v_old FROM triaged.sla WHERE service_id = p_service_id FOR UPDATE;
  IF p IS NULL OR jsonb_typeof(p) = 'null' THEN
    DELETE FROM triaged.sla WHERE service_id = p_service_id;
    RETURN CASE WHEN FOUND THEN 'removed' ELSE 'unchanged' END;
  END IF;
  IF v_old.service_id IS NULL THEN
    INSERT INTO triaged.sla (service_id, target, period, service_hours, degraded_counts_as_down,
                             down_max_urgency)
    VALUES (p_service_id, round((p->>'target')::numeric, 4), coalesce(p->>'period', 'month'),
            coalesce(p->>'service_hours', '24x7'),
            coalesce((p->>'degraded_counts_as_down')::boolean, true),
            coalesce((p->>'down_max_urgency')::smallint, 1));
    RETURN 'created';
  END IF;
  v_new := v_old;
  -- 4 decimals like the column: a client's 99.95 may arrive as 99.950000000000003
  v_new.target := coalesce(round((p->>'target')::numeric, 4), v_old.target);
  v_new.period := coalesce(p->>'period', v_old.period);
  v_new.service_hours := coalesce(p->>'service_hours', v_old.service_hours);
  v_new.degraded_counts_as_down := coalesce((p->>'degraded_counts_as_down')::boolean,
                                            v_old.degraded_counts_as_down);
  v_new.down_max_urgency := coalesce((p->>'down_max_urgency')::smallint, v_old.down_max_urgency);
  IF (v_new.target, v_new.period, v_new.service_hours, v_new.degraded_counts_as_down,
      v_new.down_max_urgency) IS NOT DISTINCT FROM
     (v_old.target, v_old.period, v_old.service_hours, v_old.degraded_counts_as_down,
      v_old.down_max_urgency) THEN
    RETURN 'unchanged';
  END IF;
  UPDATE triaged.sla SET target = v_new.target, period = v_new.period,
         service_hours = v_new.service_hours,
         degraded_counts_as_down = v_new.degraded_counts_as_down,
         down_max_urgency = v_new.down_max_urgency
   WHERE service_id = p_service_id;
  RETURN 'changed';
END $$;

-- triagectl sla set: raises 22023 with the reason for a bad document, P0002
-- for an unknown service.
CREATE FUNCTION triaged.sla_set(p_service text, p jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  v_id  bigint;
  v_err text;
BEGIN
  SELECT s.id INTO v_id FROM triaged.service s WHERE s.name = p_service;
  IF v_id IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = format('no service named %L', p_service);
  END IF;
  IF p IS NOT NULL AND jsonb_typeof(p) <> 'null' THEN
    v_err := triaged._sla_doc_error(p, NOT EXISTS (SELECT 1 FROM triaged.sla WHERE service_id = v_id));
    IF v_err IS NOT NULL THEN
      RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = v_err;
    END IF;
  END IF;
  RETURN triaged._sla_apply(v_id, p);
END $$;

CREATE FUNCTION triaged._sla_doc(sl triaged.sla) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('target', trim_scale(sl.target), 'period', sl.period,
                            'service_hours', sl.service_hours,
                            'degraded_counts_as_down', sl.degraded_counts_as_down,
                            'down_max_urgency', sl.down_max_urgency)
$$;

-- The CMDB document gains "sla" in a service entry: an SLA document, or null
-- to remove the service's SLA. 003's import (renamed _cmdb_import_core) sees
-- the document without it; SLAs are checked first with everything else and
-- written only when nothing is rejected.
ALTER FUNCTION triaged.cmdb_import(jsonb) RENAME TO _cmdb_import_core;
ALTER FUNCTION triaged.cmdb_export() RENAME TO _cmdb_export_core;

CREATE FUNCTION triaged.cmdb_import(p_doc jsonb)
RETURNS TABLE (status text, kind text, name text, detail text)
LANGUAGE plpgsql
SET client_min_messages = warning
AS $$
#variable_conflict use_column
DECLARE
  v_core jsonb := p_doc;
  v_e    jsonb;
  v_o    bigint;
  v_err  text;
  v_st   text;
  v_rej  jsonb := '[]';
  v_rows jsonb;
  v_sla  record;
BEGIN
  DROP TABLE IF EXISTS pg_temp.td_imp_sla;
  CREATE TEMP TABLE td_imp_sla (ord bigint, name text, sla jsonb) ON COMMIT DROP;
  IF jsonb_typeof(p_doc) = 'object' AND jsonb_typeof(p_doc->'services') = 'array' THEN
    FOR v_e, v_o IN SELECT t.e, t.o FROM jsonb_array_elements(p_doc->'services') WITH ORDINALITY t(e, o) LOOP
      CONTINUE WHEN jsonb_typeof(v_e) <> 'object' OR NOT v_e ? 'sla';
      v_err := NULL;
      IF jsonb_typeof(v_e->'sla') <> 'null' THEN
        v_err := triaged._sla_doc_error(v_e->'sla',
                   NOT EXISTS (SELECT 1 FROM triaged.sla sl JOIN triaged.service s ON s.id = sl.service_id
                                WHERE s.name = v_e->>'name'));
      END IF;
      IF v_err IS NOT NULL THEN
        v_rej := v_rej || jsonb_build_object('status', 'rejected', 'kind', 'service',
                   'name', coalesce(v_e->>'name', '#' || v_o),
                   'detail', 'service #' || v_o || ': sla: ' || v_err);
      ELSE
        INSERT INTO td_imp_sla VALUES (v_o, v_e->>'name', v_e->'sla');
      END IF;
    END LOOP;
    v_core := jsonb_set(p_doc, '{services}',
      (SELECT coalesce(jsonb_agg(CASE WHEN jsonb_typeof(t.e) = 'object' THEN t.e - 'sla' ELSE t.e END
                                 ORDER BY t.o), '[]')
         FROM jsonb_array_elements(p_doc->'services') WITH ORDINALITY t(e, o)));
  END IF;
  SELECT coalesce(jsonb_agg(jsonb_build_object('status', c.status, 'kind', c.kind, 'name', c.name,
                                               'detail', c.detail)), '[]')
    INTO v_rows FROM triaged._cmdb_import_core(v_core) c;
  IF jsonb_array_length(v_rej) > 0 OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_rows) x
                                                WHERE x->>'status' = 'rejected') THEN
    RETURN QUERY
      SELECT x->>'status', x->>'kind', x->>'name', x->>'detail'
        FROM jsonb_array_elements(v_rows || v_rej) x WHERE x->>'status' = 'rejected';
    RETURN;
  END IF;
  RETURN QUERY SELECT x->>'status', x->>'kind', x->>'name', x->>'detail'
                 FROM jsonb_array_elements(v_rows) x;
  FOR v_sla IN SELECT t.name, t.sla, s.id FROM td_imp_sla t JOIN triaged.service s ON s.name = t.name
                ORDER BY t.ord LOOP
    v_st := triaged._sla_apply(v_sla.id, v_sla.sla);
    IF v_st <> 'unchanged' THEN
      RETURN QUERY SELECT CASE WHEN v_st = 'created' THEN 'created' ELSE 'changed' END, 'sla',
                          v_sla.name::text, CASE WHEN v_st = 'removed' THEN 'removed' ELSE '' END;
    END IF;
  END LOOP;
END $$;

CREATE FUNCTION triaged.cmdb_export() RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_set(d, '{services}', coalesce((
    SELECT jsonb_agg(CASE WHEN sl.service_id IS NULL THEN t.e
                          ELSE t.e || jsonb_build_object('sla', triaged._sla_doc(sl)) END ORDER BY t.o)
      FROM jsonb_array_elements(d->'services') WITH ORDINALITY t(e, o)
      LEFT JOIN triaged.service s ON s.name = t.e->>'name'
      LEFT JOIN triaged.sla sl ON sl.service_id = s.id), '[]'))
    FROM (SELECT triaged._cmdb_export_core() AS d) x
$$;

-- ---------------------------------------------------------------------------
-- the service level review report (triagectl report)

-- '2026-10' (a month) or '2026-Q4' (a quarter), UTC.
CREATE FUNCTION triaged.sla_period_range(p text) RETURNS tstzrange
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v_m text[];
BEGIN
  v_m := regexp_match(coalesce(p, ''), '^([0-9]{4})-([0-9]{2})$');
  IF v_m IS NOT NULL AND v_m[2]::int BETWEEN 1 AND 12 THEN
    RETURN triaged.sla_period_of('month', make_timestamptz(v_m[1]::int, v_m[2]::int, 1, 0, 0, 0, 'UTC'));
  END IF;
  v_m := regexp_match(coalesce(p, ''), '^([0-9]{4})-[Qq]([1-4])$');
  IF v_m IS NOT NULL THEN
    RETURN triaged.sla_period_of('quarter',
                                 make_timestamptz(v_m[1]::int, v_m[2]::int * 3 - 2, 1, 0, 0, 0, 'UTC'));
  END IF;
  RAISE EXCEPTION USING ERRCODE = '22023',
    MESSAGE = format('period %L: expected YYYY-MM (a month) or YYYY-Qn (a quarter)', p);
END $$;

-- The whole report as one document: per service (or the one named) the
-- numbers of sla_report_json plus the daily burn-down, the alert sources,
-- the maintenance taken and the capacity risks of its CIs (what runs out
-- within 90 days of the period's end, from the trends as they stand when the
-- report is made, with the daily maxima of the period for a sparkline). NULL
-- for an unknown service.
CREATE FUNCTION triaged.sla_report_doc(p_period text, p_service text DEFAULT NULL,
                                       p_now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_r     tstzrange := triaged.sla_period_range(p_period);
  v_ids   bigint[];
  v_risks jsonb;
BEGIN
  IF p_service IS NOT NULL THEN
    v_ids := ARRAY(SELECT s.id FROM triaged.service s WHERE s.name = p_service);
    IF cardinality(v_ids) = 0 THEN
      RETURN NULL;
    END IF;
  END IF;
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'ci_id', k.ci_id, 'ci', k.ci, 'metric', k.metric, 'status', k.status,
           'exhaustion_at', k.exhaustion_at, 'growth_30d_pct', k.growth_30d_pct,
           'last_value', k.last_value, 'limit', k.capacity_limit,
           'daily_max', (SELECT coalesce(jsonb_agg(x.v ORDER BY x.d), '[]')
                           FROM (SELECT date_trunc('day', h.hour) AS d, max(h.max_value) AS v
                                   FROM triaged.capacity_hourly h
                                  WHERE h.ci_id = k.ci_id AND h.metric = k.metric
                                    AND h.hour >= lower(v_r) AND h.hour < upper(v_r)
                                  GROUP BY 1) x))
           ORDER BY k.exhaustion_at NULLS FIRST, k.ci, k.metric), '[]')
    INTO v_risks
    FROM triaged.capacity_risks(interval '90 days', least(upper(v_r), p_now)) k;
  RETURN jsonb_build_object(
    'period', p_period, 'from', lower(v_r), 'to', upper(v_r), 'generated_at', p_now,
    'services', coalesce((
      SELECT jsonb_agg(r.doc || jsonb_build_object(
        'daily', (SELECT jsonb_agg(jsonb_build_object('day', d.day, 'service_seconds', d.service_seconds,
                                                      'downtime_seconds', d.downtime_seconds,
                                                      'error_budget_remaining_seconds',
                                                      d.budget_remaining_seconds) ORDER BY d.day)
                    FROM triaged.sla_daily(r.service_id, lower(v_r), upper(v_r), p_now) d),
        'alert_sources', (SELECT coalesce(jsonb_agg(jsonb_build_object('source', a.source, 'alerts', a.alerts,
                                                                     'messages', a.messages,
                                                                     'dedup_ratio', a.dedup_ratio)), '[]')
                            FROM triaged.sla_alert_sources(r.service_id, lower(v_r), upper(v_r)) a),
        'maintenance', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', m.maintenance_id, 'target', m.target,
                                                                   'from', lower(m.during), 'to', upper(m.during),
                                                                   'change_ref', m.change_ref, 'reason', m.reason,
                                                                   'seconds', m.seconds)), '[]')
                          FROM triaged.sla_maintenance_taken(r.service_id, lower(v_r), upper(v_r)) m),
        'capacity', (SELECT coalesce(jsonb_agg(e), '[]')
                       FROM jsonb_array_elements(v_risks) e
                      WHERE (e->>'ci_id')::bigint IN (SELECT sc.ci_id FROM triaged.service_ci sc
                                                       WHERE sc.service_id = r.service_id)))
        ORDER BY r.doc->>'service')
        FROM triaged.sla_report_json(lower(v_r), upper(v_r), v_ids, p_now) r), '[]'))
  ;
END $$;

-- 028_triggers.sql — HEADER PLACEHOLDER
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

-- ---------------------------------------------------------------------------
-- 1. an alert's status changed outside the engine's batch (013's row
--    trigger): its incidents locked in id order, then updated by the row
--    versions locked

CREATE OR REPLACE FUNCTION triaged.alert_status_counts() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan = off   -- (028) by key, whatever the statistics say
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
AS $$
DECLARE
  v_aids   bigint[];
  v_firing boolean[];
  v_ids    bigint[];
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
  -- per incident of the links: the links whose alert is there, and the
  -- firing ones among them (the transition table and the array only)
  SELECT coalesce(array_agg(d.incident_id ORDER BY d.incident_id), '{}'),
         coalesce(array_agg(d.n ORDER BY d.incident_id), '{}'),
         coalesce(array_agg(d.f ORDER BY d.incident_id), '{}')
    INTO v_ids, v_n, v_f
    FROM (SELECT n.incident_id, count(x.id)::integer AS n,
                 (count(*) FILTER (WHERE x.firing))::integer AS f
            FROM added n LEFT JOIN unnest(v_aids, v_firing) x(id, firing) ON x.id = n.alert_id
           GROUP BY n.incident_id) d;
  -- the incidents, locked in id order (every incident of the links, as
  -- 015), by incident_pkey; their deltas next to their row versions
  SELECT coalesce(array_agg(l.ctid ORDER BY l.id), '{}'),
         coalesce(array_agg(d.n ORDER BY l.id), '{}'),
         coalesce(array_agg(d.f ORDER BY l.id), '{}')
    INTO v_tids, v_n, v_f
    FROM (SELECT i.id, i.ctid FROM triaged.incident i WHERE i.id = ANY (v_ids)
           ORDER BY i.id FOR UPDATE OF i) l
    JOIN unnest(v_ids, v_n, v_f) d(id, n, f) ON d.id = l.id;
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

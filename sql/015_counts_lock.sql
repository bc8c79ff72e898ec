-- 015_counts_lock.sql — links inserted outside the engine's batch (a merge
-- moving them, alerts leaving maintenance, the jsonb path, tick, SQL
-- callers) count their alerts' status only once no other transaction can
-- still change it.
--
-- 013's trigger read the linked alerts' status without locking them. A
-- merge (session A) moving an alert's link while another lane's batch
-- (session B) resolved that alert counted it as firing in the incident it
-- joined (B not committed yet), and B's delta went to the incident B had
-- seen it linked to, the merged one: the open incident kept one firing
-- alert too many and never became pending resolve
-- (tests/integration/test_counts_race.sh reproduces it: 2/2 instead of 2/1,
-- and -1 firing on the merged incident).
--
-- Now the trigger takes a FOR SHARE lock on the alerts of the links added,
-- in id order, before it counts them. A batch that changes one of them
-- waits for this transaction (its later statements then see the moved
-- link), or this one waits for the batch to commit (and reads its status);
-- if each holds what the other needs (this transaction an incident the
-- batch's end locks), PostgreSQL's deadlock detection aborts one and the
-- daemon retries that batch. A row lock the transaction already holds
-- (the jsonb path locks its alerts first) costs nothing more.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

CREATE OR REPLACE FUNCTION triaged.incident_alert_counts_insert() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan = off   -- by key, whatever the statistics say (once a statement)
AS $$
BEGIN
  IF current_setting('triaged.counts_deferred', true) = 'on' THEN
    RETURN NULL;   -- the engine's batch counts them itself
  END IF;
  PERFORM 1 FROM triaged.alert a
    WHERE a.id IN (SELECT n.alert_id FROM added n) ORDER BY a.id FOR SHARE OF a;
  PERFORM 1 FROM triaged.incident i
    WHERE i.id IN (SELECT n.incident_id FROM added n) ORDER BY i.id FOR UPDATE OF i;
  UPDATE triaged.incident i
     SET alert_count = i.alert_count + d.n, firing_count = i.firing_count + d.f,
         updated_at = now()
    FROM (SELECT n.incident_id, count(*)::integer AS n,
                 (count(*) FILTER (WHERE a.status = 'firing'))::integer AS f
            FROM added n JOIN triaged.alert a ON a.id = n.alert_id
           GROUP BY n.incident_id) d
   WHERE i.id = d.incident_id;
  RETURN NULL;
END $$;

-- 023_keep_id.sql — an alert's id is still refused a change, without a row
-- lock on every UPDATE of the alert table.
--
-- 001's alert_keep_id was a BEFORE UPDATE OF id row trigger. PostgreSQL
-- fetches and locks the old row for any BEFORE UPDATE row trigger before it
-- looks at the trigger's column list and WHEN, so every UPDATE of an alert
-- (a duplicate's count, ~90 % of a storm's rows) paid a tuple lock: ~0.5 µs
-- and a 54-byte WAL record next to its 138-byte HOT update (measured by the
-- dups9 helper, sql/022). An AFTER row trigger with the same column list
-- and WHEN is checked when the change is queued, with no lock; raising
-- there aborts the statement all the same (an id change that also clashes
-- with the primary key reports the unique violation first). The alert table
-- has no other BEFORE row trigger. The incident and CI tables keep theirs:
-- their touch triggers (BEFORE, updated_at) take the lock anyway.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

DROP TRIGGER alert_keep_id ON triaged.alert;
CREATE TRIGGER alert_keep_id AFTER UPDATE OF id ON triaged.alert
  FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id) EXECUTE FUNCTION triaged.keep_id();

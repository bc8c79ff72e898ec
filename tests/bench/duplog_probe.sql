-- tests/bench/duplog_probe.sql — a design NOT built, for bench_dups.sh
-- DUPLOG=1: a batch's pure duplicates recorded as ONE log row (arrays),
-- their alerts locked FOR SHARE (a concurrent state change waits, or is
-- waited for), instead of an UPDATE of each alert row; a fold (not written)
-- would apply the log to alert.occurrences and last_seen later, so those
-- would lag (a change of DESIGN §6's alert table). What it measures: how
-- much of a duplicate's cost the row UPDATE is. Installed in the bench's
-- throwaway database only.
CREATE TABLE IF NOT EXISTS triaged.dup_log (ids bigint[], ns bigint[], lasts timestamptz[]);
CREATE OR REPLACE FUNCTION triaged._dup_log_probe(
    p_fp text[], p_ci_id bigint[], p_summary text[], p_labels jsonb[], p_severity text[],
    p_status text[], p_n bigint[], p_first timestamptz[], p_last timestamptz[])
RETURNS TABLE (nlean integer) LANGUAGE plpgsql AS $$
DECLARE
  v_ids bigint[]; v_ns bigint[]; v_lasts timestamptz[];
BEGIN
  SELECT coalesce(array_agg(z.id), '{}'), coalesce(array_agg(z.n), '{}'), coalesce(array_agg(z.l), '{}')
    INTO v_ids, v_ns, v_lasts
    FROM (SELECT a.id, u.n, u.l
            FROM unnest(p_fp, p_ci_id, p_summary, p_labels, p_severity, p_status, p_n, p_first, p_last)
                   u(fp, ci, sm, lab, sev, st, n, f, l)
            JOIN triaged.alert a ON a.fingerprint = u.fp
           WHERE a.status = 'firing' AND u.st = 'firing' AND a.severity = u.sev
             AND u.f >= a.last_seen AND NOT a.suppressed
             AND a.ci_id IS NOT DISTINCT FROM u.ci
             AND a.summary IS NOT DISTINCT FROM u.sm AND a.labels = u.lab
           ORDER BY u.fp
             FOR SHARE OF a) z;
  IF cardinality(v_ids) > 0 THEN
    INSERT INTO triaged.dup_log VALUES (v_ids, v_ns, v_lasts);
  END IF;
  RETURN QUERY SELECT cardinality(v_ids);
END $$;

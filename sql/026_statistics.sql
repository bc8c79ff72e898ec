-- 026_statistics.sql — an autovacuum pass over the engine tables takes a
-- fifth of the CPU it took, and never most of a core for long (issue 3,
-- latency): per-column statistics targets on alert, alert_history,
-- incident, incident_alert and incident_event. Same results (statistics
-- only choose plans), and the same plans (see "Checked" below).
--
-- Why. At 5,000 new alerts/s a lane's backend takes 70-80 % of a core, and
-- on a fresh database the first autovacuum pass over these five tables
-- comes in nearly every 20-s latency run (the launcher visits the database
-- every autovacuum_naptime / databases): ~0.8 s of a core, most of it
-- ANALYZE at full speed (autovacuum's cost-based delay throttles the pages
-- it reads, not the statistics it computes), and the run's p99 goes from
-- 45-50 ms to 80-230 ms. In production such passes come at every 10 %
-- (analyze) and 20 % (vacuum of inserts) growth of a table.
--
-- Where ANALYZE's time goes (perf on the backend): sampling the table, then
-- for each column with a statistics target, fetching that column from every
-- sampled row (a cache miss per row, nocachegetattr past the first varlena
-- column) and sorting/counting the values. The sample is 300 x the largest
-- target of the table's columns rows (30,000 at the default 100) from as
-- many pages. So its cost is (rows sampled) x (1 + columns analysed).
--
-- 1. STATISTICS 0 (no statistics gathered) for the columns no query's plan
--    or estimate reads: columns that are only written, returned, compared
--    with another column (a join clause costed at a fixed selectivity
--    whatever the statistics) or sorted after the rows are found. Every
--    query of every function (pg_get_functiondef of the migrated schema),
--    triagectl's own queries and the views were read for each column:
--      alert: dedup_key, summary, labels, occurrences, first_seen,
--        last_seen, fired_at, resolved_at, state_changed_at, created_at,
--        updated_at (kept: id, fingerprint, source, resource, check_name,
--        severity, status, ci_id, flapping, suppressed: API and triagectl
--        filters, capacity's look-up, the engine's and tick's look-ups);
--      alert_history: severity, occurrences, detail, recorded_at (kept:
--        id, alert_id, at, from_status, to_status: flap counts, re-fire
--        checks);
--      incident: number (its unique index tells the planner it is
--        unique), title, description, severity, impact, unbound,
--        acknowledged_at (SLA's aggregate FILTER only), acknowledged_by,
--        reopen_count, created_at, updated_at, resolve_at,
--        last_event_hash, up_ci_ids, alert_count, firing_count (kept, at
--        the default target: id, status, priority, urgency, ci_id,
--        resource, opened_at, resolved_at, closed_at, merged_into,
--        resolve_pending_since, resolved_decided_at, and the expression
--        indexes' columns: API lists, SLA reports, the tick);
--      incident_alert: attached_at;
--      incident_event: at, actor, kind, detail, prev_hash, hash (the
--        timeline and audit_verify read an incident's events by its id).
--    jsonb, bytea and text of random content (labels, detail, hash) were
--    the dearest: incident_event's ANALYZE at 13,800 events went from
--    ~110 to ~9 ms.
-- 2. STATISTICS 10 for the kept columns of alert, alert_history,
--    incident_alert and incident_event: a sample of 3,000 rows instead of
--    30,000. What reads them: the primary and unique keys (estimates come
--    from the unique index whatever the sample), id-like keys looked up by
--    index, and low-cardinality columns (status, source, severity,
--    flapping, suppressed, from_status, to_status, role) whose values all
--    fit in a list of 10 most common values. What it costs: a coarser
--    histogram (10 buckets) and a rougher distinct count for resource and
--    ci_id (13,475 -> 7,612 for ~13,500 resources, 2,010 -> 1,407 for
--    2,000 CIs in the census database below);
--    no plan changed. The incident table keeps the default target: the
--    API and SLA reports filter it on time ranges and several columns.
--
-- Measured (tests/bench/bench_autovacuum.sh: the latency run's database
-- built through ingest_arrays, autovacuum off; then, on fresh copies, one
-- session does a worker's pass, VACUUM then ANALYZE of each table with
-- autovacuum's cost delay of 2 ms and limit 200; backend CPU from
-- /proc/<pid>/schedstat, sampled every 10 ms; 2026-11-27 00:50-01:25 UTC,
-- machine shared with other work, medians of 2-3 alternated runs, two
-- sessions of runs; before = every target back to the default):
--   115,000 alerts (the latency run's end state): whole pass 664-784 ->
--     164-215 ms CPU; ANALYZE alert 299-329 -> 24-26 ms, alert_history
--     78-109 -> 14-15, incident 49-80 -> 28-42, incident_alert 41-60 ->
--     8-10, incident_event 94-105 -> 7-9; VACUUMs unchanged (~90-110 ms);
--     peak share of a core over any 100 ms 0.91-1.00 -> 0.39-0.59, over
--     any 1 s 0.54-0.72 -> 0.16-0.20.
--   1,150,000 alerts: ANALYZEs 1,730-1,990 -> 385-445 ms (incident
--     247-306 of it); whole pass 3.3-4.0 -> 2.1-2.4 s, now mostly VACUUM
--     (~1.7 s over ~20 s, throttled); peak over any 1 s 0.43-0.58 ->
--     0.29-0.35 (incident's ANALYZE).
--   Real autovacuum (log_autovacuum_min_duration 0 on the engine tables of
--   a database fed 115,000 alerts at 5,000/s, one pass after the feed):
--     ANALYZEs 470-720 -> 70-80 ms of CPU (3 runs each; alert 250-350 ->
--     20), VACUUMs 40-80 ms both ways.
--
-- Tried and not kept: per-table autovacuum_vacuum_cost_limit 100 or 50
-- (delay 2 ms): the VACUUMs, already at 0.1-0.3 of a core in any 100 ms,
-- took 2-4x longer for no lower peak; the ANALYZE peaks are its statistics
-- computation, which the cost-based delay does not throttle. Considered
-- and not done: larger autovacuum_analyze_scale_factor /
-- _vacuum_insert_scale_factor: fewer
-- passes, but not the first ones of a fresh database (threshold 50 rows
-- while reltuples is unknown), and each pass is now cheap; statistics
-- and visibility maps would lag further behind a growing table.
--
-- On a database that already has statistics, the rows of the columns set
-- to 0 stay in pg_statistic (ANALYZE does not remove them; no plan reads
-- them); the other columns get their new samples at the next ANALYZE.
-- ALTER COLUMN ... SET STATISTICS takes a SHARE UPDATE EXCLUSIVE lock
-- (reads and writes go on) and invalidates the tables' cached plans once.
--
-- An operator can override any of this (ALTER TABLE ... ALTER COLUMN ...
-- SET STATISTICS n, or -1 for default_statistics_target; storage
-- parameters per table), e.g. to raise a column's target for an ad-hoc
-- query on it; the next ANALYZE applies it.
--
-- Checked: tests/integration/test_statistics_settings.sh (the targets and
-- what ANALYZE keeps, and the plans of a workload identical to those with
-- the default targets); a census of ~1,600 plans (API lists with each
-- filter, an incident's detail, actions, SLA report, audit, capacity, the
-- engine's batches of new, duplicate, resolved, re-fired, bound and
-- correlated alerts, ticks) on a database of 135,000 alerts in 13,500
-- incidents: the same plan for every statement with and without this
-- file in 6 ANALYZEs each way, but for one statement whose plan changed
-- in 1 of the 6 either way (_ingest_batch's look-up of known alerts by
-- fingerprint = ANY: an index scan, or a bitmap scan and a sort, as the
-- sample's correlation of fingerprint says); test_tick_plans,
-- test_engine_fastpaths, test_engine_finish, test_ingest_sql,
-- test_http_api, test_sla_*, test_capacity*, test_cmdb_*, and with main's
-- sql/028 merged in, test_tick_waiting and test_count_trigger_plans.
--
-- No BEGIN/COMMIT: the runner wraps this file in one transaction.

ALTER TABLE triaged.alert
  ALTER COLUMN dedup_key SET STATISTICS 0,
  ALTER COLUMN summary SET STATISTICS 0,
  ALTER COLUMN labels SET STATISTICS 0,
  ALTER COLUMN occurrences SET STATISTICS 0,
  ALTER COLUMN first_seen SET STATISTICS 0,
  ALTER COLUMN last_seen SET STATISTICS 0,
  ALTER COLUMN fired_at SET STATISTICS 0,
  ALTER COLUMN resolved_at SET STATISTICS 0,
  ALTER COLUMN state_changed_at SET STATISTICS 0,
  ALTER COLUMN created_at SET STATISTICS 0,
  ALTER COLUMN updated_at SET STATISTICS 0,
  ALTER COLUMN id SET STATISTICS 10,
  ALTER COLUMN fingerprint SET STATISTICS 10,
  ALTER COLUMN source SET STATISTICS 10,
  ALTER COLUMN resource SET STATISTICS 10,
  ALTER COLUMN check_name SET STATISTICS 10,
  ALTER COLUMN severity SET STATISTICS 10,
  ALTER COLUMN status SET STATISTICS 10,
  ALTER COLUMN ci_id SET STATISTICS 10,
  ALTER COLUMN flapping SET STATISTICS 10,
  ALTER COLUMN suppressed SET STATISTICS 10;

ALTER TABLE triaged.alert_history
  ALTER COLUMN severity SET STATISTICS 0,
  ALTER COLUMN occurrences SET STATISTICS 0,
  ALTER COLUMN detail SET STATISTICS 0,
  ALTER COLUMN recorded_at SET STATISTICS 0,
  ALTER COLUMN id SET STATISTICS 10,
  ALTER COLUMN alert_id SET STATISTICS 10,
  ALTER COLUMN at SET STATISTICS 10,
  ALTER COLUMN from_status SET STATISTICS 10,
  ALTER COLUMN to_status SET STATISTICS 10;

ALTER TABLE triaged.incident
  ALTER COLUMN number SET STATISTICS 0,
  ALTER COLUMN title SET STATISTICS 0,
  ALTER COLUMN description SET STATISTICS 0,
  ALTER COLUMN severity SET STATISTICS 0,
  ALTER COLUMN impact SET STATISTICS 0,
  ALTER COLUMN unbound SET STATISTICS 0,
  ALTER COLUMN acknowledged_at SET STATISTICS 0,
  ALTER COLUMN acknowledged_by SET STATISTICS 0,
  ALTER COLUMN reopen_count SET STATISTICS 0,
  ALTER COLUMN created_at SET STATISTICS 0,
  ALTER COLUMN updated_at SET STATISTICS 0,
  ALTER COLUMN resolve_at SET STATISTICS 0,
  ALTER COLUMN last_event_hash SET STATISTICS 0,
  ALTER COLUMN up_ci_ids SET STATISTICS 0,
  ALTER COLUMN alert_count SET STATISTICS 0,
  ALTER COLUMN firing_count SET STATISTICS 0;

ALTER TABLE triaged.incident_alert
  ALTER COLUMN attached_at SET STATISTICS 0,
  ALTER COLUMN incident_id SET STATISTICS 10,
  ALTER COLUMN alert_id SET STATISTICS 10,
  ALTER COLUMN role SET STATISTICS 10;

ALTER TABLE triaged.incident_event
  ALTER COLUMN at SET STATISTICS 0,
  ALTER COLUMN actor SET STATISTICS 0,
  ALTER COLUMN kind SET STATISTICS 0,
  ALTER COLUMN detail SET STATISTICS 0,
  ALTER COLUMN prev_hash SET STATISTICS 0,
  ALTER COLUMN hash SET STATISTICS 0,
  ALTER COLUMN id SET STATISTICS 10,
  ALTER COLUMN incident_id SET STATISTICS 10;

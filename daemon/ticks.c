/* ticks.c — the pipeline's timed statements.
 *
 * A persistent one-second timer runs, when their time has come:
 *   triaged.tick()           every second, on the "tick" connection: resolve
 *                            after grace, close after quiet, flapping ends,
 *                            missing heartbeats (sql/002, sql/003);
 *   triaged.capacity_tick()  every [capacity] rollup_interval, and
 *   triaged.sla_tick()       every [sla] tick_interval (when [sla] events is
 *                            on), both on the "capacity" connection, so
 *                            rollups and trends never delay a batch.
 * A statement still running when its next turn comes is not queued again:
 * the turn is skipped. Errors are logged (rate limited) and counted; the
 * next turn tries again. The rows they return are published like a batch's
 * (through the pipeline's callback): incident changes, capacity warnings,
 * SLA events. */
#include "internal/ticks.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/alert.h" /* td_format_rfc3339 */
#include "internal/log.h"
#include "internal/metrics.h"
#include "internal/util.h"

struct td_ticks {
    const td_config *cfg;
    td_ticks_conf c;
    struct event *ev;
    bool tick_running;
    bool capacity_running;
    int64_t capacity_due; /* monotonic ms */
    bool sla_running;     /* on the capacity connection too, after it */
    int64_t sla_due;      /* monotonic ms */
    td_ratelimit rl;
    td_metric *m_cap_warnings, *m_sla_errors;
};

char *
td_engine_opts(const td_config *cfg, const char *actor, bool tick)
{
    char now[32];
    td_format_rfc3339(td_now_ms() * 1000, now);
    json_t *o = json_object();
    json_object_set_new(o, "now", json_string(now));
    json_object_set_new(o, "actor", json_string(actor));
    json_object_set_new(o, "reopen_window_ms", json_integer(cfg->reopen_window_ms));
    json_object_set_new(o, "flap_threshold", json_integer(cfg->flap_threshold));
    json_object_set_new(o, "flap_window_ms", json_integer(cfg->flap_window_ms));
    json_object_set_new(o, "correlation_window_ms", json_integer(cfg->correlation_window_ms));
    json_object_set_new(o, "priority_matrix", json_string(cfg->priority_matrix));
    json_object_set_new(o, "impact_many_services", json_integer(cfg->impact_many_services));
    if (tick) {
        json_object_set_new(o, "resolve_grace_ms", json_integer(cfg->resolve_grace_ms));
        json_object_set_new(o, "close_after_ms", json_integer(cfg->close_after_ms));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s; /* (Jansson allocates with td_malloc: never NULL for lack of memory) */
}

/* NULL res: the connection failed (the next turn tries again); an error
 * result is logged. True when res holds rows to read. */
static bool
result_ok(td_ticks *t, const char *what, const PGresult *res, const char *err)
{
    if (!res) {
        td_debug("tick skipped", "what=%s error=\"%s\"", what, TD_LOG_VALUE(err));
        return false;
    }
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        return true;
    uint32_t suppressed;
    const char *e = PQresultErrorMessage(res);
    if (td_ratelimit_allow(&t->rl, 5, &suppressed))
        td_warn("tick failed", "what=%s error=\"%s\" suppressed=%u", what,
                TD_LOG_VALUE(e), suppressed);
    return false;
}

static void
on_tick_result(void *arg, const PGresult *res, const char *err)
{
    td_ticks *t = arg;
    t->tick_running = false;
    if (!result_ok(t, "tick", res, err))
        return;
    for (int r = 0; r < PQntuples(res); r++)
        if (strcmp(PQgetvalue(res, r, 0), "stats") != 0)
            t->c.publish(t->c.arg, res, r);
}

static void
on_capacity_result(void *arg, const PGresult *res, const char *err)
{
    td_ticks *t = arg;
    t->capacity_running = false;
    if (!result_ok(t, "capacity_tick", res, err))
        return;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *kind = PQgetvalue(res, r, 0);
        if (strcmp(kind, "capacity.tick") == 0) {
            td_debug("capacity tick", "result=%s", PQgetvalue(res, r, 2));
            continue;
        }
        if (strcmp(kind, "capacity.warning") == 0)
            td_metric_add(t->m_cap_warnings, 1);
        t->c.publish(t->c.arg, res, r);
    }
}

static void
capacity_tick(td_ticks *t)
{
    const td_config *cfg = t->cfg;
    int64_t now = td_mono_ms();
    if (t->capacity_running || now < t->capacity_due)
        return;
    t->capacity_due = now + cfg->capacity_rollup_interval_ms;
    t->capacity_running = true;
    char ts[32];
    td_format_rfc3339(td_now_ms() * 1000, ts);
    char *opts = td_asprintf(
        "{\"now\":\"%s\",\"window_ms\":%lld,\"horizon_ms\":%lld,\"retention_ms\":%lld,"
        "\"min_points\":%d,\"min_r2\":%.2f,\"max_hours\":24,\"open_hour_ms\":%lld}",
        ts, (long long)cfg->capacity_window_ms, (long long)cfg->capacity_horizon_ms,
        (long long)cfg->capacity_retention_ms, cfg->capacity_min_points,
        cfg->capacity_min_r2_pct / 100.0,
        (long long)(5 * cfg->capacity_rollup_interval_ms)); /* the open hour: 1 tick in 5 */
    const char *params[1] = {opts};
    td_store_exec(t->c.cap_store, t->c.stmt_capacity, params, on_capacity_result, t);
    free(opts);
}

static void
on_sla_result(void *arg, const PGresult *res, const char *err)
{
    td_ticks *t = arg;
    t->sla_running = false;
    if (res && PQresultStatus(res) != PGRES_TUPLES_OK)
        td_metric_add(t->m_sla_errors, 1);
    if (!result_ok(t, "sla_tick", res, err))
        return;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *kind = PQgetvalue(res, r, 0);
        if (strcmp(kind, "sla.tick") == 0) {
            td_debug("sla tick", "result=%s", PQgetvalue(res, r, 2));
            continue;
        }
        char labels[64];
        snprintf(labels, sizeof(labels), "kind=\"%s\"", kind);
        td_metric_add(td_counter("sla_events", "SLA events raised, by kind", labels), 1);
        t->c.publish(t->c.arg, res, r);
    }
}

/* sla.breached / sla.burn_rate events, with the burn-rate rule from [sla]. */
static void
sla_tick(td_ticks *t)
{
    const td_config *cfg = t->cfg;
    int64_t now = td_mono_ms();
    if (!cfg->sla_events || t->sla_running || now < t->sla_due)
        return;
    t->sla_due = now + cfg->sla_tick_interval_ms;
    t->sla_running = true;
    char ts[32];
    td_format_rfc3339(td_now_ms() * 1000, ts);
    char *opts = td_asprintf(
        "{\"now\":\"%s\",\"fast_budget_pct\":%d,\"fast_window_ms\":%lld,"
        "\"fast_short_ms\":%lld,\"slow_budget_pct\":%d,\"slow_window_ms\":%lld,"
        "\"slow_short_ms\":%lld}",
        ts, cfg->sla_fast_budget_pct, (long long)cfg->sla_fast_window_ms,
        (long long)cfg->sla_fast_short_window_ms, cfg->sla_slow_budget_pct,
        (long long)cfg->sla_slow_window_ms, (long long)cfg->sla_slow_short_window_ms);
    const char *params[1] = {opts};
    td_store_exec(t->c.cap_store, t->c.stmt_sla, params, on_sla_result, t);
    free(opts);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    td_ticks *t = arg;
    if (td_store_connected(t->c.cap_store)) {
        capacity_tick(t);
        sla_tick(t);
    }
    if (t->tick_running || !td_store_connected(t->c.tick_store))
        return;
    t->tick_running = true;
    char *opts = td_engine_opts(t->cfg, t->c.actor, true);
    const char *params[1] = {opts};
    td_store_exec(t->c.tick_store, t->c.stmt_tick, params, on_tick_result, t);
    free(opts);
}

td_ticks *
td_ticks_new(const td_config *cfg, struct event_base *base, const td_ticks_conf *conf)
{
    td_ticks *t = td_calloc(1, sizeof(*t));
    t->cfg = cfg;
    t->c = *conf;
    t->m_cap_warnings = td_counter("capacity_warnings", "capacity_warning events raised", NULL);
    t->m_sla_errors = td_counter("sla_tick_errors", "Failed runs of triaged.sla_tick", NULL);
    t->ev = event_new(base, -1, EV_PERSIST, on_timer, t);
    struct timeval one = {1, 0};
    event_add(t->ev, &one);
    return t;
}

void
td_ticks_reload(td_ticks *t, const td_config *cfg)
{
    t->cfg = cfg;
}

/* A statement in flight calls back with NULL res when its store is freed:
 * free the stores first, then the ticks. */
void
td_ticks_free(td_ticks *t)
{
    if (!t)
        return;
    event_free(t->ev);
    free(t);
}

/* ticks.h — the pipeline's timed statements (see ticks.c).
 *
 * Once a second: triaged.tick() on the "tick" connection (resolve after
 * grace, close after quiet, flapping, heartbeats); triaged.capacity_tick()
 * every [capacity] rollup_interval and triaged.sla_tick() every [sla]
 * tick_interval on the "capacity" connection. The stores and statements
 * are the pipeline's; the rows are published through its callback. */
#ifndef TD_TICKS_H
#define TD_TICKS_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>

#include "internal/config.h"
#include "internal/store.h"

typedef struct td_ticks td_ticks;

typedef struct td_ticks_conf {
    td_store *tick_store; /* triaged.tick(); never behind a batch */
    td_store *cap_store;  /* capacity_tick() then sla_tick() */
    size_t stmt_tick, stmt_capacity, stmt_sla; /* the stores' statements */
    const char *actor;    /* borrowed: outlives the ticks */
    /* publishes row `row` of res (kind, key, payload), as a batch's */
    void (*publish)(void *arg, const PGresult *res, int row);
    void *arg;
} td_ticks_conf;

/* Starts the once-a-second timer. The stores and actor in conf are
 * borrowed; the caller frees the result with td_ticks_free(). */
td_ticks *td_ticks_new(const td_config *cfg, struct event_base *base,
                       const td_ticks_conf *conf);
void td_ticks_reload(td_ticks *t, const td_config *cfg);
/* Only after both stores are freed: a statement in flight calls back into
 * the ticks (with NULL res) when its store is freed. */
void td_ticks_free(td_ticks *t);

/* The engine's options as triaged.ingest_arrays() and triaged.tick() take
 * them (jsonb text; free() it); `tick` adds the tick's own timings. */
char *td_engine_opts(const td_config *cfg, const char *actor, bool tick);

#endif

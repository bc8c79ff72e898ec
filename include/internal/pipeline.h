/* pipeline.h — from submitted messages to committed incidents.
 *
 *   submit -> decode -> batcher -> dedup (Redis) -> incident -> store (PG)
 *          -> acks to inputs, events to outputs
 *
 * The pipeline owns the Redis and PostgreSQL connections. It is the host's
 * sink (host.h): inputs submit, it acks. */
#ifndef TD_PIPELINE_H
#define TD_PIPELINE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#include "internal/config.h"
#include "internal/host.h"

typedef struct td_pipeline td_pipeline;

/* Create and connect (asynchronously); registers itself as hc's sink.
 * NULL with err on a configuration problem. Free with td_pipeline_free(). */
td_pipeline *td_pipeline_new(const td_config *cfg, struct event_base *base,
                             td_hostctx *hc, char *err, size_t errlen);
/* Refuse new messages (ack RETRY); finish what is in flight. */
void td_pipeline_stop_intake(td_pipeline *p);
/* Messages taken and not yet acked. */
size_t td_pipeline_in_flight(const td_pipeline *p);
/* Readiness (for /readyz): Redis and PostgreSQL connected, and messages
 * taken (not stopping, queue below its limit). */
void td_pipeline_health(const td_pipeline *p, bool *redis, bool *postgres, bool *taking);
void td_pipeline_reload(td_pipeline *p, const td_config *cfg);
void td_pipeline_free(td_pipeline *p);

#endif

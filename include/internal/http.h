/* http.h — the built-in HTTP server: intake, incident API, live feed,
 * metrics, health (DESIGN §5).
 *
 * "in_http" in the plugin list names this server; it is part of the daemon,
 * not a plugin, because it needs what the plugin ABI does not give: its own
 * PostgreSQL connection for reads and actions, the metrics registry, and the
 * event stream for the feed. Intake still goes through the host's submit
 * path with an ack callback, like any input. */
#ifndef TD_HTTP_H
#define TD_HTTP_H

#include <event2/event.h>
#include <stddef.h>

#include "internal/config.h"
#include "internal/errors.h"
#include "internal/host.h"
#include "internal/pipeline.h"

typedef struct td_http td_http;

/* Load the tokens, bind every [http] listen address, connect the API's
 * PostgreSQL connection. NULL with err on failure. cfg, hc and p are
 * borrowed and must outlive it. Free with td_http_free(). */
td_http *td_http_new(const td_config *cfg, struct event_base *base, td_hostctx *hc,
                     td_pipeline *p, char *err, size_t errlen);
/* Shutdown has begun: intake answers 503, feed streams end. Reads go on. */
void td_http_stop_intake(td_http *h);
/* Re-read the tokens file and apply reloaded limits (cfg is the daemon's,
 * already updated). A bad tokens file keeps the old tokens. */
void td_http_reload(td_http *h, const td_config *cfg);
/* triaged -t: the tokens file and the TLS files of [http] load. TD_OK, or
 * TD_ERR with each problem in errs. */
int td_http_check(const td_config *cfg, td_errors *errs);
/* Close every connection and free; pending requests get no answer. */
void td_http_free(td_http *h);

#endif

/* host.h — the daemon's side of the plugin ABI: loaded plugin instances and
 * the td_host table handed to them.
 *
 * The pipeline plugs itself in with td_host_set_sink(): every submitted
 * message goes there. Outputs get events through td_host_publish(). */
#ifndef TD_HOST_H
#define TD_HOST_H

#include <event2/event.h>
#include <stdbool.h>

#include "internal/config.h"
#include "triaged/plugin.h"

typedef struct td_hostctx td_hostctx;

/* Where submitted messages go; returns 0 or TD_SUBMIT_FULL like submit(). */
typedef int (*td_sink_fn)(void *arg, const char *plugin, const td_input_msg *msg);
typedef int (*td_positions_fetch_fn)(void *arg, const char *stream,
                                     const int32_t *partitions, size_t n,
                                     td_positions_fn fn, void *fn_arg);

/* Open and check every plugin the config asks for; no plugin code runs yet.
 * On failure returns NULL with every problem added to errs. Free with
 * td_hostctx_free(). */
td_hostctx *td_hostctx_new(const td_config *cfg, struct event_base *base,
                           const char *plugin_dir, td_errors *errs);
void td_hostctx_free(td_hostctx *hc);

void td_host_set_sink(td_hostctx *hc, td_sink_fn fn, td_positions_fetch_fn pf,
                      void *arg);
/* Swap in a reloaded config (the old one stays the caller's). */
void td_host_set_config(td_hostctx *hc, const td_config *cfg);

/* Call init() then start() of every plugin, outputs first. TD_ERR with the
 * reason when one fails (those already started are stopped again). */
int td_host_start(td_hostctx *hc, char *err, size_t errlen);
/* stop() every input: no new messages; in-flight ones still get acks. */
void td_host_stop_inputs(td_hostctx *hc);
/* resume() every input paused by TD_SUBMIT_FULL. */
void td_host_resume_inputs(td_hostctx *hc);
/* triaged -t: call check() of every plugin (no plugin is started); every
 * failure is added to errs. TD_OK or TD_ERR. */
int td_host_check(td_hostctx *hc, td_errors *errs);
/* SIGHUP: call reload() of every started plugin; config_get() answers
 * from FRESH during the calls (the caller keeps and frees it). */
void td_host_reload(td_hostctx *hc, const td_config *fresh);
/* Deliver an event to every output. */
void td_host_publish(td_hostctx *hc, const td_event *ev);
/* fini() every plugin, inputs first. */
void td_host_fini(td_hostctx *hc);

size_t td_host_count_plugins(const td_hostctx *hc);

/* "in_http" in [plugins] load (or derived from an [http] section) names the
 * daemon's built-in HTTP server (http.c), not a .so: the loader skips it and
 * this says whether it was asked for. */
#define TD_BUILTIN_HTTP "in_http"
bool td_host_wants_http(const td_hostctx *hc);

/* Core components inside the daemon (the HTTP server) use the same paths as
 * plugins: submit to the pipeline under a component name, and hooks called
 * after the outputs on every event and after the inputs on resume. */
typedef void (*td_event_hook_fn)(void *arg, const td_event *ev);
int td_host_submit(td_hostctx *hc, const char *component, const td_input_msg *msg);
void td_host_set_core_hooks(td_hostctx *hc, td_event_hook_fn on_event,
                            void (*on_resume)(void *arg), void *arg);

#endif

/* host.c — plugin instances and the td_host table (see host.h).
 *
 * Each plugin gets its own td_host copy whose priv points at its instance, so
 * log lines and counters carry the plugin's name without the plugin saying
 * it. Plugins only ever reach the daemon through these functions. */
#include "internal/host.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/log.h"
#include "internal/metrics.h"
#include "internal/plugin_loader.h"
#include "internal/util.h"

typedef struct td_instance {
    td_hostctx *hc;
    td_plugin_handle *handle;
    const td_plugin *def;
    td_host host;
    void *state;
    int inited, started, stopped;
} td_instance;

struct td_hostctx {
    const td_config *cfg;
    struct event_base *base;
    td_instance *inst;
    size_t n;
    td_sink_fn sink;
    td_positions_fetch_fn positions;
    void *sink_arg;
    /* Built into the daemon, not loaded: "in_http" (http.c). */
    bool builtin_http;
    /* Core hooks (the HTTP server's feed and intake). */
    td_event_hook_fn on_event;
    void (*on_resume)(void *arg);
    void *hook_arg;
};

static td_instance *
self(const td_host *h)
{
    return h->priv;
}

static void
host_log(const td_host *h, int level, const char *msg, const char *fmt, ...)
{
    if (level < td_log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    td_vlogf(level, self(h)->def->name, msg, fmt, ap);
    va_end(ap);
}

static const char *
host_config_get(const td_host *h, const char *section, const char *key)
{
    return td_config_get(self(h)->hc->cfg, section, key);
}

struct each_ctx {
    int (*fn)(const char *key, const char *value, void *arg);
    void *arg;
};

static int
each_tramp(const td_config_entry *e, void *arg)
{
    struct each_ctx *c = arg;
    return c->fn(e->key, e->value, c->arg);
}

static int
host_config_each(const td_host *h, const char *section, const char *prefix,
                 int (*fn)(const char *, const char *, void *), void *arg)
{
    struct each_ctx c = {fn, arg};
    return td_config_each(self(h)->hc->cfg, section, prefix, each_tramp, &c);
}

static int
host_submit(const td_host *h, const td_input_msg *msg)
{
    td_instance *in = self(h);
    if (!in->hc->sink) {
        td_ack ack = {.status = TD_ACK_RETRY, .reason = "not_ready",
                      .detail = "the pipeline is not running"};
        if (msg->ack)
            msg->ack(msg->ack_arg, &ack);
        return 0;
    }
    return in->hc->sink(in->hc->sink_arg, in->def->name, msg);
}

static void
host_count(const td_host *h, const char *name, const char *labels, uint64_t n)
{
    td_metrics_plugin_count(self(h)->def->name, name, labels, n);
}

static void
host_gauge(const td_host *h, const char *name, const char *labels, double v)
{
    td_metrics_plugin_gauge(self(h)->def->name, name, labels, v);
}

static int
host_positions_fetch(const td_host *h, const char *stream,
                     const int32_t *partitions, size_t n, td_positions_fn fn,
                     void *arg)
{
    td_hostctx *hc = self(h)->hc;
    if (!hc->positions)
        return -1;
    return hc->positions(hc->sink_arg, stream, partitions, n, fn, arg);
}

td_hostctx *
td_hostctx_new(const td_config *cfg, struct event_base *base,
               const char *plugin_dir, td_errors *errs)
{
    char **names, err[512];
    size_t n = td_plugin_names(cfg, &names);
    td_hostctx *hc = td_calloc(1, sizeof(*hc));
    int failed = 0;

    hc->cfg = cfg;
    hc->base = base;
    hc->inst = td_calloc(n ? n : 1, sizeof(*hc->inst));
    for (size_t i = 0; i < n; i++) {
        td_plugin_handle *ph;
        if (strcmp(names[i], TD_BUILTIN_HTTP) == 0) {
            hc->builtin_http = true; /* the daemon's HTTP server: no .so */
            continue;
        }
        if (td_plugin_open(plugin_dir, names[i], &ph, err, sizeof(err)) != TD_OK) {
            td_errors_add(errs, "%s", err);
            failed = 1;
            continue;
        }
        td_instance *in = &hc->inst[hc->n++];
        in->hc = hc;
        in->handle = ph;
        in->def = td_plugin_def(ph);
        in->host = (td_host){
            .abi_version = TD_PLUGIN_ABI_VERSION,
            .size = sizeof(td_host),
            .base = base,
            .instance = cfg->instance,
            .log = host_log,
            .config_get = host_config_get,
            .config_each = host_config_each,
            .submit = host_submit,
            .count = host_count,
            .positions_fetch = host_positions_fetch,
            .priv = in,
            .gauge = host_gauge,
        };
    }
    td_plugin_names_free(names, n);
    if (failed) {
        td_hostctx_free(hc);
        return NULL;
    }
    return hc;
}

void
td_host_set_sink(td_hostctx *hc, td_sink_fn fn, td_positions_fetch_fn pf,
                 void *arg)
{
    hc->sink = fn;
    hc->positions = pf;
    hc->sink_arg = arg;
}

bool
td_host_wants_http(const td_hostctx *hc)
{
    return hc->builtin_http;
}

void
td_host_set_core_hooks(td_hostctx *hc, td_event_hook_fn on_event,
                       void (*on_resume)(void *arg), void *arg)
{
    hc->on_event = on_event;
    hc->on_resume = on_resume;
    hc->hook_arg = arg;
}

int
td_host_submit(td_hostctx *hc, const char *component, const td_input_msg *msg)
{
    if (!hc->sink) {
        td_ack ack = {.status = TD_ACK_RETRY, .reason = "not_ready",
                      .detail = "the pipeline is not running"};
        if (msg->ack)
            msg->ack(msg->ack_arg, &ack);
        return 0;
    }
    return hc->sink(hc->sink_arg, component, msg);
}

void
td_host_set_config(td_hostctx *hc, const td_config *cfg)
{
    hc->cfg = cfg;
}

/* Outputs first so no event is produced before its output exists; inputs
 * last so nothing arrives before everything downstream is ready. */
static int
start_kind(td_hostctx *hc, td_plugin_kind kind, char *err, size_t errlen)
{
    for (size_t i = 0; i < hc->n; i++) {
        td_instance *in = &hc->inst[i];
        char e[512] = "";
        if (in->def->kind != kind)
            continue;
        if (in->def->init(&in->host, &in->state, e, sizeof(e)) != 0) {
            snprintf(err, errlen, "plugin %s: init failed: %s", in->def->name,
                     e[0] ? e : "no reason given");
            return TD_ERR;
        }
        in->inited = 1;
        if (in->def->start && in->def->start(in->state, e, sizeof(e)) != 0) {
            snprintf(err, errlen, "plugin %s: start failed: %s", in->def->name,
                     e[0] ? e : "no reason given");
            return TD_ERR;
        }
        in->started = 1;
        td_info("plugin started", "plugin=%s kind=%s", in->def->name,
                kind == TD_PLUGIN_INPUT ? "input" : "output");
    }
    return TD_OK;
}

int
td_host_start(td_hostctx *hc, char *err, size_t errlen)
{
    if (start_kind(hc, TD_PLUGIN_OUTPUT, err, errlen) != TD_OK ||
        start_kind(hc, TD_PLUGIN_INPUT, err, errlen) != TD_OK) {
        td_host_stop_inputs(hc);
        return TD_ERR;
    }
    return TD_OK;
}

void
td_host_stop_inputs(td_hostctx *hc)
{
    for (size_t i = 0; i < hc->n; i++) {
        td_instance *in = &hc->inst[i];
        if (in->def->kind == TD_PLUGIN_INPUT && in->started && !in->stopped) {
            in->stopped = 1;
            if (in->def->stop)
                in->def->stop(in->state);
        }
    }
}

void
td_host_resume_inputs(td_hostctx *hc)
{
    for (size_t i = 0; i < hc->n; i++) {
        td_instance *in = &hc->inst[i];
        if (in->def->kind == TD_PLUGIN_INPUT && in->started && !in->stopped &&
            in->def->resume)
            in->def->resume(in->state);
    }
    if (hc->on_resume)
        hc->on_resume(hc->hook_arg);
}

int
td_host_check(td_hostctx *hc, td_errors *errs)
{
    int rc = TD_OK;
    for (size_t i = 0; i < hc->n; i++) {
        td_instance *in = &hc->inst[i];
        char e[512] = "";
        if (in->def->check && in->def->check(&in->host, e, sizeof(e)) != 0) {
            td_errors_add(errs, "plugin %s: %s", in->def->name,
                          e[0] ? e : "check failed");
            rc = TD_ERR;
        }
    }
    return rc;
}

void
td_host_reload(td_hostctx *hc, const td_config *fresh)
{
    const td_config *old = hc->cfg;
    hc->cfg = fresh; /* config_get() reads the new file during reload() */
    for (size_t i = 0; i < hc->n; i++) {
        td_instance *in = &hc->inst[i];
        if (in->started && !in->stopped && in->def->reload)
            in->def->reload(in->state);
    }
    hc->cfg = old;
}

void
td_host_publish(td_hostctx *hc, const td_event *ev)
{
    for (size_t i = 0; i < hc->n; i++) {
        td_instance *in = &hc->inst[i];
        if (in->def->kind == TD_PLUGIN_OUTPUT && in->started)
            in->def->on_event(in->state, ev);
    }
    if (hc->on_event)
        hc->on_event(hc->hook_arg, ev);
}

static void
fini_kind(td_hostctx *hc, td_plugin_kind kind)
{
    for (size_t i = 0; i < hc->n; i++) {
        td_instance *in = &hc->inst[i];
        if (in->def->kind == kind && in->inited) {
            in->def->fini(in->state);
            in->inited = in->started = 0;
            in->state = NULL;
        }
    }
}

void
td_host_fini(td_hostctx *hc)
{
    fini_kind(hc, TD_PLUGIN_INPUT);
    fini_kind(hc, TD_PLUGIN_OUTPUT);
}

size_t
td_host_count_plugins(const td_hostctx *hc)
{
    return hc->n;
}

void
td_hostctx_free(td_hostctx *hc)
{
    if (!hc)
        return;
    td_host_fini(hc);
    for (size_t i = 0; i < hc->n; i++)
        td_plugin_close(hc->inst[i].handle);
    free(hc->inst);
    free(hc);
}

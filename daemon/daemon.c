/* daemon.c — the loop, signals, systemd notifications and the lifecycle.
 *
 * Everything runs on one libevent loop. Signals arrive as loop events
 * (evsignal), never as handlers that touch state. Shutdown is two-phase:
 * inputs stop taking messages, then a timer polls the pipeline until nothing
 * is in flight (or drain_timeout passes), then outputs flush and the loop
 * exits. systemd is told READY, RELOADING, STOPPING and fed the watchdog
 * from a timer at half its interval, when NOTIFY_SOCKET / WATCHDOG_USEC say
 * systemd is listening; otherwise sd_notify is a no-op. */
#include "internal/daemon.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "internal/host.h"
#include "internal/http.h"
#include "internal/log.h"
#include "internal/metrics.h"
#include "internal/migrate.h"
#include "internal/pipeline.h"
#include "internal/util.h"

#define DRAIN_TIMEOUT_MS 15000

struct td_daemon {
    td_config *cfg;
    struct event_base *base;
    td_hostctx *host;
    td_pipeline *pipeline;
    td_http *http; /* the built-in HTTP server, when in_http is asked for */
    struct event *ev_term, *ev_int, *ev_hup, *ev_watchdog, *ev_drain;
    int64_t drain_deadline;
    int stopping;
    int exit_code;
};

static void
notify(const char *state)
{
    int r = sd_notify(0, state);
    if (r < 0)
        td_warn("systemd notify failed", "state=\"%s\" error=%s", state,
                strerror(-r));
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    notify("WATCHDOG=1");
}

static void
finish(td_daemon *d)
{
    notify("STOPPING=1\nSTATUS=stopping");
    if (d->ev_drain)
        event_del(d->ev_drain);
    td_host_fini(d->host);
    /* loopbreak, not loopexit: no other callback (an ack for a plugin just
     * finished) may run after this one. */
    event_base_loopbreak(d->base);
}

static void
on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    td_daemon *d = arg;
    size_t left = d->pipeline ? td_pipeline_in_flight(d->pipeline) : 0;
    (void)fd;
    (void)what;
    if (left == 0) {
        td_info("drained", "");
        finish(d);
        return;
    }
    if (td_mono_ms() >= d->drain_deadline) {
        td_warn("drain timed out; unacknowledged messages will be redelivered "
                "from their inputs",
                "in_flight=%zu", left);
        finish(d);
        return;
    }
    struct timeval tv = {0, 50 * 1000};
    event_add(d->ev_drain, &tv);
}

static void
begin_shutdown(td_daemon *d, const char *why)
{
    if (d->stopping) {
        td_warn("second stop signal: exiting without waiting for the drain",
                "signal=%s", why);
        d->exit_code = 1;
        finish(d);
        return;
    }
    d->stopping = 1;
    td_info("stopping", "signal=%s", why);
    notify("STOPPING=1\nSTATUS=draining");
    td_host_stop_inputs(d->host);
    if (d->http)
        td_http_stop_intake(d->http);
    if (d->pipeline)
        td_pipeline_stop_intake(d->pipeline);
    d->drain_deadline = td_mono_ms() + DRAIN_TIMEOUT_MS;
    d->ev_drain = evtimer_new(d->base, on_drain_tick, d);
    on_drain_tick(-1, 0, d);
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    begin_shutdown(arg, sig == SIGTERM ? "TERM" : "INT");
}

struct diff_ctx {
    int restart_needed;
};

static void
report_change(const td_option *opt, void *arg)
{
    struct diff_ctx *c = arg;
    if (opt->flags & TD_OPT_RELOAD) {
        td_info("reload: applying", "key=%s.%s", opt->section, opt->name);
    } else {
        td_warn("reload: cannot change without a restart; keeping the old value",
                "key=%s.%s", opt->section, opt->name);
        c->restart_needed = 1;
    }
}

static void
on_hup(evutil_socket_t fd, short what, void *arg)
{
    td_daemon *d = arg;
    td_errors errs = {0};
    td_config *fresh = NULL;
    (void)fd;
    (void)what;

    notify("RELOADING=1\nSTATUS=reloading");
    td_info("reloading", "config=%s", d->cfg->path);
    if (td_config_load(d->cfg->path, &fresh, &errs) != TD_OK) {
        for (size_t i = 0; i < errs.n; i++)
            td_error("reload: config error; nothing changed", "error=\"%s\"",
                     TD_LOG_VALUE(errs.msgs[i]));
        td_errors_clear(&errs);
        notify("READY=1\nSTATUS=running (last reload failed)");
        return;
    }
    struct diff_ctx c = {0};
    td_config_diff(d->cfg, fresh, report_change, &c);
    /* Reloadable values are applied; the rest keep their old values. */
    td_config_apply_reloadable(d->cfg, fresh);
    td_log_set_level(d->cfg->log_level);
    if (d->pipeline)
        td_pipeline_reload(d->pipeline, d->cfg);
    if (d->http)
        td_http_reload(d->http, d->cfg);
    td_host_reload(d->host, fresh); /* plugins: rules files and the like */
    td_config_free(fresh);
    td_info("reloaded", "restart_needed=%s", c.restart_needed ? "yes" : "no");
    notify("READY=1\nSTATUS=running");
}

static int
run_migrations(const td_config *cfg)
{
    char err[512];
    td_migrate_result res;
    PGconn *conn = PQconnectdb(cfg->pg_conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        td_error("migrate: cannot connect to PostgreSQL", "error=\"%s\"",
                 TD_LOG_VALUE(PQerrorMessage(conn)));
        PQfinish(conn);
        return TD_ERR;
    }
    int rc = td_migrate(conn, td_migrations, 0, &res, err, sizeof(err));
    PQfinish(conn);
    if (rc != TD_OK) {
        td_error("migrate failed", "error=\"%s\"", TD_LOG_VALUE(err));
        return TD_ERR;
    }
    td_info("schema ready", "from=%d to=%d applied=%d", res.from_version,
            res.to_version, res.applied);
    return TD_OK;
}

int
td_daemon_run(td_config *cfg, const char *plugin_dir)
{
    td_daemon d = {.cfg = cfg, .exit_code = 0};
    td_errors errs = {0};
    char err[512];
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    d.base = event_base_new();
    if (!d.base) {
        td_error("cannot create the event loop", "");
        goto out;
    }
    if (cfg->pg_migrate && run_migrations(cfg) != TD_OK)
        goto out;
    d.host = td_hostctx_new(cfg, d.base, plugin_dir, &errs);
    if (!d.host) {
        for (size_t i = 0; i < errs.n; i++)
            td_error("cannot load plugin", "error=\"%s\"", TD_LOG_VALUE(errs.msgs[i]));
        goto out;
    }
    d.pipeline = td_pipeline_new(cfg, d.base, d.host, err, sizeof(err));
    if (!d.pipeline) {
        td_error("cannot start the pipeline", "error=\"%s\"", TD_LOG_VALUE(err));
        goto out;
    }
    if (td_host_start(d.host, err, sizeof(err)) != TD_OK) {
        td_error("cannot start plugins", "error=\"%s\"", TD_LOG_VALUE(err));
        goto out;
    }
    if (td_host_wants_http(d.host)) {
        d.http = td_http_new(cfg, d.base, d.host, d.pipeline, err, sizeof(err));
        if (!d.http) {
            td_error("cannot start the HTTP server", "error=\"%s\"", TD_LOG_VALUE(err));
            goto out;
        }
    }

    d.ev_term = evsignal_new(d.base, SIGTERM, on_stop_signal, &d);
    d.ev_int = evsignal_new(d.base, SIGINT, on_stop_signal, &d);
    d.ev_hup = evsignal_new(d.base, SIGHUP, on_hup, &d);
    if (!d.ev_term || !d.ev_int || !d.ev_hup || event_add(d.ev_term, NULL) ||
        event_add(d.ev_int, NULL) || event_add(d.ev_hup, NULL)) {
        td_error("cannot install signal events", "");
        goto out;
    }
    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
        struct timeval tv = {(time_t)(wd_usec / 2 / 1000000),
                             (suseconds_t)(wd_usec / 2 % 1000000)};
        d.ev_watchdog = event_new(d.base, -1, EV_PERSIST, on_watchdog, &d);
        event_add(d.ev_watchdog, &tv);
        td_info("systemd watchdog enabled", "interval_ms=%llu",
                (unsigned long long)(wd_usec / 2000));
    }
    td_info("triaged started", "version=%s plugins=%zu", TD_VERSION,
            td_host_count_plugins(d.host));
    notify("READY=1\nSTATUS=running");

    if (event_base_dispatch(d.base) < 0) {
        td_error("event loop failed", "");
        goto out;
    }
    td_metrics_log();
    rc = d.exit_code;

out:
    td_http_free(d.http);
    if (d.host)
        td_host_fini(d.host);
    if (d.pipeline)
        td_pipeline_free(d.pipeline);
    td_hostctx_free(d.host);
    if (d.ev_term)
        event_free(d.ev_term);
    if (d.ev_int)
        event_free(d.ev_int);
    if (d.ev_hup)
        event_free(d.ev_hup);
    if (d.ev_watchdog)
        event_free(d.ev_watchdog);
    if (d.ev_drain)
        event_free(d.ev_drain);
    if (d.base)
        event_base_free(d.base);
    td_errors_clear(&errs);
    td_metrics_reset();
    td_config_free(cfg);
    td_info("triaged stopped", "exit=%d", rc);
    return rc;
}

/* daemon.h — the running daemon: the loop, its signals, systemd, lifecycle.
 *
 * Lifecycle: start (migrate if asked, start the pipeline, then the plugins,
 * then tell systemd READY=1) -> run -> SIGTERM/SIGINT: stop the inputs, let
 * the pipeline drain within drain_timeout, stop the outputs, exit.
 * SIGHUP re-reads the config and applies what can change without restart. */
#ifndef TD_DAEMON_H
#define TD_DAEMON_H

#include "internal/config.h"

typedef struct td_daemon td_daemon;

/* Hooks the pipeline registers so the daemon can drain and reload it. */
typedef struct td_stage_ops {
    void *arg;
    /* Messages taken but not yet acked; shutdown waits for 0. */
    size_t (*in_flight)(void *arg);
    /* Apply a reloaded config (reloadable options only). */
    void (*reload)(void *arg, const td_config *cfg);
    /* Stop and free, after the drain. */
    void (*shutdown)(void *arg);
} td_stage_ops;

/* Runs the daemon until a stop signal; returns the process exit code.
 * Takes ownership of cfg. */
int td_daemon_run(td_config *cfg, const char *plugin_dir);

#endif

/* main.c — command line of the triaged daemon. */
#include <getopt.h>
#include <malloc.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/config.h"
#include "internal/daemon.h"
#include "internal/host.h"
#include "internal/http.h"
#include "internal/log.h"
#include "internal/util.h"

static void
usage(FILE *f)
{
    fprintf(f,
        "Usage: triaged -c FILE [options]\n"
        "\n"
        "triaged turns monitoring alerts (Kafka, syslog, HTTP) into deduplicated,\n"
        "correlated incidents in PostgreSQL. It runs in the foreground and logs to\n"
        "stderr, one key=value line per event.\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE    configuration file (INI; see --help-config)\n"
        "  -t, --test           check the configuration and the plugins it loads,\n"
        "                       print each problem as FILE:LINE: message, exit 0 or 1\n"
        "  -P, --plugin-dir DIR load plugins from DIR instead of [plugins] dir\n"
        "      --help-config    list every configuration key with type and default\n"
        "      --print-example  print the annotated example configuration\n"
        "  -V, --version        print the version\n"
        "  -h, --help           this text\n"
        "\n"
        "Signals: TERM/INT stop after draining in-flight alerts (a second one stops\n"
        "at once); HUP reloads what can change without a restart (log level, rules,\n"
        "tokens, incident timings) and logs what could not.\n"
        "Every key can be set from the environment as TRIAGED_<SECTION>_<KEY>.\n");
}

/* [plugins] dir, unless it does not exist and the folder beside the binary
 * has plugins: then a build tree runs without installing (said on stderr). */
static const char *
pick_plugin_dir(const char *configured, char *buf, size_t len)
{
    struct stat st;
    if (stat(configured, &st) == 0)
        return configured;
    ssize_t n = readlink("/proc/self/exe", buf, len - 16);
    if (n <= 0)
        return configured;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return configured;
    strcpy(slash, "/plugins");
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return configured;
    fprintf(stderr, "triaged: plugin dir %s does not exist; using %s beside the binary\n",
            configured, buf);
    return buf;
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"plugin-dir", required_argument, NULL, 'P'},
        {"help-config", no_argument, NULL, 1},
        {"print-example", no_argument, NULL, 2},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* Jansson too aborts on out-of-memory, as every td_ allocator (util.h). */
    json_set_alloc_funcs(td_malloc, free);
    /* A batch's memory is freed when it commits and the next one's is taken
     * right after: glibc's defaults hand the heap top back to the kernel and
     * fault it in again each time (sysmalloc, mprotect and page faults were
     * ~12 % of the daemon's CPU in a storm). Keep up to 64 MiB of free heap
     * and grow it 16 MiB at a time; the queue limits bound the rest. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
    const char *path = NULL, *plugin_dir = NULL;
    int test = 0, c;

    while ((c = getopt_long(argc, argv, "c:tP:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 't': test = 1; break;
        case 'P': plugin_dir = optarg; break;
        case 1: td_config_print_help(stdout); return 0;
        case 2: td_config_write_example(stdout); return 0;
        case 'V': printf("triaged %s\n", TD_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (!path || optind != argc) {
        usage(stderr);
        return 1;
    }

    td_config *cfg = NULL;
    td_errors errs = {0};
    if (td_config_load(path, &cfg, &errs) != TD_OK) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        td_errors_clear(&errs);
        return 1;
    }
    char exe_plugins[4096];
    if (!plugin_dir)
        plugin_dir = pick_plugin_dir(cfg->plugins_dir, exe_plugins,
                                     sizeof(exe_plugins));

    if (test) {
        /* Opening the plugins checks files, symbols and ABI versions; then
         * each plugin's check() its own files (rules), without starting. */
        td_hostctx *hc = td_hostctx_new(cfg, NULL, plugin_dir, &errs);
        int ok = hc != NULL && td_host_check(hc, &errs) == TD_OK;
        if (cfg->has_http && td_http_check(cfg, &errs) != TD_OK) /* tokens, TLS */
            ok = 0;
        td_hostctx_free(hc);
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s: %s\n", path, errs.msgs[i]);
        td_errors_clear(&errs);
        td_config_free(cfg);
        if (ok)
            fprintf(stderr, "%s: configuration ok\n", path);
        return ok ? 0 : 1;
    }

    td_log_init(cfg->instance, cfg->log_level);
    return td_daemon_run(cfg, plugin_dir);
}

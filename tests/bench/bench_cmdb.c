/* bench_cmdb.c — the daemon's CMDB graph: load time, memory, binding cost.
 *
 *   bench_cmdb CONNINFO [N_ALERTS]
 *
 * Loads the CMDB of the database at CONNINFO exactly as triaged does (a
 * td_cmdb on an event loop: non-blocking COPY), and reports the time to the
 * first complete load, the RSS growth it caused and the graph's own count
 * of bytes; then binds N_ALERTS alerts (default 1,000,000; resources a mix
 * of CI names, aliases, IP addresses, HOST:PORT, bind labels and unknown
 * names) and reports the mean cost per alert, against a reference loop
 * that does the same work except the lookup. For comparison it also times
 * the in-memory upstream walk and impacted-services walk per CI (the daemon
 * leaves those to SQL, once per opened incident). tests/bench/bench_cmdb.sh
 * builds the 100,000-CI database and runs this. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal/cmdb.h"
#include "internal/util.h"

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_cmdb CONNINFO [N_ALERTS]\n");
        return 1;
    }
    size_t n_alerts = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : 1000000;
    struct event_base *base = event_base_new();

    long rss0 = rss_kib();
    double t0 = now_s();
    td_cmdb *c = td_cmdb_new(base, argv[1], "host");
    while (!td_cmdb_ready(c)) {
        if (now_s() - t0 > 120) {
            fprintf(stderr, "bench_cmdb: no complete load within 120 s\n");
            return 1;
        }
        event_base_loop(base, EVLOOP_ONCE);
    }
    double load = now_s() - t0;
    long rss1 = rss_kib();
    td_graph *g = td_cmdb_graph(c);
    size_t n_ci = td_graph_ci_count(g);
    printf("load: %zu CIs, %zu relations in %.3f s; RSS +%.1f MiB (graph's own count %.1f MiB)\n",
           n_ci, td_graph_relation_count(g), load, (double)(rss1 - rss0) / 1024.0,
           (double)td_graph_memory(g) / 1048576.0);

    /* alerts: resources cycling through the kinds of key */
    enum { KINDS = 6 };
    static const char *kind_names[KINDS] = {"name", "alias", "address", "host:port",
                                            "label", "unknown"};
    size_t pool = 100000;
    td_alert *alerts = td_calloc(pool, sizeof(*alerts));
    for (size_t i = 0; i < pool; i++) {
        size_t id = 1 + (i * 7919) % (n_ci ? n_ci : 1);
        td_alert *a = &alerts[i];
        a->source = "bench";
        a->check = "check";
        switch (i % KINDS) {
        case 0: a->resource = td_asprintf("ci-%06zu", id); break;
        case 1: a->resource = td_asprintf("ci-%06zu.example", id); break;
        case 2: a->resource = td_asprintf("10.%zu.%zu.%zu", id >> 16, (id >> 8) & 255, id & 255); break;
        case 3: a->resource = td_asprintf("10.%zu.%zu.%zu:9100", id >> 16, (id >> 8) & 255, id & 255); break;
        case 4:
            a->resource = td_asprintf("pod-%zu", i);
            a->labels = td_calloc(1, sizeof(td_label));
            a->labels[0].name = td_strdup("host");
            a->labels[0].value = td_asprintf("ci-%06zu", id);
            a->n_labels = 1;
            break;
        default: a->resource = td_asprintf("unknown-%zu", i); break;
        }
    }
    size_t bound[KINDS] = {0}, tried[KINDS] = {0};
    volatile int64_t sink = 0;
    /* reference: the same loop, touching the alert, without the lookup */
    double r0 = now_s();
    for (size_t i = 0; i < n_alerts; i++) {
        const td_alert *a = &alerts[i % pool];
        sink += (int64_t)(size_t)a->resource[0];
    }
    double ref = now_s() - r0;
    double b0 = now_s();
    for (size_t i = 0; i < n_alerts; i++) {
        int64_t id = td_cmdb_bind(c, &alerts[i % pool]);
        bound[(i % pool) % KINDS] += id != 0;
        tried[(i % pool) % KINDS]++;
        sink += id;
    }
    double bind = now_s() - b0;
    printf("binding: %zu alerts, %.3f us per alert (reference loop %.3f us)\n", n_alerts,
           (bind - ref) * 1e6 / (double)n_alerts, ref * 1e6 / (double)n_alerts);
    for (int k = 0; k < KINDS; k++)
        printf("  by %-9s bound %zu of %zu\n", kind_names[k], bound[k], tried[k]);

    /* in-memory walks, per CI (not on the daemon's path) */
    int64_t out[4096];
    size_t walks = 100000, total_up = 0, total_svc = 0;
    double u0 = now_s();
    for (size_t i = 0; i < walks; i++)
        total_up += td_graph_upstream(g, (int64_t)(1 + (i * 7919) % n_ci), out, 4096);
    double up = now_s() - u0;
    double s0 = now_s();
    size_t svc_walks = 1000;
    for (size_t i = 0; i < svc_walks; i++)
        total_svc += td_graph_impacted_services(g, (int64_t)(1 + (i * 7919) % n_ci), out, 4096);
    double svc = now_s() - s0;
    printf("upstream walk: %.3f us per CI (mean %.1f upstream CIs); impacted services walk: "
           "%.1f us per CI (mean %.1f services)\n",
           up * 1e6 / (double)walks, (double)total_up / (double)walks,
           svc * 1e6 / (double)svc_walks, (double)total_svc / (double)svc_walks);

    /* what the daemon adds to a non-duplicate segment: both walks, remembered
     * per CI; first for 10,000 CIs never described, then again */
    const int64_t *dup, *dsvc;
    size_t dn, ds;
    size_t nd = 10000;
    double d0 = now_s();
    for (size_t i = 0; i < nd; i++)
        td_graph_describe(g, (int64_t)(1 + (i * 7919 + 13) % n_ci), &dup, &dn, &dsvc, &ds);
    double d1 = now_s();
    for (size_t r = 0; r < 10; r++)
        for (size_t i = 0; i < nd; i++)
            td_graph_describe(g, (int64_t)(1 + (i * 7919 + 13) % n_ci), &dup, &dn, &dsvc, &ds);
    double d2 = now_s();
    printf("describe (up + svc for SQL): first time %.2f us per CI, remembered %.3f us per CI; "
           "graph now %.1f MiB\n", (d1 - d0) * 1e6 / (double)nd,
           (d2 - d1) * 1e6 / (double)(nd * 10), (double)td_graph_memory(g) / 1048576.0);

    for (size_t i = 0; i < pool; i++) {
        free(alerts[i].resource);
        if (alerts[i].labels) {
            free(alerts[i].labels[0].name);
            free(alerts[i].labels[0].value);
            free(alerts[i].labels);
        }
    }
    free(alerts);
    td_cmdb_free(c);
    event_base_free(base);
    return sink == 42 ? 2 : 0;
}

/* bench_decode.c — the native alert decoder's cost per message: the
 * one-pass scanner (td_alert_decode's first way, daemon/alert_scan.c)
 * against Jansson's tree (its second way), on the same messages, in the
 * same process, in CPU time (the machine is shared).
 *
 * Usage: bench_decode [MESSAGES (200000)]. Three shapes: the benchmark
 * storm's message (bench_kafka.sh), one with a summary and four labels, and
 * an HTTP body of 100 alerts (bench_http.sh). Prints figures; asserts
 * nothing, except that both ways decode every message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal/alert.h"
#include "internal/errors.h"

static double
cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef int (*decode_fn)(const char *, size_t, const td_decode_opts *, td_alert **, size_t *);

static int
by_scan(const char *b, size_t n, const td_decode_opts *o, td_alert **a, size_t *na)
{
    return td_alert_scan(b, n, o, a, na);
}

static int
by_tree(const char *b, size_t n, const td_decode_opts *o, td_alert **a, size_t *na)
{
    const char *reason;
    char detail[256];
    return td_alert_decode_tree(b, n, o, a, na, &reason, detail, sizeof(detail));
}

/* ns per alert over reps decodes of msg */
static double
run(decode_fn fn, const char *msg, long reps, const td_decode_opts *o)
{
    size_t len = strlen(msg);
    double t0 = cpu_s();
    for (long i = 0; i < reps; i++) {
        td_alert *a;
        size_t n;
        if (fn(msg, len, o, &a, &n) != TD_OK) {
            fprintf(stderr, "bench_decode: a message did not decode: %.80s\n", msg);
            exit(1);
        }
        for (size_t j = 0; j < n; j++)
            td_alert_clear(&a[j]);
        free(a);
    }
    return (cpu_s() - t0) * 1e9 / (double)reps;
}

int
main(int argc, char **argv)
{
    long reps = argc > 1 ? atol(argv[1]) : 200000;
    td_decode_opts o = {.max_size = 1 << 20, .now_us = 1795651200000000LL};
    static const char storm[] =
        "{\"source\":\"bench\",\"resource\":\"host-00042\",\"check\":\"check-7\","
        "\"severity\":\"major\",\"occurred_at\":\"2026-11-25T21:40:00.123Z\"}";
    static const char labelled[] =
        "{\"source\":\"prometheus\",\"resource\":\"db-01.example.org\",\"check\":\"disk_full\","
        "\"severity\":\"critical\",\"status\":\"firing\",\"summary\":\"/var is 97% full "
        "(threshold 95%)\",\"occurred_at\":\"2026-11-25T21:40:00.123456+01:00\","
        "\"labels\":{\"env\":\"prod\",\"team\":\"dba\",\"mount\":\"/var\",\"region\":\"eu-1\"}}";
    char *body = malloc(100 * (sizeof(storm) + 2) + 3);
    char *p = body;
    *p++ = '[';
    for (int i = 0; i < 100; i++)
        p += sprintf(p, "%s%s", i ? "," : "", storm);
    strcpy(p, "]");
    struct {
        const char *name, *msg;
        long reps, alerts;
    } shapes[] = {
        {"storm message (5 fields)", storm, reps, 1},
        {"summary + 4 labels", labelled, reps, 1},
        {"HTTP body of 100 alerts", body, reps / 100, 100},
    };
    printf("%-26s %14s %14s %8s\n", "message", "scanner ns/al", "Jansson ns/al", "ratio");
    for (size_t i = 0; i < sizeof(shapes) / sizeof(*shapes); i++) {
        double s = run(by_scan, shapes[i].msg, shapes[i].reps, &o) / (double)shapes[i].alerts;
        double t = run(by_tree, shapes[i].msg, shapes[i].reps, &o) / (double)shapes[i].alerts;
        printf("%-26s %14.0f %14.0f %7.1fx\n", shapes[i].name, s, t, t / s);
    }
    free(body);
    return 0;
}

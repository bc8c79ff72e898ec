/* bench_rules.c — the cost of the syslog rules per line: parse + the shipped
 * rules (config/syslog-rules.conf, all tried on a line that none matches).
 *
 * Usage: bench_rules RULES-FILE [LINES]. Prints lines/s and ns per line of
 * CPU time (the process's own, so other load on the machine matters less).
 * tests/bench/bench_sandbox.sh runs it as is (PCRE2 JIT) and under
 * PR_SET_MDWE, which is what MemoryDenyWriteExecute=yes in the systemd unit
 * amounts to: no W+X memory, so the JIT cannot compile and PCRE2 interprets.
 * Prints figures; asserts nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "syslog_parse.h"

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: the machine is shared */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_rules RULES-FILE [LINES]\n");
        return 2;
    }
    long n = argc > 2 ? atol(argv[2]) : 1000000;
    char err[512];
    tds_rules *rules = tds_rules_load(argv[1], err, sizeof(err));
    if (!rules) {
        fprintf(stderr, "bench_rules: %s\n", err);
        return 1;
    }
    enum { KINDS = 10 };
    char lines[KINDS][256];
    for (int i = 0; i < KINDS; i++) {
        if (i == 0)
            snprintf(lines[i], sizeof(lines[i]),
                     "<187>1 2026-11-26T03:00:00Z sw-%02d ios - - - %%LINK-3-UPDOWN: "
                     "Interface Gi0/%d, changed state to down", i, i);
        else
            snprintf(lines[i], sizeof(lines[i]),
                     "<30>Nov 26 03:00:00 host-%02d app[%d]: routine line number %d, "
                     "nothing to see here", i, 100 + i, i);
    }
    tds_parse_opts o = {.now_us = (int64_t)time(NULL) * 1000000, .local_offset_s = 0};
    char scratch[512];
    tds_msg m;
    tds_result res = {0};
    long matched = 0;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        const char *line = lines[i % KINDS], *reason;
        if (tds_parse(line, strlen(line), &o, &m, scratch, &reason) != 0) {
            fprintf(stderr, "bench_rules: parse failed: %s\n", reason);
            return 1;
        }
        if (tds_rules_match(rules, &m, "127.0.0.1", &res) >= 0)
            matched++;
    }
    double dt = now_s() - t0;
    printf("lines=%ld matched=%ld seconds=%.3f lines_per_s=%.0f ns_per_line=%.0f\n", n,
           matched, dt, (double)n / dt, dt * 1e9 / (double)n);
    tds_result_free(&res);
    tds_rules_free(rules);
    return 0;
}

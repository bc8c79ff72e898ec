/* fuzz_rules.c — libFuzzer target for the syslog rules FILE parser
 * (plugins/in_syslog/syslog_rules.c: tds_rules_parse), the text an operator
 * points [syslog] rules at and SIGHUP re-reads.
 *
 * The input is the whole file. A file that loads must be usable: every rule
 * is then run on a few fixed messages (RFC 5424 with structured data, Cisco
 * RFC 3164, a kernel line), so the compiled regexes and templates meet real
 * captures; a file that does not load must say why. Nothing may leak either
 * way. The subjects are short, so a pathological regex cannot time out. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "syslog_parse.h"

static const char *const samples[] = {
    ("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 99 ID47 "
     "[exampleSDID@32473 iut=\"3\" eventSource=\"App\\]\" eventID=\"1011\"]"
     "[meta sequenceId=\"7\"] \xEF\xBB\xBFlink down on eth0"),
    ("<187>123: core-sw1: *Mar  1 18:46:11.123: %LINK-3-UPDOWN: Interface "
     "GigabitEthernet0/1, changed state to down"),
    "<4>Nov 26 03:00:00 db-07 kernel: [123.456] Out of memory: Killed process 42 (postgres)",
    "<13>Nov 26 03:00:01 web-3 app[17]: disk /var 97% full",
};
#define N_SAMPLES (sizeof(samples) / sizeof(samples[0]))

static tds_msg msgs[N_SAMPLES];
static char *scratch[N_SAMPLES];
static tds_result res;

static void
init_samples(void)
{
    tds_parse_opts o = {.now_us = 1795651200000000LL, .local_offset_s = 0};
    for (size_t i = 0; i < N_SAMPLES; i++) {
        const char *reason = NULL;
        size_t len = strlen(samples[i]);
        scratch[i] = malloc(len + 1);
        if (!scratch[i] || tds_parse(samples[i], len, &o, &msgs[i], scratch[i], &reason) != 0) {
            fprintf(stderr, "fuzz_rules: sample %zu does not parse: %s\n", i,
                    reason ? reason : "?");
            abort();
        }
    }
}

static size_t
opt_len(const char *s)
{
    return s ? strlen(s) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        init_samples();
        ready = 1;
    }
    /* A heap copy of exactly the input: ASan sees any read past it. */
    char *text = malloc(size ? size : 1);
    memcpy(text, data, size);
    char err[256];
    err[0] = '\0';
    tds_rules *r = tds_rules_parse(text, size, "fuzz.conf", err, sizeof(err));
    if (!r) {
        if (strncmp(err, "fuzz.conf:", 10) != 0)
            abort(); /* a rejection names the file (and the line) */
        free(text);
        return 0;
    }
    size_t n = tds_rules_count(r);
    for (size_t i = 0; i < n; i++)
        if (!tds_rules_name(r, i) || !*tds_rules_name(r, i))
            abort();
    for (size_t i = 0; i < N_SAMPLES; i++) {
        int k = tds_rules_match(r, &msgs[i], "192.0.2.7", &res);
        if (k < -1 || k >= (int)n)
            abort();
        if (k < 0)
            continue;
        /* Touch every string the host would copy. */
        size_t sum = strlen(res.f.source) + strlen(res.f.resource) + strlen(res.f.check) +
                     strlen(res.f.status) + opt_len(res.f.severity) + opt_len(res.f.summary) +
                     opt_len(res.f.dedup_key) + opt_len(res.f.ci);
        for (size_t j = 0; j < res.f.n_labels; j++)
            sum += strlen(res.f.label_names[j]) + strlen(res.f.label_values[j]);
        if (res.f.n_labels > TDS_MAX_LABELS || sum == 0)
            abort();
    }
    tds_rules_free(r);
    free(text);
    return 0;
}

/* fuzz_syslog.c — libFuzzer target for in_syslog's decoders: the message
 * parser, the RFC 6587 framer and the rules engine (on the shipped rules
 * file, so every template and regex sees hostile input).
 *
 * One input drives all three. Its first byte picks the framer's limit
 * (480..8670 bytes) and oversize mode, its second the read size, so the
 * fuzzer explores frames split across reads, octet counts near the limit
 * and truncation. The rest is (1) parsed whole as one message (a heap copy
 * of exactly its length: ASan sees any read past it) and (2) fed to a framer
 * in chunks, every frame then parsed and run through the rules. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "syslog_parse.h"

static tds_rules *rules;
static tds_result res;

static void
handle(const char *msg, size_t len)
{
    char *copy = malloc(len ? len : 1), *scratch = malloc(len ? len : 1);
    memcpy(copy, msg, len);
    tds_parse_opts o = {.now_us = 1795651200000000LL, .local_offset_s = 3600};
    tds_msg m;
    const char *reason;
    if (tds_parse(copy, len, &o, &m, scratch, &reason) == 0) {
        if (!m.host.p) {
            m.host.p = "192.0.2.1";
            m.host.n = 9;
        }
        if (tds_rules_match(rules, &m, "192.0.2.1", &res) >= 0) {
            /* Touch every string the host would copy. */
            size_t n = strlen(res.f.source) + strlen(res.f.resource) +
                       strlen(res.f.check) + strlen(res.f.severity);
            for (size_t i = 0; i < res.f.n_labels; i++)
                n += strlen(res.f.label_names[i]) + strlen(res.f.label_values[i]);
            if (n == 0)
                abort();
        }
    } else if (!reason) {
        abort();
    }
    free(copy);
    free(scratch);
}

static int
on_frame(void *arg, tds_frame_ev ev, const char *msg, size_t len)
{
    const tds_framer *f = arg;
    if (ev == TDS_FRAME_MSG || ev == TDS_FRAME_TRUNCATED) {
        if (len > f->max)
            abort(); /* a frame never exceeds the limit */
        handle(msg, len);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rules) {
        char err[512];
        rules = tds_rules_load(TD_RULES_FILE, err, sizeof(err));
        if (!rules) {
            fprintf(stderr, "fuzz_syslog: %s\n", err);
            abort();
        }
    }
    if (size < 2)
        return 0;
    size_t max = 480 + (size_t)(data[0] & 0x7f) * 64;
    int truncate = data[0] >> 7;
    size_t chunk = 1 + data[1];
    data += 2;
    size -= 2;

    handle((const char *)data, size);

    tds_framer f;
    if (tds_framer_init(&f, max, truncate) != 0)
        return 0;
    size_t off = 0;
    int bad = 0;
    while (off < size && !bad) {
        size_t avail, n = size - off < chunk ? size - off : chunk;
        char *space = tds_framer_space(&f, &avail);
        if (n > avail)
            n = avail;
        memcpy(space, data + off, n);
        off += n;
        bad = tds_framer_commit(&f, n, on_frame, &f) == TDS_FRAME_BAD;
    }
    if (!bad)
        tds_framer_eof(&f, on_frame, &f);
    tds_framer_free(&f);
    return 0;
}

/* RFC 6587 framing: octet counting and LF framing decided per message,
 * limits (truncate or reject), streams split at every byte, bad counts,
 * and the end of a stream. Every frame event is recorded as one line. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "syslog_parse.h"

TestSuite(syslog_frame, .timeout = 10);

typedef struct rec {
    char log[65536];
    size_t n;
    int stop_after; /* ask to stop after this many events (0: never) */
    int events;
} rec;

static int
on_frame(void *arg, tds_frame_ev ev, const char *msg, size_t len)
{
    rec *r = arg;
    static const char *names[] = {"MSG", "TRUNC", "TOO_BIG", "INCOMPLETE"};
    if (msg)
        r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "%s[%.*s]\n",
                                 names[ev], (int)len, msg);
    else
        r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "%s(%zu)\n",
                                 names[ev], len);
    r->events++;
    return r->stop_after && r->events % r->stop_after == 0;
}

/* Feeds s in chunks of `chunk` bytes; returns the last commit result. */
static int
feed(tds_framer *f, rec *r, const char *s, size_t len, size_t chunk)
{
    int rc = 0;
    for (size_t off = 0; off < len;) {
        size_t avail, n = len - off < chunk ? len - off : chunk;
        char *space = tds_framer_space(f, &avail);
        if (n > avail)
            n = avail;
        memcpy(space, s + off, n);
        off += n;
        rc = tds_framer_commit(f, n, on_frame, r);
        while (rc == 1)
            rc = tds_framer_drain(f, on_frame, r);
        if (rc == TDS_FRAME_BAD)
            return rc;
    }
    return rc;
}

static const char *
frame_all(const char *s, size_t len, size_t max, bool truncate, size_t chunk, bool eof)
{
    static rec r;
    tds_framer f;
    memset(&r, 0, sizeof(r));
    cr_assert_eq(tds_framer_init(&f, max, truncate), 0);
    int rc = feed(&f, &r, s, len, chunk);
    if (rc == TDS_FRAME_BAD)
        r.n += (size_t)snprintf(r.log + r.n, sizeof(r.log) - r.n, "BAD\n");
    else if (eof)
        tds_framer_eof(&f, on_frame, &r);
    tds_framer_free(&f);
    return r.log;
}

#define FRAME(s, max, trunc, chunk) frame_all(s, strlen(s), max, trunc, chunk, true)

static void
same_in_every_chunking(const char *s, size_t max, bool truncate, const char *want)
{
    for (size_t chunk = 1; chunk <= strlen(s) + 1; chunk++)
        cr_assert_str_eq(FRAME(s, max, truncate, chunk), want, "chunk %zu", chunk);
}

Test(syslog_frame, octet_counted_frames_back_to_back)
{
    same_in_every_chunking("5 <13>a6 <13>bc", 480, true, "MSG[<13>a]\nMSG[<13>bc]\n");
}

Test(syslog_frame, lf_frames_and_empty_lines_between)
{
    same_in_every_chunking("<13>a\n\n\r\n<13>b\r\n", 480, true,
                           "MSG[<13>a]\nMSG[<13>b\r]\n");
}

Test(syslog_frame, framing_is_decided_per_message)
{
    same_in_every_chunking("<13>lf one\n9 <13>octet<13>lf two\n5 <13>x\n",
                           480, true,
                           "MSG[<13>lf one]\nMSG[<13>octet]\nMSG[<13>lf two]\nMSG[<13>x]\n");
}

Test(syslog_frame, an_octet_frame_may_hold_newlines)
{
    same_in_every_chunking("10 <13>a\nb\nc\n", 480, true, "MSG[<13>a\nb\nc\n]\n");
}

Test(syslog_frame, digits_not_followed_by_space_start_an_lf_frame)
{
    same_in_every_chunking("123: %LINK-3-UPDOWN: x\n2026-11-26T00:00:00Z h a: y\n",
                           480, true,
                           "MSG[123: %LINK-3-UPDOWN: x]\nMSG[2026-11-26T00:00:00Z h a: y]\n");
}

Test(syslog_frame, oversized_octet_frame_is_truncated_and_the_rest_skipped)
{
    char s[2000];
    int n = sprintf(s, "600 ");
    memset(s + n, 'x', 600);
    strcpy(s + n + 600, "5 <13>z");
    char want[1000];
    sprintf(want, "TRUNC[%.*s]\nMSG[<13>z]\n", 480, s + n);
    for (size_t chunk = 1; chunk < 700; chunk += 37)
        cr_assert_str_eq(FRAME(s, 480, true, chunk), want);
}

Test(syslog_frame, oversized_octet_frame_is_rejected_whole)
{
    char s[2000];
    int n = sprintf(s, "600 ");
    memset(s + n, 'x', 600);
    strcpy(s + n + 600, "5 <13>z");
    for (size_t chunk = 1; chunk < 700; chunk += 37)
        cr_assert_str_eq(FRAME(s, 480, false, chunk), "TOO_BIG(600)\nMSG[<13>z]\n");
}

Test(syslog_frame, huge_octet_count_is_skipped_without_memory)
{
    /* 999,999,999 announced, 10 sent, then the stream ends. */
    cr_assert_str_eq(FRAME("999999999 0123456789", 480, false, 4), "TOO_BIG(999999999)\n");
    cr_assert_str_eq(FRAME("999999999 0123456789", 480, true, 4), "INCOMPLETE(10)\n");
}

Test(syslog_frame, ten_digit_count_cannot_be_resynced)
{
    cr_assert_str_eq(FRAME("1000000000 x", 480, true, 3), "BAD\n");
}

Test(syslog_frame, leading_zero_count_is_bad)
{
    cr_assert_str_eq(FRAME("<13>ok\n05 <13>a", 480, true, 100), "MSG[<13>ok]\nBAD\n");
}

Test(syslog_frame, long_lf_line_is_truncated_then_discarded_to_its_lf)
{
    char s[3000];
    memset(s, 'a', 1200);
    strcpy(s + 1200, "\n<13>next\n");
    char want[1000];
    sprintf(want, "TRUNC[%.*s]\nMSG[<13>next]\n", 480, s);
    for (size_t chunk = 1; chunk < 1300; chunk += 53)
        cr_assert_str_eq(FRAME(s, 480, true, chunk), want, "chunk %zu", chunk);
    cr_assert_str_eq(FRAME(s, 480, false, 100000), "TOO_BIG(1200)\nMSG[<13>next]\n");
}

Test(syslog_frame, a_line_of_exactly_max_bytes_is_whole)
{
    char s[600];
    memset(s, 'b', 480);
    strcpy(s + 480, "\n");
    char want[600];
    sprintf(want, "MSG[%.*s]\n", 480, s);
    same_in_every_chunking(s, 480, true, want);
}

Test(syslog_frame, truncation_does_not_split_utf8)
{
    char s[600];
    memset(s, 'c', 479);
    strcpy(s + 479, "\xe2\x82\xac tail\n"); /* the euro sign straddles 480 */
    char want[600];
    sprintf(want, "TRUNC[%.*s]\n", 479, s);
    cr_assert_str_eq(FRAME(s, 480, true, 64), want);
}

Test(syslog_frame, eof_delivers_a_pending_line_and_reports_a_cut_frame)
{
    cr_assert_str_eq(FRAME("<13>no newline", 480, true, 5), "MSG[<13>no newline]\n");
    cr_assert_str_eq(FRAME("20 <13>short", 480, true, 5), "INCOMPLETE(9)\n");
    cr_assert_str_eq(FRAME("123", 480, true, 5), "INCOMPLETE(3)\n");
    cr_assert_str_eq(FRAME("", 480, true, 5), "");
}

Test(syslog_frame, stop_keeps_the_rest_buffered_for_drain)
{
    static rec r;
    tds_framer f;
    memset(&r, 0, sizeof(r));
    r.stop_after = 1;
    cr_assert_eq(tds_framer_init(&f, 480, true), 0);
    const char *s = "<13>a\n<13>b\n<13>c\n";
    size_t avail;
    char *space = tds_framer_space(&f, &avail);
    memcpy(space, s, strlen(s));
    cr_assert_eq(tds_framer_commit(&f, strlen(s), on_frame, &r), 1);
    cr_assert_str_eq(r.log, "MSG[<13>a]\n");
    cr_assert_eq(tds_framer_drain(&f, on_frame, &r), 1);
    cr_assert_eq(tds_framer_drain(&f, on_frame, &r), 1);
    cr_assert_eq(tds_framer_drain(&f, on_frame, &r), 0);
    cr_assert_str_eq(r.log, "MSG[<13>a]\nMSG[<13>b]\nMSG[<13>c]\n");
    tds_framer_free(&f);
}

Test(syslog_frame, a_full_buffer_always_makes_progress)
{
    /* 64 KiB max: a frame of exactly max bytes, announced and sent. */
    size_t max = 65536;
    char *s = malloc(max + 16);
    int n = sprintf(s, "%zu ", max);
    memset(s + n, 'q', max);
    rec *r = calloc(1, sizeof(*r));
    tds_framer f;
    cr_assert_eq(tds_framer_init(&f, max, false), 0);
    cr_assert_eq(feed(&f, r, s, (size_t)n + max, 7000), 0);
    cr_assert_eq(r->events, 1);
    cr_assert(strncmp(r->log, "MSG[qqq", 7) == 0);
    tds_framer_free(&f);
    free(r);
    free(s);
}

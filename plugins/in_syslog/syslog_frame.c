/* syslog_frame.c — TCP framing, RFC 6587: octet counting ("LEN SP MSG")
 * and non-transparent framing (MSG LF), decided per message.
 *
 * The design is simple: one buffer per connection; the socket is read into
 * its free end, and complete frames are handed out as views into it, with no
 * copy. A frame that starts with a digit run followed by SP is
 * octet-counted; any other byte starts an LF-terminated frame. Empty lines
 * between frames (some senders end octet-counted frames with LF too) are
 * skipped.
 *
 * Limits: no frame is held beyond `max` bytes. An octet-counted frame longer
 * than max is truncated (its first max bytes delivered, the rest skipped as
 * it arrives) or rejected (skipped whole); an LF frame that grows past max
 * without an LF is truncated or rejected the same way and the rest of its
 * line discarded. So memory per connection is fixed at init, whatever the
 * peer sends. A count of more than 9 digits or with a leading zero cannot be
 * resynchronised: TDS_FRAME_BAD, and the caller closes the connection. */
#include "syslog_parse.h"

#include <stdlib.h>
#include <string.h>

enum { ST_START, ST_OCTET, ST_LF, ST_SKIP, ST_DISCARD };

#define MAX_COUNT_DIGITS 9
#define READ_ROOM (64 * 1024)

int
tds_framer_init(tds_framer *f, size_t max, bool truncate)
{
    memset(f, 0, sizeof(*f));
    /* Room for one whole frame with its count, plus a good read size. */
    f->cap = max + MAX_COUNT_DIGITS + 2 + READ_ROOM;
    f->buf = malloc(f->cap);
    if (!f->buf)
        return -1;
    f->max = max;
    f->truncate = truncate;
    f->state = ST_START;
    return 0;
}

void
tds_framer_free(tds_framer *f)
{
    free(f->buf);
    f->buf = NULL;
}

char *
tds_framer_space(tds_framer *f, size_t *avail)
{
    if (f->start > 0) {
        size_t n = f->end - f->start;
        memmove(f->buf, f->buf + f->start, n);
        f->start = 0;
        f->end = n;
    }
    *avail = f->cap - f->end;
    return f->buf + f->end;
}

/* Delivers a message of n bytes at p that was cut at max (UTF-8 aware). */
static int
emit_truncated(tds_framer *f, const char *p, size_t n, tds_frame_fn fn, void *arg)
{
    return fn(arg, TDS_FRAME_TRUNCATED, p, tds_utf8_cut(p, n, f->max));
}

static int
run(tds_framer *f, tds_frame_fn fn, void *arg)
{
    for (;;) {
        char *p = f->buf + f->start;
        size_t avail = f->end - f->start;
        int stop = 0;
        switch (f->state) {
        case ST_START: {
            while (avail > 0 && (*p == '\n' || *p == '\r')) {
                p++;
                avail--;
                f->start++;
            }
            if (avail == 0)
                return 0;
            if (*p < '0' || *p > '9') {
                f->state = ST_LF;
                f->scanned = 0;
                break;
            }
            size_t i = 0;
            while (i < avail && i <= MAX_COUNT_DIGITS && p[i] >= '0' && p[i] <= '9')
                i++;
            if (i > MAX_COUNT_DIGITS)
                return TDS_FRAME_BAD;
            if (i == avail)
                return 0; /* all digits so far: wait */
            if (p[i] != ' ') {
                f->state = ST_LF; /* "123: %LINK...", "2026-11-26T...": a line */
                f->scanned = 0;
                break;
            }
            if (p[0] == '0')
                return TDS_FRAME_BAD;
            size_t n = 0;
            for (size_t k = 0; k < i; k++)
                n = n * 10 + (size_t)(p[k] - '0');
            f->start += i + 1;
            if (n <= f->max) {
                f->state = ST_OCTET;
                f->want = n;
                f->skip_after = 0;
            } else if (f->truncate) {
                f->state = ST_OCTET;
                f->want = f->max;
                f->skip_after = n - f->max;
            } else {
                stop = fn(arg, TDS_FRAME_TOO_BIG, NULL, n);
                f->state = ST_SKIP;
                f->want = n;
            }
            break;
        }
        case ST_OCTET:
            if (avail < f->want)
                return 0;
            f->start += f->want;
            if (f->skip_after) {
                stop = emit_truncated(f, p, f->want, fn, arg);
                f->state = ST_SKIP;
                f->want = f->skip_after;
                f->skip_after = 0;
            } else {
                stop = fn(arg, TDS_FRAME_MSG, p, f->want);
                f->state = ST_START;
            }
            break;
        case ST_LF: {
            char *lf = memchr(p + f->scanned, '\n', avail - f->scanned);
            if (lf && (size_t)(lf - p) <= f->max) {
                size_t n = (size_t)(lf - p);
                f->start += n + 1;
                f->state = ST_START;
                stop = fn(arg, TDS_FRAME_MSG, p, n);
                break;
            }
            if (!lf && avail <= f->max) {
                f->scanned = avail;
                return 0; /* wait for the LF */
            }
            /* Longer than max: truncate or reject, then drop to the LF. */
            if (f->truncate)
                stop = emit_truncated(f, p, f->max + 1, fn, arg);
            else
                stop = fn(arg, TDS_FRAME_TOO_BIG, NULL, lf ? (size_t)(lf - p) : avail);
            if (lf) {
                f->start += (size_t)(lf - p) + 1;
                f->state = ST_START;
            } else {
                f->start = f->end;
                f->state = ST_DISCARD;
            }
            break;
        }
        case ST_SKIP: {
            size_t take = avail < f->want ? avail : f->want;
            f->start += take;
            f->want -= take;
            if (f->want > 0)
                return 0;
            f->state = ST_START;
            break;
        }
        case ST_DISCARD: {
            char *lf = memchr(p, '\n', avail);
            if (!lf) {
                f->start = f->end;
                return 0;
            }
            f->start += (size_t)(lf - p) + 1;
            f->state = ST_START;
            break;
        }
        }
        if (stop)
            return 1;
    }
}

int
tds_framer_commit(tds_framer *f, size_t n, tds_frame_fn fn, void *arg)
{
    f->end += n;
    return run(f, fn, arg);
}

int
tds_framer_drain(tds_framer *f, tds_frame_fn fn, void *arg)
{
    return run(f, fn, arg);
}

void
tds_framer_eof(tds_framer *f, tds_frame_fn fn, void *arg)
{
    /* Whatever a stop request left buffered goes first. */
    while (run(f, fn, arg) == 1)
        ;
    size_t avail = f->end - f->start;
    const char *p = f->buf + f->start;
    switch (f->state) {
    case ST_START:
        if (avail > 0) /* a digit run, cut short: an unfinished count */
            fn(arg, TDS_FRAME_INCOMPLETE, NULL, avail);
        break;
    case ST_OCTET:
        fn(arg, TDS_FRAME_INCOMPLETE, NULL, avail);
        break;
    case ST_LF:
        if (avail > 0)
            fn(arg, TDS_FRAME_MSG, p, avail);
        break;
    default:
        break;
    }
    f->start = f->end = 0;
    f->state = ST_START;
}

/* syslog_parse.h — in_syslog's internal API: the message parser, the TCP
 * framer and the rules engine. The plugin (in_syslog.c, in_syslog_net.c),
 * the unit tests (tests/unit/test_syslog_*.c) and the fuzzer
 * (tests/fuzz/fuzz_syslog.c) link these files without the plugin.
 *
 * Nothing here does I/O, logs or allocates per message: parse and frame work
 * on the caller's bytes, and every view they return points into them (or
 * into the caller's scratch buffer), valid until those change. */
#ifndef TDS_SYSLOG_PARSE_H
#define TDS_SYSLOG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "triaged/plugin.h"

/* ---- parser --------------------------------------------------------- */

/* A view into the message: p == NULL means absent (NILVALUE "-"). */
typedef struct tds_str {
    const char *p;
    size_t n;
} tds_str;

/* One structured-data parameter. value has its escapes (\" \\ \]) removed
 * and may point into the scratch buffer. */
typedef struct tds_param {
    tds_str id, name, value;
} tds_param;

#define TDS_MAX_PARAMS 32    /* more SD params than this: "too_many_params" */
#define TDS_MAX_MSG (64 * 1024) /* the largest message size the plugin allows */

typedef enum { TDS_RFC5424 = 1, TDS_RFC3164 = 2 } tds_format;

typedef struct tds_msg {
    tds_format format;
    bool has_pri;     /* false: RFC 3164 without PRI; user.notice assumed */
    int facility;     /* 0..23 */
    int severity;     /* 0 (emerg) .. 7 (debug) */
    int64_t ts_us;    /* microseconds since the epoch; 0: no timestamp */
    bool ts_coarse;   /* the timestamp had whole seconds only */
    long seq;         /* Cisco-style sequence number, -1 when absent */
    tds_str host, app, procid, msgid;
    tds_str msg;      /* the free-form message, BOM removed; may be empty */
    tds_param params[TDS_MAX_PARAMS];
    size_t n_params;
} tds_msg;

typedef struct tds_parse_opts {
    int64_t now_us;         /* to infer the year of RFC 3164 timestamps */
    int32_t local_offset_s; /* RFC 3164 times are local: seconds east of UTC */
} tds_parse_opts;

/* Parses one syslog message of LEN bytes (trailing LF, CR and NUL are
 * ignored). SCRATCH must hold at least LEN bytes: unescaped SD values go
 * there. Returns 0 with *m filled, or -1 with *reason one of:
 *   empty nul_byte not_utf8 bad_pri bad_version bad_timestamp bad_hostname
 *   bad_app_name bad_procid bad_msgid bad_sd too_many_params
 * Never reads outside buf[0..len). */
int tds_parse(const char *buf, size_t len, const tds_parse_opts *o, tds_msg *m,
              char *scratch, const char **reason);

/* Every reason tds_parse() can give, for metrics set up in advance. */
extern const char *const tds_parse_reasons[];
#define TDS_N_PARSE_REASONS 12

/* Whether buf[0..len) is valid UTF-8 (no overlongs, no surrogates). */
bool tds_utf8_valid(const unsigned char *buf, size_t len);
/* The longest prefix of buf[0..len) no longer than max that does not end
 * inside a UTF-8 sequence (for truncation). */
size_t tds_utf8_cut(const char *buf, size_t len, size_t max);

/* Names: facility 0..23 ("kern" .. "local7"), severity 0..7 ("emerg" ..
 * "debug"); parse accepts the names, common aliases and numbers. */
const char *tds_facility_name(int f);
const char *tds_severity_name(int s);
int tds_facility_parse(const char *s, size_t n);  /* -1 when unknown */
int tds_severity_parse(const char *s, size_t n);  /* -1 when unknown */

/* ---- TCP framing (RFC 6587) ------------------------------------------ */

/* What the framer reports. MSG and TRUNCATED carry a message; TOO_BIG and
 * INCOMPLETE report one that was dropped (len is its announced or buffered
 * size). */
typedef enum {
    TDS_FRAME_MSG,
    TDS_FRAME_TRUNCATED, /* longer than max: its first max bytes */
    TDS_FRAME_TOO_BIG,   /* longer than max, oversize = reject: dropped */
    TDS_FRAME_INCOMPLETE /* the stream ended inside an octet-counted frame */
} tds_frame_ev;

/* Return non-zero to stop delivering (the rest stays buffered until the
 * next tds_framer_commit/tds_framer_drain). */
typedef int (*tds_frame_fn)(void *arg, tds_frame_ev ev, const char *msg,
                            size_t len);

/* Per-connection framing state. Each message is framed on its own: one that
 * starts with "DIGITS SP" is octet-counted, any other ends at LF. */
typedef struct tds_framer {
    char *buf;
    size_t cap, start, end; /* unconsumed bytes: buf[start..end) */
    size_t max;             /* largest message */
    bool truncate;          /* oversize: truncate (else reject) */
    int state;
    size_t want;            /* octet frame: length; skip: bytes left */
    size_t skip_after;      /* truncated octet frame: bytes to skip after */
    size_t scanned;         /* LF frame: bytes already searched for LF */
} tds_framer;

#define TDS_FRAME_BAD (-1) /* a bad octet count: the stream cannot be resynced */

/* Allocates the buffer (about max + 64 KiB). 0, or -1 when out of memory. */
int tds_framer_init(tds_framer *f, size_t max, bool truncate);
void tds_framer_free(tds_framer *f);
/* Where the next bytes read go, and how many fit (never 0 after a drain). */
char *tds_framer_space(tds_framer *f, size_t *avail);
/* N bytes were written at tds_framer_space(); deliver every complete frame.
 * Returns 0, 1 when fn asked to stop, or TDS_FRAME_BAD. */
int tds_framer_commit(tds_framer *f, size_t n, tds_frame_fn fn, void *arg);
/* Deliver frames already buffered (after fn asked to stop). Same returns. */
int tds_framer_drain(tds_framer *f, tds_frame_fn fn, void *arg);
/* The peer closed: a pending LF-framed message is delivered as it is, a
 * pending octet-counted one is reported INCOMPLETE. */
void tds_framer_eof(tds_framer *f, tds_frame_fn fn, void *arg);

/* ---- rules ------------------------------------------------------------ */

typedef struct tds_rules tds_rules;

/* Loads a rules file; on error returns NULL with "FILE:LINE: message" in
 * err. Free with tds_rules_free(). */
tds_rules *tds_rules_load(const char *path, char *err, size_t errlen);
/* The same from text; origin names it in errors. */
tds_rules *tds_rules_parse(const char *text, size_t len, const char *origin,
                           char *err, size_t errlen);
void tds_rules_free(tds_rules *r);
size_t tds_rules_count(const tds_rules *r);
const char *tds_rules_name(const tds_rules *r, size_t i);

/* What a match produced: an alert ready to submit, whose strings live in
 * the result until the next tds_rules_match() with it. */
#define TDS_MAX_LABELS 16
typedef struct tds_result {
    int rule;           /* index of the rule that matched, -1: none */
    bool resolved;      /* the rule resolves */
    td_alert_fields f;
    const char *label_names[TDS_MAX_LABELS];
    const char *label_values[TDS_MAX_LABELS];
    char *buf;          /* storage of the expanded strings */
    size_t cap;
} tds_result;

void tds_result_free(tds_result *res);

/* Runs the rules in order on M; the first that matches fills res and its
 * index is returned; -1 when none matches. fromhost names the peer, for
 * ${fromhost}. Never allocates once res->buf has grown to fit. */
int tds_rules_match(const tds_rules *r, const tds_msg *m, const char *fromhost,
                    tds_result *res);

/* The alert severity a syslog severity maps to when a rule sets none. */
const char *tds_alert_severity(int syslog_severity);

#endif

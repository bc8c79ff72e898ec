/* log.h — one line per event: a fixed message plus key=value fields.
 *
 *   2026-11-25T21:40:00.123Z level=info instance=node-a msg="kafka: consumer started" brokers=127.0.0.1:9092
 *
 * Lines go to stderr (journald adds its own time; the ISO time stays for
 * foreground runs and files). The level check is a macro so disabled levels
 * cost a compare, not a format. Anything a peer can trigger goes through
 * td_log_limited() so a bad peer cannot flood the log. */
#ifndef TD_LOG_H
#define TD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "triaged/plugin.h" /* TD_LOG_* levels */

extern int td_log_level;

void td_log_init(const char *instance, int level);
void td_log_set_level(int level);
const char *td_log_level_name(int level);

/* component may be NULL; it becomes a "plugin=name" field. fields_fmt is a
 * printf format producing "k=v k2=v2"; pass "" for none. */
void td_logf(int level, const char *component, const char *msg,
             const char *fields_fmt, ...) __attribute__((format(printf, 4, 5)));
void td_vlogf(int level, const char *component, const char *msg,
              const char *fields_fmt, va_list ap);

/* s made safe inside a quoted field (field="%s"): \" and \\ escaped, a
 * newline as \n, other control characters as a space, trailing newlines and
 * spaces dropped, cut (never inside an escape or a UTF-8 character) to fit
 * cap (at least 5) bytes with its NUL. Returns buf. For
 * any text a peer or a backend chose (libpq's and Redis's errors quote
 * values). */
const char *td_log_value(const char *s, char *buf, size_t cap);
/* The same in a 512-byte buffer living as long as the enclosing block. */
#define TD_LOG_VALUE(s) td_log_value((s), (char[512]){0}, 512)

#define td_log(level, msg, ...)                                              \
    do {                                                                     \
        if ((level) >= td_log_level)                                         \
            td_logf((level), NULL, (msg), __VA_ARGS__);                      \
    } while (0)
#define td_debug(msg, ...) td_log(TD_LOG_DEBUG, msg, __VA_ARGS__)
#define td_info(msg, ...) td_log(TD_LOG_INFO, msg, __VA_ARGS__)
#define td_warn(msg, ...) td_log(TD_LOG_WARN, msg, __VA_ARGS__)
#define td_error(msg, ...) td_log(TD_LOG_ERROR, msg, __VA_ARGS__)

/* Rate limited log: at most `burst` lines per 10 s for this call site's
 * state; the next line after a quiet spell says how many were suppressed. */
typedef struct td_ratelimit {
    int64_t window_start_ms;
    uint32_t in_window;
    uint32_t suppressed;
} td_ratelimit;

bool td_ratelimit_allow(td_ratelimit *rl, uint32_t burst, uint32_t *suppressed);

#endif

/* log.c — the log line writer (see log.h for the format).
 *
 * One write(2) per line so lines from plugins and the core never interleave,
 * and so a line is never half-written when the process dies. */
#include "internal/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal/util.h"

int td_log_level = TD_LOG_INFO;
static char log_instance[64] = "triaged";

static const char *level_names[] = {"debug", "info", "warn", "error"};

void
td_log_init(const char *instance, int level)
{
    if (instance)
        snprintf(log_instance, sizeof(log_instance), "%s", instance);
    td_log_set_level(level);
}

void
td_log_set_level(int level)
{
    if (level < TD_LOG_DEBUG)
        level = TD_LOG_DEBUG;
    if (level > TD_LOG_ERROR)
        level = TD_LOG_ERROR;
    td_log_level = level;
}

const char *
td_log_level_name(int level)
{
    return level >= TD_LOG_DEBUG && level <= TD_LOG_ERROR ? level_names[level]
                                                          : "?";
}

/* Append s to buf at *off with \" and \\ escaped and control characters
 * made harmless (\n as "\n", others as a space), stopping short of cap. */
static void
append_escaped(char *buf, size_t cap, size_t *off, const char *s, size_t len)
{
    size_t start = *off;
    const char *end = s + len;
    for (; s < end && *off + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[(*off)++] = '\\';
            buf[(*off)++] = (char)c;
        } else if (c == '\n') {
            buf[(*off)++] = '\\';
            buf[(*off)++] = 'n';
        } else if (c < 0x20) {
            buf[(*off)++] = ' ';
        } else {
            buf[(*off)++] = (char)c;
        }
    }
    /* cut inside a UTF-8 character: drop its first bytes too (half a
     * character makes journald show the whole line as a blob) */
    if (s < end && ((unsigned char)*s & 0xC0) == 0x80) {
        while (*off > start && ((unsigned char)buf[*off - 1] & 0xC0) == 0x80)
            (*off)--;
        if (*off > start && (unsigned char)buf[*off - 1] >= 0xC0)
            (*off)--;
    }
}

/* Append s to buf at *off, quoted and escaped, so msg="..." is always one
 * line. */
static void
append_quoted(char *buf, size_t cap, size_t *off, const char *s)
{
    if (*off < cap)
        buf[(*off)++] = '"';
    append_escaped(buf, cap, off, s, strlen(s));
    if (*off < cap)
        buf[(*off)++] = '"';
}

const char *
td_log_value(const char *s, char *buf, size_t cap)
{
    size_t off = 0;
    if (cap == 0)
        return "";
    size_t len = s ? strlen(s) : 0;
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        len--; /* (libpq's messages end in a newline) */
    append_escaped(buf, cap, &off, s ? s : "", len);
    buf[off < cap ? off : cap - 1] = '\0';
    return buf;
}

void
td_vlogf(int level, const char *component, const char *msg,
         const char *fields_fmt, va_list ap)
{
    char line[4096];
    size_t cap = sizeof(line) - 2, off = 0;
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    off += strftime(line, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    off += (size_t)snprintf(line + off, cap - off,
                            ".%03ldZ level=%s instance=%s ",
                            ts.tv_nsec / 1000000, td_log_level_name(level),
                            log_instance);
    if (off > cap)
        off = cap;
    if (component && off < cap)
        off += (size_t)snprintf(line + off, cap - off, "plugin=%s ", component);
    if (off > cap)
        off = cap;
    if (off + 4 < cap) {
        memcpy(line + off, "msg=", 4);
        off += 4;
    }
    append_quoted(line, cap, &off, msg);
    if (fields_fmt && fields_fmt[0] && off + 1 < cap) {
        line[off++] = ' ';
        int n = vsnprintf(line + off, cap - off, fields_fmt, ap);
        if (n > 0)
            off += (size_t)n < cap - off ? (size_t)n : cap - off - 1;
        /* A field value must not break the one-line rule. */
        for (size_t i = 0; i < off; i++)
            if (line[i] == '\n' || line[i] == '\r')
                line[i] = ' ';
    }
    line[off++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, off);
    (void)w;
}

void
td_logf(int level, const char *component, const char *msg,
        const char *fields_fmt, ...)
{
    va_list ap;
    va_start(ap, fields_fmt);
    td_vlogf(level, component, msg, fields_fmt, ap);
    va_end(ap);
}

bool
td_ratelimit_allow(td_ratelimit *rl, uint32_t burst, uint32_t *suppressed)
{
    int64_t now = td_mono_ms();
    *suppressed = 0;
    if (now - rl->window_start_ms >= 10000) {
        *suppressed = rl->suppressed;
        rl->window_start_ms = now;
        rl->in_window = 0;
        rl->suppressed = 0;
    }
    if (rl->in_window < burst) {
        rl->in_window++;
        return true;
    }
    rl->suppressed++;
    return false;
}

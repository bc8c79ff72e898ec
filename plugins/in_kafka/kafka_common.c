/* kafka_common.c — librdkafka configuration, log and error routing, loop
 * wake-ups and rate limiting shared by in_kafka and out_kafka (see
 * kafka_common.h). */
#include "kafka_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static void
_oom(size_t n)
{
    fprintf(stderr, "triaged: out of memory allocating %zu bytes\n", n);
    abort();
}

void *
tdk_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        _oom(n);
    return p;
}

void *
tdk_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        _oom(n * size);
    return p;
}

char *
tdk_strdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        _oom(strlen(s) + 1);
    return d;
}

int64_t
tdk_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
tdk_ratelimit_allow(tdk_ratelimit *rl, uint32_t burst, uint64_t *suppressed)
{
    int64_t now = tdk_mono_ms();
    if (rl->window_start_ms == 0 || now - rl->window_start_ms >= 10000) {
        rl->window_start_ms = now;
        rl->in_window = 0;
    }
    if (rl->in_window >= burst) {
        rl->suppressed++;
        return false;
    }
    rl->in_window++;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return true;
}

const char *
tdk_quote(const char *s, size_t len, char *buf, size_t buflen)
{
    size_t o = 0;
    if (buflen == 0)
        return buf;
    for (size_t i = 0; s && i < len && s[i] && o + 1 < buflen; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = c == '"' ? '\'' : c == '\\' ? '/' : c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    buf[o] = '\0';
    return buf;
}

/* librdkafka's syslog levels to ours. */
static int
_level(int syslog_level)
{
    if (syslog_level <= LOG_ERR)
        return TD_LOG_ERROR;
    if (syslog_level == LOG_WARNING)
        return TD_LOG_WARN;
    if (syslog_level <= LOG_INFO)
        return TD_LOG_INFO;
    return TD_LOG_DEBUG;
}

/* Served by our polls on the loop (log.queue=true), never on a librdkafka
 * thread. Warnings and errors are rate limited: a broker that is down
 * produces one every reconnect. */
void
tdk_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    tdk_ctx *ctx = rd_kafka_opaque(rk);
    int lvl = _level(level);
    uint64_t suppressed = 0;
    char q[512];
    if (!ctx || !ctx->host)
        return;
    /* Said again, counted and rate limited, by the error callback. */
    if (strcmp(fac, "FAIL") == 0)
        lvl = TD_LOG_DEBUG;
    /* The [kafka] rdkafka.* keys go to every client; a consumer key is
     * meaningless for a producer, and the other way round. */
    if (strcmp(fac, "CONFWARN") == 0 &&
        (strstr(buf, "is a consumer property") || strstr(buf, "is a producer property")))
        lvl = TD_LOG_DEBUG;
    if (lvl >= TD_LOG_WARN && !tdk_ratelimit_allow(&ctx->rl_log, 20, &suppressed))
        return;
    tdk_quote(buf, strlen(buf), q, sizeof(q));
    if (suppressed)
        ctx->host->log(ctx->host, lvl, "kafka: librdkafka says",
                       "client=%s facility=%s message=\"%s\" suppressed=%llu",
                       rd_kafka_name(rk), fac, q, (unsigned long long)suppressed);
    else
        ctx->host->log(ctx->host, lvl, "kafka: librdkafka says",
                       "client=%s facility=%s message=\"%s\"", rd_kafka_name(rk),
                       fac, q);
}

void
tdk_count_code(const tdk_ctx *ctx, const char *name, rd_kafka_resp_err_t err)
{
    char labels[96];
    snprintf(labels, sizeof(labels), "code=\"%s\"", rd_kafka_err2name(err));
    ctx->host->count(ctx->host, name, labels, 1);
}

void
tdk_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    tdk_ctx *ctx = opaque;
    char q[512], fatal[512];
    uint64_t suppressed = 0;

    if (err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    tdk_count_code(ctx, "kafka_errors", (rd_kafka_resp_err_t)err);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        ctx->host->log(ctx->host, TD_LOG_ERROR,
                       "kafka: fatal error, this client can no longer work",
                       "client=%s code=%s reason=\"%s\"", rd_kafka_name(rk),
                       rd_kafka_err2name(orig),
                       tdk_quote(fatal, strlen(fatal), q, sizeof(q)));
        return;
    }
    if (!tdk_ratelimit_allow(&ctx->rl_error, 5, &suppressed))
        return;
    ctx->host->log(ctx->host, TD_LOG_WARN, "kafka: client error",
                   "client=%s code=%s reason=\"%s\" suppressed=%llu",
                   rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err),
                   tdk_quote(reason, reason ? strlen(reason) : 0, q, sizeof(q)),
                   (unsigned long long)suppressed);
}

int
tdk_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, bool user,
             char *err, size_t errlen)
{
    char e[256];
    if (rd_kafka_conf_set(conf, key, value, e, sizeof(e)) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(err, errlen, "[kafka] %s%s: %s", user ? "rdkafka." : "", key, e);
    return -1;
}

rd_kafka_conf_t *
tdk_conf_new(void *opaque, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_opaque(conf, opaque);
    rd_kafka_conf_set_log_cb(conf, tdk_log_cb);
    rd_kafka_conf_set_error_cb(conf, tdk_error_cb);
    if (tdk_conf_set(conf, "log.queue", "true", false, err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

struct _pass {
    rd_kafka_conf_t *conf;
    const char *const *owned;
    char *err;
    size_t errlen;
};

static int
_pass_one(const char *key, const char *value, void *arg)
{
    struct _pass *p = arg;
    const char *k = key + strlen("rdkafka.");
    for (size_t i = 0; p->owned && p->owned[i]; i++) {
        if (strcmp(k, p->owned[i]) == 0) {
            snprintf(p->err, p->errlen,
                     "[kafka] %s: set by triaged itself, it cannot be changed", key);
            return -1;
        }
    }
    return tdk_conf_set(p->conf, k, value, true, p->err, p->errlen);
}

int
tdk_conf_passthrough(const td_host *h, rd_kafka_conf_t *conf,
                     const char *const *owned, char *err, size_t errlen)
{
    struct _pass p = {conf, owned, err, errlen};
    if (!h->config_each)
        return 0;
    return h->config_each(h, "kafka", "rdkafka.", _pass_one, &p) ? -1 : 0;
}

int
tdk_conf_check(const td_host *h, const char *const *owned, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(err, errlen, "[kafka] out of memory");
        return -1;
    }
    int rc = tdk_conf_passthrough(h, conf, owned, err, errlen);
    rd_kafka_conf_destroy(conf);
    return rc;
}

bool
tdk_conf_user_set(const td_host *h, const char *key)
{
    char full[256];
    snprintf(full, sizeof(full), "rdkafka.%s", key);
    const char *v = h->config_get ? h->config_get(h, "kafka", full) : NULL;
    return v != NULL;
}

/* ---- loop wake-up --------------------------------------------------- */

int
tdk_wakeup_init(tdk_wakeup *w, struct event_base *base, rd_kafka_queue_t *q,
                event_callback_fn cb, void *arg, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->q = q;
    if (pipe2(w->fd, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    w->have_pipe = true;
    w->ev = event_new(base, w->fd[0], EV_READ | EV_PERSIST, cb, arg);
    if (!w->ev) {
        snprintf(err, errlen, "event_new failed");
        return -1;
    }
    /* librdkafka writes one byte when the queue turns non-empty after a
     * poll; a full pipe only means a wake-up is already pending. */
    rd_kafka_queue_io_event_enable(q, w->fd[1], "1", 1);
    return 0;
}

int
tdk_wakeup_start(tdk_wakeup *w)
{
    if (event_add(w->ev, NULL) != 0)
        return -1;
    /* Whatever was queued before the event existed. */
    event_active(w->ev, EV_READ, 0);
    return 0;
}

void
tdk_wakeup_drain(tdk_wakeup *w)
{
    char buf[256];
    while (read(w->fd[0], buf, sizeof(buf)) > 0)
        ;
}

void
tdk_wakeup_kick(tdk_wakeup *w)
{
    if (w->ev)
        event_active(w->ev, EV_READ, 0);
}

void
tdk_wakeup_free(tdk_wakeup *w)
{
    if (w->q) {
        rd_kafka_queue_io_event_enable(w->q, -1, NULL, 0);
        rd_kafka_queue_destroy(w->q);
        w->q = NULL;
    }
    if (w->ev) {
        event_free(w->ev);
        w->ev = NULL;
    }
    if (w->have_pipe) {
        close(w->fd[0]);
        close(w->fd[1]);
        w->have_pipe = false;
    }
}

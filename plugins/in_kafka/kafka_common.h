/* kafka_common.h — what in_kafka and out_kafka share: librdkafka
 * configuration from [kafka], log and error routing to the host, a loop
 * wake-up for a librdkafka queue, and rate limiting.
 *
 * The design is simple: every librdkafka client of triaged runs with
 * log.queue=true and its callbacks served by polls on the host's loop, so
 * librdkafka never calls into the plugin from one of its own threads. A
 * queue tells the loop that it has something through a non-blocking pipe
 * (rd_kafka_queue_io_event_enable); the loop reads the pipe and polls with a
 * zero timeout. Nothing here ever blocks.
 *
 * Ownership: a client's opaque (rd_kafka_conf_set_opaque) must point at a
 * struct whose first member is a tdk_ctx, which the shared callbacks use. */
#ifndef TD_KAFKA_COMMON_H
#define TD_KAFKA_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <librdkafka/rdkafka.h>

#include "triaged/plugin.h"

#define TDK_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Out of memory aborts, as in the daemon (README, "Architecture"). */
void *tdk_malloc(size_t n);
void *tdk_calloc(size_t n, size_t size);
char *tdk_strdup(const char *s);

/* At most `burst` lines per 10 s window; *suppressed gets how many were
 * refused since the last line allowed, so that line can say so. */
typedef struct tdk_ratelimit {
    int64_t window_start_ms;
    uint32_t in_window;
    uint64_t suppressed;
} tdk_ratelimit;

bool tdk_ratelimit_allow(tdk_ratelimit *rl, uint32_t burst, uint64_t *suppressed);

/* The first member of every client's opaque. */
typedef struct tdk_ctx {
    const td_host *host;
    tdk_ratelimit rl_log;   /* librdkafka's own warnings and errors */
    tdk_ratelimit rl_error; /* error_cb and consumer errors */
} tdk_ctx;

/* A new conf with opaque, log routing (log.queue=true, log_cb) and error_cb
 * set. Returns NULL with err filled when librdkafka refuses a setting. */
rd_kafka_conf_t *tdk_conf_new(void *opaque, char *err, size_t errlen);

/* rd_kafka_conf_set; on failure err names the key ("rdkafka.KEY: ..."
 * when `user` says it came from the config file). Returns 0 or -1. */
int tdk_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                 bool user, char *err, size_t errlen);

/* Passes every [kafka] rdkafka.* key to conf with the prefix stripped.
 * Keys in `owned` (NULL-terminated) are the plugin's own and refused.
 * Returns 0 or -1 with err naming the key. */
int tdk_conf_passthrough(const td_host *h, rd_kafka_conf_t *conf,
                         const char *const *owned, char *err, size_t errlen);
/* `triaged -t`: the rdkafka.* keys, applied to a scratch configuration the
 * way init applies them (unknown key, bad value, a key triaged owns).
 * Returns 0 or -1 with err naming the key. */
int tdk_conf_check(const td_host *h, const char *const *owned, char *err, size_t errlen);

/* Whether rdkafka.KEY is set in [kafka]. */
bool tdk_conf_user_set(const td_host *h, const char *key);

/* The shared log_cb: librdkafka's lines through host->log, warnings and
 * errors rate limited. */
void tdk_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* Counts name{code="ERR_NAME"} through the host. */
void tdk_count_code(const tdk_ctx *ctx, const char *name, rd_kafka_resp_err_t err);

/* The shared error_cb: counts kafka_errors{code}, logs rate limited, and a
 * fatal error at error level with librdkafka's reason. */
void tdk_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/* Copies s into buf for a log field value in double quotes: '"' becomes
 * '\'', control characters a space; truncated to the buffer. Returns buf. */
const char *tdk_quote(const char *s, size_t len, char *buf, size_t buflen);

/* A librdkafka queue that wakes the loop: `cb` runs on the loop when the
 * queue has something. The wake-up is only written again after the queue
 * was polled, so a callback that stops early must event_active() itself. */
typedef struct tdk_wakeup {
    rd_kafka_queue_t *q; /* owned: destroyed by tdk_wakeup_free */
    int fd[2];
    bool have_pipe;      /* fd is open */
    struct event *ev;
} tdk_wakeup;

/* Takes ownership of q. Returns 0 or -1 with err. */
int tdk_wakeup_init(tdk_wakeup *w, struct event_base *base, rd_kafka_queue_t *q,
                    event_callback_fn cb, void *arg, char *err, size_t errlen);
int tdk_wakeup_start(tdk_wakeup *w);
/* Reads the pipe empty; call at the start of the callback. */
void tdk_wakeup_drain(tdk_wakeup *w);
/* Runs the callback again on the next loop iteration. */
void tdk_wakeup_kick(tdk_wakeup *w);
/* Disables the io event, frees the event, closes the pipe and destroys
 * the queue handle. Safe on a zeroed or half-initialised tdk_wakeup. */
void tdk_wakeup_free(tdk_wakeup *w);

int64_t tdk_mono_ms(void);

#endif

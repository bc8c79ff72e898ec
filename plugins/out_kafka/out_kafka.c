/* out_kafka.c — incident and alert events to [kafka] incidents_topic.
 *
 * The design is simple: on_event() hands the event's JSON to an idempotent
 * producer (key = the event's key, so one incident's events stay in one
 * partition and in order; header triaged-kind = the event's kind) and
 * returns. librdkafka batches (linger.ms=5) and sends from its own
 * threads; its delivery reports, logs and errors come back through the
 * main queue, which wakes the loop through a pipe, and are served there
 * with rd_kafka_poll(rk, 0).
 *
 * Never block the loop: when librdkafka's queue is full the event is
 * dropped, counted (kafka_produce_dropped) and logged rate limited,
 * instead of waiting for room. Only fini() waits, at most 5 s, for what is
 * still queued, and says how much was left. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_common.h"

#define OK_FLUSH_MS 5000

typedef struct ok {
    tdk_ctx ctx; /* first: librdkafka's opaque */
    const td_host *host;
    char *topic;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    tdk_wakeup wake;
    uint64_t produced; /* delivered, not yet counted */
    tdk_ratelimit rl_drop, rl_err;
} ok;

static const char *const _owned[] = {
    "bootstrap.servers", "metadata.broker.list", "log.queue", NULL,
};

static void
_dr(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    ok *o = opaque;
    uint64_t suppressed = 0;
    (void)rk;
    if (!rkm->err) {
        o->produced++;
        return;
    }
    tdk_count_code(&o->ctx, "kafka_produce_errors", rkm->err);
    if (tdk_ratelimit_allow(&o->rl_err, 5, &suppressed))
        o->host->log(o->host, TD_LOG_WARN, "kafka: event not delivered",
                     "topic=%s code=%s reason=\"%s\" suppressed=%llu", o->topic,
                     rd_kafka_err2name(rkm->err), rd_kafka_err2str(rkm->err),
                     (unsigned long long)suppressed);
}

static void
_flush_counts(ok *o)
{
    if (o->produced) {
        o->host->count(o->host, "kafka_produced", NULL, o->produced);
        o->produced = 0;
    }
}

static void
_on_wake(evutil_socket_t fd, short what, void *arg)
{
    ok *o = arg;
    (void)fd;
    (void)what;
    tdk_wakeup_drain(&o->wake);
    rd_kafka_poll(o->rk, 0); /* everything queued now */
    _flush_counts(o);
}

static void _free(ok *o);

static int
_init(const td_host *h, void **state, char *err, size_t errlen)
{
    char e[512];
    const char *brokers = h->config_get(h, "kafka", "brokers");
    const char *topic = h->config_get(h, "kafka", "incidents_topic");

    if (!brokers || !*brokers) {
        snprintf(err, errlen, "[kafka] brokers is not set");
        return -1;
    }
    ok *o = tdk_calloc(1, sizeof(*o));
    o->ctx.host = h;
    o->host = h;
    o->topic = tdk_strdup(topic && *topic ? topic : "incidents");

    rd_kafka_conf_t *conf = tdk_conf_new(o, err, errlen);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, _dr);
    /* Ours first, so a user may tune them; then the user's; then the
     * brokers from [kafka]. */
    if (tdk_conf_set(conf, "enable.idempotence", "true", false, err, errlen) ||
        tdk_conf_set(conf, "linger.ms", "5", false, err, errlen) ||
        tdk_conf_passthrough(h, conf, _owned, err, errlen) ||
        tdk_conf_set(conf, "bootstrap.servers", brokers, false, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    o->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!o->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka producer: %s", e);
        goto fail;
    }
    rd_kafka_set_log_queue(o->rk, NULL); /* the main queue, served below */
    o->rkt = rd_kafka_topic_new(o->rk, o->topic, NULL);
    if (!o->rkt) {
        snprintf(err, errlen, "kafka topic '%s': %s", o->topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    if (tdk_wakeup_init(&o->wake, h->base, rd_kafka_queue_get_main(o->rk), _on_wake, o,
                        err, errlen) != 0 ||
        tdk_wakeup_start(&o->wake) != 0)
        goto fail;
    h->log(h, TD_LOG_INFO, "kafka: producer ready", "brokers=%s topic=%s", brokers,
           o->topic);
    *state = o;
    return 0;
fail:
    _free(o);
    return -1;
}

static int
_start(void *state, char *err, size_t errlen)
{
    (void)state;
    (void)err;
    (void)errlen;
    return 0;
}

static void
_on_event(void *state, const td_event *ev)
{
    ok *o = state;
    uint64_t suppressed = 0;
    const char *kind = ev->kind ? ev->kind : "";
    size_t len = ev->len ? ev->len : (ev->json ? strlen(ev->json) : 0);

    rd_kafka_resp_err_t err = rd_kafka_producev(
        o->rk, RD_KAFKA_V_RKT(o->rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(ev->key, ev->key ? strlen(ev->key) : 0),
        RD_KAFKA_V_VALUE((void *)ev->json, len),
        RD_KAFKA_V_HEADER("triaged-kind", kind, -1), RD_KAFKA_V_END);
    if (!err)
        return;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        o->host->count(o->host, "kafka_produce_dropped", NULL, 1);
        if (tdk_ratelimit_allow(&o->rl_drop, 5, &suppressed))
            o->host->log(o->host, TD_LOG_WARN,
                         "kafka: producer queue full, event dropped",
                         "topic=%s kind=%s key=%s queued=%d suppressed=%llu", o->topic,
                         kind, ev->key ? ev->key : "-", rd_kafka_outq_len(o->rk),
                         (unsigned long long)suppressed);
        return;
    }
    tdk_count_code(&o->ctx, "kafka_produce_errors", err);
    if (tdk_ratelimit_allow(&o->rl_err, 5, &suppressed))
        o->host->log(o->host, TD_LOG_WARN, "kafka: event not produced",
                     "topic=%s kind=%s code=%s reason=\"%s\" suppressed=%llu", o->topic,
                     kind, rd_kafka_err2name(err), rd_kafka_err2str(err),
                     (unsigned long long)suppressed);
}

static void
_free(ok *o)
{
    if (!o)
        return;
    if (o->rk) {
        /* Serves delivery reports while it waits: shutdown only. */
        rd_kafka_flush(o->rk, OK_FLUSH_MS);
        int left = rd_kafka_outq_len(o->rk);
        if (left > 0) {
            o->host->log(o->host, TD_LOG_WARN,
                         "kafka: events still queued after the flush; they are lost",
                         "topic=%s queued=%d flush_ms=%d", o->topic, left, OK_FLUSH_MS);
            rd_kafka_purge(o->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_poll(o->rk, 0); /* their reports: counted as errors */
        } else {
            o->host->log(o->host, TD_LOG_INFO, "kafka: producer flushed", "topic=%s",
                         o->topic);
        }
        _flush_counts(o);
    }
    tdk_wakeup_free(&o->wake);
    if (o->rkt)
        rd_kafka_topic_destroy(o->rkt);
    if (o->rk)
        rd_kafka_destroy(o->rk);
    free(o->topic);
    free(o);
}

static void
_fini(void *state)
{
    _free(state);
}

/* triaged -t: the rdkafka.* keys as init would apply them. */
static int
_check(const td_host *host, char *err, size_t errlen)
{
    return tdk_conf_check(host, _owned, err, errlen);
}

TD_PLUGIN_EXPORT const td_plugin triaged_plugin = {
    .abi_version = TD_PLUGIN_ABI_VERSION,
    .name = "out_kafka",
    .kind = TD_PLUGIN_OUTPUT,
    .description = "incident and alert events to a Kafka topic",
    .init = _init,
    .start = _start,
    .on_event = _on_event,
    .fini = _fini,
    .check = _check,
};

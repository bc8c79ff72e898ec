/* in_kafka_dlq.c — copies rejected messages to [kafka] dead_letter_topic.
 *
 * The design is simple: a producer of its own (the consumer cannot
 * produce), whose main queue wakes the loop like the consumer's does, so
 * delivery reports, logs and errors are served on the loop. A dead letter
 * carries the original key and value, the original headers, and
 * triaged-reason, triaged-detail, triaged-source-topic,
 * triaged-source-partition and triaged-source-offset.
 *
 * Best effort by design: the daemon has already stored the position past
 * the rejected message in PostgreSQL, so a dead letter that cannot be
 * produced (queue full, broker gone at shutdown) is counted
 * (kafka_dead_letter_errors) and logged, never retried by re-reading the
 * source. The loop is never blocked; fini() flushes for at most 2 s. */
#include "in_kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define IK_DLQ_FLUSH_MS 2000

static const char *const _owned[] = {
    "bootstrap.servers", "metadata.broker.list", "log.queue", NULL,
};

static void
_dl_failed(ik *k, rd_kafka_resp_err_t err, const char *what)
{
    uint64_t suppressed = 0;
    tdk_count_code(&k->ctx, "kafka_dead_letter_errors", err);
    if (tdk_ratelimit_allow(&k->rl_dl, 5, &suppressed))
        k->host->log(k->host, TD_LOG_WARN, "kafka: dead letter lost",
                     "topic=%s step=%s code=%s reason=\"%s\" suppressed=%llu",
                     k->dl_topic, what, rd_kafka_err2name(err), rd_kafka_err2str(err),
                     (unsigned long long)suppressed);
}

static void
_dl_dr(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    ik *k = opaque;
    (void)rk;
    if (rkm->err)
        _dl_failed(k, rkm->err, "delivery");
    else
        k->host->count(k->host, "kafka_dead_letters", NULL, 1);
}

static void
_dl_on_wake(evutil_socket_t fd, short what, void *arg)
{
    ik *k = arg;
    (void)fd;
    (void)what;
    tdk_wakeup_drain(&k->dl_wake);
    rd_kafka_poll(k->dl, 0);
}

int
ik_dlq_init(ik *k, const char *brokers, char *err, size_t errlen)
{
    char e[512];
    if (!k->dl_topic)
        return 0;
    rd_kafka_conf_t *conf = tdk_conf_new(k, err, errlen);
    if (!conf)
        return -1;
    rd_kafka_conf_set_dr_msg_cb(conf, _dl_dr);
    if (tdk_conf_set(conf, "enable.idempotence", "true", false, err, errlen) ||
        tdk_conf_set(conf, "linger.ms", "5", false, err, errlen) ||
        tdk_conf_passthrough(k->host, conf, _owned, err, errlen) ||
        tdk_conf_set(conf, "bootstrap.servers", brokers, false, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    k->dl = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (!k->dl) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka dead-letter producer: %s", e);
        return -1;
    }
    rd_kafka_set_log_queue(k->dl, NULL); /* its main queue */
    k->dl_rkt = rd_kafka_topic_new(k->dl, k->dl_topic, NULL);
    if (!k->dl_rkt) {
        snprintf(err, errlen, "kafka dead-letter topic '%s': %s", k->dl_topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    if (tdk_wakeup_init(&k->dl_wake, k->host->base, rd_kafka_queue_get_main(k->dl),
                        _dl_on_wake, k, err, errlen) != 0 ||
        tdk_wakeup_start(&k->dl_wake) != 0)
        return -1;
    return 0;
}

static void
_header(rd_kafka_headers_t *h, const char *name, const char *value)
{
    rd_kafka_header_remove(h, name); /* a dead letter consumed again */
    rd_kafka_header_add(h, name, -1, value, -1);
}

void
ik_dlq_send(ik *k, const rd_kafka_message_t *rkm, const td_ack *ack)
{
    rd_kafka_headers_t *orig = NULL, *h;
    char part[16], off[24];

    if (rd_kafka_message_headers(rkm, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
        h = rd_kafka_headers_copy(orig);
    else
        h = rd_kafka_headers_new(5);
    snprintf(part, sizeof(part), "%" PRId32, rkm->partition);
    snprintf(off, sizeof(off), "%" PRId64, rkm->offset);
    _header(h, "triaged-reason", ack->reason ? ack->reason : "invalid");
    _header(h, "triaged-detail", ack->detail ? ack->detail : "");
    _header(h, "triaged-source-topic", rd_kafka_topic_name(rkm->rkt));
    _header(h, "triaged-source-partition", part);
    _header(h, "triaged-source-offset", off);

    rd_kafka_resp_err_t err = rd_kafka_producev(
        k->dl, RD_KAFKA_V_RKT(k->dl_rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(rkm->key, rkm->key_len),
        RD_KAFKA_V_VALUE(rkm->payload, rkm->len), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h); /* still ours when producev fails */
        _dl_failed(k, err, "produce");
    }
}

void
ik_dlq_fini(ik *k)
{
    if (!k->dl) {
        tdk_wakeup_free(&k->dl_wake);
        return;
    }
    /* Serves delivery reports (counting them) while it waits. */
    rd_kafka_flush(k->dl, IK_DLQ_FLUSH_MS);
    int left = rd_kafka_outq_len(k->dl);
    if (left > 0) {
        k->host->log(k->host, TD_LOG_WARN, "kafka: dead letters not delivered at shutdown",
                     "topic=%s queued=%d", k->dl_topic, left);
        rd_kafka_purge(k->dl, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(k->dl, 0); /* their reports: counted as errors */
    }
    tdk_wakeup_free(&k->dl_wake);
    if (k->dl_rkt)
        rd_kafka_topic_destroy(k->dl_rkt);
    rd_kafka_destroy(k->dl);
    k->dl = NULL;
}

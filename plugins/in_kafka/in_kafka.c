/* in_kafka.c — the Kafka input: alerts and capacity samples from a
 * consumer group, exactly once in effect.
 *
 * The design is simple: one high-level consumer, whose queue wakes the loop
 * through a pipe (rd_kafka_queue_io_event_enable); the wake-up callback
 * polls with a zero timeout, at most `budget` messages per call, and
 * re-activates itself when it stopped on the budget. Every message is
 * submitted to the host with its position (topic, partition, offset) and
 * kept alive until its ack, which arrives in submit order per partition.
 *
 * PostgreSQL, not Kafka, holds the positions that count: the daemon stores
 * offset + 1 in the same transaction as the message's effects, and a
 * partition is only ever started (or restarted after a RETRY) from the
 * position read back from PostgreSQL (in_kafka_assign.c). Kafka's committed
 * offsets merely follow the acks, so lag tools work: an OK or INVALID ack
 * stores its offset (enable.auto.offset.store=false), and a loop timer
 * (auto.commit.interval.ms) and a revoke commit them asynchronously.
 * librdkafka's own auto commit is off because its final commit in
 * rd_kafka_consumer_close() waits session.timeout.ms for an unreachable
 * coordinator, which would stall shutdown; a commit still in flight at
 * fini() has the same effect, so none is started at stop or fini.
 *
 * Backpressure: when submit() says FULL, the assignment is paused and the
 * queue keeps being served, which is safe because librdkafka's pause is a
 * version barrier: messages fetched before it are never returned by a poll
 * after it, and are fetched again from the last polled offset on resume.
 * Serving the queue while paused keeps rebalances, logs and errors flowing
 * and the group membership alive (max.poll.interval.ms), which a consumer
 * that simply stopped polling would lose during a long PostgreSQL outage.
 *
 * Never: block the loop (every poll has a zero timeout; only fini() closes
 * the consumer and flushes dead letters, briefly), drop a polled message of an
 * ACTIVE partition, or store an offset for a message whose partition was
 * revoked or rewound since it was submitted. */
#include "in_kafka.h"

#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define IK_BUDGET 1000
#define IK_KEEPALIVE_MAX_MS 10000

static void _free(ik *k);

/* ---- config ------------------------------------------------------------ */

static const char *
_cfg(const td_host *h, const char *key)
{
    const char *v = h->config_get(h, "kafka", key);
    return v && *v ? v : NULL;
}

/* Keys whose values in_kafka decides: the group and its brokers come from
 * [kafka], offsets are stored only by acks, logs are served on the loop. */
static const char *const _owned[] = {
    "bootstrap.servers", "metadata.broker.list", "group.id", "enable.auto.commit",
    "enable.auto.offset.store", "log.queue", NULL,
};

/* ---- Kafka's committed offsets (for lag tools) ---------------------- */

static void
_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
           rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    ik *k = opaque;
    uint64_t suppressed = 0;
    (void)rk;
    (void)offsets;
    if (!err || err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    tdk_count_code(&k->ctx, "kafka_commit_errors", err);
    if (tdk_ratelimit_allow(&k->rl_consume, 5, &suppressed))
        k->host->log(k->host, TD_LOG_WARN,
                     "kafka: committing offsets failed (lag tools lag behind; "
                     "positions are in PostgreSQL)",
                     "code=%s suppressed=%llu", rd_kafka_err2name(err),
                     (unsigned long long)suppressed);
}

/* Commits the stored offsets, asynchronously, if any were stored since
 * the last commit. Never from fini: see _free(). */
void
ik_commit(ik *k)
{
    if (!k->dirty || !k->assigned || k->closing || !k->rk)
        return;
    k->dirty = false;
    rd_kafka_resp_err_t err = rd_kafka_commit(k->rk, NULL, 1);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        _on_commit(k->rk, err, NULL, k);
}

/* Consumer lag: the partitions' high watermarks as librdkafka last saw them
 * in fetch responses (cached, no request) minus the next offset we expect.
 * Hosts older than the gauge function do without. */
static void
_report_lag(ik *k)
{
    const td_host *h = k->host;
    if (h->size < offsetof(td_host, gauge) + sizeof(h->gauge) || !h->gauge)
        return;
    int64_t lag = 0;
    for (size_t i = 0; i < k->n_parts; i++) {
        ik_part *p = &k->parts[i];
        int64_t lo, hi;
        if (p->state != IK_ACTIVE || p->expect < 0 ||
            rd_kafka_get_watermark_offsets(k->rk, p->topic, p->partition, &lo,
                                           &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi < p->expect)
            continue;
        lag += hi - p->expect;
    }
    h->gauge(h, "kafka_consumer_lag", NULL, (double)lag);
}

static void
_on_commit_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ik_commit(arg);
    _report_lag(arg);
}

static rd_kafka_conf_t *
_consumer_conf(ik *k, const char *brokers, int *keepalive_ms, char *err,
               size_t errlen)
{
    const td_host *h = k->host;
    char v[512];
    size_t vlen = sizeof(v);
    rd_kafka_conf_t *conf = tdk_conf_new(k, err, errlen);
    if (!conf)
        return NULL;
    rd_kafka_conf_set_rebalance_cb(conf, ik_rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, _on_commit);
    /* Defaults a user may change, then the user's keys, then ours. Kafka's
     * committed offsets are only for lag tools: acks store them, and we
     * commit them ourselves, asynchronously (see _on_commit_timer). */
    if (tdk_conf_set(conf, "auto.offset.reset", "earliest", false, err, errlen) ||
        tdk_conf_passthrough(h, conf, _owned, err, errlen) ||
        tdk_conf_set(conf, "bootstrap.servers", brokers, false, err, errlen) ||
        tdk_conf_set(conf, "group.id", k->group, false, err, errlen) ||
        tdk_conf_set(conf, "enable.auto.commit", "false", false, err, errlen) ||
        tdk_conf_set(conf, "enable.auto.offset.store", "false", false, err, errlen))
        goto fail;
    /* Positions are read before rd_kafka_assign(), all at once: that is the
     * eager protocol. Cooperative rebalancing would hand out partitions
     * incrementally, which this plugin does not do. */
    if (rd_kafka_conf_get(conf, "partition.assignment.strategy", v, &vlen) ==
            RD_KAFKA_CONF_OK &&
        strstr(v, "cooperative")) {
        snprintf(err, errlen,
                 "[kafka] rdkafka.partition.assignment.strategy: '%s' is "
                 "cooperative; in_kafka needs an eager strategy (range, roundrobin)",
                 v);
        goto fail;
    }
    vlen = sizeof(v);
    k->commit_ms = 5000;
    if (rd_kafka_conf_get(conf, "auto.commit.interval.ms", v, &vlen) == RD_KAFKA_CONF_OK &&
        atoi(v) > 0)
        k->commit_ms = atoi(v);
    vlen = sizeof(v);
    *keepalive_ms = IK_KEEPALIVE_MAX_MS;
    if (rd_kafka_conf_get(conf, "max.poll.interval.ms", v, &vlen) == RD_KAFKA_CONF_OK) {
        long ms = strtol(v, NULL, 10) / 4;
        if (ms > 0 && ms < *keepalive_ms)
            *keepalive_ms = (int)(ms < 10 ? 10 : ms);
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- consuming ----------------------------------------------------------- */

static void
_flush_counts(ik *k)
{
    for (size_t i = 0; i < k->n_topics; i++) {
        if (!k->received[i])
            continue;
        char labels[300];
        snprintf(labels, sizeof(labels), "topic=\"%s\"", k->topics[i]);
        k->host->count(k->host, "kafka_messages", labels, k->received[i]);
        k->received[i] = 0;
    }
}

static void
_consume_error(ik *k, rd_kafka_message_t *rkm)
{
    uint64_t suppressed = 0;
    char q[512];
    const char *e;

    if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    if (rkm->err == RD_KAFKA_RESP_ERR__FATAL) {
        tdk_error_cb(k->rk, rkm->err, rd_kafka_message_errstr(rkm), k);
        return;
    }
    tdk_count_code(&k->ctx, "kafka_errors", rkm->err);
    if (!tdk_ratelimit_allow(&k->rl_consume, 5, &suppressed))
        return;
    e = rd_kafka_message_errstr(rkm);
    k->host->log(k->host, TD_LOG_WARN, "kafka: consumer error",
                 "topic=%s partition=%d code=%s reason=\"%s\" suppressed=%llu",
                 rkm->rkt ? rd_kafka_topic_name(rkm->rkt) : "-", (int)rkm->partition,
                 rd_kafka_err2name(rkm->err), tdk_quote(e, strlen(e), q, sizeof(q)),
                 (unsigned long long)suppressed);
}

static void _on_ack(void *arg, const td_ack *ack);

static void
_consume(ik *k, rd_kafka_message_t *rkm)
{
    if (rkm->err) {
        _consume_error(k, rkm);
        rd_kafka_message_destroy(rkm);
        return;
    }
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    ik_part *p = ik_part_find(k, topic, rkm->partition);

    /* Stopped, revoked or rewinding: not submitted, and no offset stored,
     * so it is read again from the stored position by whoever owns the
     * partition next. */
    if (k->stopped || !p || p->state != IK_ACTIVE) {
        rd_kafka_message_destroy(rkm);
        return;
    }
    /* Below what was already submitted: a stale fetch. Cannot happen with
     * librdkafka's version barriers; cheap to be sure. */
    if (p->expect >= 0 && rkm->offset < p->expect) {
        k->host->log(k->host, TD_LOG_DEBUG, "kafka: dropped a message already submitted",
                     "topic=%s partition=%d offset=%lld expected=%lld", topic,
                     (int)rkm->partition, (long long)rkm->offset, (long long)p->expect);
        rd_kafka_message_destroy(rkm);
        return;
    }
    p->expect = rkm->offset + 1;
    p->inflight++;

    ik_msg *m = tdk_calloc(1, sizeof(*m));
    m->k = k;
    m->rkm = rkm;
    m->pid = p->id;
    m->epoch = p->epoch;
    m->next = k->inflight;
    if (k->inflight)
        k->inflight->prev = m;
    k->inflight = m;
    k->n_inflight++;
    for (size_t i = 0; i < k->n_topics; i++)
        if (k->topics[i] == p->topic)
            k->received[i]++;

    td_position pos = {.stream = topic, .partition = rkm->partition,
                       .offset = rkm->offset};
    td_input_msg in = {
        .format = p->format,
        .data = rkm->payload ? rkm->payload : "",
        .len = rkm->payload ? rkm->len : 0,
        .position = &pos,
        .ack = _on_ack,
        .ack_arg = m,
    };
    /* The ack may run inside submit(): m and p are not used after it. */
    if (k->host->submit(k->host, &in) == TD_SUBMIT_FULL && !k->full) {
        k->full = true;
        k->host->log(k->host, TD_LOG_DEBUG, "kafka: pipeline full, pausing", "");
        ik_sync_pause(k);
    }
}

static void
_on_wake(evutil_socket_t fd, short what, void *arg)
{
    ik *k = arg;
    unsigned n = 0;
    (void)fd;
    (void)what;

    tdk_wakeup_drain(&k->wake);
    while (n < k->budget) {
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(k->rk, 0);
        if (!rkm)
            break;
        n++;
        _consume(k, rkm);
    }
    _flush_counts(k);
    /* librdkafka writes the pipe again only after the queue went empty
     * under a poll: if we stopped on the budget, come back ourselves. */
    if (n == k->budget)
        tdk_wakeup_kick(&k->wake);
}

/* Not a timer for messages: those wake us through the pipe. This serves
 * the queue when nothing arrives, so an idle consumer still counts as
 * polling (max.poll.interval.ms) and stays in its group. */
static void
_on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    ik *k = arg;
    (void)fd;
    (void)what;
    tdk_wakeup_kick(&k->wake);
}

/* ---- acks ---------------------------------------------------------------- */

static void
_invalid(ik *k, const rd_kafka_message_t *rkm, const td_ack *ack)
{
    const char *reason = ack->reason && *ack->reason ? ack->reason : "invalid";
    const char *detail = ack->detail ? ack->detail : "";
    char labels[128], r[64], d[512];
    uint64_t suppressed = 0;

    tdk_quote(reason, strlen(reason), r, sizeof(r));
    snprintf(labels, sizeof(labels), "reason=\"%s\"", r);
    k->host->count(k->host, "kafka_invalid_messages", labels, 1);
    if (tdk_ratelimit_allow(&k->rl_invalid, 5, &suppressed))
        k->host->log(k->host, TD_LOG_WARN, "kafka: message rejected",
                     "topic=%s partition=%d offset=%lld reason=%s detail=\"%s\" "
                     "dead_letter=%s suppressed=%llu",
                     rd_kafka_topic_name(rkm->rkt), (int)rkm->partition,
                     (long long)rkm->offset, r, tdk_quote(detail, strlen(detail), d, sizeof(d)),
                     k->dl ? k->dl_topic : "-", (unsigned long long)suppressed);
    if (k->dl)
        ik_dlq_send(k, rkm, ack);
}

static void
_on_ack(void *arg, const td_ack *ack)
{
    ik_msg *m = arg;
    ik *k = m->k;

    if (!k) { /* acked after fini: the message is already gone */
        free(m);
        return;
    }
    if (m->prev)
        m->prev->next = m->next;
    else
        k->inflight = m->next;
    if (m->next)
        m->next->prev = m->prev;
    k->n_inflight--;

    rd_kafka_message_t *rkm = m->rkm;
    ik_part *p = ik_part_find(k, rd_kafka_topic_name(rkm->rkt), rkm->partition);
    if (p && p->id != m->pid)
        p = NULL; /* revoked since, and assigned again */
    if (p)
        p->inflight--;
    bool current = p && p->epoch == m->epoch && p->state == IK_ACTIVE;

    switch (ack->status) {
    case TD_ACK_OK:
    case TD_ACK_INVALID:
        /* Kafka's committed offset follows PostgreSQL's, for lag tools. */
        if (current) {
            rd_kafka_resp_err_t err = rd_kafka_offset_store(rkm->rkt, rkm->partition,
                                                            rkm->offset);
            if (!err)
                k->dirty = true;
            else
                k->host->log(k->host, TD_LOG_DEBUG, "kafka: offset not stored",
                             "topic=%s partition=%d code=%s",
                             rd_kafka_topic_name(rkm->rkt), (int)rkm->partition,
                             rd_kafka_err2name(err));
        }
        /* The daemon's verdict is final whoever owns the partition now:
         * it stored the position past this message. */
        if (ack->status == TD_ACK_INVALID)
            _invalid(k, rkm, ack);
        break;
    case TD_ACK_RETRY:
        /* The first RETRY of an epoch rewinds; later ones of the same
         * epoch follow from it (the host RETRYs everything after it). */
        if (current)
            ik_part_retry(k, p, rkm->offset, ack);
        break;
    }
    if (p)
        ik_part_acked(k, p);
    rd_kafka_message_destroy(rkm);
    free(m);
}

/* ---- plugin callbacks ---------------------------------------------------- */

static int
_init(const td_host *h, void **state, char *err, size_t errlen)
{
    char e[512];
    int keepalive_ms;
    rd_kafka_conf_t *conf;

    if (h->size < offsetof(td_host, positions_fetch) + sizeof(h->positions_fetch) ||
        !h->positions_fetch || !h->submit || !h->config_get) {
        snprintf(err, errlen, "the host lacks submit, config_get or positions_fetch");
        return -1;
    }
    const char *brokers = _cfg(h, "brokers");
    const char *group = _cfg(h, "group");
    const char *alerts = _cfg(h, "alerts_topic");
    const char *capacity = _cfg(h, "capacity_topic");
    const char *dl = _cfg(h, "dead_letter_topic");
    if (!brokers) {
        snprintf(err, errlen, "[kafka] brokers is not set");
        return -1;
    }
    if (!alerts)
        alerts = "alerts";
    if (capacity && strcmp(capacity, alerts) == 0) {
        snprintf(err, errlen, "[kafka] alerts_topic and capacity_topic are both '%s'",
                 alerts);
        return -1;
    }
    if (dl && (strcmp(dl, alerts) == 0 || (capacity && strcmp(dl, capacity) == 0))) {
        snprintf(err, errlen, "[kafka] dead_letter_topic '%s' is also consumed", dl);
        return -1;
    }

    ik *k = tdk_calloc(1, sizeof(*k));
    k->ctx.host = h;
    k->host = h;
    k->budget = IK_BUDGET;
    k->group = tdk_strdup(group ? group : "triaged");
    k->topics[k->n_topics] = tdk_strdup(alerts);
    k->formats[k->n_topics++] = TD_FMT_ALERT;
    if (capacity) {
        k->topics[k->n_topics] = tdk_strdup(capacity);
        k->formats[k->n_topics++] = TD_FMT_CAPACITY;
    }
    if (dl)
        k->dl_topic = tdk_strdup(dl);

    conf = _consumer_conf(k, brokers, &keepalive_ms, err, errlen);
    if (!conf)
        goto fail;
    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (!k->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka consumer: %s", e);
        goto fail;
    }
    /* Everything (rebalances, errors, logs) on the consumer queue, which
     * wakes the loop. */
    rd_kafka_poll_set_consumer(k->rk);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(k->rk);
    rd_kafka_set_log_queue(k->rk, q);
    if (tdk_wakeup_init(&k->wake, h->base, q, _on_wake, k, err, errlen) != 0)
        goto fail;
    k->keepalive_ms = keepalive_ms;
    k->ev_keepalive = event_new(h->base, -1, EV_PERSIST, _on_keepalive, k);
    k->ev_commit = event_new(h->base, -1, EV_PERSIST, _on_commit_timer, k);
    if (!k->ev_keepalive || !k->ev_commit) {
        snprintf(err, errlen, "event_new failed");
        goto fail;
    }
    if (ik_dlq_init(k, brokers, err, errlen) != 0)
        goto fail;
    h->log(h, TD_LOG_INFO, "kafka: consumer ready",
           "brokers=%s group=%s alerts_topic=%s capacity_topic=%s dead_letter_topic=%s",
           brokers, k->group, alerts, capacity ? capacity : "-", dl ? dl : "-");
    *state = k;
    return 0;
fail:
    _free(k);
    return -1;
}

static int
_start(void *state, char *err, size_t errlen)
{
    ik *k = state;
    rd_kafka_topic_partition_list_t *topics =
        rd_kafka_topic_partition_list_new((int)k->n_topics);
    for (size_t i = 0; i < k->n_topics; i++)
        rd_kafka_topic_partition_list_add(topics, k->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        snprintf(err, errlen, "kafka subscribe: %s", rd_kafka_err2str(e));
        return -1;
    }
    struct timeval ka = {k->keepalive_ms / 1000, (k->keepalive_ms % 1000) * 1000};
    struct timeval cm = {k->commit_ms / 1000, (k->commit_ms % 1000) * 1000};
    if (tdk_wakeup_start(&k->wake) != 0 || event_add(k->ev_keepalive, &ka) != 0 ||
        event_add(k->ev_commit, &cm) != 0) {
        snprintf(err, errlen, "event_add failed");
        return -1;
    }
    k->started = true;
    return 0;
}

static void
_stop(void *state)
{
    ik *k = state;
    if (!k || k->stopped)
        return;
    k->stopped = true;
    /* Paused, but still served: acks keep storing offsets (committed by
     * the timer) and rebalances keep being answered until fini() closes
     * the consumer. */
    ik_sync_pause(k);
    k->host->log(k->host, TD_LOG_INFO, "kafka: consumer stopped taking messages",
                 "in_flight=%zu", k->n_inflight);
}

static void
_resume(void *state)
{
    ik *k = state;
    if (!k->full)
        return;
    k->full = false;
    k->host->log(k->host, TD_LOG_DEBUG, "kafka: pipeline has room, resuming", "");
    ik_sync_pause(k);
    tdk_wakeup_kick(&k->wake);
}

/* How long stopping waits for the consumer to leave its group. */
#define CLOSE_TIMEOUT_MS 5000

/* Leave the group (its revoke runs ik_rebalance_cb), serving the close on
 * a queue of our own for at most CLOSE_TIMEOUT_MS: rd_kafka_consumer_close()
 * blocks until the group is left, which with the coordinator unreachable
 * or the assignment lost can take session.timeout.ms or longer (seen under
 * the broker fault test). No final commit: acked offsets since the last
 * commit are in PostgreSQL, which is what counts. True when closed. */
static bool
close_consumer(ik *k)
{
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
    if (!q)
        return false;
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(k->rk, q);
    bool closed = false;
    if (e) {
        k->host->log(k->host, TD_LOG_WARN, "kafka: consumer close failed", "code=%s",
                     rd_kafka_err2name(rd_kafka_error_code(e)));
        rd_kafka_error_destroy(e);
    } else {
        int64_t end = tdk_mono_ms() + CLOSE_TIMEOUT_MS;
        while (!(closed = rd_kafka_consumer_closed(k->rk)) && tdk_mono_ms() < end)
            rd_kafka_queue_poll_callback(q, 100);
        if (!closed)
            k->host->log(k->host, TD_LOG_WARN,
                         "kafka: consumer did not leave its group in time; stopping without "
                         "(the broker drops the member after session.timeout.ms)",
                         "timeout_ms=%d", CLOSE_TIMEOUT_MS);
    }
    rd_kafka_queue_destroy(q);
    return closed;
}

static void
_free(ik *k)
{
    if (!k)
        return;
    k->stopped = true;
    if (k->ev_keepalive)
        event_free(k->ev_keepalive);
    if (k->ev_commit)
        event_free(k->ev_commit);
    k->ev_keepalive = k->ev_commit = NULL;
    /* The host acks everything before fini (stop, then drain); whatever
     * is left was not applied and is read again from the stored
     * positions. A late ack finds m->k == NULL and only frees m. */
    if (k->n_inflight)
        k->host->log(k->host, TD_LOG_WARN,
                     "kafka: messages not acknowledged at shutdown; they are read "
                     "again from their stored positions",
                     "in_flight=%zu", k->n_inflight);
    for (ik_msg *m = k->inflight; m; m = m->next) {
        m->k = NULL;
        rd_kafka_message_destroy(m->rkm);
        m->rkm = NULL;
    }
    k->inflight = NULL;
    ik_fetches_detach(k);
    if (k->rk) {
        k->closing = true;
        bool closed = close_consumer(k);
        tdk_wakeup_free(&k->wake);
        /* (not closed in time: destroy without a second, blocking close) */
        rd_kafka_destroy_flags(k->rk, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    } else {
        tdk_wakeup_free(&k->wake);
    }
    ik_dlq_fini(k);
    ik_parts_clear(k);
    for (size_t i = 0; i < k->n_topics; i++)
        free(k->topics[i]);
    free(k->group);
    free(k->dl_topic);
    free(k);
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
    .name = "in_kafka",
    .kind = TD_PLUGIN_INPUT,
    .description = "alerts and capacity samples from Kafka, exactly once in effect",
    .init = _init,
    .start = _start,
    .stop = _stop,
    .resume = _resume,
    .fini = _fini,
    .check = _check,
};

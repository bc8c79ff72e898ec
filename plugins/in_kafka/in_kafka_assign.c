/* in_kafka_assign.c — which partitions in_kafka consumes, and from where.
 *
 * The design is simple: PostgreSQL holds each partition's next offset
 * (stored with the effects of the message before it), so a partition is
 * only started from there. The group's eager rebalance hands us an
 * assignment; we do not assign it at once but ask the host for the stored
 * positions (host->positions_fetch, one call per topic, asynchronous) and
 * call rd_kafka_assign() when every partition has its position: the stored
 * offset, or the beginning of the partition when nothing is stored. A
 * revoke unassigns at once and forgets the partitions; results and acks
 * for them that arrive later change nothing (in_kafka.h: ids and epochs).
 *
 * A RETRY ack means the daemon did not apply the message (the partition
 * moved to another instance, or a commit failed) and will RETRY every later
 * in-flight message of that partition. The partition is paused and its
 * later messages are dropped unsubmitted; when its last in-flight message
 * is acked, its position is read again and it is seeked there and resumed.
 * Waiting for the in-flight acks first means the position read is final:
 * nothing of the old epoch can still commit after it, so no message after a
 * RETRY'd one is ever acked OK out of order.
 *
 * Failed reads (positions_fetch returns -1, or its callback reports a
 * failure or leaves a partition out) are retried after 1 s. */
#include "in_kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IK_FETCH_RETRY_MS 1000

ik_part *
ik_part_find(ik *k, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < k->n_parts; i++)
        if (k->parts[i].partition == partition && strcmp(k->parts[i].topic, topic) == 0)
            return &k->parts[i];
    return NULL;
}

void
ik_parts_clear(ik *k)
{
    free(k->parts);
    k->parts = NULL;
    k->n_parts = 0;
    k->assigned = false;
}

static int64_t
_kafka_offset(const ik_part *p)
{
    return p->start >= 0 ? p->start : RD_KAFKA_OFFSET_BEGINNING;
}

/* Pauses what must not fetch (the pipeline is full, we are stopping, or the
 * partition waits for its position) and resumes the rest, telling
 * librdkafka only about changes. `force` tells it everything, for a new
 * assignment: librdkafka keeps a partition's application pause across
 * assignments, so one paused when it was revoked would stay paused.
 *
 * A resumed partition is also seeked to the next offset we expect, which
 * is where librdkafka would resume anyway (the last polled offset + 1):
 * librdkafka 2.0 does not wake the broker thread on resume, so fetching
 * would only restart at its next idle tick, up to a second later, while a
 * seek wakes it at once. */
static void
_apply_pause(ik *k, bool force)
{
    if (!k->assigned || !k->n_parts)
        return;
    rd_kafka_topic_partition_list_t *pause = rd_kafka_topic_partition_list_new(0);
    rd_kafka_topic_partition_list_t *resume = rd_kafka_topic_partition_list_new(0);
    rd_kafka_topic_partition_list_t *seek = rd_kafka_topic_partition_list_new(0);
    for (size_t i = 0; i < k->n_parts; i++) {
        ik_part *p = &k->parts[i];
        bool want = k->full || k->stopped || p->state != IK_ACTIVE;
        if (want == p->paused && !force)
            continue;
        rd_kafka_topic_partition_list_add(want ? pause : resume, p->topic, p->partition);
        if (!want && p->expect >= 0 && !force)
            rd_kafka_topic_partition_list_add(seek, p->topic, p->partition)->offset =
                p->expect;
        p->paused = want;
    }
    if (pause->cnt)
        rd_kafka_pause_partitions(k->rk, pause);
    if (resume->cnt)
        rd_kafka_resume_partitions(k->rk, resume);
    if (seek->cnt) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(k->rk, seek, 0);
        if (e)
            rd_kafka_error_destroy(e); /* only for bad arguments */
    }
    rd_kafka_topic_partition_list_destroy(pause);
    rd_kafka_topic_partition_list_destroy(resume);
    rd_kafka_topic_partition_list_destroy(seek);
}

void
ik_sync_pause(ik *k)
{
    _apply_pause(k, false);
}

/* ---- reading positions ---------------------------------------------------- */

static void _fetch_issue(ik_fetch *f);

static void
_fetch_free(ik_fetch *f)
{
    ik *k = f->k;
    if (k) {
        if (f->prev)
            f->prev->next = f->next;
        else
            k->fetches = f->next;
        if (f->next)
            f->next->prev = f->prev;
    }
    if (f->timer)
        event_free(f->timer);
    free(f->topic);
    free(f->parts);
    free(f->pids);
    free(f->epochs);
    free(f);
}

/* Keeps the entries whose partition still waits for this very read. */
static void
_fetch_prune(ik_fetch *f)
{
    size_t keep = 0;
    for (size_t i = 0; i < f->n; i++) {
        ik_part *p = ik_part_find(f->k, f->topic, f->parts[i]);
        if (!p || p->id != f->pids[i] || p->epoch != f->epochs[i] ||
            p->state != IK_FETCHING)
            continue;
        f->parts[keep] = f->parts[i];
        f->pids[keep] = f->pids[i];
        f->epochs[keep] = f->epochs[i];
        keep++;
    }
    f->n = keep;
}

static void
_on_fetch_timer(evutil_socket_t fd, short what, void *arg)
{
    ik_fetch *f = arg;
    (void)fd;
    (void)what;
    _fetch_prune(f);
    if (!f->n) {
        _fetch_free(f);
        return;
    }
    _fetch_issue(f);
}

static void
_fetch_later(ik_fetch *f, const char *why)
{
    ik *k = f->k;
    uint64_t suppressed = 0;
    struct timeval tv = {IK_FETCH_RETRY_MS / 1000, (IK_FETCH_RETRY_MS % 1000) * 1000};

    k->host->count(k->host, "kafka_position_errors", NULL, 1);
    if (tdk_ratelimit_allow(&k->rl_fetch, 5, &suppressed))
        k->host->log(k->host, TD_LOG_WARN,
                     "kafka: could not read stored positions, retrying in 1s",
                     "topic=%s partitions=%zu attempt=%u why=\"%s\" suppressed=%llu",
                     f->topic, f->n, f->attempts, why, (unsigned long long)suppressed);
    if (!f->timer)
        f->timer = evtimer_new(k->host->base, _on_fetch_timer, f);
    evtimer_add(f->timer, &tv);
}

static void _positions_ready(ik *k);

static bool
_lookup(const int32_t *parts, const int64_t *offs, size_t n, int32_t part,
        int64_t *off)
{
    for (size_t i = 0; parts && offs && i < n; i++) {
        if (parts[i] == part) {
            *off = offs[i] < 0 ? -1 : offs[i];
            return true;
        }
    }
    return false;
}

static void
_on_positions(void *arg, int status, const int32_t *parts, const int64_t *offs,
              size_t n)
{
    ik_fetch *f = arg;
    ik *k = f->k;
    size_t keep = 0;
    bool ready = false;

    f->in_host = false;
    if (!k) { /* fini ran meanwhile */
        _fetch_free(f);
        return;
    }
    _fetch_prune(f); /* outdated: revoked, or rewound again */
    for (size_t i = 0; i < f->n; i++) {
        ik_part *p = ik_part_find(k, f->topic, f->parts[i]);
        int64_t off;
        if (status == 0 && _lookup(parts, offs, n, f->parts[i], &off)) {
            p->start = off;
            p->state = IK_READY;
            ready = true;
            continue;
        }
        f->parts[keep] = f->parts[i];
        f->pids[keep] = f->pids[i];
        f->epochs[keep] = f->epochs[i];
        keep++;
    }
    f->n = keep;
    if (keep)
        _fetch_later(f, status != 0 ? "the host reported a failure"
                                    : "the host left partitions out");
    else
        _fetch_free(f);
    if (ready)
        _positions_ready(k);
}

static void
_fetch_issue(ik_fetch *f)
{
    ik *k = f->k;
    f->attempts++;
    f->in_host = true;
    /* The callback may run inside this call and free f. */
    if (k->host->positions_fetch(k->host, f->topic, f->parts, f->n, _on_positions, f) != 0) {
        f->in_host = false;
        _fetch_later(f, "positions_fetch refused");
    }
}

/* Reads the stored positions of partitions of one topic. */
static void
_fetch_start(ik *k, ik_part **ps, size_t n)
{
    ik_fetch *f = tdk_calloc(1, sizeof(*f));
    f->k = k;
    f->topic = tdk_strdup(ps[0]->topic);
    f->parts = tdk_calloc(n, sizeof(*f->parts));
    f->pids = tdk_calloc(n, sizeof(*f->pids));
    f->epochs = tdk_calloc(n, sizeof(*f->epochs));
    for (size_t i = 0; i < n; i++) {
        ps[i]->state = IK_FETCHING;
        f->parts[i] = ps[i]->partition;
        f->pids[i] = ps[i]->id;
        f->epochs[i] = ps[i]->epoch;
    }
    f->n = n;
    f->next = k->fetches;
    if (k->fetches)
        k->fetches->prev = f;
    k->fetches = f;
    _fetch_issue(f);
}

void
ik_fetches_detach(ik *k)
{
    ik_fetch *f = k->fetches, *next;
    k->fetches = NULL;
    for (; f; f = next) {
        next = f->next;
        f->prev = f->next = NULL;
        if (f->timer) {
            event_free(f->timer); /* before the loop is freed */
            f->timer = NULL;
        }
        if (f->in_host)
            f->k = NULL; /* its callback frees it */
        else {
            f->k = NULL;
            _fetch_free(f);
        }
    }
}

/* ---- starting partitions ----------------------------------------------- */

static void
_assign_now(ik *k)
{
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new((int)k->n_parts);
    for (size_t i = 0; i < k->n_parts; i++) {
        ik_part *p = &k->parts[i];
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset =
            _kafka_offset(p);
        p->state = IK_ACTIVE;
        p->expect = p->start;
        k->host->log(k->host, TD_LOG_DEBUG, "kafka: partition starts at its stored position",
                     "topic=%s partition=%d offset=%lld%s", p->topic, (int)p->partition,
                     (long long)p->start, p->start < 0 ? " (nothing stored: beginning)" : "");
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(k->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) {
        tdk_count_code(&k->ctx, "kafka_errors", err);
        k->host->log(k->host, TD_LOG_ERROR, "kafka: assign failed",
                     "generation=%llu code=%s", (unsigned long long)k->gen,
                     rd_kafka_err2name(err));
    }
    k->assigned = true;
    k->host->log(k->host, TD_LOG_INFO, "kafka: consuming from the stored positions",
                 "generation=%llu partitions=%zu", (unsigned long long)k->gen, k->n_parts);
    _apply_pause(k, true);
    tdk_wakeup_kick(&k->wake);
}

static void
_positions_ready(ik *k)
{
    if (!k->assigned) {
        for (size_t i = 0; i < k->n_parts; i++)
            if (k->parts[i].state != IK_READY)
                return; /* the other topic's read is still out */
        _assign_now(k);
        return;
    }
    /* Re-read after a RETRY: seek there (a version barrier, like assign:
     * nothing fetched before it is returned after it), then resume. */
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    for (size_t i = 0; i < k->n_parts; i++) {
        ik_part *p = &k->parts[i];
        if (p->state != IK_READY)
            continue;
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset =
            _kafka_offset(p);
        p->state = IK_ACTIVE;
        p->expect = p->start;
        k->host->log(k->host, TD_LOG_INFO, "kafka: partition rewound to its stored position",
                     "topic=%s partition=%d offset=%lld", p->topic, (int)p->partition,
                     (long long)p->start);
    }
    if (list->cnt) {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(k->rk, list, 0);
        if (e) {
            k->host->log(k->host, TD_LOG_ERROR, "kafka: seek failed", "reason=\"%s\"",
                         rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        for (int i = 0; i < list->cnt; i++)
            if (list->elems[i].err && list->elems[i].err != RD_KAFKA_RESP_ERR__IN_PROGRESS)
                k->host->log(k->host, TD_LOG_ERROR, "kafka: seek failed",
                             "topic=%s partition=%d code=%s", list->elems[i].topic,
                             (int)list->elems[i].partition,
                             rd_kafka_err2name(list->elems[i].err));
    }
    rd_kafka_topic_partition_list_destroy(list);
    ik_sync_pause(k);
    tdk_wakeup_kick(&k->wake);
}

void
ik_part_retry(ik *k, ik_part *p, int64_t offset, const td_ack *ack)
{
    uint64_t suppressed = 0;
    char labels[300];
    p->epoch = ++k->seq;
    p->state = IK_DRAINING;
    p->expect = -1;
    snprintf(labels, sizeof(labels), "topic=\"%s\"", p->topic);
    k->host->count(k->host, "kafka_rewinds", labels, 1);
    if (tdk_ratelimit_allow(&k->rl_retry, 5, &suppressed))
        k->host->log(k->host, TD_LOG_INFO,
                     "kafka: message not applied; the partition rewinds to its stored position",
                     "topic=%s partition=%d offset=%lld reason=%s in_flight=%zu suppressed=%llu",
                     p->topic, (int)p->partition, (long long)offset,
                     ack->reason ? ack->reason : "-", p->inflight,
                     (unsigned long long)suppressed);
    ik_sync_pause(k);
}

void
ik_part_acked(ik *k, ik_part *p)
{
    if (p->state == IK_DRAINING && p->inflight == 0 && !k->stopped)
        _fetch_start(k, &p, 1);
}

/* ---- rebalances ------------------------------------------------------------ */

static void
_on_assign(ik *k, const rd_kafka_topic_partition_list_t *list)
{
    k->host->count(k->host, "kafka_rebalances", "kind=\"assign\"", 1);
    if (k->n_parts) { /* eager: a revoke always comes first; be sure */
        rd_kafka_assign(k->rk, NULL);
        ik_parts_clear(k);
    }
    k->gen++;
    k->parts = tdk_calloc((size_t)list->cnt, sizeof(*k->parts));
    for (int i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &list->elems[i];
        size_t t;
        for (t = 0; t < k->n_topics; t++)
            if (strcmp(k->topics[t], e->topic) == 0)
                break;
        if (t == k->n_topics) {
            k->host->log(k->host, TD_LOG_WARN, "kafka: assigned a topic not subscribed",
                         "topic=%s partition=%d", e->topic, (int)e->partition);
            continue;
        }
        ik_part *p = &k->parts[k->n_parts++];
        p->topic = k->topics[t];
        p->format = k->formats[t];
        p->partition = e->partition;
        p->state = IK_FETCHING;
        p->id = ++k->seq;
        p->epoch = ++k->seq;
        p->start = -1;
        p->expect = -1;
    }
    k->host->log(k->host, TD_LOG_INFO,
                 "kafka: partitions assigned, reading their stored positions",
                 "generation=%llu partitions=%zu", (unsigned long long)k->gen, k->n_parts);
    if (!k->n_parts) {
        _assign_now(k);
        return;
    }
    /* One read per topic; collect first: a read may complete at once. */
    ik_part **ps = tdk_calloc(k->n_parts, sizeof(*ps));
    size_t n_topics = k->n_topics;
    char *topics[2] = {k->topics[0], n_topics > 1 ? k->topics[1] : NULL};
    uint64_t gen = k->gen;
    for (size_t t = 0; t < n_topics; t++) {
        size_t n = 0;
        if (k->gen != gen)
            break; /* a synchronous answer led to something else */
        for (size_t i = 0; i < k->n_parts; i++)
            if (k->parts[i].topic == topics[t])
                ps[n++] = &k->parts[i];
        if (n)
            _fetch_start(k, ps, n);
    }
    free(ps);
}

void
ik_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    ik *k = opaque;
    (void)rk;

    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        _on_assign(k, parts);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        k->host->count(k->host, "kafka_rebalances", "kind=\"revoke\"", 1);
        k->host->log(k->host, TD_LOG_INFO, "kafka: partitions revoked",
                     "generation=%llu partitions=%d lost=%s in_flight=%zu",
                     (unsigned long long)k->gen, parts ? parts->cnt : 0,
                     rd_kafka_assignment_lost(k->rk) ? "yes" : "no", k->n_inflight);
        /* Queued before the unassign, so it still sees the stored offsets. */
        if (!rd_kafka_assignment_lost(k->rk))
            ik_commit(k);
        rd_kafka_assign(k->rk, NULL);
        ik_parts_clear(k);
        k->gen++;
        break;
    default:
        tdk_count_code(&k->ctx, "kafka_errors", err);
        k->host->log(k->host, TD_LOG_ERROR, "kafka: rebalance failed", "code=%s",
                     rd_kafka_err2name(err));
        rd_kafka_assign(k->rk, NULL);
        ik_parts_clear(k);
        k->gen++;
        break;
    }
}

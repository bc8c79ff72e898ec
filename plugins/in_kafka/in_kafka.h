/* in_kafka.h — in_kafka's state, shared by its files:
 *   in_kafka.c         the plugin callbacks, draining the consumer, acks
 *   in_kafka_assign.c  rebalances, positions from PostgreSQL, pause/resume
 *   in_kafka_dlq.c     the dead-letter producer
 *
 * A partition's life: the group assigns it (FETCHING: its stored position
 * is being read from PostgreSQL through host->positions_fetch), the
 * position arrives (READY), all partitions of the assignment are READY and
 * rd_kafka_assign() starts them at those offsets (ACTIVE: messages are
 * submitted). A RETRY ack makes it DRAINING: it is paused, new messages of
 * it are dropped unsubmitted, and once every submitted message of it is
 * acked its position is read again (FETCHING), then it is seeked there and
 * resumed (ACTIVE). A revoke forgets it at once.
 *
 * Staleness is decided by numbers, never by pointers: each partition of an
 * assignment has a unique id, and an epoch that changes whenever its
 * position is read again. A message remembers both; its ack only moves
 * offsets when both still match an ACTIVE partition. A positions result
 * only applies to partitions whose id and epoch match and that still wait
 * for it: a result for an outdated assignment is ignored. */
#ifndef TD_IN_KAFKA_H
#define TD_IN_KAFKA_H

#include <stdbool.h>
#include <stdint.h>

#include "kafka_common.h"

typedef enum {
    IK_FETCHING, /* waiting for its stored position */
    IK_READY,    /* position known, waiting for the rest of the assignment */
    IK_ACTIVE,   /* consuming */
    IK_DRAINING, /* after a RETRY: waiting for its in-flight acks */
} ik_state;

typedef struct ik_part {
    char *topic; /* borrowed from ik.topics */
    int32_t partition;
    td_format format;
    ik_state state;
    uint64_t id;      /* unique per assignment of this partition */
    uint64_t epoch;   /* changes whenever its position is read again */
    int64_t start;    /* stored next offset from PostgreSQL, -1: none */
    int64_t expect;   /* next offset we expect from Kafka, -1: unknown */
    size_t inflight;  /* submitted with this id and not yet acked */
    bool paused;      /* what librdkafka was told */
} ik_part;

typedef struct ik ik;

/* A submitted message, alive until its ack. */
typedef struct ik_msg {
    ik *k; /* NULL after fini: a late ack only frees it */
    rd_kafka_message_t *rkm;
    uint64_t pid, epoch;
    struct ik_msg *prev, *next;
} ik_msg;

/* One positions_fetch() for partitions of one topic. */
typedef struct ik_fetch {
    ik *k; /* NULL after fini: a late callback only frees it */
    char *topic;
    int32_t *parts;
    uint64_t *pids, *epochs;
    size_t n;
    bool in_host;     /* the host holds it: its callback is still due */
    unsigned attempts;
    struct event *timer;
    struct ik_fetch *prev, *next;
} ik_fetch;

struct ik {
    tdk_ctx ctx; /* first: librdkafka's opaque */
    const td_host *host;

    char *group;
    char *topics[2];
    td_format formats[2];
    uint64_t received[2]; /* not yet counted */
    size_t n_topics;

    rd_kafka_t *rk;
    tdk_wakeup wake;
    struct event *ev_keepalive, *ev_commit;
    int keepalive_ms, commit_ms;
    bool dirty;   /* offsets stored since the last commit */
    bool closing; /* fini: no more commits */
    unsigned budget; /* messages per loop callback */

    ik_part *parts; /* the current assignment */
    size_t n_parts;
    bool assigned;  /* rd_kafka_assign() was called for it */
    uint64_t gen;   /* assignments seen, for logs */
    uint64_t seq;   /* source of ids and epochs */

    bool started, stopped, full;
    ik_msg *inflight;
    size_t n_inflight;
    ik_fetch *fetches;

    /* dead letters */
    char *dl_topic;
    rd_kafka_t *dl;
    rd_kafka_topic_t *dl_rkt;
    tdk_wakeup dl_wake;
    tdk_ratelimit rl_dl;

    tdk_ratelimit rl_invalid, rl_retry, rl_fetch, rl_consume;
};

/* in_kafka.c */
void ik_commit(ik *k);

/* in_kafka_assign.c */
void ik_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                     rd_kafka_topic_partition_list_t *parts, void *opaque);
ik_part *ik_part_find(ik *k, const char *topic, int32_t partition);
void ik_parts_clear(ik *k);
void ik_sync_pause(ik *k);
void ik_part_retry(ik *k, ik_part *p, int64_t offset, const td_ack *ack);
void ik_part_acked(ik *k, ik_part *p);
void ik_fetches_detach(ik *k);

/* in_kafka_dlq.c */
int ik_dlq_init(ik *k, const char *brokers, char *err, size_t errlen);
void ik_dlq_send(ik *k, const rd_kafka_message_t *rkm, const td_ack *ack);
void ik_dlq_fini(ik *k);

#endif

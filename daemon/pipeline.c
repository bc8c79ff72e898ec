/* pipeline.c — from submitted messages to committed incidents.
 *
 * The design is simple: messages are decoded as they are submitted and go
 * into the open batch of their lane; a batch is sealed when it holds
 * batch_size messages or batch_time has passed (0, the default: as soon as
 * the submitting callback returns, when the lane is idle). Each lane has its own
 * PostgreSQL connection and one active batch at a time: folded into segments
 * (batcher.c), classified by Redis (dedup.c) alongside, and applied by one
 * call of triaged.ingest_arrays() (store.c; sql/011: the segments as typed
 * arrays, pgarray.c), which is the judge and the incident engine, and
 * which commits the batch's Kafka offsets in the same transaction
 * (compare-and-set on triaged.kafka_offset). Only then are the batch's
 * messages acked, in submit order, and its events published.
 *
 * Lanes ([pipeline] lanes) let PostgreSQL apply several batches at once, on
 * as many cores. A Kafka partition always goes to the same lane; other
 * inputs' alerts go by their resource (a message whose alerts belong to
 * several lanes is split, one part per lane, acked when the last part
 * commits), samples by their CI; so a partition's messages, and an alert's
 * from syslog or HTTP, are applied in the order they came. Batches of
 * different lanes that touch the same rows are settled by PostgreSQL:
 * the engine locks a batch's alert rows before its incidents, the alerts
 * in fingerprint order (the duplicates' run, then the others'), the
 * incidents it can foresee in one run in id order (sql/029); what it cannot
 * foresee (an incident another batch opened or merged into meanwhile, a
 * CI's upstream incident, correlation's merges) is locked after that run.
 * So two batches seldom wait for each other in a cycle (two instances fed
 * the same alerts still can, through the alerts' two runs); a deadlock or
 * serialization failure retries the batch like any error.
 *
 * Exactly once in effect: a partition's offsets only advance with the
 * effects. When the compare-and-set fails (the partition moved to another
 * instance, or a commit whose answer was lost already advanced it), the
 * function changes nothing and says which partitions are "fenced": their
 * messages are acked RETRY and the input re-reads its positions. Every
 * message carries its partition's epoch; a fence or a positions fetch starts
 * a new epoch, and messages of an old epoch are RETRY'd, never applied, so
 * nothing after a gap is ever committed.
 *
 * Backpressure: the queue (open + sealed + active messages) is bounded by
 * queue_limit messages and by queue_max_bytes of decoded alerts and samples
 * (a message may hold thousands of alerts, so a count alone bounds nothing);
 * submit says FULL at either limit, inputs are resumed when both are at
 * half.
 * PostgreSQL errors retry the same batch with backoff while the queue fills
 * and the inputs pause: nothing is dropped. Timers (resolve after grace,
 * close after quiet, flapping), capacity rollups and SLA events are
 * ticks.c's statements, on connections of their own. */
#include "internal/pipeline.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/alert.h"
#include "internal/batcher.h"
#include "internal/capacity.h"
#include "internal/cmdb.h"
#include "internal/dedup.h"
#include "internal/formats.h"
#include "internal/log.h"
#include "internal/metrics.h"
#include "internal/pgarray.h"
#include "internal/store.h"
#include "internal/ticks.h"
#include "internal/util.h"

enum { STMT_INGEST, STMT_TICK, STMT_POSITIONS, STMT_CAPACITY_TICK, STMT_SLA_TICK };

/* The batch statement's parameters (sql/011_engine_arrays.sql): the
 * segments' arrays, the CI descriptions, offsets, options, then the
 * samples' arrays (td_samples_arrays), their hours and over-limit flag. */
enum {
    INGEST_SEG_ARRAYS = 13,
    INGEST_CIS = INGEST_SEG_ARRAYS,
    INGEST_OFFSETS,
    INGEST_OPTS,
    INGEST_SAMPLES,
    INGEST_HOURS = INGEST_SAMPLES + TD_SAMPLE_ARRAYS,
    INGEST_OVER_LIMIT,
    INGEST_PARAMS
};

static const td_store_stmt stmts[] = {
    /* segments (sql/011) and samples as binary arrays, the rest as text */
    {"td_ingest",
     "SELECT kind, key, payload::text"
     " FROM triaged.ingest_arrays($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
     " $6::int8[], $7::text[], $8::jsonb[], $9::text[], $10::text[], $11::int8[],"
     " $12::timestamptz[], $13::timestamptz[], $14::jsonb, $15::jsonb, $16::jsonb,"
     " $17::int8[], $18::text[], $19::text[], $20::timestamptz[], $21::float8[],"
     " $22::float8[], $23::timestamptz[], $24::boolean)",
     INGEST_PARAMS},
    {"td_tick", "SELECT kind, key, payload::text FROM triaged.tick($1::jsonb)", 1},
    {"td_positions",
     "SELECT partition, next_offset FROM triaged.kafka_offset"
     " WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])",
     3},
    {"td_capacity_tick", "SELECT kind, key, payload::text FROM triaged.capacity_tick($1::jsonb)",
     1},
    {"td_sla_tick", "SELECT kind, key, payload::text FROM triaged.sla_tick($1::jsonb)", 1},
};

/* Why a batch was sealed: the batches_sealed metric's reasons. */
enum { SEAL_FULL, SEAL_TIMER, SEAL_IDLE, SEAL_COMMIT, SEAL_STOP, SEAL_REASONS };

typedef struct lane lane;

typedef struct partition {
    char *topic;
    int32_t partition;
    int64_t known_next; /* next offset stored in PostgreSQL; -1: none */
    uint32_t epoch;
    int64_t batch_next; /* scratch of offsets_json(); -1 between calls */
    lane *lane; /* where its messages are applied, in order */
    struct partition *next;
} partition;

typedef struct item {
    td_ack_fn ack;
    void *ack_arg;
    partition *part; /* NULL: not a replayable input */
    uint32_t epoch;
    int64_t offset;
    const char *reason; /* non-NULL: invalid */
    char *detail;
    td_alert *alerts;
    size_t n_alerts;
    td_sample *samples;
    size_t n_samples;
    size_t bytes; /* memory the decoded alerts and samples hold */
    bool skip;  /* already applied (offset below the stored position) */
    bool retry; /* fenced: ack RETRY */
} item;

typedef struct batch {
    item *items;
    size_t n, cap;
    size_t bytes; /* the items' decoded alerts and samples */
    const td_alert **alerts;
    const td_sample **samples;
    size_t nsamples;
    td_segment *segs;
    size_t nsegs;
    int attempts;
    int64_t sealed_ms;
    struct batch *next;
} batch;

/* One connection, one batch in PostgreSQL at a time, the next one filling. */
struct lane {
    td_pipeline *p;
    int idx;
    td_store *store;
    batch *open;
    batch *sealed_head, *sealed_tail;
    batch *active;
    struct event *ev_batch, *ev_retry;
};

typedef struct positions_req {
    td_pipeline *p;
    td_positions_fn fn;
    void *arg;
    char *topic;
    int32_t *parts;
    size_t n;
} positions_req;

struct td_pipeline {
    const td_config *cfg;
    struct event_base *base;
    td_hostctx *hc;
    lane *lanes;
    int n_lanes;
    td_store *tick_store; /* ticks and positions: never queued behind a batch */
    td_store *cap_store; /* rollups and trends: never delay a batch */
    struct hints_req *hints_pending;
    size_t n_hints_pending;
    td_dedup *dedup;
    td_cmdb *cmdb; /* binding: alert -> CI id, from memory */
    char **identity_labels;
    size_t n_identity_labels;
    char *actor;

    size_t queued; /* messages in every lane's open + sealed + active */
    size_t queued_bytes; /* their items' bytes */
    bool full;     /* told an input FULL; resume below half */
    bool intake_stopped;
    bool shutting_down;
    partition *parts;

    td_ticks *ticks; /* tick, capacity and SLA statements (ticks.c) */
    td_ratelimit rl_store, rl_invalid;

    td_metric *m_received, *m_alerts, *m_batches, *m_batch_msgs, *m_queue,
        *m_dups, *m_new, *m_refired, *m_resolved, *m_stale, *m_unknown_resolves,
        *m_opened, *m_reopened, *m_inc_resolved, *m_inc_closed, *m_retries,
        *m_fenced, *m_segments, *m_batch_latency, *m_alert_delay, *m_events, *m_samples,
        *m_samples_stored, *m_samples_dup, *m_samples_unknown_ci,
        *m_hint[3], *m_hints_skipped, *m_queue_bytes, *m_full_bytes,
        *m_sealed[SEAL_REASONS];
    td_ratelimit rl_capacity;
};

static void kick(lane *l);
static void start_batch(lane *l);

/* ---- partitions ---------------------------------------------------- */

static partition *
part_get(td_pipeline *p, const char *topic, int32_t part)
{
    for (partition *x = p->parts; x; x = x->next)
        if (x->partition == part && strcmp(x->topic, topic) == 0)
            return x;
    partition *x = td_calloc(1, sizeof(*x));
    x->topic = td_strdup(topic);
    x->partition = part;
    x->known_next = -1;
    x->batch_next = -1;
    x->lane = &p->lanes[(td_fnv1a(TD_FNV1A_OFFSET, topic) + (uint32_t)part) %
                        (uint64_t)p->n_lanes];
    x->next = p->parts;
    p->parts = x;
    return x;
}

/* ---- batches ------------------------------------------------------- */

/* A message whose alerts belong to several lanes goes as one part per lane;
 * its ack is given once, when the last part is acked. */
typedef struct split_ack {
    td_ack_fn ack;
    void *arg;
    size_t remaining, accepted;
    bool retry;
} split_ack;

static void
on_part_ack(void *arg, const td_ack *a)
{
    split_ack *s = arg;
    if (a->status == TD_ACK_RETRY)
        s->retry = true;
    else
        s->accepted += a->accepted;
    if (--s->remaining > 0)
        return;
    td_ack out = {.status = TD_ACK_OK, .accepted = s->accepted};
    if (s->retry) {
        out.status = TD_ACK_RETRY;
        out.reason = "retry";
        out.detail = "part of the message was not applied; send it again";
    }
    if (s->ack)
        s->ack(s->arg, &out);
    free(s);
}

static void
batch_free(batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        item *it = &b->items[i];
        if (it->ack == on_part_ack) { /* never acked (shutdown): nobody to tell */
            split_ack *sa = it->ack_arg;
            if (--sa->remaining == 0)
                free(sa);
        }
        for (size_t j = 0; j < it->n_alerts; j++)
            td_alert_clear(&it->alerts[j]);
        free(it->alerts);
        td_samples_free(it->samples, it->n_samples);
        free(it->detail);
    }
    free(b->items);
    free(b->alerts);
    free(b->samples);
    free(b->segs);
    free(b);
}

static void
seal(lane *l, int why)
{
    batch *b = l->open;
    if (!b)
        return;
    td_metric_add(l->p->m_sealed[why], 1);
    l->open = NULL;
    event_del(l->ev_batch);
    b->sealed_ms = td_mono_ms();
    if (l->sealed_tail)
        l->sealed_tail->next = b;
    else
        l->sealed_head = b;
    l->sealed_tail = b;
    kick(l);
}

static void
on_batch_timer(evutil_socket_t fd, short what, void *arg)
{
    lane *l = arg;
    (void)fd;
    (void)what;
    /* Group commit: while PostgreSQL works on a batch the open one keeps
     * filling, up to batch_size; the commit seals it (kick). Sealing it here
     * would queue many small batches, each costing a row per fingerprint. */
    if (l->active)
        return;
    seal(l, l->p->cfg->batch_time_ms > 0 ? SEAL_TIMER : SEAL_IDLE);
}

static void
count_invalid(td_pipeline *p, const char *plugin, const char *reason,
              const char *detail)
{
    char labels[96];
    uint32_t suppressed;
    snprintf(labels, sizeof(labels), "reason=\"%s\"", reason);
    td_metric_add(td_counter("messages_invalid",
                             "Messages rejected, by reason (never silently dropped)",
                             labels), 1);
    if (td_ratelimit_allow(&p->rl_invalid, 10, &suppressed))
        td_warn("invalid message", "plugin=%s reason=%s detail=\"%s\" suppressed=%u",
                plugin, reason, TD_LOG_VALUE(detail), suppressed);
}

static size_t
str_bytes(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* What an item's decoded alerts and samples hold in memory (approximately:
 * the structs and their strings, not the allocator's overhead). */
static size_t
item_bytes(const item *it)
{
    size_t n = sizeof(*it) + (it->detail ? strlen(it->detail) + 1 : 0);
    for (size_t i = 0; i < it->n_alerts; i++) {
        const td_alert *a = &it->alerts[i];
        n += sizeof(*a) + str_bytes(a->source) + str_bytes(a->resource) +
             str_bytes(a->check) + str_bytes(a->summary) + str_bytes(a->dedup_key) +
             str_bytes(a->ci) + a->n_labels * sizeof(*a->labels);
        for (size_t j = 0; j < a->n_labels; j++)
            n += str_bytes(a->labels[j].name) + str_bytes(a->labels[j].value);
    }
    for (size_t i = 0; i < it->n_samples; i++)
        n += sizeof(it->samples[i]) + str_bytes(it->samples[i].ci) +
             str_bytes(it->samples[i].metric);
    return n;
}

/* Append it to the open batch of its lane. */
static batch *
add_item(lane *l, const item *it)
{
    const td_config *cfg = l->p->cfg;
    if (!l->open) {
        l->open = td_calloc(1, sizeof(batch));
        if (cfg->batch_time_ms > 0) {
            struct timeval tv = {(time_t)(cfg->batch_time_ms / 1000),
                                 (suseconds_t)(cfg->batch_time_ms % 1000) * 1000};
            event_add(l->ev_batch, &tv);
        } else {
            /* after the callback that is submitting returns: the rest of
             * its burst (a fetch, a body split over lanes) joins the batch */
            event_active(l->ev_batch, EV_TIMEOUT, 1);
        }
    }
    batch *b = l->open;
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 256;
        b->items = td_realloc(b->items, b->cap * sizeof(*b->items));
    }
    b->items[b->n++] = *it;
    b->bytes += it->bytes;
    return b;
}

/* The lane of an alert not from a partition: by its resource, so one
 * alert's messages keep their order, and the alerts of one incident (one
 * resource) never wait for each other's row locks in two lanes. */
static size_t
alert_lane(const td_pipeline *p, const td_alert *a)
{
    return (size_t)(td_fnv1a(TD_FNV1A_OFFSET, a->resource) % (uint64_t)p->n_lanes);
}

static void
enqueue(td_pipeline *p, lane *l, const item *it)
{
    p->queued++;
    p->queued_bytes += it->bytes;
    const batch *b = add_item(l, it);
    /* (batch_max_bytes, at most 128 MiB, and messages of at most 16 MiB
     * keep the statement's parameters, together, below PostgreSQL's 1 GB
     * for a message, even with labels escaped as \u00XX in JSON) */
    if (b->n >= (size_t)p->cfg->batch_size || b->bytes >= (size_t)p->cfg->batch_max_bytes)
        seal(l, SEAL_FULL);
}

/* Into its lane: a partition's; else the lanes of its alerts' resources
 * (one part per lane, acked together), or the lane of its first sample's
 * CI. */
static void
place(td_pipeline *p, item *it)
{
    size_t n = (size_t)p->n_lanes, first = 0;
    if (it->part) {
        enqueue(p, it->part->lane, it);
        return;
    }
    if (it->n_samples && it->samples[0].ci)
        first = (size_t)(td_fnv1a(TD_FNV1A_OFFSET, it->samples[0].ci) % n);
    if (it->n_alerts)
        first = alert_lane(p, &it->alerts[0]);
    size_t *lane_of = NULL, *count = NULL, n_parts = 0;
    if (it->n_alerts > 1 && n > 1 && !it->n_samples) {
        lane_of = td_malloc(it->n_alerts * sizeof(*lane_of));
        count = td_calloc(n, sizeof(*count));
        for (size_t j = 0; j < it->n_alerts; j++) {
            lane_of[j] = alert_lane(p, &it->alerts[j]);
            if (count[lane_of[j]]++ == 0)
                n_parts++;
        }
    }
    if (n_parts <= 1) {
        free(lane_of);
        free(count);
        enqueue(p, &p->lanes[first], it);
        return;
    }
    split_ack *sa = td_calloc(1, sizeof(*sa));
    sa->ack = it->ack;
    sa->arg = it->ack_arg;
    sa->remaining = n_parts;
    item *parts = td_calloc(n, sizeof(*parts));
    for (size_t k = 0; k < n; k++)
        if (count[k])
            parts[k].alerts = td_calloc(count[k], sizeof(*parts[k].alerts));
    for (size_t j = 0; j < it->n_alerts; j++) { /* moved, in their order */
        item *part = &parts[lane_of[j]];
        part->alerts[part->n_alerts++] = it->alerts[j];
    }
    for (size_t k = 0; k < n; k++) {
        if (!count[k])
            continue;
        parts[k].ack = on_part_ack;
        parts[k].ack_arg = sa;
        parts[k].bytes = item_bytes(&parts[k]);
        enqueue(p, &p->lanes[k], &parts[k]);
    }
    free(parts);
    free(it->alerts); /* its alerts moved into the parts */
    free(lane_of);
    free(count);
}

static int
decode_fields(const td_pipeline *p, const td_alert_fields *f, td_alert *a,
              const char **reason, char *detail, size_t dlen)
{
    memset(a, 0, sizeof(*a));
    if (!f || !f->source || !*f->source || !f->resource || !*f->resource ||
        !f->check || !*f->check) {
        *reason = "missing_field";
        snprintf(detail, dlen, "source, resource and check are required");
        return TD_ERR;
    }
    a->source = td_strdup(f->source);
    a->resource = td_strdup(f->resource);
    a->check = td_strdup(f->check);
    a->summary = f->summary ? td_strdup(f->summary) : NULL;
    a->dedup_key = f->dedup_key ? td_strdup(f->dedup_key) : NULL;
    a->ci = f->ci ? td_strdup(f->ci) : NULL;
    a->firing = !(f->status && strcmp(f->status, "resolved") == 0);
    a->severity = TD_SEV_WARNING;
    if (f->severity && td_severity_parse(f->severity, &a->severity) != TD_OK) {
        td_alert_clear(a);
        *reason = "bad_field";
        snprintf(detail, dlen, "severity '%.32s' is unknown", f->severity);
        return TD_ERR;
    }
    a->occurred_at_us = f->occurred_at_ms ? f->occurred_at_ms * 1000
                                          : td_now_ms() * 1000;
    if (f->n_labels) {
        a->labels = td_calloc(f->n_labels, sizeof(*a->labels));
        for (size_t i = 0; i < f->n_labels; i++) {
            a->labels[i].name = td_strdup(f->label_names[i]);
            a->labels[i].value = td_strdup(f->label_values[i]);
        }
        a->n_labels = f->n_labels;
    }
    td_alert_fingerprint(a, (const char *const *)p->identity_labels,
                         p->n_identity_labels);
    return TD_OK;
}

static int
sink(void *arg, const char *plugin, const td_input_msg *msg)
{
    td_pipeline *p = arg;
    char detail[512] = "";
    const char *reason = NULL;

    if (p->intake_stopped) {
        td_ack ack = {.status = TD_ACK_RETRY, .reason = "shutdown",
                      .detail = "triaged is stopping"};
        if (msg->ack)
            msg->ack(msg->ack_arg, &ack);
        return 0;
    }
    td_metric_add(p->m_received, 1);
    item local = {0}, *it = &local;
    it->ack = msg->ack;
    it->ack_arg = msg->ack_arg;
    if (msg->position) {
        it->part = part_get(p, msg->position->stream, msg->position->partition);
        it->epoch = it->part->epoch;
        it->offset = msg->position->offset;
    }
    td_decode_opts o = {
        .max_size = (size_t)p->cfg->max_message_size,
        .identity_labels = (const char *const *)p->identity_labels,
        .n_identity_labels = p->n_identity_labels,
        .now_us = td_now_ms() * 1000,
    };
    int rc;
    switch (msg->format) {
    case TD_FMT_ALERT:
        rc = td_alert_decode(msg->data, msg->len, &o, &it->alerts, &it->n_alerts,
                             &reason, detail, sizeof(detail));
        break;
    case TD_FMT_ALERTMANAGER:
        rc = td_alertmanager_decode(msg->data, msg->len, &o, p->cfg->http_am_resource_label,
                                    &it->alerts, &it->n_alerts, &reason, detail,
                                    sizeof(detail));
        break;
    case TD_FMT_PAGERDUTY:
        rc = td_pagerduty_decode(msg->data, msg->len, &o, &it->alerts, &it->n_alerts,
                                 &reason, detail, sizeof(detail));
        break;
    case TD_FMT_FIELDS:
        it->alerts = td_calloc(1, sizeof(*it->alerts));
        rc = decode_fields(p, msg->fields, it->alerts, &reason, detail, sizeof(detail));
        if (rc == TD_OK) {
            it->n_alerts = 1;
        } else {
            free(it->alerts);
            it->alerts = NULL;
        }
        break;
    case TD_FMT_CAPACITY:
        rc = td_capacity_decode(msg->data, msg->len, (size_t)p->cfg->max_message_size,
                                td_now_ms() * 1000, &it->samples, &it->n_samples, &reason,
                                detail, sizeof(detail));
        break;
    default:
        reason = "unsupported_format";
        snprintf(detail, sizeof(detail), "format %d is not handled by this pipeline",
                 (int)msg->format);
        rc = TD_ERR;
        break;
    }
    if (rc != TD_OK) {
        it->reason = reason;
        it->detail = td_strdup(detail);
        count_invalid(p, plugin, reason, detail);
    } else {
        td_metric_add(p->m_alerts, it->n_alerts);
        td_metric_add(p->m_samples, it->n_samples);
    }
    it->bytes = item_bytes(it);
    place(p, it);
    td_metric_set(p->m_queue, (double)p->queued);
    td_metric_set(p->m_queue_bytes, (double)p->queued_bytes);
    bool over_bytes = p->queued_bytes >= (uint64_t)p->cfg->queue_max_bytes;
    if (p->queued >= (size_t)p->cfg->queue_limit || over_bytes) {
        if (over_bytes && !p->full)
            td_metric_add(p->m_full_bytes, 1);
        p->full = true;
        return TD_SUBMIT_FULL;
    }
    return 0;
}

/* ---- acks ------------------------------------------------------------ */

static void
ack_item(item *it, td_ack_status status)
{
    if (!it->ack)
        return;
    td_ack ack = {.status = status};
    if (status == TD_ACK_RETRY) {
        ack.reason = "retry";
        ack.detail = "the partition's stored position moved; re-read it";
    } else if (it->reason) {
        ack.status = TD_ACK_INVALID;
        ack.reason = it->reason;
        ack.detail = it->detail;
    } else {
        ack.accepted = it->n_alerts + it->n_samples;
    }
    it->ack(it->ack_arg, &ack);
    it->ack = NULL;
}

static void
release(td_pipeline *p, size_t n, size_t bytes)
{
    p->queued -= n;
    p->queued_bytes -= bytes;
    td_metric_set(p->m_queue, (double)p->queued);
    td_metric_set(p->m_queue_bytes, (double)p->queued_bytes);
    if (p->full && p->queued <= (size_t)p->cfg->queue_limit / 2 &&
        p->queued_bytes <= (uint64_t)p->cfg->queue_max_bytes / 2) {
        p->full = false;
        td_host_resume_inputs(p->hc);
    }
}

/* ---- the active batch ------------------------------------------------ */

/* Add ci_id (> 0) to an open-addressing set of cap (a power of two) slots;
 * true when it was not there yet. */
static bool
ci_set_add(int64_t *set, size_t cap, int64_t ci_id)
{
    size_t i = (size_t)((uint64_t)ci_id * 0x9E3779B97F4A7C15ull) & (cap - 1);
    while (set[i] && set[i] != ci_id)
        i = (i + 1) & (cap - 1);
    if (set[i])
        return false;
    set[i] = ci_id;
    return true;
}

/* The segments as INGEST_SEG_ARRAYS binary arrays (values[0..12]: fp,
 * source, resource, check, dedup_key, ci_id, summary, labels, severity,
 * status, n, first, last) and the CI descriptions as JSON text
 * (values[INGEST_CIS]: [{ci_id, up, svc}], a CI's upstream CIs and services
 * once, in case one of its segments opens an incident). TD_ERR (nothing
 * set) when an array passes PostgreSQL's 1 GB limit. */
static int
segments_arrays(const td_pipeline *p, const batch *b, char **values, int *lengths)
{
    static const uint32_t oids[INGEST_SEG_ARRAYS] = {
        TD_OID_TEXT,  TD_OID_TEXT, TD_OID_TEXT, TD_OID_TEXT, TD_OID_TEXT,        /* fp .. dedup_key */
        TD_OID_INT8,  TD_OID_TEXT, TD_OID_JSONB,                                 /* ci_id, summary, labels */
        TD_OID_TEXT,  TD_OID_TEXT, TD_OID_INT8,                                  /* severity, status, n */
        TD_OID_TIMESTAMPTZ, TD_OID_TIMESTAMPTZ};                                 /* first, last */
    td_pgarray a[INGEST_SEG_ARRAYS];
    for (int k = 0; k < INGEST_SEG_ARRAYS; k++)
        td_pgarray_init(&a[k], oids[k]);
    size_t cap = 16;
    while (cap < 2 * b->nsegs)
        cap *= 2;
    int64_t *described = td_calloc(cap, sizeof(*described));
    json_t *cis = json_array();
    for (size_t i = 0; i < b->nsegs; i++) {
        const td_segment *s = &b->segs[i];
        const td_alert *al = s->rep;
        char *labels_text = NULL; /* (none: "{}", without building it) */
        if (al->n_labels) {
            json_t *labels = json_object();
            for (size_t j = 0; j < al->n_labels; j++)
                json_object_set_new(labels, al->labels[j].name,
                                    json_string(al->labels[j].value));
            labels_text = json_dumps(labels, JSON_COMPACT);
            json_decref(labels);
        }
        int64_t ci_id = td_cmdb_bind(p->cmdb, al);
        if (ci_id && ci_set_add(described, cap, ci_id)) {
            json_t *o = json_object();
            json_object_set_new(o, "ci_id", json_integer(ci_id));
            td_cmdb_describe(p->cmdb, ci_id, o);
            json_array_append_new(cis, o);
        }
        td_pgarray_text(&a[0], al->fp_hex);
        td_pgarray_text(&a[1], al->source);
        td_pgarray_text(&a[2], al->resource);
        td_pgarray_text(&a[3], al->check);
        td_pgarray_text(&a[4], al->dedup_key);
        if (ci_id)
            td_pgarray_int8(&a[5], ci_id);
        else
            td_pgarray_null(&a[5]);
        td_pgarray_text(&a[6], al->summary);
        td_pgarray_jsonb(&a[7], labels_text ? labels_text : "{}");
        free(labels_text);
        td_pgarray_text(&a[8], td_severity_name(s->severity));
        td_pgarray_text(&a[9], s->firing ? "firing" : "resolved");
        td_pgarray_int8(&a[10], (int64_t)s->n);
        td_pgarray_timestamptz(&a[11], s->first_us);
        td_pgarray_timestamptz(&a[12], s->last_us);
    }
    free(described);
    if (td_pgarray_finish_all(a, INGEST_SEG_ARRAYS, values, lengths) != TD_OK) {
        json_decref(cis);
        return TD_ERR;
    }
    values[INGEST_CIS] = json_dumps(cis, JSON_COMPACT);
    json_decref(cis);
    return TD_OK;
}

/* The offsets compare-and-set for every partition with messages to apply. */
static char *
offsets_json(const td_pipeline *p, const batch *b)
{
    /* per partition, the highest applied offset + 1: one pass over the
     * messages, not one per partition */
    for (size_t i = 0; i < b->n; i++) {
        const item *it = &b->items[i];
        if (it->part)
            it->part->batch_next = -1;
    }
    for (size_t i = 0; i < b->n; i++) {
        const item *it = &b->items[i];
        if (it->part && !it->skip && !it->retry && it->offset + 1 > it->part->batch_next)
            it->part->batch_next = it->offset + 1;
    }
    json_t *arr = json_array();
    for (partition *x = p->parts; x; x = x->next) {
        int64_t next = x->batch_next;
        x->batch_next = -1;
        if (next < 0)
            continue;
        json_t *o = json_object();
        json_object_set_new(o, "group", json_string(p->cfg->kafka_group));
        json_object_set_new(o, "topic", json_string(x->topic));
        json_object_set_new(o, "partition", json_integer(x->partition));
        json_object_set_new(o, "expect", json_integer(x->known_next));
        json_object_set_new(o, "next", json_integer(next));
        json_array_append_new(arr, o);
    }
    char *s = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    return s;
}

static void on_ingest(void *arg, const PGresult *res, const char *err);

static void retry_later(lane *l, const char *why);

/* The batch statement: segments as binary arrays, CI descriptions, offsets
 * and options as JSON text, samples as binary arrays with their CIs bound
 * here from the CMDB graph (SQL binds the ones the graph does not know: it
 * may lag a CMDB change). */
static void
send_ingest(lane *l)
{
    td_pipeline *p = l->p;
    batch *b = l->active;
    char *values[INGEST_PARAMS] = {NULL};
    int lengths[INGEST_PARAMS] = {0}, formats[INGEST_PARAMS] = {0};
    if (b->nsamples) {
        const td_graph *g = td_cmdb_graph(p->cmdb);
        int64_t *ids = td_malloc(b->nsamples * sizeof(*ids));
        for (size_t i = 0; i < b->nsamples; i++)
            ids[i] = g ? td_graph_lookup(g, b->samples[i]->ci) : 0;
        int rc = td_samples_arrays(b->samples, ids, b->nsamples, &values[INGEST_SAMPLES],
                                   &lengths[INGEST_SAMPLES]);
        free(ids);
        if (rc != TD_OK) {
            retry_later(l, "capacity samples of the batch pass PostgreSQL's 1 GB limit");
            return;
        }
        for (int k = 0; k < TD_SAMPLE_ARRAYS; k++)
            formats[INGEST_SAMPLES + k] = 1;
        bool over;
        td_samples_summary(b->samples, b->nsamples, &values[INGEST_HOURS],
                           &lengths[INGEST_HOURS], &over);
        formats[INGEST_HOURS] = 1;
        values[INGEST_OVER_LIMIT] = td_strdup(over ? "t" : "f");
    }
    if (segments_arrays(p, b, values, lengths) != TD_OK) {
        for (int k = 0; k < INGEST_PARAMS; k++)
            free(values[k]);
        retry_later(l, "alert segments of the batch pass PostgreSQL's 1 GB limit");
        return;
    }
    for (int k = 0; k < INGEST_SEG_ARRAYS; k++)
        formats[k] = 1;
    values[INGEST_OFFSETS] = offsets_json(p, b);
    values[INGEST_OPTS] = td_engine_opts(p->cfg, p->actor, false);
    td_store_exec_owned(l->store, STMT_INGEST, values, lengths, formats, on_ingest, l);
}

/* Redis classifies the batch's fingerprints alongside the PostgreSQL
 * statement, never before it: PostgreSQL decides from the rows it locks
 * (sql/002_ingest.sql), so the hints only feed the dedup_hints metric and
 * Redis's record of each fingerprint. One of these per classify call, alive
 * until Redis answers (or the pipeline is freed), whatever the batch does. */
typedef struct hints_req {
    td_pipeline *p;
    uint8_t *hints;
    size_t n;
    struct hints_req *prev, *next;
} hints_req;

static void
hints_req_free(hints_req *h)
{
    td_pipeline *p = h->p;
    if (h->prev)
        h->prev->next = h->next;
    else
        p->hints_pending = h->next;
    if (h->next)
        h->next->prev = h->prev;
    p->n_hints_pending--;
    free(h->hints);
    free(h);
}

static void
on_hints(void *arg)
{
    hints_req *h = arg;
    td_pipeline *p = h->p;
    uint64_t n[3] = {0, 0, 0};
    for (size_t i = 0; i < h->n; i++)
        n[h->hints[i] <= TD_HINT_NEW ? h->hints[i] : TD_HINT_CHANGE]++;
    for (int k = 0; k < 3; k++)
        td_metric_add(p->m_hint[k], n[k]);
    hints_req_free(h);
}

#define HINTS_MAX_PENDING 8 /* batches Redis may lag behind; beyond: skipped */

static void
classify(td_pipeline *p, const batch *b)
{
    if (p->n_hints_pending >= HINTS_MAX_PENDING) {
        td_metric_add(p->m_hints_skipped, 1);
        return;
    }
    p->n_hints_pending++;
    hints_req *h = td_calloc(1, sizeof(*h));
    h->p = p;
    h->n = b->nsegs;
    h->hints = td_calloc(b->nsegs ? b->nsegs : 1, 1);
    h->next = p->hints_pending;
    if (h->next)
        h->next->prev = h;
    p->hints_pending = h;
    td_dedup_classify(p->dedup, b->segs, b->nsegs, h->hints, on_hints, h);
}

/* Mark what this attempt applies: RETRY for stale epochs, skip for offsets
 * already stored; then fold the rest and ask Redis. */
static void
start_batch(lane *l)
{
    td_pipeline *p = l->p;
    batch *b = l->active;
    size_t na = 0;
    if (!td_cmdb_ready(p->cmdb)) {
        /* alerts are bound when the batch is sent: wait for the first load */
        struct timeval tv = {0, 50 * 1000};
        event_add(l->ev_retry, &tv);
        return;
    }
    free(b->alerts);
    free(b->samples);
    free(b->segs);
    b->samples = NULL;
    b->nsamples = 0;
    b->alerts = NULL;
    b->segs = NULL;
    for (size_t i = 0; i < b->n; i++) {
        item *it = &b->items[i];
        if (it->part && it->epoch != it->part->epoch)
            it->retry = true;
        else if (it->part && it->part->known_next >= 0 &&
                 it->offset < it->part->known_next)
            it->skip = true;
        if (!it->retry && !it->skip && !it->reason) {
            na += it->n_alerts;
            b->nsamples += it->n_samples;
        }
    }
    if (b->nsamples) {
        b->samples = td_calloc(b->nsamples, sizeof(*b->samples));
        size_t ns = 0;
        for (size_t i = 0; i < b->n; i++) {
            item *it = &b->items[i];
            if (it->retry || it->skip || it->reason)
                continue;
            for (size_t j = 0; j < it->n_samples; j++)
                b->samples[ns++] = &it->samples[j];
        }
    }
    b->alerts = td_calloc(na ? na : 1, sizeof(*b->alerts));
    na = 0;
    for (size_t i = 0; i < b->n; i++) {
        item *it = &b->items[i];
        if (it->retry || it->skip || it->reason)
            continue;
        for (size_t j = 0; j < it->n_alerts; j++)
            b->alerts[na++] = &it->alerts[j];
    }
    b->nsegs = td_fold(b->alerts, na, &b->segs);
    td_metric_add(p->m_segments, b->nsegs);
    classify(p, b);
    send_ingest(l);
}

/* Group commit: whenever PostgreSQL is free, the waiting messages go as one
 * batch at once; while it is busy, the open batch grows (up to batch_size).
 * So batches are small and fast at low rates and large at high rates, and a
 * storm costs about one statement per distinct alert, not per message. */
static void
kick(lane *l)
{
    if (l->active)
        return;
    if (!l->sealed_head && l->open && l->open->n > 0) {
        seal(l, SEAL_COMMIT); /* calls kick() again */
        return;
    }
    if (!l->sealed_head)
        return;
    batch *b = l->sealed_head;
    l->sealed_head = b->next;
    if (!l->sealed_head)
        l->sealed_tail = NULL;
    b->next = NULL;
    l->active = b;
    td_metric_add(l->p->m_batches, 1);
    td_metric_add(l->p->m_batch_msgs, b->n);
    start_batch(l);
}

static void
on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lane *l = arg;
    if (l->active)
        start_batch(l);
}

static void
retry_later(lane *l, const char *why)
{
    td_pipeline *p = l->p;
    batch *b = l->active;
    uint32_t suppressed;
    int64_t ms = 100LL << (b->attempts < 6 ? b->attempts : 6);
    b->attempts++;
    td_metric_add(p->m_retries, 1);
    if (td_ratelimit_allow(&p->rl_store, 5, &suppressed))
        td_warn("batch not applied; retrying (inputs pause when the queue fills)",
                "error=\"%s\" lane=%d attempt=%d retry_ms=%lld queued=%zu suppressed=%u",
                TD_LOG_VALUE(why), l->idx, b->attempts, (long long)ms,
                p->queued, suppressed);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(l->ev_retry, &tv);
}

static uint64_t
stat_of(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) > 0
               ? (uint64_t)json_integer_value(v) : 0;
}

static void
apply_stats(td_pipeline *p, const char *payload, uint64_t firing_msgs)
{
    json_t *o = json_loads(payload, 0, NULL);
    if (!o)
        return;
    uint64_t n_new = stat_of(o, "new_alerts"), refired = stat_of(o, "refired");
    td_metric_add(p->m_new, n_new);
    td_metric_add(p->m_refired, refired);
    td_metric_add(p->m_resolved, stat_of(o, "resolved"));
    td_metric_add(p->m_stale, stat_of(o, "stale"));
    td_metric_add(p->m_unknown_resolves, stat_of(o, "unknown_resolves"));
    td_metric_add(p->m_opened, stat_of(o, "incidents_opened"));
    td_metric_add(p->m_reopened, stat_of(o, "incidents_reopened"));
    if (firing_msgs > n_new + refired)
        td_metric_add(p->m_dups, firing_msgs - n_new - refired);
    json_decref(o);
}

static void
publish_row(void *arg, const PGresult *res, int row)
{
    td_pipeline *p = arg;
    td_event ev = {
        .kind = PQgetvalue(res, row, 0),
        .key = PQgetisnull(res, row, 1) ? NULL : PQgetvalue(res, row, 1),
        .json = PQgetvalue(res, row, 2),
        .len = (size_t)PQgetlength(res, row, 2),
    };
    if (strcmp(ev.kind, "incident.resolved") == 0)
        td_metric_add(p->m_inc_resolved, 1);
    else if (strcmp(ev.kind, "incident.closed") == 0)
        td_metric_add(p->m_inc_closed, 1);
    td_metric_add(p->m_events, 1);
    td_host_publish(p->hc, &ev);
}

/* ---- capacity ---------------------------------------------------------- */

static void
capacity_stats(td_pipeline *p, const char *payload)
{
    json_t *o = json_loads(payload, 0, NULL);
    if (!o)
        return;
    td_metric_add(p->m_samples_stored, stat_of(o, "inserted"));
    td_metric_add(p->m_samples_dup, stat_of(o, "duplicates"));
    uint64_t unknown = stat_of(o, "unknown_ci");
    td_metric_add(p->m_samples_unknown_ci, unknown);
    uint32_t suppressed;
    if (unknown && td_ratelimit_allow(&p->rl_capacity, 5, &suppressed)) {
        char *names = json_dumps(json_object_get(o, "unknown_names"), JSON_COMPACT);
        td_warn("capacity samples for unknown CIs not stored",
                "count=%llu names=%s suppressed=%u", (unsigned long long)unknown,
                names ? names : "[]", suppressed);
        free(names);
    }
    json_decref(o);
}

/* A series at or over its limit fires an alert (and so opens an incident);
 * back under it, the alert resolves. Submitted like any input's alert, into
 * the next batch: should triaged stop before, the next sample says it again. */
static void
capacity_limit_alert(td_pipeline *p, const char *payload)
{
    json_t *o = json_loads(payload, 0, NULL);
    if (!o)
        return;
    const char *ci = json_string_value(json_object_get(o, "ci"));
    const char *metric = json_string_value(json_object_get(o, "metric"));
    const char *status = json_string_value(json_object_get(o, "status"));
    const char *ts = json_string_value(json_object_get(o, "ts"));
    int64_t ts_us = 0;
    if (!ci || !metric || !status || !ts || td_parse_rfc3339(ts, &ts_us) != TD_OK) {
        json_decref(o);
        return;
    }
    char summary[512];
    snprintf(summary, sizeof(summary), "%s at %g of its limit %g", metric,
             json_number_value(json_object_get(o, "value")),
             json_number_value(json_object_get(o, "limit")));
    const char *names[] = {"metric"};
    const char *values[] = {metric};
    td_alert_fields f = {
        .source = "capacity", .resource = ci, .check = "capacity_limit",
        .status = status, .severity = "major", .summary = summary, .ci = ci,
        .label_names = names, .label_values = values, .n_labels = 1,
        .occurred_at_ms = ts_us / 1000,
    };
    td_input_msg m = {.format = TD_FMT_FIELDS, .fields = &f};
    sink(p, "capacity", &m);
    json_decref(o);
}

static void
on_ingest(void *arg, const PGresult *res, const char *err)
{
    lane *l = arg;
    td_pipeline *p = l->p;
    batch *b = l->active;
    if (!b)
        return; /* shut down meanwhile */
    if (!res) {
        retry_later(l, err);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        retry_later(l, PQresultErrorMessage(res));
        return;
    }
    int rows = PQntuples(res);
    /* Fenced: nothing was applied. Start a new epoch for those partitions,
     * RETRY their messages, and apply the rest again. */
    int fenced = 0;
    for (int r = 0; r < rows; r++) {
        if (strcmp(PQgetvalue(res, r, 0), "fenced") != 0)
            continue;
        const char *key = PQgetvalue(res, r, 1);
        const char *slash = strrchr(key, '/');
        if (!slash)
            continue;
        char *topic = td_strndup(key, (size_t)(slash - key));
        partition *x = part_get(p, topic, (int32_t)atoi(slash + 1));
        free(topic);
        x->epoch++;
        fenced++;
        td_metric_add(p->m_fenced, 1);
        td_info("partition fenced: its stored offset moved; the input re-reads it",
                "topic=%s partition=%d stored=%s", x->topic, x->partition,
                PQgetvalue(res, r, 2));
    }
    if (fenced) {
        start_batch(l);
        return;
    }

    /* Applied and committed. */
    uint64_t firing_msgs = 0;
    for (size_t i = 0; i < b->nsegs; i++)
        firing_msgs += b->segs[i].n;
    for (int r = 0; r < rows; r++) {
        const char *kind = PQgetvalue(res, r, 0);
        if (strcmp(kind, "stats") == 0)
            apply_stats(p, PQgetvalue(res, r, 2), firing_msgs);
        else if (strcmp(kind, "capacity.stats") == 0)
            capacity_stats(p, PQgetvalue(res, r, 2));
        else if (strcmp(kind, "capacity.limit") == 0)
            capacity_limit_alert(p, PQgetvalue(res, r, 2));
        else
            publish_row(p, res, r);
    }
    /* what was applied: the partitions' stored positions, each alert's
     * delay since its occurred_at; then the acks */
    int64_t now_us = td_now_ms() * 1000;
    size_t n = b->n, bytes = 0;
    for (size_t i = 0; i < b->n; i++) {
        item *it = &b->items[i];
        bytes += it->bytes;
        if (it->retry)
            continue;
        if (it->part && !it->skip && it->epoch == it->part->epoch &&
            it->offset + 1 > it->part->known_next)
            it->part->known_next = it->offset + 1;
        for (size_t j = 0; j < it->n_alerts; j++) {
            int64_t d = now_us - it->alerts[j].occurred_at_us;
            td_metric_observe(p->m_alert_delay, d > 0 ? (double)d / 1e6 : 0);
        }
    }
    for (size_t i = 0; i < b->n; i++)
        ack_item(&b->items[i], b->items[i].retry ? TD_ACK_RETRY : TD_ACK_OK);
    td_metric_observe(p->m_batch_latency, (double)(td_mono_ms() - b->sealed_ms) / 1e3);
    l->active = NULL;
    batch_free(b);
    release(p, n, bytes);
    kick(l);
}

/* ---- positions --------------------------------------------------------- */

static void
on_positions(void *arg, const PGresult *res, const char *err)
{
    positions_req *q = arg;
    td_pipeline *p = q->p;
    int64_t *offs = td_malloc((q->n ? q->n : 1) * sizeof(*offs));
    if (p->shutting_down)
        goto out; /* the plugin that asked is gone */
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        td_warn("positions fetch failed", "topic=%s error=\"%s\"", q->topic,
                TD_LOG_VALUE(res ? PQresultErrorMessage(res) : err));
        q->fn(q->arg, -1, q->parts, offs, 0);
        goto out;
    }
    for (size_t i = 0; i < q->n; i++) {
        offs[i] = -1;
        for (int r = 0; r < PQntuples(res); r++)
            if (atoi(PQgetvalue(res, r, 0)) == q->parts[i])
                offs[i] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        /* A new epoch: messages of the old one are never applied. */
        partition *x = part_get(p, q->topic, q->parts[i]);
        x->known_next = offs[i];
        x->epoch++;
    }
    q->fn(q->arg, 0, q->parts, offs, q->n);
out:
    free(offs);
    free(q->topic);
    free(q->parts);
    free(q);
}

static int
positions_fetch(void *arg, const char *stream, const int32_t *partitions,
                size_t n, td_positions_fn fn, void *fn_arg)
{
    td_pipeline *p = arg;
    positions_req *q = td_calloc(1, sizeof(*q));
    q->p = p;
    q->fn = fn;
    q->arg = fn_arg;
    q->topic = td_strdup(stream);
    q->parts = td_malloc((n ? n : 1) * sizeof(*q->parts));
    memcpy(q->parts, partitions, n * sizeof(*partitions));
    q->n = n;
    size_t cap = 16 + n * 12, off = 0;
    char *arr = td_malloc(cap);
    arr[off++] = '{';
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(arr + off, cap - off, "%s%d", i ? "," : "",
                                (int)partitions[i]);
    snprintf(arr + off, cap - off, "}");
    const char *params[3] = {p->cfg->kafka_group, stream, arr};
    td_store_exec(p->tick_store, STMT_POSITIONS, params, on_positions, q);
    free(arr);
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

#define COUNTER(field, name, help) p->field = td_counter(name, help, NULL)

td_pipeline *
td_pipeline_new(const td_config *cfg, struct event_base *base, td_hostctx *hc,
                char *err, size_t errlen)
{
    td_pipeline *p = td_calloc(1, sizeof(*p));
    p->cfg = cfg;
    p->base = base;
    p->hc = hc;
    p->dedup = td_dedup_new(base, cfg->redis_url, err, errlen);
    if (!p->dedup) {
        free(p);
        return NULL;
    }
    p->n_lanes = cfg->lanes > 0 ? cfg->lanes : 1;
    p->lanes = td_calloc((size_t)p->n_lanes, sizeof(*p->lanes));
    for (int i = 0; i < p->n_lanes; i++) {
        lane *l = &p->lanes[i];
        char name[32];
        snprintf(name, sizeof(name), "pipeline-%d", i);
        l->p = p;
        l->idx = i;
        l->store = td_store_new(base, cfg->pg_conninfo, stmts, TD_ARRAY_LEN(stmts), name);
        l->ev_batch = evtimer_new(base, on_batch_timer, l);
        l->ev_retry = evtimer_new(base, on_retry_timer, l);
    }
    p->tick_store = td_store_new(base, cfg->pg_conninfo, stmts, TD_ARRAY_LEN(stmts), "tick");
    p->cap_store = td_store_new(base, cfg->pg_conninfo, stmts, TD_ARRAY_LEN(stmts), "capacity");
    p->cmdb = td_cmdb_new(base, cfg->pg_conninfo, cfg->cmdb_bind_labels);
    p->actor = td_asprintf("triaged@%s", cfg->instance);
    if (cfg->identity_labels && *cfg->identity_labels) {
        char *copy = td_strdup(cfg->identity_labels), *save = NULL;
        for (char *t = strtok_r(copy, " ,", &save); t; t = strtok_r(NULL, " ,", &save)) {
            p->identity_labels = td_realloc(p->identity_labels,
                                            (p->n_identity_labels + 1) * sizeof(char *));
            p->identity_labels[p->n_identity_labels++] = td_strdup(t);
        }
        free(copy);
    }
    td_ticks_conf tc = {
        .tick_store = p->tick_store, .cap_store = p->cap_store,
        .stmt_tick = STMT_TICK, .stmt_capacity = STMT_CAPACITY_TICK, .stmt_sla = STMT_SLA_TICK,
        .actor = p->actor, .publish = publish_row, .arg = p,
    };
    p->ticks = td_ticks_new(cfg, base, &tc);

    COUNTER(m_received, "messages_received", "Messages submitted by inputs");
    COUNTER(m_alerts, "alerts_received", "Alerts decoded from valid messages");
    COUNTER(m_batches, "batches", "Batches applied or attempted");
    COUNTER(m_batch_msgs, "batch_messages", "Messages in batches (divide by batches for the mean size)");
    COUNTER(m_segments, "segments", "Per-fingerprint segments after folding batches");
    COUNTER(m_dups, "duplicates", "Firing messages for alerts already firing");
    COUNTER(m_new, "alerts_new", "New alerts (fingerprints never seen)");
    COUNTER(m_refired, "alerts_refired", "Resolved alerts that fired again");
    COUNTER(m_resolved, "alerts_resolved", "Alerts resolved");
    COUNTER(m_stale, "alerts_stale", "Out-of-order messages that did not move state");
    COUNTER(m_unknown_resolves, "resolves_unknown", "Resolves for fingerprints never seen");
    COUNTER(m_opened, "incidents_opened", "Incidents opened");
    COUNTER(m_reopened, "incidents_reopened", "Incidents reopened");
    COUNTER(m_inc_resolved, "incidents_resolved", "Incidents resolved");
    COUNTER(m_inc_closed, "incidents_closed", "Incidents closed");
    COUNTER(m_retries, "batch_retries", "Batch attempts that failed and were retried");
    COUNTER(m_fenced, "partitions_fenced", "Partitions whose stored offset moved under us");
    COUNTER(m_events, "events_published", "Incident and alert events given to outputs");
    COUNTER(m_samples, "capacity_samples_received", "Capacity samples decoded from valid messages");
    COUNTER(m_samples_stored, "capacity_samples_stored", "Capacity samples written to PostgreSQL");
    COUNTER(m_samples_dup, "capacity_samples_duplicate",
            "Capacity samples already stored (same ci, metric and ts): ignored");
    COUNTER(m_samples_unknown_ci, "capacity_samples_unknown_ci",
            "Capacity samples whose ci matches no CI: not stored, logged");
    static const char *hint_labels[3] = {"hint=\"dup\"", "hint=\"change\"", "hint=\"new\""};
    for (int i = 0; i < 3; i++)
        p->m_hint[i] = td_counter("dedup_hints",
                                  "Redis's verdict per fingerprint of a batch (PostgreSQL decides)",
                                  hint_labels[i]);
    static const char *seal_labels[SEAL_REASONS] = {
        "reason=\"full\"", "reason=\"timer\"", "reason=\"idle\"", "reason=\"commit\"",
        "reason=\"stop\""};
    for (int i = 0; i < SEAL_REASONS; i++)
        p->m_sealed[i] = td_counter("batches_sealed",
                                    "Batches closed to new messages, by why: batch_size "
                                    "reached, batch_time passed, the lane idle (batch_time "
                                    "0), the previous batch committed, shutdown",
                                    seal_labels[i]);
    COUNTER(m_hints_skipped, "dedup_batches_skipped",
            "Batches not sent to Redis because it lagged 8 batches behind");
    p->m_queue = td_gauge("queue_messages", "Messages taken and not yet acked", NULL);
    p->m_queue_bytes = td_gauge("queue_bytes",
                                "Memory held by the decoded alerts and samples of the "
                                "queued messages", NULL);
    p->m_full_bytes = td_counter("queue_full_bytes",
                                 "Times the inputs were paused because the queue reached "
                                 "queue_max_bytes", NULL);
    p->m_batch_latency = td_histogram("batch_latency_seconds",
                                      "From a batch sealed to committed", NULL);
    p->m_alert_delay = td_histogram("alert_delay_seconds",
                                    "From an alert message's occurred_at (its source's clock) "
                                    "to the commit of its batch (ours), per message", NULL);
    td_host_set_sink(hc, sink, positions_fetch, p);
    return p;
}

void
td_pipeline_stop_intake(td_pipeline *p)
{
    p->intake_stopped = true;
    for (int i = 0; i < p->n_lanes; i++)
        seal(&p->lanes[i], SEAL_STOP);
}

size_t
td_pipeline_in_flight(const td_pipeline *p)
{
    return p->queued;
}

void
td_pipeline_health(const td_pipeline *p, bool *redis, bool *postgres, bool *taking)
{
    *redis = td_dedup_connected(p->dedup);
    *postgres = true;
    for (int i = 0; i < p->n_lanes; i++)
        *postgres = *postgres && td_store_connected(p->lanes[i].store);
    *taking = !p->intake_stopped && !p->full;
}

void
td_pipeline_reload(td_pipeline *p, const td_config *cfg)
{
    p->cfg = cfg;
    td_ticks_reload(p->ticks, cfg);
    td_cmdb_refresh(p->cmdb, cfg->cmdb_bind_labels);
}


void
td_pipeline_free(td_pipeline *p)
{
    if (!p)
        return;
    /* Whatever is left was not applied: inputs replay it (Kafka, from the
     * offsets in PostgreSQL) or the client sees no answer (HTTP). The plugins
     * are gone by now, so there is nobody to ack. */
    p->shutting_down = true;
    for (int i = 0; i < p->n_lanes; i++) {
        lane *l = &p->lanes[i];
        batch *b = l->active;
        l->active = NULL;
        if (b)
            batch_free(b);
        while ((b = l->sealed_head)) {
            l->sealed_head = b->next;
            batch_free(b);
        }
        if (l->open)
            batch_free(l->open);
    }
    td_dedup_free(p->dedup); /* cancels the hint requests: */
    while (p->hints_pending)
        hints_req_free(p->hints_pending);
    for (int i = 0; i < p->n_lanes; i++) {
        td_store_free(p->lanes[i].store); /* their callbacks see no batch */
        event_free(p->lanes[i].ev_batch);
        event_free(p->lanes[i].ev_retry);
    }
    free(p->lanes);
    td_store_free(p->tick_store); /* their callbacks still see the ticks */
    td_store_free(p->cap_store);
    td_ticks_free(p->ticks);
    td_cmdb_free(p->cmdb);
    for (partition *x = p->parts, *n; x; x = n) {
        n = x->next;
        free(x->topic);
        free(x);
    }
    for (size_t i = 0; i < p->n_identity_labels; i++)
        free(p->identity_labels[i]);
    free(p->identity_labels);
    free(p->actor);
    free(p);
}

/* batcher.h — fold a batch of alerts into per-fingerprint segments.
 *
 * An alert storm is mostly the same few fingerprints again and again. Before
 * anything leaves the process, a batch is folded: alerts are grouped by
 * fingerprint, ordered by occurred_at (arrival order breaks ties), and runs
 * of messages with the same status and severity become one segment that
 * carries a count. Redis and PostgreSQL then see one row per segment, not
 * one per message. Pure code: no I/O, unit-tested. */
#ifndef TD_BATCHER_H
#define TD_BATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "internal/alert.h"

typedef struct td_segment {
    const td_alert *rep;  /* the segment's newest alert: its fields are used */
    uint64_t fp;
    bool firing;
    td_severity severity;
    uint64_t n;           /* firing messages folded in (0 when resolved) */
    int64_t first_us, last_us;
    bool fp_first;        /* first segment of its fingerprint */
    bool fp_single;       /* its fingerprint has only this segment */
} td_segment;

/* Fold `n` alerts (borrowed; must outlive the segments) into *out, sorted by
 * fingerprint then time. Returns the number of segments; free(*out). */
size_t td_fold(const td_alert *const *alerts, size_t n, td_segment **out);

#endif

/* batcher.c — folding a batch into segments (see batcher.h). */
#include "internal/batcher.h"

#include <stdlib.h>

#include "internal/util.h"

/* The sort keys are copied in: comparing through the alert pointers was a
 * cache miss per comparison (3 % of the daemon's CPU in a storm). */
typedef struct ref {
    uint64_t fp;
    int64_t t;
    size_t seq; /* arrival order, for a stable sort */
    const td_alert *a;
} ref;

static int
ref_cmp(const void *x, const void *y)
{
    const ref *a = x, *b = y;
    if (a->fp != b->fp)
        return a->fp < b->fp ? -1 : 1;
    if (a->t != b->t)
        return a->t < b->t ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

size_t
td_fold(const td_alert *const *alerts, size_t n, td_segment **out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    ref *r = td_malloc(n * sizeof(*r));
    for (size_t i = 0; i < n; i++)
        r[i] = (ref){alerts[i]->fp, alerts[i]->occurred_at_us, i, alerts[i]};
    qsort(r, n, sizeof(*r), ref_cmp);

    td_segment *seg = td_malloc(n * sizeof(*seg));
    size_t ns = 0, fp_start = 0;
    for (size_t i = 0; i < n; i++) {
        const td_alert *a = r[i].a;
        td_segment *last = ns ? &seg[ns - 1] : NULL;
        if (last && last->fp == a->fp && last->firing == a->firing &&
            last->severity == a->severity) {
            last->rep = a;
            last->n += a->firing;
            last->last_us = a->occurred_at_us;
            continue;
        }
        if (!last || last->fp != a->fp) {
            /* Close the previous fingerprint's run of segments. */
            if (last)
                seg[fp_start].fp_single = (ns - fp_start == 1);
            fp_start = ns;
        }
        bool first = (ns == fp_start);
        seg[ns++] = (td_segment){
            .rep = a,
            .fp = a->fp,
            .firing = a->firing,
            .severity = a->severity,
            .n = a->firing,
            .first_us = a->occurred_at_us,
            .last_us = a->occurred_at_us,
            .fp_first = first,
        };
    }
    seg[fp_start].fp_single = (ns - fp_start == 1);
    free(r);
    *out = seg;
    return ns;
}

/* pipeline.c — wires the stages together (see pipeline.h). */
#include "internal/pipeline.h"

#include <stdlib.h>

#include "internal/log.h"
#include "internal/util.h"

struct td_pipeline {
    const td_config *cfg;
    struct event_base *base;
    td_hostctx *hc;
    size_t in_flight;
    int intake_stopped;
};

td_pipeline *
td_pipeline_new(const td_config *cfg, struct event_base *base, td_hostctx *hc,
                char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    td_pipeline *p = td_calloc(1, sizeof(*p));
    p->cfg = cfg;
    p->base = base;
    p->hc = hc;
    return p;
}

void
td_pipeline_stop_intake(td_pipeline *p)
{
    p->intake_stopped = 1;
}

size_t
td_pipeline_in_flight(const td_pipeline *p)
{
    return p->in_flight;
}

void
td_pipeline_reload(td_pipeline *p, const td_config *cfg)
{
    p->cfg = cfg;
}

void
td_pipeline_free(td_pipeline *p)
{
    free(p);
}

/* api_capacity.c — capacity reads over HTTP: one series' trend and the
 * ranked risks (sql/005_capacity.sql: api_capacity_trend, api_capacity_risks),
 * on the API's PostgreSQL connection. Samples come in through api_intake.c
 * like alerts. */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/http_internal.h"
#include "internal/http_uri.h"

/* A duration query parameter (30d, 12h ...) as an interval text, or the
 * default; -1 when it was answered 400. */
static int
interval_param(td_req *r, struct evkeyvalq *kv, const char *name, int64_t def_ms,
               char out[48])
{
    const char *v = td_api_nonempty(kv, name);
    int64_t ms = def_ms;
    if (v && (td_parse_duration(v, &ms) != TD_OK || ms <= 0)) {
        td_req_error(r, 400, "bad_request", "%s must be a duration such as 30d or 12h", name);
        return -1;
    }
    snprintf(out, 48, "%lld milliseconds", (long long)ms);
    return 0;
}

static void
on_result(void *arg, const PGresult *res, const char *err)
{
    td_api_reply_one(arg, res, err, "CI");
}

static void
thresholds(const td_config *cfg, char pts[16], char r2[16])
{
    snprintf(pts, 16, "%d", cfg->capacity_min_points);
    snprintf(r2, 16, "%.2f", cfg->capacity_min_r2_pct / 100.0);
}

void
td_api_capacity_trend_get(td_req *r, const char *arg)
{
    struct evkeyvalq kv;
    char window[48], horizon[48], pts[16], r2[16];
    (void)arg;
    if (td_api_parse_query(r, &kv) != 0)
        return;
    const char *ci = td_api_nonempty(&kv, "ci"), *metric = td_api_nonempty(&kv, "metric");
    if (!ci || !metric) {
        td_req_error(r, 400, "bad_request", "ci and metric are required");
    } else if (interval_param(r, &kv, "window", r->h->cfg->capacity_window_ms, window) == 0 &&
               interval_param(r, &kv, "horizon", r->h->cfg->capacity_horizon_ms, horizon) == 0 &&
               td_api_busy(r) == 0) {
        thresholds(r->h->cfg, pts, r2);
        const char *params[6] = {ci, metric, window, horizon, pts, r2};
        td_req_defer(r);
        td_store_exec(r->h->api, TD_API_STMT_CAP_TREND, params, on_result, r);
    }
    evhttp_clear_headers(&kv);
}

void
td_api_capacity_risks_get(td_req *r, const char *arg)
{
    struct evkeyvalq kv;
    char horizon[48], limit[16], pts[16], r2[16];
    (void)arg;
    if (td_api_parse_query(r, &kv) != 0)
        return;
    const char *l = td_api_nonempty(&kv, "limit");
    long n = 100;
    if (l && td_api_limit_parse(l, 10000, &n) != 0) {
        td_req_error(r, 400, "bad_request", "limit must be 1..10000");
        evhttp_clear_headers(&kv);
        return;
    }
    snprintf(limit, sizeof(limit), "%ld", n);
    if (interval_param(r, &kv, "horizon", r->h->cfg->capacity_horizon_ms, horizon) == 0 &&
        td_api_busy(r) == 0) {
        thresholds(r->h->cfg, pts, r2);
        const char *params[4] = {horizon, limit, pts, r2};
        td_req_defer(r);
        td_store_exec(r->h->api, TD_API_STMT_CAP_RISKS, params, on_result, r);
    }
    evhttp_clear_headers(&kv);
}

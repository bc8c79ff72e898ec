/* http_internal.h — what http.c shares with api_intake.c, api_incidents.c
 * and feed.c. Not for the rest of the daemon.
 *
 * A request is a td_req: created by http.c for every request that passed
 * routing, auth and the rate limit, handed to the route's handler, and
 * freed by td_req_reply() (or td_req_error()). A handler that answers later
 * (after an ack, after a query) keeps it; if the client goes away first the
 * td_req is marked gone and td_req_reply() only frees it. */
#ifndef TD_HTTP_INTERNAL_H
#define TD_HTTP_INTERNAL_H

#include <event2/http.h>
#include <jansson.h>
#include <stdbool.h>

#include "internal/auth.h"
#include "internal/config.h"
#include "internal/host.h"
#include "internal/http.h"
#include "internal/http_tls.h"
#include "internal/log.h"
#include "internal/metrics.h"
#include "internal/pipeline.h"
#include "internal/store.h"

typedef struct td_feed td_feed;

typedef struct td_req td_req;
struct td_req {
    td_http *h;
    struct evhttp_request *req; /* NULL once the client is gone */
    const char *route;          /* for metrics */
    char *actor;                /* the token's name, or "anonymous" */
    const char *body;           /* the request body: body_len bytes, not NUL-terminated */
    size_t body_len;
    int64_t t0_us;
    td_req *prev, *next;        /* h->pending */
    void *ctx;                  /* the handler's */
};

struct td_http {
    const td_config *cfg;
    struct event_base *base;
    td_hostctx *hc;
    td_pipeline *pipeline;
    struct evhttp *http;
    td_tokens *tokens;
    td_store *api; /* reads and actions: never queued behind ingest */
    td_feed *feed;
    bool stopping;
    bool full; /* the pipeline said FULL: intake answers 503 until resume */
    td_req *pending;
    struct td_bucket_entry *buckets;
    size_t n_buckets;
    td_metric *m_intake_alerts, *m_unauthorized, *m_forbidden, *m_limited,
        *m_intake_busy, *m_ack_latency, *m_accept_errors;
    /* accept() failures (EMFILE, ENFILE, ENOMEM): every listener pauses for
     * a second instead of spinning on a connection it cannot take. */
    struct evconnlistener **listeners;
    size_t n_listeners;
    struct event *ev_accept_resume;
    td_ratelimit rl_accept;
    SSL_CTX *tls; /* NULL: plain HTTP */
    /* Failed authentications per client address: a direct-mapped table of
     * TD_AUTH_FAIL_SLOTS buckets (a new address takes over its slot), so
     * memory is fixed whatever the number of addresses. */
    struct td_auth_fail *auth_fail;
    td_metric *m_auth_throttled;
};

#define TD_AUTH_FAIL_SLOTS 1024

/* Answer with a JSON body (borrowed) and free r. */
void td_req_reply(td_req *r, int code, const char *json, size_t len);
void td_req_reply_json(td_req *r, int code, json_t *body); /* steals body */
/* {"error":code,"message":...} and free r. */
void td_req_error(td_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Extra response header before the reply. */
void td_req_header(td_req *r, const char *name, const char *value);
/* Query parameter of the request URI, or NULL (copy it: borrowed from kv). */
const char *td_req_query(td_req *r, struct evkeyvalq *kv, const char *name);
bool td_req_gone(const td_req *r);
/* The handler answered on its own (a stream): count it and free r. */
void td_req_detach(td_req *r, int code);
/* Wait for an asynchronous answer: the client may go away meanwhile. */
void td_req_defer(td_req *r);

/* api_intake.c */
void td_api_alerts_post(td_req *r, const char *arg);
void td_api_alertmanager_post(td_req *r, const char *arg);
void td_api_pagerduty_post(td_req *r, const char *arg);
/* api_incidents.c */
enum { TD_API_STMT_INCIDENTS, TD_API_STMT_INCIDENT, TD_API_STMT_ACTION,
       TD_API_STMT_ALERTS, TD_API_STMT_PD_ACK, TD_API_STMT_PING,
       TD_API_STMT_CAP_TREND, TD_API_STMT_CAP_RISKS, TD_API_STMT_MAINT_LIST,
       TD_API_STMT_MAINT_ADD, TD_API_STMT_MAINT_REMOVE, TD_API_STMT_SLA, TD_API_NSTMT };
extern const td_store_stmt td_api_stmts[TD_API_NSTMT];
void td_api_incidents_get(td_req *r, const char *arg);
void td_api_incident_get(td_req *r, const char *arg);
void td_api_incident_action(td_req *r, const char *arg);
void td_api_alerts_get(td_req *r, const char *arg);
/* Shared by the read APIs: 503 (answered) when the API connection is down
 * or too many statements wait, else 0; a result's single JSON value (JSON
 * null for no row), or NULL when it answered the error (SQLSTATE 22xxx: 400);
 * a non-empty query parameter; the request's query string parsed (answers
 * 400 and returns -1 when it cannot be). */
int td_api_busy(td_req *r);
json_t *td_api_result_json(td_req *r, const PGresult *res, const char *err);
const char *td_api_nonempty(struct evkeyvalq *kv, const char *name);
/* Answer with a result's single JSON value: 200, or 404 "no such WHAT" for
 * no row; frees r (also when the client is gone). */
void td_api_reply_one(td_req *r, const PGresult *res, const char *err, const char *what);
int td_api_parse_query(td_req *r, struct evkeyvalq *kv);
/* Acknowledge the open incident of a PagerDuty alert, then call done. */
void td_api_pd_acknowledge(td_http *h, const char *fingerprint, const char *actor,
                           void (*done)(void *arg, const char *err), void *arg);
/* Publish the "events" array of an action's result to outputs and feed. */
void td_api_publish_events(td_http *h, json_t *events);

/* api_maintenance.c */
void td_api_maintenance_get(td_req *r, const char *arg);
void td_api_maintenance_post(td_req *r, const char *arg);
void td_api_maintenance_delete(td_req *r, const char *arg);

/* api_capacity.c */
void td_api_capacity_samples_post(td_req *r, const char *arg);
void td_api_capacity_trend_get(td_req *r, const char *arg);
void td_api_capacity_risks_get(td_req *r, const char *arg);

/* api_sla.c: GET /api/v1/services/{name}/availability */
void td_api_service_get(td_req *r, const char *arg);

/* feed.c */
td_feed *td_feed_new(struct event_base *base, const td_config *cfg);
void td_feed_publish(td_feed *f, const td_event *ev);
void td_api_feed_get(td_req *r, const char *arg);
void td_feed_close_all(td_feed *f);
void td_feed_reload(td_feed *f, const td_config *cfg);
size_t td_feed_clients(const td_feed *f);
void td_feed_free(td_feed *f);

#endif

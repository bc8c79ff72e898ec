/* http.c — the HTTP server: listening, routing, auth, limits, errors.
 *
 * The design is simple: libevent's evhttp owns the connections (keep-alive,
 * header and body limits, the inactivity timeout) on the daemon's one loop.
 * Every request goes through one generic callback that, in order: finds the
 * route (404, or 405 with Allow), checks the body size (413) and content
 * type (415), authenticates the bearer token against the hashed tokens file
 * (401 without or with an unknown token, 403 with too small a scope), takes
 * one token from the token's bucket (429 with Retry-After), and hands a
 * td_req to the route's handler. Every error is {"error","message"} with its
 * status. Handlers answer at once (health, metrics) or later: intake after
 * the pipeline's ack (api_intake.c), reads and actions after their query on
 * the API's own PostgreSQL connection (api_incidents.c), the feed never
 * (feed.c streams). Nothing here blocks the loop. With [http] tls_cert and
 * tls_key every accepted socket is wrapped in TLS (http_tls.c, evhttp's
 * bevcb) before any of this sees it.
 *
 * Limits: libevent 2.1 answers a body beyond its own limit with an HTML 413
 * and no hook, so its limit is set above max_body (max_body + max(max_body,
 * 64 KiB)) and this file answers the JSON 413 for anything over max_body;
 * only bodies beyond libevent's higher limit get libevent's HTML 413. */
#include "internal/http_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "internal/http_uri.h"
#include "internal/log.h"
#include "internal/util.h"

typedef struct td_bucket_entry {
    char *name;
    td_bucket bucket;
} td_bucket_entry;

enum { AUTH_NONE, AUTH_READ, AUTH_WRITE };

/* What each route of td_routes (http_uri.c: method, path, metrics label)
 * needs; indexed by the same TD_ROUTE_* ids. */
typedef struct route {
    int auth;             /* AUTH_NONE: open; else the scope needed */
    bool json_body;       /* POST with an application/json body */
    bool routing_key;     /* PagerDuty: routing_key may stand for the token */
    void (*fn)(td_req *r, const char *arg);
} route;

static void api_healthz(td_req *r, const char *arg);
static void api_readyz(td_req *r, const char *arg);
static void api_metrics(td_req *r, const char *arg);

static const route routes[TD_ROUTE_N] = {
    [TD_ROUTE_ALERTS_POST] = {AUTH_WRITE, true, false, td_api_alerts_post},
    [TD_ROUTE_ALERTS_GET] = {AUTH_READ, false, false, td_api_alerts_get},
    [TD_ROUTE_ALERTMANAGER] = {AUTH_WRITE, true, false, td_api_alertmanager_post},
    [TD_ROUTE_PAGERDUTY] = {AUTH_WRITE, true, true, td_api_pagerduty_post},
    [TD_ROUTE_INCIDENTS_GET] = {AUTH_READ, false, false, td_api_incidents_get},
    [TD_ROUTE_INCIDENT_GET] = {AUTH_READ, false, false, td_api_incident_get},
    [TD_ROUTE_INCIDENT_ACTION] = {AUTH_WRITE, true, false, td_api_incident_action},
    [TD_ROUTE_CAPACITY_SAMPLES] = {AUTH_WRITE, true, false, td_api_capacity_samples_post},
    [TD_ROUTE_CAPACITY_TREND] = {AUTH_READ, false, false, td_api_capacity_trend_get},
    [TD_ROUTE_CAPACITY_RISKS] = {AUTH_READ, false, false, td_api_capacity_risks_get},
    [TD_ROUTE_SERVICE] = {AUTH_READ, false, false, td_api_service_get},
    [TD_ROUTE_MAINTENANCE_GET] = {AUTH_READ, false, false, td_api_maintenance_get},
    [TD_ROUTE_MAINTENANCE_POST] = {AUTH_WRITE, true, false, td_api_maintenance_post},
    [TD_ROUTE_MAINTENANCE_DELETE] = {AUTH_WRITE, false, false, td_api_maintenance_delete},
    [TD_ROUTE_FEED] = {AUTH_READ, false, false, td_api_feed_get},
    [TD_ROUTE_METRICS] = {AUTH_READ, false, false, api_metrics},
    [TD_ROUTE_HEALTHZ] = {AUTH_NONE, false, false, api_healthz},
    [TD_ROUTE_READYZ] = {AUTH_NONE, false, false, api_readyz},
};

static const char *
reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* ---- requests ---------------------------------------------------------- */

static void
unlink_req(td_req *r)
{
    td_http *h = r->h;
    if (r->prev)
        r->prev->next = r->next;
    else if (h->pending == r)
        h->pending = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void
req_free(td_req *r)
{
    unlink_req(r);
    free(r->actor);
    free(r);
}

static void
on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    td_req *r = arg;
    (void)evcon;
    /* The client left before the answer. A request libevent detached from
     * the failed connection is ours to free; one still attached (the server
     * is being freed) goes with its connection. Never touch it again. */
    if (r->req && !evhttp_request_get_connection(r->req))
        evhttp_request_free(r->req);
    r->req = NULL;
}

void
td_req_defer(td_req *r)
{
    td_http *h = r->h;
    if (r->req)
        evhttp_connection_set_closecb(evhttp_request_get_connection(r->req),
                                      on_conn_close, r);
    r->next = h->pending;
    if (h->pending)
        h->pending->prev = r;
    h->pending = r;
}

bool
td_req_gone(const td_req *r)
{
    return r->req == NULL;
}

void
td_req_header(td_req *r, const char *name, const char *value)
{
    if (r->req)
        evhttp_add_header(evhttp_request_get_output_headers(r->req), name, value);
}

static void
count_reply(td_req *r, int code)
{
    char labels[128];
    snprintf(labels, sizeof(labels), "route=\"%s\",code=\"%d\"", r->route, code);
    td_metric_add(td_counter("http_requests", "HTTP requests answered, by route and status",
                             labels), 1);
    snprintf(labels, sizeof(labels), "route=\"%s\"", r->route);
    td_metric_observe(td_histogram("http_request_seconds",
                                   "HTTP request time from received to answered, by route",
                                   labels),
                      (double)(td_mono_ms() * 1000 - r->t0_us) / 1e6);
}

void
td_req_reply(td_req *r, int code, const char *json, size_t len)
{
    if (r->req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);
        if (r->prev || r->next || r->h->pending == r)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        struct evbuffer *b = evbuffer_new();
        if (!b) {
            fprintf(stderr, "triaged: out of memory\n");
            abort();
        }
        evbuffer_add(b, json, len);
        evbuffer_add(b, "\n", 1);
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type",
                          "application/json");
        evhttp_send_reply(r->req, code, reason_phrase(code), b);
        evbuffer_free(b);
        count_reply(r, code);
    } else {
        td_metric_add(td_counter("http_clients_gone",
                                 "Requests whose client left before the answer", NULL),
                      1);
    }
    req_free(r);
}

void
td_req_detach(td_req *r, int code)
{
    count_reply(r, code);
    req_free(r);
}

void
td_req_reply_json(td_req *r, int code, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!s) {
        fprintf(stderr, "triaged: out of memory\n");
        abort();
    }
    td_req_reply(r, code, s, strlen(s));
    free(s);
}

void
td_req_error(td_req *r, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(code));
    /* msg may hold bytes from the client: json_string refuses bad UTF-8 */
    json_t *m = json_string(msg);
    json_object_set_new(o, "message", m ? m : json_string("(not UTF-8)"));
    td_req_reply_json(r, status, o);
}

const char *
td_req_query(td_req *r, struct evkeyvalq *kv, const char *name)
{
    (void)r;
    return evhttp_find_header(kv, name);
}

/* ---- auth and limits --------------------------------------------------- */

static td_bucket *
bucket_of(td_http *h, const char *name)
{
    for (size_t i = 0; i < h->n_buckets; i++)
        if (strcmp(h->buckets[i].name, name) == 0)
            return &h->buckets[i].bucket;
    h->buckets = td_realloc(h->buckets, (h->n_buckets + 1) * sizeof(*h->buckets));
    td_bucket_entry *e = &h->buckets[h->n_buckets++];
    e->name = td_strdup(name);
    memset(&e->bucket, 0, sizeof(e->bucket));
    return &e->bucket;
}

/* ---- failed authentications per client address ------------------------ */

typedef struct td_auth_fail {
    char addr[48]; /* "" : free */
    td_bucket bucket;
    int64_t blocked_until_ms;
} td_auth_fail;

static td_auth_fail *
auth_fail_slot(td_http *h, const char *addr)
{
    uint64_t x = td_fnv1a(TD_FNV1A_OFFSET, addr);
    td_auth_fail *f = &h->auth_fail[x % TD_AUTH_FAIL_SLOTS];
    if (strcmp(f->addr, addr) != 0) {
        memset(f, 0, sizeof(*f));
        snprintf(f->addr, sizeof(f->addr), "%s", addr);
    }
    return f;
}

static const char *
peer_of(td_req *r)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(r->req), &addr, &port);
    return addr ? addr : "?";
}

/* 0: go on; -1: this address presented too many unknown tokens lately and
 * was answered 429 (before any hashing or body parsing). */
static int
auth_fail_check(td_req *r)
{
    td_http *h = r->h;
    int limit = h->cfg->http_auth_fail_limit;
    if (limit <= 0)
        return 0;
    td_auth_fail *f = auth_fail_slot(h, peer_of(r));
    int64_t now = td_mono_ms();
    if (f->blocked_until_ms <= now)
        return 0;
    char s[24];
    snprintf(s, sizeof(s), "%lld", (long long)((f->blocked_until_ms - now + 999) / 1000));
    td_metric_add(h->m_auth_throttled, 1);
    td_req_header(r, "Retry-After", s);
    td_req_error(r, 429, "too_many_failures",
                 "more than %d unknown tokens a second from this address", limit);
    return -1;
}

/* An unknown token from r's address: take from its bucket; an empty one
 * blocks the address until a token is back. */
static void
auth_fail_count(td_req *r)
{
    td_http *h = r->h;
    int limit = h->cfg->http_auth_fail_limit, retry = 1;
    if (limit <= 0)
        return;
    td_auth_fail *f = auth_fail_slot(h, peer_of(r));
    int64_t now = td_mono_ms();
    if (!td_bucket_take(&f->bucket, limit, 5.0 * limit, now, &retry))
        f->blocked_until_ms = now + (1000 + limit - 1) / limit; /* one token back */
}

/* The bearer token of the request, or NULL. */
static const char *
bearer(struct evhttp_request *req, size_t *len)
{
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(req),
                                       "Authorization");
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return NULL;
    a += 7;
    while (*a == ' ')
        a++;
    *len = strlen(a);
    while (*len && a[*len - 1] == ' ')
        (*len)--;
    return *len ? a : NULL;
}

/* PagerDuty clients send no Authorization header: their routing_key is the
 * secret, so it is looked up like a bearer token. */
static char *
routing_key_of(const char *body, size_t len)
{
    json_t *o = json_loadb(body, len, 0, NULL);
    char *k = NULL;
    if (o && json_is_string(json_object_get(o, "routing_key")))
        k = td_strdup(json_string_value(json_object_get(o, "routing_key")));
    json_decref(o);
    return k;
}

/* 0: allowed (r->actor set); -1: answered with an error. */
static int
authorize(td_req *r, const route *rt)
{
    td_http *h = r->h;
    const td_token *tok = NULL;
    size_t len = 0;
    if (rt->auth != AUTH_NONE && auth_fail_check(r) != 0)
        return -1;
    const char *secret = bearer(r->req, &len);
    char *rk = NULL;
    if (!secret && rt->routing_key && r->body_len) {
        rk = routing_key_of(r->body, r->body_len);
        if (rk) {
            secret = rk;
            len = strlen(rk);
        }
    }
    if (secret)
        tok = td_tokens_find(h->tokens, secret, len);
    free(rk);
    if (rt->auth == AUTH_NONE) {
        r->actor = td_strdup(tok ? tok->name : "anonymous");
        return 0;
    }
    bool open = rt->auth == AUTH_READ && h->cfg->http_open_reads;
    if (!tok && !(open && !secret)) {
        td_metric_add(h->m_unauthorized, 1);
        if (secret)
            auth_fail_count(r);
        td_req_header(r, "WWW-Authenticate", "Bearer realm=\"triaged\"");
        td_req_error(r, 401, "unauthorized",
                     secret ? "the bearer token is not known"
                            : "a bearer token is required (Authorization: Bearer TOKEN)");
        return -1;
    }
    td_scope need = rt->auth == AUTH_READ ? TD_SCOPE_READ : TD_SCOPE_WRITE;
    if (tok && tok->scope < need) {
        td_metric_add(h->m_forbidden, 1);
        td_req_error(r, 403, "forbidden", "token '%s' has scope %s; this needs %s",
                     tok->name, td_scope_name(tok->scope), td_scope_name(need));
        return -1;
    }
    r->actor = td_strdup(tok ? tok->name : "anonymous");
    int retry = 1;
    if (!td_bucket_take(bucket_of(h, r->actor), h->cfg->http_rate_limit,
                        h->cfg->http_rate_burst, td_mono_ms(), &retry)) {
        char s[16];
        snprintf(s, sizeof(s), "%d", retry);
        td_metric_add(h->m_limited, 1);
        td_req_header(r, "Retry-After", s);
        td_req_error(r, 429, "rate_limited", "more than %d requests a second for '%s'",
                     h->cfg->http_rate_limit, r->actor);
        return -1;
    }
    return 0;
}

static bool
is_json_type(const char *ct)
{
    if (!ct)
        return false;
    size_t n = strcspn(ct, "; \t");
    return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

/* ---- the generic callback ---------------------------------------------- */

static void
on_request(struct evhttp_request *req, void *arg)
{
    td_http *h = arg;
    td_req *r = td_calloc(1, sizeof(*r));
    r->h = h;
    r->req = req;
    r->route = "unknown";
    r->t0_us = td_mono_ms() * 1000;

    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (!path || !*path) {
        td_req_error(r, 400, "bad_request", "cannot parse the request target");
        return;
    }
    const char *rest = NULL;
    char allow[32];
    int id = td_route_find((int)evhttp_request_get_command(req), path, &rest, allow,
                           sizeof(allow));
    if (id < 0) {
        if (allow[0]) {
            td_req_header(r, "Allow", allow);
            td_req_error(r, 405, "method_not_allowed", "%.200s allows %s", path, allow);
        } else {
            td_req_error(r, 404, "not_found", "no such path: %.200s", path);
        }
        return;
    }
    const route *rt = &routes[id];
    r->route = td_routes[id].name;

    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    r->body_len = evbuffer_get_length(in);
    if (r->body_len > (size_t)h->cfg->http_max_body) {
        td_req_error(r, 413, "too_large", "the body of %zu bytes exceeds max_body (%lld)",
                     r->body_len, (long long)h->cfg->http_max_body);
        return;
    }
    r->body = r->body_len ? (const char *)evbuffer_pullup(in, -1) : "";
    /* An action without a body (acknowledge) needs no content type. */
    bool optional = rt->fn == td_api_incident_action && r->body_len == 0;
    if (rt->json_body && !optional &&
        !is_json_type(evhttp_find_header(evhttp_request_get_input_headers(req),
                                         "Content-Type"))) {
        td_req_error(r, 415, "unsupported_media_type",
                     "the body must be sent as Content-Type: application/json");
        return;
    }
    if (authorize(r, rt) != 0)
        return;
    rt->fn(r, rest);
}

/* ---- health and metrics ------------------------------------------------ */

static void
api_healthz(td_req *r, const char *arg)
{
    (void)arg;
    static const char ok[] = "{\"status\":\"ok\"}";
    td_req_reply(r, 200, ok, sizeof(ok) - 1);
}

static void
api_readyz(td_req *r, const char *arg)
{
    (void)arg;
    td_http *h = r->h;
    bool redis = false, pg = false, taking = false;
    if (h->pipeline)
        td_pipeline_health(h->pipeline, &redis, &pg, &taking);
    bool api = td_store_connected(h->api);
    taking = taking && !h->stopping && !h->full;
    bool ready = redis && pg && api && taking;
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(ready ? "ready" : "not_ready"));
    json_t *c = json_object();
    json_object_set_new(c, "redis", json_boolean(redis));
    json_object_set_new(c, "postgres", json_boolean(pg));
    json_object_set_new(c, "postgres_api", json_boolean(api));
    json_object_set_new(c, "inputs", json_boolean(taking));
    json_object_set_new(o, "checks", c);
    td_req_reply_json(r, ready ? 200 : 503, o);
}

static void
api_metrics(td_req *r, const char *arg)
{
    (void)arg;
    td_http *h = r->h;
    td_metric_set(td_gauge("http_feed_clients", "Live feed (SSE) clients connected", NULL),
                  (double)td_feed_clients(h->feed));
    td_metric_set(td_gauge("http_tokens", "API tokens loaded", NULL),
                  (double)td_tokens_count(h->tokens));
    char *text = td_metrics_render();
    if (r->req) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, text, strlen(text));
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(r->req, 200, "OK", b);
        evbuffer_free(b);
        count_reply(r, 200);
    }
    free(text);
    req_free(r);
}

/* ---- lifecycle --------------------------------------------------------- */

static void
on_event_hook(void *arg, const td_event *ev)
{
    td_http *h = arg;
    td_feed_publish(h->feed, ev);
}

static void
on_resume_hook(void *arg)
{
    td_http *h = arg;
    h->full = false;
}

/* Whoever can write the tokens file can give themselves a token; whoever
 * can read the TLS key can impersonate the server. Say so (not refused:
 * the administrator may know better, e.g. a group of operators). */
static void
warn_loose(const char *path, const char *what, mode_t bad)
{
    struct stat st;
    if (path && stat(path, &st) == 0 && (st.st_mode & bad))
        td_warn("http: file permissions too open", "file=%s what=\"%s\" mode=%04o",
                path, what, (unsigned)(st.st_mode & 07777));
}

static int
load_tokens(td_http *h, const td_config *cfg, char *err, size_t errlen)
{
    warn_loose(cfg->http_tokens, "tokens: writable by group or others", S_IWGRP | S_IWOTH);
    td_errors errs = {0};
    td_tokens *t = NULL;
    if (!cfg->http_tokens) {
        /* No tokens file: nothing authenticates; only open routes (and reads
         * with open_reads) answer. */
        td_tokens_parse("", 0, "(none)", &t, &errs);
    } else if (td_tokens_load(cfg->http_tokens, &t, &errs) != TD_OK) {
        snprintf(err, errlen, "%s", errs.n ? errs.msgs[0] : "tokens file not valid");
        for (size_t i = 0; i < errs.n; i++)
            td_error("http: tokens file error", "error=\"%s\"", TD_LOG_VALUE(errs.msgs[i]));
        td_errors_clear(&errs);
        return TD_ERR;
    }
    td_errors_clear(&errs);
    td_tokens_free(h->tokens);
    h->tokens = t;
    return TD_OK;
}

/* libevent's listener, without an error callback, warns and tries again
 * at once for as long as accept() fails: when descriptors run out (EMFILE)
 * that is a busy loop flooding the log. Instead: count it, warn (rate
 * limited), stop accepting on every listener for a second, then resume.
 * The kernel keeps the waiting connections in the listen backlog meanwhile.
 * The listener's callback argument is evhttp's own, so the error callback
 * finds the server here (a daemon runs one HTTP server). */
static td_http *accepting_http;

static void
on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    td_http *h = arg;
    (void)fd;
    (void)what;
    for (size_t i = 0; i < h->n_listeners; i++)
        evconnlistener_enable(h->listeners[i]);
}

static void
on_accept_error(struct evconnlistener *l, void *evhttp_arg)
{
    td_http *h = accepting_http;
    int e = EVUTIL_SOCKET_ERROR();
    unsigned suppressed = 0;
    (void)evhttp_arg;
    if (!h) { /* cannot happen while a listener exists; be safe */
        evconnlistener_disable(l);
        return;
    }
    td_metric_add(h->m_accept_errors, 1);
    if (td_ratelimit_allow(&h->rl_accept, 1, &suppressed))
        td_warn("http: cannot accept connections; pausing for 1 s",
                "error=\"%s\" suppressed=%u", evutil_socket_error_to_string(e), suppressed);
    for (size_t i = 0; i < h->n_listeners; i++)
        evconnlistener_disable(h->listeners[i]);
    struct timeval tv = {1, 0};
    event_add(h->ev_accept_resume, &tv);
}

/* ---- TLS --------------------------------------------------------------- */

static struct bufferevent *
tls_bevcb(struct event_base *base, void *arg)
{
    td_http *h = arg;
    return td_tls_bev(base, h->tls);
}

/* The [http] TLS files: both or neither. *ctx is NULL without TLS. */
static int
tls_load(const td_config *cfg, SSL_CTX **ctx, char *err, size_t errlen)
{
    *ctx = NULL;
    if (!cfg->http_tls_cert && !cfg->http_tls_key)
        return TD_OK;
    if (!cfg->http_tls_cert || !cfg->http_tls_key) {
        snprintf(err, errlen, "http: tls_cert and tls_key go together (one is unset)");
        return TD_ERR;
    }
    *ctx = td_tls_ctx_new(cfg->http_tls_cert, cfg->http_tls_key, err, errlen);
    if (*ctx)
        warn_loose(cfg->http_tls_key, "TLS private key: readable or writable by others, "
                   "or writable by group", S_IROTH | S_IWOTH | S_IWGRP);
    return *ctx ? TD_OK : TD_ERR;
}

int
td_http_check(const td_config *cfg, td_errors *errs)
{
    char err[512];
    size_t before = errs->n;
    td_tokens *t = NULL;
    if (cfg->http_tokens && td_tokens_load(cfg->http_tokens, &t, errs) == TD_OK)
        td_tokens_free(t);
    SSL_CTX *ctx = NULL;
    if (tls_load(cfg, &ctx, err, sizeof(err)) != TD_OK)
        td_errors_add(errs, "%s", err);
    SSL_CTX_free(ctx);
    return errs->n == before ? TD_OK : TD_ERR;
}

static int
listen_on(td_http *h, const char *addr, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1]) {
        snprintf(err, errlen, "http: listen address '%s' is not HOST:PORT", addr);
        return TD_ERR;
    }
    size_t hl = (size_t)(colon - addr);
    if (addr[0] == '[' && colon[-1] == ']') { /* [::1]:8080 */
        addr++;
        hl -= 2;
    }
    if (hl >= sizeof(host)) {
        snprintf(err, errlen, "http: listen address '%s' is too long", addr);
        return TD_ERR;
    }
    memcpy(host, addr, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        snprintf(err, errlen, "http: bad port in '%s'", addr);
        return TD_ERR;
    }
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(h->http, host, (ev_uint16_t)port);
    if (!bs) {
        snprintf(err, errlen, "http: cannot listen on %s:%ld", host, port);
        return TD_ERR;
    }
    struct evconnlistener *l = evhttp_bound_socket_get_listener(bs);
    if (h->tls) {
        /* TLS writes a response as several records: with Nagle's algorithm
         * the second waits for the client's delayed ACK (40 ms a request).
         * Accepted sockets inherit TCP_NODELAY from the listener on Linux. */
        int one = 1;
        if (setsockopt(evconnlistener_get_fd(l), IPPROTO_TCP, TCP_NODELAY, &one,
                       sizeof(one)) != 0)
            td_warn("http: cannot set TCP_NODELAY", "error=\"%s\"", strerror(errno));
    }
    accepting_http = h;
    evconnlistener_set_error_cb(l, on_accept_error);
    h->listeners = td_realloc(h->listeners, (h->n_listeners + 1) * sizeof(*h->listeners));
    h->listeners[h->n_listeners++] = l;
    td_info("http: listening", "address=%s port=%ld tls=%s", host, port, h->tls ? "yes" : "no");
    return TD_OK;
}

td_http *
td_http_new(const td_config *cfg, struct event_base *base, td_hostctx *hc,
            td_pipeline *p, char *err, size_t errlen)
{
    td_http *h = td_calloc(1, sizeof(*h));
    h->cfg = cfg;
    h->base = base;
    h->hc = hc;
    h->pipeline = p;
    if (load_tokens(h, cfg, err, errlen) != TD_OK)
        goto fail;
    if (tls_load(cfg, &h->tls, err, errlen) != TD_OK)
        goto fail;
    h->auth_fail = td_calloc(TD_AUTH_FAIL_SLOTS, sizeof(*h->auth_fail));
    h->m_auth_throttled = td_counter("http_auth_throttled",
                                     "Requests answered 429 because their address presented "
                                     "too many unknown tokens (auth_fail_limit)", NULL);
    h->m_accept_errors = td_counter("http_accept_errors",
                                    "accept() failures on the HTTP listeners (e.g. out of "
                                    "file descriptors); each pauses accepting for 1 s",
                                    NULL);
    h->ev_accept_resume = evtimer_new(base, on_accept_resume, h);
    h->http = evhttp_new(base);
    if (!h->http || !h->ev_accept_resume) {
        snprintf(err, errlen, "http: cannot create the server");
        goto fail;
    }
    int64_t slack = cfg->http_max_body > 65536 ? cfg->http_max_body : 65536;
    evhttp_set_max_body_size(h->http, (ev_ssize_t)(cfg->http_max_body + slack));
    evhttp_set_max_headers_size(h->http, 64 * 1024);
    struct timeval tv = {(time_t)(cfg->http_idle_timeout_ms / 1000),
                         (suseconds_t)(cfg->http_idle_timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(h->http, &tv);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(h->http, on_request, h);
    if (h->tls)
        evhttp_set_bevcb(h->http, tls_bevcb, h);
    char *list = td_strdup(cfg->http_listen ? cfg->http_listen : "127.0.0.1:8080");
    char *save = NULL;
    int rc = TD_OK;
    for (char *a = strtok_r(list, " ,\t", &save); a && rc == TD_OK;
         a = strtok_r(NULL, " ,\t", &save))
        rc = listen_on(h, a, err, errlen);
    free(list);
    if (rc != TD_OK)
        goto fail;
    h->api = td_store_new(base, cfg->pg_conninfo, td_api_stmts, TD_API_NSTMT, "api");
    h->feed = td_feed_new(base, cfg);
    h->m_intake_alerts = td_counter("http_intake_alerts",
                                    "Alerts accepted (committed) over HTTP", NULL);
    h->m_unauthorized = td_counter("http_unauthorized",
                                   "Requests without a known token (401)", NULL);
    h->m_forbidden = td_counter("http_forbidden",
                                "Requests whose token lacks the scope (403)", NULL);
    h->m_limited = td_counter("http_rate_limited",
                              "Requests over their token's rate limit (429)", NULL);
    h->m_intake_busy = td_counter("http_intake_busy",
                                  "Intake requests refused with 503 (pipeline full, "
                                  "stopping, or backend down)", NULL);
    h->m_ack_latency = td_histogram("http_intake_seconds",
                                    "Intake: request received to alerts committed", NULL);
    td_host_set_core_hooks(hc, on_event_hook, on_resume_hook, h);
    return h;
fail:
    td_http_free(h);
    return NULL;
}

void
td_http_stop_intake(td_http *h)
{
    h->stopping = true;
    td_feed_close_all(h->feed);
}

void
td_http_reload(td_http *h, const td_config *cfg)
{
    char err[512];
    h->cfg = cfg;
    if (load_tokens(h, cfg, err, sizeof(err)) == TD_OK)
        td_info("http: tokens loaded", "tokens=%zu", td_tokens_count(h->tokens));
    else
        td_warn("http: tokens file not valid; keeping the old tokens", "error=\"%s\"",
                TD_LOG_VALUE(err));
    SSL_CTX *tls = NULL;
    if (tls_load(cfg, &tls, err, sizeof(err)) != TD_OK) {
        td_warn("http: TLS files not valid; keeping the old ones", "error=\"%s\"",
                TD_LOG_VALUE(err));
    } else if (!tls != !h->tls) {
        /* evhttp's bevcb is set (or not) for the server's life. */
        td_warn("http: turning TLS on or off needs a restart; keeping the current mode",
                "tls=%s", h->tls ? "on" : "off");
        SSL_CTX_free(tls);
    } else if (tls) {
        SSL_CTX_free(h->tls); /* connections keep their own reference */
        h->tls = tls;
        td_info("http: TLS certificate loaded", "cert=%s", cfg->http_tls_cert);
    }
    td_feed_reload(h->feed, cfg);
}

void
td_http_free(td_http *h)
{
    if (!h)
        return;
    if (h->hc)
        td_host_set_core_hooks(h->hc, NULL, NULL, NULL);
    if (h->feed)
        td_feed_free(h->feed);
    /* Marks deferred requests gone (their closecb), then answers queries
     * with "shutdown": their callbacks free their td_req. */
    if (h->http)
        evhttp_free(h->http);
    if (accepting_http == h)
        accepting_http = NULL;
    if (h->ev_accept_resume)
        event_free(h->ev_accept_resume);
    free(h->listeners);
    td_store_free(h->api);
    while (h->pending)
        req_free(h->pending);
    for (size_t i = 0; i < h->n_buckets; i++)
        free(h->buckets[i].name);
    free(h->buckets);
    td_tokens_free(h->tokens);
    SSL_CTX_free(h->tls);
    free(h->auth_fail);
    free(h);
}

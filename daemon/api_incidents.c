/* api_incidents.c — the incident API: lists, one incident, actions.
 *
 * The design is simple: every request is one statement on the API's own
 * PostgreSQL connection (td_http.api, a second td_store), never the
 * pipeline's, so reads and actions do not queue behind ingest and ingest
 * does not wait for them. The SQL functions of sql/004_http.sql build the
 * JSON; this file checks parameters, turns cursors into ids and back, maps
 * results to statuses, and publishes what an action changed (outputs and
 * the live feed see a person's acknowledge like the engine's changes).
 *
 * Cursors are opaque to clients: base64url of "i" and the last id shown,
 * so a page is "ids below the cursor", stable while new incidents arrive.
 * The queue of the API connection is bounded: beyond API_QUEUE_LIMIT waiting
 * statements a request gets 503 at once. */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/alert.h"
#include "internal/http_internal.h"
#include "internal/http_uri.h"
#include "internal/log.h"
#include "internal/util.h"

#define API_QUEUE_LIMIT 256
#define DEFAULT_LIMIT 50
#define MAX_LIMIT 500

const td_store_stmt td_api_stmts[TD_API_NSTMT] = {
    [TD_API_STMT_INCIDENTS] = {"api_incidents",
                               "SELECT triaged.api_incidents($1, $2, $3::int, "
                               "$4::timestamptz, $5::bigint, $6::int)::text", 6},
    [TD_API_STMT_INCIDENT] = {"api_incident", "SELECT triaged.api_incident($1)::text", 1},
    [TD_API_STMT_ACTION] = {"api_action",
                            "SELECT triaged.api_incident_action($1, $2, $3, $4, "
                            "$5::timestamptz)::text", 5},
    [TD_API_STMT_ALERTS] = {"api_alerts",
                            "SELECT triaged.api_alerts($1, $2, $3, $4, $5::bigint, "
                            "$6::int)::text", 6},
    [TD_API_STMT_PD_ACK] = {"api_pd_ack",
                            "SELECT triaged.api_alert_acknowledge($1, $2, "
                            "$3::timestamptz)::text", 3},
    [TD_API_STMT_PING] = {"api_ping", "SELECT 1", 0},
    [TD_API_STMT_CAP_TREND] = {"api_capacity_trend",
                               "SELECT triaged.api_capacity_trend($1, $2, $3::interval, "
                               "$4::interval, $5::int, $6::float8)::text", 6},
    [TD_API_STMT_MAINT_LIST] = {"api_maintenance_list",
                                "SELECT triaged.api_maintenance_list()::text", 0},
    [TD_API_STMT_MAINT_ADD] = {"api_maintenance_add",
                               "SELECT triaged.api_maintenance_add($1::jsonb, $2)::text", 2},
    [TD_API_STMT_MAINT_REMOVE] = {"api_maintenance_remove",
                                  "SELECT triaged.api_maintenance_remove($1::bigint)::text", 1},
    [TD_API_STMT_CAP_RISKS] = {"api_capacity_risks",
                               "SELECT triaged.api_capacity_risks($1::interval, $2::int, "
                               "$3::int, $4::float8)::text", 4},
    [TD_API_STMT_SLA] = {"api_sla",
                         "SELECT triaged.api_service_availability($1, $2::timestamptz, "
                         "$3::timestamptz)::text", 3},
};

/* ---- queries ---------------------------------------------------------------- */

enum { Q_LIST, Q_ONE, Q_ACTION };

int
td_api_busy(td_req *r)
{
    td_http *h = r->h;
    if (td_store_queued(h->api) < API_QUEUE_LIMIT && td_store_connected(h->api))
        return 0;
    td_req_header(r, "Retry-After", "1");
    td_req_error(r, 503, "unavailable",
                 td_store_connected(h->api) ? "too many API requests waiting; retry"
                                            : "PostgreSQL is not reachable; retry");
    return -1;
}

/* 0 when res holds rows; else answers the error and returns -1: 503 when
 * PostgreSQL is not reachable, 400 with PostgreSQL's primary message for
 * SQLSTATE 22xxx (the API functions raise those for bad input), else 500.
 * PostgreSQL's own words for a 503 or 500 (host names, ports, function
 * names, context) go to the log, not to the client. */
static int
result_ok(td_req *r, const PGresult *res, const char *err)
{
    static td_ratelimit rl;
    unsigned suppressed = 0;
    if (!res) {
        if (td_ratelimit_allow(&rl, 5, &suppressed))
            td_warn("api: PostgreSQL not reachable", "route=%s error=\"%s\" suppressed=%u",
                    r->route, TD_LOG_VALUE(err ? err : "no result"), suppressed);
        td_req_header(r, "Retry-After", "1");
        td_req_error(r, 503, "unavailable", "PostgreSQL is not reachable; retry");
        return -1;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        const char *msg = primary ? primary : PQresultErrorMessage(res);
        if (state && strncmp(state, "22", 2) == 0) {
            td_req_error(r, 400, "bad_request", "%.*s", (int)strcspn(msg, "\n"), msg);
        } else {
            if (td_ratelimit_allow(&rl, 5, &suppressed))
                td_error("api: query failed", "route=%s sqlstate=%s error=\"%s\" suppressed=%u",
                         r->route, state ? state : "?", TD_LOG_VALUE(msg), suppressed);
            td_req_error(r, 500, "internal", "the query failed (SQLSTATE %s); the log says why",
                         state ? state : "?");
        }
        return -1;
    }
    return 0;
}

json_t *
td_api_result_json(td_req *r, const PGresult *res, const char *err)
{
    if (result_ok(r, res, err) != 0)
        return NULL;
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
        return json_null();
    json_t *j = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!j)
        td_req_error(r, 500, "internal", "unreadable result from PostgreSQL");
    return j;
}

static void
on_list(void *arg, const PGresult *res, const char *err)
{
    td_req *r = arg;
    if (td_req_gone(r)) {
        td_req_reply(r, 0, "", 0);
        return;
    }
    json_t *j = td_api_result_json(r, res, err);
    if (!j)
        return;
    json_t *next = json_object_get(j, "next");
    if (json_is_integer(next)) {
        char c[64];
        td_api_cursor_encode((long long)json_integer_value(next), c);
        json_object_set_new(j, "next_cursor", json_string(c));
    } else {
        json_object_set_new(j, "next_cursor", json_null());
    }
    json_object_del(j, "next");
    td_req_reply_json(r, 200, j);
}

void
td_api_reply_one(td_req *r, const PGresult *res, const char *err, const char *what)
{
    if (td_req_gone(r)) {
        td_req_reply(r, 0, "", 0);
        return;
    }
    if (result_ok(r, res, err) != 0)
        return;
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        td_req_error(r, 404, "not_found", "no such %s", what);
        return;
    }
    /* PostgreSQL's JSON text as is: re-encoding would turn 18.632177 into
     * 18.632176999999999 */
    td_req_reply(r, 200, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
}

static void
on_one(void *arg, const PGresult *res, const char *err)
{
    td_api_reply_one(arg, res, err, "incident");
}

void
td_api_publish_events(td_http *h, json_t *events)
{
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        char *payload = json_dumps(json_object_get(e, "payload"), JSON_COMPACT);
        td_event ev = {.kind = json_string_value(json_object_get(e, "kind")),
                       .key = json_string_value(json_object_get(e, "key")),
                       .json = payload, .len = payload ? strlen(payload) : 0};
        if (ev.kind && payload)
            td_host_publish(h->hc, &ev);
        free(payload);
    }
}

static const char *
code_of(json_t *j)
{
    const char *c = json_string_value(json_object_get(j, "code"));
    return c ? c : "";
}

static void
on_action(void *arg, const PGresult *res, const char *err)
{
    td_req *r = arg;
    td_http *h = r->h;
    /* The action may have committed even if the client left: publish. */
    json_t *j = NULL;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
        !PQgetisnull(res, 0, 0))
        j = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (j && strcmp(code_of(j), "ok") == 0)
        td_api_publish_events(h, json_object_get(j, "events"));
    if (td_req_gone(r)) {
        json_decref(j);
        td_req_reply(r, 0, "", 0);
        return;
    }
    if (!j) {
        json_t *x = td_api_result_json(r, res, err);
        if (x) { /* a NULL or unreadable value */
            json_decref(x);
            td_req_error(r, 500, "internal", "unreadable result from PostgreSQL");
        }
        return;
    }
    const char *code = json_string_value(json_object_get(j, "code"));
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (code && strcmp(code, "ok") == 0) {
        json_t *inc = json_incref(json_object_get(j, "incident"));
        json_decref(j);
        td_req_reply_json(r, 200, inc);
        return;
    }
    int status = code && strcmp(code, "not_found") == 0 ? 404 : 409;
    td_req_error(r, status, code ? code : "conflict", "%s", msg ? msg : "");
    json_decref(j);
}

/* ---- handlers ----------------------------------------------------------------- */

static int
limit_param(td_req *r, struct evkeyvalq *kv, char out[16])
{
    const char *l = evhttp_find_header(kv, "limit");
    long v = DEFAULT_LIMIT;
    if (l && td_api_limit_parse(l, MAX_LIMIT, &v) != 0) {
        td_req_error(r, 400, "bad_request", "limit must be 1..%d", MAX_LIMIT);
        return -1;
    }
    snprintf(out, 16, "%ld", v);
    return 0;
}

static int
cursor_param(td_req *r, struct evkeyvalq *kv, char out[24], const char **p)
{
    const char *c = evhttp_find_header(kv, "cursor");
    *p = NULL;
    if (!c || !*c)
        return 0;
    if (td_api_cursor_decode(c, out) != 0) {
        td_req_error(r, 400, "bad_request", "cursor is not one this API gave");
        return -1;
    }
    *p = out;
    return 0;
}

const char *
td_api_nonempty(struct evkeyvalq *kv, const char *name)
{
    const char *v = evhttp_find_header(kv, name);
    return v && *v ? v : NULL;
}

int
td_api_parse_query(td_req *r, struct evkeyvalq *kv)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
    kv->tqh_first = NULL;
    kv->tqh_last = &kv->tqh_first;
    if (q && evhttp_parse_query_str(q, kv) != 0) {
        td_req_error(r, 400, "bad_request", "cannot parse the query string");
        return -1;
    }
    return 0;
}

void
td_api_incidents_get(td_req *r, const char *arg)
{
    struct evkeyvalq kv;
    char limit[16], before[24], prio[8];
    const char *bp;
    (void)arg;
    if (td_api_parse_query(r, &kv) != 0)
        return;
    const char *status = td_api_nonempty(&kv, "status"), *service = td_api_nonempty(&kv, "service"),
               *priority = td_api_nonempty(&kv, "priority"), *since = td_api_nonempty(&kv, "since");
    static const char *statuses[] = {"open", "new", "acknowledged", "resolved", "closed"};
    int ok = !status;
    for (size_t i = 0; status && i < TD_ARRAY_LEN(statuses); i++)
        ok |= strcmp(status, statuses[i]) == 0;
    int64_t us;
    int p = priority ? td_api_priority_parse(priority) : 0;
    if (!ok) {
        td_req_error(r, 400, "bad_request",
                     "status must be open, new, acknowledged, resolved or closed");
    } else if (p < 0) {
        td_req_error(r, 400, "bad_request", "priority must be 1..5 (or P1..P5)");
    } else if (since && td_parse_rfc3339(since, &us) != TD_OK) {
        td_req_error(r, 400, "bad_request", "since must be an RFC 3339 time");
    } else if (limit_param(r, &kv, limit) == 0 && cursor_param(r, &kv, before, &bp) == 0) {
        const char *pp = NULL;
        if (p) {
            prio[0] = (char)('0' + p);
            prio[1] = '\0';
            pp = prio;
        }
        if (td_api_busy(r) == 0) {
            const char *params[6] = {status, service, pp, since, bp, limit};
            td_req_defer(r);
            td_store_exec(r->h->api, TD_API_STMT_INCIDENTS, params, on_list, r);
        }
    }
    evhttp_clear_headers(&kv);
}

void
td_api_alerts_get(td_req *r, const char *arg)
{
    struct evkeyvalq kv;
    char limit[16], before[24];
    const char *bp;
    (void)arg;
    if (td_api_parse_query(r, &kv) != 0)
        return;
    const char *status = td_api_nonempty(&kv, "status");
    if (status && strcmp(status, "firing") != 0 && strcmp(status, "resolved") != 0) {
        td_req_error(r, 400, "bad_request", "status must be firing or resolved");
    } else if (limit_param(r, &kv, limit) == 0 && cursor_param(r, &kv, before, &bp) == 0 &&
               td_api_busy(r) == 0) {
        const char *params[6] = {status, td_api_nonempty(&kv, "ci"), td_api_nonempty(&kv, "service"),
                                 td_api_nonempty(&kv, "source"), bp, limit};
        td_req_defer(r);
        td_store_exec(r->h->api, TD_API_STMT_ALERTS, params, on_list, r);
    }
    evhttp_clear_headers(&kv);
}

void
td_api_incident_get(td_req *r, const char *arg)
{
    if (strchr(arg, '/')) {
        td_req_error(r, 404, "not_found", "no such path");
        return;
    }
    if (td_api_busy(r) != 0)
        return;
    const char *params[1] = {arg};
    td_req_defer(r);
    td_store_exec(r->h->api, TD_API_STMT_INCIDENT, params, on_one, r);
}

void
td_api_incident_action(td_req *r, const char *arg)
{
    char *ref;
    const char *action;
    if (td_api_action_path(arg, &ref, &action) != 0) {
        td_req_error(r, 404, "not_found",
                     "no such path (actions: acknowledge, resolve, close, comments)");
        return;
    }
    char *text = NULL;
    if (r->body_len) {
        json_error_t jerr;
        json_t *b = json_loadb(r->body, r->body_len, 0, &jerr);
        if (!b || !json_is_object(b)) {
            td_req_error(r, 400, "not_json", "the body must be a JSON object%s%s",
                         b ? "" : ": ", b ? "" : jerr.text);
            json_decref(b);
            free(ref);
            return;
        }
        json_t *t = json_object_get(b, strcmp(action, "comment") == 0 ? "text" : "comment");
        if (t && !json_is_null(t)) {
            if (!json_is_string(t) || json_string_length(t) > 4096 ||
                memchr(json_string_value(t), '\0', json_string_length(t))) {
                td_req_error(r, 400, "bad_field",
                             "'%s' must be a string of at most 4096 bytes",
                             strcmp(action, "comment") == 0 ? "text" : "comment");
                json_decref(b);
                free(ref);
                return;
            }
            text = td_strdup(json_string_value(t));
        }
        json_decref(b);
    }
    if (strcmp(action, "comment") == 0 && (!text || !*text)) {
        td_req_error(r, 400, "missing_field", "a comment needs {\"text\": \"...\"}");
    } else if (td_api_busy(r) == 0) {
        char now[32];
        td_format_rfc3339(td_now_ms() * 1000, now);
        const char *params[5] = {ref, action, r->actor, text, now};
        td_req_defer(r);
        td_store_exec(r->h->api, TD_API_STMT_ACTION, params, on_action, r);
    }
    free(ref);
    free(text);
}

typedef struct pd_ack {
    td_http *h;
    void (*done)(void *arg, const char *err);
    void *arg;
} pd_ack;

static void
on_pd_ack(void *arg, const PGresult *res, const char *err)
{
    pd_ack *a = arg;
    if (!res) {
        a->done(a->arg, err ? err : "no result");
    } else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *m = PQresultErrorMessage(res);
        char buf[256];
        snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(m, "\n"), m);
        a->done(a->arg, buf);
    } else {
        json_t *j = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
        if (j && strcmp(code_of(j), "ok") == 0)
            td_api_publish_events(a->h, json_object_get(j, "events"));
        json_decref(j);
        a->done(a->arg, NULL);
    }
    free(a);
}

void
td_api_pd_acknowledge(td_http *h, const char *fingerprint, const char *actor,
                      void (*done)(void *arg, const char *err), void *arg)
{
    char now[32];
    pd_ack *a = td_calloc(1, sizeof(*a));
    a->h = h;
    a->done = done;
    a->arg = arg;
    td_format_rfc3339(td_now_ms() * 1000, now);
    const char *params[3] = {fingerprint, actor, now};
    td_store_exec(h->api, TD_API_STMT_PD_ACK, params, on_pd_ack, a);
}

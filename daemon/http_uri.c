/* http_uri.c — the request target, read: which route a path is, and the
 * values the API takes from the path and the query string.
 *
 * Everything here is untrusted text from the network, so it lives apart
 * from the handlers as pure functions (no request object, no I/O) that the
 * fuzzer drives directly (tests/fuzz/fuzz_http.c) on what libevent's URI and
 * query parsers hand over. The rules are strict on purpose: a value is
 * all digits or it is wrong (strtol's leading spaces, signs and "0x" are
 * not ids), a decoded name may not hide a NUL byte (C would cut it there
 * and look up another name), and ids must fit PostgreSQL's bigint, so a bad
 * value is the client's 400 or 404 here rather than an error later. */
#include "internal/http_uri.h"

#include <errno.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/util.h"

const td_route_key td_routes[TD_ROUTE_N] = {
    [TD_ROUTE_ALERTS_POST] = {EVHTTP_REQ_POST, "/api/v1/alerts", "alerts_post"},
    [TD_ROUTE_ALERTS_GET] = {EVHTTP_REQ_GET, "/api/v1/alerts", "alerts_get"},
    [TD_ROUTE_ALERTMANAGER] = {EVHTTP_REQ_POST, "/api/v1/alertmanager", "alertmanager"},
    [TD_ROUTE_PAGERDUTY] = {EVHTTP_REQ_POST, "/v2/enqueue", "pagerduty"},
    [TD_ROUTE_INCIDENTS_GET] = {EVHTTP_REQ_GET, "/api/v1/incidents", "incidents_get"},
    [TD_ROUTE_INCIDENT_GET] = {EVHTTP_REQ_GET, "/api/v1/incidents/", "incident_get"},
    [TD_ROUTE_INCIDENT_ACTION] = {EVHTTP_REQ_POST, "/api/v1/incidents/", "incident_action"},
    [TD_ROUTE_CAPACITY_SAMPLES] = {EVHTTP_REQ_POST, "/api/v1/capacity/samples",
                                   "capacity_samples"},
    [TD_ROUTE_CAPACITY_TREND] = {EVHTTP_REQ_GET, "/api/v1/capacity/trend", "capacity_trend"},
    [TD_ROUTE_CAPACITY_RISKS] = {EVHTTP_REQ_GET, "/api/v1/capacity/risks", "capacity_risks"},
    [TD_ROUTE_SERVICE] = {EVHTTP_REQ_GET, "/api/v1/services/", "service_availability"},
    [TD_ROUTE_MAINTENANCE_GET] = {EVHTTP_REQ_GET, "/api/v1/maintenance", "maintenance_get"},
    [TD_ROUTE_MAINTENANCE_POST] = {EVHTTP_REQ_POST, "/api/v1/maintenance", "maintenance_post"},
    [TD_ROUTE_MAINTENANCE_DELETE] = {EVHTTP_REQ_DELETE, "/api/v1/maintenance/",
                                     "maintenance_delete"},
    [TD_ROUTE_FEED] = {EVHTTP_REQ_GET, "/api/v1/feed", "feed"},
    [TD_ROUTE_METRICS] = {EVHTTP_REQ_GET, "/metrics", "metrics"},
    [TD_ROUTE_HEALTHZ] = {EVHTTP_REQ_GET, "/healthz", "healthz"},
    [TD_ROUTE_READYZ] = {EVHTTP_REQ_GET, "/readyz", "readyz"},
};

static const char *
method_name(int m)
{
    return m == EVHTTP_REQ_GET ? "GET" : m == EVHTTP_REQ_DELETE ? "DELETE" : "POST";
}

int
td_route_find(int method, const char *path, const char **rest, char *allow, size_t allowlen)
{
    if (method == EVHTTP_REQ_HEAD)
        method = EVHTTP_REQ_GET;
    *rest = NULL;
    if (allowlen)
        allow[0] = '\0';
    for (int i = 0; i < TD_ROUTE_N; i++) {
        const td_route_key *x = &td_routes[i];
        size_t n = strlen(x->path);
        const char *arg = NULL;
        if (x->path[n - 1] == '/') {
            if (strncmp(path, x->path, n) != 0 || !path[n])
                continue;
            arg = path + n;
        } else if (strcmp(path, x->path) != 0) {
            continue;
        }
        if (x->method == method) {
            *rest = arg;
            return i;
        }
        const char *m = method_name(x->method);
        size_t used = strlen(allow);
        if (!strstr(allow, m) && used < allowlen)
            snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", m);
    }
    return -1;
}

int
td_api_action_path(const char *arg, char **ref, const char **action)
{
    static const struct {
        const char *path, *action;
    } actions[] = {{"acknowledge", "acknowledge"}, {"resolve", "resolve"},
                   {"close", "close"}, {"comments", "comment"}};
    const char *slash = strchr(arg, '/');
    *ref = NULL;
    *action = NULL;
    if (!slash || slash == arg)
        return -1;
    for (size_t i = 0; i < TD_ARRAY_LEN(actions); i++)
        if (strcmp(slash + 1, actions[i].path) == 0)
            *action = actions[i].action;
    if (!*action)
        return -1;
    *ref = td_strndup(arg, (size_t)(slash - arg));
    return 0;
}

int
td_api_service_path(const char *arg, char **name)
{
    const char *slash = strrchr(arg, '/');
    *name = NULL;
    if (!slash || slash == arg || strcmp(slash + 1, "availability") != 0)
        return -1;
    char *raw = td_strndup(arg, (size_t)(slash - arg));
    size_t n = 0;
    char *dec = evhttp_uridecode(raw, 0, &n);
    free(raw);
    if (!dec)
        abort(); /* only out of memory; out of memory aborts, as everywhere */
    if (n == 0 || strlen(dec) != n || memchr(dec, '/', n)) {
        free(dec);
        return -2;
    }
    *name = dec;
    return 0;
}

/* Decimal digits only, at most max; -1 for anything else or an overflow. */
static int
digits(const char *s, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int
td_api_id_parse(const char *s, long long *id)
{
    unsigned long long v;
    if (digits(s, INT64_MAX, &v) != 0 || v == 0)
        return -1;
    *id = (long long)v;
    return 0;
}

int
td_api_limit_parse(const char *s, long max, long *out)
{
    unsigned long long v;
    if (max < 1 || digits(s, (unsigned long long)max, &v) != 0 || v < 1)
        return -1;
    *out = (long)v;
    return 0;
}

int
td_api_priority_parse(const char *s)
{
    if (!s)
        return -1;
    if (s[0] == 'P' || s[0] == 'p')
        s++;
    if (s[0] < '1' || s[0] > '5' || s[1])
        return -1;
    return s[0] - '0';
}

int
td_api_event_id_parse(const char *s, uint64_t *id)
{
    unsigned long long v;
    if (digits(s, UINT64_MAX, &v) != 0)
        return -1;
    *id = v;
    return 0;
}

/* ---- cursors ------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void
td_api_cursor_encode(long long id, char out[64])
{
    char raw[32];
    int n = snprintf(raw, sizeof(raw), "i%lld", id), o = 0;
    for (int i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)raw[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)raw[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)raw[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = b64[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = b64[v & 63];
    }
    out[o] = '\0';
}

int
td_api_cursor_decode(const char *c, char out[24])
{
    char raw[40];
    size_t n = strlen(c), o = 0;
    unsigned v = 0;
    int bits = 0;
    if (n == 0 || n > 40)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *p = strchr(b64, c[i]);
        if (!p)
            return -1;
        v = (v << 6) | (unsigned)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= sizeof(raw) - 1)
                return -1;
            raw[o++] = (char)((v >> bits) & 0xff);
        }
    }
    raw[o] = '\0';
    unsigned long long id;
    if (o < 2 || o > 20 || raw[0] != 'i' || digits(raw + 1, INT64_MAX, &id) != 0)
        return -1;
    memcpy(out, raw + 1, o); /* the digits and the NUL */
    return 0;
}

/* fuzz_http.c — libFuzzer target for what the HTTP API reads out of a
 * request target: libevent's URI and query-string parsers as evhttp runs
 * them on the request line, then ours (daemon/http_uri.c): the route table
 * and matching, the path arguments (incident action, service name with
 * percent-decoding, maintenance id) and every query value parser (limit,
 * cursor, priority, event id, RFC 3339 time, duration).
 *
 * The first byte picks the method, the rest is the request target (a C
 * string, as evhttp hands it over). Checked, besides ASan/UBSan: a route
 * found matches its path and method, and a prefix route's argument is not
 * empty; a 405's Allow lists only known methods; parsed values are in their
 * ranges; a cursor that decodes is one that td_api_cursor_encode makes for
 * its id; a decoded service name has no '/' and no NUL. */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/alert.h"
#include "internal/config.h"
#include "internal/errors.h"
#include "internal/http_uri.h"

static void
value(const char *v)
{
    long l;
    long long id;
    uint64_t ev;
    int64_t t;
    char out[24], again[24], enc[64];
    if (td_api_limit_parse(v, 500, &l) == 0 && (l < 1 || l > 500))
        abort();
    if (td_api_limit_parse(v, 10000, &l) == 0 && (l < 1 || l > 10000))
        abort();
    if (td_api_id_parse(v, &id) == 0 && id <= 0)
        abort();
    int p = td_api_priority_parse(v);
    if (p != -1 && (p < 1 || p > 5))
        abort();
    (void)td_api_event_id_parse(v, &ev);
    (void)td_parse_rfc3339(v, &t);
    (void)td_parse_duration(v, &t);
    if (td_api_cursor_decode(v, out) == 0) {
        size_t n = strlen(out);
        if (n < 1 || n > 19 || strspn(out, "0123456789") != n)
            abort();
        td_api_cursor_encode(strtoll(out, NULL, 10), enc);
        if (td_api_cursor_decode(enc, again) != 0 ||
            strtoll(again, NULL, 10) != strtoll(out, NULL, 10))
            abort();
    }
}

static void
path_arg(const char *rest)
{
    char *ref = NULL, *name = NULL;
    const char *action = NULL;
    long long id;
    if (td_api_action_path(rest, &ref, &action) == 0) {
        if (!ref || !*ref || !action || strchr(ref, '/'))
            abort();
        free(ref);
    } else if (ref || action) {
        abort();
    }
    int rc = td_api_service_path(rest, &name);
    if (rc == 0) {
        if (!name || !*name || strchr(name, '/'))
            abort();
        free(name);
    } else if (name || (rc != -1 && rc != -2)) {
        abort();
    }
    if (td_api_id_parse(rest, &id) == 0 && id <= 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int methods[] = {EVHTTP_REQ_GET, EVHTTP_REQ_POST, EVHTTP_REQ_DELETE,
                                  EVHTTP_REQ_HEAD, EVHTTP_REQ_PUT};
    if (size < 1)
        return 0;
    int method = methods[data[0] % (sizeof(methods) / sizeof(methods[0]))];
    char *target = malloc(size);
    memcpy(target, data + 1, size - 1);
    target[size - 1] = '\0';

    /* What evhttp does with the request line's target. */
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
    const char *path = u ? evhttp_uri_get_path(u) : NULL;
    if (path && *path) {
        const char *rest = NULL;
        char allow[32];
        int id = td_route_find(method, path, &rest, allow, sizeof(allow));
        if (id >= 0) {
            const td_route_key *k = &td_routes[id];
            size_t n = strlen(k->path);
            int m = method == EVHTTP_REQ_HEAD ? EVHTTP_REQ_GET : method;
            if (k->method != m || strncmp(path, k->path, n) != 0)
                abort();
            if (k->path[n - 1] == '/' ? (!rest || !*rest || rest != path + n) : rest != NULL)
                abort();
            if (rest)
                path_arg(rest);
        } else if (allow[0] && strspn(allow, "GETPOSDL, ") != strlen(allow)) {
            abort();
        }
        path_arg(path);
    }
    const char *q = u ? evhttp_uri_get_query(u) : NULL;
    if (q) {
        struct evkeyvalq kv = {NULL, NULL};
        kv.tqh_last = &kv.tqh_first;
        if (evhttp_parse_query_str(q, &kv) == 0)
            for (struct evkeyval *e = kv.tqh_first; e; e = e->next.tqe_next)
                value(e->value);
        evhttp_clear_headers(&kv);
    }
    if (u)
        evhttp_uri_free(u);
    free(target);
    return 0;
}

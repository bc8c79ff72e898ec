/* http_uri.h — what the HTTP API reads out of the request target
 * (daemon/http_uri.c): the route table's paths and their matching, the
 * path arguments (incident reference and action, service name, maintenance
 * id) and the query values (limit, cursor, priority, event id).
 *
 * Pure functions over untrusted text: no libevent request, no I/O, so the
 * fuzzer (tests/fuzz/fuzz_http.c) runs them on anything and http.c, the
 * api_*.c handlers and feed.c share one parser per kind of value. Each
 * returns 0 (or a value) on success and -1 for input the API answers 400 or
 * 404 to; none reads past the string's NUL or writes past its buffer. */
#ifndef TD_HTTP_URI_H
#define TD_HTTP_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every route: its method, its path (exact, or a prefix when it ends with
 * '/') and its metrics label. http.c holds what each one needs (scope, body,
 * handler) in a table indexed by the same ids. */
enum {
    TD_ROUTE_ALERTS_POST, TD_ROUTE_ALERTS_GET, TD_ROUTE_ALERTMANAGER, TD_ROUTE_PAGERDUTY,
    TD_ROUTE_INCIDENTS_GET, TD_ROUTE_INCIDENT_GET, TD_ROUTE_INCIDENT_ACTION,
    TD_ROUTE_CAPACITY_SAMPLES, TD_ROUTE_CAPACITY_TREND, TD_ROUTE_CAPACITY_RISKS,
    TD_ROUTE_SERVICE, TD_ROUTE_MAINTENANCE_GET, TD_ROUTE_MAINTENANCE_POST,
    TD_ROUTE_MAINTENANCE_DELETE, TD_ROUTE_FEED, TD_ROUTE_METRICS, TD_ROUTE_HEALTHZ,
    TD_ROUTE_READYZ, TD_ROUTE_N
};

typedef struct td_route_key {
    int method;       /* EVHTTP_REQ_GET / POST / DELETE */
    const char *path; /* exact, or a prefix when it ends with '/' */
    const char *name; /* metrics label */
} td_route_key;

extern const td_route_key td_routes[TD_ROUTE_N];

/* The route for METHOD (HEAD counts as GET) and PATH, with *rest the text
 * after a prefix route's '/' (never empty; NULL for an exact route); or -1,
 * with allow ("GET, POST") naming the methods PATH has: 405 when it is not
 * empty, else 404. allow needs 32 bytes. */
int td_route_find(int method, const char *path, const char **rest, char *allow,
                  size_t allowlen);

/* "REF/ACTION" after /api/v1/incidents/: *ref (malloc'd, caller frees) and
 * *action ("acknowledge", "resolve", "close" or "comment"); -1 for 404. */
int td_api_action_path(const char *arg, char **ref, const char **action);
/* "NAME/availability" after /api/v1/services/ (NAME percent-encoded): the
 * decoded name, malloc'd (caller frees); -1 for 404 (not this shape), -2 for
 * 400 (empty, a '/' or a NUL byte in the name, or bad escapes). */
int td_api_service_path(const char *arg, char **name);
/* A positive decimal id with nothing after it (a maintenance window). */
int td_api_id_parse(const char *s, long long *id);
/* A page size "1".."max" (decimal, nothing after it). */
int td_api_limit_parse(const char *s, long max, long *out);
/* A priority "1".."5" or "P1".."P5" (any case): 1..5, or -1. */
int td_api_priority_parse(const char *s);
/* An event id of the live feed (Last-Event-ID): decimal digits, fits 64 bits. */
int td_api_event_id_parse(const char *s, uint64_t *id);

/* Cursors are opaque to clients: base64url of "i" and the last id shown.
 * decode gives the id as decimal text (1..19 digits) in out, or -1 when the
 * cursor is not one encode made. */
void td_api_cursor_encode(long long id, char out[64]);
int td_api_cursor_decode(const char *c, char out[24]);

#endif

/* api_sla.c — GET /api/v1/services/{name}/availability?from=&to= : a
 * service's availability against its SLA (sql/006_sla.sql:
 * api_service_availability, the numbers of the view and of `triagectl
 * report`), on the API's PostgreSQL connection. from/to are RFC 3339 times
 * (both or neither; neither: the SLA's current period). */
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#include "internal/http_internal.h"
#include "internal/http_uri.h"

/* The document goes out as PostgreSQL wrote it: parsing it into doubles
 * would print 18.632177 as 18.632176999999999, and the API, the view and
 * the report must show the same numbers. */
static void
on_result(void *arg, const PGresult *res, const char *err)
{
    td_req *r = arg;
    if (td_req_gone(r)) {
        td_req_reply(r, 0, "", 0);
        return;
    }
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        if (PQgetisnull(res, 0, 0))
            td_req_error(r, 404, "not_found", "no such service");
        else
            td_req_reply(r, 200, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
        return;
    }
    if (res && PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        if (state && msg && strncmp(state, "22", 2) == 0) {
            td_req_error(r, 400, "bad_request", "%.*s", (int)strcspn(msg, "\n"), msg);
            return;
        }
    }
    json_t *j = td_api_result_json(r, res, err); /* answers 503 and 500 */
    if (j) {
        json_decref(j);
        td_req_error(r, 500, "internal", "unexpected result from PostgreSQL");
    }
}

/* arg: "NAME/availability" (NAME percent-encoded). */
void
td_api_service_get(td_req *r, const char *arg)
{
    char *name;
    int rc = td_api_service_path(arg, &name);
    if (rc == -1) {
        td_req_error(r, 404, "not_found", "no such path: /api/v1/services/%.200s", arg);
        return;
    }
    if (rc != 0) {
        td_req_error(r, 400, "bad_request", "bad service name");
        return;
    }
    struct evkeyvalq kv;
    if (td_api_parse_query(r, &kv) != 0) {
        free(name);
        return;
    }
    const char *from = td_api_nonempty(&kv, "from"), *to = td_api_nonempty(&kv, "to");
    if ((from == NULL) != (to == NULL)) {
        td_req_error(r, 400, "bad_request", "give both from and to (RFC 3339), or neither");
    } else if (td_api_busy(r) == 0) {
        const char *params[3] = {name, from, to};
        td_req_defer(r);
        td_store_exec(r->h->api, TD_API_STMT_SLA, params, on_result, r);
    }
    evhttp_clear_headers(&kv);
    free(name);
}

/* api_maintenance.c — maintenance windows over HTTP: list, add, remove
 * (sql/004_http.sql: api_maintenance_*), on the API's PostgreSQL connection,
 * the same rows `triagectl maintenance` manages. Bad input is 400 (the SQL
 * raises 22023; the free-text fields' sizes are checked here first), an
 * unknown id 404. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/http_internal.h"
#include "internal/http_uri.h"
#include "internal/util.h"

static void
on_result(void *arg, const PGresult *res, const char *err)
{
    td_api_reply_one(arg, res, err, "maintenance");
}

void
td_api_maintenance_get(td_req *r, const char *arg)
{
    (void)arg;
    if (td_api_busy(r) != 0)
        return;
    td_req_defer(r);
    td_store_exec(r->h->api, TD_API_STMT_MAINT_LIST, NULL, on_result, r);
}

/* Free text that the SQL stores as given: bounded like a comment. */
static const struct {
    const char *key;
    size_t max;
} text_limits[] = {{"change_ref", 256}, {"reason", 4096}};

void
td_api_maintenance_post(td_req *r, const char *arg)
{
    (void)arg;
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    for (size_t i = 0; doc && i < sizeof(text_limits) / sizeof(text_limits[0]); i++) {
        json_t *v = json_object_get(doc, text_limits[i].key);
        if (json_is_string(v) && json_string_length(v) > text_limits[i].max) {
            json_decref(doc);
            td_req_error(r, 400, "bad_field", "'%s' is longer than %zu bytes",
                         text_limits[i].key, text_limits[i].max);
            return;
        }
    }
    json_decref(doc); /* not JSON or not an object: the SQL says so */
    if (td_api_busy(r) != 0)
        return;
    char *body = td_strndup(r->body, r->body_len); /* the body is not NUL-terminated */
    const char *params[2] = {body, r->actor};
    td_req_defer(r);
    td_store_exec(r->h->api, TD_API_STMT_MAINT_ADD, params, on_result, r);
    free(body);
}

void
td_api_maintenance_delete(td_req *r, const char *arg)
{
    long long id;
    if (td_api_id_parse(arg, &id) != 0) {
        td_req_error(r, 404, "not_found", "no such maintenance: %.40s", arg);
        return;
    }
    if (td_api_busy(r) != 0)
        return;
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", id);
    const char *params[1] = {buf};
    td_req_defer(r);
    td_store_exec(r->h->api, TD_API_STMT_MAINT_REMOVE, params, on_result, r);
}

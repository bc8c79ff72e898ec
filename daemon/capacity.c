/* capacity.c — capacity samples: decode and validate, and the binary
 * arrays the batch statement takes (see capacity.h). */
#include "internal/capacity.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/alert.h"
#include "internal/errors.h"
#include "internal/pgarray.h"
#include "internal/util.h"

#define MAX_NAME 1024

static int
fail(const char **reason, const char *r, char *detail, size_t dlen, const char *fmt,
     const char *arg)
{
    *reason = r;
    snprintf(detail, dlen, fmt, arg);
    return TD_ERR;
}

static int
name_field(json_t *obj, const char *name, char **out, const char **reason, char *detail,
           size_t dlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return fail(reason, "missing_field", detail, dlen, "missing required field '%s'",
                    name);
    if (!json_is_string(v))
        return fail(reason, "bad_field", detail, dlen, "field '%s' must be a string", name);
    size_t len = json_string_length(v);
    if (len == 0)
        return fail(reason, "missing_field", detail, dlen, "required field '%s' is empty",
                    name);
    if (len > MAX_NAME)
        return fail(reason, "bad_field", detail, dlen, "field '%s' is too long", name);
    if (memchr(json_string_value(v), '\0', len))
        return fail(reason, "bad_field", detail, dlen, "field '%s' contains a NUL byte",
                    name);
    *out = td_strndup(json_string_value(v), len);
    return TD_OK;
}

static int
decode_one(json_t *obj, int64_t now_us, td_sample *s, const char **reason, char *detail,
           size_t dlen)
{
    if (!json_is_object(obj))
        return fail(reason, "not_object", detail, dlen, "a sample must be a JSON %s",
                    "object");
    s->limit = NAN;
    if (name_field(obj, "ci", &s->ci, reason, detail, dlen) != TD_OK ||
        name_field(obj, "metric", &s->metric, reason, detail, dlen) != TD_OK)
        return TD_ERR;
    json_t *v = json_object_get(obj, "value");
    if (!v || json_is_null(v))
        return fail(reason, "missing_field", detail, dlen, "missing required field '%s'",
                    "value");
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return fail(reason, "bad_field", detail, dlen, "field '%s' must be a finite number",
                    "value");
    s->value = json_number_value(v);
    json_t *l = json_object_get(obj, "limit");
    if (l && !json_is_null(l)) {
        if (!json_is_number(l) || !isfinite(json_number_value(l)) ||
            json_number_value(l) <= 0)
            return fail(reason, "bad_field", detail, dlen,
                        "field '%s' must be a positive number", "limit");
        s->limit = json_number_value(l);
    }
    json_t *ts = json_object_get(obj, "ts");
    s->ts_us = now_us;
    if (ts && !json_is_null(ts)) {
        if (!json_is_string(ts) || td_parse_rfc3339(json_string_value(ts), &s->ts_us) != TD_OK)
            return fail(reason, "bad_field", detail, dlen,
                        "field '%s' must be an RFC 3339 time", "ts");
    }
    return TD_OK;
}

void
td_samples_free(td_sample *s, size_t n)
{
    if (!s)
        return;
    for (size_t i = 0; i < n; i++) {
        free(s[i].ci);
        free(s[i].metric);
    }
    free(s);
}

int
td_capacity_decode(const char *buf, size_t len, size_t max_size, int64_t now_us,
                   td_sample **out, size_t *n, const char **reason, char *detail,
                   size_t detail_len)
{
    *out = NULL;
    *n = 0;
    json_t *root = td_json_message(buf, len, max_size, reason, detail, detail_len);
    if (!root)
        return TD_ERR;
    size_t count = json_is_array(root) ? json_array_size(root) : 1;
    if (count == 0) {
        json_decref(root);
        *reason = "empty";
        snprintf(detail, detail_len, "an empty array holds no sample");
        return TD_ERR;
    }
    td_sample *s = td_calloc(count, sizeof(*s));
    for (size_t i = 0; i < count; i++) {
        json_t *obj = json_is_array(root) ? json_array_get(root, i) : root;
        if (decode_one(obj, now_us, &s[i], reason, detail, detail_len) != TD_OK) {
            td_samples_free(s, i + 1);
            json_decref(root);
            if (count > 1) {
                size_t l = strlen(detail);
                snprintf(detail + l, detail_len - l, " (sample %zu)", i);
            }
            return TD_ERR;
        }
    }
    json_decref(root);
    *out = s;
    *n = count;
    return TD_OK;
}

/* ---- binary arrays (pgarray.c) ------------------------------------------ */

int
td_samples_arrays(const td_sample *const *samples, const int64_t *ci_ids, size_t n,
                  char *out[TD_SAMPLE_ARRAYS], int len[TD_SAMPLE_ARRAYS])
{
    static const uint32_t oids[TD_SAMPLE_ARRAYS] = {
        TD_OID_INT8, TD_OID_TEXT, TD_OID_TEXT, TD_OID_TIMESTAMPTZ, TD_OID_FLOAT8, TD_OID_FLOAT8};
    td_pgarray a[TD_SAMPLE_ARRAYS];
    for (int k = 0; k < TD_SAMPLE_ARRAYS; k++)
        td_pgarray_init(&a[k], oids[k]);
    for (size_t i = 0; i < n; i++) {
        const td_sample *s = samples[i];
        if (ci_ids[i] != 0) { /* bound: the id, no name */
            td_pgarray_int8(&a[0], ci_ids[i]);
            td_pgarray_null(&a[1]);
        } else {
            td_pgarray_null(&a[0]);
            td_pgarray_text(&a[1], s->ci);
        }
        td_pgarray_text(&a[2], s->metric);
        td_pgarray_timestamptz(&a[3], s->ts_us);
        td_pgarray_float8(&a[4], s->value);
        if (isnan(s->limit))
            td_pgarray_null(&a[5]);
        else
            td_pgarray_float8(&a[5], s->limit);
    }
    return td_pgarray_finish_all(a, TD_SAMPLE_ARRAYS, out, len);
}

void
td_samples_summary(const td_sample *const *samples, size_t n, char **hours, int *len,
                   bool *over_limit)
{
    int64_t h[TD_SAMPLE_HOURS_MAX];
    size_t nh = 0;
    bool too_many = false;
    *over_limit = false;
    for (size_t i = 0; i < n; i++) {
        const td_sample *s = samples[i];
        if (!isnan(s->limit) && s->value >= s->limit)
            *over_limit = true;
        if (too_many)
            continue;
        /* the hour, floored also before 1970 */
        int64_t hour = s->ts_us / INT64_C(3600000000);
        if (s->ts_us < 0 && s->ts_us % INT64_C(3600000000))
            hour--;
        size_t j = 0;
        while (j < nh && h[j] != hour)
            j++;
        if (j == nh) {
            if (nh == TD_SAMPLE_HOURS_MAX)
                too_many = true;
            else
                h[nh++] = hour;
        }
    }
    *hours = NULL;
    *len = 0;
    if (too_many)
        return;
    td_pgarray a;
    td_pgarray_init(&a, TD_OID_TIMESTAMPTZ);
    for (size_t j = 0; j < nh; j++)
        td_pgarray_timestamptz(&a, h[j] * INT64_C(3600000000));
    if (td_pgarray_finish(&a, hours, len) != TD_OK) /* (at most 1,024 elements) */
        *hours = NULL;
}

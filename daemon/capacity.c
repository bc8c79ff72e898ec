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

/* ---- binary arrays (PostgreSQL's array_send/array_recv format) ----------
 * int32 ndim (1), int32 has-nulls flag, uint32 element type OID, int32
 * length, int32 lower bound (1); then per element an int32 byte length (-1:
 * NULL) and the element's own binary form. All integers big-endian. */

enum { OID_INT8 = 20, OID_TEXT = 25, OID_FLOAT8 = 701, OID_TIMESTAMPTZ = 1184 };

#define PG_EPOCH_US INT64_C(946684800000000) /* 2000-01-01 in Unix microseconds */
#define PG_MAX_VALUE ((size_t)1 << 30)       /* PostgreSQL's 1 GB per value */

static unsigned char *
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

static unsigned char *
put64(unsigned char *p, uint64_t v)
{
    return put32(put32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

static unsigned char *
array_header(unsigned char *p, bool nulls, uint32_t oid, size_t n)
{
    p = put32(p, 1);
    p = put32(p, nulls ? 1 : 0);
    p = put32(p, oid);
    p = put32(p, (uint32_t)n);
    return put32(p, 1);
}

/* An 8-byte element (int8, float8, timestamptz) or NULL. */
static unsigned char *
put_elem8(unsigned char *p, bool null, uint64_t v)
{
    if (null)
        return put32(p, UINT32_MAX); /* -1 */
    return put64(put32(p, 8), v);
}

static unsigned char *
put_text(unsigned char *p, const char *s)
{
    if (!s)
        return put32(p, UINT32_MAX);
    size_t l = strlen(s);
    p = put32(p, (uint32_t)l);
    memcpy(p, s, l);
    return p + l;
}

static uint64_t
bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

int
td_samples_arrays(const td_sample *const *samples, const int64_t *ci_ids, size_t n,
                  char *out[TD_SAMPLE_ARRAYS], int len[TD_SAMPLE_ARRAYS])
{
    size_t size[TD_SAMPLE_ARRAYS];
    bool nulls[TD_SAMPLE_ARRAYS] = {false, false, false, false, false, false};
    for (int k = 0; k < TD_SAMPLE_ARRAYS; k++)
        size[k] = 20;
    for (size_t i = 0; i < n; i++) {
        const td_sample *s = samples[i];
        bool bound = ci_ids[i] != 0;
        size[0] += bound ? 12 : 4;
        size[1] += bound ? 4 : 4 + strlen(s->ci);
        size[2] += 4 + strlen(s->metric);
        size[3] += 12;
        size[4] += 12;
        size[5] += isnan(s->limit) ? 4 : 12;
        nulls[0] |= !bound;
        nulls[1] |= bound;
        nulls[5] |= isnan(s->limit) != 0;
    }
    for (int k = 0; k < TD_SAMPLE_ARRAYS; k++)
        if (size[k] >= PG_MAX_VALUE)
            return TD_ERR;
    unsigned char *p[TD_SAMPLE_ARRAYS];
    static const uint32_t oids[TD_SAMPLE_ARRAYS] = {OID_INT8,        OID_TEXT,   OID_TEXT,
                                                    OID_TIMESTAMPTZ, OID_FLOAT8, OID_FLOAT8};
    for (int k = 0; k < TD_SAMPLE_ARRAYS; k++) {
        out[k] = td_malloc(size[k]);
        len[k] = (int)size[k];
        p[k] = array_header((unsigned char *)out[k], nulls[k], oids[k], n);
    }
    for (size_t i = 0; i < n; i++) {
        const td_sample *s = samples[i];
        bool bound = ci_ids[i] != 0;
        p[0] = put_elem8(p[0], !bound, (uint64_t)ci_ids[i]);
        p[1] = put_text(p[1], bound ? NULL : s->ci);
        p[2] = put_text(p[2], s->metric);
        p[3] = put_elem8(p[3], false, (uint64_t)(s->ts_us - PG_EPOCH_US));
        p[4] = put_elem8(p[4], false, bits_of(s->value));
        p[5] = put_elem8(p[5], isnan(s->limit) != 0, bits_of(s->limit));
    }
    return TD_OK;
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
        int64_t t = s->ts_us - PG_EPOCH_US, hour = t / INT64_C(3600000000);
        if (t < 0 && t % INT64_C(3600000000))
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
    unsigned char *p = td_malloc(20 + nh * 12);
    *hours = (char *)p;
    *len = (int)(20 + nh * 12);
    p = array_header(p, false, OID_TIMESTAMPTZ, nh);
    for (size_t j = 0; j < nh; j++)
        p = put_elem8(p, false, (uint64_t)(h[j] * INT64_C(3600000000)));
}

/* pgarray.c — binary-format PostgreSQL arrays (see pgarray.h).
 *
 * The header's 20 bytes are reserved at init and written at finish, when the
 * element count and the has-nulls flag are known. */
#include "internal/pgarray.h"

#include <stdlib.h>
#include <string.h>

#include "internal/errors.h"
#include "internal/util.h"

#define HEADER 20
#define PG_EPOCH_US INT64_C(946684800000000) /* 2000-01-01 in Unix microseconds */
#define PG_MAX_VALUE ((size_t)1 << 30)       /* PostgreSQL's 1 GB per value */

static void
reserve(td_pgarray *a, size_t more)
{
    if (a->len + more <= a->cap)
        return;
    size_t cap = a->cap ? a->cap : 256;
    while (cap < a->len + more)
        cap *= 2;
    a->buf = td_realloc(a->buf, cap);
    a->cap = cap;
}

static unsigned char *
put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

void
td_pgarray_init(td_pgarray *a, uint32_t oid)
{
    memset(a, 0, sizeof(*a));
    a->oid = oid;
    reserve(a, HEADER);
    a->len = HEADER;
}

void
td_pgarray_reset(td_pgarray *a)
{
    free(a->buf);
    memset(a, 0, sizeof(*a));
}

void
td_pgarray_null(td_pgarray *a)
{
    reserve(a, 4);
    put32(a->buf + a->len, UINT32_MAX); /* -1 */
    a->len += 4;
    a->n++;
    a->nulls = true;
}

/* An element of `len` bytes: `pre` (0 or 1 byte, jsonb's version) then s. */
static void
put_bytes(td_pgarray *a, int pre, const char *s, size_t l)
{
    reserve(a, 4 + (size_t)(pre >= 0) + l);
    unsigned char *p = put32(a->buf + a->len, (uint32_t)(l + (size_t)(pre >= 0)));
    if (pre >= 0)
        *p++ = (unsigned char)pre;
    memcpy(p, s, l);
    a->len += 4 + (size_t)(pre >= 0) + l;
    a->n++;
}

void
td_pgarray_text(td_pgarray *a, const char *s)
{
    if (!s)
        td_pgarray_null(a);
    else
        put_bytes(a, -1, s, strlen(s));
}

void
td_pgarray_jsonb(td_pgarray *a, const char *json)
{
    if (!json)
        td_pgarray_null(a);
    else
        put_bytes(a, 1, json, strlen(json)); /* jsonb's binary format: version 1, text */
}

void
td_pgarray_int8(td_pgarray *a, int64_t v)
{
    reserve(a, 12);
    unsigned char *p = put32(a->buf + a->len, 8);
    p = put32(p, (uint32_t)((uint64_t)v >> 32));
    put32(p, (uint32_t)(uint64_t)v);
    a->len += 12;
    a->n++;
}

void
td_pgarray_float8(td_pgarray *a, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    td_pgarray_int8(a, (int64_t)u); /* the same 8 bytes, big-endian */
}

void
td_pgarray_timestamptz(td_pgarray *a, int64_t unix_us)
{
    td_pgarray_int8(a, unix_us - PG_EPOCH_US);
}

int
td_pgarray_finish(td_pgarray *a, char **out, int *len)
{
    *out = NULL;
    *len = 0;
    if (a->len >= PG_MAX_VALUE) {
        td_pgarray_reset(a);
        return TD_ERR;
    }
    unsigned char *p = put32(a->buf, 1);
    p = put32(p, a->nulls ? 1 : 0);
    p = put32(p, a->oid);
    p = put32(p, (uint32_t)a->n);
    put32(p, 1);
    *out = (char *)a->buf;
    *len = (int)a->len;
    memset(a, 0, sizeof(*a));
    return TD_OK;
}

int
td_pgarray_finish_all(td_pgarray *a, size_t n, char **out, int *len)
{
    int rc = TD_OK;
    for (size_t k = 0; k < n; k++)
        if (rc == TD_OK)
            rc = td_pgarray_finish(&a[k], &out[k], &len[k]);
        else
            td_pgarray_reset(&a[k]);
    if (rc != TD_OK)
        for (size_t k = 0; k < n; k++) {
            free(out[k]);
            out[k] = NULL;
            len[k] = 0;
        }
    return rc;
}

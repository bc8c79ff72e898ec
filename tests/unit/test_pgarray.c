/* Binary PostgreSQL arrays (pgarray.c; PostgreSQL's array_recv format):
 * the batch statement's segments go to PostgreSQL this way. The integration
 * tests (test_engine_fastpaths, the daemon's tests) have PostgreSQL read
 * them; here the bytes are checked one by one. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/errors.h"
#include "internal/pgarray.h"

TestSuite(pgarray, .timeout = 10);

static uint32_t
get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t
get64(const unsigned char *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

/* Checks the one-dimensional array header; returns the first element. */
static const unsigned char *
header(const char *buf, uint32_t nulls, uint32_t oid, uint32_t n)
{
    const unsigned char *p = (const unsigned char *)buf;
    cr_assert_eq(get32(p), 1, "ndim");
    cr_assert_eq(get32(p + 4), nulls, "has-nulls flag");
    cr_assert_eq(get32(p + 8), oid, "element type");
    cr_assert_eq(get32(p + 12), n, "length");
    cr_assert_eq(get32(p + 16), 1, "lower bound");
    return p + 20;
}

Test(pgarray, text_elements_are_length_and_bytes_null_is_minus_one)
{
    td_pgarray a;
    td_pgarray_init(&a, TD_OID_TEXT);
    td_pgarray_text(&a, "ab\"c\\");
    td_pgarray_text(&a, NULL);
    td_pgarray_text(&a, "");
    char *v;
    int len;
    cr_assert_eq(td_pgarray_finish(&a, &v, &len), TD_OK);
    cr_assert_eq(len, 20 + 4 + 5 + 4 + 4);
    const unsigned char *p = header(v, 1, 25, 3);
    cr_assert_eq(get32(p), 5);
    cr_assert(memcmp(p + 4, "ab\"c\\", 5) == 0, "bytes as they are, nothing escaped");
    cr_assert_eq(get32(p + 9), UINT32_MAX);
    cr_assert_eq(get32(p + 13), 0);
    free(v);
}

Test(pgarray, int8_and_timestamptz_are_eight_bytes_big_endian)
{
    td_pgarray a, t;
    td_pgarray_init(&a, TD_OID_INT8);
    td_pgarray_init(&t, TD_OID_TIMESTAMPTZ);
    td_pgarray_int8(&a, -2);
    td_pgarray_int8(&a, INT64_C(0x0102030405060708));
    /* 2000-01-01T00:00:01Z: PostgreSQL counts microseconds from 2000 */
    td_pgarray_timestamptz(&t, INT64_C(946684801000000));
    char *v, *w;
    int len, wlen;
    cr_assert_eq(td_pgarray_finish(&a, &v, &len), TD_OK);
    cr_assert_eq(td_pgarray_finish(&t, &w, &wlen), TD_OK);
    const unsigned char *p = header(v, 0, 20, 2);
    cr_assert_eq(len, 20 + 2 * 12);
    cr_assert_eq(get32(p), 8);
    cr_assert_eq(get64(p + 4), (uint64_t)-2);
    cr_assert_eq(get64(p + 16), UINT64_C(0x0102030405060708));
    p = header(w, 0, 1184, 1);
    cr_assert_eq(wlen, 20 + 12);
    cr_assert_eq(get64(p + 4), 1000000);
    free(v);
    free(w);
}

Test(pgarray, jsonb_elements_carry_the_version_byte)
{
    td_pgarray a;
    td_pgarray_init(&a, TD_OID_JSONB);
    td_pgarray_jsonb(&a, "{\"k\":\"v\"}");
    td_pgarray_null(&a);
    char *v;
    int len;
    cr_assert_eq(td_pgarray_finish(&a, &v, &len), TD_OK);
    const unsigned char *p = header(v, 1, 3802, 2);
    cr_assert_eq(get32(p), 10);
    cr_assert_eq(p[4], 1, "jsonb binary format version");
    cr_assert(memcmp(p + 5, "{\"k\":\"v\"}", 9) == 0);
    cr_assert_eq(get32(p + 14), UINT32_MAX);
    cr_assert_eq(len, 20 + 4 + 10 + 4);
    free(v);
}

Test(pgarray, an_empty_array_is_a_header_and_many_elements_grow_the_buffer)
{
    td_pgarray a;
    td_pgarray_init(&a, TD_OID_TEXT);
    char *v;
    int len;
    cr_assert_eq(td_pgarray_finish(&a, &v, &len), TD_OK);
    cr_assert_eq(len, 20);
    header(v, 0, 25, 0);
    free(v);

    td_pgarray_init(&a, TD_OID_INT8);
    for (int i = 0; i < 10000; i++)
        td_pgarray_int8(&a, i);
    cr_assert_eq(td_pgarray_finish(&a, &v, &len), TD_OK);
    cr_assert_eq(len, 20 + 10000 * 12);
    const unsigned char *p = header(v, 0, 20, 10000);
    cr_assert_eq(get64(p + 9999 * 12 + 4), 9999);
    free(v);
}

Test(pgarray, reset_frees_an_unfinished_array)
{
    td_pgarray a;
    td_pgarray_init(&a, TD_OID_TEXT);
    td_pgarray_text(&a, "x");
    td_pgarray_reset(&a);
    cr_assert_null(a.buf);
    cr_assert_eq(a.len, 0);
}

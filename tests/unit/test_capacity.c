/* Capacity samples: decoding with reasons, and the binary arrays the batch
 * statement takes (capacity.c; PostgreSQL's array_recv format). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/capacity.h"
#include "internal/errors.h"

TestSuite(capacity, .timeout = 10);

#define NOW_US INT64_C(1700000000000000)

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

static double
getf(const unsigned char *p)
{
    uint64_t u = get64(p);
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
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

Test(capacity, an_array_of_samples_decodes_with_defaults)
{
    const char *msg = "[{\"ci\":\"db-01\",\"metric\":\"disk\",\"value\":812.5,\"limit\":1000,"
                      "\"ts\":\"2026-10-01T00:00:00Z\"},{\"ci\":\"db-02\",\"metric\":\"m\",\"value\":-1}]";
    td_sample *s;
    size_t n;
    const char *reason = NULL;
    char detail[256];
    cr_assert_eq(td_capacity_decode(msg, strlen(msg), 4096, NOW_US, &s, &n, &reason, detail,
                                    sizeof(detail)),
                 TD_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(s[0].ci, "db-01");
    cr_assert_eq(s[0].value, 812.5);
    cr_assert_eq(s[0].limit, 1000);
    cr_assert_eq(s[0].ts_us, INT64_C(1790812800000000));
    cr_assert(isnan(s[1].limit), "no limit is NAN");
    cr_assert_eq(s[1].ts_us, NOW_US, "no ts is the time received");
    td_samples_free(s, n);
}

struct cap_bad {
    const char *msg, *reason;
};

static struct cap_bad cap_bad_cases[] = {
    {"{\"metric\":\"m\",\"value\":1}", "missing_field"},
    {"{\"ci\":\"a\",\"metric\":\"\",\"value\":1}", "missing_field"},
    {"{\"ci\":\"a\",\"metric\":\"m\",\"value\":\"high\"}", "bad_field"},
    {"{\"ci\":\"a\",\"metric\":\"m\",\"value\":1,\"limit\":0}", "bad_field"},
    {"{\"ci\":\"a\",\"metric\":\"m\",\"value\":1,\"ts\":\"yesterday\"}", "bad_field"},
    {"[]", "empty"},
    {"[1]", "not_object"},
};

Test(capacity, bad_samples_are_rejected_by_reason)
{
    for (size_t i = 0; i < sizeof(cap_bad_cases) / sizeof(cap_bad_cases[0]); i++) {
        const struct cap_bad *b = &cap_bad_cases[i];
        td_sample *s = NULL;
        size_t n = 0;
        const char *reason = NULL;
        char detail[256];
        cr_assert_eq(td_capacity_decode(b->msg, strlen(b->msg), 4096, NOW_US, &s, &n, &reason,
                                        detail, sizeof(detail)),
                     TD_ERR, "%s", b->msg);
        cr_assert_str_eq(reason, b->reason, "%s: %s", b->msg, detail);
        cr_assert_null(s);
    }
}

Test(capacity, arrays_are_postgresql_binary_arrays_one_element_per_sample)
{
    td_sample a = {.ci = "db-01", .metric = "disk", .value = 812.5, .limit = 1000,
                   .ts_us = INT64_C(946684800000001)}; /* 2000-01-01 + 1 us */
    td_sample b = {.ci = "10.0.0.7", .metric = "mem", .value = -2, .limit = NAN,
                   .ts_us = INT64_C(946684799000000)}; /* one second before */
    const td_sample *s[] = {&a, &b};
    int64_t ids[] = {42, 0};
    char *out[TD_SAMPLE_ARRAYS];
    int len[TD_SAMPLE_ARRAYS];
    cr_assert_eq(td_samples_arrays(s, ids, 2, out, len), TD_OK);

    /* int8[]: 42, NULL */
    const unsigned char *p = header(out[0], 1, 20, 2);
    cr_assert_eq(get32(p), 8);
    cr_assert_eq(get64(p + 4), 42);
    cr_assert_eq(get32(p + 12), UINT32_MAX, "NULL");
    cr_assert_eq(len[0], 20 + 12 + 4);
    /* text[]: NULL (bound), "10.0.0.7" */
    p = header(out[1], 1, 25, 2);
    cr_assert_eq(get32(p), UINT32_MAX);
    cr_assert_eq(get32(p + 4), 8);
    cr_assert(memcmp(p + 8, "10.0.0.7", 8) == 0);
    cr_assert_eq(len[1], 20 + 4 + 12);
    /* text[] metric, no NULLs */
    p = header(out[2], 0, 25, 2);
    cr_assert_eq(get32(p), 4);
    cr_assert(memcmp(p + 4, "disk", 4) == 0);
    cr_assert_eq(get32(p + 8), 3);
    cr_assert(memcmp(p + 12, "mem", 3) == 0);
    cr_assert_eq(len[2], 20 + 8 + 7);
    /* timestamptz[]: microseconds since 2000-01-01 */
    p = header(out[3], 0, 1184, 2);
    cr_assert_eq(get32(p), 8);
    cr_assert_eq((int64_t)get64(p + 4), 1);
    cr_assert_eq((int64_t)get64(p + 16), -1000000);
    /* float8[] value and limit (NULL where absent) */
    p = header(out[4], 0, 701, 2);
    cr_assert_eq(getf(p + 4), 812.5);
    cr_assert_eq(getf(p + 16), -2);
    p = header(out[5], 1, 701, 2);
    cr_assert_eq(getf(p + 4), 1000);
    cr_assert_eq(get32(p + 12), UINT32_MAX);
    cr_assert_eq(len[5], 20 + 12 + 4);
    for (int k = 0; k < TD_SAMPLE_ARRAYS; k++)
        free(out[k]);
}

Test(capacity, summary_gives_the_distinct_hours_and_whether_a_limit_is_reached)
{
    td_sample a = {.ci = "a", .metric = "m", .value = 5, .limit = 10,
                   .ts_us = INT64_C(946684800000000) + INT64_C(3600000000) + 5}; /* 01:00:00.000005 */
    td_sample b = {.ci = "b", .metric = "m", .value = 50, .limit = NAN,
                   .ts_us = INT64_C(946684800000000) + INT64_C(7199999999)};     /* 01:59:59.999999 */
    td_sample c = {.ci = "c", .metric = "m", .value = 1, .limit = NAN,
                   .ts_us = INT64_C(946684800000000) - 1};                       /* 1999-12-31 23:59:59.999999 */
    const td_sample *s[] = {&a, &b, &c};
    char *hours;
    int len;
    bool over;
    td_samples_summary(s, 3, &hours, &len, &over);
    cr_assert_not(over, "no sample at its limit (b has none)");
    const unsigned char *p = header(hours, 0, 1184, 2);
    cr_assert_eq((int64_t)get64(p + 4), INT64_C(3600000000), "01:00");
    cr_assert_eq((int64_t)get64(p + 16), -INT64_C(3600000000), "23:00 the day before");
    cr_assert_eq(len, 20 + 2 * 12);
    free(hours);

    a.value = 10;
    td_samples_summary(s, 1, &hours, &len, &over);
    cr_assert(over, "a at its limit");
    free(hours);
}

Test(capacity, summary_leaves_many_hours_to_sql)
{
    td_sample x[TD_SAMPLE_HOURS_MAX + 1];
    const td_sample *s[TD_SAMPLE_HOURS_MAX + 1];
    for (int i = 0; i <= TD_SAMPLE_HOURS_MAX; i++) {
        x[i] = (td_sample){.ci = "a", .metric = "m", .value = 1, .limit = NAN,
                           .ts_us = INT64_C(1700000000000000) + i * INT64_C(3600000000)};
        s[i] = &x[i];
    }
    char *hours;
    int len;
    bool over;
    td_samples_summary(s, TD_SAMPLE_HOURS_MAX, &hours, &len, &over);
    cr_assert_not_null(hours, "%d hours are passed", TD_SAMPLE_HOURS_MAX);
    free(hours);
    td_samples_summary(s, TD_SAMPLE_HOURS_MAX + 1, &hours, &len, &over);
    cr_assert_null(hours, "one more: SQL works them out");
    cr_assert_eq(len, 0);
}

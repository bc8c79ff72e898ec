/* Alertmanager webhook v4 and PagerDuty Events v2 decoding (formats.c). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "internal/formats.h"

TestSuite(formats, .timeout = 10);

static const td_decode_opts opts = {.max_size = 8192, .now_us = 1700000000000000LL};

static td_alert *
am(const char *json, size_t *n, const char **reason, char *detail)
{
    td_alert *a = NULL;
    *reason = NULL;
    int rc = td_alertmanager_decode(json, strlen(json), &opts, "instance", &a, n, reason,
                                    detail, 256);
    return rc == TD_OK ? a : NULL;
}

static void
free_alerts(td_alert *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        td_alert_clear(&a[i]);
    free(a);
}

Test(formats, alertmanager_alert_keeps_alertmanagers_fingerprint)
{
    size_t n;
    const char *reason;
    char detail[256];
    td_alert *a = am("{\"version\":\"4\",\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\","
                     "\"labels\":{\"alertname\":\"HighCPU\",\"instance\":\"web-01\",\"severity\":\"error\"},"
                     "\"annotations\":{\"summary\":\"hot\"},\"startsAt\":\"2026-11-25T21:40:00Z\","
                     "\"fingerprint\":\"0123456789abcdef\"}]}",
                     &n, &reason, detail);
    cr_assert_not_null(a, "%s: %s", reason, detail);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(a[0].fp_hex, "0123456789abcdef");
    cr_assert_str_eq(a[0].source, "alertmanager");
    cr_assert_str_eq(a[0].check, "HighCPU");
    cr_assert_str_eq(a[0].resource, "web-01");
    cr_assert_str_eq(a[0].summary, "hot");
    cr_assert_eq(a[0].severity, TD_SEV_MAJOR);
    cr_assert(a[0].firing);
    cr_assert_eq(a[0].n_labels, 3);
    cr_assert_str_eq(a[0].labels[0].name, "alertname"); /* sorted */
    free_alerts(a, n);
}

Test(formats, alertmanager_fingerprint_is_computed_from_labels_when_absent)
{
    size_t n;
    const char *reason;
    char detail[256];
    /* the labels of Alertmanager's own test vector (see test_alert.c) */
    td_alert *a = am("{\"version\":\"4\",\"alerts\":[{\"status\":\"resolved\","
                     "\"labels\":{\"fear\":\"love is not enough\",\"name\":\"garland, briggs\"},"
                     "\"startsAt\":\"2026-11-25T21:40:00Z\",\"endsAt\":\"2026-11-25T21:45:00Z\"}]}",
                     &n, &reason, detail);
    cr_assert_not_null(a, "%s: %s", reason, detail);
    cr_assert_str_eq(a[0].fp_hex, "507a62d79ee76c9a");
    cr_assert_not(a[0].firing);
    cr_assert_str_eq(a[0].resource, "alertmanager"); /* no instance, no job */
    int64_t ends;
    td_parse_rfc3339("2026-11-25T21:45:00Z", &ends);
    cr_assert_eq(a[0].occurred_at_us, ends, "a resolve happens at endsAt");
    free_alerts(a, n);
}

Test(formats, alertmanager_resource_falls_back_to_job)
{
    size_t n;
    const char *reason;
    char detail[256];
    td_alert *a = am("{\"version\":\"4\",\"alerts\":[{\"status\":\"firing\","
                     "\"labels\":{\"alertname\":\"Down\",\"job\":\"api\"}}]}",
                     &n, &reason, detail);
    cr_assert_not_null(a);
    cr_assert_str_eq(a[0].resource, "api");
    cr_assert_eq(a[0].severity, TD_SEV_WARNING);
    cr_assert_eq(a[0].occurred_at_us, opts.now_us);
    free_alerts(a, n);
}

/* Parameters are copied into the test's process: arrays, not pointers. */
typedef struct bad_case {
    char json[160];
    char reason[16];
} bad_case;

static bad_case am_cases[] = {
    {"{\"version\":\"4\",", "not_json"},
    {"[1]", "not_object"},
    {"{\"version\":\"3\",\"alerts\":[]}", "bad_field"},
    {"{\"version\":\"4\"}", "missing_field"},
    {"{\"version\":\"4\",\"alerts\":[]}", "empty"},
    {"{\"version\":\"4\",\"alerts\":[{\"status\":\"firing\"}]}", "missing_field"},
    {"{\"version\":\"4\",\"alerts\":[{\"status\":\"odd\",\"labels\":{}}]}", "bad_field"},
    {"{\"version\":\"4\",\"alerts\":[{\"status\":\"firing\",\"labels\":{\"a\":1}}]}", "bad_field"},
    {"{\"version\":\"4\",\"alerts\":[{\"status\":\"firing\",\"labels\":{},\"fingerprint\":\"XYZ\"}]}", "bad_field"},
};

ParameterizedTestParameters(formats, alertmanager_rejects_with_a_reason)
{
    return cr_make_param_array(bad_case, am_cases, sizeof(am_cases) / sizeof(am_cases[0]));
}

ParameterizedTest(bad_case *c, formats, alertmanager_rejects_with_a_reason)
{
    size_t n;
    const char *reason;
    char detail[256];
    td_alert *a = am(c->json, &n, &reason, detail);
    cr_assert_null(a);
    cr_assert_str_eq(reason, c->reason, "%s: got %s (%s)", c->json, reason, detail);
}

static int
pd(const char *json, td_pd_event *ev, const char **reason, char *detail)
{
    return td_pagerduty_parse(json, strlen(json), &opts, ev, reason, detail, 512);
}

Test(formats, pagerduty_trigger_maps_fields)
{
    td_pd_event ev;
    const char *reason;
    char detail[512];
    int rc = pd("{\"routing_key\":\"k\",\"event_action\":\"trigger\",\"dedup_key\":\"d1\","
                "\"payload\":{\"summary\":\"disk full\",\"source\":\"db-01\",\"severity\":\"error\","
                "\"component\":\"pg\",\"class\":\"disk\",\"timestamp\":\"2026-11-25T21:40:00Z\"}}",
                &ev, &reason, detail);
    cr_assert_eq(rc, TD_OK, "%s", detail);
    cr_assert_eq(ev.action, TD_PD_TRIGGER);
    cr_assert_str_eq(ev.dedup_key, "d1");
    cr_assert_not(ev.key_generated);
    cr_assert_str_eq(ev.alert.source, "pagerduty");
    cr_assert_str_eq(ev.alert.resource, "db-01");
    cr_assert_str_eq(ev.alert.check, "disk");
    cr_assert_eq(ev.alert.severity, TD_SEV_MAJOR);
    cr_assert_str_eq(ev.alert.dedup_key, "d1");
    /* identity {source, dedup_key}: the resolve computes the same */
    td_pd_event r;
    rc = pd("{\"routing_key\":\"k\",\"event_action\":\"resolve\",\"dedup_key\":\"d1\"}", &r,
            &reason, detail);
    cr_assert_eq(rc, TD_OK);
    cr_assert_not(r.alert.firing);
    cr_assert_str_eq(r.alert.fp_hex, ev.alert.fp_hex);
    td_pd_event_clear(&ev);
    td_pd_event_clear(&r);
}

Test(formats, pagerduty_trigger_without_key_gets_a_fresh_one)
{
    td_pd_event a, b;
    const char *reason;
    char detail[512];
    const char *j = "{\"routing_key\":\"k\",\"event_action\":\"trigger\",\"payload\":"
                    "{\"summary\":\"s\",\"source\":\"x\",\"severity\":\"info\"}}";
    cr_assert_eq(pd(j, &a, &reason, detail), TD_OK);
    cr_assert_eq(pd(j, &b, &reason, detail), TD_OK);
    cr_assert(a.key_generated);
    cr_assert_eq(strlen(a.dedup_key), 32);
    cr_assert_str_neq(a.dedup_key, b.dedup_key);
    cr_assert_str_eq(a.alert.check, "event");
    td_pd_event_clear(&a);
    td_pd_event_clear(&b);
}

Test(formats, pagerduty_lists_every_problem)
{
    td_pd_event ev;
    const char *reason;
    char detail[512];
    int rc = pd("{\"event_action\":\"trigger\",\"payload\":{\"severity\":\"bad\"}}", &ev,
                &reason, detail);
    cr_assert_eq(rc, TD_ERR);
    cr_assert(strstr(detail, "'routing_key' is missing or blank"), "%s", detail);
    cr_assert(strstr(detail, "'payload.summary' is missing or blank"), "%s", detail);
    cr_assert(strstr(detail, "'payload.source' is missing or blank"), "%s", detail);
    cr_assert(strstr(detail, "'payload.severity' must be one of"), "%s", detail);
}

Test(formats, pagerduty_acknowledge_is_not_an_alert_for_the_pipeline)
{
    td_alert *a;
    size_t n;
    const char *reason;
    char detail[256];
    const char *j = "{\"routing_key\":\"k\",\"event_action\":\"acknowledge\",\"dedup_key\":\"d\"}";
    cr_assert_eq(td_pagerduty_decode(j, strlen(j), &opts, &a, &n, &reason, detail, 256), TD_ERR);
    cr_assert_str_eq(reason, "bad_field");
    const char *k = "{\"routing_key\":\"k\",\"event_action\":\"resolve\",\"dedup_key\":\"d\"}";
    cr_assert_eq(td_pagerduty_decode(k, strlen(k), &opts, &a, &n, &reason, detail, 256), TD_OK);
    cr_assert_eq(n, 1);
    free_alerts(a, n);
}

/* The native alert: decoding, validation with reasons, and the fingerprint
 * (Alertmanager's FNV-1a with upstream test vectors). */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/alert.h"

TestSuite(alert, .timeout = 10);

static const td_decode_opts opts = {.max_size = 4096, .now_us = 1700000000000000LL};

Test(alert, empty_label_set_hashes_to_the_fnv_offset_basis)
{
    char hex[17];
    td_fp_hex(td_fnv1a_labels(NULL, NULL, 0), hex);
    cr_assert_str_eq(hex, "cbf29ce484222325");
}

Test(alert, upstream_vector_with_one_label)
{
    const char *n[] = {"first-label"}, *v[] = {"first-label-value"};
    cr_assert_eq(td_fnv1a_labels(n, v, 1), 5146282821936882169ULL);
}

Test(alert, upstream_vector_with_two_sorted_labels)
{
    const char *n[] = {"fear", "name"}, *v[] = {"love is not enough", "garland, briggs"};
    char hex[17];
    td_fp_hex(td_fnv1a_labels(n, v, 2), hex);
    cr_assert_str_eq(hex, "507a62d79ee76c9a");
}

Test(alert, the_fixture_webhook_labels_hash_to_alertmanagers_value)
{
    const char *n[] = {"alertname", "instance", "job", "monitor", "severity"};
    const char *v[] = {"ProbeFailure", "https://server.example.org", "http_checks",
                       "master", "critical"};
    char hex[17];
    td_fp_hex(td_fnv1a_labels(n, v, 5), hex);
    cr_assert_str_eq(hex, "fe986f5dcb3e6510");
}

Test(alert, a_minimal_alert_gets_the_documented_defaults)
{
    const char *msg = "{\"source\":\"prometheus\",\"resource\":\"web-01\",\"check\":\"up\"}";
    td_alert *a;
    size_t n;
    const char *reason = NULL;
    char detail[256];
    cr_assert_eq(td_alert_decode(msg, strlen(msg), &opts, &a, &n, &reason, detail,
                                 sizeof(detail)), TD_OK, "%s", detail);
    cr_assert_eq(n, 1);
    cr_assert(a[0].firing);
    cr_assert_eq(a[0].severity, TD_SEV_WARNING);
    cr_assert_eq(a[0].occurred_at_us, opts.now_us);
    cr_assert_null(a[0].summary);
    /* fingerprint = FNV-1a over {check=up, resource=web-01, source=prometheus} */
    const char *nm[] = {"check", "resource", "source"}, *vl[] = {"up", "web-01", "prometheus"};
    cr_assert_eq(a[0].fp, td_fnv1a_labels(nm, vl, 3));
    td_alert_clear(&a[0]);
    free(a);
}

Test(alert, dedup_key_alone_with_source_makes_the_identity)
{
    const char *m1 = "{\"source\":\"pd\",\"resource\":\"a\",\"check\":\"x\",\"dedup_key\":\"k1\"}";
    const char *m2 = "{\"source\":\"pd\",\"resource\":\"b\",\"check\":\"y\",\"dedup_key\":\"k1\","
                     "\"status\":\"resolved\",\"severity\":\"critical\"}";
    td_alert *a, *b;
    size_t n;
    const char *reason;
    char detail[256];
    cr_assert_eq(td_alert_decode(m1, strlen(m1), &opts, &a, &n, &reason, detail, sizeof(detail)), TD_OK);
    cr_assert_eq(td_alert_decode(m2, strlen(m2), &opts, &b, &n, &reason, detail, sizeof(detail)), TD_OK);
    cr_assert_str_eq(a[0].fp_hex, b[0].fp_hex);
    cr_assert_not(b[0].firing);
    cr_assert_eq(b[0].severity, TD_SEV_CRITICAL);
    td_alert_clear(&a[0]);
    td_alert_clear(&b[0]);
    free(a);
    free(b);
}

Test(alert, identity_labels_split_alerts_and_other_labels_do_not)
{
    const char *ids[] = {"mount"};
    td_decode_opts o = opts;
    o.identity_labels = ids;
    o.n_identity_labels = 1;
    const char *m1 = "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"disk\",\"labels\":{\"mount\":\"/\",\"x\":\"1\"}}";
    const char *m2 = "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"disk\",\"labels\":{\"mount\":\"/var\",\"x\":\"1\"}}";
    const char *m3 = "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"disk\",\"labels\":{\"mount\":\"/\",\"x\":\"2\"}}";
    td_alert *a, *b, *c;
    size_t n;
    const char *reason;
    char d[256];
    cr_assert_eq(td_alert_decode(m1, strlen(m1), &o, &a, &n, &reason, d, sizeof(d)), TD_OK);
    cr_assert_eq(td_alert_decode(m2, strlen(m2), &o, &b, &n, &reason, d, sizeof(d)), TD_OK);
    cr_assert_eq(td_alert_decode(m3, strlen(m3), &o, &c, &n, &reason, d, sizeof(d)), TD_OK);
    cr_assert_neq(a[0].fp, b[0].fp);
    cr_assert_eq(a[0].fp, c[0].fp);
    cr_assert_str_eq(a[0].labels[0].name, "mount", "labels are sorted by name");
    td_alert_clear(&a[0]); td_alert_clear(&b[0]); td_alert_clear(&c[0]);
    free(a); free(b); free(c);
}

Test(alert, an_alertmanager_fingerprint_is_kept_as_the_identity)
{
    const char *m = "{\"source\":\"alertmanager\",\"resource\":\"r\",\"check\":\"c\","
                    "\"dedup_key\":\"fe986f5dcb3e6510\"}";
    td_alert *a;
    size_t n;
    const char *reason;
    char d[256];
    cr_assert_eq(td_alert_decode(m, strlen(m), &opts, &a, &n, &reason, d, sizeof(d)), TD_OK);
    cr_assert_str_eq(a[0].fp_hex, "fe986f5dcb3e6510");
    td_alert_clear(&a[0]);
    free(a);
}

Test(alert, an_array_decodes_every_alert)
{
    const char *m = "[{\"source\":\"s\",\"resource\":\"r1\",\"check\":\"c\"},"
                    "{\"source\":\"s\",\"resource\":\"r2\",\"check\":\"c\","
                    "\"occurred_at\":\"2026-10-01T12:00:00.5+02:00\"}]";
    td_alert *a;
    size_t n;
    const char *reason;
    char d[256];
    cr_assert_eq(td_alert_decode(m, strlen(m), &opts, &a, &n, &reason, d, sizeof(d)), TD_OK, "%s", d);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(a[1].resource, "r2");
    char t[32];
    td_format_rfc3339(a[1].occurred_at_us, t);
    cr_assert_str_eq(t, "2026-10-01T10:00:00.500000Z");
    for (size_t i = 0; i < n; i++)
        td_alert_clear(&a[i]);
    free(a);
}

struct bad_case {
    char msg[160];
    char reason[16];
    char detail[96];
};

static struct bad_case bad_cases[] = {
    {"{\"source\":\"s\",\"resource\":\"r\"}", "missing_field", "missing required field 'check'"},
    {"{\"source\":\"s\",\"resource\":\"\",\"check\":\"c\"}", "missing_field", "required field 'resource' is empty"},
    {"{\"source\":1,\"resource\":\"r\",\"check\":\"c\"}", "bad_field", "field 'source' must be a string"},
    {"{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"status\":\"open\"}", "bad_field", "status 'open' is not firing or resolved"},
    {"{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"severity\":\"high\"}", "bad_field", "severity 'high' is not one of critical major minor warning info"},
    {"{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"occurred_at\":\"yesterday\"}", "bad_field", "occurred_at 'yesterday' is not an RFC 3339 time"},
    {"{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"occurred_at\":\"2026-13-01T00:00:00Z\"}", "bad_field", "occurred_at '2026-13-01T00:00:00Z' is not an RFC 3339 time"},
    {"{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"labels\":[1]}", "bad_field", "labels must be an object of strings"},
    {"{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"labels\":{\"a\":1}}", "bad_field", "label 'a' must be a string of at most 1024 bytes"},
    {"{\"source\":\"s\",\"resource\":\"r\\u0000x\",\"check\":\"c\"}", "not_json", ""},
    {"[]", "empty", "an empty array holds no alert"},
    {"42", "not_object", "an alert must be a JSON object"},
    {"[{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\"},7]", "not_object", "an alert must be a JSON object (alert 1)"},
    {"{\"source\":\"s\",", "not_json", ""},
    {"{\"source\":\"s\",\"source\":\"t\",\"resource\":\"r\",\"check\":\"c\"}", "not_json", ""},
    {"{\"source\":\"\xc3\x28\",\"resource\":\"r\",\"check\":\"c\"}", "not_utf8", ""},
};

ParameterizedTestParameters(alert, bad_messages_are_rejected_with_a_reason)
{
    return cr_make_param_array(struct bad_case, bad_cases, sizeof(bad_cases) / sizeof(bad_cases[0]));
}

ParameterizedTest(struct bad_case *c, alert, bad_messages_are_rejected_with_a_reason)
{
    td_alert *a = (td_alert *)1;
    size_t n = 99;
    const char *reason = NULL;
    char d[256] = "";
    cr_assert_eq(td_alert_decode(c->msg, strlen(c->msg), &opts, &a, &n, &reason, d, sizeof(d)), TD_ERR);
    cr_assert_null(a);
    cr_assert_eq(n, 0);
    cr_assert_str_eq(reason, c->reason, "message %s", c->msg);
    if (c->detail[0])
        cr_assert_str_eq(d, c->detail);
}

Test(alert, a_message_over_the_size_limit_is_too_big_before_parsing)
{
    char big[5000];
    memset(big, ' ', sizeof(big));
    td_alert *a;
    size_t n;
    const char *reason;
    char d[256];
    cr_assert_eq(td_alert_decode(big, sizeof(big), &opts, &a, &n, &reason, d, sizeof(d)), TD_ERR);
    cr_assert_str_eq(reason, "too_big");
    cr_assert_str_eq(d, "message of 5000 bytes exceeds the limit of 4096");
}

Test(alert, rfc3339_times_parse_with_offsets_and_fractions)
{
    int64_t us;
    cr_assert_eq(td_parse_rfc3339("1970-01-01T00:00:00Z", &us), TD_OK);
    cr_assert_eq(us, 0);
    cr_assert_eq(td_parse_rfc3339("2024-02-29T23:59:59.123456789-01:30", &us), TD_OK);
    char t[32];
    td_format_rfc3339(us, t);
    cr_assert_str_eq(t, "2024-03-01T01:29:59.123456Z");
    cr_assert_eq(td_parse_rfc3339("2024-02-29T23:59:59", &us), TD_ERR, "offset required");
    cr_assert_eq(td_parse_rfc3339("2024-02-29T23:59:59Zjunk", &us), TD_ERR);
}

/* ---- the one-pass scanner (alert_scan.c) against Jansson's path ---------- */

static const char *const ident_labels[] = {"env"};
static const td_decode_opts scan_opts = {.max_size = 4096, .now_us = 1700000000000000LL,
                                         .identity_labels = ident_labels,
                                         .n_identity_labels = 1};

/* Decode msg both ways; true when the scanner took it (and then both agree). */
static bool
scanned_same(const char *msg)
{
    td_alert *a = NULL, *t = NULL;
    size_t n = 0, nt = 0;
    const char *reason = NULL;
    char detail[256];
    bool took = td_alert_scan(msg, strlen(msg), &scan_opts, &a, &n) == TD_OK;
    int rc = td_alert_decode_tree(msg, strlen(msg), &scan_opts, &t, &nt, &reason, detail,
                                  sizeof(detail));
    if (took) {
        cr_assert_eq(rc, TD_OK, "the scanner took what Jansson's path refuses: %s", msg);
        cr_assert_eq(n, nt);
        for (size_t i = 0; i < n; i++) {
            cr_assert(td_alert_same(&a[i], &t[i]), "alert %zu differs: %s", i, msg);
            cr_assert_not_null(a[i].mem);
            td_alert_clear(&a[i]);
        }
        free(a);
    } else {
        cr_assert_null(a);
        cr_assert_eq(n, 0);
    }
    for (size_t i = 0; i < nt; i++)
        td_alert_clear(&t[i]);
    free(t);
    return took;
}

Test(alert, the_scanner_takes_the_common_shapes_and_agrees_with_jansson)
{
    static const char *const ok[] = {
        "{\"source\":\"prometheus\",\"resource\":\"web-01\",\"check\":\"up\"}",
        " {\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"severity\":\"critical\","
        "\"status\":\"resolved\",\"occurred_at\":\"2026-11-25T10:00:00.123456Z\","
        "\"summary\":\"disk \\\"/\\\" full\\n\",\"labels\":{\"zone\":\"b\",\"env\":\"prod\","
        "\"a\":\"\"}} \n",
        "{\"source\":\"s\",\"resource\":\"h\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\xa5\",\"check\":\"c\","
        "\"dedup_key\":\"k\",\"ci\":\"db-01\",\"labels\":null,\"summary\":null}",
        "{\"source\":\"alertmanager\",\"resource\":\"r\",\"check\":\"c\","
        "\"dedup_key\":\"0123456789abcdef\"}",
        /* unknown fields with simple values are skipped; empty optional
         * fields are absent */
        "{\"x\":true,\"source\":\"s\",\"y\":null,\"resource\":\"r\",\"check\":\"c\","
        "\"z\":\"text\",\"w\":false,\"status\":\"\",\"severity\":\"\",\"summary\":\"\"}",
        "[{\"source\":\"s\",\"resource\":\"r\",\"check\":\"a\"},"
        " {\"source\":\"s\",\"resource\":\"r\",\"check\":\"b\",\"labels\":{}}]",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
        cr_assert(scanned_same(ok[i]), "declined: %s", ok[i]);
}

Test(alert, the_scanner_declines_what_it_is_not_sure_of_and_jansson_decides)
{
    static const char *const declined[] = {
        "", "[]", "{}", "null", "{\"source\":\"s\",\"resource\":\"r\"}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"\"}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"source\":\"t\"}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"labels\":{\"a\":\"1\",\"a\":\"2\"}}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"x\":1,\"x\":2}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"x\":\"1\",\"x\":\"2\"}",
        "{\"source\":\"s\\u0041\",\"resource\":\"r\",\"check\":\"c\"}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"n\":12}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"o\":{}}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"labels\":{\"a\":1}}",
        "{\"source\":\"s\",\"resource\":\"\xc0\xaf\",\"check\":\"c\"}",   /* overlong */
        "{\"source\":\"s\",\"resource\":\"\xed\xa0\x80\",\"check\":\"c\"}", /* surrogate */
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\"} x",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"status\":\"open\"}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"severity\":\"high\"}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",\"occurred_at\":\"yesterday\"}",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\"",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\",}",
        "[{\"source\":\"s\",\"resource\":\"r\",\"check\":\"c\"},1]",
        "{\"source\":\"s\",\"resource\":\"r\",\"check\":\"tab\there\"}",
    };
    for (size_t i = 0; i < sizeof(declined) / sizeof(*declined); i++)
        cr_assert_not(scanned_same(declined[i]), "taken: %s", declined[i]);
}

Test(alert, the_scanner_refuses_a_field_over_its_limit_like_jansson)
{
    char msg[1200];
    snprintf(msg, sizeof(msg), "{\"source\":\"s\",\"resource\":\"%01025d\",\"check\":\"c\"}", 0);
    cr_assert_not(scanned_same(msg));
    snprintf(msg, sizeof(msg), "{\"source\":\"s\",\"resource\":\"%01024d\",\"check\":\"c\"}", 0);
    cr_assert(scanned_same(msg));
}

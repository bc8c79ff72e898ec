/* The syslog parser: the RFC 5424 §6.5 examples, RFC 3164 as devices send
 * it, and malformed or hostile inputs, each with the exact result. A parsed
 * message is compared as one canonical line (see dump()), so a table row
 * states everything the parser found. Every input is parsed from a heap
 * copy of exactly its length, so ASan catches a read past the end. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "syslog_parse.h"

TestSuite(syslog_parse, .timeout = 10);

/* 2026-11-26T00:00:00Z: RFC 3164 years are inferred from it. */
#define NOW_US 1795651200000000LL

static void
fmt_ts(int64_t us, char *out, size_t n)
{
    if (us == 0) {
        snprintf(out, n, "-");
        return;
    }
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(us % 1000000));
}

static void
put_str(char **p, const char *key, tds_str s)
{
    *p += sprintf(*p, " %s=", key);
    if (!s.p) {
        *p += sprintf(*p, "-");
        return;
    }
    memcpy(*p, s.p, s.n);
    *p += s.n;
}

/* "5424 <f.s> ts host app procid msgid [sd...] msg=..." or "ERR reason". */
static char *
parse_dump(const char *in, size_t len, int32_t offset_s)
{
    static char out[200000];
    char *copy = malloc(len ? len : 1), *scratch = malloc(len ? len : 1);
    memcpy(copy, in, len);
    tds_parse_opts o = {.now_us = NOW_US, .local_offset_s = offset_s};
    tds_msg m;
    const char *reason = NULL;
    int rc = tds_parse(copy, len, &o, &m, scratch, &reason);
    if (rc != 0) {
        snprintf(out, sizeof(out), "ERR %s", reason);
    } else {
        char ts[96], *p = out;
        fmt_ts(m.ts_us, ts, sizeof(ts));
        p += sprintf(p, "%s ", m.format == TDS_RFC5424 ? "5424" : "3164");
        if (m.has_pri)
            p += sprintf(p, "<%d.%d>", m.facility, m.severity);
        else
            p += sprintf(p, "<none %d.%d>", m.facility, m.severity);
        p += sprintf(p, " ts=%s", ts);
        if (m.seq >= 0)
            p += sprintf(p, " seq=%ld", m.seq);
        put_str(&p, "host", m.host);
        put_str(&p, "app", m.app);
        put_str(&p, "pid", m.procid);
        put_str(&p, "msgid", m.msgid);
        for (size_t i = 0; i < m.n_params; i++) {
            p += sprintf(p, " [%.*s %.*s=", (int)m.params[i].id.n, m.params[i].id.p,
                         (int)m.params[i].name.n, m.params[i].name.p);
            memcpy(p, m.params[i].value.p, m.params[i].value.n);
            p += m.params[i].value.n;
            *p++ = ']';
        }
        put_str(&p, "msg", m.msg);
        *p = '\0';
    }
    free(copy);
    free(scratch);
    return out;
}

typedef struct pcase {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen(in) */
    const char *want;
} pcase;

#define BOM "\xEF\xBB\xBF"

static pcase valid[] = {
    /* RFC 5424 §6.5, example 1 (BOM before the message). */
    {"rfc5424_example_1",
     "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - " BOM
     "'su root' failed for lonvick on /dev/pts/8", 0,
     "5424 <4.2> ts=2003-10-11T22:14:15.003000Z host=mymachine.example.com app=su "
     "pid=- msgid=ID47 msg='su root' failed for lonvick on /dev/pts/8"},
    /* Example 2: microseconds and a -07:00 offset, no BOM. */
    {"rfc5424_example_2",
     "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's "
     "time to make the do-nuts.", 0,
     "5424 <20.5> ts=2003-08-24T12:14:15.000003Z host=192.0.2.1 app=myproc pid=8710 "
     "msgid=- msg=%% It's time to make the do-nuts."},
    /* Example 3: structured data and a message. */
    {"rfc5424_example_3",
     "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
     "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] "
     BOM "An application event log entry...", 0,
     "5424 <20.5> ts=2003-10-11T22:14:15.003000Z host=mymachine.example.com "
     "app=evntslog pid=- msgid=ID47 [exampleSDID@32473 iut=3] [exampleSDID@32473 "
     "eventSource=Application] [exampleSDID@32473 eventID=1011] msg=An application "
     "event log entry..."},
    /* Example 4: two SD elements, no message. */
    {"rfc5424_example_4",
     "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
     "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]"
     "[examplePriority@32473 class=\"high\"]", 0,
     "5424 <20.5> ts=2003-10-11T22:14:15.003000Z host=mymachine.example.com "
     "app=evntslog pid=- msgid=ID47 [exampleSDID@32473 iut=3] [exampleSDID@32473 "
     "eventSource=Application] [exampleSDID@32473 eventID=1011] "
     "[examplePriority@32473 class=high] msg="},
    {"rfc5424_all_nil", "<0>1 - - - - - -", 0,
     "5424 <0.0> ts=- host=- app=- pid=- msgid=- msg="},
    {"rfc5424_sd_escapes",
     "<14>1 2026-01-02T03:04:05+01:30 h a p m [x@1 v=\"a\\\"b\\\\c\\]d\\x\"] hi", 0,
     "5424 <1.6> ts=2026-01-02T01:34:05.000000Z host=h app=a pid=p msgid=m "
     "[x@1 v=a\"b\\c]d\\x] msg=hi"},
    {"rfc5424_empty_param_value", "<14>1 - h a p m [x k=\"\"]", 0,
     "5424 <1.6> ts=- host=h app=a pid=p msgid=m [x k=] msg="},
    {"rfc5424_trailing_crlf_is_ignored", "<14>1 - h a p m - text\r\n", 0,
     "5424 <1.6> ts=- host=h app=a pid=p msgid=m msg=text"},
    {"rfc5424_message_keeps_inner_brackets", "<14>1 - h a p m - [not sd]", 0,
     "5424 <1.6> ts=- host=h app=a pid=p msgid=m msg=[not sd]"},
    {"rfc5424_utf8_message", "<14>1 - h a p m - " BOM "Grüße ✓", 0,
     "5424 <1.6> ts=- host=h app=a pid=p msgid=m msg=Grüße ✓"},
    {"rfc5424_leap_day", "<14>1 2024-02-29T23:59:59.999999Z h a p m -", 0,
     "5424 <1.6> ts=2024-02-29T23:59:59.999999Z host=h app=a pid=p msgid=m msg="},

    /* RFC 3164 §5.4 example 1, and variants seen in the wild. */
    {"rfc3164_example", "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for "
     "lonvick on /dev/pts/8", 0,
     "3164 <4.2> ts=2026-10-11T22:14:15.000000Z host=mymachine app=su pid=- msgid=- "
     "msg='su root' failed for lonvick on /dev/pts/8"},
    {"rfc3164_space_padded_day_and_ip_host", "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!", 0,
     "3164 <1.5> ts=2026-02-05T17:32:18.000000Z host=10.0.0.99 app=- pid=- msgid=- "
     "msg=Use the BFG!"},
    {"rfc3164_tag_with_pid", "<30>Nov 25 23:59:01 web-01 nginx[1234]: started", 0,
     "3164 <3.6> ts=2026-11-25T23:59:01.000000Z host=web-01 app=nginx pid=1234 "
     "msgid=- msg=started"},
    {"rfc3164_no_hostname_tag_with_pid", "<30>Nov 25 23:59:01 su[77]: denied", 0,
     "3164 <3.6> ts=2026-11-25T23:59:01.000000Z host=- app=su pid=77 msgid=- "
     "msg=denied"},
    {"rfc3164_no_hostname_tag_colon", "<30>Nov 25 23:59:01 sshd: ready", 0,
     "3164 <3.6> ts=2026-11-25T23:59:01.000000Z host=- app=sshd pid=- msgid=- "
     "msg=ready"},
    {"rfc3164_missing_pri_means_user_notice", "Nov 25 23:59:01 host app: text", 0,
     "3164 <none 1.5> ts=2026-11-25T23:59:01.000000Z host=host app=app pid=- "
     "msgid=- msg=text"},
    {"rfc3164_no_header_at_all", "<13>just some text", 0,
     "3164 <1.5> ts=- host=- app=- pid=- msgid=- msg=just some text"},
    {"rfc3164_no_header_but_a_tag", "<13>cron[9]: job done", 0,
     "3164 <1.5> ts=- host=- app=cron pid=9 msgid=- msg=job done"},
    {"rfc3164_rfc3339_timestamp", "<13>2026-11-25T10:00:00.123456+02:00 db-1 "
     "postgres[5]: ready", 0,
     "3164 <1.5> ts=2026-11-25T08:00:00.123456Z host=db-1 app=postgres pid=5 "
     "msgid=- msg=ready"},
    {"rfc3164_cisco_sequence_and_unsynced_clock",
     "<189>123: *Mar  1 18:46:11.123: %LINK-3-UPDOWN: Interface Gi0/1, changed "
     "state to down", 0,
     "3164 <23.5> ts=2026-03-01T18:46:11.123000Z seq=123 host=- app=- pid=- "
     "msgid=- msg=%LINK-3-UPDOWN: Interface Gi0/1, changed state to down"},
    {"rfc3164_cisco_with_zone_name",
     "<187>45: Nov 20 08:00:00.5 UTC: %BGP-5-ADJCHANGE: neighbor 10.0.0.2 Down", 0,
     "3164 <23.3> ts=2026-11-20T08:00:00.500000Z seq=45 host=- app=- pid=- "
     "msgid=- msg=%BGP-5-ADJCHANGE: neighbor 10.0.0.2 Down"},
    {"rfc3164_cisco_with_year", "<187>Mar  1 2025 18:46:11: %SYS-5-CONFIG_I: x", 0,
     "3164 <23.3> ts=2025-03-01T18:46:11.000000Z host=- app=- pid=- msgid=- "
     "msg=%SYS-5-CONFIG_I: x"},
    {"rfc3164_december_read_in_november_is_this_year", "<13>Dec 31 23:00:00 h a: x", 0,
     "3164 <1.5> ts=2025-12-31T23:00:00.000000Z host=h app=a pid=- msgid=- msg=x"},
    {"rfc3164_invalid_date_is_no_header", "<13>Feb 30 10:00:00 host app: x", 0,
     "3164 <1.5> ts=- host=- app=- pid=- msgid=- msg=Feb 30 10:00:00 host app: x"},
    {"rfc3164_timestamp_only", "<13>Oct 11 22:14:15", 0,
     "3164 <1.5> ts=2026-10-11T22:14:15.000000Z host=- app=- pid=- msgid=- msg="},
    {"rfc3164_pri_only", "<13>", 0,
     "3164 <1.5> ts=- host=- app=- pid=- msgid=- msg="},
    {"rfc3164_trailing_nul_and_lf", "<13>x: y\n\0", 10,
     "3164 <1.5> ts=- host=- app=x pid=- msgid=- msg=y"},
    {"rfc3164_version_like_prefix_without_space", "<13>1thing", 0,
     "3164 <1.5> ts=- host=- app=- pid=- msgid=- msg=1thing"},
};

/* Criterion re-executes the binary per test, so pointers do not survive as
 * parameters: the parameter is an index into the table. */
#define N_VALID (sizeof(valid) / sizeof(valid[0]))
static int valid_idx[N_VALID];

ParameterizedTestParameters(syslog_parse, valid_messages)
{
    for (size_t i = 0; i < N_VALID; i++)
        valid_idx[i] = (int)i;
    return cr_make_param_array(int, valid_idx, N_VALID);
}

ParameterizedTest(int *i, syslog_parse, valid_messages)
{
    const pcase *c = &valid[*i];
    size_t len = c->len ? c->len : strlen(c->in);
    cr_assert_str_eq(parse_dump(c->in, len, 0), c->want, "case %s", c->name);
}

/* Malformed and hostile input: the exact reason, never a crash. */
static char long_host[300], long_app[80], long_procid[160], long_msgid[60],
    long_sdname[80], many_params[2000], deep_sd[70000];

static pcase bad[] = {
    {"empty", "", 0, "ERR empty"},
    {"only_newlines", "\r\n\n", 0, "ERR empty"},
    {"lone_angle", "<", 0, "ERR bad_pri"},
    {"empty_pri", "<>1 - - - - - -", 0, "ERR bad_pri"},
    {"unterminated_pri", "<13", 0, "ERR bad_pri"},
    {"pri_over_191", "<192>1 - - - - - -", 0, "ERR bad_pri"},
    {"pri_four_digits", "<1000>x", 0, "ERR bad_pri"},
    {"pri_leading_zero", "<013>x", 0, "ERR bad_pri"},
    {"pri_negative", "<-1>x", 0, "ERR bad_pri"},
    {"pri_ten_digits", "<0000000001>x", 0, "ERR bad_pri"},
    {"pri_letters", "<abc>x", 0, "ERR bad_pri"},
    {"version_2", "<34>2 - - - - - -", 0, "ERR bad_version"},
    {"version_10", "<34>10 - - - - - -", 0, "ERR bad_version"},
    {"nothing_after_version", "<34>1 ", 0, "ERR bad_timestamp"},
    {"month_13", "<34>1 2003-13-11T22:14:15Z h a p m -", 0, "ERR bad_timestamp"},
    {"feb_29_not_leap", "<34>1 2003-02-29T22:14:15Z h a p m -", 0, "ERR bad_timestamp"},
    {"hour_24", "<34>1 2003-10-11T24:00:00Z h a p m -", 0, "ERR bad_timestamp"},
    {"seven_fraction_digits", "<34>1 2003-10-11T22:14:15.1234567Z h a p m -", 0,
     "ERR bad_timestamp"},
    {"no_offset", "<34>1 2003-10-11T22:14:15 h a p m -", 0, "ERR bad_timestamp"},
    {"truncated_timestamp", "<34>1 2003-10-1", 0, "ERR bad_timestamp"},
    {"hostname_256_chars", long_host, 0, "ERR bad_hostname"},
    {"truncated_after_hostname", "<34>1 - host", 0, "ERR bad_hostname"},
    {"app_name_49_chars", long_app, 0, "ERR bad_app_name"},
    {"procid_129_chars", long_procid, 0, "ERR bad_procid"},
    {"msgid_33_chars", long_msgid, 0, "ERR bad_msgid"},
    {"missing_structured_data", "<34>1 - h a p m", 0, "ERR bad_msgid"},
    {"unterminated_sd_element", "<34>1 - h a p m [id", 0, "ERR bad_sd"},
    {"unterminated_sd_value", "<34>1 - h a p m [id k=\"v]", 0, "ERR bad_sd"},
    {"sd_value_closed_element_open", "<34>1 - h a p m [id k=\"v\"", 0, "ERR bad_sd"},
    {"sd_escaped_quote_at_the_end", "<34>1 - h a p m [id k=\"v\\\"]", 0, "ERR bad_sd"},
    {"unquoted_sd_value", "<34>1 - h a p m [id k=v]", 0, "ERR bad_sd"},
    {"empty_sd_id", "<34>1 - h a p m [ k=\"v\"]", 0, "ERR bad_sd"},
    {"sd_name_33_chars", long_sdname, 0, "ERR bad_sd"},
    {"no_space_before_message", "<34>1 - h a p m [id k=\"v\"]x", 0, "ERR bad_sd"},
    {"message_where_sd_belongs", "<34>1 - h a p m hello", 0, "ERR bad_sd"},
    {"sd_element_without_params_then_garbage", "<34>1 - h a p m [id]]", 0, "ERR bad_sd"},
    {"33_sd_params", many_params, 0, "ERR too_many_params"},
    {"huge_unterminated_sd", deep_sd, 0, "ERR bad_sd"},
    {"embedded_nul", "<13>abc\0def", 11, "ERR nul_byte"},
    {"nul_inside_5424_header", "<13>1 - h\0 a p m -", 18, "ERR nul_byte"},
    {"invalid_utf8_byte", "<34>1 - h a p m - \xff", 0, "ERR not_utf8"},
    {"invalid_utf8_after_bom", "<34>1 - h a p m - " BOM "\xfe", 0, "ERR not_utf8"},
    {"overlong_slash", "<13>\xc0\xaf", 0, "ERR not_utf8"},
    {"utf16_surrogate", "<13>\xed\xa0\x80", 0, "ERR not_utf8"},
    {"above_u10ffff", "<13>\xf4\x90\x80\x80", 0, "ERR not_utf8"},
    {"truncated_utf8_sequence", "<13>abc\xe2\x82", 0, "ERR not_utf8"},
    {"lone_continuation_byte", "<13>\x80", 0, "ERR not_utf8"},
    {"latin1_in_rfc3164", "<13>Oct 11 22:14:15 h a: caf\xe9", 0, "ERR not_utf8"},
    {"invalid_utf8_in_sd_value", "<34>1 - h a p m [id k=\"\xc3\"]", 0, "ERR not_utf8"},
};

static void
build_hostile(void)
{
    char *p;
    p = long_host + sprintf(long_host, "<34>1 - ");
    memset(p, 'h', 256);
    strcpy(p + 256, " a p m -");
    p = long_app + sprintf(long_app, "<34>1 - h ");
    memset(p, 'a', 49);
    strcpy(p + 49, " p m -");
    p = long_procid + sprintf(long_procid, "<34>1 - h a ");
    memset(p, 'p', 129);
    strcpy(p + 129, " m -");
    p = long_msgid + sprintf(long_msgid, "<34>1 - h a p ");
    memset(p, 'm', 33);
    strcpy(p + 33, " -");
    p = long_sdname + sprintf(long_sdname, "<34>1 - h a p m [");
    memset(p, 's', 33);
    strcpy(p + 33, " k=\"v\"]");
    p = many_params + sprintf(many_params, "<34>1 - h a p m [id");
    for (int i = 0; i < 33; i++)
        p += sprintf(p, " k%d=\"%d\"", i, i);
    strcpy(p, "]");
    p = deep_sd + sprintf(deep_sd, "<34>1 - h a p m [id k=\"");
    memset(p, '\\', 65000); /* escapes all the way, no closing quote */
    p[65000] = '\0';
}

#define N_BAD (sizeof(bad) / sizeof(bad[0]))
static int bad_idx[N_BAD];

ParameterizedTestParameters(syslog_parse, malformed_messages)
{
    for (size_t i = 0; i < N_BAD; i++)
        bad_idx[i] = (int)i;
    return cr_make_param_array(int, bad_idx, N_BAD);
}

ParameterizedTest(int *i, syslog_parse, malformed_messages, .init = build_hostile)
{
    const pcase *c = &bad[*i];
    size_t len = c->len ? c->len : strlen(c->in);
    cr_assert_str_eq(parse_dump(c->in, len, 0), c->want, "case %s", c->name);
}

Test(syslog_parse, at_least_thirty_malformed_cases)
{
    cr_assert_geq(sizeof(bad) / sizeof(bad[0]), 30);
}

Test(syslog_parse, rfc3164_times_are_read_in_the_configured_local_zone)
{
    /* 10:00 at UTC+02:00 is 08:00Z. */
    cr_assert_str_eq(parse_dump("<13>Nov 25 10:00:00 h a: x", 26, 7200),
                     "3164 <1.5> ts=2026-11-25T08:00:00.000000Z host=h app=a pid=- "
                     "msgid=- msg=x");
}

Test(syslog_parse, every_prefix_of_a_valid_message_parses_or_fails_cleanly)
{
    const char *full = "<165>1 2003-10-11T22:14:15.003Z mymachine evntslog - ID47 "
                       "[exampleSDID@32473 iut=\"3\" eventSource=\"App\\\"x\"] " BOM "msg";
    size_t n = strlen(full);
    for (size_t i = 0; i <= n; i++)
        parse_dump(full, i, 0); /* ASan: the heap copy is exactly i bytes */
}

Test(syslog_parse, utf8_cut_never_splits_a_character)
{
    const char *s = "ab\xe2\x82\xac"; /* "ab€" */
    cr_assert_eq(tds_utf8_cut(s, 5, 5), 5);
    cr_assert_eq(tds_utf8_cut(s, 5, 4), 2);
    cr_assert_eq(tds_utf8_cut(s, 5, 3), 2);
    cr_assert_eq(tds_utf8_cut(s, 5, 2), 2);
    cr_assert_eq(tds_utf8_cut("abcdef", 6, 3), 3);
}

Test(syslog_parse, names_of_facilities_and_severities)
{
    cr_assert_eq(tds_facility_parse("local7", 6), 23);
    cr_assert_eq(tds_facility_parse("KERN", 4), 0);
    cr_assert_eq(tds_facility_parse("23", 2), 23);
    cr_assert_eq(tds_facility_parse("24", 2), -1);
    cr_assert_eq(tds_severity_parse("warn", 4), 4);
    cr_assert_eq(tds_severity_parse("crit", 4), 2);
    cr_assert_eq(tds_severity_parse("8", 1), -1);
    cr_assert_str_eq(tds_severity_name(3), "err");
}

Test(syslog_parse, whole_second_timestamps_are_marked_coarse)
{
    static const struct { const char *in; bool coarse; } cases[] = {
        {"<13>Nov 25 10:00:00 h a: x", true},
        {"<13>Nov 25 10:00:00.250 h a: x", false},
        {"<13>1 2026-11-25T10:00:00Z h a p m -", true},
        {"<13>1 2026-11-25T10:00:00.5Z h a p m -", false},
        {"<13>2026-11-25T10:00:00+01:00 h a: x", true},
    };
    char scratch[128];
    tds_parse_opts o = {.now_us = NOW_US};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tds_msg m;
        const char *reason;
        cr_assert_eq(tds_parse(cases[i].in, strlen(cases[i].in), &o, &m, scratch,
                               &reason), 0, "%s", cases[i].in);
        cr_assert_eq(m.ts_coarse, cases[i].coarse, "%s", cases[i].in);
    }
}


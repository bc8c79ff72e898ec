/* The CMDB import document as triagectl parses it before PostgreSQL
 * (daemon/cmdb_doc.c): the CSV of CIs turned into JSON, each way a CSV is
 * refused with its reason, and weekly maintenance day lists. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdlib.h>
#include <string.h>

#include "internal/cmdb_doc.h"

TestSuite(cmdb_doc, .timeout = 10);

static char *
csv_json(const char *text, size_t len)
{
    char err[512] = "";
    json_t *doc = td_cmdb_doc_parse(text, len, true, err, sizeof(err));
    cr_assert_not_null(doc, "refused: %s", err);
    char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    return s;
}

Test(cmdb_doc, csv_becomes_the_json_document)
{
    const char *t = "name,kind,aliases,addresses,criticality,attr.rack\r\n"
                    "cache-01,cache,\"cache-01.shop.example;redis-a\",10.0.4.41,medium,B2\r\n"
                    "\r\n"
                    "\"we said \"\"hi\"\"\",,,10.0.4.42 fd00::42,,\"two\nlines\"\n";
    char *s = csv_json(t, strlen(t));
    cr_assert_str_eq(s, "{\"cis\":[{\"addresses\":[\"10.0.4.41\"],\"aliases\":"
                        "[\"cache-01.shop.example\",\"redis-a\"],\"attributes\":{\"rack\":\"B2\"},"
                        "\"criticality\":\"medium\",\"kind\":\"cache\",\"name\":\"cache-01\"},"
                        "{\"addresses\":[\"10.0.4.42\",\"fd00::42\"],\"attributes\":"
                        "{\"rack\":\"two\\nlines\"},\"name\":\"we said \\\"hi\\\"\"}]}");
    free(s);
}

struct bad_csv {
    char text[120];
    size_t len; /* 0: strlen */
    char err[160];
};

static struct bad_csv bad[] = {
    {"kind\nhost\n", 0, "CSV header: no 'name' column"},
    {"name,owner\n", 0, "CSV header: unknown column 'owner' (expected name, kind, aliases, "
                        "addresses, criticality, attr.KEY)"},
    {"name,attr.\n", 0, "CSV header: unknown column 'attr.' (expected name, kind, aliases, "
                        "addresses, criticality, attr.KEY)"},
    {"name,kind,name\n", 0, "CSV header: column 'name' twice"},
    {"name\na,b\n", 0, "CSV line 2: more cells than columns"},
    /* found by reading for fuzz_cmdb: each was a silent change of the data */
    {"name\na\n\"b\nc\n", 0, "CSV line 3: a quoted cell is not closed"},
    {"name,kind\nweb\xe9,host\n", 0, "CSV line 2: not valid UTF-8"},
    {"name,aliases\nweb,a \xff\n", 0, "CSV line 2: not valid UTF-8"},
    {"name,attr.r\xe9\n", 0, "CSV header: not valid UTF-8"},
    {"name\nweb\0evil\n", 14, "CSV: a NUL byte at offset 8"},
};

ParameterizedTestParameters(cmdb_doc, a_bad_csv_is_refused_with_its_reason)
{
    return cr_make_param_array(struct bad_csv, bad, sizeof(bad) / sizeof(bad[0]));
}

ParameterizedTest(struct bad_csv *c, cmdb_doc, a_bad_csv_is_refused_with_its_reason)
{
    char err[512] = "";
    size_t len = c->len ? c->len : strlen(c->text);
    cr_assert_null(td_cmdb_doc_parse(c->text, len, true, err, sizeof(err)));
    cr_assert_str_eq(err, c->err);
}

Test(cmdb_doc, broken_json_says_where)
{
    char err[512] = "";
    cr_assert_null(td_cmdb_doc_parse("{\"cis\": [", 9, false, err, sizeof(err)));
    cr_assert(strstr(err, "1:9: not valid JSON: ") == err, "%s", err);
    cr_assert_null(td_cmdb_doc_parse("{\"a\":1,\"a\":2}", 13, false, err, sizeof(err)));
    json_t *d = td_cmdb_doc_parse("{\"cis\":[]}xx", 10, false, err, sizeof(err));
    cr_assert_not_null(d); /* LEN bytes, not up to the NUL */
    json_decref(d);
}

Test(cmdb_doc, day_lists)
{
    static const struct {
        const char *in, *out;
    } ok[] = {{"Mon-Fri", "{1,2,3,4,5}"}, {"sat,Sunday", "{6,7}"}, {"1,3-5", "{1,3,4,5}"},
              {"Wed,wed,3", "{3}"}, {"tues-THURSDAY", "{2,3,4}"}, {"1-7", "{1,2,3,4,5,6,7}"}};
    static const char *const bad_days[] = {"", ",", "Fri-Mon", "mo", "monxyz", "Mon-", "-Mon",
                                           "8", "0", "Mon;Tue", "Mon--Tue"};
    char out[64];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert(td_maint_days_parse(ok[i].in, out, sizeof(out)), "%s", ok[i].in);
        cr_assert_str_eq(out, ok[i].out, "%s", ok[i].in);
    }
    for (size_t i = 0; i < sizeof(bad_days) / sizeof(bad_days[0]); i++)
        cr_assert_not(td_maint_days_parse(bad_days[i], out, sizeof(out)), "'%s'", bad_days[i]);
}

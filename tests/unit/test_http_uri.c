/* What the HTTP API reads from the request target (daemon/http_uri.c):
 * routing with 404/405, path arguments, query values and cursors. */
#include <criterion/criterion.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/http_uri.h"

TestSuite(http_uri, .timeout = 10);

Test(http_uri, routes_by_method_and_path)
{
    const char *rest;
    char allow[32];
    cr_assert_eq(td_route_find(EVHTTP_REQ_GET, "/api/v1/incidents", &rest, allow, 32),
                 TD_ROUTE_INCIDENTS_GET);
    cr_assert_null(rest);
    cr_assert_eq(td_route_find(EVHTTP_REQ_POST, "/api/v1/incidents/7/close", &rest, allow, 32),
                 TD_ROUTE_INCIDENT_ACTION);
    cr_assert_str_eq(rest, "7/close");
    cr_assert_eq(td_route_find(EVHTTP_REQ_HEAD, "/healthz", &rest, allow, 32), TD_ROUTE_HEALTHZ);
    cr_assert_eq(td_route_find(EVHTTP_REQ_PUT, "/api/v1/maintenance", &rest, allow, 32), -1);
    cr_assert_str_eq(allow, "GET, POST");
    cr_assert_eq(td_route_find(EVHTTP_REQ_GET, "/api/v1/incidents/", &rest, allow, 32), -1);
    cr_assert_str_eq(allow, ""); /* a prefix route needs something after it: 404 */
    cr_assert_eq(td_route_find(EVHTTP_REQ_GET, "/api/v1/incidentsX", &rest, allow, 32), -1);
    cr_assert_str_eq(allow, "");
}

Test(http_uri, path_arguments)
{
    char *ref, *name;
    const char *action;
    long long id;
    cr_assert_eq(td_api_action_path("INC-7/comments", &ref, &action), 0);
    cr_assert_str_eq(ref, "INC-7");
    cr_assert_str_eq(action, "comment");
    free(ref);
    cr_assert_eq(td_api_action_path("/close", &ref, &action), -1);
    cr_assert_eq(td_api_action_path("7/delete", &ref, &action), -1);
    cr_assert_eq(td_api_service_path("Web%20Shop/availability", &name), 0);
    cr_assert_str_eq(name, "Web Shop");
    free(name);
    cr_assert_eq(td_api_service_path("Shop/uptime", &name), -1);
    cr_assert_eq(td_api_service_path("a%2Fb/availability", &name), -2);
    /* was looked up as "web": C cut the decoded name at the NUL */
    cr_assert_eq(td_api_service_path("web%00evil/availability", &name), -2);
    cr_assert_eq(td_api_id_parse("17", &id), 0);
    cr_assert_eq(id, 17);
    cr_assert_eq(td_api_id_parse("9223372036854775807", &id), 0);
    static const char *const bad_ids[] = {"", "0", "-1", "+1", " 1", "1x", "0x10",
                                          "9223372036854775808"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++)
        cr_assert_eq(td_api_id_parse(bad_ids[i], &id), -1, "'%s'", bad_ids[i]);
}

Test(http_uri, query_values)
{
    long l;
    uint64_t ev;
    cr_assert_eq(td_api_limit_parse("500", 500, &l), 0);
    cr_assert_eq(l, 500);
    cr_assert_eq(td_api_limit_parse("501", 500, &l), -1);
    cr_assert_eq(td_api_limit_parse("0", 500, &l), -1);
    cr_assert_eq(td_api_limit_parse(" 5", 500, &l), -1);
    cr_assert_eq(td_api_limit_parse("99999999999999999999999", 500, &l), -1);
    cr_assert_eq(td_api_priority_parse("P2"), 2);
    cr_assert_eq(td_api_priority_parse("p5"), 5);
    cr_assert_eq(td_api_priority_parse("3"), 3);
    cr_assert_eq(td_api_priority_parse("P6"), -1);
    cr_assert_eq(td_api_priority_parse("P"), -1);
    cr_assert_eq(td_api_priority_parse("22"), -1);
    cr_assert_eq(td_api_priority_parse(""), -1);
    cr_assert_eq(td_api_event_id_parse("18446744073709551615", &ev), 0);
    cr_assert_eq(ev, UINT64_MAX);
    cr_assert_eq(td_api_event_id_parse("18446744073709551616", &ev), -1);
    cr_assert_eq(td_api_event_id_parse("-1", &ev), -1); /* strtoull made it 2^64-1 */
}

Test(http_uri, cursors_round_trip_and_strangers_are_refused)
{
    char enc[64], dec[24];
    const long long ids[] = {1, 42, 123, 99999, 9223372036854775807LL};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char want[24];
        snprintf(want, sizeof(want), "%lld", ids[i]);
        td_api_cursor_encode(ids[i], enc);
        cr_assert_eq(td_api_cursor_decode(enc, dec), 0, "%s", enc);
        cr_assert_str_eq(dec, want);
    }
    td_api_cursor_encode(123, enc);
    cr_assert_str_eq(enc, "aTEyMw");
    /* "i" and 20 nines: more than a bigint */
    static const char *const bad_c[] = {"", "aQ", "aTEyMw==", "eDEyMw", "aTEyM!",
                                        "aTk5OTk5OTk5OTk5OTk5OTk5OTk5"};
    for (size_t i = 0; i < sizeof(bad_c) / sizeof(bad_c[0]); i++)
        cr_assert_eq(td_api_cursor_decode(bad_c[i], dec), -1, "'%s'", bad_c[i]);
}

/* The in-memory CMDB graph: binding order, aliases and addresses, the
 * HOST:PORT rule, bind labels, upstream and impacted-services walks, cycles. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "internal/cmdb.h"

TestSuite(cmdb, .timeout = 10);

/*   1 core-sw                      services: 100 = {4}, 200 = {5, 6}
 *   2 host-a  -> 1                           300 = {2}
 *   3 host-b  -> 1
 *   4 app-x   -> 2
 *   5 app-y   -> 2, 3
 *   6 db      -> 3
 *   7 cyc-a   -> 8, 8 -> 7 (a cycle)
 */
static td_graph *
demo(void)
{
    td_graph *g = td_graph_new();
    td_graph_add_ci(g, 1, "core-sw", "switch-1\x1f" "core", "10.0.0.1");
    td_graph_add_ci(g, 2, "host-a", "host-a.example", "10.0.1.1\x1f" "fd00::a");
    td_graph_add_ci(g, 3, "host-b", "host-b.example\x1f" "core", "10.0.1.2");
    td_graph_add_ci(g, 4, "app-x", NULL, NULL);
    td_graph_add_ci(g, 5, "app-y", "", "");
    td_graph_add_ci(g, 6, "db", "host-a", "10.0.0.1"); /* alias and address taken */
    td_graph_add_ci(g, 7, "cyc-a", NULL, NULL);
    td_graph_add_ci(g, 8, "cyc-b", NULL, NULL);
    td_graph_add_relation(g, 2, 1);
    td_graph_add_relation(g, 3, 1);
    td_graph_add_relation(g, 4, 2);
    td_graph_add_relation(g, 5, 2);
    td_graph_add_relation(g, 5, 3);
    td_graph_add_relation(g, 6, 3);
    td_graph_add_relation(g, 7, 8);
    td_graph_add_relation(g, 8, 7);
    td_graph_add_relation(g, 4, 99); /* unknown parent: ignored */
    td_graph_add_service_ci(g, 100, 4);
    td_graph_add_service_ci(g, 200, 5);
    td_graph_add_service_ci(g, 200, 6);
    td_graph_add_service_ci(g, 300, 2);
    td_graph_seal(g);
    return g;
}

typedef struct {
    const char *key;
    int64_t want;
} lookup_case;

static lookup_case lookup_cases[] = {
    {"core-sw", 1},
    {"switch-1", 1},
    {"core", 1},            /* first CI with the alias wins */
    {"host-a", 2},          /* a name wins over another CI's alias */
    {"host-a.example", 2},
    {"10.0.1.1", 2},
    {"fd00::a", 2},
    {"fd00:0:0:0:0:0:0:a", 2}, /* canonical form */
    {"10.0.0.1", 1},        /* first CI with the address wins */
    {"10.0.1.1:9100", 2},   /* HOST:PORT */
    {"host-b:8080", 3},
    {"app-x", 4},
    {"10.0.9.9", 0},
    {"nope", 0},
    {"host-b:80:80", 0},
    {"host-b:", 0},
    {"", 0},
};

Test(cmdb, lookups_find_names_aliases_and_addresses)
{
    td_graph *g = demo();
    for (size_t i = 0; i < sizeof(lookup_cases) / sizeof(lookup_cases[0]); i++)
        cr_expect_eq(td_graph_lookup(g, lookup_cases[i].key), lookup_cases[i].want, "[%s]",
                     lookup_cases[i].key);
    td_graph_free(g);
}

static td_alert
alert(char *resource, char *ci)
{
    td_alert a = {0};
    a.source = "t";
    a.check = "c";
    a.resource = resource;
    a.ci = ci;
    return a;
}

Test(cmdb, binding_prefers_explicit_ci_then_resource_then_labels)
{
    td_graph *g = demo();
    td_label labels[2] = {{"host", "host-b"}, {"instance", "10.0.1.1:9100"}};
    const char *bind[] = {"instance", "host", NULL};

    td_alert a = alert("app-x", "db");
    cr_assert_eq(td_graph_bind(g, &a, bind), 6, "explicit ci wins");
    a = alert("app-x", "no-such-ci");
    cr_assert_eq(td_graph_bind(g, &a, bind), 4, "an unknown explicit ci falls back");
    a = alert("pod-123", NULL);
    a.labels = labels;
    a.n_labels = 2;
    cr_assert_eq(td_graph_bind(g, &a, bind), 2, "bind labels in their order");
    const char *bind2[] = {"host", NULL};
    cr_assert_eq(td_graph_bind(g, &a, bind2), 3);
    cr_assert_eq(td_graph_bind(g, &a, NULL), 0, "no labels configured: unbound");
    td_graph_free(g);
}

Test(cmdb, upstream_is_breadth_first_and_cycle_safe)
{
    td_graph *g = demo();
    int64_t out[16];
    size_t n = td_graph_upstream(g, 5, out, 16);
    cr_assert_eq(n, 3);
    cr_assert_eq(out[0], 2);
    cr_assert_eq(out[1], 3);
    cr_assert_eq(out[2], 1, "the switch once, after both hosts");
    cr_assert_eq(td_graph_upstream(g, 1, out, 16), 0);
    n = td_graph_upstream(g, 7, out, 16);
    cr_assert_eq(n, 1, "a cycle ends the walk");
    cr_assert_eq(out[0], 8);
    cr_assert_eq(td_graph_upstream(g, 5, out, 2), 2, "bounded by max");
    cr_assert_eq(td_graph_upstream(g, 42, out, 16), 0, "unknown CI");
    td_graph_free(g);
}

Test(cmdb, impacted_services_are_those_of_the_ci_and_what_depends_on_it)
{
    td_graph *g = demo();
    int64_t out[16];
    size_t n = td_graph_impacted_services(g, 1, out, 16);
    cr_assert_eq(n, 3);
    cr_assert_eq(out[0], 100);
    cr_assert_eq(out[1], 200);
    cr_assert_eq(out[2], 300);
    n = td_graph_impacted_services(g, 3, out, 16);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0], 200);
    cr_assert_eq(td_graph_impacted_services(g, 7, out, 16), 0);
    td_graph_free(g);
}

Test(cmdb, describe_remembers_both_walks_per_ci)
{
    td_graph *g = demo();
    const int64_t *up, *svc;
    size_t nup, nsvc;
    for (int round = 0; round < 2; round++) {
        cr_assert(td_graph_describe(g, 5, &up, &nup, &svc, &nsvc));
        cr_assert_eq(nup, 3);
        cr_assert_eq(up[0], 2);
        cr_assert_eq(up[2], 1);
        cr_assert_eq(nsvc, 1);
        cr_assert_eq(svc[0], 200);
        cr_assert(td_graph_describe(g, 1, &up, &nup, &svc, &nsvc));
        cr_assert_eq(nup, 0);
        cr_assert_eq(nsvc, 3);
        cr_assert_eq(svc[2], 300);
    }
    cr_assert_not(td_graph_describe(g, 42, &up, &nup, &svc, &nsvc));
    td_graph_free(g);
}

Test(cmdb, counts_and_memory)
{
    td_graph *g = demo();
    cr_assert_eq(td_graph_ci_count(g), 8);
    cr_assert_eq(td_graph_relation_count(g), 8, "the unknown parent is not counted");
    cr_assert_gt(td_graph_memory(g), 0);
    td_graph_free(g);
}

Test(cmdb, a_large_graph_binds_every_ci)
{
    td_graph *g = td_graph_new();
    char name[32], alias[32];
    for (int i = 1; i <= 20000; i++) {
        snprintf(name, sizeof(name), "ci-%d", i);
        snprintf(alias, sizeof(alias), "alias-%d", i);
        td_graph_add_ci(g, i, name, alias, NULL);
        if (i > 1)
            td_graph_add_relation(g, i, i / 2);
    }
    td_graph_seal(g);
    for (int i = 1; i <= 20000; i += 97) {
        snprintf(name, sizeof(name), "ci-%d", i);
        snprintf(alias, sizeof(alias), "alias-%d", i);
        cr_assert_eq(td_graph_lookup(g, name), i);
        cr_assert_eq(td_graph_lookup(g, alias), i);
    }
    int64_t out[64];
    cr_assert_eq(td_graph_upstream(g, 20000, out, 64), 14, "a binary tree of depth 14");
    cr_assert_eq(out[13], 1);
    td_graph_free(g);
}

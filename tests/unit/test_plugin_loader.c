/* Plugin loader: a good plugin loads; a missing file, a missing symbol, a
 * wrong ABI version and a wrong name are refused with a reason naming the
 * plugin. The test plugins are built by tests/plugins/. */
#include <criterion/criterion.h>
#include <string.h>

#include "internal/plugin_loader.h"

#define PLUGIN_DIR TD_BUILD_DIR "/tests/plugins"

TestSuite(plugin_loader, .timeout = 10);

Test(plugin_loader, a_good_plugin_loads_with_its_definition)
{
    td_plugin_handle *h = NULL;
    char err[512] = "";
    cr_assert_eq(td_plugin_open(PLUGIN_DIR, "good", &h, err, sizeof(err)), TD_OK,
                 "%s", err);
    const td_plugin *def = td_plugin_def(h);
    cr_assert_str_eq(def->name, "good");
    cr_assert_eq(def->kind, TD_PLUGIN_INPUT);
    cr_assert_eq(def->abi_version, TD_PLUGIN_ABI_VERSION);
    void *state = (void *)1;
    cr_assert_eq(def->init(NULL, &state, err, sizeof(err)), 0);
    cr_assert_null(state);
    td_plugin_close(h);
}

Test(plugin_loader, a_missing_file_is_refused_naming_the_plugin_and_path)
{
    td_plugin_handle *h = NULL;
    char err[512] = "";
    cr_assert_eq(td_plugin_open(PLUGIN_DIR, "absent", &h, err, sizeof(err)), TD_ERR);
    cr_assert_null(h);
    cr_assert_str_eq(err, "plugin absent: " PLUGIN_DIR "/absent.so: No such file or directory");
}

Test(plugin_loader, a_library_without_the_symbol_is_refused)
{
    td_plugin_handle *h = NULL;
    char err[512] = "";
    cr_assert_eq(td_plugin_open(PLUGIN_DIR, "nosym", &h, err, sizeof(err)), TD_ERR);
    cr_assert_str_eq(err, "plugin nosym: " PLUGIN_DIR
                          "/nosym.so does not export symbol 'triaged_plugin'");
}

Test(plugin_loader, a_plugin_for_another_abi_version_is_refused)
{
    td_plugin_handle *h = NULL;
    char err[512] = "", want[256];
    cr_assert_eq(td_plugin_open(PLUGIN_DIR, "badabi", &h, err, sizeof(err)), TD_ERR);
    snprintf(want, sizeof(want),
             "plugin badabi: built for plugin ABI version %u, this triaged speaks version %u",
             TD_PLUGIN_ABI_VERSION + 1, TD_PLUGIN_ABI_VERSION);
    cr_assert_str_eq(err, want);
}

Test(plugin_loader, a_plugin_whose_name_differs_from_its_file_is_refused)
{
    td_plugin_handle *h = NULL;
    char err[512] = "";
    cr_assert_eq(td_plugin_open(PLUGIN_DIR, "wrongname", &h, err, sizeof(err)), TD_ERR);
    cr_assert_str_eq(err, "plugin wrongname: calls itself 'somethingelse'");
}

Test(plugin_loader, a_name_with_a_slash_is_refused_before_touching_the_disk)
{
    td_plugin_handle *h = NULL;
    char err[512] = "";
    cr_assert_eq(td_plugin_open(PLUGIN_DIR, "../plugins/good", &h, err, sizeof(err)),
                 TD_ERR);
    cr_assert_str_eq(err, "plugin '../plugins/good': invalid name (letters, digits, _ and - only)");
}

Test(plugin_loader, names_come_from_load_when_set_and_from_sections_otherwise)
{
    td_config cfg = {0};
    char **names;
    size_t n;

    cfg.has_kafka = cfg.has_http = true;
    n = td_plugin_names(&cfg, &names);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(names[0], "in_kafka");
    cr_assert_str_eq(names[1], "out_kafka");
    cr_assert_str_eq(names[2], "in_http");
    td_plugin_names_free(names, n);

    cfg.plugins_load = "in_syslog, out_kafka  in_syslog";
    n = td_plugin_names(&cfg, &names);
    cr_assert_eq(n, 2, "a name listed twice loads once");
    cr_assert_str_eq(names[0], "in_syslog");
    cr_assert_str_eq(names[1], "out_kafka");
    td_plugin_names_free(names, n);

    cfg.plugins_load = "";
    n = td_plugin_names(&cfg, &names);
    cr_assert_eq(n, 0, "an empty load list loads nothing");
    td_plugin_names_free(names, n);
}

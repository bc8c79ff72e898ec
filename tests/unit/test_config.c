/* test_config.c — the config file, its environment overrides, the value
 * parsers, and the example file that the option table writes.
 *
 * Every test writes its config to a mkstemp file under /tmp, loads it and
 * removes it at once (the loader reads the whole file). Criterion runs each
 * test in its own process, so setenv() inside a test touches that test only.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal/config.h"
#include "internal/errors.h"

#ifndef TD_SOURCE_DIR
#error "TD_SOURCE_DIR must name the source tree"
#endif

TestSuite(config, .timeout = 10);

/* The smallest valid file: the two required sections, four lines, so the
 * text a test appends starts at line 5. */
#define BASE "[postgres]\nconninfo = host=db\n[redis]\nurl = redis://r:6379/0\n"

static char tmp_path[64];

static void
write_temp(const char *text)
{
    strcpy(tmp_path, "/tmp/td-config-XXXXXX");
    int fd = mkstemp(tmp_path);
    cr_assert(fd >= 0, "mkstemp failed");
    size_t n = strlen(text);
    cr_assert_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
}

/* Loads TEXT from a temporary file; tmp_path keeps its name for messages. */
static int
load_text(const char *text, td_config **cfg, td_errors *errs)
{
    write_temp(text);
    int rc = td_config_load(tmp_path, cfg, errs);
    unlink(tmp_path);
    return rc;
}

static td_config *
load_ok(const char *text)
{
    td_config *cfg = NULL;
    td_errors errs = { 0 };
    int rc = load_text(text, &cfg, &errs);
    cr_assert_eq(rc, TD_OK, "load failed: %s", errs.n ? errs.msgs[0] : "?");
    cr_assert_eq(errs.n, 0);
    cr_assert_not_null(cfg);
    return cfg;
}

/* Asserts that ERRS holds exactly one message, the temp file's path followed
 * by SUFFIX (":LINE: message"). */
static void
assert_one_file_error(const td_errors *errs, const char *suffix)
{
    char want[512];
    snprintf(want, sizeof(want), "%s%s", tmp_path, suffix);
    cr_assert_eq(errs->n, 1, "want 1 error, got %zu; first: %s", errs->n,
                 errs->n ? errs->msgs[0] : "(none)");
    cr_assert_str_eq(errs->msgs[0], want);
}

/* ------------------------------------------------------------------------ */
/* A good file */

Test(config, good_file_loads_with_typed_values_and_defaults)
{
    td_config *cfg = load_ok(
        "; triaged test config\n"
        "# hash comments too\n"
        "\n"
        "[triaged]\n"
        "  instance = node-a          ; names this instance\n"
        "log_level=debug\n"
        "[postgres]\n"
        "conninfo = host=127.0.0.1 port=5432 dbname=triaged\n"
        "migrate = YES\n"
        "[redis]\n"
        "url = \"redis://127.0.0.1:6379/0\"   # quoted\n"
        "[kafka]\n"
        "brokers = 127.0.0.1:9092\n"
        "incidents_topic = incidents      ; incident events are produced here\n"
        "[syslog]\n"
        "udp = 127.0.0.1:5514, 127.0.0.2:5514\n"
        "[incident]\n"
        "resolve_grace = 90s\n"
        "flap_threshold = 10\n"
        "[pipeline]\n"
        "batch_time = 50ms\n"
        "max_message_size = 64k\n"
        "identity_labels = env,  region\n");

    cr_assert_str_eq(cfg->instance, "node-a");
    cr_assert_eq(cfg->log_level, TD_LOG_DEBUG);
    cr_assert_str_eq(cfg->pg_conninfo, "host=127.0.0.1 port=5432 dbname=triaged");
    cr_assert(cfg->pg_migrate);
    cr_assert_str_eq(cfg->redis_url, "redis://127.0.0.1:6379/0");
    cr_assert(cfg->has_kafka);
    cr_assert_str_eq(cfg->kafka_brokers, "127.0.0.1:9092");
    cr_assert_str_eq(cfg->incidents_topic, "incidents");
    cr_assert(cfg->has_syslog);
    cr_assert_str_eq(cfg->syslog_udp, "127.0.0.1:5514 127.0.0.2:5514");
    cr_assert_null(cfg->syslog_tcp);
    cr_assert_null(cfg->syslog_rules);
    cr_assert_not(cfg->has_http);
    cr_assert_eq(cfg->resolve_grace_ms, 90000);
    cr_assert_eq(cfg->flap_threshold, 10);
    cr_assert_eq(cfg->batch_time_ms, 50);
    cr_assert_eq(cfg->max_message_size, 64 * 1024);
    cr_assert_str_eq(cfg->identity_labels, "env region");

    /* defaults */
    cr_assert_str_eq(cfg->kafka_group, "triaged");
    cr_assert_str_eq(cfg->alerts_topic, "alerts");
    cr_assert_str_eq(cfg->capacity_topic, "capacity");
    cr_assert_null(cfg->dead_letter_topic);
    cr_assert_str_eq(cfg->http_listen, "127.0.0.1:8080");
    cr_assert_null(cfg->http_tokens);
    cr_assert_not(cfg->http_open_reads);
    cr_assert_eq(cfg->http_max_body, 1024 * 1024);
    cr_assert_eq(cfg->batch_size, 10000);
    cr_assert_eq(cfg->queue_limit, 100000);
    cr_assert_eq(cfg->reopen_window_ms, 30 * 60 * 1000);
    cr_assert_eq(cfg->close_after_ms, 24LL * 60 * 60 * 1000);
    cr_assert_eq(cfg->correlation_window_ms, 10 * 60 * 1000);
    cr_assert_eq(cfg->flap_window_ms, 30 * 60 * 1000);
    cr_assert_str_eq(cfg->plugins_dir, "/usr/lib/triaged/plugins");
    cr_assert_null(cfg->plugins_load);
    td_config_free(cfg);
}

Test(config, minimal_file_uses_every_default)
{
    td_config *cfg = load_ok(BASE);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    cr_assert_str_eq(cfg->instance, host[0] ? host : "triaged");
    cr_assert_eq(cfg->log_level, TD_LOG_INFO);
    cr_assert_not(cfg->pg_migrate);
    cr_assert_not(cfg->has_kafka);
    cr_assert_not(cfg->has_syslog);
    cr_assert_not(cfg->has_http);
    cr_assert_null(cfg->kafka_brokers);
    cr_assert_str_eq(cfg->identity_labels, "");
    cr_assert_eq(cfg->max_message_size, 1024 * 1024);
    cr_assert_eq(cfg->resolve_grace_ms, 2 * 60 * 1000);
    cr_assert_eq(cfg->flap_threshold, 6);
    cr_assert_eq(cfg->batch_time_ms, 0); /* an idle lane's batch goes at once */
    td_config_free(cfg);
}

Test(config, a_bare_zero_is_a_duration_and_other_bare_numbers_are_not)
{
    int64_t ms = -1;
    cr_assert_eq(td_parse_duration("0", &ms), TD_OK);
    cr_assert_eq(ms, 0);
    cr_assert_eq(td_parse_duration("0ms", &ms), TD_OK);
    cr_assert_eq(ms, 0);
    cr_assert_eq(td_parse_duration("00", &ms), TD_OK);
    cr_assert_eq(ms, 0);
    cr_assert_eq(td_parse_duration("1", &ms), TD_ERR);
    cr_assert_eq(td_parse_duration("0x", &ms), TD_ERR);
    td_config *cfg = load_ok(BASE "[pipeline]\nbatch_time = 0\n");
    cr_assert_eq(cfg->batch_time_ms, 0);
    td_config_free(cfg);
}

Test(config, comment_signs_inside_a_word_or_quotes_are_part_of_the_value)
{
    td_config *cfg = load_ok(
        "[postgres]\n"
        "conninfo = \"password=a;b #c\"  ; a comment\n"
        "[redis]\n"
        "url = redis://h:1/0#frag;x\n"
        "[triaged]\n"
        "instance = a   #comment\n");
    cr_assert_str_eq(cfg->pg_conninfo, "password=a;b #c");
    cr_assert_str_eq(cfg->redis_url, "redis://h:1/0#frag;x");
    cr_assert_str_eq(cfg->instance, "a");
    td_config_free(cfg);
}

Test(config, crlf_line_ends_and_a_byte_order_mark_are_accepted)
{
    td_config *cfg = load_ok("\xEF\xBB\xBF[postgres]\r\nconninfo = x\r\n"
                             "[redis]\r\nurl = y\r\n");
    cr_assert_str_eq(cfg->pg_conninfo, "x");
    cr_assert_str_eq(cfg->redis_url, "y");
    td_config_free(cfg);
}

Test(config, a_very_long_line_is_read_whole)
{
    size_t n = 200000;
    char *text = malloc(n + 128);
    int off = sprintf(text, BASE "[triaged]\ninstance = ");
    memset(text + off, 'x', n);
    strcpy(text + off + n, "\n");
    td_config *cfg = load_ok(text);
    cr_assert_eq(strlen(cfg->instance), n);
    td_config_free(cfg);
    free(text);
}

Test(config, empty_plugin_list_differs_from_an_absent_one)
{
    td_config *cfg = load_ok(BASE "[plugins]\nload =\n");
    cr_assert_not_null(cfg->plugins_load);
    cr_assert_str_eq(cfg->plugins_load, "");
    td_config_free(cfg);
}

Test(config, a_repeated_section_header_continues_the_section)
{
    td_config *cfg = load_ok(BASE "[kafka]\nbrokers = b:1\n[triaged]\n"
                                  "[kafka]\ngroup = g\n");
    cr_assert_str_eq(cfg->kafka_brokers, "b:1");
    cr_assert_str_eq(cfg->kafka_group, "g");
    td_config_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* One mistake, one message at the right line */

/* Criterion runs each parameter in a fresh process of its own (BoxFort
 * spawns it anew), where pointers into this one's data would be stale, so
 * parameters hold their text in arrays, copied with the struct. */
struct bad_file {
    char text[160];
    char error[160]; /* after the file name */
};

ParameterizedTestParameters(config, each_mistake_is_reported_with_its_line)
{
    static struct bad_file cases[] = {
        { BASE "[triaged]\nlog_levle = info\n",
          ":6: unknown key 'log_levle' in [triaged]" },
        { BASE "[postgress]\nconninfo = x\n", ":5: unknown section [postgress]" },
        { BASE "[plugin.]\nx = 1\n", ":5: unknown section [plugin.]" },
        { BASE "[incident]\nresolve_grace = 5 parsecs\n",
          ":6: invalid duration '5 parsecs' for incident.resolve_grace "
          "(use e.g. 500ms, 30s, 5m, 2h, 7d)" },
        { BASE "[pipeline]\nbatch_time = 20\n",
          ":6: invalid duration '20' for pipeline.batch_time "
          "(use e.g. 500ms, 30s, 5m, 2h, 7d)" },
        { BASE "[pipeline]\nbatch_size = 0\n",
          ":6: value '0' out of range for pipeline.batch_size (1..1000000)" },
        { BASE "[pipeline]\nbatch_time = 11s\n",
          ":6: value '11s' out of range for pipeline.batch_time (0ms..10s)" },
        { BASE "[http]\nmax_body = 65M\n",
          ":6: value '65M' out of range for http.max_body (1KiB..64MiB)" },
        { BASE "[pipeline]\nqueue_limit = lots\n",
          ":6: invalid integer 'lots' for pipeline.queue_limit" },
        { BASE "[pipeline]\nmax_message_size = 1KB\n",
          ":6: invalid size '1KB' for pipeline.max_message_size "
          "(use e.g. 512, 64k, 1MiB, 2G)" },
        { BASE "[http]\nopen_reads = maybe\n",
          ":6: invalid boolean 'maybe' for http.open_reads (use yes or no)" },
        { BASE "[triaged]\nlog_level = loud\n",
          ":6: invalid value 'loud' for triaged.log_level "
          "(use one of debug|info|warn|error)" },
        { BASE "[kafka]\nbrokers = a:1\nbrokers = b:1\n",
          ":7: duplicate key 'brokers' in [kafka] (first set at line 6)" },
        { BASE "[kafka]\nbrokers =\n", ":6: empty value for kafka.brokers" },
        { BASE "[triaged]\njust some words\n",
          ":6: syntax error: expected [section] or key = value" },
        { BASE "[triaged\n", ":5: syntax error: missing ']' after section name" },
        { BASE "[a b]\n", ":5: syntax error: invalid section name 'a b'" },
        { BASE "[triaged]\n= value\n", ":6: syntax error: missing key before '='" },
        { BASE "[triaged]\ninstance = \"node-a\n",
          ":6: syntax error: missing closing '\"'" },
        { BASE "[triaged]\ninstance = \"a\" b\n",
          ":6: syntax error: text after closing '\"'" },
        { "log_level = info\n" BASE, ":1: key 'log_level' before any [section]" },
        { "[redis]\nurl = r\n[postgres]\nmigrate = yes\n",
          ":3: missing required key conninfo in [postgres]" },
        { "[redis]\nurl = r\n", ":1: missing required key conninfo in [postgres]" },
        { BASE "[kafka]\ngroup = g\n", ":5: missing required key brokers in [kafka]" },
    };
    return cr_make_param_array(struct bad_file, cases,
                               sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad_file *c, config,
                  each_mistake_is_reported_with_its_line)
{
    td_config *cfg = (td_config *)1;
    td_errors errs = { 0 };
    cr_assert_eq(load_text(c->text, &cfg, &errs), TD_ERR);
    cr_assert_null(cfg);
    assert_one_file_error(&errs, c->error);
    td_errors_clear(&errs);
}

Test(config, missing_file_is_one_error_naming_the_file)
{
    td_config *cfg = (td_config *)1;
    td_errors errs = { 0 };
    cr_assert_eq(td_config_load("/nonexistent/triaged.conf", &cfg, &errs),
                 TD_ERR);
    cr_assert_null(cfg);
    cr_assert_eq(errs.n, 1);
    cr_assert_str_eq(errs.msgs[0], "/nonexistent/triaged.conf: cannot open: "
                                   "No such file or directory");
    td_errors_clear(&errs);
}

Test(config, a_directory_is_one_error_too)
{
    td_config *cfg = (td_config *)1;
    td_errors errs = { 0 };
    cr_assert_eq(td_config_load("/tmp", &cfg, &errs), TD_ERR);
    cr_assert_null(cfg);
    cr_assert_eq(errs.n, 1);
    cr_assert_str_eq(errs.msgs[0], "/tmp: cannot open: Is a directory");
    td_errors_clear(&errs);
}

Test(config, every_mistake_in_a_file_is_reported_in_line_order)
{
    td_config *cfg = NULL;
    td_errors errs = { 0 };
    cr_assert_eq(load_text("[redis]\n"              /* 1 */
                           "url = r\n"              /* 2 */
                           "[triaged]\n"            /* 3 */
                           "log_level = loud\n"     /* 4 */
                           "colour = blue\n"        /* 5 */
                           "[incident]\n"           /* 6 */
                           "close_after = soon\n"   /* 7 */
                           "nonsense\n"             /* 8 */
                           "[mystery]\n"            /* 9 */
                           "[kafka]\n",             /* 10 */
                           &cfg, &errs),
                 TD_ERR);
    const char *want[] = {
        ":1: missing required key conninfo in [postgres]",
        ":4: invalid value 'loud' for triaged.log_level "
        "(use one of debug|info|warn|error)",
        ":5: unknown key 'colour' in [triaged]",
        ":7: invalid duration 'soon' for incident.close_after "
        "(use e.g. 500ms, 30s, 5m, 2h, 7d)",
        ":8: syntax error: expected [section] or key = value",
        ":9: unknown section [mystery]",
        ":10: missing required key brokers in [kafka]",
    };
    cr_assert_eq(errs.n, sizeof(want) / sizeof(want[0]), "got %zu errors",
                 errs.n);
    for (size_t i = 0; i < errs.n; i++) {
        char line[256];
        snprintf(line, sizeof(line), "%s%s", tmp_path, want[i]);
        cr_assert_str_eq(errs.msgs[i], line);
    }
    td_errors_clear(&errs);
}

/* ------------------------------------------------------------------------ */
/* Environment overrides */

static int
count_entry(const td_config_entry *e, void *arg)
{
    (void)e;
    (*(int *)arg)++;
    return 0;
}

Test(config, environment_replaces_a_file_value_and_names_itself_as_origin)
{
    setenv("TRIAGED_KAFKA_GROUP", "from-env", 1);
    td_config *cfg = load_ok(BASE "[kafka]\nbrokers = b:1\ngroup = from-file\n");
    cr_assert_str_eq(cfg->kafka_group, "from-env");
    cr_assert_str_eq(td_config_get(cfg, "kafka", "group"), "from-env");

    int n = 0;
    cr_assert_eq(td_config_each(cfg, "kafka", "group", count_entry, &n), 0);
    cr_assert_eq(n, 1, "an overridden key appears once");
    for (size_t i = 0; i < cfg->n_entries; i++)
        if (strcmp(cfg->entries[i].key, "group") == 0)
            cr_assert_str_eq(cfg->entries[i].origin, "env:TRIAGED_KAFKA_GROUP");
    td_config_free(cfg);
}

Test(config, environment_alone_can_set_a_required_key)
{
    setenv("TRIAGED_POSTGRES_CONNINFO", "host=env", 1);
    td_config *cfg = load_ok("[redis]\nurl = r\n");
    cr_assert_str_eq(cfg->pg_conninfo, "host=env");
    td_config_free(cfg);
}

Test(config, environment_key_of_an_absent_section_makes_it_present)
{
    setenv("TRIAGED_KAFKA_BROKERS", "10.0.0.1:9092", 1);
    td_config *cfg = load_ok(BASE);
    cr_assert(cfg->has_kafka);
    cr_assert_str_eq(cfg->kafka_brokers, "10.0.0.1:9092");
    cr_assert_not(cfg->has_http);
    td_config_free(cfg);
}

Test(config, bad_environment_value_is_reported_with_env_origin)
{
    setenv("TRIAGED_INCIDENT_RESOLVE_GRACE", "soon", 1);
    td_config *cfg = NULL;
    td_errors errs = { 0 };
    cr_assert_eq(load_text(BASE "[incident]\nresolve_grace = 2m\n", &cfg, &errs),
                 TD_ERR);
    cr_assert_eq(errs.n, 1);
    cr_assert_str_eq(errs.msgs[0],
                     "env:TRIAGED_INCIDENT_RESOLVE_GRACE: invalid duration "
                     "'soon' for incident.resolve_grace "
                     "(use e.g. 500ms, 30s, 5m, 2h, 7d)");
    td_errors_clear(&errs);
}

Test(config, misspelt_environment_key_of_a_known_section_is_an_error)
{
    setenv("TRIAGED_KAFKA_BROKER", "b:1", 1);
    td_config *cfg = NULL;
    td_errors errs = { 0 };
    cr_assert_eq(load_text(BASE, &cfg, &errs), TD_ERR);
    cr_assert_eq(errs.n, 1);
    cr_assert_str_eq(errs.msgs[0],
                     "env:TRIAGED_KAFKA_BROKER: unknown key 'broker' in [kafka]");
    td_errors_clear(&errs);
}

/* ------------------------------------------------------------------------ */
/* Pass-through and plugin sections */

struct collected {
    char text[512];
};

static int
collect(const td_config_entry *e, void *arg)
{
    struct collected *c = arg;
    size_t n = strlen(c->text);
    snprintf(c->text + n, sizeof(c->text) - n, "%s=%s;", e->key, e->value);
    return 0;
}

Test(config, rdkafka_keys_pass_through_from_file_and_environment)
{
    setenv("TRIAGED_KAFKA_RDKAFKA_SECURITY_PROTOCOL", "ssl", 1);
    setenv("TRIAGED_KAFKA_RDKAFKA_SASL_MECHANISM", "PLAIN", 1);
    td_config *cfg = load_ok(BASE "[kafka]\n"
                                  "brokers = b:1\n"
                                  "rdkafka.client.id = triaged-a\n"
                                  "rdkafka.security.protocol = plaintext\n");
    struct collected c = { "" };
    cr_assert_eq(td_config_each(cfg, "kafka", "rdkafka.", collect, &c), 0);
    cr_assert_str_eq(c.text, "rdkafka.client.id=triaged-a;"
                             "rdkafka.security.protocol=ssl;"
                             "rdkafka.sasl.mechanism=PLAIN;");
    cr_assert_null(td_config_get(cfg, "kafka", "rdkafka.debug"));
    td_config_free(cfg);
}

Test(config, rdkafka_environment_key_alone_enables_nothing_without_brokers)
{
    setenv("TRIAGED_KAFKA_RDKAFKA_CLIENT_ID", "x", 1);
    td_config *cfg = NULL;
    td_errors errs = { 0 };
    cr_assert_eq(load_text(BASE, &cfg, &errs), TD_ERR);
    cr_assert_eq(errs.n, 1);
    char want[256];
    snprintf(want, sizeof(want), "%s:1: missing required key brokers in [kafka]",
             tmp_path);
    cr_assert_str_eq(errs.msgs[0], want);
    td_errors_clear(&errs);
}

static int
stop_at_second(const td_config_entry *e, void *arg)
{
    (void)e;
    return ++*(int *)arg == 2 ? 42 : 0;
}

Test(config, plugin_sections_are_kept_unvalidated)
{
    setenv("TRIAGED_PLUGIN_OUT_WEBHOOK_TIMEOUT", "9s", 1);
    td_config *cfg = load_ok(BASE "[plugin.out_webhook]\n"
                                  "url = https://hooks.example/x\n"
                                  "timeout = 5s\n"
                                  "anything-goes = really\n");
    cr_assert_str_eq(td_config_get(cfg, "plugin.out_webhook", "url"),
                     "https://hooks.example/x");
    cr_assert_str_eq(td_config_get(cfg, "plugin.out_webhook", "timeout"), "9s");
    cr_assert_null(td_config_get(cfg, "plugin.out_webhook", "missing"));
    int n = 0;
    cr_assert_eq(td_config_each(cfg, "plugin.out_webhook", "", stop_at_second,
                                &n), 42, "each stops at a non-zero return");
    cr_assert_eq(n, 2);
    td_config_free(cfg);
}

Test(config, get_returns_the_default_text_of_an_unset_table_key)
{
    td_config *cfg = load_ok(BASE);
    cr_assert_str_eq(td_config_get(cfg, "kafka", "group"), "triaged");
    cr_assert_str_eq(td_config_get(cfg, "incident", "resolve_grace"), "2m");
    cr_assert_str_eq(td_config_get(cfg, "triaged", "instance"), cfg->instance);
    cr_assert_str_eq(td_config_get(cfg, "redis", "url"), "redis://r:6379/0");
    cr_assert_null(td_config_get(cfg, "kafka", "dead_letter_topic"));
    cr_assert_null(td_config_get(cfg, "kafka", "no_such_key"));
    td_config_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Diff */

struct diffs {
    char names[256];
    int reloadable, fixed;
};

static void
note_diff(const td_option *o, void *arg)
{
    struct diffs *d = arg;
    size_t n = strlen(d->names);
    snprintf(d->names + n, sizeof(d->names) - n, "%s.%s ", o->section, o->name);
    if (o->flags & TD_OPT_RELOAD)
        d->reloadable++;
    else
        d->fixed++;
}

Test(config, diff_names_each_changed_option_and_whether_it_reloads)
{
    td_config *a = load_ok(BASE "[triaged]\nlog_level = info\n");
    td_config *b = load_ok(BASE "[triaged]\nlog_level = warn\n"
                                "[pipeline]\nbatch_size = 100\n"
                                "[incident]\nflap_window = 1h\n"
                                "[plugins]\nload = in_http\n");
    struct diffs d = { "", 0, 0 };
    td_config_diff(a, a, note_diff, &d);
    cr_assert_str_eq(d.names, "");
    td_config_diff(a, b, note_diff, &d);
    cr_assert_str_eq(d.names, "triaged.log_level pipeline.batch_size "
                              "incident.flap_window plugins.load ");
    cr_assert_eq(d.reloadable, 2);
    cr_assert_eq(d.fixed, 2);
    td_config_free(a);
    td_config_free(b);
}

Test(config, apply_reloadable_copies_only_reloadable_values)
{
    td_config *a = load_ok(BASE "[triaged]\nlog_level = info\n");
    td_config *b = load_ok(BASE "[triaged]\nlog_level = warn\n"
                                "[pipeline]\nbatch_size = 100\n"
                                "[incident]\nflap_window = 1h\n"
                                "[capacity]\nhorizon = 30d\nwindow = 7d\n"
                                "[plugins]\nload = in_http\n");
    int batch = a->batch_size;
    int64_t window = a->capacity_window_ms;
    td_config_apply_reloadable(a, b);
    cr_assert_eq(a->log_level, TD_LOG_WARN);
    cr_assert_eq(a->flap_window_ms, 3600 * 1000);
    cr_assert_eq(a->capacity_horizon_ms, (int64_t)30 * 86400 * 1000);
    cr_assert_eq(a->batch_size, batch);
    cr_assert_eq(a->capacity_window_ms, window);
    cr_assert_null(a->plugins_load);
    td_config_free(a);
    td_config_free(b);
}

/* ------------------------------------------------------------------------ */
/* Value parsers */

struct parse_case {
    char text[32];
    int rc;
    int64_t value;
};

ParameterizedTestParameters(config, durations_parse_with_a_unit_and_no_overflow)
{
    static struct parse_case cases[] = {
        { "500ms", TD_OK, 500 },
        { "30s", TD_OK, 30000 },
        { "5m", TD_OK, 300000 },
        { "2h", TD_OK, 7200000 },
        { "7d", TD_OK, 604800000 },
        { "0s", TD_OK, 0 },
        { "9223372036854775807ms", TD_OK, INT64_MAX },
        { "9223372036854775808ms", TD_ERR, 0 }, /* digits overflow */
        { "106751991168d", TD_ERR, 0 },         /* unit overflows */
        { "20", TD_ERR, 0 },                    /* no unit */
        { "", TD_ERR, 0 },
        { "ms", TD_ERR, 0 },
        { "-5s", TD_ERR, 0 },
        { "5 s", TD_ERR, 0 },
        { "5sec", TD_ERR, 0 },
        { "1.5h", TD_ERR, 0 },
    };
    return cr_make_param_array(struct parse_case, cases,
                               sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct parse_case *c, config,
                  durations_parse_with_a_unit_and_no_overflow)
{
    int64_t v = -1;
    cr_assert_eq(td_parse_duration(c->text, &v), c->rc, "'%s'", c->text);
    if (c->rc == TD_OK)
        cr_assert_eq(v, c->value, "'%s' gave %lld", c->text, (long long)v);
}

ParameterizedTestParameters(config, sizes_parse_in_powers_of_1024)
{
    static struct parse_case cases[] = {
        { "512", TD_OK, 512 },
        { "0", TD_OK, 0 },
        { "4k", TD_OK, 4096 },
        { "4K", TD_OK, 4096 },
        { "4KiB", TD_OK, 4096 },
        { "1M", TD_OK, 1048576 },
        { "1MiB", TD_OK, 1048576 },
        { "2G", TD_OK, 2147483648LL },
        { "2GiB", TD_OK, 2147483648LL },
        { "8589934591G", TD_OK, 8589934591LL * 1073741824LL },
        { "8589934592G", TD_ERR, 0 }, /* 2^63: overflows */
        { "99999999999999999999", TD_ERR, 0 },
        { "1KB", TD_ERR, 0 },
        { "1m", TD_ERR, 0 },
        { "k", TD_ERR, 0 },
        { "", TD_ERR, 0 },
        { "-1", TD_ERR, 0 },
    };
    return cr_make_param_array(struct parse_case, cases,
                               sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct parse_case *c, config, sizes_parse_in_powers_of_1024)
{
    int64_t v = -1;
    cr_assert_eq(td_parse_size(c->text, &v), c->rc, "'%s'", c->text);
    if (c->rc == TD_OK)
        cr_assert_eq(v, c->value, "'%s' gave %lld", c->text, (long long)v);
}

ParameterizedTestParameters(config, booleans_accept_the_usual_words_in_any_case)
{
    static struct parse_case cases[] = {
        { "yes", TD_OK, 1 },  { "YES", TD_OK, 1 },   { "true", TD_OK, 1 },
        { "On", TD_OK, 1 },   { "1", TD_OK, 1 },     { "no", TD_OK, 0 },
        { "False", TD_OK, 0 }, { "off", TD_OK, 0 },  { "0", TD_OK, 0 },
        { "maybe", TD_ERR, 0 }, { "", TD_ERR, 0 },   { "2", TD_ERR, 0 },
        { "yes ", TD_ERR, 0 }, { "y", TD_ERR, 0 },
    };
    return cr_make_param_array(struct parse_case, cases,
                               sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct parse_case *c, config,
                  booleans_accept_the_usual_words_in_any_case)
{
    bool b = !c->value;
    cr_assert_eq(td_parse_bool(c->text, &b), c->rc, "'%s'", c->text);
    if (c->rc == TD_OK)
        cr_assert_eq(b, (bool)c->value, "'%s'", c->text);
}

/* ------------------------------------------------------------------------ */
/* The table and the documents it writes */

static char *
read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    char *buf = NULL;
    size_t cap = 0;
    FILE *m = open_memstream(&buf, &cap);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    *len = cap;
    return buf;
}

static char *
example_text(size_t *len)
{
    char *buf = NULL;
    FILE *m = open_memstream(&buf, len);
    td_config_write_example(m);
    fclose(m);
    return buf;
}

Test(config, shipped_example_loads_without_errors)
{
    td_config *cfg = NULL;
    td_errors errs = { 0 };
    int rc = td_config_load(TD_SOURCE_DIR "/config/triaged.conf", &cfg, &errs);
    cr_assert_eq(rc, TD_OK, "%s", errs.n ? errs.msgs[0] : "?");
    cr_assert(cfg->has_kafka);
    cr_assert_str_eq(cfg->kafka_brokers, "127.0.0.1:9092");
    td_config_free(cfg);
}

Test(config, shipped_example_is_exactly_what_the_table_writes)
{
    size_t flen, elen;
    char *file = read_whole(TD_SOURCE_DIR "/config/triaged.conf", &flen);
    char *example = example_text(&elen);
    cr_assert_eq(flen, elen,
                 "config/triaged.conf has drifted from td_config_write_example"
                 " (regenerate it with triaged --print-example)");
    cr_assert(memcmp(file, example, flen) == 0,
              "config/triaged.conf has drifted from td_config_write_example");
    free(file);
    free(example);
}

Test(config, every_option_has_help_and_appears_in_help_and_example)
{
    char *help = NULL, *example;
    size_t hlen, elen;
    FILE *m = open_memstream(&help, &hlen);
    td_config_print_help(m);
    fclose(m);
    example = example_text(&elen);
    for (const td_option *o = td_options; o->name; o++) {
        char key[128];
        cr_assert(o->help && strlen(o->help) > 10, "%s has no help", o->name);
        snprintf(key, sizeof(key), "  %s.%s", o->section, o->name);
        cr_assert_not_null(strstr(help, key), "help lacks %s", key);
        snprintf(key, sizeof(key), "\n;%s", o->name);
        char active[128];
        snprintf(active, sizeof(active), "\n%s", o->name);
        cr_assert(strstr(example, key) || strstr(example, active),
                  "example lacks %s.%s", o->section, o->name);
    }
    free(help);
    free(example);
}

Test(config, reloadable_options_are_rules_tokens_log_level_and_incident_timings)
{
    for (const td_option *o = td_options; o->name; o++) {
        bool want = strcmp(o->section, "incident") == 0 ||
                    (strcmp(o->section, "capacity") == 0 &&
                     strcmp(o->name, "window") != 0) ||
                    strcmp(o->section, "cmdb") == 0 ||
                    strcmp(o->section, "sla") == 0 ||
                    strcmp(o->name, "rules") == 0 ||
                    strcmp(o->name, "tokens") == 0 ||
                    strcmp(o->name, "log_level") == 0 ||
                    (strcmp(o->section, "http") == 0 &&
                     (strcmp(o->name, "rate_limit") == 0 ||
                      strcmp(o->name, "rate_burst") == 0 ||
                      strcmp(o->name, "feed_buffer") == 0 ||
                      strcmp(o->name, "feed_keepalive") == 0 ||
                      strcmp(o->name, "feed_max_clients") == 0 ||
                      strcmp(o->name, "tls_cert") == 0 ||
                      strcmp(o->name, "tls_key") == 0 ||
                      strcmp(o->name, "auth_fail_limit") == 0)) ||
                    /* in_syslog re-reads these with its rules */
                    strcmp(o->name, "keep_unmatched") == 0 ||
                    strcmp(o->name, "unmatched_severity") == 0;
        cr_assert_eq(!!(o->flags & TD_OPT_RELOAD), want, "%s.%s", o->section,
                     o->name);
    }
}

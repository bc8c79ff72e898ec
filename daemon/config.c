/* config.c — the option table, and everything the table drives.
 *
 * The design is simple: td_options[] has one row per key (section, name, type,
 * default, bounds, where the value lands in struct td_config, reloadable or
 * not, help text). td_config_load() runs four passes over one list of entries:
 *
 *   1. parse the INI file into entries (section, key, value, "FILE:LINE"),
 *      rejecting syntax errors, duplicate keys and unknown sections;
 *   2. apply TRIAGED_<SECTION>_<KEY> environment overrides: an entry whose
 *      variable is set takes its value in place (origin "env:NAME"), a table
 *      key the file lacks is appended, and so are TRIAGED_KAFKA_RDKAFKA_* keys;
 *   3. set every typed field to its default, then convert each entry with its
 *      row (unknown keys and bad values are errors);
 *   4. check required keys.
 *
 * Every problem is collected, not only the first, sorted by line (environment
 * problems last), and handed back as "ORIGIN: message". A missing required key
 * is reported at its section's header line, or at FILE:1 when the section is
 * not in the file at all. A config with any problem is never returned.
 *
 * [plugin.NAME] sections are kept as entries without validation: the plugin
 * owns its keys and checks them through td_config_get()/td_config_each().
 *
 * The same table prints --help-config and writes the example file that ships
 * as config/triaged.conf (a unit test compares the two byte for byte), so the
 * documentation cannot drift from the code.
 *
 * Memory: allocation failures abort (util.h). Lines come from getline() with
 * their length, so a line may be of any length and is never read past.
 */
#include "internal/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/util.h"

#define NO_OFFSET ((size_t)-1)
#define OFF(field) offsetof(td_config, field)

/* Units, so that bounds in the table read as what they mean. */
#define MSEC(n) ((int64_t)(n))
#define SEC(n) ((int64_t)(n) * 1000)
#define MINUTE(n) ((int64_t)(n) * 60 * 1000)
#define HOUR(n) ((int64_t)(n) * 60 * 60 * 1000)
#define DAY(n) ((int64_t)(n) * 24 * 60 * 60 * 1000)
#define KIB(n) ((int64_t)(n) * 1024)
#define MIB(n) ((int64_t)(n) * 1024 * 1024)

/* [triaged] instance defaults to the host name, known only at run time. The
 * row's default points at this marker; it is compared by address. */
static const char default_hostname[] = "(host name)";

/* One constructor per type, as Redis's createIntConfig(): the rows below then
 * read as a list of keys rather than a list of struct fields. */
#define OPT_STR(sec, key, def, flags, field, help) \
    { sec, key, TD_OPT_STRING, def, 0, 0, NULL, flags, OFF(field), help }
#define OPT_PATH(sec, key, def, flags, field, help) \
    { sec, key, TD_OPT_PATH, def, 0, 0, NULL, flags, OFF(field), help }
#define OPT_LIST(sec, key, def, flags, field, help) \
    { sec, key, TD_OPT_LIST, def, 0, 0, NULL, flags, OFF(field), help }
#define OPT_BOOL(sec, key, def, flags, field, help) \
    { sec, key, TD_OPT_BOOL, def, 0, 0, NULL, flags, OFF(field), help }
#define OPT_ENUM(sec, key, def, values, flags, field, help) \
    { sec, key, TD_OPT_ENUM, def, 0, 0, values, flags, OFF(field), help }
#define OPT_INT(sec, key, def, lo, hi, flags, field, help) \
    { sec, key, TD_OPT_INT, def, lo, hi, NULL, flags, OFF(field), help }
#define OPT_DUR(sec, key, def, lo, hi, flags, field, help) \
    { sec, key, TD_OPT_DURATION, def, lo, hi, NULL, flags, OFF(field), help }
#define OPT_SIZE(sec, key, def, lo, hi, flags, field, help) \
    { sec, key, TD_OPT_SIZE, def, lo, hi, NULL, flags, OFF(field), help }

const td_option td_options[] = {
    /* [triaged] */
    OPT_STR("triaged", "instance", default_hostname, 0, instance,
            "Names this instance in logs, metrics and incident timelines. "
            "Defaults to the host name."),
    OPT_ENUM("triaged", "log_level", "info", "debug|info|warn|error",
             TD_OPT_RELOAD, log_level,
             "The least severe level of messages written to the log."),

    /* [postgres] */
    OPT_STR("postgres", "conninfo", NULL, TD_OPT_REQUIRED, pg_conninfo,
            "How to reach PostgreSQL, the system of record, as a libpq "
            "connection string."),
    OPT_BOOL("postgres", "migrate", "no", 0, pg_migrate,
             "Apply pending schema migrations at start, as "
             "'triagectl migrate' does."),

    /* [redis] */
    OPT_STR("redis", "url", NULL, TD_OPT_REQUIRED, redis_url,
            "How to reach Redis, which holds the live deduplication state, "
            "as redis://HOST:PORT/DB."),

    /* [kafka] */
    OPT_STR("kafka", "brokers", NULL, TD_OPT_REQUIRED_IN_SECTION, kafka_brokers,
            "Kafka bootstrap brokers as HOST:PORT, several separated by "
            "commas."),
    OPT_STR("kafka", "group", "triaged", 0, kafka_group,
            "Consumer group. Instances in the same group share the "
            "partitions of the alert and capacity topics."),
    OPT_STR("kafka", "alerts_topic", "alerts", 0, alerts_topic,
            "Topic that alerts are consumed from."),
    OPT_STR("kafka", "capacity_topic", "capacity", 0, capacity_topic,
            "Topic that capacity samples are consumed from."),
    OPT_STR("kafka", "incidents_topic", "incidents", 0, incidents_topic,
            "Topic that incident events are produced to."),
    OPT_STR("kafka", "dead_letter_topic", NULL, 0, dead_letter_topic,
            "Topic that rejected messages are copied to, with the reason. "
            "When unset, rejected messages are only counted and logged."),
    { "kafka", "rdkafka.", TD_OPT_STRING, NULL, 0, 0, NULL, TD_OPT_PREFIX,
      NO_OFFSET,
      "Any key starting with rdkafka. is passed to librdkafka without that "
      "prefix, for example rdkafka.security.protocol = ssl." },

    /* [syslog] */
    OPT_LIST("syslog", "udp", NULL, 0, syslog_udp,
             "Addresses to receive syslog on over UDP, as HOST:PORT, "
             "separated by spaces or commas."),
    OPT_LIST("syslog", "tcp", NULL, 0, syslog_tcp,
             "Addresses to accept syslog on over TCP, as HOST:PORT, "
             "separated by spaces or commas."),
    OPT_PATH("syslog", "rules", NULL, TD_OPT_RELOAD, syslog_rules,
             "File of rules that turn syslog messages into alerts, or "
             "resolve them."),
    OPT_SIZE("syslog", "max_message_size", "8KiB", 480, KIB(64), 0,
             syslog_max_message_size,
             "Largest syslog message taken whole; a longer one is truncated "
             "or rejected (see oversize) and counted."),
    OPT_ENUM("syslog", "oversize", "truncate", "truncate|reject", 0,
             syslog_oversize,
             "What happens to a message over max_message_size: truncate "
             "keeps its first max_message_size bytes, reject drops it."),
    OPT_INT("syslog", "max_connections", "1000", 1, 100000, 0,
            syslog_max_connections,
            "Most TCP connections open at once; another is closed at once "
            "and counted."),
    OPT_DUR("syslog", "idle_timeout", "5m", SEC(1), DAY(7), 0,
            syslog_idle_timeout_ms,
            "A TCP connection that sends nothing for this long is closed."),
    OPT_BOOL("syslog", "keep_unmatched", "no", TD_OPT_RELOAD,
             syslog_keep_unmatched,
             "Keep messages that no rule matches as alerts (source syslog, "
             "resource the host, check syslog:APP-NAME) instead of counting "
             "and dropping them."),
    OPT_ENUM("syslog", "unmatched_severity", "info",
             "critical|major|minor|warning|info", TD_OPT_RELOAD,
             syslog_unmatched_severity,
             "Severity of the alerts that keep_unmatched makes."),

    /* [http] */
    OPT_LIST("http", "listen", "127.0.0.1:8080", 0, http_listen,
             "Addresses the HTTP API listens on, as HOST:PORT, separated by "
             "spaces or commas."),
    OPT_PATH("http", "tokens", NULL, TD_OPT_RELOAD, http_tokens,
             "File of API tokens, one \"NAME SCOPE SHA256-HEX-OF-TOKEN\" a "
             "line; SCOPE is read, write or admin, each including the one "
             "before."),
    OPT_BOOL("http", "open_reads", "no", 0, http_open_reads,
             "Answer read requests (GET) without a token."),
    OPT_SIZE("http", "max_body", "1MiB", KIB(1), MIB(64), 0, http_max_body,
             "Largest request body accepted; a larger one is answered with "
             "413."),
    OPT_DUR("http", "idle_timeout", "60s", SEC(1), HOUR(1), 0,
            http_idle_timeout_ms,
            "A connection is closed after this long without a byte while a "
            "request is read (headers or body) or between requests on a "
            "kept-alive connection (libevent 2.1 has one timer for both)."),
    OPT_INT("http", "rate_limit", "1000", 0, 1000000, TD_OPT_RELOAD,
            http_rate_limit,
            "Requests a second each token may make (a token bucket; 0: no "
            "limit). Beyond it: 429 with Retry-After. Requests without a "
            "token (open_reads) share one bucket."),
    OPT_INT("http", "rate_burst", "2000", 1, 10000000, TD_OPT_RELOAD,
            http_rate_burst,
            "Requests a token may make at once before rate_limit applies."),
    OPT_SIZE("http", "feed_buffer", "1MiB", KIB(4), MIB(64), TD_OPT_RELOAD,
             http_feed_buffer,
             "Unsent bytes a live feed (SSE) client may be behind by; a "
             "client beyond it that has not sent, a second later, what was "
             "pending is disconnected and counted (at 16 times this, at "
             "once)."),
    OPT_INT("http", "feed_history", "4096", 16, 1000000, 0, http_feed_history,
            "Recent events kept for feed clients that resume with "
            "Last-Event-ID."),
    OPT_DUR("http", "feed_keepalive", "15s", MSEC(100), HOUR(1), TD_OPT_RELOAD,
            http_feed_keepalive_ms,
            "Interval of keep-alive comments on an idle live feed."),
    OPT_STR("http", "alertmanager_resource_label", "instance", 0,
            http_am_resource_label,
            "Label of an Alertmanager alert that names its resource (when "
            "absent: job, else \"alertmanager\")."),
    OPT_INT("http", "feed_max_clients", "100", 1, 100000, TD_OPT_RELOAD,
            http_feed_max_clients,
            "Most live feed (SSE) clients at once; another is answered "
            "with 503 and counted."),
    OPT_PATH("http", "tls_cert", NULL, TD_OPT_RELOAD, http_tls_cert,
             "Certificate chain (PEM) to serve the API over TLS (1.2 or "
             "newer) on every listen address; with tls_key. Unset: plain "
             "HTTP. Re-read on SIGHUP (new connections get the new one)."),
    OPT_PATH("http", "tls_key", NULL, TD_OPT_RELOAD, http_tls_key,
             "Private key (PEM) of tls_cert."),
    OPT_INT("http", "auth_fail_limit", "10", 0, 100000, TD_OPT_RELOAD,
            http_auth_fail_limit,
            "Unknown tokens a second one client address may present (a "
            "token bucket holding 5 seconds' worth; 0: no limit). Beyond "
            "it every request from that address gets 429 with Retry-After "
            "until the bucket refills, before any token is checked."),

    /* [pipeline] */
    OPT_INT("pipeline", "batch_size", "10000", 1, 1000000, 0, batch_size,
            "Most messages applied together in one batch (one Redis round "
            "trip, one PostgreSQL transaction). Batches grow by themselves "
            "while PostgreSQL is busy with the previous one."),
    OPT_SIZE("pipeline", "batch_max_bytes", "64MiB", MIB(1), MIB(128), 0,
             batch_max_bytes,
             "A batch is also sealed once its decoded alerts and samples "
             "hold this much memory, so its statement stays far below "
             "PostgreSQL's 1 GB limit for a message."),
    OPT_DUR("pipeline", "batch_time", "0ms", 0, SEC(10), 0,
            batch_time_ms,
            "Longest time a batch waits to fill up while its lane is idle. "
            "0: it goes as soon as the callbacks that filled it return (one "
            "Kafka wake-up of up to 1,000 messages, one HTTP body), so an "
            "idle lane adds no delay; while PostgreSQL is busy the next "
            "batch fills up anyway, and when a batch commits, the next one "
            "starts at once."),
    OPT_INT("pipeline", "lanes", "2", 1, 64, 0, lanes,
            "Batches applied at once, each on its own PostgreSQL connection "
            "(a lane). A Kafka partition always goes to the same lane and "
            "other inputs' alerts by resource, so each partition's and "
            "each alert's messages are applied in order. More lanes let "
            "PostgreSQL use more cores; 1 applies one batch at a time."),
    OPT_SIZE("pipeline", "max_message_size", "1MiB", KIB(1), MIB(16), 0,
             max_message_size,
             "Largest alert message (a Kafka message, an HTTP intake body) "
             "accepted; a larger one is rejected with a reason. The default "
             "equals [http] max_body and Kafka's own message.max.bytes."),
    OPT_INT("pipeline", "queue_limit", "100000", 100, 10000000, 0, queue_limit,
            "Most messages waiting in memory (a message may hold many "
            "alerts: see queue_max_bytes); beyond it the inputs are paused "
            "until the pipeline catches up."),
    OPT_SIZE("pipeline", "queue_max_bytes", "256MiB", MIB(1), MIB(65536), 0,
             queue_max_bytes,
             "Most memory the decoded alerts and samples waiting in the "
             "queue may hold (a message may carry thousands of alerts); "
             "beyond it the inputs are paused as at queue_limit."),
    OPT_LIST("pipeline", "identity_labels", "", 0, identity_labels,
             "Label names that are part of an alert's identity besides "
             "source, resource and check, when it has no dedup_key."),

    /* [incident] — all timings apply on SIGHUP */
    OPT_DUR("incident", "resolve_grace", "2m", 0, DAY(1), TD_OPT_RELOAD,
            resolve_grace_ms,
            "How long an incident stays open after all its alerts resolved, "
            "in case one fires again."),
    OPT_DUR("incident", "reopen_window", "30m", 0, DAY(30), TD_OPT_RELOAD,
            reopen_window_ms,
            "A resolved incident reopens when one of its alerts fires again "
            "within this time; later, a new incident opens."),
    OPT_DUR("incident", "close_after", "24h", 0, DAY(365), TD_OPT_RELOAD,
            close_after_ms,
            "A resolved incident is closed after this quiet time."),
    OPT_DUR("incident", "correlation_window", "10m", 0, DAY(1), TD_OPT_RELOAD,
            correlation_window_ms,
            "An alert attaches as a symptom to an upstream incident opened "
            "no longer than this before it."),
    OPT_LIST("incident", "priority_matrix", "1 2 3 2 3 4 3 4 5", TD_OPT_RELOAD,
             priority_matrix,
             "Priority (1..5) of a CMDB-bound incident from impact x urgency: "
             "9 numbers, the rows impact 1..3, the columns urgency 1..3 "
             "(impact from the impacted services' tiers, urgency from "
             "severity: critical/major 1, minor/warning 2, info 3). The "
             "default is the ITIL 3x3 matrix."),
    OPT_INT("incident", "flap_threshold", "6", 2, 1000, TD_OPT_RELOAD,
            flap_threshold,
            "This many state changes of an alert within flap_window mark it "
            "flapping, which holds its incident open."),
    OPT_DUR("incident", "flap_window", "30m", SEC(1), DAY(7), TD_OPT_RELOAD,
            flap_window_ms,
            "The time window in which flap_threshold state changes are "
            "counted."),

    /* [capacity] */
    OPT_DUR("capacity", "window", "30d", HOUR(1), DAY(365), 0, capacity_window_ms,
            "Trends are least-squares fits over this much history (whole "
            "hours of the hourly rollups)."),
    OPT_DUR("capacity", "horizon", "90d", DAY(1), DAY(3650), TD_OPT_RELOAD,
            capacity_horizon_ms,
            "A capacity_warning is raised when a forecast exhaustion falls "
            "within this time."),
    OPT_INT("capacity", "min_points", "12", 3, 1000000, TD_OPT_RELOAD,
            capacity_min_points,
            "Fewer samples in the window give no forecast (insufficient "
            "data)."),
    OPT_INT("capacity", "min_r2_pct", "50", 0, 100, TD_OPT_RELOAD, capacity_min_r2_pct,
            "A fit whose r squared is below this, in percent (50 = 0.5), "
            "gives no forecast (poor fit)."),
    OPT_DUR("capacity", "retention", "90d", DAY(1), DAY(3650), TD_OPT_RELOAD,
            capacity_retention_ms,
            "Raw samples are dropped after this, a monthly partition at a "
            "time; the hourly rollups are kept."),
    OPT_DUR("capacity", "rollup_interval", "60s", SEC(1), HOUR(1), TD_OPT_RELOAD,
            capacity_rollup_interval_ms,
            "How often the hourly rollups, trends and warnings are brought "
            "up to date with the samples received."),
    /* [sla] */
    OPT_BOOL("sla", "events", "yes", TD_OPT_RELOAD, sla_events,
             "Raise sla.breached (the period's error budget is spent) and "
             "sla.burn_rate (a multi-window burn-rate rule holds) events."),
    OPT_DUR("sla", "tick_interval", "60s", SEC(1), HOUR(1), TD_OPT_RELOAD, sla_tick_interval_ms,
            "How often availability and burn rates of every service with an "
            "SLA are computed for the events."),
    OPT_INT("sla", "fast_budget_pct", "2", 1, 100, TD_OPT_RELOAD, sla_fast_budget_pct,
            "Fast burn: this percentage of the period's error budget spent "
            "within fast_window (2 % in 1 h = burn rate 14.4 for 30 days) ..."),
    OPT_DUR("sla", "fast_window", "1h", MINUTE(1), DAY(7), TD_OPT_RELOAD, sla_fast_window_ms,
            "... over this window ..."),
    OPT_DUR("sla", "fast_short_window", "5m", MINUTE(1), DAY(7), TD_OPT_RELOAD,
            sla_fast_short_window_ms,
            "... and at the same rate over this short window (so the event "
            "stops soon after the burning does)."),
    OPT_INT("sla", "slow_budget_pct", "5", 1, 100, TD_OPT_RELOAD, sla_slow_budget_pct,
            "Slow burn: this percentage of the budget within slow_window (5 % "
            "in 6 h = burn rate 6) ..."),
    OPT_DUR("sla", "slow_window", "6h", MINUTE(1), DAY(31), TD_OPT_RELOAD, sla_slow_window_ms,
            "... over this window ..."),
    OPT_DUR("sla", "slow_short_window", "30m", MINUTE(1), DAY(7), TD_OPT_RELOAD,
            sla_slow_short_window_ms,
            "... and at the same rate over this short window."),
    /* [cmdb] */
    OPT_LIST("cmdb", "bind_label", "", TD_OPT_RELOAD, cmdb_bind_labels,
             "Labels whose value binds an alert to a CI (as its name, alias "
             "or IP address) when neither its ci field nor its resource does; "
             "tried in this order."),
    OPT_INT("cmdb", "impact_many_services", "3", 1, 100000, TD_OPT_RELOAD,
            impact_many_services,
            "An incident impacting at least this many services gets one "
            "impact level higher than its best service tier alone gives."),

    /* [plugins] */
    OPT_PATH("plugins", "dir", "/usr/lib/triaged/plugins", 0, plugins_dir,
             "Folder the plugins are loaded from, as NAME.so."),
    OPT_LIST("plugins", "load", NULL, 0, plugins_load,
             "Plugins to load, by name. When unset, the sections present "
             "decide: [kafka] loads in_kafka and out_kafka, [syslog] "
             "in_syslog, [http] in_http."),

    { NULL, NULL, TD_OPT_STRING, NULL, 0, 0, NULL, 0, NO_OFFSET, NULL },
};

/* The sections of the table, in the order they are documented. has_offset
 * points at the td_config flag telling whether the section is present. */
typedef struct section_info {
    const char *name;
    size_t has_offset;
    const char *help;
} section_info;

static const section_info sections[] = {
    { "triaged", NO_OFFSET, "Settings of this triaged instance." },
    { "postgres", NO_OFFSET,
      "PostgreSQL holds incidents, alerts, the CMDB and the audit trail "
      "(schema triaged)." },
    { "redis", NO_OFFSET, "Redis holds the live deduplication state." },
    { "kafka", OFF(has_kafka),
      "Kafka intake of alerts and capacity samples, and output of incident "
      "events. The section's presence enables in_kafka and out_kafka." },
    { "syslog", OFF(has_syslog),
      "Syslog intake (RFC 5424 and RFC 3164). The section's presence "
      "enables in_syslog." },
    { "http", OFF(has_http),
      "The HTTP API with its intake endpoints. The section's presence "
      "enables it." },
    { "pipeline", NO_OFFSET, "Batching and limits of the alert pipeline." },
    { "incident", NO_OFFSET,
      "Incident timings, applied on SIGHUP. Durations are written as 500ms, "
      "30s, 5m, 2h or 7d." },
    { "capacity", NO_OFFSET,
      "Capacity samples: rollups, trends and exhaustion forecasts." },
    { "sla", NO_OFFSET,
      "Availability against SLA targets: the sla.breached and sla.burn_rate "
      "events (SLA definitions live in PostgreSQL: triagectl sla set)." },
    { "cmdb", NO_OFFSET,
      "Binding alerts to configuration items and impact, applied on SIGHUP. "
      "The CMDB itself lives in PostgreSQL (triagectl cmdb import)." },
    { "plugins", NO_OFFSET, "Where plugins come from and which are loaded." },
};
#define N_SECTIONS TD_ARRAY_LEN(sections)

/* Values for the example file where a key has no default worth showing.
 * key is the key written (a full key for the rdkafka. prefix). */
static const struct {
    const char *section, *name, *key, *value;
} examples[] = {
    { "triaged", "instance", "instance", "node-a" },
    { "postgres", "conninfo", "conninfo",
      "host=127.0.0.1 port=5432 dbname=triaged" },
    { "redis", "url", "url", "redis://127.0.0.1:6379/0" },
    { "kafka", "brokers", "brokers", "127.0.0.1:9092" },
    { "kafka", "dead_letter_topic", "dead_letter_topic", "alerts-dead-letter" },
    { "kafka", "rdkafka.", "rdkafka.security.protocol", "ssl" },
    { "syslog", "udp", "udp", "127.0.0.1:5514" },
    { "syslog", "tcp", "tcp", "127.0.0.1:5514" },
    { "syslog", "rules", "rules", "/etc/triaged/syslog-rules.conf" },
    { "http", "tokens", "tokens", "/etc/triaged/tokens" },
    { "plugins", "load", "load", "in_kafka out_kafka in_http" },
};

#define PLUGIN_SECTION_PREFIX "plugin."
#define ENV_PREFIX "TRIAGED_"
/* Environment problems sort after every file line. */
#define ENV_RANK (LONG_MAX / 2)

/* ------------------------------------------------------------------------ */
/* Value parsers */

/* Reads the unsigned decimal at *s into *n, advancing *s. Overflow: TD_ERR. */
static int
parse_digits(const char **s, int64_t *n)
{
    const char *p = *s;
    int64_t v = 0;
    if (!isdigit((unsigned char)*p))
        return TD_ERR;
    for (; isdigit((unsigned char)*p); p++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10)
            return TD_ERR;
        v = v * 10 + d;
    }
    *s = p;
    *n = v;
    return TD_OK;
}

static int
scale(int64_t n, int64_t unit, int64_t *out)
{
    if (n > INT64_MAX / unit)
        return TD_ERR;
    *out = n * unit;
    return TD_OK;
}

int
td_parse_duration(const char *s, int64_t *ms)
{
    static const struct { const char *unit; int64_t ms; } units[] = {
        { "ms", 1 }, { "s", SEC(1) }, { "m", MINUTE(1) }, { "h", HOUR(1) },
        { "d", DAY(1) },
    };
    int64_t n;
    if (!s || parse_digits(&s, &n) != TD_OK)
        return TD_ERR;
    if (n == 0 && *s == '\0') {
        *ms = 0; /* nothing is nothing in any unit */
        return TD_OK;
    }
    for (size_t i = 0; i < TD_ARRAY_LEN(units); i++)
        if (strcmp(s, units[i].unit) == 0)
            return scale(n, units[i].ms, ms);
    return TD_ERR; /* no unit, or an unknown one */
}

int
td_parse_size(const char *s, int64_t *bytes)
{
    static const struct { const char *unit; int64_t bytes; } units[] = {
        { "", 1 },
        { "k", KIB(1) }, { "K", KIB(1) }, { "KiB", KIB(1) },
        { "M", MIB(1) }, { "MiB", MIB(1) },
        { "G", MIB(1024) }, { "GiB", MIB(1024) },
    };
    int64_t n;
    if (!s || parse_digits(&s, &n) != TD_OK)
        return TD_ERR;
    for (size_t i = 0; i < TD_ARRAY_LEN(units); i++)
        if (strcmp(s, units[i].unit) == 0)
            return scale(n, units[i].bytes, bytes);
    return TD_ERR;
}

int
td_parse_bool(const char *s, bool *b)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    if (!s)
        return TD_ERR;
    for (size_t i = 0; i < TD_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *b = true;
            return TD_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *b = false;
            return TD_OK;
        }
    }
    return TD_ERR;
}

static int
parse_int(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    int64_t n;
    if (*s == '-' || *s == '+')
        s++;
    if (parse_digits(&s, &n) != TD_OK || *s)
        return TD_ERR;
    *out = neg ? -n : n;
    return TD_OK;
}

/* Index of S in the '|' separated VALUES (case-insensitive), or -1. */
static int
enum_index(const char *values, const char *s)
{
    size_t len = strlen(s);
    int i = 0;
    for (const char *p = values;; i++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncasecmp(p, s, n) == 0)
            return i;
        if (!bar)
            return -1;
        p = bar + 1;
    }
}

/* "10s", "2m", "1ms": the largest unit that divides the value. */
static void
format_duration(int64_t ms, char *buf, size_t len)
{
    static const struct { const char *unit; int64_t ms; } units[] = {
        { "d", DAY(1) }, { "h", HOUR(1) }, { "m", MINUTE(1) }, { "s", SEC(1) },
    };
    for (size_t i = 0; i < TD_ARRAY_LEN(units); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms),
                     units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%lldms", (long long)ms);
}

static void
format_size(int64_t bytes, char *buf, size_t len)
{
    static const struct { const char *unit; int64_t bytes; } units[] = {
        { "GiB", MIB(1024) }, { "MiB", MIB(1) }, { "KiB", KIB(1) },
    };
    for (size_t i = 0; i < TD_ARRAY_LEN(units); i++) {
        if (bytes != 0 && bytes % units[i].bytes == 0) {
            snprintf(buf, len, "%lld%s", (long long)(bytes / units[i].bytes),
                     units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%lld", (long long)bytes);
}

/* "1..100000", "1ms..10s", "1KiB..64MiB" */
static void
format_bounds(const td_option *o, char *buf, size_t len)
{
    char lo[32], hi[32];
    switch (o->type) {
    case TD_OPT_DURATION:
        format_duration(o->min, lo, sizeof(lo));
        format_duration(o->max, hi, sizeof(hi));
        break;
    case TD_OPT_SIZE:
        format_size(o->min, lo, sizeof(lo));
        format_size(o->max, hi, sizeof(hi));
        break;
    default:
        snprintf(lo, sizeof(lo), "%lld", (long long)o->min);
        snprintf(hi, sizeof(hi), "%lld", (long long)o->max);
        break;
    }
    snprintf(buf, len, "%s..%s", lo, hi);
}

/* "a, b,c  d" -> "a b c d": list consumers split on single spaces. */
static char *
normalize_list(const char *s)
{
    char *out = td_malloc(strlen(s) + 1);
    size_t n = 0;
    while (*s) {
        size_t w = strcspn(s, ", \t\v\f");
        if (w > 0) {
            if (n > 0)
                out[n++] = ' ';
            memcpy(out + n, s, w);
            n += w;
            s += w;
        } else {
            s++;
        }
    }
    out[n] = '\0';
    return out;
}

static void *
field_of(td_config *cfg, const td_option *o)
{
    return (char *)cfg + o->offset;
}

static const void *
cfield_of(const td_config *cfg, const td_option *o)
{
    return (const char *)cfg + o->offset;
}

/* [incident] priority_matrix: exactly 9 numbers 1..5 (SQL reads the same). */
static int
check_matrix(const char *v)
{
    int n = 0;
    for (const char *p = v; *p;) {
        if (*p == ' ' || *p == ',' || *p == '\t') {
            p++;
            continue;
        }
        if (*p < '1' || *p > '5' || (p[1] && p[1] != ' ' && p[1] != ',' && p[1] != '\t'))
            return TD_ERR;
        n++;
        p++;
    }
    return n == 9 ? TD_OK : TD_ERR;
}

/* Converts VALUE for option O into its field of CFG. On failure returns TD_ERR
 * with *why set to a message (free() it) and leaves the field alone. */
static int
convert(const td_option *o, const char *value, td_config *cfg, char **why)
{
    int64_t n = 0;
    bool b;
    char range[80];

    switch (o->type) {
    case TD_OPT_STRING:
    case TD_OPT_PATH:
        if (!*value) {
            *why = td_asprintf("empty value for %s.%s", o->section, o->name);
            return TD_ERR;
        }
        /* fallthrough */
    case TD_OPT_LIST: {
        if (o->offset == OFF(priority_matrix) && check_matrix(value) != TD_OK) {
            *why = td_asprintf("invalid matrix '%s' for %s.%s (9 numbers 1..5: "
                               "impact 1..3 by urgency 1..3, row by row)",
                               value, o->section, o->name);
            return TD_ERR;
        }
        char **p = field_of(cfg, o);
        free(*p);
        *p = o->type == TD_OPT_LIST ? normalize_list(value) : td_strdup(value);
        return TD_OK;
    }
    case TD_OPT_BOOL:
        if (td_parse_bool(value, &b) != TD_OK) {
            *why = td_asprintf("invalid boolean '%s' for %s.%s (use yes or no)",
                               value, o->section, o->name);
            return TD_ERR;
        }
        *(bool *)field_of(cfg, o) = b;
        return TD_OK;
    case TD_OPT_ENUM: {
        int i = enum_index(o->values, value);
        if (i < 0) {
            *why = td_asprintf("invalid value '%s' for %s.%s (use one of %s)",
                               value, o->section, o->name, o->values);
            return TD_ERR;
        }
        *(int *)field_of(cfg, o) = i;
        return TD_OK;
    }
    case TD_OPT_INT:
        if (parse_int(value, &n) != TD_OK) {
            *why = td_asprintf("invalid integer '%s' for %s.%s", value,
                               o->section, o->name);
            return TD_ERR;
        }
        break;
    case TD_OPT_DURATION:
        if (td_parse_duration(value, &n) != TD_OK) {
            *why = td_asprintf("invalid duration '%s' for %s.%s "
                               "(use e.g. 500ms, 30s, 5m, 2h, 7d)",
                               value, o->section, o->name);
            return TD_ERR;
        }
        break;
    case TD_OPT_SIZE:
        if (td_parse_size(value, &n) != TD_OK) {
            *why = td_asprintf("invalid size '%s' for %s.%s "
                               "(use e.g. 512, 64k, 1MiB, 2G)",
                               value, o->section, o->name);
            return TD_ERR;
        }
        break;
    }

    /* INT, DURATION, SIZE: check the bounds, then store. */
    if (n < o->min || n > o->max) {
        format_bounds(o, range, sizeof(range));
        *why = td_asprintf("value '%s' out of range for %s.%s (%s)", value,
                           o->section, o->name, range);
        return TD_ERR;
    }
    if (o->type == TD_OPT_INT)
        *(int *)field_of(cfg, o) = (int)n; /* bounds fit an int */
    else
        *(int64_t *)field_of(cfg, o) = n;
    return TD_OK;
}

/* ------------------------------------------------------------------------ */
/* Table lookups */

static int
section_index(const char *name)
{
    for (size_t i = 0; i < N_SECTIONS; i++)
        if (strcmp(sections[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool
is_plugin_section(const char *name)
{
    size_t n = strlen(PLUGIN_SECTION_PREFIX);
    return strncmp(name, PLUGIN_SECTION_PREFIX, n) == 0 && name[n] != '\0';
}

/* The row for SECTION.KEY: an exact name, or a prefix row. NULL if none. */
static const td_option *
find_option(const char *section, const char *key)
{
    const td_option *prefix = NULL;
    for (const td_option *o = td_options; o->name; o++) {
        if (strcmp(o->section, section) != 0)
            continue;
        if (o->flags & TD_OPT_PREFIX) {
            size_t n = strlen(o->name);
            if (strncmp(key, o->name, n) == 0 && key[n] != '\0')
                prefix = o;
        } else if (strcmp(o->name, key) == 0) {
            return o;
        }
    }
    return prefix;
}

/* TRIAGED_<SECTION>_<KEY>: upper case, anything not a letter or digit (dots,
 * dashes) becomes '_'. Freed by the caller. */
static char *
env_name(const char *section, const char *key)
{
    char *s = td_asprintf(ENV_PREFIX "%s_%s", section, key);
    for (char *p = s + strlen(ENV_PREFIX); *p; p++)
        *p = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p)
                                         : '_';
    return s;
}

static ssize_t
find_entry(const td_config *cfg, const char *section, const char *key)
{
    for (size_t i = 0; i < cfg->n_entries; i++)
        if (strcmp(cfg->entries[i].section, section) == 0 &&
            strcmp(cfg->entries[i].key, key) == 0)
            return (ssize_t)i;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Loading */

typedef struct pending_err {
    long rank; /* file line; ENV_RANK and up for the environment */
    size_t seq;
    char *msg;
} pending_err;

typedef struct load_ctx {
    const char *path;
    td_config *cfg;
    size_t cap_entries;
    long *ranks; /* per entry: its file line, or ENV_RANK + n */
    long next_env_rank;
    pending_err *errs;
    size_t n_errs;
    bool present[N_SECTIONS];
    long header_line[N_SECTIONS]; /* first [section] line, 0 if none */
} load_ctx;

static void
add_err(load_ctx *c, long rank, const char *origin, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
add_err(load_ctx *c, long rank, const char *origin, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = td_vasprintf(fmt, ap);
    va_end(ap);
    c->errs = td_realloc(c->errs, (c->n_errs + 1) * sizeof(*c->errs));
    c->errs[c->n_errs] = (pending_err){ rank, c->n_errs,
                                        td_asprintf("%s: %s", origin, msg) };
    c->n_errs++;
    free(msg);
}

static void
file_err(load_ctx *c, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
file_err(load_ctx *c, long line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = td_vasprintf(fmt, ap);
    va_end(ap);
    char *origin = td_asprintf("%s:%ld", c->path, line);
    add_err(c, line, origin, "%s", msg);
    free(origin);
    free(msg);
}

static int
cmp_err(const void *a, const void *b)
{
    const pending_err *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Takes ownership of every string. */
static void
add_entry(load_ctx *c, char *section, char *key, char *value, char *origin,
          long rank)
{
    td_config *cfg = c->cfg;
    if (cfg->n_entries == c->cap_entries) {
        c->cap_entries = c->cap_entries ? c->cap_entries * 2 : 16;
        cfg->entries = td_realloc(cfg->entries,
                                  c->cap_entries * sizeof(*cfg->entries));
        c->ranks = td_realloc(c->ranks, c->cap_entries * sizeof(*c->ranks));
    }
    cfg->entries[cfg->n_entries] = (td_config_entry){ section, key, value,
                                                      origin };
    c->ranks[cfg->n_entries] = rank;
    cfg->n_entries++;
}

static bool
is_blank(int ch)
{
    return ch == ' ' || ch == '\t' || ch == '\v' || ch == '\f';
}

static char *
skip_blank(char *s)
{
    while (is_blank((unsigned char)*s))
        s++;
    return s;
}

/* Cuts trailing blanks off [s, end) and returns the new end. */
static char *
trim_end(char *s, char *end)
{
    while (end > s && is_blank((unsigned char)end[-1]))
        end--;
    *end = '\0';
    return end;
}

static bool
valid_section_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_-.", *s))
            return false;
    return true;
}

/* A section being read: a table section, a plugin section, or one that was
 * reported as unknown (its keys are skipped, one error is enough). */
typedef struct cur_section {
    enum { CUR_NONE, CUR_TABLE, CUR_PLUGIN, CUR_UNKNOWN } kind;
    char *name; /* owned */
} cur_section;

static void
parse_header(load_ctx *c, char *p, long line, cur_section *cur)
{
    char *close = strchr(p, ']');
    free(cur->name);
    cur->name = NULL;
    cur->kind = CUR_UNKNOWN; /* keys after a bad header are skipped */
    if (!close) {
        file_err(c, line, "syntax error: missing ']' after section name");
        return;
    }
    char *rest = skip_blank(close + 1);
    if (*rest && *rest != ';' && *rest != '#') {
        file_err(c, line, "syntax error: text after ']'");
        return;
    }
    char *name = skip_blank(p + 1);
    trim_end(name, close);
    if (!valid_section_name(name)) {
        file_err(c, line, "syntax error: invalid section name '%s'", name);
        return;
    }
    cur->name = td_strdup(name);
    int si = section_index(name);
    if (si >= 0) {
        cur->kind = CUR_TABLE;
        c->present[si] = true;
        if (!c->header_line[si])
            c->header_line[si] = line;
    } else if (is_plugin_section(name)) {
        cur->kind = CUR_PLUGIN;
    } else {
        file_err(c, line, "unknown section [%s]", name);
    }
}

/* VALUE after '=': optional double quotes; a ';' or '#' at the start or after
 * whitespace begins a comment. Returns NULL with *why set on a syntax error;
 * else the value, trimmed, in place. */
static char *
parse_value(char *p, const char **why)
{
    p = skip_blank(p);
    if (*p == '"') {
        char *close = strchr(p + 1, '"');
        if (!close) {
            *why = "syntax error: missing closing '\"'";
            return NULL;
        }
        char *rest = skip_blank(close + 1);
        if (*rest && *rest != ';' && *rest != '#') {
            *why = "syntax error: text after closing '\"'";
            return NULL;
        }
        *close = '\0';
        return p + 1;
    }
    char *end = p;
    for (; *end; end++)
        if ((*end == ';' || *end == '#') &&
            (end == p || is_blank((unsigned char)end[-1])))
            break;
    trim_end(p, end);
    return p;
}

static void
parse_line(load_ctx *c, char *s, long line, cur_section *cur)
{
    char *p = skip_blank(s);
    if (!*p || *p == ';' || *p == '#')
        return;
    if (*p == '[') {
        parse_header(c, p, line, cur);
        return;
    }

    char *eq = strchr(p, '=');
    if (!eq) {
        file_err(c, line, "syntax error: expected [section] or key = value");
        return;
    }
    char *key_end = trim_end(p, eq);
    if (key_end == p) {
        file_err(c, line, "syntax error: missing key before '='");
        return;
    }
    for (char *k = p; k < key_end; k++) {
        if (is_blank((unsigned char)*k) || *k == '"' || *k == '[' ||
            *k == ']') {
            file_err(c, line, "syntax error: invalid key '%s'", p);
            return;
        }
    }
    const char *why = NULL;
    char *value = parse_value(eq + 1, &why);
    if (!value) {
        file_err(c, line, "%s", why);
        return;
    }

    switch (cur->kind) {
    case CUR_NONE:
        file_err(c, line, "key '%s' before any [section]", p);
        return;
    case CUR_UNKNOWN:
        return; /* already reported at the header */
    case CUR_TABLE:
    case CUR_PLUGIN:
        break;
    }
    ssize_t dup = find_entry(c->cfg, cur->name, p);
    if (dup >= 0) {
        file_err(c, line, "duplicate key '%s' in [%s] (first set at line %ld)",
                 p, cur->name, c->ranks[dup]);
        return;
    }
    add_entry(c, td_strdup(cur->name), td_strdup(p), td_strdup(value),
              td_asprintf("%s:%ld", c->path, line), line);
}

/* Returns 0, or the errno of a read error (then the file is not used). */
static int
parse_file(load_ctx *c, FILE *f)
{
    cur_section cur = { CUR_NONE, NULL };
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    long line = 0;

    while ((len = getline(&buf, &cap, f)) >= 0) {
        line++;
        size_t n = (size_t)len;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            buf[--n] = '\0';
        if (memchr(buf, '\0', n)) {
            file_err(c, line, "syntax error: NUL byte in line");
            continue;
        }
        char *s = buf;
        if (line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
            s += 3; /* a UTF-8 byte order mark, as some editors write */
        parse_line(c, s, line, &cur);
    }
    int err = ferror(f) ? (errno ? errno : EIO) : 0;
    free(buf);
    free(cur.name);
    return err;
}

static void
mark_present(load_ctx *c, const char *section)
{
    int si = section_index(section);
    if (si >= 0)
        c->present[si] = true;
}

/* Splits an environ string "NAME=VALUE"; *name is freed by the caller. */
static const char *
split_env(const char *kv, char **name)
{
    const char *eq = strchr(kv, '=');
    if (!eq) {
        *name = td_strdup(kv);
        return "";
    }
    *name = td_strndup(kv, (size_t)(eq - kv));
    return eq + 1;
}

static bool
env_matches_entry(const td_config *cfg, const char *section, const char *name)
{
    bool found = false;
    for (size_t i = 0; i < cfg->n_entries && !found; i++) {
        if (strcmp(cfg->entries[i].section, section) != 0)
            continue;
        char *n = env_name(section, cfg->entries[i].key);
        found = strcmp(n, name) == 0;
        free(n);
    }
    return found;
}

/* Appends a pass-through key from an environment variable: the part after
 * the row's prefix, lower-cased with '_' as '.', e.g.
 * TRIAGED_KAFKA_RDKAFKA_SECURITY_PROTOCOL -> rdkafka.security.protocol. */
static void
add_prefixed_env(load_ctx *c, const td_option *o, const char *name,
                 const char *rest, const char *value)
{
    char *key = td_asprintf("%s%s", o->name, rest);
    for (char *k = key + strlen(o->name); *k; k++)
        *k = *k == '_' ? '.' : (char)tolower((unsigned char)*k);
    add_entry(c, td_strdup(o->section), key, td_strdup(value),
              td_asprintf("env:%s", name), c->next_env_rank++);
    mark_present(c, o->section);
}

/* Is NAME the variable of a key of table section SEC? *prefix_row is set
 * when it is a pass-through variable (TRIAGED_KAFKA_RDKAFKA_...). */
static bool
env_is_known(const char *sec, const char *name, const td_option **prefix_row)
{
    *prefix_row = NULL;
    for (const td_option *o = td_options; o->name; o++) {
        if (strcmp(o->section, sec) != 0)
            continue;
        char *n = env_name(o->section, o->name);
        bool hit;
        if (o->flags & TD_OPT_PREFIX) {
            hit = strncmp(name, n, strlen(n)) == 0 && name[strlen(n)] != '\0';
            if (hit)
                *prefix_row = o;
        } else {
            hit = strcmp(name, n) == 0;
        }
        free(n);
        if (hit)
            return true;
    }
    return false;
}

static void
apply_env(load_ctx *c)
{
    td_config *cfg = c->cfg;

    /* Keys in the file, table keys or not (rdkafka.*, plugin sections). */
    for (size_t i = 0; i < cfg->n_entries; i++) {
        td_config_entry *e = &cfg->entries[i];
        char *name = env_name(e->section, e->key);
        const char *v = getenv(name);
        if (v) {
            free(e->value);
            free(e->origin);
            e->value = td_strdup(v);
            e->origin = td_asprintf("env:%s", name);
            c->ranks[i] = c->next_env_rank++;
        }
        free(name);
    }

    /* Table keys the file lacks. */
    for (const td_option *o = td_options; o->name; o++) {
        if ((o->flags & TD_OPT_PREFIX) ||
            find_entry(cfg, o->section, o->name) >= 0)
            continue;
        char *name = env_name(o->section, o->name);
        const char *v = getenv(name);
        if (v) {
            add_entry(c, td_strdup(o->section), td_strdup(o->name),
                      td_strdup(v), td_asprintf("env:%s", name),
                      c->next_env_rank++);
            mark_present(c, o->section);
        }
        free(name);
    }

    /* Pass-through keys, and variables of a table section that name no key:
     * those are typos, reported rather than ignored. */
    for (char **ep = environ; ep && *ep; ep++) {
        if (strncmp(*ep, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
            continue;
        char *name;
        const char *value = split_env(*ep, &name);
        for (size_t si = 0; si < N_SECTIONS; si++) {
            char *sp = env_name(sections[si].name, "");
            size_t splen = strlen(sp);
            bool in_section = strncmp(name, sp, splen) == 0;
            free(sp);
            if (!in_section)
                continue;
            const td_option *prefix_row;
            if (!env_is_known(sections[si].name, name, &prefix_row)) {
                char *key = td_strdup(name + splen);
                for (char *k = key; *k; k++)
                    *k = (char)tolower((unsigned char)*k);
                char *origin = td_asprintf("env:%s", name);
                add_err(c, c->next_env_rank++, origin,
                        "unknown key '%s' in [%s]", key, sections[si].name);
                free(origin);
                free(key);
            } else if (prefix_row &&
                       !env_matches_entry(cfg, prefix_row->section, name)) {
                char *pn = env_name(prefix_row->section, prefix_row->name);
                add_prefixed_env(c, prefix_row, name, name + strlen(pn), value);
                free(pn);
            }
            break;
        }
        free(name);
    }
}

static void
set_defaults(td_config *cfg)
{
    for (const td_option *o = td_options; o->name; o++) {
        if (o->offset == NO_OFFSET || !o->def)
            continue;
        if (o->def == default_hostname) {
            char host[256] = "";
            if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
                strcpy(host, "triaged");
            host[sizeof(host) - 1] = '\0';
            *(char **)field_of(cfg, o) = td_strdup(host);
            continue;
        }
        char *why = NULL;
        if (convert(o, o->def, cfg, &why) != TD_OK) {
            /* A bad default is a bug in the table; the unit tests load the
             * example file, which exercises every default. */
            fprintf(stderr, "triaged: bad default: %s\n", why);
            abort();
        }
    }
}

static void
convert_entries(load_ctx *c)
{
    td_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->n_entries; i++) {
        const td_config_entry *e = &cfg->entries[i];
        if (is_plugin_section(e->section))
            continue;
        const td_option *o = find_option(e->section, e->key);
        if (!o) {
            add_err(c, c->ranks[i], e->origin, "unknown key '%s' in [%s]",
                    e->key, e->section);
            continue;
        }
        if (o->offset == NO_OFFSET) {
            /* pass-through: only emptiness is ours to check */
            if (!*e->value)
                add_err(c, c->ranks[i], e->origin, "empty value for %s.%s",
                        e->section, e->key);
            continue;
        }
        char *why = NULL;
        if (convert(o, e->value, cfg, &why) != TD_OK) {
            add_err(c, c->ranks[i], e->origin, "%s", why);
            free(why);
        }
    }
}

static void
check_required(load_ctx *c)
{
    for (const td_option *o = td_options; o->name; o++) {
        int si = section_index(o->section);
        bool required = (o->flags & TD_OPT_REQUIRED) ||
                        ((o->flags & TD_OPT_REQUIRED_IN_SECTION) &&
                         c->present[si]);
        if (!required || find_entry(c->cfg, o->section, o->name) >= 0)
            continue;
        /* At the section's header when the file has one, else at line 1. */
        long line = c->header_line[si] ? c->header_line[si] : 1;
        file_err(c, line, "missing required key %s in [%s]", o->name,
                 o->section);
    }
}

int
td_config_load(const char *path, td_config **out, td_errors *errs)
{
    *out = NULL;
    struct stat st;
    FILE *f = fopen(path, "r");
    if (f && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f); /* Linux opens a directory for reading; reading fails */
        f = NULL;
        errno = EISDIR;
    }
    if (!f) {
        if (errs)
            td_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
        return TD_ERR;
    }

    load_ctx c = { .path = path, .next_env_rank = ENV_RANK };
    c.cfg = td_calloc(1, sizeof(*c.cfg));
    c.cfg->path = td_strdup(path);

    int read_err = parse_file(&c, f);
    fclose(f);
    if (read_err) {
        /* Half a file would only produce misleading errors: report one. */
        for (size_t i = 0; i < c.n_errs; i++)
            free(c.errs[i].msg);
        free(c.errs);
        free(c.ranks);
        td_config_free(c.cfg);
        if (errs)
            td_errors_add(errs, "%s: cannot read: %s", path,
                          strerror(read_err));
        return TD_ERR;
    }
    apply_env(&c);
    set_defaults(c.cfg);
    convert_entries(&c);
    check_required(&c);

    for (size_t si = 0; si < N_SECTIONS; si++)
        if (sections[si].has_offset != NO_OFFSET)
            *(bool *)((char *)c.cfg + sections[si].has_offset) = c.present[si];

    if (c.n_errs > 0) /* qsort(NULL, 0, ...) is undefined */
        qsort(c.errs, c.n_errs, sizeof(*c.errs), cmp_err);
    for (size_t i = 0; i < c.n_errs; i++) {
        if (errs)
            td_errors_add(errs, "%s", c.errs[i].msg);
        free(c.errs[i].msg);
    }
    free(c.errs);
    free(c.ranks);

    if (c.n_errs > 0) {
        td_config_free(c.cfg);
        return TD_ERR;
    }
    *out = c.cfg;
    return TD_OK;
}

void
td_config_free(td_config *cfg)
{
    if (!cfg)
        return;
    for (const td_option *o = td_options; o->name; o++) {
        if (o->offset == NO_OFFSET)
            continue;
        if (o->type == TD_OPT_STRING || o->type == TD_OPT_PATH ||
            o->type == TD_OPT_LIST)
            free(*(char **)field_of(cfg, o));
    }
    for (size_t i = 0; i < cfg->n_entries; i++) {
        free(cfg->entries[i].section);
        free(cfg->entries[i].key);
        free(cfg->entries[i].value);
        free(cfg->entries[i].origin);
    }
    free(cfg->entries);
    free(cfg->path);
    free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Queries */

const char *
td_config_get(const td_config *cfg, const char *section, const char *key)
{
    ssize_t i = find_entry(cfg, section, key);
    if (i >= 0)
        return cfg->entries[i].value;
    /* Defaults are not entries, but a table key left unset reads as its
     * default text, so a plugin asking for e.g. kafka.group gets "triaged".
     * The host name default reads as the name found at load time. */
    const td_option *o = find_option(section, key);
    if (!o || (o->flags & TD_OPT_PREFIX))
        return NULL;
    if (o->def == default_hostname)
        return cfg->instance;
    return o->def;
}

int
td_config_each(const td_config *cfg, const char *section, const char *prefix,
               int (*fn)(const td_config_entry *e, void *arg), void *arg)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < cfg->n_entries; i++) {
        const td_config_entry *e = &cfg->entries[i];
        if (strcmp(e->section, section) != 0 ||
            (plen && strncmp(e->key, prefix, plen) != 0))
            continue;
        int rc = fn(e, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static bool
same_string(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

void
td_config_diff(const td_config *old, const td_config *new_,
               void (*fn)(const td_option *opt, void *arg), void *arg)
{
    for (const td_option *o = td_options; o->name; o++) {
        if (o->offset == NO_OFFSET)
            continue;
        const void *a = cfield_of(old, o), *b = cfield_of(new_, o);
        bool same = true;
        switch (o->type) {
        case TD_OPT_STRING:
        case TD_OPT_PATH:
        case TD_OPT_LIST:
            same = same_string(*(char *const *)a, *(char *const *)b);
            break;
        case TD_OPT_INT:
        case TD_OPT_ENUM:
            same = *(const int *)a == *(const int *)b;
            break;
        case TD_OPT_BOOL:
            same = *(const bool *)a == *(const bool *)b;
            break;
        case TD_OPT_DURATION:
        case TD_OPT_SIZE:
            same = *(const int64_t *)a == *(const int64_t *)b;
            break;
        }
        if (!same)
            fn(o, arg);
    }
}

void
td_config_apply_reloadable(td_config *dst, const td_config *src)
{
    for (const td_option *o = td_options; o->name; o++) {
        if (o->offset == NO_OFFSET || !(o->flags & TD_OPT_RELOAD))
            continue;
        void *a = field_of(dst, o);
        const void *b = cfield_of(src, o);
        switch (o->type) {
        case TD_OPT_STRING:
        case TD_OPT_PATH:
        case TD_OPT_LIST: {
            char *const *from = b;
            free(*(char **)a);
            *(char **)a = *from ? td_strdup(*from) : NULL;
            break;
        }
        case TD_OPT_INT:
        case TD_OPT_ENUM:
            *(int *)a = *(const int *)b;
            break;
        case TD_OPT_BOOL:
            *(bool *)a = *(const bool *)b;
            break;
        case TD_OPT_DURATION:
        case TD_OPT_SIZE:
            *(int64_t *)a = *(const int64_t *)b;
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Documentation from the table */

static const char *
type_name(td_opt_type t)
{
    switch (t) {
    case TD_OPT_STRING: return "string";
    case TD_OPT_INT: return "integer";
    case TD_OPT_BOOL: return "yes|no";
    case TD_OPT_DURATION: return "duration";
    case TD_OPT_SIZE: return "size";
    case TD_OPT_ENUM: return "enum";
    case TD_OPT_LIST: return "list";
    case TD_OPT_PATH: return "path";
    }
    return "?";
}

/* "integer 1..100000", "duration 1ms..10s", "debug|info|warn|error" */
static void
describe_type(const td_option *o, char *buf, size_t len)
{
    char range[80];
    switch (o->type) {
    case TD_OPT_INT:
    case TD_OPT_DURATION:
    case TD_OPT_SIZE:
        format_bounds(o, range, sizeof(range));
        snprintf(buf, len, "%s %s", type_name(o->type), range);
        break;
    case TD_OPT_ENUM:
        snprintf(buf, len, "%s", o->values);
        break;
    default:
        snprintf(buf, len, "%s", type_name(o->type));
        break;
    }
}

static const char *
default_text(const td_option *o)
{
    if (o->def)
        return o->def[0] ? o->def : "(empty)";
    if (o->flags & (TD_OPT_REQUIRED | TD_OPT_REQUIRED_IN_SECTION))
        return "(required)";
    return "-";
}

static void
full_key(const td_option *o, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%s%s", o->section, o->name,
             (o->flags & TD_OPT_PREFIX) ? "*" : "");
}

void
td_config_print_help(FILE *f)
{
    int wkey = 0, wtype = 0, wdef = 0;
    char key[128], type[128];
    for (const td_option *o = td_options; o->name; o++) {
        full_key(o, key, sizeof(key));
        describe_type(o, type, sizeof(type));
        wkey = wkey > (int)strlen(key) ? wkey : (int)strlen(key);
        wtype = wtype > (int)strlen(type) ? wtype : (int)strlen(type);
        int d = (int)strlen(default_text(o));
        wdef = wdef > d ? wdef : d;
    }

    fprintf(f, "Options of the triaged config file, by section: key, type, "
               "default, whether\n"
               "SIGHUP applies a change, and what it does. Every key can be "
               "set in the\n"
               "environment too, as TRIAGED_<SECTION>_<KEY>.\n");
    for (size_t si = 0; si < N_SECTIONS; si++) {
        fprintf(f, "\n[%s]  %s\n", sections[si].name, sections[si].help);
        for (const td_option *o = td_options; o->name; o++) {
            if (strcmp(o->section, sections[si].name) != 0)
                continue;
            full_key(o, key, sizeof(key));
            describe_type(o, type, sizeof(type));
            fprintf(f, "  %-*s  %-*s  %-*s  %-10s  %s\n", wkey, key, wtype,
                    type, wdef, default_text(o),
                    (o->flags & TD_OPT_RELOAD) ? "reloadable" : "", o->help);
        }
    }
}

/* Writes TEXT as "; " comment lines wrapped at 78 columns. */
static void
write_comment(FILE *f, const char *text)
{
    const int width = 78 - 2;
    const char *p = text;
    while (*p) {
        int col = 0;
        fputs(";", f);
        while (*p && *p != '\n') {
            size_t w = strcspn(p, " \n");
            if (col > 0 && col + 1 + (int)w > width)
                break;
            fprintf(f, " %.*s", (int)w, p);
            col += 1 + (int)w;
            p += w;
            while (*p == ' ')
                p++;
        }
        fputs("\n", f);
        if (*p == '\n')
            p++;
    }
}

static const char *
example_for(const td_option *o, const char **key)
{
    *key = o->name;
    for (size_t i = 0; i < TD_ARRAY_LEN(examples); i++) {
        if (strcmp(examples[i].section, o->section) == 0 &&
            strcmp(examples[i].name, o->name) == 0) {
            *key = examples[i].key;
            return examples[i].value;
        }
    }
    return NULL;
}

static void
write_key_line(FILE *f, bool commented, const char *key, const char *value)
{
    fprintf(f, "%s%s =%s%s\n", commented ? ";" : "", key,
            value && *value ? " " : "", value ? value : "");
}

/* A section that switches a feature on and needs no key is written with its
 * header commented out, so the example enables only what it configures. */
static bool
section_is_optional(const section_info *s)
{
    if (s->has_offset == NO_OFFSET)
        return false;
    for (const td_option *o = td_options; o->name; o++)
        if (strcmp(o->section, s->name) == 0 &&
            (o->flags & (TD_OPT_REQUIRED | TD_OPT_REQUIRED_IN_SECTION)))
            return false;
    return true;
}

void
td_config_write_example(FILE *f)
{
    write_comment(f,
        "triaged.conf: an example configuration of triaged, with every key "
        "the daemon knows.\n"
        "\n"
        "Written by 'triaged --print-example' from the option table in "
        "daemon/config.c. A key set below is required; a key commented out "
        "shows its default, or an example when it has none. Comments start "
        "with ';' or '#' at the start of a line or after whitespace; a value "
        "may be written in double quotes.\n"
        "\n"
        "Every key can be overridden in the environment as "
        "TRIAGED_<SECTION>_<KEY>, upper case with dots as underscores, e.g. "
        "TRIAGED_KAFKA_BROKERS or TRIAGED_KAFKA_RDKAFKA_SECURITY_PROTOCOL. "
        "Plugins read their own settings from [plugin.NAME] sections.\n"
        "\n"
        "'triaged -t -c FILE' checks a file and lists every problem.");

    for (size_t si = 0; si < N_SECTIONS; si++) {
        const section_info *s = &sections[si];
        bool optional = section_is_optional(s);
        fprintf(f, "\n%s[%s]\n", optional ? ";" : "", s->name);
        write_comment(f, s->help);
        if (optional)
            write_comment(f, "Remove the ';' before the section name to "
                             "enable it.");

        for (const td_option *o = td_options; o->name; o++) {
            if (strcmp(o->section, s->name) != 0)
                continue;
            char type[128], facts[256];
            describe_type(o, type, sizeof(type));
            snprintf(facts, sizeof(facts), "%s%s%s%s", type,
                     (o->flags & TD_OPT_REQUIRED) ? ", required" : "",
                     (o->flags & TD_OPT_REQUIRED_IN_SECTION)
                         ? ", required in this section" : "",
                     (o->flags & TD_OPT_RELOAD) ? ", applied on SIGHUP" : "");
            fputs("\n", f);
            write_comment(f, o->help);
            write_comment(f, facts);

            const char *key;
            const char *example = example_for(o, &key);
            if (o->flags & (TD_OPT_REQUIRED | TD_OPT_REQUIRED_IN_SECTION))
                write_key_line(f, false, key, example);
            else if (o->def && o->def != default_hostname)
                write_key_line(f, true, key, o->def);
            else
                write_key_line(f, true, key, example);
        }
    }
}

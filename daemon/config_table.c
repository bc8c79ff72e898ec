/* config_table.c — the option table: one row per key of triaged.conf.
 *
 * Each row says the key's section and name, type, default, bounds, where the
 * value lands in struct td_config, whether SIGHUP applies it, and its help
 * text. config.c parses and checks a file with it; config_doc.c prints
 * --help-config and writes the example file (config/triaged.conf) from it,
 * so the documentation cannot drift from the code. A new key is a new row
 * here and a field in td_config (config.h). */
#include <stddef.h>

#include "internal/config_table.h"
#include "internal/util.h"

#define OFF(field) offsetof(td_config, field)

const char td_config_default_hostname[] = "(host name)";

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
    OPT_STR("triaged", "instance", td_config_default_hostname, 0, instance,
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

/* The sections, in the order they are documented. */
const section_info td_config_sections[N_SECTIONS] = {
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
_Static_assert(TD_ARRAY_LEN(td_config_sections) == N_SECTIONS, "N_SECTIONS");

/* Examples for keys without a default worth showing. */
const config_example td_config_examples[] = {
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
const size_t td_config_n_examples = TD_ARRAY_LEN(td_config_examples);

/* config.h — triaged's configuration: one INI file, one table of options.
 *
 * The option table (config_table.c) is the single source of truth: it
 * parses and validates the file (config.c), applies TRIAGED_<SECTION>_<KEY>
 * environment overrides, prints --help-config, and writes the annotated
 * example that ships as config/triaged.conf (config_doc.c), so docs and
 * code cannot drift.
 *
 * Ownership: td_config_load() returns a td_config the caller frees with
 * td_config_free(); every string inside it is owned by the td_config.
 */
#ifndef TD_CONFIG_H
#define TD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "internal/errors.h"
#include "triaged/plugin.h"

typedef enum {
    TD_OPT_STRING,   /* any non-empty string */
    TD_OPT_INT,      /* integer within [min, max] */
    TD_OPT_BOOL,     /* yes/no, true/false, on/off, 1/0 */
    TD_OPT_DURATION, /* 500ms 30s 5m 2h 7d, stored as int64 milliseconds */
    TD_OPT_SIZE,     /* 512 4k 1M 1MiB 2G, stored as int64 bytes */
    TD_OPT_ENUM,     /* one of a '|' separated list, stored as the index */
    TD_OPT_LIST,     /* whitespace or comma separated words, stored as string */
    TD_OPT_PATH,     /* a file path (existence not checked at parse time) */
} td_opt_type;

enum {
    TD_OPT_REQUIRED = 1 << 0,         /* must be set (file or environment) */
    TD_OPT_REQUIRED_IN_SECTION = 1 << 1, /* required when its section is present */
    TD_OPT_RELOAD = 1 << 2,           /* SIGHUP applies a change without restart */
    TD_OPT_PREFIX = 1 << 3,           /* name is a prefix: "rdkafka." passes any key */
};

typedef struct td_option {
    const char *section;
    const char *name;
    td_opt_type type;
    const char *def;     /* default as text, NULL for none */
    int64_t min, max;    /* bounds for INT, DURATION, SIZE */
    const char *values;  /* ENUM: "debug|info|warn|error" */
    unsigned flags;
    size_t offset;       /* offsetof(td_config, field); (size_t)-1 for none */
    const char *help;    /* one or more lines; the example file uses it */
} td_option;

/* Log levels (TD_LOG_DEBUG..TD_LOG_ERROR, from triaged/plugin.h) are the
 * index of the [triaged] log_level enum. */

typedef struct td_config_entry {
    char *section;
    char *key;
    char *value;
    char *origin; /* "FILE:LINE" or "env:TRIAGED_X_Y" */
} td_config_entry;

typedef struct td_config {
    char *path;

    /* [triaged] */
    char *instance;
    int log_level;

    /* [postgres] */
    char *pg_conninfo;
    bool pg_migrate;

    /* [redis] */
    char *redis_url;

    /* [kafka] — has_kafka tells whether the section is present */
    bool has_kafka;
    char *kafka_brokers;
    char *kafka_group;
    char *alerts_topic;
    char *capacity_topic;
    char *incidents_topic;
    char *dead_letter_topic;

    /* [syslog] */
    bool has_syslog;
    char *syslog_udp;
    char *syslog_tcp;
    char *syslog_rules;
    int64_t syslog_max_message_size;
    int syslog_oversize; /* 0 truncate, 1 reject */
    int syslog_max_connections;
    int64_t syslog_idle_timeout_ms;
    bool syslog_keep_unmatched;
    int syslog_unmatched_severity;

    /* [http] */
    bool has_http;
    char *http_listen;
    char *http_tokens;
    bool http_open_reads;
    int64_t http_max_body;
    int64_t http_idle_timeout_ms;
    int http_rate_limit;
    int http_rate_burst;
    int64_t http_feed_buffer;
    int http_feed_history;
    int64_t http_feed_keepalive_ms;
    char *http_am_resource_label;
    int http_feed_max_clients;
    char *http_tls_cert;
    char *http_tls_key;
    int http_auth_fail_limit;

    /* [pipeline] */
    int batch_size;
    int64_t batch_time_ms;
    int lanes;
    int64_t max_message_size;
    int queue_limit;
    int64_t queue_max_bytes;
    int64_t batch_max_bytes;
    char *identity_labels;

    /* [incident] */
    int64_t resolve_grace_ms;
    int64_t reopen_window_ms;
    int64_t close_after_ms;
    int64_t correlation_window_ms;
    int flap_threshold;
    int64_t flap_window_ms;
    char *priority_matrix;

    /* [cmdb] */
    char *cmdb_bind_labels;
    int impact_many_services;

    /* [capacity] */
    int64_t capacity_window_ms;
    int64_t capacity_horizon_ms;
    int capacity_min_points;
    int capacity_min_r2_pct;
    int64_t capacity_retention_ms;
    int64_t capacity_rollup_interval_ms;

    /* [sla] */
    bool sla_events;
    int64_t sla_tick_interval_ms;
    int sla_fast_budget_pct;
    int64_t sla_fast_window_ms;
    int64_t sla_fast_short_window_ms;
    int sla_slow_budget_pct;
    int64_t sla_slow_window_ms;
    int64_t sla_slow_short_window_ms;

    /* [plugins] */
    char *plugins_dir;
    char *plugins_load; /* NULL when absent: derived from sections present */

    /* Every key as read, after environment overrides, in file order. Used
     * for pass-through keys (rdkafka.*) and for plugin sections. */
    td_config_entry *entries;
    size_t n_entries;
} td_config;

/* The table, terminated by a row whose name is NULL. */
extern const td_option td_options[];

/* Parse PATH, apply environment overrides (from environ), validate against
 * the table. On success returns TD_OK and *out; on failure TD_ERR, *out is
 * NULL and errs holds every problem as "FILE:LINE: message". */
int td_config_load(const char *path, td_config **out, td_errors *errs);
void td_config_free(td_config *cfg);

/* The value of SECTION.KEY as text after overrides, or NULL. Borrowed. */
const char *td_config_get(const td_config *cfg, const char *section,
                          const char *key);

/* Calls fn for every entry of SECTION whose key starts with PREFIX, in file
 * order; stops and returns fn's value when it is non-zero. */
int td_config_each(const td_config *cfg, const char *section,
                   const char *prefix,
                   int (*fn)(const td_config_entry *e, void *arg), void *arg);

/* Compare two loaded configs; for every option whose value differs call fn
 * with the option (reloadable or not: see opt->flags & TD_OPT_RELOAD). */
void td_config_diff(const td_config *old, const td_config *new_,
                    void (*fn)(const td_option *opt, void *arg), void *arg);

/* Copy every reloadable option's value (TD_OPT_RELOAD) from src to dst; the
 * others keep dst's. What SIGHUP applies. */
void td_config_apply_reloadable(td_config *dst, const td_config *src);

/* Value parsers, exposed for reuse and unit tests. Return TD_OK/TD_ERR.
 * A duration is digits and a unit (ms, s, m, h, d); a bare 0 is 0. */
int td_parse_duration(const char *s, int64_t *ms);
int td_parse_size(const char *s, int64_t *bytes);
int td_parse_bool(const char *s, bool *b);

/* Print the option reference (for --help-config) or the annotated example
 * config file (for --print-example; config/triaged.conf is its output). */
void td_config_print_help(FILE *f);
void td_config_write_example(FILE *f);

#endif

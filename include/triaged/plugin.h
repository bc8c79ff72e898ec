/* triaged/plugin.h — the whole plugin ABI.
 *
 * The design is simple: a plugin is a shared object that exports one constant
 * struct of callbacks, `triaged_plugin` (type td_plugin). Inputs turn bytes from the outside world
 * (a Kafka message, a syslog line, an HTTP body) into messages they submit to
 * the host; the host decodes, deduplicates, correlates and stores them, then
 * calls the message's ack callback with the outcome. Outputs receive every
 * incident and alert change as an event.
 *
 * All callbacks run on the host's single libevent loop (host->base). A plugin
 * must never block it: no sleeping, no blocking I/O; arm events instead.
 *
 * Compatibility: TD_PLUGIN_ABI_VERSION changes when anything here changes
 * incompatibly; the loader refuses a plugin built for another version. New
 * host functions are only ever appended to struct td_host, whose `size`
 * tells a plugin which ones exist.
 */
#ifndef TRIAGED_PLUGIN_H
#define TRIAGED_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TD_PLUGIN_ABI_VERSION 2u /* 2: td_plugin.reload and .check appended */

struct event_base;

typedef enum { TD_PLUGIN_INPUT = 1, TD_PLUGIN_OUTPUT = 2 } td_plugin_kind;

/* Log levels. */
enum { TD_LOG_DEBUG, TD_LOG_INFO, TD_LOG_WARN, TD_LOG_ERROR };

/* What a submitted message's bytes are. */
typedef enum {
    TD_FMT_ALERT = 1,    /* native alert JSON: one object or an array */
    TD_FMT_ALERTMANAGER, /* Alertmanager webhook, version 4 */
    TD_FMT_PAGERDUTY,    /* PagerDuty Events API v2 event */
    TD_FMT_CAPACITY,     /* capacity sample JSON: one object or an array */
    TD_FMT_FIELDS,       /* an already structured alert: td_input_msg.fields */
} td_format;

/* A structured alert, for inputs that build alerts themselves (syslog rules).
 * Every pointer is borrowed for the duration of submit(); the host copies. */
typedef struct td_alert_fields {
    const char *source, *resource, *check;       /* required */
    const char *status;                          /* "firing" or "resolved" */
    const char *severity, *summary, *dedup_key, *ci; /* NULL for default */
    const char *const *label_names;
    const char *const *label_values;
    size_t n_labels;
    int64_t occurred_at_ms;                      /* 0: time received */
} td_alert_fields;

/* Where a message sits in a durable, replayable input (a Kafka partition).
 * The host stores offset + 1 as the input's next position in the same
 * PostgreSQL transaction as the message's effects: exactly once in effect. */
typedef struct td_position {
    const char *stream; /* e.g. the topic */
    int32_t partition;
    int64_t offset;
} td_position;

typedef enum {
    TD_ACK_OK = 0,  /* committed durably (or a duplicate folded in) */
    TD_ACK_INVALID, /* rejected for good: reason says why; never retry */
    TD_ACK_RETRY,   /* not processed (shutdown, backend down): retry later */
} td_ack_status;

typedef struct td_ack {
    td_ack_status status;
    const char *reason; /* short code for metrics: "not_json", "too_big" ... */
    const char *detail; /* one line for humans */
    size_t accepted;    /* alerts or samples the message held */
    const char *key;    /* PagerDuty: the dedup_key used; else NULL */
} td_ack;

/* Called exactly once per submitted message, on the loop. `ack` is borrowed
 * for the call. */
typedef void (*td_ack_fn)(void *arg, const td_ack *ack);

typedef struct td_input_msg {
    td_format format;
    const void *data;              /* borrowed for the call; host copies */
    size_t len;
    const td_alert_fields *fields; /* for TD_FMT_FIELDS */
    const td_position *position;   /* NULL when not replayable */
    td_ack_fn ack;                 /* may be NULL: fire and forget */
    void *ack_arg;
} td_input_msg;

/* An event for outputs: an incident or alert change. */
typedef struct td_event {
    const char *kind; /* "incident.opened", "incident.resolved", "alert.firing" ... */
    const char *key;  /* partitioning key: the incident number or fingerprint */
    const char *json; /* the event as JSON, borrowed for the call */
    size_t len;
} td_event;

/* Called by the host for each stored position of a stream, for
 * positions_fetch(); offset is -1 when nothing is stored for a partition. */
typedef void (*td_positions_fn)(void *arg, int status, const int32_t *partitions,
                                const int64_t *offsets, size_t n);

/* The host's side, handed to init(). Valid until fini() returns. */
typedef struct td_host td_host;
struct td_host {
    uint32_t abi_version;
    size_t size; /* sizeof(struct td_host) of the host: newer hosts are bigger */
    struct event_base *base;
    const char *instance;

    /* One log line: msg is fixed text, fields_fmt printf-style "k=v k=v". */
    void (*log)(const td_host *h, int level, const char *msg,
                const char *fields_fmt, ...)
        __attribute__((format(printf, 4, 5)));

    /* Config values as text after environment overrides; borrowed. */
    const char *(*config_get)(const td_host *h, const char *section,
                              const char *key);
    int (*config_each)(const td_host *h, const char *section,
                       const char *prefix,
                       int (*fn)(const char *key, const char *value, void *arg),
                       void *arg);

    /* Hand a message to the pipeline. The message is always taken (its data
     * copied) and its ack called exactly once, later or at once. Returns 0,
     * or TD_SUBMIT_FULL: taken, but the pipeline is now full; the plugin
     * stops reading (pause the partition, stop reading the socket) until the
     * host calls its resume() callback. Acks for one position stream
     * (topic, partition) arrive in submit order. After a TD_ACK_RETRY for a
     * partition, every later in-flight message of it is RETRY'd too, until
     * the plugin fetches its positions again. */
    int (*submit)(const td_host *h, const td_input_msg *msg);

    /* Add to a counter metric triaged_<name>{plugin="...",<labels>}. */
    void (*count)(const td_host *h, const char *name, const char *labels,
                  uint64_t n);

    /* Read the stored positions of a stream (Kafka: next offsets of the
     * given partitions) from PostgreSQL, asynchronously. Returns 0 or -1. */
    int (*positions_fetch)(const td_host *h, const char *stream,
                           const int32_t *partitions, size_t n,
                           td_positions_fn fn, void *arg);

    void *priv; /* the host's; plugins must not touch it */

    /* Appended in ABI 1 (check size): set a gauge metric
     * triaged_<name>{plugin="...",<labels>}. */
    void (*gauge)(const td_host *h, const char *name, const char *labels,
                  double v);
};

#define TD_SUBMIT_FULL 1

/* The one symbol a plugin exports, named TD_PLUGIN_SYMBOL. */
typedef struct td_plugin {
    uint32_t abi_version; /* TD_PLUGIN_ABI_VERSION */
    const char *name;     /* equals the file name without .so */
    td_plugin_kind kind;
    const char *description;

    /* Read config, create state; nothing may be consumed yet. Return 0, or
     * -1 with a one-line reason in err. *state is passed to the others. */
    int (*init)(const td_host *host, void **state, char *err, size_t errlen);
    /* Start consuming / producing: the pipeline is ready. */
    int (*start)(void *state, char *err, size_t errlen);
    /* Stop taking new input; in-flight messages are still acked. */
    void (*stop)(void *state);
    /* The pipeline has room again after submit() returned TD_SUBMIT_FULL. */
    void (*resume)(void *state);
    /* Outputs: one incident or alert change. */
    void (*on_event)(void *state, const td_event *ev);
    /* Flush what is pending with a time limit, then free everything. */
    void (*fini)(void *state);

    /* Appended in ABI 2 (td_plugin has no size field, so appending to it
     * changes the version): SIGHUP. Re-read what can change without a
     * restart (rules, files); config_get() returns the new values during
     * the call. May be NULL. */
    void (*reload)(void *state);
    /* Appended in ABI 2: `triaged -t`. Check the plugin's own files (a
     * rules file) without starting anything: no state, host->base is NULL.
     * Return 0, or -1 with a one-line reason in err. May be NULL. */
    int (*check)(const td_host *host, char *err, size_t errlen);
} td_plugin;

#define TD_PLUGIN_SYMBOL "triaged_plugin"
#define TD_PLUGIN_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
}
#endif
#endif

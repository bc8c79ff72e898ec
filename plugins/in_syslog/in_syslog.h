/* in_syslog.h — the syslog input's shared state, between in_syslog.c
 * (plugin callbacks, config, rules, message handling, metrics) and
 * in_syslog_net.c (UDP and TCP listeners and connections). */
#ifndef IN_SYSLOG_H
#define IN_SYSLOG_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "syslog_parse.h"
#include "triaged/plugin.h"

/* Per-listener counters, flushed to the host's metrics once a second. */
enum {
    ISL_RECEIVED,
    ISL_PARSED,
    ISL_TRUNCATED,
    ISL_MATCHED,
    ISL_RESOLVED,
    ISL_UNMATCHED,
    ISL_SUBMITTED,
    ISL_DROP_UNMATCHED,
    ISL_DROP_FULL,
    ISL_DROP_KERNEL,
    ISL_CONN_ACCEPTED,
    ISL_CONN_REJECTED,
    ISL_CLOSE_PEER,
    ISL_CLOSE_IDLE,
    ISL_CLOSE_BAD_FRAME,
    ISL_CLOSE_ERROR,
    ISL_MALFORMED, /* + parse reason index; then too_big, incomplete */
    ISL_N_COUNTERS = ISL_MALFORMED + TDS_N_PARSE_REASONS + 2,
};
#define ISL_MALFORMED_TOO_BIG (ISL_MALFORMED + TDS_N_PARSE_REASONS)
#define ISL_MALFORMED_INCOMPLETE (ISL_MALFORMED + TDS_N_PARSE_REASONS + 1)

typedef struct isl isl;
typedef struct isl_conn isl_conn;

typedef struct isl_listener {
    isl *s;
    bool tcp;
    int fd;
    struct event *ev;
    struct event *ev_resume;    /* accept() failed: listen again in 1 s */
    char name[96];              /* "tcp:127.0.0.1:5514", the metric label */
    char *labels[ISL_N_COUNTERS]; /* label string per counter */
    uint64_t pending[ISL_N_COUNTERS];
    uint32_t kernel_drops;      /* last SO_RXQ_OVFL value seen */
    size_t n_conns;
} isl_listener;

struct isl_conn {
    isl_listener *l;
    int fd;
    struct event *ev_read, *ev_idle;
    tds_framer fr;
    char peer[64];
    int64_t last_ms;
    bool reading; /* ev_read added */
    isl_conn *prev, *next;
};

struct isl {
    const td_host *host;
    /* config */
    size_t max_msg;
    bool truncate;
    size_t max_conns;
    int64_t idle_ms;
    bool keep_unmatched;
    char unmatched_severity[16];
    /* state */
    tds_rules *rules;
    uint64_t *rule_pending; /* matches per rule since the last flush */
    char **rule_labels;
    isl_listener *ls;
    size_t n_ls;
    isl_conn *conns;
    size_t n_conns;
    bool paused, stopped;
    struct event *ev_tick;
    tds_parse_opts popts;
    char *scratch;  /* TDS_MAX_MSG bytes for tds_parse */
    char *udp_buf;  /* TDS_MAX_MSG + 1 bytes */
    tds_result res;
    uint32_t warn_count, warn_suppressed;
    int64_t warn_start_ms;
};

/* in_syslog.c */
int64_t isl_now_ms(const isl *s);
/* One received message (a UDP datagram or a TCP frame) from listener l;
 * returns 1 when the pipeline became full (stop reading TCP). */
int isl_handle(isl_listener *l, const char *peer, const char *data, size_t len,
               bool truncated);
void isl_count(isl_listener *l, int counter, uint64_t n);
void isl_warn(isl *s, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* in_syslog_net.c */
int isl_listen(isl *s, const char *spec, bool tcp, char *err, size_t errlen);
/* Listener events are created at start, once the array no longer moves. */
int isl_start_listeners(isl *s);
void isl_pause(isl *s);
void isl_resume(isl *s);
void isl_close_all(isl *s);
void isl_free_listeners(isl *s);
/* Formats a socket address as "1.2.3.4" or "::1" (host) / with port. */
void isl_addr_str(const void *sa, char *host, size_t hostlen, int *port);

#endif

/* in_syslog.c — the syslog input: messages over UDP and TCP become alerts
 * when a rule says so.
 *
 * The design is simple: the sockets (in_syslog_net.c) hand every message,
 * a datagram or a TCP frame, to isl_handle() as a view into their buffer.
 * It parses the message (syslog_parse.c), runs the rules (syslog_rules.c)
 * and submits the matching rule's alert as TD_FMT_FIELDS, which the host
 * copies; nothing is allocated per message. Unmatched messages are counted
 * and dropped, or kept as low-severity alerts with [syslog] keep_unmatched.
 *
 * Syslog has no acknowledgements, so messages are submitted fire and
 * forget: the pipeline counts what it rejects. Backpressure is by TCP flow
 * control (see in_syslog_net.c).
 *
 * Counters are plain integers per listener, flushed to the host's metrics
 * once a second and at the end, so the hot path costs an increment. The
 * rules file is read at init and again on reload() (SIGHUP); a file with an
 * error keeps the rules in force and says why. */
#include "in_syslog.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WARN_BURST 10
#define WARN_WINDOW_MS 10000

static const char *const counter_names[ISL_N_COUNTERS] = {
    [ISL_RECEIVED] = "syslog_messages_received",
    [ISL_PARSED] = "syslog_messages_parsed",
    [ISL_TRUNCATED] = "syslog_messages_truncated",
    [ISL_MATCHED] = "syslog_messages_matched",
    [ISL_RESOLVED] = "syslog_messages_resolved",
    [ISL_UNMATCHED] = "syslog_messages_unmatched",
    [ISL_SUBMITTED] = "syslog_alerts_submitted",
    [ISL_DROP_UNMATCHED] = "syslog_messages_dropped",
    [ISL_DROP_FULL] = "syslog_messages_dropped",
    [ISL_DROP_KERNEL] = "syslog_messages_dropped",
    [ISL_CONN_ACCEPTED] = "syslog_connections_accepted",
    [ISL_CONN_REJECTED] = "syslog_connections_rejected",
    [ISL_CLOSE_PEER] = "syslog_connections_closed",
    [ISL_CLOSE_IDLE] = "syslog_connections_closed",
    [ISL_CLOSE_BAD_FRAME] = "syslog_connections_closed",
    [ISL_CLOSE_ERROR] = "syslog_connections_closed",
};

static const char *
counter_name(int i)
{
    return i >= ISL_MALFORMED ? "syslog_messages_malformed" : counter_names[i];
}

int64_t
isl_now_ms(const isl *s)
{
    struct timeval tv;
    event_base_gettimeofday_cached(s->host->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void
isl_count(isl_listener *l, int counter, uint64_t n)
{
    l->pending[counter] += n;
}

/* Anything a peer can trigger is logged at most WARN_BURST times per 10 s. */
void
isl_warn(isl *s, const char *msg, const char *fmt, ...)
{
    int64_t now = isl_now_ms(s);
    if (now - s->warn_start_ms >= WARN_WINDOW_MS) {
        if (s->warn_suppressed)
            s->host->log(s->host, TD_LOG_WARN, "syslog: warnings suppressed",
                         "count=%u", s->warn_suppressed);
        s->warn_start_ms = now;
        s->warn_count = 0;
        s->warn_suppressed = 0;
    }
    if (s->warn_count >= WARN_BURST) {
        s->warn_suppressed++;
        return;
    }
    s->warn_count++;
    char fields[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof(fields), fmt, ap);
    va_end(ap);
    s->host->log(s->host, TD_LOG_WARN, msg, "%s", fields);
}

/* ---- metrics ------------------------------------------------------------ */

static void
flush_counts(isl *s)
{
    const td_host *h = s->host;
    for (size_t i = 0; i < s->n_ls; i++) {
        isl_listener *l = &s->ls[i];
        for (int k = 0; k < ISL_N_COUNTERS; k++) {
            if (!l->pending[k])
                continue;
            h->count(h, counter_name(k), l->labels[k], l->pending[k]);
            l->pending[k] = 0;
        }
        if (l->tcp && h->size >= offsetof(td_host, gauge) + sizeof(h->gauge) &&
            h->gauge)
            h->gauge(h, "syslog_connections", l->labels[ISL_RECEIVED],
                     (double)l->n_conns);
    }
    for (size_t r = 0; r < tds_rules_count(s->rules); r++) {
        if (!s->rule_pending[r])
            continue;
        h->count(h, "syslog_rule_matches", s->rule_labels[r], s->rule_pending[r]);
        s->rule_pending[r] = 0;
    }
}

static void
update_clock(isl *s)
{
    time_t now = time(NULL);
    struct tm tm;
    if (localtime_r(&now, &tm))
        s->popts.local_offset_s = (int32_t)tm.tm_gmtoff;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_counts(arg);
    update_clock(arg);
}

/* ---- rules -------------------------------------------------------------- */

static void
free_rule_labels(isl *s)
{
    for (size_t r = 0; r < tds_rules_count(s->rules); r++)
        free(s->rule_labels[r]);
    free(s->rule_labels);
    free(s->rule_pending);
    s->rule_labels = NULL;
    s->rule_pending = NULL;
}

static void
set_rules(isl *s, tds_rules *rules)
{
    if (s->rules)
        flush_counts(s); /* the old rules' counts, under their names */
    free_rule_labels(s);
    tds_rules_free(s->rules);
    s->rules = rules;
    size_t n = tds_rules_count(rules);
    s->rule_pending = calloc(n ? n : 1, sizeof(*s->rule_pending));
    s->rule_labels = calloc(n ? n : 1, sizeof(*s->rule_labels));
    if (!s->rule_pending || !s->rule_labels)
        abort();
    for (size_t r = 0; r < n; r++) {
        size_t len = strlen(tds_rules_name(rules, r)) + 16;
        s->rule_labels[r] = malloc(len);
        if (!s->rule_labels[r])
            abort();
        snprintf(s->rule_labels[r], len, "rule=\"%s\"", tds_rules_name(rules, r));
    }
}

static int
load_rules(isl *s, const char *path, char *err, size_t errlen)
{
    tds_rules *r = tds_rules_load(path, err, errlen);
    if (!r)
        return -1;
    set_rules(s, r);
    s->host->log(s->host, TD_LOG_INFO, "syslog: rules loaded", "file=%s rules=%zu",
                 path, tds_rules_count(r));
    return 0;
}

/* ---- messages ----------------------------------------------------------- */

int
isl_handle(isl_listener *l, const char *peer, const char *data, size_t len,
           bool truncated)
{
    isl *s = l->s;
    const char *reason;
    tds_msg m;

    l->pending[ISL_RECEIVED]++;
    if (truncated)
        l->pending[ISL_TRUNCATED]++;
    s->popts.now_us = isl_now_ms(s) * 1000;
    if (tds_parse(data, len, &s->popts, &m, s->scratch, &reason) != 0) {
        for (int i = 0; i < TDS_N_PARSE_REASONS; i++)
            if (tds_parse_reasons[i] == reason)
                l->pending[ISL_MALFORMED + i]++;
        char start[41];
        size_t n = len < 40 ? len : 40;
        for (size_t i = 0; i < n; i++) /* printable ASCII only, for the log */
            start[i] = data[i] >= 32 && data[i] < 127 && data[i] != '"' ? data[i] : '?';
        start[n] = '\0';
        isl_warn(s, "syslog: malformed message",
                 "listener=%s peer=%s reason=%s start=\"%s\"", l->name, peer, reason,
                 start);
        return 0;
    }
    l->pending[ISL_PARSED]++;
    /* Whole-second timestamps (all of RFC 3164's) would make a resolve sent
     * in the same second as its firing look older than it, and older
     * messages do not move an alert's state: within that second, the time
     * received is the better estimate. */
    if (m.ts_coarse && s->popts.now_us >= m.ts_us &&
        s->popts.now_us - m.ts_us < 1000000)
        m.ts_us = s->popts.now_us;
    if (!m.host.p) {
        m.host.p = peer; /* no hostname in the message: the sender's address */
        m.host.n = strlen(peer);
    }

    td_alert_fields unmatched;
    const td_alert_fields *f;
    char check[64];
    int rule = tds_rules_match(s->rules, &m, peer, &s->res);
    if (rule >= 0) {
        l->pending[ISL_MATCHED]++;
        s->rule_pending[rule]++;
        if (s->res.resolved)
            l->pending[ISL_RESOLVED]++;
        f = &s->res.f;
    } else {
        l->pending[ISL_UNMATCHED]++;
        if (!s->keep_unmatched) {
            l->pending[ISL_DROP_UNMATCHED]++;
            return 0;
        }
        /* One low-severity alert per host and program; its summary is the
         * latest line. Strings must be NUL-terminated: copy to scratch. */
        char *p = s->scratch;
        memcpy(p, m.host.p, m.host.n);
        p[m.host.n] = '\0';
        snprintf(check, sizeof(check), "syslog:%.*s", m.app.p ? (int)(m.app.n > 48 ? 48 : m.app.n) : 1,
                 m.app.p ? m.app.p : "-");
        char *summary = p + m.host.n + 1;
        memmove(summary, m.msg.p, m.msg.n);
        summary[m.msg.n] = '\0';
        unmatched = (td_alert_fields){
            .source = "syslog", .resource = p, .check = check, .status = "firing",
            .severity = s->unmatched_severity, .summary = summary,
            .occurred_at_ms = m.ts_us > 0 ? m.ts_us / 1000 : 0,
        };
        f = &unmatched;
    }
    if (!l->tcp && s->paused) {
        l->pending[ISL_DROP_FULL]++;
        isl_warn(s, "syslog: pipeline full; UDP message dropped", "listener=%s",
                 l->name);
        return 0;
    }
    td_input_msg msg = {.format = TD_FMT_FIELDS, .fields = f};
    l->pending[ISL_SUBMITTED]++;
    if (s->host->submit(s->host, &msg) == TD_SUBMIT_FULL) {
        isl_pause(s);
        return 1;
    }
    return 0;
}

/* ---- config ------------------------------------------------------------- */

static const char *
cfg(const td_host *h, const char *key)
{
    const char *v = h->config_get(h, "syslog", key);
    return v && *v ? v : NULL;
}

/* The table in daemon/config_table.c validated these already; read them simply. */
static int64_t
parse_size(const char *s)
{
    char *end;
    long long n = strtoll(s, &end, 10);
    if (*end == 'k' || *end == 'K')
        n *= 1024;
    else if (*end == 'M')
        n *= 1024 * 1024;
    return n;
}

static int64_t
parse_duration(const char *s)
{
    char *end;
    long long n = strtoll(s, &end, 10);
    if (strcmp(end, "s") == 0)
        n *= 1000;
    else if (strcmp(end, "m") == 0)
        n *= 60 * 1000;
    else if (strcmp(end, "h") == 0)
        n *= 3600 * 1000;
    else if (strcmp(end, "d") == 0)
        n *= 86400 * 1000;
    return n;
}

static bool
parse_bool(const char *s)
{
    return s && (strcasecmp(s, "yes") == 0 || strcasecmp(s, "true") == 0 ||
                 strcasecmp(s, "on") == 0 || strcmp(s, "1") == 0);
}

static void
read_reloadable(isl *s)
{
    const td_host *h = s->host;
    const char *v = cfg(h, "unmatched_severity");
    s->keep_unmatched = parse_bool(cfg(h, "keep_unmatched"));
    snprintf(s->unmatched_severity, sizeof(s->unmatched_severity), "%s",
             v ? v : "info");
}

static int
listen_list(isl *s, const char *list, bool tcp, char *err, size_t errlen)
{
    if (!list)
        return 0;
    const char *p = list;
    while (*p) {
        size_t w = strcspn(p, ", \t");
        if (w) {
            char spec[300];
            snprintf(spec, sizeof(spec), "%.*s", (int)w, p);
            if (isl_listen(s, spec, tcp, err, errlen) != 0)
                return -1;
        }
        p += w;
        p += strspn(p, ", \t");
    }
    return 0;
}

static void _fini(void *state);

static int
_init(const td_host *host, void **state, char *err, size_t errlen)
{
    isl *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *state = s;
    s->host = host;
    const char *v;
    s->max_msg = (size_t)parse_size((v = cfg(host, "max_message_size")) ? v : "8KiB");
    if (s->max_msg < 480 || s->max_msg > TDS_MAX_MSG) {
        snprintf(err, errlen, "[syslog] max_message_size must be 480..64KiB");
        goto fail;
    }
    s->truncate = !((v = cfg(host, "oversize")) && strcmp(v, "reject") == 0);
    s->max_conns = (size_t)strtoul((v = cfg(host, "max_connections")) ? v : "1000", NULL, 10);
    s->idle_ms = parse_duration((v = cfg(host, "idle_timeout")) ? v : "5m");
    if (s->idle_ms <= 0)
        s->idle_ms = 300000;
    read_reloadable(s);
    s->scratch = malloc(2 * TDS_MAX_MSG); /* parse scratch; unmatched alert strings */
    s->udp_buf = malloc(TDS_MAX_MSG + 1);
    if (!s->scratch || !s->udp_buf) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    update_clock(s);
    if ((v = cfg(host, "rules"))) {
        if (load_rules(s, v, err, errlen) != 0)
            goto fail;
    } else {
        set_rules(s, NULL);
        host->log(host, TD_LOG_WARN, "syslog: no [syslog] rules file: no message "
                  "will match", "keep_unmatched=%s", s->keep_unmatched ? "yes" : "no");
    }
    if (listen_list(s, cfg(host, "udp"), false, err, errlen) != 0 ||
        listen_list(s, cfg(host, "tcp"), true, err, errlen) != 0)
        goto fail;
    if (s->n_ls == 0) {
        snprintf(err, errlen, "[syslog] has neither udp nor tcp addresses");
        goto fail;
    }
    return 0;

fail:
    _fini(s);
    *state = NULL;
    return -1;
}

static int
_start(void *state, char *err, size_t errlen)
{
    isl *s = state;
    s->ev_tick = event_new(s->host->base, -1, EV_PERSIST, on_tick, s);
    struct timeval sec = {1, 0};
    if (!s->ev_tick || event_add(s->ev_tick, &sec) != 0 ||
        isl_start_listeners(s) != 0) {
        snprintf(err, errlen, "cannot add events to the loop");
        return -1;
    }
    return 0;
}

static void
_stop(void *state)
{
    isl *s = state;
    s->stopped = true;
    isl_close_all(s);
    flush_counts(s);
}

static void
_resume(void *state)
{
    isl_resume(state);
}

static void
_reload(void *state)
{
    isl *s = state;
    char err[512];
    const char *path = cfg(s->host, "rules");
    read_reloadable(s);
    if (!path) {
        s->host->log(s->host, TD_LOG_WARN, "syslog: reload: no rules file "
                     "configured; keeping the rules in force", "rules=%zu",
                     tds_rules_count(s->rules));
        return;
    }
    if (load_rules(s, path, err, sizeof(err)) != 0) {
        for (char *q = err; *q; q++) /* (the file's text: kept inside its quotes) */
            if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20)
                *q = *q == '"' ? '\'' : *q == '\\' ? '/' : ' ';
        s->host->log(s->host, TD_LOG_ERROR, "syslog: reload: rules file has an "
                     "error; keeping the rules in force", "error=\"%s\"", err);
        s->host->count(s->host, "syslog_rules_reloads", "result=\"error\"", 1);
        return;
    }
    s->host->count(s->host, "syslog_rules_reloads", "result=\"ok\"", 1);
}

/* triaged -t: there is an address to listen on (there is no default: syslog
 * listens only where told), and the rules file loads. */
static int
_check(const td_host *host, char *err, size_t errlen)
{
    const char *path = cfg(host, "rules");
    const char *udp = cfg(host, "udp"), *tcp = cfg(host, "tcp");
    if (!(udp && udp[strspn(udp, " ,\t")]) && !(tcp && tcp[strspn(tcp, " ,\t")])) {
        snprintf(err, errlen, "[syslog] has neither udp nor tcp addresses");
        return -1;
    }
    tds_rules *r = path ? tds_rules_load(path, err, errlen) : NULL;
    if (path && !r)
        return -1;
    tds_rules_free(r);
    return 0;
}

static void
_fini(void *state)
{
    isl *s = state;
    if (!s)
        return;
    isl_close_all(s);
    flush_counts(s);
    isl_free_listeners(s);
    if (s->ev_tick)
        event_free(s->ev_tick);
    free_rule_labels(s);
    tds_rules_free(s->rules);
    tds_result_free(&s->res);
    free(s->scratch);
    free(s->udp_buf);
    free(s);
}

TD_PLUGIN_EXPORT const td_plugin triaged_plugin = {
    .abi_version = TD_PLUGIN_ABI_VERSION,
    .name = "in_syslog",
    .kind = TD_PLUGIN_INPUT,
    .description = "syslog over UDP and TCP (RFC 5424, RFC 3164, RFC 6587); "
                   "rules turn messages into alerts",
    .init = _init,
    .start = _start,
    .stop = _stop,
    .resume = _resume,
    .fini = _fini,
    .reload = _reload,
    .check = _check,
};

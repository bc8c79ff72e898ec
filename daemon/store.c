/* store.c — the non-blocking PostgreSQL connection (see store.h).
 *
 * States: DOWN (waiting for the reconnect timer) -> CONNECTING (PQconnectPoll
 * driven by socket events; the socket may change, so the event is re-made
 * each step) -> PREPARING (PQsendPrepare of each statement in turn) -> READY.
 * In READY the head of the FIFO is sent with PQsendQueryPrepared, flushed
 * with write events when the socket is full, and its results collected on
 * read events until PQgetResult returns NULL. Any error on the connection
 * fails the in-flight operation only, and goes back to DOWN. */
#include "internal/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/log.h"
#include "internal/metrics.h"
#include "internal/util.h"

enum { S_DOWN, S_CONNECTING, S_PREPARING, S_READY };

typedef struct op {
    size_t stmt;
    char **params;
    int nparams;
    int *lengths, *formats; /* NULL: text parameters */
    td_store_cb cb;
    void *arg;
    struct op *next;
    int64_t started_us;
} op;

struct td_store {
    struct event_base *base;
    char *conninfo, *name;
    const td_store_stmt *stmts;
    size_t n_stmts;
    PGconn *conn;
    int state;
    size_t preparing; /* index of the statement being prepared */
    struct event *ev_sock, *ev_retry;
    int64_t backoff_ms;
    op *head, *tail; /* FIFO; head is in flight when `sent` */
    bool sent;
    size_t queued;
    PGresult *last; /* result of the in-flight op, until the NULL result */
    td_metric *m_latency, *m_errors, *m_reconnects;
    td_ratelimit rl;
};

static void step(td_store *s);
static void on_socket(evutil_socket_t fd, short what, void *arg);

static int64_t
now_us(void)
{
    return td_mono_ms() * 1000;
}

static void
op_free(op *o)
{
    for (int i = 0; i < o->nparams; i++)
        free(o->params[i]);
    free(o->params);
    free(o->lengths);
    free(o->formats);
    free(o);
}

/* Pop the head and call its callback. */
static void
finish_head(td_store *s, const PGresult *res, const char *err)
{
    op *o = s->head;
    s->head = o->next;
    if (!s->head)
        s->tail = NULL;
    s->sent = false;
    s->queued--;
    if (res)
        td_metric_observe(s->m_latency, (double)(now_us() - o->started_us) / 1e6);
    o->cb(o->arg, res, err);
    op_free(o);
}

static void
arm(td_store *s, short what)
{
    if (s->ev_sock)
        event_free(s->ev_sock);
    s->ev_sock = event_new(s->base, PQsocket(s->conn), what, on_socket, s);
    event_add(s->ev_sock, NULL);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    td_store *s = arg;
    s->state = S_CONNECTING;
    s->conn = PQconnectStart(s->conninfo);
    if (!s->conn || PQstatus(s->conn) == CONNECTION_BAD) {
        s->state = S_DOWN;
        /* fall through to go_down via step */
    }
    step(s);
}

static void
go_down(td_store *s, const char *why_in)
{
    /* why_in is often PQerrorMessage(s->conn), freed with the connection
     * below: keep a copy for the callback */
    char why[256];
    snprintf(why, sizeof(why), "%s", why_in ? why_in : "");
    uint32_t suppressed;
    if (td_ratelimit_allow(&s->rl, 5, &suppressed))
        td_warn("postgres: connection down", "store=%s error=\"%s\" retry_ms=%lld suppressed=%u",
                s->name, TD_LOG_VALUE(why), (long long)s->backoff_ms, suppressed);
    if (s->ev_sock) {
        event_free(s->ev_sock);
        s->ev_sock = NULL;
    }
    if (s->last) {
        PQclear(s->last);
        s->last = NULL;
    }
    if (s->conn) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    s->state = S_DOWN;
    td_metric_add(s->m_reconnects, 1);
    if (s->head && s->sent)
        finish_head(s, NULL, why);
    struct timeval tv = {(time_t)(s->backoff_ms / 1000),
                         (suseconds_t)(s->backoff_ms % 1000) * 1000};
    event_add(s->ev_retry, &tv);
    s->backoff_ms = s->backoff_ms * 2 > 5000 ? 5000 : s->backoff_ms * 2;
}

static void
notice(void *arg, const char *message)
{
    td_store *s = arg;
    td_debug("postgres: notice", "store=%s notice=\"%s\"", s->name, TD_LOG_VALUE(message));
}

static void
send_prepare(td_store *s)
{
    const td_store_stmt *st = &s->stmts[s->preparing];
    if (!PQsendPrepare(s->conn, st->name, st->sql, st->nparams, NULL)) {
        go_down(s, PQerrorMessage(s->conn));
        return;
    }
    arm(s, EV_READ | EV_WRITE);
}

static void
send_head(td_store *s)
{
    op *o = s->head;
    const td_store_stmt *st = &s->stmts[o->stmt];
    o->started_us = now_us();
    if (!PQsendQueryPrepared(s->conn, st->name, o->nparams,
                             (const char *const *)o->params, o->lengths, o->formats, 0)) {
        go_down(s, PQerrorMessage(s->conn));
        return;
    }
    s->sent = true;
    arm(s, EV_READ | EV_WRITE);
}

/* Collect results of the in-flight command; returns 1 when it completed. */
static int
collect(td_store *s)
{
    while (!PQisBusy(s->conn)) {
        PGresult *r = PQgetResult(s->conn);
        if (!r)
            return 1;
        if (s->last)
            PQclear(s->last);
        s->last = r;
    }
    return 0;
}

static void
step(td_store *s)
{
    for (;;) {
        switch (s->state) {
        case S_DOWN:
            if (!s->conn) {
                if (!event_pending(s->ev_retry, EV_TIMEOUT, NULL))
                    go_down(s, "cannot start connection");
                return;
            }
            return;
        case S_CONNECTING: {
            PostgresPollingStatusType st = PQconnectPoll(s->conn);
            if (st == PGRES_POLLING_FAILED) {
                go_down(s, PQerrorMessage(s->conn));
                return;
            }
            if (st == PGRES_POLLING_READING) {
                arm(s, EV_READ);
                return;
            }
            if (st == PGRES_POLLING_WRITING) {
                arm(s, EV_WRITE);
                return;
            }
            /* PGRES_POLLING_OK */
            PQsetnonblocking(s->conn, 1);
            PQsetNoticeProcessor(s->conn, notice, s);
            td_info("postgres: connected", "store=%s", s->name);
            s->backoff_ms = 250;
            s->state = S_PREPARING;
            s->preparing = 0;
            if (s->n_stmts) {
                send_prepare(s);
                return;
            }
            s->state = S_READY;
            continue;
        }
        case S_PREPARING:
        case S_READY:
            if (s->state == S_READY && s->head && !s->sent) {
                send_head(s);
                if (s->state != S_READY)
                    return;
            }
            return;
        }
    }
}

static void
on_socket(evutil_socket_t fd, short what, void *arg)
{
    td_store *s = arg;
    (void)fd;
    if (s->state == S_CONNECTING) {
        step(s);
        return;
    }
    if (what & EV_WRITE) {
        int f = PQflush(s->conn);
        if (f < 0) {
            go_down(s, PQerrorMessage(s->conn));
            return;
        }
        /* Until everything is sent, keep asking for writability too. */
        arm(s, f == 0 ? EV_READ | EV_PERSIST : EV_READ | EV_WRITE);
    }
    if (!(what & EV_READ))
        return;
    if (!PQconsumeInput(s->conn)) {
        go_down(s, PQerrorMessage(s->conn));
        return;
    }
    if (!collect(s))
        return;
    PGresult *r = s->last;
    s->last = NULL;
    if (s->state == S_PREPARING) {
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            char why[512];
            snprintf(why, sizeof(why), "preparing %s: %s",
                     s->stmts[s->preparing].name,
                     r ? PQresultErrorMessage(r) : PQerrorMessage(s->conn));
            PQclear(r);
            td_error("postgres: cannot prepare statement (schema not migrated?)",
                     "store=%s error=\"%s\"", s->name, TD_LOG_VALUE(why));
            go_down(s, why);
            return;
        }
        PQclear(r);
        if (++s->preparing < s->n_stmts) {
            send_prepare(s);
            return;
        }
        s->state = S_READY;
        arm(s, EV_READ | EV_PERSIST);
        step(s);
        return;
    }
    if (s->head && s->sent) {
        if (!r || PQresultStatus(r) == PGRES_FATAL_ERROR)
            td_metric_add(s->m_errors, 1);
        finish_head(s, r, r ? NULL : "no result");
    }
    PQclear(r);
    if (PQstatus(s->conn) == CONNECTION_BAD) {
        go_down(s, PQerrorMessage(s->conn));
        return;
    }
    step(s);
}

td_store *
td_store_new(struct event_base *base, const char *conninfo,
             const td_store_stmt *stmts, size_t n_stmts, const char *name)
{
    td_store *s = td_calloc(1, sizeof(*s));
    char labels[64];
    s->base = base;
    s->conninfo = td_strdup(conninfo);
    s->name = td_strdup(name);
    s->stmts = stmts;
    s->n_stmts = n_stmts;
    s->backoff_ms = 250;
    s->ev_retry = evtimer_new(base, on_retry, s);
    snprintf(labels, sizeof(labels), "conn=\"%s\"", name);
    s->m_latency = td_histogram("postgres_latency_seconds",
                                "PostgreSQL statement latency", labels);
    s->m_errors = td_counter("postgres_errors", "PostgreSQL statements that failed", labels);
    s->m_reconnects = td_counter("postgres_disconnects",
                                 "PostgreSQL connections lost or refused", labels);
    on_retry(-1, 0, s);
    return s;
}

static void
enqueue(td_store *s, op *o, td_store_cb cb, void *arg)
{
    o->cb = cb;
    o->arg = arg;
    if (s->tail)
        s->tail->next = o;
    else
        s->head = o;
    s->tail = o;
    s->queued++;
    if (s->state == S_READY && !s->sent)
        step(s);
}

void
td_store_exec(td_store *s, size_t stmt, const char *const *params,
              td_store_cb cb, void *arg)
{
    op *o = td_calloc(1, sizeof(*o));
    o->stmt = stmt;
    o->nparams = s->stmts[stmt].nparams;
    o->params = td_calloc((size_t)o->nparams + 1, sizeof(char *));
    for (int i = 0; i < o->nparams; i++)
        o->params[i] = params[i] ? td_strdup(params[i]) : NULL;
    enqueue(s, o, cb, arg);
}

void
td_store_exec_owned(td_store *s, size_t stmt, char **values, const int *lengths,
                    const int *formats, td_store_cb cb, void *arg)
{
    op *o = td_calloc(1, sizeof(*o));
    size_t n = (size_t)s->stmts[stmt].nparams;
    o->stmt = stmt;
    o->nparams = (int)n;
    o->params = td_calloc(n + 1, sizeof(char *));
    o->lengths = td_calloc(n + 1, sizeof(int));
    o->formats = td_calloc(n + 1, sizeof(int));
    for (size_t i = 0; i < n; i++) {
        o->params[i] = values[i];
        o->lengths[i] = lengths[i];
        o->formats[i] = formats[i];
    }
    enqueue(s, o, cb, arg);
}

bool
td_store_connected(const td_store *s)
{
    return s->state == S_READY;
}

size_t
td_store_queued(const td_store *s)
{
    return s->queued;
}

void
td_store_free(td_store *s)
{
    if (!s)
        return;
    while (s->head)
        finish_head(s, NULL, "shutdown");
    if (s->ev_sock)
        event_free(s->ev_sock);
    event_free(s->ev_retry);
    if (s->last)
        PQclear(s->last);
    if (s->conn)
        PQfinish(s->conn);
    free(s->conninfo);
    free(s->name);
    free(s);
}

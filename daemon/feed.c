/* feed.c — the live feed: Server-Sent Events of alert and incident changes.
 *
 * The design is simple: every event the pipeline (or an API action)
 * publishes comes here through the host's core hook, gets the next id, is
 * rendered once as an SSE frame ("id:", "event:" = the kind, "data:" = the
 * JSON payload) and kept in a ring of the last feed_history events. Each
 * client is an evhttp chunked reply; a new event is appended to the output
 * of every client whose filters it passes. A client that resumes with
 * Last-Event-ID first gets the retained events after that id.
 *
 * Ids start at the wall clock in microseconds when triaged starts and count
 * up, so they keep increasing across restarts: a client resuming with an id
 * from before a restart gets everything this run still retains.
 *
 * Memory is bounded: the ring by feed_history, the clients by
 * feed_max_clients (one more is answered 503), each client by its unsent
 * bytes. Events are written in bursts (one pipeline batch publishes all its
 * changes in one callback, before the loop can send any), so a client is
 * not judged by one look at its backlog: every FEED_CHECK_MS while it is
 * more than feed_buffer behind, it must have sent, since the last check, at
 * least what was pending then. One that did not (it stopped reading, or
 * reads slower than events come) is disconnected and counted. A hard cap of
 * FEED_HARD_FACTOR x feed_buffer applies at once, within a burst. Nothing is
 * buffered without bound, and the other clients are not slowed down.
 *
 * Filters apply to the fields an event carries: min_priority=N keeps events
 * with a "priority" of N or more urgent (1 is the most urgent; events without
 * a priority, alert events, are left out); service=S keeps events whose
 * payload names S in "service" or "services"; team=T those naming T in
 * "team", "teams" or "owner_team". Incident payloads name services once the
 * CMDB binds incidents to CIs with services; until then those filters match
 * nothing. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/http_internal.h"
#include "internal/http_uri.h"
#include "internal/log.h"
#include "internal/util.h"

#define FEED_CHECK_MS 1000
#define FEED_HARD_FACTOR 16

typedef struct fev {
    uint64_t id;
    char *frame;
    size_t len;
    int priority;   /* 0: none */
    char *services; /* "\nname\nname\n" or NULL */
    char *teams;
} fev;

typedef struct fclient {
    td_feed *f;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    char *service, *team;
    int min_priority; /* 0: no filter */
    uint64_t queued;  /* bytes given to the connection so far */
    bool marked;      /* over feed_buffer at the last check: */
    uint64_t mark_written; /* bytes the kernel had taken then */
    size_t mark_backlog;   /* and bytes pending then */
    struct fclient *prev, *next;
} fclient;

struct td_feed {
    struct event_base *base;
    const td_config *cfg;
    fev *ring;
    size_t cap, n, head; /* head: index of the oldest */
    uint64_t next_id;
    fclient *clients;
    size_t n_clients;
    struct event *ev_keepalive, *ev_check;
    td_ratelimit rl;
    td_metric *m_events, *m_sent, *m_cutoff, *m_connects, *m_refused;
};

static void
fev_clear(fev *e)
{
    free(e->frame);
    free(e->services);
    free(e->teams);
    memset(e, 0, sizeof(*e));
}

/* Names from a string or an array of strings / objects with "name". */
static void
collect(json_t *v, char **list)
{
    if (!v)
        return;
    if (json_is_string(v)) {
        char *old = *list;
        *list = td_asprintf("%s%s\n", old ? old : "\n", json_string_value(v));
        free(old);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        collect(json_is_object(x) ? json_object_get(x, "name") : x, list);
    }
}

static bool
has_name(const char *list, const char *name)
{
    if (!list)
        return false;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p++)
        if (p > list && p[-1] == '\n' && p[n] == '\n')
            return true;
    return false;
}

static bool
passes(const fclient *c, const fev *e)
{
    if (c->min_priority && (!e->priority || e->priority > c->min_priority))
        return false;
    if (c->service && !has_name(e->services, c->service))
        return false;
    if (c->team && !has_name(e->teams, c->team))
        return false;
    return true;
}

static void
client_free(fclient *c)
{
    td_feed *f = c->f;
    if (c->prev)
        c->prev->next = c->next;
    else
        f->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    f->n_clients--;
    free(c->service);
    free(c->team);
    free(c);
}

static void
on_client_close(struct evhttp_connection *evcon, void *arg)
{
    fclient *c = arg;
    (void)evcon;
    /* The client went away mid-stream: libevent detached the request and
     * left it to us; ending the reply frees it. */
    if (!evhttp_request_get_connection(c->req))
        evhttp_send_reply_end(c->req);
    client_free(c);
}

/* Disconnect: the connection and its request are freed here. */
static void
client_drop(fclient *c)
{
    struct evhttp_connection *evcon = c->evcon;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    client_free(c);
    evhttp_connection_free(evcon);
}

static size_t
behind(const fclient *c)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void
cut_off(fclient *c, size_t bytes)
{
    td_feed *f = c->f;
    uint32_t suppressed;
    char *peer = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(c->evcon, &peer, &port);
    td_metric_add(f->m_cutoff, 1);
    if (td_ratelimit_allow(&f->rl, 5, &suppressed))
        td_warn("http: feed client too slow; disconnected",
                "peer=%s:%u behind_bytes=%zu limit=%lld suppressed=%u",
                peer ? peer : "?", (unsigned)port, bytes,
                (long long)f->cfg->http_feed_buffer, suppressed);
    client_drop(c);
}

/* 0, or -1 when the client was cut off (c is freed). */
static int
client_send(fclient *c, const char *data, size_t len)
{
    td_feed *f = c->f;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        fprintf(stderr, "triaged: out of memory\n");
        abort();
    }
    evbuffer_add(b, data, len);
    evhttp_send_reply_chunk(c->req, b);
    evbuffer_free(b);
    c->queued += len;
    size_t n = behind(c);
    if (n > (size_t)f->cfg->http_feed_buffer * FEED_HARD_FACTOR) {
        cut_off(c, n);
        return -1;
    }
    if (n > (size_t)f->cfg->http_feed_buffer && !evtimer_pending(f->ev_check, NULL)) {
        struct timeval tv = {0, FEED_CHECK_MS * 1000};
        evtimer_add(f->ev_check, &tv);
    }
    return 0;
}

/* Over feed_buffer at two checks in a row without having sent, between
 * them, what was pending at the first: it cannot keep up. */
static void
on_check(evutil_socket_t fd, short what, void *arg)
{
    td_feed *f = arg;
    fclient *next;
    bool again = false;
    (void)fd;
    (void)what;
    for (fclient *c = f->clients; c; c = next) {
        next = c->next;
        size_t n = behind(c);
        uint64_t written = c->queued - n;
        if (n <= (size_t)f->cfg->http_feed_buffer) {
            c->marked = false;
            continue;
        }
        if (c->marked && written - c->mark_written < c->mark_backlog) {
            cut_off(c, n);
            continue;
        }
        c->marked = true;
        c->mark_written = written;
        c->mark_backlog = n;
        again = true;
    }
    if (again) {
        struct timeval tv = {0, FEED_CHECK_MS * 1000};
        evtimer_add(f->ev_check, &tv);
    }
}

void
td_feed_publish(td_feed *f, const td_event *ev)
{
    if (!f)
        return;
    fev e = {.id = f->next_id++};
    json_t *j = json_loadb(ev->json, ev->len, 0, NULL);
    if (json_is_object(j)) {
        json_t *p = json_object_get(j, "priority");
        if (json_is_integer(p))
            e.priority = (int)json_integer_value(p);
        collect(json_object_get(j, "service"), &e.services);
        collect(json_object_get(j, "services"), &e.services);
        collect(json_object_get(j, "team"), &e.teams);
        collect(json_object_get(j, "teams"), &e.teams);
        collect(json_object_get(j, "owner_team"), &e.teams);
        json_t *svcs = json_object_get(j, "services");
        if (json_is_array(svcs)) {
            size_t i;
            json_t *x;
            json_array_foreach(svcs, i, x) if (json_is_object(x))
                collect(json_object_get(x, "owner_team"), &e.teams);
        }
    }
    json_decref(j);
    /* One frame: data lines split at newlines (SSE ends an event at a
     * blank line, so a payload must not hold one raw). */
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "id: %llu\nevent: %s\ndata: ", (unsigned long long)e.id,
                        ev->kind);
    size_t run = 0; /* start of the bytes not added yet */
    for (size_t i = 0; i < ev->len; i++) {
        if (ev->json[i] != '\n' && ev->json[i] != '\r')
            continue;
        evbuffer_add(b, ev->json + run, i - run);
        if (ev->json[i] == '\n')
            evbuffer_add(b, "\ndata: ", 7);
        run = i + 1;
    }
    evbuffer_add(b, ev->json + run, ev->len - run);
    evbuffer_add(b, "\n\n", 2);
    e.len = evbuffer_get_length(b);
    e.frame = td_malloc(e.len);
    evbuffer_remove(b, e.frame, e.len);
    evbuffer_free(b);
    td_metric_add(f->m_events, 1);

    fclient *next;
    for (fclient *c = f->clients; c; c = next) {
        next = c->next;
        if (passes(c, &e) && client_send(c, e.frame, e.len) == 0)
            td_metric_add(f->m_sent, 1);
    }
    /* keep it in the ring */
    if (f->n == f->cap) {
        fev_clear(&f->ring[f->head]);
        f->ring[f->head] = e;
        f->head = (f->head + 1) % f->cap;
    } else {
        f->ring[(f->head + f->n) % f->cap] = e;
        f->n++;
    }
}

static void
on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    td_feed *f = arg;
    static const char ka[] = ": keep-alive\n\n";
    fclient *next;
    (void)fd;
    (void)what;
    for (fclient *c = f->clients; c; c = next) {
        next = c->next;
        client_send(c, ka, sizeof(ka) - 1);
    }
}

void
td_api_feed_get(td_req *r, const char *arg)
{
    td_feed *f = r->h->feed;
    struct evkeyvalq kv;
    (void)arg;
    if (r->h->stopping) {
        td_req_error(r, 503, "stopping", "triaged is stopping");
        return;
    }
    if (f->n_clients >= (size_t)f->cfg->http_feed_max_clients) {
        td_metric_add(f->m_refused, 1);
        td_req_header(r, "Retry-After", "10");
        td_req_error(r, 503, "too_many_clients",
                     "the live feed has its maximum of %d clients (feed_max_clients)",
                     f->cfg->http_feed_max_clients);
        return;
    }
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
    kv.tqh_first = NULL;
    kv.tqh_last = &kv.tqh_first;
    if (q && evhttp_parse_query_str(q, &kv) != 0) {
        td_req_error(r, 400, "bad_request", "cannot parse the query string");
        return;
    }
    const char *mp = evhttp_find_header(&kv, "min_priority");
    int prio = mp ? td_api_priority_parse(mp) : 0;
    const char *last = evhttp_find_header(evhttp_request_get_input_headers(r->req),
                                          "Last-Event-ID");
    if (!last)
        last = evhttp_find_header(&kv, "last_event_id");
    uint64_t last_id = 0;
    /* last may point into kv, which is cleared before the replay below */
    bool resume = last && *last;
    if (resume) {
        if (td_api_event_id_parse(last, &last_id) != 0) {
            evhttp_clear_headers(&kv);
            td_req_error(r, 400, "bad_request", "Last-Event-ID must be an event id");
            return;
        }
    }
    if (prio < 0) {
        evhttp_clear_headers(&kv);
        td_req_error(r, 400, "bad_request", "min_priority must be 1..5 (or P1..P5)");
        return;
    }
    fclient *c = td_calloc(1, sizeof(*c));
    c->f = f;
    c->req = r->req;
    c->evcon = evhttp_request_get_connection(r->req);
    c->min_priority = prio;
    const char *s = evhttp_find_header(&kv, "service"), *t = evhttp_find_header(&kv, "team");
    c->service = s && *s ? td_strdup(s) : NULL;
    c->team = t && *t ? td_strdup(t) : NULL;
    evhttp_clear_headers(&kv);
    c->next = f->clients;
    if (f->clients)
        f->clients->prev = c;
    f->clients = c;
    f->n_clients++;
    td_metric_add(f->m_connects, 1);

    /* A stream lives long: evhttp's idle timeout is for requests. A client
     * that stops reading is cut off by feed_buffer, not by a timer. */
    struct timeval day = {86400, 0};
    evhttp_connection_set_timeout_tv(c->evcon, &day);
    evhttp_connection_set_closecb(c->evcon, on_client_close, c);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(oh, "Content-Type", "text/event-stream");
    evhttp_add_header(oh, "Cache-Control", "no-cache");
    evhttp_add_header(oh, "X-Accel-Buffering", "no");
    evhttp_send_reply_start(r->req, 200, "OK");
    td_req_detach(r, 200);

    static const char hello[] = "retry: 2000\n: triaged live feed\n\n";
    if (client_send(c, hello, sizeof(hello) - 1) != 0)
        return;
    if (resume) {
        for (size_t i = 0; i < f->n; i++) {
            fev *e = &f->ring[(f->head + i) % f->cap];
            if (e->id > last_id && passes(c, e) && client_send(c, e->frame, e->len) != 0)
                return;
        }
    }
}

td_feed *
td_feed_new(struct event_base *base, const td_config *cfg)
{
    td_feed *f = td_calloc(1, sizeof(*f));
    f->base = base;
    f->cfg = cfg;
    f->cap = (size_t)cfg->http_feed_history;
    f->ring = td_calloc(f->cap, sizeof(*f->ring));
    f->next_id = (uint64_t)td_now_ms() * 1000;
    f->ev_keepalive = event_new(base, -1, EV_PERSIST, on_keepalive, f);
    f->ev_check = evtimer_new(base, on_check, f);
    struct timeval tv = {(time_t)(cfg->http_feed_keepalive_ms / 1000),
                         (suseconds_t)(cfg->http_feed_keepalive_ms % 1000) * 1000};
    event_add(f->ev_keepalive, &tv);
    f->m_events = td_counter("feed_events", "Events rendered for the live feed", NULL);
    f->m_sent = td_counter("feed_events_sent", "Events sent to live feed clients", NULL);
    f->m_cutoff = td_counter("feed_clients_cut_off",
                             "Live feed clients disconnected for falling behind "
                             "feed_buffer", NULL);
    f->m_connects = td_counter("feed_connects", "Live feed clients connected", NULL);
    f->m_refused = td_counter("feed_clients_refused",
                              "Live feed clients refused with 503 at feed_max_clients",
                              NULL);
    return f;
}

void
td_feed_reload(td_feed *f, const td_config *cfg)
{
    if (!f)
        return;
    f->cfg = cfg;
    struct timeval tv = {(time_t)(cfg->http_feed_keepalive_ms / 1000),
                         (suseconds_t)(cfg->http_feed_keepalive_ms % 1000) * 1000};
    event_add(f->ev_keepalive, &tv);
}

size_t
td_feed_clients(const td_feed *f)
{
    return f ? f->n_clients : 0;
}

void
td_feed_close_all(td_feed *f)
{
    if (!f)
        return;
    while (f->clients) {
        fclient *c = f->clients;
        evhttp_send_reply_end(c->req);
        evhttp_connection_set_closecb(c->evcon, NULL, NULL);
        client_free(c);
    }
}

void
td_feed_free(td_feed *f)
{
    if (!f)
        return;
    while (f->clients)
        client_drop(f->clients);
    for (size_t i = 0; i < f->n; i++)
        fev_clear(&f->ring[(f->head + i) % f->cap]);
    free(f->ring);
    event_free(f->ev_keepalive);
    event_free(f->ev_check);
    free(f);
}

/* in_syslog_net.c — the sockets: UDP and TCP listeners, TCP connections.
 *
 * The design is simple: every socket is non-blocking and owned by one
 * libevent event on the host's loop. A UDP read event drains up to a budget
 * of datagrams (recvmsg, with SO_RXQ_OVFL so the kernel tells how many it
 * dropped for a full socket buffer: counted, never silent). A TCP connection
 * reads into its framer's buffer and hands each frame to isl_handle() as a
 * view, with no copy; a budget of reads per wake-up keeps one busy sender
 * from starving the others.
 *
 * Backpressure: when the pipeline says FULL, every TCP connection's read
 * event is removed (the kernel's buffers fill and TCP flow control slows the
 * senders) until resume(); frames already buffered wait in their framer.
 * UDP cannot push back: its messages that would have become alerts are
 * counted as dropped (reason pipeline_full) while paused.
 *
 * Limits: max_connections (an extra connection is accepted and closed at
 * once, counted), an idle timeout per connection (one timer each, re-armed
 * lazily from the last read time, so a read costs no timer update), and the
 * framer's fixed buffer. Never: block, or read a socket while paused. */
#define _GNU_SOURCE
#include "in_syslog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READS_PER_WAKEUP 16
#define DATAGRAMS_PER_WAKEUP 256
#define UDP_RCVBUF (8 * 1024 * 1024)

void
isl_addr_str(const void *sa_, char *host, size_t hostlen, int *port)
{
    const struct sockaddr *sa = sa_;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = sa_;
        inet_ntop(AF_INET6, &a->sin6_addr, host, (socklen_t)hostlen);
        if (port)
            *port = ntohs(a->sin6_port);
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = sa_;
        inet_ntop(AF_INET, &a->sin_addr, host, (socklen_t)hostlen);
        if (port)
            *port = ntohs(a->sin_port);
    } else {
        snprintf(host, hostlen, "unknown");
        if (port)
            *port = 0;
    }
}

/* ---- connections ---------------------------------------------------- */

static void
conn_close(isl_conn *c, int reason)
{
    isl *s = c->l->s;
    isl_count(c->l, reason, 1);
    event_free(c->ev_read);
    event_free(c->ev_idle);
    close(c->fd);
    tds_framer_free(&c->fr);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->l->n_conns--;
    s->n_conns--;
    free(c);
}

static void
conn_read_on(isl_conn *c, bool on)
{
    if (on && !c->reading)
        event_add(c->ev_read, NULL);
    else if (!on && c->reading)
        event_del(c->ev_read);
    c->reading = on;
}

static int
on_frame(void *arg, tds_frame_ev ev, const char *msg, size_t len)
{
    isl_conn *c = arg;
    switch (ev) {
    case TDS_FRAME_MSG:
        return isl_handle(c->l, c->peer, msg, len, false);
    case TDS_FRAME_TRUNCATED:
        return isl_handle(c->l, c->peer, msg, len, true);
    case TDS_FRAME_TOO_BIG:
        isl_count(c->l, ISL_RECEIVED, 1);
        isl_count(c->l, ISL_MALFORMED_TOO_BIG, 1);
        isl_warn(c->l->s, "syslog: message over max_message_size rejected",
                 "listener=%s peer=%s size=%zu", c->l->name, c->peer, len);
        return 0;
    case TDS_FRAME_INCOMPLETE:
        isl_count(c->l, ISL_RECEIVED, 1);
        isl_count(c->l, ISL_MALFORMED_INCOMPLETE, 1);
        isl_warn(c->l->s, "syslog: connection closed inside an octet-counted frame",
                 "listener=%s peer=%s buffered=%zu", c->l->name, c->peer, len);
        return 0;
    }
    return 0;
}

/* Handles a framer result; returns false when the connection was closed. */
static bool
framed(isl_conn *c, int rc)
{
    if (rc == TDS_FRAME_BAD) {
        isl_warn(c->l->s, "syslog: bad octet count; closing the connection",
                 "listener=%s peer=%s", c->l->name, c->peer);
        conn_close(c, ISL_CLOSE_BAD_FRAME);
        return false;
    }
    if (rc == 1 || c->l->s->paused)
        conn_read_on(c, false); /* the pipeline is full: resume() goes on */
    return true;
}

static void
on_conn_read(evutil_socket_t fd, short what, void *arg)
{
    isl_conn *c = arg;
    (void)what;
    c->last_ms = isl_now_ms(c->l->s);
    for (int i = 0; i < READS_PER_WAKEUP && c->reading; i++) {
        size_t avail;
        char *space = tds_framer_space(&c->fr, &avail);
        ssize_t n = read(fd, space, avail);
        if (n > 0) {
            if (!framed(c, tds_framer_commit(&c->fr, (size_t)n, on_frame, c)))
                return;
            if ((size_t)n < avail)
                break; /* drained the socket */
            continue;
        }
        if (n == 0) {
            tds_framer_eof(&c->fr, on_frame, c);
            conn_close(c, ISL_CLOSE_PEER);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        isl_warn(c->l->s, "syslog: read error; closing the connection",
                 "listener=%s peer=%s error=\"%s\"", c->l->name, c->peer,
                 strerror(errno));
        conn_close(c, ISL_CLOSE_ERROR);
        return;
    }
}

static void
arm_idle(isl_conn *c, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(c->ev_idle, &tv);
}

static void
on_conn_idle(evutil_socket_t fd, short what, void *arg)
{
    isl_conn *c = arg;
    isl *s = c->l->s;
    int64_t now = isl_now_ms(s), quiet = now - c->last_ms;
    (void)fd;
    (void)what;
    if (s->paused || quiet < s->idle_ms) {
        /* Paused connections are quiet because of us: never idle. */
        if (s->paused)
            c->last_ms = now;
        arm_idle(c, s->paused ? s->idle_ms : s->idle_ms - quiet);
        return;
    }
    isl_warn(s, "syslog: idle connection closed", "listener=%s peer=%s idle_ms=%lld",
             c->l->name, c->peer, (long long)quiet);
    conn_close(c, ISL_CLOSE_IDLE);
}

static void
on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    isl_listener *l = arg;
    (void)fd;
    (void)what;
    if (l->ev)
        event_add(l->ev, NULL);
}

/* accept() failed for want of resources (descriptors, memory): the waiting
 * connection stays in the backlog and the listening socket stays readable,
 * so listening on would be a busy loop. Stop for a second instead. */
static void
accept_pause(isl_listener *l)
{
    isl *s = l->s;
    s->host->count(s->host, "syslog_accept_errors", l->labels[ISL_CONN_ACCEPTED], 1);
    if (!l->ev_resume)
        l->ev_resume = evtimer_new(s->host->base, on_accept_resume, l);
    if (!l->ev_resume)
        return; /* out of memory: keep listening, as before */
    event_del(l->ev);
    struct timeval tv = {1, 0};
    event_add(l->ev_resume, &tv);
}

static void
on_accept(evutil_socket_t fd, short what, void *arg)
{
    isl_listener *l = arg;
    isl *s = l->s;
    (void)what;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            isl_warn(s, "syslog: accept failed", "listener=%s error=\"%s\"", l->name,
                     strerror(errno));
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_pause(l);
            return;
        }
        char peer[64];
        isl_addr_str(&ss, peer, sizeof(peer), NULL);
        if (s->n_conns >= s->max_conns || s->stopped) {
            close(cfd);
            isl_count(l, ISL_CONN_REJECTED, 1);
            isl_warn(s, "syslog: connection refused: max_connections reached",
                     "listener=%s peer=%s max_connections=%zu", l->name, peer,
                     s->max_conns);
            continue;
        }
        isl_conn *c = calloc(1, sizeof(*c));
        if (!c || tds_framer_init(&c->fr, s->max_msg, s->truncate) != 0) {
            free(c);
            close(cfd);
            isl_warn(s, "syslog: out of memory for a connection", "listener=%s",
                     l->name);
            continue;
        }
        c->l = l;
        c->fd = cfd;
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
        c->ev_read = event_new(s->host->base, cfd, EV_READ | EV_PERSIST, on_conn_read, c);
        c->ev_idle = evtimer_new(s->host->base, on_conn_idle, c);
        c->last_ms = isl_now_ms(s);
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        l->n_conns++;
        s->n_conns++;
        isl_count(l, ISL_CONN_ACCEPTED, 1);
        conn_read_on(c, !s->paused);
        arm_idle(c, s->idle_ms);
    }
}

/* ---- UDP ------------------------------------------------------------ */

static void
on_udp(evutil_socket_t fd, short what, void *arg)
{
    isl_listener *l = arg;
    isl *s = l->s;
    (void)what;
    for (int i = 0; i < DATAGRAMS_PER_WAKEUP; i++) {
        struct sockaddr_storage ss;
        union {
            char buf[CMSG_SPACE(sizeof(uint32_t))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {s->udp_buf, TDS_MAX_MSG + 1};
        struct msghdr mh = {
            .msg_name = &ss, .msg_namelen = sizeof(ss), .msg_iov = &iov,
            .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf),
        };
        ssize_t n = recvmsg(fd, &mh, MSG_TRUNC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                isl_warn(s, "syslog: UDP receive failed", "listener=%s error=\"%s\"",
                         l->name, strerror(errno));
            return;
        }
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL) {
                uint32_t drops;
                memcpy(&drops, CMSG_DATA(cm), sizeof(drops));
                if (drops != l->kernel_drops) {
                    isl_count(l, ISL_DROP_KERNEL, (uint32_t)(drops - l->kernel_drops));
                    isl_warn(s, "syslog: the kernel dropped UDP datagrams (receive "
                             "buffer full)", "listener=%s dropped=%u", l->name,
                             (unsigned)(drops - l->kernel_drops));
                    l->kernel_drops = drops;
                }
            }
        }
        char peer[64];
        isl_addr_str(&ss, peer, sizeof(peer), NULL);
        size_t len = (size_t)n;
        bool truncated = false;
        if (len > s->max_msg) {
            if (!s->truncate) {
                isl_count(l, ISL_RECEIVED, 1);
                isl_count(l, ISL_MALFORMED_TOO_BIG, 1);
                isl_warn(s, "syslog: message over max_message_size rejected",
                         "listener=%s peer=%s size=%zu", l->name, peer, len);
                continue;
            }
            len = tds_utf8_cut(s->udp_buf, len > TDS_MAX_MSG ? TDS_MAX_MSG : len,
                               s->max_msg);
            truncated = true;
        }
        isl_handle(l, peer, s->udp_buf, len, truncated);
    }
}

/* ---- listeners ------------------------------------------------------ */

/* "HOST:PORT", "[V6]:PORT" or ":PORT"/"*:PORT" (every IPv4 address). */
static int
split_hostport(const char *spec, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':')
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(close - spec - 1), spec + 1);
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon || memchr(spec, ':', (size_t)(colon - spec)))
            return -1; /* IPv6 needs brackets */
        snprintf(host, hostlen, "%.*s", (int)(colon - spec), spec);
    }
    if (!colon[1] || strlen(colon + 1) >= portlen)
        return -1;
    snprintf(port, portlen, "%s", colon + 1);
    if (!host[0] || strcmp(host, "*") == 0)
        snprintf(host, hostlen, "0.0.0.0");
    return 0;
}

static void
make_labels(isl_listener *l)
{
    static const char *const plain[] = {
        [ISL_RECEIVED] = "", [ISL_PARSED] = "", [ISL_TRUNCATED] = "",
        [ISL_MATCHED] = "", [ISL_RESOLVED] = "", [ISL_UNMATCHED] = "",
        [ISL_SUBMITTED] = "", [ISL_CONN_ACCEPTED] = "",
        [ISL_DROP_UNMATCHED] = ",reason=\"unmatched\"",
        [ISL_DROP_FULL] = ",reason=\"pipeline_full\"",
        [ISL_DROP_KERNEL] = ",reason=\"kernel_buffer_full\"",
        [ISL_CONN_REJECTED] = ",reason=\"max_connections\"",
        [ISL_CLOSE_PEER] = ",reason=\"peer\"", [ISL_CLOSE_IDLE] = ",reason=\"idle\"",
        [ISL_CLOSE_BAD_FRAME] = ",reason=\"bad_frame\"",
        [ISL_CLOSE_ERROR] = ",reason=\"error\"",
    };
    for (int i = 0; i < ISL_N_COUNTERS; i++) {
        const char *extra = "";
        char reason[64];
        if (i < ISL_MALFORMED) {
            extra = plain[i];
        } else {
            const char *r = i == ISL_MALFORMED_TOO_BIG      ? "too_big"
                            : i == ISL_MALFORMED_INCOMPLETE ? "incomplete_frame"
                                                            : tds_parse_reasons[i - ISL_MALFORMED];
            snprintf(reason, sizeof(reason), ",reason=\"%s\"", r);
            extra = reason;
        }
        size_t n = strlen(l->name) + strlen(extra) + 16;
        l->labels[i] = malloc(n);
        if (!l->labels[i])
            abort();
        snprintf(l->labels[i], n, "listener=\"%s\"%s", l->name, extra);
    }
}

int
isl_listen(isl *s, const char *spec, bool tcp, char *err, size_t errlen)
{
    char host[256], port[16], name[96];
    struct addrinfo hints = {0}, *ai = NULL;
    int fd = -1, one = 1, rc;
    if (split_hostport(spec, host, sizeof(host), port, sizeof(port)) != 0) {
        snprintf(err, errlen, "[syslog] %s: '%s' is not HOST:PORT or [IPV6]:PORT",
                 tcp ? "tcp" : "udp", spec);
        return -1;
    }
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = tcp ? SOCK_STREAM : SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    /* At start only, before the loop runs: a name lookup may block here. */
    if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
        snprintf(err, errlen, "[syslog] %s %s: %s", tcp ? "tcp" : "udp", spec,
                 gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto syserr;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) /* [::] and 0.0.0.0 can both be listed */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (!tcp) {
        int sz = UDP_RCVBUF;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)); /* capped by rmem_max */
        setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || (tcp && listen(fd, 512) != 0))
        goto syserr;
    {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char h[64];
        int p = 0;
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        isl_addr_str(&ss, h, sizeof(h), &p);
        snprintf(name, sizeof(name), ss.ss_family == AF_INET6 ? "%s:[%s]:%d" : "%s:%s:%d",
                 tcp ? "tcp" : "udp", h, p);
    }
    freeaddrinfo(ai);
    s->ls = realloc(s->ls, (s->n_ls + 1) * sizeof(*s->ls));
    if (!s->ls)
        abort();
    isl_listener *l = &s->ls[s->n_ls++];
    memset(l, 0, sizeof(*l));
    l->s = s;
    l->tcp = tcp;
    l->fd = fd;
    snprintf(l->name, sizeof(l->name), "%s", name);
    make_labels(l);
    return 0;

syserr:
    snprintf(err, errlen, "[syslog] %s %s: %s", tcp ? "tcp" : "udp", spec,
             strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return -1;
}

int
isl_start_listeners(isl *s)
{
    for (size_t i = 0; i < s->n_ls; i++) {
        isl_listener *l = &s->ls[i];
        l->ev = event_new(s->host->base, l->fd, EV_READ | EV_PERSIST,
                          l->tcp ? on_accept : on_udp, l);
        if (!l->ev || event_add(l->ev, NULL) != 0)
            return -1;
        s->host->log(s->host, TD_LOG_INFO, "syslog: listening", "listener=%s",
                     l->name);
    }
    return 0;
}

void
isl_pause(isl *s)
{
    if (!s->paused)
        s->host->count(s->host, "syslog_backpressure_pauses", NULL, 1);
    s->paused = true;
    for (isl_conn *c = s->conns; c; c = c->next)
        conn_read_on(c, false);
}

void
isl_resume(isl *s)
{
    s->paused = false;
    /* Frames buffered when the pipeline filled go first; a connection whose
     * buffer fills the pipeline again stays paused. */
    for (isl_conn *c = s->conns, *next; c && !s->paused; c = next) {
        next = c->next;
        if (!framed(c, tds_framer_drain(&c->fr, on_frame, c)))
            continue;
        if (!s->paused)
            conn_read_on(c, true);
    }
}

void
isl_close_all(isl *s)
{
    for (size_t i = 0; i < s->n_ls; i++) {
        isl_listener *l = &s->ls[i];
        if (l->ev) {
            event_free(l->ev);
            l->ev = NULL;
        }
        if (l->ev_resume) {
            event_free(l->ev_resume);
            l->ev_resume = NULL;
        }
        if (l->fd >= 0) {
            close(l->fd);
            l->fd = -1;
        }
    }
    while (s->conns) {
        isl_conn *c = s->conns;
        /* What is buffered was read: hand it over before closing. */
        tds_framer_drain(&c->fr, on_frame, c);
        conn_close(c, ISL_CLOSE_PEER);
    }
}

void
isl_free_listeners(isl *s)
{
    isl_close_all(s);
    for (size_t i = 0; i < s->n_ls; i++)
        for (int k = 0; k < ISL_N_COUNTERS; k++)
            free(s->ls[i].labels[k]);
    free(s->ls);
    s->ls = NULL;
    s->n_ls = 0;
}

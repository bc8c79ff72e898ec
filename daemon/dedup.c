/* dedup.c — the Redis side of deduplication (see dedup.h).
 *
 * Keys are "triaged:{<fingerprint>}": the braces are a Redis Cluster hash
 * tag, so a fingerprint's key lives on one shard. Against a standalone
 * Redis one script call classifies up to KEYS_PER_CALL fingerprints;
 * against a cluster node (INFO cluster, asked on connect, or a CROSSSLOT
 * answer) each call touches one key. Only one node is spoken to: keys
 * another node holds come back MOVED, counted as errors ("change" hints).
 * A key holds the newest known state (a string: f|r, the severity, a flag,
 * the time in µs; see the script) and expires after a week without news,
 * so Redis memory is bounded by the alerts of the last week, whatever the
 * storm. The script is
 * loaded with SCRIPT LOAD on every (re)connect; a NOSCRIPT reply (Redis
 * restarted and lost it) turns into a "change" hint and a reload. */
#include "internal/dedup.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/log.h"
#include "internal/metrics.h"
#include "internal/util.h"

#define KEY_TTL_S 604800

/* One call classifies the fingerprints given as KEYS: ARGV[1] is the TTL,
 * then one value a key, which is also what the key holds: its state (f|r),
 * severity (one digit), "1" when the batch holds only firing news of it
 * ("0" otherwise; not read back), then the time in µs. Returns a hint a key.
 * One SET ... GET a key (the value and the TTL written, the previous value
 * read, in one call; Redis 6.2 or newer, checked on connect); a second SET
 * only for an older message, to put the newer state back. Until 2026-11-27
 * a key was a hash (s, t, v) read with HMGET and written with HSET and
 * EXPIRE: three calls a key, and four arguments a key to send, parse and
 * turn into Lua strings. Such a key (from a triaged before then) makes
 * SET ... GET fail with WRONGTYPE; it is read as a hash and overwritten in
 * this form. Any other error (a key of another type, out of memory, a value
 * that is not ours) ends the call with it and leaves that key as it was, as
 * an error of a redis.call() did before: hints "change" for the call's
 * keys. */
static const char script[] =
    "local out = {}\n"
    "local ttl = ARGV[1]\n"
    "for i = 1, #KEYS do\n"
    "  local k, x = KEYS[i], ARGV[i + 1]\n"
    "  local t = x and #x >= 4 and tonumber(string.sub(x, 4))\n"
    "  if not t then return redis.error_reply('bad value for ' .. k) end\n"
    "  local old = redis.pcall('SET', k, x, 'EX', ttl, 'GET')\n"
    "  if type(old) == 'table' then\n"
    "    if not string.find(old.err, 'WRONGTYPE', 1, true) then\n"
    "      return redis.error_reply(old.err)\n"
    "    end\n"
    "    local h = redis.pcall('HMGET', k, 's', 't', 'v')\n"
    "    if h.err then return redis.error_reply(h.err) end\n"
    "    old = h[1] and (h[1] .. (h[3] or '?') .. '0' .. (h[2] or '')) or false\n"
    "    redis.call('SET', k, x, 'EX', ttl)\n"
    "  end\n"
    "  if not old then\n"
    "    out[i] = 2\n"
    "  else\n"
    "    if string.byte(x, 3) == 49 and string.byte(old, 1) == 102\n"
    "       and string.byte(old, 2) == string.byte(x, 2) then\n"
    "      out[i] = 0\n"
    "    else\n"
    "      out[i] = 1\n"
    "    end\n"
    "    if t < (tonumber(string.sub(old, 4)) or -math.huge) then\n"
    "      redis.call('SET', k, old, 'EX', ttl)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* Fingerprints per script call against a standalone Redis: a call runs
 * ~3 µs a key inside Redis, so a chunk holds Redis for about a millisecond;
 * a call per fingerprint cost ~12 µs each (measured in bench_http). */
#define KEYS_PER_CALL 256

typedef struct request {
    td_dedup *d;
    uint8_t *hints;
    const td_segment *segs;
    size_t n;
    size_t pending;
    td_dedup_cb cb;
    void *arg;
    bool cancelled;
    int64_t started_ms;
    struct request *prev, *next;
} request;

typedef struct span {
    size_t first, count; /* segment range of one fingerprint */
} span;

typedef struct call {
    request *req;
    size_t n;     /* keys */
    span keys[]; /* in KEYS order */
} call;

struct td_dedup {
    struct event_base *base;
    char *host, *password;
    int port, db;
    redisAsyncContext *ac;
    bool connected, script_loaded;
    bool too_old; /* older than 6.2: no SET ... GET, no script */
    bool cluster; /* cluster_enabled: one key a call (keys of one slot) */
    char sha[41];
    struct event *ev_retry;
    int64_t backoff_ms;
    request *requests; /* outstanding, for cancellation */
    td_metric *m_latency, *m_errors, *m_disconnects, *m_noscript;
    td_ratelimit rl, rl_eval;
};

static void connect_now(td_dedup *d);

static void
schedule_reconnect(td_dedup *d)
{
    struct timeval tv = {(time_t)(d->backoff_ms / 1000),
                         (suseconds_t)(d->backoff_ms % 1000) * 1000};
    event_add(d->ev_retry, &tv);
    d->backoff_ms = d->backoff_ms * 2 > 5000 ? 5000 : d->backoff_ms * 2;
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

static void
warn_down(td_dedup *d, const char *msg, const char *err)
{
    uint32_t suppressed;
    if (td_ratelimit_allow(&d->rl, 5, &suppressed))
        td_warn(msg, "error=\"%s\" retry_ms=%lld suppressed=%u", TD_LOG_VALUE(err),
                (long long)d->backoff_ms, suppressed);
}

static void
on_script_loaded(redisAsyncContext *ac, void *r, void *priv)
{
    td_dedup *d = priv;
    redisReply *reply = r;
    (void)ac;
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(d->sha, reply->str, 40);
        d->sha[40] = '\0';
        d->script_loaded = !d->too_old;
    } else if (reply) {
        td_error("redis: SCRIPT LOAD failed", "error=\"%s\"",
                 TD_LOG_VALUE(reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply"));
    }
}

static void
on_setup_reply(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)ac;
    (void)priv;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        td_error("redis: setup command failed", "error=\"%s\"", TD_LOG_VALUE(reply->str));
}

static void
on_info(redisAsyncContext *ac, void *r, void *priv)
{
    td_dedup *d = priv;
    redisReply *reply = r;
    (void)ac;
    if (reply && reply->type == REDIS_REPLY_STRING) {
        d->cluster = strstr(reply->str, "cluster_enabled:1") != NULL;
    } else if (reply) {
        /* (an INFO we may not run: one key a call is right for both) */
        d->cluster = true;
        td_warn("redis: INFO cluster failed, one fingerprint a script call", "error=\"%s\"",
                TD_LOG_VALUE(reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply"));
    }
}

/* The script's SET ... GET needs Redis 6.2: an older server would refuse
 * every call ("syntax error"), counted fingerprint by fingerprint; say it
 * once instead, and leave the hints "change" (PostgreSQL decides). Asked
 * before SCRIPT LOAD, so answered before it. */
static void
on_server_info(redisAsyncContext *ac, void *r, void *priv)
{
    td_dedup *d = priv;
    redisReply *reply = r;
    (void)ac;
    const char *v = reply && reply->type == REDIS_REPLY_STRING
                        ? strstr(reply->str, "redis_version:") : NULL;
    int major = 0, minor = 0;
    if (!v || sscanf(v + 14, "%d.%d", &major, &minor) != 2)
        return; /* (unknown: try the script) */
    d->too_old = major < 6 || (major == 6 && minor < 2);
    if (d->too_old)
        td_error("redis: server older than 6.2 (no SET ... GET); dedup hints off, "
                 "PostgreSQL decides alone", "version=%d.%d", major, minor);
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
    td_dedup *d = ac->data;
    if (status != REDIS_OK) {
        warn_down(d, "redis: cannot connect", ac->errstr);
        d->ac = NULL; /* hiredis frees it */
        td_metric_add(d->m_disconnects, 1);
        schedule_reconnect(d);
        return;
    }
    d->connected = true;
    d->backoff_ms = 250;
    td_info("redis: connected", "host=%s port=%d db=%d", d->host, d->port, d->db);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
    td_dedup *d = ac->data;
    d->connected = false;
    d->script_loaded = false;
    d->ac = NULL;
    if (status != REDIS_OK) {
        warn_down(d, "redis: connection lost", ac->errstr);
        td_metric_add(d->m_disconnects, 1);
        schedule_reconnect(d);
    }
}

static void
connect_now(td_dedup *d)
{
    redisAsyncContext *ac = redisAsyncConnect(d->host, d->port);
    if (!ac || ac->err) {
        warn_down(d, "redis: cannot connect", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(d);
        return;
    }
    ac->data = d;
    d->ac = ac;
    redisLibeventAttach(ac, d->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* Queued now, sent once connected, in order. */
    if (d->password)
        redisAsyncCommand(ac, on_setup_reply, d, "AUTH %s", d->password);
    if (d->db)
        redisAsyncCommand(ac, on_setup_reply, d, "SELECT %d", d->db);
    /* standalone or cluster, and new enough? Known before the script's
     * answer (in order). */
    d->too_old = false;
    redisAsyncCommand(ac, on_server_info, d, "INFO server");
    redisAsyncCommand(ac, on_info, d, "INFO cluster");
    redisAsyncCommand(ac, on_script_loaded, d, "SCRIPT LOAD %s", script);
}

static int
parse_url(td_dedup *d, const char *url, char *err, size_t errlen)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0) {
        snprintf(err, errlen, "redis url '%s' must start with redis://", url);
        return TD_ERR;
    }
    p += 8;
    const char *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon)
            d->password = td_strndup(colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    d->host = hl ? td_strndup(p, hl) : td_strdup("127.0.0.1");
    p += hl;
    d->port = 6379;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535) {
            snprintf(err, errlen, "redis url '%s': bad port", url);
            return TD_ERR;
        }
        d->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (*end || db < 0 || db > 1000) {
            snprintf(err, errlen, "redis url '%s': bad database number", url);
            return TD_ERR;
        }
        d->db = (int)db;
    } else if (*p && strcmp(p, "/") != 0) {
        snprintf(err, errlen, "redis url '%s': unexpected '%s'", url, p);
        return TD_ERR;
    }
    return TD_OK;
}

td_dedup *
td_dedup_new(struct event_base *base, const char *url, char *err, size_t errlen)
{
    td_dedup *d = td_calloc(1, sizeof(*d));
    d->base = base;
    if (parse_url(d, url, err, errlen) != TD_OK) {
        td_dedup_free(d);
        return NULL;
    }
    d->backoff_ms = 250;
    d->ev_retry = evtimer_new(base, on_retry, d);
    d->m_latency = td_histogram("redis_latency_seconds",
                                "Redis round trip per batch", NULL);
    d->m_errors = td_counter("redis_errors", "Fingerprints whose Redis script call failed "
                             "(hint 'change'; PostgreSQL decides in any case)", NULL);
    d->m_disconnects = td_counter("redis_disconnects", "Redis connections lost or refused", NULL);
    d->m_noscript = td_counter("redis_noscript", "NOSCRIPT replies (script reloaded)", NULL);
    connect_now(d);
    return d;
}

static void
request_done(request *q)
{
    td_dedup *d = q->d;
    if (q->prev)
        q->prev->next = q->next;
    else if (d)
        d->requests = q->next;
    if (q->next)
        q->next->prev = q->prev;
    if (!q->cancelled) {
        if (d)
            td_metric_observe(d->m_latency, (double)(td_mono_ms() - q->started_ms) / 1e3);
        q->cb(q->arg);
    }
    free(q);
}

static void
on_eval(redisAsyncContext *ac, void *r, void *priv)
{
    call *c = priv;
    request *q = c->req;
    redisReply *reply = r;
    bool ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == c->n;
    for (size_t k = 0; ok && k < c->n; k++) {
        const redisReply *e = reply->element[k];
        ok = e->type == REDIS_REPLY_INTEGER && e->integer >= 0 && e->integer <= 2;
    }
    if (!ok && !q->cancelled && q->d) {
        td_dedup *d = q->d;
        const char *e = reply && reply->type == REDIS_REPLY_ERROR ? reply->str : NULL;
        uint32_t suppressed;
        td_metric_add(d->m_errors, c->n);
        if (e && strncmp(e, "NOSCRIPT", 8) == 0) {
            if (d->script_loaded) {
                td_metric_add(d->m_noscript, 1);
                d->script_loaded = false;
                redisAsyncCommand(d->ac, on_script_loaded, d, "SCRIPT LOAD %s", script);
            }
        } else if (e && strncmp(e, "CROSSSLOT", 9) == 0 && !d->cluster) {
            /* a proxy that says cluster_enabled:0 and still wants one slot
             * a call: from now on one fingerprint a call */
            d->cluster = true;
            td_warn("redis: keys of several slots refused; one fingerprint a script call",
                    "error=\"%s\"", TD_LOG_VALUE(e));
        } else if (reply && td_ratelimit_allow(&d->rl_eval, 5, &suppressed)) {
            /* (no reply: the connection went, which is logged already) */
            td_warn("redis: script call failed; hints 'change' (PostgreSQL decides)",
                    "fingerprints=%zu error=\"%s\" suppressed=%u", c->n,
                    TD_LOG_VALUE(e ? e : "unexpected reply"), suppressed);
        }
    }
    /* (on failure the hints stay "change", as classify set them) */
    if (ok && !q->cancelled)
        for (size_t k = 0; k < c->n; k++)
            memset(q->hints + c->keys[k].first, (int)reply->element[k]->integer,
                   c->keys[k].count);
    free(c);
    if (--q->pending == 0)
        request_done(q);
}

/* v in decimal at out (24 bytes); its length */
static size_t
fmt_i64(int64_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = 0;
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

void
td_dedup_classify(td_dedup *d, const td_segment *segs, size_t n, uint8_t *hints,
                  td_dedup_cb cb, void *arg)
{
    memset(hints, TD_HINT_CHANGE, n);
    if (!d->connected || !d->script_loaded || !d->ac || n == 0) {
        cb(arg);
        return;
    }
    request *q = td_calloc(1, sizeof(*q));
    q->d = d;
    q->hints = hints;
    q->segs = segs;
    q->n = n;
    q->cb = cb;
    q->arg = arg;
    q->started_ms = td_mono_ms();
    q->next = d->requests;
    if (d->requests)
        d->requests->prev = q;
    d->requests = q;
    q->pending = 1; /* held until every call is sent */
    size_t per_call = d->cluster ? 1 : KEYS_PER_CALL;
    /* the arguments as hiredis sends them (it copies them), without a
     * format string to parse and print through for each fingerprint */
    size_t max_args = 4 + 2 * per_call;
    const char **argv = td_malloc(max_args * sizeof(*argv));
    size_t *argvlen = td_malloc(max_args * sizeof(*argvlen));
    char(*keys)[27] = td_malloc(per_call * sizeof(*keys));
    char(*vals)[3 + 24] = td_malloc(per_call * sizeof(*vals)); /* the script's values */
    char ttl[24], nkeys[24];
    size_t ttl_len = fmt_i64(KEY_TTL_S, ttl);
    for (size_t i = 0; i < n;) {
        call *c = td_malloc(sizeof(*c) + per_call * sizeof(c->keys[0]));
        c->req = q;
        c->n = 0;
        for (; i < n && c->n < per_call; c->n++) {
            size_t j = i + 1;
            while (j < n && segs[j].fp == segs[i].fp)
                j++;
            c->keys[c->n] = (span){i, j - i};
            i = j;
        }
        size_t na = 0;
        argv[na] = "EVALSHA", argvlen[na++] = 7;
        argv[na] = d->sha, argvlen[na++] = 40;
        argv[na] = nkeys, argvlen[na++] = fmt_i64((int64_t)c->n, nkeys);
        for (size_t k = 0; k < c->n; k++) {
            memcpy(keys[k], "triaged:{", 9);
            td_fp_hex(segs[c->keys[k].first].fp, keys[k] + 9);
            keys[k][25] = '}';
            keys[k][26] = '\0';
            argv[na] = keys[k], argvlen[na++] = 26;
        }
        argv[na] = ttl, argvlen[na++] = ttl_len;
        for (size_t k = 0; k < c->n; k++) {
            const td_segment *first = &segs[c->keys[k].first];
            const td_segment *last = first + c->keys[k].count - 1;
            char *v = vals[k];
            v[0] = last->firing ? 'f' : 'r';
            v[1] = (char)('0' + (int)last->severity);
            v[2] = (first->fp_single && first->firing) ? '1' : '0';
            argv[na] = v, argvlen[na++] = 3 + fmt_i64(last->last_us, v + 3);
        }
        if (redisAsyncCommandArgv(d->ac, on_eval, c, (int)na, argv, argvlen) != REDIS_OK) {
            td_metric_add(d->m_errors, c->n); /* leaves CHANGE hints for these */
            free(c);
        } else {
            q->pending++;
        }
    }
    free(argv);
    free(argvlen);
    free(keys);
    free(vals);
    if (--q->pending == 0)
        request_done(q);
}

bool
td_dedup_connected(const td_dedup *d)
{
    return d->connected;
}

void
td_dedup_free(td_dedup *d)
{
    if (!d)
        return;
    for (request *q = d->requests; q; q = q->next) {
        q->cancelled = true;
        q->d = NULL;
    }
    d->requests = NULL;
    if (d->ac) {
        redisAsyncContext *ac = d->ac;
        d->ac = NULL;
        ac->data = d;
        redisAsyncFree(ac); /* calls pending callbacks with NULL replies */
    }
    if (d->ev_retry)
        event_free(d->ev_retry);
    free(d->host);
    free(d->password);
    free(d);
}

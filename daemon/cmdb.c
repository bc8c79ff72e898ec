/* cmdb.c — the CMDB graph in memory and the daemon's cache of it (cmdb.h).
 *
 * The design is simple: binding an alert must cost a few hash lookups, not a
 * query. So the daemon holds the CMDB as a td_graph: every string in one
 * arena, open-addressing hash maps (name/alias -> CI, address -> CI, id ->
 * CI), and compressed adjacency arrays (parents, children, services per CI)
 * built once when a load completes.
 *
 * td_cmdb owns one PostgreSQL connection of its own, non-blocking on the
 * loop (connect with PQconnectPoll, LISTEN, then three COPY ... TO STDOUT
 * read with PQgetCopyData(async)). A load builds a new graph beside the
 * current one and swaps it in when complete; a NOTIFY on triaged_cmdb
 * (sent at commit by the triggers on the CMDB tables) or a reconnect starts
 * another load after a short debounce, so a bulk import causes one load.
 * It never blocks the loop and never makes a binding wait: until the first
 * load completes, td_cmdb_ready() is false and the pipeline holds batches. */
#include "internal/cmdb.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/log.h"
#include "internal/metrics.h"
#include "internal/util.h"

/* ---- the graph --------------------------------------------------------- */

#define NONE UINT32_MAX

typedef struct strmap {
    uint32_t *key; /* arena offset + 1; 0 = empty */
    uint32_t *val; /* CI index */
    size_t cap, n;
} strmap;

typedef struct idmap {
    int64_t *key; /* 0 = empty */
    uint32_t *val;
    size_t cap, n;
} idmap;

typedef struct edge {
    uint32_t a, b;
} edge;

typedef struct svc_link {
    uint32_t ci;
    int64_t service;
} svc_link;

struct td_graph {
    char *arena;
    size_t arena_len, arena_cap;
    int64_t *ids;        /* CI index -> id */
    size_t n, cap;
    strmap names, addrs;
    idmap byid;
    edge *rel;           /* (child, parent) */
    size_t nrel, caprel;
    svc_link *svc;
    size_t nsvc, capsvc;
    /* after seal: CSR */
    uint32_t *par_off, *par, *chi_off, *chi, *svc_off;
    int64_t *svc_ids;
    /* scratch for traversals */
    uint32_t *mark, epoch;
    uint32_t *queue;
    /* memo of td_graph_describe, per CI: lists in memo_ids (bounded) */
    struct memo *memo;
    int64_t *memo_ids;
    size_t memo_len, memo_cap;
};

typedef struct memo {
    uint32_t off;        /* into memo_ids */
    uint16_t nup, nsvc;  /* UINT16_MAX: over the bound */
    bool done;
} memo;

/* The memo stops growing here (8 bytes an id: 64 MiB). */
#define MEMO_MAX_IDS ((size_t)8 << 20)


static uint64_t
hash_id(int64_t id)
{
    uint64_t x = (uint64_t)id;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static uint32_t
arena_add(td_graph *g, const char *s, size_t len)
{
    if (g->arena_len + len + 1 > g->arena_cap) {
        while (g->arena_len + len + 1 > g->arena_cap)
            g->arena_cap = g->arena_cap ? g->arena_cap * 2 : 4096;
        g->arena = td_realloc(g->arena, g->arena_cap);
    }
    uint32_t off = (uint32_t)g->arena_len;
    memcpy(g->arena + off, s, len);
    g->arena[off + len] = '\0';
    g->arena_len += len + 1;
    return off;
}

static size_t
strmap_slot(const td_graph *g, const strmap *m, const char *key)
{
    size_t mask = m->cap - 1, i = (size_t)td_fnv1a(TD_FNV1A_OFFSET, key) & mask;
    while (m->key[i] && strcmp(g->arena + m->key[i] - 1, key) != 0)
        i = (i + 1) & mask;
    return i;
}

static void strmap_put(td_graph *g, strmap *m, uint32_t off, uint32_t val);

static void
strmap_grow(td_graph *g, strmap *m)
{
    strmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 1024;
    m->key = td_calloc(m->cap, sizeof(*m->key));
    m->val = td_malloc(m->cap * sizeof(*m->val));
    m->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.key[i])
            strmap_put(g, m, old.key[i] - 1, old.val[i]);
    free(old.key);
    free(old.val);
}

/* First writer wins: a key already present keeps its CI. */
static void
strmap_put(td_graph *g, strmap *m, uint32_t off, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap)
        strmap_grow(g, m);
    size_t i = strmap_slot(g, m, g->arena + off);
    if (m->key[i])
        return;
    m->key[i] = off + 1;
    m->val[i] = val;
    m->n++;
}

static uint32_t
strmap_get(const td_graph *g, const strmap *m, const char *key)
{
    if (!m->cap)
        return NONE;
    size_t i = strmap_slot(g, m, key);
    return m->key[i] ? m->val[i] : NONE;
}

static void idmap_put(idmap *m, int64_t id, uint32_t val);

static void
idmap_grow(idmap *m)
{
    idmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 1024;
    m->key = td_calloc(m->cap, sizeof(*m->key));
    m->val = td_malloc(m->cap * sizeof(*m->val));
    m->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.key[i])
            idmap_put(m, old.key[i], old.val[i]);
    free(old.key);
    free(old.val);
}

static void
idmap_put(idmap *m, int64_t id, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap)
        idmap_grow(m);
    size_t mask = m->cap - 1, i = (size_t)hash_id(id) & mask;
    while (m->key[i] && m->key[i] != id)
        i = (i + 1) & mask;
    if (!m->key[i])
        m->n++;
    m->key[i] = id;
    m->val[i] = val;
}

static uint32_t
idmap_get(const idmap *m, int64_t id)
{
    if (!m->cap || id <= 0)
        return NONE;
    size_t mask = m->cap - 1, i = (size_t)hash_id(id) & mask;
    while (m->key[i]) {
        if (m->key[i] == id)
            return m->val[i];
        i = (i + 1) & mask;
    }
    return NONE;
}

td_graph *
td_graph_new(void)
{
    return td_calloc(1, sizeof(td_graph));
}

static void
free_csr(td_graph *g)
{
    free(g->par_off);
    free(g->par);
    free(g->chi_off);
    free(g->chi);
    free(g->svc_off);
    free(g->svc_ids);
    free(g->mark);
    free(g->queue);
    free(g->memo);
    free(g->memo_ids);
    g->memo = NULL;
    g->memo_ids = NULL;
    g->memo_len = g->memo_cap = 0;
    g->par_off = g->par = g->chi_off = g->chi = g->svc_off = g->mark = g->queue = NULL;
    g->svc_ids = NULL;
}

void
td_graph_free(td_graph *g)
{
    if (!g)
        return;
    free(g->arena);
    free(g->ids);
    free(g->names.key);
    free(g->names.val);
    free(g->addrs.key);
    free(g->addrs.val);
    free(g->byid.key);
    free(g->byid.val);
    free(g->rel);
    free(g->svc);
    free_csr(g);
    free(g);
}

/* The canonical text of an IP address, or false when s is not one. */
static bool
canon_addr(const char *s, char out[INET6_ADDRSTRLEN])
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, s, buf) == 1)
        return inet_ntop(AF_INET, buf, out, INET6_ADDRSTRLEN) != NULL;
    if (inet_pton(AF_INET6, s, buf) == 1)
        return inet_ntop(AF_INET6, buf, out, INET6_ADDRSTRLEN) != NULL;
    return false;
}

/* Calls fn for each non-empty item of a 0x1F separated list. */
static void
each_item(td_graph *g, const char *list, uint32_t idx,
          void (*fn)(td_graph *g, const char *s, size_t len, uint32_t idx))
{
    if (!list)
        return;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, "\x1f");
        if (len)
            fn(g, p, len, idx);
        p += len;
        if (*p)
            p++;
    }
}

static void
add_alias(td_graph *g, const char *s, size_t len, uint32_t idx)
{
    strmap_put(g, &g->names, arena_add(g, s, len), idx);
}

static void
add_address(td_graph *g, const char *s, size_t len, uint32_t idx)
{
    char tmp[INET6_ADDRSTRLEN + 8], canon[INET6_ADDRSTRLEN];
    if (len >= sizeof(tmp))
        return;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (!canon_addr(tmp, canon))
        return;
    strmap_put(g, &g->addrs, arena_add(g, canon, strlen(canon)), idx);
}

void
td_graph_add_ci(td_graph *g, int64_t id, const char *name, const char *aliases,
                const char *addresses)
{
    if (id <= 0 || !name || !*name || idmap_get(&g->byid, id) != NONE)
        return;
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 1024;
        g->ids = td_realloc(g->ids, g->cap * sizeof(*g->ids));
    }
    uint32_t idx = (uint32_t)g->n++;
    g->ids[idx] = id;
    idmap_put(&g->byid, id, idx);
    uint32_t off = arena_add(g, name, strlen(name));
    /* a name displaces an alias that took the key before */
    if ((g->names.n + 1) * 2 > g->names.cap)
        strmap_grow(g, &g->names);
    size_t slot = strmap_slot(g, &g->names, name);
    if (!g->names.key[slot]) {
        g->names.key[slot] = off + 1;
        g->names.n++;
    }
    g->names.val[slot] = idx;
    each_item(g, aliases, idx, add_alias);
    each_item(g, addresses, idx, add_address);
}

void
td_graph_add_relation(td_graph *g, int64_t child_id, int64_t parent_id)
{
    uint32_t c = idmap_get(&g->byid, child_id), p = idmap_get(&g->byid, parent_id);
    if (c == NONE || p == NONE || c == p)
        return;
    if (g->nrel == g->caprel) {
        g->caprel = g->caprel ? g->caprel * 2 : 1024;
        g->rel = td_realloc(g->rel, g->caprel * sizeof(*g->rel));
    }
    g->rel[g->nrel++] = (edge){c, p};
}

void
td_graph_add_service_ci(td_graph *g, int64_t service_id, int64_t ci_id)
{
    uint32_t c = idmap_get(&g->byid, ci_id);
    if (c == NONE)
        return;
    if (g->nsvc == g->capsvc) {
        g->capsvc = g->capsvc ? g->capsvc * 2 : 256;
        g->svc = td_realloc(g->svc, g->capsvc * sizeof(*g->svc));
    }
    g->svc[g->nsvc++] = (svc_link){c, service_id};
}

/* Compressed rows: for each CI i, its entries are out[off[i] .. off[i+1]);
 * off[k + 1] counts first, then prefix sums. */
static void
prefix_sum(uint32_t *off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        off[i + 1] += off[i];
}

void
td_graph_seal(td_graph *g)
{
    free_csr(g);
    size_t n = g->n, nr = g->nrel, ns = g->nsvc;
    g->par_off = td_calloc(n + 1, sizeof(uint32_t));
    g->chi_off = td_calloc(n + 1, sizeof(uint32_t));
    g->svc_off = td_calloc(n + 1, sizeof(uint32_t));
    for (size_t i = 0; i < nr; i++) {
        g->par_off[g->rel[i].a + 1]++;
        g->chi_off[g->rel[i].b + 1]++;
    }
    for (size_t i = 0; i < ns; i++)
        g->svc_off[g->svc[i].ci + 1]++;
    prefix_sum(g->par_off, n);
    prefix_sum(g->chi_off, n);
    prefix_sum(g->svc_off, n);
    g->par = td_malloc((nr ? nr : 1) * sizeof(uint32_t));
    g->chi = td_malloc((nr ? nr : 1) * sizeof(uint32_t));
    g->svc_ids = td_malloc((ns ? ns : 1) * sizeof(int64_t));
    uint32_t *fill = td_malloc((n + 1) * sizeof(uint32_t));
    memcpy(fill, g->par_off, (n + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < nr; i++)
        g->par[fill[g->rel[i].a]++] = g->rel[i].b;
    memcpy(fill, g->chi_off, (n + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < nr; i++)
        g->chi[fill[g->rel[i].b]++] = g->rel[i].a;
    memcpy(fill, g->svc_off, (n + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < ns; i++)
        g->svc_ids[fill[g->svc[i].ci]++] = g->svc[i].service;
    free(fill);
    /* the edge lists now live in the compressed arrays */
    free(g->rel);
    free(g->svc);
    g->rel = NULL;
    g->svc = NULL;
    g->caprel = g->capsvc = 0;
    g->mark = td_calloc(n ? n : 1, sizeof(uint32_t));
    g->queue = td_malloc((n ? n : 1) * sizeof(uint32_t));
    g->epoch = 0;
    g->memo = td_calloc(n ? n : 1, sizeof(memo));
}

size_t
td_graph_ci_count(const td_graph *g)
{
    return g->n;
}

size_t
td_graph_relation_count(const td_graph *g)
{
    return g->par_off ? g->par_off[g->n] : g->nrel;
}

size_t
td_graph_memory(const td_graph *g)
{
    size_t n = g->n, r = td_graph_relation_count(g), s = g->svc_off ? g->svc_off[n] : g->nsvc;
    return sizeof(*g) + g->memo_cap * sizeof(int64_t) + (g->memo ? g->n * sizeof(memo) : 0) +
           g->arena_cap + g->cap * sizeof(int64_t) +
           g->names.cap * 8 + g->addrs.cap * 8 + g->byid.cap * 12 +
           g->caprel * sizeof(edge) + g->capsvc * sizeof(svc_link) +
           (g->par_off ? (n + 1) * 3 * 4 + r * 8 + s * 8 + n * 8 : 0);
}

static uint32_t
lookup_idx(const td_graph *g, const char *key)
{
    uint32_t i = strmap_get(g, &g->names, key);
    if (i != NONE)
        return i;
    char canon[INET6_ADDRSTRLEN];
    if (canon_addr(key, canon))
        return strmap_get(g, &g->addrs, canon);
    return NONE;
}

int64_t
td_graph_lookup(const td_graph *g, const char *key)
{
    if (!key || !*key)
        return 0;
    uint32_t i = lookup_idx(g, key);
    if (i == NONE) {
        /* HOST:PORT (one colon, digits after it) */
        const char *colon = strchr(key, ':');
        if (colon && !strchr(colon + 1, ':') && colon[1] &&
            strspn(colon + 1, "0123456789") == strlen(colon + 1) &&
            (size_t)(colon - key) < 256) {
            char host[256];
            memcpy(host, key, (size_t)(colon - key));
            host[colon - key] = '\0';
            i = lookup_idx(g, host);
        }
    }
    return i == NONE ? 0 : g->ids[i];
}

int64_t
td_graph_bind(const td_graph *g, const td_alert *a, const char *const *bind_labels)
{
    int64_t id;
    if (a->ci && (id = td_graph_lookup(g, a->ci)))
        return id;
    if ((id = td_graph_lookup(g, a->resource)))
        return id;
    for (size_t k = 0; bind_labels && bind_labels[k]; k++)
        for (size_t j = 0; j < a->n_labels; j++)
            if (strcmp(a->labels[j].name, bind_labels[k]) == 0 &&
                (id = td_graph_lookup(g, a->labels[j].value)))
                return id;
    return 0;
}

/* Breadth-first from `start` over parents (up) or children (down); visits
 * each CI once; calls visit for every CI reached (start included when
 * with_start). Returns the number visited. */
static size_t
walk(td_graph *g, uint32_t start, bool up, bool with_start,
     bool (*visit)(td_graph *g, uint32_t idx, void *arg), void *arg)
{
    if (!g->mark)
        return 0;
    if (++g->epoch == 0) {
        memset(g->mark, 0, g->n * sizeof(uint32_t));
        g->epoch = 1;
    }
    const uint32_t *off = up ? g->par_off : g->chi_off, *adj = up ? g->par : g->chi;
    size_t head = 0, tail = 0, seen = 0;
    g->queue[tail++] = start;
    g->mark[start] = g->epoch;
    while (head < tail) {
        uint32_t v = g->queue[head++];
        if (v != start || with_start) {
            seen++;
            if (!visit(g, v, arg))
                return seen;
        }
        for (uint32_t e = off[v]; e < off[v + 1]; e++) {
            uint32_t w = adj[e];
            if (g->mark[w] != g->epoch) {
                g->mark[w] = g->epoch;
                g->queue[tail++] = w;
            }
        }
    }
    return seen;
}

typedef struct collect {
    int64_t *out;
    size_t n, max;
} collect;

static bool
collect_id(td_graph *g, uint32_t idx, void *arg)
{
    collect *c = arg;
    c->out[c->n++] = g->ids[idx];
    return c->n < c->max;
}

size_t
td_graph_upstream(td_graph *g, int64_t ci_id, int64_t *out, size_t max)
{
    uint32_t i = idmap_get(&g->byid, ci_id);
    if (i == NONE || !max)
        return 0;
    collect c = {out, 0, max};
    walk(g, i, true, false, collect_id, &c);
    return c.n;
}

static bool
collect_services(td_graph *g, uint32_t idx, void *arg)
{
    collect *c = arg;
    for (uint32_t e = g->svc_off[idx]; e < g->svc_off[idx + 1]; e++) {
        int64_t s = g->svc_ids[e];
        size_t k = 0;
        while (k < c->n && c->out[k] != s)
            k++;
        if (k == c->n && c->n < c->max)
            c->out[c->n++] = s;
    }
    return true;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

size_t
td_graph_impacted_services(td_graph *g, int64_t ci_id, int64_t *out, size_t max)
{
    uint32_t i = idmap_get(&g->byid, ci_id);
    if (i == NONE || !max)
        return 0;
    collect c = {out, 0, max};
    walk(g, i, false, true, collect_services, &c);
    qsort(out, c.n, sizeof(*out), cmp_i64);
    return c.n;
}

bool
td_graph_describe(td_graph *g, int64_t ci_id, const int64_t **up, size_t *nup,
                  const int64_t **svc, size_t *nsvc)
{
    uint32_t i = idmap_get(&g->byid, ci_id);
    if (i == NONE || !g->memo)
        return false;
    memo *m = &g->memo[i];
    int64_t buf[TD_GRAPH_MAX_UP + TD_GRAPH_MAX_SVC + 2];
    if (!m->done) {
        size_t a = td_graph_upstream(g, ci_id, buf, TD_GRAPH_MAX_UP + 1);
        size_t b = td_graph_impacted_services(g, ci_id, buf + (a <= TD_GRAPH_MAX_UP ? a : 0),
                                              TD_GRAPH_MAX_SVC + 1);
        size_t na = a <= TD_GRAPH_MAX_UP ? a : 0, nb = b <= TD_GRAPH_MAX_SVC ? b : 0;
        if (g->memo_len + na + nb > MEMO_MAX_IDS)
            return false; /* full: the caller walks into a buffer of its own */
        if (g->memo_len + na + nb > g->memo_cap) {
            while (g->memo_len + na + nb > g->memo_cap)
                g->memo_cap = g->memo_cap ? g->memo_cap * 2 : 4096;
            g->memo_ids = td_realloc(g->memo_ids, g->memo_cap * sizeof(int64_t));
        }
        if (na + nb)
            memcpy(g->memo_ids + g->memo_len, buf, (na + nb) * sizeof(int64_t));
        m->off = (uint32_t)g->memo_len;
        m->nup = a <= TD_GRAPH_MAX_UP ? (uint16_t)a : UINT16_MAX;
        m->nsvc = b <= TD_GRAPH_MAX_SVC ? (uint16_t)b : UINT16_MAX;
        m->done = true;
        g->memo_len += na + nb;
    }
    size_t na = m->nup == UINT16_MAX ? 0 : m->nup;
    *up = g->memo_ids ? g->memo_ids + m->off : NULL;
    *nup = m->nup == UINT16_MAX ? SIZE_MAX : m->nup;
    *svc = g->memo_ids ? g->memo_ids + m->off + na : NULL;
    *nsvc = m->nsvc == UINT16_MAX ? SIZE_MAX : m->nsvc;
    return true;
}

/* ---- the daemon's cache ------------------------------------------------- */

enum { C_DOWN, C_CONNECTING, C_LISTEN, C_IDLE, C_LOADING };

static const char *const load_sql[] = {
    "COPY (SELECT id, name, aliases, addresses FROM triaged.cmdb_graph_ci ORDER BY id) TO STDOUT",
    "COPY (SELECT child_id, parent_id FROM triaged.ci_relation) TO STDOUT",
    "COPY (SELECT service_id, ci_id FROM triaged.service_ci) TO STDOUT",
};

struct td_cmdb {
    struct event_base *base;
    char *conninfo;
    PGconn *conn;
    int state;
    struct event *ev_sock, *ev_timer;
    int64_t backoff_ms;
    td_graph *graph;    /* serving */
    td_graph *loading;  /* being built */
    size_t step;        /* which load_sql */
    bool in_copy;
    bool dirty;         /* a change arrived: load (again) */
    bool ready;
    int64_t load_started_ms;
    char **labels;      /* NULL-terminated */
    td_ratelimit rl;
    td_metric *m_loads, *m_load_errors, *m_cis, *m_relations, *m_bytes, *m_load_secs,
        *m_notifies, *m_bound, *m_unbound;
};

static void cmdb_step(td_cmdb *c);

static void
set_labels(td_cmdb *c, const char *list)
{
    if (c->labels)
        for (char **p = c->labels; *p; p++)
            free(*p);
    free(c->labels);
    size_t n = 0;
    c->labels = td_calloc(1, sizeof(char *));
    if (!list)
        return;
    char *copy = td_strdup(list), *save = NULL;
    for (char *t = strtok_r(copy, " ,\t", &save); t; t = strtok_r(NULL, " ,\t", &save)) {
        c->labels = td_realloc(c->labels, (n + 2) * sizeof(char *));
        c->labels[n++] = td_strdup(t);
        c->labels[n] = NULL;
    }
    free(copy);
}

static void
on_cmdb_socket(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cmdb_step(arg);
}

static void
arm_socket(td_cmdb *c, short what)
{
    if (c->ev_sock)
        event_free(c->ev_sock);
    c->ev_sock = event_new(c->base, PQsocket(c->conn), what, on_cmdb_socket, c);
    event_add(c->ev_sock, NULL);
}

static void
arm_timer(td_cmdb *c, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(c->ev_timer, &tv);
}

static void
go_down(td_cmdb *c, const char *why)
{
    uint32_t suppressed;
    if (td_ratelimit_allow(&c->rl, 5, &suppressed))
        td_warn("cmdb: connection down; the current graph keeps serving",
                "error=\"%s\" retry_ms=%lld suppressed=%u", TD_LOG_VALUE(why),
                (long long)c->backoff_ms, suppressed);
    if (c->state == C_LOADING)
        td_metric_add(c->m_load_errors, 1);
    if (c->ev_sock) {
        event_free(c->ev_sock);
        c->ev_sock = NULL;
    }
    if (c->conn) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    td_graph_free(c->loading);
    c->loading = NULL;
    c->in_copy = false;
    c->state = C_DOWN;
    c->dirty = true; /* changes may have been missed meanwhile */
    arm_timer(c, c->backoff_ms);
    c->backoff_ms = c->backoff_ms * 2 > 5000 ? 5000 : c->backoff_ms * 2;
}

/* Unescape one field of COPY's text format in place; NULL for \N. */
static char *
copy_field(char *s)
{
    if (strcmp(s, "\\N") == 0)
        return NULL;
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r != '\\' || !r[1]) {
            *w++ = *r;
            continue;
        }
        r++;
        switch (*r) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'v': *w++ = '\v'; break;
        default:
            if (*r >= '0' && *r <= '7') {
                int v = 0, k = 0;
                while (k < 3 && r[k] >= '0' && r[k] <= '7')
                    v = v * 8 + (r[k++] - '0');
                *w++ = (char)v;
                r += k - 1;
            } else {
                *w++ = *r;
            }
        }
    }
    *w = '\0';
    return s;
}

static void
load_row(td_cmdb *c, char *line, int len)
{
    char *f[4] = {0};
    int nf = 0;
    if (len > 0 && line[len - 1] == '\n')
        line[len - 1] = '\0';
    for (char *p = line; nf < 4;) {
        f[nf++] = p;
        char *tab = strchr(p, '\t');
        if (!tab)
            break;
        *tab = '\0';
        p = tab + 1;
    }
    for (int i = 0; i < nf; i++)
        f[i] = copy_field(f[i]);
    if (c->step == 0 && nf == 4 && f[0] && f[1])
        td_graph_add_ci(c->loading, strtoll(f[0], NULL, 10), f[1], f[2], f[3]);
    else if (c->step == 1 && nf == 2 && f[0] && f[1])
        td_graph_add_relation(c->loading, strtoll(f[0], NULL, 10), strtoll(f[1], NULL, 10));
    else if (c->step == 2 && nf == 2 && f[0] && f[1])
        td_graph_add_service_ci(c->loading, strtoll(f[0], NULL, 10), strtoll(f[1], NULL, 10));
}

static void
load_done(td_cmdb *c)
{
    td_graph_seal(c->loading);
    td_graph_free(c->graph);
    c->graph = c->loading;
    c->loading = NULL;
    double secs = (double)(td_mono_ms() - c->load_started_ms) / 1e3;
    td_metric_add(c->m_loads, 1);
    td_metric_set(c->m_cis, (double)td_graph_ci_count(c->graph));
    td_metric_set(c->m_relations, (double)td_graph_relation_count(c->graph));
    td_metric_set(c->m_bytes, (double)td_graph_memory(c->graph));
    td_metric_observe(c->m_load_secs, secs);
    td_info("cmdb: graph loaded",
           "cis=%zu relations=%zu bytes=%zu seconds=%.3f", td_graph_ci_count(c->graph),
           td_graph_relation_count(c->graph), td_graph_memory(c->graph), secs);
    c->ready = true;
    c->state = C_IDLE;
}

static bool
send_step(td_cmdb *c)
{
    if (!PQsendQuery(c->conn, load_sql[c->step])) {
        go_down(c, PQerrorMessage(c->conn));
        return false;
    }
    c->in_copy = false;
    return true;
}

static void
start_load(td_cmdb *c)
{
    c->dirty = false;
    c->state = C_LOADING;
    c->step = 0;
    c->loading = td_graph_new();
    c->load_started_ms = td_mono_ms();
    send_step(c);
}

static void
on_cmdb_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    td_cmdb *c = arg;
    if (c->state == C_DOWN) {
        c->conn = PQconnectStart(c->conninfo);
        if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
            go_down(c, c->conn ? PQerrorMessage(c->conn) : "out of memory");
            return;
        }
        c->state = C_CONNECTING;
    }
    cmdb_step(c);
}

/* Drain notifications; a CMDB change schedules a load after a short
 * debounce (several statements of one import commit as one change). */
static void
take_notifies(td_cmdb *c)
{
    PGnotify *n;
    bool any = false;
    while ((n = PQnotifies(c->conn))) {
        /* the payload names the table (001's cmdb_notify); the graph holds
         * ci, ci_relation and service_ci only */
        const char *t = n->extra ? n->extra : "";
        if (strcmp(t, "ci") == 0 || strcmp(t, "ci_relation") == 0 ||
            strcmp(t, "service_ci") == 0 || !*t)
            any = true;
        PQfreemem(n);
    }
    if (any) {
        td_metric_add(c->m_notifies, 1);
        c->dirty = true;
        if (c->state == C_IDLE && !evtimer_pending(c->ev_timer, NULL))
            arm_timer(c, 50);
    }
}

static void
cmdb_step(td_cmdb *c)
{
    if (c->state == C_CONNECTING) {
        PostgresPollingStatusType st = PQconnectPoll(c->conn);
        if (st == PGRES_POLLING_FAILED) {
            go_down(c, PQerrorMessage(c->conn));
            return;
        }
        if (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) {
            arm_socket(c, st == PGRES_POLLING_READING ? EV_READ : EV_WRITE);
            return;
        }
        PQsetnonblocking(c->conn, 1);
        c->backoff_ms = 250;
        c->state = C_LISTEN;
        if (!PQsendQuery(c->conn, "LISTEN triaged_cmdb")) {
            go_down(c, PQerrorMessage(c->conn));
            return;
        }
        arm_socket(c, EV_READ | EV_PERSIST);
    }
    if (c->state == C_DOWN)
        return;
    if (PQflush(c->conn) < 0 || !PQconsumeInput(c->conn)) {
        go_down(c, PQerrorMessage(c->conn));
        return;
    }
    for (;;) {
        if (c->state == C_LOADING && c->in_copy) {
            char *buf = NULL;
            int len;
            while ((len = PQgetCopyData(c->conn, &buf, 1)) > 0) {
                load_row(c, buf, len);
                PQfreemem(buf);
            }
            if (len == 0)
                break; /* more to come */
            c->in_copy = false;
            if (len == -2) {
                go_down(c, PQerrorMessage(c->conn));
                return;
            }
        }
        if (c->state != C_LISTEN && c->state != C_LOADING)
            break;
        if (PQisBusy(c->conn))
            break;
        PGresult *r = PQgetResult(c->conn);
        if (r && PQresultStatus(r) == PGRES_COPY_OUT) {
            PQclear(r);
            c->in_copy = true;
            continue;
        }
        if (r) {
            ExecStatusType st = PQresultStatus(r);
            if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                char why[512];
                snprintf(why, sizeof(why), "%s", PQresultErrorMessage(r));
                PQclear(r);
                /* drain the rest of this command, then start over later */
                while ((r = PQgetResult(c->conn)))
                    PQclear(r);
                td_metric_add(c->m_load_errors, 1);
                go_down(c, why);
                return;
            }
            PQclear(r);
            continue;
        }
        /* NULL: the command is complete */
        if (c->state == C_LISTEN) {
            c->state = C_IDLE;
            start_load(c);
            continue;
        }
        if (++c->step < TD_ARRAY_LEN(load_sql)) {
            if (!send_step(c))
                return;
            continue;
        }
        load_done(c);
        break;
    }
    if (c->state != C_DOWN)
        take_notifies(c);
    if (c->state == C_IDLE && c->dirty && !evtimer_pending(c->ev_timer, NULL))
        arm_timer(c, 50);
}

static void
on_idle_timer(td_cmdb *c)
{
    if (c->state == C_IDLE && c->dirty)
        start_load(c);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    td_cmdb *c = arg;
    if (c->state == C_IDLE) {
        on_idle_timer(c);
        return;
    }
    on_cmdb_timer(fd, what, arg);
}

td_cmdb *
td_cmdb_new(struct event_base *base, const char *conninfo, const char *bind_labels)
{
    td_cmdb *c = td_calloc(1, sizeof(*c));
    c->base = base;
    c->conninfo = td_strdup(conninfo);
    c->backoff_ms = 250;
    c->graph = td_graph_new();
    td_graph_seal(c->graph);
    set_labels(c, bind_labels);
    c->ev_timer = evtimer_new(base, on_timer, c);
    c->m_loads = td_counter("cmdb_loads", "Complete loads of the CMDB graph", NULL);
    c->m_load_errors = td_counter("cmdb_load_errors",
                                  "CMDB loads that failed (connection or query)", NULL);
    c->m_notifies = td_counter("cmdb_notifications", "CMDB change notifications received", NULL);
    c->m_cis = td_gauge("cmdb_cis", "CIs in the CMDB graph", NULL);
    c->m_relations = td_gauge("cmdb_relations", "Relations in the CMDB graph", NULL);
    c->m_bytes = td_gauge("cmdb_graph_bytes", "Memory held by the CMDB graph", NULL);
    c->m_load_secs = td_histogram("cmdb_load_seconds", "Time to load the CMDB graph", NULL);
    c->m_bound = td_counter("cmdb_bindings", "Alert segments bound to a CI, or not",
                            "result=\"bound\"");
    c->m_unbound = td_counter("cmdb_bindings", "Alert segments bound to a CI, or not",
                              "result=\"unbound\"");
    c->state = C_DOWN;
    arm_timer(c, 0);
    return c;
}

void
td_cmdb_free(td_cmdb *c)
{
    if (!c)
        return;
    if (c->ev_sock)
        event_free(c->ev_sock);
    event_free(c->ev_timer);
    if (c->conn)
        PQfinish(c->conn);
    td_graph_free(c->graph);
    td_graph_free(c->loading);
    set_labels(c, NULL);
    free(c->labels);
    free(c->conninfo);
    free(c);
}

bool
td_cmdb_ready(const td_cmdb *c)
{
    return c->ready;
}

int64_t
td_cmdb_bind(const td_cmdb *c, const td_alert *a)
{
    int64_t id = td_graph_bind(c->graph, a, (const char *const *)c->labels);
    td_metric_add(id ? c->m_bound : c->m_unbound, 1);
    return id;
}

void
td_cmdb_refresh(td_cmdb *c, const char *bind_labels)
{
    if (bind_labels)
        set_labels(c, bind_labels);
    c->dirty = true;
    if (c->state == C_IDLE && !evtimer_pending(c->ev_timer, NULL))
        arm_timer(c, 0);
}

/* A list of CI ids as a JSON string holding a PostgreSQL array literal,
 * "{3,1,7}": jsonb_in copies a string where it reads each number of a JSON
 * array as numeric, and array_in reads the literal as bigint directly (about
 * five times cheaper for SQL than a JSON array: sql/014). NULL when out of
 * memory in jansson (the list is then left out: SQL walks the graph). */
static json_t *
id_array(const int64_t *ids, size_t n)
{
    char *buf = td_malloc(2 + n * 21 + 1); /* (at most 20 characters and a comma each) */
    size_t len = 0;
    buf[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, 22, i ? ",%lld" : "%lld", (long long)ids[i]);
    buf[len++] = '}';
    buf[len] = '\0';
    json_t *s = json_stringn_nocheck(buf, len);
    free(buf);
    return s;
}

void
td_cmdb_describe(td_cmdb *c, int64_t ci_id, json_t *seg)
{
    const int64_t *up, *svc;
    size_t nup, nsvc;
    if (td_graph_describe(c->graph, ci_id, &up, &nup, &svc, &nsvc)) {
        if (nup != SIZE_MAX)
            json_object_set_new(seg, "up", id_array(up, nup));
        if (nsvc != SIZE_MAX)
            json_object_set_new(seg, "svc", id_array(svc, nsvc));
        return;
    }
    /* not kept (memo full): walk again into our own buffer */
    int64_t buf[TD_GRAPH_MAX_SVC + 1];
    size_t n = td_graph_upstream(c->graph, ci_id, buf, TD_GRAPH_MAX_UP + 1);
    if (n <= TD_GRAPH_MAX_UP)
        json_object_set_new(seg, "up", id_array(buf, n));
    n = td_graph_impacted_services(c->graph, ci_id, buf, TD_GRAPH_MAX_SVC + 1);
    if (n <= TD_GRAPH_MAX_SVC)
        json_object_set_new(seg, "svc", id_array(buf, n));
}

td_graph *
td_cmdb_graph(const td_cmdb *c)
{
    return c->graph;
}

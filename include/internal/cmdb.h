/* cmdb.h — the CMDB graph in memory, and binding alerts to CIs (DESIGN §4).
 *
 * Two layers:
 *   td_graph  pure data, no I/O (unit-tested, benchmarked): CIs by id with
 *             hash maps name/alias -> CI and IP address -> CI, parent/child
 *             adjacency (child depends on parent), and CI -> services.
 *   td_cmdb   the daemon's cache: a td_graph loaded from PostgreSQL on its
 *             own non-blocking connection (COPY), replaced by a fresh load
 *             whenever a NOTIFY on channel triaged_cmdb says the CMDB
 *             changed (001's statement triggers), on reconnect, and on
 *             td_cmdb_refresh(). The old graph serves until the new one is
 *             complete, so binding never waits and never sees half a load.
 *
 * Binding order (first hit wins): the alert's explicit `ci`; the resource
 * as a CI name or alias; the resource as an IP address of a CI; then each
 * configured bind label's value, as a name, alias or address. A key of the
 * form HOST:PORT (Prometheus' instance) that matches nothing is tried as
 * HOST. An alert nothing matches is unbound (0). */
#ifndef TD_CMDB_H
#define TD_CMDB_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal/alert.h"

typedef struct td_graph td_graph;

/* An empty graph; free with td_graph_free(). */
td_graph *td_graph_new(void);
void td_graph_free(td_graph *g);
/* Add a CI. aliases and addresses are lists separated by 0x1F (may be NULL
 * or empty). Names win over aliases; among aliases (and addresses) the first
 * CI added wins. Ids must be > 0 and unique. Strings are copied. */
void td_graph_add_ci(td_graph *g, int64_t id, const char *name, const char *aliases,
                     const char *addresses);
/* child depends on parent; unknown ids are ignored. */
void td_graph_add_relation(td_graph *g, int64_t child_id, int64_t parent_id);
void td_graph_add_service_ci(td_graph *g, int64_t service_id, int64_t ci_id);
/* Build the adjacency after the last add; lookups work before it. */
void td_graph_seal(td_graph *g);

size_t td_graph_ci_count(const td_graph *g);
size_t td_graph_relation_count(const td_graph *g);
/* Bytes held by the graph (its own allocations). */
size_t td_graph_memory(const td_graph *g);
/* A CI by name, alias or address (with the HOST:PORT rule); 0 if none. */
int64_t td_graph_lookup(const td_graph *g, const char *key);
/* Bind an alert (see the order above); bind_labels NULL-terminated, may be
 * NULL. Returns the CI id or 0. */
int64_t td_graph_bind(const td_graph *g, const td_alert *a, const char *const *bind_labels);
/* The CIs `ci_id` depends on, transitively, nearest first (breadth first,
 * cycle-safe), at most max of them into out. Returns how many. Needs
 * td_graph_seal(). Not reentrant (uses the graph's scratch marks). */
size_t td_graph_upstream(td_graph *g, int64_t ci_id, int64_t *out, size_t max);
/* The services impacted when ci_id fails: those with a CI that is ci_id or
 * depends on it, transitively; at most max, sorted by id. */
size_t td_graph_impacted_services(td_graph *g, int64_t ci_id, int64_t *out, size_t max);

/* Both walks for ci_id, remembered per CI for the graph's lifetime (up to
 * 8M ids in all), so a CI alerting again costs a lookup: *up / *nup its
 * upstream CIs, *svc / *nsvc its impacted services; a count is SIZE_MAX when
 * the list is longer than TD_GRAPH_MAX_UP / TD_GRAPH_MAX_SVC. The lists are
 * borrowed, valid until the next call. Returns false for an unknown CI or
 * when the memo is full (then nothing is set). Needs td_graph_seal(). */
#define TD_GRAPH_MAX_UP 256
#define TD_GRAPH_MAX_SVC 1024
bool td_graph_describe(td_graph *g, int64_t ci_id, const int64_t **up, size_t *nup,
                       const int64_t **svc, size_t *nsvc);

typedef struct td_cmdb td_cmdb;

/* Starts connecting and loading; bind_labels is a space/comma separated list
 * (copied; may be NULL or ""). Free with td_cmdb_free(). */
td_cmdb *td_cmdb_new(struct event_base *base, const char *conninfo, const char *bind_labels);
void td_cmdb_free(td_cmdb *c);
/* True once a first load completed (binding before that finds nothing). */
bool td_cmdb_ready(const td_cmdb *c);
/* The CI of an alert, or 0 (unbound). A memory lookup. */
int64_t td_cmdb_bind(const td_cmdb *c, const td_alert *a);
/* What the graph knows about ci_id, added to a batch segment for SQL's
 * correlation (sql/003_cmdb.sql, read by sql/014's _batch_known): "up", its
 * upstream CIs nearest first, and "svc", the services it impacts
 * (td_graph_describe, remembered per CI), each a JSON string holding a
 * PostgreSQL array literal ("{3,1,7}"). A list longer than the bounds is
 * left out: SQL then walks ci_relation itself. seg is a jansson object. */
struct json_t;
void td_cmdb_describe(td_cmdb *c, int64_t ci_id, struct json_t *seg);
/* Load again soon (SIGHUP), and take new bind labels (NULL: keep). */
void td_cmdb_refresh(td_cmdb *c, const char *bind_labels);
/* The current graph (borrowed; valid until the next load completes). */
td_graph *td_cmdb_graph(const td_cmdb *c);

#endif

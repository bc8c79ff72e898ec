/* store.h — one non-blocking PostgreSQL connection on the event loop.
 *
 * Statements are prepared once per connection and run one at a time from a
 * FIFO of operations; each operation's callback gets the result (borrowed for
 * the call) or, when the connection failed, NULL and a reason. The caller
 * decides whether to retry: an operation whose connection broke may or may
 * not have committed (see pipeline.c on how Kafka offsets settle that).
 * A lost connection is re-established with backoff; operations queued
 * meanwhile wait. Nothing here blocks. */
#ifndef TD_STORE_H
#define TD_STORE_H

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct td_store td_store;

typedef struct td_store_stmt {
    const char *name;
    const char *sql;
    int nparams;
} td_store_stmt;

/* res is NULL when the connection failed before a result; err says why. */
typedef void (*td_store_cb)(void *arg, const PGresult *res, const char *err);

/* stmts is borrowed and must outlive the store. Starts connecting. */
td_store *td_store_new(struct event_base *base, const char *conninfo,
                       const td_store_stmt *stmts, size_t n_stmts,
                       const char *name);
/* Queue statement `stmt` with text params (copied). The callback is called
 * exactly once, also when the store is freed first (with NULL, "shutdown"). */
void td_store_exec(td_store *s, size_t stmt, const char *const *params,
                   td_store_cb cb, void *arg);
/* The same with parameters already encoded, for binary ones: values[i] is
 * taken (freed by the store with free(); NULL: SQL NULL), lengths[i] its
 * size in bytes (binary) and formats[i] 0 for text, 1 for binary (both
 * copied); one of each per parameter of the statement. */
void td_store_exec_owned(td_store *s, size_t stmt, char **values, const int *lengths,
                         const int *formats, td_store_cb cb, void *arg);
bool td_store_connected(const td_store *s);
size_t td_store_queued(const td_store *s);
void td_store_free(td_store *s);

#endif

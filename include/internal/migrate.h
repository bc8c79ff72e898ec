/* migrate.h — versioned schema migrations, embedded from sql/ at build time.
 *
 * td_migrate() applies the pending ones in order, each in its own transaction
 * together with its row in triaged.schema_migration, under an advisory lock
 * so two instances starting at once do not race. It is a no-op when all are
 * applied, and refuses a database whose schema is newer than this build. It
 * blocks: call it before the event loop runs (daemon start, triagectl). */
#ifndef TD_MIGRATE_H
#define TD_MIGRATE_H

#include <libpq-fe.h>
#include <stddef.h>

#include "internal/errors.h"

typedef struct td_migration {
    int version;
    const char *name;
    const char *sql;
} td_migration;

/* Terminated by version 0. Generated into build/migrations.c. */
extern const td_migration td_migrations[];

typedef struct td_migrate_result {
    int from_version; /* schema version found (0: none) */
    int to_version;   /* schema version now */
    int applied;      /* migrations applied by this call */
} td_migrate_result;

/* Returns TD_OK, or TD_ERR with err set. With `only_check`, applies nothing
 * and reports how many are pending in res->applied. */
int td_migrate(PGconn *conn, const td_migration *list, int only_check,
               td_migrate_result *res, char *err, size_t errlen);

/* Highest version in list. */
int td_migrate_latest(const td_migration *list);

#endif

/* migrate.c — apply the embedded sql/ migrations (see migrate.h).
 *
 * Each migration runs as one simple-protocol query (a file may hold many
 * statements) between BEGIN and COMMIT, with its schema_migration row in the
 * same transaction: a failed migration leaves nothing behind. */
#include "internal/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/errors.h"

/* The migration lock: pg_advisory_lock on an arbitrary constant, the bytes
 * of "triaged1" (0x7472696167656431). Literal SQL text, never formatted:
 * tests/security/sql_params.py checks that every libpq call takes constant
 * SQL. */
#define MIGRATE_LOCK_SQL "SELECT pg_advisory_lock(x'7472696167656431'::bigint)"
#define MIGRATE_UNLOCK_SQL "SELECT pg_advisory_unlock(x'7472696167656431'::bigint)"

static int
exec_ok(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        err[strcspn(err, "\n")] = '\0';
        PQclear(r);
        return TD_ERR;
    }
    PQclear(r);
    return TD_OK;
}

int
td_migrate_latest(const td_migration *list)
{
    int v = 0;
    for (const td_migration *m = list; m->version; m++)
        if (m->version > v)
            v = m->version;
    return v;
}

static int
applied_version(PGconn *conn, int *version, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn,
        "SELECT coalesce(max(version), 0) FROM triaged.schema_migration");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading schema_migration: %s",
                 PQresultErrorMessage(r));
        err[strcspn(err, "\n")] = '\0';
        PQclear(r);
        return TD_ERR;
    }
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return TD_OK;
}

static int
is_applied(PGconn *conn, int version, int *yes, char *err, size_t errlen)
{
    char v[16];
    const char *params[1] = {v};
    snprintf(v, sizeof(v), "%d", version);
    PGresult *r = PQexecParams(conn,
        "SELECT 1 FROM triaged.schema_migration WHERE version = $1",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        err[strcspn(err, "\n")] = '\0';
        PQclear(r);
        return TD_ERR;
    }
    *yes = PQntuples(r) > 0;
    PQclear(r);
    return TD_OK;
}

static int
apply_one(PGconn *conn, const td_migration *m, char *err, size_t errlen)
{
    char e[512], v[16];
    const char *params[2] = {v, m->name};

    if (exec_ok(conn, "BEGIN", e, sizeof(e)) != TD_OK)
        goto fail;
    if (exec_ok(conn, m->sql, e, sizeof(e)) != TD_OK)
        goto fail;
    snprintf(v, sizeof(v), "%d", m->version);
    PGresult *r = PQexecParams(conn,
        "INSERT INTO triaged.schema_migration (version, name) VALUES ($1, $2)",
        2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(e, sizeof(e), "%s", PQresultErrorMessage(r));
        e[strcspn(e, "\n")] = '\0';
        PQclear(r);
        goto fail;
    }
    PQclear(r);
    if (exec_ok(conn, "COMMIT", e, sizeof(e)) != TD_OK)
        goto fail;
    return TD_OK;

fail:
    PQclear(PQexec(conn, "ROLLBACK"));
    snprintf(err, errlen, "migration %03d_%s failed: %s", m->version, m->name, e);
    return TD_ERR;
}

int
td_migrate(PGconn *conn, const td_migration *list, int only_check,
           td_migrate_result *res, char *err, size_t errlen)
{
    char e[512];
    int latest = td_migrate_latest(list), rc = TD_ERR, locked = 0;

    memset(res, 0, sizeof(*res));
    if (exec_ok(conn,
                "SET client_min_messages = warning;"
                "CREATE SCHEMA IF NOT EXISTS triaged;"
                "CREATE TABLE IF NOT EXISTS triaged.schema_migration ("
                " version int PRIMARY KEY,"
                " name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                e, sizeof(e)) != TD_OK) {
        snprintf(err, errlen, "preparing schema_migration: %s", e);
        return TD_ERR;
    }
    if (exec_ok(conn, MIGRATE_LOCK_SQL, e, sizeof(e)) != TD_OK) {
        snprintf(err, errlen, "taking the migration lock: %s", e);
        return TD_ERR;
    }
    locked = 1;
    if (applied_version(conn, &res->from_version, err, errlen) != TD_OK)
        goto out;
    if (res->from_version > latest) {
        snprintf(err, errlen,
                 "database schema is at version %d, newer than this triaged "
                 "knows (%d): upgrade triaged",
                 res->from_version, latest);
        goto out;
    }
    for (const td_migration *m = list; m->version; m++) {
        int yes;
        if (is_applied(conn, m->version, &yes, err, errlen) != TD_OK)
            goto out;
        if (yes)
            continue;
        if (!only_check && apply_one(conn, m, err, errlen) != TD_OK)
            goto out;
        res->applied++;
    }
    if (applied_version(conn, &res->to_version, err, errlen) != TD_OK)
        goto out;
    rc = TD_OK;
out:
    if (locked)
        PQclear(PQexec(conn, MIGRATE_UNLOCK_SQL));
    return rc;
}

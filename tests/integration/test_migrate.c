/* Migrations against the stack's real PostgreSQL: the first run applies all,
 * the second is a no-op, and a database whose schema is newer is refused.
 * Each test works in a database of its own, created from TD_TEST_PG_ADMIN_CONNINFO. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal/migrate.h"

static char dbname[64];
static PGconn *conn;

static PGconn *
admin(void)
{
    const char *ci = getenv("TD_TEST_PG_ADMIN_CONNINFO");
    cr_assert_not_null(ci, "TD_TEST_PG_ADMIN_CONNINFO unset: run under tests/stack/stack.sh");
    PGconn *c = PQconnectdb(ci);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

static void
exec_admin(const char *fmt, const char *arg)
{
    char sql[256];
    snprintf(sql, sizeof(sql), fmt, arg);
    PGconn *c = admin();
    PGresult *r = PQexec(c, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql,
                 PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
}

static void
setup(void)
{
    snprintf(dbname, sizeof(dbname), "td_migrate_%d", (int)getpid());
    exec_admin("DROP DATABASE IF EXISTS %s", dbname);
    exec_admin("CREATE DATABASE %s", dbname);
    char ci[512];
    snprintf(ci, sizeof(ci), "%s dbname=%s", getenv("TD_TEST_PG_ADMIN_CONNINFO"), dbname);
    conn = PQconnectdb(ci);
    cr_assert_eq(PQstatus(conn), CONNECTION_OK, "%s", PQerrorMessage(conn));
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
}

static void
teardown(void)
{
    PQfinish(conn);
    exec_admin("DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
}

TestSuite(migrate, .init = setup, .fini = teardown, .timeout = 60);

static long
count(const char *sql)
{
    PGresult *r = PQexec(conn, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    long v = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

Test(migrate, first_run_applies_every_migration_and_creates_the_contract_tables)
{
    char err[512] = "";
    td_migrate_result res;
    int latest = td_migrate_latest(td_migrations);
    int n = 0;
    for (const td_migration *m = td_migrations; m->version; m++)
        n++;

    cr_assert_eq(td_migrate(conn, td_migrations, 0, &res, err, sizeof(err)), TD_OK, "%s", err);
    cr_assert_eq(res.from_version, 0);
    cr_assert_eq(res.to_version, latest);
    cr_assert_eq(res.applied, n);
    cr_assert_eq(count("SELECT count(*) FROM triaged.schema_migration"), n);
    /* Every table and view DESIGN §6 names. */
    cr_assert_eq(count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'triaged'"
                       " AND table_name IN ('ci','ci_relation','service','service_ci','sla',"
                       "'maintenance','alert','incident','incident_alert','incident_event',"
                       "'capacity_sample','service_availability_monthly','capacity_trend')"),
                 13);
}

Test(migrate, second_run_is_a_no_op)
{
    char err[512] = "";
    td_migrate_result res;
    cr_assert_eq(td_migrate(conn, td_migrations, 0, &res, err, sizeof(err)), TD_OK, "%s", err);
    long at = count("SELECT extract(epoch FROM max(applied_at))::bigint FROM triaged.schema_migration");
    cr_assert_eq(td_migrate(conn, td_migrations, 0, &res, err, sizeof(err)), TD_OK, "%s", err);
    cr_assert_eq(res.applied, 0);
    cr_assert_eq(res.from_version, res.to_version);
    cr_assert_eq(count("SELECT extract(epoch FROM max(applied_at))::bigint FROM triaged.schema_migration"), at);
}

Test(migrate, check_mode_counts_pending_without_applying)
{
    char err[512] = "";
    td_migrate_result res;
    cr_assert_eq(td_migrate(conn, td_migrations, 1, &res, err, sizeof(err)), TD_OK, "%s", err);
    cr_assert_gt(res.applied, 0);
    cr_assert_eq(count("SELECT count(*) FROM triaged.schema_migration"), 0);
    cr_assert_eq(count("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'triaged'"
                       " AND table_name = 'alert'"), 0);
}

Test(migrate, a_newer_schema_is_refused)
{
    char err[512] = "", want[256];
    td_migrate_result res;
    int latest = td_migrate_latest(td_migrations);
    cr_assert_eq(td_migrate(conn, td_migrations, 0, &res, err, sizeof(err)), TD_OK, "%s", err);
    char v[16];
    snprintf(v, sizeof(v), "%d", latest + 1);
    const char *p[1] = {v};
    PGresult *r = PQexecParams(conn, "INSERT INTO triaged.schema_migration (version, name)"
                                     " VALUES ($1, 'from_the_future')", 1, NULL, p, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    cr_assert_eq(td_migrate(conn, td_migrations, 0, &res, err, sizeof(err)), TD_ERR);
    snprintf(want, sizeof(want), "database schema is at version %d, newer than this triaged "
             "knows (%d): upgrade triaged", latest + 1, latest);
    cr_assert_str_eq(err, want);
}

Test(migrate, a_failing_migration_leaves_nothing_behind)
{
    static const td_migration bad[] = {
        {1, "good", "CREATE TABLE triaged.t_good (x int)"},
        {2, "broken", "CREATE TABLE triaged.t_half (x int); SELECT no_such_function()"},
        {0, NULL, NULL},
    };
    char err[512] = "";
    td_migrate_result res;
    cr_assert_eq(td_migrate(conn, bad, 0, &res, err, sizeof(err)), TD_ERR);
    cr_assert(strstr(err, "migration 002_broken failed: ERROR:  function no_such_function() does not exist"),
              "got: %s", err);
    cr_assert_eq(count("SELECT count(*) FROM triaged.schema_migration"), 1);
    cr_assert_eq(count("SELECT count(*) FROM information_schema.tables WHERE table_name = 't_half'"), 0);
    cr_assert_eq(count("SELECT count(*) FROM information_schema.tables WHERE table_name = 't_good'"), 1);
}

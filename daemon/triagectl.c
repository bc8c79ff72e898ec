/* triagectl.c — administration and reports, straight against PostgreSQL.
 *
 * Reads the same config file as the daemon (-c FILE) for [postgres] conninfo.
 * Exit codes: 0 ok, 1 usage or bad input, 2 backend down or failing. Each
 * command is one function; blocking libpq is fine here: there is no loop. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "internal/config.h"
#include "internal/migrate.h"

enum { EXIT_OK = 0, EXIT_USAGE = 1, EXIT_BACKEND = 2 };

static void
usage(FILE *f)
{
    fprintf(f,
        "Usage: triagectl -c FILE COMMAND [args]\n"
        "\n"
        "Commands:\n"
        "  migrate [--check]   apply pending schema migrations (--check: only\n"
        "                      report; exit 1 when some are pending)\n"
        "  version             schema version of the database and of this build\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE   the triaged configuration file (for [postgres])\n"
        "  -h, --help          this text\n"
        "\n"
        "Exit codes: 0 ok, 1 usage or bad input, 2 backend down or failing.\n");
}

static PGconn *
connect_db(const td_config *cfg)
{
    PGconn *conn = PQconnectdb(cfg->pg_conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "triagectl: cannot connect to PostgreSQL: %s",
                PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    return conn;
}

static int
cmd_migrate(const td_config *cfg, int argc, char **argv)
{
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else {
            fprintf(stderr, "triagectl migrate: unknown argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    PGconn *conn = connect_db(cfg);
    if (!conn)
        return EXIT_BACKEND;
    char err[512];
    td_migrate_result res;
    int rc = td_migrate(conn, td_migrations, check, &res, err, sizeof(err));
    PQfinish(conn);
    if (rc != TD_OK) {
        fprintf(stderr, "triagectl migrate: %s\n", err);
        return strstr(err, "newer than") ? EXIT_USAGE : EXIT_BACKEND;
    }
    if (check) {
        printf("schema version %d, %d migration(s) pending, latest %d\n",
               res.from_version, res.applied, td_migrate_latest(td_migrations));
        return res.applied ? EXIT_USAGE : EXIT_OK;
    }
    if (res.applied)
        printf("applied %d migration(s): schema version %d -> %d\n", res.applied,
               res.from_version, res.to_version);
    else
        printf("schema up to date at version %d\n", res.to_version);
    return EXIT_OK;
}

static int
cmd_version(const td_config *cfg, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    PGconn *conn = connect_db(cfg);
    if (!conn)
        return EXIT_BACKEND;
    PGresult *r = PQexec(conn, "SELECT coalesce(max(version), 0) FROM "
                               "triaged.schema_migration");
    const char *db = PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0)
                                                          : "0 (no schema)";
    printf("triagectl %s, database schema %s, this build knows %d\n", TD_VERSION,
           db, td_migrate_latest(td_migrations));
    PQclear(r);
    PQfinish(conn);
    return EXIT_OK;
}

static const struct {
    const char *name;
    int (*fn)(const td_config *cfg, int argc, char **argv);
} commands[] = {
    {"migrate", cmd_migrate},
    {"version", cmd_version},
};

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int c;

    /* '+': stop at the command, its own options follow it. */
    while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!path)
        path = getenv("TRIAGED_CONFIG");
    if (!path) {
        fprintf(stderr, "triagectl: no config: use -c FILE or TRIAGED_CONFIG\n");
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[optind], commands[i].name) != 0)
            continue;
        td_config *cfg;
        td_errors errs = {0};
        if (td_config_load(path, &cfg, &errs) != TD_OK) {
            for (size_t j = 0; j < errs.n; j++)
                fprintf(stderr, "%s\n", errs.msgs[j]);
            td_errors_clear(&errs);
            return EXIT_USAGE;
        }
        int rc = commands[i].fn(cfg, argc - optind, argv + optind);
        td_config_free(cfg);
        return rc;
    }
    fprintf(stderr, "triagectl: unknown command '%s'\n", argv[optind]);
    usage(stderr);
    return EXIT_USAGE;
}

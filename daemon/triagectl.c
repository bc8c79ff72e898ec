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
#include "internal/triagectl.h"

enum { EXIT_OK = TD_EXIT_OK, EXIT_USAGE = TD_EXIT_USAGE, EXIT_BACKEND = TD_EXIT_BACKEND };

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
        "  incidents [--status S] [--limit N]\n"
        "                      list incidents, newest first (S: new, acknowledged,\n"
        "                      resolved, closed, or open = new + acknowledged)\n"
        "  alerts [--status S] [--limit N]\n"
        "                      list alerts, newest first (S: firing, resolved)\n"
        "  audit verify        check every incident timeline's hash chain; exit 1\n"
        "                      and name the first broken link when one was edited\n"
        "                      or deleted\n"
        "  capacity trend --ci NAME --metric M [--window 30d]\n"
        "                      the least-squares trend of one series: slope per\n"
        "                      day, r2, growth, forecast exhaustion with its band\n"
        "  capacity risks [--horizon 90d] [--limit N]\n"
        "                      what runs out within the horizon, soonest first,\n"
        "                      with the services of each CI\n"
        "  cmdb import FILE [--csv] [--dry-run]\n"
        "                      upsert CIs, relations and services from a JSON\n"
        "                      document (or a CSV of CIs); all or nothing: exit 1\n"
        "                      and change nothing when anything is rejected\n"
        "  cmdb export [-o FILE]\n"
        "                      the CMDB as the same JSON document\n"
        "  maintenance add (--ci NAME | --service NAME)\n"
        "        (--from TIME --to TIME | --weekly DAYS --at HH:MM --duration DUR\n"
        "        [--tz ZONE]) [--change REF] [--reason TEXT]\n"
        "  maintenance list | maintenance remove ID\n"
        "  sla set SERVICE [--target P] [--period month|quarter] [--hours SPEC]\n"
        "        [--degraded-counts-as-down yes|no] [--down-max-urgency 1..3]\n"
        "  sla remove SERVICE | sla list\n"
        "                      SLA definitions (SPEC: 24x7 or e.g.\n"
        "                      'Mon-Fri 08:00-18:00 Europe/Berlin')\n"
        "  report --period YYYY-MM|YYYY-Qn [--service NAME] --format html|csv|json -o FILE\n"
        "                      the service level review: availability against\n"
        "                      target, error budget, incidents, MTTA/MTTR (-o -: stdout)"
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

/* Print a result as an aligned table with a header line. */
static void
print_table(const PGresult *r)
{
    int nf = PQnfields(r), nt = PQntuples(r);
    int *w = calloc((size_t)nf, sizeof(int));
    if (!w)
        return;
    for (int f = 0; f < nf; f++) {
        w[f] = (int)strlen(PQfname(r, f));
        for (int t = 0; t < nt; t++)
            if (PQgetlength(r, t, f) > w[f])
                w[f] = PQgetlength(r, t, f);
        if (w[f] > 60)
            w[f] = 60;
    }
    for (int f = 0; f < nf; f++)
        printf("%-*s%s", f == nf - 1 ? 0 : w[f], PQfname(r, f), f == nf - 1 ? "\n" : "  ");
    for (int t = 0; t < nt; t++)
        for (int f = 0; f < nf; f++)
            printf("%-*.*s%s", f == nf - 1 ? 0 : w[f], 60, PQgetvalue(r, t, f),
                   f == nf - 1 ? "\n" : "  ");
    free(w);
}

/* --status S --limit N, shared by the list commands. */
static int
list_args(int argc, char **argv, const char **status, const char **limit)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--status") == 0 && i + 1 < argc)
            *status = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc)
            *limit = argv[++i];
        else {
            fprintf(stderr, "triagectl %s: unknown argument '%s'\n", argv[0], argv[i]);
            return EXIT_USAGE;
        }
    }
    char *end;
    long n = strtol(*limit, &end, 10);
    if (*end || n < 1 || n > 1000000) {
        fprintf(stderr, "triagectl %s: --limit must be 1..1000000\n", argv[0]);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static int
run_list(const td_config *cfg, const char *sql, const char *status, const char *limit)
{
    PGconn *conn = connect_db(cfg);
    if (!conn)
        return EXIT_BACKEND;
    const char *params[2] = {status, limit};
    PGresult *r = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
    int rc = EXIT_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "triagectl: %s", PQresultErrorMessage(r));
        rc = EXIT_BACKEND;
    } else {
        print_table(r);
    }
    PQclear(r);
    PQfinish(conn);
    return rc;
}

static int
cmd_incidents(const td_config *cfg, int argc, char **argv)
{
    const char *status = NULL, *limit = "50";
    if (list_args(argc, argv, &status, &limit) != EXIT_OK)
        return EXIT_USAGE;
    if (status && strcmp(status, "open") && strcmp(status, "new") &&
        strcmp(status, "acknowledged") && strcmp(status, "resolved") &&
        strcmp(status, "closed")) {
        fprintf(stderr, "triagectl incidents: unknown status '%s'\n", status);
        return EXIT_USAGE;
    }
    return run_list(cfg,
        "SELECT i.number, i.status, 'P' || i.priority AS prio, coalesce(c.name, i.resource) AS ci_or_resource,"
        " (SELECT count(*) FROM triaged.incident_alert ia WHERE ia.incident_id = i.id) AS alerts,"
        " to_char(i.opened_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS opened_utc,"
        " coalesce(to_char(i.resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '-') AS resolved_utc,"
        " i.title"
        " FROM triaged.incident i LEFT JOIN triaged.ci c ON c.id = i.ci_id"
        " WHERE ($1::text IS NULL OR i.status = $1"
        "        OR ($1 = 'open' AND i.status IN ('new', 'acknowledged')))"
        " ORDER BY i.opened_at DESC, i.id DESC LIMIT $2::int",
        status, limit);
}

static int
cmd_alerts(const td_config *cfg, int argc, char **argv)
{
    const char *status = NULL, *limit = "50";
    if (list_args(argc, argv, &status, &limit) != EXIT_OK)
        return EXIT_USAGE;
    if (status && strcmp(status, "firing") && strcmp(status, "resolved")) {
        fprintf(stderr, "triagectl alerts: unknown status '%s'\n", status);
        return EXIT_USAGE;
    }
    return run_list(cfg,
        "SELECT fingerprint, status, severity, resource, check_name AS check, occurrences,"
        " to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS first_seen_utc,"
        " to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS last_seen_utc,"
        " CASE WHEN flapping THEN 'flapping' ELSE '' END AS flags"
        " FROM triaged.alert WHERE ($1::text IS NULL OR status = $1)"
        " ORDER BY id DESC LIMIT $2::int",
        status, limit);
}

/* An option's duration value as a PostgreSQL interval text. */
static int
interval_arg(const char *cmd, const char *opt, const char *v, char *out, size_t len)
{
    int64_t ms;
    if (td_parse_duration(v, &ms) != TD_OK || ms <= 0) {
        fprintf(stderr, "triagectl capacity %s: %s wants a duration such as 30d, not '%s'\n",
                cmd, opt, v);
        return EXIT_USAGE;
    }
    snprintf(out, len, "%lld milliseconds", (long long)ms);
    return EXIT_OK;
}

static int
cmd_capacity(const td_config *cfg, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    const char *ci = NULL, *metric = NULL, *window = "30d", *horizon = "90d", *limit = "50";
    for (int i = 2; i < argc; i++) {
        const char **slot = strcmp(argv[i], "--ci") == 0       ? &ci
                            : strcmp(argv[i], "--metric") == 0  ? &metric
                            : strcmp(argv[i], "--window") == 0  ? &window
                            : strcmp(argv[i], "--horizon") == 0 ? &horizon
                            : strcmp(argv[i], "--limit") == 0   ? &limit
                                                                : NULL;
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, "triagectl capacity: unknown or incomplete argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
        *slot = argv[++i];
    }
    char iv[64];
    if (strcmp(sub, "trend") == 0) {
        if (!ci || !metric) {
            fprintf(stderr, "triagectl capacity trend: --ci NAME and --metric M are required\n");
            return EXIT_USAGE;
        }
        if (interval_arg(sub, "--window", window, iv, sizeof(iv)) != EXIT_OK)
            return EXIT_USAGE;
        PGconn *conn = connect_db(cfg);
        if (!conn)
            return EXIT_BACKEND;
        const char *params[5] = {ci, metric, iv, NULL, NULL};
        char pts[16], r2[16];
        snprintf(pts, sizeof(pts), "%d", cfg->capacity_min_points);
        snprintf(r2, sizeof(r2), "%.2f", cfg->capacity_min_r2_pct / 100.0);
        params[3] = pts;
        params[4] = r2;
        PGresult *r = PQexecParams(conn,
            "SELECT c.name AS ci, t.metric, t.status, t.samples,"
            " round(t.slope_per_day::numeric, 6) AS slope_per_day, round(t.r2::numeric, 4) AS r2,"
            " round(t.growth_30d_pct::numeric, 2) AS growth_30d_pct, t.last_value,"
            " t.capacity_limit AS limit,"
            " coalesce(to_char(t.exhaustion_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), '-') AS exhaustion_utc,"
            " coalesce(to_char(t.earliest_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), '-') AS earliest_utc,"
            " coalesce(to_char(t.latest_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), '-') AS latest_utc"
            " FROM triaged.ci c CROSS JOIN LATERAL triaged.capacity_trend_of(c.id, $2, $3::interval,"
            "   now(), $4::int, $5::float8) t"
            " WHERE c.name = $1 OR (NOT EXISTS (SELECT 1 FROM triaged.ci x WHERE x.name = $1)"
            "   AND c.id = (SELECT min(y.id) FROM triaged.ci y WHERE $1 = ANY (y.aliases)))",
            5, NULL, params, NULL, NULL, 0);
        int rc = EXIT_OK;
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "triagectl: %s", PQresultErrorMessage(r));
            rc = EXIT_BACKEND;
        } else if (PQntuples(r) == 0) {
            fprintf(stderr, "triagectl capacity trend: no CI named '%s'\n", ci);
            rc = EXIT_USAGE;
        } else {
            print_table(r);
        }
        PQclear(r);
        PQfinish(conn);
        return rc;
    }
    if (strcmp(sub, "risks") == 0) {
        if (interval_arg(sub, "--horizon", horizon, iv, sizeof(iv)) != EXIT_OK)
            return EXIT_USAGE;
        char *end;
        long n = strtol(limit, &end, 10);
        if (*end || n < 1 || n > 1000000) {
            fprintf(stderr, "triagectl capacity risks: --limit must be 1..1000000\n");
            return EXIT_USAGE;
        }
        return run_list(cfg,
            "SELECT r.ci, r.metric, r.status,"
            " coalesce(to_char(r.exhaustion_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), '-') AS exhaustion_utc,"
            " coalesce(to_char(r.earliest_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '-') AS earliest,"
            " coalesce(to_char(r.latest_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '-') AS latest,"
            " round(r.growth_30d_pct::numeric, 1) AS growth_30d_pct, r.last_value,"
            " r.capacity_limit AS limit, array_to_string(r.services, ',') AS services"
            " FROM triaged.capacity_risks($1::interval) r LIMIT $2::int",
            iv, limit);
    }
    fprintf(stderr, "triagectl capacity: usage: capacity trend --ci NAME --metric M "
                    "[--window 30d] | capacity risks [--horizon 90d] [--limit N]\n");
    return EXIT_USAGE;
}

static int
cmd_audit(const td_config *cfg, int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "verify") != 0) {
        fprintf(stderr, "triagectl audit: usage: audit verify\n");
        return EXIT_USAGE;
    }
    PGconn *conn = connect_db(cfg);
    if (!conn)
        return EXIT_BACKEND;
    int rc = EXIT_BACKEND;
    PGresult *r = PQexec(conn,
        "SELECT v.incident_id, i.number, v.event_id, v.problem"
        " FROM triaged.audit_verify() v LEFT JOIN triaged.incident i ON i.id = v.incident_id"
        " LIMIT 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "triagectl audit verify: %s", PQresultErrorMessage(r));
        goto out;
    }
    if (PQntuples(r) > 0) {
        printf("audit chain BROKEN: incident %s (id %s), event %s: %s\n",
               PQgetisnull(r, 0, 1) ? "?" : PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 0),
               PQgetisnull(r, 0, 2) ? "-" : PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3));
        rc = EXIT_USAGE;
        goto out;
    }
    PQclear(r);
    r = PQexec(conn, "SELECT count(*), count(DISTINCT incident_id) FROM triaged.incident_event");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "triagectl audit verify: %s", PQresultErrorMessage(r));
        goto out;
    }
    printf("audit chain intact: %s events in %s incidents\n", PQgetvalue(r, 0, 0),
           PQgetvalue(r, 0, 1));
    rc = EXIT_OK;
out:
    PQclear(r);
    PQfinish(conn);
    return rc;
}

static const struct {
    const char *name;
    int (*fn)(const td_config *cfg, int argc, char **argv);
} commands[] = {
    {"capacity", cmd_capacity},
    {"migrate", cmd_migrate},
    {"version", cmd_version},
    {"incidents", cmd_incidents},
    {"alerts", cmd_alerts},
    {"audit", cmd_audit},
    {"cmdb", td_cmd_cmdb},
    {"maintenance", td_cmd_maintenance},
    {"sla", td_cmd_sla},
    {"report", td_cmd_report},
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

/* Shared with the other command files (triagectl.h). */
PGconn *
td_ctl_connect(const td_config *cfg)
{
    return connect_db(cfg);
}

void
td_ctl_print_table(const PGresult *r)
{
    print_table(r);
}

/* triagectl_cmdb.c — triagectl's CMDB and maintenance commands.
 *
 *   cmdb import FILE [--dry-run]   JSON document (or CSV of CIs), all or nothing
 *   cmdb export [-o FILE]          the same JSON format back
 *   maintenance add|list|remove    maintenance windows (one-off or weekly)
 *
 * The checking and the upsert are triaged.cmdb_import() in PostgreSQL
 * (sql/003_cmdb.sql), run in one transaction here: it returns either the
 * rejections (then we roll back: nothing changed, exit 1) or what it created
 * and changed (then we commit). This file only reads files, prints, and
 * hands the text to td_cmdb_doc_parse() (cmdb_doc.c: JSON, or CSV converted
 * to the JSON document). Blocking libpq is fine: there is no loop. */
#include "internal/triagectl.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "internal/cmdb_doc.h"
#include "internal/util.h"

/* ---- helpers ------------------------------------------------------------ */

/* The largest CMDB document read: PostgreSQL's jsonb cannot hold much more
 * (255 MiB), and 100,000 CIs with 300,000 relations take ~30 MiB. */
#define CMDB_MAX_FILE ((size_t)256 << 20)

/* The whole file (or stdin for "-"), NUL-terminated; NULL with errno set,
 * EFBIG when it is larger than CMDB_MAX_FILE (checked before reading when
 * the size is known, and while reading a pipe). */
static char *
read_all(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size > CMDB_MAX_FILE) {
        if (f != stdin)
            fclose(f);
        errno = EFBIG;
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *buf = td_malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n > CMDB_MAX_FILE) {
            if (f != stdin)
                fclose(f);
            free(buf);
            errno = EFBIG;
            return NULL;
        }
        if (cap - n < 4096) {
            cap *= 2;
            buf = td_realloc(buf, cap);
        }
    }
    bool err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Exit code for a failed statement: bad input (data/constraint errors, class
 * 22 and 23, or a raised P0001) is 1, anything else is the backend's: 2. */
static int
exit_for(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (st && (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0 ||
               strcmp(st, "P0001") == 0))
        return TD_EXIT_USAGE;
    return TD_EXIT_BACKEND;
}

/* ---- cmdb import / export ------------------------------------------------ */

static int
cmdb_import(const td_config *cfg, int argc, char **argv)
{
    const char *path = NULL;
    bool dry = false, csv = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0)
            dry = true;
        else if (strcmp(argv[i], "--csv") == 0)
            csv = true;
        else if (!path)
            path = argv[i];
        else {
            fprintf(stderr, "triagectl cmdb import: unexpected argument '%s'\n", argv[i]);
            return TD_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "triagectl cmdb import: usage: cmdb import FILE [--csv] [--dry-run]\n");
        return TD_EXIT_USAGE;
    }
    size_t len;
    char *text = read_all(path, &len);
    if (!text && errno == EFBIG) {
        fprintf(stderr, "triagectl cmdb import: %s: larger than %zu MiB, the limit of a "
                        "CMDB document\n", path, CMDB_MAX_FILE >> 20);
        return TD_EXIT_USAGE;
    }
    if (!text) {
        fprintf(stderr, "triagectl cmdb import: cannot read %s: %s\n", path, strerror(errno));
        return TD_EXIT_USAGE;
    }
    size_t pl = strlen(path);
    if (pl > 4 && strcasecmp(path + pl - 4, ".csv") == 0)
        csv = true;
    char err[512];
    json_t *doc = td_cmdb_doc_parse(text, len, csv, err, sizeof(err));
    if (!doc) {
        fprintf(stderr, "triagectl cmdb import: %s:%s%s\n", path, csv ? " " : "", err);
        free(text);
        return TD_EXIT_USAGE;
    }
    free(text);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);

    PGconn *conn = td_ctl_connect(cfg);
    if (!conn) {
        free(body);
        return TD_EXIT_BACKEND;
    }
    int rc = TD_EXIT_BACKEND;
    PGresult *r = PQexec(conn, "BEGIN");
    PQclear(r);
    const char *params[1] = {body};
    r = PQexecParams(conn, "SELECT status, kind, name, detail FROM triaged.cmdb_import($1::jsonb)",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "triagectl cmdb import: %s", PQresultErrorMessage(r));
        rc = exit_for(r);
        PQclear(PQexec(conn, "ROLLBACK"));
        goto out;
    }
    int rejected = 0, created = 0, changed = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *st = PQgetvalue(r, i, 0);
        if (strcmp(st, "rejected") == 0)
            rejected++;
        else if (strcmp(st, "created") == 0)
            created++;
        else
            changed++;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        const char *st = PQgetvalue(r, i, 0), *detail = PQgetvalue(r, i, 3);
        if (rejected && strcmp(st, "rejected") != 0)
            continue;
        fprintf(rejected ? stderr : stdout, "%s %s %s%s%s\n", st, PQgetvalue(r, i, 1),
                PQgetvalue(r, i, 2), *detail ? ": " : "", detail);
    }
    if (rejected) {
        PQclear(PQexec(conn, "ROLLBACK"));
        fprintf(stderr, "triagectl cmdb import: %d rejected; nothing changed\n", rejected);
        rc = TD_EXIT_USAGE;
        goto out;
    }
    PGresult *c = PQexec(conn, dry ? "ROLLBACK" : "COMMIT");
    if (PQresultStatus(c) != PGRES_COMMAND_OK) {
        fprintf(stderr, "triagectl cmdb import: commit failed: %s", PQresultErrorMessage(c));
        PQclear(c);
        goto out;
    }
    PQclear(c);
    printf("%s: %d created, %d changed, 0 rejected%s\n", dry ? "dry run" : "imported", created,
           changed, dry ? " (nothing written)" : "");
    rc = TD_EXIT_OK;
out:
    PQclear(r);
    PQfinish(conn);
    free(body);
    return rc;
}

static int
cmdb_export(const td_config *cfg, int argc, char **argv)
{
    const char *out = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            out = argv[++i];
        else {
            fprintf(stderr, "triagectl cmdb export: usage: cmdb export [-o FILE]\n");
            return TD_EXIT_USAGE;
        }
    }
    PGconn *conn = td_ctl_connect(cfg);
    if (!conn)
        return TD_EXIT_BACKEND;
    int rc = TD_EXIT_BACKEND;
    PGresult *r = PQexec(conn, "SELECT triaged.cmdb_export()::text");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "triagectl cmdb export: %s", PQresultErrorMessage(r));
        goto done;
    }
    json_t *doc = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
    if (!doc) {
        fprintf(stderr, "triagectl cmdb export: the database returned invalid JSON\n");
        goto done;
    }
    FILE *f = out ? fopen(out, "w") : stdout;
    if (!f) {
        fprintf(stderr, "triagectl cmdb export: cannot write %s: %s\n", out, strerror(errno));
        json_decref(doc);
        rc = TD_EXIT_USAGE;
        goto done;
    }
    int w = json_dumpf(doc, f, JSON_INDENT(2) | JSON_SORT_KEYS);
    fputc('\n', f);
    if ((out && fclose(f) != 0) || w != 0) {
        fprintf(stderr, "triagectl cmdb export: write failed\n");
        rc = TD_EXIT_USAGE;
    } else {
        rc = TD_EXIT_OK;
    }
    json_decref(doc);
done:
    PQclear(r);
    PQfinish(conn);
    return rc;
}

int
td_cmd_cmdb(const td_config *cfg, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "import") == 0)
        return cmdb_import(cfg, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "export") == 0)
        return cmdb_export(cfg, argc, argv);
    fprintf(stderr, "triagectl cmdb: usage: cmdb import FILE [--csv] [--dry-run] | "
                    "cmdb export [-o FILE]\n");
    return TD_EXIT_USAGE;
}

/* ---- maintenance ------------------------------------------------------- */

static int
maintenance_add(const td_config *cfg, int argc, char **argv)
{
    const char *ci = NULL, *svc = NULL, *from = NULL, *to = NULL, *weekly = NULL, *at = NULL,
               *dur = NULL, *tz = NULL, *change = NULL, *reason = NULL, *afrom = NULL,
               *auntil = NULL;
    for (int i = 2; i < argc; i++) {
        const char **dst = NULL;
        if (strcmp(argv[i], "--ci") == 0) dst = &ci;
        else if (strcmp(argv[i], "--service") == 0) dst = &svc;
        else if (strcmp(argv[i], "--from") == 0) dst = &from;
        else if (strcmp(argv[i], "--to") == 0) dst = &to;
        else if (strcmp(argv[i], "--weekly") == 0) dst = &weekly;
        else if (strcmp(argv[i], "--at") == 0) dst = &at;
        else if (strcmp(argv[i], "--duration") == 0) dst = &dur;
        else if (strcmp(argv[i], "--tz") == 0) dst = &tz;
        else if (strcmp(argv[i], "--change") == 0) dst = &change;
        else if (strcmp(argv[i], "--reason") == 0) dst = &reason;
        else if (strcmp(argv[i], "--active-from") == 0) dst = &afrom;
        else if (strcmp(argv[i], "--active-until") == 0) dst = &auntil;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "triagectl maintenance add: unknown or incomplete argument '%s'\n",
                    argv[i]);
            return TD_EXIT_USAGE;
        }
        *dst = argv[++i];
    }
    if (!!ci == !!svc) {
        fprintf(stderr, "triagectl maintenance add: give exactly one of --ci NAME, --service NAME\n");
        return TD_EXIT_USAGE;
    }
    bool oneoff = from || to, week = weekly || at || dur;
    if (oneoff == week || (oneoff && (!from || !to)) || (week && (!weekly || !at || !dur))) {
        fprintf(stderr, "triagectl maintenance add: give either --from TIME --to TIME, or "
                        "--weekly DAYS --at HH:MM --duration DUR [--tz ZONE]\n");
        return TD_EXIT_USAGE;
    }
    char days[64] = "", interval[64] = "";
    if (week) {
        if (!td_maint_days_parse(weekly, days, sizeof(days))) {
            fprintf(stderr, "triagectl maintenance add: --weekly '%s': use day names or "
                            "numbers (1 = Monday), e.g. Sat,Sun or Mon-Fri\n", weekly);
            return TD_EXIT_USAGE;
        }
        int64_t ms;
        if (td_parse_duration(dur, &ms) != TD_OK || ms <= 0) {
            fprintf(stderr, "triagectl maintenance add: --duration '%s': use e.g. 30m, 2h\n", dur);
            return TD_EXIT_USAGE;
        }
        snprintf(interval, sizeof(interval), "%lld milliseconds", (long long)ms);
    }
    PGconn *conn = td_ctl_connect(cfg);
    if (!conn)
        return TD_EXIT_BACKEND;
    const char *params[12] = {ci, svc, from, to, week ? days : NULL, at,
                              week ? interval : NULL, tz, change, reason, afrom, auntil};
    PGresult *r = PQexecParams(conn,
        "WITH t AS (SELECT (SELECT id FROM triaged.ci WHERE name = $1) AS ci_id,"
        "                  (SELECT id FROM triaged.service WHERE name = $2) AS service_id)"
        " INSERT INTO triaged.maintenance (ci_id, service_id, during, weekly_days, weekly_start,"
        "   weekly_duration, time_zone, change_ref, reason, active_from, active_until)"
        " SELECT t.ci_id, t.service_id,"
        "   CASE WHEN $3::text IS NOT NULL THEN tstzrange($3::timestamptz, $4::timestamptz, '[)') END,"
        "   $5::smallint[], $6::time, $7::interval, coalesce($8, 'UTC'), $9, $10,"
        "   $11::timestamptz, $12::timestamptz"
        " FROM t WHERE (t.ci_id IS NOT NULL) <> ($1::text IS NULL)"
        "          AND (t.service_id IS NOT NULL) <> ($2::text IS NULL)"
        " RETURNING id",
        12, NULL, params, NULL, NULL, 0);
    int rc;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "triagectl maintenance add: %s", PQresultErrorMessage(r));
        rc = exit_for(r);
    } else if (PQntuples(r) == 0) {
        fprintf(stderr, "triagectl maintenance add: unknown reference: no %s named '%s'\n",
                ci ? "CI" : "service", ci ? ci : svc);
        rc = TD_EXIT_USAGE;
    } else {
        printf("maintenance %s added\n", PQgetvalue(r, 0, 0));
        rc = TD_EXIT_OK;
    }
    PQclear(r);
    PQfinish(conn);
    return rc;
}

static int
maintenance_list(const td_config *cfg, int argc, char **argv)
{
    (void)argv;
    if (argc != 2) {
        fprintf(stderr, "triagectl maintenance list: takes no arguments\n");
        return TD_EXIT_USAGE;
    }
    PGconn *conn = td_ctl_connect(cfg);
    if (!conn)
        return TD_EXIT_BACKEND;
    PGresult *r = PQexec(conn,
        "SELECT m.id, coalesce('ci:' || c.name, 'service:' || s.name) AS target,"
        " CASE WHEN m.during IS NOT NULL"
        "  THEN to_char(lower(m.during) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' .. ' ||"
        "       to_char(upper(m.during) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC'"
        "  ELSE 'weekly ' || array_to_string(ARRAY(SELECT (ARRAY['Mon','Tue','Wed','Thu','Fri','Sat','Sun'])[d]"
        "       FROM unnest(m.weekly_days) d ORDER BY d), ',') || ' ' || to_char(m.weekly_start, 'HH24:MI')"
        "       || ' for ' || m.weekly_duration::text || ' ' || m.time_zone END AS window,"
        " CASE WHEN EXISTS (SELECT 1 FROM triaged.maintenance_windows(now(), now() + interval '1 microsecond') w"
        "                   WHERE w.maintenance_id = m.id) THEN 'yes' ELSE 'no' END AS active_now,"
        " coalesce(m.change_ref, '') AS change_ref, coalesce(m.reason, '') AS reason"
        " FROM triaged.maintenance m LEFT JOIN triaged.ci c ON c.id = m.ci_id"
        " LEFT JOIN triaged.service s ON s.id = m.service_id"
        " ORDER BY m.id");
    int rc = TD_EXIT_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "triagectl maintenance list: %s", PQresultErrorMessage(r));
        rc = TD_EXIT_BACKEND;
    } else {
        td_ctl_print_table(r);
    }
    PQclear(r);
    PQfinish(conn);
    return rc;
}

static int
maintenance_remove(const td_config *cfg, int argc, char **argv)
{
    char *end;
    if (argc != 3 || strtoll(argv[2], &end, 10) <= 0 || *end) {
        fprintf(stderr, "triagectl maintenance remove: usage: maintenance remove ID\n");
        return TD_EXIT_USAGE;
    }
    PGconn *conn = td_ctl_connect(cfg);
    if (!conn)
        return TD_EXIT_BACKEND;
    const char *params[1] = {argv[2]};
    PGresult *r = PQexecParams(conn, "DELETE FROM triaged.maintenance WHERE id = $1::bigint RETURNING id",
                               1, NULL, params, NULL, NULL, 0);
    int rc;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "triagectl maintenance remove: %s", PQresultErrorMessage(r));
        rc = exit_for(r);
    } else if (PQntuples(r) == 0) {
        fprintf(stderr, "triagectl maintenance remove: no maintenance %s\n", argv[2]);
        rc = TD_EXIT_USAGE;
    } else {
        printf("maintenance %s removed\n", argv[2]);
        rc = TD_EXIT_OK;
    }
    PQclear(r);
    PQfinish(conn);
    return rc;
}

int
td_cmd_maintenance(const td_config *cfg, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "add") == 0)
        return maintenance_add(cfg, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return maintenance_list(cfg, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "remove") == 0)
        return maintenance_remove(cfg, argc, argv);
    fprintf(stderr,
        "triagectl maintenance: usage:\n"
        "  maintenance add (--ci NAME | --service NAME)\n"
        "      (--from TIME --to TIME | --weekly DAYS --at HH:MM --duration DUR [--tz ZONE])\n"
        "      [--change REF] [--reason TEXT] [--active-from TIME] [--active-until TIME]\n"
        "  maintenance list\n"
        "  maintenance remove ID\n");
    return TD_EXIT_USAGE;
}

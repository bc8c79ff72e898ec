/* triagectl_sla.c — SLA definitions and the service level review report.
 *
 *   sla set SERVICE [--target P] [--period month|quarter] [--hours SPEC]
 *                   [--degraded-counts-as-down yes|no] [--down-max-urgency N]
 *   sla remove SERVICE | sla list
 *   report --period 2026-10|2026-Q4 [--service NAME] --format html|csv|json -o FILE
 *
 * Every number comes from PostgreSQL (sql/006_sla.sql: sla_report_doc, the
 * same function behind the API and the view), so the three agree; this file
 * only lays them out. The HTML is one self-contained file: inline CSS and
 * SVG, no script, no external asset, page breaks between services. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "internal/triagectl.h"

static int
exit_for(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (st && (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0 ||
               strcmp(st, "P0002") == 0))
        return TD_EXIT_USAGE;
    return TD_EXIT_BACKEND;
}

/* The first line of a PostgreSQL error message. */
static void
print_error(const char *what, const PGresult *r)
{
    const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (!m)
        m = PQresultErrorMessage(r);
    fprintf(stderr, "triagectl %s: %.*s\n", what, (int)strcspn(m, "\n"), m);
}

/* ---- sla set / remove / list ----------------------------------------------- */

static int
sla_set(const td_config *cfg, int argc, char **argv)
{
    if (argc < 3 || argv[2][0] == '-') {
        fprintf(stderr, "triagectl sla set: usage: sla set SERVICE [--target P] "
                        "[--period month|quarter] [--hours SPEC] "
                        "[--degraded-counts-as-down yes|no] [--down-max-urgency 1..3]\n");
        return TD_EXIT_USAGE;
    }
    json_t *doc = json_object();
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "triagectl sla set: %s needs a value\n", a);
            json_decref(doc);
            return TD_EXIT_USAGE;
        }
        char *end = NULL;
        if (strcmp(a, "--target") == 0) {
            double t = strtod(v, &end);
            if (end == v || *end || !isfinite(t)) {
                fprintf(stderr, "triagectl sla set: --target wants a percentage such as 99.9, "
                                "not '%s'\n", v);
                json_decref(doc);
                return TD_EXIT_USAGE;
            }
            json_object_set_new(doc, "target", json_real(t));
        } else if (strcmp(a, "--period") == 0) {
            json_object_set_new(doc, "period", json_string(v));
        } else if (strcmp(a, "--hours") == 0) {
            json_object_set_new(doc, "service_hours", json_string(v));
        } else if (strcmp(a, "--degraded-counts-as-down") == 0) {
            if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0) {
                fprintf(stderr, "triagectl sla set: %s wants yes or no\n", a);
                json_decref(doc);
                return TD_EXIT_USAGE;
            }
            json_object_set_new(doc, "degraded_counts_as_down", json_boolean(v[0] == 'y'));
        } else if (strcmp(a, "--down-max-urgency") == 0) {
            long u = strtol(v, &end, 10);
            if (*end || u < 1 || u > 3) {
                fprintf(stderr, "triagectl sla set: %s wants 1, 2 or 3\n", a);
                json_decref(doc);
                return TD_EXIT_USAGE;
            }
            json_object_set_new(doc, "down_max_urgency", json_integer(u));
        } else {
            fprintf(stderr, "triagectl sla set: unknown argument '%s'\n", a);
            json_decref(doc);
            return TD_EXIT_USAGE;
        }
        i++;
    }
    /* A real such as 99.9 prints as 99.900000000000006 with full precision;
     * 15 significant digits give back what was typed. */
    char *body = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(doc);
    PGconn *conn = td_ctl_connect(cfg);
    if (!conn) {
        free(body);
        return TD_EXIT_BACKEND;
    }
    const char *params[2] = {argv[2], body};
    PGresult *r = PQexecParams(conn, "SELECT triaged.sla_set($1, $2::jsonb)", 2, NULL, params,
                               NULL, NULL, 0);
    int rc = TD_EXIT_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        print_error("sla set", r);
        rc = exit_for(r);
    } else {
        printf("%s: %s\n", PQgetvalue(r, 0, 0), argv[2]);
    }
    PQclear(r);
    PQfinish(conn);
    free(body);
    return rc;
}

static int
sla_remove_or_list(const td_config *cfg, int argc, char **argv, bool list)
{
    if ((list && argc != 2) || (!list && argc != 3)) {
        fprintf(stderr, "triagectl sla: usage: sla remove SERVICE | sla list\n");
        return TD_EXIT_USAGE;
    }
    PGconn *conn = td_ctl_connect(cfg);
    if (!conn)
        return TD_EXIT_BACKEND;
    PGresult *r;
    if (list) {
        r = PQexec(conn, "SELECT s.name AS service, trim_scale(l.target) AS target, l.period,"
                         " l.service_hours, l.degraded_counts_as_down, l.down_max_urgency"
                         " FROM triaged.sla l JOIN triaged.service s ON s.id = l.service_id"
                         " ORDER BY s.name");
    } else {
        const char *params[1] = {argv[2]};
        r = PQexecParams(conn, "SELECT triaged.sla_set($1, NULL)", 1, NULL, params, NULL, NULL,
                         0);
    }
    int rc = TD_EXIT_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        print_error(list ? "sla list" : "sla remove", r);
        rc = exit_for(r);
    } else if (list) {
        td_ctl_print_table(r);
    } else {
        printf("%s: %s\n", PQgetvalue(r, 0, 0), argv[2]);
    }
    PQclear(r);
    PQfinish(conn);
    return rc;
}

int
td_cmd_sla(const td_config *cfg, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "set") == 0)
        return sla_set(cfg, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "remove") == 0)
        return sla_remove_or_list(cfg, argc, argv, false);
    if (argc >= 2 && strcmp(argv[1], "list") == 0)
        return sla_remove_or_list(cfg, argc, argv, true);
    fprintf(stderr, "triagectl sla: usage: sla set SERVICE [options] | sla remove SERVICE | "
                    "sla list\n");
    return TD_EXIT_USAGE;
}

/* ---- report: helpers ----------------------------------------------------- */

static double
num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *
str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* HTML-escaped text. */
static void
esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A duration for humans: 2h 03m 10s, 4d 01h, 12.5s; "–" for none. */
static void
dur(FILE *f, double s)
{
    if (isnan(s)) {
        fputs("&ndash;", f);
        return;
    }
    const char *sign = s < 0 ? "-" : "";
    s = fabs(s);
    long t = (long)llround(s);
    if (s < 60)
        fprintf(f, "%s%.1fs", sign, s);
    else if (t < 3600)
        fprintf(f, "%s%ldm %02lds", sign, t / 60, t % 60);
    else if (t < 86400)
        fprintf(f, "%s%ldh %02ldm %02lds", sign, t / 3600, t / 60 % 60, t % 60);
    else
        fprintf(f, "%s%ldd %02ldh %02ldm", sign, t / 86400, t / 3600 % 24, t / 60 % 60);
}

static void
pct(FILE *f, double fraction, int decimals)
{
    if (isnan(fraction))
        fputs("&ndash;", f);
    else
        fprintf(f, "%.*f&#8201;%%", decimals, fraction * 100);
}

/* ---- report: HTML -------------------------------------------------------- */

static const char css[] =
    "body{font:14px/1.4 -apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#1d2330;"
    "margin:24px auto;max-width:1000px;padding:0 16px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid "
    "#dde2ea;padding-bottom:4px}h3{font-size:14px;margin:14px 0 6px;color:#4a5468}"
    ".sub{color:#5b667a;margin-bottom:16px}"
    "table{border-collapse:collapse;width:100%;margin:6px 0}"
    "th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e5e8ee;font-variant-numeric:"
    "tabular-nums}th{background:#f3f5f8;font-weight:600}td.n,th.n{text-align:right}"
    ".met{color:#fff;background:#2e8540;border-radius:3px;padding:1px 6px;font-weight:600}"
    ".breached{color:#fff;background:#c62828;border-radius:3px;padding:1px 6px;font-weight:600}"
    ".none{color:#5b667a}"
    ".grid{display:flex;gap:24px;flex-wrap:wrap}.grid>div{flex:1 1 300px}"
    ".kpi{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}.kpi div{background:#f3f5f8;"
    "border-radius:4px;padding:6px 10px;min-width:110px}.kpi b{display:block;font-size:16px}"
    "section.svc{break-inside:avoid;page-break-inside:avoid}"
    "@media print{body{margin:0;max-width:none}section.svc{break-before:page}"
    "th{-webkit-print-color-adjust:exact;print-color-adjust:exact}"
    ".met,.breached,.kpi div{-webkit-print-color-adjust:exact;print-color-adjust:exact}}";

static void
badge(FILE *f, const json_t *s)
{
    const json_t *met = json_object_get(s, "met");
    if (json_is_true(met))
        fputs("<span class=\"met\">met</span>", f);
    else if (json_is_false(met))
        fputs("<span class=\"breached\">breached</span>", f);
    else
        fputs("<span class=\"none\">no SLA</span>", f);
}

/* Availability against the target: a horizontal bar on a zoomed scale
 * (from target - 2 x (100 - target) to 100 %), the target as a line. */
static void
svg_availability(FILE *f, const json_t *s)
{
    double a = num(s, "availability") * 100, t = num(s, "target");
    double lo = isnan(t) ? 90 : t - 2 * (100 - t);
    if (lo < 0)
        lo = 0;
    if (!isnan(a) && a < lo)
        lo = a < 0 ? 0 : a;
    double w = 420, x0 = 10;
    double xa = isnan(a) ? x0 : x0 + w * (a - lo) / (100 - lo);
    fprintf(f, "<svg width=\"460\" height=\"56\" viewBox=\"0 0 460 56\" role=\"img\">"
               "<rect x=\"%g\" y=\"10\" width=\"%g\" height=\"18\" fill=\"#e9edf3\"/>",
            x0, w);
    fprintf(f, "<rect x=\"%g\" y=\"10\" width=\"%.1f\" height=\"18\" fill=\"%s\"/>", x0,
            xa - x0, json_is_false(json_object_get(s, "met")) ? "#c62828" : "#2e8540");
    if (!isnan(t)) {
        double xt = x0 + w * (t - lo) / (100 - lo);
        fprintf(f, "<line x1=\"%.1f\" y1=\"4\" x2=\"%.1f\" y2=\"34\" stroke=\"#1d2330\" "
                   "stroke-width=\"2\"/><text x=\"%.1f\" y=\"48\" font-size=\"11\" "
                   "text-anchor=\"middle\">target %g %%</text>",
                xt, xt, xt, t);
    }
    fprintf(f, "<text x=\"%g\" y=\"48\" font-size=\"11\">%.4g %%</text>"
               "<text x=\"%g\" y=\"48\" font-size=\"11\" text-anchor=\"end\">100 %%</text></svg>",
            x0, lo, x0 + w);
}

/* Error budget burn-down: remaining budget at the end of each day, from
 * the budget at the start down; below zero in red. */
static void
svg_burndown(FILE *f, const json_t *s)
{
    const json_t *daily = json_object_get(s, "daily");
    double budget = num(s, "error_budget_seconds");
    size_t n = json_array_size(daily);
    if (!n || isnan(budget)) {
        fputs("<p class=\"none\">No error budget (no SLA target).</p>", f);
        return;
    }
    double lo = 0, hi = budget > 0 ? budget : 1;
    for (size_t i = 0; i < n; i++) {
        double v = num(json_array_get(daily, i), "error_budget_remaining_seconds");
        if (!isnan(v) && v < lo)
            lo = v;
    }
    const double W = 440, H = 160, L = 50, T = 10;
    double span = hi - lo;
#define PX(i) (L + W * (double)(i) / (double)n)
#define PY(v) (T + H * (hi - (v)) / span)
    fprintf(f, "<svg width=\"500\" height=\"200\" viewBox=\"0 0 500 200\" role=\"img\">"
               "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"#f7f9fb\" "
               "stroke=\"#dde2ea\"/>",
            L, T, W, H);
    fprintf(f, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#8a94a6\" "
               "stroke-dasharray=\"4 3\"/>",
            L, PY(0), L + W, PY(0));
    /* the ideal line: budget spent evenly */
    fprintf(f, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#b8c2d3\"/>", L,
            PY(budget), L + W, PY(0));
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\" points=\"%g,%.1f",
            L, PY(budget));
    for (size_t i = 0; i < n; i++) {
        double v = num(json_array_get(daily, i), "error_budget_remaining_seconds");
        fprintf(f, " %.1f,%.1f", PX(i + 1), PY(isnan(v) ? 0 : v));
    }
    fputs("\"/>", f);
    for (size_t i = 0; i < n; i++) {
        double v = num(json_array_get(daily, i), "error_budget_remaining_seconds");
        if (!isnan(v) && v < 0)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"#c62828\"/>",
                    PX(i + 1), PY(v));
    }
    fprintf(f, "<text x=\"%g\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%.0fs</text>"
               "<text x=\"%g\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">0</text>",
            L - 4, PY(budget) + 4, budget, L - 4, PY(0) + 4);
    if (lo < 0)
        fprintf(f, "<text x=\"%g\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%.0fs</text>",
                L - 4, PY(lo) + 4, lo);
    const json_t *d0 = json_array_get(daily, 0), *d1 = json_array_get(daily, n - 1);
    fprintf(f, "<text x=\"%g\" y=\"190\" font-size=\"10\">%s</text>"
               "<text x=\"%g\" y=\"190\" font-size=\"10\" text-anchor=\"end\">%s</text></svg>",
            L, str(d0, "day"), L + W, str(d1, "day"));
#undef PX
#undef PY
}

/* Incidents by priority: five bars. */
static void
svg_priorities(FILE *f, const json_t *s)
{
    const json_t *p = json_object_get(s, "incidents_by_priority");
    static const char *colors[5] = {"#b71c1c", "#e65100", "#f9a825", "#558b2f", "#78909c"};
    long v[5], max = 1;
    for (int i = 0; i < 5; i++) {
        char k[4];
        snprintf(k, sizeof(k), "P%d", i + 1);
        v[i] = (long)json_integer_value(json_object_get(p, k));
        if (v[i] > max)
            max = v[i];
    }
    fputs("<svg width=\"260\" height=\"150\" viewBox=\"0 0 260 150\" role=\"img\">", f);
    for (int i = 0; i < 5; i++) {
        double h = 100.0 * (double)v[i] / (double)max, x = 15 + i * 48;
        fprintf(f, "<rect x=\"%g\" y=\"%.1f\" width=\"34\" height=\"%.1f\" fill=\"%s\"/>"
                   "<text x=\"%g\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%ld</text>"
                   "<text x=\"%g\" y=\"140\" font-size=\"11\" text-anchor=\"middle\">P%d</text>",
                x, 120 - h, h, colors[i], x + 17, 115 - h, v[i], x + 17, i + 1);
    }
    fputs("<line x1=\"10\" y1=\"120\" x2=\"250\" y2=\"120\" stroke=\"#8a94a6\"/></svg>", f);
}

/* Daily maxima as a 120 x 24 line, the limit as a dashed line on top. */
static void
svg_sparkline(FILE *f, const json_t *values, double limit)
{
    size_t n = json_array_size(values);
    if (n < 2) {
        fputs("&ndash;", f);
        return;
    }
    double lo = 0, hi = limit > 0 ? limit : 0;
    for (size_t i = 0; i < n; i++) {
        double v = json_number_value(json_array_get(values, i));
        if (v > hi)
            hi = v;
    }
    if (hi <= lo)
        hi = lo + 1;
    fputs("<svg width=\"120\" height=\"24\" viewBox=\"0 0 120 24\" role=\"img\">", f);
    if (limit > 0)
        fputs("<line x1=\"0\" y1=\"1\" x2=\"120\" y2=\"1\" stroke=\"#c62828\" "
              "stroke-dasharray=\"3 2\" stroke-width=\"1\"/>",
              f);
    fputs("<polyline fill=\"none\" stroke=\"#1565c0\" stroke-width=\"1.5\" points=\"", f);
    for (size_t i = 0; i < n; i++) {
        double v = json_number_value(json_array_get(values, i));
        fprintf(f, "%s%.1f,%.1f", i ? " " : "", 120.0 * (double)i / (double)(n - 1),
                23.0 - 22.0 * (v - lo) / (hi - lo));
    }
    fputs("\"/></svg>", f);
}

static void
html_service(FILE *f, const json_t *s)
{
    fputs("<section class=\"svc\"><h2>", f);
    esc(f, str(s, "service"));
    fputs(" ", f);
    badge(f, s);
    fputs("</h2><div class=\"kpi\"><div>availability<b>", f);
    pct(f, num(s, "availability"), 4);
    fputs("</b></div><div>target<b>", f);
    if (isnan(num(s, "target")))
        fputs("&ndash;", f);
    else
        fprintf(f, "%g&#8201;%%", num(s, "target"));
    fputs("</b></div><div>downtime<b>", f);
    dur(f, num(s, "downtime_seconds"));
    fputs("</b></div><div>budget left<b>", f);
    dur(f, num(s, "error_budget_remaining_seconds"));
    fputs("</b></div><div>MTTA<b>", f);
    dur(f, num(s, "mtta_seconds"));
    fputs("</b></div><div>MTTR<b>", f);
    dur(f, num(s, "mttr_seconds"));
    fputs("</b></div><div>MTBF<b>", f);
    dur(f, num(s, "mtbf_seconds"));
    fputs("</b></div></div><p class=\"sub\">Service hours: ", f);
    esc(f, str(s, "service_hours"));
    fprintf(f, "; service time ");
    dur(f, num(s, "service_seconds"));
    fputs(", maintenance excluded ", f);
    dur(f, num(s, "maintenance_excluded_seconds"));
    fputs(json_is_true(json_object_get(s, "degraded_counts_as_down"))
              ? "; degraded service counts as down."
              : "; only outages count (degraded service does not).",
          f);
    fputs("</p><div class=\"grid\"><div><h3>Availability vs target</h3>", f);
    svg_availability(f, s);
    fputs("<h3>Incidents by priority</h3>", f);
    svg_priorities(f, s);
    fputs("</div><div><h3>Error budget burn-down</h3>", f);
    svg_burndown(f, s);
    fputs("</div></div>", f);

    const json_t *src = json_object_get(s, "alert_sources");
    fputs("<h3>Top alert sources</h3>", f);
    if (!json_array_size(src)) {
        fputs("<p class=\"none\">No alerts.</p>", f);
    } else {
        fputs("<table><tr><th>source</th><th class=\"n\">alerts</th><th class=\"n\">messages"
              "</th><th class=\"n\">dedup ratio</th></tr>",
              f);
        size_t i;
        const json_t *a;
        json_array_foreach(src, i, a) {
            if (i >= 10)
                break;
            fputs("<tr><td>", f);
            esc(f, str(a, "source"));
            fprintf(f, "</td><td class=\"n\">%.0f</td><td class=\"n\">%.0f</td><td class=\"n\">",
                    num(a, "alerts"), num(a, "messages"));
            pct(f, num(a, "dedup_ratio"), 1);
            fputs("</td></tr>", f);
        }
        fputs("</table>", f);
    }
    const json_t *mt = json_object_get(s, "maintenance");
    fputs("<h3>Maintenance taken</h3>", f);
    if (!json_array_size(mt)) {
        fputs("<p class=\"none\">None.</p>", f);
    } else {
        fputs("<table><tr><th>on</th><th>from</th><th>to</th><th>change</th><th>reason</th>"
              "<th class=\"n\">in service hours</th></tr>",
              f);
        size_t i;
        const json_t *m;
        json_array_foreach(mt, i, m) {
            fputs("<tr><td>", f);
            esc(f, str(m, "target"));
            fputs("</td><td>", f);
            esc(f, str(m, "from"));
            fputs("</td><td>", f);
            esc(f, str(m, "to"));
            fputs("</td><td>", f);
            esc(f, str(m, "change_ref"));
            fputs("</td><td>", f);
            esc(f, str(m, "reason"));
            fputs("</td><td class=\"n\">", f);
            dur(f, num(m, "seconds"));
            fputs("</td></tr>", f);
        }
        fputs("</table>", f);
    }
    const json_t *cap = json_object_get(s, "capacity");
    fputs("<h3>Capacity risks (within 90 days)</h3>", f);
    if (!json_array_size(cap)) {
        fputs("<p class=\"none\">None.</p>", f);
    } else {
        fputs("<table><tr><th>CI</th><th>metric</th><th>runs out</th><th class=\"n\">growth "
              "/ 30 d</th><th class=\"n\">last / limit</th><th>this period</th></tr>",
              f);
        size_t i;
        const json_t *c;
        json_array_foreach(cap, i, c) {
            fputs("<tr><td>", f);
            esc(f, str(c, "ci"));
            fputs("</td><td>", f);
            esc(f, str(c, "metric"));
            fputs("</td><td>", f);
            const char *at = str(c, "exhaustion_at");
            if (strcmp(str(c, "status"), "exhausted") == 0)
                fputs("exhausted", f);
            else
                fprintf(f, "%.10s", at);
            fputs("</td><td class=\"n\">", f);
            pct(f, num(c, "growth_30d_pct") / 100, 1);
            fprintf(f, "</td><td class=\"n\">%g / %g</td><td>", num(c, "last_value"),
                    num(c, "limit"));
            svg_sparkline(f, json_object_get(c, "daily_max"), num(c, "limit"));
            fputs("</td></tr>", f);
        }
        fputs("</table>", f);
    }
    fputs("</section>\n", f);
}

static void
write_html(FILE *f, const json_t *doc)
{
    const json_t *svcs = json_object_get(doc, "services");
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<title>Service level review ",
          f);
    esc(f, str(doc, "period"));
    fprintf(f, "</title><style>%s</style></head><body>\n<h1>Service level review ", css);
    esc(f, str(doc, "period"));
    fputs("</h1><p class=\"sub\">", f);
    esc(f, str(doc, "from"));
    fputs(" to ", f);
    esc(f, str(doc, "to"));
    fputs(" (UTC); generated ", f);
    esc(f, str(doc, "generated_at"));
    size_t met = 0, breached = 0, i;
    const json_t *s;
    json_array_foreach(svcs, i, s) {
        if (json_is_true(json_object_get(s, "met")))
            met++;
        else if (json_is_false(json_object_get(s, "met")))
            breached++;
    }
    fprintf(f, " by triaged. %zu service%s: %zu met, %zu breached, %zu without SLA.</p>\n",
            json_array_size(svcs), json_array_size(svcs) == 1 ? "" : "s", met, breached,
            json_array_size(svcs) - met - breached);
    fputs("<h2>Summary</h2><table><tr><th>service</th><th class=\"n\">target</th>"
          "<th class=\"n\">availability</th><th></th><th class=\"n\">downtime</th>"
          "<th class=\"n\">budget left</th><th class=\"n\">incidents</th><th class=\"n\">MTTA</th>"
          "<th class=\"n\">MTTR</th></tr>\n",
          f);
    json_array_foreach(svcs, i, s) {
        fputs("<tr><td>", f);
        esc(f, str(s, "service"));
        fputs("</td><td class=\"n\">", f);
        if (isnan(num(s, "target")))
            fputs("&ndash;", f);
        else
            fprintf(f, "%g&#8201;%%", num(s, "target"));
        fputs("</td><td class=\"n\">", f);
        pct(f, num(s, "availability"), 4);
        fputs("</td><td>", f);
        badge(f, s);
        fputs("</td><td class=\"n\">", f);
        dur(f, num(s, "downtime_seconds"));
        fputs("</td><td class=\"n\">", f);
        if (isnan(num(s, "error_budget_remaining_pct")))
            fputs("&ndash;", f);
        else
            fprintf(f, "%.1f&#8201;%%", num(s, "error_budget_remaining_pct"));
        fprintf(f, "</td><td class=\"n\">%.0f</td><td class=\"n\">", num(s, "incidents"));
        dur(f, num(s, "mtta_seconds"));
        fputs("</td><td class=\"n\">", f);
        dur(f, num(s, "mttr_seconds"));
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
    json_array_foreach(svcs, i, s) html_service(f, s);
    fputs("</body></html>\n", f);
}

/* ---- report: CSV --------------------------------------------------------- */

static void
csv_field(FILE *f, const json_t *v)
{
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strpbrk(s, ",\"\n\r")) {
            fputc('"', f);
            for (; *s; s++) {
                if (*s == '"')
                    fputc('"', f);
                fputc(*s, f);
            }
            fputc('"', f);
        } else {
            fputs(s, f);
        }
        return;
    }
    /* PostgreSQL writes at most 15 significant digits here (seconds with 6
     * decimals, fractions with 12), which a double keeps exactly: %.15g
     * gives back the same number (18.632177, not 18.632176999999999). */
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    if (t)
        fputs(t, f);
    free(t);
}

/* One line per service, the same numbers as the JSON; nested objects
 * flattened as burn_rate_1h, incidents_P1 ... */
static void
write_csv(FILE *f, const json_t *doc)
{
    static const char *cols[] = {
        "service", "from", "to", "target", "period", "service_hours",
        "degraded_counts_as_down", "down_max_urgency", "availability", "availability_pct", "met",
        "service_seconds", "planned_service_seconds", "downtime_seconds",
        "maintenance_excluded_seconds", "error_budget_seconds", "error_budget_remaining_seconds",
        "error_budget_remaining_pct", "burn_rate.1h", "burn_rate.6h", "burn_rate.24h",
        "burn_rate.period", "incidents", "incidents_by_priority.P1", "incidents_by_priority.P2",
        "incidents_by_priority.P3", "incidents_by_priority.P4", "incidents_by_priority.P5",
        "mtta_seconds", "mttr_seconds", "mtbf_seconds"};
    size_t nc = sizeof(cols) / sizeof(cols[0]);
    for (size_t c = 0; c < nc; c++) {
        fputs(c ? "," : "", f);
        for (const char *p = cols[c]; *p; p++)
            fputc(*p == '.' ? '_' : *p, f);
    }
    fputc('\n', f);
    size_t i;
    const json_t *s;
    json_array_foreach(json_object_get(doc, "services"), i, s) {
        for (size_t c = 0; c < nc; c++) {
            fputs(c ? "," : "", f);
            const char *dot = strchr(cols[c], '.');
            const json_t *v;
            if (dot) {
                char outer[32];
                snprintf(outer, sizeof(outer), "%.*s", (int)(dot - cols[c]), cols[c]);
                v = json_object_get(json_object_get(s, outer), dot + 1);
            } else {
                v = json_object_get(s, cols[c]);
            }
            csv_field(f, v);
        }
        fputc('\n', f);
    }
}

/* ---- report -------------------------------------------------------------- */

int
td_cmd_report(const td_config *cfg, int argc, char **argv)
{
    const char *period = NULL, *service = NULL, *format = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char **dst = NULL;
        if (strcmp(argv[i], "--period") == 0)
            dst = &period;
        else if (strcmp(argv[i], "--service") == 0)
            dst = &service;
        else if (strcmp(argv[i], "--format") == 0)
            dst = &format;
        else if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0)
            dst = &out;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "triagectl report: unknown or incomplete argument '%s'\n", argv[i]);
            goto usage;
        }
        *dst = argv[++i];
    }
    if (!period || !format || !out)
        goto usage;
    if (strcmp(format, "html") != 0 && strcmp(format, "csv") != 0 &&
        strcmp(format, "json") != 0) {
        fprintf(stderr, "triagectl report: --format is html, csv or json, not '%s'\n", format);
        goto usage;
    }

    PGconn *conn = td_ctl_connect(cfg);
    if (!conn)
        return TD_EXIT_BACKEND;
    const char *params[2] = {period, service};
    PGresult *r = PQexecParams(conn, "SELECT triaged.sla_report_doc($1, $2)::text", 2, NULL,
                               params, NULL, NULL, 0);
    int rc = TD_EXIT_OK;
    json_t *doc = NULL;
    FILE *f = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        print_error("report", r);
        rc = exit_for(r);
        goto done;
    }
    if (PQgetisnull(r, 0, 0)) {
        fprintf(stderr, "triagectl report: no service named '%s'\n", service);
        rc = TD_EXIT_USAGE;
        goto done;
    }
    json_error_t je;
    doc = json_loads(PQgetvalue(r, 0, 0), JSON_DECODE_ANY, &je);
    if (!doc) {
        fprintf(stderr, "triagectl report: unreadable result: %s\n", je.text);
        rc = TD_EXIT_BACKEND;
        goto done;
    }
    f = strcmp(out, "-") == 0 ? stdout : fopen(out, "w");
    if (!f) {
        fprintf(stderr, "triagectl report: cannot write %s: %s\n", out, strerror(errno));
        rc = TD_EXIT_USAGE;
        goto done;
    }
    if (format[0] == 'h') {
        write_html(f, doc);
    } else if (format[0] == 'c') {
        write_csv(f, doc);
    } else {
        /* PostgreSQL's own text: numbers exactly as the API shows them */
        fputs(PQgetvalue(r, 0, 0), f);
        fputc('\n', f);
    }
    if ((f != stdout && fclose(f) != 0) || (f == stdout && fflush(f) != 0)) {
        fprintf(stderr, "triagectl report: cannot write %s: %s\n", out, strerror(errno));
        rc = TD_EXIT_USAGE;
    }
done:
    json_decref(doc);
    PQclear(r);
    PQfinish(conn);
    return rc;
usage:
    fprintf(stderr, "triagectl report: usage: report --period YYYY-MM|YYYY-Qn [--service NAME] "
                    "--format html|csv|json -o FILE\n");
    return TD_EXIT_USAGE;
}

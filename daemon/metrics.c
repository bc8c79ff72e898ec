/* metrics.c — the metric registry (see metrics.h).
 *
 * Families and children live in small arrays searched linearly at lookup
 * time; hot paths hold td_metric pointers, so lookups happen at setup or on
 * rare paths (a new invalid-message reason), never per alert. */
#include "internal/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/log.h"
#include "internal/util.h"

enum { M_COUNTER, M_GAUGE, M_HISTOGRAM };

static const double bucket_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                       0.005,  0.01,    0.025,  0.05,  0.1,
                                       0.25,   0.5,     1,      2.5,   5,
                                       10};
#define NBUCKETS (sizeof(bucket_bounds) / sizeof(bucket_bounds[0]))

struct td_metric {
    char *labels;
    uint64_t count;  /* counter value; histogram sample count */
    double value;    /* gauge value; histogram sum */
    uint64_t buckets[NBUCKETS];
    int type;
};

typedef struct family {
    char *name, *help;
    int type;
    td_metric **children;
    size_t n;
} family;

static family *families;
static size_t n_families;

static td_metric *
lookup(const char *name, const char *help, int type, const char *labels)
{
    family *f = NULL;
    if (!labels)
        labels = "";
    for (size_t i = 0; i < n_families; i++)
        if (strcmp(families[i].name, name) == 0) {
            f = &families[i];
            break;
        }
    if (!f) {
        families = td_realloc(families, (n_families + 1) * sizeof(*families));
        f = &families[n_families++];
        f->name = td_strdup(name);
        f->help = td_strdup(help ? help : name);
        f->type = type;
        f->children = NULL;
        f->n = 0;
    }
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->children[i]->labels, labels) == 0)
            return f->children[i];
    td_metric *m = td_calloc(1, sizeof(*m));
    m->labels = td_strdup(labels);
    m->type = f->type;
    f->children = td_realloc(f->children, (f->n + 1) * sizeof(*f->children));
    f->children[f->n++] = m;
    return m;
}

td_metric *
td_counter(const char *name, const char *help, const char *labels)
{
    return lookup(name, help, M_COUNTER, labels);
}

td_metric *
td_gauge(const char *name, const char *help, const char *labels)
{
    return lookup(name, help, M_GAUGE, labels);
}

td_metric *
td_histogram(const char *name, const char *help, const char *labels)
{
    return lookup(name, help, M_HISTOGRAM, labels);
}

void
td_metric_add(td_metric *m, uint64_t n)
{
    m->count += n;
}

void
td_metric_set(td_metric *m, double v)
{
    m->value = v;
}

void
td_metric_observe(td_metric *m, double seconds)
{
    m->count++;
    m->value += seconds;
    for (size_t i = 0; i < NBUCKETS; i++)
        if (seconds <= bucket_bounds[i]) {
            m->buckets[i]++;
            break;
        }
}

uint64_t
td_metric_value(const td_metric *m)
{
    return m->count;
}

double
td_metric_quantile(const td_metric *m, double q)
{
    if (m->count == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(q * (double)m->count), seen = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        seen += m->buckets[i];
        if (seen >= want)
            return bucket_bounds[i];
    }
    return INFINITY;
}

/* A plugin's metric: its own labels after plugin="NAME". */
static td_metric *
plugin_metric(const char *plugin, const char *name, const char *labels, int type)
{
    char l[256];
    snprintf(l, sizeof(l), "plugin=\"%s\"%s%s", plugin,
             labels && *labels ? "," : "", labels ? labels : "");
    return lookup(name, NULL, type, l);
}

void
td_metrics_plugin_count(const char *plugin, const char *name,
                        const char *labels, uint64_t n)
{
    td_metric_add(plugin_metric(plugin, name, labels, M_COUNTER), n);
}

void
td_metrics_plugin_gauge(const char *plugin, const char *name,
                        const char *labels, double v)
{
    td_metric_set(plugin_metric(plugin, name, labels, M_GAUGE), v);
}

typedef struct strbuf {
    char *s;
    size_t len, cap;
} strbuf;

static void
sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_printf(strbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 0) + 256;
        b->s = td_realloc(b->s, b->cap);
    }
}

static const char *type_names[] = {"counter", "gauge", "histogram"};

static void
render_labels(strbuf *b, const char *labels, const char *extra)
{
    int has = labels && *labels, has_extra = extra && *extra;
    if (!has && !has_extra)
        return;
    sb_printf(b, "{%s%s%s}", has ? labels : "", has && has_extra ? "," : "",
              has_extra ? extra : "");
}

char *
td_metrics_render(void)
{
    strbuf b = {td_malloc(4096), 0, 4096};
    b.s[0] = '\0';
    for (size_t i = 0; i < n_families; i++) {
        family *f = &families[i];
        const char *suffix = f->type == M_COUNTER ? "_total" : "";
        sb_printf(&b, "# HELP triaged_%s%s %s\n# TYPE triaged_%s%s %s\n", f->name,
                  suffix, f->help, f->name, suffix, type_names[f->type]);
        for (size_t j = 0; j < f->n; j++) {
            td_metric *m = f->children[j];
            if (f->type == M_HISTOGRAM) {
                uint64_t cum = 0;
                for (size_t k = 0; k < NBUCKETS; k++) {
                    char le[48];
                    cum += m->buckets[k];
                    snprintf(le, sizeof(le), "le=\"%g\"", bucket_bounds[k]);
                    sb_printf(&b, "triaged_%s_bucket", f->name);
                    render_labels(&b, m->labels, le);
                    sb_printf(&b, " %llu\n", (unsigned long long)cum);
                }
                sb_printf(&b, "triaged_%s_bucket", f->name);
                render_labels(&b, m->labels, "le=\"+Inf\"");
                sb_printf(&b, " %llu\n", (unsigned long long)m->count);
                sb_printf(&b, "triaged_%s_sum", f->name);
                render_labels(&b, m->labels, NULL);
                sb_printf(&b, " %.9g\n", m->value);
                sb_printf(&b, "triaged_%s_count", f->name);
                render_labels(&b, m->labels, NULL);
                sb_printf(&b, " %llu\n", (unsigned long long)m->count);
            } else {
                sb_printf(&b, "triaged_%s%s", f->name, suffix);
                render_labels(&b, m->labels, NULL);
                if (f->type == M_COUNTER)
                    sb_printf(&b, " %llu\n", (unsigned long long)m->count);
                else
                    sb_printf(&b, " %.9g\n", m->value);
            }
        }
    }
    return b.s;
}

void
td_metrics_log(void)
{
    for (size_t i = 0; i < n_families; i++) {
        family *f = &families[i];
        for (size_t j = 0; j < f->n; j++) {
            td_metric *m = f->children[j];
            if (f->type == M_COUNTER && m->count)
                td_info("metric", "name=%s%s%s value=%llu", f->name,
                        *m->labels ? " " : "", m->labels,
                        (unsigned long long)m->count);
            else if (f->type == M_HISTOGRAM && m->count)
                td_info("metric", "name=%s%s%s count=%llu p50=%g p99=%g",
                        f->name, *m->labels ? " " : "", m->labels,
                        (unsigned long long)m->count,
                        td_metric_quantile(m, 0.5), td_metric_quantile(m, 0.99));
            else if (f->type == M_GAUGE)
                td_info("metric", "name=%s%s%s value=%g", f->name,
                        *m->labels ? " " : "", m->labels, m->value);
        }
    }
}

void
td_metrics_reset(void)
{
    for (size_t i = 0; i < n_families; i++) {
        for (size_t j = 0; j < families[i].n; j++) {
            free(families[i].children[j]->labels);
            free(families[i].children[j]);
        }
        free(families[i].children);
        free(families[i].name);
        free(families[i].help);
    }
    free(families);
    families = NULL;
    n_families = 0;
}

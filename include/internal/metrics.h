/* metrics.h — counters, gauges and histograms, rendered as Prometheus text.
 *
 * Everything runs on the loop thread, so metrics are plain integers. A metric
 * is a family (name, help, type) with children told apart by their label
 * string ("reason=\"not_json\""). Look a child up once and keep the pointer:
 * pointers stay valid until td_metrics_reset(). */
#ifndef TD_METRICS_H
#define TD_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct td_metric td_metric;

/* name without the "triaged_" prefix; labels may be NULL or "". */
td_metric *td_counter(const char *name, const char *help, const char *labels);
td_metric *td_gauge(const char *name, const char *help, const char *labels);
/* Latency histogram in seconds with fixed buckets from 100µs to 10s. */
td_metric *td_histogram(const char *name, const char *help, const char *labels);

void td_metric_add(td_metric *m, uint64_t n);
void td_metric_set(td_metric *m, double v);
void td_metric_observe(td_metric *m, double seconds);
uint64_t td_metric_value(const td_metric *m);
/* Quantile estimate from a histogram's buckets (0..1), in seconds. */
double td_metric_quantile(const td_metric *m, double q);

/* A plugin's counter: triaged_<name>{plugin="P",<labels>}. */
void td_metrics_plugin_count(const char *plugin, const char *name,
                             const char *labels, uint64_t n);
/* A plugin's gauge, labelled the same way. */
void td_metrics_plugin_gauge(const char *plugin, const char *name,
                             const char *labels, double v);

/* The whole registry as Prometheus text exposition format; free() it. */
char *td_metrics_render(void);
/* One log line per non-zero counter (used at shutdown). */
void td_metrics_log(void);
void td_metrics_reset(void);

#endif

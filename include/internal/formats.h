/* formats.h — alert formats besides the native one (DESIGN §3):
 * Alertmanager's webhook (version 4) and PagerDuty's Events API v2.
 *
 * Both decode into native td_alert values so the rest of the pipeline sees
 * one kind of alert. Reasons are the native decoder's (too_big, not_utf8,
 * not_json, not_object, empty, missing_field, bad_field), detail is one line
 * for humans. Pure code: unit-tested in tests/unit/test_formats.c.
 *
 * Alertmanager: each alert of the webhook becomes an alert with source
 * "alertmanager", check = label alertname, resource = the label named by
 * resource_label (else job, else "alertmanager"), all labels kept,
 * dedup_key = Alertmanager's fingerprint (computed from the labels when the
 * payload lacks it: FNV-1a 64 over the sorted labels, Alertmanager's own
 * function), so the alert's fingerprint is Alertmanager's. Severity from
 * label severity (critical; major/error/high; minor; warning/warn;
 * info/low/none/page..., else warning), summary from annotation summary
 * (else description), occurred_at = startsAt when firing, endsAt when
 * resolved.
 *
 * PagerDuty: source "pagerduty", dedup_key = the event's dedup_key (identity
 * = {source, dedup_key}), resource = payload.source, check = payload.class,
 * else payload.component, else "event"; payload.severity mapped
 * critical->critical, error->major, warning->warning, info->info; summary =
 * payload.summary; occurred_at = payload.timestamp; component, group and
 * class kept as labels. A resolve needs only the dedup_key. */
#ifndef TD_FORMATS_H
#define TD_FORMATS_H

#include <stddef.h>

#include "internal/alert.h"

int td_alertmanager_decode(const char *buf, size_t len, const td_decode_opts *opts,
                           const char *resource_label, td_alert **out, size_t *n,
                           const char **reason, char *detail, size_t detail_len);

typedef enum {
    TD_PD_TRIGGER,
    TD_PD_ACKNOWLEDGE,
    TD_PD_RESOLVE,
} td_pd_action;

/* A validated PagerDuty event. alert is set for trigger and resolve. */
typedef struct td_pd_event {
    td_pd_action action;
    char *routing_key;
    char *dedup_key; /* generated for a trigger without one: key_generated */
    int key_generated;
    td_alert alert;
} td_pd_event;

/* Validate and decode one event. On TD_ERR, detail holds PagerDuty-style
 * error strings separated by '\n' ("'payload.summary' is missing or blank"). */
int td_pagerduty_parse(const char *buf, size_t len, const td_decode_opts *opts,
                       td_pd_event *ev, const char **reason, char *detail,
                       size_t detail_len);
void td_pd_event_clear(td_pd_event *ev);
const char *td_pd_action_name(td_pd_action a);

/* For the pipeline (TD_FMT_PAGERDUTY): trigger and resolve become one alert;
 * an acknowledge is not an alert and is rejected here (bad_field): it is
 * applied by the HTTP server at POST /v2/enqueue. */
int td_pagerduty_decode(const char *buf, size_t len, const td_decode_opts *opts,
                        td_alert **out, size_t *n, const char **reason,
                        char *detail, size_t detail_len);

/* A fresh dedup_key: 32 random hex digits. */
void td_pd_new_key(char out[33]);

#endif

/* formats.c — Alertmanager webhook v4 and PagerDuty Events v2 decoding
 * (see formats.h).
 *
 * Input is untrusted, as in alert.c: the size is checked before parsing,
 * Jansson validates UTF-8, every field's type and length is checked, and
 * every rejection has a reason. Field limits are the native alert's. */
#include "internal/formats.h"

#include <jansson.h>
#include <stdarg.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal/errors.h"
#include "internal/util.h"

#define MAX_FIELD 1024
#define MAX_SUMMARY 4096
#define MAX_LABELS 64
#define PD_MAX_DEDUP_KEY 255

static int
failf(const char **reason, const char *r, char *detail, size_t dlen, const char *fmt,
      ...) __attribute__((format(printf, 5, 6)));

static int
failf(const char **reason, const char *r, char *detail, size_t dlen, const char *fmt, ...)
{
    va_list ap;
    *reason = r;
    va_start(ap, fmt);
    vsnprintf(detail, dlen, fmt, ap);
    va_end(ap);
    return TD_ERR;
}

static json_t *
load(const char *buf, size_t len, const td_decode_opts *opts, const char **reason,
     char *detail, size_t dlen)
{
    return td_json_message(buf, len, opts->max_size, reason, detail, dlen);
}

/* A string that is safe to keep: no NUL, within max bytes. NULL otherwise. */
static const char *
str_of(json_t *v, size_t max)
{
    if (!json_is_string(v) || json_string_length(v) > max ||
        memchr(json_string_value(v), '\0', json_string_length(v)))
        return NULL;
    return json_string_value(v);
}

static int
label_cmp(const void *a, const void *b)
{
    return strcmp(((const td_label *)a)->name, ((const td_label *)b)->name);
}

static const char *
label_get(const td_alert *a, const char *name)
{
    for (size_t i = 0; i < a->n_labels; i++)
        if (strcmp(a->labels[i].name, name) == 0)
            return a->labels[i].value;
    return NULL;
}

static td_severity
am_severity(const char *s)
{
    static const struct {
        const char *name;
        td_severity sev;
    } map[] = {
        {"critical", TD_SEV_CRITICAL}, {"fatal", TD_SEV_CRITICAL},
        {"emergency", TD_SEV_CRITICAL}, {"major", TD_SEV_MAJOR},
        {"error", TD_SEV_MAJOR},       {"high", TD_SEV_MAJOR},
        {"minor", TD_SEV_MINOR},       {"medium", TD_SEV_MINOR},
        {"warning", TD_SEV_WARNING},   {"warn", TD_SEV_WARNING},
        {"info", TD_SEV_INFO},         {"low", TD_SEV_INFO},
        {"none", TD_SEV_INFO},
    };
    if (s)
        for (size_t i = 0; i < TD_ARRAY_LEN(map); i++)
            if (strcasecmp(s, map[i].name) == 0)
                return map[i].sev;
    return TD_SEV_WARNING;
}


static int
am_one(json_t *obj, const td_decode_opts *opts, const char *resource_label, td_alert *a,
       const char **reason, char *detail, size_t dlen)
{
    memset(a, 0, sizeof(*a));
    if (!json_is_object(obj))
        return failf(reason, "not_object", detail, dlen, "an alert must be a JSON object");
    json_t *labels = json_object_get(obj, "labels");
    if (!json_is_object(labels))
        return failf(reason, "missing_field", detail, dlen,
                     "missing required field 'labels' (an object)");
    if (json_object_size(labels) > MAX_LABELS)
        return failf(reason, "bad_field", detail, dlen, "more than 64 labels");
    a->labels = td_calloc(json_object_size(labels) + 1, sizeof(*a->labels));
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v)
    {
        const char *s = str_of(v, MAX_FIELD);
        if (!s || strlen(k) > MAX_FIELD) {
            failf(reason, "bad_field", detail, dlen,
                  "label '%.64s' must be a string of at most 1024 bytes", k);
            goto fail;
        }
        a->labels[a->n_labels].name = td_strdup(k);
        a->labels[a->n_labels].value = td_strdup(s);
        a->n_labels++;
    }
    qsort(a->labels, a->n_labels, sizeof(*a->labels), label_cmp);

    const char *status = str_of(json_object_get(obj, "status"), 16);
    if (!status || (strcmp(status, "firing") != 0 && strcmp(status, "resolved") != 0)) {
        failf(reason, "bad_field", detail, dlen,
              "alert 'status' must be firing or resolved");
        goto fail;
    }
    a->firing = strcmp(status, "firing") == 0;

    /* Alertmanager's fingerprint: given, or computed from the labels. */
    json_t *fpv = json_object_get(obj, "fingerprint");
    if (fpv && !json_is_null(fpv) && !(json_is_string(fpv) && json_string_length(fpv) == 0)) {
        const char *fp = str_of(fpv, 16);
        if (!fp || !td_is_fp_hex(fp)) {
            failf(reason, "bad_field", detail, dlen,
                  "'fingerprint' must be 16 lower-case hex digits");
            goto fail;
        }
        a->dedup_key = td_strdup(fp);
    } else {
        const char **names = td_calloc(a->n_labels + 1, sizeof(*names));
        const char **values = td_calloc(a->n_labels + 1, sizeof(*values));
        for (size_t i = 0; i < a->n_labels; i++) {
            names[i] = a->labels[i].name;
            values[i] = a->labels[i].value;
        }
        char hex[17];
        td_fp_hex(td_fnv1a_labels(names, values, a->n_labels), hex);
        free(names);
        free(values);
        a->dedup_key = td_strdup(hex);
    }

    const char *alertname = label_get(a, "alertname");
    const char *resource = label_get(a, resource_label ? resource_label : "instance");
    if (!resource)
        resource = label_get(a, "job");
    a->source = td_strdup("alertmanager");
    a->check = td_strdup(alertname && *alertname ? alertname : "alertmanager");
    a->resource = td_strdup(resource && *resource ? resource : "alertmanager");
    a->severity = am_severity(label_get(a, "severity"));

    json_t *ann = json_object_get(obj, "annotations");
    if (json_is_object(ann)) {
        const char *s = str_of(json_object_get(ann, "summary"), MAX_SUMMARY);
        if (!s)
            s = str_of(json_object_get(ann, "description"), MAX_SUMMARY);
        if (s && *s)
            a->summary = td_strdup(s);
    }

    a->occurred_at_us = opts->now_us;
    const char *when = str_of(json_object_get(obj, a->firing ? "startsAt" : "endsAt"), 64);
    int64_t us;
    /* Alertmanager sends "0001-01-01T00:00:00Z" for an unset endsAt. */
    if (when && td_parse_rfc3339(when, &us) == TD_OK && us > 0)
        a->occurred_at_us = us;
    td_alert_fingerprint(a, NULL, 0);
    return TD_OK;
fail:
    td_alert_clear(a);
    return TD_ERR;
}

int
td_alertmanager_decode(const char *buf, size_t len, const td_decode_opts *opts,
                       const char *resource_label, td_alert **out, size_t *n,
                       const char **reason, char *detail, size_t dlen)
{
    *out = NULL;
    *n = 0;
    json_t *root = load(buf, len, opts, reason, detail, dlen);
    if (!root)
        return TD_ERR;
    int rc = TD_ERR;
    if (!json_is_object(root)) {
        failf(reason, "not_object", detail, dlen, "the webhook must be a JSON object");
        goto out;
    }
    const char *version = str_of(json_object_get(root, "version"), 8);
    if (!version || strcmp(version, "4") != 0) {
        failf(reason, "bad_field", detail, dlen,
              "'version' must be \"4\" (Alertmanager webhook version 4)");
        goto out;
    }
    json_t *alerts = json_object_get(root, "alerts");
    if (!json_is_array(alerts)) {
        failf(reason, "missing_field", detail, dlen, "missing required field 'alerts'");
        goto out;
    }
    size_t count = json_array_size(alerts);
    if (count == 0) {
        failf(reason, "empty", detail, dlen, "'alerts' holds no alert");
        goto out;
    }
    td_alert *v = td_calloc(count, sizeof(*v));
    for (size_t i = 0; i < count; i++) {
        if (am_one(json_array_get(alerts, i), opts, resource_label, &v[i], reason, detail,
                   dlen) != TD_OK) {
            for (size_t j = 0; j < i; j++)
                td_alert_clear(&v[j]);
            free(v);
            size_t l = strlen(detail);
            snprintf(detail + l, dlen - l, " (alert %zu)", i);
            goto out;
        }
    }
    *out = v;
    *n = count;
    rc = TD_OK;
out:
    json_decref(root);
    return rc;
}

/* ---- PagerDuty Events API v2 ------------------------------------------ */

static const char *pd_actions[] = {"trigger", "acknowledge", "resolve"};

const char *
td_pd_action_name(td_pd_action a)
{
    return (unsigned)a < TD_ARRAY_LEN(pd_actions) ? pd_actions[a] : "?";
}

void
td_pd_new_key(char out[33])
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof(r)) != 1) {
        fprintf(stderr, "triaged: RAND_bytes failed\n");
        abort();
    }
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* Append one PagerDuty-style error line to detail. */
static void
pd_err(char *detail, size_t dlen, int *nerr, const char *msg)
{
    size_t l = strlen(detail);
    if (l + 1 < dlen)
        snprintf(detail + l, dlen - l, "%s%s", *nerr ? "\n" : "", msg);
    (*nerr)++;
}

/* A required non-blank string, or an optional one; PagerDuty's wording. */
static const char *
pd_str(json_t *obj, const char *key, const char *path, int required, size_t max,
       char *detail, size_t dlen, int *nerr)
{
    char msg[160];
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0)) {
        if (required) {
            snprintf(msg, sizeof(msg), "'%s' is missing or blank", path);
            pd_err(detail, dlen, nerr, msg);
        }
        return NULL;
    }
    const char *s = str_of(v, max);
    if (!s) {
        snprintf(msg, sizeof(msg), "'%s' must be a string of at most %zu characters",
                 path, max);
        pd_err(detail, dlen, nerr, msg);
    }
    return s;
}

int
td_pagerduty_parse(const char *buf, size_t len, const td_decode_opts *opts,
                   td_pd_event *ev, const char **reason, char *detail, size_t dlen)
{
    int nerr = 0;
    memset(ev, 0, sizeof(*ev));
    detail[0] = '\0';
    json_t *root = load(buf, len, opts, reason, detail, dlen);
    if (!root)
        return TD_ERR;
    if (!json_is_object(root)) {
        json_decref(root);
        return failf(reason, "not_object", detail, dlen, "Event must be a JSON object");
    }
    const char *rk = pd_str(root, "routing_key", "routing_key", 1, 128, detail, dlen, &nerr);
    const char *act = pd_str(root, "event_action", "event_action", 1, 16, detail, dlen, &nerr);
    const char *dk = pd_str(root, "dedup_key", "dedup_key", 0, PD_MAX_DEDUP_KEY, detail,
                            dlen, &nerr);
    int action = -1;
    if (act) {
        for (size_t i = 0; i < TD_ARRAY_LEN(pd_actions); i++)
            if (strcmp(act, pd_actions[i]) == 0)
                action = (int)i;
        if (action < 0)
            pd_err(detail, dlen, &nerr,
                   "'event_action' must be one of trigger, acknowledge, resolve");
    }
    if ((action == TD_PD_ACKNOWLEDGE || action == TD_PD_RESOLVE) && !dk &&
        !json_object_get(root, "dedup_key"))
        pd_err(detail, dlen, &nerr, "'dedup_key' is missing or blank");
    const char *summary = NULL, *source = NULL, *sev = NULL, *ts = NULL, *component = NULL,
               *group = NULL, *class = NULL;
    td_severity severity = TD_SEV_WARNING;
    int64_t occurred = opts->now_us;
    if (action == TD_PD_TRIGGER) {
        json_t *payload = json_object_get(root, "payload");
        if (!json_is_object(payload)) {
            pd_err(detail, dlen, &nerr, "'payload' is missing or not an object");
        } else {
            summary = pd_str(payload, "summary", "payload.summary", 1, 1024, detail, dlen,
                             &nerr);
            source = pd_str(payload, "source", "payload.source", 1, MAX_FIELD, detail, dlen,
                            &nerr);
            sev = pd_str(payload, "severity", "payload.severity", 1, 16, detail, dlen, &nerr);
            ts = pd_str(payload, "timestamp", "payload.timestamp", 0, 64, detail, dlen, &nerr);
            component = pd_str(payload, "component", "payload.component", 0, MAX_FIELD,
                               detail, dlen, &nerr);
            group = pd_str(payload, "group", "payload.group", 0, MAX_FIELD, detail, dlen,
                           &nerr);
            class = pd_str(payload, "class", "payload.class", 0, MAX_FIELD, detail, dlen,
                           &nerr);
            if (sev) {
                static const char *pd_sev[] = {"critical", "error", "warning", "info"};
                static const td_severity map[] = {TD_SEV_CRITICAL, TD_SEV_MAJOR,
                                                  TD_SEV_WARNING, TD_SEV_INFO};
                size_t i;
                for (i = 0; i < TD_ARRAY_LEN(pd_sev); i++)
                    if (strcmp(sev, pd_sev[i]) == 0)
                        break;
                if (i == TD_ARRAY_LEN(pd_sev))
                    pd_err(detail, dlen, &nerr,
                           "'payload.severity' must be one of critical, error, warning, info");
                else
                    severity = map[i];
            }
            if (ts && td_parse_rfc3339(ts, &occurred) != TD_OK)
                pd_err(detail, dlen, &nerr, "'payload.timestamp' is not a valid ISO 8601 time");
        }
    }
    if (nerr) {
        json_decref(root);
        *reason = strstr(detail, "missing") ? "missing_field" : "bad_field";
        return TD_ERR;
    }

    ev->action = (td_pd_action)action;
    ev->routing_key = td_strdup(rk);
    if (dk) {
        ev->dedup_key = td_strdup(dk);
    } else {
        char key[33];
        td_pd_new_key(key);
        ev->dedup_key = td_strdup(key);
        ev->key_generated = 1;
    }
    if (action != TD_PD_ACKNOWLEDGE) {
        td_alert *a = &ev->alert;
        a->source = td_strdup("pagerduty");
        a->dedup_key = td_strdup(ev->dedup_key);
        a->firing = action == TD_PD_TRIGGER;
        a->severity = severity;
        a->occurred_at_us = occurred;
        if (action == TD_PD_TRIGGER) {
            a->resource = td_strdup(source);
            a->check = td_strdup(class ? class : component ? component : "event");
            a->summary = td_strdup(summary);
            const char *ln[] = {"class", "component", "group"};
            const char *lv[] = {class, component, group};
            a->labels = td_calloc(3, sizeof(*a->labels));
            for (size_t i = 0; i < 3; i++)
                if (lv[i]) {
                    a->labels[a->n_labels].name = td_strdup(ln[i]);
                    a->labels[a->n_labels].value = td_strdup(lv[i]);
                    a->n_labels++;
                }
        } else {
            /* A resolve names the alert by dedup_key only; an existing
             * alert keeps its resource and check. */
            a->resource = td_strdup("pagerduty");
            a->check = td_strdup("event");
        }
        td_alert_fingerprint(a, NULL, 0);
    }
    json_decref(root);
    return TD_OK;
}

void
td_pd_event_clear(td_pd_event *ev)
{
    free(ev->routing_key);
    free(ev->dedup_key);
    td_alert_clear(&ev->alert);
    memset(ev, 0, sizeof(*ev));
}

int
td_pagerduty_decode(const char *buf, size_t len, const td_decode_opts *opts,
                    td_alert **out, size_t *n, const char **reason, char *detail,
                    size_t dlen)
{
    td_pd_event ev;
    *out = NULL;
    *n = 0;
    if (td_pagerduty_parse(buf, len, opts, &ev, reason, detail, dlen) != TD_OK) {
        for (char *p = detail; *p; p++)
            if (*p == '\n')
                *p = ';';
        return TD_ERR;
    }
    if (ev.action == TD_PD_ACKNOWLEDGE) {
        td_pd_event_clear(&ev);
        return failf(reason, "bad_field", detail, dlen,
                     "acknowledge is applied by the HTTP server (POST /v2/enqueue), "
                     "not the alert pipeline");
    }
    *out = td_malloc(sizeof(**out));
    **out = ev.alert;
    memset(&ev.alert, 0, sizeof(ev.alert));
    *n = 1;
    td_pd_event_clear(&ev);
    return TD_OK;
}

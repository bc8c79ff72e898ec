/* api_intake.c — alerts in over HTTP: native, Alertmanager, PagerDuty.
 *
 * The design is simple: the body goes to the pipeline through the host's
 * submit path, like any input's message, and the request is answered in the
 * message's ack, that is only once its alerts are committed in PostgreSQL
 * (2xx means durable), or rejected for good (400, 413 for too_big), or not
 * processed (503 with Retry-After: stopping, backend down). While the
 * pipeline is full, new intake requests get 503 at once instead of queueing
 * without bound. PagerDuty events are validated here first, so their 400
 * has PagerDuty's body; an acknowledge is not an alert and is applied on the
 * API's PostgreSQL connection (api_incidents.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/alert.h"
#include "internal/formats.h"
#include "internal/http_internal.h"
#include "internal/log.h"
#include "internal/util.h"

enum { KIND_NATIVE, KIND_PAGERDUTY };

typedef struct intake {
    int kind;
    char *dedup_key; /* PagerDuty */
} intake;

static void
pd_success(td_req *r, const char *key)
{
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("success"));
    json_object_set_new(o, "message", json_string("Event processed"));
    json_object_set_new(o, "dedup_key", json_string(key));
    td_req_reply_json(r, 202, o);
}

static void
on_ack(void *arg, const td_ack *ack)
{
    td_req *r = arg;
    td_http *h = r->h;
    intake *in = r->ctx;
    td_metric_observe(h->m_ack_latency, (double)(td_mono_ms() * 1000 - r->t0_us) / 1e6);
    switch (ack->status) {
    case TD_ACK_OK:
        td_metric_add(h->m_intake_alerts, ack->accepted);
        if (in->kind == KIND_PAGERDUTY) {
            pd_success(r, in->dedup_key);
        } else {
            json_t *o = json_object();
            json_object_set_new(o, "accepted", json_integer((json_int_t)ack->accepted));
            td_req_reply_json(r, 202, o);
        }
        break;
    case TD_ACK_INVALID:
        td_req_error(r, strcmp(ack->reason, "too_big") == 0 ? 413 : 400, ack->reason, "%s",
                     ack->detail ? ack->detail : ack->reason);
        break;
    default:
        td_metric_add(h->m_intake_busy, 1);
        td_req_header(r, "Retry-After", "1");
        td_req_error(r, 503, "unavailable", "not processed (%s); retry",
                     ack->detail ? ack->detail : ack->reason);
        break;
    }
    free(in->dedup_key);
    free(in);
}

/* 0: the pipeline takes messages; else answered 503. */
static int
check_taking(td_req *r)
{
    td_http *h = r->h;
    if (!h->stopping && !h->full)
        return 0;
    td_metric_add(h->m_intake_busy, 1);
    td_req_header(r, "Retry-After", "1");
    td_req_error(r, 503, h->stopping ? "stopping" : "busy",
                 h->stopping ? "triaged is stopping" : "the alert queue is full; retry");
    return -1;
}

static void
submit(td_req *r, td_format fmt, const char *data, size_t len, int kind, const char *key)
{
    td_http *h = r->h;
    intake *in = td_calloc(1, sizeof(*in));
    in->kind = kind;
    in->dedup_key = key ? td_strdup(key) : NULL;
    r->ctx = in;
    td_req_defer(r);
    td_input_msg msg = {.format = fmt, .data = data, .len = len, .ack = on_ack,
                        .ack_arg = r};
    /* The ack may run inside submit (e.g. the pipeline refuses at once). */
    if (td_host_submit(h->hc, TD_BUILTIN_HTTP, &msg) == TD_SUBMIT_FULL)
        h->full = true;
}

void
td_api_alerts_post(td_req *r, const char *arg)
{
    (void)arg;
    if (check_taking(r) == 0)
        submit(r, TD_FMT_ALERT, r->body, r->body_len, KIND_NATIVE, NULL);
}

void
td_api_capacity_samples_post(td_req *r, const char *arg)
{
    (void)arg;
    if (check_taking(r) == 0)
        submit(r, TD_FMT_CAPACITY, r->body, r->body_len, KIND_NATIVE, NULL);
}

void
td_api_alertmanager_post(td_req *r, const char *arg)
{
    (void)arg;
    if (check_taking(r) == 0)
        submit(r, TD_FMT_ALERTMANAGER, r->body, r->body_len, KIND_NATIVE, NULL);
}

/* ---- PagerDuty ---------------------------------------------------------- */

static void
pd_invalid(td_req *r, const char *detail)
{
    json_t *o = json_object(), *errs = json_array();
    char *copy = td_strdup(detail), *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_t *s = json_string(l);
        json_array_append_new(errs, s ? s : json_string("invalid text"));
    }
    free(copy);
    json_object_set_new(o, "status", json_string("invalid event"));
    json_object_set_new(o, "message", json_string("Event object is invalid"));
    json_object_set_new(o, "errors", errs);
    td_req_reply_json(r, 400, o);
}

typedef struct pd_ack_ctx {
    td_req *r;
    char *key;
} pd_ack_ctx;

static void
on_pd_acknowledged(void *arg, const char *err)
{
    pd_ack_ctx *c = arg;
    if (err) {
        /* PostgreSQL's words (hosts, functions) go to the log only. */
        td_warn("pagerduty: acknowledge not applied", "error=\"%s\"", TD_LOG_VALUE(err));
        td_req_header(c->r, "Retry-After", "1");
        td_req_error(c->r, 503, "unavailable", "acknowledge not applied; retry");
    } else {
        pd_success(c->r, c->key);
    }
    free(c->key);
    free(c);
}

void
td_api_pagerduty_post(td_req *r, const char *arg)
{
    td_http *h = r->h;
    td_pd_event ev;
    const char *reason;
    char detail[1024];
    (void)arg;
    td_decode_opts o = {.max_size = (size_t)h->cfg->max_message_size,
                        .now_us = td_now_ms() * 1000};
    if (td_pagerduty_parse(r->body, r->body_len, &o, &ev, &reason, detail,
                           sizeof(detail)) != TD_OK) {
        if (strcmp(reason, "too_big") == 0)
            td_req_error(r, 413, reason, "%s", detail);
        else if (strcmp(reason, "not_json") == 0 || strcmp(reason, "not_utf8") == 0 ||
                 strcmp(reason, "not_object") == 0) {
            pd_invalid(r, "Event object is not valid JSON");
        } else
            pd_invalid(r, detail);
        return;
    }
    if (check_taking(r) != 0) {
        td_pd_event_clear(&ev);
        return;
    }
    if (ev.action == TD_PD_ACKNOWLEDGE) {
        td_alert a = {.source = (char *)"pagerduty", .dedup_key = ev.dedup_key};
        td_alert_fingerprint(&a, NULL, 0);
        pd_ack_ctx *c = td_calloc(1, sizeof(*c));
        c->r = r;
        c->key = td_strdup(ev.dedup_key);
        td_req_defer(r);
        td_api_pd_acknowledge(h, a.fp_hex, r->actor, on_pd_acknowledged, c);
        td_pd_event_clear(&ev);
        return;
    }
    if (ev.key_generated) {
        /* The pipeline decodes the body again: give it the key we return. */
        json_t *root = json_loadb(r->body, r->body_len, 0, NULL);
        json_object_set_new(root, "dedup_key", json_string(ev.dedup_key));
        char *s = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        submit(r, TD_FMT_PAGERDUTY, s, strlen(s), KIND_PAGERDUTY, ev.dedup_key);
        free(s);
    } else {
        submit(r, TD_FMT_PAGERDUTY, r->body, r->body_len, KIND_PAGERDUTY, ev.dedup_key);
    }
    td_pd_event_clear(&ev);
}

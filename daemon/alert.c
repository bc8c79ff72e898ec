/* alert.c — native alert decoding and the fingerprint (see alert.h).
 *
 * Input is untrusted: sizes are checked before parsing, Jansson validates
 * UTF-8, every field's type is checked, and a reason code comes back for
 * every rejection so inputs can count and dead-letter it. Never a crash. */
#include "internal/alert.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal/errors.h"
#include "internal/util.h"

#define FNV_PRIME 0x100000001b3ULL
#define SEP 0xff

/* Field limits: beyond them a field is bad_field, not truncated. */
#define MAX_FIELD 1024
#define MAX_SUMMARY 4096
#define MAX_LABELS 64

static const char *severity_names[] = {"critical", "major", "minor", "warning",
                                       "info"};

const char *
td_severity_name(td_severity s)
{
    return (unsigned)s < TD_ARRAY_LEN(severity_names) ? severity_names[s]
                                                       : "warning";
}

int
td_severity_parse(const char *s, td_severity *out)
{
    for (size_t i = 0; i < TD_ARRAY_LEN(severity_names); i++)
        if (strcmp(s, severity_names[i]) == 0) {
            *out = (td_severity)i;
            return TD_OK;
        }
    return TD_ERR;
}

static uint64_t
fnv_bytes(uint64_t h, const char *s)
{
    h = td_fnv1a(h, s);
    h ^= SEP;
    h *= FNV_PRIME;
    return h;
}

uint64_t
td_fnv1a_labels(const char *const *names, const char *const *values, size_t n)
{
    uint64_t h = TD_FNV1A_OFFSET;
    for (size_t i = 0; i < n; i++) {
        h = fnv_bytes(h, names[i]);
        h = fnv_bytes(h, values[i]);
    }
    return h;
}

void
td_fp_hex(uint64_t fp, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, fp >>= 4)
        out[i] = hex[fp & 15];
    out[16] = '\0';
}

int
td_is_fp_hex(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return 0;
    return n == 16;
}

typedef struct pair {
    const char *name, *value;
    size_t name_len; /* an identity label's name is "label:" + name */
} pair;

/* Compare pair names, an identity label's as "label:<name>". */
static int
pair_cmp(const void *x, const void *y)
{
    const pair *a = x, *b = y;
    const char *pa = a->name_len ? "label:" : "", *pb = b->name_len ? "label:" : "";
    const char *sa = a->name, *sb = b->name;
    for (;;) {
        unsigned char ca = *pa ? (unsigned char)*pa : (unsigned char)*sa;
        unsigned char cb = *pb ? (unsigned char)*pb : (unsigned char)*sb;
        if (ca != cb || ca == 0)
            return ca - cb;
        if (*pa)
            pa++;
        else
            sa++;
        if (*pb)
            pb++;
        else
            sb++;
    }
}

void
td_alert_fingerprint(td_alert *a, const char *const *identity_labels,
                     size_t n_identity_labels)
{
    if (a->dedup_key && strcmp(a->source, "alertmanager") == 0 &&
        td_is_fp_hex(a->dedup_key)) {
        a->fp = strtoull(a->dedup_key, NULL, 16);
        td_fp_hex(a->fp, a->fp_hex);
        return;
    }
    pair local[8];
    pair *p = 3 + n_identity_labels <= TD_ARRAY_LEN(local)
                  ? local
                  : td_calloc(3 + n_identity_labels, sizeof(*p));
    size_t n = 0;
    p[n++] = (pair){"source", a->source, 0};
    if (a->dedup_key) {
        p[n++] = (pair){"dedup_key", a->dedup_key, 0};
    } else {
        p[n++] = (pair){"resource", a->resource, 0};
        p[n++] = (pair){"check", a->check, 0};
        for (size_t i = 0; i < n_identity_labels; i++)
            for (size_t j = 0; j < a->n_labels; j++)
                if (strcmp(a->labels[j].name, identity_labels[i]) == 0) {
                    p[n++] = (pair){identity_labels[i], a->labels[j].value,
                                    strlen(identity_labels[i])};
                    break;
                }
    }
    qsort(p, n, sizeof(*p), pair_cmp);
    /* td_fnv1a_labels over the sorted pairs, the prefix hashed in place */
    uint64_t h = TD_FNV1A_OFFSET;
    for (size_t i = 0; i < n; i++) {
        if (p[i].name_len)
            h = td_fnv1a(h, "label:");
        h = fnv_bytes(h, p[i].name);
        h = fnv_bytes(h, p[i].value);
    }
    a->fp = h;
    td_fp_hex(a->fp, a->fp_hex);
    if (p != local)
        free(p);
}

void
td_alert_clear(td_alert *a)
{
    if (a->mem) {
        free(a->mem);
        memset(a, 0, sizeof(*a));
        return;
    }
    free(a->source);
    free(a->resource);
    free(a->check);
    free(a->summary);
    free(a->dedup_key);
    free(a->ci);
    for (size_t i = 0; i < a->n_labels; i++) {
        free(a->labels[i].name);
        free(a->labels[i].value);
    }
    free(a->labels);
    memset(a, 0, sizeof(*a));
}

static bool
same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool
td_alert_same(const td_alert *a, const td_alert *b)
{
    if (!same_str(a->source, b->source) || !same_str(a->resource, b->resource) ||
        !same_str(a->check, b->check) || !same_str(a->summary, b->summary) ||
        !same_str(a->dedup_key, b->dedup_key) || !same_str(a->ci, b->ci) ||
        a->n_labels != b->n_labels || a->firing != b->firing ||
        a->severity != b->severity || a->occurred_at_us != b->occurred_at_us ||
        a->fp != b->fp || strcmp(a->fp_hex, b->fp_hex) != 0)
        return false;
    for (size_t i = 0; i < a->n_labels; i++)
        if (strcmp(a->labels[i].name, b->labels[i].name) != 0 ||
            strcmp(a->labels[i].value, b->labels[i].value) != 0)
            return false;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int
digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9')
            return TD_ERR;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return TD_OK;
}

int
td_parse_rfc3339(const char *s, int64_t *us)
{
    int Y, M, D, h, m, sec, frac_us = 0;
    if (digits(&s, 4, &Y) || *s++ != '-' || digits(&s, 2, &M) || *s++ != '-' ||
        digits(&s, 2, &D) || (*s != 'T' && *s != 't' && *s != ' '))
        return TD_ERR;
    s++;
    if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &m) || *s++ != ':' ||
        digits(&s, 2, &sec))
        return TD_ERR;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return TD_ERR;
    if (*s == '.') {
        s++;
        int nd = 0;
        while (*s >= '0' && *s <= '9') {
            if (nd < 6)
                frac_us = frac_us * 10 + (*s - '0');
            nd++;
            s++;
        }
        if (nd == 0 || nd > 9)
            return TD_ERR;
        for (int i = nd; i < 6; i++)
            frac_us *= 10;
    }
    int off = 0;
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int sign = *s++ == '-' ? -1 : 1, oh, om;
        if (digits(&s, 2, &oh))
            return TD_ERR;
        if (*s == ':')
            s++;
        if (digits(&s, 2, &om) || oh > 23 || om > 59)
            return TD_ERR;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return TD_ERR;
    }
    if (*s)
        return TD_ERR;
    if (sec == 60)
        sec = 59; /* a leap second folds into the second before */
    int64_t t = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 +
                h * 3600 + m * 60 + sec - off;
    *us = t * 1000000 + frac_us;
    return TD_OK;
}

void
td_format_rfc3339(int64_t us, char out[32])
{
    time_t t = (time_t)(us / 1000000);
    int64_t frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        t -= 1;
    }
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%06lldZ", (long long)frac);
}

static int
fail(const char **reason, const char *r, char *detail, size_t dlen,
     const char *fmt, const char *arg)
{
    *reason = r;
    snprintf(detail, dlen, fmt, arg);
    return TD_ERR;
}

/* A string field: absent is ok unless required; present must be a
 * non-empty string within max bytes. */
static int
str_field(json_t *obj, const char *name, int required, size_t max, char **out,
          const char **reason, char *detail, size_t dlen)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) {
        if (required)
            return fail(reason, "missing_field", detail, dlen,
                        "missing required field '%s'", name);
        return TD_OK;
    }
    if (!json_is_string(v))
        return fail(reason, "bad_field", detail, dlen,
                    "field '%s' must be a string", name);
    size_t len = json_string_length(v);
    if (len == 0 && required)
        return fail(reason, "missing_field", detail, dlen,
                    "required field '%s' is empty", name);
    if (len > max)
        return fail(reason, "bad_field", detail, dlen, "field '%s' is too long",
                    name);
    if (memchr(json_string_value(v), '\0', len))
        return fail(reason, "bad_field", detail, dlen,
                    "field '%s' contains a NUL byte", name);
    if (len)
        *out = td_strndup(json_string_value(v), len);
    return TD_OK;
}

static int
label_cmp(const void *a, const void *b)
{
    return strcmp(((const td_label *)a)->name, ((const td_label *)b)->name);
}

static int
decode_one(json_t *obj, const td_decode_opts *opts, td_alert *a,
           const char **reason, char *detail, size_t dlen)
{
    char *status = NULL, *severity = NULL, *occurred = NULL;
    int rc = TD_ERR;

    memset(a, 0, sizeof(*a));
    if (!json_is_object(obj))
        return fail(reason, "not_object", detail, dlen, "%s",
                    "an alert must be a JSON object");
    if (str_field(obj, "source", 1, MAX_FIELD, &a->source, reason, detail, dlen) ||
        str_field(obj, "resource", 1, MAX_FIELD, &a->resource, reason, detail, dlen) ||
        str_field(obj, "check", 1, MAX_FIELD, &a->check, reason, detail, dlen) ||
        str_field(obj, "summary", 0, MAX_SUMMARY, &a->summary, reason, detail, dlen) ||
        str_field(obj, "dedup_key", 0, MAX_FIELD, &a->dedup_key, reason, detail, dlen) ||
        str_field(obj, "ci", 0, MAX_FIELD, &a->ci, reason, detail, dlen) ||
        str_field(obj, "status", 0, 16, &status, reason, detail, dlen) ||
        str_field(obj, "severity", 0, 16, &severity, reason, detail, dlen) ||
        str_field(obj, "occurred_at", 0, 64, &occurred, reason, detail, dlen))
        goto out;

    a->firing = true;
    if (status) {
        if (strcmp(status, "resolved") == 0)
            a->firing = false;
        else if (strcmp(status, "firing") != 0) {
            fail(reason, "bad_field", detail, dlen,
                 "status '%.32s' is not firing or resolved", status);
            goto out;
        }
    }
    a->severity = TD_SEV_WARNING;
    if (severity && td_severity_parse(severity, &a->severity) != TD_OK) {
        fail(reason, "bad_field", detail, dlen,
             "severity '%.32s' is not one of critical major minor warning info",
             severity);
        goto out;
    }
    a->occurred_at_us = opts->now_us;
    if (occurred && td_parse_rfc3339(occurred, &a->occurred_at_us) != TD_OK) {
        fail(reason, "bad_field", detail, dlen,
             "occurred_at '%.64s' is not an RFC 3339 time", occurred);
        goto out;
    }

    json_t *labels = json_object_get(obj, "labels");
    if (labels && !json_is_null(labels)) {
        if (!json_is_object(labels)) {
            fail(reason, "bad_field", detail, dlen, "%s",
                 "labels must be an object of strings");
            goto out;
        }
        if (json_object_size(labels) > MAX_LABELS) {
            fail(reason, "bad_field", detail, dlen, "%s", "more than 64 labels");
            goto out;
        }
        a->labels = td_calloc(json_object_size(labels), sizeof(*a->labels));
        const char *k;
        json_t *v;
        json_object_foreach(labels, k, v)
        {
            if (!json_is_string(v) || json_string_length(v) > MAX_FIELD ||
                strlen(k) > MAX_FIELD ||
                memchr(json_string_value(v), '\0', json_string_length(v))) {
                fail(reason, "bad_field", detail, dlen,
                     "label '%.64s' must be a string of at most 1024 bytes", k);
                goto out;
            }
            a->labels[a->n_labels].name = td_strdup(k);
            a->labels[a->n_labels].value = td_strdup(json_string_value(v));
            a->n_labels++;
        }
        qsort(a->labels, a->n_labels, sizeof(*a->labels), label_cmp);
    }
    td_alert_fingerprint(a, opts->identity_labels, opts->n_identity_labels);
    rc = TD_OK;
out:
    free(status);
    free(severity);
    free(occurred);
    if (rc != TD_OK)
        td_alert_clear(a);
    return rc;
}

json_t *
td_json_message(const char *buf, size_t len, size_t max_size, const char **reason,
                char *detail, size_t detail_len)
{
    json_error_t jerr;
    if (max_size && len > max_size) {
        *reason = "too_big";
        snprintf(detail, detail_len, "message of %zu bytes exceeds the limit of %zu", len,
                 max_size);
        return NULL;
    }
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        *reason = json_error_code(&jerr) == json_error_invalid_utf8 ? "not_utf8" : "not_json";
        snprintf(detail, detail_len, "%s at position %d", jerr.text, jerr.position);
    }
    return root;
}

int
td_alert_decode(const char *buf, size_t len, const td_decode_opts *opts,
                td_alert **out, size_t *n, const char **reason, char *detail,
                size_t detail_len)
{
    if (td_alert_scan(buf, len, opts, out, n) == TD_OK)
        return TD_OK;
    return td_alert_decode_tree(buf, len, opts, out, n, reason, detail, detail_len);
}

int
td_alert_decode_tree(const char *buf, size_t len, const td_decode_opts *opts,
                     td_alert **out, size_t *n, const char **reason, char *detail,
                     size_t detail_len)
{
    *out = NULL;
    *n = 0;
    json_t *root = td_json_message(buf, len, opts->max_size, reason, detail, detail_len);
    if (!root)
        return TD_ERR;
    size_t count = json_is_array(root) ? json_array_size(root) : 1;
    if (count == 0) {
        json_decref(root);
        *reason = "empty";
        snprintf(detail, detail_len, "an empty array holds no alert");
        return TD_ERR;
    }
    td_alert *alerts = td_calloc(count, sizeof(*alerts));
    for (size_t i = 0; i < count; i++) {
        json_t *obj = json_is_array(root) ? json_array_get(root, i) : root;
        if (decode_one(obj, opts, &alerts[i], reason, detail, detail_len) != TD_OK) {
            for (size_t j = 0; j < i; j++)
                td_alert_clear(&alerts[j]);
            free(alerts);
            json_decref(root);
            if (count > 1) {
                size_t l = strlen(detail);
                snprintf(detail + l, detail_len - l, " (alert %zu)", i);
            }
            return TD_ERR;
        }
    }
    json_decref(root);
    *out = alerts;
    *n = count;
    return TD_OK;
}

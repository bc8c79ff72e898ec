/* alert_scan.c — the native alert's common shape decoded in one pass (see
 * alert.h, td_alert_scan).
 *
 * Jansson builds a tree for every message: an object, a hash table, a value
 * per field, a copy of every string, then decode_one copies the strings it
 * wants again. At 100,000 messages a second that was a third of the
 * daemon's CPU. This scanner reads the message once and puts each alert's
 * strings and labels in one allocation.
 *
 * It accepts only what it is sure of: an object (or an array of objects)
 * whose fields are strings or null, with "labels" an object of strings,
 * unknown fields skipped when their value is a string, null, true or false,
 * valid UTF-8, no \u escape, no duplicate key, every field valid by
 * decode_one's rules. Anything else -- every error included -- is declined,
 * and the caller decodes the message with Jansson, which gives the reason
 * and the detail. So both paths give the same alerts for what this one
 * accepts (fuzz_decode and test_alert check that), and errors have one
 * source. */
#include "internal/alert.h"

#include <stdlib.h>
#include <string.h>

#include "internal/util.h"

#define MAX_FIELD 1024
#define MAX_SUMMARY 4096
#define MAX_LABELS 64
#define MAX_ALERTS 256 /* an array longer than that goes to Jansson */

/* A string of the input: its raw bytes between the quotes, and its decoded
 * length (shorter when it has escapes). */
typedef struct span {
    const char *p;
    size_t raw, len;
    bool esc;
} span;

enum field { F_SOURCE, F_RESOURCE, F_CHECK, F_SUMMARY, F_DEDUP_KEY, F_CI, F_STATUS,
             F_SEVERITY, F_OCCURRED, F_NFIELDS };

static const struct {
    const char *name;
    size_t len, max;
} fields[F_NFIELDS] = {
#define FIELD(f, name, max) [f] = {name, sizeof(name) - 1, max}
    FIELD(F_SOURCE, "source", MAX_FIELD),     FIELD(F_RESOURCE, "resource", MAX_FIELD),
    FIELD(F_CHECK, "check", MAX_FIELD),       FIELD(F_SUMMARY, "summary", MAX_SUMMARY),
    FIELD(F_DEDUP_KEY, "dedup_key", MAX_FIELD), FIELD(F_CI, "ci", MAX_FIELD),
    FIELD(F_STATUS, "status", 16),            FIELD(F_SEVERITY, "severity", 16),
    FIELD(F_OCCURRED, "occurred_at", 64),
#undef FIELD
};

/* The known field a key names, or -1. */
static int
field_of(const span *k)
{
    if (k->esc)
        return -1;
    for (int i = 0; i < F_NFIELDS; i++)
        if (k->raw == fields[i].len && k->p[0] == fields[i].name[0] &&
            memcmp(k->p, fields[i].name, k->raw) == 0)
            return i;
    return -1;
}

typedef struct scan {
    const char *s, *end;
} scan;

/* One parsed alert, before it is copied into its block. */
typedef struct raw_alert {
    span f[F_NFIELDS]; /* p == NULL: absent or null */
    span name[MAX_LABELS], value[MAX_LABELS];
    size_t n_labels;
} raw_alert;

static void
ws(scan *sc)
{
    while (sc->s < sc->end &&
           (*sc->s == ' ' || *sc->s == '\t' || *sc->s == '\n' || *sc->s == '\r'))
        sc->s++;
}

static bool
lit(scan *sc, const char *w, size_t n)
{
    if ((size_t)(sc->end - sc->s) < n || memcmp(sc->s, w, n) != 0)
        return false;
    sc->s += n;
    return true;
}

/* One UTF-8 sequence at s (first byte >= 0x80), as strict as Jansson:
 * no overlong form, no surrogate, nothing above U+10FFFF. Its length, or 0. */
static size_t
utf8_seq(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    size_t n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - s) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* A string at sc->s (the opening quote): its span, sc->s past the closing
 * quote. False for what Jansson would refuse or what we leave to it. */
static bool
string(scan *sc, span *out)
{
    const unsigned char *s = (const unsigned char *)sc->s + 1;
    const unsigned char *end = (const unsigned char *)sc->end;
    size_t len = 0;
    bool esc = false;
    out->p = (const char *)s;
    while (s < end) {
        /* the common run of plain ASCII first */
        const unsigned char *run = s;
        while (s < end && *s >= 0x20 && *s < 0x80 && *s != '"' && *s != '\\')
            s++;
        len += (size_t)(s - run);
        if (s == end)
            break;
        unsigned c = *s;
        if (c == '"') {
            out->raw = (size_t)((const char *)s - out->p);
            out->len = len;
            out->esc = esc;
            sc->s = (const char *)s + 1;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (s + 1 >= end || !strchr("\"\\/bfnrt", s[1]) || s[1] == '\0')
                return false; /* \u (and anything unknown): Jansson's */
            esc = true;
            s += 2;
            len++;
        } else { /* c >= 0x80 */
            size_t n = utf8_seq(s, end);
            if (!n)
                return false;
            s += n;
            len += n;
        }
    }
    return false;
}

static void
unescape(const span *sp, char *dst)
{
    if (!sp->esc) {
        memcpy(dst, sp->p, sp->raw);
        dst[sp->raw] = '\0';
        return;
    }
    size_t j = 0;
    for (size_t i = 0; i < sp->raw; i++) {
        char c = sp->p[i];
        if (c == '\\') {
            c = sp->p[++i];
            switch (c) {
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            default: break; /* " \ / stand for themselves */
            }
        }
        dst[j++] = c;
    }
    dst[j] = '\0';
}

static bool
span_is(const span *sp, const char *w)
{
    return !sp->esc && sp->raw == strlen(w) && memcmp(sp->p, w, sp->raw) == 0;
}

static bool
span_eq(const span *a, const span *b)
{
    if (!a->esc && !b->esc)
        return a->raw == b->raw && memcmp(a->p, b->p, a->raw) == 0;
    if (a->len != b->len)
        return false;
    char x[MAX_FIELD + 1], y[MAX_FIELD + 1];
    if (a->len > MAX_FIELD)
        return true; /* (refused for its length anyway: say "same", decline) */
    unescape(a, x);
    unescape(b, y);
    return strcmp(x, y) == 0;
}

/* An object's members, sc->s at its '{'. open() says whether it is empty
 * (then past its '}'); key() reads a member's key and its ':'; next() after a
 * member's value: 1 past the object's '}', 0 past a ',', -1 on anything else. */
static bool
open_empty(scan *sc)
{
    sc->s++;
    ws(sc);
    return lit(sc, "}", 1);
}

static bool
key(scan *sc, span *k)
{
    if (sc->s >= sc->end || *sc->s != '"' || !string(sc, k))
        return false;
    ws(sc);
    if (!lit(sc, ":", 1))
        return false;
    ws(sc);
    return sc->s < sc->end;
}

static int
next(scan *sc)
{
    ws(sc);
    if (lit(sc, "}", 1))
        return 1;
    if (!lit(sc, ",", 1))
        return -1;
    ws(sc);
    return 0;
}

/* "labels": an object of strings, sc->s at its '{'. */
static bool
labels(scan *sc, raw_alert *r)
{
    if (open_empty(sc))
        return true;
    for (;;) {
        if (r->n_labels == MAX_LABELS)
            return false;
        span *k = &r->name[r->n_labels], *v = &r->value[r->n_labels];
        if (!key(sc, k) || k->len > MAX_FIELD)
            return false;
        for (size_t i = 0; i < r->n_labels; i++)
            if (span_eq(&r->name[i], k))
                return false; /* a duplicate: Jansson's error */
        if (*sc->s != '"' || !string(sc, v) || v->len > MAX_FIELD)
            return false;
        r->n_labels++;
        int end = next(sc);
        if (end)
            return end > 0;
    }
}

/* One object, sc->s at its '{'. */
static bool
object(scan *sc, raw_alert *r)
{
    unsigned seen = 0; /* known fields, and 1 << F_NFIELDS for labels */
    span unknown[16];
    size_t n_unknown = 0;
    memset(r->f, 0, sizeof(r->f)); /* (the label spans are written before read) */
    r->n_labels = 0;
    if (open_empty(sc))
        return true;
    for (;;) {
        span k;
        if (!key(sc, &k))
            return false;
        int f = field_of(&k);
        char c = *sc->s;
        if (f >= 0) {
            if (seen & (1u << f))
                return false;
            seen |= 1u << f;
            if (c == '"') {
                if (!string(sc, &r->f[f]) || r->f[f].len > fields[f].max)
                    return false;
            } else if (!lit(sc, "null", 4)) {
                return false;
            }
        } else if (span_is(&k, "labels")) {
            if (seen & (1u << F_NFIELDS))
                return false;
            seen |= 1u << F_NFIELDS;
            if (c == '{') {
                if (!labels(sc, r))
                    return false;
            } else if (!lit(sc, "null", 4)) {
                return false;
            }
        } else {
            /* an unknown field: skipped, if its value is simple and its
             * name is not a duplicate */
            if (n_unknown == TD_ARRAY_LEN(unknown))
                return false;
            for (size_t i = 0; i < n_unknown; i++)
                if (span_eq(&unknown[i], &k))
                    return false;
            unknown[n_unknown++] = k;
            span v;
            if (c == '"') {
                if (!string(sc, &v))
                    return false;
            } else if (!lit(sc, "null", 4) && !lit(sc, "true", 4) && !lit(sc, "false", 5)) {
                return false;
            }
        }
        int end = next(sc);
        if (end)
            return end > 0;
    }
}

static int
label_cmp(const void *a, const void *b)
{
    return strcmp(((const td_label *)a)->name, ((const td_label *)b)->name);
}

/* decode_one's rules on a parsed object; then the alert in one block. */
static bool
build(const raw_alert *r, const td_decode_opts *opts, td_alert *a)
{
    char tmp[65];
    memset(a, 0, sizeof(*a));
    for (int f = F_SOURCE; f <= F_CHECK; f++)
        if (!r->f[f].p || r->f[f].len == 0)
            return false; /* missing_field */
    a->firing = true;
    const span *st = &r->f[F_STATUS];
    if (st->p && st->len) {
        if (span_is(st, "resolved"))
            a->firing = false;
        else if (!span_is(st, "firing"))
            return false;
    }
    a->severity = TD_SEV_WARNING;
    const span *sv = &r->f[F_SEVERITY];
    if (sv->p && sv->len) {
        unescape(sv, tmp);
        if (td_severity_parse(tmp, &a->severity) != TD_OK)
            return false;
    }
    a->occurred_at_us = opts->now_us;
    const span *oc = &r->f[F_OCCURRED];
    if (oc->p && oc->len) {
        unescape(oc, tmp);
        if (td_parse_rfc3339(tmp, &a->occurred_at_us) != TD_OK)
            return false;
    }

    /* the block: labels, then every string with its NUL */
    size_t size = r->n_labels * sizeof(td_label);
    for (int f = F_SOURCE; f <= F_CI; f++)
        if (r->f[f].p && r->f[f].len)
            size += r->f[f].len + 1;
    for (size_t i = 0; i < r->n_labels; i++)
        size += r->name[i].len + r->value[i].len + 2;
    char *mem = td_malloc(size ? size : 1);
    td_label *lab = (td_label *)(void *)mem;
    char *s = mem + r->n_labels * sizeof(td_label);
    char **dst[] = {[F_SOURCE] = &a->source, [F_RESOURCE] = &a->resource,
                    [F_CHECK] = &a->check,   [F_SUMMARY] = &a->summary,
                    [F_DEDUP_KEY] = &a->dedup_key, [F_CI] = &a->ci};
    for (int f = F_SOURCE; f <= F_CI; f++) {
        if (!r->f[f].p || r->f[f].len == 0)
            continue;
        unescape(&r->f[f], s);
        *dst[f] = s;
        s += r->f[f].len + 1;
    }
    for (size_t i = 0; i < r->n_labels; i++) {
        unescape(&r->name[i], s);
        lab[i].name = s;
        s += r->name[i].len + 1;
        unescape(&r->value[i], s);
        lab[i].value = s;
        s += r->value[i].len + 1;
    }
    a->mem = mem;
    if (r->n_labels) {
        a->labels = lab;
        a->n_labels = r->n_labels;
        qsort(a->labels, a->n_labels, sizeof(*a->labels), label_cmp);
    }
    /* (a NUL in a string, Jansson's bad_field, needs \u0000: declined) */
    td_alert_fingerprint(a, opts->identity_labels, opts->n_identity_labels);
    return true;
}

int
td_alert_scan(const char *buf, size_t len, const td_decode_opts *opts, td_alert **out,
              size_t *n)
{
    *out = NULL;
    *n = 0;
    if ((opts->max_size && len > opts->max_size) || len == 0)
        return TD_ERR;
    scan sc = {buf, buf + len};
    ws(&sc);
    if (sc.s >= sc.end)
        return TD_ERR;
    bool array = *sc.s == '[';
    raw_alert raw_store, *raw = &raw_store; /* ~4.5 KiB of spans */
    td_alert *alerts = NULL;
    size_t count = 0, cap = 0;
    if (array) {
        sc.s++;
        ws(&sc);
        if (sc.s < sc.end && *sc.s == ']')
            goto decline; /* empty: Jansson's (and the reason's) */
    }
    for (;;) {
        if (sc.s >= sc.end || *sc.s != '{' || count == MAX_ALERTS || !object(&sc, raw))
            goto decline;
        if (count == cap) {
            cap = cap ? 2 * cap : (array ? 8 : 1);
            alerts = td_realloc(alerts, cap * sizeof(*alerts));
        }
        if (!build(raw, opts, &alerts[count]))
            goto decline;
        count++;
        ws(&sc);
        if (!array)
            break;
        if (lit(&sc, "]", 1)) {
            ws(&sc);
            break;
        }
        if (!lit(&sc, ",", 1))
            goto decline;
        ws(&sc);
    }
    if (sc.s != sc.end)
        goto decline; /* something after the document */
    *out = alerts;
    *n = count;
    return TD_OK;
decline:
    for (size_t i = 0; i < count; i++)
        td_alert_clear(&alerts[i]);
    free(alerts);
    return TD_ERR;
}

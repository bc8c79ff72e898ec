/* cmdb_doc.c — what `triagectl cmdb import` and `maintenance add` parse in C
 * before anything reaches PostgreSQL: the import document (JSON as given, or
 * a CSV of CIs converted to the same JSON) and a weekly window's day list.
 *
 * Pure functions over the caller's bytes: no I/O, no globals, so the fuzzer
 * (tests/fuzz/fuzz_cmdb.c) runs them on anything. They only shape the input;
 * every rule about the content (kinds, references, cycles) is checked by
 * triaged.cmdb_import() in one transaction. What they must never do is
 * change the data on the way: a NUL byte, bytes that are not UTF-8 or an
 * unterminated quote are errors here, where Jansson would otherwise drop a
 * cell (json_string() refuses invalid UTF-8) or C strings cut a file short. */
#include "internal/cmdb_doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal/util.h"

/* ---- CSV of CIs ---------------------------------------------------------- */

typedef struct csv {
    const char *p;   /* the next byte; the text ends with a NUL */
    int line;        /* physical line of p, 1-based, for errors */
    char *err;
    size_t errlen;
} csv;

/* One RFC 4180 field (quotes, "" escapes) into a new string; advances past
 * its separator and sets *eol at the end of a record. NULL (err set) for an
 * unterminated quote. */
static char *
csv_field(csv *c, bool *eol)
{
    const char *s = c->p;
    size_t cap = 64, n = 0;
    char *out = td_malloc(cap);
    bool quoted = *s == '"';
    int open_line = c->line;
    if (quoted)
        s++;
    for (;;) {
        char ch = *s;
        if (ch == '\0') {
            if (quoted) {
                snprintf(c->err, c->errlen, "CSV line %d: a quoted cell is not closed",
                         open_line);
                free(out);
                return NULL;
            }
            break;
        }
        if (quoted && ch == '"') {
            if (s[1] == '"') {
                s += 2;
            } else {
                quoted = false;
                s++;
                continue;
            }
        } else if (!quoted && (ch == ',' || ch == '\n' || ch == '\r')) {
            break;
        } else {
            if (ch == '\n')
                c->line++;
            s++;
        }
        if (n + 2 > cap)
            out = td_realloc(out, cap *= 2);
        out[n++] = ch;
    }
    out[n] = '\0';
    *eol = *s != ',';
    if (*s == ',') {
        s++;
    } else {
        if (*s == '\r')
            s++;
        if (*s == '\n') {
            s++;
            c->line++;
        }
    }
    c->p = s;
    return out;
}

/* A cell as a JSON string; NULL (err set) when it is not UTF-8. */
static json_t *
cell_string(csv *c, int line, const char *v)
{
    json_t *j = json_string(v);
    if (!j)
        snprintf(c->err, c->errlen, "CSV line %d: not valid UTF-8", line);
    return j;
}

/* Words separated by spaces, tabs or ';' into a JSON array of strings. */
static json_t *
word_array(csv *c, int line, const char *s)
{
    json_t *a = json_array();
    char *copy = td_strdup(s), *save = NULL;
    for (char *t = strtok_r(copy, " ;\t", &save); t; t = strtok_r(NULL, " ;\t", &save)) {
        json_t *w = cell_string(c, line, t);
        if (!w) {
            json_decref(a);
            a = NULL;
            break;
        }
        json_array_append_new(a, w);
    }
    free(copy);
    return a;
}

static bool
known_column(const char *h)
{
    return strcmp(h, "name") == 0 || strcmp(h, "kind") == 0 || strcmp(h, "aliases") == 0 ||
           strcmp(h, "addresses") == 0 || strcmp(h, "criticality") == 0 ||
           (strncmp(h, "attr.", 5) == 0 && h[5]);
}

/* One record into ci; -1 (err set) on a bad cell. */
static int
csv_record(csv *c, char **head, size_t nh, json_t *ci)
{
    json_t *attrs = NULL;
    int line = c->line, rc = 0;
    bool eol = false;
    for (size_t col = 0; !eol && rc == 0; col++) {
        char *v = csv_field(c, &eol);
        if (!v)
            rc = -1;
        else if (!*v)
            ; /* an empty cell: the key is absent */
        else if (col >= nh) {
            snprintf(c->err, c->errlen, "CSV line %d: more cells than columns", line);
            rc = -1;
        } else {
            const char *h = head[col];
            json_t *j;
            if (strcmp(h, "aliases") == 0 || strcmp(h, "addresses") == 0)
                j = word_array(c, line, v);
            else
                j = cell_string(c, line, v);
            if (!j) {
                rc = -1;
            } else if (strncmp(h, "attr.", 5) == 0) {
                if (!attrs)
                    attrs = json_object();
                json_object_set_new(attrs, h + 5, j);
            } else {
                json_object_set_new(ci, h, j);
            }
        }
        free(v);
    }
    if (attrs)
        json_object_set_new(ci, "attributes", attrs);
    return rc;
}

static json_t *
csv_to_doc(const char *text, char *err, size_t errlen)
{
    csv c = {text, 1, err, errlen};
    char **head = NULL;
    size_t nh = 0;
    bool eol = false, has_name = false;
    json_t *cis = json_array();
    while (*c.p && !eol) {
        char *h = csv_field(&c, &eol);
        if (!h)
            goto fail;
        head = td_realloc(head, (nh + 1) * sizeof(*head));
        head[nh++] = h;
        if (!known_column(h)) {
            snprintf(err, errlen, "CSV header: unknown column '%.100s' (expected name, kind, "
                     "aliases, addresses, criticality, attr.KEY)", h);
            goto fail;
        }
        for (size_t i = 0; i + 1 < nh; i++)
            if (strcmp(head[i], h) == 0) {
                snprintf(err, errlen, "CSV header: column '%.100s' twice", h);
                goto fail;
            }
        /* attr.KEY becomes a JSON key: it must be UTF-8 too. */
        json_t *k = json_string(h);
        if (!k) {
            snprintf(err, errlen, "CSV header: not valid UTF-8");
            goto fail;
        }
        json_decref(k);
        has_name |= strcmp(h, "name") == 0;
    }
    if (!has_name) {
        snprintf(err, errlen, "CSV header: no 'name' column");
        goto fail;
    }
    while (*c.p) {
        json_t *ci = json_object();
        if (csv_record(&c, head, nh, ci) != 0) {
            json_decref(ci);
            goto fail;
        }
        if (json_object_size(ci) == 0) {
            json_decref(ci); /* a blank line */
            continue;
        }
        json_array_append_new(cis, ci);
    }
    for (size_t i = 0; i < nh; i++)
        free(head[i]);
    free(head);
    json_t *doc = json_object();
    json_object_set_new(doc, "cis", cis);
    return doc;
fail:
    for (size_t i = 0; i < nh; i++)
        free(head[i]);
    free(head);
    json_decref(cis);
    return NULL;
}

json_t *
td_cmdb_doc_parse(const char *text, size_t len, bool is_csv, char *err, size_t errlen)
{
    if (!is_csv) {
        json_error_t je;
        json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!doc)
            snprintf(err, errlen, "%d:%d: not valid JSON: %s", je.line, je.column, je.text);
        return doc;
    }
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        snprintf(err, errlen, "CSV: a NUL byte at offset %zu", (size_t)(nul - text));
        return NULL;
    }
    char *copy = td_strndup(text, len);
    json_t *doc = csv_to_doc(copy, err, errlen);
    free(copy);
    return doc;
}

/* ---- maintenance days ---------------------------------------------------- */

/* 1..7 for "1".."7" or a day's name (at least its first 3 letters), else 0. */
static int
day_of(const char *w)
{
    static const char *const names[] = {"monday", "tuesday", "wednesday", "thursday",
                                        "friday", "saturday", "sunday"};
    size_t n = strlen(w);
    if (n == 1 && w[0] >= '1' && w[0] <= '7')
        return w[0] - '0';
    for (int k = 0; k < 7 && n >= 3; k++)
        if (n <= strlen(names[k]) && strncasecmp(w, names[k], n) == 0)
            return k + 1;
    return 0;
}

bool
td_maint_days_parse(const char *s, char *out, size_t outlen)
{
    bool set[8] = {0};
    char *copy = td_strdup(s), *save = NULL;
    bool ok = true, any = false;
    for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(t, '-');
        if (dash)
            *dash = '\0';
        int lo = day_of(t), hi = dash ? day_of(dash + 1) : lo;
        ok = lo && hi && lo <= hi;
        for (int d = lo; ok && d <= hi; d++)
            set[d] = any = true;
    }
    free(copy);
    size_t n = 0;
    if (outlen < 16)
        return false; /* "{1,2,3,4,5,6,7}" and its NUL */
    out[n++] = '{';
    for (int d = 1; d <= 7; d++)
        if (set[d])
            n += (size_t)snprintf(out + n, outlen - n, "%s%d", n > 1 ? "," : "", d);
    snprintf(out + n, outlen - n, "}");
    return ok && any;
}

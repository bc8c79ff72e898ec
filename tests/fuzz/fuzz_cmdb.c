/* fuzz_cmdb.c — libFuzzer target for what `triagectl cmdb import` and
 * `maintenance add` parse in C before PostgreSQL sees anything
 * (daemon/cmdb_doc.c): the JSON import document, the CSV of CIs converted to
 * it, and a weekly window's day list.
 *
 * The first byte picks the parser (0 JSON, 1 CSV, 2 days), the rest is the
 * input: a heap copy of exactly its length (ASan sees any read past it).
 * Checked: a rejection says why; a CSV that converts is {"cis": [objects]}
 * whose values are strings (aliases and addresses: arrays of non-empty
 * strings; attributes: an object of strings), and the document serialises
 * (it becomes the statement's parameter); a day list that parses is
 * "{d,d,...}" with days 1..7 rising. Nothing may leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/cmdb_doc.h"

static void
check_ci(json_t *ci)
{
    const char *k;
    json_t *v;
    if (!json_is_object(ci) || json_object_size(ci) == 0)
        abort();
    json_object_foreach(ci, k, v) {
        if (strcmp(k, "aliases") == 0 || strcmp(k, "addresses") == 0) {
            size_t i;
            json_t *w;
            if (!json_is_array(v))
                abort();
            json_array_foreach(v, i, w) if (!json_is_string(w) || !json_string_length(w)) abort();
        } else if (strcmp(k, "attributes") == 0) {
            const char *ak;
            json_t *av;
            if (!json_is_object(v) || json_object_size(v) == 0)
                abort();
            json_object_foreach(v, ak, av) if (!*ak || !json_is_string(av)) abort();
        } else if (!json_is_string(v) || !json_string_length(v)) {
            abort();
        }
    }
}

static void
check_days(const char *out)
{
    int last = 0;
    const char *p = out;
    if (*p++ != '{')
        abort();
    while (*p >= '1' && *p <= '7') {
        if (*p - '0' <= last)
            abort();
        last = *p++ - '0';
        if (*p == ',')
            p++;
    }
    if (last == 0 || strcmp(p, "}") != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int which = data[0] % 3;
    size_t len = size - 1;
    char *buf = malloc(len + 1);
    memcpy(buf, data + 1, len);
    char err[512] = "";
    if (which == 2) {
        buf[len] = '\0'; /* a command-line argument: a C string */
        char out[64];
        if (td_maint_days_parse(buf, out, sizeof(out)))
            check_days(out);
        free(buf);
        return 0;
    }
    json_t *doc = td_cmdb_doc_parse(buf, len, which == 1, err, sizeof(err));
    if (!doc) {
        if (!*err)
            abort(); /* a rejection says why */
    } else {
        if (which == 1) {
            json_t *cis = json_object_get(doc, "cis"), *ci;
            size_t i;
            if (json_object_size(doc) != 1 || !json_is_array(cis))
                abort();
            json_array_foreach(cis, i, ci) check_ci(ci);
        }
        char *body = json_dumps(doc, JSON_COMPACT);
        if (!body)
            abort();
        free(body);
        json_decref(doc);
    }
    free(buf);
    return 0;
}

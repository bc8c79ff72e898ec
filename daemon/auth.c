/* auth.c — API tokens and token buckets (see auth.h).
 *
 * The design is simple: the file is parsed into an array of (name, scope,
 * SHA-256). Looking a token up hashes what the client sent and compares the
 * digest with every entry using CRYPTO_memcmp, never stopping early, so the
 * time taken does not depend on which entry matched or how many bytes did.
 * Reloading builds a fresh td_tokens and swaps it in (http.c) only when the
 * whole file is valid. Pure code apart from reading the file: unit-tested. */
#include "internal/auth.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/util.h"

struct td_tokens {
    td_token *v;
    size_t n;
};

static const char *scope_names[] = {"none", "read", "write", "admin"};

const char *
td_scope_name(td_scope s)
{
    return (unsigned)s < TD_ARRAY_LEN(scope_names) ? scope_names[s] : "?";
}

int
td_scope_parse(const char *s, td_scope *out)
{
    for (int i = TD_SCOPE_READ; i <= TD_SCOPE_ADMIN; i++)
        if (strcmp(s, scope_names[i]) == 0) {
            *out = (td_scope)i;
            return TD_OK;
        }
    return TD_ERR;
}

static void
sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 32;
    /* EVP_Digest only fails when libcrypto cannot allocate: same policy as
     * td_malloc (abort). */
    if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL)) {
        fprintf(stderr, "triaged: SHA-256 failed (out of memory)\n");
        abort();
    }
}

void
td_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t d[32];
    sha256(data, len, d);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int
parse_line(char *line, const char *origin, size_t lineno, td_tokens *t,
           td_errors *errs)
{
    char *save = NULL, *name, *scope, *hex, *extra;
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    name = strtok_r(line, " \t\r", &save);
    if (!name)
        return TD_OK; /* blank or comment */
    scope = strtok_r(NULL, " \t\r", &save);
    hex = scope ? strtok_r(NULL, " \t\r", &save) : NULL;
    extra = hex ? strtok_r(NULL, " \t\r", &save) : NULL;
    if (!hex || extra) {
        td_errors_add(errs, "%s:%zu: expected \"NAME SCOPE SHA256-HEX\"", origin, lineno);
        return TD_ERR;
    }
    td_token tok = {0};
    if (td_scope_parse(scope, &tok.scope) != TD_OK) {
        td_errors_add(errs, "%s:%zu: scope '%s' is not read, write or admin", origin,
                      lineno, scope);
        return TD_ERR;
    }
    if (strlen(hex) != 64) {
        td_errors_add(errs, "%s:%zu: the hash must be 64 hex digits (SHA-256)", origin,
                      lineno);
        return TD_ERR;
    }
    for (int i = 0; i < 32; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            td_errors_add(errs, "%s:%zu: the hash must be 64 hex digits (SHA-256)",
                          origin, lineno);
            return TD_ERR;
        }
        tok.hash[i] = (uint8_t)(hi << 4 | lo);
    }
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, name) == 0) {
            td_errors_add(errs, "%s:%zu: token name '%s' is used twice", origin, lineno,
                          name);
            return TD_ERR;
        }
    tok.name = td_strdup(name);
    t->v = td_realloc(t->v, (t->n + 1) * sizeof(*t->v));
    t->v[t->n++] = tok;
    return TD_OK;
}

int
td_tokens_parse(const char *text, size_t len, const char *origin, td_tokens **out,
                td_errors *errs)
{
    td_tokens *t = td_calloc(1, sizeof(*t));
    size_t lineno = 0, errs_before = errs->n;
    const char *p = text, *end = text + len;
    *out = NULL;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = td_strndup(p, n);
        lineno++;
        if (strlen(line) != n)
            td_errors_add(errs, "%s:%zu: NUL byte in line", origin, lineno);
        else
            parse_line(line, origin, lineno, t, errs);
        free(line);
        p += n + (nl ? 1 : 0);
    }
    if (errs->n != errs_before) {
        td_tokens_free(t);
        return TD_ERR;
    }
    *out = t;
    return TD_OK;
}

int
td_tokens_load(const char *path, td_tokens **out, td_errors *errs)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    *out = NULL;
    if (!f) {
        td_errors_add(errs, "%s: cannot open: %s", path, strerror(errno));
        return TD_ERR;
    }
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (size_t)16 << 20) {
                td_errors_add(errs, "%s: larger than 16 MiB", path);
                fclose(f);
                free(buf);
                return TD_ERR;
            }
            buf = td_realloc(buf, cap);
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        td_errors_add(errs, "%s: read error", path);
        free(buf);
        return TD_ERR;
    }
    int rc = td_tokens_parse(buf ? buf : "", len, path, out, errs);
    free(buf);
    return rc;
}

void
td_tokens_free(td_tokens *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].name);
    free(t->v);
    free(t);
}

size_t
td_tokens_count(const td_tokens *t)
{
    return t ? t->n : 0;
}

const td_token *
td_tokens_find(const td_tokens *t, const char *secret, size_t len)
{
    uint8_t d[32];
    size_t found = 0; /* index + 1 of the first match; 0: none */
    if (!t)
        return NULL;
    sha256(secret, len, d);
    /* Every entry is compared, whatever matched before, and the choice is
     * made with masks, not branches: the time depends only on the number of
     * entries, not on which one matched, nor on how many bytes did (the
     * client's token is hashed first, so its length reaches no comparison). */
    for (size_t i = 0; i < t->n; i++) {
        size_t same = (size_t)(CRYPTO_memcmp(d, t->v[i].hash, sizeof(d)) == 0);
        size_t take = same & (size_t)(found == 0);
        found |= ((size_t)0 - take) & (i + 1);
    }
    OPENSSL_cleanse(d, sizeof(d));
    return found ? &t->v[found - 1] : NULL;
}

int
td_bucket_take(td_bucket *b, double rate, double burst, int64_t now_ms,
               int *retry_after_s)
{
    if (rate <= 0)
        return 1;
    if (burst < 1)
        burst = 1;
    if (b->last_ms == 0) {
        b->tokens = burst;
        b->last_ms = now_ms;
    }
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
        if (b->tokens > burst)
            b->tokens = burst;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1) {
        b->tokens -= 1;
        return 1;
    }
    double wait = (1 - b->tokens) / rate;
    int s = (int)wait;
    if ((double)s < wait)
        s++;
    *retry_after_s = s < 1 ? 1 : s;
    return 0;
}

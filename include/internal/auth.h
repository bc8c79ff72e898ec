/* auth.h — API tokens (DESIGN §2, §5) and per-token rate limits.
 *
 * The tokens file holds one "NAME SCOPE SHA256-HEX-OF-TOKEN" a line ('#'
 * starts a comment). Only hashes are stored: a presented bearer token is
 * hashed with SHA-256 and compared, in constant time, with every entry, so
 * neither the file nor the timing tells a token. Scopes are ordered:
 * read < write < admin, each including the ones before.
 *
 * Ownership: td_tokens_load() returns a td_tokens the caller frees with
 * td_tokens_free(); td_token pointers are borrowed from it. */
#ifndef TD_AUTH_H
#define TD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "internal/errors.h"

typedef enum {
    TD_SCOPE_NONE = 0,
    TD_SCOPE_READ,
    TD_SCOPE_WRITE,
    TD_SCOPE_ADMIN,
} td_scope;

typedef struct td_token {
    char *name;
    td_scope scope;
    uint8_t hash[32];
} td_token;

typedef struct td_tokens td_tokens;

/* Parse a tokens file. TD_OK with *out, or TD_ERR with every problem in errs
 * as "FILE:LINE: message" (a file with any problem is refused whole). */
int td_tokens_load(const char *path, td_tokens **out, td_errors *errs);
/* The same from text in memory; origin names it in messages. */
int td_tokens_parse(const char *text, size_t len, const char *origin,
                    td_tokens **out, td_errors *errs);
void td_tokens_free(td_tokens *t);
size_t td_tokens_count(const td_tokens *t);

/* The entry whose hash is SHA-256(secret), or NULL. Compares with every
 * entry in constant time whatever matches. */
const td_token *td_tokens_find(const td_tokens *t, const char *secret, size_t len);

const char *td_scope_name(td_scope s);
int td_scope_parse(const char *s, td_scope *out);

/* SHA-256 of data as 64 lower-case hex digits plus NUL. */
void td_sha256_hex(const void *data, size_t len, char out[65]);

/* A token bucket: `rate` tokens a second, at most `burst`. */
typedef struct td_bucket {
    double tokens;
    int64_t last_ms;
} td_bucket;

/* Take one token at now_ms. 1 when allowed; 0 when not, with the seconds
 * until one is available (at least 1) in *retry_after_s. rate <= 0: always. */
int td_bucket_take(td_bucket *b, double rate, double burst, int64_t now_ms,
                   int *retry_after_s);

#endif

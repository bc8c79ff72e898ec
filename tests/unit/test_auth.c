/* API tokens: parsing, constant-time lookup by SHA-256, scopes, buckets. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/auth.h"

TestSuite(auth, .timeout = 10);

Test(auth, sha256_of_a_known_string)
{
    char hex[65];
    td_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(auth, tokens_are_found_by_their_hash_only)
{
    char h1[65], h2[65];
    td_sha256_hex("s3cret", 6, h1);
    td_sha256_hex("other", 5, h2);
    char text[256];
    snprintf(text, sizeof(text), "# comment\n\nops write %s\ngrafana read %s  # trailing\n",
             h1, h2);
    td_errors errs = {0};
    td_tokens *t;
    cr_assert_eq(td_tokens_parse(text, strlen(text), "t", &t, &errs), TD_OK);
    cr_assert_eq(td_tokens_count(t), 2);
    const td_token *k = td_tokens_find(t, "s3cret", 6);
    cr_assert_not_null(k);
    cr_assert_str_eq(k->name, "ops");
    cr_assert_eq(k->scope, TD_SCOPE_WRITE);
    cr_assert_eq(td_tokens_find(t, "other", 5)->scope, TD_SCOPE_READ);
    cr_assert_null(td_tokens_find(t, "s3cre", 5));
    cr_assert_null(td_tokens_find(t, h1, 64), "the hash itself is not a token");
    td_tokens_free(t);
}

Test(auth, a_bad_file_is_refused_whole_with_lines)
{
    const char *text = "a read 00\nb superuser "
                       "0000000000000000000000000000000000000000000000000000000000000000\n"
                       "c write zz00000000000000000000000000000000000000000000000000000000000000\n"
                       "d write\n";
    td_errors errs = {0};
    td_tokens *t;
    cr_assert_eq(td_tokens_parse(text, strlen(text), "tok", &t, &errs), TD_ERR);
    cr_assert_null(t);
    cr_assert_eq(errs.n, 4);
    cr_assert(strstr(errs.msgs[0], "tok:1:"));
    cr_assert(strstr(errs.msgs[1], "tok:2: scope 'superuser'"));
    cr_assert(strstr(errs.msgs[3], "tok:4:"));
    td_errors_clear(&errs);
}

Test(auth, scopes_are_ordered)
{
    td_scope r, w, a;
    cr_assert_eq(td_scope_parse("read", &r), TD_OK);
    cr_assert_eq(td_scope_parse("write", &w), TD_OK);
    cr_assert_eq(td_scope_parse("admin", &a), TD_OK);
    cr_assert(r < w && w < a);
    cr_assert_eq(td_scope_parse("root", &r), TD_ERR);
}

Test(auth, bucket_allows_the_burst_then_the_rate)
{
    td_bucket b = {0};
    int retry = 0;
    for (int i = 0; i < 3; i++)
        cr_assert(td_bucket_take(&b, 2, 3, 1000, &retry));
    cr_assert_not(td_bucket_take(&b, 2, 3, 1000, &retry));
    cr_assert_eq(retry, 1);
    cr_assert(td_bucket_take(&b, 2, 3, 1500, &retry), "one token after 0.5 s at 2/s");
    cr_assert_not(td_bucket_take(&b, 2, 3, 1500, &retry));
    cr_assert(td_bucket_take(&b, 0, 1, 1500, &retry), "rate 0: no limit");
}

/* The lookup compares every entry and picks with masks: check the choice it
 * makes on the first, a middle and the last entry, on near misses, and that
 * the first of two entries with the same hash wins. */
Test(auth, lookup_picks_the_right_entry_among_many_and_no_near_miss)
{
    enum { N = 100 };
    char *text = malloc(N * 96 + 128), hex[65], tok[32];
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        snprintf(tok, sizeof(tok), "token-%03d", i);
        td_sha256_hex(tok, strlen(tok), hex);
        len += (size_t)sprintf(text + len, "t%03d %s %s\n", i, i % 2 ? "read" : "write", hex);
    }
    td_sha256_hex("token-050", 9, hex);
    len += (size_t)sprintf(text + len, "twin read %s\n", hex);
    td_errors errs = {0};
    td_tokens *t;
    cr_assert_eq(td_tokens_parse(text, len, "t", &t, &errs), TD_OK);
    cr_assert_eq(td_tokens_count(t), N + 1);
    const int probe[] = {0, 1, 50, 98, 99};
    for (size_t i = 0; i < sizeof(probe) / sizeof(probe[0]); i++) {
        char want[8];
        snprintf(tok, sizeof(tok), "token-%03d", probe[i]);
        snprintf(want, sizeof(want), "t%03d", probe[i]);
        const td_token *k = td_tokens_find(t, tok, strlen(tok));
        cr_assert_not_null(k, "%s", tok);
        cr_assert_str_eq(k->name, want, "the first entry with the hash wins");
    }
    cr_assert_null(td_tokens_find(t, "token-10", 8), "a prefix");
    cr_assert_null(td_tokens_find(t, "token-0000", 10), "one byte more");
    cr_assert_null(td_tokens_find(t, "Token-000", 9), "case");
    cr_assert_null(td_tokens_find(t, "", 0), "empty");
    cr_assert_null(td_tokens_find(NULL, "token-000", 9), "no tokens file");
    td_tokens_free(t);
    free(text);
}

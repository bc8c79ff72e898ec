/* Redis dedup against the stack's real redis-server: hints for new, repeated
 * and changed fingerprints; FLUSHALL and a lost script degrade to safe hints. */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "internal/dedup.h"

static struct event_base *base;
static td_dedup *d;

static void
setup(void)
{
    const char *url = getenv("TD_TEST_REDIS_URL");
    cr_assert_not_null(url, "TD_TEST_REDIS_URL unset: run under tests/stack/stack.sh");
    base = event_base_new();
    char err[256];
    /* database 9: out of the way of the daemon tests using 0 */
    char u[256];
    snprintf(u, sizeof(u), "%.*s/9", (int)(strrchr(url, '/') - url), url);
    d = td_dedup_new(base, u, err, sizeof(err));
    cr_assert_not_null(d, "%s", err);
}

static void
teardown(void)
{
    td_dedup_free(d);
    event_base_free(base);
}

TestSuite(dedup, .init = setup, .fini = teardown, .timeout = 20);

/* A connection of our own to the stack's Redis, on database 9. */
static redisContext *
redis_db9(void)
{
    const char *url = getenv("TD_TEST_REDIS_URL");
    int port = atoi(strrchr(url, ':') + 1);
    redisContext *c = redisConnect("127.0.0.1", port);
    cr_assert(c && !c->err);
    redisReply *r = redisCommand(c, "SELECT 9");
    freeReplyObject(r);
    return c;
}

static void
redis_cmd(const char *cmd)
{
    redisContext *c = redis_db9();
    redisReply *r = redisCommand(c, cmd);
    cr_assert_not_null(r);
    freeReplyObject(r);
    redisFree(c);
}

/* The reply to one command (database 9) as a string: a string's value, an
 * integer in decimal, a status ("string" for TYPE), "(nil)" for none. */
static void
redis_get(const char *key, const char *cmd, char *out, size_t len)
{
    redisContext *c = redis_db9();
    redisReply *r = redisCommand(c, "%s %s", cmd, key);
    cr_assert_not_null(r);
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
        snprintf(out, len, "%s", r->str);
    else if (r->type == REDIS_REPLY_INTEGER)
        snprintf(out, len, "%lld", r->integer);
    else
        snprintf(out, len, "(nil)");
    freeReplyObject(r);
    redisFree(c);
}

/* A Redis setting's value (CONFIG GET name). */
static void
redis_config(const char *name, char *out, size_t len)
{
    redisContext *c = redis_db9();
    redisReply *r = redisCommand(c, "CONFIG GET %s", name);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2, "CONFIG GET %s", name);
    snprintf(out, len, "%s", r->element[1]->str);
    freeReplyObject(r);
    redisFree(c);
}

static void
key_of(uint64_t fp, char out[27])
{
    memcpy(out, "triaged:{", 9);
    td_fp_hex(fp, out + 9);
    out[25] = '}';
    out[26] = '\0';
}

static void
done(void *arg)
{
    *(int *)arg = 1;
}

static void
classify(td_segment *s, size_t n, uint8_t *hints)
{
    int fin = 0;
    td_dedup_classify(d, s, n, hints, done, &fin);
    while (!fin)
        event_base_loop(base, EVLOOP_ONCE);
}

static td_segment
seg(uint64_t fp, bool firing, td_severity sev, int64_t t, bool single)
{
    return (td_segment){.fp = fp, .firing = firing, .severity = sev, .n = firing,
                        .first_us = t, .last_us = t, .fp_first = true, .fp_single = single};
}

/* Run the loop until a probe fingerprint gets a real hint (connected, and
 * SCRIPT LOAD answered: until then every hint is "change"), within the
 * suite timeout; then forget the probe. */
static void
wait_ready(void)
{
    td_segment probe = seg(0xfeedfeedULL, true, TD_SEV_MAJOR, 1, true);
    for (int i = 0; i < 400; i++) {
        uint8_t h;
        classify(&probe, 1, &h);
        if (h != TD_HINT_CHANGE) {
            char key[27], cmd[64];
            key_of(probe.fp, key);
            snprintf(cmd, sizeof(cmd), "DEL %s", key);
            redis_cmd(cmd);
            return;
        }
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    cr_assert_fail("redis gave no real hint");
}

Test(dedup, first_sight_is_new_then_a_repeat_is_a_duplicate)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    td_segment s[] = {seg(0xabc, true, TD_SEV_MAJOR, 100, true)};
    uint8_t h[1];
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_NEW);
    s[0].first_us = s[0].last_us = 200;
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_DUP);
}

Test(dedup, a_resolve_or_a_new_severity_is_a_change)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    td_segment s[] = {seg(0x1, true, TD_SEV_MAJOR, 100, true)};
    uint8_t h[1];
    classify(s, 1, h);
    s[0] = seg(0x1, true, TD_SEV_CRITICAL, 200, true);
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_CHANGE, "severity changed");
    s[0] = seg(0x1, false, TD_SEV_CRITICAL, 300, true);
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_CHANGE, "resolved");
    s[0] = seg(0x1, true, TD_SEV_CRITICAL, 400, true);
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_CHANGE, "re-fired after the resolve");
}

Test(dedup, an_older_message_does_not_move_the_recorded_state_back)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    td_segment s[] = {seg(0x2, false, TD_SEV_MAJOR, 500, true)};
    uint8_t h[1];
    classify(s, 1, h); /* resolved at 500 */
    s[0] = seg(0x2, true, TD_SEV_MAJOR, 100, true);
    classify(s, 1, h); /* stale firing at 100: change hint, state stays resolved */
    cr_assert_eq(h[0], TD_HINT_CHANGE);
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_CHANGE, "still resolved in Redis, so not a duplicate");
}

Test(dedup, segments_of_one_fingerprint_share_the_first_ones_hint)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    td_segment s[] = {seg(0x3, true, TD_SEV_MAJOR, 100, false),
                      seg(0x3, false, TD_SEV_MAJOR, 200, false),
                      seg(0x4, true, TD_SEV_MINOR, 100, true)};
    s[1].fp_first = false;
    uint8_t h[3];
    classify(s, 3, h);
    cr_assert_eq(h[0], TD_HINT_NEW);
    cr_assert_eq(h[1], TD_HINT_NEW);
    cr_assert_eq(h[2], TD_HINT_NEW);
    td_segment again[] = {seg(0x3, true, TD_SEV_MAJOR, 300, true)};
    classify(again, 1, h);
    cr_assert_eq(h[0], TD_HINT_CHANGE, "the newest state recorded was resolved");
}

Test(dedup, after_flushall_everything_is_new_again)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    td_segment s[] = {seg(0x5, true, TD_SEV_MAJOR, 100, true)};
    uint8_t h[1];
    classify(s, 1, h);
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_DUP);
    redis_cmd("FLUSHDB");
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_NEW);
}

Test(dedup, a_lost_script_gives_safe_hints_and_is_loaded_again)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    td_segment s[] = {seg(0x6, true, TD_SEV_MAJOR, 100, true)};
    uint8_t h[1];
    classify(s, 1, h);
    redis_cmd("SCRIPT FLUSH");
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_CHANGE, "NOSCRIPT: PostgreSQL decides");
    /* The reload was queued right behind; once the loop has run, the script
     * works again and the key is still there. */
    for (int i = 0; i < 100 && h[0] != TD_HINT_DUP; i++) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        classify(s, 1, h);
    }
    cr_assert_eq(h[0], TD_HINT_DUP);
}

/* Fingerprints number i of a batch: seen before when i % 3 != 0, resolved
 * now when i % 7 == 0. */
static void
mixed_batch(td_segment *s, size_t n, uint64_t base_fp, int64_t t)
{
    for (size_t i = 0; i < n; i++)
        s[i] = seg(base_fp + i, i % 7 != 0, TD_SEV_MAJOR, t, true);
}

static void
assert_mixed_hints(const uint8_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t want = i % 3 == 0 ? TD_HINT_NEW : i % 7 == 0 ? TD_HINT_CHANGE : TD_HINT_DUP;
        cr_assert_eq(h[i], want, "fingerprint %zu: hint %d, want %d", i, h[i], want);
    }
}

Test(dedup, a_batch_larger_than_one_script_call_gets_every_hint_right)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    enum { N = 1000 }; /* four script calls against a standalone Redis */
    static td_segment s[N];
    static uint8_t h[N];
    size_t nseen = 0;
    for (size_t i = 0; i < N; i++)
        if (i % 3 != 0)
            s[nseen++] = seg(0x10000 + i, true, TD_SEV_MAJOR, 100, true);
    classify(s, nseen, h);
    for (size_t i = 0; i < nseen; i++)
        cr_assert_eq(h[i], TD_HINT_NEW);
    mixed_batch(s, N, 0x10000, 200);
    classify(s, N, h);
    assert_mixed_hints(h, N);
}

/* 600 fingerprints, those numbered 250-260 with three segments each (fire,
 * resolve, fire), so runs of one fingerprint's segments straddle the
 * 256-key boundary between two script calls: each segment gets its own
 * fingerprint's hint. */
static size_t
runs_batch(td_segment *s, int64_t t)
{
    size_t n = 0;
    for (uint64_t f = 0; f < 600; f++) {
        bool multi = f >= 250 && f <= 260;
        for (int k = 0; k < (multi ? 3 : 1); k++) {
            s[n] = seg(0x90000 + f, k != 1, TD_SEV_MAJOR, t + k, !multi);
            s[n].fp_first = k == 0;
            n++;
        }
    }
    return n;
}

Test(dedup, runs_of_one_fingerprint_across_a_call_boundary_share_its_hint)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    static td_segment s[700];
    static uint8_t h[700];
    size_t n = runs_batch(s, 100);
    cr_assert_eq(n, 622);
    classify(s, n, h);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(h[i], TD_HINT_NEW, "segment %zu (fingerprint %llx): hint %d", i,
                     (unsigned long long)s[i].fp, h[i]);
    runs_batch(s, 200);
    classify(s, n, h);
    for (size_t i = 0; i < n; i++) {
        uint64_t f = s[i].fp - 0x90000;
        uint8_t want = f >= 250 && f <= 260 ? TD_HINT_CHANGE : TD_HINT_DUP;
        cr_assert_eq(h[i], want, "segment %zu (fingerprint %llu): hint %d, want %d", i,
                     (unsigned long long)f, h[i], want);
    }
}

Test(dedup, a_key_holds_the_newest_state_as_one_string_for_a_week)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    char key[27], v[64];
    key_of(0x77, key);
    td_segment s[] = {seg(0x77, true, TD_SEV_MINOR, 1732700000000123, true)};
    uint8_t h[1];
    classify(s, 1, h);
    redis_get(key, "GET", v, sizeof(v));
    char want[64];
    snprintf(want, sizeof(want), "f%d11732700000000123", (int)TD_SEV_MINOR);
    cr_assert_str_eq(v, want);
    redis_get(key, "TTL", v, sizeof(v));
    long ttl = atol(v);
    cr_assert(ttl > 604700 && ttl <= 604800, "TTL %ld", ttl);
    /* an older resolve: a change, and the newer firing state stays */
    s[0] = seg(0x77, false, TD_SEV_MINOR, 1732699999000000, true);
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_CHANGE);
    redis_get(key, "GET", v, sizeof(v));
    cr_assert_str_eq(v, want);
    redis_get(key, "TTL", v, sizeof(v));
    cr_assert(atol(v) > 604700, "the TTL kept after putting the newer state back: %s", v);
}

/* A key as a triaged before 2026-11-27 wrote it: a hash (s, t, v). */
static void
old_key(uint64_t fp, char state, td_severity sev, long long t)
{
    char key[27], cmd[160];
    key_of(fp, key);
    snprintf(cmd, sizeof(cmd), "HSET %s s %c t %lld v %d", key, state, t, (int)sev);
    redis_cmd(cmd);
}

Test(dedup, a_key_of_the_previous_version_is_read_and_rewritten)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    old_key(0x81, 'f', TD_SEV_MAJOR, 100); /* firing: a repeat is a duplicate */
    old_key(0x82, 'r', TD_SEV_MAJOR, 100); /* resolved: a firing is a change */
    old_key(0x83, 'r', TD_SEV_MAJOR, 500); /* resolved later than what comes */
    td_segment s[] = {seg(0x81, true, TD_SEV_MAJOR, 200, true),
                      seg(0x82, true, TD_SEV_MAJOR, 200, true),
                      seg(0x83, true, TD_SEV_MAJOR, 200, true),
                      seg(0x84, true, TD_SEV_MAJOR, 200, true)};
    uint8_t h[4];
    classify(s, 4, h);
    cr_assert_eq(h[0], TD_HINT_DUP);
    cr_assert_eq(h[1], TD_HINT_CHANGE);
    cr_assert_eq(h[2], TD_HINT_CHANGE);
    cr_assert_eq(h[3], TD_HINT_NEW);
    char key[27], v[64], want[64];
    for (uint64_t fp = 0x81; fp <= 0x83; fp++) {
        key_of(fp, key);
        redis_get(key, "TYPE", v, sizeof(v));
        cr_assert_str_eq(v, "string", "key %s rewritten", key);
    }
    key_of(0x83, key); /* the hash's newer state kept, in the new form */
    redis_get(key, "GET", v, sizeof(v));
    snprintf(want, sizeof(want), "r%d0500", (int)TD_SEV_MAJOR);
    cr_assert_str_eq(v, want);
    for (uint64_t fp = 0x81; fp <= 0x83; fp++) {
        key_of(fp, key);
        if (fp < 0x83) { /* the message's state, newer than the hash's */
            redis_get(key, "GET", v, sizeof(v));
            snprintf(want, sizeof(want), "f%d1200", (int)TD_SEV_MAJOR);
            cr_assert_str_eq(v, want, "key %s", key);
        }
        redis_get(key, "TTL", v, sizeof(v));
        cr_assert(atol(v) > 604700, "key %s expires in a week: TTL %s", key, v);
    }
    /* and from now on as any key */
    classify(s, 4, h);
    cr_assert_eq(h[0], TD_HINT_DUP);
    cr_assert_eq(h[1], TD_HINT_DUP, "fired at 200 by the first call");
    cr_assert_eq(h[2], TD_HINT_CHANGE, "still resolved at 500");
    cr_assert_eq(h[3], TD_HINT_DUP);
}

Test(dedup, a_redis_out_of_memory_leaves_every_key_as_it_was)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    char key[27], v[64], want[64];
    key_of(0x91, key);
    td_segment s[] = {seg(0x91, true, TD_SEV_MAJOR, 100, true)};
    uint8_t h[1];
    classify(s, 1, h);
    snprintf(want, sizeof(want), "f%d1100", (int)TD_SEV_MAJOR);
    redis_get(key, "GET", v, sizeof(v));
    cr_assert_str_eq(v, want);
    char mem[64], policy[64], cmd[128];
    redis_config("maxmemory", mem, sizeof(mem));
    redis_config("maxmemory-policy", policy, sizeof(policy));
    redis_cmd("CONFIG SET maxmemory-policy noeviction");
    redis_cmd("CONFIG SET maxmemory 1");
    s[0] = seg(0x91, true, TD_SEV_MAJOR, 200, true);
    classify(s, 1, h);
    snprintf(cmd, sizeof(cmd), "CONFIG SET maxmemory %s", mem);
    redis_cmd(cmd);
    snprintf(cmd, sizeof(cmd), "CONFIG SET maxmemory-policy %s", policy);
    redis_cmd(cmd);
    cr_assert_eq(h[0], TD_HINT_CHANGE, "the call failed: PostgreSQL decides");
    redis_get(key, "GET", v, sizeof(v));
    cr_assert_str_eq(v, want, "the key neither deleted nor changed");
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_DUP);
}

Test(dedup, a_message_as_old_as_the_state_replaces_it)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    td_segment s[] = {seg(0xa1, true, TD_SEV_MAJOR, 300, true)};
    uint8_t h[1];
    classify(s, 1, h);
    s[0] = seg(0xa1, false, TD_SEV_MAJOR, 300, true); /* resolved, same time */
    classify(s, 1, h);
    cr_assert_eq(h[0], TD_HINT_CHANGE);
    char key[27], v[64], want[64];
    key_of(0xa1, key);
    redis_get(key, "GET", v, sizeof(v));
    snprintf(want, sizeof(want), "r%d0300", (int)TD_SEV_MAJOR); /* (flag 0: a resolve) */
    cr_assert_str_eq(v, want);
}

Test(dedup, a_key_of_another_type_fails_its_call_and_is_left_alone)
{
    redis_cmd("FLUSHDB");
    wait_ready();
    char key[27], cmd[96], v[64];
    key_of(0xb2, key);
    snprintf(cmd, sizeof(cmd), "RPUSH %s x", key);
    redis_cmd(cmd);
    td_segment s[] = {seg(0xb1, true, TD_SEV_MAJOR, 100, true),
                      seg(0xb2, true, TD_SEV_MAJOR, 100, true),
                      seg(0xb3, true, TD_SEV_MAJOR, 100, true)};
    uint8_t h[3];
    classify(s, 3, h);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(h[i], TD_HINT_CHANGE, "the call failed: PostgreSQL decides (%d)", i);
    redis_get(key, "TYPE", v, sizeof(v));
    cr_assert_str_eq(v, "list");
    redis_get(key, "LLEN", v, sizeof(v));
    cr_assert_str_eq(v, "1");
}

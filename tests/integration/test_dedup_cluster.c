/* Redis dedup against a real redis-server in cluster mode (one node holding
 * every slot, started here on a free loopback port): a script call may only
 * touch keys of one slot there, so dedup.c must send one fingerprint a call
 * (a 256-key call would fail with CROSSSLOT and leave every hint "change"). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal/dedup.h"

static pid_t server = -1;
static int port;
static char dir[] = "/tmp/td-redis-cluster.XXXXXX";

static int
free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static redisReply *
command(const char *cmd)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    if (!c || c->err) {
        redisFree(c);
        return NULL;
    }
    redisReply *r = redisCommand(c, cmd);
    redisFree(c);
    return r;
}

static void
start_cluster_node(void)
{
    cr_assert_not_null(mkdtemp(dir));
    port = free_port();
    /* (the bus port given: by default it is port + 10000, which may be
     * taken or past 65535) */
    int bus = free_port();
    char portstr[16], busstr[16], logfile[sizeof(dir) + 16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    snprintf(busstr, sizeof(busstr), "%d", bus);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", dir);
    server = fork();
    cr_assert(server >= 0);
    if (server == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlives the test */
        execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
               "--cluster-enabled", "yes", "--cluster-port", busstr, "--dir", dir, "--save",
               "", "--appendonly", "no", "--logfile", logfile, "--loglevel", "warning",
               (char *)NULL);
        _exit(127);
    }
    redisReply *r = NULL;
    for (int i = 0; i < 200 && !(r = command("PING")); i++)
        usleep(20000);
    cr_assert_not_null(r, "redis-server (cluster mode) did not start");
    freeReplyObject(r);
    r = command("CLUSTER ADDSLOTSRANGE 0 16383");
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "CLUSTER ADDSLOTSRANGE failed");
    freeReplyObject(r);
    bool ok = false;
    for (int i = 0; i < 200 && !ok; i++) {
        r = command("CLUSTER INFO");
        ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");
        freeReplyObject(r);
        if (!ok)
            usleep(20000);
    }
    cr_assert(ok, "the one-node cluster did not reach cluster_state:ok");
}

static void
stop_cluster_node(void)
{
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    char path[sizeof(dir) + 16];
    snprintf(path, sizeof(path), "%s/nodes.conf", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/redis.log", dir);
    unlink(path);
    rmdir(dir);
}

TestSuite(dedup_cluster, .init = start_cluster_node, .fini = stop_cluster_node, .timeout = 30);

static void
done(void *arg)
{
    *(int *)arg = 1;
}

static void
classify(struct event_base *base, td_dedup *d, td_segment *s, size_t n, uint8_t *h)
{
    int fin = 0;
    td_dedup_classify(d, s, n, h, done, &fin);
    while (!fin)
        event_base_loop(base, EVLOOP_ONCE);
}

Test(dedup_cluster, every_fingerprint_is_classified_one_key_a_call)
{
    struct event_base *base = event_base_new();
    char url[64], err[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    td_dedup *d = td_dedup_new(base, url, err, sizeof(err));
    cr_assert_not_null(d, "%s", err);
    enum { N = 600 }; /* more than one standalone call's 256 keys */
    static td_segment s[N];
    static uint8_t h[N];
    for (size_t i = 0; i < N; i++)
        s[i] = (td_segment){.fp = 0x5000 + i, .firing = true, .severity = TD_SEV_MAJOR,
                            .n = 1, .first_us = 100, .last_us = 100, .fp_first = true,
                            .fp_single = true};
    /* connected and the script loaded once a classify gets real hints */
    for (int i = 0; i < 400; i++) {
        classify(base, d, s, 1, h);
        if (h[0] != TD_HINT_CHANGE)
            break;
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    cr_assert_eq(h[0], TD_HINT_NEW, "no real hint from the cluster node");
    classify(base, d, s, N, h);
    cr_assert_eq(h[0], TD_HINT_DUP);
    for (size_t i = 1; i < N; i++)
        cr_assert_eq(h[i], TD_HINT_NEW, "fingerprint %zu: hint %d", i, h[i]);
    classify(base, d, s, N, h);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(h[i], TD_HINT_DUP, "fingerprint %zu: hint %d", i, h[i]);
    td_dedup_free(d);
    event_base_free(base);
}

/*
 * mockbroker.c -- td-mockbroker, the Kafka-protocol broker of the test stack.
 *
 * The design is simple: librdkafka ships a mock cluster (rdkafka_mock.h) that
 * speaks enough of the Kafka protocol for producers, consumers and consumer
 * groups. This program creates one with N brokers on loopback, creates the
 * topics the tests need, prints the bootstrap address as one line on stdout
 * and then sleeps in poll(2) until it is told to stop. kcat and triaged
 * connect to it over TCP like to any broker.
 *
 * Data enters only through the brokers' sockets (served by librdkafka's mock
 * thread) and through the optional control FIFO, which takes one fault
 * injection command per line and answers each on stderr with "ok ..." or
 * "error ...".
 *
 * It must never outlive the test that started it: it stops on SIGTERM,
 * SIGINT or SIGHUP, when its parent dies (PR_SET_PDEATHSIG) and when
 * --max-lifetime expires. It never busy-waits: signals arrive on a signalfd
 * and the only timeout is the lifetime deadline.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define PROG "td-mockbroker"

#define DEFAULT_BROKERS 1
#define DEFAULT_PARTITIONS 8
#define DEFAULT_TOPICS "alerts,capacity,incidents,dead-letter"
#define DEFAULT_MAX_LIFETIME 7200

#define MAX_BROKERS 64
#define MAX_PARTITIONS 10000
#define MAX_LIFETIME (7L * 24 * 3600)
#define MAX_RTT_MS 3600000L
#define MAX_ERROR_COUNT 100000L
#define KAFKA_TOPIC_MAX 249
#define CTL_LINE_MAX 1024

typedef struct mb_opts {
    int brokers;
    int partitions;
    long max_lifetime;
    const char *topics;
    const char *control;
    bool pdeathsig;
} mb_opts;

typedef struct mb_ctl {
    int fd;
    bool created; /* we made the FIFO, so we unlink it at exit */
    char buf[CTL_LINE_MAX];
    size_t len;
    bool discarding; /* inside an overlong line: drop bytes until '\n' */
} mb_ctl;

static void usage(FILE *out)
{
    fprintf(out,
        "usage: " PROG " [options]\n"
        "\n"
        "Runs librdkafka's mock Kafka cluster on 127.0.0.1, prints its bootstrap\n"
        "address as one line on stdout, and serves until SIGTERM/SIGINT/SIGHUP,\n"
        "until its parent process dies, or until --max-lifetime expires.\n"
        "\n"
        "options:\n"
        "  --brokers N          number of brokers, ids 1..N (default %d)\n"
        "  --partitions N       partitions per topic (default %d)\n"
        "  --topics a,b,c       topics to create (default %s)\n"
        "  --max-lifetime SECS  stop after SECS seconds (default %d)\n"
        "  --control FIFO       read fault-injection commands from this named\n"
        "                       pipe (created with mode 0600 if missing)\n"
        "  --no-pdeathsig       keep running when the parent process dies\n"
        "  -h, --help           show this help\n"
        "\n"
        "control commands (one per line; each answered on stderr with\n"
        "\"ok <command>\" or \"error <command>: <reason>\"):\n"
        "  down BROKER_ID|all          close connections, refuse new ones\n"
        "  up BROKER_ID|all            accept connections again\n"
        "  rtt BROKER_ID|all MS        add MS milliseconds to every response\n"
        "  topic NAME PARTITIONS       create another topic\n"
        "  error APIKEY ERRCODE COUNT  fail the next COUNT requests of APIKEY\n"
        "                              (number or name, e.g. Produce, Fetch,\n"
        "                              Metadata) with ERRCODE (number or\n"
        "                              name, e.g. NOT_LEADER_FOR_PARTITION,\n"
        "                              _TRANSPORT to disconnect)\n"
        "  clear APIKEY                drop pending errors for APIKEY\n"
        "  ping                        answer \"ok ping\"\n",
        DEFAULT_BROKERS, DEFAULT_PARTITIONS, DEFAULT_TOPICS,
        DEFAULT_MAX_LIFETIME);
}

/* Parses a whole decimal string into [min, max]; 0 on success. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Broker id: 1..MAX_BROKERS, or "all" which the mock API spells -1. */
static int parse_broker_id(const char *s, int32_t *out)
{
    long v;

    if (s != NULL && strcmp(s, "all") == 0) {
        *out = -1;
        return 0;
    }
    if (parse_long(s, 1, INT32_MAX, &v) != 0)
        return -1;
    *out = (int32_t)v;
    return 0;
}

/* Kafka's own rule: 1..249 characters of [a-zA-Z0-9._-], not "." or "..". */
static bool topic_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > KAFKA_TOPIC_MAX)
        return false;
    if ((len == 1 && name[0] == '.') ||
        (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static const struct {
    const char *name;
    int16_t key;
} api_keys[] = {
    {"Produce", 0},          {"Fetch", 1},
    {"ListOffsets", 2},      {"Metadata", 3},
    {"OffsetCommit", 8},     {"OffsetFetch", 9},
    {"FindCoordinator", 10}, {"JoinGroup", 11},
    {"Heartbeat", 12},       {"LeaveGroup", 13},
    {"SyncGroup", 14},       {"DescribeGroups", 15},
    {"ListGroups", 16},      {"SaslHandshake", 17},
    {"ApiVersions", 18},     {"CreateTopics", 19},
    {"DeleteTopics", 20},    {"DeleteRecords", 21},
    {"InitProducerId", 22},  {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25}, {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
};

static int parse_api_key(const char *s, int16_t *out)
{
    long v;

    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++) {
        if (strcasecmp(s, api_keys[i].name) == 0) {
            *out = api_keys[i].key;
            return 0;
        }
    }
    if (parse_long(s, 0, 1000, &v) != 0)
        return -1;
    *out = (int16_t)v;
    return 0;
}

/* An error code by number or by name ("NOT_LEADER_FOR_PARTITION",
 * "_TRANSPORT", optionally with the RD_KAFKA_RESP_ERR_ prefix). Only codes
 * librdkafka knows are accepted, so a typo fails loudly. */
static int parse_err_code(const char *s, rd_kafka_resp_err_t *out)
{
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    const struct rd_kafka_err_desc *descs;
    size_t cnt;
    long num = 0;
    bool by_number;

    if (s == NULL)
        return -1;
    if (strncasecmp(s, prefix, sizeof(prefix) - 1) == 0)
        s += sizeof(prefix) - 1;
    by_number = parse_long(s, INT_MIN, INT_MAX, &num) == 0;

    rd_kafka_get_err_descs(&descs, &cnt);
    for (size_t i = 0; i < cnt; i++) {
        if (descs[i].name == NULL)
            continue;
        if (by_number ? (long)descs[i].code == num
                      : strcasecmp(s, descs[i].name) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    return -1;
}

static int parse_args(int argc, char **argv, mb_opts *o)
{
    long v;

    o->brokers = DEFAULT_BROKERS;
    o->partitions = DEFAULT_PARTITIONS;
    o->max_lifetime = DEFAULT_MAX_LIFETIME;
    o->topics = DEFAULT_TOPICS;
    o->control = NULL;
    o->pdeathsig = true;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = (i + 1 < argc) ? argv[i + 1] : NULL;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--no-pdeathsig") == 0) {
            o->pdeathsig = false;
            continue;
        }
        if (strcmp(a, "--brokers") != 0 && strcmp(a, "--partitions") != 0 &&
            strcmp(a, "--topics") != 0 && strcmp(a, "--max-lifetime") != 0 &&
            strcmp(a, "--control") != 0) {
            fprintf(stderr, PROG ": unknown option '%s' (see --help)\n", a);
            return -1;
        }
        if (val == NULL) {
            fprintf(stderr, PROG ": option %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--brokers") == 0) {
            if (parse_long(val, 1, MAX_BROKERS, &v) != 0) {
                fprintf(stderr, PROG ": --brokers: '%s' is not a number "
                        "in 1..%d\n", val, MAX_BROKERS);
                return -1;
            }
            o->brokers = (int)v;
        } else if (strcmp(a, "--partitions") == 0) {
            if (parse_long(val, 1, MAX_PARTITIONS, &v) != 0) {
                fprintf(stderr, PROG ": --partitions: '%s' is not a number "
                        "in 1..%d\n", val, MAX_PARTITIONS);
                return -1;
            }
            o->partitions = (int)v;
        } else if (strcmp(a, "--max-lifetime") == 0) {
            if (parse_long(val, 1, MAX_LIFETIME, &v) != 0) {
                fprintf(stderr, PROG ": --max-lifetime: '%s' is not a "
                        "number of seconds in 1..%ld\n", val, MAX_LIFETIME);
                return -1;
            }
            o->max_lifetime = v;
        } else if (strcmp(a, "--topics") == 0) {
            o->topics = val;
        } else {
            if (*val == '\0') {
                fprintf(stderr, PROG ": --control: empty path\n");
                return -1;
            }
            o->control = val;
        }
    }
    return 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
    (void)rk;
    /* Our handle has no bootstrap.servers on purpose; don't warn about it. */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers"))
        return;
    fprintf(stderr, PROG ": rdkafka level=%d %s: %s\n", level, fac, buf);
}

static int replication_factor(int brokers)
{
    return brokers < 3 ? brokers : 3;
}

static int create_topic(rd_kafka_mock_cluster_t *mc, const char *name,
                        int partitions, int brokers, char *err,
                        size_t errsize)
{
    rd_kafka_resp_err_t e;

    if (!topic_name_valid(name, strlen(name))) {
        snprintf(err, errsize, "invalid topic name '%s' (1..%d characters of "
                 "a-z A-Z 0-9 . _ -)", name, KAFKA_TOPIC_MAX);
        return -1;
    }
    e = rd_kafka_mock_topic_create(mc, name, partitions,
                                   replication_factor(brokers));
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errsize, "cannot create topic '%s': %s", name,
                 rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

static int create_topics(rd_kafka_mock_cluster_t *mc, const mb_opts *o)
{
    char err[512];
    char *list, *save = NULL;
    int rc = 0;

    if ((list = strdup(o->topics)) == NULL) {
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    for (char *t = strtok_r(list, ",", &save); t != NULL;
         t = strtok_r(NULL, ",", &save)) {
        if (create_topic(mc, t, o->partitions, o->brokers, err,
                         sizeof(err)) != 0) {
            fprintf(stderr, PROG ": --topics: %s\n", err);
            rc = -1;
            break;
        }
    }
    free(list);
    return rc;
}

/* ---- control FIFO ------------------------------------------------------ */

static int ctl_open(mb_ctl *c, const char *path)
{
    struct stat st;

    c->fd = -1;
    c->created = false;
    c->len = 0;
    c->discarding = false;

    if (lstat(path, &st) == 0) {
        if (!S_ISFIFO(st.st_mode)) {
            fprintf(stderr, PROG ": --control %s: exists and is not a named "
                    "pipe\n", path);
            return -1;
        }
    } else if (errno == ENOENT) {
        if (mkfifo(path, 0600) != 0) {
            fprintf(stderr, PROG ": --control %s: mkfifo: %s\n", path,
                    strerror(errno));
            return -1;
        }
        c->created = true;
    } else {
        fprintf(stderr, PROG ": --control %s: %s\n", path, strerror(errno));
        return -1;
    }

    /* O_RDWR (defined on Linux for FIFOs) keeps a writer open ourselves, so
     * the FIFO never reports EOF/POLLHUP when a client closes it; otherwise
     * poll() would spin between clients. */
    c->fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (c->fd < 0) {
        fprintf(stderr, PROG ": --control %s: open: %s\n", path,
                strerror(errno));
        if (c->created)
            (void)unlink(path);
        c->created = false;
        return -1;
    }
    return 0;
}

static void ctl_close(mb_ctl *c, const char *path)
{
    if (c->fd >= 0 && close(c->fd) != 0)
        fprintf(stderr, PROG ": close %s: %s\n", path, strerror(errno));
    c->fd = -1;
    if (c->created && unlink(path) != 0)
        fprintf(stderr, PROG ": unlink %s: %s\n", path, strerror(errno));
    c->created = false;
}

static void reply(bool ok, const char *cmd, const char *fmt, ...)
{
    char detail[512] = "";

    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof(detail), fmt, ap);
        va_end(ap);
    }
    /* One fprintf per answer: stdio locks stderr, so answers never
     * interleave with librdkafka's log lines from its own threads. */
    if (ok)
        fprintf(stderr, "ok %s\n", cmd);
    else
        fprintf(stderr, "error %s: %s\n", cmd, detail);
}

static void ctl_command(rd_kafka_mock_cluster_t *mc, const mb_opts *o,
                        char *line)
{
    char cmd[CTL_LINE_MAX];
    char *argv[6];
    int argc = 0;
    char *save = NULL;
    rd_kafka_resp_err_t e;
    int32_t broker;
    long v, count;

    /* Trim and keep a copy of the command to echo back. */
    while (*line == ' ' || *line == '\t')
        line++;
    for (size_t n = strlen(line); n > 0 && (line[n - 1] == ' ' ||
         line[n - 1] == '\t' || line[n - 1] == '\r'); n--)
        line[n - 1] = '\0';
    if (*line == '\0' || *line == '#')
        return;
    snprintf(cmd, sizeof(cmd), "%s", line);

    for (char *t = strtok_r(line, " \t", &save); t != NULL;
         t = strtok_r(NULL, " \t", &save)) {
        if (argc == (int)(sizeof(argv) / sizeof(argv[0]))) {
            reply(false, cmd, "too many arguments");
            return;
        }
        argv[argc++] = t;
    }

    if (strcmp(argv[0], "ping") == 0 && argc == 1) {
        reply(true, cmd, NULL);
    } else if ((strcmp(argv[0], "down") == 0 || strcmp(argv[0], "up") == 0) &&
               argc == 2) {
        if (parse_broker_id(argv[1], &broker) != 0) {
            reply(false, cmd, "bad broker id '%s' (1..%d or all)", argv[1],
                  o->brokers);
            return;
        }
        e = argv[0][0] == 'd' ? rd_kafka_mock_broker_set_down(mc, broker)
                              : rd_kafka_mock_broker_set_up(mc, broker);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            reply(false, cmd, "%s", rd_kafka_err2str(e));
        else
            reply(true, cmd, NULL);
    } else if (strcmp(argv[0], "rtt") == 0 && argc == 3) {
        if (parse_broker_id(argv[1], &broker) != 0) {
            reply(false, cmd, "bad broker id '%s' (1..%d or all)", argv[1],
                  o->brokers);
            return;
        }
        if (parse_long(argv[2], 0, MAX_RTT_MS, &v) != 0) {
            reply(false, cmd, "bad milliseconds '%s' (0..%ld)", argv[2],
                  MAX_RTT_MS);
            return;
        }
        e = rd_kafka_mock_broker_set_rtt(mc, broker, (int)v);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            reply(false, cmd, "%s", rd_kafka_err2str(e));
        else
            reply(true, cmd, NULL);
    } else if (strcmp(argv[0], "topic") == 0 && argc == 3) {
        char err[512];
        if (parse_long(argv[2], 1, MAX_PARTITIONS, &v) != 0) {
            reply(false, cmd, "bad partition count '%s' (1..%d)", argv[2],
                  MAX_PARTITIONS);
            return;
        }
        if (create_topic(mc, argv[1], (int)v, o->brokers, err,
                         sizeof(err)) != 0)
            reply(false, cmd, "%s", err);
        else
            reply(true, cmd, NULL);
    } else if (strcmp(argv[0], "error") == 0 && argc == 4) {
        int16_t key;
        rd_kafka_resp_err_t code;
        rd_kafka_resp_err_t *codes;

        if (parse_api_key(argv[1], &key) != 0) {
            reply(false, cmd, "bad api key '%s' (number or name such as "
                  "Produce, Fetch, Metadata)", argv[1]);
            return;
        }
        if (parse_err_code(argv[2], &code) != 0) {
            reply(false, cmd, "unknown error code '%s' (number or name such "
                  "as NOT_LEADER_FOR_PARTITION, _TRANSPORT)", argv[2]);
            return;
        }
        if (parse_long(argv[3], 1, MAX_ERROR_COUNT, &count) != 0) {
            reply(false, cmd, "bad count '%s' (1..%ld)", argv[3],
                  MAX_ERROR_COUNT);
            return;
        }
        if ((codes = malloc((size_t)count * sizeof(*codes))) == NULL) {
            reply(false, cmd, "out of memory");
            return;
        }
        for (long i = 0; i < count; i++)
            codes[i] = code;
        rd_kafka_mock_push_request_errors_array(mc, key, (size_t)count,
                                                codes);
        free(codes);
        reply(true, cmd, NULL);
    } else if (strcmp(argv[0], "clear") == 0 && argc == 2) {
        int16_t key;
        if (parse_api_key(argv[1], &key) != 0) {
            reply(false, cmd, "bad api key '%s'", argv[1]);
            return;
        }
        rd_kafka_mock_clear_request_errors(mc, key);
        reply(true, cmd, NULL);
    } else {
        reply(false, cmd, "unknown command or wrong number of arguments "
              "(see --help)");
    }
}

/* Reads what is available and runs every complete line. 0, or -1 when the
 * FIFO failed for good. */
static int ctl_read(mb_ctl *c, rd_kafka_mock_cluster_t *mc, const mb_opts *o)
{
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
        char *start, *nl;

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            fprintf(stderr, PROG ": read control FIFO: %s\n",
                    strerror(errno));
            return -1;
        }
        if (n == 0) /* cannot happen while we hold a writer; be safe */
            return 0;
        c->len += (size_t)n;
        c->buf[c->len] = '\0';

        start = c->buf;
        while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
            *nl = '\0';
            if (c->discarding)
                c->discarding = false;
            else
                ctl_command(mc, o, start);
            start = nl + 1;
        }
        c->len -= (size_t)(start - c->buf);
        memmove(c->buf, start, c->len);

        if (c->len == sizeof(c->buf) - 1) {
            if (!c->discarding)
                fprintf(stderr, "error <line too long>: control lines are "
                        "limited to %d bytes\n", CTL_LINE_MAX - 2);
            c->discarding = true;
            c->len = 0;
        }
    }
}

/* ---- main -------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        fprintf(stderr, PROG ": clock_gettime: %s\n", strerror(errno));
        exit(2);
    }
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    mb_opts o;
    mb_ctl ctl = {.fd = -1};
    sigset_t mask;
    int sfd = -1;
    pid_t parent;
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    const char *bootstraps;
    long long deadline;
    int rc = 2;

    if (parse_args(argc, argv, &o) != 0)
        return 1;

    /* Block the stop signals before librdkafka starts its threads, so the
     * threads inherit the mask and every stop signal ends up on the
     * signalfd. */
    if (sigemptyset(&mask) != 0 || sigaddset(&mask, SIGTERM) != 0 ||
        sigaddset(&mask, SIGINT) != 0 || sigaddset(&mask, SIGHUP) != 0) {
        fprintf(stderr, PROG ": sigset: %s\n", strerror(errno));
        return 2;
    }
    if ((errno = pthread_sigmask(SIG_BLOCK, &mask, NULL)) != 0) {
        fprintf(stderr, PROG ": pthread_sigmask: %s\n", strerror(errno));
        return 2;
    }
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        fprintf(stderr, PROG ": signal(SIGPIPE): %s\n", strerror(errno));
        return 2;
    }
    if ((sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
        fprintf(stderr, PROG ": signalfd: %s\n", strerror(errno));
        return 2;
    }

    if (o.pdeathsig) {
        parent = getppid();
        if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0) {
            fprintf(stderr, PROG ": prctl(PR_SET_PDEATHSIG): %s\n",
                    strerror(errno));
            goto fail;
        }
        /* The parent may have died before prctl took effect. */
        if (getppid() != parent) {
            fprintf(stderr, PROG ": parent exited before start-up, "
                    "stopping\n");
            rc = 0;
            goto fail;
        }
    }

    if ((conf = rd_kafka_conf_new()) == NULL) {
        fprintf(stderr, PROG ": rd_kafka_conf_new failed\n");
        goto fail;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    if (rd_kafka_conf_set(conf, "client.id", PROG, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        fprintf(stderr, PROG ": rdkafka config: %s\n", errstr);
        goto fail;
    }
    /* The handle only does the cluster's book-keeping; it connects nowhere. */
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, PROG ": rd_kafka_new: %s\n", errstr);
        goto fail;
    }
    conf = NULL; /* owned by rk now */

    if ((mc = rd_kafka_mock_cluster_new(rk, o.brokers)) == NULL) {
        fprintf(stderr, PROG ": cannot create a mock cluster of %d "
                "broker(s) (see rdkafka log above)\n", o.brokers);
        goto fail;
    }
    if (create_topics(mc, &o) != 0)
        goto fail;
    if (o.control != NULL && ctl_open(&ctl, o.control) != 0)
        goto fail;

    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    if (bootstraps == NULL || *bootstraps == '\0') {
        fprintf(stderr, PROG ": mock cluster has no bootstrap address\n");
        goto fail;
    }
    if (printf("%s\n", bootstraps) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, PROG ": write bootstrap address to stdout: %s\n",
                strerror(errno));
        goto fail;
    }
    fprintf(stderr, PROG ": serving %d broker(s) at %s, topics %s with %d "
            "partition(s), max lifetime %lds\n", o.brokers, bootstraps,
            o.topics, o.partitions, o.max_lifetime);

    deadline = now_ms() + o.max_lifetime * 1000LL;
    for (;;) {
        struct pollfd pfd[2] = {
            {.fd = sfd, .events = POLLIN},
            {.fd = ctl.fd, .events = POLLIN}, /* fd -1 is ignored by poll */
        };
        long long left = deadline - now_ms();
        int n;

        if (left <= 0) {
            fprintf(stderr, PROG ": max lifetime of %lds reached, "
                    "stopping\n", o.max_lifetime);
            break;
        }
        n = poll(pfd, 2, left > INT_MAX ? INT_MAX : (int)left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
            goto fail;
        }
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            ssize_t r = read(sfd, &si, sizeof(si));
            if (r != (ssize_t)sizeof(si)) {
                fprintf(stderr, PROG ": read signalfd: %s\n",
                        r < 0 ? strerror(errno) : "short read");
                goto fail;
            }
            fprintf(stderr, PROG ": got %s from pid %u, stopping\n",
                    strsignal((int)si.ssi_signo), si.ssi_pid);
            break;
        }
        if (pfd[1].revents & (POLLERR | POLLNVAL)) {
            fprintf(stderr, PROG ": control FIFO failed, stopping\n");
            goto fail;
        }
        if ((pfd[1].revents & POLLIN) && ctl_read(&ctl, mc, &o) != 0)
            goto fail;
    }
    rc = 0;

fail:
    if (ctl.fd >= 0 || ctl.created)
        ctl_close(&ctl, o.control);
    if (mc != NULL)
        rd_kafka_mock_cluster_destroy(mc);
    if (rk != NULL)
        rd_kafka_destroy(rk);
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    if (sfd >= 0)
        close(sfd);
    return rc;
}

/* paced_produce.c — the latency benchmark's producer: new alerts at a fixed
 * rate, each stamped with the time it is produced.
 *
 * Usage: paced_produce BROKERS TOPIC RATE SECONDS [LINGER_MS (1)]
 *
 * Message i (from 0) is due at start + i / RATE; it is produced when due,
 * keyed by its resource, with occurred_at = the wall clock when produced
 * (microseconds, UTC). A resource's ten checks come in a row:
 *   host-<i / 10, six digits>  {"source":"lat","resource":"host-...",
 *                               "check":"c<i % 10>","occurred_at":"..."}
 * It is what bench_kafka.sh's python loop piped into `kcat -P` did, in one
 * process: that pair took ~26 % + 8 % of a core at 5,000/s on the 2-core
 * machine the benchmark shares with the broker, Redis, PostgreSQL and
 * triaged; this takes a few %. Every message's delivery report is checked:
 * the exit status is 1 if any failed, and the count is printed. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static long delivered, failed;

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (failed++ == 0)
            fprintf(stderr, "paced_produce: delivery failed: %s\n", rd_kafka_err2str(m->err));
    } else {
        delivered++;
    }
}

static int
set(rd_kafka_conf_t *conf, const char *key, const char *value)
{
    char err[256];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "paced_produce: %s=%s: %s\n", key, value, err);
        return -1;
    }
    return 0;
}

static long
parse_long(const char *s, const char *what, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max) {
        fprintf(stderr, "paced_produce: bad %s: %s (%ld..%ld)\n", what, s, min, max);
        exit(2);
    }
    return v;
}

/* start + i / rate, exactly */
static struct timespec
due_at(struct timespec start, long i, long rate)
{
    int64_t ns = (int64_t)start.tv_nsec + (int64_t)(i % rate) * 1000000000 / rate;
    start.tv_sec += (time_t)(i / rate + ns / 1000000000);
    start.tv_nsec = (long)(ns % 1000000000);
    return start;
}

int
main(int argc, char **argv)
{
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: paced_produce BROKERS TOPIC RATE SECONDS [LINGER_MS]\n");
        return 2;
    }
    const char *brokers = argv[1], *topic = argv[2];
    long rate = parse_long(argv[3], "rate", 1, 1000000);
    long secs = parse_long(argv[4], "seconds", 1, 86400);
    const char *linger = argc == 6 ? argv[5] : "1";
    parse_long(linger, "linger.ms", 0, 900000);

    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (set(conf, "bootstrap.servers", brokers) || set(conf, "linger.ms", linger) ||
        set(conf, "compression.type", "none")) {
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "paced_produce: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 2;
    }

    long n = rate * secs;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < n; i++) {
        struct timespec due = due_at(start, i, rate);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
            ;
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        char key[32], value[160];
        int kl = snprintf(key, sizeof(key), "host-%06ld", i / 10);
        int vl = snprintf(value, sizeof(value),
                          "{\"source\":\"lat\",\"resource\":\"%s\",\"check\":\"c%ld\","
                          "\"occurred_at\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\"}",
                          key, i % 10, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                          tm.tm_min, tm.tm_sec, now.tv_nsec / 1000);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_KEY(key, (size_t)kl),
                                      RD_KAFKA_V_VALUE(value, (size_t)vl), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        if (e) {
            fprintf(stderr, "paced_produce: produce: %s\n", rd_kafka_err2str(e));
            failed++;
            break;
        }
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "paced_produce: %d messages still queued after 30 s\n", rd_kafka_outq_len(rk));
    rd_kafka_destroy(rk);
    fprintf(stderr, "paced_produce: %ld of %ld messages delivered, %ld failed\n", delivered, n,
            failed);
    return delivered == n && failed == 0 ? 0 : 1;
}

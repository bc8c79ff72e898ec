/* fuzz_config.c — libFuzzer target for the INI config parser
 * (daemon/config.c: td_config_load with its option table, conversions,
 * environment overrides and checks), on any text as triaged.conf.
 *
 * The input is written to a memory file (memfd) and loaded by its
 * /proc/self/fd path: the real entry point reads it as it reads a file,
 * with no parse-from-buffer path that could differ. Two environment
 * overrides are set once (one plain key, one rdkafka.* pass-through) so
 * that path runs too and more inputs load. A config that loads is then
 * diffed against the previous one that loaded and its reloadable values
 * applied to it (what SIGHUP does), and read back with td_config_get and
 * td_config_each; one that does not must give at least one error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal/config.h"
#include "internal/errors.h"

static int fd = -1;
static char path[64];
static td_config *prev;
static size_t n_changed;

static void
on_diff(const td_option *opt, void *arg)
{
    (void)arg;
    n_changed += strlen(opt->section) + strlen(opt->name);
}

static int
on_entry(const td_config_entry *e, void *arg)
{
    size_t *sum = arg;
    *sum += strlen(e->key) + strlen(e->value);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0) {
        fd = memfd_create("fuzz_config", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        setenv("TRIAGED_REDIS_URL", "redis://127.0.0.1:6379/0", 1);
        setenv("TRIAGED_KAFKA_RDKAFKA_CLIENT_ID", "fuzz", 1);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();

    td_errors errs = {0};
    td_config *cfg = NULL;
    int rc = td_config_load(path, &cfg, &errs);
    if (rc != TD_OK) {
        if (cfg || errs.n == 0)
            abort(); /* a rejection always says why */
        for (size_t i = 0; i < errs.n; i++)
            if (!errs.msgs[i] || !*errs.msgs[i])
                abort();
        td_errors_clear(&errs);
        return 0;
    }
    if (!cfg || errs.n != 0)
        abort();
    size_t sum = 0;
    const char *v = td_config_get(cfg, "kafka", "rdkafka.client.id");
    if (v)
        sum += strlen(v);
    td_config_each(cfg, "kafka", "rdkafka.", on_entry, &sum);
    if (prev) {
        td_config_diff(prev, cfg, on_diff, NULL);
        td_config_apply_reloadable(prev, cfg);
        td_config_free(prev);
    }
    prev = cfg;
    if (sum == (size_t)-1)
        abort();
    return 0;
}

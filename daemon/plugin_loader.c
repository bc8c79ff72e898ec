/* plugin_loader.c — dlopen a plugin by name and check it before use.
 *
 * Nothing here runs plugin code: init() is the host's to call. A plugin is
 * opened with RTLD_NOW so a missing symbol fails here, at startup, with the
 * plugin's name, not later on the alert path. */
#include "internal/plugin_loader.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal/util.h"

struct td_plugin_handle {
    void *dl;
    const td_plugin *def;
    char *path;
};

static int
valid_name(const char *name)
{
    if (!*name || strlen(name) > 64)
        return 0;
    for (const char *p = name; *p; p++)
        if (!(*p == '_' || *p == '-' || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

int
td_plugin_open(const char *dir, const char *name, td_plugin_handle **out,
               char *err, size_t errlen)
{
    struct stat st;
    char *path = NULL;
    void *dl = NULL;

    *out = NULL;
    if (!valid_name(name)) {
        snprintf(err, errlen, "plugin '%s': invalid name (letters, digits, _ and - only)",
                 name);
        return TD_ERR;
    }
    path = td_asprintf("%s/%s.so", dir, name);
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "plugin %s: %s: %s", name, path, strerror(errno));
        goto fail;
    }
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!dl) {
        snprintf(err, errlen, "plugin %s: cannot load: %s", name, dlerror());
        goto fail;
    }
    const td_plugin *def = dlsym(dl, TD_PLUGIN_SYMBOL);
    if (!def) {
        snprintf(err, errlen, "plugin %s: %s does not export symbol '%s'", name,
                 path, TD_PLUGIN_SYMBOL);
        goto fail;
    }
    if (def->abi_version != TD_PLUGIN_ABI_VERSION) {
        snprintf(err, errlen,
                 "plugin %s: built for plugin ABI version %u, this triaged "
                 "speaks version %u",
                 name, def->abi_version, TD_PLUGIN_ABI_VERSION);
        goto fail;
    }
    if (!def->name || strcmp(def->name, name) != 0) {
        snprintf(err, errlen, "plugin %s: calls itself '%s'", name,
                 def->name ? def->name : "(null)");
        goto fail;
    }
    if ((def->kind != TD_PLUGIN_INPUT && def->kind != TD_PLUGIN_OUTPUT) ||
        !def->init || !def->fini) {
        snprintf(err, errlen, "plugin %s: bad definition (kind or init/fini missing)",
                 name);
        goto fail;
    }
    if (def->kind == TD_PLUGIN_OUTPUT && !def->on_event) {
        snprintf(err, errlen, "plugin %s: output without on_event", name);
        goto fail;
    }
    td_plugin_handle *h = td_calloc(1, sizeof(*h));
    h->dl = dl;
    h->def = def;
    h->path = path;
    *out = h;
    return TD_OK;

fail:
    if (dl)
        dlclose(dl);
    free(path);
    return TD_ERR;
}

const td_plugin *
td_plugin_def(const td_plugin_handle *h)
{
    return h->def;
}

void
td_plugin_close(td_plugin_handle *h)
{
    if (!h)
        return;
    dlclose(h->dl);
    free(h->path);
    free(h);
}

static void
add_name(char ***names, size_t *n, const char *name, size_t len)
{
    for (size_t i = 0; i < *n; i++)
        if (strlen((*names)[i]) == len && memcmp((*names)[i], name, len) == 0)
            return; /* listed twice: load once */
    *names = td_realloc(*names, (*n + 1) * sizeof(**names));
    (*names)[(*n)++] = td_strndup(name, len);
}

size_t
td_plugin_names(const td_config *cfg, char ***names)
{
    size_t n = 0;
    *names = NULL;
    if (cfg->plugins_load) {
        const char *p = cfg->plugins_load;
        while (*p) {
            p += strspn(p, " \t,");
            size_t len = strcspn(p, " \t,");
            if (len)
                add_name(names, &n, p, len);
            p += len;
        }
        return n;
    }
    if (cfg->has_kafka) {
        add_name(names, &n, "in_kafka", 8);
        add_name(names, &n, "out_kafka", 9);
    }
    if (cfg->has_syslog)
        add_name(names, &n, "in_syslog", 9);
    if (cfg->has_http)
        add_name(names, &n, "in_http", 7);
    return n;
}

void
td_plugin_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

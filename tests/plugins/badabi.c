/* A minimal, plugin built for a newer ABI for the loader tests. */
#include <stdio.h>

#include "triaged/plugin.h"

static int
good_init(const td_host *host, void **state, char *err, size_t errlen)
{
    (void)host; (void)err; (void)errlen;
    *state = NULL;
    return 0;
}

static void
good_fini(void *state)
{
    (void)state;
}

TD_PLUGIN_EXPORT const td_plugin triaged_plugin = {
    .abi_version = TD_PLUGIN_ABI_VERSION + 1,
    .name = "badabi",
    .kind = TD_PLUGIN_INPUT,
    .description = "loader test plugin",
    .init = good_init,
    .fini = good_fini,
};

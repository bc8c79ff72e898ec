/* plugin_loader.h — find, open and check plugins by name.
 *
 * A plugin NAME lives in DIR/NAME.so and exports `triaged_plugin` (triaged/plugin.h).
 * Opening checks the file, the symbol, the ABI version, the name and the kind,
 * and fails with a one-line reason naming the plugin. */
#ifndef TD_PLUGIN_LOADER_H
#define TD_PLUGIN_LOADER_H

#include <stddef.h>

#include "internal/config.h"
#include "triaged/plugin.h"

typedef struct td_plugin_handle td_plugin_handle;

/* Open DIR/NAME.so. On success *out must later be freed with
 * td_plugin_close(); on failure returns TD_ERR with the reason in err. */
int td_plugin_open(const char *dir, const char *name, td_plugin_handle **out,
                   char *err, size_t errlen);
const td_plugin *td_plugin_def(const td_plugin_handle *h);
void td_plugin_close(td_plugin_handle *h);

/* The plugin names a config asks for: [plugins] load when set, else the ones
 * the sections present call for ([kafka]: in_kafka out_kafka; [syslog]:
 * in_syslog; [http]: in_http). Returns the count; *names is freed with
 * td_plugin_names_free(). */
size_t td_plugin_names(const td_config *cfg, char ***names);
void td_plugin_names_free(char **names, size_t n);

#endif

/* A shared object that forgot to export td_plugin. */
#include "triaged/plugin.h"

TD_PLUGIN_EXPORT int not_a_plugin = 1;

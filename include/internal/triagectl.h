/* triagectl.h — what triagectl's command files share (triagectl.c defines
 * these; triagectl_cmdb.c holds the CMDB and maintenance commands). */
#ifndef TD_TRIAGECTL_H
#define TD_TRIAGECTL_H

#include <libpq-fe.h>

#include "internal/config.h"

enum { TD_EXIT_OK = 0, TD_EXIT_USAGE = 1, TD_EXIT_BACKEND = 2 };

/* A blocking connection to [postgres] conninfo, or NULL (reason printed). */
PGconn *td_ctl_connect(const td_config *cfg);
/* Print a result as an aligned table with a header line. */
void td_ctl_print_table(const PGresult *r);

int td_cmd_cmdb(const td_config *cfg, int argc, char **argv);
int td_cmd_maintenance(const td_config *cfg, int argc, char **argv);
/* triagectl_sla.c */
int td_cmd_sla(const td_config *cfg, int argc, char **argv);
int td_cmd_report(const td_config *cfg, int argc, char **argv);

#endif

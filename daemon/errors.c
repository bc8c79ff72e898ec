/* errors.c — the caller-owned error list (errors.h). */
#include "internal/errors.h"

#include <stdarg.h>
#include <stdlib.h>

#include "internal/util.h"

void
td_errors_add(td_errors *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = td_vasprintf(fmt, ap);
    va_end(ap);
    e->msgs = td_realloc(e->msgs, (e->n + 1) * sizeof(*e->msgs));
    e->msgs[e->n++] = msg;
}

void
td_errors_clear(td_errors *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    e->msgs = NULL;
    e->n = 0;
}

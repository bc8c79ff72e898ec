/* errors.h — status codes and a caller-owned list of error messages.
 *
 * Functions return TD_OK, TD_ERR or TD_AGAIN; detail goes into a td_errors the
 * caller owns (for many problems, e.g. a config check) or a char buffer. */
#ifndef TD_ERRORS_H
#define TD_ERRORS_H

#include <stddef.h>

enum { TD_OK = 0, TD_ERR = -1, TD_AGAIN = -2 };

typedef struct td_errors {
    char **msgs;
    size_t n;
} td_errors;

/* Append a formatted message (copied). Aborts on out of memory (util.h). */
void td_errors_add(td_errors *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void td_errors_clear(td_errors *e);

#endif

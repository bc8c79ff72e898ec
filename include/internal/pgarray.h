/* pgarray.h — one-dimensional PostgreSQL arrays in binary format, built
 * element by element, for statement parameters sent with format 1 (libpq).
 *
 * The wire format (PostgreSQL's array_send): ndim, has-nulls flag, element
 * type OID, then per dimension its length and lower bound, then per element
 * its length (-1: NULL) and bytes, all integers big-endian. Sending arrays so
 * spares PostgreSQL the parsing (and the sender the escaping) of a text
 * literal: the batch statement (pipeline.c) sends its segments this way.
 *
 *     td_pgarray a;
 *     td_pgarray_init(&a, TD_OID_TEXT);
 *     td_pgarray_text(&a, "x");
 *     td_pgarray_text(&a, NULL);            // a NULL element
 *     char *v; int len;
 *     if (td_pgarray_finish(&a, &v, &len) != TD_OK) ...  // over 1 GB
 *     ...                                   // v is the caller's: free(v)
 *
 * Out of memory aborts (td_malloc). */
#ifndef TD_PGARRAY_H
#define TD_PGARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    TD_OID_BOOL = 16,
    TD_OID_INT8 = 20,
    TD_OID_TEXT = 25,
    TD_OID_FLOAT8 = 701,
    TD_OID_TIMESTAMPTZ = 1184,
    TD_OID_JSONB = 3802,
};

typedef struct td_pgarray {
    unsigned char *buf;
    size_t len, cap;
    size_t n;
    bool nulls;
    uint32_t oid;
} td_pgarray;

void td_pgarray_init(td_pgarray *a, uint32_t oid);
/* Free what was built (when td_pgarray_finish is not called). */
void td_pgarray_reset(td_pgarray *a);

/* Elements; the type must match the OID given to init. */
void td_pgarray_null(td_pgarray *a);
void td_pgarray_text(td_pgarray *a, const char *s);      /* NULL: a NULL element */
void td_pgarray_jsonb(td_pgarray *a, const char *json); /* JSON text; NULL: NULL */
void td_pgarray_int8(td_pgarray *a, int64_t v);
void td_pgarray_float8(td_pgarray *a, double v);
/* Unix microseconds. */
void td_pgarray_timestamptz(td_pgarray *a, int64_t unix_us);

/* The array's bytes (the caller frees *out) and their length; *a is left
 * empty. TD_ERR (nothing returned, *a emptied) when the array passes
 * PostgreSQL's 1 GB limit on a value. */
int td_pgarray_finish(td_pgarray *a, char **out, int *len);
/* td_pgarray_finish of a[0..n) into out[k], len[k]: all of them, or TD_ERR
 * with none (every array emptied, out[k] NULL). */
int td_pgarray_finish_all(td_pgarray *a, size_t n, char **out, int *len);

#endif

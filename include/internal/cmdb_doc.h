/* cmdb_doc.h — the CMDB import document as `triagectl cmdb import` reads it,
 * before anything reaches PostgreSQL (daemon/cmdb_doc.c): JSON as given, or a
 * CSV of CIs turned into the same JSON document; and the day list of a
 * weekly maintenance window. Pure functions: no I/O, fuzzed
 * (tests/fuzz/fuzz_cmdb.c) and unit-tested (tests/unit/test_cmdb_doc.c).
 * Checking the document's content is triaged.cmdb_import()'s job (SQL). */
#ifndef TD_CMDB_DOC_H
#define TD_CMDB_DOC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* TEXT of LEN bytes (need not be NUL-terminated) as a JSON document, or as a
 * CSV of CIs when csv is set: a header line with `name` plus any of kind,
 * aliases, addresses (words split on spaces and ';'), criticality and
 * attr.KEY; empty cells are absent keys. Returns a new reference (the caller
 * json_decref()s it), or NULL with a one-line reason in err ("CSV line 3:
 * ..." or "LINE:COL: not valid JSON: ..."). A NUL byte, invalid UTF-8, an
 * unterminated quote or a duplicate column is an error, never a silent cut. */
json_t *td_cmdb_doc_parse(const char *text, size_t len, bool csv, char *err, size_t errlen);

/* "Mon,Wed-Fri" or "1,3-5" (day names of at least 3 letters, or 1..7 with 1
 * = Monday) -> the PostgreSQL array text "{1,3,4,5}" in out (at least 16
 * bytes). False when malformed or empty. */
bool td_maint_days_parse(const char *s, char *out, size_t outlen);

#endif

/* alert.h — the native alert (DESIGN §3): decoding, validation, identity.
 *
 * An alert's identity is its fingerprint, a 64-bit FNV-1a hash computed the
 * way Alertmanager computes its own: over label pairs sorted by name, each as
 * name, 0xFF, value, 0xFF, printed as 16 hex digits. For a native alert the
 * labels hashed are synthetic:
 *   with dedup_key:    {dedup_key=<dedup_key>, source=<source>}
 *   without:           {check=<check>, resource=<resource>, source=<source>,
 *                       label:<name>=<value> for each configured identity label}
 * For an alert from Alertmanager (source "alertmanager") whose dedup_key is
 * Alertmanager's 16-hex-digit fingerprint, the fingerprint is that value, so
 * an alert can be looked up by the fingerprint Alertmanager shows. The hash
 * is the same on every instance and every version: it is part of the contract. */
#ifndef TD_ALERT_H
#define TD_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal/errors.h"

typedef enum {
    TD_SEV_CRITICAL,
    TD_SEV_MAJOR,
    TD_SEV_MINOR,
    TD_SEV_WARNING,
    TD_SEV_INFO,
} td_severity;

typedef struct td_label {
    char *name, *value;
} td_label;

typedef struct td_alert {
    char *source, *resource, *check;
    char *summary;   /* NULL when absent */
    char *dedup_key; /* NULL when absent */
    char *ci;        /* NULL when absent */
    td_label *labels; /* sorted by name */
    size_t n_labels;
    bool firing;
    td_severity severity;
    int64_t occurred_at_us; /* microseconds since the epoch */
    uint64_t fp;
    char fp_hex[17];
    char *mem; /* when set, the block holding every string and label above
                  (td_alert_scan): td_alert_clear frees it alone */
} td_alert;

/* What decoding needs to know from the config. */
typedef struct td_decode_opts {
    size_t max_size;              /* bytes; bigger is "too_big" */
    const char *const *identity_labels;
    size_t n_identity_labels;
    int64_t now_us;               /* default occurred_at */
} td_decode_opts;

/* Decode a native alert message: one object or an array of objects. On
 * success returns TD_OK with *out an array of *n alerts (free each with
 * td_alert_clear() and the array with free()). On failure returns TD_ERR with
 * *reason one of: too_big, not_utf8, not_json, not_object, empty, missing_field,
 * bad_field; detail says which field and why. The whole message is rejected
 * when one alert in it is invalid. */
int td_alert_decode(const char *buf, size_t len, const td_decode_opts *opts,
                    td_alert **out, size_t *n, const char **reason,
                    char *detail, size_t detail_len);

/* td_alert_decode's two ways (it tries the first, then the second):
 * td_alert_scan decodes the common shape in one pass (daemon/alert_scan.c)
 * and declines with TD_ERR, setting nothing else, whatever it is not sure
 * of, errors included; td_alert_decode_tree parses with Jansson and decodes
 * anything, with the reason when it fails. Both give the same alerts for
 * what td_alert_scan accepts. */
int td_alert_scan(const char *buf, size_t len, const td_decode_opts *opts,
                  td_alert **out, size_t *n);
int td_alert_decode_tree(const char *buf, size_t len, const td_decode_opts *opts,
                         td_alert **out, size_t *n, const char **reason,
                         char *detail, size_t detail_len);

/* Compute a->fp and a->fp_hex from the identity rules above. */
void td_alert_fingerprint(td_alert *a, const char *const *identity_labels,
                          size_t n_identity_labels);
void td_alert_clear(td_alert *a);
/* Do a and b hold the same alert (every field, labels in order)? */
bool td_alert_same(const td_alert *a, const td_alert *b);

/* FNV-1a 64 over sorted (name, value) pairs, Alertmanager's way. The pairs
 * must be sorted by name. */
uint64_t td_fnv1a_labels(const char *const *names, const char *const *values,
                         size_t n);
void td_fp_hex(uint64_t fp, char out[17]);

const char *td_severity_name(td_severity s);
int td_severity_parse(const char *s, td_severity *out);

/* A message's JSON document, parsed: NULL with *reason too_big (over
 * max_size, when not 0), not_utf8 or not_json and a detail. The caller
 * json_decref()s it. Every decoder of network input starts here. */
struct json_t;
struct json_t *td_json_message(const char *buf, size_t len, size_t max_size,
                               const char **reason, char *detail, size_t detail_len);
/* Is s 16 lower-case hex digits (an Alertmanager fingerprint)? */
int td_is_fp_hex(const char *s);

/* RFC 3339 time to microseconds since the epoch. TD_OK or TD_ERR. */
int td_parse_rfc3339(const char *s, int64_t *us);
/* Microseconds since the epoch to RFC 3339 UTC with microseconds. */
void td_format_rfc3339(int64_t us, char out[32]);

#endif

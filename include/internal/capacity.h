/* capacity.h — the capacity sample (DESIGN §3): decoding and validation.
 *
 *   {"ci":"db-01","metric":"disk_used_bytes","value":812.5,"limit":1000,
 *    "ts":"2026-10-01T00:00:00Z"}
 *
 * ci, metric and value are required; limit (a positive number) and ts
 * (RFC 3339, default: time received) are optional. A message holds one
 * object or an array of them. Storage, rollups and trends are in
 * sql/005_capacity.sql; the batch statement's ingest in sql/007. */
#ifndef TD_CAPACITY_H
#define TD_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct td_sample {
    char *ci;
    char *metric;
    double value;
    double limit;  /* NAN when absent */
    int64_t ts_us; /* microseconds since the epoch */
} td_sample;

/* Decode a message of samples. TD_OK with *out an array of *n samples (free
 * with td_samples_free()), or TD_ERR with *reason one of: too_big, not_utf8,
 * not_json, not_object, empty, missing_field, bad_field, and a detail that
 * names the field (and the sample's index in an array). The whole message is
 * rejected when one sample is invalid. */
int td_capacity_decode(const char *buf, size_t len, size_t max_size, int64_t now_us,
                       td_sample **out, size_t *n, const char **reason, char *detail,
                       size_t detail_len);
void td_samples_free(td_sample *s, size_t n);

/* The parameters of triaged.ingest_capacity_arrays() (sql/007) for
 * samples[0..n), in PostgreSQL's binary array format, one element per sample:
 *   out[0] int8[]        ci_ids[i], NULL where it is 0 (not bound)
 *   out[1] text[]        the sample's ci where ci_ids[i] is 0, else NULL
 *   out[2] text[]        metric
 *   out[3] timestamptz[] ts
 *   out[4] float8[]      value
 *   out[5] float8[]      limit, NULL where absent
 * len[k] is the size of out[k] in bytes; the caller frees each out[k].
 * TD_ERR (nothing allocated) when an array would pass PostgreSQL's 1 GB
 * limit for a value. */
#define TD_SAMPLE_ARRAYS 6
int td_samples_arrays(const td_sample *const *samples, const int64_t *ci_ids, size_t n,
                      char *out[TD_SAMPLE_ARRAYS], int len[TD_SAMPLE_ARRAYS]);

/* What the batch statement would otherwise work out per sample: the
 * distinct hours of samples[0..n) as a binary timestamptz[] (*hours, *len;
 * the caller frees it), or *hours NULL when there are more than
 * TD_SAMPLE_HOURS_MAX of them (SQL then finds them); and whether any sample
 * is at or over its limit. */
#define TD_SAMPLE_HOURS_MAX 64
void td_samples_summary(const td_sample *const *samples, size_t n, char **hours, int *len,
                        bool *over_limit);

#endif

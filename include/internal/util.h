/* util.h — allocation and small string helpers.
 *
 * Out-of-memory policy (as Redis's zmalloc): the td_ allocators abort with a
 * message when the system cannot give memory, so callers never check. A daemon
 * that cannot allocate a few bytes cannot drain its queues either; exiting lets
 * systemd restart it, and Kafka offsets in PostgreSQL make the restart lossless.
 * Memory is bounded by the queue limits, not by hoping malloc fails politely. */
#ifndef TD_UTIL_H
#define TD_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

void *td_malloc(size_t n);
void *td_calloc(size_t count, size_t size);
void *td_realloc(void *p, size_t n);
char *td_strdup(const char *s);
char *td_strndup(const char *s, size_t n);
/* Formatted string, freed with free(). */
char *td_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *td_vasprintf(const char *fmt, va_list ap);

/* Wall clock in milliseconds since the epoch, and a monotonic clock. */
int64_t td_now_ms(void);
int64_t td_mono_ms(void);

/* 64-bit FNV-1a: continue hash h over the bytes of s (start from
 * TD_FNV1A_OFFSET). Not for anything an attacker must not collide. */
#define TD_FNV1A_OFFSET 0xcbf29ce484222325ULL
uint64_t td_fnv1a(uint64_t h, const char *s);

#define TD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif

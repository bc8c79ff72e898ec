/* dedup.h — Redis as the fast judge of "seen this already?".
 *
 * The fingerprints of a batch go to a small Lua script, up to 256 a call
 * (one a call against a Redis Cluster node), all calls sent at once (one
 * round trip per batch). The script returns a hint per
 * fingerprint and records the fingerprint's newest state. PostgreSQL stays
 * the judge: the pipeline sends a batch to Redis and to PostgreSQL at once
 * and only counts the hints, so a wrong one (Redis flushed, restarted, or
 * ahead of PostgreSQL after a crash) changes nothing. When Redis is down
 * every hint is "change". */
#ifndef TD_DEDUP_H
#define TD_DEDUP_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal/batcher.h"

enum { TD_HINT_DUP = 0, TD_HINT_CHANGE = 1, TD_HINT_NEW = 2 };

typedef struct td_dedup td_dedup;

/* Called once per classify(), on the loop, possibly before classify returns. */
typedef void (*td_dedup_cb)(void *arg);

/* url: redis://[:password@]host[:port][/db]. NULL with err on a bad URL. */
td_dedup *td_dedup_new(struct event_base *base, const char *url, char *err,
                       size_t errlen);
/* Fill hints[i] for every segment (all segments of one fingerprint get the
 * hint of its first). A fingerprint's segments must be next to each other
 * (td_fold sorts them so). hints must stay valid until cb. */
void td_dedup_classify(td_dedup *d, const td_segment *segs, size_t n,
                       uint8_t *hints, td_dedup_cb cb, void *arg);
bool td_dedup_connected(const td_dedup *d);
void td_dedup_free(td_dedup *d);

#endif

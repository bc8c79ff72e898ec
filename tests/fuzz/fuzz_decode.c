/* fuzz_decode.c — libFuzzer target for the decoders every network input
 * reaches: the native alert (Kafka, HTTP), Alertmanager's webhook and
 * PagerDuty's events (HTTP), and capacity samples (Kafka, HTTP).
 *
 * The first byte picks the decoder, the rest is the message: a heap copy of
 * exactly its length, so ASan sees any read past it. Whatever a decoder
 * returns must be a clean TD_OK with alerts whose fingerprints and strings
 * are whole, or TD_ERR with a reason; nothing it allocates may leak. The
 * native alert's one-pass scanner must agree with Jansson's path on every
 * message it accepts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/alert.h"
#include "internal/capacity.h"
#include "internal/errors.h"
#include "internal/formats.h"

static void
touch_alerts(td_alert *a, size_t n)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += strlen(a[i].source) + strlen(a[i].resource) + strlen(a[i].check) +
               strlen(a[i].fp_hex);
        for (size_t j = 0; j < a[i].n_labels; j++)
            sum += strlen(a[i].labels[j].name) + strlen(a[i].labels[j].value);
        td_alert_clear(&a[i]);
    }
    free(a);
    if (sum == (size_t)-1)
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 4;
    size_t len = size - 1;
    char *buf = malloc(len ? len : 1);
    memcpy(buf, data + 1, len);
    static const char *const ident[] = {"env", "team"};
    td_decode_opts o = {.max_size = 64 * 1024, .identity_labels = ident,
                        .n_identity_labels = 2, .now_us = 1795651200000000LL};
    const char *reason = NULL;
    char detail[512];
    td_alert *a = NULL;
    size_t n = 0;
    int rc;
    switch (which) {
    case 0:
        /* differential: what the one-pass scanner accepts, Jansson's path
         * decodes to the same alerts */
        if (td_alert_scan(buf, len, &o, &a, &n) == TD_OK) {
            td_alert *t = NULL;
            size_t nt = 0;
            if (td_alert_decode_tree(buf, len, &o, &t, &nt, &reason, detail,
                                     sizeof(detail)) != TD_OK || nt != n)
                abort();
            for (size_t i = 0; i < n; i++)
                if (!td_alert_same(&a[i], &t[i]))
                    abort();
            touch_alerts(t, nt);
            touch_alerts(a, n);
        }
        rc = td_alert_decode(buf, len, &o, &a, &n, &reason, detail, sizeof(detail));
        break;
    case 1:
        rc = td_alertmanager_decode(buf, len, &o, "instance", &a, &n, &reason, detail,
                                    sizeof(detail));
        break;
    case 2:
        rc = td_pagerduty_decode(buf, len, &o, &a, &n, &reason, detail, sizeof(detail));
        break;
    default: {
        td_sample *s = NULL;
        rc = td_capacity_decode(buf, len, o.max_size, o.now_us, &s, &n, &reason, detail,
                                sizeof(detail));
        if (rc == TD_OK) {
            const td_sample **ptrs = malloc(n * sizeof(*ptrs));
            int64_t *ids = malloc(n * sizeof(*ids));
            char *arr[TD_SAMPLE_ARRAYS];
            int alen[TD_SAMPLE_ARRAYS];
            for (size_t i = 0; i < n; i++) {
                ptrs[i] = &s[i];
                ids[i] = (int64_t)(i % 2); /* bound and unbound */
            }
            if (td_samples_arrays(ptrs, ids, n, arr, alen) == TD_OK)
                for (int k = 0; k < TD_SAMPLE_ARRAYS; k++)
                    free(arr[k]);
            free(ids);
            free(ptrs);
            td_samples_free(s, n);
        }
        break;
    }
    }
    if (rc == TD_OK && which < 3)
        touch_alerts(a, n);
    else if (rc != TD_OK && (!reason || !*reason))
        abort(); /* a rejection always says why */
    free(buf);
    return 0;
}

/* Folding a batch: per fingerprint, in time order, runs of one status and
 * severity become one counted segment. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "internal/batcher.h"

TestSuite(batcher, .timeout = 10);

static td_alert
mk(uint64_t fp, bool firing, td_severity sev, int64_t t)
{
    td_alert a = {0};
    a.fp = fp;
    a.firing = firing;
    a.severity = sev;
    a.occurred_at_us = t;
    return a;
}

static size_t
fold(td_alert *a, size_t n, td_segment **segs)
{
    const td_alert **p = calloc(n, sizeof(*p));
    for (size_t i = 0; i < n; i++)
        p[i] = &a[i];
    size_t ns = td_fold(p, n, segs);
    free(p);
    return ns;
}

Test(batcher, a_storm_of_one_fingerprint_is_one_segment_with_its_count)
{
    td_alert a[1000];
    for (int i = 0; i < 1000; i++)
        a[i] = mk(42, true, TD_SEV_MAJOR, 1000 + i);
    td_segment *s;
    cr_assert_eq(fold(a, 1000, &s), 1);
    cr_assert_eq(s[0].n, 1000);
    cr_assert_eq(s[0].first_us, 1000);
    cr_assert_eq(s[0].last_us, 1999);
    cr_assert(s[0].fp_first && s[0].fp_single);
    cr_assert_eq(s[0].rep, &a[999], "the newest alert represents the segment");
    free(s);
}

Test(batcher, out_of_order_arrivals_are_sorted_by_time_before_folding)
{
    /* arrival: firing@30, resolved@20, firing@10 -> F(10) R(20) F(30) */
    td_alert a[] = {mk(7, true, TD_SEV_MINOR, 30), mk(7, false, TD_SEV_MINOR, 20),
                    mk(7, true, TD_SEV_MINOR, 10)};
    td_segment *s;
    cr_assert_eq(fold(a, 3, &s), 3);
    cr_assert(s[0].firing && s[0].first_us == 10 && s[0].n == 1);
    cr_assert(!s[1].firing && s[1].first_us == 20 && s[1].n == 0);
    cr_assert(s[2].firing && s[2].first_us == 30);
    cr_assert(s[0].fp_first && !s[0].fp_single);
    cr_assert(!s[1].fp_first && !s[2].fp_first);
    free(s);
}

Test(batcher, a_severity_change_starts_a_new_segment)
{
    td_alert a[] = {mk(1, true, TD_SEV_WARNING, 1), mk(1, true, TD_SEV_WARNING, 2),
                    mk(1, true, TD_SEV_CRITICAL, 3), mk(1, true, TD_SEV_CRITICAL, 4)};
    td_segment *s;
    cr_assert_eq(fold(a, 4, &s), 2);
    cr_assert_eq(s[0].n, 2);
    cr_assert_eq(s[1].n, 2);
    cr_assert_eq(s[1].severity, TD_SEV_CRITICAL);
    free(s);
}

Test(batcher, fingerprints_are_grouped_and_ties_keep_arrival_order)
{
    td_alert a[] = {mk(9, true, TD_SEV_INFO, 5), mk(3, true, TD_SEV_INFO, 5),
                    mk(9, false, TD_SEV_INFO, 5), mk(3, true, TD_SEV_INFO, 5)};
    td_segment *s;
    cr_assert_eq(fold(a, 4, &s), 3);
    cr_assert_eq(s[0].fp, 3);
    cr_assert_eq(s[0].n, 2);
    cr_assert(s[0].fp_single);
    cr_assert_eq(s[1].fp, 9);
    cr_assert(s[1].firing, "same time: arrival order decides, firing came first");
    cr_assert(!s[2].firing);
    free(s);
}

Test(batcher, an_empty_batch_folds_to_nothing)
{
    td_segment *s = (td_segment *)1;
    cr_assert_eq(td_fold(NULL, 0, &s), 0);
    cr_assert_null(s);
}

/* hist.h: a log-linear latency histogram in the spirit of HdrHistogram: exact below 128, then
 * 64 sub-buckets per power of two (under 1.6 % relative error), fixed size, mergeable. Values
 * are unsigned (microseconds, by convention). */
#ifndef HOOKRING_HIST_H
#define HOOKRING_HIST_H

#include "common.h"

#define HIST_LINEAR 128
#define HIST_SUB 64
#define HIST_MAX_EXP 40 /* values up to 2^41 - 1 */
#define HIST_BUCKETS (HIST_LINEAR + (HIST_MAX_EXP - 6) * HIST_SUB)

struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t min;
    uint64_t sum;
    uint64_t b[HIST_BUCKETS];
};

/* hist_init empties h. */
void hist_init(struct hist *h);

/* hist_add records one value (clamped to the largest representable). */
void hist_add(struct hist *h, uint64_t v);

/* hist_merge adds every value of src to dst. */
void hist_merge(struct hist *dst, const struct hist *src);

/* hist_quantile returns the value at quantile q (0..1): the upper bound of the bucket holding
 * it, never above the recorded maximum. 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif

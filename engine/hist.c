/* hist.c: log-linear histogram. */
#include "hist.h"

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

static size_t bucket_of(uint64_t v)
{
    if (v < HIST_LINEAR) {
        return (size_t)v;
    }
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* 7.. */
    if (e > HIST_MAX_EXP) {
        return HIST_BUCKETS - 1;
    }
    size_t sub = (size_t)(v >> (e - 6)) & (HIST_SUB - 1);
    return HIST_LINEAR + (e - 7) * HIST_SUB + sub;
}

/* bucket_top is the largest value that lands in bucket i. */
static uint64_t bucket_top(size_t i)
{
    if (i < HIST_LINEAR) {
        return i;
    }
    size_t e = (i - HIST_LINEAR) / HIST_SUB + 7, sub = (i - HIST_LINEAR) % HIST_SUB;
    uint64_t base = ((uint64_t)(HIST_SUB + sub)) << (e - 6);
    return base + (1ull << (e - 6)) - 1;
}

void hist_add(struct hist *h, uint64_t v)
{
    h->b[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max) {
        h->max = v;
    }
    if (v < h->min) {
        h->min = v;
    }
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        dst->b[i] += src->b[i];
    }
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->max > dst->max) {
        dst->max = src->max;
    }
    if (src->min < dst->min) {
        dst->min = src->min;
    }
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0) {
        return 0;
    }
    if (q >= 1.0) {
        return h->max;
    }
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count) {
        rank = h->count - 1;
    }
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > rank) {
            uint64_t top = bucket_top(i);
            return top < h->max ? top : h->max;
        }
    }
    return h->max;
}

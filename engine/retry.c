/* retry.c: retry decisions. */
#include "retry.h"

struct retry_policy retry_policy_of(const struct profile *p, double time_scale)
{
    return (struct retry_policy){p->retry_s, p->retry_s ? p->nretry : 0, time_scale};
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

enum retry_verdict retry_decide(const struct retry_policy *p, const struct attempt *a,
                                uint32_t attempts, uint64_t *rng, int64_t *delay_ms)
{
    if (a->result == ATTEMPT_OK) {
        return RETRY_DELIVERED;
    }
    if (a->result == ATTEMPT_STATUS && a->status == 410) {
        return RETRY_GONE;
    }
    if (attempts > p->n) {
        return RETRY_EXHAUSTED;
    }
    double base = (double)p->schedule_s[attempts - 1] * 1000.0;
    /* ±20 %: uniform in [0.8, 1.2] */
    double jitter = 1.0 + ((double)(xorshift(rng) % 4001) - 2000.0) / 10000.0;
    double ms = base * jitter;
    if (a->has_retry_after) {
        int64_t ra = a->retry_after_s > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : a->retry_after_s;
        ms = (double)ra * 1000.0;
    }
    ms *= p->time_scale;
    *delay_ms = ms < 0 ? 0 : (int64_t)ms;
    return RETRY_AGAIN;
}

bool retry_slows_endpoint(const struct attempt *a)
{
    return a->result == ATTEMPT_STATUS &&
           (a->status == 429 || a->status == 502 || a->status == 504);
}

const char *retry_verdict_name(enum retry_verdict v)
{
    switch (v) {
    case RETRY_DELIVERED:
        return "delivered";
    case RETRY_AGAIN:
        return "retry";
    case RETRY_EXHAUSTED:
        return "exhausted";
    case RETRY_GONE:
        return "gone";
    }
    return "unknown";
}

/* retry.h: what happens after a failed attempt: the profile's schedule with jitter,
 * Retry-After, and the statuses that end a delivery or disable an endpoint. */
#ifndef HOOKRING_RETRY_H
#define HOOKRING_RETRY_H

#include "client.h"

#define RETRY_JITTER_PCT 20
#define RETRY_AFTER_CAP_S 86400 /* a Retry-After is honoured up to one day */

enum retry_verdict {
    RETRY_DELIVERED = 0, /* 2xx: done */
    RETRY_AGAIN,         /* schedule another attempt after *delay_ms */
    RETRY_EXHAUSTED,     /* the schedule is used up (or the profile has none): failed */
    RETRY_GONE,          /* 410: the delivery fails and the endpoint is disabled */
};

struct retry_policy {
    const uint32_t *schedule_s; /* delays before retry 1, 2, ... */
    size_t n;
    double time_scale; /* multiplies every delay (tests run a day's schedule in seconds) */
};

/* retry_policy_of is the profile's own schedule at time_scale. */
struct retry_policy retry_policy_of(const struct profile *p, double time_scale);

/* retry_decide judges attempt a, the attempts-th made (1 for the first). On RETRY_AGAIN,
 * *delay_ms is the wait before the next one: the schedule's delay ±20 % (rng is a caller-held
 * xorshift state), or Retry-After when the answer carried one (capped), times time_scale. */
enum retry_verdict retry_decide(const struct retry_policy *p, const struct attempt *a,
                                uint32_t attempts, uint64_t *rng, int64_t *delay_ms);

/* retry_slows_endpoint tells whether the answer asks the sender to slow down (429, 502, 504). */
bool retry_slows_endpoint(const struct attempt *a);

/* retry_verdict_name is a short stable name. */
const char *retry_verdict_name(enum retry_verdict v);

#endif

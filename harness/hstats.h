/* hstats.h: the harness counters: per thread, merged when read.
 *
 * Each worker thread owns one struct hstats and is its only writer (relaxed atomic stores, so
 * a reader on another thread sees whole values without any lock on the hot path). Readers sum
 * every thread's block and subtract the baseline taken at the last reset: a reset never
 * writes into a block another thread owns.
 *
 * Latency is harness-side handling time: from the moment the request was fully received (the
 * loop iteration that reaped its last bytes) to the completion of the send that wrote the last
 * byte of its answer. /slow/ includes its delay, /trickle/ its dribble. Requests that get no
 * answer (/timeout/, /drop/, /reset/) have no latency. */
#ifndef HOOKRING_HSTATS_H
#define HOOKRING_HSTATS_H

#include <pthread.h>

#include "common.h"
#include "hbehave.h"
#include "hconfig.h"
#include "hids.h"

enum hstat_counter {
    HS_REQUESTS,        /* requests parsed, /_harness/ ones excepted */
    HS_VERIFIED,        /* signature verified */
    HS_UNVERIFIED,      /* accepted on a route without a profile */
    HS_BAD_SIGNATURE,   /* refused with 401 */
    HS_NO_ID,           /* accepted without a webhook id to count it under */
    HS_BAD_REQUEST,     /* 400 and 505 */
    HS_HEAD_TOO_LARGE,  /* 431 */
    HS_BODY_TOO_LARGE,  /* 413 */
    HS_NOT_IMPLEMENTED, /* 501 */
    HS_CONN_ACCEPTED,
    HS_CONN_REJECTED, /* over --max-conns */
    HS_CONN_CLOSED,
    HS_CONTROL,        /* /_harness/ requests */
    HS_TLS_HANDSHAKES, /* TLS handshakes completed, resumed ones included */
    HS_TLS_RESUMED,    /* of which resumed an earlier session */
    HS_TLS_FAILED,     /* TLS connections ended by a fatal error (handshake or record) */
    HS_COUNT
};

enum hstat_route_counter {
    HSR_REQUESTS,
    HSR_VERIFIED, /* verified, or accepted unverified */
    HSR_BAD_SIGNATURE,
    HSR_COUNT
};

#define HSTATS_STATUS_MAX 600
#define HSTATS_LAT_BUCKETS 288

struct hstats {
    uint64_t c[HS_COUNT];
    uint64_t status[HSTATS_STATUS_MAX];
    uint64_t behave[HB_COUNT][HSR_COUNT];
    uint64_t route[HCONFIG_MAX_ROUTES][HSR_COUNT];
    uint64_t lat[HSTATS_LAT_BUCKETS]; /* microseconds, log-linear */
    uint64_t lat_sum_us;
    /* Not a count (the sums stop before it): the time of day, in unix microseconds, at which
     * this thread began verifying the last request whose signature held; 0: none yet. A
     * snapshot takes the latest over every thread, and 0 when it is not after the last reset
     * (bench/ingest.sh ends its end-to-end clock on it, to the microsecond, without polling). */
    int64_t last_verified_us;
};

/* hstats_add adds n to a counter of the calling thread's own block. */
static inline void hstats_add(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

static inline void hstats_inc(uint64_t *c)
{
    hstats_add(c, 1);
}

/* hstats_latency records one answer's handling time. */
void hstats_latency(struct hstats *s, int64_t ns);

/* The set of every thread's blocks, the reset baseline and what the JSON names. */
struct hstats_set {
    struct hstats **blocks;
    size_t nblocks;
    const struct hconfig *cfg;
    struct hids *ids;
    pthread_mutex_t lock; /* guards base */
    struct hstats base;
    int64_t started_ns;
    int64_t reset_ns;
    int64_t reset_wall_us; /* time of day of the last reset, unix microseconds */
};

/* hstats_set_init prepares set over blocks[0..n). */
void hstats_set_init(struct hstats_set *set, struct hstats **blocks, size_t n,
                     const struct hconfig *cfg, struct hids *ids);

/* hstats_snapshot sums every block minus the baseline into out, with the latest
 * last_verified_us since the reset (0: none). */
void hstats_snapshot(struct hstats_set *set, struct hstats *out);

/* hstats_reset makes the current sums the new zero and forgets every id. */
void hstats_reset(struct hstats_set *set);

/* hstats_json writes the stats JSON into out[0..cap). Returns its length, or 0 when it does not
 * fit. */
size_t hstats_json(struct hstats_set *set, char *out, size_t cap);

/* hstats_summary prints a human summary to f. */
void hstats_summary(struct hstats_set *set, FILE *f);

/* hstats_percentile_us is the upper bound of the bucket holding quantile q (0..1) of s's
 * latencies, or 0 when there are none. */
uint64_t hstats_percentile_us(const struct hstats *s, double q);

#endif

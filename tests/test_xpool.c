/* test_xpool.c: the SPSC hand-off queue (order, bounds, and millions of messages between two
 * threads, each carrying a payload written before the push: ThreadSanitizer checks the
 * ordering) and the worker pool (attempts go to the worker that owns their slot and come back
 * on the owner's thread, endpoints are replaced in order with attempts). */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support/sanitizers.h"
#include "support/testnet.h"
#include "xpool.h"

// cppcheck-suppress unknownMacro
TestSuite(xpool, .timeout = 120);

#ifdef TN_UNDER_TSAN
#define STRESS_N 2000000u
#else
#define STRESS_N 8000000u
#endif

/* ---- the queue ---------------------------------------------------------------------------- */

Test(xpool, queue_is_fifo_and_bounded)
{
    struct xq q;
    cr_assert_eq(xq_init(&q, 5), 0); /* rounded up to 8 */
    struct xmsg m = {0}, out;
    cr_assert_not(xq_pop(&q, &out));
    for (uint32_t i = 0; i < 8; i++) {
        m.slot = i;
        cr_assert(xq_push(&q, &m), "push %u", i);
    }
    m.slot = 99;
    cr_assert_not(xq_push(&q, &m), "a full queue takes nothing");
    for (uint32_t round = 0; round < 100; round++) {
        cr_assert(xq_pop(&q, &out));
        cr_assert_eq(out.slot, round);
        m.slot = round + 8;
        cr_assert(xq_push(&q, &m));
        cr_assert_not(xq_push(&q, &m));
    }
    for (uint32_t i = 0; i < 8; i++) {
        cr_assert(xq_pop(&q, &out));
        cr_assert_eq(out.slot, 100 + i);
    }
    cr_assert_not(xq_pop(&q, &out));
    xq_cleanup(&q);
}

/* Each message points at a payload the producer fills just before the push and the consumer
 * reads after the pop, then hands back through a second queue: without the right orders the
 * consumer could see a stale payload (and TSan reports the race). */
struct payload {
    uint64_t seq;
    uint64_t check;
};

#define NPAYLOADS 256

struct stress {
    struct xq fwd, back;
    struct payload pl[NPAYLOADS];
    uint64_t bad, got;
};

static void *stress_consumer(void *arg)
{
    struct stress *st = arg;
    struct xmsg m;
    uint64_t want = 0;
    while (want < STRESS_N) {
        if (!xq_pop(&st->fwd, &m)) {
            sched_yield();
            continue;
        }
        struct payload *p = m.p;
        if (p->seq != want || p->check != want * 2654435761u || m.slot != (uint32_t)want) {
            st->bad++;
        }
        p->seq = UINT64_MAX; /* written by us, read by the producer after the hand-back */
        while (!xq_push(&st->back, &m)) {
            sched_yield();
        }
        want++;
    }
    st->got = want;
    return NULL;
}

Test(xpool, queue_moves_millions_between_two_threads_in_order)
{
    static struct stress st;
    memset(&st, 0, sizeof(st));
    cr_assert_eq(xq_init(&st.fwd, 64), 0);
    cr_assert_eq(xq_init(&st.back, NPAYLOADS), 0);
    /* every payload starts free: it is on the back queue */
    for (size_t i = 0; i < NPAYLOADS; i++) {
        struct xmsg m = {.p = &st.pl[i]};
        cr_assert(xq_push(&st.back, &m));
    }
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stress_consumer, &st), 0);
    uint64_t stale = 0;
    for (uint64_t i = 0; i < STRESS_N; i++) {
        struct xmsg m;
        while (!xq_pop(&st.back, &m)) {
            sched_yield();
        }
        struct payload *p = m.p;
        if (i >= NPAYLOADS && p->seq != UINT64_MAX) {
            stale++;
        }
        p->seq = i;
        p->check = i * 2654435761u;
        m.slot = (uint32_t)i;
        while (!xq_push(&st.fwd, &m)) {
            sched_yield();
        }
    }
    pthread_join(th, NULL);
    cr_assert_eq(st.got, STRESS_N);
    cr_assert_eq(st.bad, 0, "%" PRIu64 " messages arrived out of order or with a stale payload",
                 st.bad);
    cr_assert_eq(stale, 0, "%" PRIu64 " payloads came back before the consumer was done", stale);
    xq_cleanup(&st.fwd);
    xq_cleanup(&st.back);
}

/* ---- the pool ----------------------------------------------------------------------------- */

struct owner {
    struct ring ring;
    pthread_t self;
    size_t done;
    size_t wrong_thread;
    enum attempt_result results[64];
    char excerpts[64][32];
    struct attempt *order[64];
};

static struct owner O;

static void owner_wake(struct ring *r, void *arg)
{
}

static void owner_done(void *arg, struct attempt *a)
{
    struct owner *o = arg;
    if (!pthread_equal(pthread_self(), o->self)) {
        o->wrong_thread++;
    }
    if (o->done < 64) {
        o->results[o->done] = a->result;
        size_t n = a->excerpt_len < 31 ? a->excerpt_len : 31;
        memcpy(o->excerpts[o->done], a->excerpt, n);
        o->excerpts[o->done][n] = 0;
        o->order[o->done] = a;
    }
    o->done++;
}

/* closed_port returns a loopback port nothing listens on (bound, then closed). */
static uint16_t closed_port(void)
{
    uint16_t port = tn_closed_port();
    cr_assert_neq(port, 0);
    return port;
}

static void run_until(struct xpool *xp, size_t n)
{
    int64_t end = ring_clock_ns() + 20ll * 1000000000;
    while (O.done < n && ring_clock_ns() < end) {
        xpool_flush(xp);
        ring_run_once(&O.ring, 100 * 1000000);
    }
    xpool_flush(xp);
}

Test(xpool, attempts_go_to_the_slot_owner_and_come_back_on_the_owner_thread)
{
    memset(&O, 0, sizeof(O));
    O.self = pthread_self();
    struct ring_opts ro = {.entries = 256, .max_timers = 64};
    cr_assert_eq(ring_init(&O.ring, &ro), 0);
    cr_assert_eq(ring_wake_init(&O.ring, owner_wake, NULL), 0);
    static struct netguard g;
    netguard_init(&g);
    cr_assert_eq(netguard_allow(&g, "127.0.0.0/8"), 0);
    struct xpool_opts xo = {.workers = 3,
                            .client = {.max_conns = 64,
                                       .max_inflight = 64,
                                       .rbuf_size = 4096,
                                       .max_response_body = 4096,
                                       .guard = &g}};
    char err[256];
    struct xpool *xp = xpool_new(&O.ring, &xo, owner_done, &O, err, sizeof(err));
    cr_assert_not_null(xp, "%s", err);
    cr_assert_eq(xpool_workers(xp), 3);
    cr_assert_eq(xpool_worker_of(xp, 7), 1);

    struct signer sg;
    struct slice secret = slice_cstr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    cr_assert_eq(signer_init(&sg, profile_find("standard"), &secret, 1, slice_cstr(""),
                             slice_cstr(""), err, sizeof(err)),
                 0, "%s", err);
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/x", closed_port());
    struct url url;
    cr_assert_eq(url_parse(&url, u, err, sizeof(err)), 0);

    static struct event ev;
    memcpy(ev.id, "evt_1", 6);
    ev.id_len = 5;
    memcpy(ev.type, "t.x", 4);
    ev.type_len = 3;
    struct xpool_endpoint e = {.url = url, .signer = sg, .timeout_ms = 2000};
    static struct attempt a[12];
    /* slots 0-5 spread over the three workers; only slots 1 and 4 have an endpoint */
    cr_assert_eq(xpool_endpoint_set(xp, 1, &e), 0);
    cr_assert_eq(xpool_endpoint_set(xp, 4, &e), 0);
    cr_assert_eq(xpool_signer_set(xp, 4, &sg), 0);
    for (uint32_t i = 0; i < 12; i++) {
        a[i] = (struct attempt){.event = &ev, .body = slice_cstr("{}"), .id = slice_cstr("m")};
        cr_assert_eq(xpool_submit(xp, i % 6, &a[i]), 0);
    }
    run_until(xp, 12);
    cr_assert_eq(O.done, 12);
    cr_assert_eq(O.wrong_thread, 0);
    size_t refused = 0, unusable = 0;
    for (size_t i = 0; i < 12; i++) {
        size_t k = (size_t)(O.order[i] - a);
        if (k % 6 == 1 || k % 6 == 4) {
            cr_assert_eq(O.results[i], ATTEMPT_REFUSED, "attempt %zu: %s", k,
                         attempt_result_name(O.results[i]));
            refused++;
        } else {
            cr_assert_eq(O.results[i], ATTEMPT_ERROR);
            cr_assert_str_eq(O.excerpts[i], "endpoint_unusable");
            unusable++;
        }
    }
    cr_assert_eq(refused, 4);
    cr_assert_eq(unusable, 8);
    /* slots 0 and 3 are worker 0's, 1 and 4 worker 1's, 2 and 5 worker 2's */
    for (uint32_t w = 0; w < 3; w++) {
        cr_assert_eq(xpool_attempts_done(xp, w), 4, "worker %u", w);
    }

    /* an endpoint set after an attempt of its slot is queued applies to the later ones only */
    O.done = 0;
    a[0] = (struct attempt){.event = &ev, .body = slice_cstr("{}"), .id = slice_cstr("m")};
    a[1] = a[0];
    cr_assert_eq(xpool_submit(xp, 2, &a[0]), 0);
    cr_assert_eq(xpool_endpoint_set(xp, 2, &e), 0);
    cr_assert_eq(xpool_submit(xp, 2, &a[1]), 0);
    run_until(xp, 2);
    cr_assert_eq(O.done, 2);
    for (size_t i = 0; i < 2; i++) {
        if (O.order[i] == &a[0]) {
            cr_assert_eq(O.results[i], ATTEMPT_ERROR);
        } else {
            cr_assert_eq(O.results[i], ATTEMPT_REFUSED);
        }
    }
    /* a dropped endpoint takes nothing more until it is set again, in order with attempts */
    O.done = 0;
    a[0] = (struct attempt){.event = &ev, .body = slice_cstr("{}"), .id = slice_cstr("m")};
    a[1] = a[0];
    a[2] = a[0];
    cr_assert_eq(xpool_submit(xp, 1, &a[0]), 0);
    run_until(xp, 1); /* back before the drop: nothing of the endpoint may be out */
    cr_assert_eq(xpool_endpoint_drop(xp, 1), 0);
    cr_assert_eq(xpool_submit(xp, 1, &a[1]), 0);
    cr_assert_eq(xpool_endpoint_set(xp, 1, &e), 0);
    cr_assert_eq(xpool_submit(xp, 1, &a[2]), 0);
    run_until(xp, 3);
    cr_assert_eq(O.done, 3);
    for (size_t i = 0; i < 3; i++) {
        size_t k = (size_t)(O.order[i] - a);
        cr_assert_eq(O.results[i], k == 1 ? ATTEMPT_ERROR : ATTEMPT_REFUSED, "attempt %zu: %s", k,
                     attempt_result_name(O.results[i]));
    }
    /* messages never handed over are freed with the pool */
    cr_assert_eq(xpool_endpoint_set(xp, 9, &e), 0);
    cr_assert_eq(xpool_endpoint_drop(xp, 9), 0);
    xpool_free(xp);
    signer_wipe(&sg);
    signer_wipe(&e.signer);
    ring_cleanup(&O.ring);
}

Test(xpool, refuses_bad_worker_counts)
{
    struct ring r;
    struct ring_opts ro = {.entries = 8, .max_timers = 8};
    cr_assert_eq(ring_init(&r, &ro), 0);
    struct xpool_opts xo = {.workers = 2};
    char err[128];
    cr_assert_null(xpool_new(&r, &xo, owner_done, &O, err, sizeof(err)));
    cr_assert_not_null(strstr(err, "wake-up"), "%s", err);
    cr_assert_eq(ring_wake_init(&r, owner_wake, NULL), 0);
    xo.workers = 0;
    cr_assert_null(xpool_new(&r, &xo, owner_done, &O, err, sizeof(err)));
    xo.workers = XPOOL_MAX_WORKERS + 1;
    cr_assert_null(xpool_new(&r, &xo, owner_done, &O, err, sizeof(err)));
    ring_cleanup(&r);
}

/* test_ring.c: the io_uring loop: ops and their owners, batched reaping, timers, wake-ups. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ring.h"

TestSuite(ring);

static struct ring_opts opts = {.entries = 64, .max_timers = 2048};

/* An owner with two embedded ops, as a connection would have. */
struct owner {
    int fd;
    struct op rx;
    struct op tx;
    int rx_res, tx_res;
    int rx_calls, tx_calls;
    char buf[64];
};

static void handle_rx(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct owner *o = container_of(op, struct owner, rx);
    o->rx_res = res;
    o->rx_calls++;
}

static void handle_tx(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct owner *o = container_of(op, struct owner, tx);
    o->tx_res = res;
    o->tx_calls++;
}

/* run until cond holds, at most 200 iterations of at most 50 ms each */
#define RUN_UNTIL(r, cond)                                                                         \
    do {                                                                                           \
        for (int i_ = 0; i_ < 200 && !(cond); i_++) {                                              \
            cr_assert_geq(ring_run_once((r), 50 * 1000000LL), 0);                                  \
        }                                                                                          \
        cr_assert(cond, "timed out waiting for " #cond);                                           \
    } while (0)

Test(ring, init_prefers_defer_taskrun_and_falls_back)
{
    struct ring r;
    cr_assert_eq(ring_init(&r, &opts), 0);
    /* the kernel these tests run on has both (6.1+); where it does not, the fall-back ran */
    if (r.setup_flags & IORING_SETUP_DEFER_TASKRUN) {
        cr_assert(r.setup_flags & IORING_SETUP_SINGLE_ISSUER);
        cr_assert(ring_has_defer_taskrun(&r));
    }
    ring_cleanup(&r);

    struct ring_opts o = opts;
    o.flags = RING_NO_DEFER_TASKRUN;
    cr_assert_eq(ring_init(&r, &o), 0);
    cr_assert_not(ring_has_defer_taskrun(&r));
    ring_cleanup(&r);

    o.flags = RING_NO_SINGLE_ISSUER;
    cr_assert_eq(ring_init(&r, &o), 0);
    cr_assert_not(r.setup_flags & IORING_SETUP_SINGLE_ISSUER);
    ring_cleanup(&r);
}

static int nop_count;

static void handle_nop(struct ring *r, struct op *op, int res, uint32_t flags)
{
    cr_assert_eq(res, 0);
    cr_assert_not(op->inflight);
    nop_count++;
}

Test(ring, completions_are_reaped_in_one_batch)
{
    struct ring r;
    cr_assert_eq(ring_init(&r, &opts), 0);
    static struct op ops[200]; /* more than the SQ: ring_sqe flushes when it is full */
    nop_count = 0;
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
        ops[i].cb = handle_nop;
        cr_assert_eq(ring_nop(&r, &ops[i]), 0);
        cr_assert(ops[i].inflight);
        cr_assert_eq(ops[i].type, RING_OP_NOP);
    }
    cr_assert_eq(r.inflight, ARRAY_SIZE(ops));
    RUN_UNTIL(&r, nop_count == (int)ARRAY_SIZE(ops));
    cr_assert_eq(r.inflight, 0);
    cr_assert_eq(r.stat_cqes, ARRAY_SIZE(ops));
    /* the 200 completions came back in far fewer iterations than completions */
    cr_assert_lt(r.stat_iterations, 20);
    ring_cleanup(&r);
}

Test(ring, send_and_recv_through_embedded_ops)
{
    struct ring r;
    cr_assert_eq(ring_init(&r, &opts), 0);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct owner a = {.fd = sv[0], .rx.cb = handle_rx, .tx.cb = handle_tx};
    struct owner b = {.fd = sv[1], .rx.cb = handle_rx, .tx.cb = handle_tx};
    cr_assert_eq(ring_recv(&r, &b.rx, b.fd, b.buf, sizeof(b.buf), 0), 0);
    cr_assert_eq(ring_send(&r, &a.tx, a.fd, "hello", 5, 0), 0);
    RUN_UNTIL(&r, b.rx_calls == 1 && a.tx_calls == 1);
    cr_assert_eq(a.tx_res, 5);
    cr_assert_eq(b.rx_res, 5);
    cr_assert_eq(memcmp(b.buf, "hello", 5), 0);

    /* sendmsg gathers two pieces in one call */
    struct iovec iov[2] = {{.iov_base = "ab", .iov_len = 2}, {.iov_base = "cde", .iov_len = 3}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    cr_assert_eq(ring_sendmsg(&r, &a.tx, a.fd, &msg, 0), 0);
    RUN_UNTIL(&r, a.tx_calls == 2);
    cr_assert_eq(a.tx_res, 5);
    char got[8];
    cr_assert_eq(read(b.fd, got, sizeof(got)), 5);
    cr_assert_eq(memcmp(got, "abcde", 5), 0);

    /* a pending recv is cancelled by fd */
    cr_assert_eq(ring_recv(&r, &b.rx, b.fd, b.buf, sizeof(b.buf), 0), 0);
    cr_assert_geq(ring_run_once(&r, 0), 0);
    cr_assert(b.rx.inflight);
    cr_assert_eq(ring_cancel_fd(&r, b.fd), 0);
    RUN_UNTIL(&r, b.rx_calls == 2);
    cr_assert_eq(b.rx_res, -ECANCELED);
    cr_assert_eq(r.inflight, 0);

    /* close through the ring: the peer sees EOF */
    ring_close(&r, a.fd);
    cr_assert_geq(ring_run_once(&r, 0), 0);
    cr_assert_eq(ring_recv(&r, &b.rx, b.fd, b.buf, sizeof(b.buf), 0), 0);
    RUN_UNTIL(&r, b.rx_calls == 3);
    cr_assert_eq(b.rx_res, 0);
    close(b.fd);
    ring_cleanup(&r);
}

struct acceptor {
    struct op op;
    int fds[8];
    int n;
    int rearms;
};

static void handle_accept(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct acceptor *a = container_of(op, struct acceptor, op);
    cr_assert_geq(res, 0, "accept: %s", strerror(-res));
    cr_assert(flags & IORING_CQE_F_MORE);
    cr_assert(op->inflight);
    a->fds[a->n++] = res;
}

Test(ring, multishot_accept_gives_one_completion_per_connection)
{
    struct ring r;
    cr_assert_eq(ring_init(&r, &opts), 0);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(lfd, 16), 0);
    socklen_t sl = sizeof(sa);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);

    struct acceptor a = {.op.cb = handle_accept};
    cr_assert_eq(ring_accept_multishot(&r, &a.op, lfd), 0);
    int cfd[3];
    for (int i = 0; i < 3; i++) {
        cfd[i] = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_eq(connect(cfd[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    RUN_UNTIL(&r, a.n == 3);
    cr_assert(a.op.inflight);
    cr_assert_eq(r.inflight, 1);
    for (int i = 0; i < 3; i++) {
        close(cfd[i]);
        close(a.fds[i]);
    }
    close(lfd);
    ring_cleanup(&r);
}

/* ---- timers ----------------------------------------------------------------------------- */

struct tick {
    struct ring_timer t;
    int id;
};

static int fired[4096];
static int nfired;

static void handle_tick(struct ring *r, struct ring_timer *t)
{
    struct tick *k = container_of(t, struct tick, t);
    cr_assert_not(ring_timer_armed(t));
    fired[nfired++] = k->id;
}

Test(ring, timers_fire_in_deadline_order_and_bound_the_wait)
{
    struct ring r;
    cr_assert_eq(ring_init(&r, &opts), 0);
    struct tick k[4];
    for (int i = 0; i < 4; i++) {
        ring_timer_init(&k[i].t, handle_tick);
        k[i].id = i;
    }
    nfired = 0;
    int64_t t0 = ring_clock_ns();
    r.now_ns = t0;
    cr_assert_eq(ring_timer_arm_in(&r, &k[0].t, 30 * 1000000LL), 0);
    cr_assert_eq(ring_timer_arm_in(&r, &k[1].t, 10 * 1000000LL), 0);
    cr_assert_eq(ring_timer_arm_in(&r, &k[2].t, 20 * 1000000LL), 0);
    cr_assert_eq(ring_timer_arm_in(&r, &k[3].t, 15 * 1000000LL), 0);
    ring_timer_cancel(&r, &k[3].t);
    ring_timer_cancel(&r, &k[3].t); /* no-op when disarmed */
    cr_assert_eq(ring_next_deadline(&r), t0 + 10 * 1000000LL);
    /* re-arming moves a timer: k[0] now goes first */
    cr_assert_eq(ring_timer_arm_in(&r, &k[0].t, 5 * 1000000LL), 0);
    /* nothing is submitted: only the timers can end these waits (-1: no other bound) */
    for (int i = 0; i < 50 && nfired < 3; i++) {
        cr_assert_geq(ring_run_once(&r, -1), 0);
    }
    cr_assert_eq(nfired, 3);
    cr_assert_eq(fired[0], 0);
    cr_assert_eq(fired[1], 1);
    cr_assert_eq(fired[2], 2);
    /* the last one was due 20 ms after t0: the loop slept at least that long */
    cr_assert_geq(ring_now_ns(&r) - t0, 20 * 1000000LL);
    cr_assert_eq(ring_next_deadline(&r), -1);
    ring_cleanup(&r);
}

Test(ring, timer_heap_keeps_order_under_random_arms_and_cancels)
{
    struct ring r;
    cr_assert_eq(ring_init(&r, &opts), 0);
    static struct tick k[2048];
    srand(7);
    int64_t base = ring_clock_ns() - 1000000000LL; /* every deadline already passed */
    for (int i = 0; i < 2048; i++) {
        ring_timer_init(&k[i].t, handle_tick);
        k[i].id = i;
        cr_assert_eq(ring_timer_arm(&r, &k[i].t, base + rand() % 100000), 0);
    }
    struct tick extra;
    ring_timer_init(&extra.t, handle_tick);
    cr_assert_eq(ring_timer_arm(&r, &extra.t, base), -ENOSPC);
    int cancelled = 0;
    for (int i = 0; i < 2048; i += 3) {
        ring_timer_cancel(&r, &k[i].t);
        cancelled++;
    }
    for (int i = 1; i < 2048; i += 7) {
        ring_timer_arm(&r, &k[i].t, base + rand() % 100000);
    }
    int armed = 0;
    for (int i = 0; i < 2048; i++) {
        armed += ring_timer_armed(&k[i].t);
    }
    cr_assert_eq(armed, (int)r.nheap);
    cr_assert_lt(armed, 2048 - cancelled + 2048 / 7 + 1);
    nfired = 0;
    cr_assert_geq(ring_run_once(&r, 0), 0);
    cr_assert_eq(nfired, armed);
    for (int i = 1; i < nfired; i++) {
        cr_assert_leq(k[fired[i - 1]].t.expire_ns, k[fired[i]].t.expire_ns);
    }
    ring_cleanup(&r);
}

/* ---- wake-up from another thread ---------------------------------------------------------- */

static void handle_wake(struct ring *r, void *arg)
{
    (*(int *)arg)++;
    ring_stop(r);
}

static void *waker(void *arg)
{
    usleep(20000);
    ring_wake(arg);
    return NULL;
}

Test(ring, another_thread_wakes_the_loop)
{
    struct ring r;
    cr_assert_eq(ring_init(&r, &opts), 0);
    int woken = 0;
    cr_assert_eq(ring_wake_init(&r, handle_wake, &woken), 0);
    /* a timer bounds the wait in case the wake-up is lost */
    struct tick guard;
    ring_timer_init(&guard.t, handle_tick);
    cr_assert_eq(ring_timer_arm_in(&r, &guard.t, 5000 * 1000000LL), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, waker, &r), 0);
    cr_assert_eq(ring_run(&r), 0);
    pthread_join(th, NULL);
    cr_assert_eq(woken, 1);
    cr_assert(ring_timer_armed(&guard.t), "the guard timer fired: the wake-up was lost");
    ring_cleanup(&r);
}

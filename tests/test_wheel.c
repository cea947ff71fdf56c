/* test_wheel.c: the timer wheel fires every timer exactly once, at the first run whose time has
 * reached it, in the documented order, and its wait bound is never late. The big test drives
 * the wheel and a lazy reference heap with the same random adds, cancels, re-adds (also from
 * callbacks) and time jumps (1 ms to years) and compares them after every run. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "wheel.h"

TestSuite(wheel);

#define DAY_MS (24ull * 3600 * 1000)
#define TURN_MS (1ull << (WHEEL_BITS * WHEEL_LEVELS)) /* one turn of the top level */

/* ---- small deterministic cases ----------------------------------------------------------- */

#define LOG_MAX 64

struct logged {
    struct wheel_timer t;
    int id;
};

static int fire_log[LOG_MAX];
static uint64_t fire_now[LOG_MAX];
static size_t nlog;

static void log_cb(struct wheel *w, struct wheel_timer *t)
{
    cr_assert(!wheel_is_pending(t), "a firing timer is no longer pending");
    cr_assert_lt(nlog, LOG_MAX);
    fire_log[nlog] = container_of(t, struct logged, t)->id;
    fire_now[nlog] = wheel_now(w);
    nlog++;
}

static void logged_init(struct logged *l, size_t n)
{
    nlog = 0;
    for (size_t i = 0; i < n; i++) {
        wheel_timer_init(&l[i].t, log_cb);
        l[i].id = (int)i;
    }
}

Test(wheel, fires_in_expiry_order_at_the_right_run)
{
    struct wheel w;
    struct logged l[6];
    const uint64_t t0 = 1700000000000;

    wheel_init(&w, t0);
    logged_init(l, 6);
    wheel_add(&w, &l[0].t, t0 + 5000);
    wheel_add(&w, &l[1].t, t0 + 3);
    wheel_add(&w, &l[2].t, t0 + 70);
    wheel_add(&w, &l[3].t, t0 + 3 * DAY_MS);
    wheel_add(&w, &l[4].t, t0 + 64);
    wheel_add(&w, &l[5].t, t0 + 4999);
    for (int i = 0; i < 6; i++) {
        cr_expect(wheel_is_pending(&l[i].t));
    }

    cr_expect_eq(wheel_run(&w, t0 + 2), 0);
    cr_expect_eq(wheel_run(&w, t0 + 3), 1);
    cr_expect_eq(fire_log[0], 1);
    cr_expect_eq(wheel_run(&w, t0 + 69), 1, "64 fires, 70 does not yet");
    cr_expect_eq(fire_log[1], 4);
    cr_expect_eq(wheel_run(&w, t0 + 10000), 3);
    cr_expect_eq(fire_log[2], 2);
    cr_expect_eq(fire_log[3], 5);
    cr_expect_eq(fire_log[4], 0);
    cr_expect_eq(fire_now[4], t0 + 10000, "callbacks see the run's time");
    cr_expect(wheel_is_pending(&l[3].t));
    cr_expect_eq(wheel_run(&w, t0 + 3 * DAY_MS - 1), 0);
    cr_expect_eq(wheel_run(&w, t0 + 3 * DAY_MS), 1);
    cr_expect_eq(fire_log[5], 3);
    cr_expect_eq(wheel_next_expiry(&w, t0 + 3 * DAY_MS), WHEEL_NO_EXPIRY);
    wheel_cleanup(&w);
}

Test(wheel, past_and_present_expiries_fire_on_the_next_run)
{
    struct wheel w;
    struct logged l[3];
    const uint64_t t0 = 1000000;

    wheel_init(&w, t0);
    logged_init(l, 3);
    wheel_add(&w, &l[0].t, t0);
    wheel_add(&w, &l[1].t, 0);
    wheel_add(&w, &l[2].t, t0 - 1);
    cr_expect_eq(wheel_next_expiry(&w, t0), 0);
    cr_expect_eq(wheel_run(&w, t0), 3, "due at the wheel's own time");
    int want[] = {0, 1, 2}; /* already due: in the order they were added */
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(fire_log[i], want[i]);
    }
    cr_expect_eq(wheel_next_expiry(&w, t0), WHEEL_NO_EXPIRY);
    cr_expect_eq(wheel_run(&w, t0 + 1), 0);
}

Test(wheel, due_timers_come_before_the_others)
{
    struct wheel w;
    struct logged l[3];

    wheel_init(&w, 500);
    logged_init(l, 3);
    wheel_add(&w, &l[0].t, 510);
    wheel_add(&w, &l[1].t, 505);
    wheel_add(&w, &l[2].t, 100);
    cr_expect_eq(wheel_run(&w, 600), 3);
    cr_expect_eq(fire_log[0], 2);
    cr_expect_eq(fire_log[1], 1);
    cr_expect_eq(fire_log[2], 0);
}

Test(wheel, cancel_is_safe_in_every_state)
{
    struct wheel w;
    struct logged l[3];

    wheel_init(&w, 0);
    logged_init(l, 3);
    cr_expect(!wheel_is_pending(&l[0].t));
    wheel_del(&l[0].t); /* never added */
    wheel_add(&w, &l[0].t, 10);
    wheel_add(&w, &l[1].t, 10);
    wheel_add(&w, &l[2].t, 100000);
    wheel_del(&l[1].t);
    cr_expect(!wheel_is_pending(&l[1].t));
    wheel_del(&l[1].t); /* twice */
    wheel_del(&l[2].t); /* the last timer of its slot: the bitmap must forget it */
    cr_expect_eq(wheel_next_expiry(&w, 0), 10);
    cr_expect_eq(wheel_run(&w, 200000), 1);
    cr_expect_eq(fire_log[0], 0);
    cr_expect(!wheel_is_pending(&l[0].t));
    wheel_del(&l[0].t); /* after it fired */
    cr_expect_eq(wheel_next_expiry(&w, 200000), WHEEL_NO_EXPIRY);
    cr_expect_eq(wheel_run(&w, 300000), 0);
    /* re-adding moves: one firing, at the new time */
    wheel_add(&w, &l[0].t, 300050);
    wheel_add(&w, &l[0].t, 300020);
    cr_expect_eq(wheel_run(&w, 300030), 1);
    cr_expect_eq(fire_now[1], 300030);
    cr_expect_eq(wheel_run(&w, 300100), 0);
}

Test(wheel, cleanup_detaches_without_firing)
{
    struct wheel w;
    struct logged l[4];

    wheel_init(&w, 77);
    logged_init(l, 4);
    wheel_add(&w, &l[0].t, 78);
    wheel_add(&w, &l[1].t, 77 + 40 * DAY_MS);
    wheel_add(&w, &l[2].t, UINT64_MAX);
    wheel_add(&w, &l[3].t, 1);
    wheel_cleanup(&w);
    for (int i = 0; i < 4; i++) {
        cr_expect(!wheel_is_pending(&l[i].t));
    }
    cr_expect_eq(wheel_next_expiry(&w, 77), WHEEL_NO_EXPIRY);
    cr_expect_eq(wheel_run(&w, 100 * DAY_MS), 0);
    cr_expect_eq(nlog, 0);
}

Test(wheel, next_expiry_is_a_bound_that_tightens)
{
    struct wheel w;
    struct logged l[1];
    const uint64_t t0 = 1 << 20;
    const uint64_t at = t0 + 123456789;

    wheel_init(&w, t0);
    logged_init(l, 1);
    cr_expect_eq(wheel_next_expiry(&w, t0), WHEEL_NO_EXPIRY);
    wheel_add(&w, &l[0].t, t0 + 17);
    cr_expect_eq(wheel_next_expiry(&w, t0), 17, "exact within the current 64 ms");
    cr_expect_eq(wheel_next_expiry(&w, t0 + 5), 12);
    cr_expect_eq(wheel_next_expiry(&w, t0 + 30), 0, "a later caller's now: already due");
    wheel_add(&w, &l[0].t, at);
    /* sleeping as told and running reaches the timer in a few wake-ups (one per level) */
    uint64_t now = t0;
    int wakeups = 0;
    while (nlog == 0) {
        uint64_t ne = wheel_next_expiry(&w, now);
        cr_assert_neq(ne, WHEEL_NO_EXPIRY);
        cr_assert(now + ne <= at, "the bound is never late");
        cr_assert_gt(ne, 0, "nothing is due before the timer");
        now += ne;
        wheel_run(&w, now);
        cr_assert_lt(++wakeups, WHEEL_LEVELS + 1);
    }
    cr_expect_eq(now, at);
}

/* ---- callbacks that add and cancel -------------------------------------------------------- */

struct periodic {
    struct wheel_timer t;
    uint64_t period; /* 0: re-add already due */
    int fired;
};

static void periodic_cb(struct wheel *w, struct wheel_timer *t)
{
    struct periodic *p = container_of(t, struct periodic, t);

    p->fired++;
    wheel_add(w, t, wheel_now(w) + p->period);
}

Test(wheel, callbacks_rearm_themselves)
{
    struct wheel w;
    struct periodic tick = {.period = 10};
    struct periodic spin = {.period = 0};

    wheel_init(&w, 0);
    wheel_timer_init(&tick.t, periodic_cb);
    wheel_timer_init(&spin.t, periodic_cb);
    wheel_add(&w, &tick.t, 10);
    wheel_add(&w, &spin.t, 0);
    /* spin re-adds itself already due: once per run, never a loop inside one run */
    cr_expect_eq(wheel_run(&w, 0), 1);
    cr_expect_eq(spin.fired, 1);
    cr_expect_eq(wheel_next_expiry(&w, 0), 0);
    cr_expect_eq(wheel_run(&w, 0), 1);
    cr_expect_eq(spin.fired, 2);
    wheel_del(&spin.t);
    for (uint64_t now = 1; now <= 1000; now++) {
        wheel_run(&w, now);
    }
    cr_expect_eq(tick.fired, 100);
    /* after a long sleep a periodic timer fires once, not once per missed period */
    wheel_run(&w, 5000);
    cr_expect_eq(tick.fired, 101);
    cr_expect_eq(tick.t.expire_at, 5010);
}

struct canceller {
    struct wheel_timer t;
    struct wheel_timer *victim;
    struct wheel_timer *readd;
    int fired;
};

static void canceller_cb(struct wheel *w, struct wheel_timer *t)
{
    struct canceller *c = container_of(t, struct canceller, t);

    c->fired++;
    if (c->victim) {
        wheel_del(c->victim);
    }
    if (c->readd) {
        wheel_add(w, c->readd, wheel_now(w) - 1);
    }
}

Test(wheel, a_callback_cancels_or_moves_a_timer_due_in_the_same_run)
{
    struct wheel w;
    struct canceller a = {0}, b = {0}, c = {0}, d = {0};

    wheel_init(&w, 1000);
    wheel_timer_init(&a.t, canceller_cb);
    wheel_timer_init(&b.t, canceller_cb);
    wheel_timer_init(&c.t, canceller_cb);
    wheel_timer_init(&d.t, canceller_cb);
    a.victim = &b.t; /* b is due in the same run, after a */
    a.readd = &c.t;  /* c too: moved to the due list, it waits for the next run */
    wheel_add(&w, &a.t, 1001);
    wheel_add(&w, &b.t, 1002);
    wheel_add(&w, &c.t, 1003);
    wheel_add(&w, &d.t, 1004);
    cr_expect_eq(wheel_run(&w, 2000), 2);
    cr_expect_eq(a.fired, 1);
    cr_expect_eq(b.fired, 0);
    cr_expect_eq(c.fired, 0);
    cr_expect_eq(d.fired, 1);
    cr_expect(wheel_is_pending(&c.t));
    cr_expect_eq(wheel_run(&w, 2000), 1);
    cr_expect_eq(c.fired, 1);
}

/* ---- beyond the horizon ------------------------------------------------------------------ */

Test(wheel, expiries_beyond_the_top_turn_fire_on_time)
{
    struct wheel w;
    struct logged l[5];
    const uint64_t t0 = 3 * TURN_MS - 2 * DAY_MS; /* two days before a top-level turn */
    const uint64_t at[] = {
        3 * TURN_MS - 1,          /* just before the turn */
        3 * TURN_MS,              /* on it */
        3 * TURN_MS + 1,          /* 2 days + 1 ms ahead, but across the turn */
        t0 + 3 * TURN_MS + 12345, /* about 6.5 years ahead */
        UINT64_MAX,               /* never, in practice */
    };

    wheel_init(&w, t0);
    logged_init(l, 5);
    for (int i = 0; i < 5; i++) {
        wheel_add(&w, &l[i].t, at[i]);
    }
    uint64_t now = t0;
    size_t prev = 0;
    /* sleep as the wheel says; every timer fires at exactly its expiry */
    while (nlog < 4) {
        uint64_t ne = wheel_next_expiry(&w, now);
        cr_assert_neq(ne, WHEEL_NO_EXPIRY);
        now += ne;
        wheel_run(&w, now);
        for (; prev < nlog; prev++) {
            cr_expect_eq(fire_now[prev], at[fire_log[prev]], "timer %d", fire_log[prev]);
        }
    }
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(fire_log[i], i);
    }
    cr_expect(wheel_is_pending(&l[4].t));
    /* a jump over several turns at once */
    wheel_add(&w, &l[0].t, now + 5 * TURN_MS + 7);
    cr_expect_eq(wheel_run(&w, now + 5 * TURN_MS + 6), 0);
    cr_expect_eq(wheel_run(&w, now + 9 * TURN_MS), 1);
    cr_expect_eq(fire_log[4], 0);
    wheel_cleanup(&w);
}

/* ---- randomized differential test --------------------------------------------------------- */

#define NT 100000
#define ROUNDS 60000
#define SEED 0x5eedf00dcafe1234ull

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t below(uint64_t n)
{
    return rnd() % n;
}

/* The reference: per-timer truth, plus a min-heap of (expire, id, generation) entries where a
 * cancelled or re-added timer's old entries are skipped when they surface. */
struct ref_entry {
    uint64_t expire;
    uint32_t id;
    uint32_t gen;
};

struct model_timer {
    struct wheel_timer t;
    uint64_t expire;
    uint64_t arm_epoch; /* the run count when it was last added */
    uint32_t gen;
    bool armed;
    bool late; /* already due when added: fires in the due group, first */
};

static struct {
    struct wheel w;
    struct model_timer *m;
    struct ref_entry *heap;
    size_t nheap, cap;
    uint64_t now;   /* the time of the current (or last) run */
    uint64_t epoch; /* runs started */
    uint64_t fired, armed_total, cancels;
    uint64_t pending, pending_max, pending_sum; /* armed timers: now, most, summed over runs */
    /* order within the current run */
    bool seen_regular;
    uint64_t last_regular;
} D;

static bool ref_less(const struct ref_entry *a, const struct ref_entry *b)
{
    return a->expire < b->expire;
}

static void ref_push(struct ref_entry e)
{
    if (D.nheap == D.cap) {
        D.cap = D.cap ? 2 * D.cap : 1024;
        D.heap = realloc(D.heap, D.cap * sizeof(*D.heap));
        cr_assert_not_null(D.heap);
    }
    size_t i = D.nheap++;
    while (i > 0 && ref_less(&e, &D.heap[(i - 1) / 2])) {
        D.heap[i] = D.heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    D.heap[i] = e;
}

static struct ref_entry ref_pop(void)
{
    struct ref_entry top = D.heap[0];
    struct ref_entry last = D.heap[--D.nheap];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= D.nheap) {
            break;
        }
        if (c + 1 < D.nheap && ref_less(&D.heap[c + 1], &D.heap[c])) {
            c++;
        }
        if (!ref_less(&D.heap[c], &last)) {
            break;
        }
        D.heap[i] = D.heap[c];
        i = c;
    }
    if (D.nheap) {
        D.heap[i] = last;
    }
    return top;
}

static bool ref_live(const struct ref_entry *e)
{
    const struct model_timer *m = &D.m[e->id];
    return m->armed && m->gen == e->gen;
}

/* ref_earliest drops dead entries from the top and says whether a timer is armed at all. */
static bool ref_earliest(uint64_t *at)
{
    while (D.nheap && !ref_live(&D.heap[0])) {
        ref_pop();
    }
    if (!D.nheap) {
        return false;
    }
    *at = D.heap[0].expire;
    return true;
}

/* random_expiry draws how far ahead a timer is set: mostly retry-like spreads, some already
 * due, some past any horizon. */
static uint64_t random_expiry(uint64_t now)
{
    uint64_t r = below(1000);

    if (r < 15) {
        return now; /* due already, exactly */
    }
    if (r < 50) {
        uint64_t back = 1 + below(20000);
        return back > now ? 0 : now - back; /* due already */
    }
    if (r < 200) {
        return now + 1 + below(64);
    }
    if (r < 400) {
        return now + 1 + below(10000);
    }
    if (r < 800) {
        return now + 1 + below(DAY_MS);
    }
    if (r < 950) {
        return now + 1 + below(10 * DAY_MS);
    }
    if (r < 995) {
        return now + 1 + below(3 * TURN_MS);
    }
    return UINT64_MAX - below(1000);
}

static void model_add(uint32_t id, uint64_t expire)
{
    struct model_timer *m = &D.m[id];

    wheel_add(&D.w, &m->t, expire);
    D.pending += !m->armed;
    m->expire = expire;
    m->armed = true;
    m->gen++;
    m->arm_epoch = D.epoch;
    m->late = expire <= wheel_now(&D.w);
    D.armed_total++;
    ref_push((struct ref_entry){expire, id, m->gen});
}

static void model_del(uint32_t id)
{
    struct model_timer *m = &D.m[id];

    wheel_del(&m->t);
    cr_assert(!wheel_is_pending(&m->t));
    D.pending -= m->armed;
    m->armed = false;
    D.cancels++;
}

static void random_op(void)
{
    uint32_t id = (uint32_t)below(NT);
    uint64_t r = below(100);

    if (r < 65) {
        model_add(id, random_expiry(wheel_now(&D.w)));
    } else {
        model_del(id); /* pending or not */
    }
}

static void diff_cb(struct wheel *w, struct wheel_timer *t)
{
    struct model_timer *m = container_of(t, struct model_timer, t);
    uint32_t id = (uint32_t)(m - D.m);

    if (!m->armed) {
        cr_assert_fail("timer %u fired while not pending (run %llu)", id,
                       (unsigned long long)D.epoch);
    }
    if (m->expire > D.now || t->expire_at != m->expire) {
        cr_assert_fail("timer %u fired early: expire %llu, now %llu", id,
                       (unsigned long long)m->expire, (unsigned long long)D.now);
    }
    if (m->arm_epoch >= D.epoch) {
        cr_assert_fail("timer %u added in this run fired in it", id);
    }
    if (wheel_is_pending(t) || wheel_now(w) != D.now) {
        cr_assert_fail("timer %u: pending in its callback or wrong wheel time", id);
    }
    if (m->late) {
        if (D.seen_regular) {
            cr_assert_fail("timer %u added already due fired after a regular one", id);
        }
    } else {
        if (D.seen_regular && m->expire < D.last_regular) {
            cr_assert_fail("timer %u fired out of order", id);
        }
        D.seen_regular = true;
        D.last_regular = m->expire;
    }
    m->armed = false;
    D.pending--;
    D.fired++;

    /* what real owners do: re-arm themselves, schedule or cancel others */
    uint64_t r = below(100);
    if (r < 20) {
        model_add(id, random_expiry(D.now));
    } else if (r < 30) {
        model_add((uint32_t)below(NT), random_expiry(D.now));
    } else if (r < 40) {
        model_del((uint32_t)below(NT));
    }
}

/* check_bound: at a caller's time q >= the wheel's, wheel_next_expiry is 0 exactly when
 * something is due (right after a run) or at most the wait to the true earliest expiry. */
static void check_bound(uint64_t q, bool after_run)
{
    uint64_t earliest;
    uint64_t ne = wheel_next_expiry(&D.w, q);

    if (!ref_earliest(&earliest)) {
        cr_assert_eq(ne, WHEEL_NO_EXPIRY, "nothing pending, bound %llu", (unsigned long long)ne);
        return;
    }
    cr_assert_neq(ne, WHEEL_NO_EXPIRY, "a timer is pending");
    if (earliest <= q) {
        cr_assert_eq(ne, 0, "a due timer, yet a wait of %llu", (unsigned long long)ne);
    } else {
        cr_assert(ne <= earliest - q, "bound %llu is later than the earliest expiry in %llu",
                  (unsigned long long)ne, (unsigned long long)(earliest - q));
        if (after_run) {
            cr_assert_gt(ne, 0, "nothing is due after a run, yet a wait of 0");
        }
    }
}

static void check_none_missed(void)
{
    static struct ref_entry keep[NT]; /* at most one live entry per timer */
    size_t nkeep = 0;

    while (D.nheap && D.heap[0].expire <= D.now) {
        struct ref_entry e = ref_pop();
        if (!ref_live(&e)) {
            continue;
        }
        if (D.m[e.id].arm_epoch < D.epoch) {
            cr_assert_fail("timer %u (expire %llu) missed the run at %llu", e.id,
                           (unsigned long long)e.expire, (unsigned long long)D.now);
        }
        /* added by a callback of this run: due, it waits for the next run */
        keep[nkeep++] = e;
    }
    for (size_t i = 0; i < nkeep; i++) {
        ref_push(keep[i]);
    }
}

/* random_advance draws the time between two runs: mostly a busy loop's milliseconds, now and
 * then a long sleep, rarely days (all retries flush) or years (past the top turn). */
static uint64_t random_advance(void)
{
    uint64_t r = below(100000);

    if (r < 40000) {
        return below(3); /* includes runs at the same time */
    }
    if (r < 78000) {
        return below(100);
    }
    if (r < 94000) {
        return below(10000);
    }
    if (r < 99900) {
        return below(300 * 1000);
    }
    if (r < 99990) {
        return below(6 * 3600 * 1000);
    }
    if (r < 99996) {
        return DAY_MS + below(8 * DAY_MS); /* up to 9 days */
    }
    return below(2 * TURN_MS); /* years */
}

Test(wheel, randomized_against_a_reference_heap)
{
    rng_state = SEED;
    memset(&D, 0, sizeof(D));
    D.m = calloc(NT, sizeof(*D.m));
    cr_assert_not_null(D.m);
    /* start two days before a top-level turn so that the overflow is crossed early */
    D.now = 2 * TURN_MS - 2 * DAY_MS;
    wheel_init(&D.w, D.now);
    for (uint32_t i = 0; i < NT; i++) {
        wheel_timer_init(&D.m[i].t, diff_cb);
    }
    for (uint32_t i = 0; i < NT; i++) {
        model_add(i, random_expiry(D.now));
    }

    for (int round = 0; round < ROUNDS; round++) {
        int nops = (int)below(60);
        for (int i = 0; i < nops; i++) {
            random_op();
        }
        uint64_t adv = random_advance();
        check_bound(D.now, false);
        check_bound(D.now + below(adv + 1), false);
        if (below(50) == 0) {
            /* an occasional stale clock: the wheel must not go back */
            D.epoch++;
            D.seen_regular = false;
            wheel_run(&D.w, D.now - below(D.now / 2 + 1));
            check_none_missed();
        }
        D.now += adv;
        D.epoch++;
        D.seen_regular = false;
        wheel_run(&D.w, D.now);
        cr_assert_eq(wheel_now(&D.w), D.now);
        check_none_missed();
        check_bound(D.now, true);
        D.pending_sum += D.pending;
        if (D.pending > D.pending_max) {
            D.pending_max = D.pending;
        }
    }

    /* every armed timer is pending in the wheel, every other one is not */
    size_t pending = 0;
    for (uint32_t i = 0; i < NT; i++) {
        cr_assert_eq(wheel_is_pending(&D.m[i].t), D.m[i].armed, "timer %u", i);
        pending += D.m[i].armed;
    }
    cr_assert_eq(pending, D.pending);
    cr_log_info("wheel: %llu adds, %llu cancels, %llu fired; pending: %llu mean, %llu most, %zu at "
                "the end; virtual time %.1f days",
                (unsigned long long)D.armed_total, (unsigned long long)D.cancels,
                (unsigned long long)D.fired, (unsigned long long)(D.pending_sum / ROUNDS),
                (unsigned long long)D.pending_max, pending,
                (double)(D.now - (2 * TURN_MS - 2 * DAY_MS)) / DAY_MS);
    cr_expect_gt(D.fired, 100000, "the run exercised enough firings");
    wheel_cleanup(&D.w);
    for (uint32_t i = 0; i < NT; i++) {
        cr_assert(!wheel_is_pending(&D.m[i].t));
    }
    free(D.m);
    free(D.heap);
}

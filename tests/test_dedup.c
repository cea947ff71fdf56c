/* test_dedup.c: the dedup table: new/duplicate/full, windows and rotation, late and replayed
 * times, key derivation, and exactly-one-NEW under concurrent inserts and rotations. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedup.h"

/* A timeout, so that a protocol bug that spins fails the suite instead of hanging it. */
// cppcheck-suppress unknownMacro
TestSuite(dedup, .timeout = 60);

#define W 1000 /* window_ms of most tests; times below are in the same unit */

/* A test key: two arbitrary halves, so that a test can also name the zero halves. */
static void key_of(uint8_t out[DEDUP_KEY_LEN], uint64_t a, uint64_t b)
{
    memcpy(out, &a, 8);
    memcpy(out + 8, &b, 8);
}

/* Key number i of set s (splitmix64, so keys look like hashes). */
static void key_n(uint8_t out[DEDUP_KEY_LEN], uint64_t s, uint64_t i)
{
    uint64_t x = s * 0x9e3779b97f4a7c15ULL + i * 0xbf58476d1ce4e5b9ULL + 1;
    uint64_t h[2];
    for (int j = 0; j < 2; j++) {
        x += 0x9e3779b97f4a7c15ULL;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        h[j] = z ^ (z >> 31);
    }
    key_of(out, h[0], h[1]);
}

static enum dedup_result ins(struct dedup *d, uint64_t s, uint64_t i, uint64_t now)
{
    uint8_t k[DEDUP_KEY_LEN];
    key_n(k, s, i);
    return dedup_insert(d, k, now);
}

static bool has(struct dedup *d, uint64_t s, uint64_t i, uint64_t now)
{
    uint8_t k[DEDUP_KEY_LEN];
    key_n(k, s, i);
    return dedup_contains(d, k, now);
}

/* --- single thread -------------------------------------------------------------------------- */

Test(dedup, new_then_duplicate)
{
    struct dedup *d = dedup_new(100, W);
    cr_assert_not_null(d);
    cr_assert(!has(d, 1, 1, 0));
    cr_assert_eq(ins(d, 1, 1, 0), DEDUP_NEW);
    cr_assert_eq(ins(d, 1, 1, 0), DEDUP_DUPLICATE);
    cr_assert_eq(ins(d, 1, 1, 10), DEDUP_DUPLICATE);
    cr_assert(has(d, 1, 1, 0));
    cr_assert(!has(d, 1, 2, 0));
    cr_assert_eq(ins(d, 1, 2, 0), DEDUP_NEW);
    dedup_free(d);
}

/* dedup_prefetch is only a hint: before, during and after a rotation (when a previous
 * generation is live), prefetching present and absent keys changes no answer and no count. */
Test(dedup, prefetch_changes_nothing)
{
    struct dedup *d = dedup_new(100, W);
    cr_assert_not_null(d);
    uint8_t k[DEDUP_KEY_LEN];
    for (uint64_t now = 0; now <= 3 * W; now += W / 2) {
        for (uint64_t i = 0; i < 40; i++) {
            key_n(k, 7, i);
            dedup_prefetch(d, k);
        }
        struct dedup_stats before, after;
        dedup_stats(d, &before);
        for (uint64_t i = 0; i < 40; i++) {
            key_n(k, 7, i);
            dedup_prefetch(d, k);
        }
        dedup_stats(d, &after);
        cr_assert_eq(memcmp(&before, &after, sizeof(before)), 0, "at %lu", (unsigned long)now);
        uint64_t base = now / (W / 2) * 10;
        for (uint64_t i = base; i < base + 10; i++) {
            cr_assert(!has(d, 7, i, now));
            cr_assert_eq(ins(d, 7, i, now), DEDUP_NEW, "key %lu at %lu", (unsigned long)i,
                         (unsigned long)now);
            cr_assert_eq(ins(d, 7, i, now), DEDUP_DUPLICATE);
        }
    }
    dedup_free(d);
}

/* A single-writer table (no pins, no locked instructions) answers exactly as the shared one:
 * the same calls on both, through fills to DEDUP_FULL, duplicates, rotations, transitions
 * (both generations live), late times and idle gaps, give the same answers and counts. */
Test(dedup, a_single_writer_table_answers_as_the_shared_one)
{
    struct dedup *a = dedup_new(60, W), *b = dedup_new(60, W);
    cr_assert(a && b);
    dedup_set_single_writer(b);
    uint64_t x = 0x243f6a8885a308d3ull;
    uint64_t now = 0;
    for (int step = 0; step < 20000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x % 97 == 0) {
            now += W / 3; /* the windows move on, a rotation every third move or so */
        } else if (x % 211 == 0) {
            now += 5 * W; /* an idle gap: everything expires */
        }
        uint64_t t = x % 13 == 0 && now > W ? now - W / 2 : now; /* a late call now and then */
        uint64_t key = (x >> 20) % 150;                          /* repeats: duplicates */
        uint8_t k[DEDUP_KEY_LEN];
        key_n(k, 9, key);
        if (x % 5 == 0) {
            cr_assert_eq(dedup_contains(a, k, t), dedup_contains(b, k, t), "step %d", step);
        } else {
            dedup_prefetch(b, k);
            enum dedup_result ra = dedup_insert(a, k, t), rb = dedup_insert(b, k, t);
            cr_assert_eq(ra, rb, "step %d: key %lu at %lu: %d vs %d", step, (unsigned long)key,
                         (unsigned long)t, ra, rb);
        }
        struct dedup_stats sa, sb;
        dedup_stats(a, &sa);
        dedup_stats(b, &sb);
        cr_assert_eq(memcmp(&sa, &sb, sizeof(sa)), 0, "step %d: used %zu/%zu vs %zu/%zu", step,
                     sa.used_current, sa.used_previous, sb.used_current, sb.used_previous);
    }
    struct dedup_stats st;
    dedup_stats(b, &st);
    cr_assert_gt(st.rotations, 10);
    cr_assert_gt(st.full_results, 0);
    dedup_free(a);
    dedup_free(b);
}

Test(dedup, bad_arguments)
{
    errno = 0;
    cr_assert_null(dedup_new(0, W));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(dedup_new(100, 0));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(dedup_new(SIZE_MAX, W));
    cr_assert_eq(errno, EINVAL);
    dedup_free(NULL);
}

Test(dedup, full_is_distinct_and_leaves_no_trace)
{
    struct dedup *d = dedup_new(100, W);
    for (uint64_t i = 0; i < 100; i++) {
        cr_assert_eq(ins(d, 2, i, 5), DEDUP_NEW, "key %lu", (unsigned long)i);
    }
    cr_assert_eq(ins(d, 2, 100, 5), DEDUP_FULL);
    cr_assert_eq(ins(d, 2, 100, 6), DEDUP_FULL);
    cr_assert(!has(d, 2, 100, 6), "a refused key must not be there");
    /* Duplicates are still recognised when full. */
    cr_assert_eq(ins(d, 2, 7, 6), DEDUP_DUPLICATE);

    struct dedup_stats st;
    dedup_stats(d, &st);
    cr_assert_eq(st.capacity, 100);
    cr_assert_eq(st.used_current, 100);
    cr_assert_eq(st.full_results, 2);
    cr_assert(st.slots * 3 / 4 >= 100 && st.slots / 2 * 3 / 4 < 100, "slots %zu", st.slots);

    /* The next window has room; the old keys are still duplicates from the previous one. */
    cr_assert_eq(ins(d, 2, 100, W), DEDUP_NEW);
    cr_assert_eq(ins(d, 2, 7, W), DEDUP_DUPLICATE);
    dedup_stats(d, &st);
    cr_assert_eq(st.used_current, 1);
    cr_assert_eq(st.used_previous, 100);
    cr_assert_eq(st.rotations, 1);
    dedup_free(d);
}

Test(dedup, window_expiry)
{
    struct dedup *d = dedup_new(100, W);
    cr_assert_eq(ins(d, 3, 1, 0), DEDUP_NEW);
    cr_assert_eq(ins(d, 3, 1, W - 1), DEDUP_DUPLICATE);
    cr_assert_eq(ins(d, 3, 1, W), DEDUP_DUPLICATE);
    cr_assert_eq(ins(d, 3, 1, 2 * W - 1), DEDUP_DUPLICATE);
    /* Two windows on, window 0 has rotated out. */
    cr_assert(!has(d, 3, 1, 2 * W));
    cr_assert_eq(ins(d, 3, 1, 2 * W), DEDUP_NEW);
    cr_assert_eq(ins(d, 3, 1, 2 * W + 1), DEDUP_DUPLICATE);
    dedup_free(d);
}

Test(dedup, inserted_just_before_rotation)
{
    struct dedup *d = dedup_new(100, W);
    cr_assert_eq(ins(d, 4, 1, W - 1), DEDUP_NEW);
    cr_assert_eq(ins(d, 4, 2, W), DEDUP_NEW); /* rotates */
    cr_assert_eq(ins(d, 4, 1, W), DEDUP_DUPLICATE);
    cr_assert_eq(ins(d, 4, 1, 2 * W - 1), DEDUP_DUPLICATE);
    cr_assert_eq(ins(d, 4, 2, 3 * W - 1), DEDUP_DUPLICATE);
    /* Key 1 was inserted more than a window before: it may go. */
    cr_assert_eq(ins(d, 4, 1, 2 * W), DEDUP_NEW);
    dedup_free(d);
}

/* The guarantee at every phase: whenever in its window a key is inserted, it is a duplicate
 * one window_ms - 1 later, and it is gone two windows after its window began. */
Test(dedup, at_least_one_window_at_most_two)
{
    for (uint64_t t = 0; t < 3 * W; t += 37) {
        struct dedup *d = dedup_new(16, W);
        cr_assert_eq(ins(d, 5, t, t), DEDUP_NEW);
        cr_assert_eq(ins(d, 5, t, t + W - 1), DEDUP_DUPLICATE, "t=%lu", (unsigned long)t);
        cr_assert_eq(ins(d, 5, t, (t / W + 2) * W), DEDUP_NEW, "t=%lu", (unsigned long)t);
        dedup_free(d);
    }
}

Test(dedup, idle_gap_expires_everything)
{
    struct dedup *d = dedup_new(100, W);
    cr_assert_eq(ins(d, 6, 1, 0), DEDUP_NEW);
    cr_assert_eq(ins(d, 6, 2, 0), DEDUP_NEW);
    cr_assert_eq(ins(d, 6, 1, 7 * W), DEDUP_NEW);
    struct dedup_stats st;
    dedup_stats(d, &st);
    cr_assert_eq(st.window, 7);
    cr_assert_eq(st.used_current, 1);
    cr_assert_eq(st.used_previous, 0, "window 0 is not the previous window of 7");
    cr_assert_eq(ins(d, 6, 2, 7 * W), DEDUP_NEW);
    dedup_free(d);
}

Test(dedup, contains_does_not_rotate)
{
    struct dedup *d = dedup_new(100, W);
    cr_assert_eq(ins(d, 7, 1, 10), DEDUP_NEW);
    cr_assert(has(d, 7, 1, W + 10), "would still be in the previous window");
    cr_assert(!has(d, 7, 1, 2 * W + 10), "would have aged out");
    struct dedup_stats st;
    dedup_stats(d, &st);
    cr_assert_eq(st.window, 0);
    cr_assert_eq(st.rotations, 0);
    cr_assert_eq(ins(d, 7, 1, 20), DEDUP_DUPLICATE);
    dedup_free(d);
}

/* A late call (now_ms behind the clock) counts as the current window: its key is kept for the
 * window after the clock's, and it still sees every key the table holds. */
Test(dedup, late_calls_take_the_current_window)
{
    struct dedup *d = dedup_new(100, W);
    cr_assert_eq(ins(d, 8, 1, 5 * W), DEDUP_NEW);
    cr_assert_eq(ins(d, 8, 1, 1 * W), DEDUP_DUPLICATE);
    cr_assert_eq(ins(d, 8, 2, 1 * W), DEDUP_NEW);
    cr_assert_eq(ins(d, 8, 2, 6 * W + 999), DEDUP_DUPLICATE);
    cr_assert_eq(ins(d, 8, 2, 7 * W), DEDUP_NEW);
    dedup_free(d);
}

/* Replaying a journal with its original times leaves the keys live traffic would have left:
 * those of the clock's window and the one before. */
Test(dedup, journal_replay)
{
    struct dedup *d = dedup_new(1000, W);
    /* 600 events over six windows, times slightly out of order as group commits leave them. */
    uint64_t times[600];
    for (uint64_t i = 0; i < 600; i++) {
        times[i] = i * 10 + (i % 3 == 0 ? 15 : 0);
    }
    for (uint64_t i = 0; i < 600; i++) {
        cr_assert_eq(ins(d, 9, i, times[i]), DEDUP_NEW);
    }
    /* A key's window is its time's, or the clock's if that was newer when it was replayed. */
    uint64_t clock = 0;
    for (uint64_t i = 0; i < 600; i++) {
        clock = times[i] / W > clock ? times[i] / W : clock;
        bool want = clock >= 4;
        cr_assert_eq(has(d, 9, i, 5 * W + 500), want, "key %lu", (unsigned long)i);
        cr_assert_eq(ins(d, 9, i, 5 * W + 500), want ? DEDUP_DUPLICATE : DEDUP_NEW);
    }
    dedup_free(d);
}

/* Zero halves are folded onto constants (dedup.h); other keys stay distinct. */
Test(dedup, zero_key_halves)
{
    struct dedup *d = dedup_new(100, W);
    uint8_t k[DEDUP_KEY_LEN];
    key_of(k, 0, 0);
    cr_assert_eq(dedup_insert(d, k, 0), DEDUP_NEW);
    cr_assert_eq(dedup_insert(d, k, 0), DEDUP_DUPLICATE);
    key_of(k, 0, 1);
    cr_assert_eq(dedup_insert(d, k, 0), DEDUP_NEW);
    key_of(k, 1, 0);
    cr_assert_eq(dedup_insert(d, k, 0), DEDUP_NEW);
    key_of(k, 1, 1);
    cr_assert_eq(dedup_insert(d, k, 0), DEDUP_NEW);
    key_of(k, 0x9e3779b97f4a7c15ULL, 1); /* (0, 1) folded */
    cr_assert_eq(dedup_insert(d, k, 0), DEDUP_DUPLICATE);
    dedup_free(d);
}

static void hex16(char out[33], const uint8_t k[DEDUP_KEY_LEN])
{
    for (int i = 0; i < DEDUP_KEY_LEN; i++) {
        snprintf(out + 2 * i, 3, "%02x", k[i]);
    }
}

/* Known answers: the first 16 bytes of sha256(profile || "\0" || key), from Python's hashlib. */
Test(dedup, key_known_answers)
{
    static const struct {
        const char *profile, *key, *want;
    } kat[] = {
        {"stripe", "evt_1NBkGd2eZvKYlo2C", "26cf63852c9519482d6aabdfb655c006"},
        {"github", "", "c243ff331b6d7891e771b000783d4561"},
        {"a", "bc", "40bb547d936bbd31318ee37ac8799e7e"},
        {"ab", "c", "6c032e631d39a14d85aff7e319546af7"},
    };
    for (size_t i = 0; i < sizeof(kat) / sizeof(kat[0]); i++) {
        uint8_t k[DEDUP_KEY_LEN];
        char got[33];
        dedup_key(k, kat[i].profile, (const uint8_t *)kat[i].key, strlen(kat[i].key));
        hex16(got, k);
        cr_assert_str_eq(got, kat[i].want, "%s/%s", kat[i].profile, kat[i].key);
    }
}

/* --- threads -------------------------------------------------------------------------------- */

#define NTHREADS 8

struct counts {
    _Atomic uint32_t news, dups, fulls;
};

struct race {
    struct dedup *d;
    pthread_barrier_t barrier;
    size_t nkeys;     /* keys per round */
    size_t rounds;    /* 1 for the no-rotation test */
    bool rotate;      /* times cross a window boundary inside each round */
    struct counts *c; /* [rounds][nkeys] */
    _Atomic bool stop_readers;
    _Atomic uint64_t reader_calls;
};

struct worker {
    struct race *r;
    size_t id;
};

/* Round r's first window: mostly adjacent to the previous round's last, with an idle window
 * every fourth round so that both kinds of rotation happen under load. */
static uint64_t round_window(size_t r)
{
    return 2 * r + r / 4;
}

/* Every thread inserts every key of the round, all in the same order so that they collide on
 * each key at about the same moment. With rotation, the times of thread t are the round's
 * times shifted by t/NTHREADS of the round and wrapped: at any moment some threads are before
 * the window boundary and some after (and some late), so calls of two generations race on the
 * same keys. */
static void *race_worker(void *arg)
{
    struct worker *w = arg;
    struct race *r = w->r;
    for (size_t round = 0; round < r->rounds; round++) {
        uint64_t base = round_window(round) * W + W / 2;
        pthread_barrier_wait(&r->barrier);
        for (size_t i = 0; i < r->nkeys; i++) {
            uint64_t now = base;
            if (r->rotate) {
                now += (i + w->id * r->nkeys / NTHREADS) % r->nkeys * W / r->nkeys;
            }
            struct counts *c = &r->c[round * r->nkeys + i];
            switch (ins(r->d, round + 100, i, now)) {
            case DEDUP_NEW:
                atomic_fetch_add(&c->news, 1);
                break;
            case DEDUP_DUPLICATE:
                atomic_fetch_add(&c->dups, 1);
                break;
            default:
                atomic_fetch_add(&c->fulls, 1);
                break;
            }
        }
    }
    return NULL;
}

/* A reader asking about (and prefetching) keys of every round meanwhile, for the
 * sanitizers. */
static void *race_reader(void *arg)
{
    struct race *r = arg;
    uint64_t i = 0;
    while (!atomic_load(&r->stop_readers)) {
        size_t round = i % r->rounds;
        (void)has(r->d, round + 100, i % r->nkeys, round_window(round) * W + W / 2);
        uint8_t k[DEDUP_KEY_LEN];
        key_n(k, round + 100, (i + 1) % r->nkeys);
        dedup_prefetch(r->d, k); /* reads the tables' headers while they rotate */
        atomic_fetch_add(&r->reader_calls, 1);
        i++;
    }
    return NULL;
}

static void race_run(struct race *r)
{
    pthread_t th[NTHREADS], reader;
    struct worker w[NTHREADS];
    r->c = calloc(r->rounds * r->nkeys, sizeof(*r->c));
    cr_assert_not_null(r->c);
    pthread_barrier_init(&r->barrier, NULL, NTHREADS);
    atomic_store(&r->stop_readers, false);
    cr_assert_eq(pthread_create(&reader, NULL, race_reader, r), 0);
    for (size_t t = 0; t < NTHREADS; t++) {
        w[t] = (struct worker){.r = r, .id = t};
        cr_assert_eq(pthread_create(&th[t], NULL, race_worker, &w[t]), 0);
    }
    for (size_t t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
    }
    atomic_store(&r->stop_readers, true);
    pthread_join(reader, NULL);
    pthread_barrier_destroy(&r->barrier);

    size_t bad = 0;
    for (size_t j = 0; j < r->rounds * r->nkeys; j++) {
        struct counts *c = &r->c[j];
        if (c->news != 1 || c->dups != NTHREADS - 1 || c->fulls != 0) {
            if (bad++ < 5) {
                cr_log_error("round %zu key %zu: %u new, %u duplicate, %u full", j / r->nkeys,
                             j % r->nkeys, c->news, c->dups, c->fulls);
            }
        }
    }
    cr_assert_eq(bad, 0, "%zu keys without exactly one NEW", bad);
    free(r->c);
}

Test(dedup, concurrent_one_new_per_key)
{
    struct race r = {.nkeys = 20000, .rounds = 1, .rotate = false};
    /* Not at the brim: a call may get FULL while another takes the last slot for the same key
     * (concurrent_full covers the brim). */
    r.d = dedup_new(r.nkeys + NTHREADS, W);
    race_run(&r);
    struct dedup_stats st;
    dedup_stats(r.d, &st);
    cr_assert_eq(st.used_current, r.nkeys);
    cr_assert_eq(st.rotations, 0);
    dedup_free(r.d);
}

Test(dedup, concurrent_one_new_per_key_across_rotations)
{
    struct race r = {.nkeys = 512, .rounds = 100, .rotate = true};
    /* A transition call claims in both generations: room for a round in each. */
    r.d = dedup_new(2 * r.nkeys, W);
    race_run(&r);
    struct dedup_stats st;
    dedup_stats(r.d, &st);
    /* One rotation per round at least (into its second window); two when the round's first
     * call is in its first window. */
    cr_assert(st.rotations >= r.rounds - 1 && st.rotations <= 2 * r.rounds - 1, "rotations %lu",
              (unsigned long)st.rotations);
    cr_assert_eq(st.full_results, 0);
    cr_log_info("rotations %lu, reader calls %lu", (unsigned long)st.rotations,
                (unsigned long)atomic_load(&r.reader_calls));
    dedup_free(r.d);
}

/* Threads overflowing one generation: exactly capacity keys get in, every refused key is
 * absent, and none is NEW twice. */
struct overflow {
    struct dedup *d;
    size_t per_thread;
    _Atomic uint8_t *result; /* per key: 1 + enum dedup_result */
};

struct overflow_worker {
    struct overflow *o;
    size_t id;
};

static void *overflow_worker(void *arg)
{
    struct overflow_worker *w = arg;
    struct overflow *o = w->o;
    for (size_t i = 0; i < o->per_thread; i++) {
        size_t key = w->id * o->per_thread + i;
        enum dedup_result res = ins(o->d, 200, key, 0);
        atomic_store(&o->result[key], (uint8_t)(1 + res));
    }
    return NULL;
}

Test(dedup, concurrent_full)
{
    struct overflow o = {.per_thread = 3000};
    const size_t nthreads = 4, capacity = 5000, total = nthreads * o.per_thread;
    o.d = dedup_new(capacity, W);
    o.result = calloc(total, sizeof(*o.result));
    pthread_t th[4];
    struct overflow_worker w[4];
    for (size_t t = 0; t < nthreads; t++) {
        w[t] = (struct overflow_worker){.o = &o, .id = t};
        cr_assert_eq(pthread_create(&th[t], NULL, overflow_worker, &w[t]), 0);
    }
    for (size_t t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
    }
    size_t news = 0, fulls = 0;
    for (size_t key = 0; key < total; key++) {
        int res = atomic_load(&o.result[key]) - 1;
        cr_assert(res == DEDUP_NEW || res == DEDUP_FULL, "key %zu: %d", key, res);
        if (res == DEDUP_NEW) {
            news++;
            cr_assert(has(o.d, 200, key, 0));
        } else {
            fulls++;
            cr_assert(!has(o.d, 200, key, 0), "refused key %zu is present", key);
        }
    }
    cr_assert_eq(news, capacity);
    cr_assert_eq(fulls, total - capacity);
    struct dedup_stats st;
    dedup_stats(o.d, &st);
    cr_assert_eq(st.used_current, capacity);
    cr_assert_eq(st.full_results, total - capacity);
    free(o.result);
    dedup_free(o.d);
}

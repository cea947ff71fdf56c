/* test_dtab.c: the paged pointer table serve keeps its deliveries in. Every pointer set is got
 * back until cleared; pages and directories go once empty, so that the table's memory follows
 * what it holds, not the range of indexes; walks either way find exactly what a reference holds,
 * skip empty ranges cheaply and stop where their budget ends. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "dtab.h"

TestSuite(dtab);

#define PAGE_BYTES sizeof(struct dtab_page)
#define DIR_BYTES sizeof(struct dtab_dir)
#define DIR_SPAN (1ull << (DTAB_DIR_BITS + DTAB_PAGE_BITS))

static int obj[8];

Test(dtab, set_get_clear_and_refusals)
{
    struct dtab t;
    dtab_init(&t);
    cr_assert_null(dtab_get(&t, 0));
    cr_assert_eq(dtab_bytes(&t), 0);
    cr_assert_eq(dtab_set(&t, 5, &obj[0]), 0);
    cr_assert_eq(dtab_get(&t, 5), &obj[0]);
    cr_assert_null(dtab_get(&t, 4));
    cr_assert_null(dtab_get(&t, 6));
    cr_assert_eq(dtab_set(&t, 5, &obj[1]), -EINVAL, "a taken slot is refused");
    cr_assert_eq(dtab_get(&t, 5), &obj[0], "and keeps what it had");
    cr_assert_eq(dtab_set(&t, 6, NULL), -EINVAL);
    cr_assert_eq(dtab_set(&t, DTAB_LIMIT, &obj[1]), -EINVAL);
    cr_assert_null(dtab_get(&t, DTAB_LIMIT));
    cr_assert_eq(dtab_set(&t, DTAB_LIMIT - 1, &obj[2]), 0, "the last index is usable");
    cr_assert_eq(dtab_get(&t, DTAB_LIMIT - 1), &obj[2]);
    cr_assert_eq(t.n, 2);
    dtab_clear(&t, 5);
    dtab_clear(&t, 5); /* twice: nothing */
    dtab_clear(&t, 7); /* never set: nothing */
    dtab_clear(&t, DTAB_LIMIT + 9);
    cr_assert_null(dtab_get(&t, 5));
    cr_assert_eq(t.n, 1);
    cr_assert_eq(dtab_set(&t, 5, &obj[3]), 0, "a cleared slot takes a pointer again");
    cr_assert_eq(dtab_get(&t, 5), &obj[3]);
    dtab_free(&t);
    cr_assert_eq(t.n, 0);
    cr_assert_null(dtab_get(&t, 5));
    cr_assert_eq(dtab_bytes(&t), 0);
}

Test(dtab, pages_and_directories_go_once_empty)
{
    struct dtab t;
    dtab_init(&t);
    /* one held at 0, and a stream after it, each cleared as the next comes (the deliveries
     * made, then forgotten, while one stays pending): a dense array would take 8 bytes each */
    cr_assert_eq(dtab_set(&t, 0, &obj[0]), 0);
    size_t most = 0;
    for (uint64_t i = 1; i <= 3 * DIR_SPAN / 2; i += 7) {
        cr_assert_eq(dtab_set(&t, i, &obj[1]), 0);
        size_t b = dtab_bytes(&t);
        most = b > most ? b : most;
        dtab_clear(&t, i);
    }
    cr_assert_eq(t.n, 1);
    cr_assert_eq(t.pages, 1, "only the page of index 0 is left");
    cr_assert_eq(t.dirs, 1);
    /* at most: index 0's page and directory, the stream's page (and, once past the first
     * directory, its own directory), and the top */
    cr_assert_leq(most, 2 * PAGE_BYTES + 2 * DIR_BYTES + 2 * sizeof(void *), "%zu bytes", most);
    cr_assert_eq(dtab_bytes(&t), PAGE_BYTES + DIR_BYTES + 2 * sizeof(void *));
    dtab_clear(&t, 0);
    cr_assert_eq(t.pages, 0);
    cr_assert_eq(t.dirs, 0);
    dtab_free(&t);
}

Test(dtab, a_walk_over_an_empty_range_skips_it)
{
    struct dtab t;
    dtab_init(&t);
    uint64_t far = DTAB_LIMIT - 3;
    cr_assert_eq(dtab_set(&t, 1, &obj[0]), 0);
    cr_assert_eq(dtab_set(&t, far, &obj[1]), 0);
    uint64_t i = 2;
    size_t budget = SIZE_MAX;
    cr_assert_eq(dtab_next(&t, &i, DTAB_LIMIT, &budget), &obj[1]);
    cr_assert_eq(i, far);
    /* the directories between (2^16 of them at most), and the pages and slots of the two ends */
    size_t used = SIZE_MAX - budget;
    cr_assert_leq(used,
                  (1u << DTAB_TOP_BITS) + 2 * (1u << DTAB_DIR_BITS) + 2 * (1u << DTAB_PAGE_BITS),
                  "%zu steps", used);
    budget = SIZE_MAX;
    cr_assert_eq(dtab_prev(&t, &i, 0, &budget), &obj[0]);
    cr_assert_eq(i, 1);
    used = SIZE_MAX - budget;
    cr_assert_leq(used,
                  (1u << DTAB_TOP_BITS) + 2 * (1u << DTAB_DIR_BITS) + 2 * (1u << DTAB_PAGE_BITS),
                  "%zu steps", used);
    dtab_free(&t);
}

/* ---- against a reference ------------------------------------------------------------------ */

#define REF_MAX 4096

static uint64_t ref_idx[REF_MAX]; /* sorted */
static size_t nref;

static size_t ref_find(uint64_t i) /* first position with ref_idx >= i */
{
    size_t lo = 0, hi = nref;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ref_idx[mid] < i) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static bool ref_has(uint64_t i)
{
    size_t k = ref_find(i);
    return k < nref && ref_idx[k] == i;
}

/* ref_any tells whether the reference holds an index in [a, b) */
static bool ref_any(uint64_t a, uint64_t b)
{
    size_t k = ref_find(a);
    return k < nref && ref_idx[k] < b;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* an index in clusters: most within a few pages of each other, some far off */
static uint64_t pick(void)
{
    static const uint64_t centres[] = {
        0, 5000, 1ull << 24, (1ull << 24) + 4096, 3ull << 30, DTAB_LIMIT - 10000};
    uint64_t c = centres[rnd() % (sizeof(centres) / sizeof(centres[0]))];
    uint64_t i = c + rnd() % 9000;
    return i >= DTAB_LIMIT ? DTAB_LIMIT - 1 - rnd() % 100 : i;
}

static void *ptr_of(uint64_t i) /* what index i holds: derived from i */
{
    return (char *)obj + (i % 7) + 1;
}

static void check_walks(const struct dtab *t)
{
    uint64_t from = rnd() % 2 ? pick() : rnd() % DTAB_LIMIT;
    uint64_t end = from + rnd() % (rnd() % 2 ? 20000 : DTAB_LIMIT);
    size_t budget0 = rnd() % 3 == 0 ? (size_t)(rnd() % 5000) : SIZE_MAX;

    uint64_t i = from;
    size_t budget = budget0;
    void *p = dtab_next(t, &i, end, &budget);
    uint64_t lim = end > DTAB_LIMIT ? DTAB_LIMIT : end;
    if (p) {
        cr_assert(i >= from && i < lim, "next: %llu outside [%llu, %llu)", (unsigned long long)i,
                  (unsigned long long)from, (unsigned long long)lim);
        cr_assert(ref_has(i) && p == ptr_of(i), "next: %llu is not held", (unsigned long long)i);
        cr_assert(!ref_any(from, i), "next skipped a pointer");
    } else if (i == lim || (from >= lim && i == end)) {
        cr_assert(!ref_any(from, lim), "next missed a pointer in [%llu, %llu)",
                  (unsigned long long)from, (unsigned long long)lim);
    } else {
        cr_assert_eq(budget, 0, "next stopped early with budget left");
        cr_assert(i >= from && i < lim);
        cr_assert(!ref_any(from, i), "next stopped after a pointer");
    }

    uint64_t top = from, begin = from > 30000 && rnd() % 2 ? from - rnd() % 30000 : 0;
    if (rnd() % 4 == 0) {
        begin = rnd() % (from + 1);
    }
    i = top;
    budget = budget0;
    p = dtab_prev(t, &i, begin, &budget);
    if (p) {
        cr_assert(i >= begin && i < top);
        cr_assert(ref_has(i) && p == ptr_of(i), "prev: %llu is not held", (unsigned long long)i);
        cr_assert(!ref_any(i + 1, top), "prev skipped a pointer");
    } else if (i == begin) {
        cr_assert(!ref_any(begin, top), "prev missed a pointer in [%llu, %llu)",
                  (unsigned long long)begin, (unsigned long long)top);
    } else {
        cr_assert_eq(budget, 0, "prev stopped early with budget left");
        cr_assert(i > begin && i <= top);
        cr_assert(!ref_any(i, top), "prev stopped below a pointer");
    }
}

Test(dtab, random_sets_clears_and_walks_match_a_reference)
{
    struct dtab t;
    dtab_init(&t);
    nref = 0;
    for (int step = 0; step < 40000; step++) {
        uint64_t i = pick();
        if (rnd() % 3 && nref < REF_MAX && !ref_has(i)) {
            cr_assert_eq(dtab_set(&t, i, ptr_of(i)), 0);
            size_t k = ref_find(i);
            memmove(ref_idx + k + 1, ref_idx + k, (nref - k) * sizeof(*ref_idx));
            ref_idx[k] = i;
            nref++;
        } else if (nref) {
            size_t k = rnd() % nref;
            uint64_t j = rnd() % 4 ? ref_idx[k] : i; /* sometimes an empty one */
            bool had = ref_has(j);
            dtab_clear(&t, j);
            if (had) {
                k = ref_find(j);
                memmove(ref_idx + k, ref_idx + k + 1, (nref - k - 1) * sizeof(*ref_idx));
                nref--;
            }
        }
        cr_assert_eq(t.n, nref);
        uint64_t probe = rnd() % 2 && nref ? ref_idx[rnd() % nref] : pick();
        cr_assert_eq(dtab_get(&t, probe), ref_has(probe) ? ptr_of(probe) : NULL);
        if (step % 40 == 0) {
            check_walks(&t);
        }
    }
    /* a whole walk finds each exactly once, in order */
    uint64_t i = 0;
    size_t budget = SIZE_MAX, k = 0;
    while (dtab_next(&t, &i, DTAB_LIMIT, &budget)) {
        cr_assert_lt(k, nref);
        cr_assert_eq(i, ref_idx[k]);
        k++;
        i++;
    }
    cr_assert_eq(k, nref);
    /* and emptied, nothing is left allocated but the top */
    for (k = 0; k < nref; k++) {
        dtab_clear(&t, ref_idx[k]);
    }
    cr_assert_eq(t.pages, 0);
    cr_assert_eq(t.dirs, 0);
    cr_assert_eq(dtab_bytes(&t), t.ntop * sizeof(void *));
    dtab_free(&t);
}

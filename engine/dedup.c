/* dedup.c: the lock-free dedup table (see dedup.h for the contract).
 *
 * Layout. Three tables of 2^n 16-byte slots, open addressing with linear probing. Generation g
 * (a counter bumped by each rotation) lives in table g % 3; the previous generation, g - 1, in
 * table (g + 2) % 3; the third table is the spare, already zeroed, that generation g + 1 will
 * use. A generation records the window it stands for; the previous one counts only when its
 * window is exactly one before the current one (after an idle gap it has expired whole).
 *
 * A slot is two 64-bit words, the key's halves: w0 == 0 means empty, w1 == 0 means claimed but
 * the second half is not yet written (key halves equal to 0 are folded onto constants, so these
 * values are free). A slot goes empty -> claimed -> full and never back while its table is live:
 *
 *   claim:   CAS w0 from 0 to k0; then store w1 = k1.
 *   compare: load w0; 0 ends the probe (k is absent); k0 means the slot may hold k: wait until
 *            w1 is non-zero and compare it (only a same-k0 call ever waits, and only for the
 *            claimer's next instruction); anything else: next slot.
 *
 * Every slot access is relaxed. No other data travels with a slot, and every decision rests on
 * one word's own modification order: two calls claiming for k0 are ordered by the CAS on w0,
 * the loser then waits for w1, which its one writer sets once. Ordering between different
 * words (tables, generations) comes from the pins and the generation word below, not from the
 * slots.
 *
 * Capacity. Each table counts its claimed slots in `used`, reserved with a CAS before a slot is
 * claimed and handed back if the key turns out to be there already. An insert that cannot
 * reserve gets DEDUP_FULL before it has written anything, so FULL leaves no trace; and since
 * used never exceeds hard_limit < slots, every probe meets an empty slot and ends.
 *
 * Pins and rotation. A call pins the generation it works in (a per-thread-stripe counter for
 * g % 3, then a re-check that g is still current) and unpins when done. Rotating to a newer
 * window (one thread at a time, under `rotating`):
 *
 *   1. the spare becomes generation g + 1 and is published (gen = g + 1); new calls use it;
 *   2. wait until no call is pinned in g (a pin is held for one insert: a few probes);
 *   3. drained = g + 1: the calls of g + 1 now know nobody works in g any more;
 *   4. zero table (g + 2) % 3, the expired g - 1: only calls of g - 1 and g touched it, and
 *      both are gone. It is the spare for the next rotation.
 *
 * So calls in flight span at most two generations, g and g + 1, and a table is only zeroed
 * when nobody can be looking at it.
 *
 * Exactly one NEW across a rotation. A call in generation h claims k in table h, so calls in
 * the same generation are ordered by the CAS on one slot. Between steps 1 and 3 calls of g (in
 * table g) and of g + 1 (in table g + 1) could both miss the other's claim. So until it sees
 * drained >= h, a call of h whose previous generation is live ("transition" mode) claims k in
 * the previous table first, where the calls of h - 1 claim it, and then in its own table for
 * retention; it is NEW only if both claims are its own. Cases for one key k:
 *   - two calls of h - 1, or two of h, or one of each: they meet in one table's slot for k,
 *     where exactly one CAS wins; a transition call that wins in h - 1 and then finds k in h
 *     lost to a steady call of h, which got NEW (a transition call of h cannot hold k in h
 *     without having won h - 1);
 *   - a steady call of h (it loaded drained >= h with acquire, pairing with step 3's release)
 *     reads table h - 1 only: every claim made there by a call of h - 1 happens before its unpin,
 *     which step 2 read, so the steady call sees it. Transition calls of h may still claim in
 *     h - 1, but they then claim in h too, and the case above applies.
 * A transition call reserves room in both tables before claiming either, so it can never win
 * h - 1 and then be refused by h. The reservation in the previous table is against
 * hard_limit (7/8 of the slots), above the 3/4 steady limit, so it practically never fails.
 *
 * Time. A call whose window is newer than the current generation's rotates first, so no call
 * ever works in a generation older than its own window; an older window is served by the
 * current generation (a late call's key is kept longer, never shorter). A key claimed in
 * generation h, window w, stays in table h until the rotation that makes h + 2 current, and
 * window(h + 2) >= w + 2: a duplicate for every call in window w or w + 1. */
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/sha.h>

#include "common.h"
#include "dedup.h"

#define CACHELINE 64
#define HUGE_PAGE (2u << 20) /* x86-64's transparent huge page */
#define STRIPES 64           /* pin counters: threads map onto these round-robin */
#define SPINS 128            /* pause instructions before a wait falls back to sched_yield() */
#define MIN_SLOTS 16         /* so that hard_limit < slots for the smallest table */
#define MAX_CAPACITY (1ULL << 40)

/* What a zero key half becomes (the golden ratio's and pi's first 64 bits). */
#define K0_FOR_ZERO 0x9e3779b97f4a7c15ULL
#define K1_FOR_ZERO 0x243f6a8885a308d3ULL

struct dedup_slot {
    _Atomic uint64_t w0; /* key half 0; 0: empty */
    _Atomic uint64_t w1; /* key half 1; 0: claimed, not yet published */
};

struct dedup_table {
    struct dedup_slot *slots;
    _Atomic uint64_t window; /* the window the generation in this table stands for */
    /* Claimed or reserved slots; written by every NEW insert, so on a line of its own. */
    _Alignas(CACHELINE) _Atomic size_t used;
    char pad[CACHELINE - sizeof(size_t)];
};

struct dedup_pin {
    /* Calls in flight in generations = 0, 1, 2 (mod 3) from the threads of one stripe. */
    _Alignas(CACHELINE) _Atomic uint32_t count[3];
};

struct dedup {
    size_t slots;      /* per table, a power of two */
    size_t mask;       /* slots - 1 */
    size_t capacity;   /* steady reservation limit of a generation */
    size_t hard_limit; /* transition reservation limit of the previous generation */
    uint64_t window_ms;
    uint64_t seed0, seed1; /* per-table secret for slot placement */
    struct dedup_slot *mem;
    struct dedup_table tab[3];
    bool solo; /* dedup_set_single_writer: one thread only; no pins, no locked instructions */

    /* Read by every call, written once per rotation. */
    _Alignas(CACHELINE) _Atomic uint64_t gen; /* current generation */
    _Atomic uint64_t drained;                 /* highest h with no call left in h - 1 */

    _Alignas(CACHELINE) _Atomic bool rotating; /* one rotation at a time */
    _Atomic uint64_t rotations;
    _Atomic uint64_t full_results;

    struct dedup_pin pins[STRIPES];
};

/* A key as the table sees it: halves folded off zero, and its home slot. */
struct dkey {
    uint64_t k0, k1;
    size_t home;
};

/* --- helpers -------------------------------------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline void backoff(unsigned *spins)
{
    if (*spins < SPINS) {
        (*spins)++;
        cpu_relax();
    } else {
        sched_yield();
    }
}

/* murmur3's 64-bit finaliser */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static void key_load(const struct dedup *d, struct dkey *k, const uint8_t key[DEDUP_KEY_LEN])
{
    memcpy(&k->k0, key, 8);
    memcpy(&k->k1, key + 8, 8);
    if (k->k0 == 0) {
        k->k0 = K0_FOR_ZERO;
    }
    if (k->k1 == 0) {
        k->k1 = K1_FOR_ZERO;
    }
    /* The key is already a hash, but one a client can grind: the secret seed keeps it from
     * choosing keys that all land in one probe run. */
    k->home = mix64((k->k0 ^ d->seed0) * 0x9e3779b97f4a7c15ULL ^ (k->k1 ^ d->seed1)) & d->mask;
}

/* The thread's pin stripe, handed out round-robin on first use. */
static _Thread_local unsigned thread_stripe;
static _Atomic unsigned next_stripe;

static struct dedup_pin *my_pin(struct dedup *d)
{
    if (thread_stripe == 0) {
        thread_stripe =
            atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) % STRIPES + 1;
    }
    return &d->pins[thread_stripe - 1];
}

/* pin_enter pins the current generation and returns it; *count is what pin_leave drops. Until
 * then no rotation gets past step 2 for it, so tables g % 3 and (g + 2) % 3 stay as they are. */
static uint64_t pin_enter(struct dedup *d, _Atomic uint32_t **count)
{
    if (d->solo) { /* nobody else rotates */
        *count = NULL;
        return atomic_load_explicit(&d->gen, memory_order_relaxed);
    }
    struct dedup_pin *p = my_pin(d);
    for (;;) {
        uint64_t g = atomic_load_explicit(&d->gen, memory_order_relaxed);
        _Atomic uint32_t *c = &p->count[g % 3];
        /* seq_cst, with the re-check below and with rotate()'s store of gen and its reads of
         * the counts (a store-then-load on each side): either the re-check sees the new
         * generation, or the rotation's drain sees this pin. */
        atomic_fetch_add_explicit(c, 1, memory_order_seq_cst);
        /* Also acquire: the published generation's table and window are visible from here. */
        if (atomic_load_explicit(&d->gen, memory_order_seq_cst) == g) {
            *count = c;
            return g;
        }
        atomic_fetch_sub_explicit(c, 1, memory_order_seq_cst);
    }
}

static void pin_leave(_Atomic uint32_t *count)
{
    if (!count) {
        return; /* solo */
    }
    /* seq_cst (hence release): the drain that reads this sees every slot this call wrote. */
    atomic_fetch_sub_explicit(count, 1, memory_order_seq_cst);
}

static inline struct dedup_table *table_of(struct dedup *d, uint64_t g)
{
    return &d->tab[g % 3];
}

static inline uint64_t table_window(const struct dedup_table *t)
{
    /* relaxed: written before the generation was published, read by pinned calls (and by
     * dedup_prefetch, unpinned, which only guesses from it) */
    return atomic_load_explicit(&t->window, memory_order_relaxed);
}

/* The previous generation's table if it still counts for generation g, else NULL. */
static struct dedup_table *table_prev(struct dedup *d, uint64_t g)
{
    if (g == 0) {
        return NULL;
    }
    struct dedup_table *prev = table_of(d, g + 2);
    return table_window(prev) + 1 == table_window(table_of(d, g)) ? prev : NULL;
}

/* --- one table ------------------------------------------------------------------------------ */

/* Half 1 of a claimed slot, once its claimer has published it (its very next store). */
static uint64_t slot_k1(struct dedup_slot *s)
{
    unsigned spins = 0;
    for (;;) {
        uint64_t w1 = atomic_load_explicit(&s->w1, memory_order_relaxed);
        if (w1 != 0) {
            return w1;
        }
        backoff(&spins);
    }
}

/* table_find reports whether k is in t; if not, *empty is the first empty slot of k's probe
 * run (slots only ever fill, so no slot before it can become free). */
static bool table_find(const struct dedup *d, struct dedup_table *t, const struct dkey *k,
                       size_t *empty)
{
    size_t i = k->home;
    for (size_t n = 0; n <= d->mask; n++, i = (i + 1) & d->mask) {
        struct dedup_slot *s = &t->slots[i];
        uint64_t w0 = atomic_load_explicit(&s->w0, memory_order_relaxed);
        if (w0 == 0) {
            *empty = i;
            return false;
        }
        if (w0 == k->k0 && slot_k1(s) == k->k1) {
            return true;
        }
    }
    /* Unreachable: used <= hard_limit < slots leaves an empty slot. */
    *empty = k->home;
    return false;
}

/* table_claim claims a slot for k from slot i on (table_find's empty slot); the caller holds a
 * reservation. Returns DEDUP_NEW, or DEDUP_DUPLICATE if another call claimed k meanwhile. */
static enum dedup_result table_claim(const struct dedup *d, struct dedup_table *t,
                                     const struct dkey *k, size_t i)
{
    for (size_t n = 0; n <= d->mask; n++, i = (i + 1) & d->mask) {
        struct dedup_slot *s = &t->slots[i];
        uint64_t w0 = atomic_load_explicit(&s->w0, memory_order_relaxed);
        /* relaxed: who owns the slot is decided by this word's modification order alone (solo:
         * no other writer, a plain store) */
        if (w0 == 0 &&
            (d->solo ? (atomic_store_explicit(&s->w0, k->k0, memory_order_relaxed), true)
                     : atomic_compare_exchange_strong_explicit(
                           &s->w0, &w0, k->k0, memory_order_relaxed, memory_order_relaxed))) {
            atomic_store_explicit(&s->w1, k->k1, memory_order_relaxed);
            return DEDUP_NEW;
        }
        if (w0 == k->k0 && slot_k1(s) == k->k1) {
            return DEDUP_DUPLICATE;
        }
    }
    return DEDUP_FULL; /* unreachable, as in table_find */
}

/* table_reserve takes one slot of t's budget if fewer than limit are taken. */
static bool table_reserve(const struct dedup *d, struct dedup_table *t, size_t limit)
{
    /* relaxed: a counter; the CAS alone makes the limit exact */
    size_t used = atomic_load_explicit(&t->used, memory_order_relaxed);
    if (d->solo) {
        if (used >= limit) {
            return false;
        }
        atomic_store_explicit(&t->used, used + 1, memory_order_relaxed);
        return true;
    }
    do {
        if (used >= limit) {
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(&t->used, &used, used + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

static void table_unreserve(struct dedup_table *t)
{
    atomic_fetch_sub_explicit(&t->used, 1, memory_order_relaxed);
}

/* --- rotation ------------------------------------------------------------------------------- */

/* rotate makes window w (newer than generation g's) current, or waits for the thread that is
 * already rotating to publish. The caller holds no pin, and retries its call afterwards. */
static void rotate(struct dedup *d, uint64_t g, uint64_t w)
{
    unsigned spins = 0;
    /* acquire/release: the rotation lock; it hands over the zeroed spare */
    if (atomic_exchange_explicit(&d->rotating, true, memory_order_acquire)) {
        while (atomic_load_explicit(&d->rotating, memory_order_relaxed) &&
               atomic_load_explicit(&d->gen, memory_order_relaxed) == g) {
            backoff(&spins);
        }
        return;
    }
    uint64_t cur = atomic_load_explicit(&d->gen, memory_order_relaxed); /* only we write it */
    if (w <= table_window(table_of(d, cur))) {
        atomic_store_explicit(&d->rotating, false, memory_order_release);
        return;
    }

    /* 1. Publish the spare (zeroed by the previous rotation, or by dedup_new) as cur + 1. */
    atomic_store_explicit(&table_of(d, cur + 1)->window, w, memory_order_relaxed);
    /* seq_cst: see pin_enter. Also release: the window above and the zeroed table. */
    atomic_store_explicit(&d->gen, cur + 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&d->rotations, 1, memory_order_relaxed);

    /* 2. Wait for the calls pinned in cur. New pins there fail their re-check and back out. */
    for (size_t s = 0; s < STRIPES; s++) {
        _Atomic uint32_t *c = &d->pins[s].count[cur % 3];
        spins = 0;
        /* seq_cst: see pin_enter. Also acquire: their slot writes happen before what follows. */
        while (atomic_load_explicit(c, memory_order_seq_cst) != 0) {
            backoff(&spins);
        }
    }

    /* 3. release: a call of cur + 1 that reads this sees every claim made in cur, and knows no
     * call of cur can still be claiming. */
    atomic_store_explicit(&d->drained, cur + 1, memory_order_release);

    /* 4. Zero the expired table (generation cur - 1). Nobody can reach it: calls of cur - 1
     * were drained by the previous rotation, calls of cur just now. A plain memset is fine for
     * the same reason; the next rotation's publish carries the zeroes to the calls that use it.
     * Skipped when nothing was claimed in it: an idle window costs nothing. */
    struct dedup_table *old = table_of(d, cur + 2);
    if (atomic_load_explicit(&old->used, memory_order_relaxed) != 0) {
        memset(old->slots, 0, d->slots * sizeof(*old->slots));
        atomic_store_explicit(&old->used, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&d->rotating, false, memory_order_release);
}

/* --- public --------------------------------------------------------------------------------- */

static void seed_table(struct dedup *d)
{
    uint64_t seed[2];
    if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        /* Early boot: placement only needs to be unpredictable to a remote client. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed[0] = mix64((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)d);
        seed[1] = mix64((uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts);
    }
    d->seed0 = seed[0];
    d->seed1 = seed[1];
}

struct dedup *dedup_new(size_t capacity, uint64_t window_ms)
{
    if (capacity == 0 || capacity > MAX_CAPACITY || window_ms == 0) {
        errno = EINVAL;
        return NULL;
    }
    /* The smallest power of two with capacity <= 3/4 of it. */
    size_t slots = MIN_SLOTS;
    while (slots / 4 * 3 < capacity) {
        slots <<= 1;
    }

    struct dedup *d = aligned_alloc(CACHELINE, sizeof(*d));
    if (d == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    memset(d, 0, sizeof(*d));
    size_t bytes = 3 * slots * sizeof(struct dedup_slot);
    /* In transparent huge pages where the kernel has them (a table of 2 MiB or more): every
     * probe lands on a random slot, and on 4 KiB pages each one costs a TLB miss as well as a
     * cache miss (table_find was 13% of serve's CPU under batched ingest into a 1M-key table).
     * Touched now, not on the first inserts: the memory is committed at creation. */
    size_t align = bytes >= HUGE_PAGE ? HUGE_PAGE : CACHELINE;
    bytes = (bytes + align - 1) / align * align;
    d->mem = aligned_alloc(align, bytes);
    if (d->mem == NULL) {
        free(d);
        errno = ENOMEM;
        return NULL;
    }
    if (align == HUGE_PAGE) {
        madvise(d->mem, bytes, MADV_HUGEPAGE); /* best effort: 4 KiB pages otherwise */
    }
    memset(d->mem, 0, bytes);

    d->slots = slots;
    d->mask = slots - 1;
    d->capacity = capacity;
    d->hard_limit = slots - slots / 8;
    d->window_ms = window_ms;
    seed_table(d);
    for (size_t i = 0; i < 3; i++) {
        d->tab[i].slots = d->mem + i * slots;
        atomic_init(&d->tab[i].window, 0);
        atomic_init(&d->tab[i].used, 0);
    }
    atomic_init(&d->gen, 0);
    atomic_init(&d->drained, 0);
    atomic_init(&d->rotating, false);
    atomic_init(&d->rotations, 0);
    atomic_init(&d->full_results, 0);
    for (size_t s = 0; s < STRIPES; s++) {
        for (size_t i = 0; i < 3; i++) {
            atomic_init(&d->pins[s].count[i], 0);
        }
    }
    return d;
}

void dedup_free(struct dedup *d)
{
    if (d == NULL) {
        return;
    }
    free(d->mem);
    free(d);
}

/* insert_pinned inserts k in generation g, where the caller is pinned. */
static enum dedup_result insert_pinned(struct dedup *d, uint64_t g, const struct dkey *k)
{
    struct dedup_table *cur = table_of(d, g);
    struct dedup_table *prev = table_prev(d, g);
    /* acquire: pairs with rotate()'s step 3; read before looking in prev, so that a steady
     * call sees every claim the calls of g - 1 made there. */
    bool transition = prev != NULL && atomic_load_explicit(&d->drained, memory_order_acquire) < g;
    size_t icur, iprev;
    enum dedup_result r;

    if (table_find(d, cur, k, &icur)) {
        return DEDUP_DUPLICATE;
    }
    if (prev != NULL && table_find(d, prev, k, &iprev)) {
        return DEDUP_DUPLICATE;
    }
    if (!table_reserve(d, cur, d->capacity)) {
        /* A call that took the last reservation for this very key may have claimed it since:
         * better a duplicate than a 503 for it. */
        return table_find(d, cur, k, &icur) ? DEDUP_DUPLICATE : DEDUP_FULL;
    }
    if (transition) {
        /* Claim where the calls of g - 1 claim, then here; NEW only if both are ours. */
        if (!table_reserve(d, prev, d->hard_limit)) {
            table_unreserve(cur);
            return DEDUP_FULL;
        }
        r = table_claim(d, prev, k, iprev);
        if (r != DEDUP_NEW) {
            table_unreserve(prev);
            table_unreserve(cur);
            return r;
        }
    }
    r = table_claim(d, cur, k, icur);
    if (r != DEDUP_NEW) {
        table_unreserve(cur);
    }
    return r;
}

enum dedup_result dedup_insert(struct dedup *d, const uint8_t key[DEDUP_KEY_LEN], uint64_t now_ms)
{
    struct dkey k;
    key_load(d, &k, key);
    uint64_t w = now_ms / d->window_ms;
    for (;;) {
        _Atomic uint32_t *pin;
        uint64_t g = pin_enter(d, &pin);
        if (w > table_window(table_of(d, g))) {
            pin_leave(pin);
            rotate(d, g, w);
            continue;
        }
        enum dedup_result r = insert_pinned(d, g, &k);
        pin_leave(pin);
        if (r == DEDUP_FULL) {
            atomic_fetch_add_explicit(&d->full_results, 1, memory_order_relaxed);
        }
        return r;
    }
}

void dedup_set_single_writer(struct dedup *d)
{
    d->solo = true;
}

void dedup_prefetch(struct dedup *d, const uint8_t key[DEDUP_KEY_LEN])
{
    struct dkey k;
    key_load(d, &k, key);
    /* No pin (two locked instructions, 1.5% of serve's CPU when this took one): the tables
     * are neither freed nor moved (a rotation clears one in place), so a slot's address is
     * always there to prefetch. A rotation meanwhile only makes a prefetch useless. */
    uint64_t g = atomic_load_explicit(&d->gen, memory_order_relaxed);
    struct dedup_table *prev = table_prev(d, g);
    __builtin_prefetch(&table_of(d, g)->slots[k.home]);
    if (prev) {
        __builtin_prefetch(&prev->slots[k.home]);
    }
}

bool dedup_contains(struct dedup *d, const uint8_t key[DEDUP_KEY_LEN], uint64_t now_ms)
{
    struct dkey k;
    key_load(d, &k, key);
    uint64_t w = now_ms / d->window_ms;
    _Atomic uint32_t *pin;
    uint64_t g = pin_enter(d, &pin);
    struct dedup_table *cur = table_of(d, g);
    struct dedup_table *prev = table_prev(d, g);
    uint64_t cw = table_window(cur);
    size_t unused;
    bool found = false;

    /* In window cw + 1 the current generation would be the previous one; later, nothing. */
    if (w <= cw + 1) {
        found = table_find(d, cur, &k, &unused);
        if (!found && w <= cw && prev != NULL) {
            found = table_find(d, prev, &k, &unused);
        }
    }
    pin_leave(pin);
    return found;
}

void dedup_stats(struct dedup *d, struct dedup_stats *out)
{
    _Atomic uint32_t *pin;
    uint64_t g = pin_enter(d, &pin);
    struct dedup_table *prev = table_prev(d, g);

    memset(out, 0, sizeof(*out));
    out->capacity = d->capacity;
    out->slots = d->slots;
    out->bytes = 3 * d->slots * sizeof(struct dedup_slot);
    out->window_ms = d->window_ms;
    out->window = table_window(table_of(d, g));
    out->used_current = atomic_load_explicit(&table_of(d, g)->used, memory_order_relaxed);
    if (prev != NULL) {
        out->used_previous = atomic_load_explicit(&prev->used, memory_order_relaxed);
    }
    out->rotations = atomic_load_explicit(&d->rotations, memory_order_relaxed);
    out->full_results = atomic_load_explicit(&d->full_results, memory_order_relaxed);
    pin_leave(pin);
}

void dedup_key(uint8_t out[DEDUP_KEY_LEN], const char *profile_name, const uint8_t *key,
               size_t key_len)
{
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;

    SHA256_Init(&ctx);
    SHA256_Update(&ctx, profile_name, strlen(profile_name) + 1);
    if (key_len != 0) {
        SHA256_Update(&ctx, key, key_len);
    }
    SHA256_Final(digest, &ctx);
    memcpy(out, digest, DEDUP_KEY_LEN);
}

/* dedup.c: insert rate of the lock-free dedup table against the same table behind a mutex.
 *
 *   build/bench/dedup [--json] [--capacity N] [--ops N]
 *
 * Both tables get capacity N (default 3M keys: 4M slots per generation), are filled to 50% of
 * their slots, then timed on the same stream of ops (default 1M, so that the load ends near
 * 62%): half new keys, half duplicates of keys from the fill, shuffled. With two threads each takes
 * half the stream. Every cell is the best of 5 runs, each on a freshly built and filled table, the
 * runs of all cells taken in turn so that a noisy neighbour slows them alike. Each run also checks
 * its counts of NEW and DUPLICATE.
 *
 * The reference is what one would write first: the same two-generation open-addressing table
 * (same slots, placement and 75% cap) with plain 64-bit words and one pthread mutex around
 * each insert. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "dedup.h"

#define ROUNDS 5
#define MAX_THREADS 2
#define WINDOW_MS 60000
#define NOW_MS 1000 /* every op in one window: the bench measures inserts, not rotation */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

struct key {
    uint8_t b[DEDUP_KEY_LEN];
};

static void key_random(struct key *k, uint64_t *rng)
{
    uint64_t h[2] = {splitmix64(rng), splitmix64(rng)};
    memcpy(k->b, h, sizeof(h));
}

/* --- the reference: the same table under one mutex ------------------------------------------ */

struct ref_slot {
    uint64_t k0, k1; /* k0 == 0: empty */
};

struct ref {
    pthread_mutex_t lock;
    struct ref_slot *gen[2]; /* gen[cur] current, gen[!cur] previous */
    size_t used[2];
    uint64_t window[2];
    int cur;
    size_t slots, mask, capacity;
    uint64_t window_ms, seed0, seed1;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static struct ref *ref_new(size_t capacity, uint64_t window_ms)
{
    struct ref *t = calloc(1, sizeof(*t));
    size_t slots = 16;
    while (slots / 4 * 3 < capacity) {
        slots <<= 1;
    }
    t->slots = slots;
    t->mask = slots - 1;
    t->capacity = capacity;
    t->window_ms = window_ms;
    t->seed0 = 0x0123456789abcdefULL;
    t->seed1 = 0xfedcba9876543210ULL;
    pthread_mutex_init(&t->lock, NULL);
    for (int g = 0; g < 2; g++) {
        t->gen[g] = aligned_alloc(64, slots * sizeof(struct ref_slot));
        if (t->gen[g] == NULL) {
            fprintf(stderr, "dedup: out of memory\n");
            exit(1);
        }
        memset(t->gen[g], 0, slots * sizeof(struct ref_slot));
    }
    return t;
}

static void ref_free(struct ref *t)
{
    free(t->gen[0]);
    free(t->gen[1]);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Finds k0/k1 in s; if absent, *empty is where it would go. */
static bool ref_find(const struct ref *t, const struct ref_slot *s, uint64_t k0, uint64_t k1,
                     size_t home, size_t *empty)
{
    for (size_t i = home;; i = (i + 1) & t->mask) {
        if (s[i].k0 == 0) {
            *empty = i;
            return false;
        }
        if (s[i].k0 == k0 && s[i].k1 == k1) {
            return true;
        }
    }
}

static enum dedup_result ref_insert(struct ref *t, const uint8_t key[DEDUP_KEY_LEN],
                                    uint64_t now_ms)
{
    uint64_t k0, k1, w = now_ms / t->window_ms;
    memcpy(&k0, key, 8);
    memcpy(&k1, key + 8, 8);
    k0 = k0 ? k0 : 0x9e3779b97f4a7c15ULL;
    size_t home = mix64((k0 ^ t->seed0) * 0x9e3779b97f4a7c15ULL ^ (k1 ^ t->seed1)) & t->mask;
    enum dedup_result r = DEDUP_DUPLICATE;
    size_t at, unused;

    pthread_mutex_lock(&t->lock);
    if (w > t->window[t->cur]) {
        int old = !t->cur;
        bool adjacent = w == t->window[t->cur] + 1;
        memset(t->gen[old], 0, t->slots * sizeof(struct ref_slot));
        t->used[old] = 0;
        t->window[old] = w;
        t->cur = old;
        if (!adjacent) {
            memset(t->gen[!old], 0, t->slots * sizeof(struct ref_slot));
            t->used[!old] = 0;
        }
    }
    struct ref_slot *cur = t->gen[t->cur], *prev = t->gen[!t->cur];
    if (!ref_find(t, cur, k0, k1, home, &at) && !ref_find(t, prev, k0, k1, home, &unused)) {
        if (t->used[t->cur] >= t->capacity) {
            r = DEDUP_FULL;
        } else {
            cur[at] = (struct ref_slot){k0, k1};
            t->used[t->cur]++;
            r = DEDUP_NEW;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* --- runs ----------------------------------------------------------------------------------- */

enum impl { IMPL_LOCKFREE, IMPL_MUTEX, NIMPLS };
static const char *const impl_names[NIMPLS] = {"lock-free", "mutex"};

struct run {
    enum impl impl;
    struct dedup *d;
    struct ref *ref;
    pthread_barrier_t start;
};

struct worker {
    struct run *run;
    const struct key *ops;
    size_t n;
    size_t counts[3]; /* per enum dedup_result */
};

static enum dedup_result do_insert(struct run *r, const struct key *k)
{
    if (r->impl == IMPL_LOCKFREE) {
        return dedup_insert(r->d, k->b, NOW_MS);
    }
    return ref_insert(r->ref, k->b, NOW_MS);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(&w->run->start);
    for (size_t i = 0; i < w->n; i++) {
        w->counts[do_insert(w->run, &w->ops[i])]++;
    }
    return NULL;
}

/* The workload, shared by every run. */
static struct key *fill;   /* keys inserted before timing */
static struct key *stream; /* the timed ops */
static size_t nfill, nops, nnew;

/* run_once builds a table, fills it, and times nthreads threads over the stream; returns
 * inserts per second. Exits if the counts are not what the stream implies. */
static double run_once(enum impl impl, size_t capacity, size_t nthreads)
{
    struct run r = {.impl = impl};
    if (impl == IMPL_LOCKFREE) {
        r.d = dedup_new(capacity, WINDOW_MS);
        if (r.d == NULL) {
            perror("dedup_new");
            exit(1);
        }
    } else {
        r.ref = ref_new(capacity, WINDOW_MS);
    }
    for (size_t i = 0; i < nfill; i++) {
        do_insert(&r, &fill[i]);
    }

    pthread_t th[MAX_THREADS];
    struct worker w[MAX_THREADS];
    pthread_barrier_init(&r.start, NULL, (unsigned)nthreads + 1);
    for (size_t t = 0; t < nthreads; t++) {
        size_t lo = nops * t / nthreads, hi = nops * (t + 1) / nthreads;
        w[t] = (struct worker){.run = &r, .ops = stream + lo, .n = hi - lo};
        if (pthread_create(&th[t], NULL, worker_main, &w[t]) != 0) {
            fprintf(stderr, "dedup: pthread_create failed\n");
            exit(1);
        }
    }
    pthread_barrier_wait(&r.start);
    double t0 = now_s();
    size_t counts[3] = {0};
    for (size_t t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
        for (int c = 0; c < 3; c++) {
            counts[c] += w[t].counts[c];
        }
    }
    double elapsed = now_s() - t0;
    pthread_barrier_destroy(&r.start);

    if (counts[DEDUP_NEW] != nnew || counts[DEDUP_DUPLICATE] != nops - nnew) {
        fprintf(stderr,
                "dedup: %s with %zu threads: %zu new, %zu duplicate, %zu full; want %zu new\n",
                impl_names[impl], nthreads, counts[DEDUP_NEW], counts[DEDUP_DUPLICATE],
                counts[DEDUP_FULL], nnew);
        exit(1);
    }
    dedup_free(r.d);
    if (r.ref != NULL) {
        ref_free(r.ref);
    }
    return (double)nops / elapsed;
}

static void usage(void)
{
    fprintf(stderr, "usage: dedup [--json] [--capacity N] [--ops N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bool json = false;
    size_t capacity = 3000000;
    nops = 1000000;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--capacity") == 0 && i + 1 < argc) {
            capacity = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc) {
            nops = strtoull(argv[++i], NULL, 10);
        } else {
            usage();
        }
    }
    size_t slots = 16;
    while (slots / 4 * 3 < capacity) {
        slots <<= 1;
    }
    nfill = slots / 2;
    nnew = nops / 2;
    if (nops < 1000 || nfill + nnew > capacity) {
        fprintf(stderr,
                "dedup: capacity %zu gets %zu slots; half of them filled plus %zu new keys "
                "need a capacity of %zu (and --ops >= 1000)\n",
                capacity, slots, nnew, nfill + nnew);
        return 2;
    }

    /* The fill, then the stream: nnew fresh keys and nops - nnew repeats of fill keys,
     * shuffled. */
    uint64_t rng = 42;
    fill = malloc(nfill * sizeof(*fill));
    stream = malloc(nops * sizeof(*stream));
    if (fill == NULL || stream == NULL) {
        fprintf(stderr, "dedup: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nfill; i++) {
        key_random(&fill[i], &rng);
    }
    for (size_t i = 0; i < nops; i++) {
        if (i < nnew) {
            key_random(&stream[i], &rng);
        } else {
            stream[i] = fill[splitmix64(&rng) % nfill];
        }
    }
    for (size_t i = nops - 1; i > 0; i--) {
        size_t j = splitmix64(&rng) % (i + 1);
        struct key tmp = stream[i];
        stream[i] = stream[j];
        stream[j] = tmp;
    }

    double rate[MAX_THREADS][NIMPLS] = {{0}};
    for (int round = 0; round < ROUNDS; round++) {
        for (size_t t = 0; t < MAX_THREADS; t++) {
            for (int impl = 0; impl < NIMPLS; impl++) {
                double v = run_once((enum impl)impl, capacity, t + 1);
                rate[t][impl] = v > rate[t][impl] ? v : rate[t][impl];
            }
        }
    }

    if (json) {
        printf("{\"capacity\":%zu,\"slots\":%zu,\"fill\":%zu,\"ops\":%zu,\"duplicates\":%zu,"
               "\"rounds\":%d,\"results\":[",
               capacity, slots, nfill, nops, nops - nnew, ROUNDS);
        for (size_t t = 0; t < MAX_THREADS; t++) {
            printf("%s{\"threads\":%zu,\"lockfree_mops\":%.3f,\"mutex_mops\":%.3f,\"ratio\":%.3f}",
                   t ? "," : "", t + 1, rate[t][IMPL_LOCKFREE] / 1e6, rate[t][IMPL_MUTEX] / 1e6,
                   rate[t][IMPL_LOCKFREE] / rate[t][IMPL_MUTEX]);
        }
        printf("]}\n");
    } else {
        printf("dedup: capacity %zu keys (%zu slots per generation), filled to 50%% of the slots;"
               "\n%zu inserts per run, %zu%% duplicates; best of %d\n\n",
               capacity, slots, nops, (nops - nnew) * 100 / nops, ROUNDS);
        printf("%7s %17s %14s %7s\n", "threads", "lock-free Mops/s", "mutex Mops/s", "ratio");
        for (size_t t = 0; t < MAX_THREADS; t++) {
            printf("%7zu %17.2f %14.2f %6.2fx\n", t + 1, rate[t][IMPL_LOCKFREE] / 1e6,
                   rate[t][IMPL_MUTEX] / 1e6, rate[t][IMPL_LOCKFREE] / rate[t][IMPL_MUTEX]);
        }
    }
    free(fill);
    free(stream);
    return 0;
}

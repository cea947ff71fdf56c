/* heap_ref.h: the reference the timer wheel is measured against: a straightforward binary
 * min-heap of embedded timers, what a C programmer writes when a timer must be cancellable.
 *
 * The array holds each timer's key next to its pointer (a compare never leaves the array), and
 * every timer knows its position (a back-pointer updated on each move) so that cancel is
 * O(log n) rather than a search. The array is sized once (heap_ref_init) and touched there, as
 * the wheel is, so that no measurement pays for page faults. Bench only: header-only, static. */
#ifndef HOOKRING_BENCH_HEAP_REF_H
#define HOOKRING_BENCH_HEAP_REF_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct heap_ref;
struct heap_ref_timer;

typedef void heap_ref_cb(struct heap_ref *h, struct heap_ref_timer *t);

struct heap_ref_timer {
    uint64_t expire_at;
    heap_ref_cb *cb;
    uint32_t pos; /* index in the array + 1; 0 when not pending */
};

struct heap_ref_entry {
    uint64_t expire_at;
    struct heap_ref_timer *t;
};

struct heap_ref {
    struct heap_ref_entry *a;
    uint32_t n;
    uint32_t cap;
    uint64_t now;
};

/* heap_ref_init sizes the heap for cap timers. Returns 0 or -ENOMEM. */
static inline int heap_ref_init(struct heap_ref *h, uint32_t cap, uint64_t now)
{
    h->a = malloc((size_t)cap * sizeof(*h->a));
    if (!h->a) {
        return -ENOMEM;
    }
    memset(h->a, 0, (size_t)cap * sizeof(*h->a));
    h->n = 0;
    h->cap = cap;
    h->now = now;
    return 0;
}

/* heap_ref_cleanup frees the array; pending timers are forgotten, not fired. */
static inline void heap_ref_cleanup(struct heap_ref *h)
{
    for (uint32_t i = 0; i < h->n; i++) {
        h->a[i].t->pos = 0;
    }
    free(h->a);
    h->a = NULL;
    h->n = 0;
}

static inline void heap_ref_timer_init(struct heap_ref_timer *t, heap_ref_cb *cb)
{
    t->expire_at = 0;
    t->cb = cb;
    t->pos = 0;
}

static inline void heap_ref_place(struct heap_ref *h, uint32_t i, struct heap_ref_entry e)
{
    h->a[i] = e;
    e.t->pos = i + 1;
}

static inline void heap_ref_up(struct heap_ref *h, uint32_t i)
{
    struct heap_ref_entry e = h->a[i];

    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (h->a[parent].expire_at <= e.expire_at) {
            break;
        }
        heap_ref_place(h, i, h->a[parent]);
        i = parent;
    }
    heap_ref_place(h, i, e);
}

static inline void heap_ref_down(struct heap_ref *h, uint32_t i)
{
    struct heap_ref_entry e = h->a[i];

    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= h->n) {
            break;
        }
        if (child + 1 < h->n && h->a[child + 1].expire_at < h->a[child].expire_at) {
            child++;
        }
        if (h->a[child].expire_at >= e.expire_at) {
            break;
        }
        heap_ref_place(h, i, h->a[child]);
        i = child;
    }
    heap_ref_place(h, i, e);
}

/* heap_ref_del cancels t; a no-op when it is not pending. */
static inline void heap_ref_del(struct heap_ref *h, struct heap_ref_timer *t)
{
    if (!t->pos) {
        return;
    }
    uint32_t i = t->pos - 1;
    t->pos = 0;
    if (i == --h->n) {
        return;
    }
    heap_ref_place(h, i, h->a[h->n]);
    if (i > 0 && h->a[i].expire_at < h->a[(i - 1) / 2].expire_at) {
        heap_ref_up(h, i);
    } else {
        heap_ref_down(h, i);
    }
}

/* heap_ref_add schedules (or moves) t to expire_at. Returns 0, or -ENOSPC when the heap is full
 * (t is then not pending). */
static inline int heap_ref_add(struct heap_ref *h, struct heap_ref_timer *t, uint64_t expire_at)
{
    heap_ref_del(h, t);
    if (h->n == h->cap) {
        return -ENOSPC;
    }
    t->expire_at = expire_at;
    h->a[h->n] = (struct heap_ref_entry){expire_at, t};
    heap_ref_up(h, h->n++);
    return 0;
}

/* heap_ref_run fires every timer with expire_at <= now, earliest first, and returns how many.
 * A callback may re-add its timer; one re-added already due fires again in this run. */
static inline size_t heap_ref_run(struct heap_ref *h, uint64_t now)
{
    size_t fired = 0;

    h->now = now;
    while (h->n && h->a[0].expire_at <= now) {
        struct heap_ref_timer *t = h->a[0].t;
        heap_ref_del(h, t);
        t->cb(h, t);
        fired++;
    }
    return fired;
}

#endif

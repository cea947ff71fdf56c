/* wheel.h: a per-worker hierarchical timer wheel for delivery retries and deadlines.
 *
 * Timers are intrusive: a struct wheel_timer lives inside the object it times (a delivery, a
 * connection) and the callback gets the owner back with container_of. A timer stores an absolute
 * expire_at in milliseconds on the caller's clock (the worker's monotonic milliseconds); the
 * wheel never reads a clock itself, it only learns the time from wheel_init and wheel_run.
 *
 * Geometry: WHEEL_LEVELS levels of 64 slots. A pending timer sits at the level of the highest
 * 6-bit group in which its expire_at differs from the wheel's time, in the slot named by that
 * group, so level l has a resolution of 64^l ms: 1 ms up to 64 ms, 64 ms up to 4 s, 4 s up to
 * 4.4 min, 4.4 min up to 4.7 h, 4.7 h up to 12.4 days, 12.4 days up to 2.2 years. Retry
 * schedules (seconds to days) and phase deadlines (milliseconds to minutes) land in levels 0-4
 * directly; the sixth level costs 2 KiB and one bitmap word and keeps every realistic expiry
 * inside the wheel. Expiries beyond 2^36 ms (2.2 years) go to an overflow list that is
 * re-examined each time the wheel's time crosses a 2^36 boundary, so they still fire on time.
 * As time advances a slot that becomes current is cascaded: its timers move to lower levels
 * (at most WHEEL_LEVELS - 1 moves in a timer's life) until they reach level 0 and fire.
 *
 * Costs: wheel_add and wheel_del are O(1) (doubly linked slot lists); wheel_next_expiry is
 * O(WHEEL_LEVELS) (one occupancy bitmap per level, __builtin_ctzll); wheel_run is proportional
 * to the timers it fires and cascades plus the non-empty slots it passes, never to the time
 * elapsed. The wheel is embedded in its worker: nothing allocates, ever (about 12 KiB).
 *
 * A wheel belongs to one thread; nothing here is thread-safe. */
#ifndef HOOKRING_WHEEL_H
#define HOOKRING_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WHEEL_BITS 6
#define WHEEL_SLOTS (1u << WHEEL_BITS) /* per level: one bit each in a uint64_t bitmap */
#define WHEEL_LEVELS 6                 /* 64^6 ms = 2^36 ms, about 2.2 years per top turn */
#define WHEEL_NO_EXPIRY UINT64_MAX     /* wheel_next_expiry: no timer is pending */

struct wheel;
struct wheel_timer;

/* wheel_timer_cb runs when t is due. t is no longer pending when it runs: the callback may
 * re-add it (or add and cancel any other timer of the wheel) and may free its owner. */
typedef void wheel_timer_cb(struct wheel *w, struct wheel_timer *t);

struct wheel_link {
    struct wheel_link *next; /* NULL in a timer that is not pending */
    struct wheel_link *prev;
};

struct wheel_timer {
    struct wheel_link link; /* in a slot, the overflow, the due or the expiring list */
    uint64_t expire_at;     /* absolute ms; meaningful while pending, kept after it fires */
    wheel_timer_cb *cb;
};

/* A list head that knows which occupancy bit it owns, so that wheel_del(t), which has no
 * wheel, can clear the bit when it takes the last timer out of a slot. */
struct wheel_slot {
    struct wheel_link head;
    uint64_t *occupied;
    uint64_t bit;
};

struct wheel {
    uint64_t now;                    /* the time of the last wheel_run (or wheel_init) */
    uint64_t occupied[WHEEL_LEVELS]; /* bit s of word l: slots[l][s] is not empty */
    uint64_t lists_occupied;         /* bit 0: overflow is not empty; other lists' scratch */
    struct wheel_slot overflow;      /* expiries past the current 2^36 ms turn of the top level */
    struct wheel_slot due;           /* added already due: fired first by the next wheel_run */
    struct wheel_slot expiring;      /* collected by wheel_run, being fired */
    struct wheel_slot slots[WHEEL_LEVELS][WHEEL_SLOTS];
};

/* wheel_init prepares an empty wheel whose time is now. The wheel links to itself: it must not
 * be moved or copied afterwards. Cannot fail; allocates nothing. */
void wheel_init(struct wheel *w, uint64_t now);

/* wheel_cleanup detaches every pending timer without calling it (each becomes not pending) and
 * leaves the wheel empty. The owners of those timers must still be alive. */
void wheel_cleanup(struct wheel *w);

/* wheel_timer_init prepares t, not pending, to call cb when it fires. */
void wheel_timer_init(struct wheel_timer *t, wheel_timer_cb *cb);

/* wheel_add schedules t to fire at expire_at (absolute ms). A pending t is moved (cancelled, then
 * added), also from another wheel. An expire_at at or before the wheel's time (wheel_now) makes t
 * due: the next wheel_run fires it, even when the add comes from a callback of the current run.
 * Any expire_at is accepted, UINT64_MAX included. O(1); cannot fail. Inline (below). */
static inline void wheel_add(struct wheel *w, struct wheel_timer *t, uint64_t expire_at);

/* wheel_del cancels t: it will not fire. A no-op when t is not pending (never added, already
 * fired, already cancelled). Safe from a callback on any timer, including one that is due in the
 * same run and has not fired yet. O(1). Inline (below). */
static inline void wheel_del(struct wheel_timer *t);

/* wheel_is_pending says whether t is scheduled: added, and neither fired nor cancelled since. */
static inline bool wheel_is_pending(const struct wheel_timer *t)
{
    return t->link.next != NULL;
}

/* wheel_now is the wheel's time: that of the last wheel_run, or of wheel_init. */
static inline uint64_t wheel_now(const struct wheel *w)
{
    return w->now;
}

/* wheel_run advances the wheel to now and fires every timer that was pending when it was called
 * and whose expire_at <= now, each exactly once, then returns how many callbacks it made. Order:
 * first the timers that were added already due (in the order they were added), then the others
 * in non-decreasing expire_at (ties in no defined order). Timers added by a callback, even if
 * already due, wait for the next wheel_run; a timer cancelled by a callback before its turn does
 * not fire. A now earlier than wheel_now() is taken as wheel_now() (the clock never goes back).
 * Must not be called from a callback. */
size_t wheel_run(struct wheel *w, uint64_t now);

/* wheel_next_expiry is how many ms after now the worker may sleep before calling wheel_run
 * again: WHEEL_NO_EXPIRY when no timer is pending, 0 when wheel_run has work already (a timer is
 * due, or a slot must be cascaded). It is a lower bound, never later than the earliest pending
 * expire_at: exact when that timer is on level 0 (within 64 ms of the wheel's time), otherwise
 * the start of the slot holding it; waking there costs one cascade and the next answer is finer
 * (at most WHEEL_LEVELS - 1 early wake-ups per timer). With now = wheel_now() right after a run,
 * 0 means a timer is due. O(WHEEL_LEVELS); does not change the wheel. */
uint64_t wheel_next_expiry(const struct wheel *w, uint64_t now);

/* ======== inline hot paths ====================================================================
 * wheel_add and wheel_del run for every delivery scheduled and every one completed, from other
 * modules: inline they cost no call, about a tenth of the add+cancel mix in bench/wheel.c. What
 * follows them is internal to the wheel. */

/* wheel_add_far is wheel_add's out-of-line path, for an expire_at already due or beyond the
 * current turn of the top level. Call wheel_add instead. */
void wheel_add_far(struct wheel *w, struct wheel_timer *t);

/* wheel_link_near links t into its slot: t->expire_at is after w->now and diff, its XOR with
 * w->now, is below 2^36 (so not zero). The level is that of diff's highest 6-bit group. */
static inline void wheel_link_near(struct wheel *w, struct wheel_timer *t, uint64_t diff)
{
    unsigned level = (unsigned)(63 - __builtin_clzll(diff)) / WHEEL_BITS;
    unsigned slot = (unsigned)(t->expire_at >> (level * WHEEL_BITS)) & (WHEEL_SLOTS - 1);
    struct wheel_slot *s = &w->slots[level][slot];
    struct wheel_link *tail = s->head.prev;

    t->link.prev = tail;
    t->link.next = &s->head;
    tail->next = &t->link;
    s->head.prev = &t->link;
    w->occupied[level] |= (uint64_t)1 << slot;
}

static inline void wheel_del(struct wheel_timer *t)
{
    struct wheel_link *next = t->link.next;
    struct wheel_link *prev = t->link.prev;

    if (!next) {
        return;
    }
    prev->next = next;
    next->prev = prev;
    t->link.next = NULL;
    t->link.prev = NULL;
    /* in a circular list the two neighbours are one node only when that node is the head and t
     * was alone: the slot just became empty */
    if (prev == next) {
        struct wheel_slot *s =
            (struct wheel_slot *)(void *)((char *)next - offsetof(struct wheel_slot, head));
        *s->occupied &= ~s->bit;
    }
}

static inline void wheel_add(struct wheel *w, struct wheel_timer *t, uint64_t expire_at)
{
    uint64_t diff = expire_at ^ w->now;

    wheel_del(t);
    t->expire_at = expire_at;
    if (expire_at <= w->now || (diff >> (WHEEL_BITS * WHEEL_LEVELS)) != 0) {
        wheel_add_far(w, t);
        return;
    }
    wheel_link_near(w, t, diff);
}

#endif

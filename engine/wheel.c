/* wheel.c: the hierarchical timer wheel (see wheel.h for the geometry).
 *
 * The invariant everything rests on: a timer in slots[l][s] has an expire_at that agrees with
 * w->now on every bit from 6(l+1) up, has s in bits 6l..6l+5, and s is greater than the same
 * group of w->now (a timer differing from w->now at bit 36 or above is in the overflow). So every
 * occupied slot starts in the future, each level's earliest slot is the lowest set bit of its
 * bitmap, and any slot of level l starts before any slot of level l+1 (the level l+1 slot starts at
 * a 64^(l+1) boundary after the current one, where level l has already wrapped). The wheel's next
 * piece of work is therefore the first set bit of the lowest non-empty level: fire it (level 0: its
 * timers expire exactly at the slot's start) or cascade it (higher levels: after moving w->now to
 * the slot's start, each of its timers agrees with w->now down to a lower level). Moving w->now
 * forward without passing any occupied slot's start keeps the invariant, which is why wheel_run
 * costs nothing for empty stretches. */
#include "wheel.h"

#include "common.h"

#define TOP_BITS (WHEEL_BITS * WHEEL_LEVELS) /* 36: one turn of the top level is 2^36 ms */

/* ======== lists ============================================================================= */

static void slot_init(struct wheel_slot *s, uint64_t *occupied, uint64_t bit)
{
    s->head.next = &s->head;
    s->head.prev = &s->head;
    s->occupied = occupied;
    s->bit = bit;
}

static inline bool slot_empty(const struct wheel_slot *s)
{
    return s->head.next == &s->head;
}

static inline void slot_append(struct wheel_slot *s, struct wheel_link *l)
{
    struct wheel_link *tail = s->head.prev;

    l->prev = tail;
    l->next = &s->head;
    tail->next = l;
    s->head.prev = l;
    *s->occupied |= s->bit;
}

/* slot_take empties s and returns its first link (or &s->head when it was empty); the links
 * still chain to &s->head at the end, which is how the caller knows where to stop. */
static inline struct wheel_link *slot_take(struct wheel_slot *s)
{
    struct wheel_link *first = s->head.next;

    s->head.next = &s->head;
    s->head.prev = &s->head;
    *s->occupied &= ~s->bit;
    return first;
}

/* slot_splice moves every timer of from to the end of to, in order. */
static void slot_splice(struct wheel_slot *to, struct wheel_slot *from)
{
    if (slot_empty(from)) {
        return;
    }
    struct wheel_link *first = from->head.next;
    struct wheel_link *last = from->head.prev;
    struct wheel_link *tail = to->head.prev;

    tail->next = first;
    first->prev = tail;
    last->next = &to->head;
    to->head.prev = last;
    *to->occupied |= to->bit;
    slot_take(from);
}

/* ======== placement ========================================================================= */

/* place links t where the invariant wants it relative to w->now; an expire_at not after w->now
 * goes to now_list (the due list for wheel_add, the expiring list for a cascade). */
static inline void place(struct wheel *w, struct wheel_timer *t, struct wheel_slot *now_list)
{
    uint64_t diff = t->expire_at ^ w->now;

    if (t->expire_at <= w->now) {
        slot_append(now_list, &t->link);
    } else if (unlikely(diff >> TOP_BITS)) {
        slot_append(&w->overflow, &t->link);
    } else {
        wheel_link_near(w, t, diff);
    }
}

/* next_work finds the earliest time at which the wheel has something to do: the start of the
 * first occupied slot of the lowest non-empty level, or the next turn of the top level when only
 * the overflow holds timers (reported as level WHEEL_LEVELS). Sets *at, *level and *slot and
 * returns true, or returns false when the wheel (the due and expiring lists aside) is empty. */
static inline bool next_work(const struct wheel *w, uint64_t *at, unsigned *level, unsigned *slot)
{
    for (unsigned l = 0; l < WHEEL_LEVELS; l++) {
        uint64_t bits = w->occupied[l];
        if (bits) {
            unsigned s = (unsigned)__builtin_ctzll(bits);
            uint64_t turn = ((uint64_t)1 << (WHEEL_BITS * (l + 1))) - 1;
            *at = (w->now & ~turn) | ((uint64_t)s << (WHEEL_BITS * l));
            *level = l;
            *slot = s;
            return true;
        }
    }
    if (!slot_empty(&w->overflow)) {
        /* cannot wrap: a timer in the overflow expires after the current turn, so the current
         * turn is not the last one */
        *at = (w->now | (((uint64_t)1 << TOP_BITS) - 1)) + 1;
        *level = WHEEL_LEVELS;
        *slot = 0;
        return true;
    }
    return false;
}

/* cascade re-places every timer of s relative to w->now, which has just reached the start of
 * s: each lands on a lower level, or in the expiring list when it expires right now (the
 * overflow's timers may land in the overflow again, hence taking the list out first). The list
 * is walked from both ends at once: a slot of a high level was filled long ago, its timers are
 * cold, and two independent pointer chases wait for memory twice as fast as one. */
static void cascade(struct wheel *w, struct wheel_slot *s)
{
    struct wheel_link *a = s->head.next;
    struct wheel_link *b = s->head.prev;

    slot_take(s);
    if (a == &s->head) {
        return;
    }
    for (;;) {
        if (a == b) {
            place(w, container_of(a, struct wheel_timer, link), &w->expiring);
            return;
        }
        struct wheel_link *a_next = a->next;
        struct wheel_link *b_prev = b->prev;
        place(w, container_of(a, struct wheel_timer, link), &w->expiring);
        place(w, container_of(b, struct wheel_timer, link), &w->expiring);
        if (a_next == b) {
            return;
        }
        a = a_next;
        b = b_prev;
    }
}

/* ======== API =============================================================================== */

void wheel_init(struct wheel *w, uint64_t now)
{
    w->now = now;
    w->lists_occupied = 0;
    for (unsigned l = 0; l < WHEEL_LEVELS; l++) {
        w->occupied[l] = 0;
        for (unsigned s = 0; s < WHEEL_SLOTS; s++) {
            slot_init(&w->slots[l][s], &w->occupied[l], (uint64_t)1 << s);
        }
    }
    slot_init(&w->overflow, &w->lists_occupied, 1);
    slot_init(&w->due, &w->lists_occupied, 2);
    slot_init(&w->expiring, &w->lists_occupied, 4);
}

static void detach_all(struct wheel_slot *s)
{
    struct wheel_link *l = slot_take(s);

    while (l != &s->head) {
        struct wheel_link *next = l->next;
        l->next = NULL;
        l->prev = NULL;
        l = next;
    }
}

void wheel_cleanup(struct wheel *w)
{
    for (unsigned l = 0; l < WHEEL_LEVELS; l++) {
        uint64_t bits = w->occupied[l];
        while (bits) {
            detach_all(&w->slots[l][__builtin_ctzll(bits)]);
            bits &= bits - 1;
        }
    }
    detach_all(&w->overflow);
    detach_all(&w->due);
    detach_all(&w->expiring);
}

void wheel_timer_init(struct wheel_timer *t, wheel_timer_cb *cb)
{
    t->link.next = NULL;
    t->link.prev = NULL;
    t->expire_at = 0;
    t->cb = cb;
}

void wheel_add_far(struct wheel *w, struct wheel_timer *t)
{
    place(w, t, &w->due);
}

size_t wheel_run(struct wheel *w, uint64_t now)
{
    uint64_t at;
    unsigned level, slot;
    size_t fired = 0;

    if (now < w->now) {
        now = w->now;
    }
    slot_splice(&w->expiring, &w->due);
    /* collect first, fire afterwards: callbacks then only ever see a wheel whose time is now,
     * and whatever they add lands after this run's work */
    while (next_work(w, &at, &level, &slot) && at <= now) {
        w->now = at;
        if (level == 0) {
            slot_splice(&w->expiring, &w->slots[0][slot]);
        } else if (level < WHEEL_LEVELS) {
            cascade(w, &w->slots[level][slot]);
        } else {
            cascade(w, &w->overflow);
        }
    }
    w->now = now;
    while (!slot_empty(&w->expiring)) {
        struct wheel_timer *t = container_of(w->expiring.head.next, struct wheel_timer, link);
        wheel_del(t);
        t->cb(w, t);
        fired++;
    }
    return fired;
}

uint64_t wheel_next_expiry(const struct wheel *w, uint64_t now)
{
    uint64_t at;
    unsigned level, slot;

    if (!slot_empty(&w->due) || !slot_empty(&w->expiring)) {
        return 0;
    }
    if (!next_work(w, &at, &level, &slot)) {
        return WHEEL_NO_EXPIRY;
    }
    return at > now ? at - now : 0;
}

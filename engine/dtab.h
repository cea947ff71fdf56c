/* dtab.h: a table of pointers by 40-bit index, kept in pages of 4096 slots under directories
 * of 4096 pages, each allocated when its first pointer is set and freed when its last is
 * cleared. serve holds its deliveries in one, by delivery index: its memory follows the
 * deliveries held, not the range of indexes between the oldest held one and the newest (one
 * delivery pending for a day among millions forgotten since would otherwise keep a slot for
 * each of them), and a walk over the table skips an empty page or directory in one step.
 *
 * Not thread-safe: one owner. */
#ifndef HOOKRING_DTAB_H
#define HOOKRING_DTAB_H

#include <stddef.h>
#include <stdint.h>

#define DTAB_INDEX_BITS 40
#define DTAB_LIMIT (1ull << DTAB_INDEX_BITS) /* indexes are below this */
#define DTAB_PAGE_BITS 12
#define DTAB_DIR_BITS 12
#define DTAB_TOP_BITS (DTAB_INDEX_BITS - DTAB_DIR_BITS - DTAB_PAGE_BITS)

struct dtab_page {
    void *p[1u << DTAB_PAGE_BITS];
    uint32_t n; /* pointers in p */
};

struct dtab_dir {
    struct dtab_page *pg[1u << DTAB_DIR_BITS];
    uint32_t n; /* pages in pg */
};

struct dtab {
    struct dtab_dir **top; /* the directories, by index >> (DTAB_DIR_BITS + DTAB_PAGE_BITS) */
    size_t ntop;           /* entries in top: grown to the highest directory set so far */
    size_t n;              /* pointers held */
    size_t pages, dirs;    /* allocated */
};

void dtab_init(struct dtab *t);

/* dtab_free frees the table (not what its pointers point to); t is empty afterwards. */
void dtab_free(struct dtab *t);

/* dtab_get is the pointer at index i, NULL when none (or i >= DTAB_LIMIT). */
static inline void *dtab_get(const struct dtab *t, uint64_t i)
{
    uint64_t k = i >> (DTAB_DIR_BITS + DTAB_PAGE_BITS);
    if (k >= t->ntop) {
        return NULL;
    }
    const struct dtab_dir *d = t->top[k];
    if (!d) {
        return NULL;
    }
    const struct dtab_page *pg = d->pg[(i >> DTAB_PAGE_BITS) & ((1u << DTAB_DIR_BITS) - 1)];
    return pg ? pg->p[i & ((1u << DTAB_PAGE_BITS) - 1)] : NULL;
}

/* dtab_set puts p (not NULL) at index i, whose slot is empty. Returns 0, -EINVAL (i too large,
 * p NULL, or the slot taken) or -ENOMEM (nothing changed). */
int dtab_set(struct dtab *t, uint64_t i, void *p);

/* dtab_clear empties the slot at index i (nothing when it is empty), freeing its page, and the
 * page's directory, once they hold nothing. */
void dtab_clear(struct dtab *t, uint64_t i);

/* dtab_next is the pointer with the lowest index in [*i, end), *i set to that index. NULL when
 * there is none, *i then end; or when *budget ran out first, *i then the first index not looked
 * at. Each slot looked at costs one of *budget, and so does each empty page or directory
 * skipped whole. */
void *dtab_next(const struct dtab *t, uint64_t *i, uint64_t end, size_t *budget);

/* dtab_prev is the pointer with the highest index in [begin, *i), *i set to that index. NULL
 * when there is none, *i then begin; or when *budget ran out first, *i then the lowest index
 * looked at (every index from it up was). Costs as dtab_next. */
void *dtab_prev(const struct dtab *t, uint64_t *i, uint64_t begin, size_t *budget);

/* dtab_bytes is the memory the table itself takes (its pages, directories and top). */
size_t dtab_bytes(const struct dtab *t);

#endif

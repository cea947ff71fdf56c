/* dtab.c: a table of pointers by 40-bit index, in pages under directories (dtab.h). */
#include "dtab.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define PAGE ((uint64_t)1 << DTAB_PAGE_BITS)     /* indexes a page covers */
#define DIR_PAGES ((uint64_t)1 << DTAB_DIR_BITS) /* pages a directory holds */
#define DIR_SPAN (PAGE * DIR_PAGES)              /* indexes a directory covers */
#define TOP_DIRS ((size_t)1 << DTAB_TOP_BITS)    /* directories */
_Static_assert(DTAB_TOP_BITS > 0 && DTAB_TOP_BITS <= 20, "the top array stays small");

void dtab_init(struct dtab *t)
{
    t->top = NULL;
    t->ntop = t->n = t->pages = t->dirs = 0;
}

void dtab_free(struct dtab *t)
{
    if (t->top) {
        for (size_t k = 0; k < t->ntop; k++) {
            struct dtab_dir *d = t->top[k];
            if (!d) {
                continue;
            }
            for (size_t j = 0; j < DIR_PAGES; j++) {
                free(d->pg[j]);
            }
            free(d);
        }
        free(t->top);
    }
    dtab_init(t);
}

int dtab_set(struct dtab *t, uint64_t i, void *p)
{
    if (!p || i >= DTAB_LIMIT) {
        return -EINVAL;
    }
    size_t k = (size_t)(i / DIR_SPAN);
    if (k >= t->ntop) {
        /* grown to the directory needed, doubling: a table of small indexes stays small */
        size_t n = t->ntop ? t->ntop : 1;
        while (n <= k) {
            n *= 2;
        }
        if (n > TOP_DIRS) {
            n = TOP_DIRS;
        }
        struct dtab_dir **top = realloc(t->top, n * sizeof(*top));
        if (!top) {
            return -ENOMEM;
        }
        memset(top + t->ntop, 0, (n - t->ntop) * sizeof(*top));
        t->top = top;
        t->ntop = n;
    }
    struct dtab_dir **dp = &t->top[k];
    bool new_dir = false;
    if (!*dp) {
        if (!(*dp = calloc(1, sizeof(**dp)))) {
            return -ENOMEM;
        }
        t->dirs++;
        new_dir = true;
    }
    struct dtab_page **pp = &(*dp)->pg[(i / PAGE) % DIR_PAGES];
    if (!*pp) {
        if (!(*pp = calloc(1, sizeof(**pp)))) {
            if (new_dir) {
                free(*dp);
                *dp = NULL;
                t->dirs--;
            }
            return -ENOMEM;
        }
        (*dp)->n++;
        t->pages++;
    }
    void **slot = &(*pp)->p[i % PAGE];
    if (*slot) {
        return -EINVAL;
    }
    *slot = p;
    (*pp)->n++;
    t->n++;
    return 0;
}

void dtab_clear(struct dtab *t, uint64_t i)
{
    if (i >= DTAB_LIMIT || i / DIR_SPAN >= t->ntop) {
        return;
    }
    struct dtab_dir **dp = &t->top[i / DIR_SPAN];
    if (!*dp) {
        return;
    }
    struct dtab_page **pp = &(*dp)->pg[(i / PAGE) % DIR_PAGES];
    if (!*pp || !(*pp)->p[i % PAGE]) {
        return;
    }
    (*pp)->p[i % PAGE] = NULL;
    t->n--;
    if (--(*pp)->n == 0) {
        free(*pp);
        *pp = NULL;
        t->pages--;
        if (--(*dp)->n == 0) {
            free(*dp);
            *dp = NULL;
            t->dirs--;
        }
    }
}

/* page_at is the page holding index i, NULL when none; *dir_empty tells whether the whole
 * directory of i is missing. */
static const struct dtab_page *page_at(const struct dtab *t, uint64_t i, bool *dir_empty)
{
    const struct dtab_dir *d = i / DIR_SPAN < t->ntop ? t->top[i / DIR_SPAN] : NULL;
    *dir_empty = d == NULL;
    return d ? d->pg[(i / PAGE) % DIR_PAGES] : NULL;
}

void *dtab_next(const struct dtab *t, uint64_t *i, uint64_t end, size_t *budget)
{
    if (end > DTAB_LIMIT) {
        end = DTAB_LIMIT;
    }
    uint64_t at = *i;
    while (at < end) {
        if (*budget == 0) {
            *i = at;
            return NULL;
        }
        bool dir_empty;
        const struct dtab_page *pg = page_at(t, at, &dir_empty);
        if (!pg) {
            (*budget)--;
            uint64_t span = dir_empty ? DIR_SPAN : PAGE;
            at = (at / span + 1) * span;
            continue;
        }
        uint64_t stop = (at / PAGE + 1) * PAGE;
        if (stop > end) {
            stop = end;
        }
        for (; at < stop; at++) {
            if (*budget == 0) {
                *i = at;
                return NULL;
            }
            (*budget)--;
            void *p = pg->p[at % PAGE];
            if (p) {
                *i = at;
                return p;
            }
        }
    }
    *i = end;
    return NULL;
}

void *dtab_prev(const struct dtab *t, uint64_t *i, uint64_t begin, size_t *budget)
{
    uint64_t at = *i > DTAB_LIMIT ? DTAB_LIMIT : *i; /* every index from at up is done */
    while (at > begin) {
        if (*budget == 0) {
            *i = at;
            return NULL;
        }
        bool dir_empty;
        const struct dtab_page *pg = page_at(t, at - 1, &dir_empty);
        if (!pg) {
            (*budget)--;
            uint64_t span = dir_empty ? DIR_SPAN : PAGE;
            at = (at - 1) / span * span;
            continue;
        }
        uint64_t low = (at - 1) / PAGE * PAGE;
        if (low < begin) {
            low = begin;
        }
        while (at > low) {
            if (*budget == 0) {
                *i = at;
                return NULL;
            }
            (*budget)--;
            at--;
            void *p = pg->p[at % PAGE];
            if (p) {
                *i = at;
                return p;
            }
        }
    }
    *i = begin;
    return NULL;
}

size_t dtab_bytes(const struct dtab *t)
{
    return t->pages * sizeof(struct dtab_page) + t->dirs * sizeof(struct dtab_dir) +
           t->ntop * sizeof(*t->top);
}

/* serve_match.c: which webhooks an event goes to (fan-out), without looking at every webhook.
 *
 * A webhook with an agent filter takes only events of that agent; one without takes events of
 * every agent. Teams that serve many tenants register a webhook per tenant's endpoint, each
 * with the tenant as its agent, so most webhooks have an agent filter and an event concerns a
 * few of them. Testing every webhook for every event made ingest cost grow with the number of
 * webhooks ever registered (deleted ones included): with 1 000 of them ingest took 2.5 times
 * the CPU it takes with none.
 *
 * The index: the webhooks without an agent filter, in table order; and the ones with one,
 * sorted by (agent, table order), with an open-addressing table from agent to its run. An
 * event's candidates are the first list merged with its agent's run, by table order, so that
 * deliveries are made in the order a scan of the table makes them. Deleted webhooks are left
 * out (they never take an event again); disabled ones are kept, and serve_match decides.
 *
 * The index is rebuilt, whole, at the first event after the webhooks changed (serve_match_dirty:
 * a webhook added, replayed, deleted or freed, or its agent changed; not a status change, which
 * serve_match sees, so that webhooks going failing and active again cost nothing here). Those
 * changes are rare next to events, and a rebuild costs O(n log n) for n webhooks. */
#include "serve_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct match_ent {
    struct webhook *wh;
    uint32_t pos; /* in s->whs */
};

struct match_slot {
    uint64_t h;     /* 0: empty */
    uint32_t first; /* its run in by_agent */
    uint32_t n;
};

struct serve_match_index {
    struct match_ent *any; /* no agent filter, table order */
    size_t nany;
    struct match_ent *by_agent; /* sorted by (agent, pos) */
    size_t nagent;
    struct match_slot *slots; /* 2^k >= 2 * distinct agents */
    size_t mask;
};

/* agent_hash is the agent's slice_hash, never 0 (an empty slot's) */
static uint64_t agent_hash(const char *p, size_t n)
{
    uint64_t h = slice_hash(slice_of(p, n));
    return h ? h : 1;
}

static int ent_cmp(const void *a, const void *b)
{
    const struct match_ent *x = a, *y = b;
    int c = strcmp(x->wh->agent, y->wh->agent);
    if (c) {
        return c;
    }
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void index_free(struct serve_match_index *mi)
{
    if (mi) {
        free(mi->any);
        free(mi->by_agent);
        free(mi->slots);
        free(mi);
    }
}

void serve_match_free(struct serve *s)
{
    index_free(s->match);
    s->match = NULL;
}

static struct serve_match_index *index_build(struct serve *s)
{
    struct serve_match_index *mi = calloc(1, sizeof(*mi));
    size_t n = s->nwh ? s->nwh : 1;
    if (!mi || !(mi->any = malloc(n * sizeof(*mi->any))) ||
        !(mi->by_agent = malloc(n * sizeof(*mi->by_agent)))) {
        index_free(mi);
        return NULL;
    }
    for (size_t i = 0; i < s->nwh; i++) {
        struct webhook *wh = s->whs[i];
        if (wh->status == WH_DELETED) {
            continue;
        }
        struct match_ent e = {wh, (uint32_t)i};
        if (wh->has_agent) {
            mi->by_agent[mi->nagent++] = e;
        } else {
            mi->any[mi->nany++] = e;
        }
    }
    qsort(mi->by_agent, mi->nagent, sizeof(*mi->by_agent), ent_cmp);
    size_t cap = 16;
    while (cap < 2 * mi->nagent) {
        cap <<= 1;
    }
    mi->slots = calloc(cap, sizeof(*mi->slots));
    if (!mi->slots) {
        index_free(mi);
        return NULL;
    }
    mi->mask = cap - 1;
    for (size_t i = 0; i < mi->nagent;) {
        const char *agent = mi->by_agent[i].wh->agent;
        size_t j = i + 1;
        while (j < mi->nagent && strcmp(mi->by_agent[j].wh->agent, agent) == 0) {
            j++;
        }
        uint64_t h = agent_hash(agent, strlen(agent));
        size_t k = h & mi->mask;
        while (mi->slots[k].h) {
            k = (k + 1) & mi->mask;
        }
        mi->slots[k] = (struct match_slot){h, (uint32_t)i, (uint32_t)(j - i)};
        i = j;
    }
    return mi;
}

void serve_match_dirty(struct serve *s)
{
    s->match_dirty = true;
}

/* agent_run finds ev's agent's run of webhooks (*n = 0: none has that agent). */
static const struct match_ent *agent_run(const struct serve_match_index *mi, const struct event *ev,
                                         size_t *n)
{
    *n = 0;
    if (!ev->has_agent || mi->nagent == 0) {
        return NULL;
    }
    uint64_t h = agent_hash(ev->agent, ev->agent_len);
    for (size_t k = h & mi->mask; mi->slots[k].h; k = (k + 1) & mi->mask) {
        const struct match_slot *sl = &mi->slots[k];
        const struct webhook *wh = mi->by_agent[sl->first].wh;
        if (sl->h == h && strlen(wh->agent) == ev->agent_len &&
            memcmp(wh->agent, ev->agent, ev->agent_len) == 0) {
            *n = sl->n;
            return &mi->by_agent[sl->first];
        }
    }
    return NULL;
}

int serve_match_begin(struct serve *s, struct serve_match_it *it, const struct event *ev)
{
    if (s->match_dirty || !s->match) {
        struct serve_match_index *mi = index_build(s);
        if (!mi) {
            return -ENOMEM; /* the old index (if any) is stale: nothing is matched with it */
        }
        index_free(s->match);
        s->match = mi;
        s->match_dirty = false;
    }
    it->mi = s->match;
    it->ev = ev;
    it->i = it->j = 0;
    it->run = agent_run(s->match, ev, &it->nrun);
    return 0;
}

struct webhook *serve_match_next(struct serve_match_it *it)
{
    const struct serve_match_index *mi = it->mi;
    for (;;) {
        const struct match_ent *a = it->i < mi->nany ? &mi->any[it->i] : NULL;
        const struct match_ent *b = it->j < it->nrun ? &it->run[it->j] : NULL;
        const struct match_ent *e;
        if (!a && !b) {
            return NULL;
        }
        if (a && (!b || a->pos < b->pos)) {
            e = a;
            it->i++;
        } else {
            e = b;
            it->j++;
        }
        if (serve_match(e->wh, it->ev)) {
            return e->wh;
        }
    }
}

bool serve_match(const struct webhook *wh, const struct event *ev)
{
    if (!wh_live(wh)) {
        return false;
    }
    if (wh->has_agent &&
        (!ev->has_agent || !slice_eq(slice_of(ev->agent, ev->agent_len), slice_cstr(wh->agent)))) {
        return false;
    }
    struct slice type = slice_of(ev->type, ev->type_len);
    for (size_t i = 0; i < wh->nevents; i++) {
        const char *f = wh->events[i];
        size_t n = strlen(f);
        if (strcmp(f, "*") == 0 || slice_eq_cstr(type, f)) {
            return true;
        }
        /* "meeting.*" takes every type starting with "meeting." */
        if (n >= 2 && f[n - 1] == '*' && f[n - 2] == '.' && type.len > n - 1 &&
            memcmp(type.p, f, n - 1) == 0) {
            return true;
        }
    }
    return false;
}

/* hids.c: the sharded webhook-id table. */
#include "hids.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n) {
        p <<= 1;
    }
    return p;
}

/* map_zeroed reserves zeroed memory whose pages are only backed once touched: a table sized
 * for a million ids costs nothing until ids arrive. */
static void *map_zeroed(size_t n)
{
    void *p =
        mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int hids_init(struct hids *t, size_t max_ids)
{
    memset(t, 0, sizeof(*t));
    /* headroom for uneven hashing across shards; the table stays at most half full */
    size_t limit = max_ids / HIDS_SHARDS + 64;
    size_t cap = pow2_at_least(2 * limit);
    for (size_t i = 0; i < HIDS_SHARDS; i++) {
        struct hids_shard *s = &t->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->slots_bytes = cap * sizeof(*s->slots);
        s->arena_cap = (uint32_t)(limit * 48);
        s->slots = map_zeroed(s->slots_bytes);
        s->arena = map_zeroed(s->arena_cap);
        if (!s->slots || !s->arena) {
            hids_free(t);
            return -ENOMEM;
        }
        s->mask = (uint32_t)(cap - 1);
        s->limit = (uint32_t)limit;
        s->gen = 1;
    }
    return 0;
}

void hids_free(struct hids *t)
{
    for (size_t i = 0; i < HIDS_SHARDS; i++) {
        struct hids_shard *s = &t->shards[i];
        if (s->slots) {
            munmap(s->slots, s->slots_bytes);
        }
        if (s->arena) {
            munmap(s->arena, s->arena_cap);
        }
        s->slots = NULL;
        s->arena = NULL;
        pthread_mutex_destroy(&s->lock);
    }
}

/* find returns the slot of id, or of the empty slot where it would go (*found false). */
static uint32_t find(const struct hids_shard *s, struct slice id, uint32_t tag, uint64_t h,
                     bool *found)
{
    uint32_t i = (uint32_t)h & s->mask;
    for (;;) {
        const struct hids_entry *e = &s->slots[i];
        if (e->gen != s->gen) {
            *found = false;
            return i;
        }
        if (e->tag == tag && e->len == id.len && memcmp(s->arena + e->off, id.p, id.len) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & s->mask;
    }
}

void hids_arrive(struct hids *t, struct slice id, enum hids_kind kind, uint32_t take_after,
                 int64_t now_us, struct hids_arrival *out)
{
    memset(out, 0, sizeof(*out));
    if (id.len > HIDS_ID_MAX) {
        id.len = HIDS_ID_MAX;
    }
    uint64_t h = slice_hash(id);
    uint32_t shard = (uint32_t)(h >> 58);
    uint32_t tag = (uint32_t)(h >> 26);
    struct hids_shard *s = &t->shards[shard];
    pthread_mutex_lock(&s->lock);
    bool found;
    uint32_t i = find(s, id, tag, h, &found);
    struct hids_entry *e = &s->slots[i];
    if (!found) {
        if (s->count >= s->limit || s->arena_cap - s->arena_used < id.len) {
            s->dropped++;
            out->taken = kind == HIDS_ACCEPTED && take_after == 0;
            pthread_mutex_unlock(&s->lock);
            return;
        }
        memset(e, 0, sizeof(*e));
        e->tag = tag;
        e->gen = s->gen;
        e->off = s->arena_used;
        e->len = (uint16_t)id.len;
        memcpy(s->arena + e->off, id.p, id.len);
        s->arena_used += (uint32_t)id.len;
        e->first_seen_us = now_us;
        s->count++;
    }
    e->attempts++;
    if (kind == HIDS_BAD_SIG) {
        e->bad_sig++;
    } else {
        out->accepted_before = e->accepted;
        e->accepted++;
        if (e->processed) {
            e->duplicates++;
            s->duplicates++;
            out->duplicate = true;
        }
        if (take_after != HIDS_NEVER && out->accepted_before >= take_after) {
            out->taken = true;
            if (!e->processed) {
                e->processed = true;
                s->unique++;
            }
        }
    }
    out->ref = (struct hids_ref){shard, i, s->gen};
    pthread_mutex_unlock(&s->lock);
}

void hids_processed(struct hids *t, const struct hids_ref *ref)
{
    if (ref->gen == 0) {
        return;
    }
    struct hids_shard *s = &t->shards[ref->shard];
    pthread_mutex_lock(&s->lock);
    struct hids_entry *e = &s->slots[ref->slot];
    if (s->gen == ref->gen && e->gen == ref->gen && !e->processed) {
        e->processed = true;
        s->unique++;
    }
    pthread_mutex_unlock(&s->lock);
}

bool hids_lookup(struct hids *t, struct slice id, struct hids_entry *out)
{
    if (id.len > HIDS_ID_MAX) {
        id.len = HIDS_ID_MAX;
    }
    uint64_t h = slice_hash(id);
    struct hids_shard *s = &t->shards[h >> 58];
    pthread_mutex_lock(&s->lock);
    bool found;
    uint32_t i = find(s, id, (uint32_t)(h >> 26), h, &found);
    if (found) {
        *out = s->slots[i];
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

void hids_totals(struct hids *t, struct hids_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < HIDS_SHARDS; i++) {
        struct hids_shard *s = &t->shards[i];
        pthread_mutex_lock(&s->lock);
        out->ids += s->count;
        out->unique += s->unique;
        out->duplicates += s->duplicates;
        out->dropped += s->dropped;
        pthread_mutex_unlock(&s->lock);
    }
}

void hids_reset(struct hids *t)
{
    for (size_t i = 0; i < HIDS_SHARDS; i++) {
        struct hids_shard *s = &t->shards[i];
        pthread_mutex_lock(&s->lock);
        s->gen++;
        if (s->gen == 0) { /* wrapped: stale entries could look live again */
            memset(s->slots, 0, s->slots_bytes);
            s->gen = 1;
        }
        s->count = 0;
        s->arena_used = 0;
        s->unique = 0;
        s->duplicates = 0;
        s->dropped = 0;
        pthread_mutex_unlock(&s->lock);
    }
}

int hids_write(struct hids *t, FILE *f)
{
    for (size_t i = 0; i < HIDS_SHARDS; i++) {
        struct hids_shard *s = &t->shards[i];
        pthread_mutex_lock(&s->lock);
        for (uint32_t k = 0; k <= s->mask; k++) {
            const struct hids_entry *e = &s->slots[k];
            if (e->gen != s->gen) {
                continue;
            }
            fprintf(f, "%.*s\t%u\t%u\t%u\t%u\t%lld\t%lld\n", (int)e->len,
                    (const char *)(s->arena + e->off), e->attempts, e->accepted, e->bad_sig,
                    e->duplicates, (long long)(e->first_seen_us / 1000),
                    (long long)e->first_seen_us);
        }
        pthread_mutex_unlock(&s->lock);
    }
    return ferror(f) ? -EIO : 0;
}

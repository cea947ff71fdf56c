/* hids.h: per-webhook-id accounting shared by every harness thread.
 *
 * The table is sized once (max ids) and split into shards, each behind its own mutex, so
 * threads recording different ids rarely meet. Id bytes go into a per-shard arena; nothing is
 * allocated per request. A reset bumps each shard's generation, which empties it in O(1).
 *
 * An id is "processed" once the harness has taken a delivery of it: answered it 2xx, or
 * recorded it in /drop/ or /dup/. A verified delivery of an id already processed is a
 * duplicate. */
#ifndef HOOKRING_HIDS_H
#define HOOKRING_HIDS_H

#include <pthread.h>
#include <stdio.h>

#include "common.h"

#define HIDS_SHARDS 64
#define HIDS_ID_MAX 160

enum hids_kind {
    HIDS_ACCEPTED, /* verified (or accepted unverified on an unverified route) */
    HIDS_BAD_SIG,  /* refused: the signature did not verify */
};

/* Where an id lives, to mark it processed later without looking it up again. */
struct hids_ref {
    uint32_t shard;
    uint32_t slot;
    uint32_t gen; /* 0: no entry (table full, or no id) */
};

#define HIDS_NEVER UINT32_MAX

struct hids_arrival {
    struct hids_ref ref;
    uint32_t accepted_before; /* accepted attempts of this id before this one */
    bool duplicate;           /* accepted, and the id was already processed */
    bool taken;               /* this arrival processed the id (see hids_arrive) */
};

struct hids_entry {
    uint32_t tag; /* low bits of the hash; with gen, tells a live slot */
    uint32_t gen;
    uint32_t off; /* id bytes in the shard arena */
    uint16_t len;
    bool processed;
    uint32_t attempts;     /* every request carrying the id */
    uint32_t accepted;     /* verified (or accepted on an unverified route) */
    uint32_t bad_sig;      /* refused for their signature */
    uint32_t duplicates;   /* accepted after the id was processed */
    int64_t first_seen_us; /* time of day of the first arrival, unix microseconds */
};

struct hids_shard {
    pthread_mutex_t lock;
    struct hids_entry *slots;
    size_t slots_bytes;
    uint32_t mask;
    uint32_t gen;
    uint32_t count;
    uint32_t limit;
    uint8_t *arena;
    uint32_t arena_used;
    uint32_t arena_cap;
    uint64_t unique;     /* ids processed at least once */
    uint64_t duplicates; /* duplicate deliveries */
    uint64_t dropped;    /* arrivals not tracked: shard full */
};

struct hids {
    struct hids_shard shards[HIDS_SHARDS];
};

struct hids_totals {
    uint64_t ids;        /* distinct ids seen */
    uint64_t unique;     /* distinct ids processed */
    uint64_t duplicates; /* duplicate deliveries */
    uint64_t dropped;    /* arrivals not tracked because the table was full */
};

/* hids_init sizes t for max_ids ids. Returns 0 or -ENOMEM. */
int hids_init(struct hids *t, size_t max_ids);

/* hids_free releases the table. */
void hids_free(struct hids *t);

/* hids_arrive records one request carrying id. out->duplicate tells an accepted delivery of
 * an id already processed (and counts it). An accepted arrival whose id already had
 * take_after accepted attempts also marks the id processed, in the same critical section, so
 * two threads taking the same id at once count exactly one duplicate (HIDS_NEVER: not now; the
 * caller may call hids_processed later). When the table is full the arrival is counted as
 * dropped, out->ref.gen is 0, and out->taken follows take_after as if the id were new. */
void hids_arrive(struct hids *t, struct slice id, enum hids_kind kind, uint32_t take_after,
                 int64_t now_us, struct hids_arrival *out);

/* hids_processed marks the id behind ref processed (a no-op for an empty or stale ref). */
void hids_processed(struct hids *t, const struct hids_ref *ref);

/* hids_lookup copies id's entry into out. Returns false when the id is unknown. */
bool hids_lookup(struct hids *t, struct slice id, struct hids_entry *out);

/* hids_totals sums the shards. */
void hids_totals(struct hids *t, struct hids_totals *out);

/* hids_reset forgets every id and zeroes the totals. */
void hids_reset(struct hids *t);

/* hids_write writes one line per id: id, attempts, accepted, bad_sig, duplicates,
 * first_seen_ms, first_seen_us, tab-separated. Returns 0 or -errno. */
int hids_write(struct hids *t, FILE *f);

#endif

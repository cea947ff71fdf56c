/* dedup.h: the lock-free table that drops duplicate events.
 *
 * Keys are 128 bits (dedup_key() derives one from a profile name and an idempotency key). An
 * insert is insert-if-absent: of all the calls that insert one key within one window, exactly
 * one gets DEDUP_NEW; the others get DEDUP_DUPLICATE. Memory is fixed by dedup_new(): nothing is
 * allocated afterwards, and a generation that reaches its capacity answers DEDUP_FULL (the caller
 * answers 503 and the client retries) rather than growing or forgetting.
 *
 * Time. Time is cut into windows of window_ms, numbered now_ms / window_ms. The table keeps two
 * generations, the current window's and the previous one's, and a key is a duplicate while it is
 * in either. The table's clock is the newest window it has been asked about; a call whose now_ms
 * is older is taken to be in the current window ("late" calls: a stale clock read, a journal
 * replayed after live traffic began). With that reading of each call's time:
 *
 *   - never forgotten early: a key inserted in window w is a duplicate for every call in window
 *     w or w + 1, so for at least window_ms after its insertion and for at most 2 * window_ms;
 *   - never NEW twice: two inserts of one key whose windows are at most one apart never both get
 *     DEDUP_NEW, however they interleave with each other and with rotations;
 *   - never a false duplicate: DEDUP_DUPLICATE means the same 128-bit key was inserted before
 *     (the key halves 0 are folded onto fixed values, see dedup_insert; with dedup_key() keys
 *     this is as unlikely as a 128-bit collision);
 *   - DEDUP_FULL leaves no trace: that call inserted nothing, so a retry can still get NEW
 *     (unless another call inserted the same key meanwhile: then one of them got NEW).
 *
 * Threads. Every function except dedup_new and dedup_free may be called from any number of
 * threads at once. An insert is a few loads and one compare-and-swap on the slot; it never takes
 * a lock. Moving to a new window (a rotation) is done by the first call that sees the clock
 * move: it publishes the new generation at once, waits for the calls still working in the old
 * one to finish, then clears the expired table for later use; that call alone pays for the
 * clear (a memset of one table: 1.1 ms for a 3M-key table, 64 MiB, here). Other calls wait only if
 * they need yet another rotation while that one is still clearing. */
#ifndef HOOKRING_DEDUP_H
#define HOOKRING_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEDUP_KEY_LEN 16

struct dedup;

enum dedup_result {
    DEDUP_NEW,       /* first sighting: inserted; the caller goes on with the event */
    DEDUP_DUPLICATE, /* seen within the window: the caller answers {"duplicate": true} */
    DEDUP_FULL,      /* not inserted, the generation is at capacity: the caller backs off */
};

struct dedup_stats {
    size_t capacity;       /* keys one generation holds before DEDUP_FULL */
    size_t slots;          /* slots per generation table (a power of two) */
    size_t bytes;          /* memory held by the tables */
    uint64_t window_ms;    /* as given to dedup_new */
    uint64_t window;       /* the table's clock: the current window's number */
    size_t used_current;   /* keys in the current generation */
    size_t used_previous;  /* keys in the previous generation (0 once it has expired) */
    uint64_t rotations;    /* generations started since dedup_new */
    uint64_t full_results; /* DEDUP_FULL answers since dedup_new */
};

/* dedup_new creates a table that holds up to capacity keys per window (each generation gets
 * the smallest power-of-two slot count that keeps it at most 75% full) and forgets a key
 * between one and two windows of window_ms after its insertion. The memory (three tables of
 * 16-byte slots: two live generations and a cleared spare) is allocated and zeroed here.
 * Returns NULL with errno EINVAL (capacity or window_ms is 0, or the size overflows) or ENOMEM.
 * The clock starts at window 0. */
struct dedup *dedup_new(size_t capacity, uint64_t window_ms);

/* dedup_set_single_writer promises that from now on one thread only calls dedup_insert,
 * dedup_contains and dedup_prefetch on d (others may still read dedup_stats). Its calls then take
 * no pin and use no locked instruction: each of those waits for the thread's pending stores,
 * and an ingest has just written an event's text (hookring serve: one thread ingests). Call it
 * before the first insert. */
void dedup_set_single_writer(struct dedup *d);

/* dedup_free releases the table. No other thread may be using it. dedup_free(NULL) is a
 * no-op. */
void dedup_free(struct dedup *d);

/* dedup_insert inserts key if it is absent from both live generations. now_ms is the event's
 * time in milliseconds on any clock every caller shares (the engine uses CLOCK_REALTIME so that
 * journal times mean the same after a restart); it only needs to be roughly non-decreasing
 * across calls. A now_ms in a newer window than the table's clock rotates first; an older one
 * is taken as the current window.
 *
 * Recovery: replay the journal's keys with their original times, in journal order, before live
 * traffic starts. The clock then moves as it did live, keys older than two windows age out on
 * the way, and the table ends up holding what it would have held had the process not stopped.
 * A replayed time older than the clock only keeps its key longer, never shorter. DEDUP_FULL
 * during a replay means the capacity is now smaller than a window of the journal needs.
 *
 * A key whose first or second 8-byte half is all zero is treated as if that half were a fixed
 * non-zero constant (zero marks an empty slot and an unpublished half), so (0, x) and
 * (constant, x) are one key; dedup_key() output hits this with probability 2^-63.
 *
 * Returns DEDUP_NEW, DEDUP_DUPLICATE or DEDUP_FULL as described above. Never blocks on another
 * insert except to read the second half of a slot whose first half matches key, which the
 * inserting thread is writing at that moment. */
enum dedup_result dedup_insert(struct dedup *d, const uint8_t key[DEDUP_KEY_LEN], uint64_t now_ms);

/* dedup_prefetch asks the CPU for the slots an insert or lookup of key would look at first,
 * and returns at once (nothing is read but the tables' headers; no pin, no locked
 * instruction). Every probe lands on a random slot, a cache miss in a large table: a caller
 * that knows its next key while it still has other work (the next event of a batch) overlaps
 * the two. */
void dedup_prefetch(struct dedup *d, const uint8_t key[DEDUP_KEY_LEN]);

/* dedup_contains reports whether key would be a duplicate for an insert at now_ms, without
 * inserting it and without rotating (a now_ms past the clock only ages keys out of the
 * answer). */
bool dedup_contains(struct dedup *d, const uint8_t key[DEDUP_KEY_LEN], uint64_t now_ms);

/* dedup_stats fills *out with a snapshot; the counts are read one by one while other threads
 * may be inserting, so they are each exact at some instant but not at the same one. */
void dedup_stats(struct dedup *d, struct dedup_stats *out);

/* dedup_key derives the table key of an event: the first 128 bits of
 * SHA-256(profile_name || 0x00 || key). The NUL makes the framing unambiguous (profile names
 * are C strings). SHA-256 rather than a faster keyed hash such as SipHash: an idempotency key
 * is chosen by the client, and only a collision-resistant hash stops one client from crafting a
 * key that collides with another's event and gets it dropped as a duplicate; and the result does
 * not depend on a per-process secret, so keys recomputed from the journal after a restart match
 * the ones inserted before it. (Where keys land in the table is still randomised per table, so
 * a client cannot grind keys into one long probe run.) */
void dedup_key(uint8_t out[DEDUP_KEY_LEN], const char *profile_name, const uint8_t *key,
               size_t key_len);

#endif

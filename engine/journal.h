/* journal.h: the durable, append-only record journal of `hookring serve`.
 *
 * Records are opaque to the journal: a caller-defined type byte and a payload. Each gets the
 * next sequence number (1, 2, 3, ... with no gaps) and is framed with its length and CRC32C.
 * Records go to segment files in one directory, named after the sequence number of their first
 * record (00000000000000000001.seg, ...) so that they sort; a segment is preallocated to its
 * full size when created and the directory is fsynced then.
 *
 * Group commit. journal_append() copies the record into the current batch and returns at once.
 * The batch is written with one write and one fdatasync (linked in the ring) when it holds
 * batch_records records or batch_bytes bytes, or batch_delay_ns after its first record,
 * whichever comes first; but once a waiter waits for it (journal_append with a waiter, or
 * journal_wait), at the end of the ring's current iteration: an acknowledgement is not held
 * back to gather more, only records nobody waits for are. At most one batch is in flight per
 * journal; records appended meanwhile
 * form the next batch, which is written as soon as the one in flight is durable. A record's
 * waiter is called only after the fdatasync covering it succeeded: acknowledgement means
 * durable. A failed write or fdatasync stops the journal for good (a failed fdatasync may have
 * dropped dirty pages the kernel will not write again): every waiter still pending gets the
 * error and later appends get -EIO.
 *
 * Recovery. journal_open() checks every segment. A damaged record at the end of the last
 * segment followed only by zeros or garbage is a write torn by a crash: it was never
 * acknowledged, so it is cut off (the file is truncated there and preallocated again). Damage
 * anywhere else, that is a bad record followed by a valid one or a bad record in a segment that
 * is not the last, refuses the open with a message naming the file and the byte offset.
 * journal_replay() then hands every record to the caller in order.
 *
 * On disk (all integers little-endian):
 *
 *   segment header, 32 bytes:
 *     0  u32  CRC32C of bytes 4..31
 *     4  u8   magic "hookrjnl" (8 bytes)
 *     12 u32  version (1)
 *     16 u64  sequence number of the segment's first record (= the file name)
 *     24 u64  reserved, 0
 *   then records back to back, then zeros up to the preallocated size:
 *     0  u32  CRC32C of bytes 4..23 (the header, so a damaged length is never trusted)
 *     4  u8   magic 0xA7 (so that zeros are never a record)
 *     5  u8   type
 *     6  u16  flags, 0
 *     8  u64  seq (never 0)
 *     16 u32  payload length (at most JOURNAL_RECORD_MAX)
 *     20 u32  CRC32C of the payload
 *     24      payload
 *
 * One thread: a journal belongs to the ring (and thread) it was opened with. */
#ifndef HOOKRING_JOURNAL_H
#define HOOKRING_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common.h"
#include "ring.h"

#define JOURNAL_SEG_HDR_SIZE 32
#define JOURNAL_REC_HDR_SIZE 24
#define JOURNAL_REC_MAGIC 0xA7
#define JOURNAL_RECORD_MAX (16u << 20) /* largest payload the format accepts */
#define JOURNAL_VERSION 1

/* ---- CRC32C (Castagnoli) ------------------------------------------------------------------ */

/* journal_crc32c extends crc (0 to start) over p[0..len): the iSCSI / ext4 CRC32C, computed with
 * the SSE4.2 crc32 instruction when the CPU has it (checked once, at first use), else with
 * slicing-by-8 tables. journal_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t journal_crc32c(uint32_t crc, const void *p, size_t len);

/* The two implementations behind journal_crc32c, for tests and benchmarks.
 * journal_crc32c_hw may only be called when journal_crc32c_hw_available() is true. */
uint32_t journal_crc32c_sw(uint32_t crc, const void *p, size_t len);
uint32_t journal_crc32c_hw(uint32_t crc, const void *p, size_t len);
bool journal_crc32c_hw_available(void);

/* ---- the record codec (no I/O, no allocation) -------------------------------------------- */

struct journal_record {
    uint64_t seq;
    const uint8_t *payload; /* borrowed: points into the decoded bytes */
    uint32_t len;           /* payload bytes */
    uint8_t type;
    size_t size; /* bytes the framed record takes (header + payload); on JOURNAL_NEED_MORE, the
                    bytes needed (JOURNAL_REC_HDR_SIZE when even the header is incomplete) */
};

enum journal_decode_status {
    JOURNAL_OK = 0,    /* out describes the record at the start of p */
    JOURNAL_NEED_MORE, /* p is the start of a record that continues past len */
    JOURNAL_CORRUPT,   /* no valid record starts at p */
};

/* journal_decode decodes the record at the start of p[0..len). The header's CRC is checked
 * before its length is believed, so a damaged length gives JOURNAL_CORRUPT, never a
 * JOURNAL_NEED_MORE that would swallow what follows. */
enum journal_decode_status journal_decode(const uint8_t *p, size_t len, struct journal_record *out);

/* journal_record_size is the framed size of a record with len payload bytes. */
static inline size_t journal_record_size(size_t len)
{
    return JOURNAL_REC_HDR_SIZE + len;
}

/* journal_encode frames a record into out, which must have journal_record_size(len) bytes;
 * len <= JOURNAL_RECORD_MAX and seq != 0 (journal_decode refuses anything else). */
void journal_encode(uint8_t *out, uint8_t type, uint64_t seq, const void *payload, size_t len);

/* journal_seg_header_encode writes a segment header for base_seq into out[32]. */
void journal_seg_header_encode(uint8_t out[JOURNAL_SEG_HDR_SIZE], uint64_t base_seq);

/* What journal_scan found in one segment image. */
enum journal_scan_end {
    JOURNAL_SCAN_CLEAN,    /* records, then nothing or only zeros */
    JOURNAL_SCAN_TORN,     /* records, then a damaged record followed by no valid one */
    JOURNAL_SCAN_BAD_HEAD, /* the segment header is damaged and no valid record follows */
    JOURNAL_SCAN_DAMAGED,  /* damage followed by a valid record: refuse */
};

struct journal_scan_result {
    enum journal_scan_end end_kind;
    size_t end;        /* offset just past the last good record (JOURNAL_SEG_HDR_SIZE if none) */
    uint64_t nrecords; /* good records before end */
    uint64_t last_seq; /* seq of the last good record; base_seq - 1 when there is none */
    size_t bad_off;    /* TORN, BAD_HEAD, DAMAGED: where the damage starts */
    size_t dirty_end;  /* TORN, BAD_HEAD: offset just past the last non-zero byte */
    size_t valid_off;  /* DAMAGED: a valid record found after the damage */
    const char *why;   /* TORN, BAD_HEAD, DAMAGED: what is wrong at bad_off */
};

/* journal_scan checks a whole segment image p[0..len) whose file name says base_seq: the
 * header, then the records, which must carry base_seq, base_seq + 1, ... Pure: no I/O, no
 * allocation. Sets out in every case. */
void journal_scan(const uint8_t *p, size_t len, uint64_t base_seq, struct journal_scan_result *out);

/* ---- the journal -------------------------------------------------------------------------- */

struct journal;
struct journal_waiter;

/* journal_done_cb reports that w's record is durable (res 0) or never will be (res -errno: the
 * journal failed). It runs on the ring thread, from a completion, the journal's timer or
 * journal_close, never from inside journal_append or journal_flush; it may call journal_append,
 * not journal_close. */
typedef void journal_done_cb(struct journal *j, struct journal_waiter *w, int res);

/* A waiter is embedded in whatever waits for its record (an API request); it must stay valid
 * until its callback has run. */
struct journal_waiter {
    journal_done_cb *cb;
    uint64_t seq; /* set by journal_append: the record's sequence number */
    struct journal_waiter *next;
};

/* journal_replay_cb gets one record; rec->payload is valid only during the call. A non-zero
 * return stops the replay and is what journal_replay returns. */
typedef int journal_replay_cb(void *arg, const struct journal_record *rec);

struct journal_opts {
    uint64_t segment_size;  /* bytes per segment file, preallocated; 0 = 64 MiB */
    uint32_t batch_records; /* write a batch when it has this many records; 0 = 512 */
    size_t batch_bytes;     /* ... or this many bytes; 0 = 1 MiB */
    int64_t batch_delay_ns; /* ... or this long after its first record (when nobody waits
                             * for it); 0 = 1 ms */
    size_t max_pending;     /* bytes appended but not yet durable; beyond: -EAGAIN; 0 = 8 MiB */
    /* TEST ONLY: when set, every batch's fdatasync result goes through this function, whose
     * return value is used instead (return -EIO to play a failing disk). Never set it in
     * production. */
    int (*test_sync_hook)(void *arg, int res);
    void *test_hook_arg;
};

struct journal_stats {
    uint64_t bytes_written;    /* bytes written by batches (records and segment headers) */
    uint64_t records;          /* records made durable */
    uint64_t batches;          /* batches made durable */
    uint64_t fsyncs;           /* fsync and fdatasync calls (batches, directory, recovery) */
    uint64_t last_fsync_us;    /* last batch: from submitting its write to its fdatasync done */
    uint64_t max_fsync_us;     /* the largest of those */
    uint64_t eagain;           /* appends refused for backpressure */
    uint64_t segments;         /* segment files now */
    uint64_t segments_created; /* since open */
    uint64_t segments_dropped; /* since open */
    uint64_t torn_bytes;       /* damaged bytes cut off the last segment at open */
    uint64_t pending_bytes;    /* appended, not yet durable (now) */
    uint64_t stuck_retries;    /* attempts to create a segment that found no room */
    /* now: -ENOSPC or -EDQUOT while there is no room for the next segment (what is appended
     * waits, within max_pending, and the segment is tried again every second); else 0 */
    int stuck;
};

/* One segment file (private to journal.c). */
struct journal_seg {
    uint64_t base_seq; /* the file name */
    uint64_t last_seq; /* its last durable record (base_seq - 1 when empty) */
    uint64_t end;      /* offset just past that record */
    /* where record base_seq + i starts, for the records replayed or written since open, in
     * order (journal_read): 4 bytes per record */
    uint32_t *offs;
    size_t noffs, offs_cap;
    bool offs_lost; /* out of memory once: this segment's records cannot be read back */
};

struct journal {
    struct ring *r;
    struct journal_opts o;
    char *dir;
    int dirfd;        /* the directory: fsynced on segment creation (through the ring too) */
    int lockfd;       /* the directory again, flock'ed while open: never handed to the ring,
                         whose requests may hold their file a while after completing (a close
                         then would not drop the lock at once) */
    int fd;           /* the last segment, the one being written */
    uint64_t seg_cap; /* its size */
    uint64_t seg_off; /* where the next batch goes in it */
    struct journal_seg *segs;
    size_t nsegs, segs_cap;
    uint64_t next_seq; /* of the next record appended */
    /* the batch being filled */
    struct buf cur;
    struct journal_waiter *cur_head, **cur_tail;
    uint32_t cur_nrec;
    uint64_t cur_last_seq;
    /* the batch in flight: its buffers belong to the kernel until every op completed */
    struct buf fly;
    struct journal_waiter *fly_head;
    uint32_t fly_nrec;
    uint64_t fly_last_seq;
    uint64_t fly_off;   /* where it was written */
    bool fly_new_seg;   /* it starts a new segment: header and directory fsync are part of it */
    bool seg_unwritten; /* the last segment was created at a roll-over and has no batch yet */
    size_t write_len;   /* bytes the batch's writev must write */
    bool inflight;
    unsigned ops_left;
    int batch_res;
    int64_t batch_t0;
    struct op op_write, op_sync, op_dirsync;
    struct iovec iov[2];
    uint8_t seg_hdr[JOURNAL_SEG_HDR_SIZE];
    struct ring_timer timer;
    uint64_t roll_at; /* journal_new_segment: the record that starts the next segment (0: none) */
    int rfd;          /* journal_read's last older segment (-1: none), rfd_base its name */
    uint64_t rfd_base;
    int failed; /* 0, or the error that stopped the journal */
    char errmsg[256];
    struct journal_stats st;
};

/* journal_open opens (creating it if missing) the journal in dir, recovering a torn tail, and
 * binds it to ring r (which needs one free timer slot and three SQ entries). o may be NULL for
 * the defaults. Takes an exclusive lock on the directory. Returns 0, or -errno with a message
 * in err: -EIO for corruption (naming the file and the byte offset), -EBUSY when another journal
 * has the directory, -EINVAL for bad options. Nothing to clean up on failure. */
int journal_open(struct journal *j, struct ring *r, const char *dir, const struct journal_opts *o,
                 char *err, size_t errlen);

/* journal_replay hands every durable record, oldest first, to cb. Reads the files synchronously
 * (meant for start-up, before appending). Returns 0, cb's non-zero return, or -errno (-EIO if a
 * file changed since it was checked; journal_error() says where). */
int journal_replay(struct journal *j, journal_replay_cb *cb, void *arg);

/* journal_read reads durable record seq back from its segment file into out (replacing what
 * out held) and describes it in rec, whose payload points into out. The records that can be
 * read are those journal_replay handed over and those made durable since open. Synchronous
 * (one pread). Returns 0; -ENOENT when there is no such record to read (not durable yet, in a
 * dropped segment, or never indexed); -EIO when the bytes found are not that record, with
 * journal_error() naming the file and byte offset; -ENOMEM or another -errno. */
int journal_read(struct journal *j, uint64_t seq, struct buf *out, struct journal_record *rec);

/* journal_durable_seq is the sequence number of the last durable record (0 when none). */
uint64_t journal_durable_seq(const struct journal *j);

/* journal_append queues a record and returns at once; w (may be NULL: nobody waits) gets its
 * sequence number now and its callback once the record is durable. Returns 0; -EAGAIN when the
 * bytes not yet durable would exceed max_pending (try later); -EMSGSIZE when the record can never
 * fit (a payload over JOURNAL_RECORD_MAX, max_pending or a segment); -ENOMEM; -EIO once the
 * journal has failed. On error nothing was queued and w is not called. */
int journal_append(struct journal *j, uint8_t type, const void *payload, size_t len,
                   struct journal_waiter *w);

/* journal_appendv is journal_append of the payload iov[0..niov) joined, copied straight into
 * the batch: a caller whose record is a few small fields around a large text saves copying the
 * text into a buffer of its own first. */
int journal_appendv(struct journal *j, uint8_t type, const struct iovec *iov, size_t niov,
                    struct journal_waiter *w);

/* journal_wait has w called once every record appended so far is durable (with the waiters of
 * the last of them, in order), appending nothing. Returns 0 (w will be called, never from
 * inside this call), 1 when every record is durable already (w is not called: go on at once),
 * or -EIO when the journal has failed. */
int journal_wait(struct journal *j, struct journal_waiter *w);

/* journal_flush writes the current batch now instead of waiting for its trigger (when no batch is
 * in flight; otherwise it goes as soon as the one in flight is done). Returns 0 or -EIO. */
int journal_flush(struct journal *j);

/* journal_drop_before deletes the oldest segments whose records all have a sequence number below
 * seq (never the segment being written), then fsyncs the directory. What may go is the caller's
 * call: it re-appends whatever state it still needs first. Synchronous. Returns 0 or -errno. */
int journal_drop_before(struct journal *j, uint64_t seq);

/* journal_new_segment makes the next record appended the first of a new segment (unless the
 * segment being written holds no record yet) and returns its sequence number: every record
 * before it then lies in older segments, which journal_drop_before(j, that number) deletes
 * whole. Nothing is written now. One cut at a time: while an earlier cut's record is appended
 * but not yet being written, it returns 0 and does nothing (try again later). */
uint64_t journal_new_segment(struct journal *j);

/* journal_stats copies the counters into out. */
void journal_stats(const struct journal *j, struct journal_stats *out);

/* journal_last_seq is the sequence number of the last record appended (0 when none ever was). */
static inline uint64_t journal_last_seq(const struct journal *j)
{
    return j->next_seq - 1;
}

/* journal_failed tells whether the journal stopped on an error (appends now get -EIO). */
static inline bool journal_failed(const struct journal *j)
{
    return j->failed != 0;
}

/* journal_error describes the failure that stopped the journal or the last replay error ("" when
 * none). */
const char *journal_error(const struct journal *j);

/* journal_close writes what is still queued and waits for it (running the ring: other owners'
 * completions are handled meanwhile; not to be called from a ring callback), then closes the
 * files and frees the memory. Every waiter has been called when it returns. Returns 0, or the
 * error that stopped the journal (then the waiters got it too). */
int journal_close(struct journal *j);

#endif

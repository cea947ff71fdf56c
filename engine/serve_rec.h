/* serve_rec.h: the little-endian encoding of serve's journal records (serve.c, serve_keep.c):
 * writers that append to a buf (non-zero when it is full), and a bounds-checked reader. Not a
 * public interface. */
#ifndef HOOKRING_SERVE_REC_H
#define HOOKRING_SERVE_REC_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common.h"

static inline int put_u8(struct buf *b, uint8_t v)
{
    return buf_put(b, &v, 1);
}

static inline int put_u32(struct buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return buf_put(b, x, 4);
}

static inline int put_u64(struct buf *b, uint64_t v)
{
    return put_u32(b, (uint32_t)v) | put_u32(b, (uint32_t)(v >> 32));
}

static inline int put_str(struct buf *b, const void *p, size_t n)
{
    return put_u32(b, (uint32_t)n) | buf_put(b, p, n);
}

static inline int put_cstr(struct buf *b, const char *p)
{
    return put_str(b, p, strlen(p));
}

/* A bounds-checked reader: any overrun sets bad and yields zeros. */
struct rd {
    const uint8_t *p;
    size_t len, off;
    bool bad;
};

static inline const uint8_t *rd_take(struct rd *r, size_t n)
{
    if (r->bad || r->len - r->off < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static inline uint32_t rd_u32(struct rd *r)
{
    const uint8_t *p = rd_take(r, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
             : 0;
}

static inline uint64_t rd_u64(struct rd *r)
{
    uint64_t lo = rd_u32(r);
    return lo | (uint64_t)rd_u32(r) << 32;
}

static inline uint8_t rd_u8(struct rd *r)
{
    const uint8_t *p = rd_take(r, 1);
    return p ? p[0] : 0;
}

static inline struct slice rd_str(struct rd *r)
{
    uint32_t n = rd_u32(r);
    const uint8_t *p = rd_take(r, n);
    return p ? slice_of(p, n) : slice_of((const uint8_t *)"", 0);
}

static inline void rd_cstr(struct rd *r, char *out, size_t cap)
{
    struct slice s = rd_str(r);
    if (s.len >= cap) {
        r->bad = true;
        out[0] = 0;
        return;
    }
    memcpy(out, s.p, s.len);
    out[s.len] = 0;
}

/* What an event record (SREC_EVENT) and a compaction carry (SREC_CARRY) begin with. */
struct rec_event_head {
    uint64_t anchor;   /* a carry's: UINT64_MAX in the record holding the text, else the index
                          of a delivery an earlier one holds; UINT64_MAX for an event record */
    int64_t ingest_ms; /* the event's ingest time */
    struct slice json; /* its canonical text (empty in a carry's continuation) */
    uint32_t n;        /* the deliveries that follow */
};

/* The fewest bytes one delivery after that head takes: its index and webhook id (an empty id's
 * length), and in a carry its status, attempts, next time, reason length, final time and
 * history count. */
#define REC_EVENT_DLV_MIN (8 + 4)
#define REC_CARRY_DLV_MIN (8 + 4 + 1 + 4 + 8 + 4 + 8 + 4)
/* ... and one attempt of a carried history: time, status, result, latency, excerpt length */
#define REC_ATTEMPT_MIN (8 + 4 + 1 + 4 + 4)

/* rd_event_head reads that head (carry: the record is an SREC_CARRY); a count of deliveries
 * that cannot fit in what is left of the record makes it bad (a replay then stops at once
 * rather than reading billions of deliveries that are not there). */
static inline struct rec_event_head rd_event_head(struct rd *r, bool carry)
{
    struct rec_event_head h;
    h.anchor = carry ? rd_u64(r) : UINT64_MAX;
    h.ingest_ms = (int64_t)rd_u64(r);
    h.json = rd_str(r);
    h.n = rd_u32(r);
    if (!r->bad && h.n > (r->len - r->off) / (carry ? REC_CARRY_DLV_MIN : REC_EVENT_DLV_MIN)) {
        r->bad = true;
    }
    return h;
}

#endif

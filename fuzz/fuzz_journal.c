/* fuzz_journal.c: libFuzzer target for the journal's record decoder and segment scanner.
 *
 * Targets: journal_decode, journal_encode (round trip), journal_scan. Deterministic: no I/O, no
 * clock, no randomness. The input is read twice:
 *   - as a stream of records, the way recovery walks a segment: every OK record must lie inside
 *     the input and re-encode to exactly its bytes, NEED_MORE must ask for more than is left,
 *     and a CORRUPT position is skipped one byte at a time (the scanner's search);
 *   - as a segment image (its base sequence number taken from the header field, so a valid
 *     header is reachable), checking what journal_scan reports against the bytes. */
#include <stdlib.h>

#include "journal.h"

static uint8_t scratch[JOURNAL_REC_HDR_SIZE + 65536];

static void check_stream(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct journal_record rec;
        enum journal_decode_status st = journal_decode(data + off, size - off, &rec);
        if (st == JOURNAL_NEED_MORE) {
            if (rec.size <= size - off || rec.size < JOURNAL_REC_HDR_SIZE) {
                abort(); /* asked for bytes it already had */
            }
            break;
        }
        if (st == JOURNAL_CORRUPT) {
            off++;
            continue;
        }
        if (st != JOURNAL_OK || rec.size != journal_record_size(rec.len) || rec.size > size - off ||
            rec.seq == 0 || rec.len > JOURNAL_RECORD_MAX) {
            abort();
        }
        if (rec.payload != data + off + JOURNAL_REC_HDR_SIZE) {
            abort(); /* the payload span is the record's own bytes */
        }
        if (rec.size > sizeof(scratch)) {
            abort(); /* cannot happen below max_len */
        }
        journal_encode(scratch, rec.type, rec.seq, rec.payload, rec.len);
        if (memcmp(scratch, data + off, rec.size) != 0) {
            abort(); /* the encoding is canonical: decode then encode gives the same bytes */
        }
        off += rec.size;
    }
}

static bool all_zero(const uint8_t *p, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

static void check_scan(const uint8_t *data, size_t size)
{
    uint64_t base = 1;
    if (size >= JOURNAL_SEG_HDR_SIZE) {
        memcpy(&base, data + 16, 8); /* little-endian hosts only, as the engine */
        if (base == 0) {
            base = 1;
        }
    }
    struct journal_scan_result sr;
    journal_scan(data, size, base, &sr);

    if (sr.end_kind == JOURNAL_SCAN_BAD_HEAD) {
        if (sr.nrecords || sr.end != JOURNAL_SEG_HDR_SIZE || sr.dirty_end > size || !sr.why) {
            abort();
        }
        return;
    }
    if (sr.end_kind == JOURNAL_SCAN_DAMAGED) {
        if (!sr.why || sr.valid_off < sr.bad_off || sr.valid_off > size) {
            abort();
        }
        if (sr.valid_off > sr.bad_off) {
            struct journal_record rec;
            if (journal_decode(data + sr.valid_off, size - sr.valid_off, &rec) != JOURNAL_OK) {
                abort(); /* "followed by a valid record" must be true */
            }
        }
    }
    if (sr.end_kind == JOURNAL_SCAN_DAMAGED && sr.bad_off == 0) {
        return; /* a header naming another sequence number or version */
    }
    /* the good records: consecutive from base, ending at end */
    if (sr.end > size || sr.end < JOURNAL_SEG_HDR_SIZE || sr.last_seq + 1 - base != sr.nrecords) {
        abort();
    }
    size_t off = JOURNAL_SEG_HDR_SIZE;
    uint64_t expect = base;
    while (off < sr.end) {
        struct journal_record rec;
        if (journal_decode(data + off, size - off, &rec) != JOURNAL_OK || rec.seq != expect) {
            abort();
        }
        off += rec.size;
        expect++;
    }
    if (off != sr.end) {
        abort();
    }
    switch (sr.end_kind) {
    case JOURNAL_SCAN_CLEAN:
        if (!all_zero(data, sr.end, size)) {
            abort(); /* what follows a clean end is preallocated zeros */
        }
        break;
    case JOURNAL_SCAN_TORN:
        if (sr.bad_off != sr.end || sr.dirty_end <= sr.end || sr.dirty_end > size ||
            !all_zero(data, sr.dirty_end, size) || !sr.why) {
            abort();
        }
        /* torn means no valid later record anywhere after the damage */
        for (size_t q = sr.end + 1; q < sr.dirty_end; q++) {
            struct journal_record rec;
            if (journal_decode(data + q, size - q, &rec) == JOURNAL_OK && rec.seq > sr.last_seq) {
                abort();
            }
        }
        break;
    case JOURNAL_SCAN_DAMAGED:
        if (sr.bad_off != sr.end) {
            abort();
        }
        break;
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_stream(data, size);
    check_scan(data, size);
    return 0;
}

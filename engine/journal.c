/* journal.c: the durable journal: CRC32C, the record codec and segment scanner (pure), segment
 * files, recovery, and group commit on the ring.
 *
 * The batch's write and fdatasync (and, for a batch that starts a segment, the directory's
 * fsync) are submitted as one chain of linked SQEs with liburing directly, as ring.c has no
 * fsync op yet; every call here exists in liburing 2.3. */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define JOURNAL_HAVE_SSE42 1
#endif

#define JOURNAL_DEFAULT_SEGMENT (64ull << 20)
#define JOURNAL_DEFAULT_BATCH_RECORDS 512
#define JOURNAL_DEFAULT_BATCH_BYTES (1u << 20)
#define JOURNAL_DEFAULT_DELAY_NS 1000000
#define JOURNAL_DEFAULT_MAX_PENDING (8u << 20)
#define JOURNAL_MIN_SEGMENT 4096
#define JOURNAL_STUCK_RETRY_NS 1000000000 /* a segment that found no room: tried again so often */
#define JOURNAL_SEG_NAME_LEN 24           /* 20 digits + ".seg" */

static const uint8_t seg_magic[8] = {'h', 'o', 'o', 'k', 'r', 'j', 'n', 'l'};

/* ======== little-endian fields ============================================================== */

static inline uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static inline void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* ======== CRC32C ============================================================================ */

#define CRC32C_POLY 0x82F63B78u /* Castagnoli, reflected */

static uint32_t crc_tab[8][256];
static bool crc_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

#ifdef JOURNAL_HAVE_SSE42
/* The hardware CRC runs three streams at once (the crc32 instruction's latency is three times
 * its throughput), on three adjacent blocks, then shifts each stream's CRC over the blocks that
 * follow it and adds them: appending n zero bytes to a CRC is a linear map, applied here with
 * four byte-indexed tables per block size (M. Adler's method, crc32c.c). Sizes are powers of
 * two (crc_zeros_op needs it). A record of 1.2 KiB (an event) takes three long rounds and a
 * tail: 115 -> 60 ns here (128-byte blocks beat 256 and 512 for that size). */
#define CRC_LONG 128
#define CRC_SHORT 32
static uint32_t crc_long[4][256], crc_short[4][256];

/* gf2_times multiplies the 32x32 bit matrix mat (one column per word) by vec. */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
    uint32_t sum = 0;
    for (; vec; vec >>= 1, mat++) {
        if (vec & 1) {
            sum ^= *mat;
        }
    }
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
    for (int n = 0; n < 32; n++) {
        square[n] = gf2_times(mat, mat[n]);
    }
}

/* crc_zeros_op puts in even the operator that appends len zero bytes to a (raw) CRC; len is a
 * power of two. */
static void crc_zeros_op(uint32_t *even, size_t len)
{
    uint32_t odd[32];
    odd[0] = CRC32C_POLY; /* one zero bit */
    for (int n = 1; n < 32; n++) {
        odd[n] = 1u << (n - 1);
    }
    gf2_square(even, odd); /* two zero bits */
    gf2_square(odd, even); /* four */
    /* each square doubles: the first one below gives a byte, and len halves each time */
    for (;;) {
        gf2_square(even, odd);
        len >>= 1;
        if (len == 0) {
            return;
        }
        gf2_square(odd, even);
        len >>= 1;
        if (len == 0) {
            memcpy(even, odd, sizeof(odd));
            return;
        }
    }
}

static void crc_zeros(uint32_t zeros[4][256], size_t len)
{
    uint32_t op[32];
    crc_zeros_op(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        for (int k = 0; k < 4; k++) {
            zeros[k][n] = gf2_times(op, n << (8 * k));
        }
    }
}

static uint32_t crc_shift(const uint32_t zeros[4][256], uint32_t crc)
{
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^ zeros[2][(crc >> 16) & 0xff] ^
           zeros[3][crc >> 24];
}
#endif

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        }
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++) {
            uint32_t prev = crc_tab[t - 1][i];
            crc_tab[t][i] = (prev >> 8) ^ crc_tab[0][prev & 0xff];
        }
    }
#ifdef JOURNAL_HAVE_SSE42
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
    crc_zeros(crc_long, CRC_LONG);
    crc_zeros(crc_short, CRC_SHORT);
#endif
}

bool journal_crc32c_hw_available(void)
{
    pthread_once(&crc_once, crc_init);
    return crc_hw;
}

/* Slicing-by-8: eight table lookups per 8 bytes instead of one per byte. */
uint32_t journal_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    while (len >= 8) {
        uint32_t lo = c ^ get_le32(p);
        uint32_t hi = get_le32(p + 4);
        c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
            crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
            crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) {
        c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xff];
    }
    return ~c;
}

#ifdef JOURNAL_HAVE_SSE42
/* crc_hw_run is journal_crc32c_hw once crc_init has run (its callers made sure). */
__attribute__((target("sse4.2"))) static uint32_t crc_hw_run(uint32_t crc, const void *buf,
                                                             size_t len)
{
    const uint8_t *p = buf;
    uint32_t c32 = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        c32 = _mm_crc32_u8(c32, *p++);
        len--;
    }
    uint64_t c = c32;
    for (size_t block = CRC_LONG; block >= CRC_SHORT; block = block == CRC_LONG ? CRC_SHORT : 0) {
        const uint32_t(*zeros)[256] = block == CRC_LONG ? crc_long : crc_short;
        while (len >= 3 * block) {
            uint64_t c1 = 0, c2 = 0;
            for (const uint8_t *end = p + block; p < end; p += 8) {
                uint64_t v0, v1, v2;
                memcpy(&v0, p, 8);
                memcpy(&v1, p + block, 8);
                memcpy(&v2, p + 2 * block, 8);
                c = _mm_crc32_u64(c, v0);
                c1 = _mm_crc32_u64(c1, v1);
                c2 = _mm_crc32_u64(c2, v2);
            }
            c = crc_shift(zeros, (uint32_t)c) ^ (uint32_t)c1;
            c = crc_shift(zeros, (uint32_t)c) ^ (uint32_t)c2;
            p += 2 * block;
            len -= 3 * block;
        }
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    c32 = (uint32_t)c;
    while (len--) {
        c32 = _mm_crc32_u8(c32, *p++);
    }
    return ~c32;
}

uint32_t journal_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init); /* the 3-way rounds' tables */
    return crc_hw_run(crc, buf, len);
}
#else
uint32_t journal_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
    return journal_crc32c_sw(crc, buf, len);
}
#endif

uint32_t journal_crc32c(uint32_t crc, const void *p, size_t len)
{
    pthread_once(&crc_once, crc_init);
#ifdef JOURNAL_HAVE_SSE42
    if (crc_hw) {
        return crc_hw_run(crc, p, len);
    }
#endif
    return journal_crc32c_sw(crc, p, len);
}

/* ======== records and segment headers (pure) ================================================ */

#ifdef JOURNAL_HAVE_SSE42
/* head_crc_hw is the CRC32C of a header's bytes 4-23 computed from the fields themselves: read
 * back from the header just written (byte stores behind a 1 KiB copy), they stalled until the
 * stores were done. The crc32 instructions take their operands' bytes in little-endian order,
 * the header's. */
__attribute__((target("sse4.2"))) static uint32_t head_crc_hw(uint8_t type, uint64_t seq,
                                                              uint32_t len, uint32_t crc)
{
    uint32_t c = ~0u;
    c = _mm_crc32_u8(c, JOURNAL_REC_MAGIC);
    c = _mm_crc32_u8(c, type);
    c = _mm_crc32_u16(c, 0);
    c = (uint32_t)_mm_crc32_u64(c, seq);
    c = _mm_crc32_u32(c, len);
    c = _mm_crc32_u32(c, crc);
    return ~c;
}
#endif

/* encode_head writes a record's header, given its payload's length and CRC. */
static void encode_head(uint8_t *out, uint8_t type, uint64_t seq, size_t len, uint32_t crc)
{
    out[4] = JOURNAL_REC_MAGIC;
    out[5] = type;
    put_le16(out + 6, 0);
    put_le64(out + 8, seq);
    put_le32(out + 16, (uint32_t)len);
    put_le32(out + 20, crc);
#ifdef JOURNAL_HAVE_SSE42
    if (crc_hw) {
        put_le32(out, head_crc_hw(type, seq, (uint32_t)len, crc));
        return;
    }
#endif
    put_le32(out, journal_crc32c(0, out + 4, JOURNAL_REC_HDR_SIZE - 4));
}

/* encode_iov frames the record of the payload iov[0..niov) joined (len bytes) into out: the
 * pieces are copied after the header, and the CRC is computed from the pieces, not read back
 * from the copy (loads from bytes just stored stall until the stores are done). */
static void encode_iov(uint8_t *out, uint8_t type, uint64_t seq, const struct iovec *iov,
                       size_t niov, size_t len)
{
    size_t off = JOURNAL_REC_HDR_SIZE;
    uint32_t crc = 0;
    for (size_t i = 0; i < niov; i++) {
        if (iov[i].iov_len) {
            crc = journal_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
            memcpy(out + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
    }
    encode_head(out, type, seq, len, crc);
}

void journal_encode(uint8_t *out, uint8_t type, uint64_t seq, const void *payload, size_t len)
{
    struct iovec iov = {(void *)payload, len};
    encode_iov(out, type, seq, &iov, 1, len);
}

enum journal_decode_status journal_decode(const uint8_t *p, size_t len, struct journal_record *out)
{
    memset(out, 0, sizeof(*out));
    if (len > 4 && p[4] != JOURNAL_REC_MAGIC) {
        return JOURNAL_CORRUPT;
    }
    if (len < JOURNAL_REC_HDR_SIZE) {
        out->size = JOURNAL_REC_HDR_SIZE;
        return JOURNAL_NEED_MORE;
    }
    if (get_le32(p) != journal_crc32c(0, p + 4, JOURNAL_REC_HDR_SIZE - 4)) {
        return JOURNAL_CORRUPT;
    }
    uint64_t seq = get_le64(p + 8);
    uint32_t plen = get_le32(p + 16);
    if (get_le16(p + 6) != 0 || seq == 0 || plen > JOURNAL_RECORD_MAX) {
        return JOURNAL_CORRUPT;
    }
    size_t size = JOURNAL_REC_HDR_SIZE + (size_t)plen;
    if (len < size) {
        out->size = size;
        return JOURNAL_NEED_MORE;
    }
    if (get_le32(p + 20) != journal_crc32c(0, p + JOURNAL_REC_HDR_SIZE, plen)) {
        return JOURNAL_CORRUPT;
    }
    out->seq = seq;
    out->type = p[5];
    out->len = plen;
    out->payload = p + JOURNAL_REC_HDR_SIZE;
    out->size = size;
    return JOURNAL_OK;
}

/* decode_why names what journal_decode found wrong at p, for error messages. */
static const char *decode_why(const uint8_t *p, size_t len)
{
    if (len < JOURNAL_REC_HDR_SIZE) {
        return len > 4 && p[4] != JOURNAL_REC_MAGIC ? "no record magic"
                                                    : "record header cut short by the end of file";
    }
    if (p[4] != JOURNAL_REC_MAGIC) {
        return "no record magic";
    }
    if (get_le32(p) != journal_crc32c(0, p + 4, JOURNAL_REC_HDR_SIZE - 4)) {
        return "record header CRC mismatch";
    }
    if (get_le16(p + 6) != 0 || get_le64(p + 8) == 0 || get_le32(p + 16) > JOURNAL_RECORD_MAX) {
        return "invalid record header fields";
    }
    if (len < JOURNAL_REC_HDR_SIZE + (size_t)get_le32(p + 16)) {
        return "record cut short by the end of file";
    }
    return "record payload CRC mismatch";
}

void journal_seg_header_encode(uint8_t out[JOURNAL_SEG_HDR_SIZE], uint64_t base_seq)
{
    memcpy(out + 4, seg_magic, sizeof(seg_magic));
    put_le32(out + 12, JOURNAL_VERSION);
    put_le64(out + 16, base_seq);
    put_le64(out + 24, 0);
    put_le32(out, journal_crc32c(0, out + 4, JOURNAL_SEG_HDR_SIZE - 4));
}

/* last_nonzero_end is one past the last non-zero byte of p[0..len), 0 when all are zero. */
static size_t last_nonzero_end(const uint8_t *p, size_t len)
{
    size_t n = len;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p + n - 8, 8);
        if (v) {
            break;
        }
        n -= 8;
    }
    while (n > 0 && p[n - 1] == 0) {
        n--;
    }
    return n;
}

/* find_valid looks for a valid record with seq >= min_seq starting anywhere in [from, to):
 * the proof that damage before it is not a torn tail. Returns its offset, or SIZE_MAX. The
 * magic byte filters out almost every position before a CRC is computed. */
static size_t find_valid(const uint8_t *p, size_t len, size_t from, size_t to, uint64_t min_seq)
{
    for (size_t q = from; q < to && q + 4 < len; q++) {
        if (p[q + 4] == JOURNAL_REC_MAGIC) {
            struct journal_record rec;
            if (journal_decode(p + q, len - q, &rec) == JOURNAL_OK && rec.seq >= min_seq) {
                return q;
            }
        }
    }
    return SIZE_MAX;
}

void journal_scan(const uint8_t *p, size_t len, uint64_t base_seq, struct journal_scan_result *out)
{
    memset(out, 0, sizeof(*out));
    out->end = JOURNAL_SEG_HDR_SIZE;
    out->last_seq = base_seq - 1;
    out->end_kind = JOURNAL_SCAN_CLEAN;
    size_t nz_end = last_nonzero_end(p, len);

    /* the segment header */
    const char *bad_head = NULL;
    if (len < JOURNAL_SEG_HDR_SIZE) {
        bad_head = "segment header cut short by the end of file";
    } else if (memcmp(p + 4, seg_magic, sizeof(seg_magic)) != 0) {
        bad_head = "no segment magic";
    } else if (get_le32(p) != journal_crc32c(0, p + 4, JOURNAL_SEG_HDR_SIZE - 4)) {
        bad_head = "segment header CRC mismatch";
    } else if (get_le32(p + 12) != JOURNAL_VERSION) {
        out->end_kind = JOURNAL_SCAN_DAMAGED;
        out->why = "unsupported segment version";
        return;
    } else if (get_le64(p + 16) != base_seq || get_le64(p + 24) != 0) {
        out->end_kind = JOURNAL_SCAN_DAMAGED;
        out->why = "segment header does not match the file name";
        return;
    }
    if (bad_head) {
        /* A segment whose creation was cut short has a torn header and nothing valid after. */
        out->why = bad_head;
        out->bad_off = 0;
        size_t q = find_valid(p, len, 0, nz_end, base_seq);
        if (q != SIZE_MAX) {
            out->end_kind = JOURNAL_SCAN_DAMAGED;
            out->valid_off = q;
        } else {
            out->end_kind = JOURNAL_SCAN_BAD_HEAD;
            out->dirty_end = nz_end;
        }
        return;
    }

    size_t off = JOURNAL_SEG_HDR_SIZE;
    uint64_t expect = base_seq;
    while (off < len) {
        struct journal_record rec;
        enum journal_decode_status st = journal_decode(p + off, len - off, &rec);
        if (st == JOURNAL_OK && rec.seq == expect) {
            off += rec.size;
            expect++;
            out->nrecords++;
            continue;
        }
        if (off >= nz_end) {
            break; /* only preallocated zeros from here */
        }
        out->bad_off = off;
        out->dirty_end = nz_end;
        if (st == JOURNAL_OK) {
            /* intact but out of order: no tear produces that */
            out->end_kind = JOURNAL_SCAN_DAMAGED;
            out->why = "record sequence number out of order";
            out->valid_off = off;
            break;
        }
        out->why = decode_why(p + off, len - off);
        size_t q = find_valid(p, len, off + 1, nz_end, expect);
        if (q != SIZE_MAX) {
            out->end_kind = JOURNAL_SCAN_DAMAGED;
            out->valid_off = q;
        } else {
            out->end_kind = JOURNAL_SCAN_TORN;
        }
        break;
    }
    out->end = off;
    out->last_seq = expect - 1;
}

/* ======== errors ============================================================================ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *journal_error(const struct journal *j)
{
    return j->errmsg;
}

/* ======== segment files ===================================================================== */

static void seg_name(char out[JOURNAL_SEG_NAME_LEN + 1], uint64_t base_seq)
{
    snprintf(out, JOURNAL_SEG_NAME_LEN + 1, "%020" PRIu64 ".seg", base_seq);
}

/* seg_parse_name reads a segment file name: exactly 20 digits and ".seg". */
static bool seg_parse_name(const char *name, uint64_t *base_seq)
{
    if (strlen(name) != JOURNAL_SEG_NAME_LEN || strcmp(name + 20, ".seg") != 0) {
        return false;
    }
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
        unsigned d = (unsigned)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    if (v == 0) {
        return false;
    }
    *base_seq = v;
    return true;
}

/* preallocate gives fd its full size in allocated blocks (reading as zeros), so that appends do
 * not allocate and a crash leaves zeros, not holes of unknown content, after the last record.
 * Where the file system cannot, a sparse file of that size does. */
static int preallocate(int fd, uint64_t size)
{
    if (fallocate(fd, 0, 0, (off_t)size) == 0) {
        return 0;
    }
    if (errno != EOPNOTSUPP) {
        return -errno;
    }
    return ftruncate(fd, (off_t)size) == 0 ? 0 : -errno;
}

static int segs_push(struct journal *j, uint64_t base_seq)
{
    if (j->nsegs == j->segs_cap) {
        size_t cap = j->segs_cap ? 2 * j->segs_cap : 16;
        struct journal_seg *s = realloc(j->segs, cap * sizeof(*s));
        if (!s) {
            return -ENOMEM;
        }
        j->segs = s;
        j->segs_cap = cap;
    }
    j->segs[j->nsegs++] = (struct journal_seg){
        .base_seq = base_seq, .last_seq = base_seq - 1, .end = JOURNAL_SEG_HDR_SIZE};
    return 0;
}

/* seg_index notes that the next record of s starts at off. */
static void seg_index(struct journal_seg *s, uint64_t off)
{
    if (s->offs_lost) {
        return;
    }
    if (s->noffs == s->offs_cap) {
        size_t cap = s->offs_cap ? 2 * s->offs_cap : 1024;
        uint32_t *n = realloc(s->offs, cap * sizeof(*n));
        if (!n) {
            free(s->offs);
            s->offs = NULL;
            s->noffs = s->offs_cap = 0;
            s->offs_lost = true;
            return;
        }
        s->offs = n;
        s->offs_cap = cap;
    }
    s->offs[s->noffs++] = (uint32_t)off;
}

static void seg_free_index(struct journal_seg *s)
{
    free(s->offs);
    s->offs = NULL;
    s->noffs = s->offs_cap = 0;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct journal_seg *x = a, *y = b;
    return x->base_seq < y->base_seq ? -1 : x->base_seq > y->base_seq;
}

/* seg_list fills j->segs with the directory's segment files, oldest first. */
static int seg_list(struct journal *j)
{
    int fd = dup(j->dirfd);
    if (fd < 0) {
        return -errno;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    rewinddir(d);
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t base;
        if (seg_parse_name(e->d_name, &base)) {
            rc = segs_push(j, base);
            if (rc) {
                break;
            }
        }
    }
    closedir(d);
    if (j->nsegs > 1) {
        qsort(j->segs, j->nsegs, sizeof(*j->segs), cmp_seg);
    }
    return rc;
}

/* seg_create makes the file of a new segment starting at base_seq, preallocated, and returns its
 * descriptor; the header is written by the caller (synchronously at open, with the first batch
 * at a roll-over), and so is the directory's fsync. Returns the fd or -errno. */
static int seg_create(struct journal *j, uint64_t base_seq)
{
    char name[JOURNAL_SEG_NAME_LEN + 1];
    seg_name(name, base_seq);
    int fd = openat(j->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -errno;
    }
    int rc = preallocate(fd, j->o.segment_size);
    if (rc) {
        close(fd);
        unlinkat(j->dirfd, name, 0);
        return rc;
    }
    return fd;
}

static int sync_fd(struct journal *j, int fd, bool data_only)
{
    j->st.fsyncs++;
    int rc = data_only ? fdatasync(fd) : fsync(fd);
    return rc == 0 ? 0 : -errno;
}

/* seg_write_header writes and syncs the header of the last segment (fd) synchronously, then the
 * directory: for start-up, not for the ring thread's hot path. */
static int seg_write_header(struct journal *j, int fd, uint64_t base_seq)
{
    uint8_t hdr[JOURNAL_SEG_HDR_SIZE];
    journal_seg_header_encode(hdr, base_seq);
    ssize_t n = pwrite(fd, hdr, sizeof(hdr), 0);
    if (n != (ssize_t)sizeof(hdr)) {
        return n < 0 ? -errno : -EIO;
    }
    int rc = sync_fd(j, fd, true);
    if (rc == 0) {
        rc = sync_fd(j, j->dirfd, false);
    }
    return rc;
}

/* ======== open: check every segment, repair a torn tail ===================================== */

/* seg_repair cuts the damaged tail off the last segment (fd), preallocates it again and syncs
 * it; a damaged header is written anew. */
static int seg_repair(struct journal *j, int fd, const struct journal_scan_result *sr,
                      uint64_t base_seq, uint64_t cap)
{
    bool head = sr->end_kind == JOURNAL_SCAN_BAD_HEAD;
    if (ftruncate(fd, head ? 0 : (off_t)sr->end) != 0) {
        return -errno;
    }
    int rc = preallocate(fd, cap);
    if (rc) {
        return rc;
    }
    if (head) {
        return seg_write_header(j, fd, base_seq);
    }
    return sync_fd(j, fd, true);
}

/* data_end is where the file's last data ends: past it, up to size, there are only holes or
 * preallocated (unwritten) extents, which read as zeros. Scanning [0, data_end) finds what
 * scanning the whole file would (trailing zeros are never a record), without reading the
 * untouched part of a 64 MiB segment. Without SEEK_DATA support it is size. */
static size_t data_end(int fd, size_t size)
{
    off_t pos = 0, end = 0;
    for (;;) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0) {
            return errno == ENXIO ? (size_t)end : size;
        }
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0) {
            return size;
        }
        end = hole;
        if ((size_t)hole >= size) {
            return size;
        }
        pos = hole;
    }
}

/* seg_check scans segment i (the last one when last is set, whose descriptor is kept in j->fd,
 * open for writing) and repairs the last one's torn tail. Returns 0 or -errno with err set. */
static int seg_check(struct journal *j, size_t i, bool last, char *err, size_t errlen)
{
    struct journal_seg *s = &j->segs[i];
    char name[JOURNAL_SEG_NAME_LEN + 1];
    seg_name(name, s->base_seq);
    int fd = openat(j->dirfd, name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        set_err(err, errlen, "%s/%s: %s", j->dir, name, strerror(-rc));
        return rc;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int rc = -errno;
        set_err(err, errlen, "%s/%s: %s", j->dir, name, strerror(-rc));
        close(fd);
        return rc;
    }
    size_t size = (size_t)sb.st_size;
    size_t len = data_end(fd, size);
    const uint8_t *map = (const uint8_t *)"";
    if (len > 0) {
        void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            int rc = -errno;
            set_err(err, errlen, "%s/%s: mmap: %s", j->dir, name, strerror(-rc));
            close(fd);
            return rc;
        }
        map = m;
    }
    struct journal_scan_result sr;
    journal_scan(map, len, s->base_seq, &sr);
    if (len > 0) {
        munmap((void *)map, len);
    }

    int rc = 0;
    if (sr.end_kind == JOURNAL_SCAN_DAMAGED) {
        if (sr.valid_off != sr.bad_off) {
            set_err(err, errlen,
                    "%s/%s: corrupt journal: %s at byte offset %zu, followed by a valid record at "
                    "byte offset %zu",
                    j->dir, name, sr.why, sr.bad_off, sr.valid_off);
        } else {
            set_err(err, errlen, "%s/%s: corrupt journal: %s at byte offset %zu", j->dir, name,
                    sr.why, sr.bad_off);
        }
        rc = -EIO;
    } else if (sr.end_kind != JOURNAL_SCAN_CLEAN && !last) {
        set_err(err, errlen,
                "%s/%s: corrupt journal: %s at byte offset %zu in a segment that is not the last",
                j->dir, name, sr.why, sr.bad_off);
        rc = -EIO;
    } else if (i > 0 && s->base_seq != j->segs[i - 1].last_seq + 1) {
        char prev[JOURNAL_SEG_NAME_LEN + 1];
        seg_name(prev, j->segs[i - 1].base_seq);
        set_err(err, errlen,
                "%s/%s: corrupt journal: sequence gap: %s ends at %" PRIu64 ", %s starts at "
                "%" PRIu64 " (byte offset 0)",
                j->dir, name, prev, j->segs[i - 1].last_seq, name, s->base_seq);
        rc = -EIO;
    }
    if (rc) {
        close(fd);
        return rc;
    }
    s->last_seq = sr.last_seq;
    s->end = sr.end;
    if (!last) {
        close(fd);
        return 0;
    }

    uint64_t cap = size > j->o.segment_size ? size : j->o.segment_size;
    if (sr.end_kind != JOURNAL_SCAN_CLEAN) {
        /* a torn header takes the whole segment with it */
        j->st.torn_bytes =
            sr.end_kind == JOURNAL_SCAN_BAD_HEAD ? sr.dirty_end : sr.dirty_end - sr.end;
        rc = seg_repair(j, fd, &sr, s->base_seq, cap);
    } else if (size < cap) {
        rc = preallocate(fd, cap);
    }
    if (rc) {
        set_err(err, errlen, "%s/%s: recovering the tail: %s", j->dir, name, strerror(-rc));
        close(fd);
        return rc;
    }
    j->fd = fd;
    j->seg_cap = cap;
    j->seg_off = s->end;
    return 0;
}

static void journal_on_timer(struct ring *r, struct ring_timer *t);
static void journal_handle_write(struct ring *r, struct op *op, int res, uint32_t flags);
static void journal_handle_sync(struct ring *r, struct op *op, int res, uint32_t flags);
static void journal_handle_dirsync(struct ring *r, struct op *op, int res, uint32_t flags);

static void journal_release(struct journal *j)
{
    if (j->fd >= 0) {
        close(j->fd);
        j->fd = -1;
    }
    if (j->dirfd >= 0) {
        close(j->dirfd);
        j->dirfd = -1;
    }
    if (j->lockfd >= 0) {
        close(j->lockfd); /* drops the flock */
        j->lockfd = -1;
    }
    if (j->rfd >= 0) {
        close(j->rfd);
        j->rfd = -1;
    }
    for (size_t i = 0; i < j->nsegs; i++) {
        seg_free_index(&j->segs[i]);
    }
    free(j->segs);
    j->segs = NULL;
    j->nsegs = j->segs_cap = 0;
    free(j->dir);
    j->dir = NULL;
    buf_free(&j->cur);
    buf_free(&j->fly);
}

/* open_dir opens (creating it, and syncing its parent, when missing) and locks the directory. */
static int open_dir(struct journal *j, char *err, size_t errlen)
{
    if (mkdir(j->dir, 0755) == 0) {
        char *parent = strdup(j->dir);
        if (parent) {
            char *slash = strrchr(parent, '/');
            const char *p = slash ? (slash == parent ? "/" : (*slash = '\0', parent)) : ".";
            int pfd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (pfd >= 0) {
                sync_fd(j, pfd, false);
                close(pfd);
            }
            free(parent);
        }
    } else if (errno != EEXIST) {
        int rc = -errno;
        set_err(err, errlen, "%s: mkdir: %s", j->dir, strerror(-rc));
        return rc;
    }
    j->dirfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dirfd < 0) {
        int rc = -errno;
        set_err(err, errlen, "%s: %s", j->dir, strerror(-rc));
        return rc;
    }
    j->lockfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->lockfd < 0) {
        int rc = -errno;
        set_err(err, errlen, "%s: %s", j->dir, strerror(-rc));
        return rc;
    }
    /* Two writers would interleave records: one journal per directory, across processes. */
    if (flock(j->lockfd, LOCK_EX | LOCK_NB) != 0) {
        int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        set_err(err, errlen, "%s: %s", j->dir,
                rc == -EBUSY ? "the journal is open elsewhere" : strerror(-rc));
        return rc;
    }
    return 0;
}

static int opts_check(struct journal_opts *o, char *err, size_t errlen)
{
    if (!o->segment_size) {
        o->segment_size = JOURNAL_DEFAULT_SEGMENT;
    }
    if (!o->batch_records) {
        o->batch_records = JOURNAL_DEFAULT_BATCH_RECORDS;
    }
    if (!o->batch_bytes) {
        o->batch_bytes = JOURNAL_DEFAULT_BATCH_BYTES;
    }
    if (!o->batch_delay_ns) {
        o->batch_delay_ns = JOURNAL_DEFAULT_DELAY_NS;
    }
    if (!o->max_pending) {
        o->max_pending = JOURNAL_DEFAULT_MAX_PENDING;
    }
    if (o->segment_size < JOURNAL_MIN_SEGMENT || o->segment_size > (uint64_t)INT64_MAX) {
        set_err(err, errlen, "journal: segment size %" PRIu64 " out of range (at least %d)",
                o->segment_size, JOURNAL_MIN_SEGMENT);
        return -EINVAL;
    }
    if (o->max_pending < 2 * JOURNAL_REC_HDR_SIZE || o->batch_delay_ns < 0) {
        set_err(err, errlen, "journal: max_pending or batch_delay_ns out of range");
        return -EINVAL;
    }
    if (o->batch_bytes > o->max_pending) {
        o->batch_bytes = o->max_pending;
    }
    return 0;
}

int journal_open(struct journal *j, struct ring *r, const char *dir, const struct journal_opts *o,
                 char *err, size_t errlen)
{
    memset(j, 0, sizeof(*j));
    j->fd = -1;
    j->dirfd = -1;
    j->lockfd = -1;
    j->rfd = -1;
    j->r = r;
    j->cur_tail = &j->cur_head;
    if (o) {
        j->o = *o;
    }
    set_err(err, errlen, "%s", "");
    int rc = opts_check(&j->o, err, errlen);
    if (rc) {
        return rc;
    }
    buf_init(&j->cur, j->o.max_pending);
    buf_init(&j->fly, j->o.max_pending);
    j->dir = strdup(dir);
    if (!j->dir) {
        return -ENOMEM;
    }
    rc = open_dir(j, err, errlen);
    if (rc == 0) {
        rc = seg_list(j);
        if (rc) {
            set_err(err, errlen, "%s: listing segments: %s", j->dir, strerror(-rc));
        }
    }
    for (size_t i = 0; rc == 0 && i < j->nsegs; i++) {
        rc = seg_check(j, i, i + 1 == j->nsegs, err, errlen);
    }
    if (rc == 0 && j->nsegs == 0) {
        /* a new journal */
        rc = segs_push(j, 1);
        int fd = rc ? rc : seg_create(j, 1);
        if (fd >= 0) {
            rc = seg_write_header(j, fd, 1);
            j->fd = fd;
            j->seg_cap = j->o.segment_size;
            j->seg_off = JOURNAL_SEG_HDR_SIZE;
            j->st.segments_created++;
        } else {
            rc = fd;
        }
        if (rc) {
            set_err(err, errlen, "%s: creating the first segment: %s", j->dir, strerror(-rc));
        }
    }
    if (rc) {
        journal_release(j);
        return rc;
    }
    j->next_seq = j->segs[j->nsegs - 1].last_seq + 1;
    ring_timer_init(&j->timer, journal_on_timer);
    j->op_write.cb = journal_handle_write;
    j->op_sync.cb = journal_handle_sync;
    j->op_dirsync.cb = journal_handle_dirsync;
    return 0;
}

/* ======== replay ============================================================================ */

static int replay_seg(struct journal *j, struct journal_seg *s, journal_replay_cb *cb, void *arg)
{
    char name[JOURNAL_SEG_NAME_LEN + 1];
    seg_name(name, s->base_seq);
    if (s->end <= JOURNAL_SEG_HDR_SIZE) {
        return 0;
    }
    int fd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        set_err(j->errmsg, sizeof(j->errmsg), "%s/%s: %s", j->dir, name, strerror(-rc));
        return rc;
    }
    size_t len = (size_t)s->end;
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        int rc = -errno;
        set_err(j->errmsg, sizeof(j->errmsg), "%s/%s: mmap: %s", j->dir, name, strerror(-rc));
        return rc;
    }
    const uint8_t *p = m;
    int rc = 0;
    size_t off = JOURNAL_SEG_HDR_SIZE;
    uint64_t expect = s->base_seq;
    while (off < len) {
        struct journal_record rec;
        if (journal_decode(p + off, len - off, &rec) != JOURNAL_OK || rec.seq != expect) {
            set_err(j->errmsg, sizeof(j->errmsg),
                    "%s/%s: changed since it was opened: %s at byte offset %zu", j->dir, name,
                    decode_why(p + off, len - off), off);
            rc = -EIO;
            break;
        }
        if (s->noffs == expect - s->base_seq) {
            seg_index(s, off); /* the first replay only */
        }
        rc = cb(arg, &rec);
        if (rc) {
            break;
        }
        off += rec.size;
        expect++;
    }
    munmap(m, len);
    return rc;
}

int journal_replay(struct journal *j, journal_replay_cb *cb, void *arg)
{
    for (size_t i = 0; i < j->nsegs; i++) {
        int rc = replay_seg(j, &j->segs[i], cb, arg);
        if (rc) {
            return rc;
        }
    }
    return 0;
}

/* ======== group commit ====================================================================== */

/* journal_stop puts the journal in its failed state: no acknowledgement can be trusted after a
 * failed write or fdatasync (the kernel may have dropped the dirty pages), so from now on every
 * append gets -EIO. The waiters are told by journal_notify_failed. */
static void journal_stop(struct journal *j, int err, const char *what)
{
    if (j->failed) {
        return;
    }
    j->failed = err < 0 ? err : -EIO;
    set_err(j->errmsg, sizeof(j->errmsg), "%s: %s: %s", j->dir, what, strerror(-j->failed));
}

/* journal_notify_failed gives every waiter still pending the error, in sequence order. Never
 * while a batch is in flight: its buffer is the kernel's until then. */
static void journal_notify_failed(struct journal *j)
{
    ring_timer_cancel(j->r, &j->timer);
    struct journal_waiter *lists[2] = {j->fly_head, j->cur_head};
    j->fly_head = j->cur_head = NULL;
    j->cur_tail = &j->cur_head;
    j->fly.len = j->cur.len = 0;
    j->fly_nrec = j->cur_nrec = 0;
    for (int i = 0; i < 2; i++) {
        for (struct journal_waiter *w = lists[i], *next; w; w = next) {
            next = w->next;
            w->cb(j, w, j->failed);
        }
    }
}

/* journal_fail stops the journal and tells the waiters now (from a completion). */
static void journal_fail(struct journal *j, int err, const char *what)
{
    journal_stop(j, err, what);
    journal_notify_failed(j);
}

/* journal_fail_later stops the journal and tells the waiters from the timer: the failure was
 * found inside journal_append or journal_flush, whose callers do not expect callbacks. */
static void journal_fail_later(struct journal *j, int err, const char *what)
{
    journal_stop(j, err, what);
    if (ring_timer_arm_in(j->r, &j->timer, 0) != 0) {
        journal_notify_failed(j);
    }
}

/* journal_roll_failed handles a next segment that could not be created. No room for it
 * (ENOSPC, EDQUOT: nothing was written, nothing is lost) leaves the journal stuck: what is
 * appended waits, unacknowledged (within max_pending, as always), and the segment is tried
 * again every second (retention may drop a segment, an operator may free space); the caller
 * should stop taking new work meanwhile (journal_stats: stuck). Any other error stops the
 * journal. */
static void journal_roll_failed(struct journal *j, int rc)
{
    if ((rc == -ENOSPC || rc == -EDQUOT) &&
        ring_timer_arm_in(j->r, &j->timer, JOURNAL_STUCK_RETRY_NS) == 0) {
        j->st.stuck = rc;
        j->st.stuck_retries++;
        return;
    }
    /* (no timer slot to try again with: stuck for good is failed) */
    journal_fail_later(j, rc, "creating a new segment");
}

/* batch_prefix is how many bytes of the current batch, whole records from its start, fit in
 * room bytes and have a sequence number below below (0: any); *nrec and *last_seq describe
 * them. */
static size_t batch_prefix(const struct journal *j, uint64_t room, uint64_t below, uint32_t *nrec,
                           uint64_t *last_seq)
{
    if (j->cur.len <= room && (!below || j->cur_last_seq < below)) {
        *nrec = j->cur_nrec;
        *last_seq = j->cur_last_seq;
        return j->cur.len;
    }
    size_t off = 0;
    *nrec = 0;
    while (off < j->cur.len) {
        const uint8_t *p = j->cur.p + off;
        size_t sz = JOURNAL_REC_HDR_SIZE + get_le32(p + 16);
        if (off + sz > room || (below && get_le64(p + 8) >= below)) {
            break;
        }
        *last_seq = get_le64(p + 8);
        (*nrec)++;
        off += sz;
    }
    return off;
}

/* journal_roll closes the full segment and creates the next, whose header and directory fsync
 * will go with its first batch. Synchronous (open and fallocate): once per segment. */
static int journal_roll(struct journal *j)
{
    uint64_t base = j->segs[j->nsegs - 1].last_seq + 1;
    int rc = segs_push(j, base);
    if (rc) {
        return rc;
    }
    int fd = seg_create(j, base);
    if (fd < 0) {
        j->nsegs--;
        return fd;
    }
    close(j->fd); /* nothing in flight on it: only one batch at a time, and it is done */
    j->st.stuck = 0;
    j->fd = fd;
    j->seg_cap = j->o.segment_size;
    j->seg_off = JOURNAL_SEG_HDR_SIZE;
    j->seg_unwritten = true;
    j->st.segments_created++;
    return 0;
}

/* journal_take moves the first nrec records (take bytes) of the current batch, and their
 * waiters, to the batch in flight. */
static int journal_take(struct journal *j, size_t take, uint32_t nrec, uint64_t last_seq)
{
    if (take == j->cur.len) {
        struct buf t = j->fly;
        j->fly = j->cur;
        j->cur = t;
        j->cur.len = 0;
        j->fly_head = j->cur_head;
        j->cur_head = NULL;
        j->cur_tail = &j->cur_head;
    } else {
        /* only at a roll-over: the rest waits for the next segment */
        int rc = buf_put(&j->fly, j->cur.p, take);
        if (rc) {
            return rc;
        }
        memmove(j->cur.p, j->cur.p + take, j->cur.len - take);
        j->cur.len -= take;
        struct journal_waiter **tail = &j->fly_head;
        while (j->cur_head && j->cur_head->seq <= last_seq) {
            *tail = j->cur_head;
            tail = &j->cur_head->next;
            j->cur_head = j->cur_head->next;
        }
        *tail = NULL;
        if (!j->cur_head) {
            j->cur_tail = &j->cur_head;
        }
    }
    j->fly_nrec = nrec;
    j->fly_last_seq = last_seq;
    j->cur_nrec -= nrec;
    return 0;
}

/* journal_sqe gets an entry for op; the caller made sure the SQ has room for the whole chain, so
 * ring_sqe neither fails nor submits half of it. (ring.h has no fsync type: the ops of a batch
 * are all RING_OP_WRITE.) */
static struct io_uring_sqe *journal_sqe(struct journal *j, struct op *op)
{
    return ring_sqe(j->r, op, RING_OP_WRITE);
}

/* journal_submit writes the current batch (or the part of it that fits in the segment) with one
 * chain of linked SQEs: writev, then fdatasync, then (for a new segment) the directory's fsync.
 * A link breaks on any failure or short write, cancelling the rest, so the fdatasync that
 * acknowledges the batch only runs after all of its bytes were written. */
static void journal_submit(struct journal *j)
{
    ring_timer_cancel(j->r, &j->timer);
    uint32_t nrec = 0;
    uint64_t last_seq = 0;
    size_t take = batch_prefix(j, j->seg_cap - j->seg_off, j->roll_at, &nrec, &last_seq);
    if (take == 0 && j->roll_at && get_le64(j->cur.p + 8) >= j->roll_at) {
        /* journal_new_segment: every record before roll_at is durable now (one batch at a
         * time), so the segment being written ends with them */
        bool roll = j->segs[j->nsegs - 1].base_seq < j->roll_at;
        uint64_t due = j->roll_at;
        j->roll_at = 0;
        if (roll) {
            int rc = journal_roll(j);
            if (rc) {
                j->roll_at = due; /* still due when it is tried again */
                journal_roll_failed(j, rc);
                return;
            }
        }
        take = batch_prefix(j, j->seg_cap - j->seg_off, 0, &nrec, &last_seq);
    }
    if (take == 0) {
        int rc = journal_roll(j);
        if (rc) {
            journal_roll_failed(j, rc);
            return;
        }
        take = batch_prefix(j, j->seg_cap - j->seg_off, j->roll_at, &nrec, &last_seq);
    }
    bool new_seg = j->seg_unwritten;
    unsigned need = new_seg ? 3 : 2;
    struct io_uring *u = &j->r->uring;
    /* The whole chain must go in one submission: a link cut by a submit in between would let
     * the fdatasync run alongside the write instead of after it. */
    if (io_uring_sq_space_left(u) < need) {
        io_uring_submit(u);
        if (io_uring_sq_space_left(u) < need) {
            ring_timer_arm_in(j->r, &j->timer, j->o.batch_delay_ns); /* try again soon */
            return;
        }
    }
    int rc = journal_take(j, take, nrec, last_seq);
    if (rc) {
        journal_fail_later(j, rc, "building a batch");
        return;
    }
    unsigned niov = 0;
    uint64_t off = j->seg_off;
    if (new_seg) {
        journal_seg_header_encode(j->seg_hdr, j->segs[j->nsegs - 1].base_seq);
        j->iov[niov++] = (struct iovec){j->seg_hdr, JOURNAL_SEG_HDR_SIZE};
        off = 0;
    }
    j->iov[niov++] = (struct iovec){j->fly.p, j->fly.len};
    j->fly_off = j->seg_off;
    j->fly_new_seg = new_seg;
    j->write_len = (new_seg ? JOURNAL_SEG_HDR_SIZE : 0) + j->fly.len;

    struct io_uring_sqe *sqe = journal_sqe(j, &j->op_write);
    io_uring_prep_writev(sqe, j->fd, j->iov, niov, off);
    io_uring_sqe_set_data(sqe, &j->op_write);
    sqe->flags |= IOSQE_IO_LINK;
    sqe = journal_sqe(j, &j->op_sync);
    io_uring_prep_fsync(sqe, j->fd, IORING_FSYNC_DATASYNC);
    io_uring_sqe_set_data(sqe, &j->op_sync);
    if (new_seg) {
        sqe->flags |= IOSQE_IO_LINK;
        sqe = journal_sqe(j, &j->op_dirsync);
        io_uring_prep_fsync(sqe, j->dirfd, 0);
        io_uring_sqe_set_data(sqe, &j->op_dirsync);
    }
    j->seg_off += j->fly.len;
    j->inflight = true;
    j->ops_left = need;
    j->batch_res = 0;
    j->batch_t0 = ring_clock_ns();
}

/* journal_batch_done runs when every op of the batch in flight has completed. */
static void journal_batch_done(struct journal *j)
{
    j->inflight = false;
    if (j->batch_res < 0) {
        journal_fail(j, j->batch_res, "writing a batch");
        return;
    }
    struct journal_seg *s = &j->segs[j->nsegs - 1];
    for (size_t off = 0; off + JOURNAL_REC_HDR_SIZE <= j->fly.len;) {
        if (s->noffs == get_le64(j->fly.p + off + 8) - s->base_seq) {
            seg_index(s, j->fly_off + off);
        }
        off += JOURNAL_REC_HDR_SIZE + get_le32(j->fly.p + off + 16);
    }
    s->last_seq = j->fly_last_seq;
    s->end = j->fly_off + j->fly.len;
    if (j->fly_new_seg) {
        j->seg_unwritten = false;
    }
    uint64_t us = (uint64_t)(ring_clock_ns() - j->batch_t0) / 1000;
    j->st.last_fsync_us = us;
    if (us > j->st.max_fsync_us) {
        j->st.max_fsync_us = us;
    }
    j->st.records += j->fly_nrec;
    j->st.batches++;
    j->st.bytes_written += j->write_len;

    /* Detach the batch first: callbacks may append, and an append may start the next batch. */
    struct journal_waiter *w = j->fly_head;
    j->fly_head = NULL;
    j->fly.len = 0;
    j->fly_nrec = 0;
    while (w) {
        struct journal_waiter *next = w->next;
        w->cb(j, w, 0);
        w = next;
    }
    /* Group commit: what gathered while this batch was on its way goes now. */
    if (!j->inflight && !j->failed && j->cur.len) {
        journal_submit(j);
    }
}

static void journal_op_done(struct journal *j, int res)
{
    /* The op that failed reports the cause; the ones after it in the chain say -ECANCELED. */
    if (res < 0 && (j->batch_res == 0 || j->batch_res == -ECANCELED)) {
        j->batch_res = res;
    }
    if (--j->ops_left == 0) {
        journal_batch_done(j);
    }
}

static void journal_handle_write(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct journal *j = container_of(op, struct journal, op_write);
    if (res >= 0 && (size_t)res != j->write_len) {
        res = -EIO; /* short write (the link is broken too) */
    }
    journal_op_done(j, res);
}

static void journal_handle_sync(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct journal *j = container_of(op, struct journal, op_sync);
    j->st.fsyncs++;
    if (j->o.test_sync_hook) {
        res = j->o.test_sync_hook(j->o.test_hook_arg, res);
    }
    journal_op_done(j, res);
}

static void journal_handle_dirsync(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct journal *j = container_of(op, struct journal, op_dirsync);
    j->st.fsyncs++;
    journal_op_done(j, res);
}

static void journal_on_timer(struct ring *r, struct ring_timer *t)
{
    struct journal *j = container_of(t, struct journal, timer);
    if (j->failed) {
        journal_notify_failed(j);
    } else if (!j->inflight && j->cur.len) {
        journal_submit(j);
    }
}

/* journal_trigger gives the batch being gathered (nothing in flight, not stuck) its trigger:
 * batch_delay_ns after its first record while nobody waits for it, so that records nobody waits
 * for (a delivery's outcome) share fdatasyncs; the end of the ring's current iteration once a
 * waiter does (an acknowledgement): by then every request this wake-up read has appended its
 * record, and holding the batch longer only adds its delay to the answer, as what comes while it
 * is on its way forms the next batch anyway. */
static void journal_trigger(struct journal *j, bool waited)
{
    int64_t at = ring_now_ns(j->r) + (waited ? 0 : j->o.batch_delay_ns);
    if (ring_timer_armed(&j->timer) && j->timer.expire_ns <= at) {
        return;
    }
    if (ring_timer_arm(j->r, &j->timer, at) != 0) {
        journal_submit(j); /* no timer slot: do not let the record wait for a trigger */
    }
}

int journal_append(struct journal *j, uint8_t type, const void *payload, size_t len,
                   struct journal_waiter *w)
{
    struct iovec iov = {(void *)payload, len};
    return journal_appendv(j, type, &iov, 1, w);
}

int journal_appendv(struct journal *j, uint8_t type, const struct iovec *iov, size_t niov,
                    struct journal_waiter *w)
{
    if (j->failed) {
        return -EIO;
    }
    size_t len = 0;
    for (size_t i = 0; i < niov; i++) {
        if (iov[i].iov_len > JOURNAL_RECORD_MAX) {
            return -EMSGSIZE;
        }
        len += iov[i].iov_len;
    }
    size_t sz = journal_record_size(len);
    if (len > JOURNAL_RECORD_MAX || sz > j->o.max_pending ||
        sz > j->o.segment_size - JOURNAL_SEG_HDR_SIZE) {
        return -EMSGSIZE;
    }
    if (j->cur.len + j->fly.len + sz > j->o.max_pending) {
        j->st.eagain++;
        return -EAGAIN;
    }
    int rc = buf_reserve(&j->cur, sz);
    if (rc) {
        return rc;
    }
    uint64_t seq = j->next_seq++;
    encode_iov(j->cur.p + j->cur.len, type, seq, iov, niov, len);
    j->cur.len += sz;
    j->cur_nrec++;
    j->cur_last_seq = seq;
    if (w) {
        w->seq = seq;
        w->next = NULL;
        *j->cur_tail = w;
        j->cur_tail = &w->next;
    }
    if (j->inflight || j->st.stuck) {
        return 0; /* goes when the batch in flight is durable, or the stuck segment is made */
    }
    if (j->cur_nrec >= j->o.batch_records || j->cur.len >= j->o.batch_bytes) {
        journal_submit(j);
    } else {
        journal_trigger(j, w != NULL);
    }
    return 0;
}

int journal_wait(struct journal *j, struct journal_waiter *w)
{
    if (j->failed) {
        return -EIO;
    }
    w->next = NULL;
    if (j->cur.len) { /* its batch has a trigger: a batch in flight, stuck, or the timer */
        w->seq = j->cur_last_seq;
        *j->cur_tail = w;
        j->cur_tail = &w->next;
        if (!j->inflight && !j->st.stuck) {
            journal_trigger(j, true);
        }
        return 0;
    }
    if (j->inflight) {
        w->seq = j->fly_last_seq;
        struct journal_waiter **tail = &j->fly_head;
        while (*tail) {
            tail = &(*tail)->next;
        }
        *tail = w;
        return 0;
    }
    return 1;
}

int journal_flush(struct journal *j)
{
    if (j->failed) {
        return -EIO;
    }
    if (!j->inflight && !j->st.stuck && j->cur.len) { /* stuck: the timer tries again */
        journal_submit(j);
    }
    return 0;
}

/* ======== retention, stats, close =========================================================== */

uint64_t journal_new_segment(struct journal *j)
{
    if (j->roll_at && j->roll_at < j->next_seq) {
        return 0; /* one cut at a time: its segment starts with the next batch written */
    }
    if (j->segs[j->nsegs - 1].base_seq < j->next_seq) {
        j->roll_at = j->next_seq;
    }
    return j->next_seq;
}

int journal_drop_before(struct journal *j, uint64_t seq)
{
    size_t k = 0;
    int rc = 0;
    /* Oldest first, so that a crash half-way leaves a journal without a hole. */
    while (k + 1 < j->nsegs && j->segs[k + 1].base_seq <= seq) {
        char name[JOURNAL_SEG_NAME_LEN + 1];
        seg_name(name, j->segs[k].base_seq);
        if (unlinkat(j->dirfd, name, 0) != 0 && errno != ENOENT) {
            rc = -errno;
            set_err(j->errmsg, sizeof(j->errmsg), "%s/%s: unlink: %s", j->dir, name, strerror(-rc));
            break;
        }
        k++;
    }
    if (k) {
        for (size_t i = 0; i < k; i++) {
            if (j->rfd >= 0 && j->rfd_base == j->segs[i].base_seq) {
                close(j->rfd);
                j->rfd = -1;
            }
            seg_free_index(&j->segs[i]);
        }
        memmove(j->segs, j->segs + k, (j->nsegs - k) * sizeof(*j->segs));
        j->nsegs -= k;
        j->st.segments_dropped += k;
        int src = sync_fd(j, j->dirfd, false);
        if (rc == 0) {
            rc = src;
        }
    }
    return rc;
}

uint64_t journal_durable_seq(const struct journal *j)
{
    return j->nsegs ? j->segs[j->nsegs - 1].last_seq : 0;
}

int journal_read(struct journal *j, uint64_t seq, struct buf *out, struct journal_record *rec)
{
    /* the segment holding seq: the last whose base is at most seq */
    size_t lo = 0, hi = j->nsegs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (j->segs[mid].base_seq <= seq) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if (j->nsegs == 0 || seq < j->segs[lo].base_seq || seq > j->segs[lo].last_seq) {
        return -ENOENT;
    }
    const struct journal_seg *s = &j->segs[lo];
    uint64_t i = seq - s->base_seq;
    if (i >= s->noffs) {
        return -ENOENT;
    }
    uint64_t off = s->offs[i];
    uint64_t end = i + 1 < s->noffs ? s->offs[i + 1] : s->end;
    if (end <= off || end - off < JOURNAL_REC_HDR_SIZE ||
        end - off > JOURNAL_REC_HDR_SIZE + (uint64_t)JOURNAL_RECORD_MAX) {
        return -EIO;
    }
    size_t len = (size_t)(end - off);
    char name[JOURNAL_SEG_NAME_LEN + 1];
    seg_name(name, s->base_seq);
    int fd = j->fd;
    if (lo + 1 < j->nsegs) {
        if (j->rfd < 0 || j->rfd_base != s->base_seq) {
            if (j->rfd >= 0) {
                close(j->rfd);
            }
            j->rfd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC);
            if (j->rfd < 0) {
                int rc = -errno;
                set_err(j->errmsg, sizeof(j->errmsg), "%s/%s: %s", j->dir, name, strerror(-rc));
                return rc;
            }
            j->rfd_base = s->base_seq;
        }
        fd = j->rfd;
    }
    out->len = 0;
    if (buf_reserve(out, len)) {
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, out->p + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int rc = n < 0 ? -errno : -EIO;
            set_err(j->errmsg, sizeof(j->errmsg), "%s/%s: reading byte offset %" PRIu64 ": %s",
                    j->dir, name, off, n < 0 ? strerror(-rc) : "the file ends early");
            return rc;
        }
        got += (size_t)n;
    }
    out->len = len;
    if (journal_decode(out->p, len, rec) != JOURNAL_OK || rec->seq != seq || rec->size != len) {
        set_err(j->errmsg, sizeof(j->errmsg),
                "%s/%s: record %" PRIu64 " at byte offset %" PRIu64 " does not read back: %s",
                j->dir, name, seq, off, decode_why(out->p, len));
        out->len = 0;
        return -EIO;
    }
    return 0;
}

void journal_stats(const struct journal *j, struct journal_stats *out)
{
    *out = j->st;
    out->segments = j->nsegs;
    out->pending_bytes = j->cur.len + j->fly.len;
}

int journal_close(struct journal *j)
{
    while (j->inflight || (!j->failed && j->cur.len)) {
        if (!j->inflight) {
            journal_submit(j);
            if (j->st.stuck) {
                /* no room for the segment they need: what waits was never acknowledged */
                ring_timer_cancel(j->r, &j->timer);
                journal_stop(j, j->st.stuck, "closing: no room for a new segment");
                break;
            }
        }
        if (j->inflight || (!j->failed && j->cur.len)) {
            int rc = ring_run_once(j->r, 100 * 1000000LL);
            if (rc < 0 && !j->inflight) {
                journal_stop(j, rc, "running the ring while closing");
            }
        }
    }
    if (j->failed) {
        journal_notify_failed(j);
    }
    ring_timer_cancel(j->r, &j->timer);
    int rc = j->failed;
    journal_release(j);
    return rc;
}

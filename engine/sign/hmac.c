/* hmac.c: HMAC-SHA256 over precomputed key states, signing a batch in interleaved lanes.
 *
 * Each job runs in a lane: a small state machine that hands the compression kernel runs of whole
 * blocks. A run points straight into a piece when 64 bytes or more are contiguous there; only a
 * block that straddles pieces, and the padding and outer blocks, are assembled in the lane's
 * 64-byte stage. The scheduler advances the busy lanes together (sixteen with AVX-512, four or
 * two with SHA-NI) by the shortest of their runs, and refills a lane from the remaining jobs as
 * soon as its job is done. */
#include "hmac.h"

#include <errno.h>
#include <stdatomic.h>

#include "sha256.h"

#define LANES_MAX 16

/* With AVX-512, the fewest busy lanes worth a sixteen-lane pass when SHA-NI could take them
 * instead: a pass costs the same however many lanes are idle. On Zen 4, twelve lanes go as fast
 * through three SHA-NI x4 calls; from thirteen on the vector pass wins. */
#define X16_MIN_LANES 13

enum lane_phase {
    LANE_MSG,   /* message bytes, straight from the pieces or gathered in stage */
    LANE_SPILL, /* stage ends the message and holds 0x80; the length needs one more block */
    LANE_PAD,   /* stage is the last inner block: message tail or zeros, then the bit length */
    LANE_OUTER, /* stage is the outer block: the inner digest, padded */
};

struct lane {
    uint32_t st[8];
    const uint8_t *run; /* the next blocks to compress: into a piece, or stage */
    size_t nrun;        /* whole blocks at run */
    size_t step;        /* blocks the last kernel call compressed */
    const struct hmac_job *job;
    const struct slice *piece; /* the piece being read; end once the message is exhausted */
    const struct slice *end;
    size_t off;   /* bytes of *piece already taken */
    uint64_t len; /* message bytes taken so far (compressed or in stage) */
    size_t fill;  /* bytes gathered in stage */
    enum lane_phase phase;
    uint8_t stage[64];
};

static inline void store_be64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, sizeof(v));
}

static inline void store_digest(uint8_t out[32], const uint32_t st[8])
{
    /* Two words at a time: one 64-bit swap turns (w0, w1) into big-endian w0 then w1. */
    for (int i = 0; i < 8; i += 2) {
        uint64_t v = (uint64_t)st[i] | (uint64_t)st[i + 1] << 32;
        v = __builtin_bswap64(v);
        v = v << 32 | v >> 32;
        memcpy(out + 4 * i, &v, sizeof(v));
    }
}

/* --- implementation choice ------------------------------------------------------------------ */

/* The current implementation; HMAC_IMPL_AUTO until the first use resolves it. */
static _Atomic int hmac_impl_cur = HMAC_IMPL_AUTO;

/* hmac_auto_choice picks the implementation AUTO stands for on this CPU (bench/sign.c measures
 * the alternatives). */
static enum hmac_impl hmac_auto_choice(void)
{
    if (sha256_has_avx512()) {
        return HMAC_IMPL_AVX512_X16;
    }
    return sha256_has_shani() ? HMAC_IMPL_SHANI_X4 : HMAC_IMPL_PORTABLE;
}

static enum hmac_impl hmac_impl_get(void)
{
    int v = atomic_load_explicit(&hmac_impl_cur, memory_order_relaxed);

    if (unlikely(v == HMAC_IMPL_AUTO)) {
        int expected = HMAC_IMPL_AUTO;
        int choice = hmac_auto_choice();
        /* Only resolve AUTO: a concurrent hmac_set_impl() wins over the first use. */
        if (atomic_compare_exchange_strong_explicit(&hmac_impl_cur, &expected, choice,
                                                    memory_order_relaxed, memory_order_relaxed)) {
            v = choice;
        } else {
            v = expected;
        }
    }
    return (enum hmac_impl)v;
}

int hmac_set_impl(enum hmac_impl impl)
{
    switch (impl) {
    case HMAC_IMPL_AUTO:
        impl = hmac_auto_choice();
        break;
    case HMAC_IMPL_PORTABLE:
        break;
    case HMAC_IMPL_SHANI:
    case HMAC_IMPL_SHANI_X2:
    case HMAC_IMPL_SHANI_X4:
        if (!sha256_has_shani()) {
            return -ENOTSUP;
        }
        break;
    case HMAC_IMPL_AVX512_X16:
        if (!sha256_has_avx512()) {
            return -ENOTSUP;
        }
        break;
    default:
        return -EINVAL;
    }
    atomic_store_explicit(&hmac_impl_cur, (int)impl, memory_order_relaxed);
    return 0;
}

const char *hmac_impl_name(void)
{
    switch (hmac_impl_get()) {
    case HMAC_IMPL_PORTABLE:
        return "portable";
    case HMAC_IMPL_SHANI:
        return "shani";
    case HMAC_IMPL_SHANI_X2:
        return "shani_x2";
    case HMAC_IMPL_SHANI_X4:
        return "shani_x4";
    case HMAC_IMPL_AVX512_X16:
        return "avx512_x16";
    default:
        return "auto";
    }
}

/* impl_shani tells whether impl may use SHA-NI (the AVX-512 one does for its few last lanes). */
static bool impl_shani(enum hmac_impl impl)
{
    return impl != HMAC_IMPL_PORTABLE && sha256_has_shani();
}

/* compress1 compresses nblocks blocks of one stream with the kernel impl allows. */
static void compress1(enum hmac_impl impl, uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    if (impl_shani(impl)) {
        sha256_blocks_shani(st, p, nblocks);
    } else {
        sha256_blocks_portable(st, p, nblocks);
    }
}

/* --- keys ----------------------------------------------------------------------------------- */

/* sha256_digest hashes a contiguous message (a key longer than a block). */
static void sha256_digest(enum hmac_impl impl, uint8_t out[32], const uint8_t *p, size_t len)
{
    uint32_t st[8];
    uint8_t tail[128] = {0};
    size_t full = len / 64, rest = len % 64;
    size_t ntail = rest < 56 ? 1 : 2;

    memcpy(st, sha256_iv, sizeof(st));
    compress1(impl, st, p, full);
    memcpy(tail, p + 64 * full, rest);
    tail[rest] = 0x80;
    store_be64(tail + 64 * ntail - 8, (uint64_t)len * 8);
    compress1(impl, st, tail, ntail);
    store_digest(out, st);
    /* The digest of a long key is as secret as the key. */
    explicit_bzero(st, sizeof(st));
    explicit_bzero(tail, sizeof(tail));
}

void hmac_key_init(struct hmac_key *k, const uint8_t *key, size_t key_len)
{
    enum hmac_impl impl = hmac_impl_get();
    uint8_t block[64] = {0};

    if (key_len > sizeof(block)) {
        sha256_digest(impl, block, key, key_len);
    } else if (key_len > 0) {
        memcpy(block, key, key_len);
    }
    for (size_t i = 0; i < sizeof(block); i++) {
        block[i] ^= 0x36;
    }
    memcpy(k->inner, sha256_iv, sizeof(k->inner));
    compress1(impl, k->inner, block, 1);
    for (size_t i = 0; i < sizeof(block); i++) {
        block[i] ^= 0x36 ^ 0x5c;
    }
    memcpy(k->outer, sha256_iv, sizeof(k->outer));
    compress1(impl, k->outer, block, 1);
    explicit_bzero(block, sizeof(block));
}

void hmac_key_wipe(struct hmac_key *k)
{
    explicit_bzero(k, sizeof(*k));
}

/* --- lanes ---------------------------------------------------------------------------------- */

/* lane_plan sets the next run of a lane in LANE_MSG: whole blocks straight from the current
 * piece when nothing is gathered and a block is contiguous there, else the stage once it fills
 * up, else (the message exhausted) the padding. */
static void lane_plan(struct lane *l)
{
    while (l->piece < l->end) {
        size_t avail = l->piece->len - l->off;

        if (l->fill == 0 && avail >= 64) {
            l->run = l->piece->p + l->off;
            l->nrun = avail / 64;
            return;
        }
        size_t n = avail < 64 - l->fill ? avail : 64 - l->fill;
        if (n > 0) {
            memcpy(l->stage + l->fill, l->piece->p + l->off, n);
        }
        l->fill += n;
        l->off += n;
        l->len += n;
        if (l->off == l->piece->len) {
            l->piece++;
            l->off = 0;
        }
        if (l->fill == 64) {
            l->run = l->stage;
            l->nrun = 1;
            return;
        }
    }
    l->stage[l->fill] = 0x80;
    memset(l->stage + l->fill + 1, 0, 63 - l->fill);
    if (l->fill < 56) {
        store_be64(l->stage + 56, (64 + l->len) * 8); /* the ipad block counts */
        l->phase = LANE_PAD;
    } else {
        l->phase = LANE_SPILL;
    }
    l->run = l->stage;
    l->nrun = 1;
}

static void lane_start(struct lane *l, const struct hmac_job *job)
{
    memcpy(l->st, job->key->inner, sizeof(l->st));
    l->job = job;
    l->piece = job->pieces;
    l->end = job->npieces > 0 ? job->pieces + job->npieces : job->pieces; /* pieces may be NULL */
    l->off = 0;
    l->len = 0;
    l->fill = 0;
    l->phase = LANE_MSG;
    lane_plan(l);
}

/* lane_advance accounts for the l->step blocks just compressed and sets the next run. Returns
 * false when the job is done (its MAC written). */
static bool lane_advance(struct lane *l)
{
    switch (l->phase) {
    case LANE_MSG:
        if (l->run == l->stage) {
            l->fill = 0;
        } else {
            l->off += 64 * l->step;
            l->len += 64 * l->step;
            if (l->off == l->piece->len) {
                l->piece++;
                l->off = 0;
            }
        }
        lane_plan(l);
        return true;
    case LANE_SPILL:
        memset(l->stage, 0, 56);
        store_be64(l->stage + 56, (64 + l->len) * 8); /* the ipad block counts */
        l->phase = LANE_PAD;
        return true;
    case LANE_PAD:
        /* The outer hash: opad block (precomputed), then the inner digest and its padding. */
        store_digest(l->stage, l->st);
        l->stage[32] = 0x80;
        memset(l->stage + 33, 0, 64 - 33 - 8);
        store_be64(l->stage + 56, (64 + 32) * 8);
        memcpy(l->st, l->job->key->outer, sizeof(l->st));
        l->phase = LANE_OUTER;
        return true;
    case LANE_OUTER:
    default:
        store_digest(l->job->out, l->st);
        return false;
    }
}

/* The kernels a group of busy lanes can be handed to. */
enum kernel {
    KERNEL_PORTABLE,
    KERNEL_SHANI,
    KERNEL_SHANI_X2,
    KERNEL_SHANI_X4,
    KERNEL_AVX512_X16,
};

static size_t impl_width(enum hmac_impl impl)
{
    switch (impl) {
    case HMAC_IMPL_AVX512_X16:
        return 16;
    case HMAC_IMPL_SHANI_X4:
        return 4;
    case HMAC_IMPL_SHANI_X2:
        return 2;
    default:
        return 1;
    }
}

/* kernel_pick chooses the kernel for the next group out of `remaining` busy lanes (at most the
 * width of impl) and sets *g to the number of lanes it takes. */
static enum kernel kernel_pick(enum hmac_impl impl, size_t remaining, size_t *g)
{
    size_t width = impl_width(impl);
    bool shani = impl_shani(impl);

    if (width == 16 && (remaining >= X16_MIN_LANES || !shani)) {
        *g = remaining;
        return KERNEL_AVX512_X16;
    }
    if (!shani) {
        *g = 1;
        return KERNEL_PORTABLE;
    }
    if (remaining >= 4 && width >= 4) {
        *g = 4;
        return KERNEL_SHANI_X4;
    }
    if (remaining >= 2 && width >= 2) {
        *g = 2;
        return KERNEL_SHANI_X2;
    }
    *g = 1;
    return KERNEL_SHANI;
}

/* lanes_compress advances the g busy lanes ls[0..g) by the shortest of their runs with kernel kn
 * (which takes exactly g lanes, or up to sixteen for KERNEL_AVX512_X16). */
static void lanes_compress(enum kernel kn, struct lane *const *ls, size_t g)
{
    size_t k = ls[0]->nrun;

    for (size_t i = 1; i < g; i++) {
        k = ls[i]->nrun < k ? ls[i]->nrun : k;
    }
    switch (kn) {
    case KERNEL_AVX512_X16: {
        /* Idle lanes hash a busy lane's blocks (readable for k blocks) into scratch. */
        uint32_t scratch[8] = {0};
        uint32_t *st[16];
        const uint8_t *p[16];
        for (size_t i = 0; i < 16; i++) {
            st[i] = i < g ? ls[i]->st : scratch;
            p[i] = i < g ? ls[i]->run : ls[0]->run;
        }
        sha256_blocks_avx512_x16(st, p, k);
        break;
    }
    case KERNEL_SHANI_X4: {
        uint32_t *const st[4] = {ls[0]->st, ls[1]->st, ls[2]->st, ls[3]->st};
        const uint8_t *const p[4] = {ls[0]->run, ls[1]->run, ls[2]->run, ls[3]->run};
        sha256_blocks_shani_x4(st, p, k);
        break;
    }
    case KERNEL_SHANI_X2: {
        uint32_t *const st[2] = {ls[0]->st, ls[1]->st};
        const uint8_t *const p[2] = {ls[0]->run, ls[1]->run};
        sha256_blocks_shani_x2(st, p, k);
        break;
    }
    case KERNEL_SHANI:
        sha256_blocks_shani(ls[0]->st, ls[0]->run, k);
        break;
    case KERNEL_PORTABLE:
    default:
        sha256_blocks_portable(ls[0]->st, ls[0]->run, k);
        break;
    }
    for (size_t i = 0; i < g; i++) {
        ls[i]->step = k;
    }
}

void hmac_batch(struct hmac_job *jobs, size_t n)
{
    enum hmac_impl impl = hmac_impl_get();
    size_t width = impl_width(impl);
    struct lane lanes[LANES_MAX];
    struct lane *act[LANES_MAX]; /* the busy lanes, act[0..nact) */
    size_t nact = 0, next = 0;

    while (nact < width && next < n) {
        act[nact] = &lanes[nact];
        lane_start(act[nact++], &jobs[next++]);
    }
    while (nact > 0) {
        /* Once fewer lanes than the width remain busy, narrower kernels take them: a wide
         * kernel spends as much on an idle lane as on a busy one. */
        for (size_t i = 0; i < nact;) {
            size_t g;
            enum kernel kn = kernel_pick(impl, nact - i, &g);
            lanes_compress(kn, act + i, g);
            i += g;
        }
        for (size_t i = 0; i < nact;) {
            if (lane_advance(act[i])) {
                i++;
            } else if (next < n) {
                lane_start(act[i++], &jobs[next++]);
            } else {
                struct lane *t = act[i];
                act[i] = act[--nact];
                act[nact] = t;
            }
        }
    }
}

void hmac_sha256(const struct hmac_key *k, const struct slice *pieces, size_t npieces,
                 uint8_t out[HMAC_SHA256_LEN])
{
    struct hmac_job job = {k, pieces, npieces, out};

    hmac_batch(&job, 1);
}

/* sha256.c: SHA-256 block compression: plain C, SHA-NI (one, two or four streams interleaved)
 * and AVX-512 (sixteen streams, one per 32-bit lane). */
#include "sha256.h"

#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>

#define unlikely(x) __builtin_expect(!!(x), 0)

const uint32_t sha256_iv[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static const uint32_t sha256_k[64] __attribute__((aligned(16))) = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* --- portable ------------------------------------------------------------------------------ */

static inline uint32_t ror32(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static inline uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void sha256_blocks_portable(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    for (; nblocks > 0; nblocks--, p += 64) {
        uint32_t w[64];
        for (int i = 0; i < 16; i++) {
            w[i] = load_be32(p + 4 * i);
        }
        for (int i = 16; i < 64; i++) {
            uint32_t s0 = ror32(w[i - 15], 7) ^ ror32(w[i - 15], 18) ^ (w[i - 15] >> 3);
            uint32_t s1 = ror32(w[i - 2], 17) ^ ror32(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
        uint32_t e = st[4], f = st[5], g = st[6], h = st[7];
        for (int i = 0; i < 64; i++) {
            uint32_t t1 = h + (ror32(e, 6) ^ ror32(e, 11) ^ ror32(e, 25)) + ((e & f) ^ (~e & g)) +
                          sha256_k[i] + w[i];
            uint32_t t2 =
                (ror32(a, 2) ^ ror32(a, 13) ^ ror32(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        st[0] += a;
        st[1] += b;
        st[2] += c;
        st[3] += d;
        st[4] += e;
        st[5] += f;
        st[6] += g;
        st[7] += h;
    }
}

/* --- SHA-NI -------------------------------------------------------------------------------- */

/* The CPU's features never change under a running process, and CPUID is slow (a VM exit under
 * a hypervisor): probe once, keep the answer. */
enum {
    CPU_UNKNOWN = 0,
    CPU_PROBED = 1 << 0,
    CPU_SHANI = 1 << 1,
    CPU_AVX512 = 1 << 2,
};

static _Atomic unsigned cpu_features;

static unsigned cpu_probe(void)
{
    unsigned a, b, c, d, f = CPU_PROBED;

    if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_1) && (c & bit_SSSE3) &&
        __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29))) {
        f |= CPU_SHANI; /* CPUID.(EAX=7,ECX=0):EBX.SHA[bit 29] */
    }
    /* __builtin_cpu_supports also checks that the OS saves the AVX-512 registers (XCR0). */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
        f |= CPU_AVX512;
    }
    return f;
}

static unsigned cpu_get(void)
{
    unsigned f = atomic_load_explicit(&cpu_features, memory_order_relaxed);

    if (unlikely(f == CPU_UNKNOWN)) {
        f = cpu_probe();
        atomic_store_explicit(&cpu_features, f, memory_order_relaxed);
    }
    return f;
}

bool sha256_has_shani(void)
{
    return cpu_get() & CPU_SHANI;
}

bool sha256_has_avx512(void)
{
    return cpu_get() & CPU_AVX512;
}

#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* shani_lanes is the one SHA-NI body behind every width: L is a constant at each call, so the
 * loops over lanes unroll and the L dependency chains of sha256rnds2 (long latency, pipelined)
 * are issued side by side. The state lives as ABEF/CDGH, the layout sha256rnds2 works on. */
static inline __attribute__((always_inline)) SHANI_TARGET void
shani_lanes(const int L, uint32_t *const st[], const uint8_t *const p[], size_t nblocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef[4], cdgh[4];
    const uint8_t *src[4];

#pragma GCC unroll 4
    for (int l = 0; l < L; l++) {
        __m128i dcba = _mm_loadu_si128((const __m128i *)&st[l][0]);
        __m128i hgfe = _mm_loadu_si128((const __m128i *)&st[l][4]);
        __m128i cdab = _mm_shuffle_epi32(dcba, 0xb1);
        __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1b);
        abef[l] = _mm_alignr_epi8(cdab, efgh, 8);
        cdgh[l] = _mm_blend_epi16(efgh, cdab, 0xf0);
        src[l] = p[l];
    }
    for (; nblocks > 0; nblocks--) {
        __m128i m[4][4], abef0[4], cdgh0[4];

#pragma GCC unroll 4
        for (int l = 0; l < L; l++) {
            abef0[l] = abef[l];
            cdgh0[l] = cdgh[l];
        }
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            const __m128i k = _mm_load_si128((const __m128i *)&sha256_k[4 * i]);
#pragma GCC unroll 4
            for (int l = 0; l < L; l++) {
                __m128i *w = m[l];
                if (i < 4) {
                    w[i] = _mm_loadu_si128((const __m128i *)(src[l] + 16 * i));
                    w[i] = _mm_shuffle_epi8(w[i], bswap);
                } else {
                    /* w[i&3] holds W[i-4]; the others W[i-3], W[i-2], W[i-1] in turn. */
                    __m128i t = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);
                    t = _mm_add_epi32(t, _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4));
                    w[i & 3] = _mm_sha256msg2_epu32(t, w[(i + 3) & 3]);
                }
                __m128i wk = _mm_add_epi32(w[i & 3], k);
                cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk);
                abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32(wk, 0x0e));
            }
        }
#pragma GCC unroll 4
        for (int l = 0; l < L; l++) {
            abef[l] = _mm_add_epi32(abef[l], abef0[l]);
            cdgh[l] = _mm_add_epi32(cdgh[l], cdgh0[l]);
            src[l] += 64;
        }
    }
#pragma GCC unroll 4
    for (int l = 0; l < L; l++) {
        __m128i feba = _mm_shuffle_epi32(abef[l], 0x1b);
        __m128i dchg = _mm_shuffle_epi32(cdgh[l], 0xb1);
        _mm_storeu_si128((__m128i *)&st[l][0], _mm_blend_epi16(feba, dchg, 0xf0));
        _mm_storeu_si128((__m128i *)&st[l][4], _mm_alignr_epi8(dchg, feba, 8));
    }
}

SHANI_TARGET void sha256_blocks_shani(uint32_t st[8], const uint8_t *p, size_t nblocks)
{
    shani_lanes(1, &st, &p, nblocks);
}

SHANI_TARGET void sha256_blocks_shani_x2(uint32_t *const st[2], const uint8_t *const p[2],
                                         size_t nblocks)
{
    shani_lanes(2, st, p, nblocks);
}

SHANI_TARGET void sha256_blocks_shani_x4(uint32_t *const st[4], const uint8_t *const p[4],
                                         size_t nblocks)
{
    shani_lanes(4, st, p, nblocks);
}

/* --- AVX-512, sixteen streams ---------------------------------------------------------------- */

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw")))
#define AVX512_INLINE static inline __attribute__((always_inline)) AVX512_TARGET

/* transpose16 transposes a 16x16 matrix of 32-bit words held as 16 rows: 4x4 transposes inside
 * each 128-bit chunk, then a 4x4 transpose of the chunks. Its own inverse. */
AVX512_INLINE void transpose16(__m512i r[16])
{
    __m512i b[16];

#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m512i *x = &r[4 * g];
        __m512i a0 = _mm512_unpacklo_epi32(x[0], x[1]);
        __m512i a1 = _mm512_unpackhi_epi32(x[0], x[1]);
        __m512i a2 = _mm512_unpacklo_epi32(x[2], x[3]);
        __m512i a3 = _mm512_unpackhi_epi32(x[2], x[3]);
        b[0 + g] = _mm512_unpacklo_epi64(a0, a2); /* word 0 of every chunk, rows 4g..4g+3 */
        b[4 + g] = _mm512_unpackhi_epi64(a0, a2);
        b[8 + g] = _mm512_unpacklo_epi64(a1, a3);
        b[12 + g] = _mm512_unpackhi_epi64(a1, a3);
    }
#pragma GCC unroll 4
    for (int w = 0; w < 4; w++) {
        const __m512i *g = &b[4 * w];
        __m512i u0 = _mm512_shuffle_i32x4(g[0], g[1], 0x44);
        __m512i u1 = _mm512_shuffle_i32x4(g[0], g[1], 0xee);
        __m512i u2 = _mm512_shuffle_i32x4(g[2], g[3], 0x44);
        __m512i u3 = _mm512_shuffle_i32x4(g[2], g[3], 0xee);
        r[0 + w] = _mm512_shuffle_i32x4(u0, u2, 0x88); /* column w of chunk 0 */
        r[4 + w] = _mm512_shuffle_i32x4(u0, u2, 0xdd);
        r[8 + w] = _mm512_shuffle_i32x4(u1, u3, 0x88);
        r[12 + w] = _mm512_shuffle_i32x4(u1, u3, 0xdd);
    }
}

AVX512_INLINE __m512i xor3(__m512i a, __m512i b, __m512i c)
{
    return _mm512_ternarylogic_epi32(a, b, c, 0x96);
}

/* avx512_round is round t: v[] holds a..h rotated by t, so no register moves between rounds. */
AVX512_INLINE void avx512_round(__m512i v[8], int t, __m512i w)
{
    __m512i a = v[(0 - t) & 7], b = v[(1 - t) & 7], c = v[(2 - t) & 7];
    __m512i e = v[(4 - t) & 7], f = v[(5 - t) & 7], g = v[(6 - t) & 7];
    __m512i s1 = xor3(_mm512_ror_epi32(e, 6), _mm512_ror_epi32(e, 11), _mm512_ror_epi32(e, 25));
    __m512i s0 = xor3(_mm512_ror_epi32(a, 2), _mm512_ror_epi32(a, 13), _mm512_ror_epi32(a, 22));
    __m512i t1 = _mm512_add_epi32(v[(7 - t) & 7], _mm512_set1_epi32((int)sha256_k[t]));
    t1 = _mm512_add_epi32(t1, w);
    t1 = _mm512_add_epi32(t1, _mm512_ternarylogic_epi32(e, f, g, 0xca)); /* Ch */
    t1 = _mm512_add_epi32(t1, s1);
    __m512i t2 = _mm512_add_epi32(s0, _mm512_ternarylogic_epi32(a, b, c, 0xe8)); /* Maj */
    v[(3 - t) & 7] = _mm512_add_epi32(v[(3 - t) & 7], t1);
    v[(7 - t) & 7] = _mm512_add_epi32(t1, t2);
}

/* avx512_schedule turns w[t & 15] from W[t-16] into W[t]. */
AVX512_INLINE void avx512_schedule(__m512i w[16], int t)
{
    __m512i w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
    __m512i s0 =
        xor3(_mm512_ror_epi32(w15, 7), _mm512_ror_epi32(w15, 18), _mm512_srli_epi32(w15, 3));
    __m512i s1 =
        xor3(_mm512_ror_epi32(w2, 17), _mm512_ror_epi32(w2, 19), _mm512_srli_epi32(w2, 10));
    w[t & 15] =
        _mm512_add_epi32(_mm512_add_epi32(w[t & 15], s0), _mm512_add_epi32(w[(t - 7) & 15], s1));
}

AVX512_TARGET void sha256_blocks_avx512_x16(uint32_t *const st[16], const uint8_t *const p[16],
                                            size_t nblocks)
{
    const __m512i bswap =
        _mm512_broadcast_i32x4(_mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL));
    const uint8_t *src[16];
    __m512i v[16];

    /* Lane i's state as row i (words 8..15 zero); transposed, v[j] holds word j of every lane. */
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        v[i] = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)st[i]));
        src[i] = p[i];
    }
    transpose16(v);
    for (; nblocks > 0; nblocks--) {
        __m512i w[16], v0[8];

#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            w[i] = _mm512_shuffle_epi8(_mm512_loadu_si512(src[i]), bswap);
            src[i] += 64;
        }
        transpose16(w);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            v0[j] = v[j];
        }
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) {
            avx512_round(v, t, w[t]);
        }
        /* Rounds 16..63 in three passes of 16: t & 15 and t & 7 stay constants per position. */
#pragma GCC unroll 3
        for (int base = 16; base < 64; base += 16) {
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++) {
                avx512_schedule(w, base + j);
                avx512_round(v, base + j, w[j]);
            }
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            v[j] = _mm512_add_epi32(v[j], v0[j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 8; j < 16; j++) {
        v[j] = _mm512_setzero_si512();
    }
    transpose16(v);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        _mm256_storeu_si256((__m256i *)st[i], _mm512_castsi512_si256(v[i]));
    }
}

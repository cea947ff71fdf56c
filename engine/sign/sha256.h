/* sha256.h: SHA-256 block compression kernels for hmac.c (private to engine/sign/).
 *
 * Each kernel applies the SHA-256 compression function to whole 64-byte blocks, updating a state
 * kept in the standard word order (h0..h7, native uint32_t). The multi-stream kernels advance
 * independent streams by the same number of blocks so that their instructions interleave; every
 * stream's blocks are contiguous at its own pointer. No kernel allocates or keeps state. */
#ifndef HOOKRING_SIGN_SHA256_H
#define HOOKRING_SIGN_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The initial hash value H(0) of FIPS 180-4. */
extern const uint32_t sha256_iv[8];

/* sha256_blocks_portable compresses nblocks blocks at p into st, in plain C. */
void sha256_blocks_portable(uint32_t st[8], const uint8_t *p, size_t nblocks);

/* sha256_has_shani tells whether this CPU has the SHA extensions (and SSE4.1/SSSE3) that the
 * sha256_blocks_shani* kernels need. Calling those kernels without them faults. */
bool sha256_has_shani(void);

/* sha256_has_avx512 tells whether this CPU (and OS) can run sha256_blocks_avx512_x16
 * (AVX-512 F and BW). */
bool sha256_has_avx512(void);

/* sha256_blocks_shani compresses nblocks blocks at p into st with SHA-NI. */
void sha256_blocks_shani(uint32_t st[8], const uint8_t *p, size_t nblocks);

/* sha256_blocks_shani_x2 advances two streams by nblocks blocks each: st[i] from p[i]. */
void sha256_blocks_shani_x2(uint32_t *const st[2], const uint8_t *const p[2], size_t nblocks);

/* sha256_blocks_shani_x4 advances four streams by nblocks blocks each: st[i] from p[i]. */
void sha256_blocks_shani_x4(uint32_t *const st[4], const uint8_t *const p[4], size_t nblocks);

/* sha256_blocks_avx512_x16 advances sixteen streams by nblocks blocks each: st[i] from p[i], the
 * SHA-256 arithmetic done on 16 lanes of 32-bit words. A lane with nothing to do can be given a
 * scratch state and any p[i] readable for nblocks blocks. */
void sha256_blocks_avx512_x16(uint32_t *const st[16], const uint8_t *const p[16], size_t nblocks);

#endif

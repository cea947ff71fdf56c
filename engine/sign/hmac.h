/* hmac.h: HMAC-SHA256 with precomputed key states, one message or a batch at a time.
 *
 * A key is prepared once (hmac_key_init): the SHA-256 states after the ipad and opad blocks are
 * kept, so signing a message costs only its own blocks plus one outer block. hmac_batch() hashes
 * several messages together: with SHA-NI it interleaves independent streams so the SHA unit's
 * latency is hidden, with AVX-512 it hashes sixteen streams in the lanes of vector registers;
 * without either, a portable path gives the same bytes. Every result equals BoringSSL's
 * HMAC(EVP_sha256(), ...) bit for bit. */
#ifndef HOOKRING_HMAC_H
#define HOOKRING_HMAC_H

#include "../common.h"

#define HMAC_SHA256_LEN 32

struct hmac_key {
    uint32_t inner[8]; /* state after compressing key ^ ipad */
    uint32_t outer[8]; /* state after compressing key ^ opad */
};

/* One message to sign: the concatenation of pieces[0..npieces), under key. out gets 32 bytes. */
struct hmac_job {
    const struct hmac_key *key;
    const struct slice *pieces;
    size_t npieces;
    uint8_t *out;
};

enum hmac_impl {
    HMAC_IMPL_AUTO = 0,   /* the fastest this CPU supports (chosen once, at first use) */
    HMAC_IMPL_PORTABLE,   /* plain C SHA-256 compression, one stream */
    HMAC_IMPL_SHANI,      /* SHA-NI, one stream at a time */
    HMAC_IMPL_SHANI_X2,   /* SHA-NI, two streams interleaved */
    HMAC_IMPL_SHANI_X4,   /* SHA-NI, four streams interleaved */
    HMAC_IMPL_AVX512_X16, /* AVX-512, sixteen streams in vector lanes; the last few streams of
                             a batch, too few to fill the lanes, go to SHA-NI (or portable) */
};

/* hmac_key_init prepares key (any length; longer than 64 bytes is hashed first, as RFC 2104). */
void hmac_key_init(struct hmac_key *k, const uint8_t *key, size_t key_len);

/* hmac_key_wipe zeroes the key state. */
void hmac_key_wipe(struct hmac_key *k);

/* hmac_sha256 signs one message made of pieces. */
void hmac_sha256(const struct hmac_key *k, const struct slice *pieces, size_t npieces,
                 uint8_t out[HMAC_SHA256_LEN]);

/* hmac_batch signs every job in jobs[0..n). Jobs may share keys; out buffers must not overlap
 * any input. */
void hmac_batch(struct hmac_job *jobs, size_t n);

/* hmac_set_impl forces an implementation (tests and benchmarks). Returns 0, or -ENOTSUP when
 * this CPU lacks what it needs (the current choice is then unchanged). */
int hmac_set_impl(enum hmac_impl impl);

/* hmac_impl_name names the implementation hmac_batch() currently uses. */
const char *hmac_impl_name(void);

#endif

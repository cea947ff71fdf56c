/* fuzz_common.h: shared set-up for the signature-header fuzz targets. Deterministic: fixed
 * secrets, a fixed clock, no randomness. */
#ifndef HOOKRING_FUZZ_COMMON_H
#define HOOKRING_FUZZ_COMMON_H

#include <stdlib.h>

#include "sign/profile.h"

#define FUZZ_NOW_MS 1700000000000LL

static inline void fuzz_signer(struct signer *s, const char *profile, const char *secret)
{
    struct slice sec = slice_cstr(secret);
    char err[160];
    if (signer_init(s, profile_find(profile), &sec, 1, SLICE_LIT("c2VjcmV0LWtleQ=="),
                    SLICE_LIT("salt"), err, sizeof(err))) {
        abort();
    }
}

/* fuzz_split splits data at the first 0x00 byte into a header value and a body. */
static inline void fuzz_split(const uint8_t *data, size_t size, struct slice *value,
                              struct slice *body)
{
    const uint8_t *z = memchr(data, 0, size);
    size_t n = z ? (size_t)(z - data) : size;
    *value = slice_of(data, n);
    *body = z ? slice_of(z + 1, size - n - 1) : SLICE_LIT("{}");
}

/* fuzz_verify runs one profile's verifier with the given headers and checks its contract. */
static inline void fuzz_verify(const struct signer *s, const struct header *h, size_t nh,
                               struct slice body)
{
    static struct verify_result r;
    static bool init;
    if (!init) {
        buf_init(&r.plain, 1 << 20);
        init = true;
    }
    struct verify_opts o = {.now_ms = FUZZ_NOW_MS, .tolerance_s = VERIFY_TOLERANCE_S};
    enum verify_status st = verify_request(s, h, nh, body, &o, &r);
    if (st != VERIFY_OK && r.reason[0] == '\0') {
        abort(); /* every refusal must say why */
    }
    if (r.id_len > SIGN_ID_MAX) {
        abort();
    }
}

#endif

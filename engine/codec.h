/* codec.h: strict hex and base64 (standard alphabet, padded), constant-time compare. */
#ifndef HOOKRING_CODEC_H
#define HOOKRING_CODEC_H

#include "common.h"

/* hex_encode writes 2 * n lowercase hex digits to out (no NUL). */
void hex_encode(char *out, const uint8_t *in, size_t n);

/* hex_decode reads exactly 2 * out_len hex digits (either case) from in. Returns 0, or -EINVAL
 * when in has another length or a non-hex byte. */
int hex_decode(uint8_t *out, size_t out_len, struct slice in);

/* b64_encoded_len is the padded base64 length of n bytes. */
static inline size_t b64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

/* b64_encode writes the padded base64 of in to out (b64_encoded_len(n) bytes, no NUL). */
size_t b64_encode(char *out, const uint8_t *in, size_t n);

/* b64_decode decodes strictly padded standard base64 into out (cap bytes). Returns 0 with
 * *out_len set, -EINVAL on a bad character, length or padding, -ENOSPC when it does not fit. */
int b64_decode(uint8_t *out, size_t cap, size_t *out_len, struct slice in);

/* ct_equal compares n bytes in time independent of their contents. */
bool ct_equal(const void *a, const void *b, size_t n);

#endif

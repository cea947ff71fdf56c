/* codec.c: strict hex and base64 (canonical padding), constant-time comparison. */
#include "codec.h"

#include <errno.h>
#include <openssl/mem.h>

void hex_encode(char *out, const uint8_t *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}

static int nibble(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int hex_decode(uint8_t *out, size_t out_len, struct slice in)
{
    if (in.len != 2 * out_len) {
        return -EINVAL;
    }
    for (size_t i = 0; i < out_len; i++) {
        int hi = nibble(in.p[2 * i]), lo = nibble(in.p[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -EINVAL;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

size_t b64_encode(char *out, const uint8_t *in, size_t n)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        out[o++] = alpha[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alpha[v >> 18];
        out[o++] = alpha[(v >> 12) & 63];
        out[o++] = alpha[(v >> 6) & 63];
        out[o++] = '=';
    }
    return o;
}

static int b64_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

int b64_decode(uint8_t *out, size_t cap, size_t *out_len, struct slice in)
{
    if (in.len % 4 != 0) {
        return -EINVAL;
    }
    size_t o = 0;
    for (size_t i = 0; i < in.len; i += 4) {
        bool last = i + 4 == in.len;
        int v[4];
        size_t pad = 0;
        for (size_t j = 0; j < 4; j++) {
            uint8_t c = in.p[i + j];
            if (c == '=' && last && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad) {
                return -EINVAL; /* data after padding */
            }
            v[j] = b64_val(c);
            if (v[j] < 0) {
                return -EINVAL;
            }
        }
        /* Canonical form only: the bits that padding drops must be zero. */
        if ((pad == 2 && (v[1] & 15)) || (pad == 1 && (v[2] & 3))) {
            return -EINVAL;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        size_t n = 3 - pad;
        if (cap - o < n) {
            return -ENOSPC;
        }
        out[o++] = (uint8_t)(w >> 16);
        if (n > 1) {
            out[o++] = (uint8_t)(w >> 8);
        }
        if (n > 2) {
            out[o++] = (uint8_t)w;
        }
    }
    *out_len = o;
    return 0;
}

bool ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

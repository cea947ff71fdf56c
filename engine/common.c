/* common.c: slices and bounded buffers. */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

uint64_t slice_hash(struct slice s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < s.len; i++) {
        h = (h ^ s.p[i]) * 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

bool slice_eq_nocase(struct slice a, struct slice b)
{
    if (a.len != b.len) {
        return false;
    }
    for (size_t i = 0; i < a.len; i++) {
        uint8_t x = a.p[i], y = b.p[i];
        if (x >= 'A' && x <= 'Z') {
            x += 32;
        }
        if (y >= 'A' && y <= 'Z') {
            y += 32;
        }
        if (x != y) {
            return false;
        }
    }
    return true;
}

void buf_init(struct buf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

int buf_reserve(struct buf *b, size_t n)
{
    if (n <= b->cap - b->len) {
        return 0;
    }
    if (n > b->max - b->len) {
        return -ENOMEM;
    }
    size_t want = b->len + n;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want) {
        cap = cap * 2 < cap ? want : cap * 2;
    }
    if (cap > b->max) {
        cap = b->max;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        return -ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int buf_reserve_exact(struct buf *b, size_t n)
{
    if (n <= b->cap - b->len) {
        return 0;
    }
    if (n > b->max - b->len) {
        return -ENOMEM;
    }
    uint8_t *p = realloc(b->p, b->len + n);
    if (!p) {
        return -ENOMEM;
    }
    b->p = p;
    b->cap = b->len + n;
    return 0;
}

void buf_shrink(struct buf *b)
{
    if (b->len == 0) {
        buf_free(b);
        return;
    }
    if (b->len < b->cap) {
        uint8_t *p = realloc(b->p, b->len);
        if (p) { /* a failed shrink keeps the larger buffer */
            b->p = p;
            b->cap = b->len;
        }
    }
}

static size_t fmt_u64_rev(char *tmp, uint64_t v)
{
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return n;
}

size_t fmt_i64(char *out, int64_t v)
{
    char tmp[20];
    size_t k = 0;
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        out[k++] = '-';
        u = 0 - u;
    }
    size_t n = fmt_u64_rev(tmp, u);
    while (n) {
        out[k++] = tmp[--n];
    }
    out[k] = 0;
    return k;
}

int buf_put_u64(struct buf *b, uint64_t v)
{
    char tmp[20], out[20];
    size_t n = fmt_u64_rev(tmp, v), k = 0;
    while (n) {
        out[k++] = tmp[--n];
    }
    return buf_put(b, out, k);
}

int buf_put(struct buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return 0;
    }
    int rc = buf_reserve(b, n);
    if (rc) {
        return rc;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_put(b, s, strlen(s));
}

int buf_putc(struct buf *b, char c)
{
    return buf_put(b, &c, 1);
}

int buf_put_slice(struct buf *b, struct slice s)
{
    return buf_put(b, s.p, s.len);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return -EINVAL;
    }
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int64_t unix_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

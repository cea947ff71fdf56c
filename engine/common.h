/* common.h: the small vocabulary every hookring module shares.
 *
 * struct slice is borrowed bytes (never freed through it); struct buf is an owned, growable
 * buffer with a hard cap. Actions return 0 or -errno. */
#ifndef HOOKRING_COMMON_H
#define HOOKRING_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define HR_UNUSED __attribute__((unused))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

struct slice {
    const uint8_t *p;
    size_t len;
};

#define SLICE_LIT(s) ((struct slice){(const uint8_t *)(s), sizeof(s) - 1})

static inline struct slice slice_of(const void *p, size_t len)
{
    return (struct slice){(const uint8_t *)p, len};
}

static inline struct slice slice_cstr(const char *s)
{
    return (struct slice){(const uint8_t *)s, s ? strlen(s) : 0};
}

/* pairs_end is the end of the packed pairs p[0..len) (pair_next), NULL when p is (no list:
 * NULL + 0 is undefined behaviour). */
static inline const char *pairs_end(const char *p, size_t len)
{
    return p ? p + len : NULL;
}

/* pair_next reads the pair "name\0value\0" at *p (a list of them packed up to end, as a
 * webhook keeps its custom headers) and moves *p past it. Returns false, leaving *p, when no
 * whole pair starts there. */
static inline bool pair_next(const char **p, const char *end, struct slice *name,
                             struct slice *value)
{
    const char *n = *p, *z = n && n < end ? (const char *)memchr(n, 0, (size_t)(end - n)) : NULL;
    const char *v = z ? z + 1 : NULL;
    const char *vz = v && v < end ? (const char *)memchr(v, 0, (size_t)(end - v)) : NULL;
    if (!vz) {
        return false;
    }
    *name = (struct slice){(const uint8_t *)n, (size_t)(z - n)};
    *value = (struct slice){(const uint8_t *)v, (size_t)(vz - v)};
    *p = vz + 1;
    return true;
}

static inline bool slice_eq(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline bool slice_eq_cstr(struct slice a, const char *s)
{
    return slice_eq(a, slice_cstr(s));
}

/* slice_eq_nocase compares ASCII case-insensitively (HTTP header names). */
bool slice_eq_nocase(struct slice a, struct slice b);

/* slice_hash is 64-bit FNV-1a of s, its high bits folded into the low ones (hash tables take
 * the low bits). For ids and names in tables an adversary gains nothing from colliding in
 * beyond a slower probe. */
uint64_t slice_hash(struct slice s);

/* An owned buffer. len <= cap <= max; max bounds growth (0 means cap is fixed). */
struct buf {
    uint8_t *p;
    size_t len;
    size_t cap;
    size_t max;
};

/* buf_init prepares an empty buffer that may grow to max bytes. No allocation happens yet. */
void buf_init(struct buf *b, size_t max);
/* buf_free releases the memory; buf_free on an initialised empty buffer is a no-op. */
void buf_free(struct buf *b);
/* buf_reserve makes room for n more bytes. Returns 0, or -ENOMEM (also when max would be
 * exceeded), leaving the buffer unchanged. */
int buf_reserve(struct buf *b, size_t n);
/* buf_reserve_exact makes room for n more bytes, growing to exactly that (no doubling): for a
 * buffer whose final size is known or bounded. */
int buf_reserve_exact(struct buf *b, size_t n);
/* buf_shrink gives back the room past b->len (a buffer kept long after it is written). */
void buf_shrink(struct buf *b);
/* buf_put appends n bytes. Returns 0 or -ENOMEM. */
int buf_put(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_put_slice(struct buf *b, struct slice s);
/* unix_now_us is the time of day (CLOCK_REALTIME, the precise clock: a receiver compares its
 * arrival times with the sender's clock) in unix microseconds. */
int64_t unix_now_us(void);
/* fmt_i64 writes v in decimal and a NUL to out (at least 21 bytes) and returns its length:
 * what "%lld" writes, without printf's cost on a hot path. */
size_t fmt_i64(char *out, int64_t v);
/* buf_put_u64 appends v in decimal. Returns 0 or -ENOMEM. */
int buf_put_u64(struct buf *b, uint64_t v);
/* buf_printf appends formatted text. Returns 0 or -ENOMEM. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline struct slice buf_slice(const struct buf *b)
{
    return (struct slice){b->p, b->len};
}

#endif

/* json.c: strict span-keeping JSON tokenizer. */
#include "json.h"

#include <errno.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

struct jp {
    struct json_tok *toks;
    size_t max;
    size_t n;
    const uint8_t *in;
    size_t len;
    size_t pos;
    int depth;
};

static void skip_ws(struct jp *p)
{
    while (p->pos < p->len) {
        uint8_t c = p->in[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        p->pos++;
    }
}

static int new_tok(struct jp *p, enum json_type type, size_t start)
{
    if (p->n >= p->max) {
        return -1;
    }
    struct json_tok *t = &p->toks[p->n];
    t->type = (uint8_t)type;
    t->start = (uint32_t)start;
    t->end = (uint32_t)start;
    t->size = 0;
    t->next = 0;
    return (int)p->n++;
}

static bool is_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* utf8_len returns the length of the valid UTF-8 sequence at s[0..n), or 0 when invalid. */
static size_t utf8_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) {
            lo = 0xA0;
        } else if (c == 0xED) {
            hi = 0x9F;
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) {
            lo = 0x90;
        } else if (c == 0xF4) {
            hi = 0x8F;
        }
    } else {
        return 0;
    }
    if (n < need + 1) {
        return 0;
    }
    if (s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return need + 1;
}

/* plain_run is how many bytes at the start of s (at most n) are plain string characters: ASCII
 * from 0x20, neither '"' nor '\\'. A string's bulk is usually plain (an event's data is mostly
 * one long string), and this skips it 16 bytes at a time with SSE2 (every x86-64 has it), then
 * 8 at a time (each test below is exact for "some byte is"); the caller takes the byte it
 * stops at, or the last few, one at a time. */
static size_t plain_run(const uint8_t *s, size_t n)
{
    size_t i = 0;
#ifdef __SSE2__
    /* as signed bytes, 0x80-0xff are negative: one "less than 0x20" catches them too */
    const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'),
                  bslash = _mm_set1_epi8('\\');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i special =
            _mm_or_si128(_mm_cmplt_epi8(v, space),
                         _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)));
        unsigned m = (unsigned)_mm_movemask_epi8(special);
        if (m) {
            return i + (size_t)__builtin_ctz(m);
        }
    }
#endif
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
        uint64_t special = ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b) | w;
        if (special & high) {
            break;
        }
    }
    return i;
}

static enum json_status parse_string(struct jp *p)
{
    p->pos++; /* opening quote */
    int idx = new_tok(p, JSON_STRING, p->pos);
    if (idx < 0) {
        return JSON_TOO_MANY;
    }
    while (p->pos < p->len) {
        p->pos += plain_run(p->in + p->pos, p->len - p->pos);
        if (p->pos >= p->len) {
            break;
        }
        uint8_t c = p->in[p->pos];
        if (c == '"') {
            p->toks[idx].end = (uint32_t)p->pos;
            p->toks[idx].next = (uint32_t)p->n;
            p->pos++;
            return JSON_OK;
        }
        if (c < 0x20) {
            return JSON_INVALID;
        }
        if (c == '\\') {
            if (p->pos + 1 >= p->len) {
                return JSON_INVALID;
            }
            uint8_t e = p->in[p->pos + 1];
            if (e == 'u') {
                if (p->pos + 6 > p->len) {
                    return JSON_INVALID;
                }
                for (size_t i = 2; i < 6; i++) {
                    if (!is_hex(p->in[p->pos + i])) {
                        p->pos += i;
                        return JSON_INVALID;
                    }
                }
                p->pos += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0) {
                p->pos++;
                return JSON_INVALID;
            }
            p->pos += 2;
            continue;
        }
        size_t l = utf8_len(p->in + p->pos, p->len - p->pos);
        if (l == 0) {
            return JSON_INVALID;
        }
        p->pos += l;
    }
    return JSON_INVALID;
}

static bool digit(struct jp *p)
{
    return p->pos < p->len && p->in[p->pos] >= '0' && p->in[p->pos] <= '9';
}

static enum json_status parse_number(struct jp *p)
{
    size_t start = p->pos;
    if (p->in[p->pos] == '-') {
        p->pos++;
    }
    if (!digit(p)) {
        return JSON_INVALID;
    }
    if (p->in[p->pos] == '0') {
        p->pos++;
    } else {
        while (digit(p)) {
            p->pos++;
        }
    }
    if (p->pos < p->len && p->in[p->pos] == '.') {
        p->pos++;
        if (!digit(p)) {
            return JSON_INVALID;
        }
        while (digit(p)) {
            p->pos++;
        }
    }
    if (p->pos < p->len && (p->in[p->pos] == 'e' || p->in[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->in[p->pos] == '+' || p->in[p->pos] == '-')) {
            p->pos++;
        }
        if (!digit(p)) {
            return JSON_INVALID;
        }
        while (digit(p)) {
            p->pos++;
        }
    }
    int idx = new_tok(p, JSON_NUMBER, start);
    if (idx < 0) {
        return JSON_TOO_MANY;
    }
    p->toks[idx].end = (uint32_t)p->pos;
    p->toks[idx].next = (uint32_t)p->n;
    return JSON_OK;
}

static enum json_status parse_literal(struct jp *p, const char *word, enum json_type type)
{
    size_t wl = strlen(word);
    if (p->len - p->pos < wl || memcmp(p->in + p->pos, word, wl) != 0) {
        return JSON_INVALID;
    }
    int idx = new_tok(p, type, p->pos);
    if (idx < 0) {
        return JSON_TOO_MANY;
    }
    p->pos += wl;
    p->toks[idx].end = (uint32_t)p->pos;
    p->toks[idx].next = (uint32_t)p->n;
    return JSON_OK;
}

static enum json_status parse_value(struct jp *p);

static enum json_status parse_container(struct jp *p, bool object)
{
    if (++p->depth > JSON_MAX_DEPTH) {
        return JSON_TOO_DEEP;
    }
    int idx = new_tok(p, object ? JSON_OBJECT : JSON_ARRAY, p->pos);
    if (idx < 0) {
        return JSON_TOO_MANY;
    }
    uint8_t close = object ? '}' : ']';
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->in[p->pos] == close) {
        goto done;
    }
    for (;;) {
        enum json_status st;
        if (object) {
            if (p->pos >= p->len || p->in[p->pos] != '"') {
                return JSON_INVALID;
            }
            st = parse_string(p);
            if (st != JSON_OK) {
                return st;
            }
            skip_ws(p);
            if (p->pos >= p->len || p->in[p->pos] != ':') {
                return JSON_INVALID;
            }
            p->pos++;
            skip_ws(p);
        }
        st = parse_value(p);
        if (st != JSON_OK) {
            return st;
        }
        p->toks[idx].size++;
        skip_ws(p);
        if (p->pos >= p->len) {
            return JSON_INVALID;
        }
        if (p->in[p->pos] == close) {
            break;
        }
        if (p->in[p->pos] != ',') {
            return JSON_INVALID;
        }
        p->pos++;
        skip_ws(p);
    }
done:
    p->pos++;
    p->toks[idx].end = (uint32_t)p->pos;
    p->toks[idx].next = (uint32_t)p->n;
    p->depth--;
    return JSON_OK;
}

static enum json_status parse_value(struct jp *p)
{
    if (p->pos >= p->len) {
        return JSON_INVALID;
    }
    switch (p->in[p->pos]) {
    case '{':
        return parse_container(p, true);
    case '[':
        return parse_container(p, false);
    case '"':
        return parse_string(p);
    case 't':
        return parse_literal(p, "true", JSON_TRUE);
    case 'f':
        return parse_literal(p, "false", JSON_FALSE);
    case 'n':
        return parse_literal(p, "null", JSON_NULL);
    default:
        return parse_number(p);
    }
}

enum json_status json_parse(struct json_tok *toks, size_t max_toks, const uint8_t *in, size_t len,
                            size_t *ntoks, size_t *err_off)
{
    struct jp p = {.toks = toks, .max = max_toks, .in = in, .len = len};
    /* Offsets are 32-bit: refuse inputs that could not be described. */
    if (len > UINT32_MAX - 1) {
        *err_off = 0;
        return JSON_TOO_MANY;
    }
    skip_ws(&p);
    enum json_status st = parse_value(&p);
    if (st == JSON_OK) {
        skip_ws(&p);
        if (p.pos != len) {
            st = JSON_INVALID;
        }
    }
    *ntoks = p.n;
    *err_off = p.pos;
    return st;
}

struct slice json_value_slice(const struct json_tok *t, const uint8_t *in)
{
    if (t->type == JSON_STRING) {
        return (struct slice){in + t->start - 1, t->end - t->start + 2};
    }
    return (struct slice){in + t->start, t->end - t->start};
}

static bool tok_str_eq(const struct json_tok *t, const uint8_t *in, const char *s)
{
    /* Keys with escapes never match a plain name: member names we look up are plain ASCII. */
    size_t l = strlen(s);
    return t->type == JSON_STRING && t->end - t->start == l && memcmp(in + t->start, s, l) == 0;
}

int json_obj_get(const struct json_tok *toks, int obj, const uint8_t *in, const char *key)
{
    if (obj < 0 || toks[obj].type != JSON_OBJECT) {
        return -1;
    }
    uint32_t i = (uint32_t)obj + 1;
    for (uint32_t m = 0; m < toks[obj].size; m++) {
        uint32_t v = i + 1;
        if (tok_str_eq(&toks[i], in, key)) {
            return (int)v;
        }
        i = toks[v].next;
    }
    return -1;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return c - 'A' + 10;
}

static uint32_t hex4(const uint8_t *s)
{
    return (uint32_t)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 | hexval(s[3]));
}

int json_unescape(const struct json_tok *t, const uint8_t *in, char *out, size_t cap,
                  size_t *out_len)
{
    size_t o = 0;
    const uint8_t *s = in + t->start, *e = in + t->end;
    while (s < e) {
        uint8_t tmp[4];
        size_t n = 1;
        if (*s != '\\') {
            tmp[0] = *s++;
        } else {
            uint8_t c = s[1];
            s += 2;
            switch (c) {
            case 'b':
                tmp[0] = '\b';
                break;
            case 'f':
                tmp[0] = '\f';
                break;
            case 'n':
                tmp[0] = '\n';
                break;
            case 'r':
                tmp[0] = '\r';
                break;
            case 't':
                tmp[0] = '\t';
                break;
            case 'u': {
                uint32_t cp = hex4(s);
                s += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return -EINVAL;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (e - s < 6 || s[0] != '\\' || s[1] != 'u') {
                        return -EINVAL;
                    }
                    uint32_t lo = hex4(s + 2);
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        return -EINVAL;
                    }
                    s += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp < 0x80) {
                    tmp[0] = (uint8_t)cp;
                } else if (cp < 0x800) {
                    tmp[0] = (uint8_t)(0xC0 | cp >> 6);
                    tmp[1] = (uint8_t)(0x80 | (cp & 0x3F));
                    n = 2;
                } else if (cp < 0x10000) {
                    tmp[0] = (uint8_t)(0xE0 | cp >> 12);
                    tmp[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                    tmp[2] = (uint8_t)(0x80 | (cp & 0x3F));
                    n = 3;
                } else {
                    tmp[0] = (uint8_t)(0xF0 | cp >> 18);
                    tmp[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
                    tmp[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
                    tmp[3] = (uint8_t)(0x80 | (cp & 0x3F));
                    n = 4;
                }
                break;
            }
            default: /* '"', '\\', '/' */
                tmp[0] = c;
                break;
            }
        }
        if (o + n > cap) {
            return -ENOSPC;
        }
        memcpy(out + o, tmp, n);
        o += n;
    }
    if (o < cap) {
        out[o] = '\0';
    }
    *out_len = o;
    return 0;
}

int json_put_string(struct buf *b, struct slice s)
{
    static const char hex[] = "0123456789abcdef";
    int rc = buf_reserve(b, s.len + 2);
    if (rc) {
        return rc;
    }
    rc = buf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < s.len && !rc; i++) {
        uint8_t c = s.p[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        rc = buf_put(b, s.p + i - run, run);
        run = 0;
        char esc[6] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        if (!rc) {
            rc = buf_put(b, esc, n);
        }
    }
    if (!rc) {
        rc = buf_put(b, s.p + s.len - run, run);
    }
    return rc ? rc : buf_putc(b, '"');
}

const char *json_type_name(enum json_type t)
{
    switch (t) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_NUMBER:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "?";
    }
}

/* httpresp.c: incremental HTTP/1.1 response parser. */
#include "httpresp.h"

#include "event.h"

#include <errno.h>

void httpresp_init(struct httpresp *r, bool head_request)
{
    memset(r, 0, offsetof(struct httpresp, excerpt));
    r->excerpt_len = 0;
    r->head_request = head_request;
    r->state = HTTPRESP_S_HEAD;
}

/* tchar per RFC 9110 5.6.2 */
static bool is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_field_char(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static const uint8_t *find_crlf(const uint8_t *p, const uint8_t *end)
{
    while (p + 1 < end) {
        const uint8_t *cr = memchr(p, '\r', (size_t)(end - p - 1));
        if (!cr) {
            return NULL;
        }
        if (cr[1] == '\n') {
            return cr;
        }
        p = cr + 1;
    }
    return NULL;
}

static bool lower_eq(struct slice s, const char *lit)
{
    return slice_eq_nocase(s, slice_cstr(lit));
}

/* each_token calls back for every comma-separated token of a list header value. */
static bool list_has(struct slice v, const char *tok)
{
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ',')) {
            i++;
        }
        size_t j = i;
        while (j < v.len && v.p[j] != ',') {
            j++;
        }
        size_t e = j;
        while (e > i && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t')) {
            e--;
        }
        if (e > i && lower_eq((struct slice){v.p + i, e - i}, tok)) {
            return true;
        }
        i = j;
    }
    return false;
}

/* last_token returns the last comma-separated token of v. */
static struct slice last_token(struct slice v)
{
    size_t e = v.len;
    while (e && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t')) {
        e--;
    }
    size_t b = e;
    while (b && v.p[b - 1] != ',') {
        b--;
    }
    while (b < e && (v.p[b] == ' ' || v.p[b] == '\t')) {
        b++;
    }
    return (struct slice){v.p + b, e - b};
}

static bool parse_u64(struct slice s, uint64_t *out)
{
    if (s.len == 0 || s.len > 18) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s.p[i] - '0');
    }
    *out = v;
    return true;
}

int httpresp_parse_http_date(struct slice s, int64_t *out)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const char days[] = "SunMonTueWedThuFriSat";
    const uint8_t *p = s.p;
    if (s.len != 29 || p[3] != ',' || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' ' ||
        p[19] != ':' || p[22] != ':' || p[25] != ' ' || memcmp(p + 26, "GMT", 3) != 0) {
        return -EINVAL;
    }
    bool day_ok = false;
    for (int i = 0; i < 7; i++) {
        day_ok |= memcmp(p, days + 3 * i, 3) == 0;
    }
    int mon = -1;
    for (int i = 0; i < 12; i++) {
        if (memcmp(p + 8, months + 3 * i, 3) == 0) {
            mon = i + 1;
        }
    }
    int v[6];
    static const int at[6] = {5, 12, 17, 20, 23, 14};
    static const int len[6] = {2, 4, 2, 2, 2, 2};
    for (int k = 0; k < 5; k++) {
        v[k] = 0;
        for (int i = 0; i < len[k]; i++) {
            uint8_t c = p[at[k] + i];
            if (c < '0' || c > '9') {
                return -EINVAL;
            }
            v[k] = v[k] * 10 + (c - '0');
        }
    }
    if (!day_ok || mon < 0 || v[0] < 1 || v[0] > 31 || v[2] > 23 || v[3] > 59 || v[4] > 60) {
        return -EINVAL;
    }
    int64_t d = event_days_from_civil(v[1], (unsigned)mon, (unsigned)v[0]);
    *out = ((d * 24 + v[2]) * 60 + v[3]) * 60 + v[4];
    return 0;
}

/* parse_head parses one complete head p[0..n) (ending in CRLF CRLF). */
static enum httpresp_status parse_head(struct httpresp *r, const uint8_t *p, size_t n,
                                       const struct httpresp_limits *lim)
{
    const uint8_t *end = p + n;
    const uint8_t *eol = find_crlf(p, end);
    /* status line: HTTP/1.x SP 3DIGIT [SP reason] */
    size_t sl = (size_t)(eol - p);
    if (sl < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ') {
        return HTTPRESP_BAD;
    }
    r->minor = (uint8_t)(p[7] - '0');
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return HTTPRESP_BAD;
        }
        code = code * 10 + (p[i] - '0');
    }
    if (code < 100 || code > 599 || (sl > 12 && p[12] != ' ')) {
        return HTTPRESP_BAD;
    }
    for (size_t i = 13; i < sl; i++) {
        if (!is_field_char(p[i])) {
            return HTTPRESP_BAD;
        }
    }
    r->status = code;
    r->keep_alive = r->minor == 1;
    r->chunked = false;
    r->has_length = false;
    r->has_retry_after = false;
    r->nheaders = 0;
    bool has_te = false, conn_close = false, conn_keep = false;
    const uint8_t *line = eol + 2;
    for (;;) {
        eol = find_crlf(line, end);
        if (eol == line) {
            break; /* the blank line */
        }
        if (++r->nheaders > lim->max_headers) {
            return HTTPRESP_TOO_MANY_HEADERS;
        }
        const uint8_t *c = line;
        while (c < eol && is_tchar(*c)) {
            c++;
        }
        if (c == line || c == eol || *c != ':') {
            return HTTPRESP_BAD; /* no name, or whitespace before the colon */
        }
        struct slice name = {line, (size_t)(c - line)};
        const uint8_t *v = c + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t')) {
            v++;
        }
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
            ve--;
        }
        for (const uint8_t *q = v; q < ve; q++) {
            if (!is_field_char(*q)) {
                return HTTPRESP_BAD;
            }
        }
        struct slice val = {v, (size_t)(ve - v)};
        if (lower_eq(name, "content-length")) {
            uint64_t cl;
            if (!parse_u64(val, &cl) || (r->has_length && cl != r->content_length)) {
                return HTTPRESP_BAD;
            }
            r->has_length = true;
            r->content_length = cl;
        } else if (lower_eq(name, "transfer-encoding")) {
            has_te = true;
            r->chunked = lower_eq(last_token(val), "chunked");
        } else if (lower_eq(name, "connection")) {
            conn_close |= list_has(val, "close");
            conn_keep |= list_has(val, "keep-alive");
        } else if (lower_eq(name, "retry-after")) {
            uint64_t secs;
            if (parse_u64(val, &secs)) {
                r->has_retry_after = true;
                r->retry_after_is_date = false;
                r->retry_after = (int64_t)secs;
            } else if (httpresp_parse_http_date(val, &r->retry_after) == 0) {
                r->has_retry_after = true;
                r->retry_after_is_date = true;
            } /* an unparseable Retry-After is ignored, as if absent */
        }
        line = eol + 2;
    }
    if (has_te && r->has_length) {
        return HTTPRESP_BAD; /* both framings: a smuggling hazard, refused */
    }
    if (r->minor == 0) {
        r->keep_alive = conn_keep && !conn_close;
    } else if (conn_close) {
        r->keep_alive = false;
    }
    if (has_te && !r->chunked) {
        r->keep_alive = false; /* a body delimited by the close */
    }
    return HTTPRESP_DONE;
}

static enum httpresp_status take_body(struct httpresp *r, const uint8_t *p, size_t n,
                                      const struct httpresp_limits *lim)
{
    if (r->excerpt_len < HTTPRESP_EXCERPT) {
        size_t k = HTTPRESP_EXCERPT - r->excerpt_len;
        k = k < n ? k : n;
        memcpy(r->excerpt + r->excerpt_len, p, k);
        r->excerpt_len += k;
    }
    r->body_len += n;
    if (r->body_len > lim->max_body) {
        r->keep_alive = false;
        return HTTPRESP_BODY_TOO_LARGE;
    }
    return HTTPRESP_AGAIN;
}

static enum httpresp_status after_head(struct httpresp *r)
{
    if (r->head_request || r->status == 204 || r->status == 304) {
        r->state = HTTPRESP_S_DONE;
    } else if (r->chunked) {
        r->state = HTTPRESP_S_CHUNK_SIZE;
    } else if (r->has_length) {
        r->remaining = r->content_length;
        r->state = r->remaining ? HTTPRESP_S_BODY_LENGTH : HTTPRESP_S_DONE;
    } else {
        r->keep_alive = false;
        r->state = HTTPRESP_S_BODY_EOF;
    }
    return r->state == HTTPRESP_S_DONE ? HTTPRESP_DONE : HTTPRESP_AGAIN;
}

static int hexval(uint8_t c)
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

#define CHUNK_LINE_MAX 1024

enum httpresp_status httpresp_feed(struct httpresp *r, const uint8_t *in, size_t len,
                                   size_t *consumed, const struct httpresp_limits *lim)
{
    size_t pos = 0;
    enum httpresp_status st = HTTPRESP_AGAIN;
    const uint8_t *end = in + len;
    while (st == HTTPRESP_AGAIN) {
        size_t avail = len - pos;
        switch (r->state) {
        case HTTPRESP_S_HEAD: {
            const uint8_t *p = in + pos, *e = NULL;
            size_t scan = avail < lim->max_head ? avail : lim->max_head;
            for (const uint8_t *q = p; q + 3 < p + scan;) {
                const uint8_t *cr = find_crlf(q, p + scan);
                if (!cr) {
                    break;
                }
                if (cr + 3 < p + scan && cr[2] == '\r' && cr[3] == '\n') {
                    e = cr + 4;
                    break;
                }
                q = cr + 2;
            }
            if (!e) {
                if (avail >= lim->max_head) {
                    st = HTTPRESP_HEAD_TOO_LARGE;
                }
                goto out;
            }
            if (p[0] == '\r' || p[0] == '\n') {
                st = HTTPRESP_BAD;
                goto out;
            }
            st = parse_head(r, p, (size_t)(e - p), lim);
            if (st != HTTPRESP_DONE) {
                goto out;
            }
            pos += (size_t)(e - p);
            r->head_len = (size_t)(e - p);
            if (r->status == 101) {
                st = HTTPRESP_BAD; /* we never ask to switch protocols */
                goto out;
            }
            if (r->status < 200) {
                st = HTTPRESP_AGAIN; /* interim: the real head follows */
                break;
            }
            st = after_head(r);
            break;
        }
        case HTTPRESP_S_BODY_LENGTH:
        case HTTPRESP_S_CHUNK_DATA: {
            if (avail == 0) {
                goto out;
            }
            size_t n = avail < r->remaining ? avail : (size_t)r->remaining;
            st = take_body(r, in + pos, n, lim);
            pos += n;
            r->remaining -= n;
            if (st == HTTPRESP_AGAIN && r->remaining == 0) {
                if (r->state == HTTPRESP_S_BODY_LENGTH) {
                    r->state = HTTPRESP_S_DONE;
                    st = HTTPRESP_DONE;
                } else {
                    r->state = HTTPRESP_S_CHUNK_CRLF;
                }
            }
            break;
        }
        case HTTPRESP_S_CHUNK_SIZE: {
            const uint8_t *cr = find_crlf(in + pos, end);
            if (!cr) {
                if (avail > CHUNK_LINE_MAX) {
                    st = HTTPRESP_BAD;
                }
                goto out;
            }
            const uint8_t *q = in + pos;
            uint64_t size = 0;
            size_t digits = 0;
            for (; q < cr && hexval(*q) >= 0; q++, digits++) {
                if (digits == 15) {
                    st = HTTPRESP_BAD;
                    goto out;
                }
                size = size * 16 + (uint64_t)hexval(*q);
            }
            /* optional chunk extensions: ;name[=value], not interpreted */
            if (digits == 0 || (q < cr && *q != ';' && *q != ' ' && *q != '\t')) {
                st = HTTPRESP_BAD;
                goto out;
            }
            for (; q < cr; q++) {
                if (!is_field_char(*q)) {
                    st = HTTPRESP_BAD;
                    goto out;
                }
            }
            pos = (size_t)(cr - in) + 2;
            r->remaining = size;
            r->state = size ? HTTPRESP_S_CHUNK_DATA : HTTPRESP_S_TRAILERS;
            break;
        }
        case HTTPRESP_S_CHUNK_CRLF:
            if (avail < 2) {
                goto out;
            }
            if (in[pos] != '\r' || in[pos + 1] != '\n') {
                st = HTTPRESP_BAD;
                goto out;
            }
            pos += 2;
            r->state = HTTPRESP_S_CHUNK_SIZE;
            break;
        case HTTPRESP_S_TRAILERS: {
            const uint8_t *cr = find_crlf(in + pos, end);
            if (!cr) {
                if (avail > lim->max_head) {
                    st = HTTPRESP_HEAD_TOO_LARGE;
                }
                goto out;
            }
            bool blank = cr == in + pos;
            pos = (size_t)(cr - in) + 2;
            if (blank) {
                r->state = HTTPRESP_S_DONE;
                st = HTTPRESP_DONE;
            }
            break;
        }
        case HTTPRESP_S_BODY_EOF:
            if (avail == 0) {
                goto out;
            }
            st = take_body(r, in + pos, avail, lim);
            pos = len;
            if (st == HTTPRESP_AGAIN) {
                goto out;
            }
            break;
        case HTTPRESP_S_DONE:
            st = HTTPRESP_DONE;
            break;
        default:
            st = HTTPRESP_BAD;
            break;
        }
    }
out:
    *consumed = pos;
    return st;
}

enum httpresp_status httpresp_eof(struct httpresp *r)
{
    if (r->state == HTTPRESP_S_BODY_EOF || r->state == HTTPRESP_S_DONE) {
        r->state = HTTPRESP_S_DONE;
        r->keep_alive = false;
        return HTTPRESP_DONE;
    }
    return HTTPRESP_BAD;
}

const char *httpresp_status_name(enum httpresp_status st)
{
    switch (st) {
    case HTTPRESP_DONE:
        return "done";
    case HTTPRESP_AGAIN:
        return "again";
    case HTTPRESP_BAD:
        return "malformed_response";
    case HTTPRESP_HEAD_TOO_LARGE:
        return "response_head_too_large";
    case HTTPRESP_TOO_MANY_HEADERS:
        return "too_many_response_headers";
    case HTTPRESP_BODY_TOO_LARGE:
        return "response_body_too_large";
    }
    return "unknown";
}

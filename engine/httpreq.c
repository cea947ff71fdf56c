/* httpreq.c: the strict HTTP/1.1 request parser. */
#include "httpreq.h"

/* Byte classes, one table so the hot loops do one load per byte. */
enum {
    C_TCHAR = 1, /* token characters (RFC 9110 5.6.2) */
    C_VCHAR = 2, /* visible characters and obs-text: field values, the request target */
    C_HEX = 4,
};

static const uint8_t cls[256] = {
    ['!'] = C_TCHAR | C_VCHAR,
    ['#'] = C_TCHAR | C_VCHAR,
    ['$'] = C_TCHAR | C_VCHAR,
    ['%'] = C_TCHAR | C_VCHAR,
    ['&'] = C_TCHAR | C_VCHAR,
    ['\''] = C_TCHAR | C_VCHAR,
    ['*'] = C_TCHAR | C_VCHAR,
    ['+'] = C_TCHAR | C_VCHAR,
    ['-'] = C_TCHAR | C_VCHAR,
    ['.'] = C_TCHAR | C_VCHAR,
    ['^'] = C_TCHAR | C_VCHAR,
    ['_'] = C_TCHAR | C_VCHAR,
    ['`'] = C_TCHAR | C_VCHAR,
    ['|'] = C_TCHAR | C_VCHAR,
    ['~'] = C_TCHAR | C_VCHAR,
    ['"'] = C_VCHAR,
    ['('] = C_VCHAR,
    [')'] = C_VCHAR,
    [','] = C_VCHAR,
    ['/'] = C_VCHAR,
    [':'] = C_VCHAR,
    [';'] = C_VCHAR,
    ['<'] = C_VCHAR,
    ['='] = C_VCHAR,
    ['>'] = C_VCHAR,
    ['?'] = C_VCHAR,
    ['@'] = C_VCHAR,
    ['['] = C_VCHAR,
    ['\\'] = C_VCHAR,
    [']'] = C_VCHAR,
    ['{'] = C_VCHAR,
    ['}'] = C_VCHAR,
    ['0' ... '9'] = C_TCHAR | C_VCHAR | C_HEX,
    ['A' ... 'F'] = C_TCHAR | C_VCHAR | C_HEX,
    ['G' ... 'Z'] = C_TCHAR | C_VCHAR,
    ['a' ... 'f'] = C_TCHAR | C_VCHAR | C_HEX,
    ['g' ... 'z'] = C_TCHAR | C_VCHAR,
    [0x80 ... 0xff] = C_VCHAR,
};

static inline uint8_t lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

/* eq_nocase compares s with the lowercase literal lit. */
static bool eq_nocase(struct slice s, const char *lit, size_t n)
{
    if (s.len != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (lower(s.p[i]) != (uint8_t)lit[i]) {
            return false;
        }
    }
    return true;
}

#define EQ_NOCASE(s, lit) eq_nocase((s), (lit), sizeof(lit) - 1)

/* What a header line told us, collected while the head is parsed. */
struct head_facts {
    bool has_cl;
    bool has_te;
    bool te_chunked;
    bool te_other;
    bool conn_close;
    bool conn_keep_alive;
    bool expect_continue;
    bool bad;
    uint64_t cl;
};

static bool parse_content_length(struct slice v, uint64_t *out)
{
    if (v.len == 0 || v.len > 18) { /* 18 digits cannot overflow a uint64_t */
        return false;
    }
    uint64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') {
            return false;
        }
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    *out = n;
    return true;
}

/* for_each_token walks a comma-separated list ("close, Upgrade"), trimming spaces. */
static void connection_tokens(struct slice v, struct head_facts *f)
{
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ',')) {
            i++;
        }
        size_t start = i;
        while (i < v.len && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t') {
            i++;
        }
        struct slice tok = {v.p + start, i - start};
        if (EQ_NOCASE(tok, "close")) {
            f->conn_close = true;
        } else if (EQ_NOCASE(tok, "keep-alive")) {
            f->conn_keep_alive = true;
        }
    }
}

static void note_header(struct head_facts *f, const struct header *h)
{
    struct slice n = h->name;
    switch (n.len) {
    case 6:
        if (EQ_NOCASE(n, "expect") && EQ_NOCASE(h->value, "100-continue")) {
            f->expect_continue = true;
        }
        break;
    case 10:
        if (EQ_NOCASE(n, "connection")) {
            connection_tokens(h->value, f);
        }
        break;
    case 14:
        if (EQ_NOCASE(n, "content-length")) {
            uint64_t cl = 0;
            if (!parse_content_length(h->value, &cl) || (f->has_cl && cl != f->cl)) {
                f->bad = true;
            }
            f->has_cl = true;
            f->cl = cl;
        }
        break;
    case 17:
        if (EQ_NOCASE(n, "transfer-encoding")) {
            /* Only a lone "chunked" is understood; a second Transfer-Encoding line or any other
             * coding is refused rather than guessed at. */
            if (f->has_te || !EQ_NOCASE(h->value, "chunked")) {
                f->te_other = true;
            } else {
                f->te_chunked = true;
            }
            f->has_te = true;
        }
        break;
    default:
        break;
    }
}

/* parse_request_line reads "METHOD SP target SP HTTP/1.x CRLF" from in[*pos..len). */
static enum httpreq_status parse_request_line(struct httpreq *req, const uint8_t *in, size_t len,
                                              size_t *pos)
{
    size_t i = *pos;
    size_t start = i;
    while (i < len && (cls[in[i]] & C_TCHAR)) {
        i++;
    }
    if (i == len) {
        return HTTPREQ_AGAIN;
    }
    if (i == start || in[i] != ' ') {
        return HTTPREQ_BAD;
    }
    req->method = (struct slice){in + start, i - start};
    start = ++i;
    while (i < len && (cls[in[i]] & C_VCHAR)) {
        i++;
    }
    if (i == len) {
        return HTTPREQ_AGAIN;
    }
    if (i == start || in[i] != ' ') {
        return HTTPREQ_BAD;
    }
    req->target = (struct slice){in + start, i - start};
    i++;
    /* "HTTP/d.d" CRLF: 10 bytes */
    if (len - i < 10) {
        /* compare what is there so garbage is refused early */
        static const char proto[] = "HTTP/";
        for (size_t k = 0; k < len - i && k < 5; k++) {
            if (in[i + k] != (uint8_t)proto[k]) {
                return HTTPREQ_BAD;
            }
        }
        return HTTPREQ_AGAIN;
    }
    if (memcmp(in + i, "HTTP/", 5) != 0 || in[i + 5] < '0' || in[i + 5] > '9' || in[i + 6] != '.' ||
        in[i + 7] < '0' || in[i + 7] > '9' || in[i + 8] != '\r' || in[i + 9] != '\n') {
        return HTTPREQ_BAD;
    }
    if (in[i + 5] != '1') {
        return HTTPREQ_BAD_VERSION;
    }
    req->minor = (uint8_t)(in[i + 7] - '0');
    *pos = i + 10;
    return HTTPREQ_OK;
}

/* split_target fills path and query; origin-form ("/p?q"), asterisk-form ("*") and
 * absolute-form ("http://host/p?q") are accepted. */
static bool split_target(struct httpreq *req)
{
    struct slice t = req->target;
    size_t i = 0;
    if (t.p[0] == '*') {
        if (t.len != 1) {
            return false;
        }
        req->path = t;
        req->query = (struct slice){t.p + 1, 0};
        return true;
    }
    if (t.p[0] != '/') {
        size_t skip;
        if (t.len >= 7 && lower(t.p[0]) == 'h' && memcmp(t.p + 1, "ttp://", 6) == 0) {
            skip = 7;
        } else if (t.len >= 8 && lower(t.p[0]) == 'h' && memcmp(t.p + 1, "ttps://", 7) == 0) {
            skip = 8;
        } else {
            return false;
        }
        i = skip;
        while (i < t.len && t.p[i] != '/' && t.p[i] != '?') {
            i++;
        }
        if (i == skip) {
            return false; /* no authority */
        }
        if (i == t.len || t.p[i] == '?') {
            static const uint8_t root[] = "/";
            req->path = (struct slice){root, 1};
            req->query = i < t.len ? (struct slice){t.p + i + 1, t.len - i - 1}
                                   : (struct slice){t.p + t.len, 0};
            return true;
        }
    }
    size_t start = i;
    while (i < t.len && t.p[i] != '?') {
        i++;
    }
    req->path = (struct slice){t.p + start, i - start};
    req->query =
        i < t.len ? (struct slice){t.p + i + 1, t.len - i - 1} : (struct slice){t.p + t.len, 0};
    return true;
}

/* parse_header_line reads one "name: value CRLF" line, or the final CRLF (returns OK with
 * *end set). */
static enum httpreq_status parse_header_line(const uint8_t *in, size_t len, size_t *pos,
                                             struct header *h, bool *end)
{
    size_t i = *pos;
    if (i == len) {
        return HTTPREQ_AGAIN;
    }
    if (in[i] == '\r') {
        if (i + 1 == len) {
            return HTTPREQ_AGAIN;
        }
        if (in[i + 1] != '\n') {
            return HTTPREQ_BAD;
        }
        *pos = i + 2;
        *end = true;
        return HTTPREQ_OK;
    }
    size_t start = i;
    while (i < len && (cls[in[i]] & C_TCHAR)) {
        i++;
    }
    if (i == len) {
        return HTTPREQ_AGAIN;
    }
    /* no name (obs-fold starts with SP/HTAB), or space before the colon */
    if (i == start || in[i] != ':') {
        return HTTPREQ_BAD;
    }
    h->name = (struct slice){in + start, i - start};
    i++;
    while (i < len && (in[i] == ' ' || in[i] == '\t')) {
        i++;
    }
    start = i;
    size_t last = i; /* one past the last non-blank byte of the value */
    for (;;) {
        if (i == len) {
            return HTTPREQ_AGAIN;
        }
        uint8_t c = in[i];
        if (cls[c] & C_VCHAR) {
            last = ++i;
        } else if (c == ' ' || c == '\t') {
            i++;
        } else {
            break;
        }
    }
    if (in[i] != '\r') {
        return HTTPREQ_BAD; /* a control byte, or a bare LF */
    }
    if (i + 1 == len) {
        return HTTPREQ_AGAIN;
    }
    if (in[i + 1] != '\n') {
        return HTTPREQ_BAD;
    }
    h->value = (struct slice){in + start, last - start};
    *pos = i + 2;
    *end = false;
    return HTTPREQ_OK;
}

/* parse_crlf expects CRLF at in[*pos]. */
static enum httpreq_status parse_crlf(const uint8_t *in, size_t len, size_t *pos)
{
    size_t i = *pos;
    if (i < len && in[i] != '\r') {
        return HTTPREQ_BAD;
    }
    if (i + 1 < len && in[i + 1] != '\n') {
        return HTTPREQ_BAD;
    }
    if (i + 2 > len) {
        return HTTPREQ_AGAIN;
    }
    *pos = i + 2;
    return HTTPREQ_OK;
}

/* scan_chunked walks a chunked body from in[start..len) without changing it: on OK, *end is
 * one past the final CRLF and *body_len the decoded length. */
static enum httpreq_status scan_chunked(const uint8_t *in, size_t len, size_t start,
                                        const struct httpreq_limits *lim, size_t *end,
                                        size_t *body_len)
{
    size_t i = start;
    uint64_t total = 0;
    for (;;) {
        /* chunk-size: hex digits; more than 15 would overflow any sane limit */
        uint64_t size = 0;
        size_t digits = 0;
        while (i < len && (cls[in[i]] & C_HEX)) {
            if (++digits > 15) {
                return HTTPREQ_BODY_TOO_LARGE;
            }
            uint8_t c = lower(in[i]);
            size = size * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
            i++;
        }
        if (i == len) {
            return HTTPREQ_AGAIN;
        }
        if (digits == 0) {
            return HTTPREQ_BAD;
        }
        /* chunk extensions (";name=value") are allowed and ignored */
        if (in[i] == ';') {
            while (i < len && in[i] != '\r') {
                if (!(cls[in[i]] & C_VCHAR) && in[i] != ' ' && in[i] != '\t') {
                    return HTTPREQ_BAD;
                }
                i++;
            }
        }
        enum httpreq_status st = parse_crlf(in, len, &i);
        if (st != HTTPREQ_OK) {
            return st;
        }
        if (size == 0) {
            break;
        }
        total += size;
        if (total > lim->max_body) {
            return HTTPREQ_BODY_TOO_LARGE;
        }
        if (len - i < size) {
            return HTTPREQ_AGAIN;
        }
        i += size;
        st = parse_crlf(in, len, &i);
        if (st != HTTPREQ_OK) {
            return st;
        }
    }
    /* trailer section: header lines, then an empty line; bounded like the head */
    size_t trailer_start = i;
    for (;;) {
        struct header h;
        bool done = false;
        enum httpreq_status st = parse_header_line(in, len, &i, &h, &done);
        if (st == HTTPREQ_AGAIN && len - trailer_start > lim->max_head) {
            return HTTPREQ_HEAD_TOO_LARGE;
        }
        if (st != HTTPREQ_OK) {
            return st;
        }
        if (i - trailer_start > lim->max_head) {
            return HTTPREQ_HEAD_TOO_LARGE;
        }
        if (done) {
            break;
        }
    }
    *end = i;
    *body_len = (size_t)total;
    return HTTPREQ_OK;
}

/* decode_chunked moves the data of a chunked body (already validated by scan_chunked) to its
 * start; writes never overtake reads. */
static void decode_chunked(uint8_t *in, size_t start)
{
    size_t r = start, w = start;
    for (;;) {
        size_t size = 0;
        while (cls[in[r]] & C_HEX) {
            uint8_t c = lower(in[r]);
            size = size * 16 + (size_t)(c <= '9' ? c - '0' : c - 'a' + 10);
            r++;
        }
        while (in[r] != '\r') {
            r++;
        }
        r += 2;
        if (size == 0) {
            return;
        }
        memmove(in + w, in + r, size);
        w += size;
        r += size + 2;
    }
}

enum httpreq_status httpreq_parse(struct httpreq *req, struct header *headers, size_t max_headers,
                                  uint8_t *in, size_t len, const struct httpreq_limits *lim)
{
    memset(req, 0, sizeof(*req));
    req->headers = headers;
    size_t pos = 0;

    /* RFC 9112 2.2: ignore empty lines before the request line (some clients send a CRLF
     * after a body). Bounded by the head limit like everything else. */
    while (pos + 1 < len && in[pos] == '\r' && in[pos + 1] == '\n') {
        pos += 2;
    }
    if (pos + 1 == len && in[pos] == '\r') {
        return len >= lim->max_head ? HTTPREQ_HEAD_TOO_LARGE : HTTPREQ_AGAIN;
    }

    enum httpreq_status st = parse_request_line(req, in, len, &pos);
    if (st == HTTPREQ_OK && !split_target(req)) {
        st = HTTPREQ_BAD;
    }
    struct head_facts f = {0};
    bool end = false;
    while (st == HTTPREQ_OK && !end) {
        if (pos > lim->max_head) {
            return HTTPREQ_HEAD_TOO_LARGE;
        }
        struct header h;
        st = parse_header_line(in, len, &pos, &h, &end);
        if (st != HTTPREQ_OK || end) {
            break;
        }
        if (req->nheaders == max_headers) {
            return HTTPREQ_TOO_MANY_HEADERS;
        }
        headers[req->nheaders++] = h;
        note_header(&f, &h);
    }
    if (st == HTTPREQ_AGAIN) {
        return len >= lim->max_head ? HTTPREQ_HEAD_TOO_LARGE : HTTPREQ_AGAIN;
    }
    if (st != HTTPREQ_OK) {
        return st;
    }
    if (pos > lim->max_head) {
        return HTTPREQ_HEAD_TOO_LARGE;
    }
    req->head_len = pos;

    if (f.bad || (f.has_cl && f.has_te) || (f.has_te && req->minor == 0)) {
        return HTTPREQ_BAD;
    }
    if (f.te_other) {
        return HTTPREQ_NOT_IMPLEMENTED;
    }
    req->keep_alive = req->minor >= 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
    req->expect_continue = f.expect_continue && req->minor >= 1;
    req->chunked = f.te_chunked;
    req->content_length = f.has_cl ? f.cl : 0;

    if (req->chunked) {
        size_t end_pos = 0, body_len = 0;
        st = scan_chunked(in, len, pos, lim, &end_pos, &body_len);
        if (st != HTTPREQ_OK) {
            return st;
        }
        decode_chunked(in, pos);
        req->body = (struct slice){in + pos, body_len};
        req->len = end_pos;
        return HTTPREQ_OK;
    }
    if (req->content_length > lim->max_body) {
        return HTTPREQ_BODY_TOO_LARGE;
    }
    size_t cl = (size_t)req->content_length;
    if (len - pos < cl) {
        req->need = pos + cl;
        return HTTPREQ_AGAIN;
    }
    req->body = (struct slice){in + pos, cl};
    req->len = pos + cl;
    return HTTPREQ_OK;
}

int httpreq_status_code(enum httpreq_status st)
{
    switch (st) {
    case HTTPREQ_OK:
    case HTTPREQ_AGAIN:
        return 0;
    case HTTPREQ_BAD:
        return 400;
    case HTTPREQ_HEAD_TOO_LARGE:
    case HTTPREQ_TOO_MANY_HEADERS:
        return 431;
    case HTTPREQ_BODY_TOO_LARGE:
        return 413;
    case HTTPREQ_NOT_IMPLEMENTED:
        return 501;
    case HTTPREQ_BAD_VERSION:
        return 505;
    default:
        return 400;
    }
}

const char *httpreq_status_name(enum httpreq_status st)
{
    switch (st) {
    case HTTPREQ_OK:
        return "ok";
    case HTTPREQ_AGAIN:
        return "again";
    case HTTPREQ_BAD:
        return "bad_request";
    case HTTPREQ_HEAD_TOO_LARGE:
        return "head_too_large";
    case HTTPREQ_TOO_MANY_HEADERS:
        return "too_many_headers";
    case HTTPREQ_BODY_TOO_LARGE:
        return "body_too_large";
    case HTTPREQ_NOT_IMPLEMENTED:
        return "not_implemented";
    case HTTPREQ_BAD_VERSION:
        return "bad_version";
    default:
        return "unknown";
    }
}

const struct slice *httpreq_header(const struct httpreq *req, const char *name)
{
    return header_find(req->headers, req->nheaders, name);
}

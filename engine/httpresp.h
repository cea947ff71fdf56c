/* httpresp.h: an incremental HTTP/1.1 response parser for the delivery client (RFC 9112).
 * No I/O, no allocation.
 *
 * The caller feeds what it has received: httpresp_feed() says how many bytes it consumed, and
 * the caller must present the bytes it did not consume again, with more appended. While the head
 * is incomplete nothing is consumed (the head is parsed in one piece, bounded by max_head); body
 * bytes are consumed as they come, so the body never needs to be buffered: only a short excerpt
 * is kept. Interim 1xx responses are skipped. A response without Content-Length or chunked
 * coding ends when the connection does (httpresp_eof()). */
#ifndef HOOKRING_HTTPRESP_H
#define HOOKRING_HTTPRESP_H

#include "common.h"

#define HTTPRESP_EXCERPT 128 /* per connection: kept small, 10k connections hold one each */

enum httpresp_status {
    HTTPRESP_DONE = 0,         /* the whole response is read */
    HTTPRESP_AGAIN,            /* more bytes are needed */
    HTTPRESP_BAD,              /* malformed response */
    HTTPRESP_HEAD_TOO_LARGE,   /* the head exceeds max_head */
    HTTPRESP_TOO_MANY_HEADERS, /* more header lines than max_headers */
    HTTPRESP_BODY_TOO_LARGE,   /* the body passed max_body: the status is known (the delivery's
                                  outcome can be judged) but the connection cannot be reused */
};

struct httpresp_limits {
    size_t max_head;    /* status line + headers + blank line */
    size_t max_headers; /* header lines */
    uint64_t max_body;  /* body bytes read before giving up on the rest */
};

enum httpresp_state {
    HTTPRESP_S_HEAD = 0,
    HTTPRESP_S_BODY_LENGTH,
    HTTPRESP_S_CHUNK_SIZE,
    HTTPRESP_S_CHUNK_DATA,
    HTTPRESP_S_CHUNK_CRLF,
    HTTPRESP_S_TRAILERS,
    HTTPRESP_S_BODY_EOF,
    HTTPRESP_S_DONE,
};

struct httpresp {
    enum httpresp_state state;
    bool head_request; /* the request was HEAD: no body follows */
    int status;        /* 100-599, once the head is parsed */
    uint8_t minor;     /* HTTP/1.<minor> */
    bool keep_alive;   /* the connection may carry another request afterwards */
    bool chunked;
    bool has_length;
    uint64_t content_length;
    uint64_t remaining; /* body bytes left (Content-Length or current chunk) */
    uint64_t body_len;  /* body bytes seen so far (de-chunked) */
    bool has_retry_after;
    int64_t retry_after; /* seconds (delay form), or unix seconds when retry_after_is_date */
    bool retry_after_is_date;
    size_t head_len; /* bytes of the final head */
    size_t nheaders;
    uint8_t excerpt[HTTPRESP_EXCERPT];
    size_t excerpt_len;
};

/* httpresp_init prepares r for the response to one request (head_request: it was a HEAD). */
void httpresp_init(struct httpresp *r, bool head_request);

/* httpresp_feed parses in[0..len): *consumed bytes were used and may be dropped. Returns
 * HTTPRESP_DONE once the response is complete (bytes after it belong to the next response),
 * HTTPRESP_AGAIN for more, or an error status. */
enum httpresp_status httpresp_feed(struct httpresp *r, const uint8_t *in, size_t len,
                                   size_t *consumed, const struct httpresp_limits *lim);

/* httpresp_eof tells the parser the peer closed the connection. Returns HTTPRESP_DONE when that
 * completes the response (a body delimited by the close), else HTTPRESP_BAD (truncated). */
enum httpresp_status httpresp_eof(struct httpresp *r);

/* httpresp_status_name is a short stable name ("bad_response", ...). */
const char *httpresp_status_name(enum httpresp_status st);

/* httpresp_parse_http_date parses an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") into unix
 * seconds. Returns 0 or -EINVAL. */
int httpresp_parse_http_date(struct slice s, int64_t *out);

#endif

/* httpreq.h: a strict, incremental HTTP/1.1 request parser (RFC 9112). No I/O, no allocation.
 *
 * httpreq_parse() is handed everything received so far and answers HTTPREQ_AGAIN until one
 * whole request (head and body) is there; the caller calls it again with more bytes. Slices in
 * the result point into the caller's bytes. Header lines go into a caller-sized array of
 * struct header (the type the verifiers take), so a request can be verified without copying.
 *
 * Strict on purpose (a receiver that guesses is a smuggling hazard): CRLF line ends, no obsolete
 * line folding, no whitespace before a header's colon, a token method, an origin-form (or "*")
 * target, HTTP/1.0 or 1.1, one Content-Length (or equal repeats), never both Content-Length and
 * Transfer-Encoding, and "chunked" as the only transfer coding. */
#ifndef HOOKRING_HTTPREQ_H
#define HOOKRING_HTTPREQ_H

#include "common.h"
#include "sign/profile.h" /* struct header */

enum httpreq_status {
    HTTPREQ_OK = 0,           /* one whole request is there; req is filled */
    HTTPREQ_AGAIN,            /* more bytes are needed (req->need says how many, when known) */
    HTTPREQ_BAD,              /* malformed: answer 400 */
    HTTPREQ_HEAD_TOO_LARGE,   /* the head is longer than max_head: answer 431 */
    HTTPREQ_TOO_MANY_HEADERS, /* more header lines than the array holds: answer 431 */
    HTTPREQ_BODY_TOO_LARGE,   /* the body is longer than max_body: answer 413 */
    HTTPREQ_NOT_IMPLEMENTED,  /* a transfer coding other than chunked: answer 501 */
    HTTPREQ_BAD_VERSION,      /* HTTP/2.0, HTTP/0.9 and the like: answer 505 */
};

struct httpreq_limits {
    size_t max_head; /* request line + header lines + the blank line */
    size_t max_body; /* decoded body bytes */
};

struct httpreq {
    struct slice method;
    struct slice target; /* as sent: path and query */
    struct slice path;   /* target up to '?' */
    struct slice query;  /* after '?', without it; empty when absent */
    uint8_t minor;       /* HTTP/1.<minor> */
    struct header *headers;
    size_t nheaders;
    size_t head_len;         /* bytes of the head, the blank line included; 0 until complete */
    uint64_t content_length; /* as declared (Content-Length), 0 when absent */
    bool chunked;            /* Transfer-Encoding: chunked */
    bool keep_alive;         /* the connection may carry another request after this one */
    bool expect_continue;    /* Expect: 100-continue */
    size_t need;             /* on HTTPREQ_AGAIN with a complete head: bytes of the whole request
                                (head + body) when known from Content-Length, else 0 */
    struct slice body;       /* on HTTPREQ_OK: the body (de-chunked) */
    size_t len;              /* on HTTPREQ_OK: bytes the request took in the input */
};

/* httpreq_parse parses one request from in[0..len). headers[0..max_headers) receives the header
 * lines. On HTTPREQ_OK, req describes the request and req->len bytes of in were used; a chunked
 * body is decoded in place (in[req->head_len..req->len) is rewritten: the body slice points at
 * its start) and that happens only on HTTPREQ_OK. On HTTPREQ_AGAIN call again with more bytes
 * (the same request starts at in[0]). Any other status names what is wrong; the connection
 * cannot be trusted to carry another request after it. */
enum httpreq_status httpreq_parse(struct httpreq *req, struct header *headers, size_t max_headers,
                                  uint8_t *in, size_t len, const struct httpreq_limits *lim);

/* httpreq_status_code is the HTTP status to answer a parse failure with (400, 413, 431, 501,
 * 505), or 0 for HTTPREQ_OK and HTTPREQ_AGAIN. */
int httpreq_status_code(enum httpreq_status st);

/* httpreq_status_name is a short stable name ("bad_request", "head_too_large", ...). */
const char *httpreq_status_name(enum httpreq_status st);

/* httpreq_header returns the value of the first header named name (ASCII case-insensitive) in
 * req, or NULL. */
const struct slice *httpreq_header(const struct httpreq *req, const char *name);

#endif

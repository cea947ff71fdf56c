/* test_httpreq.c: the strict incremental HTTP/1.1 request parser. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>

#include "httpreq.h"

TestSuite(httpreq);

static const struct httpreq_limits lim = {.max_head = 1024, .max_body = 4096};

static struct header hdrs[16];
static uint8_t work[16384];

/* parse s (copied into a mutable buffer) with lim and 16 header slots */
static enum httpreq_status parse(struct httpreq *req, const char *s)
{
    size_t n = strlen(s);
    cr_assert_lt(n, sizeof(work));
    memcpy(work, s, n);
    return httpreq_parse(req, hdrs, ARRAY_SIZE(hdrs), work, n, &lim);
}

static void assert_slice(struct slice s, const char *want)
{
    cr_assert_eq(s.len, strlen(want), "got '%.*s' want '%s'", (int)s.len, (const char *)s.p, want);
    cr_assert_eq(memcmp(s.p, want, s.len), 0, "got '%.*s' want '%s'", (int)s.len, (const char *)s.p,
                 want);
}

Test(httpreq, get_with_query_and_headers)
{
    struct httpreq req;
    const char *s = "GET /ok/abc?x=1&y=2 HTTP/1.1\r\nHost: a\r\nX-Thing:   spaced value \t\r\n"
                    "Empty:\r\n\r\n";
    cr_assert_eq(parse(&req, s), HTTPREQ_OK);
    assert_slice(req.method, "GET");
    assert_slice(req.target, "/ok/abc?x=1&y=2");
    assert_slice(req.path, "/ok/abc");
    assert_slice(req.query, "x=1&y=2");
    cr_assert_eq(req.minor, 1);
    cr_assert_eq(req.nheaders, 3);
    assert_slice(hdrs[0].name, "Host");
    assert_slice(hdrs[0].value, "a");
    assert_slice(hdrs[1].value, "spaced value");
    assert_slice(hdrs[2].value, "");
    cr_assert(req.keep_alive);
    cr_assert_eq(req.len, strlen(s));
    cr_assert_eq(req.head_len, strlen(s));
    cr_assert_eq(req.body.len, 0);
    const struct slice *v = httpreq_header(&req, "x-THING");
    cr_assert_not_null(v);
    assert_slice(*v, "spaced value");
    cr_assert_null(httpreq_header(&req, "missing"));
}

Test(httpreq, post_body_arrives_byte_by_byte)
{
    const char *s = "POST /ok/1 HTTP/1.1\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\n"
                    "hello world";
    size_t n = strlen(s);
    size_t head = strlen(s) - 11;
    struct httpreq req;
    for (size_t k = 0; k < n; k++) {
        memcpy(work, s, k);
        enum httpreq_status st = httpreq_parse(&req, hdrs, ARRAY_SIZE(hdrs), work, k, &lim);
        cr_assert_eq(st, HTTPREQ_AGAIN, "at %zu: %s", k, httpreq_status_name(st));
        if (k >= head) {
            cr_assert_eq(req.head_len, head);
            cr_assert_eq(req.need, n);
        } else {
            cr_assert_eq(req.need, 0);
        }
    }
    memcpy(work, s, n);
    cr_assert_eq(httpreq_parse(&req, hdrs, ARRAY_SIZE(hdrs), work, n, &lim), HTTPREQ_OK);
    assert_slice(req.body, "hello world");
    cr_assert_eq(req.content_length, 11);
    cr_assert_eq(req.len, n);
}

Test(httpreq, pipelined_requests_are_taken_one_at_a_time)
{
    const char *s = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /b HTTP/1.1\r\n\r\n"
                    "GET /c HTTP/1.1\r\nConnection: close\r\n\r\n";
    size_t n = strlen(s);
    memcpy(work, s, n);
    struct httpreq req;
    size_t off = 0;
    const char *paths[] = {"/a", "/b", "/c"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(httpreq_parse(&req, hdrs, ARRAY_SIZE(hdrs), work + off, n - off, &lim),
                     HTTPREQ_OK);
        assert_slice(req.path, paths[i]);
        off += req.len;
    }
    cr_assert_eq(off, n);
    cr_assert_not(req.keep_alive);
}

Test(httpreq, chunked_body_is_decoded_in_place_whatever_the_split)
{
    const char *s = "POST /ok/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"
                    "GET /next HTTP/1.1\r\n\r\n";
    size_t n = strlen(s);
    size_t first = n - strlen("GET /next HTTP/1.1\r\n\r\n");
    struct httpreq req;
    for (size_t k = 0; k < first; k++) {
        memcpy(work, s, k);
        enum httpreq_status st = httpreq_parse(&req, hdrs, ARRAY_SIZE(hdrs), work, k, &lim);
        cr_assert_eq(st, HTTPREQ_AGAIN, "at %zu: %s", k, httpreq_status_name(st));
        cr_assert_eq(memcmp(work, s, k), 0, "input changed before the request was whole");
    }
    memcpy(work, s, n);
    cr_assert_eq(httpreq_parse(&req, hdrs, ARRAY_SIZE(hdrs), work, n, &lim), HTTPREQ_OK);
    cr_assert(req.chunked);
    assert_slice(req.body, "hello 0123456789");
    cr_assert_eq(req.len, first);
    cr_assert_eq(httpreq_parse(&req, hdrs, ARRAY_SIZE(hdrs), work + first, n - first, &lim),
                 HTTPREQ_OK);
    assert_slice(req.path, "/next");
}

Test(httpreq, connection_semantics_by_version)
{
    struct httpreq req;
    cr_assert_eq(parse(&req, "GET / HTTP/1.0\r\n\r\n"), HTTPREQ_OK);
    cr_assert_not(req.keep_alive);
    cr_assert_eq(req.minor, 0);
    cr_assert_eq(parse(&req, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), HTTPREQ_OK);
    cr_assert(req.keep_alive);
    cr_assert_eq(parse(&req, "GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n"), HTTPREQ_OK);
    cr_assert_not(req.keep_alive);
    cr_assert_eq(parse(&req, "GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"), HTTPREQ_OK);
    cr_assert(req.keep_alive);
    cr_assert_eq(
        parse(&req, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
        HTTPREQ_AGAIN);
    cr_assert(req.expect_continue);
    cr_assert_eq(req.need, req.head_len + 4);
    cr_assert_eq(parse(&req, "\r\n\r\nGET /x HTTP/1.1\r\n\r\n"), HTTPREQ_OK,
                 "leading empty lines are skipped");
    assert_slice(req.path, "/x");
}

Test(httpreq, target_forms)
{
    struct httpreq req;
    cr_assert_eq(parse(&req, "OPTIONS * HTTP/1.1\r\n\r\n"), HTTPREQ_OK);
    assert_slice(req.path, "*");
    cr_assert_eq(parse(&req, "GET http://example.com/ok/1?q HTTP/1.1\r\n\r\n"), HTTPREQ_OK);
    assert_slice(req.path, "/ok/1");
    assert_slice(req.query, "q");
    cr_assert_eq(parse(&req, "GET http://example.com HTTP/1.1\r\n\r\n"), HTTPREQ_OK);
    assert_slice(req.path, "/");
    cr_assert_eq(parse(&req, "GET ok HTTP/1.1\r\n\r\n"), HTTPREQ_BAD);
    cr_assert_eq(parse(&req, "GET http:// HTTP/1.1\r\n\r\n"), HTTPREQ_BAD);
    cr_assert_eq(parse(&req, "GET *x HTTP/1.1\r\n\r\n"), HTTPREQ_BAD);
}

struct bad_case {
    const char *in;
    enum httpreq_status want;
};

Test(httpreq, malformed_requests_are_refused_with_the_right_status)
{
    static const struct bad_case cases[] = {
        {"GET / HTTP/1.1\nHost: a\r\n\r\n", HTTPREQ_BAD},                 /* bare LF */
        {"GET / HTTP/1.1\r\nHost: a\n\r\n", HTTPREQ_BAD},                 /* bare LF in header */
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", HTTPREQ_BAD},              /* space before colon */
        {"GET / HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n", HTTPREQ_BAD},      /* obs-fold */
        {"GET / HTTP/1.1\r\n: b\r\n\r\n", HTTPREQ_BAD},                   /* empty name */
        {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", HTTPREQ_BAD},              /* control byte */
        {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", HTTPREQ_BAD},               /* lone CR */
        {"G(T / HTTP/1.1\r\n\r\n", HTTPREQ_BAD},                          /* method not a token */
        {" GET / HTTP/1.1\r\n\r\n", HTTPREQ_BAD},                         /* leading space */
        {"GET  / HTTP/1.1\r\n\r\n", HTTPREQ_BAD},                         /* two spaces */
        {"GET / HTTP/1.1 \r\n\r\n", HTTPREQ_BAD},                         /* trailing space */
        {"GET / HTTX/1.1\r\n\r\n", HTTPREQ_BAD},                          /* protocol */
        {"GET / http/1.1\r\n\r\n", HTTPREQ_BAD},                          /* case */
        {"GET / HTTP/1.1x\r\n\r\n", HTTPREQ_BAD},                         /* version tail */
        {"GET / HTTP/2.0\r\n\r\n", HTTPREQ_BAD_VERSION},                  /* major */
        {"GET / HTTP/0.9\r\n\r\n", HTTPREQ_BAD_VERSION},                  /* major */
        {"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", HTTPREQ_BAD},   /* CL digits */
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HTTPREQ_BAD},   /* CL sign */
        {"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", HTTPREQ_BAD},     /* CL empty */
        {"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", HTTPREQ_BAD}, /* CL list */
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", HTTPREQ_BAD},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", HTTPREQ_BAD},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", HTTPREQ_BAD},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", HTTPREQ_NOT_IMPLEMENTED},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         HTTPREQ_NOT_IMPLEMENTED},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n", HTTPREQ_BAD},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n", HTTPREQ_BAD},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nab\r\n", HTTPREQ_BAD},
        {"POST / HTTP/1.1\r\nContent-Length: 4097\r\n\r\n", HTTPREQ_BODY_TOO_LARGE},
        {"POST / HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n", HTTPREQ_BODY_TOO_LARGE},
        {"POST / HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n", HTTPREQ_BAD},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1001\r\n", HTTPREQ_BODY_TOO_LARGE},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
         HTTPREQ_BODY_TOO_LARGE},
        {"GET /\x7f HTTP/1.1\r\n\r\n", HTTPREQ_BAD}, /* DEL in target */
    };
    struct httpreq req;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        enum httpreq_status st = parse(&req, cases[i].in);
        cr_assert_eq(st, cases[i].want, "case %zu: got %s want %s", i, httpreq_status_name(st),
                     httpreq_status_name(cases[i].want));
        cr_assert_neq(httpreq_status_code(st), 0);
    }
}

Test(httpreq, equal_content_length_repeats_are_accepted)
{
    struct httpreq req;
    cr_assert_eq(parse(&req, "POST / HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nab"),
                 HTTPREQ_OK);
    assert_slice(req.body, "ab");
}

Test(httpreq, header_count_and_head_size_are_bounded)
{
    char s[4096];
    size_t n = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 16; i++) {
        n += (size_t)snprintf(s + n, sizeof(s) - n, "H%d: v\r\n", i);
    }
    snprintf(s + n, sizeof(s) - n, "\r\n");
    struct httpreq req;
    cr_assert_eq(parse(&req, s), HTTPREQ_OK, "16 headers fit 16 slots");
    snprintf(s + n, sizeof(s) - n, "H16: v\r\n\r\n");
    cr_assert_eq(parse(&req, s), HTTPREQ_TOO_MANY_HEADERS);

    /* a head longer than max_head: refused complete, and refused as soon as it cannot fit */
    char big[2048];
    n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX: ");
    memset(big + n, 'a', 1100);
    n += 1100;
    memcpy(big + n, "\r\n\r\n", 5);
    cr_assert_eq(parse(&req, big), HTTPREQ_HEAD_TOO_LARGE);
    big[1024] = 0;
    cr_assert_eq(parse(&req, big), HTTPREQ_HEAD_TOO_LARGE);
    big[1023] = 0;
    cr_assert_eq(parse(&req, big), HTTPREQ_AGAIN);
    cr_assert_eq(httpreq_status_code(HTTPREQ_HEAD_TOO_LARGE), 431);
    cr_assert_eq(httpreq_status_code(HTTPREQ_TOO_MANY_HEADERS), 431);
    cr_assert_eq(httpreq_status_code(HTTPREQ_BODY_TOO_LARGE), 413);
    cr_assert_eq(httpreq_status_code(HTTPREQ_BAD), 400);
    cr_assert_eq(httpreq_status_code(HTTPREQ_NOT_IMPLEMENTED), 501);
    cr_assert_eq(httpreq_status_code(HTTPREQ_BAD_VERSION), 505);
}

Test(httpreq, garbage_never_reads_out_of_bounds)
{
    /* random bytes with HTTP-ish fragments; under ASan any overread fails the test */
    static const char *frags[] = {"GET ",
                                  "POST ",
                                  "/",
                                  " HTTP/1.1",
                                  "\r\n",
                                  "\r",
                                  "\n",
                                  "Content-Length: 5",
                                  "Transfer-Encoding: chunked",
                                  ": ",
                                  "0\r\n",
                                  "5\r\nhello\r\n",
                                  "ffff",
                                  ";x=y",
                                  "\t",
                                  "\x80"};
    srand(42);
    struct httpreq req;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = 0;
        int parts = rand() % 12;
        for (int p = 0; p < parts; p++) {
            const char *f = frags[rand() % ARRAY_SIZE(frags)];
            size_t fl = strlen(f);
            if (n + fl > 256) {
                break;
            }
            memcpy(work + n, f, fl);
            n += fl;
        }
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, work, n);
        enum httpreq_status st = httpreq_parse(&req, hdrs, ARRAY_SIZE(hdrs), copy, n, &lim);
        if (st == HTTPREQ_OK) {
            cr_assert_leq(req.len, n);
            cr_assert_leq(req.body.p + req.body.len, copy + n);
        }
        free(copy);
    }
}

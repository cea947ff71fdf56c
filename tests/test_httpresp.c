/* test_httpresp.c: the response parser, fed whole and byte by byte. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>

#include "httpresp.h"

TestSuite(httpresp);

static const struct httpresp_limits lim = {.max_head = 1024, .max_headers = 16, .max_body = 4096};

/* feed_all presents s in pieces of step bytes the way a client would: unconsumed bytes are
 * kept and presented again with the next piece. Returns the final status. */
static enum httpresp_status feed_all(struct httpresp *r, const char *s, size_t n, size_t step,
                                     bool eof, size_t *left)
{
    uint8_t buf[16384];
    size_t have = 0, off = 0;
    enum httpresp_status st = HTTPRESP_AGAIN;
    while (st == HTTPRESP_AGAIN) {
        size_t k = n - off < step ? n - off : step;
        memcpy(buf + have, s + off, k);
        have += k;
        off += k;
        size_t used;
        st = httpresp_feed(r, buf, have, &used, &lim);
        memmove(buf, buf + used, have - used);
        have -= used;
        if (st == HTTPRESP_AGAIN && off == n) {
            if (eof) {
                st = httpresp_eof(r);
            }
            break;
        }
    }
    *left = have + (n - off);
    return st;
}

struct rcase {
    const char *in;
    enum httpresp_status want;
    int status;
    bool keep_alive;
    const char *excerpt;
    bool eof; /* the peer closes after the bytes */
};

Test(httpresp, table_whole_and_byte_by_byte)
{
    static const struct rcase cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", HTTPRESP_DONE, 200, true, "ok"},
        {"HTTP/1.1 204 No Content\r\n\r\n", HTTPRESP_DONE, 204, true, ""},
        {"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", HTTPRESP_DONE, 200, true, ""},
        {"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", HTTPRESP_DONE, 200, false, "x"},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", HTTPRESP_DONE,
         200, true, "x"},
        {"HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbad", HTTPRESP_DONE,
         500, false, "bad"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n"
         "Trailer: 1\r\n\r\n",
         HTTPRESP_DONE, 200, true, "abcde"},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
         HTTPRESP_DONE, 201, true, ""},
        {"HTTP/1.1 200 OK\r\n\r\nuntil close", HTTPRESP_DONE, 200, false, "until close", true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", HTTPRESP_BAD, 200, true, "ab", true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HTTPRESP_BAD},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         HTTPRESP_BAD},
        {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", HTTPRESP_BAD},
        {"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", HTTPRESP_BAD},
        {"HTTP/1.1 200 OK\r\nName : x\r\n\r\n", HTTPRESP_BAD},
        {"HTTP/2 200\r\n\r\n", HTTPRESP_BAD},
        {"HTTP/1.1 20 OK\r\n\r\n", HTTPRESP_BAD},
        {"HTTP/1.1 600 OK\r\n\r\n", HTTPRESP_BAD},
        {"HTTP/1.1 101 Switching\r\n\r\n", HTTPRESP_BAD},
        {"SSH-2.0-OpenSSH\r\n\r\n", HTTPRESP_BAD},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", HTTPRESP_BAD},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc", HTTPRESP_BAD},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n", HTTPRESP_BAD, 200, true,
         "a", true},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const struct rcase *c = &cases[i];
        size_t steps[] = {100000, 1, 7};
        for (size_t k = 0; k < ARRAY_SIZE(steps); k++) {
            struct httpresp r;
            httpresp_init(&r, false);
            size_t left;
            enum httpresp_status st = feed_all(&r, c->in, strlen(c->in), steps[k], c->eof, &left);
            cr_expect_eq(st, c->want, "case %zu step %zu: got %s", i, steps[k],
                         httpresp_status_name(st));
            if (c->want == HTTPRESP_DONE) {
                cr_expect_eq(r.status, c->status, "case %zu", i);
                cr_expect_eq(r.keep_alive, c->keep_alive, "case %zu keep-alive", i);
                cr_expect_eq(r.excerpt_len, strlen(c->excerpt), "case %zu", i);
                cr_expect_arr_eq(r.excerpt, c->excerpt, r.excerpt_len, "case %zu", i);
                cr_expect_eq(left, 0, "case %zu: everything consumed", i);
            }
        }
    }
}

Test(httpresp, pipelined_responses_leave_the_next_one)
{
    const char *two = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 503 X\r\n"
                      "Retry-After: 7\r\nContent-Length: 0\r\n\r\n";
    struct httpresp r;
    httpresp_init(&r, false);
    size_t used;
    cr_assert_eq(httpresp_feed(&r, (const uint8_t *)two, strlen(two), &used, &lim), HTTPRESP_DONE);
    httpresp_init(&r, false);
    size_t used2;
    cr_assert_eq(httpresp_feed(&r, (const uint8_t *)two + used, strlen(two) - used, &used2, &lim),
                 HTTPRESP_DONE);
    cr_expect_eq(r.status, 503);
    cr_expect(r.has_retry_after && !r.retry_after_is_date && r.retry_after == 7);
    cr_expect_eq(used + used2, strlen(two));
}

Test(httpresp, limits)
{
    struct httpresp r;
    size_t left;
    char big[4000];
    snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX: %01500d\r\n\r\n", 0);
    httpresp_init(&r, false);
    cr_expect_eq(feed_all(&r, big, strlen(big), 64, false, &left), HTTPRESP_HEAD_TOO_LARGE);
    char many[4000] = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 17; i++) {
        strcat(many, "A: b\r\n");
    }
    strcat(many, "\r\n");
    httpresp_init(&r, false);
    cr_expect_eq(feed_all(&r, many, strlen(many), 100000, false, &left), HTTPRESP_TOO_MANY_HEADERS);
    static char body[10000];
    int n = snprintf(body, sizeof(body), "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n");
    memset(body + n, 'z', 5000);
    httpresp_init(&r, false);
    cr_expect_eq(feed_all(&r, body, (size_t)n + 5000, 512, false, &left), HTTPRESP_BODY_TOO_LARGE);
    cr_expect_eq(r.status, 200, "the status is known even when the body is too large");
    cr_expect(!r.keep_alive);
    cr_expect_eq(r.excerpt_len, HTTPRESP_EXCERPT);
}

Test(httpresp, head_request_and_retry_after_date)
{
    struct httpresp r;
    httpresp_init(&r, true);
    size_t used;
    const char *s = "HTTP/1.1 429 Too Many\r\nRetry-After: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                    "Content-Length: 100\r\n\r\n";
    cr_assert_eq(httpresp_feed(&r, (const uint8_t *)s, strlen(s), &used, &lim), HTTPRESP_DONE);
    cr_expect(r.has_retry_after && r.retry_after_is_date);
    cr_expect_eq(r.retry_after, 784111777);
    int64_t t;
    cr_expect_eq(httpresp_parse_http_date(SLICE_LIT("Sun, 06 Nov 1994 08:49:37 UTC"), &t), -EINVAL);
}

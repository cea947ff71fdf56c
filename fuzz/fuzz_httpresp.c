/* fuzz_httpresp.c: target httpresp_feed() and httpresp_eof(). Differential: the input fed in
 * one piece and in pieces of a size taken from the first byte must give the same outcome. */
#include <stdlib.h>

#include "httpresp.h"

static const struct httpresp_limits lim = {.max_head = 4096, .max_headers = 32, .max_body = 8192};

static enum httpresp_status run(const uint8_t *in, size_t n, size_t step, struct httpresp *r)
{
    static uint8_t buf[65536];
    size_t have = 0, off = 0;
    httpresp_init(r, false);
    for (;;) {
        size_t k = n - off < step ? n - off : step;
        memcpy(buf + have, in + off, k);
        have += k;
        off += k;
        size_t used;
        enum httpresp_status st = httpresp_feed(r, buf, have, &used, &lim);
        if (used > have) {
            abort();
        }
        memmove(buf, buf + used, have - used);
        have -= used;
        if (st != HTTPRESP_AGAIN) {
            return st;
        }
        if (off == n) {
            return httpresp_eof(r);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 32768) {
        return 0;
    }
    size_t step = data[0] % 17 + 1;
    struct httpresp a, b;
    enum httpresp_status sa = run(data + 1, size - 1, size, &a);
    enum httpresp_status sb = run(data + 1, size - 1, step, &b);
    if (sa != sb) {
        abort();
    }
    if (sa == HTTPRESP_DONE &&
        (a.status != b.status || a.keep_alive != b.keep_alive || a.body_len != b.body_len ||
         a.excerpt_len != b.excerpt_len || memcmp(a.excerpt, b.excerpt, a.excerpt_len) != 0)) {
        abort();
    }
    return 0;
}

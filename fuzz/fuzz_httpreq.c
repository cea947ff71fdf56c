/* fuzz_httpreq.c: libFuzzer target for the HTTP/1.1 request parser.
 *
 * Targets: httpreq_parse (and through it the chunked scanner and in-place decoder).
 * Deterministic: no clock, no randomness. The first byte picks small limits so that the
 * size checks are reached; the rest is parsed as a stream of pipelined requests, the way the
 * harness consumes a connection's bytes, checking every slice stays inside the input. */
#include <stdlib.h>

#include "httpreq.h"

static void check_slice(struct slice s, const uint8_t *base, size_t len)
{
    if (s.len && (s.p < base || s.p + s.len > base + len)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    struct httpreq_limits lim = {
        .max_head = 64 + (size_t)(data[0] & 0x0f) * 256,
        .max_body = (size_t)(data[0] >> 4) * 512,
    };
    size_t max_headers = 1 + (data[0] & 0x07) * 4;
    data++;
    size--;

    uint8_t *in = malloc(size ? size : 1);
    memcpy(in, data, size);
    struct header headers[32];
    struct httpreq req;
    size_t off = 0;
    while (off < size) {
        enum httpreq_status st =
            httpreq_parse(&req, headers, max_headers, in + off, size - off, &lim);
        if (st != HTTPREQ_OK) {
            if (st == HTTPREQ_AGAIN && req.need && req.need <= size - off) {
                abort(); /* said it needed bytes it already had */
            }
            if (st != HTTPREQ_AGAIN && httpreq_status_code(st) == 0) {
                abort();
            }
            break;
        }
        if (req.len == 0 || req.len > size - off || req.head_len > req.len ||
            req.nheaders > max_headers || req.body.len > lim.max_body) {
            abort();
        }
        const uint8_t *base = in + off;
        check_slice(req.method, base, req.len);
        if (!(req.path.len == 1 && req.path.p[0] == '/')) { /* "http://host" has a static "/" */
            check_slice(req.path, base, req.len);
        }
        check_slice(req.query, base, req.len);
        check_slice(req.body, base, req.len);
        for (size_t i = 0; i < req.nheaders; i++) {
            check_slice(headers[i].name, base, req.head_len);
            check_slice(headers[i].value, base, req.head_len);
        }
        if (!req.chunked && req.body.len != req.content_length) {
            abort();
        }
        off += req.len;
    }
    free(in);
    return 0;
}

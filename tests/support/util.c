/* util.c: helpers shared by the Criterion suites. */
#include "util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

void util_read_file(const char *path, struct buf *b)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s (tests run from the repository root)", path);
    buf_init(b, 16u << 20);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        cr_assert_eq(buf_put(b, tmp, n), 0);
    }
    fclose(f);
}

size_t util_split_request(struct slice req, struct header *h, size_t max, struct slice *body)
{
    size_t n = 0, i = 0;
    for (;;) {
        const uint8_t *nl = memchr(req.p + i, '\n', req.len - i);
        cr_assert_not_null(nl, "request has no blank line");
        size_t end = (size_t)(nl - req.p);
        size_t line_end = end > i && req.p[end - 1] == '\r' ? end - 1 : end;
        if (line_end == i) {
            *body = (struct slice){nl + 1, req.len - end - 1};
            return n;
        }
        const uint8_t *colon = memchr(req.p + i, ':', line_end - i);
        cr_assert_not_null(colon, "header line without a colon");
        cr_assert_lt(n, max);
        size_t v = (size_t)(colon - req.p) + 1;
        while (v < line_end && req.p[v] == ' ') {
            v++;
        }
        h[n].name = (struct slice){req.p + i, (size_t)(colon - req.p) - i};
        h[n].value = (struct slice){req.p + v, line_end - v};
        n++;
        i = end + 1;
    }
}

const char *util_build_dir(void)
{
    const char *b = getenv("HOOKRING_BUILD");
    return b && *b ? b : "build";
}

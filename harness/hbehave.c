/* hbehave.c: request path to behaviour. */
#include "hbehave.h"

enum arg_kind {
    ARG_NONE,
    ARG_REQUIRED,
    ARG_OPTIONAL,
};

struct behave_def {
    const char *name;
    enum arg_kind arg;
    uint32_t min, max;
};

static const struct behave_def defs[HB_COUNT] = {
    [HB_OK] = {"ok", ARG_NONE, 0, 0},
    [HB_SLOW] = {"slow", ARG_REQUIRED, 0, 3600000},
    [HB_STATUS] = {"status", ARG_REQUIRED, 200, 599},
    [HB_FAIL] = {"fail", ARG_REQUIRED, 0, 100},
    [HB_FLAKY] = {"flaky", ARG_REQUIRED, 0, 1000000},
    [HB_TIMEOUT] = {"timeout", ARG_NONE, 0, 0},
    [HB_RESET] = {"reset", ARG_NONE, 0, 0},
    [HB_DROP] = {"drop", ARG_NONE, 0, 0},
    [HB_DUP] = {"dup", ARG_NONE, 0, 0},
    [HB_RETRY_AFTER] = {"retry-after", ARG_REQUIRED, 0, 1000000},
    [HB_GONE] = {"gone", ARG_NONE, 0, 0},
    [HB_TRICKLE] = {"trickle", ARG_OPTIONAL, 0, 60000},
    [HB_BIG] = {"big", ARG_OPTIONAL, 1, 1u << 30},
    [HB_REDIRECT] = {"redirect", ARG_NONE, 0, 0},
    [HB_NOT_FOUND] = {"not_found", ARG_NONE, 0, 0},
};

const char *hbehave_name(enum hbehave b)
{
    return b < HB_COUNT ? defs[b].name : "unknown";
}

/* segment returns the path segment starting at p[i] (after a '/'), up to the next '/'. */
static size_t segment_end(struct slice p, size_t i)
{
    while (i < p.len && p.p[i] != '/') {
        i++;
    }
    return i;
}

/* parse_num reads a decimal segment of at most 10 digits. */
static bool parse_num(const uint8_t *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 10) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

void hbehave_parse(struct slice path, struct haction *a)
{
    a->b = HB_NOT_FOUND;
    a->arg = 0;
    a->rest = (struct slice){path.p + path.len, 0};
    if (path.len < 2 || path.p[0] != '/') {
        return;
    }
    size_t end = segment_end(path, 1);
    struct slice name = {path.p + 1, end - 1};
    enum hbehave b = HB_NOT_FOUND;
    for (int i = 0; i < HB_NOT_FOUND; i++) {
        if (slice_eq_cstr(name, defs[i].name)) {
            b = (enum hbehave)i;
            break;
        }
    }
    if (b == HB_NOT_FOUND) {
        return;
    }
    const struct behave_def *d = &defs[b];
    size_t pos = end; /* at '/' or the end */
    if (d->arg != ARG_NONE) {
        size_t aend = pos < path.len ? segment_end(path, pos + 1) : pos;
        uint64_t v = 0;
        bool have = pos < path.len && parse_num(path.p + pos + 1, aend - pos - 1, &v);
        if (have) {
            if (v < d->min || v > d->max) {
                return;
            }
            a->arg = (uint32_t)v;
            pos = aend;
        } else if (d->arg == ARG_REQUIRED) {
            return;
        }
    }
    a->b = b;
    a->rest = (struct slice){path.p + pos, path.len - pos};
}

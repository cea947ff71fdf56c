/* fuzz_webhook.c: libFuzzer target for the webhook bodies of serve's API: POST /v1/webhooks and
 * PATCH /v1/webhooks/{id} (serve_api_parse_webhook: json_parse, every member's reader, the
 * custom headers' packing), then each custom header through serve_header_check as applying the
 * webhook does. Deterministic: no I/O, no clock, no randomness.
 *
 * The input is one JSON body, read both as a create and as a patch. Contract:
 *   - a refusal names the body or a field (err starts "the body", "a member", "field '");
 *   - what is accepted keeps every limit the API documents: a URL that parses, 1-32 filters each
 *     "*", "prefix.*" or a type of [a-z0-9._-], a retry schedule of at most 32 delays of at most
 *     a week, timeout_ms 1-120000, max_in_flight 1-1024, an api_version of [A-Za-z0-9._-], and
 *     headers packed as exactly nhdr distinct "name\0value\0" pairs within 8 KiB;
 *   - a header serve_header_check lets through is an RFC 9110 token of 1-256 characters, none of
 *     the protocol's names, with a value free of control characters (no CR, LF or NUL can reach
 *     the wire), checked here independently;
 *   - everything read is freed with the webhook (leaks are reported). */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "serve_int.h"
#include "url.h"

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool type_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static void check_filter(const char *f)
{
    size_t n = strlen(f);
    if (strcmp(f, "*") == 0) {
        return;
    }
    if (n >= 3 && f[n - 1] == '*' && f[n - 2] == '.') {
        n -= 2;
    }
    if (n == 0 || n > EVENT_TYPE_MAX) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        if (!type_char(f[i])) {
            abort();
        }
    }
}

static bool tchar(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* check_header: what serve_header_check says of name: value, against an independent reading */
static void check_header(const struct profile *p, struct slice name, struct slice value)
{
    static const char *const protocol[] = {"host",       "content-length", "transfer-encoding",
                                           "connection", "content-type",   "user-agent",
                                           "te",         "trailer",        "upgrade",
                                           "keep-alive", "expect",         "proxy-connection"};
    char err[256] = "";
    if (!serve_header_check(p, name, value, err, sizeof(err))) {
        if (!starts(err, "field 'headers': ")) {
            abort();
        }
        return;
    }
    if (name.len == 0 || name.len > 256) {
        abort();
    }
    for (size_t i = 0; i < name.len; i++) {
        if (!tchar(name.p[i])) {
            abort(); /* a separator, a space, CR, LF or NUL in an accepted name */
        }
    }
    for (size_t i = 0; i < sizeof(protocol) / sizeof(protocol[0]); i++) {
        if (name.len == strlen(protocol[i]) &&
            strncasecmp((const char *)name.p, protocol[i], name.len) == 0) {
            abort(); /* a protocol header let through */
        }
    }
    for (size_t i = 0; i < value.len; i++) {
        uint8_t c = value.p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            abort(); /* CR, LF, NUL or another control character in an accepted value */
        }
    }
}

static void check_accepted(const struct webhook *wh)
{
    if (wh->url_s) {
        struct url u;
        char why[256];
        if (strlen(wh->url_s) > WH_URL_MAX || url_parse(&u, wh->url_s, why, sizeof(why))) {
            abort();
        }
    }
    if (wh->events && (wh->nevents == 0 || wh->nevents > WH_MAX_EVENTS)) {
        abort();
    }
    for (size_t i = 0; wh->events && i < wh->nevents; i++) {
        check_filter(wh->events[i]);
    }
    if (wh->nsched > WH_MAX_SCHEDULE) {
        abort();
    }
    for (size_t i = 0; i < wh->nsched; i++) {
        if (wh->sched[i] > 7 * 86400) {
            abort();
        }
    }
    if (wh->timeout_ms > 120000 || wh->max_in_flight > WH_MAX_IN_FLIGHT) {
        abort();
    }
    for (const char *c = wh->api_version; *c; c++) {
        if (!type_char(*c) && !(*c >= 'A' && *c <= 'Z')) {
            abort();
        }
    }
    if (!wh->hdrs) {
        if (wh->nhdr || wh->hdr_len) {
            abort();
        }
        return;
    }
    if (wh->nhdr > WH_MAX_HEADERS || wh->hdr_len > WH_HEADERS_BYTES) {
        abort();
    }
    const char *p = wh->hdrs, *end = wh->hdrs + wh->hdr_len;
    struct slice names[WH_MAX_HEADERS], value;
    for (uint32_t i = 0; i < wh->nhdr; i++) {
        if (!pair_next(&p, end, &names[i], &value)) {
            abort(); /* fewer pairs than counted (an empty name is refused when applied) */
        }
        for (uint32_t j = 0; j < i; j++) {
            if (names[j].len == names[i].len &&
                strncasecmp((const char *)names[j].p, (const char *)names[i].p, names[i].len) ==
                    0) {
                abort(); /* a name given twice */
            }
        }
        check_header(wh->p ? wh->p : profile_find("standard"), names[i], value);
    }
    if (p != end) {
        abort(); /* bytes beyond the pairs counted */
    }
}

static void run(const uint8_t *data, size_t size, bool patch)
{
    struct webhook *wh = calloc(1, sizeof(*wh));
    if (!wh) {
        abort();
    }
    char err[EVENT_ERR_MAX + 64] = "";
    int rc = serve_api_parse_webhook(wh, data, size, patch, err, sizeof(err));
    if (rc) {
        if (!starts(err, "the body") && !starts(err, "a member") && !starts(err, "field '")) {
            fprintf(stderr, "fuzz_webhook: a refusal that names nothing: %s\n", err);
            abort();
        }
    } else {
        check_accepted(wh);
    }
    serve_webhook_free(wh);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size, false);
    run(data, size, true);
    return 0;
}

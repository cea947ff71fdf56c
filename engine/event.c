/* event.c: strict event parsing (spec/PROFILES.md, "The event"). */
#include "event.h"

#include "codec.h"
#include "json.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

bool event_valid_id(struct slice s)
{
    if (s.len < 1 || s.len > EVENT_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] <= 0x20 || s.p[i] >= 0x7f || s.p[i] == '.') {
            return false;
        }
    }
    return true;
}

bool event_valid_type(struct slice s)
{
    if (s.len < 1 || s.len > EVENT_TYPE_MAX) {
        return false;
    }
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = s.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

static bool valid_agent(struct slice s)
{
    if (s.len < 1 || s.len > EVENT_AGENT_MAX) {
        return false;
    }
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] <= 0x20 || s.p[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

int64_t event_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const uint8_t *p, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

int event_parse_time(struct slice s, int64_t *out_ms)
{
    const uint8_t *p = s.p;
    if (s.len < 20 || s.len > EVENT_TIME_MAX || p[4] != '-' || p[7] != '-' || p[10] != 'T' ||
        p[13] != ':' || p[16] != ':') {
        return -EINVAL;
    }
    int y = digits(p, 4), mo = digits(p + 5, 2), d = digits(p + 8, 2);
    int h = digits(p + 11, 2), mi = digits(p + 14, 2), se = digits(p + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
        se > 59) {
        return -EINVAL;
    }
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap)) {
        return -EINVAL;
    }
    size_t i = 19;
    int ms = 0;
    if (p[i] == '.') {
        size_t f = ++i;
        while (i < s.len && p[i] >= '0' && p[i] <= '9') {
            if (i - f < 3) {
                ms = ms * 10 + (p[i] - '0');
            }
            i++;
        }
        if (i == f || i - f > 9) {
            return -EINVAL;
        }
        for (size_t k = i - f; k < 3; k++) {
            ms *= 10;
        }
    }
    struct slice zone = {p + i, s.len - i};
    if (!slice_eq_cstr(zone, "Z") && !slice_eq_cstr(zone, "+00:00")) {
        return -EINVAL;
    }
    int64_t days = event_days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out_ms = ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)se * 1000 + ms;
    return 0;
}

size_t event_format_time(char *out, int64_t ms, bool with_ms)
{
    int64_t secs = ms / 1000, days = secs / 86400, rem = secs % 86400;
    /* civil_from_days (H. Hinnant) */
    int64_t z = days + 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    const int64_t y = (int64_t)yoe + era * 400 + (m <= 2);
    if (y >= 0 && y <= 9999 && ms >= 0) {
        /* the common case, digit by digit: this runs for every event ingested without a time */
        unsigned v[6] = {
            (unsigned)y,         m, d, (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60),
            (unsigned)(rem % 60)};
        char *o = out;
        *o++ = (char)('0' + v[0] / 1000);
        *o++ = (char)('0' + v[0] / 100 % 10);
        *o++ = (char)('0' + v[0] / 10 % 10);
        *o++ = (char)('0' + v[0] % 10);
        static const char sep[] = "--T::";
        for (int i = 1; i < 6; i++) {
            *o++ = sep[i - 1];
            *o++ = (char)('0' + v[i] / 10);
            *o++ = (char)('0' + v[i] % 10);
        }
        if (with_ms) {
            unsigned f = (unsigned)(ms % 1000);
            *o++ = '.';
            *o++ = (char)('0' + f / 100);
            *o++ = (char)('0' + f / 10 % 10);
            *o++ = (char)('0' + f % 10);
        }
        *o++ = 'Z';
        *o = 0;
        return (size_t)(o - out);
    }
    int n;
    if (with_ms) {
        n = snprintf(out, 25, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", (int)y, m, d,
                     (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)(ms % 1000));
    } else {
        n = snprintf(out, 25, "%04d-%02u-%02uT%02d:%02d:%02dZ", (int)y, m, d, (int)(rem / 3600),
                     (int)(rem / 60 % 60), (int)(rem % 60));
    }
    return (size_t)n;
}

/* get_string decodes string member toks[v] into out; fails naming field when it is not a string
 * or too long. */
static int get_string(const struct json_tok *toks, int v, const uint8_t *in, const char *field,
                      char *out, size_t cap, size_t *len, char *err, size_t errlen)
{
    if (toks[v].type != JSON_STRING) {
        return fail(err, errlen, "field '%s': must be a string, not %s", field,
                    json_type_name(toks[v].type));
    }
    int rc = json_unescape(&toks[v], in, out, cap, len);
    if (rc == -ENOSPC || (rc == 0 && *len >= cap)) {
        return fail(err, errlen, "field '%s': longer than %zu bytes", field, cap - 1);
    }
    if (rc) {
        return fail(err, errlen, "field '%s': invalid escape", field);
    }
    return 0;
}

static const char *const known_fields[] = {"id",   "type",         "created_at",     "agent",
                                           "data", "callback_url", "callback_secret"};

/* Each thread keeps its token array for events of up to TOKS_KEEP tokens (a 32 KiB event):
 * an ingest parses every event, and a malloc and free of a dozen kilobytes per event, among a
 * heap of events held for delivery, cost more than the parse (glibc searched its bins for each). */
#define TOKS_KEEP 16384
static __thread struct json_tok *toks_kept;
static pthread_key_t toks_key; /* its destructor frees a thread's array when the thread exits */
static pthread_once_t toks_once = PTHREAD_ONCE_INIT;
static bool toks_key_ok;

static void toks_key_init(void)
{
    toks_key_ok = pthread_key_create(&toks_key, free) == 0;
}

static struct json_tok *toks_get(size_t n)
{
    if (n > TOKS_KEEP) {
        return malloc(n * sizeof(struct json_tok));
    }
    if (!toks_kept) {
        pthread_once(&toks_once, toks_key_init);
        if (!toks_key_ok) {
            return malloc(n * sizeof(struct json_tok));
        }
        toks_kept = malloc(TOKS_KEEP * sizeof(struct json_tok));
        if (toks_kept && pthread_setspecific(toks_key, toks_kept) != 0) {
            free(toks_kept);
            toks_kept = NULL;
        }
    }
    return toks_kept;
}

static void toks_put(struct json_tok *t)
{
    if (t != toks_kept) {
        free(t);
    }
}

int event_parse(struct event *ev, const uint8_t *json, size_t len, int64_t now_ms, char *err,
                size_t errlen)
{
    memset(ev, 0, sizeof(*ev));

    size_t max_toks = len / 2 + 2, ntoks, off;
    struct json_tok *toks = toks_get(max_toks);
    if (!toks) {
        return -ENOMEM;
    }
    int rc = 0;
    enum json_status st = json_parse(toks, max_toks, json, len, &ntoks, &off);
    if (st == JSON_TOO_DEEP) {
        rc = fail(err, errlen, "event: nested deeper than %d levels at byte %zu", JSON_MAX_DEPTH,
                  off);
        goto out;
    }
    if (st != JSON_OK) {
        rc = fail(err, errlen, "event: invalid JSON at byte %zu", off);
        goto out;
    }
    if (toks[0].type != JSON_OBJECT) {
        rc =
            fail(err, errlen, "event: must be a JSON object, not %s", json_type_name(toks[0].type));
        goto out;
    }
    /* Every member must be known, and appear once. */
    uint32_t i = 1;
    unsigned seen = 0;
    for (uint32_t m = 0; m < toks[0].size; m++) {
        struct slice key = json_tok_slice(&toks[i], json);
        size_t k;
        for (k = 0; k < ARRAY_SIZE(known_fields); k++) {
            if (slice_eq_cstr(key, known_fields[k])) {
                break;
            }
        }
        if (k == ARRAY_SIZE(known_fields)) {
            rc = fail(err, errlen, "event: unknown field '%.*s'",
                      (int)(key.len > 64 ? 64 : key.len), (const char *)key.p);
            goto out;
        }
        if (seen & (1u << k)) {
            rc = fail(err, errlen, "field '%s': appears twice", known_fields[k]);
            goto out;
        }
        seen |= 1u << k;
        i = toks[i + 1].next;
    }

    int v = json_obj_get(toks, 0, json, "type");
    if (v < 0) {
        rc = fail(err, errlen, "field 'type': required");
        goto out;
    }
    rc = get_string(toks, v, json, "type", ev->type, sizeof(ev->type), &ev->type_len, err, errlen);
    if (rc) {
        goto out;
    }
    if (!event_valid_type(slice_of(ev->type, ev->type_len))) {
        rc = fail(err, errlen, "field 'type': must be 1-128 characters of [a-z0-9._-]");
        goto out;
    }

    v = json_obj_get(toks, 0, json, "id");
    if (v >= 0) {
        rc = get_string(toks, v, json, "id", ev->id, sizeof(ev->id), &ev->id_len, err, errlen);
        if (rc) {
            goto out;
        }
        if (!event_valid_id(slice_of(ev->id, ev->id_len))) {
            rc = fail(err, errlen,
                      "field 'id': must be 1-128 printable ASCII characters without '.' or spaces");
            goto out;
        }
    } else {
        uint8_t r[8];
        RAND_bytes(r, sizeof(r));
        memcpy(ev->id, "evt_", 4);
        hex_encode(ev->id + 4, r, sizeof(r));
        ev->id_len = 20;
        ev->id[20] = '\0';
    }

    v = json_obj_get(toks, 0, json, "created_at");
    if (v >= 0) {
        rc = get_string(toks, v, json, "created_at", ev->created_at, sizeof(ev->created_at),
                        &ev->created_at_len, err, errlen);
        if (rc) {
            goto out;
        }
        if (event_parse_time(slice_of(ev->created_at, ev->created_at_len), &ev->created_ms)) {
            rc = fail(err, errlen,
                      "field 'created_at': must be an RFC 3339 UTC time such as "
                      "2026-05-12T15:30:00Z");
            goto out;
        }
    } else {
        ev->created_ms = now_ms;
        ev->created_at_len = event_format_time(ev->created_at, now_ms, false);
    }

    v = json_obj_get(toks, 0, json, "agent");
    if (v >= 0 && toks[v].type != JSON_NULL) {
        rc = get_string(toks, v, json, "agent", ev->agent, sizeof(ev->agent), &ev->agent_len, err,
                        errlen);
        if (rc) {
            goto out;
        }
        if (!valid_agent(slice_of(ev->agent, ev->agent_len))) {
            rc = fail(err, errlen,
                      "field 'agent': must be 1-128 printable ASCII characters "
                      "without spaces, or null");
            goto out;
        }
        ev->has_agent = true;
    }

    v = json_obj_get(toks, 0, json, "data");
    if (v < 0) {
        rc = fail(err, errlen, "field 'data': required");
        goto out;
    }
    ev->data = json_value_slice(&toks[v], json);

    int u = json_obj_get(toks, 0, json, "callback_url");
    int s = json_obj_get(toks, 0, json, "callback_secret");
    if ((u >= 0) != (s >= 0)) {
        rc = fail(err, errlen, "field '%s': required together with '%s'",
                  u >= 0 ? "callback_secret" : "callback_url",
                  u >= 0 ? "callback_url" : "callback_secret");
        goto out;
    }
    if (u >= 0) {
        struct event_callback *cb = calloc(1, sizeof(*cb));
        if (!cb) {
            rc = -ENOMEM;
            goto out;
        }
        ev->callback = cb;
        rc = get_string(toks, u, json, "callback_url", cb->url, sizeof(cb->url), &cb->url_len, err,
                        errlen);
        if (rc) {
            goto out;
        }
        struct slice url = slice_of(cb->url, cb->url_len);
        bool scheme = (url.len > 8 && memcmp(url.p, "https://", 8) == 0) ||
                      (url.len > 7 && memcmp(url.p, "http://", 7) == 0);
        for (size_t k = 0; k < url.len && scheme; k++) {
            scheme = url.p[k] > 0x20 && url.p[k] < 0x7f;
        }
        if (!scheme) {
            rc = fail(err, errlen,
                      "field 'callback_url': must be an absolute http(s) URL "
                      "without spaces");
            goto out;
        }
        rc = get_string(toks, s, json, "callback_secret", cb->secret, sizeof(cb->secret),
                        &cb->secret_len, err, errlen);
        if (rc) {
            goto out;
        }
        if (cb->secret_len == 0) {
            rc = fail(err, errlen, "field 'callback_secret': must not be empty");
            goto out;
        }
    }
out:
    toks_put(toks);
    if (rc) {
        event_clear(ev);
    }
    return rc;
}

void event_release(struct event *ev)
{
    if (ev->callback) {
        explicit_bzero(ev->callback->secret, sizeof(ev->callback->secret));
        free(ev->callback);
        ev->callback = NULL;
    }
}

void event_clear(struct event *ev)
{
    event_release(ev);
    memset(ev, 0, sizeof(*ev));
}

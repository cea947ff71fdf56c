/* serve_api.c: the HTTP API of `hookring serve` (DESIGN.md, "Interfaces users see"): JSON in
 * and out, every path but /v1/health behind `Authorization: Bearer <key>`. */
#include "serve_int.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "codec.h"
#include "json.h"

#define API_MAX_TOKS 1024

void serve_api_error(struct apiconn *c, int status, const char *msg)
{
    struct buf b;
    buf_init(&b, 4096);
    buf_puts(&b, "{\"error\":");
    json_put_string(&b, slice_cstr(msg));
    buf_puts(&b, "}\n");
    apisrv_reply(c, status, NULL, NULL, b.p, b.len);
    buf_free(&b);
}

static void reply_buf(struct apiconn *c, int status, struct buf *b)
{
    apisrv_reply(c, status, NULL, NULL, b->p, b->len);
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

static bool authorized(const struct serve *s, const struct httpreq *req)
{
    const struct slice *h = httpreq_header(req, "Authorization");
    if (!h || h->len < 7 || memcmp(h->p, "Bearer ", 7) != 0) {
        return false;
    }
    /* hashing both sides makes the comparison constant-time whatever the lengths */
    uint8_t got[32];
    SHA256(h->p + 7, h->len - 7, got);
    return ct_equal(got, s->key_hash, sizeof(got));
}

static void put_time(struct buf *b, int64_t ms)
{
    char t[40];
    size_t n = event_format_time(t, ms, true);
    buf_putc(b, '"');
    buf_put(b, t, n);
    buf_putc(b, '"');
}

/* query_get finds name=value in a query string (no decoding: values here are plain tokens). */
static bool query_get(struct slice q, const char *name, struct slice *out)
{
    size_t nl = strlen(name);
    size_t i = 0;
    while (i < q.len) {
        size_t j = i;
        while (j < q.len && q.p[j] != '&') {
            j++;
        }
        if (j - i > nl && memcmp(q.p + i, name, nl) == 0 && q.p[i + nl] == '=') {
            *out = slice_of(q.p + i + nl + 1, j - i - nl - 1);
            return true;
        }
        i = j + 1;
    }
    return false;
}

static bool slice_uint(struct slice s, uint64_t max, uint64_t *out)
{
    if (s.len == 0 || s.len > 19) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s.p[i] - '0');
    }
    if (v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* get_string decodes string token t into out; -EINVAL with err naming field otherwise. */
static int get_string(const struct json_tok *t, const uint8_t *in, const char *field, char *out,
                      size_t cap, bool allow_empty, char *err, size_t errlen)
{
    size_t n;
    if (t->type != JSON_STRING) {
        snprintf(err, errlen, "field '%s': must be a string", field);
        return -EINVAL;
    }
    int rc = json_unescape(t, in, out, cap, &n);
    if (rc == -ENOSPC || (!rc && n >= cap)) {
        /* exactly cap bytes fit without their NUL: too long as well */
        out[cap - 1] = 0;
        snprintf(err, errlen, "field '%s': longer than %zu bytes", field, cap - 1);
        return -EINVAL;
    }
    if (rc || memchr(out, 0, n) || (!allow_empty && n == 0)) {
        snprintf(err, errlen, "field '%s': %s", field, rc ? "bad escape" : "empty or has NUL");
        return -EINVAL;
    }
    return 0;
}

/* member_name decodes the member name token kt into name (cap bytes, NUL-terminated). False
 * when it is badly escaped, does not fit with its NUL (exactly cap bytes leave none: a name
 * that long would be read past its end), or holds a NUL (it would compare as a shorter,
 * known name). */
static bool member_name(const struct json_tok *kt, const uint8_t *in, char *name, size_t cap)
{
    size_t nl;
    return json_unescape(kt, in, name, cap, &nl) == 0 && nl < cap && !memchr(name, 0, nl);
}

static bool valid_filter(const char *f)
{
    size_t n = strlen(f);
    if (strcmp(f, "*") == 0) {
        return true;
    }
    if (n >= 3 && f[n - 1] == '*' && f[n - 2] == '.') {
        return event_valid_type(slice_of(f, n - 2));
    }
    return event_valid_type(slice_of(f, n));
}

static void random_secret(char *out, size_t cap, const char *prefix, size_t nbytes)
{
    uint8_t r[48];
    char b64[80];
    RAND_bytes(r, nbytes);
    b64[b64_encode(b64, r, nbytes)] = 0;
    snprintf(out, cap, "%s%s", prefix, b64);
}

/* ---- webhooks -------------------------------------------------------------------------------- */

static void webhook_json(struct buf *b, const struct webhook *wh, bool with_secret)
{
    buf_printf(b, "{\"id\":\"%s\",\"url\":", wh->id);
    json_put_string(b, slice_cstr(wh_url(wh)));
    buf_printf(b, ",\"profile\":\"%s\",\"events\":[", wh->p->name);
    for (size_t i = 0; i < wh->nevents; i++) {
        buf_puts(b, i ? "," : "");
        json_put_string(b, slice_cstr(wh->events[i]));
    }
    buf_puts(b, "],\"agent\":");
    if (wh->has_agent) {
        json_put_string(b, slice_cstr(wh->agent));
    } else {
        buf_puts(b, "null");
    }
    if (with_secret) {
        buf_puts(b, ",\"signing_secret\":");
        json_put_string(b, slice_cstr(wh->secret));
        if (wh->p->needs_enc) {
            buf_puts(b, ",\"enc_secret\":");
            json_put_string(b, slice_cstr(wh->enc_secret));
            buf_puts(b, ",\"enc_salt\":");
            json_put_string(b, slice_cstr(wh->enc_salt));
        }
    }
    if (wh->old_secret[0] && wh->old_until_ms > serve_now_ms()) {
        buf_puts(b, ",\"previous_secret_expires_at\":");
        put_time(b, wh->old_until_ms);
    }
    buf_puts(b, ",\"retry_schedule\":[");
    const uint32_t *sch = wh->has_sched ? wh->sched : wh->p->retry_s;
    size_t n = wh->has_sched ? wh->nsched : wh->p->nretry;
    for (size_t i = 0; i < n; i++) {
        buf_printf(b, "%s%u", i ? "," : "", sch[i]);
    }
    buf_printf(b, "],\"max_in_flight\":%u,\"headers\":{",
               wh->max_in_flight ? wh->max_in_flight : WH_DEFAULT_IN_FLIGHT);
    const char *h = wh->hdrs, *end = pairs_end(wh->hdrs, wh->hdr_len);
    struct slice name, value;
    for (uint32_t i = 0; i < wh->nhdr && pair_next(&h, end, &name, &value); i++) {
        buf_puts(b, i ? "," : "");
        json_put_string(b, name);
        buf_putc(b, ':');
        json_put_string(b, value);
    }
    buf_putc(b, '}');
    if (wh->p->pid == PROFILE_HUMANOS) {
        buf_puts(b, ",\"api_version\":");
        if (wh->api_version[0]) {
            json_put_string(b, slice_cstr(wh->api_version));
        } else {
            buf_puts(b, "null");
        }
    }
    buf_printf(b, ",\"timeout_ms\":%u,\"status\":\"%s\",\"created_at\":",
               wh->timeout_ms ? wh->timeout_ms : wh->p->timeout_ms,
               serve_wh_status_name(wh->status));
    put_time(b, wh->created_ms);
    buf_printf(b, ",\"delivered\":%" PRIu64 ",\"failed\":%" PRIu64 "}", wh->delivered, wh->failed);
}

enum wh_field {
    F_URL = 1 << 0,
    F_PROFILE = 1 << 1,
    F_EVENTS = 1 << 2,
    F_AGENT = 1 << 3,
    F_SECRET = 1 << 4,
    F_ENC = 1 << 5,
    F_SALT = 1 << 6,
    F_SCHED = 1 << 7,
    F_TIMEOUT = 1 << 8,
    F_STATUS = 1 << 9,
    F_HEADERS = 1 << 10,
    F_MAXINF = 1 << 11,
    F_APIVER = 1 << 12,
};

static const struct {
    const char *name;
    unsigned bit;
} wh_fields[] = {
    {"url", F_URL},
    {"profile", F_PROFILE},
    {"events", F_EVENTS},
    {"agent", F_AGENT},
    {"secret", F_SECRET},
    {"enc_secret", F_ENC},
    {"enc_salt", F_SALT},
    {"retry_schedule", F_SCHED},
    {"timeout_ms", F_TIMEOUT},
    {"status", F_STATUS},
    {"headers", F_HEADERS},
    {"max_in_flight", F_MAXINF},
    {"api_version", F_APIVER},
};

/* parse_headers reads the object vt (token index vi) of custom headers into wh, packed, in a
 * new allocation (wh's own are not freed: see parse_webhook); the names and values are checked
 * against wh's profile when it is applied. */
static int parse_headers(struct webhook *wh, const struct json_tok *toks, size_t vi,
                         const uint8_t *in, char *err, size_t errlen)
{
    static char hdrs[WH_HEADERS_BYTES];
    const struct json_tok *vt = &toks[vi];
    if (vt->type != JSON_OBJECT || vt->size > WH_MAX_HEADERS) {
        snprintf(err, errlen, "field 'headers': must be an object of at most %d headers",
                 WH_MAX_HEADERS);
        return -EINVAL;
    }
    size_t len = 0;
    size_t k = vi + 1;
    for (uint32_t m = 0; m < vt->size; m++) {
        const struct json_tok *kt = &toks[k];
        const struct json_tok *val = &toks[k + 1];
        k = kt[1].next;
        size_t nl, vl;
        char *name = hdrs + len;
        size_t room = sizeof(hdrs) - len;
        if (json_unescape(kt, in, name, room, &nl) || nl + 1 >= room || memchr(name, 0, nl)) {
            snprintf(err, errlen,
                     "field 'headers': more than %d bytes, a bad escape, or a NUL in a name",
                     WH_HEADERS_BYTES);
            return -EINVAL;
        }
        name[nl] = 0;
        for (const char *p = hdrs; p < name;) {
            if (strcasecmp(p, name) == 0) {
                snprintf(err, errlen, "field 'headers': '%.64s' given twice", name);
                return -EINVAL;
            }
            p += strlen(p) + 1;
            p += strlen(p) + 1;
        }
        char *value = name + nl + 1;
        room -= nl + 1;
        if (val->type != JSON_STRING) {
            snprintf(err, errlen, "field 'headers': the value of '%.64s' must be a string", name);
            return -EINVAL;
        }
        int rc = json_unescape(val, in, value, room, &vl);
        if (rc || vl + 1 > room) {
            snprintf(err, errlen, "field 'headers': %s",
                     rc == -ENOSPC || !rc ? "names and values together are limited to 8192 bytes"
                                          : "a bad escape");
            return -EINVAL;
        }
        if (memchr(value, 0, vl)) {
            snprintf(err, errlen, "field 'headers': the value of '%.64s' has a NUL", name);
            return -EINVAL;
        }
        value[vl] = 0;
        len += nl + 1 + vl + 1;
    }
    if (serve_webhook_set_hdrs(wh, hdrs, len, vt->size)) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* parse_webhook reads the members of the object in toks into wh; allowed names the members
 * accepted; *seen gets those present. Returns 0 or -EINVAL with err naming the field. Filters
 * and headers read are given wh in new allocations, also on failure, and whatever wh had is
 * not freed: the caller frees what is no longer its own (parse_webhook_drop). */
static int parse_webhook(struct webhook *wh, const struct json_tok *toks, const uint8_t *in,
                         unsigned allowed, unsigned *seen, char *err, size_t errlen)
{
    static char filters[WH_MAX_EVENTS][EVENT_TYPE_MAX + 1];
    char name[64];
    *seen = 0;
    if (toks[0].type != JSON_OBJECT) {
        snprintf(err, errlen, "the body must be a JSON object");
        return -EINVAL;
    }
    size_t k = 1;
    for (uint32_t m = 0; m < toks[0].size; m++) {
        const struct json_tok *kt = &toks[k];
        const struct json_tok *vt = &toks[k + 1];
        size_t vi = k + 1;
        k = kt[1].next;
        if (!member_name(kt, in, name, sizeof(name))) {
            snprintf(err, errlen, "a member name is too long, badly escaped or has a NUL");
            return -EINVAL;
        }
        unsigned bit = 0;
        for (size_t i = 0; i < ARRAY_SIZE(wh_fields); i++) {
            if (strcmp(name, wh_fields[i].name) == 0) {
                bit = wh_fields[i].bit;
            }
        }
        if (!bit) {
            snprintf(err, errlen, "field '%s': unknown", name);
            return -EINVAL;
        }
        if (!(allowed & bit)) {
            snprintf(err, errlen, "field '%s': cannot be changed", name);
            return -EINVAL;
        }
        if (*seen & bit) {
            snprintf(err, errlen, "field '%s': given twice", name);
            return -EINVAL;
        }
        *seen |= bit;
        int rc = 0;
        switch (bit) {
        case F_URL: {
            static char url[WH_URL_MAX + 1];
            rc = get_string(vt, in, "url", url, sizeof(url), false, err, errlen);
            struct url u;
            char why[EVENT_ERR_MAX];
            if (!rc && url_parse(&u, url, why, sizeof(why))) {
                snprintf(err, errlen, "field 'url': %s", why);
                rc = -EINVAL;
            }
            if (!rc && serve_webhook_set_url(wh, url, strlen(url))) {
                snprintf(err, errlen, "out of memory");
                rc = -ENOMEM;
            }
            break;
        }
        case F_PROFILE: {
            char pn[32];
            rc = get_string(vt, in, "profile", pn, sizeof(pn), false, err, errlen);
            if (!rc && !(wh->p = profile_find(pn))) {
                snprintf(err, errlen,
                         "field 'profile': unknown (humanconnection humiris humcli humanos "
                         "aksita standard svix stripe github)");
                rc = -EINVAL;
            }
            break;
        }
        case F_EVENTS:
            if (vt->type != JSON_ARRAY || vt->size == 0 || vt->size > WH_MAX_EVENTS) {
                snprintf(err, errlen, "field 'events': must be an array of 1-%d event types",
                         WH_MAX_EVENTS);
                return -EINVAL;
            }
            for (uint32_t i = 0, t = (uint32_t)vi + 1; i < vt->size && !rc; i++) {
                rc = get_string(&toks[t], in, "events", filters[i], sizeof(filters[i]), false, err,
                                errlen);
                if (!rc && !valid_filter(filters[i])) {
                    snprintf(err, errlen,
                             "field 'events': '%s' is not a type, '*' or 'prefix.*' (types are "
                             "[a-z0-9._-])",
                             filters[i]);
                    rc = -EINVAL;
                }
                t = toks[t].next;
            }
            if (!rc && serve_webhook_set_events(wh, filters, vt->size)) {
                snprintf(err, errlen, "out of memory");
                rc = -ENOMEM;
            }
            break;
        case F_AGENT:
            if (vt->type == JSON_NULL) {
                wh->has_agent = false;
                wh->agent[0] = 0;
            } else {
                rc = get_string(vt, in, "agent", wh->agent, sizeof(wh->agent), false, err, errlen);
                wh->has_agent = true;
            }
            break;
        case F_SECRET:
            rc = get_string(vt, in, "secret", wh->secret, sizeof(wh->secret), false, err, errlen);
            break;
        case F_ENC:
            rc = get_string(vt, in, "enc_secret", wh->enc_secret, sizeof(wh->enc_secret), false,
                            err, errlen);
            break;
        case F_SALT:
            rc = get_string(vt, in, "enc_salt", wh->enc_salt, sizeof(wh->enc_salt), false, err,
                            errlen);
            break;
        case F_SCHED:
            if (vt->type != JSON_ARRAY || vt->size > WH_MAX_SCHEDULE) {
                snprintf(err, errlen,
                         "field 'retry_schedule': must be an array of at most %d delays in "
                         "seconds",
                         WH_MAX_SCHEDULE);
                return -EINVAL;
            }
            wh->has_sched = true;
            wh->nsched = vt->size;
            for (uint32_t i = 0, t = (uint32_t)vi + 1; i < vt->size; i++) {
                uint64_t v;
                if (toks[t].type != JSON_NUMBER ||
                    !slice_uint(json_tok_slice(&toks[t], in), 7 * 86400, &v)) {
                    snprintf(err, errlen,
                             "field 'retry_schedule': each delay is whole seconds, 0-604800");
                    return -EINVAL;
                }
                wh->sched[i] = (uint32_t)v;
                t = toks[t].next;
            }
            break;
        case F_TIMEOUT: {
            uint64_t v;
            if (vt->type != JSON_NUMBER || !slice_uint(json_tok_slice(vt, in), 120000, &v) ||
                v == 0) {
                snprintf(err, errlen, "field 'timeout_ms': must be 1-120000");
                return -EINVAL;
            }
            wh->timeout_ms = (uint32_t)v;
            break;
        }
        case F_HEADERS:
            rc = parse_headers(wh, toks, vi, in, err, errlen);
            break;
        case F_MAXINF: {
            uint64_t v;
            if (vt->type != JSON_NUMBER ||
                !slice_uint(json_tok_slice(vt, in), WH_MAX_IN_FLIGHT, &v) || v == 0) {
                snprintf(err, errlen, "field 'max_in_flight': must be 1-%d", WH_MAX_IN_FLIGHT);
                return -EINVAL;
            }
            wh->max_in_flight = (uint32_t)v;
            break;
        }
        case F_APIVER: {
            rc = get_string(vt, in, "api_version", wh->api_version, sizeof(wh->api_version), false,
                            err, errlen);
            for (const char *p = wh->api_version; !rc && *p; p++) {
                if (!(*p >= '0' && *p <= '9') && !(*p >= 'a' && *p <= 'z') &&
                    !(*p >= 'A' && *p <= 'Z') && !strchr("._-", *p)) {
                    snprintf(err, errlen, "field 'api_version': letters, digits, '.', '_', '-'");
                    rc = -EINVAL;
                }
            }
            break;
        }
        case F_STATUS: {
            char st[16];
            rc = get_string(vt, in, "status", st, sizeof(st), false, err, errlen);
            if (!rc && strcmp(st, "active") == 0) {
                wh->status = WH_ACTIVE;
            } else if (!rc && strcmp(st, "disabled") == 0) {
                wh->status = WH_DISABLED;
            } else if (!rc) {
                snprintf(err, errlen, "field 'status': must be \"active\" or \"disabled\"");
                rc = -EINVAL;
            }
            break;
        }
        }
        if (rc) {
            return rc;
        }
    }
    return 0;
}

static int parse_json(const uint8_t *p, size_t len, struct json_tok *toks, char *err, size_t errlen)
{
    size_t ntoks, off;
    enum json_status st = json_parse(toks, API_MAX_TOKS, p, len, &ntoks, &off);
    if (st != JSON_OK) {
        snprintf(err, errlen, "the body is not valid JSON (%s at byte %zu)",
                 st == JSON_TOO_MANY ? "too many values" : "invalid", off);
        return -EINVAL;
    }
    return 0;
}

static int parse_body(const struct httpreq *req, struct json_tok *toks, char *err, size_t errlen)
{
    return parse_json(req->body.p, req->body.len, toks, err, errlen);
}

#define WH_PATCHABLE                                                                               \
    (F_URL | F_EVENTS | F_AGENT | F_SCHED | F_TIMEOUT | F_STATUS | F_HEADERS | F_MAXINF | F_APIVER)

int serve_api_parse_webhook(struct webhook *wh, const uint8_t *body, size_t len, bool patch,
                            char *err, size_t errlen)
{
    static struct json_tok toks[API_MAX_TOKS];
    unsigned seen;
    if (parse_json(body, len, toks, err, errlen)) {
        return -EINVAL;
    }
    return parse_webhook(wh, toks, body, patch ? WH_PATCHABLE : ~(unsigned)F_STATUS, &seen, err,
                         errlen);
}

/* commit_webhook journals wh and answers status with its JSON once durable. */
static void commit_webhook(struct serve *s, struct apiconn *c, struct webhook *wh, int status,
                           bool with_secret)
{
    struct sreply *r = serve_reply_new(s, c, status);
    if (!r) {
        serve_api_error(c, 500, "out of memory");
        return;
    }
    webhook_json(&r->body, wh, with_secret);
    buf_putc(&r->body, '\n');
    int rc = serve_webhook_record(s, wh, &r->w);
    if (rc) {
        SERVE_REPLY_LIT(c, 503, "Retry-After: 1\r\n",
                        "{\"error\":\"the journal is behind or failed; retry\"}\n");
        buf_free(&r->body);
        free(r);
    }
}

static void webhook_create(struct serve *s, struct apiconn *c, const struct httpreq *req)
{
    static struct json_tok toks[API_MAX_TOKS];
    char err[EVENT_ERR_MAX + 64];
    struct webhook *wh = calloc(1, sizeof(*wh));
    if (!wh) {
        serve_api_error(c, 500, "out of memory");
        return;
    }
    unsigned seen;
    if (parse_body(req, toks, err, sizeof(err)) ||
        parse_webhook(wh, toks, req->body.p, ~(unsigned)F_STATUS, &seen, err, sizeof(err))) {
        goto bad;
    }
    const char *missing = !(seen & F_URL)       ? "url"
                          : !(seen & F_PROFILE) ? "profile"
                          : !(seen & F_EVENTS)  ? "events"
                                                : NULL;
    if (missing) {
        snprintf(err, sizeof(err), "field '%s': required", missing);
        goto bad;
    }
    if (!(seen & F_SECRET)) {
        random_secret(wh->secret, sizeof(wh->secret), "whsec_", 24);
    }
    if (wh->p->needs_enc) {
        if (!(seen & F_ENC)) {
            random_secret(wh->enc_secret, sizeof(wh->enc_secret), "", 32);
        }
        if (!(seen & F_SALT)) {
            random_secret(wh->enc_salt, sizeof(wh->enc_salt), "salt-", 12);
        }
    } else if (seen & (F_ENC | F_SALT)) {
        snprintf(err, sizeof(err), "field '%s': only the humanos profile encrypts",
                 seen & F_ENC ? "enc_secret" : "enc_salt");
        goto bad;
    }
    if ((seen & F_APIVER) && wh->p->pid != PROFILE_HUMANOS) {
        snprintf(err, sizeof(err), "field 'api_version': only the humanos profile has one");
        goto bad;
    }
    do { /* an id never given before, deleted webhooks' included */
        uint8_t rid[8];
        RAND_bytes(rid, sizeof(rid));
        memcpy(wh->id, "whk_", 4);
        hex_encode(wh->id + 4, rid, sizeof(rid));
        wh->id[WH_ID_LEN] = 0;
    } while (serve_webhook_named(s, slice_cstr(wh->id)));
    wh->created_ms = serve_now_ms();
    wh->status = WH_ACTIVE;
    if (serve_webhook_apply(s, wh, err, sizeof(err))) {
        goto bad;
    }
    if (serve_webhook_add(s, wh)) {
        serve_webhook_release(s, wh);
        endpoint_cleanup(&wh->ep);
        signer_wipe(&wh->signer);
        serve_webhook_free(wh);
        serve_api_error(c, 500, "out of memory");
        return;
    }
    commit_webhook(s, c, wh, 201, true);
    return;
bad:
    signer_wipe(&wh->signer);
    serve_webhook_free(wh);
    serve_api_error(c, 400, err);
}

/* parse_webhook_drop frees the filters and headers parse_webhook gave tmp, a copy of wh, that
 * wh does not hold, and gives tmp wh's again. */
static void parse_webhook_drop(struct webhook *tmp, const struct webhook *wh)
{
    if (tmp->url_s != wh->url_s) {
        free(tmp->url_s);
        tmp->url_s = wh->url_s;
    }
    if (tmp->events != wh->events) {
        free(tmp->events);
        tmp->events = wh->events;
    }
    if (tmp->hdrs != wh->hdrs) {
        free(tmp->hdrs);
        tmp->hdrs = wh->hdrs;
    }
}

static void webhook_patch(struct serve *s, struct apiconn *c, const struct httpreq *req,
                          struct webhook *wh)
{
    static struct json_tok toks[API_MAX_TOKS];
    static struct webhook tmp;
    char err[EVENT_ERR_MAX + 64];
    unsigned seen;
    memcpy(&tmp, wh, sizeof(tmp));
    if (parse_body(req, toks, err, sizeof(err)) ||
        parse_webhook(&tmp, toks, req->body.p, WH_PATCHABLE, &seen, err, sizeof(err))) {
        parse_webhook_drop(&tmp, wh);
        serve_api_error(c, 400, err);
        return;
    }
    if ((seen & F_APIVER) && wh->p->pid != PROFILE_HUMANOS) {
        parse_webhook_drop(&tmp, wh);
        serve_api_error(c, 400, "field 'api_version': only the humanos profile has one");
        return;
    }
    /* with attempts in flight, the endpoint is built anew once they are back; what starts after
     * this answer uses the new one */
    bool rebuild = (seen & (F_URL | F_TIMEOUT | F_HEADERS | F_MAXINF)) != 0;
    /* what the endpoint is built from, kept to put back if the new one is refused */
    static struct webhook old;
    old.url_s = wh->url_s;
    old.hdrs = wh->hdrs;
    old.hdr_len = wh->hdr_len;
    old.nhdr = wh->nhdr;
    old.timeout_ms = wh->timeout_ms;
    old.max_in_flight = wh->max_in_flight;
    wh->url_s = tmp.url_s;
    wh->hdrs = tmp.hdrs;
    wh->hdr_len = tmp.hdr_len;
    wh->nhdr = tmp.nhdr;
    wh->timeout_ms = tmp.timeout_ms;
    wh->max_in_flight = tmp.max_in_flight;
    if (rebuild && serve_webhook_apply(s, wh, err, sizeof(err))) {
        wh->url_s = old.url_s;
        wh->hdrs = old.hdrs;
        wh->hdr_len = old.hdr_len;
        wh->nhdr = old.nhdr;
        wh->timeout_ms = old.timeout_ms;
        wh->max_in_flight = old.max_in_flight;
        if (!wh->ep_ok) {
            char ignored[EVENT_ERR_MAX + 64]; /* the old one was torn down: built again */
            serve_webhook_apply(s, wh, ignored, sizeof(ignored));
        }
        parse_webhook_drop(&tmp, wh);
        serve_api_error(c, 400, err);
        return;
    }
    if (old.url_s != wh->url_s) {
        free(old.url_s); /* replaced by the body's */
    }
    if (old.hdrs != wh->hdrs) {
        free(old.hdrs);
    }
    old.url_s = NULL;
    old.hdrs = NULL;
    if (seen & F_APIVER) {
        memcpy(wh->api_version, tmp.api_version, sizeof(wh->api_version));
        memcpy(wh->signer.api_version, wh->api_version, sizeof(wh->api_version));
        serve_webhook_signer_changed(s, wh); /* the worker's copy signs the new version too */
    }
    if (tmp.events != wh->events) {
        free(wh->events); /* replaced by the body's */
        wh->events = tmp.events;
    }
    wh->nevents = tmp.nevents;
    if (wh->has_agent != tmp.has_agent || strcmp(wh->agent, tmp.agent) != 0) {
        serve_match_dirty(s); /* it moves to another agent's webhooks */
    }
    wh->has_agent = tmp.has_agent;
    memcpy(wh->agent, tmp.agent, sizeof(wh->agent));
    memcpy(wh->sched, tmp.sched, sizeof(wh->sched));
    wh->nsched = tmp.nsched;
    wh->has_sched = tmp.has_sched;
    if (tmp.status != wh->status) {
        /* an operator's "active" starts the count of exhausted deliveries (and the failing
         * period) afresh */
        wh->exhausted_run = 0;
        wh->failing_since_ms = 0;
    }
    wh->status = tmp.status;
    commit_webhook(s, c, wh, 200, false);
}

#define ROTATE_GRACE_DEFAULT_S 86400
#define ROTATE_GRACE_MAX_S (30 * 86400)

/* webhook_rotate gives wh a new secret (the body's, or a generated one); the previous one goes
 * on signing alongside it for grace_seconds where the profile sends several signatures. */
static void webhook_rotate(struct serve *s, struct apiconn *c, const struct httpreq *req,
                           struct webhook *wh)
{
    static struct json_tok toks[API_MAX_TOKS];
    char err[EVENT_ERR_MAX + 64];
    char secret[EVENT_SECRET_MAX + 1] = "";
    uint64_t grace = ROTATE_GRACE_DEFAULT_S;
    const uint8_t *in = req->body.p;
    if (req->body.len) {
        if (parse_body(req, toks, err, sizeof(err))) {
            serve_api_error(c, 400, err);
            return;
        }
        if (toks[0].type != JSON_OBJECT) {
            serve_api_error(c, 400, "the body must be a JSON object");
            return;
        }
        size_t k = 1;
        for (uint32_t m = 0; m < toks[0].size; m++) {
            const struct json_tok *kt = &toks[k];
            const struct json_tok *vt = &toks[k + 1];
            k = kt[1].next;
            char name[64];
            if (!member_name(kt, in, name, sizeof(name))) {
                serve_api_error(c, 400, "a member name is too long, badly escaped or has a NUL");
                return;
            }
            if (strcmp(name, "secret") == 0) {
                if (get_string(vt, in, "secret", secret, sizeof(secret), false, err, sizeof(err))) {
                    serve_api_error(c, 400, err);
                    return;
                }
            } else if (strcmp(name, "grace_seconds") == 0) {
                if (vt->type != JSON_NUMBER ||
                    !slice_uint(json_tok_slice(vt, in), ROTATE_GRACE_MAX_S, &grace)) {
                    serve_api_error(c, 400, "field 'grace_seconds': whole seconds, 0-2592000");
                    return;
                }
            } else {
                snprintf(err, sizeof(err), "field '%s': unknown", name);
                serve_api_error(c, 400, err);
                return;
            }
        }
    }
    if (!secret[0]) {
        random_secret(secret, sizeof(secret), "whsec_", 24);
    }
    static struct webhook tmp;
    memcpy(&tmp, wh, sizeof(tmp));
    int64_t now = serve_now_ms();
    if (wh->p->multi_sig && grace > 0) {
        memcpy(tmp.old_secret, wh->secret, sizeof(tmp.old_secret));
        tmp.old_until_ms = now + (int64_t)grace * 1000;
    } else {
        memset(tmp.old_secret, 0, sizeof(tmp.old_secret));
        tmp.old_until_ms = 0;
    }
    memcpy(tmp.secret, secret, sizeof(tmp.secret));
    /* the new signer is built on the copy first: a secret the profile refuses changes nothing */
    struct signer sg;
    tmp.signer = (struct signer){0};
    if (serve_webhook_resign(&tmp, now, err, sizeof(err))) {
        memset(&tmp, 0, sizeof(tmp));
        serve_api_error(c, 400, err);
        return;
    }
    sg = tmp.signer;
    memcpy(sg.api_version, wh->signer.api_version, sizeof(sg.api_version));
    signer_wipe(&wh->signer);
    wh->signer = sg;
    serve_webhook_signer_changed(s, wh);
    memcpy(wh->secret, tmp.secret, sizeof(wh->secret));
    memcpy(wh->old_secret, tmp.old_secret, sizeof(wh->old_secret));
    wh->old_until_ms = tmp.old_until_ms;
    memset(&tmp, 0, sizeof(tmp));
    commit_webhook(s, c, wh, 200, true);
}

/* GET /v1/webhooks?limit=N&cursor=C: the webhooks (not deleted ones) in the order they were
 * made, at most limit (1-1000, default 1000: a page of the largest webhooks, 12 KiB each, stays
 * well within the answer's bound); next_cursor is the last one's id, null once the listing is
 * over. */
static void webhook_list(struct serve *s, struct apiconn *c, const struct httpreq *req)
{
    struct slice v;
    uint64_t limit = 1000;
    if (query_get(req->query, "limit", &v) && (!slice_uint(v, 1000, &limit) || limit == 0)) {
        serve_api_error(c, 400, "query 'limit': 1-1000");
        return;
    }
    size_t i = 0;
    if (query_get(req->query, "cursor", &v)) {
        /* deleted ones too: the last of a page may have been deleted since */
        const struct webhook *at = serve_webhook_named(s, v);
        if (!at || !serve_webhook_pos(s, at, &i)) {
            serve_api_error(c, 400,
                            "query 'cursor': the next_cursor of a page (that webhook is gone: "
                            "list again from the start)");
            return;
        }
        i++;
    }
    struct buf b;
    buf_init(&b, 64u << 20);
    buf_puts(&b, "{\"data\":[");
    size_t n = 0;
    const struct webhook *last = NULL;
    for (; i < s->nwh && n < limit; i++) {
        if (s->whs[i]->status == WH_DELETED) {
            continue;
        }
        buf_puts(&b, n++ ? "," : "");
        webhook_json(&b, s->whs[i], false);
        last = s->whs[i];
    }
    while (i < s->nwh && s->whs[i]->status == WH_DELETED) {
        i++;
    }
    buf_printf(&b, "],\"count\":%zu,\"next_cursor\":", n);
    if (i < s->nwh && last) {
        buf_printf(&b, "\"%s\"}\n", last->id);
    } else {
        buf_puts(&b, "null}\n");
    }
    reply_buf(c, 200, &b);
    buf_free(&b);
}

/* ---- deliveries -------------------------------------------------------------------------------
 */

static void delivery_json(struct buf *b, const struct delivery *d, bool full)
{
    char id[DLV_ID_LEN + 1];
    serve_format_dlv_id(id, d->idx);
    struct event tmp;
    static const struct event none; /* a held text always parses: never used */
    const struct event *ev = serve_sevent_view(d->s, d->ev, &tmp);
    if (!ev) {
        ev = &none;
    }
    if (d->wh->adhoc || strcmp(d->wh->id, WH_CALLBACK_ID) == 0) {
        /* a callback delivery: no webhook, the event's callback_url (never its secret) */
        buf_printf(b, "{\"id\":\"%s\",\"webhook_id\":null,\"callback_url\":", id);
        const struct event_callback *cb = ev->callback;
        json_put_string(b, cb ? slice_of(cb->url, cb->url_len) : slice_cstr(""));
        buf_puts(b, ",\"event_id\":");
    } else {
        buf_printf(b, "{\"id\":\"%s\",\"webhook_id\":\"%s\",\"event_id\":", id, d->wh->id);
    }
    json_put_string(b, slice_of(ev->id, ev->id_len));
    buf_printf(b, ",\"event_type\":\"%s\",\"status\":\"%s\",\"attempt_count\":%u", ev->type,
               serve_dlv_status_name(d->status), d->attempts);
    if (d->status == DLV_PENDING && d->next_at_ms) {
        buf_puts(b, ",\"next_attempt_at\":");
        put_time(b, d->next_at_ms);
    }
    if (d->why) {
        buf_puts(b, ",\"error\":");
        json_put_string(b, slice_cstr(d->why));
    }
    if (d->nhist) {
        const struct dlv_attempt *h = &d->hist[d->nhist - 1];
        buf_printf(b, ",\"last_status\":%d", h->status);
    }
    if (full) {
        char msg_id[SIGN_ID_MAX + 1];
        buf_puts(b, ",\"message_id\":");
        json_put_string(b, slice_of(msg_id, serve_dlv_message_id(d, msg_id)));
        buf_puts(b, ",\"attempts\":[");
        for (size_t i = 0; i < d->nhist; i++) {
            const struct dlv_attempt *h = &d->hist[i];
            buf_puts(b, i ? ",{\"at\":" : "{\"at\":");
            put_time(b, h->at_ms);
            buf_printf(b, ",\"status\":%d,\"result\":\"%s\",\"latency_ms\":%.3f,\"response\":",
                       h->status, attempt_result_name((enum attempt_result)h->result),
                       (double)h->latency_us / 1000.0);
            json_put_string(b, slice_cstr(dlv_excerpt(h)));
            buf_putc(b, '}');
        }
        buf_putc(b, ']');
    }
    buf_putc(b, '}');
    event_clear(&tmp);
}

static void delivery_list(struct serve *s, struct apiconn *c, const struct httpreq *req,
                          const struct webhook *wh)
{
    struct slice v;
    int want = -1;
    uint64_t limit = 50;
    if (query_get(req->query, "status", &v)) {
        for (int st = DLV_PENDING; st <= DLV_FAILED; st++) {
            if (slice_eq_cstr(v, serve_dlv_status_name((enum dlv_status)st))) {
                want = st;
            }
        }
        if (want < 0) {
            serve_api_error(c, 400, "query 'status': one of pending, sending, delivered, failed");
            return;
        }
    }
    if (query_get(req->query, "limit", &v) && (!slice_uint(v, 1000, &limit) || limit == 0)) {
        serve_api_error(c, 400, "query 'limit': 1-1000");
        return;
    }
    /* the page lists deliveries older than the cursor: where the last page stopped */
    uint64_t at = s->dlv_end;
    if (query_get(req->query, "cursor", &v)) {
        uint64_t before;
        if (!serve_dlv_id_parse(v, &before)) {
            serve_api_error(c, 400, "query 'cursor': the next_cursor of a page (dlv_...)");
            return;
        }
        at = before < at ? before : at;
    }
    struct buf b;
    buf_init(&b, 64u << 20);
    buf_puts(&b, "{\"data\":[");
    size_t n = 0, budget = s->list_scan_max;
    while (n < limit) {
        const struct delivery *d = dtab_prev(&s->dlvs, &at, s->dlv_base, &budget);
        if (!d) {
            break;
        }
        if (d->wh != wh || (want >= 0 && (int)d->status != want)) {
            continue;
        }
        buf_puts(&b, n++ ? "," : "");
        delivery_json(&b, d, false);
    }
    buf_printf(&b, "],\"count\":%zu,\"next_cursor\":", n);
    if (at > s->dlv_base) {
        /* more to look at (a page may come back short of limit when the scan's bound ends
         * it: only a null next_cursor says the listing is over) */
        char id[DLV_ID_LEN + 1];
        serve_format_dlv_id(id, at);
        buf_printf(&b, "\"%s\"}\n", id);
    } else {
        buf_puts(&b, "null}\n");
    }
    reply_buf(c, 200, &b);
    buf_free(&b);
}

/* answer_when_durable answers c with status and body once everything journaled so far is
 * durable. */
static void answer_when_durable(struct serve *s, struct apiconn *c, int status, struct buf *body)
{
    struct sreply *r = serve_reply_new(s, c, status);
    if (!r) {
        serve_api_error(c, 500, "out of memory");
        return;
    }
    buf_put(&r->body, body->p, body->len);
    serve_reply_when_durable(r);
}

static void delivery_retry(struct serve *s, struct apiconn *c, struct delivery *d)
{
    int rc = serve_dlv_retry(s, d);
    if (rc == -EBUSY) {
        serve_api_error(c, 409,
                        d->status == DLV_DELIVERED ? "the delivery was delivered"
                                                   : "an attempt is in flight");
        return;
    }
    if (rc) {
        serve_api_error(c, 409, "the webhook is not active");
        return;
    }
    struct buf b;
    buf_init(&b, 1 << 20);
    delivery_json(&b, d, false);
    buf_putc(&b, '\n');
    answer_when_durable(s, c, 202, &b);
    buf_free(&b);
}

/* pct_decode decodes %XX escapes (and '+' as a space) of s into out (cap bytes with the NUL). */
static bool pct_decode(struct slice s, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        char ch = (char)s.p[i];
        if (ch == '%') {
            uint8_t v;
            if (i + 2 >= s.len || hex_decode(&v, 1, slice_of(s.p + i + 1, 2))) {
                return false;
            }
            ch = (char)v;
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (n + 1 >= cap || ch == 0) {
            return false;
        }
        out[n++] = ch;
    }
    out[n] = 0;
    return true;
}

/* webhook_recover makes every failed delivery of wh whose event was ingested at or after
 * ?since= due now. */
static void webhook_recover(struct serve *s, struct apiconn *c, const struct httpreq *req,
                            struct webhook *wh)
{
    struct slice v;
    char t[64];
    int64_t since;
    if (!query_get(req->query, "since", &v) || !pct_decode(v, t, sizeof(t)) ||
        event_parse_time(slice_cstr(t), &since)) {
        serve_api_error(c, 400, "query 'since': required, an RFC 3339 UTC time");
        return;
    }
    if (!wh_live(wh) || !wh->ep_ok) {
        serve_api_error(c, 409, "the webhook is not active");
        return;
    }
    size_t n = 0;
    struct delivery *d;
    SERVE_EACH_DLV(s, d)
    {
        if (d->wh == wh && d->status == DLV_FAILED && d->ev->ingest_ms >= since &&
            serve_dlv_retry(s, d) == 0) {
            n++;
        }
    }
    struct buf b;
    buf_init(&b, 4096);
    buf_printf(&b, "{\"recovered\":%zu}\n", n);
    answer_when_durable(s, c, 202, &b);
    buf_free(&b);
}

/* ---- health and metrics -----------------------------------------------------------------------
 */

/* count_waiting is how many deliveries are pending: counted as they change, since /v1/health
 * (polled by load balancers) and /metrics ask, and a scan of every delivery held stalled the
 * loop for each request (measured: 2.7 ms with 207 000 held, 0.9 ms for the whole request
 * without it). TEST ONLY: HOOKRING_TEST_COUNT_CHECK makes each ask check the count against
 * such a scan, and abort on a difference. */
static size_t count_waiting(const struct serve *s)
{
    if (s->test_count_check) {
        size_t n = 0;
        struct delivery *d;
        SERVE_EACH_DLV(s, d)
        {
            n += d->status == DLV_PENDING;
        }
        if (n != s->npending) {
            fprintf(stderr, "hookring serve: %zu deliveries pending, counted %zu\n", n,
                    s->npending);
            abort();
        }
    }
    return s->npending;
}

static void health(struct serve *s, struct apiconn *c)
{
    struct buf b;
    buf_init(&b, 4096);
    struct journal_stats js;
    journal_stats(&s->j, &js);
    /* either refuses every ingest: a load balancer should send events elsewhere */
    const char *st = journal_failed(&s->j) ? "journal_failed" : js.stuck ? "journal_full" : "ok";
    buf_printf(&b,
               "{\"status\":\"%s\",\"webhooks\":%zu,\"events\":%zu,\"in_flight\":%u,"
               "\"pending\":%zu",
               st, s->nwh, s->nev, s->inflight, count_waiting(s));
    if (journal_failed(&s->j) || js.stuck) {
        /* why, for whoever is paged; no path (health needs no key): the log has the rest */
        char why[256];
        if (journal_failed(&s->j)) {
            snprintf(why, sizeof(why), "%s (the server's log says where)", strerror(-s->j.failed));
        } else {
            snprintf(why, sizeof(why), "no room on disk for the next segment: %s",
                     strerror(-js.stuck));
        }
        buf_puts(&b, ",\"journal_error\":");
        json_put_string(&b, slice_cstr(why));
    }
    buf_puts(&b, "}\n");
    reply_buf(c, strcmp(st, "ok") == 0 ? 200 : 503, &b);
    buf_free(&b);
}

/* metrics_keep writes the retention and compaction figures (serve_keep.c). */
static void metrics_keep(const struct serve *s, struct buf *b, const struct journal_stats *js)
{
    buf_printf(b,
               "# TYPE hookring_journal_segments gauge\n"
               "hookring_journal_segments %" PRIu64 "\n"
               "# TYPE hookring_journal_segments_dropped_total counter\n"
               "hookring_journal_segments_dropped_total %" PRIu64 "\n"
               "# TYPE hookring_compactions_total counter\n"
               "hookring_compactions_total %" PRIu64 "\n"
               "# TYPE hookring_compaction_records_total counter\n"
               "hookring_compaction_records_total %" PRIu64 "\n"
               "# TYPE hookring_events_held gauge\n"
               "hookring_events_held %zu\n"
               "# TYPE hookring_deliveries_held gauge\n"
               "hookring_deliveries_held %zu\n"
               "# TYPE hookring_delivery_table_bytes gauge\n"
               "hookring_delivery_table_bytes %zu\n"
               "# TYPE hookring_deliveries_forgotten_total counter\n"
               "hookring_deliveries_forgotten_total %" PRIu64 "\n"
               "# TYPE hookring_dedup_keys_held gauge\n"
               "hookring_dedup_keys_held %zu\n",
               js->segments, js->segments_dropped, s->m.compactions, s->m.carried, s->nev,
               s->dlvs.n, dtab_bytes(&s->dlvs), s->m.forgotten, s->keep.dd_len);
    size_t texts = s->ntexts;
    if (s->test_count_check) { /* see count_waiting */
        size_t n = 0;
        for (size_t i = 0; i < s->nev; i++) {
            n += s->evs[i]->json.len != 0;
        }
        if (n != texts) {
            fprintf(stderr, "hookring serve: %zu event texts held, counted %zu\n", n, texts);
            abort();
        }
    }
    buf_printf(b,
               "# TYPE hookring_event_texts_held gauge\n"
               "hookring_event_texts_held %zu\n"
               "# TYPE hookring_event_text_reads_total counter\n"
               "hookring_event_text_reads_total %" PRIu64 "\n"
               "# TYPE hookring_event_text_read_errors_total counter\n"
               "hookring_event_text_read_errors_total %" PRIu64 "\n"
               "# TYPE hookring_deliveries_ready gauge\n"
               "hookring_deliveries_ready %zu\n"
               "# TYPE hookring_ingest_waiting gauge\n"
               "hookring_ingest_waiting %zu\n"
               "# TYPE hookring_ingest_paced_total counter\n"
               "hookring_ingest_paced_total %" PRIu64 "\n",
               texts, s->m.text_reads, s->m.text_errors, s->nready_all, s->npaced, s->m.paced);
}

static void metrics(struct serve *s, struct apiconn *c)
{
    struct journal_stats js;
    journal_stats(&s->j, &js);
    size_t by[4] = {0};
    for (size_t i = 0; i < s->nwh; i++) {
        by[s->whs[i]->status]++;
    }
    struct buf b;
    buf_init(&b, 1 << 20);
    buf_printf(&b,
               "# TYPE hookring_events_ingested_total counter\n"
               "hookring_events_ingested_total %" PRIu64 "\n"
               "# TYPE hookring_events_duplicate_total counter\n"
               "hookring_events_duplicate_total %" PRIu64 "\n"
               "# TYPE hookring_deliveries_delivered_total counter\n"
               "hookring_deliveries_delivered_total %" PRIu64 "\n"
               "# TYPE hookring_deliveries_failed_total counter\n"
               "hookring_deliveries_failed_total %" PRIu64 "\n"
               "# TYPE hookring_attempts_total counter\n"
               "hookring_attempts_total %" PRIu64 "\n"
               "# TYPE hookring_retries_scheduled_total counter\n"
               "hookring_retries_scheduled_total %" PRIu64 "\n"
               "# TYPE hookring_retries_pending gauge\n"
               "hookring_retries_pending %zu\n"
               "# TYPE hookring_attempts_in_flight gauge\n"
               "hookring_attempts_in_flight %u\n"
               "# TYPE hookring_journal_bytes_total counter\n"
               "hookring_journal_bytes_total %" PRIu64 "\n"
               "# TYPE hookring_journal_records_total counter\n"
               "hookring_journal_records_total %" PRIu64 "\n"
               "# TYPE hookring_journal_batches_total counter\n"
               "hookring_journal_batches_total %" PRIu64 "\n"
               "# TYPE hookring_journal_fsync_seconds gauge\n"
               "hookring_journal_fsync_seconds{stat=\"last\"} %.6f\n"
               "hookring_journal_fsync_seconds{stat=\"max\"} %.6f\n"
               "# TYPE hookring_journal_errors_total counter\n"
               "hookring_journal_errors_total %" PRIu64 "\n"
               "# TYPE hookring_api_connections gauge\n"
               "hookring_api_connections %u\n"
               "# TYPE hookring_api_connections_evicted_total counter\n"
               "hookring_api_connections_evicted_total %" PRIu64 "\n"
               "# TYPE hookring_api_connections_refused_total counter\n"
               "hookring_api_connections_refused_total %" PRIu64 "\n"
               "# TYPE hookring_journal_failed gauge\n"
               "hookring_journal_failed %d\n"
               "# TYPE hookring_journal_full gauge\n"
               "hookring_journal_full %d\n"
               "# TYPE hookring_journal_full_retries_total counter\n"
               "hookring_journal_full_retries_total %" PRIu64 "\n"
               "# TYPE hookring_webhooks gauge\n"
               "hookring_webhooks{status=\"active\"} %zu\n"
               "hookring_webhooks{status=\"disabled\"} %zu\n"
               "hookring_webhooks{status=\"deleted\"} %zu\n"
               "hookring_webhooks{status=\"failing\"} %zu\n"
               "# TYPE hookring_webhooks_freed_total counter\n"
               "hookring_webhooks_freed_total %" PRIu64 "\n",
               s->m.ingested, s->m.duplicates, s->m.delivered, s->m.failed, s->m.attempts,
               s->m.retries, count_waiting(s), s->inflight, js.bytes_written, js.records,
               js.batches, (double)js.last_fsync_us / 1e6, (double)js.max_fsync_us / 1e6,
               s->m.journal_errors, s->api.open, s->api.stat_evicted, s->api.stat_refused,
               journal_failed(&s->j) ? 1 : 0, js.stuck ? 1 : 0, js.stuck_retries, by[WH_ACTIVE],
               by[WH_DISABLED], by[WH_DELETED], by[WH_FAILING], s->m.webhooks_freed);
    serve_metrics_workers(s, &b);
    metrics_keep(s, &b, &js);
    apisrv_reply(c, 200, "text/plain; version=0.0.4", NULL, b.p, b.len);
    buf_free(&b);
}

/* ---- routing ----------------------------------------------------------------------------------
 */

static bool path_take(struct slice *rest, const char *prefix)
{
    size_t n = strlen(prefix);
    if (rest->len < n || memcmp(rest->p, prefix, n) != 0) {
        return false;
    }
    rest->p += n;
    rest->len -= n;
    return true;
}

static void not_allowed(struct apiconn *c, const char *allow)
{
    char h[96];
    snprintf(h, sizeof(h), "Allow: %s\r\n", allow);
    SERVE_REPLY_LIT(c, 405, h, "{\"error\":\"method not allowed\"}\n");
}

void serve_api_ingest(struct serve *s, struct apiconn *c, const struct httpreq *req)
{
    int64_t now = serve_now_ms();
    if (slice_eq_cstr(req->path, "/v1/events/batch")) {
        serve_ingest_batch(s, c, req->body.p, req->body.len, now);
        return;
    }
    static struct event ev;
    char err[EVENT_ERR_MAX];
    if (event_parse(&ev, req->body.p, req->body.len, now, err, sizeof(err))) {
        serve_api_error(c, 400, err);
        return;
    }
    serve_ingest(s, c, &ev, now);
    event_clear(&ev);
}

void serve_api_handle(void *arg, struct apiconn *c, const struct httpreq *req)
{
    struct serve *s = arg;
    struct slice m = req->method;
    struct slice p = req->path;
    bool get = slice_eq_cstr(m, "GET"), post = slice_eq_cstr(m, "POST");
    if (slice_eq_cstr(p, "/v1/health")) {
        get ? health(s, c) : not_allowed(c, "GET");
        return;
    }
    if (!authorized(s, req)) {
        SERVE_REPLY_LIT(c, 401, "WWW-Authenticate: Bearer\r\n",
                        "{\"error\":\"missing or wrong API key (Authorization: Bearer KEY)\"}\n");
        return;
    }
    if (s->stopping) {
        SERVE_REPLY_LIT(c, 503, "Retry-After: 5\r\n", SERVE_SHUTTING_DOWN);
        return;
    }
    if (slice_eq_cstr(p, "/metrics")) {
        get ? metrics(s, c) : not_allowed(c, "GET");
        return;
    }
    if (slice_eq_cstr(p, "/v1/events") || slice_eq_cstr(p, "/v1/events/batch")) {
        if (!post) {
            not_allowed(c, "POST");
        } else if (!serve_pace(s, c, req)) {
            serve_api_ingest(s, c, req);
        }
        return;
    }
    if (slice_eq_cstr(p, "/v1/webhooks")) {
        if (post) {
            webhook_create(s, c, req);
        } else if (get) {
            webhook_list(s, c, req);
        } else {
            not_allowed(c, "GET, POST");
        }
        return;
    }
    struct slice rest = p;
    if (path_take(&rest, "/v1/deliveries/")) {
        struct delivery *d = serve_delivery_find(s, rest);
        if (!get) {
            not_allowed(c, "GET");
        } else if (!d) {
            serve_api_error(c, 404, "no such delivery");
        } else {
            struct buf b;
            buf_init(&b, 64u << 20);
            delivery_json(&b, d, true);
            buf_putc(&b, '\n');
            reply_buf(c, 200, &b);
            buf_free(&b);
        }
        return;
    }
    if (path_take(&rest, "/v1/webhooks/")) {
        const uint8_t *slash = memchr(rest.p, '/', rest.len);
        struct slice id = slice_of(rest.p, slash ? (size_t)(slash - rest.p) : rest.len);
        struct slice sub = slash ? slice_of(slash, rest.len - id.len) : slice_of("", 0);
        struct webhook *wh = serve_webhook_find(s, id);
        if (!wh) {
            serve_api_error(c, 404, "no such webhook");
            return;
        }
        if (sub.len == 0) {
            if (get) {
                struct buf b;
                buf_init(&b, 1 << 20);
                webhook_json(&b, wh, false);
                buf_putc(&b, '\n');
                reply_buf(c, 200, &b);
                buf_free(&b);
            } else if (slice_eq_cstr(m, "PATCH")) {
                webhook_patch(s, c, req, wh);
            } else if (slice_eq_cstr(m, "DELETE")) {
                wh->status = WH_DELETED;
                serve_match_dirty(s); /* no event looks at it any more */
                commit_webhook(s, c, wh, 200, false);
                serve_webhook_end_pending(s, wh, "webhook_deleted");
                serve_webhook_retire(s, wh);
            } else {
                not_allowed(c, "GET, PATCH, DELETE");
            }
            return;
        }
        if (slice_eq_cstr(sub, "/rotate-secret")) {
            post ? webhook_rotate(s, c, req, wh) : not_allowed(c, "POST");
            return;
        }
        if (slice_eq_cstr(sub, "/deliveries")) {
            get ? delivery_list(s, c, req, wh) : not_allowed(c, "GET");
            return;
        }
        if (slice_eq_cstr(sub, "/recover")) {
            post ? webhook_recover(s, c, req, wh) : not_allowed(c, "POST");
            return;
        }
        struct slice dsub = sub;
        if (path_take(&dsub, "/deliveries/") && dsub.len > 6 &&
            slice_eq_cstr(slice_of(dsub.p + dsub.len - 6, 6), "/retry")) {
            struct delivery *d = serve_delivery_find(s, slice_of(dsub.p, dsub.len - 6));
            if (!post) {
                not_allowed(c, "POST");
            } else if (!d || d->wh != wh) {
                serve_api_error(c, 404, "no such delivery of this webhook");
            } else {
                delivery_retry(s, c, d);
            }
            return;
        }
    }
    serve_api_error(c, 404, "no such path");
}

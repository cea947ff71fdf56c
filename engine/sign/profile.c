/* profile.c: the profile table, signer set-up, batch signing, and the helpers every profile
 * file shares. */
#include "profile_impl.h"

#include <errno.h>
#include <openssl/digest.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const uint32_t standard_retry_s[9] = {5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400};

const struct profile *const profiles[PROFILE_COUNT] = {
    [PROFILE_HUMANCONNECTION] = &profile_humanconnection,
    [PROFILE_HUMIRIS] = &profile_humiris,
    [PROFILE_HUMCLI] = &profile_humcli,
    [PROFILE_HUMANOS] = &profile_humanos,
    [PROFILE_AKSITA] = &profile_aksita,
    [PROFILE_STANDARD] = &profile_standard,
    [PROFILE_SVIX] = &profile_svix,
    [PROFILE_STRIPE] = &profile_stripe,
    [PROFILE_GITHUB] = &profile_github,
};

const struct profile *profile_find(const char *name)
{
    for (size_t i = 0; i < PROFILE_COUNT; i++) {
        if (name && strcmp(profiles[i]->name, name) == 0) {
            return profiles[i];
        }
    }
    return NULL;
}

static int init_fail(struct signer *s, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int init_fail(struct signer *s, char *err, size_t errlen, const char *fmt, ...)
{
    signer_wipe(s);
    if (errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

int signer_init(struct signer *s, const struct profile *p, const struct slice *secrets,
                size_t nsecrets, struct slice enc_secret, struct slice enc_salt, char *err,
                size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->profile = p;
    if (nsecrets > SIGN_MAX_KEYS) {
        return init_fail(s, err, errlen, "secret: at most %d secrets at once", SIGN_MAX_KEYS);
    }
    if (nsecrets == 0 && !p->secret_optional) {
        return init_fail(s, err, errlen, "secret: profile %s needs a signing secret", p->name);
    }
    for (size_t i = 0; i < nsecrets; i++) {
        struct slice sec = secrets[i];
        if (sec.len == 0) {
            return init_fail(s, err, errlen, "secret: must not be empty");
        }
        if (p->key_format == KEY_RAW) {
            hmac_key_init(&s->keys[i], sec.p, sec.len);
            continue;
        }
        if (sec.len > 6 && memcmp(sec.p, "whsec_", 6) == 0) {
            sec.p += 6;
            sec.len -= 6;
        }
        uint8_t key[64];
        size_t klen;
        int rc = b64_decode(key, sizeof(key), &klen, sec);
        if (rc || klen < 24) {
            OPENSSL_cleanse(key, sizeof(key));
            return init_fail(s, err, errlen,
                             "secret: profile %s wants whsec_ followed by the base64 of 24-64 "
                             "random bytes",
                             p->name);
        }
        hmac_key_init(&s->keys[i], key, klen);
        OPENSSL_cleanse(key, sizeof(key));
    }
    s->nkeys = nsecrets;
    if (p->needs_enc) {
        if (enc_secret.len == 0 || enc_salt.len == 0) {
            return init_fail(s, err, errlen,
                             "enc-secret: profile %s needs an encryption secret and salt", p->name);
        }
        uint8_t pw[512];
        size_t pwlen;
        if (b64_decode(pw, sizeof(pw), &pwlen, enc_secret) || pwlen == 0) {
            return init_fail(s, err, errlen, "enc-secret: must be non-empty standard base64");
        }
        /* Derived once per endpoint: 10000 PBKDF2 iterations per message would cost ~1 ms. */
        int ok = PKCS5_PBKDF2_HMAC((const char *)pw, pwlen, enc_salt.p, enc_salt.len, 10000,
                                   EVP_sha256(), sizeof(s->enc_key), s->enc_key);
        OPENSSL_cleanse(pw, sizeof(pw));
        if (!ok) {
            return init_fail(s, err, errlen, "enc-secret: key derivation failed");
        }
        s->has_enc = true;
        strcpy(s->api_version, "v1");
    }
    return 0;
}

void signer_wipe(struct signer *s)
{
    OPENSSL_cleanse(s->keys, sizeof(s->keys));
    OPENSSL_cleanse(s->enc_key, sizeof(s->enc_key));
    s->nkeys = 0;
    s->has_enc = false;
}

void sign_batch(struct sign_job *jobs, size_t n)
{
    /* One hmac_batch call per chunk: the batch signer interleaves independent streams, so the
     * more jobs it sees at once, the better it hides the SHA unit's latency. */
    struct hmac_job hj[64];
    size_t nj = 0;
    for (size_t i = 0; i < n; i++) {
        struct sign_job *job = &jobs[i];
        job->signer->profile->prepare(job);
        size_t nk = sign_nkeys(job->signer);
        for (size_t k = 0; k < nk; k++) {
            if (nj == ARRAY_SIZE(hj)) {
                hmac_batch(hj, nj);
                nj = 0;
            }
            hj[nj++] =
                (struct hmac_job){&job->signer->keys[k], job->pieces, job->npieces, job->mac[k]};
        }
    }
    if (nj) {
        hmac_batch(hj, nj);
    }
}

int sign_request(const struct signer *s, const struct event *ev, struct slice id, int64_t now_ms,
                 struct buf *head, struct buf *body, char *err, size_t errlen)
{
    int rc = s->profile->build_body(s, ev, body, err, errlen);
    if (rc) {
        return rc;
    }
    struct sign_job job = {.signer = s, .event = ev, .body = buf_slice(body), .now_ms = now_ms};
    char idbuf[SIGN_ID_MAX + 1];
    if (id.len) {
        job.id = id;
    } else if (s->profile->message_id) {
        job.id = slice_of(idbuf, s->profile->message_id(ev, idbuf));
    } else {
        job.id = slice_of(ev->id, ev->id_len);
    }
    sign_batch(&job, 1);
    rc = s->profile->write_headers(&job, head);
    if (!rc) {
        rc = buf_puts(head, "Content-Length: ") | buf_put_u64(head, body->len) |
             buf_put(head, "\r\n", 2);
    }
    if (rc && errlen) {
        snprintf(err, errlen, "out of memory");
    }
    return rc;
}

enum verify_status verify_request(const struct signer *s, const struct header *h, size_t nh,
                                  struct slice body, const struct verify_opts *o,
                                  struct verify_result *r)
{
    r->status = VERIFY_OK;
    r->reason[0] = '\0';
    r->id_len = 0;
    r->id[0] = '\0';
    r->plain.len = 0;
    r->status = s->profile->verify(s, h, nh, body, o, r);
    return r->status;
}

const char *verify_status_name(enum verify_status st)
{
    switch (st) {
    case VERIFY_OK:
        return "ok";
    case VERIFY_MISSING_HEADER:
        return "missing_header";
    case VERIFY_MALFORMED_HEADER:
        return "malformed_header";
    case VERIFY_BAD_ENCODING:
        return "bad_encoding";
    case VERIFY_STALE_TIMESTAMP:
        return "stale_timestamp";
    case VERIFY_NO_MATCH:
        return "no_matching_signature";
    case VERIFY_BAD_BODY:
        return "bad_body";
    }
    return "unknown";
}

const struct slice *header_find(const struct header *h, size_t nh, const char *name)
{
    struct slice n = slice_cstr(name);
    for (size_t i = 0; i < nh; i++) {
        if (slice_eq_nocase(h[i].name, n)) {
            return &h[i].value;
        }
    }
    return NULL;
}

size_t idem_event_id(const struct event *ev, char *out)
{
    memcpy(out, ev->id, ev->id_len + 1);
    return ev->id_len;
}

/* ---- body builders ------------------------------------------------------------------------ */

/* put_key writes [,]"key": */
static int put_key(struct buf *b, const char *key, bool comma)
{
    return buf_put(b, comma ? ",\"" : "\"", comma ? 2 : 1) | buf_puts(b, key) |
           buf_put(b, "\":", 2);
}

int put_member_str(struct buf *b, const char *key, struct slice value, bool comma)
{
    int rc = put_key(b, key, comma);
    return rc ? rc : json_put_string(b, value);
}

int put_member_raw(struct buf *b, const char *key, struct slice value, bool comma)
{
    int rc = put_key(b, key, comma);
    return rc ? rc : buf_put_slice(b, value);
}

int event_envelope(const struct event *ev, struct buf *out, bool with_agent)
{
    int rc = buf_putc(out, '{');
    rc = rc ? rc : put_member_str(out, "id", slice_of(ev->id, ev->id_len), false);
    rc = rc ? rc : put_member_str(out, "type", slice_of(ev->type, ev->type_len), true);
    rc = rc ? rc
            : put_member_str(out, "created_at", slice_of(ev->created_at, ev->created_at_len), true);
    if (with_agent && !rc) {
        rc = ev->has_agent ? put_member_str(out, "agent", slice_of(ev->agent, ev->agent_len), true)
                           : buf_puts(out, ",\"agent\":null");
    }
    rc = rc ? rc : put_member_raw(out, "data", ev->data, true);
    return rc ? rc : buf_putc(out, '}');
}

/* ---- prepare helpers ---------------------------------------------------------------------- */

static const uint8_t dot = '.';

void prep_body(struct sign_job *job)
{
    job->ts_len = 0;
    job->pieces[0] = job->body;
    job->npieces = 1;
}

void prep_ts_body(struct sign_job *job, bool millis)
{
    job->ts_len = fmt_i64(job->ts, millis ? job->now_ms : job->now_ms / 1000);
    job->pieces[0] = slice_of(job->ts, job->ts_len);
    job->pieces[1] = slice_of(&dot, 1);
    job->pieces[2] = job->body;
    job->npieces = 3;
}

void prep_id_ts_body(struct sign_job *job)
{
    job->ts_len = fmt_i64(job->ts, job->now_ms / 1000);
    job->pieces[0] = job->id;
    job->pieces[1] = slice_of(&dot, 1);
    job->pieces[2] = slice_of(job->ts, job->ts_len);
    job->pieces[3] = slice_of(&dot, 1);
    job->pieces[4] = job->body;
    job->npieces = 5;
}

/* ---- header writers ----------------------------------------------------------------------- */

int put_header(struct buf *b, const char *name, struct slice value)
{
    int rc = buf_puts(b, name);
    rc = rc ? rc : buf_put(b, ": ", 2);
    rc = rc ? rc : buf_put_slice(b, value);
    return rc ? rc : buf_put(b, "\r\n", 2);
}

int put_header_hex(struct buf *b, const char *name, const char *prefix, const uint8_t *mac)
{
    char hex[2 * HMAC_SHA256_LEN];
    hex_encode(hex, mac, HMAC_SHA256_LEN);
    return buf_printf(b, "%s: %s%.*s\r\n", name, prefix, (int)sizeof(hex), hex);
}

int put_content_type(struct buf *b)
{
    return buf_puts(b, "Content-Type: application/json\r\n");
}

/* ---- verification helpers ----------------------------------------------------------------- */

enum verify_status vfail(struct verify_result *r, enum verify_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    r->status = st;
    return st;
}

const struct slice *need_header(const struct header *h, size_t nh, const char *name,
                                struct verify_result *r)
{
    const struct slice *v = header_find(h, nh, name);
    if (!v) {
        vfail(r, VERIFY_MISSING_HEADER, "missing header %s", name);
    }
    return v;
}

bool parse_hex_sig(struct slice s, uint8_t out[HMAC_SHA256_LEN])
{
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] >= 'A' && s.p[i] <= 'F') {
            return false; /* every provider sends lowercase; a receiver comparing text would
                             refuse uppercase, so we do too */
        }
    }
    return hex_decode(out, HMAC_SHA256_LEN, s) == 0;
}

bool mac_matches(const struct signer *s, const struct slice *pieces, size_t n, const uint8_t *sig)
{
    bool ok = false;
    for (size_t k = 0; k < s->nkeys; k++) {
        uint8_t mac[HMAC_SHA256_LEN];
        hmac_sha256(&s->keys[k], pieces, n, mac);
        ok |= ct_equal(mac, sig, HMAC_SHA256_LEN);
    }
    return ok;
}

enum verify_status check_ts(struct slice ts, bool millis, const struct verify_opts *o,
                            struct verify_result *r, const char *header)
{
    if (ts.len == 0 || ts.len > 16) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "%s: timestamp must be 1-16 digits", header);
    }
    int64_t t = 0;
    for (size_t i = 0; i < ts.len; i++) {
        if (ts.p[i] < '0' || ts.p[i] > '9') {
            return vfail(r, VERIFY_MALFORMED_HEADER, "%s: timestamp must be decimal digits",
                         header);
        }
        t = t * 10 + (ts.p[i] - '0');
    }
    int64_t now = millis ? o->now_ms : o->now_ms / 1000;
    int64_t tol = millis ? o->tolerance_s * 1000 : o->tolerance_s;
    if (t > now + tol || t < now - tol) {
        return vfail(r, VERIFY_STALE_TIMESTAMP, "%s: timestamp %lld is more than %llds from now",
                     header, (long long)t, (long long)o->tolerance_s);
    }
    return VERIFY_OK;
}

void set_id(struct verify_result *r, struct slice s)
{
    size_t n = s.len > SIGN_ID_MAX ? SIGN_ID_MAX : s.len;
    memcpy(r->id, s.p, n);
    r->id[n] = '\0';
    r->id_len = n;
}

void id_from_json(struct slice body, const char *key, struct verify_result *r)
{
    struct json_tok toks[256];
    size_t n, off;
    /* Only the top level matters: a body with more tokens than this simply yields no id. */
    if (json_parse(toks, ARRAY_SIZE(toks), body.p, body.len, &n, &off) != JSON_OK) {
        return;
    }
    int v = json_obj_get(toks, 0, body.p, key);
    if (v < 0) {
        return;
    }
    if (toks[v].type == JSON_STRING) {
        size_t len;
        if (json_unescape(&toks[v], body.p, r->id, sizeof(r->id), &len) == 0 &&
            len < sizeof(r->id)) {
            r->id_len = len;
        } else {
            r->id_len = 0;
            r->id[0] = '\0';
        }
    } else if (toks[v].type == JSON_NUMBER) {
        set_id(r, json_tok_slice(&toks[v], body.p));
    }
}

enum verify_status plain_body(struct verify_result *r, struct slice body)
{
    if (buf_put_slice(&r->plain, body)) {
        return vfail(r, VERIFY_BAD_BODY, "body: out of memory");
    }
    return VERIFY_OK;
}

enum verify_status verify_simple_hex(const struct signer *s, const struct header *h, size_t nh,
                                     struct slice body, struct verify_result *r, const char *name,
                                     const char *prefix)
{
    const struct slice *v = need_header(h, nh, name, r);
    if (!v) {
        return r->status;
    }
    size_t pl = strlen(prefix);
    if (v->len < pl || memcmp(v->p, prefix, pl) != 0) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "%s: must start with '%s'", name, prefix);
    }
    uint8_t sig[HMAC_SHA256_LEN];
    struct slice hex = {v->p + pl, v->len - pl};
    if (hex.len != 2 * HMAC_SHA256_LEN) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "%s: signature must be 64 hex digits, got %zu",
                     name, hex.len);
    }
    if (!parse_hex_sig(hex, sig)) {
        return vfail(r, VERIFY_BAD_ENCODING, "%s: signature is not lowercase hex", name);
    }
    if (!mac_matches(s, &body, 1, sig)) {
        return vfail(r, VERIFY_NO_MATCH, "%s: no matching signature", name);
    }
    return plain_body(r, body);
}

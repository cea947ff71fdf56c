/* humanos.c: profile 4 (spec/providers/003_16d9acd9ea58d15e.txt).
 * Plaintext {"eventType":<type>, <members of data>, "api_version":<pinned>} is encrypted with
 * AES-256-GCM under a PBKDF2 key derived once per endpoint (signer_init), a fresh random IV per
 * attempt; body {"iv","data","tag"} in base64; x-signature: <hex HMAC(secret, ms.body)>;
 * x-timestamp: <unix ms>. */
#include "profile_impl.h"

#include <errno.h>
#include <openssl/aead.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>

#define IV_LEN 12
#define TAG_LEN 16
#define HUMANOS_MAX_PLAIN (1u << 20)

/* check_data makes sure data is an object with the members the document marks required, and
 * none that the envelope itself sets. */
static int check_data(const struct event *ev, char *err, size_t errlen)
{
    size_t max = ev->data.len / 2 + 2, n, off;
    struct json_tok *t = malloc(max * sizeof(*t));
    if (!t) {
        return -ENOMEM;
    }
    int rc = -EINVAL;
    const uint8_t *in = ev->data.p;
    if (json_parse(t, max, in, ev->data.len, &n, &off) != JSON_OK || t[0].type != JSON_OBJECT) {
        snprintf(err, errlen, "field 'data': profile humanos needs an object");
        goto out;
    }
    static const char *const need_str[] = {"requestId", "issuerDid", "decisionDate"};
    for (size_t i = 0; i < ARRAY_SIZE(need_str); i++) {
        int v = json_obj_get(t, 0, in, need_str[i]);
        if (v < 0 || t[v].type != JSON_STRING) {
            snprintf(err, errlen, "field 'data.%s': required string for profile humanos",
                     need_str[i]);
            goto out;
        }
    }
    int u = json_obj_get(t, 0, in, "user");
    if (u < 0 || t[u].type != JSON_OBJECT) {
        snprintf(err, errlen, "field 'data.user': required object for profile humanos");
        goto out;
    }
    static const char *const need_user[] = {"contact", "did"};
    for (size_t i = 0; i < ARRAY_SIZE(need_user); i++) {
        int v = json_obj_get(t, u, in, need_user[i]);
        if (v < 0 || t[v].type != JSON_STRING) {
            snprintf(err, errlen, "field 'data.user.%s': required string for profile humanos",
                     need_user[i]);
            goto out;
        }
    }
    if (json_obj_get(t, 0, in, "eventType") >= 0 || json_obj_get(t, 0, in, "api_version") >= 0) {
        snprintf(err, errlen,
                 "field 'data': must not contain eventType or api_version (the "
                 "envelope sets them)");
        goto out;
    }
    rc = 0;
out:
    free(t);
    return rc;
}

/* plaintext appends {"eventType":..., <data members>, "api_version":...} to out. */
static int plaintext(const struct signer *s, const struct event *ev, struct buf *out)
{
    /* data is a validated object: its members are the bytes between the outer braces. */
    struct slice inner = {ev->data.p + 1, ev->data.len - 2};
    while (inner.len &&
           (inner.p[0] == ' ' || inner.p[0] == '\n' || inner.p[0] == '\t' || inner.p[0] == '\r')) {
        inner.p++;
        inner.len--;
    }
    int rc = buf_puts(out, "{");
    rc = rc ? rc : put_member_str(out, "eventType", slice_of(ev->type, ev->type_len), false);
    if (!rc && inner.len) {
        rc = buf_putc(out, ',');
        rc = rc ? rc : buf_put_slice(out, inner);
    }
    rc = rc ? rc : put_member_str(out, "api_version", slice_cstr(s->api_version), true);
    return rc ? rc : buf_putc(out, '}');
}

static int build_body(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                      size_t errlen)
{
    int rc = check_data(ev, err, errlen);
    if (rc) {
        return rc;
    }
    struct buf pt;
    buf_init(&pt, HUMANOS_MAX_PLAIN);
    rc = plaintext(s, ev, &pt);
    if (rc) {
        snprintf(err, errlen, "field 'data': too large for profile humanos");
        goto out;
    }
    uint8_t iv[IV_LEN];
    RAND_bytes(iv, sizeof(iv));
    uint8_t *ct = malloc(pt.len + TAG_LEN);
    if (!ct) {
        rc = -ENOMEM;
        goto out;
    }
    EVP_AEAD_CTX ctx;
    size_t ct_len = 0;
    if (!EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_256_gcm(), s->enc_key, sizeof(s->enc_key), TAG_LEN,
                           NULL)) {
        rc = -EINVAL;
    } else {
        if (!EVP_AEAD_CTX_seal(&ctx, ct, &ct_len, pt.len + TAG_LEN, iv, sizeof(iv), pt.p, pt.len,
                               NULL, 0)) {
            rc = -EINVAL;
        }
        EVP_AEAD_CTX_cleanup(&ctx);
    }
    if (rc) {
        snprintf(err, errlen, "humanos: encryption failed");
        free(ct);
        goto out;
    }
    /* GCM output is ciphertext || tag. */
    size_t ctext = ct_len - TAG_LEN;
    rc = buf_reserve(out, b64_encoded_len(ctext) + 64);
    if (!rc) {
        char ivb[b64_encoded_len(IV_LEN)], tagb[b64_encoded_len(TAG_LEN)];
        b64_encode(ivb, iv, IV_LEN);
        b64_encode(tagb, ct + ctext, TAG_LEN);
        rc = buf_printf(out, "{\"iv\":\"%.*s\",\"data\":\"", (int)sizeof(ivb), ivb);
        if (!rc) {
            out->len += b64_encode((char *)out->p + out->len, ct, ctext);
            rc = buf_printf(out, "\",\"tag\":\"%.*s\"}", (int)sizeof(tagb), tagb);
        }
    }
    free(ct);
out:
    OPENSSL_cleanse(pt.p, pt.len);
    buf_free(&pt);
    return rc;
}

static void prepare(struct sign_job *job)
{
    prep_ts_body(job, true);
}

static int write_headers(const struct sign_job *job, struct buf *out)
{
    int rc = put_content_type(out);
    rc = rc ? rc : put_header_hex(out, "x-signature", "", job->mac[0]);
    return rc ? rc : put_header(out, "x-timestamp", slice_of(job->ts, job->ts_len));
}

/* b64_member decodes string member key of object toks[0] into a malloc'd buffer. */
static uint8_t *b64_member(const struct json_tok *t, const uint8_t *in, const char *key,
                           size_t *len)
{
    int v = json_obj_get(t, 0, in, key);
    if (v < 0 || t[v].type != JSON_STRING) {
        return NULL;
    }
    struct slice s = json_tok_slice(&t[v], in);
    uint8_t *out = malloc(s.len / 4 * 3 + 1);
    if (out && b64_decode(out, s.len / 4 * 3 + 1, len, s)) {
        free(out);
        return NULL;
    }
    return out;
}

static enum verify_status decrypt(const struct signer *s, struct slice body,
                                  struct verify_result *r)
{
    struct json_tok t[16];
    size_t n, off;
    if (json_parse(t, ARRAY_SIZE(t), body.p, body.len, &n, &off) != JSON_OK ||
        t[0].type != JSON_OBJECT || t[0].size != 3) {
        return vfail(r, VERIFY_BAD_BODY, "body: must be {\"iv\",\"data\",\"tag\"}");
    }
    size_t ivl = 0, ctl = 0, tagl = 0;
    uint8_t *iv = b64_member(t, body.p, "iv", &ivl);
    uint8_t *ct = b64_member(t, body.p, "data", &ctl);
    uint8_t *tag = b64_member(t, body.p, "tag", &tagl);
    enum verify_status st = VERIFY_OK;
    if (!iv || !ct || !tag || ivl != IV_LEN || tagl != TAG_LEN) {
        st = vfail(r, VERIFY_BAD_BODY,
                   "body: iv (12 bytes), data and tag (16 bytes) must be "
                   "base64");
        goto out;
    }
    if (buf_reserve(&r->plain, ctl + 1)) {
        st = vfail(r, VERIFY_BAD_BODY, "body: out of memory");
        goto out;
    }
    EVP_AEAD_CTX ctx;
    size_t pl = 0;
    if (!EVP_AEAD_CTX_init(&ctx, EVP_aead_aes_256_gcm(), s->enc_key, sizeof(s->enc_key), TAG_LEN,
                           NULL)) {
        st = vfail(r, VERIFY_BAD_BODY, "body: cipher set-up failed");
        goto out;
    }
    int ok = EVP_AEAD_CTX_open_gather(&ctx, r->plain.p, iv, ivl, ct, ctl, tag, tagl, NULL, 0);
    EVP_AEAD_CTX_cleanup(&ctx);
    pl = ctl;
    if (!ok) {
        st = vfail(r, VERIFY_BAD_BODY,
                   "body: decryption failed (wrong encryption secret or "
                   "salt, or tampered)");
        goto out;
    }
    r->plain.len = pl;
out:
    free(iv);
    free(ct);
    free(tag);
    return st;
}

static enum verify_status verify(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r)
{
    const struct slice *ts = need_header(h, nh, "x-timestamp", r);
    if (!ts) {
        return r->status;
    }
    const struct slice *sig = need_header(h, nh, "x-signature", r);
    if (!sig) {
        return r->status;
    }
    uint8_t mac[HMAC_SHA256_LEN];
    if (sig->len != 2 * HMAC_SHA256_LEN) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "x-signature: must be 64 hex digits, got %zu",
                     sig->len);
    }
    if (!parse_hex_sig(*sig, mac)) {
        return vfail(r, VERIFY_BAD_ENCODING, "x-signature: not lowercase hex");
    }
    if (check_ts(*ts, true, o, r, "x-timestamp")) {
        return r->status;
    }
    static const uint8_t dot = '.';
    struct slice pieces[3] = {*ts, {&dot, 1}, body};
    if (!mac_matches(s, pieces, 3, mac)) {
        return vfail(r, VERIFY_NO_MATCH, "x-signature: no matching signature");
    }
    if (!s->has_enc) {
        return vfail(r, VERIFY_BAD_BODY, "body: no encryption secret to decrypt with");
    }
    if (decrypt(s, body, r)) {
        return r->status;
    }
    /* The id: requestId + ":" + eventType (a request can have several decisions). */
    struct verify_result tmp;
    id_from_json(buf_slice(&r->plain), "requestId", r);
    memcpy(tmp.id, r->id, r->id_len + 1);
    tmp.id_len = r->id_len;
    id_from_json(buf_slice(&r->plain), "eventType", r);
    if (tmp.id_len && r->id_len && tmp.id_len + 1 + r->id_len <= SIGN_ID_MAX) {
        char both[SIGN_ID_MAX + 1];
        int k = snprintf(both, sizeof(both), "%s:%s", tmp.id, r->id);
        set_id(r, slice_of(both, (size_t)k));
    } else {
        set_id(r, slice_of(tmp.id, tmp.id_len));
    }
    return VERIFY_OK;
}

const struct profile profile_humanos = {
    .name = "humanos",
    .pid = PROFILE_HUMANOS,
    .key_format = KEY_RAW,
    .needs_enc = true,
    .timeout_ms = 10000,
    .retry_s = standard_retry_s,
    .nretry = ARRAY_SIZE(standard_retry_s),
    .build_body = build_body,
    .prepare = prepare,
    .write_headers = write_headers,
    .verify = verify,
    .idem_key = idem_event_id,
};

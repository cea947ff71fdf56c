/* humiris.c: profile 2 (spec/providers/001_3fafbeaef7d4375a.txt).
 * Body: the envelope with "agent"; X-Humiris-Signature: t=<unix>,v1=<hex HMAC(secret, t.body)>.
 * One signature only: the document's verifier splits the header into exactly two parts. */
#include "profile_impl.h"

static const uint32_t retry_s[] = {30, 300, 1800, 7200, 86400};

static int build_body(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                      size_t errlen)
{
    return event_envelope(ev, out, true);
}

static void prepare(struct sign_job *job)
{
    prep_ts_body(job, false);
}

static int write_headers(const struct sign_job *job, struct buf *out)
{
    char hex[2 * HMAC_SHA256_LEN];
    hex_encode(hex, job->mac[0], HMAC_SHA256_LEN);
    int rc = put_content_type(out);
    return rc ? rc
              : buf_printf(out, "X-Humiris-Signature: t=%.*s,v1=%.*s\r\n", (int)job->ts_len,
                           job->ts, (int)sizeof(hex), hex);
}

static enum verify_status verify(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r)
{
    static const char name[] = "X-Humiris-Signature";
    const struct slice *v = need_header(h, nh, name, r);
    if (!v) {
        return r->status;
    }
    /* Exactly "t=<digits>,v1=<64 hex>". */
    const uint8_t *comma = v->len > 2 ? memchr(v->p, ',', v->len) : NULL;
    if (v->len < 2 || memcmp(v->p, "t=", 2) != 0 || !comma) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "%s: must be t=<unix seconds>,v1=<hex>", name);
    }
    struct slice ts = {v->p + 2, (size_t)(comma - v->p) - 2};
    struct slice rest = {comma + 1, v->len - (size_t)(comma + 1 - v->p)};
    if (rest.len < 3 || memcmp(rest.p, "v1=", 3) != 0) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "%s: second part must be v1=<hex>", name);
    }
    struct slice hex = {rest.p + 3, rest.len - 3};
    uint8_t sig[HMAC_SHA256_LEN];
    if (hex.len != 2 * HMAC_SHA256_LEN) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "%s: v1 must be 64 hex digits, got %zu", name,
                     hex.len);
    }
    if (!parse_hex_sig(hex, sig)) {
        return vfail(r, VERIFY_BAD_ENCODING, "%s: v1 is not lowercase hex", name);
    }
    if (check_ts(ts, false, o, r, name)) {
        return r->status;
    }
    static const uint8_t dot = '.';
    struct slice pieces[3] = {ts, {&dot, 1}, body};
    if (!mac_matches(s, pieces, 3, sig)) {
        return vfail(r, VERIFY_NO_MATCH, "%s: no matching signature", name);
    }
    id_from_json(body, "id", r);
    return plain_body(r, body);
}

const struct profile profile_humiris = {
    .name = "humiris",
    .pid = PROFILE_HUMIRIS,
    .key_format = KEY_RAW,
    .timeout_ms = 10000,
    .retry_s = retry_s,
    .nretry = ARRAY_SIZE(retry_s),
    .build_body = build_body,
    .prepare = prepare,
    .write_headers = write_headers,
    .verify = verify,
    .idem_key = idem_event_id,
};

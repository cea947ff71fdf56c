/* standard.c: profile 6, Standard Webhooks v1 (svix.c reuses the scheme with its own header
 * names). webhook-signature: "v1,<base64 HMAC(key, id.ts.body)>", one per valid secret,
 * space-separated; the key is the base64 after "whsec_". */
#include "profile_impl.h"

#include <stdio.h>

static const struct whsig_names std_names = {"webhook-id", "webhook-timestamp",
                                             "webhook-signature"};

int whsig_build_body(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                     size_t errlen)
{
    int rc = buf_putc(out, '{');
    rc = rc ? rc : put_member_str(out, "type", slice_of(ev->type, ev->type_len), false);
    rc = rc ? rc
            : put_member_str(out, "timestamp", slice_of(ev->created_at, ev->created_at_len), true);
    rc = rc ? rc : put_member_raw(out, "data", ev->data, true);
    return rc ? rc : buf_putc(out, '}');
}

int whsig_write_headers(const struct sign_job *job, struct buf *out, const struct whsig_names *nm)
{
    int rc = put_content_type(out);
    rc = rc ? rc : put_header(out, nm->id, job->id);
    rc = rc ? rc : put_header(out, nm->ts, slice_of(job->ts, job->ts_len));
    rc = rc ? rc : buf_puts(out, nm->sig) | buf_put(out, ": ", 2);
    size_t nk = sign_nkeys(job->signer);
    for (size_t k = 0; k < nk && !rc; k++) {
        char b64[b64_encoded_len(HMAC_SHA256_LEN)];
        b64_encode(b64, job->mac[k], HMAC_SHA256_LEN);
        rc = buf_put(out, k ? " v1," : "v1,", k ? 4 : 3) | buf_put(out, b64, sizeof(b64));
    }
    return rc ? rc : buf_put(out, "\r\n", 2);
}

static int write_headers(const struct sign_job *job, struct buf *out)
{
    return whsig_write_headers(job, out, &std_names);
}

enum verify_status whsig_verify(const struct signer *s, const struct header *h, size_t nh,
                                struct slice body, const struct verify_opts *o,
                                struct verify_result *r, const struct whsig_names *nm)
{
    const struct slice *id = need_header(h, nh, nm->id, r);
    const struct slice *ts = id ? need_header(h, nh, nm->ts, r) : NULL;
    const struct slice *sig = ts ? need_header(h, nh, nm->sig, r) : NULL;
    if (!sig) {
        return r->status;
    }
    if (!event_valid_id(*id)) {
        return vfail(r, VERIFY_MALFORMED_HEADER,
                     "%s: must be 1-128 printable characters without '.' or spaces", nm->id);
    }
    if (check_ts(*ts, false, o, r, nm->ts)) {
        return r->status;
    }
    static const uint8_t dot = '.';
    struct slice pieces[5] = {*id, {&dot, 1}, *ts, {&dot, 1}, body};
    /* Space-separated "<version>,<base64>" entries; versions other than v1 are skipped, as
     * the specification asks, but every entry must be well formed. */
    size_t i = 0, nv1 = 0;
    bool match = false;
    if (sig->len == 0) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "%s: empty", nm->sig);
    }
    while (i < sig->len) {
        size_t j = i;
        while (j < sig->len && sig->p[j] != ' ') {
            j++;
        }
        struct slice ent = {sig->p + i, j - i};
        const uint8_t *comma = ent.len ? memchr(ent.p, ',', ent.len) : NULL;
        if (!comma || comma == ent.p || comma == ent.p + ent.len - 1) {
            return vfail(r, VERIFY_MALFORMED_HEADER, "%s: entry %zu is not <version>,<base64>",
                         nm->sig, nv1 + 1);
        }
        struct slice ver = {ent.p, (size_t)(comma - ent.p)};
        struct slice b64 = {comma + 1, ent.len - ver.len - 1};
        if (slice_eq_cstr(ver, "v1")) {
            uint8_t mac[64];
            size_t ml;
            if (b64_decode(mac, sizeof(mac), &ml, b64) || ml != HMAC_SHA256_LEN) {
                return vfail(r, VERIFY_BAD_ENCODING, "%s: v1 signature is not base64 of 32 bytes",
                             nm->sig);
            }
            match |= mac_matches(s, pieces, 5, mac);
            nv1++;
        }
        i = j;
        if (i < sig->len) {
            i++; /* one space */
            if (i == sig->len) {
                return vfail(r, VERIFY_MALFORMED_HEADER, "%s: trailing space", nm->sig);
            }
        }
    }
    if (!match) {
        return vfail(r, VERIFY_NO_MATCH, "%s: no matching signature among %zu v1 entries", nm->sig,
                     nv1);
    }
    set_id(r, *id);
    return plain_body(r, body);
}

static enum verify_status verify(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r)
{
    return whsig_verify(s, h, nh, body, o, r, &std_names);
}

const struct profile profile_standard = {
    .name = "standard",
    .pid = PROFILE_STANDARD,
    .key_format = KEY_WHSEC_B64,
    .multi_sig = true,
    .timeout_ms = 15000,
    .retry_s = standard_retry_s,
    .nretry = ARRAY_SIZE(standard_retry_s),
    .build_body = whsig_build_body,
    .prepare = prep_id_ts_body,
    .write_headers = write_headers,
    .verify = verify,
    .idem_key = idem_event_id,
};

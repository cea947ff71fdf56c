/* stripe.c: profile 8, Stripe's scheme. Stripe-Signature: t=<unix>,v1=<hex HMAC(secret,
 * t.body)>, one v1 per valid secret; the key is the secret string as given. Body: an "event"
 * object with data.object = the event's data. */
#include "profile_impl.h"

static int build_body(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                      size_t errlen)
{
    int rc = buf_putc(out, '{');
    rc = rc ? rc : put_member_str(out, "id", slice_of(ev->id, ev->id_len), false);
    rc = rc ? rc : buf_puts(out, ",\"object\":\"event\"");
    rc = rc ? rc : put_member_str(out, "type", slice_of(ev->type, ev->type_len), true);
    rc = rc ? rc : buf_printf(out, ",\"created\":%lld", (long long)(ev->created_ms / 1000));
    rc = rc ? rc : buf_puts(out, ",\"data\":{\"object\":");
    rc = rc ? rc : buf_put_slice(out, ev->data);
    return rc ? rc : buf_puts(out, "}}");
}

static void prepare(struct sign_job *job)
{
    prep_ts_body(job, false);
}

static int write_headers(const struct sign_job *job, struct buf *out)
{
    int rc = put_content_type(out);
    rc = rc ? rc : buf_printf(out, "Stripe-Signature: t=%.*s", (int)job->ts_len, job->ts);
    size_t nk = sign_nkeys(job->signer);
    for (size_t k = 0; k < nk && !rc; k++) {
        char hex[2 * HMAC_SHA256_LEN];
        hex_encode(hex, job->mac[k], HMAC_SHA256_LEN);
        rc = buf_printf(out, ",v1=%.*s", (int)sizeof(hex), hex);
    }
    return rc ? rc : buf_put(out, "\r\n", 2);
}

static enum verify_status verify(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r)
{
    static const char name[] = "Stripe-Signature";
    const struct slice *v = need_header(h, nh, name, r);
    if (!v) {
        return r->status;
    }
    /* Comma-separated key=value items: t exactly once, any number of v1 (64 hex), other
     * schemes (v0) skipped as Stripe's libraries do. */
    struct slice ts = {NULL, 0};
    uint8_t sigs[8][HMAC_SHA256_LEN];
    size_t nsig = 0, i = 0;
    while (i <= v->len) {
        size_t j = i;
        while (j < v->len && v->p[j] != ',') {
            j++;
        }
        struct slice item = {v->p + i, j - i};
        const uint8_t *eq = item.len ? memchr(item.p, '=', item.len) : NULL;
        if (!eq || eq == item.p || eq == item.p + item.len - 1) {
            return vfail(r, VERIFY_MALFORMED_HEADER, "%s: item '%.*s' is not key=value", name,
                         (int)(item.len > 32 ? 32 : item.len), (const char *)item.p);
        }
        struct slice key = {item.p, (size_t)(eq - item.p)};
        struct slice val = {eq + 1, item.len - key.len - 1};
        if (slice_eq_cstr(key, "t")) {
            if (ts.p) {
                return vfail(r, VERIFY_MALFORMED_HEADER, "%s: t appears twice", name);
            }
            ts = val;
        } else if (slice_eq_cstr(key, "v1")) {
            if (val.len != 2 * HMAC_SHA256_LEN) {
                return vfail(r, VERIFY_MALFORMED_HEADER, "%s: v1 must be 64 hex digits", name);
            }
            if (nsig == ARRAY_SIZE(sigs)) {
                return vfail(r, VERIFY_MALFORMED_HEADER, "%s: more than %zu v1 signatures", name,
                             ARRAY_SIZE(sigs));
            }
            if (!parse_hex_sig(val, sigs[nsig])) {
                return vfail(r, VERIFY_BAD_ENCODING, "%s: v1 is not lowercase hex", name);
            }
            nsig++;
        }
        i = j + 1;
    }
    if (!ts.p) {
        return vfail(r, VERIFY_MALFORMED_HEADER, "%s: no t= timestamp", name);
    }
    if (nsig == 0) {
        return vfail(r, VERIFY_NO_MATCH, "%s: no v1 signature", name);
    }
    if (check_ts(ts, false, o, r, name)) {
        return r->status;
    }
    static const uint8_t dot = '.';
    struct slice pieces[3] = {ts, {&dot, 1}, body};
    bool match = false;
    for (size_t k = 0; k < nsig; k++) {
        match |= mac_matches(s, pieces, 3, sigs[k]);
    }
    if (!match) {
        return vfail(r, VERIFY_NO_MATCH, "%s: no matching signature among %zu v1 entries", name,
                     nsig);
    }
    id_from_json(body, "id", r);
    return plain_body(r, body);
}

const struct profile profile_stripe = {
    .name = "stripe",
    .pid = PROFILE_STRIPE,
    .key_format = KEY_RAW,
    .multi_sig = true,
    .timeout_ms = 15000,
    .retry_s = standard_retry_s,
    .nretry = ARRAY_SIZE(standard_retry_s),
    .build_body = build_body,
    .prepare = prepare,
    .write_headers = write_headers,
    .verify = verify,
    .idem_key = idem_event_id,
};

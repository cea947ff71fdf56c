/* aksita.c: profile 5 (spec/providers/004_e32a31b99092e436.txt).
 * Body: data as-is; User-Agent: Aksita-Webhook/1.0; X-Webhook-Signature: <hex HMAC(secret,
 * body)> only when the endpoint has a secret. No automatic retries. */
#include "profile_impl.h"

static int build_body(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                      size_t errlen)
{
    return buf_put_slice(out, ev->data);
}

static int write_headers(const struct sign_job *job, struct buf *out)
{
    int rc = put_content_type(out);
    rc = rc ? rc : buf_puts(out, "User-Agent: Aksita-Webhook/1.0\r\n");
    if (!rc && job->signer->nkeys) {
        rc = put_header_hex(out, "X-Webhook-Signature", "", job->mac[0]);
    }
    return rc;
}

static enum verify_status verify(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r)
{
    /* Unsigned is valid only for an endpoint configured without a secret; with one, a missing
     * header is a refusal, never a pass. */
    if (s->nkeys) {
        if (verify_simple_hex(s, h, nh, body, r, "X-Webhook-Signature", "")) {
            return r->status;
        }
    } else if (plain_body(r, body)) {
        return r->status;
    }
    id_from_json(body, "message_id", r);
    return VERIFY_OK;
}

const struct profile profile_aksita = {
    .name = "aksita",
    .pid = PROFILE_AKSITA,
    .key_format = KEY_RAW,
    .secret_optional = true,
    .timeout_ms = 10000,
    .build_body = build_body,
    .prepare = prep_body,
    .write_headers = write_headers,
    .verify = verify,
    .idem_key = idem_event_id,
};

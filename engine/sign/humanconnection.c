/* humanconnection.c: profile 1 (spec/providers/000_9e8faea4628eae67.txt).
 * Body: the event envelope; X-HumanConnection-Signature: sha256=<hex HMAC(secret, body)>. */
#include "profile_impl.h"

static const uint32_t retry_s[] = {60, 300, 1800, 7200, 43200};

static int build_body(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                      size_t errlen)
{
    return event_envelope(ev, out, false);
}

static int write_headers(const struct sign_job *job, struct buf *out)
{
    int rc = put_content_type(out);
    return rc ? rc : put_header_hex(out, "X-HumanConnection-Signature", "sha256=", job->mac[0]);
}

static enum verify_status verify(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r)
{
    if (verify_simple_hex(s, h, nh, body, r, "X-HumanConnection-Signature", "sha256=")) {
        return r->status;
    }
    id_from_json(body, "id", r);
    return VERIFY_OK;
}

const struct profile profile_humanconnection = {
    .name = "humanconnection",
    .pid = PROFILE_HUMANCONNECTION,
    .key_format = KEY_RAW,
    .timeout_ms = 5000,
    .retry_s = retry_s,
    .nretry = ARRAY_SIZE(retry_s),
    .failing_after = 5,
    .build_body = build_body,
    .prepare = prep_body,
    .write_headers = write_headers,
    .verify = verify,
    .idem_key = idem_event_id,
};

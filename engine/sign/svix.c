/* svix.c: profile 7, Svix: the Standard Webhooks scheme (standard.c) with svix-id,
 * svix-timestamp and svix-signature headers. */
#include "profile_impl.h"

static const struct whsig_names svix_names = {"svix-id", "svix-timestamp", "svix-signature"};

static int write_headers(const struct sign_job *job, struct buf *out)
{
    return whsig_write_headers(job, out, &svix_names);
}

static enum verify_status verify(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r)
{
    return whsig_verify(s, h, nh, body, o, r, &svix_names);
}

const struct profile profile_svix = {
    .name = "svix",
    .pid = PROFILE_SVIX,
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

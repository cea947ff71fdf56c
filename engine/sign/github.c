/* github.c: profile 9, GitHub's scheme. Body: data; X-Hub-Signature-256: sha256=<hex
 * HMAC(secret, body)>; X-GitHub-Event: the type; X-GitHub-Delivery: a GUID that stays the
 * same on redelivery. No automatic retries. */
#include "profile_impl.h"

#include <openssl/sha.h>
#include <stdio.h>

static int build_body(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                      size_t errlen)
{
    return buf_put_slice(out, ev->data);
}

static int write_headers(const struct sign_job *job, struct buf *out)
{
    int rc = put_content_type(out);
    rc = rc ? rc : buf_puts(out, "User-Agent: GitHub-Hookshot/hookring\r\n");
    rc = rc ? rc
            : put_header(out, "X-GitHub-Event", slice_of(job->event->type, job->event->type_len));
    rc = rc ? rc : put_header(out, "X-GitHub-Delivery", job->id);
    return rc ? rc : put_header_hex(out, "X-Hub-Signature-256", "sha256=", job->mac[0]);
}

static enum verify_status verify(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r)
{
    if (verify_simple_hex(s, h, nh, body, r, "X-Hub-Signature-256", "sha256=")) {
        return r->status;
    }
    const struct slice *d = header_find(h, nh, "X-GitHub-Delivery");
    if (d) {
        set_id(r, *d);
    }
    return VERIFY_OK;
}

/* message_id derives a GUID from the event id (name-based, like a version 5 UUID but with
 * SHA-256), so every attempt of one event carries the same X-GitHub-Delivery. */
static size_t message_id(const struct event *ev, char *out)
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, "hookring-delivery:", 18);
    SHA256_Update(&c, ev->id, ev->id_len);
    SHA256_Final(h, &c);
    h[6] = (uint8_t)((h[6] & 0x0f) | 0x80); /* version 8: custom */
    h[8] = (uint8_t)((h[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char hex[32];
    hex_encode(hex, h, 16);
    return (size_t)snprintf(out, SIGN_ID_MAX + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8,
                            hex + 12, hex + 16, hex + 20);
}

const struct profile profile_github = {
    .name = "github",
    .pid = PROFILE_GITHUB,
    .key_format = KEY_RAW,
    .timeout_ms = 10000,
    .build_body = build_body,
    .prepare = prep_body,
    .write_headers = write_headers,
    .verify = verify,
    .idem_key = idem_event_id,
    .message_id = message_id,
};

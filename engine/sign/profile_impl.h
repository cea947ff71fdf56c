/* profile_impl.h: helpers shared by the profile files in engine/sign/ (not a public header). */
#ifndef HOOKRING_PROFILE_IMPL_H
#define HOOKRING_PROFILE_IMPL_H

#include "profile.h"

#include "../codec.h"
#include "../json.h"

/* The standard schedule (profile 6), reused by profiles whose document gives none. */
extern const uint32_t standard_retry_s[9];

/* sign_nkeys is how many keys sign each attempt: all of them where the header carries several
 * signatures, else the current one. */
static inline size_t sign_nkeys(const struct signer *s)
{
    return s->profile->multi_sig ? s->nkeys : (s->nkeys ? 1 : 0);
}

/* idem_event_id: the idempotency key is the event id (most profiles). */
size_t idem_event_id(const struct event *ev, char *out);

/* Body builders. */
int put_member_str(struct buf *b, const char *key, struct slice value, bool comma);
int put_member_raw(struct buf *b, const char *key, struct slice value, bool comma);
int event_envelope(const struct event *ev, struct buf *out, bool with_agent);

/* prepare helpers: signed bytes = body | ts "." body | id "." ts "." body. */
void prep_body(struct sign_job *job);
void prep_ts_body(struct sign_job *job, bool millis);
void prep_id_ts_body(struct sign_job *job);

/* Header writers. */
int put_header(struct buf *b, const char *name, struct slice value);
int put_header_hex(struct buf *b, const char *name, const char *prefix, const uint8_t *mac);
int put_content_type(struct buf *b);

/* Verification helpers. Each vfail() fills r->status and r->reason and returns the status. */
enum verify_status vfail(struct verify_result *r, enum verify_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* need_header finds name or fails with VERIFY_MISSING_HEADER. */
const struct slice *need_header(const struct header *h, size_t nh, const char *name,
                                struct verify_result *r);
/* parse_hex_sig decodes exactly 64 lowercase hex digits. */
bool parse_hex_sig(struct slice s, uint8_t out[HMAC_SHA256_LEN]);
/* mac_matches tells whether sig is the MAC of pieces under any of the signer's keys (constant
 * time per comparison). */
bool mac_matches(const struct signer *s, const struct slice *pieces, size_t n, const uint8_t *sig);
/* check_ts parses a decimal timestamp (seconds, or ms when millis) and checks the tolerance. */
enum verify_status check_ts(struct slice ts, bool millis, const struct verify_opts *o,
                            struct verify_result *r, const char *header);
/* verify_body_json checks that body is one JSON value and copies member key of a top-level
 * object (a string's content or a number's text) into r->id, when present. */
void id_from_json(struct slice body, const char *key, struct verify_result *r);
/* set_id copies s (truncated to SIGN_ID_MAX) into r->id. */
void set_id(struct verify_result *r, struct slice s);
/* plain_body puts the body in r->plain and returns VERIFY_OK (or VERIFY_BAD_BODY on ENOMEM). */
enum verify_status plain_body(struct verify_result *r, struct slice body);
/* verify_simple_hex is the whole verifier of a profile whose header is <prefix><hex> over the
 * body. */
enum verify_status verify_simple_hex(const struct signer *s, const struct header *h, size_t nh,
                                     struct slice body, struct verify_result *r, const char *name,
                                     const char *prefix);

/* The Standard Webhooks scheme (standard.c), shared with svix.c. */
struct whsig_names {
    const char *id, *ts, *sig;
};
int whsig_build_body(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                     size_t errlen);
int whsig_write_headers(const struct sign_job *job, struct buf *out, const struct whsig_names *nm);
enum verify_status whsig_verify(const struct signer *s, const struct header *h, size_t nh,
                                struct slice body, const struct verify_opts *o,
                                struct verify_result *r, const struct whsig_names *nm);

extern const struct profile profile_humanconnection, profile_humiris, profile_humcli,
    profile_humanos, profile_aksita, profile_standard, profile_svix, profile_stripe, profile_github;

#endif

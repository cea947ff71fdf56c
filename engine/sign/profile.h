/* profile.h: the nine delivery profiles (spec/PROFILES.md) behind one small table.
 *
 * A profile says how the body is built from an event, which headers are sent, which bytes are
 * signed and how, and how a receiver verifies it. Signing goes in three steps so that a worker
 * can sign many attempts together:
 *
 *   1. profile->build_body(signer, event, body)       once per (event, endpoint); per attempt for
 *                                                      humanos, whose IV is fresh every attempt
 *   2. sign_batch(jobs, n)                             prepares each job's timestamp and signed
 *                                                      pieces, then computes every MAC in one
 *                                                      batched HMAC call
 *   3. profile->write_headers(job, out)                appends "Name: value\r\n" lines
 *
 * sign_request() does all three for one attempt (the CLI and tests). */
#ifndef HOOKRING_PROFILE_H
#define HOOKRING_PROFILE_H

#include "../common.h"
#include "../event.h"
#include "hmac.h"

enum profile_id {
    PROFILE_HUMANCONNECTION,
    PROFILE_HUMIRIS,
    PROFILE_HUMCLI,
    PROFILE_HUMANOS,
    PROFILE_AKSITA,
    PROFILE_STANDARD,
    PROFILE_SVIX,
    PROFILE_STRIPE,
    PROFILE_GITHUB,
    PROFILE_COUNT
};

/* How a secret string becomes HMAC key bytes. */
enum key_format {
    KEY_RAW,       /* the secret's bytes as given */
    KEY_WHSEC_B64, /* optional "whsec_" prefix, then standard base64 of the key bytes */
};

#define SIGN_MAX_KEYS 4 /* current secret plus rotated ones still in their grace period */
#define SIGN_MAX_PIECES 5
#define SIGN_TS_MAX 32
#define SIGN_ID_MAX 160
#define SIGN_API_VERSION_MAX 24
#define VERIFY_TOLERANCE_S 300

struct header {
    struct slice name;
    struct slice value;
};

/* An endpoint's prepared signing state: key schedules computed once, humanos key derived once. */
struct signer {
    const struct profile *profile;
    struct hmac_key keys[SIGN_MAX_KEYS];
    size_t nkeys; /* 0 only for a profile whose secret is optional (aksita) */
    bool has_enc;
    uint8_t enc_key[32];
    char api_version[SIGN_API_VERSION_MAX + 1]; /* humanos: pinned at first delivery */
};

/* One attempt being signed. The caller fills signer, body, id and now_ms; sign_batch fills
 * the rest. */
struct sign_job {
    const struct signer *signer;
    const struct event *event; /* for headers that name the event (github's X-GitHub-Event) */
    struct slice body;         /* the exact bytes sent */
    struct slice id;           /* message id: webhook-id, svix-id, X-GitHub-Delivery */
    int64_t now_ms;            /* the attempt time */
    char ts[SIGN_TS_MAX];      /* the timestamp text as sent and signed */
    size_t ts_len;
    struct slice pieces[SIGN_MAX_PIECES]; /* signed bytes = their concatenation */
    size_t npieces;
    uint8_t mac[SIGN_MAX_KEYS][HMAC_SHA256_LEN];
};

enum verify_status {
    VERIFY_OK = 0,
    VERIFY_MISSING_HEADER,
    VERIFY_MALFORMED_HEADER,
    VERIFY_BAD_ENCODING,
    VERIFY_STALE_TIMESTAMP,
    VERIFY_NO_MATCH,
    VERIFY_BAD_BODY,
};

struct verify_opts {
    int64_t now_ms;
    int64_t tolerance_s; /* |now - timestamp| above this is stale; VERIFY_TOLERANCE_S default */
};

#define VERIFY_REASON_MAX 160

struct verify_result {
    enum verify_status status;
    char reason[VERIFY_REASON_MAX]; /* why, when status != VERIFY_OK */
    char id[SIGN_ID_MAX + 1];       /* the profile's idempotency / webhook id, when known */
    size_t id_len;
    struct buf plain; /* the event as delivered: the body, or humanos' decrypted plaintext */
};

struct profile {
    const char *name;
    enum profile_id pid;
    enum key_format key_format;
    bool multi_sig;       /* several signatures in one header during a rotation */
    bool secret_optional; /* no secret: sent unsigned (aksita) */
    bool needs_enc;       /* encryption secret and salt required (humanos) */
    bool https_only;      /* destinations must be https:// (humcli) */
    uint32_t timeout_ms;
    const uint32_t *retry_s; /* delays before each retry, seconds; NULL/0: no retries */
    size_t nretry;
    uint8_t failing_after; /* failed retries that mark the endpoint failing (0: never) */

    /* build_body appends the body for ev to out. Returns 0, -EINVAL (err says why: the event
     * does not fit this profile) or -ENOMEM. */
    int (*build_body)(const struct signer *s, const struct event *ev, struct buf *out, char *err,
                      size_t errlen);
    /* prepare fills job->ts and job->pieces from job->now_ms, id and body. */
    void (*prepare)(struct sign_job *job);
    /* write_headers appends the profile's header lines. Returns 0 or -ENOMEM. */
    int (*write_headers)(const struct sign_job *job, struct buf *out);
    /* verify checks a received request; on VERIFY_OK, r->plain and r->id are filled. */
    enum verify_status (*verify)(const struct signer *s, const struct header *h, size_t nh,
                                 struct slice body, const struct verify_opts *o,
                                 struct verify_result *r);
    /* idem_key writes the idempotency key of ev into out (SIGN_ID_MAX + 1 bytes); returns its
     * length or 0 when ev lacks what it needs. */
    size_t (*idem_key)(const struct event *ev, char *out);
    /* message_id writes the default message id of ev (SIGN_ID_MAX + 1 bytes) and returns its
     * length; NULL means the event id. */
    size_t (*message_id)(const struct event *ev, char *out);
};

extern const struct profile *const profiles[PROFILE_COUNT];

/* profile_find returns the profile named name, or NULL. */
const struct profile *profile_find(const char *name);

/* signer_init prepares s for p with nsecrets secrets (the first is current; the rest are
 * rotated ones still accepted and, where the profile allows, still signed with). enc_secret is
 * base64 and enc_salt raw bytes (humanos only). Returns 0, or -EINVAL with err filled. */
int signer_init(struct signer *s, const struct profile *p, const struct slice *secrets,
                size_t nsecrets, struct slice enc_secret, struct slice enc_salt, char *err,
                size_t errlen);

/* signer_wipe zeroes key material. */
void signer_wipe(struct signer *s);

/* sign_batch prepares and signs jobs[0..n) with one batched HMAC call. */
void sign_batch(struct sign_job *jobs, size_t n);

/* sign_request builds body and headers of one attempt of ev at now_ms (id: the message id, or
 * an empty slice for the profile's default). head gets "Name: value\r\n" lines. Returns 0,
 * -EINVAL with err filled, or -ENOMEM. */
int sign_request(const struct signer *s, const struct event *ev, struct slice id, int64_t now_ms,
                 struct buf *head, struct buf *body, char *err, size_t errlen);

/* verify_request checks a received request against s. r->plain must be initialised by the
 * caller (buf_init) and is freed by them. Returns r->status. */
enum verify_status verify_request(const struct signer *s, const struct header *h, size_t nh,
                                  struct slice body, const struct verify_opts *o,
                                  struct verify_result *r);

/* verify_status_name is a short stable name ("ok", "malformed_header", ...). */
const char *verify_status_name(enum verify_status st);

/* header_find returns the value of the first header named name (ASCII case-insensitive), or
 * NULL when absent. */
const struct slice *header_find(const struct header *h, size_t nh, const char *name);

#endif

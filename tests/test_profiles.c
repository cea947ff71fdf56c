/* test_profiles.c: the nine profiles: known answers, golden requests, sign -> verify round trips
 * and every refusal with its reason. */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/hmac.h>
#include <stdio.h>

#include "codec.h"
#include "support/util.h"

TestSuite(profiles);

#define NOW_S 1700000000
#define NOW_MS (NOW_S * 1000LL)

struct pcase {
    const char *name;
    const char *secret;
    const char *old_secret; /* a second valid secret for rotation tests */
    bool timestamped;
    const char *sig_header;
    const char *want_id; /* the id the verifier reports for tests/data/events/<name>.json */
};

static const struct pcase cases[PROFILE_COUNT] = {
    {"humanconnection", "whsec_your_signing_secret", NULL, false, "X-HumanConnection-Signature",
     "evt_5e4d3c2b1a0f9e8d"},
    {"humiris", "whsec_k9m2x4p7q1humiris", NULL, true, "X-Humiris-Signature",
     "evt_9f8e7d6c5b4a3921"},
    {"humcli", "whsec_my_secret_key_123", NULL, false, "X-Signature", "task_abc123:SUBMITTED"},
    {"humanos", "your-signature-secret", NULL, true, "x-signature",
     "68c42ec3e47c9a7f9241e0ba:credential"},
    {"aksita", "aksita-webhook-secret", NULL, false, "X-Webhook-Signature", "2125"},
    {"standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
     "whsec_c2Vjb25kLXNlY3JldC10d2VudHktZm91ci1i", true, "webhook-signature",
     "msg_p5jXN8AQM9LWM0D4loKWxJek"},
    {"svix", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kLXNlY3JldC10d2VudHktZm91ci1i",
     true, "svix-signature", "msg_p5jXN8AQM9LWM0D4loKWxJek"},
    {"stripe", "whsec_stripe_test_secret_4eC39HqLyjWDarjtT1", "whsec_old_stripe_secret", true,
     "Stripe-Signature", "evt_1NG8Du2eZvKYlo2CUI3kTL6s"},
    {"github", "It's a Secret to Everybody", NULL, false, "X-Hub-Signature-256",
     "7d85c3f0-fa9f-83f4-be0f-e74dcc8032c0"},
};

#define ENC_SECRET "eW91ci1lbmNyeXB0aW9uLXNlY3JldA=="
#define ENC_SALT "your-encryption-salt"

static void init_signer(struct signer *s, const struct pcase *c, const char *const *secrets,
                        size_t n)
{
    struct slice sl[SIGN_MAX_KEYS];
    for (size_t i = 0; i < n; i++) {
        sl[i] = slice_cstr(secrets[i]);
    }
    char err[160] = "";
    const struct profile *p = profile_find(c->name);
    cr_assert_not_null(p, "%s", c->name);
    cr_assert_eq(
        signer_init(s, p, sl, n, SLICE_LIT(ENC_SECRET), SLICE_LIT(ENC_SALT), err, sizeof(err)), 0,
        "%s: %s", c->name, err);
}

/* A signed request for the profile's sample event: "headers CRLF body" in req. */
struct signed_req {
    struct buf json, head, body, req;
    struct event ev;
    struct header h[16];
    size_t nh;
    struct slice b;
};

static void sign_sample(struct signed_req *r, const struct signer *s, const char *name,
                        int64_t now_ms)
{
    char path[128], err[160] = "";
    snprintf(path, sizeof(path), "tests/data/events/%s.json", name);
    util_read_file(path, &r->json);
    cr_assert_eq(event_parse(&r->ev, r->json.p, r->json.len, now_ms, err, sizeof(err)), 0, "%s",
                 err);
    buf_init(&r->head, 1 << 16);
    buf_init(&r->body, 1 << 20);
    buf_init(&r->req, 1 << 21);
    cr_assert_eq(
        sign_request(s, &r->ev, (struct slice){0}, now_ms, &r->head, &r->body, err, sizeof(err)), 0,
        "%s: %s", name, err);
    buf_put_slice(&r->req, buf_slice(&r->head));
    buf_puts(&r->req, "\r\n");
    buf_put_slice(&r->req, buf_slice(&r->body));
    r->nh = util_split_request(buf_slice(&r->req), r->h, 16, &r->b);
}

static void free_req(struct signed_req *r)
{
    buf_free(&r->json);
    buf_free(&r->head);
    buf_free(&r->body);
    buf_free(&r->req);
}

static enum verify_status check(const struct signer *s, const struct header *h, size_t nh,
                                struct slice body, int64_t now_ms, struct verify_result *vr)
{
    struct verify_opts o = {.now_ms = now_ms, .tolerance_s = VERIFY_TOLERANCE_S};
    buf_init(&vr->plain, 1 << 20);
    return verify_request(s, h, nh, body, &o, vr);
}

static struct header *find_hdr(struct signed_req *r, const char *name)
{
    for (size_t i = 0; i < r->nh; i++) {
        if (slice_eq_nocase(r->h[i].name, slice_cstr(name))) {
            return &r->h[i];
        }
    }
    cr_assert_fail("no header %s", name);
    return NULL;
}

/* ---- known answers (spec/PROFILES.md) ----------------------------------------------------- */

static void sign_body(const char *profile, const char *secret, const char *id, int64_t now_ms,
                      const char *body, struct buf *head)
{
    const struct pcase c = {.name = profile};
    const char *secrets[1] = {secret};
    struct signer s;
    init_signer(&s, &c, secrets, 1);
    struct event ev = {.type = "push", .type_len = 4};
    struct sign_job job = {.signer = &s,
                           .event = &ev,
                           .body = slice_cstr(body),
                           .id = slice_cstr(id),
                           .now_ms = now_ms};
    sign_batch(&job, 1);
    buf_init(head, 4096);
    cr_assert_eq(s.profile->write_headers(&job, head), 0);
    cr_assert_eq(buf_putc(head, '\0'), 0);
}

Test(profiles, known_answer_github_and_humanconnection)
{
    struct buf h;
    sign_body("github", "It's a Secret to Everybody", "d1", NOW_MS, "Hello, World!", &h);
    cr_expect(strstr((char *)h.p, "X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a"
                                  "37570b6d7586c22c46f4379c8b043e17\r\n"),
              "%s", h.p);
    buf_free(&h);
    sign_body("humanconnection", "It's a Secret to Everybody", "d1", NOW_MS, "Hello, World!", &h);
    cr_expect(strstr((char *)h.p, "X-HumanConnection-Signature: sha256=757107ea0eb2509fc211221cc"
                                  "e984b8a37570b6d7586c22c46f4379c8b043e17\r\n"),
              "%s", h.p);
    buf_free(&h);
}

Test(profiles, known_answer_standard_and_svix)
{
    struct buf h;
    sign_body("standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
              1614265330000LL, "{\"test\": 2432232314}", &h);
    cr_expect(strstr((char *)h.p, "webhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek\r\n"), "%s", h.p);
    cr_expect(strstr((char *)h.p, "webhook-timestamp: 1614265330\r\n"), "%s", h.p);
    cr_expect(strstr((char *)h.p,
                     "webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\r\n"),
              "%s", h.p);
    buf_free(&h);
    sign_body("svix", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
              1614265330000LL, "{\"test\": 2432232314}", &h);
    cr_expect(
        strstr((char *)h.p, "svix-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\r\n"),
        "%s", h.p);
    buf_free(&h);
}

Test(profiles, verify_known_answer_standard)
{
    const char *secrets[1] = {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"};
    struct signer s;
    init_signer(&s, &cases[PROFILE_STANDARD], secrets, 1);
    struct header h[3] = {
        {SLICE_LIT("Webhook-Id"), SLICE_LIT("msg_p5jXN8AQM9LWM0D4loKWxJek")},
        {SLICE_LIT("Webhook-Timestamp"), SLICE_LIT("1614265330")},
        {SLICE_LIT("Webhook-Signature"),
         SLICE_LIT("v1a,abc= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")},
    };
    struct verify_result r;
    cr_expect_eq(check(&s, h, 3, SLICE_LIT("{\"test\": 2432232314}"), 1614265330000LL + 299000, &r),
                 VERIFY_OK, "%s", r.reason);
    cr_expect_str_eq(r.id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
    buf_free(&r.plain);
    cr_expect_eq(check(&s, h, 3, SLICE_LIT("{\"test\": 2432232314}"), 1614265330000LL + 301000, &r),
                 VERIFY_STALE_TIMESTAMP);
    buf_free(&r.plain);
}

/* ---- golden requests ---------------------------------------------------------------------- */

Test(profiles, golden_request_per_profile)
{
    for (size_t i = 0; i < PROFILE_COUNT; i++) {
        if (i == PROFILE_HUMANOS) {
            continue; /* a fresh random IV every attempt: see humanos_plaintext_and_fresh_iv */
        }
        struct signer s;
        init_signer(&s, &cases[i], &cases[i].secret, 1);
        struct signed_req r;
        sign_sample(&r, &s, cases[i].name, NOW_MS);
        char path[128];
        snprintf(path, sizeof(path), "tests/golden/%s.req", cases[i].name);
        struct buf golden;
        util_read_file(path, &golden);
        cr_expect(slice_eq(buf_slice(&golden), buf_slice(&r.req)),
                  "%s: request differs from %s:\n%.*s", cases[i].name, path, (int)r.req.len,
                  (const char *)r.req.p);
        buf_free(&golden);
        free_req(&r);
    }
}

Test(profiles, golden_macs_equal_boringssl_hmac)
{
    /* The golden files' signatures, recomputed with BoringSSL's one-shot HMAC(). */
    struct buf g;
    util_read_file("tests/golden/humanconnection.req", &g);
    struct header h[8];
    struct slice body;
    size_t nh = util_split_request(buf_slice(&g), h, 8, &body);
    uint8_t mac[32];
    unsigned int ml;
    const char *key = cases[PROFILE_HUMANCONNECTION].secret;
    HMAC(EVP_sha256(), key, strlen(key), body.p, body.len, mac, &ml);
    char hex[72] = "sha256=";
    hex_encode(hex + 7, mac, 32);
    const struct slice *v = header_find(h, nh, "X-HumanConnection-Signature");
    cr_assert_not_null(v);
    cr_expect(slice_eq(*v, slice_of(hex, 71)), "%.*s", (int)v->len, (const char *)v->p);
    buf_free(&g);
}

Test(profiles, humanos_plaintext_and_fresh_iv)
{
    const struct pcase *c = &cases[PROFILE_HUMANOS];
    struct signer s;
    init_signer(&s, c, &c->secret, 1);
    struct signed_req a, b;
    sign_sample(&a, &s, c->name, NOW_MS);
    sign_sample(&b, &s, c->name, NOW_MS);
    cr_expect(!slice_eq(a.b, b.b), "two attempts must use different IVs");
    const char *want =
        "{\"eventType\":\"credential\",\"requestId\":\"68c42ec3e47c9a7f9241e0ba\",\"internalId\":"
        "\"req_internal_001\",\"issuerDid\":\"did:via:org-abc123\",\"user\":{\"contact\":"
        "\"+1234567890\",\"did\":\"did:via:user-xyz789\",\"internalId\":\"user_98765\"},"
        "\"decisionDate\":\"2024-01-15T18:30:00.000Z\",\"api_version\":\"v1\"}";
    struct signed_req *both[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        struct verify_result vr;
        cr_expect_eq(check(&s, both[k]->h, both[k]->nh, both[k]->b, NOW_MS, &vr), VERIFY_OK, "%s",
                     vr.reason);
        cr_expect(slice_eq(buf_slice(&vr.plain), slice_cstr(want)), "%.*s", (int)vr.plain.len,
                  (const char *)vr.plain.p);
        buf_free(&vr.plain);
    }
    cr_expect(strstr((char *)a.head.p, "x-timestamp: 1700000000000\r\n"), "%.*s", (int)a.head.len,
              (const char *)a.head.p);
    /* A wrong encryption secret cannot decrypt. */
    struct signer other;
    struct slice sec = slice_cstr(c->secret);
    char err[160];
    cr_assert_eq(signer_init(&other, s.profile, &sec, 1, SLICE_LIT("b3RoZXI="), SLICE_LIT(ENC_SALT),
                             err, sizeof(err)),
                 0);
    struct verify_result vr;
    cr_expect_eq(check(&other, a.h, a.nh, a.b, NOW_MS, &vr), VERIFY_BAD_BODY);
    buf_free(&vr.plain);
    free_req(&a);
    free_req(&b);
}

/* ---- round trips and refusals ------------------------------------------------------------- */

Test(profiles, round_trip_all_nine)
{
    for (size_t i = 0; i < PROFILE_COUNT; i++) {
        struct signer s;
        init_signer(&s, &cases[i], &cases[i].secret, 1);
        struct signed_req r;
        sign_sample(&r, &s, cases[i].name, NOW_MS);
        struct verify_result vr;
        cr_expect_eq(check(&s, r.h, r.nh, r.b, NOW_MS + 1000, &vr), VERIFY_OK, "%s: %s",
                     cases[i].name, vr.reason);
        cr_expect_str_eq(vr.id, cases[i].want_id, "%s", cases[i].name);
        if (i != PROFILE_HUMANOS) {
            cr_expect(slice_eq(buf_slice(&vr.plain), r.b), "%s: plain is the body", cases[i].name);
        }
        buf_free(&vr.plain);
        free_req(&r);
    }
}

Test(profiles, tampered_body_refused)
{
    for (size_t i = 0; i < PROFILE_COUNT; i++) {
        struct signer s;
        init_signer(&s, &cases[i], &cases[i].secret, 1);
        struct signed_req r;
        sign_sample(&r, &s, cases[i].name, NOW_MS);
        for (size_t pos = 0; pos < r.b.len; pos += r.b.len / 7 + 1) {
            uint8_t *p = (uint8_t *)r.b.p + pos;
            *p ^= 0x01;
            struct verify_result vr;
            cr_expect_eq(check(&s, r.h, r.nh, r.b, NOW_MS, &vr), VERIFY_NO_MATCH,
                         "%s: byte %zu flipped: %s", cases[i].name, pos, vr.reason);
            cr_expect(strstr(vr.reason, "no matching signature"), "%s", vr.reason);
            buf_free(&vr.plain);
            *p ^= 0x01;
        }
        free_req(&r);
    }
}

Test(profiles, wrong_secret_refused)
{
    for (size_t i = 0; i < PROFILE_COUNT; i++) {
        struct signer s, wrong;
        init_signer(&s, &cases[i], &cases[i].secret, 1);
        const char *other = profiles[i]->key_format == KEY_WHSEC_B64
                                ? "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                                : "not-the-secret";
        init_signer(&wrong, &cases[i], &other, 1);
        struct signed_req r;
        sign_sample(&r, &s, cases[i].name, NOW_MS);
        struct verify_result vr;
        cr_expect_eq(check(&wrong, r.h, r.nh, r.b, NOW_MS, &vr), VERIFY_NO_MATCH, "%s: %s",
                     cases[i].name, vr.reason);
        buf_free(&vr.plain);
        free_req(&r);
    }
}

Test(profiles, stale_timestamp_refused)
{
    for (size_t i = 0; i < PROFILE_COUNT; i++) {
        struct signer s;
        init_signer(&s, &cases[i], &cases[i].secret, 1);
        struct signed_req r;
        sign_sample(&r, &s, cases[i].name, NOW_MS);
        struct verify_result vr;
        enum verify_status late = check(&s, r.h, r.nh, r.b, NOW_MS + 301000, &vr);
        buf_free(&vr.plain);
        enum verify_status early = check(&s, r.h, r.nh, r.b, NOW_MS - 301000, &vr);
        buf_free(&vr.plain);
        enum verify_status edge = check(&s, r.h, r.nh, r.b, NOW_MS + 299000, &vr);
        buf_free(&vr.plain);
        if (cases[i].timestamped) {
            cr_expect_eq(late, VERIFY_STALE_TIMESTAMP, "%s", cases[i].name);
            cr_expect_eq(early, VERIFY_STALE_TIMESTAMP, "%s", cases[i].name);
        } else {
            cr_expect_eq(late, VERIFY_OK, "%s signs no timestamp", cases[i].name);
        }
        cr_expect_eq(edge, VERIFY_OK, "%s", cases[i].name);
        free_req(&r);
    }
}

Test(profiles, missing_and_truncated_headers_refused)
{
    for (size_t i = 0; i < PROFILE_COUNT; i++) {
        struct signer s;
        init_signer(&s, &cases[i], &cases[i].secret, 1);
        struct signed_req r;
        sign_sample(&r, &s, cases[i].name, NOW_MS);
        struct header *sig = find_hdr(&r, cases[i].sig_header);
        struct slice full = sig->value;
        struct verify_result vr;
        sig->value.len = full.len / 2;
        enum verify_status st = check(&s, r.h, r.nh, r.b, NOW_MS, &vr);
        cr_expect(st == VERIFY_MALFORMED_HEADER || st == VERIFY_BAD_ENCODING, "%s: %s -> %s",
                  cases[i].name, vr.reason, verify_status_name(st));
        buf_free(&vr.plain);
        sig->value.len = full.len - 1;
        st = check(&s, r.h, r.nh, r.b, NOW_MS, &vr);
        cr_expect(st == VERIFY_MALFORMED_HEADER || st == VERIFY_BAD_ENCODING, "%s: %s -> %s",
                  cases[i].name, vr.reason, verify_status_name(st));
        buf_free(&vr.plain);
        sig->value = full;
        sig->name = SLICE_LIT("X-Renamed");
        cr_expect_eq(check(&s, r.h, r.nh, r.b, NOW_MS, &vr), VERIFY_MISSING_HEADER, "%s: %s",
                     cases[i].name, vr.reason);
        cr_expect(strstr(vr.reason, "missing header"), "%s", vr.reason);
        buf_free(&vr.plain);
        free_req(&r);
    }
}

struct bad_header {
    enum profile_id pid;
    const char *name;
    const char *value;
    enum verify_status want;
};

#define HEX64 "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
#define B64SIG "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

Test(profiles, malformed_headers_refused_with_reason)
{
    static const struct bad_header cases_bad[] = {
        {PROFILE_GITHUB, "X-Hub-Signature-256", "sha1=" HEX64, VERIFY_MALFORMED_HEADER},
        {PROFILE_GITHUB, "X-Hub-Signature-256", HEX64, VERIFY_MALFORMED_HEADER},
        {PROFILE_GITHUB, "X-Hub-Signature-256", "sha256=" HEX64 "00", VERIFY_MALFORMED_HEADER},
        {PROFILE_GITHUB, "X-Hub-Signature-256",
         "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17",
         VERIFY_BAD_ENCODING},
        {PROFILE_GITHUB, "X-Hub-Signature-256",
         "sha256=z57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
         VERIFY_BAD_ENCODING},
        {PROFILE_HUMIRIS, "X-Humiris-Signature", "v1=" HEX64 ",t=1700000000",
         VERIFY_MALFORMED_HEADER},
        {PROFILE_HUMIRIS, "X-Humiris-Signature", "t=17000x0000,v1=" HEX64, VERIFY_MALFORMED_HEADER},
        {PROFILE_HUMIRIS, "X-Humiris-Signature", "t=1700000000", VERIFY_MALFORMED_HEADER},
        {PROFILE_HUMIRIS, "X-Humiris-Signature", "t=1700000000,v1=" HEX64, VERIFY_NO_MATCH},
        {PROFILE_STRIPE, "Stripe-Signature", "t=1700000000,t=1700000000,v1=" HEX64,
         VERIFY_MALFORMED_HEADER},
        {PROFILE_STRIPE, "Stripe-Signature", "t=1700000000,v0=" HEX64, VERIFY_NO_MATCH},
        {PROFILE_STRIPE, "Stripe-Signature", "v1=" HEX64, VERIFY_MALFORMED_HEADER},
        {PROFILE_STRIPE, "Stripe-Signature", "t=1700000000,v1=" HEX64 ",", VERIFY_MALFORMED_HEADER},
        {PROFILE_STRIPE, "Stripe-Signature", "t=1700000000,garbage", VERIFY_MALFORMED_HEADER},
        {PROFILE_STANDARD, "webhook-signature", "v1," B64SIG " ", VERIFY_MALFORMED_HEADER},
        {PROFILE_STANDARD, "webhook-signature", "v1", VERIFY_MALFORMED_HEADER},
        {PROFILE_STANDARD, "webhook-signature", "v1,!!!!", VERIFY_BAD_ENCODING},
        {PROFILE_STANDARD, "webhook-signature", "v1,aGk=", VERIFY_BAD_ENCODING},
        {PROFILE_STANDARD, "webhook-signature", "v2," B64SIG, VERIFY_NO_MATCH},
        {PROFILE_STANDARD, "webhook-signature", "v1," B64SIG, VERIFY_NO_MATCH},
        {PROFILE_HUMCLI, "X-Signature", "sha256=" HEX64, VERIFY_MALFORMED_HEADER},
        {PROFILE_AKSITA, "X-Webhook-Signature", "", VERIFY_MALFORMED_HEADER},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases_bad); i++) {
        const struct bad_header *bh = &cases_bad[i];
        const struct pcase *c = &cases[bh->pid];
        struct signer s;
        init_signer(&s, c, &c->secret, 1);
        struct signed_req r;
        sign_sample(&r, &s, c->name, NOW_MS);
        find_hdr(&r, bh->name)->value = slice_cstr(bh->value);
        struct verify_result vr;
        enum verify_status st = check(&s, r.h, r.nh, r.b, NOW_MS, &vr);
        cr_expect_eq(st, bh->want, "%s %s: %s: got %s (%s)", c->name, bh->name, bh->value,
                     verify_status_name(st), vr.reason);
        cr_expect_neq(vr.reason[0], '\0', "a refusal always has a reason");
        buf_free(&vr.plain);
        free_req(&r);
    }
}

Test(profiles, rotation_signs_with_every_secret)
{
    static const enum profile_id multi[] = {PROFILE_STANDARD, PROFILE_SVIX, PROFILE_STRIPE};
    for (size_t i = 0; i < ARRAY_SIZE(multi); i++) {
        const struct pcase *c = &cases[multi[i]];
        const char *both[2] = {c->secret, c->old_secret};
        struct signer s, only_new, only_old, neither;
        init_signer(&s, c, both, 2);
        init_signer(&only_new, c, &both[0], 1);
        init_signer(&only_old, c, &both[1], 1);
        const char *third = "whsec_dGhpcmQtc2VjcmV0LXR3ZW50eS1mb3VyLWJ5dGVz";
        init_signer(&neither, c, &third, 1);
        struct signed_req r;
        sign_sample(&r, &s, c->name, NOW_MS);
        struct slice v = find_hdr(&r, c->sig_header)->value;
        size_t count = 0;
        for (size_t k = 0; k + 3 <= v.len; k++) {
            count += memcmp(v.p + k, "v1", 2) == 0 && (v.p[k + 2] == ',' || v.p[k + 2] == '=');
        }
        cr_expect_eq(count, 2, "%s: two signatures in %.*s", c->name, (int)v.len,
                     (const char *)v.p);
        struct verify_result vr;
        cr_expect_eq(check(&only_new, r.h, r.nh, r.b, NOW_MS, &vr), VERIFY_OK, "%s", c->name);
        buf_free(&vr.plain);
        cr_expect_eq(check(&only_old, r.h, r.nh, r.b, NOW_MS, &vr), VERIFY_OK, "%s", c->name);
        buf_free(&vr.plain);
        cr_expect_eq(check(&neither, r.h, r.nh, r.b, NOW_MS, &vr), VERIFY_NO_MATCH, "%s", c->name);
        buf_free(&vr.plain);
        free_req(&r);
    }
}

Test(profiles, aksita_without_secret_is_unsigned)
{
    struct signer s, with;
    init_signer(&s, &cases[PROFILE_AKSITA], NULL, 0);
    init_signer(&with, &cases[PROFILE_AKSITA], &cases[PROFILE_AKSITA].secret, 1);
    struct signed_req r;
    sign_sample(&r, &s, "aksita", NOW_MS);
    cr_expect_null(header_find(r.h, r.nh, "X-Webhook-Signature"));
    cr_expect_not_null(header_find(r.h, r.nh, "User-Agent"));
    struct verify_result vr;
    cr_expect_eq(check(&s, r.h, r.nh, r.b, NOW_MS, &vr), VERIFY_OK);
    buf_free(&vr.plain);
    cr_expect_eq(check(&with, r.h, r.nh, r.b, NOW_MS, &vr), VERIFY_MISSING_HEADER,
                 "an endpoint with a secret never accepts unsigned requests");
    buf_free(&vr.plain);
    free_req(&r);
}

Test(profiles, signer_refuses_bad_secrets)
{
    char err[160];
    struct signer s;
    struct slice bad[] = {SLICE_LIT("whsec_not base64"), SLICE_LIT("whsec_c2hvcnQ="),
                          SLICE_LIT("")};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        err[0] = '\0';
        cr_expect_eq(signer_init(&s, &profile_find("standard")[0], &bad[i], 1, (struct slice){0},
                                 (struct slice){0}, err, sizeof(err)),
                     -EINVAL);
        cr_expect_neq(err[0], '\0');
    }
    cr_expect_eq(signer_init(&s, profile_find("github"), NULL, 0, (struct slice){0},
                             (struct slice){0}, err, sizeof(err)),
                 -EINVAL, "github needs a secret");
    struct slice sec = SLICE_LIT("x");
    cr_expect_eq(signer_init(&s, profile_find("humanos"), &sec, 1, (struct slice){0},
                             (struct slice){0}, err, sizeof(err)),
                 -EINVAL, "humanos needs encryption material");
    cr_expect(strstr(err, "enc-secret"), "%s", err);
}

Test(profiles, events_that_do_not_fit_the_profile)
{
    struct {
        enum profile_id pid;
        const char *json;
        const char *want;
    } bad[] = {
        {PROFILE_HUMCLI, "{\"type\":\"t\",\"data\":{\"task_id\":\"a\",\"status\":\"DONE\"}}",
         "data.status"},
        {PROFILE_HUMCLI, "{\"type\":\"t\",\"data\":{\"status\":\"PENDING\"}}", "data.task_id"},
        {PROFILE_HUMCLI, "{\"type\":\"t\",\"data\":[1]}", "data"},
        {PROFILE_HUMANOS, "{\"type\":\"credential\",\"data\":[1]}", "data"},
        {PROFILE_HUMANOS,
         "{\"type\":\"credential\",\"data\":{\"requestId\":\"r\",\"issuerDid\":\"d\","
         "\"decisionDate\":\"x\"}}",
         "data.user"},
        {PROFILE_HUMANOS,
         "{\"type\":\"credential\",\"data\":{\"requestId\":\"r\",\"issuerDid\":\"d\","
         "\"decisionDate\":\"x\",\"user\":{\"contact\":\"c\",\"did\":\"d\"},\"eventType\":1}}",
         "eventType"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        const struct pcase *c = &cases[bad[i].pid];
        struct signer s;
        init_signer(&s, c, &c->secret, 1);
        struct event ev;
        char err[160] = "";
        cr_assert_eq(event_parse(&ev, (const uint8_t *)bad[i].json, strlen(bad[i].json), NOW_MS,
                                 err, sizeof(err)),
                     0, "%s", err);
        struct buf head, body;
        buf_init(&head, 4096);
        buf_init(&body, 4096);
        cr_expect_eq(
            sign_request(&s, &ev, (struct slice){0}, NOW_MS, &head, &body, err, sizeof(err)),
            -EINVAL, "%s", bad[i].json);
        cr_expect(strstr(err, bad[i].want), "%s: '%s' lacks '%s'", bad[i].json, err, bad[i].want);
        buf_free(&head);
        buf_free(&body);
    }
    cr_expect(profile_find("humcli")->https_only);
    cr_expect_null(profile_find("nope"));
}

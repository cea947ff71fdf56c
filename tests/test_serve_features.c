/* test_serve_features.c: hookring serve's webhook options and event callbacks end to end, the
 * real server on loopback against the real harness (which verifies signatures) or, where the
 * harness cannot show what is tested (request headers, concurrency, humanos' plaintext), a small
 * receiver in the test that verifies with the engine's own verifiers: custom headers sent and
 * refused, max_in_flight, per-event callback_url delivered as humcli (and resumed after a
 * restart; at most 1024 alive, each freed once final), disabled after a period of failing (kept
 * across a restart), humanos' api_version pinned at the first delivery and changed by PATCH. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sign/profile.h"
#include "support/testnet.h"

TestSuite(serve_features);

#define KEY "test-api-key-2"
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define HUMCLI_SECRET "whsec_my_secret_key_123"
#define HOS_SECRET "your-signature-secret"
#define HOS_ENC "eW91ci1lbmNyeXB0aW9uLXNlY3JldA=="
#define HOS_SALT "your-encryption-salt"
#define HOS_DATA                                                                                   \
    "{\"requestId\":\"68c42ec3e47c9a7f9241e0ba\",\"issuerDid\":\"did:via:org-abc123\","            \
    "\"user\":{\"contact\":\"+1234567890\",\"did\":\"did:via:user-xyz789\"},"                      \
    "\"decisionDate\":\"2024-01-15T18:30:00.000Z\"}"

/* ---- processes (as in test_serve.c) --------------------------------------------------------- */

static struct tn_proc H, S;
static char data_dir[64];

static void make_data_dir(void)
{
    cr_assert_eq(tn_tmpdir(data_dir, sizeof(data_dir), "hookring-feat"), 0);
}

static void remove_data_dir(void)
{
    cr_assert_eq(tn_rm_rf(data_dir), 0);
}

/* start_harness runs the harness verifying /humcli/ as humcli and /std/ as standard. */
static void start_harness(struct tn_proc *h)
{
    const char *args[] = {"--listen",
                          "127.0.0.1:0",
                          "--quiet",
                          "--route",
                          "/humcli/=humcli:" HUMCLI_SECRET,
                          "--route",
                          "/std/=standard:" STD_SECRET,
                          NULL};
    cr_assert_eq(tn_start(h, "hookring-harness", args, 1), 0, "the harness did not start");
}

/* start_serve runs hookring serve on data_dir; allow_net adds --allow-net 127.0.0.0/8, and
 * HOOKRING_SERVE_WORKERS=N adds --workers N (tests/run.sh runs the suite again so). */
static void start_serve(struct tn_proc *s, bool allow_net, const char *const *extra)
{
    cr_assert_eq(tn_serve(s, data_dir, KEY, "127.0.0.1:0", allow_net, extra), 0,
                 "hookring serve did not start");
}

#define SERVE(s, ...) start_serve(s, true, (const char *const[]){__VA_ARGS__, NULL})

static void stop_clean(struct tn_proc *p)
{
    int st = tn_stop(p, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d; output:\n%s", st, p->out);
}

/* ---- the API -------------------------------------------------------------------------------- */

static int api(const struct tn_proc *s, const char *method, const char *path, const char *body,
               struct tn_resp *r)
{
    return tn_api(s->addr[0], KEY, method, path, body, r);
}

/* jstr copies the first string member named key of a JSON text into out. */
static bool jstr(const char *json, const char *key, char *out, size_t n)
{
    return tn_json_str(json, key, out, n);
}

static void create_webhook(const char *body, char *id, size_t n)
{
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", "/v1/webhooks", body, &r), 201, "create: %s", r.body);
    cr_assert(jstr(r.body, "id", id, n));
    tn_resp_free(&r);
}

static void post_ok(const char *json)
{
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", "/v1/events", json, &r), 202, "%s -> %s", json, r.body);
    tn_resp_free(&r);
}

/* expect_400 sends body to path with method and checks that the error names field. */
static void expect_400(const char *method, const char *path, const char *body, const char *field)
{
    struct tn_resp r;
    cr_assert_eq(api(&S, method, path, body, &r), 400, "%s -> %d %s", body, r.status, r.body);
    cr_assert_not_null(strstr(r.body, field), "the error for %s should name %s: %s", body, field,
                       r.body);
    tn_resp_free(&r);
}

/* wait_dlv polls GET /v1/deliveries/{dlv} until its status is want; its JSON is left in r. */
static bool wait_dlv(const char *dlv, const char *want, struct tn_resp *r, int ms)
{
    char path[128], st[32];
    snprintf(path, sizeof(path), "/v1/deliveries/%s", dlv);
    int64_t end = tn_now_ms() + ms;
    while (tn_now_ms() < end) {
        if (api(&S, "GET", path, NULL, r) == 200 && jstr(r->body, "status", st, sizeof(st)) &&
            strcmp(st, want) == 0) {
            return true;
        }
        tn_resp_free(r);
        usleep(20 * 1000);
    }
    return false;
}

static void wh_status(const char *wh, char *st, size_t n)
{
    char path[128];
    struct tn_resp r;
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert(jstr(r.body, "status", st, n), "%s", r.body);
    tn_resp_free(&r);
}

/* sync_journal returns once every record journaled so far is durable: an empty PATCH of
 * webhook path is answered once its record is, and records are durable in order. Attempt
 * records wait for nobody, so without this a kill -9 may repeat a finished attempt. */
static void sync_journal(const char *path)
{
    struct tn_resp r;
    cr_assert_eq(api(&S, "PATCH", path, "{}", &r), 200, "%s", r.body);
    tn_resp_free(&r);
}

static uint64_t harness_id(const char *id, const char *field)
{
    return tn_harness_id(H.addr[0], id, field);
}

/* harness_processed tells whether the harness took a delivery of id. */
static bool harness_processed(const char *id)
{
    char path[256];
    struct tn_resp r;
    snprintf(path, sizeof(path), "/_harness/ids/%s", id);
    bool yes = tn_get(H.addr[0], path, &r) == 200 && strstr(r.body, "\"processed\":true");
    tn_resp_free(&r);
    return yes;
}

/* ---- a receiver that keeps what the harness does not show ------------------------------------
 * One thread accepts; one thread per connection reads requests (Content-Length framing),
 * verifies each with the engine's verifier when a signer is set, records the head and the
 * verified plaintext, holds the answer delay_ms and answers 200. It counts requests being held
 * at once. */

struct rcv {
    int lfd;
    char addr[64];
    pthread_t th;
    pthread_mutex_t mu;
    int delay_ms;
    bool has_signer;
    struct signer sg;
    int cur, max, count, verified, bad;
    char last_head[16384];
    char last_plain[4096];
};

static struct rcv R;

struct rcv_conn {
    struct rcv *r;
    int fd;
};

static void *rcv_conn_main(void *arg)
{
    struct rcv_conn *k = arg;
    struct rcv *r = k->r;
    static __thread char buf[65536];
    size_t len = 0;
    for (;;) {
        char *end = NULL;
        while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
            ssize_t n = len < sizeof(buf) ? read(k->fd, buf + len, sizeof(buf) - len) : -1;
            if (n <= 0) {
                goto out;
            }
            len += (size_t)n;
        }
        size_t head_len = (size_t)(end - buf) + 4;
        size_t clen = 0;
        struct header h[64];
        size_t nh = 0;
        /* the header lines, split in place on a copy */
        static __thread char head[16384];
        memcpy(head, buf, head_len < sizeof(head) ? head_len : sizeof(head) - 1);
        head[head_len < sizeof(head) ? head_len : sizeof(head) - 1] = 0;
        char *line = strstr(head, "\r\n");
        while (line && line[2] != '\r' && nh < 64) {
            line += 2;
            char *eol = strstr(line, "\r\n");
            char *colon = memchr(line, ':', (size_t)(eol - line));
            if (!colon) {
                break;
            }
            const char *v = colon + 1;
            while (*v == ' ') {
                v++;
            }
            h[nh].name = slice_of(line, (size_t)(colon - line));
            h[nh].value = slice_of(v, (size_t)(eol - v));
            if (strncasecmp(line, "Content-Length:", 15) == 0) {
                clen = strtoul(v, NULL, 10);
            }
            nh++;
            line = eol;
        }
        while (len < head_len + clen) {
            ssize_t n = len < sizeof(buf) ? read(k->fd, buf + len, sizeof(buf) - len) : -1;
            if (n <= 0) {
                goto out;
            }
            len += (size_t)n;
        }
        pthread_mutex_lock(&r->mu);
        r->cur++;
        r->max = r->cur > r->max ? r->cur : r->max;
        r->count++;
        snprintf(r->last_head, sizeof(r->last_head), "%s", head);
        if (r->has_signer) {
            struct verify_result vr;
            buf_init(&vr.plain, 1 << 20);
            struct verify_opts vo = {.now_ms = 0, .tolerance_s = 0};
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            vo.now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
            vo.tolerance_s = VERIFY_TOLERANCE_S;
            if (verify_request(&r->sg, h, nh, slice_of(buf + head_len, clen), &vo, &vr) ==
                VERIFY_OK) {
                r->verified++;
                size_t n = vr.plain.len < sizeof(r->last_plain) - 1 ? vr.plain.len
                                                                    : sizeof(r->last_plain) - 1;
                memcpy(r->last_plain, vr.plain.p, n);
                r->last_plain[n] = 0;
            } else {
                r->bad++;
            }
            buf_free(&vr.plain);
        }
        int delay = r->delay_ms;
        pthread_mutex_unlock(&r->mu);
        if (delay) {
            usleep((useconds_t)delay * 1000);
        }
        pthread_mutex_lock(&r->mu);
        r->cur--;
        pthread_mutex_unlock(&r->mu);
        static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if (tn_send_all(k->fd, ok, sizeof(ok) - 1)) {
            goto out;
        }
        memmove(buf, buf + head_len + clen, len - head_len - clen);
        len -= head_len + clen;
    }
out:
    close(k->fd);
    free(k);
    return NULL;
}

static void *rcv_main(void *arg)
{
    struct rcv *r = arg;
    for (;;) {
        int fd = accept(r->lfd, NULL, NULL);
        if (fd < 0) {
            return NULL; /* shut down */
        }
        struct rcv_conn *k = malloc(sizeof(*k));
        if (!k) {
            close(fd);
            continue;
        }
        k->r = r;
        k->fd = fd;
        pthread_t t;
        if (pthread_create(&t, NULL, rcv_conn_main, k)) {
            close(fd);
            free(k);
            continue;
        }
        pthread_detach(t);
    }
}

/* rcv_start listens on a free loopback port; profile (or NULL) verifies every request. */
static void rcv_start(struct rcv *r, int delay_ms, const char *profile, const char *secret,
                      const char *enc, const char *salt)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    r->delay_ms = delay_ms;
    if (profile) {
        char err[256];
        struct slice sec = slice_cstr(secret);
        cr_assert_eq(signer_init(&r->sg, profile_find(profile), &sec, 1,
                                 enc ? slice_cstr(enc) : slice_cstr(""),
                                 salt ? slice_cstr(salt) : slice_cstr(""), err, sizeof(err)),
                     0, "%s", err);
        r->has_signer = true;
    }
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(r->lfd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    cr_assert_eq(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(r->lfd, 64), 0);
    cr_assert_eq(getsockname(r->lfd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%u", ntohs(sa.sin_port));
    cr_assert_eq(pthread_create(&r->th, NULL, rcv_main, r), 0);
}

static void rcv_stop(struct rcv *r)
{
    shutdown(r->lfd, SHUT_RDWR);
    pthread_join(r->th, NULL);
    close(r->lfd);
}

static int rcv_get(struct rcv *r, const int *field)
{
    pthread_mutex_lock(&r->mu);
    int v = *field;
    pthread_mutex_unlock(&r->mu);
    return v;
}

/* rcv_wait waits until the receiver counted n requests; returns whether it did. */
static bool rcv_wait(struct rcv *r, int n, int ms)
{
    int64_t end = tn_now_ms() + ms;
    while (tn_now_ms() < end) {
        if (rcv_get(r, &r->count) >= n) {
            return true;
        }
        usleep(10 * 1000);
    }
    return false;
}

/* rcv_idle waits until the receiver holds no request (the ones a killed server had out are
 * answered into the void); returns whether it came to that. */
static bool rcv_idle(struct rcv *r, int ms)
{
    usleep(100 * 1000); /* a request written just before the kill is read first */
    int64_t end = tn_now_ms() + ms;
    while (tn_now_ms() < end) {
        if (rcv_get(r, &r->cur) == 0) {
            return true;
        }
        usleep(10 * 1000);
    }
    return false;
}

/* rcv_head copies the last request head. */
static void rcv_head(struct rcv *r, char *out, size_t n)
{
    pthread_mutex_lock(&r->mu);
    snprintf(out, n, "%s", r->last_head);
    pthread_mutex_unlock(&r->mu);
}

/* ---- custom headers ------------------------------------------------------------------------- */

// cppcheck-suppress unknownMacro
Test(serve_features, custom_headers_are_sent_on_every_attempt_and_bad_ones_refused, .timeout = 40)
{
    make_data_dir();
    rcv_start(&R, 0, "standard", STD_SECRET, NULL, NULL);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], body[2048], path[128], head[16384];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/in\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"secret\":\"" STD_SECRET "\",\"headers\":{\"X-Tenant\":\"acme\","
             "\"Authorization\":\"Bearer t0k\"}}",
             R.addr);
    create_webhook(body, wh, sizeof(wh));
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    struct tn_resp r;
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(
        strstr(r.body, "\"headers\":{\"X-Tenant\":\"acme\",\"Authorization\":\"Bearer t0k\"}"),
        "%s", r.body);
    cr_assert_null(strstr(r.body, STD_SECRET), "GET must not show the secret: %s", r.body);
    tn_resp_free(&r);

    post_ok("{\"id\":\"evt_h1\",\"type\":\"a.b\",\"data\":{\"n\":1}}");
    cr_assert(rcv_wait(&R, 1, 10000));
    rcv_head(&R, head, sizeof(head));
    cr_assert_not_null(strstr(head, "\r\nX-Tenant: acme\r\n"), "%s", head);
    cr_assert_not_null(strstr(head, "\r\nAuthorization: Bearer t0k\r\n"), "%s", head);
    cr_assert_not_null(strstr(head, "\r\nwebhook-signature: v1,"), "%s", head);
    cr_assert_eq(rcv_get(&R, &R.verified), 1, "the signature still verifies");

    /* journaled: a restart (kill -9) keeps them */
    sync_journal(path);
    tn_stop(&S, SIGKILL);
    SERVE(&S, "--time-scale", "0.01");
    post_ok("{\"id\":\"evt_h2\",\"type\":\"a.b\",\"data\":{\"n\":2}}");
    cr_assert(rcv_wait(&R, 2, 10000));
    rcv_head(&R, head, sizeof(head));
    cr_assert_not_null(strstr(head, "\r\nX-Tenant: acme\r\n"), "%s", head);

    /* PATCH replaces them */
    cr_assert_eq(api(&S, "PATCH", path, "{\"headers\":{\"x-tenant\":\"beta\"}}", &r), 200, "%s",
                 r.body);
    tn_resp_free(&r);
    post_ok("{\"id\":\"evt_h3\",\"type\":\"a.b\",\"data\":{\"n\":3}}");
    cr_assert(rcv_wait(&R, 3, 10000));
    rcv_head(&R, head, sizeof(head));
    cr_assert_not_null(strstr(head, "\r\nx-tenant: beta\r\n"), "%s", head);
    cr_assert_null(strstr(head, "acme"), "%s", head);
    cr_assert_null(strstr(head, "Authorization"), "%s", head);
    cr_assert_eq(rcv_get(&R, &R.verified), 3);
    cr_assert_eq(rcv_get(&R, &R.bad), 0);

    /* every refused header names the field */
    static const char *const refused[] = {
        "{\"Host\":\"evil\"}",
        "{\"content-length\":\"0\"}",
        "{\"Transfer-Encoding\":\"chunked\"}",
        "{\"CONNECTION\":\"close\"}",
        "{\"Content-Type\":\"text/plain\"}",
        "{\"User-Agent\":\"x\"}",
        "{\"webhook-signature\":\"v1,AAAA\"}",
        "{\"Webhook-Id\":\"x\"}",
        "{\"webhook-timestamp-x\":\"1\"}",
        "{\"X Bad\":\"v\"}",
        "{\"X-Bad:\":\"v\"}",
        "{\"\":\"v\"}",
        "{\"X-A\":\"a\\r\\nX-Injected: 1\"}",
        "{\"X-A\":\"a\\nb\"}",
        "{\"X-A\":\"a\\u0000b\"}",
        "{\"X-A\":1}",
        "{\"X-A\":\"1\",\"x-a\":\"2\"}",
        "[\"X-A\"]",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        snprintf(body, sizeof(body),
                 "{\"url\":\"http://%s/in\",\"profile\":\"standard\",\"events\":[\"*\"],"
                 "\"headers\":%s}",
                 R.addr, refused[i]);
        expect_400("POST", "/v1/webhooks", body, "headers");
        snprintf(body, sizeof(body), "{\"headers\":%s}", refused[i]);
        expect_400("PATCH", path, body, "headers");
    }
    /* the profile's own names, per profile */
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/in\",\"profile\":\"github\",\"events\":[\"*\"],"
             "\"headers\":{\"X-GitHub-Event\":\"push\"}}",
             R.addr);
    expect_400("POST", "/v1/webhooks", body, "headers");
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/in\",\"profile\":\"stripe\",\"events\":[\"*\"],"
             "\"headers\":{\"stripe-signature\":\"t=1\"}}",
             R.addr);
    expect_400("POST", "/v1/webhooks", body, "headers");
    /* but another profile's name is just a header */
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/in\",\"profile\":\"github\",\"events\":[\"x\"],"
             "\"headers\":{\"Stripe-Signature\":\"t=1\"}}",
             R.addr);
    char other[64];
    create_webhook(body, other, sizeof(other));

    /* at most 32 headers, 8 KiB together */
    static char big[12000];
    size_t n = (size_t)snprintf(big, sizeof(big),
                                "{\"url\":\"http://%s/in\",\"profile\":\"standard\","
                                "\"events\":[\"*\"],\"headers\":{",
                                R.addr);
    for (int i = 0; i < 33; i++) {
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"X-H%d\":\"v\"", i ? "," : "", i);
    }
    snprintf(big + n, sizeof(big) - n, "}}");
    expect_400("POST", "/v1/webhooks", big, "headers");
    n = (size_t)snprintf(big, sizeof(big),
                         "{\"url\":\"http://%s/in\",\"profile\":\"standard\","
                         "\"events\":[\"*\"],\"headers\":{\"X-Big\":\"",
                         R.addr);
    memset(big + n, 'v', 8200);
    snprintf(big + n + 8200, sizeof(big) - n - 8200, "\"}}");
    expect_400("POST", "/v1/webhooks", big, "headers");

    /* a PATCH refused after its URL, filters and headers were read (twice when the endpoint is
     * built from them, once as it is parsed) */
    cr_assert_eq(
        api(&S, "PATCH", path, "{\"events\":[\"only.this\"],\"headers\":{\"Host\":\"evil\"}}", &r),
        400, "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "PATCH", path,
                     "{\"url\":\"http://127.0.0.1:9/elsewhere\",\"headers\":{\"Host\":\"evil\"}}",
                     &r),
                 400, "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "PATCH", path,
                     "{\"events\":[\"only.this\"],\"headers\":{\"X-New\":\"1\"},"
                     "\"timeout_ms\":\"soon\"}",
                     &r),
                 400, "%s", r.body);
    tn_resp_free(&r);

    /* the refusals changed nothing */
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "\"headers\":{\"x-tenant\":\"beta\"}"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"events\":[\"*\"]"), "%s", r.body);
    cr_assert_null(strstr(r.body, "elsewhere"), "%s", r.body);
    tn_resp_free(&r);
    post_ok("{\"id\":\"evt_h4\",\"type\":\"a.b\",\"data\":{\"n\":4}}");
    cr_assert(rcv_wait(&R, 4, 10000));
    rcv_head(&R, head, sizeof(head));
    cr_assert_not_null(strstr(head, "\r\nx-tenant: beta\r\n"), "%s", head);
    cr_assert_null(strstr(head, "X-New"), "%s", head);
    stop_clean(&S);
    rcv_stop(&R);
    remove_data_dir();
}

/* ---- max_in_flight -------------------------------------------------------------------------- */

/* rcv_webhook registers a standard webhook of every event type to the receiver R, with
 * max_in_flight. */
static void rcv_webhook(int max_in_flight, char *wh, size_t n)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/in\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"secret\":\"" STD_SECRET "\",\"max_in_flight\":%d}",
             R.addr, max_in_flight);
    create_webhook(body, wh, n);
}

static struct rcv R2;

/* rcv_set sets one of the receiver's counters (or its delay) under its lock. */
static void rcv_set(struct rcv *r, int *field, int v)
{
    pthread_mutex_lock(&r->mu);
    *field = v;
    pthread_mutex_unlock(&r->mu);
}

/* kill_restart kills serve -9 and starts it again (--time-scale 0.01), the receiver R's
 * in-flight maximum counted afresh from when the killed server's requests are answered. */
static void kill_restart(void)
{
    tn_stop(&S, SIGKILL);
    cr_assert(rcv_idle(&R, 5000));
    rcv_set(&R, &R.max, 0);
    SERVE(&S, "--time-scale", "0.01");
}

/* A PATCH of what the endpoint is built from (url, headers, timeout_ms), made while an attempt
 * is in flight, is answered at once: the attempt ends where it was sent, and every attempt that
 * starts after the answer goes by the new settings. (Under steady traffic a webhook always has
 * attempts out: a PATCH refused until none is would never go through.) A bad change is refused
 * even then, naming the field, and the webhook goes on with the last good settings. */
Test(serve_features, a_patch_while_attempts_are_in_flight_applies_to_the_next_ones, .timeout = 40)
{
    make_data_dir();
    rcv_start(&R, 1500, "standard", STD_SECRET, NULL, NULL);
    rcv_start(&R2, 0, "standard", STD_SECRET, NULL, NULL);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], path[128], body[512], head[16384];
    rcv_webhook(4, wh, sizeof(wh));
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    struct tn_resp r;

    post_ok("{\"id\":\"evt_p1\",\"type\":\"a\",\"data\":1}");
    cr_assert(rcv_wait(&R, 1, 5000));
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/new\",\"headers\":{\"X-Moved\":\"yes\"},\"timeout_ms\":4000}",
             R2.addr);
    cr_assert_eq(api(&S, "PATCH", path, body, &r), 200, "%s", r.body);
    cr_assert_not_null(strstr(r.body, R2.addr), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(rcv_get(&R, &R.cur), 1, "the PATCH was answered only after the attempt");
    /* due while the attempt at R is out: it waits for it, then goes to R2 */
    post_ok("{\"id\":\"evt_p2\",\"type\":\"a\",\"data\":2}");
    cr_assert(wait_dlv("dlv_0000000000000000", "delivered", &r, 10000));
    tn_resp_free(&r);
    cr_assert(wait_dlv("dlv_0000000000000001", "delivered", &r, 10000));
    tn_resp_free(&r);
    cr_assert_eq(rcv_get(&R, &R.count), 1, "an attempt went to the old url after the PATCH");
    cr_assert_eq(rcv_get(&R, &R.verified), 1);
    cr_assert_eq(rcv_get(&R2, &R2.count), 1);
    cr_assert_eq(rcv_get(&R2, &R2.verified), 1);
    rcv_head(&R2, head, sizeof(head));
    cr_assert(strncmp(head, "POST /new HTTP/1.1\r\n", 20) == 0, "%s", head);
    cr_assert_not_null(strstr(head, "\r\nX-Moved: yes\r\n"), "%s", head);

    /* a destination the address guard refuses, while an attempt is out: 400, nothing changes */
    rcv_set(&R2, &R2.delay_ms, 1500);
    post_ok("{\"id\":\"evt_p3\",\"type\":\"a\",\"data\":3}");
    cr_assert(rcv_wait(&R2, 2, 5000));
    expect_400("PATCH", path, "{\"url\":\"http://10.1.2.3/x\"}", "url");
    cr_assert_eq(rcv_get(&R2, &R2.cur), 1);
    rcv_set(&R2, &R2.delay_ms, 0);
    post_ok("{\"id\":\"evt_p4\",\"type\":\"a\",\"data\":4}");
    cr_assert(wait_dlv("dlv_0000000000000003", "delivered", &r, 10000));
    tn_resp_free(&r);
    cr_assert(wait_dlv("dlv_0000000000000002", "delivered", &r, 10000));
    tn_resp_free(&r);
    cr_assert_eq(rcv_get(&R2, &R2.count), 3);

    /* journaled: after a kill -9 the webhook delivers to the new url with the new header */
    sync_journal(path);
    tn_stop(&S, SIGKILL);
    SERVE(&S, "--time-scale", "0.01");
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, R2.addr), "%s", r.body);
    tn_resp_free(&r);
    post_ok("{\"id\":\"evt_p5\",\"type\":\"a\",\"data\":5}");
    cr_assert(rcv_wait(&R2, 4, 10000));
    rcv_head(&R2, head, sizeof(head));
    cr_assert_not_null(strstr(head, "\r\nX-Moved: yes\r\n"), "%s", head);
    cr_assert_eq(rcv_get(&R, &R.count), 1);
    cr_assert_eq(rcv_get(&R2, &R2.verified), 4);
    cr_assert_eq(rcv_get(&R2, &R2.bad), 0);
    stop_clean(&S);
    rcv_stop(&R);
    rcv_stop(&R2);
    remove_data_dir();
}

Test(serve_features, max_in_flight_caps_the_attempts_in_flight_of_a_webhook, .timeout = 40)
{
    make_data_dir();
    rcv_start(&R, 300, "standard", STD_SECRET, NULL, NULL);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], body[1024], path[128];
    rcv_webhook(2, wh, sizeof(wh));
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    struct tn_resp r;
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "\"max_in_flight\":2"), "%s", r.body);
    tn_resp_free(&r);

    /* eight events in one batch: all due at once */
    char batch[2048];
    tn_ndjson_events(batch, sizeof(batch), "evt_m", "a", 0, 8);
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    cr_assert(rcv_wait(&R, 8, 15000));
    cr_assert_eq(rcv_get(&R, &R.max), 2, "at most 2 in flight, and 2 were: %d", R.max);
    cr_assert_eq(rcv_get(&R, &R.verified), 8);

    /* PATCH raises it (journaled: after a restart too), answered at once even while the last
     * answers are on their way */
    cr_assert_eq(api(&S, "PATCH", path, "{\"max_in_flight\":4}", &r), 200, "%s", r.body);
    tn_resp_free(&r);
    kill_restart();
    tn_ndjson_events(batch, sizeof(batch), "evt_n", "a", 0, 8);
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    cr_assert(rcv_wait(&R, 16, 15000));
    cr_assert_eq(rcv_get(&R, &R.max), 4, "at most 4 in flight, and 4 were: %d", R.max);

    expect_400("PATCH", path, "{\"max_in_flight\":0}", "max_in_flight");
    expect_400("PATCH", path, "{\"max_in_flight\":1025}", "max_in_flight");
    expect_400("PATCH", path, "{\"max_in_flight\":\"2\"}", "max_in_flight");
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/in\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"max_in_flight\":-1}",
             R.addr);
    expect_400("POST", "/v1/webhooks", body, "max_in_flight");
    stop_clean(&S);
    rcv_stop(&R);
    remove_data_dir();
}

/* Deliveries due beyond max_in_flight wait in the server, nothing built for them: a SIGKILL
 * loses none of them, and DELETE ends those still waiting at once, without an attempt. */
Test(serve_features, deliveries_waiting_for_max_in_flight_survive_a_kill_and_end_on_delete,
     .timeout = 60)
{
    make_data_dir();
    rcv_start(&R, 50, "standard", STD_SECRET, NULL, NULL);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], path[128];
    rcv_webhook(1, wh, sizeof(wh));
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    char batch[4096];
    tn_ndjson_events(batch, sizeof(batch), "evt_q", "a", 0, 30);
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    /* one at a time (50 ms each): the last is pending, never attempted yet */
    cr_assert(rcv_wait(&R, 2, 5000));
    cr_assert(wait_dlv("dlv_000000000000001d", "pending", &r, 1000));
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":0"), "%s", r.body);
    tn_resp_free(&r);

    /* killed with most of them waiting: the restart delivers every one (the receiver first
     * finishes the request the killed server had in flight, so that max counts this one) */
    kill_restart();
    for (int i = 0; i < 30; i++) {
        char dlv[32];
        snprintf(dlv, sizeof(dlv), "dlv_%016x", i);
        cr_assert(wait_dlv(dlv, "delivered", &r, 10000), "%s is not delivered", dlv);
        tn_resp_free(&r);
    }
    int first = rcv_get(&R, &R.count);
    cr_assert_geq(first, 30);

    /* DELETE while most of a second batch waits: they end failed, none is sent after */
    tn_ndjson_events(batch, sizeof(batch), "evt_q", "a", 30, 30);
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    cr_assert(rcv_wait(&R, first + 2, 5000));
    cr_assert_eq(api(&S, "DELETE", path, NULL, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    cr_assert(wait_dlv("dlv_000000000000003b", "failed", &r, 2000));
    cr_assert_not_null(strstr(r.body, "\"error\":\"webhook_deleted\""), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":0"), "%s", r.body);
    tn_resp_free(&r);
    usleep(150 * 1000); /* the attempt in flight at the DELETE ends */
    int after = rcv_get(&R, &R.count);
    usleep(300 * 1000);
    cr_assert_eq(rcv_get(&R, &R.count), after, "a request came after the DELETE had settled");
    cr_assert_lt(after - first, 30, "the waiting deliveries were sent: %d", after - first);
    cr_assert_leq(rcv_get(&R, &R.max), 1, "max_in_flight 1, and %d were", rcv_get(&R, &R.max));
    cr_assert_eq(rcv_get(&R, &R.verified), after);
    stop_clean(&S);
    rcv_stop(&R);
    remove_data_dir();
}

/* ---- event texts read back from the journal ----------------------------------------------- */

static uint64_t fmetric(const char *name)
{
    uint64_t v = 0;
    cr_assert_eq(tn_metric(S.addr[0], KEY, name, &v), 0, "no metric %s", name);
    return v;
}

/* patch_bytes finds the first occurrence of what in the segment files of data_dir and writes
 * with over it (as long); returns whether it found one. */
static bool patch_bytes(const char *what, const char *with)
{
    DIR *d = opendir(data_dir);
    cr_assert_not_null(d);
    struct dirent *e;
    bool done = false;
    size_t wl = strlen(what);
    while (!done && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".seg") != 0) {
            continue;
        }
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", data_dir, e->d_name);
        FILE *f = fopen(path, "r+b");
        cr_assert_not_null(f);
        static char img[1 << 20];
        size_t len = fread(img, 1, sizeof(img), f);
        char *hit = memmem(img, len, what, wl);
        if (hit) {
            cr_assert_eq(fseek(f, hit - img, SEEK_SET), 0);
            cr_assert_eq(fwrite(with, 1, wl, f), wl);
            done = true;
        }
        fclose(f);
    }
    closedir(d);
    return done;
}

/* A delivered or failed event's text is not held in memory: GET, a retry (signed with the very
 * text), a restart and compaction read it back from the journal; bytes changed on disk are
 * refused, never sent. */
Test(serve_features, an_event_text_is_let_go_once_final_and_read_back_when_needed, .timeout = 40)
{
    make_data_dir();
    rcv_start(&R, 0, "standard", STD_SECRET, NULL, NULL);
    SERVE(&S, "--time-scale", "0.01");
    /* first to a port nobody listens on, without retries: failed at once */
    uint16_t closed = tn_closed_port();
    cr_assert_neq(closed, 0);
    char wh[64], body[1024], path[160];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://127.0.0.1:%u/x\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"secret\":\"" STD_SECRET "\",\"retry_schedule\":[]}",
             closed);
    create_webhook(body, wh, sizeof(wh));
    post_ok("{\"id\":\"evt_txt1\",\"type\":\"text.kept\","
            "\"data\":{\"marker\":\"read-back-Q7\",\"n\":[1,2,3]}}");
    post_ok("{\"id\":\"evt_txt2\",\"type\":\"text.kept\","
            "\"data\":{\"marker\":\"read-back-Z9\"}}");
    struct tn_resp r;
    cr_assert(wait_dlv("dlv_0000000000000000", "failed", &r, 5000));
    tn_resp_free(&r);
    cr_assert(wait_dlv("dlv_0000000000000001", "failed", &r, 5000));
    tn_resp_free(&r);
    cr_assert_eq(fmetric("hookring_event_texts_held"), 0);
    uint64_t reads = fmetric("hookring_event_text_reads_total");
    cr_assert(wait_dlv("dlv_0000000000000000", "failed", &r, 100));
    cr_assert_not_null(strstr(r.body, "\"event_id\":\"evt_txt1\""), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"event_type\":\"text.kept\""), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_gt(fmetric("hookring_event_text_reads_total"), reads);

    /* then to a receiver: the retry is signed over the text read back */
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    snprintf(body, sizeof(body), "{\"url\":\"http://%s/in\"}", R.addr);
    cr_assert_eq(api(&S, "PATCH", path, body, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries/dlv_0000000000000000/retry", wh);
    cr_assert_eq(api(&S, "POST", path, NULL, &r) / 100, 2, "%s", r.body);
    tn_resp_free(&r);
    cr_assert(wait_dlv("dlv_0000000000000000", "delivered", &r, 5000));
    tn_resp_free(&r);
    cr_assert_eq(rcv_get(&R, &R.verified), 1);
    pthread_mutex_lock(&R.mu);
    bool same = strstr(R.last_plain, "\"data\":{\"marker\":\"read-back-Q7\",\"n\":[1,2,3]}") &&
                strstr(R.last_plain, "\"type\":\"text.kept\"");
    pthread_mutex_unlock(&R.mu);
    cr_assert(same, "the retried body: %s", R.last_plain);
    cr_assert_eq(fmetric("hookring_event_texts_held"), 0);

    /* after a restart nothing is held either, and GET still names the event */
    stop_clean(&S);
    SERVE(&S, "--time-scale", "0.01");
    cr_assert_eq(fmetric("hookring_event_texts_held"), 0);
    cr_assert(wait_dlv("dlv_0000000000000001", "failed", &r, 100));
    cr_assert_not_null(strstr(r.body, "\"event_id\":\"evt_txt2\""), "%s", r.body);
    tn_resp_free(&r);

    /* a byte of the second event changed on disk: its retry is refused, nothing is sent */
    cr_assert(patch_bytes("read-back-Z9", "read-back-Z8"));
    snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries/dlv_0000000000000001/retry", wh);
    cr_assert_eq(api(&S, "POST", path, NULL, &r) / 100, 2, "%s", r.body);
    tn_resp_free(&r);
    int64_t end = tn_now_ms() + 5000;
    while (fmetric("hookring_event_text_read_errors_total") == 0 && tn_now_ms() < end) {
        usleep(20 * 1000);
    }
    cr_assert(wait_dlv("dlv_0000000000000001", "failed", &r, 5000));
    cr_assert_not_null(strstr(r.body, "cannot be read back"), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(rcv_get(&R, &R.count), 1, "a damaged text was sent");
    cr_assert(patch_bytes("read-back-Z8", "read-back-Z9"));
    stop_clean(&S);
    rcv_stop(&R);
    remove_data_dir();
}

/* ---- ingest pacing ----------------------------------------------------------------------------
 */

/* A POST made on its own thread, timed; rcv_at is how many requests the receiver had counted
 * when the answer came. */
struct timed_post {
    pthread_t th;
    const char *path, *body;
    int status;
    int64_t ms;
    int rcv_at;
    char retry_after[16];
    char answer[128];
    size_t answer_len;
};

static void *timed_post_main(void *arg)
{
    struct timed_post *p = arg;
    struct tn_resp r;
    int64_t t0 = tn_now_ms();
    p->status = api(&S, "POST", p->path, p->body, &r);
    p->ms = tn_now_ms() - t0;
    p->rcv_at = rcv_get(&R, &R.count);
    const char *ra = strcasestr(r.head, "\r\nRetry-After: ");
    if (ra) {
        snprintf(p->retry_after, sizeof(p->retry_after), "%.*s", (int)strcspn(ra + 15, "\r"),
                 ra + 15);
    }
    p->answer_len = r.body_len;
    snprintf(p->answer, sizeof(p->answer), "%s", r.body ? r.body : "");
    tn_resp_free(&r);
    return NULL;
}

static void timed_post_start(struct timed_post *p, const char *path, const char *body)
{
    memset(p, 0, sizeof(*p));
    p->path = path;
    p->body = body;
    cr_assert_eq(pthread_create(&p->th, NULL, timed_post_main, p), 0);
}

/* wait_metric waits until the metric name is at least lo and at most hi; returns whether it
 * came to that. */
static bool wait_metric(const char *name, uint64_t lo, uint64_t hi, int ms)
{
    int64_t end = tn_now_ms() + ms;
    while (tn_now_ms() < end) {
        uint64_t v = 0;
        if (tn_metric(S.addr[0], KEY, name, &v) == 0 && v >= lo && v <= hi) {
            return true;
        }
        usleep(10 * 1000);
    }
    return false;
}

/* While more than --pace deliveries wait for an attempt slot, an ingest request waits (nothing is
 * lost or refused): until they are down to half, or for --pace-wait at most; a SIGTERM answers
 * the waiting one 503 with Retry-After. */
Test(serve_features, ingest_waits_while_the_ready_queues_are_over_pace, .timeout = 60)
{
    make_data_dir();
    rcv_start(&R, 200, "standard", STD_SECRET, NULL, NULL);
    SERVE(&S, "--time-scale", "0.01", "--pace", "4", "--pace-wait", "60000");
    char wh[64], batch[4096];
    rcv_webhook(1, wh, sizeof(wh));
    struct tn_resp r;
    /* ten at once with one attempt at a time: nine wait in the ready queue */
    tn_ndjson_events(batch, sizeof(batch), "evt_pa", "a", 0, 10);
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    cr_assert(wait_metric("hookring_deliveries_ready", 9, 9, 5000));
    /* the webhook and the ten events took a group commit each (attempt records ride along) */
    uint64_t batches = fmetric("hookring_journal_batches_total");
    cr_assert_geq(batches, 2);
    cr_assert_lt(batches, fmetric("hookring_journal_records_total") - 8, "%llu batches",
                 (unsigned long long)batches);
    struct timed_post p;
    timed_post_start(&p, "/v1/events", "{\"id\":\"evt_pw1\",\"type\":\"a\",\"data\":1}");
    cr_assert(wait_metric("hookring_ingest_waiting", 1, 1, 5000));
    cr_assert_gt(fmetric("hookring_deliveries_ready"), 2);
    pthread_join(p.th, NULL);
    /* taken once the queue was down to 2 (half of 4): 7 of the 10 answered by then */
    cr_assert_eq(p.status, 202);
    cr_assert_geq(p.rcv_at, 7, "taken with %d delivered of 10", p.rcv_at);
    cr_assert_geq(p.ms, 1000, "taken after %lld ms", (long long)p.ms);
    cr_assert_eq(fmetric("hookring_ingest_paced_total"), 1);
    cr_assert_eq(fmetric("hookring_ingest_waiting"), 0);
    cr_assert(wait_dlv("dlv_000000000000000a", "delivered", &r, 10000));
    tn_resp_free(&r);

    /* a SIGTERM answers the one waiting 503 (its event was never taken) and exits 0 */
    tn_ndjson_events(batch, sizeof(batch), "evt_pb", "a", 0, 10);
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    cr_assert(wait_metric("hookring_deliveries_ready", 9, 9, 5000));
    timed_post_start(&p, "/v1/events", "{\"id\":\"evt_pw2\",\"type\":\"a\",\"data\":2}");
    cr_assert(wait_metric("hookring_ingest_waiting", 1, 1, 5000));
    stop_clean(&S);
    pthread_join(p.th, NULL);
    cr_assert_eq(p.status, 503);
    cr_assert_str_eq(p.retry_after, "5");
    cr_assert_str_eq(p.answer, "{\"error\":\"shutting down\"}\n");
    cr_assert_eq(p.answer_len, 26, "a body of %zu bytes (its NUL sent too?)", p.answer_len);

    /* --pace-wait bounds the wait: taken after it, the queue still long */
    SERVE(&S, "--time-scale", "0.01", "--pace", "4", "--pace-wait", "300");
    /* what the second ten left pending is recovered, all due at once */
    cr_assert(wait_metric("hookring_deliveries_ready", 6, 9, 5000));
    int before = rcv_get(&R, &R.count);
    timed_post_start(&p, "/v1/events", "{\"id\":\"evt_pw2\",\"type\":\"a\",\"data\":2}");
    pthread_join(p.th, NULL);
    cr_assert_eq(p.status, 202);
    cr_assert_geq(p.ms, 250, "taken after %lld ms", (long long)p.ms);
    cr_assert_lt(p.rcv_at - before, 5, "the queue had drained: %d", p.rcv_at - before);
    /* nothing lost: all 22 events delivered and verified */
    cr_assert(wait_dlv("dlv_0000000000000015", "delivered", &r, 15000));
    tn_resp_free(&r);
    for (int i = 0; i < 22; i++) {
        char dlv[32];
        snprintf(dlv, sizeof(dlv), "dlv_%016x", i);
        cr_assert(wait_dlv(dlv, "delivered", &r, 10000), "%s is not delivered", dlv);
        tn_resp_free(&r);
    }
    cr_assert_eq(rcv_get(&R, &R.bad), 0);
    stop_clean(&S);
    rcv_stop(&R);
    remove_data_dir();
}

/* ---- per-event callbacks -------------------------------------------------------------------- */

Test(serve_features, a_callback_url_is_delivered_as_humcli_and_verified, .timeout = 40)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char ev[1024], hook[64], body[1024];
    /* a webhook takes the event too: the callback is one more delivery */
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/ok/w\",\"profile\":\"standard\",\"events\":[\"task.*\"],"
             "\"secret\":\"" STD_SECRET "\"}",
             H.addr[0]);
    create_webhook(body, hook, sizeof(hook));
    char url[128];
    snprintf(url, sizeof(url), "http://%s/humcli/ok/cb", H.addr[0]);
    snprintf(ev, sizeof(ev),
             "{\"id\":\"evt_cb1\",\"type\":\"task.status_changed\",\"callback_url\":\"%s\","
             "\"callback_secret\":\"" HUMCLI_SECRET "\",\"data\":{\"task_id\":\"task_cb1\","
             "\"status\":\"SUBMITTED\",\"previous_status\":\"IN_PROGRESS\"}}",
             url);
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", "/v1/events", ev, &r), 202, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"deliveries\":2"), "%s", r.body);
    tn_resp_free(&r);
    /* the webhook's delivery is the first, the callback's the second */
    cr_assert(wait_dlv("dlv_0000000000000001", "delivered", &r, 10000));
    cr_assert_not_null(strstr(r.body, "\"webhook_id\":null"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, url), "%s", r.body);
    cr_assert_null(strstr(r.body, HUMCLI_SECRET), "never the secret: %s", r.body);
    cr_assert_not_null(strstr(r.body, "\"message_id\":\"evt_cb1\""), "%s", r.body);
    tn_resp_free(&r);
    cr_assert(wait_dlv("dlv_0000000000000000", "delivered", &r, 10000));
    tn_resp_free(&r);
    /* the harness verified it as humcli (its id is task_id:status) */
    cr_assert_eq(harness_id("task_cb1:SUBMITTED", "verified"), 1);
    cr_assert_eq(harness_id("task_cb1:SUBMITTED", "bad_signature"), 0);
    /* it is not one of the webhook's deliveries */
    char path[128];
    snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries", hook);
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "\"count\":1"), "%s", r.body);
    tn_resp_free(&r);

    /* the batch endpoint takes callbacks too */
    snprintf(ev, sizeof(ev),
             "{\"id\":\"evt_cb2\",\"type\":\"x\",\"callback_url\":\"%s\","
             "\"callback_secret\":\"" HUMCLI_SECRET "\",\"data\":{\"task_id\":\"task_cb2\","
             "\"status\":\"VERIFIED\"}}\n",
             url);
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", ev, &r), 200, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"deliveries\":1"), "%s", r.body);
    tn_resp_free(&r);
    cr_assert(wait_dlv("dlv_0000000000000002", "delivered", &r, 10000));
    tn_resp_free(&r);
    cr_assert_eq(harness_id("task_cb2:VERIFIED", "verified"), 1);

    /* refused: a body humcli cannot carry, a secret without a URL, a guarded address */
    snprintf(ev, sizeof(ev),
             "{\"type\":\"x\",\"callback_url\":\"%s\",\"callback_secret\":\"s\",\"data\":{}}", url);
    expect_400("POST", "/v1/events", ev, "task_id");
    expect_400("POST", "/v1/events",
               "{\"type\":\"x\",\"callback_secret\":\"s\",\"data\":{\"task_id\":\"t\","
               "\"status\":\"VERIFIED\"}}",
               "callback_url");
    expect_400("POST", "/v1/events",
               "{\"type\":\"x\",\"callback_url\":\"http://10.9.9.9/cb\",\"callback_secret\":\"s\","
               "\"data\":{\"task_id\":\"t\",\"status\":\"VERIFIED\"}}",
               "callback_url");
    stop_clean(&S);

    /* without --allow-net an http:// callback is refused, saying why */
    start_serve(&S, false, (const char *const[]){"--time-scale", "0.01", NULL});
    snprintf(ev, sizeof(ev),
             "{\"type\":\"x\",\"callback_url\":\"%s\",\"callback_secret\":\"s\","
             "\"data\":{\"task_id\":\"t\",\"status\":\"VERIFIED\"}}",
             url);
    cr_assert_eq(api(&S, "POST", "/v1/events", ev, &r), 400, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "callback_url"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "https://"), "%s", r.body);
    tn_resp_free(&r);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

Test(serve_features, callback_destinations_are_bounded_and_freed_once_final, .timeout = 60)
{
    make_data_dir();
    /* a port nobody listens on: every attempt is refused at once; with --time-scale 0 the
     * retries follow at once too, so each callback ends failed after humcli's 10 attempts */
    uint16_t closed = tn_closed_port();
    cr_assert_neq(closed, 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/cb", closed);
    SERVE(&S, "--time-scale", "0");
    /* one batch of 1025: the lines are all taken before any delivery starts */
    size_t cap = 1100 * 256, n = 0;
    char *batch = malloc(cap);
    cr_assert_not_null(batch);
    for (int i = 1; i <= 1025; i++) {
        n += (size_t)snprintf(batch + n, cap - n,
                              "{\"id\":\"evt_b%d\",\"type\":\"x\",\"callback_url\":\"%s\","
                              "\"callback_secret\":\"s\",\"data\":{\"task_id\":\"t%d\","
                              "\"status\":\"VERIFIED\"}}\n",
                              i, url, i);
    }
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "{\"id\":\"evt_b1024\",\"deliveries\":1}"), "%.300s", r.body);
    cr_assert_not_null(
        strstr(r.body, "{\"line\":1025,\"error\":\"1024 callback deliveries are pending; retry\"}"),
        "%.300s", r.body + (r.body_len > 300 ? r.body_len - 300 : 0));
    tn_resp_free(&r);
    free(batch);
    /* each ends failed, and its destination is freed: new callbacks are taken again */
    cr_assert(wait_dlv("dlv_00000000000003ff", "failed", &r, 30000));
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":10"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"error\":\"retries_exhausted\""), "%s", r.body);
    tn_resp_free(&r);
    char ev[512];
    snprintf(ev, sizeof(ev),
             "{\"id\":\"evt_b1025\",\"type\":\"x\",\"callback_url\":\"%s\","
             "\"callback_secret\":\"s\",\"data\":{\"task_id\":\"t1025\",\"status\":\"VERIFIED\"}}",
             url);
    int64_t end = tn_now_ms() + 30000;
    int st;
    while ((st = api(&S, "POST", "/v1/events", ev, &r)) == 503 && tn_now_ms() < end) {
        tn_resp_free(&r);
        usleep(50 * 1000);
    }
    cr_assert_eq(st, 202, "%s", r.body);
    tn_resp_free(&r);
    stop_clean(&S);
    remove_data_dir();
}

Test(serve_features, a_restart_resumes_a_pending_callback_delivery, .timeout = 40)
{
    make_data_dir();
    start_harness(&H);
    /* humcli's first retry is 5 s; times 0.4: 2 s */
    SERVE(&S, "--time-scale", "0.4");
    char ev[1024], url[128];
    snprintf(url, sizeof(url), "http://%s/humcli/flaky/1/cb", H.addr[0]);
    snprintf(ev, sizeof(ev),
             "{\"id\":\"evt_cbr\",\"type\":\"task.status_changed\",\"callback_url\":\"%s\","
             "\"callback_secret\":\"" HUMCLI_SECRET "\",\"data\":{\"task_id\":\"task_r\","
             "\"status\":\"COMPLETED\"}}",
             url);
    post_ok(ev);
    int64_t end = tn_now_ms() + 10000;
    while (harness_id("task_r:COMPLETED", "attempts") < 1 && tn_now_ms() < end) {
        usleep(10 * 1000);
    }
    struct tn_resp r;
    cr_assert(wait_dlv("dlv_0000000000000000", "pending", &r, 2000));
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":1"), "%s", r.body);
    tn_resp_free(&r);
    /* a duplicate is answered once everything journaled before it is durable: the attempt's
     * record too (otherwise a crash only repeats the attempt) */
    cr_assert_eq(api(&S, "POST", "/v1/events", ev, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    tn_stop(&S, SIGKILL);
    cr_assert(!harness_processed("task_r:COMPLETED"));

    SERVE(&S, "--time-scale", "0.4");
    cr_assert(wait_dlv("dlv_0000000000000000", "delivered", &r, 15000));
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":2"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"webhook_id\":null"), "%s", r.body);
    tn_resp_free(&r);
    cr_assert(harness_processed("task_r:COMPLETED"));
    cr_assert_eq(harness_id("task_r:COMPLETED", "duplicates"), 0);
    cr_assert_eq(harness_id("task_r:COMPLETED", "verified"), 2);
    cr_assert_eq(harness_id("task_r:COMPLETED", "bad_signature"), 0);

    /* a finished callback is still there after another restart */
    stop_clean(&S);
    SERVE(&S, "--time-scale", "0.4");
    cr_assert(wait_dlv("dlv_0000000000000000", "delivered", &r, 2000));
    tn_resp_free(&r);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- disabled after a period of failing ----------------------------------------------------- */

static size_t count_of(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *p = strstr(text, what); p; p = strstr(p + 1, what)) {
        n++;
    }
    return n;
}

Test(serve_features, a_webhook_failing_for_the_period_is_disabled_across_a_restart, .timeout = 60)
{
    make_data_dir();
    start_harness(&H);
    /* --disable-after 400 s times 0.01: 4 s */
    const char *const extra[] = {"--time-scale", "0.01", "--failing-after", "1", "--disable-after",
                                 "400",          NULL};
    start_serve(&S, true, extra);
    char wh[64], body[1024], path[128], st[32];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/status/500/x\",\"profile\":\"standard\","
             "\"events\":[\"*\"],\"secret\":\"" STD_SECRET "\",\"retry_schedule\":[]}",
             H.addr[0]);
    create_webhook(body, wh, sizeof(wh));
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    post_ok("{\"id\":\"evt_f1\",\"type\":\"a\",\"data\":1}");
    int64_t end = tn_now_ms() + 10000;
    do {
        usleep(10 * 1000);
        wh_status(wh, st, sizeof(st));
    } while (strcmp(st, "failing") != 0 && tn_now_ms() < end);
    cr_assert_str_eq(st, "failing");
    int64_t failing_at = tn_now_ms();
    /* a delivery left pending (its retry 1000 s times 0.01 away) when the period ends */
    struct tn_resp r;
    cr_assert_eq(api(&S, "PATCH", path, "{\"retry_schedule\":[1000]}", &r), 200, "%s", r.body);
    tn_resp_free(&r);
    post_ok("{\"id\":\"evt_f2\",\"type\":\"a\",\"data\":2}");
    cr_assert(wait_dlv("dlv_0000000000000001", "pending", &r, 5000));
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":1"), "%s", r.body);
    tn_resp_free(&r);

    /* a restart 2.5 s into the period: the count goes on from the journaled start */
    while (tn_now_ms() < failing_at + 2500) {
        usleep(10 * 1000);
    }
    tn_stop(&S, SIGKILL);
    start_serve(&S, true, extra);
    wh_status(wh, st, sizeof(st));
    cr_assert_str_eq(st, "failing", "not yet: the period is 4 s");
    end = failing_at + 10000;
    do {
        usleep(10 * 1000);
        wh_status(wh, st, sizeof(st));
    } while (strcmp(st, "disabled") != 0 && tn_now_ms() < end);
    int64_t took = tn_now_ms() - failing_at;
    cr_assert_str_eq(st, "disabled");
    cr_assert_geq(took, 3900, "disabled too soon: %lld ms", (long long)took);
    /* counted afresh from the restart it would take 2.5 + 4 s */
    cr_assert_lt(took, 6000, "the failing period restarted with the server: %lld ms",
                 (long long)took);
    /* its pending delivery ended failed at once */
    cr_assert(wait_dlv("dlv_0000000000000001", "failed", &r, 2000));
    cr_assert_not_null(strstr(r.body, "\"error\":\"webhook_disabled\""), "%s", r.body);
    tn_resp_free(&r);
    /* events no longer go to it */
    cr_assert_eq(api(&S, "POST", "/v1/events", "{\"id\":\"evt_f3\",\"type\":\"a\",\"data\":3}", &r),
                 202);
    cr_assert_not_null(strstr(r.body, "\"deliveries\":0"), "%s", r.body);
    tn_resp_free(&r);
    stop_clean(&S);
    cr_assert_eq(count_of(S.out, "operator: endpoint.disabled webhook"), 1, "%s", S.out);
    cr_assert_not_null(strstr(S.out, "failing_period"), "%s", S.out);

    /* disabled survives a restart; "active" by PATCH starts afresh */
    start_serve(&S, true, extra);
    wh_status(wh, st, sizeof(st));
    cr_assert_str_eq(st, "disabled");
    cr_assert_eq(api(&S, "PATCH", path, "{\"status\":\"active\"}", &r), 200, "%s", r.body);
    tn_resp_free(&r);
    usleep(500 * 1000);
    wh_status(wh, st, sizeof(st));
    cr_assert_str_eq(st, "active");
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

Test(serve_features, a_410_ends_the_pending_deliveries_of_its_webhook_at_once, .timeout = 30)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], body[1024], path[128], st[32];
    /* a delivery waits for its retry, 1000 s times 0.01 away */
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/status/500/x\",\"profile\":\"standard\","
             "\"events\":[\"*\"],\"secret\":\"" STD_SECRET "\",\"retry_schedule\":[1000]}",
             H.addr[0]);
    create_webhook(body, wh, sizeof(wh));
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    post_ok("{\"id\":\"evt_g1\",\"type\":\"a\",\"data\":1}");
    struct tn_resp r;
    cr_assert(wait_dlv("dlv_0000000000000000", "pending", &r, 5000));
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":1"), "%s", r.body);
    tn_resp_free(&r);
    /* then the receiver says it is gone */
    snprintf(body, sizeof(body), "{\"url\":\"http://%s/std/gone/x\"}", H.addr[0]);
    cr_assert_eq(api(&S, "PATCH", path, body, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    post_ok("{\"id\":\"evt_g2\",\"type\":\"a\",\"data\":2}");
    cr_assert(wait_dlv("dlv_0000000000000001", "failed", &r, 5000));
    cr_assert_not_null(strstr(r.body, "\"error\":\"gone\""), "%s", r.body);
    tn_resp_free(&r);
    wh_status(wh, st, sizeof(st));
    cr_assert_str_eq(st, "disabled");
    /* the one waiting for its retry ended too, without another attempt */
    cr_assert(wait_dlv("dlv_0000000000000000", "failed", &r, 1000));
    cr_assert_not_null(strstr(r.body, "\"error\":\"webhook_disabled\""), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":1"), "%s", r.body);
    tn_resp_free(&r);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- humanos api_version -------------------------------------------------------------------- */

/* hos_event posts a humanos event and waits until the receiver has taken its nth request;
 * returns the api_version of the decrypted plaintext in out. */
static void hos_event(const char *id, int nth, char *out, size_t n)
{
    char ev[1024];
    snprintf(ev, sizeof(ev), "{\"id\":\"%s\",\"type\":\"credential\",\"data\":" HOS_DATA "}", id);
    post_ok(ev);
    cr_assert(rcv_wait(&R, nth, 10000));
    pthread_mutex_lock(&R.mu);
    bool ok = jstr(R.last_plain, "api_version", out, n);
    pthread_mutex_unlock(&R.mu);
    cr_assert(ok, "no api_version in %s", R.last_plain);
}

Test(serve_features, humanos_api_version_is_pinned_at_the_first_delivery_and_changed_by_patch,
     .timeout = 40)
{
    make_data_dir();
    rcv_start(&R, 0, "humanos", HOS_SECRET, HOS_ENC, HOS_SALT);
    SERVE(&S, "--time-scale", "0.01", "--humanos-api-version", "2024-01-01");
    char wh[64], body[1024], path[128], v[64];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/h\",\"profile\":\"humanos\",\"events\":[\"*\"],"
             "\"secret\":\"" HOS_SECRET "\",\"enc_secret\":\"" HOS_ENC "\",\"enc_salt\":\"" HOS_SALT
             "\"}",
             R.addr);
    create_webhook(body, wh, sizeof(wh));
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    struct tn_resp r;
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "\"api_version\":null"), "not pinned yet: %s", r.body);
    tn_resp_free(&r);

    hos_event("evt_v1", 1, v, sizeof(v));
    cr_assert_str_eq(v, "2024-01-01");
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "\"api_version\":\"2024-01-01\""), "%s", r.body);
    tn_resp_free(&r);

    /* the server's default changes: the webhook keeps its pinned version */
    stop_clean(&S);
    SERVE(&S, "--time-scale", "0.01", "--humanos-api-version", "2025-06-01");
    hos_event("evt_v2", 2, v, sizeof(v));
    cr_assert_str_eq(v, "2024-01-01");

    /* until changed through the API */
    cr_assert_eq(api(&S, "PATCH", path, "{\"api_version\":\"2025-06-01\"}", &r), 200, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"api_version\":\"2025-06-01\""), "%s", r.body);
    tn_resp_free(&r);
    hos_event("evt_v3", 3, v, sizeof(v));
    cr_assert_str_eq(v, "2025-06-01");
    cr_assert_eq(rcv_get(&R, &R.bad), 0);
    cr_assert_eq(rcv_get(&R, &R.verified), 3);

    /* journaled */
    sync_journal(path);
    tn_stop(&S, SIGKILL);
    SERVE(&S, "--time-scale", "0.01", "--humanos-api-version", "v1");
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "\"api_version\":\"2025-06-01\""), "%s", r.body);
    tn_resp_free(&r);
    hos_event("evt_v4", 4, v, sizeof(v));
    cr_assert_str_eq(v, "2025-06-01");

    expect_400("PATCH", path, "{\"api_version\":\"\"}", "api_version");
    expect_400("PATCH", path, "{\"api_version\":\"a b\"}", "api_version");
    expect_400("PATCH", path, "{\"api_version\":\"0123456789012345678901234\"}", "api_version");
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/h\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"api_version\":\"v2\"}",
             R.addr);
    expect_400("POST", "/v1/webhooks", body, "api_version");
    stop_clean(&S);
    rcv_stop(&R);
    remove_data_dir();
}

/* ---- the CLI -------------------------------------------------------------------------------- */

Test(serve_features, new_options_do_not_take_the_network_options_letters, .timeout = 20)
{
    make_data_dir();
    /* --dns-server is 'D' in the shared network options: no serve option may take it */
    SERVE(&S, "--dns-server", "127.0.0.1", "--disable-after", "100", "--humanos-api-version", "v9",
          "--dedup-capacity", "5000");
    stop_clean(&S);
    static const char *const bad[][3] = {{"--disable-after", "0", "--disable-after"},
                                         {"--humanos-api-version", "a b", "--humanos-api-version"},
                                         {"--dedup-capacity", "5", "--dedup-capacity"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd),
                 "%s/hookring serve --data %s --listen 127.0.0.1:0 --api-key k %s '%s' 2>&1 | "
                 "grep -q -- '%s must'",
                 tn_build_dir(), data_dir, bad[i][0], bad[i][1], bad[i][2]);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
    }
    remove_data_dir();
}

/* test_serve.c: hookring serve end to end: the real server and the real harness on loopback,
 * each test with its own temporary --data directory. The API's round trips and 4xx paths, every
 * profile delivered and verified by the harness, dedup at ingest (also 100 concurrent posts of
 * one id), retries on a flaky route, a restart in the middle of a retry schedule, and a kill test:
 * SIGKILL at random moments while events are being posted, 20 cycles, then every acknowledged
 * event must have been delivered and verified. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/killrig.h"
#include "support/testnet.h"

TestSuite(serve);

#define KEY "test-api-key-1"
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define DLV_LEN 20 /* "dlv_" and 16 hex digits */

struct prof {
    const char *name;
    const char *secret;
    const char *enc;
    const char *salt;
};

static const struct prof profs[] = {
    {"humanconnection", "whsec_your_signing_secret", NULL, NULL},
    {"humiris", "whsec_k9m2x4p7q1humiris", NULL, NULL},
    {"humcli", "whsec_my_secret_key_123", NULL, NULL},
    {"humanos", "your-signature-secret",
     "eW91ci1lbmNyeXB0aW9uLXNlY3JldA==", "your-encryption-salt"},
    {"aksita", "aksita-webhook-secret", NULL, NULL},
    {"standard", STD_SECRET, NULL, NULL},
    {"svix", STD_SECRET, NULL, NULL},
    {"stripe", "whsec_stripe_test_secret_4eC39HqLyjWDarjtT1", NULL, NULL},
    {"github", "It's a Secret to Everybody", NULL, NULL},
};

/* ---- processes ------------------------------------------------------------------------------ */

static struct tn_proc H, S;
static char data_dir[64];

static void make_data_dir(void)
{
    cr_assert_eq(tn_tmpdir(data_dir, sizeof(data_dir), "hookring-serve"), 0);
}

static void remove_data_dir(void)
{
    cr_assert_eq(tn_rm_rf(data_dir), 0);
}

/* start_harness runs the harness with a verifying route per profile (/NAME/) and /std/. */
static void start_harness(struct tn_proc *h)
{
    static char specs[16][256];
    const char *args[48] = {"--listen", "127.0.0.1:0", "--quiet"};
    size_t n = 3;
    for (size_t i = 0; i < sizeof(profs) / sizeof(profs[0]); i++) {
        const struct prof *p = &profs[i];
        if (p->enc) {
            snprintf(specs[i], sizeof(specs[i]), "/%s/=%s:%s:%s:%s", p->name, p->name, p->secret,
                     p->enc, p->salt);
        } else {
            snprintf(specs[i], sizeof(specs[i]), "/%s/=%s:%s", p->name, p->name, p->secret);
        }
        args[n++] = "--route";
        args[n++] = specs[i];
    }
    args[n++] = "--route";
    args[n++] = "/std/=standard:" STD_SECRET;
    args[n] = NULL;
    cr_assert_eq(tn_start(h, "hookring-harness", args, 1), 0, "the harness did not start");
}

/* start_serve runs hookring serve on data_dir at listen with extra arguments, and with
 * --workers N when HOOKRING_SERVE_WORKERS=N is set (tests/run.sh runs the suite again so). */
static void start_serve_at(struct tn_proc *s, const char *listen, const char *const *extra)
{
    cr_assert_eq(tn_serve(s, data_dir, KEY, listen, true, extra), 0,
                 "hookring serve did not start");
}

#define SERVE(s, ...) start_serve_at(s, "127.0.0.1:0", (const char *const[]){__VA_ARGS__, NULL})

static void stop_clean(struct tn_proc *p)
{
    int st = tn_stop(p, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d; output:\n%s", st, p->out);
}

/* ---- the API -------------------------------------------------------------------------------- */

/* api sends one request (key: the bearer key, or NULL for none) and returns the status. */
static int api_key(const struct tn_proc *s, const char *key, const char *method, const char *path,
                   const char *body, struct tn_resp *r)
{
    return tn_api(s->addr[0], key, method, path, body, r);
}

static int api(const struct tn_proc *s, const char *method, const char *path, const char *body,
               struct tn_resp *r)
{
    return api_key(s, KEY, method, path, body, r);
}

/* jstr copies the first string member named key of a JSON text into out. */
static bool jstr(const char *json, const char *key, char *out, size_t n)
{
    return tn_json_str(json, key, out, n);
}

/* create_webhook registers a webhook and returns its id in id. */
static void create_webhook(const struct tn_proc *s, const char *body, char *id, size_t n)
{
    struct tn_resp r;
    cr_assert_eq(api(s, "POST", "/v1/webhooks", body, &r), 201, "create: %s", r.body);
    cr_assert(jstr(r.body, "id", id, n));
    tn_resp_free(&r);
}

/* std_webhook registers a standard webhook (STD_SECRET) to the harness's ROUTE (e.g.
 * "/std/ok/") for events [FILTER], with EXTRA members ("" or e.g. ",\"max_in_flight\":4"). */
static void std_webhook(const char *route, const char *filter, const char *extra, char *id,
                        size_t n)
{
    cr_assert_eq(tn_std_webhook(S.addr[0], KEY, H.addr[0], route, filter, STD_SECRET, extra, id, n),
                 0, "create: %s", id);
}

static int post_event(const struct tn_proc *s, const char *json, struct tn_resp *r)
{
    return api(s, "POST", "/v1/events", json, r);
}

/* wait_delivery polls webhook wh's newest delivery until its status is want; returns its JSON
 * (GET /v1/deliveries/{dlv}) in r. */
static bool wait_delivery(const struct tn_proc *s, const char *wh, const char *want,
                          struct tn_resp *r, int ms)
{
    char path[128], dlv[64], st[32];
    snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries?limit=1", wh);
    int64_t end = tn_now_ms() + ms;
    while (tn_now_ms() < end) {
        struct tn_resp l;
        if (api(s, "GET", path, NULL, &l) == 200 && jstr(l.body, "id", dlv, sizeof(dlv))) {
            tn_resp_free(&l);
            char dp[128];
            snprintf(dp, sizeof(dp), "/v1/deliveries/%s", dlv);
            if (api(s, "GET", dp, NULL, r) == 200 && jstr(r->body, "status", st, sizeof(st)) &&
                strcmp(st, want) == 0) {
                return true;
            }
            tn_resp_free(r);
        } else {
            tn_resp_free(&l);
        }
        usleep(20 * 1000);
    }
    return false;
}

static uint64_t harness_id(const struct tn_proc *h, const char *id, const char *field)
{
    return tn_harness_id(h->addr[0], id, field);
}

/* ---- API round trips and errors ------------------------------------------------------------- */

// cppcheck-suppress unknownMacro
Test(serve, webhook_round_trip, .timeout = 30)
{
    make_data_dir();
    SERVE(&S, "--time-scale", "0.01");
    struct tn_resp r;
    char id[64], secret[128], st[32];
    cr_assert_eq(api(&S, "POST", "/v1/webhooks",
                     "{\"url\":\"http://127.0.0.1:9/std/ok/x\",\"profile\":\"standard\","
                     "\"events\":[\"meeting.*\"],\"agent\":\"bot\"}",
                     &r),
                 201, "%s", r.body);
    cr_assert(jstr(r.body, "id", id, sizeof(id)));
    cr_assert_eq(strncmp(id, "whk_", 4), 0);
    cr_assert(jstr(r.body, "signing_secret", secret, sizeof(secret)));
    cr_assert_eq(strncmp(secret, "whsec_", 6), 0, "generated secret %s", secret);
    cr_assert_eq(strlen(secret), 6 + 32, "whsec_ + base64 of 24 bytes: %s", secret);
    cr_assert(jstr(r.body, "status", st, sizeof(st)) && strcmp(st, "active") == 0);
    cr_assert_not_null(strstr(r.body, "\"agent\":\"bot\""));
    tn_resp_free(&r);

    char path[128];
    snprintf(path, sizeof(path), "/v1/webhooks/%s", id);
    cr_assert_eq(api(&S, "GET", "/v1/webhooks", NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, id));
    cr_assert_null(strstr(r.body, secret), "a listing must not show secrets");
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "meeting.*"));
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "PATCH", path, "{\"events\":[\"*\"],\"status\":\"disabled\"}", &r), 200,
                 "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"events\":[\"*\"]"));
    cr_assert(jstr(r.body, "status", st, sizeof(st)) && strcmp(st, "disabled") == 0);
    tn_resp_free(&r);

    /* the change is durable: a restart shows it */
    tn_stop(&S, SIGKILL);
    SERVE(&S, "--time-scale", "0.01");
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "\"events\":[\"*\"]"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"status\":\"disabled\""), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "DELETE", path, NULL, &r), 200);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 404);
    tn_resp_free(&r);
    cr_assert_eq(api_key(&S, NULL, "GET", "/v1/health", NULL, &r), 200, "health needs no key");
    tn_resp_free(&r);
    stop_clean(&S);
    remove_data_dir();
}

/* expect_400 posts body to path and checks the error names field. */
static void expect_400(const char *path, const char *body, const char *field)
{
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", path, body, &r), 400, "%s -> %d %s", body, r.status, r.body);
    cr_assert_not_null(strstr(r.body, field), "the error for %s should name %s: %s", body, field,
                       r.body);
    tn_resp_free(&r);
}

/* expect_name_refused posts body, one of whose member names cannot be read, to path: the 400
 * says so and holds nothing else (it once quoted the name and what lay after it in memory). */
static void expect_name_refused(const char *path, const char *body)
{
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", path, body, &r), 400, "%s -> %d %s", body, r.status, r.body);
    cr_assert_str_eq(r.body,
                     "{\"error\":\"a member name is too long, badly escaped or has a NUL\"}\n");
    tn_resp_free(&r);
}

Test(serve, every_4xx_path, .timeout = 30)
{
    make_data_dir();
    SERVE(&S, "--max-body", "2048");
    struct tn_resp r;
    cr_assert_eq(api_key(&S, NULL, "GET", "/v1/webhooks", NULL, &r), 401);
    tn_resp_free(&r);
    cr_assert_eq(api_key(&S, "wrong-key", "GET", "/v1/webhooks", NULL, &r), 401);
    tn_resp_free(&r);
    cr_assert_eq(api_key(&S, KEY "x", "POST", "/v1/events", "{}", &r), 401);
    tn_resp_free(&r);
    cr_assert_eq(api_key(&S, NULL, "GET", "/metrics", NULL, &r), 401);
    tn_resp_free(&r);

    expect_400("/v1/webhooks", "{\"profile\":\"standard\",\"events\":[\"a\"]}", "url");
    expect_400("/v1/webhooks", "{\"url\":\"ftp://x/\",\"profile\":\"standard\",\"events\":[\"a\"]}",
               "url");
    expect_400("/v1/webhooks",
               "{\"url\":\"http://127.0.0.1:9/\",\"profile\":\"nope\","
               "\"events\":[\"a\"]}",
               "profile");
    expect_400("/v1/webhooks",
               "{\"url\":\"http://127.0.0.1:9/\",\"profile\":\"standard\","
               "\"events\":\"a\"}",
               "events");
    expect_400("/v1/webhooks",
               "{\"url\":\"http://127.0.0.1:9/\",\"profile\":\"standard\","
               "\"events\":[\"Bad Type\"]}",
               "events");
    expect_400("/v1/webhooks",
               "{\"url\":\"http://127.0.0.1:9/\",\"profile\":\"standard\","
               "\"events\":[\"a\"],\"colour\":1}",
               "colour");
    expect_400("/v1/webhooks",
               "{\"url\":\"http://127.0.0.1:9/\",\"profile\":\"standard\","
               "\"events\":[\"a\"],\"secret\":\"whsec_!!\"}",
               "secret");
    expect_400("/v1/webhooks",
               "{\"url\":\"http://127.0.0.1:9/\",\"profile\":\"standard\","
               "\"events\":[\"a\"],\"timeout_ms\":0}",
               "timeout_ms");
    expect_400("/v1/webhooks",
               "{\"url\":\"http://127.0.0.1:9/\",\"profile\":\"standard\","
               "\"events\":[\"a\"],\"retry_schedule\":[-1]}",
               "retry_schedule");
    /* the address guard: without --allow-net this would be refused; here 10/8 is */
    expect_400("/v1/webhooks",
               "{\"url\":\"http://10.1.2.3/\",\"profile\":\"standard\","
               "\"events\":[\"a\"]}",
               "url");
    expect_400("/v1/webhooks", "{not json", "JSON");
    /* member names of exactly the reader's 64 bytes (then without room for their NUL), on
     * create and rotate-secret, and one with a NUL that would make it compare as "url" */
    static const char name64[] = "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh";
    cr_assert_eq(strlen(name64), 64);
    char body[256], wh[64], rotate[128];
    create_webhook(&S,
                   "{\"url\":\"http://127.0.0.1:9/\",\"profile\":\"standard\",\"events\":[\"a\"]}",
                   wh, sizeof(wh));
    snprintf(rotate, sizeof(rotate), "/v1/webhooks/%s/rotate-secret", wh);
    snprintf(body, sizeof(body), "{\"url\":\"http://127.0.0.1:9/\",\"%s\":1}", name64);
    expect_name_refused("/v1/webhooks", body);
    snprintf(body, sizeof(body), "{\"%s\":1}", name64);
    expect_name_refused(rotate, body);
    expect_name_refused("/v1/webhooks", "{\"url\\u0000x\":\"http://127.0.0.1:9/\","
                                        "\"profile\":\"standard\",\"events\":[\"a\"]}");
    expect_400("/v1/events", "{\"data\":{}}", "type");
    expect_400("/v1/events", "{\"type\":\"a\",\"data\":{},\"id\":\"a.b\"}", "id");
    expect_400("/v1/events", "{\"type\":\"a\"}", "data");

    cr_assert_eq(api(&S, "GET", "/v1/webhooks/whk_0000000000000000", NULL, &r), 404);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "GET", "/v1/deliveries/dlv_00000000000000ff", NULL, &r), 404);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "GET", "/v1/nothing", NULL, &r), 404);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "PUT", "/v1/events", "{}", &r), 405);
    tn_resp_free(&r);

    char big[4096];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    cr_assert_eq(api(&S, "POST", "/v1/events", big, &r), 413);
    tn_resp_free(&r);
    stop_clean(&S);
    remove_data_dir();
}

/* ---- API connections ------------------------------------------------------------------------ */

#define MAXC 16

/* health_on sends GET /v1/health on fd (kept alive) and returns the answer's status, or the
 * negative error of reading it. */
static int health_on(int fd)
{
    static const char req[] = "GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(tn_send_all(fd, req, sizeof(req) - 1), 0);
    struct tn_resp r;
    int rc = tn_read_response(fd, &r);
    if (rc < 0) {
        return rc;
    }
    int st = r.status;
    tn_resp_free(&r);
    return st;
}

static uint64_t metric_of(const char *name)
{
    uint64_t v = 0;
    cr_assert_eq(tn_metric(S.addr[0], KEY, name, &v), 0, "no metric %s", name);
    return v;
}

/* Clients pool keep-alive connections: with every API connection taken by idle ones, a new
 * client still gets its answer, in the place of the one that waited longest (closed for it).
 * A connection in the middle of a request is never closed so: with all of them so, a new one
 * is refused (closed at once). */
Test(serve, a_new_api_connection_takes_the_place_of_the_longest_idle_one, .timeout = 30)
{
    make_data_dir();
    SERVE(&S, "--max-connections", "16");
    int fds[MAXC];
    for (int i = 0; i < MAXC; i++) {
        fds[i] = tn_connect(S.addr[0]);
        cr_assert_geq(fds[i], 0);
        cr_assert_eq(health_on(fds[i]), 200, "connection %d", i);
        usleep(2000); /* each has waited longer than the next */
    }
    /* all 16 taken: this one (its own connection) closes fds[0] for its place */
    struct tn_resp r;
    cr_assert_eq(api(&S, "GET", "/v1/health", NULL, &r), 200);
    tn_resp_free(&r);
    cr_assert(tn_wait_readable(fds[0], 3000), "the longest idle connection was not closed");
    char b;
    cr_assert_eq(read(fds[0], &b, 1), 0, "closed without an answer");
    close(fds[0]);
    for (int i = 1; i < MAXC; i++) {
        cr_assert_eq(health_on(fds[i]), 200, "connection %d was closed, not the oldest", i);
    }
    cr_assert_geq(metric_of("hookring_api_connections_evicted_total"), 1);
    for (int i = 1; i < MAXC; i++) {
        close(fds[i]);
    }

    /* every connection in the middle of a request (its head sent, its body not) */
    static const char part[] = "POST /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " KEY
                               "\r\nContent-Length: 100\r\n\r\n{";
    int64_t end = tn_now_ms() + 5000;
    while (metric_of("hookring_api_connections") > 1 && tn_now_ms() < end) {
        usleep(10000); /* the closed ones are let go */
    }
    uint64_t evicted = metric_of("hookring_api_connections_evicted_total");
    for (int i = 0; i < MAXC; i++) {
        fds[i] = tn_connect(S.addr[0]);
        cr_assert_geq(fds[i], 0);
        cr_assert_eq(tn_send_all(fds[i], part, sizeof(part) - 1), 0);
    }
    usleep(200 * 1000);
    int fd = tn_connect(S.addr[0]);
    cr_assert_geq(fd, 0);
    cr_assert_lt(health_on(fd), 0, "a connection beyond 16 busy ones was served");
    close(fd);
    for (int i = 0; i < MAXC; i++) {
        cr_assert(!tn_wait_readable(fds[i], 0), "a connection mid-request was closed");
        close(fds[i]);
    }
    end = tn_now_ms() + 5000;
    while (metric_of("hookring_api_connections") > 1 && tn_now_ms() < end) {
        usleep(10000);
    }
    cr_assert_eq(metric_of("hookring_api_connections_evicted_total"), evicted);
    cr_assert_geq(metric_of("hookring_api_connections_refused_total"), 1);
    stop_clean(&S);
    remove_data_dir();
}

/* ---- every profile -------------------------------------------------------------------------- */

/* event_for builds an event of profile p's test data with id and agent = the profile name. */
static void event_for(const struct prof *p, const char *id, char *out, size_t n)
{
    char path[128], file[8192];
    snprintf(path, sizeof(path), "tests/data/events/%s.json", p->name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    size_t len = fread(file, 1, sizeof(file) - 1, f);
    fclose(f);
    file[len] = 0;
    while (len && (file[len - 1] == '\n' || file[len - 1] == '}')) {
        if (file[--len] == '}') {
            break;
        }
    }
    file[len] = 0; /* the event's closing brace is gone */
    char type[128];
    cr_assert(jstr(file, "type", type, sizeof(type)));
    const char *data = strstr(file, "\"data\":");
    cr_assert_not_null(data);
    snprintf(out, n, "{\"id\":\"%s\",\"type\":\"%s\",\"agent\":\"%s\",%s}", id, type, p->name,
             data);
}

Test(serve, all_nine_profiles_are_delivered_and_verified, .timeout = 40)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char wh[9][64];
    for (size_t i = 0; i < 9; i++) {
        const struct prof *p = &profs[i];
        char body[1024];
        int n = snprintf(body, sizeof(body),
                         "{\"url\":\"http://%s/%s/ok/x\",\"profile\":\"%s\",\"events\":[\"*\"],"
                         "\"agent\":\"%s\",\"secret\":\"%s\"",
                         H.addr[0], p->name, p->name, p->name, p->secret);
        if (p->enc) {
            n += snprintf(body + n, sizeof(body) - (size_t)n,
                          ",\"enc_secret\":\"%s\",\"enc_salt\":\"%s\"", p->enc, p->salt);
        }
        snprintf(body + n, sizeof(body) - (size_t)n, "}");
        create_webhook(&S, body, wh[i], sizeof(wh[i]));
    }
    for (size_t i = 0; i < 9; i++) {
        char ev[8192], id[64];
        snprintf(id, sizeof(id), "evt_all_%s", profs[i].name);
        event_for(&profs[i], id, ev, sizeof(ev));
        struct tn_resp r;
        cr_assert_eq(post_event(&S, ev, &r), 202, "%s: %s", profs[i].name, r.body);
        cr_assert_not_null(strstr(r.body, "\"deliveries\":1"), "%s: agent filter: %s",
                           profs[i].name, r.body);
        tn_resp_free(&r);
    }
    for (size_t i = 0; i < 9; i++) {
        struct tn_resp r;
        cr_assert(wait_delivery(&S, wh[i], "delivered", &r, 10000), "%s not delivered",
                  profs[i].name);
        /* delivered means the harness answered 200, which it does only to a verified request */
        cr_assert_not_null(strstr(r.body, "\"attempt_count\":1"), "%s: %s", profs[i].name, r.body);
        cr_assert_not_null(strstr(r.body, "\"status\":200"), "%s: %s", profs[i].name, r.body);
        tn_resp_free(&r);
    }
    struct tn_resp r;
    cr_assert_eq(tn_get(H.addr[0], "/_harness/stats", &r), 200);
    uint64_t bad = 1;
    cr_assert(tn_json_u64(r.body, "totals.bad_signature", &bad) ||
                  tn_json_u64(r.body, "bad_signature", &bad),
              "%s", r.body);
    cr_assert_eq(bad, 0, "%s", r.body);
    tn_resp_free(&r);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- dedup ---------------------------------------------------------------------------------- */

static const struct tn_proc *conc_s;
static int conc_status[100];

static void *conc_post(void *arg)
{
    size_t i = (size_t)arg;
    struct tn_resp r;
    conc_status[i] =
        post_event(conc_s, "{\"id\":\"evt_conc_1\",\"type\":\"a.b\",\"data\":{\"n\":1}}", &r);
    tn_resp_free(&r);
    return NULL;
}

Test(serve, dedup_at_ingest_and_100_concurrent_posts_one_new, .timeout = 40)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], body[512];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/ok/x\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"secret\":\"" STD_SECRET "\"}",
             H.addr[0]);
    create_webhook(&S, body, wh, sizeof(wh));
    struct tn_resp r;
    const char *ev = "{\"id\":\"evt_dup_1\",\"type\":\"a.b\",\"data\":{}}";
    cr_assert_eq(post_event(&S, ev, &r), 202, "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(post_event(&S, ev, &r), 200);
    cr_assert_not_null(strstr(r.body, "\"duplicate\":true"), "%s", r.body);
    tn_resp_free(&r);

    conc_s = &S;
    pthread_t th[100];
    for (size_t i = 0; i < 100; i++) {
        cr_assert_eq(pthread_create(&th[i], NULL, conc_post, (void *)i), 0);
    }
    for (size_t i = 0; i < 100; i++) {
        pthread_join(th[i], NULL);
    }
    int n202 = 0, n200 = 0;
    for (size_t i = 0; i < 100; i++) {
        n202 += conc_status[i] == 202;
        n200 += conc_status[i] == 200;
    }
    cr_assert_eq(n202, 1, "exactly one post is new (%d were, %d duplicates)", n202, n200);
    cr_assert_eq(n200, 99);

    /* the dedup window survives a restart; the kill comes once both events were delivered and
     * their attempt records are durable (a batch is ~1 ms), or the kill would repeat an attempt
     * (at least once) and the counts below would not say anything about dedup */
    int64_t until = tn_now_ms() + 10000;
    while ((harness_id(&H, "evt_conc_1", "verified") < 1 ||
            harness_id(&H, "evt_dup_1", "verified") < 1) &&
           tn_now_ms() < until) {
        usleep(20000);
    }
    usleep(300 * 1000);
    tn_stop(&S, SIGKILL);
    SERVE(&S, "--time-scale", "0.01");
    cr_assert_eq(post_event(&S, ev, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    int64_t end = tn_now_ms() + 10000;
    while (harness_id(&H, "evt_conc_1", "verified") < 1 && tn_now_ms() < end) {
        usleep(20000);
    }
    cr_assert_eq(harness_id(&H, "evt_conc_1", "verified"), 1);
    cr_assert_eq(harness_id(&H, "evt_dup_1", "verified"), 1);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- retries -------------------------------------------------------------------------------- */

Test(serve, flaky_route_is_retried_until_delivered, .timeout = 30)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], body[512];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/flaky/2/x\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"secret\":\"" STD_SECRET "\"}",
             H.addr[0]);
    create_webhook(&S, body, wh, sizeof(wh));
    struct tn_resp r;
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_flaky\",\"type\":\"a\",\"data\":[1,2]}", &r), 202);
    tn_resp_free(&r);
    /* standard: 5 s then 300 s, x 0.01 */
    cr_assert(wait_delivery(&S, wh, "delivered", &r, 15000), "not delivered");
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":3"), "%s", r.body);
    const char *a1 = strstr(r.body, "\"status\":500");
    cr_assert_not_null(a1, "%s", r.body);
    cr_assert_not_null(strstr(a1 + 1, "\"status\":500"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"status\":200"), "%s", r.body);
    /* each attempt shows the start of what the receiver answered ("flaky\n", "ok\n"; bytes
     * outside printable ASCII as '.'), whether its text is shared with other attempts or not */
    const char *f1 = strstr(r.body, "\"status\":500,\"result\":\"status\"");
    cr_assert_not_null(f1, "%s", r.body);
    const char *f2 = strstr(f1 + 1, "\"status\":500,\"result\":\"status\"");
    cr_assert_not_null(f2, "%s", r.body);
    const char *ok = strstr(f2, "\"status\":200");
    cr_assert_not_null(ok, "%s", r.body);
    cr_assert_not_null(strstr(f1, "\"response\":\"flaky.\"}"), "%s", r.body);
    cr_assert_lt(strstr(f1, "\"response\":\"flaky.\"}"), f2, "%s", r.body);
    cr_assert_lt(strstr(f2, "\"response\":\"flaky.\"}"), ok, "%s", r.body);
    cr_assert_not_null(strstr(ok, "\"response\":\"ok.\"}"), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(harness_id(&H, "evt_flaky", "attempts"), 3);
    cr_assert_eq(api(&S, "GET", "/metrics", NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "hookring_deliveries_delivered_total 1"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "hookring_retries_scheduled_total 2"), "%s", r.body);
    tn_resp_free(&r);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

Test(serve, a_restart_in_the_middle_of_a_retry_schedule_resumes_it, .timeout = 40)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "1");
    char wh[64], body[512];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/flaky/2/x\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"secret\":\"" STD_SECRET "\",\"retry_schedule\":[3,1]}",
             H.addr[0]);
    create_webhook(&S, body, wh, sizeof(wh));
    struct tn_resp r;
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_resume\",\"type\":\"a\",\"data\":{}}", &r), 202);
    tn_resp_free(&r);
    int64_t end = tn_now_ms() + 5000;
    while (harness_id(&H, "evt_resume", "attempts") < 1 && tn_now_ms() < end) {
        usleep(10000);
    }
    cr_assert_eq(harness_id(&H, "evt_resume", "attempts"), 1);
    usleep(300 * 1000); /* the attempt's record is durable (a batch is ~1 ms) */
    tn_stop(&S, SIGKILL);

    SERVE(&S, "--time-scale", "1");
    cr_assert(wait_delivery(&S, wh, "pending", &r, 2000), "not pending after the restart");
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":1"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "next_attempt_at"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"response\":\"flaky.\"}]"), "replayed: %s", r.body);
    tn_resp_free(&r);
    cr_assert(wait_delivery(&S, wh, "delivered", &r, 15000), "not delivered");
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":3"), "%s", r.body);
    tn_resp_free(&r);
    /* no attempt was repeated: exactly the schedule's three */
    cr_assert_eq(harness_id(&H, "evt_resume", "attempts"), 3);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- batches ------------------------------------------------------------------------------- */

/* nth_line copies line n (0-based) of text into out. */
static bool nth_line(const char *text, int n, char *out, size_t cap)
{
    for (; n > 0 && text; n--) {
        text = strchr(text, '\n');
        text = text ? text + 1 : NULL;
    }
    if (!text || !*text) {
        return false;
    }
    const char *e = strchr(text, '\n');
    size_t len = e ? (size_t)(e - text) : strlen(text);
    if (len >= cap) {
        return false;
    }
    memcpy(out, text, len);
    out[len] = 0;
    return true;
}

Test(serve, batch_ingest_answers_one_line_per_event_once_durable, .timeout = 40)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], body[512];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/ok/x\",\"profile\":\"standard\",\"events\":[\"batch.*\"],"
             "\"secret\":\"" STD_SECRET "\"}",
             H.addr[0]);
    create_webhook(&S, body, wh, sizeof(wh));
    struct tn_resp r;
    const char *batch = "{\"id\":\"evt_b1\",\"type\":\"batch.a\",\"data\":{\"n\":1}}\n"
                        "{\"type\":\"Bad Type\",\"data\":{}}\n"
                        "   \n"
                        "{\"id\":\"evt_b1\",\"type\":\"batch.a\",\"data\":{\"n\":1}}\n"
                        "{\"id\":\"evt_b2\",\"type\":\"other.x\",\"data\":[]}\n"
                        "{\"id\":\"evt_b3\",\"type\":\"batch.c\",\"data\":\"x\"}\r\n"
                        "{not json\n";
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    cr_assert_not_null(strstr(r.head, "application/x-ndjson"), "%s", r.head);
    const char *want[] = {
        "{\"id\":\"evt_b1\",\"deliveries\":1}",   "{\"line\":2,\"error\":\"field 'type'",
        "{\"id\":\"evt_b1\",\"duplicate\":true}", "{\"id\":\"evt_b2\",\"deliveries\":0}",
        "{\"id\":\"evt_b3\",\"deliveries\":1}",   "{\"line\":7,\"error\":",
    };
    for (int i = 0; i < 6; i++) {
        char line[512];
        cr_assert(nth_line(r.body, i, line, sizeof(line)), "line %d missing: %s", i, r.body);
        cr_assert_eq(strncmp(line, want[i], strlen(want[i])), 0, "line %d: %s (want %s...)", i,
                     line, want[i]);
    }
    char extra[16];
    cr_assert_not(nth_line(r.body, 6, extra, sizeof(extra)), "one line per event: %s", r.body);
    tn_resp_free(&r);

    /* acknowledged means durable: after a kill -9 every id is a duplicate */
    tn_stop(&S, SIGKILL);
    SERVE(&S, "--time-scale", "0.01");
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_b3\",\"type\":\"batch.c\",\"data\":\"x\"}", &r), 200,
                 "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "POST", "/v1/events/batch",
                     "{\"id\":\"evt_b2\",\"type\":\"other.x\",\"data\":[]}", &r),
                 200);
    cr_assert_not_null(strstr(r.body, "\"duplicate\":true"), "%s", r.body);
    tn_resp_free(&r);

    /* a hundred events in one request: all acknowledged, all delivered */
    char *big = malloc(100 * 96);
    cr_assert_not_null(big);
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        n += (size_t)sprintf(big + n, "{\"id\":\"evt_bb_%d\",\"type\":\"batch.big\",\"data\":%d}\n",
                             i, i);
    }
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", big, &r), 200, "%s", r.body);
    free(big);
    for (int i = 0; i < 100; i++) {
        char line[128], exp[64];
        cr_assert(nth_line(r.body, i, line, sizeof(line)), "line %d missing", i);
        snprintf(exp, sizeof(exp), "{\"id\":\"evt_bb_%d\",\"deliveries\":1}", i);
        cr_assert_str_eq(line, exp);
    }
    tn_resp_free(&r);
    int64_t end = tn_now_ms() + 15000;
    for (int i = 0; i < 100; i++) {
        char id[32];
        snprintf(id, sizeof(id), "evt_bb_%d", i);
        while (harness_id(&H, id, "verified") < 1 && tn_now_ms() < end) {
            usleep(20000);
        }
        cr_assert_eq(harness_id(&H, id, "verified"), 1, "%s", id);
    }
    /* at least once: an attempt in flight at the kill is made again */
    cr_assert_geq(harness_id(&H, "evt_b1", "verified"), 1);
    cr_assert_geq(harness_id(&H, "evt_b3", "verified"), 1);
    cr_assert_eq(harness_id(&H, "evt_b2", "verified"), 0);

    cr_assert_eq(api(&S, "POST", "/v1/events/batch", "\n \n", &r), 400, "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "GET", "/v1/events/batch", NULL, &r), 405);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "GET", "/metrics", NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "hookring_events_ingested_total 103"), "%s", r.body);
    tn_resp_free(&r);

    /* lines are parsed one ahead of their ingest (batch_ahead): a duplicate right after its
     * first copy, and a bad line after a parsed one, are still answered in order */
    cr_assert_eq(api(&S, "POST", "/v1/events/batch",
                     "{\"id\":\"evt_adj\",\"type\":\"batch.a\",\"data\":1}\n"
                     "{\"id\":\"evt_adj\",\"type\":\"batch.a\",\"data\":1}\n"
                     "{\"id\":\"evt_adj2\",\"type\":\"batch.a\",\"data\":1}\n"
                     "[]\n"
                     "{\"id\":\"evt_adj2\",\"type\":\"batch.a\",\"data\":1}",
                     &r),
                 200, "%s", r.body);
    const char *adj[] = {"{\"id\":\"evt_adj\",\"deliveries\":1}",
                         "{\"id\":\"evt_adj\",\"duplicate\":true}",
                         "{\"id\":\"evt_adj2\",\"deliveries\":1}",
                         "{\"line\":4,\"error\":", "{\"id\":\"evt_adj2\",\"duplicate\":true}"};
    for (int i = 0; i < 5; i++) {
        char line[256];
        cr_assert(nth_line(r.body, i, line, sizeof(line)), "line %d missing: %s", i, r.body);
        cr_assert_eq(strncmp(line, adj[i], strlen(adj[i])), 0, "line %d: %s (want %s...)", i, line,
                     adj[i]);
    }
    tn_resp_free(&r);

    /* past SERVE_BATCH_MAX (10 000) events, each further line is refused, after the others */
    const char *small = "{\"type\":\"t.x\",\"data\":1}\n";
    size_t sl = strlen(small);
    char *many = malloc(10002 * sl + 1);
    cr_assert_not_null(many);
    for (int i = 0; i < 10002; i++) {
        memcpy(many + (size_t)i * sl, small, sl);
    }
    many[10002 * sl] = 0;
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", many, &r), 200, "%.300s", r.body);
    free(many);
    char line[256];
    cr_assert(nth_line(r.body, 9999, line, sizeof(line)));
    cr_assert(strstr(line, "\"deliveries\":0}") && strncmp(line, "{\"id\":\"evt_", 8) == 0, "%s",
              line);
    for (int i = 10000; i < 10002; i++) {
        char exp[96];
        snprintf(exp, sizeof(exp), "{\"line\":%d,\"error\":\"a batch holds at most 10000 events\"}",
                 i + 1);
        cr_assert(nth_line(r.body, i, line, sizeof(line)), "line %d missing", i);
        cr_assert_str_eq(line, exp);
    }
    cr_assert_not(nth_line(r.body, 10002, line, sizeof(line)));
    tn_resp_free(&r);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- fan-out -------------------------------------------------------------------------------- */

/* A webhook of the fan-out test and what the test expects of it. */
struct fan_wh {
    char id[64];
    char agent[16]; /* "": no agent filter */
    const char *filter;
    bool deleted;
};

static bool fan_takes(const struct fan_wh *w, const char *type, const char *agent)
{
    if (w->deleted || (w->agent[0] && (!agent || strcmp(agent, w->agent) != 0))) {
        return false;
    }
    if (strcmp(w->filter, "*") == 0 || strcmp(w->filter, type) == 0) {
        return true;
    }
    size_t n = strlen(w->filter);
    return w->filter[n - 1] == '*' && strncmp(type, w->filter, n - 1) == 0 && type[n - 1];
}

/* fan_check posts events ids[i] (type types[i], agent agents[i] or none) in one batch, checks
 * each result line's delivery count against the model, then every webhook's deliveries: one
 * per event it takes, none for the others, and for each event the deliveries in the order the
 * webhooks were created (their ids grow with it). */
static void fan_check(struct fan_wh *w, size_t nw, const char *const *ids, const char *const *types,
                      const char *const *agents, size_t nev)
{
    char batch[4096];
    size_t off = 0;
    for (size_t e = 0; e < nev; e++) {
        char ag[48] = "";
        if (agents[e]) {
            snprintf(ag, sizeof(ag), ",\"agent\":\"%s\"", agents[e]);
        }
        off += (size_t)snprintf(batch + off, sizeof(batch) - off,
                                "{\"id\":\"%s\",\"type\":\"%s\"%s,\"data\":{}}\n", ids[e], types[e],
                                ag);
    }
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    for (size_t e = 0; e < nev; e++) {
        size_t want = 0;
        for (size_t i = 0; i < nw; i++) {
            want += fan_takes(&w[i], types[e], agents[e]);
        }
        char line[256], exp[128];
        cr_assert(nth_line(r.body, (int)e, line, sizeof(line)), "%s", r.body);
        snprintf(exp, sizeof(exp), "{\"id\":\"%s\",\"deliveries\":%zu}", ids[e], want);
        cr_assert_str_eq(line, exp);
    }
    tn_resp_free(&r);
    static char last[64][DLV_LEN + 1]; /* per event: the delivery id of the last webhook seen */
    cr_assert_leq(nev, 64);
    memset(last, 0, sizeof(last));
    for (size_t i = 0; i < nw; i++) {
        char path[128];
        snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries?limit=1000", w[i].id);
        struct tn_resp l;
        if (w[i].deleted) {
            /* gone from the API (the result lines' counts leave it out) */
            cr_assert_eq(api(&S, "GET", path, NULL, &l), 404, "%s: %s", path, l.body);
            tn_resp_free(&l);
            continue;
        }
        cr_assert_eq(api(&S, "GET", path, NULL, &l), 200, "%s: %s", path, l.body);
        for (size_t e = 0; e < nev; e++) {
            char pat[160];
            snprintf(pat, sizeof(pat), "\"webhook_id\":\"%s\",\"event_id\":\"%s\"", w[i].id,
                     ids[e]);
            const char *p = strstr(l.body, pat);
            bool takes = fan_takes(&w[i], types[e], agents[e]);
            cr_assert_eq(p != NULL, takes, "webhook %zu (agent '%s', %s), event %s: %s", i,
                         w[i].agent, w[i].filter, ids[e], p ? "delivered" : "not delivered");
            if (!p) {
                continue;
            }
            cr_assert_null(strstr(p + 1, pat), "two deliveries of %s to webhook %zu", ids[e], i);
            cr_assert(p - l.body >= 2 + DLV_LEN && strncmp(p - 2 - DLV_LEN, "dlv_", 4) == 0);
            char dlv[DLV_LEN + 1];
            memcpy(dlv, p - 2 - DLV_LEN, DLV_LEN);
            dlv[DLV_LEN] = 0;
            cr_assert_gt(strcmp(dlv, last[e]), 0, "event %s: webhook %zu's delivery %s after %s",
                         ids[e], i, dlv, last[e]);
            memcpy(last[e], dlv, sizeof(dlv));
        }
        tn_resp_free(&l);
    }
}

Test(serve, fan_out_goes_by_agent_and_type_in_creation_order, .timeout = 60)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    static const char *const filters[] = {"*", "order.*", "order.paid", "invoice.sent"};
    enum { NW = 42 };
    static struct fan_wh w[NW];
    memset(w, 0, sizeof(w));
    for (size_t i = 0; i < NW; i++) {
        char ag[48] = "";
        /* two webhooks without an agent filter, between ones with: the order is the table's */
        if (i != 5 && i != 17) {
            snprintf(w[i].agent, sizeof(w[i].agent), "tenant%zu", i % 10);
            snprintf(ag, sizeof(ag), ",\"agent\":\"%s\"", w[i].agent);
        }
        w[i].filter = filters[(i / 3) % 4];
        std_webhook("/std/ok/", w[i].filter, ag, w[i].id, sizeof(w[i].id));
    }
    {
        const char *ids[] = {"evt_f1", "evt_f2", "evt_f3", "evt_f4", "evt_f5", "evt_f6", "evt_f7"};
        const char *types[] = {"order.paid", "invoice.sent", "order.paid", "order.paid",
                               "x.y",        "order.new",    "order"};
        const char *agents[] = {"tenant3", "tenant3", NULL,     "nobody",
                                "tenant7", "tenant0", "tenant1"};
        fan_check(w, NW, ids, types, agents, 7);
    }

    /* two webhooks moved to another agent (one to none): the next events follow them */
    struct tn_resp r;
    char path[128];
    snprintf(path, sizeof(path), "/v1/webhooks/%s", w[3].id);
    cr_assert_eq(api(&S, "PATCH", path, "{\"agent\":\"tenant9\"}", &r), 200, "%s", r.body);
    tn_resp_free(&r);
    snprintf(w[3].agent, sizeof(w[3].agent), "tenant9");
    snprintf(path, sizeof(path), "/v1/webhooks/%s", w[23].id);
    cr_assert_eq(api(&S, "PATCH", path, "{\"agent\":null}", &r), 200, "%s", r.body);
    tn_resp_free(&r);
    w[23].agent[0] = 0;
    {
        const char *ids[] = {"evt_g1", "evt_g2", "evt_g3", "evt_g4"};
        const char *types[] = {"order.paid", "order.paid", "invoice.sent", "order.paid"};
        const char *agents[] = {"tenant3", "tenant9", "tenant3", NULL};
        fan_check(w, NW, ids, types, agents, 4);
    }
    /* one deleted: it takes no more */
    snprintf(path, sizeof(path), "/v1/webhooks/%s", w[13].id);
    cr_assert_eq(api(&S, "DELETE", path, NULL, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    w[13].deleted = true;
    {
        const char *ids[] = {"evt_g5", "evt_g6"};
        const char *types[] = {"order.paid", "order.new"};
        const char *agents[] = {"tenant3", "tenant3"};
        fan_check(w, NW, ids, types, agents, 2);
    }

    /* GET /v1/webhooks page by page: the 41 left, in the order they were made */
    {
        char cursor[64] = "", query[128];
        size_t seen = 0, pages = 0;
        do {
            snprintf(query, sizeof(query), "/v1/webhooks?limit=10%s%s", cursor[0] ? "&cursor=" : "",
                     cursor);
            cr_assert_eq(api(&S, "GET", query, NULL, &r), 200, "%s", r.body);
            const char *p = r.body;
            size_t count = 0;
            while ((p = strstr(p, "{\"id\":\"whk_")) != NULL) {
                p += strlen("{\"id\":\"");
                while (seen < NW && w[seen].deleted) {
                    seen++;
                }
                cr_assert_lt(seen, NW, "%s", r.body);
                cr_assert_eq(strncmp(p, w[seen].id, strlen(w[seen].id)), 0, "webhook %zu: %s", seen,
                             r.body);
                seen++;
                count++;
            }
            cr_assert_leq(count, 10);
            char want[32];
            snprintf(want, sizeof(want), "\"count\":%zu,", count);
            cr_assert_not_null(strstr(r.body, want), "%s", r.body);
            cursor[0] = 0;
            const char *nc = strstr(r.body, "\"next_cursor\":\"");
            if (nc) {
                nc += strlen("\"next_cursor\":\"");
                snprintf(cursor, sizeof(cursor), "%.*s", (int)strcspn(nc, "\""), nc);
            } else {
                cr_assert_not_null(strstr(r.body, "\"next_cursor\":null}"), "%s", r.body);
            }
            tn_resp_free(&r);
            cr_assert_lt(++pages, 10);
        } while (cursor[0]);
        cr_assert_eq(seen, NW, "every webhook listed");
        cr_assert_eq(pages, 5);
        /* a deleted webhook's id still places a cursor; an unknown one is refused */
        snprintf(query, sizeof(query), "/v1/webhooks?limit=1&cursor=%s", w[13].id);
        cr_assert_eq(api(&S, "GET", query, NULL, &r), 200, "%s", r.body);
        cr_assert_not_null(strstr(r.body, w[14].id), "%s", r.body);
        tn_resp_free(&r);
        cr_assert_eq(api(&S, "GET", "/v1/webhooks?cursor=whk_0000000000000000", NULL, &r), 400);
        cr_assert_not_null(strstr(r.body, "query 'cursor'"), "%s", r.body);
        tn_resp_free(&r);
        cr_assert_eq(api(&S, "GET", "/v1/webhooks?limit=0", NULL, &r), 400);
        tn_resp_free(&r);
    }

    /* the same after a kill -9: the index is built from the replayed webhooks */
    tn_stop(&S, SIGKILL);
    SERVE(&S, "--time-scale", "0.01");
    {
        const char *ids[] = {"evt_h1", "evt_h2", "evt_h3", "evt_h4"};
        const char *types[] = {"order.paid", "order.paid", "invoice.sent", "order.x"};
        const char *agents[] = {"tenant3", "tenant9", "tenant3", "tenant1"};
        fan_check(w, NW, ids, types, agents, 4);
    }
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* harness_open is how many connections to the harness are open, the server's: the harness
 * counts those it accepted and closed, the stats request's own among the accepted. */
static uint64_t harness_open(void)
{
    struct tn_resp r;
    uint64_t acc = 0, closed = 0;
    cr_assert_eq(tn_get(H.addr[0], "/_harness/stats", &r), 200);
    cr_assert(tn_json_u64(r.body, "connections.accepted", &acc), "%s", r.body);
    cr_assert(tn_json_u64(r.body, "connections.closed", &closed), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_geq(acc, closed + 1, "accepted %llu closed %llu", (unsigned long long)acc,
                  (unsigned long long)closed);
    return acc - closed - 1;
}

/* wait_open waits (at most ms) until the server has want connections open to the harness. */
static uint64_t wait_open(uint64_t want, int ms)
{
    int64_t end = tn_now_ms() + ms;
    uint64_t open;
    while ((open = harness_open()) != want && tn_now_ms() < end) {
        usleep(20000);
    }
    return open;
}

Test(serve, deleting_a_webhook_closes_its_connections, .timeout = 40)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char fast[64], slow[64];
    std_webhook("/std/ok/", "f.*", ",\"max_in_flight\":4", fast, sizeof(fast));
    std_webhook("/std/slow/1500/", "s.*", "", slow, sizeof(slow));
    struct tn_resp r;
    char batch[1024];
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        off += (size_t)snprintf(batch + off, sizeof(batch) - off,
                                "{\"id\":\"evt_c%d\",\"type\":\"f.x\",\"data\":{}}\n", i);
    }
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    int64_t end = tn_now_ms() + 10000;
    for (int i = 0; i < 8; i++) {
        char id[32];
        snprintf(id, sizeof(id), "evt_c%d", i);
        while (harness_id(&H, id, "verified") < 1 && tn_now_ms() < end) {
            usleep(20000);
        }
        cr_assert_eq(harness_id(&H, id, "verified"), 1, "%s", id);
    }
    /* (the test's own requests to the harness may not be seen closed yet: wait for them) */
    int64_t until = tn_now_ms() + 3000;
    uint64_t open;
    while (((open = harness_open()) < 1 || open > 4) && tn_now_ms() < until) {
        usleep(20000);
    }
    cr_assert(open >= 1 && open <= 4, "%llu kept alive", (unsigned long long)open);

    /* the fast webhook's connections close at its DELETE */
    char path[128];
    snprintf(path, sizeof(path), "/v1/webhooks/%s", fast);
    cr_assert_eq(api(&S, "DELETE", path, NULL, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(wait_open(0, 3000), 0);

    /* the slow one's, deleted with an attempt in flight: that attempt ends (answered), then its
     * connection closes */
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_s1\",\"type\":\"s.x\",\"data\":{}}", &r), 202, "%s",
                 r.body);
    tn_resp_free(&r);
    cr_assert_eq(wait_open(1, 3000), 1, "the slow attempt's connection");
    snprintf(path, sizeof(path), "/v1/webhooks/%s", slow);
    cr_assert_eq(api(&S, "DELETE", path, NULL, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(wait_open(0, 6000), 0);
    cr_assert_eq(harness_id(&H, "evt_s1", "verified"), 1, "the attempt in flight ended");
    /* the server goes on: a new webhook delivers */
    char again[64];
    std_webhook("/std/ok/", "f.*", "", again, sizeof(again));
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_c9\",\"type\":\"f.x\",\"data\":{}}", &r), 202, "%s",
                 r.body);
    tn_resp_free(&r);
    cr_assert(wait_delivery(&S, again, "delivered", &r, 10000));
    tn_resp_free(&r);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- listing deliveries page by page ------------------------------------------------------ */

/* list_page gets one page of webhook wh's deliveries (query: "limit=N" and maybe "&cursor=C"),
 * appends the event ids it lists to evs (n of them so far, at most cap) and copies its
 * next_cursor to cursor ("" when null). Returns the page's count. */
static size_t list_page(const char *wh, const char *query, char evs[][32], size_t *n, size_t cap,
                        char *cursor, size_t ncursor)
{
    char path[256];
    struct tn_resp r;
    snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries?%s", wh, query);
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200, "%s: %s", path, r.body);
    size_t count = 0;
    for (const char *p = r.body; (p = strstr(p, "\"event_id\":\"")) != NULL; count++) {
        p += strlen("\"event_id\":\"");
        cr_assert_lt(*n, cap, "%s", r.body);
        size_t len = strcspn(p, "\"");
        cr_assert_lt(len, 32);
        memcpy(evs[*n], p, len);
        evs[(*n)++][len] = 0;
    }
    char want[32];
    snprintf(want, sizeof(want), "\"count\":%zu,", count);
    cr_assert_not_null(strstr(r.body, want), "%s", r.body);
    const char *nc = strstr(r.body, "\"next_cursor\":");
    cr_assert_not_null(nc, "%s", r.body);
    nc += strlen("\"next_cursor\":");
    if (strncmp(nc, "null}", 5) == 0) {
        cursor[0] = 0;
    } else {
        cr_assert(*nc == '"' && strncmp(nc + 1, "dlv_", 4) == 0, "%s", r.body);
        cr_assert_lt(strcspn(nc + 1, "\""), ncursor);
        snprintf(cursor, ncursor, "%.*s", (int)strcspn(nc + 1, "\""), nc + 1);
    }
    tn_resp_free(&r);
    return count;
}

/* list_all follows webhook wh's pages (limit per page) to the end; returns the pages read and
 * how many of them were empty though a next_cursor followed. */
static size_t list_all(const char *wh, const char *filter, int limit, char evs[][32], size_t *n,
                       size_t cap, size_t *empty)
{
    char cursor[64] = "", query[160];
    size_t pages = 0;
    *n = 0;
    *empty = 0;
    do {
        snprintf(query, sizeof(query), "limit=%d%s%s%s", limit, filter, cursor[0] ? "&cursor=" : "",
                 cursor);
        size_t got = list_page(wh, query, evs, n, cap, cursor, sizeof(cursor));
        cr_assert_leq(got, (size_t)limit);
        *empty += got == 0 && cursor[0];
        cr_assert_lt(++pages, 64, "the cursor does not move on");
    } while (cursor[0]);
    return pages;
}

Test(serve, delivery_listing_pages_with_a_cursor, .timeout = 40)
{
    /* a page looks at 4 delivery slots at most: the bound on a page's work shows */
    cr_assert_eq(setenv("HOOKRING_TEST_LIST_SCAN", "4", 1), 0);
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char a[64], b[64];
    std_webhook("/std/ok/", "a.*", "", a, sizeof(a));
    std_webhook("/std/ok/", "b.*", "", b, sizeof(b));
    /* deliveries in index order: a1, b1 .. b9, a2 */
    struct tn_resp r;
    char batch[2048];
    size_t off = (size_t)snprintf(batch, sizeof(batch),
                                  "{\"id\":\"evt_a1\",\"type\":\"a.x\",\"data\":{}}\n");
    for (int i = 1; i <= 9; i++) {
        off += (size_t)snprintf(batch + off, sizeof(batch) - off,
                                "{\"id\":\"evt_b%d\",\"type\":\"b.x\",\"data\":{}}\n", i);
    }
    snprintf(batch + off, sizeof(batch) - off,
             "{\"id\":\"evt_a2\",\"type\":\"a.x\",\"data\":{}}\n");
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    tn_resp_free(&r);

    static char evs[64][32];
    size_t n, empty;
    /* a's two deliveries are 10 slots apart: pages come back empty, with a cursor, between */
    size_t pages = list_all(a, "", 1, evs, &n, 64, &empty);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(evs[0], "evt_a2");
    cr_assert_str_eq(evs[1], "evt_a1");
    cr_assert_geq(empty, 1, "%zu pages", pages);
    /* b's nine, newest first, each once, over pages of 2 */
    list_all(b, "", 2, evs, &n, 64, &empty);
    cr_assert_eq(n, 9);
    for (int i = 0; i < 9; i++) {
        char want[32];
        snprintf(want, sizeof(want), "evt_b%d", 9 - i);
        cr_assert_str_eq(evs[i], want);
    }
    /* with a status filter too, once all are delivered */
    int64_t end = tn_now_ms() + 10000;
    for (;;) {
        list_all(b, "&status=delivered", 1000, evs, &n, 64, &empty);
        if (n == 9 || tn_now_ms() >= end) {
            break;
        }
        usleep(20000);
    }
    cr_assert_eq(n, 9);
    list_all(b, "&status=pending", 1000, evs, &n, 64, &empty);
    cr_assert_eq(n, 0);

    /* a cursor past every delivery starts at the newest; one before them all lists none */
    char cursor[64];
    n = 0;
    /* (the first 4 slots from the top hold a2 only) */
    cr_assert_eq(
        list_page(a, "limit=5&cursor=dlv_7fffffffffffffff", evs, &n, 64, cursor, sizeof(cursor)),
        1);
    cr_assert_str_eq(evs[0], "evt_a2");
    cr_assert_neq(cursor[0], 0);
    n = 0;
    cr_assert_eq(
        list_page(a, "limit=5&cursor=dlv_0000000000000000", evs, &n, 64, cursor, sizeof(cursor)),
        0);
    cr_assert_str_eq(cursor, "");
    const char *bad[] = {"cursor=x", "cursor=dlv_00000000000000zz", "cursor=dlv_0000000000000001a",
                         "cursor=DLV_0000000000000001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries?%s", a, bad[i]);
        cr_assert_eq(api(&S, "GET", path, NULL, &r), 400, "%s: %s", bad[i], r.body);
        cr_assert_not_null(strstr(r.body, "query 'cursor'"), "%s", r.body);
        tn_resp_free(&r);
    }
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- secret rotation ------------------------------------------------------------------------ */

#define NEW_SECRET "whsec_bmV3LXNlY3JldC1mb3Itcm90YXRpb24tdGVzdA=="

/* post_and_wait posts event id to webhook wh's route and waits for its delivery to reach want. */
static void post_and_wait(const char *wh, const char *id, const char *want)
{
    char ev[256];
    struct tn_resp r;
    snprintf(ev, sizeof(ev), "{\"id\":\"%s\",\"type\":\"rot.x\",\"data\":{}}", id);
    cr_assert_eq(post_event(&S, ev, &r), 202, "%s: %s", id, r.body);
    tn_resp_free(&r);
    cr_assert(wait_delivery(&S, wh, want, &r, 10000), "%s: not %s", id, want);
    tn_resp_free(&r);
}

static void patch_url(const char *wh, const char *route)
{
    char path[128], body[256];
    struct tn_resp r;
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    snprintf(body, sizeof(body), "{\"url\":\"http://%s%sok/x\"}", H.addr[0], route);
    cr_assert_eq(api(&S, "PATCH", path, body, &r), 200, "%s", r.body);
    tn_resp_free(&r);
}

Test(serve, rotate_secret_signs_with_both_during_the_grace_then_the_new_only, .timeout = 40)
{
    make_data_dir();
    /* /old/ verifies with the first secret only, /new/ with the rotated one only */
    const char *hargs[] = {"--listen",
                           "127.0.0.1:0",
                           "--quiet",
                           "--route",
                           "/old/=standard:" STD_SECRET,
                           "--route",
                           "/new/=standard:" NEW_SECRET,
                           NULL};
    cr_assert_eq(tn_start(&H, "hookring-harness", hargs, 1), 0);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], body[512], path[128];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/old/ok/x\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"secret\":\"" STD_SECRET "\",\"retry_schedule\":[]}",
             H.addr[0]);
    create_webhook(&S, body, wh, sizeof(wh));
    snprintf(path, sizeof(path), "/v1/webhooks/%s/rotate-secret", wh);
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", path, "{\"grace_seconds\":-1}", &r), 400);
    cr_assert_not_null(strstr(r.body, "grace_seconds"), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "POST", path, "{\"secret\":\"whsec_!!\"}", &r), 400);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 405);
    tn_resp_free(&r);
    int64_t rotated = tn_now_ms();
    cr_assert_eq(api(&S, "POST", path, "{\"secret\":\"" NEW_SECRET "\",\"grace_seconds\":4}", &r),
                 200, "%s", r.body);
    char got[128];
    cr_assert(jstr(r.body, "signing_secret", got, sizeof(got)));
    cr_assert_str_eq(got, NEW_SECRET);
    cr_assert_not_null(strstr(r.body, "previous_secret_expires_at"), "%s", r.body);
    tn_resp_free(&r);

    /* the rotation is journaled: a kill -9 keeps it, grace included */
    tn_stop(&S, SIGKILL);
    SERVE(&S, "--time-scale", "0.01");
    post_and_wait(wh, "evt_rot_1", "delivered"); /* verified with the old secret alone */
    patch_url(wh, "/new/");
    post_and_wait(wh, "evt_rot_2", "delivered"); /* verified with the new secret alone */
    cr_assert_lt(tn_now_ms(), rotated + 4000, "too slow to test the grace period");

    while (tn_now_ms() < rotated + 4300) {
        usleep(50 * 1000);
    }
    post_and_wait(wh, "evt_rot_3", "delivered");
    patch_url(wh, "/old/");
    post_and_wait(wh, "evt_rot_4", "failed"); /* the old secret signs no more */
    cr_assert_eq(harness_id(&H, "evt_rot_4", "verified"), 0);

    /* a profile with one signature per request drops the old secret at once */
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/gh/\",\"profile\":\"github\",\"events\":[\"*\"]}", H.addr[0]);
    char gh[64];
    create_webhook(&S, body, gh, sizeof(gh));
    snprintf(path, sizeof(path), "/v1/webhooks/%s/rotate-secret", gh);
    cr_assert_eq(api(&S, "POST", path, NULL, &r), 200, "%s", r.body);
    cr_assert(jstr(r.body, "signing_secret", got, sizeof(got)));
    cr_assert_eq(strncmp(got, "whsec_", 6), 0, "%s", got);
    cr_assert_null(strstr(r.body, "previous_secret_expires_at"), "%s", r.body);
    tn_resp_free(&r);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- manual retry and recover --------------------------------------------------------------- */

/* newest_dlv returns the id of webhook wh's newest delivery in out. */
static void newest_dlv(const char *wh, char *out, size_t n)
{
    char path[128];
    struct tn_resp r;
    snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries?limit=1", wh);
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert(jstr(r.body, "id", out, n), "%s", r.body);
    tn_resp_free(&r);
}

Test(serve, a_failed_delivery_is_retried_and_a_webhook_recovered_on_request, .timeout = 40)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64], body[512], dlv[64], path[192];
    /* no retries: the first 500 fails the delivery */
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/flaky/2/x\",\"profile\":\"standard\",\"events\":[\"rot.*\"],"
             "\"secret\":\"" STD_SECRET "\",\"retry_schedule\":[]}",
             H.addr[0]);
    create_webhook(&S, body, wh, sizeof(wh));
    post_and_wait(wh, "evt_retry_1", "failed");
    newest_dlv(wh, dlv, sizeof(dlv));
    snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries/%s/retry", wh, dlv);
    struct tn_resp r;
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 405);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "POST", path, NULL, &r), 202, "%s", r.body);
    tn_resp_free(&r);
    cr_assert(wait_delivery(&S, wh, "failed", &r, 10000));
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":2"), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(api(&S, "POST", path, NULL, &r), 202, "%s", r.body);
    tn_resp_free(&r);
    cr_assert(wait_delivery(&S, wh, "delivered", &r, 10000));
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":3"), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(harness_id(&H, "evt_retry_1", "verified"), 3);
    cr_assert_eq(api(&S, "POST", path, NULL, &r), 409, "delivered: %s", r.body);
    tn_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries/dlv_00000000000fffff/retry", wh);
    cr_assert_eq(api(&S, "POST", path, NULL, &r), 404);
    tn_resp_free(&r);

    /* recover: every failed delivery of events since the time given, and only those */
    char wh2[64];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/flaky/1/x\",\"profile\":\"standard\",\"events\":[\"rec.*\"],"
             "\"secret\":\"" STD_SECRET "\",\"retry_schedule\":[]}",
             H.addr[0]);
    create_webhook(&S, body, wh2, sizeof(wh2));
    for (int i = 0; i < 3; i++) {
        char ev[128], id[32];
        snprintf(id, sizeof(id), "evt_rec_%d", i);
        snprintf(ev, sizeof(ev), "{\"id\":\"%s\",\"type\":\"rec.x\",\"data\":%d}", id, i);
        cr_assert_eq(post_event(&S, ev, &r), 202);
        tn_resp_free(&r);
    }
    cr_assert(wait_delivery(&S, wh2, "failed", &r, 10000));
    tn_resp_free(&r);
    usleep(300 * 1000); /* the other two fail alongside */
    snprintf(path, sizeof(path), "/v1/webhooks/%s/recover", wh2);
    cr_assert_eq(api(&S, "POST", path, NULL, &r), 400, "since is required");
    cr_assert_not_null(strstr(r.body, "since"), "%s", r.body);
    tn_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/webhooks/%s/recover?since=yesterday", wh2);
    cr_assert_eq(api(&S, "POST", path, NULL, &r), 400);
    tn_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/webhooks/%s/recover?since=2999-01-01T00:00:00Z", wh2);
    cr_assert_eq(api(&S, "POST", path, NULL, &r), 202, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"recovered\":0"), "%s", r.body);
    tn_resp_free(&r);
    /* a kill -9 keeps the failures; then recover (the colons escaped, as a client would) */
    tn_stop(&S, SIGKILL);
    SERVE(&S, "--time-scale", "0.01");
    snprintf(path, sizeof(path), "/v1/webhooks/%s/recover?since=2020-01-01T00%%3A00%%3A00Z", wh2);
    cr_assert_eq(api(&S, "POST", path, NULL, &r), 202, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"recovered\":3"), "%s", r.body);
    tn_resp_free(&r);
    int64_t end = tn_now_ms() + 10000;
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof(id), "evt_rec_%d", i);
        while (harness_id(&H, id, "verified") < 2 && tn_now_ms() < end) {
            usleep(20000);
        }
        cr_assert_eq(harness_id(&H, id, "verified"), 2, "%s", id);
    }
    snprintf(path, sizeof(path), "/v1/webhooks/%s/deliveries?status=delivered", wh2);
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "\"count\":3"), "%s", r.body);
    tn_resp_free(&r);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

/* ---- endpoint life cycle and operator events ------------------------------------------------ */

static struct tn_proc OP;

static void expect_status(const char *wh, const char *want)
{
    char path[128], st[32];
    struct tn_resp r;
    snprintf(path, sizeof(path), "/v1/webhooks/%s", wh);
    cr_assert_eq(api(&S, "GET", path, NULL, &r), 200);
    cr_assert(jstr(r.body, "status", st, sizeof(st)), "%s", r.body);
    cr_assert_str_eq(st, want, "%s", r.body);
    tn_resp_free(&r);
}

static size_t count_of(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *p = strstr(text, what); p; p = strstr(p + 1, what)) {
        n++;
    }
    return n;
}

Test(serve, failing_active_disabled_and_operator_events, .timeout = 60)
{
    make_data_dir();
    start_harness(&H);
    /* the operator's sink verifies every request as standard with the operator secret */
    const char *oargs[] = {"--listen", "127.0.0.1:0", "--quiet",  "--profile",
                           "standard", "--secret",    STD_SECRET, NULL};
    cr_assert_eq(tn_start(&OP, "hookring-harness", oargs, 1), 0);
    char opurl[128];
    snprintf(opurl, sizeof(opurl), "http://%s/ok/op", OP.addr[0]);
    SERVE(&S, "--time-scale", "0.01", "--failing-after", "2", "--operator-url", opurl,
          "--operator-secret", STD_SECRET);
    char a[64], hc[64], g[64], body[1024];
    /* standard: two deliveries in a row exhausted mark it failing */
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/status/500/x\",\"profile\":\"standard\","
             "\"events\":[\"a.*\"],\"secret\":\"" STD_SECRET "\",\"retry_schedule\":[]}",
             H.addr[0]);
    create_webhook(&S, body, a, sizeof(a));
    struct tn_resp r;
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_lc_1\",\"type\":\"a.x\",\"data\":1}", &r), 202);
    tn_resp_free(&r);
    cr_assert(wait_delivery(&S, a, "failed", &r, 10000));
    tn_resp_free(&r);
    expect_status(a, "active");
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_lc_2\",\"type\":\"a.x\",\"data\":2}", &r), 202);
    tn_resp_free(&r);
    cr_assert(wait_delivery(&S, a, "failed", &r, 10000));
    tn_resp_free(&r);
    expect_status(a, "failing");
    /* failing still delivers; a success makes it active again */
    patch_url(a, "/std/");
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_lc_3\",\"type\":\"a.x\",\"data\":3}", &r), 202);
    tn_resp_free(&r);
    cr_assert(wait_delivery(&S, a, "delivered", &r, 10000));
    tn_resp_free(&r);
    expect_status(a, "active");

    /* humanconnection: failing after its 5th failed retry, before the schedule is over (the
     * last retry is 30 s away) */
    const struct prof *hp = &profs[0];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/humanconnection/status/500/x\",\"profile\":\"humanconnection\","
             "\"events\":[\"*\"],\"agent\":\"humanconnection\",\"secret\":\"%s\","
             "\"retry_schedule\":[0,0,0,0,0,3000]}",
             H.addr[0], hp->secret);
    create_webhook(&S, body, hc, sizeof(hc));
    char ev[8192];
    event_for(hp, "evt_lc_hc", ev, sizeof(ev));
    cr_assert_eq(post_event(&S, ev, &r), 202, "%s", r.body);
    tn_resp_free(&r);
    int64_t end = tn_now_ms() + 10000;
    while (harness_id(&H, "evt_lc_hc", "attempts") < 6 && tn_now_ms() < end) {
        usleep(20000);
    }
    usleep(100 * 1000);
    cr_assert(wait_delivery(&S, hc, "pending", &r, 2000));
    cr_assert_not_null(strstr(r.body, "\"attempt_count\":6"), "%s", r.body);
    tn_resp_free(&r);
    expect_status(hc, "failing");

    /* 410 disables */
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/gone/x\",\"profile\":\"standard\","
             "\"events\":[\"g.*\"],\"secret\":\"" STD_SECRET "\"}",
             H.addr[0]);
    create_webhook(&S, body, g, sizeof(g));
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_lc_g\",\"type\":\"g.x\",\"data\":0}", &r), 202);
    tn_resp_free(&r);
    cr_assert(wait_delivery(&S, g, "failed", &r, 10000));
    tn_resp_free(&r);
    expect_status(g, "disabled");

    /* operator events: 2 exhausted, 2 failing, 1 disabled, all verified at the sink */
    uint64_t verified = 0, bad = 1;
    end = tn_now_ms() + 10000;
    while (tn_now_ms() < end) {
        cr_assert_eq(tn_get(OP.addr[0], "/_harness/stats", &r), 200);
        tn_json_u64(r.body, "verified", &verified);
        tn_json_u64(r.body, "bad_signature", &bad);
        tn_resp_free(&r);
        if (verified >= 5) {
            break;
        }
        usleep(20000);
    }
    cr_assert_eq(verified, 5);
    cr_assert_eq(bad, 0);
    cr_assert_eq(api(&S, "GET", "/metrics", NULL, &r), 200);
    cr_assert_not_null(strstr(r.body, "hookring_webhooks{status=\"failing\"} 1"), "%s", r.body);
    tn_resp_free(&r);

    /* the states are journaled */
    tn_stop(&S, SIGKILL);
    const char *out = S.out;
    cr_assert_eq(count_of(out, "operator: message.attempt.exhausted"), 2, "%s", out);
    cr_assert_eq(count_of(out, "operator: endpoint.failing"), 2, "%s", out);
    cr_assert_eq(count_of(out, "operator: endpoint.disabled"), 1, "%s", out);
    cr_assert_eq(count_of(out, "is active again"), 1, "%s", out);
    SERVE(&S, "--time-scale", "0.01");
    expect_status(a, "active");
    expect_status(hc, "failing");
    expect_status(g, "disabled");
    stop_clean(&S);
    stop_clean(&H);
    stop_clean(&OP);
    remove_data_dir();
}

Test(serve, operator_events_keep_flowing_past_the_first_table_of_them, .timeout = 40)
{
    make_data_dir();
    start_harness(&H);
    const char *oargs[] = {"--listen", "127.0.0.1:0", "--quiet",  "--profile",
                           "standard", "--secret",    STD_SECRET, NULL};
    cr_assert_eq(tn_start(&OP, "hookring-harness", oargs, 1), 0);
    char opurl[128];
    snprintf(opurl, sizeof(opurl), "http://%s/ok/op", OP.addr[0]);
    SERVE(&S, "--time-scale", "0.01", "--failing-after", "1000", "--operator-url", opurl,
          "--operator-secret", STD_SECRET);
    char a[64], body[512];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/status/500/x\",\"profile\":\"standard\","
             "\"events\":[\"*\"],\"secret\":\"" STD_SECRET "\",\"retry_schedule\":[]}",
             H.addr[0]);
    create_webhook(&S, body, a, sizeof(a));
    /* 40 exhausted deliveries: finished operator deliveries are swept as the table fills */
    char batch[40 * 64];
    tn_ndjson_events(batch, sizeof(batch), "evt_opx_", "x", 0, 40);
    struct tn_resp r;
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    tn_resp_free(&r);
    uint64_t verified = 0, bad = 1;
    int64_t end = tn_now_ms() + 15000;
    while (tn_now_ms() < end && verified < 40) {
        cr_assert_eq(tn_get(OP.addr[0], "/_harness/stats", &r), 200);
        tn_json_u64(r.body, "verified", &verified);
        tn_json_u64(r.body, "bad_signature", &bad);
        tn_resp_free(&r);
        usleep(20000);
    }
    cr_assert_eq(verified, 40);
    cr_assert_eq(bad, 0);
    stop_clean(&S);
    cr_assert_eq(count_of(S.out, "operator: message.attempt.exhausted"), 40, "%s", S.out);
    cr_assert_eq(count_of(S.out, "operator: endpoint.failing"), 0, "%s", S.out);
    stop_clean(&H);
    stop_clean(&OP);
    remove_data_dir();
}

/* ---- the kill test -------------------------------------------------------------------------- */

static struct tn_kill KR;

/* kill_post posts one fresh event; 202 acknowledges it. */
static bool kill_post(struct tn_kill *kr, const char *addr, size_t who, unsigned k)
{
    char ev[256], id[TN_KILL_ID_LEN];
    snprintf(id, sizeof(id), "evt_kill_%zu_%u", who, k);
    snprintf(ev, sizeof(ev), "{\"id\":\"%s\",\"type\":\"kill.test\",\"data\":{\"k\":%u}}", id, k);
    struct tn_resp r;
    bool answered = tn_api(addr, KEY, "POST", "/v1/events", ev, &r) == 202;
    if (answered) {
        tn_kill_ack(kr, id);
    }
    tn_resp_free(&r);
    return answered;
}

static bool kill_verified(const char *id, void *arg)
{
    return harness_id(arg, id, "verified") >= 1;
}

Test(serve, sigkill_at_random_moments_loses_no_acknowledged_event, .timeout = 60)
{
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.001");
    char wh[64], body[512];
    snprintf(body, sizeof(body),
             "{\"url\":\"http://%s/std/ok/x\",\"profile\":\"standard\",\"events\":[\"*\"],"
             "\"secret\":\"" STD_SECRET "\"}",
             H.addr[0]);
    create_webhook(&S, body, wh, sizeof(wh));
    char listen[64];
    memcpy(listen, S.addr[0], sizeof(listen)); /* restarts reuse the port */
    cr_assert_eq(tn_kill_start(&KR, listen, 4, kill_post), 0);
    srand((unsigned)tn_now_ms());
    const char *const extra[] = {"--time-scale", "0.001", NULL};
    for (int cycle = 0; cycle < 20; cycle++) {
        usleep((useconds_t)(50 + rand() % 250) * 1000);
        tn_stop(&S, SIGKILL);
        start_serve_at(&S, listen, extra);
    }
    usleep(200 * 1000);
    tn_kill_stop(&KR);
    size_t nacked = KR.nacked;
    cr_assert_gt(nacked, 100, "too few events were acknowledged (%zu) to mean anything", nacked);
    size_t missing = tn_kill_missing(&KR, kill_verified, &H, 20000);
    cr_assert_eq(missing, 0, "%zu of %zu acknowledged events were lost", missing, nacked);
    fprintf(stderr, "kill test: %zu events acknowledged over 20 SIGKILLs, all delivered\n", nacked);
    stop_clean(&S);
    stop_clean(&H);
    tn_kill_free(&KR);
    remove_data_dir();
}

/* An event that fails after its dedup entry is made (here: HOOKRING_TEST_FAIL_INGEST makes the
 * second new event fail as if out of memory) was never stored: its retry is taken as new and
 * delivered, not answered "duplicate". Single posts and batch lines alike. */
Test(serve, an_event_refused_after_its_dedup_entry_is_new_on_retry, .timeout = 40)
{
    cr_assert_eq(setenv("HOOKRING_TEST_FAIL_INGEST", "2", 1), 0);
    make_data_dir();
    start_harness(&H);
    SERVE(&S, "--time-scale", "0.01");
    char wh[64];
    std_webhook("/std/ok/", "orph.*", "", wh, sizeof(wh));
    struct tn_resp r;
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_o1\",\"type\":\"orph.x\",\"data\":1}", &r), 202,
                 "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_o2\",\"type\":\"orph.x\",\"data\":2}", &r), 500,
                 "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_o2\",\"type\":\"orph.x\",\"data\":2}", &r), 202,
                 "the retry of a refused event is new: %s", r.body);
    cr_assert_not_null(strstr(r.body, "\"deliveries\":1"), "%s", r.body);
    tn_resp_free(&r);
    /* now it is stored: a third copy is a duplicate */
    cr_assert_eq(post_event(&S, "{\"id\":\"evt_o2\",\"type\":\"orph.x\",\"data\":2}", &r), 200,
                 "%s", r.body);
    cr_assert_not_null(strstr(r.body, "\"duplicate\":true"), "%s", r.body);
    tn_resp_free(&r);
    int64_t end = tn_now_ms() + 15000;
    while (harness_id(&H, "evt_o2", "verified") < 1 && tn_now_ms() < end) {
        usleep(20000);
    }
    cr_assert_eq(harness_id(&H, "evt_o2", "verified"), 1);

    /* a batch: its first line is the failing one after a restart (the count starts again) */
    tn_stop(&S, SIGKILL);
    cr_assert_eq(setenv("HOOKRING_TEST_FAIL_INGEST", "1", 1), 0);
    SERVE(&S, "--time-scale", "0.01");
    const char *batch = "{\"id\":\"evt_o3\",\"type\":\"orph.x\",\"data\":3}\n"
                        "{\"id\":\"evt_o2\",\"type\":\"orph.x\",\"data\":2}\n"
                        "{\"id\":\"evt_o3\",\"type\":\"orph.x\",\"data\":3}\n";
    cr_assert_eq(api(&S, "POST", "/v1/events/batch", batch, &r), 200, "%s", r.body);
    char line[256];
    cr_assert(nth_line(r.body, 0, line, sizeof(line)));
    cr_assert_str_eq(line, "{\"line\":1,\"error\":\"out of memory\"}");
    cr_assert(nth_line(r.body, 1, line, sizeof(line)));
    cr_assert_str_eq(line, "{\"id\":\"evt_o2\",\"duplicate\":true}", "stored before the kill");
    cr_assert(nth_line(r.body, 2, line, sizeof(line)));
    cr_assert_str_eq(line, "{\"id\":\"evt_o3\",\"deliveries\":1}", "the refused line is new again");
    tn_resp_free(&r);
    end = tn_now_ms() + 15000;
    while (harness_id(&H, "evt_o3", "verified") < 1 && tn_now_ms() < end) {
        usleep(20000);
    }
    cr_assert_eq(harness_id(&H, "evt_o3", "verified"), 1);
    unsetenv("HOOKRING_TEST_FAIL_INGEST");
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

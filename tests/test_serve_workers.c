/* test_serve_workers.c: hookring serve --workers N end to end (the real server and harness on
 * loopback): deliveries of several webhooks spread over the worker threads and every one
 * verified, a SIGTERM that waits for the attempts in flight on every worker, and the option's
 * bounds. The whole of test_serve.c also runs with --workers 2 (tests/run.sh). */
#include <criterion/criterion.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/testnet.h"
#include "support/testpki.h"

TestSuite(serve_workers);

#define KEY "test-api-key-w"
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

static struct tn_proc H, S;
static char data_dir[64];

static void make_data_dir(void)
{
    cr_assert_eq(tn_tmpdir(data_dir, sizeof(data_dir), "hookring-workers"), 0);
}

static void remove_data_dir(void)
{
    cr_assert_eq(tn_rm_rf(data_dir), 0);
}

static void start_harness(void)
{
    const char *args[] = {
        "--listen", "127.0.0.1:0", "--quiet", "--route", "/std/=standard:" STD_SECRET, NULL};
    cr_assert_eq(tn_start(&H, "hookring-harness", args, 1), 0, "the harness did not start");
}

static void start_serve(const char *workers)
{
    const char *args[] = {"serve",       "--data",      data_dir,  "--listen",  "127.0.0.1:0",
                          "--api-key",   KEY,           "--quiet", "--workers", workers,
                          "--allow-net", "127.0.0.0/8", NULL};
    cr_assert_eq(tn_start(&S, "hookring", args, 1), 0, "hookring serve did not start");
}

static void stop_clean(struct tn_proc *p)
{
    int st = tn_stop(p, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d; output:\n%s", st, p->out);
}

static int api(const char *method, const char *path, const char *body, struct tn_resp *r)
{
    return tn_api(S.addr[0], KEY, method, path, body, r);
}

/* metric reads one sample of /metrics (name with its labels, exactly); -1 when missing. */
static int64_t metric(const char *name)
{
    struct tn_resp r;
    int64_t v = -1;
    if (api("GET", "/metrics", NULL, &r) == 200) {
        char pat[160];
        snprintf(pat, sizeof(pat), "\n%s ", name);
        const char *p = strstr(r.body, pat);
        if (p) {
            v = strtoll(p + strlen(pat), NULL, 10);
        }
    }
    tn_resp_free(&r);
    return v;
}

static bool wait_metric(const char *name, int64_t want, int ms)
{
    int64_t end = tn_now_ms() + ms;
    while (tn_now_ms() < end) {
        if (metric(name) == want) {
            return true;
        }
        usleep(20 * 1000);
    }
    return false;
}

static uint64_t harness_stat(const char *field)
{
    struct tn_resp r;
    uint64_t v = 0;
    if (tn_get(H.addr[0], "/_harness/stats", &r) == 200) {
        tn_json_u64(r.body, field, &v);
    }
    tn_resp_free(&r);
    return v;
}

static void create_webhooks(size_t n, const char *route)
{
    for (size_t i = 0; i < n; i++) {
        char body[512];
        struct tn_resp r;
        snprintf(body, sizeof(body),
                 "{\"url\":\"http://%s/std/%s/w%zu\",\"profile\":\"standard\",\"events\":[\"*\"],"
                 "\"secret\":\"" STD_SECRET "\"}",
                 H.addr[0], route, i);
        cr_assert_eq(api("POST", "/v1/webhooks", body, &r), 201, "%s", r.body);
        tn_resp_free(&r);
    }
}

static void post_events(const char *prefix, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char body[256];
        struct tn_resp r;
        snprintf(body, sizeof(body), "{\"id\":\"%s_%zu\",\"type\":\"w.test\",\"data\":{\"i\":%zu}}",
                 prefix, i, i);
        cr_assert_eq(api("POST", "/v1/events", body, &r), 202, "%s", r.body);
        tn_resp_free(&r);
    }
}

// cppcheck-suppress unknownMacro
Test(serve_workers, deliveries_spread_over_the_workers_and_all_verified, .timeout = 60)
{
    make_data_dir();
    start_harness();
    start_serve("2");
    create_webhooks(4, "ok");
    post_events("evt_spread", 25);
    cr_assert(wait_metric("hookring_deliveries_delivered_total", 100, 20000), "delivered: %" PRId64,
              metric("hookring_deliveries_delivered_total"));
    int64_t w0 = metric("hookring_worker_attempts_total{worker=\"0\"}");
    int64_t w1 = metric("hookring_worker_attempts_total{worker=\"1\"}");
    /* four webhooks, two workers: two webhooks each, 25 deliveries per webhook */
    cr_assert_eq(w0, 50, "worker 0 made %" PRId64 " attempts", w0);
    cr_assert_eq(w1, 50, "worker 1 made %" PRId64 " attempts", w1);
    cr_assert_eq(metric("hookring_worker_attempts_total{worker=\"2\"}"), -1);
    cr_assert_eq(metric("hookring_attempts_total"), 100);
    cr_assert_eq(harness_stat("verified"), 100);
    cr_assert_eq(harness_stat("bad_signature"), 0);
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
}

Test(serve_workers, sigterm_waits_for_the_attempts_in_flight_on_every_worker, .timeout = 60)
{
    make_data_dir();
    start_harness();
    start_serve("3");
    create_webhooks(3, "slow/1500");
    post_events("evt_drain", 4);
    /* every attempt is out (the receiver answers after 1.5 s) */
    cr_assert(wait_metric("hookring_attempts_in_flight", 12, 10000), "in flight: %" PRId64,
              metric("hookring_attempts_in_flight"));
    cr_assert_eq(metric("hookring_deliveries_delivered_total"), 0);
    stop_clean(&S);
    cr_assert_eq(harness_stat("verified"), 12);
    /* their outcomes were journaled before the exit: nothing is pending after a restart */
    start_serve("1");
    cr_assert_eq(metric("hookring_deliveries_delivered_total"), 12);
    cr_assert_eq(metric("hookring_retries_pending"), 0);
    /* one worker (inline): its counter is this process's attempts, not the replayed ones */
    cr_assert_eq(metric("hookring_worker_attempts_total{worker=\"0\"}"), 0);
    cr_assert_eq(metric("hookring_attempts_total"), 12);
    stop_clean(&S);
    cr_assert_eq(harness_stat("requests"), 12, "no attempt was made twice");
    stop_clean(&H);
    remove_data_dir();
}

/* Each worker has its own TLS context (with --ca-file) and resolver (with --resolve): two
 * webhooks on an https:// host name, one per worker, both delivered and verified. */
Test(serve_workers, tls_and_host_names_on_every_worker, .timeout = 60)
{
    struct tp_pki pki;
    char err[512];
    cr_assert_eq(tp_pki_make(&pki, err, sizeof(err)), 0, "%s", err);
    make_data_dir();
    const char *hargs[] = {"--listen", "127.0.0.1:0", "--tls-cert",
                           pki.cert,   "--tls-key",   pki.key,
                           "--quiet",  "--route",     "/std/=standard:" STD_SECRET,
                           NULL};
    cr_assert_eq(tn_start(&H, "hookring-harness", hargs, 1), 0, "the harness did not start");
    const char *sargs[] = {"serve",       "--data",    data_dir,      "--listen",
                           "127.0.0.1:0", "--api-key", KEY,           "--quiet",
                           "--workers",   "2",         "--allow-net", "127.0.0.0/8",
                           "--ca-file",   pki.ca,      "--resolve",   "localhost:127.0.0.1",
                           NULL};
    cr_assert_eq(tn_start(&S, "hookring", sargs, 1), 0, "hookring serve did not start");
    for (int i = 0; i < 2; i++) {
        char body[512];
        struct tn_resp r;
        snprintf(body, sizeof(body),
                 "{\"url\":\"https://%s:%u/std/ok/w%d\",\"profile\":\"standard\","
                 "\"events\":[\"*\"],\"secret\":\"" STD_SECRET "\"}",
                 "localhost", tn_port(&H, 0), i);
        cr_assert_eq(api("POST", "/v1/webhooks", body, &r), 201, "%s", r.body);
        tn_resp_free(&r);
    }
    post_events("evt_tls", 5);
    cr_assert(wait_metric("hookring_deliveries_delivered_total", 10, 20000), "delivered: %" PRId64,
              metric("hookring_deliveries_delivered_total"));
    cr_assert_eq(metric("hookring_worker_attempts_total{worker=\"0\"}"), 5);
    cr_assert_eq(metric("hookring_worker_attempts_total{worker=\"1\"}"), 5);
    /* delivered is a 2xx from the harness's verifying route: each signature checked */
    stop_clean(&S);
    stop_clean(&H);
    remove_data_dir();
    tp_pki_remove(&pki);
}

Test(serve_workers, workers_out_of_range_is_a_usage_error)
{
    const char *bad[] = {"0", "65", "x"};
    for (size_t i = 0; i < 3; i++) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd),
                 "%s/hookring serve --data /tmp/hookring-workers-unused --listen 127.0.0.1:0 "
                 "--api-key k --workers %s 2>&1 | grep -q -- '--workers must be 1-64'",
                 tn_build_dir(), bad[i]);
        cr_assert_eq(system(cmd), 0, "--workers %s", bad[i]);
        snprintf(cmd, sizeof(cmd),
                 "%s/hookring serve --data /tmp/hookring-workers-unused --listen 127.0.0.1:0 "
                 "--api-key k --workers %s >/dev/null 2>&1",
                 tn_build_dir(), bad[i]);
        int st = system(cmd);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "--workers %s: status %d", bad[i], st);
    }
}

/* test_client.c: the delivery client (engine/client.c) driven through its API against the real
 * harness: pools and fairness (a slow endpoint cannot take a healthy one's capacity, the global
 * cap holds), keep-alive reuse, the adaptive slow-down on 429, deadlines, classified failures and
 * the address guard checked before any traffic. The retry policy and the latency histogram are
 * tested here too, as units. */
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "hist.h"
#include "retry.h"
#include "sign/profile.h"
#include "support/testnet.h"

#define SECRET "whsec_k9m2x4p7q1humiris"

// cppcheck-suppress unknownMacro
TestSuite(client, .timeout = 60);

/* ---- a small delivery rig: one ring, one client, a signer, a batch of attempts ------------ */

#define RIG_MAX 64

struct rig_attempt {
    struct attempt a;
    struct event ev;
    char body[64];
    bool done;
};

struct rig {
    struct ring ring;
    struct client client;
    struct signer signer;
    struct netguard guard;
    struct rig_attempt at[RIG_MAX];
    size_t ndone;
    uint32_t max_seen_inflight; /* the most attempts the client had in flight at once */
};

static struct rig R;
static struct tn_proc H;

static void rig_done(struct attempt *a)
{
    struct rig_attempt *ra = container_of(a, struct rig_attempt, a);
    ra->done = true;
    R.ndone++;
}

static void rig_init(uint32_t max_conns, uint32_t max_inflight, bool allow_loopback)
{
    memset(&R, 0, sizeof(R));
    struct ring_opts ro = {.entries = 256, .max_timers = 256};
    cr_assert_eq(ring_init(&R.ring, &ro), 0);
    netguard_init(&R.guard);
    if (allow_loopback) {
        cr_assert_eq(netguard_allow(&R.guard, "127.0.0.0/8"), 0);
    }
    struct client_opts co = {.max_conns = max_conns,
                             .max_inflight = max_inflight,
                             .rbuf_size = 4096,
                             .max_response_body = 1 << 20,
                             .guard = &R.guard};
    cr_assert_eq(client_init(&R.client, &R.ring, &co), 0);
    struct slice secret = SLICE_LIT(SECRET);
    char err[160];
    const struct profile *p = profile_find("humiris");
    cr_assert_not_null(p);
    cr_assert_eq(
        signer_init(&R.signer, p, &secret, 1, SLICE_LIT(""), SLICE_LIT(""), err, sizeof(err)), 0,
        "%s", err);
}

static void rig_endpoint(struct endpoint *ep, const char *path, uint32_t timeout_ms,
                         uint32_t max_conns, uint32_t max_inflight)
{
    char u[256], err[256];
    snprintf(u, sizeof(u), "http://%s%s", H.addr[0], path);
    struct url url;
    cr_assert_eq(url_parse(&url, u, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(endpoint_init(ep, &R.client, &url, &R.signer, timeout_ms, max_conns, max_inflight,
                               err, sizeof(err)),
                 0, "%s", err);
}

static struct attempt *rig_submit(size_t i, struct endpoint *ep)
{
    struct rig_attempt *ra = &R.at[i];
    memset(ra, 0, sizeof(*ra));
    int n = snprintf(ra->ev.id, sizeof(ra->ev.id), "evt_client_%zu_%d", i, getpid());
    ra->ev.id_len = (size_t)n;
    memcpy(ra->ev.type, "test.event", 11);
    ra->ev.type_len = 10;
    memcpy(ra->ev.created_at, "2026-01-01T00:00:00Z", 21);
    ra->ev.created_at_len = 20;
    ra->ev.created_ms = 1767225600000;
    int bl = snprintf(ra->body, sizeof(ra->body), "{\"n\":%zu}", i);
    ra->ev.data = slice_of(ra->body, (size_t)bl);
    ra->a.ep = ep;
    ra->a.event = &ra->ev;
    ra->a.body = ra->ev.data; /* humiris would wrap it; the harness checks only the signature */
    ra->a.id = slice_of(ra->ev.id, ra->ev.id_len);
    ra->a.done = rig_done;
    client_submit(&ra->a);
    return &ra->a;
}

/* rig_run loops until want attempts are done or ms pass; returns the number done. */
static size_t rig_run(size_t want, int ms)
{
    int64_t end = tn_now_ms() + ms;
    while (R.ndone < want && tn_now_ms() < end) {
        client_flush(&R.client);
        if (R.client.inflight > R.max_seen_inflight) {
            R.max_seen_inflight = R.client.inflight;
        }
        ring_run_once(&R.ring, 20 * 1000000LL);
    }
    return R.ndone;
}

/* rig_deliver_ok submits n attempts to ep and checks that each was answered 200 within 10 s. */
static void rig_deliver_ok(struct endpoint *ep, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rig_submit(i, ep);
    }
    cr_assert_eq(rig_run(n, 10000), n);
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(R.at[i].a.result, ATTEMPT_OK, "attempt %zu: %s", i,
                     attempt_result_name(R.at[i].a.result));
        cr_expect_eq(R.at[i].a.status, 200);
    }
}

/* rig_drain lets what is still in flight end (bounded), so endpoints can be cleaned up. */
static void rig_drain(void)
{
    int64_t end = tn_now_ms() + 3000;
    while (client_busy(&R.client) && tn_now_ms() < end) {
        client_flush(&R.client);
        ring_run_once(&R.ring, 20 * 1000000LL);
    }
    cr_expect_not(client_busy(&R.client), "the client did not fall idle");
}

/* rig_fini tears the rig down; the endpoints must have been cleaned up. */
static void rig_fini(void)
{
    client_cleanup(&R.client);
    ring_cleanup(&R.ring);
    signer_wipe(&R.signer);
}

/* rig_cleanup drains, cleans up n endpoints and tears the rig down. */
static void rig_cleanup(struct endpoint *const *eps, size_t n)
{
    rig_drain();
    for (size_t i = 0; i < n; i++) {
        endpoint_cleanup(eps[i]);
    }
    rig_fini();
}

static void harness_start(void)
{
    const char *args[] = {"--listen", "127.0.0.1:0", "--quiet", NULL};
    cr_assert_eq(tn_start(&H, "hookring-harness", args, 1), 0, "the harness did not start");
}

static void harness_stop(void)
{
    int st = tn_stop(&H, SIGTERM);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "harness exit status %d", st);
}

/* ---- the client against the harness --------------------------------------------------------- */

Test(client, keep_alive_reuses_connections_and_signs_in_batches)
{
    harness_start();
    rig_init(16, 16, true);
    struct endpoint ep;
    rig_endpoint(&ep, "/ok/ka", 0, 4, 4);
    rig_deliver_ok(&ep, 40);
    cr_expect_leq(ep.stat_connects, 4, "%llu connections for 40 requests",
                  (unsigned long long)ep.stat_connects);
    cr_expect_geq(ep.stat_reuses, 36);
    cr_expect_leq(R.max_seen_inflight, 4);
    cr_expect_lt(R.client.stat_batches, 40, "signing was not batched");
    cr_expect_eq(R.client.stat_signed, 40);
    rig_cleanup((struct endpoint *[]){&ep}, 1);
    harness_stop();
}

/* An endpoint keeps of its URL only where to connect (its request line is in its prefix): it
 * must not lean on the caller's struct url once built, and an IPv6 literal must survive the
 * copy into the smaller address it holds. */
Test(client, an_endpoint_built_from_an_ipv6_url_delivers_without_the_callers_url)
{
    const char *args[] = {"--listen", "[::1]:0", "--quiet", NULL};
    cr_assert_eq(tn_start(&H, "hookring-harness", args, 1), 0, "the harness did not start");
    rig_init(4, 4, false);
    cr_assert_eq(netguard_allow(&R.guard, "::1/128"), 0);
    char u[128], err[256];
    snprintf(u, sizeof(u), "http://%s/ok/v6?tenant=1", H.addr[0]);
    struct url *url = malloc(sizeof(*url));
    cr_assert_not_null(url);
    cr_assert_eq(url_parse(url, u, err, sizeof(err)), 0, "%s", err);
    struct endpoint ep;
    cr_assert_eq(endpoint_init(&ep, &R.client, url, &R.signer, 0, 2, 2, err, sizeof(err)), 0, "%s",
                 err);
    memset(url, 0x5a, sizeof(*url));
    free(url);
    cr_expect_str_eq(ep.url.host, "::1");
    cr_expect_eq(ep.url.port, tn_port(&H, 0));
    cr_expect(ep.url.host_is_ip && !ep.url.https);
    cr_expect_eq(ep.url.addr.sa.sa_family, AF_INET6);
    cr_expect_eq(ep.url.addrlen, sizeof(struct sockaddr_in6));
    rig_deliver_ok(&ep, 6);
    rig_cleanup((struct endpoint *[]){&ep}, 1);
    harness_stop();
}

Test(client, a_slow_endpoint_cannot_take_a_healthy_ones_capacity)
{
    harness_start();
    rig_init(32, 12, true);
    struct endpoint slow, fast;
    rig_endpoint(&slow, "/timeout/s", 1500, 4, 4);
    rig_endpoint(&fast, "/ok/f", 0, 4, 4);
    /* the slow endpoint gets its work first and more of it than the whole client cap */
    for (size_t i = 0; i < 20; i++) {
        rig_submit(i, &slow);
    }
    for (size_t i = 20; i < 40; i++) {
        rig_submit(i, &fast);
    }
    int64_t t0 = tn_now_ms();
    int64_t end = t0 + 5000;
    size_t fast_done = 0;
    while (fast_done < 20 && tn_now_ms() < end) {
        client_flush(&R.client);
        ring_run_once(&R.ring, 20 * 1000000LL);
        fast_done = 0;
        for (size_t i = 20; i < 40; i++) {
            fast_done += R.at[i].done;
        }
    }
    int64_t took = tn_now_ms() - t0;
    cr_expect_eq(fast_done, 20, "the healthy endpoint finished %zu of 20", fast_done);
    cr_expect_lt(took, 1000, "the healthy endpoint waited %lld ms behind the slow one",
                 (long long)took);
    size_t slow_done = 0;
    for (size_t i = 0; i < 20; i++) {
        slow_done += R.at[i].done;
    }
    cr_expect_eq(slow_done, 0, "the slow endpoint's attempts cannot have finished yet");
    cr_expect_leq(slow.inflight, 4);
    /* the slow ones end in first-byte timeouts, 4 at a time */
    cr_assert_eq(rig_run(40, 20000), 40);
    for (size_t i = 0; i < 20; i++) {
        cr_expect_eq(R.at[i].a.result, ATTEMPT_TIMEOUT_FIRST_BYTE, "%s",
                     attempt_result_name(R.at[i].a.result));
    }
    rig_cleanup((struct endpoint *[]){&slow, &fast}, 2);
    harness_stop();
}

Test(client, the_global_cap_bounds_attempts_in_flight)
{
    harness_start();
    rig_init(64, 6, true);
    struct endpoint eps[3];
    for (size_t e = 0; e < 3; e++) {
        rig_endpoint(&eps[e], "/slow/30/g", 0, 8, 8);
    }
    for (size_t i = 0; i < 48; i++) {
        rig_submit(i, &eps[i % 3]);
    }
    cr_assert_eq(rig_run(48, 20000), 48);
    cr_expect_leq(R.max_seen_inflight, 6);
    cr_expect_geq(R.max_seen_inflight, 5, "the cap was not used: %u", R.max_seen_inflight);
    /* every endpoint got a share while the cap was held */
    for (size_t i = 0; i < 48; i++) {
        cr_expect_eq(R.at[i].a.result, ATTEMPT_OK);
    }
    rig_cleanup((struct endpoint *[]){&eps[0], &eps[1], &eps[2]}, 3);
    harness_stop();
}

Test(client, a_429_halves_the_endpoint_in_flight_limit)
{
    harness_start();
    rig_init(16, 16, true);
    struct endpoint ep;
    rig_endpoint(&ep, "/retry-after/1/x", 0, 8, 8);
    cr_assert_eq(ep.limit, 8);
    rig_submit(0, &ep);
    cr_assert_eq(rig_run(1, 5000), 1);
    cr_expect_eq(R.at[0].a.status, 429);
    cr_expect(R.at[0].a.has_retry_after);
    cr_expect_eq(R.at[0].a.retry_after_s, 1);
    cr_expect_eq(ep.limit, 4);
    cr_expect_eq(ep.stat_slowdowns, 1);
    rig_cleanup((struct endpoint *[]){&ep}, 1);

    /* a 2xx grows it back by one; a load generator's endpoint never adapts */
    rig_init(16, 16, true);
    rig_endpoint(&ep, "/ok/y", 0, 8, 8);
    ep.limit = 2;
    rig_submit(0, &ep);
    cr_assert_eq(rig_run(1, 5000), 1);
    cr_expect_eq(ep.limit, 3);
    endpoint_set_adaptive(&ep, false);
    cr_expect_eq(ep.limit, 8);
    rig_cleanup((struct endpoint *[]){&ep}, 1);
    harness_stop();
}

Test(client, failures_are_classified)
{
    harness_start();
    rig_init(16, 16, true);
    struct endpoint reset, status, ok_big;
    rig_endpoint(&reset, "/reset/r", 0, 1, 1);
    rig_endpoint(&status, "/status/503/s", 0, 1, 1);
    rig_endpoint(&ok_big, "/big/b", 0, 1, 1);
    rig_submit(0, &reset);
    rig_submit(1, &status);
    rig_submit(2, &ok_big);
    cr_assert_eq(rig_run(3, 10000), 3);
    cr_expect_eq(R.at[0].a.result, ATTEMPT_RESET, "%s", attempt_result_name(R.at[0].a.result));
    cr_expect_eq(R.at[1].a.result, ATTEMPT_STATUS);
    cr_expect_eq(R.at[1].a.status, 503);
    cr_expect_eq(R.at[2].a.result, ATTEMPT_OK, "%s", attempt_result_name(R.at[2].a.result));
    cr_expect_eq(R.at[2].a.excerpt_len, ATTEMPT_EXCERPT, "the excerpt is capped");
    rig_cleanup((struct endpoint *[]){&reset, &status, &ok_big}, 3);

    /* a port nobody listens on: refused */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    cr_assert_eq(bind(s, (struct sockaddr *)&sin, sl), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    char u[64], err[256];
    snprintf(u, sizeof(u), "http://127.0.0.1:%u/x", ntohs(sin.sin_port));
    rig_init(4, 4, true);
    struct url url;
    struct endpoint closed;
    cr_assert_eq(url_parse(&url, u, err, sizeof(err)), 0);
    cr_assert_eq(endpoint_init(&closed, &R.client, &url, &R.signer, 0, 1, 1, err, sizeof(err)), 0);
    rig_submit(0, &closed);
    cr_assert_eq(rig_run(1, 5000), 1);
    close(s);
    cr_expect_eq(R.at[0].a.result, ATTEMPT_REFUSED, "%s", attempt_result_name(R.at[0].a.result));
    rig_cleanup((struct endpoint *[]){&closed}, 1);
    harness_stop();
}

Test(client, the_address_guard_refuses_before_any_traffic)
{
    rig_init(4, 4, false);
    static const char *const refused[] = {
        "http://127.0.0.1:9/x",      "http://10.1.2.3/x",
        "http://169.254.169.254/x",  "http://100.64.0.1/x",
        "http://[::1]:9/x",          "http://[::ffff:127.0.0.1]/x",
        "http://[64:ff9b::a00:1]/x", "http://2130706433/x",
        "http://0x7f.1/x",           "http://127.1/x",
        "http://192.168.1.1/x",      "http://[fd00::1]/x",
        "http://[fe80::1]/x",        "http://0.0.0.0/x",
        "http://[2002:7f00:1::]/x",  "http://172.16.0.1/x",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char err[256];
        struct url url;
        struct endpoint ep;
        if (url_parse(&url, refused[i], err, sizeof(err)) != 0) {
            continue; /* refused already as a URL (userinfo, bad host): also fine */
        }
        cr_expect_eq(endpoint_init(&ep, &R.client, &url, &R.signer, 0, 1, 1, err, sizeof(err)),
                     -EINVAL, "%s was not refused", refused[i]);
        cr_expect(strstr(err, "--allow-net") != NULL, "%s: %s", refused[i], err);
    }
    char err[256];
    struct url url;
    cr_expect_neq(url_parse(&url, "http://a@127.0.0.1/x", err, sizeof(err)), 0,
                  "userinfo must be refused");
    rig_fini();
}

/* ---- retry policy --------------------------------------------------------------------------- */

static struct attempt answer(enum attempt_result r, int status)
{
    return (struct attempt){.result = r, .status = status};
}

Test(client, retry_schedule_with_jitter_retry_after_and_gone)
{
    const struct profile *p = profile_find("standard");
    cr_assert_not_null(p);
    struct retry_policy pol = retry_policy_of(p, 1.0);
    cr_assert_eq(pol.n, p->nretry);
    cr_assert_gt(pol.n, 0);
    uint64_t rng = 42;
    int64_t d;
    struct attempt a = answer(ATTEMPT_STATUS, 500);
    /* every delay within ±20 % of the schedule, and the jitter actually varies */
    for (uint32_t k = 1; k <= pol.n; k++) {
        int64_t lo = INT64_MAX, hi = 0;
        for (int i = 0; i < 200; i++) {
            cr_assert_eq(retry_decide(&pol, &a, k, &rng, &d), RETRY_AGAIN);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        double base = pol.schedule_s[k - 1] * 1000.0;
        cr_expect_geq(lo, (int64_t)(base * 0.8) - 1, "retry %u: %lld < 0.8 x %.0f", k,
                      (long long)lo, base);
        cr_expect_leq(hi, (int64_t)(base * 1.2) + 1, "retry %u: %lld > 1.2 x %.0f", k,
                      (long long)hi, base);
        cr_expect_gt(hi, lo, "no jitter at retry %u", k);
    }
    cr_expect_eq(retry_decide(&pol, &a, pol.n + 1, &rng, &d), RETRY_EXHAUSTED);
    a = answer(ATTEMPT_OK, 200);
    cr_expect_eq(retry_decide(&pol, &a, 1, &rng, &d), RETRY_DELIVERED);
    a = answer(ATTEMPT_STATUS, 410);
    cr_expect_eq(retry_decide(&pol, &a, 1, &rng, &d), RETRY_GONE);
    /* Retry-After wins over the schedule, capped at a day, scaled like the rest */
    a = answer(ATTEMPT_STATUS, 429);
    a.has_retry_after = true;
    a.retry_after_s = 7;
    cr_expect_eq(retry_decide(&pol, &a, 1, &rng, &d), RETRY_AGAIN);
    cr_expect_eq(d, 7000);
    a.retry_after_s = 10 * 86400;
    retry_decide(&pol, &a, 1, &rng, &d);
    cr_expect_eq(d, (int64_t)RETRY_AFTER_CAP_S * 1000);
    pol.time_scale = 0.001;
    a.retry_after_s = 2;
    retry_decide(&pol, &a, 1, &rng, &d);
    cr_expect_eq(d, 2);
    cr_expect(retry_slows_endpoint(&a));
    a = answer(ATTEMPT_STATUS, 500);
    cr_expect_not(retry_slows_endpoint(&a));
    a = answer(ATTEMPT_TIMEOUT_FIRST_BYTE, 0);
    cr_expect_eq(retry_decide(&pol, &a, 1, &rng, &d), RETRY_AGAIN, "timeouts are retried");
}

Test(client, profiles_without_retries_fail_once)
{
    for (const char *name = "aksita"; name; name = strcmp(name, "aksita") ? NULL : "github") {
        const struct profile *p = profile_find(name);
        cr_assert_not_null(p);
        struct retry_policy pol = retry_policy_of(p, 1.0);
        uint64_t rng = 1;
        int64_t d;
        struct attempt a = answer(ATTEMPT_STATUS, 500);
        cr_expect_eq(retry_decide(&pol, &a, 1, &rng, &d), RETRY_EXHAUSTED, "%s", name);
    }
}

/* ---- latency histogram ---------------------------------------------------------------------- */

Test(client, histogram_quantiles_within_its_error)
{
    static struct hist h, h2;
    hist_init(&h);
    hist_init(&h2);
    cr_expect_eq(hist_quantile(&h, 0.5), 0);
    for (uint64_t v = 1; v <= 100000; v++) {
        hist_add(v <= 50000 ? &h : &h2, v);
    }
    hist_merge(&h, &h2);
    cr_expect_eq(h.count, 100000);
    cr_expect_eq(h.max, 100000);
    cr_expect_eq(h.min, 1);
    const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t i = 0; i < 4; i++) {
        double want = qs[i] * 100000;
        double got = (double)hist_quantile(&h, qs[i]);
        cr_expect(got >= want * 0.99 && got <= want * 1.02, "q%.3f: %.0f vs %.0f", qs[i], got,
                  want);
    }
    cr_expect_eq(hist_quantile(&h, 1.0), 100000);
    /* exact in the linear range; huge values clamp instead of overflowing */
    hist_init(&h);
    hist_add(&h, 17);
    cr_expect_eq(hist_quantile(&h, 0.5), 17);
    hist_add(&h, UINT64_MAX);
    cr_expect_gt(hist_quantile(&h, 1.0), 1ull << 40);
}

Test(client, humcli_is_https_only_unless_the_host_is_allowed_explicitly)
{
    rig_init(4, 4, false);
    const struct profile *p = profile_find("humcli");
    cr_assert_not_null(p);
    struct signer s;
    struct slice secret = SLICE_LIT("whsec_my_secret_key_123");
    char err[256];
    cr_assert_eq(signer_init(&s, p, &secret, 1, SLICE_LIT(""), SLICE_LIT(""), err, sizeof(err)), 0);
    struct url url;
    struct endpoint ep;
    cr_assert_eq(url_parse(&url, "http://203.0.113.7/hooks", err, sizeof(err)), 0);
    cr_expect_eq(endpoint_init(&ep, &R.client, &url, &s, 0, 1, 1, err, sizeof(err)), -EINVAL);
    cr_expect(strstr(err, "https://") != NULL, "%s", err);
    /* an operator-allowed test host may take plain http */
    cr_assert_eq(netguard_allow(&R.guard, "203.0.113.0/24"), 0);
    cr_expect_eq(endpoint_init(&ep, &R.client, &url, &s, 0, 1, 1, err, sizeof(err)), 0, "%s", err);
    endpoint_cleanup(&ep);
    /* other profiles are not bound by it */
    cr_assert_eq(url_parse(&url, "http://93.184.216.34/hooks", err, sizeof(err)), 0);
    cr_expect_eq(endpoint_init(&ep, &R.client, &url, &R.signer, 0, 1, 1, err, sizeof(err)), 0, "%s",
                 err);
    endpoint_cleanup(&ep);
    signer_wipe(&s);
    rig_fini();
}

/* rig_endpoint_at is rig_endpoint on the harness's listener i. */
static void rig_endpoint_at(struct endpoint *ep, size_t i, const char *path, uint32_t max_conns)
{
    char u[256], err[256];
    snprintf(u, sizeof(u), "http://%s%s", H.addr[i], path);
    struct url url;
    cr_assert_eq(url_parse(&url, u, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(
        endpoint_init(ep, &R.client, &url, &R.signer, 0, max_conns, max_conns, err, sizeof(err)), 0,
        "%s", err);
}

Test(client, endpoints_of_one_origin_share_its_idle_connections)
{
    const char *args[] = {"--listen", "127.0.0.1:0", "--quiet", NULL};
    cr_assert_eq(tn_start(&H, "hookring-harness", args, 1), 0);
    rig_init(16, 16, true);
    struct endpoint a, b;
    rig_endpoint_at(&a, 0, "/ok/a", 2);
    rig_endpoint_at(&b, 0, "/ok/b", 2);
    cr_assert_eq(a.origin, b.origin, "one origin, one pool");
    for (size_t i = 0; i < 10; i++) {
        rig_submit(i, &a);
    }
    cr_assert_eq(rig_run(10, 10000), 10);
    cr_assert_eq(a.stat_connects, 2);
    for (size_t i = 10; i < 20; i++) {
        rig_submit(i, &b);
    }
    cr_assert_eq(rig_run(20, 10000), 20);
    cr_expect_eq(b.stat_connects, 0, "b opened %llu connections instead of reusing a's",
                 (unsigned long long)b.stat_connects);
    cr_expect_eq(b.nconns, 2);
    cr_expect_eq(a.nconns, 0);
    cr_expect_eq(R.client.nconns, 2);
    /* cleaning an endpoint up closes the idle connections it holds */
    rig_drain();
    endpoint_cleanup(&b);
    cr_expect_eq(R.client.nconns, 0, "%u connections left open", R.client.nconns);
    endpoint_cleanup(&a);
    rig_fini();
    harness_stop();
}

Test(client, a_full_table_evicts_the_least_recently_used_idle_connection)
{
    const char *args[] = {"--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--quiet", NULL};
    cr_assert_eq(tn_start(&H, "hookring-harness", args, 2), 0);
    rig_init(2, 16, true); /* room for two connections in all */
    struct endpoint a, b;
    rig_endpoint_at(&a, 0, "/ok/a", 2);
    rig_endpoint_at(&b, 1, "/ok/b", 2); /* another origin */
    cr_assert_neq(a.origin, b.origin);
    rig_submit(0, &a);
    rig_submit(1, &a);
    cr_assert_eq(rig_run(2, 10000), 2);
    cr_assert_eq(R.client.nconns, 2, "a keeps two idle connections");
    rig_submit(2, &b);
    cr_assert_eq(rig_run(3, 10000), 3);
    cr_expect_eq(R.at[2].a.result, ATTEMPT_OK, "b starved behind a's idle connections: %s",
                 attempt_result_name(R.at[2].a.result));
    cr_expect_eq(b.stat_connects, 1);
    cr_expect_eq(a.nconns, 1, "one of a's idle connections made room");
    rig_cleanup((struct endpoint *[]){&a, &b}, 2);
    harness_stop();
}

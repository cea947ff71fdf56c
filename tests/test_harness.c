/* test_harness.c: hookring-harness end to end, over real loopback sockets: every behaviour,
 * keep-alive and pipelining, limits, verification and the per-id accounting, concurrency, the
 * control paths, signals and --ids-file. Each test starts its own harness on port 0. */
#include <criterion/criterion.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "sign/profile.h"
#include "support/testnet.h"

/* The harness under test. Each test stops it; when a test fails half-way, its process exits
 * and the harness dies with it (tn_start sets PR_SET_PDEATHSIG). Every wait is bounded (I/O
 * 5 s, start and stop 10 s), so no suite timeout is needed. */
static struct tn_proc H;

TestSuite(harness);

#define GH_SECRET "It's a Secret to Everybody"
#define STD_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define HOS_SECRET "your-signature-secret"
#define HOS_ENC "eW91ci1lbmNyeXB0aW9uLXNlY3JldA=="
#define HOS_SALT "your-encryption-salt"

/* start runs the harness on 127.0.0.1:0 with extra arguments (NULL-terminated). */
static void start(const char *const *extra)
{
    const char *args[40] = {"--listen", "127.0.0.1:0"};
    size_t n = 2;
    for (size_t i = 0; extra && extra[i]; i++) {
        args[n++] = extra[i];
    }
    args[n] = NULL;
    cr_assert_eq(tn_start(&H, "hookring-harness", args, 1), 0, "the harness did not start");
}

#define START(...) start((const char *const[]){__VA_ARGS__, NULL})

static const char *addr(void)
{
    return H.addr[0];
}

/* stopped stops the harness with SIGTERM and asserts a clean exit (also catches sanitizer
 * reports, which make it exit non-zero). */
static void stopped(void)
{
    int st = tn_stop(&H, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "harness exit status %d; output:\n%s", st,
              H.out);
}

static uint64_t stat_of(const char *path)
{
    struct tn_resp r;
    cr_assert_eq(tn_get(addr(), "/_harness/stats", &r), 200);
    uint64_t v = 0;
    cr_assert(tn_json_u64(r.body, path, &v), "no %s in %s", path, r.body);
    tn_resp_free(&r);
    return v;
}

/* stat_eventually polls until path reaches want (answers are counted when their send
 * completes, which can trail the client's read a little on another thread); bounded. */
static void stat_eventually(const char *path, uint64_t want)
{
    uint64_t v = 0;
    for (int i = 0; i < 200; i++) {
        v = stat_of(path);
        if (v == want) {
            return;
        }
        usleep(10000);
    }
    cr_assert_eq(v, want, "%s: %llu, want %llu", path, (unsigned long long)v,
                 (unsigned long long)want);
}

/* req sends one request on fd and reads the answer; returns the status. */
static int req(int fd, const char *method, const char *path, const char *headers, const char *body,
               struct tn_resp *r)
{
    char raw[8192];
    size_t bl = body ? strlen(body) : 0;
    int n =
        snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n%s",
                 method, path, headers ? headers : "", bl, body ? body : "");
    cr_assert_eq(tn_send_all(fd, raw, (size_t)n), 0);
    int rc = tn_read_response_ex(fd, r, strcmp(method, "HEAD") == 0 ? TN_HEAD_ONLY : 0);
    cr_assert_eq(rc, 0, "%s %s: read: %s", method, path, strerror(-rc));
    return r->status;
}

/* one sends one request on a fresh connection; returns the status. */
static int one(const char *method, const char *path, const char *headers, const char *body)
{
    int fd = tn_connect(addr());
    cr_assert_geq(fd, 0);
    struct tn_resp r;
    int st = req(fd, method, path, headers, body, &r);
    tn_resp_free(&r);
    close(fd);
    return st;
}

/* ---- signing with the engine's own signer --------------------------------------------------- */

struct signed_req {
    struct buf head; /* "Name: value\r\n" lines, Content-Length included */
    struct buf body;
};

static void sign_event(struct signed_req *s, const char *profile, const char *secret,
                       const char *enc, const char *salt, const char *event_json, const char *id)
{
    struct signer sg;
    char err[256];
    struct slice sec = slice_cstr(secret);
    cr_assert_eq(signer_init(&sg, profile_find(profile), &sec, 1, slice_cstr(enc), slice_cstr(salt),
                             err, sizeof(err)),
                 0, "%s", err);
    struct event ev;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    cr_assert_eq(
        event_parse(&ev, (const uint8_t *)event_json, strlen(event_json), now, err, sizeof(err)), 0,
        "%s", err);
    buf_init(&s->head, 1 << 16);
    buf_init(&s->body, 1 << 20);
    cr_assert_eq(sign_request(&sg, &ev, slice_cstr(id), now, &s->head, &s->body, err, sizeof(err)),
                 0, "%s", err);
    signer_wipe(&sg);
}

static void signed_free(struct signed_req *s)
{
    buf_free(&s->head);
    buf_free(&s->body);
}

/* send_signed posts s to path on fd and returns the status. */
static int send_signed(int fd, const char *path, const struct signed_req *s, struct tn_resp *r)
{
    char start[512];
    int n = snprintf(start, sizeof(start), "POST %s HTTP/1.1\r\nHost: t\r\n", path);
    cr_assert_eq(tn_send_all(fd, start, (size_t)n), 0);
    cr_assert_eq(tn_send_all(fd, s->head.p, s->head.len), 0);
    cr_assert_eq(tn_send_all(fd, "\r\n", 2), 0);
    cr_assert_eq(tn_send_all(fd, s->body.p, s->body.len), 0);
    cr_assert_eq(tn_read_response(fd, r), 0);
    return r->status;
}

static int post_signed(const char *path, const struct signed_req *s)
{
    int fd = tn_connect(addr());
    cr_assert_geq(fd, 0);
    struct tn_resp r;
    int st = send_signed(fd, path, s, &r);
    tn_resp_free(&r);
    close(fd);
    return st;
}

static char *gh_event(char *out, size_t n, const char *id)
{
    snprintf(out, n,
             "{\"id\":\"%s\",\"type\":\"meeting.completed\",\"data\":{\"meeting_id\":\"m1\"}}", id);
    return out;
}

/* ======== listening, control, signals ====================================================== */

Test(harness, listens_on_several_addresses_and_exits_cleanly_on_sigint)
{
    const char *args[] = {"--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--threads", "2", NULL};
    cr_assert_eq(tn_start(&H, "hookring-harness", args, 2), 0);
    cr_assert_eq(H.naddr, 2);
    cr_assert(strncmp(H.addr[0], "127.0.0.1:", 10) == 0, "%s", H.addr[0]);
    cr_assert(strncmp(H.addr[1], "[::1]:", 6) == 0, "%s", H.addr[1]);
    cr_assert_neq(tn_port(&H, 0), 0);
    struct tn_resp r;
    cr_assert_eq(tn_get(H.addr[0], "/ok/a", &r), 200);
    tn_resp_free(&r);
    cr_assert_eq(tn_get(H.addr[1], "/ok/b", &r), 200);
    cr_assert_str_eq(r.body, "ok\n");
    tn_resp_free(&r);
    int st = tn_stop(&H, SIGINT);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
    cr_assert(strstr(H.out, "harness: 2 requests"), "summary missing:\n%s", H.out);
}

Test(harness, bad_arguments_are_refused)
{
    const char *bad[][4] = {
        {"--threads", "0", NULL},           {"--profile", "nope", "--secret", "x"},
        {"--route", "/x/=github", NULL},    /* github needs a secret */
        {"--route", "x=none", NULL},        /* prefix without '/' */
        {"--route", "/h/=humanos:s", NULL}, /* humanos needs ENC and SALT */
        {"--max-body", "12q", NULL},        {"--listen", "nonsense", NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        const char *args[8] = {"--listen", "127.0.0.1:0"};
        size_t n = 2;
        for (size_t k = 0; k < 4 && bad[i][k]; k++) {
            args[n++] = bad[i][k];
        }
        args[n] = NULL;
        cr_assert_neq(tn_start(&H, "hookring-harness", args, 1), 0, "case %zu started", i);
    }
}

Test(harness, stats_reset_and_id_lookup)
{
    START("--quiet");
    cr_assert_eq(one("POST", "/ok/x", "X-Harness-Id: id-1\r\n", "{}"), 200);
    cr_assert_eq(one("POST", "/ok/x", "X-Harness-Id: id-1\r\n", "{}"), 200);
    cr_assert_eq(one("POST", "/ok/x", NULL, "{}"), 200);
    cr_assert_eq(one("GET", "/nothing/here", NULL, NULL), 404);
    cr_assert_eq(stat_of("requests"), 4);
    cr_assert_eq(stat_of("unverified"), 3);
    cr_assert_eq(stat_of("verified"), 0);
    cr_assert_eq(stat_of("unique"), 1);
    cr_assert_eq(stat_of("duplicates"), 1);
    cr_assert_eq(stat_of("no_id"), 1);
    cr_assert_eq(stat_of("routes.ok.requests"), 3);
    cr_assert_eq(stat_of("routes.not_found.requests"), 1);
    cr_assert_eq(stat_of("status.200"), 3);
    cr_assert_eq(stat_of("status.404"), 1);
    stat_eventually("latency_us.count", 4);

    struct tn_resp r;
    cr_assert_eq(tn_get(addr(), "/_harness/ids/id-1", &r), 200);
    uint64_t v;
    cr_assert(tn_json_u64(r.body, "attempts", &v) && v == 2, "%s", r.body);
    cr_assert(tn_json_u64(r.body, "duplicates", &v) && v == 1, "%s", r.body);
    cr_assert(strstr(r.body, "\"processed\":true"), "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(tn_get(addr(), "/_harness/ids/unknown", &r), 404);
    tn_resp_free(&r);
    cr_assert_eq(tn_get(addr(), "/_harness/reset", &r), 405, "reset needs POST");
    tn_resp_free(&r);

    cr_assert_eq(one("POST", "/_harness/reset", NULL, NULL), 200);
    cr_assert_eq(stat_of("requests"), 0);
    cr_assert_eq(stat_of("unique"), 0);
    cr_assert_eq(stat_of("duplicates"), 0);
    cr_assert_eq(stat_of("latency_us.count"), 0);
    cr_assert_eq(stat_of("routes.ok.requests"), 0);
    /* after a reset, a known id is new again */
    cr_assert_eq(one("POST", "/ok/x", "X-Harness-Id: id-1\r\n", "{}"), 200);
    cr_assert_eq(stat_of("duplicates"), 0);
    cr_assert_eq(stat_of("unique"), 1);
    stopped();
}

/* An id's first_seen_ms and first_seen_us are the time of day of its arrival: senders subtract
 * their own clock from it (the demo's ingest-to-receiver latency). A coarse clock, a tick
 * behind, put it before the request was even sent; whole ms alone put it half a ms early on
 * average. */
Test(harness, first_seen_is_the_arrival_time_to_the_ms)
{
    START("--quiet");
    for (int i = 0; i < 20; i++) {
        char hdr[64], path[64];
        snprintf(hdr, sizeof(hdr), "X-Harness-Id: seen-%d\r\n", i);
        int64_t before_us = unix_now_us(), before = before_us / 1000;
        cr_assert_eq(one("POST", "/ok/x", hdr, "{}"), 200);
        int64_t after_us = unix_now_us(), after = after_us / 1000;
        struct tn_resp r;
        snprintf(path, sizeof(path), "/_harness/ids/seen-%d", i);
        cr_assert_eq(tn_get(addr(), path, &r), 200);
        uint64_t seen = 0, seen_us = 0;
        cr_assert(tn_json_u64(r.body, "first_seen_ms", &seen), "%s", r.body);
        cr_assert(tn_json_u64(r.body, "first_seen_us", &seen_us), "%s", r.body);
        tn_resp_free(&r);
        cr_assert_eq(seen, seen_us / 1000, "%s", r.body);
        cr_assert(seen_us >= (uint64_t)before_us && seen_us <= (uint64_t)after_us,
                  "seen at %llu us, sent at %lld, answered by %lld", (unsigned long long)seen_us,
                  (long long)before_us, (long long)after_us);
        cr_assert_geq((int64_t)seen, before, "seen at %llu, sent at %lld", (unsigned long long)seen,
                      (long long)before);
        cr_assert_leq((int64_t)seen, after, "seen at %llu, answered by %lld",
                      (unsigned long long)seen, (long long)after);
        usleep(1500); /* spread the sends over a few clock ticks */
    }
    stopped();
}

/* last_verified_us is when the latest request whose signature held was verified, to the
 * microsecond (bench/ingest.sh ends its end-to-end clock on it): a refused signature and an
 * unverified route leave it as it is, and a reset clears it. */
Test(harness, last_verified_is_the_time_of_the_latest_verified_request)
{
    START("--quiet", "--route", "/std/=standard:" STD_SECRET);
    cr_assert_eq(stat_of("last_verified_us"), 0, "nothing verified yet");
    char ev[256];
    struct signed_req gh;
    sign_event(&gh, "github", GH_SECRET, NULL, NULL, gh_event(ev, sizeof(ev), "evt_lv0"), "gh-1");
    for (int i = 0; i < 6; i++) {
        struct signed_req st;
        char id[32];
        snprintf(id, sizeof(id), "evt_lv%d", i + 1);
        sign_event(&st, "standard", STD_SECRET, NULL, NULL, gh_event(ev, sizeof(ev), id), "");
        int64_t before = unix_now_us();
        cr_assert_eq(post_signed("/std/ok/x", &st), 200);
        int64_t after = unix_now_us();
        uint64_t t = stat_of("last_verified_us");
        cr_assert(t >= (uint64_t)before && t <= (uint64_t)after,
                  "verified at %llu, sent at %lld, answered by %lld", (unsigned long long)t,
                  (long long)before, (long long)after);
        usleep(2000);
        /* neither a bad signature nor an unverified request moves it */
        cr_assert_eq(post_signed("/std/ok/x", &gh), 401);
        cr_assert_eq(one("POST", "/ok/x", "X-Harness-Id: lv\r\n", "{}"), 200);
        cr_assert_eq(stat_of("last_verified_us"), t);
        if (i == 2) {
            cr_assert_eq(one("POST", "/_harness/reset", NULL, NULL), 200);
            cr_assert_eq(stat_of("last_verified_us"), 0, "a reset clears it");
        }
        signed_free(&st);
    }
    signed_free(&gh);
    stopped();
}

Test(harness, ids_file_is_written_at_exit)
{
    char path[] = "/tmp/hookring-ids-XXXXXX";
    int tfd = mkstemp(path);
    cr_assert_geq(tfd, 0);
    close(tfd);
    START("--ids-file", path);
    cr_assert_eq(one("POST", "/ok/x", "X-Harness-Id: alpha\r\n", "{}"), 200);
    cr_assert_eq(one("POST", "/ok/x", "X-Harness-Id: alpha\r\n", "{}"), 200);
    cr_assert_eq(one("POST", "/fail/100/x", "X-Harness-Id: beta\r\n", "{}"), 500);
    stopped();
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[512];
    int seen = 0;
    while (fgets(line, sizeof(line), f)) {
        char id[64];
        unsigned attempts, verified, bad, dups;
        long long ms, us;
        char end;
        cr_assert_eq(sscanf(line, "%63[^\t]\t%u\t%u\t%u\t%u\t%lld\t%lld%c", id, &attempts,
                            &verified, &bad, &dups, &ms, &us, &end),
                     8, "%s", line);
        cr_assert(end == '\n' && us > 0 && ms == us / 1000, "%s", line);
        if (strcmp(id, "alpha") == 0) {
            cr_assert_eq(attempts, 2);
            cr_assert_eq(verified, 2);
            cr_assert_eq(dups, 1);
            seen |= 1;
        } else if (strcmp(id, "beta") == 0) {
            cr_assert_eq(attempts, 1);
            cr_assert_eq(dups, 0);
            seen |= 2;
        }
    }
    fclose(f);
    unlink(path);
    cr_assert_eq(seen, 3);
}

/* ======== behaviours ======================================================================== */

Test(harness, plain_behaviours_on_one_keep_alive_connection)
{
    START("--quiet");
    int fd = tn_connect(addr());
    cr_assert_geq(fd, 0);
    struct tn_resp r;
    char v[256];

    cr_assert_eq(req(fd, "POST", "/ok/tenant/x", NULL, "{}", &r), 200);
    cr_assert_str_eq(r.body, "ok\n");
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "POST", "/status/503/x", NULL, "{}", &r), 503);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "POST", "/status/201", NULL, "{}", &r), 201);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "POST", "/status/204/", NULL, "{}", &r), 204);
    cr_assert_eq(r.body_len, 0);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "POST", "/gone/x", NULL, "{}", &r), 410);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "POST", "/retry-after/7/x", NULL, "{}", &r), 429);
    cr_assert(tn_resp_header(&r, "Retry-After", v, sizeof(v)));
    cr_assert_str_eq(v, "7");
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "POST", "/redirect/a/b?q=1", NULL, "{}", &r), 302);
    cr_assert(tn_resp_header(&r, "Location", v, sizeof(v)));
    cr_assert_str_eq(v, "/ok/a/b");
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "POST", "/fail/0/x", NULL, "{}", &r), 200);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "POST", "/fail/100/x", NULL, "{}", &r), 500);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "POST", "/dup/x", "X-Harness-Id: d1\r\n", "{}", &r), 500);
    tn_resp_free(&r);
    /* unknown behaviours, and known ones with a bad argument, are 404 */
    cr_assert_eq(req(fd, "GET", "/", NULL, NULL, &r), 404);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "GET", "/okay", NULL, NULL, &r), 404);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "GET", "/status/99/", NULL, NULL, &r), 404);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "GET", "/slow/x/", NULL, NULL, &r), 404);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "GET", "/fail/101/", NULL, NULL, &r), 404);
    tn_resp_free(&r);
    /* HEAD gets the headers only */
    cr_assert_eq(req(fd, "HEAD", "/ok/x", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "GET", "/ok/after-head", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    close(fd);

    /* /dup recorded the delivery: the retry is a duplicate */
    cr_assert_eq(one("POST", "/ok/x", "X-Harness-Id: d1\r\n", "{}"), 200);
    cr_assert_eq(stat_of("duplicates"), 1);
    /* the keep-alive one, the /ok/ one, and the two stats reads */
    cr_assert_eq(stat_of("connections.accepted"), 4);
    stopped();
}

Test(harness, fail_follows_its_probability_and_the_seed)
{
    START("--quiet", "--seed", "42");
    int fd = tn_connect(addr());
    int fails = 0;
    for (int i = 0; i < 200; i++) {
        struct tn_resp r;
        fails += req(fd, "POST", "/fail/30/x", NULL, "{}", &r) == 500;
        tn_resp_free(&r);
    }
    close(fd);
    /* 30 % of 200: far outside these bounds only if the dice are broken */
    cr_assert(fails > 25 && fails < 95, "%d failures", fails);
    stopped();
}

Test(harness, flaky_fails_the_first_attempts_of_each_id)
{
    START("--quiet");
    const char *hdr_a = "X-Harness-Id: flaky-a\r\n";
    const char *hdr_b = "X-Harness-Id: flaky-b\r\n";
    cr_assert_eq(one("POST", "/flaky/2/x", hdr_a, "{}"), 500);
    cr_assert_eq(one("POST", "/flaky/2/x", hdr_a, "{}"), 500);
    cr_assert_eq(one("POST", "/flaky/2/x", hdr_b, "{}"), 500);
    cr_assert_eq(one("POST", "/flaky/2/x", hdr_a, "{}"), 200);
    cr_assert_eq(one("POST", "/flaky/2/x", hdr_b, "{}"), 500);
    cr_assert_eq(one("POST", "/flaky/2/x", hdr_b, "{}"), 200);
    cr_assert_eq(one("POST", "/flaky/2/x", hdr_a, "{}"), 200);
    cr_assert_eq(stat_of("unique"), 2);
    cr_assert_eq(stat_of("duplicates"), 1);
    stopped();
}

Test(harness, slow_answers_after_its_delay_and_keeps_order)
{
    START("--quiet");
    int fd = tn_connect(addr());
    struct tn_resp r;
    int64_t t0 = tn_now_ms();
    cr_assert_eq(req(fd, "POST", "/slow/300/x", "X-Harness-Id: s1\r\n", "{}", &r), 200);
    cr_assert_geq(tn_now_ms() - t0, 300);
    tn_resp_free(&r);
    /* the connection is still usable */
    cr_assert_eq(req(fd, "POST", "/ok/x", NULL, "{}", &r), 200);
    tn_resp_free(&r);
    close(fd);
    /* the latency histogram saw the delay */
    uint64_t max = stat_of("latency_us.max");
    cr_assert_geq(max, 300000);
    stopped();
}

Test(harness, timeout_never_answers)
{
    START("--quiet");
    int fd = tn_connect(addr());
    const char *raw = "POST /timeout/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}";
    cr_assert_eq(tn_send_all(fd, raw, strlen(raw)), 0);
    cr_assert_not(tn_wait_readable(fd, 500), "/timeout/ answered");
    close(fd);
    cr_assert_eq(stat_of("routes.timeout.requests"), 1);
    cr_assert_eq(stat_of("unique"), 0);
    stopped();
}

Test(harness, reset_resets_the_connection)
{
    START("--quiet");
    int fd = tn_connect(addr());
    const char *raw = "POST /reset/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}";
    cr_assert_eq(tn_send_all(fd, raw, strlen(raw)), 0);
    cr_assert(tn_wait_readable(fd, 3000));
    char b[16];
    ssize_t n = recv(fd, b, sizeof(b), 0);
    cr_assert(n < 0 && errno == ECONNRESET, "recv gave %zd (%s)", n, strerror(errno));
    close(fd);
    stopped();
}

Test(harness, drop_records_then_closes_without_answering)
{
    START("--quiet");
    int fd = tn_connect(addr());
    const char *raw =
        "POST /drop/x HTTP/1.1\r\nHost: t\r\nX-Harness-Id: dr1\r\nContent-Length: 2\r\n\r\n{}";
    cr_assert_eq(tn_send_all(fd, raw, strlen(raw)), 0);
    cr_assert(tn_wait_readable(fd, 3000));
    char b[16];
    cr_assert_eq(recv(fd, b, sizeof(b), 0), 0, "expected EOF without an answer");
    close(fd);
    cr_assert_eq(stat_of("unique"), 1, "a drop counts as taken");
    cr_assert_eq(one("POST", "/ok/x", "X-Harness-Id: dr1\r\n", "{}"), 200);
    cr_assert_eq(stat_of("duplicates"), 1, "the retry after a drop is a duplicate");
    stopped();
}

Test(harness, trickle_dribbles_a_byte_at_a_time)
{
    START("--quiet");
    int fd = tn_connect(addr());
    const char *raw = "GET /trickle/5/x HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(tn_send_all(fd, raw, strlen(raw)), 0);
    char all[256] = "";
    size_t len = 0;
    int reads = 0;
    while (len < sizeof(all) && !strstr(all, "trickled\n")) {
        cr_assert(tn_wait_readable(fd, 3000));
        ssize_t n = recv(fd, all + len, sizeof(all) - 1 - len, 0);
        cr_assert_gt(n, 0);
        len += (size_t)n;
        all[len] = '\0';
        reads++;
    }
    cr_assert(strncmp(all, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", all);
    /* 5 ms between bytes: the reader sees many small pieces, not one segment */
    cr_assert_gt(reads, 10, "%d reads", reads);
    /* keep-alive holds after the trickle */
    struct tn_resp r;
    cr_assert_eq(req(fd, "GET", "/ok/x", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    close(fd);
    stopped();
}

Test(harness, big_sends_a_multi_mib_body)
{
    START("--quiet", "--big-bytes", "3m");
    int fd = tn_connect(addr());
    struct tn_resp r;
    cr_assert_eq(req(fd, "GET", "/big/x", NULL, NULL, &r), 200);
    cr_assert_eq(r.body_len, 3u << 20);
    cr_assert_eq(r.body[63], '\n');
    cr_assert_eq(r.body[0], 'a');
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "GET", "/big/1000/x", NULL, NULL, &r), 200);
    cr_assert_eq(r.body_len, 1000);
    tn_resp_free(&r);
    cr_assert_eq(req(fd, "GET", "/ok/x", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    close(fd);
    stopped();
}

/* ======== HTTP: pipelining, limits, framing ================================================= */

Test(harness, pipelined_requests_are_answered_in_order)
{
    START("--quiet");
    int fd = tn_connect(addr());
    char raw[8192];
    size_t n = 0;
    const char *paths[] = {"/ok/1",   "/status/201/2", "/slow/80/3",    "/status/202/4",
                           "/gone/5", "/trickle/1/6",  "/status/203/7", "/ok/8"};
    const int want[] = {200, 201, 200, 202, 410, 200, 203, 200};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        n += (size_t)snprintf(raw + n, sizeof(raw) - n,
                              "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
                              paths[i]);
    }
    cr_assert_eq(tn_send_all(fd, raw, n), 0);
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        struct tn_resp r;
        cr_assert_eq(tn_read_response(fd, &r), 0, "response %zu", i);
        cr_assert_eq(r.status, want[i], "response %zu: %d", i, r.status);
        tn_resp_free(&r);
    }
    /* many small pipelined requests, written byte-split across sends */
    n = 0;
    for (int i = 0; i < 100; i++) {
        n +=
            (size_t)snprintf(raw + n, sizeof(raw) - n, "GET /ok/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    }
    for (size_t off = 0; off < n; off += 7) {
        cr_assert_eq(tn_send_all(fd, raw + off, off + 7 <= n ? 7 : n - off), 0);
    }
    for (int i = 0; i < 100; i++) {
        struct tn_resp r;
        cr_assert_eq(tn_read_response(fd, &r), 0, "small response %d", i);
        cr_assert_eq(r.status, 200);
        tn_resp_free(&r);
    }
    close(fd);
    cr_assert_eq(stat_of("requests"), 108);
    stopped();
}

/* expect_refusal sends raw and expects status, then the connection closed. */
static void expect_refusal(const char *raw, size_t len, int status)
{
    int fd = tn_connect(addr());
    cr_assert_geq(fd, 0);
    tn_send_all(fd, raw, len); /* the harness may close before reading all of it */
    struct tn_resp r;
    cr_assert_eq(tn_read_response(fd, &r), 0);
    cr_assert_eq(r.status, status, "got %d want %d", r.status, status);
    char v[64];
    cr_assert(tn_resp_header(&r, "Connection", v, sizeof(v)));
    cr_assert_str_eq(v, "close");
    tn_resp_free(&r);
    cr_assert(tn_wait_readable(fd, 3000));
    char b[64];
    ssize_t n = recv(fd, b, sizeof(b), 0);
    cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "still open: %zd", n);
    close(fd);
}

Test(harness, oversized_and_malformed_requests_are_refused)
{
    START("--quiet", "--max-header-bytes", "1k", "--max-headers", "8", "--max-body", "4k");
    static char raw[16384];

    /* head over 1 KiB: 431 */
    int n = snprintf(raw, sizeof(raw), "GET /ok/x HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(raw + n, 'a', 2000);
    n += 2000;
    n += snprintf(raw + n, sizeof(raw) - (size_t)n, "\r\n\r\n");
    expect_refusal(raw, (size_t)n, 431);

    /* more than 8 header lines: 431 */
    n = snprintf(raw, sizeof(raw), "GET /ok/x HTTP/1.1\r\n");
    for (int i = 0; i < 9; i++) {
        n += snprintf(raw + n, sizeof(raw) - (size_t)n, "H%d: v\r\n", i);
    }
    n += snprintf(raw + n, sizeof(raw) - (size_t)n, "\r\n");
    expect_refusal(raw, (size_t)n, 431);

    /* a declared body over 4 KiB: 413 before the body is even sent */
    n = snprintf(raw, sizeof(raw),
                 "POST /ok/x HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
    expect_refusal(raw, (size_t)n, 413);
    /* ... and with the body sent anyway */
    memset(raw + n, 'b', 5000);
    expect_refusal(raw, (size_t)n + 5000, 413);

    /* chunked over the limit */
    n = snprintf(raw, sizeof(raw),
                 "POST /ok/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2000\r\n");
    expect_refusal(raw, (size_t)n, 413);

    const char *bad = "GET /ok/x HTTP/1.1\r\nBad Header: x\r\n\r\n";
    expect_refusal(bad, strlen(bad), 400);
    bad = "GET /ok/x HTTP/2.0\r\n\r\n";
    expect_refusal(bad, strlen(bad), 505);
    bad = "POST /ok/x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
    expect_refusal(bad, strlen(bad), 501);
    bad = "POST /ok/x HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
    expect_refusal(bad, strlen(bad), 400);

    /* the server is still fine, and counted it all */
    cr_assert_eq(one("GET", "/ok/x", NULL, NULL), 200);
    cr_assert_eq(stat_of("errors.head_too_large"), 2);
    cr_assert_eq(stat_of("errors.body_too_large"), 3);
    cr_assert_eq(stat_of("errors.bad_request"), 3);
    cr_assert_eq(stat_of("errors.not_implemented"), 1);
    cr_assert_eq(stat_of("requests"), 1);
    stopped();
}

Test(harness, body_at_the_limit_chunked_bodies_and_expect_continue)
{
    START("--quiet", "--max-body", "4k");
    static char raw[16384];
    int n = snprintf(raw, sizeof(raw),
                     "POST /ok/x HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n");
    memset(raw + n, 'c', 4096);
    struct tn_resp r;
    cr_assert_eq(tn_request(addr(), raw, (size_t)n + 4096, &r), 0);
    cr_assert_eq(r.status, 200);
    tn_resp_free(&r);

    const char *chunked = "POST /ok/x HTTP/1.1\r\nHost: t\r\nX-Harness-Id: ch1\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
                          "GET /ok/after HTTP/1.1\r\nHost: t\r\n\r\n";
    int fd = tn_connect(addr());
    cr_assert_eq(tn_send_all(fd, chunked, strlen(chunked)), 0);
    cr_assert_eq(tn_read_response(fd, &r), 0);
    cr_assert_eq(r.status, 200);
    tn_resp_free(&r);
    cr_assert_eq(tn_read_response(fd, &r), 0);
    cr_assert_eq(r.status, 200);
    tn_resp_free(&r);

    /* Expect: 100-continue gets the interim answer before the body is sent */
    const char *head = "POST /ok/x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                       "Content-Length: 5\r\n\r\n";
    cr_assert_eq(tn_send_all(fd, head, strlen(head)), 0);
    cr_assert_eq(tn_read_response_ex(fd, &r, TN_KEEP_INTERIM), 0);
    cr_assert_eq(r.status, 100);
    tn_resp_free(&r);
    cr_assert_eq(tn_send_all(fd, "hello", 5), 0);
    cr_assert_eq(tn_read_response(fd, &r), 0);
    cr_assert_eq(r.status, 200);
    tn_resp_free(&r);
    close(fd);
    stopped();
}

Test(harness, connection_close_http10_idle_timeout_and_max_conns)
{
    START("--quiet", "--idle-timeout", "200", "--max-conns", "3");
    struct tn_resp r;
    /* Connection: close is honoured */
    int fd = tn_connect(addr());
    const char *raw = "GET /ok/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    cr_assert_eq(tn_send_all(fd, raw, strlen(raw)), 0);
    cr_assert_eq(tn_read_response(fd, &r), 0);
    tn_resp_free(&r);
    cr_assert(tn_wait_readable(fd, 3000));
    char b[8];
    cr_assert_eq(recv(fd, b, sizeof(b), 0), 0);
    close(fd);

    /* HTTP/1.0 closes unless asked to keep alive */
    fd = tn_connect(addr());
    raw = "GET /ok/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /ok/y HTTP/1.0\r\n\r\n";
    cr_assert_eq(tn_send_all(fd, raw, strlen(raw)), 0);
    cr_assert_eq(tn_read_response(fd, &r), 0);
    char v[64];
    cr_assert(tn_resp_header(&r, "Connection", v, sizeof(v)));
    cr_assert_str_eq(v, "keep-alive");
    tn_resp_free(&r);
    cr_assert_eq(tn_read_response(fd, &r), 0);
    cr_assert(tn_resp_header(&r, "Connection", v, sizeof(v)));
    cr_assert_str_eq(v, "close");
    tn_resp_free(&r);
    close(fd);

    /* an idle connection is closed after --idle-timeout */
    fd = tn_connect(addr());
    int64_t t0 = tn_now_ms();
    cr_assert(tn_wait_readable(fd, 5000));
    cr_assert_eq(recv(fd, b, sizeof(b), 0), 0);
    cr_assert_geq(tn_now_ms() - t0, 150);
    close(fd);

    /* over --max-conns: the extra connection is closed at once; the others still work */
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = tn_connect(addr());
        cr_assert_geq(fds[i], 0);
        cr_assert_eq(req(fds[i], "GET", "/ok/x", NULL, NULL, &r), 200);
        tn_resp_free(&r);
    }
    fd = tn_connect(addr());
    cr_assert(tn_wait_readable(fd, 3000));
    ssize_t n = recv(fd, b, sizeof(b), 0);
    cr_assert(n <= 0, "an over-limit connection was served");
    close(fd);
    for (int i = 0; i < 3; i++) {
        close(fds[i]);
    }
    cr_assert_geq(stat_of("connections.rejected"), 1);
    stopped();
}

/* ======== verification ===================================================================== */

Test(harness, verified_requests_count_and_bad_signatures_are_refused)
{
    START("--quiet", "--profile", "github", "--secret", GH_SECRET);
    char ev[256];
    struct signed_req s;
    sign_event(&s, "github", GH_SECRET, NULL, NULL, gh_event(ev, sizeof(ev), "evt_good"),
               "delivery-1");
    cr_assert_eq(post_signed("/ok/x", &s), 200);
    cr_assert_eq(post_signed("/ok/x", &s), 200);

    /* tamper with the body: same headers, one byte changed */
    s.body.p[2] ^= 1;
    int fd = tn_connect(addr());
    struct tn_resp r;
    cr_assert_eq(send_signed(fd, "/ok/x", &s, &r), 401);
    cr_assert(strstr(r.body, "no_matching_signature"), "%s", r.body);
    tn_resp_free(&r);
    close(fd);
    signed_free(&s);

    /* signed with another secret */
    sign_event(&s, "github", "wrong secret", NULL, NULL, gh_event(ev, sizeof(ev), "evt_x"),
               "delivery-2");
    cr_assert_eq(post_signed("/ok/x", &s), 401);
    signed_free(&s);

    /* no signature at all, on any behaviour: 401, never a delivery */
    cr_assert_eq(one("POST", "/drop/x", NULL, "{}"), 401);
    cr_assert_eq(one("POST", "/dup/x", NULL, "{}"), 401);

    cr_assert_eq(stat_of("verified"), 2);
    cr_assert_eq(stat_of("bad_signature"), 4);
    cr_assert_eq(stat_of("unverified"), 0);
    cr_assert_eq(stat_of("unique"), 1);
    cr_assert_eq(stat_of("duplicates"), 1);
    cr_assert_eq(stat_of("status.401"), 4);
    cr_assert_eq(stat_of("routes.ok.bad_signature"), 2);
    cr_assert_eq(stat_of("routes.drop.bad_signature"), 1);

    /* the id the verifier reports is the one counted (github's verifier names no id for a
     * request it refuses, so the tampered attempt is counted globally only) */
    cr_assert_eq(tn_get(addr(), "/_harness/ids/delivery-1", &r), 200);
    uint64_t v;
    cr_assert(tn_json_u64(r.body, "attempts", &v) && v == 2, "%s", r.body);
    cr_assert(tn_json_u64(r.body, "verified", &v) && v == 2, "%s", r.body);
    tn_resp_free(&r);
    stopped();
}

Test(harness, routes_verify_each_prefix_with_its_own_profile)
{
    START("--quiet", "--route", "/gh/=github:" GH_SECRET, "--route", "/std/=standard:" STD_SECRET,
          "--route", "/h/=humanos:" HOS_SECRET ":" HOS_ENC ":" HOS_SALT, "--route", "/raw/=none");
    char ev[256];
    struct signed_req gh, st, hos;
    sign_event(&gh, "github", GH_SECRET, NULL, NULL, gh_event(ev, sizeof(ev), "evt_r1"), "gh-1");
    sign_event(&st, "standard", STD_SECRET, NULL, NULL, gh_event(ev, sizeof(ev), "evt_r2"), "");
    const char *hos_ev =
        "{\"id\":\"evt_r3\",\"type\":\"credential.issued\",\"data\":{\"requestId\":\"req-77\","
        "\"issuerDid\":\"did:x:1\",\"decisionDate\":\"2026-05-12T15:30:00Z\","
        "\"user\":{\"contact\":\"a@b.c\",\"did\":\"did:x:2\"}}}";
    sign_event(&hos, "humanos", HOS_SECRET, HOS_ENC, HOS_SALT, hos_ev, "");

    cr_assert_eq(post_signed("/gh/ok/x", &gh), 200);
    cr_assert_eq(post_signed("/std/ok/x", &st), 200);
    cr_assert_eq(post_signed("/h/ok/x", &hos), 200);
    /* the behaviour is read after the prefix */
    cr_assert_eq(post_signed("/std/status/202/x", &st), 202);
    cr_assert_eq(post_signed("/std/ok", &st), 200);
    /* a request signed for one profile fails on another prefix */
    cr_assert_eq(post_signed("/std/ok/x", &gh), 401);
    cr_assert_eq(post_signed("/gh/ok/x", &hos), 401);
    /* unrouted paths: no profile, accepted unverified */
    cr_assert_eq(one("POST", "/raw/ok/x", "X-Harness-Id: raw-1\r\n", "{}"), 200);
    cr_assert_eq(one("POST", "/ok/x", NULL, "{}"), 200);

    cr_assert_eq(stat_of("verified"), 5);
    cr_assert_eq(stat_of("bad_signature"), 2);
    cr_assert_eq(stat_of("unverified"), 2);
    /* standard's id is its webhook-id (the event id), delivered three times */
    cr_assert_eq(stat_of("duplicates"), 2);
    struct tn_resp r;
    cr_assert_eq(tn_get(addr(), "/_harness/stats", &r), 200);
    cr_assert(strstr(r.body,
                     "{\"prefix\":\"/h/\",\"profile\":\"humanos\",\"counts\":{\"requests\":1,"
                     "\"verified\":1,\"bad_signature\":0}}"),
              "%s", r.body);
    cr_assert(strstr(r.body,
                     "{\"prefix\":\"/gh/\",\"profile\":\"github\",\"counts\":{\"requests\":2,"
                     "\"verified\":1,\"bad_signature\":1}}"),
              "%s", r.body);
    tn_resp_free(&r);
    cr_assert_eq(tn_get(addr(), "/_harness/ids/evt_r2", &r), 200);
    tn_resp_free(&r);
    signed_free(&gh);
    signed_free(&st);
    signed_free(&hos);
    stopped();
}

/* ======== concurrency ======================================================================= */

struct client_arg {
    const char *addr;
    int index;
    int requests;
    int ok;
};

static void *client_main(void *p)
{
    struct client_arg *a = p;
    int fd = tn_connect(a->addr);
    if (fd < 0) {
        return NULL;
    }
    for (int i = 0; i < a->requests; i++) {
        /* ids: half unique to this client, half shared by every client (shared-0..49) */
        char raw[512];
        int n;
        if (i % 2 == 0) {
            n = snprintf(raw, sizeof(raw),
                         "POST /ok/c HTTP/1.1\r\nHost: t\r\nX-Harness-Id: c%d-%d\r\n"
                         "Content-Length: 2\r\n\r\n{}",
                         a->index, i);
        } else {
            n = snprintf(raw, sizeof(raw),
                         "POST /ok/c HTTP/1.1\r\nHost: t\r\nX-Harness-Id: shared-%d\r\n"
                         "Content-Length: 2\r\n\r\n{}",
                         (i / 2) % 50);
        }
        struct tn_resp r;
        if (tn_send_all(fd, raw, (size_t)n) != 0 || tn_read_response(fd, &r) != 0) {
            break;
        }
        a->ok += r.status == 200;
        tn_resp_free(&r);
        if (i % 50 == 49) { /* new connections now and then */
            close(fd);
            fd = tn_connect(a->addr);
            if (fd < 0) {
                return NULL;
            }
        }
    }
    close(fd);
    return NULL;
}

Test(harness, counters_are_exact_under_concurrent_clients)
{
    START("--quiet", "--threads", "2");
    enum { CLIENTS = 6, PER = 200 };
    pthread_t th[CLIENTS];
    struct client_arg args[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (struct client_arg){.addr = addr(), .index = i, .requests = PER};
        cr_assert_eq(pthread_create(&th[i], NULL, client_main, &args[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
    }
    cr_assert_eq(ok, CLIENTS * PER);
    cr_assert_eq(stat_of("requests"), CLIENTS * PER);
    cr_assert_eq(stat_of("routes.ok.requests"), CLIENTS * PER);
    cr_assert_eq(stat_of("status.200"), CLIENTS * PER);
    /* unique: CLIENTS * PER / 2 own ids + 50 shared; every other shared arrival duplicates */
    cr_assert_eq(stat_of("unique"), CLIENTS * PER / 2 + 50);
    cr_assert_eq(stat_of("ids"), CLIENTS * PER / 2 + 50);
    cr_assert_eq(stat_of("duplicates"), CLIENTS * PER / 2 - 50);
    stat_eventually("latency_us.count", CLIENTS * PER);
    stopped();
}

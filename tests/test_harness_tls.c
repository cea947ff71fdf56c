/* test_harness_tls.c: hookring-harness over TLS, end to end. Each test makes a throw-away CA
 * and a server certificate for 127.0.0.1 / ::1 / localhost with the openssl command (in a
 * fresh directory under /tmp, removed afterwards), starts the harness with a TLS listener and a
 * plain one beside it, and talks to it with a blocking BoringSSL client that verifies the
 * certificate against that CA. Without the openssl command every test fails, saying so. */
#include <criterion/criterion.h>

#include <errno.h>
#include <openssl/ssl.h>
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
#include "support/testpki.h"
#include "support/tlsclient.h"

/* The PKI and the harness of the running test; teardown removes the one and kills the other
 * (a test that passes has already stopped it cleanly). */
static struct tp_pki P;
static struct tn_proc H;
static int pki_rc = -1;
static char pki_err[1024];

/* setup makes the PKI; a failure is reported by the test itself (need_pki), as a failure with
 * its reason rather than as a crash of the set-up */
static void setup(void)
{
    pki_rc = tp_pki_make(&P, pki_err, sizeof(pki_err));
}

static void need_pki(void)
{
    cr_assert_eq(pki_rc, 0, "throw-away PKI: %s", pki_err);
}

static void teardown(void)
{
    tn_stop(&H, SIGKILL);
    tp_pki_remove(&P);
}

// cppcheck-suppress unknownMacro
TestSuite(harness_tls, .init = setup, .fini = teardown, .timeout = 60);

#define GH_SECRET "It's a Secret to Everybody"

/* start runs the harness with a TLS listener (H.addr[0]) and a plain one (H.addr[1]), both on
 * 127.0.0.1 port 0, and extra arguments (NULL-terminated). */
static void start(const char *const *extra)
{
    need_pki();
    const char *args[40] = {"--listen", "127.0.0.1:0", "--tls-cert",  P.cert,   "--tls-key",
                            P.key,      "--listen",    "127.0.0.1:0", "--quiet"};
    size_t n = 9;
    for (size_t i = 0; extra && extra[i]; i++) {
        args[n++] = extra[i];
    }
    args[n] = NULL;
    cr_assert_eq(tn_start(&H, "hookring-harness", args, 2), 0, "the harness did not start");
}

#define START(...) start((const char *const[]){__VA_ARGS__, NULL})

static const char *tls_addr(void)
{
    return H.addr[0];
}

static const char *plain_addr(void)
{
    return H.addr[1];
}

static void stopped(void)
{
    int st = tn_stop(&H, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "harness exit status %d; output:\n%s", st,
              H.out);
}

/* stat_of reads a counter over the plain listener. */
static uint64_t stat_of(const char *path)
{
    struct tn_resp r;
    cr_assert_eq(tn_get(plain_addr(), "/_harness/stats", &r), 200);
    uint64_t v = 0;
    cr_assert(tn_json_u64(r.body, path, &v), "no %s in %s", path, r.body);
    tn_resp_free(&r);
    return v;
}

/* stat_eventually polls until path reaches want (the harness sees a client's alert or close a
 * little after the client moved on); bounded. */
static void stat_eventually(const char *path, uint64_t want)
{
    uint64_t v = 0;
    for (int i = 0; i < 300; i++) {
        v = stat_of(path);
        if (v == want) {
            return;
        }
        usleep(10000);
    }
    cr_assert_eq(v, want, "%s: %llu, want %llu", path, (unsigned long long)v,
                 (unsigned long long)want);
}

static SSL_CTX *client_ctx(uint16_t min_version, uint16_t max_version)
{
    SSL_CTX *ctx = tc_ctx_new(P.ca, min_version, max_version);
    cr_assert_not_null(ctx, "client context for %s", P.ca);
    return ctx;
}

/* tls_open connects to the TLS listener, verifying the certificate for host. */
static void tls_open(struct tc_conn *c, SSL_CTX *ctx, const char *host, SSL_SESSION *session)
{
    char err[1024];
    cr_assert_eq(tc_connect(c, ctx, tls_addr(), host, session, err, sizeof(err)), 0, "%s", err);
}

/* req sends "METHOD path" with an optional body on c and returns the status. */
static int req(struct tc_conn *c, const char *method, const char *path, const char *headers,
               const char *body, struct tn_resp *r)
{
    char raw[8192];
    size_t bl = body ? strlen(body) : 0;
    snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %zu\r\n\r\n%s",
             method, path, headers ? headers : "", bl, body ? body : "");
    int st = tc_request(c, raw, r);
    cr_assert_geq(st, 0, "%s %s: %s", method, path, strerror(-st));
    return st;
}

/* expect_end reads from c and expects the connection to end as want says: 0 a clean
 * close_notify, or a negative errno (-ECONNRESET). */
static void expect_end(struct tc_conn *c, int want)
{
    char b[256];
    size_t got = 0;
    int rc = tc_recv(c, b, sizeof(b), &got);
    cr_assert(rc == want && got == 0, "expected the end (%d), got rc %d (%s) with %zu bytes", want,
              rc, strerror(-rc), got);
}

/* ---- signing with the engine's own signer --------------------------------------------------- */

struct signed_req {
    struct buf head; /* "Name: value\r\n" lines, Content-Length included */
    struct buf body;
};

static void sign_event(struct signed_req *s, const char *secret, const char *event_json,
                       const char *id)
{
    struct signer sg;
    char err[256];
    struct slice sec = slice_cstr(secret);
    cr_assert_eq(signer_init(&sg, profile_find("github"), &sec, 1, slice_cstr(NULL),
                             slice_cstr(NULL), err, sizeof(err)),
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

static int send_signed(struct tc_conn *c, const char *path, const struct signed_req *s,
                       struct tn_resp *r)
{
    char start_line[512];
    int n = snprintf(start_line, sizeof(start_line), "POST %s HTTP/1.1\r\nHost: t\r\n", path);
    cr_assert_eq(tc_send_all(c, start_line, (size_t)n), 0);
    cr_assert_eq(tc_send_all(c, s->head.p, s->head.len), 0);
    cr_assert_eq(tc_send_all(c, "\r\n", 2), 0);
    cr_assert_eq(tc_send_all(c, s->body.p, s->body.len), 0);
    cr_assert_eq(tc_read_response(c, r), 0);
    return r->status;
}

/* ======== certificates, listeners, arguments ================================================ */

Test(harness_tls, ok_with_the_certificate_verified_on_tls_1_2_and_1_3)
{
    START(NULL);
    /* the TLS listener says so after its address; the plain one does not */
    cr_assert(strstr(H.out, "listening on 127.0.0.1:") && strstr(H.out, " (tls)\n"), "%s", H.out);
    char line[96];
    snprintf(line, sizeof(line), "listening on %s (tls)\n", tls_addr());
    cr_assert(strstr(H.out, line), "%s", H.out);
    /* tn_start keeps the address alone */
    cr_assert_null(strchr(tls_addr(), ' '), "%s", tls_addr());
    cr_assert_null(strchr(plain_addr(), ' '), "%s", plain_addr());
    cr_assert_neq(tn_port(&H, 0), 0);
    cr_assert_neq(tn_port(&H, 0), tn_port(&H, 1));

    const uint16_t versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    for (size_t i = 0; i < ARRAY_SIZE(versions); i++) {
        SSL_CTX *ctx = client_ctx(versions[i], versions[i]);
        struct tc_conn c;
        struct tn_resp r;
        /* the IP address SAN, then the DNS name SAN */
        tls_open(&c, ctx, "127.0.0.1", NULL);
        cr_assert_eq(SSL_version(c.ssl), versions[i]);
        cr_assert_eq(req(&c, "GET", "/ok/x", NULL, NULL, &r), 200);
        cr_assert_str_eq(r.body, "ok\n");
        tn_resp_free(&r);
        tc_close(&c);
        tls_open(&c, ctx, "localhost", NULL);
        cr_assert_eq(req(&c, "POST", "/status/202/y", NULL, "{}", &r), 202);
        tn_resp_free(&r);
        tc_close(&c);
        SSL_CTX_free(ctx);
    }

    /* a name the certificate does not carry: the client refuses it, and says why to the server,
     * which counts a failed handshake and carries on */
    SSL_CTX *ctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct tc_conn c;
    char err[1024];
    cr_assert_neq(tc_connect(&c, ctx, tls_addr(), "example.com", NULL, err, sizeof(err)), 0);
    cr_assert(strstr(err, "verify") && strstr(err, "mismatch"), "%s", err);
    stat_eventually("tls.failed", 1);

    /* the plain listener answers at the same time */
    struct tn_resp r;
    cr_assert_eq(tn_get(plain_addr(), "/ok/plain", &r), 200);
    tn_resp_free(&r);
    tls_open(&c, ctx, "127.0.0.1", NULL);
    cr_assert_eq(req(&c, "GET", "/ok/again", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    tc_close(&c);
    SSL_CTX_free(ctx);

    cr_assert_eq(stat_of("tls.handshakes"), 5);
    cr_assert_eq(stat_of("tls.resumed"), 0);
    cr_assert_eq(stat_of("requests"), 6);
    cr_assert_eq(stat_of("status.200"), 4);
    cr_assert_eq(stat_of("status.202"), 2);
    stopped();
    cr_assert_null(strstr(H.out, "harness: tls"), "--quiet prints no summary");
}

Test(harness_tls, tls_arguments_apply_to_the_listen_before_them)
{
    need_pki();
    /* alone, on IPv6 (the certificate's ::1 address); the summary at exit has a tls line */
    const char *good[] = {"--listen", "[::1]:0", "--tls-cert", P.cert, "--tls-key", P.key, NULL};
    cr_assert_eq(tn_start(&H, "hookring-harness", good, 1), 0);
    cr_assert(strncmp(H.addr[0], "[::1]:", 6) == 0, "%s", H.addr[0]);
    SSL_CTX *ctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct tc_conn c;
    struct tn_resp r;
    tls_open(&c, ctx, "::1", NULL);
    cr_assert_eq(req(&c, "GET", "/ok/v6", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    tc_close(&c);
    SSL_CTX_free(ctx);
    stopped();
    cr_assert(strstr(H.out, "harness: tls 1 handshakes, 0 resumed, 0 failed\n"), "%s", H.out);

    const char *missing = "/nonexistent/cert.pem";
    const char *bad[][8] = {
        /* no --listen before them */
        {"--tls-cert", P.cert, "--tls-key", P.key, "--listen", "127.0.0.1:0", NULL},
        /* half a pair */
        {"--listen", "127.0.0.1:0", "--tls-cert", P.cert, NULL},
        {"--listen", "127.0.0.1:0", "--tls-key", P.key, NULL},
        /* the pair on the first --listen, half of one on the second */
        {"--listen", "127.0.0.1:0", "--tls-cert", P.cert, "--tls-key", P.key, "--listen",
         "127.0.0.1:0"},
        /* twice for one listener */
        {"--listen", "127.0.0.1:0", "--tls-cert", P.cert, "--tls-cert", P.cert, NULL},
        /* files that do not load or do not match */
        {"--listen", "127.0.0.1:0", "--tls-cert", missing, "--tls-key", P.key, NULL},
        {"--listen", "127.0.0.1:0", "--tls-cert", P.cert, "--tls-key", P.ca, NULL},
        {"--listen", "127.0.0.1:0", "--tls-cert", P.ca, "--tls-key", P.key, NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        const char *args[12];
        size_t n = 0;
        for (size_t k = 0; k < 8 && bad[i][k]; k++) {
            args[n++] = bad[i][k];
        }
        if (i == 3) {
            args[n++] = "--tls-key";
            args[n++] = P.key;
        }
        args[n] = NULL;
        cr_assert_neq(tn_start(&H, "hookring-harness", args, 1), 0, "case %zu started", i);
    }
}

/* ======== HTTP over TLS ===================================================================== */

Test(harness_tls, keep_alive_and_pipelining)
{
    START(NULL);
    SSL_CTX *ctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct tc_conn c;
    struct tn_resp r;
    tls_open(&c, ctx, "127.0.0.1", NULL);
    /* two requests, one connection */
    cr_assert_eq(req(&c, "POST", "/ok/1", "X-Harness-Id: ka-1\r\n", "{}", &r), 200);
    tn_resp_free(&r);
    cr_assert_eq(req(&c, "POST", "/ok/2", "X-Harness-Id: ka-2\r\n", "{}", &r), 200);
    tn_resp_free(&r);

    /* pipelined, held answers among them: in order */
    static char raw[16384];
    size_t n = 0;
    const char *paths[] = {"/ok/1",   "/status/201/2", "/slow/80/3",    "/status/202/4",
                           "/gone/5", "/trickle/1/6",  "/status/203/7", "/ok/8"};
    const int want[] = {200, 201, 200, 202, 410, 200, 203, 200};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        n += (size_t)snprintf(raw + n, sizeof(raw) - n,
                              "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
                              paths[i]);
    }
    cr_assert_eq(tc_send_all(&c, raw, n), 0);
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        cr_assert_eq(tc_read_response(&c, &r), 0, "response %zu", i);
        cr_assert_eq(r.status, want[i], "response %zu: %d", i, r.status);
        tn_resp_free(&r);
    }
    /* many small pipelined requests, split across records of 7 bytes */
    n = 0;
    for (int i = 0; i < 100; i++) {
        n +=
            (size_t)snprintf(raw + n, sizeof(raw) - n, "GET /ok/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
    }
    for (size_t off = 0; off < n; off += 7) {
        cr_assert_eq(tc_send_all(&c, raw + off, off + 7 <= n ? 7 : n - off), 0);
    }
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(tc_read_response(&c, &r), 0, "small response %d", i);
        cr_assert_eq(r.status, 200);
        tn_resp_free(&r);
    }
    tc_close(&c);
    SSL_CTX_free(ctx);
    cr_assert_eq(stat_of("requests"), 110);
    cr_assert_eq(stat_of("tls.handshakes"), 1);
    cr_assert_eq(stat_of("unique"), 2);
    stat_eventually("latency_us.count", 110);
    stopped();
}

Test(harness_tls, signed_requests_are_verified)
{
    START("--profile", "github", "--secret", GH_SECRET);
    const char *ev = "{\"id\":\"evt_tls\",\"type\":\"meeting.completed\",\"data\":{\"m\":\"1\"}}";
    struct signed_req s;
    sign_event(&s, GH_SECRET, ev, "delivery-tls-1");
    SSL_CTX *ctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct tc_conn c;
    struct tn_resp r;
    tls_open(&c, ctx, "localhost", NULL);
    cr_assert_eq(send_signed(&c, "/ok/x", &s, &r), 200);
    tn_resp_free(&r);
    /* the same delivery again, on the same connection: a duplicate */
    cr_assert_eq(send_signed(&c, "/ok/x", &s, &r), 200);
    tn_resp_free(&r);
    /* one byte changed: refused */
    s.body.p[2] ^= 1;
    cr_assert_eq(send_signed(&c, "/ok/x", &s, &r), 401);
    cr_assert(strstr(r.body, "no_matching_signature"), "%s", r.body);
    tn_resp_free(&r);
    /* unsigned */
    cr_assert_eq(req(&c, "POST", "/drop/x", NULL, "{}", &r), 401);
    tn_resp_free(&r);
    tc_close(&c);
    signed_free(&s);
    SSL_CTX_free(ctx);

    cr_assert_eq(stat_of("verified"), 2);
    cr_assert_eq(stat_of("bad_signature"), 2);
    cr_assert_eq(stat_of("unique"), 1);
    cr_assert_eq(stat_of("duplicates"), 1);
    cr_assert_eq(tn_get(plain_addr(), "/_harness/ids/delivery-tls-1", &r), 200);
    uint64_t v;
    cr_assert(tn_json_u64(r.body, "verified", &v) && v == 2, "%s", r.body);
    tn_resp_free(&r);
    stopped();
}

/* ======== resumption ======================================================================== */

/* resume_once makes a full handshake, takes its session (after a request, by which time a TLS
 * 1.3 ticket has arrived), then resumes it on a second connection. */
static void resume_once(SSL_CTX *ctx)
{
    struct tc_conn c;
    struct tn_resp r;
    tls_open(&c, ctx, "127.0.0.1", NULL);
    cr_assert_not(tc_resumed(&c));
    cr_assert_eq(req(&c, "GET", "/ok/first", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    SSL_SESSION *sess = tc_session(&c);
    cr_assert_not_null(sess, "the server gave no resumable session");
    tc_close(&c);

    tls_open(&c, ctx, "127.0.0.1", sess);
    cr_assert(tc_resumed(&c), "the session was not resumed");
    cr_assert_eq(req(&c, "GET", "/ok/second", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    tc_close(&c);
    SSL_SESSION_free(sess);
}

Test(harness_tls, sessions_resume_on_tls_1_3_and_1_2)
{
    START(NULL);
    SSL_CTX *ctx = client_ctx(TLS1_3_VERSION, TLS1_3_VERSION);
    resume_once(ctx);
    SSL_CTX_free(ctx);
    cr_assert_eq(stat_of("tls.handshakes"), 2);
    cr_assert_eq(stat_of("tls.resumed"), 1);

    ctx = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    resume_once(ctx);
    SSL_CTX_free(ctx);
    cr_assert_eq(stat_of("tls.handshakes"), 4);
    cr_assert_eq(stat_of("tls.resumed"), 2);

    /* the counters reset with the others */
    struct tn_resp r;
    const char *reset = "POST /_harness/reset HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n";
    cr_assert_eq(tn_request(plain_addr(), reset, strlen(reset), &r), 0);
    cr_assert_eq(r.status, 200);
    tn_resp_free(&r);
    cr_assert_eq(stat_of("tls.handshakes"), 0);
    cr_assert_eq(stat_of("tls.resumed"), 0);
    stopped();
}

/* a session made on one worker thread resumes on any: one context, shared ticket keys */
Test(harness_tls, sessions_resume_across_worker_threads)
{
    START("--threads", "2");
    SSL_CTX *ctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct tc_conn c;
    struct tn_resp r;
    tls_open(&c, ctx, "127.0.0.1", NULL);
    cr_assert_eq(req(&c, "GET", "/ok/x", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    SSL_SESSION *sess = tc_session(&c);
    cr_assert_not_null(sess, "the server gave no resumable session");
    tc_close(&c);
    enum { N = 8 };
    for (int i = 0; i < N; i++) {
        tls_open(&c, ctx, "127.0.0.1", sess);
        cr_assert(tc_resumed(&c), "connection %d was not resumed", i);
        cr_assert_eq(req(&c, "GET", "/ok/y", NULL, NULL, &r), 200);
        tn_resp_free(&r);
        tc_close(&c);
    }
    SSL_SESSION_free(sess);
    SSL_CTX_free(ctx);
    cr_assert_eq(stat_of("tls.handshakes"), N + 1);
    cr_assert_eq(stat_of("tls.resumed"), N);
    stopped();
}

/* ======== what is not TLS =================================================================== */

Test(harness_tls, plain_http_on_the_tls_port_is_closed_and_the_harness_carries_on)
{
    START(NULL);
#define JUNK(s)                                                                                    \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
    const struct {
        const char *p;
        size_t n;
    } junk[] = {
        JUNK("GET /ok/x HTTP/1.1\r\nHost: t\r\n\r\n"),
        JUNK("POST /ok/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"),
        JUNK("\x16\x03\x01\x00\x04\x01\x00\x00\x00"), /* an empty ClientHello */
    };
#undef JUNK
    for (size_t i = 0; i < ARRAY_SIZE(junk); i++) {
        int fd = tn_connect(tls_addr());
        cr_assert_geq(fd, 0);
        cr_assert_eq(tn_send_all(fd, junk[i].p, junk[i].n), 0);
        /* at most an alert, never an HTTP answer, then the end */
        char b[512];
        size_t len = 0;
        for (;;) {
            cr_assert(tn_wait_readable(fd, 3000), "case %zu: the connection stayed open", i);
            ssize_t n = recv(fd, b + len, sizeof(b) - 1 - len, 0);
            if (n <= 0) {
                cr_assert(n == 0 || errno == ECONNRESET, "case %zu: %s", i, strerror(errno));
                break;
            }
            len += (size_t)n;
            cr_assert_lt(len, sizeof(b) - 1, "case %zu: too much back", i);
        }
        b[len] = '\0';
        cr_assert(len == 0 || (uint8_t)b[0] == 0x15, "case %zu: not an alert: %s", i, b);
        close(fd);
    }
    /* a client that leaves halfway through its handshake */
    int fd = tn_connect(tls_addr());
    cr_assert_eq(tn_send_all(fd, "\x16\x03\x01\x02\x00\x01\x00\x01", 8), 0);
    close(fd);

    stat_eventually("tls.failed", ARRAY_SIZE(junk));
    SSL_CTX *ctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct tc_conn c;
    struct tn_resp r;
    tls_open(&c, ctx, "127.0.0.1", NULL);
    cr_assert_eq(req(&c, "GET", "/ok/x", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    tc_close(&c);
    SSL_CTX_free(ctx);
    cr_assert_eq(tn_get(plain_addr(), "/ok/x", &r), 200);
    tn_resp_free(&r);
    cr_assert_eq(stat_of("requests"), 2, "nothing sent in the clear was taken as a request");
    stopped();
}

/* ======== behaviours over TLS =============================================================== */

Test(harness_tls, reset_drop_and_timeout)
{
    START(NULL);
    SSL_CTX *ctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct tc_conn c;
    struct tn_resp r;
    const char *raw;

    /* /reset/: the TCP connection is reset */
    tls_open(&c, ctx, "127.0.0.1", NULL);
    raw = "POST /reset/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}";
    cr_assert_eq(tc_send_all(&c, raw, strlen(raw)), 0);
    expect_end(&c, -ECONNRESET);
    tc_close(&c);

    /* /drop/: recorded, then a clean end without an answer */
    tls_open(&c, ctx, "127.0.0.1", NULL);
    raw = "POST /drop/x HTTP/1.1\r\nHost: t\r\nX-Harness-Id: dr1\r\nContent-Length: 2\r\n\r\n{}";
    cr_assert_eq(tc_send_all(&c, raw, strlen(raw)), 0);
    expect_end(&c, 0);
    tc_close(&c);
    cr_assert_eq(stat_of("unique"), 1, "a drop counts as taken");

    /* /timeout/: never answers, holds the connection (a first request takes the tickets that
     * TLS 1.3 sends after the handshake off the wire) */
    tls_open(&c, ctx, "127.0.0.1", NULL);
    cr_assert_eq(req(&c, "GET", "/ok/x", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    raw = "POST /timeout/x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}";
    cr_assert_eq(tc_send_all(&c, raw, strlen(raw)), 0);
    cr_assert_not(tn_wait_readable(c.fd, 500), "/timeout/ answered");
    tc_close(&c);
    cr_assert_eq(stat_of("routes.timeout.requests"), 1);

    /* Connection: close, and a refused request: the answer, then close_notify */
    tls_open(&c, ctx, "127.0.0.1", NULL);
    cr_assert_eq(req(&c, "GET", "/ok/x", "Connection: close\r\n", NULL, &r), 200);
    char v[64];
    cr_assert(tn_resp_header(&r, "Connection", v, sizeof(v)));
    cr_assert_str_eq(v, "close");
    tn_resp_free(&r);
    expect_end(&c, 0);
    tc_close(&c);
    tls_open(&c, ctx, "127.0.0.1", NULL);
    cr_assert_eq(tc_request(&c, "GET /ok/x HTTP/1.1\r\nBad Header: x\r\n\r\n", &r), 400);
    tn_resp_free(&r);
    expect_end(&c, 0);
    tc_close(&c);
    SSL_CTX_free(ctx);
    cr_assert_eq(stat_of("errors.bad_request"), 1);
    stopped();
}

Test(harness_tls, trickle_big_and_slow)
{
    START("--big-bytes", "3m");
    SSL_CTX *ctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct tc_conn c;
    struct tn_resp r;
    tls_open(&c, ctx, "127.0.0.1", NULL);
    cr_assert_eq(req(&c, "GET", "/ok/x", NULL, NULL, &r), 200); /* the tickets, off the wire */
    tn_resp_free(&r);

    /* /trickle/: one record per byte, so the reader sees many small pieces */
    const char *raw = "GET /trickle/5/x HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(tc_send_all(&c, raw, strlen(raw)), 0);
    char all[256] = "";
    size_t len = 0;
    int reads = 0;
    while (len < sizeof(all) - 1 && !strstr(all, "trickled\n")) {
        size_t got;
        cr_assert_eq(tc_recv(&c, all + len, sizeof(all) - 1 - len, &got), 0);
        cr_assert_gt(got, 0);
        len += got;
        all[len] = '\0';
        reads++;
    }
    cr_assert(strncmp(all, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", all);
    cr_assert_gt(reads, 10, "%d reads", reads);

    /* /big/: megabytes, intact */
    cr_assert_eq(req(&c, "GET", "/big/x", NULL, NULL, &r), 200);
    cr_assert_eq(r.body_len, 3u << 20);
    for (size_t i = 0; i < r.body_len; i += 4093) {
        char want = (i % 64 == 63) ? '\n' : (char)('a' + (i / 64) % 26);
        cr_assert_eq(r.body[i], want, "byte %zu", i);
    }
    tn_resp_free(&r);
    cr_assert_eq(req(&c, "GET", "/big/1000/x", NULL, NULL, &r), 200);
    cr_assert_eq(r.body_len, 1000);
    tn_resp_free(&r);

    /* /slow/: after its delay, and the connection is still usable */
    int64_t t0 = tn_now_ms();
    cr_assert_eq(req(&c, "POST", "/slow/300/x", NULL, "{}", &r), 200);
    cr_assert_geq(tn_now_ms() - t0, 300);
    tn_resp_free(&r);
    cr_assert_eq(req(&c, "GET", "/ok/after", NULL, NULL, &r), 200);
    tn_resp_free(&r);
    tc_close(&c);
    SSL_CTX_free(ctx);
    cr_assert_geq(stat_of("latency_us.max"), 300000);
    stopped();
}

/* ======== concurrency ======================================================================= */

struct client_arg {
    const char *addr;
    const char *ca;
    int index;
    int ok;
    int resumed;
    char err[512];
};

/* client_main makes PER requests over TLS, a new connection every 25, resuming the session of
 * the first one. */
enum { CLIENTS = 4, PER = 100 };

static void *client_main(void *p)
{
    struct client_arg *a = p;
    SSL_CTX *ctx = tc_ctx_new(a->ca, TLS1_2_VERSION, TLS1_3_VERSION);
    SSL_SESSION *sess = NULL;
    struct tc_conn c = {.fd = -1};
    for (int i = 0; ctx && i < PER; i++) {
        if (i % 25 == 0) {
            tc_close(&c);
            if (tc_connect(&c, ctx, a->addr, "127.0.0.1", sess, a->err, sizeof(a->err)) < 0) {
                break;
            }
            a->resumed += tc_resumed(&c);
        }
        char raw[256];
        snprintf(raw, sizeof(raw),
                 "POST /ok/c HTTP/1.1\r\nHost: t\r\nX-Harness-Id: c%d-%d\r\n"
                 "Content-Length: 2\r\n\r\n{}",
                 a->index, i);
        struct tn_resp r;
        int st = tc_request(&c, raw, &r);
        tn_resp_free(&r);
        if (st != 200) {
            snprintf(a->err, sizeof(a->err), "request %d: %d", i, st);
            break;
        }
        a->ok++;
        if (!sess) {
            sess = tc_session(&c);
        }
    }
    tc_close(&c);
    SSL_SESSION_free(sess);
    SSL_CTX_free(ctx);
    return NULL;
}

Test(harness_tls, counters_are_exact_under_concurrent_tls_clients)
{
    START("--threads", "2");
    pthread_t th[CLIENTS];
    static struct client_arg args[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        args[i] = (struct client_arg){.addr = tls_addr(), .ca = P.ca, .index = i};
        cr_assert_eq(pthread_create(&th[i], NULL, client_main, &args[i]), 0);
    }
    int ok = 0, resumed = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].ok, PER, "client %d: %s", i, args[i].err);
        ok += args[i].ok;
        resumed += args[i].resumed;
    }
    cr_assert_eq(ok, CLIENTS * PER);
    cr_assert_eq(resumed, CLIENTS * (PER / 25 - 1));
    cr_assert_eq(stat_of("requests"), CLIENTS * PER);
    cr_assert_eq(stat_of("unique"), CLIENTS * PER);
    cr_assert_eq(stat_of("tls.handshakes"), CLIENTS * PER / 25);
    cr_assert_eq(stat_of("tls.resumed"), resumed);
    cr_assert_eq(stat_of("tls.failed"), 0);
    stat_eventually("latency_us.count", CLIENTS * PER);
    stopped();
}

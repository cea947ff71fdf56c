/* test_tls.c: deliveries over HTTPS and through host names, end to end: hookring send and blast
 * against the harness's TLS listeners, with a throw-away PKI made at run time by the openssl
 * command (a CA; a good certificate for 127.0.0.1, localhost and hooks.test; one for another
 * host; an expired one; a self-signed one). Every profile is delivered and verified over TLS;
 * untrusted, expired, self-signed and wrong-host certificates are refused with their class;
 * sessions are resumed on reconnect (counted at both ends); a handshake that never ends times
 * out; names resolve through --resolve and a resolver that fails is retried like any failed
 * attempt; the address guard judges resolved addresses. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/testnet.h"
#include "support/testpki.h"

static char dir[64];
static int pki_rc = -1;
static struct tn_proc H;

/* The listeners of the harness, in --listen order: four TLS ones, then a plain one for the
 * stats (the test's own client speaks plain HTTP). */
enum { L_GOOD, L_WRONG, L_EXPIRED, L_SELF, L_PLAIN, L_COUNT };

static const char pki_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "k() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key "
    "-out $1.csr -subj \"/CN=$1\" 2>/dev/null; "
    "printf 'subjectAltName=%s\\nbasicConstraints=CA:FALSE\\n' \"$2\" > $1.ext; }\n"
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
    "-out ca.pem -days 2 -subj '/CN=hookring test CA' 2>/dev/null\n"
    "k good IP:127.0.0.1,DNS:localhost,DNS:hooks.test\n"
    "openssl x509 -req -in good.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out good.pem "
    "-days 2 -extfile good.ext 2>/dev/null\n"
    "k wrong DNS:other.example,IP:10.9.9.9\n"
    "openssl x509 -req -in wrong.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out wrong.pem "
    "-days 2 -extfile wrong.ext 2>/dev/null\n"
    "k expired IP:127.0.0.1,DNS:localhost\n"
    "mkdir db && : > db/index.txt && echo 01 > db/serial\n"
    "printf '[ca]\\ndefault_ca=c\\n[c]\\ndatabase=db/index.txt\\nserial=db/serial\\n"
    "new_certs_dir=db\\ndefault_md=sha256\\npolicy=p\\n[p]\\ncommonName=supplied\\n' > ca.cnf\n"
    "openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr "
    "-out expired.pem -startdate 20200101000000Z -enddate 20200102000000Z -extfile expired.ext "
    "-notext 2>/dev/null\n"
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout self.key "
    "-out self.pem -days 2 -subj /CN=self -addext subjectAltName=IP:127.0.0.1 2>/dev/null\n";

static void setup(void)
{
    char openssl[256];
    if (tp_openssl_path(openssl, sizeof(openssl)) != 0) {
        return; /* need_pki fails the test with the reason */
    }
    strcpy(dir, "/tmp/hookring-tls-XXXXXX");
    if (!mkdtemp(dir)) {
        dir[0] = '\0';
        return;
    }
    char path[128], cmd[256];
    snprintf(path, sizeof(path), "%s/mk.sh", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        return;
    }
    fputs(pki_script, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "bash %s %s", path, dir);
    pki_rc = system(cmd);
}

static void teardown(void)
{
    tn_stop(&H, SIGKILL);
    if (dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "test_tls: could not remove %s\n", dir);
        }
        dir[0] = '\0';
    }
    pki_rc = -1;
}

// cppcheck-suppress unknownMacro
TestSuite(tls, .init = setup, .fini = teardown, .timeout = 90);

static void need_pki(void)
{
    char openssl[256];
    cr_assert_eq(tp_openssl_path(openssl, sizeof(openssl)), 0,
                 "the openssl command is missing (make deps installs it)");
    cr_assert_eq(pki_rc, 0, "making the throw-away PKI in %s failed (%d)", dir, pki_rc);
}

static const char *file(const char *name)
{
    static char buf[8][160];
    static int i;
    char *p = buf[i++ % 8];
    snprintf(p, 160, "%s/%s", dir, name);
    return p;
}

#define GH_SECRET "It's a Secret to Everybody"

/* The profiles, their secrets and events, as in tests/data. */
static const struct prof {
    const char *name, *secret, *enc, *salt;
} PROFS[] = {
    {"humanconnection", "whsec_your_signing_secret", NULL, NULL},
    {"humiris", "whsec_k9m2x4p7q1humiris", NULL, NULL},
    {"humcli", "whsec_my_secret_key_123", NULL, NULL},
    {"humanos", "your-signature-secret",
     "eW91ci1lbmNyeXB0aW9uLXNlY3JldA==", "your-encryption-salt"},
    {"aksita", "aksita-webhook-secret", NULL, NULL},
    {"standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", NULL, NULL},
    {"svix", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", NULL, NULL},
    {"stripe", "whsec_stripe_test_secret_4eC39HqLyjWDarjtT1", NULL, NULL},
    {"github", GH_SECRET, NULL, NULL},
};
#define NPROFS (sizeof(PROFS) / sizeof(PROFS[0]))

/* start runs the harness with four TLS listeners (good, wrong host, expired, self-signed) and
 * one verifying route per profile (/<profile>/...). */
static void start(void)
{
    need_pki();
    static char routes[NPROFS][256];
    const char *args[64];
    size_t n = 0;
    static const char *const certs[L_PLAIN] = {"good", "wrong", "expired", "self"};
    for (int l = 0; l < L_PLAIN; l++) {
        static char c[L_PLAIN][160], k[L_PLAIN][160];
        snprintf(c[l], sizeof(c[l]), "%s/%s.pem", dir, certs[l]);
        snprintf(k[l], sizeof(k[l]), "%s/%s.key", dir, certs[l]);
        args[n++] = "--listen";
        args[n++] = "127.0.0.1:0";
        args[n++] = "--tls-cert";
        args[n++] = c[l];
        args[n++] = "--tls-key";
        args[n++] = k[l];
    }
    args[n++] = "--listen";
    args[n++] = "127.0.0.1:0";
    for (size_t i = 0; i < NPROFS; i++) {
        const struct prof *p = &PROFS[i];
        if (p->enc) {
            snprintf(routes[i], sizeof(routes[i]), "/%s/=%s:%s:%s:%s", p->name, p->name, p->secret,
                     p->enc, p->salt);
        } else {
            snprintf(routes[i], sizeof(routes[i]), "/%s/=%s:%s", p->name, p->name, p->secret);
        }
        args[n++] = "--route";
        args[n++] = routes[i];
    }
    args[n++] = "--quiet";
    args[n] = NULL;
    cr_assert_eq(tn_start(&H, "hookring-harness", args, L_COUNT), 0, "the harness did not start");
}

static uint16_t port(int l)
{
    return tn_port(&H, (size_t)l);
}

/* stat_of reads a counter of the harness's stats ("tls.resumed") through the plain listener. */
static uint64_t stat_of(const char *path)
{
    struct tn_resp r;
    cr_assert_eq(tn_get(H.addr[L_PLAIN], "/_harness/stats", &r), 200);
    uint64_t v = 0;
    bool found = tn_json_u64(r.body, path, &v);
    cr_assert(found, "no %s in the stats:\n%s", path, r.body);
    tn_resp_free(&r);
    return v;
}

/* ---- running hookring ------------------------------------------------------------------------ */

struct run {
    int code;
    char out[65536];
    char err[16384];
};
static struct run R;

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f) {
        n = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

/* run executes build/hookring with args (NULL-terminated), bounded to 60 s, capturing both
 * streams into R. */
static void run(const char *const *args)
{
    char cmd[8192];
    size_t n = (size_t)snprintf(cmd, sizeof(cmd), "timeout 60 %s/hookring", tn_build_dir());
    for (size_t i = 0; args[i]; i++) {
        /* single-quote every argument (none contains a single quote but the github secret) */
        n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, " '");
        for (const char *c = args[i]; *c; c++) {
            if (*c == '\'') {
                n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, "'\\''");
            } else {
                cmd[n++] = *c;
            }
        }
        n += (size_t)snprintf(cmd + n, sizeof(cmd) - n, "'");
    }
    snprintf(cmd + n, sizeof(cmd) - n, " > %s/out 2> %s/err", dir, dir);
    int st = system(cmd);
    R.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    slurp(file("out"), R.out, sizeof(R.out));
    slurp(file("err"), R.err, sizeof(R.err));
}

#define RUN(...) run((const char *const[]){__VA_ARGS__, NULL})

static const char *event_of(const char *profile)
{
    static char buf[256];
    snprintf(buf, sizeof(buf), "tests/data/events/%s.json", profile);
    return buf;
}

static const char *url_at(int l, const char *host, const char *path)
{
    static char buf[4][256];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 256, "https://%s:%u%s", host, port(l), path);
    return p;
}

/* send_to runs hookring send for profile p to url with extra arguments. */
static void send_to(const struct prof *p, const char *url, const char *const *extra)
{
    const char *args[40] = {"send",        "--profile", p->name,       "--secret",
                            p->secret,     "--url",     url,           "--allow-net",
                            "127.0.0.0/8", "--ca-file", file("ca.pem")};
    size_t n = 11;
    if (p->enc) {
        args[n++] = "--enc-secret";
        args[n++] = p->enc;
        args[n++] = "--enc-salt";
        args[n++] = p->salt;
    }
    for (size_t i = 0; extra && extra[i]; i++) {
        args[n++] = extra[i];
    }
    args[n++] = event_of(p->name);
    args[n] = NULL;
    run(args);
}

#define SEND(p, url, ...) send_to(p, url, (const char *const[]){__VA_ARGS__ NULL})

static const struct prof *prof(const char *name)
{
    for (size_t i = 0; i < NPROFS; i++) {
        if (strcmp(PROFS[i].name, name) == 0) {
            return &PROFS[i];
        }
    }
    cr_assert_fail("no profile %s", name);
    return NULL;
}

static void stop_harness(void)
{
    int st = tn_stop(&H, SIGTERM);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "harness exit status %d", st);
}

/* ---- the tests ---------------------------------------------------------------------------------
 */

Test(tls, every_profile_delivered_and_verified_over_https)
{
    start();
    for (size_t i = 0; i < NPROFS; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/%s/ok/tls", PROFS[i].name);
        SEND(&PROFS[i], url_at(L_GOOD, "127.0.0.1", path), );
        cr_expect_eq(R.code, 0, "%s: exit %d\n%s%s", PROFS[i].name, R.code, R.out, R.err);
        cr_expect(strstr(R.out, "attempt 1: 200 in ") != NULL, "%s:\n%s", PROFS[i].name, R.out);
    }
    cr_expect_eq(stat_of("verified"), NPROFS, "%s", H.out);
    cr_expect_eq(stat_of("bad_signature"), 0);
    cr_expect_geq(stat_of("tls.handshakes"), NPROFS);
    stop_harness();
}

Test(tls, a_host_name_resolved_and_verified_against_the_certificate)
{
    start();
    const struct prof *p = prof("humiris");
    SEND(p, url_at(L_GOOD, "hooks.test", "/humiris/ok/n"), "--resolve", "hooks.test:127.0.0.1", );
    cr_expect_eq(R.code, 0, "exit %d\n%s%s", R.code, R.out, R.err);
    SEND(p, url_at(L_GOOD, "localhost", "/humiris/ok/l"), );
    cr_expect_eq(R.code, 0, "localhost: exit %d\n%s%s", R.code, R.out, R.err);
    cr_expect_eq(stat_of("verified"), 2);
    stop_harness();
}

Test(tls, bad_certificates_are_refused_with_their_class)
{
    start();
    const struct prof *p = prof("standard");
    static const struct {
        int listener;
        const char *cls;
        bool with_ca;
    } cases[] = {
        {L_WRONG, "tls_wrong_host", true},
        {L_EXPIRED, "tls_expired", true},
        {L_SELF, "tls_untrusted", true},
        {L_GOOD, "tls_untrusted", false}, /* our CA, not trusted without --ca-file */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *url = url_at(cases[i].listener, "127.0.0.1", "/standard/ok/bad");
        if (cases[i].with_ca) {
            SEND(p, url, );
        } else {
            run((const char *const[]){"send", "--profile", p->name, "--secret", p->secret, "--url",
                                      url, "--allow-net", "127.0.0.0/8", event_of(p->name), NULL});
        }
        cr_expect_eq(R.code, 1, "case %zu: exit %d\n%s%s", i, R.code, R.out, R.err);
        char want[64];
        snprintf(want, sizeof(want), "attempt 1: %s in ", cases[i].cls);
        cr_expect(strstr(R.out, want) != NULL, "case %zu: want %s:\n%s", i, cases[i].cls, R.out);
        cr_expect(strstr(R.out, "  reason: ") != NULL, "case %zu: no reason:\n%s", i, R.out);
    }
    /* --insecure gets through, and says so */
    SEND(p, url_at(L_SELF, "127.0.0.1", "/standard/ok/insecure"), "--insecure", );
    cr_expect_eq(R.code, 0, "--insecure: exit %d\n%s%s", R.code, R.out, R.err);
    cr_expect(strstr(R.err, "WARNING") && strstr(R.err, "NOT verified"), "%s", R.err);
    /* nothing reached a route but the insecure delivery */
    cr_expect_eq(stat_of("verified"), 1, "%s", H.out);
    stop_harness();
}

Test(tls, reconnects_resume_the_session)
{
    start();
    const struct prof *p = prof("github");
    char url[512];
    /* two paths of one origin: they share its sessions */
    snprintf(url, sizeof(url), "%s,%s", url_at(L_GOOD, "127.0.0.1", "/github/ok/r1"),
             url_at(L_GOOD, "127.0.0.1", "/github/ok/r2"));
    RUN("blast", "--profile", "github", "--secret", p->secret, "--url", url, "--allow-net",
        "127.0.0.0/8", "--ca-file", file("ca.pem"), "--count", "60", "--concurrency", "2",
        "--workers", "1", "--new-connections", "--json", "--quiet");
    cr_assert_eq(R.code, 0, "exit %d\n%s%s", R.code, R.out, R.err);
    uint64_t ok = 0, conns = 0, hs = 0, resumed = 0;
    cr_assert(tn_json_u64(R.out, "ok", &ok) && tn_json_u64(R.out, "connections", &conns) &&
                  tn_json_u64(R.out, "tls_handshakes", &hs) &&
                  tn_json_u64(R.out, "tls_resumed", &resumed),
              "%s", R.out);
    cr_expect_eq(ok, 60);
    cr_expect_eq(conns, 60, "one connection per delivery");
    cr_expect_eq(hs, 60);
    cr_expect_geq(resumed, 55, "only %llu of 60 handshakes resumed", (unsigned long long)resumed);
    /* and keep-alive: a few connections carry them all */
    RUN("blast", "--profile", "github", "--secret", p->secret, "--url", url, "--allow-net",
        "127.0.0.0/8", "--ca-file", file("ca.pem"), "--count", "2000", "--concurrency", "8",
        "--workers", "1", "--json", "--quiet");
    cr_assert_eq(R.code, 0, "exit %d\n%s%s", R.code, R.out, R.err);
    cr_assert(tn_json_u64(R.out, "ok", &ok) && tn_json_u64(R.out, "connections", &conns), "%s",
              R.out);
    cr_expect_eq(ok, 2000);
    cr_expect_leq(conns, 8);
    cr_expect_geq(stat_of("tls.resumed"), resumed, "the harness saw fewer resumptions");
    cr_expect_eq(stat_of("verified"), 2060);
    stop_harness();
}

Test(tls, a_handshake_that_never_ends_times_out)
{
    need_pki();
    /* a listener that accepts (the kernel does) but never says a word */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    cr_assert_eq(bind(s, (struct sockaddr *)&sin, sl), 0);
    cr_assert_eq(listen(s, 8), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&sin, &sl), 0);
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/x", ntohs(sin.sin_port));
    int64_t t0 = tn_now_ms();
    SEND(prof("humiris"), url, "--timeout", "400", );
    int64_t took = tn_now_ms() - t0;
    close(s);
    cr_expect_eq(R.code, 1, "exit %d\n%s%s", R.code, R.out, R.err);
    cr_expect(strstr(R.out, "attempt 1: timeout_tls in ") != NULL, "%s", R.out);
    cr_expect_lt(took, 5000, "took %lld ms", (long long)took);
}

Test(tls, a_name_resolving_to_a_refused_address_is_refused)
{
    need_pki();
    const struct prof *p = prof("humiris");
    /* no --allow-net: hooks.test -> 127.0.0.1 is loopback */
    run((const char *const[]){"send", "--profile", p->name, "--secret", p->secret, "--url",
                              "https://hooks.test:9/x", "--resolve", "hooks.test:127.0.0.1",
                              event_of(p->name), NULL});
    cr_expect_eq(R.code, 1, "exit %d\n%s%s", R.code, R.out, R.err);
    cr_expect(strstr(R.out, "attempt 1: blocked_address in ") != NULL, "%s", R.out);
    cr_expect(strstr(R.out, "resolves to a loopback address") != NULL, "%s", R.out);
    /* the same through a v4-mapped IPv6 answer, and a metadata address */
    run((const char *const[]){"send", "--profile", p->name, "--secret", p->secret, "--url",
                              "https://hooks.test:9/x", "--resolve", "hooks.test:::ffff:127.0.0.1",
                              event_of(p->name), NULL});
    cr_expect(strstr(R.out, "resolves to a loopback address") != NULL, "%s", R.out);
    run((const char *const[]){"send", "--profile", p->name, "--secret", p->secret, "--url",
                              "http://meta.test/x", "--resolve", "meta.test:169.254.169.254",
                              event_of(p->name), NULL});
    cr_expect(strstr(R.out, "resolves to a metadata address") != NULL, "%s", R.out);
}

Test(tls, a_failing_resolver_is_retried_like_any_failed_attempt)
{
    need_pki();
    /* a resolver port where nothing listens: every query fails or times out */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    cr_assert_eq(bind(u, (struct sockaddr *)&sin, sl), 0);
    cr_assert_eq(getsockname(u, (struct sockaddr *)&sin, &sl), 0);
    close(u);
    char server[64];
    snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sin.sin_port));
    const struct prof *p = prof("standard");
    run((const char *const[]){"send", "--profile", p->name, "--secret", p->secret, "--url",
                              "https://hooks.test/x", "--dns-server", server, "--allow-net",
                              "127.0.0.0/8", "--retries", "--time-scale", "0.00001", "--timeout",
                              "1500", event_of(p->name), NULL});
    cr_expect_eq(R.code, 1, "exit %d\n%s%s", R.code, R.out, R.err);
    cr_expect(strstr(R.err, "retries exhausted after 10 attempts; last: dns_") != NULL, "%s%s",
              R.out, R.err);
    cr_expect(strstr(R.out, "attempt 10: dns_") != NULL, "%s", R.out);
}

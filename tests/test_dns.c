/* test_dns.c: resolution on the ring against a tiny DNS server run by the test itself:
 * answers, failure classes, the deadline, the cache and its expiry, joined queries, cancel and
 * clean-up with queries pending, many names at once, and the guard over a whole answer. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns.h"

/* a lost wake-up or a missed completion shows up as a hang: fail on it instead */
// cppcheck-suppress unknownMacro
TestSuite(dns, .timeout = 30);

/* ======== the test server =================================================================== */

enum { T_A = 1, T_AAAA = 28 };

struct rec {
    const char *name;
    uint16_t type;
    uint32_t ttl;
    const char *addr;
};

static const struct rec recs[] = {
    {"one.test", T_A, 60, "127.0.0.1"},        {"two.test", T_A, 60, "192.0.2.1"},
    {"two.test", T_A, 60, "192.0.2.2"},        {"dual.test", T_A, 60, "127.0.0.1"},
    {"dual.test", T_AAAA, 60, "::1"},          {"short.test", T_A, 1, "127.0.0.2"},
    {"public.test", T_A, 30, "93.184.216.34"}, {"mixed.test", T_A, 30, "93.184.216.34"},
    {"mixed.test", T_A, 30, "10.0.0.1"},
};

#define SRV_NAMES 1024

struct srv {
    int fd;  /* UDP */
    int lfd; /* TCP, on the same port: for answers truncated over UDP */
    uint16_t port;
    pthread_t th;
    int stop; /* __atomic */
    pthread_mutex_t mu;
    struct {
        char name[256];
        int n;
    } counts[SRV_NAMES];
    int ncounts;
    int total;
    int tcp_total;
};

static void srv_count(struct srv *s, const char *name)
{
    pthread_mutex_lock(&s->mu);
    s->total++;
    int i = 0;
    while (i < s->ncounts && strcmp(s->counts[i].name, name) != 0) {
        i++;
    }
    if (i == s->ncounts && i < SRV_NAMES) {
        snprintf(s->counts[i].name, sizeof(s->counts[i].name), "%s", name);
        s->ncounts++;
    }
    if (i < SRV_NAMES) {
        s->counts[i].n++;
    }
    pthread_mutex_unlock(&s->mu);
}

/* srv_queries is how many queries (A and AAAA each count) name received. */
static int srv_queries(struct srv *s, const char *name)
{
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->ncounts; i++) {
        if (strcmp(s->counts[i].name, name) == 0) {
            n = s->counts[i].n;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int srv_total(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->total;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

/* srv_reply builds the answer to query q; 0 when there is to be none (silent names). Over UDP
 * big.test's A answer is truncated (TC set, no records): the client asks again over TCP. */
static size_t srv_reply(struct srv *s, const uint8_t *q, size_t qlen, uint8_t *out, size_t cap,
                        bool tcp)
{
    if (qlen < 17) {
        return 0;
    }
    char name[256];
    size_t pos = 12, nlen = 0;
    while (pos < qlen && q[pos] != 0) {
        size_t l = q[pos++];
        if (l > 63 || pos + l > qlen || nlen + l + 1 >= sizeof(name)) {
            return 0;
        }
        if (nlen) {
            name[nlen++] = '.';
        }
        for (size_t i = 0; i < l; i++) {
            char c = (char)q[pos + i];
            name[nlen++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        pos += l;
    }
    name[nlen] = '\0';
    if (pos + 5 > qlen) {
        return 0;
    }
    uint16_t qtype = (uint16_t)(q[pos + 1] << 8 | q[pos + 2]);
    size_t qend = pos + 5;
    srv_count(s, name);
    if (strncmp(name, "silent", 6) == 0) {
        return 0;
    }

    uint8_t rcode = 0, tc = 0;
    struct rec ans[8];
    size_t nans = 0;
    unsigned idx;
    char a4[32];
    if (strcmp(name, "servfail.test") == 0) {
        rcode = 2;
    } else if (strcmp(name, "refused.test") == 0) {
        rcode = 5;
    } else if (strcmp(name, "nodata.test") == 0) {
        rcode = 0;
    } else if (strcmp(name, "big.test") == 0) {
        if (qtype == T_A && !tcp) {
            tc = 0x02;
        } else if (qtype == T_A) {
            ans[nans++] = (struct rec){name, T_A, 60, "192.0.2.10"};
            ans[nans++] = (struct rec){name, T_A, 60, "192.0.2.11"};
            ans[nans++] = (struct rec){name, T_A, 60, "192.0.2.12"};
        }
    } else if (sscanf(name, "n%u.test", &idx) == 1) {
        snprintf(a4, sizeof(a4), "10.77.%u.%u", idx / 256, idx % 256);
        if (qtype == T_A) {
            ans[nans++] = (struct rec){name, T_A, 60, a4};
        }
    } else {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(recs); i++) {
            if (strcmp(recs[i].name, name) == 0) {
                known = true;
                if (recs[i].type == qtype && nans < ARRAY_SIZE(ans)) {
                    ans[nans++] = recs[i];
                }
            }
        }
        rcode = known ? 0 : 3;
    }

    size_t need = qend + nans * (12 + 16);
    if (need > cap) {
        return 0;
    }
    memcpy(out, q, 2);                             /* id */
    out[2] = (uint8_t)(0x80 | tc | (q[2] & 0x01)); /* QR, opcode 0, TC, RD copied */
    out[3] = (uint8_t)(0x80 | rcode);              /* RA */
    put16(out + 4, 1);                             /* QDCOUNT */
    put16(out + 6, (uint16_t)nans);                /* ANCOUNT */
    put16(out + 8, 0);                             /* NSCOUNT */
    put16(out + 10, 0);                            /* ARCOUNT (the OPT RR is not echoed) */
    memcpy(out + 12, q + 12, qend - 12);           /* the question */
    size_t o = qend;
    for (size_t i = 0; i < nans; i++) {
        put16(out + o, 0xc00c); /* the question's name */
        put16(out + o + 2, ans[i].type);
        put16(out + o + 4, 1);
        put32(out + o + 6, ans[i].ttl);
        o += 10;
        if (ans[i].type == T_A) {
            put16(out + o, 4);
            cr_assert_eq(inet_pton(AF_INET, ans[i].addr, out + o + 2), 1);
            o += 6;
        } else {
            put16(out + o, 16);
            cr_assert_eq(inet_pton(AF_INET6, ans[i].addr, out + o + 2), 1);
            o += 18;
        }
    }
    return o;
}

/* srv_tcp answers the queries of one TCP connection (2-byte length, message) until EOF. */
static void srv_tcp(struct srv *s, int cfd)
{
    for (;;) {
        struct pollfd pfd = {.fd = cfd, .events = POLLIN};
        if (poll(&pfd, 1, 1000) <= 0) {
            break;
        }
        uint8_t q[514], out[1026];
        if (recv(cfd, q, 2, MSG_WAITALL) != 2) {
            break;
        }
        size_t qlen = (size_t)(q[0] << 8 | q[1]);
        if (qlen > 512 || recv(cfd, q + 2, qlen, MSG_WAITALL) != (ssize_t)qlen) {
            break;
        }
        pthread_mutex_lock(&s->mu);
        s->tcp_total++;
        pthread_mutex_unlock(&s->mu);
        size_t len = srv_reply(s, q + 2, qlen, out + 2, sizeof(out) - 2, true);
        if (len) {
            put16(out, (uint16_t)len);
            if (send(cfd, out, len + 2, MSG_NOSIGNAL) != (ssize_t)(len + 2)) {
                break;
            }
        }
    }
    close(cfd);
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd pfd[2] = {{.fd = s->fd, .events = POLLIN}, {.fd = s->lfd, .events = POLLIN}};
        if (poll(pfd, 2, 20) <= 0) {
            continue;
        }
        if (pfd[1].revents & POLLIN) {
            int cfd = accept(s->lfd, NULL, NULL);
            if (cfd >= 0) {
                srv_tcp(s, cfd);
            }
        }
        if (!(pfd[0].revents & POLLIN)) {
            continue;
        }
        uint8_t q[512], out[1024];
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(s->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (n <= 0) {
            continue;
        }
        size_t len = srv_reply(s, q, (size_t)n, out, sizeof(out), false);
        if (len) {
            sendto(s->fd, out, len, 0, (struct sockaddr *)&from, fl);
        }
    }
    return NULL;
}

static void srv_start(struct srv *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    /* a UDP port whose TCP twin is free too */
    for (int attempt = 0; attempt < 20; attempt++) {
        s->fd = socket(AF_INET, SOCK_DGRAM, 0);
        s->lfd = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert(s->fd >= 0 && s->lfd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        cr_assert_eq(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        socklen_t sl = sizeof(sa);
        cr_assert_eq(getsockname(s->fd, (struct sockaddr *)&sa, &sl), 0);
        if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(s->lfd, 8) == 0) {
            s->port = ntohs(sa.sin_port);
            break;
        }
        close(s->fd);
        close(s->lfd);
    }
    cr_assert_neq(s->port, 0);
    cr_assert_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_stop(struct srv *s)
{
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    pthread_join(s->th, NULL);
    close(s->fd);
    close(s->lfd);
    pthread_mutex_destroy(&s->mu);
}

/* ======== the ring, the dns and the callers ================================================ */

struct ctx {
    struct ring r;
    struct dns d;
    struct srv s;
    char servers[64];
};

/* run until cond holds, at most 200 iterations of at most 50 ms each */
#define RUN_UNTIL(r, cond)                                                                         \
    do {                                                                                           \
        for (int i_ = 0; i_ < 200 && !(cond); i_++) {                                              \
            cr_assert_geq(ring_run_once((r), 50 * 1000000LL), 0);                                  \
        }                                                                                          \
        cr_assert(cond, "timed out waiting for " #cond);                                           \
    } while (0)

/* run_for drives the loop for ms milliseconds whatever happens */
static void run_for(struct ring *r, int64_t ms)
{
    int64_t end = ring_clock_ns() + ms * 1000000;
    for (int64_t now = ring_clock_ns(); now < end; now = ring_clock_ns()) {
        cr_assert_geq(ring_run_once(r, end - now), 0);
    }
}

static void ctx_start(struct ctx *c, struct dns_opts o)
{
    srv_start(&c->s);
    snprintf(c->servers, sizeof(c->servers), "127.0.0.1:%u", c->s.port);
    o.servers = c->servers;
    o.no_hosts_file = true;
    struct ring_opts ro = {.entries = 64, .max_timers = 64};
    cr_assert_eq(ring_init(&c->r, &ro), 0);
    char err[256] = "";
    cr_assert_eq(dns_init(&c->d, &c->r, &o, err, sizeof(err)), 0, "%s", err);
}

/* ctx_stop shuts down gracefully: every poll completes before the memory goes */
static void ctx_stop(struct ctx *c)
{
    dns_shutdown(&c->d);
    RUN_UNTIL(&c->r, !dns_busy(&c->d));
    dns_cleanup(&c->d);
    cr_assert_eq(c->r.inflight, 0);
    ring_cleanup(&c->r);
    srv_stop(&c->s);
}

struct waiter {
    struct dns_query q;
    int calls;
    bool now;                  /* answered by dns_resolve itself */
    struct waiter *cancel_too; /* the callback cancels this one */
    const char *then;          /* the callback resolves this name into then_w */
    struct waiter *then_w;
};

static void on_done(struct dns *d, struct dns_query *q)
{
    struct waiter *w = container_of(q, struct waiter, q);
    cr_assert_not(dns_query_pending(q));
    w->calls++;
    if (w->cancel_too) {
        dns_cancel(d, &w->cancel_too->q);
    }
    if (w->then) {
        struct waiter *t = w->then_w;
        memset(t, 0, sizeof(*t));
        t->now = dns_resolve(d, &t->q, w->then, 80, on_done) == DNS_ANSWERED;
    }
}

static enum dns_progress resolve(struct ctx *c, struct waiter *w, const char *host, uint16_t port)
{
    memset(w, 0, sizeof(*w));
    enum dns_progress p = dns_resolve(&c->d, &w->q, host, port, on_done);
    if (p == DNS_ANSWERED) {
        w->now = true;
        cr_assert_not(dns_query_pending(&w->q));
    } else {
        cr_assert(dns_query_pending(&w->q));
    }
    return p;
}

/* resolve_wait resolves host to the end and returns its status */
static enum dns_status resolve_wait(struct ctx *c, struct waiter *w, const char *host)
{
    if (resolve(c, w, host, 80) == DNS_PENDING) {
        RUN_UNTIL(&c->r, w->calls == 1);
    }
    return w->q.res.status;
}

static bool has_addr(const struct dns_result *res, const char *ip, uint16_t port)
{
    char want[64], got[64];
    for (uint32_t i = 0; i < res->naddrs; i++) {
        const struct sockaddr_storage *ss = &res->addrs[i];
        if (ss->ss_family == AF_INET) {
            struct sockaddr_in sin;
            memcpy(&sin, ss, sizeof(sin));
            inet_ntop(AF_INET, &sin.sin_addr, got, sizeof(got));
            if (ntohs(sin.sin_port) != port) {
                continue;
            }
        } else {
            struct sockaddr_in6 sin6;
            memcpy(&sin6, ss, sizeof(sin6));
            inet_ntop(AF_INET6, &sin6.sin6_addr, got, sizeof(got));
            if (ntohs(sin6.sin6_port) != port) {
                continue;
            }
        }
        snprintf(want, sizeof(want), "%s", ip);
        if (strcmp(want, got) == 0) {
            return true;
        }
    }
    return false;
}

/* ======== answers and failures ============================================================== */

Test(dns, resolves_names_to_their_addresses)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){0});
    struct waiter w;
    cr_assert_eq(resolve(&c, &w, "one.test", 8080), DNS_PENDING);
    RUN_UNTIL(&c.r, w.calls == 1);
    cr_assert_eq(w.q.res.status, DNS_OK, "%s", dns_status_name(w.q.res.status));
    cr_assert_eq(w.q.res.naddrs, 1);
    cr_assert(has_addr(&w.q.res, "127.0.0.1", 8080));
    cr_assert(w.q.res.ttl_s > 0 && w.q.res.ttl_s <= 60, "ttl %u", w.q.res.ttl_s);
    cr_assert_eq(srv_queries(&c.s, "one.test"), 2); /* A and AAAA */

    cr_assert_eq(resolve_wait(&c, &w, "two.test"), DNS_OK);
    cr_assert_eq(w.q.res.naddrs, 2);
    cr_assert(has_addr(&w.q.res, "192.0.2.1", 80));
    cr_assert(has_addr(&w.q.res, "192.0.2.2", 80));

    cr_assert_eq(resolve_wait(&c, &w, "dual.test"), DNS_OK);
    cr_assert_eq(w.q.res.naddrs, 2);
    cr_assert(has_addr(&w.q.res, "127.0.0.1", 80));
    cr_assert(has_addr(&w.q.res, "::1", 80));
    cr_assert_eq(w.calls, 1);
    ctx_stop(&c);
}

Test(dns, a_truncated_answer_is_asked_again_over_tcp)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){0});
    struct waiter w;
    cr_assert_eq(resolve_wait(&c, &w, "big.test"), DNS_OK, "%s", dns_status_name(w.q.res.status));
    cr_assert_eq(w.q.res.naddrs, 3);
    cr_assert(has_addr(&w.q.res, "192.0.2.10", 80));
    cr_assert(has_addr(&w.q.res, "192.0.2.12", 80));
    pthread_mutex_lock(&c.s.mu);
    int tcp = c.s.tcp_total;
    pthread_mutex_unlock(&c.s.mu);
    cr_assert_eq(tcp, 1);
    ctx_stop(&c);
}

Test(dns, failures_are_classified)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){0});
    struct waiter w;
    cr_assert_eq(resolve_wait(&c, &w, "unknown.test"), DNS_NXDOMAIN);
    cr_assert_eq(w.q.res.naddrs, 0);
    cr_assert_eq(resolve_wait(&c, &w, "nodata.test"), DNS_NODATA);
    cr_assert_eq(resolve_wait(&c, &w, "servfail.test"), DNS_SERVFAIL, "%s",
                 dns_status_name(w.q.res.status));
    /* c-ares 1.18 reports a REFUSED as it reports a SERVFAIL; newer versions tell them apart */
    enum dns_status st = resolve_wait(&c, &w, "refused.test");
    cr_assert(st == DNS_REFUSED || st == DNS_SERVFAIL, "%s", dns_status_name(st));
    cr_assert_str_eq(dns_status_name(DNS_NXDOMAIN), "nxdomain");
    cr_assert_str_eq(dns_status_name(DNS_TIMEOUT), "timeout");

    /* not names at all: answered at once, nothing asked */
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    const char *bad[] = {"", ".", "a..b", "bad name.test", "x/y", longname, "a.-%.b"};
    int before = srv_total(&c.s);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        cr_assert_eq(resolve(&c, &w, bad[i], 80), DNS_ANSWERED, "%s", bad[i]);
        cr_assert_eq(w.q.res.status, DNS_BADNAME, "%s", bad[i]);
    }
    cr_assert_eq(srv_total(&c.s), before);
    ctx_stop(&c);
}

Test(dns, a_silent_server_times_out_by_the_deadline)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.timeout_ms = 400, .tries = 2});
    struct waiter w;
    int64_t t0 = ring_clock_ns();
    cr_assert_eq(resolve(&c, &w, "silent.test", 80), DNS_PENDING);
    RUN_UNTIL(&c.r, w.calls == 1);
    int64_t took_ms = (ring_clock_ns() - t0) / 1000000;
    cr_assert_eq(w.q.res.status, DNS_TIMEOUT, "%s", dns_status_name(w.q.res.status));
    cr_assert_geq(took_ms, 350, "timed out after %ld ms", (long)took_ms);
    cr_assert_lt(took_ms, 400 + 1000, "timed out after %ld ms", (long)took_ms);
    /* c-ares retried within the deadline (A and AAAA, two tries) */
    cr_assert_geq(srv_queries(&c.s, "silent.test"), 2);
    /* a timeout is not cached: the next attempt asks again */
    int asked = srv_queries(&c.s, "silent.test");
    cr_assert_eq(resolve(&c, &w, "silent.test", 80), DNS_PENDING);
    RUN_UNTIL(&c.r, w.calls == 1);
    cr_assert_eq(w.q.res.status, DNS_TIMEOUT);
    cr_assert_gt(srv_queries(&c.s, "silent.test"), asked);
    ctx_stop(&c);
}

/* ======== the cache ========================================================================= */

Test(dns, answers_are_cached_for_their_ttl)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){0});
    struct waiter w;
    cr_assert_eq(resolve_wait(&c, &w, "one.test"), DNS_OK);
    cr_assert_eq(srv_queries(&c.s, "one.test"), 2);
    /* a hit is answered by dns_resolve itself, with the port of this query */
    cr_assert_eq(resolve(&c, &w, "one.test", 443), DNS_ANSWERED);
    cr_assert_eq(w.q.res.status, DNS_OK);
    cr_assert(has_addr(&w.q.res, "127.0.0.1", 443));
    cr_assert_eq(w.calls, 0);
    cr_assert_eq(resolve(&c, &w, "ONE.Test.", 80), DNS_ANSWERED); /* the same name */
    cr_assert_eq(srv_queries(&c.s, "one.test"), 2);

    /* a 1 s TTL: fresh at once, asked again once it passed */
    cr_assert_eq(resolve_wait(&c, &w, "short.test"), DNS_OK);
    cr_assert_eq(w.q.res.ttl_s, 1);
    cr_assert_eq(srv_queries(&c.s, "short.test"), 2);
    cr_assert_eq(resolve(&c, &w, "short.test", 80), DNS_ANSWERED);
    cr_assert_eq(srv_queries(&c.s, "short.test"), 2);
    run_for(&c.r, 1100);
    cr_assert_eq(resolve(&c, &w, "short.test", 80), DNS_PENDING);
    RUN_UNTIL(&c.r, w.calls == 1);
    cr_assert_eq(w.q.res.status, DNS_OK);
    cr_assert(has_addr(&w.q.res, "127.0.0.2", 80));
    cr_assert_eq(srv_queries(&c.s, "short.test"), 4);
    cr_assert_eq(c.d.stat_upstream, 3);
    ctx_stop(&c);
}

Test(dns, negative_answers_are_cached_briefly_and_failures_not_at_all)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.neg_ttl_ms = 300});
    struct waiter w;
    cr_assert_eq(resolve_wait(&c, &w, "unknown.test"), DNS_NXDOMAIN);
    int asked = srv_queries(&c.s, "unknown.test");
    cr_assert_eq(resolve(&c, &w, "unknown.test", 80), DNS_ANSWERED);
    cr_assert_eq(w.q.res.status, DNS_NXDOMAIN);
    cr_assert_eq(srv_queries(&c.s, "unknown.test"), asked);
    run_for(&c.r, 350);
    cr_assert_eq(resolve_wait(&c, &w, "unknown.test"), DNS_NXDOMAIN);
    cr_assert_eq(w.now, false);
    cr_assert_gt(srv_queries(&c.s, "unknown.test"), asked);

    cr_assert_eq(resolve_wait(&c, &w, "servfail.test"), DNS_SERVFAIL);
    cr_assert_eq(resolve(&c, &w, "servfail.test", 80), DNS_PENDING);
    RUN_UNTIL(&c.r, w.calls == 1);
    cr_assert_eq(w.q.res.status, DNS_SERVFAIL);
    ctx_stop(&c);
}

Test(dns, concurrent_queries_for_a_name_share_one_resolution)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){0});
    struct waiter w[5];
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(resolve(&c, &w[i], "two.test", (uint16_t)(1000 + i)), DNS_PENDING);
    }
    RUN_UNTIL(&c.r, w[0].calls + w[1].calls + w[2].calls + w[3].calls + w[4].calls == 5);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(w[i].calls, 1);
        cr_assert_eq(w[i].q.res.status, DNS_OK);
        cr_assert_eq(w[i].q.res.naddrs, 2);
        cr_assert(has_addr(&w[i].q.res, "192.0.2.2", (uint16_t)(1000 + i)));
    }
    cr_assert_eq(srv_queries(&c.s, "two.test"), 2);
    cr_assert_eq(c.d.stat_upstream, 1);
    cr_assert_eq(c.d.stat_joins, 4);
    ctx_stop(&c);
}

Test(dns, the_least_recently_used_answer_makes_room)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.max_entries = 4});
    struct waiter w;
    char name[32];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        cr_assert_eq(resolve_wait(&c, &w, name), DNS_OK);
    }
    cr_assert_eq(c.d.stat_evictions, 2);
    cr_assert_eq(resolve(&c, &w, "n5.test", 80), DNS_ANSWERED);
    cr_assert_eq(resolve(&c, &w, "n2.test", 80), DNS_ANSWERED);
    cr_assert_eq(resolve(&c, &w, "n0.test", 80), DNS_PENDING); /* evicted */
    RUN_UNTIL(&c.r, w.calls == 1);
    cr_assert(has_addr(&w.q.res, "10.77.0.0", 80));
    /* n3 was the least recently used one, not n2 */
    cr_assert_eq(resolve(&c, &w, "n2.test", 80), DNS_ANSWERED);
    cr_assert_eq(resolve(&c, &w, "n3.test", 80), DNS_PENDING);
    RUN_UNTIL(&c.r, w.calls == 1);
    ctx_stop(&c);
}

Test(dns, a_pool_full_of_resolutions_answers_busy)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.max_entries = 2, .timeout_ms = 300});
    struct waiter a, b, x;
    cr_assert_eq(resolve(&c, &a, "silent1.test", 80), DNS_PENDING);
    cr_assert_eq(resolve(&c, &b, "silent2.test", 80), DNS_PENDING);
    cr_assert_eq(resolve(&c, &x, "one.test", 80), DNS_ANSWERED);
    cr_assert_eq(x.q.res.status, DNS_BUSY);
    RUN_UNTIL(&c.r, a.calls == 1 && b.calls == 1);
    cr_assert_eq(a.q.res.status, DNS_TIMEOUT);
    /* the timed-out resolutions give their entries back once c-ares lets go of them */
    RUN_UNTIL(&c.r, c.d.free_entries != NULL);
    cr_assert_eq(resolve_wait(&c, &x, "one.test"), DNS_OK);
    ctx_stop(&c);
}

/* ======== cancel and clean-up =============================================================== */

Test(dns, cancel_calls_back_once_and_the_resolution_goes_on)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.timeout_ms = 300});
    struct waiter w1, w2;
    cr_assert_eq(resolve(&c, &w1, "one.test", 80), DNS_PENDING);
    cr_assert_eq(resolve(&c, &w2, "one.test", 80), DNS_PENDING);
    dns_cancel(&c.d, &w1.q);
    cr_assert_eq(w1.calls, 1);
    cr_assert_eq(w1.q.res.status, DNS_CANCELLED);
    dns_cancel(&c.d, &w1.q); /* not pending: nothing */
    cr_assert_eq(w1.calls, 1);
    RUN_UNTIL(&c.r, w2.calls == 1);
    cr_assert_eq(w2.q.res.status, DNS_OK);
    cr_assert_eq(w1.calls, 1);

    /* the last waiter cancelled: the answer still lands in the cache */
    cr_assert_eq(resolve(&c, &w1, "two.test", 80), DNS_PENDING);
    dns_cancel(&c.d, &w1.q);
    cr_assert_eq(w1.calls, 1);
    RUN_UNTIL(&c.r, srv_queries(&c.s, "two.test") == 2 && !dns_busy(&c.d));
    cr_assert_eq(resolve(&c, &w1, "two.test", 80), DNS_ANSWERED);

    /* cancelled while the server stays silent: no second call at the deadline */
    cr_assert_eq(resolve(&c, &w1, "silent.test", 80), DNS_PENDING);
    dns_cancel(&c.d, &w1.q);
    run_for(&c.r, 500);
    cr_assert_eq(w1.calls, 1);
    cr_assert_eq(w1.q.res.status, DNS_CANCELLED);
    ctx_stop(&c);
}

Test(dns, a_callback_may_cancel_another_waiter)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){0});
    struct waiter a, b;
    cr_assert_eq(resolve(&c, &a, "one.test", 80), DNS_PENDING);
    cr_assert_eq(resolve(&c, &b, "one.test", 80), DNS_PENDING);
    a.cancel_too = &b;
    RUN_UNTIL(&c.r, a.calls == 1);
    cr_assert_eq(a.q.res.status, DNS_OK);
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(b.q.res.status, DNS_CANCELLED);
    run_for(&c.r, 20);
    cr_assert_eq(b.calls, 1);
    ctx_stop(&c);
}

Test(dns, a_callback_may_resolve_again)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){0});
    struct waiter a, same, b, other;
    /* the name just answered (a server failure, not cached): answered with that same answer */
    cr_assert_eq(resolve(&c, &a, "servfail.test", 80), DNS_PENDING);
    a.then = "servfail.test";
    a.then_w = &same;
    RUN_UNTIL(&c.r, a.calls == 1);
    cr_assert(same.now);
    cr_assert_eq(same.q.res.status, DNS_SERVFAIL);
    /* another name, from inside c-ares's processing: a new resolution */
    cr_assert_eq(resolve(&c, &b, "one.test", 80), DNS_PENDING);
    b.then = "two.test";
    b.then_w = &other;
    RUN_UNTIL(&c.r, b.calls == 1 && other.calls == 1);
    cr_assert_not(other.now);
    cr_assert_eq(other.q.res.status, DNS_OK);
    cr_assert_eq(other.q.res.naddrs, 2);
    ctx_stop(&c);
}

Test(dns, shutdown_with_queries_pending_calls_each_back_once)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.timeout_ms = 2000});
    struct waiter w[4];
    cr_assert_eq(resolve(&c, &w[0], "silent.test", 80), DNS_PENDING);
    cr_assert_eq(resolve(&c, &w[1], "silent.test", 80), DNS_PENDING);
    cr_assert_eq(resolve(&c, &w[2], "silent2.test", 80), DNS_PENDING);
    cr_assert_eq(resolve(&c, &w[3], "one.test", 80), DNS_PENDING);
    /* the queries are on the wire and their polls armed */
    RUN_UNTIL(&c.r, srv_queries(&c.s, "silent2.test") >= 1 && dns_busy(&c.d));
    dns_shutdown(&c.d);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(w[i].calls, 1);
        cr_assert_eq(w[i].q.res.status, DNS_CANCELLED);
    }
    cr_assert_leq(w[3].calls, 1);
    struct waiter late;
    cr_assert_eq(resolve(&c, &late, "one.test", 80), DNS_ANSWERED);
    cr_assert_eq(late.q.res.status, DNS_CANCELLED);
    RUN_UNTIL(&c.r, !dns_busy(&c.d));
    dns_cleanup(&c.d);
    cr_assert_eq(c.r.inflight, 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(w[i].calls, 1);
    }
    ring_cleanup(&c.r);
    srv_stop(&c.s);
}

Test(dns, cleanup_then_ring_cleanup_with_queries_pending)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.timeout_ms = 2000});
    struct waiter w[3];
    cr_assert_eq(resolve(&c, &w[0], "silent.test", 80), DNS_PENDING);
    cr_assert_eq(resolve(&c, &w[1], "silent.test", 80), DNS_PENDING);
    cr_assert_eq(resolve(&c, &w[2], "silent3.test", 80), DNS_PENDING);
    RUN_UNTIL(&c.r, srv_queries(&c.s, "silent3.test") >= 1);
    /* a worker at exit: no graceful drain, the ring goes right after */
    dns_cleanup(&c.d);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(w[i].calls, 1);
        cr_assert_eq(w[i].q.res.status, DNS_CANCELLED);
    }
    ring_cleanup(&c.r);
    srv_stop(&c.s);
}

/* ======== many names, sockets coming and going ============================================== */

Test(dns, two_hundred_names_at_once_all_resolve)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){0});
    static struct waiter w[200];
    char name[32];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        cr_assert_eq(resolve(&c, &w[i], name, 80), DNS_PENDING);
    }
    int done = 0;
    for (int it = 0; it < 400 && done < 200; it++) {
        cr_assert_geq(ring_run_once(&c.r, 50 * 1000000LL), 0);
        done = 0;
        for (int i = 0; i < 200; i++) {
            done += w[i].calls;
        }
    }
    cr_assert_eq(done, 200);
    for (int i = 0; i < 200; i++) {
        char want[32];
        snprintf(want, sizeof(want), "10.77.%d.%d", i / 256, i % 256);
        cr_assert_eq(w[i].calls, 1);
        cr_assert_eq(w[i].q.res.status, DNS_OK, "n%d: %s", i, dns_status_name(w[i].q.res.status));
        cr_assert_eq(w[i].q.res.naddrs, 1);
        cr_assert(has_addr(&w[i].q.res, want, 80), "n%d", i);
    }
    cr_assert_eq(srv_total(&c.s), 400, "%d queries: answers were lost", srv_total(&c.s));
    cr_assert_eq(c.d.stat_upstream, 200);
    ctx_stop(&c);
}

Test(dns, resolutions_beyond_max_upstream_queue_in_order)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.max_upstream = 3, .timeout_ms = 1500});
    struct waiter w[12];
    char name[32];
    /* the three at c-ares are silent: the rest, started later (their deadline runs from their
     * start, queueing included), wait behind them and go when the three time out */
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "silent%d.test", i);
        cr_assert_eq(resolve(&c, &w[i], name, 80), DNS_PENDING);
    }
    run_for(&c.r, 500);
    for (int i = 3; i < 12; i++) {
        snprintf(name, sizeof(name), "n%d.test", i);
        cr_assert_eq(resolve(&c, &w[i], name, 80), DNS_PENDING);
    }
    cr_assert_eq(c.d.nupstream, 3);
    run_for(&c.r, 100);
    /* the silent names were asked (and asked again), nothing else */
    int silent = srv_queries(&c.s, "silent0.test") + srv_queries(&c.s, "silent1.test") +
                 srv_queries(&c.s, "silent2.test");
    cr_assert_geq(silent, 6);
    cr_assert_eq(srv_total(&c.s), silent);
    for (int i = 0; i < 12; i++) {
        cr_assert_eq(w[i].calls, 0);
    }
    /* a joiner of a queued name waits with it */
    struct waiter j;
    cr_assert_eq(resolve(&c, &j, "n11.test", 80), DNS_PENDING);
    int done = 0;
    for (int it = 0; it < 100 && done < 13; it++) {
        cr_assert_geq(ring_run_once(&c.r, 50 * 1000000LL), 0);
        done = j.calls;
        for (int i = 0; i < 12; i++) {
            done += w[i].calls;
        }
    }
    cr_assert_eq(done, 13);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(w[i].q.res.status, DNS_TIMEOUT);
    }
    for (int i = 3; i < 12; i++) {
        cr_assert_eq(w[i].q.res.status, DNS_OK, "n%d: %s", i, dns_status_name(w[i].q.res.status));
    }
    cr_assert_eq(j.q.res.status, DNS_OK);
    cr_assert_eq(c.d.stat_upstream, 12);
    ctx_stop(&c);
}

Test(dns, sockets_closed_when_idle_are_unwatched_and_reopened)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.max_ttl_s = 1});
    struct waiter w;
    char name[32];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "n%d.test", 300 + i);
        cr_assert_eq(resolve_wait(&c, &w, name), DNS_OK);
        /* c-ares closes its socket once idle: the poll is cancelled and completes */
        RUN_UNTIL(&c.r, !dns_busy(&c.d));
        cr_assert_eq(c.r.inflight, 0);
        cr_assert_null(c.d.socks);
        cr_assert_null(c.d.dying);
    }
    ctx_stop(&c);
}

/* ======== literals, overrides and the guard ================================================= */

Test(dns, literals_and_overrides_are_answered_without_asking)
{
    struct dns_override ov[] = {
        {"pinned.test", "10.9.8.7"},
        {"Pinned.Test", "::2"},
    };
    struct ctx c;
    ctx_start(&c, (struct dns_opts){.overrides = ov, .noverrides = ARRAY_SIZE(ov)});
    struct waiter w;
    cr_assert_eq(resolve(&c, &w, "127.0.0.1", 8080), DNS_ANSWERED);
    cr_assert_eq(w.q.res.status, DNS_OK);
    cr_assert(has_addr(&w.q.res, "127.0.0.1", 8080));
    cr_assert_eq(resolve(&c, &w, "127.1", 81), DNS_ANSWERED); /* as url_parse reads it */
    cr_assert(has_addr(&w.q.res, "127.0.0.1", 81));
    cr_assert_eq(resolve(&c, &w, "::1", 82), DNS_ANSWERED);
    cr_assert(has_addr(&w.q.res, "::1", 82));
    cr_assert_eq(resolve(&c, &w, "pinned.test", 83), DNS_ANSWERED);
    cr_assert_eq(w.q.res.naddrs, 2);
    cr_assert(has_addr(&w.q.res, "10.9.8.7", 83));
    cr_assert(has_addr(&w.q.res, "::2", 83));
    cr_assert_eq(srv_total(&c.s), 0);
    ctx_stop(&c);

    struct dns_override bad[] = {{"x.test", "not-an-address"}};
    struct ring r;
    struct ring_opts ro = {.entries = 8, .max_timers = 8};
    cr_assert_eq(ring_init(&r, &ro), 0);
    struct dns d;
    char err[256];
    struct dns_opts o = {.overrides = bad, .noverrides = 1};
    cr_assert_eq(dns_init(&d, &r, &o, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "not-an-address"), "%s", err);
    o = (struct dns_opts){.servers = "not a server list"};
    cr_assert_eq(dns_init(&d, &r, &o, err, sizeof(err)), -EINVAL);
    ring_cleanup(&r);
}

Test(dns, a_name_with_any_refused_address_is_refused)
{
    struct ctx c;
    ctx_start(&c, (struct dns_opts){0});
    struct netguard g;
    netguard_init(&g);
    struct waiter w;
    uint32_t bad = 99;
    enum addr_class cls = ADDR_PUBLIC;

    cr_assert_eq(resolve_wait(&c, &w, "public.test"), DNS_OK);
    cr_assert(dns_result_permitted(&w.q.res, &g, &bad, &cls));

    cr_assert_eq(resolve_wait(&c, &w, "one.test"), DNS_OK);
    cr_assert_not(dns_result_permitted(&w.q.res, &g, &bad, &cls));
    cr_assert_eq(bad, 0);
    cr_assert_eq(cls, ADDR_LOOPBACK);

    /* one public and one private address: refused as a whole */
    cr_assert_eq(resolve_wait(&c, &w, "mixed.test"), DNS_OK);
    cr_assert_eq(w.q.res.naddrs, 2);
    cr_assert_not(dns_result_permitted(&w.q.res, &g, &bad, &cls));
    cr_assert_eq(cls, ADDR_PRIVATE);
    cr_assert(has_addr(&w.q.res, "10.0.0.1", 80));
    struct sockaddr_in sin;
    memcpy(&sin, &w.q.res.addrs[bad], sizeof(sin));
    cr_assert_eq(ntohl(sin.sin_addr.s_addr), 0x0a000001u);

    cr_assert_eq(netguard_allow(&g, "10.0.0.0/8"), 0);
    cr_assert(dns_result_permitted(&w.q.res, &g, NULL, NULL));
    cr_assert_eq(netguard_allow(&g, "127.0.0.0/8"), 0);
    cr_assert_eq(resolve_wait(&c, &w, "one.test"), DNS_OK);
    cr_assert(dns_result_permitted(&w.q.res, &g, NULL, NULL));

    /* a failure has nothing to connect to */
    cr_assert_eq(resolve_wait(&c, &w, "unknown.test"), DNS_NXDOMAIN);
    cr_assert_not(dns_result_permitted(&w.q.res, &g, NULL, NULL));
    ctx_stop(&c);
}

/* client.c: the outbound HTTP/1.1 delivery client: pools, the connection state machine, and
 * batched signing. */
#include "client.h"
#include "retry.h"
#include "tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONN_HDR_MAX 1024
#define RBUF_INITIAL 512 /* most answer heads fit: memory follows what receivers really send */
#define SIGN_BATCH 64
#define STALE_RETRIES 1
#define CBUF_SIZE 4096 /* TLS: ciphertext read per receive */

enum conn_state {
    CONN_FREE = 0,
    CONN_RESOLVING,  /* host name being resolved, attempt assigned */
    CONN_CONNECTING, /* connect in flight, attempt assigned */
    CONN_HANDSHAKE,  /* TLS handshake running, attempt assigned */
    CONN_IDLE,       /* kept alive in the endpoint's idle list */
    CONN_READY,      /* attempt assigned, waiting for client_flush to sign and send it */
    CONN_ACTIVE,     /* request being written and answer being read */
    CONN_CLOSING,    /* cancelled; waiting for the kernel to hand back its ops */
};

/* An origin (scheme, host, port): the endpoints of one origin share its idle keep-alive
 * connections (a connection moves to another endpoint of its origin when that endpoint's caps
 * allow) and, for https, its latest TLS session, so a connection to any of them resumes what
 * another negotiated. */
struct origin {
    struct origin *next;
    SSL_SESSION *session;
    struct conn *idle; /* most recently used first */
    bool https;
    uint16_t port;
    char host[URL_HOST_MAX + 1];
};

struct conn_dns {
    struct dns_query q;
    struct conn *k;
};

struct conn {
    struct client *cl;
    struct endpoint *ep;
    struct attempt *cur;
    enum conn_state state;
    int fd;
    struct op connect_op;
    struct op send_op;
    struct op recv_op;
    struct ring_timer timer;
    int64_t first_byte_deadline; /* monotonic ns; 0 once a byte arrived */
    int64_t total_deadline;
    struct httpresp resp;
    uint8_t *rbuf;
    uint32_t rcap; /* grows from RBUF_INITIAL to the client's rbuf_size when a head needs it */
    uint32_t rlen;
    struct buf hdr;
    struct iovec iov[3];
    struct msghdr msg;
    size_t send_left;
    bool send_done;
    bool got_bytes;
    uint32_t requests;
    struct conn *idle_prev, *idle_next; /* in its origin's idle list, while idle */
    struct conn *lru_prev, *lru_next;   /* in the client's list of idle connections */
    const char *fail_detail;            /* a reason for the excerpt when there is no HTTP answer */

    /* DNS: the query while resolving (allocated the first time this conn resolves a name:
     * an answer holds several addresses), then the address connected to */
    struct conn_dns *dns;
    bool dns_timed_out;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr; /* the address connected to (an IPv4 or IPv6 one: not a whole sockaddr_storage) */
    socklen_t addrlen;
    /* TLS */
    struct tls_conn tls;
    uint8_t *cbuf;   /* ciphertext received */
    struct buf cout; /* ciphertext being sent */
    size_t cout_off; /* how much of cout the kernel has taken */
    struct conn *next;
};

static void plain_start(struct conn *k);
static void plain_send(struct conn *k, int niov);
static void plain_sent(struct conn *k, int res);
static void plain_received(struct conn *k, int res);
static void plain_release(struct conn *k);
static void tls_start(struct conn *k);
static void tls_send(struct conn *k, int niov);
static void tls_sent(struct conn *k, int res);
static void tls_received(struct conn *k, int res);
static void tls_release(struct conn *k);

const struct transport transport_plain = {.name = "tcp",
                                          .start = plain_start,
                                          .send = plain_send,
                                          .sent = plain_sent,
                                          .received = plain_received,
                                          .release = plain_release};

const struct transport transport_tls = {.name = "tls",
                                        .start = tls_start,
                                        .send = tls_send,
                                        .sent = tls_sent,
                                        .received = tls_received,
                                        .release = tls_release};

static void conn_handle_connect(struct ring *r, struct op *op, int res, uint32_t flags);
static void conn_handle_send(struct ring *r, struct op *op, int res, uint32_t flags);
static void conn_handle_recv(struct ring *r, struct op *op, int res, uint32_t flags);
static void conn_handle_timer(struct ring *r, struct ring_timer *t);
static void endpoint_dispatch(struct endpoint *ep);
static void conn_close(struct conn *k);
static void idle_remove(struct conn *k);

/* ---- set-up ------------------------------------------------------------------------------- */

int client_init(struct client *c, struct ring *r, const struct client_opts *o)
{
    memset(c, 0, sizeof(*c));
    c->ring = r;
    c->o = *o;
    if (c->o.rbuf_size < 512) {
        c->o.rbuf_size = 512;
    }
    c->lim = (struct httpresp_limits){
        .max_head = c->o.rbuf_size, .max_headers = 64, .max_body = c->o.max_response_body};
    c->conns = calloc(o->max_conns, sizeof(*c->conns));
    if (!c->conns) {
        return -ENOMEM;
    }
    /* One direct descriptor per connection; without the table (an old kernel, or the ring has
     * one already), ring_fd_install keeps plain fds. */
    ring_files_init(r, o->max_conns);
    /* Buffers are allocated when a connection is first opened and kept for reuse, so memory
     * follows the connections really used, not the table size. */
    for (uint32_t i = o->max_conns; i-- > 0;) {
        struct conn *k = &c->conns[i];
        k->cl = c;
        k->fd = -1;
        k->connect_op.cb = conn_handle_connect;
        k->send_op.cb = conn_handle_send;
        k->recv_op.cb = conn_handle_recv;
        ring_timer_init(&k->timer, conn_handle_timer);
        buf_init(&k->hdr, CONN_HDR_MAX);
        buf_init(&k->cout, 1u << 26);
        k->next = c->free_conns;
        c->free_conns = k;
    }
    return 0;
}

void client_cleanup(struct client *c)
{
    for (uint32_t i = 0; i < c->o.max_conns; i++) {
        struct conn *k = &c->conns[i];
        if (k->state == CONN_RESOLVING && k->dns && dns_query_pending(&k->dns->q)) {
            k->cur = NULL; /* its callback must not finish anything now */
            dns_cancel(c->o.dns, &k->dns->q);
        }
        if (k->fd >= 0) {
            ring_fd_close(c->ring, k->fd);
        }
        if (ring_timer_armed(&k->timer)) {
            ring_timer_cancel(c->ring, &k->timer);
        }
        tls_conn_free(&k->tls);
        free(k->cbuf);
        buf_free(&k->cout);
        free(k->dns);
        free(k->rbuf);
        buf_free(&k->hdr);
    }
    free(c->conns);
    c->conns = NULL;
    while (c->origins) {
        struct origin *o = c->origins;
        c->origins = o->next;
        if (o->session) {
            SSL_SESSION_free(o->session);
        }
        free(o);
    }
}

static struct origin *origin_get(struct client *c, const struct url *url)
{
    for (struct origin *o = c->origins; o; o = o->next) {
        if (o->port == url->port && o->https == url->https && strcmp(o->host, url->host) == 0) {
            return o;
        }
    }
    struct origin *o = calloc(1, sizeof(*o));
    if (!o) {
        return NULL;
    }
    o->port = url->port;
    o->https = url->https;
    snprintf(o->host, sizeof(o->host), "%s", url->host);
    o->next = c->origins;
    c->origins = o;
    return o;
}

int endpoint_init(struct endpoint *ep, struct client *c, const struct url *url,
                  const struct signer *s, uint32_t timeout_ms, uint32_t max_conns,
                  uint32_t max_inflight, char *err, size_t errlen)
{
    memset(ep, 0, sizeof(*ep));
    ep->cl = c;
    url_dest_of(&ep->url, url);
    ep->signer = s;
    ep->transport = &transport_plain;
    if (url->https) {
        if (!c->o.tls) {
            snprintf(err, errlen, "url: https:// needs a TLS context, which this client lacks");
            return -EINVAL;
        }
        ep->transport = &transport_tls;
    }
    ep->origin = origin_get(c, url);
    if (!ep->origin) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (!url->host_is_ip && !c->o.dns) {
        snprintf(err, errlen, "url: host names need a resolver, which this client lacks");
        return -EINVAL;
    }
    /* humcli's contract: deliveries and callbacks over HTTPS only; plain HTTP only to a host
     * the operator allowed explicitly (a test receiver). */
    if (s->profile->pid == PROFILE_HUMCLI && !url->https && url->host_is_ip &&
        !(c->o.guard &&
          netguard_allows_explicitly(c->o.guard, (const struct sockaddr *)&url->addr))) {
        snprintf(err, errlen,
                 "url: humcli delivers over https:// only (http:// is accepted only for a host "
                 "that --allow-net allows, for tests)");
        return -EINVAL;
    }
    enum addr_class cls;
    if (url->host_is_ip && c->o.guard &&
        !netguard_permits(c->o.guard, (struct sockaddr *)&url->addr, &cls)) {
        snprintf(err, errlen,
                 "url: %s is a %s address; deliveries there are refused unless --allow-net "
                 "allows it",
                 url->host, addr_class_name(cls));
        return -EINVAL;
    }
    ep->timeout_ms = timeout_ms ? timeout_ms : s->profile->timeout_ms;
    ep->connect_timeout_ms = ep->timeout_ms < 5000 ? ep->timeout_ms : 5000;
    ep->first_byte_timeout_ms = ep->timeout_ms;
    ep->max_conns = max_conns ? max_conns : 1;
    ep->max_inflight = max_inflight ? max_inflight : ep->max_conns;
    ep->limit = ep->max_inflight;
    ep->adaptive = true;
    ep->keep_alive = true;
    buf_init(&ep->prefix, 4096);
    /* aksita and github name their own User-Agent in the signed header set. */
    bool own_ua = s->profile->pid == PROFILE_AKSITA || s->profile->pid == PROFILE_GITHUB;
    int rc = buf_printf(&ep->prefix, "POST %s HTTP/1.1\r\nHost: %s\r\n%s", url->target,
                        url->authority, own_ua ? "" : "User-Agent: hookring/0.1\r\n");
    if (rc) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    return 0;
}

int endpoint_set_keep_alive(struct endpoint *ep, bool on)
{
    static const char close_hdr[] = "Connection: close\r\n";
    size_t n = sizeof(close_hdr) - 1;
    bool has = ep->prefix.len >= n && memcmp(ep->prefix.p + ep->prefix.len - n, close_hdr, n) == 0;
    ep->keep_alive = on;
    if (on && has) {
        ep->prefix.len -= n;
    } else if (!on && !has) {
        return buf_puts(&ep->prefix, close_hdr);
    }
    return 0;
}

int endpoint_add_header(struct endpoint *ep, struct slice name, struct slice value)
{
    int rc = buf_put_slice(&ep->prefix, name) | buf_puts(&ep->prefix, ": ") |
             buf_put_slice(&ep->prefix, value) | buf_puts(&ep->prefix, "\r\n");
    return rc ? -ENOMEM : 0;
}

void endpoint_set_adaptive(struct endpoint *ep, bool on)
{
    ep->adaptive = on;
    ep->limit = ep->max_inflight;
}

/* endpoint_adapt applies an answer to the endpoint's in-flight limit: multiplicative decrease
 * when the receiver is overloaded (429, 502, 504), additive increase on success. */
static void endpoint_adapt(struct endpoint *ep, const struct attempt *a)
{
    if (!ep->adaptive) {
        return;
    }
    if (retry_slows_endpoint(a)) {
        ep->limit = ep->limit > 1 ? ep->limit / 2 : 1;
        ep->stat_slowdowns++;
    } else if (a->result == ATTEMPT_OK && ep->limit < ep->max_inflight) {
        ep->limit++;
    }
}

void endpoint_cleanup(struct endpoint *ep)
{
    /* its idle connections close now: nothing may point at the endpoint afterwards */
    if (ep->origin) {
        struct conn *k = ep->origin->idle;
        while (k) {
            struct conn *next = k->idle_next;
            if (k->ep == ep) {
                idle_remove(k);
                conn_close(k);
            }
            k = next;
        }
    }
    buf_free(&ep->prefix);
    ep->origin = NULL; /* the client owns the origins */
}

const char *attempt_result_name(enum attempt_result r)
{
    static const char *const names[ATTEMPT_RESULT_COUNT] = {
        [ATTEMPT_OK] = "ok",
        [ATTEMPT_STATUS] = "status",
        [ATTEMPT_REFUSED] = "refused",
        [ATTEMPT_RESET] = "reset",
        [ATTEMPT_TIMEOUT_CONNECT] = "timeout_connect",
        [ATTEMPT_TIMEOUT_FIRST_BYTE] = "timeout_first_byte",
        [ATTEMPT_TIMEOUT_TOTAL] = "timeout_total",
        [ATTEMPT_MALFORMED] = "malformed_response",
        [ATTEMPT_TIMEOUT_TLS] = "timeout_tls",
        [ATTEMPT_TLS_UNTRUSTED] = "tls_untrusted",
        [ATTEMPT_TLS_EXPIRED] = "tls_expired",
        [ATTEMPT_TLS_WRONG_HOST] = "tls_wrong_host",
        [ATTEMPT_TLS_PROTOCOL] = "tls_protocol",
        [ATTEMPT_DNS_NXDOMAIN] = "dns_nxdomain",
        [ATTEMPT_DNS_TIMEOUT] = "dns_timeout",
        [ATTEMPT_DNS_FAILED] = "dns_failed",
        [ATTEMPT_BLOCKED] = "blocked_address",
        [ATTEMPT_UNREACHABLE] = "unreachable",
        [ATTEMPT_ERROR] = "local_error",
    };
    return (unsigned)r < ATTEMPT_RESULT_COUNT ? names[r] : "unknown";
}

bool client_busy(const struct client *c)
{
    /* Idle keep-alive connections do not make the client busy: they hold no work. */
    return c->inflight > 0 || c->queued > 0 || c->nclosing > 0 || c->ready_head || c->waiting_head;
}

/* ---- connections -------------------------------------------------------------------------- */

static bool conn_ops_inflight(const struct conn *k)
{
    return k->connect_op.inflight || k->send_op.inflight || k->recv_op.inflight;
}

/* conn_release returns k to the free table once the kernel holds none of its ops. */
static void conn_release(struct conn *k)
{
    struct client *c = k->cl;
    struct endpoint *ep = k->ep;
    if (k->fd >= 0) {
        ring_fd_close(c->ring, k->fd);
        k->fd = -1;
    }
    if (ring_timer_armed(&k->timer)) {
        ring_timer_cancel(c->ring, &k->timer);
    }
    if (k->state == CONN_CLOSING) {
        c->nclosing--;
    }
    ep->transport->release(k);
    k->state = CONN_FREE;
    k->ep = NULL;
    k->next = c->free_conns;
    c->free_conns = k;
    c->nconns--;
    ep->nconns--;
    endpoint_dispatch(ep);
}

/* conn_close tears k down; its attempt, if any, must already be completed. */
static void conn_close(struct conn *k)
{
    if (ring_timer_armed(&k->timer)) {
        ring_timer_cancel(k->cl->ring, &k->timer);
    }
    if (conn_ops_inflight(k)) {
        k->state = CONN_CLOSING;
        k->cl->nclosing++;
        ring_cancel_fd(k->cl->ring, k->fd);
        return;
    }
    conn_release(k);
}

/* idle_push parks k, kept alive, in its origin's idle list and at the head of the client's
 * LRU list. */
static void idle_push(struct conn *k)
{
    struct origin *o = k->ep->origin;
    struct client *c = k->cl;
    k->state = CONN_IDLE;
    k->idle_prev = NULL;
    k->idle_next = o->idle;
    if (o->idle) {
        o->idle->idle_prev = k;
    }
    o->idle = k;
    k->lru_prev = NULL;
    k->lru_next = c->lru_head;
    if (c->lru_head) {
        c->lru_head->lru_prev = k;
    } else {
        c->lru_tail = k;
    }
    c->lru_head = k;
}

static void idle_remove(struct conn *k)
{
    struct origin *o = k->ep->origin;
    struct client *c = k->cl;
    if (k->idle_prev) {
        k->idle_prev->idle_next = k->idle_next;
    } else {
        o->idle = k->idle_next;
    }
    if (k->idle_next) {
        k->idle_next->idle_prev = k->idle_prev;
    }
    if (k->lru_prev) {
        k->lru_prev->lru_next = k->lru_next;
    } else {
        c->lru_head = k->lru_next;
    }
    if (k->lru_next) {
        k->lru_next->lru_prev = k->lru_prev;
    } else {
        c->lru_tail = k->lru_prev;
    }
    k->idle_prev = k->idle_next = k->lru_prev = k->lru_next = NULL;
}

/* idle_take gives ep an idle connection of its origin: its own, or another endpoint's when
 * ep may hold one more (the connection then counts against ep). NULL when there is none. */
static struct conn *idle_take(struct endpoint *ep)
{
    for (struct conn *k = ep->origin->idle; k; k = k->idle_next) {
        if (k->ep != ep && ep->nconns >= ep->max_conns) {
            continue;
        }
        idle_remove(k);
        if (k->ep != ep) {
            k->ep->nconns--;
            k->ep = ep;
            ep->nconns++;
        }
        return k;
    }
    return NULL;
}

static enum attempt_result classify_errno(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return ATTEMPT_REFUSED;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
        return ATTEMPT_RESET;
    case ETIMEDOUT:
        return ATTEMPT_TIMEOUT_CONNECT;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
        return ATTEMPT_UNREACHABLE;
    default:
        return ATTEMPT_ERROR;
    }
}

/* attempt_finish completes k's attempt with result and decides k's fate: back to the idle list
 * when the exchange ended cleanly on a kept-alive connection, closed otherwise. */
static void attempt_finish(struct conn *k, enum attempt_result result, int err)
{
    struct attempt *a = k->cur;
    struct endpoint *ep = k->ep;
    struct client *c = k->cl;
    k->cur = NULL;
    a->result = result;
    a->err = err;
    a->done_ns = ring_clock_ns();
    if (k->resp.state != HTTPRESP_S_HEAD && k->resp.status) {
        a->status = k->resp.status;
        size_t n = k->resp.excerpt_len < ATTEMPT_EXCERPT ? k->resp.excerpt_len : ATTEMPT_EXCERPT;
        memcpy(a->excerpt, k->resp.excerpt, n);
        a->excerpt_len = n;
        a->has_retry_after = k->resp.has_retry_after;
        if (k->resp.has_retry_after) {
            int64_t v = k->resp.retry_after;
            if (k->resp.retry_after_is_date) {
                v -= (int64_t)time(NULL);
            }
            a->retry_after_s = v < 0 ? 0 : v;
        }
    } else if (k->fail_detail) {
        size_t n = strlen(k->fail_detail);
        n = n < ATTEMPT_EXCERPT ? n : ATTEMPT_EXCERPT;
        memcpy(a->excerpt, k->fail_detail, n);
        a->excerpt_len = n;
    }
    k->fail_detail = NULL;
    ep->inflight--;
    c->inflight--;
    endpoint_adapt(ep, a);
    bool reuse = (result == ATTEMPT_OK || result == ATTEMPT_STATUS) && k->resp.keep_alive &&
                 ep->keep_alive && k->send_done && k->rlen == 0 && k->state == CONN_ACTIVE;
    if (ring_timer_armed(&k->timer)) {
        ring_timer_cancel(c->ring, &k->timer);
    }
    if (reuse) {
        idle_push(k);
    } else if (k->state != CONN_CLOSING) {
        conn_close(k);
    }
    a->done(a);
    endpoint_dispatch(ep);
    /* Capacity freed under the global cap goes to starved endpoints in turn. */
    while (c->waiting_head && c->inflight < c->o.max_inflight) {
        struct endpoint *w = c->waiting_head;
        c->waiting_head = w->next_waiting;
        if (!c->waiting_head) {
            c->waiting_tail = NULL;
        }
        w->waiting = false;
        endpoint_dispatch(w);
    }
}

/* attempt_requeue puts k's attempt back at the head of its endpoint's queue (a kept-alive
 * connection turned out to be closed by the peer before it read our request). */
static void attempt_requeue(struct conn *k)
{
    struct attempt *a = k->cur;
    struct endpoint *ep = k->ep;
    k->cur = NULL;
    ep->inflight--;
    k->cl->inflight--;
    a->stale_retries++;
    a->next = ep->qhead;
    ep->qhead = a;
    if (!ep->qtail) {
        ep->qtail = a;
    }
    ep->queued++;
    k->cl->queued++;
    conn_close(k);
    endpoint_dispatch(ep);
}

static void conn_arm_timer(struct conn *k, int64_t deadline)
{
    ring_timer_arm(k->cl->ring, &k->timer, deadline);
}

static void ready_push(struct conn *k)
{
    struct client *c = k->cl;
    k->state = CONN_READY;
    k->next = NULL;
    if (c->ready_tail) {
        c->ready_tail->next = k;
    } else {
        c->ready_head = k;
    }
    c->ready_tail = k;
}

static struct conn *conn_open(struct endpoint *ep)
{
    struct client *c = ep->cl;
    if (!c->free_conns && c->lru_tail) {
        /* The table is full: the least recently used idle connection (of any origin) makes
         * room, so idle keep-alives never starve an endpoint that has work. */
        struct conn *old = c->lru_tail;
        idle_remove(old);
        conn_close(old);
    }
    struct conn *k = c->free_conns;
    if (!k) {
        errno = EMFILE;
        return NULL;
    }
    if (!k->rbuf) {
        k->rcap = RBUF_INITIAL < c->o.rbuf_size ? RBUF_INITIAL : c->o.rbuf_size;
        k->rbuf = malloc(k->rcap);
        if (!k->rbuf) {
            errno = ENOMEM;
            return NULL;
        }
    }
    c->free_conns = k->next;
    k->next = NULL;
    k->fd = -1; /* the socket comes with the address (conn_start_connect) */
    k->ep = ep;
    k->requests = 0;
    k->rlen = 0;
    k->got_bytes = false;
    k->fail_detail = NULL;
    httpresp_init(&k->resp, false); /* nothing of a previous life may leak into an outcome */
    c->nconns++;
    ep->nconns++;
    ep->stat_connects++;
    k->state = CONN_CONNECTING;
    return k;
}

/* conn_connect_to opens the socket for the address k will connect to and connects. The address
 * guard judges this address, the one actually connected to. */
static void conn_connect_to(struct conn *k)
{
    struct client *c = k->cl;
    struct endpoint *ep = k->ep;
    enum addr_class cls = ADDR_PUBLIC;
    if (c->o.guard && !netguard_permits(c->o.guard, &k->addr.sa, &cls)) {
        snprintf(c->detail_buf, sizeof(c->detail_buf), "%.40s %s a %s address", ep->url.host,
                 ep->url.host_is_ip ? "is" : "resolves to", addr_class_name(cls));
        k->fail_detail = k->cl->detail_buf;
        attempt_finish(k, ATTEMPT_BLOCKED, 0);
        return;
    }
    if (ep->signer->profile->pid == PROFILE_HUMCLI && !ep->url.https &&
        !(c->o.guard && netguard_allows_explicitly(c->o.guard, &k->addr.sa))) {
        k->fail_detail = "humcli delivers over https:// only";
        attempt_finish(k, ATTEMPT_BLOCKED, 0);
        return;
    }
    int fd = socket(k->addr.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        attempt_finish(k, ATTEMPT_ERROR, errno);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* A direct descriptor from here on (where the kernel has them): every send and receive of
     * this kept-alive connection skips the per-op file lookup. */
    k->fd = ring_fd_install(c->ring, fd);
    k->state = CONN_CONNECTING;
    if (ring_connect(c->ring, &k->connect_op, k->fd, &k->addr.sa, k->addrlen)) {
        attempt_finish(k, ATTEMPT_ERROR, EBUSY);
    }
}

/* conn_resolved takes the resolver's answer for k: connect to its first address (every address
 * of the answer must pass the guard: a mixed set is refused whole), or fail the attempt. */
static void conn_resolved(struct conn *k)
{
    const struct dns_result *res = &k->dns->q.res;
    struct client *c = k->cl;
    switch (res->status) {
    case DNS_OK:
        break;
    case DNS_NXDOMAIN:
    case DNS_NODATA:
    case DNS_BADNAME:
        k->fail_detail = dns_status_name(res->status);
        attempt_finish(k, ATTEMPT_DNS_NXDOMAIN, 0);
        return;
    case DNS_TIMEOUT:
        attempt_finish(k, ATTEMPT_DNS_TIMEOUT, ETIMEDOUT);
        return;
    case DNS_CANCELLED:
        if (k->dns_timed_out) {
            attempt_finish(k, ATTEMPT_DNS_TIMEOUT, ETIMEDOUT);
            return;
        }
        /* fall through */
    default:
        k->fail_detail = dns_status_name(res->status);
        attempt_finish(k, ATTEMPT_DNS_FAILED, 0);
        return;
    }
    uint32_t bad = 0;
    enum addr_class cls = ADDR_PUBLIC;
    if (c->o.guard && !dns_result_permitted(res, c->o.guard, &bad, &cls)) {
        snprintf(k->cl->detail_buf, sizeof(k->cl->detail_buf), "%.40s resolves to a %s address",
                 k->ep->url.host, addr_class_name(cls));
        k->fail_detail = k->cl->detail_buf;
        attempt_finish(k, ATTEMPT_BLOCKED, 0);
        return;
    }
    k->addrlen = res->addrs[0].ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                     : sizeof(struct sockaddr_in);
    memcpy(&k->addr, &res->addrs[0], k->addrlen);
    conn_connect_to(k);
}

static void conn_dns_done(struct dns *d, struct dns_query *q)
{
    struct conn *k = container_of(q, struct conn_dns, q)->k;
    if (k->state == CONN_RESOLVING && k->cur) {
        conn_resolved(k);
    }
}

/* conn_start_connect starts k on its way: resolve the host (a literal needs nothing), then
 * connect. One deadline covers both: the connect timeout. */
static void conn_start_connect(struct conn *k)
{
    struct endpoint *ep = k->ep;
    struct client *c = k->cl;
    conn_arm_timer(k, ring_now_ns(c->ring) + (int64_t)ep->connect_timeout_ms * 1000000);
    if (ep->url.host_is_ip) {
        memcpy(&k->addr, &ep->url.addr, ep->url.addrlen);
        k->addrlen = ep->url.addrlen;
        conn_connect_to(k);
        return;
    }
    if (!k->dns && !(k->dns = calloc(1, sizeof(*k->dns)))) {
        attempt_finish(k, ATTEMPT_ERROR, ENOMEM);
        return;
    }
    k->dns->k = k;
    k->state = CONN_RESOLVING;
    k->dns_timed_out = false;
    if (dns_resolve(c->o.dns, &k->dns->q, ep->url.host, ep->url.port, conn_dns_done) ==
        DNS_ANSWERED) {
        conn_resolved(k);
    }
}

static void endpoint_wait(struct endpoint *ep)
{
    struct client *c = ep->cl;
    if (ep->waiting) {
        return;
    }
    ep->waiting = true;
    ep->next_waiting = NULL;
    if (c->waiting_tail) {
        c->waiting_tail->next_waiting = ep;
    } else {
        c->waiting_head = ep;
    }
    c->waiting_tail = ep;
}

/* endpoint_dispatch gives queued attempts connections while the endpoint's and the client's
 * caps allow. */
static void endpoint_dispatch(struct endpoint *ep)
{
    struct client *c = ep->cl;
    while (ep->qhead && ep->inflight < ep->limit) {
        if (c->inflight >= c->o.max_inflight) {
            endpoint_wait(ep);
            return;
        }
        struct conn *k = idle_take(ep);
        bool fresh = false;
        if (k) {
            ep->stat_reuses++;
        } else if (ep->nconns < ep->max_conns && (k = conn_open(ep)) != NULL) {
            fresh = true;
        } else if (ep->nconns == 0 && ep->inflight == 0) {
            /* Nothing of this endpoint's will complete to dispatch again: a connection could
             * not be had at all (no socket, or the table is full), so the attempt fails now. */
            int err = errno ? errno : EAGAIN;
            struct attempt *a = ep->qhead;
            ep->qhead = a->next;
            if (!ep->qhead) {
                ep->qtail = NULL;
            }
            ep->queued--;
            c->queued--;
            a->next = NULL;
            a->result = ATTEMPT_ERROR;
            a->err = err;
            a->done_ns = ring_clock_ns();
            a->done(a);
            continue;
        } else {
            return; /* every connection is busy: the next completion dispatches again */
        }
        struct attempt *a = ep->qhead;
        ep->qhead = a->next;
        if (!ep->qhead) {
            ep->qtail = NULL;
        }
        ep->queued--;
        c->queued--;
        a->next = NULL;
        a->reused = !fresh;
        k->cur = a;
        ep->inflight++;
        c->inflight++;
        if (fresh) {
            conn_start_connect(k);
        } else {
            ready_push(k);
        }
    }
}

void client_submit(struct attempt *a)
{
    struct endpoint *ep = a->ep;
    a->result = ATTEMPT_ERROR;
    a->status = 0;
    a->err = 0;
    a->excerpt_len = 0;
    a->has_retry_after = false;
    a->retry_after_s = 0;
    a->stale_retries = 0;
    a->submit_ns = ring_clock_ns();
    a->next = NULL;
    if (ep->qtail) {
        ep->qtail->next = a;
    } else {
        ep->qhead = a;
    }
    ep->qtail = a;
    ep->queued++;
    ep->cl->queued++;
    endpoint_dispatch(ep);
}

/* ---- completions -------------------------------------------------------------------------- */

/* conn_reaped is called when one of k's ops completed while k is closing. */
static bool conn_reaped(struct conn *k)
{
    if (k->state != CONN_CLOSING) {
        return false;
    }
    if (!conn_ops_inflight(k)) {
        conn_release(k);
    }
    return true;
}

static void conn_handle_connect(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct conn *k = container_of(op, struct conn, connect_op);
    if (conn_reaped(k)) {
        return;
    }
    if (res < 0) {
        attempt_finish(k, classify_errno(-res), -res);
        return;
    }
    if (ring_timer_armed(&k->timer)) {
        ring_timer_cancel(r, &k->timer);
    }
    k->ep->transport->start(k);
}

static void conn_handle_send(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct conn *k = container_of(op, struct conn, send_op);
    if (conn_reaped(k) || !k->cur) {
        return;
    }
    k->ep->transport->sent(k, res);
}

/* conn_was_stale tells whether a failure may be a kept-alive connection the peer closed
 * before reading our request (nothing came back yet on a reused connection): the request then
 * goes out again, once, on a fresh connection. */
static bool conn_was_stale(const struct conn *k)
{
    return k->requests > 1 && !k->got_bytes && k->cur->stale_retries < STALE_RETRIES;
}

/* conn_send_failed ends an exchange whose request could not be written: a kept-alive
 * connection the peer had closed sends the request again on a fresh one. */
static void conn_send_failed(struct conn *k, int res)
{
    if (conn_was_stale(k)) {
        attempt_requeue(k);
    } else {
        attempt_finish(k, classify_errno(-res), -res);
    }
}

static void plain_sent(struct conn *k, int res)
{
    if (res < 0) {
        conn_send_failed(k, res);
        return;
    }
    size_t n = (size_t)res;
    if (n >= k->send_left) {
        k->send_left = 0;
        k->send_done = true;
        return;
    }
    /* A short write: advance the gather and write the rest. */
    k->send_left -= n;
    while (n && k->msg.msg_iovlen) {
        struct iovec *v = k->msg.msg_iov;
        if (n >= v->iov_len) {
            n -= v->iov_len;
            k->msg.msg_iov++;
            k->msg.msg_iovlen--;
        } else {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= n;
            n = 0;
        }
    }
    if (ring_sendmsg(k->cl->ring, &k->send_op, k->fd, &k->msg, 0)) {
        attempt_finish(k, ATTEMPT_ERROR, EBUSY);
    }
}

static void conn_handle_recv(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct conn *k = container_of(op, struct conn, recv_op);
    if (conn_reaped(k) || !k->cur) {
        return;
    }
    k->ep->transport->received(k, res);
}

/* conn_eof ends an exchange on end of stream (res 0) or a receive error. */
static void conn_eof(struct conn *k, int res)
{
    if (res == 0 && httpresp_eof(&k->resp) == HTTPRESP_DONE) {
        int s = k->resp.status;
        attempt_finish(k, s >= 200 && s < 300 ? ATTEMPT_OK : ATTEMPT_STATUS, 0);
        return;
    }
    /* A kept-alive connection the peer had already closed: nothing of ours was read, so the
     * request goes out again on a fresh connection. */
    if (conn_was_stale(k) && (res == 0 || res == -ECONNRESET)) {
        attempt_requeue(k);
        return;
    }
    attempt_finish(k, res == 0 ? ATTEMPT_RESET : classify_errno(-res), res == 0 ? 0 : -res);
}

/* conn_parse takes n more plaintext bytes at rbuf[rlen] and parses. Returns true when the
 * exchange ended (the attempt is finished), false when the answer needs more bytes (and there
 * is room for them at rbuf + rlen). */
static bool conn_parse(struct conn *k, uint32_t n)
{
    if (!k->got_bytes) {
        k->got_bytes = true;
        k->first_byte_deadline = 0;
        conn_arm_timer(k, k->total_deadline);
    }
    k->rlen += n;
    size_t used;
    enum httpresp_status st = httpresp_feed(&k->resp, k->rbuf, k->rlen, &used, &k->cl->lim);
    memmove(k->rbuf, k->rbuf + used, k->rlen - used);
    k->rlen -= (uint32_t)used;
    if (st == HTTPRESP_AGAIN) {
        if (k->rlen >= k->rcap && k->rcap < k->cl->o.rbuf_size) {
            /* A head larger than the buffer so far: grow it, up to the client's limit. */
            uint32_t cap = k->rcap * 2 < k->cl->o.rbuf_size ? k->rcap * 2 : k->cl->o.rbuf_size;
            uint8_t *p = realloc(k->rbuf, cap);
            if (!p) {
                attempt_finish(k, ATTEMPT_ERROR, ENOMEM);
                return true;
            }
            k->rbuf = p;
            k->rcap = cap;
        }
        if (k->rlen >= k->rcap) {
            attempt_finish(k, ATTEMPT_MALFORMED, 0);
            return true;
        }
        return false;
    }
    if (st == HTTPRESP_DONE || st == HTTPRESP_BODY_TOO_LARGE) {
        if (st == HTTPRESP_BODY_TOO_LARGE) {
            k->resp.keep_alive = false;
        }
        int s = k->resp.status;
        attempt_finish(k, s >= 200 && s < 300 ? ATTEMPT_OK : ATTEMPT_STATUS, 0);
    } else {
        attempt_finish(k, ATTEMPT_MALFORMED, 0);
    }
    return true;
}

static void plain_received(struct conn *k, int res)
{
    if (res <= 0) {
        conn_eof(k, res);
        return;
    }
    if (!conn_parse(k, (uint32_t)res) &&
        ring_recv(k->cl->ring, &k->recv_op, k->fd, k->rbuf + k->rlen, k->rcap - k->rlen, 0)) {
        attempt_finish(k, ATTEMPT_ERROR, EBUSY);
    }
}

static void plain_start(struct conn *k)
{
    ready_push(k);
}

static void plain_release(struct conn *k)
{
}

/* ---- TLS ---------------------------------------------------------------------------------- */

/* tls_failed finishes k's attempt with the TLS failure's class, its reason as the excerpt. */
static void tls_failed(struct conn *k)
{
    enum attempt_result r;
    switch (k->tls.error) {
    case TLS_ERR_UNTRUSTED:
        r = ATTEMPT_TLS_UNTRUSTED;
        break;
    case TLS_ERR_EXPIRED:
        r = ATTEMPT_TLS_EXPIRED;
        break;
    case TLS_ERR_WRONG_HOST:
        r = ATTEMPT_TLS_WRONG_HOST;
        break;
    default:
        r = ATTEMPT_TLS_PROTOCOL;
        break;
    }
    k->fail_detail = k->tls.detail;
    attempt_finish(k, r, EPROTO);
}

static void tls_keep_session(void *arg, SSL_SESSION *s)
{
    struct origin *o = arg;
    SSL_SESSION_up_ref(s);
    if (o->session) {
        SSL_SESSION_free(o->session);
    }
    o->session = s;
}

/* tls_flush sends the ciphertext waiting in the engine, unless a send is in flight (its
 * completion flushes again). Returns 0, or -1 when the attempt was finished. */
static int tls_flush(struct conn *k)
{
    if (k->send_op.inflight) {
        return 0;
    }
    if (k->cout_off == k->cout.len) {
        k->cout.len = k->cout_off = 0;
        size_t n = tls_conn_pending(&k->tls);
        if (n == 0) {
            k->send_done = true;
            return 0;
        }
        if (buf_reserve(&k->cout, n)) {
            attempt_finish(k, ATTEMPT_ERROR, ENOMEM);
            return -1;
        }
        k->cout.len = tls_conn_take(&k->tls, k->cout.p, n);
    }
    k->send_done = false;
    if (ring_send(k->cl->ring, &k->send_op, k->fd, k->cout.p + k->cout_off,
                  k->cout.len - k->cout_off, 0)) {
        attempt_finish(k, ATTEMPT_ERROR, EBUSY);
        return -1;
    }
    return 0;
}

static int tls_post_recv(struct conn *k)
{
    if (k->recv_op.inflight) {
        return 0;
    }
    if (ring_recv(k->cl->ring, &k->recv_op, k->fd, k->cbuf, CBUF_SIZE, 0)) {
        attempt_finish(k, ATTEMPT_ERROR, EBUSY);
        return -1;
    }
    return 0;
}

/* tls_step advances the handshake; the conn is ready to send once it completes. */
static void tls_step(struct conn *k)
{
    struct client *c = k->cl;
    enum tls_status st = tls_conn_handshake(&k->tls, c->o.tls);
    if (st == TLS_OK) {
        if (ring_timer_armed(&k->timer)) {
            ring_timer_cancel(c->ring, &k->timer);
        }
        k->ep->stat_handshakes++;
        if (SSL_session_reused(k->tls.ssl)) {
            k->ep->stat_resumed++;
        }
        ready_push(k); /* what the handshake still has to say goes out with the request */
        return;
    }
    if (st == TLS_FAILED) {
        tls_failed(k);
        return;
    }
    if (st == TLS_CLOSED) {
        k->fail_detail = "the server closed the TLS session during the handshake";
        attempt_finish(k, ATTEMPT_TLS_PROTOCOL, EPROTO);
        return;
    }
    if (tls_flush(k) == 0) {
        tls_post_recv(k);
    }
}

static void tls_start(struct conn *k)
{
    struct client *c = k->cl;
    struct endpoint *ep = k->ep;
    if (!k->cbuf && !(k->cbuf = malloc(CBUF_SIZE))) {
        attempt_finish(k, ATTEMPT_ERROR, ENOMEM);
        return;
    }
    k->cout.len = k->cout_off = 0;
    if (tls_conn_start(&k->tls, c->o.tls, ep->url.host, ep->url.host_is_ip, ep->origin->session,
                       tls_keep_session, ep->origin)) {
        attempt_finish(k, ATTEMPT_ERROR, ENOMEM);
        return;
    }
    k->state = CONN_HANDSHAKE;
    conn_arm_timer(k, ring_now_ns(c->ring) + (int64_t)ep->connect_timeout_ms * 1000000);
    tls_step(k);
}

static void tls_send(struct conn *k, int niov)
{
    if (tls_conn_write(&k->tls, k->cl->o.tls, k->iov, niov)) {
        tls_failed(k);
        return;
    }
    if (tls_flush(k) == 0) {
        tls_post_recv(k);
    }
}

static void tls_sent(struct conn *k, int res)
{
    if (res < 0) {
        conn_send_failed(k, res);
        return;
    }
    k->cout_off += (size_t)res;
    tls_flush(k); /* the rest, or what the engine produced meanwhile */
}

static void tls_received(struct conn *k, int res)
{
    if (res <= 0) {
        if (k->state == CONN_HANDSHAKE) {
            k->fail_detail = "the connection closed during the TLS handshake";
            attempt_finish(k, res == 0 ? ATTEMPT_TLS_PROTOCOL : classify_errno(-res),
                           res == 0 ? EPROTO : -res);
        } else {
            conn_eof(k, res);
        }
        return;
    }
    if (tls_conn_feed(&k->tls, k->cbuf, (size_t)res)) {
        attempt_finish(k, ATTEMPT_ERROR, ENOMEM);
        return;
    }
    if (k->state == CONN_HANDSHAKE) {
        tls_step(k);
        return;
    }
    for (;;) {
        size_t got;
        enum tls_status st = tls_conn_read(&k->tls, k->rbuf + k->rlen, k->rcap - k->rlen, &got);
        if (st == TLS_OK) {
            if (conn_parse(k, (uint32_t)got)) {
                return;
            }
            continue;
        }
        if (st == TLS_AGAIN) {
            /* a post-handshake message may have asked for an answer */
            if (tls_conn_pending(&k->tls) && tls_flush(k)) {
                return;
            }
            tls_post_recv(k);
            return;
        }
        if (st == TLS_CLOSED) {
            conn_eof(k, 0);
            return;
        }
        tls_failed(k);
        return;
    }
}

static void tls_release(struct conn *k)
{
    tls_conn_free(&k->tls);
    k->cout.len = k->cout_off = 0;
}

static void conn_handle_timer(struct ring *r, struct ring_timer *t)
{
    struct conn *k = container_of(t, struct conn, timer);
    if (!k->cur) {
        return;
    }
    if (k->state == CONN_RESOLVING) {
        k->dns_timed_out = true;
        dns_cancel(k->cl->o.dns, &k->dns->q); /* calls back: the attempt ends as dns_timeout */
    } else if (k->state == CONN_CONNECTING) {
        attempt_finish(k, ATTEMPT_TIMEOUT_CONNECT, ETIMEDOUT);
    } else if (k->state == CONN_HANDSHAKE) {
        attempt_finish(k, ATTEMPT_TIMEOUT_TLS, ETIMEDOUT);
    } else if (!k->got_bytes) {
        /* no byte of an answer came, whichever deadline fired */
        attempt_finish(k, ATTEMPT_TIMEOUT_FIRST_BYTE, ETIMEDOUT);
    } else {
        attempt_finish(k, ATTEMPT_TIMEOUT_TOTAL, ETIMEDOUT);
    }
}

/* ---- batched signing and sending ---------------------------------------------------------- */

static int64_t unix_ms(void)
{
    return unix_now_us() / 1000;
}

static void conn_send(struct conn *k, struct sign_job *job, int64_t now_ns)
{
    struct attempt *a = k->cur;
    struct endpoint *ep = k->ep;
    k->hdr.len = 0;
    if (ep->signer->profile->write_headers(job, &k->hdr) || buf_puts(&k->hdr, "Content-Length: ") ||
        buf_put_u64(&k->hdr, a->body.len) || buf_put(&k->hdr, "\r\n\r\n", 4)) {
        attempt_finish(k, ATTEMPT_ERROR, ENOMEM);
        return;
    }
    a->sent_ns = now_ns;
    a->sent_unix_ms = job->now_ms;
    k->iov[0] = (struct iovec){ep->prefix.p, ep->prefix.len};
    k->iov[1] = (struct iovec){k->hdr.p, k->hdr.len};
    k->iov[2] = (struct iovec){(void *)a->body.p, a->body.len};
    memset(&k->msg, 0, sizeof(k->msg));
    k->msg.msg_iov = k->iov;
    k->msg.msg_iovlen = a->body.len ? 3 : 2;
    k->send_left = ep->prefix.len + k->hdr.len + a->body.len;
    k->send_done = false;
    k->got_bytes = false;
    k->requests++;
    httpresp_init(&k->resp, false);
    k->state = CONN_ACTIVE;
    int64_t total = a->submit_ns + (int64_t)ep->timeout_ms * 1000000;
    int64_t first = now_ns + (int64_t)ep->first_byte_timeout_ms * 1000000;
    k->total_deadline = total;
    k->first_byte_deadline = first;
    conn_arm_timer(k, first < total ? first : total);
    ep->transport->send(k, (int)k->msg.msg_iovlen);
}

static void plain_send(struct conn *k, int niov)
{
    struct client *c = k->cl;
    /* Write and read are submitted together: the answer's read is already waiting when the
     * request leaves, saving a loop iteration per exchange. */
    if (ring_sendmsg(c->ring, &k->send_op, k->fd, &k->msg, 0) ||
        ring_recv(c->ring, &k->recv_op, k->fd, k->rbuf + k->rlen, k->rcap - k->rlen, 0)) {
        attempt_finish(k, ATTEMPT_ERROR, EBUSY);
    }
}

size_t client_flush(struct client *c)
{
    size_t sent = 0;
    while (c->ready_head) {
        struct sign_job jobs[SIGN_BATCH];
        struct conn *batch[SIGN_BATCH];
        size_t n = 0;
        int64_t now_ms = unix_ms();
        while (c->ready_head && n < SIGN_BATCH) {
            struct conn *k = c->ready_head;
            c->ready_head = k->next;
            if (!c->ready_head) {
                c->ready_tail = NULL;
            }
            k->next = NULL;
            struct attempt *a = k->cur;
            jobs[n] = (struct sign_job){.signer = k->ep->signer,
                                        .event = a->event,
                                        .body = a->body,
                                        .id = a->id,
                                        .now_ms = now_ms};
            batch[n++] = k;
        }
        sign_batch(jobs, n);
        c->stat_batches++;
        c->stat_signed += n;
        int64_t now_ns = ring_clock_ns();
        for (size_t i = 0; i < n; i++) {
            conn_send(batch[i], &jobs[i], now_ns);
        }
        sent += n;
    }
    return sent;
}

/* ======== a delivery thread's machinery ====================================================== */

int netstack_init(struct netstack *ns, const struct netstack_opts *o, char *err, size_t errlen)
{
    int rc = ring_init(&ns->ring, &o->ring);
    if (rc) {
        snprintf(err, errlen, "io_uring set-up failed: %s", strerror(-rc));
        return rc;
    }
    ns->ring_ok = true;
    if (o->tls) {
        /* one TLS context per thread: sessions and counters stay on it */
        if (tls_ctx_init(&ns->tls, o->tls, err, errlen)) {
            return -EINVAL;
        }
        ns->tls_ok = true;
    }
    if (o->dns) {
        char derr[256];
        if (dns_init(&ns->dns, &ns->ring, o->dns, derr, sizeof(derr)) == 0) {
            ns->dns_ok = true;
        } else if (!o->dns_optional) {
            snprintf(err, errlen, "%s", derr);
            return -EINVAL;
        }
    }
    struct client_opts co = o->client;
    co.tls = ns->tls_ok ? &ns->tls : NULL;
    co.dns = ns->dns_ok ? &ns->dns : NULL;
    rc = client_init(&ns->cl, &ns->ring, &co);
    if (rc) {
        snprintf(err, errlen, "the delivery client: out of memory");
        return rc;
    }
    ns->client_ok = true;
    return 0;
}

void netstack_cleanup(struct netstack *ns)
{
    if (ns->client_ok) {
        client_cleanup(&ns->cl);
        ns->client_ok = false;
    }
    if (ns->dns_ok) {
        dns_cleanup(&ns->dns);
        ns->dns_ok = false;
    }
    if (ns->ring_ok) {
        ring_cleanup(&ns->ring);
        ns->ring_ok = false;
    }
    if (ns->tls_ok) {
        tls_ctx_cleanup(&ns->tls);
        ns->tls_ok = false;
    }
}

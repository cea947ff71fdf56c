/* apisrv.c: the API's HTTP/1.1 server (see apisrv.h). */
#include "apisrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define APISRV_MAX_HEADERS 64

enum apiconn_state {
    AC_FREE = 0,
    AC_READING,  /* waiting for (the rest of) a request */
    AC_HANDLING, /* the handler owes an answer; nothing is read meanwhile */
    AC_WRITING,  /* the answer is leaving */
    AC_CLOSING,  /* closed; freed once the kernel has handed back its ops */
};

struct apiconn {
    struct apisrv *s;
    enum apiconn_state state;
    int fd;
    struct op rx, tx;
    struct ring_timer deadline;
    uint8_t *rbuf;
    size_t rcap, rlen;
    size_t consumed; /* bytes of the request being handled */
    bool keep_alive;
    bool peer_eof;
    bool continue_sent;
    struct buf out;
    size_t sent;
    int64_t ready_ns; /* ring time it became ready for its next request */
    struct httpreq req;
    struct header hdrs[APISRV_MAX_HEADERS];
    struct apiconn *next_free;
};

static void conn_process(struct apiconn *c);
static void conn_open(struct apisrv *s, int fd);

/* ---- addresses ------------------------------------------------------------------------------ */

int apisrv_listen(const char *addr, struct sockaddr_storage *bound, char *err, size_t errlen)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (!colon || (size_t)(colon - addr) >= sizeof(host) || colon == addr) {
        snprintf(err, errlen, "--listen wants IP:PORT or [IPv6]:PORT, not '%s'", addr);
        return -EINVAL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || colon[1] == 0 || port > 65535) {
        snprintf(err, errlen, "--listen: bad port in '%s'", addr);
        return -EINVAL;
    }
    if (host[0] == '[') {
        size_t hl = strlen(host);
        if (hl < 3 || host[hl - 1] != ']') {
            snprintf(err, errlen, "--listen: bad address in '%s'", addr);
            return -EINVAL;
        }
        host[hl - 1] = 0;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1) {
            snprintf(err, errlen, "--listen: bad IPv6 address in '%s'", addr);
            return -EINVAL;
        }
        len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
            snprintf(err, errlen, "--listen: bad IPv4 address in '%s'", addr);
            return -EINVAL;
        }
        len = sizeof(*s4);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* a server killed a moment ago may still hold the port while the kernel tears its ring
     * down (asynchronously): a restart waits for it, up to 5 s */
    int brc;
    for (int tries = 0;
         (brc = bind(fd, (struct sockaddr *)&ss, len)) && errno == EADDRINUSE && tries < 100;
         tries++) {
        usleep(50 * 1000);
    }
    if (brc || listen(fd, 1024)) {
        int e = errno;
        snprintf(err, errlen, "--listen %s: %s", addr, strerror(e));
        close(fd);
        return -e;
    }
    socklen_t bl = sizeof(*bound);
    if (getsockname(fd, (struct sockaddr *)bound, &bl)) {
        int e = errno;
        snprintf(err, errlen, "getsockname: %s", strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

void apisrv_format_addr(const struct sockaddr_storage *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, ntohs(s4->sin_port));
    }
}

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_maybe_free(struct apiconn *c)
{
    if (c->state != AC_CLOSING || c->rx.inflight || c->tx.inflight) {
        return;
    }
    struct apisrv *s = c->s;
    free(c->rbuf);
    c->rbuf = NULL;
    buf_free(&c->out);
    c->state = AC_FREE;
    c->next_free = s->free_list;
    s->free_list = c;
    s->open--;
    if (s->npending && s->accepting) {
        /* the slot of an evicted connection: the oldest socket waiting takes it */
        int fd = s->pending[0];
        memmove(s->pending, s->pending + 1, --s->npending * sizeof(*s->pending));
        conn_open(s, fd);
    }
}

static void conn_close(struct apiconn *c)
{
    struct ring *r = c->s->r;
    if (c->state == AC_CLOSING || c->state == AC_FREE) {
        return;
    }
    ring_timer_cancel(r, &c->deadline);
    if ((c->rx.inflight || c->tx.inflight) && ring_cancel_fd(r, c->fd) < 0) {
        shutdown(c->fd, SHUT_RDWR);
    }
    ring_close(r, c->fd);
    c->fd = -1;
    c->state = AC_CLOSING;
    conn_maybe_free(c);
}

static void conn_arm_recv(struct apiconn *c)
{
    if (c->rx.inflight || c->peer_eof || c->state != AC_READING) {
        return;
    }
    if (c->rlen == c->rcap) {
        /* a chunked body's framing can outgrow the buffer the limits sized: too large */
        c->keep_alive = false;
        c->consumed = c->rlen;
        apisrv_reply(c, 413, NULL, NULL, "{\"error\":\"request too large\"}\n", 30);
        return;
    }
    if (ring_recv(c->s->r, &c->rx, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0) < 0) {
        conn_close(c);
    }
}

static void handle_rx(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct apiconn *c = container_of(op, struct apiconn, rx);
    if (c->state == AC_CLOSING) {
        conn_maybe_free(c);
        return;
    }
    if (res <= 0) {
        /* EOF or error: nothing is owed (a request being handled stops the reads) */
        conn_close(c);
        return;
    }
    c->rlen += (size_t)res;
    conn_process(c);
}

static void conn_flush(struct apiconn *c)
{
    if (ring_send(c->s->r, &c->tx, c->fd, c->out.p + c->sent, c->out.len - c->sent, 0) < 0) {
        conn_close(c);
    }
}

static void conn_ready(struct apiconn *c)
{
    c->state = AC_READING;
    c->ready_ns = ring_now_ns(c->s->r);
    ring_timer_arm_in(c->s->r, &c->deadline, (int64_t)c->s->o.idle_ms * 1000000);
}

static void handle_tx(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct apiconn *c = container_of(op, struct apiconn, tx);
    if (c->state == AC_CLOSING) {
        conn_maybe_free(c);
        return;
    }
    if (res <= 0) {
        conn_close(c);
        return;
    }
    c->sent += (size_t)res;
    if (c->sent < c->out.len) {
        conn_flush(c);
        return;
    }
    c->out.len = c->sent = 0;
    if (!c->keep_alive || c->peer_eof) {
        conn_close(c);
        return;
    }
    memmove(c->rbuf, c->rbuf + c->consumed, c->rlen - c->consumed);
    c->rlen -= c->consumed;
    c->consumed = 0;
    c->continue_sent = false;
    conn_ready(c);
    conn_process(c);
}

static void handle_deadline(struct ring *r, struct ring_timer *t)
{
    struct apiconn *c = container_of(t, struct apiconn, deadline);
    if (c->state == AC_READING) {
        conn_close(c);
    }
}

static void conn_process(struct apiconn *c)
{
    struct apisrv *s = c->s;
    const struct httpreq_limits lim = {.max_head = s->o.max_head, .max_body = s->o.max_body};
    if (c->state != AC_READING) {
        return;
    }
    enum httpreq_status st;
    if (c->rlen == 0) {
        st = HTTPREQ_AGAIN;
    } else {
        st = httpreq_parse(&c->req, c->hdrs, APISRV_MAX_HEADERS, c->rbuf, c->rlen, &lim);
    }
    if (st == HTTPREQ_AGAIN) {
        if (c->rlen && c->req.head_len && c->req.expect_continue && !c->continue_sent) {
            /* tiny, and the socket's buffer is empty between requests: a plain send is fine */
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            c->continue_sent = true;
            if (send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
                conn_close(c);
                return;
            }
        }
        conn_arm_recv(c);
        return;
    }
    ring_timer_cancel(s->r, &c->deadline);
    if (st != HTTPREQ_OK) {
        char body[96];
        int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", httpreq_status_name(st));
        c->keep_alive = false;
        c->consumed = c->rlen;
        c->state = AC_HANDLING;
        apisrv_reply(c, httpreq_status_code(st), NULL, NULL, body, (size_t)n);
        return;
    }
    c->consumed = c->req.len;
    c->keep_alive = c->req.keep_alive;
    c->state = AC_HANDLING;
    s->stat_requests++;
    s->handler(s->arg, c, &c->req);
}

static const char *reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

void apisrv_reply(struct apiconn *c, int status, const char *content_type,
                  const char *extra_headers, const void *body, size_t len)
{
    if (c->state == AC_CLOSING || c->state == AC_FREE) {
        return;
    }
    if ((status >= 500 && status != 503) || c->s->quiescing) {
        c->keep_alive = false;
    }
    c->out.len = c->sent = 0;
    if (buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                   status, reason(status), content_type ? content_type : "application/json", len,
                   c->keep_alive ? "" : "Connection: close\r\n",
                   extra_headers ? extra_headers : "") ||
        buf_put(&c->out, body, len)) {
        conn_close(c);
        return;
    }
    c->state = AC_WRITING;
    conn_flush(c);
}

struct apisrv *apisrv_conn_server(const struct apiconn *c)
{
    return c->s;
}

/* ---- accepting ------------------------------------------------------------------------------ */

static void handle_accept(struct ring *r, struct op *op, int res, uint32_t flags);

static void accept_arm(struct apisrv *s)
{
    if (s->accepting && !s->accept_op.inflight &&
        ring_accept_multishot(s->r, &s->accept_op, s->lfd) < 0) {
        ring_timer_arm_in(s->r, &s->accept_retry, 10 * 1000000);
    }
}

static void handle_accept_retry(struct ring *r, struct ring_timer *t)
{
    accept_arm(container_of(t, struct apisrv, accept_retry));
}

/* conn_evict closes the connection that has waited longest for its next request, with nothing
 * of one read (keep-alive clients pool connections: a new client must not be shut out by idle
 * ones). Returns whether there was one. A scan, only when every connection is taken. */
static bool conn_evict(struct apisrv *s)
{
    struct apiconn *victim = NULL;
    for (uint32_t i = 0; i < s->o.max_conns; i++) {
        struct apiconn *c = &s->conns[i];
        if (c->state == AC_READING && c->rlen == 0 && (!victim || c->ready_ns < victim->ready_ns)) {
            victim = c;
        }
    }
    if (!victim) {
        return false;
    }
    s->stat_evicted++;
    conn_close(victim);
    return true;
}

static void conn_open(struct apisrv *s, int fd)
{
    struct apiconn *c = s->free_list;
    if (!c) {
        /* one waiting socket per connection being closed for it, no more */
        if (s->npending < APISRV_PENDING_MAX && conn_evict(s)) {
            if (s->free_list) { /* freed at once: nothing of it was in flight */
                conn_open(s, fd);
            } else {
                s->pending[s->npending++] = fd;
            }
            return;
        }
        s->stat_refused++;
        close(fd);
        return;
    }
    c->rbuf = malloc(s->o.max_head + s->o.max_body + 1024);
    if (!c->rbuf) {
        s->stat_refused++;
        close(fd);
        return;
    }
    s->free_list = c->next_free;
    s->open++;
    s->stat_accepted++;
    c->fd = fd;
    c->rcap = s->o.max_head + s->o.max_body + 1024;
    c->rlen = c->consumed = c->sent = 0;
    c->keep_alive = true;
    c->peer_eof = false;
    c->continue_sent = false;
    buf_init(&c->out, s->o.max_body + 64 * 1024);
    conn_ready(c);
    conn_arm_recv(c);
}

static void handle_accept(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct apisrv *s = container_of(op, struct apisrv, accept_op);
    if (res >= 0) {
        if (s->accepting) {
            conn_open(s, res);
        } else {
            close(res);
        }
    }
    if (!op->inflight) {
        if (res < 0 && res != -ECANCELED && s->accepting) {
            ring_timer_arm_in(r, &s->accept_retry, 10 * 1000000);
        } else {
            accept_arm(s);
        }
    }
}

int apisrv_init(struct apisrv *s, struct ring *r, int lfd, const struct apisrv_opts *o,
                apisrv_handler_cb *handler, void *arg)
{
    memset(s, 0, sizeof(*s));
    s->r = r;
    if (o) {
        s->o = *o;
    }
    if (!s->o.max_head) {
        s->o.max_head = 16 << 10;
    }
    if (!s->o.max_body) {
        s->o.max_body = 1 << 20;
    }
    if (!s->o.max_conns) {
        s->o.max_conns = 1024;
    }
    if (!s->o.idle_ms) {
        s->o.idle_ms = 30000;
    }
    s->handler = handler;
    s->arg = arg;
    s->lfd = lfd;
    s->conns = calloc(s->o.max_conns, sizeof(*s->conns));
    if (!s->conns) {
        return -ENOMEM;
    }
    for (uint32_t i = s->o.max_conns; i-- > 0;) {
        struct apiconn *c = &s->conns[i];
        c->s = s;
        c->fd = -1;
        c->rx.cb = handle_rx;
        c->tx.cb = handle_tx;
        ring_timer_init(&c->deadline, handle_deadline);
        c->next_free = s->free_list;
        s->free_list = c;
    }
    s->accept_op.cb = handle_accept;
    ring_timer_init(&s->accept_retry, handle_accept_retry);
    s->accepting = true;
    accept_arm(s);
    return 0;
}

void apisrv_stop_accepting(struct apisrv *s)
{
    if (!s->accepting) {
        return;
    }
    s->accepting = false;
    for (uint32_t i = 0; i < s->npending; i++) {
        close(s->pending[i]); /* accepted, never read: the client sees the close */
    }
    s->npending = 0;
    ring_timer_cancel(s->r, &s->accept_retry);
    if (s->accept_op.inflight) {
        ring_cancel_fd(s->r, s->lfd);
    }
    shutdown(s->lfd, SHUT_RDWR);
}

void apisrv_quiesce(struct apisrv *s)
{
    s->quiescing = true;
    for (uint32_t i = 0; s->conns && i < s->o.max_conns; i++) {
        if (s->conns[i].state == AC_READING) {
            conn_close(&s->conns[i]);
        }
    }
}

void apisrv_cleanup(struct apisrv *s)
{
    if (!s->conns) {
        return;
    }
    for (uint32_t i = 0; i < s->o.max_conns; i++) {
        struct apiconn *c = &s->conns[i];
        if (c->state != AC_FREE) {
            ring_timer_cancel(s->r, &c->deadline);
            if (c->fd >= 0) {
                close(c->fd);
            }
            free(c->rbuf);
            buf_free(&c->out);
        }
    }
    ring_timer_cancel(s->r, &s->accept_retry);
    if (s->lfd >= 0) {
        close(s->lfd);
    }
    for (uint32_t i = 0; i < s->npending; i++) {
        close(s->pending[i]);
    }
    s->npending = 0;
    free(s->conns);
    s->conns = NULL;
}

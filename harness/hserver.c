/* hserver.c: workers, connections and the behaviours behind each path. */
#include "hserver.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hbehave.h"
#include "htls.h"
#include "httpreq.h"
#include "ring.h"

#define HC_RESP_RESERVE 1024 /* output room needed before another request is taken */
#define HC_MAX_PEND 64       /* answers queued but not yet written, per connection */
#define HC_RBUF_SLACK 4096   /* chunk framing on top of the body limit */
#define HC_NONE ((size_t)-1)
#define HC_TLS_IN (32 << 10)             /* ciphertext received per recv */
#define HC_TLS_BATCH (64 << 10)          /* plaintext encrypted per send */
#define HC_TLS_OUT (HC_TLS_BATCH + 4096) /* a batch's records and their overhead */
#define MS ((int64_t)1000000)

enum hc_state {
    HC_FREE,
    HC_ACTIVE,  /* taking requests */
    HC_SLOW,    /* holding a /slow/ answer until the action timer */
    HC_TRICKLE, /* writing an answer a byte at a time */
    HC_HANG,    /* /timeout/: never answering again */
    HC_DRAIN,   /* writing what is queued, then the after action */
    HC_LINGER,  /* write side shut; reading and dropping input until EOF or the timer */
    HC_CLOSING, /* fd closed; waiting for the kernel to give back the ops */
};

enum hc_after {
    HC_AFTER_CLOSE, /* shut the write side, linger, close */
    HC_AFTER_RESET, /* SO_LINGER 0 and close: the peer gets a RST */
};

struct hpend {
    size_t end;     /* stream offset one past the answer */
    int64_t t_recv; /* when its request was whole */
};

/* What a request needs remembered while its answer waits (/slow/, /trickle/). */
struct hheld {
    struct hids_ref ref;
    int64_t t_recv;
    bool keep_alive;
    bool http10;
};

struct hconn {
    struct hworker *w;
    int fd;
    enum hc_state state;
    enum hc_after after;
    struct op rx;
    struct op tx;
    struct ring_timer idle; /* lazily re-armed from last_rx_ns */
    struct ring_timer act;  /* /slow/ delay, /trickle/ pace, linger deadline */
    int64_t last_rx_ns;
    uint8_t *rbuf;
    size_t rcap, rpos, rlen, rhigh;
    size_t need; /* bytes the request at rpos needs, when known */
    uint8_t *wbuf;
    size_t wcap, wlen, wsent;
    const uint8_t *tail; /* a body sent from shared memory after wbuf (/big/) */
    size_t tail_len, tail_sent;
    size_t trickle_from; /* wbuf offset from which bytes go one at a time, or HC_NONE */
    int64_t trickle_ns;
    bool trickle_wait;
    bool peer_eof;
    bool continue_sent;
    struct hpend pend[HC_MAX_PEND];
    unsigned pend_head, npend;
    struct hheld held;
    struct msghdr msg;
    struct iovec iov[2];
    /* TLS (tls.ssl set): the ring moves ciphertext through cin and cout; rbuf and wbuf hold
     * plaintext exactly as on a plain connection */
    struct htls tls;
    uint8_t *cin;
    uint8_t *cout;
    size_t cout_len, cout_sent;
    size_t tls_pt;    /* plaintext in the ciphertext now leaving: credited once all has left */
    bool tls_want_in; /* the session has consumed everything fed: recv more ciphertext */
    bool tls_dead;    /* a fatal TLS error: only what is already encrypted still leaves */
    bool tls_bye;     /* close_notify queued */
    struct hconn *next_free;
};

struct hlistener {
    struct op op;
    struct ring_timer retry;
    int fd;
    struct hworker *w;
    struct htls_ctx *tls; /* NULL: plain HTTP */
};

struct hworker {
    struct hserver *srv;
    const struct hconfig *cfg;
    unsigned index;
    pthread_t thread;
    bool started;
    bool ring_ok;
    struct ring ring;
    struct hlistener listeners[HCONFIG_MAX_LISTEN];
    size_t nlisteners;
    struct hconn *conns;
    struct hconn *free_list;
    size_t open;
    uint8_t *slab;
    size_t slab_len;
    char *scratch; /* control answers are rendered here first */
    size_t scratch_cap;
    struct header *hdrs;
    struct verify_result vr;
    struct hstats stats;
    uint64_t rng;
    bool stopping;
};

static void conn_step(struct hconn *c);
static void conn_close(struct hconn *c, enum hc_after how);

/* ======== status lines ====================================================================== */

static char status_text[HSTATS_STATUS_MAX][48];
static uint8_t status_len[HSTATS_STATUS_MAX];

static const char *reason_phrase(int code)
{
    switch (code) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 410:
        return "Gone";
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
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Status";
    }
}

static void status_table_init(void)
{
    for (int i = 100; i < HSTATS_STATUS_MAX; i++) {
        int n = snprintf(status_text[i], sizeof(status_text[i]), "HTTP/1.1 %d %s\r\n", i,
                         reason_phrase(i));
        status_len[i] = (uint8_t)n;
    }
}

/* ======== small helpers ===================================================================== */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* put_u64 writes v in decimal at p and returns the end. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) {
        *p++ = tmp[--n];
    }
    return p;
}

static inline char *put_lit(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, s) put_lit((p), (s), sizeof(s) - 1)

static inline bool wdrained(const struct hconn *c)
{
    return c->wsent == c->wlen && c->tail_sent == c->tail_len;
}

/* out_done says every answer has been written and, with TLS, every record (alerts included)
 * has left. */
static inline bool out_done(const struct hconn *c)
{
    return wdrained(c) &&
           (!c->tls.ssl || (c->cout_sent == c->cout_len && htls_out_pending(&c->tls) == 0));
}

/* ======== answers =========================================================================== */

struct reply {
    int code;
    struct slice extra; /* complete header lines */
    struct slice body;
    size_t tail_len; /* body bytes sent from c->tail after these */
    bool keep_alive;
    bool http10;
    bool head;  /* HEAD: no body */
    bool count; /* counted in the status table (not for /_harness/) */
    int64_t t_recv;
};

/* conn_reply appends one answer to the output buffer (the caller made sure it fits). */
static void conn_reply(struct hconn *c, const struct reply *rp)
{
    char *start = (char *)c->wbuf + c->wlen;
    char *p = put_lit(start, status_text[rp->code], status_len[rp->code]);
    p = PUT_LIT(p, "Content-Length: ");
    p = put_u64(p, rp->body.len + rp->tail_len);
    p = PUT_LIT(p, "\r\n");
    if (rp->extra.len) {
        p = put_lit(p, (const char *)rp->extra.p, rp->extra.len);
    }
    if (!rp->keep_alive) {
        p = PUT_LIT(p, "Connection: close\r\n");
    } else if (rp->http10) {
        p = PUT_LIT(p, "Connection: keep-alive\r\n");
    }
    p = PUT_LIT(p, "\r\n");
    if (!rp->head && rp->body.len) {
        p = put_lit(p, (const char *)rp->body.p, rp->body.len);
    }
    c->wlen = (size_t)(p - (char *)c->wbuf);
    if (rp->head) {
        c->tail_len = 0;
    }
    if (rp->count) {
        hstats_inc(&c->w->stats.status[rp->code]);
    }
    struct hpend *pe = &c->pend[(c->pend_head + c->npend) % HC_MAX_PEND];
    pe->end = c->wlen + (rp->head ? 0 : rp->tail_len);
    pe->t_recv = rp->count ? rp->t_recv : -1; /* /_harness/ answers have no latency */
    c->npend++;
}

static bool reply_fits(const struct hconn *c, size_t body_len)
{
    return c->wcap - c->wlen >= body_len + 256;
}

static void reply_simple(struct hconn *c, struct reply *rp, int code, const char *body)
{
    rp->code = code;
    rp->body = slice_cstr(body);
    conn_reply(c, rp);
}

/* conn_refuse answers a request the parser refused and ends the connection. */
static void conn_refuse(struct hconn *c, enum httpreq_status st)
{
    struct hstats *s = &c->w->stats;
    int code = httpreq_status_code(st);
    switch (st) {
    case HTTPREQ_HEAD_TOO_LARGE:
    case HTTPREQ_TOO_MANY_HEADERS:
        hstats_inc(&s->c[HS_HEAD_TOO_LARGE]);
        break;
    case HTTPREQ_BODY_TOO_LARGE:
        hstats_inc(&s->c[HS_BODY_TOO_LARGE]);
        break;
    case HTTPREQ_NOT_IMPLEMENTED:
        hstats_inc(&s->c[HS_NOT_IMPLEMENTED]);
        break;
    default:
        hstats_inc(&s->c[HS_BAD_REQUEST]);
        break;
    }
    char body[64];
    snprintf(body, sizeof(body), "%s\n", httpreq_status_name(st));
    struct reply rp = {.keep_alive = false, .count = true, .t_recv = ring_now_ns(&c->w->ring)};
    reply_simple(c, &rp, code, body);
    c->state = HC_DRAIN;
    c->after = HC_AFTER_CLOSE;
}

/* ======== /_harness/ ======================================================================== */

static const struct slice control_prefix = {(const uint8_t *)"/_harness/", 10};

static bool is_control(struct slice path)
{
    return path.len >= control_prefix.len && memcmp(path.p, control_prefix.p, 10) == 0;
}

/* handle_control answers /_harness/ requests. Returns false when the answer does not fit the
 * output buffer yet (the request is then retried once the buffer has drained). */
static bool handle_control(struct hconn *c, const struct httpreq *req, struct reply *rp)
{
    struct hworker *w = c->w;
    struct slice what = {req->path.p + 10, req->path.len - 10};
    bool get = slice_eq_cstr(req->method, "GET") || slice_eq_cstr(req->method, "HEAD");
    size_t n;
    rp->count = false;
    if (slice_eq_cstr(what, "stats")) {
        if (!get) {
            rp->extra = SLICE_LIT("Allow: GET, HEAD\r\n");
            n = (size_t)snprintf(w->scratch, w->scratch_cap, "use GET\n");
            rp->code = 405;
        } else {
            n = hstats_json(&w->srv->stats, w->scratch, w->scratch_cap);
            rp->code = n ? 200 : 500;
            rp->extra = SLICE_LIT("Content-Type: application/json\r\n");
        }
    } else if (slice_eq_cstr(what, "reset")) {
        if (!slice_eq_cstr(req->method, "POST")) {
            rp->extra = SLICE_LIT("Allow: POST\r\n");
            n = (size_t)snprintf(w->scratch, w->scratch_cap, "use POST\n");
            rp->code = 405;
        } else {
            hstats_reset(&w->srv->stats);
            n = (size_t)snprintf(w->scratch, w->scratch_cap, "reset\n");
            rp->code = 200;
        }
    } else if (what.len > 4 && memcmp(what.p, "ids/", 4) == 0 && get) {
        struct slice id = {what.p + 4, what.len - 4};
        struct hids_entry e;
        if (hids_lookup(&w->srv->ids, id, &e)) {
            n = (size_t)snprintf(w->scratch, w->scratch_cap,
                                 "{\"id\":\"%.*s\",\"attempts\":%u,\"verified\":%u,"
                                 "\"bad_signature\":%u,\"duplicates\":%u,\"processed\":%s,"
                                 "\"first_seen_ms\":%lld,\"first_seen_us\":%lld}\n",
                                 (int)id.len, (const char *)id.p, e.attempts, e.accepted, e.bad_sig,
                                 e.duplicates, e.processed ? "true" : "false",
                                 (long long)(e.first_seen_us / 1000), (long long)e.first_seen_us);
            rp->code = 200;
            rp->extra = SLICE_LIT("Content-Type: application/json\r\n");
        } else {
            n = (size_t)snprintf(w->scratch, w->scratch_cap, "unknown id\n");
            rp->code = 404;
        }
    } else {
        n = (size_t)snprintf(w->scratch, w->scratch_cap, "no such control path\n");
        rp->code = 404;
    }
    if (!reply_fits(c, n)) {
        return false;
    }
    hstats_inc(&w->stats.c[HS_CONTROL]);
    rp->body = slice_of(w->scratch, n);
    conn_reply(c, rp);
    return true;
}

/* ======== the behaviours ==================================================================== */

static void deliver(struct hconn *c, const struct hids_ref *ref)
{
    hids_processed(&c->w->srv->ids, ref);
}

/* handle_request answers one whole request. Returns false when it must be retried later
 * (nothing was done). */
static bool handle_request(struct hconn *c, struct httpreq *req)
{
    struct hworker *w = c->w;
    const struct hconfig *cfg = w->cfg;
    struct hstats *st = &w->stats;
    struct reply rp = {
        .keep_alive = req->keep_alive,
        .http10 = req->minor == 0,
        .head = slice_eq_cstr(req->method, "HEAD"),
        .count = true,
        .t_recv = ring_now_ns(&w->ring),
    };
    if (unlikely(is_control(req->path))) {
        if (!handle_control(c, req, &rp)) {
            return false;
        }
        goto out;
    }

    struct slice rest;
    const struct hroute *rt = hconfig_route(cfg, req->path, &rest);
    size_t ri = hconfig_route_index(cfg, rt);
    struct haction a;
    hbehave_parse(rest, &a);
    hstats_inc(&st->c[HS_REQUESTS]);
    hstats_inc(&st->behave[a.b][HSR_REQUESTS]);
    hstats_inc(&st->route[ri][HSR_REQUESTS]);
    if (a.b == HB_NOT_FOUND) {
        reply_simple(c, &rp, 404, "no such behaviour\n");
        goto out;
    }

    /* verification first: a request that fails it is never treated as delivered. One clock read
     * per request: the signature's time check, the id's arrival and the last verification. */
    int64_t now_us = unix_now_us();
    struct slice id = {0};
    if (rt->profile) {
        struct verify_opts o = {.now_ms = now_us / 1000, .tolerance_s = cfg->tolerance_s};
        if (verify_request(&rt->signer, req->headers, req->nheaders, req->body, &o, &w->vr) !=
            VERIFY_OK) {
            hstats_inc(&st->c[HS_BAD_SIGNATURE]);
            hstats_inc(&st->behave[a.b][HSR_BAD_SIGNATURE]);
            hstats_inc(&st->route[ri][HSR_BAD_SIGNATURE]);
            if (w->vr.id_len) {
                struct hids_arrival arr;
                hids_arrive(&w->srv->ids, slice_of(w->vr.id, w->vr.id_len), HIDS_BAD_SIG,
                            HIDS_NEVER, now_us, &arr);
            }
            char body[VERIFY_REASON_MAX + 64];
            snprintf(body, sizeof(body), "bad signature: %s: %s\n",
                     verify_status_name(w->vr.status), w->vr.reason);
            reply_simple(c, &rp, 401, body);
            goto out;
        }
        hstats_inc(&st->c[HS_VERIFIED]);
        __atomic_store_n(&st->last_verified_us, now_us, __ATOMIC_RELAXED);
        id = slice_of(w->vr.id, w->vr.id_len);
    } else {
        hstats_inc(&st->c[HS_UNVERIFIED]);
        const struct slice *h = httpreq_header(req, "X-Harness-Id");
        if (h) {
            id = *h;
        }
    }
    hstats_inc(&st->behave[a.b][HSR_VERIFIED]);
    hstats_inc(&st->route[ri][HSR_VERIFIED]);

    /* Whether this delivery is taken (the id becomes processed) is decided before the id is
     * recorded, so that recording and taking happen under one lock. */
    uint32_t take_after = HIDS_NEVER;
    bool fail = false;
    switch (a.b) {
    case HB_OK:
    case HB_DROP:
    case HB_DUP:
    case HB_TRICKLE:
    case HB_BIG:
        take_after = 0;
        break;
    case HB_STATUS:
        take_after = a.arg >= 200 && a.arg < 300 ? 0 : HIDS_NEVER;
        break;
    case HB_FAIL:
        fail = rng_next(&w->rng) % 100 < a.arg;
        take_after = fail ? HIDS_NEVER : 0;
        break;
    case HB_FLAKY:
        take_after = a.arg;
        break;
    default:
        break;
    }
    struct hids_arrival arr = {0};
    if (id.len) {
        hids_arrive(&w->srv->ids, id, HIDS_ACCEPTED, take_after, now_us, &arr);
    } else {
        hstats_inc(&st->c[HS_NO_ID]);
        arr.taken = take_after == 0 || a.b == HB_FLAKY; /* without an id, /flaky/ cannot count */
    }

    char extra[600];
    switch (a.b) {
    case HB_OK:
        reply_simple(c, &rp, 200, "ok\n");
        break;
    case HB_SLOW:
        c->held = (struct hheld){arr.ref, rp.t_recv, rp.keep_alive, rp.http10};
        c->state = HC_SLOW;
        ring_timer_arm_in(&w->ring, &c->act, (int64_t)a.arg * MS);
        return true;
    case HB_STATUS:
        rp.code = (int)a.arg;
        /* 204 and 304 carry no body */
        if (a.arg != 204 && a.arg != 304) {
            rp.body = SLICE_LIT("status\n");
        }
        conn_reply(c, &rp);
        break;
    case HB_FAIL:
        reply_simple(c, &rp, fail ? 500 : 200, fail ? "failed\n" : "ok\n");
        break;
    case HB_FLAKY:
        reply_simple(c, &rp, arr.taken ? 200 : 500, arr.taken ? "ok\n" : "flaky\n");
        break;
    case HB_TIMEOUT:
        c->state = HC_HANG;
        return true;
    case HB_RESET:
        c->state = HC_DRAIN;
        c->after = HC_AFTER_RESET;
        return true;
    case HB_DROP:
        c->state = HC_DRAIN;
        c->after = HC_AFTER_CLOSE;
        return true;
    case HB_DUP:
        reply_simple(c, &rp, 500, "recorded, failing anyway\n");
        break;
    case HB_RETRY_AFTER: {
        char *p = PUT_LIT(extra, "Retry-After: ");
        p = put_u64(p, a.arg);
        p = PUT_LIT(p, "\r\n");
        rp.extra = slice_of(extra, (size_t)(p - extra));
        reply_simple(c, &rp, 429, "slow down\n");
        break;
    }
    case HB_GONE:
        reply_simple(c, &rp, 410, "gone\n");
        break;
    case HB_TRICKLE:
        c->trickle_from = c->wlen;
        c->trickle_ns = (a.arg ? (int64_t)a.arg : cfg->trickle_ms) * MS;
        c->held = (struct hheld){arr.ref, rp.t_recv, rp.keep_alive, rp.http10};
        reply_simple(c, &rp, 200, "trickled\n");
        c->state = HC_TRICKLE;
        return true;
    case HB_BIG:
        c->tail = w->srv->big;
        c->tail_len = a.arg && a.arg < w->srv->big_len ? a.arg : w->srv->big_len;
        c->tail_sent = 0;
        rp.code = 200;
        rp.tail_len = c->tail_len;
        conn_reply(c, &rp);
        break;
    case HB_REDIRECT: {
        size_t n = a.rest.len <= 400 ? a.rest.len : 0;
        char *p = PUT_LIT(extra, "Location: /ok");
        p = put_lit(p, (const char *)a.rest.p, n);
        if (n == 0) {
            *p++ = '/';
        }
        p = PUT_LIT(p, "\r\n");
        rp.extra = slice_of(extra, (size_t)(p - extra));
        reply_simple(c, &rp, 302, "redirect\n");
        break;
    }
    default:
        reply_simple(c, &rp, 404, "no such behaviour\n");
        break;
    }
out:
    if (!rp.keep_alive && c->state == HC_ACTIVE) {
        c->state = HC_DRAIN;
        c->after = HC_AFTER_CLOSE;
    }
    return true;
}

/* ======== connection I/O ==================================================================== */

static void conn_free(struct hconn *c)
{
    struct hworker *w = c->w;
    /* give back the pages a big request touched; small ones stay warm for the next user */
    if (c->rhigh > (256 << 10)) {
        size_t pg = (size_t)sysconf(_SC_PAGESIZE);
        uintptr_t a = ((uintptr_t)c->rbuf + pg - 1) & ~(uintptr_t)(pg - 1);
        uintptr_t e = ((uintptr_t)c->rbuf + c->rhigh) & ~(uintptr_t)(pg - 1);
        if (e > a) {
            madvise((void *)a, e - a, MADV_DONTNEED);
        }
    }
    c->state = HC_FREE;
    c->next_free = w->free_list;
    w->free_list = c;
    w->open--;
}

static void conn_maybe_free(struct hconn *c)
{
    if (c->state == HC_CLOSING && !c->rx.inflight && !c->tx.inflight) {
        conn_free(c);
    }
}

static void conn_close(struct hconn *c, enum hc_after how)
{
    struct hworker *w = c->w;
    if (c->state == HC_CLOSING || c->state == HC_FREE) {
        return;
    }
    ring_timer_cancel(&w->ring, &c->idle);
    ring_timer_cancel(&w->ring, &c->act);
    if (how == HC_AFTER_RESET) {
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    if ((c->rx.inflight || c->tx.inflight) && ring_cancel_fd(&w->ring, c->fd) < 0) {
        shutdown(c->fd, SHUT_RDWR); /* no SQE for the cancel: wake the ops up instead */
    }
    ring_close(&w->ring, c->fd);
    htls_end(&c->tls); /* the kernel only ever holds cin and cout, never the session's memory */
    c->fd = -1;
    c->state = HC_CLOSING;
    hstats_inc(&w->stats.c[HS_CONN_CLOSED]);
    conn_maybe_free(c);
}

/* conn_out_iov points c->iov at the plaintext to write next (the output buffer, then a /big/
 * body, and a /trickle/ answer one byte at a time) and returns how many pieces: 0, 1 or 2. */
static size_t conn_out_iov(struct hconn *c)
{
    size_t end = c->wlen;
    if (c->trickle_from != HC_NONE) {
        if (c->wsent >= c->trickle_from) {
            if (c->trickle_wait || c->wsent == c->wlen) {
                return 0;
            }
            end = c->wsent + 1;
        } else {
            end = c->trickle_from;
        }
    }
    size_t n = 0;
    if (c->wsent < end) {
        c->iov[n++] = (struct iovec){c->wbuf + c->wsent, end - c->wsent};
    }
    if (c->tail_sent < c->tail_len && (n == 0 || end == c->wlen)) {
        c->iov[n++] = (struct iovec){(void *)(c->tail + c->tail_sent), c->tail_len - c->tail_sent};
    }
    return n;
}

/* conn_tls_flush sends the ciphertext waiting to leave; when none is, it encrypts the next
 * plaintext (at most HC_TLS_BATCH) first. The plaintext is credited to wsent/tail_sent only
 * once all of its ciphertext has left (conn_tls_sent), so latency, /trickle/ pacing and the
 * drain rules see the same progress as on a plain connection. */
static void conn_tls_flush(struct hconn *c)
{
    if (c->cout_sent == c->cout_len) {
        c->cout_len = c->cout_sent = 0;
        if (c->tls_pt == 0 && !c->tls_dead && htls_out_pending(&c->tls) == 0) {
            size_t n = conn_out_iov(c);
            if (n && htls_write(&c->tls, &c->tls_pt, c->iov, n, HC_TLS_BATCH) < 0) {
                conn_close(c, HC_AFTER_CLOSE);
                return;
            }
        }
        c->cout_len = htls_take_out(&c->tls, c->cout, HC_TLS_OUT);
    }
    if (c->cout_sent < c->cout_len && ring_send(&c->w->ring, &c->tx, c->fd, c->cout + c->cout_sent,
                                                c->cout_len - c->cout_sent, 0) < 0) {
        conn_close(c, HC_AFTER_CLOSE);
    }
}

/* conn_tls_sent takes n ciphertext bytes sent and returns the plaintext bytes now wholly
 * sent (0 until the batch's last record has left). */
static size_t conn_tls_sent(struct hconn *c, size_t n)
{
    c->cout_sent += n;
    if (c->cout_sent < c->cout_len || htls_out_pending(&c->tls) != 0) {
        return 0;
    }
    size_t pt = c->tls_pt;
    c->tls_pt = 0;
    return pt;
}

/* conn_flush starts a send of what is queued, unless one is in flight. */
static void conn_flush(struct hconn *c)
{
    if (c->tx.inflight || c->fd < 0) {
        return;
    }
    if (c->tls.ssl) {
        conn_tls_flush(c);
        return;
    }
    struct ring *r = &c->w->ring;
    int rc = 0;
    size_t n = conn_out_iov(c);
    if (n == 2) {
        c->msg = (struct msghdr){.msg_iov = c->iov, .msg_iovlen = 2};
        rc = ring_sendmsg(r, &c->tx, c->fd, &c->msg, 0);
    } else if (n == 1) {
        rc = ring_send(r, &c->tx, c->fd, c->iov[0].iov_base, c->iov[0].iov_len, 0);
    }
    if (rc < 0) {
        conn_close(c, HC_AFTER_CLOSE);
    }
}

/* conn_compact moves the unprocessed input to the front of the input buffer and returns the
 * room after it. */
static size_t conn_compact(struct hconn *c)
{
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    return c->rcap - c->rlen;
}

/* conn_tls_fail ends a session that hit a fatal error: nothing more can be encrypted, so the
 * answers not yet sent are forgotten; the alert BoringSSL queued leaves, then the connection
 * closes like any other (HC_DRAIN). */
static void conn_tls_fail(struct hconn *c)
{
    hstats_inc(&c->w->stats.c[HS_TLS_FAILED]);
    c->tls_dead = true;
    c->tls_pt = 0;
    c->wlen = c->wsent = 0;
    c->tail = NULL;
    c->tail_len = c->tail_sent = 0;
    c->trickle_from = HC_NONE;
    c->npend = 0;
    c->rpos = c->rlen = c->need = 0;
    ring_timer_cancel(&c->w->ring, &c->act);
    c->state = HC_DRAIN;
    c->after = HC_AFTER_CLOSE;
}

/* conn_tls_input decrypts what the session holds into the input buffer's room (advancing the
 * handshake first). Returns true when that changed something: new plaintext, the peer's
 * close_notify, or a fatal error (c->state is then HC_DRAIN). */
static bool conn_tls_input(struct hconn *c)
{
    if (c->tls_dead || c->tls_want_in) {
        return false;
    }
    size_t room = conn_compact(c);
    if (room == 0) {
        return false; /* decrypted once processing makes room */
    }
    struct hstats *st = &c->w->stats;
    bool was = htls_established(&c->tls);
    size_t n;
    enum htls_status rs = htls_read(&c->tls, c->rbuf + c->rlen, &n, room);
    if (!was && htls_established(&c->tls)) {
        hstats_inc(&st->c[HS_TLS_HANDSHAKES]);
        if (htls_resumed(&c->tls)) {
            hstats_inc(&st->c[HS_TLS_RESUMED]);
        }
    }
    c->rlen += n;
    if (c->rlen > c->rhigh) {
        c->rhigh = c->rlen;
    }
    switch (rs) {
    case HTLS_OK:
        return n > 0;
    case HTLS_AGAIN:
        c->tls_want_in = true;
        return n > 0;
    case HTLS_CLOSED:
        c->tls_want_in = true;
        c->peer_eof = true; /* a clean end of the stream: like a FIN */
        return true;
    default:
        conn_tls_fail(c);
        return true;
    }
}

/* conn_tls_feed hands the session n ciphertext bytes received into cin and decrypts. */
static void conn_tls_feed(struct hconn *c, size_t n)
{
    if (c->tls_dead) {
        return;
    }
    if (htls_feed(&c->tls, c->cin, n) < 0) {
        conn_tls_fail(c);
        return;
    }
    c->tls_want_in = false;
    conn_tls_input(c);
}

/* conn_arm_recv keeps one recv pending while there is room and a reason to read. */
static void conn_arm_recv(struct hconn *c)
{
    if (c->rx.inflight || c->peer_eof || c->fd < 0) {
        return;
    }
    uint8_t *dst;
    size_t room;
    if (c->state == HC_LINGER || c->state == HC_HANG) {
        /* nothing more will be answered: read only to see the peer leave, dropping the bytes */
        dst = c->rbuf;
        room = c->rcap;
    } else if (c->tls.ssl) {
        /* ciphertext is only read once the session has consumed what it was given and there
         * is room for its plaintext: the input stays bounded as on a plain connection */
        if (c->tls_dead || !c->tls_want_in || conn_compact(c) == 0) {
            return;
        }
        dst = c->cin;
        room = HC_TLS_IN;
    } else {
        room = conn_compact(c);
        if (room == 0) {
            return; /* full: processing must consume first */
        }
        dst = c->rbuf + c->rlen;
    }
    if (ring_recv(&c->w->ring, &c->rx, c->fd, dst, room, 0) < 0) {
        conn_close(c, HC_AFTER_CLOSE);
    }
}

/* conn_process takes the whole requests in the input buffer, in order, while there is room to
 * answer them and nothing holds the connection. */
static void conn_process(struct hconn *c)
{
    struct hworker *w = c->w;
    const struct hconfig *cfg = w->cfg;
    const struct httpreq_limits lim = {.max_head = cfg->max_head, .max_body = cfg->max_body};
    while (c->state == HC_ACTIVE) {
        size_t avail = c->rlen - c->rpos;
        if (avail == 0 || (c->need && avail < c->need)) {
            break;
        }
        if (c->wcap - c->wlen < HC_RESP_RESERVE || c->npend == HC_MAX_PEND || c->tail_len) {
            break; /* answer room runs short: wait for the send to drain */
        }
        struct httpreq req;
        enum httpreq_status st =
            httpreq_parse(&req, w->hdrs, cfg->max_headers, c->rbuf + c->rpos, avail, &lim);
        if (st == HTTPREQ_AGAIN) {
            /* The limits make every acceptable request fit the buffer; only a chunked body
             * whose framing outgrows it can fill it without completing. */
            if (req.need > c->rcap || (c->rpos == 0 && c->rlen == c->rcap)) {
                conn_refuse(c, HTTPREQ_BODY_TOO_LARGE);
                break;
            }
            if (req.head_len && req.expect_continue && !c->continue_sent) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                memcpy(c->wbuf + c->wlen, cont, sizeof(cont) - 1);
                c->wlen += sizeof(cont) - 1;
                c->continue_sent = true;
            }
            c->need = req.need;
            break;
        }
        if (st != HTTPREQ_OK) {
            conn_refuse(c, st);
            break;
        }
        if (!handle_request(c, &req)) {
            break;
        }
        c->rpos += req.len;
        c->need = 0;
        c->continue_sent = false;
    }
}

/* ======== the state machine ================================================================= */

static void conn_do_active(struct hconn *c)
{
    /* with TLS, processing makes room for more plaintext the session already holds */
    do {
        conn_process(c);
        if (c->state != HC_ACTIVE) {
            conn_step(c);
            return;
        }
    } while (c->tls.ssl && conn_tls_input(c));
    conn_flush(c);
    conn_arm_recv(c);
    if (c->peer_eof && c->state == HC_ACTIVE && !c->tx.inflight && out_done(c)) {
        conn_close(c, HC_AFTER_CLOSE); /* the peer is gone and everything is answered */
    }
}

/* /slow/ and /timeout/: keep writing earlier answers and watch for the peer leaving. */
static void conn_do_wait(struct hconn *c)
{
    conn_flush(c);
    conn_arm_recv(c);
    if (c->peer_eof && c->state == HC_HANG) {
        conn_close(c, HC_AFTER_CLOSE);
    }
}

static void conn_do_trickle(struct hconn *c)
{
    if (c->trickle_from == HC_NONE) { /* the last byte went out */
        c->state = c->held.keep_alive ? HC_ACTIVE : HC_DRAIN;
        c->after = HC_AFTER_CLOSE;
        conn_step(c);
        return;
    }
    conn_flush(c);
    conn_arm_recv(c);
}

static void conn_do_drain(struct hconn *c)
{
    struct hworker *w = c->w;
    conn_flush(c);
    if (c->state != HC_DRAIN || c->tx.inflight || !out_done(c)) {
        return;
    }
    if (c->tls.ssl && !c->tls_dead && !c->tls_bye && c->after == HC_AFTER_CLOSE) {
        /* a clean TLS end: the peer sees close_notify, not a truncated stream */
        c->tls_bye = true;
        htls_close_notify(&c->tls);
        conn_flush(c);
        if (c->state != HC_DRAIN || c->tx.inflight) {
            return;
        }
    }
    if (c->after == HC_AFTER_RESET || c->peer_eof || w->cfg->linger_ms == 0) {
        conn_close(c, c->after);
        return;
    }
    /* A close with unread input makes the kernel send a RST, which can destroy the answer
     * before the peer reads it: shut our side, read until the peer closes, then close. */
    shutdown(c->fd, SHUT_WR);
    c->state = HC_LINGER;
    c->rpos = c->rlen = 0;
    ring_timer_arm_in(&w->ring, &c->act, w->cfg->linger_ms * MS);
    conn_arm_recv(c);
}

static void conn_do_linger(struct hconn *c)
{
    if (c->peer_eof) {
        conn_close(c, HC_AFTER_CLOSE);
        return;
    }
    conn_arm_recv(c);
}

/* conn_step moves c on after any event (bytes in, bytes out, a timer). */
static void conn_step(struct hconn *c)
{
    switch (c->state) {
    case HC_ACTIVE:
        conn_do_active(c);
        break;
    case HC_SLOW:
    case HC_HANG:
        conn_do_wait(c);
        break;
    case HC_TRICKLE:
        conn_do_trickle(c);
        break;
    case HC_DRAIN:
        conn_do_drain(c);
        break;
    case HC_LINGER:
        conn_do_linger(c);
        break;
    case HC_CLOSING:
        conn_maybe_free(c);
        break;
    default:
        break;
    }
}

/* ======== completions and timers ============================================================ */

static void handle_rx(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct hconn *c = container_of(op, struct hconn, rx);
    if (c->state == HC_CLOSING) {
        conn_maybe_free(c);
        return;
    }
    if (res < 0) {
        conn_close(c, HC_AFTER_CLOSE);
        return;
    }
    if (res == 0) {
        c->peer_eof = true;
    } else if (c->state != HC_LINGER && c->state != HC_HANG) {
        if (c->tls.ssl) {
            conn_tls_feed(c, (size_t)res);
        } else {
            c->rlen += (size_t)res;
            if (c->rlen > c->rhigh) {
                c->rhigh = c->rlen;
            }
        }
        c->last_rx_ns = ring_now_ns(r);
    }
    conn_step(c);
}

static void handle_tx(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct hconn *c = container_of(op, struct hconn, tx);
    if (c->state == HC_CLOSING) {
        conn_maybe_free(c);
        return;
    }
    if (res < 0) {
        conn_close(c, HC_AFTER_CLOSE);
        return;
    }
    size_t n = (size_t)res;
    if (c->tls.ssl) {
        n = conn_tls_sent(c, n);
        if (n == 0) {
            conn_step(c); /* handshake records, or a batch not yet wholly sent */
            return;
        }
    }
    size_t a = c->wlen - c->wsent < n ? c->wlen - c->wsent : n;
    c->wsent += a;
    c->tail_sent += n - a;

    /* every answer whose last byte is now written has its latency */
    size_t sent = c->wsent + c->tail_sent;
    while (c->npend && c->pend[c->pend_head].end <= sent) {
        if (c->pend[c->pend_head].t_recv >= 0) {
            hstats_latency(&c->w->stats, ring_now_ns(r) - c->pend[c->pend_head].t_recv);
        }
        c->pend_head = (c->pend_head + 1) % HC_MAX_PEND;
        c->npend--;
    }
    if (c->trickle_from != HC_NONE && c->wsent > c->trickle_from) {
        if (c->wsent < c->wlen) {
            c->trickle_wait = true;
            ring_timer_arm_in(r, &c->act, c->trickle_ns);
        } else {
            c->trickle_from = HC_NONE;
        }
    }
    if (wdrained(c)) {
        c->wlen = c->wsent = 0;
        c->tail = NULL;
        c->tail_len = c->tail_sent = 0;
    }
    conn_step(c);
}

static void handle_act_timer(struct ring *r, struct ring_timer *t)
{
    struct hconn *c = container_of(t, struct hconn, act);
    switch (c->state) {
    case HC_SLOW: {
        struct reply rp = {
            .keep_alive = c->held.keep_alive,
            .http10 = c->held.http10,
            .count = true,
            .t_recv = c->held.t_recv,
        };
        deliver(c, &c->held.ref);
        reply_simple(c, &rp, 200, "ok\n");
        c->state = rp.keep_alive ? HC_ACTIVE : HC_DRAIN;
        c->after = HC_AFTER_CLOSE;
        break;
    }
    case HC_TRICKLE:
        c->trickle_wait = false;
        break;
    case HC_LINGER:
        conn_close(c, HC_AFTER_CLOSE);
        return;
    default:
        return;
    }
    conn_step(c);
}

static void handle_idle_timer(struct ring *r, struct ring_timer *t)
{
    struct hconn *c = container_of(t, struct hconn, idle);
    int64_t idle = c->w->cfg->idle_ms * MS;
    int64_t due = c->last_rx_ns + idle;
    if (c->state == HC_ACTIVE && !c->tx.inflight && out_done(c) && ring_now_ns(r) >= due) {
        conn_close(c, HC_AFTER_CLOSE);
        return;
    }
    if (c->state != HC_CLOSING && c->state != HC_FREE) {
        ring_timer_arm(r, t, due > ring_now_ns(r) ? due : ring_now_ns(r) + idle);
    }
}

static void conn_open(struct hworker *w, int fd, struct htls_ctx *tls)
{
    struct hconn *c = w->free_list;
    if (!c) {
        close(fd);
        hstats_inc(&w->stats.c[HS_CONN_REJECTED]);
        return;
    }
    if (tls && htls_start(&c->tls, tls) < 0) {
        close(fd);
        hstats_inc(&w->stats.c[HS_TLS_FAILED]);
        return;
    }
    w->free_list = c->next_free;
    w->open++;
    hstats_inc(&w->stats.c[HS_CONN_ACCEPTED]);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* /trickle/ byte by byte */
    c->fd = fd;
    c->state = HC_ACTIVE;
    c->rpos = c->rlen = c->rhigh = c->need = 0;
    c->wlen = c->wsent = 0;
    c->tail = NULL;
    c->tail_len = c->tail_sent = 0;
    c->trickle_from = HC_NONE;
    c->trickle_wait = false;
    c->peer_eof = false;
    c->continue_sent = false;
    c->pend_head = c->npend = 0;
    c->cout_len = c->cout_sent = c->tls_pt = 0;
    c->tls_want_in = true; /* a new session waits for the ClientHello */
    c->tls_dead = c->tls_bye = false;
    c->last_rx_ns = ring_now_ns(&w->ring);
    if (w->cfg->idle_ms) {
        ring_timer_arm_in(&w->ring, &c->idle, w->cfg->idle_ms * MS);
    }
    conn_arm_recv(c);
}

static void handle_accept(struct ring *r, struct op *op, int res, uint32_t flags);

static void listener_arm(struct hlistener *l)
{
    if (l->w->stopping) {
        return;
    }
    if (ring_accept_multishot(&l->w->ring, &l->op, l->fd) < 0) {
        ring_timer_arm_in(&l->w->ring, &l->retry, 10 * MS);
    }
}

static void handle_accept(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct hlistener *l = container_of(op, struct hlistener, op);
    if (res >= 0) {
        conn_open(l->w, res, l->tls);
    }
    if (!(flags & IORING_CQE_F_MORE)) {
        /* the multishot ended (an error such as EMFILE, or the kernel's choice): re-arm, after
         * a pause when it failed so a persistent error cannot spin the loop */
        if (res < 0) {
            ring_timer_arm_in(r, &l->retry, 10 * MS);
        } else {
            listener_arm(l);
        }
    }
}

static void handle_accept_retry(struct ring *r, struct ring_timer *t)
{
    listener_arm(container_of(t, struct hlistener, retry));
}

static void handle_wake(struct ring *r, void *arg)
{
    struct hworker *w = arg;
    w->stopping = true;
    ring_stop(r);
}

/* ======== workers =========================================================================== */

static int worker_setup(struct hworker *w)
{
    const struct hconfig *cfg = w->cfg;
    size_t nconns = cfg->max_conns;
    struct ring_opts ro = {
        .entries = 1024,
        .cq_entries = 8192,
        .max_timers = (uint32_t)(2 * nconns + HCONFIG_MAX_LISTEN + 8),
    };
    int rc = ring_init(&w->ring, &ro);
    if (rc < 0) {
        return rc;
    }
    w->ring_ok = true;
    rc = ring_wake_init(&w->ring, handle_wake, w);
    if (rc < 0) {
        return rc;
    }
    size_t rcap = cfg->max_head + cfg->max_body + HC_RBUF_SLACK;
    size_t tls_bytes = cfg->any_tls ? HC_TLS_IN + HC_TLS_OUT : 0;
    size_t per = (rcap + cfg->wbuf_bytes + tls_bytes + 63) & ~(size_t)63;
    w->slab_len = per * nconns;
    /* One reservation for every connection's buffers; pages are only backed once touched. */
    w->slab = mmap(NULL, w->slab_len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (w->slab == MAP_FAILED) {
        w->slab = NULL;
        return -errno;
    }
    w->conns = calloc(nconns, sizeof(*w->conns));
    w->hdrs = calloc(cfg->max_headers, sizeof(*w->hdrs));
    w->scratch_cap = cfg->wbuf_bytes - HC_RESP_RESERVE;
    w->scratch = malloc(w->scratch_cap);
    if (!w->conns || !w->hdrs || !w->scratch) {
        return -ENOMEM;
    }
    for (size_t i = nconns; i-- > 0;) {
        struct hconn *c = &w->conns[i];
        c->w = w;
        c->fd = -1;
        c->state = HC_FREE;
        c->rx.cb = handle_rx;
        c->tx.cb = handle_tx;
        ring_timer_init(&c->idle, handle_idle_timer);
        ring_timer_init(&c->act, handle_act_timer);
        c->rbuf = w->slab + i * per;
        c->rcap = rcap;
        c->wbuf = c->rbuf + rcap;
        c->wcap = cfg->wbuf_bytes;
        if (tls_bytes) {
            c->cin = c->wbuf + c->wcap;
            c->cout = c->cin + HC_TLS_IN;
        }
        c->next_free = w->free_list;
        w->free_list = c;
    }
    buf_init(&w->vr.plain, cfg->max_body + 4096);
    uint64_t seed = w->srv->cfg->seed ^ ((uint64_t)(w->index + 1) * 0x9e3779b97f4a7c15ULL);
    w->rng = splitmix64(&seed) | 1;
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct hlistener *l = &w->listeners[i];
        l->op.cb = handle_accept;
        l->tls = w->srv->tls[i];
        ring_timer_init(&l->retry, handle_accept_retry);
        l->w = w;
        if (ring_accept_multishot(&w->ring, &l->op, l->fd) < 0) {
            return -EBUSY;
        }
    }
    /* submit the accepts now, so the workers are accepting when we report ready */
    rc = io_uring_submit(&w->ring.uring);
    return rc < 0 ? rc : 0;
}

static void worker_teardown(struct hworker *w)
{
    if (w->conns) {
        for (size_t i = 0; i < w->cfg->max_conns; i++) {
            struct hconn *c = &w->conns[i];
            if (c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
            }
            htls_end(&c->tls);
        }
    }
    /* the ring goes first: once it is gone the kernel no longer writes into the buffers.
     * Under the lock: hserver_stop may be writing to its wake-up eventfd right now. */
    pthread_mutex_lock(&w->srv->lock);
    if (w->ring_ok) {
        ring_cleanup(&w->ring);
        w->ring_ok = false;
    }
    pthread_mutex_unlock(&w->srv->lock);
    buf_free(&w->vr.plain);
    free(w->conns);
    free(w->hdrs);
    free(w->scratch);
    if (w->slab) {
        munmap(w->slab, w->slab_len);
    }
    w->conns = NULL;
    w->hdrs = NULL;
    w->scratch = NULL;
    w->slab = NULL;
}

static void *worker_main(void *arg)
{
    struct hworker *w = arg;
    struct hserver *s = w->srv;
    int rc = worker_setup(w);
    pthread_mutex_lock(&s->lock);
    if (rc < 0 && s->start_rc == 0) {
        s->start_rc = rc;
    }
    s->ready++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (rc == 0) {
        rc = ring_run(&w->ring);
        if (rc < 0) {
            pthread_mutex_lock(&s->lock);
            s->fatal_rc = rc;
            pthread_mutex_unlock(&s->lock);
            fprintf(stderr, "hookring-harness: worker %u: %s\n", w->index, strerror(-rc));
            kill(getpid(), SIGTERM); /* main's sigwait turns this into an orderly exit */
        }
    }
    worker_teardown(w);
    return NULL;
}

/* ======== the server ======================================================================== */

static int listen_socket(const struct sockaddr *addr, socklen_t len, char *err, size_t errlen)
{
    char text[80];
    hconfig_format_addr(addr, text, sizeof(text));
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "socket for %s: %s", text, strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (addr->sa_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, addr, len) < 0 || listen(fd, 4096) < 0) {
        int e = errno;
        snprintf(err, errlen, "listen on %s: %s", text, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

static void fill_big(struct hserver *s)
{
    /* printable, line-structured, and not all one byte, so a client that mangles it shows */
    for (size_t i = 0; i < s->big_len; i++) {
        s->big[i] = (i % 64 == 63) ? '\n' : (uint8_t)('a' + (i / 64) % 26);
    }
}

int hserver_start(struct hserver *s, const struct hconfig *cfg, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    status_table_init();
    unsigned n = cfg->threads;
    s->nworkers = n;
    int rc = hids_init(&s->ids, cfg->max_ids);
    if (rc < 0) {
        snprintf(err, errlen, "id table: %s", strerror(-rc));
        return rc;
    }
    s->big_len = cfg->big_bytes;
    s->big = malloc(s->big_len);
    s->workers = calloc(n, sizeof(*s->workers));
    s->blocks = calloc(n, sizeof(*s->blocks));
    s->fds = malloc(sizeof(int) * n * cfg->nlisten);
    if (!s->big || !s->workers || !s->blocks || !s->fds) {
        snprintf(err, errlen, "out of memory");
        hserver_stop(s);
        return -ENOMEM;
    }
    fill_big(s);
    for (size_t i = 0; i < (size_t)n * cfg->nlisten; i++) {
        s->fds[i] = -1;
    }

    for (size_t l = 0; l < cfg->nlisten; l++) {
        if (cfg->listen[l].tls_cert) {
            s->tls[l] = htls_ctx_new(cfg->listen[l].tls_cert, cfg->listen[l].tls_key, err, errlen);
            if (!s->tls[l]) {
                hserver_stop(s);
                return -EINVAL;
            }
        }
    }

    /* The first thread's socket binds what was asked (port 0: the kernel picks); the others
     * bind the port it got, joining the same SO_REUSEPORT group. */
    for (size_t l = 0; l < cfg->nlisten; l++) {
        struct sockaddr_storage a = cfg->listen[l].addr;
        socklen_t alen = cfg->listen[l].addr_len;
        for (unsigned t = 0; t < n; t++) {
            int fd = listen_socket((struct sockaddr *)&a, alen, err, errlen);
            if (fd < 0) {
                hserver_stop(s);
                return fd;
            }
            s->fds[t * cfg->nlisten + l] = fd;
            if (t == 0) {
                socklen_t bl = sizeof(a);
                getsockname(fd, (struct sockaddr *)&a, &bl);
                s->bound[l] = a;
            }
        }
    }

    for (unsigned t = 0; t < n; t++) {
        struct hworker *w = &s->workers[t];
        w->srv = s;
        w->cfg = cfg;
        w->index = t;
        w->nlisteners = cfg->nlisten;
        for (size_t l = 0; l < cfg->nlisten; l++) {
            w->listeners[l].fd = s->fds[t * cfg->nlisten + l];
        }
        s->blocks[t] = &w->stats;
    }
    hstats_set_init(&s->stats, s->blocks, n, cfg, &s->ids);

    for (unsigned t = 0; t < n; t++) {
        struct hworker *w = &s->workers[t];
        rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, errlen, "thread: %s", strerror(rc));
            hserver_stop(s);
            return -rc;
        }
        w->started = true;
    }
    pthread_mutex_lock(&s->lock);
    while (s->ready < n) {
        pthread_cond_wait(&s->cond, &s->lock);
    }
    rc = s->start_rc;
    pthread_mutex_unlock(&s->lock);
    if (rc < 0) {
        snprintf(err, errlen, "worker start-up: %s", strerror(-rc));
        hserver_stop(s);
        return rc;
    }
    return 0;
}

void hserver_stop_workers(struct hserver *s)
{
    /* a worker still starting could miss its wake-up: let every started one finish first */
    unsigned started = 0;
    for (unsigned t = 0; s->workers && t < s->nworkers; t++) {
        started += s->workers[t].started;
    }
    pthread_mutex_lock(&s->lock);
    while (s->ready < started) {
        pthread_cond_wait(&s->cond, &s->lock);
    }
    for (unsigned t = 0; s->workers && t < s->nworkers; t++) {
        struct hworker *w = &s->workers[t];
        if (w->started && w->ring_ok && w->ring.wake_fd >= 0) {
            ring_wake(&w->ring);
        }
    }
    pthread_mutex_unlock(&s->lock);
    for (unsigned t = 0; s->workers && t < s->nworkers; t++) {
        struct hworker *w = &s->workers[t];
        if (w->started) {
            pthread_join(w->thread, NULL);
            w->started = false;
        }
    }
}

void hserver_stop(struct hserver *s)
{
    hserver_stop_workers(s);
    for (size_t i = 0; s->fds && i < (size_t)s->nworkers * s->cfg->nlisten; i++) {
        if (s->fds[i] >= 0) {
            close(s->fds[i]);
        }
    }
    for (size_t l = 0; l < HCONFIG_MAX_LISTEN; l++) {
        htls_ctx_free(s->tls[l]);
        s->tls[l] = NULL;
    }
    free(s->fds);
    free(s->workers);
    free(s->blocks);
    free(s->big);
    hids_free(&s->ids);
    s->fds = NULL;
    s->workers = NULL;
    s->blocks = NULL;
    s->big = NULL;
}

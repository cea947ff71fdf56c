/* dns.c: c-ares on the ring (socket polls, timers) and the answer cache in front of it. */
#include "dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* An address as the cache keeps it (an answer's port is the query's). */
struct dns_ip {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
};

enum entry_state {
    ENTRY_FREE = 0,
    ENTRY_PENDING, /* in the table and the pending FIFO; c-ares is resolving it */
    ENTRY_DONE,    /* in the table and the LRU list; answered (fresh until expire_ns) */
    ENTRY_ORPHAN,  /* timed out: out of the table, kept until c-ares calls back with it */
};

struct dns_entry {
    struct dns *d;
    struct dns_entry *hnext;       /* hash chain */
    struct dns_entry *prev, *next; /* LRU list (DONE), pending FIFO (PENDING), free list */
    struct dns_query *wait_head, *wait_tail;
    int64_t deadline_ns; /* PENDING: when its waiters get DNS_TIMEOUT */
    int64_t expire_ns;   /* DONE: fresh until then */
    uint32_t hash;
    uint8_t state;  /* enum entry_state */
    uint8_t status; /* enum dns_status, DONE */
    uint8_t naddrs;
    bool in_ares;    /* c-ares still holds it as a callback argument */
    bool queued;     /* PENDING, waiting for a free upstream slot */
    bool completing; /* its waiters are being called back: not evictable, still fresh */
    struct dns_ip addrs[DNS_MAX_ADDRS];
    char host[DNS_HOST_MAX + 1]; /* lowercased, no trailing dot */
};

/* One of c-ares's sockets, watched by a one-shot poll. The record outlives the socket while the
 * kernel still holds the poll: c-ares closes the descriptor right after telling us, and the
 * number may come back at once for a new socket, so a closed record never touches its fd. */
struct dns_sock {
    struct op op;
    struct dns *d;
    struct dns_sock *next; /* d->socks, or d->dying once closed with the poll in flight */
    int fd;
    uint32_t want;   /* POLLIN / POLLOUT, as c-ares last asked */
    uint32_t armed;  /* the mask of the poll in flight */
    bool closed;     /* c-ares closed fd */
    bool cancelling; /* a cancel of the poll in flight was submitted */
    bool in_handler; /* ares_process_fd is running for it */
};

struct dns_override_addr {
    char host[DNS_HOST_MAX + 1];
    struct dns_ip ip;
};

static void dns_after_ares(struct dns *d);
static void dns_dispatch(struct dns *d);

/* ======== names, literals and results ======================================================= */

const char *dns_status_name(enum dns_status s)
{
    switch (s) {
    case DNS_OK:
        return "ok";
    case DNS_NXDOMAIN:
        return "nxdomain";
    case DNS_NODATA:
        return "nodata";
    case DNS_TIMEOUT:
        return "timeout";
    case DNS_SERVFAIL:
        return "servfail";
    case DNS_REFUSED:
        return "refused";
    case DNS_BADNAME:
        return "badname";
    case DNS_BUSY:
        return "busy";
    case DNS_CANCELLED:
        return "cancelled";
    case DNS_ERROR:
        return "error";
    default:
        return "unknown";
    }
}

/* host_key writes host's cache key (lowercased, without a trailing dot) into key. Returns false
 * when host is not a valid name: empty, too long, an empty or over-long label, or a byte other
 * than a letter, digit, '-' or '_'. */
static bool host_key(const char *host, char key[DNS_HOST_MAX + 1])
{
    size_t len = strlen(host);
    if (len > 0 && host[len - 1] == '.') {
        len--;
    }
    if (len == 0 || len > DNS_HOST_MAX) {
        return false;
    }
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label++;
        } else if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
            label++;
        } else {
            return false;
        }
        if (label > 63) {
            return false;
        }
        key[i] = c;
    }
    key[len] = '\0';
    return label > 0;
}

/* parse_literal reads host as an address the way url_parse does (inet_aton for IPv4, so
 * "127.1" is 127.0.0.1; inet_pton for IPv6). */
static bool parse_literal(const char *host, struct dns_ip *ip)
{
    memset(ip, 0, sizeof(*ip));
    if (strchr(host, ':')) {
        if (inet_pton(AF_INET6, host, ip->addr) == 1) {
            ip->family = AF_INET6;
            return true;
        }
        return false;
    }
    struct in_addr a;
    if (inet_aton(host, &a)) {
        ip->family = AF_INET;
        memcpy(ip->addr, &a, 4);
        return true;
    }
    return false;
}

static void ip_to_sockaddr(const struct dns_ip *ip, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (ip->family == AF_INET) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
        memcpy(&sin.sin_addr, ip->addr, 4);
        memcpy(ss, &sin, sizeof(sin));
    } else {
        struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        memcpy(&sin6.sin6_addr, ip->addr, 16);
        memcpy(ss, &sin6, sizeof(sin6));
    }
}

static bool ip_from_sockaddr(const struct sockaddr *sa, struct dns_ip *ip)
{
    memset(ip, 0, sizeof(*ip));
    if (sa->sa_family == AF_INET) {
        ip->family = AF_INET;
        memcpy(ip->addr, (const char *)sa + offsetof(struct sockaddr_in, sin_addr), 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        ip->family = AF_INET6;
        memcpy(ip->addr, (const char *)sa + offsetof(struct sockaddr_in6, sin6_addr), 16);
        return true;
    }
    return false;
}

/* add_ip appends ip to the set unless it is there already or the set is full. */
static void add_ip(struct dns_ip *set, uint8_t *n, const struct dns_ip *ip)
{
    for (uint8_t i = 0; i < *n; i++) {
        if (set[i].family == ip->family && memcmp(set[i].addr, ip->addr, 16) == 0) {
            return;
        }
    }
    if (*n < DNS_MAX_ADDRS) {
        set[(*n)++] = *ip;
    }
}

static void result_set(struct dns_result *res, enum dns_status st, const struct dns_ip *ips,
                       uint8_t n, uint16_t port, uint32_t ttl_s)
{
    res->status = st;
    res->ttl_s = ttl_s;
    res->naddrs = st == DNS_OK ? n : 0;
    for (uint32_t i = 0; i < res->naddrs; i++) {
        ip_to_sockaddr(&ips[i], port, &res->addrs[i]);
    }
}

bool dns_result_permitted(const struct dns_result *r, const struct netguard *g, uint32_t *bad,
                          enum addr_class *cls)
{
    if (r->status != DNS_OK || r->naddrs == 0) {
        return false;
    }
    for (uint32_t i = 0; i < r->naddrs; i++) {
        enum addr_class c;
        if (!netguard_permits(g, (const struct sockaddr *)&r->addrs[i], &c)) {
            if (bad) {
                *bad = i;
            }
            if (cls) {
                *cls = c;
            }
            return false;
        }
    }
    return true;
}

/* ======== the pool: hash table, LRU list, pending FIFO ====================================== */

static uint32_t host_hash(const char *key)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = key; *p; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    return h;
}

static struct dns_entry *table_find(struct dns *d, const char *key, uint32_t h)
{
    for (struct dns_entry *e = d->buckets[h & (d->nbuckets - 1)]; e; e = e->hnext) {
        if (e->hash == h && strcmp(e->host, key) == 0) {
            return e;
        }
    }
    return NULL;
}

static void table_insert(struct dns *d, struct dns_entry *e)
{
    struct dns_entry **b = &d->buckets[e->hash & (d->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
}

static void table_remove(struct dns *d, struct dns_entry *e)
{
    struct dns_entry **p = &d->buckets[e->hash & (d->nbuckets - 1)];
    while (*p && *p != e) {
        p = &(*p)->hnext;
    }
    if (*p) {
        *p = e->hnext;
    }
    e->hnext = NULL;
}

/* The LRU list and the pending FIFO are both head/tail lists through prev/next; an entry is on
 * at most one of them (DONE: LRU, PENDING: FIFO). */
static void list_unlink(struct dns_entry **head, struct dns_entry **tail, struct dns_entry *e)
{
    if (e->prev) {
        e->prev->next = e->next;
    } else {
        *head = e->next;
    }
    if (e->next) {
        e->next->prev = e->prev;
    } else {
        *tail = e->prev;
    }
    e->prev = e->next = NULL;
}

static void list_push_front(struct dns_entry **head, struct dns_entry **tail, struct dns_entry *e)
{
    e->prev = NULL;
    e->next = *head;
    if (*head) {
        (*head)->prev = e;
    } else {
        *tail = e;
    }
    *head = e;
}

static void list_push_back(struct dns_entry **head, struct dns_entry **tail, struct dns_entry *e)
{
    e->next = NULL;
    e->prev = *tail;
    if (*tail) {
        (*tail)->next = e;
    } else {
        *head = e;
    }
    *tail = e;
}

static void entry_free(struct dns *d, struct dns_entry *e)
{
    e->state = ENTRY_FREE;
    e->prev = NULL;
    e->next = d->free_entries;
    d->free_entries = e;
}

/* entry_alloc takes a free entry, or evicts the least recently used answer that is not being
 * delivered. NULL when every entry is a resolution in flight. */
static struct dns_entry *entry_alloc(struct dns *d)
{
    struct dns_entry *e = d->free_entries;
    if (e) {
        d->free_entries = e->next;
    } else {
        for (e = d->lru_tail; e && e->completing; e = e->prev) {
        }
        if (!e) {
            return NULL;
        }
        list_unlink(&d->lru_head, &d->lru_tail, e);
        table_remove(d, e);
        d->stat_evictions++;
    }
    memset(e, 0, sizeof(*e));
    e->d = d;
    return e;
}

static void deadline_rearm(struct dns *d)
{
    if (d->pending_head) {
        ring_timer_arm(d->ring, &d->deadline_timer, d->pending_head->deadline_ns);
    } else {
        ring_timer_cancel(d->ring, &d->deadline_timer);
    }
}

static void pending_unlink(struct dns *d, struct dns_entry *e)
{
    bool was_head = d->pending_head == e;
    list_unlink(&d->pending_head, &d->pending_tail, e);
    if (was_head) {
        deadline_rearm(d);
    }
}

/* ======== waiters =========================================================================== */

static void waiter_add(struct dns_entry *e, struct dns_query *q)
{
    q->entry = e;
    q->next = NULL;
    q->prev = e->wait_tail;
    if (e->wait_tail) {
        e->wait_tail->next = q;
    } else {
        e->wait_head = q;
    }
    e->wait_tail = q;
}

static void waiter_remove(struct dns_entry *e, struct dns_query *q)
{
    if (q->prev) {
        q->prev->next = q->next;
    } else {
        e->wait_head = q->next;
    }
    if (q->next) {
        q->next->prev = q->prev;
    } else {
        e->wait_tail = q->prev;
    }
    q->prev = q->next = NULL;
    q->entry = NULL;
}

static uint32_t entry_ttl_left(const struct dns *d, const struct dns_entry *e)
{
    int64_t left = e->expire_ns - ring_now_ns(d->ring);
    return left > 0 ? (uint32_t)((left + 999999999) / 1000000000) : 0;
}

static void entry_answer(struct dns *d, struct dns_entry *e, struct dns_query *q)
{
    result_set(&q->res, (enum dns_status)e->status, e->addrs, e->naddrs, q->port,
               entry_ttl_left(d, e));
}

/* entry_call_back ends every waiter of e with e's answer, one at a time from the head: a
 * callback may cancel other waiters, or start queries of its own. */
static void entry_call_back(struct dns *d, struct dns_entry *e)
{
    e->completing = true;
    struct dns_query *q;
    while ((q = e->wait_head) != NULL) {
        waiter_remove(e, q);
        entry_answer(d, e, q);
        q->cb(d, q);
    }
    e->completing = false;
}

/* ======== resolution ======================================================================== */

static enum dns_status classify(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return DNS_OK;
    case ARES_ENOTFOUND:
        return DNS_NXDOMAIN;
    case ARES_ENODATA:
        return DNS_NODATA;
    case ARES_ETIMEOUT:
        return DNS_TIMEOUT;
    case ARES_ESERVFAIL:
    case ARES_EFORMERR:
    case ARES_ENOTIMP:
    case ARES_ECONNREFUSED: /* c-ares 1.18's word for "every server failed or refused" */
        return DNS_SERVFAIL;
    case ARES_EREFUSED:
        return DNS_REFUSED;
    case ARES_EBADNAME:
        return DNS_BADNAME;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return DNS_CANCELLED;
    default:
        return DNS_ERROR;
    }
}

/* entry_settle fills e from c-ares's answer: its addresses, its class and how long it stays
 * fresh (the smallest record TTL, capped; briefly for a negative answer; not at all for a
 * failure, which the next attempt should ask about again). */
static void entry_settle(struct dns *d, struct dns_entry *e, int status,
                         const struct ares_addrinfo *ai)
{
    enum dns_status st = classify(status);
    int64_t ttl_ns = 0;
    e->naddrs = 0;
    if (st == DNS_OK) {
        int64_t ttl = d->max_ttl_s;
        for (const struct ares_addrinfo_node *n = ai ? ai->nodes : NULL; n; n = n->ai_next) {
            struct dns_ip ip;
            if (!n->ai_addr || !ip_from_sockaddr(n->ai_addr, &ip)) {
                continue;
            }
            add_ip(e->addrs, &e->naddrs, &ip);
            if (n->ai_ttl < ttl) {
                ttl = n->ai_ttl > 0 ? n->ai_ttl : 0;
            }
        }
        for (const struct ares_addrinfo_cname *c = ai ? ai->cnames : NULL; c; c = c->next) {
            if (c->ttl < ttl) {
                ttl = c->ttl > 0 ? c->ttl : 0;
            }
        }
        if (e->naddrs == 0) {
            st = DNS_NODATA;
        } else {
            ttl_ns = ttl * 1000000000;
        }
    }
    if (st == DNS_NXDOMAIN || st == DNS_NODATA) {
        ttl_ns = d->neg_ttl_ns;
    }
    e->status = (uint8_t)st;
    e->expire_ns = ring_now_ns(d->ring) + ttl_ns;
}

/* on_addrinfo is c-ares's end of the resolution of arg (an entry). */
static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    struct dns_entry *e = arg;
    struct dns *d = e->d;
    e->in_ares = false;
    d->nupstream--;
    if (d->shut) {
        /* ares_destroy: the waiters were already told; the pool goes with d */
        ares_freeaddrinfo(ai);
        return;
    }
    if (e->state == ENTRY_ORPHAN) {
        ares_freeaddrinfo(ai); /* its waiters timed out; a newer resolution may be running */
        entry_free(d, e);
    } else {
        pending_unlink(d, e);
        entry_settle(d, e, status, ai);
        ares_freeaddrinfo(ai);
        e->state = ENTRY_DONE;
        list_push_front(&d->lru_head, &d->lru_tail, e);
        entry_call_back(d, e);
    }
    dns_dispatch(d);
}

/* entry_send hands e's name to c-ares. c-ares may answer before returning (a hosts-file hit,
 * an immediate failure): e is then DONE already. */
static void entry_send(struct dns *d, struct dns_entry *e)
{
    e->queued = false;
    e->in_ares = true;
    d->nupstream++;
    d->stat_upstream++;
    struct ares_addrinfo_hints hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_protocol = IPPROTO_TCP,
    };
    ares_getaddrinfo(d->channel, e->host, NULL, &hints, on_addrinfo, e);
}

/* entry_start starts e's resolution: its deadline runs from now, and it goes to c-ares at once
 * unless max_upstream resolutions are there already (it then queues, in start order). */
static void entry_start(struct dns *d, struct dns_entry *e)
{
    e->state = ENTRY_PENDING;
    e->deadline_ns = ring_now_ns(d->ring) + d->timeout_ns;
    list_push_back(&d->pending_head, &d->pending_tail, e);
    if (d->pending_head == e) {
        deadline_rearm(d);
    }
    if (d->queued_head || d->nupstream >= d->max_upstream) {
        e->queued = true;
        if (!d->queued_head) {
            d->queued_head = e; /* every entry after it in the FIFO is queued too */
        }
        return;
    }
    entry_send(d, e);
}

/* dns_dispatch sends queued resolutions while upstream slots are free. */
static void dns_dispatch(struct dns *d)
{
    if (d->dispatching || d->shut) {
        return; /* the outer call's loop sends them */
    }
    d->dispatching = true;
    while (d->queued_head && d->nupstream < d->max_upstream) {
        struct dns_entry *e = d->queued_head;
        d->queued_head = e->next; /* before sending: an answer at once unlinks e */
        entry_send(d, e);
    }
    d->dispatching = false;
}

/* on_deadline times out the resolutions whose deadline passed. One c-ares still holds becomes
 * an orphan (out of the table, so the next query for the name starts afresh) until c-ares
 * calls back; a queued one is freed. */
static void on_deadline(struct ring *r, struct ring_timer *t)
{
    struct dns *d = container_of(t, struct dns, deadline_timer);
    struct dns_entry *e;
    while ((e = d->pending_head) != NULL && e->deadline_ns <= ring_now_ns(r)) {
        if (d->queued_head == e) {
            d->queued_head = e->next;
        }
        list_unlink(&d->pending_head, &d->pending_tail, e);
        table_remove(d, e);
        e->state = ENTRY_ORPHAN;
        e->status = DNS_TIMEOUT;
        e->naddrs = 0;
        e->expire_ns = ring_now_ns(r);
        entry_call_back(d, e);
        if (!e->in_ares) {
            entry_free(d, e);
        }
    }
    deadline_rearm(d);
}

static bool override_answer(struct dns *d, const char *key, struct dns_query *q)
{
    struct dns_ip ips[DNS_MAX_ADDRS];
    uint8_t n = 0;
    for (size_t i = 0; i < d->noverrides; i++) {
        if (strcmp(d->overrides[i].host, key) == 0) {
            add_ip(ips, &n, &d->overrides[i].ip);
        }
    }
    if (n == 0) {
        return false;
    }
    result_set(&q->res, DNS_OK, ips, n, q->port, d->max_ttl_s);
    return true;
}

static enum dns_progress answer_now(struct dns_query *q, enum dns_status st)
{
    result_set(&q->res, st, NULL, 0, q->port, 0);
    return DNS_ANSWERED;
}

enum dns_progress dns_resolve(struct dns *d, struct dns_query *q, const char *host, uint16_t port,
                              dns_done_cb *cb)
{
    q->cb = cb;
    q->port = port;
    q->entry = NULL;
    q->prev = q->next = NULL;
    d->stat_queries++;
    if (d->shut) {
        return answer_now(q, DNS_CANCELLED);
    }
    struct dns_ip lit;
    if (parse_literal(host, &lit)) {
        d->stat_hits++;
        result_set(&q->res, DNS_OK, &lit, 1, port, 0);
        return DNS_ANSWERED;
    }
    char key[DNS_HOST_MAX + 1];
    if (!host_key(host, key)) {
        return answer_now(q, DNS_BADNAME);
    }
    if (override_answer(d, key, q)) {
        d->stat_hits++;
        return DNS_ANSWERED;
    }
    uint32_t h = host_hash(key);
    struct dns_entry *e = table_find(d, key, h);
    if (e && e->state == ENTRY_PENDING) {
        d->stat_joins++;
        waiter_add(e, q);
        return DNS_PENDING;
    }
    if (e && (e->completing || e->expire_ns > ring_now_ns(d->ring))) {
        d->stat_hits++;
        if (!e->completing) {
            list_unlink(&d->lru_head, &d->lru_tail, e);
            list_push_front(&d->lru_head, &d->lru_tail, e);
        }
        entry_answer(d, e, q);
        return DNS_ANSWERED;
    }
    if (e) {
        list_unlink(&d->lru_head, &d->lru_tail, e); /* stale: ask again on the same entry */
    } else {
        e = entry_alloc(d);
        if (!e) {
            return answer_now(q, DNS_BUSY);
        }
        memcpy(e->host, key, strlen(key) + 1);
        e->hash = h;
        table_insert(d, e);
    }
    entry_start(d, e);
    if (e->state == ENTRY_DONE) {
        entry_answer(d, e, q);
        dns_after_ares(d);
        return DNS_ANSWERED;
    }
    waiter_add(e, q);
    dns_after_ares(d);
    return DNS_PENDING;
}

void dns_cancel(struct dns *d, struct dns_query *q)
{
    struct dns_entry *e = q->entry;
    if (!e) {
        return;
    }
    waiter_remove(e, q);
    result_set(&q->res, DNS_CANCELLED, NULL, 0, q->port, 0);
    q->cb(d, q);
}

/* ======== c-ares's sockets on the ring ====================================================== */

/* sock_submit_cancel asks the kernel to cancel s's poll, found by its user_data (the op), not
 * by descriptor: by the time the cancel is submitted c-ares has closed the fd, and the number
 * may already name another socket. The cancel's own completion is not wanted. */
static bool sock_submit_cancel(struct dns *d, struct dns_sock *s)
{
    struct io_uring_sqe *sqe = ring_sqe(d->ring, NULL, RING_OP_NONE);
    if (!sqe) {
        return false;
    }
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&s->op, 0);
    io_uring_sqe_set_data(sqe, NULL);
    if (d->ring->features & IORING_FEAT_CQE_SKIP) {
        io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    }
    s->cancelling = true;
    return true;
}

/* sock_arm makes the poll in flight match what c-ares wants: a poll when none is in flight, a
 * cancel when it lacks an event c-ares now wants (its completion re-arms), a cancel when the
 * socket was closed. Returns false when no SQE could be had (retried from the ares timer). */
static bool sock_arm(struct dns *d, struct dns_sock *s)
{
    if (s->in_handler) {
        return true; /* the handler re-arms once ares_process_fd returns */
    }
    if (s->op.inflight) {
        bool stale = s->closed || (s->want & ~s->armed) != 0;
        if (stale && !s->cancelling) {
            return sock_submit_cancel(d, s);
        }
        return true;
    }
    if (s->closed || !s->want) {
        return true;
    }
    /* RING_OP_NONE: ring.h has no poll type yet (the type is only for asserts and traces) */
    struct io_uring_sqe *sqe = ring_sqe(d->ring, &s->op, RING_OP_NONE);
    if (!sqe) {
        return false;
    }
    io_uring_prep_poll_add(sqe, s->fd, s->want);
    io_uring_sqe_set_data(sqe, &s->op);
    s->armed = s->want;
    d->polls_inflight++;
    return true;
}

static void sock_list_remove(struct dns_sock **list, struct dns_sock *s)
{
    for (struct dns_sock **p = list; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            s->next = NULL;
            return;
        }
    }
}

/* sock_close forgets s's descriptor (c-ares closes it when this returns). The record stays
 * while the kernel holds its poll, on the dying list, and is freed by the poll's completion. */
static void sock_close(struct dns *d, struct dns_sock *s)
{
    sock_list_remove(&d->socks, s);
    s->closed = true;
    s->want = 0;
    if (s->op.inflight) {
        s->next = d->dying;
        d->dying = s;
        if (!sock_arm(d, s)) {
            d->arm_retry = true;
        }
    } else if (!s->in_handler) {
        free(s);
    } /* else the handler frees it */
}

static void on_poll(struct ring *r, struct op *op, int res, uint32_t flags);

/* on_sock_state is c-ares telling which events it wants on fd; none means fd is being closed. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    struct dns_sock *s = d->socks;
    while (s && s->fd != fd) {
        s = s->next;
    }
    if (!readable && !writable) {
        if (s) {
            sock_close(d, s);
        }
        return;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            return; /* unwatched: its queries end at c-ares's timeouts */
        }
        s->d = d;
        s->fd = fd;
        s->op.cb = on_poll;
        s->next = d->socks;
        d->socks = s;
    }
    s->want = (readable ? POLLIN : 0) | (writable ? POLLOUT : 0);
    if (!sock_arm(d, s)) {
        d->arm_retry = true;
    }
}

static void on_poll(struct ring *r, struct op *op, int res, uint32_t flags)
{
    struct dns_sock *s = container_of(op, struct dns_sock, op);
    struct dns *d = s->d;
    d->polls_inflight--;
    s->cancelling = false;
    if (s->closed) {
        sock_list_remove(&d->dying, s);
        free(s);
        return;
    }
    if (res != -ECANCELED) {
        /* an error (res < 0) is handed to c-ares as readiness: its read fails and it closes */
        uint32_t ev = res < 0 ? (POLLIN | POLLOUT) : (uint32_t)res;
        bool rd = (ev & (POLLIN | POLLERR | POLLHUP)) && (s->want & POLLIN);
        bool wr = (ev & (POLLOUT | POLLERR | POLLHUP)) && (s->want & POLLOUT);
        if (rd || wr) {
            s->in_handler = true;
            ares_process_fd(d->channel, rd ? s->fd : ARES_SOCKET_BAD, wr ? s->fd : ARES_SOCKET_BAD);
            s->in_handler = false;
            if (s->closed) {
                free(s); /* closed while handled: on no list, and no poll in flight */
                dns_after_ares(d);
                return;
            }
        }
    }
    if (!sock_arm(d, s)) {
        d->arm_retry = true;
    }
    dns_after_ares(d);
}

/* dns_after_ares re-arms the ares timer for c-ares's next timeout (or 1 ms on, to retry arming
 * polls that found no SQE). */
static void dns_after_ares(struct dns *d)
{
    if (d->shut) {
        return;
    }
    struct timeval tv;
    struct timeval *tvp = ares_timeout(d->channel, NULL, &tv);
    int64_t in_ns = -1;
    if (tvp) {
        /* + 1 ms: c-ares counts in whole milliseconds, rounding down; waking before its
         * timeout is due would spin the loop for the rest of that millisecond */
        in_ns = (int64_t)tvp->tv_sec * 1000000000 + (int64_t)tvp->tv_usec * 1000 + 1000000;
    }
    if (d->arm_retry && (in_ns < 0 || in_ns > 1000000)) {
        in_ns = 1000000;
    }
    if (in_ns < 0) {
        ring_timer_cancel(d->ring, &d->ares_timer);
    } else {
        ring_timer_arm_in(d->ring, &d->ares_timer, in_ns);
    }
}

static void on_ares_timer(struct ring *r, struct ring_timer *t)
{
    struct dns *d = container_of(t, struct dns, ares_timer);
    if (d->arm_retry) {
        d->arm_retry = false;
        for (struct dns_sock *s = d->socks; s; s = s->next) {
            d->arm_retry |= !sock_arm(d, s);
        }
        for (struct dns_sock *s = d->dying; s; s = s->next) {
            d->arm_retry |= !sock_arm(d, s);
        }
    }
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_after_ares(d);
}

/* ======== set-up and shut-down ============================================================== */

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_once_rc;

static void ares_once_init(void)
{
    ares_once_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

static int dns_init_overrides(struct dns *d, const struct dns_opts *o, char *err, size_t errlen)
{
    if (!o->noverrides) {
        return 0;
    }
    d->overrides = calloc(o->noverrides, sizeof(*d->overrides));
    if (!d->overrides) {
        snprintf(err, errlen, "dns: out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < o->noverrides; i++) {
        struct dns_override_addr *ov = &d->overrides[i];
        if (!host_key(o->overrides[i].host, ov->host) ||
            !parse_literal(o->overrides[i].addr, &ov->ip)) {
            snprintf(err, errlen, "dns: override %s=%s: not a host name and an address",
                     o->overrides[i].host, o->overrides[i].addr);
            return -EINVAL;
        }
    }
    d->noverrides = o->noverrides;
    return 0;
}

static int dns_init_channel(struct dns *d, const struct dns_opts *o, char *err, size_t errlen)
{
    pthread_once(&ares_once, ares_once_init);
    if (ares_once_rc != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: c-ares: %s", ares_strerror(ares_once_rc));
        return -EIO;
    }
    uint32_t tries = o->tries ? o->tries : 2;
    if (tries > 8) {
        tries = 8;
    }
    /* c-ares doubles its per-try timeout each round: t + 2t + ... fits the deadline. */
    uint32_t per_try = (uint32_t)(d->timeout_ns / 1000000 / ((1u << tries) - 1));
    struct ares_options ao;
    memset(&ao, 0, sizeof(ao));
    int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
    ao.flags = ARES_FLAG_NOSEARCH; /* a webhook's host is absolute: no search domains */
    ao.timeout = per_try > 0 ? (int)per_try : 1;
    ao.tries = (int)tries;
    ao.sock_state_cb = on_sock_state;
    ao.sock_state_cb_data = d;
    char lookups[] = "b";
    if (o->no_hosts_file) {
        mask |= ARES_OPT_LOOKUPS;
        ao.lookups = lookups;
    }
    ares_channel ch;
    int rc = ares_init_options(&ch, &ao, mask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: c-ares: %s", ares_strerror(rc));
        return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
    }
    if (o->servers) {
        rc = ares_set_servers_ports_csv(ch, o->servers);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "dns: servers %s: %s", o->servers, ares_strerror(rc));
            ares_destroy(ch);
            return -EINVAL;
        }
    }
    d->channel = ch;
    return 0;
}

int dns_init(struct dns *d, struct ring *r, const struct dns_opts *o, char *err, size_t errlen)
{
    static const struct dns_opts defaults;
    if (!o) {
        o = &defaults;
    }
    memset(d, 0, sizeof(*d));
    d->ring = r;
    d->timeout_ns = (int64_t)(o->timeout_ms ? o->timeout_ms : 5000) * 1000000;
    d->neg_ttl_ns = (int64_t)(o->neg_ttl_ms ? o->neg_ttl_ms : 5000) * 1000000;
    d->max_ttl_s = o->max_ttl_s ? o->max_ttl_s : 300;
    d->max_entries = o->max_entries ? o->max_entries : 1024;
    d->max_upstream = o->max_upstream ? o->max_upstream : 64;
    ring_timer_init(&d->ares_timer, on_ares_timer);
    ring_timer_init(&d->deadline_timer, on_deadline);

    d->nbuckets = 16;
    while (d->nbuckets < 2 * d->max_entries) {
        d->nbuckets *= 2;
    }
    d->pool = calloc(d->max_entries, sizeof(*d->pool));
    d->buckets = calloc(d->nbuckets, sizeof(*d->buckets));
    if (!d->pool || !d->buckets) {
        snprintf(err, errlen, "dns: out of memory");
        dns_cleanup(d);
        return -ENOMEM;
    }
    for (uint32_t i = d->max_entries; i-- > 0;) {
        entry_free(d, &d->pool[i]);
    }
    int rc = dns_init_overrides(d, o, err, errlen);
    if (rc == 0) {
        rc = dns_init_channel(d, o, err, errlen);
    }
    if (rc) {
        dns_cleanup(d);
        return rc;
    }
    return 0;
}

void dns_shutdown(struct dns *d)
{
    if (d->shut) {
        return;
    }
    d->shut = true;
    /* Callbacks may call dns_resolve (answered DNS_CANCELLED at once) or dns_cancel. */
    for (struct dns_entry *e = d->pending_head; e; e = e->next) {
        struct dns_query *q;
        while ((q = e->wait_head) != NULL) {
            waiter_remove(e, q);
            result_set(&q->res, DNS_CANCELLED, NULL, 0, q->port, 0);
            q->cb(d, q);
        }
    }
    ring_timer_cancel(d->ring, &d->ares_timer);
    ring_timer_cancel(d->ring, &d->deadline_timer);
    if (d->channel) {
        /* calls on_addrinfo for every resolution (ignored: d->shut), then closes the sockets,
         * telling on_sock_state, which cancels their polls */
        ares_destroy(d->channel);
        d->channel = NULL;
    }
    while (d->socks) {
        sock_close(d, d->socks); /* any c-ares did not report closed */
    }
}

bool dns_busy(const struct dns *d)
{
    return d->polls_inflight > 0;
}

void dns_cleanup(struct dns *d)
{
    dns_shutdown(d);
    while (d->dying) {
        struct dns_sock *s = d->dying;
        d->dying = s->next;
        free(s); /* the ring is idle or about to go: see dns.h */
    }
    free(d->pool);
    free(d->buckets);
    free(d->overrides);
    d->pool = NULL;
    d->buckets = NULL;
    d->overrides = NULL;
    d->free_entries = d->lru_head = d->lru_tail = d->pending_head = d->pending_tail = NULL;
    d->polls_inflight = 0;
}

/* dns.h: asynchronous name resolution on a worker's ring, with a cache.
 *
 * One struct dns per worker ring. Resolution is c-ares (ares_getaddrinfo: A and AAAA together),
 * driven from the ring: c-ares tells us which of its sockets to watch (its socket-state
 * callback) and each is watched with a one-shot io_uring poll embedded in a per-socket record;
 * readiness calls ares_process_fd, and c-ares's own retransmission timeouts run on a ring timer.
 * Nothing waits on the network; c-ares's sends are non-blocking calls made inline, and on a
 * cache miss it reads /etc/hosts first unless no_hosts_file is set.
 *
 * Answers are cached per host name for their TTL (the smallest TTL of the records, CNAMEs
 * included, capped at max_ttl_s); NXDOMAIN and NODATA are cached for neg_ttl_ms; timeouts and
 * server failures are not cached, so the next attempt asks again. A query for a name that is
 * being resolved joins that resolution: one upstream query however many callers ask. The cache
 * and the in-flight resolutions share a pool of max_entries records sized at dns_init; a full
 * pool evicts the least recently used answer. At most max_upstream resolutions are at c-ares at
 * once and the rest queue, in order: a worker starting with hundreds of names would otherwise
 * send them all at once, and the burst of answers overflows the socket's receive buffer (each
 * lost answer costs a retransmission timeout). A resolution's deadline runs from its start,
 * queueing included.
 *
 * A failed resolution is classified (enum dns_status) and is for the caller to retry like any
 * other failed attempt. Names are absolute: no search domains are appended.
 *
 * The address guard is the caller's, applied to the addresses of the answer just before
 * connecting (dns_result_permitted): a name with any refused address is refused as a whole, and
 * the address connected to is one of the addresses checked, never a second resolution. */
#ifndef HOOKRING_DNS_H
#define HOOKRING_DNS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common.h"
#include "netguard.h"
#include "ring.h"

#define DNS_HOST_MAX 253 /* a name's length in text, without a trailing dot */
#define DNS_MAX_ADDRS 8  /* addresses kept per answer (the rest are dropped) */

/* How a resolution ended. Every status but DNS_OK is a failed attempt for the caller. */
enum dns_status {
    DNS_OK = 0,
    DNS_NXDOMAIN,  /* the name does not exist */
    DNS_NODATA,    /* the name exists but has no A or AAAA record */
    DNS_TIMEOUT,   /* no answer within the resolution's deadline */
    DNS_SERVFAIL,  /* no server gave an answer: SERVFAIL, FORMERR, NOTIMP, unreachable, and
                      with c-ares 1.18 a REFUSED as well (it reports both as ECONNREFUSED) */
    DNS_REFUSED,   /* the server refused the query (c-ares versions that tell it apart) */
    DNS_BADNAME,   /* not a valid host name (empty, too long, bad label) */
    DNS_BUSY,      /* every record of the pool is an unanswered resolution; try later */
    DNS_CANCELLED, /* dns_cancel, or dns_shutdown/dns_cleanup with the query pending */
    DNS_ERROR,     /* anything else (out of memory, no server reachable, bad response) */
};

/* The outcome of a query. On DNS_OK, naddrs >= 1 and each address carries the query's port;
 * the order is c-ares's (RFC 6724 destination order). */
struct dns_result {
    enum dns_status status;
    uint32_t ttl_s; /* how long the answer stays cached from now (0: not cached) */
    uint32_t naddrs;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
};

struct dns;
struct dns_query;
struct dns_entry;
struct dns_sock;
struct dns_override_addr;
struct ares_channeldata;

/* dns_done_cb reports the end of q; the result is q->res. q is no longer pending and may be
 * reused (even freed) from the callback, which may call dns_resolve and dns_cancel (not
 * dns_shutdown or dns_cleanup). */
typedef void dns_done_cb(struct dns *d, struct dns_query *q);

/* A query, embedded in the caller's object. Only res is for the caller to read. */
struct dns_query {
    struct dns_result res;
    /* private */
    dns_done_cb *cb;
    struct dns_entry *entry; /* the resolution it waits for; NULL when not pending */
    struct dns_query *prev, *next;
    uint16_t port;
};

/* A fixed answer, looked up before the cache (tests; an operator's pinned name). Several
 * entries with the same host give that host several addresses. */
struct dns_override {
    const char *host;
    const char *addr; /* an IPv4 or IPv6 literal */
};

struct dns_opts {
    const char *servers;   /* "ip[:port],[ipv6]:port,..."; NULL: /etc/resolv.conf's */
    uint32_t timeout_ms;   /* a resolution's deadline, c-ares's retries included; 0: 5000 */
    uint32_t tries;        /* attempts per server within the deadline; 0: 2 */
    uint32_t max_entries;  /* cached answers and in-flight resolutions together; 0: 1024 */
    uint32_t max_upstream; /* resolutions at c-ares at once, the rest queue; 0: 64 */
    uint32_t max_ttl_s;    /* positive answers are kept at most this long; 0: 300 */
    uint32_t neg_ttl_ms;   /* NXDOMAIN and NODATA are kept this long; 0: 5000 */
    bool no_hosts_file;    /* ask DNS only, never /etc/hosts */
    const struct dns_override *overrides;
    size_t noverrides;
};

struct dns {
    struct ring *ring;
    struct ares_channeldata *channel; /* the ares_channel */
    struct ring_timer ares_timer;     /* c-ares's next retransmission or timeout */
    struct ring_timer deadline_timer; /* the oldest pending resolution's deadline */
    struct dns_sock *socks;           /* c-ares's open sockets */
    struct dns_sock *dying;           /* closed by c-ares, their poll not yet completed */
    uint32_t polls_inflight;
    /* the pool of entries: a hash table over the live ones, an LRU list of the answered ones,
     * a FIFO of the pending ones (their deadlines are in start order) */
    struct dns_entry *pool;
    struct dns_entry *free_entries;
    struct dns_entry **buckets;
    uint32_t nbuckets; /* a power of two */
    struct dns_entry *lru_head, *lru_tail;
    struct dns_entry *pending_head, *pending_tail;
    struct dns_entry *queued_head; /* the first pending entry not yet sent; the rest follow */
    uint32_t nupstream;            /* resolutions c-ares holds (orphans included) */
    uint32_t max_upstream;
    struct dns_override_addr *overrides;
    size_t noverrides;
    int64_t timeout_ns;
    int64_t neg_ttl_ns;
    uint32_t max_ttl_s;
    uint32_t max_entries;
    bool arm_retry;   /* a poll or a cancel found no SQE: the ares timer tries again */
    bool dispatching; /* dns_dispatch is running */
    bool shut;
    /* statistics */
    uint64_t stat_queries;   /* dns_resolve calls */
    uint64_t stat_hits;      /* answered from the cache, the overrides or a literal */
    uint64_t stat_joins;     /* joined a resolution in flight */
    uint64_t stat_upstream;  /* resolutions handed to c-ares */
    uint64_t stat_evictions; /* answers evicted to make room */
};

/* dns_init sets d up on ring r (whose thread then owns d): a c-ares channel configured by o
 * (NULL: the defaults) and the cache pool. d uses two of the ring's timers (leave room for them
 * in ring_opts.max_timers). Returns 0, or -errno with err filled (nothing to clean up). */
int dns_init(struct dns *d, struct ring *r, const struct dns_opts *o, char *err, size_t errlen);

/* enum dns_progress says whether dns_resolve answered at once. */
enum dns_progress {
    DNS_ANSWERED, /* q->res is filled; cb will not be called */
    DNS_PENDING,  /* cb will be called exactly once, from the ring loop or dns_cancel/cleanup */
};

/* dns_resolve resolves host (a name, or an IP literal, which is answered as itself) and gives
 * its addresses the port. Answered at once (DNS_ANSWERED, cb never called) from a literal, an
 * override, a fresh cache entry, or a failure known without asking (a bad name, a full pool,
 * a dns already shut down); otherwise DNS_PENDING and cb runs exactly once later. An answer
 * never calls back from inside dns_resolve. q must not be pending; it stays the caller's. */
enum dns_progress dns_resolve(struct dns *d, struct dns_query *q, const char *host, uint16_t port,
                              dns_done_cb *cb);

/* dns_query_pending tells whether q waits for its callback. */
static inline bool dns_query_pending(const struct dns_query *q)
{
    return q->entry != NULL;
}

/* dns_cancel ends a pending q at once: its callback runs before dns_cancel returns, with
 * DNS_CANCELLED. The resolution itself goes on (its answer is cached). A no-op when q is not
 * pending. */
void dns_cancel(struct dns *d, struct dns_query *q);

/* dns_shutdown ends every pending query (callbacks with DNS_CANCELLED), destroys the c-ares
 * channel and asks the kernel to cancel the socket polls. Later dns_resolve calls answer
 * DNS_CANCELLED at once. Not to be called from a dns callback. Idempotent. */
void dns_shutdown(struct dns *d);

/* dns_busy tells whether the kernel still holds one of d's polls (they complete with
 * -ECANCELED a loop iteration or so after dns_shutdown). */
bool dns_busy(const struct dns *d);

/* dns_cleanup shuts d down (dns_shutdown) and frees everything; call it before ring_cleanup
 * (it submits the cancels). When dns_busy(d) still held, the ring must not run again before
 * ring_cleanup (which drops the polls), since their records are freed: either run the ring
 * until !dns_busy(d) between dns_shutdown and dns_cleanup, or clean the ring up right after,
 * as a worker does at exit. */
void dns_cleanup(struct dns *d);

/* dns_result_permitted tells whether the guard permits every address of r (DNS_OK): a name
 * with any refused address is refused as a whole, so that no address of a mixed set is ever
 * connected to. When refused, *bad (when not NULL) gets the index of the first refused address
 * and *cls (when not NULL) its class. Connect to the addresses of this same result. */
bool dns_result_permitted(const struct dns_result *r, const struct netguard *g, uint32_t *bad,
                          enum addr_class *cls);

/* dns_status_name is a short stable name ("ok", "nxdomain", "timeout", ...). */
const char *dns_status_name(enum dns_status s);

#endif

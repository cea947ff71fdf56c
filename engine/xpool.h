/* xpool.h: delivery worker threads for `hookring serve --workers N`, and the lock-free queue
 * that hands work between threads.
 *
 * The owning (API) thread keeps every piece of state: webhooks, deliveries, the journal, the
 * retry wheel. Workers only execute attempts: each has its own thread, ring, delivery client,
 * TLS context and resolver, and its own copy of the endpoint and signer of every webhook it owns
 * (a webhook's slot s belongs to worker s % N), so a worker shares nothing on its hot path.
 *
 * The hand-off is two bounded single-producer single-consumer queues per worker (owner to
 * worker: attempts and endpoint messages, in order; worker to owner: finished attempts) plus a
 * ring wake-up (eventfd) of the other side. An attempt handed over belongs to the worker until it
 * comes back: the owner must not touch it, nor the bytes it names, in between. Every endpoint
 * message is copied, so the owner's webhook may change at once. */
#ifndef HOOKRING_XPOOL_H
#define HOOKRING_XPOOL_H

#include <stdatomic.h>

#include "client.h"
#include "dns.h"
#include "ring.h"
#include "tls.h"

/* ======== the queue ========================================================================= */

/* One message. type is the caller's; slot and p its arguments. */
struct xmsg {
    uint32_t type;
    uint32_t slot;
    void *p;
};

/* A bounded lock-free queue for exactly one producer thread and one consumer thread (Lamport's
 * ring): the producer alone writes tail, the consumer alone writes head, each on its own cache
 * line. */
struct xq {
    _Alignas(64) _Atomic size_t head; /* next to pop: written by the consumer */
    _Alignas(64) _Atomic size_t tail; /* next to fill: written by the producer */
    _Alignas(64) struct xmsg *items;
    size_t mask;
};

/* xq_init sizes q for cap messages (rounded up to a power of two, at least 2). Returns 0 or
 * -ENOMEM. */
int xq_init(struct xq *q, size_t cap);

/* xq_cleanup frees q's storage (the messages left in it are the caller's problem). */
void xq_cleanup(struct xq *q);

/* xq_push appends m (producer thread only). Returns false, changing nothing, when q is full. */
bool xq_push(struct xq *q, const struct xmsg *m);

/* xq_pop takes the oldest message into out (consumer thread only). Returns false when q is
 * empty. */
bool xq_pop(struct xq *q, struct xmsg *out);

/* ======== the worker pool =================================================================== */

struct xpool;

/* xpool_done_cb runs on the owner's thread (inside xpool_flush) for each attempt a worker
 * finished: a's outcome fields are filled as client_submit's done callback would see them. */
typedef void xpool_done_cb(void *arg, struct attempt *a);

struct xpool_opts {
    uint32_t workers;           /* threads, 1 to XPOOL_MAX_WORKERS */
    struct client_opts client;  /* each worker's client (its tls and dns are replaced) */
    const struct tls_opts *tls; /* each worker builds its own context (NULL: no https) */
    const struct dns_opts *dns; /* each worker its own resolver (NULL: IP literals only) */
};

#define XPOOL_MAX_WORKERS 64

/* xpool_new starts o->workers threads, each with its ring, client, TLS context and resolver,
 * and returns once all of them are ready. owner is the calling thread's ring: it must have a
 * wake-up (ring_wake_init); finished attempts are handed to done(arg, a) from xpool_flush.
 * NULL with err filled on failure (nothing left running). */
struct xpool *xpool_new(struct ring *owner, const struct xpool_opts *o, xpool_done_cb *done,
                        void *arg, char *err, size_t errlen);

/* What a worker builds a slot's endpoint from (copied: the caller's may change at once). */
struct xpool_endpoint {
    struct url url;
    struct signer signer;
    uint32_t timeout_ms;   /* 0: the profile's */
    uint32_t max_conns;    /* 0: 16 */
    uint32_t max_inflight; /* 0: 64 */
    /* custom headers for the endpoint's prefix: nhdr pairs "name\0value\0" packed in
     * hdrs[0..hdr_len) (copied with the rest; checked by the caller) */
    const char *hdrs;
    size_t hdr_len;
    uint32_t nhdr;
};

/* xpool_endpoint_set (re)creates slot's endpoint on its worker from a copy of e. The previous
 * endpoint of slot must have no attempt handed over and not yet back. Returns 0 or -ENOMEM. */
int xpool_endpoint_set(struct xpool *xp, uint32_t slot, const struct xpool_endpoint *e);

/* xpool_endpoint_drop cleans slot's endpoint up on its worker (nothing of it may be handed
 * over and not yet back); the slot may then be set again. Returns 0 or -ENOMEM. */
int xpool_endpoint_drop(struct xpool *xp, uint32_t slot);

/* xpool_signer_set replaces the signer of slot's endpoint on its worker by a copy of signer
 * (attempts in flight keep what they were signed with). Returns 0 or -ENOMEM. */
int xpool_signer_set(struct xpool *xp, uint32_t slot, const struct signer *signer);

/* xpool_submit hands attempt a (endpoint, event, body, id filled; a->ep and a->done are
 * replaced) to slot's worker. It comes back through the done callback, also when the endpoint
 * cannot be had (ATTEMPT_ERROR). Returns 0 or -ENOMEM (a is not taken). */
int xpool_submit(struct xpool *xp, uint32_t slot, struct attempt *a);

/* xpool_flush, called once per loop iteration of the owner, hands back every finished attempt
 * to the done callback, then pushes what was submitted to the workers and wakes them. */
void xpool_flush(struct xpool *xp);

/* xpool_workers is the number of workers; xpool_worker_of the worker that owns slot. */
uint32_t xpool_workers(const struct xpool *xp);
uint32_t xpool_worker_of(const struct xpool *xp, uint32_t slot);

/* xpool_attempts_done counts the attempts worker i handed back (owner's thread). */
uint64_t xpool_attempts_done(const struct xpool *xp, uint32_t i);

/* xpool_free stops every worker (attempts still in flight are abandoned: wait for them first),
 * joins the threads, which clean their endpoints up before their clients, and frees xp and the
 * messages not yet handed over (their attempts never come back). NULL is a no-op. */
void xpool_free(struct xpool *xp);

#endif

/* xpool.c: delivery worker threads and their SPSC hand-off queues (see xpool.h). */
#include "xpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======== the queue ========================================================================= */

int xq_init(struct xq *q, size_t cap)
{
    size_t n = 2;
    while (n < cap) {
        n *= 2;
    }
    q->items = calloc(n, sizeof(*q->items));
    if (!q->items) {
        return -ENOMEM;
    }
    q->mask = n - 1;
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    return 0;
}

void xq_cleanup(struct xq *q)
{
    free(q->items);
    q->items = NULL;
}

bool xq_push(struct xq *q, const struct xmsg *m)
{
    size_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed); /* ours */
    /* acquire: the consumer's reads of the slot we are about to reuse happened before */
    size_t head = atomic_load_explicit(&q->head, memory_order_acquire);
    if (tail - head > q->mask) {
        return false;
    }
    q->items[tail & q->mask] = *m;
    /* release: the message (and whatever it points at) is visible before the new tail */
    atomic_store_explicit(&q->tail, tail + 1, memory_order_release);
    return true;
}

bool xq_pop(struct xq *q, struct xmsg *out)
{
    size_t head = atomic_load_explicit(&q->head, memory_order_relaxed); /* ours */
    /* acquire: pairs with the producer's release of tail, so the slot is filled */
    size_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (head == tail) {
        return false;
    }
    *out = q->items[head & q->mask];
    /* release: our read of the slot is done before the producer may overwrite it */
    atomic_store_explicit(&q->head, head + 1, memory_order_release);
    return true;
}

/* ======== the pool ========================================================================== */

#define XQ_CAP 4096
#define RETRY_NS 1000000 /* a full queue is tried again after 1 ms */

enum { XM_ATTEMPT = 1, XM_EP_SET, XM_EP_DROP, XM_SIGNER, XM_DONE };

/* one webhook's endpoint on its worker */
struct wep {
    struct endpoint ep;
    struct signer signer;
    bool ok;
};

/* stop: 0 running; 1 asked to stop; 2 asked, and the owner's last wake-up is written (the
 * worker may close its eventfd only then) */
struct xworker {
    struct xpool *xp;
    uint32_t idx;
    pthread_t thread;
    bool started;
    struct netstack ns; /* its ring, TLS context, resolver and client */
    struct wep **eps;   /* by slot / workers */
    size_t neps;
    struct xq in;  /* owner -> worker */
    struct xq out; /* worker -> owner */
    _Atomic int stop;
    int err;
    char errmsg[256];
    /* worker side: finished attempts not yet pushed (linked by next) */
    struct attempt *done_head, *done_tail;
    struct ring_timer retry;
    /* owner side: messages not yet pushed (a FIFO), and the attempts handed back */
    struct xmsg *pend;
    size_t phead, plen, pcap;
    uint64_t attempts;
};

struct xpool {
    struct ring *owner;
    struct xpool_opts o;
    xpool_done_cb *done;
    void *arg;
    uint32_t n;
    struct xworker *w;
    _Atomic uint32_t ready;
    struct ring_timer retry; /* on the owner's ring */
};

/* ---- worker side ---- */

static void worker_retry_fire(struct ring *r, struct ring_timer *t)
{
    /* nothing: the loop pushes what is left */
}

static void worker_wake(struct ring *r, void *arg)
{
    /* nothing: the loop drains the queue after every iteration */
}

/* done_push queues a finished attempt for its trip back to the owner. */
static void done_push(struct xworker *w, struct attempt *a)
{
    a->next = NULL;
    if (w->done_tail) {
        w->done_tail->next = a;
    } else {
        w->done_head = a;
    }
    w->done_tail = a;
}

static void worker_attempt_done(struct attempt *a)
{
    done_push(container_of(a->ep->cl, struct xworker, ns.cl), a);
}

static struct wep *worker_wep(struct xworker *w, uint32_t slot, bool create)
{
    size_t i = slot / w->xp->n;
    if (i >= w->neps) {
        if (!create) {
            return NULL;
        }
        size_t cap = w->neps ? w->neps : 16;
        while (cap <= i) {
            cap *= 2;
        }
        struct wep **n = realloc(w->eps, cap * sizeof(*n));
        if (!n) {
            return NULL;
        }
        memset(n + w->neps, 0, (cap - w->neps) * sizeof(*n));
        w->eps = n;
        w->neps = cap;
    }
    if (!w->eps[i] && create) {
        w->eps[i] = calloc(1, sizeof(*w->eps[i]));
    }
    return w->eps[i];
}

static void worker_ep_set(struct xworker *w, uint32_t slot, struct xpool_endpoint *cfg)
{
    struct wep *e = worker_wep(w, slot, true);
    if (!e) {
        fprintf(stderr, "hookring serve: worker %u: out of memory for an endpoint\n", w->idx);
        goto out;
    }
    if (e->ok) {
        endpoint_cleanup(&e->ep);
        e->ok = false;
    }
    signer_wipe(&e->signer);
    e->signer = cfg->signer;
    char err[256];
    if (endpoint_init(&e->ep, &w->ns.cl, &cfg->url, &e->signer, cfg->timeout_ms,
                      cfg->max_conns ? cfg->max_conns : 16,
                      cfg->max_inflight ? cfg->max_inflight : 64, err, sizeof(err))) {
        fprintf(stderr, "hookring serve: worker %u: an endpoint cannot be used: %s\n", w->idx, err);
        goto out;
    }
    const char *h = cfg->hdrs, *end = pairs_end(cfg->hdrs, cfg->hdr_len);
    struct slice name, value;
    for (uint32_t i = 0; i < cfg->nhdr; i++) {
        if (!pair_next(&h, end, &name, &value) || endpoint_add_header(&e->ep, name, value)) {
            fprintf(stderr, "hookring serve: worker %u: an endpoint's headers cannot be added\n",
                    w->idx);
            endpoint_cleanup(&e->ep);
            goto out;
        }
    }
    e->ok = true;
out:
    signer_wipe(&cfg->signer);
    free(cfg);
}

static void worker_ep_drop(struct xworker *w, uint32_t slot)
{
    struct wep *e = worker_wep(w, slot, false);
    if (e) {
        if (e->ok) {
            endpoint_cleanup(&e->ep);
        }
        signer_wipe(&e->signer);
        free(e);
        w->eps[slot / w->xp->n] = NULL;
    }
}

static void worker_signer_set(struct xworker *w, uint32_t slot, struct signer *sg)
{
    struct wep *e = worker_wep(w, slot, false);
    if (e) {
        /* in place: the endpoint points at it; the next batch signs with the new one */
        signer_wipe(&e->signer);
        e->signer = *sg;
    }
    signer_wipe(sg);
    free(sg);
}

static void worker_submit(struct xworker *w, uint32_t slot, struct attempt *a)
{
    struct wep *e = worker_wep(w, slot, false);
    a->done = worker_attempt_done;
    if (e && e->ok) {
        a->ep = &e->ep;
        client_submit(a);
        return;
    }
    /* no endpoint here (it could not be built on this worker): a local failure */
    static const char why[] = "endpoint_unusable";
    a->result = ATTEMPT_ERROR;
    a->status = 0;
    a->err = 0;
    a->has_retry_after = false;
    a->retry_after_s = 0;
    a->sent_unix_ms = 0;
    a->submit_ns = a->done_ns = ring_clock_ns();
    memcpy(a->excerpt, why, sizeof(why) - 1);
    a->excerpt_len = sizeof(why) - 1;
    a->ep = NULL;
    done_push(w, a);
}

static void worker_drain(struct xworker *w)
{
    struct xmsg m;
    while (xq_pop(&w->in, &m)) {
        switch (m.type) {
        case XM_ATTEMPT:
            worker_submit(w, m.slot, m.p);
            break;
        case XM_EP_SET:
            worker_ep_set(w, m.slot, m.p);
            break;
        case XM_EP_DROP:
            worker_ep_drop(w, m.slot);
            break;
        case XM_SIGNER:
            worker_signer_set(w, m.slot, m.p);
            break;
        default:
            break;
        }
    }
}

/* worker_hand_back pushes the finished attempts to the owner and wakes it once. */
static void worker_hand_back(struct xworker *w)
{
    bool pushed = false;
    while (w->done_head) {
        struct attempt *a = w->done_head;
        struct xmsg m = {.type = XM_DONE, .p = a};
        struct attempt *next = a->next;
        if (!xq_push(&w->out, &m)) {
            if (!ring_timer_armed(&w->retry)) {
                ring_timer_arm_in(&w->ns.ring, &w->retry, RETRY_NS);
            }
            break;
        }
        /* a is the owner's now: next was read before the push */
        pushed = true;
        w->done_head = next;
        if (!next) {
            w->done_tail = NULL;
        }
    }
    if (pushed) {
        ring_wake(w->xp->owner);
    }
}

static int worker_setup(struct xworker *w)
{
    const struct xpool *xp = w->xp;
    struct netstack_opts no = {.ring = {.entries = 4096, .max_timers = 8192},
                               .tls = xp->o.tls,
                               .dns = xp->o.dns,
                               .dns_optional = true,
                               .client = xp->o.client};
    int rc = netstack_init(&w->ns, &no, w->errmsg, sizeof(w->errmsg));
    if (rc) {
        return rc;
    }
    rc = ring_wake_init(&w->ns.ring, worker_wake, w);
    if (rc) {
        snprintf(w->errmsg, sizeof(w->errmsg), "eventfd: %s", strerror(-rc));
        return rc;
    }
    ring_timer_init(&w->retry, worker_retry_fire);
    return 0;
}

/* worker_cleanup runs on the worker's thread: endpoints before their client. */
static void worker_cleanup(struct xworker *w)
{
    for (size_t i = 0; i < w->neps; i++) {
        struct wep *e = w->eps[i];
        if (e) {
            if (e->ok) {
                endpoint_cleanup(&e->ep);
            }
            signer_wipe(&e->signer);
            free(e);
        }
    }
    free(w->eps);
    w->eps = NULL;
    netstack_cleanup(&w->ns);
}

static void *worker_main(void *arg)
{
    struct xworker *w = arg;
    /* the ring is created on this thread: it is SINGLE_ISSUER */
    w->err = worker_setup(w);
    /* release: the setup (and the eventfd the owner will write to) before the count */
    atomic_fetch_add_explicit(&w->xp->ready, 1, memory_order_release);
    if (!w->err) {
        while (atomic_load_explicit(&w->stop, memory_order_acquire) == 0) {
            worker_drain(w);
            client_flush(&w->ns.cl);
            worker_hand_back(w);
            int rc = ring_run_once(&w->ns.ring, -1);
            if (rc < 0) {
                fprintf(stderr, "hookring serve: worker %u: io_uring: %s\n", w->idx, strerror(-rc));
                break;
            }
        }
    }
    /* the owner may still be writing its last wake-up to our eventfd */
    while (atomic_load_explicit(&w->stop, memory_order_acquire) < 2) {
        sched_yield();
    }
    worker_cleanup(w);
    return NULL;
}

/* ---- owner side ---- */

static void owner_retry_fire(struct ring *r, struct ring_timer *t)
{
    /* nothing: the owner's loop calls xpool_flush after every iteration */
}

static int pend_add(struct xworker *w, const struct xmsg *m)
{
    if (w->plen == w->pcap) {
        size_t cap = w->pcap ? w->pcap * 2 : 64;
        struct xmsg *n = malloc(cap * sizeof(*n));
        if (!n) {
            return -ENOMEM;
        }
        for (size_t i = 0; i < w->plen; i++) {
            n[i] = w->pend[(w->phead + i) % w->pcap];
        }
        free(w->pend);
        w->pend = n;
        w->pcap = cap;
        w->phead = 0;
    }
    w->pend[(w->phead + w->plen) % w->pcap] = *m;
    w->plen++;
    return 0;
}

uint32_t xpool_workers(const struct xpool *xp)
{
    return xp->n;
}

uint32_t xpool_worker_of(const struct xpool *xp, uint32_t slot)
{
    return slot % xp->n;
}

uint64_t xpool_attempts_done(const struct xpool *xp, uint32_t i)
{
    return i < xp->n ? xp->w[i].attempts : 0;
}

int xpool_endpoint_set(struct xpool *xp, uint32_t slot, const struct xpool_endpoint *e)
{
    /* the headers travel in the same block, after the struct */
    struct xpool_endpoint *cfg = malloc(sizeof(*cfg) + e->hdr_len);
    if (!cfg) {
        return -ENOMEM;
    }
    *cfg = *e;
    if (e->hdr_len) {
        memcpy(cfg + 1, e->hdrs, e->hdr_len);
        cfg->hdrs = (const char *)(cfg + 1);
    } else {
        cfg->hdrs = NULL;
        cfg->nhdr = 0;
    }
    struct xmsg m = {.type = XM_EP_SET, .slot = slot, .p = cfg};
    if (pend_add(&xp->w[slot % xp->n], &m)) {
        signer_wipe(&cfg->signer);
        free(cfg);
        return -ENOMEM;
    }
    return 0;
}

int xpool_endpoint_drop(struct xpool *xp, uint32_t slot)
{
    struct xmsg m = {.type = XM_EP_DROP, .slot = slot};
    return pend_add(&xp->w[slot % xp->n], &m);
}

int xpool_signer_set(struct xpool *xp, uint32_t slot, const struct signer *signer)
{
    struct signer *sg = malloc(sizeof(*sg));
    if (!sg) {
        return -ENOMEM;
    }
    *sg = *signer;
    struct xmsg m = {.type = XM_SIGNER, .slot = slot, .p = sg};
    if (pend_add(&xp->w[slot % xp->n], &m)) {
        signer_wipe(sg);
        free(sg);
        return -ENOMEM;
    }
    return 0;
}

int xpool_submit(struct xpool *xp, uint32_t slot, struct attempt *a)
{
    struct xmsg m = {.type = XM_ATTEMPT, .slot = slot, .p = a};
    return pend_add(&xp->w[slot % xp->n], &m);
}

void xpool_flush(struct xpool *xp)
{
    /* first what came back (its callbacks may submit more), then what goes out */
    for (uint32_t i = 0; i < xp->n; i++) {
        struct xworker *w = &xp->w[i];
        struct xmsg m;
        while (xq_pop(&w->out, &m)) {
            w->attempts++;
            xp->done(xp->arg, m.p);
        }
    }
    bool left = false;
    for (uint32_t i = 0; i < xp->n; i++) {
        struct xworker *w = &xp->w[i];
        bool pushed = false;
        while (w->plen && xq_push(&w->in, &w->pend[w->phead])) {
            w->phead = (w->phead + 1) % w->pcap;
            w->plen--;
            pushed = true;
        }
        if (pushed) {
            ring_wake(&w->ns.ring);
        }
        left |= w->plen > 0;
    }
    if (left && !ring_timer_armed(&xp->retry)) {
        ring_timer_arm_in(xp->owner, &xp->retry, RETRY_NS);
    }
}

static void free_msg(struct xmsg *m)
{
    if (m->type == XM_EP_SET) {
        struct xpool_endpoint *cfg = m->p;
        signer_wipe(&cfg->signer);
        free(cfg);
    } else if (m->type == XM_SIGNER) {
        signer_wipe(m->p);
        free(m->p);
    }
}

void xpool_free(struct xpool *xp)
{
    if (!xp) {
        return;
    }
    for (uint32_t i = 0; i < xp->n; i++) {
        struct xworker *w = &xp->w[i];
        if (!w->started) {
            continue;
        }
        if (!w->err) {
            atomic_store_explicit(&w->stop, 1, memory_order_release);
            ring_wake(&w->ns.ring);
        }
        atomic_store_explicit(&w->stop, 2, memory_order_release);
        pthread_join(w->thread, NULL);
    }
    if (ring_timer_armed(&xp->retry)) {
        ring_timer_cancel(xp->owner, &xp->retry);
    }
    for (uint32_t i = 0; i < xp->n; i++) {
        struct xworker *w = &xp->w[i];
        struct xmsg m;
        if (w->in.items) {
            while (xq_pop(&w->in, &m)) {
                free_msg(&m);
            }
        }
        for (size_t k = 0; k < w->plen; k++) {
            free_msg(&w->pend[(w->phead + k) % w->pcap]);
        }
        free(w->pend);
        xq_cleanup(&w->in);
        xq_cleanup(&w->out);
    }
    free(xp->w);
    free(xp);
}

struct xpool *xpool_new(struct ring *owner, const struct xpool_opts *o, xpool_done_cb *done,
                        void *arg, char *err, size_t errlen)
{
    if (o->workers < 1 || o->workers > XPOOL_MAX_WORKERS) {
        snprintf(err, errlen, "workers: 1 to %d", XPOOL_MAX_WORKERS);
        return NULL;
    }
    if (owner->wake_fd < 0) {
        snprintf(err, errlen, "the owner's ring has no wake-up");
        return NULL;
    }
    struct xpool *xp = calloc(1, sizeof(*xp));
    struct xworker *ws = calloc(o->workers, sizeof(*ws));
    if (!xp || !ws) {
        free(xp);
        free(ws);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    xp->owner = owner;
    xp->o = *o;
    xp->done = done;
    xp->arg = arg;
    xp->n = o->workers;
    xp->w = ws;
    atomic_init(&xp->ready, 0);
    ring_timer_init(&xp->retry, owner_retry_fire);
    uint32_t started = 0;
    for (uint32_t i = 0; i < xp->n; i++) {
        struct xworker *w = &ws[i];
        w->xp = xp;
        w->idx = i;
        atomic_init(&w->stop, 0);
        if (xq_init(&w->in, XQ_CAP) || xq_init(&w->out, XQ_CAP)) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc) {
            snprintf(err, errlen, "a worker thread: %s", strerror(rc));
            goto fail;
        }
        w->started = true;
        started++;
    }
    while (atomic_load_explicit(&xp->ready, memory_order_acquire) < started) {
        sched_yield();
    }
    for (uint32_t i = 0; i < xp->n; i++) {
        if (ws[i].err) {
            snprintf(err, errlen, "worker %u: %s", i, ws[i].errmsg);
            goto fail_ready;
        }
    }
    return xp;
fail:
    while (atomic_load_explicit(&xp->ready, memory_order_acquire) < started) {
        sched_yield();
    }
fail_ready:
    xpool_free(xp);
    return NULL;
}

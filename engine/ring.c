/* ring.c: the io_uring loop, its ops, its timer heap and its cross-thread wake-up. */
#include "ring.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

int64_t ring_clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ======== set-up ============================================================================ */

static int ring_try_setup(struct ring *r, unsigned entries, unsigned cq_entries, unsigned flags)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = flags | IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    int rc = io_uring_queue_init_params(entries, &r->uring, &p);
    if (rc == 0) {
        r->setup_flags = flags;
        r->features = p.features;
    }
    return rc;
}

int ring_init(struct ring *r, const struct ring_opts *o)
{
    memset(r, 0, sizeof(*r));
    r->wake_fd = -1;
    unsigned entries = o->entries ? o->entries : 256;
    unsigned cq_entries = o->cq_entries ? o->cq_entries : 4 * entries;

    /* Most capable first. SINGLE_ISSUER (6.0) lets the kernel skip submit-side locking;
     * DEFER_TASKRUN (6.1) runs completion work only when we ask for events, so it is done in
     * a batch on our thread instead of interrupting it. Older kernels refuse unknown flags with
     * -EINVAL, so each step drops what may be unknown. */
    unsigned tries[4];
    size_t ntries = 0;
    if (!(o->flags & RING_NO_SINGLE_ISSUER)) {
        if (!(o->flags & RING_NO_DEFER_TASKRUN)) {
            tries[ntries++] = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        }
        tries[ntries++] = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    }
    tries[ntries++] = IORING_SETUP_COOP_TASKRUN;
    tries[ntries++] = 0;

    int rc = -EINVAL;
    for (size_t i = 0; i < ntries; i++) {
        rc = ring_try_setup(r, entries, cq_entries, tries[i]);
        if (rc != -EINVAL) {
            break;
        }
    }
    if (rc < 0) {
        return rc;
    }
    r->heap_cap = o->max_timers;
    if (r->heap_cap) {
        r->heap = calloc(r->heap_cap, sizeof(*r->heap));
        if (!r->heap) {
            io_uring_queue_exit(&r->uring);
            return -ENOMEM;
        }
    }
    r->now_ns = ring_clock_ns();
    return 0;
}

void ring_cleanup(struct ring *r)
{
    io_uring_queue_exit(&r->uring);
    free(r->free_slots);
    r->free_slots = NULL;
    r->nfree_slots = r->nslots = 0;
    if (r->wake_fd >= 0) {
        close(r->wake_fd);
        r->wake_fd = -1;
    }
    free(r->heap);
    r->heap = NULL;
    r->nheap = 0;
    r->heap_cap = 0;
}

bool ring_has_defer_taskrun(const struct ring *r)
{
    return (r->setup_flags & IORING_SETUP_DEFER_TASKRUN) != 0;
}

/* ======== submission ======================================================================== */

struct io_uring_sqe *ring_sqe(struct ring *r, struct op *op, enum ring_op_type type)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    if (unlikely(!sqe)) {
        /* SQ full: hand what is queued to the kernel and try once more. */
        io_uring_submit(&r->uring);
        sqe = io_uring_get_sqe(&r->uring);
        if (!sqe) {
            return NULL;
        }
    }
    if (op) {
        op->type = (uint8_t)type;
        op->inflight = true;
        r->inflight++;
    }
    return sqe;
}

static inline void ring_bind(struct io_uring_sqe *sqe, struct op *op)
{
    io_uring_sqe_set_data(sqe, op);
}

/* ring_sqe_fd is the fd field for a ring descriptor (the slot of a direct one). */
static inline int ring_sqe_fd(int fd)
{
    return ring_fd_is_fixed(fd) ? fd & ~RING_FD_FIXED : fd;
}

/* ring_sqe_fixed flags a prepared sqe (io_uring_prep_* clears the flags) for a direct one. */
static inline void ring_sqe_fixed(struct io_uring_sqe *sqe, int fd)
{
    if (ring_fd_is_fixed(fd)) {
        sqe->flags |= IOSQE_FIXED_FILE;
    }
}

int ring_accept_multishot(struct ring *r, struct op *op, int fd)
{
    struct io_uring_sqe *sqe = ring_sqe(r, op, RING_OP_ACCEPT);
    if (!sqe) {
        return -EBUSY;
    }
    io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_CLOEXEC);
    ring_bind(sqe, op);
    return 0;
}

int ring_recv(struct ring *r, struct op *op, int fd, void *buf, size_t len, int flags)
{
    struct io_uring_sqe *sqe = ring_sqe(r, op, RING_OP_RECV);
    if (!sqe) {
        return -EBUSY;
    }
    io_uring_prep_recv(sqe, ring_sqe_fd(fd), buf, len, flags);
    ring_sqe_fixed(sqe, fd);
    ring_bind(sqe, op);
    return 0;
}

int ring_send(struct ring *r, struct op *op, int fd, const void *buf, size_t len, int flags)
{
    struct io_uring_sqe *sqe = ring_sqe(r, op, RING_OP_SEND);
    if (!sqe) {
        return -EBUSY;
    }
    io_uring_prep_send(sqe, ring_sqe_fd(fd), buf, len, flags | MSG_NOSIGNAL);
    ring_sqe_fixed(sqe, fd);
    ring_bind(sqe, op);
    return 0;
}

int ring_sendmsg(struct ring *r, struct op *op, int fd, const struct msghdr *msg, int flags)
{
    struct io_uring_sqe *sqe = ring_sqe(r, op, RING_OP_SENDMSG);
    if (!sqe) {
        return -EBUSY;
    }
    io_uring_prep_sendmsg(sqe, ring_sqe_fd(fd), msg, (unsigned)(flags | MSG_NOSIGNAL));
    ring_sqe_fixed(sqe, fd);
    ring_bind(sqe, op);
    return 0;
}

int ring_read(struct ring *r, struct op *op, int fd, void *buf, size_t len, uint64_t off)
{
    struct io_uring_sqe *sqe = ring_sqe(r, op, RING_OP_READ);
    if (!sqe) {
        return -EBUSY;
    }
    io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
    ring_bind(sqe, op);
    return 0;
}

int ring_write(struct ring *r, struct op *op, int fd, const void *buf, size_t len, uint64_t off)
{
    struct io_uring_sqe *sqe = ring_sqe(r, op, RING_OP_WRITE);
    if (!sqe) {
        return -EBUSY;
    }
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
    ring_bind(sqe, op);
    return 0;
}

int ring_connect(struct ring *r, struct op *op, int fd, const struct sockaddr *addr,
                 socklen_t addrlen)
{
    struct io_uring_sqe *sqe = ring_sqe(r, op, RING_OP_CONNECT);
    if (!sqe) {
        return -EBUSY;
    }
    io_uring_prep_connect(sqe, ring_sqe_fd(fd), addr, addrlen);
    ring_sqe_fixed(sqe, fd);
    ring_bind(sqe, op);
    return 0;
}

int ring_nop(struct ring *r, struct op *op)
{
    struct io_uring_sqe *sqe = ring_sqe(r, op, RING_OP_NOP);
    if (!sqe) {
        return -EBUSY;
    }
    io_uring_prep_nop(sqe);
    ring_bind(sqe, op);
    return 0;
}

/* An SQE whose completion nobody wants: user_data 0 (ignored when reaped), and no CQE at all on
 * success where the kernel can skip it. */
static struct io_uring_sqe *ring_sqe_detached(struct ring *r)
{
    struct io_uring_sqe *sqe = ring_sqe(r, NULL, RING_OP_NONE);
    if (!sqe) {
        return NULL;
    }
    return sqe;
}

static void ring_detach(struct ring *r, struct io_uring_sqe *sqe)
{
    io_uring_sqe_set_data(sqe, NULL);
    if (r->features & IORING_FEAT_CQE_SKIP) {
        io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
    }
}

int ring_cancel_fd(struct ring *r, int fd)
{
    struct io_uring_sqe *sqe = ring_sqe_detached(r);
    if (!sqe) {
        return -EBUSY;
    }
    if (ring_fd_is_fixed(fd)) {
        io_uring_prep_cancel_fd(sqe, fd & ~RING_FD_FIXED,
                                IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_FD_FIXED);
    } else {
        io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    }
    ring_detach(r, sqe);
    return 0;
}

void ring_close(struct ring *r, int fd)
{
    struct io_uring_sqe *sqe = ring_sqe_detached(r);
    if (!sqe) {
        close(fd);
        return;
    }
    io_uring_prep_close(sqe, fd);
    ring_detach(r, sqe);
}

/* ======== timers: a binary min-heap of embedded timers ===================================== */

static inline bool heap_less(const struct ring_timer *a, const struct ring_timer *b)
{
    return a->expire_ns < b->expire_ns;
}

static inline void heap_place(struct ring *r, uint32_t i, struct ring_timer *t)
{
    r->heap[i] = t;
    t->slot = i + 1;
}

static void heap_up(struct ring *r, uint32_t i)
{
    struct ring_timer *t = r->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!heap_less(t, r->heap[parent])) {
            break;
        }
        heap_place(r, i, r->heap[parent]);
        i = parent;
    }
    heap_place(r, i, t);
}

static void heap_down(struct ring *r, uint32_t i)
{
    struct ring_timer *t = r->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= r->nheap) {
            break;
        }
        if (child + 1 < r->nheap && heap_less(r->heap[child + 1], r->heap[child])) {
            child++;
        }
        if (!heap_less(r->heap[child], t)) {
            break;
        }
        heap_place(r, i, r->heap[child]);
        i = child;
    }
    heap_place(r, i, t);
}

static void heap_remove(struct ring *r, struct ring_timer *t)
{
    uint32_t i = t->slot - 1;
    t->slot = 0;
    r->nheap--;
    if (i == r->nheap) {
        return;
    }
    struct ring_timer *last = r->heap[r->nheap];
    heap_place(r, i, last);
    if (i > 0 && heap_less(last, r->heap[(i - 1) / 2])) {
        heap_up(r, i);
    } else {
        heap_down(r, i);
    }
}

void ring_timer_init(struct ring_timer *t, ring_timer_cb *cb)
{
    t->expire_ns = 0;
    t->cb = cb;
    t->slot = 0;
}

int ring_timer_arm(struct ring *r, struct ring_timer *t, int64_t expire_ns)
{
    if (t->slot) {
        int64_t old = t->expire_ns;
        t->expire_ns = expire_ns;
        if (expire_ns < old) {
            heap_up(r, t->slot - 1);
        } else {
            heap_down(r, t->slot - 1);
        }
        return 0;
    }
    if (r->nheap == r->heap_cap) {
        return -ENOSPC;
    }
    t->expire_ns = expire_ns;
    r->heap[r->nheap] = t;
    t->slot = ++r->nheap;
    heap_up(r, r->nheap - 1);
    return 0;
}

int ring_timer_arm_in(struct ring *r, struct ring_timer *t, int64_t delay_ns)
{
    return ring_timer_arm(r, t, r->now_ns + delay_ns);
}

void ring_timer_cancel(struct ring *r, struct ring_timer *t)
{
    if (t->slot) {
        heap_remove(r, t);
    }
}

int64_t ring_next_deadline(const struct ring *r)
{
    return r->nheap ? r->heap[0]->expire_ns : -1;
}

static void ring_fire_timers(struct ring *r)
{
    /* A callback may arm a timer that is already due; it fires in the next iteration, after
     * the ring has had a chance to reap, so a zero-delay timer cannot starve the loop. */
    uint32_t budget = r->nheap;
    while (r->nheap && budget--) {
        struct ring_timer *t = r->heap[0];
        if (t->expire_ns > r->now_ns) {
            break;
        }
        heap_remove(r, t);
        t->cb(r, t);
    }
}

/* ======== the loop ========================================================================== */

int ring_run_once(struct ring *r, int64_t max_wait_ns)
{
    int64_t wait_ns = max_wait_ns;
    int64_t deadline = ring_next_deadline(r);
    if (r->wheel) {
        int64_t now = ring_clock_ns();
        uint64_t in_ms = wheel_next_expiry(r->wheel, (uint64_t)now / 1000000);
        if (in_ms != WHEEL_NO_EXPIRY) {
            /* the end of the millisecond the wheel names, so that it is due on waking */
            int64_t at = ((now / 1000000) + (int64_t)in_ms) * 1000000;
            if (in_ms > 0) {
                at += 1000000 - 1;
            }
            if (deadline < 0 || at < deadline) {
                deadline = at;
            }
        }
    }
    if (deadline >= 0) {
        int64_t now = ring_clock_ns();
        int64_t until = deadline > now ? deadline - now : 0;
        if (wait_ns < 0 || until < wait_ns) {
            wait_ns = until;
        }
    }

    struct io_uring_cqe *cqe = NULL;
    int rc;
    if (r->batch_nr > 1 && wait_ns != 0) {
        int64_t window = r->batch_window_ns;
        if (wait_ns > 0 && wait_ns < window) {
            window = wait_ns;
        }
        struct __kernel_timespec ts = {.tv_sec = window / 1000000000,
                                       .tv_nsec = window % 1000000000};
        int64_t t0 = ring_clock_ns();
        rc = io_uring_submit_and_wait_timeout(&r->uring, &cqe, r->batch_nr, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            return rc;
        }
        if (io_uring_cq_ready(&r->uring) > 0) {
            wait_ns = 0; /* something came: reap it now */
        } else if (wait_ns > 0) {
            int64_t spent = ring_clock_ns() - t0;
            wait_ns = wait_ns > spent ? wait_ns - spent : 0;
        }
    }
    if (wait_ns == 0) {
        /* Something is due already: submit and collect what is ready without sleeping. */
        rc = io_uring_submit_and_get_events(&r->uring);
    } else if (wait_ns > 0) {
        struct __kernel_timespec ts = {
            .tv_sec = wait_ns / 1000000000,
            .tv_nsec = wait_ns % 1000000000,
        };
        rc = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, &ts, NULL);
    } else {
        rc = io_uring_submit_and_wait(&r->uring, 1);
    }
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        return rc;
    }
    r->now_ns = ring_clock_ns();
    r->stat_iterations++;

    /* Reap every ready completion, then give the slots back in one store. Handlers may submit
     * (even flush the SQ) meanwhile: the loop re-reads the tail, and counts what it consumed. */
    unsigned head, n = 0;
    io_uring_for_each_cqe(&r->uring, head, cqe)
    {
        n++;
        struct op *op = io_uring_cqe_get_data(cqe);
        if (!op) {
            continue; /* a detached cancel or close that failed */
        }
        int res = cqe->res;
        uint32_t flags = cqe->flags;
        if (!(flags & IORING_CQE_F_MORE)) {
            op->inflight = false;
            r->inflight--;
        }
        op->cb(r, op, res, flags);
    }
    io_uring_cq_advance(&r->uring, n);
    r->stat_cqes += n;

    ring_fire_timers(r);
    if (r->wheel) {
        wheel_run(r->wheel, ring_now_ms(r));
    }
    return (int)n;
}

int ring_files_init(struct ring *r, uint32_t n)
{
    if (r->nslots || n == 0 || n >= RING_FD_FIXED) {
        return -EINVAL;
    }
    uint32_t *slots = malloc((size_t)n * sizeof(*slots));
    if (!slots) {
        return -ENOMEM;
    }
    int rc = io_uring_register_files_sparse(&r->uring, n);
    if (rc < 0) {
        free(slots);
        return rc;
    }
    for (uint32_t i = 0; i < n; i++) {
        slots[i] = n - 1 - i; /* slot 0 on top */
    }
    r->free_slots = slots;
    r->nfree_slots = r->nslots = n;
    return 0;
}

int ring_fd_install(struct ring *r, int fd)
{
    if (!r->nfree_slots || fd < 0) {
        return fd;
    }
    uint32_t slot = r->free_slots[r->nfree_slots - 1];
    if (io_uring_register_files_update(&r->uring, slot, &fd, 1) != 1) {
        return fd;
    }
    r->nfree_slots--;
    close(fd);
    return (int)(slot | RING_FD_FIXED);
}

void ring_fd_close(struct ring *r, int fd)
{
    if (!ring_fd_is_fixed(fd)) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    uint32_t slot = (uint32_t)(fd & ~RING_FD_FIXED);
    int none = -1;
    io_uring_register_files_update(&r->uring, slot, &none, 1);
    r->free_slots[r->nfree_slots++] = slot;
}

void ring_attach_wheel(struct ring *r, struct wheel *w)
{
    r->now_ns = ring_clock_ns();
    wheel_init(w, ring_now_ms(r));
    r->wheel = w;
}

void ring_set_batch(struct ring *r, uint32_t nr, int64_t window_ns)
{
    r->batch_nr = nr;
    r->batch_window_ns = window_ns > 0 ? window_ns : 0;
}

int ring_run(struct ring *r)
{
    while (!r->stop) {
        int rc = ring_run_once(r, -1);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

void ring_stop(struct ring *r)
{
    r->stop = true;
}

/* ======== wake-up =========================================================================== */

static int ring_wake_arm(struct ring *r)
{
    return ring_read(r, &r->wake_op, r->wake_fd, &r->wake_val, sizeof(r->wake_val), 0);
}

static void ring_handle_wake(struct ring *r, struct op *op, int res, uint32_t flags)
{
    if (res < 0 && res != -EAGAIN && res != -EINTR && res != -ECANCELED) {
        return; /* the eventfd is broken: stop listening for wake-ups */
    }
    if (res == -ECANCELED) {
        return;
    }
    ring_wake_arm(r);
    if (r->wake_cb) {
        r->wake_cb(r, r->wake_arg);
    }
}

int ring_wake_init(struct ring *r, ring_wake_cb *cb, void *arg)
{
    r->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (r->wake_fd < 0) {
        return -errno;
    }
    r->wake_cb = cb;
    r->wake_arg = arg;
    r->wake_op.cb = ring_handle_wake;
    int rc = ring_wake_arm(r);
    if (rc < 0) {
        close(r->wake_fd);
        r->wake_fd = -1;
    }
    return rc;
}

int ring_wake(struct ring *r)
{
    uint64_t one = 1;
    if (write(r->wake_fd, &one, sizeof(one)) < 0) {
        return -errno;
    }
    return 0;
}

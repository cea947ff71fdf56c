/* ring.h: one io_uring per thread, typed operations, batched completions and a timer source.
 *
 * Every submission carries a struct op embedded in the object that owns the operation (a
 * connection embeds its recv and send ops); the completion hands the op back and the owner gets
 * itself with container_of. The op's cb is that owner's handle_<op>() for this operation.
 *
 * A loop iteration (ring_run_once) submits what was queued, waits for at least one completion
 * or until the earliest timer is due, reaps every completion that is ready in one pass
 * (io_uring_for_each_cqe, then a single io_uring_cq_advance), then fires the due timers.
 *
 * Timers live inside the objects they time and store an absolute deadline (monotonic ns); the
 * ring keeps them in a binary min-heap sized once at ring_init, and the earliest deadline is the
 * bound of the next wait. Nothing here allocates after ring_init.
 *
 * A ring belongs to the thread that called ring_init (IORING_SETUP_SINGLE_ISSUER where the
 * kernel has it); the only call another thread may make is ring_wake().
 *
 * Kernel: 5.19 or later for multishot accept and cancel-by-fd (ring_init itself works on
 * older kernels, dropping the set-up flags they lack). Every liburing call here exists in
 * liburing 2.3. */
#ifndef HOOKRING_RING_H
#define HOOKRING_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common.h"
#include "wheel.h"

struct ring;
struct op;

/* What an op is, for the owner's asserts and for traces. */
enum ring_op_type {
    RING_OP_NONE = 0,
    RING_OP_ACCEPT,
    RING_OP_RECV,
    RING_OP_SEND,
    RING_OP_SENDMSG,
    RING_OP_READ,
    RING_OP_WRITE,
    RING_OP_CONNECT,
    RING_OP_TIMEOUT,
    RING_OP_NOP,
    RING_OP_WAKE,
    RING_OP_TYPE_COUNT
};

/* ring_op_cb handles one completion of op: res is cqe->res (>= 0 or -errno), flags cqe->flags.
 * When it runs, op->inflight already says whether the kernel still owns the op (a multishot
 * op whose IORING_CQE_F_MORE is set stays in flight). */
typedef void ring_op_cb(struct ring *r, struct op *op, int res, uint32_t flags);

struct op {
    ring_op_cb *cb;
    uint8_t type;  /* enum ring_op_type, set when submitted */
    bool inflight; /* the kernel owns the op (and the buffers it names) */
};

struct ring_timer;

/* ring_timer_cb runs when t is due; t is already disarmed and may be re-armed. */
typedef void ring_timer_cb(struct ring *r, struct ring_timer *t);

struct ring_timer {
    int64_t expire_ns; /* absolute, CLOCK_MONOTONIC */
    ring_timer_cb *cb;
    uint32_t slot; /* heap position + 1; 0 when not armed */
};

/* ring_wake_cb runs on the ring's thread after another thread called ring_wake(). */
typedef void ring_wake_cb(struct ring *r, void *arg);

/* Set-up flags the caller can refuse, to exercise the fall-backs (tests) or for a ring that is
 * deliberately shared. */
enum ring_init_flags {
    RING_NO_SINGLE_ISSUER = 1u << 0, /* implies no DEFER_TASKRUN */
    RING_NO_DEFER_TASKRUN = 1u << 1,
};

struct ring_opts {
    unsigned entries;    /* SQ size (rounded up to a power of two by the kernel) */
    unsigned cq_entries; /* CQ size; 0 = 4 * entries (multishot ops can outpace the SQ) */
    uint32_t max_timers; /* heap capacity; ring_timer_arm fails with -ENOSPC beyond it */
    unsigned flags;      /* enum ring_init_flags */
};

/* A descriptor as the ring ops take it: a plain fd, or (RING_FD_FIXED set) a slot of the ring's
 * table of direct descriptors (ring_fd_install). Ops on a direct descriptor skip the kernel's
 * per-op file lookup and reference counting. */
#define RING_FD_FIXED (1 << 30)

static inline bool ring_fd_is_fixed(int fd)
{
    return fd >= 0 && (fd & RING_FD_FIXED) != 0;
}

struct ring {
    struct io_uring uring;
    /* direct descriptors (ring_files_init): a stack of the free slots */
    uint32_t *free_slots;
    uint32_t nfree_slots;
    uint32_t nslots;
    unsigned setup_flags; /* the IORING_SETUP_* flags the kernel accepted */
    unsigned features;    /* IORING_FEAT_* */
    int64_t now_ns;       /* monotonic time, refreshed after every wait */
    bool stop;            /* ring_run returns at the end of the iteration */
    uint64_t inflight;    /* ops the kernel owns, summed over all owners */
    struct ring_timer **heap;
    uint32_t nheap;
    uint32_t heap_cap;
    /* cross-thread wake-up: an eventfd with a read always pending */
    int wake_fd;
    struct op wake_op;
    uint64_t wake_val;
    ring_wake_cb *wake_cb;
    void *wake_arg;
    struct wheel *wheel; /* optional (ring_attach_wheel): long timers, in ms */
    /* batched waits (ring_set_batch): wait for batch_nr completions, at most batch_window_ns */
    uint32_t batch_nr;
    int64_t batch_window_ns;
    uint64_t stat_iterations; /* loop iterations */
    uint64_t stat_cqes;       /* completions reaped */
};

/* ring_init sets up r for the calling thread: SINGLE_ISSUER|DEFER_TASKRUN where the kernel has
 * them, then SINGLE_ISSUER|COOP_TASKRUN, then COOP_TASKRUN, then no flags. Returns 0, or -errno
 * (nothing to clean up on failure). */
int ring_init(struct ring *r, const struct ring_opts *o);

/* ring_cleanup closes the ring and the wake-up eventfd and frees the timer heap. Ops still in
 * flight are dropped with the ring: their owners must not be reused by the kernel after this. */
void ring_cleanup(struct ring *r);

/* ring_sqe returns a submission entry bound to op (or to nothing when op is NULL: its completion
 * is ignored), submitting what is queued when the SQ is full. op->inflight is set and the op
 * counted. Returns NULL when no entry can be had (the ring is badly overloaded). */
struct io_uring_sqe *ring_sqe(struct ring *r, struct op *op, enum ring_op_type type);

/* ring_run_once runs one iteration: submit, wait for a completion or the earliest timer (at
 * most max_wait_ns when >= 0; -1 waits as long as the timers allow), reap every ready
 * completion, fire due timers. Returns the number of completions reaped, or -errno when
 * io_uring_enter failed for a reason other than a timeout or a signal. */
int ring_run_once(struct ring *r, int64_t max_wait_ns);

/* ring_set_batch makes the next waits of ring_run_once gather up to nr completions (when the
 * kernel has them within window_ns) before returning, instead of waking for the first one:
 * fewer wake-ups and context switches under load, at the price of at most window_ns of added
 * latency per loop iteration. A wait never outlasts the earliest timer or max_wait_ns; when
 * nothing at all completed within the window, the wait goes on for the first completion as
 * usual. nr <= 1 turns batching off (the default). */
void ring_set_batch(struct ring *r, uint32_t nr, int64_t window_ns);

/* ring_files_init gives the ring a table of n direct descriptors (a sparse registration).
 * Returns 0, or -errno when the kernel has no such tables (ring_fd_install then keeps plain
 * fds, so callers need not care). */
int ring_files_init(struct ring *r, uint32_t n);

/* ring_fd_install moves the socket fd into a free slot of the table and closes fd, returning
 * the direct descriptor (RING_FD_FIXED | slot); when there is no table or no free slot, or the
 * kernel refuses, it returns fd unchanged. Either way the result is what the ring ops take. */
int ring_fd_install(struct ring *r, int fd);

/* ring_fd_close closes what ring_fd_install returned (a direct slot is emptied synchronously,
 * so the slot can be reused at once; ops the kernel still holds keep their own reference). */
void ring_fd_close(struct ring *r, int fd);

/* ring_attach_wheel makes w (initialised here, at the ring's monotonic time in ms) the ring's
 * timer wheel: every ring_run_once then bounds its wait by wheel_next_expiry() as well as by the
 * ring's own timers, and runs the wheel after reaping. The wheel is for the many long timers of
 * deliveries (retries, hours to days); its times are ring_now_ms(). */
void ring_attach_wheel(struct ring *r, struct wheel *w);

/* ring_now_ms is the ring's time on the wheel's clock (monotonic milliseconds). */
static inline uint64_t ring_now_ms(const struct ring *r)
{
    return (uint64_t)r->now_ns / 1000000;
}

/* ring_run loops ring_run_once until ring_stop() was called. Returns 0 or -errno. */
int ring_run(struct ring *r);

/* ring_stop makes ring_run return after the current iteration (ring thread only). */
void ring_stop(struct ring *r);

/* ring_now_ns is the monotonic time of the last wake-up (cheap: no system call). */
static inline int64_t ring_now_ns(const struct ring *r)
{
    return r->now_ns;
}

/* ring_clock_ns reads CLOCK_MONOTONIC now. */
int64_t ring_clock_ns(void);

/* ring_has_defer_taskrun tells whether the ring runs with IORING_SETUP_DEFER_TASKRUN. */
bool ring_has_defer_taskrun(const struct ring *r);

/* ---- operations: each returns 0, or -EBUSY when no SQE could be had ---------------------- */

/* ring_accept_multishot arms a multishot accept on listening socket fd: one completion per
 * connection (res = the new fd, SOCK_CLOEXEC set), until one arrives without
 * IORING_CQE_F_MORE, when the owner re-arms it. */
int ring_accept_multishot(struct ring *r, struct op *op, int fd);

/* ring_recv reads at most len bytes into buf (owned by the kernel until the completion). */
int ring_recv(struct ring *r, struct op *op, int fd, void *buf, size_t len, int flags);

/* ring_send writes at most len bytes of buf (MSG_NOSIGNAL is added). */
int ring_send(struct ring *r, struct op *op, int fd, const void *buf, size_t len, int flags);

/* ring_sendmsg writes msg's iovecs in one call (MSG_NOSIGNAL is added); msg and its iovecs stay
 * the caller's until the completion. */
int ring_sendmsg(struct ring *r, struct op *op, int fd, const struct msghdr *msg, int flags);

/* ring_read and ring_write are read(2) and write(2) at offset off (-1: the file position). */
int ring_read(struct ring *r, struct op *op, int fd, void *buf, size_t len, uint64_t off);
int ring_write(struct ring *r, struct op *op, int fd, const void *buf, size_t len, uint64_t off);

/* ring_connect connects socket fd to addr (which must stay valid until the completion). */
int ring_connect(struct ring *r, struct op *op, int fd, const struct sockaddr *addr,
                 socklen_t addrlen);

/* ring_nop completes op with res 0 on the next reap (tests; deferring work to the loop). */
int ring_nop(struct ring *r, struct op *op);

/* ring_cancel_fd asks the kernel to cancel every op in flight on fd; their completions arrive
 * with -ECANCELED (or their result, when they had already finished). The cancel itself has no
 * completion the caller sees. */
int ring_cancel_fd(struct ring *r, int fd);

/* ring_close closes fd through the ring, after the entries queued before it. No completion is
 * seen; when no SQE can be had it falls back to close(2). Ops still in flight on fd keep the
 * file open until they complete: cancel them first. */
void ring_close(struct ring *r, int fd);

/* ---- timers --------------------------------------------------------------------------------- */

/* ring_timer_init prepares t (disarmed) to call cb. */
void ring_timer_init(struct ring_timer *t, ring_timer_cb *cb);

/* ring_timer_arm (re)arms t for the absolute monotonic time expire_ns. Returns 0, or -ENOSPC
 * when the heap is full (t is then left disarmed). */
int ring_timer_arm(struct ring *r, struct ring_timer *t, int64_t expire_ns);

/* ring_timer_arm_in arms t for delay_ns after ring_now_ns(). */
int ring_timer_arm_in(struct ring *r, struct ring_timer *t, int64_t delay_ns);

/* ring_timer_cancel disarms t; a no-op when it is not armed. */
void ring_timer_cancel(struct ring *r, struct ring_timer *t);

static inline bool ring_timer_armed(const struct ring_timer *t)
{
    return t->slot != 0;
}

/* ring_next_deadline is the earliest armed deadline, or -1 when no timer is armed. */
int64_t ring_next_deadline(const struct ring *r);

/* ---- wake-up from other threads ------------------------------------------------------------ */

/* ring_wake_init creates the wake-up eventfd and keeps a read pending on it; cb runs on the ring
 * thread after each batch of ring_wake() calls. Returns 0 or -errno. */
int ring_wake_init(struct ring *r, ring_wake_cb *cb, void *arg);

/* ring_wake wakes r's loop from any thread (async-signal-safe: one write(2)). Returns 0 or
 * -errno. */
int ring_wake(struct ring *r);

#endif

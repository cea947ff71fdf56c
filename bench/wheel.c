/* wheel.c: the timer wheel against a binary min-heap (bench/heap_ref.h) at a million pending
 * timers, the load of a busy worker with many deliveries waiting for their retry.
 *
 *   build/bench/wheel [--json] [--timers N] [--ops M] [--span-ms S]
 *
 * Three phases, each timed alone, on the same pre-drawn workload for both structures:
 *   insert  N timers into an empty structure, expiries uniform over the next 24 h;
 *   mix     M times: cancel a random pending timer and add one (a delivery succeeded and another
 *           is scheduled; the freed timer is the one reused), expiry again over 24 h; one op is
 *           one cancel plus one add;
 *   expire  re-arm the N timers over the next S ms (untimed), then advance the clock in 1 ms
 *           steps, running the structure at every step, until all have fired; one op is one
 *           timer fired.
 * Noise (this is a shared 2-core machine): each structure runs in its own child process and the
 * parent has the two take turns slice by slice (each phase is cut into SLICES, the order
 * alternating), each slice timed in thread CPU time; a phase's time is the sum over its slices
 * of the best of 3 rounds. Peak RSS comes from wait4() per child; each child inherits the
 * workload arrays from the parent, reported apart. The target: the wheel at least 2x the heap
 * on the mix. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "heap_ref.h"
#include "wheel.h"

#define ROUNDS 3
#define SLICES 10 /* per phase: wheel and heap alternate slice by slice */
#define DAY_MS (24ull * 3600 * 1000)
#define T0 1700000000000ull /* the clock's start: an epoch-like value, not a round number */

enum phase { PH_INSERT, PH_MIX, PH_EXPIRE, NPHASES };
static const char *const phase_name[NPHASES] = {"insert", "mix", "expire"};

enum impl { IMPL_WHEEL, IMPL_HEAP, NIMPLS };
static const char *const impl_name[NIMPLS] = {"wheel", "heap"};

/* The workload, drawn once before any child starts. */
static uint32_t ntimers, nops;
static uint64_t span_ms;
static uint64_t *exp_insert; /* [ntimers] */
static uint32_t *victim;     /* [nops] */
static uint64_t *exp_mix;    /* [nops] */
static uint64_t *exp_expire; /* [ntimers] */

static uint64_t rng_state = 0x7133e1b3a5c0ffeeull;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* now_s is the calling thread's CPU time: on a shared machine a slice that loses the CPU to a
 * neighbour is not charged for the wait (the cache it shares still counts, for both alike). */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int draw_workload(void)
{
    exp_insert = malloc((size_t)ntimers * sizeof(*exp_insert));
    exp_expire = malloc((size_t)ntimers * sizeof(*exp_expire));
    victim = malloc((size_t)nops * sizeof(*victim));
    exp_mix = malloc((size_t)nops * sizeof(*exp_mix));
    if (!exp_insert || !exp_expire || !victim || !exp_mix) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < ntimers; i++) {
        exp_insert[i] = T0 + 1 + rnd() % DAY_MS;
        exp_expire[i] = T0 + 1 + rnd() % span_ms;
    }
    for (uint32_t i = 0; i < nops; i++) {
        victim[i] = (uint32_t)(rnd() % ntimers);
        exp_mix[i] = T0 + 1 + rnd() % DAY_MS;
    }
    return 0;
}

/* ======== the two contestants =============================================================== */

/* A contestant: set up an empty structure and its N timers, then run the phases in order, each
 * in SLICES consecutive slices (slice i of N items covers [range_lo(i, N), range_lo(i + 1, N))),
 * each slice returning its own duration (the expire phase re-arms the timers before the clock
 * of its first slice starts). */
struct contestant {
    int (*setup)(void);
    double (*phase[NPHASES])(unsigned slice);
    void (*teardown)(void);
};

static uint64_t range_lo(unsigned slice, uint64_t n)
{
    return n * slice / SLICES;
}

static uint64_t fired_count;

static struct wheel wh;
static struct wheel_timer *wt;

static void wheel_fire(struct wheel *w, struct wheel_timer *t)
{
    fired_count++;
}

static int wheel_setup(void)
{
    wt = malloc((size_t)ntimers * sizeof(*wt));
    if (!wt) {
        return -ENOMEM;
    }
    wheel_init(&wh, T0);
    for (uint32_t i = 0; i < ntimers; i++) {
        wheel_timer_init(&wt[i], wheel_fire);
    }
    return 0;
}

static double wheel_insert(unsigned slice)
{
    uint32_t end = (uint32_t)range_lo(slice + 1, ntimers);
    double t0 = now_s();
    for (uint32_t i = (uint32_t)range_lo(slice, ntimers); i < end; i++) {
        wheel_add(&wh, &wt[i], exp_insert[i]);
    }
    return now_s() - t0;
}

static double wheel_mix(unsigned slice)
{
    uint32_t end = (uint32_t)range_lo(slice + 1, nops);
    double t0 = now_s();
    for (uint32_t i = (uint32_t)range_lo(slice, nops); i < end; i++) {
        struct wheel_timer *v = &wt[victim[i]];
        wheel_del(v);
        wheel_add(&wh, v, exp_mix[i]);
    }
    return now_s() - t0;
}

static double wheel_expire(unsigned slice)
{
    if (slice == 0) {
        for (uint32_t i = 0; i < ntimers; i++) {
            wheel_add(&wh, &wt[i], exp_expire[i]);
        }
        fired_count = 0;
    }
    uint64_t end = T0 + range_lo(slice + 1, span_ms);
    double t0 = now_s();
    for (uint64_t now = T0 + range_lo(slice, span_ms) + 1; now <= end; now++) {
        wheel_run(&wh, now);
    }
    return now_s() - t0;
}

static void wheel_teardown(void)
{
    wheel_cleanup(&wh);
    free(wt);
}

static struct heap_ref hp;
static struct heap_ref_timer *ht;

static void heap_fire(struct heap_ref *h, struct heap_ref_timer *t)
{
    fired_count++;
}

static int heap_setup(void)
{
    ht = malloc((size_t)ntimers * sizeof(*ht));
    if (!ht || heap_ref_init(&hp, ntimers, T0) < 0) {
        free(ht);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < ntimers; i++) {
        heap_ref_timer_init(&ht[i], heap_fire);
    }
    return 0;
}

/* The heap never fills (it holds every timer at most once), so heap_ref_add cannot fail here. */
static double heap_insert(unsigned slice)
{
    uint32_t end = (uint32_t)range_lo(slice + 1, ntimers);
    double t0 = now_s();
    for (uint32_t i = (uint32_t)range_lo(slice, ntimers); i < end; i++) {
        heap_ref_add(&hp, &ht[i], exp_insert[i]);
    }
    return now_s() - t0;
}

static double heap_mix(unsigned slice)
{
    uint32_t end = (uint32_t)range_lo(slice + 1, nops);
    double t0 = now_s();
    for (uint32_t i = (uint32_t)range_lo(slice, nops); i < end; i++) {
        struct heap_ref_timer *v = &ht[victim[i]];
        heap_ref_del(&hp, v);
        heap_ref_add(&hp, v, exp_mix[i]);
    }
    return now_s() - t0;
}

static double heap_expire(unsigned slice)
{
    if (slice == 0) {
        for (uint32_t i = 0; i < ntimers; i++) {
            heap_ref_add(&hp, &ht[i], exp_expire[i]);
        }
        fired_count = 0;
    }
    uint64_t end = T0 + range_lo(slice + 1, span_ms);
    double t0 = now_s();
    for (uint64_t now = T0 + range_lo(slice, span_ms) + 1; now <= end; now++) {
        heap_ref_run(&hp, now);
    }
    return now_s() - t0;
}

static void heap_teardown(void)
{
    heap_ref_cleanup(&hp);
    free(ht);
}

static const struct contestant contestants[NIMPLS] = {
    [IMPL_WHEEL] = {wheel_setup, {wheel_insert, wheel_mix, wheel_expire}, wheel_teardown},
    [IMPL_HEAP] = {heap_setup, {heap_insert, heap_mix, heap_expire}, heap_teardown},
};

/* ======== lock-step children ================================================================ */

/* Each contestant lives in its own child process (so that its peak RSS is its own), and the
 * parent has the two run each phase in turn, so that both meet the same neighbours. */
struct child {
    pid_t pid;
    int cmd;   /* parent -> child: a phase number, or NPHASES to finish */
    int reply; /* child -> parent: struct reply */
};

struct reply {
    double seconds;
    uint64_t fired;
    int err;
};

static void child_main(const struct contestant *c, int cmd, int reply)
{
    struct reply r = {0};
    uint8_t what[2]; /* phase, slice */

    r.err = c->setup();
    if (write(reply, &r, sizeof(r)) != (ssize_t)sizeof(r) || r.err < 0) {
        _exit(1);
    }
    while (read(cmd, what, 2) == 2 && what[0] < NPHASES) {
        r.seconds = c->phase[what[0]](what[1]);
        r.fired = fired_count;
        if (write(reply, &r, sizeof(r)) != (ssize_t)sizeof(r)) {
            _exit(1);
        }
    }
    c->teardown();
    _exit(0);
}

/* child_ask has the child run one slice of a phase and waits for its reply; phase 0xff only
 * waits (for the reply to the set-up). */
static int child_ask(struct child *ch, uint8_t phase, uint8_t slice, struct reply *r)
{
    uint8_t what[2] = {phase, slice};

    if (phase != 0xff && write(ch->cmd, what, 2) != 2) {
        return -EPIPE;
    }
    if (read(ch->reply, r, sizeof(*r)) != (ssize_t)sizeof(*r)) {
        return -EPIPE;
    }
    return r->err;
}

/* child_start forks a child for c and waits until its structure is set up. */
static int child_start(struct child *ch, const struct contestant *c)
{
    int cmd[2], reply[2];
    struct reply r;

    if (pipe(cmd) < 0) {
        return -errno;
    }
    if (pipe(reply) < 0) {
        int err = -errno;
        close(cmd[0]);
        close(cmd[1]);
        return err;
    }
    fflush(stdout);
    ch->pid = fork();
    if (ch->pid == 0) {
        close(cmd[1]);
        close(reply[0]);
        child_main(c, cmd[0], reply[1]);
    }
    close(cmd[0]);
    close(reply[1]);
    ch->cmd = cmd[1];
    ch->reply = reply[0];
    if (ch->pid < 0) {
        close(ch->cmd);
        close(ch->reply);
        return -EAGAIN;
    }
    return child_ask(ch, 0xff, 0, &r);
}

/* child_finish ends the child and gives its peak RSS. */
static int child_finish(struct child *ch, long *maxrss_kib)
{
    uint8_t quit[2] = {NPHASES, 0};
    struct rusage ru;
    int status;

    if (write(ch->cmd, quit, 2) != 2) {
        /* it has gone already: wait4 says how */
    }
    close(ch->cmd);
    close(ch->reply);
    if (wait4(ch->pid, &status, 0, &ru) < 0) {
        return -errno;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        return -ECHILD;
    }
    *maxrss_kib = ru.ru_maxrss;
    return 0;
}

/* inherited_rss is the peak RSS of a child that does nothing: what every child starts with (the
 * workload arrays, the program), to be taken off the contestants' figures. -1 on failure. */
static long inherited_rss(void)
{
    struct rusage ru;
    int status;

    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        _exit(0);
    }
    if (wait4(pid, &status, 0, &ru) < 0) {
        return -1;
    }
    return ru.ru_maxrss;
}

static void usage(void)
{
    fprintf(stderr, "usage: wheel [--json] [--timers N] [--ops M] [--span-ms S]\n");
    exit(2);
}

static uint64_t parse_count(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0 || v > UINT32_MAX) {
        usage();
    }
    return v;
}

int main(int argc, char **argv)
{
    bool json = false;

    ntimers = 1000000;
    nops = 2000000;
    span_ms = 1000000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--timers") == 0 && i + 1 < argc) {
            ntimers = (uint32_t)parse_count(argv[++i]);
        } else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc) {
            nops = (uint32_t)parse_count(argv[++i]);
        } else if (strcmp(argv[i], "--span-ms") == 0 && i + 1 < argc) {
            span_ms = parse_count(argv[++i]);
        } else {
            usage();
        }
    }
    if (draw_workload() < 0) {
        fprintf(stderr, "wheel: out of memory for the workload\n");
        return 1;
    }
    long workload_kib = inherited_rss();
    if (workload_kib < 0) {
        fprintf(stderr, "wheel: fork failed\n");
        return 1;
    }

    static double best[NIMPLS][NPHASES][SLICES];
    long rss[NIMPLS] = {0};
    for (int k = 0; k < NIMPLS; k++) {
        for (int p = 0; p < NPHASES; p++) {
            for (unsigned sl = 0; sl < SLICES; sl++) {
                best[k][p][sl] = 1e300;
            }
        }
    }
    for (int round = 0; round < ROUNDS; round++) {
        struct child ch[NIMPLS];
        for (int k = 0; k < NIMPLS; k++) {
            int err = child_start(&ch[k], &contestants[k]);
            if (err < 0) {
                fprintf(stderr, "wheel: starting the %s failed: %s\n", impl_name[k],
                        strerror(-err));
                return 1;
            }
        }
        for (int p = 0; p < NPHASES; p++) {
            for (unsigned sl = 0; sl < SLICES; sl++) {
                for (int j = 0; j < NIMPLS; j++) {
                    int k = (j + round + p + (int)sl) % NIMPLS; /* who goes first alternates */
                    struct reply r;
                    int err = child_ask(&ch[k], (uint8_t)p, (uint8_t)sl, &r);
                    if (err < 0) {
                        fprintf(stderr, "wheel: the %s failed in %s: %s\n", impl_name[k],
                                phase_name[p], strerror(-err));
                        return 1;
                    }
                    if (p == PH_EXPIRE && sl == SLICES - 1 && r.fired != ntimers) {
                        fprintf(stderr, "wheel: the %s fired %llu timers of %u\n", impl_name[k],
                                (unsigned long long)r.fired, ntimers);
                        return 1;
                    }
                    best[k][p][sl] = r.seconds < best[k][p][sl] ? r.seconds : best[k][p][sl];
                }
            }
        }
        for (int k = 0; k < NIMPLS; k++) {
            long kib = 0;
            if (child_finish(&ch[k], &kib) < 0) {
                fprintf(stderr, "wheel: the %s child failed\n", impl_name[k]);
                return 1;
            }
            rss[k] = kib > rss[k] ? kib : rss[k];
        }
    }

    const double ops[NPHASES] = {ntimers, nops, ntimers};
    double rate[NIMPLS][NPHASES];
    for (int k = 0; k < NIMPLS; k++) {
        for (int p = 0; p < NPHASES; p++) {
            double sum = 0;
            for (unsigned sl = 0; sl < SLICES; sl++) {
                sum += best[k][p][sl];
            }
            rate[k][p] = ops[p] / sum;
        }
    }
    bool target_met = rate[IMPL_WHEEL][PH_MIX] >= 2.0 * rate[IMPL_HEAP][PH_MIX];

    if (json) {
        printf("{\"bench\":\"wheel\",\"timers\":%u,\"ops\":%u,\"span_ms\":%llu,\"rounds\":%d,",
               ntimers, nops, (unsigned long long)span_ms, ROUNDS);
        for (int p = 0; p < NPHASES; p++) {
            printf("\"%s\":{\"wheel_ops_s\":%.0f,\"heap_ops_s\":%.0f,\"ratio\":%.3f},",
                   phase_name[p], rate[IMPL_WHEEL][p], rate[IMPL_HEAP][p],
                   rate[IMPL_WHEEL][p] / rate[IMPL_HEAP][p]);
        }
        printf("\"maxrss_kib\":{\"wheel\":%ld,\"heap\":%ld,\"inherited\":%ld},", rss[IMPL_WHEEL],
               rss[IMPL_HEAP], workload_kib);
        printf("\"target_met\":%s}\n", target_met ? "true" : "false");
        return 0;
    }
    printf("timer wheel vs binary heap: %u pending timers, best of %d rounds\n", ntimers, ROUNDS);
    printf("%-44s %14s %14s %8s\n", "phase", "wheel ops/s", "heap ops/s", "ratio");
    char label[NPHASES][64];
    snprintf(label[PH_INSERT], sizeof(label[0]), "insert %u (over 24 h)", ntimers);
    snprintf(label[PH_MIX], sizeof(label[0]), "mix: cancel + insert, %u times", nops);
    snprintf(label[PH_EXPIRE], sizeof(label[0]), "expire %u, 1 ms steps over %llu s", ntimers,
             (unsigned long long)(span_ms / 1000));
    for (int p = 0; p < NPHASES; p++) {
        printf("%-44s %14.0f %14.0f %7.2fx\n", label[p], rate[IMPL_WHEEL][p], rate[IMPL_HEAP][p],
               rate[IMPL_WHEEL][p] / rate[IMPL_HEAP][p]);
    }
    long own[NIMPLS];
    for (int k = 0; k < NIMPLS; k++) {
        /* a child's high-water mark starts at its parent's (under ASan that hides the rest) */
        own[k] = rss[k] > workload_kib ? rss[k] - workload_kib : 0;
    }
    printf("peak RSS: wheel %.1f MiB, heap %.1f MiB; less the %.1f MiB both inherit (the "
           "workload): wheel %.1f MiB, heap %.1f MiB\n",
           rss[IMPL_WHEEL] / 1024.0, rss[IMPL_HEAP] / 1024.0, workload_kib / 1024.0,
           own[IMPL_WHEEL] / 1024.0, own[IMPL_HEAP] / 1024.0);
    printf("target (wheel >= 2x heap on the mix): %s\n", target_met ? "met" : "NOT met");
    return 0;
}

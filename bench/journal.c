/* journal.c: durable appends per second of the group-committing journal against one fdatasync
 * per record.
 *
 *   build/bench/journal [--dir DIR] [--seconds S] [--clients N] [--size B] [--json]
 *
 * Workload: N clients (default 64) each keep one 1 KiB record (B) in flight: when its waiter is
 * told the record is durable, the client appends the next. The figure is records acknowledged
 * per second, for S seconds (default 2) after a short warm-up. Old segments are dropped as the
 * run goes (journal_drop_before), so the disk use stays near two segments.
 *
 * The reference is what one would write first: for each record, the same framing (header and
 * CRC32C), a pwrite into a preallocated file and an fdatasync before the next. Both run in the
 * same directory (default: a fresh one under /tmp; it must be on a real disk for fdatasync to
 * mean anything, and the bench says so when it is not), in turns, best of 3 rounds each. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "journal.h"
#include "ring.h"

#define ROUNDS 3
#define MAX_CLIENTS 4096

struct client {
    struct journal_waiter w;
    struct bench *b;
};

struct bench {
    struct journal j;
    struct ring r;
    uint8_t *payload;
    size_t size;
    uint64_t acked;
    uint64_t errors;
    bool stopping;
};

static void client_done(struct journal *j, struct journal_waiter *w, int res)
{
    struct client *c = container_of(w, struct client, w);
    struct bench *b = c->b;
    if (res < 0) {
        b->errors++;
        return;
    }
    b->acked++;
    if (!b->stopping) {
        int rc = journal_append(j, 1, b->payload, b->size, &c->w);
        if (rc < 0) {
            b->errors++;
        }
    }
}

struct result {
    double rate;      /* records acknowledged per second */
    double per_fsync; /* records per fdatasync */
    uint64_t last_us, max_us;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int run_journal(const char *dir, size_t nclients, size_t size, double seconds,
                       struct result *out)
{
    static struct bench b;
    static struct client clients[MAX_CLIENTS];
    memset(&b, 0, sizeof(b));
    b.size = size;
    b.payload = malloc(size);
    memset(b.payload, 'j', size);
    struct ring_opts ro = {.entries = 256, .max_timers = 16};
    int rc = ring_init(&b.r, &ro);
    if (rc) {
        fprintf(stderr, "ring_init: %s\n", strerror(-rc));
        return rc;
    }
    char err[512];
    struct journal_opts jo = {.max_pending = 64u << 20};
    rc = journal_open(&b.j, &b.r, dir, &jo, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "journal_open: %s\n", err);
        ring_cleanup(&b.r);
        return rc;
    }
    for (size_t i = 0; i < nclients; i++) {
        clients[i].b = &b;
        clients[i].w.cb = client_done;
        journal_append(&b.j, 1, b.payload, size, &clients[i].w);
    }
    /* warm-up, then the measured run */
    int64_t t_end = ring_clock_ns() + 200000000;
    while (ring_clock_ns() < t_end) {
        ring_run_once(&b.r, 10000000);
    }
    struct journal_stats s0, s1;
    journal_stats(&b.j, &s0);
    uint64_t a0 = b.acked;
    int64_t t0 = ring_clock_ns();
    t_end = t0 + (int64_t)(seconds * 1e9);
    uint64_t next_drop = a0 + 20000;
    while (ring_clock_ns() < t_end) {
        ring_run_once(&b.r, 10000000);
        if (b.acked >= next_drop) {
            journal_drop_before(&b.j, journal_last_seq(&b.j) - nclients);
            next_drop = b.acked + 20000;
        }
    }
    int64_t t1 = ring_clock_ns();
    journal_stats(&b.j, &s1);
    uint64_t a1 = b.acked;
    b.stopping = true;
    rc = journal_close(&b.j);
    ring_cleanup(&b.r);
    free(b.payload);
    if (rc || b.errors) {
        fprintf(stderr, "journal run failed: %d, %" PRIu64 " errors\n", rc, b.errors);
        return rc ? rc : -EIO;
    }
    out->rate = (double)(a1 - a0) / ((double)(t1 - t0) * 1e-9);
    uint64_t fs = s1.fsyncs - s0.fsyncs;
    out->per_fsync = fs ? (double)(s1.records - s0.records) / (double)fs : 0;
    out->last_us = s1.last_fsync_us;
    out->max_us = s1.max_fsync_us;
    return 0;
}

/* the reference: frame, pwrite, fdatasync, one record at a time */
static int run_reference(const char *dir, size_t size, double seconds, struct result *out)
{
    char path[640];
    snprintf(path, sizeof(path), "%s/reference.log", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        return -errno;
    }
    const uint64_t cap = 64ull << 20;
    if (fallocate(fd, 0, 0, (off_t)cap) != 0) {
        perror("fallocate");
    }
    uint8_t *payload = malloc(size);
    uint8_t *rec = malloc(journal_record_size(size));
    memset(payload, 'r', size);
    uint64_t off = 0, seq = 0, n = 0;
    int64_t t0 = ring_clock_ns();
    int64_t t_end = t0 + (int64_t)(seconds * 1e9);
    int rc = 0;
    while (ring_clock_ns() < t_end) {
        size_t rs = journal_record_size(size);
        if (off + rs > cap) {
            off = 0;
        }
        journal_encode(rec, 1, ++seq, payload, size);
        if (pwrite(fd, rec, rs, (off_t)off) != (ssize_t)rs || fdatasync(fd) != 0) {
            rc = -errno;
            break;
        }
        off += rs;
        n++;
    }
    int64_t t1 = ring_clock_ns();
    close(fd);
    unlink(path);
    free(payload);
    free(rec);
    out->rate = (double)n / ((double)(t1 - t0) * 1e-9);
    out->per_fsync = 1;
    out->last_us = out->max_us = 0;
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: journal [--dir DIR] [--seconds S] [--clients N] [--size B] [--json]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *base = NULL;
    double seconds = 2;
    size_t nclients = 64, size = 1024;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            base = argv[++i];
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--clients") && i + 1 < argc) {
            nclients = strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            size = strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else {
            usage();
        }
    }
    if (nclients == 0 || nclients > MAX_CLIENTS || size > (1u << 20) || seconds <= 0) {
        usage();
    }
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/hookring-bench-journal-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpl)) {
        perror(tmpl);
        return 1;
    }
    struct statfs sfs;
    if (statfs(tmpl, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC) {
        fprintf(stderr,
                "journal bench: %s is on tmpfs, where fdatasync does nothing: the "
                "figures say nothing about a disk (use --dir)\n",
                tmpl);
    }
    char jdir[600];
    struct result best_j = {0}, best_r = {0};
    int rc = 0;
    for (int round = 0; round < ROUNDS && rc == 0; round++) {
        struct result rr = {0}, rj = {0};
        rc = run_reference(tmpl, size, seconds, &rr);
        if (rc == 0) {
            snprintf(jdir, sizeof(jdir), "%s/j%d", tmpl, round);
            rc = run_journal(jdir, nclients, size, seconds, &rj);
            rm_rf(jdir);
        }
        if (rc == 0) {
            if (rr.rate > best_r.rate) {
                best_r = rr;
            }
            if (rj.rate > best_j.rate) {
                best_j = rj;
            }
        }
    }
    rm_rf(tmpl);
    if (rc) {
        fprintf(stderr, "journal bench failed: %s\n", strerror(-rc));
        return 1;
    }
    double ratio = best_r.rate > 0 ? best_j.rate / best_r.rate : 0;
    if (json) {
        printf("{\"bench\":\"journal\",\"record_bytes\":%zu,\"clients\":%zu,\"seconds\":%.1f,"
               "\"journal_per_s\":%.0f,\"reference_per_s\":%.0f,\"ratio\":%.2f,"
               "\"records_per_fsync\":%.1f,\"max_fsync_us\":%" PRIu64 "}\n",
               size, nclients, seconds, best_j.rate, best_r.rate, ratio, best_j.per_fsync,
               best_j.max_us);
    } else {
        printf("durable appends of %zu-byte records, %zu clients, best of %d x %.1f s\n", size,
               nclients, ROUNDS, seconds);
        printf("  one fdatasync per record (reference) %10.0f records/s\n", best_r.rate);
        printf("  journal, group commit                 %10.0f records/s  (%.1f records per "
               "fsync, fsync latency last %" PRIu64 " us, max %" PRIu64 " us)\n",
               best_j.rate, best_j.per_fsync, best_j.last_us, best_j.max_us);
        printf("  ratio journal / reference             %10.2fx\n", ratio);
    }
    return 0;
}

/* test_journal.c: the durable journal. CRC32C against known vectors (both implementations), the
 * record codec, group commit (waiters called only once their fdatasync is done, batches really
 * batching), recovery (a torn tail cut at every byte of the last record, a flipped bit in the
 * middle refused with the file and offset), roll-over, retention, backpressure and a failing
 * disk. Every test works in its own directory made with mkdtemp under /tmp, removed at the
 * end. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "journal.h"

static char tmpdir[64];
static char jdir[96];
static struct ring ring;

static void setup(void)
{
    strcpy(tmpdir, "/tmp/hookring-journal-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(jdir, sizeof(jdir), "%s/j", tmpdir);
    struct ring_opts ro = {.entries = 64, .max_timers = 16};
    cr_assert_eq(ring_init(&ring, &ro), 0);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    ring_cleanup(&ring);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

// cppcheck-suppress unknownMacro
TestSuite(journal, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ------------------------------------------------------------------------------- */

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        for (int i_ = 0; i_ < 2000 && !(cond); i_++) {                                             \
            cr_assert_geq(ring_run_once(&ring, 50 * 1000000LL), 0);                                \
        }                                                                                          \
        cr_assert(cond, "timed out waiting for " #cond);                                           \
    } while (0)

/* payload_of is the deterministic payload of record number i (1-based) under a salt. */
static size_t payload_of(uint64_t i, uint32_t salt, uint8_t *out, size_t max)
{
    size_t len = (size_t)((i * 37 + salt) % 97);
    if (len > max) {
        len = max;
    }
    for (size_t k = 0; k < len; k++) {
        out[k] = (uint8_t)(i * 131 + k * 7 + salt);
    }
    return len;
}

struct tw {
    struct journal_waiter w;
    int res;
    int calls;
};

static uint64_t acked_last_seq; /* seq of the last waiter acked, to check the order */
static int acked, failed_acks;

static void tw_done(struct journal *j, struct journal_waiter *w, int res)
{
    struct tw *t = container_of(w, struct tw, w);
    t->calls++;
    t->res = res;
    if (res == 0) {
        cr_assert_gt(w->seq, acked_last_seq, "acknowledged in order");
        acked_last_seq = w->seq;
        acked++;
    } else {
        failed_acks++;
    }
}

static void tw_reset(struct tw *t, size_t n)
{
    memset(t, 0, n * sizeof(*t));
    for (size_t i = 0; i < n; i++) {
        t[i].w.cb = tw_done;
        t[i].res = 1;
    }
    acked_last_seq = 0;
    acked = failed_acks = 0;
}

static void jopen(struct journal *j, const struct journal_opts *o)
{
    char err[512];
    int rc = journal_open(j, &ring, jdir, o, err, sizeof(err));
    cr_assert_eq(rc, 0, "journal_open: %d %s", rc, err);
}

/* append_n appends records first..first+n-1 (payload_of(i, salt)) with waiters t[0..n). */
static void append_n(struct journal *j, uint64_t first, size_t n, uint32_t salt, struct tw *t)
{
    uint8_t p[128];
    for (size_t k = 0; k < n; k++) {
        size_t len = payload_of(first + k, salt, p, sizeof(p));
        int rc = journal_append(j, (uint8_t)(first + k), p, len, t ? &t[k].w : NULL);
        cr_assert_eq(rc, 0, "append %zu: %d", k, rc);
        if (t) {
            cr_assert_eq(t[k].w.seq, first + k);
        }
    }
}

/* room for every record the kill test's child writes in its 300 ms (about 100 000 here, when
 * every batch goes as soon as the one before it is durable) */
#define REPLAYED_MAX (1 << 20)
struct replayed {
    size_t n;
    uint64_t seq[REPLAYED_MAX];
    uint8_t type[REPLAYED_MAX];
    bool payload_ok[REPLAYED_MAX];
    uint32_t salt_from_seq; /* records with seq >= this use salt2 */
    uint32_t salt, salt2;
};

static int collect(void *arg, const struct journal_record *rec)
{
    struct replayed *r = arg;
    cr_assert_lt(r->n, ARRAY_SIZE(r->seq));
    uint8_t want[128];
    uint32_t salt = r->salt_from_seq && rec->seq >= r->salt_from_seq ? r->salt2 : r->salt;
    size_t len = payload_of(rec->seq, salt, want, sizeof(want));
    r->seq[r->n] = rec->seq;
    r->type[r->n] = rec->type;
    r->payload_ok[r->n] = rec->len == len && memcmp(rec->payload, want, len) == 0;
    r->n++;
    return 0;
}

/* check_replay replays j and checks records first..first+n-1 with their payloads. */
static void check_replay(struct journal *j, uint64_t first, size_t n, struct replayed *r)
{
    r->n = 0;
    cr_assert_eq(journal_replay(j, collect, r), 0, "replay: %s", journal_error(j));
    cr_assert_eq(r->n, n, "replayed %zu records, expected %zu", r->n, n);
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(r->seq[k], first + k);
        cr_assert_eq(r->type[k], (uint8_t)(first + k));
        cr_assert(r->payload_ok[k], "payload of seq %" PRIu64, first + k);
    }
}

static void seg_path(char *out, size_t n, uint64_t base)
{
    snprintf(out, n, "%s/%020" PRIu64 ".seg", jdir, base);
}

static size_t read_file(const char *path, uint8_t **out)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    struct stat sb;
    cr_assert_eq(fstat(fd, &sb), 0);
    size_t n = (size_t)sb.st_size;
    *out = malloc(n ? n : 1);
    cr_assert_eq(pread(fd, *out, n, 0), (ssize_t)n);
    close(fd);
    return n;
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, p, n), (ssize_t)n);
    close(fd);
}

/* list_segs reads the directory's segment bases, sorted. */
static size_t list_segs(uint64_t *bases, size_t max)
{
    DIR *d = opendir(jdir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".seg")) {
            cr_assert_lt(n, max);
            bases[n++] = strtoull(e->d_name, NULL, 10);
        }
    }
    closedir(d);
    for (size_t a = 0; a < n; a++) {
        for (size_t b = a + 1; b < n; b++) {
            if (bases[b] < bases[a]) {
                uint64_t t = bases[a];
                bases[a] = bases[b];
                bases[b] = t;
            }
        }
    }
    return n;
}

static uint64_t fsyncs_of(const struct journal *j)
{
    struct journal_stats st;
    journal_stats(j, &st);
    return st.fsyncs;
}

/* ---- CRC32C -------------------------------------------------------------------------------- */

struct crc_vec {
    uint8_t data[48];
    size_t len;
    uint32_t crc;
};

/* "123456789", and the RFC 3720 (iSCSI) B.4 vectors */
static void crc_vectors(struct crc_vec *v, size_t *n)
{
    size_t k = 0;
    memcpy(v[k].data, "123456789", 9);
    v[k].len = 9;
    v[k++].crc = 0xE3069283;
    v[k].len = 0;
    v[k++].crc = 0;
    memset(v[k].data, 0, 32);
    v[k].len = 32;
    v[k++].crc = 0x8A9136AA;
    memset(v[k].data, 0xff, 32);
    v[k].len = 32;
    v[k++].crc = 0x62A8AB43;
    for (int i = 0; i < 32; i++) {
        v[k].data[i] = (uint8_t)i;
    }
    v[k].len = 32;
    v[k++].crc = 0x46DD794E;
    for (int i = 0; i < 32; i++) {
        v[k].data[i] = (uint8_t)(31 - i);
    }
    v[k].len = 32;
    v[k++].crc = 0x113FDB5C;
    static const uint8_t iscsi_read[48] = {
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    memcpy(v[k].data, iscsi_read, 48);
    v[k].len = 48;
    v[k++].crc = 0xD9963A56;
    *n = k;
}

Test(journal, crc32c_known_vectors_portable)
{
    struct crc_vec v[8];
    size_t n;
    crc_vectors(v, &n);
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(journal_crc32c_sw(0, v[i].data, v[i].len), v[i].crc, "vector %zu", i);
        cr_expect_eq(journal_crc32c(0, v[i].data, v[i].len), v[i].crc, "vector %zu", i);
    }
}

Test(journal, crc32c_known_vectors_sse42)
{
    if (!journal_crc32c_hw_available()) {
        cr_log_warn("no SSE4.2 on this CPU: the hardware CRC32C is not tested");
        return;
    }
    struct crc_vec v[8];
    size_t n;
    crc_vectors(v, &n);
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(journal_crc32c_hw(0, v[i].data, v[i].len), v[i].crc, "vector %zu", i);
    }
}

Test(journal, crc32c_implementations_agree_at_every_length_alignment_and_split)
{
    static uint8_t buf[5200];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    bool hw = journal_crc32c_hw_available();
    for (size_t off = 0; off < 8; off++) {
        /* every length to 530 (the short 3-way rounds, 96 bytes, and their tails), then a
         * spread past the long rounds (768 bytes), up to several of each */
        for (size_t len = 0; len + off <= 5100; len += len < 530 ? 1 : 37) {
            uint32_t sw = journal_crc32c_sw(0, buf + off, len);
            if (hw) {
                cr_assert_eq(journal_crc32c_hw(0, buf + off, len), sw, "off %zu len %zu", off, len);
            }
            size_t half = len / 3;
            uint32_t inc =
                journal_crc32c(journal_crc32c(0, buf + off, half), buf + off + half, len - half);
            cr_assert_eq(inc, sw, "incremental, off %zu len %zu", off, len);
        }
    }
}

/* ---- the codec ----------------------------------------------------------------------------- */

Test(journal, codec_round_trip_need_more_and_every_bit_flip)
{
    const char *msg = "event: {\"id\":\"evt_1\"}";
    size_t len = strlen(msg);
    uint8_t rec[128];
    size_t size = journal_record_size(len);
    journal_encode(rec, 7, 42, msg, len);

    struct journal_record out;
    cr_assert_eq(journal_decode(rec, size, &out), JOURNAL_OK);
    cr_assert_eq(out.seq, 42);
    cr_assert_eq(out.type, 7);
    cr_assert_eq(out.len, len);
    cr_assert_eq(out.size, size);
    cr_assert_eq(out.payload, rec + JOURNAL_REC_HDR_SIZE);
    cr_assert_eq(memcmp(out.payload, msg, len), 0);

    /* followed by more bytes: still exactly one record */
    uint8_t two[256];
    memcpy(two, rec, size);
    journal_encode(two + size, 1, 43, NULL, 0);
    cr_assert_eq(journal_decode(two, size + JOURNAL_REC_HDR_SIZE, &out), JOURNAL_OK);
    cr_assert_eq(out.size, size);
    cr_assert_eq(journal_decode(two + size, JOURNAL_REC_HDR_SIZE, &out), JOURNAL_OK);
    cr_assert_eq(out.len, 0);
    cr_assert_eq(out.seq, 43);

    for (size_t n = 0; n < size; n++) {
        cr_assert_eq(journal_decode(rec, n, &out), JOURNAL_NEED_MORE, "prefix %zu", n);
        cr_assert_eq(out.size, n < JOURNAL_REC_HDR_SIZE ? JOURNAL_REC_HDR_SIZE : size);
    }
    for (size_t bit = 0; bit < size * 8; bit++) {
        rec[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        cr_assert_eq(journal_decode(rec, size, &out), JOURNAL_CORRUPT, "bit %zu", bit);
        rec[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    uint8_t zeros[64] = {0};
    cr_assert_eq(journal_decode(zeros, sizeof(zeros), &out), JOURNAL_CORRUPT);
    journal_encode(rec, 7, 0, msg, len);
    cr_assert_eq(journal_decode(rec, size, &out), JOURNAL_CORRUPT, "seq 0 is never a record");
}

/* ---- group commit -------------------------------------------------------------------------- */

static int syncs_done;

static int count_syncs(void *arg, int res)
{
    syncs_done++;
    return res;
}

/* The record a waiter is told about must already be in the file, behind an fdatasync. */
static struct journal *watched;

static void tw_check_durable(struct journal *j, struct journal_waiter *w, int res)
{
    cr_assert_eq(res, 0);
    cr_assert_gt(syncs_done, 0, "acknowledged before any fdatasync completed");
    char path[160];
    const struct journal_seg *s = &j->segs[j->nsegs - 1];
    seg_path(path, sizeof(path), s->base_seq);
    uint8_t *img;
    size_t n = read_file(path, &img);
    struct journal_scan_result sr;
    journal_scan(img, n, s->base_seq, &sr);
    free(img);
    cr_assert_geq(sr.last_seq, w->seq, "seq %" PRIu64 " acknowledged but not in the file", w->seq);
    tw_done(j, w, res);
}

Test(journal, acknowledges_only_durable_records_and_replays_them_in_order)
{
    struct journal j;
    struct journal_opts o = {.segment_size = 1 << 16, .test_sync_hook = count_syncs};
    syncs_done = 0;
    jopen(&j, &o);
    watched = &j;
    cr_assert_eq(journal_last_seq(&j), 0);
    static struct tw t[100];
    tw_reset(t, 100);
    for (size_t i = 0; i < 100; i++) {
        t[i].w.cb = tw_check_durable;
    }
    for (size_t b = 0; b < 10; b++) {
        append_n(&j, 1 + b * 10, 10, 5, t + b * 10);
        for (size_t k = 0; k < 10; k++) {
            cr_assert_eq(t[b * 10 + k].calls, 0, "no callback from inside journal_append");
        }
        cr_assert_geq(ring_run_once(&ring, 0), 0);
    }
    cr_assert_eq(journal_last_seq(&j), 100);
    RUN_UNTIL(acked == 100);
    for (size_t i = 0; i < 100; i++) {
        cr_assert_eq(t[i].calls, 1);
        cr_assert_eq(t[i].res, 0);
    }
    struct journal_stats st;
    journal_stats(&j, &st);
    cr_assert_eq(st.records, 100);
    cr_assert_geq(st.batches, 1);
    cr_assert_eq(st.pending_bytes, 0);
    cr_assert_geq(st.max_fsync_us, st.last_fsync_us);
    cr_assert_eq(journal_close(&j), 0);

    jopen(&j, &o);
    static struct replayed r = {.salt = 5};
    check_replay(&j, 1, 100, &r);
    cr_assert_eq(journal_last_seq(&j), 100);
    /* and the journal goes on where it stopped */
    tw_reset(t, 1);
    append_n(&j, 101, 1, 5, t);
    RUN_UNTIL(acked == 1);
    cr_assert_eq(journal_close(&j), 0);
    jopen(&j, &o);
    check_replay(&j, 1, 101, &r);
    cr_assert_eq(journal_close(&j), 0);
}

/* A wait's waiter: every record appended before it must have been acknowledged already, and
 * be in the file (tw_check_durable's check). */
static struct tw *wait_for; /* the record waiters it comes after */
static size_t wait_nfor;
static int waits_done;

static void wait_done(struct journal *j, struct journal_waiter *w, int res)
{
    cr_assert_eq(res, 0);
    for (size_t i = 0; i < wait_nfor; i++) {
        cr_assert_eq(wait_for[i].calls, 1, "the wait was answered before record %zu", i);
    }
    cr_assert_gt(syncs_done, 0);
    waits_done++;
}

Test(journal, a_wait_is_answered_once_everything_appended_before_is_durable)
{
    struct journal j;
    struct journal_opts o = {.segment_size = 1 << 16, .test_sync_hook = count_syncs};
    syncs_done = 0;
    waits_done = 0;
    jopen(&j, &o);
    watched = &j;
    struct journal_waiter w = {.cb = wait_done};
    cr_assert_eq(journal_wait(&j, &w), 1, "nothing appended: durable already");

    /* records in the batch being gathered */
    static struct tw t[10];
    tw_reset(t, 10);
    for (size_t i = 0; i < 10; i++) {
        t[i].w.cb = tw_check_durable;
    }
    append_n(&j, 1, 10, 5, t);
    wait_for = t;
    wait_nfor = 10;
    cr_assert_eq(journal_wait(&j, &w), 0);
    cr_assert_eq(w.seq, 10);
    cr_assert_eq(waits_done, 0, "never from inside journal_wait");
    RUN_UNTIL(waits_done == 1);

    /* a record in flight, nothing gathered after it */
    tw_reset(t, 1);
    t[0].w.cb = tw_check_durable;
    append_n(&j, 11, 1, 5, t);
    cr_assert_eq(journal_flush(&j), 0);
    wait_nfor = 1;
    cr_assert_eq(journal_wait(&j, &w), 0);
    cr_assert_eq(w.seq, 11);
    RUN_UNTIL(waits_done == 2);
    cr_assert_eq(journal_wait(&j, &w), 1);

    struct journal_stats st;
    journal_stats(&j, &st);
    cr_assert_eq(st.records, 11, "a wait appends no record");
    cr_assert_eq(journal_close(&j), 0);
}

/* A record nobody waits for (a delivery's outcome) waits for the batch delay, to share an
 * fdatasync with the records that follow it. */
Test(journal, a_record_nobody_waits_for_goes_after_the_batch_delay)
{
    struct journal j;
    struct journal_opts o = {.batch_delay_ns = 300 * 1000000LL};
    jopen(&j, &o);
    int64_t t0 = ring_clock_ns();
    append_n(&j, 1, 1, 0, NULL);
    struct journal_stats st;
    for (int i = 0; i < 5; i++) {
        cr_assert_geq(ring_run_once(&ring, 0), 0);
    }
    journal_stats(&j, &st);
    cr_assert_eq(st.batches, 0, "one record nobody waits for waits for the timer");
    cr_assert(ring_timer_armed(&j.timer));
    struct tw t[1];
    tw_reset(t, 1);
    cr_assert_eq(journal_wait(&j, &t[0].w), 0);
    RUN_UNTIL(acked == 1);
    journal_stats(&j, &st);
    cr_assert_eq(st.batches, 1);
    cr_assert_eq(st.records, 1);
    cr_assert_lt(ring_clock_ns() - t0, 250 * 1000000LL, "a wait pulls the batch in");
    cr_assert_eq(journal_close(&j), 0);

    /* and without a wait it goes by itself, no sooner than the delay (counted from the ring's
     * time, which the journal arms its timer from) */
    jopen(&j, &o);
    t0 = ring_now_ns(&ring);
    append_n(&j, 2, 1, 0, NULL);
    for (int i = 0; i < 40; i++) {
        journal_stats(&j, &st);
        if (st.batches) {
            break;
        }
        cr_assert_geq(ring_run_once(&ring, 50 * 1000000LL), 0);
    }
    journal_stats(&j, &st);
    cr_assert_eq(st.batches, 1);
    cr_assert_geq(ring_clock_ns() - t0, 300 * 1000000LL, "written before the delay");
    cr_assert_eq(journal_close(&j), 0);
}

/* An acknowledgement is not held back to gather more: a record someone waits for goes at the
 * end of the ring's iteration, with what was gathered before it, whatever the batch delay. */
Test(journal, a_record_waited_for_goes_at_the_end_of_the_iteration)
{
    struct journal j;
    struct journal_opts o = {.batch_delay_ns = 60 * 1000000000LL};
    jopen(&j, &o);
    int64_t t0 = ring_clock_ns();
    append_n(&j, 1, 2, 0, NULL);
    struct tw t[3];
    tw_reset(t, 3);
    append_n(&j, 3, 3, 0, t);
    struct journal_stats st;
    journal_stats(&j, &st);
    cr_assert_eq(st.batches, 0, "never from inside journal_append");
    cr_assert(ring_timer_armed(&j.timer));
    cr_assert_leq(j.timer.expire_ns, ring_now_ns(&ring), "due at once");
    RUN_UNTIL(acked == 3);
    journal_stats(&j, &st);
    cr_assert_eq(st.batches, 1, "the five records in one batch");
    cr_assert_eq(st.records, 5);
    cr_assert_lt(ring_clock_ns() - t0, 5 * 1000000000LL);
    cr_assert_eq(journal_close(&j), 0);
}

Test(journal, a_thousand_appends_in_one_iteration_take_a_few_fdatasyncs)
{
    struct journal j;
    jopen(&j, NULL);
    uint64_t f0 = fsyncs_of(&j);
    static struct tw t[1000];
    tw_reset(t, 1000);
    append_n(&j, 1, 1000, 3, t);
    RUN_UNTIL(acked == 1000);
    struct journal_stats st;
    journal_stats(&j, &st);
    cr_assert_eq(st.records, 1000);
    cr_assert_leq(st.fsyncs - f0, 10, "%" PRIu64 " fdatasyncs for 1000 records", st.fsyncs - f0);
    cr_assert_leq(st.batches, 10);
    cr_assert_eq(journal_close(&j), 0);
    jopen(&j, NULL);
    static struct replayed r = {.salt = 3};
    check_replay(&j, 1, 1000, &r);
    cr_assert_eq(journal_close(&j), 0);
}

/* A waiter may append: its record joins the next batch. */
static struct tw chain[10];
static size_t chain_n;
static uint8_t chain_p[16] = "chained";

static void chain_done(struct journal *j, struct journal_waiter *w, int res)
{
    cr_assert_eq(res, 0);
    chain_n++;
    if (chain_n < ARRAY_SIZE(chain)) {
        chain[chain_n].w.cb = chain_done;
        cr_assert_eq(journal_append(j, 1, chain_p, 7, &chain[chain_n].w), 0);
    }
}

Test(journal, a_waiter_may_append_from_its_callback)
{
    struct journal j;
    jopen(&j, NULL);
    chain_n = 0;
    chain[0].w.cb = chain_done;
    cr_assert_eq(journal_append(&j, 1, chain_p, 7, &chain[0].w), 0);
    RUN_UNTIL(chain_n == ARRAY_SIZE(chain));
    cr_assert_eq(chain[9].w.seq, 10);
    cr_assert_eq(journal_close(&j), 0);
}

Test(journal, records_without_waiters_and_close_flushes)
{
    struct journal j;
    jopen(&j, NULL);
    append_n(&j, 1, 50, 9, NULL);
    cr_assert_eq(journal_close(&j), 0, "close writes what is queued");
    jopen(&j, NULL);
    static struct replayed r = {.salt = 9};
    check_replay(&j, 1, 50, &r);
    cr_assert_eq(journal_close(&j), 0);
}

/* ---- backpressure and failures ------------------------------------------------------------- */

Test(journal, pending_bytes_are_capped_with_eagain)
{
    struct journal j;
    struct journal_opts o = {.max_pending = 4096, .batch_bytes = 2048};
    jopen(&j, &o);
    static struct tw t[200];
    tw_reset(t, 200);
    uint8_t p[100] = {0};
    size_t n = 0;
    int rc = 0;
    while (n < 200 && (rc = journal_append(&j, 1, p, sizeof(p), &t[n].w)) == 0) {
        n++;
    }
    cr_assert_eq(rc, -EAGAIN);
    cr_assert_gt(n, 10);
    cr_assert_lt(n, 4096 / 100);
    struct journal_stats st;
    journal_stats(&j, &st);
    cr_assert_leq(st.pending_bytes, 4096);
    cr_assert_eq(st.eagain, 1);
    cr_assert_eq(t[n].calls, 0, "a refused append has no callback");
    cr_assert_eq(journal_last_seq(&j), n, "a refused append takes no sequence number");
    cr_assert_eq(journal_append(&j, 1, p, 5000, NULL), -EMSGSIZE);

    RUN_UNTIL(acked == (int)n);
    journal_stats(&j, &st);
    cr_assert_eq(st.pending_bytes, 0);
    cr_assert_eq(journal_append(&j, 1, p, sizeof(p), &t[n].w), 0, "room again once durable");
    RUN_UNTIL(acked == (int)n + 1);
    cr_assert_eq(journal_close(&j), 0);
}

static int sync_calls;

static int fail_second_sync(void *arg, int res)
{
    return ++sync_calls >= 2 ? -EIO : res;
}

Test(journal, a_failed_fdatasync_fails_every_waiter_and_every_later_append)
{
    struct journal j;
    struct journal_opts o = {.test_sync_hook = fail_second_sync};
    sync_calls = 0;
    jopen(&j, &o);
    static struct tw t[30];
    tw_reset(t, 30);
    append_n(&j, 1, 10, 0, t);
    cr_assert_eq(journal_flush(&j), 0);
    RUN_UNTIL(acked == 10);

    append_n(&j, 11, 10, 0, t + 10);
    cr_assert_eq(journal_flush(&j), 0);
    cr_assert(j.inflight);
    append_n(&j, 21, 10, 0, t + 20); /* queued behind the batch that will fail */
    RUN_UNTIL(failed_acks == 20);
    for (size_t i = 0; i < 30; i++) {
        cr_assert_eq(t[i].calls, 1, "waiter %zu called once", i);
        cr_assert_eq(t[i].res, i < 10 ? 0 : -EIO, "waiter %zu", i);
    }
    cr_assert(journal_failed(&j));
    cr_assert_neq(journal_error(&j)[0], '\0');
    cr_assert_eq(journal_append(&j, 1, "x", 1, NULL), -EIO);
    cr_assert_eq(journal_flush(&j), -EIO);
    struct journal_stats st;
    journal_stats(&j, &st);
    cr_assert_eq(st.records, 10, "only the first batch counts as durable");
    cr_assert_eq(journal_close(&j), -EIO);
}

Test(journal, one_journal_per_directory)
{
    struct journal a, b;
    jopen(&a, NULL);
    char err[256];
    cr_assert_eq(journal_open(&b, &ring, jdir, NULL, err, sizeof(err)), -EBUSY);
    cr_assert(strstr(err, jdir), "%s", err);
    cr_assert_eq(journal_close(&a), 0);
    jopen(&b, NULL);
    cr_assert_eq(journal_close(&b), 0);
}

/* ---- segments ------------------------------------------------------------------------------ */

Test(journal, segments_roll_over_are_preallocated_and_replay_across)
{
    struct journal j;
    struct journal_opts o = {.segment_size = 4096, .batch_records = 16};
    jopen(&j, &o);
    static struct tw t[600];
    tw_reset(t, 600);
    /* in small steps, then 400 at once: a batch bigger than a segment is cut at records */
    for (size_t b = 0; b < 10; b++) {
        append_n(&j, 1 + b * 20, 20, 1, t + b * 20);
        RUN_UNTIL(acked == (int)(b + 1) * 20);
    }
    append_n(&j, 201, 400, 1, t + 200);
    RUN_UNTIL(acked == 600);
    struct journal_stats st;
    journal_stats(&j, &st);
    cr_assert_geq(st.segments, 10);
    cr_assert_eq(st.segments, st.segments_created);
    cr_assert_eq(journal_close(&j), 0);

    uint64_t bases[64];
    size_t n = list_segs(bases, 64);
    cr_assert_eq(n, st.segments);
    cr_assert_eq(bases[0], 1);
    for (size_t i = 0; i < n; i++) {
        char path[160];
        seg_path(path, sizeof(path), bases[i]);
        struct stat sb;
        cr_assert_eq(stat(path, &sb), 0);
        cr_assert_eq(sb.st_size, 4096, "preallocated to the segment size");
        cr_assert_geq(sb.st_blocks * 512, 4096, "blocks allocated, not a hole");
        if (i > 0) {
            cr_assert_gt(bases[i], bases[i - 1]);
        }
    }
    jopen(&j, &o);
    static struct replayed r = {.salt = 1};
    check_replay(&j, 1, 600, &r);
    cr_assert_eq(journal_close(&j), 0);
}

Test(journal, drop_before_deletes_whole_segments_only)
{
    struct journal j;
    struct journal_opts o = {.segment_size = 4096};
    jopen(&j, &o);
    static struct tw t[300];
    tw_reset(t, 300);
    for (size_t b = 0; b < 15; b++) {
        append_n(&j, 1 + b * 20, 20, 2, t + b * 20);
        cr_assert_eq(journal_flush(&j), 0);
        RUN_UNTIL(acked == (int)(b + 1) * 20);
    }
    uint64_t bases[64];
    size_t n = list_segs(bases, 64);
    cr_assert_geq(n, 5);

    /* bases[1]: every record of the first segment is below it */
    cr_assert_eq(journal_drop_before(&j, bases[1]), 0);
    uint64_t now[64];
    cr_assert_eq(list_segs(now, 64), n - 1);
    cr_assert_eq(now[0], bases[1]);
    /* one past the third segment's base: the second goes, the third (holding seqs below
     * and above it) stays */
    cr_assert_eq(journal_drop_before(&j, bases[2] + 1), 0);
    cr_assert_eq(list_segs(now, 64), n - 2);
    cr_assert_eq(now[0], bases[2]);
    /* nothing before the first record: nothing goes */
    cr_assert_eq(journal_drop_before(&j, bases[2]), 0);
    cr_assert_eq(list_segs(now, 64), n - 2);

    static struct replayed r = {.salt = 2};
    check_replay(&j, bases[2], 300 - (bases[2] - 1), &r);

    /* everything: the segment being written stays */
    cr_assert_eq(journal_drop_before(&j, UINT64_MAX), 0);
    cr_assert_eq(list_segs(now, 64), 1);
    cr_assert_eq(now[0], bases[n - 1]);
    struct journal_stats st;
    journal_stats(&j, &st);
    cr_assert_eq(st.segments, 1);
    cr_assert_eq(st.segments_dropped, n - 1);
    cr_assert_eq(journal_close(&j), 0);

    /* reopened, it starts at the kept segment and numbering goes on */
    jopen(&j, &o);
    check_replay(&j, bases[n - 1], 300 - (bases[n - 1] - 1), &r);
    tw_reset(t, 1);
    append_n(&j, 301, 1, 2, t);
    RUN_UNTIL(acked == 1);
    cr_assert_eq(journal_close(&j), 0);
    jopen(&j, &o);
    check_replay(&j, bases[n - 1], 301 - (bases[n - 1] - 1), &r);
    cr_assert_eq(journal_close(&j), 0);
}

Test(journal, new_segment_cuts_at_the_next_record_even_with_records_queued)
{
    struct journal j;
    struct journal_opts o = {.segment_size = 1 << 20};
    jopen(&j, &o);
    static struct tw t[40];
    tw_reset(t, 40);
    /* ten durable, ten queued and not yet written: the cut goes after all twenty */
    append_n(&j, 1, 10, 3, t);
    cr_assert_eq(journal_flush(&j), 0);
    RUN_UNTIL(acked == 10);
    append_n(&j, 11, 10, 3, t + 10);
    cr_assert_eq(journal_new_segment(&j), 21);
    append_n(&j, 21, 10, 3, t + 20);
    cr_assert_eq(journal_flush(&j), 0);
    RUN_UNTIL(acked == 30);
    uint64_t bases[8];
    cr_assert_eq(list_segs(bases, 8), 2);
    cr_assert_eq(bases[0], 1);
    cr_assert_eq(bases[1], 21, "the new segment starts at the cut: %lu", (unsigned long)bases[1]);
    cr_assert_eq(journal_drop_before(&j, 21), 0);
    cr_assert_eq(list_segs(bases, 8), 1);
    cr_assert_eq(journal_new_segment(&j), 31);
    append_n(&j, 31, 5, 3, t + 30);
    /* one cut at a time: not another while the first waits to be written */
    cr_assert_eq(journal_new_segment(&j), 0);
    cr_assert_eq(journal_flush(&j), 0);
    RUN_UNTIL(acked == 35);
    /* asked twice before anything more is appended: one new segment */
    cr_assert_eq(journal_new_segment(&j), 36);
    cr_assert_eq(journal_new_segment(&j), 36);
    append_n(&j, 36, 5, 3, t + 35);
    cr_assert_eq(journal_flush(&j), 0);
    RUN_UNTIL(acked == 40);
    cr_assert_eq(list_segs(bases, 8), 3);
    cr_assert_eq(bases[1], 31);
    cr_assert_eq(bases[2], 36);
    cr_assert_eq(journal_close(&j), 0);
    jopen(&j, &o);
    static struct replayed r = {.salt = 3};
    check_replay(&j, 21, 20, &r);
    cr_assert_eq(journal_close(&j), 0);
}

/* ---- recovery ------------------------------------------------------------------------------ */

#define TORN_SEG 8192

/* make_journal writes n records (salt 4) in one segment of TORN_SEG bytes, closes it and
 * returns the segment image; *starts gets each record's offset (and starts[n] the end). */
static size_t make_journal(size_t n, size_t *starts, uint8_t **img)
{
    struct journal j;
    struct journal_opts o = {.segment_size = TORN_SEG};
    jopen(&j, &o);
    append_n(&j, 1, n, 4, NULL);
    cr_assert_eq(journal_close(&j), 0);
    char path[160];
    seg_path(path, sizeof(path), 1);
    size_t len = read_file(path, img);
    cr_assert_eq(len, TORN_SEG);
    size_t off = JOURNAL_SEG_HDR_SIZE;
    for (size_t i = 0; i < n; i++) {
        struct journal_record rec;
        starts[i] = off;
        cr_assert_eq(journal_decode(*img + off, len - off, &rec), JOURNAL_OK);
        off += rec.size;
    }
    starts[n] = off;
    return len;
}

Test(journal, a_torn_tail_at_every_byte_of_the_last_record_is_cut_off)
{
    enum { N = 5 };
    size_t starts[N + 1];
    uint8_t *pristine;
    size_t len = make_journal(N, starts, &pristine);
    cr_assert_gt(starts[N] - starts[N - 1], JOURNAL_REC_HDR_SIZE + 20, "a payload to tear");
    char path[160];
    seg_path(path, sizeof(path), 1);
    uint8_t *img = malloc(len);
    static struct replayed r = {.salt = 4, .salt_from_seq = N, .salt2 = 77};
    uint64_t x = 12345;
    size_t cases = 0;

    for (size_t cut = starts[N - 1]; cut < starts[N]; cut++) {
        for (int variant = 0; variant < 3; variant++) {
            /* 0: the file ends at the cut (its size was never synced); 1: zeros from the cut,
             * as in preallocated space; 2: garbage from the cut past the record's end */
            memcpy(img, pristine, len);
            size_t img_len = len;
            if (variant == 0) {
                img_len = cut;
            } else {
                for (size_t k = cut; k < starts[N] + (variant == 2 ? 40 : 0); k++) {
                    x = x * 6364136223846793005ull + 1442695040888963407ull;
                    img[k] = variant == 1 ? 0 : (uint8_t)(x >> 56);
                }
            }
            write_file(path, img, img_len);

            struct journal j;
            jopen(&j, &(struct journal_opts){.segment_size = TORN_SEG});
            check_replay(&j, 1, N - 1, &r);
            cr_assert_eq(journal_last_seq(&j), N - 1, "cut %zu variant %d", cut, variant);
            struct tw t[1];
            tw_reset(t, 1);
            uint8_t p[128];
            size_t plen = payload_of(N, 77, p, sizeof(p));
            cr_assert_eq(journal_append(&j, (uint8_t)N, p, plen, &t[0].w), 0);
            cr_assert_eq(t[0].w.seq, N);
            RUN_UNTIL(acked == 1);
            cr_assert_eq(journal_close(&j), 0);

            jopen(&j, &(struct journal_opts){.segment_size = TORN_SEG});
            check_replay(&j, 1, N, &r);
            struct journal_stats st;
            journal_stats(&j, &st);
            cr_assert_eq(st.torn_bytes, 0, "the repair left nothing to cut");
            cr_assert_eq(journal_close(&j), 0);
            cases++;
        }
    }
    cr_assert_eq(cases, 3 * (starts[N] - starts[N - 1]));
    free(img);
    free(pristine);
}

Test(journal, a_flipped_bit_in_the_middle_refuses_the_open_naming_file_and_offset)
{
    enum { N = 5 };
    size_t starts[N + 1];
    uint8_t *pristine;
    size_t len = make_journal(N, starts, &pristine);
    char path[160];
    seg_path(path, sizeof(path), 1);
    uint8_t *img = malloc(len);
    uint8_t *after;
    char want[64];
    snprintf(want, sizeof(want), "byte offset %zu", starts[2]);

    for (size_t pos = starts[2]; pos < starts[3]; pos++) {
        memcpy(img, pristine, len);
        img[pos] ^= (uint8_t)(1u << (pos % 8));
        write_file(path, img, len);
        struct journal j;
        char err[512];
        int rc = journal_open(&j, &ring, jdir, NULL, err, sizeof(err));
        cr_assert_eq(rc, -EIO, "flip at %zu: open gave %d", pos, rc);
        cr_assert(strstr(err, "00000000000000000001.seg"), "names the file: %s", err);
        cr_assert(strstr(err, want), "names the offset (%s): %s", want, err);
        size_t n = read_file(path, &after);
        cr_assert(n == len && memcmp(after, img, len) == 0, "a refused open changes nothing");
        free(after);
    }
    free(img);
    free(pristine);
}

Test(journal, damage_in_a_segment_that_is_not_the_last_is_refused)
{
    struct journal j;
    struct journal_opts o = {.segment_size = 4096};
    jopen(&j, &o);
    append_n(&j, 1, 200, 6, NULL);
    cr_assert_eq(journal_close(&j), 0);
    uint64_t bases[64];
    size_t n = list_segs(bases, 64);
    cr_assert_geq(n, 3);

    /* the last record of the first segment, torn-looking: zeros to the end */
    char path[160];
    seg_path(path, sizeof(path), bases[0]);
    uint8_t *img;
    size_t len = read_file(path, &img);
    struct journal_scan_result sr;
    journal_scan(img, len, bases[0], &sr);
    cr_assert_eq(sr.end_kind, JOURNAL_SCAN_CLEAN);
    cr_assert_eq(sr.last_seq, bases[1] - 1);
    size_t last_start = JOURNAL_SEG_HDR_SIZE;
    for (size_t off = JOURNAL_SEG_HDR_SIZE; off < sr.end;) {
        struct journal_record rec;
        cr_assert_eq(journal_decode(img + off, len - off, &rec), JOURNAL_OK);
        last_start = off;
        off += rec.size;
    }
    uint8_t *orig = malloc(len);
    memcpy(orig, img, len);
    memset(img + last_start + 10, 0, sr.end - last_start - 10);
    write_file(path, img, len);
    char err[512];
    cr_assert_eq(journal_open(&j, &ring, jdir, &o, err, sizeof(err)), -EIO);
    char name[32];
    snprintf(name, sizeof(name), "%020" PRIu64 ".seg", bases[0]);
    cr_assert(strstr(err, name), "%s", err);
    cr_assert(strstr(err, "not the last"), "%s", err);

    /* a missing segment in the middle is a hole in the sequence */
    write_file(path, orig, len);
    seg_path(path, sizeof(path), bases[1]);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(journal_open(&j, &ring, jdir, &o, err, sizeof(err)), -EIO);
    cr_assert(strstr(err, "sequence gap"), "%s", err);
    free(orig);
    free(img);
}

Test(journal, a_segment_whose_creation_was_cut_short_is_started_again)
{
    struct journal j;
    jopen(&j, &(struct journal_opts){.segment_size = 4096});
    append_n(&j, 1, 5, 8, NULL);
    cr_assert_eq(journal_close(&j), 0);

    /* a crash right after creating the next segment: an empty file */
    char path[160];
    seg_path(path, sizeof(path), 6);
    write_file(path, (const uint8_t *)"", 0);
    jopen(&j, &(struct journal_opts){.segment_size = 4096});
    static struct replayed r = {.salt = 8};
    check_replay(&j, 1, 5, &r);
    append_n(&j, 6, 3, 8, NULL);
    cr_assert_eq(journal_close(&j), 0);

    /* ... or a header torn to garbage, zeros after it */
    uint8_t *img;
    size_t len = read_file(path, &img);
    cr_assert_eq(len, 4096);
    seg_path(path, sizeof(path), 9);
    memset(img, 0, len);
    memcpy(img, "\x13\x37garbage header!", 17);
    write_file(path, img, len);
    free(img);
    jopen(&j, &(struct journal_opts){.segment_size = 4096});
    check_replay(&j, 1, 8, &r);
    struct journal_stats st;
    journal_stats(&j, &st);
    cr_assert_eq(st.torn_bytes, 17);
    append_n(&j, 9, 2, 8, NULL);
    cr_assert_eq(journal_close(&j), 0);
    jopen(&j, &(struct journal_opts){.segment_size = 4096});
    check_replay(&j, 1, 10, &r);
    cr_assert_eq(journal_close(&j), 0);
}

Test(journal, bad_options_are_refused)
{
    struct journal j;
    char err[256];
    cr_assert_eq(journal_open(&j, &ring, jdir, &(struct journal_opts){.segment_size = 100}, err,
                              sizeof(err)),
                 -EINVAL);
    cr_assert_neq(err[0], '\0');
}

static bool in_append;

static void tw_not_in_append(struct journal *j, struct journal_waiter *w, int res)
{
    cr_assert_not(in_append, "a waiter called from inside journal_append");
    tw_done(j, w, res);
}

Test(journal, a_segment_that_cannot_be_created_fails_the_journal_outside_append)
{
    struct journal j;
    jopen(&j, &(struct journal_opts){.segment_size = 4096, .batch_records = 4});
    /* the names the next segment could take, made after open so that open does not see them:
     * its creation (O_EXCL) fails */
    for (uint64_t base = 2; base < 400; base++) {
        char path[160];
        seg_path(path, sizeof(path), base);
        write_file(path, (const uint8_t *)"", 0);
    }
    static struct tw t[400];
    tw_reset(t, 400);
    uint8_t p[100] = {0};
    size_t n = 0;
    int rc = 0;
    while (n < 400) {
        t[n].w.cb = tw_not_in_append;
        in_append = true;
        rc = journal_append(&j, 1, p, sizeof(p), &t[n].w);
        in_append = false;
        if (rc) {
            break;
        }
        n++;
        if (n % 4 == 0) {
            RUN_UNTIL(acked + failed_acks == (int)n);
        }
        if (failed_acks) {
            break;
        }
    }
    cr_assert_lt(n, 400);
    RUN_UNTIL(acked + failed_acks == (int)n);
    cr_assert_gt(acked, 0);
    cr_assert_gt(failed_acks, 0);
    cr_assert(journal_failed(&j));
    cr_assert(strstr(journal_error(&j), "segment"), "%s", journal_error(&j));
    cr_assert_eq(journal_append(&j, 1, p, 1, NULL), -EIO);
    cr_assert_eq(journal_close(&j), -EEXIST);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(t[i].calls, 1);
        cr_assert(t[i].res == 0 || t[i].res == -EEXIST);
    }
}

/* ---- a process killed while appending ------------------------------------------------------ */

struct killed {
    struct journal_waiter w;
    int fd;
};

static void killed_done(struct journal *j, struct journal_waiter *w, int res)
{
    struct killed *k = container_of(w, struct killed, w);
    if (res != 0 || write(k->fd, &w->seq, sizeof(w->seq)) != sizeof(w->seq)) {
        _exit(3);
    }
    uint8_t p[128];
    size_t len = payload_of(j->next_seq, 11, p, sizeof(p));
    if (journal_append(j, (uint8_t)j->next_seq, p, len, w) != 0) {
        _exit(4);
    }
}

/* The child appends with 64 records in flight and reports each acknowledgement on a pipe until
 * it is killed; every record it was told about must be there after a reopen. */
static void killed_child(int fd)
{
    struct ring r;
    struct ring_opts ro = {.entries = 64, .max_timers = 16};
    struct journal j;
    if (ring_init(&r, &ro) != 0 ||
        journal_open(&j, &r, jdir, &(struct journal_opts){.segment_size = 1 << 16}, NULL, 0)) {
        _exit(2);
    }
    static struct killed k[64];
    for (size_t i = 0; i < 64; i++) {
        k[i].fd = fd;
        k[i].w.cb = killed_done;
        uint8_t p[128];
        size_t len = payload_of(j.next_seq, 11, p, sizeof(p));
        if (journal_append(&j, (uint8_t)j.next_seq, p, len, &k[i].w) != 0) {
            _exit(4);
        }
    }
    for (;;) {
        if (ring_run_once(&r, -1) < 0) {
            _exit(5);
        }
    }
}

Test(journal, every_record_acknowledged_before_a_kill_is_there_after_it)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(pfd[0]);
        killed_child(pfd[1]);
    }
    close(pfd[1]);
    uint64_t max_acked = 0, seq;
    int64_t until = ring_clock_ns() + 300 * 1000000LL;
    while (ring_clock_ns() < until && read(pfd[0], &seq, sizeof(seq)) == sizeof(seq)) {
        max_acked = seq > max_acked ? seq : max_acked;
    }
    kill(pid, SIGKILL);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status), "the child stopped by itself: %d", status);
    while (read(pfd[0], &seq, sizeof(seq)) == sizeof(seq)) {
        max_acked = seq > max_acked ? seq : max_acked;
    }
    close(pfd[0]);
    cr_assert_gt(max_acked, 64, "the child got some acknowledgements");

    struct journal j;
    jopen(&j, &(struct journal_opts){.segment_size = 1 << 16});
    uint64_t last = journal_last_seq(&j);
    cr_assert_geq(last, max_acked, "acknowledged %" PRIu64 ", recovered %" PRIu64, max_acked, last);
    static struct replayed r = {.salt = 11};
    check_replay(&j, 1, last, &r);
    cr_assert_eq(journal_close(&j), 0);
}

/* read_ok reads record seq back and checks it is payload_of(seq, salt). */
static void read_ok(struct journal *j, uint64_t seq, uint32_t salt, struct buf *b)
{
    struct journal_record rec;
    int rc = journal_read(j, seq, b, &rec);
    cr_assert_eq(rc, 0, "read %" PRIu64 ": %d %s", seq, rc, journal_error(j));
    uint8_t want[128];
    size_t len = payload_of(seq, salt, want, sizeof(want));
    cr_assert_eq(rec.seq, seq);
    cr_assert_eq(rec.type, (uint8_t)seq);
    cr_assert_eq(rec.len, len, "seq %" PRIu64 ": %u bytes, not %zu", seq, rec.len, len);
    cr_assert_eq(memcmp(rec.payload, want, len), 0, "seq %" PRIu64, seq);
}

/* A durable record reads back by its sequence number, across segments, after a reopen (once
 * replayed) and until its segment is dropped; what is not durable, dropped, or damaged on disk
 * is refused, never returned wrong. */
Test(journal, durable_records_read_back_by_sequence_number)
{
    struct journal j;
    struct journal_opts o = {.segment_size = 4096, .batch_records = 16};
    jopen(&j, &o);
    struct buf b;
    buf_init(&b, 1 << 20);
    static struct tw t[300];
    tw_reset(t, 300);
    append_n(&j, 1, 300, 3, t);
    struct journal_record rec;
    cr_assert_eq(journal_read(&j, 300, &b, &rec), -ENOENT, "not durable yet");
    RUN_UNTIL(acked == 300);
    cr_assert_eq(journal_durable_seq(&j), 300);
    for (uint64_t s = 300; s >= 1; s--) { /* backwards: every segment reopened for reading */
        read_ok(&j, s, 3, &b);
    }
    cr_assert_eq(journal_read(&j, 0, &b, &rec), -ENOENT);
    cr_assert_eq(journal_read(&j, 301, &b, &rec), -ENOENT);
    uint64_t bases[64];
    size_t n = list_segs(bases, 64);
    cr_assert_geq(n, 4);
    cr_assert_eq(journal_drop_before(&j, bases[2]), 0);
    cr_assert_eq(journal_read(&j, 1, &b, &rec), -ENOENT, "its segment is gone");
    cr_assert_eq(journal_read(&j, bases[2] - 1, &b, &rec), -ENOENT);
    read_ok(&j, bases[2], 3, &b);
    cr_assert_eq(journal_close(&j), 0);

    /* reopened: readable once replayed; new records too */
    jopen(&j, &o);
    cr_assert_eq(journal_read(&j, 300, &b, &rec), -ENOENT, "not replayed yet");
    static struct replayed r = {.salt = 3};
    check_replay(&j, bases[2], 300 - (bases[2] - 1), &r);
    for (uint64_t s = bases[2]; s <= 300; s++) {
        read_ok(&j, s, 3, &b);
    }
    tw_reset(t, 20);
    append_n(&j, 301, 20, 3, t);
    RUN_UNTIL(acked == 20);
    for (uint64_t s = 290; s <= 320; s++) {
        read_ok(&j, s, 3, &b);
    }
    cr_assert_eq(journal_close(&j), 0);

    /* a byte changed on disk under a durable record: -EIO naming the file and offset */
    jopen(&j, &o);
    check_replay(&j, bases[2], 320 - (bases[2] - 1), &r);
    n = list_segs(bases, 64);
    char path[160];
    seg_path(path, sizeof(path), bases[0]);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    uint8_t x;
    cr_assert_eq(pread(fd, &x, 1, JOURNAL_SEG_HDR_SIZE + JOURNAL_REC_HDR_SIZE), 1);
    x ^= 0x10;
    cr_assert_eq(pwrite(fd, &x, 1, JOURNAL_SEG_HDR_SIZE + JOURNAL_REC_HDR_SIZE), 1);
    close(fd);
    cr_assert_eq(journal_read(&j, bases[0], &b, &rec), -EIO);
    cr_assert_not_null(strstr(journal_error(&j), "byte offset"), "%s", journal_error(&j));
    read_ok(&j, bases[0] + 1, 3, &b);
    cr_assert_eq(journal_close(&j), 0);
    buf_free(&b);
}

/* journal_appendv joins its pieces (empty ones too) into one record framed as journal_append
 * frames it; a payload past JOURNAL_RECORD_MAX is refused, whatever its pieces. */
Test(journal, appendv_joins_its_pieces)
{
    struct journal j;
    jopen(&j, &(struct journal_opts){.segment_size = 1 << 16});
    static struct tw t[40];
    tw_reset(t, 40);
    for (uint64_t seq = 1; seq <= 40; seq++) {
        uint8_t p[128];
        size_t len = payload_of(seq, 5, p, sizeof(p));
        size_t a = seq % (len + 1), b = a + (len - a) / 2;
        struct iovec iov[4] = {{p, a}, {NULL, 0}, {p + a, b - a}, {p + b, len - b}};
        cr_assert_eq(journal_appendv(&j, (uint8_t)seq, iov, 4, &t[seq - 1].w), 0);
        cr_assert_eq(t[seq - 1].w.seq, seq);
    }
    RUN_UNTIL(acked == 40);
    struct buf b;
    buf_init(&b, 1 << 20);
    for (uint64_t seq = 1; seq <= 40; seq++) {
        read_ok(&j, seq, 5, &b);
    }
    static uint8_t big[1 << 20];
    struct iovec huge[17];
    for (int i = 0; i < 17; i++) {
        huge[i] = (struct iovec){big, sizeof(big)};
    }
    cr_assert_eq(journal_appendv(&j, 1, huge, 17, NULL), -EMSGSIZE);
    buf_free(&b);
    cr_assert_eq(journal_close(&j), 0);
}

/* test_serve_journal.c: hookring serve on a damaged journal, end to end. Events are posted and
 * acknowledged, the server is killed with SIGKILL, and its last segment is then damaged the way
 * a crash or a disk can damage it:
 *   - torn at every byte offset of its last record (the bytes from there on zeroed, as a write
 *     the crash cut short leaves them; a few offsets also with garbage instead of zeros): serve
 *     must start, still know every earlier event (a repost is a duplicate), have forgotten the
 *     torn one (a repost is new), and keep what it takes after the repair across a restart;
 *   - one bit flipped in a record in the middle (payload or header): serve must refuse to start,
 *     exit non-zero, and name the segment file and the byte offset of the damage.
 * And on a full file system: ingest waits and is refused until there is room, and goes on. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "journal.h"
#include "support/testnet.h"

TestSuite(serve_journal);

#define KEY "test-api-key-j"
#define NEVENTS 4

static char base[64];

static void make_base(void)
{
    strcpy(base, "/tmp/hookring-sj-XXXXXX");
    cr_assert_not_null(mkdtemp(base));
}

static void remove_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void start_serve(struct tn_proc *s, const char *data)
{
    const char *args[] = {"serve",     "--data", data,      "--listen",         "127.0.0.1:0",
                          "--api-key", KEY,      "--quiet", "--dedup-capacity", "1000",
                          NULL};
    cr_assert_eq(tn_start(s, "hookring", args, 1), 0, "hookring serve did not start on %s", data);
}

/* post_event posts event id (a small body, so that its record is short) and returns the status. */
static int post_event(const struct tn_proc *s, const char *id)
{
    char body[256], raw[1024];
    int bl =
        snprintf(body, sizeof(body), "{\"id\":\"%s\",\"type\":\"journal.test\",\"data\":{}}", id);
    int n = snprintf(raw, sizeof(raw),
                     "POST /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " KEY
                     "\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     bl, body);
    struct tn_resp r;
    int rc = tn_request(s->addr[0], raw, (size_t)n, &r);
    cr_assert_geq(rc, 0, "POST /v1/events %s: %d", id, rc);
    int st = r.status;
    if (st == 200) {
        cr_assert_not_null(strstr(r.body, "\"duplicate\":true"), "200 without duplicate: %s",
                           r.body);
    }
    tn_resp_free(&r);
    return st;
}

static void kill9(struct tn_proc *s)
{
    int st = tn_stop(s, SIGKILL);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %d", st);
}

/* The journal as the killed server left it: its only segment's name and bytes. */
static char seg_name[64];
static uint8_t *img;
static size_t img_len;
static size_t last_off, last_end;   /* the last record: [last_off, last_end) */
static size_t first_off, first_end; /* the first record */
static size_t nrecs;

static void read_file(const char *path, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    *out = malloc((size_t)st.st_size);
    cr_assert_not_null(*out);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, *out + got, (size_t)st.st_size - got);
        cr_assert_gt(n, 0, "%s: short read", path);
        got += (size_t)n;
    }
    *len = got;
    close(fd);
}

/* write_file writes p[0..used) to path as a file of len bytes: the rest (the zeros of the
 * segment's preallocated tail, checked once by make_journal) becomes a hole, so each damaged
 * copy costs kilobytes, not the segment's 64 MiB. */
static void write_file(const char *path, const uint8_t *p, size_t len, size_t used)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    size_t put = 0;
    while (put < used) {
        ssize_t n = write(fd, p + put, used - put);
        cr_assert_gt(n, 0, "%s: short write", path);
        put += (size_t)n;
    }
    cr_assert_eq(ftruncate(fd, (off_t)len), 0);
    cr_assert_eq(close(fd), 0);
}

/* make_journal runs serve on base/data, has it acknowledge NEVENTS events (evt_j_1..), kills it
 * and loads its segment (there is one: the journal is far smaller than a segment). */
static void make_journal(void)
{
    make_base();
    char data[128];
    snprintf(data, sizeof(data), "%s/data", base);
    struct tn_proc s;
    start_serve(&s, data);
    for (int i = 1; i <= NEVENTS; i++) {
        char id[32];
        snprintf(id, sizeof(id), "evt_j_%d", i);
        cr_assert_eq(post_event(&s, id), 202, "event %s", id);
    }
    kill9(&s);

    DIR *d = opendir(data);
    cr_assert_not_null(d);
    size_t nseg = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".seg") == 0) {
            cr_assert_lt(n, sizeof(seg_name));
            memcpy(seg_name, e->d_name, n + 1);
            nseg++;
        }
    }
    closedir(d);
    cr_assert_eq(nseg, 1, "expected one segment, found %zu", nseg);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", data, seg_name);
    read_file(path, &img, &img_len);

    struct journal_scan_result sr;
    journal_scan(img, img_len, strtoull(seg_name, NULL, 10), &sr);
    cr_assert_eq(sr.end_kind, JOURNAL_SCAN_CLEAN, "the killed server's segment: %d", sr.end_kind);
    cr_assert_geq(sr.nrecords, NEVENTS, "%" PRIu64 " records for %d events", sr.nrecords, NEVENTS);
    size_t off = JOURNAL_SEG_HDR_SIZE;
    nrecs = 0;
    while (off < sr.end) {
        struct journal_record rec;
        cr_assert_eq(journal_decode(img + off, sr.end - off, &rec), JOURNAL_OK);
        if (nrecs == 0) {
            first_off = off;
            first_end = off + rec.size;
        }
        last_off = off;
        last_end = off + rec.size;
        off += rec.size;
        nrecs++;
    }
    cr_assert_eq(last_end, sr.end);
    size_t nonzero = 0;
    for (size_t i = last_end; i < img_len; i++) {
        nonzero += img[i] != 0;
    }
    cr_assert_eq(nonzero, 0, "bytes past the last record are not zero");
    /* the last record is the last event's (the records are small: the loop below tries every
     * byte of it) */
    cr_assert_lt(last_end - last_off, 400, "last record of %zu bytes", last_end - last_off);
}

static void free_journal(void)
{
    free(img);
    img = NULL;
    remove_dir(base);
}

/* damaged_dir writes img with bytes [k, last_end) set to fill as the only segment of a fresh
 * data dir, and returns the dir. */
static const char *damaged_dir(size_t k, uint8_t fill)
{
    static char dir[160];
    snprintf(dir, sizeof(dir), "%s/d%zu_%u", base, k, fill);
    cr_assert_eq(mkdir(dir, 0700), 0, "%s: %s", dir, strerror(errno));
    uint8_t *copy = malloc(last_end);
    cr_assert_not_null(copy);
    memcpy(copy, img, last_end);
    memset(copy + k, fill, last_end - k);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, seg_name);
    write_file(path, copy, img_len, last_end);
    free(copy);
    return dir;
}

/* check_torn starts serve on the journal torn at offset k (bytes [k, last_end) set to fill) and
 * checks it recovered: earlier events are duplicates, the torn (never acknowledged) one is new.
 * When those bytes already were fill (a record may end in zeros) nothing is torn and the last
 * event must still be known. With again, it also checks the repaired journal takes and keeps new
 * records. Returns whether the record was damaged. */
static bool check_torn(size_t k, uint8_t fill, bool again)
{
    bool torn = false;
    for (size_t i = k; i < last_end; i++) {
        torn |= img[i] != fill;
    }
    const char *dir = damaged_dir(k, fill);
    struct tn_proc s;
    start_serve(&s, dir);
    char id[32];
    snprintf(id, sizeof(id), "evt_j_%d", NEVENTS - 1);
    cr_assert_eq(post_event(&s, id), 200, "torn at %zu (fill %u): %s is not known", k, fill, id);
    snprintf(id, sizeof(id), "evt_j_%d", NEVENTS);
    cr_assert_eq(post_event(&s, id), torn ? 202 : 200, "torn at %zu (fill %u, damaged %d)", k, fill,
                 torn);
    if (again) {
        cr_assert_eq(post_event(&s, "evt_j_after"), 202);
        kill9(&s);
        start_serve(&s, dir);
        cr_assert_eq(post_event(&s, id), 200, "torn at %zu: the re-posted event was lost", k);
        cr_assert_eq(post_event(&s, "evt_j_after"), 200, "torn at %zu: a later event was lost", k);
        cr_assert_eq(post_event(&s, "evt_j_1"), 200);
    }
    kill9(&s);
    remove_dir(dir);
    return torn;
}

// cppcheck-suppress unknownMacro
Test(serve_journal, torn_at_every_offset_of_the_last_record_is_recovered, .timeout = 240)
{
    make_journal();
    size_t tried = 0, torn = 0;
    for (size_t k = last_off; k < last_end; k++) {
        torn += check_torn(k, 0, k == last_off + 5 || k == last_end - 8);
        tried++;
    }
    /* only a trailing run of zero bytes in the payload can be "torn" without damage */
    cr_assert_geq(torn, last_end - last_off - 8, "%zu of %zu offsets damaged the record", torn,
                  last_end - last_off);
    /* garbage instead of zeros: in the record header, in the payload, at its last byte */
    size_t garbage[] = {last_off, last_off + 3, last_off + 17, last_off + JOURNAL_REC_HDR_SIZE + 2,
                        last_end - 1};
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        cr_assert(check_torn(garbage[i], 0x5a, i == 2));
        tried++;
    }
    cr_assert_eq(tried, last_end - last_off + 5);
    free_journal();
}

/* run_refused starts serve on dir, which must refuse to start: exit status non-zero within 10 s.
 * Returns what it printed (stdout and stderr), malloc'ed. */
static char *run_refused(const char *dir)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    char prog[256];
    snprintf(prog, sizeof(prog), "%s/hookring", tn_build_dir());
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        dup2(p[1], STDERR_FILENO);
        close(p[0]);
        close(p[1]);
        execl(prog, "hookring", "serve", "--data", dir, "--listen", "127.0.0.1:0", "--api-key", KEY,
              (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    size_t cap = 65536, len = 0;
    char *out = malloc(cap);
    cr_assert_not_null(out);
    int64_t deadline = tn_now_ms() + 10000;
    for (;;) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int64_t left = deadline - tn_now_ms();
        cr_assert_gt(left, 0, "serve on a corrupt journal neither refused nor exited; output: %.*s",
                     (int)len, out);
        if (poll(&pfd, 1, (int)left) <= 0) {
            continue;
        }
        ssize_t n = read(p[0], out + len, cap - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        cr_assert_lt(len, cap - 1, "too much output");
    }
    out[len] = 0;
    close(p[0]);
    int st = 0;
    pid_t w;
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && tn_now_ms() < deadline) {
        usleep(10000);
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        cr_assert_fail("serve on a corrupt journal did not exit; output: %s", out);
    }
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0, "status %d; output: %s", st, out);
    return out;
}

/* check_flip flips bit `bit` of byte `at` (inside the first record, which valid records follow)
 * and checks serve refuses the journal naming the file and the offset where the damage starts. */
static void check_flip(size_t at, unsigned bit)
{
    char dir[160];
    snprintf(dir, sizeof(dir), "%s/flip%zu_%u", base, at, bit);
    cr_assert_eq(mkdir(dir, 0700), 0);
    uint8_t *copy = malloc(last_end);
    cr_assert_not_null(copy);
    memcpy(copy, img, last_end);
    copy[at] ^= (uint8_t)(1u << bit);
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, seg_name);
    write_file(path, copy, img_len, last_end);
    free(copy);

    char *out = run_refused(dir);
    cr_assert_not_null(strstr(out, seg_name), "the message does not name the file: %s", out);
    cr_assert_not_null(strstr(out, "corrupt"), "the message does not say corrupt: %s", out);
    char want[64];
    snprintf(want, sizeof(want), "byte offset %zu", first_off);
    cr_assert_not_null(strstr(out, want), "flip at %zu: the message does not say '%s': %s", at,
                       want, out);
    free(out);
    /* the refused journal is left as it was: nothing truncated, nothing rewritten */
    uint8_t *after;
    size_t after_len;
    read_file(path, &after, &after_len);
    cr_assert_eq(after_len, img_len);
    cr_assert_eq(after[at], (uint8_t)(img[at] ^ (1u << bit)));
    cr_assert_eq(memcmp(after + last_off, img + last_off, last_end - last_off), 0,
                 "the records after the damage were changed");
    free(after);
    remove_dir(dir);
}

// cppcheck-suppress unknownMacro
Test(serve_journal, a_flipped_bit_in_the_middle_is_refused_naming_file_and_offset, .timeout = 60)
{
    make_journal();
    cr_assert_geq(nrecs, 2);
    size_t mid_payload =
        first_off + JOURNAL_REC_HDR_SIZE + (first_end - first_off - JOURNAL_REC_HDR_SIZE) / 2;
    check_flip(mid_payload, 3);    /* the payload: its CRC fails */
    check_flip(first_off + 16, 0); /* the header's length */
    check_flip(first_off + 9, 6);  /* the header's sequence number */
    check_flip(first_end - 1, 7);  /* the payload's last byte */
    free_journal();
}

/* A record whose CRCs hold but whose content cannot be (here an event claiming 4 294 967 295
 * deliveries in the few bytes left of it: something a bug or another version wrote) is
 * refused at once, naming the record, rather than read for minutes. */
Test(serve_journal, a_record_claiming_more_deliveries_than_it_holds_is_refused_at_once,
     .timeout = 60)
{
    make_base();
    char dir[160], path[256];
    snprintf(dir, sizeof(dir), "%s/count", base);
    cr_assert_eq(mkdir(dir, 0700), 0);
    static const char json[] = "{\"id\":\"evt_c\",\"type\":\"journal.test\",\"data\":{}}";
    uint8_t payload[8 + 4 + sizeof(json) + 4 + 12] = {0};
    size_t n = 8; /* the ingest time: 0 */
    uint32_t jl = (uint32_t)strlen(json);
    memcpy(payload + n, &jl, 4);
    memcpy(payload + n + 4, json, jl);
    n += 4 + jl;
    memset(payload + n, 0xff, 4); /* the count of deliveries */
    n += 4 + 12;                  /* room for one, of an empty webhook id */
    uint8_t seg[JOURNAL_SEG_HDR_SIZE + JOURNAL_REC_HDR_SIZE + sizeof(payload)];
    journal_seg_header_encode(seg, 1);
    journal_encode(seg + JOURNAL_SEG_HDR_SIZE, 2 /* SREC_EVENT */, 1, payload, n);
    snprintf(path, sizeof(path), "%s/00000000000000000001.seg", dir);
    size_t len = JOURNAL_SEG_HDR_SIZE + journal_record_size(n);
    write_file(path, seg, len, len);
    int64_t t0 = tn_now_ms();
    char *out = run_refused(dir);
    int64_t took = tn_now_ms() - t0;
    cr_assert_not_null(strstr(out, "an event record is malformed (journal record 1)"), "%s", out);
    cr_assert_lt(took, 2000, "refused after %ld ms", (long)took);
    free(out);
    remove_dir(base);
}

/* ---- a full disk ------------------------------------------------------------------------------
 */

/* post_raw sends POST /v1/events for event id with pad bytes of data on a new connection and
 * returns the connection, its answer not read. */
static int post_raw(const struct tn_proc *s, const char *id, size_t pad)
{
    static char body[8192], raw[9216];
    cr_assert_lt(pad, sizeof(body) - 128);
    int bl = snprintf(body, sizeof(body),
                      "{\"id\":\"%s\",\"type\":\"full.test\",\"data\":\"%0*d\"}", id, (int)pad, 0);
    int n = snprintf(raw, sizeof(raw),
                     "POST /v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " KEY
                     "\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     bl, body);
    int fd = tn_connect(s->addr[0]);
    cr_assert_geq(fd, 0);
    cr_assert_eq(tn_send_all(fd, raw, (size_t)n), 0);
    return fd;
}

/* read_status reads the answer on fd (closing it) and returns its status; retry_after gets its
 * Retry-After header ("" without one). */
static int read_status(int fd, char *retry_after, size_t n)
{
    struct tn_resp r;
    cr_assert_geq(tn_read_response(fd, &r), 0);
    close(fd);
    if (!tn_resp_header(&r, "Retry-After", retry_after, n)) {
        retry_after[0] = 0;
    }
    int st = r.status;
    if (st == 503) {
        cr_assert_not_null(strstr(r.body, "no room on disk"), "%s", r.body);
    }
    tn_resp_free(&r);
    return st;
}

static int health_status(const struct tn_proc *s, char *status, size_t n)
{
    struct tn_resp r;
    cr_assert_geq(tn_get(s->addr[0], "/v1/health", &r), 0);
    cr_assert(tn_json_str(r.body, "status", status, n), "%s", r.body);
    char why[512];
    bool has_why = tn_json_str(r.body, "journal_error", why, sizeof(why));
    if (strcmp(status, "ok") == 0) {
        cr_assert(!has_why, "%s", r.body);
    } else {
        cr_assert(has_why && strstr(why, "No space left on device"), "%s", r.body);
    }
    int st = r.status;
    tn_resp_free(&r);
    return st;
}

#define FULL_MAX 400 /* events of 4 KiB: a 1 MiB file system holds fewer */

static char full_mnt[128]; /* the tmpfs, while mounted */

/* full_fini unmounts the tmpfs of a test that failed before it did (the serve killed with it) */
static void full_fini(void)
{
    if (full_mnt[0]) {
        umount2(full_mnt, MNT_DETACH);
        full_mnt[0] = 0;
    }
}

/* The journal's file system fills up (a tmpfs of 1 MiB, segments of 256 KiB): the event whose
 * record needs the next segment waits, unacknowledged; every other ingest is refused with 503
 * and Retry-After; /v1/health says journal_full. Once there is room (the tmpfs grown), the
 * segment is made within seconds, the waiting event is acknowledged, ingest goes on, and a
 * kill -9 loses none of the acknowledged events. */
Test(serve_journal, a_full_disk_holds_ingest_until_there_is_room, .timeout = 90, .fini = full_fini)
{
    make_base();
    char *mnt = full_mnt, data[160];
    snprintf(mnt, sizeof(full_mnt), "%s/mnt", base);
    cr_assert_eq(mkdir(mnt, 0700), 0);
    if (mount("hookring-test", mnt, "tmpfs", 0, "size=1m") != 0) {
        int e = errno;
        mnt[0] = 0;
        remove_dir(base);
        cr_skip_test("cannot mount a tmpfs (%s): this test needs root", strerror(e));
    }
    snprintf(data, sizeof(data), "%s/data", mnt);
    const char *args[] = {"serve",      "--data",         data,
                          "--listen",   "127.0.0.1:0",    "--api-key",
                          KEY,          "--quiet",        "--dedup-capacity",
                          "1000",       "--segment-size", "262144",
                          "--max-body", "65536",          NULL};
    struct tn_proc s;
    cr_assert_eq(tn_start(&s, "hookring", args, 1), 0);
    char id[32], ra[16], st[32];
    int acked = 0, held = -1;
    for (int i = 0; i < FULL_MAX && held < 0; i++) {
        snprintf(id, sizeof(id), "evt_full_%d", i);
        int fd = post_raw(&s, id, 4000);
        if (!tn_wait_readable(fd, 3000)) {
            held = fd; /* its record waits for the segment there is no room for */
            break;
        }
        cr_assert_eq(read_status(fd, ra, sizeof(ra)), 202, "event %d", i);
        acked++;
    }
    cr_assert_geq(held, 0, "%d events of 4 KiB fit in a 1 MiB file system", FULL_MAX);
    cr_assert_gt(acked, 100);
    int waiting = acked; /* evt_full_<waiting> is the one that waits */
    cr_assert_eq(health_status(&s, st, sizeof(st)), 503);
    cr_assert_str_eq(st, "journal_full");
    /* refused, not taken: nothing of it is kept */
    cr_assert_eq(read_status(post_raw(&s, "evt_full_refused", 10), ra, sizeof(ra)), 503);
    cr_assert_str_eq(ra, "5");
    cr_assert(!tn_wait_readable(held, 1500), "the waiting event was answered without room");

    cr_assert_eq(mount("hookring-test", mnt, "tmpfs", MS_REMOUNT, "size=4m"), 0, "%s",
                 strerror(errno));
    cr_assert(tn_wait_readable(held, 5000), "the waiting event is not answered once there is room");
    cr_assert_eq(read_status(held, ra, sizeof(ra)), 202);
    cr_assert_eq(health_status(&s, st, sizeof(st)), 200);
    cr_assert_str_eq(st, "ok");
    cr_assert_eq(read_status(post_raw(&s, "evt_full_refused", 10), ra, sizeof(ra)), 202,
                 "the refused event was kept");
    cr_assert_eq(read_status(post_raw(&s, "evt_full_after", 4000), ra, sizeof(ra)), 202);

    kill9(&s);
    cr_assert_eq(tn_start(&s, "hookring", args, 1), 0);
    for (int i = 0; i <= waiting; i++) {
        snprintf(id, sizeof(id), "evt_full_%d", i);
        cr_assert_eq(post_event(&s, id), 200, "acknowledged %s was lost", id);
    }
    cr_assert_eq(post_event(&s, "evt_full_refused"), 200);
    cr_assert_eq(post_event(&s, "evt_full_after"), 200);
    kill9(&s);
    cr_assert_eq(umount2(mnt, MNT_DETACH), 0, "%s", strerror(errno));
    mnt[0] = 0;
    remove_dir(base);
}

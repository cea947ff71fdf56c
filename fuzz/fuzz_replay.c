/* fuzz_replay.c: libFuzzer target for serve's recovery: the payloads of its journal records as a
 * restart replays them (webhooks, events with their deliveries, attempts, and compaction's
 * carried events, dedup keys and next delivery number).
 *
 * The input is a list of records, each [type u8][len u16 LE][payload], framed with valid CRCs
 * into one segment file in a scratch directory (on /dev/shm when there is one), which serve_new
 * then replays, as `hookring serve` does at start. fuzz_journal covers the framing; this target
 * reaches what lies inside it, which a newer or older version, or a bug, could have written.
 *
 * Contract:
 *   - serve_new either starts or refuses with a reason, never crashes or reads out of bounds;
 *   - serve_free frees everything (leaks are reported);
 *   - a journal it started from, with what it wrote while running, starts it again with the
 *     same webhooks, events and pending deliveries: a restart right after a start must never be
 *     refused, or recover something else.
 * Not deterministic in one respect: serve reads the wall clock (retention, the dedup window). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "journal.h"
#include "netguard.h"
#include "serve.h"

static char dir[64];
static struct netguard guard;

static void clear_dir(void)
{
    DIR *d = opendir(dir);
    if (!d) {
        abort();
    }
    struct dirent *e;
    char path[128];
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static void remove_dir(void)
{
    clear_dir();
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    snprintf(dir, sizeof(dir), "%s/hookring-fuzz-replay-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(dir)) {
        abort();
    }
    atexit(remove_dir);
    netguard_init(&guard);
    if (netguard_allow(&guard, "127.0.0.0/8")) {
        abort();
    }
    return 0;
}

#define MAX_INPUT 16384 /* fuzz/README.md's max_len: what is beyond is not read */

/* write_segment frames the input's records into segment 1; false when the input holds none. */
static bool write_segment(const uint8_t *data, size_t size)
{
    /* at most one record per 3 input bytes, each framed in 24 */
    static uint8_t seg[JOURNAL_SEG_HDR_SIZE + MAX_INPUT / 3 * JOURNAL_REC_HDR_SIZE + MAX_INPUT];
    size_t len = JOURNAL_SEG_HDR_SIZE, off = 0;
    size = size > MAX_INPUT ? MAX_INPUT : size;
    uint64_t seq = 1;
    journal_seg_header_encode(seg, 1);
    while (size - off >= 3) {
        uint8_t type = data[off];
        size_t n = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
        off += 3;
        if (n > size - off) {
            n = size - off;
        }
        journal_encode(seg + len, type, seq++, data + off, n);
        len += journal_record_size(n);
        off += n;
    }
    if (seq == 1) {
        return false;
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/%020d.seg", dir, 1);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, seg, len) != (ssize_t)len) {
        abort();
    }
    close(fd);
    return true;
}

/* start replays the directory; on success *summary gets serve_recovered_summary, minus the
 * journal's record count (a start may append records). */
static bool start(char *summary, size_t n)
{
    struct ring ring;
    struct ring_opts ro = {.entries = 64, .max_timers = 256};
    if (ring_init(&ring, &ro)) {
        abort();
    }
    struct serve_opts so = {.data_dir = dir,
                            .api_key = "fuzz",
                            .time_scale = 1.0,
                            .guard = &guard,
                            .dedup_capacity = 1024,
                            .max_body = 16384,
                            .quiet = true,
                            .segment_size = 65536,
                            .max_held = 4096};
    char err[1024];
    err[0] = 0;
    struct serve *s = serve_new(&ring, &so, err, sizeof(err));
    bool ok = s != NULL;
    if (!ok && !err[0]) {
        abort(); /* a refusal always says why */
    }
    if (getenv("FUZZ_REPLAY_VERBOSE")) { /* to see what a seed recovers, or why not */
        if (ok) {
            serve_recovered_summary(s, err, sizeof(err));
        }
        fprintf(stderr, "fuzz_replay: %s: %s\n", ok ? "started" : "refused", err);
    }
    if (ok) {
        serve_recovered_summary(s, summary, n);
        char *cut = strstr(summary, " (journal:");
        if (!cut) {
            abort();
        }
        *cut = 0;
        if (serve_free(s)) {
            abort(); /* tmpfs: closing the journal cannot fail */
        }
    }
    ring_cleanup(&ring);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    clear_dir();
    if (!write_segment(data, size)) {
        return 0;
    }
    char first[256], again[256];
    if (!start(first, sizeof(first))) {
        return 0;
    }
    if (!start(again, sizeof(again))) {
        fprintf(stderr, "fuzz_replay: started once (%s), refused on the next start\n", first);
        abort();
    }
    if (strcmp(first, again) != 0) {
        fprintf(stderr, "fuzz_replay: recovered '%s', then '%s'\n", first, again);
        abort();
    }
    return 0;
}

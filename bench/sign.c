/* sign.c: HMAC-SHA256 signing throughput: BoringSSL's one-shot HMAC() against hmac_batch() with
 * the key prepared once, and (when it loads and gives the right bytes) intel-ipsec-mb's
 * multi-buffer HMAC job API for comparison.
 *
 *   build/bench/sign [--json] [--seconds S]
 *
 * Every cell is the best of 3 runs of about S seconds (default 0.3), the runs of all cells taken
 * in turn so that a noisy neighbour slows them alike. ipsec-mb is reached through dlopen(), so
 * neither the library nor this program links it. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <intel-ipsec-mb.h>
#include <openssl/hmac.h>

#include "sign/hmac.h"

#define BATCH 64 /* messages per hmac_batch() call, and per timed unit of every method */
#define ROUNDS 3
#define MAX_SIZE 4096

static const size_t sizes[] = {64, 256, 1024, 4096};

static const struct {
    enum hmac_impl impl;
    const char *name;
} impls[] = {
    {HMAC_IMPL_PORTABLE, "portable"},     {HMAC_IMPL_SHANI, "shani"},
    {HMAC_IMPL_SHANI_X2, "shani_x2"},     {HMAC_IMPL_SHANI_X4, "shani_x4"},
    {HMAC_IMPL_AVX512_X16, "avx512_x16"},
};
#define NIMPLS ARRAY_SIZE(impls)

/* The ipsec-mb architectures worth trying; on SHA-NI CPUs "sse" hashes with SHA-NI. */
static const struct {
    const char *name;
    const char *init;
} imb_archs[] = {
    {"sse", "init_mb_mgr_sse"},
    {"avx2", "init_mb_mgr_avx2"},
    {"avx512", "init_mb_mgr_avx512"},
};
#define NARCHS ARRAY_SIZE(imb_archs)

static const uint8_t bench_key[32] = "hookring bench key, 32 bytes....";

/* The messages: BATCH distinct ones, each of the size under test. */
static uint8_t msgs[BATCH][MAX_SIZE];
static uint8_t macs[BATCH][HMAC_SHA256_LEN];
static uint8_t want[BATCH][HMAC_SHA256_LEN];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A method signs all BATCH messages of len bytes into macs. */
struct method {
    void (*sign)(struct method *m, size_t len);
    enum hmac_impl impl; /* batch methods */
    IMB_MGR *mgr;        /* ipsec-mb methods */
    bool ok;             /* gave the reference bytes at every size (ipsec-mb may not) */
};

/* --- BoringSSL ------------------------------------------------------------------------------ */

static void sign_boringssl(struct method *m, size_t len)
{
    for (size_t i = 0; i < BATCH; i++) {
        unsigned out_len;
        HMAC(EVP_sha256(), bench_key, sizeof(bench_key), msgs[i], len, macs[i], &out_len);
    }
}

/* --- hmac_batch ----------------------------------------------------------------------------- */

static struct hmac_key key;
static struct slice pieces[BATCH];
static struct hmac_job jobs[BATCH];

static void sign_batch(struct method *m, size_t len)
{
    hmac_set_impl(m->impl);
    for (size_t i = 0; i < BATCH; i++) {
        pieces[i] = slice_of(msgs[i], len);
        jobs[i] = (struct hmac_job){&key, &pieces[i], 1, macs[i]};
    }
    hmac_batch(jobs, BATCH);
}

/* --- ipsec-mb ------------------------------------------------------------------------------- */

static struct {
    void *dl;
    IMB_MGR *(*alloc_mgr)(uint64_t flags);
    void (*free_mgr)(IMB_MGR *mgr);
    const char *(*version)(void);
    uint8_t ipad[32] __attribute__((aligned(16))); /* the key's hashed ipad/opad blocks */
    uint8_t opad[32] __attribute__((aligned(16)));
} imb;

static void sign_ipsec_mb(struct method *m, size_t len)
{
    IMB_MGR *mgr = m->mgr;
    IMB_JOB *job;

    for (size_t i = 0; i < BATCH; i++) {
        job = IMB_GET_NEXT_JOB(mgr);
        job->cipher_mode = IMB_CIPHER_NULL;
        job->cipher_direction = IMB_DIR_ENCRYPT;
        job->chain_order = IMB_ORDER_HASH_CIPHER;
        job->hash_alg = IMB_AUTH_HMAC_SHA_256;
        job->src = msgs[i];
        job->hash_start_src_offset_in_bytes = 0;
        job->msg_len_to_hash_in_bytes = len;
        job->auth_tag_output = macs[i];
        job->auth_tag_output_len_in_bytes = HMAC_SHA256_LEN;
        job->u.HMAC._hashed_auth_key_xor_ipad = imb.ipad;
        job->u.HMAC._hashed_auth_key_xor_opad = imb.opad;
        job = IMB_SUBMIT_JOB(mgr);
        while (job != NULL) {
            if (job->status != IMB_STATUS_COMPLETED) {
                m->ok = false;
            }
            job = IMB_GET_COMPLETED_JOB(mgr);
        }
    }
    while ((job = IMB_FLUSH_JOB(mgr)) != NULL) {
        if (job->status != IMB_STATUS_COMPLETED) {
            m->ok = false;
        }
    }
}

/* imb_open loads ipsec-mb and prepares one manager per architecture in mgrs (NULL where the
 * CPU or library refuses). Returns false when the library is not there. */
static bool imb_open(IMB_MGR *mgrs[NARCHS])
{
    imb.dl = dlopen("libIPSec_MB.so.1", RTLD_NOW | RTLD_LOCAL);
    if (imb.dl == NULL) {
        imb.dl = dlopen("libIPSec_MB.so", RTLD_NOW | RTLD_LOCAL);
    }
    if (imb.dl == NULL) {
        return false;
    }
    *(void **)&imb.alloc_mgr = dlsym(imb.dl, "alloc_mb_mgr");
    *(void **)&imb.free_mgr = dlsym(imb.dl, "free_mb_mgr");
    *(void **)&imb.version = dlsym(imb.dl, "imb_get_version_str");
    if (imb.alloc_mgr == NULL || imb.free_mgr == NULL) {
        return false;
    }
    for (size_t a = 0; a < NARCHS; a++) {
        void (*init)(IMB_MGR *);
        *(void **)&init = dlsym(imb.dl, imb_archs[a].init);
        mgrs[a] = imb.alloc_mgr(0);
        if (mgrs[a] == NULL || init == NULL) {
            continue;
        }
        init(mgrs[a]);
        if (mgrs[a]->imb_errno != 0) { /* e.g. the CPU lacks the architecture */
            imb.free_mgr(mgrs[a]);
            mgrs[a] = NULL;
        }
    }
    /* The precomputed states, as the library's own one-block SHA-256 leaves them. */
    for (size_t a = 0; a < NARCHS; a++) {
        if (mgrs[a] != NULL) {
            uint8_t block[64] = {0};
            memcpy(block, bench_key, sizeof(bench_key));
            for (size_t i = 0; i < sizeof(block); i++) {
                block[i] ^= 0x36;
            }
            IMB_SHA256_ONE_BLOCK(mgrs[a], block, imb.ipad);
            for (size_t i = 0; i < sizeof(block); i++) {
                block[i] ^= 0x36 ^ 0x5c;
            }
            IMB_SHA256_ONE_BLOCK(mgrs[a], block, imb.opad);
            break;
        }
    }
    return true;
}

/* --- measuring ------------------------------------------------------------------------------ */

/* run_once signs batches of len-byte messages for about seconds; returns messages per second. */
static double run_once(struct method *m, size_t len, double seconds)
{
    size_t units = 0, per_check = 1;
    double start = now_s(), elapsed;

    for (;;) {
        for (size_t i = 0; i < per_check; i++) {
            m->sign(m, len);
        }
        units += per_check;
        elapsed = now_s() - start;
        if (elapsed >= seconds) {
            break;
        }
        if (elapsed < seconds / 20) {
            per_check *= 2; /* fewer clock reads once the pace is known */
        }
    }
    return (double)(units * BATCH) / elapsed;
}

/* matches tells whether the last sign() produced the reference MACs. */
static bool matches(void)
{
    return memcmp(macs, want, sizeof(want)) == 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: sign [--json] [--seconds S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bool json = false;
    double seconds = 0.3;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtod(argv[++i], NULL);
            if (!(seconds > 0 && seconds < 60)) {
                usage();
            }
        } else {
            usage();
        }
    }

    srand(1);
    for (size_t i = 0; i < BATCH; i++) {
        for (size_t j = 0; j < MAX_SIZE; j++) {
            msgs[i][j] = (uint8_t)rand();
        }
    }
    hmac_set_impl(HMAC_IMPL_AUTO);
    const char *auto_name = hmac_impl_name();
    enum hmac_impl auto_impl = HMAC_IMPL_PORTABLE;
    hmac_key_init(&key, bench_key, sizeof(bench_key));

    /* methods: [0] BoringSSL, [1..NIMPLS] hmac_batch per implementation, then ipsec-mb. */
    struct method ms[1 + NIMPLS + NARCHS];
    IMB_MGR *mgrs[NARCHS] = {NULL};
    bool have_imb = imb_open(mgrs);

    ms[0] = (struct method){.sign = sign_boringssl, .ok = true};
    for (size_t i = 0; i < NIMPLS; i++) {
        int rc = hmac_set_impl(impls[i].impl);
        ms[1 + i] = (struct method){.sign = sign_batch, .impl = impls[i].impl, .ok = rc == 0};
        if (strcmp(impls[i].name, auto_name) == 0) {
            auto_impl = impls[i].impl;
        }
    }
    for (size_t a = 0; a < NARCHS; a++) {
        ms[1 + NIMPLS + a] =
            (struct method){.sign = sign_ipsec_mb, .mgr = mgrs[a], .ok = mgrs[a] != NULL};
    }

    double rate[ARRAY_SIZE(sizes)][ARRAY_SIZE(ms)] = {{0}};
    for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
        size_t len = sizes[s];

        /* Check every method against BoringSSL before timing it. */
        sign_boringssl(&ms[0], len);
        memcpy(want, macs, sizeof(want));
        for (size_t k = 1; k < ARRAY_SIZE(ms); k++) {
            if (!ms[k].ok) {
                continue;
            }
            memset(macs, 0, sizeof(macs));
            ms[k].sign(&ms[k], len);
            if (!matches()) {
                if (ms[k].sign == sign_batch) {
                    fprintf(stderr, "sign: hmac_batch (%s) differs from HMAC() at %zu bytes\n",
                            impls[k - 1].name, len);
                    return 1;
                }
                ms[k].ok = false; /* ipsec-mb: reported as unavailable */
            }
        }
        for (int r = 0; r < ROUNDS; r++) {
            for (size_t k = 0; k < ARRAY_SIZE(ms); k++) {
                if (ms[k].ok) {
                    double v = run_once(&ms[k], len, seconds);
                    rate[s][k] = v > rate[s][k] ? v : rate[s][k];
                }
            }
        }
    }
    hmac_set_impl(HMAC_IMPL_AUTO);

    size_t auto_k = 1 + (size_t)(auto_impl - HMAC_IMPL_PORTABLE);
    /* The goals for hmac_batch() against HMAC(): 3x at 64 bytes, 2x at 1 KiB (sizes[0], [2]). */
    bool targets_met = rate[0][auto_k] >= 3.0 * rate[0][0] && rate[2][auto_k] >= 2.0 * rate[2][0];
    if (json) {
        printf("{\"impl\":\"%s\",\"batch\":%d,\"seconds\":%g,\"rounds\":%d,", auto_name, BATCH,
               seconds, ROUNDS);
        printf("\"targets_met\":%s,", targets_met ? "true" : "false");
        printf("\"ipsec_mb\":%s%s%s,\"results\":[", have_imb ? "\"" : "",
               have_imb && imb.version ? imb.version() : "null", have_imb ? "\"" : "");
        for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
            printf("%s{\"size\":%zu,\"hmac\":%.0f,\"batch\":%.0f,\"ratio\":%.3f,\"impls\":{",
                   s ? "," : "", sizes[s], rate[s][0], rate[s][auto_k],
                   rate[s][auto_k] / rate[s][0]);
            for (size_t i = 0; i < NIMPLS; i++) {
                printf("%s\"%s\":", i ? "," : "", impls[i].name);
                printf(ms[1 + i].ok ? "%.0f" : "null", rate[s][1 + i]);
            }
            printf("},\"ipsec_mb\":{");
            for (size_t a = 0; a < NARCHS; a++) {
                printf("%s\"%s\":", a ? "," : "", imb_archs[a].name);
                printf(ms[1 + NIMPLS + a].ok ? "%.0f" : "null", rate[s][1 + NIMPLS + a]);
            }
            printf("}}");
        }
        printf("]}\n");
    } else {
        printf("hmac_batch implementation (AUTO): %s; %d messages per batch, key prepared once; "
               "best of %d x %.2f s\n",
               auto_name, BATCH, ROUNDS, seconds);
        printf("ipsec-mb: %s\n\n",
               have_imb ? (imb.version ? imb.version() : "loaded") : "not available");
        printf("%6s %14s %14s %7s %14s %7s\n", "size", "HMAC() msg/s", "batch msg/s", "ratio",
               "ipsec-mb msg/s", "ratio");
        for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
            double best_imb = 0;
            const char *best_arch = "-";
            for (size_t a = 0; a < NARCHS; a++) {
                if (ms[1 + NIMPLS + a].ok && rate[s][1 + NIMPLS + a] > best_imb) {
                    best_imb = rate[s][1 + NIMPLS + a];
                    best_arch = imb_archs[a].name;
                }
            }
            printf("%6zu %14.0f %14.0f %6.2fx", sizes[s], rate[s][0], rate[s][auto_k],
                   rate[s][auto_k] / rate[s][0]);
            if (best_imb > 0) {
                printf(" %14.0f %6.2fx (%s)\n", best_imb, best_imb / rate[s][0], best_arch);
            } else {
                printf(" %14s\n", "n/a");
            }
        }
        printf("\nper implementation, msg/s (ratio to HMAC())\n%6s", "size");
        for (size_t i = 0; i < NIMPLS; i++) {
            printf(" %18s", impls[i].name);
        }
        for (size_t a = 0; a < NARCHS; a++) {
            printf(" %18s", imb_archs[a].name);
        }
        printf("\n");
        for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
            printf("%6zu", sizes[s]);
            for (size_t k = 1; k < ARRAY_SIZE(ms); k++) {
                if (ms[k].ok) {
                    printf(" %10.0f (%4.2fx)", rate[s][k], rate[s][k] / rate[s][0]);
                } else {
                    printf(" %18s", "n/a");
                }
            }
            printf("\n");
        }
        printf("(ipsec-mb columns are its sse/avx2/avx512 managers)\n");
        printf("targets (batch >= 3x HMAC() at 64 B, >= 2x at 1024 B): %s\n",
               targets_met ? "met" : "NOT met");
    }

    for (size_t a = 0; a < NARCHS; a++) {
        if (mgrs[a] != NULL) {
            imb.free_mgr(mgrs[a]);
        }
    }
    if (imb.dl != NULL) {
        dlclose(imb.dl);
    }
    return 0;
}

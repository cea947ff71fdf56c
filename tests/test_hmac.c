/* test_hmac.c: the batched HMAC-SHA256 signer against RFC 4231 and against BoringSSL's HMAC(),
 * for every implementation (portable, shani, shani_x2, shani_x4, avx512_x16; those this CPU lacks
 * are skipped), with keys and messages from a fixed-seed generator so that a failure reproduces. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/hmac.h>

#include "sign/hmac.h"

TestSuite(hmac);

/* --- helpers -------------------------------------------------------------------------------- */

/* A splitmix64 generator: fixed seeds, same sequence on every run. */
static uint64_t rng_state;

static void rng_seed(uint64_t seed)
{
    rng_state = seed;
}

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* rng_below returns a number in [0, n). */
static size_t rng_below(size_t n)
{
    return (size_t)(rng_next() % n);
}

static void rng_fill(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)rng_next();
    }
}

/* rng_msg_len favours the lengths around block and padding boundaries, then anything to 64 KiB. */
static size_t rng_msg_len(void)
{
    switch (rng_below(4)) {
    case 0:
        return rng_below(200);
    case 1:
        return 64 * rng_below(8) + 55 + rng_below(10);
    default:
        return rng_below(65537);
    }
}

static size_t hex_decode(uint8_t *out, const char *hex)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void reference_hmac(uint8_t out[32], const uint8_t *key, size_t key_len, const uint8_t *msg,
                           size_t len)
{
    unsigned out_len = 0;
    cr_assert_not_null(HMAC(EVP_sha256(), key, key_len, msg, len, out, &out_len));
    cr_assert_eq(out_len, 32);
}

/* A message split into pieces, each piece in its own allocation of exactly its size so that
 * AddressSanitizer catches a read past any piece. */
struct split_msg {
    uint8_t *whole;
    size_t len;
    struct slice pieces[5];
    uint8_t *own[5];
    size_t npieces;
};

static void split_msg_make(struct split_msg *m, size_t len)
{
    size_t cuts[6];

    m->len = len;
    m->whole = malloc(len ? len : 1);
    cr_assert_not_null(m->whole);
    rng_fill(m->whole, len);
    m->npieces = 1 + rng_below(5);
    cuts[0] = 0;
    cuts[m->npieces] = len;
    for (size_t i = 1; i < m->npieces; i++) {
        cuts[i] = rng_below(len + 1);
    }
    for (size_t i = 1; i < m->npieces; i++) { /* insertion sort of the inner cuts */
        for (size_t j = i; j > 1 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    }
    for (size_t i = 0; i < m->npieces; i++) {
        size_t n = cuts[i + 1] - cuts[i];
        m->own[i] = n ? malloc(n) : NULL;
        if (n) {
            cr_assert_not_null(m->own[i]);
            memcpy(m->own[i], m->whole + cuts[i], n);
        }
        m->pieces[i] = slice_of(m->own[i], n);
    }
}

static void split_msg_free(struct split_msg *m)
{
    for (size_t i = 0; i < m->npieces; i++) {
        free(m->own[i]);
    }
    free(m->whole);
}

/* use_impl forces impl, skipping the test when this CPU cannot run it. */
static void use_impl(enum hmac_impl impl)
{
    int rc = hmac_set_impl(impl);
    if (rc == -ENOTSUP) {
        cr_skip_test("this CPU lacks SHA-NI or AVX-512");
    }
    cr_assert_eq(rc, 0);
}

/* --- known answers -------------------------------------------------------------------------- */

/* RFC 4231 section 4, HMAC-SHA-256 (case 5 is truncated to 128 bits). */
static const struct {
    const char *key, *data, *mac;
} rfc4231[] = {
    {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
    {"4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
     "dddddddddd",
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
    {"0102030405060708090a0b0c0d0e0f10111213141516171819",
     "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
     "cdcdcdcdcd",
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
    {"0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c", "546573742057697468205472756e636174696f6e",
     "a3b6167473100ee06e0c796c2955552b"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d204861736820"
     "4b6579204669727374",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "5468697320697320612074657374207573696e672061206c6172676572207468616e20626c6f636b2d73697a65"
     "206b657920616e642061206c6172676572207468616e20626c6f636b2d73697a6520646174612e20546865206b"
     "6579206e6565647320746f20626520686173686564206265666f7265206265696e672075736564206279207468"
     "6520484d414320616c676f726974686d2e",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
};

static void check_rfc4231(enum hmac_impl impl)
{
    use_impl(impl);
    for (size_t t = 0; t < ARRAY_SIZE(rfc4231); t++) {
        uint8_t key[256], data[256], want[32], got[32], batched[ARRAY_SIZE(rfc4231)][32] = {{0}};
        size_t key_len = hex_decode(key, rfc4231[t].key);
        size_t data_len = hex_decode(data, rfc4231[t].data);
        size_t mac_len = hex_decode(want, rfc4231[t].mac);
        struct hmac_key k;
        struct slice s = slice_of(data, data_len);

        hmac_key_init(&k, key, key_len);
        hmac_sha256(&k, &s, 1, got);
        cr_assert_arr_eq(got, want, mac_len, "RFC 4231 case %zu (%s)", t + 1, hmac_impl_name());

        /* The same case signed as every job of a batch (all lanes busy, one key shared). */
        struct hmac_job jobs[ARRAY_SIZE(rfc4231)];
        for (size_t j = 0; j < ARRAY_SIZE(jobs); j++) {
            jobs[j] = (struct hmac_job){&k, &s, 1, batched[j]};
        }
        hmac_batch(jobs, ARRAY_SIZE(jobs));
        for (size_t j = 0; j < ARRAY_SIZE(jobs); j++) {
            cr_assert_arr_eq(batched[j], want, mac_len, "RFC 4231 case %zu, job %zu (%s)", t + 1, j,
                             hmac_impl_name());
        }
    }
}

Test(hmac, rfc4231_portable)
{
    check_rfc4231(HMAC_IMPL_PORTABLE);
}

Test(hmac, rfc4231_shani)
{
    check_rfc4231(HMAC_IMPL_SHANI);
}

Test(hmac, rfc4231_shani_x2)
{
    check_rfc4231(HMAC_IMPL_SHANI_X2);
}

Test(hmac, rfc4231_shani_x4)
{
    check_rfc4231(HMAC_IMPL_SHANI_X4);
}

Test(hmac, rfc4231_avx512_x16)
{
    check_rfc4231(HMAC_IMPL_AVX512_X16);
}

Test(hmac, rfc4231_auto)
{
    check_rfc4231(HMAC_IMPL_AUTO);
}

/* --- random keys and messages, one at a time ------------------------------------------------ */

static void check_random_single(enum hmac_impl impl)
{
    use_impl(impl);
    rng_seed(0x686f6f6b72696e67ULL);
    for (int t = 0; t < 300; t++) {
        uint8_t key[200], want[32], got[32];
        size_t key_len = t <= 200 ? (size_t)t : rng_below(201);
        struct split_msg m;
        struct hmac_key k;

        rng_fill(key, key_len);
        /* Every length 0..200 first, so each block and padding boundary is crossed. */
        split_msg_make(&m, t <= 200 ? (size_t)t : rng_msg_len());
        reference_hmac(want, key, key_len, m.whole, m.len);
        hmac_key_init(&k, key, key_len);
        hmac_sha256(&k, m.pieces, m.npieces, got);
        cr_assert_arr_eq(got, want, 32, "key %zu B, message %zu B in %zu pieces (%s)", key_len,
                         m.len, m.npieces, hmac_impl_name());
        split_msg_free(&m);
    }
}

Test(hmac, random_single_portable)
{
    check_random_single(HMAC_IMPL_PORTABLE);
}

Test(hmac, random_single_shani)
{
    check_random_single(HMAC_IMPL_SHANI);
}

Test(hmac, random_single_shani_x2)
{
    check_random_single(HMAC_IMPL_SHANI_X2);
}

Test(hmac, random_single_shani_x4)
{
    check_random_single(HMAC_IMPL_SHANI_X4);
}

Test(hmac, random_single_avx512_x16)
{
    check_random_single(HMAC_IMPL_AVX512_X16);
}

/* --- random batches --------------------------------------------------------------------------- */

#define BATCH_MAX 48
#define BATCH_KEYS 3

/* check_random_batches signs batches of 1..max_jobs jobs. */
static void check_random_batches(enum hmac_impl impl, size_t max_jobs)
{
    use_impl(impl);
    rng_seed(0x6261746368ULL + max_jobs);
    for (int t = 0; t < 60; t++) {
        uint8_t keys[BATCH_KEYS][200], want[BATCH_MAX][32], got[BATCH_MAX][32] = {{0}};
        size_t key_lens[BATCH_KEYS], key_of[BATCH_MAX];
        struct hmac_key k[BATCH_KEYS];
        struct split_msg m[BATCH_MAX];
        struct hmac_job jobs[BATCH_MAX];
        size_t n = 1 + rng_below(max_jobs);

        for (size_t i = 0; i < BATCH_KEYS; i++) {
            key_lens[i] = rng_below(201);
            rng_fill(keys[i], key_lens[i]);
            hmac_key_init(&k[i], keys[i], key_lens[i]);
        }
        for (size_t j = 0; j < n; j++) {
            /* Mostly short jobs around a few long ones: lanes finish at different times. */
            size_t len = rng_below(3) ? rng_below(300) : rng_msg_len();
            split_msg_make(&m[j], len);
            key_of[j] = rng_below(BATCH_KEYS);
            reference_hmac(want[j], keys[key_of[j]], key_lens[key_of[j]], m[j].whole, m[j].len);
            jobs[j] = (struct hmac_job){&k[key_of[j]], m[j].pieces, m[j].npieces, got[j]};
        }
        hmac_batch(jobs, n);
        for (size_t j = 0; j < n; j++) {
            cr_assert_arr_eq(got[j], want[j], 32,
                             "batch %d job %zu/%zu: key %zu B, message %zu B in %zu pieces (%s)", t,
                             j, n, key_lens[key_of[j]], m[j].len, m[j].npieces, hmac_impl_name());
            split_msg_free(&m[j]);
        }
    }
}

Test(hmac, random_batches_portable)
{
    check_random_batches(HMAC_IMPL_PORTABLE, 17);
}

Test(hmac, random_batches_shani)
{
    check_random_batches(HMAC_IMPL_SHANI, 17);
}

Test(hmac, random_batches_shani_x2)
{
    check_random_batches(HMAC_IMPL_SHANI_X2, 17);
}

Test(hmac, random_batches_shani_x4)
{
    check_random_batches(HMAC_IMPL_SHANI_X4, 17);
}

Test(hmac, random_batches_avx512_x16)
{
    check_random_batches(HMAC_IMPL_AVX512_X16, 17);
}

/* Batches wide enough to keep all sixteen lanes busy, refilled as jobs finish. */
Test(hmac, random_wide_batches_avx512_x16)
{
    check_random_batches(HMAC_IMPL_AVX512_X16, BATCH_MAX);
}

/* One long job among many short ones: the long one must survive every refill around it. */
Test(hmac, long_job_among_short)
{
    static const enum hmac_impl impls[] = {HMAC_IMPL_PORTABLE, HMAC_IMPL_SHANI, HMAC_IMPL_SHANI_X2,
                                           HMAC_IMPL_SHANI_X4, HMAC_IMPL_AVX512_X16};
    enum { N = 29 };
    uint8_t key[32], want[N][32], got[N][32];
    struct split_msg m[N];
    struct hmac_job jobs[N];
    struct hmac_key k;

    rng_seed(42);
    rng_fill(key, sizeof(key));
    for (size_t j = 0; j < N; j++) {
        split_msg_make(&m[j], j == 1 ? 40000 : j % 4);
        reference_hmac(want[j], key, sizeof(key), m[j].whole, m[j].len);
    }
    for (size_t i = 0; i < ARRAY_SIZE(impls); i++) {
        if (hmac_set_impl(impls[i]) != 0) {
            continue; /* no SHA-NI: the portable pass still ran */
        }
        hmac_key_init(&k, key, sizeof(key));
        memset(got, 0, sizeof(got));
        for (size_t j = 0; j < N; j++) {
            jobs[j] = (struct hmac_job){&k, m[j].pieces, m[j].npieces, got[j]};
        }
        hmac_batch(jobs, N);
        for (size_t j = 0; j < N; j++) {
            cr_assert_arr_eq(got[j], want[j], 32, "job %zu (%s)", j, hmac_impl_name());
        }
    }
    for (size_t j = 0; j < N; j++) {
        split_msg_free(&m[j]);
    }
}

/* --- the rest of the contract --------------------------------------------------------------- */

/* An empty message may come as no pieces at all (NULL, 0) or as empty pieces. */
Test(hmac, empty_message)
{
    static const struct slice empty[3] = {{NULL, 0}, {(const uint8_t *)"", 0}, {NULL, 0}};
    uint8_t want[32], got[32];
    struct hmac_key k;

    reference_hmac(want, (const uint8_t *)"key", 3, (const uint8_t *)"", 0);
    hmac_key_init(&k, (const uint8_t *)"key", 3);
    hmac_sha256(&k, NULL, 0, got);
    cr_assert_arr_eq(got, want, 32);
    memset(got, 0, sizeof(got));
    hmac_sha256(&k, empty, ARRAY_SIZE(empty), got);
    cr_assert_arr_eq(got, want, 32);
}

Test(hmac, empty_batch_is_a_no_op)
{
    hmac_batch(NULL, 0);
}

Test(hmac, set_impl_and_name)
{
    cr_assert_eq(hmac_set_impl(HMAC_IMPL_PORTABLE), 0);
    cr_assert_str_eq(hmac_impl_name(), "portable");
    int rc = hmac_set_impl(HMAC_IMPL_SHANI_X4);
    if (rc == 0) {
        cr_assert_str_eq(hmac_impl_name(), "shani_x4");
        cr_assert_eq(hmac_set_impl(HMAC_IMPL_SHANI_X2), 0);
        cr_assert_str_eq(hmac_impl_name(), "shani_x2");
        cr_assert_eq(hmac_set_impl(HMAC_IMPL_SHANI), 0);
        cr_assert_str_eq(hmac_impl_name(), "shani");
    } else {
        cr_assert_eq(rc, -ENOTSUP);
        cr_assert_str_eq(hmac_impl_name(), "portable", "a refused choice changes nothing");
    }
    rc = hmac_set_impl(HMAC_IMPL_AVX512_X16);
    if (rc == 0) {
        cr_assert_str_eq(hmac_impl_name(), "avx512_x16");
    } else {
        cr_assert_eq(rc, -ENOTSUP);
    }
    cr_assert_eq(hmac_set_impl(HMAC_IMPL_AUTO), 0);
    cr_assert_str_neq(hmac_impl_name(), "auto", "AUTO names what it resolved to");
}

Test(hmac, key_wipe_zeroes)
{
    static const struct hmac_key zero;
    struct hmac_key k;

    hmac_key_init(&k, (const uint8_t *)"secret", 6);
    cr_assert(memcmp(&k, &zero, sizeof(k)) != 0);
    hmac_key_wipe(&k);
    cr_assert(memcmp(&k, &zero, sizeof(k)) == 0);
}

/* Threads signing at once from the first use of AUTO agree with the reference. */
static void *sign_thread(void *arg)
{
    const uint8_t *msg = arg;
    uint8_t want[32], got[8][32] = {{0}};
    struct hmac_key k;
    struct slice s = slice_of(msg, 1000);
    struct hmac_job jobs[8];

    reference_hmac(want, (const uint8_t *)"key", 3, msg, 1000);
    hmac_key_init(&k, (const uint8_t *)"key", 3);
    for (int r = 0; r < 50; r++) {
        for (size_t j = 0; j < 8; j++) {
            jobs[j] = (struct hmac_job){&k, &s, 1, got[j]};
        }
        hmac_batch(jobs, 8);
        for (size_t j = 0; j < 8; j++) {
            if (memcmp(got[j], want, 32) != 0) {
                return (void *)1;
            }
        }
    }
    return NULL;
}

Test(hmac, threads_share_auto)
{
    static uint8_t msg[1000];
    pthread_t th[4];

    rng_seed(7);
    rng_fill(msg, sizeof(msg));
    for (size_t i = 0; i < ARRAY_SIZE(th); i++) {
        cr_assert_eq(pthread_create(&th[i], NULL, sign_thread, msg), 0);
    }
    for (size_t i = 0; i < ARRAY_SIZE(th); i++) {
        void *ret;
        cr_assert_eq(pthread_join(th[i], &ret), 0);
        cr_assert_null(ret, "thread %zu signed wrongly", i);
    }
}

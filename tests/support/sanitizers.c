/* sanitizers.c: hooks every test binary needs under a sanitizer (nothing calls them in a plain
 * build). */
#include "sanitizers.h"

#ifdef TN_UNDER_TSAN
/* Criterion maps its arena (BoxFort's bxf_arena_init) at one of ten random 16 MiB-aligned
 * bases from 32 to 96 TiB and gives up when all ten are taken; ThreadSanitizer reserves all of
 * that range but 85-90 TiB (x86-64), so a suite would rarely start (Snaipe/Criterion#274).
 * BoxFort draws the bases with rand_r(), which nothing else in the tests calls: this one, found
 * before libc's, draws only bases in the free 86-86.5 TiB. */
int rand_r(unsigned int *seed);
int rand_r(unsigned int *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return 0x360000 + (int)((*seed >> 8) % 0x8000);
}
#endif

/* Criterion 2.4.1's runner leaks one 48-byte block (a calloc inside libcriterion) when tests
 * that have a .timeout run with --jobs 2; under ASan, LeakSanitizer then makes the suite exit 1
 * although every test passed. The runner is not under test, so its leaks are suppressed. The
 * sanitizer runtime calls this hook at start-up. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libcriterion.so\n";
}

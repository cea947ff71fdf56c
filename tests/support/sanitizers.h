/* sanitizers.h: what the test suites need to know of the sanitizer they run under. The hooks
 * every suite shares (Criterion's arena under ThreadSanitizer, LeakSanitizer's suppressions)
 * are in sanitizers.c, linked into every test binary. */
#ifndef HOOKRING_TESTS_SANITIZERS_H
#define HOOKRING_TESTS_SANITIZERS_H

#if defined(__SANITIZE_THREAD__)
#define TN_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TN_UNDER_TSAN 1
#endif
#endif

#endif

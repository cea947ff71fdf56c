#!/usr/bin/env bash
# tests/run.sh BUILD_DIR...: run every Criterion suite built in each BUILD_DIR/tests, then the
# provider-verifier conformance suite (against the first BUILD_DIR's binaries), and print one
# closing line "tests: N passed, N failed". In a ThreadSanitizer build (a BUILD_DIR ending in
# /tsan) only the suites of the lock-free and threaded code run (TSAN_SUITES): Criterion
# itself is not TSan-friendly, and those are the suites TSan is for. test_serve,
# test_serve_features and test_serve_retention run a second time with HOOKRING_SERVE_WORKERS=2
# (hookring serve --workers 2: attempts on two worker threads), shown as "... (workers=2)".
# Every hookring serve they start checks its count of pending deliveries against a scan of
# them at each /v1/health and /metrics (HOOKRING_TEST_COUNT_CHECK) and aborts on a difference.
set -u
cd "$(dirname "$0")/.."
export HOOKRING_TEST_COUNT_CHECK=1
passed=0
failed=0
bad_suites=()
first_build="$1"
TSAN_SUITES=${TSAN_SUITES:-test_dedup test_xpool test_serve_workers}
for build in "$@"; do
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        case "$build" in
        */tsan | tsan) [[ " $TSAN_SUITES " == *" $(basename "$t") "* ]] || continue ;;
        esac
        workers_runs=("")
        case "$(basename "$t")" in
        test_serve | test_serve_features | test_serve_retention) workers_runs=("" 2) ;;
        esac
        for workers in "${workers_runs[@]}"; do
            name="$t"
            [ -n "$workers" ] && name="$t (workers=$workers)"
            echo "=== $name"
            out=$(HOOKRING_BUILD="$build" HOOKRING_SERVE_WORKERS="$workers" "$t" --jobs 2 2>&1)
            rc=$?
            if [ $rc -eq 0 ]; then
                printf '%s\n' "$out" | grep -v '^\[----\]' | tail -n 25
            else
                printf '%s\n' "$out" | tail -n 120 # a failing suite shows its assertions
            fi
            syn=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -n 1)
            p=$(printf '%s' "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
            f=$(printf '%s' "$syn" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
            c=$(printf '%s' "$syn" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
            passed=$((passed + ${p:-0}))
            failed=$((failed + ${f:-0} + ${c:-0}))
            if [ $rc -ne 0 ] || [ -z "$syn" ]; then
                bad_suites+=("$name")
                [ -z "$syn" ] && failed=$((failed + 1))
            fi
        done
    done
done
if [ -x tests/verifiers/run.sh ]; then
    echo "=== provider verifiers (tests/verifiers)"
    out=$(tests/verifiers/run.sh "$first_build" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^verifiers: [0-9]+ passed, [0-9]+ failed' | tail -n 1)
    p=$(printf '%s' "$line" | sed -n 's/^verifiers: \([0-9]*\) passed.*/\1/p')
    f=$(printf '%s' "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    if [ $rc -ne 0 ] || [ -z "$line" ]; then
        bad_suites+=("tests/verifiers")
        [ -z "$line" ] && failed=$((failed + 1))
    fi
fi
[ ${#bad_suites[@]} -gt 0 ] && echo "failing suites: ${bad_suites[*]}"
echo "tests: $passed passed, $failed failed"
[ $failed -eq 0 ] && [ ${#bad_suites[@]} -eq 0 ]

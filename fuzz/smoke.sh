#!/usr/bin/env bash
# fuzz/smoke.sh SECONDS TARGET...: run each libFuzzer target for SECONDS on a scratch copy of
# its seed corpus (fuzz/corpus/<name>), with the max_len from fuzz/README.md. Fails on any
# crash, leak, timeout or sanitizer report.
set -u
secs="$1"
shift
cd "$(dirname "$0")/.."
status=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for bin in "$@"; do
    name=$(basename "$bin")
    target=${name#fuzz_}
    max_len=$(awk -F'|' -v t="$name" '$2 ~ "^ *" t " *$" {gsub(/ /, "", $3); print $3}' fuzz/README.md)
    [ -n "$max_len" ] || max_len=4096
    mkdir -p "$work/$target"
    [ -d "fuzz/corpus/$target" ] && cp -r "fuzz/corpus/$target/." "$work/$target/"
    dict=()
    [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
    echo "=== $name: ${secs}s, max_len $max_len"
    if ! "$bin" "$work/$target" "${dict[@]}" -max_total_time="$secs" -max_len="$max_len" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/" \
        >"$work/$name.log" 2>&1; then
        echo "FAIL: $name"
        tail -n 40 "$work/$name.log"
        for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
            [ -f "$a" ] && echo "artifact: $a" && xxd "$a" | head -n 20
        done
        status=1
    else
        grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$work/$name.log" | tr '\n' ' '
        echo
    fi
done
if [ $status -eq 0 ]; then
    echo "fuzz-smoke: $# passed, 0 failed"
else
    echo "fuzz-smoke: some targets failed"
fi
exit $status

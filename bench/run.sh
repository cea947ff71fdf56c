#!/usr/bin/env bash
# bench/run.sh [BUILD_DIR]: every benchmark, each against its reference measured in the same
# run, with what it printed kept under bench/results/ (one file per bench, plus .json where the
# bench writes one). `make bench` calls this. Figures are reported, never asserted here: the
# machines are shared and noisy, so read ratios, not absolute rates.
#
#   sign     batched HMAC (hmac_batch) against BoringSSL's one-shot HMAC(), and ipsec-mb
#   wheel    the timer wheel against a binary heap at 1M pending timers
#   dedup    the lock-free dedup table against the same table behind a mutex, 1 and 2 threads
#   harness  the mock subscriber (verifying) against nginx, both under wrk
#   blast    hookring blast against wrk, same nginx, c=256 and c=4096, and RSS at 10k conns
#   blast_tls  the same over HTTPS: keep-alive, and a new connection per request (resumed)
#   journal  durable appends with group commit against one fdatasync per record
#   ingest   hookring serve taking durable events against Redis XADD (appendfsync always); and
#            events delivered end to end (serve -> harness) against hookring blast
#   webhooks serve's ingest CPU and restart time with 100 .. 10 000 agent-filtered webhooks,
#            against none (ingest) and one (restart)
#
# BENCHES="sign wheel" picks some. Environment of each script passes through (DURATION, ...).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BENCHES=${BENCHES:-sign wheel dedup journal harness blast blast_tls ingest webhooks}
out=bench/results
mkdir -p "$out"
failed=0

run() {
    local name=$1
    shift
    echo "== $name: $*"
    if "$@" 2>&1 | tee "$out/$name.txt"; then
        :
    else
        echo "bench/run.sh: $name failed" >&2
        failed=1
    fi
    echo
}

for b in $BENCHES; do
    case $b in
    sign | wheel | dedup | journal) run "$b" "$BUILD/bench/$b" ;;
    harness) JSON="$out/harness.json" run harness bench/harness.sh "$BUILD" ;;
    blast) JSON="$out/blast.json" run blast bench/blast.sh "$BUILD" ;;
    blast_tls) JSON="$out/blast_tls.json" run blast_tls bench/blast_tls.sh "$BUILD" ;;
    ingest) JSON="$out/ingest.json" run ingest bench/ingest.sh "$BUILD" ;;
    webhooks) run webhooks bench/webhooks.sh "$BUILD" ;;
    *) echo "bench/run.sh: unknown bench '$b'" >&2; failed=1 ;;
    esac
done
exit $failed

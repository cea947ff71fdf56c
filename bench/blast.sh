#!/usr/bin/env bash
# bench/blast.sh [BUILD_DIR]: hookring blast against wrk, the same receiver, the same run.
#
# The receiver is nginx (nginx-light, one worker, `return 200`) on CPU 0; the client on CPU 1
# (taskset, when the machine has two CPUs). For each concurrency in CONCS (256 and 4096):
#   wrk -t1 -cC -dD with a 1 KiB POST body (pre-built: wrk signs nothing), then
#   hookring blast --profile humiris --workers 1 --concurrency C --duration D: a fresh event per
#   delivery (unique id, 1 KiB of data), built and signed (HMAC-SHA256) the way humiris does.
# Each round runs both in turn (the order alternates); the best rate of each over ROUNDS is
# kept, with the CPU seconds of that run. CPU is the client's user+system time from rusage, so
# wrk and blast are charged the same way. Then one blast run at CONNS10K connections reports its
# peak RSS.
#
# Prints one line per measurement and a summary with the ratios; exits 1 when a client saw
# errors. The receiver's own CPU over each run is shown as "nginx busy N%": at ~100 % the rate
# measures nginx, not the client. Environment: DURATION (5s; whole seconds), ROUNDS (2), CONCS ("256 4096"), CONNS10K (10000),
# JSON=path to also write the figures. Performance is reported, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-2}
CONCS=${CONCS:-256 4096}
CONNS10K=${CONNS10K:-10000}
HOOKRING="$BUILD/hookring"
SECRET="whsec_k9m2x4p7q1humiris"

. bench/lib.sh
bench_need wrk nginx python3 "$HOOKRING"

need=$((CONNS10K + 64))
if [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi

python3 -c "import sys; sys.stdout.write('x' * 1024)" > "$tmp/body"
cat > "$tmp/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("$tmp/body", "rb"))
wrk.body = f:read("*a")
f:close()
LUA

start_nginx $((CONNS10K + 1024))
url="http://127.0.0.1:$nginx_port/hooks"

# run_wrk C: prints "RATE CPU_S REQUESTS NGINX_CPU_S"
run_wrk() {
    local r n0 n1
    n0=$(nginx_cpu)
    r=$(cpu_of "$tmp/wrk.out" "${pin_client[@]}" wrk -t1 -c"$1" -d"$DURATION" -s "$tmp/post.lua" "$url")
    cat "$tmp/wrk.out" >> "$tmp/wrk.log"
    if grep -qE 'Non-2xx|Socket errors' "$tmp/wrk.out"; then
        echo "bench/blast.sh: wrk saw errors:" >&2
        cat "$tmp/wrk.out" >&2
        exit 1
    fi
    n1=$(nginx_cpu)
    python3 - "$tmp/wrk.out" "$r" "$n0" "$n1" <<'PY'
import re, sys
out = open(sys.argv[1]).read()
rate = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
n = int(re.search(r"(\d+) requests in", out).group(1))
cpu = float(sys.argv[2].split()[0])
print("%.1f %.4f %d %.2f" % (rate, cpu, n, float(sys.argv[4]) - float(sys.argv[3])))
PY
}

# run_blast C [extra...]: prints "RATE CPU_S DELIVERIES RSS_KIB NGINX_CPU_S"
run_blast() {
    local c=$1
    shift
    local r n0 n1
    n0=$(nginx_cpu)
    r=$(cpu_of "$tmp/blast.json" "${pin_client[@]}" "$HOOKRING" blast --profile humiris \
        --secret "$SECRET" --url "$url" --concurrency "$c" --workers 1 \
        --allow-net 127.0.0.0/8 --json --quiet "$@")
    n1=$(nginx_cpu)
    cat "$tmp/blast.json" >> "$tmp/blast.log"
    python3 - "$tmp/blast.json" "$r" "$n0" "$n1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
if j["failed"] or j["ok"] != j["deliveries"] or j["deliveries"] == 0:
    sys.exit("bench/blast.sh: blast saw failures: %s" % json.dumps(j))
cpu = float(sys.argv[2].split()[0])
print("%.1f %.4f %d %d %.2f" % (j["rate"], cpu, j["deliveries"], j["max_rss_kib"],
                                float(sys.argv[4]) - float(sys.argv[3])))
PY
}

# warm-up: connections, page cache, nginx's pools
DURATION=1s run_wrk 256 >/dev/null
run_blast 256 --duration 1s >/dev/null

summary=()
json_parts=()
for c in $CONCS; do
    best_w="0 0 1 0"
    best_b="0 0 1 0 0"
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then
            w=$(run_wrk "$c")
            b=$(run_blast "$c" --duration "$DURATION")
        else
            b=$(run_blast "$c" --duration "$DURATION")
            w=$(run_wrk "$c")
        fi
        echo "c=$c round $round: wrk ${w%% *} req/s, blast ${b%% *} deliveries/s"
        best_w=$(python3 -c "a='$best_w'.split(); b='$w'.split(); print(' '.join(b if float(b[0]) > float(a[0]) else a))")
        best_b=$(python3 -c "a='$best_b'.split(); b='$b'.split(); print(' '.join(b if float(b[0]) > float(a[0]) else a))")
    done
    line=$(python3 - "$c" "$best_w" "$best_b" "${DURATION%s}" <<'PY'
import sys
c = sys.argv[1]
wr, wc, wn, wng = (float(x) for x in sys.argv[2].split())
br, bc, bn, brss, bng = (float(x) for x in sys.argv[3].split())
wu, bu = wc * 1e6 / wn, bc * 1e6 / bn
# how busy the receiver was: its CPU seconds over the run's length (the same for both)
secs = float(sys.argv[4])
print("c=%s: wrk %.0f req/s, %.2f us CPU/request (nginx busy %.0f%%) | blast %.0f deliveries/s, "
      "%.2f us CPU/delivery, RSS %.1f MiB (nginx busy %.0f%%) | rate ratio %.2f, "
      "CPU/delivery ratio %.2f"
      % (c, wr, wu, 100 * wng / secs, br, bu, brss / 1024, 100 * bng / secs, br / wr, bu / wu))
print('{"concurrency":%s,"wrk_rps":%.1f,"wrk_cpu_us":%.3f,"wrk_nginx_busy":%.3f,"blast_rps":%.1f,'
      '"blast_cpu_us":%.3f,"blast_nginx_busy":%.3f,"blast_rss_kib":%d,"rate_ratio":%.3f,'
      '"cpu_ratio":%.3f}'
      % (c, wr, wu, wng / secs, br, bu, bng / secs, brss, br / wr, bu / wu))
PY
)
    summary+=("$(echo "$line" | head -n 1)")
    json_parts+=("$(echo "$line" | tail -n 1)")
done

big=$(run_blast "$CONNS10K" --duration "$DURATION")
read -r big_rate _ big_n big_rss _ <<< "$big"
summary+=("c=$CONNS10K: blast $big_rate deliveries/s ($big_n delivered), peak RSS $(python3 -c "print('%.1f' % ($big_rss / 1024))") MiB")

echo
echo "nginx-light, 1 worker, return 200; 1 KiB bodies; keep-alive; client and server on separate CPUs"
for s in "${summary[@]}"; do
    echo "$s"
done
if [ -n "${JSON:-}" ]; then
    (IFS=,; printf '{"bench":"blast","duration":"%s","runs":[%s],"conns_10k":{"concurrency":%s,"rate":%s,"rss_kib":%s}}\n' \
        "$DURATION" "${json_parts[*]}" "$CONNS10K" "$big_rate" "$big_rss") > "$JSON"
fi

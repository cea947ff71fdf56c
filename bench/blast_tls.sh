#!/usr/bin/env bash
# bench/blast_tls.sh [BUILD_DIR]: hookring blast against wrk over HTTPS, the same TLS receiver,
# the same run.
#
# The receiver is nginx (one worker, `return 200`, TLS with a throw-away CA made here, a session
# cache) on CPU 0; the client on CPU 1. Two modes, each measured for both clients in turn:
#   keep-alive       wrk -t1 -cC over https, against blast --workers 1 --concurrency C
#   new connection   wrk with `Connection: close` (a TLS handshake per request), against
#                    blast --new-connections (one connection per delivery, sessions resumed)
# blast signs every delivery (humiris, 1 KiB of data); wrk sends a pre-built 1 KiB body.
# Best rate of ROUNDS kept per client and mode, with its CPU seconds (rusage, the same for both).
# Environment: DURATION (5s), ROUNDS (2), CONNS (256), CONNS_NEW (64), JSON=path.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-256}
CONNS_NEW=${CONNS_NEW:-64}
HOOKRING="$BUILD/hookring"
SECRET="whsec_k9m2x4p7q1humiris"

. bench/lib.sh
bench_need wrk nginx python3 openssl "$HOOKRING"

make_pki "$tmp/pki"
python3 -c "import sys; sys.stdout.write('x' * 1024)" > "$tmp/body"
for mode in keep close; do
    {
        echo 'wrk.method = "POST"'
        echo 'wrk.headers["Content-Type"] = "application/json"'
        [ "$mode" = close ] && echo 'wrk.headers["Connection"] = "close"'
        echo "local f = assert(io.open(\"$tmp/body\", \"rb\"))"
        echo 'wrk.body = f:read("*a")'
        echo 'f:close()'
    } > "$tmp/post-$mode.lua"
done

start_nginx 4096 "$tmp/pki/server.pem" "$tmp/pki/server.key"
url="https://127.0.0.1:$nginx_port/hooks"

# run_wrk MODE C: prints "RATE CPU_S REQUESTS"
run_wrk() {
    local r
    r=$(cpu_of "$tmp/wrk.out" "${pin_client[@]}" wrk -t1 -c"$2" -d"$DURATION" -s "$tmp/post-$1.lua" "$url")
    if grep -qE 'Non-2xx' "$tmp/wrk.out"; then
        echo "bench/blast_tls.sh: wrk saw errors:" >&2
        cat "$tmp/wrk.out" >&2
        exit 1
    fi
    python3 - "$tmp/wrk.out" "$r" <<'PY'
import re, sys
out = open(sys.argv[1]).read()
rate = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
n = int(re.search(r"(\d+) requests in", out).group(1))
print("%.1f %.4f %d" % (rate, float(sys.argv[2].split()[0]), n))
PY
}

# run_blast MODE C: prints "RATE CPU_S DELIVERIES RESUMED"
run_blast() {
    local extra=()
    [ "$1" = close ] && extra=(--new-connections)
    local r
    r=$(cpu_of "$tmp/blast.json" "${pin_client[@]}" "$HOOKRING" blast --profile humiris \
        --secret "$SECRET" --url "$url" --concurrency "$2" --workers 1 --duration "$DURATION" \
        --allow-net 127.0.0.0/8 --ca-file "$tmp/pki/ca.pem" --json --quiet "${extra[@]}")
    python3 - "$tmp/blast.json" "$r" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
if j["failed"] or j["deliveries"] == 0:
    sys.exit("bench/blast_tls.sh: blast saw failures: %s" % json.dumps(j))
print("%.1f %.4f %d %d" % (j["rate"], float(sys.argv[2].split()[0]), j["deliveries"], j["tls_resumed"]))
PY
}

DURATION=1s run_wrk keep 64 >/dev/null
summary=()
json_parts=()
for mode in keep close; do
    c=$CONNS
    [ "$mode" = close ] && c=$CONNS_NEW
    best_w="0 0 1"
    best_b="0 0 1 0"
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then
            w=$(run_wrk "$mode" "$c"); b=$(run_blast "$mode" "$c")
        else
            b=$(run_blast "$mode" "$c"); w=$(run_wrk "$mode" "$c")
        fi
        echo "$mode c=$c round $round: wrk ${w%% *} req/s, blast ${b%% *} deliveries/s"
        best_w=$(python3 -c "a='$best_w'.split(); b='$w'.split(); print(' '.join(b if float(b[0]) > float(a[0]) else a))")
        best_b=$(python3 -c "a='$best_b'.split(); b='$b'.split(); print(' '.join(b if float(b[0]) > float(a[0]) else a))")
    done
    line=$(python3 - "$mode" "$c" "$best_w" "$best_b" <<'PY'
import sys
mode, c = sys.argv[1], sys.argv[2]
wr, wc, wn = (float(x) for x in sys.argv[3].split())
br, bc, bn, bres = (float(x) for x in sys.argv[4].split())
wu, bu = wc * 1e6 / wn, bc * 1e6 / bn
name = "keep-alive" if mode == "keep" else "new connection per request"
print("%s, c=%s: wrk %.0f req/s, %.1f us CPU/request | blast %.0f deliveries/s, %.1f us "
      "CPU/delivery%s | rate ratio %.2f, CPU/delivery ratio %.2f"
      % (name, c, wr, wu, br, bu, ", %d resumed" % bres if mode == "close" else "", br / wr, bu / wu))
print('{"mode":"%s","concurrency":%s,"wrk_rps":%.1f,"wrk_cpu_us":%.2f,"blast_rps":%.1f,'
      '"blast_cpu_us":%.2f,"blast_resumed":%d,"rate_ratio":%.3f,"cpu_ratio":%.3f}'
      % (mode, c, wr, wu, br, bu, bres, br / wr, bu / wu))
PY
)
    summary+=("$(echo "$line" | head -n 1)")
    json_parts+=("$(echo "$line" | tail -n 1)")
done
echo
echo "nginx-light, 1 worker, TLS (P-256), return 200; 1 KiB bodies; client and server on separate CPUs"
for s in "${summary[@]}"; do
    echo "$s"
done
if [ -n "${JSON:-}" ]; then
    (IFS=,; printf '{"bench":"blast_tls","duration":"%s","runs":[%s]}\n' "$DURATION" "${json_parts[*]}") > "$JSON"
fi

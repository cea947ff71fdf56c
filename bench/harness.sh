#!/usr/bin/env bash
# bench/harness.sh [BUILD_DIR]: one hookring-harness thread (signature verification on) against
# one nginx worker answering `return 200`, under the same wrk load, in the same run.
#
# The load: wrk -t1 -c256 -d10s, every request a signed 1 KiB POST (profile github: its
# signature does not depend on the time, so one pre-signed request stays valid for the run).
# The harness must verify every one; the script checks its stats afterwards (all verified, no
# bad signature). Servers run on CPU 0 and wrk on CPU 1 when taskset is there and the machine
# has two CPUs or more, so the two servers get the same core.
#
# Environment: DURATION (10s), CONNS (256), ROUNDS (1: each round measures both, best kept),
# JSON=path to also write the figures as JSON. Done-when: ratio >= 1.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-256}
ROUNDS=${ROUNDS:-1}
HARNESS="$BUILD/hookring-harness"
HOOKRING="$BUILD/hookring"
SECRET="bench-secret-0123456789"

. bench/lib.sh
bench_need wrk nginx python3 "$HARNESS"

# ---- the signed request -------------------------------------------------------------------
# A 1 KiB body: github sends `data` as the body, so data is padded to exactly 1024 bytes.
python3 - "$tmp/event.json" <<'PY'
import json, sys
pad = 1024 - len(json.dumps({"pad": ""}, separators=(",", ":")))
data = json.dumps({"pad": "x" * pad}, separators=(",", ":"))
assert len(data) == 1024
with open(sys.argv[1], "w") as f:
    f.write('{"id":"evt_bench0000000001","type":"meeting.completed","data":%s}' % data)
PY
if [ -x "$HOOKRING" ]; then
    "$HOOKRING" sign --profile github --secret "$SECRET" "$tmp/event.json" > "$tmp/request"
else
    # the same request by hand: X-Hub-Signature-256 is HMAC-SHA256(secret, body) in hex
    python3 - "$tmp/event.json" "$tmp/body" <<'PY'
import json, sys
ev = open(sys.argv[1]).read()
body = ev[ev.index('"data":') + 7:-1]
open(sys.argv[2], "w").write(body)
PY
    sig=$(openssl dgst -sha256 -hmac "$SECRET" -r < "$tmp/body" | cut -d' ' -f1)
    { printf 'Content-Type: application/json\nX-GitHub-Event: meeting.completed\n'
      printf 'X-GitHub-Delivery: 00000000-0000-8000-8000-000000000001\n'
      printf 'X-Hub-Signature-256: sha256=%s\n\n' "$sig"; cat "$tmp/body"; } > "$tmp/request"
fi
# split into headers and the exact body bytes
python3 - "$tmp/request" "$tmp/body" "$tmp/post.lua" <<'PY'
import sys
raw = open(sys.argv[1], "rb").read()
sep = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
head, body = raw.split(sep, 1)
assert len(body) == 1024, len(body)
open(sys.argv[2], "wb").write(body)
lines = ['wrk.method = "POST"']
for line in head.decode().splitlines():
    name, value = line.split(":", 1)
    if name.lower() == "content-length":
        continue  # wrk adds it
    lines.append('wrk.headers["%s"] = "%s"' % (name, value.strip()))
lines.append('local f = assert(io.open("%s", "rb"))' % sys.argv[2])
lines.append("wrk.body = f:read(\"*a\")")
lines.append("f:close()")
open(sys.argv[3], "w").write("\n".join(lines) + "\n")
PY

# ---- the servers ---------------------------------------------------------------------------
start_harness() {
    "${pin_server[@]}" "$HARNESS" --listen 127.0.0.1:0 --threads 1 --profile github \
        --secret "$SECRET" --quiet > "$tmp/harness.out" 2> "$tmp/harness.err" &
    pids+=($!)
    harness_pid=$!
    for _ in $(seq 100); do
        harness_addr=$(sed -n 's/^listening on //p' "$tmp/harness.out" | head -n 1)
        [ -n "$harness_addr" ] && return 0
        sleep 0.05
    done
    echo "bench/harness.sh: the harness did not start:" >&2
    cat "$tmp/harness.err" >&2
    exit 1
}

# run_wrk URL: prints requests/s; fails when wrk saw errors or non-2xx answers
run_wrk() {
    local out
    out=$("${pin_client[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" -s "$tmp/post.lua" "$1")
    echo "$out" >> "$tmp/wrk.log"
    if echo "$out" | grep -q 'Non-2xx or 3xx responses'; then
        echo "bench/harness.sh: $1 answered non-2xx:" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "$out" | sed -n 's/^Requests\/sec: *//p'
}

start_harness
start_nginx 4096
# warm both up (connections, page faults), then measure
DURATION=2s run_wrk "http://$harness_addr/ok/bench" >/dev/null
DURATION=2s run_wrk "http://127.0.0.1:$nginx_port/ok/bench" >/dev/null
curl -s -X POST "http://$harness_addr/_harness/reset" >/dev/null

best_h=0
best_n=0
for round in $(seq "$ROUNDS"); do
    h=$(run_wrk "http://$harness_addr/ok/bench")
    n=$(run_wrk "http://127.0.0.1:$nginx_port/ok/bench")
    echo "round $round: harness $h req/s, nginx $n req/s"
    best_h=$(python3 -c "print(max($best_h, $h))")
    best_n=$(python3 -c "print(max($best_n, $n))")
done

# every measured request must have been verified, none refused
stats=$(curl -s "http://$harness_addr/_harness/stats")
read -r requests verified bad < <(python3 -c '
import json, sys
s = json.loads(sys.argv[1])
print(s["requests"], s["verified"], s["bad_signature"])' "$stats")
if [ "$verified" -eq 0 ] || [ "$bad" -ne 0 ] || [ "$verified" -ne "$requests" ]; then
    echo "bench/harness.sh: verification check failed: $requests requests, $verified verified, $bad bad" >&2
    exit 1
fi

ratio=$(python3 -c "print('%.2f' % ($best_h / $best_n))")
echo "harness (1 thread, github verification): $best_h req/s ($verified requests verified)"
echo "nginx (1 worker, return 200):            $best_n req/s"
echo "ratio harness/nginx: $ratio"
if [ -n "${JSON:-}" ]; then
    printf '{"bench":"harness","harness_rps":%s,"nginx_rps":%s,"ratio":%s,"conns":%s,"duration":"%s","verified":%s}\n' \
        "$best_h" "$best_n" "$ratio" "$CONNS" "$DURATION" "$verified" > "$JSON"
fi
python3 -c "import sys; sys.exit(0 if $best_h >= $best_n else 1)" || {
    echo "bench/harness.sh: the harness is slower than nginx" >&2
    exit 1
}

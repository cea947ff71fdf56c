#!/usr/bin/env bash
# bench/ingest.sh [BUILD_DIR]: `hookring serve` taking durable events, against Redis 7 appending
# to a stream with appendfsync always; and the same server delivering what it took, against
# `hookring blast` to the same receiver. Both references are measured in the same run.
#
# 1. Durable ingest. `hookring serve --data DIR --api-key K --quiet` with NO webhook registered
#    (every 202 is one fdatasync'd journal record, group-committed; nothing to deliver) on CPU 0,
#    under `wrk -t1 -c64 -dD` on CPU 1: every request POSTs /v1/events with a unique id
#    (`evt_<run tag>_<wrk thread>_<counter>`, the counter bumped in request()), type
#    bench.event, data {"pad": "x…"}: a 1024-byte body. Only 202 answers count: the Lua script
#    counts every other status and the run fails unless there are none, nor socket errors.
#    Reference: redis-server 7 (Debian) on CPU 0, `--appendonly yes --appendfsync always
#    --save ''`, under `redis-benchmark -c 64 -n N -x XADD bench '*' f` with a 1024-byte value on
#    stdin (redis-benchmark 7.0 has no `xadd` test: `-t xadd` runs nothing), N sized from a
#    warm-up so the run lasts about D; the stream's XLEN must equal N afterwards.
#    Each side: requests/s, the server's CPU (utime+stime from /proc/PID/stat over the run,
#    all threads) per request and busy %, and serve's peak RSS (VmHWM; it holds a record of every
#    event, about 300 bytes once final, so this grows with the events taken, warm-up included).
# 2. End to end. hookring-harness (1 thread, --route /std/=standard:whsec_…, verifying every
#    signature) alone on CPU 0; serve (--allow-net 127.0.0.0/8) on CPU 1, the sender's side,
#    with its producer; one webhook registered (profile standard, events ["*"], url
#    http://HARNESS/std/ok/, max_in_flight CONNS as blast's concurrency: E2E_WEBHOOK_EXTRA,
#    default ',"max_in_flight":CONNS'). Two
#    producers, each for D: "single", wrk as above (-c CONNS, one event per request), and
#    "batch", wrk -c BATCH_CONNS posting BATCH events per POST /v1/events/batch (NDJSON; an
#    answer counts only if it is 200 and every line accepted its event). After wrk, a poller
#    (on CPU 1, started before wrk, idle while it runs) waits (at most E2E_WAIT seconds) until
#    the harness's `verified` equals serve's hookring_events_ingested_total (>= the 202s: a
#    request wrk abandons at the end may still be taken). e2e rate = verified / (time from
#    wrk's start to the harness's last verification: its stats' `last_verified_us`); also
#    shown: how many were verified just after wrk ended (the backlog).
#    No bad signature, no duplicate, no failed delivery, harness requests == verified.
#    Reference: `hookring blast --profile standard --secret … --url http://HARNESS/std/ok/
#    --allow-net 127.0.0.0/8 --duration D --concurrency 64 --workers 1 --json` on CPU 1 to the
#    same harness route (fresh counters); the harness must have verified every delivery.
#
# Each of ROUNDS rounds measures both sides of each part (the order alternates), each with a
# fresh server and data directory; the best rate of each side is kept. Prints one line per
# measurement and a summary with the ratios (hookring / redis, e2e / blast best against best,
# and each round's batch e2e over its own blast with their median); exits 1 on any
# error, failed answer or unmet count. Environment: DURATION (5s; whole seconds), ROUNDS (2),
# CONNS (64), BATCH (64), BATCH_CONNS (12), DEDUP_CAPACITY (1000000), E2E_WEBHOOK_EXTRA, E2E_WAIT (60), VERBOSE=1 (each measurement's raw fields), JSON=path to also write
# the figures, PERF_OUT=path to `perf record` serve (PERF_ARGS, default -g; a build with
# EXTRA_CFLAGS=-fno-omit-frame-pointer gives call chains) for D-1 seconds of each batch e2e run
# (the last round's is kept). Reported, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-64}
BATCH=${BATCH:-64}
# ids the dedup table holds per window: every event of a run must fit (the default 200 000 is
# full after 5 s at 40 k/s, and a full table refuses ingest with 503)
DEDUP_CAPACITY=${DEDUP_CAPACITY:-1000000}
# 12 batches of 64 in flight: 768 events owed at once, so that the fdatasync round trip (a few
# ms here) does not bound the rate as it does with 4; serve's pacing (--pace) keeps ingest from
# running ahead of delivery, which more producers did before it
BATCH_CONNS=${BATCH_CONNS:-12}
# the webhook's max_in_flight: as many connections and attempts in flight as blast's CONNS
E2E_WEBHOOK_EXTRA=${E2E_WEBHOOK_EXTRA-,\"max_in_flight\":$CONNS}
E2E_WAIT=${E2E_WAIT:-60}
HOOKRING="$BUILD/hookring"
HARNESS="$BUILD/hookring-harness"
KEY="bench-key-$$"
SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
secs=${DURATION%s}

. bench/lib.sh
bench_need wrk redis-server redis-benchmark redis-cli curl python3 "$HOOKRING" "$HARNESS"
if [ -n "${PERF_OUT:-}" ] && ! command -v perf >/dev/null; then die "PERF_OUT needs perf (apt-get install linux-perf)"; fi
case $secs in '' | *[!0-9]*) die "DURATION must be whole seconds (e.g. 5s), not '$DURATION'" ;; esac
serve_pin=("${pin_server[@]}")

# ---- helpers -------------------------------------------------------------------------------

# proc_hwm PID: peak resident set in KiB
proc_hwm() {
    awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"
}

# wait_port PORT PID WHAT LOG: until something accepts on PORT (5 s at most)
wait_port() {
    for _ in $(seq 100); do
        kill -0 "$2" 2>/dev/null || { cat "$4" >&2 || true; die "$3 exited at start"; }
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    cat "$4" >&2 || true
    die "$3 did not start"
}

# stop PID: SIGTERM, then SIGKILL after 15 s (serve drains attempts in flight for up to 10 s)
stop() {
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 150); do
        kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "bench/ingest.sh: pid $1 ignored SIGTERM for 15 s; killing it" >&2
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# What both wrk scripts share: the API key, the thread table, and init(), which builds each
# thread's id prefix and the rest of a 1024-byte event (at a counter of COUNTER_DIGITS digits).
# Run tag: wrk's first argument.
lua_common() { # lua_common COUNTER_DIGITS
    cat <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $KEY"
local threads = {}
local counter = 0
local middle = '","type":"bench.event","data":{"pad":"'
not202 = 0
function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end
function init(args)
    prefix = '{"id":"evt_' .. (args[1] or "x") .. "_" .. tostring(tid) .. "_"
    local n = 1024 - #prefix - $1 - #middle - 3
    if n < 1 then n = 1 end
    suffix = middle .. string.rep("x", n) .. '"}}'
    suffix_nl = suffix .. "\n"
end
LUA
}

# The single-event script: a unique id per request, a 1024-byte body, and a count of every
# answer that is not 202 (printed by done()).
{
    lua_common 5
    cat <<LUA
wrk.headers["Content-Type"] = "application/json"
function request()
    counter = counter + 1
    return wrk.format(nil, nil, nil, prefix .. counter .. suffix)
end
function response(status, headers, body)
    if status ~= 202 then
        not202 = not202 + 1
    end
end
function done(summary, latency, requests)
    local n = 0
    for _, t in ipairs(threads) do
        n = n + t:get("not202")
    end
    io.write(string.format("not_202: %d\n", n))
end
LUA
} > "$tmp/events.lua"
# The batch producer of the second end-to-end run: each request POSTs /v1/events/batch with
# BATCH events (NDJSON, each the same 1024-byte event as above with a unique id). An answer
# counts only when it is 200 and every one of its lines accepted its event ("deliveries"); the
# script prints the accepted events and every refusal (done()).
{
    lua_common 7
    cat <<LUA
wrk.path = "/v1/events/batch"
wrk.headers["Content-Type"] = "application/x-ndjson"
local batch = ${BATCH:-64}
accepted = 0
-- the body is joined once from its pieces (no per-event string): the producer shares serve's
-- CPU, and what it spends is taken from serve
local parts = {}
function request()
    local k = 0
    for i = 1, batch do
        counter = counter + 1
        parts[k + 1] = prefix
        parts[k + 2] = counter
        parts[k + 3] = i < batch and suffix_nl or suffix
        k = k + 3
    end
    return wrk.format(nil, nil, nil, table.concat(parts, "", 1, k))
end
function response(status, headers, body)
    local ok = 0
    if status == 200 then
        for _ in string.gmatch(body, '"deliveries":') do ok = ok + 1 end
    end
    if ok ~= batch then
        not202 = not202 + 1
    end
    accepted = accepted + ok
end
function done(summary, latency, requests)
    local n, a = 0, 0
    for _, t in ipairs(threads) do
        n = n + t:get("not202")
        a = a + t:get("accepted")
    end
    io.write(string.format("not_202: %d\naccepted: %d\n", n, a))
end
LUA
} > "$tmp/batch.lua"
python3 -c "import sys; sys.stdout.write('x' * 1024)" > "$tmp/value"

# run_wrk URL TAG SECONDS: runs wrk on CPU 1 and prints "RATE REQUESTS"; fails loudly on any
# non-202 answer, socket error, or missing figure. TAG makes the ids unique across runs.
run_wrk() {
    "${pin_client[@]}" wrk -t1 -c"$CONNS" -d"$3s" -s "$tmp/events.lua" "$1" -- "$2" \
        > "$tmp/wrk.out" 2>&1 || { cat "$tmp/wrk.out" >&2; die "wrk failed"; }
    parse_wrk
}

# parse_wrk: $tmp/wrk.out's "RATE REQUESTS", or a loud failure
parse_wrk() {
    cat "$tmp/wrk.out" >> "$tmp/wrk.log"
    python3 - "$tmp/wrk.out" <<'PY'
import re, sys
out = open(sys.argv[1]).read()
m = re.search(r"not_202: (\d+)", out)
rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
n = re.search(r"(\d+) requests in", out)
if not (m and rate and n):
    sys.exit("bench/ingest.sh: wrk's output lacks a figure:\n" + out)
if int(m.group(1)) or "Non-2xx" in out or "Socket errors" in out or "PANIC" in out:
    sys.exit("bench/ingest.sh: wrk saw answers other than 202, or errors:\n" + out)
if int(n.group(1)) == 0:
    sys.exit("bench/ingest.sh: wrk completed no request:\n" + out)
a = re.search(r"accepted: (\d+)", out)
print(rate.group(1), a.group(1) if a else n.group(1))
PY
}

metric() { # metric PORT NAME: one counter from serve's /metrics
    curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$1/metrics" | sed -n "s/^$2 //p"
}

# start_serve [extra...]: a fresh serve (new data dir) on CPU 0 (serve_pin: another CPU); sets
# serve_port, serve_pid
serve_n=0
start_serve() {
    serve_n=$((serve_n + 1))
    serve_port=$(free_port)
    local d="$tmp/serve$serve_n"
    mkdir -p "$d"
    "${serve_pin[@]}" "$HOOKRING" serve --data "$d/data" --listen "127.0.0.1:$serve_port" \
        --api-key "$KEY" --quiet --dedup-capacity "$DEDUP_CAPACITY" "$@" > "$d/out" 2> "$d/err" &
    serve_pid=$!
    pids+=("$serve_pid")
    serve_log="$d/err"
    wait_port "$serve_port" "$serve_pid" "hookring serve" "$d/err"
}

# ---- 1. durable ingest: serve (no webhook) ---------------------------------------------------
# sets result="RATE REQUESTS CPU_S RSS_KIB INGESTED"
measure_serve() {
    start_serve
    local url="http://127.0.0.1:$serve_port/v1/events" w c0 c1 rss ing
    run_wrk "$url" "warm$serve_n" 1 >/dev/null
    c0=$(proc_cpu "$serve_pid")
    w=$(run_wrk "$url" "run$serve_n" "$secs")
    c1=$(proc_cpu "$serve_pid")
    rss=$(proc_hwm "$serve_pid")
    ing=$(metric "$serve_port" hookring_events_ingested_total)
    [ -n "$ing" ] || die "serve's /metrics has no hookring_events_ingested_total"
    stop "$serve_pid"
    result="$w $(python3 -c "print('%.3f' % ($c1 - $c0))") $rss $ing"
}

# ---- 1. reference: redis, XADD with appendfsync always --------------------------------------
redis_n=0
redis_calls() { # redis_calls PORT KEY N: prints "RATE"; XLEN KEY must then be N
    "${pin_client[@]}" redis-benchmark -p "$1" -c "$CONNS" -n "$3" -x XADD "$2" '*' f \
        < "$tmp/value" > "$tmp/rb.out" 2>&1 || { cat "$tmp/rb.out" >&2; die "redis-benchmark failed"; }
    tr '\r' '\n' < "$tmp/rb.out" | grep -v '^XADD' >> "$tmp/rb.log" || true
    local len
    len=$(redis-cli -p "$1" XLEN "$2")
    [ "$len" = "$3" ] || { tail -c 2000 "$tmp/rb.out" >&2; die "redis: XLEN $2 is '$len', not $3"; }
    python3 - "$tmp/rb.out" <<'PY'
import re, sys
out = open(sys.argv[1], errors="replace").read()
m = re.search(r"throughput summary: ([\d.]+) requests per second", out)
if not m or "rror" in out.replace("Errors", ""):
    sys.exit("bench/ingest.sh: redis-benchmark: no rate, or an error:\n" + out[-2000:])
print(m.group(1))
PY
}
# sets result="RATE REQUESTS CPU_S"
measure_redis() {
    redis_n=$((redis_n + 1))
    local port d="$tmp/redis$redis_n" pid r warm n c0 c1
    port=$(free_port)
    mkdir -p "$d"
    "${pin_server[@]}" redis-server --port "$port" --bind 127.0.0.1 --appendonly yes \
        --appendfsync always --save '' --dir "$d" --daemonize no --loglevel warning \
        > "$d/log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$port" "$pid" "redis-server" "$d/log"
    for _ in $(seq 50); do # the AOF is set up after the port opens
        [ "$(redis-cli -p "$port" CONFIG GET appendfsync | tail -n 1)" = always ] && break
        sleep 0.1
    done
    [ "$(redis-cli -p "$port" CONFIG GET appendonly | tail -n 1)" = yes ] || die "redis: appendonly is off"
    warm=$(redis_calls "$port" warm 5000)
    # size the measured run from the warm-up so that it lasts about DURATION
    n=$(python3 -c "print(max(5000, int($warm * $secs)))")
    c0=$(proc_cpu "$pid")
    r=$(redis_calls "$port" bench "$n")
    c1=$(proc_cpu "$pid")
    stop "$pid"
    result="$r $n $(python3 -c "print('%.3f' % ($c1 - $c0))")"
}

# ---- 2. end to end: serve + one webhook -> harness ------------------------------------------
start_harness() {
    "${pin_server[@]}" "$HARNESS" --listen 127.0.0.1:0 --threads 1 \
        --route "/std/=standard:$SECRET" --quiet > "$tmp/harness.out" 2> "$tmp/harness.err" &
    harness_pid=$!
    pids+=("$harness_pid")
    for _ in $(seq 100); do
        harness_addr=$(sed -n 's/^listening on //p' "$tmp/harness.out" | head -n 1)
        [ -n "$harness_addr" ] && return 0
        kill -0 "$harness_pid" 2>/dev/null || break
        sleep 0.05
    done
    cat "$tmp/harness.err" >&2
    die "the harness did not start"
}
harness_reset() {
    curl -sf -X POST "http://$harness_addr/_harness/reset" >/dev/null || die "harness reset failed"
}
# harness_check EXPECTED: prints verified; dies unless the harness took exactly EXPECTED
# requests since its reset, all verified, no bad signature and no duplicate
harness_check() {
    curl -sf "http://$harness_addr/_harness/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
exp = int(sys.argv[1])
if s["verified"] != exp or s["bad_signature"] or s["duplicates"] or s["requests"] != exp:
    sys.exit("bench/ingest.sh: harness counts are off (expected %d verified): %s"
             % (exp, json.dumps({k: s[k] for k in ("requests", "verified", "bad_signature",
                                                      "duplicates", "unique", "status")})))
print(s["verified"])' "$1"
}

# The poller of the end-to-end run: started before wrk (python's start-up is slow on a loaded
# machine and must not count). While wrk runs it only waits for the file DONE (wrk has exited; it
# holds wrk's end time and the 202 count): it shares serve's CPU, and polling the harness every
# 20 ms took 2.5% of that CPU, which blast never pays. Then it reads the harness's `verified`
# once (the backlog at wrk's end), and polls every 50 ms, at most LIMIT seconds more, until
# `verified` reaches serve's hookring_events_ingested_total. The end of the run is the harness's
# own `last_verified_us`, the time of day at which it began verifying the last delivery, so the
# poll interval does not blur it. Prints "E2E_RATE VERIFIED ELAPSED_S VERIFIED_AT_WRK_END
# WRK_END_S" (times from T0, read from the file T0 written just before wrk starts).
cat > "$tmp/poll.py" <<'PY'
import http.client, json, os, re, sys, time
harness, port, key, limit, t0file, done, ready = sys.argv[1:8]
limit = float(limit)
# one kept-alive connection to each server (a new connection per poll cost about 0.7 ms)
conns = {}
def get(hostport, path, headers=None):
    for attempt in (0, 1):
        c = conns.get(hostport)
        if c is None:
            h, p = hostport.rsplit(":", 1)
            c = conns[hostport] = http.client.HTTPConnection(h, int(p), timeout=5)
        try:
            c.request("GET", path, headers=headers or {})
            r = c.getresponse()
            body = r.read().decode()
            if r.status != 200:
                sys.exit("bench/ingest.sh: e2e poller: GET %s%s answered %d" % (hostport, path, r.status))
            return body
        except (http.client.HTTPException, OSError):
            c.close()
            del conns[hostport]
            if attempt:
                raise
def verified():
    s = json.loads(get(harness, "/_harness/stats"))
    return s["verified"], s["last_verified_us"]
def ingested():
    text = get("127.0.0.1:%s" % port, "/metrics", {"Authorization": "Bearer " + key})
    m = dict(re.findall(r"^(hookring_[a-z_]+) (\S+)$", text, re.M))
    return int(m["hookring_events_ingested_total"]), int(m["hookring_deliveries_failed_total"])
v, _ = verified()  # both connections open before wrk starts
ingested()
if v:
    sys.exit("bench/ingest.sh: e2e poller: the harness has %d verified before the run" % v)
open(ready, "w").close()
while True:
    f = open(done).read().split() if os.path.exists(done) else []
    if len(f) == 2:
        break
    time.sleep(0.02)
wrk_end, n202 = float(f[0]), int(f[1])
at_end, _ = verified()
deadline = time.time() + limit
target = -1
while True:
    v, last_us = verified()
    if v >= target:  # (re)read serve's count: a request wrk abandoned may still be taken
        target, failed = ingested()
        if failed:
            sys.exit("bench/ingest.sh: e2e: %d deliveries failed" % failed)
        if v >= target:
            if target < n202:
                sys.exit("bench/ingest.sh: e2e: serve counts %d events ingested, wrk saw %d 202s"
                         % (target, n202))
            break
    if time.time() > deadline:
        sys.exit("bench/ingest.sh: e2e: %gs after wrk ended the harness has verified %d of %d "
                 "events (%d answered 202)" % (limit, v, target, n202))
    time.sleep(0.05)
t0 = float(open(t0file).read())
end = last_us / 1e6
if not v or end <= t0:
    sys.exit("bench/ingest.sh: e2e: the harness's last verification (%.6f) is not after the start "
             "(%.6f)" % (end, t0))
print("%.1f %d %.3f %d %.3f" % (v / (end - t0), v, end - t0, at_end, wrk_end - t0))
PY

# measure_e2e MODE: MODE single (wrk -c CONNS, one event per POST /v1/events) or batch (wrk -c
# BATCH_CONNS, BATCH events per POST /v1/events/batch). serve runs on the client CPU, the
# sender's side like blast in the reference, with the producer (wrk); the harness has CPU 0 to
# itself as in the reference. Sets result="E2E_RATE VERIFIED ELAPSED_S VERIFIED_AT_WRK_END
# WRK_END_S WRK_REQ_RATE ACCEPTED SERVE_CPU_S HARNESS_CPU_S RSS_KIB"
measure_e2e() {
    local mode=$1 script conns
    case $mode in
    single) script="$tmp/events.lua" conns=$CONNS ;;
    batch) script="$tmp/batch.lua" conns=$BATCH_CONNS ;;
    esac
    serve_pin=("${pin_client[@]}")
    start_serve --allow-net 127.0.0.0/8
    serve_pin=("${pin_server[@]}")
    local api="http://127.0.0.1:$serve_port" wh w res c0 c1 h0 h1 rss poller d="$tmp/e2e$serve_n"
    mkdir -p "$d"
    wh=$(curl -sf -H "Authorization: Bearer $KEY" "$api/v1/webhooks" -d "{\"url\":\"http://$harness_addr/std/ok/\",\"profile\":\"standard\",\"events\":[\"*\"],\"secret\":\"$SECRET\"$E2E_WEBHOOK_EXTRA}") \
        || die "registering the webhook failed"
    echo "$wh" | grep -q '"status":"active"' || die "webhook not active: $wh"
    harness_reset
    "${pin_client[@]}" python3 "$tmp/poll.py" "$harness_addr" "$serve_port" "$KEY" "$E2E_WAIT" \
        "$d/t0" "$d/done" "$d/ready" > "$d/res" 2> "$d/poll.err" &
    poller=$!
    pids+=("$poller")
    for _ in $(seq 200); do
        [ -e "$d/ready" ] && break
        kill -0 "$poller" 2>/dev/null || break
        sleep 0.05
    done
    [ -e "$d/ready" ] || { cat "$d/poll.err" >&2; die "the e2e poller did not start"; }
    c0=$(proc_cpu "$serve_pid")
    h0=$(proc_cpu "$harness_pid")
    date +%s.%N > "$d/t0"
    if [ -n "${PERF_OUT:-}" ] && [ "$mode" = batch ]; then
        # a profile of serve while the batches flow (perf's own CPU is on the other core)
        # shellcheck disable=SC2086
        "${pin_server[@]}" perf record ${PERF_ARGS:--g} -o "$PERF_OUT" -p "$serve_pid" \
            -- sleep "$((secs > 1 ? secs - 1 : 1))" > /dev/null 2>&1 &
    fi
    "${pin_client[@]}" wrk -t1 -c"$conns" -d"$DURATION" -s "$script" "$api/v1/events" \
        -- "e2e$serve_n" > "$tmp/wrk.out" 2>&1 || { cat "$tmp/wrk.out" >&2; die "wrk failed"; }
    local wrk_end
    wrk_end=$(date +%s.%N)
    w=$(parse_wrk) || { kill "$poller" 2>/dev/null; die "the e2e wrk run failed"; }
    echo "$wrk_end ${w#* }" > "$d/done.tmp"
    mv "$d/done.tmp" "$d/done"
    # the poller's own limit bounds this wait (E2E_WAIT after wrk's end, plus HTTP timeouts)
    wait "$poller" || { cat "$d/poll.err" >&2; die "end-to-end run failed (serve log: $(tail -n 3 "$serve_log" | tr '\n' ' '))"; }
    res=$(cat "$d/res")
    c1=$(proc_cpu "$serve_pid")
    h1=$(proc_cpu "$harness_pid")
    rss=$(proc_hwm "$serve_pid")
    harness_check "$(echo "$res" | cut -d' ' -f2)" >/dev/null
    stop "$serve_pid"
    result="$res $w $(python3 -c "print('%.3f %.3f' % ($c1 - $c0, $h1 - $h0))") $rss"
}

# sets result="RATE DELIVERIES HARNESS_CPU_S BLAST_CPU_S"
measure_blast() {
    local r h0 h1
    harness_reset
    h0=$(proc_cpu "$harness_pid")
    r=$(cpu_of "$tmp/blast.json" "${pin_client[@]}" "$HOOKRING" blast --profile standard \
        --secret "$SECRET" --url "http://$harness_addr/std/ok/" --allow-net 127.0.0.0/8 \
        --duration "$DURATION" --concurrency "$CONNS" --workers 1 --json --quiet)
    h1=$(proc_cpu "$harness_pid")
    cat "$tmp/blast.json" >> "$tmp/blast.log"
    result=$(python3 - "$tmp/blast.json" "$r" "$h0" "$h1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
if j["failed"] or j["ok"] != j["deliveries"] or j["deliveries"] == 0 or sys.argv[2].split()[2] != "0":
    sys.exit("bench/ingest.sh: blast saw failures: %s" % json.dumps(j))
print("%.1f %d %.3f %s" % (j["rate"], j["deliveries"], float(sys.argv[4]) - float(sys.argv[3]),
                           sys.argv[2].split()[0]))
PY
) || die "blast run failed"
    harness_check "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ok"])' "$tmp/blast.json")" >/dev/null
}

best() { # best A B: the line whose first field is larger
    python3 -c "import sys; a, b = sys.argv[1].split(), sys.argv[2].split(); print(' '.join(b if float(b[0]) > float(a[0]) else a))" "$1" "$2"
}

# ---- rounds --------------------------------------------------------------------------------
best_s="0 0 0 0 0"
best_r="0 0 0"
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        measure_serve; s=$result
        measure_redis; r=$result
    else
        measure_redis; r=$result
        measure_serve; s=$result
    fi
    echo "ingest round $round: serve ${s%% *} events/s, redis ${r%% *} XADD/s"
    if [ -n "${VERBOSE:-}" ]; then echo "  serve [$s] redis [$r]"; fi
    best_s=$(best "$best_s" "$s")
    best_r=$(best "$best_r" "$r")
done

start_harness
# warm the harness up (and check the route verifies) with a short blast
DURATION=1s measure_blast
best_e="0 0 0 0 0 0 0 0 0 0"
best_eb="0 0 0 0 0 0 0 0 0 0"
best_b="0 0 0 0"
# each round's batch e2e rate over its own blast rate: the best-against-best ratio pairs
# rates from different moments of a noisy machine; these pair each with its neighbour
round_ratios=""
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        measure_e2e single; e=$result
        measure_e2e batch; eb=$result
        measure_blast; b=$result
    else
        measure_blast; b=$result
        measure_e2e batch; eb=$result
        measure_e2e single; e=$result
    fi
    echo "e2e round $round: serve ${e%% *} events/s (single posts), ${eb%% *} events/s (batches) verified end to end, blast ${b%% *} deliveries/s"
    if [ -n "${VERBOSE:-}" ]; then echo "  e2e [$e] e2e-batch [$eb] blast [$b]"; fi
    round_ratios="$round_ratios $(python3 -c "print('%.2f' % (${eb%% *} / ${b%% *}))")"
    best_e=$(best "$best_e" "$e")
    best_eb=$(best "$best_eb" "$eb")
    best_b=$(best "$best_b" "$b")
done

python3 - "$best_s" "$best_r" "$best_e" "$best_b" "$secs" "$CONNS" "${JSON:-}" "$best_eb" "$BATCH" "$BATCH_CONNS" "$round_ratios" <<'PY'
import json, sys
sr, sn, scpu, srss, sing = (float(x) for x in sys.argv[1].split())
rr, rn, rcpu = (float(x) for x in sys.argv[2].split())
er, ev, et, eav, eat, ewr, en, ecpu, ehc, erss = (float(x) for x in sys.argv[3].split())
br, bn, bhc, bcpu = (float(x) for x in sys.argv[4].split())
secs, conns, out = float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
xr, xv, xt, xav, xat, xwr, xn, xcpu, xhc, xrss = (float(x) for x in sys.argv[8].split())
batch, bconns = int(sys.argv[9]), int(sys.argv[10])
rounds = [float(x) for x in sys.argv[11].split()]
median = sorted(rounds)[len(rounds) // 2] if len(rounds) % 2 else sum(sorted(rounds)[len(rounds) // 2 - 1:len(rounds) // 2 + 1]) / 2
print()
print("1 KiB events, %d concurrent clients, %gs runs; servers on CPU 0, clients on CPU 1" % (conns, secs))
print("ingest: hookring serve (no webhook) %.0f events/s acknowledged 202 (durable), server CPU "
      "%.1f us/event (busy %.0f%%), peak RSS %.1f MiB after %d events"
      % (sr, scpu * 1e6 / sn, 100 * scpu / secs, srss / 1024, sing))
print("ingest: redis 7 XADD, appendfsync always  %.0f XADD/s, server CPU %.1f us/XADD"
      % (rr, rcpu * 1e6 / rn))
print("ingest ratio hookring/redis: %.2f (CPU per event ratio %.2f)" % (sr / rr, (scpu / sn) / (rcpu / rn)))
print("e2e (serve and its producer on CPU 1, the harness alone on CPU 0):")
print("e2e single posts: serve + 1 standard webhook -> harness /std/ok/ (verifying), wrk -c%d: %.0f events/s verified "
      "(%d in %.2fs; %d answered 202, %.0f/s; %d verified just after wrk ended at %.2fs), "
      "serve CPU %.1f us/event (busy %.0f%%), harness CPU %.1f us/event, serve peak RSS %.1f MiB"
      % (conns, er, ev, et, en, en / secs, eav, eat, ecpu * 1e6 / ev, 100 * ecpu / et, ehc * 1e6 / ev, erss / 1024))
print("e2e batches: the same, wrk -c%d posting %d events per /v1/events/batch: %.0f events/s verified "
      "(%d in %.2fs; %d accepted, %.0f/s; %d verified just after wrk ended at %.2fs), "
      "serve CPU %.1f us/event (busy %.0f%%), harness CPU %.1f us/event, serve peak RSS %.1f MiB"
      % (bconns, batch, xr, xv, xt, xn, xn / secs, xav, xat, xcpu * 1e6 / xv, 100 * xcpu / xt, xhc * 1e6 / xv, xrss / 1024))
print("e2e reference: hookring blast (standard, 1 worker, c=%d) to the same route: %.0f deliveries/s, "
      "blast CPU %.1f us/delivery, harness CPU %.1f us/delivery"
      % (conns, br, bcpu * 1e6 / bn, bhc * 1e6 / bn))
print("e2e ratio e2e/blast: single posts %.2f, batches %.2f" % (er / br, xr / br))
print("e2e batches / blast of the same round: %s (median %.2f)" % (" ".join("%.2f" % x for x in rounds), median))
if out:
    with open(out, "w") as f:
        json.dump({"bench": "ingest", "duration_s": secs, "concurrency": conns,
                   "serve_rps": sr, "serve_cpu_us": scpu * 1e6 / sn, "serve_busy": scpu / secs,
                   "serve_rss_kib": int(srss), "serve_events_held": int(sing),
                   "redis_rps": rr, "redis_cpu_us": rcpu * 1e6 / rn, "ingest_ratio": sr / rr,
                   "e2e_rps": er, "e2e_verified": int(ev), "e2e_elapsed_s": et,
                   "e2e_ingest_rps": ewr, "e2e_verified_at_wrk_end": int(eav), "e2e_wrk_end_s": eat, "e2e_serve_cpu_us": ecpu * 1e6 / ev,
                   "e2e_harness_cpu_us": ehc * 1e6 / ev, "e2e_serve_rss_kib": int(erss),
                   "blast_rps": br, "blast_cpu_us": bcpu * 1e6 / bn,
                   "blast_harness_cpu_us": bhc * 1e6 / bn, "e2e_ratio": er / br,
                   "e2e_batch_rps": xr, "e2e_batch_verified": int(xv), "e2e_batch_size": batch,
                   "e2e_batch_conns": bconns, "e2e_batch_serve_cpu_us": xcpu * 1e6 / xv,
                   "e2e_batch_harness_cpu_us": xhc * 1e6 / xv, "e2e_batch_ratio": xr / br,
                   "e2e_batch_round_ratios": rounds, "e2e_batch_round_ratio_median": median}, f)
        f.write("\n")
PY

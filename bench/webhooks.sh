#!/usr/bin/env bash
# bench/webhooks.sh [BUILD_DIR]: what the number of webhooks costs `hookring serve`. Teams that
# serve many tenants register a webhook per tenant's endpoint, with the tenant as its agent.
#
# 1. Ingest. serve (CPU 0) with N webhooks, each with an agent filter ("agent<i>") no event
#    carries, so none is delivered: what is measured is fan-out, finding the webhooks an event
#    goes to. wrk -c BATCH_CONNS (CPU 1) posts NDJSON batches of 64 unique 1 KiB events for D.
#    Server CPU per event acknowledged, against the same run with no webhook at all; and the
#    resident memory that registering the N webhooks added, per webhook.
# 2. Restart. serve with N webhooks takes EVENTS events (batches of 64, the i-th event with agent
#    "agent<i mod N>": one delivery each, to a harness route that answers 200), is killed -9 and
#    started again: seconds until it listens (the replay of every webhook, event and delivery),
#    against the same with 1 webhook taking all the events.
#
# Environment: COUNTS (webhook counts, default "100 1000 10000"), DURATION (5s), BATCH_CONNS
# (12), EVENTS (100000). Prints one line per measurement and the ratios; exits 1 on any error.
# Reported, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
COUNTS=${COUNTS:-100 1000 10000}
DURATION=${DURATION:-5s}
BATCH_CONNS=${BATCH_CONNS:-12}
EVENTS=${EVENTS:-100000}
HOOKRING="$BUILD/hookring"
HARNESS="$BUILD/hookring-harness"
KEY="bench-key-$$"
SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
secs=${DURATION%s}

. bench/lib.sh
bench_need wrk curl python3 "$HOOKRING" "$HARNESS"
case $secs in '' | *[!0-9]*) die "DURATION must be whole seconds (e.g. 5s), not '$DURATION'" ;; esac

# start_serve DIR: a serve on DIR (CPU 0) on a free port; sets serve_pid and serve_port
start_serve() {
    serve_port=$(free_port)
    "${pin_server[@]}" "$HOOKRING" serve --data "$1" --listen "127.0.0.1:$serve_port" \
        --api-key "$KEY" --quiet --dedup-capacity 2000000 --allow-net 127.0.0.0/8 \
        > "$1.log" 2>&1 &
    serve_pid=$!
    pids+=("$serve_pid")
    for _ in $(seq 600); do
        grep -q "^listening on" "$1.log" 2>/dev/null && return 0
        kill -0 "$serve_pid" 2>/dev/null || { cat "$1.log" >&2; die "serve exited at start"; }
        sleep 0.05
    done
    cat "$1.log" >&2
    die "serve did not listen"
}

stop_serve() {
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
}

# register N URL: N webhooks "agent<i>" to URL (events ["*"])
register() {
    python3 - "$serve_port" "$KEY" "$1" "$2" "$SECRET" <<'PY' || die "registering webhooks failed"
import http.client, json, sys
port, key, n, url, secret = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
c = http.client.HTTPConnection("127.0.0.1", int(port))
for i in range(n):
    c.request("POST", "/v1/webhooks", json.dumps({"url": url, "profile": "standard",
              "events": ["*"], "agent": "agent%d" % i, "secret": secret}),
              {"Authorization": "Bearer " + key})
    r = c.getresponse()
    body = r.read()
    if r.status != 201:
        sys.exit("webhook %d: %d %s" % (i, r.status, body[:200]))
PY
}

metric() {
    curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$serve_port/metrics" \
        | awk -v m="$1" '$1 == m { print $2 }'
}

# the batch producer: 64 unique 1 KiB events without an agent per POST /v1/events/batch
cat > "$tmp/batch.lua" <<LUA
wrk.method = "POST"
wrk.path = "/v1/events/batch"
wrk.headers["Content-Type"] = "application/x-ndjson"
wrk.headers["Authorization"] = "Bearer $KEY"
local counter = 0
local middle = '","type":"bench.event","data":{"pad":"'
local parts = {}
function init(args)
    prefix = '{"id":"evt_' .. (args[1] or "x") .. "_"
    suffix = middle .. string.rep("x", 1024 - #prefix - 7 - #middle - 3) .. '"}}\n'
end
function request()
    for i = 1, 64 do
        counter = counter + 1
        parts[3 * i - 2] = prefix
        parts[3 * i - 1] = counter
        parts[3 * i] = suffix
    end
    return wrk.format(nil, nil, nil, table.concat(parts))
end
LUA

# ingest_cpu N: sets result="EVENTS_PER_S CPU_US_PER_EVENT RSS_BYTES_PER_WEBHOOK" with N
# webhooks matching nothing (the resident memory registering them added, over N; 0 for none)
ingest_cpu() {
    local d="$tmp/ingest$1" c0 c1 n r0 r1
    rm -rf "$d"
    start_serve "$d"
    r0=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$serve_pid/status")
    register "$1" "http://127.0.0.1:9/never"
    r1=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$serve_pid/status")
    c0=$(proc_cpu "$serve_pid")
    "${pin_client[@]}" wrk -t1 -c"$BATCH_CONNS" -d"$DURATION" -s "$tmp/batch.lua" \
        "http://127.0.0.1:$serve_port/v1/events" -- "w$1_$$" > "$tmp/wrk.out" 2>&1 \
        || { cat "$tmp/wrk.out" >&2; die "wrk failed"; }
    c1=$(proc_cpu "$serve_pid")
    n=$(metric hookring_events_ingested_total)
    [ -n "$n" ] && [ "$n" -gt 0 ] || die "nothing was ingested with $1 webhooks"
    [ "$(metric hookring_deliveries_held)" = 0 ] || die "an event was delivered with $1 webhooks"
    stop_serve
    result=$(python3 -c "print('%.0f %.2f %.0f' % ($n / $secs, ($c1 - $c0) * 1e6 / $n, ($r1 - $r0) * 1024 / max($1, 1)))")
}

# restart_s N: sets result="SECONDS" for a restart after EVENTS events over N webhooks
restart_s() {
    local d="$tmp/restart$1" t0 t1
    rm -rf "$d"
    start_serve "$d"
    register "$1" "http://$harness_addr/std/ok/"
    python3 - "$serve_port" "$KEY" "$1" "$EVENTS" <<'PY' || die "posting events failed"
import http.client, json, sys
port, key, n, e = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", int(port))
k = 0
while k < e:
    lines = []
    for _ in range(min(64, e - k)):
        lines.append(json.dumps({"id": "evt_%d" % k, "type": "t.x", "agent": "agent%d" % (k % n),
                                 "data": {"k": k}}))
        k += 1
    c.request("POST", "/v1/events/batch", "\n".join(lines), {"Authorization": "Bearer " + key})
    r = c.getresponse()
    body = r.read()
    if r.status != 200 or body.count(b'"deliveries":1') != len(lines):
        sys.exit("batch at %d: %d %s" % (k, r.status, body[:200]))
PY
    kill -9 "$serve_pid"
    wait "$serve_pid" 2>/dev/null || true
    rm -f "$d.log"
    t0=$(date +%s.%N)
    start_serve "$d"
    t1=$(date +%s.%N)
    grep -q "recovered $1 webhooks" "$d.log" || { cat "$d.log" >&2; die "the restart recovered something else"; }
    stop_serve
    result=$(python3 -c "print('%.2f' % ($t1 - $t0))")
}

harness_port=$(free_port)
harness_addr="127.0.0.1:$harness_port"
"${pin_client[@]}" "$HARNESS" --listen "$harness_addr" --threads 1 --quiet \
    --route "/std/=standard:$SECRET" > "$tmp/harness.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    curl -sf "http://$harness_addr/_harness/stats" >/dev/null 2>&1 && break
    sleep 0.05
done

ingest_cpu 0
base_ingest=$result
read -r base_rate base_cpu _ <<< "$base_ingest"
echo "ingest, no webhook: $base_rate events/s, $base_cpu us server CPU per event"
restart_s 1
base_restart=$result
echo "restart after $EVENTS events, 1 webhook: $base_restart s"
for n in $COUNTS; do
    ingest_cpu "$n"
    ing=$result
    restart_s "$n"
    rs=$result
    python3 -c "
b_rate, b_cpu, _ = (float(x) for x in '$base_ingest'.split())
rate, cpu, mem = (float(x) for x in '$ing'.split())
print('webhooks %6d: ingest %7.0f events/s, %6.2f us CPU per event (%.2fx no webhook); restart %6.2f s (%.2fx 1 webhook); %.0f bytes resident per webhook'
      % ($n, rate, cpu, cpu / b_cpu, $rs, $rs / $base_restart, mem))"
done

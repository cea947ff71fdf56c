#!/usr/bin/env bash
# fuzz/replay_seeds.sh [BUILD]: makes the seed corpus of fuzz_replay (fuzz/corpus/replay/) from
# real journals: a hookring serve (BUILD/hookring, default build/) on loopback, with the harness,
# is given webhooks of several profiles (custom headers, a retry schedule, an agent filter, a
# rotated secret, a patch, a delete), events (one with a callback), deliveries that succeed and
# fail; one journal is taken as it is after a kill -9, a second after compaction carried what
# was held (small segments, a retention of one second). Each journal becomes one seed: its
# records as [type u8][len u16 LE][payload]. Run it again after a change to the records.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
out=fuzz/corpus/replay
mkdir -p "$out"

"$BUILD/hookring-harness" --listen 127.0.0.1:0 --quiet --route "/std/=standard:$SECRET" \
    --route "/gh/=github:ghsecret" --route "/cli/=humcli:clisecret" > "$tmp/h.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q '^listening on' "$tmp/h.out" && break; sleep 0.1; done
HA=$(sed -n 's/^listening on //p' "$tmp/h.out" | head -1)

# journal NAME WAIT EXTRA WINDOW [cut]: one serve run (EXTRA batches of 100 more events, a dedup
# window of WINDOW seconds), killed after WAIT seconds, into seed NAME (cut: its compaction's
# records only)
journal() {
    local name=$1 wait=$2 extra=$3 window=$4 cut=${5:-} d="$tmp/$1"
    "$BUILD/hookring" serve --data "$d" --listen 127.0.0.1:0 --api-key k --allow-net 127.0.0.0/8 \
        --quiet --segment-size 65536 --max-body 16384 --retention 1 --dedup-capacity 1000 \
        --dedup-window "$window" --time-scale 0.01 > "$tmp/$name.out" 2>&1 &
    local sp=$!
    pids+=("$sp")
    for _ in $(seq 100); do grep -q '^listening on' "$tmp/$name.out" && break; sleep 0.1; done
    local api
    api=http://$(sed -n 's/^listening on //p' "$tmp/$name.out" | head -1)
    local a=(-sf -H "Authorization: Bearer k")
    id() { python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
    local w1 w2 w4
    w1=$(curl "${a[@]}" "$api/v1/webhooks" -d "{\"url\":\"http://$HA/std/ok/\",\"profile\":\"standard\",\"events\":[\"*\"],\"secret\":\"$SECRET\",\"headers\":{\"X-Tenant\":\"t1\"},\"max_in_flight\":4}" | id)
    w2=$(curl "${a[@]}" "$api/v1/webhooks" -d "{\"url\":\"http://$HA/gh/status/500\",\"profile\":\"github\",\"events\":[\"order.*\"],\"secret\":\"ghsecret\",\"retry_schedule\":[1,1,3600],\"agent\":\"a1\"}" | id)
    curl "${a[@]}" "$api/v1/webhooks" -d "{\"url\":\"http://$HA/std/ok/\",\"profile\":\"humanos\",\"events\":[\"order.created\"]}" > /dev/null
    w4=$(curl "${a[@]}" "$api/v1/webhooks" -d "{\"url\":\"http://$HA/std/ok/\",\"profile\":\"svix\",\"events\":[\"x.y\"]}" | id)
    curl "${a[@]}" -X POST "$api/v1/webhooks/$w1/rotate-secret" -d '{"grace_seconds":3600}' > /dev/null
    curl "${a[@]}" -X PATCH "$api/v1/webhooks/$w2" -d '{"timeout_ms":2000}' > /dev/null
    curl "${a[@]}" -X DELETE "$api/v1/webhooks/$w4" > /dev/null
    curl "${a[@]}" "$api/v1/events" -d '{"id":"evt_1","type":"order.created","agent":"a1","data":{"n":1}}' > /dev/null
    curl "${a[@]}" "$api/v1/events" -d "{\"id\":\"evt_2\",\"type\":\"order.paid\",\"data\":{\"task_id\":\"t2\",\"status\":\"IN_PROGRESS\",\"previous_status\":\"ACCEPTED\"},\"callback_url\":\"http://$HA/cli/ok/\",\"callback_secret\":\"clisecret\"}" > /dev/null
    printf '{"id":"evt_3","type":"x.y","data":{}}\n{"id":"evt_4","type":"order.created","agent":"a1","data":[1,2]}\n' |
        curl "${a[@]}" -H 'Content-Type: application/x-ndjson' --data-binary @- "$api/v1/events/batch" > /dev/null
    for k in $(seq "$extra"); do
        python3 -c "import sys
for i in range(100): print('{\"id\":\"evt_x%s_%d\",\"type\":\"bulk.x\",\"data\":{\"pad\":\"%s\"}}' % (sys.argv[1], i, 'x' * 100))" "$k" |
            curl "${a[@]}" -H 'Content-Type: application/x-ndjson' --data-binary @- "$api/v1/events/batch" > /dev/null
    done
    sleep "$wait"
    kill -9 "$sp"
    wait "$sp" 2>/dev/null || true
    python3 - "$out/$name" "$cut" "$d"/*.seg <<'PY'
import struct, sys
# cut: keep the compaction's records only (from its SREC_META on: the webhooks, the dedup keys,
# the end of the pass, and the carried events while the seed stays under fuzz_replay's max_len)
out, cut, seen_meta = bytearray(), sys.argv[2] == 'cut', False
for path in sys.argv[3:]:
    data = open(path, 'rb').read()
    off = 32  # the segment header
    while off + 24 <= len(data) and data[off + 4] == 0xA7:
        typ, ln = data[off + 5], struct.unpack_from('<I', data, off + 16)[0]
        rec = bytes([typ]) + struct.pack('<H', ln) + data[off + 24:off + 24 + ln]
        off += 24 + ln
        seen_meta |= typ == 7
        if cut and (not seen_meta or typ in (2, 3) or (typ == 5 and len(out) + len(rec) > 6000)):
            continue
        if ln > 0xFFFF:
            sys.exit('a record longer than the seed format holds')
        out += rec
open(sys.argv[1], 'wb').write(out)
PY
    echo "$out/$name: $(stat -c %s "$out/$name") bytes"
}

journal basic 0.5 0 86400
journal compacted 4 30 1 cut

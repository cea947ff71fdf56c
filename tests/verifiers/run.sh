#!/usr/bin/env bash
# tests/verifiers/run.sh BUILD_DIR: the provider-verifier conformance suite.
#
# Proves that what BUILD_DIR/hookring sign prints is accepted UNCHANGED by each profile's
# published verifier (the npm library receivers install, or the provider document's snippet; see
# README.md), and refused once one body byte changes. Also: both secrets of a rotation accepted
# (standard, svix, stripe), a stale timestamp refused, humanos' plaintext as decrypted by the
# document's code, aksita without a secret, the known answers of spec/PROFILES.md, and server.js
# (the HTTP receiver) accepting/refusing the same requests. Then, over HTTP: BUILD_DIR/hookring
# send delivers tests/data/events/P.json to server.js running P's published verifier, accepted
# (exit 0, counted once), refused with a wrong secret (4xx, exit 1, counted once), and with two
# secrets (rotation) accepted by a receiver knowing only the second (standard, svix, stripe).
# Then, over HTTPS (a throw-away CA made with openssl in the temp dir): every profile delivered
# with --ca-file to a receiver whose certificate is for 127.0.0.1 (accepted, counted once), and
# refused as tls_wrong_host by one whose certificate is for other.example (nothing reaches it);
# tls_untrusted without --ca-file; the other-host receiver accepted when reached by its name.
# The nine HTTP receivers start once, together, and stop before the eighteen HTTPS ones start;
# every one is stopped on exit, failure or signal, and the temp dir (keys included) removed.
#
# Prints "ok N - ..." / "not ok N - ..." (with the verifier's output) per check, then exactly
# "verifiers: N passed, N failed"; exits 1 if any check failed. A missing prerequisite (node,
# node_modules, python3, openssl, timeout(1), hookring) is a failure, never a skip.
set -u

here=$(cd "$(dirname "$0")" && pwd)
n=0
passed=0
failed=0

pass() {
    n=$((n + 1)); passed=$((passed + 1))
    echo "ok $n - $1"
}
# fail DESCRIPTION [OUTPUT]
fail() {
    n=$((n + 1)); failed=$((failed + 1))
    echo "not ok $n - $1"
    if [ -n "${2:-}" ]; then printf '%s\n' "$2" | sed 's/^/#   /'; fi
}
finish() {
    echo "verifiers: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 0
    exit 1
}
first_line() { printf '%s\n' "$1" | head -n 1 | cut -c1-140; }

if [ $# -ne 1 ]; then
    fail "usage: tests/verifiers/run.sh BUILD_DIR"
    finish
fi
build=$1

# --- prerequisites ------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1; then
    fail "node not found: the provider verifiers are node code (install nodejs >= 20; make deps)"
    finish
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "${node_major:-0}" -lt 20 ]; then
    fail "node $(node --version 2>&1) is too old: the pinned libraries need node >= 20"
    finish
fi
if [ ! -d "$here/node_modules" ]; then
    fail "tests/verifiers/node_modules missing: run 'make deps' or 'cd tests/verifiers && npm ci'"
    finish
fi
if ! out=$(cd "$here" && node --input-type=module -e "await (await import('./verifiers.js')).loadLibraries()" 2>&1); then
    fail "the verifier libraries do not load (cd tests/verifiers && npm ci)" "$out"
    finish
fi
if ! command -v timeout >/dev/null 2>&1; then
    fail "timeout(1) not found (coreutils): every hookring send is bounded by it"
    finish
fi
if command -v python3 >/dev/null 2>&1; then
    pass "python3 present for humcli's published (Python) verifier"
else
    fail "python3 not found: humcli's published verifier is Python"
fi
# openssl(1) makes the throw-away PKI of the HTTPS checks and is their /_count client
if command -v openssl >/dev/null 2>&1; then
    pass "openssl present for the HTTPS receivers' throw-away CA ($(openssl version 2>&1 | head -n 1))"
    have_openssl=1
else
    fail "openssl not found: the HTTPS checks need it to make their CA and certificates"
    have_openssl=0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hookring-verifiers.XXXXXX") || { fail "mktemp -d failed"; finish; }
server_pids=() # every server.js started; cleanup stops them whatever happens
# stop_server PID: SIGTERM (server.js exits on it), SIGKILL after 2 s, then reap it
stop_server() {
    kill "$1" 2>/dev/null || return 0
    local _
    for _ in $(seq 1 20); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    return 0
}
cleanup() {
    local pid
    for pid in "${server_pids[@]}"; do stop_server "$pid"; done
    server_pids=()
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

verify() { node "$here/verify.js" "$@" 2>&1; }

# --- known answers (spec/PROFILES.md), built by hand: the verifiers themselves ------------------
printf 'X-GitHub-Event: ping\r\nX-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\nX-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\r\n\r\nHello, World!' >"$tmp/kat_github"
if out=$(verify github "$tmp/kat_github" --secret "It's a Secret to Everybody"); then
    pass "known answer: GitHub 'Hello, World!' accepted by @octokit/webhooks-methods verify()"
else fail "known answer: GitHub 'Hello, World!' accepted by @octokit/webhooks-methods verify()" "$out"; fi
printf 'Content-Type: application/json\nX-HumanConnection-Signature: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17\n\nHello, World!' >"$tmp/kat_hc"
if out=$(verify humanconnection "$tmp/kat_hc" --secret "It's a Secret to Everybody"); then
    pass "known answer: HumanConnection 'Hello, World!' accepted by the document's verifyWebhook()"
else fail "known answer: HumanConnection 'Hello, World!' accepted by the document's verifyWebhook()" "$out"; fi
kat_secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
for p in standard svix; do
    case $p in standard) pre=webhook ;; svix) pre=svix ;; esac
    printf '%s-id: msg_p5jXN8AQM9LWM0D4loKWxJek\n%s-timestamp: 1614265330\n%s-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n\n{"test": 2432232314}' \
        "$pre" "$pre" "$pre" >"$tmp/kat_$p"
    if out=$(verify "$p" "$tmp/kat_$p" --secret "$kat_secret" --now 1614265330); then
        pass "known answer: $p msg_p5jXN8AQM9LWM0D4loKWxJek accepted (receiver clock at 1614265330)"
    else fail "known answer: $p msg_p5jXN8AQM9LWM0D4loKWxJek accepted (receiver clock at 1614265330)" "$out"; fi
done
if out=$(verify standard "$tmp/kat_standard" --secret "$kat_secret"); then
    fail "known answer: standard refused today as too old" "accepted: $out"
elif printf '%s' "$out" | grep -q 'timestamp too old'; then
    pass "known answer: standard refused today as too old ($(first_line "$out"))"
else fail "known answer: standard refused today as too old" "$out"; fi

# --- hookring ------------------------------------------------------------------------------------
case $build in /*) ;; *) build="$PWD/$build" ;; esac
hookring="$build/hookring"
if [ ! -x "$hookring" ]; then
    fail "$hookring not found or not executable (make $1/hookring)"
    finish
fi

rand_b64() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
rand_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Secrets: standard/svix whsec_ + base64 of random bytes (the key is the decoded part); stripe
# whsec_... used as-is; the others any string.
sec_humanconnection="whsec_$(rand_hex 16)"
sec_humiris="whsec_k9m2x4$(rand_hex 12)"
sec_humcli="whsec_my_secret_key_$(rand_hex 4)"
sec_humanos="humanos-signature-$(rand_hex 12)"
enc_secret=$(rand_b64 32)
enc_salt="salt-$(rand_hex 8)"
sec_aksita="aksita-$(rand_hex 12)"
sec_standard="whsec_$(rand_b64 32)"
sec_svix="whsec_$(rand_b64 24)"
sec_stripe="whsec_$(rand_hex 24)"
sec_github="It's a Secret to Everybody $(rand_hex 4)"
now=$(date -u +%s)
today=$(date -u +%Y-%m-%dT%H:%M:%SZ)
evt() { printf 'evt_%s' "$(rand_hex 8)"; }

# Sample events (spec/PROFILES.md "The event"), one per profile, each shaped like its provider's
# documented payload.
cat >"$tmp/event_humanconnection.json" <<EOF
{"id": "$(evt)", "type": "meeting.completed", "created_at": "$today",
 "agent": "sales-bot",
 "data": {"meeting_id": "mtg_x7y8z9w0a1b2c3d4", "request_id": "req_5e4d3c2b1a0f9e8d",
          "human_id": "hum_a1b2c3d4e5f6g7h8", "status": "completed",
          "completed_at": "2026-05-12T15:25:00Z", "notes": "Café meeting — 東京 office 👍"}}
EOF
cat >"$tmp/event_humiris.json" <<EOF
{"id": "$(evt)", "type": "email.received", "created_at": "$today", "agent": "support-agent",
 "data": {"email_id": "eml_3kd93md0", "inbox": "support-agent@agents.humiris.com",
          "from": "Jane Doe <jane@example.com>", "subject": "Order #1234 — where is it?",
          "text": "Hi,\nmy order has not arrived.\n\t-- Jane", "attachments": []}}
EOF
cat >"$tmp/event_humcli.json" <<EOF
{"id": "$(evt)", "type": "task.status_changed", "created_at": "$today",
 "data": {"task_id": "task_abc123", "status": "SUBMITTED", "previous_status": "IN_PROGRESS"}}
EOF
cat >"$tmp/event_humanos.json" <<EOF
{"id": "$(evt)", "type": "credential", "created_at": "$today",
 "data": {"requestId": "68c42ec3e47c9a7f9241e0ba", "internalId": "req_internal_001",
          "issuerDid": "did:via:org-abc123",
          "user": {"contact": "+1234567890", "did": "did:via:user-xyz789", "internalId": "user_98765"},
          "decisionDate": "2024-01-15T18:30:00.000Z"}}
EOF
cat >"$tmp/event_aksita.json" <<EOF
{"id": "$(evt)", "type": "human_agent.replied", "created_at": "$today",
 "data": {"response": ["hello"], "message_id": "2125",
          "conversation_id": "2a73ddbe-31cd-4a60-83ff-1fc2a1627ccc", "credits": 0,
          "remaining_credits": 1234, "additional_context": "", "source": "human_agent",
          "timestamp": "2026-01-22T15:18:18+07:00"}}
EOF
cat >"$tmp/event_standard.json" <<EOF
{"id": "$(evt)", "type": "invoice.paid", "created_at": "$today",
 "data": {"invoice_id": "inv_8f7e6d5c", "amount": 4200, "currency": "EUR",
          "customer": {"id": "cus_1a2b3c", "name": "Zoë Åström"}, "lines": [{"sku": "plan-pro", "qty": 1}]}}
EOF
cat >"$tmp/event_svix.json" <<EOF
{"id": "$(evt)", "type": "user.created", "created_at": "$today",
 "data": {"username": "test_user", "email": "test@example.com", "plan": null, "tags": ["beta", "eu"]}}
EOF
cat >"$tmp/event_stripe.json" <<EOF
{"id": "$(evt)", "type": "payment_intent.succeeded", "created_at": "$today",
 "data": {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent", "amount": 2000,
          "currency": "usd", "status": "succeeded", "metadata": {"order_id": "6735"}}}
EOF
cat >"$tmp/event_github.json" <<EOF
{"id": "$(evt)", "type": "issues", "created_at": "$today",
 "data": {"action": "opened",
          "issue": {"number": 1347, "title": "Found a bug", "body": "I'm having a problem with this.\r\n",
                    "user": {"login": "octocat", "id": 1}},
          "repository": {"id": 1296269, "full_name": "octocat/Hello-World"},
          "sender": {"login": "octocat", "id": 1}}}
EOF

declare -A verifier=(
    [humanconnection]="the document's verifyWebhook() (000_9e8faea4628eae67.txt)"
    [humiris]="the document's verifyWebhook() (001_3fafbeaef7d4375a.txt)"
    [humcli]="the document's Python verify_webhook() + Flask handler (002_08635b7b456163d2.txt)"
    [humanos]="the document's handler: generateSignature, PBKDF2 + AES-256-GCM, JSON.parse (003_16d9acd9ea58d15e.txt)"
    [aksita]="the document's express.raw() handler (004_e32a31b99092e436.txt)"
    [standard]="standardwebhooks Webhook.verify()"
    [svix]="svix Webhook.verify()"
    [stripe]="stripe.webhooks.constructEvent()"
    [github]="@octokit/webhooks-methods verify()"
)
secret_of() { local v="sec_$1"; printf '%s' "${!v}"; }
# extra hookring sign / verify.js arguments per profile
enc_args() { if [ "$1" = humanos ]; then printf '%s\n' --enc-secret "$enc_secret" --enc-salt "$enc_salt"; fi; }

# sign PROFILE OUT [hookring sign args...]: hookring sign ... EVENT > OUT; output on failure
sign() {
    local p=$1 o=$2
    shift 2
    local extra=()
    mapfile -t extra < <(enc_args "$p")
    "$hookring" sign --profile "$p" "$@" "${extra[@]}" "$tmp/event_$p.json" >"$o" 2>"$o.err"
}
# check_verify PROFILE REQUEST SECRET [verify.js args...]: verify.js with the profile's extras
check_verify() {
    local p=$1 r=$2 s=$3
    shift 3
    local extra=()
    mapfile -t extra < <(enc_args "$p")
    if [ -n "$s" ]; then verify "$p" "$r" --secret "$s" "${extra[@]}" "$@"
    else verify "$p" "$r" "${extra[@]}" "$@"; fi
}

profiles="humanconnection humiris humcli humanos aksita standard svix stripe github"

for p in $profiles; do
    s=$(secret_of "$p")
    req="$tmp/$p.req"
    if ! sign "$p" "$req" --secret "$s"; then
        fail "$p: hookring sign output accepted by ${verifier[$p]}" "hookring sign failed: $(cat "$req.err")"
        fail "$p: one body byte changed -> refused (no request: hookring sign failed)"
        continue
    fi
    if out=$(check_verify "$p" "$req" "$s" --print-payload); then
        pass "$p: hookring sign output accepted by ${verifier[$p]}"
    else
        fail "$p: hookring sign output accepted by ${verifier[$p]}" "$out
--- request:
$(cat -A "$req" | head -c 4000)"
    fi
    [ "$p" = humanos ] && humanos_payload=$(printf '%s\n' "$out" | sed -n 2p)

    if ! what=$(node "$here/reqtool.js" tamper "$req" "$req.bad" 2>&1); then
        fail "$p: one body byte changed -> refused" "cannot tamper: $what"
    elif out=$(check_verify "$p" "$req.bad" "$s"); then
        fail "$p: one body byte changed ($what) -> refused" "ACCEPTED: $out"
    else
        pass "$p: one body byte changed ($what) -> refused: $(first_line "$out")"
    fi
done

# humanos: what the document's decryption hands the application.
if [ -n "${humanos_payload:-}" ] && out=$(HUMANOS_PAYLOAD="$humanos_payload" node --input-type=commonjs -e '
    const w = JSON.parse(process.env.HUMANOS_PAYLOAD);
    const e = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const bad = [];
    if (w.eventType !== e.type) bad.push(`eventType ${JSON.stringify(w.eventType)} != ${e.type}`);
    if (typeof w.api_version !== "string" || !w.api_version) bad.push("no api_version");
    for (const k of Object.keys(e.data))
        if (JSON.stringify(w[k]) !== JSON.stringify(e.data[k])) bad.push(`${k}: ${JSON.stringify(w[k])}`);
    if (bad.length) { console.log(bad.join("; ")); process.exit(1); }
    console.log(`api_version ${w.api_version}`);
' "$tmp/event_humanos.json" 2>&1); then
    pass "humanos: decrypted plaintext has eventType, api_version and every data member ($out)"
else
    fail "humanos: decrypted plaintext has eventType, api_version and every data member" "${out:-no plaintext (the request was refused)}"
fi

# aksita without a secret: no signature header, and the document's handler takes it.
if ! "$hookring" sign --profile aksita "$tmp/event_aksita.json" >"$tmp/aksita_nosecret.req" 2>"$tmp/err"; then
    fail "aksita without a secret: no X-Webhook-Signature, accepted by ${verifier[aksita]}" "hookring sign failed: $(cat "$tmp/err")"
elif grep -qi '^x-webhook-signature:' <(sed '/^\r\{0,1\}$/q' "$tmp/aksita_nosecret.req"); then
    fail "aksita without a secret: no X-Webhook-Signature, accepted by ${verifier[aksita]}" "$(cat "$tmp/aksita_nosecret.req")"
elif out=$(verify aksita "$tmp/aksita_nosecret.req"); then
    pass "aksita without a secret: no X-Webhook-Signature, accepted by ${verifier[aksita]}"
else
    fail "aksita without a secret: no X-Webhook-Signature, accepted by ${verifier[aksita]}" "$out"
fi

# --- rotation and staleness (the multi-signature, timestamped profiles) ----------------------------
for p in standard svix stripe; do
    case $p in
        standard) old="whsec_$(rand_b64 32)" new="whsec_$(rand_b64 48)" other="whsec_$(rand_b64 32)" ;;
        svix) old="whsec_$(rand_b64 24)" new="whsec_$(rand_b64 64)" other="whsec_$(rand_b64 24)" ;;
        stripe) old="whsec_$(rand_hex 24)" new="whsec_$(rand_hex 24)" other="whsec_$(rand_hex 24)" ;;
    esac
    req="$tmp/$p.rot.req"
    if ! sign "$p" "$req" --secret "$old" --secret "$new"; then
        for which in first second; do
            fail "$p: signed with two secrets, accepted with the $which" "hookring sign failed: $(cat "$req.err")"
        done
        fail "$p: signed with two secrets, refused with a third" "hookring sign failed"
    else
        for which in first second; do
            [ $which = first ] && s=$old || s=$new
            if out=$(check_verify "$p" "$req" "$s"); then
                pass "$p: signed with two secrets, accepted by ${verifier[$p]} with the $which"
            else
                fail "$p: signed with two secrets, accepted by ${verifier[$p]} with the $which" "$out
--- request:
$(cat "$req")"
            fi
        done
        if out=$(check_verify "$p" "$req" "$other"); then
            fail "$p: signed with two secrets, refused with a third" "ACCEPTED: $out"
        else
            pass "$p: signed with two secrets, refused with a third: $(first_line "$out")"
        fi
    fi

    s=$(secret_of "$p")
    req="$tmp/$p.stale.req"
    if ! sign "$p" "$req" --secret "$s" --timestamp $((now - 3600)); then
        fail "$p: signed an hour ago (--timestamp) -> refused as stale" "hookring sign failed: $(cat "$req.err")"
    elif out=$(check_verify "$p" "$req" "$s"); then
        fail "$p: signed an hour ago (--timestamp) -> refused as stale" "ACCEPTED: $out"
    elif printf '%s' "$out" | grep -Eqi 'too old|tolerance'; then
        pass "$p: signed an hour ago (--timestamp) -> refused as stale: $(first_line "$out")"
    else
        fail "$p: signed an hour ago (--timestamp) -> refused as stale" "refused, but not for its age: $out"
    fi
done

# --- the HTTP receivers: one server.js per profile, started once for every check below -----------
# Each receiver runs its profile's published verifier (verifyRequest(), as verify.js) with the
# secrets of tests/data/secrets.sh and answers 200 when it accepts, 401 when it refuses; the
# checks read its GET /_count before and after, so each one asserts exactly the verdicts it caused.
data="$here/../data"
if [ -r "$data/secrets.sh" ]; then
    # shellcheck source=../data/secrets.sh
    . "$data/secrets.sh"
else
    fail "tests/data/secrets.sh missing: the receivers below have no secrets"
fi
data_secret() { local v="SECRET_$1"; printf '%s' "${!v:-}"; }
data_enc_args() {
    if [ "$1" = humanos ]; then
        printf '%s\n' --enc-secret "${ENC_SECRET_humanos:-}" --enc-salt "${ENC_SALT_humanos:-}"
    fi
}
# A secret the receiver does not know, shaped as the profile requires (hookring send refuses a
# standard/svix secret that is not whsec_ + base64 of 24-64 bytes).
wrong_secret() {
    case $1 in
        standard | svix) printf 'whsec_%s' "$(rand_b64 32)" ;;
        stripe) printf 'whsec_%s' "$(rand_hex 24)" ;;
        *) printf '%s-%s' "$(data_secret "$1")" "$(rand_hex 4)" ;;
    esac
}

# Receivers are named by KEY: PROFILE (plain HTTP), PROFILE.good (HTTPS, certificate for
# 127.0.0.1/localhost from the suite's CA) or PROFILE.other (HTTPS, certificate for other.example
# only, same CA); every one runs PROFILE's verifier with the secrets of tests/data/secrets.sh.
declare -A server_pid=() server_port=() server_down=()
pki="$tmp/pki" # made below, before the HTTPS receivers start
# start_receivers WAIT_S KEY...: starts a server.js per KEY, all at once, then waits (at most
# WAIT_S seconds) until each prints "listening" or dies; sets server_port[KEY], or
# server_down[KEY] to the reason it is not there
start_receivers() {
    local wait_s=$1 k p _ waiting extra=() tls=()
    shift
    for k in "$@"; do
        p=${k%%.*}
        case $k in
            *.good | *.other) tls=(--tls-cert "$pki/${k#*.}.pem" --tls-key "$pki/${k#*.}.key") ;;
            *) tls=() ;;
        esac
        mapfile -t extra < <(data_enc_args "$p")
        node "$here/server.js" --profile "$p" --port 0 --secret "$(data_secret "$p")" "${extra[@]}" "${tls[@]}" \
            >"$tmp/server_$k.out" 2>"$tmp/server_$k.err" &
        server_pid[$k]=$!
        server_pids+=("$!")
    done
    for _ in $(seq 1 $((wait_s * 10))); do
        waiting=0
        for k in "$@"; do
            grep -q '^listening$' "$tmp/server_$k.out" 2>/dev/null && continue
            kill -0 "${server_pid[$k]}" 2>/dev/null && waiting=1
        done
        [ "$waiting" -eq 0 ] && break
        sleep 0.1
    done
    for k in "$@"; do
        server_port[$k]=$(sed -n 's|.*https\{0,1\}://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/server_$k.err" | head -n 1)
        if ! grep -q '^listening$' "$tmp/server_$k.out" 2>/dev/null || [ -z "${server_port[$k]}" ]; then
            server_down[$k]="server.js for $k did not start within $wait_s s: $(cat "$tmp/server_$k.err")"
        fi
    done
}
# the nine HTTP receivers start at once (15 s at most)
# shellcheck disable=SC2086 # $profiles is a list of words
start_receivers 15 $profiles

# get_count KEY: "ACCEPTED REJECTED" from the receiver's GET /_count; fails when the receiver does
# not answer. HTTP: bash's /dev/tcp (no client process to start). HTTPS: openssl s_client,
# verifying the receiver's certificate against the suite's CA for the name it was made for.
get_count() {
    local resp req=$'GET /_count HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n'
    case $1 in
        *.good)
            resp=$(printf '%s' "$req" | timeout 5 openssl s_client -quiet -connect "127.0.0.1:${server_port[$1]}" \
                -CAfile "$pki/ca.pem" -verify_return_error -verify_ip 127.0.0.1 2>/dev/null) || return 1 ;;
        *.other)
            resp=$(printf '%s' "$req" | timeout 5 openssl s_client -quiet -connect "127.0.0.1:${server_port[$1]}" \
                -CAfile "$pki/ca.pem" -verify_return_error -servername other.example \
                -verify_hostname other.example 2>/dev/null) || return 1 ;;
        *)
            resp=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
                printf "GET /_count HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' _ "${server_port[$1]}" 2>/dev/null) ||
                return 1 ;;
    esac
    resp=${resp##*$'\r\n\r\n'}
    resp=$(printf '%s' "$resp" | sed -n 's/^{"accepted":\([0-9]*\),"rejected":\([0-9]*\)}$/\1 \2/p')
    [ -n "$resp" ] && printf '%s' "$resp"
}
# server_log KEY FROM_LINE: the receiver's verdict lines since FROM_LINE (for diagnostics)
server_log() { tail -n +"$(($2 + 1))" "$tmp/server_$1.err" | head -n 20 | cut -c1-300; }
log_lines() { wc -l <"$tmp/server_$1.err" | tr -d ' '; }
# exit_desc RC: hookring's exit status in words (signals and timeout(1) named)
exit_desc() {
    case $1 in
        124) echo "124 (timed out after 30 s, killed by timeout(1))" ;;
        1[3-9][0-9] | 2[0-5][0-9]) echo "$1 (killed by signal $(($1 - 128)): $(kill -l $(($1 - 128)) 2>/dev/null))" ;;
        *) echo "$1" ;;
    esac
}

# --- server.js takes what verify.js takes ---------------------------------------------------------
# For each profile: POST a freshly signed request and its tampered copy (reqtool.js, node's HTTP
# client); expect 200 then 401 and /_count to move by one acceptance and one refusal.
for p in $profiles; do
    desc="$p: server.js answers 200 to the signed request, 401 to the tampered one, counts 1/1"
    if [ -n "${server_down[$p]:-}" ]; then fail "$desc" "${server_down[$p]}"; continue; fi
    req="$tmp/$p.srv.req"
    mapfile -t extra < <(data_enc_args "$p")
    if ! "$hookring" sign --profile "$p" --secret "$(data_secret "$p")" "${extra[@]}" \
        "$tmp/event_$p.json" >"$req" 2>"$req.err"; then
        fail "$desc" "hookring sign failed: $(cat "$req.err")"
        continue
    fi
    if ! what=$(node "$here/reqtool.js" tamper "$req" "$req.bad" 2>&1); then
        fail "$desc" "cannot tamper: $what"
        continue
    fi
    from=$(log_lines "$p")
    before=$(get_count "$p")
    good=$(timeout -k 2 30 node "$here/reqtool.js" post "$req" "http://127.0.0.1:${server_port[$p]}/webhooks/$p" 2>&1)
    bad=$(timeout -k 2 30 node "$here/reqtool.js" post "$req.bad" "http://127.0.0.1:${server_port[$p]}/webhooks/$p" 2>&1)
    after=$(get_count "$p")
    if [ -n "$before" ] && [ -n "$after" ] && [ "$good" = '200 {"received":true}' ] && [ "${bad%% *}" = 401 ] &&
        [ "$((${after% *} - ${before% *})) $((${after#* } - ${before#* }))" = "1 1" ]; then
        pass "$desc"
    else
        fail "$desc" "signed: $good
tampered: $bad
/_count before: ${before:-no answer}; after: ${after:-no answer} (accepted rejected)
server log:
$(server_log "$p" "$from")"
    fi
done

# --- hookring send: the engine's own HTTP delivery, to the published verifier ----------------------
# check_send PROFILE accept|refuse DESC PATH SECRET...: hookring send --profile PROFILE
# tests/data/events/PROFILE.json to PROFILE's receiver, one attempt (no --retries), signing with
# each SECRET (--secret repeated). accept: exit 0, "attempt 1: 2xx", the receiver counted exactly
# one more acceptance and no refusal. refuse: exit 1, "attempt 1: 4xx", exactly one more refusal
# and no acceptance.
# --timeout 20000: the receivers are test code (humcli's verifier starts python3 per request,
# which takes seconds on a loaded machine, past humcli's 5 s profile deadline); what is checked
# here is the verdict, not the receiver's speed. timeout(1) bounds hookring itself.
check_send() {
    local p=$1 want=$2 desc=$3 path=$4
    shift 4
    if [ -n "${server_down[$p]:-}" ]; then fail "$desc" "${server_down[$p]}"; return; fi
    local args=() s extra=()
    for s in "$@"; do args+=(--secret "$s"); done
    mapfile -t extra < <(data_enc_args "$p")
    local from before after out rc delta ok=1 why=()
    from=$(log_lines "$p")
    before=$(get_count "$p")
    out=$(timeout -k 2 30 "$hookring" send --profile "$p" --url "http://127.0.0.1:${server_port[$p]}$path" \
        "${args[@]}" --allow-net 127.0.0.0/8 --timeout 20000 "${extra[@]}" "$data/events/$p.json" 2>&1)
    rc=$?
    after=$(get_count "$p")

    if [ -z "$before" ] || [ -z "$after" ]; then
        ok=0; why+=("/_count did not answer (before: '${before}', after: '${after}')")
        delta=
    else
        delta="$((${after% *} - ${before% *})) $((${after#* } - ${before#* }))"
    fi
    printf '%s\n' "$out" | grep -Eq "^POST $path HTTP/1\.1 -> 127\.0\.0\.1:${server_port[$p]} " ||
        { ok=0; why+=("no request line 'POST $path HTTP/1.1 -> 127.0.0.1:${server_port[$p]} ...'"); }
    if printf '%s\n' "$out" | grep -q '^attempt 2:'; then ok=0; why+=("more than one attempt"); fi
    if [ "$want" = accept ]; then
        [ "$rc" -eq 0 ] || { ok=0; why+=("exit status $(exit_desc "$rc"), expected 0"); }
        printf '%s\n' "$out" | grep -Eq '^attempt 1: 2[0-9][0-9] in [0-9.]+ ms' ||
            { ok=0; why+=("no 'attempt 1: 2xx in X ms'"); }
        [ "$delta" = "1 0" ] || { ok=0; why+=("receiver counted ${delta:-?} (accepted rejected), expected 1 0"); }
    else
        [ "$rc" -eq 1 ] || { ok=0; why+=("exit status $(exit_desc "$rc"), expected 1"); }
        printf '%s\n' "$out" | grep -Eq '^attempt 1: 4[0-9][0-9] in [0-9.]+ ms' ||
            { ok=0; why+=("no 'attempt 1: 4xx in X ms'"); }
        [ "$delta" = "0 1" ] || { ok=0; why+=("receiver counted ${delta:-?} (accepted rejected), expected 0 1"); }
    fi
    if [ "$ok" -eq 1 ]; then
        pass "$desc"
    else
        fail "$desc" "$(printf '%s\n' "${why[@]}")
--- hookring send output:
$(printf '%s\n' "$out" | head -n 20 | cut -c1-300)
--- server log:
$(server_log "$p" "$from")"
    fi
}

for p in $profiles; do
    check_send "$p" accept "$p: hookring send delivers tests/data/events/$p.json, accepted by ${verifier[$p]} (200, exit 0, counted 1 accepted)" \
        "/webhooks/$p/send" "$(data_secret "$p")"
    check_send "$p" refuse "$p: hookring send with a wrong secret -> refused by ${verifier[$p]} (401, exit 1, counted 1 refused)" \
        "/webhooks/$p/wrong-secret" "$(wrong_secret "$p")"
done
# rotation: signed with an old secret and the current one; the receiver knows only the current one
for p in standard svix stripe; do
    check_send "$p" accept "$p: hookring send with two --secret (rotation), accepted by ${verifier[$p]} knowing only the second (200, exit 0, counted 1 accepted)" \
        "/webhooks/$p/rotation" "$(wrong_secret "$p")" "$(data_secret "$p")"
done

# the HTTP receivers are done: stop them before the HTTPS ones start (a loaded machine)
for pid in "${server_pids[@]}"; do stop_server "$pid"; done
server_pids=()

# --- HTTPS: hookring send over TLS, trusting the suite's CA through --ca-file ---------------------
# A throw-away CA made here (EC P-256, 2 days, in $tmp: removed at exit) signs two server
# certificates: "good" for IP:127.0.0.1 and DNS:localhost, "other" for DNS:other.example only.
# Each profile gets two HTTPS receivers (server.js --tls-cert/--tls-key), the good and the other.
# make_pki: prints openssl's complaint and fails when something did not work
make_pki() {
    (
        set -e
        mkdir -p "$pki"
        cd "$pki"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
            -days 2 -subj "/CN=hookring verifiers test CA"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >good.ext
        printf 'subjectAltName=DNS:other.example\n' >other.ext
        for leaf in good other; do
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$leaf.key" -out "$leaf.csr" \
                -subj "/CN=$leaf"
            openssl x509 -req -in "$leaf.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$leaf.pem" -days 2 \
                -extfile "$leaf.ext"
        done
        # both chain to the CA; each is valid for its own names and not for the other's
        openssl verify -CAfile ca.pem -verify_ip 127.0.0.1 good.pem
        openssl verify -CAfile ca.pem -verify_hostname localhost good.pem
        openssl verify -CAfile ca.pem -verify_hostname other.example other.pem
        if openssl verify -CAfile ca.pem -verify_ip 127.0.0.1 other.pem; then exit 1; fi
        if openssl verify -CAfile ca.pem -verify_hostname other.example good.pem; then exit 1; fi
    ) >"$tmp/pki.log" 2>&1
}
tls_keys=()
for p in $profiles; do tls_keys+=("$p.good" "$p.other"); done
pki_desc="openssl made a throw-away CA, a certificate for IP:127.0.0.1+DNS:localhost and one for DNS:other.example only (openssl verify: each valid for its names only)"
if [ "$have_openssl" -ne 1 ]; then
    fail "$pki_desc" "openssl not found"
    for k in "${tls_keys[@]}"; do server_down[$k]="no HTTPS receiver: openssl not found"; done
elif ! make_pki; then
    fail "$pki_desc" "$(tail -n 20 "$tmp/pki.log")"
    for k in "${tls_keys[@]}"; do server_down[$k]="no HTTPS receiver: the certificates could not be made"; done
else
    pass "$pki_desc"
    # all eighteen start at once (30 s at most: node on a loaded machine)
    start_receivers 30 "${tls_keys[@]}"
fi

# check_tls_send KEY WANT DESC PATH URL_HOST [hookring send args...]: hookring send --profile
# PROFILE (KEY's) of tests/data/events/PROFILE.json to https://URL_HOST:PORT/PATH, PORT being KEY's
# receiver, with PROFILE's secret (tests/data/secrets.sh), one attempt. WANT accept: exit 0,
# "attempt 1: 2xx" on stdout, the receiver counted exactly one more acceptance and no refusal.
# WANT a failure class (tls_wrong_host, tls_untrusted): exit 1, stdout "attempt 1: CLASS", and the
# receiver counted nothing and logged no request: the handshake was refused before one was sent.
check_tls_send() {
    local k=$1 want=$2 desc=$3 path=$4 host=$5
    shift 5
    local p=${k%%.*}
    if [ -n "${server_down[$k]:-}" ]; then fail "$desc" "${server_down[$k]}"; return; fi
    local extra=() from before after out err rc delta ok=1 why=() url
    mapfile -t extra < <(data_enc_args "$p")
    url="https://$host:${server_port[$k]}$path"
    from=$(log_lines "$k")
    before=$(get_count "$k")
    timeout -k 2 30 "$hookring" send --profile "$p" --url "$url" --secret "$(data_secret "$p")" \
        --allow-net 127.0.0.0/8 --timeout 20000 "${extra[@]}" "$@" "$data/events/$p.json" \
        >"$tmp/send.out" 2>"$tmp/send.err"
    rc=$?
    out=$(cat "$tmp/send.out")
    err=$(cat "$tmp/send.err")
    after=$(get_count "$k")

    if [ -z "$before" ] || [ -z "$after" ]; then
        ok=0; why+=("/_count did not answer (before: '${before}', after: '${after}')")
        delta=
    else
        delta="$((${after% *} - ${before% *})) $((${after#* } - ${before#* }))"
    fi
    printf '%s\n' "$out" | grep -Eq "^POST $path HTTP/1\.1 -> $host:${server_port[$k]} " ||
        { ok=0; why+=("no request line 'POST $path HTTP/1.1 -> $host:${server_port[$k]} ...' on stdout"); }
    if printf '%s\n' "$out" | grep -q '^attempt 2:'; then ok=0; why+=("more than one attempt"); fi
    if [ "$want" = accept ]; then
        [ "$rc" -eq 0 ] || { ok=0; why+=("exit status $(exit_desc "$rc"), expected 0"); }
        printf '%s\n' "$out" | grep -Eq '^attempt 1: 2[0-9][0-9] in [0-9.]+ ms' ||
            { ok=0; why+=("no 'attempt 1: 2xx in X ms' on stdout"); }
        [ "$delta" = "1 0" ] || { ok=0; why+=("receiver counted ${delta:-?} (accepted rejected), expected 1 0"); }
    else
        [ "$rc" -eq 1 ] || { ok=0; why+=("exit status $(exit_desc "$rc"), expected 1"); }
        printf '%s\n' "$out" | grep -Eq "^attempt 1: $want( |\$)" ||
            { ok=0; why+=("no 'attempt 1: $want' on stdout"); }
        [ "$delta" = "0 0" ] || { ok=0; why+=("receiver counted ${delta:-?} (accepted rejected), expected 0 0"); }
        if server_log "$k" "$from" | grep -q ' POST '; then
            ok=0; why+=("a request reached the receiver")
        fi
    fi
    if [ "$ok" -eq 1 ]; then
        pass "$desc"
    else
        fail "$desc" "$(printf '%s\n' "${why[@]}")
--- hookring send $url: stdout:
$(printf '%s\n' "$out" | head -n 20 | cut -c1-300)
--- stderr:
$(printf '%s\n' "$err" | head -n 10 | cut -c1-300)
--- server log:
$(server_log "$k" "$from")"
    fi
}

for p in $profiles; do
    check_tls_send "$p.good" accept "$p: hookring send over HTTPS (--ca-file: the suite's CA) to a certificate for 127.0.0.1, accepted by ${verifier[$p]} (200, exit 0, counted 1 accepted)" \
        "/webhooks/$p/tls" 127.0.0.1 --ca-file "$pki/ca.pem"
    check_tls_send "$p.other" tls_wrong_host "$p: hookring send over HTTPS to 127.0.0.1 presenting the CA's certificate for other.example -> tls_wrong_host (exit 1, nothing reached the receiver)" \
        "/webhooks/$p/wrong-host" 127.0.0.1 --ca-file "$pki/ca.pem"
done
# without --ca-file the suite's CA is not trusted (the system's CAs are, and none of them made it)
check_tls_send github.good tls_untrusted "github: hookring send over HTTPS without --ca-file -> tls_untrusted (exit 1, nothing reached the receiver)" \
    /webhooks/github/untrusted 127.0.0.1
# the name, not the certificate, is what refused the other-host receiver: reached as other.example
# (--resolve, no DNS) it is accepted; and the good receiver reached as other.example is refused
check_tls_send github.other accept "github: the other.example receiver reached as other.example (--resolve) is accepted (200, exit 0, counted 1 accepted): its refusal above was the host name" \
    /webhooks/github/right-name other.example --ca-file "$pki/ca.pem" --resolve other.example:127.0.0.1
check_tls_send github.good tls_wrong_host "github: the 127.0.0.1/localhost receiver reached as other.example (--resolve) -> tls_wrong_host (a DNS name mismatch too)" \
    /webhooks/github/wrong-name other.example --ca-file "$pki/ca.pem" --resolve other.example:127.0.0.1

for pid in "${server_pids[@]}"; do stop_server "$pid"; done
server_pids=()

finish

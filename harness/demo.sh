#!/usr/bin/env bash
# harness/demo.sh BUILD_DIR: the demo behind `make demo`, in three parts.
#   1. signing: for every profile, sign a realistic event (`hookring sign`), verify it as that
#      profile's receiver would (`hookring verify`), flip one body byte and show the refusal.
#   2. serve at work (harness/demo/serve_demo.py): build/hookring-harness and `hookring serve`
#      on free loopback ports, webhooks of all nine profiles registered over the API (some on
#      misbehaving receivers), a mixed workload of ~27k events ingested by several producers
#      with a live progress line, serve killed with SIGKILL in the middle and restarted on the
#      same data directory, until every delivery is final.
#   3. what happened: ingest, duplicates refused, deliveries (first try, after retries,
#      failed), endpoints by status, throughput and latency; then strict checks (every signature
#      verified, every acknowledged event delivered, serve's counts equal the receiver's).
# Exit 0 when everything went as expected. The work directory (serve's data directory in it)
# is removed and every process the demo started is stopped on any exit, Ctrl-C included.
set -u
cd "$(dirname "$0")/.." || exit 2
build="${1:-build}"
hr="$build/hookring"
hh="$build/hookring-harness"
for b in "$hr" "$hh"; do
    [ -x "$b" ] || { echo "demo: $b is missing; run 'make' first" >&2; exit 2; }
done
# python3 starts in ~0.3 s as /usr/bin/python3 but may take seconds through a version-manager
# shim.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || { echo "demo: python3 is missing" >&2; exit 2; }
. tests/data/secrets.sh
export LC_ALL=C
work=$(mktemp -d)
cleanup() {
    # serve_demo.py keeps the pids of the processes it started in $work/pids; it stops them
    # itself, this is for when it could not (killed, or interrupted at a bad moment)
    local pids=
    [ -s "$work/pids" ] && read -r pids <"$work/pids"
    for pid in $pids; do
        kill "$pid" 2>/dev/null
    done
    for pid in $pids; do
        for _ in $(seq 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT TERM
t_start=$SECONDS

tty=false
[ -t 1 ] && tty=true
bold=$'\033[1m'; green=$'\033[32m'; red=$'\033[31m'; dim=$'\033[2m'; off=$'\033[0m'
$tty || { bold=; green=; red=; dim=; off=; }

profiles="humanconnection humiris humcli humanos aksita standard svix stripe github"
problems=0
problem() {
    echo "   ${red}unexpected: $*${off}"
    echo "$*" >>"$work/problems"
    problems=$((problems + 1))
}
# secret_args P: the --secret (and humanos --enc-*) arguments of profile P, in the array sargs
secret_args() {
    local v=SECRET_$1
    sargs=(--secret "${!v}")
    if [ "$1" = humanos ]; then
        sargs+=(--enc-secret "$ENC_SECRET_humanos" --enc-salt "$ENC_SALT_humanos")
    fi
}
heading() { echo; echo "${bold}$*${off}"; }

echo "${bold}hookring demo${off}: the delivery engine against its mock subscriber," \
    "all nine profiles"

# --- 1. signing ------------------------------------------------------------------------------
heading "1. Sign, verify, tamper: one event per profile"
echo "   ${dim}hookring sign, then hookring verify as the receiver would, then again with one" \
    "body byte flipped${off}"
printf "   ${dim}%-16s %6s  %-38s %-9s %s${off}\n" profile body "signature header" verify \
    "one body byte flipped"
for p in $profiles; do
    secret_args "$p"
    req="$work/$p.req"
    if ! "$hr" sign --profile "$p" "${sargs[@]}" "tests/data/events/$p.json" >"$req" \
        2>"$work/err"; then
        problem "$p: sign failed: $(cat "$work/err")"
        continue
    fi
    # Headers become --header arguments; the body starts after the first empty (CRLF) line.
    hdrs=()
    sig=
    while IFS= read -r line; do
        line=${line%$'\r'}
        [ -z "$line" ] && break
        hdrs+=(--header "$line")
        case "${line,,}" in *signature*:*) [ -z "$sig" ] && sig=$line ;; esac
    done <"$req"
    blank=$(grep -abm1 $'^\r$' "$req" | cut -d: -f1)
    tail -c +$((blank + 3)) "$req" >"$work/$p.body"
    # Tamper: flip the case of the first letter from the middle of the body on.
    body=$(<"$work/$p.body")
    i=$((${#body} / 2))
    while [ "$i" -lt "${#body}" ] && [[ ${body:i:1} != [A-Za-z] ]]; do i=$((i + 1)); done
    ch=${body:i:1}
    [[ $ch == [a-z] ]] && ch=${ch^} || ch=${ch,}
    printf '%s' "${body:0:i}$ch${body:i+1}" >"$work/$p.bad"
    [ ${#sig} -gt 38 ] && sig="${sig:0:37}…"
    if "$hr" verify --profile "$p" "${sargs[@]}" "${hdrs[@]}" "$work/$p.body" >/dev/null \
        2>"$work/err"; then
        v="${green}accepted${off} "
    else
        v="${red}refused${off}  "
        problem "$p: the signed request was refused: $(cat "$work/err")"
    fi
    if "$hr" verify --profile "$p" "${sargs[@]}" "${hdrs[@]}" "$work/$p.bad" >/dev/null \
        2>"$work/err"; then
        t="${red}ACCEPTED${off}"
        problem "$p: a tampered body was accepted"
    else
        why=$(head -1 "$work/err")
        why=${why#hookring verify: refused: }
        t="${green}refused${off} ${dim}(${why%%:*})${off}"
    fi
    printf "   %-16s %4s B  %-38s %s %s\n" "$p" "$(wc -c <"$work/$p.body")" "$sig" "$v" "$t"
done

# --- 2. and 3. serve at work, and what happened -------------------------------------------
echo
color=()
$tty && color=(--color)
# In the background, so that a signal to this script reaches it at once (forwarded below);
# Ctrl-C reaches it directly too (it takes the first and ignores the rest).
"$py" harness/demo/serve_demo.py --build "$build" --work "$work" "${color[@]}" &
dpid=$!
trap 'interrupted=1; kill -INT "$dpid" 2>/dev/null' INT
trap 'interrupted=1; kill -TERM "$dpid" 2>/dev/null' TERM
interrupted=0
rc=0
while :; do
    wait "$dpid"
    rc=$?
    kill -0 "$dpid" 2>/dev/null || break
done
if [ "$interrupted" -ne 0 ] || [ "$rc" -eq 130 ]; then
    echo "demo: interrupted" >&2
    exit 130
fi
echo
echo "${dim}demo: $((SECONDS - t_start)) s${off}"
if [ "$rc" -ne 0 ] || [ "$problems" -ne 0 ]; then
    echo "${red}${bold}demo: something unexpected happened${off} (see the lines marked above)"
    [ -s "$work/problems" ] && sed 's/^/   /' "$work/problems"
    exit 1
fi

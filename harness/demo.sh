#!/usr/bin/env bash
# harness/demo.sh BUILD_DIR: the demo behind `make demo`, in four parts.
#   1. signing: for every profile, sign a realistic event (`hookring sign`), verify it as that
#      profile's receiver would (`hookring verify`), flip one body byte and show the refusal.
#   2. load: start build/hookring-harness on a free loopback port, one verifying route per
#      profile, and blast each profile for 2 s at a mix of fast, slow and failing receivers.
#   3. retries: `hookring send --retries` against flaky, dropping, rate-limiting, gone and
#      failing receivers, one line per outcome.
#   4. what happened: harness/demo/report.py prints the table and totals from the blast JSON and
#      the harness stats, and checks them (bad signatures, lost or extra requests, duplicates).
# Exit 0 when everything went as expected; the harness is stopped on any exit.
set -u
cd "$(dirname "$0")/.." || exit 2
build="${1:-build}"
hr="$build/hookring"
hh="$build/hookring-harness"
for b in "$hr" "$hh"; do
    [ -x "$b" ] || { echo "demo: $b is missing; run 'make' first" >&2; exit 2; }
done
# python3 starts in ~0.3 s as /usr/bin/python3 but may take seconds through a version-manager
# shim; the demo calls it once, at the end.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || { echo "demo: python3 is missing" >&2; exit 2; }
. tests/data/secrets.sh
export LC_ALL=C
work=$(mktemp -d)
hpid=
cleanup() {
    if [ -n "$hpid" ]; then
        kill "$hpid" 2>/dev/null
        for _ in $(seq 40); do
            kill -0 "$hpid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$hpid" 2>/dev/null
        wait "$hpid" 2>/dev/null
    fi
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

# --- 2. the harness and the load -------------------------------------------------------------
heading "2. Load: 2 s of deliveries per profile into the mock subscriber"
routes=()
for p in $profiles; do
    v=SECRET_$p
    if [ "$p" = humanos ]; then
        routes+=(--route "/$p/=humanos:${!v}:$ENC_SECRET_humanos:$ENC_SALT_humanos")
    else
        routes+=(--route "/$p/=$p:${!v}")
    fi
done
"$hh" --listen 127.0.0.1:0 "${routes[@]}" >"$work/harness.out" 2>"$work/harness.err" &
hpid=$!
addr=
for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$work/harness.out")
    [ -n "$addr" ] && break
    kill -0 "$hpid" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$addr" ]; then
    echo "${red}demo: the harness did not start:${off}" >&2
    cat "$work/harness.err" >&2
    exit 1
fi
base="http://$addr"
echo "   The harness (on $addr) verifies every request as its profile's receiver would."
echo "   Each profile's deliveries are spread evenly over six receivers under /PROFILE/:"
echo "   /ok/orders /ok/invoices /ok/users /ok/crm, /slow/20/analytics (answers in 20 ms),"
echo "   /fail/5/legacy (answers 500 to 5 % of requests)."
echo "   An open loop of 10,000 deliveries/s per profile (latency counts from each one's intended"
echo "   send time), at most 64 in flight: about 180,000 deliveries in all, well inside the"
echo "   harness's table of webhook ids."
echo "   ${dim}hookring blast --profile P --url URL,... --rate 10000 --duration 2s --concurrency 64" \
    "--workers 1${off}"

# progress LABEL: shows blast's progress (stderr, '\r'-separated) as one line behind LABEL;
# without a terminal only the last reading is printed. Other stderr lines pass through.
progress() {
    local seg last="" rest
    $tty && printf '   %-16s %s' "$1" "${dim}starting${off}"
    while IFS= read -r -d $'\r' seg || [ -n "$seg" ]; do
        rest=
        if [[ $seg == *$'\n'* ]]; then
            rest=${seg#*$'\n'}
            seg=${seg%%$'\n'*}
        fi
        seg=${seg%"${seg##*[! ]}"}
        if [ -n "$seg" ]; then
            last=$seg
            $tty && printf '\r   %-16s %s\033[K' "$1" "$last"
        fi
        [ -n "$rest" ] && printf '\n%s' "$rest"
    done
    if $tty; then
        printf '\n'
    else
        printf '   %-16s %s\n' "$1" "${last:-(no progress reading)}"
    fi
}

for p in $profiles; do
    secret_args "$p"
    r="$base/$p"
    urls="$r/ok/orders,$r/ok/invoices,$r/ok/users,$r/ok/crm,$r/slow/20/analytics,$r/fail/5/legacy"
    { "$hr" blast --profile "$p" "${sargs[@]}" --url "$urls" --allow-net 127.0.0.0/8 \
        --rate 10000 --duration 2s --concurrency 64 --workers 1 --json 2>&1 \
        >"$work/blast-$p.json"; } |
        progress "$p"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || problem "$p: hookring blast exited $rc"
done

# --- 3. retries and duplicates ---------------------------------------------------------------
heading "3. Retries and duplicates: hookring send --retries, one event each"
echo "   Retry delays are scaled down: --time-scale 0.002 turns 1 min into 0.12 s; the /drop/"
echo "   run uses 0.00002, so that humanconnection's 1m 5m 30m 2h 12h schedule takes a second."
echo "   ${dim}hookring send --profile P --url URL --retries --time-scale 0.002 EVENT.json${off}"
printf "   ${dim}%-16s %-16s %-18s %s${off}\n" profile receiver attempts outcome
# http_get PATH: the body of GET PATH from the harness
http_get() {
    local resp
    exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" "$addr" >&3
    resp=$(cat <&3)
    exec 3<&-
    printf '%s' "${resp#*$'\r\n\r\n'}"
}
# json_num KEY JSON: the number after "KEY": in a flat JSON object
json_num() {
    [[ $2 =~ \"$1\":([0-9]+) ]] && echo "${BASH_REMATCH[1]}" || echo "?"
}
retries_made=0
# scenario P PATH SCALE EXPECT_RC EXPECT_ATTEMPTS HARNESS_ID [send options]
scenario() {
    local p=$1 path=$2 scale=$3 want_rc=$4 want_n=$5 id=$6
    shift 6
    secret_args "$p"
    local out="$work/send-$p.out" rc n seq outcome
    "$hr" send --profile "$p" "${sargs[@]}" --url "$base/$p/$path" --allow-net 127.0.0.0/8 \
        --retries --time-scale "$scale" "$@" "tests/data/events/$p.json" >"$out" 2>&1
    rc=$?
    # "attempt N: 500 in 0.89 ms" / "attempt N: reset in 1.05 ms"
    seq=$(sed -n 's/^attempt [0-9]*: \([^ ]*\) in .*/\1/p' "$out" | uniq -c |
        awk '{printf "%s%s", (NR > 1 ? " " : ""), ($1 > 2 ? $2 " x" $1 : $1 > 1 ? $2 " " $2 : $2)}')
    n=$(grep -c '^attempt ' "$out")
    local delays
    delays=$(sed -n 's/^  retry [0-9]* of [0-9]* in \([0-9.]*\) s$/\1/p' "$out" | sort -u |
        tr '\n' ' ')
    local h dups
    h=$(http_get "/_harness/ids/$id")
    dups=$(json_num duplicates "$h")
    case "$path" in
    flaky/*) outcome="delivered on attempt $n" ;;
    drop/*) outcome="taken once, $dups duplicates caught; gave up" ;;
    retry-after/*) outcome="waited Retry-After (1 s = ${delays% } s); gave up" ;;
    gone/*) outcome="410 is final: no retry" ;;
    *) outcome="final: $p never retries" ;;
    esac
    if [ "$rc" -ne "$want_rc" ] || [ "$n" -ne "$want_n" ]; then
        outcome="${red}$outcome${off}"
        problem "$p /$path: exit $rc after $n attempts, expected exit $want_rc after" \
            "$want_n: $(tail -1 "$out")"
    fi
    printf "   %-16s %-16s %-18s %s\n" "$p" "/${path%x}" "$seq" "$outcome"
    retries_made=$((retries_made + n - 1))
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$path" "$rc" "$n" "$id" "$h" >>"$work/sends.tsv"
}
: >"$work/sends.tsv"
scenario standard flaky/2/x 0.002 0 3 demo-flaky-1 --id demo-flaky-1
scenario humanconnection drop/x 0.00002 1 6 evt_5e4d3c2b1a0f9e8d
scenario humiris retry-after/1/x 0.002 1 6 evt_9f8e7d6c5b4a3921
scenario stripe gone/x 0.002 1 1 evt_1NG8Du2eZvKYlo2CUI3kTL6s
scenario github status/500/x 0.002 1 1 demo-github-500 --id demo-github-500
# the Retry-After delays must be Retry-After's, not the schedule's (30 s, 5 min, ...)
grep -q '^  retry 1 of 5 in 0.002 s$' "$work/send-humiris.out" ||
    problem "humiris /retry-after/1/: the first retry did not wait Retry-After (1 s x 0.002)"

# --- 4. what happened ------------------------------------------------------------------------
heading "4. What happened"
if ! http_get /_harness/stats >"$work/stats.json" || [ ! -s "$work/stats.json" ]; then
    problem "could not read the harness stats"
fi
"$py" harness/demo/report.py --work "$work" --profiles "$profiles" --retries "$retries_made" \
    --elapsed $((SECONDS - t_start)) --bold "$bold" --red "$red" --green "$green" --dim "$dim" \
    --off "$off"
rc=$?
if [ "$rc" -ne 0 ] || [ "$problems" -ne 0 ]; then
    echo
    echo "${red}${bold}demo: something unexpected happened${off} (see the lines marked above)"
    [ -s "$work/problems" ] && sed 's/^/   /' "$work/problems"
    exit 1
fi

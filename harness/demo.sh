#!/usr/bin/env bash
# harness/demo.sh BUILD_DIR: the demo behind `make demo`. For every profile it signs a realistic
# event with `hookring sign`, verifies the request as that profile's receiver would with
# `hookring verify`, then flips one body byte and shows the refusal and its reason.
set -u
cd "$(dirname "$0")/.."
build="${1:-build}"
hr="$build/hookring"
[ -x "$hr" ] || { echo "demo: $hr is missing; run 'make' first" >&2; exit 2; }
. tests/data/secrets.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bold=$'\033[1m'; green=$'\033[32m'; red=$'\033[31m'; dim=$'\033[2m'; off=$'\033[0m'
[ -t 1 ] || { bold=; green=; red=; dim=; off=; }

profiles="humanconnection humiris humcli humanos aksita standard svix stripe github"
ok=0; refused=0; failed=0
summary=()
echo "${bold}hookring demo: sign and verify one event for each of the nine profiles${off}"
echo
for p in $profiles; do
    sv=SECRET_$p
    extra=()
    if [ "$p" = humanos ]; then
        extra=(--enc-secret "$ENC_SECRET_humanos" --enc-salt "$ENC_SALT_humanos")
    fi
    ev="tests/data/events/$p.json"
    req="$work/$p.req"
    if ! "$hr" sign --profile "$p" --secret "${!sv}" "${extra[@]}" "$ev" >"$req" 2>"$work/err"; then
        echo "${red}$p: sign failed: $(cat "$work/err")${off}"
        failed=$((failed + 1))
        continue
    fi
    # Split the request into header arguments and the body file.
    hdrs=()
    while IFS= read -r line; do
        line=${line%$'\r'}
        [ -z "$line" ] && break
        hdrs+=(--header "$line")
    done <"$req"
    python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); open(sys.argv[2],"wb").write(d.split(b"\r\n\r\n",1)[1])' "$req" "$work/$p.body"
    echo "${bold}== $p${off}  ${dim}($(wc -c <"$work/$p.body") byte body)${off}"
    sed -n '/^\r$/q;p' "$req" | tr -d '\r' | sed 's/^/   /'
    printf '   %s\n' "$(head -c 110 "$work/$p.body")$( [ "$(wc -c <"$work/$p.body")" -gt 110 ] && echo '…')"
    if out=$("$hr" verify --profile "$p" --secret "${!sv}" "${extra[@]}" "${hdrs[@]}" "$work/$p.body" 2>&1); then
        echo "   ${green}verify: accepted${off}${dim} -> $(printf '%s' "$out" | head -c 90)…${off}"
        ok=$((ok + 1))
    else
        echo "   ${red}verify: refused: $out${off}"
        failed=$((failed + 1))
    fi
    # Tamper: flip the case of one letter in the middle of the body.
    python3 -c '
import sys
b=bytearray(open(sys.argv[1],"rb").read()); i=len(b)//2
while not chr(b[i]).isalpha(): i+=1
b[i]^=0x20; open(sys.argv[2],"wb").write(b)' "$work/$p.body" "$work/$p.bad"
    if out=$("$hr" verify --profile "$p" --secret "${!sv}" "${extra[@]}" "${hdrs[@]}" "$work/$p.bad" 2>&1); then
        echo "   ${red}tampered body ACCEPTED (bug)${off}"
        failed=$((failed + 1))
    else
        echo "   ${green}tampered body refused${off}${dim}: ${out#hookring verify: refused: }${off}"
        refused=$((refused + 1))
    fi
    echo
done
echo "${bold}summary${off}: $ok of 9 profiles signed and verified, $refused tampered bodies refused, $failed failures"
[ "$failed" -eq 0 ]
